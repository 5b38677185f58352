// Gated DeltaNet decode step, ONE launch per layer: the causal depthwise conv1d of
// the q|k|v channels (with its conv-state update) and SiLU, then exactly the math of
// gdn_recurrent.wgsl (q/k L2 norm, gates, delta rule, gated RMSNorm). Needs a
// reduce_*.wgsl file first (wg_sum4) and numeric.wgsl.
//
// One workgroup per KEY head kh: it owns every conv channel it reads (q and k of kh,
// v of the value heads kh·g .. kh·g+g−1, g = nv/nk), so no other workgroup reads or
// writes those channels' conv state and workgroup order cannot matter. (A workgroup
// per value head would share the q/k channels between g workgroups; whoever wrote
// their new conv state could overtake a reader of the old one.) Within the workgroup
// the one invocation that reads a channel's conv state also rewrites it, after its
// last read (see the conv loop).
//
// The workgroup is LANES lanes of 256 invocations; lane p runs value head
// kh·g + round·LANES + p with the thread layout of gdn_recurrent.wgsl (thread
// s·DV + j holds state column j, rows s·R .. s·R+R, in registers). ROUNDS =
// g / LANES rounds run one after the other. Tokens t0 .. t0+t_len are walked in
// order; the conv of token t reads the old conv state and the (read-only) qkvz rows
// directly, so nothing but the final state rewrite depends on earlier tokens.
//
// Batched decode (grid y = rows): workgroup (kh, row) runs token t0 + row (t_len 1)
// on the states of slot slots[row] of the pooled conv / recurrent state buffers
// (slot i's states start conv_stride / st_stride words in), so one launch steps
// every session of a batch; rows never share a slot, so they never share state.
// A lone call binds its session's slot range and passes slot 0, grid y = 1.

struct DecParams {
    t0: u32,
    t_len: u32,
    nv: u32,
    nk: u32,
    conv_dim: u32,
    qkvz_stride: u32,
    key_dim: u32,
    conv_stride: u32, // words between two slots of conv_st
    eps: f32,
    q_scale: f32,
    rounds: u32, // g / LANES
    st_stride: u32,   // words between two slots of st
    // Slot of each row (grid y), two 16-bit slots per word (row 2i in the low half).
    slots0: u32,
    slots1: u32,
    slots2: u32,
    slots3: u32,
    slots4: u32,
    slots5: u32,
    slots6: u32,
    slots7: u32,
}

override WG: u32 = 256u;    // LANES · 256
override LANES: u32 = 1u;   // value heads processed side by side (1 or 2)
override DK: u32 = 128u;
override DV: u32 = 128u;
override SL: u32 = 2u;      // slices of the k rows per lane: SL·DV <= 256
override R: u32 = 64u;      // rows per slice: SL·R >= DK, R <= GDN_MAXR
override TAPS: u32 = 4u;    // conv kernel K (<= GDN_MAXK): a constant, so its loops unroll
const GDN_MAXK: u32 = 8u;
const GDN_TPH: u32 = 256u;  // invocations per lane
const GDN_MAXR: u32 = 64u;
const GDN_MAXD: u32 = 128u;
const GDN_MAXLANES: u32 = 2u;
const GDN_L2_EPS: f32 = 1e-6;

@group(0) @binding(0) var<storage, read> qkvz: array<f32>;
@group(0) @binding(1) var<storage, read> ba: array<f32>;
@group(0) @binding(2) var<storage, read> conv_w: array<f32>;
@group(0) @binding(3) var<storage, read> a_log: array<f32>;
@group(0) @binding(4) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(5) var<storage, read> norm_w: array<f32>;
@group(0) @binding(6) var<storage, read_write> conv_st: array<f32>;
@group(0) @binding(7) var<storage, read_write> st: array<f32>;
@group(0) @binding(8) var<storage, read_write> gout: array<f32>;
@group(0) @binding(9) var<uniform> dp: DecParams;

// Conv+SiLU output of the token: q [DK], k [DK], then v of each lane [LANES·DV].
var<workgroup> xc_s: array<f32, (2u + GDN_MAXLANES) * GDN_MAXD>;
var<workgroup> part_s: array<vec2<f32>, WG>;                   // slice partials (Sᵀk, Sᵀq)
var<workgroup> delta_s: array<f32, GDN_MAXLANES * GDN_MAXD>;

fn dec_slot(row: u32) -> u32 {
    var t = array<u32, 8>(dp.slots0, dp.slots1, dp.slots2, dp.slots3, dp.slots4, dp.slots5,
        dp.slots6, dp.slots7);
    return (t[row / 2u] >> (16u * (row % 2u))) & 0xffffu;
}

// Global conv channel of the workgroup's channel i: q, k, then v of local heads.
fn dec_channel(kh: u32, v0: u32, i: u32) -> u32 {
    if (i < DK) {
        return kh * DK + i;
    }
    if (i < 2u * DK) {
        return dp.key_dim + kh * DK + (i - DK);
    }
    return 2u * dp.key_dim + v0 * DV + (i - 2u * DK);
}

// Row e of this workgroup's extended conv input for channel c: the K−1 state rows
// of its slot (words from coff, oldest first), then the qkvz rows of tokens t0,
// t0+1, ...
fn dec_ext(e: u32, c: u32, coff: u32, t0: u32) -> f32 {
    let hist = TAPS - 1u;
    if (e < hist) {
        return conv_st[coff + e * dp.conv_dim + c];
    }
    return qkvz[(t0 + e - hist) * dp.qkvz_stride + c];
}

@compute @workgroup_size(WG)
fn gdn_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kh = wid.x;
    let row = wid.y;
    let slot = dec_slot(row);
    let coff = slot * dp.conv_stride;
    let soff = slot * dp.st_stride;
    let t0 = dp.t0 + row;
    let g = dp.nv / dp.nk;
    let lane = lid / GDN_TPH;
    let l = lid % GDN_TPH;
    let j = l % DV;
    let s = l / DV;
    let live = s < SL;
    let hist = TAPS - 1u;
    let nv = dp.nv;
    let vdim = nv * DV;
    let nch = 2u * DK + LANES * DV;
    var wn = 0.0;
    if (live) {
        wn = norm_w[j];
    }
    for (var round = 0u; round < dp.rounds; round++) {
        let v0 = kh * g + round * LANES; // first value head of this round
        let h = v0 + lane;
        let sbase = soff + h * DK * DV;
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
        for (var u = 0u; u < dp.t_len; u++) {
            let t = t0 + u;
            // Conv + SiLU of the round's channels (same order of terms as conv1d.wgsl).
            for (var i = lid; i < nch; i += WG) {
                let c = dec_channel(kh, v0, i);
                var win: array<f32, GDN_MAXK>; // ext[u .. u+K−1): the K−1 inputs before t
                for (var e = 0u; e < hist; e++) {
                    win[e] = dec_ext(u + e, c, coff, t0);
                }
                let x = qkvz[t * dp.qkvz_stride + c];
                var acc = 0.0;
                for (var e = 0u; e < hist; e++) {
                    acc += conv_w[c * TAPS + e] * win[e];
                }
                acc += conv_w[c * TAPS + hist] * x;
                xc_s[i] = acc / (1.0 + exp(-acc));
                // The new conv state ext[t_len .. t_len+K−1) is the last token's window
                // shifted by one. Only this invocation ever reads channel c's state (the
                // i -> lid map is the same for every token and round), and this is its
                // last read: q/k channels are reread by every round, so they are
                // written in the last; v channels belong to one round.
                if (u + 1u == dp.t_len && (i >= 2u * DK || round + 1u == dp.rounds)) {
                    for (var e = 0u; e + 1u < hist; e++) {
                        conv_st[coff + e * dp.conv_dim + c] = win[e + 1u];
                    }
                    if (hist > 0u) {
                        conv_st[coff + (hist - 1u) * dp.conv_dim + c] = x;
                    }
                }
            }
            var zj = 0.0;
            if (s == 0u) {
                zj = qkvz[t * dp.qkvz_stride + dp.conv_dim + h * DV + j];
            }
            let b_raw = ba[t * 2u * nv + h];
            let a_raw = ba[t * 2u * nv + nv + h];
            workgroupBarrier();
            var q = 0.0;
            var k = 0.0;
            if (lid < DK) {
                q = xc_s[lid];
                k = xc_s[DK + lid];
            }
            var vj = 0.0;
            if (s == 0u) {
                vj = xc_s[2u * DK + lane * DV + j];
            }
            // Σq², Σk², Σqk of the key head (lane 0 holds q and k).
            let sums = wg_sum4(vec4<f32>(q * q, k * k, q * k, 0.0), lid);
            let rk = 1.0 / sqrt(sums.y + GDN_L2_EPS);
            let rq = 1.0 / sqrt(sums.x + GDN_L2_EPS) * dp.q_scale;
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
                    pk += sreg[r] * xc_s[DK + a];
                    pq += sreg[r] * xc_s[a];
                }
            }
            part_s[lid] = vec2<f32>(pk, pq);
            workgroupBarrier();
            var o = 0.0;
            if (s == 0u) {
                var kv = 0.0;
                var sq = 0.0;
                for (var s2 = 0u; s2 < SL; s2++) {
                    let p = part_s[lane * GDN_TPH + s2 * DV + j];
                    kv += p.x;
                    sq += p.y;
                }
                let d = beta * (vj - kv * rk);
                delta_s[lane * DV + j] = d;
                o = sq * rq + d * kq;
            }
            workgroupBarrier();
            if (live) {
                let d = delta_s[lane * DV + j];
                for (var r = 0u; r < R; r++) {
                    let a = s * R + r;
                    if (a < DK) {
                        sreg[r] += xc_s[DK + a] * rk * d;
                    }
                }
            }
            // Gated RMSNorm over each lane's DV outputs: lane p's Σo² in component p.
            var o2 = vec4<f32>(0.0);
            o2[lane] = o * o;
            let ss = wg_sum4(o2, lid)[lane];
            if (s == 0u) {
                let inv = 1.0 / sqrt(ss / f32(DV) + dp.eps);
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
}
