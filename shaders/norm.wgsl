// RMSNorm, one workgroup per row, f32 math:
//   y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * (one_plus ? 1 + w : w)
// Row r of x starts at x_off + r * width (f32 elements); y rows are dense.
// Two entry points share this file: `rms_norm_vec4` (width and x_off multiples
// of 4: vec4 loads) and `rms_norm` (any sizes). Each binds only its own
// variables, so the duplicate binding numbers never meet in one pipeline.
// Needs a reduction file (wg_sum) first in the module.

struct NormParams {
    x_off: u32,
    rows: u32,
    width: u32,
    one_plus: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

@group(0) @binding(0) var<storage, read> x1: array<f32>;
@group(0) @binding(1) var<storage, read> w1: array<f32>;
@group(0) @binding(2) var<storage, read_write> y1: array<f32>;

@group(0) @binding(3) var<uniform> np: NormParams;

// 1 / sqrt(mean + eps) for a row's sum of squares.
fn norm_scale(ss: f32) -> f32 {
    return 1.0 / sqrt(ss / f32(np.width) + np.eps);
}

@compute @workgroup_size(WG)
fn rms_norm_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroups past `rows` (grid rounding) compute a clamped row and store nothing,
    // so every invocation reaches the barriers.
    let row_raw = wid.y * nwg.x + wid.x;
    let live = row_raw < np.rows;
    let row = min(row_raw, np.rows - 1u);
    let n4 = np.width / 4u;
    let xb = np.x_off / 4u + row * n4;
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < n4; i += WG) {
        let v = x4[xb + i];
        acc += v * v;
    }
    let ss = wg_sum(acc.x + acc.y + acc.z + acc.w, lid);
    let r = norm_scale(ss);
    if (!live) {
        return;
    }
    let yb = row * n4;
    for (var i = lid; i < n4; i += WG) {
        let wv = w4[i];
        let g = select(wv, vec4<f32>(1.0) + wv, np.one_plus != 0u);
        y4[yb + i] = x4[xb + i] * r * g;
    }
}

@compute @workgroup_size(WG)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row_raw = wid.y * nwg.x + wid.x;
    let live = row_raw < np.rows;
    let row = min(row_raw, np.rows - 1u);
    let xb = np.x_off + row * np.width;
    var acc = 0.0;
    for (var i = lid; i < np.width; i += WG) {
        let v = x1[xb + i];
        acc += v * v;
    }
    let ss = wg_sum(acc, lid);
    let r = norm_scale(ss);
    if (!live) {
        return;
    }
    let yb = row * np.width;
    for (var i = lid; i < np.width; i += WG) {
        let wv = w1[i];
        let g = select(wv, 1.0 + wv, np.one_plus != 0u);
        y1[yb + i] = x1[xb + i] * r * g;
    }
}
