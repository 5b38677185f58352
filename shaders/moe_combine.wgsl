// MoE combine, elementwise over [T, H]:
//   h[t, c] += sum_s weights[t*k + s] * expert_out[t*k + s, c] + sigmoid(gate_logit[t]) * shared_out[t, c]
// (the expert sum in slot order, then the gated shared expert, in f32).
// `moe_combine_vec4` (H a multiple of 4) and `moe_combine` (any H) bind their
// own views of the same buffers. Needs numeric.wgsl (sigmoid) in the module.

struct CombineParams {
    t: u32,
    top_k: u32,
    // Row length in loads (H/4 for the vec4 entry, H otherwise).
    n: u32,
    // Workgroups per token row.
    groups_per_row: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> xo4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> cw: array<f32>;
@group(0) @binding(2) var<storage, read> so4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gl: array<f32>;
@group(0) @binding(4) var<storage, read_write> h4: array<vec4<f32>>;

@group(0) @binding(0) var<storage, read> xo1: array<f32>;
@group(0) @binding(2) var<storage, read> so1: array<f32>;
@group(0) @binding(4) var<storage, read_write> h1: array<f32>;

@group(0) @binding(5) var<uniform> cp: CombineParams;

@compute @workgroup_size(WG)
fn moe_combine_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lin = wid.y * nwg.x + wid.x;
    let t = lin / cp.groups_per_row;
    let c = (lin % cp.groups_per_row) * WG + lid;
    if (t >= cp.t || c >= cp.n) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < cp.top_k; s++) {
        let r = t * cp.top_k + s;
        acc += cw[r] * xo4[r * cp.n + c];
    }
    let g = sigmoid(gl[t]);
    let i = t * cp.n + c;
    h4[i] = h4[i] + acc + g * so4[i];
}

@compute @workgroup_size(WG)
fn moe_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lin = wid.y * nwg.x + wid.x;
    let t = lin / cp.groups_per_row;
    let c = (lin % cp.groups_per_row) * WG + lid;
    if (t >= cp.t || c >= cp.n) {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < cp.top_k; s++) {
        let r = t * cp.top_k + s;
        acc += cw[r] * xo1[r * cp.n + c];
    }
    let g = sigmoid(gl[t]);
    let i = t * cp.n + c;
    h1[i] = h1[i] + acc + g * so1[i];
}
