//! Dense f32 matrices and the `y = x · Wᵀ` product every projection uses
//! (the arithmetic is [`qwgpu_ops::linalg::matmul_xwt`]).

use std::ops::Range;

use qwgpu_ops::linalg::matmul_xwt;

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
        let block = &self.data[rows.start * self.cols..rows.end * self.cols];
        matmul_xwt(x, block, rows.len(), self.cols)
    }

    /// `x [T, cols] · Wᵀ` → `[T, rows]`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.apply_rows(x, 0..self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
