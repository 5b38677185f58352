//! One benchmark run's figures (kept as `results.json` beside RESULTS.md, so a
//! report can be re-rendered) and the parsers of each tool's output.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::batched::BatchedRun;
use super::coop::CoopPeak;
use super::weights::CheckpointWeights;

pub const QWGPU: &str = "qwgpu";
/// qwgpu prefill with `--f16-matmul` (the plain f16 cooperative-matrix GEMM).
pub const QWGPU_F16: &str = "qwgpu --f16-matmul";
pub const LLAMA_VULKAN: &str = "llama.cpp Vulkan";
pub const LLAMA_CUDA: &str = "llama.cpp CUDA";
pub const HF: &str = "HF transformers";

/// Weight formats: qwgpu and HF read the checkpoint's own, llama.cpp a GGUF.
pub const BF16: &str = "BF16";
pub const FP8: &str = "FP8 block";
pub const Q8_0: &str = "Q8_0";
/// Qwen's official GPTQ-Int4 layout (issue 19), against llama.cpp's 4-bit GGUFs.
pub const GPTQ: &str = "GPTQ-Int4";
pub const Q4_0: &str = "Q4_0";
pub const Q4_K_M: &str = "Q4_K_M";

/// llama.cpp GGUFs of a model's BF16 folder: (format, file stem), as
/// `benches/make_models.py gguf` names them (`qwen35-{model}-{stem}.gguf`
/// and the `weights-{model}.json` keys).
pub const GGUF_FORMATS: [(&str, &str); 4] = [
    (BF16, "bf16"),
    (Q8_0, "q8_0"),
    (Q4_0, "q4_0"),
    (Q4_K_M, "q4_k_m"),
];

/// The GGUF formats llama.cpp runs for one model: BF16 and Q8_0 (the peers
/// of qwgpu's BF16 and FP8 rows) when the BF16 folder is measured, Q4_0 and
/// Q4_K_M (the peers of the GPTQ-Int4 row) when a GPTQ copy is.
pub fn llama_formats(bf16: bool, gptq: bool) -> Vec<(&'static str, &'static str)> {
    GGUF_FORMATS
        .iter()
        .copied()
        .filter(|(f, _)| if *f == BF16 || *f == Q8_0 { bf16 } else { gptq })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub gpu: String,
    pub adapter: String,
    /// torch `copy_` bandwidth, bytes read + written per second.
    pub copy_bw_torch: Option<f64>,
    /// qwgpu's copy kernel, same count.
    pub copy_bw_qwgpu: Option<f64>,
    /// torch BF16 matmul FLOP/s (the prefill roofline's numerator).
    pub matmul_flops: Option<f64>,
    /// Host memcpy, bytes read + written per second (the load target's yardstick).
    pub host_memcpy: Option<f64>,
    /// Decode contexts and prefill lengths asked for, and decode steps per context.
    pub decode_contexts: Vec<usize>,
    pub prefill_lens: Vec<usize>,
    pub decode_steps: usize,
    /// llama-bench's test options.
    pub llama_args: String,
    pub checkpoints: Vec<Checkpoint>,
    pub runs: Vec<Run>,
    pub kernels: Vec<KernelBench>,
    /// The GEMV microbench's figures (`gemv_bench::gemv_bandwidth`), parsed.
    pub gemv: Option<Gemv>,
    /// Layers of the reduced geometries made for this run (35B-A3B of the
    /// real model's 40, 27B of its 64; `--moe-layers`).
    pub moe_layers: Option<usize>,
    /// Prompt lengths of qwgpu's time to first token.
    pub ttft_lens: Vec<usize>,
    /// Batched decode: session counts, prompt tokens of each session, timed steps.
    pub session_counts: Vec<usize>,
    pub session_prompt: usize,
    pub session_steps: usize,
    /// Batched decode of each engine (qwgpu `--sessions`, llama-batched-bench).
    pub batched: Vec<BatchedRun>,
    /// The cooperative-matrix ceiling (`coop_peak::coop_peak`, best tiling).
    pub coop_peak: Option<CoopPeak>,
    pub notes: Vec<String>,
    /// An earlier run's decode figures (`--baseline`), for the regression target.
    pub baseline: Option<super::baseline::Baseline>,
    /// Steps that failed: what and why.
    pub errors: Vec<String>,
    /// Seconds each step took.
    pub steps: Vec<(String, f64)>,
}

/// The weights one engine reads for a model in one format.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub model: String,
    pub format: String,
    pub weights: CheckpointWeights,
}

/// One engine on one model in one format.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub engine: String,
    pub model: String,
    pub format: String,
    /// (context, tok/s) of batch-1 decode.
    pub decode: Vec<(usize, f64)>,
    /// (prompt tokens, tok/s).
    pub prefill: Vec<(usize, f64)>,
    pub load_s: Option<f64>,
    /// Of `load_s`: opening the device, and streaming the weights.
    #[serde(default)]
    pub device_open_s: Option<f64>,
    #[serde(default)]
    pub weights_s: Option<f64>,
    /// Of `weights_s`: host copies into staging, waits for the GPU's copies.
    #[serde(default)]
    pub host_copy_s: Option<f64>,
    #[serde(default)]
    pub gpu_wait_s: Option<f64>,
    /// Of `weights_s` too: submitting filled staging slots and mapping them
    /// again (GPU waits left out), creating the weights' GPU buffers, and
    /// finding each weight's source tensors (with the read-ahead madvise).
    /// `None` in an older results.json.
    #[serde(default)]
    pub slots_s: Option<f64>,
    #[serde(default)]
    pub buffers_s: Option<f64>,
    #[serde(default)]
    pub sources_s: Option<f64>,
    pub peak_rss_anon: Option<u64>,
    pub vm_hwm: Option<u64>,
    pub checkpoint_bytes: Option<u64>,
    /// e.g. which linear-attention kernels HF used.
    pub detail: Option<String>,
    pub profile: Vec<(String, f64, u64)>,
    /// GPU time by kernel family of one prefill step of `prefill_profile_tokens` tokens.
    #[serde(default)]
    pub prefill_profile: Vec<(String, f64, u64)>,
    #[serde(default)]
    pub prefill_profile_tokens: Option<usize>,
    /// (prompt tokens, seconds) from a fresh session to the first sampled token.
    #[serde(default)]
    pub ttft: Vec<(usize, f64)>,
    /// Rows of a run that failed while the rest were measured.
    #[serde(default)]
    pub row_errors: Vec<String>,
    pub error: Option<String>,
    /// qwgpu's load measured again in a process of its own once the GGUF
    /// conversion was done (nothing else of the run on the CPU); `None`
    /// where there is no such figure (an older results.json, a run without
    /// a conversion). `load_s` and its split above are the main run's.
    #[serde(default)]
    pub load_alone: Option<LoadTimes>,
    /// (context, tok/s) of batch-1 decode measured in that same process of
    /// its own (at the run's first `--decode-at` context, `--decode` steps);
    /// empty where there is no such figure. `decode` above is the main run's.
    #[serde(default)]
    pub decode_alone: Vec<(usize, f64)>,
    /// The multi-token GEMMs' precision (`exact` / `fast`) and whether
    /// `--f16-matmul` was on, as `qwgpu bench --json` reports them; `None`
    /// in an older results.json.
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default)]
    pub f16_matmul: Option<bool>,
}

/// One `qwgpu bench` process's load: the whole, and the parts [`Run`] keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoadTimes {
    pub load_s: Option<f64>,
    pub device_open_s: Option<f64>,
    pub weights_s: Option<f64>,
    pub host_copy_s: Option<f64>,
    pub gpu_wait_s: Option<f64>,
    pub slots_s: Option<f64>,
    pub buffers_s: Option<f64>,
    pub sources_s: Option<f64>,
}

impl LoadTimes {
    /// `weights_s` less its five measured parts (host copies, GPU waits,
    /// slot submits and maps, buffer creation, source lookups): the loader's
    /// walk (planning, checks, repacking, small vector uploads). `None`
    /// unless all six figures are there.
    pub fn rest_s(&self) -> Option<f64> {
        let parts = [
            self.host_copy_s?,
            self.gpu_wait_s?,
            self.slots_s?,
            self.buffers_s?,
            self.sources_s?,
        ];
        Some(self.weights_s? - parts.iter().sum::<f64>())
    }
}

/// The load figures of a `qwgpu bench --json` object's `model`.
pub fn parse_load(m: &Value) -> LoadTimes {
    LoadTimes {
        load_s: m["load_s"].as_f64(),
        device_open_s: m["device_open_s"].as_f64(),
        weights_s: m["weights_s"].as_f64(),
        host_copy_s: m["host_copy_s"].as_f64(),
        gpu_wait_s: m["gpu_wait_s"].as_f64(),
        slots_s: m["slots_s"].as_f64(),
        buffers_s: m["buffers_s"].as_f64(),
        sources_s: m["sources_s"].as_f64(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KernelBench {
    pub test: String,
    pub lines: Vec<String>,
    pub error: Option<String>,
}

/// One line of the GEMV microbench: a weight shape, the MoE step, or a
/// summary over a model's decode token (`shape` empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GemvRow {
    pub model: String,
    /// Weight name as the test prints it (`gdn.in_proj_qkvz`, `moe.step`).
    pub shape: String,
    /// [`BF16`] or [`FP8`].
    pub format: String,
    pub rows: Option<u64>,
    pub cols: Option<u64>,
    pub epilogue: String,
    /// Launches per decode token of the full model.
    pub count: u64,
    /// Bytes read (weights + scales) and GPU µs per launch (summary: per token).
    pub bytes: f64,
    pub us: f64,
    pub gbps: f64,
    /// Percent of the copy kernel's bandwidth measured in the same test.
    pub copy_pct: f64,
    /// The MoE step's geometry (experts, top-k, hidden, intermediate).
    pub detail: String,
}

/// The GEMV microbench's output, parsed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Gemv {
    /// The crate's copy kernel in the same test, bytes read + written per second.
    pub copy_bps: Option<f64>,
    pub shapes: Vec<GemvRow>,
    pub summaries: Vec<GemvRow>,
}

impl Gemv {
    pub fn summary(&self, model: &str, format: &str) -> Option<&GemvRow> {
        self.summaries
            .iter()
            .find(|s| s.model == model && s.format == format)
    }
}

/// The `gemv_copy`, `gemv` and `gemv_summary` lines of `gemv_bench::gemv_bandwidth`
/// (`key=value` fields, anywhere in the output); `None` when there are none.
pub fn parse_gemv(text: &str) -> Option<Gemv> {
    let mut g = Gemv::default();
    let mut any = false;
    for line in text.lines() {
        let mut tokens = line.split_whitespace();
        let Some(kind) = tokens.find(|t| matches!(*t, "gemv" | "gemv_copy" | "gemv_summary"))
        else {
            continue;
        };
        let kv: Vec<(&str, &str)> = tokens.filter_map(|t| t.split_once('=')).collect();
        let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
        if kind == "gemv_copy" {
            if let Some(gbps) = num("gbps") {
                g.copy_bps = Some(gbps * 1e9);
                any = true;
            }
            continue;
        }
        let (Some(model), Some(format), Some(bytes), Some(us), Some(gbps)) = (
            get("model"),
            get("format"),
            num("bytes"),
            num("us"),
            num("gbps"),
        ) else {
            continue;
        };
        let detail: Vec<String> = [
            ("experts", "E"),
            ("top_k", "top"),
            ("hidden", "H"),
            ("inter", "I"),
        ]
        .iter()
        .filter_map(|(k, short)| get(k).map(|v| format!("{short} {v}")))
        .collect();
        let row = GemvRow {
            model: model.into(),
            shape: get("shape").unwrap_or_default().into(),
            format: if format.starts_with("FP8") { FP8 } else { BF16 }.into(),
            rows: get("rows").and_then(|v| v.parse().ok()),
            cols: get("cols").and_then(|v| v.parse().ok()),
            epilogue: get("epilogue").unwrap_or_default().into(),
            count: get("count").and_then(|v| v.parse().ok()).unwrap_or(1),
            bytes,
            us,
            gbps,
            copy_pct: num("copy_pct").unwrap_or(f64::NAN),
            detail: detail.join(", "),
        };
        any = true;
        if kind == "gemv_summary" {
            g.summaries.push(row);
        } else {
            g.shapes.push(row);
        }
    }
    any.then_some(g)
}

impl Run {
    pub fn new(engine: &str, model: &str, format: &str) -> Self {
        Self {
            engine: engine.into(),
            model: model.into(),
            format: format.into(),
            ..Default::default()
        }
    }

    pub fn failed(engine: &str, model: &str, format: &str, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(engine, model, format)
        }
    }

    pub fn decode_at(&self, ctx: usize) -> Option<f64> {
        self.decode.iter().find(|(c, _)| *c == ctx).map(|r| r.1)
    }

    /// Batch-1 decode at `ctx` measured alone (after the GGUF conversion).
    pub fn decode_alone_at(&self, ctx: usize) -> Option<f64> {
        self.decode_alone
            .iter()
            .find(|(c, _)| *c == ctx)
            .map(|r| r.1)
    }

    /// The decode figure at `ctx` the regression target judges: measured
    /// alone where the run has one, else the main run's; and whether alone.
    pub fn judged_decode_at(&self, ctx: usize) -> Option<(f64, bool)> {
        self.decode_alone_at(ctx)
            .map(|v| (v, true))
            .or_else(|| self.decode_at(ctx).map(|v| (v, false)))
    }

    pub fn prefill_of(&self, n: usize) -> Option<f64> {
        self.prefill.iter().find(|(c, _)| *c == n).map(|r| r.1)
    }

    pub fn ttft_of(&self, n: usize) -> Option<f64> {
        self.ttft.iter().find(|(c, _)| *c == n).map(|r| r.1)
    }

    /// The main run's load figures.
    pub fn load_times(&self) -> LoadTimes {
        LoadTimes {
            load_s: self.load_s,
            device_open_s: self.device_open_s,
            weights_s: self.weights_s,
            host_copy_s: self.host_copy_s,
            gpu_wait_s: self.gpu_wait_s,
            slots_s: self.slots_s,
            buffers_s: self.buffers_s,
            sources_s: self.sources_s,
        }
    }

    /// The load figures the report judges: measured alone where the run has
    /// them, else the main run's; and whether they are the ones measured alone.
    pub fn judged_load(&self) -> (LoadTimes, bool) {
        match &self.load_alone {
            Some(l) if l.load_s.is_some() => (l.clone(), true),
            _ => (self.load_times(), false),
        }
    }

    /// Checkpoint bytes ÷ [`Run::judged_load`]'s load time, and whether measured alone.
    pub fn load_bps(&self) -> (Option<f64>, bool) {
        let (l, alone) = self.judged_load();
        let bps = self
            .checkpoint_bytes
            .zip(l.load_s)
            .filter(|x| x.1 > 0.0)
            .map(|(b, s)| b as f64 / s);
        (bps, alone)
    }
}

impl Results {
    pub fn run(&self, engine: &str, model: &str, format: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.engine == engine && r.model == model && r.format == format)
    }

    pub fn batched_run(&self, engine: &str, model: &str, format: &str) -> Option<&BatchedRun> {
        self.batched
            .iter()
            .find(|r| r.engine == engine && r.model == model && r.format == format)
    }

    pub fn checkpoint(&self, model: &str, format: &str) -> Option<&CheckpointWeights> {
        self.checkpoints
            .iter()
            .find(|c| c.model == model && c.format == format)
            .map(|c| &c.weights)
    }
}

/// `qwgpu bench --json` output → a run.
pub fn parse_qwgpu(model: &str, format: &str, v: &Value) -> Run {
    let m = &v["model"];
    let mut r = Run::new(QWGPU, model, format);
    r.prefill = timed_rows(m, "prefill", "tokens");
    r.decode = decode_rows(m);
    let load = parse_load(m);
    r.load_s = load.load_s;
    r.device_open_s = load.device_open_s;
    r.weights_s = load.weights_s;
    r.host_copy_s = load.host_copy_s;
    r.gpu_wait_s = load.gpu_wait_s;
    r.slots_s = load.slots_s;
    r.buffers_s = load.buffers_s;
    r.sources_s = load.sources_s;
    r.precision = m["precision"].as_str().map(String::from);
    r.f16_matmul = m["f16_matmul"].as_bool();
    r.peak_rss_anon = m["peak_rss_anon_bytes"].as_u64();
    r.vm_hwm = m["vm_hwm_bytes"].as_u64();
    r.checkpoint_bytes = m["checkpoint_bytes"].as_u64();
    r.detail = m["backend"]
        .as_str()
        .map(|b| format!("{b}, chunk {m_chunk}", m_chunk = m["chunk"]));
    r.profile = profile_rows(&m["decode_profile"]);
    r.prefill_profile = profile_rows(&m["prefill_profile"]);
    r.prefill_profile_tokens = m["prefill_profile_tokens"].as_u64().map(|n| n as usize);
    for x in m["ttft"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(n) = x["tokens"].as_u64() else {
            continue;
        };
        match (x["seconds"].as_f64(), x["error"].as_str()) {
            (Some(s), _) => r.ttft.push((n as usize, s)),
            (None, e) => r.row_errors.push(format!(
                "time to first token, {n} tokens: {e}",
                e = e.unwrap_or("no figure")
            )),
        }
    }
    r
}

/// (`by`, tok/s) of the `key` rows of a `qwgpu bench --json` object's `model`.
fn timed_rows(m: &Value, key: &str, by: &str) -> Vec<(usize, f64)> {
    m[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x[by].as_u64()? as usize, x["tok_s"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// (context, tok/s) of the `decode` rows of a `qwgpu bench --json` object's `model`.
pub fn decode_rows(m: &Value) -> Vec<(usize, f64)> {
    timed_rows(m, "decode", "context")
}

/// `[{"family", "ms", "launches"}]` → rows (anything else: none).
fn profile_rows(v: &Value) -> Vec<(String, f64, u64)> {
    v.as_array()
        .map(|p| {
            p.iter()
                .filter_map(|x| {
                    Some((
                        x["family"].as_str()?.to_string(),
                        x["ms"].as_f64()?,
                        x["launches"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `hf_prefill.py` output → a run.
pub fn parse_hf(model: &str, v: &Value) -> Run {
    let mut r = Run::new(HF, model, BF16);
    r.prefill = v["prefill"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x["tokens"].as_u64()? as usize, x["tok_s"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    r.load_s = v["load_s"].as_f64();
    let kernels: Vec<String> = v["kernels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    r.detail = Some(format!(
        "fla {importable}; {join}",
        importable = if v["fla"].as_bool() == Some(true) {
            "importable"
        } else {
            "not importable"
        },
        join = if kernels.is_empty() {
            "kernels unknown".into()
        } else {
            kernels.join(", ")
        }
    ));
    r
}

/// A llama-bench sample set: the median of the repetitions after the first
/// (CUDA's first repetition of a prompt test is 20–55 % slow), else the mean.
fn steady(x: &Value) -> Option<f64> {
    let mut s: Vec<f64> = x["samples_ts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if s.len() >= 2 {
        s.remove(0);
        s.sort_by(f64::total_cmp);
        let n = s.len();
        return Some(if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        });
    }
    x["avg_ts"].as_f64()
}

/// `llama-bench -o json` output → a run: tg at depth d is decode at context d;
/// pp at depth 0 is prefill.
pub fn parse_llama(engine: &str, model: &str, format: &str, json: &str) -> Run {
    let v: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => return Run::failed(engine, model, format, format!("llama-bench JSON: {e}")),
    };
    let mut r = Run::new(engine, model, format);
    for x in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let (np, ng) = (x["n_prompt"].as_u64(), x["n_gen"].as_u64());
        let depth = x["n_depth"].as_u64().unwrap_or(0) as usize;
        let Some(ts) = steady(x) else { continue };
        match (np, ng) {
            (Some(0), Some(g)) if g > 0 => r.decode.push((depth, ts)),
            (Some(p), Some(0)) if p > 0 && depth == 0 => r.prefill.push((p as usize, ts)),
            _ => {}
        }
    }
    if r.decode.is_empty() && r.prefill.is_empty() {
        r.error = Some("llama-bench reported no results".into());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_bench_json_maps_depth_to_context_and_skips_the_first_sample() {
        let json = r#"[
          {"n_prompt": 512, "n_gen": 0, "n_depth": 0, "avg_ts": 900.0, "samples_ts": [500.0, 1000.0, 1100.0]},
          {"n_prompt": 512, "n_gen": 0, "n_depth": 8192, "avg_ts": 700.0, "samples_ts": [700.0]},
          {"n_prompt": 0, "n_gen": 128, "n_depth": 0, "avg_ts": 118.0, "samples_ts": [117.0, 118.0, 119.0, 121.0]},
          {"n_prompt": 0, "n_gen": 128, "n_depth": 8192, "avg_ts": 100.0, "samples_ts": [100.0]}
        ]"#;
        let r = parse_llama(LLAMA_VULKAN, "9B", BF16, json);
        assert_eq!(r.prefill, vec![(512, 1050.0)]);
        assert_eq!(r.decode_at(0), Some(119.0));
        assert_eq!(r.decode_at(8192), Some(100.0));
        assert!(r.error.is_none());
        assert!(parse_llama(LLAMA_CUDA, "9B", BF16, "[]").error.is_some());
        assert!(parse_llama(LLAMA_CUDA, "9B", BF16, "not json")
            .error
            .is_some());
    }

    #[test]
    fn qwgpu_json_gives_decode_by_context_and_memory() {
        let v: Value = serde_json::from_str(
            r#"{"model": {"backend": "NVIDIA H100", "chunk": 128, "load_s": 2.5, "peak_rss_anon_bytes": 1000,
                "vm_hwm_bytes": 5000, "checkpoint_bytes": 9000,
                "prefill": [{"tokens": 512, "context": 0, "seconds": 0.1, "tok_s": 5120.0}],
                "decode": [{"tokens": 128, "context": 512, "seconds": 1.0, "tok_s": 128.0}],
                "decode_profile": [{"family": "matmul", "ms": 5.0, "launches": 100}],
                "prefill_profile": [{"family": "matmul_tile", "ms": 50.0, "launches": 90}],
                "prefill_profile_tokens": 512}}"#,
        )
        .unwrap();
        let r = parse_qwgpu("9B", BF16, &v);
        assert_eq!(r.prefill_of(512), Some(5120.0));
        assert_eq!(r.decode_at(512), Some(128.0));
        assert_eq!(r.peak_rss_anon, Some(1000));
        assert_eq!(r.profile, vec![("matmul".to_string(), 5.0, 100)]);
        assert_eq!(
            r.prefill_profile,
            vec![("matmul_tile".to_string(), 50.0, 90)]
        );
        assert_eq!(r.prefill_profile_tokens, Some(512));
        // A failed prefill profile (an object with "error") is no rows.
        let v: Value = serde_json::from_str(
            r#"{"model": {"prefill_profile": {"error": "too many tokens"}, "decode_profile": null}}"#,
        )
        .unwrap();
        let r = parse_qwgpu("9B", BF16, &v);
        assert!(r.prefill_profile.is_empty() && r.profile.is_empty());
        assert_eq!(r.prefill_profile_tokens, None);
    }

    /// The lavapipe run of `gemv_bench::gemv_bandwidth` (shapes scaled down), as recorded.
    #[test]
    fn gemv_lines_of_a_recorded_run_parse_whole() {
        let text = include_str!("samples/gemv_lavapipe.txt");
        let g = parse_gemv(text).unwrap();
        // 16 dense shapes + the MoE step, in 2 formats; a summary per model and format.
        assert_eq!(g.shapes.len(), 34);
        assert_eq!(g.summaries.len(), 4);
        assert_eq!(g.copy_bps, Some(0.28e9));
        let qkvz = &g.shapes[0];
        assert_eq!(
            (
                qkvz.model.as_str(),
                qkvz.shape.as_str(),
                qkvz.format.as_str()
            ),
            ("9B", "gdn.in_proj_qkvz", BF16)
        );
        assert_eq!(
            (qkvz.rows, qkvz.cols, qkvz.count),
            (Some(768), Some(256), 24)
        );
        assert_eq!(qkvz.epilogue, "Store");
        assert_eq!(qkvz.bytes, 396304.0);
        let step = g
            .shapes
            .iter()
            .find(|x| x.shape == "moe.step" && x.format == FP8)
            .unwrap();
        assert_eq!(step.rows, None);
        assert_eq!(step.detail, "E 64, top 8, H 128, I 32");
        assert_eq!(step.count, 40);
        let s = g.summary("9B", FP8).unwrap();
        assert_eq!(s.copy_pct, 5.8);
        assert!(g.summary("35B-A3B", BF16).is_some());
        assert!(parse_gemv("running 1 test\ngemv without fields\ntest result: ok").is_none());
    }

    #[test]
    fn hf_json_says_which_kernels_ran() {
        let v: Value = serde_json::from_str(
            r#"{"fla": true, "kernels": ["chunk_gated_delta_rule: fla.ops.gated_delta_rule.chunk"],
                "load_s": 3.0, "prefill": [{"tokens": 4096, "seconds": 0.2, "tok_s": 20480.0}]}"#,
        )
        .unwrap();
        let r = parse_hf("9B", &v);
        assert_eq!(r.prefill_of(4096), Some(20480.0));
        assert!(r.detail.unwrap().contains("fla importable"));
    }
}
