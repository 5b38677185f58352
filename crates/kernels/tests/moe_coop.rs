//! The MoE grouped GEMM on 128-pair grouping tiles (`moe_group`'s `GTILE`,
//! the tile a tensor-core grouped GEMM would take): the scalar grouped GEMM
//! takes each in two halves of 64. Against an f64 CPU reference of
//! `y[q] = x[q / x_div] · W_e(q)ᵀ` with `qwgpu_loader::dequantize`'s exact f32
//! weights, tolerance per output (`support::expected`) 1e-5 · Σ|x·w| (f32
//! sums). Rows of pairs routed past the experts, and everything outside the
//! written rows, keep their bits (NaN poison). Forcing the tensor-core path
//! is a typed error (none in this version).

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{Epilogue, MatmulPath};
use qwgpu_kernels::moe::grouped::{matmul_grouped_with, moe_group, GroupScratch, GroupedArgs};
use qwgpu_kernels::testing;
use qwgpu_kernels::view::{Dtype as QDtype, TensorView};
use qwgpu_kernels::{GpuContext, GpuWeight, KernelError};

mod support;
use qwgpu_ops::rng::Rng;
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];

/// One grouped case.
struct Case {
    dtype: Dtype,
    scheme: Scheme,
    experts: usize,
    rpe: usize,
    cols: usize,
    tokens: usize,
    k: usize,
    /// Weight pieces' row counts (one piece when it holds all rows).
    split: Vec<usize>,
}

/// Runs `case` with `epi` on `path` over a grouping of `tile_pairs` and
/// checks every output against the reference within `rel`.
#[allow(clippy::too_many_arguments)]
fn check_case(
    ctx: &GpuContext,
    rng: &mut Rng,
    c: &Case,
    epi: Epilogue,
    path: MatmulPath,
    tile_pairs: u32,
    rel: f64,
    what: &str,
) {
    let rows = c.experts * c.rpe;
    let pw = support::packed_one_shard(rng, c.dtype, rows, c.cols, c.scheme);
    let wdq = qwgpu_loader::dequantize(&pw).unwrap();
    let gw = GpuWeight::upload_pieces(ctx, &pw, &c.split).unwrap();
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
        let f = 10f32.powi((rng.uniform() * 9.0) as i32 - 4);
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
        GroupScratch::with_tile_pairs(ctx, pairs as u32, c.experts as u32, tile_pairs).unwrap();
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
    d.extend(
        matmul_grouped_with(ctx, &gw, &args, &scratch, epi, path)
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    );
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
                rel,
            );
            let i = q * y_stride + col;
            if epi == Epilogue::Accumulate {
                w += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((w, tol));
        }
    }
    support::check(
        &got,
        &init,
        &want,
        &format!(
            "{what} {dtype:?} {scheme:?} E={experts} rpe={rpe} cols={cols} T={tokens} k={k} \
             split {split:?} {epi:?} {path:?} tiles of {tile_pairs}",
            dtype = c.dtype,
            scheme = c.scheme,
            experts = c.experts,
            rpe = c.rpe,
            cols = c.cols,
            tokens = c.tokens,
            k = c.k,
            split = c.split
        ),
    );
}

fn cases() -> Vec<Case> {
    vec![
        // 160 pairs: expert 0 gets ~70, more than half a 128-pair tile.
        Case {
            dtype: Dtype::BF16,
            scheme: Scheme::None,
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
            dtype: Dtype::F8E4M3,
            scheme: Scheme::PerChannel,
            experts: 4,
            rpe: 64,
            cols: 72,
            tokens: 150,
            k: 3,
            split: vec![100, 156],
        },
        // 128 × 128 blocks: the coop path applies them per partial sum.
        Case {
            dtype: Dtype::F8E4M3,
            scheme: Scheme::Block([128, 128]),
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
        for c in cases() {
            for epi in EPILOGUES {
                check_case(
                    &t.ctx,
                    &mut rng,
                    &c,
                    epi,
                    MatmulPath::Scalar,
                    128,
                    1e-5,
                    &t.name,
                );
            }
        }
    }
}

/// Forcing the tensor-core grouped GEMM is a typed error, not a panic.
#[test]
fn forced_coop_grouped_gemm_is_unsupported() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(testing::seed(0x0e0c_0003));
    let pw = support::packed_one_shard(&mut rng, Dtype::BF16, 32, 8, Scheme::None);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let ids = ctx.upload("ids", &[0u32, 1, 0, 1]).unwrap();
    let x = ctx.upload("x", &rng.normal_vec(4 * 8)).unwrap();
    let y = ctx.storage("y", 4 * 16 * 4).unwrap();
    let scratch = GroupScratch::new(ctx, 4, 2).unwrap();
    let view = |b, rows: u64, cols: u64| TensorView::rows(b, QDtype::F32, 0, [rows, cols], cols);
    let args = GroupedArgs {
        x: view(&x, 4, 8),
        x_row_div: 1,
        y: view(&y, 4, 16),
        rows_per_expert: 16,
    };
    let _ = moe_group(ctx, &TensorView::words(&ids, 0, 4), 2, &scratch).unwrap();
    match matmul_grouped_with(ctx, &gw, &args, &scratch, Epilogue::Store, MatmulPath::Coop) {
        Err(KernelError::Unsupported { .. }) => {}
        other => panic!("{t_name}: forced coop gave {other:?}", t_name = t.name),
    }
}
