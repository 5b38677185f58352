// Log-probabilities of a sampled step, from the row's raw logits (before
// penalties, mask and temperature): log p_i = l_i - logZ, logZ = log sum exp l.
// Host mirror: qwgpu_ops::sampling::controls::logprobs. Only finite logits
// count and are listed (NaN, +inf and -inf are skipped).
//
// sample_lp_partial (one workgroup per block of `block` logits):
//   part[pb + 0] = block max m_b (f32 bits; -inf if none), part[pb + 1] =
//   sum exp(l - m_b), then the block's n best (value bits, index) pairs,
//   largest value first, lowest index on ties; (-inf, NO_INDEX) past the end.
// sample_lp_final (one workgroup, after the pick): logZ from the blocks,
//   the row's n best from the blocks' lists, and the sampled token's
//   log-probability: lp[lo + 0] = log p(out[out_off]) (NaN for an id past the
//   row), lp[lo + 1] = pairs listed, lp[lo + 2 + 2r] = id, lp[lo + 3 + 2r] =
//   log p bits.

override WG: u32 = 256u;

struct LpParams {
    vocab: u32,
    logits_off: u32,
    nblocks: u32,
    block: u32,
    // Top entries wanted (<= 20).
    n: u32,
    out_off: u32,
    lp_off: u32,
    _pad: u32,
}

const LP_NO_INDEX: u32 = 16777216u;
// A private variable, not a constant: Tint (Chromium's WebGPU) refuses
// `bitcast<f32>` of an infinite constant (see sample_common.wgsl).
var<private> LP_NEG_INF: u32 = 0xff800000u;
// u32 words per block in `part`: max, sum, 20 pairs.
const LP_PART: u32 = 42u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> part: array<u32>;
@group(0) @binding(2) var<storage, read> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> lp: array<u32>;
@group(0) @binding(4) var<uniform> lpp: LpParams;

fn lp_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// The workgroup's largest v, then the lowest index holding it; (-inf,
// LP_NO_INDEX) when no invocation has a candidate. Uniform control flow.
fn lp_argmax(v: f32, i: u32, lid: u32) -> vec2<u32> {
    let m = wg_max(v, lid);
    let neg = wg_max(select(-f32(LP_NO_INDEX), -f32(i), v == m && i != LP_NO_INDEX), lid);
    return vec2<u32>(bitcast<u32>(m), u32(-neg));
}

// (v, i) comes after (pv, pi) in the order: larger value first, then lower index.
fn after(v: f32, i: u32, pv: f32, pi: u32) -> bool {
    return v < pv || (v == pv && i > pi);
}

@compute @workgroup_size(WG)
fn sample_lp_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = wid.x;
    let start = b * lpp.block;
    let end = min(start + lpp.block, lpp.vocab);
    let pb = b * LP_PART;
    var m = bitcast<f32>(LP_NEG_INF);
    for (var i = start + lid; i < end; i += WG) {
        let v = logits[lpp.logits_off + i];
        if (lp_finite(v)) {
            m = max(m, v);
        }
    }
    m = wg_max(m, lid);
    var s = 0.0;
    if (m > bitcast<f32>(LP_NEG_INF)) {
        for (var i = start + lid; i < end; i += WG) {
            let v = logits[lpp.logits_off + i];
            if (lp_finite(v)) {
                s += exp(v - m);
            }
        }
    }
    s = wg_sum(s, lid);
    if (lid == 0u) {
        part[pb] = bitcast<u32>(m);
        part[pb + 1u] = bitcast<u32>(s);
    }
    // The n best, one per round: each round takes the best after the last.
    var pv = bitcast<f32>(0x7f800000u);
    var pi = 0u;
    for (var r = 0u; r < lpp.n; r++) {
        var bv = bitcast<f32>(LP_NEG_INF);
        var bi = LP_NO_INDEX;
        for (var i = start + lid; i < end; i += WG) {
            let v = logits[lpp.logits_off + i];
            if (lp_finite(v) && after(v, i, pv, pi) && (bi == LP_NO_INDEX || v > bv)) {
                bv = v;
                bi = i;
            }
        }
        let w = lp_argmax(bv, bi, lid);
        if (lid == 0u) {
            part[pb + 2u + 2u * r] = w.x;
            part[pb + 3u + 2u * r] = w.y;
        }
        pv = bitcast<f32>(w.x);
        pi = w.y;
    }
}

@compute @workgroup_size(WG)
fn sample_lp_final(@builtin(local_invocation_index) lid: u32) {
    var m = bitcast<f32>(LP_NEG_INF);
    for (var b = lid; b < lpp.nblocks; b += WG) {
        m = max(m, bitcast<f32>(part[b * LP_PART]));
    }
    m = wg_max(m, lid);
    var s = 0.0;
    for (var b = lid; b < lpp.nblocks; b += WG) {
        let mb = bitcast<f32>(part[b * LP_PART]);
        if (mb > bitcast<f32>(LP_NEG_INF)) {
            s += bitcast<f32>(part[b * LP_PART + 1u]) * exp(mb - m);
        }
    }
    s = wg_sum(s, lid);
    let log_z = m + log(s);
    // Merge the blocks' lists (the host keeps nblocks <= WG: one per invocation).
    var k = 0u;
    var listed = 0u;
    for (var r = 0u; r < lpp.n; r++) {
        var v = bitcast<f32>(LP_NEG_INF);
        var i = LP_NO_INDEX;
        if (lid < lpp.nblocks && k < lpp.n) {
            i = part[lid * LP_PART + 3u + 2u * k];
            if (i != LP_NO_INDEX) {
                v = bitcast<f32>(part[lid * LP_PART + 2u + 2u * k]);
            }
        }
        let w = lp_argmax(v, i, lid);
        if (w.y != LP_NO_INDEX && i == w.y) {
            k += 1u;
        }
        if (lid == 0u) {
            lp[lpp.lp_off + 2u + 2u * r] = w.y;
            lp[lpp.lp_off + 3u + 2u * r] = bitcast<u32>(bitcast<f32>(w.x) - log_z);
            if (w.y != LP_NO_INDEX) {
                listed += 1u;
            }
        }
    }
    if (lid == 0u) {
        let t = out[lpp.out_off];
        var chosen = bitcast<f32>(0x7fc00000u);
        if (t < lpp.vocab) {
            chosen = logits[lpp.logits_off + t] - log_z;
        }
        lp[lpp.lp_off] = bitcast<u32>(chosen);
        lp[lpp.lp_off + 1u] = listed;
    }
}
