//! `qwgpu-model`: the Qwen3.5 text model graph.
//!
//! - [`reference`](mod@reference): plain f32 CPU forward pass, the oracle every GPU kernel and
//!   the GPU model are tested against.
//! - [`sampling`]: greedy / temperature / top-k / top-p token selection.
//! - `golden` (feature `testing`): fixtures with Hugging Face logits and the
//!   check of the reference model against them.
//! - [`engine`]: the backend-neutral API (GPU or CPU reference): load, sessions,
//!   sampling on the device, snapshot / restore / fork.
//! - [`gpu`]: the forward pass on the GPU (weights in their stored formats).
//! - `testing` (feature `testing`): random in-memory models for tests (of this
//!   and other crates of the workspace; not part of the public API).

pub mod engine;
#[cfg(test)]
mod engine_tests;
mod error;
#[cfg(any(test, feature = "testing"))]
pub mod golden;
pub mod gpu;
mod precision;
pub mod reference;
pub mod sampling;
mod shapes;
mod stopwatch;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::ModelError;
pub use precision::{parse_precision, precision_name, MatmulPrecision, DEFAULT_PRECISION};
pub use reference::{Cache, ReferenceModel};
pub use sampling::{argmax, Sampler};
