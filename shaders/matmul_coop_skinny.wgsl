// Matmul of few token rows on tensor cores (T = 9..64: batched decode,
// speculative verification), `mm_coop_skinny`. Comes FIRST in its module (the
// directives must precede every declaration), followed by numeric.wgsl and
// matmul_common.wgsl (bindings, params, decode).
//
// Bound by the weight bytes: a workgroup owns TN = 16 NF weight rows (NF
// subgroups, one 16-row fragment each) and all TM = 16 MF token rows of its
// block, so each weight element is read and decoded once per launch (the
// grid's y dimension repeats the weights only past 16 MF tokens). Per step
// of CK = 32 or 64 columns, x (TM x CK, f32 -> f16) and W (TN rows x CK
// columns, decoded from the stored format, rounded to f16) are staged in
// workgroup memory with a padded row stride (LDS = CK + 8 halves: 8
// consecutive rows of a fragment load hit distinct banks); subgroup s
// multiplies the MF token fragments by its rows' fragment (tile rows 16 s ..
// 16 s + 15) into MF f32 accumulators. The next step's global loads (x as
// vec4<f32>, W as raw vec4<u32> chunks and their scale) are in registers during
// the current step's multiply-adds.
//
// Precision (overrides EXACT, SPLIT, as mm_coop): EXACT scales each token row
// by a power of two s (its largest |x| lands in [2^14, 2^15); a pre-pass of the
// workgroup over its rows) and splits x s into hi (11 significant bits, exact
// in f16) and lo = f16(x s - hi), both multiplied by the same W fragments
// (LO); SPLIT off (fast): f16(x s) only; EXACT off (plain): f16(x) with no
// scaling. The epilogue multiplies by 1 / s (exact).
//
// NORM (fused RMSNorm, matmul_normed): x is staged as x * g (g the norm weight,
// or 1 + weight) and the pre-pass also sums x^2 per row; the epilogue
// multiplies by 1 / sqrt(mean(x^2) + eps). The row scale s is taken from the
// largest |x g|.
//
// Scales: weights whose scale is constant along each row are staged as
// stored (exact in f16 for BF16 / F16 / E4M3) and the epilogue multiplies by
// the row's scale in f32. BLOCKS (block scales narrower than the row, blocks
// a multiple of 32 columns wide: FP8's 128 x 128): W is staged as stored too,
// and at the end of each block's columns every subgroup moves its fragments'
// partial sums (through sk_y) into f32 registers, times the block's scale of
// each lane's row (lane sl holds row sl % 16 of its fragment: SGS is a
// multiple of 16), and restarts its accumulators: exact in the weights, one
// scalar multiply-add per output per block. Other narrower blocks are
// multiplied in f32 while staging (then rounded to f16), as mm_coop does.
//
// The result passes through workgroup memory (coopStoreT), one token
// fragment of every subgroup at a time, so the epilogues (store / accumulate /
// SwiGLU, bounds checks) are scalar code. SwiGLU: tile rows 0 .. TN/2 - 1 are
// the gate rows of output columns nt0 .. nt0 + TN/2 - 1, tile rows TN/2 ..
// TN - 1 their up rows: subgroup s < NF/2 holds the gate fragment whose up
// fragment is subgroup s + NF/2's.
//
// Split-K (KSLICE > 0: columns per split, a multiple of 128; never with
// NORM): the grid's z is the split; each workgroup runs the columns
// [z KSLICE, (z + 1) KSLICE) with its pre-pass over those columns only, and
// its epilogue writes raw partial sums (times 1 / s and a row-constant
// scale) to ys as part[(z t + tok) y_stride + r], r the output row's index
// in the launch (SwiGLU: gate rows at r = column - n0, up rows at
// n_end - n0 + column - n0); mm_skinny_reduce (matmul_coop_skinny_reduce.wgsl)
// sums the splits into y with the epilogue. It multiplies the workgroups of
// launches with few weight rows (4096-row weights: 128 workgroups otherwise).
//
// Every coop op and barrier is in workgroup-uniform control flow (no early
// return; loop bounds and conditions from the uniform params and overrides);
// subgroup_id only moves pointers.

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

// NF x the adapter's (fixed) subgroup size.
override WG: u32 = 128u;
// Subgroups per workgroup = 16-row weight fragments per tile: 2, 4 or 8.
override NF: u32 = 4u;
// Token fragments per tile: 1..4 (TM = 16 MF tokens).
override MF: u32 = 1u;
override EXACT: bool = false;
// EXACT: x s split in hi + lo (off: x s rounded to f16, one product).
override SPLIT: bool = true;
// Whether the lo part is staged and multiplied (one override: a `&&` in the
// condition of coop ops would be non-uniform control flow to naga).
override LO: bool = EXACT && SPLIT;
// RMSNorm of x fused.
override NORM: bool = false;
// 1 where the per-row pre-pass runs (row scales, sums of squares): derived,
// a u32 so the module keeps six boolean switches (the translation test of
// shaders_validate.rs tries each combination of those).
override PRE: u32 = select(0u, 1u, EXACT || NORM);
// Block scales applied to each block's partial sums in f32 (p.block_cols a
// multiple of CK, narrower than the row; not 4-bit).
override BLOCKS: bool = false;
// Split-K: columns per split (0: the whole row in one workgroup).
override KSLICE: u32 = 0u;

// Columns per step: 32 or 64 (the host keeps NX <= 16 and NW <= 8).
override CK: u32 = 32u;
// Padded row stride of the staged tiles, in halves.
override LDS: u32 = CK + 8u;
override TM: u32 = 16u * MF;
override TN: u32 = 16u * NF;
override SGS: u32 = WG / NF;
// BLOCKS: accumulated values per lane and token fragment (256 / SGS <= 16).
override PER_LANE: u32 = 256u / SGS;
// Staged x vec4s per step and thread (at most 16, the host's choice of CK).
override NX: u32 = (TM * (CK / 4u) + WG - 1u) / WG;
// W chunks per tile row and step, and per thread (at most 8).
override CPR: u32 = CK / CW;
override NW: u32 = (TN * CPR + WG - 1u) / WG;
override X_HALVES: u32 = TM * LDS;
override W_HALVES: u32 = TN * LDS;
override Y_FLOATS: u32 = NF * 256u;

var<workgroup> sk_x: array<f16, X_HALVES>;   // [token][column], hi part
var<workgroup> sk_xl: array<f16, X_HALVES>;  // LO: lo part
var<workgroup> sk_w: array<f16, W_HALVES>;   // [tile row][column]
// One 16x16 result fragment per subgroup (row-major, token rows).
var<workgroup> sk_y: array<f32, Y_FLOATS>;
// PRE: per token row of the tile, the multiplier of x (a power of two) and
// the epilogue's factor (its inverse, times 1 / rms with NORM).
var<workgroup> sk_sc: array<f32, TM>;
var<workgroup> sk_inv: array<f32, TM>;

// Weight of the fused RMSNorm (NORM; the host binds x here otherwise).
@group(0) @binding(8) var<storage, read> nw4: array<vec4<f32>>;

// Exponent k of the power of two 2^k with max|x| 2^k in [2^14, 2^15); 0 for a
// zero, inf or NaN max. Within +-126 so that 2^k and 2^-k are normal f32.
fn sk_scale_exp(mx: f32) -> i32 {
    let bits = bitcast<u32>(mx);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(mx).exp, -126, 126);
}

// The norm's factor of columns c .. c + 3 (c a multiple of 4).
fn sk_norm_g(c: u32) -> vec4<f32> {
    let w = nw4[c / 4u];
    return select(w, w + 1.0, p.norm == 2u);
}

// Weight row (local index in its buffer) of tile row lc, whether it is read
// from wb, and whether it exists in this launch.
struct SkRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
}

fn sk_row(nt0: u32, lc: u32) -> SkRow {
    var r: SkRow;
    var n: u32;
    var grow: u32;
    if (p.epi == 2u) {
        r.in_b = lc >= TN / 2u;
        n = nt0 + lc % (TN / 2u);
        grow = select(n, p.half + n, r.in_b);
    } else {
        r.in_b = false;
        n = nt0 + lc;
        grow = n;
    }
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    let nr = select(p.a_rows, p.b_rows, r.in_b);
    r.valid = n < p.n_end && grow >= r0 && grow - r0 < nr;
    r.lrow = select(0u, grow - r0, r.valid);
    return r;
}

// x vec4 i of the step at column k0 (tile row i / 8, columns 4 (i % 8) ..),
// times the norm's factor with NORM; zero past the tokens and columns.
fn sk_x_load(m0: u32, k0: u32, i: u32) -> vec4<f32> {
    let tok = m0 + i / (CK / 4u);
    let c = k0 + (i % (CK / 4u)) * 4u;
    var v = vec4<f32>(0.0);
    if (i < TM * (CK / 4u) && tok < p.t) {
        let xi = p.x_off + tok * p.x_stride + c;
        if (p.x_aligned == 1u && c + 4u <= p.cols) {
            v = xs4[xi / 4u];
            if (NORM) {
                v *= sk_norm_g(c);
            }
        } else {
            // (NORM: the host requires aligned rows of whole vec4s.)
            for (var q = 0u; q < 4u; q++) {
                if (c + q < p.cols) {
                    v[q] = xs[xi + q];
                }
            }
        }
    }
    return v;
}

fn sk_x_store(i: u32, v: vec4<f32>) {
    if (i >= TM * (CK / 4u)) {
        return;
    }
    let r = i / (CK / 4u);
    let o = r * LDS + (i % (CK / 4u)) * 4u;
    var h: vec4<f16>;
    if (LO) {
        // hi: vs rounded to 11 significant bits with integer ops, so exact in
        // f16 (normal range) and lo = vs - hi exact in f32 (mm_coop: written
        // as vs - f32(f16(vs)), the H100's compiler folded the round trip).
        let vs = v * sk_sc[r];
        let hi = bitcast<vec4<f32>>((bitcast<vec4<u32>>(vs) + vec4<u32>(0x1000u)) & vec4<u32>(0xffffe000u));
        h = vec4<f16>(hi);
        let l = vec4<f16>(vs - hi);
        sk_xl[o] = l.x;
        sk_xl[o + 1u] = l.y;
        sk_xl[o + 2u] = l.z;
        sk_xl[o + 3u] = l.w;
    } else if (EXACT) {
        h = vec4<f16>(v * sk_sc[r]);
    } else {
        h = vec4<f16>(v);
    }
    sk_x[o] = h.x;
    sk_x[o + 1u] = h.y;
    sk_x[o + 2u] = h.z;
    sk_x[o + 3u] = h.w;
}

// Token tok's largest |x g| and sum of x^2 (NORM) over columns [kb, ke)
// (kb a multiple of 4), partial per lane.
fn sk_row_stats(tok: u32, sl: u32, kb: u32, ke: u32) -> vec2<f32> {
    var mx = 0.0;
    var ss = 0.0;
    if (tok < p.t) {
        let base = p.x_off + tok * p.x_stride;
        var c0 = kb;
        if (p.x_aligned == 1u) {
            let n4 = ke / 4u;
            for (var c = kb / 4u + sl; c < n4; c += SGS) {
                let x = xs4[base / 4u + c];
                var a = abs(x);
                if (NORM) {
                    a = abs(x * sk_norm_g(4u * c));
                    ss += dot(x, x);
                }
                mx = max(mx, max(max(a.x, a.y), max(a.z, a.w)));
            }
            c0 = max(kb, 4u * n4);
        }
        // (NORM: columns are a multiple of 4, nothing is left here.)
        for (var c = c0 + sl; c < ke; c += SGS) {
            mx = max(mx, abs(xs[base + c]));
        }
    }
    return vec2<f32>(mx, ss);
}

// Whether the weight's scale is constant along each row (then W is staged
// as stored and the epilogue multiplies by the row's scale). 4-bit weights
// never (the zero point is subtracted while staging).
fn sk_row_scaled() -> bool {
    return !Q4 && p.block_cols >= p.cols;
}

fn sk_row_scale(r: u32) -> f32 {
    return bitcast<f32>(scales[scale_base(r)]);
}

// Split-K: token fragment f's raw partial sums of split z (module doc).
fn sk_partials(lid: u32, m0: u32, nt0: u32, f: u32, z: u32) {
    let nw = p.n_end - p.n0;
    for (var e = lid; e < NF * 256u; e += WG) {
        let s = e / 256u;
        let r = e % 256u;
        let lt = 16u * f + r / 16u;
        let tok = m0 + lt;
        let lr = 16u * s + r % 16u;
        var n: u32;
        var pr: u32;
        var grow: u32;
        if (p.epi == 2u) {
            n = nt0 + lr % (TN / 2u);
            let up = lr >= TN / 2u;
            pr = select(n - p.n0, nw + n - p.n0, up);
            grow = select(n, p.half + n, up);
        } else {
            n = nt0 + lr;
            pr = n - p.n0;
            grow = n;
        }
        if (tok < p.t && n < p.n_end) {
            var v = sk_y[e];
            if (PRE == 1u) {
                v *= sk_inv[lt];
            }
            if (sk_row_scaled()) {
                v *= sk_row_scale(grow);
            }
            ys[p.y_off + (z * p.t + tok) * p.y_stride + pr] = v;
        }
    }
}

// Writes token fragment f of the staged results (sk_y: subgroup s's fragment
// at 256 s, [token][row]); split-K: its partial sums.
fn sk_epilogue(lid: u32, m0: u32, nt0: u32, f: u32, z: u32) {
    if (KSLICE > 0u) {
        sk_partials(lid, m0, nt0, f, z);
    } else if (p.epi == 2u) {
        let hn = NF / 2u;
        for (var e = lid; e < hn * 256u; e += WG) {
            let s = e / 256u;
            let r = e % 256u;
            let lt = 16u * f + r / 16u;
            let tok = m0 + lt;
            let n = nt0 + 16u * s + r % 16u;
            if (tok < p.t && n < p.n_end) {
                var g = sk_y[e];
                var u = sk_y[(s + hn) * 256u + r];
                if (PRE == 1u) {
                    g *= sk_inv[lt];
                    u *= sk_inv[lt];
                }
                if (sk_row_scaled()) {
                    g *= sk_row_scale(n);
                    u *= sk_row_scale(p.half + n);
                }
                ys[p.y_off + tok * p.y_stride + n] = silu(g) * u;
            }
        }
    } else {
        for (var e = lid; e < NF * 256u; e += WG) {
            let s = e / 256u;
            let r = e % 256u;
            let lt = 16u * f + r / 16u;
            let tok = m0 + lt;
            let n = nt0 + 16u * s + r % 16u;
            if (tok < p.t && n < p.n_end) {
                var v = sk_y[e];
                if (PRE == 1u) {
                    v *= sk_inv[lt];
                }
                if (sk_row_scaled()) {
                    v *= sk_row_scale(n);
                }
                let yi = p.y_off + tok * p.y_stride + n;
                if (p.epi == 1u) {
                    ys[yi] += v;
                } else {
                    ys[yi] = v;
                }
            }
        }
    }
}

// This thread's registers of the step at column k0: x vec4s, and W chunks
// (raw) with the scale of their first column.
fn sk_load(m0: u32, k0: u32, lid: u32,
           wrow: ptr<function, array<SkRow, 8>>, wsb: ptr<function, array<u32, 8>>,
           xr: ptr<function, array<vec4<f32>, 16>>, wr: ptr<function, array<vec4<u32>, 8>>,
           ws: ptr<function, array<f32, 8>>) {
    for (var j = 0u; j < NX; j++) {
        (*xr)[j] = sk_x_load(m0, k0, lid + j * WG);
    }
    for (var j = 0u; j < NW; j++) {
        let ch = k0 / CW + (lid + j * WG) % CPR;
        let r = (*wrow)[j];
        if (r.valid && ch < p.stride4) {
            (*wr)[j] = load_chunk(r.in_b, r.lrow, ch);
            if (!Q4) {
                (*ws)[j] = scale_at((*wsb)[j], ch * CW);
            }
        } else {
            (*wr)[j] = vec4<u32>(0u);
        }
    }
}

@compute @workgroup_size(WG)
fn mm_coop_skinny(@builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_id) sg: u32,
                  @builtin(subgroup_invocation_id) sl: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * TM;
    let nt0 = p.n0 + wid.x * select(TN, TN / 2u, p.epi == 2u);
    // This workgroup's columns (split-K: its split's).
    let kbeg = wid.z * KSLICE;
    let kend = select(p.cols, min(p.cols, kbeg + KSLICE), KSLICE > 0u);

    // W items of this thread (item j: lid + j WG = tile row * CPR + chunk):
    // their rows and scale bases are the same at every step.
    var wrow: array<SkRow, 8>;
    var wsb: array<u32, 8>;
    for (var j = 0u; j < NW; j++) {
        let i = lid + j * WG;
        let tr = sk_row(nt0, min(i / CPR, TN - 1u));
        wrow[j] = tr;
        wrow[j].valid = tr.valid && i < TN * CPR;
        wsb[j] = scale_base(tr.lrow + select(p.a_row0, p.b_row0, tr.in_b));
    }
    // A chunk's columns share one scale unless blocks are narrower than chunks.
    let chunk_scale = p.block_cols % CW == 0u || p.block_cols >= p.cols;
    let scale_w = !sk_row_scaled() && !BLOCKS;
    // BLOCKS: this lane's row of its subgroup's fragments and its scale base.
    let mine = sk_row(nt0, 16u * sg + sl % 16u);
    let my_sb = scale_base(mine.lrow + select(p.a_row0, p.b_row0, mine.in_b));
    var acc0: array<f32, 16>;
    var acc1: array<f32, 16>;
    var acc2: array<f32, 16>;
    var acc3: array<f32, 16>;

    if (PRE == 1u) {
        // Per token row: its power-of-two scale and 1 / rms, one subgroup per
        // row at a time.
        for (var i = 0u; i < TM / NF; i++) {
            let lt = i * NF + sg;
            let st = sk_row_stats(m0 + lt, sl, kbeg, kend);
            let mx = subgroupMax(st.x);
            let ss = subgroupAdd(st.y);
            if (sl == 0u) {
                var sc = 1.0;
                var inv = 1.0;
                if (EXACT) {
                    let k = sk_scale_exp(mx);
                    sc = ldexp(1.0, k);
                    inv = ldexp(1.0, -k);
                }
                if (NORM) {
                    inv *= 1.0 / sqrt(ss / f32(p.cols) + p.norm_eps);
                }
                sk_sc[lt] = sc;
                sk_inv[lt] = inv;
            }
        }
        workgroupBarrier();
    }

    var xr: array<vec4<f32>, 16>;
    var wr: array<vec4<u32>, 8>;
    var ws: array<f32, 8>;
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    var c2 = coop_mat16x16<f32, C>();
    var c3 = coop_mat16x16<f32, C>();
    let wa_ = 16u * sg * LDS;
    for (var k0 = kbeg; k0 < kend; k0 += CK) {
        if (k0 == kbeg) {
            sk_load(m0, k0, lid, &wrow, &wsb, &xr, &wr, &ws);
        }
        workgroupBarrier();
        // Registers -> workgroup memory (x to f16; W decoded, scaled, to f16).
        for (var j = 0u; j < NX; j++) {
            sk_x_store(lid + j * WG, xr[j]);
        }
        for (var j = 0u; j < NW; j++) {
            let i = lid + j * WG;
            if (i < TN * CPR) {
                let lc = i / CPR;
                let ck = i % CPR;
                let ch = k0 / CW + ck;
                let ok = wrow[j].valid && ch < p.stride4;
                for (var g = 0u; g < G; g++) {
                    var d = decode_group(wr[j], g);
                    if (ok && scale_w) {
                        if (Q4) {
                            d = scale_group(d, wsb[j], ch * CW + 4u * g);
                        } else if (chunk_scale) {
                            d *= ws[j];
                        } else {
                            d *= scale_at(wsb[j], ch * CW + 4u * g);
                        }
                    }
                    let h = vec4<f16>(d);
                    let o = lc * LDS + ck * CW + 4u * g;
                    sk_w[o] = h.x;
                    sk_w[o + 1u] = h.y;
                    sk_w[o + 2u] = h.z;
                    sk_w[o + 3u] = h.w;
                }
            }
        }
        workgroupBarrier();
        // Next step's global loads, in flight during the multiply-adds.
        if (k0 + CK < kend) {
            sk_load(m0, k0 + CK, lid, &wrow, &wsb, &xr, &wr, &ws);
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let wa = wa_ + kk;
            let b = coopLoad<coop_mat16x16<f16, B>>(&sk_w[wa], LDS);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sk_x[kk], LDS);
            c0 = coopMultiplyAdd(a0, b, c0);
            if (LO) {
                let l0 = coopLoadT<coop_mat16x16<f16, A>>(&sk_xl[kk], LDS);
                c0 = coopMultiplyAdd(l0, b, c0);
            }
            if (MF > 1u) {
                let xa1 = 16u * LDS + kk;
                let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sk_x[xa1], LDS);
                c1 = coopMultiplyAdd(a1, b, c1);
                if (LO) {
                    let l1 = coopLoadT<coop_mat16x16<f16, A>>(&sk_xl[xa1], LDS);
                    c1 = coopMultiplyAdd(l1, b, c1);
                }
            }
            if (MF > 2u) {
                let xa2 = 32u * LDS + kk;
                let a2 = coopLoadT<coop_mat16x16<f16, A>>(&sk_x[xa2], LDS);
                c2 = coopMultiplyAdd(a2, b, c2);
                if (LO) {
                    let l2 = coopLoadT<coop_mat16x16<f16, A>>(&sk_xl[xa2], LDS);
                    c2 = coopMultiplyAdd(l2, b, c2);
                }
            }
            if (MF > 3u) {
                let xa3 = 48u * LDS + kk;
                let a3 = coopLoadT<coop_mat16x16<f16, A>>(&sk_x[xa3], LDS);
                c3 = coopMultiplyAdd(a3, b, c3);
                if (LO) {
                    let l3 = coopLoadT<coop_mat16x16<f16, A>>(&sk_xl[xa3], LDS);
                    c3 = coopMultiplyAdd(l3, b, c3);
                }
            }
        }
        // BLOCKS: the block's last step (or the row's): its partial sums,
        // times this lane's row's block scale, into the lane's registers.
        // (Non-short-circuit `|` and nested ifs: the coop ops' conditions
        // stay an override and a uniform value, no `&&` control flow.)
        let block_end = ((k0 + CK) % max(p.block_cols, 1u) == 0u) | (k0 + CK >= kend);
        if (BLOCKS) {
            if (block_end) {
                let bs = bitcast<f32>(scales[my_sb + k0 / max(p.block_cols, 1u)]);
                let yb = sg * 256u;
                let yst = 16u;
                workgroupBarrier();
                coopStoreT(c0, &sk_y[yb], yst);
                workgroupBarrier();
                for (var j = 0u; j < PER_LANE; j++) {
                    acc0[j] += bs * sk_y[yb + sl + j * SGS];
                }
                c0 = coop_mat16x16<f32, C>();
                if (MF > 1u) {
                    workgroupBarrier();
                    coopStoreT(c1, &sk_y[yb], yst);
                    workgroupBarrier();
                    for (var j = 0u; j < PER_LANE; j++) {
                        acc1[j] += bs * sk_y[yb + sl + j * SGS];
                    }
                    c1 = coop_mat16x16<f32, C>();
                }
                if (MF > 2u) {
                    workgroupBarrier();
                    coopStoreT(c2, &sk_y[yb], yst);
                    workgroupBarrier();
                    for (var j = 0u; j < PER_LANE; j++) {
                        acc2[j] += bs * sk_y[yb + sl + j * SGS];
                    }
                    c2 = coop_mat16x16<f32, C>();
                }
                if (MF > 3u) {
                    workgroupBarrier();
                    coopStoreT(c3, &sk_y[yb], yst);
                    workgroupBarrier();
                    for (var j = 0u; j < PER_LANE; j++) {
                        acc3[j] += bs * sk_y[yb + sl + j * SGS];
                    }
                    c3 = coop_mat16x16<f32, C>();
                }
            }
        }
    }
    // One round per token fragment: every subgroup's fragment through sk_y
    // (BLOCKS: the lanes' registers).
    let yo = sg * 256u;
    let ys16 = 16u;
    workgroupBarrier();
    if (BLOCKS) {
        for (var j = 0u; j < PER_LANE; j++) {
            sk_y[yo + sl + j * SGS] = acc0[j];
        }
    } else {
        coopStoreT(c0, &sk_y[yo], ys16);
    }
    workgroupBarrier();
    sk_epilogue(lid, m0, nt0, 0u, wid.z);
    if (MF > 1u) {
        workgroupBarrier();
        if (BLOCKS) {
            for (var j = 0u; j < PER_LANE; j++) {
                sk_y[yo + sl + j * SGS] = acc1[j];
            }
        } else {
            coopStoreT(c1, &sk_y[yo], ys16);
        }
        workgroupBarrier();
        sk_epilogue(lid, m0, nt0, 1u, wid.z);
    }
    if (MF > 2u) {
        workgroupBarrier();
        if (BLOCKS) {
            for (var j = 0u; j < PER_LANE; j++) {
                sk_y[yo + sl + j * SGS] = acc2[j];
            }
        } else {
            coopStoreT(c2, &sk_y[yo], ys16);
        }
        workgroupBarrier();
        sk_epilogue(lid, m0, nt0, 2u, wid.z);
    }
    if (MF > 3u) {
        workgroupBarrier();
        if (BLOCKS) {
            for (var j = 0u; j < PER_LANE; j++) {
                sk_y[yo + sl + j * SGS] = acc3[j];
            }
        } else {
            coopStoreT(c3, &sk_y[yo], ys16);
        }
        workgroupBarrier();
        sk_epilogue(lid, m0, nt0, 3u, wid.z);
    }
}
