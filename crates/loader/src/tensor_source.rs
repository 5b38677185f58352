//! Where the loader reads tensors from: an opened [`Checkpoint`] or any
//! in-memory map (for other readers and tests).

use std::collections::BTreeMap;

use qwgpu_checkpoint::Checkpoint;

use crate::SourceTensor;

/// A set of named tensors (canonical names: `model.layers.{i}.…`,
/// `model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight`).
/// `Sync`: a load decodes a layer's weights (its MoE experts) on several
/// threads ([`PackOptions::threads`](crate::PackOptions::threads)).
pub trait TensorSource: Sync {
    /// The tensor with this canonical name, if present.
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>>;
    /// Every canonical name.
    fn tensor_names(&self) -> Vec<&str>;
    /// Where the tensor with this canonical name is stored, in words (its own
    /// name and file), for error messages; `None` when the canonical name says it all.
    fn origin(&self, _name: &str) -> Option<String> {
        None
    }
    /// Called with a tensor's bytes just before they are copied: a mapped
    /// source maps their pages in one go ([`Checkpoint::prefetch`]).
    fn prefetch(&self, _bytes: &[u8]) {}
}

impl TensorSource for Checkpoint {
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>> {
        self.get(name).map(|v| SourceTensor::from_view(&v))
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.names()
    }
    fn origin(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| {
            format!(
                "`{v_source_name}` in {v_file_display}",
                v_source_name = v.source_name,
                v_file_display = v.file.display()
            )
        })
    }
    fn prefetch(&self, bytes: &[u8]) {
        Checkpoint::prefetch(self, bytes)
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
