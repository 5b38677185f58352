//! `qwgpu-model`: the Qwen3.5 text model graph.
//!
//! - [`reference`]: plain f32 CPU forward pass, the oracle every GPU kernel and
//!   the GPU model are tested against.

pub mod reference;
