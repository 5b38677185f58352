//! Parsing + validation of `config.json`: the multimodal wrapper (`text_config`)
//! or a text-only export, dense or MoE. Every count is bounded so that nothing
//! derived from the file can size a huge allocation or loop.

use std::path::Path;

use serde_json::Value;

use crate::config::{FfnConfig, LayerType, ModelConfig, RopeConfig, TextConfig};
use crate::json_fields::{short, Fields};
use crate::quant_parse::parse_quantization_config;
use crate::CheckpointError;

/// Sanity bounds on file-derived counts (far above any released model).
pub(crate) mod bounds {
    pub const LAYERS: u64 = 4096;
    pub const VOCAB: u64 = 1 << 24;
    pub const HIDDEN: u64 = 65_536;
    pub const HEADS: u64 = 4096;
    pub const HEAD_DIM: u64 = 4096;
    pub const INTERMEDIATE: u64 = 1 << 20;
    pub const EXPERTS: u64 = 4096;
    pub const CONV_KERNEL: u64 = 64;
    pub const EOS_IDS: usize = 64;
}

/// Architectures whose tensor layout this crate knows.
const KNOWN_ARCHITECTURES: &[&str] = &[
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "Qwen3_5ForCausalLM",
    "Qwen3_5MoeForCausalLM",
];

/// `model_type`s (top level and `text_config`) of the Qwen3.5 architecture,
/// which Qwen3.6 and Qwen3.8 keep.
const KNOWN_MODEL_TYPES: &[&str] = &["qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text"];

pub(crate) fn parse_model_config(doc: &str, path: &Path) -> Result<ModelConfig, CheckpointError> {
    let root: Value = crate::files::parse_json(doc, path)?;
    let Value::Object(top) = &root else {
        return Err(CheckpointError::Config {
            path: path.to_path_buf(),
            field: "<document>".into(),
            detail: format!("expected a JSON object, got {}", short(&root)),
        });
    };
    let top = Fields::new(top, "", path);

    let (tc, wrapped) = match top.opt_object("text_config")? {
        Some(m) => (Fields::new(m, "text_config", path), true),
        None => (top, false),
    };

    let architecture = match top.get("architectures") {
        None => String::new(),
        Some(Value::Array(a)) => match a.first() {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(top.err(
                    "architectures",
                    format!("expected strings, got {}", short(v)),
                ))
            }
        },
        Some(v) => {
            return Err(top.err(
                "architectures",
                format!("expected a list, got {}", short(v)),
            ))
        }
    };
    // Qwen3.6 and Qwen3.8 reuse these names (same architecture); a new one
    // (another layer layout or tensor set) must not be read as Qwen3.5.
    if !architecture.is_empty() && !KNOWN_ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(top.err(
            "architectures",
            format!(
                "architecture \"{architecture}\" is not supported (known: {known})",
                known = KNOWN_ARCHITECTURES.join(", ")
            ),
        ));
    }
    let model_type = top.str("model_type")?.to_string();
    let text_model_type = tc.opt_str("model_type")?.unwrap_or(&model_type);
    for (f, mt) in [(&top, model_type.as_str()), (&tc, text_model_type)] {
        if !KNOWN_MODEL_TYPES.contains(&mt) {
            return Err(f.err(
                "model_type",
                format!(
                    "model type \"{mt}\" is not supported (known: {known})",
                    known = KNOWN_MODEL_TYPES.join(", ")
                ),
            ));
        }
    }

    let text = parse_text_config(&tc, text_model_type)?;

    let tie_word_embeddings = match top.opt_bool("tie_word_embeddings")? {
        Some(b) => b,
        None => tc.opt_bool("tie_word_embeddings")?.unwrap_or(false),
    };

    let mut quantization = if top.has("quantization_config") {
        Some(parse_quantization_config(&top, "quantization_config")?)
    } else if wrapped && tc.has("quantization_config") {
        Some(parse_quantization_config(&tc, "quantization_config")?)
    } else {
        None
    };
    if let Some(crate::QuantizationConfig::Gptq(g)) = quantization.as_mut() {
        crate::quant_int4::order_dynamic(g, doc);
    }

    let eos_token_ids = if top.has("eos_token_id") {
        parse_eos(&top)?
    } else {
        parse_eos(&tc)?
    };

    Ok(ModelConfig {
        architecture,
        model_type,
        wrapped,
        text,
        tie_word_embeddings,
        quantization,
        eos_token_ids,
    })
}

fn parse_eos(f: &Fields<'_>) -> Result<Vec<u32>, CheckpointError> {
    let key = "eos_token_id";
    let one = |v: &Value| -> Result<u32, CheckpointError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| f.err(key, format!("expected a token id (u32), got {}", short(v))))
    };
    match f.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            if a.len() > bounds::EOS_IDS {
                return Err(f.err(
                    key,
                    format!(
                        "{a_len} ids exceed the sanity bound {bounds_eos_ids}",
                        a_len = a.len(),
                        bounds_eos_ids = bounds::EOS_IDS
                    ),
                ));
            }
            a.iter().map(one).collect()
        }
        Some(v) => Ok(vec![one(v)?]),
    }
}

fn parse_text_config(tc: &Fields<'_>, model_type: &str) -> Result<TextConfig, CheckpointError> {
    use bounds::*;
    let vocab_size = tc.size("vocab_size", VOCAB)?;
    let hidden_size = tc.size("hidden_size", HIDDEN)?;
    let num_hidden_layers = tc.size("num_hidden_layers", LAYERS)?;
    let num_attention_heads = tc.size("num_attention_heads", HEADS)?;
    let num_key_value_heads = tc.size("num_key_value_heads", HEADS)?;
    let head_dim = tc.size("head_dim", HEAD_DIM)?;
    let linear_conv_kernel_dim = tc.size("linear_conv_kernel_dim", CONV_KERNEL)?;
    let linear_key_head_dim = tc.size("linear_key_head_dim", HEAD_DIM)?;
    let linear_value_head_dim = tc.size("linear_value_head_dim", HEAD_DIM)?;
    let linear_num_key_heads = tc.size("linear_num_key_heads", HEADS)?;
    let linear_num_value_heads = tc.size("linear_num_value_heads", HEADS)?;

    let rms_norm_eps = tc
        .opt_f64("rms_norm_eps")?
        .ok_or_else(|| tc.err("rms_norm_eps", "missing (required)"))?;
    if rms_norm_eps <= 0.0 || rms_norm_eps >= 1.0 {
        return Err(tc.err(
            "rms_norm_eps",
            format!("must be in (0, 1), got {rms_norm_eps}"),
        ));
    }

    if num_attention_heads % num_key_value_heads != 0 {
        return Err(tc.err(
            "num_key_value_heads",
            format!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            ),
        ));
    }
    if linear_num_value_heads % linear_num_key_heads != 0 {
        return Err(tc.err(
            "linear_num_key_heads",
            format!(
                "linear_num_value_heads {linear_num_value_heads} is not a multiple of linear_num_key_heads {linear_num_key_heads}"
            ),
        ));
    }

    let layer_types = parse_layer_types(tc, num_hidden_layers)?;
    let rope = parse_rope(tc)?;
    let rotary = head_dim as f64 * rope.partial_rotary_factor;
    let rotary_dim = rotary as usize;
    if rotary_dim == 0 || rotary_dim & 1 == 1 {
        return Err(tc.err(
            "partial_rotary_factor",
            format!(
                "rotary dim int(head_dim {head_dim} × partial_rotary_factor {rope_partial_rotary_factor}) = {rotary_dim} must be even and > 0",
                rope_partial_rotary_factor = rope.partial_rotary_factor
            ),
        ));
    }
    let attn_output_gate = tc.opt_bool("attn_output_gate")?.unwrap_or(true);

    let is_moe = tc.has("num_experts") || model_type.to_ascii_lowercase().contains("moe");
    let ffn = if is_moe {
        // Every layer is sparse in the Qwen3.5 layout: dense layers inside an
        // MoE model would need tensors this layout does not have.
        if tc
            .opt_size("decoder_sparse_step", LAYERS)?
            .is_some_and(|s| s != 1)
        {
            return Err(tc.err(
                "decoder_sparse_step",
                "only 1 (every layer MoE) is supported",
            ));
        }
        if let Some(Value::Array(a)) = tc.get("mlp_only_layers") {
            if !a.is_empty() {
                return Err(tc.err(
                    "mlp_only_layers",
                    "dense layers in an MoE model are not supported (expected [])",
                ));
            }
        }
        let num_experts = tc.size("num_experts", EXPERTS)?;
        let num_experts_per_tok = tc.size("num_experts_per_tok", EXPERTS)?;
        if num_experts_per_tok > num_experts {
            return Err(tc.err(
                "num_experts_per_tok",
                format!("top-k {num_experts_per_tok} exceeds num_experts {num_experts}"),
            ));
        }
        FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size: tc.size("moe_intermediate_size", INTERMEDIATE)?,
            shared_expert_intermediate_size: tc
                .size("shared_expert_intermediate_size", INTERMEDIATE)?,
        }
    } else {
        FfnConfig::Dense {
            intermediate_size: tc.size("intermediate_size", INTERMEDIATE)?,
        }
    };

    Ok(TextConfig {
        vocab_size,
        hidden_size,
        num_hidden_layers,
        layer_types,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps,
        linear_conv_kernel_dim,
        linear_key_head_dim,
        linear_value_head_dim,
        linear_num_key_heads,
        linear_num_value_heads,
        rope,
        attn_output_gate,
        ffn,
    })
}

fn parse_layer_types(tc: &Fields<'_>, layers: usize) -> Result<Vec<LayerType>, CheckpointError> {
    let key = "layer_types";
    match tc.get(key) {
        Some(Value::Array(items)) => {
            if items.len() != layers {
                return Err(tc.err(
                    key,
                    format!(
                        "has {items_len} entries, expected num_hidden_layers = {layers}",
                        items_len = items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_str() {
                    Some("linear_attention") => Ok(LayerType::LinearAttention),
                    Some("full_attention") => Ok(LayerType::FullAttention),
                    _ => Err(tc.err(
                        key,
                        format!(
                            "entry {i}: unknown layer type {short_v} (expected \"linear_attention\" or \"full_attention\")",
                            short_v = short(v)
                        ),
                    )),
                })
                .collect()
        }
        Some(v) => Err(tc.err(key, format!("expected a list, got {}", short(v)))),
        None => {
            let interval = tc
                .opt_size("full_attention_interval", bounds::LAYERS)?
                .unwrap_or(4);
            Ok((0..layers)
                .map(|i| {
                    if (i + 1) % interval == 0 {
                        LayerType::FullAttention
                    } else {
                        LayerType::LinearAttention
                    }
                })
                .collect())
        }
    }
}

/// RoPE from `rope_parameters`, then top-level fields, then `rope_scaling`; each
/// field independently, defaults theta 10000 and partial factor 0.25 (HF).
fn parse_rope(tc: &Fields<'_>) -> Result<RopeConfig, CheckpointError> {
    let params_name = tc.field_name("rope_parameters");
    let scaling_name = tc.field_name("rope_scaling");
    let mut ordered: Vec<Fields<'_>> = Vec::with_capacity(3);
    if let Some(m) = tc.opt_object("rope_parameters")? {
        ordered.push(Fields::new(m, &params_name, tc.path));
    }
    ordered.push(*tc);
    if let Some(m) = tc.opt_object("rope_scaling")? {
        ordered.push(Fields::new(m, &scaling_name, tc.path));
    }
    let pick = |key: &str| -> Result<Option<(f64, Fields<'_>)>, CheckpointError> {
        for f in &ordered {
            if let Some(x) = f.opt_f64(key)? {
                return Ok(Some((x, *f)));
            }
        }
        Ok(None)
    };
    // Scaled RoPE (yarn, linear, dynamic, ...) changes the frequencies this
    // engine computes: refused rather than silently ignored.
    for f in ordered.iter().filter(|f| f.prefix != tc.prefix) {
        for key in ["rope_type", "type"] {
            if let Some(t) = f.opt_str(key)? {
                if !matches!(t, "default" | "mrope") {
                    return Err(f.err(
                        key,
                        format!("RoPE type \"{t}\" is not supported (default or mrope)"),
                    ));
                }
            }
        }
    }
    let theta = match pick("rope_theta")? {
        None => 10_000.0,
        Some((t, _)) if t > 0.0 => t,
        Some((t, f)) => return Err(f.err("rope_theta", format!("must be > 0, got {t}"))),
    };
    let partial_rotary_factor = match pick("partial_rotary_factor")? {
        None => 0.25,
        Some((p, _)) if p > 0.0 && p <= 1.0 => p,
        Some((p, f)) => {
            return Err(f.err(
                "partial_rotary_factor",
                format!("must be in (0, 1], got {p}"),
            ));
        }
    };
    Ok(RopeConfig {
        theta,
        partial_rotary_factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text() -> Value {
        json!({
            "model_type": "qwen3_5_text", "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 8,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6,
            "linear_conv_kernel_dim": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
            "linear_num_key_heads": 2, "linear_num_value_heads": 4, "intermediate_size": 128
        })
    }

    fn parse(v: &Value) -> Result<ModelConfig, CheckpointError> {
        parse_model_config(&v.to_string(), Path::new("m/config.json"))
    }

    #[test]
    fn defaults_interval_rope_and_tie() {
        let c = parse(&text()).expect("valid");
        // Interval 4: layers 3 and 7 are full attention.
        let full: Vec<usize> = (0..8)
            .filter(|&i| c.text.layer_types[i] == LayerType::FullAttention)
            .collect();
        assert_eq!(full, vec![3, 7]);
        assert_eq!(
            c.text.rope,
            RopeConfig {
                theta: 10_000.0,
                partial_rotary_factor: 0.25
            }
        );
        assert!(!c.tie_word_embeddings);
        assert!(c.quantization.is_none());
        assert!(c.eos_token_ids.is_empty());
        assert!(c.text.attn_output_gate);
    }

    #[test]
    fn explicit_interval() {
        let mut t = text();
        t["full_attention_interval"] = json!(2);
        let c = parse(&t).expect("valid");
        let full = c
            .text
            .layer_types
            .iter()
            .filter(|l| **l == LayerType::FullAttention)
            .count();
        assert_eq!(full, 4);
    }

    #[test]
    fn rope_sources_in_priority_order() {
        let mut t = text();
        t["rope_theta"] = json!(5e5);
        t["rope_scaling"] = json!({"partial_rotary_factor": 0.5, "rope_theta": 1.0});
        let c = parse(&t).expect("valid");
        assert_eq!(c.text.rope.theta, 5e5, "top level beats rope_scaling");
        assert_eq!(
            c.text.rope.partial_rotary_factor, 0.5,
            "rope_scaling fills the gap"
        );
        t["rope_parameters"] = json!({"rope_theta": 1e7, "partial_rotary_factor": 0.25});
        let c = parse(&t).expect("valid");
        assert_eq!(
            c.text.rope,
            RopeConfig {
                theta: 1e7,
                partial_rotary_factor: 0.25
            }
        );
    }

    #[test]
    fn wrapper_reads_top_level_then_text_config() {
        let mut tc = text();
        tc["tie_word_embeddings"] = json!(true);
        tc["eos_token_id"] = json!([248046, 248044]);
        tc["quantization_config"] = json!({"quant_method": "fp8", "weight_block_size": [128, 128]});
        let w = json!({"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5", "text_config": tc});
        let c = parse(&w).expect("valid");
        assert!(c.wrapped);
        assert!(c.tie_word_embeddings, "falls back to text_config");
        assert_eq!(c.eos_token_ids, vec![248046, 248044]);
        assert!(c.quantization.is_some());
        let mut w2 = w.clone();
        w2["tie_word_embeddings"] = json!(false);
        w2["eos_token_id"] = json!(7);
        let c = parse(&w2).expect("valid");
        assert!(!c.tie_word_embeddings, "top level wins");
        assert_eq!(c.eos_token_ids, vec![7]);
    }

    #[test]
    fn moe_detected_by_model_type_requires_moe_fields() {
        let mut t = text();
        t["model_type"] = json!("qwen3_5_moe_text");
        let e = parse(&t).expect_err("moe fields missing");
        assert!(e.to_string().contains("num_experts"), "{e}");
    }

    #[test]
    fn non_object_documents_are_errors() {
        for doc in ["[]", "3", "null", "{\"model_type\": 5}"] {
            let e = parse_model_config(doc, Path::new("c.json")).expect_err(doc);
            assert!(e.to_string().contains("c.json"), "{e}");
        }
    }
}
