//! Chunked prefill in the scheduler's steps, driven step by step on the tiny
//! dense fixture: the schedule is read from each step's [`StepRecord`] and
//! from the events each request has received after it, never from timing.
//! Expected tokens come from the model run alone on a fresh session (greedy),
//! outside the scheduler.

use std::path::Path;
use std::sync::Arc;

use qwgpu_model::engine::{Backend, LoadOptions, Model, SamplingParams};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::metrics::{parse_metric, Metrics};
use crate::prefill::PrefillChunk;
use crate::scheduler::{Batch, Engine, Event, Job, StepRecord};

const GREEDY: SamplingParams = Job::GREEDY;

/// An engine on the fixture with no end-of-sequence ids (every reply runs
/// to `max_tokens`, whatever the random weights pick).
fn engine(backend: Backend, prefill_chunk: usize, cache_mem: u64) -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text");
    let load = LoadOptions {
        backend,
        ..Default::default()
    };
    let model = Model::load(&dir, &load).expect("the fixture loads");
    let metrics = Arc::new(Metrics::default());
    Engine::new(model, Vec::new(), cache_mem, prefill_chunk, metrics)
}

/// `len` ids of the fixture's 512, fixed by `seed`.
fn prompt(len: usize, seed: u64) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 512) as u32
        })
        .collect()
}

fn job(prompt: Vec<u32>, max_tokens: usize) -> (Job, UnboundedReceiver<Event>) {
    Job::greedy(prompt, max_tokens)
}

/// What a request has received since the last call: its tokens, whether
/// it was admitted (with its cached prefix) and whether it is done.
#[derive(Debug, Default)]
struct Received {
    admitted: Option<usize>,
    tokens: Vec<u32>,
    done: bool,
}

fn receive(rx: &mut UnboundedReceiver<Event>) -> Received {
    let mut r = Received::default();
    while let Ok(e) = rx.try_recv() {
        match e {
            Event::Admitted { cached } => r.admitted = Some(cached),
            Event::Token(t) => r.tokens.push(t),
            Event::Done { .. } => r.done = true,
            Event::Logprobs(_) => panic!("log-probabilities nobody asked for"),
            Event::Error(e) => panic!("the engine failed a request: {e}"),
        }
    }
    r
}

/// The first `n` greedy tokens after `prompt`, on a fresh session of
/// `model`, the whole prompt in one call.
fn alone(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = model.new_session().expect("session");
    let mut out = vec![model.sample_next(&mut s, prompt, &GREEDY).expect("prefill")];
    while out.len() < n {
        let last = out[out.len() - 1];
        out.push(model.sample_next(&mut s, &[last], &GREEDY).expect("decode"));
    }
    out
}

fn metric(e: &Engine, name: &str) -> f64 {
    let text = e.metrics.render();
    parse_metric(&text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// Fails (never skips) without a GPU adapter: CI has lavapipe.
fn require_gpu() {
    assert!(
        qwgpu_model::engine::gpu_adapter_name().is_some(),
        "no GPU adapter: this test needs one (lavapipe: apt-get install mesa-vulkan-drivers)"
    );
}

fn chunk(request: u64, from: usize, to: usize, prompt: usize) -> PrefillChunk {
    PrefillChunk {
        request,
        from,
        to,
        prompt,
    }
}

/// Stream A decodes; a prompt B of 100 tokens arrives. Returns, for each
/// step from B's arrival until B decodes, the step's record and the tokens
/// A received in it; then runs both to the end and checks their replies
/// against the model run alone.
fn a_decodes_while_b_arrives(e: &mut Engine) -> Vec<(StepRecord, usize)> {
    let (a_prompt, b_prompt) = (prompt(6, 1), prompt(100, 2));
    let (a_max, b_max) = (40, 5);
    let mut batch = Batch::default();
    let (a_job, mut a_rx) = job(a_prompt.clone(), a_max);
    let a = batch.push(a_job);
    let first = e.step(&mut batch);
    assert_eq!(first.prefill, vec![chunk(a, 0, 6, 6)]);
    assert_eq!(first.decoded, vec![a]);
    let mut a_tokens = receive(&mut a_rx).tokens;
    assert_eq!(a_tokens.len(), 2, "A's first token and one decode step");

    let (b_job, mut b_rx) = job(b_prompt.clone(), b_max);
    let b = batch.push(b_job);
    let mut b_tokens = Vec::new();
    let mut steps = Vec::new();
    while b_tokens.is_empty() {
        assert!(steps.len() < 200, "B never got a token");
        let record = e.step(&mut batch);
        let got = receive(&mut a_rx).tokens;
        let n = got.len();
        a_tokens.extend(got);
        b_tokens.extend(receive(&mut b_rx).tokens);
        steps.push((record, n));
    }
    // The rest, then both replies as the model gives them alone.
    while !batch.is_empty() {
        e.step(&mut batch);
    }
    a_tokens.extend(receive(&mut a_rx).tokens);
    b_tokens.extend(receive(&mut b_rx).tokens);
    assert_eq!(a_tokens, alone(&e.model, &a_prompt, a_max), "A's reply");
    assert_eq!(b_tokens, alone(&e.model, &b_prompt, b_max), "B's reply");
    assert!(steps.iter().all(|(r, _)| r.decoded.contains(&a)));
    assert_eq!((a, b), (0, 1));
    steps
}

/// The interleaving a 16-token budget must give: B's 100 tokens in 7
/// steps, each also a decode step that gave A one token; B's last piece
/// samples its first token and B decodes in that same step.
fn assert_interleaved(steps: &[(StepRecord, usize)]) {
    let pieces: Vec<Vec<PrefillChunk>> = steps.iter().map(|(r, _)| r.prefill.clone()).collect();
    let expected: Vec<Vec<PrefillChunk>> = (0..7)
        .map(|i| vec![chunk(1, 16 * i, (16 * i + 16).min(100), 100)])
        .collect();
    assert_eq!(pieces, expected, "B's prefill, step by step");
    for (i, (record, a_got)) in steps.iter().enumerate() {
        assert_eq!(*a_got, 1, "step {i}: A's tokens while B prefills");
        let b_decodes = i == steps.len() - 1;
        assert_eq!(
            record.decoded.contains(&1),
            b_decodes,
            "step {i}: {record:?}"
        );
    }
}

#[test]
fn a_stream_keeps_decoding_while_a_long_prompt_prefills_in_chunks() {
    let mut e = engine(Backend::Cpu, 16, 0);
    let steps = a_decodes_while_b_arrives(&mut e);
    assert_interleaved(&steps);
    assert_eq!(metric(&e, "qwgpu_prefill_chunks_total"), 8.0);
    assert_eq!(metric(&e, "qwgpu_prefill_tokens_total"), 106.0);
    assert_eq!(metric(&e, "qwgpu_prefill_pending"), 0.0);
}

/// The same schedule on the GPU backend (lavapipe in CI), where a chunk is
/// its own GPU prefill step: B's greedy reply is still its lone reply.
#[test]
fn a_stream_keeps_decoding_while_a_long_prompt_prefills_in_chunks_on_the_gpu() {
    require_gpu();
    let mut e = engine(Backend::Gpu, 16, 0);
    let steps = a_decodes_while_b_arrives(&mut e);
    assert_interleaved(&steps);
}

/// With `--prefill-chunk 0` (the scheduler before chunking) B's whole prompt
/// runs in the step it arrives: A gets one token for all of B's prefill, and
/// the interleaving check above fails.
#[test]
fn whole_prompt_prefill_stalls_the_stream_for_the_whole_prompt() {
    let mut e = engine(Backend::Cpu, 0, 0);
    let steps = a_decodes_while_b_arrives(&mut e);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].0.prefill, vec![chunk(1, 0, 100, 100)]);
    let interleaved = std::panic::catch_unwind(|| assert_interleaved(&steps));
    assert!(
        interleaved.is_err(),
        "whole-prompt prefill passed the interleaving check"
    );
}

#[test]
fn a_request_cancelled_mid_prefill_frees_its_session_and_slot() {
    let mut e = engine(Backend::Cpu, 8, 0);
    let mut batch = Batch::default();
    let (b_job, mut b_rx) = job(prompt(64, 3), 4);
    let b = batch.push(b_job);
    let (w_job, w_rx) = job(prompt(20, 4), 4);
    batch.push(w_job);
    for i in 0..2 {
        let record = e.step(&mut batch);
        assert_eq!(record.prefill, vec![chunk(b, 8 * i, 8 * i + 8, 64)]);
        assert!(record.decoded.is_empty());
    }
    assert_eq!(receive(&mut b_rx).admitted, Some(0));
    assert_eq!(batch.prefilling.as_ref().map(|p| p.id), Some(b));
    // B's client goes away mid-prefill, and so does the waiting one's.
    drop(b_rx);
    drop(w_rx);
    let c_prompt = prompt(10, 5);
    let (c_job, mut c_rx) = job(c_prompt.clone(), 3);
    let c = batch.push(c_job);
    let record = e.step(&mut batch);
    assert_eq!(record.prefill, vec![chunk(c, 0, 8, 10)]);
    assert_eq!(metric(&e, "qwgpu_requests_cancelled_total"), 2.0);
    assert_eq!(batch.len(), 1, "only C holds a slot");
    assert_eq!(batch.prefilling.as_ref().map(|p| p.id), Some(c));
    while !batch.is_empty() {
        e.step(&mut batch);
    }
    assert_eq!(receive(&mut c_rx).tokens, alone(&e.model, &c_prompt, 3));
    // B's remaining 48 tokens and the other request's 20 never ran.
    assert_eq!(metric(&e, "qwgpu_prefill_tokens_total"), 26.0);
}

/// A chat turn's prompt with its template boundary: the piece stops there
/// for a snapshot, and a later prompt extending that prefix restores it and
/// prefills only its own tokens, in chunks, to the reply a cold run gives.
fn boundary_snapshots_and_cached_prefixes(backend: Backend) {
    let mut e = engine(backend, 16, 1 << 30);
    let mut batch = Batch::default();
    let p = prompt(40, 6);
    let (mut first, mut first_rx) = job(p.clone(), 3);
    first.boundary = Some(37);
    let id = batch.push(first);
    let mut records = Vec::new();
    while !batch.is_empty() {
        records.push(e.step(&mut batch).prefill);
    }
    assert_eq!(
        records[..3],
        [
            vec![chunk(id, 0, 16, 40)],
            vec![chunk(id, 16, 32, 40)],
            vec![chunk(id, 32, 37, 40), chunk(id, 37, 40, 40)],
        ]
    );
    assert!(records[3..].iter().all(Vec::is_empty));
    assert_eq!(receive(&mut first_rx).tokens, alone(&e.model, &p, 3));
    assert!(e.cache.contains(&p[..37]) && e.cache.contains(&p));

    // The next turn: the conversation up to the boundary, then 45 new ids.
    let mut q = p[..37].to_vec();
    q.extend(prompt(45, 7));
    let (second, mut second_rx) = job(q.clone(), 4);
    let id = batch.push(second);
    let mut records = Vec::new();
    while !batch.is_empty() {
        records.push(e.step(&mut batch).prefill);
    }
    assert_eq!(
        records[..3],
        [
            vec![chunk(id, 37, 53, 82)],
            vec![chunk(id, 53, 69, 82)],
            vec![chunk(id, 69, 82, 82)],
        ]
    );
    let got = receive(&mut second_rx);
    assert_eq!(got.admitted, Some(37));
    assert_eq!(got.tokens, alone(&e.model, &q, 4));
    assert_eq!(metric(&e, "qwgpu_prefix_cache_hits_total"), 1.0);
    assert_eq!(metric(&e, "qwgpu_prefix_cache_hit_tokens_total"), 37.0);
    assert_eq!(metric(&e, "qwgpu_prefill_tokens_total"), 40.0 + 45.0);
}

#[test]
fn chunked_prefill_takes_boundary_snapshots_and_resumes_from_cached_prefixes() {
    boundary_snapshots_and_cached_prefixes(Backend::Cpu);
}

/// The same on the GPU backend (lavapipe in CI): snapshots and restores of
/// GPU sessions between chunks.
#[test]
fn chunked_prefill_takes_boundary_snapshots_and_resumes_from_cached_prefixes_on_the_gpu() {
    require_gpu();
    boundary_snapshots_and_cached_prefixes(Backend::Gpu);
}

/// Two requests sharing a prefix arrive together: the second's cache lookup
/// happens when its prefill begins, after the first's prompt is cached, and
/// it begins in the step the first one's last piece leaves budget for.
#[test]
fn a_prompt_queued_behind_its_prefix_restores_it() {
    let mut e = engine(Backend::Cpu, 16, 1 << 30);
    let mut batch = Batch::default();
    let r = prompt(50, 8);
    let mut longer = r.clone();
    longer.extend(prompt(10, 9));
    let (x, _x_rx) = job(r.clone(), 2);
    let (y, mut y_rx) = job(longer.clone(), 2);
    let (x, y) = (batch.push(x), batch.push(y));
    let records: Vec<Vec<PrefillChunk>> = (0..4).map(|_| e.step(&mut batch).prefill).collect();
    assert_eq!(
        records,
        [
            vec![chunk(x, 0, 16, 50)],
            vec![chunk(x, 16, 32, 50)],
            vec![chunk(x, 32, 48, 50)],
            vec![chunk(x, 48, 50, 50), chunk(y, 50, 60, 60)],
        ]
    );
    let got = receive(&mut y_rx);
    assert_eq!(got.admitted, Some(50));
    while !batch.is_empty() {
        e.step(&mut batch);
    }
    let mut tokens = got.tokens;
    tokens.extend(receive(&mut y_rx).tokens);
    assert_eq!(tokens, alone(&e.model, &longer, 2));
}
