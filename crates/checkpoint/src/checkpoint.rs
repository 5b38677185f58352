//! An opened model folder: config + memory-mapped shards + canonical tensor
//! table, what `qwgpu-loader`, `qwgpu-model` and the CLI open models through.

use std::path::{Path, PathBuf};

use crate::{CheckpointError, ModelConfig, TensorView};

/// Options for [`Checkpoint::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Unexpected tensors (not skippable, not known) become an error instead of a warning.
    pub strict: bool,
}

/// An HF model folder opened for reading.
///
/// ```no_run
/// let ckpt = qwgpu_checkpoint::Checkpoint::open("path/to/Qwen3.5-0.8B")?;
/// let emb = ckpt.tensor("model.embed_tokens.weight")?;
/// assert_eq!(emb.shape, &[ckpt.config().text.vocab_size, ckpt.config().text.hidden_size]);
/// # Ok::<(), qwgpu_checkpoint::CheckpointError>(())
/// ```
pub struct Checkpoint {
    pub(crate) inner: crate::checkpoint_impl::Inner,
}

impl Checkpoint {
    /// Opens `dir`: parses `config.json`, the shard index (or the single
    /// `model.safetensors`), memory-maps and validates every header, canonicalises
    /// names, skips `mtp.*`, `model.visual.*`, `*rotary_emb.inv_freq`, and checks
    /// every required tensor's presence and shape against the config (all missing
    /// tensors listed at once) — before any tensor data is read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        Self::open_with(dir, &OpenOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self, CheckpointError> {
        crate::checkpoint_impl::open(dir.as_ref(), opts)
    }

    pub fn dir(&self) -> &Path {
        crate::checkpoint_impl::dir(self)
    }

    pub fn config(&self) -> &ModelConfig {
        crate::checkpoint_impl::config(self)
    }

    /// The tensor with this canonical name, or `CheckpointError::MissingTensor`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, CheckpointError> {
        self.get(name)
            .ok_or_else(|| CheckpointError::MissingTensor {
                dir: self.dir().to_path_buf(),
                names: vec![name.to_string()],
            })
    }

    /// The tensor with this canonical name, if present.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        crate::checkpoint_impl::get(self, name)
    }

    /// All canonical tensor names (kept ones only), sorted.
    pub fn names(&self) -> Vec<&str> {
        crate::checkpoint_impl::names(self)
    }

    /// Source names that were skipped on purpose (`mtp.*`, `model.visual.*`, ...).
    pub fn skipped(&self) -> &[String] {
        crate::checkpoint_impl::skipped(self)
    }

    /// Canonical names that are neither known nor skippable (warned about unless strict).
    pub fn unexpected(&self) -> &[String] {
        crate::checkpoint_impl::unexpected(self)
    }

    /// Whether it was opened with `OpenOptions { strict: true }` (loaders then
    /// also check tensor values that are cheap to check only when asked for).
    pub fn is_strict(&self) -> bool {
        crate::checkpoint_impl::strict(self)
    }

    /// Every tensor entry of every shard header (kept, skipped and unexpected
    /// alike) with the file holding it: dtypes, shapes and byte ranges, for
    /// reporting sizes without touching tensor data.
    pub fn stored_tensors(&self) -> Vec<(&Path, &crate::HeaderTensor)> {
        crate::checkpoint_impl::stored(self)
    }

    /// The shard files, in index order.
    pub fn files(&self) -> Vec<PathBuf> {
        crate::checkpoint_impl::files(self)
    }

    /// Maps the pages of `bytes` (a tensor's bytes from this checkpoint) in
    /// one call before they are read, instead of one page fault per 4 KiB on
    /// first touch: reading a page-cached 1.5 GB checkpoint ran at 3.5 GB/s
    /// through faults and 7 GB/s after this (Linux `MADV_POPULATE_READ`,
    /// kernel 5.14+). A hint: does nothing elsewhere, on older kernels, or for
    /// bytes not mapped from this checkpoint.
    ///
    /// ```no_run
    /// let ckpt = qwgpu_checkpoint::Checkpoint::open("path/to/Qwen3.5-0.8B")?;
    /// let emb = ckpt.tensor("model.embed_tokens.weight")?;
    /// ckpt.prefetch(emb.bytes);
    /// let copy = emb.bytes.to_vec();
    /// # Ok::<(), qwgpu_checkpoint::CheckpointError>(())
    /// ```
    pub fn prefetch(&self, bytes: &[u8]) {
        crate::checkpoint_impl::prefetch(self, bytes)
    }

    /// Asks the kernel to start reading `bytes` (a tensor's bytes from this
    /// checkpoint) into the page cache and returns at once (`MADV_WILLNEED`):
    /// a cold file is read ahead while earlier bytes are being copied. Unlike
    /// [`Checkpoint::prefetch`] it maps nothing into this process. A hint:
    /// does nothing where unsupported or for bytes not from this checkpoint.
    pub fn will_need(&self, bytes: &[u8]) {
        crate::checkpoint_impl::will_need(self, bytes)
    }

    /// Copies `dst.len()` bytes of tensor `t` (from this checkpoint), from
    /// byte `at` of its data, into `dst` with positioned reads of its file.
    /// Unlike reading `t.bytes` through the map, a file truncated after it
    /// was opened is a [`CheckpointError::TensorRead`] naming the file and
    /// tensor, not a `SIGBUS`; and the copy comes straight from the page
    /// cache, so several threads reading parts of one tensor run in parallel
    /// without faulting its pages into this process.
    ///
    /// ```no_run
    /// let ckpt = qwgpu_checkpoint::Checkpoint::open("path/to/Qwen3.5-0.8B")?;
    /// let emb = ckpt.tensor("model.embed_tokens.weight")?;
    /// let mut first_row = vec![0u8; 2 * ckpt.config().text.hidden_size];
    /// ckpt.read_into(&emb, 0, &mut first_row)?;
    /// # Ok::<(), qwgpu_checkpoint::CheckpointError>(())
    /// ```
    pub fn read_into(
        &self,
        t: &TensorView<'_>,
        at: usize,
        dst: &mut [u8],
    ) -> Result<(), CheckpointError> {
        crate::checkpoint_impl::read_into(self, t, at, dst)
    }
}
