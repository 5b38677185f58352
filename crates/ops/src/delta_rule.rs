//! The gated delta rule of one value head (spec §2.2 step 7), in two
//! mathematically identical forms: token-by-token recurrence (decode) and the
//! chunked form HF uses for prefill (`torch_chunk_gated_delta_rule`).
//!
//! Shapes: `q`, `k` `[T, dk]` (already L2-normalised, q scaled by `dk^-0.5`),
//! `v` `[T, dv]`, `g` (log-decay ≤ 0) and `beta` `[T]`; `state` is `S [dk, dv]`
//! row-major, carried across calls. Output `o [T, dv]`.

use crate::linalg::dot;

/// Inputs of one value head.
#[derive(Debug, Clone, Copy)]
pub struct HeadInputs<'a> {
    /// Queries `[T, dk]`, L2-normalised and scaled by `dk^-0.5`.
    pub q: &'a [f32],
    /// Keys `[T, dk]`, L2-normalised.
    pub k: &'a [f32],
    /// Values `[T, dv]`.
    pub v: &'a [f32],
    /// Log-decays `[T]` (≤ 0).
    pub g: &'a [f32],
    /// Write strengths `[T]` in (0, 1).
    pub beta: &'a [f32],
    /// Key head width.
    pub dk: usize,
    /// Value head width.
    pub dv: usize,
}

/// Chunk length of the chunked form (HF and FLA use 64).
pub const CHUNK: usize = 64;

/// Per token: `S ← e^g·S; δ = β(v − Sᵀk); S ← S + kδᵀ; o = Sᵀq`.
pub fn recurrent(x: HeadInputs<'_>, state: &mut [f32]) -> Vec<f32> {
    let (dk, dv) = (x.dk, x.dv);
    let t_len = x.g.len();
    let mut out = vec![0.0f32; t_len * dv];
    let mut delta = vec![0.0f32; dv];
    for t in 0..t_len {
        let (q, k, v) = (
            &x.q[t * dk..][..dk],
            &x.k[t * dk..][..dk],
            &x.v[t * dv..][..dv],
        );
        let decay = x.g[t].exp();
        state.iter_mut().for_each(|s| *s *= decay);
        // δ = β(v − Sᵀk)
        delta.copy_from_slice(v);
        for i in 0..dk {
            let row = &state[i * dv..][..dv];
            for j in 0..dv {
                delta[j] -= row[j] * k[i];
            }
        }
        delta.iter_mut().for_each(|d| *d *= x.beta[t]);
        // S += k δᵀ; o = Sᵀ q
        let o = &mut out[t * dv..][..dv];
        for i in 0..dk {
            let row = &mut state[i * dv..][..dv];
            for j in 0..dv {
                row[j] += k[i] * delta[j];
                o[j] += row[j] * q[i];
            }
        }
    }
    out
}

/// The chunked (WY) form with chunks of [`CHUNK`] tokens; the last chunk may be
/// shorter (equivalent to HF's zero padding, which adds nothing to the state).
pub fn chunked(x: HeadInputs<'_>, state: &mut [f32]) -> Vec<f32> {
    chunked_with(x, state, CHUNK)
}

/// [`chunked`] with an explicit chunk length (tests use small ones too).
pub fn chunked_with(x: HeadInputs<'_>, state: &mut [f32], chunk: usize) -> Vec<f32> {
    let (dk, dv) = (x.dk, x.dv);
    let t_len = x.g.len();
    let mut out = Vec::with_capacity(t_len * dv);
    let mut start = 0;
    while start < t_len {
        let c = chunk.min(t_len - start);
        let sub = HeadInputs {
            q: &x.q[start * dk..(start + c) * dk],
            k: &x.k[start * dk..(start + c) * dk],
            v: &x.v[start * dv..(start + c) * dv],
            g: &x.g[start..start + c],
            beta: &x.beta[start..start + c],
            dk,
            dv,
        };
        out.extend(one_chunk(sub, state));
        start += c;
    }
    out
}

/// One chunk of `c` tokens:
/// γ = cumsum(g); Γᵢⱼ = e^{γᵢ−γⱼ} (i ≥ j); L = strict_lower(diag(β)KKᵀ ⊙ Γ);
/// U = (I+L)⁻¹(β⊙V); W = (I+L)⁻¹(β⊙K⊙e^γ); V' = U − W·S;
/// O = (Q⊙e^γ)·S + ((QKᵀ) ⊙ Γ)·V'; S ← e^{γ_c}·S + (K⊙e^{γ_c−γ})ᵀ·V'.
fn one_chunk(x: HeadInputs<'_>, state: &mut [f32]) -> Vec<f32> {
    let (dk, dv) = (x.dk, x.dv);
    let c = x.g.len();
    let row_k = |i: usize| &x.k[i * dk..][..dk];
    let row_q = |i: usize| &x.q[i * dk..][..dk];
    let mut gamma = vec![0.0f32; c];
    let mut acc = 0.0f32;
    for (i, g) in x.g.iter().enumerate() {
        acc += g;
        gamma[i] = acc;
    }
    let decay = |i: usize, j: usize| (gamma[i] - gamma[j]).exp();

    // L, strictly lower, row-major [c, c].
    let mut l = vec![0.0f32; c * c];
    for i in 0..c {
        for j in 0..i {
            l[i * c + j] = x.beta[i] * dot(row_k(i), row_k(j)) * decay(i, j);
        }
    }
    // Forward substitution for (I + L)·U = β⊙V and (I + L)·W = β⊙K⊙e^γ.
    let mut u = vec![0.0f32; c * dv];
    let mut w = vec![0.0f32; c * dk];
    for i in 0..c {
        let eg = gamma[i].exp();
        for d in 0..dv {
            u[i * dv + d] = x.beta[i] * x.v[i * dv + d];
        }
        for d in 0..dk {
            w[i * dk + d] = x.beta[i] * x.k[i * dk + d] * eg;
        }
        for j in 0..i {
            let lij = l[i * c + j];
            for d in 0..dv {
                u[i * dv + d] -= lij * u[j * dv + d];
            }
            for d in 0..dk {
                w[i * dk + d] -= lij * w[j * dk + d];
            }
        }
    }
    // V' = U − W·S
    let mut vp = u;
    for i in 0..c {
        for a in 0..dk {
            let wia = w[i * dk + a];
            for d in 0..dv {
                vp[i * dv + d] -= wia * state[a * dv + d];
            }
        }
    }
    // O = (Q⊙e^γ)·S + ((QKᵀ)⊙Γ)·V'
    let mut out = vec![0.0f32; c * dv];
    for i in 0..c {
        let eg = gamma[i].exp();
        let o = &mut out[i * dv..][..dv];
        for a in 0..dk {
            let qa = row_q(i)[a] * eg;
            for d in 0..dv {
                o[d] += qa * state[a * dv + d];
            }
        }
        for j in 0..=i {
            let aij = dot(row_q(i), row_k(j)) * decay(i, j);
            for d in 0..dv {
                o[d] += aij * vp[j * dv + d];
            }
        }
    }
    // S ← e^{γ_c}·S + (K⊙e^{γ_c−γ})ᵀ·V'
    let last = c - 1;
    let eg_last = gamma[last].exp();
    state.iter_mut().for_each(|s| *s *= eg_last);
    for j in 0..c {
        let dj = decay(last, j);
        for a in 0..dk {
            let ka = row_k(j)[a] * dj;
            for d in 0..dv {
                state[a * dv + d] += ka * vp[j * dv + d];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{self, Tol};
    use crate::rng::Rng;

    struct Owned {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        g: Vec<f32>,
        beta: Vec<f32>,
        dk: usize,
        dv: usize,
    }

    impl Owned {
        fn random(rng: &mut Rng, t: usize, dk: usize, dv: usize) -> Self {
            let mut unit_rows = |n: usize, scale: f32| {
                let mut x = rng.normal_vec(n * dk);
                for row in x.chunks_exact_mut(dk) {
                    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                    row.iter_mut().for_each(|v| *v *= scale / norm);
                }
                x
            };
            let q = unit_rows(t, 1.0 / (dk as f32).sqrt());
            let k = unit_rows(t, 1.0);
            let v = rng.normal_vec(t * dv);
            // Log-decays in [-2, 0): a mix of slow and fast forgetting.
            let g = (0..t).map(|_| -2.0 * rng.uniform()).collect();
            let beta = (0..t).map(|_| rng.uniform()).collect();
            Self {
                q,
                k,
                v,
                g,
                beta,
                dk,
                dv,
            }
        }
        fn view(&self, r: std::ops::Range<usize>) -> HeadInputs<'_> {
            HeadInputs {
                q: &self.q[r.start * self.dk..r.end * self.dk],
                k: &self.k[r.start * self.dk..r.end * self.dk],
                v: &self.v[r.start * self.dv..r.end * self.dv],
                g: &self.g[r.clone()],
                beta: &self.beta[r],
                dk: self.dk,
                dv: self.dv,
            }
        }
    }

    /// Absolute tolerance `1e-5 · max(1, max|want|)`.
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
        compare::assert_close(got, want, Tol::absolute(1e-5 * scale), what);
    }

    /// Independent formulation of the recurrence in f64 with explicit matrices:
    /// S_t = e^{g}(I − β k kᵀ) S_{t−1} + β k vᵀ, o = S_tᵀ q.
    fn recurrent_f64(x: HeadInputs<'_>, state: &mut [f64]) -> Vec<f64> {
        let (dk, dv) = (x.dk, x.dv);
        let mut out = Vec::new();
        for t in 0..x.g.len() {
            let k: Vec<f64> = x.k[t * dk..][..dk].iter().map(|v| *v as f64).collect();
            let b = x.beta[t] as f64;
            let e = (x.g[t] as f64).exp();
            let mut next = vec![0.0f64; dk * dv];
            for i in 0..dk {
                for d in 0..dv {
                    let mut proj = 0.0;
                    for a in 0..dk {
                        let m = if a == i { 1.0 } else { 0.0 } - b * k[i] * k[a];
                        proj += m * state[a * dv + d];
                    }
                    next[i * dv + d] = e * proj + b * k[i] * x.v[t * dv + d] as f64;
                }
            }
            state.copy_from_slice(&next);
            for d in 0..dv {
                out.push(
                    (0..dk)
                        .map(|i| state[i * dv + d] * x.q[t * dk + i] as f64)
                        .sum(),
                );
            }
        }
        out
    }

    #[test]
    fn recurrent_matches_matrix_form_in_f64() {
        let seed = 3;
        let mut rng = Rng::new(seed);
        let x = Owned::random(&mut rng, 9, 5, 3);
        let mut s = vec![0.0f32; 15];
        let got = recurrent(x.view(0..9), &mut s);
        let mut s64 = vec![0.0f64; 15];
        let want: Vec<f32> = recurrent_f64(x.view(0..9), &mut s64)
            .iter()
            .map(|v| *v as f32)
            .collect();
        assert_close(&got, &want, &format!("seed {seed} output"));
        let s64: Vec<f32> = s64.iter().map(|v| *v as f32).collect();
        assert_close(&s, &s64, &format!("seed {seed} state"));
    }

    #[test]
    fn chunked_equals_recurrent_with_carried_state() {
        for (seed, t, dk, dv) in [
            (1u64, 1usize, 16usize, 16usize),
            (2, 3, 5, 7),
            (3, 65, 16, 8),
            (4, 130, 13, 6),
        ] {
            let mut rng = Rng::new(seed);
            let x = Owned::random(&mut rng, t + 5, dk, dv);
            // A previous call leaves a non-zero initial state.
            let mut s_rec = vec![0.0f32; dk * dv];
            recurrent(x.view(0..5), &mut s_rec);
            let mut s_chk = s_rec.clone();
            let want = recurrent(x.view(5..t + 5), &mut s_rec);
            let got = chunked(x.view(5..t + 5), &mut s_chk);
            assert_close(&got, &want, &format!("seed {seed} T {t} output"));
            assert_close(&s_chk, &s_rec, &format!("seed {seed} T {t} state"));
            // Small chunks exercise many chunk boundaries.
            let mut s_small = vec![0.0f32; dk * dv];
            recurrent(x.view(0..5), &mut s_small);
            let got = chunked_with(x.view(5..t + 5), &mut s_small, 4);
            assert_close(&got, &want, &format!("seed {seed} T {t} chunk 4 output"));
        }
    }

    #[test]
    fn chunked_prefill_then_recurrent_decode_matches_all_recurrent() {
        let seed = 9;
        let mut rng = Rng::new(seed);
        let (dk, dv) = (8, 4);
        let x = Owned::random(&mut rng, 70, dk, dv);
        let mut s_a = vec![0.0f32; dk * dv];
        let want = recurrent(x.view(0..70), &mut s_a);
        let mut s_b = vec![0.0f32; dk * dv];
        let mut got = chunked(x.view(0..67), &mut s_b);
        for t in 67..70 {
            got.extend(recurrent(x.view(t..t + 1), &mut s_b));
        }
        assert_close(&got, &want, &format!("seed {seed}"));
    }
}
