//! Finding and decoding a module's 4-bit tensors while loading a model: a
//! linear `….weight` the checkpoint stores as `….qweight` (GPTQ, AWQ) or
//! `….weight_packed` (compressed-tensors) with their companions, and MoE
//! experts stored as fused 3-D `experts.{gate_up,down}_proj.weight_packed`.

use qwgpu_checkpoint::expected::int4_weight_names;

use crate::int4::{
    decode_awq_as, decode_ct_as, decode_gptq_as, split_fused_ct, Decoded, Int4Tensors, Words,
};
use crate::model::Ctx;
use crate::parallel::map_in_order;
use crate::{Int4Rule, LoadError, SourceTensor, SourceWeight, TensorSource};

impl<'s, S: TensorSource + ?Sized> Ctx<'s, S> {
    /// True when the linear weight `name` is stored in a 4-bit form.
    /// (A fused 3-D expert tensor, `experts.gate_up_proj` without a
    /// `.weight` suffix, counts as stored when its `.weight_packed` /
    /// `.qweight` is.)
    pub(crate) fn has_int4(&self, name: &str) -> bool {
        int4_weight_names(name)
            .iter()
            .any(|n| self.src.tensor(n).is_some())
    }

    /// The 4-bit form of fused 3-D MoE experts `name` (`….experts.gate_up_proj`
    /// / `….experts.down_proj`, see [`crate::int4::split_fused_ct`]'s module),
    /// one decoded source per expert and shard (`shard_rows[s]` rows,
    /// covering `covers(e, s)`), or `None` when `name` is not stored 4-bit.
    pub(crate) fn int4_fused_experts(
        &self,
        name: &str,
        experts: usize,
        shard_rows: &[usize],
        cols: usize,
        covers: &dyn Fn(usize, usize) -> String,
    ) -> Result<Option<Vec<SourceWeight<'s>>>, LoadError> {
        let Some(words) = self.src.tensor(&format!("{name}.weight_packed")) else {
            if let Some(q) = self.src.tensor(&format!("{name}.qweight")) {
                return Err(self.locate(
                    LoadError::Int4 {
                        tensor: q.name.clone(),
                        format: "GPTQ / AWQ".into(),
                        detail: "fused 3-D expert `qweight` is not a known layout (GPTQ and AWQ \
                                 checkpoints store `experts.{e}.{gate,up,down}_proj.qweight`)"
                            .into(),
                    },
                    &[q.name.as_str()],
                ));
            }
            return Ok(None);
        };
        let at = |e: LoadError| self.locate(e, &[words.name.as_str()]);
        if let Some(dense) = self.src.tensor(name) {
            return Err(at(LoadError::Int4 {
                tensor: words.name.clone(),
                format: "4-bit".into(),
                detail: format!(
                    "`{dense}` stores the same experts too; expected one of them",
                    dense = dense.name
                ),
            }));
        }
        let rule = self.policy.rule(name);
        if let Some(reason) = rule.excluded {
            return Err(at(LoadError::Int4Unexpected {
                tensor: words.name.clone(),
                reason,
            }));
        }
        let Some(Int4Rule::PackQuantized {
            group_size,
            symmetric,
        }) = rule.int4
        else {
            let reason = match rule.int4 {
                Some(other) => format!(
                    "is {format}, which does not store `weight_packed`",
                    format = other.format_name()
                ),
                None if self.policy.is_quantized() => "describes no 4-bit format for it".into(),
                None => "is absent (config.json has no `quantization_config`)".into(),
            };
            return Err(at(LoadError::Int4Unexpected {
                tensor: words.name.clone(),
                reason,
            }));
        };
        let get = |suffix: &str| self.src.tensor(&format!("{name}.{suffix}"));
        let fused = Int4Tensors {
            packed: Some(words.clone()),
            zeros: get("weight_zero_point"),
            scales: get("weight_scale"),
            g_idx: get("weight_g_idx"),
            shape: get("weight_shape"),
        };
        let parts = split_fused_ct(&fused, experts, shard_rows, cols).map_err(at)?;
        let mode = self.words_mode();
        let n = shard_rows.len();
        let parts: Vec<(Int4Tensors<'s>, String)> = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| (part, covers(i / n, i % n)))
            .collect();
        // Each expert's shards decoded on the load's threads.
        let out = map_in_order(self.opts.threads, &parts, |(part, shard)| {
            let decoded = decode_ct_as(part, group_size, symmetric, mode)
                .map_err(|err| at(in_shard(err, shard)))?;
            // The shard's own rows of the fused words (named as the fused
            // tensor): no source holds a copy of the whole fused tensor.
            let rows = part.packed.clone().unwrap_or_else(|| words.clone());
            Ok::<_, LoadError>(match decoded {
                Decoded::Int4(q) => SourceWeight::int4(rows, q, &[shard]),
                Decoded::Dense { rows, cols, values } => SourceWeight::new(
                    SourceTensor::from_f32(words.name.clone(), vec![rows, cols], &values)?,
                    &[shard],
                )
                .with_module(name),
            })
        })?;
        Ok(Some(out))
    }

    /// The decoders' words: none in a layout-only load, else repacked when
    /// the weight is packed (on [`crate::PackOptions::threads`] threads).
    fn words_mode(&self) -> Words {
        if self.opts.layout_only {
            Words::Skip
        } else {
            Words::Defer
        }
    }

    /// The 4-bit form of the linear weight `name`, decoded, or `None` when
    /// the checkpoint stores no 4-bit tensors for it.
    pub(crate) fn int4_source(
        &self,
        name: &str,
        covers: &[&str],
    ) -> Result<Option<SourceWeight<'s>>, LoadError> {
        let mut found: Vec<SourceTensor<'s>> = int4_weight_names(name)
            .iter()
            .filter_map(|n| self.src.tensor(n))
            .collect();
        let Some(words) = found.pop() else {
            return Ok(None);
        };
        let at = |e: LoadError| self.locate(e, &[words.name.as_str()]);
        let clash = found
            .first()
            .map(|t| t.name.clone())
            .or_else(|| self.src.tensor(name).map(|t| t.name));
        if let Some(other) = clash {
            return Err(at(LoadError::Int4 {
                tensor: words.name.clone(),
                format: "4-bit".into(),
                detail: format!("`{other}` stores the same weight too; expected one of them"),
            }));
        }
        let stem = name.strip_suffix(".weight").unwrap_or(name);
        let rule = self.policy.rule(stem);
        if let Some(reason) = rule.excluded {
            return Err(at(LoadError::Int4Unexpected {
                tensor: words.name.clone(),
                reason,
            }));
        }
        let Some(int4) = rule.int4 else {
            let reason = if self.policy.is_quantized() {
                "describes no 4-bit format for it".to_string()
            } else {
                "is absent (config.json has no `quantization_config`)".to_string()
            };
            return Err(at(LoadError::Int4Unexpected {
                tensor: words.name.clone(),
                reason,
            }));
        };
        let qweight = words.name.ends_with(".qweight");
        let get = |suffix: &str| self.src.tensor(&format!("{stem}.{suffix}"));
        let tensors = match (int4, qweight) {
            (Int4Rule::Gptq { .. } | Int4Rule::Awq { .. }, true) => Int4Tensors {
                zeros: get("qzeros"),
                scales: get("scales"),
                g_idx: get("g_idx"),
                shape: None,
                packed: Some(words.clone()),
            },
            (Int4Rule::PackQuantized { .. }, false) => Int4Tensors {
                zeros: get("weight_zero_point"),
                scales: get("weight_scale"),
                g_idx: get("weight_g_idx"),
                shape: get("weight_shape"),
                packed: Some(words.clone()),
            },
            _ => {
                return Err(at(LoadError::Int4Unexpected {
                    tensor: words.name.clone(),
                    reason: format!(
                        "is {format}, which does not store `{kind}`",
                        format = int4.format_name(),
                        kind = if qweight { "qweight" } else { "weight_packed" }
                    ),
                }))
            }
        };
        let mode = self.words_mode();
        let decoded = match int4 {
            Int4Rule::Gptq { params, format } => decode_gptq_as(&tensors, params, format, mode),
            Int4Rule::Awq { group_size } => decode_awq_as(&tensors, group_size, mode),
            Int4Rule::PackQuantized {
                group_size,
                symmetric,
            } => decode_ct_as(&tensors, group_size, symmetric, mode),
        }
        .map_err(at)?;
        Ok(Some(match decoded {
            Decoded::Int4(q) => SourceWeight::int4(words, q, covers),
            Decoded::Dense { rows, cols, values } => SourceWeight::new(
                SourceTensor::from_f32(words.name.clone(), vec![rows, cols], &values)?,
                covers,
            )
            .with_module(stem),
        }))
    }
}

/// Says which expert and shard of a fused tensor a decoding error is about
/// (the tensor names are the fused ones).
fn in_shard(e: LoadError, shard: &str) -> LoadError {
    match e {
        LoadError::Int4 {
            tensor,
            format,
            detail,
        } => LoadError::Int4 {
            tensor,
            format,
            detail: format!("shard `{shard}` of the fused 3-D experts: {detail}"),
        },
        other => other,
    }
}
