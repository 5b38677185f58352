//! Typed `config.json` for Qwen3.5 text models (dense and MoE), wrapper or text-only.
//!
//! `qwgpu-loader` and `qwgpu-model` read the model's shape from these types.
//! Field names follow the HF config fields; derived sizes are methods.

use std::path::Path;

use crate::quant::QuantizationConfig;
use crate::CheckpointError;

/// Kind of token mixer of one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Gated DeltaNet (`linear_attn.*`).
    LinearAttention,
    /// Gated full attention (`self_attn.*`).
    FullAttention,
}

/// Feed-forward block of every layer.
#[derive(Debug, Clone, PartialEq)]
pub enum FfnConfig {
    Dense {
        intermediate_size: usize,
    },
    Moe {
        num_experts: usize,
        num_experts_per_tok: usize,
        moe_intermediate_size: usize,
        shared_expert_intermediate_size: usize,
    },
}

/// RoPE parameters (from `rope_parameters`, top-level fields or `rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub partial_rotary_factor: f64,
}

/// The text model's geometry (`text_config` of the wrapper, or the top level).
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    /// One entry per layer (from `layer_types` or `full_attention_interval`).
    pub layer_types: Vec<LayerType>,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub linear_conv_kernel_dim: usize,
    pub linear_key_head_dim: usize,
    pub linear_value_head_dim: usize,
    pub linear_num_key_heads: usize,
    pub linear_num_value_heads: usize,
    pub rope: RopeConfig,
    pub attn_output_gate: bool,
    pub ffn: FfnConfig,
}

impl TextConfig {
    /// `nk * dk`: width of the GDN q (and k) channel group.
    pub fn key_dim(&self) -> usize {
        self.linear_num_key_heads * self.linear_key_head_dim
    }
    /// `nv * dv`: width of the GDN v / z channel group.
    pub fn value_dim(&self) -> usize {
        self.linear_num_value_heads * self.linear_value_head_dim
    }
    /// `2 * key_dim + value_dim`: channels of the causal conv (q|k|v).
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
    /// `int(head_dim * partial_rotary_factor)`: rotated dims per attention head.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.rope.partial_rotary_factor) as usize
    }
    /// Rows of `q_proj`: query and gate interleaved per head (`2 * nh * hd`).
    pub fn q_proj_rows(&self) -> usize {
        2 * self.num_attention_heads * self.head_dim
    }
    /// Rows of `k_proj` / `v_proj` (`nkv * hd`).
    pub fn kv_proj_rows(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
    pub fn is_moe(&self) -> bool {
        matches!(self.ffn, FfnConfig::Moe { .. })
    }
}

/// The whole `config.json` as far as a text engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `architectures[0]`, e.g. `Qwen3_5MoeForConditionalGeneration`.
    pub architecture: String,
    /// Top-level `model_type`.
    pub model_type: String,
    /// True when the text fields came from `text_config` (the release wrapper).
    pub wrapped: bool,
    pub text: TextConfig,
    /// Top level, falling back to `text_config`; default false.
    pub tie_word_embeddings: bool,
    /// Top level, falling back to `text_config`.
    pub quantization: Option<QuantizationConfig>,
    /// `eos_token_id` (number or list), top level or `text_config`; may be empty.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Parses and validates a `config.json` text. `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, CheckpointError> {
        crate::config_parse::parse_model_config(text, path)
    }

    /// Reads and validates `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<Self, CheckpointError> {
        let text = crate::files::read_text_file(path, crate::files::MAX_CONFIG_BYTES)?;
        Self::from_json_str(&text, path)
    }
}
