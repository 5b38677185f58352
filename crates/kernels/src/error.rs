//! Typed errors of the GPU layer: each names the kernel, buffer or adapter and the numbers.

use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum KernelError {
    #[error("no GPU adapter found{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    NoAdapter { detail: String },
    #[error("adapter `{wanted}` not found; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error("could not create a device on `{adapter}`: {detail}")]
    DeviceRequest { adapter: String, detail: String },
    #[error("the GPU device was lost ({reason}){during}", during = if .during.is_empty() { String::new() } else { format!(" during {}", .during) })]
    DeviceLost { reason: String, during: String },
    #[error("GPU out of memory during {during}: {detail}")]
    OutOfMemory { during: String, detail: String },
    #[error("GPU validation error in {during}: {detail}")]
    Validation { during: String, detail: String },
    #[error("GPU internal error in {during}: {detail}")]
    Internal { during: String, detail: String },
    #[error("shader `{shader}` entry `{entry}` failed to compile: {detail}")]
    Compile {
        shader: String,
        entry: String,
        detail: String,
    },
    #[error("{what}: {bytes} bytes exceeds this adapter's {limit_name} of {limit} bytes")]
    Capacity {
        what: String,
        bytes: u64,
        limit_name: &'static str,
        limit: u64,
    },
    #[error("{what}: {detail}")]
    Unsupported { what: String, detail: String },
    #[error("invalid arguments to kernel `{kernel}`: {detail}")]
    Arguments {
        kernel: &'static str,
        detail: String,
    },
    #[error("reading back `{buffer}` failed: {detail}")]
    Readback { buffer: String, detail: String },
    #[error("GPU did not finish within {seconds} s during {during}")]
    Timeout { during: String, seconds: u64 },
}

impl KernelError {
    /// Builds the matching variant from a wgpu error caught by an error scope or the
    /// uncaptured-error handler.
    pub fn from_wgpu(e: &wgpu::Error, during: &str) -> Self {
        let during = during.to_string();
        match e {
            wgpu::Error::OutOfMemory { .. } => KernelError::OutOfMemory {
                during,
                detail: e.to_string(),
            },
            wgpu::Error::Validation { description, .. } => KernelError::Validation {
                during,
                detail: description.clone(),
            },
            wgpu::Error::Internal { description, .. } => KernelError::Internal {
                during,
                detail: description.clone(),
            },
        }
    }
}
