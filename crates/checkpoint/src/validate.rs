//! Tensors vs config, from headers only: presence (all missing listed at once),
//! exact shapes, dtypes allowed for each role, MoE expert layout, and the list
//! of tensors that are neither required nor known companions.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::checkpoint_impl::Entry;
use crate::config::{FfnConfig, LayerType};
use crate::expected::{
    expected_tensors, fused_expert_tensors, int4_weight_names, per_expert_tensors, ExpectedTensor,
    Role, COMPANION_SUFFIXES, FUSED_COMPANION_SUFFIXES,
};
use crate::names::layer_prefix;
use crate::{CheckpointError, ModelConfig};

/// Which expert layout each MoE layer uses, from the names present.
#[derive(Default, Clone)]
struct LayerExperts {
    fused: Option<String>,
    per_expert: Option<String>,
}

/// Splits `model.layers.{i}.{rest}` into `(i, rest)`.
fn split_layer(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (num, rest) = rest.split_once('.')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((num.parse().ok()?, rest))
}

fn expert_layouts(
    dir: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Entry>,
) -> Result<Vec<LayerExperts>, CheckpointError> {
    let FfnConfig::Moe { num_experts, .. } = config.text.ffn else {
        return Ok(Vec::new());
    };
    let layers = config.text.num_hidden_layers;
    let mut out = vec![LayerExperts::default(); layers];
    // Messages use the file's own names (`model.language_model.…`).
    for (name, entry) in tensors {
        let source = &entry.source;
        let Some((layer, rest)) = split_layer(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix("mlp.experts.") else {
            continue;
        };
        let Some(slot) = out.get_mut(layer) else {
            continue; // layer out of range: reported as unexpected
        };
        let id_text: &str = rest.split('.').next().unwrap_or("");
        if !id_text.is_empty() && id_text.bytes().all(|b| b.is_ascii_digit()) {
            let in_range = id_text.parse::<usize>().ok().filter(|&e| e < num_experts);
            if in_range.is_none() {
                return Err(CheckpointError::ExpertLayout {
                    dir: dir.to_path_buf(),
                    layer,
                    tensor: source.clone(),
                    detail: format!(
                        "expert id {id_text} is out of range (num_experts = {num_experts})"
                    ),
                });
            }
            slot.per_expert.get_or_insert_with(|| source.clone());
        } else if rest.starts_with("gate_up_proj") || rest.starts_with("down_proj") {
            slot.fused.get_or_insert_with(|| source.clone());
        }
        if let (Some(f), Some(p)) = (&slot.fused, &slot.per_expert) {
            return Err(CheckpointError::ExpertLayout {
                dir: dir.to_path_buf(),
                layer,
                tensor: p.clone(),
                detail: format!("mixes the per-expert layout with the fused layout (`{f}`)"),
            });
        }
    }
    Ok(out)
}

/// Returns the unexpected tensor names (sorted), or the first violation.
pub(crate) fn validate_tensors(
    dir: &Path,
    config: &ModelConfig,
    tensors: &BTreeMap<String, Entry>,
    files: &[&Path],
) -> Result<Vec<String>, CheckpointError> {
    let text = &config.text;
    let mut expected: Vec<ExpectedTensor> = expected_tensors(text, config.tie_word_embeddings);
    for (layer, lx) in expert_layouts(dir, config, tensors)?
        .into_iter()
        .enumerate()
    {
        if lx.per_expert.is_some() {
            expected.extend(per_expert_tensors(text, layer));
        } else {
            expected.extend(fused_expert_tensors(text, layer));
        }
    }

    // A linear weight stored as 4-bit words (`qweight` / `weight_packed`) is
    // present; the loader checks those tensors against the format.
    let as_int4 = |e: &ExpectedTensor| {
        e.role == Role::Linear
            && int4_weight_names(&e.name)
                .iter()
                .any(|n| tensors.contains_key(n))
    };
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !tensors.contains_key(&e.name) && !as_int4(e))
        .map(|e| e.name.clone())
        .collect();
    if !missing.is_empty() {
        let unexpected = unexpected_names(text, &expected, tensors);
        let prefixes = unknown_prefixes(&unexpected);
        if !prefixes.is_empty() {
            return Err(CheckpointError::UnknownPrefix {
                dir: dir.to_path_buf(),
                prefixes,
                missing: display_names(&missing, tensors),
            });
        }
        return Err(CheckpointError::MissingTensor {
            dir: dir.to_path_buf(),
            names: display_names(&missing, tensors),
        });
    }

    for e in &expected {
        let Some(t) = tensors.get(&e.name) else {
            continue;
        };
        let file = files
            .get(t.shard)
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        if t.shape != e.shape {
            return Err(CheckpointError::ShapeMismatch {
                file,
                tensor: t.source.clone(),
                got: t.shape.clone(),
                expected: e.shape.clone(),
                formula: e.formula.to_string(),
            });
        }
        if !e.role.allows(t.dtype) {
            return Err(CheckpointError::UnsupportedDtype {
                file,
                tensor: t.source.clone(),
                dtype: t.dtype.to_string(),
                expected: e.role.describe().to_string(),
            });
        }
    }

    Ok(unexpected_names(text, &expected, tensors))
}

/// Tensors that are neither required nor a known companion of a required one (sorted).
fn unexpected_names(
    text: &crate::TextConfig,
    expected: &[ExpectedTensor],
    tensors: &BTreeMap<String, Entry>,
) -> Vec<String> {
    // Module stems that may carry quantization companions.
    let mut stems: HashSet<String> = expected
        .iter()
        .map(|e| {
            e.name
                .strip_suffix(".weight")
                .unwrap_or(&e.name)
                .to_string()
        })
        .collect();
    for (i, lt) in text.layer_types.iter().enumerate() {
        if *lt == LayerType::FullAttention {
            let p = layer_prefix(i);
            stems.insert(format!("{p}self_attn"));
            stems.insert(format!("{p}self_attn.attn"));
        }
    }
    let required: HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let is_companion = |name: &str| {
        COMPANION_SUFFIXES
            .iter()
            .chain(FUSED_COMPANION_SUFFIXES)
            .any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|stem| stems.contains(stem))
            })
    };
    tensors
        .keys()
        .filter(|n| !required.contains(n.as_str()) && !is_companion(n))
        .cloned()
        .collect()
}

/// Groups unexpected names that lie outside the known namespaces
/// (`model.layers.*`, `model.embed_tokens`, `model.norm`, `lm_head`) by their
/// leading prefix: `(prefix, count)`, most tensors first.
fn unknown_prefixes(unexpected: &[String]) -> Vec<(String, usize)> {
    const KNOWN: &[&str] = &["layers", "embed_tokens", "norm"];
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for name in unexpected {
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or("");
        let key = match first {
            "lm_head" => continue,
            "model" => match parts.next() {
                Some(second) if KNOWN.contains(&second) => continue,
                Some(second) => format!("model.{second}."),
                None => name.clone(),
            },
            _ => format!("{first}."),
        };
        *groups.entry(key).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = groups.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Missing canonical names spelled as this checkpoint spells its tensors
/// (e.g. `model.language_model.layers.…` in the release wrapper layout), so a
/// user can search the file's own names.
fn display_names(missing: &[String], tensors: &BTreeMap<String, Entry>) -> Vec<String> {
    // The checkpoint's own spelling of the canonical `model.` prefix, if uniform.
    let spelled = tensors.iter().find_map(|(canonical, e)| {
        let rest = canonical.strip_prefix("model.")?;
        e.source.strip_suffix(rest).map(str::to_string)
    });
    match spelled.as_deref() {
        Some(p) if p != "model." => missing
            .iter()
            .map(|m| match m.strip_prefix("model.") {
                Some(rest) => format!("{p}{rest}"),
                None => m.clone(),
            })
            .collect(),
        _ => missing.to_vec(),
    }
}
