//! 4-bit weights (GPTQ, AWQ, compressed-tensors `pack-quantized`) in ONE
//! canonical host form, whatever the checkpoint format.
//!
//! # The canonical form (the contract with the GPU kernels)
//!
//! A `[rows, cols]` weight (`rows` = output features, `cols` = input features
//! K) with `group_size` columns per quantization group (a per-channel scheme
//! has `group_size == cols`):
//!
//! - `words: &[u32]`: row-major `rows × ceil(cols / 8)` words, no padding
//!   between rows. Nibble `j` (bits `4j..4j+3`) of word `w` of row `r` is the
//!   unsigned value `q` in `0..=15` of column `8w + j`; nibbles of columns
//!   past `cols` are 0.
//! - `scales: &[f32]`: row-major `rows × ceil(cols / group_size)`.
//! - `zeros: &[u8]`: row-major `rows × ceil(cols / group_size)`, each in
//!   `0..=15`: the zero point after resolving GPTQ v1's `+1` storage offset;
//!   symmetric schemes store 8; compressed-tensors' signed int4 `v` is stored
//!   as `q = v + 8` with zero `8 + zero_point`.
//! - `W[r, c] = (q - zero) · scale` with the group `c / group_size` of row `r`.
//!
//! Fused projections concatenate rows; every source keeps its own scale and
//! zero rows (a scale or zero tensor covering several logical shards is
//! broadcast to each of them, never split). MoE experts are stacked per expert
//! in expert order, like every other packed weight.
//!
//! The loader repacks each checkpoint format into this form
//! ([`decode_gptq`], [`decode_awq`], [`decode_ct`]); the dequantizer here
//! ([`Int4View::dequantize`], used by [`crate::dequantize`]) is the CPU
//! reference of the int4 kernels.

mod awq;
mod ct;
mod fused;
mod gptq;
mod join;
mod repack;
mod source;

pub(crate) use awq::decode_awq_as;
pub use awq::{decode_awq, AWQ_ORDER};
pub use ct::decode_ct;
pub(crate) use ct::decode_ct_as;
pub(crate) use fused::split_fused_ct;
pub use gptq::decode_gptq;
pub(crate) use gptq::decode_gptq_as;
pub(crate) use join::join;
pub(crate) use source::Words;
pub use source::{Decoded, Int4Source, Int4Tensors};

use crate::LoadError;

/// Owned canonical 4-bit data of a packed weight (see the module docs); the
/// weight's `rows` / `cols` live in the [`PackedWeight`](crate::PackedWeight).
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Weights {
    /// Columns per group (`cols` for per-channel scales).
    pub group_size: usize,
    /// `rows × ceil(cols / 8)` words, eight nibbles each.
    pub words: Vec<u32>,
    /// `rows × ceil(cols / group_size)` scales.
    pub scales: Vec<f32>,
    /// `rows × ceil(cols / group_size)` zero points in `0..=15`.
    pub zeros: Vec<u8>,
}

/// A borrowed canonical 4-bit weight: what [`PackedWeight::int4`](crate::PackedWeight::int4)
/// returns and what the int4 kernels upload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int4View<'a> {
    /// Output features.
    pub rows: usize,
    /// Input features (K).
    pub cols: usize,
    /// Columns per group (`cols` for per-channel scales).
    pub group_size: usize,
    /// `rows × words_per_row()` words (see the module docs for the nibble order).
    pub words: &'a [u32],
    /// `rows × groups_per_row()` scales.
    pub scales: &'a [f32],
    /// `rows × groups_per_row()` zero points in `0..=15`.
    pub zeros: &'a [u8],
}

impl<'a> Int4View<'a> {
    /// `ceil(cols / 8)`.
    pub fn words_per_row(&self) -> usize {
        self.cols.div_ceil(8)
    }

    /// `ceil(cols / group_size)`.
    pub fn groups_per_row(&self) -> usize {
        self.cols.div_ceil(self.group_size.max(1))
    }

    /// The stored unsigned value `q` (`0..=15`) of element `(r, c)`.
    /// Out-of-range indices read 0 (callers index within `rows × cols`).
    pub fn q(&self, r: usize, c: usize) -> u8 {
        let word = self
            .words
            .get(r * self.words_per_row() + c / 8)
            .copied()
            .unwrap_or(0);
        ((word >> (4 * (c % 8))) & 0xF) as u8
    }

    /// Checks every length and zero point against `rows`, `cols` and
    /// `group_size`; `name` names the weight in the error.
    pub fn validate(&self, name: &str) -> Result<(), LoadError> {
        let bad = |detail: String| LoadError::InvalidPacked {
            name: name.to_string(),
            detail,
        };
        let (rows, cols, g) = (self.rows, self.cols, self.group_size);
        if rows == 0 || cols == 0 || g == 0 {
            return Err(bad(format!(
                "int4 weight [{rows}, {cols}] with group size {g}: no dimension may be 0"
            )));
        }
        let words = rows.checked_mul(self.words_per_row());
        if words != Some(self.words.len()) {
            return Err(bad(format!(
                "{got} int4 words, expected {rows} × ceil({cols} / 8)",
                got = self.words.len()
            )));
        }
        let groups = rows * self.groups_per_row();
        if self.scales.len() != groups || self.zeros.len() != groups {
            return Err(bad(format!(
                "{scales} scales and {zeros} zeros, expected {rows} × ceil({cols} / {g}) = {groups} each",
                scales = self.scales.len(),
                zeros = self.zeros.len()
            )));
        }
        if let Some(i) = self.zeros.iter().position(|&z| z > 15) {
            return Err(bad(format!(
                "zero point {z} at {i} is outside 0..=15",
                z = self.zeros[i]
            )));
        }
        if cols % 8 != 0 {
            let wpr = self.words_per_row();
            let mask = !0u32 << (4 * (cols % 8));
            if let Some(r) = (0..rows).find(|r| self.words[r * wpr + wpr - 1] & mask != 0) {
                return Err(bad(format!(
                    "row {r}: nibbles past column {cols} are not 0"
                )));
            }
        }
        Ok(())
    }

    /// Row-major f32 `[rows, cols]`: `(q - zero) · scale`, exact in f32 (one
    /// small-integer difference, one multiply). Call [`Int4View::validate`] first.
    pub fn dequantize(&self) -> Vec<f32> {
        let gpr = self.groups_per_row();
        let g = self.group_size.max(1);
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                let gi = r * gpr + c / g;
                let zero = self.zeros.get(gi).copied().unwrap_or(8);
                let scale = self.scales.get(gi).copied().unwrap_or(0.0);
                let q = self.q(r, c);
                out.push((f32::from(q) - f32::from(zero)) * scale);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written `[2, 10]` weight with groups of 4 (3 groups per row,
    /// the last one 2 columns wide).
    fn sample() -> (Vec<u32>, Vec<f32>, Vec<u8>) {
        // Row 0: q = 0..=9; row 1: q = 15, 14, ..., 6. Columns 10..16 are 0.
        let row0: u32 = 0x7654_3210;
        let row0b: u32 = 0x0000_0098;
        let row1: u32 = 0x89ab_cdef;
        let row1b: u32 = 0x0000_0067;
        let words = vec![row0, row0b, row1, row1b];
        let scales = vec![0.5, 2.0, -1.0, 0.25, 1.0, 4.0];
        let zeros = vec![8, 0, 15, 3, 8, 6];
        (words, scales, zeros)
    }

    #[test]
    fn dequantize_follows_the_written_formula() {
        let (words, scales, zeros) = sample();
        let v = Int4View {
            rows: 2,
            cols: 10,
            group_size: 4,
            words: &words,
            scales: &scales,
            zeros: &zeros,
        };
        v.validate("w").expect("valid");
        let q: [[u8; 10]; 2] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [15, 14, 13, 12, 11, 10, 9, 8, 7, 6],
        ];
        let mut want = Vec::new();
        for (r, row) in q.iter().enumerate() {
            for (c, &qv) in row.iter().enumerate() {
                let g = r * 3 + c / 4;
                want.push((f32::from(qv) - f32::from(zeros[g])) * scales[g]);
            }
        }
        assert_eq!(v.dequantize(), want);
        assert_eq!(v.q(1, 0), 15);
        assert_eq!(v.q(0, 9), 9);
    }

    #[test]
    fn validate_names_the_problem() {
        let (words, scales, zeros) = sample();
        let base = Int4View {
            rows: 2,
            cols: 10,
            group_size: 4,
            words: &words,
            scales: &scales,
            zeros: &zeros,
        };
        let short = Int4View {
            words: &words[..3],
            ..base
        };
        assert!(short.validate("w").is_err());
        let bad_zero = [8u8, 0, 16, 3, 8, 6];
        let e = Int4View {
            zeros: &bad_zero,
            ..base
        }
        .validate("w")
        .expect_err("zero 16");
        assert!(e.to_string().contains("16"), "{e}");
        let mut padded = words.clone();
        padded[1] |= 0x0010_0000;
        let e = Int4View {
            words: &padded,
            ..base
        }
        .validate("w")
        .expect_err("padding");
        assert!(e.to_string().contains("past column 10"), "{e}");
        let few = [1.0f32; 4];
        assert!(Int4View {
            scales: &few,
            ..base
        }
        .validate("w")
        .is_err());
    }
}
