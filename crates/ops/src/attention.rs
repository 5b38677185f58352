//! Causal grouped-query softmax attention (the core of `self_attn`, spec §2.3),
//! without projections, norms, RoPE or the output gate.

use crate::activation::softmax_in_place;
use crate::linalg::dot;

/// Head counts of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Query heads.
    pub nh: usize,
    /// Key / value heads (divides `nh`).
    pub nkv: usize,
    /// Head width.
    pub hd: usize,
}

/// Causal GQA attention of queries `q [T, nh, hd]` at positions `start..start+T`
/// over `keys`/`values` `[S, nkv, hd]` (S ≥ start + T): query t sees keys
/// `0..=start+t`; head h reads kv head `h / (nh / nkv)`; scale `hd^-0.5`.
/// Returns `[T, nh, hd]`.
pub fn causal_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    geo: Geometry,
    start: usize,
) -> Vec<f32> {
    let Geometry { nh, nkv, hd } = geo;
    let group = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let t_len = q.len() / (nh * hd);
    let mut out = vec![0.0f32; q.len()];
    let mut scores = Vec::new();
    for t in 0..t_len {
        let visible = start + t + 1;
        for h in 0..nh {
            let kvh = h / group;
            let qh = &q[(t * nh + h) * hd..][..hd];
            scores.clear();
            scores
                .extend((0..visible).map(|s| dot(qh, &keys[(s * nkv + kvh) * hd..][..hd]) * scale));
            softmax_in_place(&mut scores);
            let oh = &mut out[(t * nh + h) * hd..][..hd];
            for (s, p) in scores.iter().enumerate() {
                let vs = &values[(s * nkv + kvh) * hd..][..hd];
                for (o, v) in oh.iter_mut().zip(vs) {
                    *o += p * v;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Independent formulation: full score matrix per head with an explicit −∞
    /// causal mask, softmax in f64, keys repeated per query head.
    fn naive(q: &[f32], k: &[f32], v: &[f32], geo: Geometry, start: usize) -> Vec<f32> {
        let Geometry { nh, nkv, hd } = geo;
        let t_len = q.len() / (nh * hd);
        let s_len = k.len() / (nkv * hd);
        let mut out = vec![0.0f32; q.len()];
        for h in 0..nh {
            let kvh = h * nkv / nh;
            for t in 0..t_len {
                let logits: Vec<f64> = (0..s_len)
                    .map(|s| {
                        if s > start + t {
                            f64::NEG_INFINITY
                        } else {
                            (0..hd)
                                .map(|d| {
                                    q[(t * nh + h) * hd + d] as f64
                                        * k[(s * nkv + kvh) * hd + d] as f64
                                })
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        }
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = (0..s_len)
                        .map(|s| e[s] / z * v[(s * nkv + kvh) * hd + d] as f64)
                        .sum();
                    out[(t * nh + h) * hd + d] = acc as f32;
                }
            }
        }
        out
    }

    #[test]
    fn causal_gqa_matches_masked_softmax() {
        let seed = 17;
        let mut rng = Rng::new(seed);
        for (nh, nkv, hd, start, t_len) in [
            (4usize, 2usize, 8usize, 0usize, 5usize),
            (6, 3, 3, 4, 1),
            (2, 2, 5, 0, 1),
            (4, 1, 7, 2, 3),
        ] {
            let geo = Geometry { nh, nkv, hd };
            let s_len = start + t_len;
            let q = rng.normal_vec(t_len * nh * hd);
            let k = rng.normal_vec(s_len * nkv * hd);
            let v = rng.normal_vec(s_len * nkv * hd);
            let got = causal_attention(&q, &k, &v, geo, start);
            let want = naive(&q, &k, &v, geo, start);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-5,
                    "seed {seed} nh {nh} nkv {nkv} start {start} i {i}: {g} vs {w}"
                );
            }
        }
    }
}
