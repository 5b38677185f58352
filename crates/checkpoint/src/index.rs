//! `model.safetensors.index.json`: which shard file holds each tensor. Parsing
//! works on text only; shard names must be plain file names inside the folder.

use std::path::Path;

use serde_json::Value;

use crate::header::{first_duplicate, Entries};
use crate::json_fields::short;
use crate::CheckpointError;

/// Bound on the number of tensors an index may name.
pub(crate) const MAX_INDEX_ENTRIES: usize = 10_000_000;
/// Bound on the number of distinct shard files.
pub(crate) const MAX_SHARDS: usize = 100_000;

/// A parsed shard index.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardIndex {
    /// Shard file names, sorted (HF numbering `model-0000i-of-0000n` makes this file order).
    pub shards: Vec<String>,
    /// `(tensor name, position in shards)` in file order.
    pub weight_map: Vec<(String, usize)>,
}

fn ierr(path: &Path, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::Index {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Why `name` is not an acceptable shard file name, if it is not.
pub(crate) fn shard_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty file name")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator (shards must be plain file names in the model folder)")
    } else if name == ".." || name == "." || name.contains("..") {
        Some("contains `..` (path traversal)")
    } else if name.contains('\0') || name.contains(':') {
        Some("contains a NUL or `:` character")
    } else if Path::new(name).is_absolute() {
        Some("is an absolute path")
    } else {
        None
    }
}

/// The index document; unknown fields (`metadata`) are ignored, a repeated
/// `weight_map` key is an error, repeated tensor names are kept to be reported.
#[derive(serde::Deserialize)]
struct RawIndex {
    weight_map: Entries,
}

/// Parses an index document. `path` is only used in error messages.
pub fn parse_index(text: &str, path: &Path) -> Result<ShardIndex, CheckpointError> {
    if text.starts_with('\u{feff}') {
        return Err(ierr(
            path,
            "malformed JSON: starts with a UTF-8 byte-order mark (BOM)",
        ));
    }
    let raw: RawIndex = serde_json::from_str(text).map_err(|e| {
        ierr(
            path,
            format!(
                "malformed JSON at line {e_line}, column {e_column}: {e}",
                e_line = e.line(),
                e_column = e.column()
            ),
        )
    })?;
    let entries = raw.weight_map.0;
    if let Some(d) = first_duplicate(&entries) {
        return Err(ierr(
            path,
            format!("tensor `{d}` is listed twice in `weight_map`"),
        ));
    }
    if entries.len() > MAX_INDEX_ENTRIES {
        return Err(ierr(
            path,
            format!(
                "{entries_len} entries exceed the bound {MAX_INDEX_ENTRIES}",
                entries_len = entries.len()
            ),
        ));
    }
    let mut shards: Vec<String> = Vec::new();
    let mut shard_pos = std::collections::HashMap::new();
    let mut weight_map = Vec::with_capacity(entries.len());
    for (tensor, v) in entries {
        let Value::String(file) = v else {
            return Err(CheckpointError::IndexMismatch {
                index: path.to_path_buf(),
                tensor,
                detail: format!("shard must be a file name string, got {}", short(&v)),
            });
        };
        if let Some(problem) = shard_name_problem(&file) {
            return Err(CheckpointError::ShardPath {
                index: path.to_path_buf(),
                shard: file,
                detail: problem.to_string(),
            });
        }
        let pos = match shard_pos.get(&file) {
            Some(&p) => p,
            None => {
                if shards.len() >= MAX_SHARDS {
                    return Err(ierr(path, format!("more than {MAX_SHARDS} shard files")));
                }
                shards.push(file.clone());
                shard_pos.insert(file, shards.len() - 1);
                shards.len() - 1
            }
        };
        weight_map.push((tensor, pos));
    }
    // Sort shard names and renumber the map to match.
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.sort_by(|&a, &b| shards.get(a).cmp(&shards.get(b)));
    let mut new_pos = vec![0usize; shards.len()];
    for (new, &old) in order.iter().enumerate() {
        if let Some(slot) = new_pos.get_mut(old) {
            *slot = new;
        }
    }
    let shards: Vec<String> = order
        .iter()
        .filter_map(|&i| shards.get(i).cloned())
        .collect();
    let weight_map = weight_map
        .into_iter()
        .map(|(t, p)| (t, new_pos.get(p).copied().unwrap_or(p)))
        .collect();
    Ok(ShardIndex { shards, weight_map })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts_shards() {
        let text = r#"{"metadata":{"total_size":10},"weight_map":{"x":"b.safetensors","y":"a.safetensors","z":"b.safetensors"}}"#;
        let idx = parse_index(text, Path::new("i.json")).expect("valid");
        assert_eq!(idx.shards, ["a.safetensors", "b.safetensors"]);
        assert_eq!(
            idx.weight_map,
            vec![
                ("x".to_string(), 1),
                ("y".to_string(), 0),
                ("z".to_string(), 1)
            ]
        );
    }

    #[test]
    fn rejects_bad_names_and_structure() {
        let cases = [
            (
                r#"{"weight_map":{"x":"../a.safetensors"}}"#,
                "../a.safetensors",
            ),
            (r#"{"weight_map":{"x":"a\\b"}}"#, "separator"),
            (r#"{"weight_map":{"x":""}}"#, "empty"),
            (r#"{"weight_map":{"x":"C:evil"}}"#, "C:evil"),
            (r#"{"weight_map":{"x":3}}"#, "`x`"),
            (r#"{"weight_map":[]}"#, "malformed"),
            (r#"{"weight_map":{"x":"a","x":"a"}}"#, "`x` is listed twice"),
            (r#"{"weight_map":{},"weight_map":{}}"#, "weight_map"),
        ];
        for (text, want) in cases {
            let e = parse_index(text, Path::new("i.json")).expect_err(text);
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }
}
