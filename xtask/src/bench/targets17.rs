//! Issue 17's targets (multi-token throughput), judged on one run's figures:
//! prefill at 4096 tokens against llama.cpp CUDA (with the "must"
//! and "stretch" bars), batched decode at 16 sessions against
//! llama-batched-bench CUDA and against qwgpu's own 1-session rate, loading
//! against the host memcpy rate.

use super::report::{load_target, ratio};
use super::results::{Results, BF16, FP8, HF, LLAMA_CUDA, LLAMA_VULKAN, Q8_0, QWGPU};
use super::throughput::NOT_MEASURED;

/// The prompt length of the prefill targets.
const PREFILL_TARGET_TOKENS: usize = 4096;
/// The session count of the batched-decode targets.
const BATCH_TARGET_SESSIONS: usize = 16;

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".into(),
        Some(false) => "not met".into(),
        None => NOT_MEASURED.into(),
    }
}

/// a ÷ b against `want`: (measured, verdict).
fn versus(a: Option<f64>, b: Option<f64>, want: f64) -> (String, String) {
    let q = a.zip(b).filter(|x| x.1 > 0.0).map(|(a, b)| a / b);
    (ratio(a, b), verdict(q.map(|q| q >= want)))
}

/// A target with a lower "must" bar: met, only the must bar, or neither.
fn graded(a: Option<f64>, b: Option<f64>, want: f64, must: f64) -> (String, String) {
    let q = a.zip(b).filter(|x| x.1 > 0.0).map(|(a, b)| a / b);
    let v = match q {
        None => NOT_MEASURED.to_string(),
        Some(q) if q >= want => "met".into(),
        Some(q) if q >= must => format!("must (≥ {must}×) met, target not met"),
        Some(_) => "not met (nor the must bar)".into(),
    };
    (ratio(a, b), v)
}

/// (target, measured, verdict) rows.
pub fn targets(r: &Results) -> Vec<(String, String, String)> {
    let n = PREFILL_TARGET_TOKENS;
    let pre = |e: &str, m: &str, f: &str| r.run(e, m, f).and_then(|x| x.prefill_of(n));
    let mut out = Vec::new();
    let mut row = |label: String, (measured, v): (String, String)| out.push((label, measured, v));
    row(
        format!("9B BF16 prefill {n} ≥ 1.0× llama.cpp CUDA"),
        versus(pre(QWGPU, "9B", BF16), pre(LLAMA_CUDA, "9B", BF16), 1.0),
    );
    row(
        format!("9B BF16 prefill {n} ≥ 1.0× llama.cpp Vulkan (must)"),
        versus(pre(QWGPU, "9B", BF16), pre(LLAMA_VULKAN, "9B", BF16), 1.0),
    );
    row(
        format!("9B BF16 prefill {n} ≥ 1.0× HF + fla (stretch)"),
        versus(pre(QWGPU, "9B", BF16), pre(HF, "9B", BF16), 1.0),
    );
    row(
        format!("9B FP8 block prefill {n} ≥ 1.0× llama.cpp CUDA Q8_0"),
        versus(pre(QWGPU, "9B", FP8), pre(LLAMA_CUDA, "9B", Q8_0), 1.0),
    );
    row(
        format!("0.8B BF16 prefill {n} ≥ 1.0× llama.cpp CUDA"),
        versus(pre(QWGPU, "0.8B", BF16), pre(LLAMA_CUDA, "0.8B", BF16), 1.0),
    );
    for (ours, theirs) in [(FP8, Q8_0), (BF16, BF16)] {
        row(
            format!(
                "35B-A3B geometry {ours} prefill {n} ≥ 0.5× llama.cpp CUDA {theirs} (must ≥ 0.25×)"
            ),
            graded(
                pre(QWGPU, "35B-A3B", ours),
                pre(LLAMA_CUDA, "35B-A3B", theirs),
                0.5,
                0.25,
            ),
        );
    }
    let k = BATCH_TARGET_SESSIONS;
    let batched = |e: &str, m: &str, sessions: usize| {
        r.batched_run(e, m, BF16).and_then(|b| b.tok_s(sessions))
    };
    for m in ["0.8B", "9B"] {
        row(
            format!("{m} BF16 batched decode, {k} sessions ≥ 1.0× llama-batched-bench CUDA"),
            versus(batched(QWGPU, m, k), batched(LLAMA_CUDA, m, k), 1.0),
        );
    }
    row(
        format!("9B BF16 batched decode, {k} sessions ≥ 4× qwgpu's 1-session rate"),
        versus(batched(QWGPU, "9B", k), batched(QWGPU, "9B", 1), 4.0),
    );
    // The load measured alone (after the GGUF conversion) where the run has it.
    let (measured, ok) = load_target(r);
    row(
        "9B BF16 load ≥ 50% of host memcpy".into(),
        (measured, verdict(ok)),
    );
    // Each side's decode measured alone (after the GGUF conversion) where it has one.
    out.push(super::baseline::regression_row(r));
    out
}
