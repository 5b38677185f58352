//! What the server reads from the model folder besides the weights: the
//! tokenizer, the chat template, end-of-sequence ids and the context length.
//! All of it is checked before any weight is loaded.

use std::path::Path;

use qwgpu_checkpoint::{ModelConfig, TextConfig};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::chat_template::{ChatTemplate, TemplateError};
use crate::ServeError;

/// Context length when `config.json` does not name one.
const DEFAULT_CONTEXT: usize = 32768;

pub struct ModelFiles {
    pub tokenizer: Tokenizer,
    /// The chat template, or why there is none: the folder has none (chat
    /// requests get 400), or a file of it cannot be read or parsed (chat
    /// requests get 500 with that reason).
    pub template: Result<ChatTemplate, TemplateError>,
    /// `config.json`'s and `generation_config.json`'s `eos_token_id`s.
    pub eos: Vec<u32>,
    /// `max_position_embeddings`: prompt + reply must fit in it.
    pub context: usize,
    pub text: TextConfig,
}

fn files_error(path: &Path, detail: impl Into<String>) -> ServeError {
    ServeError::ModelFiles {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, ServeError> {
    // A dangling link or an unreadable entry is read (and its error
    // reported), not taken for an absent file.
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    // Refused before reading unless a regular file of sane size (a FIFO blocks).
    let text =
        qwgpu_checkpoint::files::read_text_file(path, qwgpu_checkpoint::files::MAX_CONFIG_BYTES)
            .map_err(|e| files_error(path, e.to_string()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| files_error(path, format!("invalid JSON: {e}")))
}

/// `eos_token_id` as a number or a list of numbers, each within the vocabulary.
fn eos_ids(v: &Value, path: &Path, vocab: usize) -> Result<Vec<u32>, ServeError> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    list.into_iter()
        .map(|x| match x.as_u64() {
            Some(n) if (n as usize) < vocab => Ok(n as u32),
            _ => Err(files_error(
                path,
                format!(
                    "eos_token_id: expected token ids below the vocabulary size {vocab}, got {x}"
                ),
            )),
        })
        .collect()
}

impl ModelFiles {
    pub fn open(dir: &Path) -> Result<Self, ServeError> {
        let config_path = dir.join("config.json");
        let config = ModelConfig::from_file(&config_path)?;
        let vocab = config.text.vocab_size;
        let tok_path = dir.join("tokenizer.json");
        // A FIFO or a device would block or never end: only a regular file is read.
        qwgpu_checkpoint::files::regular_file_len(&tok_path)
            .map_err(|e| files_error(&tok_path, e.to_string()))?;
        let tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| files_error(&tok_path, e.to_string()))?;
        let template = ChatTemplate::from_dir(dir);
        if let Err(e) = &template {
            tracing::warn!("{e}: /v1/chat/completions will refuse requests");
        }
        let mut eos = config.eos_token_ids.clone();
        let gen_path = dir.join("generation_config.json");
        if let Some(gen) = read_json(&gen_path)? {
            if let Some(v) = gen.get("eos_token_id") {
                for id in eos_ids(v, &gen_path, vocab)? {
                    if !eos.contains(&id) {
                        eos.push(id);
                    }
                }
            }
        }
        let raw = read_json(&config_path)?.unwrap_or(Value::Null);
        let key = "max_position_embeddings";
        let context = raw
            .get(key)
            .or_else(|| raw.get("text_config").and_then(|t| t.get(key)))
            .and_then(Value::as_u64)
            .map_or(DEFAULT_CONTEXT, |n| n as usize);
        Ok(Self {
            tokenizer,
            template,
            eos,
            context,
            text: config.text,
        })
    }
}
