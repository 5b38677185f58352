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
            // I32 only as the packed words of a 4-bit weight (`qweight`,
            // `weight_packed`), which the loader reads with their companions.
            Role::Linear => !dtype.is_int(),
            Role::Float => !dtype.is_fp8() && !dtype.is_int(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::Linear => "F32, F16, BF16, F8_E4M3 or F8_E5M2 for a linear weight (or I32 `qweight` / `weight_packed` words of a 4-bit one)",
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

/// The packed-words tensor that stands for a linear layer's `.weight` in a
/// 4-bit checkpoint: `qweight` (GPTQ, AWQ) or `weight_packed`
/// (compressed-tensors `pack-quantized`).
pub const INT4_WEIGHT_SUFFIXES: &[&str] = &[".qweight", ".weight_packed"];

/// The 4-bit names that may stand for the linear weight `name`
/// (`….gate_proj.weight` → `….gate_proj.qweight`, `….gate_proj.weight_packed`).
/// Fused 3-D MoE experts have no `.weight` suffix; their compressed form
/// nests the companions under the parameter's name
/// (`….experts.gate_up_proj` → `….experts.gate_up_proj.weight_packed`, as
/// llm-compressor's `repack_moe` writes it; `….qweight` is listed so the
/// loader can refuse it by name). Empty for any other name.
pub fn int4_weight_names(name: &str) -> Vec<String> {
    match name.strip_suffix(".weight") {
        Some(stem) => INT4_WEIGHT_SUFFIXES
            .iter()
            .map(|s| format!("{stem}{s}"))
            .collect(),
        None if name.ends_with(".experts.gate_up_proj") || name.ends_with(".experts.down_proj") => {
            INT4_WEIGHT_SUFFIXES
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect()
        }
        None => Vec::new(),
    }
}

/// Suffixes of quantization companions (scales, zero points, KV-cache scales,
/// 4-bit packed words and group indices) that the loader interprets; accepted
/// on any known module.
pub const COMPANION_SUFFIXES: &[&str] = &[
    ".qweight",
    ".qzeros",
    ".scales",
    ".g_idx",
    ".weight_packed",
    ".weight_shape",
    ".weight_g_idx",
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

/// A weight as the loader packs it for the forward passes (projections read
/// from the same input fused, experts stacked): the one description of their
/// shapes that the GPU and the CPU reference check weights against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    /// `model.embed_tokens.weight`.
    Embed,
    /// `lm_head.weight` (untied models).
    LmHead,
    /// `model.norm.weight`.
    FinalNorm,
    /// A layer's `input_layernorm.weight`.
    InputNorm,
    /// A layer's `post_attention_layernorm.weight`.
    PostNorm,
    /// Gated DeltaNet: `in_proj_qkv` then `in_proj_z`.
    GdnQkvz,
    /// Gated DeltaNet: `in_proj_b` then `in_proj_a`.
    GdnBa,
    /// Gated DeltaNet: `conv1d.weight` as `[conv_dim · K]`.
    GdnConv1d,
    GdnALog,
    GdnDtBias,
    GdnNorm,
    GdnOut,
    /// Attention: `q_proj` (with its gate), `k_proj`, `v_proj`.
    AttnQkv,
    AttnOut,
    AttnQNorm,
    AttnKNorm,
    /// Dense MLP: `gate_proj` then `up_proj`.
    MlpGateUp,
    MlpDown,
    /// MoE router (`mlp.gate`).
    MoeRouter,
    /// Routed experts' gate then up rows, expert after expert.
    MoeExpertsGateUp,
    /// Routed experts' down rows, expert after expert.
    MoeExpertsDown,
    /// Shared expert: `gate_proj` then `up_proj`.
    SharedGateUp,
    SharedDown,
    /// `shared_expert_gate`.
    SharedGate,
}

/// A packed weight's shape (`[rows, cols]` or `[len]`) and its formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedShape {
    pub shape: Vec<usize>,
    /// The shape in config symbols, e.g. `[2·nk·dk + 2·nv·dv, H]`.
    pub formula: &'static str,
}

/// The shape `c` implies for packed weight `w`; `None` for an FFN weight of
/// the other FFN kind (dense vs MoE) than the config's.
pub fn packed_shape(c: &TextConfig, w: Packed) -> Option<PackedShape> {
    use Packed::*;
    let h = c.hidden_size;
    let (nv, dv, hd) = (
        c.linear_num_value_heads,
        c.linear_value_head_dim,
        c.head_dim,
    );
    let s = |shape: Vec<usize>, formula: &'static str| Some(PackedShape { shape, formula });
    let moe = match c.ffn {
        FfnConfig::Moe {
            num_experts,
            moe_intermediate_size,
            shared_expert_intermediate_size,
            ..
        } => Some((
            num_experts,
            moe_intermediate_size,
            shared_expert_intermediate_size,
        )),
        FfnConfig::Dense { .. } => None,
    };
    let dense = match c.ffn {
        FfnConfig::Dense { intermediate_size } => Some(intermediate_size),
        FfnConfig::Moe { .. } => None,
    };
    match w {
        Embed | LmHead => s(vec![c.vocab_size, h], "[V, H]"),
        FinalNorm | InputNorm | PostNorm => s(vec![h], "[H]"),
        GdnQkvz => s(
            vec![c.conv_dim() + c.value_dim(), h],
            "[2·nk·dk + 2·nv·dv, H]",
        ),
        GdnBa => s(vec![2 * nv, h], "[2·nv, H]"),
        GdnConv1d => s(
            vec![c.conv_dim() * c.linear_conv_kernel_dim],
            "[(2·nk·dk + nv·dv)·K]",
        ),
        GdnALog | GdnDtBias => s(vec![nv], "[nv]"),
        GdnNorm => s(vec![dv], "[dv]"),
        GdnOut => s(vec![h, c.value_dim()], "[H, nv·dv]"),
        AttnQkv => s(
            vec![c.q_proj_rows() + 2 * c.kv_proj_rows(), h],
            "[2·nh·hd + 2·nkv·hd, H]",
        ),
        AttnOut => s(vec![h, c.num_attention_heads * hd], "[H, nh·hd]"),
        AttnQNorm | AttnKNorm => s(vec![hd], "[hd]"),
        MlpGateUp => dense.and_then(|i| s(vec![2 * i, h], "[2·I, H]")),
        MlpDown => dense.and_then(|i| s(vec![h, i], "[H, I]")),
        MoeRouter => moe.and_then(|(e, _, _)| s(vec![e, h], "[E, H]")),
        MoeExpertsGateUp => moe.and_then(|(e, ie, _)| s(vec![e * 2 * ie, h], "[E·2·Ie, H]")),
        MoeExpertsDown => moe.and_then(|(e, ie, _)| s(vec![e * h, ie], "[E·H, Ie]")),
        SharedGateUp => moe.and_then(|(_, _, is)| s(vec![2 * is, h], "[2·Is, H]")),
        SharedDown => moe.and_then(|(_, _, is)| s(vec![h, is], "[H, Is]")),
        SharedGate => moe.and_then(|_| s(vec![1, h], "[1, H]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeConfig;

    fn config(ffn: FfnConfig) -> TextConfig {
        TextConfig {
            vocab_size: 64,
            hidden_size: 24,
            num_hidden_layers: 2,
            layer_types: vec![LayerType::LinearAttention, LayerType::FullAttention],
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            linear_conv_kernel_dim: 4,
            linear_key_head_dim: 8,
            linear_value_head_dim: 6,
            linear_num_key_heads: 2,
            linear_num_value_heads: 4,
            rms_norm_eps: 1e-6,
            rope: RopeConfig {
                theta: 1e4,
                partial_rotary_factor: 0.25,
            },
            attn_output_gate: true,
            ffn,
        }
    }

    fn shape(c: &TextConfig, name: &str) -> Vec<usize> {
        let all: Vec<ExpectedTensor> = expected_tensors(c, false)
            .into_iter()
            .chain(fused_expert_tensors(c, 0))
            .collect();
        let t = all.iter().find(|t| t.name.ends_with(name));
        t.unwrap_or_else(|| panic!("no tensor {name}"))
            .shape
            .clone()
    }

    fn packed(c: &TextConfig, w: Packed) -> Vec<usize> {
        packed_shape(c, w).expect("exists").shape
    }

    /// Every packed weight's shape is the concatenation of the checkpoint
    /// tensors the loader fuses into it (the checkpoint table is the reference).
    #[test]
    fn packed_shapes_are_the_fused_checkpoint_shapes() {
        let dense = config(FfnConfig::Dense {
            intermediate_size: 40,
        });
        let c = &dense;
        let rows = |n: &str| shape(c, n)[0];
        let h = c.hidden_size;
        assert_eq!(packed(c, Packed::Embed), shape(c, "embed_tokens.weight"));
        assert_eq!(packed(c, Packed::LmHead), shape(c, "lm_head.weight"));
        assert_eq!(packed(c, Packed::FinalNorm), shape(c, "model.norm.weight"));
        assert_eq!(
            packed(c, Packed::GdnQkvz),
            [rows("in_proj_qkv.weight") + rows("in_proj_z.weight"), h]
        );
        assert_eq!(
            packed(c, Packed::GdnBa),
            [rows("in_proj_b.weight") + rows("in_proj_a.weight"), h]
        );
        let conv = shape(c, "conv1d.weight");
        assert_eq!(
            packed(c, Packed::GdnConv1d),
            [conv.iter().product::<usize>()]
        );
        assert_eq!(
            packed(c, Packed::GdnOut),
            shape(c, "linear_attn.out_proj.weight")
        );
        assert_eq!(
            packed(c, Packed::GdnNorm),
            shape(c, "linear_attn.norm.weight")
        );
        assert_eq!(packed(c, Packed::GdnALog), shape(c, "A_log"));
        assert_eq!(
            packed(c, Packed::AttnQkv),
            [
                rows("q_proj.weight") + rows("k_proj.weight") + rows("v_proj.weight"),
                h
            ]
        );
        assert_eq!(packed(c, Packed::AttnOut), shape(c, "o_proj.weight"));
        assert_eq!(packed(c, Packed::AttnQNorm), shape(c, "q_norm.weight"));
        assert_eq!(
            packed(c, Packed::MlpGateUp),
            [rows("mlp.gate_proj.weight") + rows("mlp.up_proj.weight"), h]
        );
        assert_eq!(packed(c, Packed::MlpDown), shape(c, "mlp.down_proj.weight"));
        assert_eq!(packed_shape(c, Packed::MoeRouter), None);

        let moe = config(FfnConfig::Moe {
            num_experts: 4,
            num_experts_per_tok: 2,
            moe_intermediate_size: 12,
            shared_expert_intermediate_size: 20,
        });
        let c = &moe;
        let rows = |n: &str| shape(c, n)[0];
        assert_eq!(packed(c, Packed::MoeRouter), shape(c, "mlp.gate.weight"));
        let gu = shape(c, "experts.gate_up_proj");
        assert_eq!(packed(c, Packed::MoeExpertsGateUp), [gu[0] * gu[1], gu[2]]);
        let down = shape(c, "experts.down_proj");
        assert_eq!(
            packed(c, Packed::MoeExpertsDown),
            [down[0] * down[1], down[2]]
        );
        assert_eq!(
            packed(c, Packed::SharedGateUp),
            [
                rows("shared_expert.gate_proj.weight") + rows("shared_expert.up_proj.weight"),
                h
            ]
        );
        assert_eq!(
            packed(c, Packed::SharedDown),
            shape(c, "shared_expert.down_proj.weight")
        );
        assert_eq!(
            packed(c, Packed::SharedGate),
            shape(c, "shared_expert_gate.weight")
        );
        assert_eq!(packed_shape(c, Packed::MlpGateUp), None);
    }
}
