//! The faults a client-side test found, each checked on a real listener (the
//! tiny dense fixture, CPU backend): connection timeouts and cap, bounded
//! tokenization off the async threads, drain at shutdown, admission of
//! queue + batch with `Retry-After`, metrics, API key, CORS and protocol
//! details. Raw TCP where the fault is below HTTP.

use std::time::{Duration, Instant};

use qwgpu_model::engine::Backend;
use qwgpu_serve::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;

mod support;

use support::*;

/// A server over the fixture (its tokenizer_config.json carries a chat template).
async fn server(tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    server_with(None, tweak).await
}

/// A raw connection that has sent `bytes` (blocking socket: the tests
/// call these helpers through `block_in_place`).
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).expect("connect");
    let _ = c.write_all(bytes);
    c
}

/// Reads what the server sends on `s` until it closes, or `limit` passes
/// (then `None`).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(t0.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset closes it too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&out).into_owned())
            }
            Err(_) => return None,
        }
    }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A client that sends half a request's headers and stalls is disconnected
/// after the header timeout; so is an idle keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_and_idle_connections_are_closed() {
    let s = server(|o| o.header_timeout = Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let got = blocking(|| {
        let mut stalled = raw(s.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n");
        read_until_closed(&mut stalled, Duration::from_secs(10))
    });
    assert!(got.is_some(), "a stalled request's connection stays open");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    // Keep-alive: one request answered, then idle.
    let got = blocking(|| {
        let mut idle = raw(s.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        read_until_closed(&mut idle, Duration::from_secs(10))
    })
    .expect("an idle keep-alive connection stays open");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

/// A request announcing 100 bytes of body and sending 10 gets a 408 after
/// the body timeout, and its connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_body_gets_408_after_the_body_timeout() {
    let s = server(|o| o.body_timeout = Duration::from_millis(500)).await;
    let got = blocking(|| {
        let mut c = raw(
            s.addr,
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
        );
        read_until_closed(&mut c, Duration::from_secs(10))
    })
    .expect("no answer to a short body");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"request_timeout\""), "{got}");
    assert_eq!(
        s.metric("qwgpu_http_errors_total{status=\"408\"}").await,
        1.0
    );
}

/// Past the connection cap, new connections wait until the timeouts close
/// stuck ones: `/health` still answers, and every stuck socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_sockets_cannot_starve_health() {
    let s = server(|o| {
        o.max_connections = 4;
        o.header_timeout = Duration::from_millis(700);
    })
    .await;
    // Under the cap: /health is immediate.
    let mut stuck: Vec<TcpStream> = (0..3)
        .map(|_| raw(s.addr, b"GET /health HTTP/1.1\r\n"))
        .collect();
    let (status, took) = s.health().await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_millis(600), "{took:?}");
    // Far over it.
    stuck.extend((0..13).map(|_| raw(s.addr, b"POST /v1/completions HTTP/1.1\r\n")));
    let (status, took) = s.health().await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(15), "{took:?}");
    for (i, c) in stuck.iter_mut().enumerate() {
        assert!(
            blocking(|| read_until_closed(c, Duration::from_secs(15))).is_some(),
            "stuck socket {i} was never closed"
        );
    }
}

/// Megabytes of prompt are refused with `context_length_exceeded` quickly,
/// without tokenizing them on the async threads: `/health` answers
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_prompts_are_refused_quickly_and_health_answers_meanwhile() {
    let s = server(|o| o.max_body_bytes = 16 << 20).await;
    let huge = "lorem ipsum dolor sit amet ".repeat(120_000); // ~3.2 MB
    let t0 = Instant::now();
    let requests: Vec<_> = (0..2)
        .map(|i| {
            let url = s.url(if i == 0 {
                "/v1/completions"
            } else {
                "/v1/chat/completions"
            });
            let body = if i == 0 {
                json!({"prompt": huge})
            } else {
                json!({"messages": [{"role": "user", "content": huge}]})
            };
            tokio::spawn(async move {
                let r = client().post(url).json(&body).send().await.expect("send");
                (r.status(), r.json::<Value>().await.expect("json"))
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while !requests.iter().all(|r| r.is_finished()) {
        let (status, took) = s.health().await;
        assert_eq!(status, StatusCode::OK);
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in requests {
        let (status, v) = r.await.expect("task");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(slowest < Duration::from_secs(1), "/health took {slowest:?}");
}

/// Shutdown drains: a running stream past the drain deadline ends with an
/// error chunk and `[DONE]`, and `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_running_streams_with_done_after_the_deadline() {
    let mut s = server(|o| o.drain_timeout = Duration::from_millis(300)).await;
    let body = json!({"prompt": "The quick brown fox", "max_tokens": 4000, "ignore_eos": true,
                      "stream": true});
    let mut r = client()
        .post(s.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let first = r.chunk().await.expect("chunk").expect("a first chunk");
    let _ = s.stop.take().expect("stop").send(());
    let rest = sse_payloads(r).await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    let error: Value = serde_json::from_str(&rest[rest.len() - 2]).expect("json");
    assert_eq!(
        error["error"]["message"], "the server is shutting down",
        "{first:?} {rest:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), &mut s.served)
        .await
        .expect("serve returns after the drain")
        .expect("join")
        .expect("serve");
}

/// `--max-queue 2 --max-batch 2` admits 4 of a burst of 10; the rest get
/// 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_admits_queue_plus_batch_and_429s_say_when_to_retry() {
    let s = server(|o| {
        o.max_queue = 2;
        o.max_batch = 2;
    })
    .await;
    let body = json!({"prompt": "The quick brown fox", "max_tokens": 4000, "ignore_eos": true,
                      "stream": true});
    let sends: Vec<_> = (0..10)
        .map(|_| {
            let (url, body) = (s.url("/v1/completions"), body.clone());
            tokio::spawn(async move { client().post(url).json(&body).send().await })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for t in sends {
        let r = t.await.expect("task").expect("send");
        match r.status() {
            StatusCode::OK => admitted.push(r),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(
                    r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
                    Some("1")
                );
                refused += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!((admitted.len(), refused), (4, 6));
    assert_eq!(s.metric("qwgpu_requests_rejected_total").await, 6.0);
    assert_eq!(
        s.metric("qwgpu_http_errors_total{status=\"429\"}").await,
        6.0
    );
}

/// A reply ended by a stop string counts as completed, not cancelled; the
/// latency histograms and the cache ratio are in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_count_as_completed_and_latencies_are_recorded() {
    let s = server(|_| {}).await;
    let req = json!({"prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0,
                     "ignore_eos": true});
    let (status, v) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = v["choices"][0]["text"].as_str().expect("text").to_owned();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 8, "{text:?}");
    let stop: String = chars[4..6].iter().collect();
    let mut cut = req.clone();
    cut["stop"] = json!([stop]);
    let (status, v) = s.post("/v1/completions", &cut).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    s.wait_for_metric("qwgpu_requests_completed_total", |v| v >= 2.0)
        .await;
    assert_eq!(s.metric("qwgpu_requests_cancelled_total").await, 0.0);
    // A third prompt extends the first: its snapshot is restored.
    let mut longer = req.clone();
    longer["prompt"] = json!("The quick brown fox jumps over");
    let (status, v) = s.post("/v1/completions", &longer).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64() > Some(0),
        "{v}"
    );
    assert_eq!(
        s.metric("qwgpu_time_to_first_token_seconds_count").await,
        3.0
    );
    assert_eq!(s.metric("qwgpu_queue_wait_seconds_count").await, 3.0);
    assert!(s.metric("qwgpu_inter_token_latency_seconds_count").await >= 46.0);
    let ratio = s.metric("qwgpu_prefix_cache_hit_ratio").await;
    let hit = s.metric("qwgpu_prefix_cache_hit_tokens_total").await;
    let prompt = s.metric("qwgpu_prompt_tokens_total").await;
    assert!(hit > 0.0);
    assert!(
        (ratio - hit / prompt).abs() < 1e-9,
        "{ratio} vs {hit} / {prompt}"
    );
}

/// `--api-key`: `/v1/*` needs the bearer key (401 with an OpenAI error
/// otherwise), `/health` stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_guards_v1_only() {
    let s = server(|o| o.api_key = Some("sk-test".into())).await;
    let body = json!({"prompt": "hi", "max_tokens": 1});
    for auth in [None, Some("Bearer wrong"), Some("sk-test")] {
        let mut r = client().post(s.url("/v1/completions")).json(&body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    let r = s.get("/v1/models").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client()
        .post(s.url("/v1/completions"))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.health().await.0, StatusCode::OK);
    assert_eq!(
        s.metric("qwgpu_http_errors_total{status=\"401\"}").await,
        4.0
    );
}

/// CORS for the configured origin, preflights answered (with an API key
/// set too); other origins get no CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_and_headers_follow_the_origin_option() {
    let s = server(|o| o.cors_origins = vec!["http://localhost:3000".into()]).await;
    let pre = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/chat/completions"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success(), "{}", pre.status());
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let r = client()
        .get(s.url("/v1/models"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("models");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let r = client()
        .get(s.url("/v1/models"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("models");
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // With an API key too: the browser's preflight carries no key and is
    // answered, and a 401 carries the CORS headers so the page can read it.
    let s = server(|o| {
        o.cors_origins = vec!["http://localhost:3000".into()];
        o.api_key = Some("sk-test".into());
    })
    .await;
    let pre = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/chat/completions"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success(), "{}", pre.status());
    let r = client()
        .post(s.url("/v1/completions"))
        .header("origin", "http://localhost:3000")
        .json(&json!({"prompt": "hi", "max_tokens": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

/// 405 with an OpenAI error body; `GET /v1/models/{id}`; the context length
/// in `/v1/models`; `max_tokens: 5.0`; a too-large `max_tokens` names
/// `context_length_exceeded`; unsupported fields are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_details() {
    let s = server(|_| {}).await;
    let r = s.get("/v1/chat/completions").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = r.json().await.expect("405 has a JSON body");
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");

    let one: Value = s.get_json("/v1/models/tiny").await;
    assert_eq!(one["id"], "tiny");
    assert_eq!(one["context_length"], 4096);
    let r = s.get("/v1/models/other").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = s.get_json("/v1/models").await;
    assert_eq!(list["data"][0]["context_length"], 4096);

    let (status, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "hi", "max_tokens": 5.0, "temperature": 0, "ignore_eos": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let (status, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "hi", "max_tokens": 1u64 << 40}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    for (field, value) in [
        ("echo", json!(true)),
        ("suffix", json!("x")),
        ("best_of", json!(3)),
        ("logit_bias", json!({"5": 10})),
        // Chat fields on a completion.
        ("tool_choice", json!("required")),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
    ] {
        let mut body = json!({"prompt": "hi", "max_tokens": 1});
        body[field] = value;
        let (status, v) = s.post("/v1/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
    }
    let (status, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                    "functions": [{"name": "f", "parameters": {}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "functions", "{v}");
}

/// `stop_token_ids` ends the reply at that token (not sent), with `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_token_ids_end_the_reply() {
    let s = server(|_| {}).await;
    let req = json!({"prompt": [10, 11, 12], "max_tokens": 12, "temperature": 0,
                     "ignore_eos": true});
    let (_, v) = s.post("/v1/completions", &req).await;
    let full = v["choices"][0]["text"].as_str().expect("text").to_owned();
    assert_eq!(v["usage"]["completion_tokens"], 12, "{v}");
    // Candidate ids: the reply re-tokenized (most are tokens it generated).
    let tok = tokenizers::Tokenizer::from_file(s.dir().join("tokenizer.json")).expect("tokenizer");
    let ids = tok.encode(full.as_str(), false).expect("encode");
    let mut stopped = 0;
    for &id in ids.get_ids().iter().skip(1).take(6) {
        let mut cut = req.clone();
        cut["stop_token_ids"] = json!([id]);
        let (status, v) = s.post("/v1/completions", &cut).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let n = v["usage"]["completion_tokens"].as_u64().expect("tokens");
        if n < 12 {
            stopped += 1;
            assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
            let text = v["choices"][0]["text"].as_str().expect("text");
            assert!(
                full.starts_with(text) && text.len() < full.len(),
                "{text:?} / {full:?}"
            );
        }
    }
    assert!(stopped > 0, "no stop_token_ids ended the reply of {full:?}");
}

/// `n: 3`: the prompt is prefilled once (then one token per extra choice,
/// on its fork), each choice has its own seed (three different texts; the
/// first is the lone request's), `usage` counts the prompt once, and the
/// streamed choices (chunks with their `index`) equal the whole ones.
async fn n_choices_share_one_prefill(backend: Backend) {
    let s = server(|o| {
        o.cache_mem = 0;
        o.load.backend = backend;
    })
    .await;
    let base = json!({"prompt": "The quick brown fox jumps over the lazy dog", "max_tokens": 8,
                      "temperature": 1.0, "seed": 7, "ignore_eos": true});
    let (status, lone) = s.post("/v1/completions", &base).await;
    assert_eq!(status, StatusCode::OK, "{lone}");
    let prompt_tokens = lone["usage"]["prompt_tokens"].as_u64().expect("prompt");
    let before = s.metric("qwgpu_prefill_tokens_total").await;
    let mut req = base.clone();
    req["n"] = json!(3);
    let (status, v) = s.post("/v1/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let texts: Vec<String> = (0..3)
        .map(|i| {
            let c = &v["choices"][i];
            assert_eq!(c["index"], i, "{v}");
            c["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(texts[0], lone["choices"][0]["text"].as_str().expect("text"));
    assert!(
        texts[0] != texts[1] && texts[1] != texts[2] && texts[0] != texts[2],
        "{texts:?}"
    );
    assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(prompt_tokens));
    assert_eq!(v["usage"]["completion_tokens"], 24, "{v}");
    assert_eq!(
        s.metric("qwgpu_prefill_tokens_total").await - before,
        (prompt_tokens + 2) as f64,
        "the prompt was prefilled more than once"
    );
    // Streamed, with usage.
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let r = client()
        .post(s.url("/v1/completions"))
        .json(&req)
        .send()
        .await
        .expect("send");
    let events = sse_payloads(r).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut streamed = vec![String::new(); 3];
    let mut finished = 0;
    let mut usage = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).expect("chunk");
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
        for c in v["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            streamed[i].push_str(c["text"].as_str().unwrap_or(""));
            finished += usize::from(c["finish_reason"].is_string());
        }
    }
    assert_eq!(streamed, texts);
    assert_eq!(finished, 3);
    assert_eq!(usage["completion_tokens"], 24, "{usage}");
    // Chat, whole: three messages.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "n": 3, "max_tokens": 4,
                      "temperature": 1.0, "seed": 3, "ignore_eos": true});
    let (status, v) = s.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["choices"][2]["message"]["role"], "assistant", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 12, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_share_one_prefill_on_the_cpu() {
    n_choices_share_one_prefill(Backend::Cpu).await;
}

/// The same on the GPU backend (lavapipe in CI): its sessions fork by
/// copying GPU buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_share_one_prefill_on_the_gpu() {
    require_gpu();
    n_choices_share_one_prefill(Backend::Gpu).await;
}

/// `n: 2` with log-probabilities: each choice carries its own tokens'
/// entries, whole and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_carry_their_own_logprobs() {
    let s = server(|o| o.cache_mem = 0).await;
    let req = json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 4,
                     "temperature": 1.0, "seed": 11, "ignore_eos": true,
                     "logprobs": true, "top_logprobs": 2});
    let (status, v) = s.post("/v1/chat/completions", &req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for i in 0..2 {
        let content = v["choices"][i]["logprobs"]["content"]
            .as_array()
            .unwrap_or_else(|| panic!("choice {i}: {v}"));
        assert_eq!(content.len(), 4, "{v}");
        assert_eq!(content[0]["top_logprobs"].as_array().map(Vec::len), Some(2));
    }
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&sreq)
        .send()
        .await
        .expect("send");
    let events = sse_payloads(r).await;
    let mut entries = [0usize; 2];
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).expect("chunk");
        for ch in c["choices"].as_array().expect("choices") {
            let i = ch["index"].as_u64().expect("index") as usize;
            entries[i] += ch["logprobs"]["content"].as_array().map_or(0, Vec::len);
        }
    }
    assert_eq!(entries, [4, 4], "{events:?}");
}
