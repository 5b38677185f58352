//! Dense SwiGLU MLP (spec §2.4), also the MoE shared expert.

use qwgpu_ops::activation::swiglu_act;

use super::linear::Matrix;
use super::weights::MlpLayer;

/// `down(SiLU(x·W_gateᵀ) ⊙ (x·W_upᵀ))` with `gate_up` rows = gate then up.
pub(crate) fn swiglu(w: &MlpLayer, x: &[f32]) -> Vec<f32> {
    let inter = w.gate_up.rows / 2;
    swiglu_rows(&w.gate_up, 0, inter, &w.down, 0, x)
}

/// SwiGLU whose gate / up rows start at `gu_start` of a packed `gate_up` matrix
/// (`inter` rows each) and whose down rows start at `down_start` (H rows).
/// Routed experts are row blocks of one packed matrix.
pub(crate) fn swiglu_rows(
    gate_up: &Matrix,
    gu_start: usize,
    inter: usize,
    down: &Matrix,
    down_start: usize,
    x: &[f32],
) -> Vec<f32> {
    debug_assert_eq!(down.cols, inter);
    let gu = gate_up.apply_rows(x, gu_start..gu_start + 2 * inter);
    let act = swiglu_act(&gu, inter);
    let out_rows = gate_up.cols;
    down.apply_rows(&act, down_start..down_start + out_rows)
}
