//! The fixture matrix: every committed fixture × every backend → max |Δlogit| vs
//! HF transformers' goldens, greedy agreement, pass/fail. Today the only backend
//! is the CPU reference; GPU backends add columns.

use anyhow::{Context, Result};
use qwgpu_model::golden;

/// Prints the table; returns the number of failed rows.
pub fn run() -> Result<usize> {
    let dirs = golden::list_fixtures().context("listing tests/fixtures")?;
    if dirs.is_empty() {
        anyhow::bail!("no fixtures under {}", golden::fixtures_dir().display());
    }
    println!();
    println!(
        "{:<28} {:<8} {:<13} {:<8} {:>11} {:>10} {:>10} {:>7}  result",
        "fixture", "backend", "quant", "layout", "max|Δlogit|", "tolerance", "scale", "greedy"
    );
    let mut failed = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match golden::check_reference(dir) {
            Ok(r) => {
                if !r.passed {
                    failed += 1;
                }
                println!(
                    "{:<28} {:<8} {:<13} {:<8} {:>11.3e} {:>10.3e} {:>10.3} {:>7}  {}",
                    name,
                    "cpu-ref",
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
                println!("{name:<28} {:<8} error: {e}", "cpu-ref");
            }
        }
    }
    println!("{} passed, {} failed", dirs.len() - failed, failed);
    Ok(failed)
}
