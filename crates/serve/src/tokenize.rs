//! Prompt tokenization with its work bounded by the model's context: a
//! prompt far beyond the context is refused before the tokenizer sees it
//! whole (tokenizing megabytes holds a thread for seconds and allocates
//! hundreds of MiB of offsets and token strings that the allocator keeps).
//!
//! Two bounds, cheapest first:
//! - no token covers more input bytes than its vocabulary entry's spelling
//!   (a byte-level entry spells one byte per character, a SentencePiece
//!   entry spells `▁` for a space, and an added token spells itself), so a
//!   text of more than `context × longest entry` bytes has more tokens than
//!   the context: refused without tokenizing;
//! - a longer text is tokenized in pieces cut before whitespace (where
//!   pre-tokenizers split anyway), counting, until the count passes the
//!   context: the work stops at about a context's worth of text, and only a
//!   text that fits is tokenized whole (its exact ids).
//!
//! Handlers run this on the blocking pool (`spawn_blocking`), never on the
//! async runtime's threads, which keep answering `/health` and the streams.

use tokenizers::Tokenizer;

/// Texts up to this many bytes are tokenized whole at once: cheap enough,
/// whatever their token count.
const WHOLE_BYTES: usize = 64 << 10;

/// Bytes per piece when counting a long text's tokens.
const PIECE_BYTES: usize = 32 << 10;

/// Why a text was not tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The text has more than the context's tokens: at least `at_least`.
    TooLong { at_least: usize },
    /// The tokenizer failed.
    Tokenizer(String),
}

/// A tokenizer with the bound of its longest vocabulary entry.
pub struct BoundedTokenizer<'t> {
    tokenizer: &'t Tokenizer,
    max_token_bytes: usize,
}

/// The most input bytes one token of `tokenizer` can cover: its longest
/// vocabulary entry (added tokens included), in UTF-8 bytes.
pub fn max_token_bytes(tokenizer: &Tokenizer) -> usize {
    tokenizer
        .get_vocab(true)
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(1)
        .max(1)
}

impl<'t> BoundedTokenizer<'t> {
    pub fn new(tokenizer: &'t Tokenizer, max_token_bytes: usize) -> Self {
        Self {
            tokenizer,
            max_token_bytes: max_token_bytes.max(1),
        }
    }

    fn encode_all(&self, text: &str) -> Result<Vec<u32>, EncodeError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EncodeError::Tokenizer(e.to_string()))
    }

    /// `text`'s ids when it has at most `limit` tokens; else
    /// [`EncodeError::TooLong`], found with bounded work.
    pub fn encode(&self, text: &str, limit: usize) -> Result<Vec<u32>, EncodeError> {
        if text.len() > limit.saturating_mul(self.max_token_bytes) {
            return Err(EncodeError::TooLong {
                at_least: text.len().div_ceil(self.max_token_bytes),
            });
        }
        if text.len() > WHOLE_BYTES {
            // A boundary can merge or split at most a token or so: the
            // pieces' count overshoots the true one by at most the number
            // of pieces, which the threshold allows for.
            let mut counted = 0usize;
            let mut pieces = 0usize;
            for piece in pieces_of(text, PIECE_BYTES) {
                counted += self.encode_all(piece)?.len();
                pieces += 1;
                if counted > limit + pieces {
                    return Err(EncodeError::TooLong {
                        at_least: counted - pieces,
                    });
                }
            }
        }
        let ids = self.encode_all(text)?;
        if ids.len() > limit {
            return Err(EncodeError::TooLong {
                at_least: ids.len(),
            });
        }
        Ok(ids)
    }
}

/// `text` cut into pieces of about `size` bytes, each cut just before a
/// whitespace character (or at a character boundary when a piece has none).
fn pieces_of(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= size {
            return Some(std::mem::take(&mut rest));
        }
        let mut end = size;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let cut = rest[..end]
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(end);
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/dense-bf16-text/tokenizer.json");
        Tokenizer::from_file(path).expect("fixture tokenizer")
    }

    #[test]
    fn pieces_cover_the_text_and_cut_before_whitespace() {
        let text = "alpha beta gamma delta épsilon ".repeat(50);
        let pieces: Vec<&str> = pieces_of(&text, 40).collect();
        assert_eq!(pieces.concat(), text);
        assert!(pieces.len() > 10);
        for p in &pieces[1..] {
            assert!(p.starts_with(' '), "{p:?}");
        }
        let solid = "é".repeat(100);
        assert_eq!(pieces_of(&solid, 7).collect::<String>(), solid);
    }

    #[test]
    fn the_longest_entry_bounds_the_bytes_per_token() {
        let tok = tokenizer();
        // The fixture's longest entry is its added token `<|endoftext|>`.
        assert_eq!(max_token_bytes(&tok), "<|endoftext|>".len());
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
        let ids = tok.encode(text.as_str(), false).expect("encode");
        let n = ids.get_ids().len();
        assert!(text.len() <= n * max_token_bytes(&tok));
    }

    #[test]
    fn texts_beyond_the_limit_are_refused_and_the_rest_encoded_exactly() {
        let tok = tokenizer();
        let b = BoundedTokenizer::new(&tok, max_token_bytes(&tok));
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(4000);
        let exact = tok
            .encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        let n = exact.len();
        assert!(text.len() > WHOLE_BYTES, "the pieces path must run");
        assert_eq!(b.encode(&text, n), Ok(exact.clone()));
        assert_eq!(b.encode(&text, n + 1000), Ok(exact));
        // Refused by counting pieces: the bound is near the true count.
        match b.encode(&text, n / 2) {
            Err(EncodeError::TooLong { at_least }) => {
                assert!(at_least > n / 2 && at_least <= n, "{at_least} of {n}")
            }
            other => panic!("{other:?}"),
        }
        // Refused by bytes alone.
        match b.encode(&text, 10) {
            Err(EncodeError::TooLong { at_least }) => assert!(at_least > 10),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.encode("", 5), Ok(Vec::new()));
    }
}
