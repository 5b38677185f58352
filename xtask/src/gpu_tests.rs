//! `cargo xtask gpu-tests`: every kernel and model test binary, built here,
//! stripped and packed for the GPU machine (no Rust toolchain, no network,
//! 64 MiB carried per call), with a runner that executes them all there in
//! one device call (README: "Tests on the GPU machine").
//!
//! The archive (`<out>/tests.tar.xz`, default `.gpu/`) holds `bin/<crate>/<test
//! binary>`, `manifest.txt` (binary, crate folder to run it in), this
//! `xtask` (it prints the coverage table there), `run.sh` and `COMMIT`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask gpu-tests [--out DIR] [--max-mib N]

Builds the test binaries of qwgpu-kernels and qwgpu-model (test profile),
strips them and packs them with their runner into DIR/tests.tar.xz (default
DIR: .gpu; ignore it: echo /.gpu/ >> .git/info/exclude). Fails when the
archive exceeds N MiB (default 50). Run on the GPU machine (README):
  mkdir -p /tmp/gt && tar -C /tmp/gt -xJf .gpu/tests.tar.xz && bash /tmp/gt/run.sh \"$PWD\" \"$OUT\"";

/// The runner packed beside the binaries.
const RUNNER: &str = include_str!("gpu_tests_run.sh");

/// Crates whose test binaries are packed.
const CRATES: [&str; 2] = ["qwgpu-kernels", "qwgpu-model"];

/// A test executable cargo built.
#[derive(Debug, Clone, PartialEq)]
struct TestBinary {
    /// Target name (`kernels`, `golden_gpu`, `qwgpu_model` for unit tests).
    name: String,
    /// The crate's folder relative to the workspace (`crates/model`).
    crate_dir: String,
    executable: PathBuf,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut out = PathBuf::from(".gpu");
    let mut max_mib = 50.0f64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--out" => out = value()?.into(),
            "--max-mib" => {
                let v = value()?;
                max_mib = v
                    .parse()
                    .with_context(|| format!("--max-mib `{v}` is not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let root = std::env::current_dir()?;
    let binaries = build(&root)?;
    let stage = root.join("target/gpu-tests");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("bin"))?;
    let mut manifest = String::new();
    let mut rows = Vec::new();
    for b in &binaries {
        let krate = Path::new(&b.crate_dir)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel = format!("{krate}/{b_name}", b_name = b.name);
        let size = stage_binary(&b.executable, &stage.join("bin").join(&rel))?;
        manifest.push_str(&format!("{rel} {b_crate_dir}\n", b_crate_dir = b.crate_dir));
        rows.push((rel, size));
    }
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let size = stage_binary(&xtask, &stage.join("xtask"))?;
    rows.push(("xtask".into(), size));
    std::fs::write(stage.join("manifest.txt"), manifest)?;
    std::fs::write(stage.join("run.sh"), RUNNER)?;
    std::fs::write(stage.join("COMMIT"), commit(&root))?;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let archive = out.join("tests.tar.xz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&stage)
        .args(["-cJf"])
        .arg(root.join(&archive))
        .arg(".")
        .env("XZ_OPT", "-6 -T0")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar failed ({status})");
    }
    let packed = std::fs::metadata(&archive)?.len();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "{stripped_binary:<28} {mib:>10}",
        stripped_binary = "stripped binary",
        mib = "MiB"
    );
    for (name, size) in &rows {
        println!("{name:<28} {mib_size:>10.1}", mib_size = mib(*size));
    }
    let total: u64 = rows.iter().map(|r| r.1).sum();
    println!(
        "{total:<28} {mib_total:>10.1}",
        total = "total",
        mib_total = mib(total)
    );
    println!(
        "{archive_display}: {mib_packed:.1} MiB ({binaries_len} test binaries)",
        archive_display = archive.display(),
        mib_packed = mib(packed),
        binaries_len = binaries.len()
    );
    if mib(packed) > max_mib {
        bail!(
            "{archive_display} is {mib_packed:.1} MiB, over the {max_mib} MiB budget (the device carries 64 MiB per call, the checkout included)",
            archive_display = archive.display(),
            mib_packed = mib(packed)
        );
    }
    Ok(())
}

/// `cargo test --no-run` of [`CRATES`]; the test executables from cargo's
/// JSON messages.
fn build(root: &Path) -> Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for c in CRATES {
        cmd.args(["-p", c]);
    }
    eprintln!(
        "xtask gpu-tests: cargo test --no-run -p {}",
        CRATES.join(" -p ")
    );
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo}"))?;
    if !out.status.success() {
        bail!("`cargo test --no-run` failed ({})", out.status);
    }
    let binaries = parse_artifacts(&String::from_utf8_lossy(&out.stdout), root)?;
    if binaries.is_empty() {
        bail!("cargo built no test executables");
    }
    Ok(binaries)
}

/// Test executables in cargo's JSON messages, crate folders relative to `root`.
fn parse_artifacts(json_lines: &str, root: &Path) -> Result<Vec<TestBinary>> {
    let mut out = Vec::new();
    for line in json_lines.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("cargo message is not JSON: {line}"))?;
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let (Some(exe), Some(name), Some(manifest)) = (
            v["executable"].as_str(),
            v["target"]["name"].as_str(),
            v["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .unwrap_or(Path::new("."))
            .strip_prefix(root)
            .with_context(|| {
                format!(
                    "{manifest} is outside {root_display}",
                    root_display = root.display()
                )
            })?;
        out.push(TestBinary {
            name: name.to_string(),
            crate_dir: dir.to_string_lossy().into_owned(),
            executable: exe.into(),
        });
    }
    Ok(out)
}

/// Copies `src` to `dst` and strips it (symbols too: panics still name
/// file:line); returns the stripped size.
fn stage_binary(src: &Path, dst: &Path) -> Result<u64> {
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(src, dst).with_context(|| {
        format!(
            "copying {src_display} to {dst_display}",
            src_display = src.display(),
            dst_display = dst.display()
        )
    })?;
    let stripped = Command::new("strip").arg(dst).status();
    if !matches!(stripped, Ok(s) if s.success()) {
        eprintln!(
            "xtask gpu-tests: `strip {dst_display}` failed ({stripped:?}); packing it unstripped",
            dst_display = dst.display()
        );
    }
    Ok(std::fs::metadata(dst)?.len())
}

/// `git describe`-like id of the checkout: short hash, `+dirty` when it has changes.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!(
        "{hash}{dirty_mark}\n",
        dirty_mark = if dirty { "+dirty" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executables_are_found_in_cargo_messages() {
        let root = Path::new("/w");
        let msgs = [
            // A test executable: kept.
            r#"{"reason":"compiler-artifact","manifest_path":"/w/crates/model/Cargo.toml","target":{"name":"golden_gpu","kind":["test"]},"profile":{"test":true},"executable":"/w/target/debug/deps/golden_gpu-0123456789abcdef"}"#,
            // The library itself (no test profile) and a message of another kind: not.
            r#"{"reason":"compiler-artifact","manifest_path":"/w/crates/model/Cargo.toml","target":{"name":"qwgpu_model","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "   Compiling a line that is not JSON",
        ]
        .join("\n");
        let found = parse_artifacts(&msgs, root).unwrap();
        assert_eq!(
            found,
            vec![TestBinary {
                name: "golden_gpu".into(),
                crate_dir: "crates/model".into(),
                executable: "/w/target/debug/deps/golden_gpu-0123456789abcdef".into(),
            }]
        );
    }

    #[test]
    fn the_runner_requires_hardware_features_and_writes_coverage() {
        assert!(RUNNER.contains("QWGPU_REQUIRE_HW=\"${QWGPU_REQUIRE_HW:-1}\""));
        assert!(RUNNER.contains("QWGPU_COVERAGE_DIR="));
        assert!(RUNNER.contains("xtask\" coverage"));
    }
}
