//! What a `quantization_config` says about one module: excluded or not, which
//! scale scheme and block size to expect, and how activations are quantized.

use qwgpu_checkpoint::quant::{
    ActivationScheme, CtQuantArgs, CtStrategy, Fp8Format, GptqDynamicRule, GptqFormat, GptqParams,
    QuantizationConfig,
};
use regex::Regex;

use crate::ignore::ModuleList;
use crate::LoadError;

/// Kind of weight scale, as configured or as found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeKind {
    /// One scale per tensor (or one per logical shard).
    Tensor,
    /// One scale per output row.
    Channel,
    /// One scale per `[bn, bk]` block.
    Block,
}

impl std::fmt::Display for SchemeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemeKind::Tensor => "per-tensor",
            SchemeKind::Channel => "per-channel",
            SchemeKind::Block => "block",
        })
    }
}

/// The config's verdict for one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRule {
    /// Why the module must be unquantized (`None` when it may be quantized).
    pub excluded: Option<String>,
    /// Block size `[bn, bk]` for block scales.
    pub block: Option<[usize; 2]>,
    /// The configured weight scheme, if the config names one.
    pub expected: Option<SchemeKind>,
    pub activation: ActivationScheme,
    /// The configured FP8 element format, if any.
    pub fp8_format: Option<Fp8Format>,
    /// How the module's 4-bit tensors are stored, when the config quantizes
    /// it to 4 bits.
    pub int4: Option<Int4Rule>,
}

/// The 4-bit storage format of one module, with its parameters after any
/// per-module override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int4Rule {
    /// `qweight` `[K/8, N]` (nibbles along the input), `qzeros` `[G, N/8]`,
    /// `scales` `[G, N]`, `g_idx` `[K]`.
    Gptq {
        params: GptqParams,
        format: GptqFormat,
    },
    /// `qweight` `[K, N/8]` and `qzeros` `[G, N/8]` in AWQ's interleaved
    /// nibble order, `scales` `[G, N]`.
    Awq { group_size: Option<usize> },
    /// compressed-tensors `pack-quantized`: `weight_packed` `[N, K/8]`,
    /// `weight_scale` `[N, G]`, optional `weight_zero_point` `[N/8, G]`.
    PackQuantized {
        /// `None`: channel strategy (one group per row).
        group_size: Option<usize>,
        symmetric: bool,
    },
}

impl Int4Rule {
    /// The format's name, for messages.
    pub fn format_name(&self) -> &'static str {
        match self {
            Int4Rule::Gptq { .. } => "GPTQ",
            Int4Rule::Awq { .. } => "AWQ",
            Int4Rule::PackQuantized { .. } => "compressed-tensors pack-quantized",
        }
    }
}

impl ModuleRule {
    fn unquantized(reason: Option<String>) -> Self {
        ModuleRule {
            excluded: reason,
            block: None,
            expected: None,
            activation: ActivationScheme::None,
            fp8_format: None,
            int4: None,
        }
    }

    fn int4(rule: Int4Rule) -> Self {
        ModuleRule {
            int4: Some(rule),
            ..ModuleRule::unquantized(None)
        }
    }
}

/// What a compressed-tensors group does to its weights.
#[derive(Debug, Clone, Copy)]
enum CtWeights {
    Fp8(SchemeKind, Option<[usize; 2]>),
    Int4(Int4Rule),
}

#[derive(Debug, Clone)]
struct CtGroupRule {
    targets_all_linear: bool,
    targets: ModuleList,
    /// `None`: the group quantizes no weights.
    weights: Option<CtWeights>,
    activation: ActivationScheme,
}

#[derive(Debug, Clone)]
enum Kind {
    None,
    Fp8 {
        block: Option<[usize; 2]>,
        activation: ActivationScheme,
        fmt: Fp8Format,
    },
    CompressedTensors(Vec<CtGroupRule>),
    ModelOpt,
    Gptq {
        base: GptqParams,
        format: GptqFormat,
        dynamic: Vec<(Regex, GptqDynamicRule)>,
        lm_head: bool,
    },
    Awq {
        group_size: Option<usize>,
    },
}

/// Interpretation of a checkpoint's `quantization_config` (or its absence).
#[derive(Debug, Clone)]
pub struct QuantPolicy {
    kind: Kind,
    exclude: ModuleList,
    kv_cache: Option<String>,
}

impl Default for QuantPolicy {
    fn default() -> Self {
        Self::unquantized()
    }
}

impl QuantPolicy {
    /// No quantization config: weights are taken as the file stores them
    /// (FP8 weights still need their scales; activations stay unquantized).
    pub fn unquantized() -> Self {
        QuantPolicy {
            kind: Kind::None,
            exclude: ModuleList::default(),
            kv_cache: None,
        }
    }

    /// Builds the policy; unsupported schemes and invalid patterns are errors.
    pub fn from_config(config: Option<&QuantizationConfig>) -> Result<Self, LoadError> {
        let Some(config) = config else {
            return Ok(Self::unquantized());
        };
        match config {
            QuantizationConfig::Fp8(c) => {
                if let Some([bn, bk]) = c.weight_block_size {
                    check_block([bn, bk], "weight_block_size")?;
                }
                Ok(QuantPolicy {
                    kind: Kind::Fp8 {
                        block: c.weight_block_size,
                        activation: c.activation_scheme,
                        fmt: c.fmt,
                    },
                    exclude: ModuleList::parse(
                        &c.modules_to_not_convert,
                        false,
                        "modules_to_not_convert",
                    )?,
                    kv_cache: None,
                })
            }
            QuantizationConfig::CompressedTensors(c) => {
                let groups = c
                    .groups
                    .iter()
                    .map(|g| {
                        let what = format!("config_groups.{}", g.name);
                        let weights = g
                            .weights
                            .as_ref()
                            .map(|w| ct_weights(w, &what))
                            .transpose()?;
                        if matches!(weights, Some(CtWeights::Int4(_))) && c.format != "pack-quantized" {
                            return Err(LoadError::Quantization {
                                detail: format!(
                                    "{what}: 4-bit int weights in format `{fmt}` are not supported (only `pack-quantized`)",
                                    fmt = c.format
                                ),
                            });
                        }
                        let activation = match &g.input_activations {
                            None => ActivationScheme::None,
                            Some(a) if a.dynamic => ActivationScheme::Dynamic,
                            Some(_) => ActivationScheme::Static,
                        };
                        let named: Vec<String> = g
                            .targets
                            .iter()
                            .filter(|t| t.as_str() != "Linear")
                            .cloned()
                            .collect();
                        Ok(CtGroupRule {
                            targets_all_linear: g.targets.iter().any(|t| t == "Linear"),
                            targets: ModuleList::parse(&named, false, &format!("{what}.targets"))?,
                            weights,
                            activation,
                        })
                    })
                    .collect::<Result<Vec<_>, LoadError>>()?;
                Ok(QuantPolicy {
                    kind: Kind::CompressedTensors(groups),
                    exclude: ModuleList::parse(&c.ignore, false, "ignore")?,
                    kv_cache: c.kv_cache_scheme.as_ref().map(|k| {
                        format!(
                            "kv_cache_scheme ({k_num_bits}-bit {k_kind} {k_strategy:?})",
                            k_num_bits = k.num_bits,
                            k_kind = k.kind,
                            k_strategy = k.strategy
                        )
                    }),
                })
            }
            QuantizationConfig::Gptq(c) => {
                let dynamic = c
                    .dynamic
                    .iter()
                    .map(|r| {
                        let re = Regex::new(&format!("^(?:{p})", p = r.pattern)).map_err(|e| {
                            LoadError::Quantization {
                                detail: format!(
                                    "dynamic: rule `{key}` is not a valid pattern: {e}",
                                    key = r.key
                                ),
                            }
                        })?;
                        Ok((re, r.clone()))
                    })
                    .collect::<Result<Vec<_>, LoadError>>()?;
                Ok(QuantPolicy {
                    kind: Kind::Gptq {
                        base: c.params,
                        format: c.format,
                        dynamic,
                        lm_head: c.lm_head,
                    },
                    exclude: ModuleList::parse(
                        &c.modules_to_not_convert,
                        false,
                        "modules_to_not_convert",
                    )?,
                    kv_cache: None,
                })
            }
            QuantizationConfig::Awq(c) => {
                if !c.zero_point {
                    return Err(LoadError::Quantization {
                        detail: "AWQ with zero_point: false is not supported (AutoAWQ's GEMM packing stores zero points)".into(),
                    });
                }
                Ok(QuantPolicy {
                    kind: Kind::Awq {
                        group_size: c.group_size,
                    },
                    exclude: ModuleList::parse(
                        &c.modules_to_not_convert,
                        false,
                        "modules_to_not_convert",
                    )?,
                    kv_cache: None,
                })
            }
            QuantizationConfig::ModelOpt(c) => {
                if !c.quant_algo.eq_ignore_ascii_case("FP8") {
                    return Err(LoadError::Quantization {
                        detail: format!(
                            "ModelOpt quant_algo `{}` is not supported (only FP8)",
                            c.quant_algo
                        ),
                    });
                }
                let kv = c
                    .kv_cache_quant_algo
                    .as_ref()
                    .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case("none"))
                    .map(|a| format!("kv_cache_quant_algo {a}"));
                Ok(QuantPolicy {
                    kind: Kind::ModelOpt,
                    exclude: ModuleList::parse(&c.exclude_modules, true, "exclude_modules")?,
                    kv_cache: kv,
                })
            }
        }
    }

    /// The rule for a module (canonical name, without `.weight`).
    pub fn rule(&self, module: &str) -> ModuleRule {
        if let Some(entry) = self.exclude.find(module) {
            return ModuleRule::unquantized(Some(format!("excludes it (entry `{entry}`)")));
        }
        match &self.kind {
            Kind::None => ModuleRule::unquantized(None),
            Kind::Fp8 {
                block,
                activation,
                fmt,
            } => ModuleRule {
                excluded: None,
                block: *block,
                expected: Some(if block.is_some() {
                    SchemeKind::Block
                } else {
                    SchemeKind::Tensor
                }),
                activation: *activation,
                fp8_format: Some(*fmt),
                int4: None,
            },
            Kind::ModelOpt => ModuleRule {
                excluded: None,
                block: None,
                expected: Some(SchemeKind::Tensor),
                activation: ActivationScheme::Static,
                fp8_format: Some(Fp8Format::E4M3),
                int4: None,
            },
            Kind::Gptq {
                base,
                format,
                dynamic,
                lm_head,
            } => {
                if module.ends_with("embed_tokens") {
                    return ModuleRule::unquantized(Some("never quantizes the embeddings".into()));
                }
                if module == "lm_head" && !lm_head {
                    return ModuleRule::unquantized(Some("has `lm_head: false`".into()));
                }
                let forms = crate::ignore::spellings(module);
                let hit = dynamic
                    .iter()
                    .find(|(re, _)| forms.iter().any(|f| re.is_match(f)));
                let mut params = *base;
                if let Some((_, r)) = hit {
                    if r.exclude {
                        return ModuleRule::unquantized(Some(format!(
                            "excludes it (dynamic rule `{key}`)",
                            key = r.key
                        )));
                    }
                    params.bits = r.bits.unwrap_or(params.bits);
                    params.group_size = r.group_size.unwrap_or(params.group_size);
                    params.sym = r.sym.unwrap_or(params.sym);
                    params.desc_act = r.desc_act.unwrap_or(params.desc_act);
                }
                ModuleRule::int4(Int4Rule::Gptq {
                    params,
                    format: *format,
                })
            }
            Kind::Awq { group_size } => {
                if module.ends_with("embed_tokens") {
                    return ModuleRule::unquantized(Some("never quantizes the embeddings".into()));
                }
                ModuleRule::int4(Int4Rule::Awq {
                    group_size: *group_size,
                })
            }
            Kind::CompressedTensors(groups) => {
                // `embed_tokens` is an Embedding, not a Linear: only named targets reach it.
                let is_linear = !module.ends_with("embed_tokens");
                let group = groups.iter().find(|g| {
                    (g.targets_all_linear && is_linear) || g.targets.find(module).is_some()
                });
                match group {
                    Some(CtGroupRule {
                        weights: Some(CtWeights::Fp8(kind, block)),
                        activation,
                        ..
                    }) => ModuleRule {
                        excluded: None,
                        block: *block,
                        expected: Some(*kind),
                        activation: *activation,
                        fp8_format: None,
                        int4: None,
                    },
                    Some(CtGroupRule {
                        weights: Some(CtWeights::Int4(rule)),
                        ..
                    }) => ModuleRule::int4(*rule),
                    Some(_) => ModuleRule::unquantized(Some(
                        "quantizes no weights in its config group".into(),
                    )),
                    None => ModuleRule::unquantized(Some("targets it in no config group".into())),
                }
            }
        }
    }

    /// Describes the configured KV-cache quantization, if any.
    pub fn kv_cache(&self) -> Option<&str> {
        self.kv_cache.as_deref()
    }

    /// True when the config quantizes anything at all.
    pub fn is_quantized(&self) -> bool {
        !matches!(self.kind, Kind::None)
    }
}

fn check_block(block: [usize; 2], what: &str) -> Result<(), LoadError> {
    const MAX: usize = 1 << 16;
    if block.iter().any(|&b| b == 0 || b > MAX) {
        return Err(LoadError::Quantization {
            detail: format!("{what} {block:?}: each size must be in 1..={MAX}"),
        });
    }
    Ok(())
}

fn ct_weights(w: &CtQuantArgs, what: &str) -> Result<CtWeights, LoadError> {
    if w.kind == "int" && w.num_bits == 4 {
        let group_size =
            match w.strategy {
                CtStrategy::Channel => None,
                CtStrategy::Group => Some(w.group_size.filter(|&g| g > 0).ok_or_else(|| {
                    LoadError::Quantization {
                        detail: format!("{what}: strategy `group` without a group_size"),
                    }
                })?),
                other => {
                    return Err(LoadError::Quantization {
                        detail: format!(
                    "{what}: 4-bit weight strategy {other:?} is not supported (group or channel)"
                ),
                    })
                }
            };
        return Ok(CtWeights::Int4(Int4Rule::PackQuantized {
            group_size,
            symmetric: w.symmetric,
        }));
    }
    if w.kind != "float" || w.num_bits != 8 {
        return Err(LoadError::Quantization {
            detail: format!(
                "{what}: weights are {w_num_bits}-bit `{w_kind}`; only 8-bit float (FP8) and 4-bit int are supported",
                w_num_bits = w.num_bits,
                w_kind = w.kind
            ),
        });
    }
    if !w.symmetric {
        return Err(LoadError::Quantization {
            detail: format!("{what}: asymmetric FP8 weights (zero points) are not supported"),
        });
    }
    match w.strategy {
        CtStrategy::Tensor => Ok(CtWeights::Fp8(SchemeKind::Tensor, None)),
        CtStrategy::Channel => Ok(CtWeights::Fp8(SchemeKind::Channel, None)),
        CtStrategy::Block => {
            let block = w.block_structure.ok_or_else(|| LoadError::Quantization {
                detail: format!("{what}: strategy `block` without block_structure"),
            })?;
            check_block(block, &format!("{what}.weights.block_structure"))?;
            Ok(CtWeights::Fp8(SchemeKind::Block, Some(block)))
        }
        other => Err(LoadError::Quantization {
            detail: format!(
                "{what}: weight strategy {other:?} is not supported (tensor, channel or block)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qwgpu_checkpoint::quant::{AwqConfig, GptqConfig};

    fn rule(key: &str, group: Option<Option<usize>>) -> GptqDynamicRule {
        let exclude = key.starts_with("-:");
        GptqDynamicRule {
            key: key.into(),
            pattern: key.trim_start_matches("-:").trim_start_matches("+:").into(),
            exclude,
            bits: None,
            group_size: group,
            sym: None,
            desc_act: None,
        }
    }

    fn gptq(dynamic: Vec<GptqDynamicRule>, not_convert: &[&str]) -> QuantPolicy {
        QuantPolicy::from_config(Some(&QuantizationConfig::Gptq(GptqConfig {
            params: GptqParams {
                bits: 4,
                group_size: Some(128),
                sym: true,
                desc_act: false,
            },
            format: GptqFormat::V1,
            dynamic,
            modules_to_not_convert: not_convert.iter().map(|s| s.to_string()).collect(),
            lm_head: false,
        })))
        .expect("valid policy")
    }

    fn group(r: &ModuleRule) -> Option<Option<usize>> {
        match r.int4 {
            Some(Int4Rule::Gptq { params, .. }) => Some(params.group_size),
            _ => None,
        }
    }

    #[test]
    fn gptq_dynamic_rules_first_match_wins() {
        let p = gptq(
            vec![
                rule("-:.*attn.*", None),
                rule("+:.*down_proj.*", Some(Some(32))),
                rule("-:.*mlp.*", None),
                rule("-:.*shared_expert.*", None),
            ],
            &["layers.3.mlp.gate_proj"],
        );
        for m in [
            "model.layers.0.linear_attn.in_proj_qkv",
            "model.layers.3.self_attn.q_proj",
        ] {
            let r = p.rule(m);
            assert!(
                r.excluded
                    .as_deref()
                    .is_some_and(|e| e.contains("-:.*attn.*")),
                "{m}: {r:?}"
            );
            assert!(r.int4.is_none());
        }
        // The override comes before the mlp exclusion: down_proj stays 4-bit, group 32.
        assert_eq!(
            group(&p.rule("model.layers.0.mlp.down_proj")),
            Some(Some(32))
        );
        assert!(p.rule("model.layers.0.mlp.gate_proj").excluded.is_some());
        // A module no rule names keeps the config's parameters.
        assert_eq!(
            group(&p.rule("model.layers.0.ffn.gate_proj")),
            Some(Some(128))
        );
        // modules_to_not_convert, the embeddings and (lm_head: false) the head.
        let only_list = gptq(vec![], &["layers.3.mlp.gate_proj"]);
        assert!(only_list
            .rule("model.layers.3.mlp.gate_proj")
            .excluded
            .is_some());
        assert!(only_list
            .rule("model.layers.2.mlp.gate_proj")
            .int4
            .is_some());
        assert!(only_list.rule("model.embed_tokens").excluded.is_some());
        assert!(only_list.rule("lm_head").excluded.is_some());
        // Rules written against the release's own prefix match the canonical name.
        let wrapped = gptq(
            vec![rule("-:model\\.language_model\\.layers\\.1\\..*", None)],
            &[],
        );
        assert!(wrapped
            .rule("model.layers.1.mlp.up_proj")
            .excluded
            .is_some());
        assert!(wrapped
            .rule("model.layers.10.mlp.up_proj")
            .excluded
            .is_none());
    }

    #[test]
    fn awq_needs_zero_points_and_bad_patterns_are_named() {
        let e = QuantPolicy::from_config(Some(&QuantizationConfig::Awq(AwqConfig {
            bits: 4,
            group_size: Some(128),
            zero_point: false,
            modules_to_not_convert: vec![],
        })))
        .expect_err("zero_point false");
        assert!(e.to_string().contains("zero_point"), "{e}");
        let e = QuantPolicy::from_config(Some(&QuantizationConfig::Gptq(GptqConfig {
            params: GptqParams {
                bits: 4,
                group_size: None,
                sym: true,
                desc_act: false,
            },
            format: GptqFormat::V2,
            dynamic: vec![rule("-:(", None)],
            modules_to_not_convert: vec![],
            lm_head: false,
        })))
        .expect_err("bad regex");
        assert!(e.to_string().contains("-:("), "{e}");
    }
}
