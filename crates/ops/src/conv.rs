//! Causal depthwise conv1d over time with a carried state (spec §2.2 step 2).

/// Convolves `u [T, channels]` (time-major) with `weight [channels, k]` causally:
/// `c[t, ch] = Σ_j weight[ch, j] · u[t − (k−1) + j, ch]`, where inputs before the
/// first row come from `state [k−1, channels]` (the previous call's last `k−1`
/// pre-conv inputs, oldest first; zeros at sequence start). Updates `state` to
/// the last `k−1` inputs seen. No bias, no activation.
pub fn causal_conv1d(
    u: &[f32],
    channels: usize,
    weight: &[f32],
    k: usize,
    state: &mut [f32],
) -> Vec<f32> {
    let t_len = u.len() / channels;
    let hist = k - 1;
    // Extended input: history rows then the new rows.
    let ext_row = |e: usize| -> &[f32] {
        if e < hist {
            &state[e * channels..(e + 1) * channels]
        } else {
            &u[(e - hist) * channels..(e - hist + 1) * channels]
        }
    };
    let mut out = vec![0.0f32; u.len()];
    for t in 0..t_len {
        let o = &mut out[t * channels..(t + 1) * channels];
        for j in 0..k {
            let row = ext_row(t + j);
            for ch in 0..channels {
                o[ch] += weight[ch * k + j] * row[ch];
            }
        }
    }
    // New state: the last k−1 rows of the extended input.
    let total = hist + t_len;
    let new_state: Vec<f32> = (total - hist..total)
        .flat_map(|e| ext_row(e).to_vec())
        .collect();
    state.copy_from_slice(&new_state);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Independent formulation: per channel, a plain 1-D convolution of the
    /// zero-padded full sequence.
    fn conv_naive(u: &[f32], channels: usize, w: &[f32], k: usize) -> Vec<f32> {
        let t_len = u.len() / channels;
        let mut out = vec![0.0; u.len()];
        for ch in 0..channels {
            for t in 0..t_len {
                let mut s = 0.0f64;
                for j in 0..k {
                    let tau = t as isize - (k as isize - 1) + j as isize;
                    if tau >= 0 {
                        s += w[ch * k + j] as f64 * u[tau as usize * channels + ch] as f64;
                    }
                }
                out[t * channels + ch] = s as f32;
            }
        }
        out
    }

    #[test]
    fn conv_matches_naive_and_state_carries_across_calls() {
        let seed = 21;
        let mut rng = Rng::new(seed);
        for (channels, k, t_len) in [(5usize, 4usize, 9usize), (3, 1, 4), (7, 2, 1), (4, 4, 2)] {
            let u = rng.normal_vec(t_len * channels);
            let w = rng.normal_vec(channels * k);
            let want = conv_naive(&u, channels, &w, k);
            let mut state = vec![0.0; (k - 1) * channels];
            let whole = causal_conv1d(&u, channels, &w, k, &mut state);
            // Same input split into a prefix and single steps.
            let mut state2 = vec![0.0; (k - 1) * channels];
            let split = t_len / 2;
            let mut pieces = causal_conv1d(&u[..split * channels], channels, &w, k, &mut state2);
            for t in split..t_len {
                pieces.extend(causal_conv1d(
                    &u[t * channels..(t + 1) * channels],
                    channels,
                    &w,
                    k,
                    &mut state2,
                ));
            }
            for (i, ((a, b), c)) in whole.iter().zip(&pieces).zip(&want).enumerate() {
                assert!(
                    (a - c).abs() < 1e-5 && (b - c).abs() < 1e-5,
                    "seed {seed} C {channels} K {k} i {i}: {a} {b} {c}"
                );
            }
            assert_eq!(state, state2);
        }
    }
}
