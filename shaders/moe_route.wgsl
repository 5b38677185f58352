// MoE router, one workgroup per token:
//   p = softmax(logits[t, :E]) in f32 (max subtracted), top-k by p (ties: lower
//   expert first), weights renormalised over the k chosen (qwgpu_ops::moe::route).
// Writes ids[t*k + s] (u32) and weights[t*k + s] (f32), most likely first.
// Each thread ranks its experts by counting the experts that come before
// them in the total order "higher p, then lower index" (E compare steps from
// workgroup memory, one barrier): the ones ranked below k are the answer, in
// rank order. (A bitonic sort took log2(E)(log2(E)+1)/2 barriers, 36 for
// E = 256: 17 µs per token on the H100.) Needs a reduction file first in the
// module.

struct RouteParams {
    t: u32,
    experts: u32,
    top_k: u32,
    _pad: u32,
}

override WG: u32 = 256u;
// Size of the probability array: >= experts.
override EMAX: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<uniform> rp: RouteParams;

var<workgroup> key: array<f32, EMAX>;
// Rank r < k: expert and probability.
var<workgroup> top_i: array<u32, EMAX>;
var<workgroup> top_p: array<f32, EMAX>;
var<workgroup> top_sum: f32;

// Whether (a, ia) comes before (b, ib): higher probability, then lower index.
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    return a > b || (a == b && ia < ib);
}

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
    var m = -0x1.fffffep+127f;
    for (var e = lid; e < e_n; e += WG) {
        m = max(m, logits[base + e]);
    }
    m = wg_max(m, lid);
    var s = 0.0;
    for (var e = lid; e < e_n; e += WG) {
        s += exp(logits[base + e] - m);
    }
    s = wg_sum(s, lid);
    for (var e = lid; e < e_n; e += WG) {
        key[e] = exp(logits[base + e] - m) / s;
    }
    // Ranks a NaN probability leaves unfilled read as expert 0, weight 0.
    for (var r = lid; r < rp.top_k; r += WG) {
        top_i[r] = 0u;
        top_p[r] = 0.0;
    }
    workgroupBarrier();
    for (var e = lid; e < e_n; e += WG) {
        let pe = key[e];
        var r = 0u;
        for (var j = 0u; j < e_n; j++) {
            r += select(0u, 1u, before(key[j], j, pe, e));
        }
        if (r < rp.top_k) {
            top_i[r] = e;
            top_p[r] = pe;
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var sum = 0.0;
        for (var r = 0u; r < rp.top_k; r++) {
            sum += top_p[r];
        }
        top_sum = sum;
    }
    workgroupBarrier();
    if (live) {
        let o = t * rp.top_k;
        for (var r = lid; r < rp.top_k; r += WG) {
            ids[o + r] = top_i[r];
            weights[o + r] = top_p[r] / top_sum;
        }
    }
}
