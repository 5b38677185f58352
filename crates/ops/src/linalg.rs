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
///
/// Large products are split by weight rows over all cores (`std::thread::scope`):
/// every entry is still the same single [`dot`], so the result is bit-identical
/// to the one-thread loop ([`matmul_xwt_serial`]) whatever the thread count.
pub fn matmul_xwt(x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    matmul_xwt_threads(x, w, rows, cols, threads)
}

/// Below this many multiply-adds a product runs on the calling thread:
/// spawning costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// [`matmul_xwt`] on at most `threads` threads.
pub fn matmul_xwt_threads(
    x: &[f32],
    w: &[f32],
    rows: usize,
    cols: usize,
    threads: usize,
) -> Vec<f32> {
    let t = x.len().checked_div(cols).unwrap_or(0);
    let macs = t.saturating_mul(rows).saturating_mul(cols);
    let threads = threads
        .min(rows)
        .min(macs / (PARALLEL_MIN_MACS / 4).max(1))
        .max(1);
    if threads == 1 || macs < PARALLEL_MIN_MACS {
        return matmul_xwt_serial(x, w, rows, cols);
    }
    debug_assert_eq!(w.len(), rows * cols);
    let per = rows.div_ceil(threads);
    // Each thread owns a block of weight rows and returns `[T, block]`.
    let blocks: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = w
            .chunks(per * cols)
            .enumerate()
            .map(|(i, wb)| {
                s.spawn(move || (i * per, matmul_xwt_serial(x, wb, wb.len() / cols, cols)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut y = vec![0.0f32; t * rows];
    for (start, block) in blocks {
        let n = block.len() / t.max(1);
        for (yt, bt) in y.chunks_exact_mut(rows).zip(block.chunks_exact(n.max(1))) {
            if let Some(dst) = yt.get_mut(start..start + n) {
                dst.copy_from_slice(bt);
            }
        }
    }
    y
}

/// The one-thread `y = x · Wᵀ` loop.
pub fn matmul_xwt_serial(x: &[f32], w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(w.len(), rows * cols);
    let t = x.len() / cols.max(1);
    let mut y = vec![0.0f32; t * rows];
    for (xt, yt) in x
        .chunks_exact(cols.max(1))
        .zip(y.chunks_exact_mut(rows.max(1)))
    {
        for (o, wr) in yt.iter_mut().zip(w.chunks_exact(cols.max(1))) {
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
    fn threaded_matmul_is_bit_identical_to_serial() {
        let seed = 13;
        let mut rng = Rng::new(seed);
        // Above the parallel threshold, with a row count no thread count divides.
        let (t, rows, cols) = (3usize, 347usize, 1031usize);
        let x = rng.normal_vec(t * cols);
        let w = rng.normal_vec(rows * cols);
        let serial = matmul_xwt_serial(&x, &w, rows, cols);
        for threads in [2, 3, 8, 64] {
            let y = matmul_xwt_threads(&x, &w, rows, cols, threads);
            assert!(
                y.iter()
                    .zip(&serial)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "seed {seed}: {threads} threads differ from one"
            );
        }
        assert_eq!(matmul_xwt(&x, &w, rows, cols).len(), t * rows);
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
