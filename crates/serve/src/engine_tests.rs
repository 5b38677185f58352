//! The engine thread's failures, seen from outside: a request it cannot
//! admit, and the thread dying. These need jobs no HTTP handler would queue
//! (an id outside the vocabulary, the test-only panic prompt), hence unit
//! tests rather than tests/server.rs.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use qwgpu_model::engine::{Backend, LoadOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::metrics::parse_metric;
use crate::scheduler::{Event, Job, PANIC_PROMPT};
use crate::{AppState, ServeOptions};

/// Everything logged in this test binary (the engine logs from its own
/// thread, so a thread-local subscriber would miss it).
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    });
    String::from_utf8_lossy(&buf.lock().expect("logs")).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn serve() -> (AppState, String) {
    logs(); // capture from the start

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text");
    let mut opts = ServeOptions::new(dir);
    opts.model_name = "tiny".into();
    opts.load = LoadOptions {
        backend: Backend::Cpu,
        ..Default::default()
    };
    let state = tokio::task::block_in_place(|| crate::start(&opts)).expect("server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = state.clone();
    tokio::spawn(
        async move { crate::serve(listener, serving, &opts, std::future::pending()).await },
    );
    (state, format!("http://{addr}"))
}

fn job(prompt: Vec<u32>) -> (Job, mpsc::UnboundedReceiver<Event>) {
    Job::greedy(prompt, 2)
}

async fn get(url: String) -> (StatusCode, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn metric(base: &str, name: &str) -> f64 {
    let (_, text) = get(format!("{base}/metrics")).await;
    parse_metric(&text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_failure_is_counted_by_reason_and_the_engine_goes_on() {
    let (state, base) = serve().await;
    let failures = |reason: &str| format!("qwgpu_admission_failures_total{{reason=\"{reason}\"}}");
    for reason in ["session", "restore", "prefill"] {
        assert_eq!(metric(&base, &failures(reason)).await, 0.0, "{reason}");
    }
    // The fixture's vocabulary has 512 ids: prefill refuses 600.
    let (bad, mut rx) = job(vec![1, 600]);
    state.queue(bad);
    // (Admitted comes first: the session started, its prefill failed.)
    let mut event = rx.recv().await;
    if let Some(Event::Admitted { .. }) = event {
        event = rx.recv().await;
    }
    match event {
        Some(Event::Error(e)) => assert!(e.contains("600"), "{e}"),
        other => panic!("expected an error event, got {other:?}"),
    }
    assert_eq!(metric(&base, &failures("prefill")).await, 1.0);
    assert_eq!(metric(&base, &failures("session")).await, 0.0);
    let logged = logs();
    assert!(
        logged.lines().any(|l| l.contains("ERROR")
            && l.contains("a request of 2 prompt tokens failed at admission (prefill): ")
            && l.contains("600")),
        "{logged}"
    );
    // The engine is fine: health says so and the next request runs.
    let (status, _) = get(format!("{base}/health")).await;
    assert_eq!(status, StatusCode::OK);
    let (good, mut rx) = job(vec![1, 2, 3]);
    state.queue(good);
    assert!(matches!(rx.recv().await, Some(Event::Admitted { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_engine_fails_health_and_is_counted() {
    let (state, base) = serve().await;
    let (status, body) = get(format!("{base}/health")).await;
    assert_eq!(status, StatusCode::OK);
    // Compared as JSON: key order follows serde_json's features.
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        serde_json::json!({"precision": "fast", "status": "ok"})
    );
    assert_eq!(metric(&base, "qwgpu_engine_up").await, 1.0);
    assert_eq!(metric(&base, "qwgpu_engine_failures_total").await, 0.0);

    let (kill, _rx) = job(vec![PANIC_PROMPT]);
    state.queue(kill);
    let t0 = Instant::now();
    let (status, body) = loop {
        let (status, body) = get(format!("{base}/health")).await;
        if status != StatusCode::OK {
            break (status, body);
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "health still ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        v,
        json!({"status": "error", "reason": "the engine thread panicked: test hook: the engine thread dies"})
    );
    assert_eq!(metric(&base, "qwgpu_engine_up").await, 0.0);
    assert_eq!(metric(&base, "qwgpu_engine_failures_total").await, 1.0);
    let logged = logs();
    assert!(
        logged.lines().any(|l| l.contains("ERROR")
            && l.contains("the engine thread panicked: test hook: the engine thread dies; every request now gets 503")),
        "{logged}"
    );
    // Requests get 503 with the same reason.
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(
        v["error"]["message"],
        "the engine thread panicked: test hook: the engine thread dies"
    );
}
