//! Constrained decoding: `response_format` (JSON, JSON schema) and the tool
//! call that `tool_choice: "required"` or a named function forces, through
//! [llguidance](https://github.com/guidance-ai/llguidance) (the Earley-based
//! grammar engine llama.cpp and vLLM use) over the model's vocabulary.
//!
//! - [`request`]: the request fields, read into a [`Spec`];
//! - `grammar`: a [`Spec`] as an llguidance Lark grammar;
//! - `vocab`: the tokenizer's token bytes as llguidance's token trie;
//! - [`hook`]: what the server calls (the engine built on first use, a
//!   request's constraint compiled for its prompt);
//! - [`Grammars`]: built once per model, compiles a request's [`Spec`] into
//!   a [`Constraint`], which gives the allowed-token bitset of each step and
//!   takes each sampled token.
//!
//! The dependency lives in this crate alone (the server's): llguidance
//! turns on `serde_json`'s `preserve_order` feature, so maps keep their
//! insertion order wherever this crate is built.

mod grammar;
pub mod hook;
mod matcher;
pub mod request;
mod vocab;

#[cfg(test)]
mod tests;

use llguidance::api::TopLevelGrammar;
use llguidance::ParserFactory;
use tokenizers::Tokenizer;

pub use matcher::{allows, Constraint, TokenMask};
pub use request::{Spec, Tool};

/// Why a constraint could not be built or followed.
#[derive(Debug, thiserror::Error)]
pub enum ConstrainError {
    /// The tokenizer cannot be read as bytes per token.
    #[error("constrained decoding: the vocabulary cannot be used: {detail}")]
    Vocabulary { detail: String },
    /// llguidance refused the grammar of the request field `param`.
    #[error("`{param}`: {detail}")]
    Grammar { param: &'static str, detail: String },
    /// The grammar engine failed mid-reply (or was given a token its mask
    /// did not allow).
    #[error("constrained decoding failed: {detail}")]
    Matcher { detail: String },
}

/// The grammar engine over one model's vocabulary (token trie and mask
/// slices built once; compiling a request's grammar reuses them).
pub struct Grammars {
    factory: ParserFactory,
    vocab_size: usize,
}

impl Grammars {
    /// The engine for a model whose LM head has `vocab_size` rows, tokenized
    /// by `tokenizer`, ending replies with any of `eos`.
    pub fn new(
        tokenizer: &Tokenizer,
        vocab_size: usize,
        eos: &[u32],
    ) -> Result<Self, ConstrainError> {
        let env = vocab::tok_env(tokenizer, vocab_size, eos)?;
        Self::from_env(env)
    }

    fn from_env(env: toktrie::TokEnv) -> Result<Self, ConstrainError> {
        let vocab_size = env.tok_trie().vocab_size();
        let mut factory = ParserFactory::new(
            &env,
            toktrie::InferenceCapabilities::default(),
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| ConstrainError::Vocabulary {
            detail: e.to_string(),
        })?;
        // Errors come back as values; llguidance's own stderr logging stays off.
        factory.quiet();
        Ok(Self {
            factory,
            vocab_size,
        })
    }

    /// Ids the mask covers (the model's vocabulary).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The constraint of `spec` for one reply. `thinking`: the prompt ends
    /// inside an open `<think>` (see [`thinking_open`]), so the reply runs
    /// free up to `</think>` first. A grammar llguidance refuses (a schema
    /// it cannot compile) is [`ConstrainError::Grammar`] naming the field.
    pub fn compile(&self, spec: &Spec, thinking: bool) -> Result<Constraint, ConstrainError> {
        let text = grammar::lark(spec, thinking);
        tracing::debug!(grammar = %text, "constrained decoding");
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(text))
            .map_err(|e| ConstrainError::Grammar {
                param: spec.param(),
                detail: e.to_string(),
            })?;
        Constraint::new(parser, self.vocab_size)
    }
}

/// Whether a prompt's text leaves a `<think>` block open (Qwen3.5's
/// template opens one in the generation prompt when thinking is on): the
/// last `<think>` comes after the last `</think>`.
pub fn thinking_open(prompt: &str) -> bool {
    match (prompt.rfind("<think>"), prompt.rfind("</think>")) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}
