//! One reply's constraint: the allowed-token bitset of each step and the
//! grammar's state, advanced by each sampled token.

use llguidance::{Matcher, TokenParser};

use super::ConstrainError;

/// Allowed token ids as a bitset: id `t` is bit `t % 32` of word `t / 32`
/// (`ceil(vocab / 32)` words; ~31 KB for a 248k vocabulary).
pub type TokenMask = Vec<u32>;

/// The grammar state of one reply.
pub struct Constraint {
    matcher: Matcher,
    vocab_size: usize,
    words: usize,
    /// Why the last mask could not be computed (the step ran unconstrained;
    /// the next [`Constraint::commit`] reports it and the reply ends).
    failed: Option<String>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

fn matcher_error(detail: impl std::fmt::Display) -> ConstrainError {
    ConstrainError::Matcher {
        detail: detail.to_string(),
    }
}

impl Constraint {
    pub(crate) fn new(parser: TokenParser, vocab_size: usize) -> Result<Self, ConstrainError> {
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(matcher_error(e));
        }
        Ok(Self {
            matcher,
            vocab_size,
            words: vocab_size.div_ceil(32),
            failed: None,
        })
    }

    /// An independent copy of this state (its parser and lexer caches
    /// cloned): a forked choice of `n` > 1 follows the same grammar from
    /// the same point on its own tokens.
    pub fn fork(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            vocab_size: self.vocab_size,
            words: self.words,
            failed: self.failed.clone(),
        }
    }

    /// The tokens allowed next: those that keep the reply a prefix of the
    /// grammar's language, plus end-of-sequence where the grammar may end
    /// (only end-of-sequence once it must end).
    pub fn mask(&mut self) -> Result<TokenMask, ConstrainError> {
        let mut words = vec![0; self.words];
        self.fill_mask(&mut words)?;
        Ok(words)
    }

    /// [`Constraint::mask`] written into `words` (`ceil(vocab / 32)` of
    /// them, as the engine's sampler takes it).
    pub fn fill_mask(&mut self, words: &mut [u32]) -> Result<(), ConstrainError> {
        let vob = self.matcher.compute_mask_or_eos().map_err(matcher_error)?;
        let src = vob.as_slice();
        let n = words.len().min(src.len()).min(self.words);
        words[..n].copy_from_slice(&src[..n]);
        words[n..].fill(0);
        // llguidance's set may hold a bit past the vocabulary.
        let tail = self.vocab_size % 32;
        if tail != 0 && n == self.words {
            words[n - 1] &= (1u32 << tail) - 1;
        }
        if words.iter().all(|&w| w == 0) {
            return Err(matcher_error("the grammar allows no token here"));
        }
        Ok(())
    }

    /// Advances the grammar by a sampled token (one the last mask allowed;
    /// an end-of-sequence token ends the reply and is not passed here).
    pub fn commit(&mut self, token: u32) -> Result<(), ConstrainError> {
        if let Some(why) = self.failed.take() {
            return Err(matcher_error(why));
        }
        self.matcher.consume_token(token).map_err(matcher_error)
    }

    /// [`Constraint::fill_mask`] for the engine's step: a failure is kept
    /// for the next [`Constraint::commit`] and the step runs unconstrained
    /// (`false`), so one reply's broken grammar never fails the other
    /// sequences of its batch.
    pub fn fill_step_mask(&mut self, words: &mut [u32]) -> bool {
        match self.fill_mask(words) {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e.to_string());
                false
            }
        }
    }

    /// The grammar is complete: only end-of-sequence is allowed now.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The reply so far is a complete sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// Whether `mask` allows `token`.
pub fn allows(mask: &[u32], token: u32) -> bool {
    mask.get(token as usize / 32)
        .is_some_and(|w| w >> (token % 32) & 1 == 1)
}
