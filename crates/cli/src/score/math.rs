//! Log-probabilities from logits, in f64 on the host: a row of 248k f32
//! logits summed in f32 would lose the digits that a KL divergence of
//! 1e-6 nats between two checkpoints is made of.

/// `log_softmax(row)`, or `None` when the row has a NaN or an infinity
/// (or nothing but -inf).
pub fn log_softmax(row: &[f32]) -> Option<Vec<f64>> {
    let mut max = f64::NEG_INFINITY;
    for &x in row {
        let x = f64::from(x);
        if x.is_nan() || x == f64::INFINITY {
            return None;
        }
        max = max.max(x);
    }
    if !max.is_finite() {
        return None;
    }
    let sum: f64 = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let lse = max + sum.ln();
    Some(row.iter().map(|&x| f64::from(x) - lse).collect())
}

/// The most likely id (the first of equal ones, like the greedy sampler).
pub fn argmax(logp: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &x) in logp.iter().enumerate() {
        if x > logp[best] {
            best = i;
        }
    }
    best as u32
}

/// KL(P || Q) = Σ p · (log p − log q) in nats, from log-probabilities.
/// Terms with p = 0 are 0; it is never negative (rounding is clamped).
pub fn kl(logp: &[f64], logq: &[f64]) -> f64 {
    let total: f64 = logp
        .iter()
        .zip(logq)
        .filter(|(&lp, _)| lp > f64::NEG_INFINITY)
        .map(|(&lp, &lq)| lp.exp() * (lp - lq))
        .sum();
    total.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one_and_kl_is_zero_only_for_equal_rows() {
        let row = [1.0f32, 2.0, 3.0, -1e4];
        let lp = log_softmax(&row).expect("finite");
        let total: f64 = lp.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-15);
        assert!((lp[2] - lp[1] - 1.0).abs() < 1e-15);
        assert_eq!(argmax(&lp), 2);
        assert_eq!(kl(&lp, &lp), 0.0);
        let lq = log_softmax(&[3.0, 2.0, 1.0, 0.0]).expect("finite");
        assert!(kl(&lp, &lq) > 0.1);
        assert!(log_softmax(&[1.0, f32::NAN]).is_none());
        assert!(log_softmax(&[f32::NEG_INFINITY; 3]).is_none());
    }
}
