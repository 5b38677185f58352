//! `qwgpu inspect`: what qwgpu reads from a model folder, before running it —
//! config, quantization, skipped / unexpected tensors, and how every packed
//! weight is stored and scaled.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use qwgpu_checkpoint::quant::CtQuantArgs;
use qwgpu_checkpoint::{Checkpoint, FfnConfig, LayerType, OpenOptions, QuantizationConfig};
use qwgpu_loader::{ActivationQuant, PackedWeight};

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
    let cfg = ckpt.config();
    let t = &cfg.text;
    let full = t
        .layer_types
        .iter()
        .filter(|k| **k == LayerType::FullAttention)
        .count();
    println!("model        {}", args.model.display());
    println!(
        "architecture {} ({})",
        cfg.architecture,
        if cfg.wrapped {
            "release wrapper, text_config"
        } else {
            "text-only"
        }
    );
    println!(
        "geometry     {} layers ({} gated delta-net, {} full attention), hidden {}, vocab {}, {} embeddings",
        t.num_hidden_layers,
        t.num_hidden_layers - full,
        full,
        t.hidden_size,
        t.vocab_size,
        if cfg.tie_word_embeddings { "tied" } else { "untied" }
    );
    match &t.ffn {
        FfnConfig::Dense { intermediate_size } => println!("ffn          dense SwiGLU, {intermediate_size}"),
        FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size,
            shared_expert_intermediate_size,
        } => println!(
            "ffn          MoE, {num_experts} experts (top {num_experts_per_tok}) of {moe_intermediate_size}, shared expert {shared_expert_intermediate_size}"
        ),
    }
    match &cfg.quantization {
        None => println!("quantization none"),
        Some(q) => println!("quantization {}", summarize(q)),
    }
    println!(
        "tensors      {} kept in {} file(s), {} skipped (mtp / vision / inv_freq), {} unexpected",
        ckpt.names().len(),
        ckpt.files().len(),
        ckpt.skipped().len(),
        ckpt.unexpected().len()
    );
    for name in ckpt.unexpected() {
        println!("  unexpected {name}");
    }

    let packed = qwgpu_loader::load_model(&ckpt)?;
    let weights = packed.weights();
    if args.weights {
        for w in &weights {
            println!("  {}", describe(w));
        }
    } else {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for w in &weights {
            *kinds
                .entry(format!("{} scale {}", w.dtype, scheme_kind(w)))
                .or_default() += 1;
        }
        println!("packed       {} weights:", weights.len());
        for (kind, n) in kinds {
            println!("  {n:4} × {kind}");
        }
    }
    Ok(())
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
        ActivationQuant::Dynamic => ", dynamic activations".into(),
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

fn summarize(q: &QuantizationConfig) -> String {
    match q {
        QuantizationConfig::Fp8(f) => format!(
            "Qwen fp8 ({:?}), weight blocks {}, {:?} activations, {} modules not converted",
            f.fmt,
            f.weight_block_size
                .map(|b| format!("{}x{}", b[0], b[1]))
                .unwrap_or_else(|| "none (per-tensor)".into()),
            f.activation_scheme,
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
            "{}-bit {} {:?}{}{}",
            a.num_bits,
            a.kind,
            a.strategy,
            a.block_structure
                .map(|b| format!(" {}x{}", b[0], b[1]))
                .unwrap_or_default(),
            if a.dynamic { " dynamic" } else { " static" }
        ),
    }
}
