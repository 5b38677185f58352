// Matmul, small-T vector path (dense, T = 2..16 tokens): every weight chunk is
// read once and used for all TV tokens of the workgroup's block.
// Concatenated after numeric.wgsl, matmul_common.wgsl and matmul_vec_common.wgsl.
//
// A workgroup owns Q quads of 4 weight rows ("slots", as matmul_vec.wgsl).
// Thread `lid` works on quad lid % Q and strides over the columns in vec4<u32>
// chunks from chunk lid / Q: the Q neighbouring threads of one chunk read the
// same x vec4s (one memory transaction serves them all), so x traffic per
// weight byte is 1/Q of a one-quad workgroup's, which is what bounds T = 8..16
// (each x vec4 feeds 16 FMAs per token, each decoded weight group 4·TV).
// Accumulators: one vec4 (4 slots) per token in named registers a0..a15, the
// unused ones folded away by the TV override. Scales that vary along a row
// multiply the decoded weights (4 vec4 products per group, whatever TV), as
// does the fused norm's weight; per-row scales and 1/rms apply after the
// reduction.

// Quads per workgroup: 1, 2, 4 or 8 (a divisor of 16 and of WG).
override Q: u32 = 2u;
// RMSNorm of x fused (matmul_normed): sums of squares are only computed then.
override NORM: bool = false;
// Load the next chunk's weights before computing the current one (two
// chunks in flight per thread).
override PREFETCH: bool = true;
// Per-chunk scales (SCALE_MODE 1: FP8 blocks, 4-bit groups) multiply each
// token's partial sums of the chunk (4 multiply-adds per token and chunk)
// instead of every decoded weight (one multiply per weight): fewer
// operations while the tokens are fewer than the chunk's 4-column groups
// times 4, at the cost of one more vec4 per token in registers.
override CHUNK_SCALE: bool = false;

// Two tokens' partial sums per reduction round: [token of the pair][thread], WG <= 256.
var<workgroup> vt_red: array<vec4<f32>, 512>;
// [token][16] partial column sums, then (fused norm) [256 + token / 4][16]
// sums of squares, token t in component t % 4.
var<workgroup> vt_sums: array<vec4<f32>, 320>;

// x element index of token t of the block starting at token t0 (tokens past
// the last repeat it: computed, never stored).
fn xrow(t0: u32, t: u32) -> u32 {
    return p.x_off + min(t0 + t, p.t - 1u) * p.x_stride;
}

// Token t's products of the group with its x values: a += dt * x, ss += x . x
// (fused norm). As 4 chained vec4 multiply-adds into a: `a += dt * x` is a
// product (4 multiplies, 12 multiply-adds) then a sum (4 adds), 20
// operations where 16 do, and these are the kernel's dominant cost (T per
// weight element).
fn acc4(a: ptr<function, vec4<f32>>, ss: ptr<function, f32>, dt: mat4x4<f32>, x: vec4<f32>) {
    *a = fma(dt[3], vec4<f32>(x.w), fma(dt[2], vec4<f32>(x.z),
             fma(dt[1], vec4<f32>(x.y), fma(dt[0], vec4<f32>(x.x), *a))));
    if (NORM) {
        *ss += dot(x, x);
    }
}

// One reduction round: the threads' vec4s u, v (two tokens, or packed sums of
// squares) -> 16 partial sums each in vt_sums rows r, r + 1. Thread lid's quad
// is lid % Q and 16 is a multiple of Q, so the partial sum j (j < 16) adds
// threads j, j + 16, ... of one quad: 16 / Q partials per quad.
fn red2(u: vec4<f32>, v: vec4<f32>, r: u32, lid: u32) {
    vt_red[lid] = u;
    vt_red[WG + lid] = v;
    workgroupBarrier();
    if (lid < 32u) {
        let h = lid / 16u;
        let j = lid % 16u;
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < WG / 16u; i++) {
            s += vt_red[h * WG + i * 16u + j];
        }
        vt_sums[(r + h) * 16u + j] = s;
    }
    workgroupBarrier();
}

// The 4 slots' scales at column c: one block index (an integer division) for
// all of them (scale_at computes it per slot).
fn scales4(s: Slots, c: u32) -> vec4<f32> {
    let b = min(c, p.cols - 1u) / p.block_cols;
    return vec4<f32>(bitcast<f32>(scales[s.sb.x + b]), bitcast<f32>(scales[s.sb.y + b]),
                     bitcast<f32>(scales[s.sb.z + b]), bitcast<f32>(scales[s.sb.w + b]));
}

// Chunk `ch` of the 4 slot rows.
struct Chunk {
    w0: vec4<u32>,
    w1: vec4<u32>,
    w2: vec4<u32>,
    w3: vec4<u32>,
}

fn load4(s: Slots, ch: u32) -> Chunk {
    return Chunk(load_chunk(false, s.lr.x, ch), load_chunk(false, s.lr.y, ch),
                 load_chunk(true, s.lr.z, ch), load_chunk(true, s.lr.w, ch));
}

// Dense: y[t, n] for n in [n0, n_end), tokens in blocks of TV; workgroup g
// covers quads (g % groups_n) * Q .. + Q of the launch and token block g / groups_n.
@compute @workgroup_size(WG)
fn mm_vec_t(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let q = lid % Q;
    let per = select(4u, 2u, p.epi == 2u);
    let n = p.n0 + ((g % p.groups_n) * Q + q) * per;
    let t0 = (g / p.groups_n) * TV;
    let s = group_slots(n, 0u);

    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0); var a9 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0); var a13 = vec4<f32>(0.0); var a14 = vec4<f32>(0.0); var a15 = vec4<f32>(0.0);
    var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0; var s4 = 0.0; var s5 = 0.0; var s6 = 0.0; var s7 = 0.0;
    var s8 = 0.0; var s9 = 0.0; var s10 = 0.0; var s11 = 0.0; var s12 = 0.0; var s13 = 0.0; var s14 = 0.0; var s15 = 0.0;

    // Chunk scaling: the accumulators before the chunk (the chunk's sums
    // start from 0 in a*, then a* = p* + a* · scale).
    let cscale = CHUNK_SCALE && SCALE_MODE == 1u;
    var p0 = vec4<f32>(0.0); var p1 = vec4<f32>(0.0); var p2 = vec4<f32>(0.0); var p3 = vec4<f32>(0.0);
    var p4 = vec4<f32>(0.0); var p5 = vec4<f32>(0.0); var p6 = vec4<f32>(0.0); var p7 = vec4<f32>(0.0);
    var p8 = vec4<f32>(0.0); var p9 = vec4<f32>(0.0); var p10 = vec4<f32>(0.0); var p11 = vec4<f32>(0.0);
    var p12 = vec4<f32>(0.0); var p13 = vec4<f32>(0.0); var p14 = vec4<f32>(0.0); var p15 = vec4<f32>(0.0);

    let nfull = p.cols / CW;
    let nch = (p.cols + CW - 1u) / CW;
    let step = WG / Q;
    var ch = lid / Q;
    var next: Chunk;
    if (PREFETCH && ch < nch) {
        next = load4(s, ch);
    }
    for (; ch < nch; ch += step) {
        var cur: Chunk;
        if (PREFETCH) {
            cur = next;
            if (ch + step < nch) {
                next = load4(s, ch + step);
            }
        } else {
            cur = load4(s, ch);
        }
        let c0 = ch * CW;
        let full = ch < nfull;
        let fast = full && p.x_aligned != 0u;
        // Per-chunk scales (mode 1), RAW folded in; Q4: with the zero points
        // (as decode_raw's bias).
        var cs = vec4<f32>(1.0);
        var zb = mat4x4<f32>();
        if (SCALE_MODE == 1u) {
            if (Q4) {
                let qs = q4_slots(s.sb, c0);
                cs = qs.s;
                zb = qs.zb;
            } else {
                cs = RAW * scales4(s, c0);
            }
        }
        if (cscale) {
            p0 = a0; a0 = vec4<f32>(0.0);
            if (TV > 1u) { p1 = a1; a1 = vec4<f32>(0.0); }
            if (TV > 2u) { p2 = a2; a2 = vec4<f32>(0.0); }
            if (TV > 3u) { p3 = a3; a3 = vec4<f32>(0.0); }
            if (TV > 4u) { p4 = a4; a4 = vec4<f32>(0.0); }
            if (TV > 5u) { p5 = a5; a5 = vec4<f32>(0.0); }
            if (TV > 6u) { p6 = a6; a6 = vec4<f32>(0.0); }
            if (TV > 7u) { p7 = a7; a7 = vec4<f32>(0.0); }
            if (TV > 8u) { p8 = a8; a8 = vec4<f32>(0.0); }
            if (TV > 9u) { p9 = a9; a9 = vec4<f32>(0.0); }
            if (TV > 10u) { p10 = a10; a10 = vec4<f32>(0.0); }
            if (TV > 11u) { p11 = a11; a11 = vec4<f32>(0.0); }
            if (TV > 12u) { p12 = a12; a12 = vec4<f32>(0.0); }
            if (TV > 13u) { p13 = a13; a13 = vec4<f32>(0.0); }
            if (TV > 14u) { p14 = a14; a14 = vec4<f32>(0.0); }
            if (TV > 15u) { p15 = a15; a15 = vec4<f32>(0.0); }
        }
        for (var gi = 0u; gi < G; gi++) {
            let c = c0 + 4u * gi;
            var d = mat4x4<f32>(decode_raw(cur.w0, gi), decode_raw(cur.w1, gi), decode_raw(cur.w2, gi), decode_raw(cur.w3, gi));
            var sc = cs;
            if (Q4 && SCALE_MODE == 2u) {
                let qs = q4_slots(s.sb, c);
                sc = qs.s;
                d -= qs.zb;
            } else if (Q4) {
                d -= zb;
            } else if (SCALE_MODE == 2u) {
                sc = RAW * scales4(s, c);
            }
            if (SCALE_MODE != 0u && !cscale) {
                d = mat4x4<f32>(d[0] * sc.x, d[1] * sc.y, d[2] * sc.z, d[3] * sc.w);
            }
            if (NORM) {
                let nf = norm_factor(c);
                d = mat4x4<f32>(d[0] * nf, d[1] * nf, d[2] * nf, d[3] * nf);
            }
            // dt * x = the 4 slots' dot products with x.
            let dt = transpose(d);
            // Whole chunks of 16-byte aligned x rows (decode's case): straight
            // vec4 loads, no per-load branch, so they can all be in flight at
            // once (row starts and c are multiples of 4 here: the row's vec4
            // index is loop-invariant); otherwise xv's general loads.
            if (fast) {
                acc4(&a0, &s0, dt, xs4[xrow(t0, 0u) / 4u + c / 4u]);
                if (TV > 1u) { acc4(&a1, &s1, dt, xs4[xrow(t0, 1u) / 4u + c / 4u]); }
                if (TV > 2u) { acc4(&a2, &s2, dt, xs4[xrow(t0, 2u) / 4u + c / 4u]); }
                if (TV > 3u) { acc4(&a3, &s3, dt, xs4[xrow(t0, 3u) / 4u + c / 4u]); }
                if (TV > 4u) { acc4(&a4, &s4, dt, xs4[xrow(t0, 4u) / 4u + c / 4u]); }
                if (TV > 5u) { acc4(&a5, &s5, dt, xs4[xrow(t0, 5u) / 4u + c / 4u]); }
                if (TV > 6u) { acc4(&a6, &s6, dt, xs4[xrow(t0, 6u) / 4u + c / 4u]); }
                if (TV > 7u) { acc4(&a7, &s7, dt, xs4[xrow(t0, 7u) / 4u + c / 4u]); }
                if (TV > 8u) { acc4(&a8, &s8, dt, xs4[xrow(t0, 8u) / 4u + c / 4u]); }
                if (TV > 9u) { acc4(&a9, &s9, dt, xs4[xrow(t0, 9u) / 4u + c / 4u]); }
                if (TV > 10u) { acc4(&a10, &s10, dt, xs4[xrow(t0, 10u) / 4u + c / 4u]); }
                if (TV > 11u) { acc4(&a11, &s11, dt, xs4[xrow(t0, 11u) / 4u + c / 4u]); }
                if (TV > 12u) { acc4(&a12, &s12, dt, xs4[xrow(t0, 12u) / 4u + c / 4u]); }
                if (TV > 13u) { acc4(&a13, &s13, dt, xs4[xrow(t0, 13u) / 4u + c / 4u]); }
                if (TV > 14u) { acc4(&a14, &s14, dt, xs4[xrow(t0, 14u) / 4u + c / 4u]); }
                if (TV > 15u) { acc4(&a15, &s15, dt, xs4[xrow(t0, 15u) / 4u + c / 4u]); }
            } else {
                acc4(&a0, &s0, dt, xv(xrow(t0, 0u), c, full));
                if (TV > 1u) { acc4(&a1, &s1, dt, xv(xrow(t0, 1u), c, full)); }
                if (TV > 2u) { acc4(&a2, &s2, dt, xv(xrow(t0, 2u), c, full)); }
                if (TV > 3u) { acc4(&a3, &s3, dt, xv(xrow(t0, 3u), c, full)); }
                if (TV > 4u) { acc4(&a4, &s4, dt, xv(xrow(t0, 4u), c, full)); }
                if (TV > 5u) { acc4(&a5, &s5, dt, xv(xrow(t0, 5u), c, full)); }
                if (TV > 6u) { acc4(&a6, &s6, dt, xv(xrow(t0, 6u), c, full)); }
                if (TV > 7u) { acc4(&a7, &s7, dt, xv(xrow(t0, 7u), c, full)); }
                if (TV > 8u) { acc4(&a8, &s8, dt, xv(xrow(t0, 8u), c, full)); }
                if (TV > 9u) { acc4(&a9, &s9, dt, xv(xrow(t0, 9u), c, full)); }
                if (TV > 10u) { acc4(&a10, &s10, dt, xv(xrow(t0, 10u), c, full)); }
                if (TV > 11u) { acc4(&a11, &s11, dt, xv(xrow(t0, 11u), c, full)); }
                if (TV > 12u) { acc4(&a12, &s12, dt, xv(xrow(t0, 12u), c, full)); }
                if (TV > 13u) { acc4(&a13, &s13, dt, xv(xrow(t0, 13u), c, full)); }
                if (TV > 14u) { acc4(&a14, &s14, dt, xv(xrow(t0, 14u), c, full)); }
                if (TV > 15u) { acc4(&a15, &s15, dt, xv(xrow(t0, 15u), c, full)); }
            }
        }
        if (cscale) {
            a0 = fma(a0, cs, p0);
            if (TV > 1u) { a1 = fma(a1, cs, p1); }
            if (TV > 2u) { a2 = fma(a2, cs, p2); }
            if (TV > 3u) { a3 = fma(a3, cs, p3); }
            if (TV > 4u) { a4 = fma(a4, cs, p4); }
            if (TV > 5u) { a5 = fma(a5, cs, p5); }
            if (TV > 6u) { a6 = fma(a6, cs, p6); }
            if (TV > 7u) { a7 = fma(a7, cs, p7); }
            if (TV > 8u) { a8 = fma(a8, cs, p8); }
            if (TV > 9u) { a9 = fma(a9, cs, p9); }
            if (TV > 10u) { a10 = fma(a10, cs, p10); }
            if (TV > 11u) { a11 = fma(a11, cs, p11); }
            if (TV > 12u) { a12 = fma(a12, cs, p12); }
            if (TV > 13u) { a13 = fma(a13, cs, p13); }
            if (TV > 14u) { a14 = fma(a14, cs, p14); }
            if (TV > 15u) { a15 = fma(a15, cs, p15); }
        }
    }

    // Reduction: two tokens per round (2 barriers), then one thread per
    // (token, quad) adds its quad's 16 / Q partials.
    red2(a0, a1, 0u, lid);
    if (TV > 2u) { red2(a2, a3, 2u, lid); }
    if (TV > 4u) { red2(a4, a5, 4u, lid); }
    if (TV > 6u) { red2(a6, a7, 6u, lid); }
    if (TV > 8u) { red2(a8, a9, 8u, lid); }
    if (TV > 10u) { red2(a10, a11, 10u, lid); }
    if (TV > 12u) { red2(a12, a13, 12u, lid); }
    if (TV > 14u) { red2(a14, a15, 14u, lid); }
    if (NORM) {
        red2(vec4<f32>(s0, s1, s2, s3), vec4<f32>(s4, s5, s6, s7), 16u, lid);
        if (TV > 8u) {
            red2(vec4<f32>(s8, s9, s10, s11), vec4<f32>(s12, s13, s14, s15), 18u, lid);
        }
    }
    // Q divides WG, so output o's quad o % Q is this thread's quad (s).
    for (var o = lid; o < TV * Q; o += WG) {
        let t = o / Q;
        if (t0 + t >= p.t) {
            break;
        }
        var v = vec4<f32>(0.0);
        for (var j = q; j < 16u; j += Q) {
            v += vt_sums[t * 16u + j];
        }
        if (NORM) {
            var sq = 0.0;
            for (var j = q; j < 16u; j += Q) {
                sq += vt_sums[(16u + t / 4u) * 16u + j][t % 4u];
            }
            v *= 1.0 / sqrt(sq / f32(p.cols) + p.norm_eps);
        }
        if (SCALE_MODE == 0u) {
            v *= RAW * vec4<f32>(bitcast<f32>(scales[s.sb.x]), bitcast<f32>(scales[s.sb.y]),
                                 bitcast<f32>(scales[s.sb.z]), bitcast<f32>(scales[s.sb.w]));
        }
        store(p.y_off + (t0 + t) * p.y_stride, v, s);
    }
}
