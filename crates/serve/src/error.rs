//! Errors of starting the server (the HTTP errors are [`crate::api::ApiError`]).

use crate::chat_template::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {detail}")]
    ModelFiles { path: String, detail: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Checkpoint(#[from] qwgpu_checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] qwgpu_model::ModelError),
    #[error("{0}")]
    Options(String),
    #[error("the engine thread stopped while loading the model")]
    EngineGone,
    #[error("starting the engine thread: {0}")]
    Thread(#[source] std::io::Error),
}
