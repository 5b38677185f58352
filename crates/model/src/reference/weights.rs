//! f32 copies of every weight, made once from a [`PackedModel`], with every
//! shape checked against the config so the forward pass cannot index out of range.

use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};
use qwgpu_loader::{Ffn, Mixer, PackedLayer, PackedModel, PackedWeight};

use super::linear::Matrix;
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
            "layer_types has {} entries, num_hidden_layers = {}",
            cfg.layer_types.len(),
            cfg.num_hidden_layers
        ));
    }
    if !cfg
        .num_attention_heads
        .is_multiple_of(cfg.num_key_value_heads)
    {
        return bad(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            cfg.num_attention_heads, cfg.num_key_value_heads
        ));
    }
    if !cfg
        .linear_num_value_heads
        .is_multiple_of(cfg.linear_num_key_heads)
    {
        return bad(format!(
            "linear_num_value_heads {} is not a multiple of linear_num_key_heads {}",
            cfg.linear_num_value_heads, cfg.linear_num_key_heads
        ));
    }
    let rd = cfg.rotary_dim();
    if !rd.is_multiple_of(2) || rd > cfg.head_dim {
        return bad(format!(
            "rotary dim int({} * {}) = {rd} must be even and at most head_dim",
            cfg.head_dim, cfg.rope.partial_rotary_factor
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

/// Dequantizes `w` after checking it is `[rows, cols]`.
fn matrix(
    w: &PackedWeight,
    rows: usize,
    cols: usize,
    why: &'static str,
) -> Result<Matrix, ModelError> {
    if w.rows != rows || w.cols != cols {
        return Err(ModelError::WeightShape {
            tensor: w.name.clone(),
            expected: vec![rows, cols],
            got: vec![w.rows, w.cols],
            why,
        });
    }
    let numel = rows.checked_mul(cols).ok_or_else(|| ModelError::Config {
        detail: format!("weight `{}`: {rows} x {cols} elements overflow", w.name),
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

/// Copies a 1-D f32 weight after checking its length.
fn vector(name: String, v: &[f32], len: usize, why: &'static str) -> Result<Vec<f32>, ModelError> {
    if v.len() != len {
        return Err(ModelError::WeightShape {
            tensor: name,
            expected: vec![len],
            got: vec![v.len()],
            why,
        });
    }
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
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    if m.layers.len() != cfg.num_hidden_layers {
        return Err(ModelError::Config {
            detail: format!(
                "model has {} layers, num_hidden_layers = {}",
                m.layers.len(),
                cfg.num_hidden_layers
            ),
        });
    }
    let embed = matrix(&m.embed_tokens, v, h, "vocab_size, hidden_size")?;
    let lm_head = match &m.lm_head {
        Some(w) => Some(matrix(w, v, h, "vocab_size, hidden_size")?),
        None => None,
    };
    let norm = vector("model.norm.weight".into(), &m.norm, h, "hidden_size")?;
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
    let h = cfg.hidden_size;
    let p = format!("model.layers.{i}");
    let input_norm = vector(
        format!("{p}.input_layernorm.weight"),
        &l.input_layernorm,
        h,
        "hidden_size",
    )?;
    let post_norm = vector(
        format!("{p}.post_attention_layernorm.weight"),
        &l.post_attention_layernorm,
        h,
        "hidden_size",
    )?;
    let mixer = match (&l.mixer, ty) {
        (Mixer::Linear(w), LayerType::LinearAttention) => {
            let (nv, dv) = (cfg.linear_num_value_heads, cfg.linear_value_head_dim);
            let la = format!("{p}.linear_attn");
            MixerLayer::Linear(GdnLayer {
                in_proj_qkvz: matrix(
                    &w.in_proj_qkvz,
                    cfg.conv_dim() + cfg.value_dim(),
                    h,
                    "2·nk·dk + 2·nv·dv, hidden_size",
                )?,
                in_proj_ba: matrix(&w.in_proj_ba, 2 * nv, h, "2·nv, hidden_size")?,
                conv1d: vector(
                    format!("{la}.conv1d.weight"),
                    &w.conv1d,
                    cfg.conv_dim() * cfg.linear_conv_kernel_dim,
                    "conv_dim · linear_conv_kernel_dim",
                )?,
                a_log: vector(
                    format!("{la}.A_log"),
                    &w.a_log,
                    nv,
                    "linear_num_value_heads",
                )?,
                dt_bias: vector(
                    format!("{la}.dt_bias"),
                    &w.dt_bias,
                    nv,
                    "linear_num_value_heads",
                )?,
                norm: vector(
                    format!("{la}.norm.weight"),
                    &w.norm,
                    dv,
                    "linear_value_head_dim",
                )?,
                out_proj: matrix(&w.out_proj, h, cfg.value_dim(), "hidden_size, nv·dv")?,
            })
        }
        (Mixer::Full(w), LayerType::FullAttention) => {
            let hd = cfg.head_dim;
            let sa = format!("{p}.self_attn");
            MixerLayer::Full(AttentionLayer {
                qkv: matrix(
                    &w.qkv,
                    cfg.q_proj_rows() + 2 * cfg.kv_proj_rows(),
                    h,
                    "2·nh·hd + 2·nkv·hd, hidden_size",
                )?,
                o_proj: matrix(
                    &w.o_proj,
                    h,
                    cfg.num_attention_heads * hd,
                    "hidden_size, nh·hd",
                )?,
                q_norm: vector(format!("{sa}.q_norm.weight"), &w.q_norm, hd, "head_dim")?,
                k_norm: vector(format!("{sa}.k_norm.weight"), &w.k_norm, hd, "head_dim")?,
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
        (Ffn::Dense(w), FfnConfig::Dense { intermediate_size }) => {
            FfnLayer::Dense(mlp(w, h, *intermediate_size)?)
        }
        (
            Ffn::Moe(w),
            FfnConfig::Moe {
                num_experts: e,
                moe_intermediate_size: ie,
                shared_expert_intermediate_size: is,
                num_experts_per_tok: k,
            },
        ) => FfnLayer::Moe(MoeLayer {
            router: matrix(&w.router, *e, h, "num_experts, hidden_size")?,
            moe_intermediate: *ie,
            top_k: *k,
            experts_gate_up: matrix(&w.experts_gate_up, e * 2 * ie, h, "E·2·Ie, hidden_size")?,
            experts_down: matrix(&w.experts_down, e * h, *ie, "E·hidden_size, Ie")?,
            shared: mlp(&w.shared_expert, h, *is)?,
            shared_gate: matrix(&w.shared_expert_gate, 1, h, "1, hidden_size")?,
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

fn mlp(w: &qwgpu_loader::MlpWeights, h: usize, inter: usize) -> Result<MlpLayer, ModelError> {
    Ok(MlpLayer {
        gate_up: matrix(&w.gate_up, 2 * inter, h, "2·intermediate, hidden_size")?,
        down: matrix(&w.down, h, inter, "hidden_size, intermediate")?,
    })
}

pub(crate) fn layer_type_name(ty: LayerType) -> &'static str {
    match ty {
        LayerType::LinearAttention => "linear_attention",
        LayerType::FullAttention => "full_attention",
    }
}
