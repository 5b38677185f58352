//! `qwgpu bench`: load time, peak host memory, prefill and decode speed of a
//! model folder on random token ids (no tokenizer needed, so random-weight
//! checkpoints of real geometry work too), time to first token, batched
//! decode over many sessions, and the device copy bandwidth. `--json` prints
//! one JSON object for `cargo xtask bench` to collect.

mod copy;
mod lines;
mod memory;
mod multi;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use qwgpu_model::engine::{self, Model, SamplingParams};
use serde_json::{json, Value};

use crate::generate::{load_options, Backend, PrecisionFlag};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Hugging Face model folder (config.json and *.safetensors).
    #[arg(long, required_unless_present = "copy_bandwidth")]
    model: Option<PathBuf>,
    /// Prompt tokens to prefill (before the decode steps, when neither
    /// `--prefill` nor `--decode-at` is given).
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// Decode steps (greedy, sampled on the device).
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Prefill lengths to time, each in a fresh session (e.g. `512,4096`).
    #[arg(long, value_delimiter = ',')]
    prefill: Vec<usize>,
    /// Context lengths to time decode at: each prefills that many tokens in a
    /// fresh session (timed as a prefill too), then runs `--decode` steps.
    #[arg(long, value_delimiter = ',')]
    decode_at: Vec<usize>,
    /// Prefill step size in tokens (default: the engine's one-session step,
    /// `ONE_SESSION_MAX_CHUNK`, or its many-session one, `DEFAULT_MAX_CHUNK`,
    /// with `--sessions` or `--batch`, whose sessions each hold a step's
    /// activations).
    #[arg(long)]
    chunk: Option<usize>,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring.
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    precision: PrecisionFlag,
    /// Also print GPU time per kernel family of one decode step and of one
    /// prefill step of `--chunk` tokens (a fresh session, random ids).
    #[arg(long)]
    profile: bool,
    /// Print one JSON object (for `cargo xtask bench`) instead of text.
    #[arg(long)]
    json: bool,
    /// Measure device copy bandwidth with qwgpu's copy kernel (no model needed).
    #[arg(long)]
    copy_bandwidth: bool,
    /// Buffer size of the copy-bandwidth measurement, MiB.
    #[arg(long, default_value_t = 1024)]
    copy_mib: u64,
    /// Batched decode throughput: for each N, N sessions prefill
    /// `--batch-prompt` tokens each, then run `--decode` steps together
    /// (`decode_batch`, as `qwgpu serve` does); total tokens/s (e.g. `1,8,32`).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Prompt tokens of each session in `--batch` runs.
    #[arg(long, default_value_t = 128)]
    batch_prompt: usize,
    /// Time to first token for each prompt length (e.g. `4096,32768`): a fresh
    /// session, the prompt's prefill and the first sampled token, wall clock.
    #[arg(long, value_delimiter = ',')]
    ttft: Vec<usize>,
    /// Batched decode at each session count (e.g. `1,4,16,32`): N sessions each
    /// prefill `--session-prompt` random tokens, then `--session-steps` steps
    /// of `decode_batch` over all N; total tok/s = N × steps ÷ time, the
    /// figure llama-batched-bench calls S_TG.
    #[arg(long, value_delimiter = ',')]
    sessions: Vec<usize>,
    /// Prompt tokens of each session in `--sessions` runs.
    #[arg(long, default_value_t = 512)]
    session_prompt: usize,
    /// Timed `decode_batch` steps of `--sessions` runs.
    #[arg(long, default_value_t = 128)]
    session_steps: usize,
    /// Let prefill use the f16 cooperative-matrix GEMM where the adapter has it
    /// (faster; logits move by up to ~1% of their scale).
    #[arg(long)]
    f16_matmul: bool,
}

/// One timed run of `tokens` tokens.
struct Timed {
    tokens: usize,
    context: usize,
    seconds: f64,
}

impl Timed {
    fn tok_s(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }

    fn json(&self) -> Value {
        json!({"tokens": self.tokens, "context": self.context, "seconds": self.seconds, "tok_s": self.tok_s()})
    }
}

impl BenchArgs {
    /// Tokens per prefill step: `--chunk`, else the engine's step for one
    /// session, or for many with `--sessions` / `--batch`.
    fn chunk(&self) -> usize {
        self.chunk
            .unwrap_or(if self.sessions.is_empty() && self.batch.is_empty() {
                qwgpu_model::engine::ONE_SESSION_MAX_CHUNK
            } else {
                qwgpu_model::engine::DEFAULT_MAX_CHUNK
            })
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let mut out = serde_json::Map::new();
    if args.copy_bandwidth {
        let opts = load_options(args.backend, args.adapter.clone(), false, args.chunk());
        let bw = copy::measure(&opts.gpu, args.copy_mib << 20, 20)?;
        if !args.json {
            writeln!(
                std::io::stdout(),
                "{}",
                lines::copy(&bw.adapter, bw.bytes_per_s, bw.buffer_bytes)
            )?;
        }
        out.insert(
            "copy".into(),
            json!({"adapter": bw.adapter, "buffer_bytes": bw.buffer_bytes, "copy_bw_Bps": bw.bytes_per_s}),
        );
    }
    if let Some(dir) = &args.model {
        out.insert("model".into(), bench_model(args, dir)?);
    }
    if args.json {
        writeln!(std::io::stdout(), "{}", Value::Object(out))?;
    }
    Ok(())
}

/// Deterministic pseudo-random ids (splitmix-style), the same every run.
fn random_ids(n: usize, vocab: u64) -> Vec<u32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            ((z ^ (z >> 29)) % vocab) as u32
        })
        .collect()
}

/// Bytes of the folder's safetensors files (what loading reads).
fn checkpoint_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn bench_model(args: &BenchArgs, dir: &Path) -> Result<Value> {
    let mut opts = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        false,
        args.chunk(),
    ));
    opts.gpu.f16_matmul = args.f16_matmul;
    let sampler = memory::PeakSampler::start();
    let t = Instant::now();
    let model = Model::load(dir, &opts).with_context(|| format!("loading {}", dir.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    let peak_rss_anon = sampler.finish();
    let vm_hwm = memory::current("VmHWM").unwrap_or(0);
    let ckpt_bytes = checkpoint_bytes(dir);
    let vocab = model.config().vocab_size as u64;
    let greedy = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    };
    // The default decode run only when nothing else was asked for.
    let asked = !args.prefill.is_empty()
        || !args.decode_at.is_empty()
        || !args.ttft.is_empty()
        || !args.sessions.is_empty();
    let (prefills, decode_at) = if !asked {
        (vec![], vec![args.prompt_len.max(1)])
    } else {
        (args.prefill.clone(), args.decode_at.clone())
    };
    if prefills
        .iter()
        .chain(&decode_at)
        .chain(&args.ttft)
        .any(|&n| n == 0)
    {
        bail!("prefill, decode context and --ttft lengths must be at least 1");
    }
    let mut lengths: Vec<usize> = prefills.iter().chain(&decode_at).copied().collect();
    lengths.sort_unstable();
    lengths.dedup();
    // Long enough for every length and for one full warm-up chunk.
    let longest = lengths
        .iter()
        .chain(&args.ttft)
        .copied()
        .chain([args.chunk().max(1)])
        .max()
        .unwrap_or(1);
    let prompt = random_ids(longest, vocab);

    // Warm-up (pipeline compilation, first allocations, clocks) on its own
    // session: one prefill step of each shape in use, then decode steps for a
    // quarter second (at most 64). (The 0.8B decode at ctx 512 on the H100 is
    // bimodal across processes of one build, ~528 or ~595 tok/s, with this
    // warm-up or a one-step one alike: not a warm-up effect.)
    let mut warm = model.new_session()?;
    let mut tok = model.sample_next(
        &mut warm,
        &prompt[..prompt.len().min(args.chunk())],
        &greedy,
    )?;
    let t = Instant::now();
    for _ in 0..64 {
        tok = model.sample_next(&mut warm, &[tok], &greedy)?;
        if t.elapsed().as_secs_f64() > 0.25 {
            break;
        }
    }
    drop(warm);

    let mut prefill_rows = Vec::new();
    let mut decode_rows = Vec::new();
    let mut last = None;
    for &n in &lengths {
        let mut s = model.new_session()?;
        let t = Instant::now();
        let mut next = model.sample_next(&mut s, &prompt[..n], &greedy)?;
        let p = Timed {
            tokens: n,
            context: 0,
            seconds: t.elapsed().as_secs_f64(),
        };
        if !args.json {
            writeln!(std::io::stdout(), "{}", lines::prefill(&p))?;
        }
        prefill_rows.push(p);
        if decode_at.contains(&n) && args.decode > 0 {
            let t = Instant::now();
            for _ in 0..args.decode {
                next = model.sample_next(&mut s, &[next], &greedy)?;
            }
            let d = Timed {
                tokens: args.decode,
                context: n,
                seconds: t.elapsed().as_secs_f64(),
            };
            if !args.json {
                writeln!(std::io::stdout(), "{}", lines::decode(&d))?;
            }
            decode_rows.push(d);
        }
        last = Some((s, next));
    }
    if !args.json {
        let load = lines::Load {
            dir,
            backend: &model.backend_name(),
            load_s,
            ckpt_bytes,
            peak_rss_anon,
            vm_hwm,
            times: model.load_times(),
        };
        writeln!(std::io::stdout(), "{}", load.line())?;
    }
    let batch_rows = bench_batches(&model, args, vocab)?;
    let ttft_rows = multi::ttft_rows(&model, &prompt, &args.ttft, args.json)?;
    let session_rows = multi::session_rows(
        &model,
        &multi::SessionsPlan {
            counts: &args.sessions,
            prompt: args.session_prompt,
            steps: args.session_steps,
        },
        vocab,
        args.json,
    )?;
    let mut profile = Value::Null;
    let mut prefill_profile = Value::Null;
    if args.profile {
        if let Some((mut s, next)) = last {
            if let Some(rows) = model.profile(&mut s, &[next])? {
                profile = print_profile("decode step", &rows, args.json)?;
            }
        }
        // One prefill step of `--chunk` tokens from an empty context.
        let mut s = model.new_session()?;
        let ids = random_ids(args.chunk().max(1), vocab);
        match model.profile(&mut s, &ids) {
            Ok(Some(rows)) => {
                let n = ids.len();
                let what = format!("prefill step of {n} tokens");
                prefill_profile = print_profile(&what, &rows, args.json)?;
            }
            Ok(None) => {}
            // Not fatal: the figures measured so far still get printed.
            Err(e) => prefill_profile = json!({"error": format!("{e:#}")}),
        }
    }
    Ok(json!({
        "dir": dir.display().to_string(),
        "backend": model.backend_name(),
        "load_s": load_s,
        "device_open_s": model.load_times().map(|t| t.device_s),
        "weights_s": model.load_times().map(|t| t.weights_s),
        "host_copy_s": model.load_times().map(|t| t.host_copy_s),
        "gpu_wait_s": model.load_times().map(|t| t.gpu_wait_s),
        "slots_s": model.load_times().map(|t| t.slots_s),
        "buffers_s": model.load_times().map(|t| t.buffers_s),
        "sources_s": model.load_times().map(|t| t.sources_s),
        "checkpoint_bytes": ckpt_bytes,
        "peak_rss_anon_bytes": peak_rss_anon,
        "vm_hwm_bytes": vm_hwm,
        "chunk": args.chunk(),
        "prefill": prefill_rows.iter().map(Timed::json).collect::<Vec<_>>(),
        "decode": decode_rows.iter().map(Timed::json).collect::<Vec<_>>(),
        "batched_decode": batch_rows,
        "ttft": ttft_rows,
        "sessions": session_rows,
        "f16_matmul": args.f16_matmul,
        "precision": qwgpu_model::precision_name(opts.gpu.precision),
        "decode_profile": profile,
        "prefill_profile": prefill_profile,
        "prefill_profile_tokens": if prefill_profile.is_array() { json!(args.chunk().max(1)) } else { Value::Null },
    }))
}

/// `--batch`: total decode tokens/s of N sessions stepping together.
fn bench_batches(model: &Model, args: &BenchArgs, vocab: u64) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in &args.batch {
        if n == 0 || args.decode == 0 {
            bail!("--batch sizes and --decode must be at least 1");
        }
        let seconds = multi::batched_seconds(model, n, args.batch_prompt, args.decode, vocab)?;
        let tokens = n * args.decode;
        let tok_s = tokens as f64 / seconds.max(1e-9);
        if !args.json {
            writeln!(
                std::io::stdout(),
                "{}",
                lines::batched(n, args.decode, seconds)
            )?;
        }
        rows.push(json!({"sessions": n, "steps": args.decode, "seconds": seconds, "tok_s": tok_s}));
    }
    Ok(rows)
}

/// GPU time per kernel family of one step (`what`: "decode step", ...).
fn print_profile(what: &str, rows: &[engine::FamilyTime], quiet: bool) -> Result<Value> {
    let total: f64 = rows.iter().map(|r| r.nanos).sum();
    if !quiet {
        writeln!(std::io::stdout(), "{}", lines::profile_header(what, total))?;
    }
    let mut out = Vec::new();
    for engine::FamilyTime {
        label,
        nanos: ns,
        launches: n,
    } in rows
    {
        if !quiet {
            writeln!(
                std::io::stdout(),
                "{}",
                lines::profile_row(label, *ns, total, *n)
            )?;
        }
        out.push(json!({"family": label, "ms": ns / 1e6, "launches": n}));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parsed(args: &[&str]) -> BenchArgs {
        use clap::Parser;
        let argv = ["bench", "--model", "m"].iter().chain(args);
        Cli::try_parse_from(argv).expect("bench arguments").bench
    }

    #[test]
    fn prefill_step_is_the_one_session_one_unless_sessions_share_the_device() {
        use qwgpu_model::engine::{DEFAULT_MAX_CHUNK, ONE_SESSION_MAX_CHUNK};
        assert_eq!(parsed(&[]).chunk(), ONE_SESSION_MAX_CHUNK);
        assert_eq!(parsed(&["--sessions", "1,16"]).chunk(), DEFAULT_MAX_CHUNK);
        assert_eq!(parsed(&["--batch", "8"]).chunk(), DEFAULT_MAX_CHUNK);
        assert_eq!(parsed(&["--chunk", "300"]).chunk(), 300);
        assert_eq!(parsed(&["--chunk", "300", "--sessions", "4"]).chunk(), 300);
        assert_ne!(ONE_SESSION_MAX_CHUNK, DEFAULT_MAX_CHUNK);
    }

    #[test]
    fn random_ids_are_deterministic_and_in_vocab() {
        let a = random_ids(1000, 17);
        assert_eq!(a, random_ids(1000, 17));
        assert!(a.iter().all(|&t| t < 17));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 10);
    }

    #[test]
    fn timed_reports_tokens_per_second() {
        let t = Timed {
            tokens: 128,
            context: 512,
            seconds: 0.5,
        };
        assert_eq!(t.tok_s(), 256.0);
        assert_eq!(t.json()["context"], 512);
    }
}
