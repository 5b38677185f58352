// Matmul, vector path (GEMV, T = 1; MoE pairs in blocks of up to 8; dense
// T <= 16 in blocks of up to 8 where the small-T kernel matmul_vec_t.wgsl is
// turned off).
// Concatenated after numeric.wgsl, matmul_common.wgsl and matmul_vec_common.wgsl.
//
// A workgroup owns 4 weight rows ("slots") and up to TV vectors (tokens or
// pairs). Every thread strides over the columns in vec4<u32> chunks (4 F32,
// 8 BF16/F16 or 16 FP8 values), decodes each chunk once and uses it for every
// vector, so W is read once per block; one vec4 accumulator (the 4 slots)
// per vector, all reduced over the workgroup at the end.
// SwiGLU: slots 0, 1 are the gate rows of outputs j, j+1 (from wa), slots 2, 3
// their up rows (from wb), so the activation is applied before the store.

var<workgroup> sh_ids: array<u32, 8>;
var<workgroup> mv_red: array<vec4<f32>, WG>;
// [vector][16] column sums of the reduction.
var<workgroup> mv_sums: array<vec4<f32>, 128>;
// Fused norm: [vector / 4][16] partial sums of squares of x, vector v in
// component v % 4.
var<workgroup> mv_ss: array<vec4<f32>, 32>;

// One reduction round: vector t's per-thread vec4 -> 16 column sums in mv_sums
// (ss: the sums of squares of vectors 4t..4t+3 into mv_ss instead).
fn red_round(v: vec4<f32>, t: u32, lid: u32, ss: bool) {
    mv_red[lid] = v;
    workgroupBarrier();
    if (lid < 16u) {
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < WG / 16u; i++) {
            s += mv_red[i * 16u + lid];
        }
        if (ss) {
            mv_ss[t * 16u + lid] = s;
        } else {
            mv_sums[t * 16u + lid] = s;
        }
    }
    workgroupBarrier();
}

// The 4 slots' dot products with TV vectors starting at x elements xb[t]
// (rows past the real ones repeat a valid row: computed, never stored), the
// first nt (workgroup-uniform) stored at y elements yb[t] + out.
// Accumulators: column v of a<k> is vector 4k+v (4 slots), constant-indexed so
// they stay in registers; TV is an override, so unused ones fold away.
fn mv_run(lid: u32, nt: u32, xb: array<u32, 8>, yb: array<u32, 8>, s: Slots) {
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    // Fused norm: sums of squares of vectors 0..3 and 4..7.
    var ss0 = vec4<f32>(0.0);
    var ss1 = vec4<f32>(0.0);
    let nrm = p.norm != 0u;
    let nfull = p.cols / CW;
    let nch = (p.cols + CW - 1u) / CW;
    for (var ch = lid; ch < nch; ch += WG) {
        let w0 = load_chunk(false, s.lr.x, ch);
        let w1 = load_chunk(false, s.lr.y, ch);
        let w2 = load_chunk(true, s.lr.z, ch);
        let w3 = load_chunk(true, s.lr.w, ch);
        let c0 = ch * CW;
        // Per-chunk scales (mode 1) multiply the chunk's partial sums, not
        // every decoded element: k0/k1 hold this chunk's products. Other
        // modes accumulate in k0/k1 = a0/a1 directly (plain copies, which
        // the compiler coalesces: no extra registers).
        var cs = vec4<f32>(1.0);
        // Q4: the zero points (as decode_raw's bias) of the chunk's group.
        var zb = mat4x4<f32>();
        var k0 = a0;
        var k1 = a1;
        if (SCALE_MODE == 1u) {
            if (Q4) {
                let qs = q4_slots(s.sb, c0);
                cs = qs.s;
                zb = qs.zb;
            } else {
                cs = RAW * vec4<f32>(scale_at(s.sb.x, c0), scale_at(s.sb.y, c0), scale_at(s.sb.z, c0), scale_at(s.sb.w, c0));
            }
            k0 = mat4x4<f32>();
            k1 = mat4x4<f32>();
        }
        let full = ch < nfull;
        for (var g = 0u; g < G; g++) {
            let c = c0 + 4u * g;
            var d = mat4x4<f32>(decode_raw(w0, g), decode_raw(w1, g), decode_raw(w2, g), decode_raw(w3, g));
            if (Q4 && SCALE_MODE == 2u) {
                let qs = q4_slots(s.sb, c);
                d -= qs.zb;
                d = mat4x4<f32>(d[0] * qs.s.x, d[1] * qs.s.y, d[2] * qs.s.z, d[3] * qs.s.w);
            } else if (Q4) {
                d -= zb;
            } else if (SCALE_MODE == 2u) {
                let sc = vec4<f32>(scale_at(s.sb.x, c), scale_at(s.sb.y, c), scale_at(s.sb.z, c), scale_at(s.sb.w, c));
                d = mat4x4<f32>(d[0] * sc.x, d[1] * sc.y, d[2] * sc.z, d[3] * sc.w);
            }
            // dt * x = the 4 slots' dot products with x.
            let dt = transpose(d);
            var nf = vec4<f32>(1.0);
            if (nrm) {
                nf = norm_factor(c);
            }
            let x0 = xv(xb[0], c, full);
            k0[0] += dt * (x0 * nf);
            ss0.x += dot(x0, x0);
            if (TV >= 2u) {
                let x1 = xv(xb[1], c, full);
                k0[1] += dt * (x1 * nf);
                ss0.y += dot(x1, x1);
            }
            if (TV >= 4u) {
                let x2 = xv(xb[2], c, full);
                let x3 = xv(xb[3], c, full);
                k0[2] += dt * (x2 * nf);
                k0[3] += dt * (x3 * nf);
                ss0.z += dot(x2, x2);
                ss0.w += dot(x3, x3);
            }
            if (TV >= 8u) {
                let x4 = xv(xb[4], c, full);
                let x5 = xv(xb[5], c, full);
                let x6 = xv(xb[6], c, full);
                let x7 = xv(xb[7], c, full);
                k1[0] += dt * (x4 * nf);
                k1[1] += dt * (x5 * nf);
                k1[2] += dt * (x6 * nf);
                k1[3] += dt * (x7 * nf);
                ss1 += vec4<f32>(dot(x4, x4), dot(x5, x5), dot(x6, x6), dot(x7, x7));
            }
        }
        if (SCALE_MODE == 1u) {
            a0[0] += k0[0] * cs;
            if (TV >= 2u) {
                a0[1] += k0[1] * cs;
            }
            if (TV >= 4u) {
                a0[2] += k0[2] * cs;
                a0[3] += k0[3] * cs;
            }
            if (TV >= 8u) {
                a1[0] += k1[0] * cs;
                a1[1] += k1[1] * cs;
                a1[2] += k1[2] * cs;
                a1[3] += k1[3] * cs;
            }
        } else {
            a0 = k0;
            a1 = k1;
        }
    }
    // Reduction: 2 barriers per vector + 1, shared memory only (a tree per
    // vector costs log2(WG) + 1 barriers; the subgroup reduce file measured
    // ~4x slower on lavapipe and ~1% faster on the H100 GEMV).
    red_round(a0[0], 0u, lid, false);
    if (TV >= 2u) {
        red_round(a0[1], 1u, lid, false);
    }
    if (TV >= 4u) {
        red_round(a0[2], 2u, lid, false);
        red_round(a0[3], 3u, lid, false);
    }
    if (TV >= 8u) {
        red_round(a1[0], 4u, lid, false);
        red_round(a1[1], 5u, lid, false);
        red_round(a1[2], 6u, lid, false);
        red_round(a1[3], 7u, lid, false);
    }
    if (nrm) {
        red_round(ss0, 0u, lid, true);
        if (TV >= 8u) {
            red_round(ss1, 1u, lid, true);
        }
    }
    if (lid < nt) {
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 16u; i++) {
            v += mv_sums[lid * 16u + i];
        }
        if (nrm) {
            var s = 0.0;
            for (var i = 0u; i < 16u; i++) {
                s += mv_ss[(lid / 4u) * 16u + i][lid % 4u];
            }
            v *= 1.0 / sqrt(s / f32(p.cols) + p.norm_eps);
        }
        if (SCALE_MODE == 0u) {
            v *= RAW * vec4<f32>(bitcast<f32>(scales[s.sb.x]), bitcast<f32>(scales[s.sb.y]),
                                 bitcast<f32>(scales[s.sb.z]), bitcast<f32>(scales[s.sb.w]));
        } else if (SCALE_MODE == 2u) {
            v *= RAW;
        }
        store(yb[lid], v, s);
    }
    // mv_sums is reused by the next run of this workgroup (MoE).
    workgroupBarrier();
}

// Dense: y[t, n] for n in [n0, n_end), tokens in blocks of TV.
@compute @workgroup_size(WG)
fn mm_vec(@builtin(local_invocation_index) lid: u32,
          @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let per = select(4u, 2u, p.epi == 2u);
    let n = p.n0 + (g % p.groups_n) * per;
    let t0 = (g / p.groups_n) * TV;
    let s = group_slots(n, 0u);
    var xb: array<u32, 8>;
    var yb: array<u32, 8>;
    for (var t = 0u; t < TV; t++) {
        let tt = min(t0 + t, p.t - 1u);
        xb[t] = p.x_off + tt * p.x_stride;
        yb[t] = p.y_off + tt * p.y_stride;
    }
    mv_run(lid, min(TV, p.t - t0), xb, yb, s);
}

// Indexed (MoE): pair q uses expert ids[ids_off + q], x row q / x_div, y row q.
// A workgroup takes TV consecutive pairs and walks them in runs of equal
// expert ids: each run reads the expert's rows once (sorted ids help).
// Ids >= experts are skipped (their y row is left as it is).
@compute @workgroup_size(WG)
fn mm_vec_ids(@builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let per = select(4u, 2u, p.epi == 2u);
    let n = (g % p.groups_n) * per;
    let q0 = (g / p.groups_n) * TV;
    let nq = min(TV, p.t - q0);
    if (lid < nq) {
        sh_ids[lid] = ids[p.ids_off + q0 + lid];
    }
    let idu = workgroupUniformLoad(&sh_ids);
    var i = 0u;
    loop {
        if (i >= nq) {
            break;
        }
        let e = idu[i];
        var l = 1u;
        loop {
            if (i + l >= nq || idu[i + l] != e) {
                break;
            }
            l++;
        }
        if (e < p.experts) {
            let s = group_slots(n, e * p.rpe);
            if (any(s.valid)) {
                var xb: array<u32, 8>;
                var yb: array<u32, 8>;
                for (var t = 0u; t < TV; t++) {
                    let q = q0 + min(i + t, nq - 1u);
                    xb[t] = (q / p.x_div) * p.x_stride;
                    yb[t] = q * p.y_stride;
                }
                mv_run(lid, l, xb, yb, s);
            }
        }
        i += l;
    }
}
