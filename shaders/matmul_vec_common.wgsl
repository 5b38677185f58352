// Matmul, vector paths' shared part: overrides, the fused norm's factor, x
// loads, the slots (4 weight rows) of a workgroup and their stores.
// Concatenated after numeric.wgsl and matmul_common.wgsl, before
// matmul_vec.wgsl (T = 1, MoE pairs) or matmul_vec_t.wgsl (dense T = 2..16).

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

// Elements 4g..4g+3 of a chunk, divided by RAW (Q4: Q4_M + q, the bias
// removed together with the zero point: q4_slots' zb).
fn decode_raw(w: vec4<u32>, g: u32) -> vec4<f32> {
    if (Q4) {
        return q4_biased(w, g);
    }
    if (FORMAT == 3u) {
        return e4m3x4_raw(w[g]);
    }
    return decode_group(w, g);
}

// Q4: the 4 slots' scales at a column, and what to subtract from the
// decode_raw values of each slot (column i: Q4_M + slot i's zero point; exact)
// to get q - zero.
struct Q4Slots {
    s: vec4<f32>,
    zb: mat4x4<f32>,
}

fn q4_slots(sb: vec4<u32>, c: u32) -> Q4Slots {
    let a = q4_sz(sb.x, c);
    let b = q4_sz(sb.y, c);
    let e = q4_sz(sb.z, c);
    let f = q4_sz(sb.w, c);
    return Q4Slots(vec4<f32>(a.x, b.x, e.x, f.x),
                   mat4x4<f32>(Q4_M + a.y, Q4_M + b.y, Q4_M + e.y, Q4_M + f.y));
}

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

