// Number formats and activations shared by every kernel family.

// Two BF16 packed in a u32 (element 0 in the low half) -> f32. Exact.
fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// Two F16 packed in a u32 -> f32. Exact; needs no f16 feature.
fn f16x2(w: u32) -> vec2<f32> {
    return unpack2x16float(w);
}

// Four FP8 E4M3FN bytes (byte 0 = element 0) -> f32, exact incl. subnormals:
// the bits are placed into two f16 (bias 15 vs 7: 2^-8 too small) and rescaled.
// NaN encodings (0x7f/0xff) become ±480; the loader rejects them in weights.
fn e4m3x4(v: u32) -> vec4<f32> {
    return e4m3x4_raw(v) * 256.0;
}

// e4m3x4 / 256 (exact): callers that scale a sum of products anyway fold the
// 256 into that scale and save a multiply per element.
// Bytes 0 and 2 go to the f16 lanes of `ha`, 1 and 3 to `hb`: each byte's sign
// to bit 15 of its lane and its 7 exponent-mantissa bits to bits 7..13. The
// sign bits of bytes 1 and 3 are already in place, so `hb` takes one shift.
fn e4m3x4_raw(v: u32) -> vec4<f32> {
    let ha = ((v << 8u) & 0x80008000u) | ((v << 7u) & 0x3f803f80u);
    let hb = (v & 0x80008000u) | ((v >> 1u) & 0x3f803f80u);
    let fa = unpack2x16float(ha);
    let fb = unpack2x16float(hb);
    return vec4<f32>(fa.x, fb.x, fa.y, fb.y);
}

// Four FP8 E5M2 bytes -> f32, exact (E5M2 is the top byte of an f16).
fn e5m2x4(v: u32) -> vec4<f32> {
    let fa = unpack2x16float((v & 0x00ff00ffu) << 8u);
    let fb = unpack2x16float(v & 0xff00ff00u);
    return vec4<f32>(fa.x, fb.x, fa.y, fb.y);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// softplus with PyTorch's threshold (x > 20 -> x).
fn softplus(x: f32) -> f32 {
    if (x > 20.0) {
        return x;
    }
    return log(1.0 + exp(x));
}

// x rounded to the nearest f16 value, ties to even, as an f32 (subnormal f16
// values included; |x| must stay below 65520). Integer-free and independent
// of how the hardware rounds f32 -> f16 conversions (WGSL lets a conversion
// pick either neighbour): the f16 quantum of x is 2^(e - 11) for x = m 2^e
// with m in [0.5, 1), at least 2^-24, and round() ties to even.
fn f16_round(x: vec4<f32>) -> vec4<f32> {
    let q = ldexp(vec4<f32>(1.0), max(frexp(x).exp - vec4<i32>(11), vec4<i32>(-24)));
    return round(x / q) * q;
}
