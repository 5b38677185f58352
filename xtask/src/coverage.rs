//! The coverage table: what the GPU test harness (`qwgpu_kernels::testing`)
//! recorded in `QWGPU_COVERAGE_DIR` — per test binary and context column, how
//! many tests ran and how many were skipped for which missing feature, and
//! which features each adapter had. Printed by `cargo xtask ci`, by the
//! GPU machine's runner (`xtask coverage DIR`, see `gpu_tests`) and on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One JSON line of a coverage file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub binary: String,
    pub test: String,
    pub context: String,
    pub adapter: String,
    #[serde(default)]
    pub backend: String,
    pub cpu: bool,
    pub features: Vec<String>,
    /// `ran`, `skipped` or `failed` (a feature that must exist is missing).
    pub outcome: String,
    /// The missing feature (or `limit: …`) of a skip or failure.
    #[serde(default)]
    pub missing: Option<String>,
    /// The context's variant turns the feature off on purpose (fallback).
    #[serde(default)]
    pub by_variant: bool,
}

/// Test binaries that must leave records in a full test run (`cargo xtask
/// ci`): the kernel suites, the model's GPU tests and golden GPU tests, the
/// server's GPU tests (its prefix-cache accounting on the GPU too) and the
/// released-template tests. One missing means its tests stopped going
/// through the harness, and its skips would be invisible.
pub const EXPECTED_BINARIES: [&str; 8] = [
    "kernels",
    "qwgpu_model",
    "gpu_model",
    "gpu_load",
    "golden_gpu",
    "server",
    "cache_accounting",
    "released_template",
];

/// The binaries of [`EXPECTED_BINARIES`] without a record in `records`.
pub fn missing_binaries(records: &[Record]) -> Vec<&'static str> {
    EXPECTED_BINARIES
        .into_iter()
        .filter(|b| !records.iter().any(|r| r.binary == *b))
        .collect()
}

/// `cargo xtask coverage DIR`: prints the table of DIR's records.
pub fn run(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!("usage: cargo xtask coverage DIR   (a QWGPU_COVERAGE_DIR of a test run)");
    };
    let records = load(Path::new(dir))?;
    print!("{}", table(&records));
    if records.is_empty() {
        bail!("no coverage records in {dir}");
    }
    Ok(())
}

/// Every record of every `*.jsonl` file in `dir` (none if it does not exist).
pub fn load(dir: &Path) -> Result<Vec<Record>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let r: Record = serde_json::from_str(line).with_context(|| {
                format!(
                    "{path_display} line {i_1}: {line}",
                    path_display = path.display(),
                    i_1 = i + 1
                )
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

/// Counts of one (binary, context) cell.
#[derive(Default)]
struct Cell {
    ran: usize,
    /// Missing feature (with "(by variant)") → number of tests.
    skipped: BTreeMap<String, usize>,
    /// Missing feature that must exist → number of tests.
    failed: BTreeMap<String, usize>,
}

/// Why one test did not simply run on one context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NotRun {
    Failed(String),
    Skipped(String),
}

/// The table: one row per (binary, context), then each adapter's features
/// per context. A (test, context) with a failure record counts as failed,
/// else with a skip record as skipped.
pub fn table(records: &[Record]) -> String {
    // (binary, context) → test → reasons it did not run (empty: ran).
    let mut outcomes: BTreeMap<(String, String), BTreeMap<String, BTreeSet<NotRun>>> =
        BTreeMap::new();
    // (adapter, backend, cpu) → context → features.
    let mut adapters: BTreeMap<(String, String, bool), BTreeMap<String, BTreeSet<String>>> =
        BTreeMap::new();
    for r in records {
        let reasons = outcomes
            .entry((r.binary.clone(), r.context.clone()))
            .or_default()
            .entry(r.test.clone())
            .or_default();
        let missing = r.missing.clone().unwrap_or_else(|| "?".into());
        match r.outcome.as_str() {
            "ran" => {}
            "failed" => {
                reasons.insert(NotRun::Failed(missing));
            }
            _ if r.by_variant => {
                reasons.insert(NotRun::Skipped(format!("{missing} (by variant)")));
            }
            _ => {
                reasons.insert(NotRun::Skipped(missing));
            }
        }
        // Tests that use no device (a `host` column) list no adapter.
        if r.adapter.is_empty() {
            continue;
        }
        adapters
            .entry((r.adapter.clone(), r.backend.clone(), r.cpu))
            .or_default()
            .entry(r.context.clone())
            .or_default()
            .extend(r.features.iter().cloned());
    }
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for (key, tests) in &outcomes {
        let cell = cells.entry(key.clone()).or_default();
        for reasons in tests.values() {
            // Failures first (the set is ordered): one verdict per test.
            match reasons.iter().next() {
                None => cell.ran += 1,
                Some(NotRun::Failed(why)) => *cell.failed.entry(why.clone()).or_default() += 1,
                Some(NotRun::Skipped(_)) => {
                    for r in reasons {
                        if let NotRun::Skipped(why) = r {
                            *cell.skipped.entry(why.clone()).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    let mut s = String::new();
    let binaries: BTreeSet<&str> = records.iter().map(|r| r.binary.as_str()).collect();
    let _ = writeln!(
        s,
        "GPU test coverage: {records_len} records from {binaries_len} test binaries",
        records_len = records.len(),
        binaries_len = binaries.len()
    );
    if records.is_empty() {
        let _ = writeln!(s, "  (none: no test went through qwgpu_kernels::testing)");
        return s;
    }
    let bw = cells.keys().map(|k| k.0.len()).max().unwrap_or(6).max(6);
    let cw = cells.keys().map(|k| k.1.len()).max().unwrap_or(7).max(7);
    let _ = writeln!(
        s,
        "  {binary:<bw$}  {context:<cw$}  {ran:>5}  {skipped:>7}  {failed:>6}  missing (tests)",
        binary = "binary",
        context = "context",
        ran = "ran",
        skipped = "skipped",
        failed = "failed"
    );
    for ((binary, context), cell) in &cells {
        let skipped: usize = cell.skipped.values().sum();
        let failed: usize = cell.failed.values().sum();
        let why = cell
            .failed
            .iter()
            .map(|(w, n)| format!("FAILED {w}: {n}"))
            .chain(cell.skipped.iter().map(|(w, n)| format!("{w}: {n}")))
            .collect::<Vec<_>>()
            .join(", ");
        let ran = cell.ran;
        let _ = writeln!(
            s,
            "  {binary:<bw$}  {context:<cw$}  {ran:>5}  {skipped:>7}  {failed:>6}  {why}"
        );
    }
    let _ = writeln!(s, "Adapter features per context:");
    for ((adapter, backend, cpu), contexts) in &adapters {
        let kind = if *cpu { "CPU adapter" } else { "hardware" };
        let _ = writeln!(s, "  {adapter} ({backend}, {kind})");
        for (context, features) in contexts {
            let list = if features.is_empty() {
                "(none)".to_string()
            } else {
                features.iter().cloned().collect::<Vec<_>>().join(" ")
            };
            let _ = writeln!(s, "    {context:<cw$}  {list}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(test: &str, context: &str, outcome: &str) -> String {
        format!(
            r#"{{"binary":"kernels","test":"{test}","context":"{context}","adapter":"llvmpipe","backend":"Vulkan","cpu":true,"features":["subgroups","f16"],{outcome}}}"#
        )
    }

    #[test]
    fn the_table_counts_runs_and_skips_per_binary_and_context() {
        let dir = std::env::temp_dir().join(format!("xtask-coverage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ran = r#""outcome":"ran""#;
        let coop = r#""outcome":"skipped","missing":"cooperative_matrix","by_variant":false"#;
        let sub = r#""outcome":"skipped","missing":"subgroups","by_variant":true"#;
        let fail = r#""outcome":"failed","missing":"cooperative_matrix""#;
        let a = [
            line("gdn::a", "full", ran),
            line("gdn::b", "full", ran),
            line("coop::c", "full", coop),
            // Recorded as run first, then skipped (a limit): counts as skipped.
            line("gdn::d", "fallback", ran),
            line("gdn::d", "fallback", sub),
            // On hardware: a missing coop feature failed the test.
            line("coop::c", "trusted", fail),
        ];
        std::fs::write(dir.join("kernels-1.jsonl"), a.join("\n") + "\n").unwrap();
        std::fs::write(dir.join("other.txt"), "not a record").unwrap();
        let golden = r#"{"binary":"golden_gpu","test":"t","context":"trusted","adapter":"llvmpipe","backend":"Vulkan","cpu":true,"features":[],"outcome":"ran"}"#;
        std::fs::write(dir.join("golden_gpu-2.jsonl"), format!("{golden}\n")).unwrap();
        let records = load(&dir).unwrap();
        assert_eq!(records.len(), 7);
        let t = table(&records);
        let row = |b: &str, c: &str| {
            t.lines()
                .find(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.first() == Some(&b) && w.get(1) == Some(&c)
                })
                .unwrap_or_else(|| panic!("no row {b} {c} in\n{t}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            row("kernels", "full"),
            "kernels full 2 1 0 cooperative_matrix: 1"
        );
        assert_eq!(
            row("kernels", "trusted"),
            "kernels trusted 0 0 1 FAILED cooperative_matrix: 1"
        );
        assert_eq!(
            row("kernels", "fallback"),
            "kernels fallback 0 1 0 subgroups (by variant): 1"
        );
        assert_eq!(row("golden_gpu", "trusted"), "golden_gpu trusted 1 0 0");
        assert!(t.contains("llvmpipe (Vulkan, CPU adapter)"), "{t}");
        // Features sorted, per context.
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("full") && l.ends_with("  f16 subgroups")),
            "{t}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tests_without_a_device_show_their_skips_and_no_adapter() {
        let host = |outcome: &str| {
            format!(
                r#"{{"binary":"released_template","test":"t","context":"host","adapter":"","backend":"","cpu":false,"features":[],{outcome}}}"#
            )
        };
        let skip =
            host(r#""outcome":"skipped","missing":"template file missing","by_variant":false"#);
        let records: Vec<Record> = [skip, line("gdn::a", "full", r#""outcome":"ran""#)]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let t = table(&records);
        assert!(
            t.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")
                    == "released_template host 0 1 0 template file missing: 1"),
            "{t}"
        );
        // Only the kernels' adapter is listed.
        assert!(!t.contains("(, "), "{t}");
        assert!(t.contains("llvmpipe (Vulkan, CPU adapter)"), "{t}");
        let missing = missing_binaries(&records);
        assert!(!missing.contains(&"kernels") && !missing.contains(&"released_template"));
        assert!(missing.contains(&"gpu_model") && missing.contains(&"server"));
    }

    #[test]
    fn a_malformed_line_names_its_file_and_line() {
        let dir = std::env::temp_dir().join(format!("xtask-coverage-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x-1.jsonl"), "{\"binary\":1}\n").unwrap();
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("x-1.jsonl line 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
