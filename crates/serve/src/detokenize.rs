//! Streaming detokenization in constant work per token, after the "prefix
//! offset / read offset" method of HF text-generation-inference and vLLM:
//! each step decodes only a short window of ids (a few already sent, as
//! context, then the newer ones) and sends what the new ids added. The
//! context gives the tokenizer what it needs (a word-start space, a
//! byte-level character split over tokens).
//!
//! A decoder may rewrite text it already produced when more ids follow: a
//! byte-level tokenizer decodes an incomplete UTF-8 sequence as U+FFFD and
//! the character once its last byte arrives. So a trailing U+FFFD is never
//! sent before the reply ends (the text before it is), and the window
//! remembers how many bytes of its text were sent, not which tokens: what is
//! sent is a prefix of the final text, and `finish` sends the rest, so the
//! pieces add up to decoding every id at once.

use tokenizers::Tokenizer;

/// The tokenizer failed to decode ids (an id outside its vocabulary).
#[derive(Debug, thiserror::Error)]
#[error("detokenizing: {0}")]
pub struct DetokenizeError(String);

type Result<T> = std::result::Result<T, DetokenizeError>;

/// Tokens kept before the unsent ones, as context.
const CONTEXT: usize = 5;
/// Tokens the window holds at most before it sends everything (held-back
/// U+FFFD included): a model emitting broken bytes for ever cannot make the
/// window, hence the work per token, grow.
const MAX_WINDOW: usize = 4 * (CONTEXT + 8);

const REPLACEMENT: char = '\u{FFFD}';

/// Special tokens (`<|im_start|>`, `<|endoftext|>`, ...) are left out of the
/// text, as HF's `skip_special_tokens` and vLLM do: they are markup for the
/// template, not reply text. Added tokens that are not special (Qwen's
/// `<think>`, `<tool_call>`) stay, for the reasoning and tool-call parsers.
const SKIP_SPECIAL: bool = true;

pub struct Detokenizer<'t> {
    tokenizer: &'t Tokenizer,
    /// The window: context tokens, then tokens whose text is not all sent.
    ids: Vec<u32>,
    /// The decoding of `ids` as of the last step.
    text: String,
    /// Bytes of `text` that are context or already sent.
    sent: usize,
}

impl<'t> Detokenizer<'t> {
    /// Starts after `prompt` (only its last few ids are kept, as context).
    pub fn new(tokenizer: &'t Tokenizer, prompt: &[u32]) -> Self {
        let ids = prompt[prompt.len().saturating_sub(CONTEXT)..].to_vec();
        // Undecodable context fails again, with its error, on the first push.
        let text = tokenizer.decode(&ids, SKIP_SPECIAL).unwrap_or_default();
        let sent = text.len();
        Self {
            tokenizer,
            ids,
            text,
            sent,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, SKIP_SPECIAL)
            .map_err(|e| DetokenizeError(e.to_string()))
    }

    /// Adds one token; returns the text it completes (often empty while a
    /// multi-byte character is still split).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let all = self.decode(&self.ids)?;
        let forced = self.ids.len() >= MAX_WINDOW;
        // Hold a trailing U+FFFD: the next id may complete its character.
        let end = match all.strip_suffix(REPLACEMENT) {
            Some(head) if !forced => head.len(),
            _ => all.len(),
        };
        let new = self.advance(all, end);
        self.trim()?;
        Ok(new)
    }

    /// Sends `all[sent..end]` (`all`: the window's new decoding).
    fn advance(&mut self, all: String, end: usize) -> String {
        let sent = &self.text[..self.sent];
        let from = if all.starts_with(sent) {
            self.sent
        } else {
            // The decoder rewrote text that was sent (or the context's): it
            // cannot be taken back; go on from the first byte that differs.
            let common = common_prefix(&all, sent);
            tracing::debug!(
                "detokenizing: the tokenizer rewrote {} bytes of text already sent",
                sent.len() - common
            );
            common
        };
        let new = all.get(from..end.max(from)).unwrap_or_default().to_owned();
        self.sent = end.max(from);
        self.text = all;
        new
    }

    /// Drops context tokens beyond `CONTEXT` whose text is all sent, where
    /// the window's text splits cleanly (decoding the rest alone gives the
    /// same text); if the window is full anyway, everything is sent and only
    /// the context stays.
    fn trim(&mut self) -> Result<()> {
        if self.ids.len() <= 2 * CONTEXT {
            return Ok(());
        }
        for drop in (1..=self.ids.len() - CONTEXT).rev() {
            let rest = self.decode(&self.ids[drop..])?;
            let cut = self.text.len().saturating_sub(rest.len());
            if cut <= self.sent && self.text.ends_with(rest.as_str()) {
                self.ids.drain(..drop);
                self.sent -= cut;
                self.text = rest;
                return Ok(());
            }
        }
        if self.ids.len() >= MAX_WINDOW {
            self.ids.drain(..self.ids.len() - CONTEXT);
            self.text = self.decode(&self.ids)?;
            self.sent = self.text.len();
        }
        Ok(())
    }

    /// What is left unsent at the end (an incomplete character decodes as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let all = self.decode(&self.ids)?;
        let end = all.len();
        Ok(self.advance(all, end))
    }
}

/// Bytes `a` and `b` share at the start, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, x), _)| i + x.len_utf8())
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
        assert_eq!(out, tok.decode(ids, true).expect("decode"));
        assert!(d.ids.len() <= 2 * CONTEXT, "the window stays short");
    }

    #[test]
    fn special_tokens_are_left_out_of_the_text() {
        let tok = tokenizer();
        let special = |t: &str| tok.token_to_id(t).expect("special token");
        let hi = tok.encode("Hi there", false).expect("encode");
        let mut ids = vec![special("<|im_start|>")];
        ids.extend_from_slice(hi.get_ids());
        ids.push(special("<|im_end|>"));
        ids.push(special("<|endoftext|>"));
        assert_eq!(streamed(&tok, &[], &ids), "Hi there");
    }

    /// The id of the byte-level token of each byte (GPT-2's byte-to-unicode
    /// map: printable bytes stand for themselves, the others for U+0100 on).
    fn byte_ids(tok: &Tokenizer) -> Vec<u32> {
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let mut extra = 0;
        (0..256u32)
            .map(|b| {
                let c = if printable(b) {
                    char::from_u32(b)
                } else {
                    extra += 1;
                    char::from_u32(255 + extra)
                };
                let c = c.expect("char").to_string();
                tok.token_to_id(&c)
                    .unwrap_or_else(|| panic!("no token for byte {b}"))
            })
            .collect()
    }

    /// Streams `ids` after `prompt`; the pieces and the finish, joined.
    fn streamed(tok: &Tokenizer, prompt: &[u32], ids: &[u32]) -> String {
        let mut d = Detokenizer::new(tok, prompt);
        let mut out = String::new();
        for &id in ids {
            out.push_str(&d.push(id).expect("push"));
        }
        out.push_str(&d.finish().expect("finish"));
        out
    }

    #[test]
    fn a_replacement_char_the_decoder_rewrites_is_not_lost() {
        // Byte-level decoding rewrites earlier text: eight lone 0xE2 bytes
        // decode as eight U+FFFD, and 0x82 0xAC after them turn the last one
        // into "€". The old detokenizer sent the eight U+FFFD (its window was
        // full) and then dropped the "€" at the end.
        let tok = tokenizer();
        let bytes = byte_ids(&tok);
        let prompt = tok.encode("Hello there", false).expect("encode");
        let mut ids = vec![bytes[0xE2]; 8];
        ids.extend([bytes[0x82], bytes[0xAC]]);
        let want = tok.decode(&ids, true).expect("decode");
        assert_eq!(want, format!("{}€", "\u{FFFD}".repeat(7)));
        assert_eq!(streamed(&tok, prompt.get_ids(), &ids), want);
    }

    #[test]
    fn pieces_and_finish_add_up_to_decoding_every_id_at_once() {
        // Random replies mixing whole tokens with the bytes of split
        // characters (which the decoder rewrites from U+FFFD to a character),
        // lone continuation bytes and truncated characters, fixed seed.
        let tok = tokenizer();
        let bytes = byte_ids(&tok);
        let vocab = tok.get_vocab_size(true) as u64;
        let prompt = tok.encode("Hello there", false).expect("encode");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let chars = ["€", "世", "🦀", "é", "∑", "a", " "];
        for case in 0..300 {
            let len = 1 + next(40) as usize;
            let mut ids = Vec::new();
            while ids.len() < len {
                match next(5) {
                    0 => ids.push(next(vocab) as u32),
                    1 => ids.push(bytes[0x80 + next(64) as usize]),
                    2 => ids.push(bytes[0xC0 + next(64) as usize]),
                    _ => {
                        let c = chars[next(chars.len() as u64) as usize];
                        let mut b: Vec<u32> = c.bytes().map(|b| bytes[b as usize]).collect();
                        // Sometimes truncated: a character never completed.
                        if next(4) == 0 {
                            b.truncate(b.len().saturating_sub(1).max(1));
                        }
                        ids.extend(b);
                    }
                }
            }
            let want = tok.decode(&ids, true).expect("decode");
            assert_eq!(
                streamed(&tok, prompt.get_ids(), &ids),
                want,
                "case {case}: {ids:?}"
            );
        }
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
        assert!(longest <= MAX_WINDOW, "window grew to {longest} tokens");
        // Lone lead bytes for ever: never a clean split, still bounded.
        let bytes = byte_ids(&tok);
        let mut d = Detokenizer::new(&tok, &[]);
        let mut longest = 0;
        for _ in 0..500 {
            d.push(bytes[0xF0]).expect("push");
            longest = longest.max(d.ids.len());
        }
        assert!(longest <= MAX_WINDOW, "window grew to {longest} tokens");
    }
}
