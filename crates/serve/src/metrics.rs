//! Counters for `GET /metrics` (Prometheus text format), written by the
//! handlers and the engine thread without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::histogram::Histogram;

/// The statuses `/metrics` counts error responses by (others: `4xx`/`5xx`).
pub const ERROR_STATUSES: [u16; 10] = [400, 401, 404, 405, 408, 413, 422, 429, 500, 503];

/// Where a request failed while the engine admitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionFailure {
    /// Creating its session.
    Session,
    /// Restoring a cached prefix into it.
    Restore,
    /// Prefilling the prompt and sampling the first token.
    Prefill,
}

impl AdmissionFailure {
    pub const ALL: [AdmissionFailure; 3] = [Self::Session, Self::Restore, Self::Prefill];

    /// The `reason` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Restore => "restore",
            Self::Prefill => "prefill",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub requests_total: AtomicU64,
    pub requests_rejected: AtomicU64,
    pub requests_cancelled: AtomicU64,
    /// Requests whose reply ended normally: end of sequence, a stop string
    /// or token, or `max_tokens`.
    pub requests_completed: AtomicU64,
    /// Decode steps that failed (every request in them got the error).
    pub decode_failures: AtomicU64,
    /// Error responses per [`ERROR_STATUSES`], then other 4xx, other 5xx.
    pub http_errors: [AtomicU64; ERROR_STATUSES.len() + 2],
    /// From the request's acceptance to its prefill's start.
    pub queue_wait: Histogram,
    /// From the request's acceptance to its first token.
    pub time_to_first_token: Histogram,
    /// Between consecutive tokens of a reply.
    pub inter_token_latency: Histogram,
    pub prompt_tokens: AtomicU64,
    pub prefill_tokens: AtomicU64,
    /// Pieces of prompts prefilled (a prompt takes one per scheduler step
    /// it spans, more where a step also starts the next prompt).
    pub prefill_chunks: AtomicU64,
    /// Requests taken from the queue whose prefill has not ended.
    pub prefill_pending: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// f64 bits: tokens of the last decode step / its duration.
    pub decode_tokens_per_second: AtomicU64,
    pub queue_depth: AtomicU64,
    pub active: AtomicU64,
    /// The largest decode step so far (sequences).
    pub batch_max: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_hit_tokens: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub cache_entries: AtomicU64,
    /// 1 while the engine thread serves.
    pub engine_up: AtomicU64,
    /// Engine threads that died (panicked).
    pub engine_failures: AtomicU64,
    /// Requests that failed at admission, per [`AdmissionFailure::ALL`].
    pub admission_failures: [AtomicU64; 3],
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Decrements without wrapping below zero.
    pub fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }

    pub fn set(counter: &AtomicU64, v: u64) {
        counter.store(v, Relaxed);
    }

    pub fn admission_failed(&self, stage: AdmissionFailure) {
        let i = AdmissionFailure::ALL
            .iter()
            .position(|&s| s == stage)
            .unwrap_or(0);
        Self::add(&self.admission_failures[i], 1);
    }

    /// Counts a response of `status` when it is an error.
    pub fn http_status(&self, status: u16) {
        let i = match ERROR_STATUSES.iter().position(|&s| s == status) {
            Some(i) => i,
            None if (400..500).contains(&status) => ERROR_STATUSES.len(),
            None if status >= 500 => ERROR_STATUSES.len() + 1,
            None => return,
        };
        Self::add(&self.http_errors[i], 1);
    }

    /// Prompt tokens restored from the cache / prompt tokens, 0 before any.
    fn cache_hit_ratio(&self) -> f64 {
        let prompt = self.prompt_tokens.load(Relaxed);
        if prompt == 0 {
            return 0.0;
        }
        self.cache_hit_tokens.load(Relaxed) as f64 / prompt as f64
    }

    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, f64); 22] = [
            (
                "qwgpu_requests_total",
                "counter",
                "Generation requests accepted.",
                self.requests_total.load(Relaxed) as f64,
            ),
            (
                "qwgpu_requests_rejected_total",
                "counter",
                "Requests refused because the queue was full (429).",
                self.requests_rejected.load(Relaxed) as f64,
            ),
            (
                "qwgpu_requests_cancelled_total",
                "counter",
                "Requests whose client went away before the end.",
                self.requests_cancelled.load(Relaxed) as f64,
            ),
            (
                "qwgpu_requests_completed_total",
                "counter",
                "Requests whose reply ended normally (end of sequence, stop string or token, max_tokens).",
                self.requests_completed.load(Relaxed) as f64,
            ),
            (
                "qwgpu_decode_failures_total",
                "counter",
                "Decode steps that failed (their requests got the error).",
                self.decode_failures.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prompt_tokens_total",
                "counter",
                "Prompt tokens of accepted requests.",
                self.prompt_tokens.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefill_tokens_total",
                "counter",
                "Prompt tokens actually prefilled (not restored from the prefix cache).",
                self.prefill_tokens.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefill_chunks_total",
                "counter",
                "Pieces of prompts prefilled, at most --prefill-chunk tokens per scheduler step.",
                self.prefill_chunks.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefill_pending",
                "gauge",
                "Requests holding a batch slot whose prompt is not yet prefilled.",
                self.prefill_pending.load(Relaxed) as f64,
            ),
            (
                "qwgpu_generated_tokens_total",
                "counter",
                "Tokens generated.",
                self.generated_tokens.load(Relaxed) as f64,
            ),
            (
                "qwgpu_decode_tokens_per_second",
                "gauge",
                "Tokens per second of the last decode step (all sequences).",
                f64::from_bits(self.decode_tokens_per_second.load(Relaxed)),
            ),
            (
                "qwgpu_queue_depth",
                "gauge",
                "Requests waiting for a batch slot.",
                self.queue_depth.load(Relaxed) as f64,
            ),
            (
                "qwgpu_active_sequences",
                "gauge",
                "Sequences in the decode batch.",
                self.active.load(Relaxed) as f64,
            ),
            (
                "qwgpu_decode_batch_max",
                "gauge",
                "The most sequences one decode step has run.",
                self.batch_max.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefix_cache_hits_total",
                "counter",
                "Requests that restored a cached prefix.",
                self.cache_hits.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefix_cache_misses_total",
                "counter",
                "Requests with no cached prefix.",
                self.cache_misses.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefix_cache_hit_tokens_total",
                "counter",
                "Prompt tokens restored from the prefix cache.",
                self.cache_hit_tokens.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefix_cache_hit_ratio",
                "gauge",
                "Prompt tokens restored from the prefix cache / prompt tokens of accepted requests.",
                self.cache_hit_ratio(),
            ),
            (
                "qwgpu_prefix_cache_bytes",
                "gauge",
                "Bytes the cached state snapshots hold (state, token ids, bookkeeping).",
                self.cache_bytes.load(Relaxed) as f64,
            ),
            (
                "qwgpu_prefix_cache_entries",
                "gauge",
                "Cached state snapshots.",
                self.cache_entries.load(Relaxed) as f64,
            ),
            (
                "qwgpu_engine_up",
                "gauge",
                "1 while the engine thread serves; 0 once it has stopped (requests then get 503).",
                self.engine_up.load(Relaxed) as f64,
            ),
            (
                "qwgpu_engine_failures_total",
                "counter",
                "Engine threads that died (panicked).",
                self.engine_failures.load(Relaxed) as f64,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "qwgpu_admission_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests the engine failed to start (session, prefix restore or prefill), by reason.\n# TYPE {name} counter"
        );
        for (stage, count) in AdmissionFailure::ALL.iter().zip(&self.admission_failures) {
            let (reason, value) = (stage.as_str(), count.load(Relaxed));
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
        }
        let name = "qwgpu_http_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Error responses (4xx, 5xx) by status.\n# TYPE {name} counter"
        );
        let labels = ERROR_STATUSES
            .iter()
            .map(u16::to_string)
            .chain(["4xx".to_string(), "5xx".to_string()]);
        for (status, count) in labels.zip(&self.http_errors) {
            let value = count.load(Relaxed);
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {value}");
        }
        self.queue_wait.render(
            &mut out,
            "qwgpu_queue_wait_seconds",
            "From a request's acceptance to the start of its prefill.",
        );
        self.time_to_first_token.render(
            &mut out,
            "qwgpu_time_to_first_token_seconds",
            "From a request's acceptance to its first token.",
        );
        self.inter_token_latency.render(
            &mut out,
            "qwgpu_inter_token_latency_seconds",
            "Between consecutive tokens of a reply.",
        );
        out
    }
}

/// Reads one value from a `/metrics` text (for tests and scripts); `name`
/// may carry labels (`qwgpu_http_errors_total{status="401"}`).
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
