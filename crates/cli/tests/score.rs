//! `qwgpu score` end to end on the tiny dense fixture: its log-probabilities
//! equal an independent computation (the engine's CPU reference forward_all
//! and a log-softmax written here), perplexity is exp(mean NLL), sliding
//! windows give each token its window's context, a model against itself
//! gives KL 0 and top-1 agreement 1, the GPU agrees with the CPU, and bad
//! inputs are clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use qwgpu_model::engine::{Backend, LoadOptions, Model};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text")
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog, twice.";

/// Runs `qwgpu score --model FIXTURE ARGS`; returns (success, stdout, stderr).
fn score(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(["score", "--model", fixture().to_str().expect("utf-8")])
        .args(args)
        .env_remove("QWGPU_LOG")
        .output()
        .expect("run qwgpu score");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// `score --json --tokens` on TEXT (written to a temp file) with `extra` flags.
fn score_json(extra: &[&str]) -> serde_json::Value {
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("text.txt");
    std::fs::write(&path, TEXT).expect("write");
    let mut args = vec![
        "--text",
        path.to_str().expect("utf-8"),
        "--json",
        "--tokens",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = score(&args);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).expect("json")
}

fn ids(json: &serde_json::Value) -> Vec<u32> {
    json["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

fn logprobs(json: &serde_json::Value) -> Vec<f64> {
    json["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["logprob"].as_f64().expect("logprob"))
        .collect()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let lse = max
        + row
            .iter()
            .map(|&x| (f64::from(x) - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&x| f64::from(x) - lse).collect()
}

fn cpu_model() -> Model {
    Model::load(
        &fixture(),
        &LoadOptions {
            backend: Backend::Cpu,
            ..Default::default()
        },
    )
    .expect("load")
}

/// log P(ids[i] | ids[begin..i]) from a fresh CPU session.
fn reference_logprob(model: &Model, ids: &[u32], begin: usize, i: usize) -> f64 {
    let mut s = model.new_session().expect("session");
    let logits = model
        .forward_all(&mut s, &ids[begin..i])
        .expect("forward_all");
    let v = model.config().vocab_size;
    log_softmax(&logits[logits.len() - v..])[ids[i] as usize]
}

#[test]
fn log_probabilities_and_perplexity_match_the_cpu_reference() {
    let json = score_json(&["--backend", "cpu"]);
    let ids = ids(&json);
    let got = logprobs(&json);
    assert_eq!(got.len(), ids.len() - 1);
    let model = cpu_model();
    let mut s = model.new_session().expect("session");
    let logits = model.forward_all(&mut s, &ids).expect("forward_all");
    let v = model.config().vocab_size;
    let mut nll = 0.0;
    for (i, &lp) in got.iter().enumerate() {
        let want = log_softmax(&logits[i * v..(i + 1) * v])[ids[i + 1] as usize];
        assert!(
            (lp - want).abs() < 1e-6,
            "position {}: {lp} vs {want}",
            i + 1
        );
        nll -= want;
    }
    let mean = nll / got.len() as f64;
    let ppl = json["perplexity"].as_f64().expect("perplexity");
    assert!((json["mean_nll"].as_f64().expect("nll") - mean).abs() < 1e-6);
    assert!(
        (ppl - mean.exp()).abs() < 1e-6 * ppl,
        "{ppl} vs {}",
        mean.exp()
    );
}

#[test]
fn sliding_windows_give_each_token_its_windows_context() {
    let json = score_json(&["--backend", "cpu", "--window", "4", "--stride", "2"]);
    let ids = ids(&json);
    let got = logprobs(&json);
    assert_eq!(got.len(), ids.len() - 1, "each token but the first, once");
    let model = cpu_model();
    // Windows [0,4) scores 1..4, [2,6) scores 4..6, [4,8) scores 6..8, ...:
    // position p >= 4 is scored with the context from 2 * ((p - 2) / 2).
    for p in [1, 3, 4, 5, 6, 9] {
        let begin = if p < 4 { 0 } else { 2 * ((p - 2) / 2) };
        let want = reference_logprob(&model, &ids, begin, p);
        // The CPU reference splits its work differently when the context
        // runs apart from the scored tokens: rounding of ~1e-7 relative.
        assert!(
            (got[p - 1] - want).abs() < 1e-5,
            "position {p}: {} vs {want}",
            got[p - 1]
        );
    }
    // The whole prefix as context gives another number: the window matters.
    let full = reference_logprob(&model, &ids, 0, 9);
    assert!((got[8] - full).abs() > 1e-3, "{} vs {full}", got[8]);
}

#[test]
fn a_model_against_itself_has_kl_zero_and_full_top1_agreement() {
    let dir = fixture();
    let json = score_json(&[
        "--backend",
        "cpu",
        "--reference",
        dir.to_str().expect("utf-8"),
    ]);
    let r = &json["reference"];
    assert_eq!(r["mean_kl"].as_f64(), Some(0.0), "{json:#}");
    assert_eq!(r["max_kl"].as_f64(), Some(0.0));
    assert_eq!(r["top1_agreement"].as_f64(), Some(1.0));
    assert_eq!(r["perplexity"], json["perplexity"]);
    for t in json["tokens"].as_array().expect("tokens") {
        assert_eq!(t["kl"].as_f64(), Some(0.0));
        assert_eq!(t["argmax"], t["reference_argmax"]);
    }
    // The table shows the same summary.
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("t.txt");
    std::fs::write(&path, TEXT).expect("write");
    let (ok, stdout, stderr) = score(&[
        "--backend",
        "cpu",
        "--text",
        path.to_str().expect("utf-8"),
        "--reference",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("top-1 agreement 1.0000"), "{stdout}");
    assert!(
        stdout.contains("KL(reference || model): mean 0.000000e0"),
        "{stdout}"
    );
}

#[test]
fn gpu_scores_match_the_cpu_reference() {
    let cpu = logprobs(&score_json(&["--backend", "cpu"]));
    let gpu = logprobs(&score_json(&["--backend", "gpu"]));
    assert_eq!(cpu.len(), gpu.len());
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert!((c - g).abs() < 1e-3, "position {}: cpu {c} gpu {g}", i + 1);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = tempfile::tempdir().expect("tempdir");
    let empty = d.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let missing = d.path().join("missing.txt");
    let one = d.path().join("one.txt");
    std::fs::write(&one, "a").expect("write");
    let (empty, missing, one) = (
        empty.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
        one.to_str().expect("utf-8"),
    );
    for (args, want) in [
        (&["--text", missing][..], "reading --text"),
        (&["--text", empty][..], "the file is empty"),
        (&["--text", one][..], "scoring needs at least 2"),
        (
            &["--ids", "1,2,512"][..],
            "token id 512 (at position 2) is outside the model's vocabulary of 512",
        ),
        (&["--ids", "1,x"][..], "\"x\" is not a token id"),
        (&["--ids", "5"][..], "scoring needs at least 2"),
        (
            &["--ids", "1,2,3", "--window", "1"][..],
            "--window 1: must be at least 2",
        ),
        (
            &["--ids", "1,2,3", "--window", "8", "--stride", "9"][..],
            "--stride 9: must be in 1..=8",
        ),
        (
            &["--ids", "1,2,3", "--window", "5000"][..],
            "larger than the model's context length of 4096",
        ),
        (&[][..], "--text <TEXT>|--ids <IDS>"),
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--backend", "cpu"]);
        let (ok, _, stderr) = score(&all);
        assert!(!ok, "{args:?} should fail");
        assert!(
            stderr.contains(want),
            "{args:?}: expected {want:?} in {stderr}"
        );
    }
    let (ok, stdout, stderr) = score(&["--ids", "1,2,3", "--backend", "cpu"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 tokens scored"), "{stdout}");
}
