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
    // Special tokens the model emits are markup, left out of the reply text
    // (as HF's `skip_special_tokens`); the prompt is echoed as it is.
    let special: std::collections::HashSet<u32> = tok
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| id)
        .collect();
    let shown: Vec<u32> = generated
        .iter()
        .copied()
        .filter(|id| !special.contains(id))
        .collect();
    let full = [ids("prompt_ids"), shown].concat();
    let text = tok.decode(&full, false).expect("decode");
    (format!("{prompt}\u{0}{text}"), generated.len())
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
            // HF's goldens are F32: the exact GEMMs reproduce them.
            "--precision",
            "exact",
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

/// The bundled model's sampled text (no prompt echo) on `backend`.
fn sampled(backend: &str, temperature: &str, seed: &str) -> String {
    let out = qwgpu(&[
        "generate",
        "--backend",
        backend,
        "--max-tokens",
        "12",
        "--temperature",
        temperature,
        "--top-p",
        "0.9",
        "--seed",
        seed,
        "--ignore-eos",
        "--no-echo",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Same seed, same text; another seed or another temperature, other text
/// (12 tokens of a random-weight model: a coincidence is out of reach, and
/// the seeds are fixed, so the outcome is too). Greedy text differs from
/// both, so `--temperature` is not ignored either.
fn sampling_follows_seed_and_temperature(backend: &str) {
    let base = sampled(backend, "0.9", "7");
    assert_eq!(base, sampled(backend, "0.9", "7"), "same seed");
    assert_ne!(base, sampled(backend, "0.9", "8"), "seeds 7 and 8");
    assert_ne!(
        base,
        sampled(backend, "1.5", "7"),
        "temperatures 0.9 and 1.5"
    );
    assert_ne!(base, sampled(backend, "0", "7"), "sampled and greedy");
    // Greedy ignores the seed.
    assert_eq!(sampled(backend, "0", "7"), sampled(backend, "0", "8"));
}

#[test]
fn sampling_follows_seed_and_temperature_on_the_cpu() {
    sampling_follows_seed_and_temperature("cpu");
}

#[test]
fn sampling_follows_seed_and_temperature_on_the_gpu() {
    sampling_follows_seed_and_temperature("gpu");
}

/// The last line on stderr, every field in its place (the fields' values
/// are checked in `generate.rs`'s unit tests).
#[test]
fn the_last_line_reports_the_run() {
    let out = qwgpu(&[
        "generate",
        "--backend",
        "cpu",
        "--max-tokens",
        "4",
        "--ignore-eos",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let last = stderr.lines().last().expect("a last line");
    let tok = tokenizers::Tokenizer::from_file(fixture("dense-bf16-text").join("tokenizer.json"))
        .expect("tokenizer");
    let prompt_len = tok
        .encode("The quick brown fox", false)
        .expect("encode")
        .get_ids()
        .len();
    let shape = format!(
        r"^qwgpu: 4 tokens generated; time to first token [0-9]+\.[0-9]{{3}} s \(prefill {prompt_len} tokens at [0-9]+\.[0-9] tok/s\); decode 3 steps in [0-9]+\.[0-9]{{3}} s \([0-9]+\.[0-9] tok/s\) on cpu reference$"
    );
    let re = regex::Regex::new(&shape).expect("regex");
    assert!(re.is_match(last), "{last:?} does not match {shape}");
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
            "{name}: {stderr}",
            stderr = String::from_utf8_lossy(&out.stderr)
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
