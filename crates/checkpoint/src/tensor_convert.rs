//! dtype → f32 conversion. Reads little-endian bytes element by element, so
//! unaligned memory-mapped data is fine (nothing is cast in place).

use half::{bf16, f16};

use crate::{CheckpointError, Dtype, TensorView};

pub(crate) fn to_f32(t: &TensorView<'_>) -> Result<Vec<f32>, CheckpointError> {
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(t.dtype.size()));
    if numel != Some(t.bytes.len()) {
        return Err(CheckpointError::InvalidTensor {
            file: t.file.to_path_buf(),
            tensor: t.source_name.to_string(),
            detail: format!(
                "{t_bytes_len} bytes do not hold shape {t_shape:?} of {t_dtype}",
                t_bytes_len = t.bytes.len(),
                t_shape = t.shape,
                t_dtype = t.dtype
            ),
        });
    }
    let b = t.bytes;
    Ok(match t.dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F8E4M3 | Dtype::F8E5M2 | Dtype::I32 | Dtype::I64 => {
            return Err(CheckpointError::NeedsDequantization {
                file: t.file.to_path_buf(),
                tensor: t.name.to_string(),
                dtype: t.dtype.to_string(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn view<'a>(dtype: Dtype, shape: &'a [usize], bytes: &'a [u8]) -> TensorView<'a> {
        TensorView {
            name: "t",
            source_name: "t",
            file: Path::new("f.safetensors"),
            dtype,
            shape,
            bytes,
        }
    }

    type Codec = (Dtype, Box<dyn Fn(f32) -> Vec<u8>>, Box<dyn Fn(f32) -> f32>);

    /// Seeded values of awkward lengths, read from an odd offset of a buffer.
    #[test]
    fn unaligned_round_trip_all_float_dtypes() {
        let seed = 0x5eed_u64;
        for n in [1usize, 3, 65] {
            // xorshift for reproducible values; the seed is in the assertion message.
            let mut s = seed ^ n as u64;
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s % 2001) as f32 - 1000.0) / 64.0
                })
                .collect();
            // Expected values: independent encode via bit manipulation / half's from_f32.
            let enc: [Codec; 3] = [
                (
                    Dtype::F32,
                    Box::new(|x: f32| x.to_le_bytes().to_vec()),
                    Box::new(|x| x),
                ),
                (
                    Dtype::F16,
                    Box::new(|x: f32| half::f16::from_f32(x).to_bits().to_le_bytes().to_vec()),
                    Box::new(|x| half::f16::from_f32(x).to_f32()),
                ),
                (
                    Dtype::BF16,
                    Box::new(|x: f32| ((x.to_bits() >> 16) as u16).to_le_bytes().to_vec()),
                    // Truncation of the low 16 bits.
                    Box::new(|x: f32| f32::from_bits(x.to_bits() & 0xFFFF_0000)),
                ),
            ];
            for (dtype, encode, expect) in &enc {
                let mut buf = vec![0u8];
                for v in &vals {
                    buf.extend(encode(*v));
                }
                let shape = [n];
                let got = to_f32(&view(*dtype, &shape, &buf[1..])).expect("convert");
                let want: Vec<f32> = vals.iter().map(|v| expect(*v)).collect();
                assert_eq!(got, want, "dtype {dtype} n {n} seed {seed:#x}");
            }
        }
    }

    #[test]
    fn fp8_and_bad_lengths_are_errors() {
        let e = to_f32(&view(Dtype::F8E4M3, &[2], &[0x38, 0x38])).expect_err("fp8");
        assert!(matches!(e, CheckpointError::NeedsDequantization { .. }));
        assert!(e.to_string().contains("loader"), "{e}");
        let e = to_f32(&view(Dtype::F32, &[2], &[0; 7])).expect_err("length");
        assert!(e.to_string().contains("7 bytes"), "{e}");
        assert_eq!(
            to_f32(&view(Dtype::BF16, &[], &[0x80, 0x3F])).expect("0-d"),
            vec![1.0]
        );
    }
}
