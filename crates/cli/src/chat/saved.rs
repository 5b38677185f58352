//! `/save FILE` and `/load FILE`: the conversation as JSON, its messages and
//! the token ids the model has seen (the generated ones as generated, not
//! re-tokenized). The engine has no byte export of a session's state, so
//! `/load` re-creates the state by prefilling those ids in one pass: loading
//! costs one prefill of the whole conversation, then turns are incremental again.
//!
//! ```json
//! {"format": "qwgpu-chat", "version": 1,
//!  "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
//!  "tokens": [27, 91, ...]}
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::chat_template::Message;

const FORMAT: &str = "qwgpu-chat";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SavedMessage {
    role: String,
    content: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    messages: Vec<SavedMessage>,
    tokens: Vec<u32>,
}

/// A conversation read back: its messages and token ids.
pub struct Saved {
    pub messages: Vec<Message>,
    pub tokens: Vec<u32>,
}

pub fn save(path: &Path, messages: &[Message], tokens: &[u32]) -> Result<()> {
    let file = File {
        format: FORMAT.into(),
        version: VERSION,
        messages: messages
            .iter()
            // The chat loop writes text turns only.
            .map(|m| SavedMessage {
                role: m.role.clone(),
                content: m.content.as_text().unwrap_or_default().to_owned(),
            })
            .collect(),
        tokens: tokens.to_vec(),
    };
    let json = serde_json::to_string_pretty(&file).context("encoding the conversation")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Reads a saved conversation; every token id must be below `vocab`.
pub fn load(path: &Path, vocab: usize) -> Result<Saved> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let shown = path.display();
    let file: File = serde_json::from_str(&text).with_context(|| {
        format!(
            "{shown}: not a saved qwgpu chat (expected {{\"format\": \"{FORMAT}\", \"version\": {VERSION}, \"messages\": [...], \"tokens\": [...]}})"
        )
    })?;
    if file.format != FORMAT || file.version != VERSION {
        let (format, version) = (&file.format, file.version);
        bail!(
            "{shown}: format {format:?} version {version}, expected {FORMAT:?} version {VERSION}"
        );
    }
    if let Some(&bad) = file.tokens.iter().find(|&&t| t as usize >= vocab) {
        bail!(
            "{shown}: token id {bad} is outside the model's vocabulary of {vocab} (saved with another model?)"
        );
    }
    Ok(Saved {
        messages: file
            .messages
            .into_iter()
            .map(|m| Message::new(&m.role, &m.content))
            .collect(),
        tokens: file.tokens,
    })
}
