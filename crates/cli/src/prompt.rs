//! The small files of a model folder that generation needs besides the
//! weights, each checked before any weight is read: `tokenizer.json`,
//! `generation_config.json`'s end-of-sequence ids and `config.json`'s
//! context length.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokenizers::Tokenizer;

/// Loads `tokenizer.json` from the model folder.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "{}: missing (the tokenizer is needed to turn the prompt into token ids)",
            path.display()
        );
    }
    // A FIFO or a device would block or never end: only a regular file is read.
    qwgpu_checkpoint::files::regular_file_len(&path)?;
    Tokenizer::from_file(&path)
        .map_err(|e| {
            let shown = path.display();
            anyhow::anyhow!("{shown}: {e}")
        })
        .context("loading the tokenizer")
}

/// End-of-sequence ids: `config.json`'s `eos_token_id` (checked by the
/// checkpoint reader, passed in as `config_ids`) plus `generation_config.json`'s
/// (releases list `<|im_end|>` only in the latter). Every id must be below
/// `vocab`: one the model can never produce would silently never stop it.
pub fn eos_token_ids(dir: &Path, config_ids: &[u32], vocab: usize) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = config_ids.to_vec();
    for &id in config_ids {
        check_in_vocab(id, vocab, &dir.join("config.json"))?;
    }
    let path = dir.join("generation_config.json");
    if let Some(json) = read_json(&path)? {
        match json.get("eos_token_id") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for v in a {
                    ids.push(token_id(v, &path, vocab)?);
                }
            }
            Some(v) => ids.push(token_id(v, &path, vocab)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn token_id(v: &Value, path: &Path, vocab: usize) -> Result<u32> {
    let shown = path.display();
    let id = v
        .as_u64()
        .with_context(|| {
            format!("{shown}: eos_token_id: expected a non-negative integer token id, got {v}")
        })
        .and_then(|n| {
            u32::try_from(n).ok().with_context(|| {
                let max = u32::MAX;
                format!("{shown}: eos_token_id {n} does not fit a token id (at most {max})")
            })
        })?;
    check_in_vocab(id, vocab, path)?;
    Ok(id)
}

fn check_in_vocab(id: u32, vocab: usize, path: &Path) -> Result<()> {
    if id as usize >= vocab {
        let shown = path.display();
        bail!("{shown}: eos_token_id {id} is outside the model's vocabulary of {vocab} tokens");
    }
    Ok(())
}

/// `max_position_embeddings` of `config.json` (top level, else `text_config`),
/// or `None` when the config does not say.
pub fn context_length(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("config.json");
    let Some(json) = read_json(&path)? else {
        return Ok(None);
    };
    let key = "max_position_embeddings";
    let v = json
        .get(key)
        .or_else(|| json.get("text_config").and_then(|t| t.get(key)));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().filter(|&n| n > 0) {
            Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            None => {
                let shown = path.display();
                bail!("{shown}: {key}: expected a positive integer, got {v}")
            }
        },
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    // Refused before reading unless a regular file of sane size (a FIFO blocks).
    let text =
        qwgpu_checkpoint::files::read_text_file(path, qwgpu_checkpoint::files::MAX_CONFIG_BYTES)?;
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{}: invalid JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(generation_config: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("generation_config.json"), generation_config).expect("write");
        d
    }

    #[test]
    fn eos_ids_are_checked_not_truncated() {
        let d = folder(r#"{"eos_token_id": [2, 7]}"#);
        assert_eq!(eos_token_ids(d.path(), &[2], 512).expect("ok"), vec![2, 7]);
        for (json, want) in [
            (r#"{"eos_token_id": 4294967298}"#, "does not fit"),
            (
                r#"{"eos_token_id": [2, "x"]}"#,
                "expected a non-negative integer",
            ),
            (
                r#"{"eos_token_id": 1.5}"#,
                "expected a non-negative integer",
            ),
            (r#"{"eos_token_id": -1}"#, "expected a non-negative integer"),
            (
                r#"{"eos_token_id": 512}"#,
                "outside the model's vocabulary of 512",
            ),
            (r#"{"eos_token_id": "#, "invalid JSON"),
        ] {
            let d = folder(json);
            let err = eos_token_ids(d.path(), &[], 512).expect_err(json);
            assert!(format!("{err:#}").contains(want), "{json}: {err:#}");
        }
        let d = folder("{}");
        assert!(eos_token_ids(d.path(), &[600], 512).is_err());
    }
}
