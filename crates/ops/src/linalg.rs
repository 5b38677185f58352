//! Dense f32 linear algebra: the blocked [`dot`] product every projection,
//! attention score and delta-rule step uses, and [`matmul_xwt`] (`y = x · Wᵀ`).

/// Dot product with eight independent f32 accumulators: vectorises, and its
/// rounding error grows like a blocked sum rather than a long sequential one.
/// Pairs past the shorter slice are ignored.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// `y = x · Wᵀ` for `x [T, cols]` and row-major `w [rows, cols]` (one row per
/// output): returns `[T, rows]`, each entry one [`dot`] of an input row with a
/// weight row.
pub fn matmul_xwt(x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(w.len(), rows * cols);
    let t = x.len() / cols;
    let mut y = vec![0.0f32; t * rows];
    for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows.max(1))) {
        for (o, wr) in yt.iter_mut().zip(w.chunks_exact(cols)) {
            *o = dot(xt, wr);
        }
    }
    debug_assert_eq!(t * cols, x.len());
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

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
    fn matmul_xwt_is_x_times_w_transposed() {
        // W = [[1,2],[3,4],[5,6]], x = [[1,1],[2,-1]]
        let w = [1., 2., 3., 4., 5., 6.];
        let x = [1., 1., 2., -1.];
        assert_eq!(matmul_xwt(&x, &w, 3, 2), vec![3., 7., 11., 0., 2., 4.]);
        // A block of rows is a contiguous slice of W.
        assert_eq!(matmul_xwt(&x, &w[2..], 2, 2), vec![7., 11., 2., 4.]);
        assert!(matmul_xwt(&x, &[], 0, 2).is_empty());
    }

    #[test]
    fn matmul_xwt_entries_are_dots_of_rows() {
        let seed = 12;
        let mut rng = Rng::new(seed);
        let (t, rows, cols) = (3usize, 5usize, 19usize);
        let x = rng.normal_vec(t * cols);
        let w = rng.normal_vec(rows * cols);
        let y = matmul_xwt(&x, &w, rows, cols);
        for ti in 0..t {
            for r in 0..rows {
                let want = dot(&x[ti * cols..][..cols], &w[r * cols..][..cols]);
                assert_eq!(y[ti * rows + r], want, "seed {seed} t {ti} row {r}");
            }
        }
    }
}
