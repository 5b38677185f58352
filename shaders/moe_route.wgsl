// MoE router, one workgroup per token:
//   p = softmax(logits[t, :E]) in f32 (max subtracted), top-k by p (ties: lower
//   expert first), weights renormalised over the k chosen (qwgpu_ops::moe::route).
// Writes ids[t*k + s] (u32) and weights[t*k + s] (f32), most likely first.
// The row is sorted in workgroup memory by a bitonic network over EMAX (a power
// of two >= E) (p, index) pairs in the total order "higher p, then lower
// index" (padding p = -1 sorts last); the first k are the answer. log2(EMAX)
// (log2(EMAX)+1)/2 stages of one compare-exchange per pair, a barrier each:
// ~45 for E = 512, far shorter than k sequential argmax rounds or an O(E^2)
// rank count. Needs a reduction file first in the module.

struct RouteParams {
    t: u32,
    experts: u32,
    top_k: u32,
    _pad: u32,
}

override WG: u32 = 256u;
// Sort size: a power of two >= experts.
override EMAX: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<uniform> rp: RouteParams;

var<workgroup> key: array<f32, EMAX>;
var<workgroup> idx: array<u32, EMAX>;
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
    var m = -3.4028235e38;
    for (var e = lid; e < e_n; e += WG) {
        m = max(m, logits[base + e]);
    }
    m = wg_max(m, lid);
    var s = 0.0;
    for (var e = lid; e < e_n; e += WG) {
        s += exp(logits[base + e] - m);
    }
    s = wg_sum(s, lid);
    for (var e = lid; e < EMAX; e += WG) {
        var p = -1.0;
        if (e < e_n) {
            p = exp(logits[base + e] - m) / s;
        }
        key[e] = p;
        idx[e] = e;
    }
    workgroupBarrier();
    // Bitonic sort into "before" order.
    for (var k = 2u; k <= EMAX; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var q = lid; q < EMAX / 2u; q += WG) {
                let a = 2u * j * (q / j) + (q % j);
                let b = a + j;
                let ka = key[a];
                let kb = key[b];
                let ia = idx[a];
                let ib = idx[b];
                // Blocks with (a & k) == 0 end in "before" order, the others reversed.
                if (before(kb, ib, ka, ia) == ((a & k) == 0u)) {
                    key[a] = kb;
                    key[b] = ka;
                    idx[a] = ib;
                    idx[b] = ia;
                }
            }
            workgroupBarrier();
        }
    }
    if (lid == 0u) {
        var sum = 0.0;
        for (var r = 0u; r < rp.top_k; r++) {
            sum += key[r];
        }
        top_sum = sum;
    }
    workgroupBarrier();
    if (live) {
        let o = t * rp.top_k;
        for (var r = lid; r < rp.top_k; r += WG) {
            ids[o + r] = idx[r];
            weights[o + r] = key[r] / top_sum;
        }
    }
}
