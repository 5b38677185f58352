//! `qwgpu serve`: an OpenAI-compatible HTTP server for qwgpu models.
//!
//! - [`listen`]: the accept loop (connection cap, header / idle timeouts,
//!   draining at shutdown); [`guard`]: the layers every route passes
//!   (body timeout and size, API key, CORS, error counts);
//! - [`app`]: the axum routes (`/v1/chat/completions`, `/v1/completions`,
//!   `/v1/models`, `/health`, `/metrics`) and their OpenAI-style errors;
//! - [`scheduler`]: the engine thread, owner of the model and of every
//!   session, running continuous batching in steps (new requests join between
//!   steps; a long prompt is prefilled a chunk per step while the running
//!   streams keep decoding; a finished or cancelled request leaves without
//!   stalling the others);
//! - [`prefix_cache`]: snapshots of the hybrid (GDN + attention) state keyed
//!   by the exact token prefix they cover, so a chat client resending its
//!   conversation prefills only the new turn;
//! - [`constrain`]: structured output (`response_format`) and forced tool
//!   calls (`tool_choice`), as token masks from the llguidance grammar engine;
//! - [`chat_template`], [`detokenize`]: HF chat templates and streaming
//!   detokenization, shared with the `qwgpu` CLI;
//! - [`chat_request`], [`ordered_json`]: a chat request's messages (tool
//!   calls, reasoning, tool turns, content parts) and tools, read for the
//!   template with their keys in the order the client wrote them, and
//!   `tool_choice`;
//! - [`reasoning`], [`tool_calls`], [`tool_calls_stream`],
//!   [`tool_calls_reply`]: a chat reply split into `reasoning_content`,
//!   `content` and OpenAI `tool_calls` (Qwen3.5's XML calls), streamed or whole.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = qwgpu_serve::ServeOptions::new("tests/fixtures/dense-bf16-text".into());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let state = qwgpu_serve::start(&opts)?;
//! qwgpu_serve::serve(listener, state, &opts, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod app;
pub mod chat_request;
pub mod chat_template;
mod choices;
pub mod constrain;
pub mod detokenize;
pub mod error;
pub mod guard;
pub mod histogram;
pub mod listen;
pub mod metrics;
pub mod model_files;
pub mod options;
pub mod ordered_json;
mod prefill;
pub mod prefix_cache;
mod py_json;
pub mod reasoning;
pub mod request_options;
pub mod sampling_options;
pub mod scheduler;
pub mod stop;
pub mod tokenize;
pub mod tool_calls;
mod tool_calls_python;
pub mod tool_calls_reply;
pub mod tool_calls_stream;

#[cfg(test)]
mod chunked_prefill_tests;
#[cfg(test)]
mod engine_tests;

pub use app::{start, AppState};
pub use error::ServeError;
pub use listen::serve;
pub use options::{parse_duration, parse_size, ServeOptions, DEFAULT_PREFILL_CHUNK};
