//! Zero-copy views of checkpoint tensors: `TensorView` is what `qwgpu-loader`
//! reads weights through.

use std::borrow::Cow;
use std::path::Path;

use crate::{CheckpointError, Dtype};

/// A borrowed tensor: canonical name, where it came from, dtype, shape and raw
/// little-endian bytes (straight from the memory map; possibly unaligned).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Canonical name (`model.layers.0...`, `lm_head.weight`).
    pub name: &'a str,
    /// Name as written in the file (e.g. `model.language_model.layers.0...`).
    pub source_name: &'a str,
    /// The safetensors file holding it.
    pub file: &'a Path,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Number of elements (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Converts F32/F16/BF16 data to f32 (exact). Works for unaligned data (copies).
    /// FP8 tensors are an error here: dequantization needs their scales
    /// (see `qwgpu-loader`).
    pub fn to_f32(&self) -> Result<Vec<f32>, CheckpointError> {
        crate::tensor_convert::to_f32(self)
    }

    /// The raw bytes, borrowed when possible.
    pub fn raw(&self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.bytes)
    }
}
