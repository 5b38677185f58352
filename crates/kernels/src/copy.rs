//! Word copies between buffers by a kernel (state snapshots and forks; on the
//! H100 a kernel copies ~7× faster than `copy_buffer_to_buffer`).

use crate::dispatch::{grid_1d, Dispatch};
use crate::shaders;
use crate::{GpuContext, KernelError, PipelineKey};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    src_off: u32,
    dst_off: u32,
    n: u32,
    _pad: u32,
}

const WG: u32 = 256;

/// A launch copying `words` u32 words from `src[src_off..]` to `dst[dst_off..]`.
pub fn copy_words(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    src_off: u32,
    dst: &wgpu::Buffer,
    dst_off: u32,
    words: u32,
) -> Result<Dispatch, KernelError> {
    for (what, buf, off) in [("source", src, src_off), ("destination", dst, dst_off)] {
        if (off as u64 + words as u64) * 4 > buf.size() {
            return Err(KernelError::Arguments {
                kernel: "copy_words",
                detail: format!(
                    "{what} range {}..{} words exceeds its {} bytes",
                    off,
                    off as u64 + words as u64,
                    buf.size()
                ),
            });
        }
    }
    let key = PipelineKey::new(&[&shaders::COPY], "copy_words").constant("WG", WG);
    let pipeline = ctx.pipeline(&key)?;
    let params = ctx.uniform(
        "copy params",
        &CopyParams {
            src_off,
            dst_off,
            n: words,
            _pad: 0,
        },
    );
    let bind = ctx.bind(
        &pipeline,
        "copy",
        &[
            src.as_entire_binding(),
            dst.as_entire_binding(),
            params.as_entire_binding(),
        ],
    );
    let groups = words.div_ceil(WG).clamp(1, 4096);
    Ok(Dispatch {
        label: "copy",
        pipeline,
        bind,
        groups: grid_1d(groups).map(|g| g.min(groups)),
    })
}
