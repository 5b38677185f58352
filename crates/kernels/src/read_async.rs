//! Readbacks as futures, for callers that cannot block (a web page). On the
//! web they resolve when the browser's `mapAsync` promise does; natively they
//! are the blocking readbacks, ready at once, so one async caller runs on both.

use crate::{GpuContext, KernelError};

impl GpuContext {
    /// [`GpuContext::read_mapped`] as a future: maps a readback buffer that
    /// submitted work has copied into, returns its first `size` bytes and unmaps it.
    pub async fn read_mapped_async(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<u8>, KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.read_mapped(staging, size)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let fail = |detail: String| KernelError::Readback {
                buffer: "readback".into(),
                detail,
            };
            let (tx, rx) = futures_channel::oneshot::channel();
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                // The receiver only goes away with the future: nobody to tell.
                let _ = tx.send(r);
            });
            let mapped = rx.await;
            // A lost device or a validation error may be why it failed.
            self.check("readback")?;
            match mapped {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fail(e.to_string())),
                Err(_) => return Err(fail("the mapping was dropped unanswered".into())),
            }
            let data = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| fail(e.to_string()))?
                .get(..size as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| fail(format!("{size} bytes asked of a smaller buffer")))?;
            staging.unmap();
            Ok(data)
        }
    }

    /// [`GpuContext::read_bytes`] as a future.
    pub async fn read_bytes_async(
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
        self.read_mapped_async(&staging, size).await
    }

    /// [`GpuContext::read_f32`] as a future.
    pub async fn read_f32_async(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        n: usize,
    ) -> Result<Vec<f32>, KernelError> {
        let bytes = self
            .read_bytes_async(buf, offset as u64 * 4, n as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// [`GpuContext::read_u32`] as a future.
    pub async fn read_u32_async(
        &self,
        buf: &wgpu::Buffer,
        offset: usize,
        n: usize,
    ) -> Result<Vec<u32>, KernelError> {
        let bytes = self
            .read_bytes_async(buf, offset as u64 * 4, n as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
