//! The ceiling of wgpu's cooperative matrices on this adapter: a plain
//! f16 × f16 → f32 GEMM (`shaders/coop_peak.wgsl`) in several tilings, each
//! checked against an f64 CPU product, then timed (GPU timestamps) on prefill
//! shapes. What the library's tensor-core GEMM (`matmul_coop.wgsl`) is
//! measured against (`benches/`).
//!
//! `#[ignore]`d: it needs cooperative matrices (no software adapter has them)
//! and a quiet GPU; the GPU machine runs it with `--include-ignored --exact
//! coop_peak --nocapture`, and it fails where the adapter lacks them.
//!
//! Tolerance: f16 inputs multiply exactly in f32, so only the f32 sums round:
//! `|got − want| ≤ 1e-5 · Σ|x·w|` per output.

use qwgpu_kernels::profile::time_dispatches;
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{wgpu, Dispatch, GpuContext};
use qwgpu_ops::rng::Rng;

use qwgpu_kernels::coop_peak::{peak_gemm, Feed, Tiling};

const fn t(feed: Feed, sg_m: u32, sg_n: u32, ck: u32, lds: u32, nbuf: u32) -> Tiling {
    Tiling {
        feed,
        sg_m,
        sg_n,
        ck,
        lds,
        nbuf,
    }
}

const TILINGS: [Tiling; 14] = [
    t(Feed::Direct, 2, 2, 32, 40, 1),
    t(Feed::Staged, 2, 2, 32, 40, 1),
    t(Feed::Staged, 4, 4, 16, 24, 1),
    t(Feed::Vec4, 2, 2, 32, 40, 1),
    t(Feed::Vec4, 2, 2, 32, 40, 2),
    t(Feed::Vec4, 2, 2, 32, 48, 1),
    t(Feed::Vec4, 2, 4, 32, 40, 1),
    t(Feed::Vec4, 2, 4, 32, 40, 2),
    t(Feed::Vec4, 4, 2, 32, 40, 2),
    t(Feed::Vec4, 4, 4, 32, 40, 1),
    t(Feed::ProbeShared, 2, 2, 32, 40, 1),
    t(Feed::ProbeShared, 2, 4, 32, 40, 1),
    t(Feed::ProbeMma, 2, 2, 32, 40, 1),
    t(Feed::ProbeMma, 2, 4, 32, 40, 1),
];

fn f16_bits(v: &[f32]) -> Vec<u16> {
    v.iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect()
}

struct Problem {
    m: u32,
    n: u32,
    k: u32,
    x: wgpu::Buffer,
    w: wgpu::Buffer,
    y: wgpu::Buffer,
}

impl Problem {
    fn new(ctx: &GpuContext, rng: &mut Rng, m: u32, n: u32, k: u32) -> (Self, Vec<f32>, Vec<f32>) {
        // Values exact in f16, so the CPU product sees what the GPU sees.
        let round = |v: Vec<f32>| -> Vec<f32> {
            v.into_iter()
                .map(|x| half::f16::from_f32(x).to_f32())
                .collect()
        };
        let xv = round(rng.normal_vec((m * k) as usize));
        let wv = round(rng.normal_vec((n * k) as usize));
        let p = Problem {
            m,
            n,
            k,
            x: ctx.upload("x f16", &f16_bits(&xv)).unwrap(),
            w: ctx.upload("w f16", &f16_bits(&wv)).unwrap(),
            y: ctx.storage("y", u64::from(m * n) * 4).unwrap(),
        };
        (p, xv, wv)
    }

    fn dispatch(&self, ctx: &GpuContext, t: &Tiling) -> Option<Dispatch> {
        if let Some(why) = t.unfit(ctx) {
            eprintln!("BENCH coop_peak {t:?}: {why}");
            return None;
        }
        Some(peak_gemm(ctx, t, &self.x, &self.w, &self.y, self.m, self.n, self.k).unwrap())
    }
}

/// Checks every output of `got` against the f64 product.
fn check(got: &[f32], x: &[f32], w: &[f32], (m, n, k): (usize, usize, usize), what: &str) {
    let mut worst = 0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0f64, 0f64);
            for q in 0..k {
                let p = f64::from(x[i * k + q]) * f64::from(w[j * k + q]);
                s += p;
                a += p.abs();
            }
            let err = (f64::from(got[i * n + j]) - s).abs();
            assert!(
                err <= 1e-5 * a,
                "{what}: y[{i}][{j}] = {got_v}, want {s} (|err| {err:.3e} > 1e-5 · {a:.3e})",
                got_v = got[i * n + j]
            );
            worst = worst.max(err / a.max(f64::MIN_POSITIVE));
        }
    }
    eprintln!("BENCH coop_peak check {what}: worst |err| / Σ|x·w| = {worst:.2e}");
}

/// Best time of one launch (ns) over `reps` timed launches after a warm-up.
fn best_ns(ctx: &GpuContext, d: &Dispatch, reps: usize) -> f64 {
    ctx.run("warm-up", &[d; 4]).unwrap();
    let refs = vec![d; reps];
    time_dispatches(ctx, &refs)
        .unwrap()
        .iter()
        .map(|(_, t)| *t)
        .fold(f64::INFINITY, f64::min)
}

/// The module validates and translates to SPIR-V on the CPU (what the GPU
/// machine's driver is given), for both entry points, so a WGSL or naga
/// regression fails here rather than on the GPU machine.
#[test]
fn coop_peak_module_translates() {
    let src = qwgpu_kernels::coop_peak::COOP_PEAK.text;
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("coop_peak.wgsl: {}", e.emit_to_string(src)));
    let caps = naga::valid::Capabilities::SUBGROUP
        | naga::valid::Capabilities::SHADER_FLOAT16
        | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
        | naga::valid::Capabilities::COOPERATIVE_MATRIX;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("coop_peak.wgsl: {e:?}"));
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        None,
        &Default::default(),
    )
    .unwrap();
    for entry in ["peak_direct", "peak_staged", "peak_v4"] {
        let pipe = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.into(),
        };
        let words = naga::back::spv::write_vec(&module, &info, &Default::default(), Some(&pipe))
            .unwrap_or_else(|e| panic!("coop_peak.wgsl {entry}: {e}"));
        assert!(
            words.len() > 100,
            "{entry}: {n} SPIR-V words",
            n = words.len()
        );
    }
}

#[test]
#[ignore = "needs cooperative matrices (a hardware GPU); the GPU machine runs it by name"]
fn coop_peak() {
    // Trusted modules, as release runs them (a test build would otherwise
    // compile bounds-checked ones, which put a branch around every
    // cooperative load).
    let ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    let (lo, hi) = ctx.caps.subgroup_sizes;
    let coop = testing::require("peak", &ctx, &[Feature::CooperativeMatrix]);
    assert!(
        coop && lo == hi,
        "adapter `{name}` lacks cooperative matrices or a fixed subgroup size: no ceiling to measure",
        name = ctx.info.name
    );
    let mut rng = Rng::new(0x9eac_c00b);
    // Correctness first, on a shape of a few tiles of every tiling.
    let (small, xv, wv) = Problem::new(&ctx, &mut rng, 512, 512, 256);
    for t in TILINGS.iter().filter(|t| t.feed.computes()) {
        let Some(d) = small.dispatch(&ctx, t) else {
            continue;
        };
        ctx.fill_f32(&small.y, f32::NAN);
        ctx.run("coop peak check", &[&d]).unwrap();
        let got = ctx.read_f32(&small.y, 0, 512 * 512).unwrap();
        check(&got, &xv, &wv, (512, 512, 256), &format!("{t:?}"));
    }
    // Then speed: square and 9B-prefill-like shapes (m tokens, n rows, k columns).
    for (m, n, k) in [
        (4096u32, 4096u32, 4096u32),
        (4096, 12288, 4096),
        (512, 12288, 4096),
    ] {
        let (p, _, _) = Problem::new(&ctx, &mut rng, m, n, k);
        let flop = 2.0 * f64::from(m) * f64::from(n) * f64::from(k);
        for t in &TILINGS {
            let Some(d) = p.dispatch(&ctx, t) else {
                continue;
            };
            let ns = best_ns(&ctx, &d, 10);
            eprintln!(
                "BENCH coop_peak {adapter} m={m} n={n} k={k} {feed:?} sg={sg_m}x{sg_n} ck={ck} lds={lds} nbuf={nbuf}: {us:.1} µs = {tflops:.1} TFLOP/s",
                adapter = ctx.info.name,
                feed = t.feed,
                sg_m = t.sg_m,
                sg_n = t.sg_n,
                ck = t.ck,
                lds = t.lds,
                nbuf = t.nbuf,
                us = ns / 1e3,
                tflops = flop / ns / 1e3
            );
        }
    }
}
