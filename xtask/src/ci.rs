//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{manifest, matrix, vulkan};

pub fn run() -> Result<()> {
    let started = Instant::now();
    vulkan::ensure_adapter();
    manifest::verify(&qwgpu_model::golden::fixtures_dir())?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets"])?;
    cargo(&["test", "--workspace", "--doc"])?;
    // Broken intra-doc links and malformed docs fail like clippy warnings.
    cargo_with(
        &["doc", "--workspace", "--no-deps", "--quiet"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    let failed = matrix::run()?;
    eprintln!(
        "xtask ci: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        bail!("{failed} fixture row(s) failed");
    }
    Ok(())
}

/// Runs the cargo that runs us (`CARGO`), so toolchain overrides carry over.
fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

fn cargo_with(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask ci: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
