//! The report's multi-token sections: time to first token of long prompts
//! and batched decode over many sessions, each qwgpu figure beside the
//! peers' figure of the same run and its ratio. A figure the run did not
//! produce reads "not measured".

use std::fmt::Write;

use super::batched::batched_bench_context;
use super::report::{models, rate, ratio};
use super::results::{Results, BF16, FP8, HF, LLAMA_CUDA, LLAMA_VULKAN, Q8_0, QWGPU};

pub const NOT_MEASURED: &str = "not measured";

fn or_not_measured(v: Option<String>) -> String {
    v.unwrap_or_else(|| NOT_MEASURED.into())
}

fn seconds(s: f64) -> String {
    format!("{s:.3}")
}

/// A peer's time to first token of `n` tokens from its prefill rate at `n`
/// tokens in this run (prompt ÷ tok/s), when it measured that length.
fn peer_ttft(r: &Results, engine: &str, model: &str, format: &str, n: usize) -> Option<f64> {
    let tok_s = r.run(engine, model, format)?.prefill_of(n)?;
    (tok_s > 0.0).then(|| n as f64 / tok_s)
}

pub fn ttft_section(r: &Results, s: &mut String) {
    let _ = writeln!(s, "\n## Time to first token\n");
    if r.ttft_lens.is_empty() {
        let _ = writeln!(s, "{NOT_MEASURED} in this run.");
        return;
    }
    let _ = writeln!(
        s,
        "qwgpu: wall clock from a fresh session to the first sampled token of a random prompt \
         (`qwgpu bench --ttft`: the session's creation, the prompt's prefill, the sampled id read back). \
         The peers' seconds are prompt tokens ÷ their prefill tok/s at that length in this run (llama-bench \
         `pp`, HF's prefill), where they measured it. ÷ columns: qwgpu's speed over the peer's (the peer's \
         seconds ÷ qwgpu's; above 1 is a sooner first token).\n"
    );
    let _ = writeln!(
        s,
        "| model | weights (peers) | prompt tokens | qwgpu s | llama.cpp Vulkan s | qwgpu ÷ Vulkan | llama.cpp CUDA s | qwgpu ÷ CUDA | HF s | qwgpu ÷ HF |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for m in models(r) {
        for (ours, gguf) in [(BF16, BF16), (FP8, Q8_0)] {
            let Some(q) = r.run(QWGPU, &m, ours) else {
                continue;
            };
            for &n in &r.ttft_lens {
                let qs = q.ttft_of(n);
                let vk = peer_ttft(r, LLAMA_VULKAN, &m, gguf, n);
                let cu = peer_ttft(r, LLAMA_CUDA, &m, gguf, n);
                let hf = (ours == BF16)
                    .then(|| peer_ttft(r, HF, &m, BF16, n))
                    .flatten();
                let cell = |x: Option<f64>| or_not_measured(x.map(seconds));
                let _ = writeln!(
                    s,
                    "| {m} | {ours} ({gguf}) | {n} | {q_s} | {vk_s} | {vk_ratio} | {cu_s} | {cu_ratio} | {hf_s} | {hf_ratio} |",
                    q_s = cell(qs),
                    vk_s = cell(vk),
                    vk_ratio = ratio(vk, qs),
                    cu_s = cell(cu),
                    cu_ratio = ratio(cu, qs),
                    hf_s = cell(hf),
                    hf_ratio = ratio(hf, qs),
                );
            }
        }
    }
}

/// Session counts of the table: those asked for, else every count measured.
fn session_counts(r: &Results) -> Vec<usize> {
    if !r.session_counts.is_empty() {
        return r.session_counts.clone();
    }
    let mut out: Vec<usize> = r
        .batched
        .iter()
        .flat_map(|b| b.rows.iter().map(|x| x.0))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub fn batched_section(r: &Results, s: &mut String) {
    let _ = writeln!(s, "\n## Batched decode\n");
    let counts = session_counts(r);
    if counts.is_empty() || r.batched.is_empty() {
        let _ = writeln!(s, "{NOT_MEASURED} in this run.");
        return;
    }
    let (prompt, steps) = (r.session_prompt, r.session_steps);
    let ctx = batched_bench_context(&counts, prompt, steps);
    let _ = writeln!(
        s,
        "N sessions, each prefilled with its own {prompt} random tokens, then {steps} decode steps over all N \
         at once; total tok/s = N × {steps} ÷ the steps' time (prefill not counted). qwgpu: `qwgpu bench \
         --sessions` (`decode_batch`, one untimed step first); llama.cpp: `llama-batched-bench -ngl 99 -fa on \
         -c {ctx} -npp {prompt} -ntg {steps} -npl …` on the BF16 GGUF of the same weights, its `S_TG t/s` column \
         (prompts not shared). × 1 session: qwgpu's total over its own 1-session figure.\n"
    );
    let _ = writeln!(
        s,
        "| model | weights | sessions | qwgpu tok/s | × 1 session | llama.cpp CUDA tok/s | qwgpu ÷ CUDA | llama.cpp Vulkan tok/s | qwgpu ÷ Vulkan |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut shown: Vec<&str> = Vec::new();
    for b in &r.batched {
        if !shown.contains(&b.model.as_str()) {
            shown.push(&b.model);
        }
    }
    for m in shown {
        let pick = |engine: &str, n: usize| r.batched_run(engine, m, BF16).and_then(|b| b.tok_s(n));
        let one = pick(QWGPU, 1);
        for &n in &counts {
            let q = pick(QWGPU, n);
            let (cu, vk) = (pick(LLAMA_CUDA, n), pick(LLAMA_VULKAN, n));
            let cell = |x: Option<f64>| or_not_measured(x.map(rate));
            let scale = match (q, one) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {m} | {BF16} | {n} | {q_c} | {scale} | {cu_c} | {cu_ratio} | {vk_c} | {vk_ratio} |",
                q_c = cell(q),
                cu_c = cell(cu),
                cu_ratio = ratio(q, cu),
                vk_c = cell(vk),
                vk_ratio = ratio(q, vk),
            );
        }
    }
}
