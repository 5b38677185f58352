//! Puts packed weights on the GPU in their stored formats, reading the bytes
//! of those the loader left unpacked from the checkpoint's map.

use qwgpu_checkpoint::Checkpoint;
use qwgpu_kernels::{GpuContext, GpuWeight};
use qwgpu_loader::PackedWeight;

use crate::ModelError;

/// Uploads weights ([`PackedWeight::borrowed_sources`] from `ckpt`) and
/// reports each weight's bytes to `progress`.
pub(crate) struct Uploader<'a> {
    pub ctx: &'a GpuContext,
    pub ckpt: Option<&'a Checkpoint>,
    pub progress: &'a mut dyn FnMut(u64),
}

impl Uploader<'_> {
    /// A matrix in its stored format.
    pub fn weight(&mut self, w: &PackedWeight) -> Result<GpuWeight, ModelError> {
        let g = match w.borrowed_sources() {
            Some(names) => {
                let ckpt = self.ckpt.ok_or_else(|| ModelError::Internal {
                    detail: format!(
                        "`{}` is to be read from a checkpoint, and none is open",
                        w.name
                    ),
                })?;
                let mut parts = Vec::with_capacity(names.len());
                for name in names {
                    let t = ckpt.tensor(name)?;
                    if t.dtype != w.dtype {
                        let (weight, source, packed) = (&w.name, t.dtype, w.dtype);
                        return Err(ModelError::Config {
                            detail: format!(
                                "`{weight}`: checkpoint tensor `{name}` is {source:?}, the packed weight {packed:?}"
                            ),
                        });
                    }
                    parts.push(t.bytes);
                }
                GpuWeight::upload_from(self.ctx, w, &parts)?
            }
            None => GpuWeight::upload(self.ctx, w)?,
        };
        (self.progress)((w.rows * w.cols * w.dtype.size()) as u64);
        Ok(g)
    }

    /// A small f32 vector (norm weights, conv taps, per-head parameters).
    pub fn vector(&self, name: String, v: &[f32]) -> Result<wgpu::Buffer, ModelError> {
        Ok(self.ctx.upload(&name, v)?)
    }
}
