//! `qwgpu-loader`: turn checkpoint tensors into packed, scale-carrying weights.
//!
//! Qwen3.5 checkpoints store projections the engine fuses (`q|gate`+`k`+`v`,
//! `gate`+`up`, `in_proj_qkv`+`in_proj_z`, `in_proj_b`+`in_proj_a`, MoE experts)
//! and FP8 scales in several schemes (per-tensor, `[k]` per-shard, per-channel,
//! block). This crate packs them into [`PackedWeight`]s whose shard table and
//! [`ScaleScheme`] are exact by construction: a one-element scale is broadcast
//! to every logical shard its tensor covers, per-shard scales are sliced,
//! per-channel and block scales stay with their own rows, every declared shard is
//! loaded exactly once, and anything ambiguous is a [`LoadError`] naming the
//! tensor. No GPU dependency.
//!
//! - [`pack`]: the core, on plain in-memory [`SourceWeight`]s (usable by any engine).
//! - [`dequantize`]: exact CPU dequantization (`f32(q) · scale`, or `(q - zero) · scale`
//!   for 4-bit weights) of any packed weight.
//! - [`int4`]: the one canonical host form of 4-bit weights (GPTQ, AWQ,
//!   compressed-tensors), [`PackedWeight::int4`] → [`Int4View`].
//! - [`load_model`] / [`load_from_source`]: the whole text model.
//! - [`QuantPolicy`]: what a `quantization_config` says per module
//!   (`modules_to_not_convert`, compressed-tensors `ignore`, ModelOpt `exclude_modules`,
//!   GPTQModel `dynamic` rules), including each module's 4-bit format ([`Int4Rule`]).
//!
//! # 4-bit checkpoints
//!
//! GPTQ (`qweight` / `qzeros` / `scales` / `g_idx`, v1 and v2 zero points),
//! AWQ GEMM (interleaved nibbles along the outputs) and compressed-tensors
//! `pack-quantized` (`weight_packed` / `weight_scale` / `weight_zero_point`)
//! are all repacked into ONE canonical form, [`Int4View`] (see [`int4`] for
//! the exact layout): row-major nibbles along the input dimension, per-group
//! f32 scales and `0..=15` zero points, `W = (q - zero) · scale`. A GPU engine
//! reads only that form ([`PackedWeight::int4`]). compressed-tensors MoE
//! experts are read per expert (`experts.{e}.gate_proj.weight_packed`) or
//! fused as 3-D tensors with a leading expert dimension
//! (`experts.gate_up_proj.weight_packed`, as llm-compressor's `repack_moe`
//! writes transformers' fused experts; gate's and up's scales and zero points
//! stay their own shard's). Activation-order GPTQ
//! weights whose `g_idx` permutes the groups are dequantized to f32 at load
//! (with a warning).
//!
//! # Example: packing an FP8 `in_proj_qkvz` built in memory
//!
//! `in_proj_qkv` (covering the logical shards `q`, `k`, `v`) has a per-tensor
//! scale `[1]`; `in_proj_z` has its own. The packed weight keeps one scale per
//! shard, and dequantizes to the two sources stacked.
//!
//! ```
//! use qwgpu_checkpoint::Dtype;
//! use qwgpu_loader::{
//!     dequantize, e4m3fn_to_f32, pack, PackSpec, QuantPolicy, ScaleScheme, ShardSpec, SourceTensor,
//!     SourceWeight,
//! };
//!
//! # fn main() -> Result<(), qwgpu_loader::LoadError> {
//! let (key_dim, value_dim, hidden) = (4, 2, 3);
//! // FP8 E4M3 bytes: 0x38 = 1.0, 0x40 = 2.0, 0xB8 = -1.0.
//! let qkv_rows = 2 * key_dim + value_dim;
//! let qkv_bytes: Vec<u8> = (0..qkv_rows * hidden).map(|i| [0x38, 0x40, 0xB8][i % 3]).collect();
//! let z_bytes = vec![0x40u8; value_dim * hidden];
//!
//! let qkv = SourceWeight::new(
//!     SourceTensor::new("model.layers.0.linear_attn.in_proj_qkv.weight", Dtype::F8E4M3,
//!                       vec![qkv_rows, hidden], qkv_bytes.as_slice())?,
//!     &["q", "k", "v"], // the tuple shard id
//! )
//! .with_weight_scale(SourceTensor::from_f32(
//!     "model.layers.0.linear_attn.in_proj_qkv.weight_scale", vec![1], &[0.5])?);
//! let z = SourceWeight::new(
//!     SourceTensor::new("model.layers.0.linear_attn.in_proj_z.weight", Dtype::F8E4M3,
//!                       vec![value_dim, hidden], z_bytes.as_slice())?,
//!     &["z"],
//! )
//! .with_weight_scale(SourceTensor::from_f32(
//!     "model.layers.0.linear_attn.in_proj_z.weight_scale", vec![], &[0.25])?);
//!
//! let spec = PackSpec::new(
//!     "model.layers.0.linear_attn.in_proj_qkvz",
//!     vec![ShardSpec::new("q", key_dim), ShardSpec::new("k", key_dim),
//!          ShardSpec::new("v", value_dim), ShardSpec::new("z", value_dim)],
//!     Some(hidden),
//! );
//! let packed = pack(&spec, &[z, qkv], &QuantPolicy::unquantized())?; // any source order
//!
//! // The [1] scale reached all three shards it covers; z kept its own.
//! assert_eq!(packed.scale, ScaleScheme::PerShard { scales: vec![0.5, 0.5, 0.5, 0.25] });
//! assert_eq!(packed.shards.iter().map(|s| s.row_offset).collect::<Vec<_>>(), [0, 4, 8, 10]);
//!
//! // An engine uploads `packed.data` plus the scales; on the CPU:
//! let w = dequantize(&packed)?;
//! let expected: Vec<f32> = qkv_bytes.iter().map(|&b| e4m3fn_to_f32(b) * 0.5)
//!     .chain(z_bytes.iter().map(|&b| e4m3fn_to_f32(b) * 0.25))
//!     .collect();
//! assert_eq!(w, expected);
//! # Ok(())
//! # }
//! ```

mod dequant;
mod error;
mod experts;
mod fp8;
mod ignore;
pub mod int4;
mod model;
mod model_int4;
mod pack;
mod packed;
mod parallel;
mod policy;
mod recycle;
mod scheme;
mod source;
mod tensor_source;

pub use dequant::dequantize;
pub use error::LoadError;
pub use experts::{detect_layout, ExpertLayout};
pub use fp8::{e4m3fn_to_f32, e5m2_to_f32};
pub use ignore::{canonical_name, ModuleList};
pub use int4::{Decoded, Int4Source, Int4Tensors, Int4View, Int4Weights};
pub use model::{
    load_from_source, load_from_source_with, load_model, load_model_with, pack_part, part_ids,
    plan_model, stream_from_source, stream_from_source_with, stream_model, stream_model_borrowing,
    Part, PartId, Progress,
};
pub use pack::{input_scale_name, pack, pack_with, weight_scale_names, PackOptions};
pub use packed::*;
pub use parallel::{load_threads, try_for_each};
pub use policy::{Int4Rule, ModuleRule, QuantPolicy, SchemeKind};
pub use recycle::Recycling;
pub use scheme::DEFAULT_BLOCK;
pub use source::{PackSpec, ShardSpec, SourceTensor, SourceWeight};
pub use tensor_source::TensorSource;
