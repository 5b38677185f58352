// MoE grouped GEMM on cooperative matrices for 4-bit experts (FORMAT 5 / 6:
// Q4, module doc of int4.rs): moe_group_coop.wgsl with another W staging.
// Comes FIRST in its module, followed by numeric.wgsl and matmul_common.wgsl,
// as that kernel; everything but the W staging (x staging and its EXACT /
// SPLIT / SKIP switches, the multiply-adds, the epilogue, the uniform control
// flow of every barrier and cooperative-matrix op) is that file's text
// unchanged; read its header first.
//
// W staging: moe_group_coop stages one 32-column chunk (32 nibbles, CW = 32)
// per thread, so only 128 threads of 256 decode W, each with 8 lookups of
// the zero point and scale (an integer division and a load from `scales`
// each, after the barrier). Here each chunk is two items of 16 columns
// (GIPR = 2: every thread of a 256-thread workgroup stages one), and the
// (scale, zero point) of the item's first column is loaded with the chunk's
// words one step ahead (in flight during the multiply-adds). Where the group
// size is a multiple of 16 (or one group spans the row) the item's 16 columns
// share it; otherwise the per-4-column lookup of scale_group is kept. The
// staged values are the same: f16((q - zero) * scale) with the product in f32.
//
// MmParams fields used: as moe_group_coop.wgsl.

diagnostic(off, subgroup_uniformity);
diagnostic(off, derivative_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

override WG: u32 = 256u;
override EXACT: bool = false;
// EXACT: x s split in hi + lo (off: x s rounded to f16, one product).
override SPLIT: bool = true;
// Whether the lo part is staged and multiplied (one override: a `&&` in the
// condition of the coop ops would be non-uniform control flow to naga).
override LO: bool = EXACT && SPLIT;
// Skip the multiply-adds of fragment rows past the tile's pairs. The condition
// is uniform in each subgroup (what cooperative matrices need: their scope is
// the subgroup) but not in the workgroup, which naga's uniformity analysis
// reports under derivative_uniformity, hence that diagnostic is off.
override SKIP: bool = false;

const GM: u32 = 128u;   // pairs per tile
const GN: u32 = 128u;   // weight rows per tile
const GK: u32 = 32u;    // columns per step
const GSG: u32 = 8u;    // subgroups per workgroup
// Padded row stride of the staged tiles, in halves (a multiple of 8: coop
// loads want 16-byte aligned rows; 80-byte rows spread a fragment's 8 rows
// over distinct banks).
const GLDS: u32 = 40u;
const GHALVES: u32 = 5120u;  // GM * GLDS
const GNONE: u32 = 0xffffffffu;
// Staged vec4s of x per step and per thread (WG >= 128, so at most 8).
override GNX: u32 = (GM * GK / 4u) / WG;
// W items per tile row and step (the two 16-column halves of its 32-column
// chunk), and per thread (at most 8).
const GIPR: u32 = 2u;
override GNW: u32 = (GN * GIPR + WG - 1u) / WG;
override GSGS: u32 = WG / GSG;

var<workgroup> gs_x: array<f16, GHALVES>;   // [pair][column], hi part
var<workgroup> gs_xl: array<f16, GHALVES>;  // EXACT: lo part
var<workgroup> gs_w: array<f16, GHALVES>;   // [weight row][column]
// Per subgroup, two 16x16 result fragments (row-major, pair rows).
var<workgroup> gs_y: array<f32, 4096>;      // GSG * 512
// EXACT: per tile row, the power-of-two scale of x and its inverse.
var<workgroup> gs_sc: array<f32, GM>;
var<workgroup> gs_inv: array<f32, GM>;
// Pair index of each tile row (GNONE: no pair).
var<workgroup> gs_pair: array<u32, GM>;

// Exponent k of the power of two 2^k with max|x| 2^k in [2^14, 2^15); 0 for a
// zero, inf or NaN max. Within +-126 so that 2^k and 2^-k are normal f32.
fn g_scale_exp(mx: f32) -> i32 {
    let bits = bitcast<u32>(mx);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(mx).exp, -126, 126);
}

// Whole-weight row `grow` lies in the launch's piece a (or b).
fn g_in_piece(grow: u32, in_b: bool) -> bool {
    let r0 = select(p.a_row0, p.b_row0, in_b);
    let nr = select(p.a_rows, p.b_rows, in_b);
    return grow >= r0 && grow - r0 < nr;
}

// Weight row (local index in its buffer) of tile row lc, whether it is read
// from wb, whether it exists in this launch, and its whole-weight row.
struct GRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
    grow: u32,
}

fn g_row(live: bool, base: u32, nt0: u32, lc: u32) -> GRow {
    var r: GRow;
    var n: u32;
    var off: u32;
    if (p.epi == 2u) {
        // 64 b + [0, 32): gate rows of columns 32 b + [0, 32); 64 b + [32, 64): up rows.
        r.in_b = (lc % 64u) >= 32u;
        n = nt0 + (lc / 64u) * 32u + lc % 32u;
        off = select(n, p.half + n, r.in_b);
    } else {
        r.in_b = false;
        n = nt0 + lc;
        off = n;
    }
    r.grow = base + off;
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    r.valid = live && n < p.n_end && g_in_piece(r.grow, r.in_b);
    r.lrow = select(0u, r.grow - r0, r.valid);
    r.grow = select(0u, r.grow, r.valid);
    return r;
}

// x element offset of the row of pair q (GNONE: none).
fn g_xrow(q: u32) -> u32 {
    if (q == GNONE) {
        return GNONE;
    }
    return (q / p.x_div) * p.x_stride;
}

// vec4 i of the step at column k0 (tile row i / 8, columns 4 (i % 8)..) from
// the x row at element offset xo.
fn g_x_load(xo: u32, k0: u32, i: u32) -> vec4<f32> {
    let c = k0 + (i % (GK / 4u)) * 4u;
    var v = vec4<f32>(0.0);
    if (xo != GNONE) {
        let xi = xo + c;
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

fn g_x_store(i: u32, v: vec4<f32>) {
    let r = i / (GK / 4u);
    let o = r * GLDS + (i % (GK / 4u)) * 4u;
    var h: vec4<f16>;
    if (EXACT && !LO) {
        h = vec4<f16>(v * gs_sc[r]);
    } else if (LO) {
        // hi: vs rounded to 11 significant bits with integer ops, so exact in
        // f16 (normal range) and lo = vs - hi exact in f32 (written as
        // vs - f32(f16(vs)), a compiler may fold the round trip to lo = 0).
        let vs = v * gs_sc[r];
        let hi = bitcast<vec4<f32>>((bitcast<vec4<u32>>(vs) + vec4<u32>(0x1000u)) & vec4<u32>(0xffffe000u));
        h = vec4<f16>(hi);
        let l = vec4<f16>(vs - hi);
        gs_xl[o] = l.x;
        gs_xl[o + 1u] = l.y;
        gs_xl[o + 2u] = l.z;
        gs_xl[o + 3u] = l.w;
    } else {
        h = vec4<f16>(v);
    }
    gs_x[o] = h.x;
    gs_x[o + 1u] = h.y;
    gs_x[o + 2u] = h.z;
    gs_x[o + 3u] = h.w;
}

// Largest |x| of the row of pair q (0 for none), partial per lane.
fn g_row_max(q: u32, sl: u32) -> f32 {
    var mx = 0.0;
    let base = g_xrow(q);
    if (base != GNONE) {
        var c0 = 0u;
        if (p.x_aligned == 1u) {
            let n4 = p.cols / 4u;
            for (var c = sl; c < n4; c += GSGS) {
                let a = abs(xs4[base / 4u + c]);
                mx = max(mx, max(max(a.x, a.y), max(a.z, a.w)));
            }
            c0 = 4u * n4;
        }
        for (var c = c0 + sl; c < p.cols; c += GSGS) {
            mx = max(mx, abs(xs[base + c]));
        }
    }
    return mx;
}

// Whether the weight's scale is constant along each row (then W is staged
// unscaled and the epilogue multiplies by the row's scale in f32).
fn g_row_scaled() -> bool {
    return !Q4 && p.block_cols >= p.cols;
}

// Scale of whole-weight row r when g_row_scaled().
fn g_row_scale(r: u32) -> f32 {
    return bitcast<f32>(scales[scale_base(r)]);
}

// Writes the staged fragments of round `r` (pair fragment r / 2, half r % 2)
// of subgroup sg; lane sl of GSGS. `base`: the expert's first weight row.
fn g_epilogue(sg: u32, sl: u32, base: u32, nt0: u32, r: u32) {
    let fi = r / 2u;
    let pair = r % 2u;
    let row0 = 32u * (sg % 4u) + 16u * fi;  // tile row of the fragment's row 0
    let yo = sg * 512u;
    if (p.epi == 2u) {
        // Gate fragment at yo, up fragment at yo + 256: columns 32 (sg / 4) + 16 pair + c.
        for (var e = sl; e < 256u; e += GSGS) {
            let lt = row0 + e / 16u;
            let q = gs_pair[lt];
            let n = nt0 + 32u * (sg / 4u) + 16u * pair + e % 16u;
            if (q != GNONE && n < p.n_end && g_in_piece(base + n, false)
                && g_in_piece(base + p.half + n, true)) {
                var g = gs_y[yo + e];
                var u = gs_y[yo + 256u + e];
                if (EXACT) {
                    g *= gs_inv[lt];
                    u *= gs_inv[lt];
                }
                if (g_row_scaled()) {
                    g *= g_row_scale(base + n);
                    u *= g_row_scale(base + p.half + n);
                }
                ys[q * p.y_stride + n] = silu(g) * u;
            }
        }
    } else {
        // Fragments 2 pair and 2 pair + 1: tile rows 64 (sg / 4) + 32 pair + [0, 32).
        for (var e = sl; e < 512u; e += GSGS) {
            let lt = row0 + (e % 256u) / 16u;
            let q = gs_pair[lt];
            let n = nt0 + 64u * (sg / 4u) + 32u * pair + 16u * (e / 256u) + e % 16u;
            if (q != GNONE && n < p.n_end && g_in_piece(base + n, false)) {
                var v = gs_y[yo + e];
                if (EXACT) {
                    v *= gs_inv[lt];
                }
                if (g_row_scaled()) {
                    v *= g_row_scale(base + n);
                }
                let yi = q * p.y_stride + n;
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
// (raw) with the (scale, zero point) of their item's first column.
fn g_load_regs(k0: u32, lid: u32, xo: ptr<function, array<u32, 8>>,
               wrow: ptr<function, array<GRow, 8>>, wsb: ptr<function, array<u32, 8>>,
               xr: ptr<function, array<vec4<f32>, 8>>, wr: ptr<function, array<vec4<u32>, 8>>,
               wz: ptr<function, array<vec2<f32>, 8>>) {
    for (var j = 0u; j < GNX; j++) {
        (*xr)[j] = g_x_load((*xo)[j], k0, lid + j * WG);
    }
    for (var j = 0u; j < GNW; j++) {
        let ch = k0 / CW;
        let hc = ((lid + j * WG) % GIPR) * (CW / GIPR);
        let r = (*wrow)[j];
        if (r.valid && ch < p.stride4) {
            (*wr)[j] = load_chunk(r.in_b, r.lrow, ch);
            (*wz)[j] = q4_sz((*wsb)[j], ch * CW + hc);
        } else {
            (*wr)[j] = vec4<u32>(0u);
            (*wz)[j] = vec2<f32>(1.0, 0.0);
        }
    }
}

@compute @workgroup_size(WG)
fn moe_group_coop_q4(@builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_id) sg: u32,
                  @builtin(subgroup_invocation_id) sl: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    // Tile-table entry wid.y (read-only storage at a uniform index: uniform).
    let gi = wid.y;
    var start = 0u;
    var count = 0u;
    var e = 0u;
    if (gi < ids[0]) {
        let tb = p.ids_off + 4u * gi;
        start = ids[tb];
        count = min(ids[tb + 1u], GM);
        e = ids[tb + 2u];
    }
    let swi = p.epi == 2u;
    let per = select(GN, GN / 2u, swi);
    let nt0 = wid.x * per;
    let nlast = min(nt0 + per, p.n_end);
    let base = e * p.rpe;
    // Tiles none of whose rows are in this launch's pieces do nothing.
    var live = count > 0u && e < p.experts && nt0 < nlast
        && base + nt0 < p.a_row0 + p.a_rows && base + nlast > p.a_row0;
    if (swi) {
        let u0 = base + p.half + nt0;
        let u1 = base + p.half + nlast;
        live = live && u0 < p.b_row0 + p.b_rows && u1 > p.b_row0;
    }
    let kend = select(0u, p.cols, live);
    // This subgroup's fragments: tile rows fm..fm+31, weight rows fn..fn+63.
    let fm = (sg % 4u) * 32u;
    let fn_ = (sg / 4u) * 64u;

    for (var i = lid; i < GM; i += WG) {
        var q = GNONE;
        if (live && i < count) {
            q = ids[4u + start + i];
        }
        gs_pair[i] = q;
        gs_sc[i] = 1.0;
        gs_inv[i] = 1.0;
    }
    // x rows of this thread's staged vec4s (item j: tile row (lid + j WG) / 8).
    var xo: array<u32, 8>;
    for (var j = 0u; j < GNX; j++) {
        let r = (lid + j * WG) / (GK / 4u);
        var q = GNONE;
        if (live && r < count) {
            q = ids[4u + start + r];
        }
        xo[j] = g_xrow(q);
    }
    // W items of this thread (item j: lid + j WG = tile row * GIPR + half):
    // their rows and scale bases are the same at every step.
    var wrow: array<GRow, 8>;
    var wsb: array<u32, 8>;
    for (var j = 0u; j < GNW; j++) {
        let i = lid + j * WG;
        let tr = g_row(live, base, nt0, min(i / GIPR, GN - 1u));
        wrow[j] = tr;
        wrow[j].valid = tr.valid && i < GN * GIPR;
        wsb[j] = scale_base(tr.grow);
    }
    // An item's 16 columns share one group (groups of multiples of 16
    // columns, or one group per row).
    let item_group = p.block_cols % (CW / GIPR) == 0u || p.block_cols >= p.cols;

    var xr: array<vec4<f32>, 8>;
    var wr: array<vec4<u32>, 8>;
    var wz: array<vec2<f32>, 8>;
    workgroupBarrier();
    if (EXACT) {
        // Step 0's loads are in flight during the pre-pass.
        g_load_regs(0u, lid, &xo, &wrow, &wsb, &xr, &wr, &wz);
        // Per tile row, a power-of-two scale: one subgroup per row at a time.
        for (var i = 0u; i < GM / GSG; i++) {
            let lt = i * GSG + sg;
            let mx = subgroupMax(g_row_max(gs_pair[lt], sl));
            if (sl == 0u) {
                let k = g_scale_exp(mx);
                gs_sc[lt] = ldexp(1.0, k);
                gs_inv[lt] = ldexp(1.0, -k);
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
    // SKIP: this subgroup's fragment rows (pairs fm.., fm + 16..) with no
    // pair skip their multiply-adds (the tile's last rows are padding when an
    // expert's pairs do not fill it).
    let run0 = !SKIP || fm < count;
    let run1 = !SKIP || fm + 16u < count;
    for (var k0 = 0u; k0 < kend; k0 += GK) {
        if (!EXACT && k0 == 0u) {
            g_load_regs(k0, lid, &xo, &wrow, &wsb, &xr, &wr, &wz);
        }
        workgroupBarrier();
        // Registers -> workgroup memory (x to f16; W decoded, scaled, to f16).
        for (var j = 0u; j < GNX; j++) {
            g_x_store(lid + j * WG, xr[j]);
        }
        for (var j = 0u; j < GNW; j++) {
            let i = lid + j * WG;
            if (i < GN * GIPR) {
                let lc = i / GIPR;
                let hc = (i % GIPR) * (CW / GIPR);
                let ch = k0 / CW;
                let ok = wrow[j].valid && ch < p.stride4;
                for (var g = 0u; g < G / GIPR; g++) {
                    let gg = hc / 4u + g;
                    var d = decode_group(wr[j], gg);
                    if (ok) {
                        if (item_group) {
                            d = (d - wz[j].y) * wz[j].x;
                        } else {
                            d = scale_group(d, wsb[j], ch * CW + 4u * gg);
                        }
                    }
                    let h = vec4<f16>(d);
                    let o = lc * GLDS + hc + 4u * g;
                    gs_w[o] = h.x;
                    gs_w[o + 1u] = h.y;
                    gs_w[o + 2u] = h.z;
                    gs_w[o + 3u] = h.w;
                }
            }
        }
        workgroupBarrier();
        // Next step's global loads, in flight during the multiply-adds.
        if (k0 + GK < kend) {
            g_load_regs(k0 + GK, lid, &xo, &wrow, &wsb, &xr, &wr, &wz);
        }
        for (var kk = 0u; kk < GK; kk += 16u) {
            let xa = fm * GLDS + kk;
            let wa_ = fn_ * GLDS + kk;
            if (SKIP) {
                if (run0) {
                    let a0 = coopLoadT<coop_mat16x16<f16, A>>(&gs_x[xa], GLDS);
                    let b0 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_], GLDS);
                    let b1 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 16u * GLDS], GLDS);
                    let b2 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 32u * GLDS], GLDS);
                    let b3 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 48u * GLDS], GLDS);
                    c00 = coopMultiplyAdd(a0, b0, c00);
                    c01 = coopMultiplyAdd(a0, b1, c01);
                    c02 = coopMultiplyAdd(a0, b2, c02);
                    c03 = coopMultiplyAdd(a0, b3, c03);
                    if (LO) {
                        let l0 = coopLoadT<coop_mat16x16<f16, A>>(&gs_xl[xa], GLDS);
                        c00 = coopMultiplyAdd(l0, b0, c00);
                        c01 = coopMultiplyAdd(l0, b1, c01);
                        c02 = coopMultiplyAdd(l0, b2, c02);
                        c03 = coopMultiplyAdd(l0, b3, c03);
                    }
                    if (run1) {
                        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&gs_x[xa + 16u * GLDS], GLDS);
                        c10 = coopMultiplyAdd(a1, b0, c10);
                        c11 = coopMultiplyAdd(a1, b1, c11);
                        c12 = coopMultiplyAdd(a1, b2, c12);
                        c13 = coopMultiplyAdd(a1, b3, c13);
                        if (LO) {
                            let l1 = coopLoadT<coop_mat16x16<f16, A>>(&gs_xl[xa + 16u * GLDS], GLDS);
                            c10 = coopMultiplyAdd(l1, b0, c10);
                            c11 = coopMultiplyAdd(l1, b1, c11);
                            c12 = coopMultiplyAdd(l1, b2, c12);
                            c13 = coopMultiplyAdd(l1, b3, c13);
                        }
                    }
                }
            } else {
                // mm_coop's body, unchanged.
                let a0 = coopLoadT<coop_mat16x16<f16, A>>(&gs_x[xa], GLDS);
                let a1 = coopLoadT<coop_mat16x16<f16, A>>(&gs_x[xa + 16u * GLDS], GLDS);
                let b0 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_], GLDS);
                let b1 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 16u * GLDS], GLDS);
                let b2 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 32u * GLDS], GLDS);
                let b3 = coopLoad<coop_mat16x16<f16, B>>(&gs_w[wa_ + 48u * GLDS], GLDS);
                c00 = coopMultiplyAdd(a0, b0, c00);
                c01 = coopMultiplyAdd(a0, b1, c01);
                c02 = coopMultiplyAdd(a0, b2, c02);
                c03 = coopMultiplyAdd(a0, b3, c03);
                c10 = coopMultiplyAdd(a1, b0, c10);
                c11 = coopMultiplyAdd(a1, b1, c11);
                c12 = coopMultiplyAdd(a1, b2, c12);
                c13 = coopMultiplyAdd(a1, b3, c13);
                if (LO) {
                    let l0 = coopLoadT<coop_mat16x16<f16, A>>(&gs_xl[xa], GLDS);
                    let l1 = coopLoadT<coop_mat16x16<f16, A>>(&gs_xl[xa + 16u * GLDS], GLDS);
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
    }
    // Four rounds of two fragments per subgroup through its own 2 KiB of
    // gs_y: SwiGLU pairs gate fragment q with up fragment q + 2.
    let yo = sg * 512u;
    let yo2 = yo + 256u;
    let ld = 16u;
    workgroupBarrier();
    coopStoreT(c00, &gs_y[yo], ld);
    if (swi) {
        coopStoreT(c02, &gs_y[yo2], ld);
    } else {
        coopStoreT(c01, &gs_y[yo2], ld);
    }
    workgroupBarrier();
    g_epilogue(sg, sl, base, nt0, 0u);
    workgroupBarrier();
    if (swi) {
        coopStoreT(c01, &gs_y[yo], ld);
    } else {
        coopStoreT(c02, &gs_y[yo], ld);
    }
    coopStoreT(c03, &gs_y[yo2], ld);
    workgroupBarrier();
    g_epilogue(sg, sl, base, nt0, 1u);
    workgroupBarrier();
    coopStoreT(c10, &gs_y[yo], ld);
    if (swi) {
        coopStoreT(c12, &gs_y[yo2], ld);
    } else {
        coopStoreT(c11, &gs_y[yo2], ld);
    }
    workgroupBarrier();
    g_epilogue(sg, sl, base, nt0, 2u);
    workgroupBarrier();
    if (swi) {
        coopStoreT(c11, &gs_y[yo], ld);
    } else {
        coopStoreT(c12, &gs_y[yo], ld);
    }
    coopStoreT(c13, &gs_y[yo2], ld);
    workgroupBarrier();
    g_epilogue(sg, sl, base, nt0, 3u);
}
