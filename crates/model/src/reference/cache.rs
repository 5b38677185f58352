//! Per-sequence decoding state: KV caches of the full-attention layers, conv and
//! recurrent states of the GDN layers, and the next absolute position.

/// State of one GDN layer.
#[derive(Debug, Clone, PartialEq)]
pub struct GdnState {
    /// The last `K−1` pre-conv inputs, `[K−1, conv_dim]`, oldest first (zeros at start).
    pub conv: Vec<f32>,
    /// Recurrent state `S`, `[nv, dk, dv]` row-major, f32 (zeros at start).
    pub recurrent: Vec<f32>,
}

/// Keys and values of one full-attention layer, after q/k norm and RoPE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KvCache {
    /// `[len, nkv, hd]`.
    pub keys: Vec<f32>,
    /// `[len, nkv, hd]`.
    pub values: Vec<f32>,
}

/// State of one decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerState {
    Linear(GdnState),
    Full(KvCache),
}

/// Everything [`super::ReferenceModel::forward`] carries from one call to the next.
/// Made by [`super::ReferenceModel::new_cache`].
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    pub(crate) position: usize,
    pub(crate) layers: Vec<LayerState>,
}

impl Cache {
    /// Tokens processed so far = absolute position of the next token.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Per-layer states, in layer order (for comparing GPU state against).
    pub fn layers(&self) -> &[LayerState] {
        &self.layers
    }
}
