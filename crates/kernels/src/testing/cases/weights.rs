//! Packed test weights shared by the kernel tests: any storage format with any
//! scale scheme of the loader, built directly as `qwgpu_loader::PackedWeight`,
//! and the matmul reference (f64 dot products of the dequantized weight).

use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{ActivationQuant, BlockSegment, PackedWeight, ScaleScheme, Shard};
use qwgpu_ops::rng::Rng;

/// Which scale scheme a test weight gets.
#[derive(Debug, Clone, Copy)]
pub enum Scheme {
    None,
    /// One scale per shard; `broadcast`: a per-tensor scale repeated on every shard.
    PerShard {
        broadcast: bool,
    },
    PerChannel,
    /// `[bn, bk]` blocks, one grid per shard (source).
    Block([usize; 2]),
}

/// A `[rows, cols]` weight of `dtype` with element bytes `data`, shards `parts`
/// (row ranges `(offset, rows)` covering the rows, one source each) and scales
/// drawn from `scale` for `scheme`.
#[allow(clippy::too_many_arguments)]
pub fn packed_weight(
    name: String,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    parts: &[(usize, usize)],
    scheme: Scheme,
    data: Vec<u8>,
    scale: &mut dyn FnMut() -> f32,
) -> PackedWeight {
    let scale = match scheme {
        Scheme::None => ScaleScheme::None,
        Scheme::PerShard { broadcast } => {
            let s = scale();
            ScaleScheme::PerShard {
                scales: parts
                    .iter()
                    .map(|_| if broadcast { s } else { scale() })
                    .collect(),
            }
        }
        Scheme::PerChannel => ScaleScheme::PerChannel {
            scales: (0..rows).map(|_| scale()).collect(),
        },
        Scheme::Block([bn, bk]) => ScaleScheme::Block {
            block: [bn, bk],
            segments: parts
                .iter()
                .map(|&(o, n)| {
                    let grid = [n.div_ceil(bn), cols.div_ceil(bk)];
                    BlockSegment {
                        row_offset: o,
                        rows: n,
                        grid,
                        scales: (0..grid[0] * grid[1]).map(|_| scale()).collect(),
                    }
                })
                .collect(),
        },
    };
    PackedWeight {
        name,
        dtype,
        rows,
        cols,
        data,
        shards: parts
            .iter()
            .enumerate()
            .map(|(i, &(o, n))| Shard {
                name: format!("s{i}"),
                source: format!("src{i}"),
                row_offset: o,
                rows: n,
            })
            .collect(),
        scale,
        activation: ActivationQuant::None,
    }
}

fn byte(rng: &mut Rng) -> u8 {
    (rng.uniform() * 256.0) as u8
}

/// Element bytes of `dtype` for normal random values (FP8: every encoding but
/// NaN and infinity).
pub fn normal_data(rng: &mut Rng, dtype: Dtype, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * dtype.size());
    for _ in 0..n {
        match dtype {
            Dtype::F32 => out.extend_from_slice(&rng.normal().to_le_bytes()),
            Dtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(rng.normal()).to_le_bytes()),
            Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(rng.normal()).to_le_bytes()),
            // Every encoding but NaN (0x7f / 0xff).
            Dtype::F8E4M3 => out.push(loop {
                let b = byte(rng);
                if b & 0x7f != 0x7f {
                    break b;
                }
            }),
            // Every encoding but infinities and NaNs (exponent 31).
            Dtype::F8E5M2 => out.push(loop {
                let b = byte(rng);
                if b & 0x7c != 0x7c {
                    break b;
                }
            }),
            Dtype::I32 | Dtype::I64 => {
                panic!("I32 is the 4-bit words' type, not an element format")
            }
        }
    }
    out
}

/// Reference dot product of an x row and a weight row, and Σ|x·w|, in f64.
pub fn dot_ref(x: &[f32], w: &[f32]) -> (f64, f64) {
    x.iter().zip(w).fold((0.0, 0.0), |(s, a), (&x, &w)| {
        (s + x as f64 * w as f64, a + (x as f64 * w as f64).abs())
    })
}

/// Expected value and tolerance of output column `col` for x row `x`: `w` is
/// the dequantized `[rows, cols]` weight feeding this matmul. Tolerance:
/// `rel · Σ|x·w| + 1e-5 · |want|`; with `swiglu` (`silu(gate_col) · up_col`,
/// up rows from `rows / 2`) each half's error is propagated.
pub fn expected(
    x: &[f32],
    w: &[f32],
    cols: usize,
    rows: usize,
    col: usize,
    swiglu: bool,
    rel: f64,
) -> (f64, f64) {
    let row = |r: usize| dot_ref(x, &w[r * cols..(r + 1) * cols]);
    if swiglu {
        let (g, sg) = row(col);
        let (u, su) = row(rows / 2 + col);
        let sil = qwgpu_ops::activation::silu(g as f32) as f64;
        let want = sil * u;
        (
            want,
            1.1 * u.abs() * rel * sg
                + (sil.abs() + rel * sg) * rel * su
                + 1e-5 * want.abs()
                + 1e-30,
        )
    } else {
        let (s, a) = row(col);
        (s, rel * a + 1e-5 * s.abs() + 1e-30)
    }
}

/// Checks every element of `got` (a whole output buffer): written ones
/// (`Some((want, tol))`) within tolerance, the others bit-equal to `init`.
pub fn check(got: &[f32], init: &[f32], want: &[Option<(f64, f64)>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: y length");
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| match want[i] {
            None => got[i].to_bits() != init[i].to_bits(),
            Some((w, tol)) => !(got[i].is_finite() && (got[i] as f64 - w).abs() <= tol),
        })
        .collect();
    if !bad.is_empty() {
        let list: Vec<String> = bad
            .iter()
            .take(8)
            .map(|&i| match want[i] {
                None => format!(
                    "[{i}] got {got_i:e}, must stay {init_i:e}",
                    got_i = got[i],
                    init_i = init[i]
                ),
                Some((w, t)) => format!(
                    "[{i}] got {got_i:e}, want {w:e} ± {t:e} (err {abs_diff:e})",
                    got_i = got[i],
                    abs_diff = (got[i] as f64 - w).abs()
                ),
            })
            .collect();
        panic!(
            "{what}: {bad_len} of {want_len} values wrong:\n  {list_join_n}",
            bad_len = bad.len(),
            want_len = want.len(),
            list_join_n = list.join("\n  ")
        );
    }
}

/// A `[rows, cols]` weight in one shard with scale `scheme` (scales 0.25..2),
/// normal values.
pub fn packed_one_shard(
    rng: &mut Rng,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    scheme: Scheme,
) -> PackedWeight {
    let data = normal_data(rng, dtype, rows * cols);
    let mut draw = || 0.25 + 1.75 * rng.uniform();
    packed_weight(
        format!("w{rows}x{cols}"),
        dtype,
        rows,
        cols,
        &[(0, rows)],
        scheme,
        data,
        &mut draw,
    )
}
