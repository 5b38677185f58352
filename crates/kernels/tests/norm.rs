//! RMSNorm kernel against `qwgpu_ops::norm::rms_norm_one_plus` (and the same
//! formula with a plain weight), on both test contexts. Tolerance:
//! `Tol::gpu_f32()` (abs 1e-4, rel 1e-3): f32 reduction order and `sqrt`/division
//! differ from the reference's f64 mean.

use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{norm, testing};
use qwgpu_ops::compare::Tol;
use qwgpu_ops::norm::rms_norm_one_plus;
use qwgpu_ops::rng::Rng;

/// Plain-weight RMSNorm written from the definition (qwgpu-ops only has the
/// `1 + w` row form and the gated form).
fn rms_norm_plain(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(w.len()) {
        let mean = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / row.len() as f64;
        let r = 1.0 / ((mean as f32) + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(v, wi)| v * r * wi));
    }
    out
}

fn check(name: &str, got: &[f32], want: &[f32], what: &str) {
    let tol = Tol::gpu_f32();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            tol.allows(*g, *w),
            "{name} {what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn rms_norm_matches_reference_for_awkward_sizes_and_offsets() {
    let eps = 1e-6;
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let mut seed = 100u64;
        // (rows, width, x_offset): scalar path (width or offset not a multiple of 4) and vec4 path.
        for (rows, width, x_off) in [
            (1u32, 1u32, 0u32),
            (3, 3, 5),
            (65, 65, 0),
            (3, 130, 2),
            (5, 128, 8),
            (2, 4096, 0),
            (3, 4096, 4),
            (1, 4, 0),
        ] {
            for one_plus in [true, false] {
                seed += 1;
                let mut rng = Rng::new(seed);
                let n = (rows * width) as usize;
                let x: Vec<f32> = (0..x_off as usize + n + 3)
                    .map(|_| rng.normal() * 2.0)
                    .collect();
                let w: Vec<f32> = (0..width).map(|_| rng.normal() * 0.5).collect();
                let xb = ctx.upload("x", &x).unwrap();
                let wb = ctx.upload("w", &w).unwrap();
                let yb = ctx.storage("y", (n as u64 + 5) * 4).unwrap();
                ctx.fill_f32(&yb, f32::NAN);
                let d = norm::rms_norm(
                    ctx,
                    &TensorView::f32_rows(&xb, x_off, rows, width),
                    &wb,
                    &yb,
                    eps,
                    one_plus,
                )
                .unwrap();
                ctx.run("rms_norm", &[&d]).unwrap();
                let got = ctx.read_f32(&yb, 0, n + 5).unwrap();
                let xs = &x[x_off as usize..x_off as usize + n];
                let want = if one_plus {
                    rms_norm_one_plus(xs, &w, eps)
                } else {
                    rms_norm_plain(xs, &w, eps)
                };
                let what = format!(
                    "seed {seed} rows {rows} width {width} x_off {x_off} one_plus {one_plus}"
                );
                check(&t.name, &got[..n], &want, &what);
                assert!(
                    got[n..].iter().all(|v| v.is_nan()),
                    "{t_name} {what}: wrote past the output",
                    t_name = t.name
                );
            }
        }
    }
}

#[test]
fn rms_norm_many_rows_use_a_2d_grid() {
    // 70000 rows > 65535 workgroups per grid dimension.
    let (rows, width, eps) = (70_000u32, 4u32, 1e-6f32);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let mut rng = Rng::new(7);
        let n = (rows * width) as usize;
        let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let w: Vec<f32> = (0..width).map(|_| rng.normal() * 0.1).collect();
        let xb = ctx.upload("x", &x).unwrap();
        let wb = ctx.upload("w", &w).unwrap();
        let yb = ctx.storage("y", n as u64 * 4).unwrap();
        ctx.fill_f32(&yb, f32::NAN);
        let xv = TensorView::f32_rows(&xb, 0, rows, width);
        let d = norm::rms_norm(ctx, &xv, &wb, &yb, eps, true).unwrap();
        ctx.run("rms_norm", &[&d]).unwrap();
        let got = ctx.read_f32(&yb, 0, n).unwrap();
        check(
            &t.name,
            &got,
            &rms_norm_one_plus(&x, &w, eps),
            "seed 7 rows 70000 width 4",
        );
    }
}

#[test]
fn rms_norm_rejects_out_of_range_buffers() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let x = ctx.storage("x", 64).unwrap();
    let w = ctx.storage("w", 64).unwrap();
    let y = ctx.storage("y", 64).unwrap();
    let err =
        norm::rms_norm(ctx, &TensorView::f32_rows(&x, 4, 4, 4), &w, &y, 1e-6, true).unwrap_err();
    assert!(err.to_string().contains("x needs"), "{err}");
    let err =
        norm::rms_norm(ctx, &TensorView::f32_rows(&x, 0, 1, 0), &w, &y, 1e-6, true).unwrap_err();
    assert!(err.to_string().contains("width 0"), "{err}");
}
