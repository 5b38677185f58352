//! `qwgpu generate`: prefill the prompt, then sample and stream tokens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use qwgpu_checkpoint::{Checkpoint, OpenOptions};
use qwgpu_model::reference::ReferenceModel;
use qwgpu_model::sampling::Sampler;

use crate::{bundled, prompt};

/// Where the forward pass runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// The f32 CPU reference implementation (exact, slow).
    Cpu,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    /// Without it, the bundled tiny random-weight test model runs.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The prompt text.
    #[arg(long, default_value = "The quick brown fox")]
    prompt: String,
    /// Most new tokens to generate.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampler's random numbers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Refuse checkpoints with tensors qwgpu does not know (default: warn and ignore them).
    #[arg(long)]
    strict: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let dir = match &args.model {
        Some(dir) => dir.clone(),
        None => {
            eprintln!(
                "qwgpu: no --model given: running the bundled {} — its weights are random, so the text is gibberish by design",
                bundled::NAME
            );
            bundled::materialize()?
        }
    };
    let Backend::Cpu = args.backend;
    let started = Instant::now();
    let model =
        load_model(&dir, args.strict).with_context(|| format!("loading {}", dir.display()))?;
    let tokenizer = prompt::load_tokenizer(&dir)?;
    eprintln!(
        "qwgpu: loaded {} on the CPU reference backend in {:.2} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );

    let text = if args.chat {
        prompt::apply_chat_template(&dir, &args.prompt)?
    } else {
        args.prompt.clone()
    };
    let encoding = tokenizer
        .encode(text.as_str(), false)
        .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
    let prompt_ids: Vec<u32> = encoding.get_ids().to_vec();
    if prompt_ids.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let vocab = model.config().vocab_size;
    let eos = prompt::eos_token_ids(&dir)?;

    let mut cache = model.new_cache();
    let top_p = (args.top_p < 1.0).then_some(args.top_p);
    let mut sampler = Sampler::new(args.temperature, top_p, args.seed)?;
    let t0 = Instant::now();
    let logits = model.forward(&mut cache, &prompt_ids)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let last = &logits[logits.len() - vocab..];
    let mut next = sampler.sample(last) as u32;

    let mut out = std::io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()?;
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let t1 = Instant::now();
    for step in 0..args.max_tokens {
        if !args.ignore_eos && eos.contains(&next) {
            break;
        }
        generated.push(next);
        let so_far = decode(&tokenizer, &generated)?;
        // Hold back a trailing U+FFFD: the bytes of a multi-byte character may be
        // split across tokens, and the next token completes it.
        let stable = so_far.trim_end_matches('\u{FFFD}');
        if stable.len() > printed && stable.is_char_boundary(printed) {
            write!(out, "{}", &stable[printed..])?;
            out.flush()?;
            printed = stable.len();
        }
        if step + 1 == args.max_tokens {
            break;
        }
        let logits = model.forward(&mut cache, &[next])?;
        next = sampler.sample(&logits) as u32;
    }
    let all = decode(&tokenizer, &generated)?;
    if all.len() > printed && all.is_char_boundary(printed) {
        write!(out, "{}", &all[printed..])?;
    }
    writeln!(out)?;
    let decode_s = t1.elapsed().as_secs_f64();
    eprintln!(
        "qwgpu: prompt {} tokens in {:.3} s ({:.1} tok/s); generated {} tokens in {:.3} s ({:.1} tok/s)",
        prompt_ids.len(),
        prefill_s,
        prompt_ids.len() as f64 / prefill_s.max(1e-9),
        generated.len(),
        decode_s,
        generated.len() as f64 / decode_s.max(1e-9),
    );
    Ok(())
}

/// Opens the checkpoint, packs its weights with a progress bar, builds the model.
fn load_model(dir: &Path, strict: bool) -> Result<ReferenceModel> {
    let ckpt = Checkpoint::open_with(dir, &OpenOptions { strict })?;
    ReferenceModel::check_fits(&ckpt)?;
    let bar = ProgressBar::new(ckpt.config().text.num_hidden_layers as u64);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:30} {pos}/{len} layers {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let packed = qwgpu_loader::load_model_with(&ckpt, Some(&progress))?;
    bar.finish_and_clear();
    Ok(ReferenceModel::from_packed(&packed)?)
}

fn decode(tokenizer: &tokenizers::Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, false)
        .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
}
