//! Token selection for generation on the host: greedy [`argmax`] and a seeded
//! [`Sampler`]. The rule and the random numbers are [`qwgpu_ops::sampling`]'s,
//! the same the GPU sampler uses, so a seed gives the same tokens on both
//! backends (up to float rounding at a boundary).
//!
//! Per-step controls of the engine ([`crate::engine::Model::sample_step`],
//! [`crate::engine::Model::decode_batch_with`]) beyond [`SamplingParams`]
//! live here too: [`StepControls`] (an allowed-token mask filled by a callback
//! while the GPU runs the step, and log-probabilities) and what a step
//! returns, [`Sampled`]. The rules are [`qwgpu_ops::sampling::controls`]'.

pub use qwgpu_ops::rng::SplitMix64;
use qwgpu_ops::sampling::controls::{check_mask, logprobs, sample_controlled, TokenCounts};
pub use qwgpu_ops::sampling::controls::{mask_words, MAX_TOP_LOGPROBS};
pub use qwgpu_ops::sampling::{argmax, SamplingParams};
use qwgpu_ops::sampling::{sample, uniform_random, NON_FINITE};

use crate::ModelError;

/// Fills a step's allowed-token bitset: called with `ceil(vocab / 32)` zeroed
/// words ([`mask_words`]); set bit `t % 32` of word `t / 32` for every allowed
/// token `t` and return `Ok(true)`, or return `Ok(false)` to leave the step
/// unconstrained (the words are then ignored). An error ends the step
/// (wrap foreign errors in [`ModelError::MaskCallback`]).
pub type TokenMaskFn<'a> = Box<dyn FnMut(&mut [u32]) -> Result<bool, ModelError> + 'a>;

/// One row's controls of a sampled step beyond [`SamplingParams`].
///
/// **When the mask is computed.** The engine submits the step's forward pass
/// to the GPU first and only then calls [`StepControls::mask`], so the host
/// computes the mask (e.g. a grammar's next-token set) while the GPU runs the
/// model; the mask is uploaded (one bitset, ~31 KB for a 248k vocabulary) and
/// applied by the GPU sampler before the token is picked. In a batched step
/// ([`crate::engine::Model::decode_batch_with`]) the rows' callbacks are
/// called in row order after the whole batch's forward pass is submitted.
/// The CPU backend calls it before its (synchronous) forward pass.
///
/// A mask allowing no token is [`ModelError::NoAllowedToken`]. The rules
/// (penalties, then mask, then the sampling rule; log-probabilities of the
/// raw logits) are in [`qwgpu_ops::sampling::controls`].
///
/// ```
/// use qwgpu_model::sampling::{StepControls, mask_words};
/// let only_seven = StepControls {
///     top_logprobs: Some(5),
///     mask: Some(Box::new(|words: &mut [u32]| {
///         words[0] = 1 << 7;
///         Ok(true)
///     })),
/// };
/// assert!(!only_seven.is_plain());
/// assert!(StepControls::default().is_plain());
/// assert_eq!(mask_words(248_077), 7753);
/// ```
#[derive(Default)]
pub struct StepControls<'a> {
    /// `Some(n)`: return the sampled token's log-probability and the `n`
    /// (at most [`MAX_TOP_LOGPROBS`]) most likely tokens' (`Some(0)`: the
    /// sampled token's only). `None`: no log-probabilities.
    pub top_logprobs: Option<usize>,
    /// The allowed-token mask of this step (see the type's docs); `None`: every token.
    pub mask: Option<TokenMaskFn<'a>>,
}

impl std::fmt::Debug for StepControls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepControls")
            .field("top_logprobs", &self.top_logprobs)
            .field("mask", &self.mask.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl<'a> StepControls<'a> {
    /// No mask, no log-probabilities.
    pub fn none() -> Self {
        Self::default()
    }

    /// Log-probabilities of the sampled token and the `n` most likely.
    pub fn logprobs(n: usize) -> Self {
        Self {
            top_logprobs: Some(n),
            mask: None,
        }
    }

    /// True without a mask and without log-probabilities.
    pub fn is_plain(&self) -> bool {
        self.top_logprobs.is_none() && self.mask.is_none()
    }

    /// Checks `top_logprobs` (at most [`MAX_TOP_LOGPROBS`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.top_logprobs {
            Some(n) if n > MAX_TOP_LOGPROBS => Err(ModelError::Sampling {
                detail: format!("top_logprobs {n} must be at most {MAX_TOP_LOGPROBS}"),
            }),
            _ => Ok(()),
        }
    }

    /// Runs the mask callback (if any) for a vocabulary of `vocab`: the
    /// checked bitset, or `None` for an unconstrained step.
    pub(crate) fn fetch_mask(
        &mut self,
        vocab: usize,
        position: usize,
    ) -> Result<Option<Vec<u32>>, ModelError> {
        let Some(f) = self.mask.as_mut() else {
            return Ok(None);
        };
        let mut words = vec![0u32; mask_words(vocab)];
        if !f(&mut words)? {
            return Ok(None);
        }
        check_mask(&words, vocab).map_err(|_| ModelError::NoAllowedToken { position, vocab })?;
        Ok(Some(words))
    }
}

/// A sampled token, with its log-probabilities when they were asked for
/// ([`StepControls::top_logprobs`]): `log_softmax` of the step's raw logits
/// (before penalties, mask and temperature; as vLLM reports them), computed
/// where the logits are (on the GPU, only these numbers are read back).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// `log p(token)` (may be −∞ where the mask or penalties forced a token
    /// the raw logits rule out).
    pub logprob: Option<f32>,
    /// The most likely `(token, log p)` pairs, most likely first (ties by lower
    /// id); tokens with a −∞ logit are never listed, so there may be fewer than asked.
    pub top: Vec<(u32, f32)>,
}

impl Sampled {
    /// A token without log-probabilities.
    pub fn token(token: u32) -> Self {
        Self {
            token,
            logprob: None,
            top: Vec::new(),
        }
    }
}

/// What a session's penalties count: every token it consumed (prompt and fed
/// back ones) and the tokens its sampler generated since its seed was last
/// set (setting the seed starts a generation). Snapshots carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenLog {
    pub consumed: Vec<u32>,
    pub generated: Vec<u32>,
    /// Bumped when a generation starts (the seed is set).
    pub generation: u64,
}

impl TokenLog {
    pub fn counts(&self, vocab: usize) -> TokenCounts {
        TokenCounts::new(vocab, &self.consumed, &self.generated)
    }
}

/// One sampled step on the host from a row of logits: penalties from `log`,
/// `mask`, the rule with `uniform_random(seed, counter)`, and
/// log-probabilities when asked. `position`: for errors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn host_step(
    logits: &[f32],
    params: &SamplingParams,
    top_logprobs: Option<usize>,
    mask: Option<&[u32]>,
    log: &TokenLog,
    (seed, counter): (u64, u32),
    position: usize,
) -> Result<Sampled, ModelError> {
    let counts = params.has_penalties().then(|| log.counts(logits.len()));
    let u = uniform_random(seed, counter);
    let token = sample_controlled(
        logits,
        params,
        counts.as_ref().map(|c| c.as_slice()),
        mask,
        u,
    );
    if token == NON_FINITE {
        return Err(ModelError::NonFiniteLogits { position });
    }
    let mut out = Sampled::token(token);
    if let Some(n) = top_logprobs {
        let lp = logprobs(logits, token, n);
        out.logprob = Some(lp.chosen);
        out.top = lp.top;
    }
    Ok(out)
}

/// Chooses the next token from a row of logits with a seeded counter-based
/// random stream.
///
/// ```
/// use qwgpu_model::{sampling::SamplingParams, Sampler};
/// let logits = [0.1f32, 2.0, -1.0];
/// assert_eq!(Sampler::greedy().sample(&logits)?, 1);
/// let params = SamplingParams { temperature: 0.8, top_k: 2, top_p: 0.9, ..SamplingParams::GREEDY };
/// let mut s = Sampler::new(params, 42)?;
/// let token = s.sample(&logits)?;
/// assert!(token == 0 || token == 1);
/// assert!(s.sample(&[0.5, f32::NAN]).is_err());
/// # Ok::<(), qwgpu_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    seed: u64,
    counter: u32,
}

impl Sampler {
    /// Always the argmax.
    pub fn greedy() -> Self {
        Self {
            params: SamplingParams::greedy(),
            seed: 0,
            counter: 0,
        }
    }

    /// A sampler for `params` (checked by [`SamplingParams::validate`];
    /// penalties are refused: this sampler sees no context to count, the
    /// engine's sessions do).
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self, ModelError> {
        params
            .validate()
            .map_err(|detail| ModelError::Sampling { detail })?;
        if params.has_penalties() {
            return Err(ModelError::Sampling {
                detail: "penalties need the token counts of a session: sample with the engine"
                    .into(),
            });
        }
        Ok(Self {
            params,
            seed,
            counter: 0,
        })
    }

    /// The temperature, top-k and top-p in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token index from `logits` and advances the random stream. A
    /// row with a NaN or +inf logit, or only -inf ones, is
    /// [`ModelError::NonFiniteLogits`] (with `position` 0: the sampler does not
    /// know the sequence; callers that do may replace it).
    pub fn sample(&mut self, logits: &[f32]) -> Result<usize, ModelError> {
        let u = uniform_random(self.seed, self.counter);
        self.counter = self.counter.wrapping_add(1);
        match sample(logits, &self.params, u) {
            NON_FINITE => Err(ModelError::NonFiniteLogits { position: 0 }),
            t => Ok(t as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::GREEDY
        }
    }

    #[test]
    fn same_seed_same_tokens_and_bad_params_are_errors() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut a = Sampler::new(params(1.0, 0, 0.95), 99).unwrap();
        let mut b = Sampler::new(params(1.0, 0, 0.95), 99).unwrap();
        let ta: Vec<usize> = (0..20).map(|_| a.sample(&logits).unwrap()).collect();
        let tb: Vec<usize> = (0..20).map(|_| b.sample(&logits).unwrap()).collect();
        assert_eq!(ta, tb);
        assert!(
            ta.iter().any(|&t| t != ta[0]),
            "a random stream that never moves"
        );
        assert!(Sampler::new(params(-1.0, 0, 1.0), 0).is_err());
        assert!(Sampler::new(params(1.0, 0, 0.0), 0).is_err());
    }

    #[test]
    fn greedy_is_the_argmax() {
        let mut g = Sampler::greedy();
        assert_eq!(g.sample(&[0.0, 5.0, 5.0, f32::NEG_INFINITY]).unwrap(), 1);
    }

    #[test]
    fn non_finite_logits_are_an_error() {
        for row in [
            [0.0, f32::NAN],
            [f32::INFINITY, 1.0],
            [f32::NEG_INFINITY; 2],
        ] {
            for mut s in [
                Sampler::greedy(),
                Sampler::new(params(1.0, 0, 0.9), 1).unwrap(),
            ] {
                assert!(
                    matches!(s.sample(&row), Err(ModelError::NonFiniteLogits { .. })),
                    "{row:?}"
                );
            }
        }
    }
}
