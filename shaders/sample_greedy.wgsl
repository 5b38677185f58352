// Greedy sampling, step 2 (one workgroup): out[out_off] = argmax over the
// partials, or NON_FINITE when the row max is not finite (a NaN or +inf logit,
// or every logit -inf).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> part: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn sample_greedy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    let b = reduce_partials(lid);
    if (lid == 0u) {
        out[sp.out_off] = select(min(b.i, sp.vocab - 1u), NON_FINITE, !is_finite(b.v));
    }
}
