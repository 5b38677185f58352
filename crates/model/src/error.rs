//! The crate's one error type. Every variant names the tensor, file or value and
//! the numbers involved.

use std::path::PathBuf;

/// Errors of the reference model, the golden-fixture checks and the sampler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Boxed: the wrapped errors carry several strings and would make every
    /// `Result` of this crate large.
    #[error(transparent)]
    Checkpoint(Box<qwgpu_checkpoint::CheckpointError>),
    #[error(transparent)]
    Load(Box<qwgpu_loader::LoadError>),
    /// The GPU backend: no adapter, device lost, out of memory, limits, shaders.
    #[error(transparent)]
    Gpu(Box<qwgpu_kernels::KernelError>),
    /// A weight's shape disagrees with the config.
    #[error("weight `{tensor}`: shape {got:?}, expected {expected:?} ({why})")]
    WeightShape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
        why: &'static str,
    },
    /// Dequantization returned a buffer of the wrong length.
    #[error(
        "weight `{tensor}`: dequantized to {got} values, expected {expected} ({rows} x {cols})"
    )]
    DequantizedLength {
        tensor: String,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    /// The config cannot describe a runnable model (checked again here because a
    /// `PackedModel` may be built in memory, bypassing the checkpoint reader).
    #[error("config: {detail}")]
    Config { detail: String },
    /// A caller passed arguments that cannot work together (e.g. batch slices
    /// of different lengths, an empty token list, a session of another model).
    #[error("invalid argument: {detail}")]
    InvalidArgument { detail: String },
    /// An invariant of qwgpu itself broke (a bug, or an earlier panic that
    /// left shared state behind); not caused by the input.
    #[error("internal error: {detail}")]
    Internal { detail: String },
    /// The model and the session or snapshot passed to it run on different
    /// backends (GPU vs CPU reference).
    #[error("a {session} session or snapshot was passed to a {model} model")]
    WrongBackend {
        model: &'static str,
        session: &'static str,
    },
    /// Layer `layer` has a mixer / FFN other than the config says.
    #[error("layer {layer}: config says {expected}, weights hold {got}")]
    LayerKind {
        layer: usize,
        expected: &'static str,
        got: &'static str,
    },
    #[error("token id {token} at input index {index} is out of range (vocab size {vocab})")]
    TokenOutOfRange {
        token: u32,
        index: usize,
        vocab: usize,
    },
    /// A cache from another model (different layer structure) was passed in.
    #[error("cache does not fit this model: {detail}")]
    CacheMismatch { detail: String },
    /// The f32 CPU reference would need more memory than this machine has free.
    #[error(
        "model too large for the CPU reference backend: {params} parameters need about {needed_bytes} bytes in f32 (plus packing), but only {available_bytes} bytes are available{hint}"
    )]
    TooLarge {
        params: u64,
        needed_bytes: u64,
        available_bytes: u64,
        hint: &'static str,
    },
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A golden fixture file is malformed or inconsistent.
    #[error("{path}: {detail}", path = path.display())]
    Golden { path: PathBuf, detail: String },
    /// Invalid sampling parameters.
    #[error("sampler: {detail}")]
    Sampling { detail: String },
    /// The logits to sample from hold a NaN or +inf (or are all -inf): the
    /// weights or the forward pass produced non-numbers, so no token is made up.
    #[error("the logits after {position} tokens are not finite (NaN or infinity): the model's weights or its forward pass produced non-numbers")]
    NonFiniteLogits {
        /// Tokens of the sequence processed when the logits were computed.
        position: usize,
    },
    /// A step's allowed-token mask (see [`crate::sampling::StepControls`])
    /// allows no token of the vocabulary, so no token can be sampled.
    #[error("the token mask for the step after {position} tokens allows no token of the vocabulary of {vocab}")]
    NoAllowedToken {
        /// Tokens of the sequence processed when the mask was applied.
        position: usize,
        vocab: usize,
    },
    /// A step's mask callback failed (e.g. the grammar rejected the output).
    #[error("the token mask callback failed: {source}")]
    MaskCallback {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<qwgpu_checkpoint::CheckpointError> for ModelError {
    fn from(e: qwgpu_checkpoint::CheckpointError) -> Self {
        Self::Checkpoint(Box::new(e))
    }
}

impl From<qwgpu_loader::LoadError> for ModelError {
    fn from(e: qwgpu_loader::LoadError) -> Self {
        Self::Load(Box::new(e))
    }
}

impl From<qwgpu_kernels::KernelError> for ModelError {
    fn from(e: qwgpu_kernels::KernelError) -> Self {
        ModelError::Gpu(Box::new(e))
    }
}
