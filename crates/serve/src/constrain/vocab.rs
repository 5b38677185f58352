//! The model's vocabulary as llguidance sees it: every token id's bytes in a
//! [`TokTrie`], plus a tokenizer for the few strings llguidance tokenizes
//! itself.
//!
//! Built from the `tokenizers` object the server already holds rather than
//! through `toktrie_hf_tokenizers`, which pins another major version of
//! `tokenizers`. The byte mapping is the standard one of byte-level BPE (GPT-2
//! / Qwen: each byte is a printable char) and of SentencePiece byte fallback
//! (`<0xNN>` pieces, `▁` for a space).

use std::collections::HashMap;
use std::sync::Arc;

use tokenizers::{DecoderWrapper, Tokenizer};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use super::ConstrainError;

/// How a tokenizer's token strings map to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// GPT-2 style: every byte is one printable char.
    ByteLevel,
    /// SentencePiece: text pieces with `space` for a space, `<0xNN>` bytes.
    ByteFallback { space: char },
}

fn encoding(d: Option<&DecoderWrapper>) -> Option<Encoding> {
    fn walk(d: &DecoderWrapper, byte_level: &mut bool, fallback: &mut bool) {
        match d {
            DecoderWrapper::ByteLevel(_) => *byte_level = true,
            DecoderWrapper::ByteFallback(_) => *fallback = true,
            DecoderWrapper::Sequence(s) => {
                for d in s.get_decoders() {
                    walk(d, byte_level, fallback);
                }
            }
            _ => {}
        }
    }
    let (mut byte_level, mut fallback) = (false, false);
    walk(d?, &mut byte_level, &mut fallback);
    if byte_level {
        Some(Encoding::ByteLevel)
    } else if fallback {
        Some(Encoding::ByteFallback { space: '▁' })
    } else {
        None
    }
}

/// GPT-2's byte ↔ char table: printable Latin-1 bytes stand for themselves,
/// the others for U+0100 onwards in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        if printable(b) {
            map.insert(b as char, b);
        } else {
            map.insert(char::from_u32(next).unwrap_or('\0'), b);
            next += 1;
        }
    }
    map
}

/// A token that is never text: llguidance allows it only where a grammar
/// names it (`<|im_end|>`) or, for end-of-sequence ids, where the grammar may end.
fn special(name: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

/// The bytes of every id below `vocab_size` (the model's LM-head rows, which
/// may be more than the tokenizer's tokens: the rest are placeholders no
/// grammar allows).
///
/// Added tokens marked special (`<|im_end|>`) are special tokens; added tokens
/// that are not (Qwen's `<think>`, `</think>`, `<tool_call>`) are their text,
/// so a grammar's `"<tool_call>"` allows the one token the model was trained
/// to write as well as its spelling in pieces.
pub(crate) fn token_bytes(
    tokenizer: &Tokenizer,
    vocab_size: usize,
) -> Result<Vec<Vec<u8>>, ConstrainError> {
    let enc = encoding(tokenizer.get_decoder()).ok_or_else(|| ConstrainError::Vocabulary {
        detail: "the tokenizer's decoder is neither byte-level nor byte-fallback".into(),
    })?;
    let added = tokenizer.get_added_tokens_decoder();
    let chars = byte_level_chars();
    let mut out = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size as u32 {
        let bytes = match (added.get(&id), tokenizer.id_to_token(id)) {
            (Some(a), _) if a.special => special(&a.content),
            (Some(a), _) => a.content.as_bytes().to_vec(),
            (None, Some(piece)) => match enc {
                Encoding::ByteLevel => piece
                    .chars()
                    .map(|c| chars.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| ConstrainError::Vocabulary {
                        detail: format!(
                            "token {id} ({piece:?}) has a char outside the byte-level alphabet"
                        ),
                    })?,
                Encoding::ByteFallback { space } => {
                    match piece
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .filter(|h| h.len() == 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(b) => vec![b],
                        None => piece.replace(space, " ").into_bytes(),
                    }
                }
            },
            (None, None) => special(&format!("<[{id}]>")),
        };
        out.push(bytes);
    }
    Ok(out)
}

/// The trie plus the tokenizer (for strings llguidance tokenizes itself).
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        })
    }
}

/// llguidance's view of the vocabulary: `vocab_size` ids (the model's), with
/// `eos` the ids that end a reply (allowed where the grammar may end).
pub(crate) fn tok_env(
    tokenizer: &Tokenizer,
    vocab_size: usize,
    eos: &[u32],
) -> Result<TokEnv, ConstrainError> {
    let first = *eos.first().ok_or_else(|| ConstrainError::Vocabulary {
        detail: "the model names no end-of-sequence token".into(),
    })?;
    if let Some(bad) = eos.iter().find(|&&e| e as usize >= vocab_size) {
        return Err(ConstrainError::Vocabulary {
            detail: format!("end-of-sequence id {bad} is outside the vocabulary of {vocab_size}"),
        });
    }
    let words = token_bytes(tokenizer, vocab_size)?;
    let info = TokRxInfo::new(vocab_size as u32, first);
    let mut trie = TokTrie::from(&info, &words);
    if eos.len() > 1 {
        trie = trie.with_eos_tokens(eos);
    }
    Ok(Arc::new(Env {
        trie,
        tokenizer: tokenizer.clone(),
    }))
}
