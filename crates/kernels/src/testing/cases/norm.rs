//! RMSNorm against `qwgpu_ops::norm::rms_norm_one_plus` (and the same
//! formula with a plain weight). Tolerance: `Tol::gpu_f32()` (abs 1e-4, rel
//! 1e-3): f32 reduction order and `sqrt`/division differ from the
//! reference's f64 mean.

use qwgpu_ops::compare::Tol;
use qwgpu_ops::norm::rms_norm_one_plus;
use qwgpu_ops::rng::Rng;

use crate::norm;
use crate::testing::TestContext;
use crate::view::TensorView;

/// Plain-weight RMSNorm written from the definition (qwgpu-ops only has the
/// `1 + w` row form and the gated form).
pub fn rms_norm_plain(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(w.len()) {
        let mean = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / row.len() as f64;
        let r = 1.0 / ((mean as f32) + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(v, wi)| v * r * wi));
    }
    out
}

/// Every element of `got` within `Tol::gpu_f32()` of `want`.
pub fn check(name: &str, got: &[f32], want: &[f32], what: &str) {
    let tol = Tol::gpu_f32();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            tol.allows(*g, *w),
            "{name} {what}: element {i}: got {g}, want {w}"
        );
    }
}

/// (rows, width, x_offset): scalar path (width or offset not a multiple of 4)
/// and vec4 path.
pub const SHAPES: [(u32, u32, u32); 8] = [
    (1, 1, 0),
    (3, 3, 5),
    (65, 65, 0),
    (3, 130, 2),
    (5, 128, 8),
    (2, 4096, 0),
    (3, 4096, 4),
    (1, 4, 0),
];

/// Every shape of `shapes`, with the `1 + w` weight and the plain one; no
/// write past the output (NaN poison stays).
pub async fn awkward_sizes_and_offsets(t: &TestContext, shapes: &[(u32, u32, u32)]) {
    let eps = 1e-6;
    let ctx = &t.ctx;
    let mut seed = 100u64;
    for &(rows, width, x_off) in shapes {
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
            let got = ctx.read_f32_async(&yb, 0, n + 5).await.unwrap();
            let xs = &x[x_off as usize..x_off as usize + n];
            let want = if one_plus {
                rms_norm_one_plus(xs, &w, eps)
            } else {
                rms_norm_plain(xs, &w, eps)
            };
            let what =
                format!("seed {seed} rows {rows} width {width} x_off {x_off} one_plus {one_plus}");
            check(&t.name, &got[..n], &want, &what);
            assert!(
                got[n..].iter().all(|v| v.is_nan()),
                "{t_name} {what}: wrote past the output",
                t_name = t.name
            );
        }
    }
}
