//! Tokenizer and chat template of a model folder.

use std::path::Path;

use anyhow::{Context, Result};
use tokenizers::Tokenizer;

/// Loads `tokenizer.json` from the model folder.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        .context("loading the tokenizer")
}

/// Renders the folder's chat template (from `tokenizer_config.json` or
/// `chat_template.jinja`) for one user message, ready for the assistant's answer.
pub fn apply_chat_template(dir: &Path, user: &str) -> Result<String> {
    let template = read_chat_template(dir)?;
    let mut env = minijinja::Environment::new();
    env.add_template("chat", &template)
        .context("parsing the chat template")?;
    let messages = vec![minijinja::context! { role => "user", content => user }];
    env.get_template("chat")?
        .render(minijinja::context! { messages => messages, add_generation_prompt => true })
        .context("rendering the chat template")
}

fn read_chat_template(dir: &Path) -> Result<String> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja).with_context(|| jinja.display().to_string());
    }
    let path = dir.join("tokenizer_config.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    json.get("chat_template")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{}: no chat_template", path.display()))
}

/// End-of-sequence ids: `config.json`'s `eos_token_id` plus `generation_config.json`'s
/// (releases list `<|im_end|>` only in the latter).
pub fn eos_token_ids(dir: &Path) -> Result<Vec<u32>> {
    let config = qwgpu_checkpoint::ModelConfig::from_file(&dir.join("config.json"))?;
    let mut ids = config.eos_token_ids;
    let gen = dir.join("generation_config.json");
    if let Ok(text) = std::fs::read_to_string(&gen) {
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| gen.display().to_string())?;
        match json.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => ids.extend(n.as_u64().map(|v| v as u32)),
            Some(serde_json::Value::Array(a)) => {
                ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32))
            }
            _ => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
