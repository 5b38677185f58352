//! The test harness itself (`qwgpu_kernels::testing`): the default columns
//! include trusted (release) shader modules, and a test's requirements are
//! recorded per context in the coverage files that `cargo xtask ci` and
//! `cargo xtask gpu-tests` summarise.

use qwgpu_kernels::testing::{self, Feature, Variant};

#[test]
fn the_default_columns_include_trusted_modules() {
    let all = testing::parse_variants("").unwrap();
    assert_eq!(all, [Variant::Full, Variant::Trusted, Variant::Fallback]);
    let trusted = Variant::Trusted.options();
    assert_eq!(
        trusted.runtime_checks,
        Some(false),
        "trusted: no bounds checks, no zeroed workgroup memory"
    );
    // The shared trusted context opens on the CI adapter (lavapipe).
    let t = testing::context(Variant::Trusted);
    assert_eq!(t.variant, Variant::Trusted);
    assert!(t.name.ends_with(" trusted]"), "{}", t.name);
}

/// Run by `coverage_records_name_test_context_adapter_and_skips` in a child
/// process with its own `QWGPU_COVERAGE_DIR`.
#[test]
#[ignore = "child of coverage_records_name_test_context_adapter_and_skips"]
fn coverage_child() {
    let with_subgroups = testing::contexts_with(&[Feature::Subgroups]);
    assert!(with_subgroups
        .iter()
        .all(|t| t.variant != Variant::Fallback));
    assert_eq!(testing::contexts().len(), 2);
}

#[test]
fn coverage_records_name_test_context_adapter_and_skips() {
    let dir = std::env::temp_dir().join(format!("qwgpu-coverage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "harness::coverage_child",
            "--test-threads",
            "1",
        ])
        .env("QWGPU_COVERAGE_DIR", &dir)
        .env("QWGPU_TEST_VARIANTS", "full,fallback")
        .env("QWGPU_REQUIRE_HW", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}{stderr}",
        stdout = String::from_utf8_lossy(&out.stdout),
        stderr = String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one file per process");
    let name = files[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with("kernels-") && name.ends_with(".jsonl"),
        "{name}"
    );
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let adapter = &testing::context(Variant::Full).ctx.info.name;
    for l in &lines {
        assert!(
            l.starts_with(r#"{"binary":"kernels","test":"harness::coverage_child","context":""#),
            "{l}"
        );
        assert!(l.contains(&format!(r#""adapter":"{adapter}""#)), "{l}");
    }
    // Fallback: skipped for subgroups (turned off by the variant), then run by
    // the plain `contexts()` call; full: run (or skipped where the adapter
    // lacks subgroups).
    assert!(
        lines.iter().any(|l| l.contains(r#""context":"fallback""#)
            && l.contains(r#""outcome":"skipped","missing":"subgroups","by_variant":true"#)),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""context":"full""#) && l.contains(r#""outcome":"#)),
        "{text}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(r#""context":"trusted""#)),
        "QWGPU_TEST_VARIANTS=full,fallback: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every suite's source, compiled in (the binary also runs away from the
/// checkout, on the GPU machine).
const SUITES: [(&str, &str); 19] = [
    ("attention.rs", include_str!("attention.rs")),
    ("context.rs", include_str!("context.rs")),
    ("coop_peak.rs", include_str!("coop_peak.rs")),
    ("copy.rs", include_str!("copy.rs")),
    ("embed.rs", include_str!("embed.rs")),
    ("gdn.rs", include_str!("gdn.rs")),
    ("gemv_bench.rs", include_str!("gemv_bench.rs")),
    ("matmul.rs", include_str!("matmul.rs")),
    ("matmul_coop.rs", include_str!("matmul_coop.rs")),
    ("matmul_coop_f16.rs", include_str!("matmul_coop_f16.rs")),
    ("matmul_coop_fast.rs", include_str!("matmul_coop_fast.rs")),
    (
        "matmul_coop_skinny.rs",
        include_str!("matmul_coop_skinny.rs"),
    ),
    ("matmul_int4.rs", include_str!("matmul_int4.rs")),
    ("matmul_norm.rs", include_str!("matmul_norm.rs")),
    ("moe.rs", include_str!("moe.rs")),
    ("moe_coop.rs", include_str!("moe_coop.rs")),
    ("moe_grouped.rs", include_str!("moe_grouped.rs")),
    ("norm.rs", include_str!("norm.rs")),
    ("sample.rs", include_str!("sample.rs")),
];

/// With `autotests = false`, a file of `tests/` compiles only where it is named:
/// every one is a suite of the `kernels` binary (and in [`SUITES`]) or a
/// `[[test]]` of its own in Cargo.toml, so none is silently left out.
#[test]
fn every_test_file_is_compiled() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let manifest = include_str!("../Cargo.toml");
    let binary = include_str!("kernels.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(".rs") || name == "kernels.rs" || name == "harness.rs" {
            continue;
        }
        let in_binary = binary.contains(&format!("#[path = \"{name}\"]"))
            && SUITES.iter().any(|(f, _)| *f == name);
        let own_target = manifest.contains(&format!("path = \"tests/{name}\""));
        if !(in_binary || own_target) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "test files compiled by no target (add them to tests/kernels.rs and SUITES, or a [[test]]): {missing:?}"
    );
}

/// Randomised tests take fixed seeds (`testing::seed` prints them and accepts
/// `QWGPU_TEST_SEED`): a seed from the clock makes a failure unreplayable.
#[test]
fn no_suite_seeds_from_the_clock() {
    let mut offenders = Vec::new();
    for (file, text) in SUITES {
        for needle in ["SystemTime", "UNIX_EPOCH", "thread_rng", "from_entropy"] {
            if text.contains(needle) {
                offenders.push(format!("{file}: {needle}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "clock or entropy seeds: {offenders:?}"
    );
}

/// Every suite of `tests/` is a module of this binary: a file left out of
/// `kernels.rs` would never run.
#[test]
fn every_suite_is_in_the_binary() {
    let root = include_str!("kernels.rs");
    for (file, _) in SUITES {
        assert!(
            root.contains(&format!("#[path = \"{file}\"]")),
            "{file} is not a module of tests/kernels.rs"
        );
    }
}
