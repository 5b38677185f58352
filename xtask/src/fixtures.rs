//! `cargo xtask fixtures`: regenerate `tests/fixtures` with HF transformers.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
usage: cargo xtask fixtures [--python PY] [--only a,b]
  regenerates tests/fixtures with HF transformers (PY: a Python with torch and
  transformers, default $QWGPU_PYTHON or python3; --only: these fixtures only)";

pub fn run(args: &[String]) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut python = std::env::var("QWGPU_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--python" => python = it.next().context("--python needs a value")?.clone(),
            _ => rest.push(a.clone()),
        }
    }
    let probe = Command::new(&python)
        .args([
            "-c",
            "import torch, transformers; print(transformers.__version__)",
        ])
        .output()
        .with_context(|| format!("running {python}"))?;
    if !probe.status.success() {
        bail!(
            "{python} cannot import torch + transformers (need transformers >= 5.17); \
             install them (`pip install torch transformers safetensors tokenizers compressed-tensors`) or pass --python"
        );
    }
    let version = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    eprintln!("xtask: generating fixtures with transformers {version}");
    let status = Command::new(&python)
        .arg(root.join("xtask/fixtures/generate.py"))
        .arg("--out")
        .arg(root.join("tests/fixtures"))
        .args(&rest)
        .status()?;
    if !status.success() {
        bail!("fixture generator failed ({status})");
    }
    eprintln!("xtask: fixtures written; review `git status tests/fixtures` and commit them");
    Ok(())
}
