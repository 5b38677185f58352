//! What the dense GEMM benchmarks (ignored tests, run on the GPU machine)
//! share: their buffers, GPU-timestamp timing, and how far one kernel's
//! output is from another's.

use qwgpu_kernels::matmul::{Epilogue, MatmulArgs};
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{ContextOptions, Dispatch, GpuContext, MatmulPrecision};
use qwgpu_ops::rng::Rng;

/// A benchmark's context: trusted modules (no runtime checks, in every
/// build: the bounds-checked modules a test build compiles by default
/// measured about half as fast), `precision`, `f16_matmul`.
pub fn trusted(precision: MatmulPrecision, f16_matmul: bool) -> GpuContext {
    GpuContext::new(&ContextOptions {
        precision,
        f16_matmul,
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap()
}

/// The fast- and exact-precision contexts of the tensor-core GEMM benchmark
/// `name`, which needs cooperative matrices and timestamps.
pub fn coop_contexts(name: &str) -> (GpuContext, GpuContext) {
    let fast = trusted(MatmulPrecision::Fast, false);
    let exact = trusted(MatmulPrecision::Exact, false);
    assert!(
        testing::require(
            name,
            &fast,
            &[Feature::CooperativeMatrix, Feature::Timestamps]
        ),
        "the benchmark needs cooperative matrices and timestamps"
    );
    (fast, exact)
}

/// A GEMM shape's x (`t` normal rows of `cols`), output width under `epi`
/// and FLOPs.
pub fn shape_inputs(
    rng: &mut Rng,
    (rows, cols, t): (usize, usize, usize),
    epi: Epilogue,
) -> (Vec<f32>, usize, f64) {
    let xv = rng.normal_vec(t * cols);
    let width = if epi == Epilogue::SwiGlu {
        rows / 2
    } else {
        rows
    };
    (xv, width, 2.0 * (t * rows * cols) as f64)
}

/// x (uploaded) and y (zeroed) of a dense matmul of `t` tokens of `cols`
/// columns into `width` outputs, rows contiguous.
pub struct Dense {
    pub x: qwgpu_kernels::wgpu::Buffer,
    pub y: qwgpu_kernels::wgpu::Buffer,
    t: usize,
    cols: usize,
    width: usize,
}

impl Dense {
    pub fn new(ctx: &GpuContext, xv: &[f32], t: usize, cols: usize, width: usize) -> Self {
        let x = ctx.upload("x", xv).unwrap();
        let y = ctx.storage("y", (t * width * 4) as u64).unwrap();
        ctx.fill_f32(&y, 0.0);
        Self {
            x,
            y,
            t,
            cols,
            width,
        }
    }

    pub fn args(&self) -> MatmulArgs<'_> {
        super::matmul_case::contiguous(&self.x, &self.y, self.t, self.cols, self.width)
    }

    /// Runs `d` once (before the timed runs: Accumulate adds to y on each)
    /// and reads y's first `rows` rows.
    pub fn first_rows(&self, ctx: &GpuContext, d: &[Dispatch], rows: usize) -> Vec<f32> {
        let refs: Vec<&Dispatch> = d.iter().collect();
        ctx.run("first", &refs).unwrap();
        ctx.read_f32(&self.y, 0, rows * self.width).unwrap()
    }
}

/// Best of 5 GPU-timestamp runs of `d` after a warm-up: (total ns, ns of the
/// launches labelled `label`).
pub fn best_ns(ctx: &GpuContext, d: &[Dispatch], label: &str) -> (f64, f64) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("warm-up", &refs).unwrap();
    let mut best = (f64::INFINITY, 0.0);
    for _ in 0..5 {
        let times = qwgpu_kernels::profile::time_dispatches(ctx, &refs).unwrap();
        let all: f64 = times.iter().map(|(_, t)| t).sum();
        let part: f64 = times
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, t)| t)
            .sum();
        if all < best.0 {
            best = (all, part);
        }
    }
    best
}

/// max |a − b| / max |b|; NaN anywhere makes it NaN (and fails a check).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, |m, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        });
    diff / scale
}
