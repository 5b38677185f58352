//! `qwgpu generate`'s user-facing messages, one test each: flags checked
//! before anything is read, model-folder problems found before any weight is
//! loaded, context length, end-of-sequence ids, non-finite logits, what goes
//! to stdout (chat answers only, plain completions echoed unless --no-echo),
//! the final numbers, quiet warnings and a reader that closes the pipe.
//! They run the CPU backend on the tiny dense fixture unless the GPU is the point.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text")
}

fn qwgpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(args)
        .env_remove("QWGPU_LOG")
        .env_remove("NO_COLOR")
        .output()
        .expect("run qwgpu")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `generate --model DIR ARGS --backend cpu` and returns (success, stdout, stderr).
fn generate(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["generate", "--model", dir.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    if !args.contains(&"--backend") {
        all.extend_from_slice(&["--backend", "cpu"]);
    }
    let out = qwgpu(&all);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), text(&out.stdout), stderr)
}

/// A copy of the dense fixture (without its goldens) in a temporary folder,
/// changed by `edit`.
fn fixture_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture().join(f), d.path().join(f)).expect("copy fixture file");
    }
    edit(d.path());
    d
}

/// Rewrites a JSON file of `dir`.
fn edit_json(dir: &Path, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(file);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
}

fn assert_error(ok: bool, stderr: &str, want: &str) {
    assert!(
        !ok,
        "expected an error containing {want:?}; stderr: {stderr}"
    );
    assert!(stderr.contains(want), "expected {want:?} in: {stderr}");
}

#[test]
fn out_of_range_sampling_flags_are_errors() {
    for (flags, want) in [
        (&["--top-p", "NaN"][..], "--top-p NaN: must be in (0, 1]"),
        (&["--top-p", "1.5"][..], "--top-p 1.5: must be in (0, 1]"),
        (&["--top-p", "0"][..], "--top-p 0: must be in (0, 1]"),
        (
            &["--temperature", "nan"][..],
            "--temperature NaN: must be 0",
        ),
        (
            &["--temperature", "inf"][..],
            "--temperature inf: must be 0",
        ),
        (&["--temperature=-0.5"][..], "--temperature -0.5: must be 0"),
        (
            &["--max-tokens", "0"][..],
            "--max-tokens 0: nothing to generate",
        ),
    ] {
        // No --model: the flags are checked before even the bundled model is unpacked.
        let mut args = vec!["generate"];
        args.extend_from_slice(flags);
        let out = qwgpu(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
        assert!(!stderr.contains("bundled"), "{flags:?}: {stderr}");
    }
    let out = qwgpu(&["generate", "--system", "be brief"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--chat"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_tokenizer_is_reported_before_any_weight_is_read() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture().join("config.json"), d.path().join("config.json")).expect("copy");
    // Garbage weights: reading them first would report the header instead.
    std::fs::write(
        d.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .expect("write");
    let (ok, _, stderr) = generate(d.path(), &[]);
    assert_error(ok, &stderr, "tokenizer.json: missing");
    assert!(!stderr.contains("safetensors"), "{stderr}");
}

#[test]
fn context_overflow_is_an_error_unless_allowed_with_a_quiet_warning() {
    let d = fixture_copy(|dir| {
        edit_json(dir, "config.json", |c| {
            c["max_position_embeddings"] = 8.into()
        })
    });
    let args = ["--prompt", "The quick brown fox", "--max-tokens", "6"];
    let (ok, _, stderr) = generate(d.path(), &args);
    assert_error(ok, &stderr, "exceeds the model's context length of 8");
    assert!(stderr.contains("--allow-context-overflow"), "{stderr}");

    let mut allowed = args.to_vec();
    allowed.extend_from_slice(&["--allow-context-overflow", "--ignore-eos"]);
    let (ok, _, stderr) = generate(d.path(), &allowed);
    assert!(ok, "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("exceeds the model's context length of 8"))
        .unwrap_or_else(|| panic!("no warning in: {stderr}"));
    // Not a terminal: no colour codes; no timestamp or module path either.
    assert!(
        warning.starts_with(" WARN ") || warning.starts_with("WARN "),
        "{warning:?}"
    );
    assert!(!stderr.contains('\u{1b}'), "ANSI escape in: {stderr:?}");
    assert!(!warning.contains("qwgpu_cli"), "{warning:?}");
}

#[test]
fn eos_ids_must_be_token_ids_of_the_vocabulary() {
    let too_big = 4_294_967_298u64; // 2^32 + 2: must not wrap to 2
    for (file, value, want) in [
        (
            "generation_config.json",
            serde_json::json!(too_big),
            "eos_token_id 4294967298 does not fit a token id",
        ),
        (
            "generation_config.json",
            serde_json::json!([2, "</s>"]),
            "expected a non-negative integer token id, got \"</s>\"",
        ),
        (
            "generation_config.json",
            serde_json::json!(600),
            "eos_token_id 600 is outside the model's vocabulary of 512",
        ),
        ("config.json", serde_json::json!(too_big), "eos_token_id"),
        ("config.json", serde_json::json!(1.5), "eos_token_id"),
        (
            "config.json",
            serde_json::json!(512),
            "eos_token_id 512 is outside the model's vocabulary of 512",
        ),
    ] {
        let d = fixture_copy(|dir| edit_json(dir, file, |c| c["eos_token_id"] = value.clone()));
        let (ok, _, stderr) = generate(d.path(), &[]);
        assert_error(ok, &stderr, want);
        assert!(stderr.contains(file), "{file}: {stderr}");
    }
}

/// Sets every value of the BF16 tensor `name` in `dir/model.safetensors` to NaN.
fn poison(dir: &Path, name: &str) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let t = &header[name];
    assert_eq!(t["dtype"], "BF16");
    let [a, b] = [0, 1].map(|i| t["data_offsets"][i].as_u64().expect("offset") as usize + 8 + n);
    for pair in bytes[a..b].chunks_exact_mut(2) {
        pair.copy_from_slice(&0x7fc0u16.to_le_bytes());
    }
    std::fs::write(&path, bytes).expect("write");
}

#[test]
fn nan_logits_stop_generation_with_an_error_naming_the_step() {
    let d = fixture_copy(|dir| poison(dir, "model.norm.weight"));
    for backend in ["cpu", "gpu"] {
        let (ok, stdout, stderr) = generate(d.path(), &["--backend", backend]);
        assert_error(ok, &stderr, "generation step 1 (prefill of");
        assert!(stderr.contains("not finite"), "{backend}: {stderr}");
        assert!(stdout.is_empty(), "{backend}: printed {stdout:?}");
    }
}

#[test]
fn chat_prints_only_the_answer_and_plain_mode_echoes_unless_told_not_to() {
    let prompt = "Hello from the chat test";
    let (ok, stdout, stderr) = generate(
        &fixture(),
        &["--chat", "--prompt", prompt, "--max-tokens", "3"],
    );
    assert!(ok, "{stderr}");
    assert!(
        !stdout.contains(prompt),
        "chat echoed the prompt: {stdout:?}"
    );
    assert!(!stdout.contains("<|im_start|>user"), "{stdout:?}");

    let (ok, stdout, stderr) = generate(&fixture(), &["--prompt", prompt, "--max-tokens", "3"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(prompt), "{stdout:?}");
    let (ok, stdout, stderr) = generate(
        &fixture(),
        &["--prompt", prompt, "--max-tokens", "3", "--no-echo"],
    );
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(prompt), "{stdout:?}");
}

#[test]
fn chat_template_errors_reach_the_user() {
    let d = fixture_copy(|dir| {
        std::fs::write(
            dir.join("chat_template.jinja"),
            "{% if messages[0].role != 'system' %}{{ raise_exception('Conversations must start with a system message.') }}{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
        )
        .expect("write")
    });
    let (ok, _, stderr) = generate(d.path(), &["--chat"]);
    assert_error(
        ok,
        &stderr,
        "Conversations must start with a system message.",
    );
    assert!(stderr.contains("chat_template.jinja"), "{stderr}");
    let (ok, _, stderr) = generate(
        d.path(),
        &["--chat", "--system", "Be brief.", "--max-tokens", "1"],
    );
    assert!(ok, "{stderr}");
}

#[test]
fn one_token_reports_no_decode_steps() {
    let (ok, stdout, stderr) = generate(&fixture(), &["--max-tokens", "1", "--ignore-eos"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.is_empty());
    let stats = stderr
        .lines()
        .find(|l| l.contains("time to first token"))
        .unwrap_or_else(|| panic!("no stats in: {stderr}"));
    assert!(stats.contains("1 token generated"), "{stats}");
    assert!(stats.contains("no decode steps"), "{stats}");
    assert!(!stats.contains("decode 0"), "{stats}");

    let (ok, _, stderr) = generate(&fixture(), &["--max-tokens", "4", "--ignore-eos"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("decode 3 steps in"), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "generate",
            "--model",
            fixture().to_str().expect("utf-8"),
            "--backend",
            "cpu",
            "--max-tokens",
            "3000",
            "--ignore-eos",
            "--allow-context-overflow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 5];
    stdout.read_exact(&mut first).expect("5 bytes");
    drop(stdout); // like `| head -c 5`
    let out = child.wait_with_output().expect("wait");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // It stopped at the closed pipe, not after 3000 tokens.
    assert!(!stderr.contains("time to first token"), "{stderr}");
}

#[test]
fn a_model_vocabulary_larger_than_the_tokenizers_is_a_warning() {
    // The check runs before loading (which then fails on this folder's
    // 512-row embedding: only the warning is the point here).
    let d = fixture_copy(|dir| edit_json(dir, "config.json", |c| c["vocab_size"] = 100_000.into()));
    let (_, _, stderr) = generate(d.path(), &["--max-tokens", "1"]);
    assert!(
        stderr.contains("WARN the model's vocabulary (100000 ids) is larger than the tokenizer's"),
        "{stderr}"
    );
}

#[test]
fn devices_ends_quietly_when_the_reader_closes_the_pipe() {
    // The reader is gone before qwgpu writes anything: every write fails.
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .arg("devices")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn inspect_and_bench_end_quietly_when_the_reader_closes_the_pipe() {
    let model = fixture();
    let model = model.to_str().expect("utf-8");
    for args in [
        vec!["inspect", "--model", model, "--weights"],
        vec![
            "bench",
            "--model",
            model,
            "--backend",
            "cpu",
            "--prompt-len",
            "3",
            "--decode",
            "1",
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
