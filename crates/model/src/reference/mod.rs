//! Plain f32 CPU implementation of the Qwen3.5 text forward pass (spec §2):
//! readable loops over f32 slices, used as the oracle for GPU kernels and checked
//! against Hugging Face logits by `crate::golden`.
//!
//! The per-op math lives in [`qwgpu_ops`] (shared with the GPU kernel tests);
//! [`norm`] (RMSNorm variants), [`rope`], [`conv`] (causal conv1d) and
//! [`delta_rule`] (recurrent and chunked gated delta rule) are its modules,
//! re-exported here. This module wires them into layers: `gdn` (the GDN
//! layer), `attention`, `mlp` / [`moe`], [`cache`], and `model`
//! ([`ReferenceModel`]).

mod attention;
pub mod cache;
pub mod capacity;
mod gdn;
mod linear;
mod mlp;
mod model;
pub mod moe;
mod weights;

pub use qwgpu_ops::{conv, delta_rule, norm, rope};

pub use cache::{Cache, GdnState, KvCache, LayerState};
pub use model::ReferenceModel;

#[cfg(test)]
mod model_tests;

pub(crate) use weights::validate_config;
