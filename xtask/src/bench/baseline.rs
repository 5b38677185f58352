//! The batch-1 decode figures of an earlier run (`--baseline results.json`)
//! and issue 17's "no decode regression" target judged against them: every
//! qwgpu decode figure both runs have, new ÷ old, within the run-to-run
//! spread (`--baseline-spread`, default [`DEFAULT_SPREAD_PCT`] %: the spread
//! of the 9B and 35B-A3B decode between three complete runs in
//! `benches/EXPERIMENTS.md`; the 0.8B's decode at ctx 512 is bimodal across
//! processes and can fall outside it). On either side a figure measured
//! alone (after the GGUF conversion, [`Run::decode_alone`]) stands in for
//! the main run's at its context: the main run's decode shares the CPU with
//! the conversion, and a 1 ms decode step is host-latency sensitive.
//!
//! [`Run::decode_alone`]: super::results::Run::decode_alone

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::results::{Results, QWGPU};
use super::throughput::NOT_MEASURED;

/// Percent a decode figure may fall below the baseline's and still count
/// as within run-to-run spread.
pub const DEFAULT_SPREAD_PCT: f64 = 6.0;

/// One earlier run's qwgpu batch-1 decode figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub commit: String,
    pub date: String,
    pub gpu: String,
    /// (model, format, context, tok/s): measured alone where that run has
    /// such a figure, else its main run's.
    pub decode: Vec<(String, String, usize, f64)>,
    /// (model, format, context) of the `decode` figures measured alone
    /// (empty for a baseline read before alone figures were kept).
    pub alone: Vec<(String, String, usize)>,
    /// Allowed fall, percent.
    pub spread_pct: f64,
}

impl Baseline {
    /// The qwgpu decode figures of `r`: at each context of a run, the one
    /// measured alone where it has one, else the main run's.
    pub fn of(r: &Results, spread_pct: f64) -> Self {
        let mut decode = Vec::new();
        let mut alone = Vec::new();
        for x in r.runs.iter().filter(|x| x.engine == QWGPU) {
            let mut contexts: Vec<usize> = x.decode.iter().map(|d| d.0).collect();
            contexts.extend(
                x.decode_alone
                    .iter()
                    .map(|d| d.0)
                    .filter(|c| x.decode_at(*c).is_none()),
            );
            for ctx in contexts {
                let Some((tok_s, is_alone)) = x.judged_decode_at(ctx) else {
                    continue;
                };
                decode.push((x.model.clone(), x.format.clone(), ctx, tok_s));
                if is_alone {
                    alone.push((x.model.clone(), x.format.clone(), ctx));
                }
            }
        }
        Self {
            commit: r.commit.clone(),
            date: r.date.clone(),
            gpu: r.gpu.clone(),
            decode,
            alone,
            spread_pct,
        }
    }

    /// Whether the figure of `model` `format` at `ctx` was measured alone.
    pub fn is_alone(&self, model: &str, format: &str, ctx: usize) -> bool {
        self.alone
            .iter()
            .any(|(m, f, c)| m == model && f == format && *c == ctx)
    }

    /// The figures of the `results.json` at `path`.
    pub fn load(path: &std::path::Path, spread_pct: f64) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let r: Results = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as a bench results.json", path.display()))?;
        Ok(Self::of(&r, spread_pct))
    }
}

/// (target, measured, verdict) of the regression target: the worst new ÷
/// old over every figure both runs have, each side's figure measured alone
/// where it has one (the measured cell says how many were).
pub fn regression_row(r: &Results) -> (String, String, String) {
    let Some(b) = &r.baseline else {
        return (
            "No batch-1 decode regression (within run-to-run spread)".into(),
            "no baseline run given (`--baseline results.json`)".into(),
            NOT_MEASURED.into(),
        );
    };
    let spread = b.spread_pct;
    let label = format!(
        "No batch-1 decode regression (each qwgpu decode figure ≥ {keep}% of `{commit}`'s, {date})",
        keep = 100.0 - spread,
        commit = b.commit,
        date = b.date
    );
    if !b.gpu.is_empty() && !r.gpu.is_empty() && b.gpu != r.gpu {
        // Another card's decode says nothing about a regression.
        let measured = format!(
            "baseline on {old}, this run on {new}",
            old = b.gpu,
            new = r.gpu
        );
        return (label, measured, NOT_MEASURED.into());
    }
    // (new ÷ old, which figure, new measured alone, old measured alone).
    let pairs: Vec<(f64, String, bool, bool)> = b
        .decode
        .iter()
        .filter_map(|(model, format, ctx, old)| {
            let (new, new_alone) = r.run(QWGPU, model, format)?.judged_decode_at(*ctx)?;
            let old_alone = b.is_alone(model, format, *ctx);
            (*old > 0.0).then(|| {
                (
                    new / old,
                    format!("{model} {format} ctx {ctx}"),
                    new_alone,
                    old_alone,
                )
            })
        })
        .collect();
    let Some((worst, what, new_alone, old_alone)) = pairs.iter().min_by(|a, b| a.0.total_cmp(&b.0))
    else {
        return (
            label,
            "no decode figure in both runs".into(),
            NOT_MEASURED.into(),
        );
    };
    let n = pairs.len();
    let which = match (new_alone, old_alone) {
        (true, true) => ", both measured alone",
        (true, false) => ", this run's measured alone",
        (false, true) => ", the baseline's measured alone",
        (false, false) => "",
    };
    let mut measured = format!("worst {worst:.2}× ({what}{which}) of {n} figures");
    let (new_n, old_n) = (
        pairs.iter().filter(|p| p.2).count(),
        pairs.iter().filter(|p| p.3).count(),
    );
    if new_n + old_n > 0 {
        let _ = write!(
            measured,
            "; decode measured alone after the GGUF conversion where measured ({new_n} of this \
             run's {n} figures, {old_n} of the baseline's), else the main run's"
        );
    }
    let met = *worst >= 1.0 - spread / 100.0;
    (label, measured, if met { "met" } else { "not met" }.into())
}
