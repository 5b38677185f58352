//! A model uploaded one part at a time, for a reader that fetches a
//! checkpoint part by part (a web page: HTTP range requests or `Blob.slice`)
//! and packs each with [`qwgpu_loader::pack_part`]: it hands a part over,
//! drops it, and fetches the next, so the host never holds more than one
//! part (a layer, the embedding table or the head).

use std::sync::Arc;

use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::GpuContext;
use qwgpu_loader::Part;

use super::upload::{load_threads, FetchedTensors, Uploader};
use super::weights::PartUpload;
use super::GpuModel;
use crate::ModelError;

/// Uploads the parts of a model in the loader's stream order
/// ([`qwgpu_loader::part_ids`]), each checked against the config first;
/// [`PartLoader::finish`] makes the model.
pub struct PartLoader<'a> {
    ctx: &'a Arc<GpuContext>,
    config: &'a TextConfig,
    parts: PartUpload<'a>,
}

impl GpuModel {
    /// A loader of `config`'s model on `ctx`, part by part; `progress` is
    /// told the bytes of each weight as it lands.
    pub fn part_loader<'a>(
        ctx: &'a Arc<GpuContext>,
        config: &'a TextConfig,
        progress: &'a mut dyn FnMut(u64),
    ) -> Result<PartLoader<'a>, ModelError> {
        let u = Uploader::new(ctx, None, progress, load_threads());
        Ok(PartLoader {
            ctx,
            config,
            parts: PartUpload::new(config, u)?,
        })
    }
}

impl PartLoader<'_> {
    /// Checks and uploads `part` (the caller may drop it once this returns).
    pub fn add(&mut self, part: &Part) -> Result<(), ModelError> {
        self.parts.add(part)
    }

    /// [`PartLoader::add`] for a part packed with its weights left in their
    /// sources ([`qwgpu_loader::PackOptions::borrow_sources`]): their bytes
    /// are read from `fetched` (the part's ranged reads, by canonical tensor
    /// name), so the host holds each weight once, never packed beside it.
    /// `fetched` is dropped once the part is uploaded.
    pub fn add_fetched(&mut self, part: &Part, fetched: FetchedTensors) -> Result<(), ModelError> {
        self.parts.add_fetched(part, fetched)
    }

    /// Waits for the uploads and makes the model (steps of at most
    /// `max_chunk` tokens); a part never handed over is an error.
    pub fn finish(self, max_chunk: usize) -> Result<GpuModel, ModelError> {
        let w = self.parts.finish(self.ctx)?;
        Ok(GpuModel::assemble(
            self.ctx.clone(),
            self.config.clone(),
            w,
            max_chunk,
        ))
    }
}
