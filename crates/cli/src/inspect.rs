//! `qwgpu inspect`: what qwgpu reads from a model folder, before running it —
//! config, context, quantization, parameter counts, sizes, and how every packed
//! weight is stored and scaled. Reads headers, JSON files and scale tensors
//! only: no weight byte is read or copied, so a 35B model inspects in
//! milliseconds with a few MB of memory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use qwgpu_checkpoint::expected::{COMPANION_SUFFIXES, FUSED_COMPANION_SUFFIXES};
use qwgpu_checkpoint::files::{read_text_file, MAX_CONFIG_BYTES};
use qwgpu_checkpoint::quant::{ActivationScheme, CtQuantArgs, CtStrategy, Fp8Format};
use qwgpu_checkpoint::{
    Checkpoint, FfnConfig, LayerType, OpenOptions, QuantizationConfig, TextConfig,
};
use qwgpu_loader::{ActivationQuant, PackedModel, PackedWeight, ScaleScheme};
use serde_json::Value;

use crate::chat_template::{ChatTemplate, TemplateError};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    model: PathBuf,
    /// List every packed weight (default: a count per storage and scale scheme).
    #[arg(long)]
    weights: bool,
    /// Refuse tensors qwgpu does not know.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let ckpt = Checkpoint::open_with(
        &args.model,
        &OpenOptions {
            strict: args.strict,
        },
    )?;
    // Layout and scales only: every check of a real load except weight values.
    let packed = qwgpu_loader::plan_model(&ckpt)?;
    let cfg = ckpt.config();
    let t = &cfg.text;
    let full = t
        .layer_types
        .iter()
        .filter(|k| **k == LayerType::FullAttention)
        .count();
    let mut out = std::io::stdout().lock();
    let model = args.model.display();
    writeln!(out, "model        {model}")?;
    let architecture = &cfg.architecture;
    let wrapper = if cfg.wrapped {
        "release wrapper, text_config"
    } else {
        "text-only"
    };
    writeln!(out, "architecture {architecture} ({wrapper})")?;
    let layers = t.num_hidden_layers;
    let gdn = layers - full;
    let (hidden, vocab) = (t.hidden_size, t.vocab_size);
    let tied = if cfg.tie_word_embeddings {
        "tied"
    } else {
        "untied"
    };
    writeln!(out,
        "geometry     {layers} layers ({gdn} gated delta-net, {full} full attention), hidden {hidden}, vocab {vocab}, {tied} embeddings"
    )?;
    match &t.ffn {
        FfnConfig::Dense { intermediate_size } => writeln!(out, "ffn          dense SwiGLU, {intermediate_size}")?,
        FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size,
            shared_expert_intermediate_size,
        } => writeln!(out,
            "ffn          MoE, {num_experts} experts (top {num_experts_per_tok}) of {moe_intermediate_size}, shared expert {shared_expert_intermediate_size}"
        )?,
    }
    let folder = Folder::read(&args.model);
    let context = folder.context();
    let (theta, partial) = (t.rope.theta, t.rope.partial_rotary_factor);
    writeln!(
        out,
        "context      {context}, rope theta {theta}, partial rotary {partial}"
    )?;
    let eos = folder.eos(&cfg.eos_token_ids);
    writeln!(out, "eos ids      {eos}")?;
    let template = &folder.chat_template;
    writeln!(out, "template     {template}")?;
    match &cfg.quantization {
        None => writeln!(out, "quantization none")?,
        Some(q) => {
            let q = summarize(q);
            writeln!(out, "quantization {q}")?
        }
    }

    let counts = Counts::of(&ckpt);
    let total = count(counts.total);
    let mut params = format!("{total} total (text model)");
    if let FfnConfig::Moe {
        num_experts,
        num_experts_per_tok,
        ..
    } = t.ffn
    {
        let active = counts.total - counts.experts
            + counts.experts * num_experts_per_tok as u64 / num_experts.max(1) as u64;
        let active = count(active);
        params.push_str(&format!(
            ", {active} active per token ({num_experts_per_tok} of {num_experts} experts)"
        ));
    }
    if counts.skipped > 0 {
        params.push_str(&format!(
            ", {} more skipped (mtp / vision)",
            count(counts.skipped)
        ));
    }
    writeln!(out, "parameters   {params}")?;
    let mut disk: Vec<(&String, &u64)> = counts.disk.iter().collect();
    disk.sort_by(|a, b| b.1.cmp(a.1));
    let by_dtype: Vec<String> = disk
        .iter()
        .map(|(d, b)| {
            let b = bytes(**b);
            format!("{d} {b}")
        })
        .collect();
    let on_disk = bytes(counts.disk.values().sum());
    let by_dtype = by_dtype.join(", ");
    writeln!(out, "on disk      {on_disk} in tensors: {by_dtype}")?;
    let mem = gpu_memory(&packed);
    let (weights_b, kv_b, state_b) = (bytes(mem.weights), bytes(mem.kv_per_1k), bytes(mem.state));
    writeln!(out,
        "gpu memory   ~{weights_b} weights + {kv_b} KV cache per 1k tokens (f32, {full} attention layer(s)) + {state_b} recurrent state per session"
    )?;
    let (kept, files, skipped, unexpected) = (
        ckpt.names().len(),
        ckpt.files().len(),
        ckpt.skipped().len(),
        ckpt.unexpected().len(),
    );
    writeln!(
        out,
        "tensors      {kept} kept in {files} file(s), {skipped} skipped (mtp / vision / inv_freq), {unexpected} unexpected"
    )?;
    for name in ckpt.unexpected() {
        writeln!(out, "  unexpected {name}")?;
    }

    let weights = packed.weights();
    if args.weights {
        for w in &weights {
            let line = describe(w);
            writeln!(out, "  {line}")?;
        }
    } else {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for w in &weights {
            let (dtype, scheme) = (&w.dtype, scheme_kind(w));
            *kinds.entry(format!("{dtype} scale {scheme}")).or_default() += 1;
        }
        let n = weights.len();
        writeln!(out, "packed       {n} weights:")?;
        for (kind, n) in kinds {
            writeln!(out, "  {n:4} × {kind}")?;
        }
    }
    Ok(())
}

/// An optional file of the folder: absent, or read, or present but not
/// usable (unreadable, not a regular file, malformed JSON) and why.
enum Optional {
    Absent,
    Read(Value),
    Broken(String),
}

impl Optional {
    fn json(path: &Path) -> Self {
        if std::fs::symlink_metadata(path).is_err() {
            return Optional::Absent;
        }
        let text = match read_text_file(path, MAX_CONFIG_BYTES) {
            Ok(t) => t,
            Err(e) => return Optional::Broken(e.to_string()),
        };
        match serde_json::from_str(&text) {
            Ok(v) => Optional::Read(v),
            Err(e) => {
                let shown = path.display();
                Optional::Broken(format!("{shown}: invalid JSON: {e}"))
            }
        }
    }
}

/// What the folder's JSON files add: context length, EOS ids, chat template.
/// Unreadable optional files are reported as such, not fatal (`inspect` is
/// diagnostic) and never taken for absent ones.
struct Folder {
    /// `max_position_embeddings`, or why it is unknown.
    context: Result<u64, String>,
    /// `eos_token_id` of generation_config.json as written, `None` when the
    /// file or the key is absent, or why the file cannot be used.
    generation_eos: Result<Option<String>, String>,
    chat_template: String,
}

impl Folder {
    fn read(dir: &Path) -> Self {
        let context = match Optional::json(&dir.join("config.json")) {
            Optional::Read(c) => c
                .get("max_position_embeddings")
                .or_else(|| c.get("text_config")?.get("max_position_embeddings"))
                .and_then(Value::as_u64)
                .ok_or_else(|| "unknown (no max_position_embeddings)".to_string()),
            Optional::Absent => Err("unknown (no config.json)".to_string()),
            Optional::Broken(e) => Err(format!("unknown ({e})")),
        };
        let generation_eos = match Optional::json(&dir.join("generation_config.json")) {
            Optional::Read(g) => Ok(g
                .get("eos_token_id")
                .filter(|v| !v.is_null())
                .map(Value::to_string)),
            Optional::Absent => Ok(None),
            Optional::Broken(e) => Err(e),
        };
        // The same search and checks as `generate --chat` and `serve`: a
        // malformed or unreadable file is reported, not taken for "none".
        let chat_template = match ChatTemplate::from_dir(dir) {
            Ok(t) => {
                let origin = Path::new(t.origin())
                    .file_name()
                    .map_or_else(|| t.origin().to_string(), |n| n.to_string_lossy().into_owned());
                format!("chat template present ({origin})")
            }
            Err(TemplateError::Missing { .. }) => "no chat template (none in chat_template.jinja, tokenizer_config.json or chat_template.json)".to_string(),
            Err(e) => format!("chat template unusable: {e}"),
        };
        Folder {
            context,
            generation_eos,
            chat_template,
        }
    }

    fn context(&self) -> String {
        match &self.context {
            Ok(n) => format!("{n} tokens (max_position_embeddings)"),
            Err(why) => why.clone(),
        }
    }

    fn eos(&self, config_ids: &[u32]) -> String {
        let config = if config_ids.is_empty() {
            "none in config.json".to_string()
        } else {
            format!("{config_ids:?} (config.json)")
        };
        match &self.generation_eos {
            Ok(Some(g)) => format!("{config}, {g} (generation_config.json)"),
            Ok(None) => config,
            Err(e) => format!("{config}; generation_config.json unusable: {e}"),
        }
    }
}

/// Parameter counts and stored bytes, from the headers.
struct Counts {
    /// Text-model parameters (kept tensors, scales and unexpected ones excluded).
    total: u64,
    /// Of which routed experts.
    experts: u64,
    /// Parameters of skipped tensors (MTP head, vision tower).
    skipped: u64,
    /// Bytes in tensors per stored dtype name.
    disk: BTreeMap<String, u64>,
}

impl Counts {
    fn of(ckpt: &Checkpoint) -> Self {
        let is_scale = |name: &str| {
            COMPANION_SUFFIXES
                .iter()
                .chain(FUSED_COMPANION_SUFFIXES)
                .any(|s| name.ends_with(s))
        };
        let unexpected: std::collections::HashSet<&str> =
            ckpt.unexpected().iter().map(String::as_str).collect();
        let mut c = Counts {
            total: 0,
            experts: 0,
            skipped: 0,
            disk: BTreeMap::new(),
        };
        for (_, t) in ckpt.stored_tensors() {
            *c.disk.entry(t.dtype_name.clone()).or_default() += (t.end - t.start) as u64;
            let numel: u64 = t.shape.iter().map(|&d| d as u64).product();
            match qwgpu_checkpoint::canonical_name(&t.name) {
                None => c.skipped += numel,
                Some(name) if is_scale(&name) || unexpected.contains(name.as_str()) => {}
                Some(name) => {
                    c.total += numel;
                    if name.contains(".mlp.experts.") {
                        c.experts += numel;
                    }
                }
            }
        }
        c
    }
}

struct GpuMemory {
    weights: u64,
    kv_per_1k: u64,
    state: u64,
}

/// Estimated GPU memory: packed weights in their stored dtype plus their
/// scales, the f32 vectors (norms, conv, gates), the f32 KV cache per 1k
/// tokens and the GDN state of one session.
fn gpu_memory(m: &PackedModel) -> GpuMemory {
    let c: &TextConfig = &m.config;
    let mut weights: u64 = m
        .weights()
        .iter()
        .map(|w| {
            // 4-bit weights: eight nibbles per u32 word, plus one zero byte per scale.
            let stored = match w.int4() {
                Some(q) => q.rows * q.words_per_row() * 4 + q.scales.len(),
                None => w.rows * w.cols * w.dtype.size(),
            };
            stored as u64 + 4 * scale_count(&w.scale) as u64
        })
        .sum();
    let mut vectors = c.hidden_size; // final norm
    let mut state = 0usize;
    for lt in &c.layer_types {
        vectors += 2 * c.hidden_size;
        match lt {
            LayerType::LinearAttention => {
                vectors += c.conv_dim() * c.linear_conv_kernel_dim
                    + 2 * c.linear_num_value_heads
                    + c.linear_value_head_dim;
                state += (c.linear_conv_kernel_dim - 1) * c.conv_dim()
                    + c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim;
            }
            LayerType::FullAttention => vectors += 2 * c.head_dim,
        }
    }
    weights += 4 * vectors as u64;
    let full = c
        .layer_types
        .iter()
        .filter(|l| **l == LayerType::FullAttention)
        .count();
    GpuMemory {
        weights,
        kv_per_1k: (1000 * full * 2 * c.kv_proj_rows() * 4) as u64,
        state: 4 * state as u64,
    }
}

fn scale_count(s: &ScaleScheme) -> usize {
    match s {
        ScaleScheme::None => 0,
        ScaleScheme::PerShard { scales } | ScaleScheme::PerChannel { scales } => scales.len(),
        ScaleScheme::Block { segments, .. } => segments.iter().map(|g| g.scales.len()).sum(),
        ScaleScheme::Int4(q) => q.scales.len(),
    }
}

/// `852.1 M`, `35.95 B`.
fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        let b = n / 1e9;
        format!("{b:.2} B")
    } else if n >= 1e6 {
        let m = n / 1e6;
        format!("{m:.1} M")
    } else if n >= 1e3 {
        let k = n / 1e3;
        format!("{k:.1} K")
    } else {
        format!("{n}")
    }
}

/// `1.45 GiB`, `12.0 MiB`, `512 B`.
fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.2} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

fn scheme_kind(w: &PackedWeight) -> String {
    let scheme = w.scale.describe();
    // Counts differ per weight; group by the scheme's name only.
    scheme.split(" (").next().unwrap_or(&scheme).to_string()
}

fn describe(w: &PackedWeight) -> String {
    let shards: Vec<&str> = w.shards.iter().map(|s| s.name.as_str()).collect();
    let shards = if shards.len() > 6 {
        let n = shards.len();
        format!("{n} shards")
    } else {
        shards.join("|")
    };
    let act = match &w.activation {
        ActivationQuant::None => String::new(),
        ActivationQuant::Dynamic => ", dynamic activation scales".into(),
        ActivationQuant::Static { max, .. } => format!(", static input scale (max {max})"),
    };
    let (name, dtype, rows, cols) = (&w.name, &w.dtype, w.rows, w.cols);
    let scale = w.scale.describe();
    format!("{name} {dtype} [{rows} x {cols}] {shards} scale {scale}{act}")
}

fn fp8_format(f: Fp8Format) -> &'static str {
    match f {
        Fp8Format::E4M3 => "E4M3",
        Fp8Format::E5M2 => "E5M2",
    }
}

fn activations(a: ActivationScheme) -> &'static str {
    match a {
        ActivationScheme::Dynamic => "dynamic activation scales",
        ActivationScheme::Static => "static activation scales",
        ActivationScheme::None => "weight-only",
    }
}

fn strategy(s: CtStrategy) -> &'static str {
    match s {
        CtStrategy::Tensor => "per-tensor",
        CtStrategy::Channel => "per-channel",
        CtStrategy::Block => "block",
        CtStrategy::Group => "group",
        CtStrategy::Token => "per-token",
        CtStrategy::TensorGroup => "tensor-group",
        CtStrategy::Attn => "attention",
        CtStrategy::Head => "per-head",
    }
}

fn summarize(q: &QuantizationConfig) -> String {
    match q {
        QuantizationConfig::Fp8(f) => {
            let format = fp8_format(f.fmt);
            let blocks = f
                .weight_block_size
                .map(|[rows, cols]| format!("{rows}x{cols}"))
                .unwrap_or_else(|| "none (per-tensor)".into());
            let act = activations(f.activation_scheme);
            let kept = f.modules_to_not_convert.len();
            format!("FP8 {format} (Qwen `fp8`), weight blocks {blocks}, {act}, {kept} modules not converted")
        }
        QuantizationConfig::CompressedTensors(c) => {
            let groups: Vec<String> = c
                .groups
                .iter()
                .map(|g| {
                    let name = &g.name;
                    let weights = args(g.weights.as_ref());
                    let acts = args(g.input_activations.as_ref());
                    format!("{name}: weights {weights}, activations {acts}")
                })
                .collect();
            let format = &c.format;
            let groups = groups.join("; ");
            let ignored = c.ignore.len();
            let kv = args(c.kv_cache_scheme.as_ref());
            format!(
                "compressed-tensors {format} [{groups}], {ignored} ignore entries, KV cache {kv}"
            )
        }
        QuantizationConfig::ModelOpt(m) => {
            let algo = &m.quant_algo;
            let excluded = m.exclude_modules.len();
            let kv = m.kv_cache_quant_algo.as_deref().unwrap_or("none");
            format!("ModelOpt {algo}, {excluded} excluded patterns, KV cache {kv}")
        }
        QuantizationConfig::Gptq(g) => {
            let p = g.params;
            let group = p
                .group_size
                .map_or_else(|| "per-row".into(), |n| n.to_string());
            let format = match g.format {
                qwgpu_checkpoint::quant::GptqFormat::V1 => "gptq",
                qwgpu_checkpoint::quant::GptqFormat::V2 => "gptq_v2",
            };
            let (sym, desc_act, rules) = (p.sym, p.desc_act, g.dynamic.len());
            let kept = g.modules_to_not_convert.len();
            format!(
                "GPTQ int{bits} ({format}), group {group}, sym {sym}, desc_act {desc_act}, \
                 {rules} dynamic rules, {kept} modules not converted",
                bits = p.bits
            )
        }
        QuantizationConfig::Awq(a) => {
            let group = a
                .group_size
                .map_or_else(|| "per-row".into(), |n| n.to_string());
            let kept = a.modules_to_not_convert.len();
            format!(
                "AWQ int{bits} (gemm), group {group}, {kept} modules not converted",
                bits = a.bits
            )
        }
    }
}

fn args(a: Option<&CtQuantArgs>) -> String {
    match a {
        None => "none".into(),
        Some(a) => {
            let (bits, kind) = (a.num_bits, &a.kind);
            let strategy = strategy(a.strategy);
            let block = a
                .block_structure
                .map(|[rows, cols]| format!(" {rows}x{cols}"))
                .unwrap_or_default();
            let dynamic = if a.dynamic { " dynamic" } else { " static" };
            format!("{bits}-bit {kind} {strategy}{block}{dynamic}")
        }
    }
}
