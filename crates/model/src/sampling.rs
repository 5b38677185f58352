//! Token selection for generation on the host: greedy [`argmax`] and a seeded
//! [`Sampler`]. The rule and the random numbers are [`qwgpu_ops::sampling`]'s,
//! the same the GPU sampler uses, so a seed gives the same tokens on both
//! backends (up to float rounding at a boundary).

pub use qwgpu_ops::rng::SplitMix64;
pub use qwgpu_ops::sampling::{argmax, SamplingParams};
use qwgpu_ops::sampling::{sample, uniform_random, NON_FINITE};

use crate::ModelError;

/// Chooses the next token from a row of logits with a seeded counter-based
/// random stream.
///
/// ```
/// use qwgpu_model::{sampling::SamplingParams, Sampler};
/// let logits = [0.1f32, 2.0, -1.0];
/// assert_eq!(Sampler::greedy().sample(&logits)?, 1);
/// let params = SamplingParams { temperature: 0.8, top_k: 2, top_p: 0.9 };
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

    /// A sampler for `params` (checked by [`SamplingParams::validate`]).
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self, ModelError> {
        params
            .validate()
            .map_err(|detail| ModelError::Sampling { detail })?;
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
