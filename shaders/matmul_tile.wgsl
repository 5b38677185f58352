// Matmul, tiled path (GEMM, T > 16). Concatenated after numeric.wgsl and
// matmul_common.wgsl.
//
// A 16x16 workgroup computes a 64-token x 64-weight-row output tile; each
// thread a 4x4 register block. Per 32-column step, x (64x32 f32) and W (64
// rows x 32 columns, decoded from the stored format and scaled while staging,
// so the inner loop is plain f32 FMAs) go to workgroup memory, k-major as
// vec4s: 2 x 8 KiB = 16 KiB, WebGPU's default limit.
// SwiGLU: the tile's 64 weight rows are, per group of 4 local columns
// [gate j, gate j+1, up j, up j+1], so each thread holds both halves of its
// 2 outputs and the tile covers 32 output columns.
// FAST_X (ContextOptions::precision Fast) rounds x as the fast
// cooperative-matrix GEMM does, so adapters without cooperative matrices (CI's
// lavapipe) compute what it computes: per token row a power-of-two scale s
// (tile_x_scale_exp), x staged as f16(x s) (round to nearest even, subnormals
// kept) and the row's outputs multiplied by 1/s before the epilogue; weights
// whose scale varies along the row (FP8 blocks) are rounded to f16 after
// scaling, as that GEMM stages them. The row maxima need a pre-pass over the
// row's columns; tile_x holds its partials.

const BM: u32 = 64u;   // tokens per tile
const BN: u32 = 64u;   // weight rows per tile
const BK: u32 = 32u;   // columns per step

override FAST_X: bool = false;

var<workgroup> tile_x: array<vec4<f32>, 512>;  // [BK][BM / 4]
var<workgroup> tile_w: array<vec4<f32>, 512>;  // [BK][BN / 4]

// Weight row of local tile column lc, whether it is read from wb, and whether
// it exists in this launch.
struct TileRow {
    grow: u32,
    in_b: bool,
    valid: bool,
}

fn tile_row(nt0: u32, lc: u32) -> TileRow {
    var r: TileRow;
    var n: u32;
    if (p.epi == 2u) {
        let q = lc % 4u;
        n = nt0 + 2u * (lc / 4u) + (q % 2u);
        r.in_b = q >= 2u;
        r.grow = select(n, p.half + n, r.in_b);
    } else {
        n = nt0 + lc;
        r.in_b = false;
        r.grow = n;
    }
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    let nr = select(p.a_rows, p.b_rows, r.in_b);
    r.valid = n < p.n_end && r.grow >= r0 && r.grow - r0 < nr;
    if (r.valid) {
        r.grow -= r0;
    } else {
        r.grow = 0u;
    }
    return r;
}

// Exponent of the power-of-two scale of a token row whose largest |x| is mx:
// its largest value lands in [2^14, 2^15), below f16's largest finite 65504;
// 0 for a zero, infinite or NaN maximum. The rule of x_scale_exp in
// matmul_coop.wgsl (the fast path this emulates).
fn tile_x_scale_exp(mx: f32) -> i32 {
    let bits = bitcast<u32>(mx);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(mx).exp, -126, 126);
}

// FAST_X pre-pass: the largest of the 32 partial maxima of row g + 8 j
// (tile_x, flat, from element 256 j + 32 g).
fn tile_row_max(j: u32, g: u32) -> f32 {
    var mx = 0.0;
    for (var q = 0u; q < 32u; q++) {
        let i = 256u * j + 32u * g + q;
        mx = max(mx, tile_x[i / 4u][i % 4u]);
    }
    return mx;
}

// x rounded as the fast path rounds it: f16(x s), back in f32.
fn fast_x(v: f32, s: f32) -> f32 {
    return f16_round(vec4<f32>(v * s)).x;
}

@compute @workgroup_size(16, 16)
fn mm_tile(@builtin(local_invocation_id) l3: vec3<u32>,
           @builtin(local_invocation_index) lid: u32,
           @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = l3.x;
    let ty = l3.y;
    let m0 = wid.y * BM;
    // First output of this tile (a weight row, or a SwiGLU column).
    let nt0 = p.n0 + wid.x * select(BN, BN / 2u, p.epi == 2u);
    let chunks = BK / CW;
    var acc: array<vec4<f32>, 4>;
    for (var m = 0u; m < 4u; m++) {
        acc[m] = vec4<f32>(0.0);
    }
    // FAST_X: scales of the rows this thread stages (row lid / 32 + 8 j at
    // every step) and inverses of those it writes (row 4 ty + m).
    var x_sc: array<f32, 8>;
    var y_inv = vec4<f32>(1.0);
    if (FAST_X) {
        // 32 consecutive threads per row: partial maxima, 8 rows per thread.
        let g = lid / 32u;
        for (var j = 0u; j < 8u; j++) {
            let tok = m0 + g + 8u * j;
            var mx = 0.0;
            if (tok < p.t) {
                let base = p.x_off + tok * p.x_stride;
                for (var c = lid % 32u; c < p.cols; c += 32u) {
                    mx = max(mx, abs(xs[base + c]));
                }
            }
            let i = 256u * j + lid;
            tile_x[i / 4u][i % 4u] = mx;
        }
        workgroupBarrier();
        for (var j = 0u; j < 8u; j++) {
            x_sc[j] = ldexp(1.0, tile_x_scale_exp(tile_row_max(j, g)));
        }
        for (var m = 0u; m < 4u; m++) {
            let r = 4u * ty + m;
            y_inv[m] = ldexp(1.0, -tile_x_scale_exp(tile_row_max(r / 8u, r % 8u)));
        }
        workgroupBarrier();
    }
    for (var k0 = 0u; k0 < p.cols; k0 += BK) {
        // x: 2048 values, 8 per thread, consecutive threads on consecutive columns.
        for (var i = lid; i < BM * BK; i += 256u) {
            let r = i / BK;
            let k = i % BK;
            let tok = m0 + r;
            let c = k0 + k;
            var v = 0.0;
            if (tok < p.t && c < p.cols) {
                v = xs[p.x_off + tok * p.x_stride + c];
                if (FAST_X) {
                    v = fast_x(v, x_sc[r / 8u]);
                }
            }
            tile_x[k * 16u + r / 4u][r % 4u] = v;
        }
        // W: 64 rows x (BK / CW) vec4<u32> chunks, decoded and scaled.
        for (var i = lid; i < BN * chunks; i += 256u) {
            let lc = i / chunks;
            let ck = i % chunks;
            let ch = k0 / CW + ck;
            let tr = tile_row(nt0, lc);
            var w = vec4<u32>(0u);
            var sb = 0u;
            if (tr.valid && ch < p.stride4) {
                w = load_chunk(tr.in_b, tr.grow, ch);
                let r0 = select(p.a_row0, p.b_row0, tr.in_b);
                sb = scale_base(tr.grow + r0);
            }
            for (var g = 0u; g < G; g++) {
                var d = decode_group(w, g);
                if (tr.valid && ch < p.stride4) {
                    d = scale_group(d, sb, ch * CW + 4u * g);
                }
                if (FAST_X && p.block_cols < p.cols) {
                    // The fast coop GEMM stages block-scaled weights as
                    // f16(q s) (scales constant along a row stay exact there).
                    d = f16_round(d);
                }
                let kk = ck * CW + 4u * g;
                for (var q = 0u; q < 4u; q++) {
                    tile_w[(kk + q) * 16u + lc / 4u][lc % 4u] = d[q];
                }
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let a = tile_x[k * 16u + ty];
            let b = tile_w[k * 16u + tx];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }
    for (var m = 0u; m < 4u; m++) {
        let tok = m0 + ty * 4u + m;
        if (tok >= p.t) {
            break;
        }
        let yb = p.y_off + tok * p.y_stride;
        let v = acc[m] * y_inv[m];
        if (p.epi == 2u) {
            let j = nt0 + 2u * tx;
            if (j < p.n_end) {
                ys[yb + j] = silu(v.x) * v.z;
            }
            if (j + 1u < p.n_end) {
                ys[yb + j + 1u] = silu(v.y) * v.w;
            }
        } else {
            for (var q = 0u; q < 4u; q++) {
                let n = nt0 + 4u * tx + q;
                if (n < p.n_end) {
                    if (p.epi == 1u) {
                        ys[yb + n] += v[q];
                    } else {
                        ys[yb + n] = v[q];
                    }
                }
            }
        }
    }
}
