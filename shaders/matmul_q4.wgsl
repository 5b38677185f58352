// Matmul, one-token GEMV of 4-bit weights (formats Q4 / Q4F32, groups a
// multiple of the 32-column chunk or one group per row: SCALE_MODE 1), dense
// (`mm_q4`) and expert-indexed with one pair per workgroup (`mm_q4_ids`, MoE
// decode). Concatenated after numeric.wgsl, matmul_common.wgsl and
// matmul_vec_common.wgsl.
//
// Why not matmul_vec.wgsl: a 4-bit row is a quarter of a BF16 row's bytes, so
// its 4 rows per workgroup give each thread one 16-byte load per row and then
// a reduction: the workgroup's life is mostly latency and barriers. Here a
// workgroup holds TEAMS = WG / LANES teams; a team's LANES threads stride
// over the chunks of a row (consecutive threads, consecutive 16-byte chunks:
// coalesced), and each thread works on QPT quads of 4 rows at once, so one
// chunk step issues 4 * QPT independent weight loads, the x values of the
// chunk (8 vec4) are loaded once for all 4 * QPT rows, and one reduction
// serves TEAMS * QPT * 4 rows.
//
// Per element: one and-or (Q4_M + q, exact), one subtraction of Q4_M + zero
// (exact: q - zero is a small integer), one multiply-add with x;
// per chunk and row: one scale word (scale and zero point) and one
// multiply-add of the chunk's partial sum by the scale, (q - zero) * scale
// summed in f32 as the other vector kernels do.

// Threads of a team (one row span): a power of two dividing WG.
override LANES: u32 = 128u;
// Quads of 4 rows per thread: 1, 2 or 4.
override QPT: u32 = 1u;
// Interleaved words: a thread's 4 words of a row per step are LANES words
// apart (one u32 load each, consecutive threads on consecutive words)
// instead of one 16-byte chunk. Its x values are then 32-byte runs at a
// 32-byte thread stride instead of 128-byte ones at a 128-byte stride: a
// warp's x loads touch a quarter of the cache lines per instruction. Costs
// 4 loads per row and step, and a scale word per word.
override IL: bool = false;
// RMSNorm of x fused (matmul_normed).
override NORM: bool = false;

override TEAMS: u32 = WG / LANES;
// Partial sums per output after the first reduction step (LANES >= 16).
const PARTS: u32 = 8u;

// One quad's per-thread sums: [thread].
var<workgroup> q4_red: array<vec4<f32>, WG>;
// [team][PARTS] partial sums of one quad.
var<workgroup> q4_sums: array<vec4<f32>, 256>;
// Fused norm: 1 / rms of x.
var<workgroup> q4_rms: f32;
var<workgroup> q4_id: u32;

// The 32 x values of one chunk (norm factor applied).
struct XChunk {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
    x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
}

// x values of columns c0..c0+31 of the row starting at element `base`; fast:
// a whole chunk of a 16-byte aligned row.
fn x_chunk(base: u32, c0: u32, fast: bool, full: bool) -> XChunk {
    if (fast) {
        let i = (base + c0) / 4u;
        return XChunk(xs4[i], xs4[i + 1u], xs4[i + 2u], xs4[i + 3u],
                      xs4[i + 4u], xs4[i + 5u], xs4[i + 6u], xs4[i + 7u]);
    }
    return XChunk(xv(base, c0, full), xv(base, c0 + 4u, full), xv(base, c0 + 8u, full),
                  xv(base, c0 + 12u, full), xv(base, c0 + 16u, full), xv(base, c0 + 20u, full),
                  xv(base, c0 + 24u, full), xv(base, c0 + 28u, full));
}

// Fused norm: x times the norm weight, and x . x added to *ss.
fn x_normed(x: XChunk, c0: u32, ss: ptr<function, f32>) -> XChunk {
    *ss += dot(x.x0, x.x0) + dot(x.x1, x.x1) + dot(x.x2, x.x2) + dot(x.x3, x.x3)
         + dot(x.x4, x.x4) + dot(x.x5, x.x5) + dot(x.x6, x.x6) + dot(x.x7, x.x7);
    return XChunk(x.x0 * norm_factor(c0), x.x1 * norm_factor(c0 + 4u),
                  x.x2 * norm_factor(c0 + 8u), x.x3 * norm_factor(c0 + 12u),
                  x.x4 * norm_factor(c0 + 16u), x.x5 * norm_factor(c0 + 20u),
                  x.x6 * norm_factor(c0 + 24u), x.x7 * norm_factor(c0 + 28u));
}

// k + Σ (q - zero) · x over the 4 nibbles of the 16 bits `h` (q4_biased's
// trick: or-ing exponents makes Q4_M + q exactly; bias = Q4_M + zero), as
// chained multiply-adds (no separate product and sum).
fn q4_fma4(k: f32, h: u32, bias: vec4<f32>, x: vec4<f32>) -> f32 {
    let d = bitcast<vec4<f32>>((vec4<u32>(h) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u))
        | vec4<u32>(0x4b000000u, 0x49000000u, 0x47000000u, 0x45000000u)) - bias;
    return fma(d.w, x.w, fma(d.z, x.z, fma(d.y, x.y, fma(d.x, x.x, k))));
}

// One row's Σ (q - zero) · x over a chunk (w: its 32 nibbles), zero point z.
// Row by row, so only this row's 4 biases are live next to the chunk's x.
fn q4_row(w: vec4<u32>, z: f32, x: XChunk) -> f32 {
    let bias = Q4_M + z;
    var k = q4_fma4(0.0, w.x, bias, x.x0);
    k = q4_fma4(k, w.x >> 16u, bias, x.x1);
    k = q4_fma4(k, w.y, bias, x.x2);
    k = q4_fma4(k, w.y >> 16u, bias, x.x3);
    k = q4_fma4(k, w.z, bias, x.x4);
    k = q4_fma4(k, w.z >> 16u, bias, x.x5);
    k = q4_fma4(k, w.w, bias, x.x6);
    return q4_fma4(k, w.w >> 16u, bias, x.x7);
}

// Interleaved words (IL): one row's 4 words and, per word, its group's
// scale and zero point.
struct Q4RowWords {
    w: vec4<u32>,
    sc: vec4<f32>,
    z: vec4<f32>,
}

// A quad's rows (IL).
struct Q4Words {
    r0: Q4RowWords, r1: Q4RowWords, r2: Q4RowWords, r3: Q4RowWords,
}

// Word `wi` (< nw, the row's words; clamped so a word past them reads a
// valid one, whose x values are 0) of slot row lr.
fn q4_word(in_b: bool, lr: u32, wi: u32, nw: u32) -> u32 {
    let i = min(wi, nw - 1u);
    if (p.epi == 2u && in_b) {
        return wb[lr * p.stride4 + i / 4u][i % 4u];
    }
    return wa[lr * p.stride4 + i / 4u][i % 4u];
}

// The 4 words wi of one row (scale base sb), groups b.
fn q4_row_words(in_b: bool, lr: u32, sb: u32, wi: vec4<u32>, b: vec4<u32>, nw: u32) -> Q4RowWords {
    let a = q4_sz_group(sb, b.x);
    let e = q4_sz_group(sb, b.y);
    let f = q4_sz_group(sb, b.z);
    let h = q4_sz_group(sb, b.w);
    return Q4RowWords(vec4<u32>(q4_word(in_b, lr, wi.x, nw), q4_word(in_b, lr, wi.y, nw),
                                q4_word(in_b, lr, wi.z, nw), q4_word(in_b, lr, wi.w, nw)),
                      vec4<f32>(a.x, e.x, f.x, h.x), vec4<f32>(a.y, e.y, f.y, h.y));
}

fn q4_load_words(s: Slots, wi: vec4<u32>, b: vec4<u32>, nw: u32) -> Q4Words {
    return Q4Words(q4_row_words(false, s.lr.x, s.sb.x, wi, b, nw),
                   q4_row_words(false, s.lr.y, s.sb.y, wi, b, nw),
                   q4_row_words(true, s.lr.z, s.sb.z, wi, b, nw),
                   q4_row_words(true, s.lr.w, s.sb.w, wi, b, nw));
}

// One row's Σ (q - zero) · x · scale over its 4 interleaved words (word k:
// x values x_{2k}, x_{2k+1}).
fn q4_row_il(r: Q4RowWords, x: XChunk) -> f32 {
    let b0 = Q4_M + r.z.x;
    let b1 = Q4_M + r.z.y;
    let b2 = Q4_M + r.z.z;
    let b3 = Q4_M + r.z.w;
    let k0 = q4_fma4(q4_fma4(0.0, r.w.x, b0, x.x0), r.w.x >> 16u, b0, x.x1);
    let k1 = q4_fma4(q4_fma4(0.0, r.w.y, b1, x.x2), r.w.y >> 16u, b1, x.x3);
    let k2 = q4_fma4(q4_fma4(0.0, r.w.z, b2, x.x4), r.w.z >> 16u, b2, x.x5);
    let k3 = q4_fma4(q4_fma4(0.0, r.w.w, b3, x.x6), r.w.w >> 16u, b3, x.x7);
    return fma(k3, r.sc.w, fma(k2, r.sc.z, fma(k1, r.sc.y, k0 * r.sc.x)));
}

fn q4_quad_il(acc: vec4<f32>, q: Q4Words, x: XChunk) -> vec4<f32> {
    return acc + vec4<f32>(q4_row_il(q.r0, x), q4_row_il(q.r1, x), q4_row_il(q.r2, x), q4_row_il(q.r3, x));
}

// The x values of a word's 8 columns.
struct XWord {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The 8 x values of the columns from cw (fused norm: normed, x . x added to *ss).
fn x_word(base: u32, cw: u32, aligned: bool, ss: ptr<function, f32>) -> XWord {
    let full = cw + 8u <= p.cols;
    var v: XWord;
    if (full && aligned) {
        v = XWord(xs4[(base + cw) / 4u], xs4[(base + cw) / 4u + 1u]);
    } else {
        v = XWord(xv(base, cw, full), xv(base, cw + 4u, full));
    }
    if (NORM) {
        *ss += dot(v.lo, v.lo) + dot(v.hi, v.hi);
        v = XWord(v.lo * norm_factor(cw), v.hi * norm_factor(cw + 4u));
    }
    return v;
}

// One quad's chunk: the 4 rows' 32 nibbles and (scale, zero point) at the
// chunk's group.
struct Q4Chunk {
    w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32>,
    sz0: vec2<f32>, sz1: vec2<f32>, sz2: vec2<f32>, sz3: vec2<f32>,
}

// Chunk `ch` (group `b`) of quad s. The loop loads every quad's chunk before
// it computes any, so all of them are in flight together.
fn q4_load(s: Slots, ch: u32, b: u32) -> Q4Chunk {
    return Q4Chunk(load_chunk(false, s.lr.x, ch), load_chunk(false, s.lr.y, ch),
                   load_chunk(true, s.lr.z, ch), load_chunk(true, s.lr.w, ch),
                   q4_sz_group(s.sb.x, b), q4_sz_group(s.sb.y, b),
                   q4_sz_group(s.sb.z, b), q4_sz_group(s.sb.w, b));
}

// acc + one quad's scaled dot products with one chunk: Σ (q - zero) · x per
// slot, times the slot's scale.
fn q4_quad(acc: vec4<f32>, c: Q4Chunk, x: XChunk) -> vec4<f32> {
    let k = vec4<f32>(q4_row(c.w0, c.sz0.y, x), q4_row(c.w1, c.sz1.y, x),
                      q4_row(c.w2, c.sz2.y, x), q4_row(c.w3, c.sz3.y, x));
    return fma(k, vec4<f32>(c.sz0.x, c.sz1.x, c.sz2.x, c.sz3.x), acc);
}

// (scale, zero point) of group index b of the row whose scale_base is sb.
fn q4_sz_group(sb: u32, b: u32) -> vec2<f32> {
    if (FORMAT == 6u) {
        return vec2<f32>(bitcast<f32>(scales[sb + 2u * b]), bitcast<f32>(scales[sb + 2u * b + 1u]));
    }
    return unpack2x16float(scales[sb + b]);
}

// Sum over the LANES threads of each team of v (one vec4 per thread), in
// q4_sums[team * PARTS + j], j < PARTS (2 barriers).
fn q4_reduce(v: vec4<f32>, lid: u32) {
    q4_red[lid] = v;
    workgroupBarrier();
    if (lid < TEAMS * PARTS) {
        let team = lid / PARTS;
        let j = lid % PARTS;
        var s = vec4<f32>(0.0);
        for (var i = j; i < LANES; i += PARTS) {
            s += q4_red[team * LANES + i];
        }
        q4_sums[lid] = s;
    }
    workgroupBarrier();
}

// The finished dot products of the quad whose reduction is in q4_sums, for
// team `team` (read by one thread per team).
fn q4_total(team: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < PARTS; j++) {
        v += q4_sums[team * PARTS + j];
    }
    if (NORM) {
        v *= q4_rms;
    }
    return v;
}

// The GEMV of the workgroup's quads: thread `lid` of team lid / LANES works
// on quads s0..s3 (the first QPT), x row at element xb, outputs at y element yb.
fn q4_run(lid: u32, xb: u32, yb: u32, x_aligned: bool, s0: Slots, s1: Slots, s2: Slots, s3: Slots) {
    let lane = lid % LANES;
    let team = lid / LANES;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var ss = 0.0;
    let nfull = p.cols / CW;
    let nch = (p.cols + CW - 1u) / CW;
    if (IL) {
        // Steps of LANES chunks (4 * LANES words), the team's threads on
        // consecutive words.
        let nw = 4u * nch;
        for (var st = 0u; st * LANES < nch; st++) {
            let wi = st * 4u * LANES + lane + vec4<u32>(0u, 1u, 2u, 3u) * LANES;
            let cw = 8u * wi;
            let b = min(cw, vec4<u32>(p.cols - 1u)) / p.block_cols;
            let q0 = q4_load_words(s0, wi, b, nw);
            var q1 = q0;
            var q2 = q0;
            var q3 = q0;
            if (QPT >= 2u) {
                q1 = q4_load_words(s1, wi, b, nw);
            }
            if (QPT >= 4u) {
                q2 = q4_load_words(s2, wi, b, nw);
                q3 = q4_load_words(s3, wi, b, nw);
            }
            let e0 = x_word(xb, cw.x, x_aligned, &ss);
            let e1 = x_word(xb, cw.y, x_aligned, &ss);
            let e2 = x_word(xb, cw.z, x_aligned, &ss);
            let e3 = x_word(xb, cw.w, x_aligned, &ss);
            let x = XChunk(e0.lo, e0.hi, e1.lo, e1.hi, e2.lo, e2.hi, e3.lo, e3.hi);
            a0 = q4_quad_il(a0, q0, x);
            if (QPT >= 2u) {
                a1 = q4_quad_il(a1, q1, x);
            }
            if (QPT >= 4u) {
                a2 = q4_quad_il(a2, q2, x);
                a3 = q4_quad_il(a3, q3, x);
            }
        }
    }
    for (var ch = lane; ch < nch && !IL; ch += LANES) {
        let c0 = ch * CW;
        let full = ch < nfull;
        // The chunk's group (one per row when the group covers the row).
        let b = min(c0, p.cols - 1u) / p.block_cols;
        let c0w = q4_load(s0, ch, b);
        var c1w = c0w;
        var c2w = c0w;
        var c3w = c0w;
        if (QPT >= 2u) {
            c1w = q4_load(s1, ch, b);
        }
        if (QPT >= 4u) {
            c2w = q4_load(s2, ch, b);
            c3w = q4_load(s3, ch, b);
        }
        var x = x_chunk(xb, c0, full && x_aligned, full);
        if (NORM) {
            x = x_normed(x, c0, &ss);
        }
        a0 = q4_quad(a0, c0w, x);
        if (QPT >= 2u) {
            a1 = q4_quad(a1, c1w, x);
        }
        if (QPT >= 4u) {
            a2 = q4_quad(a2, c2w, x);
            a3 = q4_quad(a3, c3w, x);
        }
    }
    if (NORM) {
        // Every team read the whole row of x: team 0's sum is the row's.
        q4_reduce(vec4<f32>(ss, 0.0, 0.0, 0.0), lid);
        if (lid == 0u) {
            var t = 0.0;
            for (var j = 0u; j < PARTS; j++) {
                t += q4_sums[j].x;
            }
            q4_rms = 1.0 / sqrt(t / f32(p.cols) + p.norm_eps);
        }
        workgroupBarrier();
    }
    // One reduction per quad; thread 0 of each team stores its quad's outputs.
    let last = lane == 0u;
    q4_reduce(a0, lid);
    if (last) {
        store(yb, q4_total(team), s0);
    }
    if (QPT >= 2u) {
        q4_reduce(a1, lid);
        if (last) {
            store(yb, q4_total(team), s1);
        }
    }
    if (QPT >= 4u) {
        q4_reduce(a2, lid);
        if (last) {
            store(yb, q4_total(team), s2);
        }
        q4_reduce(a3, lid);
        if (last) {
            store(yb, q4_total(team), s3);
        }
    }
}

// Slots of quad i of this thread's team in the workgroup whose first output is
// n (rows base: the expert's first row).
fn q4_slots_of(n: u32, team: u32, i: u32, base: u32) -> Slots {
    let per = select(4u, 2u, p.epi == 2u);
    return group_slots(n + (team * QPT + i) * per, base);
}

// Dense, one token: y[n] for n in [n0, n_end); workgroup g covers TEAMS * QPT quads.
@compute @workgroup_size(WG)
fn mm_q4(@builtin(local_invocation_index) lid: u32,
         @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let per = select(4u, 2u, p.epi == 2u);
    let n = p.n0 + g * TEAMS * QPT * per;
    let team = lid / LANES;
    let s0 = q4_slots_of(n, team, 0u, 0u);
    var s1 = s0;
    var s2 = s0;
    var s3 = s0;
    if (QPT >= 2u) {
        s1 = q4_slots_of(n, team, 1u, 0u);
    }
    if (QPT >= 4u) {
        s2 = q4_slots_of(n, team, 2u, 0u);
        s3 = q4_slots_of(n, team, 3u, 0u);
    }
    q4_run(lid, p.x_off, p.y_off, p.x_aligned != 0u, s0, s1, s2, s3);
}

// Indexed (MoE decode), one pair per workgroup row: pair q = g / groups_n uses
// expert ids[ids_off + q] (skipped when >= experts), x row q / x_div, y row q.
@compute @workgroup_size(WG)
fn mm_q4_ids(@builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.groups) {
        return;
    }
    let q = g / p.groups_n;
    if (lid == 0u) {
        q4_id = ids[p.ids_off + q];
    }
    let e = workgroupUniformLoad(&q4_id);
    if (e >= p.experts) {
        return;
    }
    let per = select(4u, 2u, p.epi == 2u);
    let n = (g % p.groups_n) * TEAMS * QPT * per;
    let team = lid / LANES;
    let base = e * p.rpe;
    let s0 = q4_slots_of(n, team, 0u, base);
    var s1 = s0;
    var s2 = s0;
    var s3 = s0;
    if (QPT >= 2u) {
        s1 = q4_slots_of(n, team, 1u, base);
    }
    if (QPT >= 4u) {
        s2 = q4_slots_of(n, team, 2u, base);
        s3 = q4_slots_of(n, team, 3u, base);
    }
    q4_run(lid, (q / p.x_div) * p.x_stride, q * p.y_stride, p.x_stride % 4u == 0u, s0, s1, s2, s3);
}
