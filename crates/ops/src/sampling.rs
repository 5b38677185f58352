//! Token selection math: greedy [`argmax`], and temperature / top-k / top-p
//! sampling given a uniform random number ([`sample`], [`sample_with`]), with
//! the candidate list it draws from ([`candidates`]). The seeded sampler that
//! owns a random stream lives in `qwgpu_model::sampling`.
//!
//! Order of operations: temperature, then top-k, then top-p (the nucleus is
//! taken relative to the probability mass left after top-k, like HF's warpers).
//! Candidates are ranked by probability, lower token index first on ties, so
//! a top-k cut through tied tokens keeps the lower indices.

/// Temperature, top-k and top-p of one sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy ([`argmax`]); otherwise finite and > 0.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`k ≥ 1`); `None` keeps all.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `p`, in (0, 1]; `None` keeps all.
    pub top_p: Option<f32>,
}

impl SamplingParams {
    /// Always the argmax.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }

    /// Checks the ranges documented on the fields; the error says which one
    /// is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!("temperature {t} must be finite and >= 0"));
        }
        if self.top_k == Some(0) {
            return Err("top_k 0 must be >= 1".to_string());
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p {p} must be in (0, 1]"));
            }
        }
        Ok(())
    }
}

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

/// Candidate tokens with unnormalised probabilities `exp((logit − max) / T)`
/// in f64, most likely first (lower index first on ties), cut to the top-k and
/// then to the top-p nucleus. NaN logits are never candidates. With
/// temperature 0 the only candidate is the [`argmax`].
pub fn candidates(logits: &[f32], params: &SamplingParams) -> Vec<(usize, f64)> {
    if params.temperature == 0.0 {
        return vec![(argmax(logits), 1.0)];
    }
    let t = params.temperature as f64;
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
    // Stable sort: lower indices stay first among equal probabilities.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = params.top_k {
        probs.truncate(k);
    }
    if let Some(top_p) = params.top_p {
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

/// Picks a token from `logits` with the uniform number `u ∈ [0, 1)`: walks the
/// [`candidates`] until their cumulative probability passes `u` times their
/// total. Greedy (temperature 0) and degenerate rows (no finite probability
/// mass) give the [`argmax`].
pub fn sample(logits: &[f32], params: &SamplingParams, u: f64) -> usize {
    sample_with(logits, params, || u)
}

/// [`sample`] drawing its uniform number from `uniform` only when one is needed
/// (not for greedy or degenerate rows), so a random stream advances exactly
/// once per random choice.
pub fn sample_with(
    logits: &[f32],
    params: &SamplingParams,
    uniform: impl FnOnce() -> f64,
) -> usize {
    if params.temperature == 0.0 {
        return argmax(logits);
    }
    let probs = candidates(logits, params);
    let total: f64 = probs.iter().map(|(_, p)| p).sum();
    if total.is_nan() || total <= 0.0 {
        return argmax(logits);
    }
    let mut u = uniform() * total;
    for &(i, p) in &probs {
        if u < p {
            return i;
        }
        u -= p;
    }
    // Rounding left u just past the end: the last candidate.
    probs.last().map_or(0, |(i, _)| *i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
        }
    }

    fn ids(c: &[(usize, f64)]) -> Vec<usize> {
        c.iter().map(|x| x.0).collect()
    }

    #[test]
    fn argmax_first_max_wins_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -0.5]), 2);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn temperature_sampling_follows_softmax() {
        let seed = 7;
        let logits = [0.0f32, 1.0, 2.0, f32::NAN];
        let p = params(2.0, None, None);
        let mut rng = SplitMix64::new(seed);
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[sample_with(&logits, &p, || rng.next_f64())] += 1;
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
        let p = params(1.0, None, Some(0.9));
        assert_eq!(ids(&candidates(&logits, &p)), vec![0, 1]);
        let mut rng = SplitMix64::new(3);
        let mut seen = [false; 4];
        for _ in 0..5000 {
            seen[sample_with(&logits, &p, || rng.next_f64())] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
        // top_p tiny: only the best token.
        let p = params(1.0, None, Some(1e-6));
        assert!((0..100).all(|_| sample_with(&logits, &p, || rng.next_f64()) == 0));
    }

    #[test]
    fn top_k_keeps_the_k_best_with_ties_to_lower_index() {
        let logits = [1.0f32, 3.0, 3.0, 3.0, f32::NAN, 2.0];
        let c = candidates(&logits, &params(1.0, Some(2), None));
        assert_eq!(ids(&c), vec![1, 2]);
        let c = candidates(&logits, &params(1.0, Some(4), None));
        assert_eq!(ids(&c), vec![1, 2, 3, 5]);
        // k past the number of (non-NaN) tokens keeps them all.
        assert_eq!(candidates(&logits, &params(1.0, Some(50), None)).len(), 5);
        // k = 1 is greedy whatever u is.
        let p = params(1.0, Some(1), None);
        assert!([0.0, 0.5, 0.999_999]
            .iter()
            .all(|&u| sample(&logits, &p, u) == 1));
    }

    #[test]
    fn top_k_applies_before_top_p() {
        // p ∝ e², e, e, e, e, e. Over all six tokens the 0.5 nucleus needs three
        // tokens; after top-k 2 the best token alone carries 0.73 of the mass.
        let logits = [2.0f32, 1.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(
            ids(&candidates(&logits, &params(1.0, None, Some(0.5)))),
            vec![0, 1, 2]
        );
        assert_eq!(
            ids(&candidates(&logits, &params(1.0, Some(2), Some(0.5)))),
            vec![0]
        );
    }

    #[test]
    fn u_walks_the_cumulative_distribution() {
        // p ∝ e^1, e^0 → 0.731, 0.269.
        let logits = [0.0f32, 1.0];
        let p = params(1.0, None, None);
        assert_eq!(sample(&logits, &p, 0.0), 1);
        assert_eq!(sample(&logits, &p, 0.73), 1);
        assert_eq!(sample(&logits, &p, 0.74), 0);
        assert_eq!(sample(&logits, &p, 0.999_999), 0);
        // Greedy and degenerate rows never draw.
        let mut drawn = false;
        let greedy = SamplingParams::greedy();
        assert_eq!(
            sample_with(&logits, &greedy, || {
                drawn = true;
                0.5
            }),
            1
        );
        let all_neg_inf = [f32::NEG_INFINITY; 3];
        assert_eq!(
            sample_with(&all_neg_inf, &p, || {
                drawn = true;
                0.5
            }),
            0
        );
        assert!(!drawn);
        assert_eq!(candidates(&logits, &greedy), vec![(1, 1.0)]);
    }

    #[test]
    fn validate_rejects_out_of_range_params() {
        assert!(params(-1.0, None, None).validate().is_err());
        assert!(params(f32::NAN, None, None).validate().is_err());
        assert!(params(f32::INFINITY, None, None).validate().is_err());
        assert!(params(1.0, Some(0), None).validate().is_err());
        assert!(params(1.0, None, Some(0.0)).validate().is_err());
        assert!(params(1.0, None, Some(1.5)).validate().is_err());
        assert!(params(0.0, Some(1), Some(1.0)).validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
    }
}
