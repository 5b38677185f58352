//! `cargo xtask bench` options (no clap in xtask: a small hand parser).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
usage: xtask bench [options]          (on the GPU machine; see benches/README.md)
  --qwgpu PATH          qwgpu binary (default target/release/qwgpu)
  --peers DIR           the peers folder from ../shared/peers/prepare.sh (default .peers)
  --out DIR             where RESULTS.md, results.json and bench.log go (default benches/out)
  --work DIR            logs, llama.cpp build and GGUFs (default /tmp/qwgpu-bench)
  --models-dir DIR      HF folders (default /dev/shm/qwgpu-bench when it has 40 GB free, else WORK/models)
  --sizes LIST          of 0.8B, 9B, 9B-FP8, 35B-A3B (FP8 + BF16 MoE geometry), 27B (BF16 dense geometry),
                        35B-A3B-GPTQ, 27B-GPTQ (Qwen's official GPTQ-Int4 copy of that geometry's BF16 weights
                        against llama.cpp Q4_0 and Q4_K_M GGUFs of the same weights; the BF16 folder itself is
                        measured only when its own size is listed), or none (default 0.8B,9B,9B-FP8)
  --moe-layers N        layers of the reduced 35B-A3B and 27B geometries, a multiple of 4 (default 4: 3 linear
                        + 1 full; per-layer time and the full-model figure (40 / 64 layers) are derived from it)
  --hf NAME=DIR         use an existing BF16 folder as model NAME instead of making one (repeatable)
  --cuda | --skip-cuda  also build (~5 min) and run llama.cpp's CUDA backend (default: Vulkan only)
  --cuda-start          only start that build, detached, for a later call on the same machine
  --skip-llama --skip-hf --skip-qwgpu --skip-kernels --skip-copy --skip-batched
  --kernel-tests DIR    folder of the kernels' test binary `kernels` (default .gpub/tests)
  --prefill LIST        prefill lengths (default 512,4096,16384)
  --decode-at LIST      decode contexts (default 512,8192)
  --decode N            decode steps per context (default 128)
  --ttft LIST           qwgpu time to first token at these prompt lengths, or none (default 4096,32768)
  --sessions LIST       batched decode session counts, qwgpu `--sessions` and llama-batched-bench `-npl`,
                        on the dense BF16 models, or none (default 1,4,16,32)
  --session-prompt N    prompt tokens of each session (llama-batched-bench -npp; default 512)
  --session-steps N     decode steps timed (llama-batched-bench -ntg; default 128)
  --vk-batched-bench P  a Vulkan llama-batched-bench binary (default: vk-bin/llama-batched-bench of the
                        payload, if it has one; the CUDA one is built with llama-bench)
  --qwgpu-args ARGS     extra `qwgpu bench` options (e.g. \"--chunk 512\")
  --llama-args ARGS     llama-bench test options (default \"-p 512,4096,16384 -n 128 -d 0,8192 -r 3\")
  --python PY           python with torch and transformers (default python3)
  --commit TEXT         qwgpu commit to print (default: the COMMIT file beside the qwgpu binary)
  --report-only FILE    re-render RESULTS.md from a results.json, nothing else
  --baseline FILE       an earlier run's results.json: the no-decode-regression target compares with it
  --baseline-spread PCT how far below the baseline a decode figure may fall (default 6)
  --note TEXT           a note to add to the report (repeatable; e.g. read from the run's logs)";

#[derive(Debug, Clone)]
pub struct Opts {
    pub qwgpu: PathBuf,
    pub peers: PathBuf,
    pub out: PathBuf,
    pub work: PathBuf,
    pub models_dir: Option<PathBuf>,
    pub sizes: Vec<String>,
    pub moe_layers: usize,
    pub existing: Vec<(String, PathBuf)>,
    pub cuda: bool,
    pub cuda_start: bool,
    pub llama: bool,
    pub hf: bool,
    pub qwgpu_runs: bool,
    pub kernels: bool,
    pub copy: bool,
    pub batched: bool,
    pub kernel_tests: PathBuf,
    pub prefill: Vec<usize>,
    pub decode_at: Vec<usize>,
    pub decode: usize,
    pub ttft: Vec<usize>,
    pub sessions: Vec<usize>,
    pub session_prompt: usize,
    pub session_steps: usize,
    pub vk_batched_bench: Option<PathBuf>,
    pub llama_args: String,
    pub qwgpu_args: String,
    pub python: String,
    pub commit: Option<String>,
    pub report_only: Option<PathBuf>,
    pub notes: Vec<String>,
    pub baseline: Option<PathBuf>,
    pub baseline_spread_pct: f64,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            qwgpu: "target/release/qwgpu".into(),
            peers: ".peers".into(),
            out: "benches/out".into(),
            work: "/tmp/qwgpu-bench".into(),
            models_dir: None,
            sizes: vec!["0.8B".into(), "9B".into(), "9B-FP8".into()],
            moe_layers: 4,
            existing: vec![],
            cuda: false,
            cuda_start: false,
            llama: true,
            hf: true,
            qwgpu_runs: true,
            kernels: true,
            copy: true,
            batched: true,
            kernel_tests: ".gpub/tests".into(),
            prefill: vec![512, 4096, 16384],
            decode_at: vec![512, 8192],
            decode: 128,
            ttft: vec![4096, 32768],
            sessions: vec![1, 4, 16, 32],
            session_prompt: 512,
            session_steps: 128,
            vk_batched_bench: None,
            llama_args: "-p 512,4096,16384 -n 128 -d 0,8192 -r 3".into(),
            qwgpu_args: String::new(),
            python: "python3".into(),
            commit: None,
            report_only: None,
            notes: vec![],
            baseline: None,
            baseline_spread_pct: super::baseline::DEFAULT_SPREAD_PCT,
        }
    }
}

pub const SIZES: [&str; 7] = [
    "0.8B",
    "9B",
    "9B-FP8",
    "35B-A3B",
    "27B",
    "35B-A3B-GPTQ",
    "27B-GPTQ",
];

/// Models made with fewer layers than the real one (`--moe-layers`), with
/// the real model's layer count: their per-layer time is extrapolated.
pub const REDUCED: [(&str, usize); 2] = [("35B-A3B", 40), ("27B", 64)];

/// The real layer count of a reduced model (`None`: made whole).
pub fn full_layers(model: &str) -> Option<usize> {
    REDUCED.iter().find(|(m, _)| *m == model).map(|(_, l)| *l)
}

/// One BF16 folder to make and what is made and measured from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakePlan {
    pub base: String,
    /// The BF16 folder is measured itself (qwgpu, HF, llama.cpp BF16 / Q8_0);
    /// otherwise it is only the source of its quantized copies and GGUFs.
    pub bf16: bool,
    /// A Qwen block-FP8 copy (measured against Q8_0).
    pub fp8: bool,
    /// A GPTQ-Int4 copy (measured against Q4_0 and Q4_K_M GGUFs).
    pub gptq: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Opts>),
    /// `-h` / `--help`: print [`USAGE`] and succeed.
    Help,
}

fn list(v: &str) -> Result<Vec<usize>> {
    if v == "none" {
        return Ok(vec![]);
    }
    v.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .with_context(|| format!("bad number {x:?} in {v:?}"))
        })
        .collect()
}

impl Opts {
    /// The options of a run (tests: a command line that asks for help is an error here).
    #[cfg(test)]
    pub fn parse(args: &[String]) -> Result<Self> {
        match Self::parse_args(args)? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => bail!("asked for help"),
        }
    }

    pub fn parse_args(args: &[String]) -> Result<Parsed> {
        let mut o = Self::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{a} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--qwgpu" => o.qwgpu = value()?.into(),
                "--peers" => o.peers = value()?.into(),
                "--out" => o.out = value()?.into(),
                "--work" => o.work = value()?.into(),
                "--models-dir" => o.models_dir = Some(value()?.into()),
                "--sizes" => {
                    let v = value()?;
                    o.sizes = if v == "none" {
                        vec![]
                    } else {
                        v.split(',').map(|s| s.trim().to_string()).collect()
                    };
                    if let Some(bad) = o.sizes.iter().find(|s| !SIZES.contains(&s.as_str())) {
                        bail!("unknown size {bad:?}: expected some of {SIZES:?}");
                    }
                }
                "--moe-layers" => {
                    o.moe_layers = value()?.parse().context("--moe-layers")?;
                    if o.moe_layers == 0 || o.moe_layers % 4 != 0 {
                        bail!("--moe-layers must be a positive multiple of 4 (3 linear : 1 full attention)");
                    }
                }
                "--hf" => {
                    let v = value()?;
                    let (name, dir) = v
                        .split_once('=')
                        .with_context(|| format!("--hf {v:?}: expected NAME=DIR"))?;
                    o.existing.push((name.to_string(), dir.into()));
                }
                "--cuda" => o.cuda = true,
                "--skip-cuda" => o.cuda = false,
                "--cuda-start" => o.cuda_start = true,
                "--skip-llama" => o.llama = false,
                "--skip-hf" => o.hf = false,
                "--skip-qwgpu" => o.qwgpu_runs = false,
                "--skip-kernels" => o.kernels = false,
                "--skip-copy" => o.copy = false,
                "--skip-batched" => o.batched = false,
                "--kernel-tests" => o.kernel_tests = value()?.into(),
                "--prefill" => o.prefill = list(&value()?)?,
                "--decode-at" => o.decode_at = list(&value()?)?,
                "--decode" => o.decode = value()?.parse().context("--decode")?,
                "--ttft" => o.ttft = list(&value()?)?,
                "--sessions" => o.sessions = list(&value()?)?,
                "--session-prompt" => {
                    o.session_prompt = value()?.parse().context("--session-prompt")?
                }
                "--session-steps" => {
                    o.session_steps = value()?.parse().context("--session-steps")?
                }
                "--vk-batched-bench" => o.vk_batched_bench = Some(value()?.into()),
                "--llama-args" => o.llama_args = value()?,
                "--qwgpu-args" => o.qwgpu_args = value()?,
                "--python" => o.python = value()?,
                "--commit" => o.commit = Some(value()?),
                "--report-only" => o.report_only = Some(value()?.into()),
                "--note" => o.notes.push(value()?),
                "--baseline" => o.baseline = Some(value()?.into()),
                "--baseline-spread" => {
                    o.baseline_spread_pct = value()?.parse().context("--baseline-spread")?
                }
                "-h" | "--help" => return Ok(Parsed::Help),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if o.sessions.contains(&0) || o.session_prompt == 0 || o.session_steps == 0 {
            bail!("--sessions counts, --session-prompt and --session-steps must be at least 1");
        }
        Ok(Parsed::Run(Box::new(o)))
    }

    /// Base models to make (BF16), in the order asked, each with its copies.
    pub fn models_to_make(&self) -> Vec<MakePlan> {
        let mut out: Vec<MakePlan> = Vec::new();
        for s in &self.sizes {
            // (base, BF16 measured, FP8 copy, GPTQ copy)
            let (base, bf16, fp8, gptq) = match s.as_str() {
                "9B-FP8" => ("9B", true, true, false),
                "35B-A3B" => ("35B-A3B", true, true, false),
                "35B-A3B-GPTQ" => ("35B-A3B", false, false, true),
                "27B-GPTQ" => ("27B", false, false, true),
                other => (other, true, false, false),
            };
            match out.iter_mut().find(|p| p.base == base) {
                Some(p) => {
                    p.bf16 |= bf16;
                    p.fp8 |= fp8;
                    p.gptq |= gptq;
                }
                None => out.push(MakePlan {
                    base: base.to_string(),
                    bf16,
                    fp8,
                    gptq,
                }),
            }
        }
        out
    }

    /// The reduced model of this run, if any (`Results::moe_layers` applies to it).
    pub fn makes_reduced(&self) -> bool {
        self.models_to_make()
            .iter()
            .any(|p| full_layers(&p.base).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sizes_and_skips_select_the_steps() {
        let o = Opts::parse(&args(
            "--sizes 9B-FP8,0.8B --skip-hf --cuda --decode-at 512,8192 --hf x=/m",
        ))
        .unwrap();
        let plan = |base: &str, bf16, fp8, gptq| MakePlan {
            base: base.into(),
            bf16,
            fp8,
            gptq,
        };
        assert_eq!(
            o.models_to_make(),
            vec![
                plan("9B", true, true, false),
                plan("0.8B", true, false, false)
            ]
        );
        assert!(!o.hf && o.cuda && o.llama);
        assert_eq!(o.decode_at, vec![512, 8192]);
        assert_eq!(o.existing, vec![("x".to_string(), PathBuf::from("/m"))]);
        let d = Opts::parse(&[]).unwrap();
        assert_eq!(
            d.models_to_make(),
            vec![
                plan("0.8B", true, false, false),
                plan("9B", true, true, false)
            ]
        );
        assert!(!d.makes_reduced());
        // Issue 19's rows: the GPTQ copies alone leave their BF16 source
        // unmeasured; listing the base as well measures it too.
        let g = Opts::parse(&args("--sizes 35B-A3B-GPTQ,27B-GPTQ")).unwrap();
        assert_eq!(
            g.models_to_make(),
            vec![
                plan("35B-A3B", false, false, true),
                plan("27B", false, false, true)
            ]
        );
        assert!(g.makes_reduced());
        let g = Opts::parse(&args("--sizes 27B-GPTQ,35B-A3B,27B")).unwrap();
        assert_eq!(
            g.models_to_make(),
            vec![
                plan("27B", true, false, true),
                plan("35B-A3B", true, true, false)
            ]
        );
        assert_eq!(full_layers("27B"), Some(64));
        assert_eq!(full_layers("35B-A3B"), Some(40));
        assert_eq!(full_layers("9B"), None);
        assert!(!d.cuda);
        // 35B-A3B: 3 linear + 1 full attention layer unless asked otherwise.
        assert_eq!(d.moe_layers, 4);
        assert_eq!(Opts::parse(&args("--moe-layers 8")).unwrap().moe_layers, 8);
        assert!(Opts::parse(&args("--sizes none"))
            .unwrap()
            .models_to_make()
            .is_empty());
        // Issue 17's rows by default: 16k prefill on both engines, TTFT at
        // 4k and 32k, batched decode at llama-batched-bench's counts.
        assert_eq!(d.prefill, vec![512, 4096, 16384]);
        assert!(d.llama_args.contains("-p 512,4096,16384"));
        assert_eq!(d.ttft, vec![4096, 32768]);
        assert_eq!(d.sessions, vec![1, 4, 16, 32]);
        assert_eq!((d.session_prompt, d.session_steps), (512, 128));
        assert!(d.batched && d.vk_batched_bench.is_none());
        let o = Opts::parse(&args(
            "--ttft none --sessions 2,8 --session-prompt 64 --session-steps 16 --skip-batched --vk-batched-bench /b \
             --baseline /r.json --baseline-spread 4.5",
        ))
        .unwrap();
        assert!(o.ttft.is_empty() && !o.batched);
        assert_eq!(o.sessions, vec![2, 8]);
        assert_eq!((o.session_prompt, o.session_steps), (64, 16));
        assert_eq!(o.vk_batched_bench, Some(PathBuf::from("/b")));
        assert_eq!(o.baseline, Some(PathBuf::from("/r.json")));
        assert_eq!(o.baseline_spread_pct, 4.5);
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        for (a, needle) in [
            ("--sizes 7B", "unknown size"),
            ("--moe-layers 10", "multiple of 4"),
            ("--decode-at 5x", "bad number"),
            ("--frobnicate", "unknown option"),
            ("--out", "needs a value"),
            ("--hf nodir", "NAME=DIR"),
            ("--sessions 1,0", "at least 1"),
            ("--session-steps 0", "at least 1"),
            ("--ttft 4k", "bad number"),
        ] {
            let err = Opts::parse(&args(a)).unwrap_err().to_string();
            assert!(err.contains(needle), "{a}: {err}");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        for a in ["--help", "-h", "--sizes 9B --help", "--skip-hf -h --bogus"] {
            assert!(
                matches!(Opts::parse_args(&args(a)), Ok(Parsed::Help)),
                "{a}"
            );
        }
        // A value that happens to read `--help` is a value.
        match Opts::parse_args(&args("--note --help")) {
            Ok(Parsed::Run(o)) => assert_eq!(o.notes, ["--help"]),
            other => panic!("{other:?}"),
        }
        assert!(Opts::parse_args(&args("--bogus")).is_err());
    }
}
