//! Matmul kernels against the CPU: `qwgpu_loader::dequantize` gives the exact
//! f32 weights, the reference dot products are summed in f64.
//!
//! Tolerance (per output): `|got − want| ≤ 1e-5 · Σ|xᵢ·wᵢ| + 1e-5 · |want|`,
//! i.e. f32 accumulation error relative to the sum of magnitudes (the f32
//! kernels sum ≤ 260 products in another order than the reference). For
//! SwiGLU the error of each half is propagated (`1.1·|up|·tol(gate) +
//! |silu(gate)|·tol(up)`) plus `1e-5 · |want|` for the GPU's `exp`. Everything
//! outside the written region must keep its bits (outputs are poisoned with
//! NaN for Store; x carries NaN outside its rows to catch over-reads).

use std::time::Instant;

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{
    matmul, matmul_gemv_with, matmul_indexed, Epilogue, IndexedArgs, MatmulArgs, MAX_VEC_T,
};
use qwgpu_kernels::{testing, Dispatch, GpuContext, GpuWeight, KernelError, SmallT};
use qwgpu_loader::PackedWeight;

mod support;
use qwgpu_ops::rng::Rng;
use support::matmul_case::{self, contiguous};
use support::Scheme;

use cases::{packed, run, EPILOGUES};
use qwgpu_kernels::testing::cases::matmul as cases;

/// Relative tolerance of the f32 kernels (module docs).
const REL: f64 = 1e-5;

/// A GPU weight split into pieces of the given row counts (as an upload within
/// a small binding limit would).
fn upload_pieces(ctx: &GpuContext, w: &PackedWeight, split: &[usize]) -> GpuWeight {
    GpuWeight::upload_pieces(ctx, w, split).unwrap()
}

/// The launches of one dense matmul (which kernel runs it).
type MatmulFn<'f> = cases::MatmulFn<'f>;

/// One dense matmul with random offsets/strides, checked against the reference
/// (the shared case, which the browser runner runs too).
fn dense_case(
    t: &testing::TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
) {
    pollster::block_on(cases::dense_case(t, rng, gw, wdq, tokens, epi, what));
}

/// [`dense_case`] with the launches made by `launch`; `aligned`: x offset and
/// stride multiples of 4 (the GEMV kernels' vec4 loads of x), else random.
#[allow(clippy::too_many_arguments)]
fn dense_case_with(
    t: &testing::TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
    launch: MatmulFn<'_>,
    aligned: bool,
) {
    pollster::block_on(cases::dense_case_with(
        t, rng, gw, wdq, tokens, epi, what, launch, aligned,
    ));
}

fn formats_and_schemes() -> Vec<(Dtype, Scheme)> {
    cases::formats_and_schemes()
}

#[test]
fn matmul_matches_reference_for_every_format_scheme_and_path() {
    let start = Instant::now();
    let sizes = [(1usize, 4usize), (3, 12), (65, 128), (130, 260), (66, 13)];
    let ts = [1usize, 3, 16, 17, 70];
    for t in testing::contexts() {
        pollster::block_on(cases::every_format_and_scheme(t, 0x5eed_0001, &sizes, &ts));
    }
    eprintln!("dense matmul cases: {:.1} s", start.elapsed().as_secs_f64());
}

/// Every T of the vector path and a few of the tiled one, on one weight.
#[test]
fn matmul_every_token_count_of_the_vector_path() {
    for t in testing::contexts() {
        let seed = 0x5eed_0002;
        let mut rng = Rng::new(seed);
        let pw = packed(&mut rng, Dtype::F8E4M3, 34, 44, Scheme::Block([16, 32]));
        let wdq = qwgpu_loader::dequantize(&pw).unwrap();
        let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
        for tokens in (1..=18).chain([63, 64, 65, 129]) {
            let epi = EPILOGUES[tokens % 3];
            dense_case(
                t,
                &mut rng,
                &gw,
                &wdq,
                tokens,
                epi,
                &format!("seed {seed:#x} E4M3 [34, 44]"),
            );
        }
    }
}

/// Random `[rows, cols]` weights of each `(dtype, scheme, cols)` against the
/// reference for every `(tokens, epilogue)` case, under `seed`.
fn shape_cases(
    seed: u64,
    rows: usize,
    weights: &[(Dtype, Scheme, usize)],
    cases: &[(usize, Epilogue)],
) {
    for t in testing::contexts() {
        let mut rng = Rng::new(seed);
        for &(dtype, scheme, cols) in weights {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
            for &(tokens, epi) in cases {
                let what = format!("seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}]");
                dense_case(t, &mut rng, &gw, &wdq, tokens, epi, &what);
            }
        }
    }
}

/// Rows longer than one pass of the GEMV workgroup (more than 256 chunks of 16
/// bytes, an odd count): every thread loops over its chunks, with block scales
/// and per-channel scales on the same rows. (The other cases' rows are at
/// most 260 values: one pass.)
#[test]
fn gemv_rows_longer_than_one_workgroup_pass() {
    // Chunks per row: F32 1027 / 4 -> 257; BF16 4133 / 8 -> 517; E4M3 9000 / 16 -> 563.
    shape_cases(
        0x5eed_0005,
        10,
        &[
            (Dtype::F32, Scheme::None, 1027),
            (Dtype::BF16, Scheme::None, 4133),
            (Dtype::F8E4M3, Scheme::Block([128, 128]), 9000),
            (Dtype::F8E5M2, Scheme::PerChannel, 8200),
        ],
        &[
            (1, Epilogue::Store),
            (1, Epilogue::SwiGlu),
            (1, Epilogue::Accumulate),
            (3, Epilogue::Store),
        ],
    );
}

/// GEMV launches of 529..=1056 workgroups run 128-thread groups over rows of
/// more than 128 chunks (`vec_workgroup`): each thread takes every other
/// chunk, an odd count per row here; 4000 rows are 1000 workgroups (SwiGLU:
/// 2000 outputs, 2 per workgroup).
#[test]
fn gemv_of_one_narrow_wave() {
    // Chunks per row: BF16 2051 / 8 -> 257; E4M3 4100 / 16 -> 257.
    shape_cases(
        0x5eed_0006,
        4000,
        &[
            (Dtype::BF16, Scheme::None, 2051),
            (Dtype::F8E4M3, Scheme::Block([128, 128]), 4100),
        ],
        &[
            (1, Epilogue::Store),
            (1, Epilogue::SwiGlu),
            (2, Epilogue::Accumulate),
        ],
    );
}

/// `upload_from`: a weight's layout (data left in the checkpoint, as the
/// streaming loader leaves weights) with its rows given apart, in one part or
/// several of whole rows (empty ones too), computes as the packed upload,
/// parts ending inside an upload chunk; bytes of the wrong length or parts
/// that split a row are a typed error.
#[test]
fn weights_upload_from_borrowed_bytes() {
    for t in testing::contexts() {
        let seed = 0x5eed_0007;
        let mut rng = Rng::new(seed);
        for (dtype, scheme) in [
            (Dtype::BF16, Scheme::None),
            (Dtype::F8E4M3, Scheme::Block([16, 32])),
        ] {
            let (rows, cols) = (38, 70);
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let mut layout = pw.clone();
            layout.data = Vec::new();
            let row = cols * dtype.size();
            let d = &pw.data;
            for parts in [
                vec![&d[..]],
                vec![&d[..5 * row], &d[5 * row..5 * row], &d[5 * row..]],
                vec![&d[..row], &d[row..37 * row], &d[37 * row..]],
            ] {
                let gw = GpuWeight::upload_from(&t.ctx, &layout, &parts).unwrap();
                let what = format!(
                    "seed {seed:#x} {dtype:?} {scheme:?} upload_from {parts_len} parts",
                    parts_len = parts.len()
                );
                dense_case(t, &mut rng, &gw, &wdq, 1, Epilogue::Store, &what);
                dense_case(t, &mut rng, &gw, &wdq, 20, Epilogue::SwiGlu, &what);
            }
            for parts in [vec![&d[1..]], vec![&d[..row + 1], &d[row + 1..]]] {
                match GpuWeight::upload_from(&t.ctx, &layout, &parts) {
                    Err(KernelError::Unsupported { what, detail }) => {
                        assert!(what.contains(&pw.name), "{what}");
                        assert!(detail.contains("for [38, 70]"), "{detail}");
                    }
                    Err(e) => panic!("bad parts: wrong error {e}"),
                    Ok(_) => panic!("bad parts were accepted"),
                }
            }
        }
    }
}

/// A weight in several buffers gives the same results, SwiGLU included where
/// gate row j and up row j sit in different pieces.
#[test]
fn matmul_over_split_weights() {
    for t in testing::contexts() {
        let seed = 0x5eed_0003;
        let mut rng = Rng::new(seed);
        for (dtype, scheme, split) in [
            (
                Dtype::F8E4M3,
                Scheme::Block([16, 32]),
                vec![50usize, 47, 33],
            ),
            (Dtype::BF16, Scheme::None, vec![1, 128, 1]),
            (
                Dtype::F8E5M2,
                Scheme::PerShard { broadcast: false },
                vec![65, 65],
            ),
        ] {
            let pw = packed(&mut rng, dtype, 130, 44, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = upload_pieces(&t.ctx, &pw, &split);
            for epi in EPILOGUES {
                for tokens in [1, 5, 17, 70] {
                    let what = format!("seed {seed:#x} {dtype:?} {scheme:?} pieces {split:?}");
                    dense_case(t, &mut rng, &gw, &wdq, tokens, epi, &what);
                }
            }
        }
    }
}

/// The small-T GEMV (`T = 2..=16`, `matmul_vec_t.wgsl`) for every stored
/// format and scale scheme, on rows of awkward length (a partial last chunk)
/// and a row count that leaves the last workgroup's quads partly empty, with
/// every epilogue, x rows 16-byte aligned or not.
#[test]
fn small_t_matches_reference_for_every_format_and_scheme() {
    let sizes = [(70usize, 300usize), (38, 1030)];
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_0008);
        let mut rng = Rng::new(seed);
        for (ci, &(dtype, scheme)) in formats_and_schemes().iter().enumerate() {
            let (rows, cols) = sizes[ci % sizes.len()];
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
            for (k, tokens) in [2usize, 3, 5, 8, 16].into_iter().enumerate() {
                let epi = EPILOGUES[(ci + k) % 3];
                let what = format!("seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}]");
                // Aligned x rows (whole vec4 loads) and unaligned ones.
                let aligned = (ci + k) % 2 == 0;
                dense_case_with(t, &mut rng, &gw, &wdq, tokens, epi, &what, &matmul, aligned);
            }
        }
    }
}

/// Dense matmuls of 2..=16 tokens run the small-T kernel (one launch, one
/// read of the weight for all the tokens), T = 1 the one-token GEMV and
/// T = 17 a GEMM, or where the skinny tensor-core kernel takes the weight
/// (`decode_block_tokens` says 64) at the tuning's token counts
/// (`skinny_tokens`) that kernel (`matmul_coop_skinny.rs` tests its
/// selection).
#[test]
fn small_t_is_the_path_of_two_to_sixteen_tokens() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(testing::seed(0x5eed_0009));
    let pw = packed(&mut rng, Dtype::BF16, 40, 64, Scheme::None);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let x = ctx.storage("x", 4 * 64 * 17).unwrap();
    let y = ctx.storage("y", 4 * 40 * 17).unwrap();
    for tokens in 1..=17u32 {
        let args = contiguous(&x, &y, tokens as usize, 64, 40);
        for epi in EPILOGUES {
            let d = matmul(ctx, &gw, &args, epi).unwrap();
            let labels: Vec<&str> = d.iter().map(|d| d.label).collect();
            let skinny = qwgpu_kernels::matmul::skinny_tokens(ctx).contains(&tokens)
                && qwgpu_kernels::matmul::decode_block_tokens(ctx, &gw) > MAX_VEC_T;
            if skinny {
                assert_eq!(labels[0], "matmul_coop_skinny", "T = {tokens} {epi:?}");
                continue;
            }
            let want = match tokens {
                1 => "matmul_gemv",
                2..=16 => "matmul_gemv_t",
                _ => labels[0],
            };
            assert_eq!(labels, [want], "T = {tokens} {epi:?}");
            // All the tokens in one block of workgroups: the grid covers the
            // rows once (10 quads of 4 rows, the adapter's quads per
            // workgroup; SwiGLU: 20 outputs, 2 per quad).
            if (2..=16).contains(&tokens) {
                let quads = ctx.tuning.small_t.map_or(2, |s| s.quads);
                assert_eq!(
                    d[0].groups[0] * d[0].groups[1],
                    10u32.div_ceil(quads),
                    "T = {tokens} {epi:?}"
                );
            }
        }
    }
}

/// Every workgroup shape of the small-T GEMV computes the same results: quads
/// 1..8, 64 to 256 threads, tokens split into blocks, prefetch on and off, on
/// rows longer than one pass of the workgroup (more than 128 chunks); and the one-token kernel in
/// blocks of 8 (`None`, the earlier path the benchmark compares against).
#[test]
fn small_t_shapes_match_reference() {
    let shapes = [
        SmallT::DEFAULT,
        SmallT {
            threads: 64,
            quads: 1,
            max_tokens: 16,
            prefetch: false,
            chunk_scale: true,
        },
        SmallT {
            threads: 128,
            quads: 4,
            max_tokens: 5,
            prefetch: true,
            chunk_scale: false,
        },
        SmallT {
            threads: 256,
            quads: 8,
            max_tokens: 8,
            prefetch: false,
            chunk_scale: true,
        },
    ];
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_000a);
        let mut rng = Rng::new(seed);
        for (dtype, scheme, rows, cols) in [
            (Dtype::BF16, Scheme::None, 42usize, 1100usize),
            (Dtype::F8E4M3, Scheme::Block([128, 128]), 36, 2100),
            (Dtype::F8E5M2, Scheme::Block([5, 20]), 22, 1000),
        ] {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
            for (k, shape) in shapes.iter().map(Some).chain([None]).enumerate() {
                for (j, tokens) in [3usize, 16].into_iter().enumerate() {
                    let epi = EPILOGUES[(k + j) % 3];
                    let what =
                        format!("seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}] {shape:?}");
                    let launch = |ctx: &GpuContext, w: &GpuWeight, a: &MatmulArgs, e: Epilogue| {
                        matmul_gemv_with(ctx, w, a, e, shape)
                    };
                    let aligned = j == 0;
                    dense_case_with(t, &mut rng, &gw, &wdq, tokens, epi, &what, &launch, aligned);
                }
            }
        }
    }
}

/// MoE: E = 4 experts, repeated ids (runs and scattered), ids past the experts skipped.
#[allow(clippy::too_many_arguments)]
fn indexed_case(
    t: &testing::TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    rpe: usize,
    ids_list: &[u32],
    x_div: usize,
    epi: Epilogue,
    what: &str,
) {
    let ctx = &t.ctx;
    let width = if epi == Epilogue::SwiGlu {
        rpe / 2
    } else {
        rpe
    };
    let c = matmul_case::moe_case(ctx, rng, gw.cols, ids_list, x_div, width, epi);
    let y = ctx.upload("y", &c.init).unwrap();
    let d = matmul_indexed(ctx, gw, &c.args(&y, rpe), epi)
        .unwrap_or_else(|e| panic!("{t_name} {what}: {e}", t_name = t.name));
    run(ctx, &d);
    let got = ctx.read_f32(&y, 0, c.init.len()).unwrap();
    let what = format!(
        "{t_name} {what} pairs {pairs} x_div {x_div} {epi:?} ids {ids_list:?}",
        t_name = t.name,
        pairs = ids_list.len()
    );
    c.check(&got, wdq, gw.cols, rpe, epi, REL, &what);
}

#[test]
fn matmul_indexed_matches_reference() {
    for t in testing::contexts() {
        let seed = 0x5eed_0004;
        let mut rng = Rng::new(seed);
        let rpe = 10;
        let ids_sets: Vec<Vec<u32>> = vec![
            vec![2],
            vec![3, 3, 0, 1, 1, 1, 4],
            // Many pairs: sorted runs (read once per run) then scattered, one skipped id.
            (0..40u32)
                .map(|i| if i < 24 { i / 7 } else { (i * 7 + 1) % 5 })
                .collect(),
        ];
        for (dtype, scheme, cols, split) in [
            (Dtype::BF16, Scheme::None, 36usize, None),
            (Dtype::F8E4M3, Scheme::Block([16, 32]), 44, None),
            (Dtype::F8E5M2, Scheme::PerChannel, 13, None),
            (
                Dtype::F8E4M3,
                Scheme::Block([5, 20]),
                40,
                Some(vec![13usize, 14, 13]),
            ),
            (Dtype::F32, Scheme::None, 12, Some(vec![1, 1, 37, 1])),
        ] {
            let pw = packed(&mut rng, dtype, 4 * rpe, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = match &split {
                Some(s) => upload_pieces(&t.ctx, &pw, s),
                None => GpuWeight::upload(&t.ctx, &pw).unwrap(),
            };
            for (k, ids) in ids_sets.iter().enumerate() {
                for (m, epi) in EPILOGUES.iter().enumerate() {
                    let x_div = 1 + (k + m) % 2;
                    let what = format!(
                        "seed {seed:#x} {dtype:?} {scheme:?} [{rpe}, {cols}] pieces {split:?}",
                        rpe = 4 * rpe
                    );
                    indexed_case(t, &mut rng, &gw, &wdq, rpe, ids, x_div, *epi, &what);
                }
            }
        }
    }
}

/// `frexp`'s exponent of a finite, nonzero `v`: `v = m · 2^e`, `0.5 ≤ |m| < 1`
/// (halving / doubling in f64: independent of the shader's `frexp`).
fn frexp_exp(v: f32) -> i32 {
    let mut m = (v as f64).abs();
    let mut e = 0;
    while m >= 1.0 {
        m /= 2.0;
        e += 1;
    }
    while m < 0.5 {
        m *= 2.0;
        e -= 1;
    }
    e
}

/// The fast precision's rounding of one x row, written out independently of
/// the shaders: `s = 2^clamp(15 − frexp(max|x|).exp, −126, 126)` (`s = 1` for
/// a zero or non-finite maximum), `x' = f16(x · s)` (nearest even, f16
/// subnormals kept), returned as `x' / s` (exact in f32 for these rows).
fn fast_round_row(x: &[f32]) -> Vec<f32> {
    let mx = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let e = if mx == 0.0 || !mx.is_finite() {
        0
    } else {
        (15 - frexp_exp(mx)).clamp(-126, 126)
    };
    let s = 2f64.powi(e);
    x.iter()
        .map(|&v| (half::f16::from_f32((v as f64 * s) as f32).to_f64() / s) as f32)
        .collect()
}

/// A row for the precision test: `kind` 0 has values of magnitudes 1e-6..1e6
/// mixed, 1 a whole row scaled by 10^(−6..6), 2 is zero, 3 normal values with
/// one of 1e6 (the rest rounds to few bits or to f16 subnormals).
fn wide_row(rng: &mut Rng, cols: usize, kind: usize) -> Vec<f32> {
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
        _ => r[(rng.uniform() * cols as f32) as usize % cols] = 1e6,
    }
    r
}

/// Precision `Fast` on the scalar tile GEMM (T > 16, what runs where there are
/// no cooperative matrices) rounds x as the fast coop GEMM does: against the
/// f64 GEMM of [`fast_round_row`]'s rows at `1e-5 · Σ|x'·w|` (f32
/// accumulation, as the exact tests), with weights whose scale varies along
/// the row (FP8 blocks) rounded to f16 after scaling, as the fast coop GEMM
/// stages them. The test asserts that the rounding moves
/// outputs by more than that tolerance (so an unrounded kernel fails), and that
/// precision `Exact` (the default) still matches the unrounded reference.
#[test]
fn matmul_fast_precision_rounds_x_per_row() {
    use qwgpu_kernels::matmul::{matmul_with, MatmulPath};
    use qwgpu_kernels::{ContextOptions, MatmulPrecision};
    let seed = testing::seed(0x5eed_0017);
    for t in testing::contexts() {
        let fast = GpuContext::new(&ContextOptions {
            precision: MatmulPrecision::Fast,
            ..t.variant.options()
        })
        .unwrap();
        let mut rng = Rng::new(seed);
        let mut moved = 0usize;
        let mut outputs = 0usize;
        let cases = [
            (Dtype::F32, Scheme::None, 66, 130, 70),
            (Dtype::BF16, Scheme::None, 130, 13, 17),
            (Dtype::F8E4M3, Scheme::Block([16, 32]), 64, 96, 129),
        ];
        for (ci, &(dtype, scheme, rows, cols, tokens)) in cases.iter().enumerate() {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            // Block scales narrower than the row: q·s rounded to f16 (nearest even).
            let wdq_fast: Vec<f32> = if matches!(scheme, Scheme::Block([_, bk]) if bk < cols) {
                wdq.iter()
                    .map(|&v| half::f16::from_f32(v).to_f32())
                    .collect()
            } else {
                wdq.clone()
            };
            for (k, &epi) in EPILOGUES.iter().enumerate() {
                let x_off = (ci + k) % 3;
                let x_stride = cols + k;
                let width = if epi == Epilogue::SwiGlu {
                    rows / 2
                } else {
                    rows
                };
                let mut xbuf = vec![f32::NAN; x_off + (tokens - 1) * x_stride + cols + 3];
                let xrows: Vec<Vec<f32>> = (0..tokens)
                    .map(|ti| wide_row(&mut rng, cols, ti % 4))
                    .collect();
                for (ti, r) in xrows.iter().enumerate() {
                    xbuf[x_off + ti * x_stride..][..cols].copy_from_slice(r);
                }
                let init: Vec<f32> = if epi == Epilogue::Accumulate {
                    rng.normal_vec(tokens * width)
                } else {
                    vec![f32::NAN; tokens * width]
                };
                for (ctx, precision) in [(&fast, MatmulPrecision::Fast), (&t.ctx, t.ctx.precision)]
                {
                    let what = format!(
                        "{t_name} seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}] T={tokens} \
                         {epi:?} {precision:?}",
                        t_name = t.name
                    );
                    let gw = GpuWeight::upload(ctx, &pw).unwrap();
                    let x = ctx.upload("x", &xbuf).unwrap();
                    let y = ctx.upload("y", &init).unwrap();
                    let args = MatmulArgs {
                        x: &x,
                        x_offset: x_off as u32,
                        x_stride: x_stride as u32,
                        y: &y,
                        y_offset: 0,
                        y_stride: width as u32,
                        t: tokens as u32,
                    };
                    let d = matmul_with(ctx, &gw, &args, epi, MatmulPath::Scalar)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    run(ctx, &d);
                    let got = ctx.read_f32(&y, 0, init.len()).unwrap();
                    let mut want = vec![None; init.len()];
                    for (ti, xr) in xrows.iter().enumerate() {
                        let xf = fast_round_row(xr);
                        let (used, wused) = if precision == MatmulPrecision::Fast {
                            (&xf, &wdq_fast)
                        } else {
                            (xr, &wdq)
                        };
                        let swiglu = epi == Epilogue::SwiGlu;
                        for c in 0..width {
                            let i = ti * width + c;
                            let (mut w, mut tol) =
                                support::expected(used, wused, cols, rows, c, swiglu, 1e-5);
                            if precision == MatmulPrecision::Fast {
                                let (exact, _) =
                                    support::expected(xr, &wdq, cols, rows, c, swiglu, 1e-5);
                                outputs += 1;
                                moved += usize::from((exact - w).abs() > tol);
                            }
                            if epi == Epilogue::Accumulate {
                                w += init[i] as f64;
                                tol += 1e-6 * init[i].abs() as f64;
                            }
                            want[i] = Some((w, tol));
                        }
                    }
                    support::check(&got, &init, &want, &what);
                }
            }
        }
        // The rounding must be visible at the tolerance, else this test
        // could not tell the fast kernel from the exact one.
        assert!(
            moved * 4 > outputs,
            "{t_name}: only {moved} of {outputs} outputs move under the fast rounding",
            t_name = t.name
        );
    }
}

fn arguments_error(r: Result<Vec<Dispatch>, KernelError>, needle: &str) {
    match r {
        Err(KernelError::Arguments { detail, .. }) => {
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`")
        }
        Err(e) => panic!("expected an Arguments error containing `{needle}`, got {e}"),
        Ok(_) => panic!("expected an Arguments error containing `{needle}`, got launches"),
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(5);
    let pw = packed(&mut rng, Dtype::BF16, 3, 12, Scheme::None);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let x = ctx.storage("x", 4 * 12 * 2).unwrap();
    let y = ctx.storage("y", 4 * 3 * 2).unwrap();
    let a = contiguous(&x, &y, 2, 12, 3);
    assert_eq!(matmul(ctx, &gw, &a, Epilogue::Store).unwrap().len(), 1);
    assert!(matmul(ctx, &gw, &MatmulArgs { t: 0, ..a }, Epilogue::Store)
        .unwrap()
        .is_empty());
    arguments_error(
        matmul(ctx, &gw, &a, Epilogue::SwiGlu),
        "even number of rows",
    );
    arguments_error(
        matmul(ctx, &gw, &MatmulArgs { t: 3, ..a }, Epilogue::Store),
        "x: 3 rows",
    );
    arguments_error(
        matmul(ctx, &gw, &MatmulArgs { x_stride: 11, ..a }, Epilogue::Store),
        "x stride 11",
    );
    arguments_error(
        matmul(ctx, &gw, &MatmulArgs { x_offset: 1, ..a }, Epilogue::Store),
        "past its",
    );
    arguments_error(
        matmul(ctx, &gw, &MatmulArgs { y_stride: 2, ..a }, Epilogue::Store),
        "y stride 2",
    );
    arguments_error(
        matmul(
            ctx,
            &gw,
            &MatmulArgs { y_offset: 4, ..a },
            Epilogue::Accumulate,
        ),
        "y: 2 rows",
    );
    arguments_error(
        matmul(ctx, &gw, &MatmulArgs { y: &x, ..a }, Epilogue::Store),
        "same buffer",
    );

    // A weight whose pieces do not cover its rows.
    let mut broken = upload_pieces(ctx, &pw, &[1, 2]);
    broken.pieces.remove(1);
    arguments_error(
        matmul(ctx, &broken, &a, Epilogue::Store),
        "pieces cover 1 rows of 3",
    );

    let pw = packed(&mut rng, Dtype::F8E4M3, 12, 8, Scheme::PerChannel);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let ids = ctx.upload("ids", &[0u32, 1, 2, 3]).unwrap();
    let x = ctx.storage("x", 4 * 8 * 4).unwrap();
    let y = ctx.storage("y", 4 * 6 * 4).unwrap();
    let ia = IndexedArgs {
        x: &x,
        x_stride: 8,
        x_row_div: 1,
        ids: &ids,
        ids_offset: 0,
        y: &y,
        y_stride: 6,
        pairs: 4,
        rows_per_expert: 6,
    };
    assert_eq!(
        matmul_indexed(ctx, &gw, &ia, Epilogue::Store)
            .unwrap()
            .len(),
        1
    );
    arguments_error(
        matmul_indexed(
            ctx,
            &gw,
            &IndexedArgs {
                rows_per_expert: 5,
                ..ia
            },
            Epilogue::Store,
        ),
        "multiple of 5",
    );
    arguments_error(
        matmul_indexed(
            ctx,
            &gw,
            &IndexedArgs {
                rows_per_expert: 0,
                ..ia
            },
            Epilogue::Store,
        ),
        "multiple of 0",
    );
    let odd = IndexedArgs {
        rows_per_expert: 3,
        y_stride: 3,
        ..ia
    };
    arguments_error(
        matmul_indexed(ctx, &gw, &odd, Epilogue::SwiGlu),
        "even number of rows per expert",
    );
    arguments_error(
        matmul_indexed(
            ctx,
            &gw,
            &IndexedArgs { x_row_div: 0, ..ia },
            Epilogue::Store,
        ),
        "x_row_div",
    );
    arguments_error(
        matmul_indexed(
            ctx,
            &gw,
            &IndexedArgs {
                ids_offset: 1,
                ..ia
            },
            Epilogue::Store,
        ),
        "ids",
    );
    arguments_error(
        matmul_indexed(ctx, &gw, &IndexedArgs { pairs: 5, ..ia }, Epilogue::Store),
        "x: 5 rows",
    );
    arguments_error(
        matmul_indexed(
            ctx,
            &gw,
            &IndexedArgs { y_stride: 5, ..ia },
            Epilogue::Store,
        ),
        "y stride 5",
    );
    arguments_error(
        matmul_indexed(ctx, &gw, &IndexedArgs { y: &x, ..ia }, Epilogue::Store),
        "same buffer",
    );
}
