// Dense GEMM on tensor cores from f16 scratch rows (module matmul::coop_f16):
// coop_peak.wgsl's fastest staged tiling (peak_v4 with one staging buffer)
// with an epilogue. Comes FIRST in its module (the directives must precede
// every declaration), followed by numeric.wgsl (silu).
//
// Both operands were written by pre-passes into padded scratch rows of
// `p.kp` halves (the columns rounded up to the 32-column step, zeros past
// the data):
// - x (matmul_fast_x.wgsl): f16(x s) per token row with a power of two s,
//   rows rounded up to the 128-token tile (zeros), 1 / s per row in `xinv`;
// - W (matmul_w16.wgsl): per scratch row an f16 row and one f32 multiplier
//   (`wmul`), the weight row = f16 row x multiplier; scratch rows in the
//   order the tiles consume them (tile i = scratch rows 128 i .. 128 i + 127;
//   SwiGLU: tile rows 64 b .. 64 b + 31 are gate rows of output columns
//   p.n0 + 64 i + 32 b + [0, 32), tile rows 64 b + 32 .. 64 b + 63 the
//   matching up rows), rows rounded up to whole tiles (zeros).
// So the main loop has no bounds checks, no validity logic and no decode:
// it moves raw f16 words exactly as coop_peak does.
//
// A workgroup of 4 subgroups (WG = 4 x the adapter's fixed subgroup size)
// computes 128 tokens x 128 scratch rows; subgroup s owns tokens
// 64 (s % 2) .. +63 and tile rows 64 (s / 2) .. +63, 4 x 4 fragments of
// 16 x 16 with f32 accumulators. Per 32-column step the x and W tiles
// (128 x 32 halves each) are staged in one buffer of workgroup memory, rows
// padded to 40 halves (10 vec4<f16>), written as vec4<f16> and read by the
// fragment loads as arrays of vec4<f16>; the next step's global loads are
// held in registers during the current step's multiply-adds.
//
// The result passes through workgroup memory (coopStoreT), two fragments per
// subgroup at a time (SwiGLU: a gate fragment and its up fragment), so the
// epilogue (x's 1 / s, W's row multiplier, store / accumulate / SwiGLU,
// bounds checks on tokens and outputs) is plain scalar code.
//
// Each entry point ends in matmul_coop_tail.wgsl (coop_fast's: the 16
// fragments through workgroup memory into `fast_epilogue`, named as there),
// which the module appends right after it. The exact variant
// (mm_coop_f16_split: x s as hi + lo f16 parts, two products into the same
// accumulators) is matmul_coop_f16_split.wgsl, appended to this module with
// its own copy of the tail.
//
// Every coop op and barrier is in workgroup-uniform control flow (no early
// return, loop bounds from the uniform params and overrides); subgroup_id only
// moves pointers. Workgroup arrays have constant sizes; every accumulator is
// named and used; coopStore indices are bound by `let` (naga 30's SPIR-V
// writer needs both).

diagnostic(off, subgroup_uniformity);
enable f16;
enable wgpu_cooperative_matrix;

struct F16Params {
    t: u32,         // tokens of this launch (rows of x from scratch row 0)
    kp: u32,        // halves per scratch row of x and W (a multiple of 32)
    x_lo: u32,      // split: half offset of the lo rows in xq
    y_off: u32,     // element offset of token 0's output row in ys
    y_stride: u32,
    n0: u32,        // output (row, or SwiGLU column) of scratch row 0
    n_end: u32,     // outputs of this launch end here
    epi: u32,       // 0 Store, 1 Accumulate, 2 SwiGLU
    _pad0: u32,     // 0 (the emulation's loop trip counts add them)
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: F16Params;
// x scratch: rows of kp halves as pieces of 8 halves; 1 / s per row.
@group(0) @binding(1) var<storage, read> xq: array<mat2x4<f16>>;
@group(0) @binding(2) var<storage, read> xinv: array<f32>;
// W scratch: rows of kp halves as pieces of 8 halves; multiplier per row.
@group(0) @binding(3) var<storage, read> wq: array<mat2x4<f16>>;
@group(0) @binding(4) var<storage, read> wmul: array<f32>;
@group(0) @binding(5) var<storage, read_write> ys: array<f32>;

// 4 x the subgroup size.
override WG: u32 = 128u;

const TM: u32 = 128u;     // tokens per tile
const TN: u32 = 128u;     // scratch rows per tile
const CK: u32 = 32u;      // columns per step
const LDS4: u32 = 10u;    // padded row stride of the staged tiles, vec4<f16>s
const STAGE4: u32 = 1280u;  // TM * LDS4 (= TN * LDS4)
// Pieces of 8 halves per thread and step (4 per tile row), at most 8.
override PX: u32 = TM * 4u / WG;
override PW: u32 = TN * 4u / WG;
// Lanes of a subgroup.
override SGS: u32 = WG / 4u;

var<workgroup> sx4: array<vec4<f16>, STAGE4>;  // [token][column]
var<workgroup> sw4: array<vec4<f16>, STAGE4>;  // [scratch row][column]
// Per subgroup, two 16 x 16 result fragments (row-major, token rows).
var<workgroup> st_y: array<f32, 2048u>;

// Piece q of the step at column k0 of the x tile (row q / 4, halves 8 (q % 4)..).
fn x_piece(m0: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return xq[((m0 + q / 4u) * p.kp + k0) / 8u + q % 4u];
}

// Piece q of the step at column k0 of the W tile starting at scratch row r0.
fn w_piece(r0: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return wq[((r0 + q / 4u) * p.kp + k0) / 8u + q % 4u];
}

fn put_x(q: u32, v: mat2x4<f16>) {
    let o = (q / 4u) * LDS4 + 2u * (q % 4u);
    sx4[o] = v[0];
    sx4[o + 1u] = v[1];
}

fn put_w(q: u32, v: mat2x4<f16>) {
    let o = (q / 4u) * LDS4 + 2u * (q % 4u);
    sw4[o] = v[0];
    sw4[o + 1u] = v[1];
}

// Writes the staged fragments of token fragment fi, pair `pair` of subgroup
// sg (lane sl of SGS); the workgroup's tile is tokens m0.., outputs nt0..
// (SwiGLU: the tile's 128 scratch rows give 64 output columns).
fn fast_epilogue(sg: u32, sl: u32, m0: u32, nt0: u32, fi: u32, pair: u32) {
    let tok0 = 64u * (sg % 2u) + 16u * fi;  // tile row of the fragment's token 0
    let sn = sg / 2u;
    let yo = sg * 512u;
    // Scratch row of the tile's row 0.
    let r0 = (nt0 - p.n0) * select(1u, 2u, p.epi == 2u);
    if (p.epi == 2u) {
        // Gate fragment at yo (tile rows 64 sn + 16 pair + c), up fragment at
        // yo + 256 (tile rows 64 sn + 32 + 16 pair + c): output columns
        // nt0 + 32 sn + 16 pair + c.
        for (var e = sl; e < 256u; e += SGS) {
            let tok = m0 + tok0 + e / 16u;
            let c = 16u * pair + e % 16u;
            let n = nt0 + 32u * sn + c;
            if (tok < p.t && n < p.n_end) {
                let inv = xinv[tok];
                let gr = r0 + 64u * sn + c;
                let g = st_y[yo + e] * inv * wmul[gr];
                let u = st_y[yo + 256u + e] * inv * wmul[gr + 32u];
                ys[p.y_off + tok * p.y_stride + n] = silu(g) * u;
            }
        }
    } else {
        // Fragments 2 pair and 2 pair + 1: tile rows 64 sn + 32 pair + [0, 32).
        for (var e = sl; e < 512u; e += SGS) {
            let tok = m0 + tok0 + (e % 256u) / 16u;
            let lr = 64u * sn + 32u * pair + 16u * (e / 256u) + e % 16u;
            let n = nt0 + lr;
            if (tok < p.t && n < p.n_end) {
                let v = st_y[yo + e] * xinv[tok] * wmul[r0 + lr];
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
fn mm_coop_f16(@builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_id) sg: u32,
               @builtin(subgroup_invocation_id) sl: u32,
               @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * TM;
    let r0 = wid.x * TN;
    let nt0 = p.n0 + wid.x * select(TN, TN / 2u, p.epi == 2u);
    // This subgroup's fragments: tokens fm..fm+63, tile rows fn_..fn_+63.
    let fm = (sg % 2u) * 64u;
    let fn_ = (sg / 2u) * 64u;
    var rx: array<mat2x4<f16>, 8>;
    var rw: array<mat2x4<f16>, 8>;
    for (var j = 0u; j < PX; j++) {
        rx[j] = x_piece(m0, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PW; j++) {
        rw[j] = w_piece(r0, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PX; j++) {
        put_x(lid + j * WG, rx[j]);
    }
    for (var j = 0u; j < PW; j++) {
        put_w(lid + j * WG, rw[j]);
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
    for (var k0 = 0u; k0 < p.kp; k0 += CK) {
        let more = k0 + CK < p.kp;
        // Next step's global loads, in flight during the multiply-adds.
        if (more) {
            for (var j = 0u; j < PX; j++) {
                rx[j] = x_piece(m0, k0 + CK, lid + j * WG);
            }
            for (var j = 0u; j < PW; j++) {
                rw[j] = w_piece(r0, k0 + CK, lid + j * WG);
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
            for (var j = 0u; j < PW; j++) {
                put_w(lid + j * WG, rw[j]);
            }
        }
        workgroupBarrier();
    }
