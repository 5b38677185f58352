// Decode attention, second pass: one workgroup per q head merges the non-empty
// splits' partials (of every page) with the log-sum-exp rule, o = Σ e^(m_s−M) O_s / Σ e^(m_s−M) l_s,
// and applies the output gate: out = o · sigmoid(gate) (gate = second half of the
// head's q_proj rows, read from qkv). Split weights are computed once into
// workgroup memory; the weighted sum runs as (split phase, vec4 column) threads,
// 4 splits per batch, and the phases are summed through workgroup memory.
// Needs a reduce file first, then step.wgsl, attention_common.wgsl.
//
// Rows mode (ap.rows != 0, a batched decode step): workgroup (h, row) merges row
// `row`'s partials (each session's decode wrote its own part of the buffers) and
// gates with and writes row `row` of qkv and out: one launch for every session.

override WG: u32 = 256u;
override HD: u32 = 256u;
// Most splits (MAX_SPLITS on the host).
const MAX_SPLITS: u32 = 256u;

@group(0) @binding(0) var<storage, read> part_o: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> ap: AttnParams;

var<workgroup> w_sh: array<f32, MAX_SPLITS>;
var<workgroup> acc_sh: array<vec4<f32>, WG>;

// w · o, or 0 for an empty split (whose stale o may be anything, NaN included).
fn merge_term(w: f32, o: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), w * o, w != 0.0);
}

fn merge_nsplit(row: u32) -> u32 {
    var t = array<u32, 8>(ap.nsplits0, ap.nsplits1, ap.nsplits2, ap.nsplits3, ap.nsplits4,
        ap.nsplits5, ap.nsplits6, ap.nsplits7);
    return (t[row / 2u] >> (16u * (row % 2u))) & 0xffffu;
}

@compute @workgroup_size(WG)
fn attn_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let nh = ap.nh;
    // Every page's splits; empty ones have sum 0 and weight 0 (their partial
    // outputs are stale and never enter the sum).
    var n = ap.nsplit;
    var ob = 0u; // first vec4 of the row's part_o
    var mb = 0u; // first vec2 of the row's part_ml
    var gq = 0u; // first vec4 of the row's qkv
    var oo = 0u; // first vec4 of the row's out
    if (ap.rows != 0u) {
        let row = wid.y;
        n = merge_nsplit(row);
        ob = row * ap.o_stride;
        mb = row * ap.ml_stride;
        gq = row * (ap.qkv_w / 4u);
        oo = row * nh * (HD / 4u);
    }
    var mx = NEG_BIG;
    for (var s = lid; s < n; s += WG) {
        mx = max(mx, part_ml[mb + s * nh + h].x);
    }
    mx = wg_max(mx, lid);
    var den = 0.0;
    for (var s = lid; s < n; s += WG) {
        let ml = part_ml[mb + s * nh + h];
        let w = select(0.0, exp(ml.x - mx), ml.y > 0.0);
        w_sh[s] = w;
        den += w * ml.y;
    }
    // (wg_sum's barriers also publish w_sh.)
    den = wg_sum(den, lid);

    let d4n = HD / 4u;
    let sp_n = WG / d4n;
    let sp = lid / d4n;
    let c = lid % d4n;
    var acc = vec4<f32>(0.0);
    if (sp < sp_n) {
        var s = sp;
        let stride = nh * d4n * sp_n;
        for (; s + 3u * sp_n < n; s += 4u * sp_n) {
            let b = ob + (s * nh + h) * d4n + c;
            acc += merge_term(w_sh[s], part_o[b]) + merge_term(w_sh[s + sp_n], part_o[b + stride])
                + merge_term(w_sh[s + 2u * sp_n], part_o[b + 2u * stride])
                + merge_term(w_sh[s + 3u * sp_n], part_o[b + 3u * stride]);
        }
        for (; s < n; s += sp_n) {
            acc += merge_term(w_sh[s], part_o[ob + (s * nh + h) * d4n + c]);
        }
    }
    acc_sh[lid] = acc;
    workgroupBarrier();
    if (lid < d4n) {
        var o = vec4<f32>(0.0);
        for (var p = 0u; p < sp_n; p++) {
            o += acc_sh[p * d4n + lid];
        }
        let gate = qkv[gq + (h * 2u * HD + HD) / 4u + lid];
        out[oo + h * d4n + lid] = o / den * attn_sigmoid4(gate);
    }
}
