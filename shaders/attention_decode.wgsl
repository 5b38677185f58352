// Decode attention (T = 1), split-K flash decoding over one KV-cache page per
// launch. Workgroup (split, kv head, head block): the GB q heads of one kv head
// (a head block) share every K/V load; the split covers page keys
// [split*chunk, (split+1)*chunk) of the page's kv_len keys visible at pos,
// chunk = attn_chunk(kv_len, nsplit), in tiles of WG keys with an online softmax.
// Per tile:
// - scores: TPK lanes per key (coalesced 64-byte runs of a K row, loads batched
//   4 deep so a thread never waits on one load at a time), lane partials summed
//   through workgroup memory, WG/TPK keys per pass; q staged in workgroup memory;
// - workgroup max/sum per 4 heads (wg_max4/wg_sum4), probabilities to workgroup
//   memory;
// - P·V with thread (key phase, vec4 column), V rows read coalesced, 4 keys per
//   batch.
// Writes unnormalised partial outputs and (max, sum) per (split, head) at partial
// slot split_base + split; attention_merge.wgsl combines every page's slots with
// the log-sum-exp rule. Splits past the visible keys write sum 0 and exit. Needs a reduce file first, then step.wgsl,
// attention_common.wgsl.

override WG: u32 = 256u;
override HD: u32 = 256u;
// q heads per workgroup (<= GB_MAX); chosen by the host to fit workgroup memory.
override GB: u32 = 4u;
const GB_MAX: u32 = 8u;
// Lanes per key in the score pass.
const TPK: u32 = 4u;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> keys: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> values: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part_o: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(5) var<uniform> st: Step;
@group(0) @binding(6) var<uniform> ap: AttnParams;

// The block's queries; reused at the end to sum the key phases' outputs.
var<workgroup> q_sh: array<vec4<f32>, GB * HD / 4u>;
// [GB][WG]: lane partial scores, then the tile's probabilities.
var<workgroup> p_sh: array<f32, GB * WG>;
// Running max, sum and last rescale factor per head (the same for every thread).
var<workgroup> m_sh: array<f32, GB_MAX>;
var<workgroup> l_sh: array<f32, GB_MAX>;
var<workgroup> a_sh: array<f32, GB_MAX>;

@compute @workgroup_size(WG)
fn attn_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let kvh = wid.y / ap.nhb;
    let hb = wid.y % ap.nhb;
    let h0 = kvh * ap.group + hb * GB;
    let ng = min(GB, ap.group - hb * GB);
    // Keys of this launch's page visible at pos (page-local indices 0 .. kv_len).
    let kv_len = page_visible(st.pos);
    let chunk = attn_chunk(kv_len, ap.nsplit);
    let k0 = split * chunk;
    let slot = ap.split_base + split;
    if (k0 >= kv_len) {
        // An empty split: sum 0 tells the merge to skip it.
        if (lid < ng) {
            part_ml[slot * ap.nh + h0 + lid] = vec2<f32>(NEG_BIG, 0.0);
        }
        return;
    }
    let k1 = min(k0 + chunk, kv_len);
    let d4n = HD / 4u;

    for (var i = lid; i < GB * d4n; i += WG) {
        let g = i / d4n;
        var v = vec4<f32>(0.0);
        if (g < ng) {
            v = q[(h0 + g) * d4n + i % d4n];
        }
        q_sh[i] = v;
    }
    workgroupBarrier();

    var o: array<vec4<f32>, GB_MAX>;
    for (var g = 0u; g < GB_MAX; g++) {
        o[g] = vec4<f32>(0.0);
    }
    if (lid < GB_MAX) {
        m_sh[lid] = NEG_BIG;
        l_sh[lid] = 0.0;
    }
    // Score passes: lane j of key kq (WG / TPK keys per pass).
    let kpp = WG / TPK;
    let kq = lid / TPK;
    let j = lid % TPK;
    // P·V layout: kp_n key phases × d4n columns (threads past kp_n*d4n idle).
    let kp_n = WG / d4n;
    let kp = lid / d4n;
    let c = lid % d4n;

    for (var kt = k0; kt < k1; kt += WG) {
        let nk = min(WG, k1 - kt);
        // Scores of this thread's key (kt + lid), built pass by pass.
        var s: array<f32, GB_MAX>;
        for (var g = 0u; g < GB_MAX; g++) {
            s[g] = 0.0;
        }
        for (var ps = 0u; ps * kpp < nk; ps++) {
            let kk = ps * kpp + kq;
            var acc: array<f32, GB_MAX>;
            for (var g = 0u; g < GB_MAX; g++) {
                acc[g] = 0.0;
            }
            if (kk < nk) {
                let kb = ((kt + kk) * ap.nkv + kvh) * d4n;
                var e = j;
                for (; e + 3u * TPK < d4n; e += 4u * TPK) {
                    let x0 = keys[kb + e];
                    let x1 = keys[kb + e + TPK];
                    let x2 = keys[kb + e + 2u * TPK];
                    let x3 = keys[kb + e + 3u * TPK];
                    for (var g = 0u; g < GB; g++) {
                        let qb = g * d4n + e;
                        acc[g] += dot(q_sh[qb], x0) + dot(q_sh[qb + TPK], x1)
                            + dot(q_sh[qb + 2u * TPK], x2) + dot(q_sh[qb + 3u * TPK], x3);
                    }
                }
                for (; e < d4n; e += TPK) {
                    let x = keys[kb + e];
                    for (var g = 0u; g < GB; g++) {
                        acc[g] += dot(q_sh[g * d4n + e], x);
                    }
                }
            }
            for (var g = 0u; g < GB; g++) {
                p_sh[g * WG + lid] = acc[g];
            }
            workgroupBarrier();
            if (lid / kpp == ps) {
                let base = (lid % kpp) * TPK;
                for (var g = 0u; g < GB; g++) {
                    var t = 0.0;
                    for (var i = 0u; i < TPK; i++) {
                        t += p_sh[g * WG + base + i];
                    }
                    s[g] = t;
                }
            }
            workgroupBarrier();
        }
        // This thread's scores to p_sh (its own column: no barrier needed).
        let valid = lid < nk;
        for (var g = 0u; g < GB; g++) {
            p_sh[g * WG + lid] = select(NEG_BIG, s[g] * ap.scale, valid);
        }
        // Softmax statistics 4 heads at a time, in vec4 lanes (no dynamically
        // indexed private arrays: they would live in slow local memory).
        for (var g4 = 0u; g4 < GB; g4 += 4u) {
            let sv = vec4<f32>(
                p_sh[g4 * WG + lid],
                p_sh[min(g4 + 1u, GB - 1u) * WG + lid],
                p_sh[min(g4 + 2u, GB - 1u) * WG + lid],
                p_sh[min(g4 + 3u, GB - 1u) * WG + lid]
            );
            let tmax = wg_max4(sv, lid);
            let m_old = vec4<f32>(m_sh[g4], m_sh[g4 + 1u], m_sh[g4 + 2u], m_sh[g4 + 3u]);
            let m_new = max(m_old, tmax);
            let alpha = exp(m_old - m_new);
            let p = select(vec4<f32>(0.0), exp(sv - m_new), valid);
            p_sh[g4 * WG + lid] = p.x;
            if (g4 + 1u < GB) {
                p_sh[(g4 + 1u) * WG + lid] = p.y;
            }
            if (g4 + 2u < GB) {
                p_sh[(g4 + 2u) * WG + lid] = p.z;
            }
            if (g4 + 3u < GB) {
                p_sh[(g4 + 3u) * WG + lid] = p.w;
            }
            // Every thread has read m_sh before wg_sum4's first barrier.
            let psum = wg_sum4(p, lid);
            if (lid == 0u) {
                let l_new = vec4<f32>(l_sh[g4], l_sh[g4 + 1u], l_sh[g4 + 2u], l_sh[g4 + 3u]) * alpha + psum;
                for (var i = 0u; i < 4u; i++) {
                    m_sh[g4 + i] = m_new[i];
                    l_sh[g4 + i] = l_new[i];
                    a_sh[g4 + i] = alpha[i];
                }
            }
        }
        workgroupBarrier();
        if (kp < kp_n) {
            for (var g = 0u; g < GB; g++) {
                o[g] *= a_sh[g];
            }
            var kk = kp;
            for (; kk + 3u * kp_n < nk; kk += 4u * kp_n) {
                let vb = ((kt + kk) * ap.nkv + kvh) * d4n + c;
                let vs = ap.nkv * d4n * kp_n;
                let v0 = values[vb];
                let v1 = values[vb + vs];
                let v2 = values[vb + 2u * vs];
                let v3 = values[vb + 3u * vs];
                for (var g = 0u; g < GB; g++) {
                    let pb = g * WG + kk;
                    o[g] += p_sh[pb] * v0 + p_sh[pb + kp_n] * v1 + p_sh[pb + 2u * kp_n] * v2
                        + p_sh[pb + 3u * kp_n] * v3;
                }
            }
            for (; kk < nk; kk += kp_n) {
                let v = values[((kt + kk) * ap.nkv + kvh) * d4n + c];
                for (var g = 0u; g < GB; g++) {
                    o[g] += p_sh[g * WG + kk] * v;
                }
            }
        }
        workgroupBarrier();
    }

    // Sum the key phases into q_sh (queries no longer needed), one phase at a time.
    for (var p = 0u; p < kp_n; p++) {
        if (kp == p) {
            for (var g = 0u; g < GB; g++) {
                let idx = g * d4n + c;
                if (p == 0u) {
                    q_sh[idx] = o[g];
                } else {
                    q_sh[idx] += o[g];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = lid; i < ng * d4n; i += WG) {
        let g = i / d4n;
        part_o[(slot * ap.nh + h0 + g) * d4n + i % d4n] = q_sh[i];
    }
    if (lid < ng) {
        part_ml[slot * ap.nh + h0 + lid] = vec2<f32>(m_sh[lid], l_sh[lid]);
    }
}
