//! `qwgpu chat` end to end on the tiny dense fixture (CPU reference backend:
//! exact; one test on the GPU for its snapshot / restore): each turn runs
//! only the new tokens, and gives exactly the tokens a single pass over the
//! whole conversation gives; /save + /load continues identically; a template
//! that re-renders the history resumes from a snapshot; Ctrl-C stops a reply
//! and the chat goes on; bad commands are errors that leave the chat running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qwgpu_model::engine::{Backend, LoadOptions, Model, SamplingParams};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text")
}

/// Runs `qwgpu chat --model DIR --backend cpu ARGS` with `input` on stdin;
/// returns (success, stdout, stderr).
fn chat(dir: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    chat_on("cpu", dir, args, input)
}

fn chat_on(backend: &str, dir: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "chat",
            "--model",
            dir.to_str().expect("utf-8"),
            "--backend",
            backend,
        ])
        .args(args)
        .env_remove("QWGPU_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qwgpu chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// One `turn N: prefilled K new tokens (of M in the conversation) ..., decoded D tokens` line.
#[derive(Debug)]
struct Turn {
    prefilled: usize,
    total: usize,
    decoded: usize,
    resumed_at: Option<usize>,
}

fn turns(stderr: &str) -> Vec<Turn> {
    let number_after = |line: &str, key: &str| -> usize {
        let rest = &line[line
            .find(key)
            .unwrap_or_else(|| panic!("{key:?} in {line}"))
            + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {key:?} in {line}"))
    };
    stderr
        .lines()
        .filter(|l| l.starts_with("turn "))
        .map(|l| Turn {
            prefilled: number_after(l, "prefilled "),
            total: number_after(l, "(of "),
            decoded: number_after(l, "decoded "),
            resumed_at: l
                .contains("snapshot at token ")
                .then(|| number_after(l, "snapshot at token ")),
        })
        .collect()
}

/// The token ids of a file written by `/save`.
fn saved_tokens(path: &Path) -> (Vec<u32>, serde_json::Value) {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("saved file")).expect("json");
    let ids = json["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    (ids, json)
}

/// Greedy tokens of a fresh CPU session given `prompt` in one prefill.
fn single_pass(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let greedy = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    };
    let mut s = model.new_session().expect("session");
    let mut out = vec![model.sample_next(&mut s, prompt, &greedy).expect("prefill")];
    while out.len() < n {
        let last = out[out.len() - 1];
        out.push(model.sample_next(&mut s, &[last], &greedy).expect("decode"));
    }
    out
}

fn cpu_model(dir: &Path) -> Model {
    model_on(Backend::Cpu, dir)
}

fn model_on(backend: Backend, dir: &Path) -> Model {
    Model::load(
        dir,
        &LoadOptions {
            backend,
            ..Default::default()
        },
    )
    .expect("load")
}

/// Checks each turn's reply against a single pass over the conversation up to it.
fn assert_turns_match_single_pass(dir: &Path, turns: &[Turn], tokens: &[u32]) {
    assert_turns_match_single_pass_on(&cpu_model(dir), turns, tokens);
}

fn assert_turns_match_single_pass_on(model: &Model, turns: &[Turn], tokens: &[u32]) {
    for (i, t) in turns.iter().enumerate() {
        let want = single_pass(model, &tokens[..t.total], t.decoded);
        assert_eq!(
            &tokens[t.total..t.total + t.decoded],
            &want[..],
            "turn {}: chat's reply differs from a single pass over the conversation",
            i + 1
        );
    }
}

#[test]
fn each_turn_prefills_only_new_tokens_and_matches_a_single_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let save = dir.path().join("conversation.json");
    let input = format!(
        "Hello there\nHow are you?\nTell me about foxes\n/save {}\n",
        save.display()
    );
    let (ok, stdout, stderr) = chat(&fixture(), &["--max-tokens", "6"], &input);
    assert!(ok, "{stderr}");
    let turns = turns(&stderr);
    assert_eq!(turns.len(), 3, "{stderr}");
    assert_eq!(turns[0].prefilled, turns[0].total, "{stderr}");
    for n in 1..3 {
        let (prev, t) = (&turns[n - 1], &turns[n]);
        // Everything before was run already but the previous reply's last
        // token (sampled, not yet fed to the model).
        assert_eq!(
            t.prefilled,
            t.total - (prev.total + prev.decoded - 1),
            "turn {turn}: {stderr}",
            turn = n + 1
        );
        assert!(t.resumed_at.is_none(), "{stderr}");
    }
    let (tokens, json) = saved_tokens(&save);
    assert_eq!(tokens.len(), turns[2].total + turns[2].decoded);
    assert_turns_match_single_pass(&fixture(), &turns, &tokens);

    // The ids spell the conversation as the fixture's template renders it,
    // and stdout shows each reply on its line.
    let messages = json["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 6);
    let mut rendered = String::new();
    let mut replies = String::new();
    for m in &messages[..5] {
        let (role, content) = (
            m["role"].as_str().expect("role"),
            m["content"].as_str().expect("content"),
        );
        rendered.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        if role == "assistant" {
            replies.push_str(&format!("{content}\n"));
        }
    }
    rendered.push_str("<|im_start|>assistant\n");
    let tok =
        tokenizers::Tokenizer::from_file(fixture().join("tokenizer.json")).expect("tokenizer");
    assert_eq!(
        tok.decode(&tokens[..turns[2].total], false)
            .expect("decode"),
        rendered
    );
    replies.push_str(messages[5]["content"].as_str().expect("content"));
    assert_eq!(
        stdout.trim_end_matches('\n'),
        replies.trim_end_matches('\n')
    );
}

#[test]
fn save_then_load_continues_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mid, end_a, end_b) = (
        dir.path().join("mid.json"),
        dir.path().join("a.json"),
        dir.path().join("b.json"),
    );
    let (ok, _, stderr) = chat(
        &fixture(),
        &["--max-tokens", "5"],
        &format!(
            "First message\nSecond one\n/save {mid}\nThird\n/save {end_a}\n",
            mid = mid.display(),
            end_a = end_a.display()
        ),
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = chat(
        &fixture(),
        &["--max-tokens", "5"],
        &format!(
            "/load {mid}\nThird\n/save {end_b}\n",
            mid = mid.display(),
            end_b = end_b.display()
        ),
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("loaded 4 messages"), "{stderr}");
    let (mid_tokens, _) = saved_tokens(&mid);
    let t = &turns(&stderr)[0];
    assert_eq!(t.prefilled, t.total - mid_tokens.len(), "{stderr}");
    let (a, ja) = saved_tokens(&end_a);
    let (b, jb) = saved_tokens(&end_b);
    assert_eq!(a, b);
    assert_eq!(ja["messages"], jb["messages"]);
}

#[test]
fn a_template_that_rerenders_history_resumes_from_a_snapshot() {
    resumes_from_a_snapshot_on(Backend::Cpu, "cpu");
}

/// A copy of the fixture whose template, like Qwen3.5's, opens the answer
/// with a thinking block that earlier turns lose when rendered as history.
fn thinking_template_fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture().join(f), d.path().join(f)).expect("copy");
    }
    std::fs::write(
        d.path().join("chat_template.jinja"),
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}",
    )
    .expect("template");
    d
}

fn resumes_from_a_snapshot_on(backend: Backend, name: &str) {
    let d = thinking_template_fixture();
    let save = d.path().join("c.json");
    let (ok, _, stderr) = chat_on(
        name,
        d.path(),
        &["--max-tokens", "4"],
        &format!("One\nTwo\n/save {}\n", save.display()),
    );
    assert!(ok, "{stderr}");
    let turns = turns(&stderr);
    assert_eq!(turns.len(), 2, "{stderr}");
    // Turn 2 resumes after turn 1's user message (before its assistant header):
    // only the re-rendered answer and the new message run.
    let at = turns[1].resumed_at.expect("resumed from a snapshot");
    assert!(at > 0 && at < turns[0].total, "{stderr}");
    assert_eq!(turns[1].prefilled, turns[1].total - at, "{stderr}");
    let (tokens, _) = saved_tokens(&save);
    assert_turns_match_single_pass_on(&model_on(backend, d.path()), &turns[1..], &tokens);
}

#[test]
fn on_the_gpu_a_restored_snapshot_continues_like_a_single_pass() {
    resumes_from_a_snapshot_on(Backend::Gpu, "gpu");
}

#[test]
fn bad_commands_are_errors_and_the_chat_goes_on() {
    let (ok, stdout, stderr) = chat(
        &fixture(),
        &["--max-tokens", "2"],
        "/nonsense\n/load /nonexistent/chat.json\n/save\nHi\n/quit\nnot read\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("unknown command /nonsense"), "{stderr}");
    assert!(stderr.contains("/nonexistent/chat.json"), "{stderr}");
    assert!(stderr.contains("/save needs a file name"), "{stderr}");
    assert_eq!(turns(&stderr).len(), 1, "{stderr}");
    assert!(!stdout.is_empty());
    let (ok, _, stderr) = chat(&fixture(), &["--max-tokens", "0"], "");
    assert!(!ok && stderr.contains("--max-tokens 0"), "{stderr}");
}

#[test]
fn ctrl_c_stops_the_reply_and_the_chat_goes_on() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let save = dir.path().join("after.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(["chat", "--model", fixture().to_str().expect("utf-8")])
        .args(["--backend", "cpu", "--max-tokens", "4000"])
        .env_remove("QWGPU_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qwgpu chat");
    // A reply of ~2000 tokens (greedy, until its end-of-sequence token).
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("Hello there\n/save {}\n", save.display()).as_bytes())
        .expect("write stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("the reply starts");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read stdout");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(stopped by Ctrl-C)"), "{stderr}");
    let turns = turns(&stderr);
    assert_eq!(turns.len(), 1, "{stderr}");
    assert!(turns[0].decoded < 1000, "{stderr}");
    // The chat went on to the next line: the stopped answer is part of it.
    let (tokens, json) = saved_tokens(&save);
    assert_eq!(tokens.len(), turns[0].total + turns[0].decoded);
    assert_eq!(json["messages"].as_array().expect("messages").len(), 2);
}
