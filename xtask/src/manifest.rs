//! Fixture freshness: `tests/fixtures/MANIFEST.sha256` (written by the generator)
//! must match the committed files, so a hand-edited or half-regenerated fixture
//! fails CI with the instruction to regenerate.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub fn verify(root: &Path) -> Result<()> {
    let manifest_path = root.join("MANIFEST.sha256");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut listed = BTreeSet::new();
    let mut problems = Vec::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, rel) = line.split_once("  ").with_context(|| {
            format!(
                "{manifest_path_display}: malformed line `{line}`",
                manifest_path_display = manifest_path.display()
            )
        })?;
        listed.insert(rel.to_string());
        match std::fs::read(root.join(rel)) {
            Ok(bytes) => {
                let got = format!("{:x}", Sha256::digest(&bytes));
                if got != hash {
                    problems.push(format!(
                        "{rel}: content differs from the generator's output"
                    ));
                }
            }
            Err(e) => problems.push(format!("{rel}: {e}")),
        }
    }
    for rel in walk(root)? {
        if rel != "MANIFEST.sha256" && !listed.contains(&rel) {
            problems.push(format!("{rel}: not written by the generator"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "fixtures are stale:\n  {}\nrun `cargo xtask fixtures` and commit the result",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "xtask: {} fixture files match MANIFEST.sha256",
        listed.len()
    );
    Ok(())
}

fn walk(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(out)
}
