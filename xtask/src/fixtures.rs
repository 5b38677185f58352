//! `cargo xtask fixtures`: regenerate `tests/fixtures` with HF transformers,
//! then measure HF's own BF16-vs-F32 divergence on them (`hf_bf16.json`, the
//! bar of `cargo xtask matrix`'s precision column).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
usage: cargo xtask fixtures [--python PY] [--only a,b] [--bf16-divergence]
  regenerates tests/fixtures with HF transformers, then writes each fixture's
  hf_bf16.json (HF's BF16-vs-F32 KL and top-1 agreement on the golden tokens)
  (PY: a Python with torch and transformers, default $QWGPU_PYTHON or python3;
  --only: these fixtures only; --bf16-divergence: only the hf_bf16.json files,
  of the fixtures as committed)";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    python: String,
    only: Option<String>,
    regenerate: bool,
}

fn parse(args: &[String], default_python: String) -> Result<Plan> {
    let mut plan = Plan {
        python: default_python,
        only: None,
        regenerate: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--python" => plan.python = it.next().context("--python needs a value")?.clone(),
            "--only" => plan.only = Some(it.next().context("--only needs a value")?.clone()),
            "--bf16-divergence" => plan.regenerate = false,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(plan)
}

pub fn run(args: &[String]) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let default_python = std::env::var("QWGPU_PYTHON").unwrap_or_else(|_| "python3".into());
    let plan = parse(args, default_python)?;
    let python = &plan.python;
    let probe = Command::new(python)
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
    let fixtures = root.join("tests/fixtures");
    if plan.regenerate {
        eprintln!("xtask: generating fixtures with transformers {version}");
        script(
            python,
            &root.join("xtask/fixtures/generate.py"),
            "--out",
            &fixtures,
            &plan.only,
        )?;
    }
    eprintln!("xtask: HF BF16-vs-F32 divergence with transformers {version}");
    script(
        python,
        &root.join("xtask/fixtures/bf16_divergence.py"),
        "--fixtures",
        &fixtures,
        &plan.only,
    )?;
    eprintln!("xtask: fixtures written; review `git status tests/fixtures` and commit them");
    Ok(())
}

/// Runs `python script <dir_flag> dir [--only names]`.
fn script(
    python: &str,
    script: &Path,
    dir_flag: &str,
    dir: &Path,
    only: &Option<String>,
) -> Result<()> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(dir_flag).arg(dir);
    if let Some(names) = only {
        cmd.args(["--only", names]);
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("{script} failed ({status})", script = script.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let plan = parse(&args(&[]), "py".into()).unwrap();
        assert_eq!(
            plan,
            Plan {
                python: "py".into(),
                only: None,
                regenerate: true
            }
        );
        let plan = parse(
            &args(&["--bf16-divergence", "--only", "a,b", "--python", "p3"]),
            "py".into(),
        )
        .unwrap();
        assert_eq!(
            plan,
            Plan {
                python: "p3".into(),
                only: Some("a,b".into()),
                regenerate: false
            }
        );
        assert!(parse(&args(&["--bogus"]), "py".into()).is_err());
        assert!(parse(&args(&["--only"]), "py".into()).is_err());
    }
}
