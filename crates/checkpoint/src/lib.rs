//! `qwgpu-checkpoint`: read Hugging Face Qwen3.5 model folders as released.
//!
//! - `config.json` → [`ModelConfig`] (wrapper with `text_config` or text-only;
//!   dense or MoE; typed [`QuantizationConfig`]).
//! - `model.safetensors` or sharded `model.safetensors.index.json`, memory-mapped,
//!   every header validated beyond what the `safetensors` crate checks
//!   (duplicate names, overflow-checked sizes, path traversal in the index, ...).
//! - Canonical tensor names (`model.layers.*`, `lm_head.weight`); `mtp.*`,
//!   `model.visual.*` and `rotary_emb.inv_freq` skipped.
//! - Every required tensor's presence, shape and dtype checked against the
//!   config from the headers, before any tensor data is touched.
//!
//! No GPU dependency: usable by any engine.
//!
//! ```no_run
//! use qwgpu_checkpoint::{Checkpoint, LayerType, OpenOptions};
//!
//! let ckpt = Checkpoint::open_with("models/Qwen3.5-0.8B", &OpenOptions { strict: true })?;
//! let text = &ckpt.config().text;
//! for (i, lt) in text.layer_types.iter().enumerate() {
//!     if *lt == LayerType::FullAttention {
//!         let q = ckpt.tensor(&format!("model.layers.{i}.self_attn.q_proj.weight"))?;
//!         assert_eq!(q.shape, &[text.q_proj_rows(), text.hidden_size]);
//!     }
//! }
//! let norm: Vec<f32> = ckpt.tensor("model.norm.weight")?.to_f32()?;
//! assert_eq!(norm.len(), text.hidden_size);
//! # Ok::<(), qwgpu_checkpoint::CheckpointError>(())
//! ```

mod checkpoint;
mod checkpoint_impl;
mod config;
mod config_parse;
mod dtype;
mod error;
pub mod expected;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod index;
mod json_fields;
pub mod names;
pub mod quant;
mod quant_int4;
mod quant_parse;
mod shard;
mod tensor;
mod tensor_convert;
mod validate;

pub use checkpoint::{Checkpoint, OpenOptions};
pub use config::{FfnConfig, LayerType, ModelConfig, RopeConfig, TextConfig};
pub use dtype::Dtype;
pub use error::CheckpointError;
pub use header::{parse_header, parse_header_prefix, Header, HeaderTensor};
pub use index::{parse_index, ShardIndex};
pub use names::{canonical_name, canonical_prefix, is_skipped};
pub use quant::QuantizationConfig;
pub use tensor::TensorView;
