//! The fast tensor-core GEMM (`matmul::coop_fast`: the pre-pass
//! `shaders/matmul_fast_x.wgsl` and the GEMM `shaders/matmul_coop_fast.wgsl`).
//!
//! - The pre-pass needs nothing optional (it runs on lavapipe): its f16 words
//!   and row scales must equal, bit for bit, a CPU rounding written out here
//!   (`half`'s nearest-even f32 → f16, the power-of-two rule of the fast
//!   precision).
//! - The GEMM needs cooperative matrices ([`Feature::CooperativeMatrix`]:
//!   a recorded skip on lavapipe, a failure on a hardware adapter without
//!   them). It is checked against an f64 CPU product of the fast precision's
//!   rounded x (`f16(x·s)/s`, independent of the shaders) and the exact
//!   dequantized weight, at `1e-5 · Σ|x'·w|` per output (only f32 sums
//!   round; SwiGLU propagates each half's error as `support::expected`
//!   does), plus, for BF16 weights, `2⁻²⁴ · Σ|x'|` (values below f16's
//!   normal range are staged as f16 subnormals, ≤ 2⁻²⁵ off, times a row scale
//!   below 2), and against the scalar tile GEMM's emulation of the same
//!   rounding (`FAST_X`) at twice that. The exact variant: the same against
//!   x itself. Everything outside the written region keeps its bits (NaN
//!   poison for Store).
//! - The same cases run with the cooperative-matrix operations emulated in
//!   scalar code (`coop_fast::emulation`) on every context with f16, lavapipe
//!   included: all of the kernels but the driver's cooperative matrices.
//! - `coop_fast_speed` (`#[ignore]`d) is the benchmark beside `mm_coop`'s
//!   fast variant: `-- --ignored --exact matmul_coop_fast::coop_fast_speed`.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{coop_fast, matmul_with, Epilogue, MatmulPath};
use qwgpu_kernels::testing::cases::matmul::Strided;
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{
    ContextOptions, Dispatch, GpuContext, GpuWeight, KernelError, MatmulPrecision, WeightFormat,
};
use qwgpu_ops::rng::Rng;

mod support;
use support::bench::{best_ns, coop_contexts, max_rel_diff, shape_inputs, Dense};
use support::matmul_case::contiguous;
use support::spirv::{self, Translator};
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];
/// f32 accumulation only (x' and w exact in f16).
const REL: f64 = 1e-5;

/// Exponent `e` of `v = m · 2^e`, `m` in [0.5, 1) (v finite and > 0).
pub(crate) fn frexp_exp(v: f32) -> i32 {
    let bits = v.to_bits();
    let e = ((bits >> 23) & 0xff) as i32;
    if e == 0 {
        // Subnormal: the highest set mantissa bit p gives v in [2^(p-149), 2^(p-148)).
        let p = 31 - (bits & 0x7f_ffff).leading_zeros() as i32;
        p - 148
    } else {
        e - 126
    }
}

/// Exponent of the fast precision's row scale for a row whose largest |x| is `mx`.
pub(crate) fn scale_exp(mx: f32) -> i32 {
    if mx == 0.0 || !mx.is_finite() {
        0
    } else {
        (15 - frexp_exp(mx)).clamp(-126, 126)
    }
}

/// Largest |x| of a row (the tests' rows hold no NaN, whose order in a GPU
/// `max` is unspecified).
pub(crate) fn row_max(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// The pre-pass's words for one row (f16 bits, nearest even, subnormals kept;
/// a non-finite element as 0x7e00) padded to `kp` halves, and 1 / s.
fn fast_row_words(x: &[f32], kp: usize) -> (Vec<u32>, f32) {
    let k = scale_exp(row_max(x));
    let s = 2f64.powi(k);
    let half = |c: usize| -> u32 {
        match x.get(c) {
            None => 0,
            Some(v) if !v.is_finite() => 0x7e00,
            Some(&v) => u32::from(half::f16::from_f32((v as f64 * s) as f32).to_bits()),
        }
    };
    let words = (0..kp / 2)
        .map(|q| half(2 * q) | (half(2 * q + 1) << 16))
        .collect();
    (words, 2f64.powi(-k) as f32)
}

/// The split pre-pass's (exact variant's) words for one row: hi rows (x·s
/// rounded to 11 significant bits, ties away from zero, then to f16), lo rows
/// (`f16(x·s − hi)` before hi's f16 rounding, nearest even); a non-finite
/// element as hi 0x7e00, lo 0. And 1 / s.
fn split_row_words(x: &[f32], kp: usize) -> (Vec<u32>, Vec<u32>, f32) {
    let k = scale_exp(row_max(x));
    let s = 2f64.powi(k);
    let parts = |c: usize| -> (u32, u32) {
        match x.get(c) {
            None => (0, 0),
            Some(v) if !v.is_finite() => (0x7e00, 0),
            Some(&v) => {
                let vs = (v as f64 * s) as f32;
                let hi = f32::from_bits((vs.to_bits() + 0x1000) & 0xffff_e000);
                let lo = vs - hi;
                (
                    u32::from(half::f16::from_f32(hi).to_bits()),
                    u32::from(half::f16::from_f32(lo).to_bits()),
                )
            }
        }
    };
    let (mut his, mut los) = (Vec::new(), Vec::new());
    for q in 0..kp / 2 {
        let (h0, l0) = parts(2 * q);
        let (h1, l1) = parts(2 * q + 1);
        his.push(h0 | (h1 << 16));
        los.push(l0 | (l1 << 16));
    }
    (his, los, 2f64.powi(-k) as f32)
}

/// x rounded as the fast precision rounds it, back in f32: `f16(x·s) / s`.
pub(crate) fn fast_round_row(x: &[f32]) -> Vec<f32> {
    let k = scale_exp(row_max(x));
    let s = 2f64.powi(k);
    x.iter()
        .map(|&v| (half::f16::from_f32((v as f64 * s) as f32).to_f64() / s) as f32)
        .collect()
}

/// A test row: `kind` 0 mixes magnitudes 1e-6..1e6 (small ones become f16
/// subnormals or zero), 1 is a whole row scaled by 10^(−6..6), 2 is zero,
/// 3 normal values with one 1e6, 4 plain normal values.
pub(crate) fn wide_row(rng: &mut Rng, cols: usize, kind: usize) -> Vec<f32> {
    let mut r = rng.normal_vec(cols);
    match kind {
        0 => r
            .iter_mut()
            .for_each(|v| *v *= 10f32.powf(12.0 * rng.uniform() - 6.0)),
        1 => {
            let f = 10f32.powf(12.0 * rng.uniform() - 6.0);
            r.iter_mut().for_each(|v| *v *= f);
        }
        2 => r.iter_mut().for_each(|v| *v = 0.0),
        3 => r[(rng.uniform() * cols as f32) as usize % cols] = 1e6,
        _ => {}
    }
    r
}

/// The pre-pass on every context (no optional feature) against the CPU
/// rounding, bit for bit: f16 words of every padded row and column, and the
/// row scales (1 for padding rows). x rows sit at an offset and stride with
/// NaN between them (the pre-pass must not read it).
#[test]
fn fast_x_prepass_matches_cpu_rounding() {
    let seed = testing::seed(0xfa57_0001);
    let mut rng = Rng::new(seed);
    // (tokens, cols, x offset, extra stride)
    let cases = [
        (1usize, 1usize, 0usize, 0usize),
        (17, 37, 3, 2),
        (130, 300, 1, 5),
        (5, 1030, 0, 0),
        (128, 64, 7, 1),
    ];
    for (t, split) in testing::contexts()
        .into_iter()
        .flat_map(|t| [(t, false), (t, true)])
    {
        let ctx = &t.ctx;
        let parts = if split { 2 } else { 1 };
        for &(tokens, cols, x_off, extra) in &cases {
            let x_stride = cols + extra;
            let mut xbuf = vec![f32::NAN; x_off + (tokens - 1) * x_stride + cols + 3];
            let xrows: Vec<Vec<f32>> = (0..tokens)
                .map(|i| wide_row(&mut rng, cols, i % 5))
                .collect();
            for (i, r) in xrows.iter().enumerate() {
                xbuf[x_off + i * x_stride..][..cols].copy_from_slice(r);
            }
            let (rows, kp) = coop_fast::scratch_layout(tokens as u32, cols as u32);
            let (rows, kp) = (rows as usize, kp as usize);
            let words = kp / 2;
            let x = ctx.upload("x", &xbuf).unwrap();
            // Poisoned outputs: every word must be written.
            let xh = ctx
                .upload("xh", &vec![0xdead_beefu32; parts * rows * words])
                .unwrap();
            let xinv = ctx.upload("xinv", &vec![f32::NAN; rows]).unwrap();
            let d = coop_fast::prepare_x(
                ctx,
                &x,
                x_off as u32,
                x_stride as u32,
                tokens as u32,
                cols as u32,
                &xh,
                &xinv,
                split,
            )
            .unwrap();
            ctx.run("fast x", &[&d]).unwrap();
            let got = ctx.read_u32(&xh, 0, parts * rows * words).unwrap();
            let got_inv = ctx.read_f32(&xinv, 0, rows).unwrap();
            let what = format!(
                "{t_name} seed {seed:#x} T={tokens} cols={cols} x_off {x_off} x_stride {x_stride} \
                 split {split}",
                t_name = t.name
            );
            for r in 0..rows {
                let (want, want_lo, want_inv) = match (r < tokens, split) {
                    (true, false) => {
                        let (w, inv) = fast_row_words(&xrows[r], kp);
                        (w, Vec::new(), inv)
                    }
                    (true, true) => split_row_words(&xrows[r], kp),
                    (false, _) => (vec![0; words], vec![0; words], 1.0),
                };
                // (first word of the row's part, expected words): hi (or the
                // only part) at row r, lo at row rows + r.
                let mut checks = vec![(r * words, &want)];
                if split {
                    checks.push(((rows + r) * words, &want_lo));
                }
                for (part, (w0, want)) in checks.into_iter().enumerate() {
                    let g = &got[w0..][..words];
                    if let Some(q) = (0..words).find(|&q| g[q] != want[q]) {
                        panic!(
                            "{what}: row {r} part {part} word {q}: got {got_q:#010x}, want \
                             {want_q:#010x} (x {xs:?})",
                            got_q = g[q],
                            want_q = want[q],
                            xs = xrows
                                .get(r)
                                .map(|x| &x[(2 * q).min(cols - 1)..(2 * q + 2).min(cols)])
                        );
                    }
                }
                assert_eq!(
                    got_inv[r].to_bits(),
                    want_inv.to_bits(),
                    "{what}: row {r}: 1/s {got_r:e}, want {want_inv:e}",
                    got_r = got_inv[r]
                );
            }
        }
    }
}

/// A non-finite element becomes an f16 NaN (its row's outputs are NaN), its
/// row keeps scale 1; the other rows are unaffected.
#[test]
fn fast_x_prepass_marks_non_finite_values() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let cols = 6;
        let xv = [
            1.0f32,
            f32::INFINITY,
            -2.0,
            0.5,
            0.0,
            3.0,
            // second row: finite
            1.0,
            2.0,
            -4.0,
            0.25,
            0.0,
            -0.0,
        ];
        let x = ctx.upload("x", &xv).unwrap();
        let (rows, kp) = coop_fast::scratch_layout(2, cols as u32);
        let xh = ctx.storage("xh", u64::from(rows * kp) * 2).unwrap();
        let xinv = ctx.storage("xinv", u64::from(rows) * 4).unwrap();
        let d = coop_fast::prepare_x(ctx, &x, 0, cols as u32, 2, cols as u32, &xh, &xinv, false)
            .unwrap();
        ctx.run("fast x", &[&d]).unwrap();
        let w = ctx.read_u32(&xh, 0, kp as usize).unwrap();
        let inv = ctx.read_f32(&xinv, 0, 2).unwrap();
        assert_eq!(w[0] >> 16, 0x7e00, "{t_name}: inf element", t_name = t.name);
        assert_eq!(inv[0], 1.0, "{t_name}: row with inf", t_name = t.name);
        // Row 1: max 4 → s = 2^12; 1 · 4096 = 0x6c00 in f16, 2 · 4096 = 0x7000.
        let r1 = &w[kp as usize / 2..];
        assert_eq!(
            r1[0],
            0x6c00 | (0x7000 << 16),
            "{t_name}: row 1",
            t_name = t.name
        );
        assert_eq!(
            r1[2] >> 16,
            0x8000,
            "{t_name}: -0 keeps its sign",
            t_name = t.name
        );
        assert_eq!(
            inv[1],
            2f32.powi(-12),
            "{t_name}: row 1 scale",
            t_name = t.name
        );
    }
}

/// Without cooperative matrices both forced variants are a typed error.
#[test]
fn coop_fast_is_unsupported_without_cooperative_matrices() {
    for t in testing::contexts() {
        if t.missing(&[Feature::CooperativeMatrix]).is_none() {
            continue;
        }
        let ctx = &t.ctx;
        let pw = support::packed_one_shard(&mut Rng::new(3), Dtype::BF16, 8, 40, Scheme::None);
        let gw = GpuWeight::upload(ctx, &pw).unwrap();
        let x = ctx.upload("x", &vec![1f32; 40 * 20]).unwrap();
        let y = ctx.storage("y", 8 * 20 * 4).unwrap();
        let args = contiguous(&x, &y, 20, 40, 8);
        for path in [MatmulPath::CoopFast, MatmulPath::CoopFastExact] {
            match matmul_with(ctx, &gw, &args, Epilogue::Store, path) {
                Err(KernelError::Unsupported { .. }) => {}
                other => panic!(
                    "{t_name}: forced {path:?} without cooperative matrices: {ok:?}",
                    t_name = t.name,
                    ok = other.map(|d| d.len())
                ),
            }
        }
    }
}

pub(crate) fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("matmul_coop_fast test", &refs).unwrap();
}

/// A context of `t`'s variant (checked or trusted modules) with `precision`.
pub(crate) fn context_with(t: &testing::TestContext, precision: MatmulPrecision) -> GpuContext {
    GpuContext::new(&ContextOptions {
        precision,
        ..t.variant.options()
    })
    .unwrap()
}

/// A weight of the GEMM tests: `shards` shards (at most one per row) with
/// their own scales, normal values (`coop_f16`'s tests take it too).
pub(crate) fn test_weight(
    rng: &mut Rng,
    dtype: Dtype,
    scheme: Scheme,
    rows: usize,
    cols: usize,
    shards: usize,
) -> qwgpu_loader::PackedWeight {
    let data = support::normal_data(rng, dtype, rows * cols);
    let shards = shards.min(rows);
    let mut parts = Vec::new();
    let mut o = 0;
    for i in 0..shards {
        let n = if i + 1 == shards {
            rows - o
        } else {
            rows / shards
        };
        parts.push((o, n));
        o += n;
    }
    let mut draw = || 0.25 + 1.75 * rng.uniform();
    support::packed_weight(
        format!("w{rows}x{cols}"),
        dtype,
        rows,
        cols,
        &parts,
        scheme,
        data,
        &mut draw,
    )
}

/// The GEMM on every format and scale scheme it takes, every epilogue, awkward
/// sizes (no multiple of the 128 × 128 tile or the 32-column step), x at an
/// offset and stride, rows of mixed magnitudes; once with the default scratch
/// and once with a scratch of one 128-token tile (several blocks of tokens).
#[test]
fn coop_fast_matches_reference_and_tile_emulation() {
    gemm_cases(testing::seed(0xfa57_c0de), MatmulPrecision::Fast, false);
}

/// The exact variant (`MatmulPath::CoopFastExact`: x·s as hi + lo f16 parts,
/// two products) on the same cases against the f64 product of the unrounded
/// x (1e-5 · Σ|x·w|: W exact in f16, x keeps 22 bits) and against the f32
/// scalar tile GEMM (twice that).
#[test]
fn coop_fast_exact_matches_reference_tightly() {
    gemm_cases(testing::seed(0xe8ac_c0de), MatmulPrecision::Exact, false);
}

/// Both variants' cases with the cooperative-matrix operations emulated in
/// scalar code (`coop_fast::emulation`: the kernels' own module otherwise,
/// launched by the same host code), on every context with f16 (lavapipe
/// included): the pre-pass, scratch, token blocks, staging indices, fragment
/// offsets and epilogues, everything but the driver's cooperative matrices.
#[test]
fn coop_fast_emulated_matches_reference() {
    gemm_cases(testing::seed(0xe4a1_c0de), MatmulPrecision::Fast, true);
    gemm_cases(testing::seed(0xe4a1_e8ac), MatmulPrecision::Exact, true);
}

/// The cases of the GEMM tests in `precision`; `emulated`: on the scalar
/// emulation of the cooperative-matrix operations (contexts with f16), else
/// on the adapter's (contexts with cooperative matrices).
fn gemm_cases(seed: u64, precision: MatmulPrecision, emulated: bool) {
    let path = path_of(precision == MatmulPrecision::Exact);
    // The emulation is slow on a CPU adapter: fewer, smaller cases (still
    // two token tiles, partial tiles and steps, and several blocks).
    let sizes: &[(usize, usize)] = if emulated {
        &[(130, 37), (200, 64), (258, 100)]
    } else {
        &[(258, 300), (46, 1030), (130, 37)]
    };
    let formats = [
        (Dtype::BF16, Scheme::None, 1),
        (Dtype::F16, Scheme::None, 1),
        (Dtype::BF16, Scheme::PerShard { broadcast: false }, 3),
        (Dtype::F8E4M3, Scheme::PerChannel, 1),
        (Dtype::F8E4M3, Scheme::PerShard { broadcast: true }, 2),
        (Dtype::F8E5M2, Scheme::PerChannel, 1),
        // 128-column blocks as wide as the 37-column rows only: the others
        // are refused (checked below).
        (Dtype::F8E4M3, Scheme::Block([128, 128]), 1),
    ];
    let tokens_list: &[usize] = if emulated {
        &[17, 131]
    } else {
        &[17, 131, 300]
    };
    let takes = |t: &testing::TestContext, ctx: &GpuContext, gw: &GpuWeight| {
        if gw.block_cols >= gw.cols {
            return true;
        }
        let cols = gw.cols;
        let y = ctx.storage("y", 4).unwrap();
        let x = ctx.storage("x", (cols * 4) as u64).unwrap();
        let args = contiguous(&x, &y, 1, cols, 1);
        let refused = || {
            matches!(
                matmul_with(ctx, gw, &args, Epilogue::Store, path),
                Err(KernelError::Unsupported { .. })
            )
        };
        assert!(
            if emulated {
                coop_fast::emulation::emulate(refused)
            } else {
                refused()
            },
            "{t_name}: block-scaled weight not refused",
            t_name = t.name
        );
        false
    };
    // A scratch below one tile: blocks of one 128-token tile.
    let scratch = |ctx: &mut GpuContext, blocked: bool| {
        ctx.tuning.coop_fast_scratch = if blocked { 1 } else { coop_fast::SCRATCH_CAP };
    };
    let least = if emulated { 30 } else { 80 };
    let loops = GemmLoops {
        seed,
        precision,
        emulated,
        formats: &formats,
        sizes,
        tokens_list,
        least,
    };
    loops.run(takes, scratch, check_case);
}

/// The contexts of the GEMM tests: on the scalar emulation (`emulated`) one
/// context with f16 (it compiles slowly on a CPU adapter: trusted modules
/// where selected, one pipeline per format and variant), else every context
/// with cooperative matrices.
fn gemm_contexts(emulated: bool) -> Vec<&'static testing::TestContext> {
    if !emulated {
        return testing::contexts_with(&[Feature::CooperativeMatrix]);
    }
    let contexts = testing::contexts_with(&[Feature::F16]);
    let pick = contexts
        .iter()
        .position(|t| t.variant == testing::Variant::Trusted)
        .unwrap_or(0);
    contexts.into_iter().skip(pick).take(1).collect()
}

/// The GEMM tests' loops (`coop_f16`'s too): on each of [`gemm_contexts`] a
/// context of `precision` and an `Rng` of `seed`; per format `(dtype,
/// scheme, shards)` and size `(rows, cols)` a [`test_weight`]; then, where
/// the weight is taken, with the scratch at its default and below one tile
/// (`blocked`), every token count (blocked: the largest only: blocks change
/// nothing below one token tile, and the GPU machine's test time) and
/// epilogue: more than `least` cases per context.
pub(crate) struct GemmLoops<'a> {
    pub seed: u64,
    pub precision: MatmulPrecision,
    pub emulated: bool,
    pub formats: &'a [(Dtype, Scheme, usize)],
    pub sizes: &'a [(usize, usize)],
    pub tokens_list: &'a [usize],
    pub least: usize,
}

impl GemmLoops<'_> {
    /// `takes` says whether a weight runs (checking a refusal itself),
    /// `scratch` sets the context's scratch for `blocked`, `check` checks a
    /// case.
    pub fn run(
        &self,
        takes: impl Fn(&testing::TestContext, &GpuContext, &GpuWeight) -> bool,
        scratch: impl Fn(&mut GpuContext, bool),
        check: impl Fn(&GpuContext, &GpuWeight, &[f32], &Case, &CaseData),
    ) {
        for t in gemm_contexts(self.emulated) {
            let mut rng = Rng::new(self.seed);
            let mut cases = 0;
            let mut ctx = context_with(t, self.precision);
            for &(dtype, scheme, shards) in self.formats {
                for &(rows, cols) in self.sizes {
                    let pw = test_weight(&mut rng, dtype, scheme, rows, cols, shards);
                    let wdq = qwgpu_loader::dequantize(&pw).unwrap();
                    let gw = GpuWeight::upload(&ctx, &pw).unwrap();
                    if !takes(t, &ctx, &gw) {
                        continue;
                    }
                    for blocked in [false, true] {
                        scratch(&mut ctx, blocked);
                        let last = self.tokens_list[self.tokens_list.len() - 1];
                        for &tokens in self.tokens_list.iter().filter(|&&t| !blocked || t == last) {
                            for epi in EPILOGUES {
                                let case = Case {
                                    seed: self.seed,
                                    tokens,
                                    epi,
                                    blocked,
                                    exact: self.precision == MatmulPrecision::Exact,
                                    emulated: self.emulated,
                                };
                                let data = CaseData::new(t, &ctx, &mut rng, &gw, &case);
                                check(&ctx, &gw, &wdq, &case, &data);
                                cases += 1;
                            }
                        }
                    }
                }
            }
            assert!(
                cases > self.least,
                "{t_name}: only {cases} cases ran",
                t_name = t.name
            );
        }
    }
}

/// One case of [`GemmLoops`].
pub(crate) struct Case {
    pub seed: u64,
    pub tokens: usize,
    pub epi: Epilogue,
    pub blocked: bool,
    /// Exact precision (reference on x itself), else fast (on the fast
    /// precision's rounded x).
    pub exact: bool,
    /// On the emulated cooperative-matrix operations.
    pub emulated: bool,
}

/// A case's inputs: x's rows (of mixed magnitudes) and where they lie, y's
/// initial contents, and what a failure names.
pub(crate) struct CaseData {
    pub what: String,
    pub s: Strided,
    pub width: usize,
    pub xrows: Vec<Vec<f32>>,
    pub init: Vec<f32>,
    pub x: qwgpu_kernels::wgpu::Buffer,
}

impl CaseData {
    fn new(
        t: &testing::TestContext,
        ctx: &GpuContext,
        rng: &mut Rng,
        gw: &GpuWeight,
        case: &Case,
    ) -> Self {
        let Case {
            seed,
            tokens,
            epi,
            blocked,
            exact,
            emulated,
        } = *case;
        let (rows, cols) = (gw.rows, gw.cols);
        let width = if epi == Epilogue::SwiGlu {
            rows / 2
        } else {
            rows
        };
        let s = Strided::random(rng, tokens, cols, width);
        let xrows: Vec<Vec<f32>> = (0..tokens).map(|i| wide_row(rng, cols, i % 5)).collect();
        let init = s.y_init(rng, width, epi);
        let x = ctx.upload("x", &s.x_buf(&xrows)).unwrap();
        let what = format!(
            "{t_name} seed {seed:#x} {format:?} block_cols {bc} [{rows}, {cols}] T={tokens} \
             {epi:?} {s} blocked {blocked} exact {exact} emulated {emulated}",
            t_name = t.name,
            format = gw.format,
            bc = gw.block_cols
        );
        Self {
            what,
            s,
            width,
            xrows,
            init,
            x,
        }
    }
}

/// This kernel's path in exact (`CoopFastExact`) or fast precision.
fn path_of(exact: bool) -> MatmulPath {
    if exact {
        MatmulPath::CoopFastExact
    } else {
        MatmulPath::CoopFast
    }
}

fn check_case(ctx: &GpuContext, gw: &GpuWeight, wdq: &[f32], case: &Case, data: &CaseData) {
    let Case {
        epi,
        exact,
        emulated,
        ..
    } = *case;
    let path = path_of(exact);
    let (rows, cols) = (gw.rows, gw.cols);
    let (what, s, x) = (&data.what, &data.s, &data.x);
    let (width, xrows, init) = (data.width, &data.xrows, &data.init);
    let ylen = init.len();
    let go = |path: MatmulPath| -> Vec<f32> {
        let y = ctx.upload("y", init).unwrap();
        let d = matmul_with(ctx, gw, &s.args(x, &y), epi, path)
            .unwrap_or_else(|e| panic!("{what} {path:?}: {e}"));
        run(ctx, &d);
        ctx.read_f32(&y, 0, ylen).unwrap()
    };
    let fast = if emulated {
        coop_fast::emulation::emulate(|| go(path))
    } else {
        go(path)
    };
    let scalar = go(MatmulPath::Scalar);
    let mut want = vec![None; ylen];
    let mut vs_scalar = vec![None; ylen];
    // Σ|w| per weight row.
    let w_abs: Vec<f64> = wdq
        .chunks(cols)
        .map(|r| r.iter().map(|w| w.abs() as f64).sum())
        .collect();
    for (ti, xr) in xrows.iter().enumerate() {
        let xf = if path == MatmulPath::CoopFast {
            fast_round_row(xr)
        } else {
            xr.clone()
        };
        // BF16 values below f16's normal range (2^-14) are staged as f16
        // subnormals: up to 2^-25 off each, times the row's scale (< 2).
        let e_w = if gw.format == WeightFormat::BF16 {
            2f64.powi(-24) * xf.iter().map(|v| v.abs() as f64).sum::<f64>()
        } else {
            0.0
        };
        // Exact variant: a lo part below 2^-14 (x·s small beside the row's
        // largest, which s brings to [2^14, 2^15)) is an f16 subnormal, up
        // to 2^-25 / s off; times |w| (FP8 E5M2 weights reach 57344).
        let inv_s = 2f64.powi(-scale_exp(row_max(xr)));
        let e_x = |r: usize| -> f64 {
            if path == MatmulPath::CoopFastExact {
                2f64.powi(-25) * inv_s * w_abs[r]
            } else {
                0.0
            }
        };
        for c in 0..width {
            let (mut w, mut tol) =
                support::expected(&xf, wdq, cols, rows, c, epi == Epilogue::SwiGlu, REL);
            let e = e_w
                + if epi == Epilogue::SwiGlu {
                    e_x(c).max(e_x(rows / 2 + c))
                } else {
                    e_x(c)
                };
            tol += if epi == Epilogue::SwiGlu && e > 0.0 {
                let (g, _) = support::dot_ref(&xf, &wdq[c * cols..][..cols]);
                let (u, _) = support::dot_ref(&xf, &wdq[(rows / 2 + c) * cols..][..cols]);
                let sil = qwgpu_ops::activation::silu(g as f32) as f64;
                (1.1 * u.abs() + sil.abs() + e) * e
            } else {
                e
            };
            let i = s.y_index(ti, c);
            if epi == Epilogue::Accumulate {
                w += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((w, tol));
            vs_scalar[i] = Some((scalar[i] as f64, 2.0 * tol));
        }
    }
    support::check(&fast, init, &want, &format!("{what} vs reference"));
    support::check(&fast, init, &vs_scalar, &format!("{what} vs the tile GEMM"));
}

/// Auto with cooperative matrices runs this kernel above 16 tokens (outside
/// the skinny tier, switched off here; the same bits as forcing it) where it
/// takes the weight: the fast variant in a
/// fast-precision context, the split variant in an exact one; with the
/// variant's switch off (`Tuning::coop_fast_gemm`, `Tuning::coop_fast_exact`)
/// `mm_coop`'s variant of that precision. The kernels differ in their bits.
#[test]
fn auto_takes_the_fast_kernel_behind_its_switches() {
    let (rows, cols, tokens) = (40usize, 72usize, 33usize);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let mut rng = Rng::new(0xfa57_0002);
        let pw = support::packed_one_shard(&mut rng, Dtype::BF16, rows, cols, Scheme::None);
        let xv = rng.normal_vec(tokens * cols);
        let go = |ctx: &GpuContext, path: MatmulPath| -> Vec<f32> {
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let x = ctx.upload("x", &xv).unwrap();
            let y = ctx.upload("y", &vec![f32::NAN; tokens * rows]).unwrap();
            let args = contiguous(&x, &y, tokens, cols, rows);
            run(
                ctx,
                &matmul_with(ctx, &gw, &args, Epilogue::Store, path).unwrap(),
            );
            ctx.read_f32(&y, 0, tokens * rows).unwrap()
        };
        let labels = |ctx: &GpuContext, path: MatmulPath| -> Vec<&'static str> {
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let x = ctx.upload("x", &xv).unwrap();
            let y = ctx.storage("y", (4 * tokens * rows) as u64).unwrap();
            let args = contiguous(&x, &y, tokens, cols, rows);
            matmul_with(ctx, &gw, &args, Epilogue::Store, path)
                .unwrap()
                .iter()
                .map(|d| d.label)
                .collect()
        };
        let mut forced = Vec::new();
        for (precision, path) in [
            (MatmulPrecision::Fast, MatmulPath::CoopFast),
            (MatmulPrecision::Exact, MatmulPath::CoopFastExact),
        ] {
            // On (off by default; QWGPU_COOP_FAST=1 turns them on). The
            // skinny tier off: an adapter's tuning may give it these 33
            // tokens (the H100's takes 17..=64).
            let mut ctx = context_with(t, precision);
            ctx.tuning.skinny = false;
            ctx.tuning.coop_fast_gemm = true;
            ctx.tuning.coop_fast_exact = true;
            let auto_on = go(&ctx, MatmulPath::Auto);
            let new = go(&ctx, path);
            let old = go(&ctx, MatmulPath::Coop);
            assert!(
                same(&auto_on, &new),
                "{t_name}: Auto is not {path:?}",
                t_name = t.name
            );
            // Bits alone cannot tell the kernels apart (on the H100 they
            // agree bit for bit here): the launches name them.
            assert_eq!(
                labels(&ctx, MatmulPath::Auto),
                labels(&ctx, path),
                "{t_name}: Auto does not launch {path:?}'s kernels",
                t_name = t.name
            );
            assert_ne!(
                labels(&ctx, path),
                labels(&ctx, MatmulPath::Coop),
                "{t_name}: {path:?} launches mm_coop",
                t_name = t.name
            );
            ctx.tuning.coop_fast_gemm = false;
            ctx.tuning.coop_fast_exact = false;
            let auto_off = go(&ctx, MatmulPath::Auto);
            assert!(
                same(&auto_off, &old),
                "{t_name}: {precision:?} with the switch off is not mm_coop",
                t_name = t.name
            );
            assert_eq!(
                labels(&ctx, MatmulPath::Auto),
                labels(&ctx, MatmulPath::Coop),
                "{t_name}: {precision:?} with the switch off does not launch mm_coop",
                t_name = t.name
            );
            forced.push(new);
        }
        assert!(
            !same(&forced[0], &forced[1]),
            "{t_name}: the fast and split variants gave the same bits",
            t_name = t.name
        );
    }
}

/// The GEMM's module translates to SPIR-V (naga, on the CPU: what the GPU
/// machine's driver is given) for every stored format it takes and every
/// workgroup size it can get (4 subgroups of 16, 32 or 64), in the shapes the
/// host sets; the pre-pass for its workgroup size. The registry test covers
/// the boolean switches; this one the integer overrides.
#[test]
fn coop_fast_translates_to_spirv_for_every_format() {
    let mut translated = 0;
    for (label, configs) in [
        (
            "matmul_coop_fast",
            [1.0, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|&f| [64.0, 128.0, 256.0].map(|wg| vec![("FORMAT", f), ("WG", wg)]))
                .collect::<Vec<_>>(),
        ),
        (
            "matmul_coop_split",
            [1.0, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|&f| [64.0, 128.0, 256.0].map(|wg| vec![("FORMAT", f), ("WG", wg)]))
                .collect::<Vec<_>>(),
        ),
        (
            "matmul_fast_x",
            vec![
                vec![("WG", 128.0), ("SPLIT", 0.0)],
                vec![("WG", 128.0), ("SPLIT", 1.0)],
            ],
        ),
    ] {
        let module = Translator::coop(spirv::spec(label));
        for config in configs {
            module.translate(&config);
            translated += 1;
        }
    }
    assert_eq!(translated, 26);
}

/// TFLOP/s of the fast kernel's two variants (pre-pass included; its share
/// printed) beside `mm_coop`'s variant of the same precision, on 9B prefill
/// shapes, trusted modules, GPU timestamps; the largest difference of each
/// pair relative to max |y| (both of a pair round x the same way: ~1e-6
/// expected) must stay below 1e-4.
#[test]
#[ignore = "benchmark: run with -- --ignored --exact matmul_coop_fast::coop_fast_speed"]
fn coop_fast_speed() {
    let (fast, exact) = coop_contexts("coop_fast_speed");
    // (rows, cols, tokens, epilogue, format, scales)
    let shapes = [
        (
            12288usize,
            4096usize,
            4096usize,
            Epilogue::Store,
            Dtype::BF16,
            Scheme::None,
        ),
        (4096, 4096, 4096, Epilogue::Store, Dtype::BF16, Scheme::None),
        (
            24576,
            4096,
            512,
            Epilogue::SwiGlu,
            Dtype::BF16,
            Scheme::None,
        ),
        (
            4096,
            12288,
            512,
            Epilogue::Accumulate,
            Dtype::BF16,
            Scheme::None,
        ),
        (12288, 4096, 512, Epilogue::Store, Dtype::BF16, Scheme::None),
        // The model's 512-token prefill chunks: N = 4096 outputs make 128
        // workgroups (o_proj; down_proj above), fewer than the H100's SMs.
        (4096, 4096, 512, Epilogue::Store, Dtype::BF16, Scheme::None),
        (
            4096,
            4096,
            4096,
            Epilogue::Store,
            Dtype::F8E4M3,
            Scheme::PerChannel,
        ),
        // The first shape again: the order must not matter.
        (
            12288,
            4096,
            4096,
            Epilogue::Store,
            Dtype::BF16,
            Scheme::None,
        ),
    ];
    let variants = [
        ("mm_coop fast", &fast, MatmulPath::Coop),
        ("coop_fast", &fast, MatmulPath::CoopFast),
        ("mm_coop exact", &exact, MatmulPath::Coop),
        ("coop_fast exact", &exact, MatmulPath::CoopFastExact),
    ];
    let mut rng = Rng::new(0xfa57_0003);
    for (rows, cols, t, epi, dtype, scheme) in shapes {
        let pw = support::packed_one_shard(&mut rng, dtype, rows, cols, scheme);
        let (xv, width, flop) = shape_inputs(&mut rng, (rows, cols, t), epi);
        let mut outs = Vec::new();
        for (name, ctx, path) in variants {
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let io = Dense::new(ctx, &xv, t, cols, width);
            let d = matmul_with(ctx, &gw, &io.args(), epi, path).unwrap();
            outs.push(io.first_rows(ctx, &d, t));
            let (ns, prep) = best_ns(ctx, &d, "matmul_fast_x");
            eprintln!(
                "BENCH {adapter} {name} T={t} W=[{rows},{cols}] {epi:?} {dtype:?}: {us:.1} µs = \
                 {tflops:.1} TFLOP/s (pre-pass {prep_us:.1} µs)",
                adapter = ctx.info.name,
                us = ns / 1e3,
                tflops = flop / ns / 1e3,
                prep_us = prep / 1e3
            );
        }
        for (a, b) in [(0, 1), (2, 3)] {
            let rel = max_rel_diff(&outs[b], &outs[a]);
            let (na, nb) = (variants[a].0, variants[b].0);
            eprintln!("BENCH   {nb} vs {na}: max |Δ| / max |y| = {rel:.2e}");
            assert!(
                rel < 1e-4,
                "W=[{rows},{cols}] T={t} {epi:?} {dtype:?}: {nb} differs from {na} by {rel:e} of \
                 max |y|"
            );
        }
    }
}
