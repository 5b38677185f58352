// Matmul y = x · Wᵀ, shared part: parameters, bindings, stored-format decode.
// Concatenated after numeric.wgsl (and after a reduce file for matmul_vec.wgsl).
//
// W rows live in `wa` (and `wb`: the buffer holding the "up" rows of a SwiGLU
// launch; the same buffer as `wa` otherwise), each row `stride4` vec4<u32> long
// (zero padded), starting at weight row `a_row0` / `b_row0` of the whole weight.
// Scale of element (r, c) of the whole weight (module doc of weights.rs):
// bitcast<f32>(scales[rows + scales[r] + c / block_cols]).

struct MmParams {
    rows: u32,        // rows of the whole weight (offset of the scale values)
    cols: u32,
    stride4: u32,     // vec4<u32> per weight row
    block_cols: u32,  // columns per scale entry
    t: u32,           // dense: tokens; indexed: pairs
    x_off: u32,
    x_stride: u32,
    x_div: u32,       // indexed: x row = pair / x_div
    y_off: u32,
    y_stride: u32,
    n0: u32,          // outputs [n0, n_end) of this launch (rows, or SwiGLU columns)
    n_end: u32,
    a_row0: u32,
    a_rows: u32,
    b_row0: u32,
    b_rows: u32,
    half: u32,        // SwiGLU: row distance from a gate row to its up row
    rpe: u32,         // indexed: rows per expert
    experts: u32,     // indexed: experts stacked in W
    ids_off: u32,
    groups_n: u32,    // workgroups along the outputs
    groups: u32,      // workgroups in all (the grid may be rounded up)
    // 0 Store, 1 Accumulate (y += result), 2 SwiGLU (gate rows in wa, up rows in
    // wb). A uniform, not an override: it only steers the store and the row
    // mapping, and a third of the pipelines is a third of the compile time.
    epi: u32,
    x_aligned: u32,   // x_off and x_stride are multiples of 4: x rows load as vec4
    // Vector path only: RMSNorm of x fused into the GEMV (matmul_vec.wgsl):
    // 0 off, 1 weight w, 2 weight 1 + w; eps of the norm.
    norm: u32,
    norm_eps: f32,
    _pad0: u32,
    _pad1: u32,
}

// 0 F32, 1 BF16, 2 F16, 3 E4M3, 4 E5M2, 5 Q4 (4-bit, f16 scale and zero per
// group), 6 Q4 with f32 scales (WeightFormat; module doc of int4.rs).
override FORMAT: u32 = 1u;
// 4-bit weights: W = (q - zero) * scale per group of block_cols columns; the
// scale word(s) of element (r, c) start at scales[rows + scales[r] + (c / block_cols) * (1 or 2)].
override Q4: bool = FORMAT >= 5u;
// Groups of 4 elements per vec4<u32> chunk: 1 (F32), 2 (16-bit), 4 (FP8), 8 (Q4).
override G: u32 = select(select(select(4u, 2u, FORMAT == 1u || FORMAT == 2u), 1u, FORMAT == 0u), 8u, FORMAT >= 5u);
// Elements per vec4<u32> chunk.
override CW: u32 = 4u * G;

@group(0) @binding(0) var<storage, read> wa: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> wb: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> xs: array<f32>;
@group(0) @binding(4) var<storage, read_write> ys: array<f32>;
@group(0) @binding(5) var<uniform> p: MmParams;
// The x buffer again, as vec4s (aligned rows; vector path only).
@group(0) @binding(6) var<storage, read> xs4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> ids: array<u32>;

// Q4: the biases q4_biased adds to the nibbles of each position of a group.
const Q4_M = vec4<f32>(8388608.0, 524288.0, 32768.0, 2048.0);

// Q4: elements 4g..4g+3 of a chunk as Q4_M + q, exact. Nibble k of the
// group's 16 bits sits at bit 4k; or-ing in the exponent of 2^(23 - 4k) makes
// it the low bits of the mantissa of 2^(23 - 4k) + q (mantissa units of
// 2^-4k): one mask-and-or per element, no shift or conversion.
fn q4_biased(w: vec4<u32>, g: u32) -> vec4<f32> {
    let v = w[g / 2u] >> (16u * (g % 2u));
    return bitcast<vec4<f32>>((vec4<u32>(v) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u))
        | vec4<u32>(0x4b000000u, 0x49000000u, 0x47000000u, 0x45000000u));
}

// Elements 4g..4g+3 of a chunk, exact f32 (no scale; Q4: q, before the zero point).
fn decode_group(w: vec4<u32>, g: u32) -> vec4<f32> {
    if (Q4) {
        return q4_biased(w, g) - Q4_M;
    }
    switch FORMAT {
        case 0u: {
            return bitcast<vec4<f32>>(w);
        }
        case 1u: {
            return vec4<f32>(bf16x2(w[2u * g]), bf16x2(w[2u * g + 1u]));
        }
        case 2u: {
            return vec4<f32>(f16x2(w[2u * g]), f16x2(w[2u * g + 1u]));
        }
        case 3u: {
            return e4m3x4(w[g]);
        }
        default: {
            return e5m2x4(w[g]);
        }
    }
}

// Index in `scales` of the first scale value of weight row `r`.
fn scale_base(r: u32) -> u32 {
    return p.rows + scales[min(r, p.rows - 1u)];
}

// Scale of column `c` of the row whose scale_base is `sb` (columns past `cols`,
// i.e. zero padding, use the last column's scale so the index stays in range).
fn scale_at(sb: u32, c: u32) -> f32 {
    return bitcast<f32>(scales[sb + min(c, p.cols - 1u) / p.block_cols]);
}

// Q4: (scale, zero point) of column `c` of the row whose scale_base is `sb`
// (columns past `cols` use the last column's group, as scale_at).
fn q4_sz(sb: u32, c: u32) -> vec2<f32> {
    let b = min(c, p.cols - 1u) / p.block_cols;
    if (FORMAT == 6u) {
        return vec2<f32>(bitcast<f32>(scales[sb + 2u * b]), bitcast<f32>(scales[sb + 2u * b + 1u]));
    }
    return unpack2x16float(scales[sb + b]);
}

// Elements 4g..4g+3 of a chunk decoded by decode_group, scaled: column c's
// scale (Q4: its zero point subtracted first).
fn scale_group(d: vec4<f32>, sb: u32, c: u32) -> vec4<f32> {
    if (Q4) {
        let sz = q4_sz(sb, c);
        return (d - sz.y) * sz.x;
    }
    return d * scale_at(sb, c);
}

// Loads chunk `ch` of slot row `lr` (local row index in its buffer), from wb when `in_b`.
fn load_chunk(in_b: bool, lr: u32, ch: u32) -> vec4<u32> {
    if (p.epi == 2u && in_b) {
        return wb[lr * p.stride4 + ch];
    }
    return wa[lr * p.stride4 + ch];
}
