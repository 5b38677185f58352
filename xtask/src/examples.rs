//! `cargo xtask examples` (and a step of `ci`): runs each published crate's
//! example (`crates/*/examples`), as a user would with `cargo run --example`.
//!
//! They are built with the test step's profile and the whole workspace's
//! features (`cargo build --profile test --workspace --examples`), which is
//! what `cargo test --workspace --all-targets` already built: after the test
//! step this compiles nothing. The executables come from cargo's JSON
//! messages. The GPU examples run on lavapipe where there is no GPU.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// `(package, example)`: each runs with no arguments on committed data.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("qwgpu-checkpoint", "inspect"),
    ("qwgpu-loader", "pack_fp8"),
    ("qwgpu-kernels", "own_device"),
    ("qwgpu-model", "generate"),
];

const USAGE: &str = "usage: cargo xtask examples   (builds and runs the crates' examples)";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        bail!("unknown argument `{a}`\n{USAGE}");
    }
    let built = build()?;
    for (package, example) in EXAMPLES {
        let exe = built.get(*example).with_context(|| {
            format!("cargo built no example `{example}` (of {package}): was it renamed?")
        })?;
        eprintln!("xtask: example {package} {example}");
        let started = Instant::now();
        let status = Command::new(exe)
            .status()
            .with_context(|| format!("running {exe}", exe = exe.display()))?;
        if !status.success() {
            bail!(
                "example `{example}` of {package} failed ({status}); \
                 run it with `cargo run -p {package} --example {example}`"
            );
        }
        eprintln!(
            "xtask: example {example} passed in {secs:.1} s",
            secs = started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Builds every example; returns example name → executable.
fn build() -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = [
        "build",
        "--profile",
        "test",
        "--workspace",
        "--examples",
        "--message-format",
        "json-render-diagnostics",
    ];
    eprintln!("xtask: cargo {joined}", joined = args.join(" "));
    let out = Command::new(&cargo)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo}"))?;
    if !out.status.success() {
        bail!(
            "`cargo {joined}` failed ({status})",
            joined = args.join(" "),
            status = out.status
        );
    }
    let mut built = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_example = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "example"));
        if let (true, Some(exe), Some(name)) = (
            is_example,
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
        ) {
            built.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(built)
}
