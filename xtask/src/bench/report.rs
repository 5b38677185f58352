//! RESULTS.md from one run's figures: every qwgpu figure beside its roofline
//! and each peer's figure on the same weights, then the peers on their own
//! roofline, load and memory, the issue's targets, kernel microbenches.

use std::fmt::Write;

use super::results::{Results, Run, BF16, FP8, HF, LLAMA_CUDA, LLAMA_VULKAN, Q8_0, QWGPU};

/// tok/s with a thousands separator above 1000.
pub fn rate(x: f64) -> String {
    if x >= 1000.0 {
        let n = x.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{x:.1}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn pct(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.0}%", 100.0 * a / b),
        _ => "—".into(),
    }
}

fn cell(run: Option<&Run>, v: Option<f64>) -> String {
    match (run, v) {
        (_, Some(v)) => rate(v),
        (Some(r), None) if r.error.is_some() => "error".into(),
        _ => "—".into(),
    }
}

fn gb(bytes: f64) -> String {
    format!("{:.3} GB", bytes / 1e9)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1048576.0)
}

/// Models in the order they were first measured or made.
fn models(r: &Results) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let names = r
        .checkpoints
        .iter()
        .map(|c| &c.model)
        .chain(r.runs.iter().map(|x| &x.model));
    for m in names {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

/// A figure picked from a run.
type Pick = Box<dyn Fn(&Run) -> Option<f64>>;

/// A measure of the main table: label, qwgpu's figure, a peer's figure, the roofline.
struct Measure {
    label: String,
    get: Pick,
    /// A peer's figure where it differs (llama.cpp "ctx 512" is tg at depth 0).
    peer: Pick,
    decode: bool,
}

fn measures(r: &Results) -> Vec<Measure> {
    let mut out = Vec::new();
    for &c in &r.decode_contexts {
        out.push(Measure {
            label: format!("decode tok/s, ctx {c}"),
            get: Box::new(move |x: &Run| x.decode_at(c)),
            peer: Box::new(move |x: &Run| {
                x.decode_at(c).or_else(|| {
                    // llama-bench's plain tg128 has an empty context: the
                    // nearest figure to a short context.
                    if c <= 512 {
                        x.decode_at(0)
                    } else {
                        None
                    }
                })
            }),
            decode: true,
        });
    }
    for &n in &r.prefill_lens {
        out.push(Measure {
            label: format!("prefill tok/s, {n} tokens"),
            get: Box::new(move |x: &Run| x.prefill_of(n)),
            peer: Box::new(move |x: &Run| x.prefill_of(n)),
            decode: false,
        });
    }
    out
}

/// Roofline tok/s of `model` in `format`: decode from the copy bandwidth and
/// the bytes read per token, prefill from the matmul peak and the FLOPs per token.
fn roofline(r: &Results, model: &str, format: &str, decode: bool) -> Option<f64> {
    let w = r.checkpoint(model, format)?;
    if decode {
        Some(r.copy_bw_torch? / w.bytes_per_token)
    } else {
        Some(r.matmul_flops? / (2.0 * w.matmul_params_per_token))
    }
}

fn main_table(r: &Results, s: &mut String) {
    let _ = writeln!(
        s,
        "| model | weights (peers) | measure | qwgpu | roofline | qwgpu % of roofline | llama.cpp Vulkan | qwgpu ÷ Vulkan | llama.cpp CUDA | qwgpu ÷ CUDA | HF | qwgpu ÷ HF |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in models(r) {
        for (ours, gguf, hf) in [(BF16, BF16, Some(BF16)), (FP8, Q8_0, None)] {
            let q = r.run(QWGPU, &m, ours);
            let vk = r.run(LLAMA_VULKAN, &m, gguf);
            let cu = r.run(LLAMA_CUDA, &m, gguf);
            let h = hf.and_then(|f| r.run(HF, &m, f));
            if q.is_none() && vk.is_none() && cu.is_none() && h.is_none() {
                continue;
            }
            for ms in measures(r) {
                let qv = q.and_then(|x| (ms.get)(x));
                let vv = vk.and_then(|x| (ms.peer)(x));
                let cv = cu.and_then(|x| (ms.peer)(x));
                let hv = h.and_then(|x| (ms.get)(x));
                if qv.is_none() && vv.is_none() && cv.is_none() && hv.is_none() {
                    continue;
                }
                let roof = roofline(r, &m, ours, ms.decode);
                let _ =
                    writeln!(
                    s,
                    "| {m} | {ours} ({gguf}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    ms.label,
                    cell(q, qv),
                    roof.map(rate).unwrap_or_else(|| "—".into()),
                    pct(qv, roof),
                    cell(vk, vv),
                    ratio(qv, vv),
                    cell(cu, cv),
                    ratio(qv, cv),
                    if hf.is_some() { cell(h, hv) } else { "—".into() },
                    ratio(qv, hv),
                );
            }
        }
    }
}

fn peers_table(r: &Results, s: &mut String) {
    let peers: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| x.engine == LLAMA_VULKAN || x.engine == LLAMA_CUDA)
        .collect();
    if peers.is_empty() {
        let _ = writeln!(s, "No llama.cpp run in this report.");
        return;
    }
    let depths: Vec<usize> = {
        let mut d: Vec<usize> = peers
            .iter()
            .flat_map(|x| x.decode.iter().map(|p| p.0))
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let lens: Vec<usize> = {
        let mut d: Vec<usize> = peers
            .iter()
            .flat_map(|x| x.prefill.iter().map(|p| p.0))
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let mut head = "| model | GGUF | backend |".to_string();
    for d in &depths {
        let _ = write!(head, " tg tok/s, depth {d} |");
    }
    for n in &lens {
        let _ = write!(head, " pp{n} tok/s |");
    }
    head.push_str(" bytes read / token | roofline tok/s | tg depth 0 % of roofline |");
    let _ = writeln!(s, "{head}");
    let _ = writeln!(s, "|{}", "---|".repeat(3 + depths.len() + lens.len() + 3));
    for p in peers {
        let mut line = format!("| {} | {} | {} |", p.model, p.format, p.engine);
        for d in &depths {
            let _ = write!(line, " {} |", cell(Some(p), p.decode_at(*d)));
        }
        for n in &lens {
            let _ = write!(line, " {} |", cell(Some(p), p.prefill_of(*n)));
        }
        let w = r.checkpoint(&p.model, &format!("GGUF {}", p.format));
        let roof = w.and_then(|w| Some(r.copy_bw_torch? / w.bytes_per_token));
        let _ = writeln!(
            line,
            " {} | {} | {} |",
            w.map(|w| gb(w.bytes_per_token))
                .unwrap_or_else(|| "—".into()),
            roof.map(rate).unwrap_or_else(|| "—".into()),
            pct(p.decode_at(0), roof)
        );
        s.push_str(&line);
    }
}

fn load_table(r: &Results, s: &mut String) {
    let _ = writeln!(
        s,
        "| model | weights | load s | safetensors | GB/s | host memcpy % | peak RssAnon | VmHWM | largest tensor | RssAnon ≤ 1 GiB + largest tensor |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for x in r.runs.iter().filter(|x| x.engine == QWGPU) {
        let Some(load) = x.load_s else {
            let _ = writeln!(
                s,
                "| {} | {} | error: {} | | | | | | | |",
                x.model,
                x.format,
                x.error.as_deref().unwrap_or("no figure").replace('|', "/")
            );
            continue;
        };
        let bytes = x.checkpoint_bytes.unwrap_or(0) as f64;
        let rate_bps = bytes / load.max(1e-9);
        let largest = r
            .checkpoint(&x.model, &x.format)
            .map(|w| w.largest_tensor_bytes);
        let within = match (x.peak_rss_anon, largest) {
            (Some(p), Some(l)) => if p <= (1 << 30) + l { "yes" } else { "no" }.to_string(),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {} | {:.2} | {} | {} | {} | {} | {} |",
            x.model,
            x.format,
            load,
            gb(bytes),
            rate_bps / 1e9,
            pct(Some(rate_bps), r.host_memcpy),
            x.peak_rss_anon.map(mib).unwrap_or_else(|| "—".into()),
            x.vm_hwm.map(mib).unwrap_or_else(|| "—".into()),
            largest.map(mib).unwrap_or_else(|| "—".into()),
            within
        );
    }
}

/// (target, measured, verdict) rows for the issue's targets that this run can judge.
fn targets(r: &Results) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met".to_string(),
        Some(false) => "not met".to_string(),
        None => "not measured".to_string(),
    };
    let q = |m: &str, f: &str| r.run(QWGPU, m, f);
    let short = r.decode_contexts.first().copied().unwrap_or(512);
    let dec = |m: &str, f: &str| q(m, f).and_then(|x| x.decode_at(short));
    let peer_dec = |e: &str, m: &str, f: &str| {
        r.run(e, m, f)
            .and_then(|x| x.decode_at(short).or_else(|| x.decode_at(0)))
    };
    let mut roof_target = |label: &str, m: &str, f: &str, want: f64| {
        let v = dec(m, f);
        let roof = roofline(r, m, f, true);
        let frac = v.zip(roof).map(|(a, b)| a / b);
        out.push((
            label.to_string(),
            pct(v, roof),
            verdict(frac.map(|x| x >= want)),
        ));
    };
    roof_target("9B BF16 decode ≥ 85% of roofline", "9B", BF16, 0.85);
    roof_target("9B FP8 block decode ≥ 80% of its roofline", "9B", FP8, 0.80);
    roof_target("0.8B BF16 decode ≥ 30% of roofline", "0.8B", BF16, 0.30);
    let mut vs = |label: &str, a: Option<f64>, b: Option<f64>, want: f64| {
        out.push((
            label.to_string(),
            ratio(a, b),
            verdict(a.zip(b).map(|(a, b)| a / b >= want)),
        ));
    };
    vs(
        "0.8B BF16 decode ≥ 1.2× llama.cpp CUDA",
        dec("0.8B", BF16),
        peer_dec(LLAMA_CUDA, "0.8B", BF16),
        1.2,
    );
    vs(
        "9B BF16 decode ≥ 1.35× llama.cpp Vulkan",
        dec("9B", BF16),
        peer_dec(LLAMA_VULKAN, "9B", BF16),
        1.35,
    );
    vs(
        "9B BF16 decode ≥ 1.15× llama.cpp CUDA",
        dec("9B", BF16),
        peer_dec(LLAMA_CUDA, "9B", BF16),
        1.15,
    );
    vs(
        "9B FP8 decode ≥ 1.45× llama.cpp CUDA Q8_0",
        dec("9B", FP8),
        peer_dec(LLAMA_CUDA, "9B", Q8_0),
        1.45,
    );
    let best_q8 = |m: &str| {
        [LLAMA_VULKAN, LLAMA_CUDA]
            .iter()
            .filter_map(|e| peer_dec(e, m, Q8_0))
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
    };
    vs(
        "35B-A3B FP8 decode ≥ 1.2× llama.cpp Q8_0 (faster backend)",
        dec("35B-A3B", FP8),
        best_q8("35B-A3B"),
        1.2,
    );
    let long = r.prefill_lens.last().copied().unwrap_or(4096);
    let pre = |e: &str, m: &str| r.run(e, m, BF16).and_then(|x| x.prefill_of(long));
    vs(
        &format!("9B prefill {long} ≥ 1.0× llama.cpp Vulkan"),
        pre(QWGPU, "9B"),
        pre(LLAMA_VULKAN, "9B"),
        1.0,
    );
    vs(
        &format!("9B prefill {long} ≥ 0.5× HF"),
        pre(QWGPU, "9B"),
        pre(HF, "9B"),
        0.5,
    );
    if let (Some(&a), Some(&b)) = (r.decode_contexts.first(), r.decode_contexts.last()) {
        if b > a {
            for x in r.runs.iter().filter(|x| x.engine == QWGPU) {
                let (s, l) = (x.decode_at(a), x.decode_at(b));
                out.push((
                    format!(
                        "{} {} decode ctx {b} ≤ 10% slower than ctx {a}",
                        x.model, x.format
                    ),
                    s.zip(l)
                        .map(|(s, l)| format!("{:+.1}%", 100.0 * (l / s - 1.0)))
                        .unwrap_or_else(|| "—".into()),
                    verdict(s.zip(l).map(|(s, l)| l >= 0.9 * s)),
                ));
            }
        }
    }
    if let Some(x) = q("9B", BF16) {
        let largest = r.checkpoint("9B", BF16).map(|w| w.largest_tensor_bytes);
        out.push((
            "9B BF16 peak RssAnon ≤ 1 GiB + largest tensor".into(),
            x.peak_rss_anon.map(mib).unwrap_or_else(|| "—".into()),
            verdict(
                x.peak_rss_anon
                    .zip(largest)
                    .map(|(p, l)| p <= (1 << 30) + l),
            ),
        ));
        let rate_bps = x.checkpoint_bytes.zip(x.load_s).map(|(b, s)| b as f64 / s);
        out.push((
            "9B BF16 load ≥ 50% of host memcpy rate".into(),
            pct(rate_bps, r.host_memcpy),
            verdict(rate_bps.zip(r.host_memcpy).map(|(a, b)| a >= 0.5 * b)),
        ));
    }
    out.push((
        "GEMV BF16 / FP8 block ≥ 90% / 85% of copy bandwidth".into(),
        "no GEMV microbench yet".into(),
        verdict(None),
    ));
    out
}

pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark results\n");
    let _ = writeln!(
        s,
        "One run of `cargo xtask bench` (see README.md): {} on {} (qwgpu adapter: {}), qwgpu commit `{}`. \
         Random-weight checkpoints of real Qwen3.5 geometry made in the same run, batch 1, random token ids. \
         Every ratio compares figures of this one run.\n",
        r.date,
        if r.gpu.is_empty() { "?" } else { &r.gpu },
        if r.adapter.is_empty() { "?" } else { &r.adapter },
        r.commit
    );
    let _ = writeln!(s, "## Limits measured in this run\n");
    let _ = writeln!(s, "| limit | value |\n|---|---|");
    if let Some(bw) = r.copy_bw_torch {
        let _ = writeln!(
            s,
            "| device copy bandwidth, torch `copy_` (read + written) | {:.3} TB/s |",
            bw / 1e12
        );
    }
    if let Some(bw) = r.copy_bw_qwgpu {
        let _ = writeln!(
            s,
            "| device copy bandwidth, qwgpu copy kernel (read + written) | {:.3} TB/s ({} of torch) |",
            bw / 1e12,
            pct(Some(bw), r.copy_bw_torch)
        );
    }
    if let Some(f) = r.matmul_flops {
        let _ = writeln!(s, "| BF16 matmul, torch 8192³ | {:.0} TFLOP/s |", f / 1e12);
    }
    if let Some(h) = r.host_memcpy {
        let _ = writeln!(s, "| host memcpy (read + written) | {:.1} GB/s |", h / 1e9);
    }
    let _ = writeln!(
        s,
        "\nDecode roofline tok/s = torch copy bandwidth ÷ bytes of weights read per token, counted from the \
         checkpoint each engine reads (safetensors for qwgpu, the GGUF for llama.cpp): every tensor but the \
         untied input embedding; routed experts scaled by top-k ÷ experts; scales included; KV-cache and \
         recurrent-state traffic not counted. Prefill roofline tok/s = torch BF16 matmul FLOP/s ÷ (2 × layer \
         matrix parameters per token): attention's quadratic part and the head not counted.\n"
    );
    let _ = writeln!(s, "## Weights read per token\n");
    let _ = writeln!(s, "| model | weights | all tensors | read per decode token | layer matmul params / token | largest tensor |\n|---|---|---|---|---|---|");
    for c in &r.checkpoints {
        // A GGUF's figures come from llama.cpp's reader: bytes only.
        let gguf = c.format.starts_with("GGUF");
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            c.model,
            c.format,
            gb(c.weights.total_bytes as f64),
            gb(c.weights.bytes_per_token),
            if gguf {
                "—".into()
            } else {
                format!("{:.3} B", c.weights.matmul_params_per_token / 1e9)
            },
            if gguf {
                "—".into()
            } else {
                mib(c.weights.largest_tensor_bytes)
            }
        );
    }
    let _ = writeln!(s, "\n## qwgpu against the roofline and the peers\n");
    let _ = writeln!(
        s,
        "qwgpu runs the safetensors folder (BF16, or the same weights in Qwen's block-FP8 format); llama.cpp \
         the BF16 and Q8_0 GGUF converted from the same BF16 folder (FP8 rows compare with Q8_0, about the \
         same bytes per weight); HF transformers the BF16 folder (prefill only). llama.cpp figures are the \
         median of llama-bench's repetitions after the first (`llama-bench -ngl 99 -fa on {}`); its decode at a short context is `tg` at depth 0 \
         where no depth of that size ran. qwgpu decode at ctx N: N tokens prefilled, then {} decode steps timed.\n",
        if r.llama_args.is_empty() { "?" } else { &r.llama_args },
        r.decode_steps
    );
    main_table(r, &mut s);
    let _ = writeln!(s, "\n## llama.cpp on its own roofline\n");
    peers_table(r, &mut s);
    let _ = writeln!(s, "\n## qwgpu load and host memory\n");
    let _ = writeln!(
        s,
        "Load from the page cache (the folders were just written), to the first usable session. RssAnon \
         sampled every millisecond during the load (the kernel keeps no peak of it); VmHWM counts \
         file-backed pages too.\n"
    );
    load_table(r, &mut s);
    let _ = writeln!(s, "\n## Targets of issue 9\n");
    let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
    for (t, m, v) in targets(r) {
        let _ = writeln!(s, "| {t} | {m} | {v} |");
    }
    let profiled: Vec<&Run> = r.runs.iter().filter(|x| !x.profile.is_empty()).collect();
    if !profiled.is_empty() {
        let _ = writeln!(
            s,
            "\n## qwgpu decode step by kernel family (GPU time, `--profile`)\n"
        );
        for x in profiled {
            let total: f64 = x.profile.iter().map(|p| p.1).sum();
            let _ = writeln!(s, "{} {}: {:.3} ms per step\n", x.model, x.format, total);
            let _ = writeln!(s, "| family | ms | share | launches |\n|---|---|---|---|");
            for (f, ms, n) in &x.profile {
                let _ = writeln!(
                    s,
                    "| {f} | {ms:.3} | {} | {n} |",
                    pct(Some(*ms), Some(total))
                );
            }
            let _ = writeln!(s);
        }
    }
    if !r.kernels.is_empty() {
        let _ = writeln!(
            s,
            "\n## Kernel microbenches (crates/kernels `#[ignore]` bench tests)\n"
        );
        for k in &r.kernels {
            let _ = writeln!(
                s,
                "`{}`{}\n",
                k.test,
                k.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            if !k.lines.is_empty() {
                let _ = writeln!(s, "```\n{}\n```\n", k.lines.join("\n"));
            }
        }
    }
    let details: Vec<&Run> = r.runs.iter().filter(|x| x.detail.is_some()).collect();
    if !details.is_empty() || !r.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for x in details {
            let _ = writeln!(
                s,
                "- {} {} {}: {}",
                x.engine,
                x.model,
                x.format,
                x.detail.as_deref().unwrap_or("")
            );
        }
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let failed: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| {
            x.error
                .as_ref()
                .map(|e| format!("{} {} {}: {e}", x.engine, x.model, x.format))
        })
        .chain(r.errors.iter().cloned())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\n## Errors\n");
        for e in failed {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(s, "\n## Step times\n");
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|(n, t)| format!("{n} {t:.0} s"))
            .collect();
        let _ = writeln!(s, "{}", steps.join("; "));
    }
    s
}
