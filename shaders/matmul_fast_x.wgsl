// Pre-pass of the fast tensor-core GEMM (matmul_coop_fast.wgsl): the
// activations of one GEMM rounded to f16 once, so that the GEMM's staging
// moves raw f16 words. Follows numeric.wgsl.
//
// Per token row: s = 2^k with the row's largest |x| times s in [2^14, 2^15)
// (k = 0 for a zero, infinite or NaN maximum; the rule of x_scale_exp in
// matmul_coop.wgsl and tile_x_scale_exp in matmul_tile.wgsl), then every
// element becomes f16(x s), nearest even, f16 subnormals kept (f16_round):
// what the fast variant of mm_coop stages and what the tile GEMM's FAST_X
// emulates. The f16 bits are formed with integer ops from the exactly
// representable f32 value, so the kernel needs no f16 feature and does not
// depend on how an adapter converts f32 to f16. An infinite or NaN element
// becomes an f16 NaN (its row's outputs are NaN, as in mm_coop).
//
// Output (scratch): `xh`, rows of `kp` halves (the columns rounded up to the
// GEMM's 32-column step), two halves per u32 word, element c of a row in
// the low half of word c / 2 when c is even; columns past `cols` and the rows
// from `t` to `rows` (the token count rounded up to the GEMM's 128-token
// tile) are zeros, so the GEMM stages whole tiles without bounds checks.
// `xinv`: per row 1 / s (exact, a power of two), 1 for padding rows.
//
// SPLIT (override; the exact variant, mm_coop_split): x s is written as
// two f16 parts, hi = x s rounded to 11 significant bits with integer ops
// (nearest, ties away from zero: mm_coop's exact variant's rule) and
// lo = f16(x s - hi) (nearest even), lo rows after the `rows` hi rows; hi + lo
// keeps 22 significant bits of x s.
//
// One workgroup per row (grid_1d order); every thread takes part in the
// shared-memory reduction, no subgroups.

struct FastXParams {
    t: u32,          // token rows of x
    cols: u32,
    x_off: u32,      // element offset of row 0 in xs
    x_stride: u32,   // elements between rows of xs
    kp: u32,         // halves per output row (a multiple of 32)
    rows: u32,       // output rows (>= t, a multiple of 128)
    groups_x: u32,   // workgroups along x of the grid
    _pad: u32,
}

@group(0) @binding(0) var<uniform> fp: FastXParams;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read_write> xh: array<u32>;
@group(0) @binding(3) var<storage, read_write> xinv: array<f32>;

override WG: u32 = 128u;
override SPLIT: bool = false;

var<workgroup> red: array<f32, WG>;

// Exponent of the power-of-two row scale (see the file's head).
fn fast_x_scale_exp(mx: f32) -> i32 {
    let bits = bitcast<u32>(mx);
    if (bits == 0u || bits >= 0x7f800000u) {
        return 0;
    }
    return clamp(15 - frexp(mx).exp, -126, 126);
}

// f16 bits of x s rounded to nearest even (x s below 2^15 in magnitude).
fn fast_x_half(v: f32, s: f32) -> u32 {
    let a = bitcast<u32>(v) & 0x7fffffffu;
    let sign = (bitcast<u32>(v) >> 16u) & 0x8000u;
    if (a >= 0x7f800000u) {
        return 0x7e00u;
    }
    let r = f16_round(vec4<f32>(v * s)).x;
    let ra = bitcast<u32>(r) & 0x7fffffffu;
    if (ra < 0x38800000u) {
        // Below 2^-14: an f16 subnormal (or zero), r = m 2^-24 with m < 1024.
        return sign | u32(bitcast<f32>(ra) * 16777216.0);
    }
    // Normal: rebias the exponent (127 -> 15) and keep the top 10 mantissa bits.
    return sign | ((ra - 0x38000000u) >> 13u);
}

// f16 bits of r, exactly representable in f16 (|r| < 65520), with the sign
// bit `sign` (0 or 0x8000).
fn half_bits(r: f32, sign: u32) -> u32 {
    let ra = bitcast<u32>(r) & 0x7fffffffu;
    if (ra < 0x38800000u) {
        return sign | u32(bitcast<f32>(ra) * 16777216.0);
    }
    return sign | ((ra - 0x38000000u) >> 13u);
}

// SPLIT: f16 bits of the hi (low half) and lo (high half) parts of x s.
fn split_halves(v: f32, s: f32) -> u32 {
    if ((bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u) {
        return 0x7e00u;
    }
    let vs = v * s;
    let hi = bitcast<f32>((bitcast<u32>(vs) + 0x1000u) & 0xffffe000u);
    let lo = vs - hi;
    let h = half_bits(f16_round(vec4<f32>(hi)).x, (bitcast<u32>(vs) >> 16u) & 0x8000u);
    let l = half_bits(f16_round(vec4<f32>(lo)).x, (bitcast<u32>(lo) >> 16u) & 0x8000u);
    return h | (l << 16u);
}

@compute @workgroup_size(WG)
fn fast_x_rows(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * fp.groups_x + wid.x;
    // Workgroup-uniform: rows past the output (grid rounding) do nothing, and
    // take part in no barrier either way.
    let live = row < fp.t;
    var mx = 0.0;
    if (live) {
        let base = fp.x_off + row * fp.x_stride;
        for (var c = lid; c < fp.cols; c += WG) {
            mx = max(mx, abs(xs[base + c]));
        }
    }
    red[lid] = mx;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            red[lid] = max(red[lid], red[lid + h]);
        }
        workgroupBarrier();
    }
    if (row >= fp.rows) {
        return;
    }
    let k = fast_x_scale_exp(red[0]);
    let s = ldexp(1.0, k);
    if (lid == 0u) {
        xinv[row] = select(1.0, ldexp(1.0, -k), live);
    }
    let words = fp.kp / 2u;
    let base = fp.x_off + row * fp.x_stride;
    if (SPLIT) {
        // Hi rows from word 0, lo rows from word rows * words.
        let lo_base = fp.rows * words;
        for (var q = lid; q < words; q += WG) {
            let c = 2u * q;
            var e0 = 0u;
            var e1 = 0u;
            if (live && c < fp.cols) {
                e0 = split_halves(xs[base + c], s);
            }
            if (live && c + 1u < fp.cols) {
                e1 = split_halves(xs[base + c + 1u], s);
            }
            xh[row * words + q] = (e0 & 0xffffu) | (e1 << 16u);
            xh[lo_base + row * words + q] = (e0 >> 16u) | (e1 & 0xffff0000u);
        }
    } else {
        for (var q = lid; q < words; q += WG) {
            let c = 2u * q;
            var lo = 0u;
            var hi = 0u;
            if (live && c < fp.cols) {
                lo = fast_x_half(xs[base + c], s);
            }
            if (live && c + 1u < fp.cols) {
                hi = fast_x_half(xs[base + c + 1u], s);
            }
            xh[row * words + q] = lo | (hi << 16u);
        }
    }
}
