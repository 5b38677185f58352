//! Activations, written the way torch evaluates them in f32: the scalar
//! [`sigmoid`], [`silu`], [`softplus`], the row-wise [`softmax_in_place`] and
//! the SwiGLU gating [`swiglu_act`].

/// `1 / (1 + e⁻ˣ)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `x · sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// `torch.nn.functional.softplus` with beta 1 and threshold 20: linear above the
/// threshold, where `ln(1 + eˣ)` equals `x` in f32 anyway.
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// Numerically stable softmax in place (max subtracted first).
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// SwiGLU gating of rows `[T, 2·inter]` laid out gate then up (the output of
/// a fused `gate_up` projection): returns `SiLU(g) · u`, `[T, inter]`.
pub fn swiglu_act(gate_up: &[f32], inter: usize) -> Vec<f32> {
    gate_up
        .chunks_exact(2 * inter)
        .flat_map(|row| {
            let (g, u) = row.split_at(inter);
            g.iter()
                .zip(u)
                .map(|(g, u)| silu(*g) * u)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_matches_log1p_exp_and_is_linear_past_threshold() {
        for x in [-30.0f32, -1.0, 0.0, 0.5, 19.9] {
            let want = (1.0f64 + (x as f64).exp()).ln();
            assert!(
                (softplus(x) as f64 - want).abs() < 1e-6 * (1.0 + want),
                "x {x}"
            );
        }
        assert_eq!(softplus(25.0), 25.0);
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
    }

    #[test]
    fn silu_and_sigmoid_known_points() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(silu(0.0), 0.0);
        // silu(1) = 1 / (1 + e^-1)
        assert!((silu(1.0) as f64 - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-7);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let mut x = [1000.0f32, 1000.0, 999.0];
        softmax_in_place(&mut x);
        let e = (-1.0f64).exp();
        let z = 2.0 + e;
        assert!((x[0] as f64 - 1.0 / z).abs() < 1e-6);
        assert!((x[2] as f64 - e / z).abs() < 1e-6);
    }

    #[test]
    fn swiglu_act_gates_each_row_by_silu_of_its_first_half() {
        // Two rows, inter 2: [g0 g1 | u0 u1].
        let y = swiglu_act(&[0.0, 1.0, 5.0, 3.0, -2.0, 2.0, 0.5, -1.0], 2);
        assert_eq!(y, vec![0.0, silu(1.0) * 3.0, silu(-2.0) * 0.5, -silu(2.0)]);
        assert!(swiglu_act(&[], 4).is_empty());
    }
}
