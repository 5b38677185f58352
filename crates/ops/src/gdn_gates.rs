//! Per-token gates of the Gated DeltaNet (spec §2.2 step 5), computed from the
//! `in_proj_ba` output: write strength `β = sigmoid(b)` and log-decay
//! `g = −exp(A_log) · softplus(a + dt_bias)` (≤ 0), one of each per value head.

use crate::activation::{sigmoid, softplus};

/// β and g of one token: `ba_row` is `[b (nv) | a (nv)]` with
/// `nv = a_log.len() = dt_bias.len()`; writes `beta[h]` and `g[h]` for `h < nv`.
pub fn gdn_gates_row(
    ba_row: &[f32],
    a_log: &[f32],
    dt_bias: &[f32],
    beta: &mut [f32],
    g: &mut [f32],
) {
    let nv = a_log.len();
    debug_assert_eq!(ba_row.len(), 2 * nv);
    for h in 0..nv {
        beta[h] = sigmoid(ba_row[h]);
        g[h] = -a_log[h].exp() * softplus(ba_row[nv + h] + dt_bias[h]);
    }
}

/// [`gdn_gates_row`] over `ba [T, 2·nv]`: returns `(beta, g)`, each `[T, nv]`.
pub fn gdn_gates(ba: &[f32], a_log: &[f32], dt_bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let nv = a_log.len();
    if nv == 0 {
        return (Vec::new(), Vec::new());
    }
    let t_len = ba.len() / (2 * nv);
    let mut beta = vec![0.0f32; t_len * nv];
    let mut g = vec![0.0f32; t_len * nv];
    for (t, row) in ba.chunks_exact(2 * nv).enumerate() {
        gdn_gates_row(
            row,
            a_log,
            dt_bias,
            &mut beta[t * nv..][..nv],
            &mut g[t * nv..][..nv],
        );
    }
    (beta, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_hand_checked() {
        // nv 2, two tokens. Token 0: b = [0, 2], a = [0, -1]; A_log = [0, ln 2],
        // dt_bias = [0, 1] → β = [0.5, σ(2)], g = [−ln 2, −2·ln 2].
        let ba = [0.0f32, 2.0, 0.0, -1.0, -30.0, 30.0, 25.0, 0.0];
        let a_log = [0.0f32, 2f32.ln()];
        let dt_bias = [0.0f32, 1.0];
        let (beta, g) = gdn_gates(&ba, &a_log, &dt_bias);
        let ln2 = std::f64::consts::LN_2;
        let want_beta = [0.5, 1.0 / (1.0 + (-2.0f64).exp())];
        let want_g = [-ln2, -2.0 * ln2];
        for h in 0..2 {
            assert!((beta[h] as f64 - want_beta[h]).abs() < 1e-7, "beta {h}");
            assert!((g[h] as f64 - want_g[h]).abs() < 1e-6, "g {h}");
        }
        // Token 1: β saturates; softplus is linear past its threshold (25 → 25).
        assert!(beta[2] < 1e-12 && beta[3] == 1.0);
        assert_eq!(g[2], -25.0);
        assert!((g[3] as f64 + 2.0 * (1.0 + 1.0f64.exp()).ln()).abs() < 1e-5);
        assert!(g.iter().all(|v| *v <= 0.0));
    }

    #[test]
    fn row_form_matches_batched_form() {
        let ba = [0.3f32, -0.7, 1.1, 0.2, -0.4, 2.5];
        let a_log = [0.1f32, -0.5, 0.9];
        let dt_bias = [0.0f32, 0.3, -0.2];
        let (beta, g) = gdn_gates(&ba, &a_log, &dt_bias);
        let (mut b1, mut g1) = ([0.0f32; 3], [0.0f32; 3]);
        gdn_gates_row(&ba, &a_log, &dt_bias, &mut b1, &mut g1);
        assert_eq!(beta, b1);
        assert_eq!(g, g1);
    }
}
