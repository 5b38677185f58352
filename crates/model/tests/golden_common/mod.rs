//! Shared body of the golden-fixture tests (included by `golden_bf16.rs` and
//! `golden_fp8.rs`).

use qwgpu_model::golden::{check_reference, fixtures_dir, list_fixtures, GoldenMeta};

/// Checks every fixture whose quant satisfies `wanted`; fails when there is none.
pub fn check_fixtures(label: &str, wanted: impl Fn(&str) -> bool) {
    let dirs: Vec<_> = list_fixtures()
        .expect("listing fixtures")
        .into_iter()
        .filter(|d| {
            let meta = GoldenMeta::load(d).unwrap_or_else(|e| panic!("{e}"));
            wanted(&meta.quant)
        })
        .collect();
    assert!(
        !dirs.is_empty(),
        "no {label} fixtures with a golden.json under {fixtures_dir_display}",
        fixtures_dir_display = fixtures_dir().display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        match check_reference(dir) {
            Ok(report) => {
                println!("{report}");
                if !report.passed {
                    failures.push(report.to_string());
                }
            }
            Err(e) => failures.push(format!("{dir_display}: {e}", dir_display = dir.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{failure_count} of {dirs_len} {label} fixtures failed:\n{failure_list}",
        failure_count = failures.len(),
        dirs_len = dirs.len(),
        failure_list = failures.join("\n")
    );
}
