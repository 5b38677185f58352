//! The RMSNorm fused into the decode GEMV (`matmul_normed`) against the CPU
//! reference: `rms_norm` (qwgpu-ops) of each x row, then the dot products
//! with the dequantized weight in f64.
//!
//! Tolerance: `1e-5 · Σ|x̂ᵢ·wᵢ| + 1e-5 · |want|` per output (x̂ the normalised
//! row): the kernel scales the dot product by 1/rms after the sum instead of
//! scaling x first, which only changes f32 rounding.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{
    matmul_indexed_normed, matmul_normed, Epilogue, FusedNorm, IndexedArgs, MatmulArgs,
};
use qwgpu_kernels::{testing, Dispatch, GpuWeight, KernelError};

mod support;
use qwgpu_ops::rng::Rng;
use support::Scheme;

use support::packed_one_shard as packed;

#[test]
fn fused_norm_matches_norm_then_matmul() {
    // (dtype, scheme, rows, cols): columns multiples of 4 but not of the
    // vec4<u32> chunk (8 BF16, 16 FP8 values), one block-scaled FP8 weight.
    let cases = [
        (Dtype::BF16, Scheme::None, 6usize, 36usize),
        (Dtype::F8E4M3, Scheme::Block([16, 32]), 10, 100),
        (Dtype::F32, Scheme::None, 3, 4),
        (Dtype::BF16, Scheme::None, 66, 260),
    ];
    let epilogues = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_4e00);
        let mut rng = Rng::new(seed);
        for (ci, &(dtype, scheme, rows, cols)) in cases.iter().enumerate() {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            for (k, &epi) in epilogues.iter().enumerate() {
                if epi == Epilogue::SwiGlu && rows % 2 == 1 {
                    continue;
                }
                let tokens = [1usize, 3, 9, 16][(ci + k) % 4];
                let one_plus = (ci + k) % 2 == 0;
                let width = if epi == Epilogue::SwiGlu {
                    rows / 2
                } else {
                    rows
                };
                // Aligned rows (the fused norm needs them), a gap between rows,
                // NaN elsewhere; rows of very different magnitudes.
                let x_off = 4 * (k + 1);
                let x_stride = cols + 4;
                let mut xbuf = vec![f32::NAN; x_off + tokens * x_stride];
                let mut normed = Vec::new();
                let nw: Vec<f32> = rng.normal_vec(cols);
                let eps = 1e-6f32;
                for ti in 0..tokens {
                    let mag = [1.0f32, 30.0, 0.01][ti % 3];
                    let row: Vec<f32> = rng.normal_vec(cols).iter().map(|v| v * mag).collect();
                    xbuf[x_off + ti * x_stride..][..cols].copy_from_slice(&row);
                    normed.push(rms_norm(&row, &nw, eps, one_plus));
                }
                let y_stride = width + 1;
                let ylen = tokens * y_stride + 2;
                let init: Vec<f32> = if epi == Epilogue::Accumulate {
                    rng.normal_vec(ylen)
                } else {
                    vec![f32::NAN; ylen]
                };
                let x = ctx.upload("x", &xbuf).unwrap();
                let y = ctx.upload("y", &init).unwrap();
                let w_buf = ctx.upload("norm w", &nw).unwrap();
                let args = MatmulArgs {
                    x: &x,
                    x_offset: x_off as u32,
                    x_stride: x_stride as u32,
                    y: &y,
                    y_offset: 0,
                    y_stride: y_stride as u32,
                    t: tokens as u32,
                };
                let norm = FusedNorm {
                    weight: &w_buf,
                    eps,
                    one_plus,
                };
                let what = format!(
                    "{t_name} seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}] T={tokens} {epi:?} one_plus {one_plus}",
                    t_name = t.name
                );
                let d = matmul_normed(ctx, &gw, &args, &norm, epi)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let refs: Vec<&Dispatch> = d.iter().collect();
                ctx.run("matmul_normed test", &refs).unwrap();
                let got = ctx.read_f32(&y, 0, ylen).unwrap();
                let mut want = vec![None; ylen];
                for (ti, xr) in normed.iter().enumerate() {
                    for c in 0..width {
                        let (mut w, mut tol) = support::expected(
                            xr,
                            &wdq,
                            cols,
                            rows,
                            c,
                            epi == Epilogue::SwiGlu,
                            1e-5,
                        );
                        let i = ti * y_stride + c;
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
}

/// The MoE form: expert-indexed pairs reading normalised x rows (pair p uses
/// row p / x_div), ids out of range skipped, one or many pairs per workgroup.
#[test]
fn fused_norm_indexed_matches_norm_then_expert_matmul() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let seed = testing::seed(0x5eed_4e01);
        let mut rng = Rng::new(seed);
        let (experts, rpe, cols) = (5usize, 6usize, 44usize);
        for (dtype, scheme) in [
            (Dtype::BF16, Scheme::None),
            (Dtype::F8E4M3, Scheme::Block([2, 32])),
        ] {
            let pw = packed(&mut rng, dtype, experts * rpe, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            for (k, epi) in [Epilogue::SwiGlu, Epilogue::Store].into_iter().enumerate() {
                // Few pairs (one per workgroup) and many (8 per workgroup).
                let ids_list: Vec<u32> = match k {
                    0 => vec![3, 0, 7, 3, 1, 4],
                    _ => (0..40u32).map(|i| (i * 7 + 2) % 6).collect(),
                };
                let x_div = 2usize;
                let pairs = ids_list.len();
                let x_rows = pairs.div_ceil(x_div);
                let x_stride = cols + 4;
                let nw: Vec<f32> = rng.normal_vec(cols);
                let mut xbuf = vec![f32::NAN; x_rows * x_stride];
                let mut normed = Vec::new();
                for r in 0..x_rows {
                    let mag = [1.0f32, 40.0, 0.02][r % 3];
                    let row: Vec<f32> = rng.normal_vec(cols).iter().map(|v| v * mag).collect();
                    xbuf[r * x_stride..][..cols].copy_from_slice(&row);
                    normed.push(rms_norm(&row, &nw, 1e-6, true));
                }
                let width = if epi == Epilogue::SwiGlu {
                    rpe / 2
                } else {
                    rpe
                };
                let y_stride = width + 1;
                let ylen = pairs * y_stride;
                let init = vec![f32::NAN; ylen];
                let x = ctx.upload("x", &xbuf).unwrap();
                let ids = ctx.upload("ids", &ids_list).unwrap();
                let y = ctx.upload("y", &init).unwrap();
                let w_buf = ctx.upload("norm w", &nw).unwrap();
                let args = IndexedArgs {
                    x: &x,
                    x_stride: x_stride as u32,
                    x_row_div: x_div as u32,
                    ids: &ids,
                    ids_offset: 0,
                    y: &y,
                    y_stride: y_stride as u32,
                    pairs: pairs as u32,
                    rows_per_expert: rpe as u32,
                };
                let norm = FusedNorm {
                    weight: &w_buf,
                    eps: 1e-6,
                    one_plus: true,
                };
                let what = format!(
                    "{t_name} seed {seed:#x} {dtype:?} {epi:?} ids {ids_list:?}",
                    t_name = t.name
                );
                let d = matmul_indexed_normed(ctx, &gw, &args, &norm, epi)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let refs: Vec<&Dispatch> = d.iter().collect();
                ctx.run("matmul_indexed_normed test", &refs).unwrap();
                let got = ctx.read_f32(&y, 0, ylen).unwrap();
                let mut want = vec![None; ylen];
                for (p, &e) in ids_list.iter().enumerate() {
                    let e = e as usize;
                    if e >= experts {
                        continue;
                    }
                    let w = &wdq[e * rpe * cols..(e + 1) * rpe * cols];
                    for c in 0..width {
                        want[p * y_stride + c] = Some(support::expected(
                            &normed[p / x_div],
                            w,
                            cols,
                            rpe,
                            c,
                            epi == Epilogue::SwiGlu,
                            1e-5,
                        ));
                    }
                }
                support::check(&got, &init, &want, &what);
            }
        }
    }
}

/// The reference RMSNorm (qwgpu-ops has the `1 + w` form; the plain one too
/// here), in f64.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, one_plus: bool) -> Vec<f32> {
    if one_plus {
        return qwgpu_ops::norm::rms_norm_one_plus(x, w, eps);
    }
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &g)| (v as f64 * r * g as f64) as f32)
        .collect()
}

#[test]
fn fused_norm_bad_arguments_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(9);
    let gw = GpuWeight::upload(ctx, &packed(&mut rng, Dtype::BF16, 4, 12, Scheme::None)).unwrap();
    let odd = GpuWeight::upload(ctx, &packed(&mut rng, Dtype::BF16, 4, 10, Scheme::None)).unwrap();
    let x = ctx.storage("x", 4 * 12 * 20).unwrap();
    let y = ctx.storage("y", 4 * 4 * 20).unwrap();
    let nw = ctx.storage("nw", 4 * 12).unwrap();
    let short = ctx.storage("nw short", 4 * 8).unwrap();
    let a = MatmulArgs {
        x: &x,
        x_offset: 0,
        x_stride: 12,
        y: &y,
        y_offset: 0,
        y_stride: 4,
        t: 2,
    };
    let n = FusedNorm {
        weight: &nw,
        eps: 1e-6,
        one_plus: true,
    };
    let err = |r: Result<Vec<Dispatch>, KernelError>, needle: &str| match r {
        Err(KernelError::Arguments { detail, .. }) => {
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`")
        }
        Err(e) => panic!("expected an Arguments error with `{needle}`, got {e}"),
        Ok(_) => panic!("expected an Arguments error with `{needle}`, got launches"),
    };
    assert_eq!(
        matmul_normed(ctx, &gw, &a, &n, Epilogue::Store)
            .unwrap()
            .len(),
        1
    );
    err(
        matmul_normed(ctx, &gw, &MatmulArgs { t: 17, ..a }, &n, Epilogue::Store),
        "T = 17",
    );
    err(
        matmul_normed(
            ctx,
            &gw,
            &MatmulArgs { x_offset: 2, ..a },
            &n,
            Epilogue::Store,
        ),
        "multiples of 4",
    );
    err(
        matmul_normed(
            ctx,
            &odd,
            &MatmulArgs { x_stride: 12, ..a },
            &n,
            Epilogue::Store,
        ),
        "multiples of 4",
    );
    err(
        matmul_normed(
            ctx,
            &gw,
            &a,
            &FusedNorm {
                weight: &short,
                ..n
            },
            Epilogue::Store,
        ),
        "norm weight of 32 bytes",
    );
}
