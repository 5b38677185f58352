// Matmul, cooperative-matrix path (tensor cores, T > 16). Comes FIRST in its
// module (the `enable` directives must precede every declaration), followed
// by numeric.wgsl and matmul_common.wgsl (bindings, params, decode).
//
// A workgroup of 4 subgroups (WG = 4 x the adapter's fixed subgroup size)
// computes a 64-token x 64-weight-row tile; subgroup s owns the 2x2 16x16
// fragments at fragment row s / 2, column s % 2 (32 x 32 outputs), f32
// accumulators. Per 32-column step, x (64 x 32, f32 -> f16, vec4 loads when
// aligned) and W (64 rows x 32 columns, decoded from the stored format and
// multiplied by its scale in f32, then rounded to f16) are staged in workgroup
// memory (12 KiB with a quarter of the result tile); W row-major per
// weight row, i.e. the K x N "B" operand column-major (coopLoad), x row-major
// (coopLoadT). The result goes through workgroup memory (coopStoreT), one
// fragment per subgroup at a time, so the epilogue (store / accumulate / SwiGLU, bounds checks) is plain scalar code.
// SwiGLU: the tile's local rows 0..31 are gate rows n0..n0+31 and 32..63 the
// matching up rows, so a tile covers 32 output columns.
//
// f16 range: x and the scaled weights are rounded to f16; a magnitude above
// 65504 becomes +-inf (not clamped) and poisons the outputs it feeds, values
// below 6.1e-5 lose relative precision (subnormals). The host only picks this
// path for formats whose scaled values fit f16 in real checkpoints.
//
// Every coop op is in workgroup-uniform control flow (no early return, loop
// bounds from the uniform params); subgroup_id only moves pointers.

enable f16;
enable wgpu_cooperative_matrix;

override WG: u32 = 128u;

const CM: u32 = 64u;   // tokens per tile
const CN: u32 = 64u;   // weight rows per tile
const CK: u32 = 32u;   // columns per step

var<workgroup> st_x: array<f16, 2048>;   // [CM][CK], row-major
var<workgroup> st_w: array<f16, 2048>;   // [CN][CK], one weight row per CK values
// A quarter of the result tile: per subgroup, one 16x16 fragment.
var<workgroup> st_y: array<f32, 1024>;

// Staged result of tile row 32 * (mm / 16) + 16 * fr + mm % 16 (mm < 32) and
// tile column 32 * (jj / 16) + 16 * fc + jj % 16 (jj < 32).
fn staged(mm: u32, jj: u32) -> f32 {
    return st_y[((mm / 16u) * 2u + jj / 16u) * 256u + (mm % 16u) * 16u + jj % 16u];
}

// Writes the epilogue of the staged fragments (fr, fc) of every subgroup.
fn epilogue(lid: u32, m0: u32, nt0: u32, fr: u32, fc: u32) {
    if (p.epi == 2u) {
        // Gate columns 16 fc + jj (jj < 16), up columns 32 + 16 fc + jj.
        for (var i = lid; i < 32u * 16u; i += WG) {
            let mm = i / 16u;
            let jj = i % 16u;
            let tok = m0 + (mm / 16u) * 32u + 16u * fr + mm % 16u;
            let n = nt0 + 16u * fc + jj;
            if (tok < p.t && n < p.n_end) {
                ys[p.y_off + tok * p.y_stride + n] = silu(staged(mm, jj)) * staged(mm, jj + 16u);
            }
        }
    } else {
        for (var i = lid; i < 32u * 32u; i += WG) {
            let mm = i / 32u;
            let jj = i % 32u;
            let tok = m0 + (mm / 16u) * 32u + 16u * fr + mm % 16u;
            let n = nt0 + (jj / 16u) * 32u + 16u * fc + jj % 16u;
            if (tok < p.t && n < p.n_end) {
                let yi = p.y_off + tok * p.y_stride + n;
                if (p.epi == 1u) {
                    ys[yi] += staged(mm, jj);
                } else {
                    ys[yi] = staged(mm, jj);
                }
            }
        }
    }
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
        r.in_b = lc >= CN / 2u;
        n = nt0 + lc % (CN / 2u);
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

@compute @workgroup_size(WG)
fn mm_coop(@builtin(local_invocation_index) lid: u32,
           @builtin(subgroup_id) sg: u32,
           @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * CM;
    let nt0 = p.n0 + wid.x * select(CN, CN / 2u, p.epi == 2u);
    // This subgroup's fragments: rows fm..fm+31 of x, rows fn..fn+31 of W.
    let fm = (sg / 2u) * 32u;
    let fn_ = (sg % 2u) * 32u;
    let chunks = CK / CW;
    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.cols; k0 += CK) {
        // x: 4096 values in groups of 4, consecutive threads on consecutive
        // columns; vec4 loads when the rows are 16-byte aligned.
        for (var i = lid; i < CM * CK / 4u; i += WG) {
            let tok = m0 + (4u * i) / CK;
            let c = k0 + (4u * i) % CK;
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
            let h = vec4<f16>(v);
            st_x[4u * i] = h.x;
            st_x[4u * i + 1u] = h.y;
            st_x[4u * i + 2u] = h.z;
            st_x[4u * i + 3u] = h.w;
        }
        // W: 64 rows x (CK / CW) vec4<u32> chunks, decoded and scaled in f32.
        for (var i = lid; i < CN * chunks; i += WG) {
            let lc = i / chunks;
            let ck = i % chunks;
            let ch = k0 / CW + ck;
            let tr = coop_row(nt0, lc);
            let ok = tr.valid && ch < p.stride4;
            var w = vec4<u32>(0u);
            var sb = 0u;
            if (ok) {
                w = load_chunk(tr.in_b, tr.lrow, ch);
                sb = scale_base(tr.lrow + select(p.a_row0, p.b_row0, tr.in_b));
            }
            for (var g = 0u; g < G; g++) {
                var d = decode_group(w, g);
                if (ok) {
                    d *= scale_at(sb, ch * CW + 4u * g);
                }
                let h = vec4<f16>(d);
                let o = lc * CK + ck * CW + 4u * g;
                st_w[o] = h.x;
                st_w[o + 1u] = h.y;
                st_w[o + 2u] = h.z;
                st_w[o + 3u] = h.w;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < CK; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[fm * CK + kk], CK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&st_x[(fm + 16u) * CK + kk], CK);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&st_w[fn_ * CK + kk], CK);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&st_w[(fn_ + 16u) * CK + kk], CK);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }
    // The result leaves one fragment per subgroup at a time through 4 KiB,
    // keeping workgroup memory at 12 KiB: the kernel is occupancy-bound.
    let yo = sg * 256u;
    coopStoreT(acc00, &st_y[yo], 16u);
    workgroupBarrier();
    epilogue(lid, m0, nt0, 0u, 0u);
    workgroupBarrier();
    coopStoreT(acc01, &st_y[yo], 16u);
    workgroupBarrier();
    epilogue(lid, m0, nt0, 0u, 1u);
    workgroupBarrier();
    coopStoreT(acc10, &st_y[yo], 16u);
    workgroupBarrier();
    epilogue(lid, m0, nt0, 1u, 0u);
    workgroupBarrier();
    coopStoreT(acc11, &st_y[yo], 16u);
    workgroupBarrier();
    epilogue(lid, m0, nt0, 1u, 1u);
}
