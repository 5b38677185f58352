//! Scale-scheme detection for one source tensor: what its
//! `weight_scale(_inv)` / `input_scale` shape means, checked against the
//! weight, the shards it covers and the quantization config.

use qwgpu_checkpoint::Dtype;

use crate::fp8::decode_elements;
use crate::policy::{ModuleRule, SchemeKind};
use crate::{LoadError, SourceTensor};

/// Block size assumed when a 2-D scale comes without a configured block size
/// (Qwen official FP8 and compressed-tensors FP8_BLOCK both use it).
pub const DEFAULT_BLOCK: [usize; 2] = [128, 128];

/// A source tensor's scales, in the tensor's own coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceScheme {
    /// One scale per covered shard (a per-tensor scale broadcast, or `[k]` sliced).
    PerShard(Vec<f32>),
    /// One scale per row.
    PerChannel(Vec<f32>),
    Block {
        block: [usize; 2],
        grid: [usize; 2],
        scales: Vec<f32>,
    },
}

impl SourceScheme {
    pub(crate) fn kind(&self) -> SchemeKind {
        match self {
            SourceScheme::PerShard(_) => SchemeKind::Tensor,
            SourceScheme::PerChannel(_) => SchemeKind::Channel,
            SourceScheme::Block { .. } => SchemeKind::Block,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            SourceScheme::Block { block, .. } => format!(
                "block [{block_0}, {block_1}]",
                block_0 = block[0],
                block_1 = block[1]
            ),
            other => other.kind().to_string(),
        }
    }
}

/// Values of a scale tensor: F32/BF16/F16 only, every element finite and > 0.
pub(crate) fn scale_values(t: &SourceTensor<'_>) -> Result<Vec<f32>, LoadError> {
    if !matches!(t.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
        return Err(LoadError::ScaleDtype {
            tensor: t.name.clone(),
            dtype: t.dtype,
        });
    }
    t.check_len()?;
    let values = decode_elements(t.dtype, &t.bytes);
    if let Some((index, &value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(LoadError::ScaleValue {
            tensor: t.name.clone(),
            index,
            value,
        });
    }
    Ok(values)
}

fn is_scalar_shape(shape: &[usize]) -> bool {
    shape.len() <= 2 && shape.iter().all(|&d| d == 1)
}

/// Interprets `scale` for a `[rows, cols]` FP8 weight covering `covers` shards.
pub(crate) fn detect_weight_scale(
    weight: &SourceTensor<'_>,
    covers: usize,
    scale: &SourceTensor<'_>,
    rule: &ModuleRule,
) -> Result<SourceScheme, LoadError> {
    let (rows, cols) = weight.dims2("weight")?;
    let shape = scale.shape.as_slice();
    let block = rule.block.unwrap_or(DEFAULT_BLOCK);
    let grid = [rows.div_ceil(block[0]), cols.div_ceil(block[1])];

    let scalar = is_scalar_shape(shape);
    let per_shard = covers > 1 && shape == [covers];
    let channel = shape == [rows, 1] || shape == [rows];
    let blockwise = shape == grid;

    // An expected kind wins where shapes are ambiguous (e.g. a [1, 1] grid).
    let kind = match rule.expected {
        Some(SchemeKind::Block) if blockwise => SchemeKind::Block,
        Some(SchemeKind::Channel) if channel => SchemeKind::Channel,
        _ if scalar || per_shard => SchemeKind::Tensor,
        _ if channel => SchemeKind::Channel,
        _ if blockwise => SchemeKind::Block,
        _ => {
            let block_configured = rule.block.is_some() || rule.expected == Some(SchemeKind::Block);
            if let (&[gr, gc], true) = (shape, block_configured) {
                return Err(LoadError::BlockGrid {
                    scale: scale.name.clone(),
                    weight: weight.name.clone(),
                    weight_shape: [rows, cols],
                    block,
                    got: [gr, gc],
                    expected: grid,
                });
            }
            return Err(LoadError::ScaleShape {
                scale: scale.name.clone(),
                weight: weight.name.clone(),
                covers,
                shape: shape.to_vec(),
                acceptable: format!(
                    "for a [{rows}, {cols}] weight: [] / [1] / [1, 1] (per-tensor), {per_shard}[{rows}, 1] or [{rows}] (per-channel), \
                     {grid:?} (block [{block_0}, {block_1}])",
                    per_shard = if covers > 1 {
                        format!("[{covers}] (per-shard), ")
                    } else {
                        String::new()
                    },
                    block_0 = block[0],
                    block_1 = block[1]
                ),
            });
        }
    };
    if let Some(expected) = rule.expected {
        if expected != kind {
            return Err(LoadError::SchemeMismatch {
                tensor: weight.name.clone(),
                found: format!(
                    "{kind} (scale `{scale_name}` {shape:?})",
                    scale_name = scale.name
                ),
                configured: expected.to_string(),
            });
        }
    }
    let values = scale_values(scale)?;
    Ok(match kind {
        SchemeKind::Tensor if scalar => SourceScheme::PerShard(vec![only(&values, scale)?; covers]),
        SchemeKind::Tensor => SourceScheme::PerShard(values),
        SchemeKind::Channel => SourceScheme::PerChannel(values),
        SchemeKind::Block => SourceScheme::Block {
            block,
            grid,
            scales: values,
        },
    })
}

/// Interprets a static `input_scale`: one value broadcast to every covered
/// shard, or `[k]` with one per shard.
pub(crate) fn detect_input_scale(
    weight: &SourceTensor<'_>,
    covers: usize,
    scale: &SourceTensor<'_>,
) -> Result<Vec<f32>, LoadError> {
    let shape = scale.shape.as_slice();
    let scalar = is_scalar_shape(shape);
    if !(scalar || (covers > 1 && shape == [covers])) {
        return Err(LoadError::ScaleShape {
            scale: scale.name.clone(),
            weight: weight.name.clone(),
            covers,
            shape: shape.to_vec(),
            acceptable: if covers > 1 {
                format!("[] / [1] / [1, 1] (per-tensor) or [{covers}] (per-shard)")
            } else {
                "[] / [1] / [1, 1] (per-tensor)".into()
            },
        });
    }
    let values = scale_values(scale)?;
    Ok(if scalar {
        vec![only(&values, scale)?; covers]
    } else {
        values
    })
}

/// The single value of a one-element scale.
fn only(values: &[f32], scale: &SourceTensor<'_>) -> Result<f32, LoadError> {
    match values {
        [v] => Ok(*v),
        _ => Err(LoadError::Shape {
            tensor: scale.name.clone(),
            got: scale.shape.clone(),
            expected: "exactly one element".into(),
        }),
    }
}
