//! Packed test weights shared by the kernel tests: any storage format with any
//! scale scheme of the loader, built directly as `qwgpu_loader::PackedWeight`.

// Each test binary uses part of this module.
#![allow(dead_code)]

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
        }
    }
    out
}
