//! 4-bit weights (`qwgpu_kernels::int4`, formats Q4 / Q4F32) on every matmul
//! kernel against the CPU: the GEMV, the small-T GEMV in several shapes, the
//! tile GEMM, the fused-norm GEMV, the expert-indexed and the grouped MoE
//! kernels, weights split into pieces.
//!
//! The test draws the integer matrix `q`, the scales and the zero points, and
//! computes the reference weight `(q − zero) · scale` from them directly (the
//! packed words go only to the GPU; `qwgpu_ops::int4::dequantize` of those
//! words is checked against the same weight). Reference dot products in f64.
//!
//! Tolerance per output (as tests/matmul.rs):
//! `|got − want| ≤ 2e-5 · Σ|xᵢ·wᵢ| + 1e-5 · |want|` (f32 sums in another order; the kernels scale each
//! 32-column or 4-column partial sum instead of each product); for SwiGLU
//! each half's error is propagated. Everything outside the written region
//! keeps its bits (NaN poison in y, NaN in x outside its rows).

use qwgpu_kernels::int4::{upload_int4, upload_int4_pieces};
use qwgpu_kernels::matmul::{
    matmul, matmul_gemv_with, matmul_indexed, matmul_indexed_int4_with, matmul_int4_with,
    matmul_normed, matmul_with, Epilogue, FusedNorm, MatmulArgs, MatmulPath,
};
use qwgpu_kernels::moe::grouped::{matmul_grouped, moe_group, GroupScratch, GroupedArgs};
use qwgpu_kernels::view::{Dtype as QDtype, TensorView};
use qwgpu_kernels::{testing, GpuContext, GpuWeight, Int4Gemv, KernelError, SmallT, WeightFormat};

mod support;
use qwgpu_ops::rng::Rng;
use support::matmul_case::{self, contiguous, moe_case, IDS_OFF};

use cases::{make_q4, upload, REL, SHAPES};
use qwgpu_kernels::testing::cases::int4 as cases;
use qwgpu_kernels::testing::cases::matmul::{make_x, run, MatmulFn, EPILOGUES};

/// One dense matmul (launches from `launch`) with random offsets and strides
/// (`aligned`: x offset and stride multiples of 4), checked against `w` (the
/// shared case, which the browser runner runs too).
#[allow(clippy::too_many_arguments)]
fn dense_case(
    t: &testing::TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    w: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
    launch: MatmulFn<'_>,
    aligned: bool,
) {
    pollster::block_on(qwgpu_kernels::testing::cases::matmul::dense_case_rel(
        t, rng, gw, w, tokens, epi, what, launch, aligned, REL,
    ));
}

#[test]
fn int4_matches_reference_on_every_path() {
    let ts = [1usize, 3, 16, 17, 70, 2, 8];
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_4401);
        pollster::block_on(cases::every_path(t, seed, &SHAPES, &ts));
    }
}

/// Every token count of the GEMV kernels and past them, on one weight.
#[test]
fn int4_every_token_count() {
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_4402);
        let mut rng = Rng::new(seed);
        let q = make_q4(&mut rng, 34, 76, 32, true);
        let gw = upload(&t.ctx, &q, true);
        for tokens in (1..=18).chain([65]) {
            let epi = EPILOGUES[tokens % 3];
            let what = format!("seed {seed:#x} [34, 76] group 32");
            matmul_case::dense_case(
                t,
                &mut rng,
                &gw,
                &q.w,
                tokens,
                epi,
                &what,
                &matmul,
                tokens % 2 == 0,
                REL,
            );
        }
    }
}

/// Every workgroup shape of the small-T GEMV, and the one-token kernel in
/// blocks of 8 (`None`), on rows longer than one pass of the workgroup.
#[test]
fn int4_small_t_shapes() {
    let shapes = [
        Some(SmallT::DEFAULT),
        Some(SmallT {
            threads: 64,
            quads: 1,
            max_tokens: 16,
            prefetch: false,
            chunk_scale: true,
        }),
        Some(SmallT {
            threads: 128,
            quads: 4,
            max_tokens: 5,
            prefetch: true,
            chunk_scale: false,
        }),
        Some(SmallT {
            threads: 256,
            quads: 8,
            max_tokens: 8,
            prefetch: false,
            chunk_scale: true,
        }),
        None,
    ];
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_4403);
        let mut rng = Rng::new(seed);
        for (rows, cols, group, f16) in
            [(42usize, 4400usize, 128usize, true), (22, 1000, 20, false)]
        {
            let q = make_q4(&mut rng, rows, cols, group, f16);
            let gw = upload(&t.ctx, &q, f16);
            for (k, shape) in shapes.iter().enumerate() {
                // T = 1 on a forced shape: the small-T kernel's one-token path.
                for (j, tokens) in [3usize, 16, 1].into_iter().enumerate() {
                    let epi = EPILOGUES[(k + j) % 3];
                    let what = format!("seed {seed:#x} [{rows}, {cols}] group {group} {shape:?}");
                    let launch = |ctx: &GpuContext, w: &GpuWeight, a: &MatmulArgs, e: Epilogue| {
                        matmul_gemv_with(ctx, w, a, e, shape.as_ref())
                    };
                    matmul_case::dense_case(
                        t,
                        &mut rng,
                        &gw,
                        &q.w,
                        tokens,
                        epi,
                        &what,
                        &launch,
                        j != 1,
                        REL,
                    );
                }
            }
        }
    }
}

/// Rows of more than 256 chunks of 32 columns (every GEMV thread loops), and
/// a launch of 1000 workgroups (128-thread groups where the adapter's wave
/// says so).
#[test]
fn int4_long_rows_and_wide_launches() {
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_4404);
        let mut rng = Rng::new(seed);
        for (rows, cols, group) in [(10usize, 8230usize, 128usize), (4000, 260, 64)] {
            let q = make_q4(&mut rng, rows, cols, group, true);
            let gw = upload(&t.ctx, &q, true);
            for (tokens, epi) in [
                (1, Epilogue::Store),
                (1, Epilogue::SwiGlu),
                (3, Epilogue::Accumulate),
            ] {
                let what = format!("seed {seed:#x} [{rows}, {cols}] group {group}");
                dense_case(t, &mut rng, &gw, &q.w, tokens, epi, &what, &matmul, true);
            }
        }
    }
}

/// A weight in several buffers computes the same, SwiGLU included where gate
/// row j and up row j sit in different pieces.
#[test]
fn int4_over_split_weights() {
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_4405);
        let mut rng = Rng::new(seed);
        for (split, group) in [(vec![50usize, 47, 33], 64usize), (vec![1, 128, 1], 32)] {
            let q = make_q4(&mut rng, 130, 140, group, true);
            let gw = upload_int4_pieces(&t.ctx, "split", &q.host(), &split).unwrap();
            assert_eq!(gw.pieces.len(), split.len());
            for epi in EPILOGUES {
                for tokens in [1, 5, 17] {
                    let what = format!("seed {seed:#x} pieces {split:?} group {group}");
                    dense_case(t, &mut rng, &gw, &q.w, tokens, epi, &what, &matmul, true);
                }
            }
        }
    }
}

/// The RMSNorm fused into the GEMV: `norm(x) · Wᵀ` against the CPU norm then
/// the reference dot products.
#[test]
fn int4_fused_norm() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_4406);
        let mut rng = Rng::new(seed);
        for (ci, &(rows, cols, group)) in [(6usize, 36usize, 12usize), (66, 260, 64)]
            .iter()
            .enumerate()
        {
            let q = make_q4(&mut rng, rows, cols, group, ci == 0);
            let gw = upload(ctx, &q, ci == 0);
            for (k, epi) in EPILOGUES.into_iter().enumerate() {
                let tokens = [1usize, 3, 9][(ci + k) % 3];
                let swiglu = epi == Epilogue::SwiGlu;
                let width = if swiglu { rows / 2 } else { rows };
                let x_stride = cols + 4;
                let mut xbuf = vec![f32::NAN; tokens * x_stride];
                let nw = rng.normal_vec(cols);
                let mut normed = Vec::new();
                for ti in 0..tokens {
                    let r = rng.normal_vec(cols);
                    xbuf[ti * x_stride..][..cols].copy_from_slice(&r);
                    normed.push(qwgpu_ops::norm::rms_norm_one_plus(&r, &nw, 1e-6));
                }
                let init = if epi == Epilogue::Accumulate {
                    rng.normal_vec(tokens * width)
                } else {
                    vec![f32::NAN; tokens * width]
                };
                let x = ctx.upload("x", &xbuf).unwrap();
                let y = ctx.upload("y", &init).unwrap();
                let nwb = ctx.upload("norm weight", &nw).unwrap();
                let args = contiguous(&x, &y, tokens, x_stride, width);
                let norm = FusedNorm {
                    weight: &nwb,
                    eps: 1e-6,
                    one_plus: true,
                };
                run(ctx, &matmul_normed(ctx, &gw, &args, &norm, epi).unwrap());
                let got = ctx.read_f32(&y, 0, tokens * width).unwrap();
                let mut want = vec![None; tokens * width];
                for (ti, xr) in normed.iter().enumerate() {
                    for c in 0..width {
                        let (mut v, mut tol) =
                            support::expected(xr, &q.w, cols, rows, c, swiglu, REL);
                        let i = ti * width + c;
                        if epi == Epilogue::Accumulate {
                            v += init[i] as f64;
                            tol += 1e-6 * init[i].abs() as f64;
                        }
                        want[i] = Some((v, tol));
                    }
                }
                let what = format!(
                    "{t_name} seed {seed:#x} fused norm [{rows}, {cols}] group {group} T={tokens} {epi:?}",
                    t_name = t.name
                );
                support::check(&got, &init, &want, &what);
            }
        }
    }
}

fn ids_sets() -> Vec<Vec<u32>> {
    vec![
        vec![2],
        vec![3, 3, 0, 1, 1, 1, 4],
        // Sorted runs then scattered ids, one past the experts (skipped).
        (0..40u32)
            .map(|i| if i < 24 { i / 7 } else { (i * 7 + 1) % 5 })
            .collect(),
    ]
}

/// The expert-indexed GEMV (MoE decode): E = 4 experts stacked, runs of equal
/// ids and scattered ones, ids past the experts skipped, split pieces.
#[test]
fn int4_indexed_matches_reference() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_4407);
        let mut rng = Rng::new(seed);
        let rpe = 10;
        for (cols, group, f16, split) in [
            (36usize, 12usize, true, None),
            (200, 64, false, None),
            (100, 32, true, Some(vec![13usize, 14, 13])),
        ] {
            let q = make_q4(&mut rng, 4 * rpe, cols, group, f16);
            let gw = match &split {
                Some(s) => upload_int4_pieces(ctx, "experts", &q.host(), s).unwrap(),
                None => upload(ctx, &q, f16),
            };
            for (k, ids_list) in ids_sets().iter().enumerate() {
                for (m, epi) in EPILOGUES.into_iter().enumerate() {
                    let x_div = 1 + (k + m) % 2;
                    let width = if epi == Epilogue::SwiGlu {
                        rpe / 2
                    } else {
                        rpe
                    };
                    let c = moe_case(ctx, &mut rng, cols, ids_list, x_div, width, epi);
                    let y = ctx.upload("y", &c.init).unwrap();
                    let args = c.args(&y, rpe);
                    run(ctx, &matmul_indexed(ctx, &gw, &args, epi).unwrap());
                    let got = ctx.read_f32(&y, 0, c.init.len()).unwrap();
                    let what = format!(
                        "{t_name} seed {seed:#x} indexed [{cols}] group {group} pieces {split:?} \
                         ids {ids_list:?} x_div {x_div} {epi:?}",
                        t_name = t.name
                    );
                    c.check(&got, &q.w, cols, rpe, epi, REL, &what);
                }
            }
        }
    }
}

/// The grouped GEMM (MoE prefill) over the GPU grouping: more than 64 pairs
/// of one expert (two tiles), experts without pairs, ids past the experts.
#[test]
fn int4_grouped_matches_reference() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_4408);
        let mut rng = Rng::new(seed);
        let (experts, rpe) = (5usize, 70usize);
        let mut lists = ids_sets();
        // 150 pairs: expert 1 on 100 of them (two tiles), expert 3 on none,
        // id 9 past the experts.
        lists.push(
            (0..150u32)
                .map(|i| {
                    if i % 3 != 2 {
                        1
                    } else {
                        [0, 2, 4, 9][i as usize % 4]
                    }
                })
                .collect(),
        );
        for (cols, group, f16, split) in [
            (72usize, 32usize, true, None),
            (130, 128, false, Some(vec![150usize, 101, 99])),
        ] {
            let q = make_q4(&mut rng, experts * rpe, cols, group, f16);
            let gw = match &split {
                Some(s) => upload_int4_pieces(ctx, "experts", &q.host(), s).unwrap(),
                None => upload(ctx, &q, f16),
            };
            for (k, ids_list) in lists.iter().enumerate() {
                let epi = EPILOGUES[k % 3];
                let x_div = 1 + k % 2;
                let pairs = ids_list.len();
                let width = if epi == Epilogue::SwiGlu {
                    rpe / 2
                } else {
                    rpe
                };
                let c = moe_case(ctx, &mut rng, cols, ids_list, x_div, width, epi);
                let y = ctx.upload("y", &c.init).unwrap();
                let scratch = GroupScratch::new(ctx, pairs as u32, experts as u32).unwrap();
                let ids = TensorView::words(&c.ids, IDS_OFF as u32, pairs as u32);
                let mut d = vec![moe_group(ctx, &ids, experts as u32, &scratch).unwrap()];
                let x_rows = (pairs - 1) / x_div + 1;
                let args = GroupedArgs {
                    x: TensorView::rows(
                        &c.x,
                        QDtype::F32,
                        0,
                        [x_rows as u64, cols as u64],
                        c.x_stride as u64,
                    ),
                    x_row_div: x_div as u32,
                    y: TensorView::rows(
                        &y,
                        QDtype::F32,
                        0,
                        [pairs as u64, width as u64],
                        c.y_stride as u64,
                    ),
                    rows_per_expert: rpe as u32,
                };
                d.extend(matmul_grouped(ctx, &gw, &args, &scratch, epi).unwrap());
                run(ctx, &d);
                let got = ctx.read_f32(&y, 0, c.init.len()).unwrap();
                let what = format!(
                    "{t_name} seed {seed:#x} grouped [{cols}] group {group} pieces {split:?} \
                     pairs {pairs} x_div {x_div} {epi:?}",
                    t_name = t.name
                );
                c.check(&got, &q.w, cols, rpe, epi, REL, &what);
            }
        }
    }
}

/// Shapes of the 4-bit one-token GEMV (`mm_q4` / `mm_q4_ids`): the default,
/// the smallest (64 threads, 16 lanes, 1 quad), several teams of short spans,
/// one team over 256 lanes, 4 quads per thread; chunks and interleaved words.
const INT4_GEMVS: [Int4Gemv; 8] = [
    Int4Gemv::DEFAULT,
    Int4Gemv {
        threads: 64,
        lanes: 16,
        quads: 1,
        interleave: false,
    },
    Int4Gemv {
        threads: 128,
        lanes: 32,
        quads: 4,
        interleave: true,
    },
    Int4Gemv {
        threads: 256,
        lanes: 256,
        quads: 1,
        interleave: false,
    },
    Int4Gemv {
        threads: 256,
        lanes: 16,
        quads: 4,
        interleave: false,
    },
    Int4Gemv {
        threads: 128,
        lanes: 64,
        quads: 2,
        interleave: true,
    },
    Int4Gemv {
        threads: 64,
        lanes: 16,
        quads: 1,
        interleave: true,
    },
    Int4Gemv {
        threads: 256,
        lanes: 256,
        quads: 2,
        interleave: true,
    },
];

/// Every shape of the 4-bit GEMV, dense at one token: rows longer than one
/// pass of a team (4400 columns: 138 chunks, a partial last one), rows
/// shorter than the lanes, groups of 32 / 128 and one per row, f16 and f32
/// scales, row counts that leave a workgroup's last quads empty, pieces;
/// every epilogue, aligned and unaligned x.
#[test]
fn int4_gemv_shapes_match_reference() {
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_440c);
        let mut rng = Rng::new(seed);
        for (ci, &(rows, cols, group, f16)) in [
            (42usize, 4400usize, 128usize, true),
            (70, 1000, 32, false),
            (18, 520, 520, true),
            (130, 64, 64, true),
        ]
        .iter()
        .enumerate()
        {
            let q = make_q4(&mut rng, rows, cols, group, f16);
            let gw = if ci == 3 {
                upload_int4_pieces(&t.ctx, "split", &q.host(), &[50, 47, 33]).unwrap()
            } else {
                upload(&t.ctx, &q, f16)
            };
            for (k, shape) in INT4_GEMVS.iter().enumerate() {
                let epi = EPILOGUES[(ci + k) % 3];
                let what = format!("seed {seed:#x} [{rows}, {cols}] group {group} {shape:?}");
                let launch = |ctx: &GpuContext, w: &GpuWeight, a: &MatmulArgs, e: Epilogue| {
                    let d = matmul_int4_with(ctx, w, a, None, e, Some(shape))?;
                    assert_eq!(d[0].label, "matmul_gemv_q4");
                    Ok(d)
                };
                matmul_case::dense_case(
                    t,
                    &mut rng,
                    &gw,
                    &q.w,
                    1,
                    epi,
                    &what,
                    &launch,
                    (ci + k) % 2 == 0,
                    REL,
                );
            }
        }
    }
}

/// The RMSNorm fused into the 4-bit GEMV, every shape: `norm(x) · Wᵀ`
/// against the CPU norm then the reference dot products (x rows past one
/// team's pass, rows shorter than the lanes).
#[test]
fn int4_gemv_shapes_fused_norm() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_440d);
        let mut rng = Rng::new(seed);
        for (ci, &(rows, cols, group)) in [(26usize, 4400usize, 128usize), (66, 260, 32)]
            .iter()
            .enumerate()
        {
            let q = make_q4(&mut rng, rows, cols, group, ci == 0);
            let gw = upload(ctx, &q, ci == 0);
            for (k, shape) in INT4_GEMVS.iter().enumerate() {
                let epi = EPILOGUES[(ci + k) % 3];
                let swiglu = epi == Epilogue::SwiGlu;
                let width = if swiglu { rows / 2 } else { rows };
                let x_off = 4 * k;
                let mut xbuf = vec![f32::NAN; x_off + cols + 4];
                let nw = rng.normal_vec(cols);
                let r = rng.normal_vec(cols);
                xbuf[x_off..][..cols].copy_from_slice(&r);
                let normed = qwgpu_ops::norm::rms_norm_one_plus(&r, &nw, 1e-6);
                let init = if epi == Epilogue::Accumulate {
                    rng.normal_vec(width)
                } else {
                    vec![f32::NAN; width]
                };
                let x = ctx.upload("x", &xbuf).unwrap();
                let y = ctx.upload("y", &init).unwrap();
                let nwb = ctx.upload("norm weight", &nw).unwrap();
                let args = MatmulArgs {
                    x: &x,
                    x_offset: x_off as u32,
                    x_stride: cols as u32,
                    y: &y,
                    y_offset: 0,
                    y_stride: width as u32,
                    t: 1,
                };
                let norm = FusedNorm {
                    weight: &nwb,
                    eps: 1e-6,
                    one_plus: true,
                };
                let d = matmul_int4_with(ctx, &gw, &args, Some(&norm), epi, Some(shape)).unwrap();
                assert_eq!(d[0].label, "matmul_gemv_q4");
                run(ctx, &d);
                let got = ctx.read_f32(&y, 0, width).unwrap();
                let mut want = vec![None; width];
                for (c, slot) in want.iter_mut().enumerate() {
                    let (mut v, mut tol) =
                        support::expected(&normed, &q.w, cols, rows, c, swiglu, REL);
                    if epi == Epilogue::Accumulate {
                        v += init[c] as f64;
                        tol += 1e-6 * init[c].abs() as f64;
                    }
                    *slot = Some((v, tol));
                }
                let what = format!(
                    "{t_name} seed {seed:#x} fused norm [{rows}, {cols}] group {group} {shape:?} {epi:?}",
                    t_name = t.name
                );
                support::check(&got, &init, &want, &what);
            }
        }
    }
}

/// The expert-indexed 4-bit GEMV (MoE decode, one pair per workgroup row),
/// every shape: runs of equal and scattered ids, an id past the experts
/// (skipped), split pieces, with and without the fused norm.
#[test]
fn int4_gemv_shapes_indexed() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_440e);
        let mut rng = Rng::new(seed);
        let rpe = 18;
        let ids_list = [3u32, 3, 0, 7, 1, 2];
        for (ci, (cols, group, f16, split)) in [
            (1100usize, 128usize, true, None),
            (96, 32, false, Some(vec![30usize, 29, 13])),
        ]
        .into_iter()
        .enumerate()
        {
            let q = make_q4(&mut rng, 4 * rpe, cols, group, f16);
            let gw = match &split {
                Some(s) => upload_int4_pieces(ctx, "experts", &q.host(), s).unwrap(),
                None => upload(ctx, &q, f16),
            };
            for (k, shape) in INT4_GEMVS.iter().enumerate() {
                let epi = EPILOGUES[(ci + k) % 3];
                let x_div = 1 + k % 2;
                let width = if epi == Epilogue::SwiGlu {
                    rpe / 2
                } else {
                    rpe
                };
                let mut c = moe_case(ctx, &mut rng, cols, &ids_list, x_div, width, epi);
                let y = ctx.upload("y", &c.init).unwrap();
                // Fused norm where x rows are 16-byte aligned (x_div 2), every other time.
                let nw = rng.normal_vec(cols);
                let nwb = ctx.upload("norm weight", &nw).unwrap();
                let norm = (x_div == 2 && k % 4 == 1).then(|| {
                    for r in &mut c.xrows {
                        *r = qwgpu_ops::norm::rms_norm_one_plus(r, &nw, 1e-6);
                    }
                    FusedNorm {
                        weight: &nwb,
                        eps: 1e-6,
                        one_plus: true,
                    }
                });
                let args = c.args(&y, rpe);
                let d = matmul_indexed_int4_with(ctx, &gw, &args, norm.as_ref(), epi, Some(shape))
                    .unwrap();
                assert_eq!(d[0].label, "matmul_indexed_q4");
                run(ctx, &d);
                let got = ctx.read_f32(&y, 0, c.init.len()).unwrap();
                let what = format!(
                    "{t_name} seed {seed:#x} indexed q4 [{cols}] group {group} pieces {split:?} \
                     {shape:?} x_div {x_div} norm {n} {epi:?}",
                    n = norm.is_some(),
                    t_name = t.name
                );
                c.check(&got, &q.w, cols, rpe, epi, REL, &what);
            }
        }
    }
}

/// 4-bit weights have no tensor-core path: forcing it is a typed error, and
/// Auto runs the scalar GEMM on every adapter. Bad host weights are typed
/// errors naming the weight.
#[test]
fn int4_unsupported_paths_and_bad_weights_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(testing::seed(0x5eed_4409));
    let q = make_q4(&mut rng, 8, 64, 32, true);
    let gw = upload(ctx, &q, true);
    let x = ctx.storage("x", 4 * 64 * 20).unwrap();
    let y = ctx.storage("y", 4 * 8 * 20).unwrap();
    let args = contiguous(&x, &y, 20, 64, 8);
    match matmul_with(ctx, &gw, &args, Epilogue::Store, MatmulPath::Coop) {
        Err(KernelError::Unsupported { .. }) => {}
        Err(e) => panic!("forced coop on a 4-bit weight: wrong error {e}"),
        Ok(_) => panic!("forced coop on a 4-bit weight was accepted"),
    }
    let d = matmul(ctx, &gw, &args, Epilogue::Store).unwrap();
    assert_eq!(d[0].label, "matmul_tile");
    // One token: the one-token GEMV, or the small-T kernel when a shape is forced.
    let one = MatmulArgs { t: 1, ..args };
    let d = matmul(ctx, &gw, &one, Epilogue::Store).unwrap();
    let want = if ctx.tuning.int4_gemv.is_some() {
        "matmul_gemv_q4"
    } else {
        "matmul_gemv"
    };
    assert_eq!(d[0].label, want);
    let d = matmul_int4_with(ctx, &gw, &one, None, Epilogue::Store, None).unwrap();
    assert_eq!(d[0].label, "matmul_gemv");
    // The 4-bit GEMV takes one token of a 4-bit weight only.
    for (what, r) in [
        (
            "T = 20",
            matmul_int4_with(ctx, &gw, &args, None, Epilogue::Store, None),
        ),
        (
            "BF16",
            matmul_int4_with(
                ctx,
                &GpuWeight::upload(
                    ctx,
                    &support::packed_one_shard(
                        &mut rng,
                        qwgpu_checkpoint::Dtype::BF16,
                        8,
                        64,
                        support::Scheme::None,
                    ),
                )
                .unwrap(),
                &one,
                None,
                Epilogue::Store,
                None,
            ),
        ),
    ] {
        match r {
            Err(KernelError::Arguments { kernel, .. }) => assert_eq!(kernel, "matmul_int4_with"),
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what} was accepted"),
        }
    }
    let d = matmul_gemv_with(ctx, &gw, &one, Epilogue::Store, Some(&SmallT::DEFAULT)).unwrap();
    assert_eq!(d[0].label, "matmul_gemv_t");
    let mut bad = q.host();
    bad.scales = &q.scales[1..];
    match upload_int4(ctx, "model.layers.3.mlp.down_proj", &bad) {
        Err(KernelError::Unsupported { what, detail }) => {
            assert!(what.contains("model.layers.3.mlp.down_proj"), "{what}");
            assert!(detail.contains("scales"), "{detail}");
        }
        Err(e) => panic!("short scales: wrong error {e}"),
        Ok(_) => panic!("short scales were accepted"),
    }
}

/// A loader-made 4-bit `PackedWeight` (`ScaleScheme::Int4`, two fused shards)
/// uploads through `GpuWeight::upload` (also in pieces) and computes what the
/// loader's own dequantizer gives.
#[test]
fn int4_packed_weight_uploads_through_gpu_weight() {
    use qwgpu_loader::{ActivationQuant, Int4Weights, PackedWeight, ScaleScheme, Shard};
    for t in testing::contexts() {
        let seed = testing::seed(0x5eed_440a);
        let mut rng = Rng::new(seed);
        let (rows, cols, group) = (24usize, 100usize, 32usize);
        let q = make_q4(&mut rng, rows, cols, group, true);
        let pw = PackedWeight {
            name: "model.layers.0.mlp.gate_up_proj".into(),
            dtype: qwgpu_checkpoint::Dtype::I32,
            rows,
            cols,
            data: Vec::new(),
            shards: [(0usize, 12usize), (12, 12)]
                .iter()
                .enumerate()
                .map(|(i, &(o, n))| Shard {
                    name: format!("s{i}"),
                    source: format!("src{i}"),
                    row_offset: o,
                    rows: n,
                })
                .collect(),
            scale: ScaleScheme::Int4(Box::new(Int4Weights {
                group_size: group,
                words: q.words.clone(),
                scales: q.scales.clone(),
                zeros: q.zeros.clone(),
            })),
            activation: ActivationQuant::None,
        };
        let wdq = qwgpu_loader::dequantize(&pw).unwrap();
        assert_eq!(wdq, q.w, "the loader's dequantizer");
        for gw in [
            GpuWeight::upload(&t.ctx, &pw).unwrap(),
            GpuWeight::upload_pieces(&t.ctx, &pw, &[5, 19]).unwrap(),
        ] {
            assert_eq!(gw.format, WeightFormat::Q4);
            let q = pw.int4().unwrap();
            assert_eq!(gw.bytes(), qwgpu_kernels::int4::gpu_bytes(&q));
            for (tokens, epi) in [
                (1, Epilogue::SwiGlu),
                (4, Epilogue::Store),
                (20, Epilogue::Accumulate),
            ] {
                let what = format!("seed {seed:#x} packed int4 pieces {n}", n = gw.pieces.len());
                matmul_case::dense_case(
                    t, &mut rng, &gw, &wdq, tokens, epi, &what, &matmul, true, REL,
                );
            }
        }
    }
}

/// The tensor-core GEMM of 4-bit weights: the plain f16 variant
/// (`f16_matmul`: x and `(q − zero) · scale` rounded to f16), tolerance
/// `2e-3 · Σ|x·w|` as the other formats' plain variant; Auto takes it for
/// `T > 16`, and Q4F32 weights (scales not exact in f16) stay on the scalar GEMM.
#[test]
fn int4_coop_f16_matches_reference() {
    int4_coop_matches_reference(0x5eed_440b, false);
}

/// The fast variant of the tensor-core GEMM on 4-bit weights
/// (`MatmulPrecision::Fast`: `f16(x·s)` and `f16((q − zero)·scale)`), what
/// Auto runs for `T > 16` with `Tuning::coop_dense_q4` on: as
/// [`int4_coop_f16_matches_reference`] (Q4F32 weights on the scalar tile
/// GEMM, which rounds x the same way: 2e-3 for both), and with the switch
/// off Q4 weights back on the scalar tile GEMM.
#[test]
fn int4_coop_fast_matches_reference() {
    int4_coop_matches_reference(0x5eed_440c, true);
}

/// The body of the two tests above: `fast` picks fast precision, else
/// `f16_matmul`.
fn int4_coop_matches_reference(seed: u64, fast: bool) {
    use qwgpu_kernels::testing::Feature;
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let precision = if fast {
            qwgpu_kernels::MatmulPrecision::Fast
        } else {
            qwgpu_kernels::MatmulPrecision::Exact
        };
        let mut ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
            f16_matmul: !fast,
            precision,
            ..t.variant.options()
        })
        .unwrap();
        // The fast variant is behind its switch (off by default until it
        // has run on hardware; QWGPU_COOP_Q4=1).
        ctx.tuning.coop_dense_q4 = fast;
        let seed = testing::seed(seed);
        let mut rng = Rng::new(seed);
        for (rows, cols, group) in [(130usize, 200usize, 64usize), (70, 520, 128), (18, 36, 12)] {
            for f16 in [true, false] {
                let q = make_q4(&mut rng, rows, cols, group, f16);
                let gw = upload(&ctx, &q, f16);
                for tokens in [17usize, 130] {
                    for (k, epi) in EPILOGUES.into_iter().enumerate() {
                        let swiglu = epi == Epilogue::SwiGlu;
                        let width = if swiglu { rows / 2 } else { rows };
                        let x_stride = cols + k;
                        let (xbuf, xrows) = make_x(&mut rng, 0, x_stride, tokens, cols);
                        let init = if epi == Epilogue::Accumulate {
                            rng.normal_vec(tokens * width)
                        } else {
                            vec![f32::NAN; tokens * width]
                        };
                        let x = ctx.upload("x", &xbuf).unwrap();
                        let y = ctx.upload("y", &init).unwrap();
                        let args = contiguous(&x, &y, tokens, x_stride, width);
                        let d = matmul(&ctx, &gw, &args, epi).unwrap();
                        let want_label = if f16 { "matmul_coop" } else { "matmul_tile" };
                        assert_eq!(d[0].label, want_label, "{f:?}", f = gw.format);
                        run(&ctx, &d);
                        let got = ctx.read_f32(&y, 0, tokens * width).unwrap();
                        let rel = if f16 || fast { 2e-3 } else { REL };
                        let mut want = vec![None; tokens * width];
                        for (ti, xr) in xrows.iter().enumerate() {
                            for c in 0..width {
                                let (mut v, mut tol) =
                                    support::expected(xr, &q.w, cols, rows, c, swiglu, rel);
                                let i = ti * width + c;
                                if epi == Epilogue::Accumulate {
                                    v += init[i] as f64;
                                    tol += 1e-6 * init[i].abs() as f64;
                                }
                                want[i] = Some((v, tol));
                            }
                        }
                        let what = format!(
                            "{t_name} seed {seed:#x} coop fast {fast} {f:?} [{rows}, {cols}] group {group} T={tokens} {epi:?}",
                            t_name = t.name,
                            f = gw.format
                        );
                        support::check(&got, &init, &want, &what);
                    }
                }
            }
        }
        if fast {
            // The switch off: the scalar tile GEMM again.
            ctx.tuning.coop_dense_q4 = false;
            let q = make_q4(&mut rng, 40, 64, 32, true);
            let gw = upload(&ctx, &q, true);
            let x = ctx.storage("x", 4 * 64 * 20).unwrap();
            let y = ctx.storage("y", 4 * 40 * 20).unwrap();
            let args = contiguous(&x, &y, 20, 64, 40);
            let d = matmul(&ctx, &gw, &args, Epilogue::Store).unwrap();
            assert_eq!(d[0].label, "matmul_tile", "{t_name}", t_name = t.name);
        }
    }
}

/// Dense 4-bit GEMMs at the Qwen3.5-27B MLP shapes (GPTQ-style weights,
/// `testing::cases::int4::Gptq`: groups of 128, zero point 8, f16 scales):
/// gate/up `[2·17408, 5120]` SwiGLU and down `[5120, 17408]` Store, T = 512
/// and 4096, on the path `Auto` picks in each context: exact precision (the
/// scalar tile GEMM), fast precision with `Tuning::coop_dense_q4` off (the
/// tile GEMM's fast emulation) and on (`mm_coop`'s fast variant), and
/// `f16_matmul` (`mm_coop`'s plain variant). Trusted modules, GPU
/// timestamps (best of 5), `BENCH` lines with the kernel's label, µs and
/// TFLOP/s, and each path's largest difference to the exact one on the first
/// 8 rows relative to their largest |y|. Run with `-- --include-ignored
/// --exact matmul_int4::int4_dense_gemm_bench_27b --nocapture`.
#[test]
#[ignore = "benchmark: run with -- --ignored int4_dense_gemm_bench_27b"]
fn int4_dense_gemm_bench_27b() {
    use qwgpu_kernels::{ContextOptions, MatmulPrecision};
    use support::bench::{best_ns, max_rel_diff, Dense};
    let trusted = ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    };
    let with = |precision, f16_matmul, switch| {
        let mut c = GpuContext::new(&ContextOptions {
            precision,
            f16_matmul,
            ..trusted.clone()
        })
        .unwrap();
        c.tuning.coop_dense_q4 = switch;
        c
    };
    let contexts = [
        ("exact", with(MatmulPrecision::Exact, false, true)),
        (
            "fast, coop_dense_q4 off",
            with(MatmulPrecision::Fast, false, false),
        ),
        ("fast", with(MatmulPrecision::Fast, false, true)),
        ("f16_matmul", with(MatmulPrecision::Exact, true, true)),
    ];
    let (h, inter) = (5120usize, 17408usize);
    let mut bits = qwgpu_ops::rng::SplitMix64::new(0x5eed_44be);
    let weights = [
        (
            "gate/up",
            cases::Gptq::new(&mut bits, 2 * inter, h),
            Epilogue::SwiGlu,
        ),
        (
            "down",
            cases::Gptq::new(&mut bits, h, inter),
            Epilogue::Store,
        ),
    ];
    let mut rng = Rng::new(0x5eed_44bf);
    for (wname, q, epi) in &weights {
        let (rows, cols) = (q.rows, q.cols);
        let width = if *epi == Epilogue::SwiGlu {
            rows / 2
        } else {
            rows
        };
        for t in [512usize, 4096] {
            let xv = rng.normal_vec(t * cols);
            let flop = 2.0 * (t * rows * cols) as f64;
            let mut first: Option<Vec<f32>> = None;
            for (name, c) in &contexts {
                let gw = upload_int4(c, wname, &q.host()).unwrap();
                let io = Dense::new(c, &xv, t, cols, width);
                let d = matmul(c, &gw, &io.args(), *epi).unwrap();
                let (best, _) = best_ns(c, &d, "");
                eprintln!(
                    "BENCH {adapter} int4 27B {wname} [{rows}, {cols}] T={t} {name} ({label}): \
                     {us:.1} µs = {tflops:.1} TFLOP/s",
                    adapter = c.info.name,
                    label = d[0].label,
                    us = best / 1e3,
                    tflops = flop / best / 1e3
                );
                let got = c.read_f32(&io.y, 0, 8 * width).unwrap();
                match &first {
                    None => first = Some(got),
                    Some(b) => {
                        eprintln!(
                            "BENCH   {name} vs exact, first 8 rows: max |Δ| / max |y| = {rel:.2e}",
                            rel = max_rel_diff(&got, b)
                        );
                    }
                }
            }
        }
    }
}
