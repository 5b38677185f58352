//! `load_model`: the whole Qwen3.5 text model (dense or MoE, BF16 or FP8) as
//! packed weights, validated up front (all missing tensors listed at once).

use qwgpu_checkpoint::expected::{expected_tensors, fused_expert_tensors, per_expert_tensors};
use qwgpu_checkpoint::{Checkpoint, FfnConfig, LayerType, ModelConfig, TextConfig};

use crate::experts::{detect_layout, split_fused, ExpertLayout};
use crate::pack::{input_scale_name, pack_with, weight_scale_names, PackOptions};
use crate::parallel::map_in_order;
use crate::scheme::scale_values;
use crate::{
    AttentionWeights, Ffn, GdnWeights, KvScales, LoadError, Mixer, MlpWeights, MoeWeights,
    PackSpec, PackedLayer, PackedModel, PackedWeight, QuantPolicy, ShardSpec, SourceTensor,
    SourceWeight, TensorSource,
};

/// Progress hook: called with `(layers done, layers total)` after each layer.
pub type Progress<'p> = &'p dyn Fn(usize, usize);

/// Loads and packs the whole text model of an opened checkpoint. A checkpoint
/// opened strict also has its FP8 weights scanned for NaN encodings.
pub fn load_model(ckpt: &Checkpoint) -> Result<PackedModel, LoadError> {
    load_model_with(ckpt, None)
}

/// [`load_model`] with a progress hook.
pub fn load_model_with(
    ckpt: &Checkpoint,
    progress: Option<Progress<'_>>,
) -> Result<PackedModel, LoadError> {
    load_from_source_with(ckpt, ckpt.config(), progress, &checkpoint_options(ckpt))
}

/// The model's layout from headers and scales only: every check of
/// [`load_model`] except those on weight values, with every packed weight's
/// shard table, dtype and scales, but empty `data` and empty norm / conv /
/// gate vectors. No weight byte is read or copied (what `qwgpu inspect` shows).
pub fn plan_model(ckpt: &Checkpoint) -> Result<PackedModel, LoadError> {
    let opts = PackOptions {
        layout_only: true,
        ..PackOptions::default()
    };
    load_from_source_with(ckpt, ckpt.config(), None, &opts)
}

fn checkpoint_options(ckpt: &Checkpoint) -> PackOptions {
    PackOptions {
        check_fp8_values: ckpt.is_strict(),
        threads: crate::load_threads(),
        ..PackOptions::default()
    }
}

/// [`stream_model`] with the weights left unpacked ([`PackOptions::borrow_sources`]):
/// the visitor reads each weight's bytes from `ckpt` itself (the tensors of
/// [`PackedWeight::borrowed_sources`](crate::PackedWeight::borrowed_sources),
/// one after another), so no weight is copied on the host but those that
/// widen a source. What a GPU loader wants.
pub fn stream_model_borrowing(
    ckpt: &Checkpoint,
    progress: Option<Progress<'_>>,
    visit: &mut dyn FnMut(Part) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    let opts = PackOptions {
        borrow_sources: true,
        ..checkpoint_options(ckpt)
    };
    stream_from_source_with(ckpt, ckpt.config(), progress, &opts, visit)
}

/// One piece of the packed model, handed to a [`stream_from_source`] visitor in
/// model order and dropped once the visitor returns: an engine that uploads each
/// piece never holds more than one layer (or the embedding table) on the host.
// Each part is built once and moved straight to the visitor: boxing the large
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Part {
    /// `model.embed_tokens` (`[V, H]`).
    Embed(PackedWeight),
    /// Decoder layer `index`.
    Layer { index: usize, layer: PackedLayer },
    /// Final norm `[H]`.
    Norm(Vec<f32>),
    /// Untied `lm_head` (`[V, H]`); absent when the embeddings are tied.
    LmHead(PackedWeight),
}

/// Loads the text model from any [`TensorSource`] (canonical names) and its config.
pub fn load_from_source(
    src: &(impl TensorSource + ?Sized),
    config: &ModelConfig,
    progress: Option<Progress<'_>>,
) -> Result<PackedModel, LoadError> {
    load_from_source_with(src, config, progress, &PackOptions::default())
}

/// [`load_from_source`] with [`PackOptions`].
pub fn load_from_source_with(
    src: &(impl TensorSource + ?Sized),
    config: &ModelConfig,
    progress: Option<Progress<'_>>,
    opts: &PackOptions,
) -> Result<PackedModel, LoadError> {
    let mut embed_tokens = None;
    let mut layers = Vec::with_capacity(config.text.num_hidden_layers);
    let mut norm = Vec::new();
    let mut lm_head = None;
    stream_from_source_with(src, config, progress, opts, &mut |part| {
        match part {
            Part::Embed(w) => embed_tokens = Some(w),
            Part::Layer { layer, .. } => layers.push(layer),
            Part::Norm(n) => norm = n,
            Part::LmHead(w) => lm_head = Some(w),
        }
        Ok(())
    })?;
    let embed_tokens = embed_tokens.ok_or_else(|| LoadError::MissingTensors {
        names: vec!["model.embed_tokens.weight".into()],
    })?;
    Ok(PackedModel {
        config: config.text.clone(),
        embed_tokens,
        layers,
        norm,
        lm_head,
    })
}

/// Packs the model piece by piece (embedding, each layer, norm, head) and hands
/// each [`Part`] to `visit`, after checking up front that every required tensor
/// exists. A visitor error stops the walk and is returned.
///
/// ```no_run
/// # use qwgpu_loader::{stream_model, Part};
/// let ckpt = qwgpu_checkpoint::Checkpoint::open(std::path::Path::new("model"))?;
/// let mut bytes = 0usize;
/// stream_model(&ckpt, None, &mut |part| {
///     if let Part::Layer { layer, .. } = &part {
///         bytes += layer.input_layernorm.len() * 4; // upload the layer here, then drop it
///     }
///     Ok(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stream_model(
    ckpt: &Checkpoint,
    progress: Option<Progress<'_>>,
    visit: &mut dyn FnMut(Part) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    stream_from_source_with(
        ckpt,
        ckpt.config(),
        progress,
        &checkpoint_options(ckpt),
        visit,
    )
}

/// [`stream_model`] over any [`TensorSource`].
pub fn stream_from_source(
    src: &(impl TensorSource + ?Sized),
    config: &ModelConfig,
    progress: Option<Progress<'_>>,
    visit: &mut dyn FnMut(Part) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    stream_from_source_with(src, config, progress, &PackOptions::default(), visit)
}

/// [`stream_from_source`] with [`PackOptions`].
pub fn stream_from_source_with(
    src: &(impl TensorSource + ?Sized),
    config: &ModelConfig,
    progress: Option<Progress<'_>>,
    opts: &PackOptions,
    visit: &mut dyn FnMut(Part) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    let policy = QuantPolicy::from_config(config.quantization.as_ref())?;
    if !policy.is_quantized() {
        let fp8 = src
            .tensor_names()
            .into_iter()
            .filter(|n| src.tensor(n).is_some_and(|t| t.dtype.is_fp8()))
            .count();
        if fp8 > 0 {
            tracing::warn!(
                fp8_tensors = fp8,
                "config.json has no quantization_config, but {fp8} tensor(s) are stored as FP8: \
                 reading them with the scales stored beside them"
            );
        }
    }
    let ctx = Ctx::new(src, config, policy, opts)?;
    let layers = config.text.layer_types.len();
    for id in part_ids(config) {
        let _span = match id {
            PartId::Layer(i) => Some(tracing::debug_span!("load_layer", layer = i).entered()),
            _ => None,
        };
        visit(ctx.part(id, config.tie_word_embeddings)?)?;
        if let (PartId::Layer(i), Some(p)) = (id, progress) {
            p(i + 1, layers);
        }
    }
    if config.tie_word_embeddings && src.tensor("lm_head.weight").is_some() {
        tracing::debug!("tie_word_embeddings is set; ignoring lm_head.weight");
    }
    Ok(())
}

/// Which [`Part`] of the model [`pack_part`] packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartId {
    /// [`Part::Embed`].
    Embed,
    /// [`Part::Layer`] of this index.
    Layer(usize),
    /// [`Part::Norm`].
    Norm,
    /// [`Part::LmHead`] (untied heads only).
    LmHead,
}

impl PartId {
    /// Whether the tensor with canonical name `name` belongs to this part
    /// (its weights, their scale companions, its vectors): what a reader
    /// that fetches one part at a time fetches for it.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            PartId::Embed => name.starts_with("model.embed_tokens."),
            PartId::Layer(i) => name
                .strip_prefix("model.layers.")
                .and_then(|rest| rest.strip_prefix(&i.to_string()))
                .is_some_and(|rest| rest.starts_with('.')),
            PartId::Norm => name.starts_with("model.norm."),
            PartId::LmHead => name.starts_with("lm_head."),
        }
    }
}

/// The parts of `config`'s model in stream order: embedding, each layer,
/// final norm, and the head unless the embeddings are tied.
pub fn part_ids(config: &ModelConfig) -> Vec<PartId> {
    let mut ids = vec![PartId::Embed];
    ids.extend((0..config.text.layer_types.len()).map(PartId::Layer));
    ids.push(PartId::Norm);
    if !config.tie_word_embeddings {
        ids.push(PartId::LmHead);
    }
    ids
}

/// Packs one part of the model: what [`stream_from_source_with`] hands its
/// visitor for `id`, for a reader that fetches the model one part at a time.
/// `src` names every tensor of the model (the required set is checked, and
/// expert layouts are detected, from all names) but only the tensors `id`
/// [covers](PartId::covers) are read, so the others may carry no bytes.
pub fn pack_part(
    src: &(impl TensorSource + ?Sized),
    config: &ModelConfig,
    opts: &PackOptions,
    id: PartId,
) -> Result<Part, LoadError> {
    let policy = QuantPolicy::from_config(config.quantization.as_ref())?;
    Ctx::new(src, config, policy, opts)?.part(id, config.tie_word_embeddings)
}

pub(crate) struct Ctx<'s, S: TensorSource + ?Sized> {
    pub(crate) src: &'s S,
    pub(crate) cfg: &'s TextConfig,
    pub(crate) policy: QuantPolicy,
    pub(crate) layout: Option<ExpertLayout>,
    pub(crate) opts: PackOptions,
}

impl<'s, S: TensorSource + ?Sized> Ctx<'s, S> {
    /// The packing context of `config`'s model over `src`, after checking
    /// that every required tensor exists (before any data is touched).
    fn new(
        src: &'s S,
        config: &'s ModelConfig,
        policy: QuantPolicy,
        opts: &PackOptions,
    ) -> Result<Self, LoadError> {
        let cfg = &config.text;
        let layout = match &cfg.ffn {
            FfnConfig::Moe { num_experts, .. } => {
                detect_layout(&src.tensor_names(), cfg.num_hidden_layers, *num_experts)?
                    .or(Some(ExpertLayout::Fused))
            }
            FfnConfig::Dense { .. } => None,
        };
        let ctx = Ctx {
            src,
            cfg,
            policy,
            layout,
            opts: *opts,
        };
        ctx.check_required(config.tie_word_embeddings)?;
        Ok(ctx)
    }

    /// Packs part `id` (`tied`: the head is the embedding, so there is no
    /// [`PartId::LmHead`]).
    fn part(&self, id: PartId, tied: bool) -> Result<Part, LoadError> {
        let cfg = self.cfg;
        let h = cfg.hidden_size;
        Ok(match id {
            PartId::Embed => {
                let embed_tokens = self.single(
                    "model.embed_tokens.weight",
                    "embed_tokens",
                    cfg.vocab_size,
                    h,
                )?;
                if embed_tokens.dtype.is_fp8() {
                    return Err(LoadError::EmbeddingQuantized {
                        tensor: "model.embed_tokens.weight".into(),
                        dtype: embed_tokens.dtype,
                    });
                }
                Part::Embed(embed_tokens)
            }
            PartId::Layer(i) => {
                let kind = *cfg
                    .layer_types
                    .get(i)
                    .ok_or_else(|| LoadError::NoSuchPart {
                        part: format!("{id:?}"),
                        detail: format!("the model has {n} layers", n = cfg.layer_types.len()),
                    })?;
                Part::Layer {
                    index: i,
                    layer: self.layer(i, kind)?,
                }
            }
            PartId::Norm => Part::Norm(self.vector("model.norm.weight", &[h])?),
            PartId::LmHead if tied => {
                return Err(LoadError::NoSuchPart {
                    part: format!("{id:?}"),
                    detail: "its embeddings are tied (the head is the embedding)".into(),
                })
            }
            PartId::LmHead => {
                Part::LmHead(self.single("lm_head.weight", "lm_head", cfg.vocab_size, h)?)
            }
        })
    }

    /// Every tensor the config requires, checked before any data is touched.
    fn check_required(&self, tied: bool) -> Result<(), LoadError> {
        let cfg = self.cfg;
        let mut names: Vec<String> = expected_tensors(cfg, tied)
            .into_iter()
            .map(|t| t.name)
            .collect();
        for layer in 0..cfg.num_hidden_layers {
            let experts = match self.layout {
                Some(ExpertLayout::PerExpert) => per_expert_tensors(cfg, layer),
                _ => fused_expert_tensors(cfg, layer),
            };
            names.extend(experts.into_iter().map(|t| t.name));
        }
        let missing: Vec<String> = names
            .into_iter()
            .filter(|n| self.src.tensor(n).is_none() && !self.has_int4(n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(LoadError::MissingTensors { names: missing })
        }
    }

    /// A tensor about to be packed (its pages are prefetched, unless the
    /// weights are borrowed: their bytes are then read by the visitor, with
    /// positioned reads that need no pages mapped).
    pub(crate) fn get(&self, name: &str) -> Result<SourceTensor<'s>, LoadError> {
        let t = self
            .src
            .tensor(name)
            .ok_or_else(|| LoadError::MissingTensors {
                names: vec![name.to_string()],
            })?;
        if !self.opts.layout_only && !self.opts.borrow_sources {
            self.src.prefetch(&t.bytes);
        }
        Ok(t)
    }

    /// The single scale tensor of a weight (two alternatives present is an error).
    fn scale_of(&self, weight: &str) -> Result<Option<SourceTensor<'s>>, LoadError> {
        let mut found: Vec<SourceTensor<'s>> = weight_scale_names(weight)
            .iter()
            .filter_map(|n| self.src.tensor(n))
            .collect();
        match found.len() {
            0 | 1 => Ok(found.pop()),
            _ => Err(LoadError::AmbiguousScale {
                tensor: weight.to_string(),
                first: found.first().map_or_else(String::new, |t| t.name.clone()),
                second: found.get(1).map_or_else(String::new, |t| t.name.clone()),
            }),
        }
    }

    /// A checkpoint weight with its scale companions, covering `covers`
    /// (or its 4-bit form, decoded, when the checkpoint stores it so).
    fn source(&self, name: &str, covers: &[&str]) -> Result<SourceWeight<'s>, LoadError> {
        if let Some(w) = self.int4_source(name, covers)? {
            return Ok(w);
        }
        let mut w = SourceWeight::new(self.get(name)?, covers);
        w.weight_scale = self.scale_of(name)?;
        w.input_scale = self.src.tensor(&input_scale_name(name));
        Ok(w)
    }

    fn pack(
        &self,
        name: String,
        shards: &[(&str, usize)],
        cols: usize,
        sources: &[SourceWeight<'_>],
    ) -> Result<PackedWeight, LoadError> {
        let spec = PackSpec::new(
            name,
            shards.iter().map(|(n, r)| ShardSpec::new(*n, *r)).collect(),
            Some(cols),
        );
        pack_with(&spec, sources, &self.policy, &self.opts).map_err(|e| {
            let mut names: Vec<&str> = sources.iter().map(|s| s.weight.name.as_str()).collect();
            names.dedup();
            self.locate(e, &names)
        })
    }

    /// Adds where `names` are stored (their own names and files) to `e`, when
    /// the source knows. At most three are named.
    pub(crate) fn locate(&self, e: LoadError, names: &[&str]) -> LoadError {
        let origins: Vec<String> = names
            .iter()
            .take(3)
            .filter_map(|n| self.src.origin(n))
            .collect();
        if origins.is_empty() || matches!(e, LoadError::InFile { .. }) {
            return e;
        }
        let more = names.len().saturating_sub(3);
        let mut origin = origins.join(", ");
        if more > 0 {
            origin.push_str(&format!(" and {more} more"));
        }
        LoadError::InFile {
            source: Box::new(e),
            origin,
        }
    }

    /// An unfused `[rows, cols]` weight whose one shard is named `shard`.
    fn single(
        &self,
        name: &str,
        shard: &str,
        rows: usize,
        cols: usize,
    ) -> Result<PackedWeight, LoadError> {
        let src = self.source(name, &[shard])?;
        let packed = name.strip_suffix(".weight").unwrap_or(name).to_string();
        self.pack(packed, &[(shard, rows)], cols, &[src])
    }

    /// An unquantized vector (norms, conv, A_log, dt_bias) as f32, shape-checked.
    /// Empty in layout-only mode (after the shape and dtype checks).
    fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(self.locate(
                LoadError::Shape {
                    tensor: name.to_string(),
                    got: t.shape.clone(),
                    expected: format!("{shape:?}"),
                },
                &[name],
            ));
        }
        if self.opts.layout_only && !t.dtype.is_fp8() {
            return Ok(Vec::new());
        }
        t.to_f32().map_err(|e| self.locate(e, &[name]))
    }

    fn layer(&self, i: usize, kind: LayerType) -> Result<PackedLayer, LoadError> {
        let h = self.cfg.hidden_size;
        let p = format!("model.layers.{i}");
        let mixer = match kind {
            LayerType::LinearAttention => Mixer::Linear(self.gdn(&p)?),
            LayerType::FullAttention => Mixer::Full(self.attention(i, &p)?),
        };
        let ffn = match &self.cfg.ffn {
            FfnConfig::Dense { intermediate_size } => {
                Ffn::Dense(self.mlp(&format!("{p}.mlp"), *intermediate_size)?)
            }
            FfnConfig::Moe {
                num_experts,
                moe_intermediate_size,
                shared_expert_intermediate_size,
                ..
            } => Ffn::Moe(self.moe(
                &p,
                *num_experts,
                *moe_intermediate_size,
                *shared_expert_intermediate_size,
            )?),
        };
        Ok(PackedLayer {
            input_layernorm: self.vector(&format!("{p}.input_layernorm.weight"), &[h])?,
            post_attention_layernorm: self
                .vector(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
            mixer,
            ffn,
        })
    }

    fn gdn(&self, layer: &str) -> Result<GdnWeights, LoadError> {
        let c = self.cfg;
        let (h, kd, vd, nv) = (
            c.hidden_size,
            c.key_dim(),
            c.value_dim(),
            c.linear_num_value_heads,
        );
        let p = format!("{layer}.linear_attn");
        let qkvz = [
            self.source(&format!("{p}.in_proj_qkv.weight"), &["q", "k", "v"])?,
            self.source(&format!("{p}.in_proj_z.weight"), &["z"])?,
        ];
        let ba = [
            self.source(&format!("{p}.in_proj_b.weight"), &["b"])?,
            self.source(&format!("{p}.in_proj_a.weight"), &["a"])?,
        ];
        Ok(GdnWeights {
            in_proj_qkvz: self.pack(
                format!("{p}.in_proj_qkvz"),
                &[("q", kd), ("k", kd), ("v", vd), ("z", vd)],
                h,
                &qkvz,
            )?,
            in_proj_ba: self.pack(format!("{p}.in_proj_ba"), &[("b", nv), ("a", nv)], h, &ba)?,
            conv1d: self.vector(
                &format!("{p}.conv1d.weight"),
                &[c.conv_dim(), 1, c.linear_conv_kernel_dim],
            )?,
            a_log: self.vector(&format!("{p}.A_log"), &[nv])?,
            dt_bias: self.vector(&format!("{p}.dt_bias"), &[nv])?,
            norm: self.vector(&format!("{p}.norm.weight"), &[c.linear_value_head_dim])?,
            out_proj: self.single(&format!("{p}.out_proj.weight"), "out_proj", h, vd)?,
        })
    }

    fn attention(&self, layer_index: usize, layer: &str) -> Result<AttentionWeights, LoadError> {
        let c = self.cfg;
        let h = c.hidden_size;
        let p = format!("{layer}.self_attn");
        let sources = [
            self.source(&format!("{p}.q_proj.weight"), &["q"])?,
            self.source(&format!("{p}.k_proj.weight"), &["k"])?,
            self.source(&format!("{p}.v_proj.weight"), &["v"])?,
        ];
        let kv = c.kv_proj_rows();
        Ok(AttentionWeights {
            qkv: self.pack(
                format!("{p}.qkv_proj"),
                &[("q", c.q_proj_rows()), ("k", kv), ("v", kv)],
                h,
                &sources,
            )?,
            o_proj: self.single(
                &format!("{p}.o_proj.weight"),
                "o_proj",
                h,
                c.num_attention_heads * c.head_dim,
            )?,
            q_norm: self.vector(&format!("{p}.q_norm.weight"), &[c.head_dim])?,
            k_norm: self.vector(&format!("{p}.k_norm.weight"), &[c.head_dim])?,
            kv_scales: self.kv_scales(layer_index, &p)?,
        })
    }

    /// `k_scale`/`v_scale` (either spelling): loaded and validated, or an error
    /// when the config quantizes the KV cache but they are missing.
    fn kv_scales(&self, layer: usize, p: &str) -> Result<Option<KvScales>, LoadError> {
        let one = |which: &str| -> Result<Option<f32>, LoadError> {
            let names = [
                format!("{p}.{which}_scale"),
                format!("{p}.{which}_proj.{which}_scale"),
            ];
            let found: Vec<SourceTensor<'s>> =
                names.iter().filter_map(|n| self.src.tensor(n)).collect();
            match found.as_slice() {
                [] => Ok(None),
                [t] => match scale_values(t)?.as_slice() {
                    [v] => Ok(Some(*v)),
                    _ => Err(LoadError::KvScales {
                        layer,
                        detail: format!(
                            "`{t_name}` has shape {t_shape:?}, expected one element",
                            t_name = t.name,
                            t_shape = t.shape
                        ),
                    }),
                },
                _ => Err(LoadError::KvScales {
                    layer,
                    detail: format!(
                        "both `{names_0}` and `{names_1}` present",
                        names_0 = names[0],
                        names_1 = names[1]
                    ),
                }),
            }
        };
        match (one("k")?, one("v")?) {
            (Some(k_scale), Some(v_scale)) => Ok(Some(KvScales { k_scale, v_scale })),
            (None, None) => match self.policy.kv_cache() {
                Some(desc) => Err(LoadError::KvScales {
                    layer,
                    detail: format!(
                        "the config sets {desc}, but `{p}.k_scale` / `{p}.v_scale` are missing"
                    ),
                }),
                None => Ok(None),
            },
            (k, _) => Err(LoadError::KvScales {
                layer,
                detail: format!(
                    "only the {k_or_v} scale is present; both `{p}.k_scale` and `{p}.v_scale` are needed",
                    k_or_v = if k.is_some() { "k" } else { "v" }
                ),
            }),
        }
    }

    fn mlp(&self, p: &str, inter: usize) -> Result<MlpWeights, LoadError> {
        let h = self.cfg.hidden_size;
        // A 4-bit checkpoint's three projections decoded on the load's threads.
        let named = ["gate", "up", "down"].map(|s| (format!("{p}.{s}_proj.weight"), s));
        let mut sources = map_in_order(self.opts.threads, &named, |(name, shard)| {
            self.source(name, &[shard])
        })?;
        let down = sources.split_off(2);
        Ok(MlpWeights {
            gate_up: self.pack(
                format!("{p}.gate_up_proj"),
                &[("gate", inter), ("up", inter)],
                h,
                &sources,
            )?,
            down: self.pack(format!("{p}.down_proj"), &[("down", h)], inter, &down)?,
        })
    }

    fn moe(
        &self,
        layer: &str,
        experts: usize,
        ie: usize,
        is: usize,
    ) -> Result<MoeWeights, LoadError> {
        let h = self.cfg.hidden_size;
        let p = format!("{layer}.mlp");
        let (gate_up, down) = match self.layout {
            Some(ExpertLayout::PerExpert) => {
                // (weight, shard) of every expert's projections, in the
                // order a loop would take them (so the first error is the
                // same); a 4-bit checkpoint's are decoded on the load's threads.
                let named: Vec<(String, String)> = (0..experts)
                    .flat_map(|e| {
                        ["gate", "up", "down"].map(|proj| {
                            (
                                format!("{p}.experts.{e}.{proj}_proj.weight"),
                                format!("e{e}.{proj}"),
                            )
                        })
                    })
                    .collect();
                let mut sources = map_in_order(self.opts.threads, &named, |(name, shard)| {
                    self.source(name, &[shard])
                })?
                .into_iter();
                let mut gate_up = Vec::with_capacity(2 * experts);
                let mut down = Vec::with_capacity(experts);
                while let (Some(g), Some(u), Some(d)) =
                    (sources.next(), sources.next(), sources.next())
                {
                    gate_up.extend([g, u]);
                    down.push(d);
                }
                (gate_up, down)
            }
            _ => {
                let module = format!("{p}.experts");
                let fused = |t: &str, dims: [usize; 3], covers: &dyn Fn(usize) -> Vec<String>| {
                    let name = format!("{p}.experts.{t}");
                    split_fused(
                        self.get(&name)?,
                        self.scale_of(&name)?,
                        self.src.tensor(&input_scale_name(&name)),
                        &module,
                        dims,
                        covers,
                    )
                    .map_err(|e| self.locate(e, &[&name]))
                };
                let gate_up = match self.int4_fused_experts(
                    &format!("{p}.experts.gate_up_proj"),
                    experts,
                    &[ie, ie],
                    h,
                    &|e, s| format!("e{e}.{shard}", shard = ["gate", "up"][s]),
                )? {
                    Some(sources) => sources,
                    None => fused("gate_up_proj", [experts, 2 * ie, h], &|e| {
                        vec![format!("e{e}.gate"), format!("e{e}.up")]
                    })?,
                };
                let down = match self.int4_fused_experts(
                    &format!("{p}.experts.down_proj"),
                    experts,
                    &[h],
                    ie,
                    &|e, _| format!("e{e}.down"),
                )? {
                    Some(sources) => sources,
                    None => fused("down_proj", [experts, h, ie], &|e| {
                        vec![format!("e{e}.down")]
                    })?,
                };
                (gate_up, down)
            }
        };
        let gate_up_names: Vec<(String, usize)> = (0..experts)
            .flat_map(|e| [(format!("e{e}.gate"), ie), (format!("e{e}.up"), ie)])
            .collect();
        let down_names: Vec<(String, usize)> =
            (0..experts).map(|e| (format!("e{e}.down"), h)).collect();
        Ok(MoeWeights {
            router: self.single(&format!("{p}.gate.weight"), "gate", experts, h)?,
            experts_gate_up: self.pack(
                format!("{p}.experts.gate_up_proj"),
                &as_refs(&gate_up_names),
                h,
                &gate_up,
            )?,
            experts_down: self.pack(
                format!("{p}.experts.down_proj"),
                &as_refs(&down_names),
                ie,
                &down,
            )?,
            shared_expert: self.mlp(&format!("{p}.shared_expert"), is)?,
            shared_expert_gate: self.single(
                &format!("{p}.shared_expert_gate.weight"),
                "shared_expert_gate",
                1,
                h,
            )?,
        })
    }
}

fn as_refs(v: &[(String, usize)]) -> Vec<(&str, usize)> {
    v.iter().map(|(n, r)| (n.as_str(), *r)).collect()
}
