//! Cooperative-matrix (tensor core) path of the prefill GEMM, `mm_coop` in
//! `shaders/matmul_coop.wgsl`: 128 tokens × 128 weight rows per workgroup of 8
//! subgroups, each 2 × 4 fragments of 16 × 16 × 16 (f16 inputs, f32
//! accumulators); x and W (decoded, rounded to f16) are staged in workgroup
//! memory with padded rows, and the next 32-column step's global
//! loads are in flight in registers during the current step's multiply-adds.
//! The result passes through workgroup memory so the epilogues are the scalar
//! kernel's. Scales: where a weight's scale is constant along each row
//! (unscaled, per tensor, per shard, per channel, blocks at least as wide as
//! the row) W is staged as stored and the epilogue multiplies by the row's
//! scale in f32; block scales narrower than the row are multiplied in f32
//! while staging, before the f16 rounding. Numbers: see the end of this doc.
//!
//! Three variants (overrides `EXACT` and `SPLIT`), chosen per context by [`launch`]:
//! - Exact (the default, what [`MatmulPath::Auto`](super::MatmulPath::Auto)
//!   runs above 16 tokens): each x row is multiplied by a power of two `s`
//!   (its largest |x| lands in [2¹⁴, 2¹⁵); a pre-pass of the workgroup over its
//!   x rows) and split as `hi` = x·s rounded to 11 significant bits (integer
//!   ops, so exact in f16), `lo = f16(x·s − hi)`; `hi·W + lo·W` accumulate in
//!   the same f32 accumulators and the epilogue multiplies by `1/s` (exact).
//!   x keeps 22 significant bits (relative error ≤ 2⁻²², or 2⁻³⁹ of the row's
//!   largest |x| for elements whose `lo` is an f16 subnormal) and no finite
//!   |x| overflows (an inf or NaN x gives NaN outputs). Stored BF16 values
//!   are exact in f16 within [2⁻¹⁴, 65504] (smaller ones are f16 subnormals:
//!   absolute error ≤ 2⁻²⁵; checkpoint weights are far below 65504), F16 and
//!   every E4M3 value exactly, so with row-constant scales (applied in f32 in
//!   the epilogue) outputs match the f32 GEMM to ~1e-6 of Σ|x·w| (tested at
//!   1e-5 · Σ|x·w|, x rows from 1e-6 to 1e6; 4096-deep outputs differ from
//!   the scalar GEMM's by ~1e-5 of the largest |y|). That is what
//!   [`auto`] requires. With block scales narrower than the row (FP8
//!   128 × 128 blocks) the scaled weight is rounded to f16: up to 2⁻¹¹
//!   relative per weight, so Auto keeps such weights on the scalar GEMM, as it
//!   does F32 weights (rounded to f16 as well); forcing
//!   [`MatmulPath::Coop`](super::MatmulPath::Coop) runs them anyway.
//! - Fast ([`MatmulPrecision::Fast`](crate::MatmulPrecision::Fast)): the
//!   exact variant's per-row power of two, then `f16(x·s)` (nearest even) as
//!   the only part: half the multiply-adds, the same pre-pass; 2⁻¹¹ relative
//!   per x element (~1e-3 · Σ|x·w| per output at most). The scalar tile GEMM
//!   emulates this rounding in the same contexts (`FAST_X`), so adapters
//!   without cooperative matrices compute what this variant computes.
//! - Plain ([`ContextOptions::f16_matmul`](crate::ContextOptions::f16_matmul)):
//!   x rounded to f16 directly (2⁻¹¹ relative, ~1e-3 · Σ|x·w| per output), half
//!   the multiply-adds and no pre-pass; |x| above 65504 becomes ±inf and gives
//!   inf/NaN outputs (post-RMSNorm activations fit).
//!
//! Both: a staged weight above 65504 becomes ±inf: E5M2 (57344 · a block
//! scale) is not supported at all; E4M3 fits for any block scale ≤ 146
//! (checkpoint block scales are ≪ 1).
//!
//! Needs `cooperative_matrix` and `f16`, plus subgroups of one fixed size of at
//! least 16 (the shader assigns fragments by `subgroup_id` to exactly 8
//! subgroups, so the workgroup is 8 × that size) and 47 KiB of workgroup
//! memory (st_x, st_xl, st_w: 128 × 40 halves each; st_y: 8 × 2 fragments of
//! f32; two per-row scale arrays).
//!
//! H100 (Vulkan, trusted modules, GPU timestamps, TFLOP/s; `cargo test
//! --release --test kernels -- --ignored --exact
//! matmul_coop::coop_vs_scalar_speed`; measured before the row-scale epilogue was added, which
//! adds a scale load per output):
//!
//! | weight `[rows, cols]`, T             | scalar | first coop (64², f16) | plain | exact |
//! |--------------------------------------|-------:|----------------------:|------:|------:|
//! | BF16 `[4096, 4096]`, 4096            |   15.5 |                  33.5 |  77.2 |  42.4 |
//! | BF16 `[4096, 4096]`, 512             |   14.6 |                       |  73.7 |  40.8 |
//! | BF16 `[12288, 4096]`, 4096           |   15.9 |                       |  77.0 |  40.9 |
//! | BF16 `[12288, 4096]`, 512            |   15.3 |                       |       |  39.1 |
//! | BF16 `[4096, 12288]`, 512, Accumulate |       |                       |       |  35.1 |
//! | BF16 `[24576, 4096]`, 512, SwiGLU    |        |                       |  70.4 |  38.8 |
//! | E4M3 128² blocks `[4096, 4096]`, 512 |   14.2 |                       |       |  49.6 |
//!
//! The exact variant runs twice the multiply-adds plus its pre-pass (x is read
//! twice). Unpadded 64-byte rows (`LDS` = 32) ran 1.3–2.9× slower than the
//! padded 80-byte rows. Caveat: in one bench process later shapes ran up to
//! 2.7× slower than the same shape at its start (scalar GEMM included; empty
//! cells are such runs), so only adjacent numbers compare. The E4M3 row is
//! forced Coop (Auto keeps 128-column blocks on the scalar GEMM).

use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, GpuWeight, Launch, WeightFormat};

crate::shader!(MATMUL_COOP, "matmul_coop.wgsl");

pub(super) static MM_COOP: KernelSpec = KernelSpec {
    label: "matmul_coop",
    parts: &[
        Part::File(&MATMUL_COOP),
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
    ],
    entry: "mm_coop",
    uniforms: &[&super::MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

/// Workgroup memory of `mm_coop`: x hi, x lo and W tiles (3 × 10 KiB f16 at the padded stride),
/// two result fragments per subgroup (16 KiB f32), per-row scales (1 KiB). (The first kernel,
/// 64 × 64 tiles with unpadded rows and no prefetch, measured slower with more than 12 KiB;
/// this one at 47 KiB is 2.3× faster: the unpadded rows' bank conflicts cost more than
/// occupancy here.)
const SHARED_BYTES: u32 = 3 * 10 * 1024 + 16 * 1024 + 1024;

/// Output tile: tokens × weight rows (SwiGLU: half as many output columns).
const TILE: u32 = 128;

/// Threads per workgroup (8 subgroups), or `None` where the device cannot run
/// the coop kernel at all. Subgroups of at least 16 keep the per-thread
/// staging registers at 8 vec4s (the shader's array size).
fn workgroup_size(ctx: &GpuContext) -> Option<u32> {
    let c = &ctx.caps;
    let (lo, hi) = c.subgroup_sizes;
    let wg = 8 * hi;
    (c.cooperative_matrix
        && c.f16
        && c.subgroups
        && lo == hi
        && lo >= 16
        && lo.is_power_of_two()
        && wg <= ctx.limits.max_compute_invocations_per_workgroup
        && wg <= ctx.limits.max_compute_workgroup_size_x
        && SHARED_BYTES <= ctx.limits.max_compute_workgroup_storage_size)
        .then_some(wg)
}

/// Whether the device runs the coop kernel and `w`'s format is one it takes
/// (module doc: E5M2 with scales may overflow f16).
/// 4-bit weights: only f16-scaled ones (`Q4`) in the plain variant
/// (`f16_matmul`) and the fast one (fast precision; W staged as
/// `f16((q - zero) · scale)`, as the scalar tile GEMM's fast emulation
/// rounds it): `(q - zero) · scale` is not exact in f16, so the exact variant
/// would not match the scalar GEMM.
pub(super) fn supported(ctx: &GpuContext, w: &GpuWeight) -> bool {
    let format_ok = match w.format {
        WeightFormat::E5M2 | WeightFormat::Q4F32 => false,
        WeightFormat::Q4 => ctx.f16_matmul || ctx.precision == crate::MatmulPrecision::Fast,
        _ => true,
    };
    workgroup_size(ctx).is_some() && format_ok
}

/// Whether [`MatmulPath::Auto`](super::MatmulPath::Auto) runs a `t`-token
/// GEMM (`t` > [`MAX_VEC_T`](super::MAX_VEC_T)) on this path: the exact
/// variant wherever it matches the f32 GEMM (module doc: BF16, F16 and E4M3
/// with a scale constant along each row; with
/// [`MatmulPrecision::Fast`](crate::MatmulPrecision::Fast) the fast variant,
/// which also takes E4M3 with block scales and, with
/// [`Tuning::coop_dense_q4`](crate::Tuning::coop_dense_q4), 4-bit weights
/// with f16 scales), the plain f16 one for every supported weight when the
/// context opts into f16 matmuls.
pub(super) fn auto(ctx: &GpuContext, w: &GpuWeight, _t: u32) -> bool {
    let in_f16 = matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3
    );
    let exact = in_f16 && w.block_cols >= w.cols;
    // Fast precision also stages block-scaled E4M3 as f16(q·s), which the
    // scalar GEMM's fast emulation reproduces, and 4-bit weights as
    // f16((q - zero)·scale) where Tuning::coop_dense_q4 allows.
    let q4 = w.format == WeightFormat::Q4 && ctx.tuning.coop_dense_q4;
    let fast =
        ctx.precision == crate::MatmulPrecision::Fast && (w.format == WeightFormat::E4M3 || q4);
    supported(ctx, w) && (ctx.f16_matmul || exact || fast)
}

/// Workgroup grid (along outputs, along tokens) for `n` outputs (SwiGLU
/// columns when `swiglu`) and `t` tokens.
pub(super) fn grid(n: u32, t: u32, swiglu: bool) -> (u32, u32) {
    (
        n.div_ceil(if swiglu { TILE / 2 } else { TILE }),
        t.div_ceil(TILE),
    )
}

/// Why [`supported`] is false, for error messages.
pub(super) fn unsupported_reason(ctx: &GpuContext, w: &GpuWeight) -> String {
    if w.format.is_int4() && workgroup_size(ctx).is_some() {
        format!(
            "weight `{w_name}` is 4-bit: the tensor-core path takes f16-exact scales with \
             ContextOptions::f16_matmul only ((q - zero) · scale is not exact in f16)",
            w_name = w.name
        )
    } else if w.format == WeightFormat::E5M2 {
        format!(
            "weight `{}` is E5M2 (scaled values may overflow f16)",
            w.name
        )
    } else {
        format!(
            "adapter `{}` lacks cooperative matrices, f16, subgroups of one size (>= 16) or 47 KiB of workgroup memory",
            ctx.info.name
        )
    }
}

/// A `mm_coop` launch for `w` (call only when [`supported`]): the plain f16
/// variant when the context opts into f16 matmuls, else the exact one, for
/// Auto and forced Coop alike.
pub(super) fn launch<'a>(ctx: &'a GpuContext, w: &GpuWeight) -> Launch<'a> {
    ctx.launch(&MM_COOP)
        .constant("WG", workgroup_size(ctx).unwrap_or(256))
        .constant("FORMAT", w.format as u32)
        .constant("EXACT", f64::from(u8::from(!ctx.f16_matmul)))
        // Fast precision: the scaled x rounded to f16, one product.
        .constant(
            "SPLIT",
            f64::from(u8::from(ctx.precision != crate::MatmulPrecision::Fast)),
        )
}
