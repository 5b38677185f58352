//! RMSNorm kernel against `qwgpu_ops::norm::rms_norm_one_plus` (and the same
//! formula with a plain weight), on both test contexts. Tolerance:
//! `Tol::gpu_f32()` (abs 1e-4, rel 1e-3): f32 reduction order and `sqrt`/division
//! differ from the reference's f64 mean.

use qwgpu_kernels::testing::cases::norm::{self as cases, check};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{norm, testing};
use qwgpu_ops::norm::rms_norm_one_plus;
use qwgpu_ops::rng::Rng;

#[test]
fn rms_norm_matches_reference_for_awkward_sizes_and_offsets() {
    for t in testing::contexts() {
        pollster::block_on(cases::awkward_sizes_and_offsets(t, &cases::SHAPES));
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
