// Sampling controls, after the pick (one invocation): the sampled token's
// generated count += 1 in the row's token counts (bit 31, "in the context",
// stays). A NON_FINITE (or any out-of-range) id counts nothing.

struct CountParams {
    vocab: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> out: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
@group(0) @binding(2) var<uniform> cp: CountParams;

@compute @workgroup_size(1)
fn sample_count() {
    let t = out[cp.out_off];
    if (t < cp.vocab) {
        let c = counts[t];
        if ((c & 0x7fffffffu) != 0x7fffffffu) {
            counts[t] = c + 1u;
        }
    }
}
