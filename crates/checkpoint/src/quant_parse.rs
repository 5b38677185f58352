//! Parsing of `quantization_config` into [`QuantizationConfig`]: Qwen official FP8,
//! compressed-tensors (FP8 only) and NVIDIA ModelOpt (FP8 only).

use serde_json::{Map, Value};

use crate::json_fields::{short, Fields};
use crate::quant::{
    ActivationScheme, CompressedTensorsConfig, CtGroup, CtQuantArgs, CtStrategy, Fp8Config,
    Fp8Format, ModelOptConfig, QuantizationConfig,
};
use crate::CheckpointError;

/// Bound on list lengths (ignore lists, groups, targets).
const MAX_LIST: usize = 1 << 20;
/// Bound on block sizes.
const MAX_BLOCK: u64 = 1 << 16;

/// Parses `parent[key]` (a `quantization_config` object).
pub(crate) fn parse_quantization_config(
    parent: &Fields<'_>,
    key: &str,
) -> Result<QuantizationConfig, CheckpointError> {
    let name = parent.field_name(key);
    let Some(obj) = parent.opt_object(key)? else {
        return Err(parent.err(key, "missing (required)"));
    };
    let q = Fields::new(obj, &name, parent.path);
    parse_quant_object(&q)
}

fn unsupported(q: &Fields<'_>, detail: String) -> CheckpointError {
    CheckpointError::UnsupportedQuantization {
        path: q.path.to_path_buf(),
        detail,
    }
}

fn parse_quant_object(q: &Fields<'_>) -> Result<QuantizationConfig, CheckpointError> {
    let method = match q.opt_str("quant_method")? {
        Some(m) => m.to_ascii_lowercase(),
        // ModelOpt's `hf_quant_config.json` form: {"producer": ..., "quantization": {...}}.
        None if q.has("quantization") => "modelopt".to_string(),
        None => return Err(q.err("quant_method", "missing (required)")),
    };
    match method.as_str() {
        "fp8" => parse_fp8(q).map(QuantizationConfig::Fp8),
        "compressed-tensors" | "compressed_tensors" => parse_ct(q).map(QuantizationConfig::CompressedTensors),
        "modelopt" => parse_modelopt(q).map(QuantizationConfig::ModelOpt),
        "gptq" => crate::quant_int4::parse_gptq(q).map(QuantizationConfig::Gptq),
        "awq" => crate::quant_int4::parse_awq(q).map(QuantizationConfig::Awq),
        other => Err(unsupported(
            q,
            format!(
                "{q_field_name_quant_method}: quant_method \"{other}\" is not supported (supported: fp8, compressed-tensors, modelopt, gptq, awq)",
                q_field_name_quant_method = q.field_name("quant_method")
            ),
        )),
    }
}

fn block_pair(f: &Fields<'_>, key: &str, v: &Value) -> Result<[usize; 2], CheckpointError> {
    let dims: Vec<Option<u64>> = match v {
        Value::Array(a) => a.iter().map(Value::as_u64).collect(),
        // Older compressed-tensors wrote e.g. "128x128".
        Value::String(s) => s
            .split(['x', 'X', ','])
            .map(|p| p.trim().parse::<u64>().ok())
            .collect(),
        _ => vec![],
    };
    match dims.as_slice() {
        [Some(a), Some(b)] if (1..=MAX_BLOCK).contains(a) && (1..=MAX_BLOCK).contains(b) => {
            Ok([*a as usize, *b as usize])
        }
        _ => Err(f.err(
            key,
            format!(
                "expected two block sizes in 1..={MAX_BLOCK} like [128, 128], got {short_v}",
                short_v = short(v)
            ),
        )),
    }
}

fn parse_fp8(q: &Fields<'_>) -> Result<Fp8Config, CheckpointError> {
    let fmt = match q.opt_str("fmt")?.map(str::to_ascii_lowercase) {
        None => Fp8Format::E4M3,
        Some(s) if s.contains("e4m3") => Fp8Format::E4M3,
        Some(s) if s.contains("e5m2") => Fp8Format::E5M2,
        Some(s) => {
            return Err(unsupported(
                q,
                format!(
                    "{q_field_name_fmt}: FP8 format \"{s}\"",
                    q_field_name_fmt = q.field_name("fmt")
                ),
            ))
        }
    };
    let weight_block_size = q
        .get("weight_block_size")
        .map(|v| block_pair(q, "weight_block_size", v))
        .transpose()?;
    let activation_scheme = match q
        .opt_str("activation_scheme")?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("dynamic") => ActivationScheme::Dynamic,
        Some("static") => ActivationScheme::Static,
        Some(other) => {
            return Err(q.err(
                "activation_scheme",
                format!("expected \"dynamic\" or \"static\", got \"{other}\""),
            ))
        }
    };
    let modules_to_not_convert = match q.opt_str_list("modules_to_not_convert", MAX_LIST)? {
        Some(v) => v,
        None => q
            .opt_str_list("ignored_layers", MAX_LIST)?
            .unwrap_or_default(),
    };
    Ok(Fp8Config {
        fmt,
        weight_block_size,
        activation_scheme,
        modules_to_not_convert,
    })
}

fn parse_strategy(f: &Fields<'_>, s: &str) -> Result<CtStrategy, CheckpointError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tensor" => CtStrategy::Tensor,
        "channel" => CtStrategy::Channel,
        "block" => CtStrategy::Block,
        "group" => CtStrategy::Group,
        "token" => CtStrategy::Token,
        "tensor_group" => CtStrategy::TensorGroup,
        "attn_head" | "attn" => CtStrategy::Attn,
        "head" => CtStrategy::Head,
        other => return Err(f.err("strategy", format!("unknown strategy \"{other}\""))),
    })
}

fn parse_ct_args(f: &Fields<'_>) -> Result<CtQuantArgs, CheckpointError> {
    let num_bits = f.size("num_bits", 64)? as u32;
    let kind = f.opt_str("type")?.unwrap_or("int").to_string();
    let strategy = parse_strategy(f, f.opt_str("strategy")?.unwrap_or("tensor"))?;
    let symmetric = f.opt_bool("symmetric")?.unwrap_or(true);
    let dynamic = match f.get("dynamic") {
        None => false,
        Some(Value::Bool(b)) => *b,
        // compressed-tensors' `DynamicType.LOCAL`.
        Some(Value::String(s)) if s == "local" => true,
        Some(v) => {
            return Err(f.err(
                "dynamic",
                format!("expected a bool or \"local\", got {}", short(v)),
            ))
        }
    };
    let block_structure = f
        .get("block_structure")
        .map(|v| block_pair(f, "block_structure", v))
        .transpose()?;
    let group_size = f.opt_size("group_size", MAX_BLOCK)?;
    Ok(CtQuantArgs {
        num_bits,
        kind,
        strategy,
        symmetric,
        dynamic,
        block_structure,
        group_size,
    })
}

/// 8-bit float weights/activations (FP8), or 4-bit integer weights
/// (`weights_only`: W4A16, `pack-quantized`).
fn require_fp8(
    q: &Fields<'_>,
    field: &str,
    a: &CtQuantArgs,
    weights: bool,
) -> Result<(), CheckpointError> {
    let int4 = weights && a.num_bits == 4 && a.kind == "int";
    if !int4 && (a.num_bits != 8 || a.kind != "float") {
        return Err(unsupported(
            q,
            format!(
                "{field}: {a_num_bits}-bit {a_kind} quantization (only 8-bit float, i.e. FP8, or 4-bit int weights are supported)",
                a_num_bits = a.num_bits,
                a_kind = a.kind
            ),
        ));
    }
    Ok(())
}

fn parse_ct(q: &Fields<'_>) -> Result<CompressedTensorsConfig, CheckpointError> {
    let format = q.opt_str("format")?.unwrap_or("").to_string();
    let groups_obj: &Map<String, Value> = q
        .opt_object("config_groups")?
        .ok_or_else(|| q.err("config_groups", "missing (required)"))?;
    if groups_obj.len() > MAX_LIST {
        return Err(q.err("config_groups", "too many groups"));
    }
    let groups_name = q.field_name("config_groups");
    let mut groups = Vec::with_capacity(groups_obj.len());
    for (gname, gv) in groups_obj {
        let gpath = format!("{groups_name}.{gname}");
        let Value::Object(gobj) = gv else {
            return Err(q.err(
                "config_groups",
                format!(
                    "group `{gname}`: expected an object, got {short_gv}",
                    short_gv = short(gv)
                ),
            ));
        };
        let g = Fields::new(gobj, &gpath, q.path);
        let targets = g
            .opt_str_list("targets", MAX_LIST)?
            .ok_or_else(|| g.err("targets", "missing (required)"))?;
        let args = |key: &str| -> Result<Option<CtQuantArgs>, CheckpointError> {
            match g.opt_object(key)? {
                None => Ok(None),
                Some(m) => {
                    let p = g.field_name(key);
                    let f = Fields::new(m, &p, q.path);
                    let a = parse_ct_args(&f)?;
                    require_fp8(q, &p, &a, key == "weights")?;
                    Ok(Some(a))
                }
            }
        };
        let weights = args("weights")?;
        let input_activations = args("input_activations")?;
        if let (Some(w), Some(a)) = (&weights, &input_activations) {
            if w.kind == "int" && a.kind == "float" {
                return Err(unsupported(
                    q,
                    format!(
                        "{gpath}: 4-bit int weights with FP8 activations (W4A8) are not supported"
                    ),
                ));
            }
        }
        groups.push(CtGroup {
            name: gname.clone(),
            targets,
            weights,
            input_activations,
        });
    }
    let ignore = q.opt_str_list("ignore", MAX_LIST)?.unwrap_or_default();
    let kv_cache_scheme = match q.opt_object("kv_cache_scheme")? {
        None => None,
        Some(m) => {
            let p = q.field_name("kv_cache_scheme");
            Some(parse_ct_args(&Fields::new(m, &p, q.path))?)
        }
    };
    Ok(CompressedTensorsConfig {
        format,
        groups,
        ignore,
        kv_cache_scheme,
    })
}

fn parse_modelopt(q: &Fields<'_>) -> Result<ModelOptConfig, CheckpointError> {
    let nested_name = q.field_name("quantization");
    let inner = match q.opt_object("quantization")? {
        Some(m) => Fields::new(m, &nested_name, q.path),
        None => *q,
    };
    let quant_algo = inner.str("quant_algo")?.to_string();
    if !quant_algo.to_ascii_uppercase().starts_with("FP8") {
        return Err(unsupported(
            q,
            format!(
                "{inner_field_name_quant_algo}: ModelOpt algorithm \"{quant_algo}\" (only FP8 is supported)",
                inner_field_name_quant_algo = inner.field_name("quant_algo")
            ),
        ));
    }
    let kv_cache_quant_algo = inner.opt_str("kv_cache_quant_algo")?.map(str::to_string);
    let exclude_modules = match inner.opt_str_list("exclude_modules", MAX_LIST)? {
        Some(v) => v,
        None => inner.opt_str_list("ignore", MAX_LIST)?.unwrap_or_default(),
    };
    Ok(ModelOptConfig {
        quant_algo,
        kv_cache_quant_algo,
        exclude_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn parse(q: Value) -> Result<QuantizationConfig, CheckpointError> {
        let top = json!({ "quantization_config": q });
        let m = top.as_object().expect("object");
        parse_quantization_config(
            &Fields::new(m, "", Path::new("config.json")),
            "quantization_config",
        )
    }

    #[test]
    fn qwen_official_fp8() {
        let q = parse(json!({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [128, 128], "modules_to_not_convert": ["lm_head", "model.language_model.layers.0.linear_attn.in_proj_b"]}))
        .expect("valid");
        assert_eq!(
            q,
            QuantizationConfig::Fp8(Fp8Config {
                fmt: Fp8Format::E4M3,
                weight_block_size: Some([128, 128]),
                activation_scheme: ActivationScheme::Dynamic,
                modules_to_not_convert: vec![
                    "lm_head".into(),
                    "model.language_model.layers.0.linear_attn.in_proj_b".into()
                ],
            })
        );
        let q = parse(json!({"quant_method": "fp8", "fmt": "e5m2", "activation_scheme": "static"}))
            .expect("valid");
        let QuantizationConfig::Fp8(f) = q else {
            panic!("fp8 expected")
        };
        assert_eq!(
            (f.fmt, f.weight_block_size, f.activation_scheme),
            (Fp8Format::E5M2, None, ActivationScheme::Static)
        );
    }

    #[test]
    fn compressed_tensors_block_and_channel() {
        let q = parse(json!({"quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {
                "group_0": {"targets": ["Linear"],
                    "weights": {"num_bits": 8, "type": "float", "symmetric": true, "strategy": "block", "dynamic": false, "block_structure": [128, 64]},
                    "input_activations": {"num_bits": 8, "type": "float", "strategy": "group", "group_size": 128, "dynamic": true}},
                "group_1": {"targets": ["re:.*experts.*"],
                    "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "block_structure": "128x128"},
                    "input_activations": null}},
            "ignore": ["lm_head", "re:.*mlp.gate$"],
            "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor"}}))
        .expect("valid");
        let QuantizationConfig::CompressedTensors(ct) = q else {
            panic!("ct expected")
        };
        assert_eq!(ct.format, "float-quantized");
        assert_eq!(
            ct.ignore,
            vec!["lm_head".to_string(), "re:.*mlp.gate$".to_string()]
        );
        assert_eq!(ct.groups.len(), 2);
        let g0 = ct.groups.iter().find(|g| g.name == "group_0").expect("g0");
        let w = g0.weights.as_ref().expect("weights");
        assert_eq!(
            (w.strategy, w.block_structure),
            (CtStrategy::Block, Some([128, 64]))
        );
        let a = g0.input_activations.as_ref().expect("acts");
        assert_eq!(
            (a.strategy, a.group_size, a.dynamic),
            (CtStrategy::Group, Some(128), true)
        );
        let g1 = ct.groups.iter().find(|g| g.name == "group_1").expect("g1");
        assert_eq!(
            g1.weights.as_ref().and_then(|w| w.block_structure),
            Some([128, 128])
        );
        assert!(g1.input_activations.is_none());
        assert!(ct.kv_cache_scheme.is_some());
    }

    #[test]
    fn modelopt_flat_and_nested() {
        let flat = parse(json!({"quant_method": "modelopt", "quant_algo": "FP8", "exclude_modules": ["lm_head", "*mlp.gate"]}))
            .expect("flat");
        let nested = parse(json!({"producer": {"name": "modelopt"}, "quantization":
            {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head", "*mlp.gate"]}}))
        .expect("nested");
        let QuantizationConfig::ModelOpt(f) = flat else {
            panic!()
        };
        let QuantizationConfig::ModelOpt(n) = nested else {
            panic!()
        };
        assert_eq!(f.exclude_modules, n.exclude_modules);
        assert_eq!(n.kv_cache_quant_algo.as_deref(), Some("FP8"));
        assert!(f.kv_cache_quant_algo.is_none());
        let e =
            parse(json!({"quant_method": "modelopt", "quant_algo": "NVFP4"})).expect_err("nvfp4");
        assert!(
            matches!(e, CheckpointError::UnsupportedQuantization { .. })
                && e.to_string().contains("NVFP4"),
            "{e}"
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            (json!({"quant_method": "gptq", "bits": 8}), "8-bit"),
            (json!({"bits": 4}), "quant_method"),
            (
                json!({"quant_method": "fp8", "weight_block_size": [128]}),
                "weight_block_size",
            ),
            (
                json!({"quant_method": "fp8", "weight_block_size": [0, 128]}),
                "weight_block_size",
            ),
            (
                json!({"quant_method": "fp8", "activation_scheme": "sometimes"}),
                "activation_scheme",
            ),
            (
                json!({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "strategy": "group", "group_size": 128}}}}),
                "8-bit int",
            ),
            (
                json!({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "float", "strategy": "diagonal"}}}}),
                "diagonal",
            ),
            (
                json!({"quant_method": "compressed-tensors"}),
                "config_groups",
            ),
        ];
        for (q, want) in cases {
            let e = parse(q.clone()).expect_err(&q.to_string());
            assert!(e.to_string().contains(want), "{q}: {e}");
            assert!(e.to_string().contains("config.json"), "{e}");
        }
    }
}
