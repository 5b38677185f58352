//! `cargo xtask package` (and a step of `ci`): the library crates package
//! and build as published, and the GPU-free crates stay GPU-free.
//!
//! - `cargo package` of every library crate at once: cargo puts the
//!   unpublished workspace dependencies in a temporary local registry, so
//!   `qwgpu-kernels` builds against the packaged `qwgpu-loader`, not the
//!   path. A file a crate reads from outside its folder (a shader, a license)
//!   or a path dependency without a version fails here, not at publish time.
//! - Verification builds each package on its own, where the workspace's
//!   `[profile]` settings do not apply: the same settings are passed as
//!   `--config`, so the dependencies (wgpu, naga) built for xtask itself are
//!   reused instead of built again unoptimised with full debug info.
//! - `qwgpu-serve` is packaged with `--no-verify`: its verification would
//!   build the HTTP stack (tokio, axum, tokenizers, minijinja) in the dev
//!   profile, which no other CI step does, and, its dependencies unifying
//!   other features, wgpu-types, naga and wgpu again: minutes on 2 cores for
//!   a crate whose build the test step already covers. Its manifest, file
//!   list and lockfile are still checked.
//! - Cargo extracts each packaged crate of that local registry under
//!   `$CARGO_HOME/registry/src/` and never extracts the same name and version
//!   again: a cargo home kept from an earlier run (a CI cache) would verify
//!   `qwgpu-model` against last run's `qwgpu-kernels`. Those extractions are
//!   removed first.
//! - `cargo tree` of the GPU-free crates (normal and build dependencies, all
//!   targets) must not name wgpu or naga.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The published crates in `cargo publish` order (each after its dependencies).
pub const PUBLISH_ORDER: &[&str] = &[
    "qwgpu-ops",
    "qwgpu-checkpoint",
    "qwgpu-loader",
    "qwgpu-kernels",
    "qwgpu-model",
    "qwgpu-serve",
];

/// Packaged without verification (see the module docs).
const NO_VERIFY: &[&str] = &["qwgpu-serve"];

/// Crates that other engines use without a GPU stack.
pub const GPU_FREE: &[&str] = &["qwgpu-ops", "qwgpu-checkpoint", "qwgpu-loader"];

/// Packages whose presence in a GPU-free crate's tree fails the check.
const GPU_PACKAGES: &[&str] = &["wgpu", "wgpu-core", "wgpu-hal", "wgpu-types", "naga"];

/// The root manifest's `[profile.dev]` settings, for the verification builds.
const PROFILE_CONFIG: &[&str] = &[
    "profile.dev.debug=\"line-tables-only\"",
    "profile.dev.package.\"*\".opt-level=2",
    "profile.dev.package.\"*\".debug=false",
];

const USAGE: &str = "usage: cargo xtask package   (the GPU-free dependency check, then cargo package of the library crates)";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        bail!("unknown argument `{a}`\n{USAGE}");
    }
    check_gpu_free()?;
    package()
}

/// `cargo package` of [`PUBLISH_ORDER`]: verified, then [`NO_VERIFY`] without.
pub fn package() -> Result<()> {
    forget_stale_extractions()?;
    let verified: Vec<&str> = PUBLISH_ORDER
        .iter()
        .copied()
        .filter(|c| !NO_VERIFY.contains(c))
        .collect();
    let mut args = vec!["package", "--allow-dirty"];
    for c in &verified {
        args.extend(["-p", c]);
    }
    for c in PROFILE_CONFIG {
        args.extend(["--config", c]);
    }
    cargo(&args)?;
    // Packaged with the crates it depends on (the local registry needs them).
    let mut args = vec!["package", "--allow-dirty", "--no-verify"];
    for c in PUBLISH_ORDER {
        args.extend(["-p", c]);
    }
    cargo(&args)
}

/// Removes `$CARGO_HOME/registry/{src,cache}` copies of our own crates (see
/// the module docs): they only ever come from an earlier `cargo package`.
fn forget_stale_extractions() -> Result<()> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(h) => std::path::PathBuf::from(h),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::PathBuf::from(h).join(".cargo"),
            None => return Ok(()),
        },
    };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            let Ok(entries) = std::fs::read_dir(registry.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = PUBLISH_ORDER.iter().any(|c| {
                    name.strip_prefix(c)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|v| v.starts_with(|ch: char| ch.is_ascii_digit()))
                });
                if !ours {
                    continue;
                }
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed
                    .with_context(|| format!("removing the stale {path}", path = path.display()))?;
                eprintln!("xtask: removed a stale copy {path}", path = path.display());
            }
        }
    }
    Ok(())
}

/// Fails when wgpu or naga appears among a [`GPU_FREE`] crate's dependencies.
pub fn check_gpu_free() -> Result<()> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in GPU_FREE {
        let out = Command::new(&cargo_bin)
            .args([
                "tree",
                "-p",
                krate,
                "--edges",
                "normal,build",
                "--target",
                "all",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .output()
            .with_context(|| format!("running {cargo_bin} tree"))?;
        if !out.status.success() {
            bail!(
                "`cargo tree -p {krate}` failed: {stderr}",
                stderr = String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let found = gpu_packages(&tree);
        if !found.is_empty() {
            bail!(
                "{krate} must not depend on a GPU stack, but its dependency tree has {list} \
                 (`cargo tree -p {krate} -i {first}` shows the path)",
                list = found.join(", "),
                first = found[0]
            );
        }
        eprintln!("xtask: {krate}: no wgpu / naga in its dependency tree");
    }
    Ok(())
}

/// The [`GPU_PACKAGES`] named in `cargo tree --prefix none --format {p}` output.
fn gpu_packages(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| GPU_PACKAGES.contains(name))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {joined}", joined = args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!(
            "`cargo {joined}` failed ({status})",
            joined = args.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_packages_are_found_by_name_not_prefix() {
        let tree = "qwgpu-loader v0.1.0 (/x)\nregex v1.13.2\nwgpu-types v30.0.2\nnaga v30.0.2\nwgpu-typesish v1.0.0\nnaga v30.0.2\n";
        assert_eq!(gpu_packages(tree), vec!["naga", "wgpu-types"]);
        assert!(gpu_packages("qwgpu-ops v0.1.0 (/x)\n").is_empty());
    }
}
