//! The f16-scratch tensor-core GEMM (`matmul::coop_f16`: the W pre-pass
//! `shaders/matmul_w16.wgsl`, `coop_fast`'s x pre-pass, the GEMM
//! `shaders/matmul_coop_f16.wgsl`).
//!
//! - The W pre-pass needs nothing optional (it runs on lavapipe): its f16
//!   words and row multipliers must equal, bit for bit, a CPU conversion
//!   written out here from the loader's scale schemes (`half`'s nearest-even
//!   f32 → f16, the power-of-two rule), for every format and scheme, awkward
//!   shapes, fused shards, SwiGLU's interleaved tiles and sub-ranges of
//!   outputs; every scratch word (padding included) is written.
//! - The GEMM needs cooperative matrices ([`Feature::CooperativeMatrix`]: a
//!   recorded skip on lavapipe, a failure on a hardware adapter without
//!   them). Reference: the f64 product of the fast precision's rounded x
//!   (`f16(x·s)/s`, `coop_fast`'s tests' helper; exact precision: x itself)
//!   and the dequantized weight, at `1e-5 · Σ|x'·w|` per output (f32 sums),
//!   plus `2⁻²⁸ · max_c|w_r| · Σ|x'|` and `2⁻²⁸ · max|x| · Σ|w_r|` (an f16
//!   subnormal of the scaled W or x rows, values below 2⁻²⁸ of their row's
//!   largest, is at most 2⁻¹⁴ off even where the tensor cores flush it), for
//!   FP8 with 128 × 128 blocks (fast only) `2⁻¹¹ · Σ|x'·w|` (q·scale rounded
//!   to 11 significant bits), exact precision's lo-part subnormals as in
//!   `coop_fast`'s tests; SwiGLU propagates each half's error. Everything
//!   outside the written region keeps its bits (NaN poison for Store).
//! - The same cases, smaller, run with the cooperative-matrix operations
//!   emulated in scalar code (`coop_f16::emulation`) on every context with
//!   f16, lavapipe included: indexing, scratch layouts, blocks, epilogues.
//! - `coop_f16_speed` (`#[ignore]`d) is the benchmark:
//!   `-- --include-ignored --exact matmul_coop_f16::coop_f16_speed --nocapture`.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::coop_peak::{peak_gemm, Feed, Tiling};
use qwgpu_kernels::matmul::{coop_f16, coop_fast, matmul_with, Epilogue, MatmulPath};
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{GpuContext, GpuWeight, KernelError, MatmulPrecision};
use qwgpu_loader::{PackedWeight, ScaleScheme};
use qwgpu_ops::rng::Rng;

use crate::matmul_coop_fast::{
    context_with, fast_round_row, row_max, run, scale_exp, test_weight, Case, CaseData, GemmLoops,
};

mod support;
use support::bench::{best_ns, coop_contexts, max_rel_diff, shape_inputs, Dense};
use support::matmul_case::contiguous;
use support::spirv::{self, Translator};
use support::Scheme;

/// f32 accumulation only (x' and w exact in f16).
const REL: f64 = 1e-5;

/// Scale of element `(r, c)` of `pw`, read from the loader's scheme.
fn scale_of(pw: &PackedWeight, r: usize, c: usize) -> f32 {
    let shard = || {
        pw.shards
            .iter()
            .position(|s| s.row_offset <= r && r < s.row_offset + s.rows)
            .unwrap()
    };
    match &pw.scale {
        ScaleScheme::None => 1.0,
        ScaleScheme::PerShard { scales } => scales[shard()],
        ScaleScheme::PerChannel { scales } => scales[r],
        ScaleScheme::Block { block, segments } => {
            let s = segments
                .iter()
                .find(|s| s.row_offset <= r && r < s.row_offset + s.rows)
                .unwrap();
            s.scales[((r - s.row_offset) / block[0]) * s.grid[1] + c / block[1]]
        }
        ScaleScheme::Int4(_) => panic!("no 4-bit weights here"),
    }
}

/// Whether `pw`'s scale is constant along each row.
fn row_constant(pw: &PackedWeight) -> bool {
    match &pw.scale {
        ScaleScheme::Block { block, .. } => pw.cols <= block[1],
        _ => true,
    }
}

/// The CPU conversion of weight row `r` (`raw`: its stored values decoded,
/// unscaled): f16 words padded to `kp` halves and the multiplier.
fn w16_row(pw: &PackedWeight, raw: &[f32], r: usize, kp: usize) -> (Vec<u32>, f32) {
    let cols = pw.cols;
    let rc = row_constant(pw);
    let v: Vec<f32> = (0..cols)
        .map(|c| {
            let q = raw[r * cols + c];
            if rc {
                q
            } else {
                q * scale_of(pw, r, c)
            }
        })
        .collect();
    let e = scale_exp(row_max(&v));
    let sc = 2f32.powi(e);
    let half = |c: usize| -> u32 {
        v.get(c)
            .map_or(0, |&x| u32::from(half::f16::from_f32(x * sc).to_bits()))
    };
    let words = (0..kp / 2)
        .map(|q| half(2 * q) | (half(2 * q + 1) << 16))
        .collect();
    let m = if rc {
        scale_of(pw, r, 0) * 2f32.powi(-e)
    } else {
        2f32.powi(-e)
    };
    (words, m)
}

/// Weight row feeding scratch row `s` of a launch of outputs `[n0, n_end)`
/// (`None`: padding), the tile layout the module doc of `matmul_w16.wgsl`
/// states.
fn scratch_source(s: usize, n0: usize, n_end: usize, swiglu: bool, half: usize) -> Option<usize> {
    if swiglu {
        let lc = s % 128;
        let n = n0 + (s / 128) * 64 + (lc / 64) * 32 + lc % 32;
        (n < n_end).then_some(if lc % 64 >= 32 { half + n } else { n })
    } else {
        (n0 + s < n_end).then_some(n0 + s)
    }
}

/// The W pre-pass on every context (no optional feature) against the CPU
/// conversion, bit for bit: every format and scale scheme it takes, rows 1,
/// 127, 129, 258, 300 × columns 1, 31, 33, 300 (BF16; the other formats a
/// selection), fused shards, SwiGLU's tiles and output sub-ranges. The
/// scratch starts poisoned: every word (padding included) must be written,
/// padding rows are zeros with multiplier 0.
#[test]
fn w16_prepass_matches_cpu_conversion() {
    let seed = testing::seed(0xf16_0001);
    let mut rng = Rng::new(seed);
    let all_shapes: Vec<(usize, usize)> = [1usize, 127, 129, 258, 300]
        .iter()
        .flat_map(|&r| [1usize, 31, 33, 300].map(|c| (r, c)))
        .collect();
    let some_shapes = [(127usize, 33usize), (258, 300), (300, 1), (2, 31)];
    // (format, scales, shards, (rows, cols) shapes)
    type Format<'a> = (Dtype, Scheme, usize, &'a [(usize, usize)]);
    let formats: [Format<'_>; 8] = [
        (Dtype::BF16, Scheme::None, 1, &all_shapes),
        (Dtype::F16, Scheme::None, 1, &some_shapes),
        (
            Dtype::BF16,
            Scheme::PerShard { broadcast: false },
            3,
            &some_shapes,
        ),
        (Dtype::F8E4M3, Scheme::PerChannel, 1, &some_shapes),
        (
            Dtype::F8E4M3,
            Scheme::PerShard { broadcast: true },
            2,
            &some_shapes,
        ),
        (Dtype::F8E5M2, Scheme::PerChannel, 1, &some_shapes),
        (
            Dtype::F8E5M2,
            Scheme::PerShard { broadcast: true },
            3,
            &some_shapes,
        ),
        (Dtype::F8E4M3, Scheme::Block([128, 128]), 2, &some_shapes),
    ];
    let mut checked = 0;
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for &(dtype, scheme, shards, shapes) in &formats {
            for &(rows, cols) in shapes {
                let pw = test_weight(&mut rng, dtype, scheme, rows, cols, shards);
                // The stored values decoded, unscaled (FP8 needs a scale: 1 per row).
                let mut unscaled = pw.clone();
                unscaled.scale = ScaleScheme::PerChannel {
                    scales: vec![1.0; rows],
                };
                let raw = qwgpu_loader::dequantize(&unscaled).unwrap();
                let gw = GpuWeight::upload(ctx, &pw).unwrap();
                let kp = cols.div_ceil(32) * 32;
                let words = kp / 2;
                // (epilogue, outputs n0..n_end)
                let mut launches = vec![(Epilogue::Store, 0, rows)];
                if rows > 4 {
                    launches.push((Epilogue::Store, 3, rows - 1));
                }
                if rows % 2 == 0 {
                    launches.push((Epilogue::SwiGlu, 0, rows / 2));
                    if rows > 8 {
                        launches.push((Epilogue::SwiGlu, 1, rows / 2 - 2));
                    }
                }
                for (epi, n0, n_end) in launches {
                    let swiglu = epi == Epilogue::SwiGlu;
                    let srows = coop_f16::w_rows((n_end - n0) as u32, swiglu) as usize;
                    let wh = ctx
                        .upload("wh", &vec![0xdead_beefu32; srows * words])
                        .unwrap();
                    let wmul = ctx.upload("wmul", &vec![f32::NAN; srows]).unwrap();
                    let d = coop_f16::prepare_w(ctx, &gw, epi, n0 as u32, n_end as u32, &wh, &wmul)
                        .unwrap();
                    ctx.run("w16", &[&d]).unwrap();
                    let got = ctx.read_u32(&wh, 0, srows * words).unwrap();
                    let got_m = ctx.read_f32(&wmul, 0, srows).unwrap();
                    let what = format!(
                        "{t_name} seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}] {epi:?} \
                         outputs {n0}..{n_end}",
                        t_name = t.name
                    );
                    for s in 0..srows {
                        let (want, want_m) = match scratch_source(s, n0, n_end, swiglu, rows / 2) {
                            Some(r) => w16_row(&pw, &raw, r, kp),
                            None => (vec![0; words], 0.0),
                        };
                        let g = &got[s * words..][..words];
                        if let Some(q) = (0..words).find(|&q| g[q] != want[q]) {
                            panic!(
                                "{what}: scratch row {s} word {q}: got {got_q:#010x}, want \
                                 {want_q:#010x}",
                                got_q = g[q],
                                want_q = want[q]
                            );
                        }
                        assert_eq!(
                            got_m[s].to_bits(),
                            want_m.to_bits(),
                            "{what}: scratch row {s}: multiplier {got_s:e}, want {want_m:e}",
                            got_s = got_m[s]
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} conversions checked");
}

/// The conversion's contract on exact formats, independent of how the CPU
/// reference above forms it: f16 row × multiplier is the dequantized weight
/// (as the loader computes it, q · scale in f32), and each row's largest
/// |f16| lies in [2¹⁴, 2¹⁵).
#[test]
fn w16_rows_times_multipliers_are_the_weight() {
    let mut rng = Rng::new(testing::seed(0xf16_0002));
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (dtype, scheme) in [
            (Dtype::BF16, Scheme::PerShard { broadcast: false }),
            (Dtype::F8E4M3, Scheme::PerChannel),
            (Dtype::F8E5M2, Scheme::PerShard { broadcast: true }),
        ] {
            let (rows, cols) = (129usize, 70usize);
            let pw = test_weight(&mut rng, dtype, scheme, rows, cols, 2);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let kp = 96usize;
            let srows = coop_f16::w_rows(rows as u32, false) as usize;
            let wh = ctx.storage("wh", (srows * kp * 2) as u64).unwrap();
            let wmul = ctx.storage("wmul", (srows * 4) as u64).unwrap();
            let d =
                coop_f16::prepare_w(ctx, &gw, Epilogue::Store, 0, rows as u32, &wh, &wmul).unwrap();
            ctx.run("w16", &[&d]).unwrap();
            let h = ctx.read_u32(&wh, 0, srows * kp / 2).unwrap();
            let m = ctx.read_f32(&wmul, 0, srows).unwrap();
            for r in 0..rows {
                let halves: Vec<f64> = (0..cols)
                    .map(|c| {
                        let word = h[r * kp / 2 + c / 2] >> (16 * (c % 2));
                        half::f16::from_bits(word as u16).to_f64()
                    })
                    .collect();
                let mx = halves.iter().fold(0f64, |a, v| a.max(v.abs()));
                assert!(
                    (16384.0..32768.0).contains(&mx),
                    "{t_name} {dtype:?} row {r}: largest |f16| {mx}",
                    t_name = t.name
                );
                for c in 0..cols {
                    let got = (halves[c] * m[r] as f64) as f32;
                    assert_eq!(
                        got,
                        wdq[r * cols + c],
                        "{t_name} {dtype:?} ({r}, {c})",
                        t_name = t.name
                    );
                }
            }
        }
    }
}

/// Without cooperative matrices the forced path is a typed error; block
/// scales are refused in exact precision wherever.
#[test]
fn coop_f16_is_unsupported_where_it_cannot_run() {
    for t in testing::contexts() {
        let exact = context_with(t, MatmulPrecision::Exact);
        let mut rng = Rng::new(3);
        let cases = [
            (
                Dtype::BF16,
                Scheme::None,
                t.missing(&[Feature::CooperativeMatrix]).is_some(),
            ),
            (Dtype::F8E4M3, Scheme::Block([128, 128]), true),
        ];
        for (dtype, scheme, refused) in cases {
            let pw = support::packed_one_shard(&mut rng, dtype, 8, 200, scheme);
            let gw = GpuWeight::upload(&exact, &pw).unwrap();
            let x = exact.upload("x", &vec![1f32; 200 * 20]).unwrap();
            let y = exact.storage("y", 8 * 20 * 4).unwrap();
            let args = contiguous(&x, &y, 20, 200, 8);
            let got = matmul_with(&exact, &gw, &args, Epilogue::Store, MatmulPath::CoopF16);
            assert_eq!(
                matches!(got, Err(KernelError::Unsupported { .. })),
                refused,
                "{t_name}: forced CoopF16 on {dtype:?} {scheme:?}: {ok:?}",
                t_name = t.name,
                ok = got.map(|d| d.len())
            );
        }
    }
}

/// The GEMM on the adapter's cooperative matrices, fast precision: every
/// format and scale scheme, every epilogue, awkward sizes (among them the
/// shapes `coop_fast` failed on the H100: `[258, 300]` T = 131 Store and
/// T = 300 SwiGLU), x and y at offsets and strides, once with the default
/// scratch and once with scratches of one tile (blocks of rows and tokens).
#[test]
fn coop_f16_matches_reference() {
    gemm_cases(testing::seed(0xf16_c0de), MatmulPrecision::Fast, false);
}

/// The exact variant (x as hi + lo, two products) on the same cases, against
/// the f64 product of x itself; block-scaled weights are refused.
#[test]
fn coop_f16_exact_matches_reference() {
    gemm_cases(testing::seed(0xf16_e8ac), MatmulPrecision::Exact, false);
}

/// Both variants with the cooperative-matrix operations emulated in scalar
/// code (`coop_f16::emulation`), on every context with f16 (lavapipe
/// included): fewer, smaller cases.
#[test]
fn coop_f16_emulated_matches_reference() {
    gemm_cases(testing::seed(0xf16_e4a1), MatmulPrecision::Fast, true);
    gemm_cases(testing::seed(0xf16_e4a2), MatmulPrecision::Exact, true);
}

/// The cases of the GEMM tests in `precision`; `emulated`: on the scalar
/// emulation (contexts with f16), else on the adapter's cooperative matrices.
fn gemm_cases(seed: u64, precision: MatmulPrecision, emulated: bool) {
    // (rows, cols)
    let sizes: &[(usize, usize)] = if emulated {
        &[(258, 100), (130, 37)]
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
        (Dtype::F8E4M3, Scheme::Block([128, 128]), 2),
    ];
    let formats: Vec<_> = if emulated {
        formats
            .into_iter()
            .filter(|f| {
                matches!(f.0, Dtype::BF16 | Dtype::F8E5M2) || matches!(f.1, Scheme::Block(_))
            })
            .collect()
    } else {
        formats.to_vec()
    };
    let tokens_list: &[usize] = if emulated {
        &[17, 131]
    } else {
        &[17, 131, 300]
    };
    let loops = GemmLoops {
        seed,
        precision,
        emulated,
        formats: &formats,
        sizes,
        tokens_list,
        least: if emulated { 20 } else { 60 },
    };
    // Block scales round in exact precision: not taken.
    let takes = |_: &testing::TestContext, _: &GpuContext, gw: &GpuWeight| {
        gw.block_cols >= gw.cols || precision != MatmulPrecision::Exact
    };
    // Scratches below one tile: blocks of one 128-token tile and of one
    // 128-row tile.
    let scratch = |ctx: &mut GpuContext, blocked: bool| {
        ctx.tuning.coop_fast_scratch = if blocked { 1 } else { coop_fast::SCRATCH_CAP };
        ctx.tuning.coop_f16_scratch = if blocked { 1 } else { coop_f16::W_SCRATCH_CAP };
    };
    loops.run(takes, scratch, check_case);
}

fn check_case(ctx: &GpuContext, gw: &GpuWeight, wdq: &[f32], case: &Case, data: &CaseData) {
    let Case {
        epi,
        exact,
        emulated,
        ..
    } = *case;
    let (rows, cols) = (gw.rows, gw.cols);
    let swiglu = epi == Epilogue::SwiGlu;
    let (what, s, x) = (&data.what, &data.s, &data.x);
    let (width, xrows, init) = (data.width, &data.xrows, &data.init);
    let ylen = init.len();
    let y = ctx.upload("y", init).unwrap();
    let args = s.args(x, &y);
    let go = || {
        let d = matmul_with(ctx, gw, &args, epi, MatmulPath::CoopF16)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            d.iter().any(|d| d.label.starts_with("matmul_coop_f16")),
            "{what}: no f16 GEMM launch"
        );
        run(ctx, &d);
    };
    if emulated {
        coop_f16::emulation::emulate(go);
    } else {
        go();
    }
    let got = ctx.read_f32(&y, 0, ylen).unwrap();
    let block_scaled = gw.block_cols < gw.cols;
    // Per weight row: Σ|w| and max |w|.
    let w_abs: Vec<f64> = wdq
        .chunks(cols)
        .map(|r| r.iter().map(|w| w.abs() as f64).sum())
        .collect();
    let w_max: Vec<f64> = wdq
        .chunks(cols)
        .map(|r| r.iter().fold(0f64, |m, w| m.max(w.abs() as f64)))
        .collect();
    let mut want = vec![None; ylen];
    for (ti, xr) in xrows.iter().enumerate() {
        let xf = if exact {
            xr.clone()
        } else {
            fast_round_row(xr)
        };
        let x_abs: f64 = xf.iter().map(|v| v.abs() as f64).sum();
        let x_max = row_max(xr) as f64;
        let inv_s = 2f64.powi(-scale_exp(row_max(xr)));
        // (x'·w_r, Σ|x'·w_r|) per weight row, where the terms below need them.
        let dots: Vec<(f64, f64)> = if swiglu || block_scaled {
            wdq.chunks(cols).map(|w| support::dot_ref(&xf, w)).collect()
        } else {
            Vec::new()
        };
        // Error of weight row r's products beyond REL (see the module doc).
        let extra = |r: usize| -> f64 {
            let sub = 2f64.powi(-28) * (w_max[r] * x_abs + x_max * w_abs[r]);
            let lo = if exact {
                2f64.powi(-25) * inv_s * w_abs[r]
            } else {
                0.0
            };
            let blk = if block_scaled {
                2f64.powi(-11) * dots[r].1
            } else {
                0.0
            };
            sub + lo + blk
        };
        for c in 0..width {
            let (mut w, mut tol) = support::expected(&xf, wdq, cols, rows, c, swiglu, REL);
            tol += if swiglu {
                let (g, u) = (dots[c].0, dots[rows / 2 + c].0);
                let sil = qwgpu_ops::activation::silu(g as f32) as f64;
                let (eg, eu) = (extra(c), extra(rows / 2 + c));
                1.1 * u.abs() * eg + (sil.abs() + eg) * eu
            } else {
                extra(c)
            };
            let i = s.y_index(ti, c);
            if epi == Epilogue::Accumulate {
                w += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((w, tol));
        }
    }
    support::check(&got, init, &want, &format!("{what} vs reference"));
}

/// Labels of the launches of one Store matmul of `tokens` tokens through `path`.
fn labels(
    ctx: &GpuContext,
    pw: &PackedWeight,
    tokens: usize,
    path: MatmulPath,
) -> Vec<&'static str> {
    let (rows, cols) = (pw.rows, pw.cols);
    let gw = GpuWeight::upload(ctx, pw).unwrap();
    let x = ctx.storage("x", (4 * tokens * cols) as u64).unwrap();
    let y = ctx.storage("y", (4 * tokens * rows) as u64).unwrap();
    let args = contiguous(&x, &y, tokens, cols, rows);
    matmul_with(ctx, &gw, &args, Epilogue::Store, path)
        .unwrap()
        .iter()
        .map(|d| d.label)
        .collect()
}

/// Auto runs the f16 GEMM from `Tuning::coop_f16_min_t` tokens with the
/// switch on, in both precisions, on the weights it takes;
/// below the threshold, with the switch off, and for block scales in exact
/// precision it runs what it ran before (the same launches as with the
/// switch off). On coop adapters and, emulated, on every context with f16.
#[test]
fn auto_takes_the_f16_kernel_above_its_threshold() {
    let mut ran = 0;
    for (t, emulated) in testing::contexts_with(&[Feature::F16])
        .into_iter()
        .map(|t| (t, t.missing(&[Feature::CooperativeMatrix]).is_some()))
    {
        let mut rng = Rng::new(0xf16_0003);
        let bf16 = support::packed_one_shard(&mut rng, Dtype::BF16, 40, 72, Scheme::None);
        let blocks =
            support::packed_one_shard(&mut rng, Dtype::F8E4M3, 40, 300, Scheme::Block([128, 128]));
        for precision in [MatmulPrecision::Fast, MatmulPrecision::Exact] {
            let mut ctx = context_with(t, precision);
            // The threshold with the switch on (its default unless
            // QWGPU_COOP_F16 says otherwise: tuning.rs tests that).
            ctx.tuning.coop_f16 = true;
            let min_t = ctx.tuning.coop_f16_min_t as usize;
            let check = |ctx: &GpuContext, pw: &PackedWeight, tokens: usize, want: bool| {
                let go = || {
                    (
                        labels(ctx, pw, tokens, MatmulPath::Auto),
                        labels(ctx, pw, tokens, MatmulPath::Scalar),
                    )
                };
                let (auto, scalar) = if emulated {
                    coop_f16::emulation::emulate(go)
                } else {
                    go()
                };
                let f16 = auto.iter().any(|l| l.starts_with("matmul_coop_f16"));
                assert_eq!(
                    f16,
                    want,
                    "{t_name} {precision:?} {format:?} T={tokens} switch {on}: {auto:?}",
                    t_name = t.name,
                    format = pw.dtype,
                    on = ctx.tuning.coop_f16
                );
                if !want && emulated {
                    // Without cooperative matrices the old path is the tile GEMM.
                    assert_eq!(auto, scalar, "{t_name}: not the old path", t_name = t.name);
                }
            };
            check(&ctx, &bf16, min_t, true);
            check(&ctx, &bf16, min_t + 77, true);
            check(&ctx, &bf16, min_t - 1, false);
            check(&ctx, &blocks, min_t, precision == MatmulPrecision::Fast);
            ctx.tuning.coop_f16 = false;
            check(&ctx, &bf16, min_t + 77, false);
            let old = labels(&ctx, &bf16, min_t + 77, MatmulPath::Auto);
            assert!(
                !old.iter().any(|l| l.starts_with("matmul_coop_f16")),
                "{t_name}: switch off",
                t_name = t.name
            );
            ran += 1;
        }
    }
    assert!(ran > 0 || testing::contexts_with(&[Feature::F16]).is_empty());
}

/// The modules translate to SPIR-V (naga, on the CPU: what the GPU machine's
/// driver is given) for every workgroup size the GEMM can get (4 subgroups of
/// 16, 32 or 64) and every stored format the W pre-pass takes.
#[test]
fn coop_f16_translates_to_spirv_for_every_override() {
    let mut translated = 0;
    for (label, configs) in [
        (
            "matmul_coop_f16",
            [64.0, 128.0, 256.0].map(|wg| vec![("WG", wg)]).to_vec(),
        ),
        (
            "matmul_coop_f16_split",
            [64.0, 128.0, 256.0].map(|wg| vec![("WG", wg)]).to_vec(),
        ),
        (
            "matmul_w16",
            [1.0, 2.0, 3.0, 4.0].map(|f| vec![("FORMAT", f)]).to_vec(),
        ),
    ] {
        let module = Translator::coop(spirv::spec(label));
        for config in configs {
            module.translate(&config);
            translated += 1;
        }
    }
    assert_eq!(translated, 10);
}

/// f16 bits of `v`.
fn f16_words(v: &[f32]) -> Vec<u16> {
    v.iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect()
}

/// TFLOP/s on the 9B prefill shapes (trusted modules, GPU timestamps, best
/// of 5): `coop_peak`'s plain f16 GEMM on the same shape (the ceiling),
/// `mm_coop` fast and exact, and this kernel fast and exact, each as the
/// GEMM alone and with both pre-passes; the W pre-pass's GB/s (weight bytes
/// read + f16 rows written). The largest difference of the f16 kernel from
/// `mm_coop` of the same precision relative to max |y| is printed.
#[test]
#[ignore = "benchmark: run with -- --include-ignored --exact matmul_coop_f16::coop_f16_speed --nocapture"]
fn coop_f16_speed() {
    let (fast, exact) = coop_contexts("coop_f16_speed");
    let adapter = fast.info.name.clone();
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
        (
            24576,
            4096,
            4096,
            Epilogue::SwiGlu,
            Dtype::BF16,
            Scheme::None,
        ),
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
            4096,
            Epilogue::Accumulate,
            Dtype::BF16,
            Scheme::None,
        ),
        (
            4096,
            4096,
            4096,
            Epilogue::Store,
            Dtype::F8E4M3,
            Scheme::Block([128, 128]),
        ),
    ];
    let mut rng = Rng::new(0xf16_0004);
    for (rows, cols, t, epi, dtype, scheme) in shapes {
        let pw = support::packed_one_shard(&mut rng, dtype, rows, cols, scheme);
        let (xv, width, flop) = shape_inputs(&mut rng, (rows, cols, t), epi);
        let shape = format!("T={t} W=[{rows},{cols}] {epi:?} {dtype:?}");
        // The ceiling: coop_peak's fastest tiling on the padded shape.
        let tiling = Tiling {
            feed: Feed::Vec4,
            sg_m: 2,
            sg_n: 2,
            ck: 32,
            lds: 40,
            nbuf: 1,
        };
        match tiling.unfit(&fast) {
            Some(why) => eprintln!("BENCH {adapter} coop_peak {shape}: {why}"),
            None => {
                let (m, n, k) = (t.div_ceil(128) * 128, rows.div_ceil(128) * 128, cols);
                // x's values, repeated: f16 operands of the padded shape.
                let fill = |len: usize| -> Vec<u16> {
                    f16_words(&(0..len).map(|i| xv[i % xv.len()]).collect::<Vec<_>>())
                };
                let xh = fast.upload("x f16", &fill(m * k)).unwrap();
                let wh = fast.upload("w f16", &fill(n * k)).unwrap();
                let y = fast.storage("y", (m * n * 4) as u64).unwrap();
                let d =
                    peak_gemm(&fast, &tiling, &xh, &wh, &y, m as u32, n as u32, k as u32).unwrap();
                let (ns, _) = best_ns(&fast, &[d], "");
                eprintln!(
                    "BENCH {adapter} coop_peak {shape}: {us:.1} µs = {tflops:.1} TFLOP/s",
                    us = ns / 1e3,
                    tflops = flop / ns / 1e3
                );
            }
        }
        let variants = [
            ("mm_coop fast", &fast, MatmulPath::Coop),
            ("coop_f16 fast", &fast, MatmulPath::CoopF16),
            ("mm_coop exact", &exact, MatmulPath::Coop),
            ("coop_f16 exact", &exact, MatmulPath::CoopF16),
        ];
        let mut outs: Vec<(&str, Vec<f32>)> = Vec::new();
        for (name, ctx, path) in variants {
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let io = Dense::new(ctx, &xv, t, cols, width);
            let d = match matmul_with(ctx, &gw, &io.args(), epi, path) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("BENCH {adapter} {name} {shape}: {e}");
                    continue;
                }
            };
            outs.push((name, io.first_rows(ctx, &d, t)));
            let (ns, _) = best_ns(ctx, &d, "");
            let gemm_label = if ctx.precision == MatmulPrecision::Exact {
                "matmul_coop_f16_split"
            } else {
                "matmul_coop_f16"
            };
            let (_, gemm) = best_ns(ctx, &d, gemm_label);
            let (_, xpre) = best_ns(ctx, &d, "matmul_fast_x");
            let (_, wpre) = best_ns(ctx, &d, "matmul_w16");
            let mut line = format!(
                "BENCH {adapter} {name} {shape}: {us:.1} µs = {tflops:.1} TFLOP/s",
                us = ns / 1e3,
                tflops = flop / ns / 1e3
            );
            if gemm > 0.0 {
                // W pre-pass traffic: the stored weight read, f16 rows written.
                let kp = cols.div_ceil(32) * 32;
                let bytes = (rows * cols * dtype.size() + rows * kp * 2) as f64;
                line += &format!(
                    " (GEMM alone {gus:.1} µs = {gtf:.1} TFLOP/s; x pre-pass {xus:.1} µs; W \
                     pre-pass {wus:.1} µs = {gbs:.0} GB/s)",
                    gus = gemm / 1e3,
                    gtf = flop / gemm / 1e3,
                    xus = xpre / 1e3,
                    wus = wpre / 1e3,
                    gbs = bytes / wpre
                );
            }
            eprintln!("{line}");
        }
        for pair in outs.chunks(2) {
            if let [(a, ya), (b, yb)] = pair {
                eprintln!(
                    "BENCH {adapter} {shape}: max |{a} - {b}| / max|y| = {rel:.2e}",
                    rel = max_rel_diff(yb, ya)
                );
            }
        }
    }
}
