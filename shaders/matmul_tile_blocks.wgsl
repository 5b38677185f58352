// Matmul, scalar tiled path computing what the fast variant of
// matmul_coop_blocks.wgsl (block-scaled FP8 on tensor cores, the scale folded
// into x) computes, for adapters without cooperative matrices (CI's lavapipe
// among them): precision Fast with FP8 block scales. Derived from
// matmul_tile.wgsl; concatenated after numeric.wgsl and matmul_common.wgsl.
//
// Output (t, n) is 2^-e sum_k f16(x_k (s(n, k) 2^e)) q(n, k) with
// e = x_scale_exp(max_k |x_k s(n, k)|) (f32 products; the coop kernel's rule), q the
// stored FP8 value (exact) and f16() round to nearest even (f16_round; the
// coop kernel converts to f16 in hardware). Each product is exact in f32, so
// both kernels differ only in the order of their f32 sums.
//
// A 16x16 workgroup computes a 64-token x 64-weight-row tile, each thread a
// 4x4 register block; per 32-column step x and W are staged k-major in
// workgroup memory (2 x 8 KiB, WebGPU's default limit), x already scaled and
// rounded, W as q (f32, exact). The rounding depends on the weight row's scale
// row, so the tile's rows are processed in passes, one per run of consecutive
// rows with the same scale_base (usually one): each stages x for that scale
// row, zeroes the other rows' W, and adds its 2^-e-scaled sums to the outputs
// (the other rows' sums are exactly 0). Runs are found by every thread from
// the scale table (read-only storage, uniform indices), so the pass loop is
// uniform control flow.
//
// SwiGLU is two launches, as for the coop kernel: the gate rows (epi 0) into
// y, then the up rows (epi 2: rows half + n from wb, y = silu(y) * up).

const BM: u32 = 64u;   // tokens per tile
const BN: u32 = 64u;   // weight rows per tile
const BK: u32 = 32u;   // columns per step

var<workgroup> tile_x: array<vec4<f32>, 512>;  // [BK][BM / 4]
var<workgroup> tile_w: array<vec4<f32>, 512>;  // [BK][BN / 4]

// Weight row (local index in its buffer) of local tile row lc, whether it is
// read from wb, and whether it exists in this launch.
struct TbRow {
    lrow: u32,
    in_b: bool,
    valid: bool,
    grow: u32,
}

fn tb_row(nt0: u32, lc: u32) -> TbRow {
    var r: TbRow;
    let n = nt0 + lc;
    r.in_b = p.epi == 2u;
    r.grow = select(n, p.half + n, r.in_b);
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    let nr = select(p.a_rows, p.b_rows, r.in_b);
    r.valid = n < p.n_end && r.grow >= r0 && r.grow - r0 < nr;
    r.lrow = select(0u, r.grow - r0, r.valid);
    return r;
}

// The coop kernel's exponent rule (x_scale_exp in matmul_coop_blocks.wgsl).
fn tb_scale_exp(m: f32) -> i32 {
    let bits = bitcast<u32>(m);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(m).exp, -126, 126);
}

// Pre-pass: the largest of the 32 partial maxima of row g + 8 j (tile_x,
// flat, from element 256 j + 32 g).
fn tb_row_max(j: u32, g: u32) -> f32 {
    var mx = 0.0;
    for (var q = 0u; q < 32u; q++) {
        let i = 256u * j + 32u * g + q;
        mx = max(mx, tile_x[i / 4u][i % 4u]);
    }
    return mx;
}

// Whether tile row lc exists, and its scale_base (0 if not).
fn tb_base(nt0: u32, lc: u32) -> vec2<u32> {
    let r = tb_row(nt0, lc);
    return vec2<u32>(u32(r.valid), select(0u, scale_base(r.grow), r.valid));
}

@compute @workgroup_size(16, 16)
fn mm_tile_blocks(@builtin(local_invocation_id) l3: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = l3.x;
    let ty = l3.y;
    let m0 = wid.y * BM;
    let nt0 = p.n0 + wid.x * BN;
    let chunks = BK / CW;
    let g8 = lid / 32u;
    var tot: array<vec4<f32>, 4>;
    for (var m = 0u; m < 4u; m++) {
        tot[m] = vec4<f32>(0.0);
    }
    var start = 0u;
    loop {
        // The next run: rows [start, end) of one scale row.
        while (start < BN && tb_base(nt0, start).x == 0u) {
            start++;
        }
        if (start >= BN) {
            break;
        }
        let base = tb_base(nt0, start).y;
        var end = start + 1u;
        loop {
            if (end >= BN) {
                break;
            }
            let b = tb_base(nt0, end);
            if (b.x == 0u || b.y != base) {
                break;
            }
            end++;
        }
        // Largest |x_k s_k| of every token row with this scale row's scales:
        // 32 consecutive threads per row, 8 rows per thread, partial maxima
        // through tile_x; then the exponents of the rows this thread stages
        // (g8 + 8 j) and writes (4 ty + m).
        for (var j = 0u; j < 8u; j++) {
            let tok = m0 + g8 + 8u * j;
            var mx = 0.0;
            if (tok < p.t) {
                let xb = p.x_off + tok * p.x_stride;
                for (var c = lid % 32u; c < p.cols; c += 32u) {
                    mx = max(mx, abs(xs[xb + c] * scale_at(base, c)));
                }
            }
            let i = 256u * j + lid;
            tile_x[i / 4u][i % 4u] = mx;
        }
        workgroupBarrier();
        var e_s: array<i32, 8>;
        for (var j = 0u; j < 8u; j++) {
            e_s[j] = tb_scale_exp(tb_row_max(j, g8));
        }
        var e_y: vec4<i32>;
        for (var m = 0u; m < 4u; m++) {
            let r = 4u * ty + m;
            e_y[m] = tb_scale_exp(tb_row_max(r / 8u, r % 8u));
        }
        workgroupBarrier();
        var acc: array<vec4<f32>, 4>;
        for (var m = 0u; m < 4u; m++) {
            acc[m] = vec4<f32>(0.0);
        }
        for (var k0 = 0u; k0 < p.cols; k0 += BK) {
            // x: 2048 values, 8 per thread (rows g8 + 8 j), consecutive threads
            // on consecutive columns: f16(x (s 2^e)).
            for (var j = 0u; j < 8u; j++) {
                let i = lid + 256u * j;
                let r = i / BK;
                let k = i % BK;
                let tok = m0 + r;
                let c = k0 + k;
                var v = 0.0;
                if (tok < p.t && c < p.cols) {
                    let f = ldexp(scale_at(base, c), e_s[j]);
                    v = f16_round(vec4<f32>(xs[p.x_off + tok * p.x_stride + c] * f)).x;
                }
                tile_x[k * 16u + r / 4u][r % 4u] = v;
            }
            // W: 64 rows x (BK / CW) vec4<u32> chunks, decoded (q, unscaled);
            // rows outside the run are zero.
            for (var i = lid; i < BN * chunks; i += 256u) {
                let lc = i / chunks;
                let ck = i % chunks;
                let ch = k0 / CW + ck;
                let tr = tb_row(nt0, lc);
                var w = vec4<u32>(0u);
                if (tr.valid && lc >= start && lc < end && ch < p.stride4) {
                    w = load_chunk(tr.in_b, tr.lrow, ch);
                }
                for (var g = 0u; g < G; g++) {
                    let d = decode_group(w, g);
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
            tot[m] += ldexp(acc[m], vec4<i32>(-e_y[m]));
        }
        start = end;
    }
    for (var m = 0u; m < 4u; m++) {
        let tok = m0 + ty * 4u + m;
        if (tok >= p.t) {
            break;
        }
        let yb = p.y_off + tok * p.y_stride;
        let v = tot[m];
        for (var q = 0u; q < 4u; q++) {
            let n = nt0 + 4u * tx + q;
            if (n < p.n_end) {
                if (p.epi == 1u) {
                    ys[yb + n] += v[q];
                } else if (p.epi == 2u) {
                    ys[yb + n] = silu(ys[yb + n]) * v[q];
                } else {
                    ys[yb + n] = v[q];
                }
            }
        }
    }
}
