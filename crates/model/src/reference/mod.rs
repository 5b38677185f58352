//! Plain f32 CPU implementation of the Qwen3.5 text forward pass (spec §2):
//! readable loops over f32 slices, used as the oracle for GPU kernels and checked
//! against Hugging Face logits by [`crate::golden`].
//!
//! One file per piece: [`norm`] (RMSNorm variants), [`rope`], [`conv`] (causal
//! conv1d), [`delta_rule`] (recurrent and chunked gated delta rule), `gdn`
//! (the GDN layer), `attention`, `mlp` / [`moe`], [`cache`], and `model`
//! ([`ReferenceModel`]).

mod activation;
mod attention;
pub mod cache;
pub mod capacity;
pub mod conv;
pub mod delta_rule;
mod gdn;
mod linear;
mod mlp;
mod model;
pub mod moe;
pub mod norm;
pub mod rope;
mod weights;

pub use cache::{Cache, GdnState, KvCache, LayerState};
pub use model::ReferenceModel;

#[cfg(test)]
mod model_tests;
