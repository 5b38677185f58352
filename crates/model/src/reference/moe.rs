//! Sparse MoE block with a sigmoid-gated shared expert (spec §2.5).

use qwgpu_ops::activation::sigmoid;
use qwgpu_ops::linalg::dot;

use super::mlp::{swiglu, swiglu_rows};
use super::weights::MoeLayer;

pub use qwgpu_ops::moe::route;

/// MoE block on `x [T, H]`: Σ w_e·expert_e(x) + sigmoid(x·w_sg)·shared(x), per token.
pub(crate) fn forward(w: &MoeLayer, x: &[f32], hidden: usize) -> Vec<f32> {
    let inter = w.moe_intermediate;
    let mut out = Vec::with_capacity(x.len());
    for xt in x.chunks_exact(hidden) {
        let logits = w.router.apply(xt);
        let mut y = vec![0.0f32; hidden];
        for (e, weight) in route(&logits, w.top_k) {
            let ye = swiglu_rows(
                &w.experts_gate_up,
                e * 2 * inter,
                inter,
                &w.experts_down,
                e * hidden,
                xt,
            );
            for (acc, v) in y.iter_mut().zip(&ye) {
                *acc += weight * v;
            }
        }
        let shared = swiglu(&w.shared, xt);
        let gate = sigmoid(dot(xt, w.shared_gate.row(0)));
        for (acc, v) in y.iter_mut().zip(&shared) {
            *acc += gate * v;
        }
        out.extend(y);
    }
    out
}

#[cfg(test)]
mod expert_sum_tests {
    use super::*;
    use crate::reference::linear::Matrix;
    use crate::reference::weights::MlpLayer;
    use crate::testing::Rng;

    fn random_matrix(rng: &mut Rng, rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: rng
                .normal_vec(rows * cols)
                .iter()
                .map(|v| v / (cols as f32).sqrt())
                .collect(),
        }
    }

    /// Expert e cut out of the packed matrices into a stand-alone dense MLP.
    fn expert(w: &MoeLayer, e: usize, hidden: usize) -> MlpLayer {
        let ie = w.moe_intermediate;
        let cols = w.experts_gate_up.cols;
        MlpLayer {
            gate_up: Matrix {
                rows: 2 * ie,
                cols,
                data: w.experts_gate_up.data[e * 2 * ie * cols..(e + 1) * 2 * ie * cols].to_vec(),
            },
            down: Matrix {
                rows: hidden,
                cols: ie,
                data: w.experts_down.data[e * hidden * ie..(e + 1) * hidden * ie].to_vec(),
            },
        }
    }

    #[test]
    fn moe_equals_weighted_sum_of_separately_computed_dense_experts() {
        let seed = 33;
        let mut rng = Rng::new(seed);
        let (h, e, ie, is, k, t) = (12usize, 5usize, 7usize, 6usize, 3usize, 4usize);
        let w = MoeLayer {
            router: random_matrix(&mut rng, e, h),
            moe_intermediate: ie,
            top_k: k,
            experts_gate_up: random_matrix(&mut rng, e * 2 * ie, h),
            experts_down: random_matrix(&mut rng, e * h, ie),
            shared: MlpLayer {
                gate_up: random_matrix(&mut rng, 2 * is, h),
                down: random_matrix(&mut rng, h, is),
            },
            shared_gate: random_matrix(&mut rng, 1, h),
        };
        let x = rng.normal_vec(t * h);
        let got = forward(&w, &x, h);
        for (ti, xt) in x.chunks_exact(h).enumerate() {
            // Router in f64: softmax, sort, top-k, renormalise.
            let logits: Vec<f64> = (0..e)
                .map(|r| {
                    (0..h)
                        .map(|c| w.router.data[r * h + c] as f64 * xt[c] as f64)
                        .sum()
                })
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let mut idx: Vec<usize> = (0..e).collect();
            idx.sort_by(|a, b| p[*b].partial_cmp(&p[*a]).unwrap());
            let top = &idx[..k];
            let z: f64 = top.iter().map(|i| p[*i]).sum();
            let mut want = vec![0.0f64; h];
            for &ei in top {
                let y = swiglu(&expert(&w, ei, h), xt);
                for (acc, v) in want.iter_mut().zip(&y) {
                    *acc += p[ei] / z * *v as f64;
                }
            }
            let sg: f64 = (0..h)
                .map(|c| w.shared_gate.data[c] as f64 * xt[c] as f64)
                .sum();
            let gate = 1.0 / (1.0 + (-sg).exp());
            for (acc, v) in want.iter_mut().zip(&swiglu(&w.shared, xt)) {
                *acc += gate * *v as f64;
            }
            for (j, wv) in want.iter().enumerate() {
                let g = got[ti * h + j] as f64;
                assert!(
                    (g - wv).abs() < 1e-5,
                    "seed {seed} token {ti} dim {j}: {g} vs {wv}"
                );
            }
        }
    }
}
