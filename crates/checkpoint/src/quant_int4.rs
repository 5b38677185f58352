//! Parsing of the 4-bit `quantization_config`s: GPTQ (with GPTQModel's
//! `dynamic` rules) and AWQ (GEMM packing).

use serde_json::Value;

use crate::json_fields::{short, Fields};
use crate::quant::{AwqConfig, GptqConfig, GptqDynamicRule, GptqFormat, GptqParams};
use crate::CheckpointError;

/// Bound on list lengths (ignore lists, dynamic rules).
const MAX_LIST: usize = 1 << 20;
/// Bound on group sizes.
const MAX_GROUP: i64 = 1 << 20;

fn unsupported(q: &Fields<'_>, key: &str, detail: String) -> CheckpointError {
    CheckpointError::UnsupportedQuantization {
        path: q.path.to_path_buf(),
        detail: format!("{field}: {detail}", field = q.field_name(key)),
    }
}

/// `bits`: only 4 is supported (3- and 8-bit GPTQ/AWQ are refused by name).
fn read_bits(f: &Fields<'_>, key: &str) -> Result<Option<u32>, CheckpointError> {
    let Some(b) = f.opt_size(key, 64)? else {
        return Ok(None);
    };
    if b != 4 {
        return Err(unsupported(
            f,
            key,
            format!("{b}-bit weights are not supported (only 4-bit)"),
        ));
    }
    Ok(Some(4))
}

/// `group_size`: a positive size, or `-1` (one group per row) → `None`.
fn read_group_size(f: &Fields<'_>, key: &str) -> Result<Option<Option<usize>>, CheckpointError> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(-1) => Ok(Some(None)),
            Some(g) if (1..=MAX_GROUP).contains(&g) => Ok(Some(Some(g as usize))),
            _ => Err(f.err(
                key,
                format!(
                    "expected a group size in 1..={MAX_GROUP} or -1, got {v_short}",
                    v_short = short(v)
                ),
            )),
        },
    }
}

fn not_convert(q: &Fields<'_>) -> Result<Vec<String>, CheckpointError> {
    Ok(q.opt_str_list("modules_to_not_convert", MAX_LIST)?
        .unwrap_or_default())
}

pub(crate) fn parse_gptq(q: &Fields<'_>) -> Result<GptqConfig, CheckpointError> {
    let bits = read_bits(q, "bits")?.ok_or_else(|| q.err("bits", "missing (required)"))?;
    let group_size = read_group_size(q, "group_size")?.unwrap_or(Some(128));
    let params = GptqParams {
        bits,
        group_size,
        sym: q.opt_bool("sym")?.unwrap_or(true),
        desc_act: q.opt_bool("desc_act")?.unwrap_or(false),
    };
    let format = match q
        .opt_str("checkpoint_format")?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("gptq") => GptqFormat::V1,
        Some("gptq_v2") => GptqFormat::V2,
        Some(other) => {
            return Err(unsupported(
                q,
                "checkpoint_format",
                format!("\"{other}\" is not supported (gptq or gptq_v2)"),
            ))
        }
    };
    if let Some(pack) = q.opt_str("pack_dtype")? {
        if !pack.eq_ignore_ascii_case("int32") && !pack.eq_ignore_ascii_case("torch.int32") {
            return Err(unsupported(
                q,
                "pack_dtype",
                format!("\"{pack}\" is not supported (int32)"),
            ));
        }
    }
    let mut dynamic = Vec::new();
    if let Some(rules) = q.opt_object("dynamic")? {
        if rules.len() > MAX_LIST {
            return Err(q.err("dynamic", "too many rules"));
        }
        let dname = q.field_name("dynamic");
        for (key, v) in rules {
            let Value::Object(obj) = v else {
                return Err(q.err(
                    "dynamic",
                    format!(
                        "rule `{key}`: expected an object, got {v_short}",
                        v_short = short(v)
                    ),
                ));
            };
            let rname = format!("{dname}.{key}");
            let r = Fields::new(obj, &rname, q.path);
            let (exclude, pattern) = match key.strip_prefix("-:") {
                Some(p) => (true, p),
                None => (false, key.strip_prefix("+:").unwrap_or(key)),
            };
            dynamic.push(GptqDynamicRule {
                key: key.clone(),
                pattern: pattern.to_string(),
                exclude,
                bits: if exclude {
                    None
                } else {
                    read_bits(&r, "bits")?
                },
                group_size: if exclude {
                    None
                } else {
                    read_group_size(&r, "group_size")?
                },
                sym: r.opt_bool("sym")?,
                desc_act: r.opt_bool("desc_act")?,
            });
        }
    }
    Ok(GptqConfig {
        params,
        format,
        dynamic,
        modules_to_not_convert: not_convert(q)?,
        lm_head: q.opt_bool("lm_head")?.unwrap_or(false),
    })
}

/// serde_json's map does not keep key order, but GPTQModel applies the first
/// matching `dynamic` rule in the file's order: the rules are put back in that
/// order from the document text (top-level `quantization_config` first, as
/// the config parser reads it).
pub(crate) fn order_dynamic(cfg: &mut GptqConfig, text: &str) {
    #[derive(serde::Deserialize)]
    struct Q {
        dynamic: Option<crate::header::Entries>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        quantization_config: Option<Q>,
    }
    #[derive(serde::Deserialize)]
    struct Top {
        quantization_config: Option<Q>,
        text_config: Option<Inner>,
    }
    let Ok(top) = serde_json::from_str::<Top>(text) else {
        return;
    };
    let q = top
        .quantization_config
        .or(top.text_config.and_then(|t| t.quantization_config));
    let Some(order) = q.and_then(|q| q.dynamic) else {
        return;
    };
    let position = |key: &str| order.0.iter().position(|(k, _)| k == key);
    cfg.dynamic
        .sort_by_key(|r| position(&r.key).unwrap_or(usize::MAX));
}

pub(crate) fn parse_awq(q: &Fields<'_>) -> Result<AwqConfig, CheckpointError> {
    let version = q.opt_str("version")?.unwrap_or("gemm").to_ascii_lowercase();
    if version != "gemm" {
        return Err(unsupported(
            q,
            "version",
            format!(
                "AWQ version \"{version}\" is not supported (only \"gemm\"; gemv, exllama and marlin pack differently)"
            ),
        ));
    }
    let bits = match read_bits(q, "bits")? {
        Some(b) => b,
        None => read_bits(q, "w_bit")?.ok_or_else(|| q.err("bits", "missing (required)"))?,
    };
    let group_size = match read_group_size(q, "group_size")? {
        Some(g) => g,
        None => read_group_size(q, "q_group_size")?.unwrap_or(Some(128)),
    };
    Ok(AwqConfig {
        bits,
        group_size,
        zero_point: q.opt_bool("zero_point")?.unwrap_or(true),
        modules_to_not_convert: not_convert(q)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantizationConfig;
    use serde_json::json;
    use std::path::Path;

    fn parse(q: Value) -> Result<QuantizationConfig, CheckpointError> {
        let top = json!({ "quantization_config": q });
        let m = top.as_object().expect("object");
        crate::quant_parse::parse_quantization_config(
            &Fields::new(m, "", Path::new("config.json")),
            "quantization_config",
        )
    }

    #[test]
    fn qwen_official_gptq_int4() {
        let q = parse(json!({"bits": 4, "checkpoint_format": "gptq", "desc_act": false,
            "dynamic": {"-:.*attn.*": {}, "-:.*shared_expert.*": {}, "-:.*mtp.*": {}, "-:.*visual.*": {},
                        "+:.*down_proj.*": {"group_size": 32, "desc_act": true}},
            "group_size": 128, "lm_head": false, "pack_dtype": "int32", "quant_method": "gptq", "sym": true}))
        .expect("valid");
        let QuantizationConfig::Gptq(g) = q else {
            panic!("gptq expected")
        };
        assert_eq!(
            g.params,
            GptqParams {
                bits: 4,
                group_size: Some(128),
                sym: true,
                desc_act: false
            }
        );
        assert_eq!(g.format, GptqFormat::V1);
        assert_eq!(g.dynamic.len(), 5);
        let mut g = g;
        let text = r#"{"quantization_config": {"dynamic": {"-:.*attn.*": {}, "-:.*shared_expert.*": {},
            "-:.*mtp.*": {}, "-:.*visual.*": {}, "+:.*down_proj.*": {}}}}"#;
        order_dynamic(&mut g, text);
        let keys: Vec<&str> = g.dynamic.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "-:.*attn.*",
                "-:.*shared_expert.*",
                "-:.*mtp.*",
                "-:.*visual.*",
                "+:.*down_proj.*"
            ]
        );
        let first = &g.dynamic[0];
        assert!(first.exclude && first.pattern == ".*attn.*" && first.key == "-:.*attn.*");
        let last = &g.dynamic[4];
        assert!(!last.exclude && last.pattern == ".*down_proj.*", "{last:?}");
        assert_eq!(
            (last.group_size, last.desc_act, last.bits),
            (Some(Some(32)), Some(true), None)
        );
        let v2 = parse(json!({"quant_method": "gptq", "bits": 4, "group_size": -1, "checkpoint_format": "gptq_v2", "sym": false}))
            .expect("v2");
        let QuantizationConfig::Gptq(v2) = v2 else {
            panic!()
        };
        assert_eq!(
            (v2.format, v2.params.group_size, v2.params.sym),
            (GptqFormat::V2, None, false)
        );
    }

    #[test]
    fn awq_gemm() {
        let q = parse(
            json!({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true,
            "version": "gemm", "modules_to_not_convert": ["visual", "mlp.gate"]}),
        )
        .expect("valid");
        let QuantizationConfig::Awq(a) = q else {
            panic!("awq expected")
        };
        assert_eq!((a.bits, a.group_size, a.zero_point), (4, Some(64), true));
        assert_eq!(
            a.modules_to_not_convert,
            vec!["visual".to_string(), "mlp.gate".into()]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"quant_method": "gptq", "bits": 3}), "bits"),
            (json!({"quant_method": "gptq", "bits": 8}), "8-bit"),
            (json!({"quant_method": "gptq"}), "bits"),
            (
                json!({"quant_method": "gptq", "bits": 4, "group_size": 0}),
                "group_size",
            ),
            (
                json!({"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}),
                "marlin",
            ),
            (
                json!({"quant_method": "gptq", "bits": 4, "dynamic": {"+:.*mlp.*": {"bits": 8}}}),
                "dynamic",
            ),
            (
                json!({"quant_method": "awq", "bits": 4, "version": "gemv"}),
                "gemv",
            ),
            (
                json!({"quant_method": "awq", "bits": 4, "version": "exllama"}),
                "exllama",
            ),
            (
                json!({"quant_method": "awq", "bits": 8, "version": "gemm"}),
                "8-bit",
            ),
            (
                json!({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"g": {"targets": ["Linear"],
                "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128},
                "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": true}}}}),
                "W4A8",
            ),
        ];
        for (q, want) in cases {
            let e = parse(q.clone()).expect_err(&q.to_string());
            assert!(e.to_string().contains(want), "{q}: {e}");
            assert!(e.to_string().contains("config.json"), "{e}");
        }
    }

    #[test]
    fn ct_w4a16_parses() {
        let q = parse(json!({"quant_method": "compressed-tensors", "format": "pack-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"],
                "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": true}}},
            "ignore": ["lm_head"]}))
        .expect("valid");
        let QuantizationConfig::CompressedTensors(ct) = q else {
            panic!()
        };
        assert_eq!(ct.format, "pack-quantized");
        let w = ct.groups[0].weights.as_ref().expect("weights");
        assert_eq!(
            (w.num_bits, w.kind.as_str(), w.group_size),
            (4, "int", Some(128))
        );
    }
}
