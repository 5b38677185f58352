//! `qwgpu serve` as a process: it prints where it listens, answers HTTP, and
//! refuses bad flags before loading anything. (The server's behaviour is
//! tested in crates/serve/tests.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text")
}

/// One HTTP/1.1 request with `Connection: close`; the whole response.
fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_listens_prints_its_address_and_answers() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "serve",
            "--port",
            "0",
            "--backend",
            "cpu",
            "--cache-mem",
            "16MiB",
            "--prefill-chunk",
            "2",
            "--model",
        ])
        .arg(fixture())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn qwgpu serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("line");
        if let Some(rest) = line.split("http://").nth(1) {
            assert!(line.contains("prefill chunk 2,"), "{line}");
            break rest.split('/').next().expect("address").to_owned();
        }
    };
    let health = http(
        &addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let body = r#"{"prompt": "The quick brown fox", "max_tokens": 3, "temperature": 0}"#;
    let completion = http(
        &addr,
        &format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}",
            len = body.len()
        ),
    );
    // The fixture's tokenizer_config.json carries a chat template.
    let chat_body = r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#;
    let chat = http(
        &addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{chat_body}",
            len = chat_body.len()
        ),
    );
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(completion.starts_with("HTTP/1.1 200"), "{completion}");
    assert!(
        completion.contains("\"completion_tokens\":3"),
        "{completion}"
    );
    assert!(chat.starts_with("HTTP/1.1 200"), "{chat}");
    assert!(chat.contains("\"object\":\"chat.completion\""), "{chat}");
}

#[test]
fn serve_refuses_bad_flags_before_loading() {
    for (args, expected) in [
        (vec!["--cache-mem", "lots"], "expected a size"),
        (vec!["--max-batch", "0"], "--max-batch must be at least 1"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args(["serve", "--port", "0", "--backend", "cpu", "--model"])
            .arg(fixture())
            .args(&args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Without `--model`, `serve` runs the bundled model and says so, and who
/// can connect; SIGTERM (what `docker stop` sends) drains like Ctrl-C: a
/// running stream still ends with `[DONE]` and the process exits cleanly.
#[cfg(unix)]
#[test]
fn serve_runs_the_bundled_model_and_sigterm_drains_streams() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "serve",
            "--port",
            "0",
            "--backend",
            "cpu",
            "--drain-timeout",
            "500ms",
        ])
        .env("QWGPU_CACHE_DIR", cache.path())
        .env_remove("QWGPU_API_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn qwgpu serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("line");
        seen.push(line.clone());
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().expect("address").to_owned();
        }
    };
    let access = lines.next().expect("the access line").expect("line");
    assert!(
        seen.iter().any(|l| l.contains("running the bundled")),
        "{seen:?}"
    );
    assert!(access.contains("127.0.0.1 only"), "{access}");
    let body = r#"{"prompt": "The quick brown fox", "max_tokens": 4000, "ignore_eos": true, "stream": true}"#;
    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{body}",
        len = body.len()
    )
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed before the first chunk");
        got.extend_from_slice(&buf[..n]);
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let status = child.wait().expect("wait");
    assert!(
        text.contains("data: [DONE]"),
        "the stream was cut: ...{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(status.success(), "{status:?}");
}
