//! What acts on a step's logits besides the sampling rule of
//! [`super`]: penalties from token counts, an allowed-token mask, and the
//! log-probabilities reported with the token. The GPU sampler
//! (`qwgpu_kernels::sample`) implements the same rules and is tested against
//! these functions.
//!
//! # Order (one sampled step)
//! 1. **Log-probabilities** are taken from the *raw* logits (before penalties,
//!    mask and temperature): `logprob_i = l_i − log Σ_j exp(l_j)`, i.e.
//!    `log_softmax` at temperature 1. That is what vLLM reports by default
//!    (`logprobs_mode = raw_logprobs`) and what `qwgpu score` computes, so the
//!    numbers are comparable with a scoring pass over the same tokens.
//! 2. **Penalties** ([`apply_penalties`], vLLM's order): the repetition
//!    penalty first, then the frequency and presence penalties.
//! 3. **Mask** ([`apply_mask`]): every token whose bit is clear gets −∞.
//! 4. The sampling rule ([`super::sample`]) on the adjusted logits.
//!
//! # Token counts
//! One `u32` per vocabulary entry ([`TokenCounts`]): bit 31 ([`SEEN_BIT`]) =
//! the token occurs in the context (prompt or any token the sequence
//! consumed), bits 0..31 = how many times the sampler generated it in the
//! current generation. The repetition penalty applies to tokens seen *or*
//! generated; presence and frequency to generated ones only (OpenAI's
//! definition: "tokens that appear in the text so far" of the completion).
//!
//! # Mask
//! A bitset over the vocabulary: bit `t % 32` of word `t / 32` set = token `t`
//! allowed; `ceil(vocab / 32)` words ([`mask_words`]); bits at and past
//! `vocab` are ignored. A mask allowing no token of the vocabulary is an
//! error ([`check_mask`]), never a made-up token. The mask keeps NaN and +∞
//! logits as they are (a broken row still reports non-finite logits).

use super::{sample, SamplingParams};

/// Bit of a [`TokenCounts`] entry: the token occurs in the context.
pub const SEEN_BIT: u32 = 1 << 31;

/// Most top log-probabilities one step reports (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Per-token counts of a sequence (see the module docs for the encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCounts {
    counts: Vec<u32>,
}

impl TokenCounts {
    /// Counts for `context` (marked seen) and `generated` (counted; also the
    /// tokens generated in the current generation, in any order). Ids at or
    /// past `vocab` are ignored.
    pub fn new(vocab: usize, context: &[u32], generated: &[u32]) -> Self {
        let mut counts = vec![0u32; vocab];
        for &t in context {
            if let Some(c) = counts.get_mut(t as usize) {
                *c |= SEEN_BIT;
            }
        }
        for &t in generated {
            if let Some(c) = counts.get_mut(t as usize) {
                let n = (*c & !SEEN_BIT).saturating_add(1).min(!SEEN_BIT);
                *c = (*c & SEEN_BIT) | n;
            }
        }
        Self { counts }
    }

    /// The encoded entries, one per vocabulary id.
    pub fn as_slice(&self) -> &[u32] {
        &self.counts
    }
}

/// Words of a mask over `vocab` tokens: `ceil(vocab / 32)`.
pub fn mask_words(vocab: usize) -> usize {
    vocab.div_ceil(32)
}

/// Whether `mask` allows token `t` (false past the mask's end).
pub fn mask_allows(mask: &[u32], t: usize) -> bool {
    mask.get(t / 32).is_some_and(|w| (w >> (t % 32)) & 1 != 0)
}

/// Checks that `mask` has [`mask_words`] words and allows at least one token
/// below `vocab`.
pub fn check_mask(mask: &[u32], vocab: usize) -> Result<(), String> {
    let want = mask_words(vocab);
    if mask.len() != want {
        return Err(format!(
            "the token mask has {got} words; a vocabulary of {vocab} needs {want}",
            got = mask.len()
        ));
    }
    let full = vocab / 32;
    let tail = vocab % 32;
    let any = mask[..full].iter().any(|&w| w != 0)
        || (tail > 0 && mask[full] & ((1u32 << tail) - 1) != 0);
    if !any {
        return Err(format!(
            "the token mask allows no token of the vocabulary of {vocab}"
        ));
    }
    Ok(())
}

/// Sets every disallowed finite (or −∞) logit to −∞; NaN and +∞ stay.
pub fn apply_mask(logits: &mut [f32], mask: &[u32]) {
    for (t, l) in logits.iter_mut().enumerate() {
        if !mask_allows(mask, t) && !l.is_nan() && *l != f32::INFINITY {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The penalties of `params` on `logits` from `counts` (entries as in the
/// module docs), in f32: for a token seen or generated, `l · (1 / r)` if
/// `l > 0` else `l · r` (`1 / r` an f32 division on the host, so the GPU
/// multiplies by the same number); then `l − (frequency · n + presence · [n > 0])`
/// with `n` the generated count. A no-op when no penalty is set.
pub fn apply_penalties(logits: &mut [f32], params: &SamplingParams, counts: &[u32]) {
    if !params.has_penalties() {
        return;
    }
    let r = params.repetition_penalty;
    let inv_r = 1.0f32 / r;
    for (l, &c) in logits.iter_mut().zip(counts) {
        let n = c & !SEEN_BIT;
        if c & SEEN_BIT != 0 || n > 0 {
            *l = if *l > 0.0 { *l * inv_r } else { *l * r };
        }
        let pen = params.frequency_penalty * n as f32
            + params.presence_penalty * if n > 0 { 1.0 } else { 0.0 };
        *l -= pen;
    }
}

/// The chosen token's log-probability and the most likely tokens' (see the
/// module docs: raw logits, temperature 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    /// `log p(token)`; −∞ for a token whose logit is −∞, NaN for an id past
    /// the row.
    pub chosen: f32,
    /// Up to `n` `(token, log p)` pairs, most likely first, ties by lower id;
    /// tokens with a −∞ or NaN logit are never listed.
    pub top: Vec<(u32, f32)>,
}

/// [`Logprobs`] of `token` and the `n` most likely tokens of `logits`
/// (log-sum-exp in f64). A row without a finite logit gives NaN / nothing.
pub fn logprobs(logits: &[f32], token: u32, n: usize) -> Logprobs {
    let m = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return Logprobs {
            chosen: f32::NAN,
            top: Vec::new(),
        };
    }
    let m = m as f64;
    let z: f64 = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (v as f64 - m).exp())
        .sum();
    let log_z = m + z.ln();
    let lp = |v: f32| (v as f64 - log_z) as f32;
    let chosen = logits.get(token as usize).map_or(f32::NAN, |&v| lp(v));
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let top = order
        .into_iter()
        .take(n)
        .map(|i| (i as u32, lp(logits[i])))
        .collect();
    Logprobs { chosen, top }
}

/// The logits the sampling rule sees: penalties from `counts` (when given),
/// then `mask` (when given), as in the module docs.
pub fn adjusted_logits(
    logits: &[f32],
    params: &SamplingParams,
    counts: Option<&[u32]>,
    mask: Option<&[u32]>,
) -> Vec<f32> {
    let mut l = logits.to_vec();
    if let Some(c) = counts {
        apply_penalties(&mut l, params, c);
    }
    if let Some(m) = mask {
        apply_mask(&mut l, m);
    }
    l
}

/// The whole step of the module docs: the token [`super::sample`] picks from
/// the [`adjusted_logits`] for the uniform number `u`.
pub fn sample_controlled(
    logits: &[f32],
    params: &SamplingParams,
    counts: Option<&[u32]>,
    mask: Option<&[u32]>,
    u: f32,
) -> u32 {
    sample(&adjusted_logits(logits, params, counts, mask), params, u)
}

#[cfg(test)]
mod tests {
    use super::super::{uniform_random, NON_FINITE};
    use super::*;

    fn penalties(presence: f32, frequency: f32, repetition: f32) -> SamplingParams {
        SamplingParams {
            presence_penalty: presence,
            frequency_penalty: frequency,
            repetition_penalty: repetition,
            ..SamplingParams::GREEDY
        }
    }

    #[test]
    fn counts_mark_context_and_count_generated() {
        let c = TokenCounts::new(5, &[0, 3, 3, 9], &[3, 1, 1, 7]);
        assert_eq!(c.as_slice(), &[SEEN_BIT, 2, 0, SEEN_BIT | 1, 0]);
    }

    #[test]
    fn penalties_follow_vllm_and_hf() {
        // Tokens: 0 seen in the prompt, 1 generated twice, 2 untouched, 3 both.
        let counts = TokenCounts::new(4, &[0, 3], &[1, 1, 3]);
        let mut l = [2.0f32, -1.0, 3.0, 0.5];
        apply_penalties(&mut l, &penalties(0.5, 0.25, 2.0), counts.as_slice());
        // 0: 2/2 = 1; 1: -1·2 − (0.25·2 + 0.5) = -3; 2: 3; 3: 0.5/2 − 0.75 = -0.5.
        assert_eq!(l, [1.0, -3.0, 3.0, -0.5]);
        // Neutral parameters change nothing, whatever the counts.
        let mut same = [2.0f32, -1.0, 3.0, 0.5];
        apply_penalties(&mut same, &SamplingParams::GREEDY, counts.as_slice());
        assert_eq!(same, [2.0, -1.0, 3.0, 0.5]);
        // A negative presence penalty favours generated tokens.
        let mut fav = [0.0f32; 4];
        apply_penalties(&mut fav, &penalties(-1.0, 0.0, 1.0), counts.as_slice());
        assert_eq!(fav, [0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn penalties_change_the_greedy_token() {
        let logits = [1.0f32, 0.9, 0.0];
        let counts = TokenCounts::new(3, &[], &[0]);
        let p = penalties(0.5, 0.0, 1.0);
        assert_eq!(sample_controlled(&logits, &p, None, None, 0.0), 0);
        assert_eq!(
            sample_controlled(&logits, &p, Some(counts.as_slice()), None, 0.0),
            1
        );
    }

    #[test]
    fn masks_are_checked_and_applied() {
        assert_eq!(mask_words(31), 1);
        assert_eq!(mask_words(32), 1);
        assert_eq!(mask_words(33), 2);
        assert!(check_mask(&[0, 0], 33).is_err());
        // Only bit 1 of the second word (token 33) is set: past a vocab of 33.
        assert!(check_mask(&[0, 2], 33).is_err());
        assert!(check_mask(&[0, 1], 33).is_ok());
        assert!(check_mask(&[1], 33).is_err(), "wrong length");
        assert!(check_mask(&[u32::MAX; 3], 33).is_err(), "wrong length");
        let mut l = [1.0f32, f32::NAN, 2.0, f32::INFINITY, 0.5];
        apply_mask(&mut l, &[0b00100]);
        assert_eq!(l[0], f32::NEG_INFINITY);
        assert!(l[1].is_nan(), "NaN must stay visible");
        assert_eq!(l[2], 2.0);
        assert_eq!(l[3], f32::INFINITY);
        assert_eq!(l[4], f32::NEG_INFINITY);
    }

    #[test]
    fn a_one_token_mask_forces_that_token() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.7).sin()).collect();
        let hot = SamplingParams {
            temperature: 1.5,
            top_k: 5,
            top_p: 0.9,
            ..SamplingParams::GREEDY
        };
        for t in [0usize, 31, 32, 57, 99] {
            let mut mask = vec![0u32; mask_words(100)];
            mask[t / 32] |= 1 << (t % 32);
            for p in [SamplingParams::GREEDY, hot] {
                for c in 0..20 {
                    let got =
                        sample_controlled(&logits, &p, None, Some(&mask), uniform_random(1, c));
                    assert_eq!(got, t as u32);
                }
            }
        }
        // NaN outside the mask still makes the row broken.
        let mut bad = logits.clone();
        bad[3] = f32::NAN;
        assert_eq!(
            sample_controlled(&bad, &hot, None, Some(&[1, 0, 0, 0]), 0.5),
            NON_FINITE
        );
    }

    #[test]
    fn logprobs_are_a_log_softmax_with_ordered_top() {
        let logits = [1.0f32, 3.0, f32::NEG_INFINITY, 3.0, 2.0];
        let lp = logprobs(&logits, 4, 10);
        let z: f64 = [1.0f64, 3.0, 3.0, 2.0].iter().map(|v| v.exp()).sum();
        let want = |v: f64| (v - z.ln()) as f32;
        assert!((lp.chosen - want(2.0)).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|p| p.0).collect();
        assert_eq!(ids, [1, 3, 4, 0], "ties by lower id, -inf never listed");
        assert!((lp.top[0].1 - want(3.0)).abs() < 1e-6);
        let sum: f64 = lp.top.iter().map(|p| (p.1 as f64).exp()).sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert_eq!(logprobs(&logits, 2, 0).chosen, f32::NEG_INFINITY);
        assert!(logprobs(&logits, 2, 0).top.is_empty());
        assert!(logprobs(&[f32::NEG_INFINITY; 2], 0, 3).chosen.is_nan());
    }
}
