//! `qwgpu-checkpoint`: read Hugging Face Qwen3.5 model folders as released.
//!
//! - `config.json` → [`ModelConfig`] (wrapper with `text_config` or text-only;
//!   dense or MoE; typed [`QuantizationConfig`]).
//! - `model.safetensors` or sharded `model.safetensors.index.json`, memory-mapped,
//!   every header validated beyond what the `safetensors` crate checks
//!   (duplicate names, unaligned offsets, path traversal in the index, ...).
//! - Canonical tensor names (`model.layers.*`, `lm_head.weight`); `mtp.*`,
//!   `model.visual.*` and `rotary_emb.inv_freq` skipped.
//!
//! No GPU dependency: usable by any engine.

mod checkpoint;
mod checkpoint_impl;
mod config_parse;
mod tensor_convert;
mod config;
mod dtype;
mod error;
pub mod quant;
mod tensor;

pub use checkpoint::{Checkpoint, OpenOptions};
pub use config::{FfnConfig, LayerType, ModelConfig, RopeConfig, TextConfig};
pub use dtype::Dtype;
pub use error::CheckpointError;
pub use quant::QuantizationConfig;
pub use tensor::TensorView;
