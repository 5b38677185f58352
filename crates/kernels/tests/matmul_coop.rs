//! The cooperative-matrix (tensor core) GEMM against the CPU reference and
//! against the scalar tile GEMM. The tests declare that they need cooperative
//! matrices ([`testing::Feature::CooperativeMatrix`]): contexts without them
//! (lavapipe, the fallback column) are recorded as skipped for that feature
//! in the coverage table, and a hardware adapter without them fails.
//!
//! Tolerance (f16 inputs, f32 accumulation): per output
//! `|got − want| ≤ 2e-3 · Σ|xᵢ·wᵢ| + 1e-5 · |want|`. Rounding x and w to f16
//! costs at most 2⁻¹¹ relative each, so ≤ ~1e-3 · Σ|x·w| in the worst case;
//! 2e-3 leaves room for the f32 sums. SwiGLU propagates each half's error as
//! in tests/matmul.rs. Coop vs scalar: the sum of both tolerances. Everything
//! outside the written region keeps its bits (NaN poison for Store).
//!
//! `coop_vs_scalar_speed` (`#[ignore]`d; T = 4096 on a 4096² BF16 weight, GPU
//! timestamps, trusted modules in release builds) is a benchmark: run it with
//! `-- --ignored coop_vs_scalar_speed`.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul_with, Epilogue, MatmulArgs, MatmulPath};
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{wgpu, Dispatch, GpuContext, GpuWeight, KernelError, WeightFormat};

mod support;
use qwgpu_ops::rng::Rng;
use support::bench::{best_ns, max_rel_diff, shape_inputs, trusted, Dense};
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];
const REL: f64 = 2e-3;

use support::packed_one_shard as packed;

fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("matmul_coop test", &refs).unwrap();
}

/// Runs one matmul on `path` into a fresh copy of `init`, returns the whole y buffer.
#[allow(clippy::too_many_arguments)]
fn run_path(
    ctx: &GpuContext,
    gw: &GpuWeight,
    x: &wgpu::Buffer,
    x_off: usize,
    x_stride: usize,
    init: &[f32],
    y_off: usize,
    y_stride: usize,
    tokens: usize,
    epi: Epilogue,
    path: MatmulPath,
) -> Result<Vec<f32>, KernelError> {
    let y = ctx.upload("y", init)?;
    let args = MatmulArgs {
        x,
        x_offset: x_off as u32,
        x_stride: x_stride as u32,
        y: &y,
        y_offset: y_off as u32,
        y_stride: y_stride as u32,
        t: tokens as u32,
    };
    let d = matmul_with(ctx, gw, &args, epi, path)?;
    run(ctx, &d);
    ctx.read_f32(&y, 0, init.len())
}

/// Checks that `ctx`, which has cooperative matrices, runs the coop path for
/// `gw`: the kernel refusing an adapter with the feature is a failure.
fn assert_coop_runs(t: &testing::TestContext, ctx: &GpuContext, gw: &GpuWeight) {
    let x = ctx.upload("x", &vec![0f32; gw.cols]).unwrap();
    let y = ctx.upload("y", &vec![0f32; gw.rows]).unwrap();
    let args = MatmulArgs {
        x: &x,
        x_offset: 0,
        x_stride: gw.cols as u32,
        y: &y,
        y_offset: 0,
        y_stride: gw.rows as u32,
        t: 1,
    };
    if let Err(e) = matmul_with(ctx, gw, &args, Epilogue::Store, MatmulPath::Coop) {
        panic!(
            "{t_name}: the adapter has cooperative matrices, f16 and subgroups, yet the coop GEMM refuses `{gw_name}`: {e}",
            t_name = t.name,
            gw_name = gw.name
        );
    }
}

/// A context like `t`'s (same variant: checked or trusted modules) that runs
/// the plain f16 coop variant (`f16_matmul`).
fn f16_context(t: &testing::TestContext) -> GpuContext {
    GpuContext::new(&qwgpu_kernels::ContextOptions {
        f16_matmul: true,
        ..t.variant.options()
    })
    .unwrap()
}

/// Every case of `formats` × `sizes` × `tokens` × epilogues on the coop path of
/// `ctx` against the f64 reference (tolerance `rel(weight)` · Σ|x·w|, see
/// `support::expected`) and against the scalar GEMM (both tolerances). With
/// `wide_rows`, x rows are multiplied by factors from 1e-6 to 1e6 (beyond
/// f16's range: the exact variant's row scaling). With `scalar_rel`, the
/// comparison with the scalar GEMM uses that tolerance · Σ|x·w| instead (the
/// fast variant against the tile GEMM's emulation of its rounding). Returns
/// the number of cases.
#[allow(clippy::too_many_arguments)]
fn check_cases(
    t: &testing::TestContext,
    ctx: &GpuContext,
    seed: u64,
    formats: &[(Dtype, Scheme)],
    sizes: &[(usize, usize)],
    tokens_list: &[usize],
    rel: impl Fn(&GpuWeight) -> f64,
    wide_rows: bool,
    scalar_rel: Option<f64>,
) -> usize {
    let mut rng = Rng::new(seed);
    let mut cases = 0;
    for &(dtype, scheme) in formats {
        for &(rows, cols) in sizes {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            assert_coop_runs(t, ctx, &gw);
            for &tokens in tokens_list {
                for epi in EPILOGUES {
                    let width = if epi == Epilogue::SwiGlu {
                        rows / 2
                    } else {
                        rows
                    };
                    let x_off = (rng.uniform() * 5.0) as usize;
                    let x_stride = cols + (rng.uniform() * 3.0) as usize;
                    let y_off = (rng.uniform() * 5.0) as usize;
                    let y_stride = width + (rng.uniform() * 3.0) as usize;
                    // x: NaN outside its rows, to catch over-reads.
                    let mut xbuf = vec![f32::NAN; x_off + (tokens - 1) * x_stride + cols + 3];
                    let mut xrows = Vec::new();
                    for ti in 0..tokens {
                        let mut r = rng.normal_vec(cols);
                        if wide_rows {
                            let f = 10f32.powi((rng.uniform() * 13.0) as i32 - 6);
                            r.iter_mut().for_each(|v| *v *= f);
                        }
                        xbuf[x_off + ti * x_stride..][..cols].copy_from_slice(&r);
                        xrows.push(r);
                    }
                    let ylen = y_off + (tokens - 1) * y_stride + width + 2;
                    let init = if epi == Epilogue::Accumulate {
                        rng.normal_vec(ylen)
                    } else {
                        vec![f32::NAN; ylen]
                    };
                    let x = ctx.upload("x", &xbuf).unwrap();
                    let what = format!(
                        "{t_name} seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}] T={tokens} {epi:?} \
                         x_off {x_off} x_stride {x_stride} y_off {y_off} y_stride {y_stride} \
                         f16_matmul {ctx_f16_matmul}",
                        t_name = t.name,
                        ctx_f16_matmul = ctx.f16_matmul
                    );
                    let go = |path| {
                        run_path(
                            ctx, &gw, &x, x_off, x_stride, &init, y_off, y_stride, tokens, epi,
                            path,
                        )
                        .unwrap_or_else(|e| panic!("{what} {path:?}: {e}"))
                    };
                    let coop = go(MatmulPath::Coop);
                    let scalar = go(MatmulPath::Scalar);
                    let mut want = vec![None; ylen];
                    let mut vs_scalar = vec![None; ylen];
                    for (ti, xr) in xrows.iter().enumerate() {
                        for c in 0..width {
                            let (mut w, mut tol) = support::expected(
                                xr,
                                &wdq,
                                cols,
                                rows,
                                c,
                                epi == Epilogue::SwiGlu,
                                rel(&gw),
                            );
                            let i = y_off + ti * y_stride + c;
                            // Against the scalar GEMM: `scalar_rel` · Σ|x·w| where given.
                            let mut stol = scalar_rel.map(|r| tol / rel(&gw) * r);
                            if epi == Epilogue::Accumulate {
                                w += init[i] as f64;
                                tol += 1e-6 * init[i].abs() as f64;
                                stol = stol.map(|s| s + 1e-6 * init[i].abs() as f64);
                            }
                            want[i] = Some((w, tol));
                            // The scalar kernel's own error (f32, ~1e-6 of Σ|x·w|): 2× the tolerance.
                            vs_scalar[i] = Some((scalar[i] as f64, stol.unwrap_or(2.0 * tol)));
                        }
                    }
                    support::check(&coop, &init, &want, &format!("{what} coop vs reference"));
                    support::check(&coop, &init, &vs_scalar, &format!("{what} coop vs scalar"));
                    cases += 1;
                }
            }
        }
    }
    cases
}

/// The plain f16 variant (`f16_matmul`): f16 inputs, 2e-3 · Σ|x·w|.
#[test]
fn coop_f16_matches_reference_and_scalar_path() {
    let sizes = [(130usize, 200usize), (70, 520), (18, 36)];
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F32, Scheme::None),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let ctx = f16_context(t);
        let cases = check_cases(
            t,
            &ctx,
            0xc00b_0001,
            &formats,
            &sizes,
            &[17, 64, 130],
            |_| REL,
            false,
            None,
        );
        assert!(cases > 0, "{}: no plain coop case ran", t.name);
    }
}

/// The exact variant (default contexts): x split into two f16 halves after a
/// per-row power-of-two scale. Tolerance per output where W is exact in f16
/// (BF16, F16, E4M3 with scales constant along rows, applied in the epilogue:
/// what Auto takes) 1e-5 · Σ|x·w|; block scales narrower than the row (E4M3
/// times its scale rounded to f16, 2⁻¹¹ per weight) and F32 weights (rounded
/// to f16): 6e-4 · Σ|x·w|. x rows span 1e-6 .. 1e6 (past f16's 65504).
#[test]
fn coop_exact_matches_reference_tightly() {
    // cols 37: the E4M3 128-column blocks are as wide as the rows.
    let sizes = [(258usize, 300usize), (46, 1030), (130, 37)];
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F16, Scheme::None),
        (Dtype::BF16, Scheme::PerShard { broadcast: true }),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::F32, Scheme::None),
    ];
    let rel = |w: &GpuWeight| {
        let exact_in_f16 = matches!(
            w.format,
            WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3
        );
        if exact_in_f16 && w.block_cols >= w.cols {
            1e-5
        } else {
            6e-4
        }
    };
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let cases = check_cases(
            t,
            &t.ctx,
            0x5eed_e8ac,
            &formats,
            &sizes,
            &[19, 131, 300],
            rel,
            true,
            None,
        );
        assert!(cases > 0, "{}: no exact coop case ran", t.name);
    }
}

/// The fast variant (`MatmulPrecision::Fast`): x scaled per row by a power of
/// two and rounded to f16, one product. Against the f64 reference 2e-3 ·
/// Σ|x·w|; against the scalar tile GEMM of the same context, which emulates
/// that rounding (`FAST_X`: x, and block-scaled weights as f16(q·s)),
/// 1e-5 · Σ|x·w| (the two differ only in summation order). x rows span
/// 1e-6 .. 1e6.
#[test]
fn coop_fast_matches_the_tile_emulation() {
    let sizes = [(258usize, 300usize), (46, 1030), (130, 37)];
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
            precision: qwgpu_kernels::MatmulPrecision::Fast,
            ..t.variant.options()
        })
        .unwrap();
        let cases = check_cases(
            t,
            &ctx,
            0xfa57_c00b,
            &formats,
            &sizes,
            &[19, 131, 300],
            |_| REL,
            true,
            Some(1e-5),
        );
        assert!(cases > 0, "{}: no fast coop case ran", t.name);
    }
}

/// Above 64 tokens (17..=64 run the skinny tensor-core kernel where it takes
/// the weight: `matmul_coop_skinny.rs`) `Auto` takes the exact coop variant (the same bits as
/// forcing Coop) where the adapter has it and the weight is exact in f16 with
/// row-constant scales (BF16, E4M3 per channel), and the scalar GEMM's bits
/// for F32 weights, E4M3 with 16 × 32 blocks, and on adapters without the coop
/// path; a context that opts into f16 matmuls takes the plain coop variant for
/// every supported weight.
#[test]
fn auto_path_takes_exact_coop_where_supported() {
    let (rows, cols, tokens) = (40usize, 72usize, 65usize);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    // Auto's result and `other`'s on one random case.
    let run_both = |ctx: &GpuContext, dtype: Dtype, scheme: Scheme, other: MatmulPath| {
        let mut rng = Rng::new(0xc00b_0002);
        let pw = packed(&mut rng, dtype, rows, cols, scheme);
        let gw = GpuWeight::upload(ctx, &pw).unwrap();
        let x = ctx.upload("x", &rng.normal_vec(tokens * cols)).unwrap();
        let init = vec![f32::NAN; tokens * rows];
        let go = |path| {
            run_path(
                ctx,
                &gw,
                &x,
                0,
                cols,
                &init,
                0,
                rows,
                tokens,
                Epilogue::Store,
                path,
            )
        };
        (go(MatmulPath::Auto).unwrap(), go(other).unwrap())
    };
    // (format, scheme, whether Auto takes the exact coop variant where there is one)
    let cases = [
        (Dtype::F32, Scheme::None, false),
        (Dtype::F8E4M3, Scheme::Block([16, 32]), false),
        (Dtype::BF16, Scheme::None, true),
        (Dtype::F8E4M3, Scheme::PerChannel, true),
    ];
    // Every context runs this test: without cooperative matrices Auto must
    // take the scalar GEMM (the coop-only half is recorded by the tests above).
    for t in testing::contexts() {
        let coop = t.missing(&[Feature::CooperativeMatrix]).is_none();
        if coop {
            let probe = packed(&mut Rng::new(1), Dtype::BF16, 2, 4, Scheme::None);
            assert_coop_runs(t, &t.ctx, &GpuWeight::upload(&t.ctx, &probe).unwrap());
        }
        for (dtype, scheme, exact) in cases {
            // Exact precision on the fast kernel's split variant where its
            // switch is on (tests/matmul_coop_fast.rs).
            let other = if coop && exact && t.ctx.tuning.coop_fast_exact {
                MatmulPath::CoopFastExact
            } else if coop && exact {
                MatmulPath::Coop
            } else {
                MatmulPath::Scalar
            };
            let (auto, want) = run_both(&t.ctx, dtype, scheme, other);
            assert!(
                same(&auto, &want),
                "{t_name}: Auto differs from {other:?} for {dtype:?} {scheme:?} at T={tokens}",
                t_name = t.name
            );
        }
        if !coop {
            continue;
        }
        // Fast precision: Auto also takes the coop kernel for block-scaled E4M3.
        let fast = GpuContext::new(&qwgpu_kernels::ContextOptions {
            precision: qwgpu_kernels::MatmulPrecision::Fast,
            ..t.variant.options()
        })
        .unwrap();
        for (dtype, scheme, exact) in cases {
            // Row-scaled weights go to the fast kernel (tests/matmul_coop_fast.rs).
            let other = if exact && fast.tuning.coop_fast_gemm {
                MatmulPath::CoopFast
            } else if exact || dtype == Dtype::F8E4M3 {
                MatmulPath::Coop
            } else {
                MatmulPath::Scalar
            };
            let (auto, want) = run_both(&fast, dtype, scheme, other);
            assert!(
                same(&auto, &want),
                "{t_name}: with fast precision Auto differs from {other:?} for {dtype:?} {scheme:?} at T={tokens}",
                t_name = t.name
            );
        }
        let ctx = f16_context(t);
        for (dtype, scheme, _) in cases {
            let (auto, plain) = run_both(&ctx, dtype, scheme, MatmulPath::Coop);
            assert!(
                same(&auto, &plain),
                "{t_name}: with f16 matmuls Auto differs from Coop for {dtype:?} {scheme:?} at T={tokens}",
                t_name = t.name
            );
            // The plain variant really is another kernel than the exact one.
            if dtype == Dtype::BF16 {
                let (exact, _) = run_both(&t.ctx, dtype, scheme, MatmulPath::Scalar);
                assert!(
                    !same(&exact, &plain),
                    "{}: plain and exact coop gave the same bits",
                    t.name
                );
            }
        }
    }
}

qwgpu_kernels::shader!(BENCH_COOP, "matmul_coop.wgsl");
qwgpu_kernels::shader!(BENCH_COMMON, "matmul_common.wgsl");

/// A Store launch of `mm_coop` with explicit overrides (tuning variants the
/// library does not pick), bound as `matmul_with` binds it: one-piece weight,
/// x and y `[t, cols]` / `[t, rows]` dense. The params are `MmParams`' leading
/// fields in a zero-padded uniform (so fields appended later read 0).
fn variant(
    ctx: &GpuContext,
    gw: &GpuWeight,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    t: u32,
    overrides: &[(&'static str, u32)],
) -> Result<Dispatch, KernelError> {
    let wg = 8 * ctx.caps.subgroup_sizes.1;
    let mut key = qwgpu_kernels::PipelineKey::new(
        &[&BENCH_COOP, &qwgpu_kernels::shaders::NUMERIC, &BENCH_COMMON],
        "mm_coop",
    )
    .constant("WG", wg)
    .constant("FORMAT", gw.format as u32);
    for &(name, v) in overrides {
        key = key.constant(name, v);
    }
    let pipeline = ctx.pipeline(&key)?;
    let (rows, cols) = (gw.rows as u32, gw.cols as u32);
    let mut p = [0u32; 64];
    // rows, cols, stride4, block_cols, t, x_off, x_stride, x_div, y_off, y_stride,
    // n0, n_end, a_row0, a_rows, b_row0, b_rows, half, …, epi (22), x_aligned (23).
    let head = [
        rows,
        cols,
        (gw.stride_words / 4) as u32,
        gw.block_cols as u32,
        t,
        0,
        cols,
        1,
        0,
        rows,
        0,
        rows,
        0,
        rows,
        0,
        rows,
        rows / 2,
    ];
    p[..head.len()].copy_from_slice(&head);
    p[23] = u32::from(cols.is_multiple_of(4));
    let params = ctx.uniform("variant params", &p);
    let w = &gw.pieces[0].buffer;
    let bind = ctx.bind(
        &pipeline,
        "coop variant",
        &[
            w.as_entire_binding(),
            w.as_entire_binding(),
            gw.meta.as_entire_binding(),
            x.as_entire_binding(),
            y.as_entire_binding(),
            params.as_entire_binding(),
            x.as_entire_binding(),
        ],
    );
    Ok(Dispatch {
        label: "coop variant",
        pipeline,
        bind,
        groups: [rows.div_ceil(128), t.div_ceil(128), 1],
    })
}

/// TFLOP/s of the scalar GEMM, the exact coop variant and the plain f16 one
/// (a benchmark, `#[ignore]`d) on prefill shapes of a 9B model (BF16, T = 512 chunks and
/// T = 4096), with the largest difference to the scalar GEMM's output relative
/// to its largest |y|; then tuning variants of the coop kernel on 4096².
#[test]
#[ignore = "benchmark: run with -- --ignored coop_vs_scalar_speed"]
fn coop_vs_scalar_speed() {
    use qwgpu_kernels::MatmulPrecision::{Exact, Fast};
    let ctx = trusted(Exact, false);
    let ctx16 = trusted(Exact, true);
    let ctx_fast = trusted(Fast, false);
    // The first shape comes again at the end: the order must not matter.
    let shapes = [
        (
            12288usize,
            4096usize,
            512usize,
            Epilogue::Store,
            Dtype::BF16,
        ),
        (4096, 4096, 4096, Epilogue::Store, Dtype::BF16),
        (4096, 4096, 512, Epilogue::Store, Dtype::BF16),
        (4096, 12288, 512, Epilogue::Accumulate, Dtype::BF16),
        (24576, 4096, 512, Epilogue::SwiGlu, Dtype::BF16),
        (12288, 4096, 4096, Epilogue::Store, Dtype::BF16),
        (4096, 4096, 512, Epilogue::Store, Dtype::F8E4M3),
        (12288, 4096, 512, Epilogue::Store, Dtype::BF16),
    ];
    let mut rng = Rng::new(0xc00b_0003);
    for (rows, cols, t, epi, dtype) in shapes {
        let scheme = if dtype == Dtype::F8E4M3 {
            Scheme::Block([128, 128])
        } else {
            Scheme::None
        };
        let pw = packed(&mut rng, dtype, rows, cols, scheme);
        let (xv, width, flop) = shape_inputs(&mut rng, (rows, cols, t), epi);
        let mut outs = Vec::new();
        for (name, c, path) in [
            ("scalar", &ctx, MatmulPath::Scalar),
            ("coop exact", &ctx, MatmulPath::Coop),
            ("coop f16", &ctx16, MatmulPath::Coop),
            ("coop fast", &ctx_fast, MatmulPath::Coop),
        ] {
            let gw = GpuWeight::upload(c, &pw).unwrap();
            let io = Dense::new(c, &xv, t, cols, width);
            let d = match matmul_with(c, &gw, &io.args(), epi, path) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    continue;
                }
            };
            outs.push(io.first_rows(c, &d, 8));
            let (ns, _) = best_ns(c, &d, "");
            eprintln!(
                "BENCH {c_info_name} {name} T={t} W=[{rows},{cols}] {epi:?} {dtype:?}: {us:.1} µs = {tflops:.1} TFLOP/s",
                c_info_name = c.info.name,
                us = ns / 1e3,
                tflops = flop / ns / 1e3
            );
        }
        for (i, name) in ["coop exact", "coop f16", "coop fast"].iter().enumerate() {
            if let (Some(a), Some(b)) = (outs.get(i + 1), outs.first()) {
                eprintln!(
                    "BENCH   {name} vs scalar, first 8 rows: max |Δ| / max |y| = {rel:.2e}",
                    rel = max_rel_diff(a, b)
                );
            }
        }
    }
    // Tuning variants on 4096² (Store): prefetch off, the exact variant
    // without its pre-pass; (1, 1, 1) and (0, 1, 1) are the library's kernels,
    // as controls. Unpadded rows (LDS = 32) measured 1.3-2.9× slower than
    // LDS = 40.
    let n = 4096usize;
    let pw = packed(&mut rng, Dtype::BF16, n, n, Scheme::None);
    let gw = GpuWeight::upload(&ctx, &pw).unwrap();
    if gw.pieces.len() != 1 || !ctx.caps.cooperative_matrix {
        return;
    }
    for t in [4096usize, 512] {
        let x = ctx.upload("x", &rng.normal_vec(t * n)).unwrap();
        let y = ctx.storage("y", (t * n * 4) as u64).unwrap();
        for (exact, prefetch, prepass) in [(1, 1, 1), (1, 0, 1), (1, 1, 0), (0, 1, 1), (0, 0, 1)] {
            let o = [
                ("EXACT", exact),
                ("PREFETCH", prefetch),
                ("PREPASS", prepass),
            ];
            let d = match variant(&ctx, &gw, &x, &y, t as u32, &o) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("BENCH variant {o:?}: {e}");
                    continue;
                }
            };
            let (ns, _) = best_ns(&ctx, std::slice::from_ref(&d), "");
            eprintln!(
                "BENCH variant T={t} W=[{n},{n}] {o:?}: {us:.1} µs = {tflops:.1} TFLOP/s",
                us = ns / 1e3,
                tflops = 2.0 * (t * n * n) as f64 / ns / 1e3
            );
        }
    }
}
