//! Qwen3.5 in a web page: the qwgpu engine compiled to `wasm32-unknown-unknown`
//! on the browser's WebGPU adapter.
//!
//! The engine crates build for the web unchanged in what they compute; what
//! differs there is asynchronous: the device is opened with
//! `GpuContext::new_web` and readbacks are awaited
//! ([`GpuModel::forward_async`](qwgpu_model::gpu::GpuModel::forward_async)).
//! A page has no files to map: checkpoints are streamed to the GPU one part
//! at a time, fetched over HTTP or read from picked files with ranged reads
//! (`source`, `load`, and the JavaScript API `WebModel`, on wasm32), or come
//! as bytes ([`memory`], for tests).

pub mod memory;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod api;
#[cfg(target_arch = "wasm32")]
pub mod load;
#[cfg(target_arch = "wasm32")]
pub mod source;

// The chat template code of the server, compiled here as is (a page renders
// prompts exactly as `qwgpu serve` does); the server's own tests cover it.
#[cfg(all(target_arch = "wasm32", not(test)))]
#[allow(dead_code)]
#[path = "../../serve/src/chat_template.rs"]
mod chat_template;
#[cfg(all(target_arch = "wasm32", not(test)))]
#[allow(dead_code)]
#[path = "../../serve/src/ordered_json.rs"]
mod ordered_json;
#[cfg(all(target_arch = "wasm32", not(test)))]
#[allow(dead_code)]
#[path = "../../serve/src/py_json.rs"]
mod py_json;

#[cfg(all(target_arch = "wasm32", not(test)))]
pub use api::WebModel;
pub use memory::{packed_from_bytes, MemoryError};

/// Why a page could not open or run a model.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{file}: {detail}")]
    Source { file: String, detail: String },
    #[error(
        "part {part} of the model is {bytes} bytes, more than the {limit} a page holds at \
         once while loading it (wasm32 addresses 4 GiB)"
    )]
    TooLarge {
        part: String,
        bytes: u64,
        limit: u64,
    },
    #[error("chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Checkpoint(#[from] qwgpu_checkpoint::CheckpointError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Model(#[from] qwgpu_model::ModelError),
}
