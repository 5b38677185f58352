// Workgroup reductions, shared-memory tree (no subgroups needed). Same functions
// as reduce_subgroup.wgsl. The kernel file declares `override WG: u32` (a power of two).

var<workgroup> red_buf: array<vec4<f32>, WG>;

fn wg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red_buf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red_buf[lid] += red_buf[lid + s];
        }
        workgroupBarrier();
    }
    let t = red_buf[0];
    workgroupBarrier();
    return t;
}

fn wg_max4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red_buf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red_buf[lid] = max(red_buf[lid], red_buf[lid + s]);
        }
        workgroupBarrier();
    }
    let t = red_buf[0];
    workgroupBarrier();
    return t;
}

fn wg_sum(v: f32, lid: u32) -> f32 {
    return wg_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), lid).x;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    return wg_max4(vec4<f32>(v), lid).x;
}
