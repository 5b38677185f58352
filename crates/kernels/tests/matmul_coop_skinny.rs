//! The skinny tensor-core matmul (`mm_coop_skinny`, 2..=64 tokens and token
//! blocks past 64) against an f64 CPU reference, its selection by
//! `MatmulPath::Auto` (the tuning's token range and shapes), its SPIR-V
//! translation for every override combination, and (`#[ignore]`d) its
//! bandwidth on the 9B decode shapes.
//!
//! The hardware tests declare that they need cooperative matrices
//! ([`testing::Feature::CooperativeMatrix`]): contexts without them
//! (lavapipe, the fallback column) are recorded as skipped for that feature,
//! and a hardware adapter without them fails.
//!
//! Tolerances per output (`support::expected`: `rel · Σ|x·w| + 1e-5 ·
//! |want|`, SwiGLU propagating each half's error): exact variant with weights
//! exact in f16 and row-constant scales 1e-5 (x keeps 22 significant bits);
//! weights rounded to f16 while staging (block scales narrower than the row:
//! f16(q·s); F32 weights) 6e-4; fast and plain variants (x rounded to f16,
//! 2⁻¹¹) 2e-3. Fused norm: the reference normalises x in f64 and the same
//! tolerances apply to Σ|norm(x)·w|. Everything outside the written region
//! keeps its bits (NaN poison for Store; x is NaN outside its rows).

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{
    decode_block_tokens, matmul, matmul_gemv_with, matmul_normed, matmul_skinny_with, matmul_with,
    skinny_tokens, Epilogue, FusedNorm, MatmulArgs, MatmulPath, SkinnyShape, MAX_VEC_T,
    SKINNY_MAX_T,
};
use qwgpu_kernels::norm::rms_norm;
use qwgpu_kernels::spec::Needs;
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{
    wgpu, ContextOptions, Dispatch, GpuContext, GpuWeight, KernelError, MatmulPrecision,
    SkinnyTier, WeightFormat,
};

mod support;
use qwgpu_ops::rng::Rng;
use support::matmul_case::contiguous;
use support::spirv::{self, Translator};
use support::Scheme;

use support::packed_one_shard as packed;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];
/// The token counts every hardware test covers (a fragment of 2 tokens, 9
/// and a whole one; several fragments, 64 = four).
const TOKENS: [usize; 6] = [2, 9, 16, 17, 33, 64];
/// Norm eps of the fused-norm cases.
const EPS: f32 = 1e-6;

fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("matmul_coop_skinny test", &refs).unwrap();
}

/// Which matmul a case runs.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// `matmul_skinny_with` with this forced subgroup count.
    Skinny(SkinnyShape),
    /// `matmul` (`MatmulPath::Auto`), or `matmul_normed` with a norm.
    Auto,
    /// `matmul_with(.., path)`.
    Path(MatmulPath),
    /// `matmul_gemv_with` with the context's small-T shape.
    Gemv,
}

/// One matmul of `tokens` x rows (`x_off`, `x_stride`) into a fresh copy of
/// `init` (`y_off`, `y_stride`), optionally of the normalised rows; the whole y buffer.
#[allow(clippy::too_many_arguments)]
fn run_call(
    ctx: &GpuContext,
    gw: &GpuWeight,
    x: &wgpu::Buffer,
    (x_off, x_stride): (usize, usize),
    init: &[f32],
    (y_off, y_stride): (usize, usize),
    tokens: usize,
    epi: Epilogue,
    norm: Option<&FusedNorm>,
    call: Call,
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
    let d = match (call, norm) {
        (Call::Skinny(shape), _) => matmul_skinny_with(ctx, gw, &args, epi, norm, shape)?,
        (Call::Auto, Some(n)) => matmul_normed(ctx, gw, &args, n, epi)?,
        (Call::Auto, None) => matmul(ctx, gw, &args, epi)?,
        (Call::Path(p), None) => matmul_with(ctx, gw, &args, epi, p)?,
        (Call::Gemv, None) => matmul_gemv_with(ctx, gw, &args, epi, ctx.tuning.small_t.as_ref())?,
        (c, Some(_)) => panic!("{c:?} has no fused norm"),
    };
    run(ctx, &d);
    ctx.read_f32(&y, 0, init.len())
}

/// Qwen's norm of one row in f64 (`x / sqrt(mean(x²) + eps) · (1 + g)`), as f32.
fn norm_ref(x: &[f32], g: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + EPS as f64).sqrt();
    x.iter()
        .zip(g)
        .map(|(&v, &g)| (v as f64 * r * (1.0 + g as f64)) as f32)
        .collect()
}

/// A case set: formats × sizes × tokens × epilogues on one context.
struct Cases<'a> {
    seed: u64,
    formats: &'a [(Dtype, Scheme)],
    sizes: &'a [(usize, usize)],
    tokens: &'a [usize],
    /// Tolerance factor of Σ|x·w| for a weight.
    rel: &'a dyn Fn(&GpuWeight) -> f64,
    /// x rows scaled by 1e-6 .. 1e6 (past f16's range: the row scaling).
    wide_rows: bool,
    /// Through the fused RMSNorm (columns and x strides multiples of 4).
    norm: bool,
    /// Shards of each weight (row ranges cut at unaligned rows, one scale
    /// or block grid each).
    shards: usize,
    /// Through `MatmulPath::Auto` (`matmul` / `matmul_normed`) with dense x
    /// rows (stride = columns) instead of the forced skinny kernel.
    auto: bool,
}

/// A `[rows, cols]` weight in `shards` shards cut at unaligned rows, scales
/// 0.25..2 for `scheme` (one per shard with `PerShard`).
fn packed_shards(
    rng: &mut Rng,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    scheme: Scheme,
    shards: usize,
) -> qwgpu_loader::PackedWeight {
    if shards <= 1 {
        return packed(rng, dtype, rows, cols, scheme);
    }
    let mut cuts: Vec<usize> = [37usize, 50, 97, 1]
        .iter()
        .copied()
        .filter(|&c| c < rows)
        .take(shards - 1)
        .collect();
    cuts.sort_unstable();
    let mut parts = Vec::new();
    let mut o = 0;
    for c in cuts.into_iter().chain([rows]) {
        if c > o {
            parts.push((o, c - o));
            o = c;
        }
    }
    let data = support::normal_data(rng, dtype, rows * cols);
    let mut draw = || 0.25 + 1.75 * rng.uniform();
    support::packed_weight(
        format!("w{rows}x{cols}s{shards}"),
        dtype,
        rows,
        cols,
        &parts,
        scheme,
        data,
        &mut draw,
    )
}

/// Runs every case of `c` on the skinny kernel of `ctx` (the subgroup count
/// cycling through the adapter's choice and 2, 4, 8, steps of 32 and 64
/// columns, split-K with 1..8 splits) against the f64 reference; returns the
/// number of cases.
fn check_cases(t: &testing::TestContext, ctx: &GpuContext, c: &Cases) -> usize {
    let mut rng = Rng::new(c.seed);
    let mut cases = 0;
    // The adapter's shape, then forced subgroups, step widths and splits
    // (splits are ignored with the fused norm).
    let shape = |subgroups, columns, splits| SkinnyShape {
        subgroups,
        columns,
        splits,
    };
    let shapes = [
        shape(None, None, None),
        shape(Some(2), Some(32), Some(2)),
        shape(Some(4), Some(64), None),
        shape(Some(8), Some(32), Some(3)),
        shape(Some(2), Some(64), Some(8)),
        shape(Some(8), Some(64), Some(1)),
        shape(Some(4), Some(32), Some(5)),
        // The H100's tier up to 16 tokens (splits the adapter's choice).
        shape(Some(8), Some(64), None),
    ];
    for &(dtype, scheme) in c.formats {
        for &(rows, cols) in c.sizes {
            let pw = packed_shards(&mut rng, dtype, rows, cols, scheme, c.shards);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let g: Vec<f32> = rng.normal_vec(cols).iter().map(|v| 0.3 * v).collect();
            let gbuf = ctx.upload("norm weight", &g).unwrap();
            let fused = FusedNorm {
                weight: &gbuf,
                eps: EPS,
                one_plus: true,
            };
            for &tokens in c.tokens {
                for epi in EPILOGUES {
                    let shape = shapes[cases % shapes.len()];
                    let width = if epi == Epilogue::SwiGlu {
                        rows / 2
                    } else {
                        rows
                    };
                    // The fused norm needs vec4-aligned rows.
                    let align = if c.norm { 4 } else { 1 };
                    let x_off = (rng.uniform() * 5.0) as usize * align;
                    let pad = (rng.uniform() * 3.0) as usize * align;
                    let x_stride = if c.auto { cols } else { cols + pad };
                    let y_off = (rng.uniform() * 5.0) as usize;
                    let y_stride = width + (rng.uniform() * 3.0) as usize;
                    let mut xbuf = vec![f32::NAN; x_off + (tokens - 1) * x_stride + cols + 3];
                    let mut xrows = Vec::new();
                    for ti in 0..tokens {
                        let mut r = rng.normal_vec(cols);
                        if c.wide_rows {
                            let f = 10f32.powi((rng.uniform() * 13.0) as i32 - 6);
                            r.iter_mut().for_each(|v| *v *= f);
                        }
                        xbuf[x_off + ti * x_stride..][..cols].copy_from_slice(&r);
                        xrows.push(if c.norm { norm_ref(&r, &g) } else { r });
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
                         {shape:?} norm {norm} x_off {x_off} x_stride {x_stride} y_off {y_off} \
                         y_stride {y_stride} f16_matmul {f16} precision {precision:?}",
                        t_name = t.name,
                        seed = c.seed,
                        norm = c.norm,
                        f16 = ctx.f16_matmul,
                        precision = ctx.precision
                    );
                    let got = run_call(
                        ctx,
                        &gw,
                        &x,
                        (x_off, x_stride),
                        &init,
                        (y_off, y_stride),
                        tokens,
                        epi,
                        c.norm.then_some(&fused),
                        if c.auto {
                            Call::Auto
                        } else {
                            Call::Skinny(shape)
                        },
                    )
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let mut want = vec![None; ylen];
                    for (ti, xr) in xrows.iter().enumerate() {
                        for col in 0..width {
                            let (mut w, mut tol) = support::expected(
                                xr,
                                &wdq,
                                cols,
                                rows,
                                col,
                                epi == Epilogue::SwiGlu,
                                (c.rel)(&gw),
                            );
                            let i = y_off + ti * y_stride + col;
                            if epi == Epilogue::Accumulate {
                                w += init[i] as f64;
                                tol += 1e-6 * init[i].abs() as f64;
                            }
                            want[i] = Some((w, tol));
                        }
                    }
                    support::check(&got, &init, &want, &what);
                    cases += 1;
                }
            }
        }
    }
    cases
}

/// 1e-5 where the weight is exact in f16 with row-constant scales or blocks
/// a multiple of 32 columns wide (applied to the blocks' partial sums in
/// f32), else 6e-4 (the scaled weight rounded to f16 while staging).
fn exact_rel(w: &GpuWeight) -> f64 {
    let exact_in_f16 = matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3
    );
    let block_sums = w.block_cols < w.cols && w.block_cols.is_multiple_of(32);
    if exact_in_f16 && (w.block_cols >= w.cols || block_sums) {
        1e-5
    } else {
        6e-4
    }
}

/// Awkward sizes: rows not a multiple of any tile (SwiGLU needs them even),
/// columns not a multiple of the 32-column step; 36 and 200 for the norm
/// (multiples of 4), 37 with E4M3 128-column blocks as wide as the rows.
const SIZES: [(usize, usize); 3] = [(130, 200), (46, 1030), (258, 37)];
const NORM_SIZES: [(usize, usize); 3] = [(130, 200), (46, 1028), (258, 36)];

/// E4M3 blocks: 128² (Qwen's; partial sums scaled), 32 × 64 (several block
/// rows per tile), 16 × 32 (blocks narrower than a 64-column step: 32-column
/// steps), 16 × 48 (48 columns: not a multiple of the step, scaled while
/// staging).
const EXACT_FORMATS: [(Dtype, Scheme); 10] = [
    (Dtype::BF16, Scheme::None),
    (Dtype::F16, Scheme::None),
    (Dtype::BF16, Scheme::PerShard { broadcast: true }),
    (Dtype::F8E4M3, Scheme::PerChannel),
    (Dtype::F8E4M3, Scheme::PerShard { broadcast: false }),
    (Dtype::F8E4M3, Scheme::Block([128, 128])),
    (Dtype::F8E4M3, Scheme::Block([32, 64])),
    (Dtype::F8E4M3, Scheme::Block([16, 32])),
    (Dtype::F8E4M3, Scheme::Block([16, 48])),
    (Dtype::F32, Scheme::None),
];

/// The exact variant (default contexts), every format, T = 2 .. 64, x rows
/// from 1e-6 to 1e6.
#[test]
fn skinny_exact_matches_reference() {
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let cases = check_cases(
            t,
            &t.ctx,
            &Cases {
                seed: 0x5c1e_0001,
                formats: &EXACT_FORMATS,
                sizes: &SIZES,
                tokens: &TOKENS,
                rel: &exact_rel,
                wide_rows: true,
                norm: false,
                shards: 1,
                auto: false,
            },
        );
        assert!(cases > 0, "{}: no exact skinny case ran", t.name);
    }
}

/// The exact variant with the fused RMSNorm (what batched decode runs for
/// the projections of normalised rows).
#[test]
fn skinny_exact_fused_norm_matches_reference() {
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let cases = check_cases(
            t,
            &t.ctx,
            &Cases {
                seed: 0x5c1e_0002,
                formats: &formats,
                sizes: &NORM_SIZES,
                tokens: &TOKENS,
                rel: &exact_rel,
                wide_rows: true,
                norm: true,
                shards: 1,
                auto: false,
            },
        );
        assert!(cases > 0, "{}: no fused-norm skinny case ran", t.name);
    }
}

/// The fast variant (`MatmulPrecision::Fast`: x scaled per row, rounded to
/// f16, one product) and the plain one (`f16_matmul`: x rounded to f16 as
/// is), with and without the norm: 2e-3 · Σ|x·w|.
#[test]
fn skinny_fast_and_plain_match_reference() {
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::F8E4M3, Scheme::Block([16, 48])),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let fast = GpuContext::new(&ContextOptions {
            precision: MatmulPrecision::Fast,
            ..t.variant.options()
        })
        .unwrap();
        let plain = GpuContext::new(&ContextOptions {
            f16_matmul: true,
            ..t.variant.options()
        })
        .unwrap();
        let mut cases = 0;
        for (ctx, wide_rows) in [(&fast, true), (&plain, false)] {
            for norm in [false, true] {
                cases += check_cases(
                    t,
                    ctx,
                    &Cases {
                        seed: 0x5c1e_0003,
                        formats: &formats,
                        sizes: if norm { &NORM_SIZES } else { &SIZES },
                        tokens: &TOKENS,
                        rel: &|_| 2e-3,
                        wide_rows,
                        norm,
                        shards: 1,
                        auto: false,
                    },
                );
            }
        }
        assert!(cases > 0, "{}: no fast or plain skinny case ran", t.name);
    }
}

/// Weights of several shards (a fused projection of several checkpoint
/// tensors): `[k]` per-shard scales and per-shard 128² block grids, rows cut
/// at unaligned offsets, every epilogue (exact variant).
#[test]
fn skinny_several_shards_match_reference() {
    let formats = [
        (Dtype::F8E4M3, Scheme::PerShard { broadcast: false }),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::BF16, Scheme::PerShard { broadcast: false }),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let cases = check_cases(
            t,
            &t.ctx,
            &Cases {
                seed: 0x5c1e_0006,
                formats: &formats,
                sizes: &[(130, 300), (258, 136)],
                tokens: &[9, 16, 33],
                rel: &exact_rel,
                wide_rows: true,
                norm: false,
                shards: 3,
                auto: false,
            },
        );
        assert!(cases > 0, "{}: no multi-shard case ran", t.name);
    }
}

/// The multi-shard weights of the test above (CPU only, so it runs on every
/// machine): shards cover the rows in order, and dequantize.
#[test]
fn several_shard_weights_cover_their_rows() {
    let mut rng = Rng::new(7);
    for scheme in [
        Scheme::PerShard { broadcast: false },
        Scheme::Block([128, 128]),
    ] {
        for rows in [130usize, 258, 40] {
            let pw = packed_shards(&mut rng, Dtype::F8E4M3, rows, 136, scheme, 3);
            assert_eq!(pw.shards.len(), 3, "{rows}");
            let mut next = 0;
            for s in &pw.shards {
                assert_eq!(s.row_offset, next);
                next += s.rows;
            }
            assert_eq!(next, rows);
            assert_eq!(qwgpu_loader::dequantize(&pw).unwrap().len(), rows * 136);
        }
    }
}

/// `matmul_normed` with `Tuning::skinny_fused_norm` off (from 2 tokens):
/// an `rms_norm` launch into a scratch, then the plain skinny kernel (its
/// columns may be split), exact variant, against the f64 reference; the
/// launches are the norm's and the skinny kernel's.
#[test]
fn skinny_prenormed_matches_reference() {
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
    ];
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let mut ctx = GpuContext::new(&t.variant.options()).unwrap();
        ctx.tuning.skinny_fused_norm = false;
        ctx.tuning.skinny_min_t = 2;
        let cases = check_cases(
            t,
            &ctx,
            &Cases {
                seed: 0x5c1e_0007,
                formats: &formats,
                sizes: &NORM_SIZES,
                tokens: &[2, 9, 16],
                rel: &exact_rel,
                wide_rows: true,
                norm: true,
                shards: 1,
                auto: true,
            },
        );
        assert!(cases > 0, "{}: no prenormed case ran", t.name);
        let pw = packed(&mut Rng::new(4), Dtype::BF16, 130, 200, Scheme::None);
        let w = GpuWeight::upload(&ctx, &pw).unwrap();
        let labels = recorded(&ctx, &w, (130, 200), 9, true);
        assert_eq!(labels[0].0, "rms_norm", "{name}", name = t.name);
        assert_eq!(labels[1].0, "matmul_coop_skinny", "{name}", name = t.name);
    }
}

/// Past 64 tokens the forced kernel runs blocks of 64 (the grid's y).
#[test]
fn skinny_token_blocks_past_64() {
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let cases = check_cases(
            t,
            &t.ctx,
            &Cases {
                seed: 0x5c1e_0004,
                formats: &[(Dtype::BF16, Scheme::None)],
                sizes: &[(66, 100)],
                tokens: &[65, 130],
                rel: &exact_rel,
                wide_rows: false,
                norm: false,
                shards: 1,
                auto: false,
            },
        );
        assert!(cases > 0, "{}: no multi-block case ran", t.name);
    }
}

/// Bits of one case of `calls` on `ctx` (same weight, x and y each time).
fn bits_of(
    ctx: &GpuContext,
    dtype: Dtype,
    scheme: Scheme,
    tokens: usize,
    norm: bool,
    calls: &[Call],
) -> Vec<Vec<f32>> {
    // 160 columns: two 128-column FP8 blocks per row.
    let (rows, cols) = (72usize, 160usize);
    let mut rng = Rng::new(0x5c1e_0005);
    let pw = packed(&mut rng, dtype, rows, cols, scheme);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let x = ctx.upload("x", &rng.normal_vec(tokens * cols)).unwrap();
    let g = ctx.upload("norm weight", &rng.normal_vec(cols)).unwrap();
    let fused = FusedNorm {
        weight: &g,
        eps: EPS,
        one_plus: true,
    };
    let init = vec![f32::NAN; tokens * rows];
    calls
        .iter()
        .map(|&call| {
            run_call(
                ctx,
                &gw,
                &x,
                (0, cols),
                &init,
                (0, rows),
                tokens,
                Epilogue::Store,
                norm.then_some(&fused),
                call,
            )
            .unwrap_or_else(|e| panic!("{dtype:?} {scheme:?} T={tokens} {call:?}: {e}"))
        })
        .collect()
}

/// Whether `Auto` gives the bits of `other` ([`bits_of`]).
fn auto_is(
    ctx: &GpuContext,
    dtype: Dtype,
    scheme: Scheme,
    tokens: usize,
    norm: bool,
    other: Call,
) -> bool {
    let r = bits_of(ctx, dtype, scheme, tokens, norm, &[Call::Auto, other]);
    same(&r[0], &r[1])
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
}

/// Labels and grids of the launches `matmul` (`matmul_normed` with `norm`)
/// records for `tokens` rows of `w` (`[rows, cols]`).
fn recorded(
    ctx: &GpuContext,
    w: &GpuWeight,
    (rows, cols): (usize, usize),
    tokens: usize,
    norm: bool,
) -> Vec<(&'static str, [u32; 3])> {
    let x = ctx.upload("x", &vec![0.5f32; tokens * cols]).unwrap();
    let y = ctx.upload("y", &vec![0f32; tokens * rows]).unwrap();
    let g = ctx.upload("norm weight", &vec![0.1f32; cols]).unwrap();
    let args = contiguous(&x, &y, tokens, cols, rows);
    let fused = FusedNorm {
        weight: &g,
        eps: EPS,
        one_plus: true,
    };
    let d = if norm {
        matmul_normed(ctx, w, &args, &fused, Epilogue::Store)
    } else {
        matmul(ctx, w, &args, Epilogue::Store)
    }
    .unwrap_or_else(|e| panic!("T={tokens} norm {norm}: {e}"));
    d.iter().map(|d| (d.label, d.groups)).collect()
}

/// `MatmulPath::Auto` (and `matmul_normed`) run the skinny kernel for the
/// token counts of the context's tuning (`skinny_tokens`:
/// `Tuning::skinny_min_t ..= 64`) on adapters with cooperative matrices
/// where the weight is exact in f16 with row-constant scales or 128² FP8
/// blocks; below that range the small-T GEMV (and for blocks it would round,
/// 16 × 48), `mm_coop` past 64; with `Tuning::skinny` off, and on every
/// adapter without cooperative matrices, the paths before it. Moving the
/// tuning's bound moves the selection, and its tiers
/// (`Tuning::skinny_tiers`) set the launches' shapes (their grids).
/// `decode_block_tokens` follows. Runs on every context.
#[test]
fn auto_takes_skinny_in_the_tunings_token_range() {
    let block = Scheme::Block([128, 128]);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let name = &t.name;
        let coop = t.missing(&[Feature::CooperativeMatrix]).is_none();
        let probe = |ctx: &GpuContext, dtype, scheme| {
            let pw = packed(&mut Rng::new(2), dtype, 4, 256, scheme);
            GpuWeight::upload(ctx, &pw).unwrap()
        };
        let bf16 = probe(ctx, Dtype::BF16, Scheme::None);
        let fp8_block = probe(ctx, Dtype::F8E4M3, block);
        let fp8_narrow = probe(ctx, Dtype::F8E4M3, Scheme::Block([16, 48]));
        let range = skinny_tokens(ctx);
        assert_eq!(*range.start(), ctx.tuning.skinny_min_t, "{name}");
        assert_eq!(*range.end(), SKINNY_MAX_T, "{name}");
        if !coop {
            // The kernel refuses the adapter; Auto keeps the GEMV and the
            // GEMM whatever the tuning's range.
            let x = ctx.upload("x", &[0f32; 256 * 16]).unwrap();
            let y = ctx.upload("y", &[0f32; 4 * 16]).unwrap();
            let args = contiguous(&x, &y, 16, 256, 4);
            let err = matmul_skinny_with(
                ctx,
                &bf16,
                &args,
                Epilogue::Store,
                None,
                SkinnyShape::default(),
            );
            assert!(
                matches!(err, Err(KernelError::Unsupported { .. })),
                "{name}: the skinny kernel ran without cooperative matrices"
            );
            assert_eq!(decode_block_tokens(ctx, &bf16), MAX_VEC_T, "{name}");
            assert!(
                auto_is(ctx, Dtype::BF16, Scheme::None, 16, false, Call::Gemv),
                "{name}: Auto at T=16 is not the GEMV"
            );
            assert!(
                auto_is(
                    ctx,
                    Dtype::BF16,
                    Scheme::None,
                    33,
                    false,
                    Call::Path(MatmulPath::Scalar)
                ),
                "{name}: Auto at T=33 is not the GEMM"
            );
            let mut wide = GpuContext::new(&t.variant.options()).unwrap();
            wide.tuning.skinny_min_t = 2;
            wide.tuning.skinny_fused_norm = false;
            let w = probe(&wide, Dtype::BF16, Scheme::None);
            assert_eq!(decode_block_tokens(&wide, &w), MAX_VEC_T, "{name}");
            for tokens in [2usize, 9, 16] {
                for norm in [false, true] {
                    // (The norm stays fused into the GEMV.)
                    let labels = recorded(&wide, &w, (4, 256), tokens, norm);
                    assert_eq!(labels.len(), 1, "{name}: T={tokens} {labels:?}");
                    assert_eq!(labels[0].0, "matmul_gemv_t", "{name}: T={tokens}");
                }
            }
            continue;
        }
        assert_eq!(decode_block_tokens(ctx, &bf16), 64, "{name}");
        assert_eq!(decode_block_tokens(ctx, &fp8_block), 64, "{name}");
        assert_eq!(decode_block_tokens(ctx, &fp8_narrow), MAX_VEC_T, "{name}");
        // Both sides of the tuning's bound, one- and several-fragment counts.
        let lo = ctx.tuning.skinny_min_t as usize;
        let mut counts = vec![2usize, 8, 9, 16, 17, 33, 64, lo.saturating_sub(1), lo];
        counts.retain(|&c| (2..=64).contains(&c));
        counts.sort_unstable();
        counts.dedup();
        for tokens in counts {
            let skinny = range.contains(&(tokens as u32));
            let other = if skinny {
                Call::Skinny(SkinnyShape::default())
            } else if tokens <= MAX_VEC_T as usize {
                Call::Gemv
            } else {
                Call::Path(MatmulPath::Coop)
            };
            assert!(
                auto_is(ctx, Dtype::BF16, Scheme::None, tokens, false, other),
                "{name}: Auto at T={tokens} is not {other:?}"
            );
            let labels = recorded(ctx, &bf16, (4, 256), tokens, false);
            assert_eq!(
                labels[0].0 == "matmul_coop_skinny",
                skinny,
                "{name}: T={tokens} {labels:?}"
            );
            // `matmul_normed` takes at most MAX_VEC_T tokens (the model
            // fuses the norm in decode steps of up to 16 rows only).
            if skinny && tokens <= MAX_VEC_T as usize {
                assert!(
                    auto_is(
                        ctx,
                        Dtype::F8E4M3,
                        Scheme::PerChannel,
                        tokens,
                        true,
                        Call::Skinny(SkinnyShape::default())
                    ),
                    "{name}: matmul_normed at T={tokens} is not skinny"
                );
            }
        }
        assert!(
            auto_is(
                ctx,
                Dtype::BF16,
                Scheme::None,
                65,
                false,
                Call::Path(MatmulPath::Coop)
            ),
            "{name}: Auto at T=65 is not mm_coop"
        );
        // 128² FP8 blocks: skinny; 48-column blocks stay on the GEMV.
        assert!(
            auto_is(
                ctx,
                Dtype::F8E4M3,
                block,
                17,
                false,
                Call::Skinny(SkinnyShape::default())
            ),
            "{name}: FP8 128² blocks at T=17 are not skinny"
        );
        assert!(
            auto_is(
                ctx,
                Dtype::F8E4M3,
                Scheme::Block([16, 48]),
                16,
                false,
                Call::Gemv
            ),
            "{name}: FP8 16 × 48 blocks at T=16 left the GEMV"
        );

        // The tuning moves the bound: from 2 tokens, or never (65).
        let mut moved = GpuContext::new(&t.variant.options()).unwrap();
        moved.tuning.skinny_min_t = 2;
        let w = probe(&moved, Dtype::BF16, Scheme::None);
        assert_eq!(skinny_tokens(&moved), 2..=64, "{name}");
        for tokens in [2usize, 5] {
            let labels = recorded(&moved, &w, (4, 256), tokens, false);
            assert_eq!(labels[0].0, "matmul_coop_skinny", "{name}: T={tokens}");
        }
        moved.tuning.skinny_min_t = 65;
        assert_eq!(decode_block_tokens(&moved, &w), MAX_VEC_T, "{name}");
        for (tokens, other) in [
            (16usize, Call::Gemv),
            (17, Call::Path(MatmulPath::Coop)),
            (64, Call::Path(MatmulPath::Coop)),
        ] {
            let labels = recorded(&moved, &w, (4, 256), tokens, false);
            assert!(
                labels.iter().all(|l| l.0 != "matmul_coop_skinny"),
                "{name}: T={tokens} {labels:?}"
            );
            assert!(
                auto_is(&moved, Dtype::BF16, Scheme::None, tokens, false, other),
                "{name}: bound 65, Auto at T={tokens} is not {other:?}"
            );
        }
        // Tiers set the shape: 520 rows make 17, 9 or 5 workgroups of 2, 4
        // or 8 subgroups (splits forced to 1; the norm never splits).
        let one = |nf| SkinnyShape {
            subgroups: Some(nf),
            columns: Some(if nf == 8 { 64 } else { 32 }),
            splits: Some(1),
        };
        static TIERS: std::sync::OnceLock<[SkinnyTier; 2]> = std::sync::OnceLock::new();
        let tiers = TIERS.get_or_init(|| {
            [
                SkinnyTier {
                    max_t: 8,
                    shape: one(2),
                    normed: one(8),
                },
                SkinnyTier {
                    max_t: 32,
                    shape: one(8),
                    normed: one(4),
                },
            ]
        });
        moved.tuning.skinny_min_t = 2;
        moved.tuning.skinny_tiers = tiers;
        let (rows, cols) = (520usize, 256usize);
        let pw = packed(&mut Rng::new(3), Dtype::BF16, rows, cols, Scheme::None);
        let w = GpuWeight::upload(&moved, &pw).unwrap();
        for (tokens, norm, groups) in [
            (4usize, false, 17u32),
            (4, true, 5),
            (8, false, 17),
            (9, false, 5),
            (16, true, 9),
            (32, false, 5),
        ] {
            let labels = recorded(&moved, &w, (rows, cols), tokens, norm);
            assert_eq!(
                labels,
                [("matmul_coop_skinny", [groups, 1, 1])],
                "{name}: T={tokens} norm {norm}"
            );
            // Auto and the forced default shape are the tier's.
            let forced = moved.tuning.skinny_shape(tokens as u32, norm);
            assert_eq!(
                forced,
                tiers
                    .iter()
                    .find(|t| tokens as u32 <= t.max_t)
                    .map(|t| if norm { t.normed } else { t.shape })
                    .unwrap()
            );
        }

        // The switch off: the GEMV at 16 tokens, mm_coop at 33.
        let mut off = GpuContext::new(&t.variant.options()).unwrap();
        off.tuning.skinny = false;
        let bf16_off = probe(&off, Dtype::BF16, Scheme::None);
        assert!(skinny_tokens(&off).is_empty(), "{name}");
        assert_eq!(decode_block_tokens(&off, &bf16_off), MAX_VEC_T, "{name}");
        assert!(
            auto_is(&off, Dtype::BF16, Scheme::None, 16, false, Call::Gemv),
            "{name}: skinny off, Auto at T=16 is not the GEMV"
        );
        assert!(
            auto_is(
                &off,
                Dtype::BF16,
                Scheme::None,
                33,
                false,
                Call::Path(MatmulPath::Coop)
            ),
            "{name}: skinny off, Auto at T=33 is not mm_coop"
        );
    }
}

/// The module of `mm_coop_skinny` translates to SPIR-V (naga, on the CPU)
/// for every combination of its host-set overrides: subgroups 2, 4, 8 and
/// token fragments 1..=4 at subgroup sizes 16, 32 and 64, 32- and 64-column
/// steps, every weight
/// format, and the boolean switches (EXACT, SPLIT, NORM, BLOCKS; LO and PRE
/// follow them as the host leaves them).
#[test]
fn skinny_translates_to_spirv_for_every_override() {
    let spec = spirv::spec("mm_coop_skinny");
    assert_eq!(spec.needs, Needs::CooperativeMatrix);
    let module = Translator::coop(spec);
    let mut translated = 0;
    for sgs in [16u32, 32, 64] {
        for nf in [2u32, 4, 8] {
            for mf in 1u32..=4 {
                let formats: &[u32] = if sgs == 32 {
                    &[0, 1, 2, 3, 4, 5, 6]
                } else {
                    &[1, 3]
                };
                for &format in formats {
                    for bits in 0u32..32 {
                        let ck = if bits >> 4 == 1 { 64 } else { 32 };
                        // Split-K on every other format (its epilogue differs).
                        let kslice = if format % 2 == 1 { 256 } else { 0 };
                        module.translate(&[
                            ("WG", f64::from(nf * sgs)),
                            ("NF", f64::from(nf)),
                            ("MF", f64::from(mf)),
                            ("CK", f64::from(ck)),
                            ("KSLICE", f64::from(kslice)),
                            ("FORMAT", f64::from(format)),
                            ("EXACT", f64::from(bits & 1)),
                            ("SPLIT", f64::from((bits >> 1) & 1)),
                            ("NORM", f64::from((bits >> 2) & 1)),
                            ("BLOCKS", f64::from((bits >> 3) & 1)),
                        ]);
                        translated += 1;
                    }
                }
            }
        }
    }
    assert_eq!(translated, 3 * 4 * (7 + 2 + 2) * 32);
}

/// The 9B decode step's large projections at T = 2 .. 64 in BF16, FP8 with
/// 128² blocks (scaled per block in f32) and FP8 per-channel: the skinny
/// kernel in the adapter's shape (`nf=tuned`: its tuning's tier or the
/// kernel's own choice) and in every forced shape (2, 4, 8 subgroups ×
/// 32- and 64-column steps × no column splits or the kernel's split
/// choice), against what Auto ran before it (`kernel=gemv_t`: the small-T
/// GEMV up to 16 tokens; `kernel=gemm`: `mm_coop` above) and the one-token
/// GEMV's bandwidth on the same weight (`t=1`). The projections of
/// normalised rows (`gdn.in_proj_qkvz`, `mlp.gate_up`) run up to 16 tokens
/// as batched decode runs them: with the fused RMSNorm (`norm=fused`: no
/// splits, so only the split choice `auto` is run there) and with an
/// `rms_norm` launch first (`norm=prenorm`, its time included:
/// `Tuning::skinny_fused_norm` off); above 16 the model normalises the rows
/// first and these run plain (`norm=plain`). GB/s counts the weight bytes
/// once per launch.
///
/// `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture --exact matmul_coop_skinny::skinny_bandwidth`
///
/// `SKINNY_BENCH_FORMATS` (comma list of `BF16`, `FP8-block128`,
/// `FP8-channel`) and `SKINNY_BENCH_T` (comma list of token counts) narrow
/// the sweep.
///
/// Output: `BENCH skinny model=9B shape=S format=F norm=N t=T kernel=K nf=.. ck=.. splits=.. grid=XxYxZ us=U gbps=G t1_pct=P vs_before=R`
/// (P = this GB/s ÷ the same shape's one-token GEMV GB/s; R = the time of
/// what Auto ran before ÷ this time); per format, T, class (`plain`,
/// `fused`, `prenorm` as `norm=` above) and kernel
/// `BENCH skinny_summary …` over the class's shapes weighted by their
/// launches per token (Σ count·bytes ÷ Σ count·seconds); and per T and
/// class the fastest forced shape, per format and over all formats
/// (`BENCH skinny_best format=all …`: least summed time): the values for
/// `Tuning::skinny_tiers` (`shape` from `plain`, `normed` from `fused`;
/// `prenorm` against `fused` for `Tuning::skinny_fused_norm`), and the
/// smallest T whose best beats `before` for `Tuning::skinny_min_t`.
#[test]
#[ignore]
fn skinny_bandwidth() {
    let ctx = GpuContext::new(&ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    let mut before = GpuContext::new(&ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    before.tuning.skinny = false;
    let software = ctx.software || ctx.info.device_type == wgpu::DeviceType::Cpu;
    println!(
        "adapter: {describe} ({shapes}); skinny tokens {range:?}, tiers {tiers:?}",
        describe = ctx.describe(),
        shapes = if software {
            "software: shapes scaled down 16x per side"
        } else {
            "real shapes"
        },
        range = skinny_tokens(&ctx),
        tiers = ctx.tuning.skinny_tiers,
    );
    if !testing::require("skinny_bandwidth", &ctx, &[Feature::CooperativeMatrix]) {
        return;
    }
    let div = if software { 16 } else { 1 };
    let target: u64 = if software { 1 } else { 1 << 30 };
    let timer = bench::Timer::new(&ctx, if software { 1 } else { 5 });
    // (name, rows, cols, epilogue, launches per token of the 9B, reads
    // normalised rows)
    let shapes = [
        ("gdn.in_proj_qkvz", 12288, 4096, Epilogue::Store, 24, true),
        ("attn.o_proj", 4096, 4096, Epilogue::Accumulate, 8, false),
        ("mlp.gate_up", 24576, 4096, Epilogue::SwiGlu, 32, true),
        ("mlp.down", 4096, 12288, Epilogue::Accumulate, 32, false),
    ];
    let list = |var: &str| -> Option<Vec<String>> {
        std::env::var(var)
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
    };
    let all_formats = [
        (Dtype::BF16, Scheme::None, "BF16"),
        (Dtype::F8E4M3, Scheme::Block([128, 128]), "FP8-block128"),
        (Dtype::F8E4M3, Scheme::PerChannel, "FP8-channel"),
    ];
    let formats: Vec<_> = match list("SKINNY_BENCH_FORMATS") {
        Some(names) => all_formats
            .into_iter()
            .filter(|f| names.iter().any(|n| n == f.2))
            .collect(),
        None => all_formats.to_vec(),
    };
    let ts: Vec<usize> = list("SKINNY_BENCH_T").map_or(vec![2, 4, 8, 12, 16, 24, 32, 64], |v| {
        v.iter().filter_map(|s| s.parse().ok()).collect()
    });
    // Kernel 0: the adapter's shape; then the forced ones; the last: before.
    let mut kernels = vec![SkinnyShape::default()];
    for nf in [2, 4, 8] {
        for ck in [32, 64] {
            for splits in [Some(1), None] {
                kernels.push(SkinnyShape {
                    subgroups: Some(nf),
                    columns: Some(ck),
                    splits,
                });
            }
        }
    }
    let before_k = kernels.len();
    let kname = |ki: usize, t: usize| {
        if ki == before_k {
            if t <= MAX_VEC_T as usize {
                "gemv_t"
            } else {
                "gemm"
            }
        } else {
            "skinny"
        }
    };
    let fields = |ki: usize| {
        if ki == 0 {
            return "nf=tuned ck=tuned splits=tuned".to_string();
        }
        if ki == before_k {
            return "nf=- ck=- splits=-".to_string();
        }
        let s = kernels[ki];
        let f = |v: Option<u32>| v.map_or("auto".to_string(), |v| v.to_string());
        format!(
            "nf={nf} ck={ck} splits={splits}",
            nf = f(s.subgroups),
            ck = f(s.columns),
            splits = f(s.splits)
        )
    };
    // Classes of launches: without a norm, with the fused norm, with the
    // norm as an `rms_norm` launch first (`Tuning::skinny_fused_norm` off).
    const PLAIN: u8 = 0;
    const FUSED: u8 = 1;
    const PRENORM: u8 = 2;
    // (format, t, class, kernel) -> (Σ count·bytes, Σ count·secs); T = 1
    // sums per (format, t, class).
    type Key = (usize, usize, u8, usize);
    let mut sums: std::collections::BTreeMap<Key, (f64, f64)> = Default::default();
    let mut t1: std::collections::BTreeMap<(usize, usize, u8), (f64, f64)> = Default::default();
    let max_t = ts.iter().copied().max().unwrap_or(1).max(1);
    for (fi, &(dtype, scheme, fname)) in formats.iter().enumerate() {
        for &(name, rows, cols, epi, count, reads_norm) in &shapes {
            let (rows, cols) = (rows / div, cols / div);
            let weights = bench::copies(&ctx, name, dtype, scheme, rows, cols, target);
            let weights_before = bench::copies(&before, name, dtype, scheme, rows, cols, target);
            let bytes = weights[0].bytes() as f64;
            let n = count as f64;
            let x = ctx.upload("x", &vec![0.5f32; max_t * cols]).unwrap();
            let width = if epi == Epilogue::SwiGlu {
                rows / 2
            } else {
                rows
            };
            let y = ctx.storage("y", (max_t * width * 4) as u64).unwrap();
            let xb = before.upload("x", &vec![0.5f32; max_t * cols]).unwrap();
            let yb = before.storage("y", (max_t * width * 4) as u64).unwrap();
            let g = ctx.upload("norm weight", &vec![0.1f32; cols]).unwrap();
            let gb = before.upload("norm weight", &vec![0.1f32; cols]).unwrap();
            // PRENORM: the normalised rows.
            let xn = ctx.storage("normed x", (max_t * cols * 4) as u64).unwrap();
            // Seconds per weight, and the first launch's grid.
            let time = |ctx: &GpuContext,
                        ws: &[GpuWeight],
                        x: &wgpu::Buffer,
                        y: &wgpu::Buffer,
                        g: &wgpu::Buffer,
                        tokens: usize,
                        class: u8,
                        shape: Option<SkinnyShape>| {
                let args = contiguous(x, y, tokens, cols, width);
                let fused = FusedNorm {
                    weight: g,
                    eps: EPS,
                    one_plus: true,
                };
                let normed_args = MatmulArgs { x: &xn, ..args };
                let launches: Vec<Dispatch> = ws
                    .iter()
                    .flat_map(|w| match (shape, class) {
                        (Some(s), PRENORM) => {
                            let view = TensorView::f32_rows(x, 0, tokens as u32, cols as u32);
                            let mut d = vec![rms_norm(ctx, &view, g, &xn, EPS, true).unwrap()];
                            d.extend(
                                matmul_skinny_with(ctx, w, &normed_args, epi, None, s).unwrap(),
                            );
                            d
                        }
                        (Some(s), FUSED) => {
                            matmul_skinny_with(ctx, w, &args, epi, Some(&fused), s).unwrap()
                        }
                        (Some(s), _) => matmul_skinny_with(ctx, w, &args, epi, None, s).unwrap(),
                        (None, PLAIN) => matmul(ctx, w, &args, epi).unwrap(),
                        (None, _) => matmul_normed(ctx, w, &args, &fused, epi).unwrap(),
                    })
                    .collect();
                let grid = launches
                    .iter()
                    .find(|d| d.label == "matmul_coop_skinny")
                    .map_or([0; 3], |d| d.groups);
                let refs: Vec<&Dispatch> = launches.iter().collect();
                let total = ws[0].bytes() * ws.len() as u64;
                let secs = timer.per_launch(ctx, &refs, bench::reps_for(total, target))
                    * refs.len() as f64
                    / ws.len() as f64;
                (secs, grid)
            };
            let c1 = if reads_norm { FUSED } else { PLAIN };
            let (one, _) = time(&ctx, &weights, &x, &y, &g, 1, c1, None);
            println!(
                "BENCH skinny model=9B shape={name} format={fname} norm={norm} t=1 kernel=gemv nf=- ck=- splits=- grid=- us={us:.2} gbps={gbps:.1} t1_pct=100.0 vs_before=1.00",
                norm = class_name(c1),
                us = one * 1e6,
                gbps = bytes / one / 1e9
            );
            for &tokens in &ts {
                // Decode fuses the norm up to 16 tokens (and may run it
                // first instead); above, the rows come normalised.
                let normed = reads_norm && tokens <= MAX_VEC_T as usize;
                let classes: &[u8] = if normed { &[FUSED, PRENORM] } else { &[PLAIN] };
                let (old, _) = time(
                    &before,
                    &weights_before,
                    &xb,
                    &yb,
                    &gb,
                    tokens,
                    if normed { FUSED } else { PLAIN },
                    None,
                );
                for &class in classes {
                    let e = t1.entry((fi, tokens, class)).or_default();
                    e.0 += n * bytes;
                    e.1 += n * one;
                    // (Past the forced shapes, None: before.)
                    let runs = kernels.iter().copied().map(Some).chain([None]);
                    for (ki, shape) in runs.enumerate() {
                        // The fused norm never splits the columns: `auto` only.
                        if class == FUSED && shape.is_some_and(|s| s.splits == Some(1)) {
                            continue;
                        }
                        let (secs, grid) = match shape {
                            None => (old, [0; 3]),
                            Some(_) => time(&ctx, &weights, &x, &y, &g, tokens, class, shape),
                        };
                        let e = sums.entry((fi, tokens, class, ki)).or_default();
                        e.0 += n * bytes;
                        e.1 += n * secs;
                        println!(
                            "BENCH skinny model=9B shape={name} format={fname} norm={norm} t={tokens} kernel={k} {fields} grid={gx}x{gy}x{gz} us={us:.2} gbps={gbps:.1} t1_pct={pct:.1} vs_before={vs:.2}",
                            norm = class_name(class),
                            k = kname(ki, tokens),
                            fields = fields(ki),
                            gx = grid[0],
                            gy = grid[1],
                            gz = grid[2],
                            us = secs * 1e6,
                            gbps = bytes / secs / 1e9,
                            pct = 100.0 * one / secs,
                            vs = old / secs
                        );
                    }
                }
            }
        }
    }
    for (&(fi, tokens, class, ki), &(b, s)) in &sums {
        let (tb, tsecs) = t1[&(fi, tokens, class)];
        let (_, old) = sums[&(fi, tokens, class, before_k)];
        println!(
            "BENCH skinny_summary model=9B format={fname} t={tokens} class={c} kernel={k} {fields} us={us:.1} gbps={gbps:.1} t1_pct={pct:.1} vs_before={vs:.2}",
            fname = formats[fi].2,
            c = class_name(class),
            k = kname(ki, tokens),
            fields = fields(ki),
            us = s * 1e6,
            gbps = b / s / 1e9,
            pct = 100.0 * (b / s) / (tb / tsecs),
            vs = old / s
        );
    }
    // The fastest forced shape per T and class, per format and over all of them.
    let mut groups: Vec<(Option<usize>, usize, u8)> = Vec::new();
    for &(fi, tokens, class, _) in sums.keys() {
        for g in [(Some(fi), tokens, class), (None, tokens, class)] {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    groups.sort();
    for (fsel, tokens, class) in groups {
        let total = |ki: usize| -> Option<(f64, f64)> {
            let mut acc = (0.0, 0.0);
            let mut any = false;
            for fi in 0..formats.len() {
                if fsel.is_some_and(|f| f != fi) {
                    continue;
                }
                let v = sums.get(&(fi, tokens, class, ki))?;
                acc.0 += v.0;
                acc.1 += v.1;
                any = true;
            }
            any.then_some(acc)
        };
        let mut t1s = (0.0, 0.0);
        for fi in 0..formats.len() {
            if fsel.is_none_or(|f| f == fi) {
                if let Some(v) = t1.get(&(fi, tokens, class)) {
                    t1s.0 += v.0;
                    t1s.1 += v.1;
                }
            }
        }
        let Some(old) = total(before_k) else { continue };
        let best = (1..before_k)
            .filter_map(|ki| total(ki).map(|v| (ki, v)))
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        let tuned = total(0);
        if let (Some((ki, (b, s))), Some((_, ts0))) = (best, tuned) {
            println!(
                "BENCH skinny_best model=9B format={fname} t={tokens} class={c} {fields} t1_pct={pct:.1} tuned_t1_pct={tpct:.1} before_t1_pct={bpct:.1} vs_before={vs:.2} beats_before={beats}",
                fname = fsel.map_or("all", |f| formats[f].2),
                c = class_name(class),
                fields = fields(ki),
                pct = 100.0 * (b / s) / (t1s.0 / t1s.1),
                tpct = 100.0 * (b / ts0) / (t1s.0 / t1s.1),
                bpct = 100.0 * (old.0 / old.1) / (t1s.0 / t1s.1),
                vs = old.1 / s,
                beats = s < old.1
            );
        }
    }
}

/// [`skinny_bandwidth`]'s name of a class of launches (no norm, the fused
/// norm, an `rms_norm` launch first).
fn class_name(class: u8) -> &'static str {
    match class {
        0 => "plain",
        1 => "fused",
        _ => "prenorm",
    }
}

/// Timing helpers of [`skinny_bandwidth`] (as `gemv_bench`'s).
mod bench {
    use super::*;

    /// Bytes of weight copies a timed pass rotates over (beyond the H100's 50 MiB L2).
    const ROTATE_BYTES: u64 = 256 << 20;

    /// A `[rows, cols]` weight of `dtype` with scales `scheme` uploaded
    /// enough times to rotate past the L2 cache (once on software adapters).
    pub fn copies(
        ctx: &GpuContext,
        name: &str,
        dtype: Dtype,
        scheme: Scheme,
        rows: usize,
        cols: usize,
        target: u64,
    ) -> Vec<GpuWeight> {
        let mut rng = Rng::new(0x5c1e_b000 ^ rows as u64);
        let mut pw = packed(&mut rng, dtype, rows, cols, scheme);
        pw.name = name.into();
        let first = GpuWeight::upload(ctx, &pw).unwrap();
        let n = if target <= 1 {
            1
        } else {
            ROTATE_BYTES.div_ceil(first.bytes()).clamp(1, 64) as usize
        };
        let mut out = vec![first];
        for _ in 1..n {
            out.push(GpuWeight::upload(ctx, &pw).unwrap());
        }
        out
    }

    /// Launch repetitions so one timed pass moves about `target` bytes.
    pub fn reps_for(bytes_per_round: u64, target: u64) -> usize {
        (target / bytes_per_round.max(1)).clamp(1, 64) as usize
    }

    /// GPU seconds per launch: the median of `samples` timed submissions after
    /// warm-ups (timestamps where the adapter has them, else wall time).
    pub struct Timer {
        query: Option<(wgpu::QuerySet, wgpu::Buffer, f64)>,
        samples: usize,
        /// Whether a timed pass ran already (the clocks are up: later
        /// warm-ups are short).
        warm: std::cell::Cell<bool>,
    }

    impl Timer {
        pub fn new(ctx: &GpuContext, samples: usize) -> Self {
            let query = ctx.caps.timestamps.then(|| {
                (
                    ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("skinny bench"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    }),
                    ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("skinny bench timestamps"),
                        size: 16,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    ctx.queue.get_timestamp_period() as f64 * 1e-9,
                )
            });
            Self {
                query,
                samples,
                warm: std::cell::Cell::new(false),
            }
        }

        pub fn per_launch(&self, ctx: &GpuContext, launches: &[&Dispatch], reps: usize) -> f64 {
            let n = (launches.len() * reps).max(1) as f64;
            let once = || {
                let t0 = std::time::Instant::now();
                let mut enc = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("skinny bench"),
                        timestamp_writes: self.query.as_ref().map(|(q, _, _)| {
                            wgpu::ComputePassTimestampWrites {
                                query_set: q,
                                beginning_of_pass_write_index: Some(0),
                                end_of_pass_write_index: Some(1),
                            }
                        }),
                    });
                    for _ in 0..reps {
                        for l in launches {
                            l.record(&mut pass);
                        }
                    }
                }
                match &self.query {
                    Some((q, resolve, period)) => {
                        enc.resolve_query_set(q, 0..2, resolve, 0);
                        ctx.queue.submit([enc.finish()]);
                        let b = ctx.read_bytes(resolve, 0, 16).unwrap();
                        let ts: Vec<u64> = bytemuck::pod_collect_to_vec(&b);
                        ts[1].saturating_sub(ts[0]) as f64 * period / n
                    }
                    None => {
                        ctx.queue.submit([enc.finish()]);
                        ctx.wait("skinny bench").unwrap();
                        t0.elapsed().as_secs_f64() / n
                    }
                }
            };
            // Warm-up: 2 submissions and, on a real GPU, 0.5 s of this work
            // the first time (clocks), 0.03 s later (caches, this pipeline).
            let start = std::time::Instant::now();
            let secs = if self.warm.replace(true) { 0.03 } else { 0.5 };
            let mut warm = 0;
            while warm < 2 || (self.samples > 1 && start.elapsed().as_secs_f64() < secs) {
                once();
                warm += 1;
            }
            let mut samples: Vec<f64> = (0..self.samples).map(|_| once()).collect();
            samples.sort_by(f64::total_cmp);
            samples[samples.len() / 2]
        }
    }
}
