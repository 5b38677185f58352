//! Matmul kernels `y = x · Wᵀ` with `W` a [`GpuWeight`] read in its stored
//! format (F32, BF16, F16, FP8 E4M3/E5M2, 4-bit [`int4`](crate::int4)) and its
//! scale table, f32 accumulation.
//!
//! 4-bit weights run on every path below: the vector kernels subtract the
//! group's zero point from each decoded nibble (exact small integers) and
//! multiply the chunk's partial sums by its scale; the tile and grouped
//! GEMMs stage `(q − zero) · scale` in f32; the tensor-core GEMM takes them
//! only in its plain f16 variant (`f16_matmul`, f16 scales).
//!
//! Paths, chosen by the number of tokens `T`:
//! - `T = 1` (`shaders/matmul_vec.wgsl`, `mm_vec`): GEMV. A workgroup of
//!   64–256 threads (one per 16-byte chunk of a row, at most 256; 128 where
//!   that makes a launch one wave instead of two, see `vec_workgroup`) owns 4
//!   weight rows; every thread strides over the columns with
//!   `vec4<u32>` loads (16 FP8 / 8 BF16 values) and decodes each chunk once:
//!   decode is bandwidth-bound and this is what reaches it
//!   (`wgsl-kernels.md` §2.1). x rows whose offset and stride are multiples of
//!   4 load as `vec4<f32>`. [`matmul_normed`] fuses the RMSNorm of x (decode:
//!   no norm launch). The partial sums are reduced in shared memory, one
//!   kernel for every device: the subgroup reduce file measured ~4× slower on
//!   lavapipe, and subgroups gain ~1% on the H100 GEMV.
//! - `T = 1` of 4-bit weights in groups of whole 32-column chunks (or one
//!   per row) (`shaders/matmul_q4.wgsl`, `mm_q4`, module `matmul_q4.rs`):
//!   the 4-bit GEMV. Teams of threads stride over a row's chunks and each
//!   thread keeps several 4-row quads' loads in flight with the chunk's x
//!   values loaded once for all of them; its shape is the adapter's
//!   [`Tuning::int4_gemv`](crate::Tuning). The MoE decode's expert-indexed
//!   GEMV of such weights (`mm_q4_ids`) is the same kernel per pair.
//! - `T = 2..=16` (`shaders/matmul_vec_t.wgsl`, `mm_vec_t`, module
//!   `matmul_vec_t.rs`): the small-T GEMV (batched decode, speculative
//!   verification). Each weight chunk is decoded once for all the tokens of a
//!   block (up to 16, one vec4 accumulator per token in registers), and a
//!   workgroup holds several 4-row quads whose threads share their x loads;
//!   its shape is the adapter's [`Tuning::small_t`](crate::Tuning). With no
//!   small-T shape (`small_t: None`) these `T` run `mm_vec` in blocks of up
//!   to 8 tokens (a `mat4x4` accumulator per 4 tokens), as before it existed.
//!   Fused norm and epilogues as the one-token GEMV.
//! - `T > 16` (`shaders/matmul_tile.wgsl`, `mm_tile`): register-tiled GEMM,
//!   64 tokens × 64 weight rows per workgroup, 4×4 per thread; W is decoded
//!   and scaled to f32 while it is staged in workgroup memory (16 KiB in all,
//!   WebGPU's default limit).
//! - `T > 16` with cooperative matrices (`shaders/matmul_coop.wgsl`,
//!   `mm_coop`, module `matmul_coop.rs`): 128 × 128 tiles on tensor cores,
//!   f32 accumulators. Auto runs its exact variant (x split into two f16
//!   halves after a per-row power-of-two scale; results as the f32 GEMM's)
//!   where the weight is exact in f16 (BF16, F16, E4M3 with row-constant
//!   scales), the plain f16 variant everywhere it fits with
//!   [`ContextOptions::f16_matmul`](crate::ContextOptions::f16_matmul), else
//!   the scalar tile kernel (H100, 4096² BF16 × T = 4096: exact 42, plain
//!   77, scalar 15.5 TFLOP/s). [`matmul_with`] forces a path (tests,
//!   benchmarks).
//! - `T > 16` with cooperative matrices, ahead of `mm_coop` where it takes
//!   the weight (BF16, F16, E4M3, E5M2 with scales constant along rows)
//!   (`shaders/matmul_fast_x.wgsl` then `shaders/matmul_coop_fast.wgsl`,
//!   module [`coop_fast`]): a pre-pass rounds x once to f16 (per-row power of
//!   two) into a scratch, and a GEMM on `coop_peak`'s tiling stages those f16
//!   words and the weight decoded to f16;
//!   [`MatmulPrecision::Fast`](crate::MatmulPrecision::Fast) one f16 part,
//!   exact precision two (hi + lo, as `mm_coop`'s exact variant). Behind
//!   [`Tuning::coop_fast_gemm`](crate::Tuning::coop_fast_gemm) and
//!   [`Tuning::coop_fast_exact`](crate::Tuning::coop_fast_exact).
//! - `T >= 128` ([`Tuning::coop_f16_min_t`](crate::Tuning::coop_f16_min_t))
//!   with cooperative matrices, ahead of both where it takes the weight (BF16,
//!   F16, E4M3, E5M2; FP8 128 × 128 blocks in fast precision only) (module
//!   [`coop_f16`]: `shaders/matmul_fast_x.wgsl`, `shaders/matmul_w16.wgsl`,
//!   then `shaders/matmul_coop_f16.wgsl`): pre-passes write x and the
//!   launch's weight rows as padded f16 rows with per-row power-of-two
//!   scales, and `coop_peak`'s tiling multiplies them with no decode or
//!   bounds checks in its main loop (exact precision: x as hi + lo, two
//!   products). Behind [`Tuning::coop_f16`](crate::Tuning::coop_f16), on by
//!   default since it passed on hardware (`QWGPU_COOP_F16=0` turns it off).
//! - `T = 17..=64` (from [`Tuning::skinny_min_t`](crate::Tuning::skinny_min_t))
//!   with cooperative matrices (`shaders/matmul_coop_skinny.wgsl`,
//!   `mm_coop_skinny`, module `matmul_coop_skinny.rs`): the skinny
//!   tensor-core matmul, bound by the weight bytes (a workgroup owns 32–128
//!   weight rows and all the tokens, each weight read once); it replaces the
//!   small-T GEMV and the GEMMs there for weights exact in f16 with
//!   row-constant scales or FP8's 128 × 128 blocks (applied to each block's
//!   partial sums in f32; every weight with `f16_matmul`), fused norm
//!   included, unless [`Tuning::skinny`](crate::Tuning::skinny) is off.
//!   [`matmul_skinny_with`] forces it; [`decode_block_tokens`] tells batched
//!   decode how many sessions one matmul should take.
//! - MoE ([`matmul_indexed`], `mm_vec_ids`): the vector path with an expert id
//!   per pair; a workgroup takes up to 8 consecutive pairs and reads an
//!   expert's rows once per run of equal ids (so sorted ids are faster).
//!
//! Measured on the H100 (Vulkan, trusted modules, GPU timestamps): BF16 GEMV
//! `[16384, 4096]` 50 µs = 2.68 TB/s (80% of 3.35); E4M3 + 128×128 blocks
//! `[16384, 8192]` 55 µs = 2.45 TB/s; BF16 T = 2 / 4 / 8 / 16 on `mm_vec`
//! (before the small-T kernel): 54 / 61 / 109 / 214 µs; GEMM 4096² × T = 4096: 13–16 TFLOP/s; T = 17: 424 µs (64-token
//! tiles leave most of the GPU idle: a tuning item); MoE E4M3 top-8 decode
//! (8 experts of `[1536, 2048]`, SwiGLU) 30 µs.
//!
//! Scales: the kernels read `scale(r, c)` from the weight's table. Per-row
//! schemes (unscaled, per-shard incl. broadcast per-tensor, per-channel, and
//! blocks at least as wide as the row) are one multiply per output after the
//! reduction. Block scales are looked up once per `vec4<u32>` chunk when the
//! block width is a multiple of the chunk width (Qwen's 128), else once per
//! 4-element group, and multiply the decoded group (one vec4 multiply per 4
//! weights, shared by all tokens). The GEMM scales while staging.
//!
//! Epilogues are fused: [`Epilogue::Accumulate`] adds to `y` (residual),
//! [`Epilogue::SwiGlu`] computes `silu(gate) · up` in the workgroup that holds
//! both rows. Weights split into several buffers ([`GpuWeight::pieces`]) are one
//! launch per piece; for SwiGLU a launch binds the piece holding the gate rows
//! and the piece holding the up rows (often the same buffer, bound twice) and
//! covers the output columns whose gate and up rows both lie in them, so any
//! split works without a scratch pass.
//!
//! Buffers: `x` and `y` are f32, row-major with the given element offsets and
//! strides; `y` must be a different buffer from `x` (and from `ids`).

use std::collections::BTreeSet;

use crate::dispatch::{grid_1d, Dispatch, MAX_GROUPS};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{check_rows, check_vector, Dtype};
use crate::weights::WeightPiece;
use crate::{GpuContext, GpuWeight, Int4Gemv, KernelError, Launch, SmallT, WeightFormat};

#[path = "matmul_coop.rs"]
mod coop;
#[cfg(feature = "testing")]
#[path = "matmul_coop_emu.rs"]
mod coop_emu;
#[path = "matmul_coop_f16.rs"]
pub mod coop_f16;
#[path = "matmul_coop_fast.rs"]
pub mod coop_fast;
#[path = "matmul_coop_skinny.rs"]
mod skinny;

pub use skinny::SkinnyShape;
#[path = "matmul_q4.rs"]
mod q4;
#[path = "matmul_vec_t.rs"]
mod vec_t;

crate::shader!(MATMUL_COMMON, "matmul_common.wgsl");
crate::shader!(MATMUL_VEC_COMMON, "matmul_vec_common.wgsl");
crate::shader!(MATMUL_VEC, "matmul_vec.wgsl");
crate::shader!(MATMUL_TILE, "matmul_tile.wgsl");

/// What a matmul does with its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// y = result
    Store,
    /// y += result (residual add fused)
    Accumulate,
    /// Rows are [gate (N/2 rows) | up (N/2 rows)]: y[t, j] = silu(gate_j) * up_j, output width N/2.
    SwiGlu,
}

impl Epilogue {
    /// `epi` of `MmParams`.
    pub(crate) fn code(self) -> u32 {
        match self {
            Epilogue::Store => 0,
            Epilogue::Accumulate => 1,
            Epilogue::SwiGlu => 2,
        }
    }
}

/// Which kernel [`matmul_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatmulPath {
    /// GEMV for `T <= 16`; above, the cooperative-matrix GEMM (exact variant,
    /// or plain f16 with [`ContextOptions::f16_matmul`](crate::ContextOptions::f16_matmul))
    /// where the adapter and the weight's format allow it ([`coop_f16`] from
    /// [`Tuning::coop_f16_min_t`](crate::Tuning::coop_f16_min_t) tokens, then
    /// [`coop_fast`], then `mm_coop`), else the scalar tile GEMM.
    #[default]
    Auto,
    /// Never the cooperative-matrix kernel (GEMV for `T <= 16`, scalar tile GEMM above).
    Scalar,
    /// The cooperative-matrix GEMM for every `T` (plain f16 variant with
    /// `f16_matmul`, else the exact one); [`KernelError::Unsupported`] where it cannot run.
    Coop,
    /// The fast tensor-core GEMM ([`coop_fast`]: x rounded to f16 after a
    /// per-row power-of-two scale, whatever the context's precision) for every
    /// `T`; [`KernelError::Unsupported`] where it cannot run.
    CoopFast,
    /// The exact variant of the same kernel (x split into hi and lo f16
    /// parts by the pre-pass, two products; results as the f32 GEMM's where
    /// the weight is exact in f16) for every `T`, whatever the context's
    /// precision; [`KernelError::Unsupported`] where it cannot run.
    CoopFastExact,
    /// The f16-scratch tensor-core GEMM ([`coop_f16`]: pre-passes write x
    /// and W as padded f16 rows, then `coop_peak`'s tiling multiplies them;
    /// exact precision splits x into hi + lo parts) for every `T`;
    /// [`KernelError::Unsupported`] where it cannot run (no cooperative
    /// matrices, 4-bit or F32 weights, block scales in exact precision).
    CoopF16,
}

/// Activations of a dense matmul: `x [t, cols]` and `y [t, width]` (f32).
#[derive(Debug, Clone, Copy)]
pub struct MatmulArgs<'a> {
    /// Input; row `i` starts at element `x_offset + i * x_stride`.
    pub x: &'a wgpu::Buffer,
    /// Element offset of row 0.
    pub x_offset: u32,
    /// Elements between rows (>= cols).
    pub x_stride: u32,
    /// Output; row `i` starts at element `y_offset + i * y_stride`.
    pub y: &'a wgpu::Buffer,
    pub y_offset: u32,
    /// Elements between rows (>= output width).
    pub y_stride: u32,
    /// Rows of x (tokens).
    pub t: u32,
}

/// MoE: W holds E experts stacked, `rows_per_expert` rows each. For each pair p < pairs:
/// e = ids[ids_offset + p]; x row = p / x_row_div; y row p (width rows_per_expert, or /2 for SwiGlu) = x_row · W[e*rpe .. (e+1)*rpe]ᵀ.
/// Pairs whose id is >= E are skipped (their y row is left unchanged).
#[derive(Debug, Clone, Copy)]
pub struct IndexedArgs<'a> {
    /// Input rows, `x_stride` elements apart, starting at element 0.
    pub x: &'a wgpu::Buffer,
    pub x_stride: u32,
    /// Pairs per x row (top-k when x holds one row per token).
    pub x_row_div: u32,
    /// Expert id per pair (u32).
    pub ids: &'a wgpu::Buffer,
    /// Element offset of pair 0's id.
    pub ids_offset: u32,
    /// Output rows, one per pair, `y_stride` elements apart, starting at element 0.
    pub y: &'a wgpu::Buffer,
    pub y_stride: u32,
    pub pairs: u32,
    pub rows_per_expert: u32,
}

/// Largest token count handled by the vector (GEMV) path; above it the tiled GEMM runs.
pub const MAX_VEC_T: u32 = 16;

/// Most threads per vector-path workgroup (WebGPU's limit).
const WG: u32 = 256;

/// Threads per vector-path workgroup for `w` in a launch of `groups`
/// workgroups (`None`: the indexed kernel): one per `vec4<u32>` chunk of a
/// row, 64..=256. Threads past a row's chunks would idle through the loads
/// and still join the reduction: rows of 1024 BF16 or 512 values (0.8B
/// hidden size, MoE experts' down projection) are 128 or 64 chunks. On
/// adapters with a known GEMV wave ([`Tuning::gemv_wave`](crate::Tuning)), a
/// launch too large for one wave of 256-thread groups but not for one of
/// 128-thread groups takes 128 threads (each doing twice the chunks): one wave
/// instead of two. Measured on the H100 (GPU timestamps, one token,
/// `gemv_bench` shapes; wave 132 SMs × 4): launches of 1024 workgroups (4096
/// rows) ran 14–19% faster in FP8 and up to 5% in BF16 with 128 threads, those
/// of 512 or of 2560 and more 2–9% slower. Only the speed depends on this choice.
fn vec_workgroup(ctx: &GpuContext, w: &GpuWeight, groups: Option<u32>) -> u32 {
    vec_width((w.stride_words / 4) as u32, groups, ctx.tuning.gemv_wave)
}

/// [`vec_workgroup`] of rows `chunks` `vec4<u32>` long on an adapter whose
/// GEMV wave is `wave` 256-thread workgroups (`None`: unknown).
fn vec_width(chunks: u32, groups: Option<u32>, wave: Option<u32>) -> u32 {
    let wide = chunks.next_power_of_two().clamp(64, WG);
    match (groups, wave) {
        (Some(g), Some(wave)) if wide == WG && g > wave && g <= 2 * wave => WG / 2,
        _ => wide,
    }
}

/// Output tile of the GEMM (tokens, weight rows).
const TILE: u32 = 64;
/// Most tokens (pairs) per vector-path workgroup.
const MAX_TV: u32 = 8;
/// Pairs per workgroup of the indexed kernel when there are many pairs.
const INDEXED_TV: u32 = MAX_TV;
/// Up to this many pairs the indexed kernel takes one pair per workgroup (decode: parallelism).
const INDEXED_SINGLE_MAX: u32 = 32;

crate::uniform_struct! {
    /// Mirrors `struct MmParams` in `shaders/matmul_common.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct MmParams as "MmParams" {
        pub(crate) rows: u32,
        pub(crate) cols: u32,
        pub(crate) stride4: u32,
        pub(crate) block_cols: u32,
        pub(crate) t: u32,
        pub(crate) x_off: u32,
        pub(crate) x_stride: u32,
        pub(crate) x_div: u32,
        pub(crate) y_off: u32,
        pub(crate) y_stride: u32,
        pub(crate) n0: u32,
        pub(crate) n_end: u32,
        pub(crate) a_row0: u32,
        pub(crate) a_rows: u32,
        pub(crate) b_row0: u32,
        pub(crate) b_rows: u32,
        pub(crate) half: u32,
        pub(crate) rpe: u32,
        pub(crate) experts: u32,
        pub(crate) ids_off: u32,
        pub(crate) groups_n: u32,
        pub(crate) groups: u32,
        pub(crate) epi: u32,
        pub(crate) x_aligned: u32,
        pub(crate) norm: u32,
        pub(crate) norm_eps: f32,
        pub(crate) _pad0: u32,
        pub(crate) _pad1: u32,
    }
}

/// The kernel a dense matmul runs (chosen from `T`, the path and the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GemmKernel {
    /// `mm_vec`: GEMV, `T = 1` (and `T <= 16` without a small-T tuning).
    Vec,
    /// `mm_vec_t`: small-T GEMV, `T = 2..=16` (`matmul_vec_t.rs`), in this shape.
    VecT(vec_t::Shape),
    /// `mm_q4`: one-token GEMV of 4-bit weights (`matmul_q4.rs`), in this shape.
    Q4(q4::Shape),
    /// `mm_tile`: scalar register-tiled GEMM.
    Tile,
    /// `mm_coop`: cooperative-matrix GEMM (`matmul_coop.rs`).
    Coop,
    /// `mm_coop_skinny`: tensor-core matmul of few tokens
    /// (`matmul_coop_skinny.rs`), in a forced shape (benchmarks).
    Skinny(SkinnyShape),
}

/// Whether a matmul may run the skinny tensor-core kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkinnyUse {
    /// Where [`skinny::auto`] holds (Auto path only).
    Auto,
    /// Never (the GEMV shape benchmarks).
    Off,
    /// Always, in this shape ([`matmul_skinny_with`]).
    Forced(SkinnyShape),
}

const VEC_PARTS: &[Part] = &[
    Part::File(&shaders::NUMERIC),
    Part::File(&MATMUL_COMMON),
    Part::File(&MATMUL_VEC_COMMON),
    Part::File(&MATMUL_VEC),
];

static MM_VEC: KernelSpec = KernelSpec {
    label: "matmul_gemv",
    parts: VEC_PARTS,
    entry: "mm_vec",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

static MM_VEC_IDS: KernelSpec = KernelSpec {
    label: "matmul_indexed",
    parts: VEC_PARTS,
    entry: "mm_vec_ids",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

static MM_TILE: KernelSpec = KernelSpec {
    label: "matmul_tile",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&MATMUL_COMMON),
        Part::File(&MATMUL_TILE),
    ],
    entry: "mm_tile",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

/// The kernels of this family (the grouped MoE GEMM is in `moe`).
pub(crate) static SPECS: &[&KernelSpec] = &[
    &MM_VEC,
    &MM_VEC_IDS,
    &vec_t::MM_VEC_T,
    &q4::MM_Q4,
    &q4::MM_Q4_IDS,
    &MM_TILE,
    &coop::MM_COOP,
    &coop_fast::MM_COOP_FAST,
    &coop_fast::MM_COOP_SPLIT,
    &coop_fast::FAST_X,
    &coop_f16::MM_COOP_F16,
    &coop_f16::MM_COOP_F16_SPLIT,
    &coop_f16::W16,
    &skinny::MM_COOP_SKINNY,
    &skinny::MM_SKINNY_REDUCE,
];

/// Most tokens of one token block of the skinny tensor-core kernel.
pub const SKINNY_MAX_T: u32 = skinny::MAX_T;

/// The token counts [`MatmulPath::Auto`] gives the skinny tensor-core kernel
/// on `ctx` where it runs: [`Tuning::skinny_min_t`](crate::Tuning::skinny_min_t)
/// ..= [`SKINNY_MAX_T`] (empty when the switch is off).
pub fn skinny_tokens(ctx: &GpuContext) -> std::ops::RangeInclusive<u32> {
    // (Switched off: a start past the end, an empty range.)
    let start = if ctx.tuning.skinny {
        ctx.tuning.skinny_min_t.max(1)
    } else {
        skinny::MAX_T + 1
    };
    start..=skinny::MAX_T
}

/// Most tokens a batched decode step should give one matmul: 64 where
/// [`MatmulPath::Auto`] runs `w` on the skinny tensor-core kernel at 64
/// tokens (each weight read once for all of them), else [`MAX_VEC_T`] (the
/// GEMV's limit; larger blocks would run the prefill GEMMs).
pub fn decode_block_tokens(ctx: &GpuContext, w: &GpuWeight) -> u32 {
    if skinny::auto(ctx, w, skinny::MAX_T) {
        skinny::MAX_T
    } else {
        MAX_VEC_T
    }
}

/// An RMSNorm fused into a decode GEMV ([`matmul_normed`]): the GEMV reads
/// the un-normalised rows of x and computes `norm(x) · Wᵀ` with
/// `norm(x) = x / sqrt(mean(x²) + eps) · (one_plus ? 1 + weight : weight)`.
#[derive(Debug, Clone, Copy)]
pub struct FusedNorm<'a> {
    /// f32 norm weight, `cols` values.
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
    /// Scale by `1 + weight` (Qwen3.5's norms) instead of `weight`.
    pub one_plus: bool,
}

fn arg_err(kernel: &'static str, detail: String) -> KernelError {
    KernelError::Arguments { kernel, detail }
}

/// Elements per `vec4<u32>` chunk of `format`.
fn chunk_width(format: WeightFormat) -> usize {
    4 * format.per_word()
}

/// How the vector path applies scales (`SCALE_MODE` in matmul_vec.wgsl).
fn scale_mode(kernel: &'static str, w: &GpuWeight) -> Result<u32, KernelError> {
    let stride_cols = w.stride_words * w.format.per_word();
    if w.format.is_int4() {
        // The zero point is subtracted from every element: never mode 0; one
        // group per row reads its one scale per chunk.
        return if w.block_cols >= w.cols || w.block_cols.is_multiple_of(chunk_width(w.format)) {
            Ok(1)
        } else if w.block_cols.is_multiple_of(4) && w.block_cols > 0 {
            Ok(2)
        } else {
            Err(arg_err(
                kernel,
                format!(
                    "4-bit weight `{w_name}`: groups of {w_block_cols} columns are not a multiple of 4",
                    w_name = w.name,
                    w_block_cols = w.block_cols
                ),
            ))
        };
    }
    if w.block_cols >= stride_cols {
        Ok(0)
    } else if w.block_cols.is_multiple_of(chunk_width(w.format)) {
        Ok(1)
    } else if w.block_cols.is_multiple_of(4) && w.block_cols > 0 {
        Ok(2)
    } else {
        Err(arg_err(
            kernel,
            format!(
                "weight `{w_name}`: {w_block_cols} columns per scale is not a multiple of 4",
                w_name = w.name,
                w_block_cols = w.block_cols
            ),
        ))
    }
}

/// Whether `w` is 4-bit with groups of whole 32-column chunks or one group
/// per row (scale mode 1: the 4-bit GEMV's case).
fn int4_chunk_groups(w: &GpuWeight) -> bool {
    w.format.is_int4()
        && (w.block_cols >= w.cols || w.block_cols.is_multiple_of(chunk_width(w.format)))
}

/// Checks the weight's own layout (pieces contiguous and sized, strides) before any launch.
fn check_weight(kernel: &'static str, w: &GpuWeight) -> Result<(), KernelError> {
    let bad = |detail: String| {
        arg_err(
            kernel,
            format!("weight `{w_name}`: {detail}", w_name = w.name),
        )
    };
    if w.rows == 0 || w.cols == 0 {
        return Err(bad(format!(
            "shape [{w_rows}, {w_cols}] has a zero dimension",
            w_rows = w.rows,
            w_cols = w.cols
        )));
    }
    if !w.stride_words.is_multiple_of(4) || w.stride_words * w.format.per_word() < w.cols {
        return Err(bad(format!(
            "row stride of {w_stride_words} words for {w_cols} columns",
            w_stride_words = w.stride_words,
            w_cols = w.cols
        )));
    }
    if w.rows > u32::MAX as usize / 2 || w.stride_words > u32::MAX as usize / 4 {
        return Err(bad("too large for 32-bit indices".into()));
    }
    let mut next = 0;
    for (i, piece) in w.pieces.iter().enumerate() {
        if piece.row0 != next || piece.rows == 0 {
            return Err(bad(format!(
                "piece {i} holds rows {piece_row0}..{piece_end}, expected to start at {next} with > 0 rows",
                piece_row0 = piece.row0,
                piece_end = piece.row0 + piece.rows
            )));
        }
        let need = (piece.rows * w.stride_words * 4) as u64;
        if piece.buffer.size() < need {
            return Err(bad(format!(
                "piece {i} buffer has {piece_buffer_size} bytes, needs {need}",
                piece_buffer_size = piece.buffer.size()
            )));
        }
        next += piece.rows;
    }
    if next != w.rows {
        return Err(bad(format!(
            "pieces cover {next} rows of {w_rows}",
            w_rows = w.rows
        )));
    }
    if w.meta.size() < (w.rows as u64 + 1) * 4 {
        return Err(bad(format!(
            "scale table of {w_meta_size} bytes for {w_rows} rows",
            w_meta_size = w.meta.size(),
            w_rows = w.rows
        )));
    }
    Ok(())
}

fn range(p: &WeightPiece) -> (usize, usize) {
    (p.row0, p.rows)
}

/// One launch: gate/plain rows from piece `a`, up rows from piece `b`, outputs `[n0, n_end)`.
struct PieceLaunch<'w> {
    a: &'w WeightPiece,
    b: &'w WeightPiece,
    n0: u32,
    n_end: u32,
}

/// Output columns `j` in `[0, half)` with row `base + j` in `a` and row `base + half + j` in `b`.
/// Pieces are `(row0, rows)`.
fn swiglu_overlap(
    a: (usize, usize),
    b: (usize, usize),
    base: usize,
    half: usize,
) -> Option<(usize, usize)> {
    let lo = a.0.max(b.0.saturating_sub(half)).max(base);
    let hi = (a.0 + a.1)
        .min((b.0 + b.1).saturating_sub(half))
        .min(base + half);
    (lo < hi).then(|| (lo - base, hi - base))
}

/// A launch of the vector-path spec `spec` (`mm_vec` or `mm_vec_ids`) with `tv`
/// tokens per workgroup and scale mode `mode`; `groups`: workgroups of the
/// launch, for its width ([`vec_workgroup`]).
fn vec_launch<'a>(
    ctx: &'a GpuContext,
    spec: &'static KernelSpec,
    w: &GpuWeight,
    tv: u32,
    mode: u32,
    groups: Option<u32>,
) -> Launch<'a> {
    ctx.launch(spec)
        .constant("WG", vec_workgroup(ctx, w, groups))
        .constant("TV", tv)
        .constant("SCALE_MODE", mode)
        .constant("FORMAT", w.format as u32)
}

fn base_params(w: &GpuWeight, epilogue: Epilogue) -> MmParams {
    MmParams {
        epi: epilogue.code(),
        rows: w.rows as u32,
        cols: w.cols as u32,
        stride4: (w.stride_words / 4) as u32,
        block_cols: w.block_cols as u32,
        x_div: 1,
        ..Default::default()
    }
}

fn set_pieces(p: &mut MmParams, l: &PieceLaunch<'_>) {
    p.a_row0 = l.a.row0 as u32;
    p.a_rows = l.a.rows as u32;
    p.b_row0 = l.b.row0 as u32;
    p.b_rows = l.b.rows as u32;
    p.n0 = l.n0;
    p.n_end = l.n_end;
}

/// `y[t, r]` for all rows `r` of `w` (or `r < rows/2` for SwiGlu). One Dispatch per weight piece (or more).
///
/// `T <= 16` runs a GEMV kernel (W read once for all tokens: the one-token
/// kernel at `T = 1`, the small-T one above), larger `T` a GEMM. Errors: [`KernelError::Arguments`] for sizes that do not fit
/// the buffers, strides below the row width, odd rows with SwiGlu, `x` and `y`
/// being one buffer; [`KernelError::Compile`] if the pipeline fails.
pub fn matmul(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, KernelError> {
    matmul_with(ctx, w, args, epilogue, MatmulPath::Auto)
}

/// [`matmul`] of the RMS-normalised rows of x (decode: `T <= 16`, the GEMV
/// path): the norm costs no launch and no pass over memory of its own (each
/// GEMV workgroup reads all of x anyway and sums its squares on the way).
/// Results equal `rms_norm` then [`matmul`] up to f32 rounding order.
/// Errors as [`matmul`], plus `T > 16`, columns not a multiple of 4, x rows
/// not 16-byte aligned, a norm weight shorter than the columns.
///
/// ```no_run
/// # use qwgpu_kernels::matmul::{matmul_normed, Epilogue, FusedNorm, MatmulArgs};
/// # fn f(ctx: &qwgpu_kernels::GpuContext, w: &qwgpu_kernels::GpuWeight, args: &MatmulArgs,
/// #      norm_w: &qwgpu_kernels::wgpu::Buffer) -> Result<(), qwgpu_kernels::KernelError> {
/// let norm = FusedNorm { weight: norm_w, eps: 1e-6, one_plus: true };
/// let launches = matmul_normed(ctx, w, args, &norm, Epilogue::Store)?;
/// # Ok(()) }
/// ```
pub fn matmul_normed(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    norm: &FusedNorm,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul_normed";
    if args.t > MAX_VEC_T {
        return Err(arg_err(
            K,
            format!(
                "the fused norm runs on the GEMV path (T <= {MAX_VEC_T}), got T = {args_t}",
                args_t = args.t
            ),
        ));
    }
    check_norm(K, w, args.x_offset, args.x_stride, norm)?;
    // The skinny kernel without its fused norm
    // (`Tuning::skinny_fused_norm` off): an `rms_norm` launch writes the
    // normalised rows into a scratch buffer of these launches, and the plain
    // skinny launch reads them (its columns may then be split, which the
    // fused norm's whole-row sums forbid).
    let prenorm = !ctx.tuning.skinny_fused_norm
        && skinny::auto(ctx, w, args.t)
        && args.x_stride as usize == w.cols;
    let mut out = Vec::new();
    let (rows, plain);
    let (args, fused) = if prenorm {
        let cols = w.cols as u32;
        rows = ctx.storage(
            "skinny normalised rows",
            u64::from(args.t) * u64::from(cols) * 4,
        )?;
        out.push(crate::norm::rms_norm(
            ctx,
            &crate::view::TensorView::f32_rows(args.x, args.x_offset, args.t, cols),
            norm.weight,
            &rows,
            norm.eps,
            norm.one_plus,
        )?);
        plain = MatmulArgs {
            x: &rows,
            x_offset: 0,
            x_stride: cols,
            ..*args
        };
        (&plain, None)
    } else {
        (args, Some(norm))
    };
    out.extend(matmul_impl(
        ctx,
        w,
        args,
        epilogue,
        MatmulPath::Auto,
        fused,
        Gemvs::of(ctx),
    )?);
    Ok(out)
}

/// [`matmul`] with the kernel chosen by `path` (see [`MatmulPath`]).
pub fn matmul_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    epilogue: Epilogue,
    path: MatmulPath,
) -> Result<Vec<Dispatch>, KernelError> {
    matmul_impl(ctx, w, args, epilogue, path, None, Gemvs::of(ctx))
}

/// [`matmul`] (with `norm`: [`matmul_normed`]) on the skinny tensor-core
/// kernel (`matmul_coop_skinny.rs`) for any `T`, blocks of 64 tokens past 64;
/// `shape` forces its workgroup shape (default: the adapter's choice): tests
/// and benchmarks. Errors as [`matmul`] (and
/// [`matmul_normed`]'s norm checks), plus [`KernelError::Unsupported`] where
/// the adapter or the weight's format cannot run it.
pub fn matmul_skinny_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    epilogue: Epilogue,
    norm: Option<&FusedNorm>,
    shape: SkinnyShape,
) -> Result<Vec<Dispatch>, KernelError> {
    if !skinny::supported(ctx, w) {
        return Err(KernelError::Unsupported {
            what: "skinny cooperative-matrix matmul".into(),
            detail: coop::unsupported_reason(ctx, w),
        });
    }
    if let Some(n) = norm {
        check_norm("matmul_skinny_with", w, args.x_offset, args.x_stride, n)?;
    }
    matmul_impl(
        ctx,
        w,
        args,
        epilogue,
        MatmulPath::Auto,
        norm,
        Gemvs {
            skinny: SkinnyUse::Forced(shape),
            ..Gemvs::of(ctx)
        },
    )
}

/// [`matmul`] of `T <= 16` tokens on the GEMV kernels, the small-T one in the
/// shape `small_t` instead of the adapter's [`Tuning`](crate::Tuning) (`None`:
/// the one-token kernel in blocks of up to 8 tokens): tests and benchmarks
/// of the shapes. With a shape, `T = 1` runs the small-T kernel too (several
/// 4-row quads per workgroup: what a 4-bit row of few chunks may want; only
/// benchmarks ask). Errors as [`matmul`], plus `T > 16`.
pub fn matmul_gemv_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    epilogue: Epilogue,
    small_t: Option<&SmallT>,
) -> Result<Vec<Dispatch>, KernelError> {
    if args.t > MAX_VEC_T {
        return Err(arg_err(
            "matmul_gemv_with",
            format!(
                "the GEMV kernels take T <= {MAX_VEC_T}, got T = {args_t}",
                args_t = args.t
            ),
        ));
    }
    matmul_impl(
        ctx,
        w,
        args,
        epilogue,
        MatmulPath::Scalar,
        None,
        Gemvs {
            small_t: small_t.copied(),
            small_t_at_one: true,
            int4: None,
            skinny: SkinnyUse::Off,
        },
    )
}

/// One-token [`matmul`] (with `norm`: [`matmul_normed`]) of a 4-bit weight,
/// the 4-bit GEMV in the shape `shape` instead of the adapter's
/// [`Tuning`](crate::Tuning) (`None`: the other formats' one-token kernel,
/// `mm_vec`): tests and benchmarks of the shapes. Errors as [`matmul`] /
/// [`matmul_normed`], plus `T != 1` and a weight that is not 4-bit.
pub fn matmul_int4_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    norm: Option<&FusedNorm>,
    epilogue: Epilogue,
    shape: Option<&Int4Gemv>,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul_int4_with";
    check_int4_one(K, w, args.t)?;
    if let Some(n) = norm {
        check_norm(K, w, args.x_offset, args.x_stride, n)?;
    }
    matmul_impl(
        ctx,
        w,
        args,
        epilogue,
        MatmulPath::Scalar,
        norm,
        Gemvs {
            small_t: None,
            small_t_at_one: false,
            int4: shape.map(|&cfg| Q4Ask { cfg, fit: false }),
            skinny: SkinnyUse::Off,
        },
    )
}

/// [`matmul_indexed`] (with `norm`: [`matmul_indexed_normed`]) of a 4-bit
/// weight with the 4-bit GEMV in `shape` (`None`: `mm_vec_ids`) where the
/// pairs are few enough for one pair per workgroup (decode; more pairs run
/// `mm_vec_ids` in blocks of 8 whatever `shape`). Errors as
/// [`matmul_indexed`], plus a weight that is not 4-bit.
pub fn matmul_indexed_int4_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &IndexedArgs,
    norm: Option<&FusedNorm>,
    epilogue: Epilogue,
    shape: Option<&Int4Gemv>,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul_indexed_int4_with";
    check_int4_one(K, w, 1)?;
    if let Some(n) = norm {
        check_norm(K, w, 0, args.x_stride, n)?;
    }
    let ask = shape.map(|&cfg| Q4Ask { cfg, fit: false });
    matmul_indexed_impl(ctx, w, args, epilogue, norm, ask)
}

/// The `*_int4_with` functions' requirements: a 4-bit weight, one token.
fn check_int4_one(kernel: &'static str, w: &GpuWeight, t: u32) -> Result<(), KernelError> {
    if !w.format.is_int4() {
        return Err(arg_err(
            kernel,
            format!(
                "weight `{w_name}` is {w_format:?}, not 4-bit",
                w_name = w.name,
                w_format = w.format
            ),
        ));
    }
    if t != 1 {
        return Err(arg_err(kernel, format!("one token only, got T = {t}")));
    }
    Ok(())
}

/// A 4-bit GEMV shape as asked: the adapter's tuning (`fit`: its lanes
/// fitted to each weight's rows, [`q4::fitted`]) or a caller's, taken as given
/// (benchmarks sweep shapes by name).
#[derive(Debug, Clone, Copy)]
struct Q4Ask {
    cfg: Int4Gemv,
    fit: bool,
}

impl Q4Ask {
    fn tuned(ctx: &GpuContext) -> Option<Self> {
        ctx.tuning.int4_gemv.map(|cfg| Self { cfg, fit: true })
    }

    /// The launch shape for rows of `chunks` 32-column chunks.
    fn shape(&self, chunks: u32) -> q4::Shape {
        if self.fit {
            q4::fitted(&self.cfg, chunks)
        } else {
            q4::shape(&self.cfg, chunks)
        }
    }
}

/// The GEMV kernels' shapes a dense matmul may use.
#[derive(Debug, Clone, Copy)]
struct Gemvs {
    /// The small-T kernel's shape (`None`: `mm_vec` in blocks of up to 8 tokens).
    small_t: Option<SmallT>,
    /// Whether `T = 1` runs the small-T kernel too (a forced shape).
    small_t_at_one: bool,
    /// The 4-bit one-token GEMV's shape (`None`: `mm_vec`).
    int4: Option<Q4Ask>,
    /// Whether the skinny tensor-core kernel may take the matmul.
    skinny: SkinnyUse,
}

impl Gemvs {
    /// The adapter's tuning.
    fn of(ctx: &GpuContext) -> Self {
        Self {
            small_t: ctx.tuning.small_t,
            small_t_at_one: false,
            int4: Q4Ask::tuned(ctx),
            skinny: SkinnyUse::Auto,
        }
    }
}

fn matmul_impl(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    epilogue: Epilogue,
    path: MatmulPath,
    norm: Option<&FusedNorm>,
    gemvs: Gemvs,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul";
    if path == MatmulPath::Coop && !coop::supported(ctx, w) {
        return Err(KernelError::Unsupported {
            what: "cooperative-matrix matmul".into(),
            detail: coop::unsupported_reason(ctx, w),
        });
    }
    let split = path == MatmulPath::CoopFastExact;
    if (path == MatmulPath::CoopFast || split) && !coop_fast::supported(ctx, w, split) {
        return Err(KernelError::Unsupported {
            what: "fast cooperative-matrix matmul".into(),
            detail: coop_fast::unsupported_reason(ctx, w, split),
        });
    }
    if path == MatmulPath::CoopF16 && !coop_f16::supported(ctx, w) {
        return Err(KernelError::Unsupported {
            what: "f16 cooperative-matrix matmul".into(),
            detail: coop_f16::unsupported_reason(ctx, w),
        });
    }
    check_weight(K, w)?;
    let swiglu = epilogue == Epilogue::SwiGlu;
    if swiglu && !w.rows.is_multiple_of(2) {
        return Err(arg_err(
            K,
            format!(
                "SwiGlu needs an even number of rows, `{w_name}` has {w_rows}",
                w_name = w.name,
                w_rows = w.rows
            ),
        ));
    }
    let width = if swiglu { w.rows / 2 } else { w.rows } as u64;
    if args.x == args.y {
        return Err(arg_err(K, "x and y are the same buffer".into()));
    }
    if args.t == 0 {
        return Ok(Vec::new());
    }
    let t = args.t as u64;
    check_rows(
        K,
        "x",
        args.x,
        Dtype::F32,
        args.x_offset as u64,
        args.x_stride as u64,
        t,
        w.cols as u64,
    )?;
    check_rows(
        K,
        "y",
        args.y,
        Dtype::F32,
        args.y_offset as u64,
        args.y_stride as u64,
        t,
        width,
    )?;

    let half = w.rows / 2;
    let launches: Vec<PieceLaunch<'_>> = if swiglu {
        let mut v = Vec::new();
        for a in &w.pieces {
            for b in &w.pieces {
                if let Some((lo, hi)) = swiglu_overlap(range(a), range(b), 0, half) {
                    v.push(PieceLaunch {
                        a,
                        b,
                        n0: lo as u32,
                        n_end: hi as u32,
                    });
                }
            }
        }
        v
    } else {
        w.pieces
            .iter()
            .map(|a| PieceLaunch {
                a,
                b: a,
                n0: a.row0 as u32,
                n_end: (a.row0 + a.rows) as u32,
            })
            .collect()
    };

    let mut base = base_params(w, epilogue);
    base.t = args.t;
    base.x_off = args.x_offset;
    base.x_stride = args.x_stride;
    base.y_off = args.y_offset;
    base.y_stride = args.y_stride;
    base.half = half as u32;
    base.x_aligned = u32::from(args.x_offset.is_multiple_of(4) && args.x_stride.is_multiple_of(4));
    if let Some(n) = norm {
        base.norm = if n.one_plus { 2 } else { 1 };
        base.norm_eps = n.eps;
    }

    let use_skinny = match gemvs.skinny {
        SkinnyUse::Forced(shape) => Some(shape),
        SkinnyUse::Auto if path == MatmulPath::Auto && skinny::auto(ctx, w, args.t) => {
            Some(SkinnyShape::default())
        }
        _ => None,
    };
    // The pre-pass and the fast tensor-core GEMM (one switch per variant:
    // Tuning::coop_fast_gemm, Tuning::coop_fast_exact); the skinny kernel
    // keeps the token counts it takes.
    let auto_big =
        path == MatmulPath::Auto && args.t > MAX_VEC_T && norm.is_none() && use_skinny.is_none();
    // The f16-scratch GEMM first (Tuning::coop_f16, from coop_f16_min_t tokens).
    if norm.is_none()
        && (path == MatmulPath::CoopF16 || (auto_big && coop_f16::auto(ctx, w, args.t)))
    {
        return coop_f16::record(ctx, w, args, &base, &launches, swiglu);
    }
    let split = split || (auto_big && coop_fast::auto_split(ctx, w));
    let use_fast = path == MatmulPath::CoopFast || split || (auto_big && coop_fast::auto(ctx, w));
    if use_fast && norm.is_none() {
        return coop_fast::record(ctx, w, args, &base, &launches, swiglu, split);
    }
    let use_coop = norm.is_none()
        && use_skinny.is_none()
        && (path == MatmulPath::Coop
            || (path == MatmulPath::Auto && args.t > MAX_VEC_T && coop::auto(ctx, w, args.t)));
    // The adapter's shape serves T >= 2; a forced one (matmul_gemv_with) T = 1 too.
    let small_t = gemvs
        .small_t
        .filter(|_| args.t >= 2 || gemvs.small_t_at_one);
    // 4-bit, one token, groups of whole chunks: the 4-bit GEMV.
    let int4 = gemvs
        .int4
        .filter(|_| args.t == 1 && small_t.is_none() && int4_chunk_groups(w));
    let kernel = if let Some(shape) = use_skinny {
        GemmKernel::Skinny(shape)
    } else if use_coop {
        GemmKernel::Coop
    } else if let Some(ask) = int4 {
        GemmKernel::Q4(ask.shape((w.stride_words / 4) as u32))
    } else if let (true, Some(cfg)) = (args.t <= MAX_VEC_T, small_t) {
        GemmKernel::VecT(vec_t::shape(&cfg, args.t, (w.stride_words / 4) as u32))
    } else if args.t <= MAX_VEC_T {
        GemmKernel::Vec
    } else {
        GemmKernel::Tile
    };
    let (label, tv, mode) = match kernel {
        GemmKernel::Coop => ("matmul_coop", 0, 0),
        GemmKernel::Skinny(_) => ("matmul_coop_skinny", 0, 0),
        // Up to 8 tokens per workgroup: 16 accumulator vec4s spilled on the H100
        // (T = 16 took 8× the time of T = 8); 9..16 tokens are two blocks.
        GemmKernel::Vec => (
            if args.t == 1 {
                "matmul_gemv"
            } else {
                "matmul_gemv_multi"
            },
            args.t.next_power_of_two().min(MAX_TV),
            scale_mode(K, w)?,
        ),
        GemmKernel::VecT(_) => ("matmul_gemv_t", 0, scale_mode(K, w)?),
        GemmKernel::Q4(_) => ("matmul_gemv_q4", 0, 1),
        GemmKernel::Tile => ("matmul_tile", 0, 0),
    };
    let mut out = Vec::with_capacity(launches.len());
    for l in &launches {
        let mut p = base;
        set_pieces(&mut p, l);
        let n = l.n_end - l.n0;
        // The GEMM's pipeline serves every launch; the GEMV's width depends on
        // each launch's grid (vec_workgroup).
        let launch = match kernel {
            GemmKernel::Vec => {
                p.groups_n = n.div_ceil(if swiglu { 2 } else { 4 });
                p.groups = p.groups_n * args.t.div_ceil(tv);
                // The fused norm's weight (x when there is none: never read).
                vec_launch(ctx, &MM_VEC, w, tv, mode, Some(p.groups))
                    .bind("nw4", norm.map_or(args.x, |n| n.weight))
                    .grid(grid_1d(p.groups))
            }
            GemmKernel::VecT(sh) => {
                let quads = n.div_ceil(if swiglu { 2 } else { 4 });
                p.groups_n = quads.div_ceil(sh.quads);
                p.groups = p.groups_n * args.t.div_ceil(sh.tv);
                vec_t::launch(ctx, w, &sh, mode, norm.is_some())
                    // The fused norm's weight (x when there is none: never read).
                    .bind("nw4", norm.map_or(args.x, |n| n.weight))
                    .grid(grid_1d(p.groups))
            }
            GemmKernel::Skinny(forced) => {
                let sh = skinny::shape_for(ctx, w, n, args.t, swiglu, norm.is_some(), forced);
                let (gx, gy) = skinny::grid(n, args.t, swiglu, sh);
                if gx > MAX_GROUPS || gy > MAX_GROUPS {
                    return Err(arg_err(
                        K,
                        format!(
                            "{args_t} tokens × {n} outputs need a {gx}×{gy} grid",
                            args_t = args.t
                        ),
                    ));
                }
                let launch = skinny::launch(ctx, w, sh, norm.is_some())
                    // The fused norm's weight (x when there is none: never read).
                    .bind("nw4", norm.map_or(args.x, |n| n.weight))
                    .grid([gx, gy, sh.splits]);
                if sh.splits > 1 {
                    // Split-K: partial sums into a buffer of this launch's
                    // own, then their sum with the epilogue.
                    let width = if swiglu { 2 * n } else { n };
                    let part = ctx.storage(
                        "skinny split-K partials",
                        skinny::partial_bytes(sh, args.t, width),
                    )?;
                    let mut pp = p;
                    pp.y_off = 0;
                    pp.y_stride = width;
                    out.push(
                        launch
                            .label(label)
                            .bind("wa", &l.a.buffer)
                            .bind("wb", &l.b.buffer)
                            .bind("scales", &w.meta)
                            .bind("xs", args.x)
                            .bind("ys", &part)
                            .bind("xs4", args.x)
                            .params(&pp)
                            .record()?,
                    );
                    out.push(skinny::reduce(
                        ctx,
                        &part,
                        args.y,
                        &skinny::SkReduceParams {
                            t: args.t,
                            n,
                            splits: sh.splits,
                            epi: epilogue.code(),
                            width,
                            n0: l.n0,
                            y_off: args.y_offset,
                            y_stride: args.y_stride,
                        },
                    )?);
                    continue;
                }
                launch
            }
            GemmKernel::Q4(sh) => {
                let quads = n.div_ceil(if swiglu { 2 } else { 4 });
                p.groups_n = quads.div_ceil(sh.quads_per_group());
                p.groups = p.groups_n;
                q4::launch(ctx, &q4::MM_Q4, w, &sh, norm.is_some())
                    // The fused norm's weight (x when there is none: never read).
                    .bind("nw4", norm.map_or(args.x, |n| n.weight))
                    .grid(grid_1d(p.groups))
            }
            GemmKernel::Tile | GemmKernel::Coop => {
                // Scalar GEMM: 64 tokens × 64 weight rows (32 SwiGLU columns) per
                // workgroup; the coop kernel's tile is its own.
                let (gx, gy) = if kernel == GemmKernel::Coop {
                    coop::grid(n, args.t, swiglu)
                } else {
                    (
                        n.div_ceil(if swiglu { TILE / 2 } else { TILE }),
                        args.t.div_ceil(TILE),
                    )
                };
                if gx > MAX_GROUPS || gy > MAX_GROUPS {
                    return Err(arg_err(
                        K,
                        format!(
                            "{args_t} tokens × {n} outputs need a {gx}×{gy} grid",
                            args_t = args.t
                        ),
                    ));
                }
                let launch = if kernel == GemmKernel::Coop {
                    coop::launch(ctx, w)
                } else {
                    // Fast precision: x rounded as the fast coop GEMM rounds it.
                    let fast = ctx.precision == crate::MatmulPrecision::Fast;
                    ctx.launch(&MM_TILE)
                        .constant("FORMAT", w.format as u32)
                        .constant("FAST_X", f64::from(u8::from(fast)))
                };
                launch.grid([gx, gy, 1])
            }
        };
        out.push(
            launch
                .label(label)
                .bind("wa", &l.a.buffer)
                .bind("wb", &l.b.buffer)
                .bind("scales", &w.meta)
                .bind("xs", args.x)
                .bind("ys", args.y)
                // x again, read as vec4s when its rows are aligned.
                .bind("xs4", args.x)
                .params(&p)
                .record()?,
        );
    }
    Ok(out)
}

/// MoE matmul (see [`IndexedArgs`]): one launch per weight piece (per pair of
/// pieces holding gate and up rows for SwiGlu). Any epilogue works
/// (Accumulate adds to y row p). Errors as [`matmul`], plus rows not a multiple
/// of `rows_per_expert`, odd `rows_per_expert` with SwiGlu, `x_row_div == 0`,
/// ids out of their buffer.
pub fn matmul_indexed(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &IndexedArgs,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, KernelError> {
    matmul_indexed_impl(ctx, w, args, epilogue, None, Q4Ask::tuned(ctx))
}

/// [`matmul_indexed`] of the RMS-normalised x rows (see [`matmul_normed`]):
/// MoE decode reads the un-normalised residual rows and needs no norm launch.
/// Errors as [`matmul_indexed`], plus columns or x stride not a multiple of 4
/// and a norm weight shorter than the columns.
pub fn matmul_indexed_normed(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &IndexedArgs,
    norm: &FusedNorm,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, KernelError> {
    check_norm("matmul_indexed_normed", w, 0, args.x_stride, norm)?;
    matmul_indexed_impl(ctx, w, args, epilogue, Some(norm), Q4Ask::tuned(ctx))
}

/// The fused norm's requirements: vec4-aligned x rows, a long enough weight.
fn check_norm(
    kernel: &'static str,
    w: &GpuWeight,
    x_offset: u32,
    x_stride: u32,
    norm: &FusedNorm,
) -> Result<(), KernelError> {
    if !w.cols.is_multiple_of(4) || !x_offset.is_multiple_of(4) || !x_stride.is_multiple_of(4) {
        return Err(arg_err(
            kernel,
            format!(
                "the fused norm needs columns, x offset and x stride in multiples of 4, got {w_cols}, {x_offset}, {x_stride}",
                w_cols = w.cols
            ),
        ));
    }
    if norm.weight.size() < w.cols as u64 * 4 {
        return Err(arg_err(
            kernel,
            format!(
                "norm weight of {norm_weight_size} bytes for {w_cols} columns of `{w_name}`",
                norm_weight_size = norm.weight.size(),
                w_cols = w.cols,
                w_name = w.name
            ),
        ));
    }
    Ok(())
}

fn matmul_indexed_impl(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &IndexedArgs,
    epilogue: Epilogue,
    norm: Option<&FusedNorm>,
    int4: Option<Q4Ask>,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul_indexed";
    check_weight(K, w)?;
    let rpe = args.rows_per_expert as usize;
    if rpe == 0 || !w.rows.is_multiple_of(rpe) {
        return Err(arg_err(
            K,
            format!(
                "`{w_name}` has {w_rows} rows, not a multiple of {rpe} rows per expert",
                w_name = w.name,
                w_rows = w.rows
            ),
        ));
    }
    let swiglu = epilogue == Epilogue::SwiGlu;
    if swiglu && !rpe.is_multiple_of(2) {
        return Err(arg_err(
            K,
            format!("SwiGlu needs an even number of rows per expert, got {rpe}"),
        ));
    }
    if args.x_row_div == 0 {
        return Err(arg_err(K, "x_row_div is 0".into()));
    }
    if args.x == args.y || args.ids == args.y {
        return Err(arg_err(K, "y is the same buffer as x or ids".into()));
    }
    if args.pairs == 0 {
        return Ok(Vec::new());
    }
    let width = if swiglu { rpe / 2 } else { rpe } as u64;
    let pairs = args.pairs as u64;
    let x_rows = (pairs - 1) / args.x_row_div as u64 + 1;
    let x_stride = args.x_stride as u64;
    check_rows(
        K,
        "x",
        args.x,
        Dtype::F32,
        0,
        x_stride,
        x_rows,
        w.cols as u64,
    )?;
    let y_stride = args.y_stride as u64;
    check_rows(K, "y", args.y, Dtype::F32, 0, y_stride, pairs, width)?;
    check_vector(
        K,
        "ids",
        args.ids,
        Dtype::U32,
        args.ids_offset as u64,
        pairs,
    )?;
    let experts = w.rows / rpe;

    let launches: Vec<PieceLaunch<'_>> = if swiglu {
        let half = rpe / 2;
        let mut pairs_of_pieces = BTreeSet::new();
        for e in 0..experts {
            for (ia, a) in w.pieces.iter().enumerate() {
                for (ib, b) in w.pieces.iter().enumerate() {
                    if swiglu_overlap(range(a), range(b), e * rpe, half).is_some() {
                        pairs_of_pieces.insert((ia, ib));
                    }
                }
            }
        }
        pairs_of_pieces
            .into_iter()
            .map(|(ia, ib)| PieceLaunch {
                a: &w.pieces[ia],
                b: &w.pieces[ib],
                n0: 0,
                n_end: half as u32,
            })
            .collect()
    } else {
        w.pieces
            .iter()
            .map(|a| PieceLaunch {
                a,
                b: a,
                n0: 0,
                n_end: rpe as u32,
            })
            .collect()
    };

    let tv = if args.pairs <= INDEXED_SINGLE_MAX {
        1
    } else {
        INDEXED_TV
    };
    let mut base = base_params(w, epilogue);
    base.t = args.pairs;
    base.x_stride = args.x_stride;
    base.x_div = args.x_row_div;
    base.x_aligned = u32::from(args.x_stride.is_multiple_of(4));
    base.y_stride = args.y_stride;
    base.half = (rpe / 2) as u32;
    base.rpe = rpe as u32;
    base.experts = experts as u32;
    base.ids_off = args.ids_offset;
    if let Some(n) = norm {
        base.norm = if n.one_plus { 2 } else { 1 };
        base.norm_eps = n.eps;
    }
    // Decode (one pair per workgroup row) of 4-bit weights in whole-chunk
    // groups: the 4-bit GEMV, several quads per workgroup.
    let q4_shape = int4
        .filter(|_| tv == 1 && int4_chunk_groups(w))
        .map(|ask| ask.shape((w.stride_words / 4) as u32));
    let quads = (width as u32).div_ceil(if swiglu { 2 } else { 4 });
    base.groups_n = match &q4_shape {
        Some(sh) => quads.div_ceil(sh.quads_per_group()),
        None => quads,
    };
    base.groups = base
        .groups_n
        .checked_mul(args.pairs.div_ceil(tv))
        .filter(|g| g.div_ceil(MAX_GROUPS) <= MAX_GROUPS)
        .ok_or_else(|| {
            arg_err(
                K,
                format!(
                    "{args_pairs} pairs × {width} outputs is too large a grid",
                    args_pairs = args.pairs
                ),
            )
        })?;
    let mode = scale_mode(K, w)?;
    let mut out = Vec::with_capacity(launches.len());
    for l in &launches {
        let mut p = base;
        set_pieces(&mut p, l);
        let launch = match &q4_shape {
            Some(sh) => q4::launch(ctx, &q4::MM_Q4_IDS, w, sh, norm.is_some()),
            None => vec_launch(ctx, &MM_VEC_IDS, w, tv, mode, None),
        };
        out.push(
            launch
                .bind("wa", &l.a.buffer)
                .bind("wb", &l.b.buffer)
                .bind("scales", &w.meta)
                .bind("xs", args.x)
                .bind("ys", args.y)
                .bind("xs4", args.x)
                .bind("ids", args.ids)
                // The fused norm's weight (x when there is none: never read).
                .bind("nw4", norm.map_or(args.x, |n| n.weight))
                .params(&p)
                .grid(grid_1d(p.groups))
                .record()?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SwiGlu output column of every expert is covered by exactly one
    /// (gate piece, up piece) pair, whatever the split.
    #[test]
    fn swiglu_overlaps_cover_each_column_once() {
        let splits: [&[(usize, usize)]; 5] = [
            &[(0, 260)],
            &[(0, 50), (50, 47), (97, 163)],
            &[(0, 65), (65, 65), (130, 130)],
            &[(0, 1), (1, 128), (129, 1), (130, 130)],
            &[(0, 7), (7, 100), (107, 3), (110, 150)],
        ];
        for ranges in splits {
            // Dense (one "expert" of all 260 rows), 2 experts, 10 experts.
            for rpe in [260usize, 130, 26] {
                let half = rpe / 2;
                for e in 0..260 / rpe {
                    let mut covered = vec![0; half];
                    for &a in ranges {
                        for &b in ranges {
                            if let Some((lo, hi)) = swiglu_overlap(a, b, e * rpe, half) {
                                for (j, c) in covered.iter_mut().enumerate().take(hi).skip(lo) {
                                    assert!(a.0 <= e * rpe + j && e * rpe + j < a.0 + a.1);
                                    assert!(
                                        b.0 <= e * rpe + half + j && e * rpe + half + j < b.0 + b.1
                                    );
                                    *c += 1;
                                }
                            }
                        }
                    }
                    assert!(
                        covered.iter().all(|&c| c == 1),
                        "{ranges:?} rpe {rpe} e {e}: {covered:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn gemv_width_follows_rows_and_grid() {
        // The H100's wave (132 SMs × 4 workgroups).
        const WAVE: u32 = 528;
        let h100 = Some(WAVE);
        // One thread per chunk, 64..=256, whatever the grid.
        assert_eq!(vec_width(10, None, h100), 64);
        assert_eq!(vec_width(100, Some(1000), h100), 128);
        assert_eq!(vec_width(257, None, h100), 256);
        // Wide rows: 256 threads unless one wave of 128-thread groups holds the launch.
        assert_eq!(vec_width(256, Some(16), h100), 256);
        assert_eq!(vec_width(256, Some(WAVE), h100), 256);
        assert_eq!(vec_width(256, Some(WAVE + 1), h100), 128);
        assert_eq!(vec_width(768, Some(1024), h100), 128);
        assert_eq!(vec_width(256, Some(2 * WAVE), h100), 128);
        assert_eq!(vec_width(256, Some(2 * WAVE + 1), h100), 256);
        assert_eq!(vec_width(256, Some(6144), h100), 256);
        // Another wave moves the window; an unknown adapter keeps 256.
        assert_eq!(vec_width(256, Some(WAVE + 1), Some(1000)), 256);
        assert_eq!(vec_width(256, Some(1001), Some(1000)), 128);
        for g in [16, WAVE, WAVE + 1, 1024, 2 * WAVE, 6144] {
            assert_eq!(vec_width(256, Some(g), None), 256);
            assert_eq!(vec_width(100, Some(g), None), 128);
        }
    }
}
