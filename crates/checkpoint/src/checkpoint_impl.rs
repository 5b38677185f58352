//! Opening a folder (checkpoint helper implements).
use std::path::{Path, PathBuf};

use crate::{Checkpoint, CheckpointError, ModelConfig, OpenOptions, TensorView};

pub(crate) struct Inner {}

pub(crate) fn open(_dir: &Path, _opts: &OpenOptions) -> Result<Checkpoint, CheckpointError> {
    todo!()
}
pub(crate) fn dir(_c: &Checkpoint) -> &Path {
    todo!()
}
pub(crate) fn config(_c: &Checkpoint) -> &ModelConfig {
    todo!()
}
pub(crate) fn get<'a>(_c: &'a Checkpoint, _name: &str) -> Option<TensorView<'a>> {
    todo!()
}
pub(crate) fn names(_c: &Checkpoint) -> Vec<&str> {
    todo!()
}
pub(crate) fn skipped(_c: &Checkpoint) -> &[String] {
    todo!()
}
pub(crate) fn unexpected(_c: &Checkpoint) -> &[String] {
    todo!()
}
pub(crate) fn files(_c: &Checkpoint) -> Vec<PathBuf> {
    todo!()
}
