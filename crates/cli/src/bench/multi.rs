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
        ..SamplingParams::GREEDY
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use qwgpu_model::engine::{Backend, LoadOptions};

    use super::*;

    /// The tiny fixture on the CPU reference (fast, no GPU needed).
    fn tiny() -> Model {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dense-bf16-text"
        );
        let opts = LoadOptions {
            backend: Backend::Cpu,
            ..Default::default()
        };
        Model::load(Path::new(dir), &opts).unwrap()
    }

    #[test]
    fn a_failing_ttft_length_is_a_row_and_the_next_one_is_measured() {
        let m = tiny();
        let prompt = random_ids(6, m.config().vocab_size as u64);
        let rows = ttft_rows(&m, &prompt, &[3, 9, 6], true).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["tokens"], 3);
        assert!(rows[0]["seconds"].as_f64().unwrap() > 0.0, "{rows:?}");
        // 9 tokens of a 6-token prompt: an error row, not a failed run.
        let e = rows[1]["error"].as_str().unwrap();
        assert!(e.contains("9 tokens asked, 6 generated"), "{e}");
        assert!(rows[1]["seconds"].is_null());
        assert!(rows[2]["seconds"].as_f64().unwrap() > 0.0, "{rows:?}");
    }

    #[test]
    fn session_rows_count_every_session_of_every_step() {
        let m = tiny();
        let vocab = m.config().vocab_size as u64;
        let plan = SessionsPlan {
            counts: &[1, 3],
            prompt: 4,
            steps: 2,
        };
        let rows = session_rows(&m, &plan, vocab, true).unwrap();
        let sessions: Vec<u64> = rows
            .iter()
            .map(|r| r["sessions"].as_u64().unwrap())
            .collect();
        assert_eq!(sessions, vec![1, 3]);
        for r in &rows {
            let (n, s) = (
                r["sessions"].as_f64().unwrap(),
                r["seconds"].as_f64().unwrap(),
            );
            assert_eq!(
                (r["prompt"].as_u64(), r["steps"].as_u64()),
                (Some(4), Some(2))
            );
            // Total tok/s: every session's token of every timed step.
            let want = n * 2.0 / s;
            assert!(
                (r["tok_s"].as_f64().unwrap() - want).abs() <= 1e-9 * want,
                "{r}"
            );
        }
        let none = SessionsPlan {
            counts: &[],
            prompt: 4,
            steps: 2,
        };
        assert!(session_rows(&m, &none, vocab, true).unwrap().is_empty());
        for bad in [
            SessionsPlan {
                counts: &[2, 0],
                prompt: 4,
                steps: 2,
            },
            SessionsPlan {
                counts: &[2],
                prompt: 4,
                steps: 0,
            },
        ] {
            let e = session_rows(&m, &bad, vocab, true).unwrap_err();
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
    }
}
