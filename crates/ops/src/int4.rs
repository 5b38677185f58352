//! 4-bit weights: the dequantization reference for the loader's host form of
//! GPTQ / AWQ / compressed-tensors W4A16 weights (row-major packed words,
//! 8 nibbles per u32 along the input features; a scale and a zero point per
//! group of input features), `W[r, c] = (q − zero) · scale`.

/// The f32 weight `[rows, cols]` of a 4-bit one: `words` row-major
/// `rows × ⌈cols/8⌉` (nibble `j`, bits `4j..4j+3`, of word `w` is column
/// `8w + j`), `scales` and `zeros` row-major `rows × ⌈cols/group_size⌉`.
/// Panics on slices shorter than those sizes or a zero group size (a
/// reference for tests and the CPU model, whose loader checks sizes first).
pub fn dequantize(
    rows: usize,
    cols: usize,
    group_size: usize,
    words: &[u32],
    scales: &[f32],
    zeros: &[u8],
) -> Vec<f32> {
    let wpr = cols.div_ceil(8);
    let groups = cols.div_ceil(group_size);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let q = (words[r * wpr + c / 8] >> (4 * (c % 8))) & 0xf;
            let g = r * groups + c / group_size;
            out.push((q as f32 - f32::from(zeros[g])) * scales[g]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_run_along_the_input_features_with_per_group_scales() {
        // One row of 10 columns: q = 0..9, groups of 4 (3 groups, the last partial).
        let words = [0x7654_3210, 0x0000_0098];
        let w = dequantize(1, 10, 4, &words, &[1.0, 0.5, 2.0], &[0, 8, 9]);
        assert_eq!(w, [0.0, 1.0, 2.0, 3.0, -2.0, -1.5, -1.0, -0.5, -2.0, 0.0]);
        // Two rows: the second row's words and groups start after the first's.
        let words = [0x1, 0xf];
        let w = dequantize(2, 2, 2, &words, &[1.0, 3.0], &[0, 15]);
        assert_eq!(w, [1.0, 0.0, 0.0, -45.0]);
    }
}
