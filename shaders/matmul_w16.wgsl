// W pre-pass of the f16-scratch tensor-core GEMM (matmul_coop_f16.wgsl):
// converts the rows of a stored weight that one GEMM launch consumes into
// f16 scratch rows plus one f32 multiplier per row, weight row = f16 row x
// multiplier. Follows numeric.wgsl and matmul_common.wgsl (the weight's
// bindings `wa`, `wb`, `scales`, params `p` and decode).
//
// Scratch row s of the launch (tile i = s / 128, tile row lc = s % 128) is
// weight row n = p.n0 + s (Store / Accumulate), or for SwiGLU (p.epi == 2)
// the gate row (lc % 64 < 32) or up row (p.half further) of output column
// n = p.n0 + 64 i + 32 (lc / 64) + lc % 32: the GEMM's tile layout. A row
// whose output is past p.n_end, or not in its piece (a_row0 / a_rows from
// `wa`, b_row0 / b_rows from `wb` for up rows), is zeros with multiplier 0.
//
// Per row: e with the row's largest |v| times 2^e in [2^14, 2^15) (e = 0 for
// a zero, infinite or NaN maximum; the rule of matmul_fast_x.wgsl), where v
// is the decoded element (row-constant scales: unscaled, the scale goes into
// the multiplier) or the decoded element times its block scale (scales that
// vary along the row, 128 x 128 FP8 blocks). Elements become f16(v 2^e),
// nearest even, subnormals kept, formed with integer ops (no f16 feature, no
// dependence on an adapter's f32 -> f16 conversion); the multiplier is
// scale 2^-e (row-constant) or 2^-e (blocks). Exact for BF16 / F16 elements
// at or above the row's max times 2^-28 (below: f16 subnormals, at most
// 2^-25 x 2^-e off) and for every E4M3 / E5M2 code; block-scaled rows round
// v to 11 significant bits (only the fast precision takes them).
//
// Output: `wh`, rows of `wp.kp` halves (a multiple of 32), two halves per u32
// word (column c in the low half of word c / 2 when c is even, four words per
// vec4<u32>), columns past
// `cols` zero; `wmul`, one multiplier per row. One workgroup per scratch row
// (grid_1d order over wp.srows rows); every thread takes part in the shared
// memory reduction, no subgroups.

struct W16Params {
    srows: u32,     // scratch rows to write (a multiple of 128)
    kp: u32,        // halves per scratch row
    groups_x: u32,  // workgroups along x of the grid
    _pad: u32,
}

@group(0) @binding(10) var<uniform> wp: W16Params;
// Scratch rows as vec4<u32> (8 halves each: 16-byte stores).
@group(0) @binding(11) var<storage, read_write> wh: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> wmul: array<f32>;

const W16_WG: u32 = 128u;

var<workgroup> w16_red: array<f32, 128u>;

// Where scratch row s comes from.
struct W16Row {
    lrow: u32,   // row in its buffer
    grow: u32,   // row of the whole weight
    in_b: bool,  // read from wb
    valid: bool,
}

fn w16_row(s: u32) -> W16Row {
    var r: W16Row;
    var n: u32;
    if (p.epi == 2u) {
        let lc = s % 128u;
        r.in_b = (lc % 64u) >= 32u;
        n = p.n0 + (s / 128u) * 64u + (lc / 64u) * 32u + lc % 32u;
        r.grow = select(n, p.half + n, r.in_b);
    } else {
        r.in_b = false;
        n = p.n0 + s;
        r.grow = n;
    }
    let r0 = select(p.a_row0, p.b_row0, r.in_b);
    let nr = select(p.a_rows, p.b_rows, r.in_b);
    r.valid = n < p.n_end && r.grow >= r0 && r.grow - r0 < nr;
    r.lrow = select(0u, r.grow - r0, r.valid);
    return r;
}

// Elements 4g..4g+3 of chunk ch of the row (whose scale_base is sb), as
// converted: decoded, times the block scale unless the scale is constant
// along the row; zero past `cols`.
fn w16_group(w: vec4<u32>, g: u32, ch: u32, sb: u32, row_const: bool) -> vec4<f32> {
    let c = ch * CW + 4u * g;
    var d = decode_group(w, g);
    if (!row_const) {
        d = d * scale_at(sb, c);
    }
    let cols = vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<f32>(0.0), d, cols < vec4<u32>(p.cols));
}

// f16 bits of v 2^e rounded to nearest even (|v 2^e| < 2^15 + 2^4).
// A non-finite element becomes an f16 NaN.
fn w16_half(v: f32, s: f32) -> u32 {
    if ((bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u) {
        return 0x7e00u;
    }
    let r = f16_round(vec4<f32>(v * s)).x;
    let sign = (bitcast<u32>(r) >> 16u) & 0x8000u;
    let ra = bitcast<u32>(r) & 0x7fffffffu;
    if (ra < 0x38800000u) {
        // Below 2^-14: an f16 subnormal (or zero), r = m 2^-24 with m < 1024.
        return sign | u32(bitcast<f32>(ra) * 16777216.0);
    }
    // Normal: rebias the exponent (127 -> 15) and keep the top 10 mantissa bits.
    return sign | ((ra - 0x38000000u) >> 13u);
}

@compute @workgroup_size(128)
fn w16_rows(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.y * wp.groups_x + wid.x;
    // Workgroup-uniform: rows past the scratch (grid rounding) do nothing.
    let live = s < wp.srows;
    let r = w16_row(min(s, wp.srows - 1u));
    let valid = live && r.valid;
    let sb = scale_base(r.grow);
    let row_const = p.block_cols >= p.cols;
    // Chunks of the scratch row (CW elements each; CW divides 32).
    let nch = wp.kp / CW;
    var mx = 0.0;
    if (valid) {
        for (var ch = lid; ch < nch && ch < p.stride4; ch += W16_WG) {
            let w = load_chunk(r.in_b, r.lrow, ch);
            for (var g = 0u; g < G; g++) {
                let v = abs(w16_group(w, g, ch, sb, row_const));
                mx = max(mx, max(max(v.x, v.y), max(v.z, v.w)));
            }
        }
    }
    w16_red[lid] = mx;
    workgroupBarrier();
    for (var h = W16_WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            w16_red[lid] = max(w16_red[lid], w16_red[lid + h]);
        }
        workgroupBarrier();
    }
    if (!live) {
        return;
    }
    let bits = bitcast<u32>(w16_red[0]);
    var e = 0;
    if (bits != 0u && bits < 0x7f800000u) {
        e = clamp(15 - frexp(w16_red[0]).exp, -126, 126);
    }
    let sc = ldexp(1.0, e);
    if (lid == 0u) {
        var m = 0.0;
        if (valid) {
            m = ldexp(1.0, -e);
            if (row_const) {
                m = bitcast<f32>(scales[sb]) * m;
            }
        }
        wmul[s] = m;
    }
    // vec4<u32>s of the row (kp / 8), CW / 8 per chunk (G is even: 2 or 4).
    let row4 = wp.kp / 8u;
    for (var ch = lid; ch < nch; ch += W16_WG) {
        var w = vec4<u32>(0u);
        if (valid && ch < p.stride4) {
            w = load_chunk(r.in_b, r.lrow, ch);
        }
        let o = s * row4 + ch * (CW / 8u);
        for (var g = 0u; g < G; g += 2u) {
            let v0 = w16_group(w, g, ch, sb, row_const);
            let v1 = w16_group(w, g + 1u, ch, sb, row_const);
            wh[o + g / 2u] = vec4<u32>(
                w16_half(v0.x, sc) | (w16_half(v0.y, sc) << 16u),
                w16_half(v0.z, sc) | (w16_half(v0.w, sc) << 16u),
                w16_half(v1.x, sc) | (w16_half(v1.y, sc) << 16u),
                w16_half(v1.z, sc) | (w16_half(v1.w, sc) << 16u));
        }
    }
}
