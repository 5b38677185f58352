//! Buffer helpers: storage and uniform buffers with limit checks, uploads, and
//! readback through `map_async`.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::{Arc, Mutex};

use crate::{GpuContext, KernelError};

/// Every buffer is at least this big (zero-sized bindings are invalid) and a
/// multiple of it (vec4 loads at the tail stay in bounds).
pub const MIN_BUFFER: u64 = 16;

fn padded(bytes: u64) -> u64 {
    bytes.max(MIN_BUFFER).div_ceil(MIN_BUFFER) * MIN_BUFFER
}

impl GpuContext {
    /// Fails with [`KernelError::Capacity`] if a `bytes`-sized binding of `what`
    /// exceeds this device's limits.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<(), KernelError> {
        if bytes > self.limits.max_buffer_size {
            return Err(KernelError::Capacity {
                what: what.to_string(),
                bytes,
                limit_name: "max_buffer_size",
                limit: self.limits.max_buffer_size,
            });
        }
        let bind = self.limits.max_storage_buffer_binding_size;
        if bytes > bind {
            return Err(KernelError::Capacity {
                what: what.to_string(),
                bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: bind,
            });
        }
        Ok(())
    }

    /// An uninitialised storage buffer (also a copy source and destination).
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, KernelError> {
        let size = padded(bytes);
        self.check_binding(label, size)?;
        self.scoped(label, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer holding `data` (padded with zeros to [`MIN_BUFFER`]).
    pub fn upload<T: bytemuck::Pod>(
        &self,
        label: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer, KernelError> {
        self.upload_bytes(label, bytemuck::cast_slice(data))
    }

    /// A storage buffer holding `bytes` (padded with zeros).
    pub fn upload_bytes(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer, KernelError> {
        let size = padded(bytes.len() as u64);
        self.check_binding(label, size)?;
        let buf = self.storage(label, size)?;
        // write_buffer, not a mapped-at-creation init: on a lost device the latter panics.
        let whole = bytes.len() / 4 * 4;
        self.queue.write_buffer(&buf, 0, &bytes[..whole]);
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        Ok(buf)
    }

    /// A uniform buffer holding `value` (kernel parameters).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let mut contents = bytemuck::bytes_of(value).to_vec();
        contents.resize(padded(contents.len() as u64) as usize, 0);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: contents.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // write_buffer, not a mapped-at-creation init: on a lost device the latter panics.
        self.queue.write_buffer(&buf, 0, &contents);
        buf
    }

    /// Overwrites a buffer with f32 `value` (tests poison outputs with NaN).
    pub fn fill_f32(&self, buf: &wgpu::Buffer, value: f32) {
        let n = (buf.size() / 4) as usize;
        self.queue
            .write_buffer(buf, 0, bytemuck::cast_slice(&vec![value; n]));
    }

    /// Copies `size` bytes at `offset` of `buf` back to the host: a staging copy,
    /// `map_async`, then a wait (the only blocking step, native only).
    pub fn read_bytes(
        &self,
        buf: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>, KernelError> {
        let size4 = size.div_ceil(4) * 4;
        let staging = self.readback_buffer("readback", size4);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, offset, &staging, 0, size4);
        self.queue.submit([enc.finish()]);
        self.read_mapped(&staging, size)
    }

    /// A small host-readable buffer reused for every readback of a session (the
    /// sampled token), so decode allocates nothing per step.
    pub fn readback_buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.div_ceil(4).max(1) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Maps a [`GpuContext::readback_buffer`] that submitted work has copied into,
    /// returns its first `size` bytes and unmaps it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, KernelError> {
        let label = "readback".to_string();
        let result: Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
        let slot = result.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut s) = slot.lock() {
                *s = Some(r);
            }
        });
        // A hardware adapter is spun on with non-blocking polls: a blocking
        // wait took 65-100 µs from submit to done on the H100 even for 5 µs of
        // GPU work, spinning 20-25 µs (dispatch-overhead-h100.md), and decode
        // reads a token back every step. A software adapter needs the CPU for
        // the work itself, so it blocks.
        if self.software {
            self.wait("readback")?;
        }
        // Another thread's poll may be the one running our callback: our own poll
        // can return just before it lands, so wait (bounded) for the slot.
        let started = std::time::Instant::now();
        let mut spins = 0u32;
        let outcome = loop {
            if let Some(r) = result.lock().ok().and_then(|mut s| s.take()) {
                break Some(r);
            }
            if started.elapsed() > crate::WAIT_TIMEOUT {
                break None;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                // A lost device never completes the mapping.
                self.check("readback")?;
            }
            let _ = self.device.poll(wgpu::PollType::Poll);
            std::thread::yield_now();
        };
        match outcome {
            Some(Ok(())) => {
                let data =
                    staging
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| KernelError::Readback {
                            buffer: label.clone(),
                            detail: e.to_string(),
                        })?[..size as usize]
                        .to_vec();
                staging.unmap();
                Ok(data)
            }
            Some(Err(e)) => Err(KernelError::Readback {
                buffer: label,
                detail: e.to_string(),
            }),
            None => Err(KernelError::Readback {
                buffer: label,
                detail: "the mapping never completed".into(),
            }),
        }
    }

    /// `n` f32 values at element `offset` of `buf`.
    pub fn read_f32(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        n: usize,
    ) -> Result<Vec<f32>, KernelError> {
        let bytes = self.read_bytes(buf, offset as u64 * 4, n as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// `n` u32 values at element `offset` of `buf`.
    pub fn read_u32(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        n: usize,
    ) -> Result<Vec<u32>, KernelError> {
        let bytes = self.read_bytes(buf, offset as u64 * 4, n as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
