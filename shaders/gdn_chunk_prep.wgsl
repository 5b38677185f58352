// L2-normalises every q and k head row of the conv output in place (eps 1e-6 inside
// the square root, FLA's l2norm), q also scaled by dk^-½. One thread per (token,
// head) row, vec4 loads (dk and conv_dim are multiples of 4).

@group(0) @binding(0) var<storage, read_write> px: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> cpar: ChunkParams;

@compute @workgroup_size(GDN_WG)
fn gdn_qk_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * GDN_WG + lid;
    let heads = 2u * cpar.nk;
    if (idx >= cpar.t_len * heads) {
        return;
    }
    let t = idx / heads;
    let hh = idx % heads;
    let base = (t * cpar.conv_dim + hh * DK) / 4u;
    let n4 = DK / 4u;
    var ss = 0.0;
    for (var i = 0u; i < n4; i++) {
        let v = px[base + i];
        ss += dot(v, v);
    }
    var sc = 1.0 / sqrt(ss + GDN_L2_EPS);
    if (hh < cpar.nk) {
        sc *= cpar.q_scale;
    }
    for (var i = 0u; i < n4; i++) {
        px[base + i] = px[base + i] * sc;
    }
}
