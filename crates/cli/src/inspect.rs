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
    writeln!(std::io::stdout(), "model        {}", args.model.display())?;
    writeln!(
        std::io::stdout(),
        "architecture {} ({})",
        cfg.architecture,
        if cfg.wrapped {
            "release wrapper, text_config"
        } else {
            "text-only"
        }
    )?;
    writeln!(std::io::stdout(),
        "geometry     {} layers ({} gated delta-net, {} full attention), hidden {}, vocab {}, {} embeddings",
        t.num_hidden_layers,
        t.num_hidden_layers - full,
        full,
        t.hidden_size,
        t.vocab_size,
        if cfg.tie_word_embeddings { "tied" } else { "untied" }
    )?;
    match &t.ffn {
        FfnConfig::Dense { intermediate_size } => writeln!(std::io::stdout(), "ffn          dense SwiGLU, {intermediate_size}")?,
        FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size,
            shared_expert_intermediate_size,
        } => writeln!(std::io::stdout(),
            "ffn          MoE, {num_experts} experts (top {num_experts_per_tok}) of {moe_intermediate_size}, shared expert {shared_expert_intermediate_size}"
        )?,
    }
    let folder = Folder::read(&args.model);
    writeln!(
        std::io::stdout(),
        "context      {}, rope theta {}, partial rotary {}",
        match folder.context {
            Some(n) => format!("{n} tokens (max_position_embeddings)"),
            None => "unknown (no max_position_embeddings)".into(),
        },
        t.rope.theta,
        t.rope.partial_rotary_factor
    )?;
    writeln!(
        std::io::stdout(),
        "eos ids      {}",
        folder.eos(&cfg.eos_token_ids)
    )?;
    writeln!(std::io::stdout(), "template     {}", folder.chat_template)?;
    match &cfg.quantization {
        None => writeln!(std::io::stdout(), "quantization none")?,
        Some(q) => writeln!(std::io::stdout(), "quantization {}", summarize(q))?,
    }

    let counts = Counts::of(&ckpt);
    let mut params = format!("{} total (text model)", count(counts.total));
    if let FfnConfig::Moe {
        num_experts,
        num_experts_per_tok,
        ..
    } = t.ffn
    {
        let active = counts.total - counts.experts
            + counts.experts * num_experts_per_tok as u64 / num_experts.max(1) as u64;
        params.push_str(&format!(
            ", {} active per token ({num_experts_per_tok} of {num_experts} experts)",
            count(active)
        ));
    }
    if counts.skipped > 0 {
        params.push_str(&format!(
            ", {} more skipped (mtp / vision)",
            count(counts.skipped)
        ));
    }
    writeln!(std::io::stdout(), "parameters   {params}")?;
    let mut disk: Vec<(&String, &u64)> = counts.disk.iter().collect();
    disk.sort_by(|a, b| b.1.cmp(a.1));
    let by_dtype: Vec<String> = disk
        .iter()
        .map(|(d, b)| format!("{d} {}", bytes(**b)))
        .collect();
    writeln!(
        std::io::stdout(),
        "on disk      {} in tensors: {}",
        bytes(counts.disk.values().sum()),
        by_dtype.join(", ")
    )?;
    let mem = gpu_memory(&packed);
    writeln!(std::io::stdout(),
        "gpu memory   ~{} weights + {} KV cache per 1k tokens (f32, {full} attention layer(s)) + {} recurrent state per session",
        bytes(mem.weights),
        bytes(mem.kv_per_1k),
        bytes(mem.state)
    )?;
    writeln!(
        std::io::stdout(),
        "tensors      {} kept in {} file(s), {} skipped (mtp / vision / inv_freq), {} unexpected",
        ckpt.names().len(),
        ckpt.files().len(),
        ckpt.skipped().len(),
        ckpt.unexpected().len()
    )?;
    for name in ckpt.unexpected() {
        writeln!(std::io::stdout(), "  unexpected {name}")?;
    }

    let weights = packed.weights();
    if args.weights {
        for w in &weights {
            writeln!(std::io::stdout(), "  {}", describe(w))?;
        }
    } else {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for w in &weights {
            *kinds
                .entry(format!("{} scale {}", w.dtype, scheme_kind(w)))
                .or_default() += 1;
        }
        writeln!(std::io::stdout(), "packed       {} weights:", weights.len())?;
        for (kind, n) in kinds {
            writeln!(std::io::stdout(), "  {n:4} × {kind}")?;
        }
    }
    Ok(())
}

/// What the folder's JSON files add: context length, EOS ids, chat template.
/// Unreadable optional files are reported, not fatal (`inspect` is diagnostic).
struct Folder {
    context: Option<u64>,
    /// `eos_token_id` of generation_config.json, as written.
    generation_eos: Option<String>,
    chat_template: String,
}

impl Folder {
    fn read(dir: &Path) -> Self {
        let json = |name: &str| -> Option<Value> {
            let path = dir.join(name);
            let text = read_text_file(&path, MAX_CONFIG_BYTES).ok()?;
            serde_json::from_str(&text).ok()
        };
        let config = json("config.json");
        let context = config.as_ref().and_then(|c| {
            c.get("max_position_embeddings")
                .or_else(|| c.get("text_config")?.get("max_position_embeddings"))
                .and_then(Value::as_u64)
        });
        let generation_eos = json("generation_config.json")
            .and_then(|g| g.get("eos_token_id").cloned())
            .filter(|v| !v.is_null())
            .map(|v| v.to_string());
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if qwgpu_checkpoint::files::regular_file_len(&jinja).is_ok() {
            "chat template present (chat_template.jinja)".to_string()
        } else if json("tokenizer_config.json")
            .is_some_and(|t| t.get("chat_template").is_some_and(|v| !v.is_null()))
        {
            "chat template present (tokenizer_config.json)".to_string()
        } else {
            "no chat template (neither chat_template.jinja nor tokenizer_config.json has one)"
                .to_string()
        };
        Folder {
            context,
            generation_eos,
            chat_template,
        }
    }

    fn eos(&self, config_ids: &[u32]) -> String {
        let config = if config_ids.is_empty() {
            "none in config.json".to_string()
        } else {
            format!("{config_ids:?} (config.json)")
        };
        match &self.generation_eos {
            Some(g) => format!("{config}, {g} (generation_config.json)"),
            None => config,
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
        .map(|w| (w.rows * w.cols * w.dtype.size()) as u64 + 4 * scale_count(&w.scale) as u64)
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
    }
}

/// `852.1 M`, `35.95 B`.
fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} K", n / 1e3)
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
        format!("{} shards", shards.len())
    } else {
        shards.join("|")
    };
    let act = match &w.activation {
        ActivationQuant::None => String::new(),
        ActivationQuant::Dynamic => ", dynamic activation scales".into(),
        ActivationQuant::Static { max, .. } => format!(", static input scale (max {max})"),
    };
    format!(
        "{} {} [{} x {}] {} scale {}{}",
        w.name,
        w.dtype,
        w.rows,
        w.cols,
        shards,
        w.scale.describe(),
        act
    )
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
        QuantizationConfig::Fp8(f) => format!(
            "FP8 {} (Qwen `fp8`), weight blocks {}, {}, {} modules not converted",
            fp8_format(f.fmt),
            f.weight_block_size
                .map(|b| format!("{}x{}", b[0], b[1]))
                .unwrap_or_else(|| "none (per-tensor)".into()),
            activations(f.activation_scheme),
            f.modules_to_not_convert.len()
        ),
        QuantizationConfig::CompressedTensors(c) => {
            let groups: Vec<String> = c
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "{}: weights {}, activations {}",
                        g.name,
                        args(g.weights.as_ref()),
                        args(g.input_activations.as_ref())
                    )
                })
                .collect();
            format!(
                "compressed-tensors {} [{}], {} ignore entries, KV cache {}",
                c.format,
                groups.join("; "),
                c.ignore.len(),
                args(c.kv_cache_scheme.as_ref())
            )
        }
        QuantizationConfig::ModelOpt(m) => format!(
            "ModelOpt {}, {} excluded patterns, KV cache {}",
            m.quant_algo,
            m.exclude_modules.len(),
            m.kv_cache_quant_algo.as_deref().unwrap_or("none")
        ),
    }
}

fn args(a: Option<&CtQuantArgs>) -> String {
    match a {
        None => "none".into(),
        Some(a) => format!(
            "{}-bit {} {}{}{}",
            a.num_bits,
            a.kind,
            strategy(a.strategy),
            a.block_structure
                .map(|b| format!(" {}x{}", b[0], b[1]))
                .unwrap_or_default(),
            if a.dynamic { " dynamic" } else { " static" }
        ),
    }
}
