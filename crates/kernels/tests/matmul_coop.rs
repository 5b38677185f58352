//! The cooperative-matrix (tensor core) GEMM against the CPU reference and
//! against the scalar tile GEMM. Adapters without cooperative matrices (e.g.
//! lavapipe) print a skip line per context and pass.
//!
//! Tolerance (f16 inputs, f32 accumulation): per output
//! `|got − want| ≤ 2e-3 · Σ|xᵢ·wᵢ| + 1e-5 · |want|`. Rounding x and w to f16
//! costs at most 2⁻¹¹ relative each, so ≤ ~1e-3 · Σ|x·w| in the worst case;
//! 2e-3 leaves room for the f32 sums. SwiGLU propagates each half's error as
//! in tests/matmul.rs. Coop vs scalar: the sum of both tolerances. Everything
//! outside the written region keeps its bits (NaN poison for Store).
//!
//! `QWGPU_BENCH=1` also runs `coop_vs_scalar_speed` (T = 4096 on a 4096²
//! BF16 weight, GPU timestamps, trusted modules in release builds).

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul_with, Epilogue, MatmulArgs, MatmulPath};
use qwgpu_kernels::{testing, wgpu, Dispatch, GpuContext, GpuWeight, KernelError};
use qwgpu_loader::PackedWeight;

mod support;
use qwgpu_ops::rng::Rng;
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];
const REL: f64 = 2e-3;

/// A weight in one shard; `block`: `[bn, bk]` scale blocks (scales 0.25..2).
fn packed(
    rng: &mut Rng,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    block: Option<[usize; 2]>,
) -> PackedWeight {
    let scheme = block.map_or(Scheme::None, Scheme::Block);
    let data = support::normal_data(rng, dtype, rows * cols);
    let mut draw = || 0.25 + 1.75 * rng.uniform();
    support::packed_weight(
        format!("w{rows}x{cols}"),
        dtype,
        rows,
        cols,
        &[(0, rows)],
        scheme,
        data,
        &mut draw,
    )
}

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

/// Whether `ctx` runs the coop path (prints a skip line when not).
fn coop_available(t: &testing::TestContext, gw: &GpuWeight) -> bool {
    let ctx = &t.ctx;
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
    match matmul_with(ctx, gw, &args, Epilogue::Store, MatmulPath::Coop) {
        Ok(_) => true,
        Err(KernelError::Unsupported { detail, .. }) => {
            eprintln!(
                "{}: skipping the cooperative-matrix tests: {detail}",
                t.name
            );
            false
        }
        Err(e) => panic!("{}: {e}", t.name),
    }
}

#[test]
fn coop_matches_reference_and_scalar_path() {
    let sizes = [(130usize, 200usize), (70, 520), (18, 36)];
    let formats: [(Dtype, Option<[usize; 2]>); 3] = [
        (Dtype::BF16, None),
        (Dtype::F8E4M3, Some([128, 128])),
        (Dtype::F32, None),
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = 0xc00b_0001;
        let mut rng = Rng::new(seed);
        let mut cases = 0;
        for &(dtype, block) in &formats {
            for &(rows, cols) in &sizes {
                let pw = packed(&mut rng, dtype, rows, cols, block);
                let wdq = qwgpu_loader::dequantize(&pw).unwrap();
                let gw = GpuWeight::upload(ctx, &pw).unwrap();
                if !coop_available(t, &gw) {
                    return;
                }
                for tokens in [17usize, 64, 130] {
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
                            let r = rng.normal_vec(cols);
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
                            "{} seed {seed:#x} {dtype:?} {block:?} [{rows}, {cols}] T={tokens} {epi:?} \
                             x_off {x_off} x_stride {x_stride} y_off {y_off} y_stride {y_stride}",
                            t.name
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
                                    REL,
                                );
                                let i = y_off + ti * y_stride + c;
                                if epi == Epilogue::Accumulate {
                                    w += init[i] as f64;
                                    tol += 1e-6 * init[i].abs() as f64;
                                }
                                want[i] = Some((w, tol));
                                // Scalar kernel within ~1e-5 relative of the reference: add it.
                                vs_scalar[i] = Some((scalar[i] as f64, tol * 1.01));
                            }
                        }
                        support::check(&coop, &init, &want, &format!("{what} coop vs reference"));
                        support::check(&coop, &init, &vs_scalar, &format!("{what} coop vs scalar"));
                        cases += 1;
                    }
                }
            }
        }
        eprintln!("{}: {cases} coop cases passed", t.name);
    }
}

/// `Auto` multiplies in f32 above 16 tokens (the scalar GEMM's bits) unless the
/// context opts into f16 matmuls; then it takes the coop path (the same bits as
/// forcing it) where the adapter has one.
#[test]
fn auto_path_is_scalar_unless_f16_matmul_is_on() {
    let (rows, cols, tokens) = (40usize, 72usize, 33usize);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    let run_both = |ctx: &GpuContext, other: MatmulPath| {
        let mut rng = Rng::new(0xc00b_0002);
        let pw = packed(&mut rng, Dtype::BF16, rows, cols, None);
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
        (go(MatmulPath::Auto).unwrap(), go(other), gw)
    };
    for t in testing::contexts() {
        let (auto, scalar, gw) = run_both(&t.ctx, MatmulPath::Scalar);
        assert!(
            same(&auto, &scalar.unwrap()),
            "{}: Auto differs from Scalar at T={tokens}",
            t.name
        );
        if !coop_available(t, &gw) {
            continue;
        }
        let ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
            f16_matmul: true,
            runtime_checks: Some(true),
            ..Default::default()
        })
        .unwrap();
        let (auto, coop, _) = run_both(&ctx, MatmulPath::Coop);
        assert!(
            same(&auto, &coop.unwrap()),
            "{}: with f16 matmuls Auto differs from Coop at T={tokens}",
            t.name
        );
    }
}

/// T = 4096 on a 4096² BF16 weight: TFLOP/s of both GEMMs (`QWGPU_BENCH=1`).
#[test]
fn coop_vs_scalar_speed() {
    if std::env::var("QWGPU_BENCH").as_deref() != Ok("1") {
        eprintln!("coop_vs_scalar_speed: set QWGPU_BENCH=1 to run");
        return;
    }
    // Default options: trusted modules (no runtime checks) in release builds.
    let ctx = GpuContext::new(&Default::default()).unwrap();
    let n = 4096usize;
    let mut rng = Rng::new(0xc00b_0003);
    let pw = packed(&mut rng, Dtype::BF16, n, n, None);
    let gw = GpuWeight::upload(&ctx, &pw).unwrap();
    let x = ctx.upload("x", &rng.normal_vec(n * n)).unwrap();
    let y = ctx.storage("y", (n * n * 4) as u64).unwrap();
    let args = MatmulArgs {
        x: &x,
        x_offset: 0,
        x_stride: n as u32,
        y: &y,
        y_offset: 0,
        y_stride: n as u32,
        t: n as u32,
    };
    let flop = 2.0 * (n as f64).powi(3);
    let mut outs = Vec::new();
    for path in [MatmulPath::Scalar, MatmulPath::Coop] {
        let d = match matmul_with(&ctx, &gw, &args, Epilogue::Store, path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{path:?}: {e}");
                continue;
            }
        };
        let refs: Vec<&Dispatch> = d.iter().collect();
        ctx.run("warm-up", &refs).unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let ns: f64 = qwgpu_kernels::profile::time_dispatches(&ctx, &refs)
                .unwrap()
                .iter()
                .map(|(_, t)| t)
                .sum();
            best = best.min(ns);
        }
        eprintln!(
            "BENCH {} {path:?} T={n} W=[{n},{n}] BF16: {:.1} µs = {:.1} TFLOP/s",
            ctx.info.name,
            best / 1e3,
            flop / best / 1e3
        );
        // Keep 4 rows of the output to compare the paths.
        outs.push(ctx.read_f32(&y, 0, 4 * n).unwrap());
    }
    if outs.len() == 2 {
        let max_rel = outs[0]
            .iter()
            .zip(&outs[1])
            .map(|(a, b)| ((a - b).abs() / (a.abs() + 1.0)) as f64)
            .fold(0.0, f64::max);
        eprintln!("BENCH coop vs scalar, first 4 rows: max |Δ|/(|y|+1) = {max_rel:.2e}");
    }
}
