//! Plain data produced by the loader: packed weights with their shard table and
//! scale scheme, grouped per layer.
//! `qwgpu-model` builds its CPU reference and uploads its GPU weights from them.

use qwgpu_checkpoint::{Dtype, TextConfig};

/// One logical shard of a packed weight: rows `[row_offset, row_offset + rows)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    /// Logical name, e.g. `q`, `k`, `v`, `z`, `gate`, `up`, `b`, `a`, `e3.gate`.
    pub name: String,
    /// Canonical checkpoint tensor the rows came from.
    pub source: String,
    pub row_offset: usize,
    pub rows: usize,
}

/// Block scales of one source tensor inside a packed weight: its own grid,
/// covering rows `[row_offset, row_offset + rows)` of the packed weight.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSegment {
    pub row_offset: usize,
    pub rows: usize,
    /// `[ceil(rows / bn), ceil(cols / bk)]`.
    pub grid: [usize; 2],
    /// Row-major `grid[0] * grid[1]` multipliers.
    pub scales: Vec<f32>,
}

/// How to turn stored values into real weights: `W = q * scale` (always a multiply).
#[derive(Debug, Clone, PartialEq)]
pub enum ScaleScheme {
    /// Unquantized (F32 / F16 / BF16 storage).
    None,
    /// One scale per logical shard (a per-tensor checkpoint scale broadcast to every
    /// shard the tensor covers, or a `[k]` per-shard scale sliced).
    PerShard { scales: Vec<f32> },
    /// One scale per packed row (`[N,1]` scales split with the rows).
    PerChannel { scales: Vec<f32> },
    /// `[bn, bk]` block scales, one grid per source tensor.
    Block {
        block: [usize; 2],
        segments: Vec<BlockSegment>,
    },
    /// A 4-bit weight in the canonical form of [`crate::int4`]: nibbles,
    /// group scales and zero points are all here (the weight's `data` is
    /// empty and its `dtype` is [`Dtype::I32`], the words' type). Read it
    /// through [`PackedWeight::int4`].
    Int4(Box<crate::Int4Weights>),
}

/// Activation quantization that goes with a weight.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivationQuant {
    /// Activations stay in high precision (weight-only, or unquantized module).
    None,
    /// Scales computed at run time.
    Dynamic,
    /// Static `input_scale`, one per logical shard, plus their max (what W8A8 engines use).
    Static { per_shard: Vec<f32>, max: f32 },
}

/// A 2-D weight `[rows, cols]` (row-major, little-endian bytes of `dtype`),
/// possibly fused from several checkpoint tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeight {
    /// Engine name, e.g. `model.layers.0.linear_attn.in_proj_qkvz`.
    pub name: String,
    pub dtype: Dtype,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
    /// In row order; covers `[0, rows)` exactly.
    pub shards: Vec<Shard>,
    pub scale: ScaleScheme,
    pub activation: ActivationQuant,
}

impl PackedWeight {
    /// The canonical 4-bit form of this weight (see [`crate::int4`]), when it
    /// is a 4-bit weight (GPTQ, AWQ or compressed-tensors `pack-quantized`).
    pub fn int4(&self) -> Option<crate::Int4View<'_>> {
        match &self.scale {
            ScaleScheme::Int4(q) => Some(crate::Int4View {
                rows: self.rows,
                cols: self.cols,
                group_size: q.group_size,
                words: &q.words,
                scales: &q.scales,
                zeros: &q.zeros,
            }),
            _ => None,
        }
    }

    /// The checkpoint tensors holding this weight's bytes, in row order, when
    /// they were left there ([`PackOptions::borrow_sources`](crate::PackOptions)):
    /// `data` is empty and the tensors' bytes, one after another, are the
    /// packed rows as they are.
    pub fn borrowed_sources(&self) -> Option<Vec<&str>> {
        if !self.data.is_empty() || self.rows * self.cols == 0 || self.int4().is_some() {
            return None;
        }
        let mut names: Vec<&str> = Vec::new();
        for s in &self.shards {
            if s.source.is_empty() {
                return None;
            }
            if names.last() != Some(&s.source.as_str()) {
                names.push(&s.source);
            }
        }
        Some(names)
    }
}

impl Drop for PackedWeight {
    /// The data buffer (a 4-bit weight's words) goes back to the packing pool while a
    /// [`Recycling`](crate::Recycling) guard is alive on this thread.
    fn drop(&mut self) {
        crate::recycle::give(std::mem::take(&mut self.data));
        if let ScaleScheme::Int4(q) = &mut self.scale {
            crate::recycle::give_words(std::mem::take(&mut q.words));
        }
    }
}

/// FP8 KV-cache scales of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvScales {
    pub k_scale: f32,
    pub v_scale: f32,
}

/// Gated DeltaNet weights of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct GdnWeights {
    /// Shards `q`, `k`, `v` (all from `in_proj_qkv`), then `z`.
    pub in_proj_qkvz: PackedWeight,
    /// Shards `b`, `a`.
    pub in_proj_ba: PackedWeight,
    /// `[conv_dim, K]` (the checkpoint's `[conv_dim, 1, K]`), f32.
    pub conv1d: Vec<f32>,
    /// `[nv]`, f32.
    pub a_log: Vec<f32>,
    /// `[nv]`, f32.
    pub dt_bias: Vec<f32>,
    /// `[dv]`, plain weight (not 1+w), f32.
    pub norm: Vec<f32>,
    pub out_proj: PackedWeight,
}

/// Gated full-attention weights of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionWeights {
    /// Shards `q` (query|gate interleaved per head, `2*nh*hd` rows), `k`, `v`.
    pub qkv: PackedWeight,
    pub o_proj: PackedWeight,
    /// `[hd]`, stored (1+w form applied by the consumer), f32.
    pub q_norm: Vec<f32>,
    pub k_norm: Vec<f32>,
    pub kv_scales: Option<KvScales>,
}

/// SwiGLU weights (dense MLP or shared expert).
#[derive(Debug, Clone, PartialEq)]
pub struct MlpWeights {
    /// Shards `gate`, `up`.
    pub gate_up: PackedWeight,
    pub down: PackedWeight,
}

/// MoE block weights of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeWeights {
    /// `[E, H]` router (`mlp.gate`).
    pub router: PackedWeight,
    /// `[E * 2 * Ie, H]`, shards `e{i}.gate`, `e{i}.up` per expert in expert order.
    pub experts_gate_up: PackedWeight,
    /// `[E * H, Ie]`, shards `e{i}.down`.
    pub experts_down: PackedWeight,
    pub shared_expert: MlpWeights,
    /// `[1, H]`.
    pub shared_expert_gate: PackedWeight,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mixer {
    Linear(GdnWeights),
    Full(AttentionWeights),
}

// One value per layer, built once at load time: the size difference is harmless
// and boxing would change this shared interface.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Ffn {
    Dense(MlpWeights),
    Moe(MoeWeights),
}

/// One decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedLayer {
    /// `[H]` (1+w form applied by the consumer), f32.
    pub input_layernorm: Vec<f32>,
    pub post_attention_layernorm: Vec<f32>,
    pub mixer: Mixer,
    pub ffn: Ffn,
}

/// The whole text model, packed.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedModel {
    pub config: TextConfig,
    /// `[V, H]`.
    pub embed_tokens: PackedWeight,
    pub layers: Vec<PackedLayer>,
    /// `[H]`, f32.
    pub norm: Vec<f32>,
    /// `[V, H]`; `None` when the embeddings are tied.
    pub lm_head: Option<PackedWeight>,
}

impl PackedModel {
    /// Every packed weight, in model order (embeddings, each layer's mixer and
    /// FFN, head): what an engine uploads.
    pub fn weights(&self) -> Vec<&PackedWeight> {
        let mut out = vec![&self.embed_tokens];
        for layer in &self.layers {
            match &layer.mixer {
                Mixer::Linear(g) => out.extend([&g.in_proj_qkvz, &g.in_proj_ba, &g.out_proj]),
                Mixer::Full(a) => out.extend([&a.qkv, &a.o_proj]),
            }
            match &layer.ffn {
                Ffn::Dense(m) => out.extend([&m.gate_up, &m.down]),
                Ffn::Moe(m) => out.extend([
                    &m.router,
                    &m.experts_gate_up,
                    &m.experts_down,
                    &m.shared_expert.gate_up,
                    &m.shared_expert.down,
                    &m.shared_expert_gate,
                ]),
            }
        }
        out.extend(self.lm_head.as_ref());
        out
    }
}

impl ScaleScheme {
    /// Short human-readable form, e.g. `per-shard (4 scales)`, `block 128x128 (2 grids)`.
    pub fn describe(&self) -> String {
        match self {
            ScaleScheme::None => "none".into(),
            ScaleScheme::PerShard { scales } => format!("per-shard ({} scales)", scales.len()),
            ScaleScheme::PerChannel { scales } => format!("per-channel ({} rows)", scales.len()),
            ScaleScheme::Block { block, segments } => format!(
                "block {block_0}x{block_1} ({segments_len} grid{plural})",
                block_0 = block[0],
                block_1 = block[1],
                segments_len = segments.len(),
                plural = if segments.len() == 1 { "" } else { "s" }
            ),
            ScaleScheme::Int4(q) => format!(
                "int4 group {group_size} ({scales_len} scales)",
                group_size = q.group_size,
                scales_len = q.scales.len()
            ),
        }
    }
}
