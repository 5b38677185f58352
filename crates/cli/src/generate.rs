//! `qwgpu generate`: prefill the prompt, then sample and stream tokens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use qwgpu_model::engine::{self, ContextOptions, LoadOptions, Model, SamplingParams};

use crate::{bundled, prompt};

/// Where the forward pass runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// The best GPU adapter; the CPU reference only when there is none.
    Auto,
    /// A GPU adapter (lavapipe counts, reported as software).
    Gpu,
    /// The f32 CPU reference implementation (exact, slow).
    Cpu,
}

impl From<Backend> for engine::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => engine::Backend::Auto,
            Backend::Gpu => engine::Backend::Gpu,
            Backend::Cpu => engine::Backend::Cpu,
        }
    }
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
    /// Top-k sampling: keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Print GPU time per kernel family for one prefill step and one decode step.
    #[arg(long)]
    profile: bool,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
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
    let started = Instant::now();
    let opts = load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        engine::DEFAULT_MAX_CHUNK,
    );
    // Cheap checks before any weight is read: headers and config, then the tokenizer.
    qwgpu_checkpoint::Checkpoint::open_with(
        &dir,
        &qwgpu_checkpoint::OpenOptions {
            strict: args.strict,
        },
    )
    .with_context(|| format!("loading {}", dir.display()))?;
    let tokenizer = prompt::load_tokenizer(&dir)?;
    let model = load_model(&dir, &opts).with_context(|| format!("loading {}", dir.display()))?;
    eprintln!(
        "qwgpu: loaded {} on {} in {:.2} s",
        dir.display(),
        model.backend_name(),
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
    let eos = prompt::eos_token_ids(&dir)?;
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!(
            "--temperature {} must be a finite number >= 0",
            args.temperature
        );
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!("--top-p {} must be in (0, 1]", args.top_p);
    }
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
    };

    let mut session = model.new_session()?;
    model.set_seed(&mut session, args.seed);
    let t0 = Instant::now();
    let mut next = model.sample_next(&mut session, &prompt_ids, &params)?;
    let prefill_s = t0.elapsed().as_secs_f64();

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
        next = model.sample_next(&mut session, &[next], &params)?;
    }
    let all = decode(&tokenizer, &generated)?;
    if all.len() > printed && all.is_char_boundary(printed) {
        write!(out, "{}", &all[printed..])?;
    }
    writeln!(out)?;
    let decode_s = t1.elapsed().as_secs_f64();
    eprintln!(
        "qwgpu: prefill {} tokens in {:.3} s ({:.1} tok/s); decode {} tokens in {:.3} s ({:.1} tok/s) on {}",
        prompt_ids.len(),
        prefill_s,
        prompt_ids.len() as f64 / prefill_s.max(1e-9),
        generated.len(),
        decode_s,
        generated.len() as f64 / decode_s.max(1e-9),
        model.backend_name(),
    );
    if args.profile {
        profile(&model, &prompt_ids, next)?;
    }
    Ok(())
}

/// Times one prefill step over the prompt and one decode step, by kernel family.
fn profile(model: &Model, prompt_ids: &[u32], next: u32) -> Result<()> {
    let mut session = model.new_session()?;
    let chunk = &prompt_ids[..prompt_ids.len().min(engine::DEFAULT_MAX_CHUNK)];
    for (what, tokens) in [("prefill", chunk), ("decode", &[next][..])] {
        let Some(rows) = model.profile(&mut session, tokens)? else {
            eprintln!("qwgpu: --profile needs the GPU backend");
            return Ok(());
        };
        let total: f64 = rows.iter().map(|r| r.nanos).sum();
        eprintln!(
            "qwgpu: {what} step ({} tokens): {:.3} ms GPU time",
            tokens.len(),
            total / 1e6
        );
        for engine::FamilyTime {
            label,
            nanos: ns,
            launches: n,
        } in rows
        {
            eprintln!(
                "  {label:<20} {:>9.3} ms {:>5.1}% {n:>5} launches",
                ns / 1e6,
                100.0 * ns / total.max(1.0)
            );
        }
    }
    Ok(())
}

/// The engine's load options from the command line's.
pub(crate) fn load_options(
    backend: Backend,
    adapter: Option<String>,
    strict: bool,
    max_chunk: usize,
) -> LoadOptions {
    LoadOptions {
        backend: backend.into(),
        gpu: ContextOptions {
            adapter,
            ..Default::default()
        },
        strict,
        max_chunk,
        ..Default::default()
    }
}

/// Opens the checkpoint (strict if asked), then loads it on the chosen backend
/// with a progress bar in bytes.
fn load_model(dir: &Path, opts: &LoadOptions) -> Result<Model> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let model = Model::load_with_progress(dir, opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    Ok(model)
}

fn decode(tokenizer: &tokenizers::Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, false)
        .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
}
