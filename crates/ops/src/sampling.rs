//! Token selection: greedy [`argmax`], and temperature / top-k / top-p
//! sampling for a uniform random number ([`sample`]) drawn from a counter-based
//! hash ([`uniform_random`]). The GPU sampler (`qwgpu_kernels::sample`) runs the
//! same rule and the same random numbers, and is tested against this code.
//!
//! # The rule
//!
//! Logits `l[0..V)`.
//! - **Non-finite rows**: if any logit is NaN or +∞, or every logit is −∞, the
//!   result is [`NON_FINITE`] (no token: the forward pass broke, and the caller
//!   stops with an error instead of printing a made-up token). Single −∞
//!   logits are allowed (masked tokens) and never picked.
//! - **Greedy** (`temperature == 0`): the argmax, lowest index on ties.
//! - Otherwise, with `m = max l` (finite here), the unnormalised probabilities are
//!   `e_i = exp((l_i − m) · inv_t)` in f32, `inv_t = 1 / temperature` (an f32
//!   division), with `e_i = 0` for −∞/NaN logits and for results below the
//!   smallest normal f32 (GPUs may flush denormals). `p = e / Σe` is
//!   `softmax(l / T)`; only ratios matter, so the rule works on `e` directly.
//! - **Top-k** (`0 < top_k < V`): keep tokens with `e_i ≥ τ_k`, `τ_k` = the
//!   k-th largest `e` (ties at the threshold are all kept). Otherwise `τ_k = 0`.
//!   `M1 = Σ_{e_i ≥ τ_k} e_i`.
//! - **Top-p** (`top_p < 1`, applied after top-k like HF's warpers): `τ_p` = the
//!   largest value `v` with `Σ_{e_i ≥ v} e_i ≥ top_p · M1` (the smallest set of
//!   most likely tokens reaching `top_p` of the kept mass, with every token tied
//!   at its edge). The kept set is `{i : e_i ≥ τ, e_i > 0}`, `τ = max(τ_k, τ_p)`.
//! - **Pick**: `M = Σ_kept e_i`; the token is the first kept index (index order)
//!   whose cumulative kept mass exceeds `u · M`; if rounding leaves none, the
//!   last kept token.
//! - **Random number**: `u = uniform_random(seed, counter)`:
//!   `h = lowbias32(counter + 0x9e3779b9)`, `h = lowbias32(h ^ seed_lo)`,
//!   `h = lowbias32(h ^ seed_hi)`, `u = (h >> 8) · 2⁻²⁴` (lowbias32: Chris
//!   Wellons' integer hash).
//! - **Min-p** (`min_p > 0`, sampled rows only: it never changes the argmax):
//!   after temperature and before top-k / top-p (as vLLM applies it), tokens
//!   with `e_i < min_p` are dropped (`e_i = 0`). Since `e = 1` at the max, that
//!   keeps the tokens whose probability is at least `min_p` times the most
//!   likely token's.
//!
//! Penalties, the allowed-token mask and log-probabilities act on the logits
//! before this rule: see [`controls`] ([`controls::sample_controlled`] is the
//! whole pipeline).

#[path = "sampling_controls.rs"]
pub mod controls;

/// What [`sample`] (and the GPU sampler) returns for a row with a NaN or +∞
/// logit, or with every logit −∞: not a token id (no vocabulary reaches 2³²−1).
pub const NON_FINITE: u32 = u32::MAX;

/// True when the rule gives [`NON_FINITE`] for `logits`: a NaN or +∞ logit,
/// or no logit above −∞ (an empty row included).
pub fn is_non_finite_row(logits: &[f32]) -> bool {
    logits.iter().any(|v| v.is_nan() || *v == f32::INFINITY)
        || logits.iter().all(|v| *v == f32::NEG_INFINITY)
}

/// Temperature, top-k, top-p and min-p (see the module docs for the rule),
/// and the penalties applied to the logits before it (see [`controls`]).
///
/// Build it from [`SamplingParams::greedy`] (also the [`Default`]) or
/// [`SamplingParams::GREEDY`] with struct update syntax, so new fields keep
/// their neutral values:
///
/// ```
/// use qwgpu_ops::sampling::SamplingParams;
/// let p = SamplingParams { temperature: 0.7, top_p: 0.9, ..SamplingParams::GREEDY };
/// assert!(p.validate().is_ok());
/// assert!(!p.has_penalties());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy; otherwise finite and > 0 (with `1 / temperature` finite).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (and ties); 0 = off.
    pub top_k: u32,
    /// Keep the smallest most-likely set reaching this mass, in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely one,
    /// in [0, 1]; 0 = off. Ignored by greedy decoding (it cannot change the argmax).
    pub min_p: f32,
    /// OpenAI's presence penalty: subtracted once from the logit of every token
    /// generated so far (in this generation), in [-2, 2]; 0 = off.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted from a token's logit once per
    /// time it was generated so far, in [-2, 2]; 0 = off.
    pub frequency_penalty: f32,
    /// Hugging Face's repetition penalty over every token of the context
    /// (prompt and generated): positive logits are multiplied by
    /// `1 / repetition_penalty`, negative ones by `repetition_penalty`;
    /// finite and > 0; 1 = off.
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    /// [`SamplingParams::greedy`].
    fn default() -> Self {
        Self::GREEDY
    }
}

impl SamplingParams {
    /// Always the argmax, no penalty (every field neutral but temperature 0).
    pub const GREEDY: SamplingParams = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        repetition_penalty: 1.0,
    };

    /// Always the argmax ([`SamplingParams::GREEDY`]).
    pub const fn greedy() -> Self {
        Self::GREEDY
    }

    /// True when a penalty is set (the sampler then needs the token counts of
    /// the context, see [`controls`]).
    pub fn has_penalties(&self) -> bool {
        self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || self.repetition_penalty != 1.0
    }

    /// Checks the ranges documented on the fields; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) || (t > 0.0 && !(1.0 / t).is_finite()) {
            return Err(format!(
                "temperature {t} must be 0 or finite and > 0 with a finite inverse"
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!(
                "top_p {top_p} must be in (0, 1]",
                top_p = self.top_p
            ));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!(
                "min_p {min_p} must be in [0, 1]",
                min_p = self.min_p
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} {v} must be in [-2, 2]"));
            }
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0 && (1.0 / r).is_finite()) {
            return Err(format!(
                "repetition_penalty {r} must be finite and > 0 (with a finite inverse)"
            ));
        }
        Ok(())
    }
}

/// Chris Wellons' `lowbias32` integer hash (a bijection on u32).
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The sampler's uniform number in `[0, 1 − 2⁻²⁴]` for `(seed, counter)`,
/// bit-identical to the GPU sampler's (`uniform01` in `shaders/sample_common.wgsl`).
/// For a fixed seed, distinct counters give distinct 24-bit values up to the
/// 2⁸ hash values sharing them.
pub fn uniform_random(seed: u64, counter: u32) -> f32 {
    let mut h = lowbias32(counter.wrapping_add(0x9e37_79b9));
    h = lowbias32(h ^ seed as u32);
    h = lowbias32(h ^ (seed >> 32) as u32);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The unnormalised probabilities `e_i` of the rule (module docs) for a row
/// with a finite max, or `None` where the result is the argmax (greedy).
fn host_e(logits: &[f32], params: &SamplingParams) -> Option<Vec<f32>> {
    if params.temperature == 0.0 {
        return None;
    }
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0f32 / params.temperature;
    // Below the smallest normal f32, or below min_p (e = 1 at the max).
    let floor = params.min_p.max(f32::MIN_POSITIVE);
    Some(
        logits
            .iter()
            .map(|&l| {
                if l == f32::NEG_INFINITY {
                    return 0.0;
                }
                let e = ((l - m) * inv_t).exp();
                if e >= floor {
                    e
                } else {
                    0.0
                }
            })
            .collect(),
    )
}

/// The kept-set threshold `τ` of the rule for unnormalised probabilities `e`.
fn host_threshold(e: &[f32], params: &SamplingParams) -> f32 {
    let mut sorted = e.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = params.top_k as usize;
    let tau_k = if k > 0 && k < e.len() {
        sorted[k - 1]
    } else {
        0.0
    };
    if params.top_p >= 1.0 {
        return tau_k;
    }
    let kept = &sorted[..sorted
        .iter()
        .position(|&v| v < tau_k)
        .unwrap_or(sorted.len())];
    let m1: f64 = kept.iter().map(|&v| v as f64).sum();
    let target = params.top_p as f64 * m1;
    // S(v) at each distinct value, largest first: the first reaching the target.
    let mut acc = 0.0f64;
    let mut i = 0;
    while i < kept.len() {
        let v = kept[i];
        while i < kept.len() && kept[i] == v {
            acc += kept[i] as f64;
            i += 1;
        }
        if acc >= target {
            return v;
        }
    }
    tau_k
}

/// The token the rule (module docs) picks for the uniform number `u` (normally
/// [`uniform_random`]); masses are summed in f64.
pub fn sample(logits: &[f32], params: &SamplingParams, u: f32) -> u32 {
    if is_non_finite_row(logits) {
        return NON_FINITE;
    }
    let Some(e) = host_e(logits, params) else {
        return argmax(logits) as u32;
    };
    let tau = host_threshold(&e, params);
    let keep = |v: f32| v >= tau && v > 0.0;
    let total: f64 = e.iter().filter(|&&v| keep(v)).map(|&v| v as f64).sum();
    let target = u as f64 * total;
    let mut acc = 0.0f64;
    let mut last = None;
    for (i, &v) in e.iter().enumerate() {
        if keep(v) {
            acc += v as f64;
            if acc > target {
                return i as u32;
            }
            last = Some(i as u32);
        }
    }
    last.unwrap_or_else(|| argmax(logits) as u32)
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
    fn argmax_takes_the_lowest_index_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn temperature_sampling_follows_softmax() {
        let logits = [0.0f32, 1.0, 2.0, f32::NEG_INFINITY];
        let p = params(2.0, 0, 1.0);
        let n = 40_000u32;
        let mut counts = [0usize; 4];
        for c in 0..n {
            counts[sample(&logits, &p, uniform_random(7, c)) as usize] += 1;
        }
        let w: Vec<f64> = [0.0f64, 0.5, 1.0].iter().map(|x| x.exp()).collect();
        let z: f64 = w.iter().sum();
        for i in 0..3 {
            let f = counts[i] as f64 / n as f64;
            assert!(
                (f - w[i] / z).abs() < 0.015,
                "token {i}: {f} vs {w_i_z}",
                w_i_z = w[i] / z
            );
        }
        assert_eq!(counts[3], 0, "-inf logit sampled");
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p ∝ e^3, e^2, e^0, e^0 → ≈ 0.705, 0.259, 0.018, 0.018. top_p 0.9 keeps {0, 1}.
        let logits = [3.0f32, 2.0, 0.0, 0.0];
        let p = params(1.0, 0, 0.9);
        let mut seen = [false; 4];
        for c in 0..5000 {
            seen[sample(&logits, &p, uniform_random(3, c)) as usize] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
        let p = params(1.0, 0, 1e-6);
        assert!((0..100).all(|c| sample(&logits, &p, uniform_random(3, c)) == 0));
    }

    #[test]
    fn top_k_keeps_every_token_tied_at_the_threshold() {
        let logits = [1.0f32, 3.0, 3.0, 3.0, f32::NEG_INFINITY, 2.0];
        let p = params(1.0, 2, 1.0);
        let mut seen = [false; 6];
        for c in 0..3000 {
            seen[sample(&logits, &p, uniform_random(1, c)) as usize] = true;
        }
        assert_eq!(seen, [false, true, true, true, false, false]);
        // k = 1 with a unique best token is greedy whatever u is.
        let logits = [1.0f32, 4.0, 3.0];
        assert!([0.0, 0.5, 0.999_999]
            .iter()
            .all(|&u| sample(&logits, &params(1.0, 1, 1.0), u) == 1));
    }

    #[test]
    fn top_k_applies_before_top_p() {
        // p ∝ e², e, e, e, e, e. Over all six tokens the 0.5 nucleus needs every
        // token tied with the second; after top-k 1 only the best remains.
        let logits = [2.0f32, 1.0, 1.0, 1.0, 1.0, 1.0];
        let kept = |p: SamplingParams| {
            let mut seen = [false; 6];
            for c in 0..3000 {
                seen[sample(&logits, &p, uniform_random(5, c)) as usize] = true;
            }
            seen
        };
        assert_eq!(kept(params(1.0, 0, 0.5)), [true; 6]);
        assert_eq!(
            kept(params(1.0, 1, 0.5)),
            [true, false, false, false, false, false]
        );
    }

    #[test]
    fn u_walks_the_kept_tokens_in_index_order() {
        // e ∝ 1, e → 0.269, 0.731 of the mass.
        let logits = [0.0f32, 1.0];
        let p = params(1.0, 0, 1.0);
        assert_eq!(sample(&logits, &p, 0.0), 0);
        assert_eq!(sample(&logits, &p, 0.26), 0);
        assert_eq!(sample(&logits, &p, 0.28), 1);
        assert_eq!(sample(&logits, &p, 0.999_999), 1);
        assert_eq!(sample(&logits, &SamplingParams::greedy(), 0.0), 1);
    }

    #[test]
    fn non_finite_rows_give_no_token() {
        let p = params(1.0, 0, 1.0);
        for (row, bad) in [
            (&[1.0f32, f32::NAN, 2.0][..], true),
            (&[f32::NAN; 3][..], true),
            (&[1.0, f32::INFINITY][..], true),
            (&[f32::NEG_INFINITY; 3][..], true),
            (&[][..], true),
            (&[f32::NEG_INFINITY, 0.5][..], false),
        ] {
            assert_eq!(is_non_finite_row(row), bad, "{row:?}");
            for params in [p, SamplingParams::greedy()] {
                let got = sample(row, &params, 0.5);
                assert_eq!(got == NON_FINITE, bad, "{row:?} {params:?}");
            }
        }
    }

    #[test]
    fn uniform_random_is_in_range_and_depends_on_seed_and_counter() {
        let a: Vec<f32> = (0..1000).map(|c| uniform_random(9, c)).collect();
        assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = a.iter().map(|&u| u as f64).sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
        assert_ne!(uniform_random(9, 0), uniform_random(10, 0));
        assert_ne!(uniform_random(9, 0), uniform_random(9, 1));
        assert_eq!(uniform_random(9, 5), uniform_random(9, 5));
    }

    #[test]
    fn validate_rejects_out_of_range_params() {
        assert!(params(-1.0, 0, 1.0).validate().is_err());
        assert!(params(f32::NAN, 0, 1.0).validate().is_err());
        assert!(params(f32::INFINITY, 0, 1.0).validate().is_err());
        assert!(params(1.0, 0, 0.0).validate().is_err());
        assert!(params(1.0, 0, 1.5).validate().is_err());
        assert!(params(0.0, 1, 1.0).validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
        let with = |f: fn(&mut SamplingParams)| {
            let mut p = params(1.0, 0, 1.0);
            f(&mut p);
            p.validate()
        };
        for (bad, field) in [
            (with(|p| p.min_p = -0.1), "min_p"),
            (with(|p| p.min_p = 1.5), "min_p"),
            (with(|p| p.min_p = f32::NAN), "min_p"),
            (with(|p| p.presence_penalty = 2.5), "presence_penalty"),
            (with(|p| p.frequency_penalty = -3.0), "frequency_penalty"),
            (
                with(|p| p.frequency_penalty = f32::NAN),
                "frequency_penalty",
            ),
            (with(|p| p.repetition_penalty = 0.0), "repetition_penalty"),
            (with(|p| p.repetition_penalty = -1.0), "repetition_penalty"),
            (
                with(|p| p.repetition_penalty = f32::INFINITY),
                "repetition_penalty",
            ),
            (with(|p| p.repetition_penalty = 1e-39), "repetition_penalty"),
        ] {
            let e = bad.expect_err(field);
            assert!(e.starts_with(field), "{e}");
        }
        assert!(with(|p| {
            p.min_p = 0.05;
            p.presence_penalty = -2.0;
            p.frequency_penalty = 2.0;
            p.repetition_penalty = 1.3;
        })
        .is_ok());
    }

    #[test]
    fn min_p_drops_tokens_below_the_fraction_of_the_best() {
        // p ∝ 1, e^-1 (0.368), e^-2 (0.135), e^-3 (0.050) relative to the best.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let kept = |min_p: f32| {
            let p = SamplingParams {
                min_p,
                ..params(1.0, 0, 1.0)
            };
            let mut seen = [false; 4];
            for c in 0..4000 {
                seen[sample(&logits, &p, uniform_random(11, c)) as usize] = true;
            }
            seen
        };
        assert_eq!(kept(0.0), [true; 4]);
        assert_eq!(kept(0.1), [true, true, true, false]);
        assert_eq!(kept(0.2), [true, true, false, false]);
        assert_eq!(kept(1.0), [true, false, false, false]);
        // Greedy ignores it.
        let g = SamplingParams {
            min_p: 0.5,
            ..SamplingParams::GREEDY
        };
        assert_eq!(sample(&logits, &g, 0.9), 0);
    }
}
