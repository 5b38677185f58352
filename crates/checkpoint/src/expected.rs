//! The tensors a Qwen3.5 config implies: canonical name, exact shape,
//! the shape's formula for error messages, and which dtypes the role allows.

use crate::config::{FfnConfig, LayerType, TextConfig};
use crate::names::layer_prefix;
use crate::Dtype;

/// What dtypes a tensor may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A linear layer's weight (2-D, routers included) or fused expert weights (3-D):
    /// F32/F16/BF16 or FP8 (the loader checks that FP8 comes with its scales).
    Linear,
    /// Norms, conv1d, `A_log`, `dt_bias`, embeddings: F32/F16/BF16 only.
    Float,
}

impl Role {
    pub fn allows(self, dtype: Dtype) -> bool {
        match self {
            Role::Linear => true,
            Role::Float => !dtype.is_fp8(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::Linear => "F32, F16, BF16, F8_E4M3 or F8_E5M2 for a linear weight",
            Role::Float => "F32, F16 or BF16: this tensor is never quantized",
        }
    }
}

/// One tensor the config requires.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The shape in config symbols, e.g. `[2·nk·dk + nv·dv, H]`.
    pub formula: &'static str,
    pub role: Role,
}

fn t(name: String, shape: Vec<usize>, formula: &'static str, role: Role) -> ExpectedTensor {
    ExpectedTensor {
        name,
        shape,
        formula,
        role,
    }
}

/// Every required tensor except MoE routed experts (whose layout varies, see
/// [`fused_expert_tensors`] / [`per_expert_tensors`]).
pub fn expected_tensors(c: &TextConfig, tie_word_embeddings: bool) -> Vec<ExpectedTensor> {
    use Role::{Float, Linear};
    let h = c.hidden_size;
    let mut out = vec![
        t(
            "model.embed_tokens.weight".into(),
            vec![c.vocab_size, h],
            "[V, H]",
            Float,
        ),
        t("model.norm.weight".into(), vec![h], "[H]", Float),
    ];
    if !tie_word_embeddings {
        out.push(t(
            "lm_head.weight".into(),
            vec![c.vocab_size, h],
            "[V, H]",
            Linear,
        ));
    }
    let (nv, dv) = (c.linear_num_value_heads, c.linear_value_head_dim);
    for (i, lt) in c.layer_types.iter().enumerate() {
        let p = layer_prefix(i);
        out.push(t(
            format!("{p}input_layernorm.weight"),
            vec![h],
            "[H]",
            Float,
        ));
        out.push(t(
            format!("{p}post_attention_layernorm.weight"),
            vec![h],
            "[H]",
            Float,
        ));
        match lt {
            LayerType::LinearAttention => {
                let la = format!("{p}linear_attn.");
                out.extend([
                    t(
                        format!("{la}in_proj_qkv.weight"),
                        vec![c.conv_dim(), h],
                        "[2·nk·dk + nv·dv, H]",
                        Linear,
                    ),
                    t(
                        format!("{la}in_proj_z.weight"),
                        vec![c.value_dim(), h],
                        "[nv·dv, H]",
                        Linear,
                    ),
                    t(
                        format!("{la}in_proj_b.weight"),
                        vec![nv, h],
                        "[nv, H]",
                        Linear,
                    ),
                    t(
                        format!("{la}in_proj_a.weight"),
                        vec![nv, h],
                        "[nv, H]",
                        Linear,
                    ),
                    t(
                        format!("{la}conv1d.weight"),
                        vec![c.conv_dim(), 1, c.linear_conv_kernel_dim],
                        "[2·nk·dk + nv·dv, 1, K]",
                        Float,
                    ),
                    t(format!("{la}A_log"), vec![nv], "[nv]", Float),
                    t(format!("{la}dt_bias"), vec![nv], "[nv]", Float),
                    t(format!("{la}norm.weight"), vec![dv], "[dv]", Float),
                    t(
                        format!("{la}out_proj.weight"),
                        vec![h, c.value_dim()],
                        "[H, nv·dv]",
                        Linear,
                    ),
                ]);
            }
            LayerType::FullAttention => {
                let sa = format!("{p}self_attn.");
                let hd = c.head_dim;
                out.extend([
                    t(
                        format!("{sa}q_proj.weight"),
                        vec![c.q_proj_rows(), h],
                        "[2·nh·hd, H]",
                        Linear,
                    ),
                    t(
                        format!("{sa}k_proj.weight"),
                        vec![c.kv_proj_rows(), h],
                        "[nkv·hd, H]",
                        Linear,
                    ),
                    t(
                        format!("{sa}v_proj.weight"),
                        vec![c.kv_proj_rows(), h],
                        "[nkv·hd, H]",
                        Linear,
                    ),
                    t(
                        format!("{sa}o_proj.weight"),
                        vec![h, c.num_attention_heads * hd],
                        "[H, nh·hd]",
                        Linear,
                    ),
                    t(format!("{sa}q_norm.weight"), vec![hd], "[hd]", Float),
                    t(format!("{sa}k_norm.weight"), vec![hd], "[hd]", Float),
                ]);
            }
        }
        let m = format!("{p}mlp.");
        match c.ffn {
            FfnConfig::Dense {
                intermediate_size: i,
            } => out.extend([
                t(format!("{m}gate_proj.weight"), vec![i, h], "[I, H]", Linear),
                t(format!("{m}up_proj.weight"), vec![i, h], "[I, H]", Linear),
                t(format!("{m}down_proj.weight"), vec![h, i], "[H, I]", Linear),
            ]),
            FfnConfig::Moe {
                num_experts: e,
                shared_expert_intermediate_size: is,
                ..
            } => out.extend([
                t(format!("{m}gate.weight"), vec![e, h], "[E, H]", Linear),
                t(
                    format!("{m}shared_expert.gate_proj.weight"),
                    vec![is, h],
                    "[Is, H]",
                    Linear,
                ),
                t(
                    format!("{m}shared_expert.up_proj.weight"),
                    vec![is, h],
                    "[Is, H]",
                    Linear,
                ),
                t(
                    format!("{m}shared_expert.down_proj.weight"),
                    vec![h, is],
                    "[H, Is]",
                    Linear,
                ),
                t(
                    format!("{m}shared_expert_gate.weight"),
                    vec![1, h],
                    "[1, H]",
                    Float,
                ),
            ]),
        }
    }
    out
}

/// The fused (BF16 release) expert tensors of MoE layer `layer`; empty for dense.
pub fn fused_expert_tensors(c: &TextConfig, layer: usize) -> Vec<ExpectedTensor> {
    let FfnConfig::Moe {
        num_experts: e,
        moe_intermediate_size: ie,
        ..
    } = c.ffn
    else {
        return Vec::new();
    };
    let h = c.hidden_size;
    let p = format!("{}mlp.experts.", layer_prefix(layer));
    vec![
        t(
            format!("{p}gate_up_proj"),
            vec![e, 2 * ie, h],
            "[E, 2·Ie, H]",
            Role::Linear,
        ),
        t(
            format!("{p}down_proj"),
            vec![e, h, ie],
            "[E, H, Ie]",
            Role::Linear,
        ),
    ]
}

/// The per-expert (FP8 release) tensors of MoE layer `layer`; empty for dense.
pub fn per_expert_tensors(c: &TextConfig, layer: usize) -> Vec<ExpectedTensor> {
    let FfnConfig::Moe {
        num_experts: e,
        moe_intermediate_size: ie,
        ..
    } = c.ffn
    else {
        return Vec::new();
    };
    let h = c.hidden_size;
    let lp = layer_prefix(layer);
    let mut out = Vec::with_capacity(3 * e);
    for x in 0..e {
        let p = format!("{lp}mlp.experts.{x}.");
        out.push(t(
            format!("{p}gate_proj.weight"),
            vec![ie, h],
            "[Ie, H]",
            Role::Linear,
        ));
        out.push(t(
            format!("{p}up_proj.weight"),
            vec![ie, h],
            "[Ie, H]",
            Role::Linear,
        ));
        out.push(t(
            format!("{p}down_proj.weight"),
            vec![h, ie],
            "[H, Ie]",
            Role::Linear,
        ));
    }
    out
}

/// Suffixes of quantization companions (scales, zero points, KV-cache scales)
/// that the loader interprets; accepted on any known module.
pub const COMPANION_SUFFIXES: &[&str] = &[
    ".weight_scale_inv",
    ".weight_scale",
    ".input_scale",
    ".weight_zero_point",
    ".input_zero_point",
    ".k_scale",
    ".v_scale",
    ".q_scale",
    ".prob_scale",
    ".output_scale",
];

/// Suffixes appended directly to a fused expert tensor name
/// (`mlp.experts.gate_up_proj_scale_inv`, ...).
pub const FUSED_COMPANION_SUFFIXES: &[&str] = &[
    "_weight_scale_inv",
    "_weight_scale",
    "_scale_inv",
    "_scale",
    "_input_scale",
    ".weight_scale_inv",
    ".weight_scale",
    ".input_scale",
];
