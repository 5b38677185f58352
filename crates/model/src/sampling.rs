//! Token selection for generation: greedy [`argmax`] and a seeded [`Sampler`]
//! (temperature, optional top-p). The RNG is a tiny SplitMix64 so runs are
//! reproducible across platforms without a dependency.

use crate::ModelError;

/// Index of the largest logit; the lowest index wins ties (like `torch.argmax`).
/// NaNs are skipped; an empty or all-NaN slice gives 0.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, passes BigCrush, and
/// every seed (including 0) is fine.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Chooses the next token from a row of logits.
///
/// ```
/// use qwgpu_model::Sampler;
/// let logits = [0.1f32, 2.0, -1.0];
/// assert_eq!(Sampler::greedy().sample(&logits), 1);
/// let mut s = Sampler::new(0.8, Some(0.9), 42)?;
/// let token = s.sample(&logits);
/// assert!(token < 3);
/// # Ok::<(), qwgpu_model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    /// 0 = greedy.
    temperature: f32,
    top_p: Option<f32>,
    rng: SplitMix64,
}

impl Sampler {
    /// Always the argmax.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            rng: SplitMix64::new(0),
        }
    }

    /// Samples from `softmax(logits / temperature)`, restricted to the smallest
    /// set of most likely tokens whose probability reaches `top_p` if given.
    /// `temperature` 0 means greedy; it must be finite and ≥ 0; `top_p` in (0, 1].
    pub fn new(temperature: f32, top_p: Option<f32>, seed: u64) -> Result<Self, ModelError> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(ModelError::Sampling {
                detail: format!("temperature {temperature} must be finite and >= 0"),
            });
        }
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ModelError::Sampling {
                    detail: format!("top_p {p} must be in (0, 1]"),
                });
            }
        }
        Ok(Self {
            temperature,
            top_p,
            rng: SplitMix64::new(seed),
        })
    }

    /// Picks a token index from `logits` (NaN logits are never picked).
    pub fn sample(&mut self, logits: &[f32]) -> usize {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        let probs = self.distribution(logits);
        let total: f64 = probs.iter().map(|(_, p)| p).sum();
        if total.is_nan() || total <= 0.0 {
            return argmax(logits);
        }
        let mut u = self.rng.next_f64() * total;
        for &(i, p) in &probs {
            if u < p {
                return i;
            }
            u -= p;
        }
        // Rounding left u just past the end: the last candidate.
        probs.last().map_or(0, |(i, _)| *i)
    }

    /// Candidate tokens with unnormalised probabilities, most likely first
    /// (lower index first on ties), cut to the top-p nucleus.
    fn distribution(&self, logits: &[f32]) -> Vec<(usize, f64)> {
        let t = self.temperature as f64;
        let max = logits
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i, ((v as f64 - max) / t).exp()))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(top_p) = self.top_p {
            let total: f64 = probs.iter().map(|(_, p)| p).sum();
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (n, (_, p)) in probs.iter().enumerate() {
                acc += p;
                if acc >= top_p as f64 * total {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        probs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_max_wins_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -0.5]), 2);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn splitmix_reference_values() {
        // Published first outputs of Vigna's splitmix64.c for state 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

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
