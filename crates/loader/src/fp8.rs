//! FP8 element decoders (E4M3FN and E5M2) and exact conversion of stored
//! elements to f32.

use qwgpu_checkpoint::Dtype;

/// Decodes one `float8_e4m3fn` byte: bias 7, subnormals `m·2⁻⁹`, no infinities,
/// NaN only for `0x7F` / `0xFF`.
pub fn e4m3fn_to_f32(b: u8) -> f32 {
    let negative = b & 0x80 != 0;
    if b & 0x7F == 0x7F {
        return if negative { -f32::NAN } else { f32::NAN };
    }
    let e = i32::from((b >> 3) & 0x0F);
    let m = f32::from(b & 0x07);
    // Every value is an integer (0..=15) times a power of two, so both products are exact.
    let magnitude = if e == 0 {
        m * 2f32.powi(-9)
    } else {
        (8.0 + m) * 2f32.powi(e - 10)
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Decodes one `float8_e5m2` byte: it is exactly the high byte of an IEEE f16.
pub fn e5m2_to_f32(b: u8) -> f32 {
    half::f16::from_bits(u16::from(b) << 8).to_f32()
}

/// 256-entry table for an FP8 dtype (`None` for non-FP8 dtypes).
pub(crate) fn fp8_table(dtype: Dtype) -> Option<[f32; 256]> {
    let decode: fn(u8) -> f32 = match dtype {
        Dtype::F8E4M3 => e4m3fn_to_f32,
        Dtype::F8E5M2 => e5m2_to_f32,
        _ => return None,
    };
    let mut table = [0f32; 256];
    for (b, slot) in (0u8..=255).zip(table.iter_mut()) {
        *slot = decode(b);
    }
    Some(table)
}

/// Converts raw little-endian elements of `dtype` to f32 exactly (FP8 decoded
/// without any scale). `bytes.len()` must be a multiple of the element size;
/// a trailing partial element is ignored (callers validate lengths first).
pub(crate) fn decode_elements(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F8E4M3 | Dtype::F8E5M2 => {
            let table = fp8_table(dtype).unwrap_or([0.0; 256]);
            bytes.iter().map(|&b| table[usize::from(b)]).collect()
        }
        // Integer tensors (packed words, g_idx) as numbers; never a weight value.
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent E4M3FN formulation: build the f32 bit pattern directly
    /// (normals re-biased 7 → 127; subnormals normalised by hand).
    fn e4m3_by_bits(b: u8) -> Option<f32> {
        let sign = u32::from(b >> 7) << 31;
        let e = u32::from((b >> 3) & 0xF);
        let m = u32::from(b & 7);
        if e == 15 && m == 7 {
            return None;
        }
        if e == 0 && m == 0 {
            return Some(f32::from_bits(sign));
        }
        let (e32, m32) = if e == 0 {
            // m·2^-9 with m in 1..=7: shift the leading one out.
            let lead = 31 - m.leading_zeros(); // 0..=2
            let frac = (m ^ (1 << lead)) << (23 - lead);
            (lead + 127 - 9, frac)
        } else {
            (e + 120, m << 20)
        };
        Some(f32::from_bits(sign | (e32 << 23) | m32))
    }

    #[test]
    fn e4m3fn_matches_bit_construction_exhaustively() {
        for b in 0u8..=255 {
            let got = e4m3fn_to_f32(b);
            match e4m3_by_bits(b) {
                None => assert!(got.is_nan(), "{b:#04x}: {got} should be NaN"),
                Some(want) => {
                    assert_eq!(got.to_bits(), want.to_bits(), "{b:#04x}: {got} vs {want}")
                }
            }
        }
    }

    #[test]
    fn e4m3fn_anchors() {
        assert_eq!(e4m3fn_to_f32(0x7E), 448.0);
        assert_eq!(e4m3fn_to_f32(0xFE), -448.0);
        assert_eq!(e4m3fn_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3fn_to_f32(0x08), 2f32.powi(-6));
        assert_eq!(e4m3fn_to_f32(0x38), 1.0);
        assert!(e4m3fn_to_f32(0x80).is_sign_negative() && e4m3fn_to_f32(0x80) == 0.0);
        assert!(e4m3fn_to_f32(0x7F).is_nan() && e4m3fn_to_f32(0xFF).is_nan());
        // exp = 15 with m < 7 are ordinary numbers (no infinities in E4M3FN).
        assert_eq!(e4m3fn_to_f32(0x78), 256.0);
        assert_eq!(
            (0u8..=255)
                .filter(|&b| e4m3fn_to_f32(b).is_infinite())
                .count(),
            0
        );
    }

    #[test]
    fn e5m2_matches_formula_exhaustively() {
        for b in 0u8..=255 {
            let s = if b & 0x80 != 0 { -1.0f64 } else { 1.0 };
            let e = i32::from((b >> 2) & 0x1F);
            let m = f64::from(b & 3);
            let want = match e {
                31 if m == 0.0 => s * f64::INFINITY,
                31 => f64::NAN,
                0 => s * m * 2f64.powi(-16),
                _ => s * (1.0 + m / 4.0) * 2f64.powi(e - 15),
            };
            let got = e5m2_to_f32(b);
            if want.is_nan() {
                assert!(got.is_nan(), "{b:#04x}");
            } else {
                assert_eq!(f64::from(got), want, "{b:#04x}");
                assert_eq!(got.is_sign_negative(), s < 0.0, "{b:#04x} sign");
            }
        }
        assert_eq!(e5m2_to_f32(0x7B), 57344.0);
    }

    #[test]
    fn decode_elements_reads_unaligned_little_endian() {
        let mut raw = vec![0u8];
        raw.extend_from_slice(&1.5f32.to_le_bytes());
        raw.extend_from_slice(&(-2.25f32).to_le_bytes());
        assert_eq!(decode_elements(Dtype::F32, &raw[1..]), vec![1.5, -2.25]);
        let bf = half::bf16::from_f32(3.0).to_le_bytes();
        assert_eq!(decode_elements(Dtype::BF16, &bf), vec![3.0]);
        let f = half::f16::from_f32(-0.5).to_le_bytes();
        assert_eq!(decode_elements(Dtype::F16, &f), vec![-0.5]);
    }
}
