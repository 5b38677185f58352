//! The words of the canonical form (see [`crate::int4`]) made from a
//! checkpoint's packed tensor, any range of rows at a time: so that a
//! weight's rows (and the rows of all the sources of a fused weight) are
//! repacked on several threads straight into the packed weight, each
//! thread its own rows ([`crate::PackOptions::threads`]).
//!
//! Every format is repacked word by word (no per-nibble loops but AWQ's
//! 8 × 8 nibble transposes, done with shifts and masks on whole words),
//! reading the source as a few sequential streams (which the hardware
//! prefetches) and writing whole cache lines of the output: a transpose read
//! one word per source row at a time waits on memory for every word.

use std::ops::Range;

use super::awq::AWQ_NIBBLE;

/// How the packed words of a checkpoint tensor become canonical rows (its
/// shape was checked when the weight was decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repack {
    /// GPTQ `qweight [k8, n]` (I32): canonical word `(r, w)` is
    /// `qweight[w, r]`, a transpose.
    Gptq { k8: usize, n: usize },
    /// AWQ `qweight [cols, n8]` (I32, interleaved nibbles along the outputs).
    Awq { cols: usize, n8: usize },
    /// compressed-tensors `weight_packed [rows, ceil(cols/8)]` (I32): the
    /// canonical words already, with the padding nibbles cleared.
    Ct { cols: usize },
}

/// Word `i` (little-endian) of `bytes`.
#[inline(always)]
fn word(bytes: &[u8], i: usize) -> u32 {
    let b = &bytes[4 * i..4 * i + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Repack {
    /// Canonical words per row, `ceil(cols / 8)`.
    pub fn words_per_row(&self) -> usize {
        match *self {
            Repack::Gptq { k8, .. } => k8,
            Repack::Awq { cols, .. } | Repack::Ct { cols } => cols.div_ceil(8),
        }
    }

    /// Writes canonical rows `rows` of the weight packed in `bytes` into
    /// `out` (`rows.len() × words_per_row()` words, row-major).
    pub fn fill(&self, bytes: &[u8], rows: Range<usize>, out: &mut [u32]) {
        let wpr = self.words_per_row();
        debug_assert_eq!(out.len(), rows.len() * wpr);
        if wpr == 0 {
            return;
        }
        match *self {
            Repack::Gptq { k8, n } => gptq_rows(bytes, n, k8, rows, out),
            Repack::Awq { cols, n8 } => awq_rows(bytes, cols, n8, rows, out),
            Repack::Ct { cols } => ct_rows(bytes, cols, rows, out),
        }
    }

    /// All the rows: `rows × words_per_row()` words.
    pub fn all(&self, bytes: &[u8], rows: usize) -> Vec<u32> {
        let mut out = vec![0u32; rows * self.words_per_row()];
        self.fill(bytes, 0..rows, &mut out);
        out
    }
}

/// GPTQ: a transpose in 16 × 16 tiles. A tile reads 16 words (a cache
/// line) of 16 source rows, which advance together as the tiles go down the
/// output rows (16 sequential streams), and writes whole lines of 16 output
/// rows: every line is read and written once, and the writes never pile up
/// in a few cache sets (as a column of a row-major matrix, whose rows are a
/// power of two apart, would).
fn gptq_rows(bytes: &[u8], n: usize, k8: usize, rows: Range<usize>, out: &mut [u32]) {
    const T: usize = 16;
    let count = rows.len();
    let mut w0 = 0;
    while w0 < k8 {
        let tw = T.min(k8 - w0);
        let streams: [&[u8]; T] = std::array::from_fn(|j| {
            let at = 4 * ((w0 + j.min(tw - 1)) * n + rows.start);
            &bytes[at..at + 4 * count]
        });
        for i in 0..count {
            let at = i * k8 + w0;
            for (d, s) in out[at..at + tw].iter_mut().zip(&streams) {
                let b = &s[4 * i..4 * i + 4];
                *d = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        w0 += tw;
    }
}

/// compressed-tensors: a copy of the rows, the nibbles past `cols` cleared
/// (they hold the packer's fill; the canonical form has 0).
fn ct_rows(bytes: &[u8], cols: usize, rows: Range<usize>, out: &mut [u32]) {
    let wpr = cols.div_ceil(8);
    let src = &bytes[4 * rows.start * wpr..4 * rows.end * wpr];
    for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
        *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    if !cols.is_multiple_of(8) {
        let mask = !(!0u32 << (4 * (cols % 8)));
        for row in out.chunks_exact_mut(wpr) {
            row[wpr - 1] &= mask;
        }
    }
}

/// AWQ: word `m` of input column `c` holds column `c` of output rows
/// `8m..8m + 8` (in [`AWQ_ORDER`](super::AWQ_ORDER)). The eight words of
/// columns `8w..8w + 8` are an 8 × 8 nibble matrix whose transpose is
/// word `w` of those eight rows (in that order). One group of eight output
/// rows at a time, written along the rows (eight sequential streams); its
/// source column `m` is read down the rows of `qweight`, whose lines the
/// next group's column reads again from the cache.
fn awq_rows(bytes: &[u8], cols: usize, n8: usize, rows: Range<usize>, out: &mut [u32]) {
    let wpr = cols.div_ceil(8);
    let (m0, m1) = (rows.start / 8, rows.end.div_ceil(8));
    let mut partial = Vec::new();
    for m in m0..m1 {
        let (r0, r1) = (8 * m, 8 * m + 8);
        // The group's eight rows: straight into `out` when all are asked for.
        let whole = rows.start <= r0 && r1 <= rows.end;
        let group: &mut [u32] = if whole {
            let at = (r0 - rows.start) * wpr;
            &mut out[at..at + 8 * wpr]
        } else {
            partial.resize(8 * wpr, 0);
            &mut partial
        };
        for w in 0..wpr {
            let mut a = [0u32; 8];
            for (j, a) in a.iter_mut().enumerate() {
                let c = 8 * w + j;
                if c < cols {
                    *a = word(bytes, c * n8 + m);
                }
            }
            let t = transpose_nibbles(a);
            // Output row 8m + i is nibble AWQ_NIBBLE[i] of the packed words.
            for (i, &slot) in AWQ_NIBBLE.iter().enumerate() {
                group[i * wpr + w] = t[slot];
            }
        }
        if !whole {
            for r in r0.max(rows.start)..r1.min(rows.end) {
                let at = (r - rows.start) * wpr;
                out[at..at + wpr].copy_from_slice(&partial[(r - r0) * wpr..(r - r0 + 1) * wpr]);
            }
        }
    }
}

/// The transpose of an 8 × 8 nibble matrix (word `j`, nibble `p` → word
/// `p`, nibble `j`): three rounds of swapping blocks of 4, 2, 1 nibbles.
#[inline(always)]
fn transpose_nibbles(mut a: [u32; 8]) -> [u32; 8] {
    for j in 0..4 {
        let (x, y) = (a[j], a[j + 4]);
        a[j] = (x & 0x0000_ffff) | (y << 16);
        a[j + 4] = (x >> 16) | (y & 0xffff_0000);
    }
    for j in [0, 1, 4, 5] {
        let (x, y) = (a[j], a[j + 2]);
        a[j] = (x & 0x00ff_00ff) | ((y & 0x00ff_00ff) << 8);
        a[j + 2] = ((x >> 8) & 0x00ff_00ff) | (y & 0xff00_ff00);
    }
    for j in [0, 2, 4, 6] {
        let (x, y) = (a[j], a[j + 1]);
        a[j] = (x & 0x0f0f_0f0f) | ((y & 0x0f0f_0f0f) << 4);
        a[j + 1] = ((x >> 4) & 0x0f0f_0f0f) | (y & 0xf0f0_f0f0);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> u32 {
        let mut x = seed | 1;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        }
    }

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn nib(w: u32, j: usize) -> u32 {
        (w >> (4 * j)) & 0xF
    }

    #[test]
    fn nibble_transpose_is_the_transpose() {
        let mut next = rng(0x5eed);
        for _ in 0..100 {
            let a: [u32; 8] = std::array::from_fn(|_| next());
            let t = transpose_nibbles(a);
            for (j, &aj) in a.iter().enumerate() {
                for (p, &tp) in t.iter().enumerate() {
                    assert_eq!(nib(tp, j), nib(aj, p), "word {j} nibble {p}");
                }
            }
        }
    }

    /// The per-nibble formulas of the module docs of each format, written
    /// out element by element: the reference the word-level repack must equal
    /// on any row range.
    fn reference(r: Repack, src: &[u32], rows: usize) -> Vec<u32> {
        let wpr = r.words_per_row();
        let mut out = vec![0u32; rows * wpr];
        for row in 0..rows {
            for c in 0..wpr * 8 {
                let q = match r {
                    Repack::Gptq { n, .. } => nib(src[(c / 8) * n + row], c % 8),
                    Repack::Awq { cols, n8 } if c < cols => {
                        let i = [0, 2, 4, 6, 1, 3, 5, 7]
                            .iter()
                            .position(|&o| o == row % 8)
                            .expect("in the order");
                        nib(src[c * n8 + row / 8], i)
                    }
                    Repack::Ct { cols } if c < cols => nib(src[row * wpr + c / 8], c % 8),
                    _ => 0,
                };
                out[row * wpr + c / 8] |= q << (4 * (c % 8));
            }
        }
        out
    }

    #[test]
    fn every_row_range_equals_the_element_formulas() {
        let mut next = rng(0xa11ce);
        // (repack, source words, rows): awkward sizes, wide rows crossing
        // several blocks.
        let cases = [
            (Repack::Gptq { k8: 3, n: 13 }, 39, 13),
            (Repack::Gptq { k8: 700, n: 24 }, 700 * 24, 24),
            (Repack::Awq { cols: 13, n8: 3 }, 39, 24),
            (Repack::Awq { cols: 40, n8: 1 }, 40, 8),
            (Repack::Awq { cols: 5000, n8: 2 }, 10_000, 16),
            (Repack::Ct { cols: 13 }, 2 * 7, 7),
            (Repack::Ct { cols: 4096 }, 512 * 9, 9),
        ];
        for (r, len, rows) in cases {
            let src: Vec<u32> = (0..len).map(|_| next()).collect();
            let b = bytes(&src);
            let want = reference(r, &src, rows);
            assert_eq!(r.all(&b, rows), want, "{r:?} all rows");
            let wpr = r.words_per_row();
            for start in 0..rows {
                for end in start + 1..=rows.min(start + 10) {
                    let mut out = vec![0xdead_beef; (end - start) * wpr];
                    r.fill(&b, start..end, &mut out);
                    assert_eq!(
                        out,
                        want[start * wpr..end * wpr],
                        "{r:?} rows {start}..{end}"
                    );
                }
            }
        }
    }

    /// The repack before it ran word by word on row ranges (the decoders'
    /// loops, kept here as the baseline of [`repack_rate_per_format`]): the
    /// source words read into a vector, then GPTQ transposed one word at a
    /// time down its columns and AWQ gathered nibble by nibble.
    fn per_nibble(r: Repack, bytes: &[u8], rows: usize) -> Vec<u32> {
        let src: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        match r {
            Repack::Gptq { k8, n } => {
                let mut words = Vec::with_capacity(n * k8);
                for r in 0..n {
                    words.extend((0..k8).map(|w| src[w * n + r]));
                }
                words
            }
            Repack::Awq { cols, n8 } => {
                let wpr = cols.div_ceil(8);
                let mut words = Vec::with_capacity(rows * wpr);
                for r in 0..rows {
                    let (m, shift) = (r / 8, 4 * AWQ_NIBBLE[r % 8]);
                    for w in 0..wpr {
                        let mut word = 0u32;
                        for j in 0..8 {
                            let c = 8 * w + j;
                            if c < cols {
                                word |= ((src[c * n8 + m] >> shift) & 0xF) << (4 * j);
                            }
                        }
                        words.push(word);
                    }
                }
                words
            }
            Repack::Ct { cols } => {
                let wpr = cols.div_ceil(8);
                let mut words = src;
                if !cols.is_multiple_of(8) {
                    let mask = !(!0u32 << (4 * (cols % 8)));
                    for r in 0..rows {
                        words[r * wpr + wpr - 1] &= mask;
                    }
                }
                words
            }
        }
    }

    /// Repack rate of each format on one thread, 35B-A3B expert shapes
    /// (`gate_proj` [512, 2048], `down_proj` [2048, 512]) of 64 experts:
    /// the word-level repack against the per-nibble one it replaced (equal
    /// outputs checked). `cargo test --release -p qwgpu-loader --lib
    /// repack_rate -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run it with --release --ignored --nocapture"]
    fn repack_rate_per_format() {
        let mut next = rng(0xbe4c);
        let experts = 64;
        for (what, rows, cols) in [("gate_proj", 512, 2048), ("down_proj", 2048, 512)] {
            let formats = [
                (
                    "GPTQ",
                    Repack::Gptq {
                        k8: cols / 8,
                        n: rows,
                    },
                ),
                ("AWQ", Repack::Awq { cols, n8: rows / 8 }),
                ("CT", Repack::Ct { cols }),
            ];
            for (name, r) in formats {
                let sources: Vec<Vec<u8>> = (0..experts)
                    .map(|_| bytes(&(0..rows * cols / 8).map(|_| next()).collect::<Vec<_>>()))
                    .collect();
                let gb = (experts * rows * cols / 2) as f64 / 1e9;
                let mut out = vec![0u32; rows * r.words_per_row()];
                let (mut new_s, mut old_s) = (f64::MAX, f64::MAX);
                for _ in 0..3 {
                    let t = std::time::Instant::now();
                    for b in &sources {
                        r.fill(b, 0..rows, &mut out);
                        std::hint::black_box(&out);
                    }
                    new_s = new_s.min(t.elapsed().as_secs_f64());
                    let t = std::time::Instant::now();
                    for b in &sources {
                        std::hint::black_box(per_nibble(r, b, rows));
                    }
                    old_s = old_s.min(t.elapsed().as_secs_f64());
                }
                r.fill(&sources[0], 0..rows, &mut out);
                assert!(out == per_nibble(r, &sources[0], rows), "{name} {what}");
                let (new_gbs, old_gbs) = (gb / new_s, gb / old_s);
                println!(
                    "{name:4} {what} [{rows}, {cols}] x {experts}: word-level {new_gbs:.2} GB/s, \
                     per-nibble {old_gbs:.2} GB/s"
                );
            }
        }
    }
}
