//! The batch-1 decode figures of an earlier run (`--baseline results.json`)
//! and issue 17's "no decode regression" target judged against them: every
//! qwgpu decode figure both runs have, new ÷ old, within the run-to-run
//! spread (`--baseline-spread`, default [`DEFAULT_SPREAD_PCT`] %: the spread
//! of the 9B and 35B-A3B decode between three complete runs in
//! `benches/EXPERIMENTS.md`; the 0.8B's decode at ctx 512 is bimodal across
//! processes and can fall outside it).

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
    /// (model, format, context, tok/s).
    pub decode: Vec<(String, String, usize, f64)>,
    /// Allowed fall, percent.
    pub spread_pct: f64,
}

impl Baseline {
    /// The qwgpu decode figures of `r`.
    pub fn of(r: &Results, spread_pct: f64) -> Self {
        let decode = r
            .runs
            .iter()
            .filter(|x| x.engine == QWGPU)
            .flat_map(|x| {
                x.decode
                    .iter()
                    .map(|&(ctx, tok_s)| (x.model.clone(), x.format.clone(), ctx, tok_s))
            })
            .collect();
        Self {
            commit: r.commit.clone(),
            date: r.date.clone(),
            gpu: r.gpu.clone(),
            decode,
            spread_pct,
        }
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
/// old over every figure both runs have.
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
    let pairs: Vec<(f64, String)> = b
        .decode
        .iter()
        .filter_map(|(model, format, ctx, old)| {
            let new = r.run(QWGPU, model, format)?.decode_at(*ctx)?;
            (*old > 0.0).then(|| (new / old, format!("{model} {format} ctx {ctx}")))
        })
        .collect();
    let Some((worst, what)) = pairs.iter().min_by(|a, b| a.0.total_cmp(&b.0)) else {
        return (
            label,
            "no decode figure in both runs".into(),
            NOT_MEASURED.into(),
        );
    };
    let measured = format!("worst {worst:.2}× ({what}) of {n} figures", n = pairs.len());
    let met = *worst >= 1.0 - spread / 100.0;
    (label, measured, if met { "met" } else { "not met" }.into())
}
