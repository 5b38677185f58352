//! Canonical tensor names: one spelling (`model.layers.*`, `lm_head.weight`) for
//! the release wrapper (`model.language_model.*`), text-only exports and MLX
//! conversions; and the tensors a text engine skips on purpose.

/// Source-name prefixes of tensors a text engine does not use: the MTP head and
/// the vision tower.
const SKIPPED_PREFIXES: &[&str] = &[
    "mtp.",
    "model.mtp.",
    "model.language_model.mtp.",
    "model.visual.",
    "visual.",
    "vision_tower.",
    "model.vision_tower.",
];

/// `(source prefix, canonical prefix)` rewrites, first match wins.
const PREFIX_REWRITES: &[(&str, &str)] = &[
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
];

/// True for source names that are skipped on purpose (`mtp.*`, `model.visual.*`,
/// `visual.*`, `*rotary_emb.inv_freq`).
pub fn is_skipped(source: &str) -> bool {
    SKIPPED_PREFIXES.iter().any(|p| source.starts_with(p)) || source.contains("rotary_emb.inv_freq")
}

/// Rewrites a release / MLX prefix to the canonical one; any other name is
/// returned unchanged. Also right for module names from a config's ignore lists.
pub fn canonical_prefix(name: &str) -> String {
    for (from, to) in PREFIX_REWRITES {
        if let Some(rest) = name.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    name.to_string()
}

/// The canonical name of a checkpoint tensor, or `None` if it is skipped.
///
/// ```
/// use qwgpu_checkpoint::canonical_name;
/// assert_eq!(
///     canonical_name("model.language_model.layers.0.mlp.gate.weight").as_deref(),
///     Some("model.layers.0.mlp.gate.weight")
/// );
/// assert_eq!(canonical_name("language_model.lm_head.weight").as_deref(), Some("lm_head.weight"));
/// assert_eq!(canonical_name("mtp.fc.weight"), None);
/// ```
pub fn canonical_name(source: &str) -> Option<String> {
    if is_skipped(source) {
        return None;
    }
    Some(canonical_prefix(source))
}

/// `model.layers.{i}.` — the canonical prefix of decoder layer `i`.
pub fn layer_prefix(i: usize) -> String {
    format!("model.layers.{i}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_every_known_prefix() {
        let cases = [
            (
                "model.language_model.norm.weight",
                Some("model.norm.weight"),
            ),
            (
                "language_model.model.embed_tokens.weight",
                Some("model.embed_tokens.weight"),
            ),
            ("language_model.lm_head.weight", Some("lm_head.weight")),
            (
                "model.layers.3.self_attn.q_proj.weight",
                Some("model.layers.3.self_attn.q_proj.weight"),
            ),
            ("lm_head.weight", Some("lm_head.weight")),
        ];
        for (src, want) in cases {
            assert_eq!(canonical_name(src).as_deref(), want, "{src}");
        }
    }

    #[test]
    fn skips_mtp_visual_and_inv_freq() {
        for src in [
            "mtp.fc.weight",
            "mtp.layers.0.mlp.experts.gate_up_proj",
            "model.visual.blocks.0.attn.qkv.weight",
            "visual.merger.mlp.0.weight",
            "model.layers.3.self_attn.rotary_emb.inv_freq",
        ] {
            assert!(is_skipped(src), "{src}");
            assert_eq!(canonical_name(src), None, "{src}");
        }
        // A name merely containing "mtp" or "visual" elsewhere is not skipped.
        assert!(!is_skipped("model.layers.0.mlp.gate.weight"));
    }
}
