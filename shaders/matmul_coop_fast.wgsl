// Matmul, fast tensor-core path (MatmulPrecision::Fast, T > 16): the layout of
// coop_peak.wgsl's fastest staged tiling with the library's weights and
// epilogues. Comes FIRST in its module (the directives must precede every
// declaration), followed by numeric.wgsl and matmul_common.wgsl (bindings,
// params, decode).
//
// x is NOT converted here: a pre-pass (matmul_fast_x.wgsl) wrote it once per
// GEMM as f16(x s) with a per-row power of two s, rows of `p.x_stride` halves
// (the columns rounded up to 32, zero padded) and the rows rounded up to the
// 128-token tile (zeros), and 1 / s per row in `xinv`. Staging x moves those
// f16 words as they are, in 16-byte pieces, exactly as coop_peak does.
//
// A workgroup of 4 subgroups (WG = 4 x the adapter's fixed subgroup size)
// computes 128 tokens x 128 weight rows; subgroup s owns tokens
// 64 (s % 2) .. +63 and tile rows 64 (s / 2) .. +63, 4 x 4 fragments of
// 16 x 16 with f32 accumulators (8 fragment loads feed 16 multiply-adds per
// 16-column slice). Per 32-column step the x tile (128 x 32 halves) and the W
// tile (128 rows x 32 columns decoded from the stored format to f16, no scale:
// this kernel takes only weights whose scale is constant along each row, and
// the epilogue applies it in f32, so W is exact in f16) are staged in one
// buffer of workgroup memory, rows padded to 40 halves (10 vec4<f16>), written
// as vec4<f16> and read by the fragment loads as arrays of vec4<f16>. The next
// step's global loads (x pieces, raw W chunks) are issued into registers
// before the current step's multiply-adds; W is decoded when they are written
// to workgroup memory after the step's barrier.
//
// The result passes through workgroup memory (coopStoreT), two fragments per
// subgroup at a time (for SwiGLU a gate fragment and its up fragment), so the
// epilogue (1 / s, the row's weight scale, store / accumulate / SwiGLU, bounds
// checks) is plain scalar code. SwiGLU: tile rows 64 b .. 64 b + 31 are gate
// rows n0 + 32 b .. +31 and 64 b + 32 .. 64 b + 63 the matching up rows
// (b = 0, 1), as in mm_coop: a tile covers 64 output columns and each
// subgroup holds both halves of its columns.
//
// The exact variant (mm_coop_split) is matmul_coop_split.wgsl, appended to
// this module.
//
// Every coop op and barrier is in workgroup-uniform control flow (no early
// return, loop bounds from the uniform params and overrides); subgroup_id only
// moves pointers. Workgroup arrays have constant sizes; every accumulator is
// named and used; coopStore indices are bound by `let` (naga 30's SPIR-V
// writer needs both).

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

// 4 x the subgroup size.
override WG: u32 = 128u;

const TM: u32 = 128u;     // tokens per tile
const TN: u32 = 128u;     // weight rows per tile
const CK: u32 = 32u;      // columns per step
const LDS4: u32 = 10u;    // padded row stride of the staged tiles, vec4<f16>s
const STAGE4: u32 = 1280u;  // TM * LDS4 (= TN * LDS4)
// x pieces of 8 halves per thread and step (4 per tile row), at most 8.
override PX: u32 = TM * 4u / WG;
// W chunks per tile row and step (CW from matmul_common), and per thread.
override CPR: u32 = CK / CW;
override NW: u32 = TN * CPR / WG;
// Lanes of a subgroup.
override SGS: u32 = WG / 4u;

// The pre-pass's output: x rows as pieces of 8 halves, and 1 / s per row.
@group(0) @binding(8) var<storage, read> xq: array<mat2x4<f16>>;
@group(0) @binding(9) var<storage, read> xinv: array<f32>;

var<workgroup> sx4: array<vec4<f16>, STAGE4>;  // [token][column]
var<workgroup> sw4: array<vec4<f16>, STAGE4>;  // [weight row][column]
// Per subgroup, two 16 x 16 result fragments (row-major, token rows).
var<workgroup> st_y: array<f32, 2048u>;

// Weight row (local index in its buffer) of tile row lc, whether it is read
// from wb, and whether it exists in this launch (mm_coop's coop_row).
struct FastRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
}

fn fast_row(nt0: u32, lc: u32) -> FastRow {
    var r: FastRow;
    var n: u32;
    var grow: u32;
    if (p.epi == 2u) {
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

// Piece q of the step at column k0 of the x tile (row q / 4, halves 8 (q % 4)..).
fn x_piece(m0: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return xq[((m0 + q / 4u) * p.x_stride + k0) / 8u + q % 4u];
}

fn put_x(q: u32, v: mat2x4<f16>) {
    let o = (q / 4u) * LDS4 + 2u * (q % 4u);
    sx4[o] = v[0];
    sx4[o + 1u] = v[1];
}

// Raw chunk of W item j (tile row lc, chunk ck of the step) at column k0.
fn w_chunk(r: FastRow, k0: u32, ck: u32) -> vec4<u32> {
    let ch = k0 / CW + ck;
    if (r.valid && ch < p.stride4) {
        return load_chunk(r.in_b, r.lrow, ch);
    }
    return vec4<u32>(0u);
}

// Decodes chunk w (tile row lc, chunk ck) to f16 into sw4: exact for BF16 in
// f16's normal range, F16, E4M3 and E5M2.
fn put_w(lc: u32, ck: u32, w: vec4<u32>) {
    let o = lc * LDS4 + ck * (CW / 4u);
    for (var g = 0u; g < G; g++) {
        sw4[o + g] = vec4<f16>(decode_group(w, g));
    }
}

// Scale of (global) weight row r (constant along the row).
fn fast_row_scale(r: u32) -> f32 {
    return bitcast<f32>(scales[scale_base(r)]);
}

// Writes the staged fragments of token fragment fi, pair `pair` of subgroup
// sg; lane sl of SGS.
fn fast_epilogue(sg: u32, sl: u32, m0: u32, nt0: u32, fi: u32, pair: u32) {
    let tok0 = 64u * (sg % 2u) + 16u * fi;  // tile row of the fragment's token 0
    let sn = sg / 2u;
    let yo = sg * 512u;
    if (p.epi == 2u) {
        // Gate fragment at yo, up fragment at yo + 256: columns 32 sn + 16 pair + c.
        for (var e = sl; e < 256u; e += SGS) {
            let tok = m0 + tok0 + e / 16u;
            let n = nt0 + 32u * sn + 16u * pair + e % 16u;
            if (tok < p.t && n < p.n_end) {
                let inv = xinv[tok];
                let g = st_y[yo + e] * inv * fast_row_scale(n);
                let u = st_y[yo + 256u + e] * inv * fast_row_scale(p.half + n);
                ys[p.y_off + tok * p.y_stride + n] = silu(g) * u;
            }
        }
    } else {
        // Fragments 2 pair and 2 pair + 1: tile rows 64 sn + 32 pair + [0, 32).
        for (var e = sl; e < 512u; e += SGS) {
            let tok = m0 + tok0 + (e % 256u) / 16u;
            let n = nt0 + 64u * sn + 32u * pair + 16u * (e / 256u) + e % 16u;
            if (tok < p.t && n < p.n_end) {
                let v = st_y[yo + e] * xinv[tok] * fast_row_scale(n);
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

@compute @workgroup_size(WG)
fn mm_coop_fast(@builtin(local_invocation_index) lid: u32,
                @builtin(subgroup_id) sg: u32,
                @builtin(subgroup_invocation_id) sl: u32,
                @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * TM;
    let nt0 = p.n0 + wid.x * select(TN, TN / 2u, p.epi == 2u);
    // This subgroup's fragments: tokens fm..fm+63, tile rows fn_..fn_+63.
    let fm = (sg % 2u) * 64u;
    let fn_ = (sg / 2u) * 64u;

    // W items of this thread (item j: lid + j WG = tile row * CPR + chunk):
    // the same rows at every step.
    var wrow: array<FastRow, 8>;
    for (var j = 0u; j < NW; j++) {
        wrow[j] = fast_row(nt0, (lid + j * WG) / CPR);
    }
    var rx: array<mat2x4<f16>, 8>;
    var rw: array<vec4<u32>, 8>;
    for (var j = 0u; j < PX; j++) {
        rx[j] = x_piece(m0, 0u, lid + j * WG);
    }
    for (var j = 0u; j < NW; j++) {
        rw[j] = w_chunk(wrow[j], 0u, (lid + j * WG) % CPR);
    }
    for (var j = 0u; j < PX; j++) {
        put_x(lid + j * WG, rx[j]);
    }
    for (var j = 0u; j < NW; j++) {
        let i = lid + j * WG;
        put_w(i / CPR, i % CPR, rw[j]);
    }
    workgroupBarrier();

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c22 = coop_mat16x16<f32, C>();
    var c23 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    var c32 = coop_mat16x16<f32, C>();
    var c33 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.cols; k0 += CK) {
        let more = k0 + CK < p.cols;
        // Next step's global loads, in flight during the multiply-adds.
        if (more) {
            for (var j = 0u; j < PX; j++) {
                rx[j] = x_piece(m0, k0 + CK, lid + j * WG);
            }
            for (var j = 0u; j < NW; j++) {
                rw[j] = w_chunk(wrow[j], k0 + CK, (lid + j * WG) % CPR);
            }
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let xb = fm * LDS4 + kk / 4u;
            let wb_ = fn_ * LDS4 + kk / 4u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb], LDS4);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + 16u * LDS4], LDS4);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + 32u * LDS4], LDS4);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&sx4[xb + 48u * LDS4], LDS4);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb_], LDS4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb_ + 16u * LDS4], LDS4);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb_ + 32u * LDS4], LDS4);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&sw4[wb_ + 48u * LDS4], LDS4);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
        if (more) {
            // Every subgroup is done reading this step's tiles.
            workgroupBarrier();
            for (var j = 0u; j < PX; j++) {
                put_x(lid + j * WG, rx[j]);
            }
            for (var j = 0u; j < NW; j++) {
                let i = lid + j * WG;
                put_w(i / CPR, i % CPR, rw[j]);
            }
        }
        workgroupBarrier();
    }
