//! The whole model: embedding → decoder layers → final norm → logits.

use std::path::Path;

use qwgpu_checkpoint::{Checkpoint, LayerType, TextConfig};
use qwgpu_loader::PackedModel;

use qwgpu_ops::norm::rms_norm_one_plus;
use qwgpu_ops::rope::Rope;

use super::cache::{Cache, GdnState, KvCache, LayerState};
use super::linear::Matrix;
use super::weights::{convert, layer_type_name, FfnLayer, Layer, MixerLayer};
use super::{attention, gdn, mlp, moe};
use crate::ModelError;

/// Plain f32 Qwen3.5 text model (dense or MoE) for the CPU: readable, exact to
/// f32 rounding, and the oracle for the GPU engine.
///
/// ```no_run
/// use qwgpu_model::{argmax, ReferenceModel};
/// let model = ReferenceModel::load(std::path::Path::new("tests/fixtures/dense-bf16-text"))?;
/// let mut cache = model.new_cache();
/// let prompt = [1u32, 2, 3];
/// let logits = model.forward(&mut cache, &prompt)?; // prefill: [3 × vocab]
/// let vocab = model.config().vocab_size;
/// let mut next = argmax(&logits[2 * vocab..]) as u32;
/// for _ in 0..4 {
///     let step = model.forward(&mut cache, &[next])?; // decode: [1 × vocab]
///     next = argmax(&step) as u32;
/// }
/// # Ok::<(), qwgpu_model::ModelError>(())
/// ```
pub struct ReferenceModel {
    config: TextConfig,
    embed: Matrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when tied to the embeddings.
    lm_head: Option<Matrix>,
    rope: Rope,
}

impl ReferenceModel {
    /// Checks every shape against the config and dequantizes all weights to f32 once.
    ///
    /// The reference is weight-only: FP8 weights are dequantized exactly, while
    /// activations and the KV cache stay f32. Static `input_scale`s and FP8
    /// KV-cache scales stay in the [`PackedModel`] for engines that emulate them;
    /// here they are reported, not applied (like HF's forward on dequantized weights).
    pub fn from_packed(m: &PackedModel) -> Result<Self, ModelError> {
        report_unapplied_quantization(m);
        let c = convert(m)?;
        let config = m.config.clone();
        let rope = Rope::new(config.rotary_dim(), config.rope.theta);
        tracing::debug!(
            layers = c.layers.len(),
            vocab = config.vocab_size,
            hidden = config.hidden_size,
            tied = c.lm_head.is_none(),
            "reference model ready"
        );
        Ok(Self {
            config,
            embed: c.embed,
            layers: c.layers,
            norm: c.norm,
            lm_head: c.lm_head,
            rope,
        })
    }

    /// Opens the HF checkpoint in `dir`, packs it and dequantizes it.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let ckpt = Checkpoint::open(dir)?;
        Self::check_fits(&ckpt)?;
        let packed = qwgpu_loader::load_model(&ckpt)?;
        Self::from_packed(&packed)
    }

    /// Refuses, from the config alone, a checkpoint whose f32 copy would not fit
    /// in the memory this machine has available (skipped where that is unknown).
    pub fn check_fits(ckpt: &Checkpoint) -> Result<(), ModelError> {
        match super::capacity::available_memory() {
            Some(available) => super::capacity::check(
                &ckpt.config().text,
                ckpt.config().tie_word_embeddings,
                available,
            ),
            None => Ok(()),
        }
    }

    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// An empty cache (position 0, empty KV caches, zero GDN states).
    pub fn new_cache(&self) -> Cache {
        let cfg = &self.config;
        let layers = cfg
            .layer_types
            .iter()
            .map(|ty| match ty {
                LayerType::LinearAttention => LayerState::Linear(GdnState {
                    conv: vec![0.0; (cfg.linear_conv_kernel_dim - 1) * cfg.conv_dim()],
                    recurrent: vec![
                        0.0;
                        cfg.linear_num_value_heads
                            * cfg.linear_key_head_dim
                            * cfg.linear_value_head_dim
                    ],
                }),
                LayerType::FullAttention => LayerState::Full(KvCache::default()),
            })
            .collect();
        Cache {
            position: 0,
            layers,
        }
    }

    /// Runs `tokens` after whatever `cache` already holds and returns their logits,
    /// `[tokens.len() × vocab]` row-major. Prefill (many tokens) and decode (one)
    /// are the same call. On error the cache is left unchanged.
    pub fn forward(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden(cache, tokens)?;
        Ok(self.head(&h))
    }

    /// [`forward`](Self::forward) returning only the last token's logits,
    /// `[vocab]`: the LM head (the largest matmul of a small model) runs on
    /// one position instead of all. Bit-identical to the last row of `forward`.
    pub fn forward_last(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden(cache, tokens)?;
        let hidden = self.config.hidden_size;
        let last = h.len().saturating_sub(hidden);
        Ok(self.head(h.get(last..).unwrap_or(&[])))
    }

    /// Logits of final hidden states `[T, hidden]`.
    fn head(&self, h: &[f32]) -> Vec<f32> {
        self.lm_head.as_ref().unwrap_or(&self.embed).apply(h)
    }

    /// The final-normed hidden states `[tokens.len(), hidden]` after `tokens`.
    fn hidden(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.config;
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        for (index, &token) in tokens.iter().enumerate() {
            if token as usize >= vocab {
                return Err(ModelError::TokenOutOfRange {
                    token,
                    index,
                    vocab,
                });
            }
        }
        self.check_cache(cache)?;
        let _span = tracing::debug_span!(
            "reference_forward",
            start = cache.position,
            tokens = tokens.len()
        )
        .entered();

        let mut h: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.embed.row(t as usize).to_vec())
            .collect();
        let eps = cfg.rms_norm_eps as f32;
        let start = cache.position;
        for (i, (layer, state)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let _layer_span = tracing::trace_span!("layer", i).entered();
            let x = rms_norm_one_plus(&h, &layer.input_norm, eps);
            let mixed = match (&layer.mixer, state) {
                (MixerLayer::Linear(w), LayerState::Linear(s)) => gdn::forward(cfg, w, &x, s),
                (MixerLayer::Full(w), LayerState::Full(kv)) => {
                    attention::forward(cfg, w, &self.rope, &x, start, kv)
                }
                // Not reachable: check_cache matched every layer's kind above.
                _ => {
                    return Err(ModelError::CacheMismatch {
                        detail: format!("layer {i}: state kind differs from the layer's"),
                    })
                }
            };
            add_in_place(&mut h, &mixed);
            let x = rms_norm_one_plus(&h, &layer.post_norm, eps);
            let ffn = match &layer.ffn {
                FfnLayer::Dense(w) => mlp::swiglu(w, &x),
                FfnLayer::Moe(w) => moe::forward(w, &x, hidden),
            };
            add_in_place(&mut h, &ffn);
        }
        cache.position += tokens.len();
        Ok(rms_norm_one_plus(&h, &self.norm, eps))
    }

    /// A cache from another model would index out of range: reject it up front.
    fn check_cache(&self, cache: &Cache) -> Result<(), ModelError> {
        let cfg = &self.config;
        let mismatch = |detail: String| Err(ModelError::CacheMismatch { detail });
        if cache.layers.len() != self.layers.len() {
            return mismatch(format!(
                "{cache_layers_len} layer states for {layers_len} layers",
                cache_layers_len = cache.layers.len(),
                layers_len = self.layers.len()
            ));
        }
        let kv_width = cfg.kv_proj_rows();
        let fresh = self.new_cache();
        for (i, ((state, want), ty)) in cache
            .layers
            .iter()
            .zip(&fresh.layers)
            .zip(&cfg.layer_types)
            .enumerate()
        {
            let ok = match (state, want) {
                (LayerState::Linear(s), LayerState::Linear(w)) => {
                    s.conv.len() == w.conv.len() && s.recurrent.len() == w.recurrent.len()
                }
                (LayerState::Full(kv), LayerState::Full(_)) => {
                    kv.keys.len() == cache.position * kv_width
                        && kv.values.len() == cache.position * kv_width
                }
                _ => false,
            };
            if !ok {
                return mismatch(format!(
                    "layer {i} ({layer_type}): state sizes do not match the config at position {cache_position}",
                    layer_type = layer_type_name(*ty),
                    cache_position = cache.position
                ));
            }
        }
        Ok(())
    }
}

fn add_in_place(h: &mut [f32], delta: &[f32]) {
    for (a, b) in h.iter_mut().zip(delta) {
        *a += b;
    }
}

/// Says (once, at info level) which activation-side quantization the f32
/// reference does not emulate, so nothing a checkpoint carries goes unmentioned.
fn report_unapplied_quantization(m: &PackedModel) {
    use qwgpu_loader::{ActivationQuant, Mixer};
    let kv_layers = m
        .layers
        .iter()
        .filter(|l| matches!(&l.mixer, Mixer::Full(a) if a.kv_scales.is_some()))
        .count();
    let static_inputs = m
        .layers
        .iter()
        .flat_map(|l| match &l.mixer {
            Mixer::Linear(g) => vec![&g.in_proj_qkvz, &g.in_proj_ba, &g.out_proj],
            Mixer::Full(a) => vec![&a.qkv, &a.o_proj],
        })
        .filter(|w| matches!(w.activation, ActivationQuant::Static { .. }))
        .count();
    if kv_layers > 0 || static_inputs > 0 {
        tracing::info!(
            kv_scale_layers = kv_layers,
            static_input_scale_projections = static_inputs,
            "reference model: activations and KV cache computed in f32; static input scales and FP8 KV-cache scales are not emulated"
        );
    }
}
