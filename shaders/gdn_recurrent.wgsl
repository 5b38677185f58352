// Gated DeltaNet, recurrent form, fused: per token, L2-normalise q and k (eps 1e-6,
// q · dk^-½), β = sigmoid(b), g = −exp(A_log)·softplus(a + dt_bias), then
//   S ← e^g S;  δ = β(v − Sᵀk̂);  S ← S + k̂ δᵀ;  o = Sᵀq̂ = (e^g S)ᵀq̂ + δ (k̂·q̂)
// and the gated RMSNorm of o over the head (plain w, times SiLU(z)).
// Needs a reduce_*.wgsl file first (wg_sum, wg_sum4) and numeric.wgsl.
//
// One workgroup per value head h (k-head h / (nv/nk)); the head's f32 state S [DK, DV]
// (reference layout, row-major) lives in registers for all T tokens: thread
// lid = s·DV + j holds column j, rows s·R .. s·R+R (SL slices of R rows), so loads of
// S are coalesced over j. Slice partials of Sᵀk and Sᵀq meet in workgroup memory.
// Input `gx` is the conv output [T, conv_dim] (q | k | v channels, SiLU applied).
//
// Rows mode (rows != 0, a batched decode step; grid y = rows): workgroup (h, row)
// runs token `row` (t_len 1) on the state of slot slots[row] of a pooled state
// buffer (slots st_stride words apart). Rows never share a slot.

struct RecParams {
    t0: u32,     // first token of this launch
    t_len: u32,  // tokens of this launch (the host splits long calls)
    nv: u32,
    nk: u32,
    conv_dim: u32,
    qkvz_stride: u32,
    key_dim: u32,
    eps: f32,
    q_scale: f32,
    rows: u32,      // 0: one sequence; 1: rows mode
    st_stride: u32, // words between two slots of st (rows mode)
    _pad0: u32,
    slots0: u32,
    slots1: u32,
    slots2: u32,
    slots3: u32,
    slots4: u32,
    slots5: u32,
    slots6: u32,
    slots7: u32,
}

override WG: u32 = 256u;
override DK: u32 = 128u;
override DV: u32 = 128u;
override SL: u32 = 2u;  // slices of the k rows: SL·DV <= WG
override R: u32 = 64u;  // rows per slice: SL·R >= DK, R <= GDN_MAXR
const GDN_MAXR: u32 = 64u;
const GDN_MAXD: u32 = 128u;
const GDN_L2_EPS: f32 = 1e-6;

@group(0) @binding(0) var<storage, read> gx: array<f32>;
@group(0) @binding(1) var<storage, read> qkvz: array<f32>;
@group(0) @binding(2) var<storage, read> ba: array<f32>;
@group(0) @binding(3) var<storage, read> a_log: array<f32>;
@group(0) @binding(4) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(5) var<storage, read> norm_w: array<f32>;
@group(0) @binding(6) var<storage, read_write> st: array<f32>;
@group(0) @binding(7) var<storage, read_write> gout: array<f32>;
@group(0) @binding(8) var<uniform> rp: RecParams;

var<workgroup> qk_s: array<vec2<f32>, GDN_MAXD>;   // raw (q, k) of the token
var<workgroup> part_s: array<vec2<f32>, WG>;       // slice partials (Sᵀk, Sᵀq)
var<workgroup> delta_s: array<f32, GDN_MAXD>;

fn rec_slot(row: u32) -> u32 {
    var t = array<u32, 8>(rp.slots0, rp.slots1, rp.slots2, rp.slots3, rp.slots4, rp.slots5,
        rp.slots6, rp.slots7);
    return (t[row / 2u] >> (16u * (row % 2u))) & 0xffffu;
}

@compute @workgroup_size(WG)
fn gdn_recurrent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let kh = h / (rp.nv / rp.nk);
    let j = lid % DV;
    let s = lid / DV;
    let live = s < SL;
    var t0 = rp.t0;
    var sb = 0u;
    if (rp.rows != 0u) {
        t0 = wid.y;
        sb = rec_slot(wid.y) * rp.st_stride;
    }
    let sbase = sb + h * DK * DV;
    var sreg: array<f32, GDN_MAXR>;
    for (var r = 0u; r < R; r++) {
        let a = s * R + r;
        if (live && a < DK) {
            sreg[r] = st[sbase + a * DV + j];
        } else {
            sreg[r] = 0.0;
        }
    }
    let neg_a = -exp(a_log[h]);
    let dtb = dt_bias[h];
    var wn = 0.0;
    if (live) {
        wn = norm_w[j];
    }
    let nv = rp.nv;
    let vdim = nv * DV;
    for (var t = t0; t < t0 + rp.t_len; t++) {
        let row = t * rp.conv_dim;
        // Every global read of the token is issued here, before the first barrier,
        // so their latencies overlap.
        var q = 0.0;
        var k = 0.0;
        if (lid < DK) {
            q = gx[row + kh * DK + lid];
            k = gx[row + rp.key_dim + kh * DK + lid];
            qk_s[lid] = vec2<f32>(q, k);
        }
        var vj = 0.0;
        var zj = 0.0;
        if (s == 0u) {
            vj = gx[row + 2u * rp.key_dim + h * DV + j];
            zj = qkvz[t * rp.qkvz_stride + rp.conv_dim + h * DV + j];
        }
        let b_raw = ba[t * 2u * nv + h];
        let a_raw = ba[t * 2u * nv + nv + h];
        // Σq², Σk², Σqk in one reduction (its barrier also publishes qk_s).
        let sums = wg_sum4(vec4<f32>(q * q, k * k, q * k, 0.0), lid);
        let rk = 1.0 / sqrt(sums.y + GDN_L2_EPS);
        let rq = 1.0 / sqrt(sums.x + GDN_L2_EPS) * rp.q_scale;
        let kq = sums.z * rk * rq;
        let beta = sigmoid(b_raw);
        let decay = exp(neg_a * softplus(a_raw + dtb));

        var pk = 0.0;
        var pq = 0.0;
        for (var r = 0u; r < R; r++) {
            // a < DK implies a live thread (SL·R >= DK); other rows hold zeros.
            let a = s * R + r;
            if (a < DK) {
                sreg[r] *= decay;
                let v = qk_s[a];
                pk += sreg[r] * v.y;
                pq += sreg[r] * v.x;
            }
        }
        part_s[lid] = vec2<f32>(pk, pq);
        workgroupBarrier();
        var o = 0.0;
        if (s == 0u) {
            var kv = 0.0;
            var sq = 0.0;
            for (var s2 = 0u; s2 < SL; s2++) {
                let p = part_s[s2 * DV + j];
                kv += p.x;
                sq += p.y;
            }
            let d = beta * (vj - kv * rk);
            delta_s[j] = d;
            o = sq * rq + d * kq;
        }
        workgroupBarrier();
        if (live) {
            let d = delta_s[j];
            for (var r = 0u; r < R; r++) {
                let a = s * R + r;
                if (a < DK) {
                    sreg[r] += qk_s[a].y * rk * d;
                }
            }
        }
        // Gated RMSNorm over the head's DV outputs (slice-0 threads hold them).
        let ss = wg_sum(o * o, lid);
        if (s == 0u) {
            let inv = 1.0 / sqrt(ss / f32(DV) + rp.eps);
            gout[t * vdim + h * DV + j] = o * inv * wn * silu(zj);
        }
    }
    for (var r = 0u; r < R; r++) {
        let a = s * R + r;
        if (live && a < DK) {
            st[sbase + a * DV + j] = sreg[r];
        }
    }
}
