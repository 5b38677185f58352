//! `qwgpu bench`: load time, prefill and decode speed of a model folder on
//! random token ids (no tokenizer needed, so random-weight checkpoints of real
//! geometry work too).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use qwgpu_model::engine::{self, Model, SamplingParams};

use crate::generate::{load_options, Backend};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Hugging Face model folder (config.json and *.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Prompt tokens to prefill.
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// Decode steps (greedy, sampled on the device).
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Prefill step size in tokens.
    #[arg(long, default_value_t = qwgpu_model::engine::DEFAULT_MAX_CHUNK)]
    chunk: usize,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring.
    #[arg(long)]
    adapter: Option<String>,
    /// Also print GPU time per kernel family of one decode step.
    #[arg(long)]
    profile: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let opts = load_options(args.backend, args.adapter.clone(), false, args.chunk);
    let t = Instant::now();
    let model = Model::load(&args.model, &opts)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    let vocab = model.config().vocab_size as u64;
    // Deterministic pseudo-random ids (splitmix-style), the same every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let prompt: Vec<u32> = (0..args.prompt_len.max(1))
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((z ^ (z >> 29)) % vocab) as u32
        })
        .collect();
    let greedy = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };
    // Warm-up (pipeline compilation, first allocations) on its own session.
    let mut warm = model.new_session()?;
    let first = model.sample_next(&mut warm, &prompt[..prompt.len().min(args.chunk)], &greedy)?;
    model.sample_next(&mut warm, &[first], &greedy)?;
    drop(warm);

    let mut s = model.new_session()?;
    let t = Instant::now();
    let mut next = model.sample_next(&mut s, &prompt, &greedy)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..args.decode {
        next = model.sample_next(&mut s, &[next], &greedy)?;
    }
    let decode_s = t.elapsed().as_secs_f64();
    println!(
        "model {} on {}: load {:.2} s; prefill {} tokens {:.3} s = {:.1} tok/s; decode {} tokens (context {}..{}) {:.3} s = {:.1} tok/s",
        args.model.display(),
        model.backend_name(),
        load_s,
        prompt.len(),
        prefill_s,
        prompt.len() as f64 / prefill_s,
        args.decode,
        prompt.len(),
        prompt.len() + args.decode,
        decode_s,
        args.decode as f64 / decode_s.max(1e-9)
    );
    if args.profile {
        if let Some(rows) = model.profile(&mut s, &[next])? {
            let total: f64 = rows.iter().map(|r| r.nanos).sum();
            println!(
                "decode step GPU time {:.3} ms (launches timed one per pass)",
                total / 1e6
            );
            for engine::FamilyTime {
                label,
                nanos: ns,
                launches: n,
            } in rows
            {
                println!(
                    "  {label:<20} {:>9.3} ms {:>5.1}% {n:>4} launches",
                    ns / 1e6,
                    100.0 * ns / total.max(1.0)
                );
            }
        }
    }
    Ok(())
}
