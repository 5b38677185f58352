//! `cargo xtask ci [--require-hw]`: everything CI checks, in the order that
//! fails fastest, then the GPU test coverage table (what ran on which context
//! and adapter, what was skipped for which missing feature or file); every
//! binary of `coverage::EXPECTED_BINARIES` must appear in it.
//!
//! `--require-hw`: a test that needs subgroups, f16 or cooperative matrices
//! fails on a context without them (automatic on a hardware adapter).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{coverage, examples, manifest, matrix, package, public_api, vulkan, web};

const USAGE: &str = "usage: cargo xtask ci [--require-hw]";

pub fn run(args: &[String]) -> Result<()> {
    let mut require_hw = false;
    for a in args {
        match a.as_str() {
            "--require-hw" => require_hw = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let started = Instant::now();
    // A fresh directory per run: the table counts this run's records only.
    let cov_dir = coverage_dir();
    let _ = std::fs::remove_dir_all(&cov_dir);
    std::fs::create_dir_all(&cov_dir).with_context(|| format!("creating {}", cov_dir.display()))?;
    std::env::set_var("QWGPU_COVERAGE_DIR", &cov_dir);
    if require_hw {
        std::env::set_var("QWGPU_REQUIRE_HW", "1");
    }
    vulkan::ensure_adapter();
    manifest::verify(&qwgpu_model::golden::fixtures_dir())?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    // Seconds each: an unintended API change or a GPU stack in a GPU-free crate.
    public_api::check()?;
    package::check_gpu_free()?;
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
    // The examples reuse the test build; packaging verifies the crates as published.
    examples::run(&[])?;
    package::package()?;
    // Broken intra-doc links and malformed docs fail like clippy warnings.
    cargo_with(
        &["doc", "--workspace", "--no-deps", "--quiet"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // The same engine in headless Chromium (or a loud skip without the tools).
    web::browser_tests()?;
    let failed = matrix::run()?;
    let records = coverage::load(&cov_dir)?;
    println!("{}", coverage::table(&records));
    if records.is_empty() {
        bail!(
            "no GPU test coverage records in {}: the GPU tests did not go through qwgpu_kernels::testing",
            cov_dir.display()
        );
    }
    let missing = coverage::missing_binaries(&records);
    if !missing.is_empty() {
        bail!(
            "no coverage records from the test binaries {missing_list} in {cov_dir_display}: \
             their tests no longer go through qwgpu_kernels::testing, so their skips are invisible",
            missing_list = missing.join(", "),
            cov_dir_display = cov_dir.display()
        );
    }
    eprintln!(
        "xtask ci: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        bail!("{failed} fixture row(s) failed");
    }
    Ok(())
}

/// `<target dir>/coverage` (`CARGO_TARGET_DIR` or `./target`).
fn coverage_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let target = if target.is_absolute() {
        target
    } else {
        std::env::current_dir().unwrap_or_default().join(target)
    };
    target.join("coverage")
}

/// Runs the cargo that runs us (`CARGO`), so toolchain overrides carry over.
fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

/// [`cargo`] with extra environment variables.
pub(crate) fn cargo_with(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask ci: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!(
            "`cargo {args_join}` failed ({status})",
            args_join = args.join(" ")
        );
    }
    Ok(())
}
