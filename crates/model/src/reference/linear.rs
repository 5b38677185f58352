//! Dense f32 matrices and the `y = x · Wᵀ` product every projection uses.

use std::ops::Range;

/// A row-major f32 matrix `[rows, cols]` (a dequantized weight: one row per output).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `r` (callers only pass rows below `self.rows`, validated at load).
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `x [T, cols] · W[rows]ᵀ` for a block of output rows: returns `[T, rows.len()]`.
    /// Experts and fused projections use row blocks of one packed matrix.
    pub fn apply_rows(&self, x: &[f32], rows: Range<usize>) -> Vec<f32> {
        let t = x.len() / self.cols;
        let n = rows.len();
        let mut y = vec![0.0f32; t * n];
        for (xt, yt) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(n.max(1))) {
            for (o, r) in rows.clone().enumerate() {
                yt[o] = dot(xt, self.row(r));
            }
        }
        debug_assert_eq!(t * self.cols, x.len());
        y
    }

    /// `x [T, cols] · Wᵀ` → `[T, rows]`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.apply_rows(x, 0..self.rows)
    }
}

/// Dot product with eight independent f32 accumulators: vectorises, and its
/// rounding error grows like a blocked sum rather than a long sequential one.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn dot_matches_f64_sum_for_awkward_lengths() {
        let seed = 11;
        let mut rng = Rng::new(seed);
        for n in [0usize, 1, 3, 7, 8, 9, 65, 130] {
            let a = rng.normal_vec(n);
            let b = rng.normal_vec(n);
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "seed {seed} n {n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn apply_rows_is_x_times_w_transposed() {
        // W = [[1,2],[3,4],[5,6]], x = [[1,1],[2,-1]]
        let w = Matrix {
            rows: 3,
            cols: 2,
            data: vec![1., 2., 3., 4., 5., 6.],
        };
        let x = [1., 1., 2., -1.];
        assert_eq!(w.apply(&x), vec![3., 7., 11., 0., 2., 4.]);
        assert_eq!(w.apply_rows(&x, 1..3), vec![7., 11., 2., 4.]);
    }
}
