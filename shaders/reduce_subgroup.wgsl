// Workgroup reductions, subgroup variant (same functions as reduce_shared.wgsl).
// The kernel file declares
// `override WG: u32` (a power of two, a multiple of the subgroup size).
// Subgroup size is never assumed: it is measured with subgroupAdd(1u). Subgroups
// are taken to be contiguous runs of local_invocation_index (as on every
// Vulkan/Metal/D3D12 driver with full subgroups).

var<workgroup> red_buf: array<vec4<f32>, WG>;

fn wg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let s = subgroupAdd(v);
    let n = subgroupAdd(1u);
    if (subgroupExclusiveAdd(1u) == 0u) {
        red_buf[lid / n] = s;
    }
    workgroupBarrier();
    var t = vec4<f32>(0.0);
    let m = WG / n;
    for (var i = 0u; i < m; i++) {
        t += red_buf[i];
    }
    workgroupBarrier();
    return t;
}

fn wg_max4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let s = subgroupMax(v);
    let n = subgroupAdd(1u);
    if (subgroupExclusiveAdd(1u) == 0u) {
        red_buf[lid / n] = s;
    }
    workgroupBarrier();
    var t = red_buf[0];
    let m = WG / n;
    for (var i = 1u; i < m; i++) {
        t = max(t, red_buf[i]);
    }
    workgroupBarrier();
    return t;
}

fn wg_sum(v: f32, lid: u32) -> f32 {
    return wg_sum4(vec4<f32>(v, 0.0, 0.0, 0.0), lid).x;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    return wg_max4(vec4<f32>(v), lid).x;
}
