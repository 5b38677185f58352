// Chunked GDN, step 2 (sequential over chunks): one workgroup per (v-block of BV
// columns, v-head) carries its state block S [DK, BV] (workgroup memory) through all
// chunks. Per chunk n:
//   snap[n] = S;   V' = U − W·S (written over U);
//   S ← e^{γ_last} S + (K̂ ⊙ e^{γ_last − γ})ᵀ V'
// and the final S goes back to the state buffer ([nv, dk, dv] row-major).
// W and K̂ reach the products through `stg` in coalesced slices of 32 k-columns.
// Thread lid owns column d = lid % BV: V' rows lid / BV + (256/BV)·m and S rows
// lid / BV + (256/BV)·m.

override BV: u32 = 32u;     // divides 256
override SBV: u32 = 4096u;  // DK · BV
override CBV: u32 = 2048u;  // CH · BV
override CSW: u32 = 2048u;  // CH · 32
const GDN_SW: u32 = 32u;

@group(0) @binding(0) var<storage, read> sx: array<f32>;
@group(0) @binding(1) var<storage, read> sw: array<f32>;
@group(0) @binding(2) var<storage, read_write> su: array<f32>;
@group(0) @binding(3) var<storage, read> sgam: array<f32>;
@group(0) @binding(4) var<storage, read_write> snap: array<f32>;
@group(0) @binding(5) var<storage, read_write> st: array<f32>;
@group(0) @binding(6) var<uniform> cp: ChunkParams;

var<workgroup> s_s: array<f32, SBV>;
var<workgroup> vp_s: array<f32, CBV>;
var<workgroup> stg: array<f32, CSW>;
var<workgroup> gam_s: array<f32, GDN_MAXC>;
var<workgroup> dec_s: array<f32, GDN_MAXC>;

@compute @workgroup_size(GDN_WG)
fn gdn_chunk_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let d0 = wid.x * BV;
    let tl = cp.t_len;
    let kh = h / (cp.nv / cp.nk);
    let per = GDN_WG / BV;
    let d = lid % BV;
    let r0 = lid / BV;
    let dok = d0 + d < DV;
    let sbase = h * DK * DV + d0 + d;
    let kbase = cp.key_dim + kh * DK;
    let nvr = (CH + per - 1u) / per;  // V' rows per thread (<= 8)
    for (var a = r0; a < DK; a += per) {
        var v = 0.0;
        if (dok) {
            v = st[sbase + a * DV];
        }
        s_s[a * BV + d] = v;
    }
    for (var n = 0u; n < cp.n_chunks; n++) {
        let t0 = n * CH;
        let cl = min(CH, tl - t0);
        let row0 = h * tl + t0;
        if (lid < CH) {
            var g = 0.0;
            if (lid < cl) {
                g = sgam[row0 + lid];
            }
            gam_s[lid] = g;
        }
        workgroupBarrier();
        let glast = gam_s[cl - 1u];
        if (lid < CH) {
            var e = 0.0;
            if (lid < cl) {
                e = exp(glast - gam_s[lid]);
            }
            dec_s[lid] = e;
        }
        if (dok) {
            let base = (h * cp.n_chunks + n) * DK * DV + d0 + d;
            for (var a = r0; a < DK; a += per) {
                snap[base + a * DV] = s_s[a * BV + d];
            }
        }

        // V' = U − W·S, W staged 32 columns at a time.
        var acc: array<f32, 8>;
        for (var m = 0u; m < nvr; m++) {
            let i = r0 + per * m;
            var v = 0.0;
            if (i < cl && dok) {
                v = su[(row0 + i) * DV + d0 + d];
            }
            acc[m] = v;
        }
        for (var a0 = 0u; a0 < DK; a0 += GDN_SW) {
            workgroupBarrier();
            for (var e = lid; e < CH * GDN_SW; e += GDN_WG) {
                let i = e / GDN_SW;
                let a = a0 + e % GDN_SW;
                var v = 0.0;
                if (i < cl && a < DK) {
                    v = sw[(row0 + i) * DK + a];
                }
                stg[e] = v;
            }
            workgroupBarrier();
            let na = min(GDN_SW, DK - a0);
            for (var aa = 0u; aa < na; aa++) {
                let s = s_s[(a0 + aa) * BV + d];
                for (var m = 0u; m < nvr; m++) {
                    acc[m] -= stg[(r0 + per * m) * GDN_SW + aa] * s;
                }
            }
        }
        for (var m = 0u; m < nvr; m++) {
            let i = r0 + per * m;
            var v = 0.0;
            if (i < cl && dok) {
                v = acc[m];
                su[(row0 + i) * DV + d0 + d] = v;
            }
            if (i < CH) {
                vp_s[i * BV + d] = v;
            }
        }

        // S ← e^{γ_last} S + K̃ᵀ V', K̃ = K̂ ⊙ e^{γ_last − γ} staged 32 k-columns at a time.
        let eg = exp(glast);
        for (var a0 = 0u; a0 < DK; a0 += GDN_SW) {
            workgroupBarrier(); // stg consumed; vp_s and dec_s published
            for (var e = lid; e < CH * GDN_SW; e += GDN_WG) {
                let j = e / GDN_SW;
                let a = a0 + e % GDN_SW;
                var v = 0.0;
                if (j < cl && a < DK) {
                    v = sx[(t0 + j) * cp.conv_dim + kbase + a] * dec_s[j];
                }
                stg[e] = v;
            }
            workgroupBarrier();
            // The thread's rows in this slice: first + per·m (per >= 8: at most 4).
            let a1 = min(a0 + GDN_SW, DK);
            let first = a0 + (per + r0 - a0 % per) % per;
            var sa: array<f32, 4>;
            for (var m = 0u; m < 4u; m++) {
                let a = first + per * m;
                var v = 0.0;
                if (a < a1) {
                    v = s_s[a * BV + d] * eg;
                }
                sa[m] = v;
            }
            for (var j = 0u; j < cl; j++) {
                let v = vp_s[j * BV + d];
                for (var m = 0u; m < 4u; m++) {
                    if (first + per * m < a1) {
                        sa[m] += stg[j * GDN_SW + first - a0 + per * m] * v;
                    }
                }
            }
            for (var m = 0u; m < 4u; m++) {
                let a = first + per * m;
                if (a < a1) {
                    s_s[a * BV + d] = sa[m];
                }
            }
        }
        workgroupBarrier();
    }
    if (dok) {
        for (var a = r0; a < DK; a += per) {
            st[sbase + a * DV] = s_s[a * BV + d];
        }
    }
}
