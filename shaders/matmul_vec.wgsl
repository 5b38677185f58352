// Matmul, vector path (GEMV and multi-vector GEMV, T <= 16 in blocks of up to
// 8 tokens; MoE pairs).
// Concatenated after numeric.wgsl and matmul_common.wgsl.
//
// A workgroup owns 4 weight rows ("slots") and up to TV vectors (tokens or
// pairs). Every thread strides over the columns in vec4<u32> chunks (4 F32,
// 8 BF16/F16 or 16 FP8 values), decodes each chunk once and uses it for every
// vector, so W is read once per block; one vec4 accumulator (the 4 slots)
// per vector, all reduced over the workgroup at the end.
// SwiGLU: slots 0, 1 are the gate rows of outputs j, j+1 (from wa), slots 2, 3
// their up rows (from wb), so the activation is applied before the store.

// Threads per workgroup: a multiple of 16.
override WG: u32 = 256u;
// Vectors per workgroup: 1, 2, 4 or 8 (16 accumulator vec4s spilled on the H100).
override TV: u32 = 1u;
// 0: one scale per row, applied once after the reduction (per-shard,
// per-channel, unscaled, blocks as wide as the row); 1: one per chunk (block
// columns a multiple of CW); 2: one per 4-element group.
override SCALE_MODE: u32 = 0u;

// Weight of the fused RMSNorm (p.norm != 0; the host binds x here otherwise).
// Binding 8: 7 is the indexed kernel's `ids`.
@group(0) @binding(8) var<storage, read> nw4: array<vec4<f32>>;

// The vector path decodes E4M3 as value / 256 (e4m3x4_raw) and applies the
// 256 with the scales, once per chunk or output instead of per element.
override RAW: f32 = select(1.0, 256.0, FORMAT == 3u);

// Elements 4g..4g+3 of a chunk, divided by RAW.
fn decode_raw(w: vec4<u32>, g: u32) -> vec4<f32> {
    if (FORMAT == 3u) {
        return e4m3x4_raw(w[g]);
    }
    return decode_group(w, g);
}

var<workgroup> sh_ids: array<u32, 8>;
var<workgroup> mv_red: array<vec4<f32>, WG>;
// [vector][16] column sums of the reduction.
var<workgroup> mv_sums: array<vec4<f32>, 128>;
// Fused norm: [vector / 4][16] partial sums of squares of x, vector v in
// component v % 4.
var<workgroup> mv_ss: array<vec4<f32>, 32>;

// Fused RMSNorm: the GEMV of norm(x) = x * r * nw (r = 1 / sqrt(mean(x^2) +
// eps) per token, nw = w or 1 + w) is r * (W . (x * nw)): each workgroup
// already reads every column of x, so it sums x^2 on the way and scales its
// dot products by r at the end, and the norm needs no launch of its own.
// Factor nw of columns c..c+3 (the host requires cols % 4 == 0).
fn norm_factor(c: u32) -> vec4<f32> {
    if (c >= p.cols) {
        return vec4<f32>(0.0);
    }
    let w = nw4[c / 4u];
    return select(w, w + 1.0, p.norm == 2u);
}

// x elements c..c+3 of the row starting at element `base`. Columns past `cols`
// read as 0 (the weight's padding is 0 too, but x there is someone else's
// data, possibly NaN, or past the buffer). Aligned rows use one vec4 load.
fn xv(base: u32, c: u32, full: bool) -> vec4<f32> {
    if (full) {
        if (p.x_aligned != 0u) {
            return xs4[(base + c) / 4u];
        }
        return vec4<f32>(xs[base + c], xs[base + c + 1u], xs[base + c + 2u], xs[base + c + 3u]);
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (c + i < p.cols) {
            v[i] = xs[base + c + i];
        }
    }
    return v;
}

struct Slots {
    lr: vec4<u32>,       // row in its buffer (wa, or wb for SwiGLU slots 2, 3); 0 when invalid
    sb: vec4<u32>,       // scale_base of the slot's weight row
    valid: vec4<bool>,   // output exists and is in this launch (SwiGLU: .xy)
    out: vec4<u32>,      // output column (SwiGLU: .xy)
}

// grow: the slots' rows in the whole weight; ok: their outputs exist.
fn make_slots(grow: vec4<u32>, out: vec4<u32>, ok: vec4<bool>) -> Slots {
    var s: Slots;
    s.out = out;
    for (var i = 0u; i < 4u; i++) {
        let in_b = p.epi == 2u && i >= 2u;
        let r0 = select(p.a_row0, p.b_row0, in_b);
        let nr = select(p.a_rows, p.b_rows, in_b);
        let inside = grow[i] >= r0 && grow[i] - r0 < nr;
        s.lr[i] = select(0u, grow[i] - r0, inside);
        s.sb[i] = scale_base(grow[i]);
        s.valid[i] = ok[i] && inside;
    }
    if (p.epi == 2u) {
        s.valid = vec4<bool>(s.valid.x && s.valid.z, s.valid.y && s.valid.w, false, false);
    }
    return s;
}

fn store(yb: u32, v: vec4<f32>, s: Slots) {
    if (p.epi == 2u) {
        if (s.valid.x) {
            ys[yb + s.out.x] = silu(v.x) * v.z;
        }
        if (s.valid.y) {
            ys[yb + s.out.y] = silu(v.y) * v.w;
        }
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        if (s.valid[i]) {
            let k = yb + s.out[i];
            if (p.epi == 1u) {
                ys[k] += v[i];
            } else {
                ys[k] = v[i];
            }
        }
    }
}

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
        var k0 = a0;
        var k1 = a1;
        if (SCALE_MODE == 1u) {
            cs = RAW * vec4<f32>(scale_at(s.sb.x, c0), scale_at(s.sb.y, c0), scale_at(s.sb.z, c0), scale_at(s.sb.w, c0));
            k0 = mat4x4<f32>();
            k1 = mat4x4<f32>();
        }
        let full = ch < nfull;
        for (var g = 0u; g < G; g++) {
            let c = c0 + 4u * g;
            var d = mat4x4<f32>(decode_raw(w0, g), decode_raw(w1, g), decode_raw(w2, g), decode_raw(w3, g));
            if (SCALE_MODE == 2u) {
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

// Slot rows and outputs of output group starting at n (rows base: expert base).
fn group_slots(n: u32, base: u32) -> Slots {
    var out: vec4<u32>;
    var grow: vec4<u32>;
    if (p.epi == 2u) {
        out = vec4<u32>(n, n + 1u, n, n + 1u);
        grow = base + vec4<u32>(n, n + 1u, p.half + n, p.half + n + 1u);
    } else {
        out = n + vec4<u32>(0u, 1u, 2u, 3u);
        grow = base + out;
    }
    return make_slots(grow, out, out < vec4<u32>(p.n_end));
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
