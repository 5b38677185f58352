// Prefill attention (T > 1), tiled causal flash attention with online softmax and
// the output gate fused, over one KV-cache page per launch. Rows are (token, q
// head) pairs of one kv head, token-major, so the G q heads sharing a kv head
// share every K/V tile; a workgroup takes BM rows and walks the page's keys up to
// pos + its last token in tiles of BN. Pages run as successive launches: the
// first starts the online softmax, later ones resume it from the carry scratch
// (running output, max and sum per row), the last applies 1/sum and the gate.
// S = Q·Kᵀ goes through workgroup memory in hd slices of 32 dims (thread = 2
// rows × 2 keys, so each staged value is read once per 2 multiply-adds), the
// softmax statistics are per row, and O += P·V keeps O in registers as (row
// group, vec4 column) so V rows are read coalesced from the cache, 4 keys per
// batch. Everything fits 16 KiB of workgroup memory and 256 invocations.
// Needs step.wgsl, attention_common.wgsl.

override WG: u32 = 256u;
override HD: u32 = 256u;
// q heads per kv head.
override G: u32 = 1u;

// Rows per workgroup, keys per tile, vec4 per hd slice, padded K row stride.
const BM: u32 = 16u;
const BN: u32 = 64u;
const DS4: u32 = 8u;
const KS: u32 = 9u;
// Most rows one thread accumulates in P·V: BM / (WG / (HD/4)) for HD <= 256.
const OR: u32 = 4u;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> keys: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> values: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> st: Step;
@group(0) @binding(6) var<uniform> ap: AttnParams;
// Softmax state between page launches: [T, nh, hd] outputs, [T, nh] (max, sum).
@group(0) @binding(7) var<storage, read_write> carry_o: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> carry_ml: array<vec2<f32>>;

var<workgroup> q_sl: array<vec4<f32>, BM * DS4>;
var<workgroup> k_sl: array<vec4<f32>, BN * KS>;
var<workgroup> p_sh: array<f32, BM * BN>;
var<workgroup> m_sh: array<f32, BM>;
var<workgroup> l_sh: array<f32, BM>;
var<workgroup> a_sh: array<f32, BM>;

@compute @workgroup_size(WG)
fn attn_prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kvh = wid.y;
    let rows = ap.t * G;
    let r0 = wid.x * BM;
    let d4n = HD / 4u;
    let last_row = min(r0 + BM, rows) - 1u;
    // Keys of this page the block needs: up to its last token's position
    // (inclusive). Key indices below are positions; page rows are key - p0.
    let p0 = ap.page_start;
    let kv_end = p0 + page_visible(st.pos + last_row / G);

    // Score layout: rows si and si + 1, keys sj and sj + 32 of the tile.
    let si = (lid / 32u) * 2u;
    let sj = lid % 32u;
    let srow0_ok = r0 + si < rows;
    let srow1_ok = r0 + si + 1u < rows;
    let s_lim0 = st.pos + (r0 + si) / G;
    let s_lim1 = st.pos + (r0 + si + 1u) / G;
    // P·V layout: row groups × vec4 columns; rows rg, rg + rg_n, ...
    let rg_n = WG / d4n;
    let rg = lid / d4n;
    let c = lid % d4n;
    let first = (ap.flags & PAGE_FIRST) != 0u;
    var o: array<vec4<f32>, OR>;
    for (var k = 0u; k < OR; k++) {
        o[k] = vec4<f32>(0.0);
        let i = rg + k * rg_n;
        let r = r0 + i;
        if (!first && rg < rg_n && i < BM && r < rows) {
            o[k] = carry_o[((r / G) * ap.nh + kvh * G + r % G) * d4n + c];
        }
    }
    if (lid < BM) {
        var ml = vec2<f32>(NEG_BIG, 0.0);
        let r = r0 + lid;
        if (!first && r < rows) {
            ml = carry_ml[(r / G) * ap.nh + kvh * G + r % G];
        }
        m_sh[lid] = ml.x;
        l_sh[lid] = ml.y;
    }
    workgroupBarrier();

    for (var kt = p0; kt < kv_end; kt += BN) {
        var s00 = 0.0;
        var s01 = 0.0;
        var s10 = 0.0;
        var s11 = 0.0;
        for (var ds = 0u; ds < d4n; ds += DS4) {
            if (lid < BM * DS4) {
                let i = lid / DS4;
                let j = lid % DS4;
                let r = r0 + i;
                var v = vec4<f32>(0.0);
                if (r < rows && ds + j < d4n) {
                    let h = kvh * G + r % G;
                    v = q[((r / G) * ap.nh + h) * d4n + ds + j];
                }
                q_sl[i * DS4 + j] = v;
            }
            for (var i = lid; i < BN * DS4; i += WG) {
                let kk = i / DS4;
                let j = i % DS4;
                let key = kt + kk;
                var v = vec4<f32>(0.0);
                if (key < kv_end && ds + j < d4n) {
                    v = keys[((key - p0) * ap.nkv + kvh) * d4n + ds + j];
                }
                k_sl[kk * KS + j] = v;
            }
            workgroupBarrier();
            for (var j = 0u; j < DS4; j++) {
                let q0 = q_sl[si * DS4 + j];
                let q1 = q_sl[(si + 1u) * DS4 + j];
                let k0 = k_sl[sj * KS + j];
                let k1 = k_sl[(sj + 32u) * KS + j];
                s00 += dot(q0, k0);
                s01 += dot(q0, k1);
                s10 += dot(q1, k0);
                s11 += dot(q1, k1);
            }
            workgroupBarrier();
        }
        let key0 = kt + sj;
        let key1 = key0 + 32u;
        let ok00 = srow0_ok && key0 <= s_lim0 && key0 < kv_end;
        let ok01 = srow0_ok && key1 <= s_lim0 && key1 < kv_end;
        let ok10 = srow1_ok && key0 <= s_lim1 && key0 < kv_end;
        let ok11 = srow1_ok && key1 <= s_lim1 && key1 < kv_end;
        s00 = select(NEG_BIG, s00 * ap.scale, ok00);
        s01 = select(NEG_BIG, s01 * ap.scale, ok01);
        s10 = select(NEG_BIG, s10 * ap.scale, ok10);
        s11 = select(NEG_BIG, s11 * ap.scale, ok11);
        let b0 = si * BN + sj;
        let b1 = b0 + BN;
        p_sh[b0] = s00;
        p_sh[b0 + 32u] = s01;
        p_sh[b1] = s10;
        p_sh[b1 + 32u] = s11;
        workgroupBarrier();
        if (lid < BM) {
            var mx = NEG_BIG;
            for (var j = 0u; j < BN; j++) {
                mx = max(mx, p_sh[lid * BN + j]);
            }
            let m_old = m_sh[lid];
            let m_new = max(m_old, mx);
            m_sh[lid] = m_new;
            a_sh[lid] = exp(m_old - m_new);
        }
        workgroupBarrier();
        let m0 = m_sh[si];
        let m1 = m_sh[si + 1u];
        p_sh[b0] = select(0.0, exp(s00 - m0), ok00);
        p_sh[b0 + 32u] = select(0.0, exp(s01 - m0), ok01);
        p_sh[b1] = select(0.0, exp(s10 - m1), ok10);
        p_sh[b1 + 32u] = select(0.0, exp(s11 - m1), ok11);
        workgroupBarrier();
        if (lid < BM) {
            var sum = 0.0;
            for (var j = 0u; j < BN; j++) {
                sum += p_sh[lid * BN + j];
            }
            l_sh[lid] = l_sh[lid] * a_sh[lid] + sum;
        }
        if (rg < rg_n) {
            for (var k = 0u; k < OR; k++) {
                let i = rg + k * rg_n;
                if (i < BM) {
                    o[k] *= a_sh[i];
                }
            }
            let nk = min(BN, kv_end - kt);
            let vs = ap.nkv * d4n;
            var kk = 0u;
            for (; kk + 4u <= nk; kk += 4u) {
                let vb = ((kt - p0 + kk) * ap.nkv + kvh) * d4n + c;
                let v0 = values[vb];
                let v1 = values[vb + vs];
                let v2 = values[vb + 2u * vs];
                let v3 = values[vb + 3u * vs];
                for (var k = 0u; k < OR; k++) {
                    let i = rg + k * rg_n;
                    if (i < BM) {
                        let pb = i * BN + kk;
                        o[k] += p_sh[pb] * v0 + p_sh[pb + 1u] * v1 + p_sh[pb + 2u] * v2
                            + p_sh[pb + 3u] * v3;
                    }
                }
            }
            for (; kk < nk; kk++) {
                let v = values[((kt - p0 + kk) * ap.nkv + kvh) * d4n + c];
                for (var k = 0u; k < OR; k++) {
                    let i = rg + k * rg_n;
                    if (i < BM) {
                        o[k] += p_sh[i * BN + kk] * v;
                    }
                }
            }
        }
        workgroupBarrier();
    }

    let last = (ap.flags & PAGE_LAST) != 0u;
    if (rg < rg_n) {
        for (var k = 0u; k < OR; k++) {
            let i = rg + k * rg_n;
            let r = r0 + i;
            if (i < BM && r < rows) {
                let tok = r / G;
                let h = kvh * G + r % G;
                if (last) {
                    let gate = qkv[(tok * ap.qkv_w + h * 2u * HD + HD) / 4u + c];
                    out[(tok * ap.nh + h) * d4n + c] = o[k] / l_sh[i] * attn_sigmoid4(gate);
                } else {
                    carry_o[(tok * ap.nh + h) * d4n + c] = o[k];
                }
            }
        }
    }
    let r = r0 + lid;
    if (!last && lid < BM && r < rows) {
        carry_ml[(r / G) * ap.nh + kvh * G + r % G] = vec2<f32>(m_sh[lid], l_sh[lid]);
    }
}
