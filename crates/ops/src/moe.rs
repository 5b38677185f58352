//! MoE router (spec §2.5): which experts a token goes to, and with what weight.

use crate::activation::softmax_in_place;

/// Router: softmax over all experts in f32, top-k by probability (ties: lower
/// expert index first), weights renormalised to sum to 1 (always, like HF).
/// Returns `(expert, weight)` pairs, most likely first.
pub fn route(logits: &[f32], top_k: usize) -> Vec<(usize, f32)> {
    let mut p = logits.to_vec();
    softmax_in_place(&mut p);
    let mut order: Vec<usize> = (0..p.len()).collect();
    // Stable sort on descending probability keeps lower indices first on ties.
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    order.truncate(top_k);
    let sum: f32 = order.iter().map(|&e| p[e]).sum();
    order.into_iter().map(|e| (e, p[e] / sum)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_picks_top_k_renormalised_and_breaks_ties_low_first() {
        // logits ln(1), ln(3), ln(3), ln(2): p ∝ 1, 3, 3, 2.
        let logits = [0.0f32, 3f32.ln(), 3f32.ln(), 2f32.ln()];
        let r = route(&logits, 2);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((r[0].1 - 0.5).abs() < 1e-6 && (r[1].1 - 0.5).abs() < 1e-6);
        let r = route(&logits, 3);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!((r[2].1 - 2.0 / 8.0).abs() < 1e-6);
    }
}
