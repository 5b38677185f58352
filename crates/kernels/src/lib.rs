//! `qwgpu-kernels`: WGSL compute kernels for Qwen3.5 on any GPU through wgpu.
//!
//! - Device layer: [`GpuContext`] (adapter choice, features, limits, typed errors
//!   from error scopes and the device-lost callback), [`list_adapters`].
//! - Each kernel declared once as a [`spec::KernelSpec`] (module files, entry
//!   point, uniform layouts) beside its host code; [`registry::all`] lists them
//!   for the naga validation and uniform layout tests.
//! - Launches built by [`GpuContext::launch`] (constants, buffers bound by
//!   their WGSL names, uniforms, grid), recorded as [`Dispatch`]es with their
//!   bind groups made once; pipelines cached by [`PipelineKey`].
//! - One host module per kernel family; shaders live in `shaders/*.wgsl`.
//!   Every kernel has a path without subgroups and without f16, within WebGPU's
//!   default limits; the `testing` module (feature `testing`, for this
//!   workspace's tests) runs each kernel test on both paths, and on trusted
//!   (release) shader modules.
//!
//! ```no_run
//! use qwgpu_kernels::{copy, view::TensorView, GpuContext};
//! let ctx = GpuContext::new(&Default::default())?;
//! let src = ctx.upload("src", &[1u32, 2, 3, 4])?;
//! let dst = ctx.storage("dst", 16)?;
//! let (from, to) = (TensorView::words(&src, 0, 4), TensorView::words(&dst, 0, 4));
//! ctx.run("copy", &[&copy::copy_words(&ctx, &from, &to)?])?;
//! assert_eq!(ctx.read_u32(&dst, 0, 4)?, vec![1, 2, 3, 4]);
//! # Ok::<(), qwgpu_kernels::KernelError>(())
//! ```

mod adapters;
mod buffer;
mod context;
mod disk_cache;
mod dispatch;
mod error;
mod launch;
mod pipeline;
mod read_async;
mod reflect;

pub mod attention;
pub mod coop_peak;
pub mod copy;
pub mod embed;
pub mod gdn;
pub mod int4;
pub mod matmul;
pub mod moe;
pub mod norm;
pub mod profile;
pub mod registry;
pub mod sample;
pub mod shaders;
pub mod spec;
pub mod step;
#[cfg(feature = "testing")]
pub mod testing;
mod tuning;
pub mod view;
pub mod weights;

pub use adapters::{list_adapters, AdapterSummary};
pub use buffer::MIN_BUFFER;
pub use context::{Capabilities, ContextOptions, GpuContext, MatmulPrecision, WAIT_TIMEOUT};
pub use disk_cache::PipelineCacheMode;
pub use dispatch::{grid_1d, Dispatch, MAX_GROUPS};
pub use error::KernelError;
pub use launch::Launch;
pub use pipeline::PipelineKey;
pub use step::Step;
pub use tuning::{Int4Gemv, SkinnyTier, SmallT, Tuning};
pub use weights::{GpuWeight, WeightFormat};

/// Re-exported so callers name the same wgpu version.
pub use wgpu;
