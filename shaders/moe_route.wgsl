// MoE router, one workgroup per token:
//   p = softmax(logits[t, :E]) in f32 (max subtracted), top-k by p (ties: lower
//   expert first), weights renormalised over the k chosen (qwgpu_ops::moe::route).
// Writes ids[t*k + s] (u32) and weights[t*k + s] (f32), most likely first.
// The row lives in workgroup memory; each expert's rank (experts with a higher p,
// or an equal p and a lower index) is counted in parallel, and those ranked
// below k write their slot. Needs a reduction file first in the module.

struct RouteParams {
    t: u32,
    experts: u32,
    top_k: u32,
    _pad: u32,
}

override WG: u32 = 64u;
// Capacity of the row buffer (>= experts).
override EMAX: u32 = 256u;
// Largest supported top-k.
const KMAX: u32 = 64u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<uniform> rp: RouteParams;

var<workgroup> prob: array<vec4<f32>, EMAX / 4u>;
var<workgroup> sel_id: array<u32, KMAX>;
var<workgroup> sel_p: array<f32, KMAX>;

@compute @workgroup_size(WG)
fn moe_route(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroups past T (grid rounding) work on a clamped row and store nothing,
    // so all invocations reach every barrier.
    let t_raw = wid.y * nwg.x + wid.x;
    let live = t_raw < rp.t;
    let t = min(t_raw, rp.t - 1u);
    let e_n = rp.experts;
    let base = t * e_n;
    var m = -3.4028235e38;
    for (var e = lid; e < e_n; e += WG) {
        let v = logits[base + e];
        prob[e / 4u][e % 4u] = v;
        m = max(m, v);
    }
    m = wg_max(m, lid);
    var s = 0.0;
    for (var e = lid; e < e_n; e += WG) {
        let x = exp(prob[e / 4u][e % 4u] - m);
        prob[e / 4u][e % 4u] = x;
        s += x;
    }
    s = wg_sum(s, lid);
    for (var e = lid; e < e_n; e += WG) {
        prob[e / 4u][e % 4u] = prob[e / 4u][e % 4u] / s;
    }
    // Padding up to a multiple of 4 never ranks above a probability.
    let n4 = (e_n + 3u) / 4u;
    if (lid < 4u * n4 - e_n) {
        let e = e_n + lid;
        prob[e / 4u][e % 4u] = -1.0;
    }
    workgroupBarrier();
    // Rank of each expert = how many come before it (higher p, or equal p and a
    // lower index): the experts ranked below k fill slot `rank` directly, all in
    // parallel (no sequential rounds).
    for (var e = lid; e < e_n; e += WG) {
        let v = prob[e / 4u][e % 4u];
        let vv = vec4<f32>(v);
        var ranks = vec4<u32>(0u);
        for (var o4 = 0u; o4 < n4; o4++) {
            let w = prob[o4];
            let o = vec4<u32>(4u * o4) + vec4<u32>(0u, 1u, 2u, 3u);
            ranks += select(vec4<u32>(0u), vec4<u32>(1u), (w > vv) | ((w == vv) & (o < vec4<u32>(e))));
        }
        let rank = (ranks.x + ranks.y) + (ranks.z + ranks.w);
        if (rank < rp.top_k) {
            sel_id[rank] = e;
            sel_p[rank] = v;
        }
    }
    workgroupBarrier();
    if (lid == 0u && live) {
        var sum = 0.0;
        for (var r = 0u; r < rp.top_k; r++) {
            sum += sel_p[r];
        }
        let o = t * rp.top_k;
        for (var r = 0u; r < rp.top_k; r++) {
            ids[o + r] = sel_id[r];
            weights[o + r] = sel_p[r] / sum;
        }
    }
}
