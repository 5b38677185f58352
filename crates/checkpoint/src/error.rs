//! The crate's one error type. Every variant names the file and/or tensor and the
//! numbers involved. (Checkpoint helper: extend with the variants you need.)

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: missing tensor(s): {}", dir.display(), names.join(", "))]
    MissingTensor { dir: PathBuf, names: Vec<String> },
    #[error("{}: tensor `{tensor}`: dtype {dtype} is not supported here ({expected})", file.display())]
    UnsupportedDtype {
        file: PathBuf,
        tensor: String,
        dtype: String,
        expected: String,
    },
    #[error("{}: unsupported quantization: {detail}", path.display())]
    UnsupportedQuantization { path: PathBuf, detail: String },
}
