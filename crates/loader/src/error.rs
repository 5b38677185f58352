//! Loader errors (loader helper extends).

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error(transparent)]
    Checkpoint(#[from] qwgpu_checkpoint::CheckpointError),
}
