//! f32 copies of every weight, made once from a [`PackedModel`], with every
//! shape checked against the config so the forward pass cannot index out of range.

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};
use qwgpu_loader::{Ffn, Mixer, PackedLayer, PackedModel, PackedWeight};

use super::linear::Matrix;
use crate::shapes::{check_matrix, check_vector};
use crate::ModelError;

pub(crate) struct GdnLayer {
    pub in_proj_qkvz: Matrix,
    pub in_proj_ba: Matrix,
    /// `[conv_dim, K]`.
    pub conv1d: Vec<f32>,
    pub a_log: Vec<f32>,
    pub dt_bias: Vec<f32>,
    /// Plain weight (not 1+w).
    pub norm: Vec<f32>,
    pub out_proj: Matrix,
}

pub(crate) struct AttentionLayer {
    pub qkv: Matrix,
    pub o_proj: Matrix,
    pub q_norm: Vec<f32>,
    pub k_norm: Vec<f32>,
}

pub(crate) struct MlpLayer {
    /// Gate rows, then up rows.
    pub gate_up: Matrix,
    pub down: Matrix,
}

pub(crate) struct MoeLayer {
    pub router: Matrix,
    pub moe_intermediate: usize,
    /// Experts per token.
    pub top_k: usize,
    /// `[E·2·Ie, H]`: expert e's gate rows at `e·2Ie`, up rows right after.
    pub experts_gate_up: Matrix,
    /// `[E·H, Ie]`: expert e's down rows at `e·H`.
    pub experts_down: Matrix,
    pub shared: MlpLayer,
    /// `[1, H]`.
    pub shared_gate: Matrix,
}

pub(crate) enum MixerLayer {
    Linear(GdnLayer),
    Full(AttentionLayer),
}

pub(crate) enum FfnLayer {
    Dense(MlpLayer),
    Moe(MoeLayer),
}

pub(crate) struct Layer {
    pub input_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
    pub mixer: MixerLayer,
    pub ffn: FfnLayer,
}

/// Upper bound on any single size read from a config built outside the
/// checkpoint reader (keeps products far from overflow).
const MAX_DIM: usize = 1 << 24;

/// Rejects configs the forward pass cannot run (zero sizes, indivisible head
/// counts, odd rotary width, top-k beyond the expert count).
pub(crate) fn validate_config(cfg: &TextConfig) -> Result<(), ModelError> {
    let bad = |detail: String| Err(ModelError::Config { detail });
    let sizes = [
        ("vocab_size", cfg.vocab_size),
        ("hidden_size", cfg.hidden_size),
        ("num_attention_heads", cfg.num_attention_heads),
        ("num_key_value_heads", cfg.num_key_value_heads),
        ("head_dim", cfg.head_dim),
        ("linear_conv_kernel_dim", cfg.linear_conv_kernel_dim),
        ("linear_key_head_dim", cfg.linear_key_head_dim),
        ("linear_value_head_dim", cfg.linear_value_head_dim),
        ("linear_num_key_heads", cfg.linear_num_key_heads),
        ("linear_num_value_heads", cfg.linear_num_value_heads),
    ];
    for (name, v) in sizes {
        if v == 0 || v > MAX_DIM {
            return bad(format!("{name} = {v}, expected 1..={MAX_DIM}"));
        }
    }
    if cfg.layer_types.len() != cfg.num_hidden_layers {
        return bad(format!(
            "layer_types has {cfg_layer_types_len} entries, num_hidden_layers = {cfg_num_hidden_layers}",
            cfg_layer_types_len = cfg.layer_types.len(),
            cfg_num_hidden_layers = cfg.num_hidden_layers
        ));
    }
    if !cfg
        .num_attention_heads
        .is_multiple_of(cfg.num_key_value_heads)
    {
        return bad(format!(
            "num_attention_heads {cfg_num_attention_heads} is not a multiple of num_key_value_heads {cfg_num_key_value_heads}",
            cfg_num_attention_heads = cfg.num_attention_heads,
            cfg_num_key_value_heads = cfg.num_key_value_heads
        ));
    }
    if !cfg
        .linear_num_value_heads
        .is_multiple_of(cfg.linear_num_key_heads)
    {
        return bad(format!(
            "linear_num_value_heads {cfg_linear_num_value_heads} is not a multiple of linear_num_key_heads {cfg_linear_num_key_heads}",
            cfg_linear_num_value_heads = cfg.linear_num_value_heads,
            cfg_linear_num_key_heads = cfg.linear_num_key_heads
        ));
    }
    let rd = cfg.rotary_dim();
    if !rd.is_multiple_of(2) || rd > cfg.head_dim {
        return bad(format!(
            "rotary dim int({cfg_head_dim} * {partial_rotary_factor}) = {rd} must be even and at most head_dim",
            cfg_head_dim = cfg.head_dim,
            partial_rotary_factor = cfg.rope.partial_rotary_factor
        ));
    }
    if !(cfg.rms_norm_eps.is_finite() && cfg.rms_norm_eps >= 0.0) {
        return bad(format!(
            "rms_norm_eps = {} must be finite and >= 0",
            cfg.rms_norm_eps
        ));
    }
    if !(cfg.rope.theta.is_finite() && cfg.rope.theta > 0.0) {
        return bad(format!(
            "rope_theta = {} must be finite and > 0",
            cfg.rope.theta
        ));
    }
    match cfg.ffn {
        FfnConfig::Dense { intermediate_size }
            if intermediate_size == 0 || intermediate_size > MAX_DIM =>
        {
            bad(format!(
                "intermediate_size = {intermediate_size}, expected 1..={MAX_DIM}"
            ))
        }
        FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size,
            shared_expert_intermediate_size,
        } => {
            if num_experts == 0
                || num_experts > MAX_DIM
                || num_experts_per_tok == 0
                || num_experts_per_tok > num_experts
            {
                return bad(format!(
                    "num_experts_per_tok = {num_experts_per_tok} with num_experts = {num_experts}: need 1 <= k <= E"
                ));
            }
            for (name, v) in [
                ("moe_intermediate_size", moe_intermediate_size),
                (
                    "shared_expert_intermediate_size",
                    shared_expert_intermediate_size,
                ),
            ] {
                if v == 0 || v > MAX_DIM {
                    return bad(format!("{name} = {v}, expected 1..={MAX_DIM}"));
                }
            }
            Ok(())
        }
        FfnConfig::Dense { .. } => Ok(()),
    }
}

/// Dequantizes `w` after checking it has the shape the table gives a `kind` weight.
fn matrix(c: &TextConfig, kind: Packed, w: &PackedWeight) -> Result<Matrix, ModelError> {
    check_matrix(c, kind, w)?;
    let (rows, cols) = (w.rows, w.cols);
    let numel = rows.checked_mul(cols).ok_or_else(|| ModelError::Config {
        detail: format!(
            "weight `{w_name}`: {rows} x {cols} elements overflow",
            w_name = w.name
        ),
    })?;
    let data = qwgpu_loader::dequantize(w)?;
    if data.len() != numel {
        return Err(ModelError::DequantizedLength {
            tensor: w.name.clone(),
            rows,
            cols,
            expected: numel,
            got: data.len(),
        });
    }
    Ok(Matrix { rows, cols, data })
}

/// Copies a 1-D f32 weight after checking its length against the table.
fn vector(c: &TextConfig, kind: Packed, name: &str, v: &[f32]) -> Result<Vec<f32>, ModelError> {
    check_vector(c, kind, name, v)?;
    Ok(v.to_vec())
}

pub(crate) struct Converted {
    pub embed: Matrix,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    pub lm_head: Option<Matrix>,
}

/// Checks and dequantizes the whole model.
pub(crate) fn convert(m: &PackedModel) -> Result<Converted, ModelError> {
    let cfg = &m.config;
    validate_config(cfg)?;
    if m.layers.len() != cfg.num_hidden_layers {
        let (layers, want) = (m.layers.len(), cfg.num_hidden_layers);
        return Err(ModelError::Config {
            detail: format!("model has {layers} layers, num_hidden_layers = {want}"),
        });
    }
    let embed = matrix(cfg, Packed::Embed, &m.embed_tokens)?;
    let lm_head = match &m.lm_head {
        Some(w) => Some(matrix(cfg, Packed::LmHead, w)?),
        None => None,
    };
    let norm = vector(cfg, Packed::FinalNorm, "model.norm.weight", &m.norm)?;
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, (layer, ty)) in m.layers.iter().zip(&cfg.layer_types).enumerate() {
        layers.push(convert_layer(cfg, i, layer, *ty)?);
    }
    Ok(Converted {
        embed,
        layers,
        norm,
        lm_head,
    })
}

fn convert_layer(
    cfg: &TextConfig,
    i: usize,
    l: &PackedLayer,
    ty: LayerType,
) -> Result<Layer, ModelError> {
    let p = format!("model.layers.{i}");
    let input_norm = vector(
        cfg,
        Packed::InputNorm,
        &format!("{p}.input_layernorm.weight"),
        &l.input_layernorm,
    )?;
    let post_norm = vector(
        cfg,
        Packed::PostNorm,
        &format!("{p}.post_attention_layernorm.weight"),
        &l.post_attention_layernorm,
    )?;
    let mixer = match (&l.mixer, ty) {
        (Mixer::Linear(w), LayerType::LinearAttention) => {
            let la = format!("{p}.linear_attn");
            MixerLayer::Linear(GdnLayer {
                in_proj_qkvz: matrix(cfg, Packed::GdnQkvz, &w.in_proj_qkvz)?,
                in_proj_ba: matrix(cfg, Packed::GdnBa, &w.in_proj_ba)?,
                conv1d: vector(
                    cfg,
                    Packed::GdnConv1d,
                    &format!("{la}.conv1d.weight"),
                    &w.conv1d,
                )?,
                a_log: vector(cfg, Packed::GdnALog, &format!("{la}.A_log"), &w.a_log)?,
                dt_bias: vector(cfg, Packed::GdnDtBias, &format!("{la}.dt_bias"), &w.dt_bias)?,
                norm: vector(cfg, Packed::GdnNorm, &format!("{la}.norm.weight"), &w.norm)?,
                out_proj: matrix(cfg, Packed::GdnOut, &w.out_proj)?,
            })
        }
        (Mixer::Full(w), LayerType::FullAttention) => {
            let sa = format!("{p}.self_attn");
            MixerLayer::Full(AttentionLayer {
                qkv: matrix(cfg, Packed::AttnQkv, &w.qkv)?,
                o_proj: matrix(cfg, Packed::AttnOut, &w.o_proj)?,
                q_norm: vector(
                    cfg,
                    Packed::AttnQNorm,
                    &format!("{sa}.q_norm.weight"),
                    &w.q_norm,
                )?,
                k_norm: vector(
                    cfg,
                    Packed::AttnKNorm,
                    &format!("{sa}.k_norm.weight"),
                    &w.k_norm,
                )?,
            })
        }
        (m, ty) => {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: layer_type_name(ty),
                got: match m {
                    Mixer::Linear(_) => "linear_attention weights",
                    Mixer::Full(_) => "full_attention weights",
                },
            })
        }
    };
    let ffn = match (&l.ffn, &cfg.ffn) {
        (Ffn::Dense(w), FfnConfig::Dense { .. }) => FfnLayer::Dense(MlpLayer {
            gate_up: matrix(cfg, Packed::MlpGateUp, &w.gate_up)?,
            down: matrix(cfg, Packed::MlpDown, &w.down)?,
        }),
        (
            Ffn::Moe(w),
            FfnConfig::Moe {
                moe_intermediate_size: ie,
                num_experts_per_tok: k,
                ..
            },
        ) => FfnLayer::Moe(MoeLayer {
            router: matrix(cfg, Packed::MoeRouter, &w.router)?,
            moe_intermediate: *ie,
            top_k: *k,
            experts_gate_up: matrix(cfg, Packed::MoeExpertsGateUp, &w.experts_gate_up)?,
            experts_down: matrix(cfg, Packed::MoeExpertsDown, &w.experts_down)?,
            shared: MlpLayer {
                gate_up: matrix(cfg, Packed::SharedGateUp, &w.shared_expert.gate_up)?,
                down: matrix(cfg, Packed::SharedDown, &w.shared_expert.down)?,
            },
            shared_gate: matrix(cfg, Packed::SharedGate, &w.shared_expert_gate)?,
        }),
        (f, _) => {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: if cfg.is_moe() {
                    "an MoE block"
                } else {
                    "a dense MLP"
                },
                got: match f {
                    Ffn::Dense(_) => "dense MLP weights",
                    Ffn::Moe(_) => "MoE weights",
                },
            })
        }
    };
    Ok(Layer {
        input_norm,
        post_norm,
        mixer,
        ffn,
    })
}

pub(crate) fn layer_type_name(ty: LayerType) -> &'static str {
    match ty {
        LayerType::LinearAttention => "linear_attention",
        LayerType::FullAttention => "full_attention",
    }
}
