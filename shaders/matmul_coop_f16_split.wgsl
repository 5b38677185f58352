// Exact variant of the f16-scratch tensor-core GEMM (MatmulPrecision::Exact):
// appended after matmul_coop_f16.wgsl and numeric.wgsl (a separate file, so
// that mm_coop_f16's module declares nothing of it).
//
// The x pre-pass wrote x s as hi + lo f16 parts (matmul_fast_x.wgsl, SPLIT):
// hi = x s rounded to 11 significant bits, lo = f16(x s - hi), the lo rows
// from half p.x_lo of xq. Both are staged (sxl4: 10 KiB more than
// mm_coop_f16) and multiplied by the same W fragments into the same
// accumulators (hi first), so x keeps 22 significant bits. Otherwise
// mm_coop_f16's code, line for line; the module appends
// matmul_coop_tail.wgsl after it too.

// The lo parts of x.
var<workgroup> sxl4: array<vec4<f16>, STAGE4>;

// Piece q of the lo parts (rows from half p.x_lo of xq).
fn x_piece_lo(m0: u32, k0: u32, q: u32) -> mat2x4<f16> {
    return xq[(p.x_lo + (m0 + q / 4u) * p.kp + k0) / 8u + q % 4u];
}

fn put_xl(q: u32, v: mat2x4<f16>) {
    let o = (q / 4u) * LDS4 + 2u * (q % 4u);
    sxl4[o] = v[0];
    sxl4[o + 1u] = v[1];
}

@compute @workgroup_size(WG)
fn mm_coop_f16_split(@builtin(local_invocation_index) lid: u32,
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
    var rl: array<mat2x4<f16>, 8>;
    var rw: array<mat2x4<f16>, 8>;
    for (var j = 0u; j < PX; j++) {
        rx[j] = x_piece(m0, 0u, lid + j * WG);
        rl[j] = x_piece_lo(m0, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PW; j++) {
        rw[j] = w_piece(r0, 0u, lid + j * WG);
    }
    for (var j = 0u; j < PX; j++) {
        put_x(lid + j * WG, rx[j]);
        put_xl(lid + j * WG, rl[j]);
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
                rl[j] = x_piece_lo(m0, k0 + CK, lid + j * WG);
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
            // The lo parts of x times the same W fragments.
            let l0 = coopLoadT<coop_mat16x16<f16, A>>(&sxl4[xb], LDS4);
            let l1 = coopLoadT<coop_mat16x16<f16, A>>(&sxl4[xb + 16u * LDS4], LDS4);
            let l2 = coopLoadT<coop_mat16x16<f16, A>>(&sxl4[xb + 32u * LDS4], LDS4);
            let l3 = coopLoadT<coop_mat16x16<f16, A>>(&sxl4[xb + 48u * LDS4], LDS4);
            c00 = coopMultiplyAdd(l0, b0, c00);
            c01 = coopMultiplyAdd(l0, b1, c01);
            c02 = coopMultiplyAdd(l0, b2, c02);
            c03 = coopMultiplyAdd(l0, b3, c03);
            c10 = coopMultiplyAdd(l1, b0, c10);
            c11 = coopMultiplyAdd(l1, b1, c11);
            c12 = coopMultiplyAdd(l1, b2, c12);
            c13 = coopMultiplyAdd(l1, b3, c13);
            c20 = coopMultiplyAdd(l2, b0, c20);
            c21 = coopMultiplyAdd(l2, b1, c21);
            c22 = coopMultiplyAdd(l2, b2, c22);
            c23 = coopMultiplyAdd(l2, b3, c23);
            c30 = coopMultiplyAdd(l3, b0, c30);
            c31 = coopMultiplyAdd(l3, b1, c31);
            c32 = coopMultiplyAdd(l3, b2, c32);
            c33 = coopMultiplyAdd(l3, b3, c33);
        }
        if (more) {
            // Every subgroup is done reading this step's tiles.
            workgroupBarrier();
            for (var j = 0u; j < PX; j++) {
                put_x(lid + j * WG, rx[j]);
                put_xl(lid + j * WG, rl[j]);
            }
            for (var j = 0u; j < PW; j++) {
                put_w(lid + j * WG, rw[j]);
            }
        }
        workgroupBarrier();
    }
