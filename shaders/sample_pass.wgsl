// Sampling, one search pass (one workgroup per block; see sample_search.wgsl):
// finish the previous pass, then count (or sum the mass of) this block's keys
// at or above each of the 64 thresholds of this pass. The block is staged in
// workgroup memory by coalesced loads; invocation (slice s, threshold j) then
// scans every 4th vec4 of it (the 32 invocations of a subgroup read the same
// address: a broadcast).

override WG: u32 = 256u;
const TILE: u32 = 256u;

@group(0) @binding(0) var<storage, read> ev4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> psum4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sstate: array<u32>;
@group(0) @binding(4) var<uniform> pp: PassParams;

var<workgroup> tile: array<vec4<f32>, TILE>;
var<workgroup> tot: array<f32, 256>;

@compute @workgroup_size(WG)
fn sample_pass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    sample_begin(wid.y);
    var iv = vec4<u32>(0u, KEY_END, 0u, 0u);
    if (pp.has_prev != 0u) {
        iv = decide(pp.prev, pp.prev_mass != 0u, lid);
    }
    if (pp.restart != 0u) {
        iv.y = KEY_END;
    }
    if (wid.x == 0u && lid == 0u) {
        sstate[ss_base + 4u * pp.slot] = iv.x;
        sstate[ss_base + 4u * pp.slot + 1u] = iv.y;
        sstate[ss_base + 4u * pp.slot + 2u] = iv.z;
    }
    let stp = pass_step(iv.x, iv.y);
    let j = lid % R;
    let s = lid / R;
    let th = vec4<u32>(threshold(iv.x, iv.y, stp, j));
    let mass = pp.mass != 0u;
    let n4 = (sp.vocab + 3u) / 4u;
    // From the uniform itself (sp.block is the same value): Tint counts a
    // private variable as non-uniform, and this bound guards barriers.
    let b4 = shape.block / 4u;
    let start = wid.x * b4;
    var acc = 0.0;
    for (var t0 = 0u; t0 < b4; t0 += TILE) {
        for (var i = lid; i < TILE; i += WG) {
            let g = start + t0 + i;
            var v = vec4<f32>(0.0);
            if (t0 + i < b4 && g < n4) {
                v = ev4[ev_base / 4u + g];
            }
            tile[i] = v;
        }
        workgroupBarrier();
        // Two tile reads in flight per step (TILE / SLICES is even).
        for (var i = s; i < TILE; i += 2u * SLICES) {
            let e0 = tile[i];
            let e1 = tile[i + SLICES];
            let h0 = select(vec4<f32>(0.0), select(vec4<f32>(1.0), e0, mass), bitcast<vec4<u32>>(e0) >= th);
            let h1 = select(vec4<f32>(0.0), select(vec4<f32>(1.0), e1, mass), bitcast<vec4<u32>>(e1) >= th);
            acc += ((h0.x + h0.y) + h0.z) + h0.w;
            acc += ((h1.x + h1.y) + h1.z) + h1.w;
        }
        workgroupBarrier();
    }
    tot[lid] = acc;
    workgroupBarrier();
    if (lid < R / 4u) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let jj = 4u * lid + c;
            v[c] = ((tot[jj] + tot[R + jj]) + tot[2u * R + jj]) + tot[3u * R + jj];
        }
        psum4[ps_base + (pp.slot * sp.nblocks + wid.x) * 16u + lid] = v;
    }
}
