//! Where the loader reads tensors from: an opened [`Checkpoint`] or any
//! in-memory map (for other readers and tests).

use std::collections::BTreeMap;

use qwgpu_checkpoint::Checkpoint;

use crate::SourceTensor;

/// A set of named tensors (canonical names: `model.layers.{i}.…`,
/// `model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight`).
pub trait TensorSource {
    /// The tensor with this canonical name, if present.
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>>;
    /// Every canonical name.
    fn tensor_names(&self) -> Vec<&str>;
}

impl TensorSource for Checkpoint {
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>> {
        self.get(name).map(|v| SourceTensor::from_view(&v))
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.names()
    }
}

impl TensorSource for BTreeMap<String, SourceTensor<'_>> {
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>> {
        self.get(name).map(|t| SourceTensor {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            bytes: std::borrow::Cow::Borrowed(&t.bytes),
        })
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }
}
