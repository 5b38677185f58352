//! Token selection for generation: greedy [`argmax`] and a seeded [`Sampler`]
//! (temperature, optional top-k and top-p). The selection math is
//! [`qwgpu_ops::sampling`]; the RNG is a tiny SplitMix64 ([`SplitMix64`]) so
//! runs are reproducible across platforms without a dependency.

pub use qwgpu_ops::rng::SplitMix64;
pub use qwgpu_ops::sampling::argmax;
use qwgpu_ops::sampling::{sample_with, SamplingParams};

use crate::ModelError;

/// Chooses the next token from a row of logits.
///
/// ```
/// use qwgpu_model::Sampler;
/// let logits = [0.1f32, 2.0, -1.0];
/// assert_eq!(Sampler::greedy().sample(&logits), 1);
/// let mut s = Sampler::new(0.8, Some(0.9), 42)?.with_top_k(Some(2))?;
/// let token = s.sample(&logits);
/// assert!(token == 0 || token == 1);
/// # Ok::<(), qwgpu_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    /// Always the argmax.
    pub fn greedy() -> Self {
        Self {
            params: SamplingParams::greedy(),
            rng: SplitMix64::new(0),
        }
    }

    /// Samples from `softmax(logits / temperature)`, restricted to the smallest
    /// set of most likely tokens whose probability reaches `top_p` if given.
    /// `temperature` 0 means greedy; it must be finite and ≥ 0; `top_p` in (0, 1].
    pub fn new(temperature: f32, top_p: Option<f32>, seed: u64) -> Result<Self, ModelError> {
        Self::from_params(
            SamplingParams {
                temperature,
                top_k: None,
                top_p,
            },
            seed,
        )
    }

    /// A sampler for any [`SamplingParams`] (checked by
    /// [`SamplingParams::validate`]).
    pub fn from_params(params: SamplingParams, seed: u64) -> Result<Self, ModelError> {
        params
            .validate()
            .map_err(|detail| ModelError::Sampling { detail })?;
        Ok(Self {
            params,
            rng: SplitMix64::new(seed),
        })
    }

    /// Also keeps only the `top_k` most likely tokens (≥ 1; applied before
    /// top-p, ties broken by lower token index); `None` keeps all.
    pub fn with_top_k(self, top_k: Option<usize>) -> Result<Self, ModelError> {
        let params = SamplingParams {
            top_k,
            ..self.params
        };
        params
            .validate()
            .map_err(|detail| ModelError::Sampling { detail })?;
        Ok(Self { params, ..self })
    }

    /// The temperature, top-k and top-p in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token index from `logits` (NaN logits are never picked).
    pub fn sample(&mut self, logits: &[f32]) -> usize {
        let rng = &mut self.rng;
        sample_with(logits, &self.params, || rng.next_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_sampling_follows_softmax() {
        let seed = 7;
        let logits = [0.0f32, 1.0, 2.0, f32::NAN];
        let mut s = Sampler::new(2.0, None, seed).unwrap();
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits)] += 1;
        }
        let w: Vec<f64> = [0.0f64, 0.5, 1.0].iter().map(|x| x.exp()).collect();
        let z: f64 = w.iter().sum();
        for i in 0..3 {
            let f = counts[i] as f64 / n as f64;
            assert!(
                (f - w[i] / z).abs() < 0.015,
                "seed {seed} token {i}: {f} vs {}",
                w[i] / z
            );
        }
        assert_eq!(counts[3], 0, "NaN logit sampled");
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ∝ e^3, e^2, e^0, e^0 → ≈ 0.705, 0.259, 0.018, 0.018. top_p 0.9 keeps {0, 1}.
        let logits = [3.0f32, 2.0, 0.0, 0.0];
        let mut s = Sampler::new(1.0, Some(0.9), 3).unwrap();
        let mut seen = [false; 4];
        for _ in 0..5000 {
            seen[s.sample(&logits)] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
        // top_p tiny: only the best token.
        let mut s = Sampler::new(1.0, Some(1e-6), 3).unwrap();
        assert!((0..100).all(|_| s.sample(&logits) == 0));
    }

    #[test]
    fn top_k_limits_the_choice() {
        let logits = [3.0f32, 2.5, 2.0, 0.0];
        let mut s = Sampler::new(5.0, None, 1)
            .unwrap()
            .with_top_k(Some(2))
            .unwrap();
        let mut seen = [false; 4];
        for _ in 0..2000 {
            seen[s.sample(&logits)] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
        assert_eq!(s.params().top_k, Some(2));
        assert!(Sampler::greedy().with_top_k(Some(0)).is_err());
    }

    #[test]
    fn same_seed_same_tokens_and_bad_params_rejected() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut a = Sampler::new(1.0, Some(0.95), 99).unwrap();
        let mut b = Sampler::new(1.0, Some(0.95), 99).unwrap();
        let ta: Vec<usize> = (0..64).map(|_| a.sample(&logits)).collect();
        let tb: Vec<usize> = (0..64).map(|_| b.sample(&logits)).collect();
        assert_eq!(ta, tb);
        assert!(Sampler::new(-1.0, None, 0).is_err());
        assert!(Sampler::new(f32::NAN, None, 0).is_err());
        assert!(Sampler::new(1.0, Some(0.0), 0).is_err());
        assert!(Sampler::new(1.0, Some(1.5), 0).is_err());
        assert_eq!(Sampler::new(0.0, None, 0).unwrap().sample(&[0.0, 5.0]), 1);
    }
}
