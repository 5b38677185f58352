//! The fixture matrix's precision column: the GPU engine with
//! [`MatmulPrecision::Fast`] over each fixture's golden tokens, held to Hugging
//! Face's own BF16-vs-F32 divergence on the same tokens
//! (`tests/fixtures/<name>/hf_bf16.json`, written by `cargo xtask fixtures
//! --bf16-divergence`). Per token, in f64: KL(P_golden ‖ P_fast) of the
//! softmaxes and whether the argmaxes agree. A row passes when the mean KL and
//! the max KL are at most HF BF16's and the top-1 agreement at least HF
//! BF16's; a missing or unreadable `hf_bf16.json` fails the row.

use std::path::Path;

use anyhow::{Context, Result};
use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions, Model};
use qwgpu_model::golden::{Golden, DECODE_STEPS};
use qwgpu_model::MatmulPrecision;
use serde::Deserialize;

/// The file of HF's BF16-vs-F32 numbers in a fixture folder.
pub const BAR_FILE: &str = "hf_bf16.json";

/// `hf_bf16.json` (extra fields, provenance, are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Bar {
    /// Positions measured: prompt + decode steps.
    pub tokens: usize,
    pub kl_mean: f64,
    pub kl_max: f64,
    pub top1_agreement: f64,
}

/// Per-token divergence of some logits from reference logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub tokens: usize,
    pub kl_mean: f64,
    pub kl_max: f64,
    pub top1_agreement: f64,
}

/// One fixture's row: the fast engine's divergence and why it fails (empty: pass).
#[derive(Debug, Clone)]
pub struct Row {
    pub divergence: Divergence,
    pub bar: Option<Bar>,
    pub failures: Vec<String>,
}

/// Reads `dir/hf_bf16.json`; a missing file is an error saying how to make it.
pub fn load_bar(dir: &Path) -> Result<Bar> {
    let path = dir.join(BAR_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{path}: missing (HF's BF16-vs-F32 divergence): run `cargo xtask fixtures --bf16-divergence` \
             with torch + transformers, then commit it",
            path = path.display()
        )
    })?;
    let bar: Bar = serde_json::from_str(&text)
        .with_context(|| format!("{path}: invalid", path = path.display()))?;
    Ok(bar)
}

/// `log_softmax` of one row in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    row.iter().map(|&v| v as f64 - log_sum).collect()
}

/// KL(P_reference ‖ P_ours) per row and argmax agreement, over `vocab`-wide
/// rows. A row of ours holding a NaN or infinity counts as KL = ∞ and no agreement.
pub fn divergence(reference: &[f32], ours: &[f32], vocab: usize) -> Divergence {
    let mut kls = Vec::new();
    let mut agree = 0usize;
    for (p, q) in reference.chunks_exact(vocab).zip(ours.chunks_exact(vocab)) {
        if q.iter().any(|v| !v.is_finite()) {
            kls.push(f64::INFINITY);
            continue;
        }
        let (lp, lq) = (log_softmax(p), log_softmax(q));
        let kl: f64 = lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum();
        kls.push(kl.max(0.0));
        agree += usize::from(qwgpu_model::argmax(p) == qwgpu_model::argmax(q));
    }
    let n = kls.len().max(1) as f64;
    Divergence {
        tokens: kls.len(),
        kl_mean: kls.iter().sum::<f64>() / n,
        kl_max: kls.iter().copied().fold(0.0, f64::max),
        top1_agreement: agree as f64 / n,
    }
}

/// Why `d` is not within `bar` (empty: it is). NaN never passes.
pub fn verdict(d: &Divergence, bar: &Bar) -> Vec<String> {
    let mut out = Vec::new();
    if d.tokens != bar.tokens {
        out.push(format!(
            "{d_tokens} tokens measured, {BAR_FILE} has {bar_tokens}",
            d_tokens = d.tokens,
            bar_tokens = bar.tokens
        ));
    }
    if d.kl_mean.is_nan() || d.kl_mean > bar.kl_mean {
        out.push(format!(
            "mean KL {d_kl_mean:.3e} > HF BF16's {bar_kl_mean:.3e}",
            d_kl_mean = d.kl_mean,
            bar_kl_mean = bar.kl_mean
        ));
    }
    if d.kl_max.is_nan() || d.kl_max > bar.kl_max {
        out.push(format!(
            "max KL {d_kl_max:.3e} > HF BF16's {bar_kl_max:.3e}",
            d_kl_max = d.kl_max,
            bar_kl_max = bar.kl_max
        ));
    }
    if d.top1_agreement.is_nan() || d.top1_agreement < bar.top1_agreement {
        out.push(format!(
            "top-1 agreement {d_top1:.4} < HF BF16's {bar_top1:.4}",
            d_top1 = d.top1_agreement,
            bar_top1 = bar.top1_agreement
        ));
    }
    out
}

/// The load options of the precision column: the GPU, precision Fast.
pub fn fast_options() -> LoadOptions {
    LoadOptions {
        backend: Backend::Gpu,
        gpu: ContextOptions {
            precision: MatmulPrecision::Fast,
            ..LoadOptions::default().gpu
        },
        ..Default::default()
    }
}

/// The model's logits over the golden tokens as the goldens hold them: the
/// prompt's rows, then one row per teacher-forced decode step.
fn golden_run(model: &Model, golden: &Golden) -> Result<Vec<f32>> {
    let mut session = model.new_session()?;
    let mut logits = model.forward_all(&mut session, &golden.meta.prompt_ids)?;
    for &token in &golden.meta.generated_ids[..DECODE_STEPS] {
        logits.extend(model.forward_all(&mut session, &[token])?);
    }
    Ok(logits)
}

/// The precision column of one fixture folder.
pub fn check(dir: &Path) -> Result<Row> {
    let golden = Golden::load(dir)?;
    let model = Model::load(dir, &fast_options())?;
    let ours = golden_run(&model, &golden)?;
    let mut reference = golden.prefill_logits.clone();
    reference.extend_from_slice(&golden.decode_logits);
    anyhow::ensure!(
        ours.len() == reference.len(),
        "{dir}: {ours_len} logits from the engine, {reference_len} in the goldens",
        dir = dir.display(),
        ours_len = ours.len(),
        reference_len = reference.len()
    );
    let divergence = divergence(&reference, &ours, golden.vocab);
    let (bar, failures) = match load_bar(dir) {
        Ok(bar) => {
            let failures = verdict(&divergence, &bar);
            (Some(bar), failures)
        }
        Err(e) => (None, vec![format!("{e:#}")]),
    };
    Ok(Row {
        divergence,
        bar,
        failures,
    })
}

/// The row's numbers against the bar: `KL mean a (HF b), max c (HF d), top-1 e (HF f)`.
pub fn describe(row: &Row) -> String {
    let d = &row.divergence;
    let hf = |v: Option<f64>, prec: usize| match v {
        Some(v) if prec == 0 => format!("{v:.2e}"),
        Some(v) => format!("{v:.prec$}"),
        None => "none".into(),
    };
    format!(
        "KL mean {d_kl_mean:.2e} (HF bf16 {bar_mean}), max {d_kl_max:.2e} (HF {bar_max}), top-1 {d_top1:.4} (HF {bar_top1})",
        d_kl_mean = d.kl_mean,
        d_kl_max = d.kl_max,
        d_top1 = d.top1_agreement,
        bar_mean = hf(row.bar.as_ref().map(|b| b.kl_mean), 0),
        bar_max = hf(row.bar.as_ref().map(|b| b.kl_max), 0),
        bar_top1 = hf(row.bar.as_ref().map(|b| b.top1_agreement), 4),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar() -> Bar {
        Bar {
            tokens: 3,
            kl_mean: 1e-4,
            kl_max: 1e-3,
            top1_agreement: 0.9,
        }
    }

    fn div(kl_mean: f64, kl_max: f64, top1_agreement: f64) -> Divergence {
        Divergence {
            tokens: 3,
            kl_mean,
            kl_max,
            top1_agreement,
        }
    }

    #[test]
    fn verdict_passes_within_the_bar_and_fails_each_criterion() {
        assert!(verdict(&div(1e-4, 1e-3, 0.9), &bar()).is_empty());
        assert!(verdict(&div(5e-5, 2e-4, 1.0), &bar()).is_empty());
        let fails = |d: Divergence, needle: &str| {
            let v = verdict(&d, &bar());
            assert!(v.len() == 1 && v[0].contains(needle), "{v:?}");
        };
        fails(div(1.1e-4, 1e-3, 0.9), "mean KL");
        fails(div(1e-4, 1.01e-3, 0.9), "max KL");
        fails(div(1e-4, 1e-3, 0.89), "top-1");
        fails(div(f64::NAN, 1e-3, 0.9), "mean KL");
        fails(
            Divergence {
                tokens: 4,
                ..div(0.0, 0.0, 1.0)
            },
            "tokens",
        );
        assert_eq!(verdict(&div(1.0, 1.0, 0.0), &bar()).len(), 3);
    }

    #[test]
    fn divergence_against_hand_computed_values() {
        // Row 0: P = (1/2, 1/2), Q = (3/4, 1/4): KL = ln(4/3) / 2, argmaxes both 0.
        // Row 1: identical: KL 0. Row 2: P favours 0, Q favours 1: a flip.
        let reference = [0.0, 0.0, 1.0, 2.0, 2.0, 0.0];
        let ours = [3f32.ln(), 0.0, 1.0, 2.0, 0.0, 2.0];
        let d = divergence(&reference, &ours, 2);
        let kl0 = (4.0f64 / 3.0).ln() / 2.0;
        let e2 = 2f64.exp();
        let (p, q) = (e2 / (e2 + 1.0), 1.0 / (e2 + 1.0));
        let kl2 = p * (p / q).ln() + q * (q / p).ln();
        assert_eq!(d.tokens, 3);
        // ln 3 rounded to f32 moves row 0's KL by ~1e-8.
        assert!((d.kl_mean - (kl0 + kl2) / 3.0).abs() < 1e-7, "{d:?}");
        assert!((d.kl_max - kl2).abs() < 1e-7, "{d:?}");
        assert!((d.top1_agreement - 2.0 / 3.0).abs() < 1e-12, "{d:?}");
        // Non-finite logits of ours never pass.
        let d = divergence(&reference[..2], &[f32::NAN, 0.0], 2);
        assert_eq!(d.kl_max, f64::INFINITY);
        assert!(!verdict(&Divergence { tokens: 3, ..d }, &bar()).is_empty());
    }

    #[test]
    fn the_bar_file_is_read_and_its_absence_says_how_to_make_it() {
        let dir = std::env::temp_dir().join(format!("qwgpu-xtask-bar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = load_bar(&dir).unwrap_err();
        assert!(
            format!("{missing:#}").contains("cargo xtask fixtures --bf16-divergence"),
            "{missing:#}"
        );
        std::fs::write(
            dir.join(BAR_FILE),
            r#"{"tokens": 3, "kl_mean": 1e-4, "kl_max": 1e-3, "top1_agreement": 0.9, "quant": "bf16"}"#,
        )
        .unwrap();
        let read = load_bar(&dir);
        std::fs::write(dir.join(BAR_FILE), r#"{"tokens": 3}"#).unwrap();
        let partial = load_bar(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read.unwrap(), bar());
        assert!(partial.is_err());
    }
}
