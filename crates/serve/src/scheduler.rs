//! The engine thread: it owns the model and every session, and runs
//! continuous batching in steps. Between steps it takes queued requests while
//! the batch has room. Each step then runs at most one chunk of pending
//! prefill (the `prefill` module: the next prompts in arrival order, the
//! longest cached prefix restored first, up to the step's token budget; a
//! prompt's last piece samples its first token and joins the decode batch),
//! then one decode step for every decoding sequence, sends each new token to
//! its request and retires finished ones (end of sequence, `max_tokens`, or a
//! client that went away: its channel is closed). A long prompt thus takes
//! several steps while every running stream keeps getting a token per step.
//! The HTTP side never touches the model; it talks to this thread over
//! channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use qwgpu_checkpoint::TextConfig;
use qwgpu_model::engine::{LoadOptions, Model, SamplingParams, Session, StepControls};
use qwgpu_model::ModelError;
use tokio::sync::mpsc::{self, error::TryRecvError, UnboundedSender};

use crate::metrics::{AdmissionFailure, Metrics};
use crate::prefix_cache::{entry_bytes, PrefixCache};

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
    /// The request's prefill began (its session exists); `cached` prompt
    /// tokens came from the prefix cache.
    Admitted { cached: usize },
    /// A generated token (end-of-sequence tokens are not sent).
    Token(u32),
    /// The log-probabilities of the next [`Event::Token`] (requests that
    /// asked for them; sent just before it).
    Logprobs(crate::sampling_options::TokenLogprobs),
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
    /// `Some(n)`: send each token's log-probabilities with the `n` most likely.
    pub top_logprobs: Option<usize>,
    pub events: UnboundedSender<Event>,
    /// The grammar the reply must follow (`response_format`, a forced tool call).
    pub constraint: Option<crate::constrain::Constraint>,
    /// Request options beyond sampling, and timing.
    pub opts: JobOptions,
}

#[cfg(test)]
impl Job {
    /// Sampling with no randomness at all (temperature 0, no top-k / top-p).
    pub(crate) const GREEDY: SamplingParams = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    };

    /// A greedy job of `prompt` with default options, and its events (the
    /// engine's unit tests).
    pub(crate) fn greedy(
        prompt: Vec<u32>,
        max_tokens: usize,
    ) -> (Job, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            boundary: None,
            max_tokens,
            params: Self::GREEDY,
            seed: 1,
            top_logprobs: None,
            events,
            opts: Default::default(),
            constraint: None,
        };
        (job, rx)
    }
}

/// What a [`Job`] carries beyond its prompt and sampling.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Token ids that end the reply like an end-of-sequence token
    /// (`stop_token_ids`; not sent).
    pub stop_ids: Vec<u32>,
    /// The model's end-of-sequence tokens do not end the reply (`ignore_eos`).
    pub ignore_eos: bool,
    /// When the request was accepted (queue wait and time to first token
    /// are measured from here).
    pub accepted: Instant,
    /// Set by the HTTP side when it ended the reply itself (a stop string
    /// matched) before dropping its receiver: the engine then counts the
    /// request as completed, not cancelled.
    pub ended: Arc<AtomicBool>,
    /// The request's other choices (`n` > 1): each continues a fork of the
    /// session made once the prompt is prefilled, so the prompt runs once.
    pub forks: Vec<Fork>,
}

/// One more choice of a request: its own seed, events and stop flag.
#[derive(Debug, Clone)]
pub struct Fork {
    pub seed: u64,
    pub events: UnboundedSender<Event>,
    pub ended: Arc<AtomicBool>,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            stop_ids: Vec::new(),
            ignore_eos: false,
            accepted: Instant::now(),
            ended: Arc::default(),
            forks: Vec::new(),
        }
    }
}

impl JobOptions {
    /// Whether the HTTP side ended the reply (see [`JobOptions::ended`]).
    pub(crate) fn ended_by_client(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

/// A sequence in the decode batch.
pub(crate) struct Active {
    /// The request's number in arrival order (step records name it).
    pub(crate) id: u64,
    pub(crate) session: Session,
    /// Every token the session has consumed (its position).
    pub(crate) ids: Vec<u32>,
    /// The last sampled token, consumed by the next decode step.
    pub(crate) next: u32,
    pub(crate) generated: usize,
    pub(crate) max_tokens: usize,
    pub(crate) params: SamplingParams,
    /// As [`Job::top_logprobs`].
    pub(crate) top_logprobs: Option<usize>,
    /// The log-probabilities of `next`, when asked for.
    pub(crate) next_logprobs: Option<crate::sampling_options::TokenLogprobs>,
    pub(crate) events: UnboundedSender<Event>,
    /// As [`Job::constraint`]; it has taken every token before `next`.
    pub(crate) constraint: Option<crate::constrain::Constraint>,
    pub(crate) opts: JobOptions,
    /// When its last token was sent (inter-token latency).
    pub(crate) last_token: Option<Instant>,
}

/// A request taken from the queue whose prefill has not begun.
pub(crate) struct Waiting {
    pub(crate) id: u64,
    pub(crate) job: Job,
}

/// Every request the engine holds: waiting for prefill, being prefilled
/// (one at a time: prompts run in arrival order), or decoding.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) waiting: VecDeque<Waiting>,
    pub(crate) prefilling: Option<crate::prefill::Prefill>,
    pub(crate) active: Vec<Active>,
    next_id: u64,
}

impl Batch {
    /// Takes a request; returns its number in arrival order.
    pub(crate) fn push(&mut self, job: Job) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, job });
        id
    }

    /// Requests held (each takes a batch slot).
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + usize::from(self.prefilling.is_some()) + self.active.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests not yet decoding (waiting for prefill or in it).
    pub(crate) fn pending(&self) -> usize {
        self.waiting.len() + usize::from(self.prefilling.is_some())
    }
}

/// What one scheduler step ran: the engine's observable schedule (traced at
/// debug level; the tests check interleaving on it rather than on timing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StepRecord {
    /// The pieces of prompts prefilled, in the order they ran.
    pub(crate) prefill: Vec<crate::prefill::PrefillChunk>,
    /// The requests that ran this step's decode step, in batch order.
    pub(crate) decoded: Vec<u64>,
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

pub(crate) struct Engine {
    pub(crate) model: Model,
    eos: Vec<u32>,
    pub(crate) cache: PrefixCache<qwgpu_model::engine::Snapshot>,
    pub(crate) config: TextConfig,
    /// Whether the model runs on the GPU (its snapshots are GPU buffers).
    pub(crate) gpu: bool,
    pub(crate) metrics: Arc<Metrics>,
    /// Most prompt tokens prefilled per step (0: whole prompts at once).
    pub(crate) prefill_chunk: usize,
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
    /// Most prompt tokens prefilled per step (0: whole prompts at once).
    pub prefill_chunk: usize,
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
                prefill_chunk,
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
            let mut engine = Engine::new(model, eos, cache_mem, prefill_chunk, metrics.clone());
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
    /// An engine over `model` with a prefix cache of `cache_mem` bytes.
    pub(crate) fn new(
        model: Model,
        eos: Vec<u32>,
        cache_mem: u64,
        prefill_chunk: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let config = model.config().clone();
        Self {
            gpu: model.is_gpu(),
            model,
            eos,
            cache: PrefixCache::new(cache_mem),
            config,
            metrics,
            prefill_chunk,
        }
    }

    fn run(&mut self, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
        let mut batch = Batch::default();
        let mut open = true;
        loop {
            // Take queued requests: block for work only when nothing is held.
            while open && batch.len() < max_batch {
                let job = if batch.is_empty() {
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
                Metrics::add(&self.metrics.prompt_tokens, job.prompt.len() as u64);
                batch.push(job);
            }
            if batch.is_empty() {
                if !open {
                    return;
                }
                continue;
            }
            self.step(&mut batch);
        }
    }

    /// One scheduler step: drops requests whose client went away, prefills
    /// at most one chunk of pending prompts (a finished prompt's request
    /// joins the decode batch), then runs one decode step for every decoding
    /// sequence.
    pub(crate) fn step(&mut self, batch: &mut Batch) -> StepRecord {
        self.drop_cancelled(batch);
        let prefill = self.prefill(batch);
        self.gauges(batch);
        let decoded: Vec<u64> = batch.active.iter().map(|a| a.id).collect();
        if !batch.active.is_empty() {
            self.decode(&mut batch.active);
        }
        self.gauges(batch);
        let record = StepRecord { prefill, decoded };
        if !record.prefill.is_empty() {
            tracing::debug!(?record, "scheduler step");
        }
        record
    }

    fn gauges(&self, batch: &Batch) {
        Metrics::set(&self.metrics.active, batch.active.len() as u64);
        Metrics::set(&self.metrics.prefill_pending, batch.pending() as u64);
    }

    /// A client that went away frees its slot (and its session, mid-prefill
    /// too) before the step.
    fn drop_cancelled(&self, batch: &mut Batch) {
        let before = batch.len();
        batch.waiting.retain(|w| !w.job.events.is_closed());
        if batch
            .prefilling
            .as_ref()
            .is_some_and(|p| p.job.events.is_closed())
        {
            batch.prefilling = None;
        }
        let mut ended = 0;
        batch.active.retain(|a| {
            let closed = a.events.is_closed();
            ended += u64::from(closed && a.opts.ended_by_client());
            !closed
        });
        Metrics::add(&self.metrics.requests_completed, ended);
        Metrics::add(
            &self.metrics.requests_cancelled,
            (before - batch.len()) as u64 - ended,
        );
    }

    /// A request the engine could not start: the client gets the error, the
    /// log and `/metrics` (by stage) get it too.
    pub(crate) fn refuse(&self, job: &Job, stage: AdmissionFailure, e: &ModelError) {
        let (tokens, what) = (job.prompt.len(), stage.as_str());
        tracing::error!("a request of {tokens} prompt tokens failed at admission ({what}): {e}");
        self.metrics.admission_failed(stage);
        let _ = job.events.send(Event::Error(e.to_string()));
        for f in &job.opts.forks {
            let _ = f.events.send(Event::Error(e.to_string()));
        }
    }

    /// A session for `job` with the longest cached prefix of its prompt
    /// restored; with that prefix's length.
    pub(crate) fn start_session(
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
    pub(crate) fn remember(&mut self, ids: &[u32], session: &Session) {
        let bytes = entry_bytes(&self.config, ids.len(), self.gpu);
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
    pub(crate) fn deliver(&mut self, a: &mut Active) -> bool {
        let now = Instant::now();
        match a.last_token {
            None => self
                .metrics
                .time_to_first_token
                .observe(now - a.opts.accepted),
            Some(t) => self.metrics.inter_token_latency.observe(now - t),
        }
        a.last_token = Some(now);
        let ends =
            (!a.opts.ignore_eos && self.eos.contains(&a.next)) || a.opts.stop_ids.contains(&a.next);
        let finish = if ends {
            Some(Finish::Stop)
        } else {
            if let Err(e) = crate::constrain::hook::commit(a.constraint.as_mut(), a.next) {
                tracing::error!("constrained decoding: {e}");
                let _ = a.events.send(Event::Error(e.to_string()));
                return false;
            }
            a.generated += 1;
            Metrics::add(&self.metrics.generated_tokens, 1);
            if let Some(lp) = a.next_logprobs.take() {
                let _ = a.events.send(Event::Logprobs(lp));
            }
            if a.events.send(Event::Token(a.next)).is_err() {
                let counter = if a.opts.ended_by_client() {
                    &self.metrics.requests_completed
                } else {
                    &self.metrics.requests_cancelled
                };
                Metrics::add(counter, 1);
                return false;
            }
            (a.generated >= a.max_tokens).then_some(Finish::Length)
        };
        match finish {
            Some(finish) => {
                // The state after prompt + reply (the last token not yet
                // consumed): the next turn of a chat starts with these ids.
                self.remember(&a.ids, &a.session);
                Metrics::add(&self.metrics.requests_completed, 1);
                let _ = a.events.send(Event::Done { finish });
                false
            }
            None => true,
        }
    }

    /// One decode step for every active sequence.
    fn decode(&mut self, active: &mut Vec<Active>) {
        self.metrics
            .batch_max
            .fetch_max(active.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let tokens: Vec<u32> = active.iter().map(|a| a.next).collect();
        let params: Vec<SamplingParams> = active.iter().map(|a| a.params).collect();
        let t0 = Instant::now();
        let result = {
            // A grammar's mask is computed by its callback while the GPU
            // runs the step (`constrain::hook::mask_fn`).
            let (mut sessions, controls): (Vec<&mut Session>, Vec<StepControls>) = active
                .iter_mut()
                .map(|a| {
                    let controls = StepControls {
                        top_logprobs: a.top_logprobs,
                        mask: a.constraint.as_mut().map(crate::constrain::hook::mask_fn),
                    };
                    (&mut a.session, controls)
                })
                .unzip();
            self.model
                .decode_batch_with(&mut sessions, &tokens, &params, controls)
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
                    a.next = t.token;
                    a.next_logprobs = crate::sampling_options::TokenLogprobs::from_sampled(&t);
                    if self.deliver(&mut a) {
                        keep.push(a);
                    }
                }
                *active = keep;
            }
            Err(e) => {
                // Which sessions advanced is unknown: end them all.
                tracing::error!("decode step failed: {e}");
                Metrics::add(&self.metrics.decode_failures, 1);
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
