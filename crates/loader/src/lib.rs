//! `qwgpu-loader`: turn checkpoint tensors into packed, scale-carrying weights.
//! (Loader helper: fill in; `packed.rs` is the shared interface.)

mod packed;

pub use packed::*;

mod error;
pub use error::LoadError;

/// Dequantizes any packed weight to row-major f32 `[rows, cols]`.
pub fn dequantize(_w: &PackedWeight) -> Result<Vec<f32>, LoadError> {
    todo!("loader helper")
}

/// Loads and packs the whole text model of an opened checkpoint.
pub fn load_model(_ckpt: &qwgpu_checkpoint::Checkpoint) -> Result<PackedModel, LoadError> {
    todo!("loader helper")
}
