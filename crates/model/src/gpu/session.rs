//! One sequence's state on the GPU (KV caches, GDN conv and recurrent states)
//! and the activation buffers its steps run in; snapshots copy the state.

use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};
use qwgpu_kernels::attention::{AttnDims, AttnScratch};
use qwgpu_kernels::gdn::{GdnDims, GdnScratch};
use qwgpu_kernels::moe::grouped::GroupScratch;
use qwgpu_kernels::{copy, Dispatch, GpuContext, Step};

use crate::ModelError;

/// KV pages hold a multiple of this many rows (tokens).
pub(crate) const KV_GRANULE: usize = 256;
/// Largest KV page, in rows (also bounded by the binding size limit).
const MAX_PAGE_ROWS: usize = 16384;

/// One page of a layer's KV cache: `[rows, nkv, hd]` f32 keys and values.
pub(crate) struct KvPageGpu {
    pub keys: wgpu::Buffer,
    pub values: wgpu::Buffer,
}

pub(crate) enum LayerStateGpu {
    Linear {
        conv: wgpu::Buffer,
        state: wgpu::Buffer,
    },
    /// Pages in position order; their row counts are the session's `pages`.
    Full { pages: Vec<KvPageGpu> },
}

/// Activations of one step of up to `max_t` tokens.
pub(crate) struct Activations {
    pub ids: wgpu::Buffer,
    /// Host-readable copy of the sampled token (reused every step).
    pub readback: wgpu::Buffer,
    pub step: wgpu::Buffer,
    pub rope: wgpu::Buffer,
    pub h: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub qkvz: wgpu::Buffer,
    pub ba: wgpu::Buffer,
    pub gdn_out: wgpu::Buffer,
    pub qkv: wgpu::Buffer,
    pub attn_out: wgpu::Buffer,
    pub act: wgpu::Buffer,
    pub router_logits: wgpu::Buffer,
    pub moe_ids: wgpu::Buffer,
    pub moe_w: wgpu::Buffer,
    pub expert_act: wgpu::Buffer,
    pub expert_out: wgpu::Buffer,
    /// Expert grouping of a prefill step (MoE models with `max_t > 1`).
    pub moe_group: Option<GroupScratch>,
    pub shared_act: wgpu::Buffer,
    pub shared_out: wgpu::Buffer,
    pub gate_logit: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub gdn: Option<GdnScratch>,
}

pub(crate) fn gdn_dims(c: &TextConfig) -> GdnDims {
    GdnDims {
        nk: c.linear_num_key_heads as u32,
        nv: c.linear_num_value_heads as u32,
        dk: c.linear_key_head_dim as u32,
        dv: c.linear_value_head_dim as u32,
        conv_kernel: c.linear_conv_kernel_dim as u32,
        eps: c.rms_norm_eps as f32,
    }
}

pub(crate) fn attn_dims(c: &TextConfig) -> AttnDims {
    AttnDims {
        nh: c.num_attention_heads as u32,
        nkv: c.num_key_value_heads as u32,
        hd: c.head_dim as u32,
        rotary_dim: c.rotary_dim() as u32,
        eps: c.rms_norm_eps as f32,
    }
}

fn f32s(ctx: &GpuContext, label: &str, n: usize) -> Result<wgpu::Buffer, ModelError> {
    Ok(ctx.storage(label, (n * 4) as u64)?)
}

impl Activations {
    pub fn new(
        ctx: &GpuContext,
        c: &TextConfig,
        max_t: usize,
        logit_rows: usize,
    ) -> Result<Self, ModelError> {
        let h = c.hidden_size;
        let (e, k, ie, is, inter) = match c.ffn {
            FfnConfig::Dense { intermediate_size } => (1, 1, 1, 1, intermediate_size),
            FfnConfig::Moe {
                num_experts,
                num_experts_per_tok,
                moe_intermediate_size,
                shared_expert_intermediate_size,
            } => (
                num_experts,
                num_experts_per_tok,
                moe_intermediate_size,
                shared_expert_intermediate_size,
                1,
            ),
        };
        let has_gdn = c.layer_types.contains(&LayerType::LinearAttention);
        Ok(Self {
            ids: ctx.storage("ids", (max_t * 4) as u64)?,
            readback: ctx.readback_buffer("sampled token", 4),
            step: ctx.uniform("step", &Step::default()),
            rope: f32s(ctx, "rope", 2 * max_t * (c.rotary_dim() / 2).max(1))?,
            h: f32s(ctx, "h", max_t * h)?,
            x: f32s(ctx, "x", max_t * h)?,
            qkvz: f32s(ctx, "qkvz", max_t * (c.conv_dim() + c.value_dim()))?,
            ba: f32s(ctx, "ba", max_t * 2 * c.linear_num_value_heads)?,
            gdn_out: f32s(ctx, "gdn_out", max_t * c.value_dim())?,
            qkv: f32s(ctx, "qkv", max_t * (c.q_proj_rows() + 2 * c.kv_proj_rows()))?,
            attn_out: f32s(ctx, "attn_out", max_t * c.num_attention_heads * c.head_dim)?,
            act: f32s(ctx, "act", max_t * inter)?,
            router_logits: f32s(ctx, "router_logits", max_t * e)?,
            moe_ids: ctx.storage("moe_ids", (max_t * k * 4) as u64)?,
            moe_w: f32s(ctx, "moe_w", max_t * k)?,
            expert_act: f32s(ctx, "expert_act", max_t * k * ie)?,
            expert_out: f32s(ctx, "expert_out", max_t * k * h)?,
            moe_group: if matches!(c.ffn, FfnConfig::Moe { .. }) && max_t > 1 {
                Some(GroupScratch::new(ctx, (max_t * k) as u32, e as u32)?)
            } else {
                None
            },
            shared_act: f32s(ctx, "shared_act", max_t * is)?,
            shared_out: f32s(ctx, "shared_out", max_t * h)?,
            gate_logit: f32s(ctx, "gate_logit", max_t)?,
            logits: f32s(ctx, "logits", logit_rows * c.vocab_size)?,
            gdn: if has_gdn {
                Some(GdnScratch::new(ctx, &gdn_dims(c), max_t as u32)?)
            } else {
                None
            },
        })
    }
}

/// A decode step encoded ahead: ((pages it binds, sampling parameters), command buffer).
pub(crate) type NextStep = (
    (usize, qwgpu_kernels::sample::SamplingParams),
    wgpu::CommandBuffer,
);

/// A sequence on the GPU: state, activations, and the decode launches recorded once.
pub struct GpuSession {
    pub(crate) pos: usize,
    /// Rows of each KV page (the same for every attention layer).
    pub(crate) pages: Vec<usize>,
    pub(crate) layers: Vec<LayerStateGpu>,
    pub(crate) act: Activations,
    pub(crate) attn: Option<AttnScratch>,
    /// Decode-step launches (T = 1, logits of the one row) and the number of
    /// pages they bind: valid while `pos` is in the last of them.
    pub(crate) decode: Option<(usize, Vec<Dispatch>)>,
    pub(crate) sampler: Option<(qwgpu_kernels::sample::SamplingParams, Vec<Dispatch>)>,
    /// The next decode step's command buffer, encoded while the GPU ran the
    /// last one, with the page count and sampling parameters it was made for.
    pub(crate) next: Option<NextStep>,
    pub(crate) seed: u64,
    pub(crate) counter: u32,
    /// Unique per session (never reused), and a count of changes to the
    /// buffers its launches bind (pages added): with the page a step binds up
    /// to, they tell when recorded launches still fit the session.
    pub(crate) id: u64,
    pub(crate) epoch: u64,
}

impl GpuSession {
    /// Tokens processed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// KV rows of all pages.
    pub(crate) fn capacity(&self) -> usize {
        self.pages.iter().sum()
    }

    /// Pages a step at `pos` binds (up to the one holding `pos`), and the first
    /// position after the last of them.
    pub(crate) fn pages_at(&self, pos: usize) -> (usize, usize) {
        let mut end = 0;
        for (i, rows) in self.pages.iter().enumerate() {
            end += rows;
            if pos < end {
                return (i + 1, end);
            }
        }
        (self.pages.len(), end)
    }
}

pub(crate) fn kv_words(c: &TextConfig, rows: usize) -> usize {
    rows * c.num_key_value_heads * c.head_dim
}

/// Rows of the next KV page of a cache holding `capacity` rows that must reach
/// `needed`: as large as the cache so far (geometric growth: `O(log n)` pages,
/// so `O(log n)` attention launches per layer), at least what is needed, in
/// whole granules, at most [`MAX_PAGE_ROWS`] and the binding size limit.
pub(crate) fn next_page_rows(
    ctx: &GpuContext,
    c: &TextConfig,
    capacity: usize,
    needed: usize,
) -> usize {
    let row_bytes = (kv_words(c, 1) * 4).max(1) as u64;
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
        / row_bytes;
    let max_rows = (MAX_PAGE_ROWS.min(limit as usize) / KV_GRANULE * KV_GRANULE).max(1);
    let want = capacity
        .max(needed.saturating_sub(capacity))
        .max(KV_GRANULE);
    want.div_ceil(KV_GRANULE)
        .saturating_mul(KV_GRANULE)
        .min(max_rows)
}

/// Adds a page of `rows` rows to every attention layer.
pub(crate) fn add_page(
    ctx: &GpuContext,
    c: &TextConfig,
    layers: &mut [LayerStateGpu],
    rows: usize,
) -> Result<(), ModelError> {
    for (i, layer) in layers.iter_mut().enumerate() {
        if let LayerStateGpu::Full { pages } = layer {
            let n = pages.len();
            pages.push(KvPageGpu {
                keys: f32s(ctx, &format!("layer {i} keys page {n}"), kv_words(c, rows))?,
                values: f32s(
                    ctx,
                    &format!("layer {i} values page {n}"),
                    kv_words(c, rows),
                )?,
            });
        }
    }
    Ok(())
}

/// Zeroed GDN states and KV caches made of pages of `pages` rows.
pub(crate) fn new_layers(
    ctx: &GpuContext,
    c: &TextConfig,
    pages: &[usize],
) -> Result<Vec<LayerStateGpu>, ModelError> {
    let mut out = Vec::with_capacity(c.layer_types.len());
    for (i, ty) in c.layer_types.iter().enumerate() {
        out.push(match ty {
            LayerType::LinearAttention => {
                let conv = f32s(
                    ctx,
                    &format!("layer {i} conv state"),
                    (c.linear_conv_kernel_dim - 1) * c.conv_dim(),
                )?;
                let state = f32s(
                    ctx,
                    &format!("layer {i} recurrent state"),
                    c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim,
                )?;
                ctx.fill_f32(&conv, 0.0);
                ctx.fill_f32(&state, 0.0);
                LayerStateGpu::Linear { conv, state }
            }
            LayerType::FullAttention => LayerStateGpu::Full { pages: Vec::new() },
        });
    }
    for &rows in pages {
        add_page(ctx, c, &mut out, rows)?;
    }
    Ok(out)
}

/// Launches copying KV rows `0 .. rows` from pages of `from_rows` rows to pages
/// of `to_rows` rows (the two page layouts may differ).
fn copy_kv_rows(
    ctx: &GpuContext,
    c: &TextConfig,
    from: (&[KvPageGpu], &[usize]),
    to: (&[KvPageGpu], &[usize]),
    rows: usize,
) -> Result<Vec<Dispatch>, ModelError> {
    let row_words = kv_words(c, 1);
    let mut d = Vec::new();
    let (mut i, mut j) = (0usize, 0usize);
    // Start positions of pages i (source) and j (destination).
    let (mut si, mut sj) = (0usize, 0usize);
    let mut pos = 0usize;
    while pos < rows {
        let (Some(&ri), Some(&rj)) = (from.1.get(i), to.1.get(j)) else {
            return Err(ModelError::CacheMismatch {
                detail: format!("KV pages hold fewer than the {rows} rows to copy"),
            });
        };
        let n = (si + ri).min(sj + rj).min(rows) - pos;
        let words = |r: usize| (r * row_words) as u32;
        for (a, b) in [
            (&from.0[i].keys, &to.0[j].keys),
            (&from.0[i].values, &to.0[j].values),
        ] {
            d.push(copy::copy_words(
                ctx,
                a,
                words(pos - si),
                b,
                words(pos - sj),
                words(n),
            )?);
        }
        pos += n;
        if pos == si + ri {
            si += ri;
            i += 1;
        }
        if pos == sj + rj {
            sj += rj;
            j += 1;
        }
    }
    Ok(d)
}

/// Launches copying the state of `from` (first `rows` KV rows, pages of
/// `from_pages` rows) into `to` (pages of `to_pages` rows).
pub(crate) fn copy_state(
    ctx: &GpuContext,
    c: &TextConfig,
    (from, from_pages): (&[LayerStateGpu], &[usize]),
    (to, to_pages): (&[LayerStateGpu], &[usize]),
    rows: usize,
) -> Result<Vec<Dispatch>, ModelError> {
    let mut d = Vec::new();
    for (a, b) in from.iter().zip(to) {
        match (a, b) {
            (
                LayerStateGpu::Linear { conv, state },
                LayerStateGpu::Linear {
                    conv: c2,
                    state: s2,
                },
            ) => {
                d.push(copy::copy_words(
                    ctx,
                    conv,
                    0,
                    c2,
                    0,
                    (conv.size() / 4).min(c2.size() / 4) as u32,
                )?);
                d.push(copy::copy_words(
                    ctx,
                    state,
                    0,
                    s2,
                    0,
                    (state.size() / 4).min(s2.size() / 4) as u32,
                )?);
            }
            (LayerStateGpu::Full { pages: a }, LayerStateGpu::Full { pages: b }) => {
                d.extend(copy_kv_rows(ctx, c, (a, from_pages), (b, to_pages), rows)?);
            }
            _ => {
                return Err(ModelError::CacheMismatch {
                    detail: "snapshot layer kinds differ from the session's".into(),
                })
            }
        }
    }
    Ok(d)
}
