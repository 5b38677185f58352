//! The multi-token figures of `qwgpu bench`: time to first token of long
//! prompts (`--ttft`) and batched decode over many sessions (`--sessions`,
//! the same work as llama.cpp's `llama-batched-bench -npp P -ntg S -npl N`).
//! A failing row (say, one session count that runs out of memory) is
//! recorded with its error, so the rows measured before and after it still
//! reach `cargo xtask bench`.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{bail, Result};
use qwgpu_model::engine::{Model, SamplingParams, Session};
use serde_json::{json, Value};

use super::{lines, random_ids};

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    }
}

/// Wall-clock seconds from a fresh session to the first sampled token of
/// `prompt` (what a user waits for; the session's creation counts too).
fn ttft_seconds(model: &Model, prompt: &[u32]) -> Result<f64> {
    let t = Instant::now();
    let mut s = model.new_session()?;
    model.sample_next(&mut s, prompt, &greedy())?;
    Ok(t.elapsed().as_secs_f64())
}

/// `--ttft`: one row per length, each the prefix of `prompt` of that length.
pub(super) fn ttft_rows(
    model: &Model,
    prompt: &[u32],
    lengths: &[usize],
    quiet: bool,
) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &n in lengths {
        let res = match prompt.get(..n) {
            Some(p) => ttft_seconds(model, p),
            None => Err(anyhow::anyhow!(
                "{n} tokens asked, {len} generated",
                len = prompt.len()
            )),
        };
        let (line, row) = match res {
            Ok(seconds) => (
                lines::ttft(n, seconds),
                json!({"tokens": n, "seconds": seconds}),
            ),
            Err(e) => {
                let error = format!("{e:#}");
                (
                    lines::ttft_error(n, &error),
                    json!({"tokens": n, "error": error}),
                )
            }
        };
        if !quiet {
            writeln!(std::io::stdout(), "{line}")?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Seconds of `steps` timed `decode_batch` steps over `n` sessions, each
/// first prefilled with its own `prompt` random tokens; one untimed step
/// before them records the batch's launches.
pub(super) fn batched_seconds(
    model: &Model,
    n: usize,
    prompt: usize,
    steps: usize,
    vocab: u64,
) -> Result<f64> {
    let greedy = greedy();
    let mut sessions: Vec<Session> = Vec::with_capacity(n);
    let mut next = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = model.new_session()?;
        // Different prompts per session (different positions' ids).
        let ids = random_ids(prompt.max(1) + i, vocab);
        next.push(model.sample_next(&mut s, &ids[i..], &greedy)?);
        sessions.push(s);
    }
    let params = vec![greedy; n];
    let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
    next = model.decode_batch(&mut refs, &next, &params)?;
    let t = Instant::now();
    for _ in 0..steps {
        next = model.decode_batch(&mut refs, &next, &params)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// What `--sessions` runs.
pub(super) struct SessionsPlan<'a> {
    pub counts: &'a [usize],
    pub prompt: usize,
    pub steps: usize,
}

/// `--sessions`: one row per session count.
pub(super) fn session_rows(
    model: &Model,
    plan: &SessionsPlan,
    vocab: u64,
    quiet: bool,
) -> Result<Vec<Value>> {
    if plan.counts.is_empty() {
        return Ok(Vec::new());
    }
    if plan.counts.contains(&0) || plan.steps == 0 || plan.prompt == 0 {
        bail!("--sessions counts, --session-prompt and --session-steps must be at least 1");
    }
    let (prompt, steps) = (plan.prompt, plan.steps);
    let mut rows = Vec::new();
    for &n in plan.counts {
        let (line, row) = match batched_seconds(model, n, prompt, steps, vocab) {
            Ok(seconds) => {
                let tok_s = (n * steps) as f64 / seconds.max(1e-9);
                (
                    lines::sessions(n, prompt, steps, seconds),
                    json!({"sessions": n, "prompt": prompt, "steps": steps, "seconds": seconds, "tok_s": tok_s}),
                )
            }
            Err(e) => {
                let error = format!("{e:#}");
                (
                    lines::sessions_error(n, &error),
                    json!({"sessions": n, "prompt": prompt, "steps": steps, "error": error}),
                )
            }
        };
        if !quiet {
            writeln!(std::io::stdout(), "{line}")?;
        }
        rows.push(row);
    }
    Ok(rows)
}
