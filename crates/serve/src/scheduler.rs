//! The engine thread: it owns the model and every session, and runs
//! continuous batching. Each iteration admits waiting requests while the
//! batch has room (restoring the longest cached prefix, prefilling the rest
//! and sampling the first token), then runs one decode step for all active
//! sequences, sends each new token to its request and retires finished ones
//! (end of sequence, `max_tokens`, or a client that went away: its channel is
//! closed). The HTTP side never touches the model; it talks to this thread
//! over channels.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use qwgpu_checkpoint::TextConfig;
use qwgpu_model::engine::{LoadOptions, Model, SamplingParams, Session};
use qwgpu_model::ModelError;
use tokio::sync::mpsc::{self, error::TryRecvError, UnboundedSender};

use crate::metrics::{AdmissionFailure, Metrics};
use crate::prefix_cache::{snapshot_bytes, PrefixCache};

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token (or, decided by the HTTP side, a stop string).
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the engine sends back for one request.
#[derive(Debug)]
pub enum Event {
    /// The request joined the batch; `cached` prompt tokens came from the prefix cache.
    Admitted { cached: usize },
    /// A generated token (end-of-sequence tokens are not sent).
    Token(u32),
    /// The reply is over.
    Done { finish: Finish },
    /// The engine failed on this request.
    Error(String),
}

/// One generation request, as the engine runs it.
pub struct Job {
    pub prompt: Vec<u32>,
    /// A prompt position worth a snapshot of its own: where the chat
    /// template's generation prompt begins. Chat templates render earlier
    /// assistant turns differently from the generation prompt (Qwen's drop
    /// the `<think>` block), so the next turn extends the conversation up to
    /// here, not this request's whole prompt.
    pub boundary: Option<usize>,
    /// At least 1.
    pub max_tokens: usize,
    pub params: SamplingParams,
    pub seed: u64,
    pub events: UnboundedSender<Event>,
}

/// A sequence in the decode batch.
struct Active {
    session: Session,
    /// Every token the session has consumed (its position).
    ids: Vec<u32>,
    /// The last sampled token, consumed by the next decode step.
    next: u32,
    generated: usize,
    max_tokens: usize,
    params: SamplingParams,
    events: UnboundedSender<Event>,
}

/// Whether the engine thread still serves; once it has stopped (a panic,
/// or its queue closed), why. `GET /health` answers from it.
#[derive(Default)]
pub struct EngineStatus {
    stopped: OnceLock<String>,
}

impl EngineStatus {
    /// `None` while the engine serves; else why it stopped.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}

/// A prompt of this one id makes the engine thread panic: the tests' way to
/// kill it (the HTTP side never queues an id outside the vocabulary).
#[cfg(test)]
pub(crate) const PANIC_PROMPT: u32 = u32::MAX;

struct Engine {
    model: Model,
    eos: Vec<u32>,
    cache: PrefixCache<qwgpu_model::engine::Snapshot>,
    config: TextConfig,
    metrics: Arc<Metrics>,
}

/// What the engine thread is started with.
pub struct EngineSetup {
    pub dir: std::path::PathBuf,
    pub load: LoadOptions,
    pub eos: Vec<u32>,
    /// Prefix-cache budget, bytes.
    pub cache_mem: u64,
    /// Most sequences decoding together.
    pub max_batch: usize,
}

/// Starts the engine thread: it loads the model, reports the load's result,
/// then serves jobs until every sender of `jobs` is gone.
pub fn spawn(
    setup: EngineSetup,
    jobs: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
    status: Arc<EngineStatus>,
) -> Result<std::sync::mpsc::Receiver<Result<String, ModelError>>, std::io::Error> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("qwgpu-engine".into())
        .spawn(move || {
            let EngineSetup {
                dir,
                load,
                eos,
                cache_mem,
                max_batch,
            } = setup;
            let model = match Model::load(&dir, &load) {
                Ok(m) => m,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Up before `start` returns: /metrics never shows a served engine as down.
            Metrics::set(&metrics.engine_up, 1);
            let _ = ready_tx.send(Ok(model.backend_name()));
            let config = model.config().clone();
            let mut engine = Engine {
                model,
                eos,
                cache: PrefixCache::new(cache_mem),
                config,
                metrics: metrics.clone(),
            };
            // Whatever ends the loop, /health and /metrics must say so: a
            // dead engine otherwise looks healthy while every request gets 503.
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.run(jobs, max_batch)
            }));
            Metrics::set(&metrics.engine_up, 0);
            let why = match ended {
                Ok(()) => {
                    tracing::info!("the engine thread stopped: the server is shutting down");
                    "the engine thread stopped: the server is shutting down".to_string()
                }
                Err(payload) => {
                    Metrics::add(&metrics.engine_failures, 1);
                    let message = panic_message(payload.as_ref());
                    let why = format!("the engine thread panicked: {message}");
                    tracing::error!("{why}; every request now gets 503");
                    why
                }
            };
            let _ = status.stopped.set(why);
        })?;
    Ok(ready_rx)
}

impl Engine {
    fn run(&mut self, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
        let mut active: Vec<Active> = Vec::new();
        let mut open = true;
        loop {
            // Admit: block for work only when nothing is decoding.
            while open && active.len() < max_batch {
                let job = if active.is_empty() {
                    match jobs.blocking_recv() {
                        Some(j) => j,
                        None => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                Metrics::sub(&self.metrics.queue_depth, 1);
                #[cfg(test)]
                if job.prompt == [PANIC_PROMPT] {
                    panic!("test hook: the engine thread dies");
                }
                if job.events.is_closed() {
                    Metrics::add(&self.metrics.requests_cancelled, 1);
                    continue;
                }
                if let Some(a) = self.admit(job) {
                    active.push(a);
                }
            }
            if active.is_empty() {
                if !open {
                    return;
                }
                continue;
            }
            // A client that went away frees its slot before the step.
            let before = active.len();
            active.retain(|a| !a.events.is_closed());
            Metrics::add(
                &self.metrics.requests_cancelled,
                (before - active.len()) as u64,
            );
            Metrics::set(&self.metrics.active, active.len() as u64);
            if active.is_empty() {
                continue;
            }
            self.step(&mut active);
            Metrics::set(&self.metrics.active, active.len() as u64);
        }
    }

    /// Restores the longest cached prefix, prefills the rest of the prompt and
    /// samples the first token; `None` when the request already ended.
    fn admit(&mut self, job: Job) -> Option<Active> {
        let n = job.prompt.len();
        Metrics::add(&self.metrics.prompt_tokens, n as u64);
        let started = self.start_session(&job);
        let (mut session, cached) = match started {
            Ok(s) => s,
            Err((stage, e)) => {
                self.refuse(&job, stage, &e);
                return None;
            }
        };
        Metrics::add(&self.metrics.prefill_tokens, (n - cached) as u64);
        let _ = job.events.send(Event::Admitted { cached });
        let mut from = cached;
        if let Some(b) = job.boundary.filter(|&b| b > cached && b < n) {
            let bytes = snapshot_bytes(&self.config, b);
            if self.cache.fits(bytes) && !self.cache.contains(&job.prompt[..b]) {
                if let Err(e) = self.model.forward(&mut session, &job.prompt[cached..b]) {
                    self.refuse(&job, AdmissionFailure::Prefill, &e);
                    return None;
                }
                self.remember(&job.prompt[..b], &session);
                from = b;
            }
        }
        let first = match self
            .model
            .sample_next(&mut session, &job.prompt[from..], &job.params)
        {
            Ok(t) => t,
            Err(e) => {
                self.refuse(&job, AdmissionFailure::Prefill, &e);
                return None;
            }
        };
        self.remember(&job.prompt, &session);
        let mut a = Active {
            session,
            ids: job.prompt,
            next: first,
            generated: 0,
            max_tokens: job.max_tokens,
            params: job.params,
            events: job.events,
        };
        if self.deliver(&mut a) {
            Some(a)
        } else {
            None
        }
    }

    /// A request the engine could not start: the client gets the error, the
    /// log and `/metrics` (by stage) get it too.
    fn refuse(&self, job: &Job, stage: AdmissionFailure, e: &ModelError) {
        let (tokens, what) = (job.prompt.len(), stage.as_str());
        tracing::error!("a request of {tokens} prompt tokens failed at admission ({what}): {e}");
        self.metrics.admission_failed(stage);
        let _ = job.events.send(Event::Error(e.to_string()));
    }

    fn start_session(
        &mut self,
        job: &Job,
    ) -> Result<(Session, usize), (AdmissionFailure, ModelError)> {
        let mut session = self
            .model
            .new_session()
            .map_err(|e| (AdmissionFailure::Session, e))?;
        // At least one prompt token must run to give the first token's logits.
        let cached = match self.cache.lookup(&job.prompt, job.prompt.len() - 1) {
            Some((snap, len)) => {
                self.model
                    .restore(&mut session, snap)
                    .map_err(|e| (AdmissionFailure::Restore, e))?;
                Metrics::add(&self.metrics.cache_hits, 1);
                Metrics::add(&self.metrics.cache_hit_tokens, len as u64);
                len
            }
            None => {
                Metrics::add(&self.metrics.cache_misses, 1);
                0
            }
        };
        // The snapshot carries its own sampler state; the request's seed wins.
        self.model.set_seed(&mut session, job.seed);
        Ok((session, cached))
    }

    /// Snapshots `session` (which has consumed exactly `ids`) into the cache.
    fn remember(&mut self, ids: &[u32], session: &Session) {
        let bytes = snapshot_bytes(&self.config, ids.len());
        if !self.cache.fits(bytes) || self.cache.contains(ids) {
            return;
        }
        match self.model.snapshot(session) {
            Ok(snap) => self.cache.insert(ids.to_vec(), snap, bytes),
            Err(e) => tracing::warn!("prefix cache: snapshot failed: {e}"),
        }
        Metrics::set(&self.metrics.cache_bytes, self.cache.bytes());
        Metrics::set(&self.metrics.cache_entries, self.cache.len() as u64);
    }

    /// Handles the token just sampled into `a.next`: ends the reply on EOS or
    /// `max_tokens`, else streams it. Returns whether the sequence goes on.
    fn deliver(&mut self, a: &mut Active) -> bool {
        let finish = if self.eos.contains(&a.next) {
            Some(Finish::Stop)
        } else {
            a.generated += 1;
            Metrics::add(&self.metrics.generated_tokens, 1);
            if a.events.send(Event::Token(a.next)).is_err() {
                Metrics::add(&self.metrics.requests_cancelled, 1);
                return false;
            }
            (a.generated >= a.max_tokens).then_some(Finish::Length)
        };
        match finish {
            Some(finish) => {
                // The state after prompt + reply (the last token not yet
                // consumed): the next turn of a chat starts with these ids.
                self.remember(&a.ids, &a.session);
                let _ = a.events.send(Event::Done { finish });
                false
            }
            None => true,
        }
    }

    /// One decode step for every active sequence.
    fn step(&mut self, active: &mut Vec<Active>) {
        self.metrics
            .batch_max
            .fetch_max(active.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let tokens: Vec<u32> = active.iter().map(|a| a.next).collect();
        let params: Vec<SamplingParams> = active.iter().map(|a| a.params).collect();
        let t0 = Instant::now();
        let result = {
            let mut sessions: Vec<&mut Session> =
                active.iter_mut().map(|a| &mut a.session).collect();
            self.model.decode_batch(&mut sessions, &tokens, &params)
        };
        let secs = t0.elapsed().as_secs_f64();
        match result {
            Ok(next) => {
                if secs > 0.0 {
                    let rate = active.len() as f64 / secs;
                    Metrics::set(&self.metrics.decode_tokens_per_second, rate.to_bits());
                }
                let mut keep = Vec::with_capacity(active.len());
                for (mut a, t) in active.drain(..).zip(next) {
                    a.ids.push(a.next);
                    a.next = t;
                    if self.deliver(&mut a) {
                        keep.push(a);
                    }
                }
                *active = keep;
            }
            Err(e) => {
                // Which sessions advanced is unknown: end them all.
                tracing::error!("decode step failed: {e}");
                for a in active.drain(..) {
                    let _ = a.events.send(Event::Error(e.to_string()));
                }
            }
        }
    }
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}
