//! Issue 19's targets (4-bit checkpoints), judged on one run's figures: qwgpu
//! on Qwen's official GPTQ-Int4 layout decodes at least as fast as
//! llama.cpp CUDA on the Q4_K_M GGUF of the same weights, and at ≥ 80 % of
//! the roofline of the bytes it reads. A reduced geometry (35B-A3B, 27B at
//! `--moe-layers`) compares the per-layer figures of [`reduced_rows`] (its
//! 4 layers would otherwise be dominated by the BF16 head, which the official
//! layout keeps and Q4_K_M quantizes); a model made whole, its own figures.

use super::opts::full_layers;
use super::report::{pct, ratio, reduced_rows};
use super::results::{Results, GPTQ, LLAMA_CUDA, Q4_K_M, QWGPU};
use super::throughput::NOT_MEASURED;

/// The bar of the decode ratio and of the roofline share.
const VS_Q4_K_M: f64 = 1.0;
const OF_ROOFLINE: f64 = 0.80;

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".into(),
        Some(false) => "not met".into(),
        None => NOT_MEASURED.into(),
    }
}

/// (target, measured, verdict) rows: one pair per model with a GPTQ-Int4 run.
pub fn targets(r: &Results) -> Vec<(String, String, String)> {
    let mut models: Vec<&str> = Vec::new();
    for x in r.runs.iter().filter(|x| x.format == GPTQ) {
        if !models.contains(&x.model.as_str()) {
            models.push(&x.model);
        }
    }
    let short = r.decode_contexts.first().copied().unwrap_or(512);
    let mut out = Vec::new();
    for m in models {
        let reduced = r.moe_layers.is_some() && full_layers(m).is_some();
        let (ours, theirs, how, ours_share) = if reduced {
            let rows = reduced_rows(r, m);
            let row = |e: &str, f: &str| rows.iter().find(|x| x.engine == e && x.format == f);
            let q = row(QWGPU, GPTQ);
            let share = q.and_then(|q| q.layer_roofline_ms.zip(q.layer_ms));
            (
                q.and_then(|x| x.full_tok_s),
                row(LLAMA_CUDA, Q4_K_M).and_then(|x| x.full_tok_s),
                format!(
                    " (both extrapolated to {full} layers)",
                    full = full_layers(m).unwrap_or(0)
                ),
                // (roofline ms, measured ms) per layer: the share is roof ÷ measured.
                share.map(|(roof, ms)| (1.0 / ms, 1.0 / roof)),
            )
        } else {
            let dec = |e: &str, f: &str| {
                r.run(e, m, f)
                    .and_then(|x| x.decode_at(short).or_else(|| x.decode_at(0)))
            };
            let roof = r
                .checkpoint(m, GPTQ)
                .zip(r.copy_bw_torch)
                .map(|(w, bw)| bw / w.bytes_per_token);
            let q = r.run(QWGPU, m, GPTQ).and_then(|x| x.decode_at(short));
            (q, dec(LLAMA_CUDA, Q4_K_M), String::new(), q.zip(roof))
        };
        let measured = match (ours, theirs) {
            (Some(_), Some(_)) => format!("{r_ratio}{how}", r_ratio = ratio(ours, theirs)),
            _ => ratio(ours, theirs),
        };
        out.push((
            format!("{m} GPTQ-Int4 decode ≥ {VS_Q4_K_M:.1}× llama.cpp CUDA Q4_K_M"),
            measured,
            verdict(
                ours.zip(theirs)
                    .filter(|x| x.1 > 0.0)
                    .map(|(a, b)| a / b >= VS_Q4_K_M),
            ),
        ));
        let (a, b) = (ours_share.map(|x| x.0), ours_share.map(|x| x.1));
        out.push((
            format!(
                "{m} GPTQ-Int4 decode ≥ {pct_bar:.0}% of its roofline{per_layer}",
                pct_bar = OF_ROOFLINE * 100.0,
                per_layer = if reduced { " (per layer)" } else { "" }
            ),
            pct(a, b),
            verdict(a.zip(b).map(|(a, b)| a / b >= OF_ROOFLINE)),
        ));
    }
    out
}
