//! Tensor-core (cooperative-matrix) path of the MoE grouped GEMM,
//! `moe_group_coop` in `shaders/moe_group_coop.wgsl`: the tile of
//! [`mm_coop`](crate::matmul) (8 subgroups of 2 × 4 16 × 16 fragments, 128
//! rows × 128 weight rows, 32-column steps, padded f16 staging, the next
//! step's loads in flight during the multiply-adds) over one grouping tile of
//! [`moe_group`](super::moe_group) per workgroup row: up to 128 pairs of one
//! expert, their x rows gathered through the permutation, the results stored
//! to the pairs' own y rows with the scalar grouped GEMM's epilogues.
//!
//! Precision (per context, as `mm_coop`'s variants):
//! - exact (the default): x rows scaled by a power of two and split in two
//!   f16 halves, both multiplied (results as the f32 GEMM's where W is exact
//!   in f16: BF16, F16, E4M3 with a scale constant along each row, applied in
//!   f32 in the epilogue);
//! - fast ([`MatmulPrecision::Fast`]): one
//!   half, `f16(x·s)`;
//! - plain ([`ContextOptions::f16_matmul`](crate::ContextOptions::f16_matmul)):
//!   `f16(x)`.
//!
//! 128 × 128 block-scaled FP8 experts: the block scale is multiplied into the
//! weight in f32 while staging and the product rounded to f16 (`f16(q·s)`,
//! 2⁻¹¹ relative per weight), as `mm_coop` does. Folding the scale into the
//! staged x per 128-wide K slice instead (exact) would need one x tile per
//! row block of the output tile, and a SwiGLU tile spans two (gate and up):
//! with exact precision's two x halves that is past 48 KiB of workgroup
//! memory. So [`auto`] takes block-scaled experts only with fast precision or
//! `f16_matmul` (where the dense GEMM rounds them the same way) and leaves
//! them on the scalar grouped GEMM under exact precision; forcing
//! [`MatmulPath::Coop`](crate::matmul::MatmulPath::Coop) runs them anyway.
//! 4-bit experts with f16 scales are staged as `f16((q - zero)·scale)` and
//! taken the same way ([`coop_q4`](super::coop_q4)); E5M2 and 4-bit experts
//! with f32 scales stay on the scalar grouped GEMM.
//!
//! A grouping tile is often mostly padding (an expert's last tile; at
//! 512-token prefill steps of a 256-expert top-8 MoE, ~16 pairs per expert):
//! with [`SKIP_EMPTY_ROWS`] the subgroups whose 32 (or last 16) rows hold no
//! pair skip their multiply-adds.
//!
//! [`ENABLED`] is the one switch that makes this the grouped GEMM's default on
//! adapters with cooperative matrices.

use crate::matmul::MmParams;
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, GpuWeight, Launch, MatmulPrecision, WeightFormat};

crate::shader!(MOE_GROUP_COOP, "moe_group_coop.wgsl");

/// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) runs the
/// grouped GEMM on tensor cores where [`auto`] allows it (false: always the
/// scalar grouped GEMM unless `Coop` is forced).
pub const ENABLED: bool = true;

/// Whether subgroups skip the multiply-adds of fragment rows past a tile's
/// pairs (the shader's `SKIP`; the stored outputs are the same bits either
/// way). Prefill steps of 512 tokens give a 35B-A3B-like MoE (256 experts,
/// top-8) about 16 pairs per expert, so most of a 128-pair tile is padding
/// and without skipping ~7/8 of the multiply-adds are wasted. The skip is a
/// branch that is uniform per subgroup, not per workgroup (cooperative
/// matrices need the former): if the tensor-core grouped GEMM fails on an
/// adapter, turn this off before [`ENABLED`]. `grouped_coop_bench_35b_a3b`
/// prints both settings.
pub const SKIP_EMPTY_ROWS: bool = true;

pub(crate) static GROUP_COOP: KernelSpec = KernelSpec {
    label: "matmul_grouped_coop",
    parts: &[
        Part::File(&MOE_GROUP_COOP),
        Part::File(&shaders::NUMERIC),
        Part::File(&crate::matmul::MATMUL_COMMON),
    ],
    entry: "moe_group_coop",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

/// Pairs per workgroup (rows of a tile): one grouping tile of 128 pairs.
pub const TILE_PAIRS: u32 = 128;
/// Weight rows per workgroup (64 SwiGLU columns).
pub const TILE_ROWS: u32 = 128;

/// Workgroup memory: x hi, x lo and W tiles (3 × 128 × 40 halves), two result
/// fragments per subgroup (8 × 2 KiB), per-row scales and pair indices
/// (3 × 512 bytes).
const SHARED_BYTES: u32 = 3 * 10 * 1024 + 16 * 1024 + 3 * 512;

/// Threads per workgroup (8 subgroups), or `None` where the adapter cannot run
/// the kernel. Subgroups of at least 16 keep the per-thread staging registers
/// at 8 vec4s (the shader's array size).
pub fn workgroup_size(ctx: &GpuContext) -> Option<u32> {
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

/// Whether the adapter runs the kernel and `w`'s format is one it takes
/// (BF16, F16, F32, E4M3 with any scales, 4-bit with f16 scales; not E5M2
/// or 4-bit with f32 scales).
pub fn supported(ctx: &GpuContext, w: &GpuWeight) -> bool {
    let format_ok = matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::F32 | WeightFormat::E4M3
    ) || super::coop_q4::format_ok(w);
    workgroup_size(ctx).is_some() && format_ok
}

/// Why [`supported`] is false, for error messages.
pub fn unsupported_reason(ctx: &GpuContext, w: &GpuWeight) -> String {
    if workgroup_size(ctx).is_some() {
        format!(
            "weight `{w_name}` is {w_format:?}: the tensor-core grouped GEMM takes BF16, F16, F32, \
             E4M3 and Q4 (4-bit with f16 scales)",
            w_name = w.name,
            w_format = w.format
        )
    } else {
        format!(
            "adapter `{adapter}` lacks cooperative matrices, f16, subgroups of one size (>= 16) \
             or {SHARED_BYTES} bytes of workgroup memory",
            adapter = ctx.info.name
        )
    }
}

/// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) takes this
/// kernel for `w` (with [`ENABLED`]): as the dense GEMM's Auto, the exact
/// variant where W is exact in f16 with a scale constant along each row
/// (BF16, F16, E4M3), with fast precision also block-scaled E4M3, with
/// `f16_matmul` every supported weight; 4-bit weights as
/// [`coop_q4::auto`](super::coop_q4::auto) says.
pub fn auto(ctx: &GpuContext, w: &GpuWeight) -> bool {
    let in_f16 = matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3
    );
    let exact = in_f16 && w.block_cols >= w.cols;
    let fast = ctx.precision == MatmulPrecision::Fast && w.format == WeightFormat::E4M3;
    let wanted = if super::coop_q4::is_int4(w) {
        super::coop_q4::auto(ctx, w)
    } else {
        ctx.f16_matmul || exact || fast
    };
    ENABLED && supported(ctx, w) && wanted
}

/// Pairs per grouping tile that the grouped GEMM of `ctx` wants: 128 where
/// this kernel can run (the scalar GEMM takes such tiles in halves), else 64.
pub fn preferred_tile_pairs(ctx: &GpuContext) -> u32 {
    if ENABLED && workgroup_size(ctx).is_some() {
        TILE_PAIRS
    } else {
        super::TILE_PAIRS
    }
}

/// A `moe_group_coop` launch for `w` (call only when [`supported`]): the
/// plain f16 variant when the context opts into f16 matmuls, else the exact
/// one (one f16 half with fast precision).
pub(crate) fn launch<'a>(ctx: &'a GpuContext, w: &GpuWeight) -> Launch<'a> {
    ctx.launch(&GROUP_COOP)
        .constant("WG", workgroup_size(ctx).unwrap_or(256))
        .constant("FORMAT", w.format as u32)
        .constant("EXACT", f64::from(u8::from(!ctx.f16_matmul)))
        .constant(
            "SPLIT",
            f64::from(u8::from(ctx.precision != MatmulPrecision::Fast)),
        )
        .constant("SKIP", f64::from(u8::from(SKIP_EMPTY_ROWS)))
}
