//! Helpers shared by the loader's integration tests: deterministic data, tensor
//! builders, and an independent reference dequantizer written from the scheme
//! definitions (spec §4.3 / §5), not from the crate's code paths.
#![allow(dead_code)]

use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{e4m3fn_to_f32, e5m2_to_f32, PackSpec, ShardSpec, SourceTensor};

/// Small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn range(&mut self, lo: usize, hi_incl: usize) -> usize {
        lo + self.below(hi_incl - lo + 1)
    }
    /// A positive scale in about [2^-12, 2^4).
    pub fn scale(&mut self) -> f32 {
        let m = 1.0 + (self.below(1 << 20) as f32) / (1 << 20) as f32;
        m * 2f32.powi(self.range(0, 15) as i32 - 12)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

pub fn tensor(name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> SourceTensor<'static> {
    SourceTensor::new(name, dtype, shape.to_vec(), bytes).expect("consistent test tensor")
}

/// A tensor of `dtype` (F32/BF16/F16) holding `values` rounded to that dtype.
pub fn float_tensor(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    values: &[f32],
) -> SourceTensor<'static> {
    let bytes: Vec<u8> = match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("not a float dtype: {other}"),
    };
    tensor(name, dtype, shape, bytes)
}

/// Random FP8 bytes (any code, NaN included: a NaN value is data).
pub fn fp8_tensor(name: &str, rng: &mut Rng, rows: usize, cols: usize) -> SourceTensor<'static> {
    tensor(name, Dtype::F8E4M3, &[rows, cols], rng.bytes(rows * cols))
}

pub fn spec(name: &str, shards: &[(&str, usize)], cols: usize) -> PackSpec {
    PackSpec::new(
        name,
        shards.iter().map(|(n, r)| ShardSpec::new(*n, *r)).collect(),
        Some(cols),
    )
}

/// Element values of any stored tensor, decoded without a scale.
pub fn raw_values(t: &SourceTensor<'_>) -> Vec<f32> {
    match t.dtype {
        Dtype::F32 => t
            .bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::BF16 => t
            .bytes
            .chunks(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F16 => t
            .bytes
            .chunks(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F8E4M3 => t.bytes.iter().map(|&b| e4m3fn_to_f32(b)).collect(),
        Dtype::F8E5M2 => t.bytes.iter().map(|&b| e5m2_to_f32(b)).collect(),
        Dtype::I32 | Dtype::I64 => panic!("`{}`: I32 is not a float weight", t.name),
    }
}

/// Reference dequantization of one `[rows, cols]` source from its own scale
/// tensor: one element → everywhere; `[k]` → per covered shard (`shard_rows`);
/// `[rows]`/`[rows,1]` → per row; otherwise `[gr, gc]` blocks of `block`.
pub fn reference_dequant(
    w: &SourceTensor<'_>,
    scale: Option<&SourceTensor<'_>>,
    shard_rows: &[usize],
    block: [usize; 2],
) -> Vec<f32> {
    let (rows, cols) = (w.shape[0], w.shape[1]);
    let q = raw_values(w);
    let Some(scale) = scale else { return q };
    let s = raw_values(scale);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let sv = if s.len() == 1 {
                s[0]
            } else if scale.shape.len() == 1
                && scale.shape[0] == shard_rows.len()
                && shard_rows.len() > 1
            {
                let mut acc = 0;
                let k = shard_rows.iter().position(|&n| {
                    acc += n;
                    r < acc
                });
                s[k.unwrap()]
            } else if scale.shape[0] == rows && (scale.shape.len() == 1 || scale.shape[1] == 1) {
                s[r]
            } else {
                let gc = scale.shape[1];
                s[(r / block[0]) * gc + c / block[1]]
            };
            out.push(q[r * cols + c] * sv);
        }
    }
    out
}

/// Bitwise equality, NaN == NaN.
pub fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{what}: element {i}: got {a}, want {b}"
        );
    }
}
