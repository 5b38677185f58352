//! The model's weights on the GPU, in their stored formats, each packed weight's
//! shape checked against the config before its upload.

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::{GpuContext, GpuWeight};
use qwgpu_loader::{PackedModel, PackedWeight, Part};

use super::layers::Layer;
use super::upload::{StagingStats, Uploader};
use crate::shapes::{check_matrix, check_vector};
use crate::ModelError;

pub(crate) struct WeightsGpu {
    /// `[V, H]`.
    pub embed: GpuWeight,
    /// `[V, H]`; `None` when tied to the embeddings.
    pub lm_head: Option<GpuWeight>,
    /// `[H]` final RMSNorm.
    pub norm: wgpu::Buffer,
    pub layers: Vec<Layer>,
    /// How the upload went (the final wait for the queue counted as waiting).
    pub staging: StagingStats,
}

/// Submits the uploader's last copies and waits for the queue (counted as
/// waiting for the GPU's copies).
fn finish_upload(ctx: &GpuContext, u: Uploader<'_>) -> Result<StagingStats, ModelError> {
    let mut stats = u.finish()?;
    let started = crate::stopwatch::Stopwatch::start();
    ctx.flush_uploads();
    ctx.wait("weight upload")?;
    stats.wait_s += started.seconds();
    Ok(stats)
}

/// Checks the whole-model weights (embedding, head, norm) against the shape table.
pub(crate) fn check_top(
    c: &TextConfig,
    embed: Option<&PackedWeight>,
    head: Option<&PackedWeight>,
    norm: Option<&[f32]>,
) -> Result<(), ModelError> {
    if let Some(e) = embed {
        check_matrix(c, Packed::Embed, e)?;
    }
    if let Some(head) = head {
        check_matrix(c, Packed::LmHead, head)?;
    }
    if let Some(n) = norm {
        check_vector(c, Packed::FinalNorm, "model.norm.weight", n)?;
    }
    Ok(())
}

/// Checks every packed weight's shape against the config (before any upload).
pub(crate) fn check_shapes(m: &PackedModel) -> Result<(), ModelError> {
    let c = &m.config;
    crate::reference::validate_config(c)?;
    check_top(c, Some(&m.embed_tokens), m.lm_head.as_ref(), Some(&m.norm))?;
    if m.layers.len() != c.num_hidden_layers {
        let (packed, layers) = (m.layers.len(), c.num_hidden_layers);
        return Err(ModelError::Config {
            detail: format!("{packed} packed layers, num_hidden_layers = {layers}"),
        });
    }
    for (i, l) in m.layers.iter().enumerate() {
        Layer::check(c, i, l)?;
    }
    Ok(())
}

/// Bytes the weights take on the GPU (stored format, rows padded to 16 bytes).
pub(crate) fn gpu_bytes(m: &PackedModel) -> u64 {
    m.weights()
        .iter()
        .map(|w| match w.int4() {
            Some(q) => qwgpu_kernels::int4::gpu_bytes(&q),
            None => {
                let f = qwgpu_kernels::WeightFormat::from_dtype(w.dtype);
                (w.rows * qwgpu_kernels::weights::stride_words(w.cols, f) * 4 + w.rows * 4) as u64
            }
        })
        .sum()
}

/// Uploads a whole in-memory packed model; `progress` gets the bytes of each weight.
pub(crate) fn upload(
    ctx: &GpuContext,
    m: &PackedModel,
    progress: &mut dyn FnMut(u64),
) -> Result<WeightsGpu, ModelError> {
    let c = &m.config;
    let mut u = Uploader::new(ctx, None, progress, super::upload::load_threads());
    let embed = u.weight(&m.embed_tokens)?;
    let lm_head = m.lm_head.as_ref().map(|w| u.weight(w)).transpose()?;
    let norm = u.vector("model.norm".into(), &m.norm)?;
    let layers = m
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Layer::upload(&mut u, c, i, l))
        .collect::<Result<Vec<_>, _>>()?;
    let staging = finish_upload(ctx, u)?;
    Ok(WeightsGpu {
        embed,
        lm_head,
        norm,
        layers,
        staging,
    })
}

/// Uploads a model part by part, in the loader's stream order (embedding,
/// each layer, norm, head), checking each against the config first.
pub(crate) struct PartUpload<'a> {
    c: &'a TextConfig,
    u: Uploader<'a>,
    embed: Option<GpuWeight>,
    lm_head: Option<GpuWeight>,
    norm: Option<wgpu::Buffer>,
    layers: Vec<Layer>,
}

impl<'a> PartUpload<'a> {
    pub fn new(c: &'a TextConfig, u: Uploader<'a>) -> Result<Self, ModelError> {
        crate::reference::validate_config(c)?;
        Ok(Self {
            c,
            u,
            embed: None,
            lm_head: None,
            norm: None,
            layers: Vec::with_capacity(c.num_hidden_layers),
        })
    }

    /// [`PartUpload::add`] with the source bytes of the weights the loader
    /// left unpacked in `part`; they are dropped once it is uploaded.
    pub fn add_fetched(
        &mut self,
        part: &Part,
        fetched: super::upload::FetchedTensors,
    ) -> Result<(), ModelError> {
        self.u.set_fetched(fetched);
        let r = self.add(part);
        self.u.set_fetched(Default::default());
        r
    }

    /// Checks and uploads one part.
    pub fn add(&mut self, part: &Part) -> Result<(), ModelError> {
        let c = self.c;
        match part {
            Part::Embed(w) => {
                check_top(c, Some(w), None, None)?;
                self.embed = Some(self.u.weight(w)?);
            }
            Part::Layer { index, layer } => {
                if *index != self.layers.len() {
                    return Err(ModelError::Internal {
                        detail: format!(
                            "layer {index} handed over after {n} layers",
                            n = self.layers.len()
                        ),
                    });
                }
                Layer::check(c, *index, layer)?;
                // The uploader's staging ring submits its slots as they
                // fill (bounded staging memory, copies overlapping the reads).
                self.layers
                    .push(Layer::upload(&mut self.u, c, *index, layer)?);
            }
            Part::Norm(n) => {
                check_top(c, None, None, Some(n))?;
                self.norm = Some(self.u.vector("model.norm".into(), n)?);
            }
            Part::LmHead(w) => {
                check_top(c, None, Some(w), None)?;
                self.lm_head = Some(self.u.weight(w)?);
            }
        }
        Ok(())
    }

    /// Waits for the uploads and hands over the weights (and the bytes that
    /// went through the staging ring); a part never handed over is an error.
    pub fn finish(self, ctx: &GpuContext) -> Result<WeightsGpu, ModelError> {
        let staging = finish_upload(ctx, self.u)?;
        let missing = |what: &str| ModelError::Internal {
            detail: format!("the model's parts had no {what}"),
        };
        if self.layers.len() != self.c.num_hidden_layers {
            let (got, want) = (self.layers.len(), self.c.num_hidden_layers);
            return Err(missing(&format!("layers {got}..{want}")));
        }
        let w = WeightsGpu {
            embed: self.embed.ok_or_else(|| missing("embedding"))?,
            lm_head: self.lm_head,
            norm: self.norm.ok_or_else(|| missing("final norm"))?,
            layers: self.layers,
            staging,
        };
        Ok(w)
    }
}

// The visitor's error type is the loader's (large) `LoadError`, set by its API.
#[allow(clippy::result_large_err)]
/// Streams the checkpoint through the loader one part at a time (embedding,
/// each layer, norm, head), checking and uploading each before the next is
/// packed: the host never holds more than one layer or the embedding table.
pub(crate) fn upload_streaming(
    ctx: &GpuContext,
    ckpt: &qwgpu_checkpoint::Checkpoint,
    progress: &mut dyn FnMut(u64),
) -> Result<WeightsGpu, ModelError> {
    let c = &ckpt.config().text;
    // Each part's packing buffers, once on the GPU, are reused for the next part's.
    let _recycling = qwgpu_loader::Recycling::start();
    // Weights are not packed on the host: their source tensors are read
    // from the checkpoint's files straight into upload staging (only a weight
    // that widens a mixed-dtype source is packed, into a recycled buffer).
    let started = crate::stopwatch::Stopwatch::start();
    let threads = super::upload::load_threads();
    let mut parts = PartUpload::new(c, Uploader::new(ctx, Some(ckpt), progress, threads))?;
    // The visitor's error type is the loader's: keep ours aside and stop the walk.
    let mut failure: Option<ModelError> = None;
    let walk = qwgpu_loader::stream_model_borrowing(ckpt, None, &mut |part| {
        parts.add(&part).map_err(|e| {
            let msg = e.to_string();
            failure = Some(e);
            qwgpu_loader::LoadError::Visitor { detail: msg }
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walk?;
    let w = parts.finish(ctx)?;
    let seconds = started.seconds();
    tracing::info!(
        staged_bytes = w.staging.bytes,
        seconds,
        gb_per_s = w.staging.bytes as f64 / seconds.max(1e-9) / 1e9,
        fill_s = w.staging.fill_s,
        wait_s = w.staging.wait_s,
        threads,
        "weights on the GPU"
    );
    Ok(w)
}
