//! MoE experts in either checkpoint layout: fused 3-D `experts.gate_up_proj`
//! `[E, 2·Ie, H]` / `experts.down_proj` `[E, H, Ie]` (no `.weight` suffix), or
//! per-expert `experts.{e}.{gate,up,down}_proj.weight` (the FP8 releases).
//! Either way each expert becomes its own [`SourceWeight`], so the packing
//! step sees the same inputs for both.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::{LoadError, SourceTensor, SourceWeight};

/// How one checkpoint stores its experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertLayout {
    Fused,
    PerExpert,
}

/// Scans the names under `model.layers.{i}.mlp.experts.` and returns the
/// layout (`None` when no layer has experts). Mixed layouts (in one layer or
/// across layers) and expert ids `>= num_experts` are errors.
pub fn detect_layout(
    names: &[&str],
    num_layers: usize,
    num_experts: usize,
) -> Result<Option<ExpertLayout>, LoadError> {
    let mut per_layer: BTreeMap<usize, BTreeSet<&'static str>> = BTreeMap::new();
    for name in names {
        let Some(rest) = name.strip_prefix("model.layers.") else {
            continue;
        };
        let Some((layer, rest)) = rest.split_once('.') else {
            continue;
        };
        let Ok(layer) = layer.parse::<usize>() else {
            continue;
        };
        let Some(rest) = rest.strip_prefix("mlp.experts.") else {
            continue;
        };
        if layer >= num_layers {
            continue;
        }
        let head = rest.split('.').next().unwrap_or("");
        let kind = if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            let expert = head.parse::<usize>().unwrap_or(usize::MAX);
            if expert >= num_experts {
                return Err(LoadError::ExpertOutOfRange {
                    tensor: name.to_string(),
                    expert,
                    num_experts,
                });
            }
            "per-expert"
        } else if head.starts_with("gate_up_proj") || head.starts_with("down_proj") {
            "fused"
        } else {
            continue;
        };
        per_layer.entry(layer).or_default().insert(kind);
    }
    let mut found: Option<(usize, &'static str)> = None;
    for (layer, kinds) in &per_layer {
        if kinds.len() > 1 {
            return Err(LoadError::MixedExpertLayouts {
                detail: format!("layer {layer} has both fused (`experts.gate_up_proj`) and per-expert (`experts.{{e}}.*`) tensors"),
            });
        }
        let Some(&kind) = kinds.first() else { continue };
        match found {
            None => found = Some((*layer, kind)),
            Some((l0, k0)) if k0 != kind => {
                return Err(LoadError::MixedExpertLayouts {
                    detail: format!("layer {l0} stores experts {k0}, layer {layer} {kind}"),
                })
            }
            Some(_) => {}
        }
    }
    Ok(found.map(|(_, k)| {
        if k == "fused" {
            ExpertLayout::Fused
        } else {
            ExpertLayout::PerExpert
        }
    }))
}

/// Sub-range of borrowed or owned bytes, keeping the borrow when there is one.
pub(crate) fn slice_bytes<'a>(
    bytes: &Cow<'a, [u8]>,
    range: Range<usize>,
    tensor: &str,
) -> Result<Cow<'a, [u8]>, LoadError> {
    let bad = || LoadError::InvalidPacked {
        name: tensor.to_string(),
        detail: format!(
            "byte range {range:?} out of bounds ({bytes_len} bytes)",
            bytes_len = bytes.len()
        ),
    };
    match bytes {
        Cow::Borrowed(b) => b.get(range.clone()).map(Cow::Borrowed).ok_or_else(bad),
        Cow::Owned(v) => v
            .get(range.clone())
            .map(|s| Cow::Owned(s.to_vec()))
            .ok_or_else(bad),
    }
}

/// Slices a `[E, ...]` tensor into E tensors of shape `inner`.
fn split_leading<'a>(
    t: &SourceTensor<'a>,
    experts: usize,
    inner: Vec<usize>,
) -> Result<Vec<SourceTensor<'a>>, LoadError> {
    t.check_len()?;
    let per = t.bytes.len() / experts.max(1);
    (0..experts)
        .map(|e| {
            Ok(SourceTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: inner.clone(),
                bytes: slice_bytes(&t.bytes, e * per..(e + 1) * per, &t.name)?,
            })
        })
        .collect()
}

/// Splits a fused expert scale into one scale per expert: one element → the
/// same per-tensor scale for all; `[E]`/`[E,1]`/`[E,1,1]` → per-expert scalars;
/// `[E, a, b]` → per-expert `[a, b]` (per-channel or block, checked later).
fn split_scale<'a>(
    scale: &SourceTensor<'a>,
    weight: &SourceTensor<'_>,
    experts: usize,
    rows: usize,
    cols: usize,
    input: bool,
) -> Result<Vec<SourceTensor<'a>>, LoadError> {
    let shape = scale.shape.as_slice();
    let numel = scale.numel()?;
    if numel == 1 && shape.len() <= 3 {
        let one = SourceTensor {
            shape: vec![1],
            ..scale.clone()
        };
        return Ok(vec![one; experts]);
    }
    let per_expert_scalar =
        shape.first() == Some(&experts) && shape.iter().skip(1).all(|&d| d == 1);
    if per_expert_scalar && shape.len() <= 3 {
        return split_leading(scale, experts, vec![1]);
    }
    if !input {
        if let [e, a, b] = *shape {
            if e == experts {
                return split_leading(scale, experts, vec![a, b]);
            }
        }
    }
    Err(LoadError::ScaleShape {
        scale: scale.name.clone(),
        weight: weight.name.clone(),
        covers: experts,
        shape: shape.to_vec(),
        acceptable: if input {
            format!("[] / [1] (per-tensor), [{experts}] or [{experts}, 1, 1] (per-expert)")
        } else {
            format!(
                "[] / [1] (per-tensor), [{experts}] or [{experts}, 1, 1] (per-expert), \
                 [{experts}, {rows}, 1] (per-channel), [{experts}, ceil({rows}/bn), ceil({cols}/bk)] (block)"
            )
        },
    })
}

/// Splits a fused 3-D expert tensor `[E, rows, cols]` (and its scales) into
/// per-expert sources covering `covers(e)`.
pub(crate) fn split_fused<'a>(
    weight: SourceTensor<'a>,
    weight_scale: Option<SourceTensor<'a>>,
    input_scale: Option<SourceTensor<'a>>,
    module: &str,
    dims: [usize; 3],
    covers: impl Fn(usize) -> Vec<String>,
) -> Result<Vec<SourceWeight<'a>>, LoadError> {
    let [experts, rows, cols] = dims;
    if weight.shape != dims {
        return Err(LoadError::Shape {
            tensor: weight.name.clone(),
            got: weight.shape.clone(),
            expected: format!("{dims:?} (experts, rows, cols)"),
        });
    }
    let scales = weight_scale
        .as_ref()
        .map(|s| split_scale(s, &weight, experts, rows, cols, false))
        .transpose()?;
    let inputs = input_scale
        .as_ref()
        .map(|s| split_scale(s, &weight, experts, rows, cols, true))
        .transpose()?;
    let parts = split_leading(&weight, experts, vec![rows, cols])?;
    let mut scales = scales.map(Vec::into_iter);
    let mut inputs = inputs.map(Vec::into_iter);
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(e, part)| SourceWeight {
            module: module.to_string(),
            weight: part,
            covers: covers(e),
            weight_scale: scales.as_mut().and_then(Iterator::next),
            input_scale: inputs.as_mut().and_then(Iterator::next),
            int4: None,
        })
        .collect())
}
