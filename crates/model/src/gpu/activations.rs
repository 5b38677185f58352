//! The buffers one step runs in, for up to `T = max_t` tokens, grouped by the
//! part of the graph that owns them. Shapes are in f32 elements unless noted
//! (row-major, one row per token); `H` = hidden size, `V` = vocab size.
//! Only the groups of the layer kinds the model has are made.

use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};
use qwgpu_kernels::attention::AttnDims;
use qwgpu_kernels::gdn::{GdnDims, GdnScratch};
use qwgpu_kernels::moe::grouped::GroupScratch;
use qwgpu_kernels::{GpuContext, Step};

use crate::ModelError;

/// Inputs, residual stream and outputs of a step (every model).
pub(crate) struct Stream {
    /// `[T]` u32 token ids (the sampler writes the next one into row 0).
    pub ids: wgpu::Buffer,
    /// The [`Step`] uniform (position, tokens, seed, counter).
    pub step: wgpu::Buffer,
    /// `[T, 2, max(1, rotary_dim / 2)]` RoPE cos / sin rows, written by the host.
    pub rope: wgpu::Buffer,
    /// `[T, H]` residual stream.
    pub h: wgpu::Buffer,
    /// `[T, H]` normalised rows (only steps that do not fuse their norms).
    pub x: wgpu::Buffer,
    /// `[logit_rows, V]` logits.
    pub logits: wgpu::Buffer,
    /// 4 bytes: host-readable copy of the sampled token (reused every step).
    pub readback: wgpu::Buffer,
}

/// Gated DeltaNet (linear attention) layers.
pub(crate) struct GatedDeltaActs {
    /// `[T, conv_dim + value_dim]`: q, k, v (conv input) then z (gate).
    pub qkvz: wgpu::Buffer,
    /// `[T, 2·nv]`: b (beta) then a (decay) per value head.
    pub ba: wgpu::Buffer,
    /// `[T, value_dim]` gated, normalised delta-rule output.
    pub out: wgpu::Buffer,
    /// The GDN kernels' own scratch (chunked prefill).
    pub scratch: GdnScratch,
}

/// Full (softmax) attention layers.
pub(crate) struct AttentionActs {
    /// `[T, 2·nh·hd + 2·nkv·hd]`: q with its gate, k, v.
    pub qkv: wgpu::Buffer,
    /// `[T, nh·hd]` gated attention output.
    pub out: wgpu::Buffer,
}

/// Dense SwiGLU MLPs.
pub(crate) struct MlpActs {
    /// `[T, I]` `silu(gate) · up`.
    pub act: wgpu::Buffer,
}

/// Mixture-of-experts FFNs (`E` experts, `K` per token, `Ie` / `Is` the
/// routed / shared experts' intermediate sizes).
pub(crate) struct MoeActs {
    /// `[T, E]` router logits.
    pub router_logits: wgpu::Buffer,
    /// `[T, K]` u32 chosen experts.
    pub ids: wgpu::Buffer,
    /// `[T, K]` their weights.
    pub weights: wgpu::Buffer,
    /// `[T·K, Ie]` routed experts' `silu(gate) · up`.
    pub expert_act: wgpu::Buffer,
    /// `[T·K, H]` routed experts' outputs.
    pub expert_out: wgpu::Buffer,
    /// Expert grouping of a prefill step (`T > 1` only).
    pub group: Option<GroupScratch>,
    /// `[T, Is]` shared expert's `silu(gate) · up`.
    pub shared_act: wgpu::Buffer,
    /// `[T, H]` shared expert's output.
    pub shared_out: wgpu::Buffer,
    /// `[T]` shared expert gate logit.
    pub gate_logit: wgpu::Buffer,
}

/// Activations of one step of up to `max_t` tokens.
pub(crate) struct Activations {
    pub stream: Stream,
    pub gated_delta: Option<GatedDeltaActs>,
    pub attention: Option<AttentionActs>,
    pub mlp: Option<MlpActs>,
    pub moe: Option<MoeActs>,
}

/// The GDN kernels' dimensions.
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

/// The attention kernels' dimensions.
pub(crate) fn attn_dims(c: &TextConfig) -> AttnDims {
    AttnDims {
        nh: c.num_attention_heads as u32,
        nkv: c.num_key_value_heads as u32,
        hd: c.head_dim as u32,
        rotary_dim: c.rotary_dim() as u32,
        eps: c.rms_norm_eps as f32,
    }
}

pub(crate) fn f32s(ctx: &GpuContext, label: &str, n: usize) -> Result<wgpu::Buffer, ModelError> {
    Ok(ctx.storage(label, (n * 4) as u64)?)
}

fn missing(group: &str) -> ModelError {
    ModelError::Internal {
        detail: format!("a {group} layer ran without {group} activations"),
    }
}

/// Bytes per token of the widest buffer [`Activations::new`] makes with
/// rows per token (the kernels' scratch rows are no wider: the GDN scratch's
/// are at most `conv_dim`, the attention scratch's `nh·hd`).
pub(crate) fn widest_row_bytes(c: &TextConfig) -> usize {
    let h = c.hidden_size;
    let mut widths = vec![2 * (c.rotary_dim() / 2).max(1), h];
    if c.layer_types.contains(&LayerType::LinearAttention) {
        widths.push(c.conv_dim() + c.value_dim());
    }
    if c.layer_types.contains(&LayerType::FullAttention) {
        widths.push(c.q_proj_rows() + 2 * c.kv_proj_rows());
    }
    match c.ffn {
        FfnConfig::Dense { intermediate_size } => widths.push(intermediate_size),
        FfnConfig::Moe {
            num_experts: e,
            num_experts_per_tok: k,
            moe_intermediate_size: ie,
            shared_expert_intermediate_size: is,
        } => widths.extend([e, k * ie, k * h, is]),
    }
    widths.into_iter().max().unwrap_or(1) * 4
}

impl Activations {
    pub fn new(
        ctx: &GpuContext,
        c: &TextConfig,
        max_t: usize,
        logit_rows: usize,
    ) -> Result<Self, ModelError> {
        let h = c.hidden_size;
        let stream = Stream {
            ids: ctx.storage("ids", (max_t * 4) as u64)?,
            step: ctx.uniform("step", &Step::default()),
            rope: f32s(ctx, "rope", 2 * max_t * (c.rotary_dim() / 2).max(1))?,
            h: f32s(ctx, "h", max_t * h)?,
            x: f32s(ctx, "x", max_t * h)?,
            logits: f32s(ctx, "logits", logit_rows * c.vocab_size)?,
            readback: ctx.readback_buffer("sampled token", 4),
        };
        let gated_delta = if c.layer_types.contains(&LayerType::LinearAttention) {
            Some(GatedDeltaActs {
                qkvz: f32s(ctx, "qkvz", max_t * (c.conv_dim() + c.value_dim()))?,
                ba: f32s(ctx, "ba", max_t * 2 * c.linear_num_value_heads)?,
                out: f32s(ctx, "gdn_out", max_t * c.value_dim())?,
                scratch: GdnScratch::new(ctx, &gdn_dims(c), max_t as u32)?,
            })
        } else {
            None
        };
        let attention = if c.layer_types.contains(&LayerType::FullAttention) {
            Some(AttentionActs {
                qkv: f32s(ctx, "qkv", max_t * (c.q_proj_rows() + 2 * c.kv_proj_rows()))?,
                out: f32s(ctx, "attn_out", max_t * c.num_attention_heads * c.head_dim)?,
            })
        } else {
            None
        };
        let (mlp, moe) = match c.ffn {
            FfnConfig::Dense { intermediate_size } => (
                Some(MlpActs {
                    act: f32s(ctx, "act", max_t * intermediate_size)?,
                }),
                None,
            ),
            FfnConfig::Moe {
                num_experts: e,
                num_experts_per_tok: k,
                moe_intermediate_size: ie,
                shared_expert_intermediate_size: is,
            } => (
                None,
                Some(MoeActs {
                    router_logits: f32s(ctx, "router_logits", max_t * e)?,
                    ids: ctx.storage("moe_ids", (max_t * k * 4) as u64)?,
                    weights: f32s(ctx, "moe_w", max_t * k)?,
                    expert_act: f32s(ctx, "expert_act", max_t * k * ie)?,
                    expert_out: f32s(ctx, "expert_out", max_t * k * h)?,
                    group: if max_t > 1 {
                        Some(GroupScratch::preferred(ctx, (max_t * k) as u32, e as u32)?)
                    } else {
                        None
                    },
                    shared_act: f32s(ctx, "shared_act", max_t * is)?,
                    shared_out: f32s(ctx, "shared_out", max_t * h)?,
                    gate_logit: f32s(ctx, "gate_logit", max_t)?,
                }),
            ),
        };
        Ok(Self {
            stream,
            gated_delta,
            attention,
            mlp,
            moe,
        })
    }

    pub fn gated_delta(&self) -> Result<&GatedDeltaActs, ModelError> {
        self.gated_delta
            .as_ref()
            .ok_or_else(|| missing("Gated DeltaNet"))
    }

    pub fn attention(&self) -> Result<&AttentionActs, ModelError> {
        self.attention.as_ref().ok_or_else(|| missing("attention"))
    }

    pub fn mlp(&self) -> Result<&MlpActs, ModelError> {
        self.mlp.as_ref().ok_or_else(|| missing("MLP"))
    }

    pub fn moe(&self) -> Result<&MoeActs, ModelError> {
        self.moe.as_ref().ok_or_else(|| missing("MoE"))
    }
}
