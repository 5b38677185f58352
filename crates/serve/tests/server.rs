//! The server end to end on the tiny dense fixture: a real listener on
//! 127.0.0.1 (port 0), raw HTTP requests; the exact CPU backend, and the GPU
//! backend (lavapipe in CI) for batching, sampling and the prefix cache.

use std::path::Path;
use std::time::{Duration, Instant};

use qwgpu_model::engine::{Backend, LoadOptions};
use qwgpu_serve::chat_template::{ChatTemplate, Message, RenderOptions};
use qwgpu_serve::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

mod support;

use support::*;

/// The fixture with the Qwen-style test template, in a temp folder.
fn qwen_dir() -> TempDir {
    model_dir(Some(&qwen_style_template()))
}

/// A server over [`qwen_dir`].
async fn server(tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    server_in(qwen_dir(), tweak).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_whole_and_streamed_agree() {
    let s = server(|_| {}).await;
    let req = json!({"model": s.model, "messages": [user("Hello there")], "max_tokens": 8, "temperature": 0});
    let (status, whole) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let content = whole["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    let finish = whole["choices"][0]["finish_reason"]
        .as_str()
        .expect("finish")
        .to_owned();
    let usage = &whole["usage"];
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!(usage["prompt_tokens"].as_u64().expect("prompt") > 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + completion)
    );
    assert!(
        completion == 8 && finish == "length" || completion < 8 && finish == "stop",
        "{whole}"
    );

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/chat/completions", &sreq).await;
    let first: Value = serde_json::from_str(&events[0]).expect("json");
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&events), (content, finish));
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"].as_u64(),
        Some(completion)
    );
}

/// `/health` names the precision the server was started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_fast_precision() {
    let s = server(|o| o.load.gpu.precision = qwgpu_model::MatmulPrecision::Fast).await;
    let health: Value = s.get_json("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["precision"], "fast", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_models_health_and_stop_strings() {
    let s = server(|_| {}).await;
    let health = s.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    let health: Value = health.json().await.expect("health json");
    assert_eq!(health["precision"], "fast", "{health}");
    let models: Value = s.get_json("/v1/models").await;
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["object"], "list");

    let req = json!({"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0});
    let (status, v) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().expect("text").to_owned();
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (streamed, _) = streamed_text(&s.stream("/v1/completions", &sreq).await);
    assert_eq!(streamed, text);
    // A stop string cuts the reply just before it.
    let chars: Vec<char> = text.chars().collect();
    if chars.len() >= 4 {
        let stop: String = chars[2..4].iter().collect();
        let mut req = req.clone();
        req["stop"] = json!([stop]);
        let (_, v) = s.post("/v1/completions", &req).await;
        let cut = &text[..text.find(&stop).expect("present")];
        assert_eq!(
            v["choices"][0]["text"].as_str(),
            Some(cut),
            "stop {stop:?} in {text:?}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let s = server(|o| o.max_body_bytes = 64 << 10).await;
    let chat = "/v1/chat/completions";
    let msgs = json!([user("hi")]);
    let cases: Vec<(&str, Vec<u8>, StatusCode, Option<&str>)> = vec![
        (
            "malformed JSON",
            b"{\"messages\": [".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "invalid UTF-8",
            b"{\"messages\": \"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "not an object",
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "missing messages",
            json!({"model": "tiny"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "wrong type",
            json!({"messages": msgs, "max_tokens": "ten"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "wrong message type",
            json!({"messages": [{"role": 1, "content": "x"}]})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
        ),
        (
            "unknown model",
            json!({"model": "gpt-9", "messages": msgs})
                .to_string()
                .into_bytes(),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            "n = 0",
            json!({"messages": msgs, "n": 0}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        (
            "max_tokens 0",
            json!({"messages": msgs, "max_tokens": 0})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_tokens negative",
            json!({"messages": msgs, "max_completion_tokens": -3})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("max_completion_tokens"),
        ),
        (
            "max_tokens absurd",
            json!({"messages": msgs, "max_tokens": 1u64 << 40})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "temperature out of range",
            json!({"messages": msgs, "temperature": 9})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "body too large",
            vec![b' '; 65 << 10],
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
    ];
    for (what, body, status, param) in cases {
        let (got, v) = s.post_raw(chat, body).await;
        assert_eq!(got, status, "{what}: {v}");
        let e = &v["error"];
        assert!(
            !e["message"].as_str().expect("message").is_empty(),
            "{what}: {v}"
        );
        assert!(e["type"].is_string(), "{what}: {v}");
        assert_eq!(e["param"].as_str(), param, "{what}: {v}");
    }
    // Longer than the context (4096): as token ids, and with max_tokens.
    let ids: Vec<u32> = (0..5000).map(|i| 10 + i % 100).collect();
    let (got, v) = s.post("/v1/completions", &json!({"prompt": ids})).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let (got, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": [10, 11], "max_tokens": 4095}),
        )
        .await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("context_length_exceeded")),
        "{v}"
    );
    let (got, v) = s
        .post("/v1/completions", &json!({"prompt": [10, 100000]}))
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{v}");
    let (got, _) = s.post("/v1/nothing", &json!({})).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    // The server is still fine.
    let (got, v) = s
        .post(chat, &json!({"messages": msgs, "max_tokens": 2}))
        .await;
    assert_eq!(got, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let s = server(|o| {
        o.max_batch = 1;
        o.max_queue = 1;
    })
    .await;
    let long = json!({"prompt": "The quick brown fox", "max_tokens": 3000, "stream": true});
    let mut first = client()
        .post(format!("{}/v1/completions", s.base))
        .json(&long)
        .send()
        .await
        .expect("send");
    first.chunk().await.expect("chunk"); // admitted: the batch slot is taken
    s.wait_for_metric("qwgpu_active_sequences", |v| v >= 1.0)
        .await;
    let second = client()
        .post(format!("{}/v1/completions", s.base))
        .json(&long)
        .send()
        .await
        .expect("send");
    assert_eq!(second.status(), StatusCode::OK); // queued
    let (got, v) = s
        .post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1}))
        .await;
    assert_eq!(got, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(s.metric("qwgpu_requests_rejected_total").await, 1.0);
}

/// `n` different prompts, first one at a time, then as concurrent streams: each
/// stream must receive exactly its lone request's greedy text, and the streams
/// must have shared decode steps.
async fn concurrent_streams_match_lone_requests(s: &Server, n: usize, max_tokens: u32) {
    let prompts: Vec<String> = (0..n)
        .map(|i| {
            let n = i * 7;
            format!("Story {i}: once upon a time number {n}")
        })
        .collect();
    let body = |p: &str, stream: bool| json!({"prompt": p, "max_tokens": max_tokens, "temperature": 0, "stream": stream});
    let mut alone = Vec::new();
    for p in &prompts {
        let (status, v) = s.post("/v1/completions", &body(p, false)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        alone.push(v["choices"][0]["text"].as_str().expect("text").to_owned());
    }
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (base, b) = (s.api.clone(), body(p, true));
            tokio::spawn(async move { streamed_text(&base.stream("/v1/completions", &b).await).0 })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task"), alone[i], "prompt {i}");
    }
    let batch = s.metric("qwgpu_decode_batch_max").await;
    assert!(
        batch >= 2.0,
        "the streams never shared a decode step (largest batch {batch})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_get_the_tokens_of_lone_requests() {
    // No prefix cache: only batching differs between the two runs.
    let s = server(|o| o.cache_mem = 0).await;
    concurrent_streams_match_lone_requests(&s, 16, 32).await;
    assert_eq!(s.metric("qwgpu_requests_total").await, 32.0);
    s.wait_for_metric("qwgpu_active_sequences", |v| v == 0.0)
        .await;
}

/// `--prefill-chunk` reaches the engine: a prompt of n tokens runs in
/// ceil(n / 4) pieces of 4, counted in `/metrics`, to the reply the whole
/// prompt prefilled at once (`0`) gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefill_chunks_follow_the_option_and_change_no_reply() {
    let req = json!({"prompt": "The quick brown fox jumps over the lazy dog, twice over",
                     "max_tokens": 6, "temperature": 0});
    let mut replies = Vec::new();
    for chunk in [4, 0] {
        let s = server(|o| {
            o.cache_mem = 0;
            o.prefill_chunk = chunk;
        })
        .await;
        let (status, v) = s.post("/v1/completions", &req).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let n = v["usage"]["prompt_tokens"].as_u64().expect("prompt tokens") as f64;
        assert!(n > 8.0, "{n} prompt tokens: too few to need chunks");
        let pieces = if chunk == 0 { 1.0 } else { (n / 4.0).ceil() };
        assert_eq!(s.metric("qwgpu_prefill_chunks_total").await, pieces);
        assert_eq!(s.metric("qwgpu_prefill_tokens_total").await, n);
        assert_eq!(s.metric("qwgpu_prefill_pending").await, 0.0);
        replies.push(v["choices"][0]["text"].as_str().expect("text").to_owned());
    }
    assert_eq!(replies[0], replies[1]);
}

/// Fails (never skips) without a GPU adapter: CI has lavapipe. Records the
/// calling test in the coverage table (column `full`) against the shared test
/// context of the adapter the server's model opens (`testing::require_model`:
/// on hardware it must have subgroups, f16 and cooperative matrices).
/// The same on the GPU backend (lavapipe in CI), where `decode_batch` runs
/// several sessions in one step: batching changes no greedy token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_the_gpu_get_the_tokens_of_lone_requests() {
    require_gpu();
    let s = server(|o| {
        o.cache_mem = 0;
        o.load.backend = Backend::Gpu;
    })
    .await;
    concurrent_streams_match_lone_requests(&s, 3, 8).await;
}

/// A sampled completion's text.
async fn sampled(s: &Server, temperature: f64, seed: u64) -> String {
    let req = json!({"prompt": "The quick brown fox", "max_tokens": 12, "temperature": temperature,
                     "top_p": 0.9, "seed": seed});
    let (status, v) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["choices"][0]["text"].as_str().expect("text").to_owned()
}

/// Same seed, same text; another seed or temperature, other text (12
/// sampled tokens of a random-weight model, fixed seeds: no coincidence).
async fn sampling_follows_seed_and_temperature(backend: Backend) {
    let s = server(|o| o.load.backend = backend).await;
    let base = sampled(&s, 0.9, 7).await;
    assert_eq!(base, sampled(&s, 0.9, 7).await, "same seed");
    assert_ne!(base, sampled(&s, 0.9, 8).await, "seeds 7 and 8");
    assert_ne!(base, sampled(&s, 1.5, 7).await, "temperatures 0.9 and 1.5");
    assert_ne!(base, sampled(&s, 0.0, 7).await, "sampled and greedy");
    // The same request streamed gets the same text.
    let req = json!({"prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0.9,
                     "top_p": 0.9, "seed": 7, "stream": true});
    let (streamed, _) = streamed_text(&s.stream("/v1/completions", &req).await);
    assert_eq!(streamed, base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_seed_and_temperature_on_the_cpu() {
    sampling_follows_seed_and_temperature(Backend::Cpu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_seed_and_temperature_on_the_gpu() {
    require_gpu();
    sampling_follows_seed_and_temperature(Backend::Gpu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_frees_its_slot() {
    let s = server(|_| {}).await;
    let long = json!({"prompt": "The quick brown fox", "max_tokens": 4000, "stream": true});
    let mut r = client()
        .post(format!("{}/v1/completions", s.base))
        .json(&long)
        .send()
        .await
        .expect("send");
    r.chunk().await.expect("first chunk");
    r.chunk().await.expect("second chunk");
    drop(r);
    let t0 = Instant::now();
    loop {
        let active = s.metric("qwgpu_active_sequences").await;
        let cancelled = s.metric("qwgpu_requests_cancelled_total").await;
        if active == 0.0 && cancelled == 1.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "active {active}, cancelled {cancelled}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.metric("qwgpu_generated_tokens_total").await < 4000.0);
    // The slot serves the next request.
    let (status, v) = s
        .post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// Three turns of a client resending the conversation; returns the replies
/// and each turn's cached prompt tokens.
async fn three_turns(s: &Server) -> (Vec<String>, Vec<u64>) {
    let mut messages = vec![user("Hello there")];
    let mut replies = Vec::new();
    let mut cached = Vec::new();
    for next in ["Tell me more", "And then?", ""] {
        let req = json!({"messages": messages, "max_tokens": 6, "temperature": 0,
                         "chat_template_kwargs": {"enable_thinking": false}});
        let (status, v) = s.post("/v1/chat/completions", &req).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let reply = v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_owned();
        cached.push(
            v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .expect("cached"),
        );
        messages.push(json!({"role": "assistant", "content": reply}));
        messages.push(user(next));
        replies.push(reply);
    }
    (replies, cached)
}

/// Three turns with and without the prefix cache on `backend`: the same
/// replies, and the cache restores exactly the conversation before each turn.
async fn multi_turn_prefix_cache(backend: Backend) {
    let warm = server(|o| o.load.backend = backend).await;
    let cold = server(|o| {
        o.cache_mem = 0;
        o.load.backend = backend;
    })
    .await;
    let (warm_replies, warm_cached) = three_turns(&warm).await;
    let (cold_replies, cold_cached) = three_turns(&cold).await;
    assert_eq!(warm_replies, cold_replies);
    assert_eq!(cold_cached, vec![0, 0, 0]);
    assert_eq!(cold.metric("qwgpu_prefix_cache_hits_total").await, 0.0);

    // Turn N restores everything up to the end of turn N-1's user message:
    // the conversation rendered without the generation prompt.
    let template = ChatTemplate::from_dir(warm.dir()).expect("template");
    let tok =
        tokenizers::Tokenizer::from_file(warm.dir().join("tokenizer.json")).expect("tokenizer");
    let head = |msgs: &[Message]| {
        let text = template
            .render(
                msgs,
                &RenderOptions {
                    add_generation_prompt: false,
                    enable_thinking: Some(false),
                },
            )
            .expect("render");
        tok.encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .len() as u64
    };
    let m1 = [Message::new("user", "Hello there")];
    let m2 = [
        Message::new("user", "Hello there"),
        Message::new("assistant", &warm_replies[0]),
        Message::new("user", "Tell me more"),
    ];
    assert_eq!(warm_cached, vec![0, head(&m1), head(&m2)]);
    assert_eq!(warm.metric("qwgpu_prefix_cache_hits_total").await, 2.0);
    assert_eq!(warm.metric("qwgpu_prefix_cache_misses_total").await, 1.0);
    assert_eq!(
        warm.metric("qwgpu_prefix_cache_hit_tokens_total").await,
        (head(&m1) + head(&m2)) as f64
    );
    assert!(warm.metric("qwgpu_prefix_cache_bytes").await > 0.0);
    let prompt = warm.metric("qwgpu_prompt_tokens_total").await;
    let prefilled = warm.metric("qwgpu_prefill_tokens_total").await;
    assert_eq!(prompt - prefilled, (head(&m1) + head(&m2)) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_turn_client_hits_the_prefix_cache_with_cold_run_tokens() {
    multi_turn_prefix_cache(Backend::Cpu).await;
}

/// The GPU backend's snapshots (lavapipe in CI): restoring one continues
/// exactly like the cold run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_turn_client_hits_the_prefix_cache_on_the_gpu() {
    require_gpu();
    multi_turn_prefix_cache(Backend::Gpu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_works() {
    // CI names its venv's Python in QWGPU_PYTHON: then the client must be
    // there. Without it, a local run skips when python3 lacks the package.
    let explicit = std::env::var("QWGPU_PYTHON").ok();
    let python = explicit.clone().unwrap_or_else(|| "python3".into());
    let has_openai = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    // A skip is recorded for the coverage table `cargo xtask ci` prints.
    const MISSING: &str = "openai Python package";
    if !has_openai {
        assert!(
            explicit.is_none(),
            "QWGPU_PYTHON={python} cannot `import openai`"
        );
        qwgpu_kernels::testing::record_host(
            "host",
            qwgpu_kernels::testing::Outcome::Skipped {
                missing: MISSING,
                on_purpose: false,
            },
        );
        println!("note: skipped: `{python} -c \"import openai\"` failed (set QWGPU_PYTHON to a Python with the openai package)");
        return;
    }
    qwgpu_kernels::testing::record_host("host", qwgpu_kernels::testing::Outcome::Ran);
    let key = "sk-qwgpu-test";
    let s = server(|o| o.api_key = Some(key.into())).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let args = [
        script.display().to_string(),
        format!("{}/v1", s.base),
        s.model.clone(),
        key.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python).args(args).output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}",
        stderr = String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("openai client: ok"), "{stdout}");
}

/// A malformed `tokenizer_config.json`: the server starts (completions need
/// no template), and chat requests get a 500 naming the file and the JSON
/// error, not "this model folder has no chat template". `/health` is ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_template_file_is_reported_not_taken_for_none() {
    let dir = qwen_dir();
    std::fs::remove_file(dir.path().join("chat_template.jinja")).expect("rm");
    let config = dir.path().join("tokenizer_config.json");
    let broken = r#"{"chat_template": "{{ messages }}","#;
    std::fs::write(&config, broken).expect("write");
    let json_error = serde_json::from_str::<Value>(broken)
        .expect_err("malformed")
        .to_string();
    let s = server_in(dir, |_| {}).await;
    let (status, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"messages": [user("hi")], "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    let config = config.display();
    assert_eq!(
        v["error"]["message"].as_str(),
        Some(format!("the model folder's chat template cannot be used: {config}: invalid JSON: {json_error}").as_str()),
        "{v}"
    );
    let (status, v) = s
        .post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // With no template file at all, the client is told to use completions.
    let dir = qwen_dir();
    std::fs::remove_file(dir.path().join("chat_template.jinja")).expect("rm");
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).expect("rm");
    let s = server_in(dir, |_| {}).await;
    let (status, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"messages": [user("hi")], "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["error"]["message"],
        "this model folder has no chat template: use /v1/completions"
    );
}

// ---- Log-probabilities and penalties -----------------------------------------

/// Token id of every byte string the fixture's vocabulary holds (the
/// `bytes` the replies carry name one token each).
fn ids_by_bytes(dir: &Path) -> std::collections::HashMap<Vec<u8>, u32> {
    let tk = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    let mut map = std::collections::HashMap::new();
    for id in (0..tk.get_vocab_size(true) as u32).rev() {
        map.insert(qwgpu_serve::sampling_options::token_bytes(&tk, id), id);
    }
    map
}

/// A one-turn chat prompt's ids, rendered and tokenized as the server does.
fn chat_prompt_ids(dir: &Path, text: &str) -> Vec<u32> {
    let template = ChatTemplate::from_dir(dir).expect("template");
    let text = template
        .render(
            &[Message::new("user", text)],
            &RenderOptions {
                add_generation_prompt: true,
                enable_thinking: None,
            },
        )
        .expect("render");
    let tk = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    tk.encode(text, false).expect("encode").get_ids().to_vec()
}

/// `log_softmax` rows of a scoring pass over `ids` on the CPU reference: what
/// `qwgpu score` computes (`forward_all`, then a log-softmax per row).
fn score_rows(dir: &Path, ids: &[u32]) -> Vec<Vec<f64>> {
    let opts = LoadOptions {
        backend: Backend::Cpu,
        ..Default::default()
    };
    let model = qwgpu_model::engine::Model::load(dir, &opts).expect("model");
    let vocab = model.config().vocab_size;
    let mut s = model.new_session().expect("session");
    let all = model.forward_all(&mut s, ids).expect("forward");
    all.chunks(vocab)
        .map(|row| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            row.iter().map(|&v| v as f64 - m - z.ln()).collect()
        })
        .collect()
}

/// Chat and completions `logprobs` (whole and streamed) against a scoring
/// pass over prompt + reply: the sampled tokens' log-probabilities and the
/// top entries within `tol` (CPU server: 1e-4; GPU: 2e-3, its forward pass
/// differs by f32 rounding), top entries sorted, the greedy token first.
async fn logprobs_match_a_scoring_pass(backend: Backend, tol: f64) {
    let s = server(|o| {
        // Compared with an f32 scoring pass: exact GEMMs (fast is the default).
        o.load.gpu.precision = qwgpu_model::MatmulPrecision::Exact;
        o.load.backend = backend;
        // The reference is the f32 CPU model: the exact GEMMs.
        o.load.gpu.precision = qwgpu_model::MatmulPrecision::Exact;
        o.cache_mem = 0;
    })
    .await;
    let dir = s.dir().to_path_buf();
    let by_bytes = ids_by_bytes(&dir);
    let prompt: Vec<u32> = vec![5, 77, 31, 200, 9, 14];
    let req = json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 3});
    let (status, v) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let tokens: Vec<String> = serde_json::from_value(lp["tokens"].clone()).expect("tokens");
    let n = tokens.len();
    assert!(n > 0 && n <= 6, "{lp}");
    assert_eq!(lp["token_logprobs"].as_array().map(Vec::len), Some(n));
    assert_eq!(lp["text_offset"][0], json!(0));
    // Chat: the same tokens' bytes identify the ids.
    let creq = json!({"messages": [user("Hello there")], "max_tokens": 5, "temperature": 0,
                      "logprobs": true, "top_logprobs": 4});
    let (status, cv) = s.post("/v1/chat/completions", &creq).await;
    assert_eq!(status, StatusCode::OK, "{cv}");
    let content = cv["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("content")
        .clone();
    assert_eq!(
        content.len() as u64,
        cv["usage"]["completion_tokens"].as_u64().expect("usage"),
        "{cv}"
    );
    let bytes_of =
        |e: &Value| -> Vec<u8> { serde_json::from_value(e["bytes"].clone()).expect("bytes") };
    let chat_ids: Vec<u32> = content.iter().map(|e| by_bytes[&bytes_of(e)]).collect();
    let chat_prompt = chat_prompt_ids(&dir, "Hello there");
    for (prompt, reply, entries) in [
        (
            prompt.clone(),
            // Completions carry token texts; their ids come from the chat-free map.
            tokens
                .iter()
                .map(|t| by_bytes[t.as_bytes()])
                .collect::<Vec<u32>>(),
            None,
        ),
        (chat_prompt, chat_ids.clone(), Some(&content)),
    ] {
        let mut seq = prompt.clone();
        seq.extend(&reply[..reply.len() - 1]);
        let rows = score_rows(&dir, &seq);
        for (k, &id) in reply.iter().enumerate() {
            let row = &rows[prompt.len() - 1 + k];
            let (got, top) = match entries {
                Some(c) => (
                    c[k]["logprob"].as_f64().expect("logprob"),
                    c[k]["top_logprobs"].as_array().expect("top").clone(),
                ),
                None => (
                    lp["token_logprobs"][k].as_f64().expect("logprob"),
                    Vec::new(),
                ),
            };
            let want = row[id as usize];
            assert!(
                (got - want).abs() < tol,
                "token {k} ({id}): {got} vs score {want}"
            );
            // Greedy: the sampled token is the most likely one.
            let best = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(
                (want - best).abs() < 1e-9 || (got - best).abs() < tol,
                "token {k}"
            );
            for (j, e) in top.iter().enumerate() {
                let tid = by_bytes[&bytes_of(e)];
                let tlp = e["logprob"].as_f64().expect("top logprob");
                assert!((tlp - row[tid as usize]).abs() < tol, "token {k} top {j}");
                if j > 0 {
                    assert!(tlp <= top[j - 1]["logprob"].as_f64().unwrap() + 1e-6);
                }
            }
            if entries.is_some() {
                assert_eq!(top.len(), 4);
            }
        }
    }
    // Streamed: the chunks' entries are the whole reply's.
    let mut sreq = creq.clone();
    sreq["stream"] = json!(true);
    let mut streamed = Vec::new();
    for e in s.stream("/v1/chat/completions", &sreq).await {
        if e == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&e).expect("chunk");
        if let Some(c) = v["choices"][0]["logprobs"]["content"].as_array() {
            streamed.extend(c.iter().cloned());
        }
    }
    assert_eq!(streamed.len(), content.len());
    for (a, b) in streamed.iter().zip(&content) {
        assert_eq!(a["bytes"], b["bytes"]);
        let (x, y) = (
            a["logprob"].as_f64().unwrap(),
            b["logprob"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-6, "streamed {x} vs whole {y}");
    }
    // Without the fields: null, as before.
    let (_, plain) = s
        .post(
            "/v1/chat/completions",
            &json!({"messages": [user("Hi")], "max_tokens": 2}),
        )
        .await;
    assert_eq!(plain["choices"][0]["logprobs"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_match_a_scoring_pass_on_the_cpu() {
    logprobs_match_a_scoring_pass(Backend::Cpu, 1e-4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_match_a_scoring_pass_on_the_gpu() {
    require_gpu();
    logprobs_match_a_scoring_pass(Backend::Gpu, 2e-3).await;
}

/// Penalties and min-p reach the engine: a completion's tokens equal the
/// engine's own `sample_next` with the same parameters and seed; bad values
/// are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalties_and_min_p_reach_the_sampler() {
    let s = server(|o| o.cache_mem = 0).await;
    let dir = s.dir().to_path_buf();
    let by_bytes = ids_by_bytes(&dir);
    let prompt = chat_prompt_ids(&dir, "Hello Hello there there");
    let params = qwgpu_model::engine::SamplingParams {
        temperature: 0.8,
        min_p: 0.05,
        presence_penalty: 1.5,
        frequency_penalty: 0.5,
        repetition_penalty: 1.3,
        ..qwgpu_model::engine::SamplingParams::GREEDY
    };
    let req = json!({"messages": [user("Hello Hello there there")], "max_tokens": 8,
                     "temperature": 0.8, "min_p": 0.05, "presence_penalty": 1.5,
                     "frequency_penalty": 0.5, "repetition_penalty": 1.3, "seed": 42,
                     "logprobs": true});
    let (status, v) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let got: Vec<u32> = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|e| {
            let b: Vec<u8> = serde_json::from_value(e["bytes"].clone()).expect("bytes");
            by_bytes[&b]
        })
        .collect();
    assert!(!got.is_empty());
    let opts = LoadOptions {
        backend: Backend::Cpu,
        ..Default::default()
    };
    let model = qwgpu_model::engine::Model::load(&dir, &opts).expect("model");
    let mut session = model.new_session().expect("session");
    session.set_seed(42);
    let mut want = vec![model
        .sample_next(&mut session, &prompt, &params)
        .expect("first")];
    while want.len() < got.len() {
        let last = *want.last().expect("a token");
        want.push(
            model
                .sample_next(&mut session, &[last], &params)
                .expect("next"),
        );
    }
    assert_eq!(got, want);
    for (field, value) in [
        ("presence_penalty", json!(2.5)),
        ("frequency_penalty", json!(-3)),
        ("repetition_penalty", json!(0)),
        ("min_p", json!(2)),
        ("top_logprobs", json!(3)),
    ] {
        let mut body = json!({"messages": [user("Hi")], "max_tokens": 2});
        body[field] = value;
        let (status, e) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {e}");
        assert_eq!(e["error"]["param"], json!(field), "{e}");
    }
}

/// A schema with nested objects, arrays, enums, required fields and string
/// patterns, its strings bounded so that a random-weight model ends its
/// reply well within `max_tokens`.
fn bounded_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3},
            "home": {
                "type": "object",
                "properties": {
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    "floor": {"type": "integer", "minimum": 0, "maximum": 9}
                },
                "required": ["zip"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "home"],
        "additionalProperties": false
    })
}

fn assert_valid(schema: &Value, text: &str) {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let validator = jsonschema::validator_for(schema).expect("schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{text} breaks the schema: {errors:?}");
}

/// `response_format` on the GPU backend (lavapipe in CI): requests sent
/// together decode in one batch, each row under its own grammar's mask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_format_replies_validate_in_a_gpu_batch() {
    require_gpu();
    let s = std::sync::Arc::new(server(|o| o.load.backend = Backend::Gpu).await);
    let schema = bounded_schema();
    let mut tasks = tokio::task::JoinSet::new();
    for seed in 0..4 {
        let (s, schema) = (s.clone(), schema.clone());
        tasks.spawn(async move {
            let req = json!({"model": s.model, "messages": [user("Describe a person")],
                "max_tokens": 3000, "temperature": 1.0, "seed": seed,
                "response_format": {"type": "json_schema",
                    "json_schema": {"name": "person", "schema": schema}}});
            s.post("/v1/chat/completions", &req).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, whole) = done.expect("task");
        assert_eq!(status, StatusCode::OK, "{whole}");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop", "{whole}");
        assert_valid(
            &schema,
            whole["choices"][0]["message"]["content"]
                .as_str()
                .expect("content"),
        );
    }
    assert!(
        s.metric("qwgpu_decode_batch_max").await >= 2.0,
        "the requests shared steps"
    );
}

/// `response_format` on a random-weight model: every reply (whole and
/// streamed, chat and completions) is JSON valid under the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_format_replies_validate_on_a_random_model() {
    let s = server(|_| {}).await;
    let schema = bounded_schema();
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "person", "schema": schema, "strict": true}});
    for seed in 0..3 {
        let req = json!({"model": s.model, "messages": [user("Describe a person")],
            "max_tokens": 3000, "temperature": 1.0, "seed": seed, "response_format": format});
        let (status, whole) = s.post("/v1/chat/completions", &req).await;
        assert_eq!(status, StatusCode::OK, "{whole}");
        let choice = &whole["choices"][0];
        assert_eq!(choice["finish_reason"], "stop", "{whole}");
        let content = choice["message"]["content"].as_str().expect("content");
        assert_valid(&schema, content);
        let mut streamed = req.clone();
        streamed["stream"] = json!(true);
        let (text, finish) = streamed_text(&s.stream("/v1/chat/completions", &streamed).await);
        assert_eq!((text.as_str(), finish.as_str()), (content, "stop"));
    }
    // Completions too (`json_object` is checked at the library level: an
    // unbounded object may outrun any `max_tokens` at random weights).
    let req = json!({"model": s.model, "prompt": "JSON:", "max_tokens": 3000, "seed": 1,
        "response_format": format});
    let (status, whole) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop", "{whole}");
    assert_valid(&schema, whole["choices"][0]["text"].as_str().expect("text"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_response_formats_and_tool_choices_are_400s_naming_the_field() {
    let s = server(|_| {}).await;
    let m = json!([user("hi")]);
    let cases = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
            "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}, "strict": true}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
        // A string parameter's `pattern` the grammar engine cannot compile.
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"s": {"type": "string", "pattern": "[a-"}},
                "required": ["s"]}}}],
                "tool_choice": "required"}),
            "tools",
        ),
    ];
    for (extra, param) in cases {
        let mut req = json!({"model": s.model, "messages": m, "max_tokens": 4});
        for (k, v) in extra.as_object().expect("object") {
            req[k] = v.clone();
        }
        let (status, body) = s.post("/v1/chat/completions", &req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // (`tool_choice.function.name` or `tool_choice`: either names the field.)
        let got = body["error"]["param"].as_str().unwrap_or_default();
        assert!(got.starts_with(param), "{param}: {body}");
    }
}

/// The tool calls of a reply: from `tool_calls` when the server parsed
/// them, else read from Qwen3-Coder's XML in `content` (a value is text
/// where the tool's schema declares a string, else JSON); as (name, arguments).
fn reply_calls(
    message: &Value,
    schemas: &[(&str, Value)],
) -> Vec<(String, serde_json::Map<String, Value>)> {
    if let Some(calls) = message["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        return calls
            .iter()
            .map(|c| {
                let args: Value = serde_json::from_str(
                    c["function"]["arguments"]
                        .as_str()
                        .expect("arguments string"),
                )
                .expect("arguments JSON");
                (
                    c["function"]["name"].as_str().expect("name").to_owned(),
                    args.as_object().expect("object").clone(),
                )
            })
            .collect();
    }
    let text = message["content"].as_str().expect("content");
    let mut calls = Vec::new();
    for block in text.split("<tool_call>\n").skip(1) {
        let body = block
            .split_once("</function>\n</tool_call>")
            .unwrap_or_else(|| panic!("unclosed call: {text:?}"))
            .0;
        let (name, mut rest) = body
            .strip_prefix("<function=")
            .and_then(|b| b.split_once(">\n"))
            .unwrap_or_else(|| panic!("no function: {text:?}"));
        let schema = &schemas
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown tool {name}"))
            .1;
        let mut args = serde_json::Map::new();
        while let Some(r) = rest.strip_prefix("<parameter=") {
            let (p, r) = r.split_once(">\n").expect("parameter name");
            let (v, r) = r.split_once("\n</parameter>\n").expect("parameter end");
            let value = if schema["properties"][p]["type"] == "string" {
                Value::String(v.into())
            } else {
                serde_json::from_str(v).unwrap_or_else(|e| panic!("{name}.{p} = {v:?}: {e}"))
            };
            args.insert(p.to_owned(), value);
            rest = r;
        }
        assert!(rest.is_empty(), "{text:?}");
        calls.push((name.to_owned(), args));
    }
    calls
}

/// `tool_choice: "required"` / a named function on a random-weight model:
/// the reply is well-formed calls of the given tools, arguments valid
/// under each tool's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tool_calls_are_valid_on_a_random_model() {
    let s = server(|_| {}).await;
    let weather = json!({"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 16},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "days"]});
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": weather}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
            "properties": {"utc": {"type": "boolean"}}, "required": ["utc"]}}}
    ]);
    let schemas = [
        ("get_weather", weather.clone()),
        ("get_time", tools[1]["function"]["parameters"].clone()),
    ];
    for (seed, choice) in [
        (0, json!("required")),
        (1, json!("required")),
        (
            2,
            json!({"type": "function", "function": {"name": "get_time"}}),
        ),
    ] {
        let req = json!({"model": s.model, "messages": [user("Weather in Paris?")], "tools": tools,
            "tool_choice": choice, "max_tokens": 2000, "seed": seed, "temperature": 1.0,
            "chat_template_kwargs": {"enable_thinking": false}});
        let (status, whole) = s.post("/v1/chat/completions", &req).await;
        assert_eq!(status, StatusCode::OK, "{whole}");
        let choice_out = &whole["choices"][0];
        assert!(
            matches!(
                choice_out["finish_reason"].as_str(),
                Some("stop" | "tool_calls")
            ),
            "{whole}"
        );
        let calls = reply_calls(&choice_out["message"], &schemas);
        assert!(!calls.is_empty(), "{whole}");
        for (name, args) in calls {
            if let Some(n) = choice.pointer("/function/name") {
                assert_eq!(name, n.as_str().unwrap_or_default());
            }
            let schema = &schemas
                .iter()
                .find(|(n, _)| *n == name)
                .expect("a known tool")
                .1;
            assert_valid(schema, &Value::Object(args).to_string());
        }
    }
}

/// `n: 3` with a `json_schema`: each forked choice follows the grammar on a
/// state of its own, so all three replies validate (whole and streamed,
/// which agree), they differ (own seeds), the first is the lone request's,
/// and the prompt is prefilled once.
async fn n_choices_follow_a_json_schema(backend: Backend) {
    let s = server(|o| {
        o.cache_mem = 0;
        o.load.backend = backend;
    })
    .await;
    let schema = bounded_schema();
    let mut req = json!({"model": s.model, "messages": [user("Describe a person")],
        "max_tokens": 3000, "temperature": 1.0, "seed": 21,
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": true}}});
    let (status, lone) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{lone}");
    let prompt_tokens = lone["usage"]["prompt_tokens"].as_u64().expect("prompt");
    req["n"] = json!(3);
    let before = s.metric("qwgpu_prefill_tokens_total").await;
    let (status, whole) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(
        s.metric("qwgpu_prefill_tokens_total").await - before,
        (prompt_tokens + 2) as f64,
        "the prompt was prefilled more than once"
    );
    let contents: Vec<String> = (0..3)
        .map(|i| {
            let c = &whole["choices"][i];
            assert_eq!(c["finish_reason"], "stop", "{whole}");
            let text = c["message"]["content"].as_str().expect("content");
            assert_valid(&schema, text);
            text.to_owned()
        })
        .collect();
    assert_eq!(
        contents[0],
        lone["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
    assert!(
        contents[0] != contents[1] && contents[1] != contents[2] && contents[0] != contents[2],
        "{contents:?}"
    );
    req["stream"] = json!(true);
    let streamed = streamed_choices(&s.stream("/v1/chat/completions", &req).await, 3);
    for (i, c) in streamed.iter().enumerate() {
        assert_eq!(
            (&c.text, c.finish.as_str()),
            (&contents[i], "stop"),
            "choice {i}"
        );
        assert!(c.calls.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_follow_a_json_schema_on_the_cpu() {
    n_choices_follow_a_json_schema(Backend::Cpu).await;
}

/// The same on the GPU backend (lavapipe in CI): the forks' first steps
/// and their decode batch each apply their own choice's mask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_follow_a_json_schema_on_the_gpu() {
    require_gpu();
    n_choices_follow_a_json_schema(Backend::Gpu).await;
}

/// A forced tool call with `n: 3`, its string parameters bounded by
/// `pattern`s: each choice is a parsed call (`finish_reason: "tool_calls"`)
/// whose arguments validate under the tool's schema (patterns included),
/// streamed as whole, the choices not all alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_forced_tool_calls_each_follow_the_tools_schema() {
    let s = server(|o| o.cache_mem = 0).await;
    let params = json!({"type": "object", "properties": {
            "flight": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3,4}$"},
            "seat": {"type": "string", "pattern": "[0-9]+[A-F]", "maxLength": 6},
            "class": {"type": "string", "enum": ["economy", "business"]},
            "bags": {"type": "integer", "minimum": 0, "maximum": 3}},
        "required": ["flight", "seat", "bags"]});
    let tools = json!([{"type": "function", "function": {"name": "book", "parameters": params}}]);
    let schemas = [("book", params.clone())];
    let mut req = json!({"model": s.model, "messages": [user("Book me a flight")], "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "book"}}, "n": 3,
        "max_tokens": 2000, "seed": 4, "temperature": 1.0,
        "chat_template_kwargs": {"enable_thinking": false}});
    let (status, whole) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let mut args_of = Vec::new();
    for i in 0..3 {
        let c = &whole["choices"][i];
        assert_eq!(c["finish_reason"], "tool_calls", "{whole}");
        assert!(c["message"]["tool_calls"].is_array(), "{whole}");
        let calls = reply_calls(&c["message"], &schemas);
        assert_eq!(calls.len(), 1, "{whole}");
        let (name, args) = &calls[0];
        assert_eq!(name, "book");
        let args = Value::Object(args.clone());
        assert_valid(&params, &args.to_string());
        args_of.push(args);
    }
    // (The random model's logits are peaked within the grammar's few
    // choices: two seeds may well agree, three do not here.)
    assert!(
        args_of[0] != args_of[1] || args_of[1] != args_of[2],
        "{args_of:?}"
    );
    req["stream"] = json!(true);
    let streamed = streamed_choices(&s.stream("/v1/chat/completions", &req).await, 3);
    for (i, c) in streamed.iter().enumerate() {
        assert_eq!(c.finish, "tool_calls", "choice {i}");
        assert_eq!(c.calls.len(), 1, "choice {i}: {c:?}");
        let f = &c.calls[0]["function"];
        assert_eq!(f["name"], "book");
        let args: Value =
            serde_json::from_str(f["arguments"].as_str().expect("arguments")).expect("JSON");
        assert_eq!(args, args_of[i], "choice {i}");
    }
}
