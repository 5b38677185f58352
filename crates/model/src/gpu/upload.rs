//! Puts packed weights on the GPU in their stored formats, reading the bytes
//! of those the loader left unpacked from the checkpoint's files.
//!
//! Each weight's buffers are made first, then its rows go through a ring of
//! staging buffers ([`staging`]): copied in by several threads (positioned
//! reads of the checkpoint's files for the tensors the loader left there, so
//! the page cache is copied once and a file truncated mid-load is a typed
//! error), copied out by the GPU while the next slot fills.

mod staging;

use qwgpu_checkpoint::Checkpoint;
use qwgpu_kernels::weights::stride_words;
use qwgpu_kernels::{GpuContext, GpuWeight, WeightFormat};
use qwgpu_loader::{Int4View, PackedWeight};

use crate::stopwatch::Stopwatch;
use crate::ModelError;

pub(crate) use staging::load_threads;
pub(crate) use staging::StagingStats;
use staging::{RingSizes, Source, StagingRing};

#[cfg(test)]
mod tests;

/// Source tensors' bytes held by the caller for the weights of one part
/// that the loader left unpacked, when no checkpoint is open (a page's
/// fetched part): ranged reads (`runs`) and, per canonical tensor name, its
/// run and byte range there.
#[derive(Debug, Default)]
pub struct FetchedTensors {
    /// The bytes of each read.
    pub runs: Vec<Vec<u8>>,
    /// Canonical tensor name → (index into `runs`, byte range there).
    pub at: std::collections::HashMap<String, (usize, std::ops::Range<usize>)>,
}

impl FetchedTensors {
    /// The bytes of tensor `name`, if fetched.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (run, range) = self.at.get(name)?;
        self.runs.get(*run)?.get(range.clone())
    }
}

/// Uploads weights ([`PackedWeight::borrowed_sources`] from `ckpt`, or from
/// the [`FetchedTensors`] of the current part) and reports each weight's
/// bytes to `progress`.
pub(crate) struct Uploader<'a> {
    ctx: &'a GpuContext,
    ckpt: Option<&'a Checkpoint>,
    /// The current part's source bytes (see [`Uploader::set_fetched`]).
    fetched: FetchedTensors,
    progress: &'a mut dyn FnMut(u64),
    ring: StagingRing,
    /// Set when a weight failed part-way: the ring may hold rows staged but
    /// not filled, so nothing more is uploaded through it.
    failed: bool,
    /// Seconds creating weight buffers and finding (reading ahead) sources.
    buffers_s: f64,
    sources_s: f64,
}

impl<'a> Uploader<'a> {
    /// An uploader filling its staging on `threads` threads (0: no staging
    /// ring, each weight through `queue.write_buffer`).
    pub fn new(
        ctx: &'a GpuContext,
        ckpt: Option<&'a Checkpoint>,
        progress: &'a mut dyn FnMut(u64),
        threads: usize,
    ) -> Self {
        Self::with_ring(ctx, ckpt, progress, threads, RingSizes::default())
    }

    fn with_ring(
        ctx: &'a GpuContext,
        ckpt: Option<&'a Checkpoint>,
        progress: &'a mut dyn FnMut(u64),
        threads: usize,
        sizes: RingSizes,
    ) -> Self {
        Self {
            ctx,
            ckpt,
            progress,
            ring: StagingRing::new(ctx, threads, sizes),
            fetched: FetchedTensors::default(),
            failed: false,
            buffers_s: 0.0,
            sources_s: 0.0,
        }
    }

    /// Holds `fetched` (dropping the previous part's) as the source of the
    /// weights uploaded next that the loader left unpacked.
    pub fn set_fetched(&mut self, fetched: FetchedTensors) {
        self.fetched = fetched;
    }

    /// The sources of `w`'s rows: its checkpoint tensors (or fetched bytes),
    /// or its packed data.
    fn sources<'w>(
        ckpt: Option<&'a Checkpoint>,
        fetched: &'w FetchedTensors,
        w: &'w PackedWeight,
    ) -> Result<Vec<Source<'w>>, ModelError>
    where
        'a: 'w,
    {
        let Some(names) = w.borrowed_sources() else {
            return Ok(vec![Source::Host(&w.data)]);
        };
        if ckpt.is_none() && !fetched.at.is_empty() {
            return names
                .into_iter()
                .map(|name| {
                    fetched
                        .get(name)
                        .map(Source::Host)
                        .ok_or_else(|| ModelError::Internal {
                            detail: format!(
                                "`{weight}`: source tensor `{name}` was not fetched with its part",
                                weight = w.name
                            ),
                        })
                })
                .collect();
        }
        let ckpt = ckpt.ok_or_else(|| ModelError::Internal {
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
            // Read-ahead of the file while the threads copy its first pages.
            ckpt.will_need(t.bytes);
            parts.push(Source::Tensor { ckpt, t });
        }
        Ok(parts)
    }

    /// A matrix in its stored format.
    pub fn weight(&mut self, w: &PackedWeight) -> Result<GpuWeight, ModelError> {
        if self.failed {
            return Err(ModelError::Internal {
                detail: format!(
                    "`{name}`: an earlier weight's upload failed part-way",
                    name = w.name
                ),
            });
        }
        let r = self.weight_inner(w);
        self.failed = r.is_err();
        r
    }

    fn weight_inner(&mut self, w: &PackedWeight) -> Result<GpuWeight, ModelError> {
        if let Some(q) = w.int4() {
            return self.int4(w, &q);
        }
        let format = WeightFormat::from_dtype(w.dtype);
        let row_src = w.cols * format.size();
        let row_bytes = stride_words(w.cols, format) * 4;
        let started = Stopwatch::start();
        let sources = Self::sources(self.ckpt, &self.fetched, w)?;
        self.sources_s += started.seconds();
        let total: usize = sources.iter().map(Source::len).sum();
        if total != w.rows * row_src || sources.iter().any(|s| s.len() % row_src.max(1) != 0) {
            let sizes: Vec<usize> = sources.iter().take(8).map(Source::len).collect();
            let (name, rows, cols, parts) = (&w.name, w.rows, w.cols, sources.len());
            return Err(ModelError::Internal {
                detail: format!(
                    "`{name}`: {total} bytes in {parts} part(s) (first sizes {sizes:?}) for \
                     [{rows}, {cols}] {dtype:?}; parts must hold whole rows of {row_src} bytes",
                    dtype = w.dtype
                ),
            });
        }
        if row_src == 0 || !self.ring.takes(row_bytes) {
            // Nothing to copy, rows longer than a staging slot, or no ring.
            let parts: Vec<&[u8]> = match w.borrowed_sources() {
                Some(_) => sources
                    .iter()
                    .map(|s| match s {
                        Source::Tensor { t, .. } => t.bytes,
                        Source::Host(b) => b,
                    })
                    .collect(),
                None => vec![&w.data],
            };
            let g = GpuWeight::upload_from(self.ctx, w, &parts)?;
            (self.progress)(total as u64);
            return Ok(g);
        }
        let started = Stopwatch::start();
        let g = GpuWeight::allocate(self.ctx, w)?;
        self.buffers_s += started.seconds();
        Self::stage_rows(self.ctx, &mut self.ring, &g, &sources, (row_src, row_bytes))?;
        (self.progress)(total as u64);
        Ok(g)
    }

    /// A 4-bit weight (repacked on the host by the loader, never left in
    /// the checkpoint): its words through the staging ring like any other
    /// weight's rows (several threads, overlapped with the GPU's copies),
    /// its scale table uploaded with its buffers.
    fn int4(&mut self, w: &PackedWeight, q: &Int4View<'_>) -> Result<GpuWeight, ModelError> {
        let host_bytes = (q.words.len() * 4 + q.scales.len() * 4 + q.zeros.len()) as u64;
        let row_src = q.words_per_row() * 4;
        let row_bytes = stride_words(w.cols, WeightFormat::Q4) * 4;
        if row_src == 0 || !self.ring.takes(row_bytes) {
            let g = GpuWeight::upload(self.ctx, w)?;
            (self.progress)(host_bytes);
            return Ok(g);
        }
        let started = Stopwatch::start();
        let g = qwgpu_kernels::int4::allocate_int4(self.ctx, &w.name, q)?;
        self.buffers_s += started.seconds();
        let sources = [Source::Host(bytemuck::cast_slice(q.words))];
        Self::stage_rows(self.ctx, &mut self.ring, &g, &sources, (row_src, row_bytes))?;
        (self.progress)(host_bytes);
        Ok(g)
    }

    /// Stages every row of `g`'s pieces from `sources` (whole rows of
    /// `layout.0` bytes, one after another), each row `layout.1` bytes apart
    /// on the GPU, and copies them into the staging before returning (the
    /// sources may go with their weight).
    fn stage_rows(
        ctx: &GpuContext,
        ring: &mut StagingRing,
        g: &GpuWeight,
        sources: &[Source<'_>],
        layout: (usize, usize),
    ) -> Result<(), ModelError> {
        let (row_src, row_bytes) = layout;
        // Walk the pieces' rows and the sources' rows side by side.
        let (mut src, mut src_row) = (0, 0);
        for piece in &g.pieces {
            let mut r = 0;
            while r < piece.rows {
                while sources[src].len() / row_src == src_row {
                    src += 1;
                    src_row = 0;
                }
                let n = (piece.rows - r).min(sources[src].len() / row_src - src_row);
                let dst_at = (r * row_bytes) as u64;
                ring.stage(ctx, sources, layout, src, src_row, n, &piece.buffer, dst_at)?;
                src_row += n;
                r += n;
            }
        }
        ring.fill(sources, layout)
    }

    /// A small f32 vector (norm weights, conv taps, per-head parameters).
    pub fn vector(&self, name: String, v: &[f32]) -> Result<wgpu::Buffer, ModelError> {
        Ok(self.ctx.upload(&name, v)?)
    }

    /// Submits the last staged copies (the caller then waits for the
    /// queue); what went through the staging ring.
    pub fn finish(mut self) -> Result<StagingStats, ModelError> {
        if self.failed {
            return Err(ModelError::Internal {
                detail: "finishing an upload after a weight failed part-way".into(),
            });
        }
        self.ring.finish(self.ctx)?;
        Ok(StagingStats {
            bytes: self.ring.bytes,
            fill_s: self.ring.fill_s,
            wait_s: self.ring.wait_s,
            slots_s: self.ring.slots_s,
            buffers_s: self.buffers_s,
            sources_s: self.sources_s,
        })
    }
}
