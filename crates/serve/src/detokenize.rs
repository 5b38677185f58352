//! Streaming detokenization in constant work per token: the "prefix offset /
//! read offset" method of HF text-generation-inference and vLLM. Each step
//! decodes only a short window (the few tokens already printed before the
//! unprinted ones, then the unprinted ones), and prints what the new tokens
//! added. Decoding the window's printed prefix too gives the tokenizer the
//! context it needs (a word-start space, a byte-level character split over
//! tokens); text ending in U+FFFD (an incomplete UTF-8 sequence) is held back
//! until the token that completes it arrives.

use tokenizers::Tokenizer;

/// The tokenizer failed to decode ids (an id outside its vocabulary).
#[derive(Debug, thiserror::Error)]
#[error("detokenizing: {0}")]
pub struct DetokenizeError(String);

type Result<T> = std::result::Result<T, DetokenizeError>;

/// Prompt tokens given as context before the first generated one.
const CONTEXT: usize = 5;
/// Tokens held back at most for an incomplete character (UTF-8 needs at most
/// four bytes); past that the bytes are broken and printed as U+FFFD, so the
/// window stays short whatever the model emits.
const MAX_HELD: usize = 8;

pub struct Detokenizer<'t> {
    tokenizer: &'t Tokenizer,
    /// The window: printed context tokens, then not-yet-printed ones.
    ids: Vec<u32>,
    /// Start of the unprinted tokens in `ids`.
    read: usize,
}

impl<'t> Detokenizer<'t> {
    /// Starts after `prompt` (only its last few ids are kept, as context).
    pub fn new(tokenizer: &'t Tokenizer, prompt: &[u32]) -> Self {
        let ids = prompt[prompt.len().saturating_sub(CONTEXT)..].to_vec();
        let read = ids.len();
        Self {
            tokenizer,
            ids,
            read,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| DetokenizeError(e.to_string()))
    }

    /// Adds one token; returns the text it completes (often empty while a
    /// multi-byte character is still split).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let printed = self.decode(&self.ids[..self.read])?;
        let all = self.decode(&self.ids)?;
        let held = self.ids.len() - self.read;
        if held < MAX_HELD && (all.len() <= printed.len() || all.ends_with('\u{FFFD}')) {
            return Ok(String::new());
        }
        let new = match all.strip_prefix(printed.as_str()) {
            Some(tail) => tail.to_owned(),
            // A decoder that rewrites earlier text given more context: print
            // from the first byte that differs (on a character boundary).
            None => {
                let common = all
                    .char_indices()
                    .zip(printed.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map_or(0, |((i, a), _)| i + a.len_utf8());
                all[common..].to_owned()
            }
        };
        // Keep the newly printed tokens as the next window's context.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(new)
    }

    /// What is left unprinted at the end (an incomplete character decodes as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let printed = self.decode(&self.ids[..self.read])?;
        let all = self.decode(&self.ids)?;
        self.read = self.ids.len();
        Ok(all
            .strip_prefix(printed.as_str())
            .map(str::to_owned)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dense-bf16-text/tokenizer.json"
        );
        Tokenizer::from_file(path).expect("fixture tokenizer")
    }

    #[test]
    fn streamed_text_equals_decoding_everything_at_once() {
        let tok = tokenizer();
        let text = "Grüße, 世界! 🦀🦀 naïve ∑x² — ok";
        let prompt = tok.encode("Hello there", false).expect("encode");
        let ids = tok.encode(text, false).expect("encode");
        let ids = ids.get_ids();
        let mut d = Detokenizer::new(&tok, prompt.get_ids());
        let mut out = String::new();
        for &id in ids {
            let piece = d.push(id).expect("push");
            assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
            out.push_str(&piece);
        }
        out.push_str(&d.finish().expect("finish"));
        assert_eq!(out, tok.decode(ids, false).expect("decode"));
        assert!(d.ids.len() <= ids.len(), "the window stays short");
    }

    #[test]
    fn the_window_stays_short_whatever_the_ids() {
        // Random ids (as a random-weight model emits): broken UTF-8, specials.
        let tok = tokenizer();
        let vocab = tok.get_vocab_size(true) as u64;
        let mut x = 12345u64;
        let mut d = Detokenizer::new(&tok, &[]);
        let mut longest = 0;
        for _ in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            d.push(((x >> 33) % vocab) as u32).expect("push");
            longest = longest.max(d.ids.len());
        }
        assert!(longest <= 2 * MAX_HELD, "window grew to {longest} tokens");
    }
}
