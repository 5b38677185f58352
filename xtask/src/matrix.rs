//! The fixture matrix: every committed fixture × every backend (the CPU
//! reference, and the GPU adapter qwgpu picks: lavapipe in CI, at precision
//! Exact) → max |Δlogit| vs HF transformers' goldens, greedy agreement,
//! pass/fail; then the precision column (`precision`): the GPU at precision
//! Fast against HF's own BF16-vs-F32 divergence.

use anyhow::{Context, Result};
use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions};
use qwgpu_model::golden::{self, GoldenReport};
use qwgpu_model::MatmulPrecision;

use crate::precision;

/// Prints the table; returns the number of failed rows.
pub fn run() -> Result<usize> {
    let dirs = golden::list_fixtures().context("listing tests/fixtures")?;
    if dirs.is_empty() {
        anyhow::bail!("no fixtures under {}", golden::fixtures_dir().display());
    }
    let gpu_name = qwgpu_model::engine::gpu_adapter_name().unwrap_or_else(|| "gpu".into());
    println!();
    println!(
        "{fixture:<28} {backend:<14} {quant:<13} {layout:<8} {max_logit:>11} {tolerance:>10} {scale:>10} {greedy:>7}  result",
        fixture = "fixture",
        backend = "backend",
        quant = "quant",
        layout = "layout",
        max_logit = "max|Δlogit|",
        tolerance = "tolerance",
        scale = "scale",
        greedy = "greedy"
    );
    let mut failed = 0;
    let mut rows = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backends: [(&str, Result<GoldenReport, _>); 2] = [
            ("cpu-ref", golden::check_reference(dir)),
            (
                gpu_name.as_str(),
                golden::check_model(
                    dir,
                    &LoadOptions {
                        backend: Backend::Gpu,
                        // The golden column checks Exact whatever the default.
                        gpu: ContextOptions {
                            precision: MatmulPrecision::Exact,
                            ..LoadOptions::default().gpu
                        },
                        ..Default::default()
                    },
                    golden::GPU_RELATIVE_TOLERANCE,
                ),
            ),
        ];
        for (backend, result) in backends {
            rows += 1;
            match result {
                Ok(r) => {
                    if !r.passed {
                        failed += 1;
                    }
                    println!(
                        "{name:<28} {backend:<14} {r_quant:<13} {r_layout:<8} {r_max_abs_diff:>11.3e} {r_tolerance:>10.3e} {r_logit_scale:>10.3} {diff:>7}  {verdict}",
                        r_quant = r.quant,
                        r_layout = r.layout,
                        r_max_abs_diff = r.max_abs_diff,
                        r_tolerance = r.tolerance,
                        r_logit_scale = r.logit_scale,
                        diff = if r.greedy_identical { "same" } else { "DIFF" },
                        verdict = if r.passed { "pass" } else { "FAIL" }
                    );
                }
                Err(e) => {
                    failed += 1;
                    println!("{name:<28} {backend:<14} error: {e}");
                }
            }
        }
        rows += 1;
        let backend = format!("{gpu_name} fast");
        match precision::check(dir) {
            Ok(row) => {
                let pass = row.failures.is_empty();
                if !pass {
                    failed += 1;
                }
                println!(
                    "{name:<28} {backend:<14} {numbers}  {verdict}",
                    numbers = precision::describe(&row),
                    verdict = if pass { "pass" } else { "FAIL" }
                );
                for why in &row.failures {
                    println!("    {why}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("{name:<28} {backend:<14} error: {e:#}");
            }
        }
    }
    println!(
        "{rows_failed} passed, {failed} failed",
        rows_failed = rows - failed
    );
    Ok(failed)
}
