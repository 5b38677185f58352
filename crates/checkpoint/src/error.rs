//! The crate's one error type. Every variant names the file and/or tensor and the
//! numbers involved.

use std::path::PathBuf;

/// Everything that can go wrong while reading a checkpoint folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: missing tensor(s): {names}", dir = dir.display(), names = names.join(", "))]
    MissingTensor { dir: PathBuf, names: Vec<String> },
    /// A path that exists but is not a regular file (directory, FIFO, device, socket).
    #[error("{path}: is {kind}, expected {expected}", path = path.display())]
    NotAFile {
        path: PathBuf,
        kind: String,
        expected: String,
    },
    /// A JSON document larger than its cap.
    #[error("{path}: {size} bytes exceed the {max}-byte limit for this file", path = path.display())]
    FileTooLarge { path: PathBuf, size: u64, max: u64 },
    /// A JSON document that does not parse (`line`/`column` 1-based).
    #[error("{path}: invalid JSON at line {line}, column {column}: {detail}", path = path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        detail: String,
    },
    /// Required tensors are missing while many present ones sit under a prefix
    /// qwgpu does not know: most likely another architecture or naming scheme.
    #[error(
        "{dir}: {found} not recognised (qwgpu reads `model.*` / `model.language_model.*` / `lm_head.weight`); \
         {missing_count} required tensor(s) missing, e.g. {examples}",
        dir = dir.display(),
        found = prefixes.iter().map(|(p, n)| format!("{n} tensor(s) under `{p}` were")).collect::<Vec<_>>().join(", "),
        missing_count = missing.len(),
        examples = missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )]
    UnknownPrefix {
        dir: PathBuf,
        /// `(prefix, count)`, most tensors first.
        prefixes: Vec<(String, usize)>,
        missing: Vec<String>,
    },
    #[error("{file}: tensor `{tensor}`: dtype {dtype} is not supported here ({expected})", file = file.display())]
    UnsupportedDtype {
        file: PathBuf,
        tensor: String,
        dtype: String,
        expected: String,
    },
    #[error("{path}: unsupported quantization: {detail}", path = path.display())]
    UnsupportedQuantization { path: PathBuf, detail: String },

    /// A `config.json` field is missing, mistyped, out of range or inconsistent.
    #[error("{path}: field `{field}`: {detail}", path = path.display())]
    Config {
        path: PathBuf,
        field: String,
        detail: String,
    },
    /// The safetensors header itself is malformed (length, UTF-8, JSON, structure).
    #[error("{file}: invalid safetensors header: {detail}", file = file.display())]
    Header { file: PathBuf, detail: String },
    /// One tensor's header entry is inconsistent (offsets, dims, byte length).
    #[error("{file}: tensor `{tensor}`: {detail}", file = file.display())]
    InvalidTensor {
        file: PathBuf,
        tensor: String,
        detail: String,
    },
    /// The same tensor name appears twice in one header.
    #[error("{file}: tensor `{tensor}` appears twice in the header", file = file.display())]
    DuplicateTensor { file: PathBuf, tensor: String },
    /// `model.safetensors.index.json` is malformed.
    #[error("{path}: invalid shard index: {detail}", path = path.display())]
    Index { path: PathBuf, detail: String },
    /// A shard named by the index is not a plain file name inside the folder, or is missing.
    #[error("{index}: shard `{shard}`: {detail}", index = index.display())]
    ShardPath {
        index: PathBuf,
        shard: String,
        detail: String,
    },
    /// The index and the shards' headers disagree about a tensor.
    #[error("{index}: tensor `{tensor}`: {detail}", index = index.display())]
    IndexMismatch {
        index: PathBuf,
        tensor: String,
        detail: String,
    },
    /// The same tensor is stored in two shards.
    #[error("tensor `{tensor}` is stored in two shards: {first} and {second}", first = first.display(), second = second.display())]
    TensorInTwoShards {
        tensor: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// Two source names canonicalise to the same name.
    #[error("{dir}: tensors `{first}` and `{second}` both map to `{canonical}`", dir = dir.display())]
    DuplicateCanonicalName {
        dir: PathBuf,
        canonical: String,
        first: String,
        second: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("{file}: tensor `{tensor}`: shape {got:?}, expected {expected:?} ({formula})", file = file.display())]
    ShapeMismatch {
        file: PathBuf,
        tensor: String,
        got: Vec<usize>,
        expected: Vec<usize>,
        formula: String,
    },
    /// MoE expert tensors of one layer are inconsistent (mixed layouts, ids out of range).
    #[error("{dir}: layer {layer}: tensor `{tensor}`: {detail}", dir = dir.display())]
    ExpertLayout {
        dir: PathBuf,
        layer: usize,
        tensor: String,
        detail: String,
    },
    /// Tensors that are neither known nor skippable, under `OpenOptions { strict: true }`.
    #[error("{dir}: unexpected tensor(s) (strict mode): {names}", dir = dir.display(), names = names.join(", "))]
    UnexpectedTensors { dir: PathBuf, names: Vec<String> },
    /// `to_f32` on FP8 data: dequantization needs the scales.
    #[error("{file}: tensor `{tensor}`: {dtype} data needs its scales; dequantize it with the loader (qwgpu-loader), not `to_f32`", file = file.display())]
    NeedsDequantization {
        file: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// Reading a tensor's bytes from its file failed, or the file ended before
    /// them (it was truncated after the checkpoint was opened).
    #[error("{file}: tensor `{tensor}`: reading {len} bytes at file offset {offset}: {detail}", file = file.display())]
    TensorRead {
        file: PathBuf,
        tensor: String,
        offset: u64,
        len: usize,
        detail: String,
    },
}
