//! Opening a device in a web page: the browser answers adapter and device
//! requests with promises, so the web's constructor is async where the
//! native one blocks. The rest of the context is shared with native.

use super::{ContextOptions, GpuContext};
use crate::KernelError;

impl GpuContext {
    /// Opens a device on the page's WebGPU adapter, with the adapter's own
    /// limits (a browser's exceed WebGPU's defaults: storage buffers per
    /// stage, workgroup storage). `opts.adapter` is ignored: a page sees one
    /// adapter.
    pub async fn new_web(opts: &ContextOptions) -> Result<Self, KernelError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| KernelError::NoAdapter {
                detail: format!(
                    "this browser offers no WebGPU adapter ({e}); Chromium needs \
                     --enable-unsafe-webgpu where WebGPU is not on by default"
                ),
            })?;
        let (features, limits) = Self::device_plan(&adapter, opts);
        let desc = Self::device_descriptor(features, &limits);
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| KernelError::DeviceRequest {
                    adapter: adapter.get_info().name,
                    detail: e.to_string(),
                })?;
        Ok(Self::from_device(
            &adapter, device, queue, features, limits, opts,
        ))
    }

    /// Always an error on the web: the page's event loop runs a mapping's
    /// callback only after the caller returns, so a blocking readback would
    /// never see it ([`GpuContext::read_mapped_async`] is the web's).
    pub fn read_mapped(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, KernelError> {
        let _ = (staging, size);
        Err(KernelError::Readback {
            buffer: "readback".into(),
            detail: "a blocking readback cannot complete on the web; \
                     use GpuContext::read_mapped_async"
                .into(),
        })
    }
}
