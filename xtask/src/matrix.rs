//! The fixture matrix: every committed fixture × every backend (the CPU
//! reference, and the GPU adapter qwgpu picks: lavapipe in CI) → max |Δlogit|
//! vs HF transformers' goldens, greedy agreement, pass/fail.

use anyhow::{Context, Result};
use qwgpu_model::engine::{Backend, LoadOptions};
use qwgpu_model::golden::{self, GoldenReport};

/// Prints the table; returns the number of failed rows.
pub fn run() -> Result<usize> {
    let dirs = golden::list_fixtures().context("listing tests/fixtures")?;
    if dirs.is_empty() {
        anyhow::bail!("no fixtures under {}", golden::fixtures_dir().display());
    }
    let gpu_name = qwgpu_model::engine::gpu_adapter_name().unwrap_or_else(|| "gpu".into());
    println!();
    println!(
        "{:<28} {:<14} {:<13} {:<8} {:>11} {:>10} {:>10} {:>7}  result",
        "fixture", "backend", "quant", "layout", "max|Δlogit|", "tolerance", "scale", "greedy"
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
                        "{:<28} {:<14} {:<13} {:<8} {:>11.3e} {:>10.3e} {:>10.3} {:>7}  {}",
                        name,
                        backend,
                        r.quant,
                        r.layout,
                        r.max_abs_diff,
                        r.tolerance,
                        r.logit_scale,
                        if r.greedy_identical { "same" } else { "DIFF" },
                        if r.passed { "pass" } else { "FAIL" }
                    );
                }
                Err(e) => {
                    failed += 1;
                    println!("{name:<28} {backend:<14} error: {e}");
                }
            }
        }
    }
    println!("{} passed, {} failed", rows - failed, failed);
    Ok(failed)
}
