//! Partial NeoX rotary embedding (spec §2.3 step 3).
//!
//! Only the first `rotary_dim` dims of each head rotate, as two halves
//! (`rotate_half`), not as interleaved pairs. Text-only MRoPE is plain 1-D RoPE.

/// Precomputed inverse frequencies for one rotary width.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    rotary_dim: usize,
    /// `theta^(-2i / rotary_dim)` for `i < rotary_dim / 2`, in f32 like HF.
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Inverse frequencies for `rotary_dim` (must be even; the model checks it
    /// at load) and base `theta`.
    pub fn new(rotary_dim: usize, theta: f64) -> Self {
        let half = rotary_dim / 2;
        let inv_freq = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / rotary_dim as f32))
            .collect();
        Self {
            rotary_dim,
            inv_freq,
        }
    }

    /// Number of leading dims of each head that rotate.
    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim
    }

    /// The inverse frequencies `theta^(-2i / rotary_dim)`, `i < rotary_dim / 2`,
    /// in f32 (the table a GPU RoPE kernel uploads).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Rotates the first `rotary_dim` entries of one head at absolute `position`:
    /// `x' = x·cos + rotate_half(x)·sin` with `rotate_half(x) = [−x₂, x₁]`.
    pub fn apply(&self, head: &mut [f32], position: usize) {
        let half = self.rotary_dim / 2;
        for (i, f) in self.inv_freq.iter().enumerate() {
            // HF multiplies inv_freq by the position in f32, then takes cos / sin.
            let angle = (f * position as f32) as f64;
            let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
            let x1 = head[i];
            let x2 = head[i + half];
            head[i] = x1 * cos - x2 * sin;
            head[i + half] = x2 * cos + x1 * sin;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Independent formulation: pair (x_i, x_{i+rd/2}) as the complex number
    /// x_i + i·x_{i+rd/2} and multiply by e^{i·p·θ_i}, in f64.
    fn rotate_complex(x: &[f32], rd: usize, theta: f64, p: usize) -> Vec<f64> {
        let half = rd / 2;
        let mut out: Vec<f64> = x.iter().map(|v| *v as f64).collect();
        for i in 0..half {
            let freq = theta.powf(-(2.0 * i as f64) / rd as f64);
            let (re, im) = (x[i] as f64, x[i + half] as f64);
            let (c, s) = ((p as f64 * freq).cos(), (p as f64 * freq).sin());
            out[i] = re * c - im * s;
            out[i + half] = re * s + im * c;
        }
        out
    }

    #[test]
    fn rope_equals_complex_rotation_on_first_rotary_dims_only() {
        let seed = 5;
        let mut rng = Rng::new(seed);
        for (hd, rd, theta) in [(32usize, 8usize, 1e7f64), (256, 64, 1e7), (6, 2, 10_000.0)] {
            let rope = Rope::new(rd, theta);
            for p in [0usize, 1, 3, 65, 1000] {
                let x = rng.normal_vec(hd);
                let mut y = x.clone();
                rope.apply(&mut y, p);
                let want = rotate_complex(&x, rd, theta, p);
                for (j, (g, w)) in y.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (1.0 + p as f64 * 1e-3);
                    assert!(
                        (*g as f64 - w).abs() < tol,
                        "seed {seed} hd {hd} p {p} dim {j}: {g} vs {w}"
                    );
                }
                assert_eq!(&y[rd..], &x[rd..], "dims past rotary_dim must not change");
            }
        }
    }

    #[test]
    fn inv_freq_table() {
        let rope = Rope::new(8, 10_000.0);
        assert_eq!(rope.rotary_dim(), 8);
        assert_eq!(rope.inv_freq().len(), 4);
        assert_eq!(rope.inv_freq()[0], 1.0);
        assert!((rope.inv_freq()[2] - 0.01).abs() < 1e-9);
    }

    #[test]
    fn position_zero_is_identity() {
        let rope = Rope::new(4, 1e7);
        let mut x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        rope.apply(&mut x, 0);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
