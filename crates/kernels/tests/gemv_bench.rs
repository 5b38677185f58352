//! Decode GEMV bandwidth (`matmul` at T = 1, and the MoE decode step) at the
//! real Qwen3.5 0.8B, 9B and 35B-A3B shapes, in BF16 and in FP8 E4M3 with 128×128
//! block scales (Qwen's FP8 format) — and, in `gemv_int4_bandwidth` /
//! `gemv_int4_small_t`, 4-bit weights in groups of 128 (`format=Q4-g128`,
//! GPTQ-Int4's layout after the loader) — against the device copy bandwidth
//! measured by the crate's copy kernel in the same run. A benchmark, not a
//! correctness test (`tests/matmul.rs` and `tests/moe.rs` check the
//! arithmetic): `#[ignore]`, run on a real GPU with
//! `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture gemv_bench::`.
//! On a software adapter (lavapipe) it runs the same code on shapes scaled
//! down ~16× per side, so the output format can be checked anywhere.
//! `GEMV_BENCH_MODELS` (e.g. `27B`, or `9B,27B`) picks the models whose dense
//! shapes run (default 0.8B, 9B, 35B-A3B; the 27B's are opt-in: the 4-bit
//! rows of issue 19 are its MLPs).
//!
//! Timing: GPU timestamps at the start and end of one compute pass holding
//! `reps` launches; the median of 7 submissions after 2 warm-ups, divided by
//! the launches (software adapters: one submission of one launch). Each launch in a pass reads a different copy of the weight
//! (copies up to 256 MiB in all) so it comes from memory, not from the L2
//! cache (50 MiB on the H100), as in a decode step where every other layer's
//! weights pass between two reads of one matrix. Bytes read = the weight's
//! rows as stored (16-byte aligned) + its scale table; activations (a few
//! KiB, cache-resident) are not counted.
//!
//! Output, one line each, `key=value` fields (parsed by `cargo xtask bench`):
//! - `gemv_copy bytes=B us=U gbps=G`: copy kernel, B bytes read + written per launch.
//! - `gemv model=M shape=S format=F rows=R cols=C epilogue=E count=N bytes=B us=U gbps=G copy_pct=P`:
//!   one shape; N = launches of it per decode token of the full model.
//! - `gemv model=M shape=moe.step format=F count=N bytes=B us=U gbps=G copy_pct=P`: the MoE FFN
//!   of one token (router GEMV, top-k routing, expert gate_up SwiGLU + down, combine).
//! - `gemv_summary model=M format=F bytes=B us=U gbps=G copy_pct=P`: a whole decode token's
//!   GEMVs, Σ N·bytes ÷ Σ N·µs.
//!
//! Small-T steps (batched decode: T = 2..16 tokens per matmul) have their own
//! tests here: `gemv_small_t` (the 9B step's GEMVs at T = 1, 2, 4, 8, 16
//! against the T = 1 bandwidth) and `gemv_small_t_shapes` (the small-T
//! kernel's workgroup shapes, to tune an adapter); their docs give the output.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{
    matmul, matmul_gemv_with, matmul_indexed, matmul_indexed_int4_with, matmul_int4_with, Epilogue,
    IndexedArgs, MatmulArgs,
};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, moe, ContextOptions, Dispatch, GpuContext, GpuWeight, Int4Gemv, SmallT};
use qwgpu_loader::{ActivationQuant, BlockSegment, Int4Weights, PackedWeight, ScaleScheme, Shard};
use qwgpu_ops::rng::Rng;

mod support;
use support::matmul_case::contiguous;

/// Qwen's FP8 block.
const BLOCK: usize = 128;
/// Bytes of weight copies a timed pass rotates over (beyond the H100's 50 MiB L2).
const ROTATE_BYTES: u64 = 256 << 20;
const MAX_COPIES: usize = 512;
/// Seconds of warm-up work before each timed shape (real GPUs).
const WARM_SECS: f64 = 0.2;

/// One dense GEMV of a model's decode step.
struct Shape {
    model: &'static str,
    name: &'static str,
    rows: usize,
    cols: usize,
    /// Row counts of the checkpoint tensors packed into this weight (each its own block grid).
    sources: Vec<usize>,
    epilogue: Epilogue,
    /// Launches per decode token of the full model.
    count: usize,
}

/// The MoE FFN of one token (35B-A3B: 256 experts of 512, top 8).
struct MoeShape {
    model: &'static str,
    hidden: usize,
    experts: usize,
    top_k: usize,
    inter: usize,
    count: usize,
}

/// The models whose dense shapes the benches time: `GEMV_BENCH_MODELS`
/// (comma-separated, e.g. `27B` to tune the 4-bit GEMV on the 27B's MLPs
/// alone), else 0.8B, 9B and 35B-A3B (the bench report's rows).
fn bench_models() -> Vec<String> {
    std::env::var("GEMV_BENCH_MODELS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "0.8B,9B,35B-A3B".into())
        .split(',')
        .map(|m| m.trim().to_string())
        .collect()
}

/// Real shapes of [`bench_models`]; `div` (1 on a GPU) shrinks every side for
/// software adapters. The MoE step (35B-A3B) is always there.
fn shapes(div: usize) -> (Vec<Shape>, MoeShape) {
    let models = bench_models();
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    let d = |n: usize| (n / div).max(2);
    let s = |model, name, sources: &[usize], cols: usize, epilogue, count| {
        let sources: Vec<usize> = sources.iter().map(|&r| d(r)).collect();
        Shape {
            model,
            name,
            rows: sources.iter().sum(),
            cols: d(cols),
            sources,
            epilogue,
            count,
        }
    };
    use Epilogue::{Accumulate, Store, SwiGlu};
    // 9B: hidden 4096, 32 layers (24 linear + 8 full); GDN nk 16, nv 32, dk = dv = 128
    // (qkv 8192 + z 4096 rows; b, a 32 each); attention nh 16, nkv 4, hd 256 with the
    // output gate (q+gate 8192, k 1024, v 1024); MLP 12288; vocabulary 248320.
    // 35B-A3B: hidden 2048, 40 layers (30 + 10); same GDN heads; attention nh 16,
    // nkv 2 (q+gate 8192, k 512, v 512); shared expert 512; untied head.
    // 0.8B: hidden 1024, 24 layers (18 + 6); GDN nk = nv = 16 (qkv 6144 + z 2048);
    // attention nh 8, nkv 2, hd 256 (q+gate 4096, k 512, v 512); MLP 3584; tied head.
    let dense = vec![
        s("0.8B", "gdn.in_proj_qkvz", &[6144, 2048], 1024, Store, 18),
        s("0.8B", "gdn.in_proj_ba", &[16, 16], 1024, Store, 18),
        s("0.8B", "gdn.out_proj", &[1024], 2048, Accumulate, 18),
        s("0.8B", "attn.qkv", &[4096, 512, 512], 1024, Store, 6),
        s("0.8B", "attn.o_proj", &[1024], 2048, Accumulate, 6),
        s("0.8B", "mlp.gate_up", &[3584, 3584], 1024, SwiGlu, 24),
        s("0.8B", "mlp.down", &[1024], 3584, Accumulate, 24),
        s("0.8B", "lm_head", &[248320], 1024, Store, 1),
        s("9B", "gdn.in_proj_qkvz", &[8192, 4096], 4096, Store, 24),
        s("9B", "gdn.in_proj_ba", &[32, 32], 4096, Store, 24),
        s("9B", "gdn.out_proj", &[4096], 4096, Accumulate, 24),
        s("9B", "attn.qkv", &[8192, 1024, 1024], 4096, Store, 8),
        s("9B", "attn.o_proj", &[4096], 4096, Accumulate, 8),
        s("9B", "mlp.gate_up", &[12288, 12288], 4096, SwiGlu, 32),
        s("9B", "mlp.down", &[4096], 12288, Accumulate, 32),
        s("9B", "lm_head", &[248320], 4096, Store, 1),
        s(
            "35B-A3B",
            "gdn.in_proj_qkvz",
            &[8192, 4096],
            2048,
            Store,
            30,
        ),
        s("35B-A3B", "gdn.in_proj_ba", &[32, 32], 2048, Store, 30),
        s("35B-A3B", "gdn.out_proj", &[2048], 4096, Accumulate, 30),
        s("35B-A3B", "attn.qkv", &[8192, 512, 512], 2048, Store, 10),
        s("35B-A3B", "attn.o_proj", &[2048], 4096, Accumulate, 10),
        s("35B-A3B", "shared.gate_up", &[512, 512], 2048, SwiGlu, 40),
        s("35B-A3B", "shared.down", &[2048], 512, Accumulate, 40),
        s("35B-A3B", "lm_head", &[248320], 2048, Store, 1),
        // 27B: hidden 5120, 64 layers (48 + 16); GDN nk 16, nv 48 (qkv 10240 + z 6144);
        // attention nh 24, nkv 4, hd 256 (q+gate 12288, k 1024, v 1024); MLP 17408;
        // untied head. Its GPTQ-Int4 release quantizes the MLPs only.
        s("27B", "gdn.in_proj_qkvz", &[10240, 6144], 5120, Store, 48),
        s("27B", "gdn.in_proj_ba", &[48, 48], 5120, Store, 48),
        s("27B", "gdn.out_proj", &[5120], 6144, Accumulate, 48),
        s("27B", "attn.qkv", &[12288, 1024, 1024], 5120, Store, 16),
        s("27B", "attn.o_proj", &[5120], 6144, Accumulate, 16),
        s("27B", "mlp.gate_up", &[17408, 17408], 5120, SwiGlu, 64),
        s("27B", "mlp.down", &[5120], 17408, Accumulate, 64),
        s("27B", "lm_head", &[248320], 5120, Store, 1),
    ];
    let dense = dense
        .into_iter()
        .filter(|s| models.contains(&s.model))
        .collect();
    let moe = MoeShape {
        model: "35B-A3B",
        hidden: d(2048),
        experts: if div == 1 { 256 } else { 64 },
        top_k: 8,
        inter: d(512),
        count: 40,
    };
    (dense, moe)
}

/// Fast filler: normal-magnitude values of `dtype` (no NaN or infinity; the
/// values do not matter for speed).
fn fill(dtype: Dtype, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n * dtype.size() + 8);
    while out.len() < n * dtype.size() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = match dtype {
            // sign, exponent 2^-3, random mantissa
            Dtype::BF16 => (x & 0x807F_807F_807F_807F) | 0x3E00_3E00_3E00_3E00,
            // sign, exponent 2^-1, random mantissa
            Dtype::F8E4M3 => (x & 0x8787_8787_8787_8787) | 0x3030_3030_3030_3030,
            _ => unreachable!("bench formats are BF16 and E4M3"),
        };
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(n * dtype.size());
    out
}

/// Columns per group of the 4-bit weights (GPTQ-Int4 as Qwen releases it).
const INT4_GROUP: usize = 128;

/// A `[rows, cols]` 4-bit weight (the loader's canonical form, groups of
/// [`INT4_GROUP`], f16-exact scales, zero point 8 as symmetric GPTQ) in
/// `sources` shards.
fn packed_int4(name: &str, sources: &[usize], cols: usize, seed: u64) -> PackedWeight {
    let rows: usize = sources.iter().sum();
    let (wpr, ng) = (cols.div_ceil(8), cols.div_ceil(INT4_GROUP));
    let mut x = seed | 1;
    let tail = match cols % 8 {
        0 => u32::MAX,
        k => (1u32 << (4 * k)) - 1,
    };
    let mut words = Vec::with_capacity(rows * wpr);
    for _ in 0..rows {
        for w in 0..wpr {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            words.push(if w + 1 == wpr {
                x as u32 & tail
            } else {
                x as u32
            });
        }
    }
    let mut o = 0;
    let shards = sources
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            o += n;
            Shard {
                name: format!("{name}.{i}"),
                source: format!("{name}.{i}"),
                row_offset: o - n,
                rows: n,
            }
        })
        .collect();
    PackedWeight {
        name: name.into(),
        dtype: Dtype::I32,
        rows,
        cols,
        data: Vec::new(),
        shards,
        scale: ScaleScheme::Int4(Box::new(Int4Weights {
            group_size: INT4_GROUP,
            words,
            // 2^-7 · (1 + j/8): exact in f16 (the Q4 layout, not Q4F32).
            scales: (0..rows * ng)
                .map(|j| (1.0 + (j % 7) as f32 / 8.0) / 128.0)
                .collect(),
            zeros: vec![8; rows * ng],
        })),
        activation: ActivationQuant::None,
    }
}

/// A `[rows, cols]` weight packed from `sources` tensors, unscaled BF16 or E4M3
/// with one 128×128 block grid per source; `Dtype::I32` stands for 4-bit
/// ([`packed_int4`]).
fn packed(name: &str, dtype: Dtype, sources: &[usize], cols: usize, seed: u64) -> PackedWeight {
    if dtype == Dtype::I32 {
        return packed_int4(name, sources, cols, seed);
    }
    let rows: usize = sources.iter().sum();
    let mut shards = Vec::new();
    let mut segments = Vec::new();
    let mut o = 0;
    for (i, &n) in sources.iter().enumerate() {
        shards.push(Shard {
            name: format!("{name}.{i}"),
            source: format!("{name}.{i}"),
            row_offset: o,
            rows: n,
        });
        let grid = [n.div_ceil(BLOCK), cols.div_ceil(BLOCK)];
        segments.push(BlockSegment {
            row_offset: o,
            rows: n,
            grid,
            scales: (0..grid[0] * grid[1])
                .map(|j| 0.01 + (j % 7) as f32 * 1e-3)
                .collect(),
        });
        o += n;
    }
    PackedWeight {
        name: name.into(),
        dtype,
        rows,
        cols,
        data: fill(dtype, rows * cols, seed),
        shards,
        scale: match dtype {
            Dtype::F8E4M3 => ScaleScheme::Block {
                block: [BLOCK, BLOCK],
                segments,
            },
            _ => ScaleScheme::None,
        },
        activation: ActivationQuant::None,
    }
}

fn format_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F8E4M3 => "FP8-block128",
        Dtype::I32 => "Q4-g128",
        _ => "BF16",
    }
}

/// GPU seconds per launch of `launches` recorded `reps` times into one pass:
/// the median of `samples` submissions after warm-ups. Timestamps where the adapter
/// has them, else wall time of the submission.
struct Timer {
    query: Option<(wgpu::QuerySet, wgpu::Buffer, f64)>,
    /// Submissions timed after the warm-ups.
    samples: usize,
}

impl Timer {
    fn new(ctx: &GpuContext, samples: usize) -> Self {
        let query = ctx.caps.timestamps.then(|| {
            (
                ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("gemv bench"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gemv bench timestamps"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                ctx.queue.get_timestamp_period() as f64 * 1e-9,
            )
        });
        Self { query, samples }
    }

    fn per_launch(&self, ctx: &GpuContext, launches: &[&Dispatch], reps: usize) -> f64 {
        let n = (launches.len() * reps).max(1) as f64;
        let once = || {
            let t0 = std::time::Instant::now();
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("gemv bench"),
                    timestamp_writes: self.query.as_ref().map(|(q, _, _)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: q,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                for _ in 0..reps {
                    for l in launches {
                        l.record(&mut pass);
                    }
                }
            }
            match &self.query {
                Some((q, resolve, period)) => {
                    enc.resolve_query_set(q, 0..2, resolve, 0);
                    ctx.queue.submit([enc.finish()]);
                    let b = ctx.read_bytes(resolve, 0, 16).unwrap();
                    let ts: Vec<u64> = bytemuck::pod_collect_to_vec(&b);
                    ts[1].saturating_sub(ts[0]) as f64 * period / n
                }
                None => {
                    ctx.queue.submit([enc.finish()]);
                    ctx.wait("gemv bench").unwrap();
                    t0.elapsed().as_secs_f64() / n
                }
            }
        };
        // Warm-up: 2 submissions and, on a real GPU, WARM_SECS of this work,
        // so the clocks are up again after the host-side upload of the weight
        // (a few submissions right after a 2 GB upload ran at half speed).
        let start = std::time::Instant::now();
        let mut warm = 0;
        while warm < 2 || (self.samples > 1 && start.elapsed().as_secs_f64() < WARM_SECS) {
            once();
            warm += 1;
        }
        let mut samples: Vec<f64> = (0..self.samples).map(|_| once()).collect();
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }
}

/// Launch repetitions so one timed pass moves about `target` bytes.
fn reps_for(bytes_per_round: u64, target: u64) -> usize {
    (target / bytes_per_round.max(1)).clamp(1, 256) as usize
}

/// `GB/s` and `% of copy` fields.
fn rate_fields(bytes: f64, secs: f64, copy_bps: f64) -> String {
    let bps = bytes / secs.max(1e-12);
    format!(
        "bytes={bytes_rounded} us={secs_1e6:.3} gbps={bps_1e9:.2} copy_pct={copy_bps:.1}",
        bytes_rounded = bytes.round() as u64,
        secs_1e6 = secs * 1e6,
        bps_1e9 = bps / 1e9,
        copy_bps = 100.0 * bps / copy_bps
    )
}

/// Copy kernel bandwidth, bytes read + written per second (as `qwgpu bench --copy-bandwidth`).
fn copy_bandwidth(ctx: &GpuContext, timer: &Timer, max_bytes: u64, target: u64) -> f64 {
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let words = (max_bytes.min(limit) / 4 / 256 * 256).max(256);
    let src = ctx.storage("copy src", words * 4).unwrap();
    let dst = ctx.storage("copy dst", words * 4).unwrap();
    let (from, to) = (
        TensorView::words(&src, 0, words as u32),
        TensorView::words(&dst, 0, words as u32),
    );
    let d = copy::copy_words(ctx, &from, &to).unwrap();
    let moved = 2 * words * 4;
    let reps = reps_for(moved, target);
    // About a second of work first, to bring the clocks up (not on a CPU).
    let start = std::time::Instant::now();
    while !ctx.software && start.elapsed().as_secs_f64() < 1.0 {
        timer.per_launch(ctx, &[&d], reps);
    }
    let secs = timer.per_launch(ctx, &[&d], reps);
    let bps = moved as f64 / secs;
    println!(
        "gemv_copy bytes={moved} us={secs_1e6:.3} gbps={bps_1e9:.2}",
        secs_1e6 = secs * 1e6,
        bps_1e9 = bps / 1e9
    );
    bps
}

/// Which one-token kernel a 4-bit timing runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Int4Kernel {
    /// What `matmul` / `matmul_indexed` pick on this adapter (its `Tuning`).
    Auto,
    /// The 4-bit GEMV in this shape (`None`: the other formats' `mm_vec` /
    /// `mm_vec_ids`, the path before it).
    With(Option<Int4Gemv>),
}

impl Int4Kernel {
    /// `kernel=… [threads=… lanes=… quads=…]` fields.
    fn fields(self) -> String {
        match self {
            Int4Kernel::Auto => "kernel=auto".into(),
            Int4Kernel::With(None) => "kernel=gemv".into(),
            Int4Kernel::With(Some(g)) => format!(
                "kernel=gemv_q4 threads={threads} lanes={lanes} quads={quads} interleave={il}",
                threads = g.threads,
                lanes = g.lanes,
                quads = g.quads,
                il = g.interleave
            ),
        }
    }

    /// The dense one-token launches of `w`.
    fn dense(
        self,
        ctx: &GpuContext,
        w: &GpuWeight,
        args: &MatmulArgs,
        epi: Epilogue,
    ) -> Vec<Dispatch> {
        match self {
            Int4Kernel::With(shape) if w.format.is_int4() => {
                matmul_int4_with(ctx, w, args, None, epi, shape.as_ref()).unwrap()
            }
            _ => matmul(ctx, w, args, epi).unwrap(),
        }
    }

    /// The expert-indexed launches of `w`.
    fn indexed(
        self,
        ctx: &GpuContext,
        w: &GpuWeight,
        args: &IndexedArgs,
        epi: Epilogue,
    ) -> Vec<Dispatch> {
        match self {
            Int4Kernel::With(shape) if w.format.is_int4() => {
                matmul_indexed_int4_with(ctx, w, args, None, epi, shape.as_ref()).unwrap()
            }
            _ => matmul_indexed(ctx, w, args, epi).unwrap(),
        }
    }
}

/// A dense shape's weight in `dtype` uploaded `copies` times (enough to
/// rotate past the L2 cache on a real GPU); (weights, bytes of one copy).
fn upload_copies(ctx: &GpuContext, s: &Shape, dtype: Dtype) -> (Vec<GpuWeight>, u64) {
    let w = packed(
        s.name,
        dtype,
        &s.sources,
        s.cols,
        0x9e37_79b9 ^ s.rows as u64,
    );
    let first = GpuWeight::upload(ctx, &w).unwrap();
    let bytes = first.bytes();
    let copies = if ctx.software {
        1
    } else {
        (ROTATE_BYTES.div_ceil(bytes) as usize).clamp(1, MAX_COPIES)
    };
    let mut weights = vec![first];
    for _ in 1..copies {
        weights.push(GpuWeight::upload(ctx, &w).unwrap());
    }
    (weights, bytes)
}

/// Times one dense shape; returns (bytes, seconds) per launch.
fn bench_dense(
    ctx: &GpuContext,
    timer: &Timer,
    s: &Shape,
    dtype: Dtype,
    x: &wgpu::Buffer,
    target: u64,
    copy_bps: f64,
) -> (f64, f64) {
    let (weights, bytes) = upload_copies(ctx, s, dtype);
    let (b, secs) = time_dense(ctx, timer, s, &weights, x, target, Int4Kernel::Auto);
    println!(
        "gemv model={s_model} shape={s_name} format={dtype_name} rows={s_rows} cols={s_cols} epilogue={s_epilogue:?} count={s_count} {copy_bps}",
        s_model = s.model,
        s_name = s.name,
        dtype_name = format_name(dtype),
        s_rows = s.rows,
        s_cols = s.cols,
        s_epilogue = s.epilogue,
        s_count = s.count,
        copy_bps = rate_fields(b, secs, copy_bps)
    );
    debug_assert_eq!(b, bytes as f64);
    (b, secs)
}

/// Times the one-token matmul of `weights` (copies of shape `s`) with
/// `kernel`; returns (bytes, seconds) per launch.
fn time_dense(
    ctx: &GpuContext,
    timer: &Timer,
    s: &Shape,
    weights: &[GpuWeight],
    x: &wgpu::Buffer,
    target: u64,
    kernel: Int4Kernel,
) -> (f64, f64) {
    let bytes = weights[0].bytes();
    let copies = weights.len();
    let width = if s.epilogue == Epilogue::SwiGlu {
        s.rows / 2
    } else {
        s.rows
    };
    let y = ctx.storage("y", (width * 4) as u64).unwrap();
    ctx.fill_f32(&y, 0.0);
    let args = contiguous(x, &y, 1, s.cols, width);
    let launches: Vec<Dispatch> = weights
        .iter()
        .flat_map(|w| kernel.dense(ctx, w, &args, s.epilogue))
        .collect();
    let refs: Vec<&Dispatch> = launches.iter().collect();
    let secs = timer.per_launch(ctx, &refs, reps_for(bytes * copies as u64, target))
        * refs.len() as f64
        / copies as f64;
    let out = ctx.read_f32(&y, 0, width.min(64)).unwrap();
    assert!(
        out.iter().all(|v| v.is_finite()),
        "{s_model} {s_name}: non-finite output",
        s_model = s.model,
        s_name = s.name
    );
    (bytes as f64, secs)
}

/// Indexed-matmul arguments: x rows `x_stride` apart, y rows `y_stride` apart, `pairs` pairs.
#[allow(clippy::too_many_arguments)]
fn indexed<'a>(
    x: &'a wgpu::Buffer,
    x_stride: usize,
    x_row_div: usize,
    ids: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    y_stride: usize,
    rows_per_expert: usize,
    pairs: usize,
) -> IndexedArgs<'a> {
    IndexedArgs {
        x,
        x_stride: x_stride as u32,
        x_row_div: x_row_div as u32,
        ids,
        ids_offset: 0,
        y,
        y_stride: y_stride as u32,
        pairs: pairs as u32,
        rows_per_expert: rows_per_expert as u32,
    }
}

/// Times the MoE FFN of one token: router GEMV `[E, H]`, top-k routing, the
/// chosen experts' gate_up (SwiGLU) and down, combine into the residual (the
/// shared expert is timed as dense shapes). Rotates over 32 input rows so
/// consecutive steps pick different experts, as consecutive layers do.
fn bench_moe(
    ctx: &GpuContext,
    timer: &Timer,
    m: &MoeShape,
    dtype: Dtype,
    target: u64,
    copy_bps: f64,
) -> (f64, f64) {
    let (bytes, secs) = time_moe(ctx, timer, m, dtype, target, &[Int4Kernel::Auto])[0];
    println!(
        "gemv model={m_model} shape=moe.step format={dtype_name} experts={e} top_k={k} hidden={h} inter={i} count={m_count} {copy_bps}",
        m_model = m.model,
        dtype_name = format_name(dtype),
        e = m.experts,
        k = m.top_k,
        h = m.hidden,
        i = m.inter,
        m_count = m.count,
        copy_bps = rate_fields(bytes, secs, copy_bps)
    );
    (bytes, secs)
}

/// [`bench_moe`]'s step with each of `kernels` for the expert matmuls (the
/// weights uploaded once): (bytes, seconds) per step for each.
fn time_moe(
    ctx: &GpuContext,
    timer: &Timer,
    m: &MoeShape,
    dtype: Dtype,
    target: u64,
    kernels: &[Int4Kernel],
) -> Vec<(f64, f64)> {
    let (h, e, k, i) = (m.hidden, m.experts, m.top_k, m.inter);
    // The router stays BF16 in Qwen's FP8 release.
    let router = GpuWeight::upload(ctx, &packed("moe.router", Dtype::BF16, &[e], h, 7)).unwrap();
    let gate_up = {
        let src: Vec<usize> = (0..2 * e).map(|_| i).collect();
        GpuWeight::upload(ctx, &packed("moe.experts.gate_up", dtype, &src, h, 8)).unwrap()
    };
    let down = {
        let src: Vec<usize> = (0..e).map(|_| h).collect();
        GpuWeight::upload(ctx, &packed("moe.experts.down", dtype, &src, i, 9)).unwrap()
    };
    let f32s = |label: &str, n: usize| ctx.storage(label, (n * 4) as u64).unwrap();
    let (logits, ids, wts) = (f32s("logits", e), f32s("ids", k), f32s("weights", k));
    let (act, out) = (f32s("expert act", k * i), f32s("expert out", k * h));
    let (shared_out, gate_logit, hbuf) = (f32s("shared out", h), f32s("gate", 1), f32s("h", h));
    for b in [&shared_out, &gate_logit, &hbuf] {
        ctx.fill_f32(b, 0.0);
    }
    let mut rng = Rng::new(11);
    let xs: Vec<wgpu::Buffer> = (0..if ctx.software { 2 } else { 32 })
        .map(|_| ctx.upload("x", &rng.normal_vec(h)).unwrap())
        .collect();
    let per_expert = |w: &GpuWeight| (w.bytes() - w.meta.size()) / e as u64;
    // Weights the step reads: the router and k experts' rows (their scales: the
    // part of each table those rows use, small; counted whole per expert share).
    let bytes = router.bytes()
        + k as u64 * (per_expert(&gate_up) + per_expert(&down))
        + k as u64 * (gate_up.meta.size() + down.meta.size()) / e as u64;
    let steps = xs.len() as u64;
    let mut out_times = Vec::with_capacity(kernels.len());
    for &kernel in kernels {
        let mut launches = Vec::new();
        for x in &xs {
            launches.extend(
                matmul(
                    ctx,
                    &router,
                    &contiguous(x, &logits, 1, h, e),
                    Epilogue::Store,
                )
                .unwrap(),
            );
            launches.push(
                moe::moe_route(
                    ctx,
                    &TensorView::f32_rows(&logits, 0, 1, e as u32),
                    &TensorView::words(&ids, 0, k as u32),
                    &TensorView::f32_rows(&wts, 0, 1, k as u32),
                )
                .unwrap(),
            );
            launches.extend(kernel.indexed(
                ctx,
                &gate_up,
                &indexed(x, h, k, &ids, &act, i, 2 * i, k),
                Epilogue::SwiGlu,
            ));
            launches.extend(kernel.indexed(
                ctx,
                &down,
                &indexed(&act, i, 1, &ids, &out, h, h, k),
                Epilogue::Store,
            ));
            launches.push(
                moe::moe_combine(
                    ctx,
                    &TensorView::f32_rows(&out, 0, k as u32, h as u32),
                    &TensorView::f32_rows(&wts, 0, 1, k as u32),
                    &TensorView::f32_rows(&shared_out, 0, 1, h as u32),
                    &TensorView::f32_rows(&gate_logit, 0, 1, 1),
                    &TensorView::f32_rows(&hbuf, 0, 1, h as u32),
                )
                .unwrap(),
            );
        }
        let refs: Vec<&Dispatch> = launches.iter().collect();
        let secs = timer.per_launch(ctx, &refs, reps_for(bytes * steps, target))
            * refs.len() as f64
            / steps as f64;
        let got = ctx.read_f32(&hbuf, 0, h.min(64)).unwrap();
        assert!(
            got.iter().all(|v| v.is_finite()),
            "MoE step: non-finite output"
        );
        out_times.push((bytes as f64, secs));
    }
    out_times
}

/// A context without runtime checks (as the engine runs), and whether its
/// adapter is a software one (shapes scaled down).
fn bench_context() -> (GpuContext, bool) {
    let ctx = GpuContext::new(&ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    let software = ctx.software || ctx.info.device_type == wgpu::DeviceType::Cpu;
    (ctx, software)
}

/// Every shape in BF16 and FP8 block, one line each, then one summary line per
/// model and format. See the module docs for the output.
#[test]
#[ignore]
fn gemv_bandwidth() {
    bandwidth_of(&[Dtype::BF16, Dtype::F8E4M3]);
}

/// [`gemv_bandwidth`] of 4-bit weights (`format=Q4-g128`: GPTQ-Int4's
/// groups of 128, every projection and the routed experts 4-bit; the MoE
/// router stays BF16), against the same copy bandwidth: bytes read are the
/// packed words + the scale table (4 bytes per group of 128).
#[test]
#[ignore]
fn gemv_int4_bandwidth() {
    bandwidth_of(&[Dtype::I32]);
}

/// The one-token kernels [`gemv_int4_shapes`] times: what `matmul` picks,
/// the path before the 4-bit GEMV, and the 4-bit GEMV in 128 or 256
/// threads, 32..256 lanes per row (rows of fewer chunks take fewer), 1, 2 or
/// 4 quads per thread, chunks or interleaved words.
fn int4_kernels() -> Vec<Int4Kernel> {
    let mut kernels = vec![Int4Kernel::Auto, Int4Kernel::With(None)];
    for interleave in [false, true] {
        for threads in [128, 256] {
            for lanes in [32, 64, 128, 256] {
                if lanes > threads {
                    continue;
                }
                for quads in [1, 2, 4] {
                    kernels.push(Int4Kernel::With(Some(Int4Gemv {
                        threads,
                        lanes,
                        quads,
                        interleave,
                    })));
                }
            }
        }
    }
    kernels
}

/// (threads, lanes, quads, interleave) of a 4-bit GEMV launch.
type Int4Key = (u32, u32, u32, bool);

/// The shape `kernel` runs on rows of `chunks` 32-column chunks (the 4-bit
/// GEMV brings lanes down to the row's chunks, rounded up to a power of two,
/// not below 16): two kernels of one key time the same launches.
fn int4_key(kernel: Int4Kernel, chunks: usize) -> Option<Int4Key> {
    match kernel {
        Int4Kernel::With(Some(g)) => {
            let lanes = g.lanes.min(chunks.max(16).next_power_of_two() as u32);
            Some((g.threads, lanes, g.quads, g.interleave))
        }
        _ => None,
    }
}

/// The 4-bit one-token GEMV's shapes (`Tuning::int4_gemv`): every dense
/// shape of the 0.8B, 9B and 35B-A3B decode step and the 35B-A3B MoE step
/// (router BF16, experts 4-bit, `format=Q4-g128` as [`gemv_int4_bandwidth`])
/// with each of [`int4_kernels`]: `kernel=auto` (what `matmul` runs on this
/// adapter: the lines of `gemv_int4_bandwidth`), `kernel=gemv` (the
/// one-token kernel of the other formats, the path before the 4-bit GEMV)
/// and `kernel=gemv_q4 threads=… lanes=… quads=… interleave=…`.
///
/// Output (`key=value` fields; % of the copy kernel's bandwidth in the same run):
/// - `gemv_q4 model=M shape=S format=Q4-g128 rows=R cols=C epilogue=E count=N kernel=… bytes=B us=U gbps=G copy_pct=P`
///   per shape and kernel (`shape=moe.step`: the MoE FFN of one token);
/// - `gemv_q4_summary model=M format=Q4-g128 kernel=… bytes=B us=U gbps=G copy_pct=P`:
///   a decode token's GEMVs per model and kernel (Σ N·bytes ÷ Σ N·µs);
/// - `gemv_q4_best model=M kernel=… copy_pct=P`: the fastest kernel per model;
/// - `gemv_q4_best_overall kernel=… mean_slowdown=S`: the 4-bit GEMV shape
///   whose models' step times are on average the nearest to each model's
///   best (S = mean of time ÷ best time): the candidate for `Tuning::int4_gemv`.
///
/// `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture --exact gemv_bench::gemv_int4_shapes`
#[test]
#[ignore]
fn gemv_int4_shapes() {
    let Bench {
        ctx,
        timer,
        target,
        copy_bps,
        dense,
        moe: moe_shape,
        x,
    } = bench_setup();
    let kernels = int4_kernels();
    // (model, kernel index) -> (Σ count·bytes, Σ count·seconds).
    let mut sums: Vec<(&str, usize, f64, f64)> = Vec::new();
    let mut add = |model: &'static str, k: usize, count: usize, (b, t): (f64, f64)| match sums
        .iter_mut()
        .find(|e| e.0 == model && e.1 == k)
    {
        Some(e) => {
            e.2 += count as f64 * b;
            e.3 += count as f64 * t;
        }
        None => sums.push((model, k, count as f64 * b, count as f64 * t)),
    };
    for s in &dense {
        let (weights, _) = upload_copies(&ctx, s, Dtype::I32);
        let chunks = s.cols.div_ceil(32);
        let mut seen: Vec<(Int4Key, (f64, f64))> = Vec::new();
        for (k, &kernel) in kernels.iter().enumerate() {
            let key = int4_key(kernel, chunks);
            let known = key.and_then(|key| seen.iter().find(|e| e.0 == key).map(|e| e.1));
            let (b, secs) = known.unwrap_or_else(|| {
                let r = time_dense(&ctx, &timer, s, &weights, &x, target, kernel);
                if let Some(key) = key {
                    seen.push((key, r));
                }
                r
            });
            add(s.model, k, s.count, (b, secs));
            println!(
                "gemv_q4 model={s_model} shape={s_name} format=Q4-g128 rows={s_rows} cols={s_cols} epilogue={s_epilogue:?} count={s_count} {kernel_fields} {rate}",
                s_model = s.model,
                s_name = s.name,
                s_rows = s.rows,
                s_cols = s.cols,
                s_epilogue = s.epilogue,
                s_count = s.count,
                kernel_fields = kernel.fields(),
                rate = rate_fields(b, secs, copy_bps)
            );
        }
    }
    let m = &moe_shape;
    let times = time_moe(&ctx, &timer, m, Dtype::I32, target, &kernels);
    for (k, (&kernel, &(b, secs))) in kernels.iter().zip(&times).enumerate() {
        add(m.model, k, m.count, (b, secs));
        println!(
            "gemv_q4 model={m_model} shape=moe.step format=Q4-g128 experts={e} top_k={top_k} hidden={h} inter={i} count={m_count} {kernel_fields} {rate}",
            m_model = m.model,
            e = m.experts,
            top_k = m.top_k,
            h = m.hidden,
            i = m.inter,
            m_count = m.count,
            kernel_fields = kernel.fields(),
            rate = rate_fields(b, secs, copy_bps)
        );
    }
    let mut models: Vec<&str> = Vec::new();
    for e in &sums {
        if !models.contains(&e.0) {
            models.push(e.0);
        }
    }
    // Per kernel: Σ over models of its step time ÷ the model's best.
    let mut slowdown = vec![0.0f64; kernels.len()];
    for model in &models {
        let rows: Vec<&(&str, usize, f64, f64)> = sums.iter().filter(|e| e.0 == *model).collect();
        for e in &rows {
            println!(
                "gemv_q4_summary model={model} format=Q4-g128 {kernel_fields} {rate}",
                kernel_fields = kernels[e.1].fields(),
                rate = rate_fields(e.2, e.3, copy_bps)
            );
        }
        if let Some(best) = rows.iter().min_by(|a, b| a.3.total_cmp(&b.3)) {
            println!(
                "gemv_q4_best model={model} {kernel_fields} copy_pct={pct:.1}",
                kernel_fields = kernels[best.1].fields(),
                pct = 100.0 * (best.2 / best.3) / copy_bps
            );
            for e in &rows {
                slowdown[e.1] += e.3 / best.3 / models.len() as f64;
            }
        }
    }
    let overall = (0..kernels.len())
        .filter(|&k| matches!(kernels[k], Int4Kernel::With(Some(_))))
        .min_by(|&a, &b| slowdown[a].total_cmp(&slowdown[b]));
    if let Some(k) = overall {
        println!(
            "gemv_q4_best_overall {kernel_fields} mean_slowdown={s:.3}",
            kernel_fields = kernels[k].fields(),
            s = slowdown[k]
        );
    }
}

/// What the bandwidth benchmarks open with: the context (adapter line
/// printed), the timer, the bytes one timed pass moves (~1.5 ms on the H100;
/// one launch a pass on a software adapter), the copy kernel's bandwidth in
/// this run, the shapes (scaled down on a software adapter), one x row as
/// wide as the widest shape.
struct Bench {
    ctx: GpuContext,
    timer: Timer,
    target: u64,
    copy_bps: f64,
    dense: Vec<Shape>,
    moe: MoeShape,
    x: wgpu::Buffer,
}

fn bench_setup() -> Bench {
    let (ctx, software) = bench_context();
    println!(
        "adapter: {ctx_describe} ({shapes})",
        ctx_describe = ctx.describe(),
        shapes = if software {
            "software: shapes scaled down 16x per side"
        } else {
            "real shapes"
        }
    );
    let (div, target, copy_max, samples) = if software {
        (16, 1, 4 << 20, 1)
    } else {
        (1, 4 << 30, 1 << 30, 7)
    };
    let timer = Timer::new(&ctx, samples);
    let copy_bps = copy_bandwidth(&ctx, &timer, copy_max, target);
    let (dense, moe) = shapes(div);
    let mut rng = Rng::new(5);
    let widest = dense.iter().map(|s| s.cols).max().unwrap_or(1);
    let x = ctx.upload("x", &rng.normal_vec(widest)).unwrap();
    Bench {
        ctx,
        timer,
        target,
        copy_bps,
        dense,
        moe,
        x,
    }
}

/// The GEMV bandwidth lines of every shape in each of `formats`.
fn bandwidth_of(formats: &[Dtype]) {
    let Bench {
        ctx,
        timer,
        target,
        copy_bps,
        dense,
        moe: moe_shape,
        x,
    } = bench_setup();
    for &dtype in formats {
        // (model, Σ count·bytes, Σ count·seconds)
        let mut sums: Vec<(&str, f64, f64)> = Vec::new();
        let mut add = |model: &'static str, count: usize, (b, t): (f64, f64)| match sums
            .iter_mut()
            .find(|s| s.0 == model)
        {
            Some(s) => {
                s.1 += count as f64 * b;
                s.2 += count as f64 * t;
            }
            None => sums.push((model, count as f64 * b, count as f64 * t)),
        };
        for s in &dense {
            add(
                s.model,
                s.count,
                bench_dense(&ctx, &timer, s, dtype, &x, target, copy_bps),
            );
        }
        add(
            moe_shape.model,
            moe_shape.count,
            bench_moe(&ctx, &timer, &moe_shape, dtype, target, copy_bps),
        );
        for (model, b, t) in sums {
            println!(
                "gemv_summary model={model} format={dtype_name} {rate}",
                dtype_name = format_name(dtype),
                rate = rate_fields(b, t, copy_bps)
            );
        }
    }
}

/// The 9B LM head (2 GB BF16, the one weight above the 1 GiB piece cap) with
/// pieces of 128 MiB to 1 GiB, each size uploaded three times (fresh
/// allocations): it streamed at 1.8 TB/s in some runs and 2.9 in others.
/// Output: `lm_head_pieces piece_mib=P run=R launches=L us=U gbps=G`.
#[test]
#[ignore]
fn lm_head_piece_sizes() {
    let (ctx, software) = bench_context();
    let (rows, cols, target, samples) = if software {
        (4096, 256, 1, 1)
    } else {
        (248_320, 4096, 4u64 << 30, 7)
    };
    let timer = Timer::new(&ctx, samples);
    let w = packed("lm_head", Dtype::BF16, &[rows], cols, 3);
    let mut rng = Rng::new(9);
    let x = ctx.upload("x", &rng.normal_vec(cols)).unwrap();
    let y = ctx.storage("y", (rows * 4) as u64).unwrap();
    let args = contiguous(&x, &y, 1, cols, rows);
    for mib in [128u64, 256, 512, 1024] {
        let limit = if software { mib << 10 } else { mib << 20 };
        for run in 0..3 {
            let g = GpuWeight::upload_with_piece_limit(&ctx, &w, limit).unwrap();
            let launches = matmul(&ctx, &g, &args, Epilogue::Store).unwrap();
            let refs: Vec<&Dispatch> = launches.iter().collect();
            let bytes = g.bytes();
            let secs = timer.per_launch(&ctx, &refs, reps_for(bytes, target)) * refs.len() as f64;
            println!(
                "lm_head_pieces piece_mib={mib} run={run} launches={refs_len} us={secs_1e6:.1} gbps={gb_per_s:.1}",
                refs_len = refs.len(),
                secs_1e6 = secs * 1e6,
                gb_per_s = bytes as f64 / secs / 1e9
            );
        }
    }
}

/// Which GEMV kernel a small-T timing runs.
#[derive(Clone, Copy)]
enum Gemv {
    /// What `matmul` picks on this adapter (its `Tuning`).
    Auto,
    /// `matmul_gemv_with`: the small-T kernel in this shape, or (`None`) the
    /// one-token kernel in blocks of up to 8 tokens (the path before it).
    With(Option<SmallT>),
}

impl Gemv {
    /// `kernel=… threads=… quads=… max_tokens=… prefetch=…` fields of a
    /// `t`-token matmul.
    fn fields(self, ctx: &GpuContext, t: usize) -> String {
        let shape = match self {
            Gemv::Auto => ctx.tuning.small_t,
            Gemv::With(s) => s,
        };
        let auto = if matches!(self, Gemv::Auto) {
            "auto"
        } else {
            "forced"
        };
        match shape {
            _ if t == 1 && matches!(self, Gemv::Auto | Gemv::With(None)) => {
                format!("kernel=gemv choice={auto}")
            }
            Some(s) => format!(
                "kernel=gemv_t choice={auto} threads={threads} quads={quads} max_tokens={max_tokens} prefetch={prefetch} chunk_scale={chunk_scale}",
                threads = s.threads,
                quads = s.quads,
                max_tokens = s.max_tokens,
                prefetch = s.prefetch,
                chunk_scale = s.chunk_scale
            ),
            None => format!("kernel=gemv_blocks8 choice={auto}"),
        }
    }
}

/// Seconds of one `t`-token matmul of `weights` (one copy each launch) with `kernel`.
#[allow(clippy::too_many_arguments)]
fn time_small_t(
    ctx: &GpuContext,
    timer: &Timer,
    s: &Shape,
    weights: &[GpuWeight],
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    t: usize,
    kernel: Gemv,
    target: u64,
) -> f64 {
    let width = if s.epilogue == Epilogue::SwiGlu {
        s.rows / 2
    } else {
        s.rows
    };
    let args = contiguous(x, y, t, s.cols, width);
    let launches: Vec<Dispatch> = weights
        .iter()
        .flat_map(|w| match kernel {
            Gemv::Auto => matmul(ctx, w, &args, s.epilogue).unwrap(),
            Gemv::With(shape) => {
                matmul_gemv_with(ctx, w, &args, s.epilogue, shape.as_ref()).unwrap()
            }
        })
        .collect();
    let refs: Vec<&Dispatch> = launches.iter().collect();
    let bytes = weights[0].bytes() * weights.len() as u64;
    let secs = timer.per_launch(ctx, &refs, reps_for(bytes, target)) * refs.len() as f64
        / weights.len() as f64;
    let out = ctx.read_f32(y, 0, (width * t).min(256)).unwrap();
    assert!(
        out.iter().all(|v| v.is_finite()),
        "{s_model} {s_name} T = {t}: non-finite output",
        s_model = s.model,
        s_name = s.name
    );
    secs
}

/// Token counts of the small-T benchmarks.
const SMALL_TS: [usize; 5] = [1, 2, 4, 8, 16];

/// Opens the benchmark context, prints the adapter line and measures the copy
/// bandwidth: (context, timer, 9B shapes, per-pass bytes, copy bytes/s).
fn small_t_setup() -> (GpuContext, Timer, Vec<Shape>, u64, f64) {
    let b = bench_setup();
    let nine: Vec<Shape> = b.dense.into_iter().filter(|s| s.model == "9B").collect();
    (b.ctx, b.timer, nine, b.target, b.copy_bps)
}

/// The 9B decode step's dense GEMVs at T = 1, 2, 4, 8, 16 tokens, BF16 and
/// FP8 block: what `matmul` runs on this adapter (`choice=auto`) and the
/// earlier path (the one-token kernel in blocks of 8, `kernel=gemv_blocks8`).
/// GB/s counts the weight bytes once per launch (each kernel reads them once
/// per token block), so at equal GB/s T tokens cost what one does.
///
/// Output (`key=value` fields):
/// - `gemv_t model=9B shape=S format=F rows=R cols=C epilogue=E count=N t=T kernel=K choice=… [shape fields] bytes=B us=U gbps=G copy_pct=P t1_pct=Q`:
///   one shape; Q = this GB/s ÷ the same shape's T = 1 GB/s (`matmul` at T = 1).
/// - `gemv_t_summary model=9B format=F t=T kernel=K choice=… bytes=B us=U gbps=G copy_pct=P t1_pct=Q`:
///   the whole decode step's GEMVs (Σ N·bytes ÷ Σ N·µs).
///
/// `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture --exact gemv_bench::gemv_small_t`
#[test]
#[ignore]
fn gemv_small_t() {
    small_t_of(&[Dtype::BF16, Dtype::F8E4M3]);
}

/// [`gemv_small_t`] of 4-bit weights (`format=Q4-g128`, as [`gemv_int4_bandwidth`]).
#[test]
#[ignore]
fn gemv_int4_small_t() {
    small_t_of(&[Dtype::I32]);
}

/// The small-T lines of the 9B step's GEMVs in each of `formats`.
fn small_t_of(formats: &[Dtype]) {
    let (ctx, timer, nine, target, copy_bps) = small_t_setup();
    let widest = nine.iter().map(|s| s.cols).max().unwrap_or(1);
    let tallest = nine.iter().map(|s| s.rows).max().unwrap_or(1);
    let t_max = SMALL_TS[SMALL_TS.len() - 1];
    let mut rng = Rng::new(5);
    let x = ctx.upload("x", &rng.normal_vec(widest * t_max)).unwrap();
    let y = ctx.storage("y", (tallest * t_max * 4) as u64).unwrap();
    ctx.fill_f32(&y, 0.0);
    let kernels = [Gemv::Auto, Gemv::With(None)];
    for &dtype in formats {
        // [t index][kernel] (Σ count·bytes, Σ count·seconds), and the T = 1 sums.
        let mut sums = vec![[(0.0f64, 0.0f64); 2]; SMALL_TS.len()];
        let mut t1_sum = (0.0f64, 0.0f64);
        for s in &nine {
            let (weights, bytes) = upload_copies(&ctx, s, dtype);
            let bytes = bytes as f64;
            let n = s.count as f64;
            let t1 = time_small_t(&ctx, &timer, s, &weights, &x, &y, 1, Gemv::Auto, target);
            t1_sum.0 += n * bytes;
            t1_sum.1 += n * t1;
            for (ti, &t) in SMALL_TS.iter().enumerate() {
                for (ki, &kernel) in kernels.iter().enumerate() {
                    if t == 1 && ki > 0 {
                        continue;
                    }
                    let secs = if t == 1 {
                        t1
                    } else {
                        time_small_t(&ctx, &timer, s, &weights, &x, &y, t, kernel, target)
                    };
                    sums[ti][ki].0 += n * bytes;
                    sums[ti][ki].1 += n * secs;
                    println!(
                        "gemv_t model={s_model} shape={s_name} format={dtype_name} rows={s_rows} cols={s_cols} epilogue={s_epilogue:?} count={s_count} t={t} {kernel_fields} {rate} t1_pct={t1_pct:.1}",
                        s_model = s.model,
                        s_name = s.name,
                        dtype_name = format_name(dtype),
                        s_rows = s.rows,
                        s_cols = s.cols,
                        s_epilogue = s.epilogue,
                        s_count = s.count,
                        kernel_fields = kernel.fields(&ctx, t),
                        rate = rate_fields(bytes, secs, copy_bps),
                        t1_pct = 100.0 * t1 / secs
                    );
                }
            }
        }
        for (ti, &t) in SMALL_TS.iter().enumerate() {
            for (ki, &kernel) in kernels.iter().enumerate() {
                let (b, secs) = sums[ti][ki];
                if secs == 0.0 {
                    continue;
                }
                let t1_pct = 100.0 * (b / secs) / (t1_sum.0 / t1_sum.1);
                println!(
                    "gemv_t_summary model=9B format={dtype_name} t={t} {kernel_fields} {rate} t1_pct={t1_pct:.1}",
                    dtype_name = format_name(dtype),
                    kernel_fields = kernel.fields(&ctx, t),
                    rate = rate_fields(b, secs, copy_bps)
                );
            }
        }
    }
}

/// The small-T kernel's workgroup shapes (quads 1..8, 128 or 256 threads,
/// prefetch on and off; at T = 16 also blocks of 8 tokens; FP8 also with
/// chunk scales) on four 9B shapes
/// (the largest row count, the longest rows, a square one, SwiGLU), BF16
/// and FP8 block, T = 4, 8, 16, to choose `Tuning::small_t` for an adapter.
/// Output: `gemv_t_shape model=9B shape=S format=F t=T kernel=gemv_t … gbps=G t1_pct=Q`
/// lines (Q against the same shape's `matmul` at T = 1), then per format and
/// T the best shape by Σ count·µs over the four shapes:
/// `gemv_t_best format=F t=T threads=… quads=… max_tokens=… prefetch=… chunk_scale=… us=U`.
///
/// `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture --exact gemv_bench::gemv_small_t_shapes`
#[test]
#[ignore]
fn gemv_small_t_shapes() {
    let (ctx, timer, nine, target, copy_bps) = small_t_setup();
    let picked: Vec<&Shape> = nine
        .iter()
        .filter(|s| {
            ["gdn.in_proj_qkvz", "mlp.down", "attn.o_proj", "mlp.gate_up"].contains(&s.name)
        })
        .collect();
    let widest = picked.iter().map(|s| s.cols).max().unwrap_or(1);
    let tallest = picked.iter().map(|s| s.rows).max().unwrap_or(1);
    let mut rng = Rng::new(6);
    let x = ctx.upload("x", &rng.normal_vec(widest * 16)).unwrap();
    let y = ctx.storage("y", (tallest * 16 * 4) as u64).unwrap();
    ctx.fill_f32(&y, 0.0);
    let mut configs = Vec::new();
    for quads in [1, 2, 4, 8] {
        for threads in [128, 256] {
            for prefetch in [true, false] {
                configs.push(SmallT {
                    threads,
                    quads,
                    max_tokens: 16,
                    prefetch,
                    chunk_scale: false,
                });
            }
        }
    }
    for dtype in [Dtype::BF16, Dtype::F8E4M3] {
        // (t, config) -> Σ count·seconds over the picked shapes.
        let mut totals: Vec<(usize, SmallT, f64)> = Vec::new();
        for s in &picked {
            let (weights, bytes) = upload_copies(&ctx, s, dtype);
            let t1 = time_small_t(&ctx, &timer, s, &weights, &x, &y, 1, Gemv::Auto, target);
            for t in [4usize, 8, 16] {
                let mut cs = configs.clone();
                if t == 16 {
                    cs.extend(configs.iter().map(|c| SmallT {
                        max_tokens: 8,
                        ..*c
                    }));
                }
                // Chunk scales: the FP8 blocks' one multiply per chunk and token.
                if dtype == Dtype::F8E4M3 {
                    cs.extend(configs.iter().map(|c| SmallT {
                        chunk_scale: true,
                        ..*c
                    }));
                }
                for c in cs {
                    let kernel = Gemv::With(Some(c));
                    let secs = time_small_t(&ctx, &timer, s, &weights, &x, &y, t, kernel, target);
                    match totals.iter_mut().find(|e| e.0 == t && e.1 == c) {
                        Some(e) => e.2 += s.count as f64 * secs,
                        None => totals.push((t, c, s.count as f64 * secs)),
                    }
                    println!(
                        "gemv_t_shape model={s_model} shape={s_name} format={dtype_name} t={t} {kernel_fields} {rate} t1_pct={t1_pct:.1}",
                        s_model = s.model,
                        s_name = s.name,
                        dtype_name = format_name(dtype),
                        kernel_fields = kernel.fields(&ctx, t),
                        rate = rate_fields(bytes as f64, secs, copy_bps),
                        t1_pct = 100.0 * t1 / secs
                    );
                }
            }
        }
        for t in [4usize, 8, 16] {
            if let Some((_, c, secs)) = totals
                .iter()
                .filter(|e| e.0 == t)
                .min_by(|a, b| a.2.total_cmp(&b.2))
            {
                println!(
                    "gemv_t_best format={dtype_name} t={t} threads={threads} quads={quads} max_tokens={max_tokens} prefetch={prefetch} chunk_scale={chunk_scale} us={us:.3}",
                    dtype_name = format_name(dtype),
                    threads = c.threads,
                    quads = c.quads,
                    max_tokens = c.max_tokens,
                    prefetch = c.prefetch,
                    chunk_scale = c.chunk_scale,
                    us = secs * 1e6
                );
            }
        }
    }
}

/// The one-token GEMV of 4-bit weights (`format=Q4-g128`) on the 9B shapes:
/// `matmul` (`kernel=gemv choice=auto`: the 4-bit GEMV in the adapter's
/// [`Int4Gemv`] shape) against the small-T kernel at T = 1 with 1..8 quads
/// per workgroup (`matmul_gemv_with`). [`gemv_int4_shapes`] sweeps the 4-bit
/// GEMV's own shapes and the path before it.
///
/// Output: `gemv_int4_t1 model=9B shape=S format=Q4-g128 kernel=… bytes=B us=U gbps=G copy_pct=P`
/// per shape and kernel, then `gemv_int4_t1_summary model=9B format=Q4-g128 kernel=… bytes=B us=U gbps=G copy_pct=P`
/// per kernel over the decode step (Σ N·bytes ÷ Σ N·µs).
///
/// `cargo test --release -p qwgpu-kernels --test kernels -- --include-ignored --nocapture --exact gemv_bench::gemv_int4_one_token_shapes`
#[test]
#[ignore]
fn gemv_int4_one_token_shapes() {
    let (ctx, timer, nine, target, copy_bps) = small_t_setup();
    let widest = nine.iter().map(|s| s.cols).max().unwrap_or(1);
    let tallest = nine.iter().map(|s| s.rows).max().unwrap_or(1);
    let mut rng = Rng::new(5);
    let x = ctx.upload("x", &rng.normal_vec(widest)).unwrap();
    let y = ctx.storage("y", (tallest * 4) as u64).unwrap();
    ctx.fill_f32(&y, 0.0);
    let mut kernels = vec![Gemv::Auto];
    for threads in [128, 256] {
        for quads in [1, 2, 4, 8] {
            for prefetch in [false, true] {
                kernels.push(Gemv::With(Some(SmallT {
                    threads,
                    quads,
                    max_tokens: 1,
                    prefetch,
                    chunk_scale: false,
                })));
            }
        }
    }
    // Per kernel: (Σ count·bytes, Σ count·seconds).
    let mut sums = vec![(0.0f64, 0.0f64); kernels.len()];
    for s in &nine {
        let (weights, bytes) = upload_copies(&ctx, s, Dtype::I32);
        for (k, &kernel) in kernels.iter().enumerate() {
            let secs = time_small_t(&ctx, &timer, s, &weights, &x, &y, 1, kernel, target);
            sums[k].0 += s.count as f64 * bytes as f64;
            sums[k].1 += s.count as f64 * secs;
            println!(
                "gemv_int4_t1 model={s_model} shape={s_name} format=Q4-g128 {kernel_fields} {rate}",
                s_model = s.model,
                s_name = s.name,
                kernel_fields = kernel.fields(&ctx, 1),
                rate = rate_fields(bytes as f64, secs, copy_bps)
            );
        }
    }
    for (k, &kernel) in kernels.iter().enumerate() {
        println!(
            "gemv_int4_t1_summary model=9B format=Q4-g128 {kernel_fields} {rate}",
            kernel_fields = kernel.fields(&ctx, 1),
            rate = rate_fields(sums[k].0, sums[k].1, copy_bps)
        );
    }
}
