// Matmul, cooperative-matrix path for FP8 (E4M3 / E5M2) weights with block
// scales narrower than the row (128 x 128 blocks), derived from
// matmul_coop.wgsl (mm_coop). Comes FIRST in its module (the directives must
// precede every declaration), followed by numeric.wgsl and matmul_common.wgsl.
//
// The stored FP8 values q are exact in f16, and within one scale block a block
// scale is one number per weight row block, so the scale is folded into the x
// operand instead of the weight: for output (t, n),
//   y = 2^-e sum_k [x_k s(n, k) 2^e] q(n, k),
// with e a power-of-two exponent per (token row, scale row) that puts the
// largest |x_k s(n, k)| of the row (f32 products) in [2^14, 2^15), so nothing
// overflows f16 and each element's precision is relative to the largest
// scaled element, whatever the scales' spread. W is staged as q (exact), x as
// x_k (s(n, k) 2^e) split into hi + lo (EXACT: 22 significant bits, as mm_coop's
// exact variant) or rounded to f16 (fast). The products are exact in f32, so
// the only rounding besides the f32 sums is that of the scaled x.
//
// Scaled x depends on the weight row's scale row. A tile's weight rows are
// processed in passes, one per distinct scale row ("segment": rows whose
// scale_base is the same) among the tile's rows: each pass stages W with the
// other rows zeroed and x scaled by this segment's scales, multiplies over all
// of K into freshly zeroed accumulators, and its epilogue writes the rows of
// this segment only. With 128-row blocks and tiles aligned to them (the usual
// case) a tile is one pass; a tile straddling two blocks (weights of several
// sources, SwiGLU halves not a multiple of 128) takes two. The host runs this
// kernel only where scale rows are on average at least 64 rows (so passes
// stay few).
//
// SwiGLU is two launches: the gate rows (epi 0, Store into y), then the up
// rows (epi 2 here: rows half + n read from wb, y = silu(y) * up), so a tile
// never mixes the gate's and the up's scale rows and no second x copy is
// needed (workgroup memory is at mm_coop's 47 KiB).
//
// Layout, staging and prefetch as mm_coop (8 subgroups of 2 x 4 16x16
// fragments, 128 x 128 tile, 32-column steps, padded row stride LDS). Every
// coop op and barrier is in workgroup-uniform control flow: the pass loop ends
// on a value read with workgroupUniformLoad, the K loop on uniform params.

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

override WG: u32 = 256u;
// x (s 2^e) split in hi + lo, two products (off: rounded to f16, one product).
override EXACT: bool = true;
// Padded row stride of the staged tiles, in halves (a multiple of 8).
override LDS: u32 = 40u;

const TM: u32 = 128u;  // tokens per tile
const TN: u32 = 128u;  // weight rows per tile
const CK: u32 = 32u;   // columns per step
const SGN: u32 = 8u;   // subgroups per workgroup
const NONE: u32 = 0xffffffffu;
// Staged vec4s of x per step and per thread (WG >= 128, so at most 8).
override NX: u32 = (TM * CK / 4u) / WG;
// W chunks per tile row and step, and per thread (at most 8).
override CPR: u32 = CK / CW;
override NW: u32 = (TN * CPR + WG - 1u) / WG;
override SGS: u32 = WG / SGN;
override TILE_HALVES: u32 = TM * LDS;

var<workgroup> st_x: array<f16, TILE_HALVES>;   // [token][column], hi part
var<workgroup> st_xl: array<f16, TILE_HALVES>;  // EXACT: lo part
var<workgroup> st_w: array<f16, TILE_HALVES>;   // [weight row][column], q
// Per subgroup, two 16x16 result fragments (row-major, token rows).
var<workgroup> st_y: array<f32, SGN * 512u>;
// The current segment's exponent e of each token row.
var<workgroup> st_e: array<i32, TM>;
// scale_base of each tile row (NONE: no such row in this launch).
var<workgroup> st_rb: array<u32, TN>;
var<workgroup> seg_min: atomic<u32>;
var<workgroup> seg_cur: u32;

// Exponent k of the power of two 2^k with m 2^k in [2^14, 2^15); 0 for a
// zero, inf or NaN m. Within +-126 (the rule of mm_coop's x_scale_exp).
fn x_scale_exp(m: f32) -> i32 {
    let bits = bitcast<u32>(m);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(m).exp, -126, 126);
}

// Weight row (local index in its buffer) of tile row lc, whether it is read
// from wb, whether it exists in this launch, and its scale_base (NONE if not).
struct BlkRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
    sb: u32,
}

fn blk_row(nt0: u32, lc: u32) -> BlkRow {
    var r: BlkRow;
    let n = nt0 + lc;
    // epi 2: the up rows of a SwiGLU, half + n, from wb.
    r.in_b = p.epi == 2u;
    let grow = select(n, p.half + n, r.in_b);
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    let nr = select(p.a_rows, p.b_rows, r.in_b);
    r.valid = n < p.n_end && grow >= r0 && grow - r0 < nr;
    r.lrow = select(0u, grow - r0, r.valid);
    r.sb = select(NONE, scale_base(grow), r.valid);
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

// Stages vec4 i of the step at column k0 as x (s 2^e) for the segment whose
// scales start at scales[cur]. block_cols is a multiple of 4 (the loader's
// rule), so the 4 columns share one block scale.
fn x_store(i: u32, k0: u32, v: vec4<f32>, cur: u32) {
    let r = i / (CK / 4u);
    let kc = (i % (CK / 4u)) * 4u;
    let o = r * LDS + kc;
    let f = ldexp(scale_at(cur, k0 + kc), st_e[r]);
    let vs = v * f;
    var h: vec4<f16>;
    if (EXACT) {
        // hi: vs rounded to 11 significant bits with integer ops, so exact in
        // f16 (normal range) and lo = vs - hi exact in f32 (mm_coop's split).
        let hi = bitcast<vec4<f32>>((bitcast<vec4<u32>>(vs) + vec4<u32>(0x1000u)) & vec4<u32>(0xffffe000u));
        h = vec4<f16>(hi);
        let l = vec4<f16>(vs - hi);
        st_xl[o] = l.x;
        st_xl[o + 1u] = l.y;
        st_xl[o + 2u] = l.z;
        st_xl[o + 3u] = l.w;
    } else {
        h = vec4<f16>(vs);
    }
    st_x[o] = h.x;
    st_x[o + 1u] = h.y;
    st_x[o + 2u] = h.z;
    st_x[o + 3u] = h.w;
}

// Largest |x_k s_k| of token tok (0 past the tokens) with the scales of the
// segment `cur`, partial per lane (4 aligned columns share one block scale).
fn x_row_max(tok: u32, sl: u32, cur: u32) -> f32 {
    var mx = 0.0;
    if (tok < p.t) {
        let base = p.x_off + tok * p.x_stride;
        var c0 = 0u;
        if (p.x_aligned == 1u) {
            let n4 = p.cols / 4u;
            for (var c = sl; c < n4; c += SGS) {
                let a = abs(xs4[base / 4u + c] * scale_at(cur, 4u * c));
                mx = max(mx, max(max(a.x, a.y), max(a.z, a.w)));
            }
            c0 = 4u * n4;
        }
        for (var c = c0 + sl; c < p.cols; c += SGS) {
            mx = max(mx, abs(xs[base + c] * scale_at(cur, c)));
        }
    }
    return mx;
}

// Writes the staged fragments of round `r` (token fragment r / 2, row
// fragments 2 (r % 2) and 2 (r % 2) + 1) of subgroup sg for the rows of the
// segment `cur`; lane sl of SGS.
fn epilogue(sg: u32, sl: u32, m0: u32, nt0: u32, r: u32, cur: u32) {
    let fi = r / 2u;
    let pair = r % 2u;
    let tok0 = 32u * (sg % 4u) + 16u * fi;  // tile row of the fragment's token 0
    let yo = sg * 512u;
    for (var e = sl; e < 512u; e += SGS) {
        let lt = tok0 + (e % 256u) / 16u;
        let tok = m0 + lt;
        let lc = 64u * (sg / 4u) + 32u * pair + 16u * (e / 256u) + e % 16u;
        let n = nt0 + lc;
        if (tok < p.t && n < p.n_end && st_rb[lc] == cur) {
            let v = ldexp(st_y[yo + e], -st_e[lt]);
            let yi = p.y_off + tok * p.y_stride + n;
            if (p.epi == 1u) {
                ys[yi] += v;
            } else if (p.epi == 2u) {
                // y holds the gate (the previous launch): silu(gate) * up.
                ys[yi] = silu(ys[yi]) * v;
            } else {
                ys[yi] = v;
            }
        }
    }
}

// This thread's registers of the step at column k0: x vec4s, and the raw W
// chunks of the rows of segment `cur` (zero for the others).
fn load_regs(m0: u32, k0: u32, lid: u32, cur: u32,
             wrow: ptr<function, array<BlkRow, 8>>,
             xr: ptr<function, array<vec4<f32>, 8>>, wr: ptr<function, array<vec4<u32>, 8>>) {
    for (var j = 0u; j < NX; j++) {
        (*xr)[j] = x_load(m0, k0, lid + j * WG);
    }
    for (var j = 0u; j < NW; j++) {
        let ch = k0 / CW + (lid + j * WG) % CPR;
        let r = (*wrow)[j];
        if (r.sb == cur && ch < p.stride4) {
            (*wr)[j] = load_chunk(r.in_b, r.lrow, ch);
        } else {
            (*wr)[j] = vec4<u32>(0u);
        }
    }
}

@compute @workgroup_size(WG)
fn mm_coop_blocks(@builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_id) sg: u32,
                  @builtin(subgroup_invocation_id) sl: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * TM;
    let nt0 = p.n0 + wid.x * TN;
    // This subgroup's fragments: tokens fm..fm+31, tile rows fn..fn+63.
    let fm = (sg % 4u) * 32u;
    let fn_ = (sg / 4u) * 64u;

    // W items of this thread (item j: lid + j WG = tile row * CPR + chunk):
    // the same rows at every step. The first item of each row records the
    // row's scale base for the segment search and the epilogue.
    var wrow: array<BlkRow, 8>;
    for (var j = 0u; j < NW; j++) {
        let i = lid + j * WG;
        var r = blk_row(nt0, min(i / CPR, TN - 1u));
        if (i >= TN * CPR) {
            r.valid = false;
            r.sb = NONE;
        }
        wrow[j] = r;
        if (i < TN * CPR && i % CPR == 0u) {
            st_rb[i / CPR] = r.sb;
        }
    }

    var xr: array<vec4<f32>, 8>;
    var wr: array<vec4<u32>, 8>;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    // Segments in increasing scale_base order: `lo` is the smallest base not
    // yet done.
    var lo = 0u;
    loop {
        // The previous pass's epilogue (st_e, st_y) is done; st_rb written.
        workgroupBarrier();
        if (lid == 0u) {
            atomicStore(&seg_min, NONE);
        }
        workgroupBarrier();
        for (var j = 0u; j < NW; j++) {
            let b = wrow[j].sb;
            if (b != NONE && b >= lo) {
                atomicMin(&seg_min, b);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            seg_cur = atomicLoad(&seg_min);
        }
        let cur = workgroupUniformLoad(&seg_cur);
        if (cur == NONE) {
            break;
        }
        lo = cur + 1u;

        // e per token row for this segment (one subgroup per row at a time);
        // the K loop's first barrier orders these writes before their reads.
        for (var i = 0u; i < TM / SGN; i++) {
            let lt = i * SGN + sg;
            let mx = subgroupMax(x_row_max(m0 + lt, sl, cur));
            if (sl == 0u) {
                st_e[lt] = x_scale_exp(mx);
            }
        }

        c00 = coop_mat16x16<f32, C>();
        c01 = coop_mat16x16<f32, C>();
        c02 = coop_mat16x16<f32, C>();
        c03 = coop_mat16x16<f32, C>();
        c10 = coop_mat16x16<f32, C>();
        c11 = coop_mat16x16<f32, C>();
        c12 = coop_mat16x16<f32, C>();
        c13 = coop_mat16x16<f32, C>();
        load_regs(m0, 0u, lid, cur, &wrow, &xr, &wr);
        for (var k0 = 0u; k0 < p.cols; k0 += CK) {
            workgroupBarrier();
            // Registers -> workgroup memory (x scaled for this segment; W as q).
            for (var j = 0u; j < NX; j++) {
                x_store(lid + j * WG, k0, xr[j], cur);
            }
            for (var j = 0u; j < NW; j++) {
                let i = lid + j * WG;
                if (i < TN * CPR) {
                    let lc = i / CPR;
                    let ck = i % CPR;
                    for (var g = 0u; g < G; g++) {
                        // Zero chunks (other segments, padding) decode to 0.
                        let h = vec4<f16>(decode_group(wr[j], g));
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
            if (k0 + CK < p.cols) {
                load_regs(m0, k0 + CK, lid, cur, &wrow, &xr, &wr);
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
                if (EXACT) {
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
        // st_y; each writes this segment's rows.
        let yo = sg * 512u;
        workgroupBarrier();
        coopStoreT(c00, &st_y[yo], 16u);
        coopStoreT(c01, &st_y[yo + 256u], 16u);
        workgroupBarrier();
        epilogue(sg, sl, m0, nt0, 0u, cur);
        workgroupBarrier();
        coopStoreT(c02, &st_y[yo], 16u);
        coopStoreT(c03, &st_y[yo + 256u], 16u);
        workgroupBarrier();
        epilogue(sg, sl, m0, nt0, 1u, cur);
        workgroupBarrier();
        coopStoreT(c10, &st_y[yo], 16u);
        coopStoreT(c11, &st_y[yo + 256u], 16u);
        workgroupBarrier();
        epilogue(sg, sl, m0, nt0, 2u, cur);
        workgroupBarrier();
        coopStoreT(c12, &st_y[yo], 16u);
        coopStoreT(c13, &st_y[yo + 256u], 16u);
        workgroupBarrier();
        epilogue(sg, sl, m0, nt0, 3u, cur);
    }
}
