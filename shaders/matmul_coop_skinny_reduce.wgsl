// Split-K reduction of the skinny tensor-core matmul (mm_coop_skinny with
// KSLICE > 0; concatenated after numeric.wgsl): the splits' partial sums
// part[(z t + tok) width + r] (width = n, or 2 n for SwiGLU with the up rows
// at n + c) are added in split order and written with the epilogue:
// y[tok, n0 + c] = sum (store), y += sum (accumulate), or silu(gate) * up.
// Plain scalar code: a grid-stride loop over the t x n outputs.

struct SkReduceParams {
    t: u32,
    n: u32,       // output columns of the launch
    splits: u32,
    epi: u32,     // 0 store, 1 accumulate, 2 SwiGLU
    width: u32,   // partial row width
    n0: u32,      // first output column
    y_off: u32,
    y_stride: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> rp: SkReduceParams;

@compute @workgroup_size(WG)
fn mm_skinny_reduce(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = rp.t * rp.n;
    for (var i = gid.x; i < total; i += nwg.x * WG) {
        let tok = i / rp.n;
        let c = i % rp.n;
        var g = 0.0;
        var u = 0.0;
        for (var z = 0u; z < rp.splits; z++) {
            let base = (z * rp.t + tok) * rp.width;
            g += part[base + c];
            if (rp.epi == 2u) {
                u += part[base + rp.n + c];
            }
        }
        let yi = rp.y_off + tok * rp.y_stride + rp.n0 + c;
        if (rp.epi == 2u) {
            y[yi] = silu(g) * u;
        } else if (rp.epi == 1u) {
            y[yi] += g;
        } else {
            y[yi] = g;
        }
    }
}
