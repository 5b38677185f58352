//! `cargo xtask bench`: qwgpu against the hardware limits and its peers in one
//! run on the GPU machine (see benches/README.md for the local → device recipe).
//!
//! Measures the device copy bandwidth (torch and qwgpu's copy kernel) and the
//! BF16 matmul peak, makes random-weight checkpoints of real Qwen3.5 geometry
//! with transformers (`benches/make_models.py`), converts them to BF16 and
//! Q8_0 GGUF in the background while qwgpu (`qwgpu bench --json`), HF
//! transformers (`benches/hf_prefill.py`) and the kernel microbenches use the
//! GPU, measures qwgpu's load and its batch-1 decode at the first
//! `--decode-at` context again alone once the conversion is done (the runs
//! above shared the CPU with it), then runs llama.cpp's `llama-bench`
//! (Vulkan; CUDA with `--cuda`).
//! Issue 17's multi-token rows come from the same run: time to first token
//! (`qwgpu bench --ttft`), batched decode (`qwgpu bench --sessions` against
//! `llama-batched-bench`), the cooperative-matrix ceiling (`coop_peak`).
//! Every step is time-limited and a failing step is recorded, not fatal;
//! `RESULTS.md` and `results.json` are rewritten after each step.

mod baseline;
mod batched;
mod coop;
mod opts;
mod proc;
mod report;
mod results;
mod targets17;
mod targets19;
mod throughput;
mod weights;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use batched::BatchedRun;
use opts::{Opts, Parsed};
use proc::{last_json, Logs};
use results::{
    Checkpoint, KernelBench, Results, Run, BF16, FP8, GGUF_FORMATS, GPTQ, LLAMA_CUDA, LLAMA_VULKAN,
};

/// The kernels' test binary (every suite of `crates/kernels/tests` is a
/// module of it).
const KERNEL_TEST_BINARY: &str = "kernels";

/// A kernel microbench: suite (module of [`KERNEL_TEST_BINARY`]), test name,
/// extra environment.
type KernelBenchSpec = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

const KERNEL_BENCHES: [KernelBenchSpec; 8] = [
    ("gemv_bench", "gemv_bandwidth", None),
    ("attention", "bench_attention", None),
    ("gdn", "bench_qwen35_dims", None),
    ("moe_grouped", "grouped_bench_real_dims", None),
    ("moe_grouped", "grouped_timing_t130", None),
    ("matmul_coop", "coop_vs_scalar_speed", None),
    ("matmul_coop_skinny", "skinny_bandwidth", None),
    ("coop_peak", "coop_peak", None),
];

/// A model folder qwgpu runs: (model, format, folder).
type Folder = (String, String, PathBuf);

/// A BF16 folder the GGUFs are converted from, and which of them llama.cpp runs.
#[derive(Debug, Clone)]
struct Source {
    model: String,
    dir: PathBuf,
    /// BF16 and Q8_0 (the BF16 folder is measured itself).
    bf16: bool,
    /// Q4_0 and Q4_K_M (a GPTQ-Int4 copy is measured).
    gptq: bool,
}

/// What `make checkpoints` made: the folders measured and the GGUF sources.
#[derive(Debug, Clone, Default)]
struct Made {
    folders: Vec<Folder>,
    sources: Vec<Source>,
}

struct Bench {
    o: Opts,
    r: Results,
    logs: PathBuf,
    log: PathBuf,
    started: Instant,
}

pub fn run(args: &[String]) -> Result<()> {
    let o = match Opts::parse_args(args)? {
        Parsed::Run(o) => *o,
        Parsed::Help => {
            println!("{}", opts::USAGE);
            return Ok(());
        }
    };
    if let Some(path) = &o.report_only {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut r: Results =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        r.notes.extend(o.notes.iter().cloned());
        if let Some(path) = &o.baseline {
            r.baseline = Some(baseline::Baseline::load(path, o.baseline_spread_pct)?);
        }
        // Results of runs before the options were recorded: as given now.
        if r.llama_args.is_empty() && args.iter().any(|a| a == "--llama-args") {
            r.llama_args = o.llama_args.clone();
        }
        std::fs::create_dir_all(&o.out)?;
        let md = report::render(&r);
        std::fs::write(o.out.join("RESULTS.md"), &md)?;
        println!("{md}");
        return Ok(());
    }
    let mut b = Bench::new(o)?;
    b.all();
    b.save()?;
    println!("{}", report::render(&b.r));
    Ok(())
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Free bytes of the file system holding `dir` (`df`), if known.
fn free_bytes(dir: &str) -> Option<u64> {
    let out = Command::new("df").args(["-Pk", dir]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Host memcpy rate (read + written) over 512 MiB, best of 5.
fn host_memcpy() -> f64 {
    let n = 512 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * n as f64 / best
}

impl Bench {
    fn new(o: Opts) -> Result<Self> {
        let logs = o.work.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
        let commit = o.commit.clone().unwrap_or_else(|| {
            let f = o.qwgpu.parent().unwrap_or(Path::new(".")).join("COMMIT");
            std::fs::read_to_string(f)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        });
        let mut r = Results {
            date: now_utc(),
            commit,
            decode_contexts: o.decode_at.clone(),
            prefill_lens: o.prefill.clone(),
            decode_steps: o.decode,
            llama_args: o.llama_args.clone(),
            ttft_lens: o.ttft.clone(),
            session_counts: if o.batched {
                o.sessions.clone()
            } else {
                vec![]
            },
            session_prompt: o.session_prompt,
            session_steps: o.session_steps,
            moe_layers: o.makes_reduced().then_some(o.moe_layers),
            ..Default::default()
        };
        // A baseline that cannot be read is the report's loss, not the run's.
        if let Some(path) = &o.baseline {
            match baseline::Baseline::load(path, o.baseline_spread_pct) {
                Ok(b) => r.baseline = Some(b),
                Err(e) => r.errors.push(format!("baseline: {e:#}")),
            }
        }
        let log = o.out.join("bench.log");
        Ok(Self {
            o,
            r,
            logs,
            log,
            started: Instant::now(),
        })
    }

    fn say(&self, msg: &str) {
        let line = format!(
            "[{started_elapsed_as_secs_f64:6.1}s] {msg}",
            started_elapsed_as_secs_f64 = self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(f, "{line}");
        }
    }

    fn save(&self) -> Result<()> {
        let json = serde_json::to_string_pretty(&self.r)?;
        std::fs::write(self.o.out.join("results.json"), json)?;
        std::fs::write(self.o.out.join("RESULTS.md"), report::render(&self.r))?;
        Ok(())
    }

    /// Runs one step, timing it; an error is recorded, the run goes on.
    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Option<T> {
        self.say(&format!("{name} ..."));
        let t = Instant::now();
        let out = f(self);
        let s = t.elapsed().as_secs_f64();
        self.r.steps.push((name.to_string(), s));
        let out = match out {
            Ok(v) => {
                self.say(&format!("{name}: done in {s:.1} s"));
                Some(v)
            }
            Err(e) => {
                let msg = format!("{name}: {e:#}");
                self.say(&msg);
                self.r.errors.push(msg);
                None
            }
        };
        if let Err(e) = self.save() {
            self.say(&format!("saving results: {e:#}"));
        }
        out
    }

    fn python(&self) -> Command {
        let mut c = Command::new(&self.o.python);
        c.env("PYTHONUNBUFFERED", "1");
        c
    }

    fn peer_dir(&self) -> PathBuf {
        self.o.work.join("peer")
    }

    fn all(&mut self) {
        self.r.host_memcpy = Some(host_memcpy());
        if self.o.copy {
            self.step("copy bandwidth (torch)", |b| {
                let script = b.o.peers.join("llama.cpp/copy_bw.py");
                let out = proc::run(
                    b.python().arg(&script),
                    secs(120),
                    "copy_bw.py",
                    &Logs::new(&b.logs, "copy_bw"),
                )?;
                let v = last_json(&out).context("copy_bw.py printed no JSON")?;
                b.r.copy_bw_torch = v["copy_bw_Bps"].as_f64();
                b.r.gpu = v["gpu"].as_str().unwrap_or_default().to_string();
                Ok(())
            });
            self.step("matmul peak (torch)", |b| {
                let out = proc::run(
                    b.python().arg("benches/matmul_peak.py"),
                    secs(120),
                    "matmul_peak.py",
                    &Logs::new(&b.logs, "matmul_peak"),
                )?;
                b.r.matmul_flops =
                    last_json(&out).context("no JSON")?["bf16_matmul_flops"].as_f64();
                Ok(())
            });
            self.step("copy bandwidth (qwgpu copy kernel)", |b| {
                let out = proc::run(
                    Command::new(&b.o.qwgpu).args(["bench", "--copy-bandwidth", "--json"]),
                    secs(120),
                    "qwgpu bench --copy-bandwidth",
                    &Logs::new(&b.logs, "qwgpu_copy"),
                )?;
                let v = last_json(&out).context("no JSON")?;
                b.r.copy_bw_qwgpu = v["copy"]["copy_bw_Bps"].as_f64();
                b.r.adapter = v["copy"]["adapter"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                Ok(())
            });
        }
        if self.o.llama {
            self.step("unpack llama.cpp payload", |b| b.unpack_payload());
        }
        let mut cuda_build = None;
        if self.o.llama && (self.o.cuda || self.o.cuda_start) {
            cuda_build = self
                .step("start CUDA llama-bench build (background)", |b| {
                    b.start_cuda_build()
                })
                .flatten();
        }
        let made = self
            .step("make checkpoints", |b| b.make_models())
            .unwrap_or_default();
        let folders = made.folders.clone();
        for (model, format, dir) in &folders {
            match weights::from_dir(dir) {
                Ok(w) => self.r.checkpoints.push(Checkpoint {
                    model: model.clone(),
                    format: format.clone(),
                    weights: w,
                }),
                Err(e) => self.r.errors.push(format!(
                    "weights of {dir_display}: {e:#}",
                    dir_display = dir.display()
                )),
            }
        }
        let bases: Vec<Folder> = folders.iter().filter(|f| f.1 == BF16).cloned().collect();
        let gguf = if self.o.llama && !made.sources.is_empty() {
            Some(self.start_gguf(&made.sources))
        } else {
            None
        };
        if cuda_build.is_some() || gguf.is_some() {
            let again = match (gguf.is_some() && self.o.qwgpu_runs, self.alone_context()) {
                (false, _) => String::new(),
                (true, None) => " qwgpu's loads were measured again alone after the conversion (the load \
                                 table's \"alone\" column);"
                    .into(),
                (true, Some(c)) => format!(
                    " qwgpu's loads and its batch-1 decode at ctx {c} were measured again alone after the \
                     conversion (the load table's \"alone\" column, the \"decode measured alone\" table);"
                ),
            };
            self.r.notes.push(format!(
                "qwgpu and HF ran while the GGUF conversion (nice 10) and, with --cuda, the CUDA llama.cpp \
                 build (nice 19) used the CPU;{again} llama.cpp and then the kernel microbenches ran alone."
            ));
        }
        if self.o.qwgpu_runs {
            for (model, format, dir) in &folders {
                self.step(&format!("qwgpu {model} {format}"), |b| {
                    let run = b.qwgpu(model, format, dir, &[]);
                    b.r.runs.push(run);
                    Ok(())
                });
            }
            if self.o.batched && !self.o.sessions.is_empty() {
                for (model, format, dir) in bases.iter().filter(|b| whole(&b.0)) {
                    self.step(&format!("qwgpu {model} {format} --sessions"), |b| {
                        let run = b.qwgpu_sessions(model, format, dir);
                        b.r.batched.push(run);
                        Ok(())
                    });
                }
            }
            // Prefill again with `--f16-matmul` (the plain f16
            // cooperative-matrix GEMM takes every format it supports, x
            // rounded without the precision's per-row scale): what it buys
            // over the default precision's GEMMs.
            for (model, format, dir) in folders
                .iter()
                .filter(|f| f.1 == results::BF16 && whole(&f.0))
            {
                self.step(&format!("qwgpu {model} {format} --f16-matmul"), |b| {
                    let mut run = b.qwgpu(model, format, dir, &["--f16-matmul", "--decode", "0"]);
                    run.engine = results::QWGPU_F16.into();
                    b.r.runs.push(run);
                    Ok(())
                });
            }
        }
        if self.o.hf {
            // Not the reduced MoE checkpoint: HF's figure would be of a model
            // nobody runs, and its MoE prefill is slow to set up.
            for (model, _, dir) in bases.iter().filter(|b| whole(&b.0)) {
                self.step(&format!("HF prefill {model}"), |b| {
                    let run = b.hf_prefill(model, dir);
                    b.r.runs.push(run);
                    Ok(())
                });
            }
        }
        let converted = gguf.is_some();
        if let Some(handle) = gguf {
            self.step("GGUF conversion (wait)", |b| {
                let done = handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("GGUF thread panicked"))?;
                for (name, res) in done {
                    if let Err(e) = res {
                        b.r.errors.push(format!("GGUF {name}: {e:#}"));
                    }
                }
                Ok(())
            });
        }
        let mut backends = vec![(LLAMA_VULKAN, self.peer_dir().join("vk-bin/llama-bench"))];
        if self.o.llama && self.o.cuda {
            let ok = match cuda_build {
                Some(pid) => self.step("CUDA llama-bench build (wait)", |b| {
                    b.wait_cuda_build(pid, secs(900))
                }),
                None => Some(()),
            };
            let bin = self.peer_dir().join("build-cuda/bin/llama-bench");
            if ok.is_some() && bin.exists() {
                backends.push((LLAMA_CUDA, bin));
            }
        }
        // qwgpu's loads and decode above shared the CPU with the GGUF
        // conversion: each measured again now, before llama.cpp takes the GPU.
        if converted && self.o.qwgpu_runs {
            if cuda_build.is_some_and(running) {
                self.r.notes.push(
                    "The CUDA llama.cpp build (nice 19) was still running while qwgpu's loads (and \
                     decode) were measured again alone."
                        .into(),
                );
            }
            self.measure_alone(&folders);
        }
        if self.o.llama {
            for src in &made.sources {
                let model = &src.model;
                self.gguf_weights(model);
                for (fmt, file) in results::llama_formats(src.bf16, src.gptq) {
                    for (engine, bin) in &backends {
                        let gguf = self
                            .o
                            .work
                            .join("gguf")
                            .join(format!("qwen35-{model}-{file}.gguf"));
                        if !gguf.exists() {
                            continue;
                        }
                        self.step(&format!("{engine} {model} {fmt}"), |b| {
                            let run = b.llama_bench(engine, bin, model, fmt, &gguf);
                            b.r.runs.push(run);
                            Ok(())
                        });
                    }
                }
            }
        }
        if self.o.llama && self.o.batched && !self.o.sessions.is_empty() {
            self.llama_batched_all(&bases);
        }
        // Last: the longest and least essential step (its sweeps are capped
        // per bench), so a run cut short by the device call's limit keeps the
        // peers' figures.
        if self.o.kernels {
            self.step("kernel microbenches", |b| b.kernel_benches());
        }
        self.say("all steps done");
    }

    fn unpack_payload(&mut self) -> Result<()> {
        let w = self.peer_dir();
        if w.join("payload.ok").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&w)?;
        let payload = self.o.peers.join("llama.cpp/payload.tar.xz");
        proc::run(
            self.python()
                .args([
                    "-c",
                    "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])",
                ])
                .arg(&payload)
                .arg(&w),
            secs(300),
            "unpacking the llama.cpp payload",
            &Logs::new(&self.logs, "payload"),
        )?;
        std::fs::write(w.join("payload.ok"), "")?;
        Ok(())
    }

    /// Starts the CUDA llama-bench build in its own session (so it outlives
    /// this device call: a later call can use it), unless built or building.
    /// The build's process id, if one runs.
    fn start_cuda_build(&mut self) -> Result<Option<u32>> {
        let w = self.peer_dir();
        let bin = w.join("build-cuda/bin");
        if bin.join("llama-bench").exists() && bin.join("llama-batched-bench").exists() {
            return Ok(None);
        }
        let pid_file = w.join("cuda-build.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if Path::new(&format!("/proc/{pid}")).exists() {
                self.say(&format!("CUDA build already running (pid {pid})"));
                return Ok(Some(pid));
            }
        }
        let script = format!(
            "cmake -S {w}/src -B {w}/build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
             -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
             -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
             -DLLAMA_OPENSSL=OFF && cmake --build {w}/build-cuda --target llama-bench llama-batched-bench -j16",
            w = w.display()
        );
        let child = proc::spawn(
            Command::new("setsid").args(["nice", "-n", "19", "sh", "-c", &script]),
            &Logs::new(&self.logs, "cuda_build"),
        )?;
        let pid = child.id();
        std::fs::write(&pid_file, pid.to_string())?;
        // Not waited on through `child`: a later call may be the one that waits.
        std::mem::forget(child);
        Ok(Some(pid))
    }

    /// Waits for the CUDA build (by its process id) up to `limit`.
    fn wait_cuda_build(&mut self, pid: u32, limit: Duration) -> Result<()> {
        let bin = self.peer_dir().join("build-cuda/bin/llama-bench");
        let t = Instant::now();
        while running(pid) && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(500));
        }
        if bin.exists() {
            return Ok(());
        }
        bail!(
            "no CUDA llama-bench after {t_elapsed_as_secs_f64:.0} s: {out}",
            t_elapsed_as_secs_f64 = t.elapsed().as_secs_f64(),
            out = proc::tail(&self.logs.join("cuda_build.out"), 6)
        )
    }

    fn models_dir(&self) -> PathBuf {
        if let Some(d) = &self.o.models_dir {
            return d.clone();
        }
        // HF folders in RAM when there is room: spares the disk (64 GB there)
        // for the GGUFs, and loads from the page cache either way.
        match free_bytes("/dev/shm") {
            Some(f) if f > 40_000_000_000 => PathBuf::from("/dev/shm/qwgpu-bench"),
            _ => self.o.work.join("models"),
        }
    }

    fn make_models(&mut self) -> Result<Made> {
        let root = self.models_dir();
        std::fs::create_dir_all(&root)?;
        let tok = self.peer_dir().join("tok");
        std::fs::create_dir_all(&tok)?;
        let mut out = Made::default();
        for plan in self.o.models_to_make() {
            let base = plan.base.clone();
            let dir = root.join(format!("hf-{base}"));
            let fp8_dir = root.join(format!("hf-{base}-fp8"));
            let gptq_dir = root.join(format!("hf-{base}-gptq"));
            if opts::full_layers(&base).is_some() {
                self.drop_other_depth(&base, &[&dir, &fp8_dir, &gptq_dir]);
            }
            let done = dir.join(".bench-complete").exists()
                && (!plan.fp8 || fp8_dir.join("config.json").exists())
                && (!plan.gptq || config_says(&gptq_dir, "\"gptq\""));
            if !done {
                let t = Instant::now();
                let mut cmd = self.python();
                cmd.args(["benches/make_models.py", "hf", &base])
                    .arg(&root)
                    .arg(&tok)
                    .args(["--moe-layers", &self.o.moe_layers.to_string()]);
                if plan.fp8 {
                    cmd.arg("--fp8");
                }
                if plan.gptq {
                    cmd.arg("--gptq");
                }
                let res = proc::run(
                    &mut cmd,
                    secs(900),
                    &format!("making {base}"),
                    &Logs::new(&self.logs, &format!("make_{base}")),
                );
                if let Err(e) = res {
                    self.r.errors.push(format!("make {base}: {e:#}"));
                    continue;
                }
                std::fs::write(dir.join(".bench-complete"), "")?;
                self.say(&format!(
                    "made {base} in {t_elapsed_as_secs_f64:.0} s",
                    t_elapsed_as_secs_f64 = t.elapsed().as_secs_f64()
                ));
            }
            if plan.bf16 {
                out.folders
                    .push((base.clone(), BF16.to_string(), dir.clone()));
            }
            if plan.fp8 {
                out.folders.push((base.clone(), FP8.to_string(), fp8_dir));
            }
            if plan.gptq {
                out.folders.push((base.clone(), GPTQ.to_string(), gptq_dir));
            }
            out.sources.push(Source {
                model: base,
                dir,
                bf16: plan.bf16,
                gptq: plan.gptq,
            });
        }
        for (name, dir) in &self.o.existing {
            out.folders
                .push((name.clone(), BF16.to_string(), dir.clone()));
            out.sources.push(Source {
                model: name.clone(),
                dir: dir.clone(),
                bf16: true,
                gptq: false,
            });
        }
        if out.folders.is_empty() {
            bail!("no checkpoint to benchmark");
        }
        Ok(out)
    }

    /// A reduced model made by an earlier run with another `--moe-layers`:
    /// its folders and GGUFs go (the disk holds one depth).
    fn drop_other_depth(&self, base: &str, dirs: &[&Path]) {
        let layers = std::fs::read_to_string(dirs[0].join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                let c = v.get("text_config").unwrap_or(&v);
                c["num_hidden_layers"].as_u64()
            });
        match layers {
            Some(l) if l as usize != self.o.moe_layers => {}
            _ => return,
        }
        self.say(&format!(
            "{base} on hand has {layer_count} layers, not {o_moe_layers}: making it again",
            layer_count = layers.unwrap_or(0),
            o_moe_layers = self.o.moe_layers
        ));
        let gguf = self.o.work.join("gguf");
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        for (_, stem) in GGUF_FORMATS {
            let _ = std::fs::remove_file(gguf.join(format!("qwen35-{base}-{stem}.gguf")));
        }
        let _ = std::fs::remove_file(gguf.join(format!("weights-{base}.json")));
    }

    /// GGUF conversion of each BF16 folder on a background thread (CPU-bound).
    /// (With a GPTQ copy also Q4_0 and Q4_K_M, `make_models.py gguf --q4`.)
    fn start_gguf(&self, sources: &[Source]) -> std::thread::JoinHandle<Vec<(String, Result<()>)>> {
        let w = self.peer_dir();
        let gdir = self.o.work.join("gguf");
        let logs = self.logs.clone();
        let python = self.o.python.clone();
        let sources = sources.to_vec();
        self.say("GGUF conversion started (background)");
        std::thread::spawn(move || {
            let _ = std::fs::create_dir_all(&gdir);
            sources
                .into_iter()
                .map(
                    |Source {
                         model,
                         dir,
                         bf16,
                         gptq,
                     }| {
                        if gguf_done(&gdir.join(format!("weights-{model}.json")), bf16, gptq) {
                            return (model, Ok(()));
                        }
                        let mut cmd = Command::new("nice");
                        cmd.env("PYTHONUNBUFFERED", "1")
                            .args([
                                "-n",
                                "10",
                                &python,
                                "benches/make_models.py",
                                "gguf",
                                &model,
                            ])
                            .arg(&dir)
                            .arg(&gdir)
                            .arg(w.join("src"))
                            .arg(w.join("vk-bin/llama-quantize"));
                        // Q8_0 is the FP8 rows' peer: not made for a
                        // source that only feeds the GPTQ rows.
                        match (bf16, gptq) {
                            (true, true) => {
                                cmd.arg("--q4");
                            }
                            (false, true) => {
                                cmd.arg("--q4-only");
                            }
                            _ => {}
                        }
                        let res = proc::run(
                            &mut cmd,
                            secs(1200),
                            &format!("GGUF {model}"),
                            &Logs::new(&logs, &format!("gguf_{model}")),
                        )
                        .map(|_| ());
                        (model, res)
                    },
                )
                .collect()
        })
    }

    fn gguf_weights(&mut self, model: &str) {
        let path = self
            .o
            .work
            .join("gguf")
            .join(format!("weights-{model}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        for (fmt, key) in GGUF_FORMATS {
            let x = &v[key];
            if let Some(per) = x["bytes_read_per_token"].as_f64() {
                self.r.checkpoints.push(Checkpoint {
                    model: model.to_string(),
                    format: format!("GGUF {fmt}"),
                    weights: weights::CheckpointWeights {
                        total_bytes: x["tensor_bytes"].as_u64().unwrap_or(0),
                        bytes_per_token: per,
                        tied: x["has_output_weight"].as_bool() == Some(false),
                        head_bytes: x["head_bytes"].as_u64().unwrap_or(0),
                        ..Default::default()
                    },
                });
            }
        }
    }

    /// `qwgpu bench --json --model DIR ARGS…`, then the `--qwgpu-args`.
    fn qwgpu_cmd(&self, dir: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.o.qwgpu);
        cmd.args(["bench", "--json", "--model"])
            .arg(dir)
            .args(args)
            .args(self.o.qwgpu_args.split_whitespace());
        cmd
    }

    fn qwgpu(&self, model: &str, format: &str, dir: &Path, extra: &[&str]) -> Run {
        let join = join_list;
        let mut args = vec![
            "--prefill".to_string(),
            join(&self.o.prefill),
            "--decode-at".into(),
            join(&self.o.decode_at),
        ];
        if extra.is_empty() {
            args.extend([
                "--profile".into(),
                "--decode".into(),
                self.o.decode.to_string(),
            ]);
            if !self.o.ttft.is_empty() {
                args.extend(["--ttft".into(), join(&self.o.ttft)]);
            }
        }
        let mut cmd = self.qwgpu_cmd(dir, &args);
        cmd.args(extra);
        let name = qwgpu_log(model, format, if extra.is_empty() { "" } else { "_f16" });
        let res = proc::run(
            &mut cmd,
            secs(600),
            "qwgpu bench",
            &Logs::new(&self.logs, &name),
        );
        match res.map(|out| last_json(&out)) {
            Ok(Some(v)) => results::parse_qwgpu(model, format, &v),
            Ok(None) => Run::failed(results::QWGPU, model, format, "no JSON printed".into()),
            Err(e) => Run::failed(results::QWGPU, model, format, format!("{e:#}")),
        }
    }

    /// The load of each folder whose qwgpu run loaded it, and its batch-1
    /// decode at the run's first `--decode-at` context, measured again in a
    /// process of its own ([`Bench::alone_args`]: no prefill lengths, time
    /// to first token, profile or sessions), into its run's
    /// [`Run::load_alone`] and [`Run::decode_alone`]. One step per folder; a
    /// failure is the step's error.
    fn measure_alone(&mut self, folders: &[Folder]) {
        for (model, format, dir) in folders {
            let loaded = self
                .r
                .run(results::QWGPU, model, format)
                .is_some_and(|x| x.load_s.is_some());
            if !loaded {
                continue;
            }
            self.step(
                &format!("qwgpu {model} {format} load and decode alone"),
                |b| {
                    let (load, decode) = b.qwgpu_alone(model, format, dir)?;
                    let missing = [
                        (load.load_s.is_none(), "load_s"),
                        (b.alone_context().is_some() && decode.is_empty(), "decode"),
                    ];
                    if let Some(run) = b.r.runs.iter_mut().find(|x| {
                        x.engine == results::QWGPU && x.model == *model && x.format == *format
                    }) {
                        if load.load_s.is_some() {
                            run.load_alone = Some(load);
                        }
                        run.decode_alone = decode;
                    }
                    let missing: Vec<&str> = missing.iter().filter(|m| m.0).map(|m| m.1).collect();
                    if !missing.is_empty() {
                        bail!(
                            "no {missing} in qwgpu bench's JSON",
                            missing = missing.join(" or ")
                        );
                    }
                    Ok(())
                },
            );
        }
    }

    /// The decode context measured alone: the run's first `--decode-at`
    /// context, if any (and `--decode` is not 0).
    fn alone_context(&self) -> Option<usize> {
        self.o
            .decode_at
            .first()
            .copied()
            .filter(|_| self.o.decode > 0)
    }

    /// `qwgpu bench`'s arguments after the folder for the alone step:
    /// `--decode-at C --decode N` (one fresh session prefills C tokens, then
    /// the main run's decode steps; nothing else is asked for, so nothing
    /// else runs), or `--prompt-len 1 --decode 1` (the shortest run that
    /// still loads and steps once) without a decode context.
    fn alone_args(&self) -> Vec<String> {
        match self.alone_context() {
            Some(c) => vec![
                "--decode-at".into(),
                c.to_string(),
                "--decode".into(),
                self.o.decode.to_string(),
            ],
            None => ["--prompt-len", "1", "--decode", "1"]
                .map(String::from)
                .into(),
        }
    }

    /// The alone step's `qwgpu bench --json` on one folder: its load figures
    /// and its decode at [`Bench::alone_context`] (none without one).
    fn qwgpu_alone(
        &self,
        model: &str,
        format: &str,
        dir: &Path,
    ) -> Result<(results::LoadTimes, Vec<(usize, f64)>)> {
        let mut cmd = self.qwgpu_cmd(dir, &self.alone_args());
        let name = qwgpu_log(model, format, "_alone");
        let out = proc::run(
            &mut cmd,
            secs(300),
            "qwgpu bench (load and decode alone)",
            &Logs::new(&self.logs, &name),
        )?;
        let v = last_json(&out).context("no JSON printed")?;
        let ctx = self.alone_context();
        let decode = results::decode_rows(&v["model"])
            .into_iter()
            .filter(|(c, _)| Some(*c) == ctx)
            .collect();
        Ok((results::parse_load(&v["model"]), decode))
    }

    fn hf_prefill(&self, model: &str, dir: &Path) -> Run {
        let lens = self
            .o
            .prefill
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let res = proc::run(
            self.python()
                .arg("benches/hf_prefill.py")
                .arg(dir)
                .arg(&lens),
            secs(600),
            "hf_prefill.py",
            &Logs::new(&self.logs, &format!("hf_{model}")),
        );
        match res.map(|out| last_json(&out)) {
            Ok(Some(v)) => results::parse_hf(model, &v),
            Ok(None) => Run::failed(results::HF, model, BF16, "no JSON printed".into()),
            Err(e) => Run::failed(results::HF, model, BF16, format!("{e:#}")),
        }
    }

    fn llama_bench(&self, engine: &str, bin: &Path, model: &str, fmt: &str, gguf: &Path) -> Run {
        let mut cmd = Command::new(bin);
        cmd.arg("-m").arg(gguf).args(["-ngl", "99", "-fa", "on"]);
        cmd.args(self.o.llama_args.split_whitespace())
            .args(["-o", "json"]);
        let name = format!(
            "llama_{vulkan}_{model}_{fmt}",
            vulkan = if engine == LLAMA_CUDA {
                "cuda"
            } else {
                "vulkan"
            }
        );
        match proc::run(
            &mut cmd,
            secs(400),
            "llama-bench",
            &Logs::new(&self.logs, &name),
        ) {
            Ok(out) => results::parse_llama(engine, model, fmt, &out),
            Err(e) => Run::failed(engine, model, fmt, format!("{e:#}")),
        }
    }

    /// `qwgpu bench --sessions` on one folder (its own process: a session
    /// count that fails leaves the main run's figures alone).
    fn qwgpu_sessions(&self, model: &str, format: &str, dir: &Path) -> BatchedRun {
        let counts = join_list(&self.o.sessions);
        let args = [
            "--sessions".to_string(),
            counts,
            "--session-prompt".into(),
            self.o.session_prompt.to_string(),
            "--session-steps".into(),
            self.o.session_steps.to_string(),
        ];
        let mut cmd = self.qwgpu_cmd(dir, &args);
        let name = qwgpu_log(model, format, "_sessions");
        let res = proc::run(
            &mut cmd,
            secs(600),
            "qwgpu bench --sessions",
            &Logs::new(&self.logs, &name),
        );
        match res.map(|out| last_json(&out)) {
            Ok(Some(v)) => batched::parse_qwgpu_sessions(results::QWGPU, model, format, &v),
            Ok(None) => BatchedRun::failed(results::QWGPU, model, format, "no JSON printed".into()),
            Err(e) => BatchedRun::failed(results::QWGPU, model, format, format!("{e:#}")),
        }
    }

    /// llama-batched-bench binaries: CUDA (built with llama-bench under
    /// `--cuda`), Vulkan (`--vk-batched-bench`, or the payload's own if it
    /// carries one). A missing Vulkan one is recorded, not skipped silently.
    fn batched_bench_binaries(&mut self) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        if self.o.cuda {
            let bin = self.peer_dir().join("build-cuda/bin/llama-batched-bench");
            if bin.exists() {
                out.push((LLAMA_CUDA, bin));
            } else {
                self.r.errors.push(format!(
                    "{LLAMA_CUDA} llama-batched-bench: {bin_display} not built",
                    bin_display = bin.display()
                ));
            }
        }
        let vk = self
            .o
            .vk_batched_bench
            .clone()
            .unwrap_or_else(|| self.peer_dir().join("vk-bin/llama-batched-bench"));
        if vk.exists() {
            out.push((LLAMA_VULKAN, vk));
        } else {
            self.r.errors.push(format!(
                "{LLAMA_VULKAN} llama-batched-bench: no binary at {vk_display} (the payload's vk-bin has \
                 llama-bench and llama-quantize only; build one with -DGGML_VULKAN=ON where glslc is, and pass \
                 --vk-batched-bench PATH)",
                vk_display = vk.display()
            ));
        }
        out
    }

    /// llama-batched-bench on each dense BF16 GGUF with every binary found.
    fn llama_batched_all(&mut self, bases: &[Folder]) {
        let bins = self.batched_bench_binaries();
        for (model, _, _) in bases.iter().filter(|b| whole(&b.0)) {
            let gguf = self
                .o
                .work
                .join("gguf")
                .join(format!("qwen35-{model}-bf16.gguf"));
            if !gguf.exists() {
                continue;
            }
            for (engine, bin) in &bins {
                self.step(&format!("{engine} {model} BF16 llama-batched-bench"), |b| {
                    let run = b.llama_batched(engine, bin, model, &gguf);
                    b.r.batched.push(run);
                    Ok(())
                });
            }
        }
    }

    fn llama_batched(&self, engine: &str, bin: &Path, model: &str, gguf: &Path) -> BatchedRun {
        let (counts, prompt, steps) = (
            &self.o.sessions,
            self.o.session_prompt,
            self.o.session_steps,
        );
        let ctx = batched::batched_bench_context(counts, prompt, steps);
        let mut cmd = Command::new(bin);
        cmd.arg("-m")
            .arg(gguf)
            .args(["-ngl", "99", "-fa", "on", "-c", &ctx.to_string()])
            .args(["-npp", &prompt.to_string(), "-ntg", &steps.to_string()])
            .args(["-npl", &join_list(counts)]);
        let name = format!(
            "llama_batched_{backend}_{model}_bf16",
            backend = if engine == LLAMA_CUDA {
                "cuda"
            } else {
                "vulkan"
            }
        );
        let logs = Logs::new(&self.logs, &name);
        let res = proc::run(&mut cmd, secs(400), "llama-batched-bench", &logs);
        // Its table goes to stdout, its log to stderr: read both.
        let text = std::fs::read_to_string(&logs.stdout).unwrap_or_default()
            + &std::fs::read_to_string(&logs.stderr).unwrap_or_default();
        let mut run =
            batched::batched_bench_run(engine, model, BF16, &text, (counts, prompt, steps));
        if let Err(e) = res {
            run.errors.push(format!("{e:#}"));
        }
        run
    }

    fn kernel_benches(&mut self) -> Result<()> {
        for (suite, test, env) in KERNEL_BENCHES {
            let path = self.o.kernel_tests.join(KERNEL_TEST_BINARY);
            let name = format!("{suite}::{test}");
            if !path.exists() {
                self.r.kernels.push(KernelBench {
                    test: name,
                    lines: vec![],
                    error: Some(format!("{} not found", path.display())),
                });
                continue;
            }
            let mut cmd = Command::new(&path);
            cmd.args([
                "--include-ignored",
                "--exact",
                &name,
                "--nocapture",
                "--test-threads",
                "1",
            ]);
            if let Some((k, v)) = env {
                cmd.env(k, v);
            }
            let logs = Logs::new(&self.logs, &format!("kernel_{test}"));
            let res = proc::run(&mut cmd, secs(240), test, &logs);
            let text = std::fs::read_to_string(&logs.stdout).unwrap_or_default()
                + &std::fs::read_to_string(&logs.stderr).unwrap_or_default();
            if test == "gemv_bandwidth" {
                self.r.gemv = results::parse_gemv(&text);
            }
            if test == "coop_peak" {
                self.r.coop_peak = coop::parse_coop_peak(&text);
            }
            self.r.kernels.push(KernelBench {
                test: name,
                lines: bench_lines(&text),
                error: res.err().map(|e| format!("{e:#}")),
            });
        }
        Ok(())
    }
}

/// Whether process `pid` runs (a finished child of ours stays a zombie
/// until reaped: not running).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

/// A model made whole (not a reduced geometry): batched decode, HF prefill
/// and the f16 prefill run on these only.
fn whole(model: &str) -> bool {
    opts::full_layers(model).is_none()
}

/// A folder's config.json mentions `needle` (a quantized copy finished: its
/// config is written last).
fn config_says(dir: &Path, needle: &str) -> bool {
    std::fs::read_to_string(dir.join("config.json")).is_ok_and(|t| t.contains(needle))
}

/// An earlier conversion left `weights-{model}.json` with every format this
/// run needs (Q8_0 when `q8`, the 4-bit ones when `q4`).
fn gguf_done(weights_json: &Path, q8: bool, q4: bool) -> bool {
    std::fs::read_to_string(weights_json)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| {
            v["bf16"].is_object()
                && (!q8 || v["q8_0"].is_object())
                && (!q4 || v["q4_k_m"].is_object())
        })
}

/// The log name of a qwgpu step on `model` / `format` (`suffix` tells
/// the kind of run apart).
fn qwgpu_log(model: &str, format: &str, suffix: &str) -> String {
    format!(
        "qwgpu_{model}_{format_}{suffix}",
        format_ = format.replace(' ', "_")
    )
}

/// `1,4,16` from `[1, 4, 16]`.
fn join_list(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A test binary's output without the harness's own lines.
fn bench_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("running ")
                && !l.starts_with("test result:")
                && !l.starts_with("test ")
                && !l.starts_with("successes:")
                && !l.starts_with("failures:")
        })
        .take(120)
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests19;
