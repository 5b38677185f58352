// MoE grouped GEMM (prefill): y row q = x row (q / x_div) · W[e*rpe ..]ᵀ for the
// pairs q grouped by expert e by moe_group_sort.wgsl. Concatenated after
// numeric.wgsl and matmul_common.wgsl (MmParams, bindings, decode helpers).
//
// Same tile as mm_tile (matmul_tile.wgsl): a 16x16 workgroup computes 64 pairs
// x 64 weight rows, 4x4 per thread, W decoded and scaled to f32 while staged,
// 16 KiB of workgroup memory. Workgroup (x, y): output tile x of grouping tile
// y; the grid's y is the worst-case tile count (pairs / 64 + experts), the
// tile table says how many are real and the rest exit at once (the condition
// is read from a read-only binding, so it is uniform and the barriers below
// stay in uniform control flow).
// x rows are gathered through perm and the results scattered back to the
// pairs' own rows, so the output layout is that of matmul_indexed.
//
// MmParams fields used: rows, cols, stride4, block_cols (weight), x_stride,
// x_div, y_stride, n0 = 0, n_end (outputs per expert: rpe, or rpe/2 for
// SwiGLU), a_row0/a_rows/b_row0/b_rows (pieces of this launch: only outputs
// whose rows lie in them are stored), half, rpe, experts, ids_off (word offset
// of the tile table in the scratch, bound as `ids`), epi, x_aligned.

const QBM: u32 = 64u;   // pairs per tile
// Grouping tiles of SUB x 64 pairs (moe_group_sort.wgsl's GTILE): workgroup
// row y is part y % SUB of tile-table entry y / SUB.
override SUB: u32 = 1u;
const QBN: u32 = 64u;   // weight rows per tile
const QBK: u32 = 32u;   // columns per step
const QNONE: u32 = 0xffffffffu;

var<workgroup> q_tile_x: array<vec4<f32>, 512>;  // [QBK][QBM / 4]
var<workgroup> q_tile_w: array<vec4<f32>, 512>;  // [QBK][QBN / 4]

// Whole-weight row `grow` lies in the launch's piece a (or b).
fn q_in_piece(grow: u32, in_b: bool) -> bool {
    let r0 = select(p.a_row0, p.b_row0, in_b);
    let nr = select(p.a_rows, p.b_rows, in_b);
    return grow >= r0 && grow - r0 < nr;
}

// x element offset of tile row r (a pair), or QNONE past the tile's pairs.
fn q_xrow(start: u32, count: u32, r: u32) -> u32 {
    if (r >= count) {
        return QNONE;
    }
    return (ids[4u + start + r] / p.x_div) * p.x_stride;
}

@compute @workgroup_size(16, 16)
fn moe_group_gemm(@builtin(local_invocation_id) l3: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = l3.x;
    let ty = l3.y;
    let g = wid.y / SUB;
    let part = wid.y % SUB;
    if (g >= ids[0]) {
        return;
    }
    let tb = p.ids_off + 4u * g;
    let all = ids[tb + 1u];
    if (all <= QBM * part) {
        return;
    }
    let start = ids[tb] + QBM * part;
    let count = min(QBM, all - QBM * part);
    let e = ids[tb + 2u];
    if (e >= p.experts) {
        return;
    }
    let swi = p.epi == 2u;
    let per = select(QBN, QBN / 2u, swi);
    let nt0 = p.n0 + wid.x * per;
    let nlast = min(nt0 + per, p.n_end);
    if (nt0 >= nlast) {
        return;
    }
    let base = e * p.rpe;
    // Skip tiles none of whose rows are in this launch's pieces.
    var live = base + nt0 < p.a_row0 + p.a_rows && base + nlast > p.a_row0;
    if (swi) {
        let u0 = base + p.half + nt0;
        let u1 = base + p.half + nlast;
        live = live && u0 < p.b_row0 + p.b_rows && u1 > p.b_row0;
    }
    if (!live) {
        return;
    }
    // x rows this thread stages: aligned path rows lid/8 + 32j (j < 2),
    // scalar path rows lid/32 + 8j (j < 8).
    let aligned = p.x_aligned != 0u;
    var xr: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let r = select(lid / 32u + 8u * j, lid / 8u + 32u * j, aligned);
        xr[j] = select(q_xrow(start, count, r), QNONE, aligned && j >= 2u);
    }
    let chunks = QBK / CW;
    var acc: array<vec4<f32>, 4>;
    for (var m = 0u; m < 4u; m++) {
        acc[m] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < p.cols; k0 += QBK) {
        if (aligned) {
            for (var j = 0u; j < 2u; j++) {
                let r = lid / 8u + 32u * j;
                let c4 = lid % 8u;
                let c = k0 + 4u * c4;
                var v = vec4<f32>(0.0);
                if (xr[j] != QNONE) {
                    if (c + 4u <= p.cols) {
                        v = xs4[(xr[j] + c) / 4u];
                    } else {
                        for (var i = 0u; i < 4u; i++) {
                            if (c + i < p.cols) {
                                v[i] = xs[xr[j] + c + i];
                            }
                        }
                    }
                }
                for (var q = 0u; q < 4u; q++) {
                    q_tile_x[(4u * c4 + q) * 16u + r / 4u][r % 4u] = v[q];
                }
            }
        } else {
            for (var j = 0u; j < 8u; j++) {
                let r = lid / 32u + 8u * j;
                let k = lid % 32u;
                let c = k0 + k;
                var v = 0.0;
                if (xr[j] != QNONE && c < p.cols) {
                    v = xs[xr[j] + c];
                }
                q_tile_x[k * 16u + r / 4u][r % 4u] = v;
            }
        }
        // W: 64 rows x (QBK / CW) vec4<u32> chunks, decoded and scaled.
        for (var i = lid; i < QBN * chunks; i += 256u) {
            let lc = i / chunks;
            let ck = i % chunks;
            let ch = k0 / CW + ck;
            var n: u32;
            var in_b = false;
            var grow: u32;
            if (swi) {
                let q = lc % 4u;
                n = nt0 + 2u * (lc / 4u) + (q % 2u);
                in_b = q >= 2u;
                grow = base + select(n, p.half + n, in_b);
            } else {
                n = nt0 + lc;
                grow = base + n;
            }
            let valid = n < p.n_end && q_in_piece(grow, in_b) && ch < p.stride4;
            var w = vec4<u32>(0u);
            var sb = 0u;
            if (valid) {
                w = load_chunk(in_b, grow - select(p.a_row0, p.b_row0, in_b), ch);
                sb = scale_base(grow);
            }
            for (var gg = 0u; gg < G; gg++) {
                var d = decode_group(w, gg);
                if (valid) {
                    d = scale_group(d, sb, ch * CW + 4u * gg);
                }
                let kk = ck * CW + 4u * gg;
                for (var q = 0u; q < 4u; q++) {
                    q_tile_w[(kk + q) * 16u + lc / 4u][lc % 4u] = d[q];
                }
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < QBK; k++) {
            let a = q_tile_x[k * 16u + ty];
            let b = q_tile_w[k * 16u + tx];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }
    for (var m = 0u; m < 4u; m++) {
        let r = ty * 4u + m;
        if (r >= count) {
            break;
        }
        let yb = ids[4u + start + r] * p.y_stride;
        let v = acc[m];
        if (swi) {
            for (var h = 0u; h < 2u; h++) {
                let j = nt0 + 2u * tx + h;
                if (j < p.n_end && q_in_piece(base + j, false) && q_in_piece(base + p.half + j, true)) {
                    ys[yb + j] = silu(v[h]) * v[h + 2u];
                }
            }
        } else {
            for (var q = 0u; q < 4u; q++) {
                let n = nt0 + 4u * tx + q;
                if (n < p.n_end && q_in_piece(base + n, false)) {
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
