//! The MoE grouped GEMM on 128-pair grouping tiles (`moe_group`'s `GTILE`):
//! the tensor-core grouped GEMM (`moe_group_coop`, one tile per workgroup)
//! and the scalar one (each tile in two halves of 64). Against an f64 CPU
//! reference of `y[q] = x[q / x_div] · W_e(q)ᵀ` with
//! `qwgpu_loader::dequantize`'s exact f32 weights; tolerance per output
//! (`support::expected`) `rel · Σ|x·w|` (plus 1e-6 · |y₀| for Accumulate):
//! - scalar GEMM and the exact coop variant where W is exact in f16 (BF16,
//!   F16, E4M3 with per-channel scales): 1e-5 (f32 sums; x keeps 22 bits);
//! - exact coop with weights rounded to f16 (E4M3 × 128-column block scales
//!   as f16(q·s), F32): 6e-4 (2⁻¹¹ per weight);
//! - fast and plain coop variants (x rounded to f16): 2e-3;
//! - 4-bit experts (format Q4, staged as `f16((q − zero)·scale)`: 2⁻¹¹ per
//!   weight): fast and plain 2e-3, the exact variant (forced) 6e-4; `Auto`
//!   takes them only with fast precision or `f16_matmul`.
//!
//! Rows of pairs routed past the experts, and everything outside the written
//! rows, keep their bits (NaN poison). Tests of the coop kernel declare
//! [`Feature::CooperativeMatrix`]: recorded skips on lavapipe, a failure on a
//! hardware adapter without it. Forcing the coop path where it cannot run is
//! a typed error. On adapters without cooperative matrices (CI's lavapipe)
//! `emulated_coop_grouped_matches_reference` runs the kernel's own WGSL with
//! its fragment ops replaced by scalar stand-ins, so everything but the
//! tensor-core instructions (gathering, staging, scaling, pieces, epilogues)
//! is checked here too (4-bit experts too). `grouped_coop_bench_35b_a3b` and
//! `grouped_coop_q4_bench_35b_a3b` (`#[ignore]`d) print `BENCH` lines at the
//! 35B-A3B expert shapes.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::int4::{upload_int4, upload_int4_pieces};
use qwgpu_kernels::matmul::{Epilogue, MatmulPath};
use qwgpu_kernels::moe::grouped::{
    coop, coop_q4, matmul_grouped_with, moe_group, GroupScratch, GroupedArgs,
};
use qwgpu_kernels::testing::cases::int4 as int4_cases;
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::view::{Dtype as QDtype, TensorView};
use qwgpu_kernels::{
    ContextOptions, Dispatch, GpuContext, GpuWeight, KernelError, MatmulPrecision, WeightFormat,
};

mod support;
use qwgpu_ops::rng::{Rng, SplitMix64};
use support::bench::trusted;
use support::spirv::{self, Translator};
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];

/// A case's experts: a packed checkpoint weight (dtype, scale scheme), or
/// 4-bit ones (`testing::cases::int4::make_q4`: random nibbles, zero points
/// and f16 scales per group of `group` columns of each row, so a gate row and
/// its up row have groups of their own) uploaded as format Q4.
#[derive(Debug, Clone, Copy)]
enum Weight {
    Packed(Dtype, Scheme),
    Q4 { group: usize },
}
use Weight::Packed;

/// One grouped case.
struct Case {
    weight: Weight,
    experts: usize,
    rpe: usize,
    cols: usize,
    tokens: usize,
    k: usize,
    /// Weight pieces' row counts (one piece when it holds all rows).
    split: Vec<usize>,
}

/// A grouped GEMM under test: `matmul_grouped_with`'s signature without the
/// path.
trait GroupedGemm:
    Fn(
    &GpuContext,
    &GpuWeight,
    &GroupedArgs,
    &GroupScratch,
    Epilogue,
) -> Result<Vec<Dispatch>, KernelError>
{
}

impl<F> GroupedGemm for F where
    F: Fn(
        &GpuContext,
        &GpuWeight,
        &GroupedArgs,
        &GroupScratch,
        Epilogue,
    ) -> Result<Vec<Dispatch>, KernelError>
{
}

type Gemm<'a> = &'a dyn GroupedGemm;

/// How `check_case` runs a case.
struct Run<'a> {
    path: MatmulPath,
    /// Runs the GEMM instead of `matmul_grouped_with(.., path)` (the emulation).
    gemm: Option<Gemm<'a>>,
    tile_pairs: u32,
    rel: f64,
    /// x rows are multiplied by 10^e, e uniform in `[-x_exp, x_exp]`.
    x_exp: i32,
}

/// Runs `c` with `epi` as `run` says and checks every output against the
/// reference; returns the whole y buffer.
fn check_case(
    ctx: &GpuContext,
    rng: &mut Rng,
    c: &Case,
    epi: Epilogue,
    run: &Run,
    what: &str,
) -> Vec<f32> {
    let rows = c.experts * c.rpe;
    let (wdq, gw) = match c.weight {
        Packed(dtype, scheme) => {
            let pw = support::packed_one_shard(rng, dtype, rows, c.cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            (wdq, GpuWeight::upload_pieces(ctx, &pw, &c.split).unwrap())
        }
        Weight::Q4 { group } => {
            let q = int4_cases::make_q4(rng, rows, c.cols, group, true);
            let gw = upload_int4_pieces(ctx, "q4 experts", &q.host(), &c.split).unwrap();
            assert_eq!(gw.format, WeightFormat::Q4);
            (q.w, gw)
        }
    };
    let pairs = c.tokens * c.k;
    // Skewed routing (expert 0 on many pairs, so some expert fills several
    // tiles), and a few pairs past the experts (left out).
    let ids: Vec<u32> = (0..pairs)
        .map(|q| {
            let u = rng.uniform();
            if q % 7 == 3 {
                c.experts as u32 + 1
            } else if u < 0.4 {
                0
            } else {
                (u * c.experts as f32) as u32 % c.experts as u32
            }
        })
        .collect();
    let width = if epi == Epilogue::SwiGlu {
        c.rpe / 2
    } else {
        c.rpe
    };
    let (x_stride, y_stride) = (c.cols + 4, width + 3);
    let mut xbuf = vec![f32::NAN; (c.tokens - 1) * x_stride + c.cols + 1];
    let mut xrows = Vec::new();
    for t in 0..c.tokens {
        let mut r = rng.normal_vec(c.cols);
        let span = (2 * run.x_exp + 1) as f32;
        let f = 10f32.powi((rng.uniform() * span) as i32 - run.x_exp);
        r.iter_mut().for_each(|v| *v *= f);
        xbuf[t * x_stride..][..c.cols].copy_from_slice(&r);
        xrows.push(r);
    }
    let ylen = (pairs - 1) * y_stride + width + 2;
    let init = if epi == Epilogue::Accumulate {
        rng.normal_vec(ylen)
    } else {
        vec![f32::NAN; ylen]
    };
    let x = ctx.upload("x", &xbuf).unwrap();
    let idb = ctx.upload("ids", &ids).unwrap();
    let y = ctx.upload("y", &init).unwrap();
    let scratch =
        GroupScratch::with_tile_pairs(ctx, pairs as u32, c.experts as u32, run.tile_pairs).unwrap();
    // Poison the scratch: stale tile-table entries must not matter.
    ctx.fill_f32(&scratch.buffer, f32::from_bits(0x7fff_fff0));
    let ids_view = TensorView::words(&idb, 0, pairs as u32);
    let mut d = vec![moe_group(ctx, &ids_view, c.experts as u32, &scratch).unwrap()];
    let f32_rows = |b, rows: usize, cols: usize, stride: usize| {
        TensorView::rows(b, QDtype::F32, 0, [rows as u64, cols as u64], stride as u64)
    };
    let args = GroupedArgs {
        x: f32_rows(&x, c.tokens, c.cols, x_stride),
        x_row_div: c.k as u32,
        y: f32_rows(&y, pairs, width, y_stride),
        rows_per_expert: c.rpe as u32,
    };
    let label = format!(
        "{what} {weight:?} E={experts} rpe={rpe} cols={cols} T={tokens} k={k} \
         split {split:?} {epi:?} {path:?} tiles of {tile_pairs} f16_matmul {f16} {precision:?}",
        weight = c.weight,
        experts = c.experts,
        rpe = c.rpe,
        cols = c.cols,
        tokens = c.tokens,
        k = c.k,
        split = c.split,
        path = run.path,
        tile_pairs = run.tile_pairs,
        f16 = ctx.f16_matmul,
        precision = ctx.precision,
    );
    let gemm = match run.gemm {
        Some(g) => g(ctx, &gw, &args, &scratch, epi),
        None => matmul_grouped_with(ctx, &gw, &args, &scratch, epi, run.path),
    };
    d.extend(gemm.unwrap_or_else(|e| panic!("{label}: {e}")));
    let refs: Vec<_> = d.iter().collect();
    ctx.run("moe coop test", &refs).unwrap();
    let got = ctx.read_f32(&y, 0, ylen).unwrap();
    let mut want = vec![None; ylen];
    for (q, &e) in ids.iter().enumerate() {
        if e as usize >= c.experts {
            continue;
        }
        let we = &wdq[e as usize * c.rpe * c.cols..][..c.rpe * c.cols];
        for col in 0..width {
            let (mut w, mut tol) = support::expected(
                &xrows[q / c.k],
                we,
                c.cols,
                c.rpe,
                col,
                epi == Epilogue::SwiGlu,
                run.rel,
            );
            let i = q * y_stride + col;
            if epi == Epilogue::Accumulate {
                w += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((w, tol));
        }
    }
    support::check(&got, &init, &want, &label);
    got
}

/// Cases for the scalar GEMM on 128-pair tiles.
fn cases() -> Vec<Case> {
    vec![
        // 160 pairs: expert 0 gets ~70, more than half a 128-pair tile.
        Case {
            weight: Packed(Dtype::BF16, Scheme::None),
            experts: 5,
            rpe: 48,
            cols: 200,
            tokens: 80,
            k: 2,
            split: vec![240],
        },
        // Over 128 pairs on expert 0 (two tiles of one expert), pieces
        // splitting experts.
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::PerChannel),
            experts: 4,
            rpe: 64,
            cols: 72,
            tokens: 150,
            k: 3,
            split: vec![100, 156],
        },
        // 128 × 128 blocks.
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::Block([128, 128])),
            experts: 3,
            rpe: 64,
            cols: 300,
            tokens: 90,
            k: 2,
            split: vec![192],
        },
    ]
}

/// The scalar grouped GEMM on 128-pair tiles (each taken in two halves of
/// 64), on every context.
#[test]
fn scalar_grouped_gemm_takes_128_pair_tiles_in_halves() {
    for t in testing::contexts() {
        let mut rng = Rng::new(testing::seed(0x0e0c_0001));
        let run = Run {
            path: MatmulPath::Scalar,
            gemm: None,
            tile_pairs: 128,
            rel: 1e-5,
            x_exp: 4,
        };
        for c in cases() {
            for epi in EPILOGUES {
                check_case(&t.ctx, &mut rng, &c, epi, &run, &t.name);
            }
        }
    }
}

/// Cases for the coop kernel: awkward expert counts (1, 3, 5, 7), rows per
/// expert not multiples of the 128-row tile (over one tile: 200, 258), columns
/// not multiples of the 32-column step (unaligned x rows too: 37, 301),
/// experts with more than one 128-pair tile, pieces splitting experts (and a
/// gate from its up rows), per-channel / per-shard / block scales.
fn coop_cases() -> Vec<Case> {
    vec![
        Case {
            weight: Packed(Dtype::BF16, Scheme::None),
            experts: 5,
            rpe: 200,
            cols: 72,
            tokens: 130,
            k: 2,
            split: vec![1000],
        },
        Case {
            weight: Packed(Dtype::F16, Scheme::None),
            experts: 1,
            rpe: 258,
            cols: 37,
            tokens: 300,
            k: 1,
            split: vec![258],
        },
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::PerChannel),
            experts: 3,
            rpe: 48,
            cols: 301,
            tokens: 90,
            k: 3,
            split: vec![70, 74],
        },
        Case {
            weight: Packed(Dtype::BF16, Scheme::PerShard { broadcast: true }),
            experts: 7,
            rpe: 34,
            cols: 64,
            tokens: 61,
            k: 4,
            split: vec![238],
        },
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::Block([128, 128])),
            experts: 3,
            rpe: 160,
            cols: 300,
            tokens: 120,
            k: 2,
            split: vec![480],
        },
        Case {
            weight: Packed(Dtype::F32, Scheme::None),
            experts: 2,
            rpe: 40,
            cols: 50,
            tokens: 70,
            k: 2,
            split: vec![80],
        },
    ]
}

/// Whether W is exact in f16 with a scale constant along each row.
fn exact_in_f16(c: &Case) -> bool {
    match c.weight {
        Packed(dtype, scheme) => {
            let rows_scaled = !matches!(scheme, Scheme::Block(_)) || c.cols <= 128;
            matches!(dtype, Dtype::BF16 | Dtype::F16 | Dtype::F8E4M3) && rows_scaled
        }
        Weight::Q4 { .. } => false,
    }
}

/// A context like `t`'s (checked or trusted modules) with `precision` and
/// `f16_matmul`.
fn context_like(t: &testing::TestContext, precision: MatmulPrecision, f16: bool) -> GpuContext {
    GpuContext::new(&ContextOptions {
        precision,
        f16_matmul: f16,
        ..t.variant.options()
    })
    .unwrap()
}

/// Checks that `ctx`, which has cooperative matrices, runs the coop grouped
/// GEMM for BF16: refusing an adapter with the feature is a failure.
fn assert_coop_runs(t: &testing::TestContext, ctx: &GpuContext) {
    let pw = support::packed_one_shard(&mut Rng::new(1), Dtype::BF16, 4, 8, Scheme::None);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    assert!(
        coop::supported(ctx, &gw),
        "{t_name}: the adapter has cooperative matrices, yet the coop grouped GEMM refuses it: {why}",
        t_name = t.name,
        why = coop::unsupported_reason(ctx, &gw)
    );
}

/// The exact coop variant (default contexts) on every case and epilogue,
/// 128- and 64-pair tiles, x rows from 1e-6 to 1e6 (past f16's range: the
/// per-row power-of-two scale).
#[test]
fn coop_grouped_exact_matches_reference() {
    let mut ran = 0;
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        assert_coop_runs(t, &t.ctx);
        let mut rng = Rng::new(testing::seed(0x0e0c_c001));
        for c in coop_cases() {
            for tile_pairs in [128, 64] {
                for epi in EPILOGUES {
                    let run = Run {
                        path: MatmulPath::Coop,
                        gemm: None,
                        tile_pairs,
                        rel: if exact_in_f16(&c) { 1e-5 } else { 6e-4 },
                        x_exp: 6,
                    };
                    check_case(&t.ctx, &mut rng, &c, epi, &run, &t.name);
                    ran += 1;
                }
            }
        }
    }
    eprintln!("{ran} exact coop cases");
}

/// The fast variant (`MatmulPrecision::Fast`: f16(x·s)) and the plain one
/// (`f16_matmul`: f16(x), x rows within 1e-2 .. 1e2 so nothing overflows):
/// 2e-3 · Σ|x·w|, every case and epilogue.
#[test]
fn coop_grouped_fast_and_plain_match_reference() {
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let mut rng = Rng::new(testing::seed(0x0e0c_c002));
        for (ctx, x_exp) in [
            (context_like(t, MatmulPrecision::Fast, false), 6),
            (context_like(t, MatmulPrecision::Exact, true), 2),
        ] {
            assert_coop_runs(t, &ctx);
            for c in coop_cases() {
                for epi in EPILOGUES {
                    let run = Run {
                        path: MatmulPath::Coop,
                        gemm: None,
                        tile_pairs: 128,
                        rel: 2e-3,
                        x_exp,
                    };
                    check_case(&ctx, &mut rng, &c, epi, &run, &t.name);
                }
            }
        }
    }
}

/// 4-bit cases for the coop kernel (format Q4, `coop_q4`): groups of 128, 64
/// and 32 columns and of 20 (a multiple of 4 only: one scale lookup per 4
/// columns), columns past the last whole group (300, 136), not a multiple
/// of the 32-column step or of 8 (37: unaligned x rows, a partial last
/// nibble word), rows per expert past one 128-row tile (200, 258), pieces
/// splitting experts and a gate from its up rows, an expert over two
/// 128-pair tiles (the 300-pair case), 12 experts for 20 pairs (experts
/// without pairs).
fn q4_cases() -> Vec<Case> {
    vec![
        Case {
            weight: Weight::Q4 { group: 128 },
            experts: 5,
            rpe: 200,
            cols: 300,
            tokens: 130,
            k: 2,
            split: vec![1000],
        },
        Case {
            weight: Weight::Q4 { group: 32 },
            experts: 3,
            rpe: 48,
            cols: 72,
            tokens: 90,
            k: 3,
            split: vec![70, 74],
        },
        Case {
            weight: Weight::Q4 { group: 64 },
            experts: 12,
            rpe: 34,
            cols: 136,
            tokens: 10,
            k: 2,
            split: vec![408],
        },
        Case {
            weight: Weight::Q4 { group: 20 },
            experts: 2,
            rpe: 258,
            cols: 37,
            tokens: 300,
            k: 1,
            split: vec![300, 216],
        },
    ]
}

/// 4-bit experts on the coop kernel (W staged as `f16((q − zero)·scale)`,
/// module `coop_q4`) against the f64 reference of the dequantised experts,
/// every case and epilogue: fast (`f16(x·s)`) and plain (`f16(x)`, x rows
/// within 1e-2 .. 1e2) at 2e-3 · Σ|x·w| (x and W each rounded to f16:
/// 2⁻¹¹ relative apiece), and the exact variant forced (x exact as hi + lo,
/// W rounded) at 6e-4, with x rows from 1e-6 to 1e6.
#[test]
fn coop_grouped_q4_matches_reference() {
    let mut ran = 0;
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let mut rng = Rng::new(testing::seed(0x0e0c_4c01));
        for (ctx, x_exp, rel) in [
            (context_like(t, MatmulPrecision::Fast, false), 6, 2e-3),
            (context_like(t, MatmulPrecision::Exact, true), 2, 2e-3),
            (context_like(t, MatmulPrecision::Exact, false), 6, 6e-4),
        ] {
            assert_coop_runs(t, &ctx);
            for c in q4_cases() {
                for epi in EPILOGUES {
                    let run = Run {
                        path: MatmulPath::Coop,
                        gemm: None,
                        tile_pairs: 128,
                        rel,
                        x_exp,
                    };
                    check_case(&ctx, &mut rng, &c, epi, &run, &t.name);
                    ran += 1;
                }
            }
        }
    }
    eprintln!("{ran} 4-bit coop cases");
}

/// Which grouped GEMM `Auto` runs 4-bit experts on: the coop kernel (the
/// same bits as forcing `Coop`, at `Coop`'s tolerance) exactly where the
/// adapter has cooperative matrices, the weight is Q4 (f16 scales; not
/// Q4F32), the context is fast or `f16_matmul`, and
/// `Tuning::coop_grouped_q4` is on; else the scalar GEMM's bits (at 2e-5).
/// `coop_q4::auto`'s answer is checked on every adapter (it does not look at
/// the adapter), and forcing `Coop` on Q4F32 (anywhere) or Q4 (without
/// cooperative matrices) is a typed error.
#[test]
fn auto_takes_coop_grouped_for_q4_where_it_applies() {
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    for t in testing::contexts() {
        let has_coop = t.missing(&[Feature::CooperativeMatrix]).is_none();
        for (precision, f16, switch) in [
            (MatmulPrecision::Exact, false, true),
            (MatmulPrecision::Fast, false, true),
            (MatmulPrecision::Exact, true, true),
            (MatmulPrecision::Fast, false, false),
            (MatmulPrecision::Exact, true, false),
        ] {
            let mut ctx = context_like(t, precision, f16);
            ctx.tuning.coop_grouped_q4 = switch;
            let what = format!(
                "{t_name} {precision:?} f16_matmul {f16} coop_grouped_q4 {switch}",
                t_name = t.name
            );
            for f16_scales in [true, false] {
                let mut rng = Rng::new(testing::seed(0x0e0c_4c03));
                let q = int4_cases::make_q4(&mut rng, 80, 72, 32, f16_scales);
                let gw = upload_int4_pieces(&ctx, "q4", &q.host(), &[80]).unwrap();
                let wanted = switch && f16_scales && (f16 || precision == MatmulPrecision::Fast);
                assert_eq!(coop_q4::auto(&ctx, &gw), wanted, "{what} {f16_scales}");
                let runs = has_coop && f16_scales;
                assert_eq!(coop::supported(&ctx, &gw), runs, "{what} {f16_scales}");
                if !runs {
                    assert!(
                        matches!(forced_coop(&ctx, &gw), Err(KernelError::Unsupported { .. })),
                        "{what}: forced coop of {format:?}",
                        format = gw.format
                    );
                }
            }
            let coop_expected =
                has_coop && coop::ENABLED && switch && (f16 || precision == MatmulPrecision::Fast);
            let (other, rel) = if coop_expected {
                (MatmulPath::Coop, 2e-3)
            } else {
                (MatmulPath::Scalar, 2e-5)
            };
            let c = Case {
                weight: Weight::Q4 { group: 32 },
                experts: 3,
                rpe: 40,
                cols: 100,
                tokens: 50,
                k: 2,
                split: vec![120],
            };
            let go = |path| {
                let run = Run {
                    path,
                    gemm: None,
                    tile_pairs: 128,
                    rel,
                    x_exp: 2,
                };
                // The same seed: the same weights, routing and x.
                let mut rng = Rng::new(0x0e0c_4c04);
                check_case(&ctx, &mut rng, &c, Epilogue::SwiGlu, &run, &what)
            };
            let auto = go(MatmulPath::Auto);
            let want = go(other);
            assert!(same(&auto, &want), "{what}: Auto differs from {other:?}");
        }
    }
}

/// `matmul_grouped_with(.., Coop)` of `w` on a small grouping.
fn forced_coop(ctx: &GpuContext, w: &GpuWeight) -> Result<Vec<Dispatch>, KernelError> {
    let ids = ctx.upload("ids", &[0u32, 1, 0, 1]).unwrap();
    let x = ctx.upload("x", &vec![1f32; 4 * w.cols]).unwrap();
    let rpe = w.rows / 2;
    let y = ctx.storage("y", (4 * rpe * 4) as u64).unwrap();
    let scratch = GroupScratch::new(ctx, 4, 2).unwrap();
    let view = |b, rows: usize, cols: usize| {
        TensorView::rows(b, QDtype::F32, 0, [rows as u64, cols as u64], cols as u64)
    };
    let args = GroupedArgs {
        x: view(&x, 4, w.cols),
        x_row_div: 1,
        y: view(&y, 4, rpe),
        rows_per_expert: rpe as u32,
    };
    let _ = moe_group(ctx, &TensorView::words(&ids, 0, 4), 2, &scratch).unwrap();
    matmul_grouped_with(ctx, w, &args, &scratch, Epilogue::Store, MatmulPath::Coop)
}

/// `Auto` takes the coop kernel (the same bits as forcing `Coop`) where the
/// adapter has it and the weight suits the context's precision (exact: BF16,
/// E4M3 per channel; fast also E4M3 with 128 × 128 blocks), else the scalar
/// grouped GEMM's bits (F32, 4-bit-free block-scaled E4M3 under exact
/// precision, every weight without cooperative matrices).
#[test]
fn auto_takes_coop_grouped_where_it_applies() {
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    let case = |dtype, scheme| Case {
        weight: Packed(dtype, scheme),
        experts: 3,
        rpe: 40,
        cols: 300,
        tokens: 50,
        k: 2,
        split: vec![120],
    };
    let formats = [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::F32, Scheme::None),
    ];
    for t in testing::contexts() {
        let has_coop = t.missing(&[Feature::CooperativeMatrix]).is_none();
        if has_coop {
            assert_coop_runs(t, &t.ctx);
        }
        for precision in [MatmulPrecision::Exact, MatmulPrecision::Fast] {
            let ctx = context_like(t, precision, false);
            for (dtype, scheme) in formats {
                let c = case(dtype, scheme);
                let coop_expected = has_coop
                    && coop::ENABLED
                    && match (dtype, scheme) {
                        (Dtype::BF16, _) | (Dtype::F8E4M3, Scheme::PerChannel) => true,
                        (Dtype::F8E4M3, _) => precision == MatmulPrecision::Fast,
                        _ => false,
                    };
                let other = if coop_expected {
                    MatmulPath::Coop
                } else {
                    MatmulPath::Scalar
                };
                let rel = if other == MatmulPath::Coop && precision == MatmulPrecision::Fast {
                    2e-3
                } else if other == MatmulPath::Coop && !exact_in_f16(&c) {
                    6e-4
                } else {
                    1e-5
                };
                let go = |path| {
                    let run = Run {
                        path,
                        gemm: None,
                        tile_pairs: 128,
                        rel,
                        x_exp: 3,
                    };
                    // The same seed: the same weights, routing and x.
                    let mut rng = Rng::new(0x0e0c_c003);
                    check_case(&ctx, &mut rng, &c, Epilogue::Store, &run, &t.name)
                };
                let auto = go(MatmulPath::Auto);
                let want = go(other);
                assert!(
                    same(&auto, &want),
                    "{t_name}: Auto differs from {other:?} for {dtype:?} {scheme:?} with {precision:?}",
                    t_name = t.name
                );
            }
        }
    }
}

/// Forcing the tensor-core grouped GEMM where it cannot run (an adapter
/// without cooperative matrices; E5M2 weights anywhere) is a typed error.
#[test]
fn forced_coop_grouped_gemm_is_a_typed_error_where_unsupported() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let has_coop = t.missing(&[Feature::CooperativeMatrix]).is_none();
        let mut rng = Rng::new(testing::seed(0x0e0c_0003));
        let ids = ctx.upload("ids", &[0u32, 1, 0, 1]).unwrap();
        let x = ctx.upload("x", &rng.normal_vec(4 * 8)).unwrap();
        let y = ctx.storage("y", 4 * 16 * 4).unwrap();
        let scratch = GroupScratch::new(ctx, 4, 2).unwrap();
        let view =
            |b, rows: u64, cols: u64| TensorView::rows(b, QDtype::F32, 0, [rows, cols], cols);
        let args = GroupedArgs {
            x: view(&x, 4, 8),
            x_row_div: 1,
            y: view(&y, 4, 16),
            rows_per_expert: 16,
        };
        let _ = moe_group(ctx, &TensorView::words(&ids, 0, 4), 2, &scratch).unwrap();
        for dtype in [Dtype::BF16, Dtype::F8E5M2] {
            let pw = support::packed_one_shard(&mut rng, dtype, 32, 8, Scheme::None);
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let r =
                matmul_grouped_with(ctx, &gw, &args, &scratch, Epilogue::Store, MatmulPath::Coop);
            let runs = has_coop && dtype == Dtype::BF16;
            match r {
                Ok(_) if runs => {}
                Err(KernelError::Unsupported { .. }) if !runs => {}
                other => panic!(
                    "{t_name}: forced coop for {dtype:?} (coop adapter: {has_coop}) gave {other:?}",
                    t_name = t.name
                ),
            }
        }
    }
}

/// The kernel translates to SPIR-V (what the GPU machine's driver gets;
/// lavapipe cannot build it) for every weight format it takes, every
/// precision switch and workgroups of 8 subgroups of 16, 32 and 64 lanes.
#[test]
fn coop_grouped_translates_to_spirv_for_every_variant() {
    use qwgpu_kernels::spec::Needs;
    let spec = spirv::spec("moe_group_coop");
    assert_eq!(spec.needs, Needs::CooperativeMatrix);
    let module = Translator::coop(spec);
    let mut translated = 0;
    // FORMAT: F32, BF16, F16, E4M3, Q4 (WeightFormat's codes).
    for format in [0u32, 1, 2, 3, 5] {
        for (exact, split, skip) in [
            (0u32, 1u32, 0u32),
            (1, 1, 0),
            (1, 0, 0),
            (0, 0, 0),
            (0, 1, 1),
            (1, 1, 1),
            (1, 0, 1),
        ] {
            for wg in [128u32, 256, 512] {
                module.translate(&[
                    ("FORMAT", f64::from(format)),
                    ("EXACT", f64::from(exact)),
                    ("SPLIT", f64::from(split)),
                    ("SKIP", f64::from(skip)),
                    ("WG", f64::from(wg)),
                ]);
                translated += 1;
            }
        }
    }
    assert_eq!(translated, 105);
}

qwgpu_kernels::shader!(COOP_WGSL, "moe_group_coop.wgsl");
qwgpu_kernels::shader!(COMMON_WGSL, "matmul_common.wgsl");

/// Scalar stand-ins for the cooperative-matrix ops and subgroup builtins the
/// emulation substitutes (subgroups of 32, so WG = 256; the same workgroup
/// memory as the kernel, so it runs wherever the kernel's limits allow). A fragment load is
/// kept as where it reads (workgroup memory does not change between a load
/// and its multiply-adds); an accumulator holds, per lane `sl`, elements
/// `sl + 32 j` (row-major 16 × 16: row e / 16, column e % 16), which
/// `em_store_t` writes row-major as coopStoreT does. coopLoadT (A, x rows)
/// reads row-major, coopLoad (B, weight rows) column-major: element (k, n)
/// at n · stride + k.
const EMU_OPS: &str = r#"
struct EmFrag {
    arr: u32,
    off: u32,
    stride: u32,
    rowmajor: bool,
}
struct EmAcc {
    v: array<f32, 8>,
}
var<private> em_sl: u32;

fn em_frag(arr: u32, off: u32, stride: u32, rowmajor: bool) -> EmFrag {
    return EmFrag(arr, off, stride, rowmajor);
}

fn em_at(f: EmFrag, r: u32, c: u32) -> f32 {
    let i = select(f.off + c * f.stride + r, f.off + r * f.stride + c, f.rowmajor);
    switch f.arr {
        case 0u: {
            return f32(gs_x[i]);
        }
        case 1u: {
            return f32(gs_xl[i]);
        }
        default: {
            return f32(gs_w[i]);
        }
    }
}

fn em_mad(a: EmFrag, b: EmFrag, c: EmAcc) -> EmAcc {
    var o = c;
    for (var j = 0u; j < 8u; j++) {
        let e = em_sl + 32u * j;
        var s = o.v[j];
        for (var k = 0u; k < 16u; k++) {
            s = fma(em_at(a, e / 16u, k), em_at(b, k, e % 16u), s);
        }
        o.v[j] = s;
    }
    return o;
}

fn em_store_t(c: EmAcc, off: u32) {
    for (var j = 0u; j < 8u; j++) {
        gs_y[off + em_sl + 32u * j] = c.v[j];
    }
}

// Through gs_y, unused until the epilogue (so the emulation needs no more
// workgroup memory than the kernel).
fn em_subgroup_max(lid: u32, v: f32) -> f32 {
    gs_y[lid] = v;
    workgroupBarrier();
    let b = (lid / 32u) * 32u;
    var m = gs_y[b];
    for (var i = 1u; i < 32u; i++) {
        m = max(m, gs_y[b + i]);
    }
    workgroupBarrier();
    return m;
}
"#;

/// `moe_group_coop.wgsl` with its cooperative-matrix ops and subgroup
/// builtins replaced by [`EMU_OPS`]' scalar code, so every other line of the
/// kernel (gathering, staging, pieces, scales, epilogues) runs on adapters
/// without cooperative matrices. Each substitution must apply (the count is
/// checked), so a change to the kernel's text fails here, not silently.
fn emulated_source() -> &'static qwgpu_kernels::shaders::ShaderSource {
    static SRC: std::sync::OnceLock<&'static qwgpu_kernels::shaders::ShaderSource> =
        std::sync::OnceLock::new();
    SRC.get_or_init(|| {
        let mut text = COOP_WGSL.text.to_string();
        let mut swap = |from: &str, to: &str, times: usize| {
            let n = text.matches(from).count();
            assert_eq!(n, times, "`{from}` occurs {n} times in moe_group_coop.wgsl");
            text = text.replace(from, to);
        };
        swap("enable wgpu_cooperative_matrix;", "", 1);
        swap("coop_mat16x16<f32, C>()", "EmAcc()", 8);
        swap(
            "coopLoadT<coop_mat16x16<f16, A>>(&gs_xl[",
            "em_fragt(1u, ",
            4,
        );
        swap(
            "coopLoadT<coop_mat16x16<f16, A>>(&gs_x[",
            "em_fragt(0u, ",
            4,
        );
        swap("coopLoad<coop_mat16x16<f16, B>>(&gs_w[", "em_fragb(2u, ", 8);
        swap("], GLDS)", ", GLDS)", 16);
        swap("coopMultiplyAdd(", "em_mad(", 32);
        swap("coopStoreT(", "em_store_t(", 12);
        swap("], ld)", ")", 12);
        swap("&gs_y[", "", 12);
        swap("subgroupMax(", "em_subgroup_max(lid, ", 1);
        swap("@builtin(subgroup_id) sg: u32,", "", 1);
        swap("@builtin(subgroup_invocation_id) sl: u32,", "", 1);
        swap(
            "@builtin(workgroup_id) wid: vec3<u32>) {",
            "@builtin(workgroup_id) wid: vec3<u32>) {\n    let sg = lid / 32u;\n    \
             let sl = lid % 32u;\n    em_sl = sl;",
            1,
        );
        text.push_str(EMU_OPS);
        text.push_str(
            "fn em_fragt(arr: u32, off: u32, stride: u32) -> EmFrag {\n    \
             return em_frag(arr, off, stride, true);\n}\n\
             fn em_fragb(arr: u32, off: u32, stride: u32) -> EmFrag {\n    \
             return em_frag(arr, off, stride, false);\n}\n",
        );
        Box::leak(Box::new(qwgpu_kernels::shaders::ShaderSource {
            name: "moe_group_coop.wgsl (emulated)",
            text: Box::leak(text.into_boxed_str()),
        }))
    })
}

/// The launches `matmul_grouped_with(.., Coop)` records, on `source` (the
/// kernel's file, or its emulation) with the overrides `WG` = `wg` (0: the
/// library's, 8 × the subgroup size), `EXACT`, `SPLIT` and `SKIP` as given:
/// the same MmParams, bindings and grid (the grid's y is the 64-pair tile
/// bound, more than 128-pair tiles need: the extra rows must do nothing),
/// one launch per piece (per gate/up piece pair for SwiGLU, all pairs: the
/// kernel skips what is not in them).
fn direct_gemm(
    source: &'static qwgpu_kernels::shaders::ShaderSource,
    wg: u32,
    exact: bool,
    split: bool,
    skip: bool,
) -> impl GroupedGemm {
    move |ctx: &GpuContext,
          w: &GpuWeight,
          args: &GroupedArgs,
          scratch: &GroupScratch,
          epi: Epilogue| {
        let wg = if wg == 0 {
            8 * ctx.caps.subgroup_sizes.1
        } else {
            wg
        };
        let key = qwgpu_kernels::PipelineKey::new(
            &[source, &qwgpu_kernels::shaders::NUMERIC, &COMMON_WGSL],
            "moe_group_coop",
        )
        .constant("WG", wg)
        .constant("FORMAT", w.format as u32)
        .constant("EXACT", u32::from(exact))
        .constant("SPLIT", u32::from(split))
        .constant("SKIP", u32::from(skip));
        let pipeline = ctx.pipeline(&key)?;
        let swiglu = epi == Epilogue::SwiGlu;
        let rpe = args.rows_per_expert;
        let width = if swiglu { rpe / 2 } else { rpe };
        let pairs = args.y.shape[0] as u32;
        let experts = (w.rows as u32) / rpe;
        let epi_code = match epi {
            Epilogue::Store => 0,
            Epilogue::Accumulate => 1,
            Epilogue::SwiGlu => 2,
        };
        let (x_stride, y_stride) = (args.x.stride as u32, args.y.stride as u32);
        let mut out = Vec::new();
        for a in &w.pieces {
            for b in &w.pieces {
                if !swiglu && !std::ptr::eq(a, b) {
                    continue;
                }
                let mut p = [0u32; 64];
                let head = [
                    w.rows as u32,
                    w.cols as u32,
                    (w.stride_words / 4) as u32,
                    w.block_cols as u32,
                    pairs,
                    0,
                    x_stride,
                    args.x_row_div,
                    0,
                    y_stride,
                    0,
                    width,
                    a.row0 as u32,
                    a.rows as u32,
                    b.row0 as u32,
                    b.rows as u32,
                    rpe / 2,
                    rpe,
                    experts,
                    scratch.tiles_offset(),
                    0,
                    0,
                    epi_code,
                    u32::from(x_stride.is_multiple_of(4)),
                ];
                p[..head.len()].copy_from_slice(&head);
                let params = ctx.uniform("emulated params", &p);
                let bind = ctx.bind(
                    &pipeline,
                    "emulated coop grouped",
                    &[
                        a.buffer.as_entire_binding(),
                        b.buffer.as_entire_binding(),
                        w.meta.as_entire_binding(),
                        args.x.buffer.as_entire_binding(),
                        args.y.buffer.as_entire_binding(),
                        params.as_entire_binding(),
                        args.x.buffer.as_entire_binding(),
                        scratch.buffer.as_entire_binding(),
                    ],
                );
                out.push(Dispatch {
                    label: "emulated coop grouped",
                    pipeline: pipeline.clone(),
                    bind,
                    groups: [
                        width.div_ceil(if swiglu { 64 } else { 128 }),
                        qwgpu_kernels::moe::grouped::tile_bound(pairs, experts),
                        1,
                    ],
                });
            }
        }
        Ok(out)
    }
}

/// The `SKIP` switch (subgroups skip the multiply-adds of fragment rows
/// past the tile's pairs; `coop::SKIP_EMPTY_ROWS` in the library) on
/// hardware: the other setting than the library's, against the reference
/// at the library variant's tolerance, and the same bits as the library's
/// launch on the same inputs, for the exact and fast variants, every case
/// and epilogue.
#[test]
fn coop_grouped_skip_variant_gives_the_same_bits() {
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        for (precision, split) in [
            (MatmulPrecision::Exact, true),
            (MatmulPrecision::Fast, false),
        ] {
            let ctx = context_like(t, precision, false);
            let skip = direct_gemm(&COOP_WGSL, 0, true, split, !coop::SKIP_EMPTY_ROWS);
            for (i, c) in coop_cases().iter().enumerate() {
                for epi in EPILOGUES {
                    let rel = match (split, exact_in_f16(c)) {
                        (true, true) => 1e-5,
                        (true, false) => 6e-4,
                        (false, _) => 2e-3,
                    };
                    let go = |gemm: Option<Gemm>| {
                        let run = Run {
                            path: MatmulPath::Coop,
                            gemm,
                            tile_pairs: 128,
                            rel,
                            x_exp: 6,
                        };
                        // The same seed: the same weights, routing and x.
                        let mut rng = Rng::new(0x0e0c_5c1f + i as u64);
                        check_case(&ctx, &mut rng, c, epi, &run, &t.name)
                    };
                    let lib = go(None);
                    let skipped = go(Some(&skip));
                    assert!(
                        same(&lib, &skipped),
                        "{t_name}: SKIP {other} changed the bits of case {i} {epi:?} {precision:?}",
                        other = !coop::SKIP_EMPTY_ROWS,
                        t_name = t.name
                    );
                }
            }
        }
    }
}

/// Small cases for the emulation (slow on a software adapter) that still
/// cover an expert over two 128-pair tiles, two output tiles per expert
/// (SwiGLU too), a piece boundary inside an expert and between a gate and
/// its up rows, unaligned x rows, K not a multiple of the step, block scales
/// varying along K, per-channel scales.
fn emulated_cases() -> Vec<Case> {
    vec![
        Case {
            weight: Packed(Dtype::BF16, Scheme::None),
            experts: 3,
            rpe: 144,
            cols: 40,
            tokens: 180,
            k: 2,
            split: vec![200, 232],
        },
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::Block([128, 128])),
            experts: 2,
            rpe: 64,
            cols: 137,
            tokens: 70,
            k: 2,
            split: vec![128],
        },
        Case {
            weight: Packed(Dtype::F8E4M3, Scheme::PerChannel),
            experts: 1,
            rpe: 20,
            cols: 33,
            tokens: 40,
            k: 1,
            split: vec![20],
        },
    ]
}

/// The coop kernel's own code on adapters without cooperative matrices: the
/// emulation (scalar stand-ins for the fragment ops, [`emulated_source`])
/// against the f64 reference, every epilogue and variant (exact, fast,
/// plain) at the tolerances of the real kernel's tests, on 128-pair tiles
/// (Store on 64-pair tiles too). The first context with f16 only (the staged
/// tiles are f16; the emulation is slow).
#[test]
fn emulated_coop_grouped_matches_reference() {
    let mut ran = 0;
    let contexts = testing::contexts_with(&[Feature::F16]);
    for t in contexts.into_iter().take(1) {
        let mut rng = Rng::new(testing::seed(0x0e0c_e001));
        for (exact, split, skip, x_exp) in [
            (true, true, false, 6),
            (true, true, true, 6),
            (true, false, true, 6),
            (false, true, false, 2),
        ] {
            let gemm = direct_gemm(emulated_source(), 256, exact, split, skip);
            for c in emulated_cases() {
                let rel = match (exact && split, exact_in_f16(&c)) {
                    (true, true) => 1e-5,
                    (true, false) => 6e-4,
                    (false, _) => 2e-3,
                };
                // 64-pair tiles: the first variant only; every epilogue for
                // the exact split variants, Store for the others (they
                // differ from them in x's staging only).
                let tiles: &[(u32, &[Epilogue])] = match (exact && split, skip) {
                    (true, false) => &[(128, &EPILOGUES[..]), (64, &EPILOGUES[..1])],
                    (true, true) => &[(128, &EPILOGUES[..])],
                    (false, _) => &[(128, &EPILOGUES[..1])],
                };
                for &(tile_pairs, epis) in tiles {
                    for &epi in epis {
                        let run = Run {
                            path: MatmulPath::Coop,
                            gemm: Some(&gemm),
                            tile_pairs,
                            rel,
                            x_exp,
                        };
                        let what = format!(
                            "{t_name} emulated exact {exact} split {split}",
                            t_name = t.name
                        );
                        check_case(&t.ctx, &mut rng, &c, epi, &run, &what);
                        ran += 1;
                    }
                }
            }
        }
    }
    eprintln!("{ran} emulated cases");
}

/// Small 4-bit cases for the emulation: groups of 32 (a piece boundary
/// inside an expert's up rows, SwiGLU over two output tiles), 128 (columns
/// past the step, unaligned x rows) and 20 (a scale lookup per 4 columns).
fn emulated_q4_cases() -> Vec<Case> {
    vec![
        Case {
            weight: Weight::Q4 { group: 32 },
            experts: 3,
            rpe: 144,
            cols: 72,
            tokens: 100,
            k: 2,
            split: vec![250, 182],
        },
        Case {
            weight: Weight::Q4 { group: 128 },
            experts: 2,
            rpe: 40,
            cols: 137,
            tokens: 70,
            k: 2,
            split: vec![80],
        },
        Case {
            weight: Weight::Q4 { group: 20 },
            experts: 1,
            rpe: 20,
            cols: 33,
            tokens: 40,
            k: 1,
            split: vec![20],
        },
    ]
}

/// The coop kernel's own code with 4-bit experts (`FORMAT` = 5: the `Q4`
/// staging) on adapters without cooperative matrices, through the
/// emulation: the fast variant (with `SKIP`, as the library launches it) on
/// every epilogue at 2e-3, the plain and the exact (split) variants on
/// Store at 2e-3 and 6e-4 (module doc of `coop_q4`: W rounded to f16).
#[test]
fn emulated_coop_grouped_q4_matches_reference() {
    let mut ran = 0;
    let contexts = testing::contexts_with(&[Feature::F16]);
    for t in contexts.into_iter().take(1) {
        let mut rng = Rng::new(testing::seed(0x0e0c_4ce1));
        for (exact, split, skip, x_exp, rel, epis) in [
            (true, false, true, 6, 2e-3, &EPILOGUES[..]),
            (false, true, true, 2, 2e-3, &EPILOGUES[..1]),
            (true, true, true, 6, 6e-4, &EPILOGUES[..1]),
        ] {
            let gemm = direct_gemm(emulated_source(), 256, exact, split, skip);
            for c in emulated_q4_cases() {
                for &epi in epis {
                    let run = Run {
                        path: MatmulPath::Coop,
                        gemm: Some(&gemm),
                        tile_pairs: 128,
                        rel,
                        x_exp,
                    };
                    let what = format!(
                        "{t_name} emulated exact {exact} split {split}",
                        t_name = t.name
                    );
                    check_case(&t.ctx, &mut rng, &c, epi, &run, &what);
                    ran += 1;
                }
            }
        }
    }
    eprintln!("{ran} emulated 4-bit cases");
}

/// Best of 5 GPU-timestamp runs of each of `d`, in ns.
fn best_ns(ctx: &GpuContext, d: &[&Dispatch]) -> Vec<f64> {
    ctx.run("warm-up", d).unwrap();
    let mut best = vec![f64::INFINITY; d.len()];
    for _ in 0..5 {
        let times = qwgpu_kernels::profile::time_dispatches(ctx, d).unwrap();
        for (b, (_, ns)) in best.iter_mut().zip(times) {
            *b = b.min(ns);
        }
    }
    best
}

/// `matmul_grouped_with` on `path`.
fn library(path: MatmulPath) -> impl GroupedGemm {
    move |c: &GpuContext, w: &GpuWeight, a: &GroupedArgs, s: &GroupScratch, e: Epilogue| {
        matmul_grouped_with(c, w, a, s, e, path)
    }
}

/// TFLOP/s of the scalar grouped GEMM (`matmul_grouped_with(.., Scalar)`,
/// kernel `moe_group_gemm`) and the coop one (`moe_group_coop`: exact, fast
/// and plain f16 variants as the library launches them, and exact / fast with
/// `SKIP` on and off) at the
/// Qwen3.5-35B-A3B expert shapes: E = 256, k = 8, H = 2048, Ie = 512,
/// T = 4096 and 512, balanced routing (8 distinct experts per token);
/// gate/up `[256·1024, 2048]` SwiGLU and down `[256·2048, 512]` Store, BF16
/// and E4M3 with 128 × 128 blocks, 128-pair grouping tiles. FLOPs count the
/// real pairs only. Trusted modules, GPU timestamps (best of 5), `BENCH`
/// lines; each variant's largest difference to the scalar GEMM on the first
/// 64 pairs relative to their largest |y|. Run with
/// `-- --ignored --exact moe_coop::grouped_coop_bench_35b_a3b --nocapture`.
#[test]
#[ignore = "benchmark: run with -- --ignored grouped_coop_bench_35b_a3b"]
fn grouped_coop_bench_35b_a3b() {
    let scalar = library(MatmulPath::Scalar);
    let coop = library(MatmulPath::Coop);
    // The library's kernel with SKIP on and off (the library takes
    // `coop::SKIP_EMPTY_ROWS`).
    let exact_skip = direct_gemm(&COOP_WGSL, 0, true, true, true);
    let fast_skip = direct_gemm(&COOP_WGSL, 0, true, false, true);
    let exact_noskip = direct_gemm(&COOP_WGSL, 0, true, true, false);
    let fast_noskip = direct_gemm(&COOP_WGSL, 0, true, false, false);
    // Per context (one weight upload each), the variants it runs.
    let groups: [(GpuContext, Vec<(&str, Gemm)>); 3] = [
        (
            trusted(MatmulPrecision::Exact, false),
            vec![
                ("scalar", &scalar),
                ("coop exact (library)", &coop),
                ("coop exact SKIP on", &exact_skip),
                ("coop exact SKIP off", &exact_noskip),
            ],
        ),
        (
            trusted(MatmulPrecision::Fast, false),
            vec![
                ("coop fast (library)", &coop),
                ("coop fast SKIP on", &fast_skip),
                ("coop fast SKIP off", &fast_noskip),
            ],
        ),
        (
            trusted(MatmulPrecision::Exact, true),
            vec![("coop f16", &coop)],
        ),
    ];
    let mut rng = Rng::new(0x0e0c_be01);
    for (dtype, scheme) in [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
    ] {
        let (experts, _, h, ie) = A3B;
        let gu = support::packed_one_shard(&mut rng, dtype, experts * 2 * ie, h, scheme);
        let dn = support::packed_one_shard(&mut rng, dtype, experts * h, ie, scheme);
        let inputs = a3b_inputs(&mut rng);
        let upload = |c: &GpuContext| {
            (
                GpuWeight::upload(c, &gu).unwrap(),
                GpuWeight::upload(c, &dn).unwrap(),
            )
        };
        bench_a3b(&groups, &inputs, &upload, &format!("{dtype:?}"));
    }
}

/// `grouped_coop_bench_35b_a3b` for GPTQ-style 4-bit experts (`Gptq`,
/// format Q4) at the same 35B-A3B shapes and token counts (4096, 512): the
/// scalar grouped GEMM (what exact precision runs), the coop kernel as
/// `Auto` takes it with fast precision (SKIP on and off beside it) and with
/// `f16_matmul`, and its exact variant forced. A `BENCH` line per context
/// says whether `Auto` takes the tensor cores there. Run with
/// `-- --include-ignored --exact moe_coop::grouped_coop_q4_bench_35b_a3b --nocapture`.
#[test]
#[ignore = "benchmark: run with -- --ignored grouped_coop_q4_bench_35b_a3b"]
fn grouped_coop_q4_bench_35b_a3b() {
    let scalar = library(MatmulPath::Scalar);
    let auto = library(MatmulPath::Auto);
    let coop = library(MatmulPath::Coop);
    let fast_skip = direct_gemm(&COOP_WGSL, 0, true, false, true);
    let fast_noskip = direct_gemm(&COOP_WGSL, 0, true, false, false);
    let groups: [(GpuContext, Vec<(&str, Gemm)>); 3] = [
        (
            trusted(MatmulPrecision::Exact, false),
            vec![("scalar", &scalar), ("coop exact (forced)", &coop)],
        ),
        (
            trusted(MatmulPrecision::Fast, false),
            vec![
                ("coop fast (library Auto)", &auto),
                ("coop fast SKIP on", &fast_skip),
                ("coop fast SKIP off", &fast_noskip),
            ],
        ),
        (
            trusted(MatmulPrecision::Exact, true),
            vec![("coop f16 (library Auto)", &auto)],
        ),
    ];
    let (experts, _, h, ie) = A3B;
    let mut bits = SplitMix64::new(0x0e0c_be04);
    let gu = int4_cases::Gptq::new(&mut bits, experts * 2 * ie, h);
    let dn = int4_cases::Gptq::new(&mut bits, experts * h, ie);
    let upload = |c: &GpuContext| {
        let guw = upload_int4(c, "gate_up", &gu.host()).unwrap();
        let dnw = upload_int4(c, "down", &dn.host()).unwrap();
        assert_eq!(guw.format, WeightFormat::Q4);
        eprintln!(
            "BENCH {adapter} {precision:?} f16_matmul {f16}: Auto runs Q4 experts on the tensor cores: {on}",
            adapter = c.info.name,
            precision = c.precision,
            f16 = c.f16_matmul,
            on = coop::auto(c, &guw) && coop::auto(c, &dnw)
        );
        (guw, dnw)
    };
    let inputs = a3b_inputs(&mut Rng::new(0x0e0c_be05));
    bench_a3b(&groups, &inputs, &upload, "Q4 g128");
}

/// The Qwen3.5-35B-A3B expert geometry: experts, top-k, hidden size, expert
/// width.
const A3B: (usize, usize, usize, usize) = (256, 8, 2048, 512);

/// Per token count (4096, 512): the tokens, balanced routing (8 distinct
/// experts per token) and x.
fn a3b_inputs(rng: &mut Rng) -> Vec<(usize, Vec<u32>, Vec<f32>)> {
    let (experts, k, h, _) = A3B;
    [4096usize, 512]
        .into_iter()
        .map(|tokens| {
            let mut ids = Vec::with_capacity(tokens * k);
            for _ in 0..tokens {
                let mut chosen: Vec<u32> = Vec::with_capacity(k);
                while chosen.len() < k {
                    let e = (rng.uniform() * experts as f32) as u32 % experts as u32;
                    if !chosen.contains(&e) {
                        chosen.push(e);
                    }
                }
                ids.extend(chosen);
            }
            (tokens, ids, rng.normal_vec(tokens * h))
        })
        .collect()
}

/// The variants of each context of `groups` on the gate/up and down weights
/// `upload` makes in it (`what` names them), at every token count of
/// `inputs`: `BENCH` lines with GPU times and TFLOP/s (real pairs only), and
/// each variant's largest difference to the first variant run (the scalar
/// GEMM) on the first 64 pairs relative to their largest |y|.
fn bench_a3b(
    groups: &[(GpuContext, Vec<(&str, Gemm)>)],
    inputs: &[(usize, Vec<u32>, Vec<f32>)],
    upload: &dyn Fn(&GpuContext) -> (GpuWeight, GpuWeight),
    what: &str,
) {
    let (experts, k, h, ie) = A3B;
    // The scalar GEMM's first 64 pairs of act and out, per token count.
    let mut first: Vec<Option<(Vec<f32>, Vec<f32>)>> = vec![None; inputs.len()];
    for (c, variants) in groups {
        let (guw, dnw) = upload(c);
        for (ti, (tokens, ids_list, xv)) in inputs.iter().enumerate() {
            let (tokens, pairs) = (*tokens, tokens * k);
            let ids = c.upload("ids", ids_list).unwrap();
            let x = c.upload("x", xv).unwrap();
            let act = c.storage("act", (pairs * ie * 4) as u64).unwrap();
            let out = c.storage("out", (pairs * h * 4) as u64).unwrap();
            let scratch =
                GroupScratch::with_tile_pairs(c, pairs as u32, experts as u32, 128).unwrap();
            let sort = moe_group(
                c,
                &TensorView::words(&ids, 0, pairs as u32),
                experts as u32,
                &scratch,
            )
            .unwrap();
            let rows = |b, n: usize, w: usize| {
                TensorView::rows(b, QDtype::F32, 0, [n as u64, w as u64], w as u64)
            };
            let up_args = GroupedArgs {
                x: rows(&x, tokens, h),
                x_row_div: k as u32,
                y: rows(&act, pairs, ie),
                rows_per_expert: 2 * ie as u32,
            };
            let down_args = GroupedArgs {
                x: rows(&act, pairs, ie),
                x_row_div: 1,
                y: rows(&out, pairs, h),
                rows_per_expert: h as u32,
            };
            for (name, gemm) in variants {
                let gemms =
                    gemm(c, &guw, &up_args, &scratch, Epilogue::SwiGlu).and_then(|mut d| {
                        d.extend(gemm(c, &dnw, &down_args, &scratch, Epilogue::Store)?);
                        Ok(d)
                    });
                let gemms = match gemms {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("BENCH {name} {what}: {e}");
                        continue;
                    }
                };
                assert_eq!(gemms.len(), 2, "one launch per matmul");
                let all: Vec<&Dispatch> = std::iter::once(&sort).chain(gemms.iter()).collect();
                let ns = best_ns(c, &all);
                let (fu, fd) = (
                    2.0 * (pairs * 2 * ie * h) as f64,
                    2.0 * (pairs * h * ie) as f64,
                );
                eprintln!(
                    "BENCH {adapter} {name} {what} T={tokens} pairs={pairs}: sort {sort_us:.1} µs, \
                     gate/up SwiGLU {up_us:.1} µs = {up_tf:.1} TFLOP/s, down {dn_us:.1} µs = {dn_tf:.1} TFLOP/s, \
                     MoE GEMMs {all_us:.1} µs = {all_tf:.1} TFLOP/s",
                    adapter = c.info.name,
                    sort_us = ns[0] / 1e3,
                    up_us = ns[1] / 1e3,
                    up_tf = fu / ns[1] / 1e3,
                    dn_us = ns[2] / 1e3,
                    dn_tf = fd / ns[2] / 1e3,
                    all_us = (ns[1] + ns[2]) / 1e3,
                    all_tf = (fu + fd) / (ns[1] + ns[2]) / 1e3,
                );
                let got = (
                    c.read_f32(&act, 0, 64 * ie).unwrap(),
                    c.read_f32(&out, 0, 64 * h).unwrap(),
                );
                match &first[ti] {
                    None => first[ti] = Some(got),
                    Some((a0, o0)) => {
                        let rel = |a: &[f32], b: &[f32]| {
                            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                            a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
                        };
                        eprintln!(
                            "BENCH   {name} vs scalar, first 64 pairs: max |Δ| / max |y| act {da:.2e}, out {do_:.2e}",
                            da = rel(&got.0, a0),
                            do_ = rel(&got.1, o0)
                        );
                    }
                }
            }
        }
    }
}
