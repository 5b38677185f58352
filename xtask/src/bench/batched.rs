//! Batched decode figures: qwgpu's `qwgpu bench --sessions` rows and
//! llama.cpp's `llama-batched-bench` table, as (sessions, total tok/s).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One engine's batched decode on one model in one format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BatchedRun {
    pub engine: String,
    pub model: String,
    pub format: String,
    /// (sessions, total decode tok/s over all of them).
    pub rows: Vec<(usize, f64)>,
    /// Why the run, or one of its session counts, gave no figure.
    pub errors: Vec<String>,
}

impl BatchedRun {
    pub fn new(engine: &str, model: &str, format: &str) -> Self {
        Self {
            engine: engine.into(),
            model: model.into(),
            format: format.into(),
            ..Default::default()
        }
    }

    pub fn failed(engine: &str, model: &str, format: &str, error: String) -> Self {
        Self {
            errors: vec![error],
            ..Self::new(engine, model, format)
        }
    }

    /// Total tok/s at `sessions`.
    pub fn tok_s(&self, sessions: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.0 == sessions).map(|r| r.1)
    }
}

/// One row of llama-batched-bench's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchedBenchRow {
    /// Prompt tokens per sequence (`PP`), generated tokens per sequence
    /// (`TG`), parallel sequences (`B`).
    pub pp: usize,
    pub tg: usize,
    pub sessions: usize,
    /// `S_TG t/s`: B × TG ÷ the time of the generation steps.
    pub s_tg: f64,
}

/// The Markdown table llama-batched-bench prints (`tools/batched-bench`:
/// `|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s |
/// S_TG t/s |      T s |    S t/s |`), found anywhere in its output and read
/// by column name; `Err` when there is no such table or it has no rows.
pub fn parse_batched_bench(text: &str) -> Result<Vec<BatchedBenchRow>, String> {
    let cells = |line: &str| -> Vec<String> {
        let t = line.trim();
        let t = t.strip_prefix('|').unwrap_or(t);
        let t = t.strip_suffix('|').unwrap_or(t);
        t.split('|').map(|c| c.trim().to_string()).collect()
    };
    let mut lines = text.lines();
    let header = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with('|') && l.contains("S_TG t/s"))
        .ok_or("no llama-batched-bench table (no `S_TG t/s` header)")?;
    let head = cells(header);
    let col = |name: &str| {
        head.iter()
            .position(|c| c == name)
            .ok_or(format!("no `{name}` column in {header:?}"))
    };
    let (pp, tg, b, s_tg) = (col("PP")?, col("TG")?, col("B")?, col("S_TG t/s")?);
    let mut rows = Vec::new();
    for line in lines {
        if !line.trim_start().starts_with('|') {
            // The table ends at the first line that is not a row.
            if rows.is_empty() {
                continue;
            }
            break;
        }
        let c = cells(line);
        let int = |i: usize| c.get(i).and_then(|x| x.parse::<usize>().ok());
        let (Some(pp), Some(tg), Some(sessions), Some(s_tg)) = (
            int(pp),
            int(tg),
            int(b),
            c.get(s_tg).and_then(|x| x.parse::<f64>().ok()),
        ) else {
            // The `|------|...` rule.
            continue;
        };
        rows.push(BatchedBenchRow {
            pp,
            tg,
            sessions,
            s_tg,
        });
    }
    if rows.is_empty() {
        return Err("llama-batched-bench's table has no rows".into());
    }
    Ok(rows)
}

/// A llama-batched-bench run → the rows of `prompt` and `steps`, with an
/// error for each asked session count it skipped (llama-batched-bench
/// silently skips a count whose N × (PP + TG) exceeds its context).
pub fn batched_bench_run(
    engine: &str,
    model: &str,
    format: &str,
    text: &str,
    plan: (&[usize], usize, usize),
) -> BatchedRun {
    let (counts, prompt, steps) = plan;
    let rows = match parse_batched_bench(text) {
        Ok(rows) => rows,
        Err(e) => return BatchedRun::failed(engine, model, format, e),
    };
    let mut run = BatchedRun::new(engine, model, format);
    for &n in counts {
        match rows
            .iter()
            .find(|r| r.sessions == n && r.pp == prompt && r.tg == steps)
        {
            Some(r) => run.rows.push((n, r.s_tg)),
            None => run.errors.push(format!(
                "no row for {n} sequences of {prompt} + {steps} tokens in llama-batched-bench's table"
            )),
        }
    }
    run
}

/// `qwgpu bench --json --sessions ...` output → qwgpu's batched run.
pub fn parse_qwgpu_sessions(engine: &str, model: &str, format: &str, v: &Value) -> BatchedRun {
    let mut run = BatchedRun::new(engine, model, format);
    let Some(rows) = v["model"]["sessions"].as_array() else {
        run.errors.push("no `sessions` rows in qwgpu's JSON".into());
        return run;
    };
    for x in rows {
        let Some(n) = x["sessions"].as_u64() else {
            continue;
        };
        match (x["tok_s"].as_f64(), x["error"].as_str()) {
            (Some(t), _) => run.rows.push((n as usize, t)),
            (None, Some(e)) => run.errors.push(format!("{n} sessions: {e}")),
            (None, None) => run.errors.push(format!("{n} sessions: no figure")),
        }
    }
    run
}

/// llama-batched-bench's context: every sequence's prompt and generated tokens.
pub fn batched_bench_context(counts: &[usize], prompt: usize, steps: usize) -> usize {
    counts.iter().copied().max().unwrap_or(1) * (prompt + steps)
}
