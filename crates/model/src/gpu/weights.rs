//! The model's weights on the GPU, in their stored formats, each packed weight's
//! shape checked against the config before its upload.

use qwgpu_checkpoint::{Checkpoint, FfnConfig, LayerType, TextConfig};
use qwgpu_kernels::{GpuContext, GpuWeight};
use qwgpu_loader::{Ffn, Mixer, PackedLayer, PackedModel, PackedWeight, Part};

use crate::ModelError;

pub(crate) struct GdnGpu {
    pub qkvz: GpuWeight,
    pub ba: GpuWeight,
    pub conv_w: wgpu::Buffer,
    pub a_log: wgpu::Buffer,
    pub dt_bias: wgpu::Buffer,
    pub norm_w: wgpu::Buffer,
    pub out_proj: GpuWeight,
}

pub(crate) struct AttnGpu {
    pub qkv: GpuWeight,
    pub o_proj: GpuWeight,
    pub q_norm: wgpu::Buffer,
    pub k_norm: wgpu::Buffer,
}

pub(crate) struct MlpGpu {
    pub gate_up: GpuWeight,
    pub down: GpuWeight,
}

pub(crate) struct MoeGpu {
    pub router: GpuWeight,
    pub experts_gate_up: GpuWeight,
    pub experts_down: GpuWeight,
    pub shared: MlpGpu,
    pub shared_gate: GpuWeight,
    pub experts: u32,
    pub top_k: u32,
    pub inter: u32,
}

// One value per layer, made once at load: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum MixerGpu {
    Linear(GdnGpu),
    Full(AttnGpu),
}

#[allow(clippy::large_enum_variant)]
pub(crate) enum FfnGpu {
    Dense(MlpGpu),
    Moe(MoeGpu),
}

pub(crate) struct LayerGpu {
    pub input_norm: wgpu::Buffer,
    pub post_norm: wgpu::Buffer,
    pub mixer: MixerGpu,
    pub ffn: FfnGpu,
}

pub(crate) struct WeightsGpu {
    pub embed: GpuWeight,
    /// `None` when tied to the embeddings.
    pub lm_head: Option<GpuWeight>,
    pub norm: wgpu::Buffer,
    pub layers: Vec<LayerGpu>,
}

fn expect(w: &PackedWeight, rows: usize, cols: usize, why: &'static str) -> Result<(), ModelError> {
    if w.rows != rows || w.cols != cols {
        return Err(ModelError::WeightShape {
            tensor: w.name.clone(),
            expected: vec![rows, cols],
            got: vec![w.rows, w.cols],
            why,
        });
    }
    Ok(())
}

fn expect_len(name: String, v: &[f32], n: usize, why: &'static str) -> Result<(), ModelError> {
    if v.len() != n {
        return Err(ModelError::WeightShape {
            tensor: name,
            expected: vec![n],
            got: vec![v.len()],
            why,
        });
    }
    Ok(())
}

/// Checks the config and the whole-model weights (embedding, head, norm).
pub(crate) fn check_top(
    c: &TextConfig,
    embed: Option<&PackedWeight>,
    head: Option<&PackedWeight>,
    norm: Option<&[f32]>,
) -> Result<(), ModelError> {
    let h = c.hidden_size;
    if let Some(e) = embed {
        expect(e, c.vocab_size, h, "vocab_size x hidden_size")?;
    }
    if let Some(head) = head {
        expect(head, c.vocab_size, h, "vocab_size x hidden_size")?;
    }
    if let Some(n) = norm {
        expect_len("model.norm.weight".into(), n, h, "hidden_size")?;
    }
    Ok(())
}

/// Checks one layer's packed weights against the config.
pub(crate) fn check_layer(c: &TextConfig, i: usize, l: &PackedLayer) -> Result<(), ModelError> {
    let h = c.hidden_size;
    let p = |s: &str| format!("model.layers.{i}.{s}");
    let want_linear = c.layer_types.get(i) == Some(&LayerType::LinearAttention);
    match (&l.mixer, want_linear) {
        (Mixer::Linear(_), false) | (Mixer::Full(_), true) => {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: if want_linear {
                    "linear attention"
                } else {
                    "full attention"
                },
                got: if want_linear {
                    "full attention"
                } else {
                    "linear attention"
                },
            })
        }
        _ => {}
    }
    expect_len(
        p("input_layernorm.weight"),
        &l.input_layernorm,
        h,
        "hidden_size",
    )?;
    expect_len(
        p("post_attention_layernorm.weight"),
        &l.post_attention_layernorm,
        h,
        "hidden_size",
    )?;
    match &l.mixer {
        Mixer::Linear(g) => {
            let k = c.linear_conv_kernel_dim;
            expect(
                &g.in_proj_qkvz,
                c.conv_dim() + c.value_dim(),
                h,
                "conv_dim + value_dim x hidden",
            )?;
            expect(
                &g.in_proj_ba,
                2 * c.linear_num_value_heads,
                h,
                "2·nv x hidden",
            )?;
            expect(&g.out_proj, h, c.value_dim(), "hidden x value_dim")?;
            expect_len(
                p("linear_attn.conv1d.weight"),
                &g.conv1d,
                c.conv_dim() * k,
                "conv_dim·K",
            )?;
            expect_len(
                p("linear_attn.A_log"),
                &g.a_log,
                c.linear_num_value_heads,
                "nv",
            )?;
            expect_len(
                p("linear_attn.dt_bias"),
                &g.dt_bias,
                c.linear_num_value_heads,
                "nv",
            )?;
            expect_len(
                p("linear_attn.norm.weight"),
                &g.norm,
                c.linear_value_head_dim,
                "dv",
            )?;
        }
        Mixer::Full(a) => {
            expect(
                &a.qkv,
                c.q_proj_rows() + 2 * c.kv_proj_rows(),
                h,
                "2·nh·hd + 2·nkv·hd x hidden",
            )?;
            expect(
                &a.o_proj,
                h,
                c.num_attention_heads * c.head_dim,
                "hidden x nh·hd",
            )?;
            expect_len(
                p("self_attn.q_norm.weight"),
                &a.q_norm,
                c.head_dim,
                "head_dim",
            )?;
            expect_len(
                p("self_attn.k_norm.weight"),
                &a.k_norm,
                c.head_dim,
                "head_dim",
            )?;
        }
    }
    match (&l.ffn, &c.ffn) {
        (
            Ffn::Dense(d),
            FfnConfig::Dense {
                intermediate_size: is,
            },
        ) => {
            expect(&d.gate_up, 2 * is, h, "2·intermediate x hidden")?;
            expect(&d.down, h, *is, "hidden x intermediate")?;
        }
        (
            Ffn::Moe(e),
            FfnConfig::Moe {
                num_experts,
                moe_intermediate_size: ie,
                shared_expert_intermediate_size: is,
                ..
            },
        ) => {
            expect(&e.router, *num_experts, h, "experts x hidden")?;
            expect(
                &e.experts_gate_up,
                num_experts * 2 * ie,
                h,
                "experts·2·moe_intermediate x hidden",
            )?;
            expect(
                &e.experts_down,
                num_experts * h,
                *ie,
                "experts·hidden x moe_intermediate",
            )?;
            expect(
                &e.shared_expert.gate_up,
                2 * is,
                h,
                "2·shared_intermediate x hidden",
            )?;
            expect(
                &e.shared_expert.down,
                h,
                *is,
                "hidden x shared_intermediate",
            )?;
            expect(&e.shared_expert_gate, 1, h, "1 x hidden")?;
        }
        _ => {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: match c.ffn {
                    FfnConfig::Dense { .. } => "dense MLP",
                    FfnConfig::Moe { .. } => "MoE",
                },
                got: match l.ffn {
                    Ffn::Dense(_) => "dense MLP",
                    Ffn::Moe(_) => "MoE",
                },
            })
        }
    }
    Ok(())
}

/// Checks every packed weight's shape against the config (before any upload).
pub(crate) fn check_shapes(m: &PackedModel) -> Result<(), ModelError> {
    let c = &m.config;
    crate::reference::validate_config(c)?;
    check_top(c, Some(&m.embed_tokens), m.lm_head.as_ref(), Some(&m.norm))?;
    if m.layers.len() != c.num_hidden_layers {
        return Err(ModelError::Config {
            detail: format!(
                "{} packed layers, num_hidden_layers = {}",
                m.layers.len(),
                c.num_hidden_layers
            ),
        });
    }
    for (i, l) in m.layers.iter().enumerate() {
        check_layer(c, i, l)?;
    }
    Ok(())
}

/// Bytes the weights take on the GPU (stored format, rows padded to 16 bytes).
pub(crate) fn gpu_bytes(m: &PackedModel) -> u64 {
    m.weights()
        .iter()
        .map(|w| {
            let f = qwgpu_kernels::WeightFormat::from_dtype(w.dtype);
            (w.rows * qwgpu_kernels::weights::stride_words(w.cols, f) * 4 + w.rows * 4) as u64
        })
        .sum()
}

/// Uploads weights, reading the bytes of those the loader left unpacked
/// ([`PackedWeight::borrowed_sources`]) from the checkpoint's map, and reports
/// each weight's bytes to `progress`.
pub(crate) struct Uploader<'a> {
    pub ctx: &'a GpuContext,
    pub ckpt: Option<&'a Checkpoint>,
    pub progress: &'a mut dyn FnMut(u64),
}

impl Uploader<'_> {
    fn up(&mut self, w: &PackedWeight) -> Result<GpuWeight, ModelError> {
        let g = match w.borrowed_sources() {
            Some(names) => {
                let ckpt = self.ckpt.ok_or_else(|| ModelError::Config {
                    detail: format!(
                        "`{}` is to be read from a checkpoint, and none is open",
                        w.name
                    ),
                })?;
                let mut parts = Vec::with_capacity(names.len());
                for name in names {
                    let t = ckpt.tensor(name)?;
                    if t.dtype != w.dtype {
                        return Err(ModelError::Config {
                            detail: format!(
                                "`{}`: checkpoint tensor `{name}` is {:?}, the packed weight {:?}",
                                w.name, t.dtype, w.dtype
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

    fn vec_buf(&self, name: String, v: &[f32]) -> Result<wgpu::Buffer, ModelError> {
        vec_buf(self.ctx, name, v)
    }
}

fn vec_buf(ctx: &GpuContext, name: String, v: &[f32]) -> Result<wgpu::Buffer, ModelError> {
    Ok(ctx.upload(&name, v)?)
}

/// Uploads one layer in its stored formats.
pub(crate) fn upload_layer(
    u: &mut Uploader<'_>,
    c: &TextConfig,
    i: usize,
    l: &PackedLayer,
) -> Result<LayerGpu, ModelError> {
    let p = |s: &str| format!("model.layers.{i}.{s}");
    let mixer = match &l.mixer {
        Mixer::Linear(g) => MixerGpu::Linear(GdnGpu {
            qkvz: u.up(&g.in_proj_qkvz)?,
            ba: u.up(&g.in_proj_ba)?,
            conv_w: u.vec_buf(p("conv1d"), &g.conv1d)?,
            a_log: u.vec_buf(p("A_log"), &g.a_log)?,
            dt_bias: u.vec_buf(p("dt_bias"), &g.dt_bias)?,
            norm_w: u.vec_buf(p("linear_attn.norm"), &g.norm)?,
            out_proj: u.up(&g.out_proj)?,
        }),
        Mixer::Full(a) => MixerGpu::Full(AttnGpu {
            qkv: u.up(&a.qkv)?,
            o_proj: u.up(&a.o_proj)?,
            q_norm: u.vec_buf(p("q_norm"), &a.q_norm)?,
            k_norm: u.vec_buf(p("k_norm"), &a.k_norm)?,
        }),
    };
    let ffn = match (&l.ffn, &c.ffn) {
        (Ffn::Dense(d), _) => FfnGpu::Dense(MlpGpu {
            gate_up: u.up(&d.gate_up)?,
            down: u.up(&d.down)?,
        }),
        (
            Ffn::Moe(e),
            FfnConfig::Moe {
                num_experts,
                num_experts_per_tok,
                moe_intermediate_size,
                ..
            },
        ) => FfnGpu::Moe(MoeGpu {
            router: u.up(&e.router)?,
            experts_gate_up: u.up(&e.experts_gate_up)?,
            experts_down: u.up(&e.experts_down)?,
            shared: MlpGpu {
                gate_up: u.up(&e.shared_expert.gate_up)?,
                down: u.up(&e.shared_expert.down)?,
            },
            shared_gate: u.up(&e.shared_expert_gate)?,
            experts: *num_experts as u32,
            top_k: *num_experts_per_tok as u32,
            inter: *moe_intermediate_size as u32,
        }),
        (Ffn::Moe(_), FfnConfig::Dense { .. }) => {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: "dense MLP",
                got: "MoE",
            })
        }
    };
    Ok(LayerGpu {
        input_norm: u.vec_buf(p("input_layernorm"), &l.input_layernorm)?,
        post_norm: u.vec_buf(p("post_attention_layernorm"), &l.post_attention_layernorm)?,
        mixer,
        ffn,
    })
}

/// Uploads a whole in-memory packed model; `progress` gets the bytes of each weight.
pub(crate) fn upload(
    ctx: &GpuContext,
    m: &PackedModel,
    progress: &mut dyn FnMut(u64),
) -> Result<WeightsGpu, ModelError> {
    let c = &m.config;
    let mut u = Uploader {
        ctx,
        ckpt: None,
        progress,
    };
    let embed = u.up(&m.embed_tokens)?;
    let lm_head = m.lm_head.as_ref().map(|w| u.up(w)).transpose()?;
    let norm = u.vec_buf("model.norm".into(), &m.norm)?;
    let layers = m
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| upload_layer(&mut u, c, i, l))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.flush_uploads();
    ctx.wait("weight upload")?;
    Ok(WeightsGpu {
        embed,
        lm_head,
        norm,
        layers,
    })
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
    crate::reference::validate_config(c)?;
    let mut embed = None;
    let mut lm_head = None;
    let mut norm = None;
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    // Each part's packing buffers, once on the GPU, are reused for the next part's.
    let _recycling = qwgpu_loader::Recycling::start();
    // Weights are not packed on the host: their source tensors upload
    // straight from the checkpoint's map (only a weight that widens a mixed-
    // dtype source is packed, into a recycled buffer).
    let mut u = Uploader {
        ctx,
        ckpt: Some(ckpt),
        progress,
    };
    // The visitor's error type is the loader's: keep ours aside and stop the walk.
    let mut failure: Option<ModelError> = None;
    let walk = qwgpu_loader::stream_model_borrowing(ckpt, None, &mut |part| {
        let r = (|| -> Result<(), ModelError> {
            match part {
                Part::Embed(w) => {
                    check_top(c, Some(&w), None, None)?;
                    embed = Some(u.up(&w)?);
                }
                Part::Layer { index, layer } => {
                    check_layer(c, index, &layer)?;
                    // The context flushes queued writes every few hundred MB
                    // (bounded staging memory, copies overlapping the packing).
                    layers.push(upload_layer(&mut u, c, index, &layer)?);
                }
                Part::Norm(n) => {
                    check_top(c, None, None, Some(&n))?;
                    norm = Some(u.vec_buf("model.norm".into(), &n)?);
                }
                Part::LmHead(w) => {
                    check_top(c, None, Some(&w), None)?;
                    lm_head = Some(u.up(&w)?);
                }
            }
            Ok(())
        })();
        r.map_err(|e| {
            let msg = e.to_string();
            failure = Some(e);
            qwgpu_loader::LoadError::Visitor { detail: msg }
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walk?;
    ctx.flush_uploads();
    ctx.wait("weight upload")?;
    let missing = |what: &str| ModelError::Config {
        detail: format!("the checkpoint stream produced no {what}"),
    };
    Ok(WeightsGpu {
        embed: embed.ok_or_else(|| missing("embedding"))?,
        lm_head,
        norm: norm.ok_or_else(|| missing("final norm"))?,
        layers,
    })
}
