// Shared by the sampling kernels (sample_*.wgsl): parameters, the random number
// of a step, and the reduction of the per-block (max, argmax) partials.
//
// Rows: every launch samples the rows of a group (grid y = row in the group),
// all with the same launch shape (greedy, top-k, top-p on or off) but each
// with its own logits, output slot, parameters and random number: row r's
// parameters are rows[shape.row0 + r], its scratch the r-th part of each
// scratch buffer. Entry points call sample_begin(row) first; it fills `sp`
// and the scratch bases, so the rest of the code reads one row's values.
//
// Random number: u = uniform01(seed_lo, seed_hi, counter), a pure function of
// the Step uniform's seed and counter (host mirror: sample::uniform_random):
//   h = lowbias32(counter + 0x9e3779b9)
//   h = lowbias32(h ^ seed_lo)
//   h = lowbias32(h ^ seed_hi)
//   u = f32(h >> 8) * 2^-24              (24 random bits, u in [0, 1 - 2^-24])
// lowbias32 is Chris Wellons' 32-bit integer hash (a bijection), so for a
// fixed seed distinct counters (mod 2^32) give distinct h.

// The launch's shape (uniform).
struct SampleShape {
    vocab: u32,
    nblocks: u32,
    block: u32,
    // Search slots of each row (psum / sstate strides).
    slots: u32,
    // Table index of the launch's first row.
    row0: u32,
    // 1: the random number comes from the Step uniform (a lone session's
    // step), 0: from the row's seed and counter.
    seed_from_step: u32,
    _pad0: u32,
    _pad1: u32,
}

// One row's values (storage table, written by the host before each step).
struct SampleRow {
    logits_off: u32,
    out_off: u32,
    top_k: u32,
    inv_t: f32,
    top_p: f32,
    seed_lo: u32,
    seed_hi: u32,
    counter: u32,
    // Min-p: e below it is dropped (0 = off; 0 for greedy rows).
    min_p: f32,
}

@group(0) @binding(14) var<uniform> shape: SampleShape;
@group(0) @binding(15) var<storage, read> rows: array<SampleRow>;

// The current row's parameters and scratch bases (set by sample_begin).
var<private> sp: SampleParams;
var<private> row_seed: vec3<u32>;
var<private> row_min_p: f32;
var<private> part_base: u32; // u32 words of `part`
var<private> ev_base: u32;   // f32 words of `ev` (a multiple of 4)
var<private> ps_base: u32;   // vec4 words of `psum4`
var<private> ss_base: u32;   // u32 words of `sstate`
var<private> blk_base: u32;  // u32 words of `blk`

fn sample_begin(row: u32) {
    let r = rows[shape.row0 + row];
    sp = SampleParams(r.logits_off, shape.vocab, r.out_off, r.top_k, r.inv_t, r.top_p,
        shape.nblocks, shape.block);
    row_seed = vec3<u32>(r.seed_lo, r.seed_hi, r.counter);
    row_min_p = r.min_p;
    part_base = row * 2u * shape.nblocks;
    ev_base = row * ((shape.vocab + 3u) & ~3u);
    ps_base = row * max(shape.slots, 1u) * shape.nblocks * 16u;
    ss_base = row * 4u * max(shape.slots, 1u);
    blk_base = row * (2u * shape.nblocks + 1u);
}

// One row's parameters (assembled from the shape and the row's table entry).
struct SampleParams {
    logits_off: u32,
    vocab: u32,
    out_off: u32,
    // Top-k: 0 or >= vocab = off.
    top_k: u32,
    // 1 / temperature (host-computed f32; 0 for greedy).
    inv_t: f32,
    // Top-p: >= 1 = off.
    top_p: f32,
    // Partial blocks and logits per block (a multiple of 4).
    nblocks: u32,
    block: u32,
}

// Private variables, not constants: `bitcast<f32>` of a constant is evaluated
// when the shader is parsed, and Tint (Chromium's WebGPU) refuses an infinite
// constant, so the browser would reject every sampling module.
var<private> NEG_INF_BITS: u32 = 0xff800000u;
var<private> POS_INF_BITS: u32 = 0x7f800000u;
// The token written for a row with a NaN or +inf logit, or only -inf logits
// (host mirror: qwgpu_ops::sampling::NON_FINITE): the caller reports broken logits.
const NON_FINITE: u32 = 0xffffffffu;
// Loads each invocation keeps in flight in the streaming loops.
const BATCH: u32 = 4u;
// Index sentinel: above every vocabulary index, exact in f32.
const NO_INDEX: u32 = 16777216u;

fn lowbias32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn uniform01(seed_lo: u32, seed_hi: u32, counter: u32) -> f32 {
    var h = lowbias32(counter + 0x9e3779b9u);
    h = lowbias32(h ^ seed_lo);
    h = lowbias32(h ^ seed_hi);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// A logit as the max reduction sees it: NaN counts as +inf, so the row max is
// finite exactly when no logit is NaN or +inf and some logit is above -inf.
fn clean_logit(v: f32) -> f32 {
    return select(v, bitcast<f32>(POS_INF_BITS), is_nan(v));
}

struct Best {
    v: f32,
    i: u32,
}

// Workgroup argmax of candidates (v, i): the largest v, then the lowest i
// (as a max of -i, exact below 2^24). Invocations without a candidate pass
// (-inf, NO_INDEX). Call in uniform control flow.
fn wg_argmax(b: Best, lid: u32) -> Best {
    let m = wg_max(b.v, lid);
    let neg = wg_max(select(-f32(NO_INDEX), -f32(b.i), b.v == m), lid);
    return Best(m, u32(-neg));
}
