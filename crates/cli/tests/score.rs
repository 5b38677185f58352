//! `qwgpu score` end to end on the tiny dense fixture: its log-probabilities
//! equal an independent computation (the engine's CPU reference forward_all
//! and a log-softmax written here), perplexity is exp(mean NLL), sliding
//! windows give each token its window's context, a model against itself
//! gives KL 0 and top-1 agreement 1, two different models give the KL
//! computed here from their reference logits (both directions), the GPU
//! agrees with the CPU, and bad inputs are clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use qwgpu_model::engine::{Backend, LoadOptions, Model};

fn fixture() -> PathBuf {
    fixture_named("dense-bf16-text")
}

fn fixture_named(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog, twice.";

/// Runs `qwgpu score --model FIXTURE ARGS`; returns (success, stdout, stderr).
fn score(args: &[&str]) -> (bool, String, String) {
    score_model(&fixture(), args)
}

/// Runs `qwgpu score --model MODEL ARGS`; returns (success, stdout, stderr).
fn score_model(model: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(["score", "--model", model.to_str().expect("utf-8")])
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
    score_model_json(&fixture(), extra)
}

/// `score --model MODEL --json --tokens` on TEXT with `extra` flags.
fn score_model_json(model: &Path, extra: &[&str]) -> serde_json::Value {
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
    let (ok, stdout, stderr) = score_model(model, &args);
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
    cpu_model_at(&fixture())
}

fn cpu_model_at(dir: &Path) -> Model {
    Model::load(
        dir,
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
            "position {pos}: {lp} vs {want}",
            pos = i + 1
        );
        nll -= want;
    }
    let mean = nll / got.len() as f64;
    let ppl = json["perplexity"].as_f64().expect("perplexity");
    assert!((json["mean_nll"].as_f64().expect("nll") - mean).abs() < 1e-6);
    assert!(
        (ppl - mean.exp()).abs() < 1e-6 * ppl,
        "{ppl} vs {want}",
        want = mean.exp()
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
            "position {p}: {got_p} vs {want}",
            got_p = got[p - 1]
        );
    }
    // The whole prefix as context gives another number: the window matters.
    let full = reference_logprob(&model, &ids, 0, 9);
    assert!(
        (got[8] - full).abs() > 1e-3,
        "{windowed} vs {full}",
        windowed = got[8]
    );
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

/// KL(P ‖ Q) = Σ_v P(v) · (log P(v) − log Q(v)) in nats, from logits.
fn kl_from_logits(p: &[f32], q: &[f32]) -> f64 {
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// `--reference` against another model (the dense and the MoE fixture: one
/// tokenizer, different weights): each token's KL is KL(P_reference ‖
/// P_model) of the next-token distributions predicting it, computed here from
/// both models' CPU reference `forward_all` logits; the summary is their
/// per-token mean and max, the top-1 agreement the share of equal argmaxes.
/// Both directions: KL is asymmetric, so swapping the roles (or a reversed
/// formula) gives other numbers, and each run must report its own direction.
#[test]
fn kl_against_another_model_equals_the_reference_computation_both_ways() {
    let (dense, moe) = (fixture(), fixture_named("moe-bf16-text"));
    let json = score_json(&["--backend", "cpu"]);
    let tokens = ids(&json);
    let v = cpu_model().config().vocab_size;
    let logits = |dir: &Path| {
        let m = cpu_model_at(dir);
        assert_eq!(
            m.config().vocab_size,
            v,
            "{dir}: one vocabulary",
            dir = dir.display()
        );
        let mut s = m.new_session().expect("session");
        m.forward_all(&mut s, &tokens[..tokens.len() - 1])
            .expect("forward_all")
    };
    let (ld, lm) = (logits(&dense), logits(&moe));
    let n = tokens.len() - 1;
    let mut reported = Vec::new();
    for (model, reference, lmod, lref) in [(&dense, &moe, &ld, &lm), (&moe, &dense, &lm, &ld)] {
        let what = format!(
            "model {model} / reference {reference}",
            model = model.display(),
            reference = reference.display()
        );
        let json = score_model_json(
            model,
            &[
                "--backend",
                "cpu",
                "--reference",
                reference.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(ids(&json), tokens, "{what}: the same tokens");
        let rows = json["tokens"].as_array().expect("tokens");
        assert_eq!(rows.len(), n, "{what}");
        let mut want = Vec::with_capacity(n);
        let mut agree = 0;
        for (i, row) in rows.iter().enumerate() {
            let (pm, pr) = (&lmod[i * v..(i + 1) * v], &lref[i * v..(i + 1) * v]);
            let k = kl_from_logits(pr, pm);
            let got = row["kl"].as_f64().expect("kl");
            assert!(
                (got - k).abs() <= 1e-6 * k.max(1e-3),
                "{what}: position {pos}: KL {got} vs {k} computed here (reversed: {rev})",
                pos = i + 1,
                rev = kl_from_logits(pm, pr)
            );
            let (am, ar) = (argmax(pm), argmax(pr));
            assert_eq!(
                row["argmax"].as_u64(),
                Some(am as u64),
                "{what}: position {pos}",
                pos = i + 1
            );
            assert_eq!(
                row["reference_argmax"].as_u64(),
                Some(ar as u64),
                "{what}: position {pos}",
                pos = i + 1
            );
            agree += usize::from(am == ar);
            want.push(k);
        }
        let r = &json["reference"];
        let mean = want.iter().sum::<f64>() / n as f64;
        let (max_at, max) =
            want.iter().enumerate().fold(
                (0, 0.0f64),
                |b, (i, &k)| if k > b.1 { (i + 1, k) } else { b },
            );
        let mean_got = r["mean_kl"].as_f64().expect("mean_kl");
        assert!(
            (mean_got - mean).abs() <= 1e-6 * mean,
            "{what}: mean KL {mean_got} vs {mean}"
        );
        let max_got = r["max_kl"].as_f64().expect("max_kl");
        assert!(
            (max_got - max).abs() <= 1e-6 * max,
            "{what}: max KL {max_got} vs {max}"
        );
        assert_eq!(r["max_kl_position"].as_u64(), Some(max_at as u64), "{what}");
        assert_eq!(
            r["top1_agreement"].as_f64(),
            Some(agree as f64 / n as f64),
            "{what}"
        );
        assert_eq!(
            r["kl_direction"].as_str(),
            Some("KL(reference || model), nats"),
            "{what}"
        );
        assert!(mean > 0.05, "{what}: the two models are far apart ({mean})");
        reported.push(mean_got);
    }
    // The directions differ by far more than the tolerance above: a run that
    // reported the other direction's numbers could not pass.
    let (a, b) = (reported[0], reported[1]);
    assert!((a - b).abs() > 1e-3 * a.max(b), "KL both ways: {a} vs {b}");
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

#[test]
fn gpu_scores_match_the_cpu_reference() {
    let cpu = logprobs(&score_json(&["--backend", "cpu"]));
    // The exact GEMMs: the CPU reference is f32.
    let gpu = logprobs(&score_json(&["--backend", "gpu", "--precision", "exact"]));
    assert_eq!(cpu.len(), gpu.len());
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert!(
            (c - g).abs() < 1e-3,
            "position {pos}: cpu {c} gpu {g}",
            pos = i + 1
        );
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

/// Without `--model`, `score` scores with the bundled model (and says so),
/// the same numbers as with the fixture's folder named.
#[test]
fn score_runs_the_bundled_model_without_a_model_flag() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "score",
            "--ids",
            "10,11,12,13,14",
            "--backend",
            "cpu",
            "--json",
        ])
        .env("QWGPU_CACHE_DIR", cache.path())
        .env_remove("QWGPU_LOG")
        .output()
        .expect("run qwgpu score");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("running the bundled"), "{stderr}");
    let bundled: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let (ok, named, err) = score(&["--ids", "10,11,12,13,14", "--backend", "cpu", "--json"]);
    assert!(ok, "{err}");
    let named: serde_json::Value = serde_json::from_str(&named).expect("json");
    assert!(bundled["mean_nll"].is_number(), "{bundled}");
    assert_eq!(
        bundled["mean_nll"], named["mean_nll"],
        "{bundled} / {named}"
    );
}
