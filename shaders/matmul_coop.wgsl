// Matmul, cooperative-matrix path (tensor cores, T > 16). Comes FIRST in its
// module (the directives must precede every declaration), followed by
// numeric.wgsl and matmul_common.wgsl (bindings, params, decode).
//
// A workgroup of 8 subgroups (WG = 8 x the adapter's fixed subgroup size)
// computes a 128-token x 128-weight-row tile; subgroup s owns tokens
// 32 (s % 4) .. +31 and tile rows 64 (s / 4) .. +63, i.e. 2 x 4 16x16
// fragments with f32 accumulators: per 16-column slice, 6 fragment loads feed
// 8 multiply-adds. Per 32-column step, x (128 x 32 f32 -> f16) and W (128 rows
// x 32 columns, decoded from the stored format, multiplied by its scale in f32
// only when the scale varies along the row, else the epilogue applies the
// row's scale and W stays exact; 4-bit weights as (q - zero) · scale, only in
// the plain variant; then rounded to f16) are staged in workgroup
// memory with a padded row stride (LDS = 40 halves = 80 bytes: 8 consecutive
// rows of a fragment load hit distinct banks; 64-byte rows are 4-way
// conflicts). The next step's
// global loads (x as vec4<f32>, W as raw vec4<u32> chunks and their scale)
// are issued into registers before the multiply-adds of the current step, so
// their latency hides behind the tensor-core work; decode and f16 conversion
// happen when the registers are written to workgroup memory.
//
// EXACT (override): x is split as hi = x s rounded to 11 significant bits
// (exact in f16) and lo = f16(x s - hi), with s a power of two per token row
// (constant along K: the largest |x| of the row scaled into [2^14, 2^15),
// found by a pre-pass over the workgroup's x rows), and both halves are multiplied by the same W fragments into the same
// accumulators; the epilogue multiplies by 1 / s (exact). x keeps 22
// significant bits (relative error <= 2^-22, absolute <= 2^-39 of the row's
// largest |x| where lo is subnormal) and cannot overflow; W rounded to f16 is
// exact for BF16/F16 values in f16's normal range. Plain (EXACT false): x is
// rounded to f16 directly (2^-11), and |x| > 65504 becomes +-inf. SPLIT
// (override, with EXACT): off, the fast path: x s rounded to f16 (nearest
// even), no lo part (half the multiply-adds), the row scaling kept. PREFETCH,
// PREPASS and LDS are overrides only for measurements (the bench test).
//
// The result goes through workgroup memory (coopStoreT), two fragments per
// subgroup at a time (for SwiGLU a gate fragment and its up fragment), so the
// epilogue (store / accumulate / SwiGLU, bounds checks) is plain scalar code.
// SwiGLU: tile rows 64 b .. 64 b + 31 are gate rows n0 + 32 b .. +31 and
// 64 b + 32 .. 64 b + 63 the matching up rows (b = 0, 1), so a tile covers 64
// output columns and each subgroup holds both halves of its columns.
//
// Every coop op and barrier is in workgroup-uniform control flow (no early
// return, loop bounds from the uniform params and overrides); subgroup_id only
// moves pointers.

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

override WG: u32 = 256u;
override EXACT: bool = false;
// EXACT: x s split in hi + lo (off: x s rounded to f16, one product).
override SPLIT: bool = true;
// Whether the lo part is staged and multiplied (one override: a `&&` in the
// condition of the coop ops would be non-uniform control flow to naga).
override LO: bool = EXACT && SPLIT;
// Padded row stride of the staged tiles, in halves (a multiple of 8: coop
// loads want 16-byte aligned rows).
override LDS: u32 = 40u;
// Issue the next step's global loads before the current step's multiply-adds
// (off: load, stage and multiply in turn; for measurements).
override PREFETCH: bool = true;
// EXACT: scale x rows (off: scale 1, x past f16's range overflows; for
// measuring what the pre-pass costs).
override PREPASS: bool = true;

const TM: u32 = 128u;  // tokens per tile
const TN: u32 = 128u;  // weight rows per tile
const CK: u32 = 32u;   // columns per step
const SGN: u32 = 8u;   // subgroups per workgroup
// Staged vec4s of x per step and per thread (WG >= 128, so at most 8).
override NX: u32 = (TM * CK / 4u) / WG;
// W chunks per tile row and step, and per thread (at most 8).
override CPR: u32 = CK / CW;
override NW: u32 = (TN * CPR + WG - 1u) / WG;
override SGS: u32 = WG / SGN;
// Halves per staged tile (workgroup arrays sized by an override).
override TILE_HALVES: u32 = TM * LDS;

var<workgroup> st_x: array<f16, TILE_HALVES>;   // [token][column], hi part
var<workgroup> st_xl: array<f16, TILE_HALVES>;  // EXACT: lo part
var<workgroup> st_w: array<f16, TILE_HALVES>;   // [weight row][column]
// Per subgroup, two 16x16 result fragments (row-major, token rows).
var<workgroup> st_y: array<f32, SGN * 512u>;
// EXACT: per token row of the tile, the power-of-two scale of x and its inverse.
var<workgroup> st_sc: array<f32, TM>;
var<workgroup> st_inv: array<f32, TM>;

// Exponent k of the power of two 2^k with max|x| 2^k in [2^14, 2^15); 0 for a
// zero, inf or NaN max. Within +-126 so that 2^k and 2^-k are normal f32.
fn x_scale_exp(mx: f32) -> i32 {
    let bits = bitcast<u32>(mx);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(mx).exp, -126, 126);
}

// Weight row (local index in its buffer) of tile row lc, whether it is read
// from wb, and whether it exists in this launch.
struct CoopRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
}

fn coop_row(nt0: u32, lc: u32) -> CoopRow {
    var r: CoopRow;
    var n: u32;
    var grow: u32;
    if (p.epi == 2u) {
        // 64 b + [0, 32): gate rows of columns 32 b + [0, 32); 64 b + [32, 64): up rows.
        r.in_b = (lc % 64u) >= 32u;
        n = nt0 + (lc / 64u) * 32u + lc % 32u;
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

// vec4 i of the step at column k0 (row i / 8 of the tile, columns 4 (i % 8)..).
fn x_load(m0: u32, k0: u32, i: u32) -> vec4<f32> {
    let tok = m0 + i / (CK / 4u);
    let c = k0 + (i % (CK / 4u)) * 4u;
    var v = vec4<f32>(0.0);
    if (tok < p.t) {
        let xi = p.x_off + tok * p.x_stride + c;
        if (p.x_aligned == 1u && c + 4u <= p.cols) {
            v = xs4[xi / 4u];
        } else {
            for (var q = 0u; q < 4u; q++) {
                if (c + q < p.cols) {
                    v[q] = xs[xi + q];
                }
            }
        }
    }
    return v;
}

fn x_store(i: u32, v: vec4<f32>) {
    let r = i / (CK / 4u);
    let o = r * LDS + (i % (CK / 4u)) * 4u;
    var h: vec4<f16>;
    if (EXACT && !LO) {
        h = vec4<f16>(v * select(1.0, st_sc[r], PREPASS));
    } else if (LO) {
        // hi: vs rounded to 11 significant bits with integer ops, so exact in
        // f16 (normal range) and lo = vs - hi exact in f32. (Written as
        // vs - f32(f16(vs)), the H100's compiler folded the round trip and lo
        // came out 0.)
        let vs = v * select(1.0, st_sc[r], PREPASS);
        let hi = bitcast<vec4<f32>>((bitcast<vec4<u32>>(vs) + vec4<u32>(0x1000u)) & vec4<u32>(0xffffe000u));
        h = vec4<f16>(hi);
        let l = vec4<f16>(vs - hi);
        st_xl[o] = l.x;
        st_xl[o + 1u] = l.y;
        st_xl[o + 2u] = l.z;
        st_xl[o + 3u] = l.w;
    } else {
        h = vec4<f16>(v);
    }
    st_x[o] = h.x;
    st_x[o + 1u] = h.y;
    st_x[o + 2u] = h.z;
    st_x[o + 3u] = h.w;
}

// Largest |x| of token tok (0 past the tokens), partial per lane.
fn x_row_max(tok: u32, sl: u32) -> f32 {
    var mx = 0.0;
    if (tok < p.t) {
        let base = p.x_off + tok * p.x_stride;
        var c0 = 0u;
        if (p.x_aligned == 1u) {
            let n4 = p.cols / 4u;
            for (var c = sl; c < n4; c += SGS) {
                let a = abs(xs4[base / 4u + c]);
                mx = max(mx, max(max(a.x, a.y), max(a.z, a.w)));
            }
            c0 = 4u * n4;
        }
        for (var c = c0 + sl; c < p.cols; c += SGS) {
            mx = max(mx, abs(xs[base + c]));
        }
    }
    return mx;
}

// Whether the weight's scale is constant along each row (unscaled, per tensor,
// per shard, per channel, or blocks at least as wide as the row): then W is
// staged unscaled (the stored values are exact in f16) and the epilogue
// multiplies by the row's scale in f32.
// 4-bit weights never (the zero point is subtracted while staging).
fn row_scaled() -> bool {
    return !Q4 && p.block_cols >= p.cols;
}

// Scale of (global) weight row r when row_scaled().
fn row_scale(r: u32) -> f32 {
    return bitcast<f32>(scales[scale_base(r)]);
}

// Writes the staged fragments of round `r` (token fragment r / 2, pair r % 2)
// of subgroup sg; lane sl of SGS.
fn epilogue(sg: u32, sl: u32, m0: u32, nt0: u32, r: u32) {
    let fi = r / 2u;
    let pair = r % 2u;
    let tok0 = 32u * (sg % 4u) + 16u * fi;  // tile row of the fragment's token 0
    let yo = sg * 512u;
    if (p.epi == 2u) {
        // Gate fragment at yo, up fragment at yo + 256: columns 32 (sg / 4) + 16 pair + c.
        for (var e = sl; e < 256u; e += SGS) {
            let lt = tok0 + e / 16u;
            let tok = m0 + lt;
            let n = nt0 + 32u * (sg / 4u) + 16u * pair + e % 16u;
            if (tok < p.t && n < p.n_end) {
                var g = st_y[yo + e];
                var u = st_y[yo + 256u + e];
                if (EXACT) {
                    let inv = select(1.0, st_inv[lt], PREPASS);
                    g *= inv;
                    u *= inv;
                }
                if (row_scaled()) {
                    g *= row_scale(n);
                    u *= row_scale(p.half + n);
                }
                ys[p.y_off + tok * p.y_stride + n] = silu(g) * u;
            }
        }
    } else {
        // Fragments 2 pair and 2 pair + 1: tile rows 64 (sg / 4) + 32 pair + [0, 32).
        for (var e = sl; e < 512u; e += SGS) {
            let lt = tok0 + (e % 256u) / 16u;
            let tok = m0 + lt;
            let n = nt0 + 64u * (sg / 4u) + 32u * pair + 16u * (e / 256u) + e % 16u;
            if (tok < p.t && n < p.n_end) {
                var v = st_y[yo + e];
                if (EXACT) {
                    v *= select(1.0, st_inv[lt], PREPASS);
                }
                if (row_scaled()) {
                    v *= row_scale(n);
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
fn load_regs(m0: u32, k0: u32, lid: u32,
             wrow: ptr<function, array<CoopRow, 8>>, wsb: ptr<function, array<u32, 8>>,
             xr: ptr<function, array<vec4<f32>, 8>>, wr: ptr<function, array<vec4<u32>, 8>>,
             ws: ptr<function, array<f32, 8>>) {
    for (var j = 0u; j < NX; j++) {
        (*xr)[j] = x_load(m0, k0, lid + j * WG);
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
fn mm_coop(@builtin(local_invocation_index) lid: u32,
           @builtin(subgroup_id) sg: u32,
           @builtin(subgroup_invocation_id) sl: u32,
           @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * TM;
    let nt0 = p.n0 + wid.x * select(TN, TN / 2u, p.epi == 2u);
    // This subgroup's fragments: tokens fm..fm+31, tile rows fn..fn+63.
    let fm = (sg % 4u) * 32u;
    let fn_ = (sg / 4u) * 64u;

    // W items of this thread (item j: lid + j WG = tile row * CPR + chunk):
    // their rows and scale bases are the same at every step.
    var wrow: array<CoopRow, 8>;
    var wsb: array<u32, 8>;
    for (var j = 0u; j < NW; j++) {
        let i = lid + j * WG;
        let tr = coop_row(nt0, min(i / CPR, TN - 1u));
        wrow[j] = tr;
        wrow[j].valid = tr.valid && i < TN * CPR;
        wsb[j] = scale_base(tr.lrow + select(p.a_row0, p.b_row0, tr.in_b));
    }
    // A chunk's columns share one scale unless blocks are narrower than chunks.
    let chunk_scale = p.block_cols % CW == 0u || p.block_cols >= p.cols;
    let scale_w = !row_scaled();

    var xr: array<vec4<f32>, 8>;
    var wr: array<vec4<u32>, 8>;
    var ws: array<f32, 8>;
    // Exact: step 0's loads are in flight during the pre-pass. (Plain: they
    // stay in the loop; hoisting them here measured 77 -> 48 TFLOP/s.)
    if (PREFETCH && EXACT) {
        load_regs(m0, 0u, lid, &wrow, &wsb, &xr, &wr, &ws);
    }
    if (EXACT && PREPASS) {
        // Per token row, a power-of-two scale: one subgroup per row at a time.
        for (var i = 0u; i < TM / SGN; i++) {
            let lt = i * SGN + sg;
            let mx = subgroupMax(x_row_max(m0 + lt, sl));
            if (sl == 0u) {
                let k = x_scale_exp(mx);
                st_sc[lt] = ldexp(1.0, k);
                st_inv[lt] = ldexp(1.0, -k);
            }
        }
        workgroupBarrier();
    }

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.cols; k0 += CK) {
        if (!PREFETCH || (!EXACT && k0 == 0u)) {
            load_regs(m0, k0, lid, &wrow, &wsb, &xr, &wr, &ws);
        }
        workgroupBarrier();
        // Registers -> workgroup memory (x to f16; W decoded, scaled, to f16).
        for (var j = 0u; j < NX; j++) {
            x_store(lid + j * WG, xr[j]);
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
                            // (q - zero) · scale, rounded to f16 below (the
                            // plain variant only: not exact in f16).
                            d = scale_group(d, wsb[j], ch * CW + 4u * g);
                        } else if (chunk_scale) {
                            d *= ws[j];
                        } else {
                            d *= scale_at(wsb[j], ch * CW + 4u * g);
                        }
                    }
                    let h = vec4<f16>(d);
                    let o = lc * LDS + ck * CW + 4u * g;
                    st_w[o] = h.x;
                    st_w[o + 1u] = h.y;
                    st_w[o + 2u] = h.z;
                    st_w[o + 3u] = h.w;
                }
            }
        }
        workgroupBarrier();
        // Next step's global loads, in flight during the multiply-adds.
        if (PREFETCH && k0 + CK < p.cols) {
            load_regs(m0, k0 + CK, lid, &wrow, &wsb, &xr, &wr, &ws);
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let xa = fm * LDS + kk;
            let wa_ = fn_ * LDS + kk;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[xa], LDS);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[xa + 16u * LDS], LDS);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&st_w[wa_], LDS);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&st_w[wa_ + 16u * LDS], LDS);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&st_w[wa_ + 32u * LDS], LDS);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&st_w[wa_ + 48u * LDS], LDS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
            if (LO) {
                let l0 = coopLoadT<coop_mat16x16<f16, A>>(&st_xl[xa], LDS);
                let l1 = coopLoadT<coop_mat16x16<f16, A>>(&st_xl[xa + 16u * LDS], LDS);
                c00 = coopMultiplyAdd(l0, b0, c00);
                c01 = coopMultiplyAdd(l0, b1, c01);
                c02 = coopMultiplyAdd(l0, b2, c02);
                c03 = coopMultiplyAdd(l0, b3, c03);
                c10 = coopMultiplyAdd(l1, b0, c10);
                c11 = coopMultiplyAdd(l1, b1, c11);
                c12 = coopMultiplyAdd(l1, b2, c12);
                c13 = coopMultiplyAdd(l1, b3, c13);
            }
        }
    }
    // Four rounds of two fragments per subgroup through its own 2 KiB of
    // st_y: SwiGLU pairs gate fragment q with up fragment q + 2.
    let yo = sg * 512u;
    workgroupBarrier();
    coopStoreT(c00, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c02, &st_y[yo + 256u], 16u);
    } else {
        coopStoreT(c01, &st_y[yo + 256u], 16u);
    }
    workgroupBarrier();
    epilogue(sg, sl, m0, nt0, 0u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c01, &st_y[yo], 16u);
    } else {
        coopStoreT(c02, &st_y[yo], 16u);
    }
    coopStoreT(c03, &st_y[yo + 256u], 16u);
    workgroupBarrier();
    epilogue(sg, sl, m0, nt0, 1u);
    workgroupBarrier();
    coopStoreT(c10, &st_y[yo], 16u);
    if (p.epi == 2u) {
        coopStoreT(c12, &st_y[yo + 256u], 16u);
    } else {
        coopStoreT(c11, &st_y[yo + 256u], 16u);
    }
    workgroupBarrier();
    epilogue(sg, sl, m0, nt0, 2u);
    workgroupBarrier();
    if (p.epi == 2u) {
        coopStoreT(c11, &st_y[yo], 16u);
    } else {
        coopStoreT(c12, &st_y[yo], 16u);
    }
    coopStoreT(c13, &st_y[yo + 256u], 16u);
    workgroupBarrier();
    epilogue(sg, sl, m0, nt0, 3u);
}
