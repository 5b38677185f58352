//! Typed `quantization_config` schemes (FP8: Qwen official, compressed-tensors,
//! ModelOpt; 4-bit: GPTQ, AWQ, compressed-tensors `pack-quantized`). `qwgpu-loader` interprets them
//! (ignore-list matching, scale semantics); parsing lives in `quant_parse.rs`.

/// FP8 element format named by a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp8Format {
    E4M3,
    E5M2,
}

/// How activations are quantized at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationScheme {
    /// Scales computed per token / group at run time; no `input_scale` tensors.
    Dynamic,
    /// One calibrated `input_scale` per module.
    Static,
    /// Activations are not quantized (weight-only).
    None,
}

/// Qwen official FP8 (`quant_method: "fp8"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fp8Config {
    pub fmt: Fp8Format,
    /// `weight_block_size` `[bn, bk]`; `None` means per-tensor `weight_scale_inv`.
    pub weight_block_size: Option<[usize; 2]>,
    pub activation_scheme: ActivationScheme,
    /// Module names as written in the config (often `model.language_model.` paths).
    pub modules_to_not_convert: Vec<String>,
}

/// Weight / activation quantization strategy of compressed-tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtStrategy {
    Tensor,
    Channel,
    Block,
    Group,
    Token,
    TensorGroup,
    Attn,
    Head,
}

/// One `QuantizationArgs` of compressed-tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CtQuantArgs {
    pub num_bits: u32,
    /// `"float"` or `"int"`.
    pub kind: String,
    pub strategy: CtStrategy,
    pub symmetric: bool,
    pub dynamic: bool,
    pub block_structure: Option<[usize; 2]>,
    pub group_size: Option<usize>,
}

/// One entry of `config_groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct CtGroup {
    pub name: String,
    pub targets: Vec<String>,
    pub weights: Option<CtQuantArgs>,
    pub input_activations: Option<CtQuantArgs>,
}

/// compressed-tensors (`quant_method: "compressed-tensors"`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedTensorsConfig {
    /// e.g. `float-quantized`.
    pub format: String,
    pub groups: Vec<CtGroup>,
    /// Names or `re:` regexes, as written in the config.
    pub ignore: Vec<String>,
    pub kv_cache_scheme: Option<CtQuantArgs>,
}

/// NVIDIA ModelOpt (`quant_method: "modelopt"`, `quant_algo: "FP8"`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptConfig {
    pub quant_algo: String,
    pub kv_cache_quant_algo: Option<String>,
    /// `exclude_modules` / `ignore`, wildcards (`*`) allowed.
    pub exclude_modules: Vec<String>,
}

/// How a GPTQ checkpoint stores its zero points (`checkpoint_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptqFormat {
    /// `gptq` (v1): `qzeros` hold `zero - 1` (readers add 1 back).
    V1,
    /// `gptq_v2`: `qzeros` hold the zero points as they are.
    V2,
}

/// The GPTQ parameters that apply to one module (the config's own, or those a
/// `dynamic` rule overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptqParams {
    pub bits: u32,
    /// Columns per group; `None` for `group_size: -1` (one group per row).
    pub group_size: Option<usize>,
    pub sym: bool,
    /// Activation order: `g_idx` may permute the input columns' groups.
    pub desc_act: bool,
}

/// One GPTQModel `dynamic` rule: a regex on module names (Python `re.match`,
/// anchored at the start), either excluding the modules (`-:` prefix) or
/// overriding parameters for them (`+:` or no prefix). The first matching rule
/// wins, in the config's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptqDynamicRule {
    /// The key as written (e.g. `-:.*attn.*`), for messages.
    pub key: String,
    /// The regex without its `-:` / `+:` prefix.
    pub pattern: String,
    pub exclude: bool,
    pub bits: Option<u32>,
    /// `Some(None)` overrides to `-1` (per-row groups).
    pub group_size: Option<Option<usize>>,
    pub sym: Option<bool>,
    pub desc_act: Option<bool>,
}

/// GPTQ (`quant_method: "gptq"`, as written by GPTQModel / AutoGPTQ / optimum).
#[derive(Debug, Clone, PartialEq)]
pub struct GptqConfig {
    pub params: GptqParams,
    pub format: GptqFormat,
    pub dynamic: Vec<GptqDynamicRule>,
    /// Module names as written in the config.
    pub modules_to_not_convert: Vec<String>,
    /// `lm_head: true`: the head is quantized too.
    pub lm_head: bool,
}

/// AWQ (`quant_method: "awq"`, AutoAWQ's GEMM packing only).
#[derive(Debug, Clone, PartialEq)]
pub struct AwqConfig {
    pub bits: u32,
    /// Columns per group; `None` for `group_size: -1`.
    pub group_size: Option<usize>,
    pub zero_point: bool,
    /// Module names as written in the config.
    pub modules_to_not_convert: Vec<String>,
}

/// A parsed `quantization_config`. Unknown `quant_method`s are rejected with
/// [`crate::CheckpointError::UnsupportedQuantization`].
#[derive(Debug, Clone, PartialEq)]
pub enum QuantizationConfig {
    Fp8(Fp8Config),
    CompressedTensors(CompressedTensorsConfig),
    ModelOpt(ModelOptConfig),
    Gptq(GptqConfig),
    Awq(AwqConfig),
}
