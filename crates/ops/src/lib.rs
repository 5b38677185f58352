//! `qwgpu-ops`: the one CPU f32 implementation of each Qwen3.5 op.
//!
//! The reference model (`qwgpu-model`) is built from these functions, and the
//! WGSL kernel tests (`qwgpu-kernels`) check each kernel against the same
//! functions, so both test against identical arithmetic. Plain loops over f32
//! slices, no GPU and no dependencies.
//!
//! - [`activation`]: sigmoid, SiLU, softplus, softmax, SwiGLU gating.
//! - [`int4`]: dequantization of 4-bit (GPTQ / AWQ / W4A16) weights.
//! - [`linalg`]: the blocked [`dot`](linalg::dot) and `y = x · Wᵀ`.
//! - [`norm`]: RMSNorm variants (`1 + w`, gated plain `w`) and L2 normalisation.
//! - [`rope`]: partial NeoX rotary embedding.
//! - [`conv`]: causal depthwise conv1d with carried state.
//! - [`gdn_gates`]: the Gated DeltaNet's β and log-decay g.
//! - [`delta_rule`]: recurrent and chunked gated delta rule.
//! - [`attention`]: causal grouped-query softmax attention.
//! - [`mixers`]: the GDN and gated-attention layer cores composed from the above.
//! - [`moe`]: MoE router (softmax, top-k, renormalise).
//! - [`sampling`]: argmax and temperature / top-k / top-p selection.
//! - [`rng`]: seeded SplitMix64 and a test RNG.
//! - [`compare`]: tolerances and error reports for tests.

#![warn(missing_docs)]

pub mod activation;
pub mod attention;
pub mod compare;
pub mod conv;
pub mod delta_rule;
pub mod gdn_gates;
pub mod int4;
pub mod linalg;
pub mod mixers;
pub mod moe;
pub mod norm;
pub mod rng;
pub mod rope;
pub mod sampling;
