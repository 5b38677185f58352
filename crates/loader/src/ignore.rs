//! Matching module names against `modules_to_not_convert`, compressed-tensors
//! `ignore` / `targets` (names and `re:` regexes) and ModelOpt `exclude_modules`
//! (`*` wildcards).
//!
//! Plain names are canonicalised like checkpoint names and matched on dot
//! boundaries: `mlp.gate` matches `model.layers.0.mlp.gate` but not
//! `model.layers.0.mlp.gate_proj` (transformers #48349 matched substrings and
//! silently quantized the wrong modules). Regexes and wildcards were written
//! against the file's own names, so they are tried against every spelling of
//! the module (canonical, `model.language_model.`, `language_model.model.`).

use regex::Regex;

use crate::LoadError;

/// Bound on config-derived list lengths.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Clone)]
enum Entry {
    /// Canonical name split on dots.
    Name(Vec<String>),
    /// `re:` regex (anchored at the start, like Python's `re.match`) or a wildcard.
    Pattern(Regex),
}

/// A list of module-name patterns.
#[derive(Debug, Clone, Default)]
pub struct ModuleList {
    entries: Vec<(Entry, String)>,
}

/// Rewrites a wrapper or MLX prefix to the canonical `model.` prefix.
pub fn canonical_name(name: &str) -> String {
    qwgpu_checkpoint::canonical_prefix(name)
}

/// The spellings a canonical module name may have had in the file.
pub(crate) fn spellings(module: &str) -> Vec<String> {
    let mut out = vec![module.to_string()];
    if let Some(rest) = module.strip_prefix("model.") {
        out.push(format!("model.language_model.{rest}"));
        out.push(format!("language_model.model.{rest}"));
    }
    out
}

impl ModuleList {
    /// Parses names, `re:` regexes and (if `wildcards`) `*` globs.
    pub fn parse(entries: &[String], wildcards: bool, what: &str) -> Result<Self, LoadError> {
        if entries.len() > MAX_ENTRIES {
            return Err(LoadError::Quantization {
                detail: format!(
                    "{what}: {entries_len} entries exceed the bound {MAX_ENTRIES}",
                    entries_len = entries.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let entry = if let Some(re) = raw.strip_prefix("re:") {
                Entry::Pattern(compile(&format!("^(?:{re})"), raw, what)?)
            } else if wildcards && raw.contains('*') {
                let glob = raw
                    .split('*')
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(".*");
                Entry::Pattern(compile(&format!("^(?:{glob})$"), raw, what)?)
            } else {
                let canon = canonical_name(raw.strip_suffix(".weight").unwrap_or(raw));
                Entry::Name(canon.split('.').map(str::to_string).collect())
            };
            out.push((entry, raw.clone()));
        }
        Ok(ModuleList { entries: out })
    }

    /// The first entry (as written in the config) matching `module` (canonical).
    pub fn find(&self, module: &str) -> Option<&str> {
        let parts: Vec<&str> = module.split('.').collect();
        let forms = spellings(module);
        self.entries.iter().find_map(|(entry, raw)| {
            let hit = match entry {
                Entry::Name(want) => contains_components(&parts, want),
                Entry::Pattern(re) => forms.iter().any(|f| re.is_match(f)),
            };
            hit.then_some(raw.as_str())
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn compile(pattern: &str, raw: &str, what: &str) -> Result<Regex, LoadError> {
    Regex::new(pattern).map_err(|e| LoadError::Quantization {
        detail: format!("{what}: entry `{raw}` is not a valid pattern: {e}"),
    })
}

/// True when `want` occurs in `parts` as whole consecutive components.
fn contains_components(parts: &[&str], want: &[String]) -> bool {
    if want.is_empty() || want.len() > parts.len() {
        return false;
    }
    parts
        .windows(want.len())
        .any(|w| w.iter().zip(want).all(|(a, b)| *a == b.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], wildcards: bool) -> ModuleList {
        let v: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        ModuleList::parse(&v, wildcards, "test").expect("valid list")
    }

    #[test]
    fn dot_boundaries() {
        let l = list(&["mlp.gate"], false);
        assert!(l.find("model.layers.0.mlp.gate").is_some());
        assert!(l.find("model.layers.0.mlp.gate_proj").is_none());
        assert!(l.find("model.layers.0.mlp.shared_expert_gate").is_none());
    }

    #[test]
    fn prefixes_are_canonicalised() {
        let l = list(
            &["model.language_model.layers.0.linear_attn.in_proj_a"],
            false,
        );
        assert!(l.find("model.layers.0.linear_attn.in_proj_a").is_some());
        assert!(l.find("model.layers.10.linear_attn.in_proj_a").is_none());
        assert!(l.find("model.layers.0.linear_attn.in_proj_a_x").is_none());
        let mlx = list(&["language_model.model.layers.1.mlp.gate"], false);
        assert!(mlx.find("model.layers.1.mlp.gate").is_some());
        assert_eq!(list(&["lm_head"], false).find("lm_head"), Some("lm_head"));
    }

    #[test]
    fn regexes_match_any_spelling() {
        let l = list(
            &[
                "re:.*mlp\\.gate$",
                "re:model\\.language_model\\.layers\\.3\\..*",
            ],
            false,
        );
        assert!(l.find("model.layers.0.mlp.gate").is_some());
        assert!(l.find("model.layers.0.mlp.gate_proj").is_none());
        assert!(l.find("model.layers.3.self_attn.q_proj").is_some());
        assert!(l.find("model.layers.4.self_attn.q_proj").is_none());
    }

    #[test]
    fn wildcards_only_when_enabled() {
        let l = list(&["*mlp.gate", "*lm_head*"], true);
        assert!(l.find("model.layers.2.mlp.gate").is_some());
        assert!(l.find("model.layers.2.mlp.gate_proj").is_none());
        assert!(l.find("lm_head").is_some());
        assert!(list(&["*mlp.gate"], false)
            .find("model.layers.2.mlp.gate")
            .is_none());
    }

    #[test]
    fn bad_regex_is_an_error() {
        let v = vec!["re:(".to_string()];
        let err = ModuleList::parse(&v, false, "ignore").expect_err("bad regex");
        assert!(err.to_string().contains("re:("), "{err}");
    }
}
