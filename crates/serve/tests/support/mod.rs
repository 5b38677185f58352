//! What the server's test binaries share: a model folder made from the tiny
//! dense fixture (random weights), a server over it on a real listener
//! (127.0.0.1, port 0; the CPU backend unless a test picks another), and an
//! HTTP client's helpers (JSON posts, SSE streams put together as a client
//! does, `/metrics`). Each binary (`mod support;`) uses its own part.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qwgpu_kernels::testing::{self, Variant};
use qwgpu_model::engine::{Backend, LoadOptions};
use qwgpu_serve::metrics::parse_metric;
use qwgpu_serve::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny dense fixture's folder.
pub fn fixture() -> PathBuf {
    repo().join("tests/fixtures/dense-bf16-text")
}

/// The Qwen-style test template (`tests/data/qwen-style.jinja`).
pub fn qwen_style_template() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qwen-style.jinja"),
    )
    .expect("tests/data/qwen-style.jinja")
}

/// The fixture's files in a temp folder; `template`: the source written as
/// its `chat_template.jinja` (without one, the fixture's
/// `tokenizer_config.json` carries the chat template).
pub fn model_dir(template: Option<&str>) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("qwgpu-serve-test-")
        .tempdir()
        .expect("tempdir");
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).expect("copy fixture");
    }
    if let Some(source) = template {
        std::fs::write(dir.path().join("chat_template.jinja"), source).expect("template");
    }
    dir
}

/// Fails unless a GPU adapter can run the model (lavapipe in CI).
pub fn require_gpu() {
    assert!(
        qwgpu_model::engine::gpu_adapter_name().is_some(),
        "no GPU adapter: the GPU server tests need one (lavapipe: apt-get install mesa-vulkan-drivers)"
    );
    assert!(testing::require_model(
        "full",
        &testing::context(Variant::Full).ctx
    ));
}

/// An HTTP client with a timeout no test should reach.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A user message.
pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// Where a server answers (cheap to clone into tasks).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// A server in this test's runtime over a model folder of its own.
pub struct Server {
    pub api: Endpoint,
    pub addr: std::net::SocketAddr,
    /// The name it serves the model under.
    pub model: String,
    /// Sends the shutdown signal (dropping it does not).
    pub stop: Option<oneshot::Sender<()>>,
    /// `serve`'s task: it returns once shutdown has drained.
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: TempDir,
}

impl Deref for Server {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.api
    }
}

/// A server over a fresh model folder; `template` as in [`model_dir`].
pub async fn server_with(template: Option<&str>, tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    server_in(model_dir(template), tweak).await
}

/// A server over `dir` (served as `tiny`, CPU backend), its options tweaked
/// by the test.
pub async fn server_in(dir: TempDir, tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut opts = ServeOptions::new(dir.path().to_path_buf());
    opts.model_name = "tiny".into();
    opts.load = LoadOptions {
        backend: Backend::Cpu,
        ..Default::default()
    };
    tweak(&mut opts);
    // Loading blocks: off the runtime's async threads.
    let state =
        tokio::task::block_in_place(|| qwgpu_serve::start(&opts).map_err(|e| e.to_string()))
            .expect("server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let model = opts.model_name.clone();
    let served = tokio::spawn(async move {
        let shutdown = async {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        qwgpu_serve::serve(listener, state, &opts, shutdown).await
    });
    Server {
        api: Endpoint {
            base: format!("http://{addr}"),
        },
        addr,
        model,
        stop: Some(stop),
        served,
        dir,
    }
}

impl Server {
    /// The model folder it serves.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        let base = &self.base;
        format!("{base}{path}")
    }

    /// Status and JSON body of a POST of `body`.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        (status, r.json().await.expect("JSON response"))
    }

    /// The JSON body of a POST that must succeed.
    pub async fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self.post(path, body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// A POST of raw bytes as JSON: status and JSON body.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let r = client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        (status, r.json().await.expect("JSON error body"))
    }

    /// A GET's response.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        client().get(self.url(path)).send().await.expect("GET")
    }

    /// The JSON body of a GET.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("JSON response")
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("text")
    }

    /// One value of `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        parse_metric(&text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    }

    /// Waits (up to 20 s) until the metric `name` satisfies `ok`; returns
    /// its value. The engine updates its gauges and counters after it has
    /// sent a step's tokens, so a client may see a reply end first.
    pub async fn wait_for_metric(&self, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let t0 = Instant::now();
        loop {
            let v = self.metric(name).await;
            if ok(v) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{name} stays at {v}:\n{metrics}",
                metrics = self.metrics().await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `/health`'s status and how long it took.
    pub async fn health(&self) -> (StatusCode, Duration) {
        let t0 = Instant::now();
        let r = self.get("/health").await;
        (r.status(), t0.elapsed())
    }

    /// Every `data:` payload of a streamed request that must succeed, up to
    /// `[DONE]` (included, and required).
    pub async fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let r = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.expect("body");
        let events: Vec<String> = text
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                e.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not an SSE data line: {e:?}"))
                    .to_owned()
            })
            .collect();
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
        events
    }

    /// A chat request streamed (`stream: true` set here), put together as a
    /// client does: its one choice's parts.
    pub async fn streamed_chat(&self, body: &Value) -> Streamed {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let events = self.stream("/v1/chat/completions", &body).await;
        streamed_choices(&events, 1).remove(0)
    }
}

/// Every `data:` payload of a streamed response, up to the end of its body
/// (`[DONE]` not required: for streams a test cuts or a server drains).
pub async fn sse_payloads(r: reqwest::Response) -> Vec<String> {
    let text = r.text().await.expect("body");
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
        .collect()
}

/// One choice of a streamed reply, put together from its chunks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streamed {
    /// Chat `delta.content`, or a completion's `text`.
    pub text: String,
    pub reasoning: String,
    /// `delta.tool_calls` entries, in order.
    pub calls: Vec<Value>,
    pub finish: String,
}

/// Each of `n` choices of a stream's payloads (`[DONE]` last), by `index`.
pub fn streamed_choices(events: &[String], n: usize) -> Vec<Streamed> {
    let mut out = vec![Streamed::default(); n];
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).expect("chunk JSON");
        // (An error payload has no choices.)
        for c in v["choices"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().expect("index") as usize;
            let s = &mut out[i];
            let d = &c["delta"];
            let piece = if d.is_object() {
                &d["content"]
            } else {
                &c["text"]
            };
            s.text.push_str(piece.as_str().unwrap_or(""));
            s.reasoning
                .push_str(d["reasoning_content"].as_str().unwrap_or(""));
            if let Some(list) = d["tool_calls"].as_array() {
                s.calls.extend(list.iter().cloned());
            }
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish = f.into();
            }
        }
    }
    out
}

/// The text of a one-choice stream and its finish reason.
pub fn streamed_text(events: &[String]) -> (String, String) {
    let s = streamed_choices(events, 1).remove(0);
    (s.text, s.finish)
}
