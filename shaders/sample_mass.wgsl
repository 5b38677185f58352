// Sampling, pick step 1 (one workgroup per block): finish the last search
// (tau = the final threshold, 0 without top-k/top-p), then each block's kept
// mass (sum of e over key >= tau, e > 0) and last kept index ->
// blk[2b] (f32 bits), blk[2b + 1] (NO_INDEX if none); blk[2 * nblocks] = tau.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> ev4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> psum4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sstate: array<u32>;
@group(0) @binding(3) var<storage, read_write> blk: array<u32>;
@group(0) @binding(5) var<uniform> pp: PassParams;

@compute @workgroup_size(WG)
fn sample_mass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    var tau = 0u;
    if (pp.has_prev != 0u) {
        tau = decide(pp.prev, pp.prev_mass != 0u, lid).x;
    }
    let n4 = (sp.vocab + 3u) / 4u;
    let start = wid.x * (sp.block / 4u);
    let end = min(start + sp.block / 4u, n4);
    var s = 0.0;
    var last = -1.0;
    for (var i = start + lid; i < end; i += WG) {
        let e = ev4[ev_base / 4u + i];
        let k = bitcast<vec4<u32>>(e);
        for (var c = 0u; c < 4u; c++) {
            if (k[c] >= tau && e[c] > 0.0) {
                s += e[c];
                last = f32(4u * i + c);
            }
        }
    }
    s = wg_sum(s, lid);
    last = wg_max(last, lid);
    if (lid == 0u) {
        blk[blk_base + 2u * wid.x] = bitcast<u32>(s);
        blk[blk_base + 2u * wid.x + 1u] = select(u32(last), NO_INDEX, last < 0.0);
        if (wid.x == 0u) {
            blk[blk_base + 2u * sp.nblocks] = tau;
        }
    }
}
