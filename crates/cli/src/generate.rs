//! `qwgpu generate`: prefill the prompt, then sample and stream tokens.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use qwgpu_model::engine::{self, Model, SamplingParams};
use tokenizers::Tokenizer;

use crate::chat_template::{ChatTemplate, Message, RenderOptions};
use crate::detokenize::Detokenizer;
use crate::load::load_and_report;
pub(crate) use crate::load::{load_options, Backend, PrecisionFlag};
use crate::output::Output;
use crate::sampling::{check_max_tokens, SamplingFlags};
use crate::{bundled, prompt};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    /// Without it, the bundled tiny random-weight test model runs.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The prompt text (with --chat: the user's message).
    #[arg(long, default_value = "The quick brown fox")]
    prompt: String,
    /// Most new tokens to generate (at least 1).
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingFlags,
    /// Wrap the prompt in the model's chat template (as a user message); only
    /// the answer is printed.
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message before the user's.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// With --chat: the template's `enable_thinking` (Qwen3.5: `false` skips
    /// the reasoning block); unset leaves the template's default.
    #[arg(long, requires = "chat")]
    enable_thinking: Option<bool>,
    /// Plain completion: print only the generated text, not the prompt before it.
    #[arg(long)]
    no_echo: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Allow prompt + --max-tokens beyond the model's context length
    /// (`max_position_embeddings`) with a warning instead of an error.
    #[arg(long)]
    allow_context_overflow: bool,
    /// Refuse checkpoints with tensors qwgpu does not know (default: warn and ignore them).
    #[arg(long)]
    strict: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Print GPU time per kernel family for one prefill step and one decode step.
    #[arg(long)]
    profile: bool,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    precision: PrecisionFlag,
}

/// The sampling flags, each out-of-range value an error naming the flag.
fn sampling_params(args: &GenerateArgs) -> Result<SamplingParams> {
    check_max_tokens(args.max_tokens)?;
    args.sampling.params()
}

/// What `run` checked before loading: the token ids to feed and how to stop.
struct Prepared {
    tokenizer: Tokenizer,
    text: String,
    prompt_ids: Vec<u32>,
    eos: Vec<u32>,
}

/// Every check that needs no weights, so a bad folder or flag fails in
/// milliseconds, not after minutes of loading: the config, the tokenizer, the
/// chat template (rendered once), `generation_config.json`, the token ids and
/// the context length.
fn prepare(args: &GenerateArgs, dir: &Path) -> Result<Prepared> {
    let config = qwgpu_checkpoint::ModelConfig::from_file(&dir.join("config.json"))?;
    let vocab = config.text.vocab_size;
    let context = prompt::context_length(dir)?;
    let tokenizer = prompt::load_tokenizer(dir)?;
    let tokenizer_vocab = tokenizer.get_vocab_size(true);
    // Released checkpoints pad the embedding to a multiple of 256 rows (Qwen3.5:
    // 248,320 rows for ~248,077 tokens): only a gap beyond that padding hints at a
    // tokenizer from another model; the padding itself is logged quietly.
    if vocab > tokenizer_vocab.div_ceil(256) * 256 {
        tracing::warn!(
            "the model's vocabulary ({vocab} ids) is larger than the tokenizer's ({tokenizer_vocab}): ids {tokenizer_vocab}.. print nothing if generated"
        );
    } else if vocab > tokenizer_vocab {
        tracing::debug!("embedding padded: {vocab} rows for {tokenizer_vocab} tokenizer ids");
    }
    let text = if args.chat {
        let template = ChatTemplate::from_dir(dir)?;
        tracing::debug!("chat template from {}", template.origin());
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", &args.prompt));
        template.render(
            &messages,
            &RenderOptions {
                add_generation_prompt: true,
                enable_thinking: args.enable_thinking,
            },
        )?
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
    if let Some(&bad) = prompt_ids.iter().find(|&&id| id as usize >= vocab) {
        bail!(
            "the tokenizer gives the prompt token id {bad}, outside the model's vocabulary of {vocab} (tokenizer.json does not belong to this model?)"
        );
    }
    let eos = prompt::eos_token_ids(dir, &config.eos_token_ids, vocab)?;
    if let Some(limit) = context {
        let need = prompt_ids.len().saturating_add(args.max_tokens);
        if need > limit {
            let (prompt_len, max_tokens) = (prompt_ids.len(), args.max_tokens);
            let what = format!(
                "the prompt ({prompt_len} tokens) + --max-tokens {max_tokens} = {need} tokens exceeds the model's context length of {limit} (max_position_embeddings in config.json)"
            );
            if !args.allow_context_overflow {
                bail!("{what}; lower --max-tokens or shorten the prompt, or pass --allow-context-overflow to run past it anyway");
            }
            tracing::warn!("{what}: past it the output is unreliable");
        }
    }
    Ok(Prepared {
        tokenizer,
        text,
        prompt_ids,
        eos,
    })
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let params = sampling_params(args)?;
    let dir = bundled::model_or_bundled(args.model.as_deref())?;
    let started = Instant::now();
    let Prepared {
        tokenizer,
        text,
        prompt_ids,
        eos,
    } = prepare(args, &dir)?;
    let opts = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        engine::ONE_SESSION_MAX_CHUNK,
    ));
    let model = load_and_report(&dir, &opts, started)?;

    let mut session = model.new_session()?;
    model.set_seed(&mut session, args.sampling.seed);
    let t0 = Instant::now();
    let mut next = model
        .sample_next(&mut session, &prompt_ids, &params)
        .with_context(|| {
            let n = prompt_ids.len();
            format!("generation step 1 (prefill of {n} tokens)")
        })?;
    let ttft = t0.elapsed().as_secs_f64();

    let mut out = Output::stdout();
    // The prompt is echoed in plain completion only (once prefill worked): a
    // chat answer is the answer, not the template's markup around the question.
    if !args.chat && !args.no_echo && !out.write(&text)? {
        return Ok(());
    }

    let mut detok = Detokenizer::new(&tokenizer, &prompt_ids);
    let mut generated = 0usize;
    let mut decode_steps = 0usize;
    let mut decode_s = 0.0f64;
    loop {
        if !args.ignore_eos && eos.contains(&next) {
            break;
        }
        generated += 1;
        let piece = detok.push(next)?;
        if !out.write(&piece)? || generated == args.max_tokens {
            break;
        }
        let t = Instant::now();
        next = model
            .sample_next(&mut session, &[next], &params)
            .with_context(|| {
                let step = generated + 1;
                format!("generation step {step} (decode)")
            })?;
        decode_s += t.elapsed().as_secs_f64();
        decode_steps += 1;
    }
    let rest = detok.finish()?;
    if !out.write(&rest)? || !out.write("\n")? {
        // The reader is gone (`| head`): nothing more to say.
        return Ok(());
    }
    let stats = Stats {
        prompt_len: prompt_ids.len(),
        ttft_s: ttft,
        generated,
        decode_steps,
        decode_s,
    };
    eprintln!("{}", stats.line(&model.backend_name()));
    if args.profile {
        profile(&model, &prompt_ids, next)?;
    }
    Ok(())
}

/// `""` for one, `"s"` otherwise.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The final numbers: time to first token (prefill + first sample), prefill
/// speed, and decode speed over the decode steps only (none when the first
/// token was the last).
struct Stats {
    prompt_len: usize,
    ttft_s: f64,
    generated: usize,
    decode_steps: usize,
    decode_s: f64,
}

impl Stats {
    /// The run's last line on stderr: `qwgpu: <numbers> on <backend>`.
    fn line(&self, backend: &str) -> String {
        let Stats {
            prompt_len,
            ttft_s,
            generated,
            decode_steps,
            decode_s,
        } = *self;
        let generated_s = plural(generated);
        let prompt_s = plural(prompt_len);
        let prefill_tok_s = prompt_len as f64 / ttft_s.max(1e-9);
        let prefill = format!(
            "{generated} token{generated_s} generated; time to first token {ttft_s:.3} s (prefill {prompt_len} token{prompt_s} at {prefill_tok_s:.1} tok/s)"
        );
        let decode = if decode_steps == 0 {
            "no decode steps (only the first token, which prefill made)".to_string()
        } else {
            let steps_s = plural(decode_steps);
            let decode_tok_s = decode_steps as f64 / decode_s.max(1e-9);
            format!(
                "decode {decode_steps} step{steps_s} in {decode_s:.3} s ({decode_tok_s:.1} tok/s)"
            )
        };
        format!("qwgpu: {prefill}; {decode} on {backend}")
    }
}

/// `qwgpu: decode step (1 tokens): 0.123 ms GPU time`.
fn profile_header(what: &str, tokens: usize, total_ns: f64) -> String {
    let ms = total_ns / 1e6;
    format!("qwgpu: {what} step ({tokens} tokens): {ms:.3} ms GPU time")
}

/// One kernel family's row of `--profile`.
fn profile_row(label: &str, ns: f64, total_ns: f64, launches: usize) -> String {
    let ms = ns / 1e6;
    let percent = 100.0 * ns / total_ns.max(1.0);
    format!("  {label:<20} {ms:>9.3} ms {percent:>5.1}% {launches:>5} launches")
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
        eprintln!("{}", profile_header(what, tokens.len(), total));
        for engine::FamilyTime {
            label,
            nanos: ns,
            launches: n,
        } in rows
        {
            eprintln!("{}", profile_row(&label, ns, total, n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_names_every_number_in_its_place() {
        // 6 prompt tokens in 0.0018 s (3333.3 tok/s), 12 generated, 11 decode
        // steps in 0.5 s (22 tok/s): the garbled line, written out.
        let s = Stats {
            prompt_len: 6,
            ttft_s: 0.0018,
            generated: 12,
            decode_steps: 11,
            decode_s: 0.5,
        };
        assert_eq!(
            s.line("cpu reference"),
            "qwgpu: 12 tokens generated; time to first token 0.002 s (prefill 6 tokens at 3333.3 tok/s); decode 11 steps in 0.500 s (22.0 tok/s) on cpu reference"
        );
    }

    #[test]
    fn the_last_line_is_singular_for_one() {
        let s = Stats {
            prompt_len: 1,
            ttft_s: 0.25,
            generated: 2,
            decode_steps: 1,
            decode_s: 0.125,
        };
        assert_eq!(
            s.line("gpu: x"),
            "qwgpu: 2 tokens generated; time to first token 0.250 s (prefill 1 token at 4.0 tok/s); decode 1 step in 0.125 s (8.0 tok/s) on gpu: x"
        );
        let first_only = Stats {
            prompt_len: 3,
            ttft_s: 1.5,
            generated: 1,
            decode_steps: 0,
            decode_s: 0.0,
        };
        assert_eq!(
            first_only.line("cpu reference"),
            "qwgpu: 1 token generated; time to first token 1.500 s (prefill 3 tokens at 2.0 tok/s); no decode steps (only the first token, which prefill made) on cpu reference"
        );
    }

    #[test]
    fn profile_lines() {
        assert_eq!(
            profile_header("decode", 1, 2_500_000.0),
            "qwgpu: decode step (1 tokens): 2.500 ms GPU time"
        );
        assert_eq!(
            profile_row("matmul", 1_250_000.0, 2_500_000.0, 7),
            "  matmul                   1.250 ms  50.0%     7 launches"
        );
    }

    #[test]
    fn the_bundled_notice() {
        assert_eq!(
            bundled::notice(),
            "qwgpu: no --model given: running the bundled dense-bf16-text (tiny random-weight Qwen3.5 test model) — its weights are random, so the text is gibberish by design"
        );
    }
}
