//! End to end: the `qwgpu` binary tokenizes the prompt, runs the model and
//! streams the greedy continuation that HF transformers produced for the same
//! prompt (the fixture's `golden.json`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn qwgpu(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(args)
        .output()
        .expect("run qwgpu")
}

/// The text the fixture's tokenizer makes of HF's prompt + greedy continuation.
fn hf_text(dir: &Path) -> (String, usize) {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).expect("golden.json"))
            .expect("json");
    let ids = |key: &str| -> Vec<u32> {
        golden[key]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect()
    };
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    let prompt = tok.decode(&ids("prompt_ids"), false).expect("decode");
    let generated = ids("generated_ids");
    let full = [ids("prompt_ids"), generated.clone()].concat();
    (
        format!("{prompt}\u{0}{}", tok.decode(&full, false).expect("decode")),
        generated.len(),
    )
}

#[test]
fn greedy_generation_matches_hf_on_fixtures() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixture("")).expect("tests/fixtures") {
        let dir = entry.expect("entry").path();
        if !dir.join("golden.json").exists() {
            continue;
        }
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (joined, n) = hf_text(&dir);
        let (prompt, expected) = joined.split_once('\u{0}').expect("split");
        let n = n.to_string();
        let out = qwgpu(&[
            "generate",
            "--model",
            dir.to_str().expect("utf-8 path"),
            "--prompt",
            prompt,
            "--max-tokens",
            &n,
            "--ignore-eos",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: qwgpu failed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim_end_matches('\n'), expected, "{name}: {stderr}");
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} fixtures found");
}

#[test]
fn bundled_model_runs_without_arguments() {
    let out = qwgpu(&["generate", "--max-tokens", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("bundled"),
        "says it runs the bundled model: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("The quick brown fox"), "{stdout}");
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let run = |seed: &str| {
        let out = qwgpu(&[
            "generate",
            "--max-tokens",
            "12",
            "--temperature",
            "0.9",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--ignore-eos",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run("7"), run("7"));
}

#[test]
fn bad_inputs_are_clear_errors_not_panics() {
    let missing = qwgpu(&["generate", "--model", "/nonexistent/model"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/model/config.json"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let bad_temp = qwgpu(&["generate", "--temperature=-1"]);
    let stderr = String::from_utf8_lossy(&bad_temp.stderr);
    assert!(!bad_temp.status.success());
    assert!(stderr.contains("temperature"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn inspect_reports_the_scheme_of_every_packed_weight() {
    // (fixture, storage+scheme every quantized projection must show)
    for (name, quantized) in [
        ("moe-fp8-block", "F8_E4M3 scale block 128x128"),
        ("dense-fp8-channel", "F8_E4M3 scale per-channel"),
        ("moe-fp8-modelopt", "F8_E4M3 scale per-shard"),
        ("moe-bf16-text", "BF16 scale none"),
    ] {
        let dir = fixture(name);
        let out = qwgpu(&[
            "inspect",
            "--model",
            dir.to_str().expect("utf-8"),
            "--strict",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(quantized), "{name}: {stdout}");
        assert!(stdout.contains("0 unexpected"), "{name}: {stdout}");
    }
    // The `[3]` ModelOpt scale of in_proj_qkv plus z's own: four per-shard scales.
    let dir = fixture("dense-fp8-modelopt");
    let out = qwgpu(&[
        "inspect",
        "--model",
        dir.to_str().expect("utf-8"),
        "--weights",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("linear_attn.in_proj_qkvz")
                && l.contains("q|k|v|z")
                && l.contains("per-shard (4 scales)")
                && l.contains("static input scale")),
        "{stdout}"
    );
}
