//! Finding and decoding a module's 4-bit tensors while loading a model: a
//! linear `….weight` the checkpoint stores as `….qweight` (GPTQ, AWQ) or
//! `….weight_packed` (compressed-tensors) with their companions.

use qwgpu_checkpoint::expected::int4_weight_names;

use crate::int4::{decode_awq, decode_ct, decode_gptq, Decoded, Int4Tensors};
use crate::model::Ctx;
use crate::{Int4Rule, LoadError, SourceTensor, SourceWeight, TensorSource};

impl<'s, S: TensorSource + ?Sized> Ctx<'s, S> {
    /// True when the linear weight `name` is stored in a 4-bit form.
    pub(crate) fn has_int4(&self, name: &str) -> bool {
        int4_weight_names(name)
            .iter()
            .any(|n| self.src.tensor(n).is_some())
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
        let with_words = !self.opts.layout_only;
        let decoded = match int4 {
            Int4Rule::Gptq { params, format } => decode_gptq(&tensors, params, format, with_words),
            Int4Rule::Awq { group_size } => decode_awq(&tensors, group_size, with_words),
            Int4Rule::PackQuantized {
                group_size,
                symmetric,
            } => decode_ct(&tensors, group_size, symmetric, with_words),
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
