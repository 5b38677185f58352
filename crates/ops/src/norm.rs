//! RMSNorm variants of Qwen3.5 (spec §2.1, §2.2 steps 5 and 8).
//!
//! Two weight conventions coexist: every decoder / q / k norm multiplies by
//! `(1 + w)` (weights stored near 0), but the GDN gated norm multiplies by plain
//! `w` (stored near 1). Mixing them up still produces plausible-looking output.

use crate::activation::silu;

/// `1 / sqrt(mean(x²) + eps)`; the sum is taken in f64 so the row length does
/// not add rounding error of its own.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let mean = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / x.len().max(1) as f64;
    1.0 / ((mean as f32) + eps).sqrt()
}

/// `(1 + w)` RMSNorm over each row of width `w.len()`: `x / rms(x) · (1 + w)`.
pub fn rms_norm_one_plus(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(w.len()) {
        let r = inv_rms(row, eps);
        out.extend(row.iter().zip(w).map(|(v, wi)| v * r * (1.0 + wi)));
    }
    out
}

/// Same as [`rms_norm_one_plus`], in place (q / k heads).
pub fn rms_norm_one_plus_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let r = inv_rms(row, eps);
        for (v, wi) in row.iter_mut().zip(w) {
            *v = *v * r * (1.0 + wi);
        }
    }
}

/// GDN output norm (norm before gate): `o / rms(o) · w · SiLU(z)`, plain `w`,
/// rows of width `w.len()` (one row per value head).
pub fn gated_rms_norm(o: &[f32], z: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(o.len());
    for (row, zrow) in o.chunks_exact(w.len()).zip(z.chunks_exact(w.len())) {
        let r = inv_rms(row, eps);
        out.extend(
            row.iter()
                .zip(w)
                .zip(zrow)
                .map(|((v, wi), zi)| v * r * wi * silu(*zi)),
        );
    }
    out
}

/// L2 normalisation of one head, eps inside the square root (FLA's `l2norm`):
/// `x / sqrt(Σx² + eps)`.
pub fn l2_normalize_in_place(x: &mut [f32], eps: f32) {
    let ss = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() as f32;
    let r = 1.0 / (ss + eps).sqrt();
    for v in x.iter_mut() {
        *v *= r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_plus_rms_norm_hand_checked() {
        // x = [3, 4]: mean(x²) = 12.5, rms = sqrt(12.5) (eps 0).
        let r = 1.0 / 12.5f64.sqrt();
        let y = rms_norm_one_plus(&[3.0, 4.0, -6.0, 8.0], &[0.0, 1.0], 0.0);
        let want = [
            3.0 * r,
            4.0 * r * 2.0,
            -6.0 / 50f64.sqrt(),
            8.0 / 50f64.sqrt() * 2.0,
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{y:?} vs {want:?}");
        }
        let mut z = vec![3.0, 4.0, -6.0, 8.0];
        rms_norm_one_plus_in_place(&mut z, &[0.0, 1.0], 0.0);
        assert_eq!(z, y);
    }

    #[test]
    fn eps_is_added_to_the_mean_square() {
        // x = [1, 1], eps = 3: 1 / sqrt(1 + 3) = 0.5
        let y = rms_norm_one_plus(&[1.0, 1.0], &[0.0, 0.0], 3.0);
        assert_eq!(y, vec![0.5, 0.5]);
    }

    #[test]
    fn gated_norm_uses_plain_weight_and_silu_gate() {
        // o = [3, 4] -> [3, 4]/sqrt(12.5); w = [2, 0.5]; z = [0, 1]: silu(0) = 0.
        let y = gated_rms_norm(&[3.0, 4.0], &[0.0, 1.0], &[2.0, 0.5], 0.0);
        let silu1 = 1.0 / (1.0 + (-1.0f64).exp());
        assert_eq!(y[0], 0.0);
        assert!((y[1] as f64 - 4.0 / 12.5f64.sqrt() * 0.5 * silu1).abs() < 1e-6);
    }

    #[test]
    fn l2_norm_eps_inside_sqrt() {
        let mut x = [3.0f32, 4.0];
        l2_normalize_in_place(&mut x, 0.0);
        assert_eq!(x, [0.6, 0.8]);
        let mut x = [0.0f32, 1.0];
        l2_normalize_in_place(&mut x, 3.0);
        assert_eq!(x, [0.0, 0.5]);
    }
}
