//! 4-bit weights (formats Q4 / Q4F32) on the dense matmul paths against the
//! CPU. The case draws the integer matrix `q`, the scales and the zero
//! points, and computes the reference weight `(q − zero) · scale` from them
//! directly (the packed words go only to the GPU; `qwgpu_ops::int4::dequantize`
//! of those words is checked against the same weight). Reference dot
//! products in f64; tolerance [`REL`] per Σ|x·w| (see [`super::matmul`]).

use qwgpu_ops::rng::{Rng, SplitMix64};

use super::matmul::{dense_case_rel, EPILOGUES};
use crate::int4::{upload_int4, Int4Host};
use crate::matmul::{matmul, Epilogue};
use crate::testing::TestContext;
use crate::{GpuContext, GpuWeight, WeightFormat};

/// Relative tolerance per Σ|x·w|: f32 sums in another order, the kernels
/// scale each 32-column or 4-column partial sum instead of each product.
pub const REL: f64 = 2e-5;

/// A random 4-bit weight: the host form and the reference f32 weight.
pub struct Q4 {
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    pub words: Vec<u32>,
    pub scales: Vec<f32>,
    pub zeros: Vec<u8>,
    /// The reference weight, `(q − zero) · scale`.
    pub w: Vec<f32>,
}

impl Q4 {
    /// The weight as `upload_int4` takes it.
    pub fn host(&self) -> Int4Host<'_> {
        Int4Host {
            rows: self.rows,
            cols: self.cols,
            group_size: self.group,
            words: &self.words,
            scales: &self.scales,
            zeros: &self.zeros,
        }
    }
}

fn nibble(rng: &mut Rng) -> u32 {
    ((rng.uniform() * 16.0) as u32).min(15)
}

/// `[rows, cols]` in groups of `group` columns; scales 0.25..2, rounded to
/// f16 when `f16_scales` (format Q4), else arbitrary f32 (Q4F32).
pub fn make_q4(rng: &mut Rng, rows: usize, cols: usize, group: usize, f16_scales: bool) -> Q4 {
    let ng = cols.div_ceil(group);
    let wpr = cols.div_ceil(8);
    let scales: Vec<f32> = (0..rows * ng)
        .map(|_| {
            let s = 0.25 + 1.75 * rng.uniform();
            if f16_scales {
                half::f16::from_f32(s).to_f32()
            } else {
                s
            }
        })
        .collect();
    let zeros: Vec<u8> = (0..rows * ng).map(|_| nibble(rng) as u8).collect();
    let mut words = vec![0u32; rows * wpr];
    let mut w = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let q = nibble(rng);
            words[r * wpr + c / 8] |= q << (4 * (c % 8));
            let g = r * ng + c / group;
            w[r * cols + c] = ((q as f64 - zeros[g] as f64) * scales[g] as f64) as f32;
        }
    }
    let deq = qwgpu_ops::int4::dequantize(rows, cols, group, &words, &scales, &zeros);
    assert_eq!(deq, w, "qwgpu_ops::int4::dequantize of the packed words");
    Q4 {
        rows,
        cols,
        group,
        words,
        scales,
        zeros,
        w,
    }
}

/// A GPTQ-style 4-bit weight `[rows, cols]` for benchmarks, as the loader
/// hands it over (no reference weight): random nibbles, groups of 128
/// columns, the symmetric zero point 8, f16 scales in 1e-3 .. 1e-2 (so it
/// uploads as format Q4).
pub struct Gptq {
    pub rows: usize,
    pub cols: usize,
    pub words: Vec<u32>,
    pub scales: Vec<f32>,
    pub zeros: Vec<u8>,
}

impl Gptq {
    /// Draws the weight from `bits`.
    pub fn new(bits: &mut SplitMix64, rows: usize, cols: usize) -> Self {
        let groups = rows * cols.div_ceil(128);
        let words = (0..rows * cols.div_ceil(8))
            .map(|_| bits.next_u64() as u32)
            .collect();
        let scales = (0..groups)
            .map(|_| half::f16::from_f64(1e-3 + 9e-3 * bits.next_f64()).to_f32())
            .collect();
        Self {
            rows,
            cols,
            words,
            scales,
            zeros: vec![8; groups],
        }
    }

    /// The weight as `upload_int4` takes it.
    pub fn host(&self) -> Int4Host<'_> {
        Int4Host {
            rows: self.rows,
            cols: self.cols,
            group_size: 128,
            words: &self.words,
            scales: &self.scales,
            zeros: &self.zeros,
        }
    }
}

/// Uploads `q`, checking the format the scales give (Q4: f16 scales).
pub fn upload(ctx: &GpuContext, q: &Q4, f16_scales: bool) -> GpuWeight {
    let name = format!("q4 [{r}, {c}] g{g}", r = q.rows, c = q.cols, g = q.group);
    let gw = upload_int4(ctx, &name, &q.host()).unwrap();
    let want = if f16_scales {
        WeightFormat::Q4
    } else {
        WeightFormat::Q4F32
    };
    assert_eq!(gw.format, want, "{name}");
    gw
}

/// (rows, cols, group): groups of 32 / 64 / 128 and one per row, columns not
/// a multiple of the group, of 8 or of the 32-column chunk, rows not a
/// multiple of the 4-row slots or the 64-row tiles; groups of 20 and 12
/// (multiples of 4, not of 32: one scale lookup per 4 columns).
pub const SHAPES: [(usize, usize, usize); 8] = [
    (1, 8, 8),
    (3, 13, 13),
    (65, 200, 64),
    (130, 260, 32),
    (37, 300, 128),
    (66, 100, 20),
    (10, 1030, 128),
    (34, 44, 12),
];

/// Every shape of `shapes` in both formats, every epilogue, token counts
/// cycling through `ts`, x aligned or not, under `seed`.
pub async fn every_path(
    t: &TestContext,
    seed: u64,
    shapes: &[(usize, usize, usize)],
    ts: &[usize],
) {
    let mut rng = Rng::new(seed);
    for (si, &(rows, cols, group)) in shapes.iter().enumerate() {
        for f16_scales in [true, false] {
            let q = make_q4(&mut rng, rows, cols, group, f16_scales);
            let gw = upload(&t.ctx, &q, f16_scales);
            for (k, &epi) in EPILOGUES.iter().enumerate() {
                if epi == Epilogue::SwiGlu && rows % 2 == 1 {
                    continue;
                }
                for j in 0..2 {
                    let tokens = ts[(si + k + 3 * j + usize::from(f16_scales)) % ts.len()];
                    let what = format!(
                        "seed {seed:#x} {f:?} [{rows}, {cols}] group {group}",
                        f = gw.format
                    );
                    let aligned = (si + k + j) % 2 == 0;
                    dense_case_rel(
                        t, &mut rng, &gw, &q.w, tokens, epi, &what, &matmul, aligned, REL,
                    )
                    .await;
                }
            }
        }
    }
}
