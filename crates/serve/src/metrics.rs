//! Counters for `GET /metrics` (Prometheus text format), written by the
//! handlers and the engine thread without locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, f64); 19] = [
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
                "qwgpu_prefix_cache_bytes",
                "gauge",
                "Estimated bytes of cached state snapshots.",
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
        out
    }
}

/// Reads one value from a `/metrics` text (for tests and scripts).
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
