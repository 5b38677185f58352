//! RESULTS.md from one run's figures: every qwgpu figure beside its roofline
//! and each peer's figure on the same weights, then the peers on their own
//! roofline, load and memory, the issue's targets, kernel microbenches.

use std::fmt::Write;

use super::coop::{coop_ceiling, CoopPeak, CoopProbe};
use super::opts::{full_layers, REDUCED};
use super::results::{
    GemvRow, Results, Run, BF16, FP8, GPTQ, HF, LLAMA_CUDA, LLAMA_VULKAN, Q4_0, Q4_K_M, Q8_0,
    QWGPU, QWGPU_F16,
};
use super::throughput::NOT_MEASURED;
use super::{targets17, targets19, throughput};

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

pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

pub fn pct(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.0}%", 100.0 * a / b),
        _ => "—".into(),
    }
}

/// The first commit whose `qwgpu bench` runs `fast` precision without
/// `--precision` (`exact` before it).
const FAST_DEFAULT_SINCE: &str = "5e07162";

/// What a precision does to the activations of a multi-token GEMM.
fn precision_does(p: &str) -> &'static str {
    match p {
        "fast" => "each activation row multiplied by a power of two and rounded to f16 once",
        "exact" => {
            "each activation row multiplied by a power of two and split into two f16 halves (results \
             as the f32 GEMM's, twice the tensor-core work)"
        }
        _ => "(a precision this report does not know)",
    }
}

/// Prefill with `--f16-matmul` beside the default runs and the peers.
fn f16_section(r: &Results, s: &mut String) {
    let runs: Vec<&Run> = r.runs.iter().filter(|x| x.engine == QWGPU_F16).collect();
    if runs.is_empty() {
        return;
    }
    // The default runs of the same folders, and the --f16-matmul runs.
    let mut both: Vec<&Run> = runs
        .iter()
        .filter_map(|x| r.run(QWGPU, &x.model, &x.format))
        .collect();
    both.extend(runs.iter().copied());
    let _ = writeln!(s, "\n## qwgpu prefill with `--f16-matmul`\n");
    let single = both
        .first()
        .and_then(|x| x.precision.as_deref())
        .filter(|p| both.iter().all(|x| x.precision.as_deref() == Some(*p)));
    if let Some(p) = single {
        let _ = write!(
            s,
            "The default runs and the `--f16-matmul` runs alike ran in **`{p}`** precision, as each \
             `qwgpu bench --json` recorded it: {does}. ",
            does = precision_does(p)
        );
    } else if both.iter().any(|x| x.precision.is_some()) {
        let each: Vec<String> = both
            .iter()
            .map(|x| {
                format!(
                    "{engine} {model} {format} `{p}`",
                    engine = x.engine,
                    model = x.model,
                    format = x.format,
                    p = x.precision.as_deref().unwrap_or("not recorded")
                )
            })
            .collect();
        let _ = write!(
            s,
            "Precision of the multi-token GEMMs, as each `qwgpu bench --json` recorded it: {each}. ",
            each = each.join(", ")
        );
    } else {
        let _ = write!(
            s,
            "This results.json does not record the runs' precision (written before the xtask kept \
             `qwgpu bench --json`'s `precision`): `qwgpu bench` without `--precision` runs `fast` from \
             commit `{FAST_DEFAULT_SINCE}` on and `exact` before; this run's commit is `{commit}`. ",
            commit = r.commit
        );
    }
    let _ = writeln!(
        s,
        "`fast`: {fast}; `exact`: {exact}; both decode the weights exactly from their stored format and \
         accumulate in f32. `fast` is qwgpu's default because its divergence from `exact`, measured as KL \
         on the fixtures and on these geometries, is far below HF's own BF16-vs-F32 divergence.\n\n\
         `--f16-matmul` (`ContextOptions::f16_matmul`) keeps the run's precision and changes which GEMM \
         takes a multi-token matmul and how it rounds x: the plain f16 cooperative-matrix GEMM (`mm_coop`) \
         rounds x to f16 directly, with no per-row power of two (an |x| above 65504 overflows), and takes \
         every GEMM whose weight format it supports (F32 included) in place of the precision's own choice \
         (the fast tensor-core GEMM `coop_fast`, `mm_coop`'s fast or exact variant, the scalar tile GEMM); \
         the skinny 17–64-token and the MoE grouped tensor-core GEMMs round x the same way. The f16-scratch \
         GEMM (`coop_f16`, from 128 tokens where `Tuning::coop_f16` is on) still comes first for the \
         weights it takes, and with the flag rounds as `fast` does. Same weights, same run.\n",
        fast = precision_does("fast"),
        exact = precision_does("exact")
    );
    let _ = writeln!(
        s,
        "| model | weights | prompt tokens | --f16-matmul tok/s | default tok/s | ÷ default | ÷ llama.cpp Vulkan | ÷ llama.cpp CUDA | ÷ HF |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for x in runs {
        if let Some(e) = &x.error {
            let _ = writeln!(
                s,
                "| {x_model} | {x_format} | — | error: {e} | | | | | |",
                x_model = x.model,
                x_format = x.format
            );
            continue;
        }
        for &(n, v) in &x.prefill {
            let of = |engine: &str, format: &str| {
                r.run(engine, &x.model, format)
                    .and_then(|p| p.prefill_of(n))
            };
            let default = of(QWGPU, &x.format);
            let _ = writeln!(
                s,
                "| {x_model} | {x_format} | {n} | {rate_v} | {default_rate} | {ratio_default} | {format} | {format2} | {ratio_hf} |",
                x_model = x.model,
                x_format = x.format,
                rate_v = rate(v),
                default_rate = default.map_or("—".into(), rate),
                ratio_default = ratio(Some(v), default),
                format = ratio(Some(v), of(LLAMA_VULKAN, &x.format)),
                format2 = ratio(Some(v), of(LLAMA_CUDA, &x.format)),
                ratio_hf = ratio(Some(v), of(HF, &x.format)),
            );
        }
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
pub fn models(r: &Results) -> Vec<String> {
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

/// A model's name in the tables: a reduced geometry (35B-A3B, 27B) says how
/// many layers it has.
fn model_label(r: &Results, model: &str) -> String {
    match (r.moe_layers, full_layers(model)) {
        (Some(l), Some(full)) => format!("{model} ({l} of {full} layers)"),
        _ => model.to_string(),
    }
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
        let label = model_label(r, &m);
        for (ours, gguf, hf) in [
            (BF16, BF16, Some(BF16)),
            (FP8, Q8_0, None),
            (GPTQ, Q4_K_M, None),
            (GPTQ, Q4_0, None),
        ] {
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
                    "| {label} | {ours} ({gguf}) | {ms_label} | {cell_q_qv} | {into} | {pct_qv_roof} | {cell_vk_vv} | {ratio_qv_vv} | {cell_cu_cv} | {ratio_qv_cv} | {into2} | {ratio_qv_hv} |",
                    ms_label = ms.label,
                    cell_q_qv = cell(q, qv),
                    into = roof.map(rate).unwrap_or_else(|| "—".into()),
                    pct_qv_roof = pct(qv, roof),
                    cell_vk_vv = cell(vk, vv),
                    ratio_qv_vv = ratio(qv, vv),
                    cell_cu_cv = cell(cu, cv),
                    ratio_qv_cv = ratio(qv, cv),
                    into2 = if hf.is_some() { cell(h, hv) } else { "—".into() },
                    ratio_qv_hv = ratio(qv, hv),
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
        let mut line = format!(
            "| {p_model} | {p_format} | {p_engine} |",
            p_model = p.model,
            p_format = p.format,
            p_engine = p.engine
        );
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
            " {into} | {into2} | {decode_pct} |",
            into = w
                .map(|w| gb(w.bytes_per_token))
                .unwrap_or_else(|| "—".into()),
            into2 = roof.map(rate).unwrap_or_else(|| "—".into()),
            decode_pct = pct(p.decode_at(0), roof)
        );
        s.push_str(&line);
    }
}

/// qwgpu's batch-1 decode measured again alone beside the main run's
/// figure (which the main table keeps); nothing where no run has one.
fn decode_alone_section(r: &Results, s: &mut String) {
    let runs: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| x.engine == QWGPU && !x.decode_alone.is_empty())
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## qwgpu decode measured alone\n");
    let _ = writeln!(
        s,
        "Batch-1 decode measured again once the GGUF conversion was done, in a `qwgpu bench --decode-at N \
         --decode {steps}` process of its own (N tokens prefilled, then {steps} decode steps timed; no \
         prefill lengths, time to first token, profile or sessions), with nothing else of the run on the \
         CPU. The table above keeps the main run's figures, taken while the GGUF conversion (nice 10) and, \
         with `--cuda`, the CUDA llama.cpp build used the CPU (a decode step of a millisecond or so is \
         sensitive to host latency). Issue 17's no-decode-regression target judges the figure measured \
         alone where there is one.\n",
        steps = r.decode_steps
    );
    let _ = writeln!(
        s,
        "| model | weights | measure | qwgpu, alone | qwgpu, main run | alone ÷ main run | alone % of roofline |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for x in runs {
        let label = model_label(r, &x.model);
        let roof = roofline(r, &x.model, &x.format, true);
        for &(c, v) in &x.decode_alone {
            let main = x.decode_at(c);
            let _ = writeln!(
                s,
                "| {label} | {format} | decode tok/s, ctx {c} | {alone} | {main_cell} | {vs_main} | {roof_pct} |",
                format = x.format,
                alone = rate(v),
                main_cell = cell(Some(x), main),
                vs_main = ratio(Some(v), main),
                roof_pct = pct(Some(v), roof),
            );
        }
    }
}

/// Whether any qwgpu run has its load measured again alone.
fn any_load_alone(r: &Results) -> bool {
    r.runs
        .iter()
        .any(|x| x.engine == QWGPU && x.load_alone.is_some())
}

/// Whether any qwgpu run's judged load has the finer split of its weights
/// streaming (slot submits and maps, buffer creation, source lookups); an
/// older results.json has none, and its load table stays as it was.
fn any_load_detail(r: &Results) -> bool {
    r.runs.iter().filter(|x| x.engine == QWGPU).any(|x| {
        let l = x.judged_load().0;
        l.slots_s.is_some() || l.buffers_s.is_some() || l.sources_s.is_some()
    })
}

/// A figure in seconds, or "—".
fn secs_cell(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

fn load_table(r: &Results, s: &mut String) {
    // With loads measured alone: that figure first, the main run's beside it.
    let alone_cols = any_load_alone(r);
    // With the finer split: two more columns after host copies / GPU waits.
    let detail_cols = any_load_detail(r);
    let _ = writeln!(
        s,
        "| model | weights | {load_head} | safetensors | GB/s | host memcpy GB/s | host memcpy % | of which device open s | weights streamed s (GB/s) | of which host copies / GPU-copy waits s |{detail_head} peak RssAnon | VmHWM | largest tensor | RssAnon ≤ 1 GiB + largest tensor |",
        load_head = if alone_cols {
            "load s, alone | load s, main run (GGUF conversion on the CPU)"
        } else {
            "load s"
        },
        detail_head = if detail_cols {
            " of which slot submits and maps / buffer creation / source lookups s | rest (loader walk) s |"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "|---|---|{extra}---|---|---|---|---|---|---|---|{detail}---|---|---|---|",
        extra = if alone_cols { "---|" } else { "" },
        detail = if detail_cols { "---|---|" } else { "" }
    );
    for x in r.runs.iter().filter(|x| x.engine == QWGPU) {
        let (l, alone) = x.judged_load();
        let Some(load) = l.load_s else {
            let _ = writeln!(
                s,
                "| {x_model} | {x_format} | error: {replace} |{extra}{detail} | | | | | | | | | | |",
                x_model = x.model,
                x_format = x.format,
                replace = x.error.as_deref().unwrap_or("no figure").replace('|', "/"),
                extra = if alone_cols { " |" } else { "" },
                detail = if detail_cols { " | |" } else { "" }
            );
            continue;
        };
        let load_cells = match (alone_cols, alone) {
            (false, _) => format!("{load:.2}"),
            (true, true) => format!(
                "{load:.2} | {main}",
                main = x.load_s.map_or_else(|| "—".into(), |m| format!("{m:.2}"))
            ),
            (true, false) => format!("{NOT_MEASURED} | {load:.2}"),
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
            "| {x_model} | {x_format} | {load_cells} | {gb_bytes} | {rate_bps_1e9:.2} | {memcpy_gb_s} | {host_memcpy} | {device} | {streamed} | {split} |{detail} {into} | {into2} | {into3} | {within} |",
            x_model = x.model,
            x_format = x.format,
            gb_bytes = gb(bytes),
            rate_bps_1e9 = rate_bps / 1e9,
            memcpy_gb_s = r
                .host_memcpy
                .map_or_else(|| NOT_MEASURED.into(), |h| format!("{:.1}", h / 1e9)),
            host_memcpy = pct(Some(rate_bps), r.host_memcpy),
            device = l
                .device_open_s
                .map_or_else(|| "—".into(), |d| format!("{d:.2}")),
            streamed = l.weights_s.map_or_else(
                || "—".into(),
                |w| format!("{w:.2} ({rate:.2})", rate = bytes / w.max(1e-9) / 1e9)
            ),
            split = match (l.host_copy_s, l.gpu_wait_s) {
                (Some(c), Some(w)) => format!("{c:.2} / {w:.2}"),
                _ => "—".into(),
            },
            detail = if detail_cols {
                let parts = [l.slots_s, l.buffers_s, l.sources_s];
                let cell = if parts.iter().all(Option::is_none) {
                    "—".to_string()
                } else {
                    parts.map(secs_cell).join(" / ")
                };
                format!(" {cell} | {rest} |", rest = secs_cell(l.rest_s()))
            } else {
                String::new()
            },
            into = x.peak_rss_anon.map(mib).unwrap_or_else(|| "—".into()),
            into2 = x.vm_hwm.map(mib).unwrap_or_else(|| "—".into()),
            into3 = largest.map(mib).unwrap_or_else(|| "—".into())
        );
    }
}

/// The measured cell of a "9B BF16 load ≥ 50% of host memcpy" target, and
/// its verdict (`None`: not measured).
pub fn load_target(r: &Results) -> (String, Option<bool>) {
    let (rate_bps, alone) = r
        .run(QWGPU, "9B", BF16)
        .map_or((None, false), Run::load_bps);
    let mut measured = pct(rate_bps, r.host_memcpy);
    if alone && rate_bps.is_some() && r.host_memcpy.is_some() {
        measured.push_str(" (load measured alone, after the GGUF conversion)");
    }
    (
        measured,
        rate_bps.zip(r.host_memcpy).map(|(a, b)| a >= 0.5 * b),
    )
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
    let vs = |label: &str, a: Option<f64>, b: Option<f64>, want: f64| {
        (
            label.to_string(),
            ratio(a, b),
            verdict(a.zip(b).map(|(a, b)| a / b >= want)),
        )
    };
    out.push(vs(
        "0.8B BF16 decode ≥ 1.2× llama.cpp CUDA",
        dec("0.8B", BF16),
        peer_dec(LLAMA_CUDA, "0.8B", BF16),
        1.2,
    ));
    out.push(vs(
        "9B BF16 decode ≥ 1.35× llama.cpp Vulkan",
        dec("9B", BF16),
        peer_dec(LLAMA_VULKAN, "9B", BF16),
        1.35,
    ));
    out.push(vs(
        "9B BF16 decode ≥ 1.15× llama.cpp CUDA",
        dec("9B", BF16),
        peer_dec(LLAMA_CUDA, "9B", BF16),
        1.15,
    ));
    out.push(vs(
        "9B FP8 decode ≥ 1.45× llama.cpp CUDA Q8_0",
        dec("9B", FP8),
        peer_dec(LLAMA_CUDA, "9B", Q8_0),
        1.45,
    ));
    let best_q8 = |m: &str| {
        [LLAMA_VULKAN, LLAMA_CUDA]
            .iter()
            .filter_map(|e| peer_dec(e, m, Q8_0))
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
    };
    // The 35B-A3B checkpoint has fewer layers: compare the full-model
    // figures extrapolated from its per-layer time.
    let moe = moe_rows(r);
    let full = |engine: &str, format: &str| {
        moe.iter()
            .find(|m| m.engine == engine && m.format == format)
            .and_then(|m| m.full_tok_s)
    };
    let best_q8_full = [LLAMA_VULKAN, LLAMA_CUDA]
        .iter()
        .filter_map(|e| full(e, Q8_0))
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    let q_full = full(QWGPU, FP8);
    const MOE_TARGET: &str = "35B-A3B FP8 decode ≥ 1.2× llama.cpp Q8_0 (faster backend)";
    match (q_full, best_q8_full) {
        (Some(_), Some(_)) => out.push((
            MOE_TARGET.into(),
            format!(
                "{q_ratio} (both extrapolated to {FULL_MOE_LAYERS} layers)",
                q_ratio = ratio(q_full, best_q8_full)
            ),
            verdict(q_full.zip(best_q8_full).map(|(a, b)| a / b >= 1.2)),
        )),
        // A whole model (e.g. `--hf 35B-A3B=DIR`): its own figures.
        _ if r.moe_layers.is_none() => {
            out.push(vs(MOE_TARGET, dec("35B-A3B", FP8), best_q8("35B-A3B"), 1.2))
        }
        _ => out.push((
            MOE_TARGET.into(),
            ratio(dec("35B-A3B", FP8), best_q8("35B-A3B")),
            verdict(None),
        )),
    }
    // Issue 9's prefill targets are at 4096 tokens where the run has them.
    let long = if r.prefill_lens.contains(&4096) {
        4096
    } else {
        r.prefill_lens.last().copied().unwrap_or(4096)
    };
    let pre = |e: &str, m: &str| r.run(e, m, BF16).and_then(|x| x.prefill_of(long));
    out.push(vs(
        &format!("9B prefill {long} ≥ 1.0× llama.cpp Vulkan"),
        pre(QWGPU, "9B"),
        pre(LLAMA_VULKAN, "9B"),
        1.0,
    ));
    out.push(vs(
        &format!("9B prefill {long} ≥ 0.5× HF"),
        pre(QWGPU, "9B"),
        pre(HF, "9B"),
        0.5,
    ));
    if let (Some(&a), Some(&b)) = (r.decode_contexts.first(), r.decode_contexts.last()) {
        if b > a {
            for x in r.runs.iter().filter(|x| x.engine == QWGPU) {
                let (s, l) = (x.decode_at(a), x.decode_at(b));
                out.push((
                    format!(
                        "{x_model} {x_format} decode ctx {b} ≤ 10% slower than ctx {a}",
                        x_model = x.model,
                        x_format = x.format
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
        let (measured, ok) = load_target(r);
        out.push((
            "9B BF16 load ≥ 50% of host memcpy rate".into(),
            measured,
            verdict(ok),
        ));
    }
    out.push(gemv_target(r));
    out
}

/// The GEMV target, judged on the 9B decode set (bytes-weighted over one
/// token's GEMVs) against the copy kernel measured in the same test.
fn gemv_target(r: &Results) -> (String, String, String) {
    let label = "GEMV BF16 / FP8 block ≥ 90% / 85% of copy bandwidth (9B decode set)".to_string();
    let Some(g) = &r.gemv else {
        return (label, "no GEMV figures".into(), "not measured".into());
    };
    let (bf16, fp8) = (g.summary("9B", BF16), g.summary("9B", FP8));
    let of_torch = |x: Option<&GemvRow>| {
        x.and_then(|x| Some(format!("{:.0}%", 100.0 * x.gbps * 1e9 / r.copy_bw_torch?)))
            .unwrap_or_else(|| "—".into())
    };
    let own = |x: Option<&GemvRow>| {
        x.map(|x| format!("{:.0}%", x.copy_pct))
            .unwrap_or_else(|| "—".into())
    };
    let mut measured = format!(
        "{own_bf16} / {own_fp8} of the copy kernel",
        own_bf16 = own(bf16),
        own_fp8 = own(fp8)
    );
    if r.copy_bw_torch.is_some() {
        let _ = write!(
            measured,
            " ({of_torch_bf16} / {of_torch_fp8} of torch `copy_`)",
            of_torch_bf16 = of_torch(bf16),
            of_torch_fp8 = of_torch(fp8)
        );
    }
    let ok = |x: Option<&GemvRow>, want: f64| x.map(|x| x.copy_pct >= want);
    let verdict = match (ok(bf16, 90.0), ok(fp8, 85.0)) {
        (Some(true), Some(true)) => "met".to_string(),
        (Some(false), Some(false)) => "not met".to_string(),
        (Some(a), Some(b)) => format!(
            "BF16 {a_met}, FP8 block {b_met}",
            a_met = if a { "met" } else { "not met" },
            b_met = if b { "met" } else { "not met" }
        ),
        _ => "not measured".to_string(),
    };
    (label, measured, verdict)
}

/// Layers of the real Qwen3.5-35B-A3B (30 linear + 10 full attention).
pub const FULL_MOE_LAYERS: usize = 40;

/// One engine's decode of a reduced geometry (35B-A3B, 27B), measured on
/// the reduced checkpoint and extrapolated to the full model.
pub struct MoeRow {
    pub engine: String,
    pub format: String,
    pub layers: usize,
    /// The real model's layers.
    pub full_layers: usize,
    pub tok_s: f64,
    /// The LM head's bytes at the torch copy bandwidth (the non-layer part of a token).
    pub head_ms: Option<f64>,
    pub layer_ms: Option<f64>,
    /// One layer's weight bytes (routed experts: top-k of them) at the torch copy bandwidth.
    pub layer_roofline_ms: Option<f64>,
    pub full_tok_s: Option<f64>,
}

/// [`reduced_rows`] of the 35B-A3B.
pub fn moe_rows(r: &Results) -> Vec<MoeRow> {
    reduced_rows(r, "35B-A3B")
}

/// Per-layer decode time = (time per token − head bytes ÷ copy bandwidth) ÷ layers;
/// full model = head + its real layer count × per layer. The head is each
/// engine's own (BF16 in the FP8 and GPTQ folders, the GGUF's own output
/// tensor); embedding gather and final norm are left in the per-layer share
/// (microseconds). Empty for a model made whole.
pub fn reduced_rows(r: &Results, model: &str) -> Vec<MoeRow> {
    let Some(layers) = r.moe_layers.filter(|&l| l > 0) else {
        return Vec::new();
    };
    let Some(full) = full_layers(model) else {
        return Vec::new();
    };
    let short = r.decode_contexts.first().copied().unwrap_or(512);
    let mut out = Vec::new();
    for x in r.runs.iter().filter(|x| x.model == model) {
        let tok_s = if x.engine == QWGPU {
            x.decode_at(short)
        } else {
            x.decode_at(short).or_else(|| x.decode_at(0))
        };
        let Some(tok_s) = tok_s.filter(|&t| t > 0.0) else {
            continue;
        };
        let ckpt = if x.engine == QWGPU || x.engine == HF {
            x.format.clone()
        } else {
            format!("GGUF {}", x.format)
        };
        let w = r.checkpoint(model, &ckpt).filter(|w| w.head_bytes > 0);
        let head_ms = w
            .zip(r.copy_bw_torch)
            .map(|(w, bw)| 1e3 * w.head_bytes as f64 / bw);
        let layer_roofline_ms = w.zip(r.copy_bw_torch).map(|(w, bw)| {
            1e3 * (w.bytes_per_token - w.head_bytes as f64).max(0.0) / layers as f64 / bw
        });
        let step_ms = 1e3 / tok_s;
        let layer_ms = head_ms
            .map(|h| (step_ms - h) / layers as f64)
            .filter(|&l| l > 0.0);
        let full_tok_s = head_ms
            .zip(layer_ms)
            .map(|(h, l)| 1e3 / (h + full as f64 * l));
        out.push(MoeRow {
            engine: x.engine.clone(),
            format: x.format.clone(),
            layers,
            full_layers: full,
            tok_s,
            head_ms,
            layer_ms,
            layer_roofline_ms,
            full_tok_s,
        });
    }
    out
}

/// The geometry sentence of a reduced model's section.
fn reduced_geometry(model: &str) -> &'static str {
    match model {
        "35B-A3B" => {
            "The 35B-A3B geometry (hidden 2048, 256 experts of 512, top 8, a shared expert, GDN and gated \
             attention 3 : 1)"
        }
        _ => "The 27B dense geometry (hidden 5120, MLP 17408, 48 GDN value heads, GDN and gated attention 3 : 1)",
    }
}

fn reduced_section(r: &Results, s: &mut String, model: &str) {
    let rows = reduced_rows(r, model);
    if rows.is_empty() {
        return;
    }
    let (layers, full) = (rows[0].layers, rows[0].full_layers);
    let title = if model == "35B-A3B" {
        "35B-A3B MoE"
    } else {
        "27B dense"
    };
    let _ = writeln!(
        s,
        "\n## {title}: per layer, extrapolated to the full model\n"
    );
    let _ = writeln!(
        s,
        "{geometry} with {layers} of its {full} layers, the same weights for both engines; decode at ctx {unwrap_or}. \
         Per layer = (ms per token − the engine's own LM head bytes ÷ torch copy bandwidth) ÷ {layers}; \
         **extrapolated** full model = head + {full} × per layer (the head at its roofline time makes \
         the per-layer figure an upper bound, for both engines alike).\n",
        geometry = reduced_geometry(model),
        unwrap_or = r.decode_contexts.first().copied().unwrap_or(512)
    );
    let _ = writeln!(
        s,
        "| engine | weights | decode tok/s, {layers} layers (measured) | ms / token | head at roofline, ms | ms per layer | layer at roofline, ms | {full} layers tok/s (extrapolated) |\n|---|---|---|---|---|---|---|---|"
    );
    let ms = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    for m in &rows {
        let _ = writeln!(
            s,
            "| {m_engine} | {m_format} | {rate_m_tok_s} | {tok_s:.3} | {ms_m_head_ms} | {ms_m_layer_ms} | {roofline_ms} | {into} |",
            m_engine = m.engine,
            m_format = m.format,
            rate_m_tok_s = rate(m.tok_s),
            tok_s = 1e3 / m.tok_s,
            ms_m_head_ms = ms(m.head_ms),
            ms_m_layer_ms = ms(m.layer_ms),
            roofline_ms = ms(m.layer_roofline_ms),
            into = m.full_tok_s.map(rate).unwrap_or_else(|| "—".into())
        );
    }
}

/// The GEMV table's two format column groups, in order.
const GEMV_FORMATS: [&str; 2] = [BF16, FP8];

fn gemv_section(r: &Results, s: &mut String) {
    let Some(g) = &r.gemv else {
        return;
    };
    let _ = writeln!(
        s,
        "\n## GEMV bandwidth (decode, T = 1; `gemv_bench::gemv_bandwidth`)\n"
    );
    let _ = writeln!(
        s,
        "`qwgpu_kernels::matmul` at one token on every weight shape of a decode step (and the MoE FFN of one \
         token: router, top-8 routing, 8 experts' gate_up SwiGLU and down, combine), BF16 and FP8 E4M3 with \
         128×128 block scales; bytes = weights as stored + scale table; GPU timestamps, median of 7 passes, each \
         launch reading its own copy of the weight (L2-cold, as in a real step). % of copy = of the crate's copy \
         kernel measured in the same test{}. Per token = launches per decode token of the full model.\n",
        g.copy_bps
            .map(|b| format!(" ({:.3} TB/s read + written)", b / 1e12))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "| model | weight | rows × cols | per token | BF16 µs | BF16 GB/s | BF16 % of copy | FP8 block µs | FP8 block GB/s | FP8 block % of copy |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for x in &g.shapes {
        if !keys.contains(&(x.model.as_str(), x.shape.as_str())) {
            keys.push((x.model.as_str(), x.shape.as_str()));
        }
    }
    let cells = |x: Option<&GemvRow>| match x {
        Some(x) => format!(
            "{x_us:.1} | {rate_x_gbps} | {x_copy_pct:.0}%",
            x_us = x.us,
            rate_x_gbps = rate(x.gbps),
            x_copy_pct = x.copy_pct
        ),
        None => "— | — | —".into(),
    };
    for (model, shape) in keys {
        let pick = |f: &str| {
            g.shapes
                .iter()
                .find(|x| x.model == model && x.shape == shape && x.format == f)
        };
        let Some(any) = pick(BF16).or_else(|| pick(FP8)) else {
            continue;
        };
        let dims = match (any.rows, any.cols) {
            (Some(rows), Some(cols)) => format!("{rows} × {cols}"),
            _ => any.detail.clone(),
        };
        let shape_label = if any.epilogue.is_empty() {
            shape.to_string()
        } else {
            format!("{shape} ({any_epilogue})", any_epilogue = any.epilogue)
        };
        let _ = writeln!(
            s,
            "| {model} | {shape_label} | {dims} | {any_count} | {first_cells} | {second_cells} |",
            any_count = any.count,
            first_cells = cells(pick(GEMV_FORMATS[0])),
            second_cells = cells(pick(GEMV_FORMATS[1]))
        );
    }
    let mut models: Vec<&str> = Vec::new();
    for x in &g.summaries {
        if !models.contains(&x.model.as_str()) {
            models.push(&x.model);
        }
    }
    for model in models {
        let pick = |f: &str| {
            g.summaries
                .iter()
                .find(|x| x.model == model && x.format == f)
        };
        let _ = writeln!(
            s,
            "| {model} | **one decode token** (Σ per token × bytes ÷ Σ per token × µs) | — | — | {first_cells} | {second_cells} |",
            first_cells = cells(pick(GEMV_FORMATS[0])),
            second_cells = cells(pick(GEMV_FORMATS[1]))
        );
    }
}

/// A per-family profile table with its heading line.
fn profile_table(s: &mut String, title: &str, rows: &[(String, f64, u64)]) {
    let total: f64 = rows.iter().map(|p| p.1).sum();
    let _ = writeln!(s, "{title}: {total:.3} ms per step\n");
    let _ = writeln!(s, "| family | ms | share | launches |\n|---|---|---|---|");
    for (f, ms, n) in rows {
        let _ = writeln!(
            s,
            "| {f} | {ms:.3} | {total_pct} | {n} |",
            total_pct = pct(Some(*ms), Some(total))
        );
    }
    let _ = writeln!(s);
}

/// The coop-matrix ceiling beside torch's matmul: `58.7 TFLOP/s = 7% of torch
/// BF16 matmul (m=... tiling)`, of the complete-GEMM tilings only.
fn coop_cell(r: &Results, c: Option<&CoopPeak>) -> String {
    let Some(c) = c else {
        return NOT_MEASURED.into();
    };
    if c.lines == 0 {
        return if c.probe.as_ref().is_some_and(|p| p.lines == 0) {
            // An older results.json that kept only a probe's figure.
            "not recorded (this results.json kept only the best probe's figure, below)".into()
        } else {
            "no complete-GEMM tiling timed (probes only, below)".into()
        };
    }
    let mut out = format!("{:.1} TFLOP/s", c.tflops);
    if let Some(f) = r.matmul_flops {
        let _ = write!(
            out,
            " = {share} of torch BF16 matmul",
            share = pct(Some(c.tflops * 1e12), Some(f))
        );
    }
    let _ = write!(
        out,
        " ({what}; best of {lines} timed tilings and shapes)",
        what = c.what,
        lines = c.lines
    );
    out
}

/// The probes' best, labelled as such: not a ceiling of a complete GEMM.
fn coop_probe_cell(r: &Results, p: &CoopProbe) -> String {
    let mut out = format!("{:.1} TFLOP/s", p.tflops);
    if let Some(f) = r.matmul_flops {
        let _ = write!(
            out,
            " = {share} of torch BF16 matmul",
            share = pct(Some(p.tflops * 1e12), Some(f))
        );
    }
    let _ = write!(out, " ({what}", what = p.what);
    if p.lines > 0 {
        let _ = write!(out, "; best of {} timed probes", p.lines);
    }
    out.push(')');
    out
}

pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark results\n");
    let _ = writeln!(
        s,
        "One run of `cargo xtask bench` (see README.md): {r_date} on {gpu_name} (qwgpu adapter: {adapter}), qwgpu commit `{r_commit}`. \
         Random-weight checkpoints of real Qwen3.5 geometry made in the same run, batch 1, random token ids. \
         Every ratio compares figures of this one run.\n",
        r_date = r.date,
        gpu_name = if r.gpu.is_empty() { "?" } else { &r.gpu },
        adapter = if r.adapter.is_empty() { "?" } else { &r.adapter },
        r_commit = r.commit
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
            "| device copy bandwidth, qwgpu copy kernel (read + written) | {bw_1e12:.3} TB/s ({torch_pct} of torch) |",
            bw_1e12 = bw / 1e12,
            torch_pct = pct(Some(bw), r.copy_bw_torch)
        );
    }
    if let Some(f) = r.matmul_flops {
        let _ = writeln!(s, "| BF16 matmul, torch 8192³ | {:.0} TFLOP/s |", f / 1e12);
    }
    let coop = coop_ceiling(r);
    let _ = writeln!(
        s,
        "| cooperative-matrix ceiling, qwgpu plain f16 GEMM (`coop_peak::coop_peak`, best complete-GEMM tiling) | {} |",
        coop_cell(r, coop.as_ref())
    );
    if let Some(p) = coop.as_ref().and_then(|c| c.probe.as_ref()) {
        let _ = writeln!(
            s,
            "| cooperative-matrix probe, `coop_peak::coop_peak` `Probe*` tilings (multiply-adds only, not a complete GEMM: fragments loaded once or no global loads, wrong results) | {} |",
            coop_probe_cell(r, p)
        );
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
            "| {model} | {format} | {total} | {per_token} | {params} | {largest} |",
            model = c.model,
            format = c.format,
            total = gb(c.weights.total_bytes as f64),
            per_token = gb(c.weights.bytes_per_token),
            params = if gguf {
                "—".into()
            } else {
                format!("{:.3} B", c.weights.matmul_params_per_token / 1e9)
            },
            largest = if gguf {
                "—".into()
            } else {
                mib(c.weights.largest_tensor_bytes)
            }
        );
    }
    let _ = writeln!(s, "\n## qwgpu against the roofline and the peers\n");
    let _ = writeln!(
        s,
        "qwgpu runs the safetensors folder (BF16, or the same weights in Qwen's block-FP8 format or in \
         Qwen's official GPTQ-Int4 layout); llama.cpp the BF16, Q8_0, Q4_0 and Q4_K_M GGUFs converted from \
         the same BF16 folder (FP8 rows compare with Q8_0, about the same bytes per weight; GPTQ-Int4 rows with \
         Q4_K_M and Q4_0, each format's own rounding of the same weights; GPTQ-Int4 keeps attention, GDN, \
         the shared expert and the head in BF16); HF transformers the BF16 folder (prefill only). llama.cpp figures are the \
         median of llama-bench's repetitions after the first (`llama-bench -ngl 99 -fa on {llama_args}`); its decode at a short context is `tg` at depth 0 \
         where no depth of that size ran. qwgpu decode at ctx N: N tokens prefilled, then {r_decode_steps} decode steps timed.\n",
        llama_args = if r.llama_args.is_empty() { "?" } else { &r.llama_args },
        r_decode_steps = r.decode_steps
    );
    main_table(r, &mut s);
    decode_alone_section(r, &mut s);
    let _ = writeln!(s, "\n## llama.cpp on its own roofline\n");
    peers_table(r, &mut s);
    let _ = writeln!(s, "\n## qwgpu load and host memory\n");
    let _ = writeln!(
        s,
        "Load from the page cache (the folders were just written), to the first usable session. RssAnon \
         sampled every millisecond during the load (the kernel keeps no peak of it); VmHWM counts \
         file-backed pages too.\n"
    );
    if any_load_alone(r) {
        // Runs that kept a decode figure alone loaded in the decode's process.
        let process = if r.runs.iter().any(|x| !x.decode_alone.is_empty()) {
            "the `qwgpu bench --decode-at N` process of the decode measured alone"
        } else {
            "a `qwgpu bench --prompt-len 1 --decode 1` process of its own"
        };
        let _ = writeln!(
            s,
            "\"load s, alone\": measured again once the GGUF conversion was done, in {process}, with \
             nothing else of the run on the CPU; \"main run\": the load of the `qwgpu bench` run above, \
             taken while the GGUF conversion (and with `--cuda` the CUDA llama.cpp build) used the CPU. \
             GB/s, host memcpy %, the split and the load targets of issues 9 and 17 are of the load \
             measured alone where there is one, else of the main run's; peak RssAnon and VmHWM are the main \
             run's.\n"
        );
    }
    if any_load_detail(r) {
        let _ = writeln!(
            s,
            "The \"of which\" columns of \"weights streamed\" are parts of it, none counted twice: the \
             loading thread's host copies into staging; its waits for the GPU's copies out of staging; \
             submitting filled staging slots and mapping slots again (waits left out); creating the \
             weights' GPU buffers; finding each weight's source tensors (with the read-ahead asked of \
             the kernel). \"rest (loader walk)\": weights streamed less those five (planning, checks, \
             repacking, the small vectors' uploads).\n"
        );
    }
    load_table(r, &mut s);
    let _ = writeln!(s, "\n## Targets of issue 9\n");
    let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
    for (t, m, v) in targets(r) {
        let _ = writeln!(s, "| {t} | {m} | {v} |");
    }
    let t19 = targets19::targets(r);
    if !t19.is_empty() {
        let _ = writeln!(s, "\n## Targets of issue 19 (4-bit checkpoints)\n");
        let _ = writeln!(
            s,
            "qwgpu on Qwen's official GPTQ-Int4 layout against llama.cpp's Q4_K_M GGUF of the same BF16 \
             weights; reduced geometries compare their figures extrapolated to the full model (see their \
             sections), the roofline share is per layer (the BF16 head left out).\n"
        );
        let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
        for (t, m, v) in t19 {
            let _ = writeln!(s, "| {t} | {m} | {v} |");
        }
    }
    throughput::ttft_section(r, &mut s);
    throughput::batched_section(r, &mut s);
    let _ = writeln!(s, "\n## Targets of issue 17\n");
    let _ = writeln!(
        s,
        "Every ratio from this run; \"not measured\" where the run has no figure for one side.\n"
    );
    let _ = writeln!(s, "| target | measured | verdict |\n|---|---|---|");
    for (t, m, v) in targets17::targets(r) {
        let _ = writeln!(s, "| {t} | {m} | {v} |");
    }
    let profiled: Vec<&Run> = r.runs.iter().filter(|x| !x.profile.is_empty()).collect();
    if !profiled.is_empty() {
        let _ = writeln!(
            s,
            "\n## qwgpu decode step by kernel family (GPU time, `--profile`)\n"
        );
        for x in profiled {
            profile_table(
                &mut s,
                &format!(
                    "{x_model} {x_format}",
                    x_model = x.model,
                    x_format = x.format
                ),
                &x.profile,
            );
        }
    }
    let prefilled: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| !x.prefill_profile.is_empty())
        .collect();
    if !prefilled.is_empty() {
        let _ = writeln!(
            s,
            "\n## qwgpu prefill step by kernel family (GPU time, `--profile`)\n"
        );
        let _ = writeln!(
            s,
            "One prefill step of `--chunk` tokens (random ids) in a fresh session, each launch timed in its own pass.\n"
        );
        for x in prefilled {
            let tokens = x
                .prefill_profile_tokens
                .map(|n| format!(", {n} tokens"))
                .unwrap_or_default();
            profile_table(
                &mut s,
                &format!(
                    "{x_model} {x_format}{tokens}",
                    x_model = x.model,
                    x_format = x.format
                ),
                &x.prefill_profile,
            );
        }
    }
    f16_section(r, &mut s);
    for (model, _) in REDUCED {
        reduced_section(r, &mut s, model);
    }
    gemv_section(r, &mut s);
    if !r.kernels.is_empty() {
        let _ = writeln!(
            s,
            "\n## Kernel microbenches (crates/kernels `#[ignore]` bench tests)\n"
        );
        for k in &r.kernels {
            // Shown as a table above.
            if k.test.ends_with("::gemv_bandwidth") && r.gemv.is_some() && k.error.is_none() {
                continue;
            }
            let _ = writeln!(
                s,
                "`{k_test}`{unwrap_or_default}\n",
                k_test = k.test,
                unwrap_or_default = k
                    .error
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
                "- {x_engine} {x_model} {x_format}: {x_detail_as_deref_unwrap_or}",
                x_engine = x.engine,
                x_model = x.model,
                x_format = x.format,
                x_detail_as_deref_unwrap_or = x.detail.as_deref().unwrap_or("")
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
            x.error.as_ref().map(|e| {
                format!(
                    "{x_engine} {x_model} {x_format}: {e}",
                    x_engine = x.engine,
                    x_model = x.model,
                    x_format = x.format
                )
            })
        })
        .chain(r.runs.iter().flat_map(|x| {
            x.row_errors.iter().map(|e| {
                format!(
                    "{x_engine} {x_model} {x_format}: {e}",
                    x_engine = x.engine,
                    x_model = x.model,
                    x_format = x.format
                )
            })
        }))
        .chain(r.batched.iter().flat_map(|b| {
            b.errors.iter().map(|e| {
                format!(
                    "{b_engine} {b_model} {b_format} batched decode: {e}",
                    b_engine = b.engine,
                    b_model = b.model,
                    b_format = b.format
                )
            })
        }))
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
    let _ = writeln!(
        s,
        "\nMeasurements outside this run (the spread between complete runs, \
         single-change device calls) are in `EXPERIMENTS.md`."
    );
    s
}
