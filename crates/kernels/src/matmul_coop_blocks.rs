//! Block-scaled FP8 GEMM on tensor cores with the block scale folded into the
//! activations: `mm_coop_blocks` in `shaders/matmul_coop_blocks.wgsl`, and
//! `mm_tile_blocks` in `shaders/matmul_tile_blocks.wgsl`, which computes what
//! its fast variant computes on adapters without cooperative matrices.
//!
//! E4M3 and E5M2 values `q` are exact in f16 and a 128 × 128 block scale is one
//! number per (weight row block, column block), so for output `(t, n)`
//! `y = 2⁻ᵉ Σₖ [xₖ · (s(n, k) · 2ᵉ)] · q(n, k)`: W is staged as `q` (exact) and
//! x as `xₖ · s(n, k) · 2ᵉ`, where `e` (per token row and scale row) puts
//! `maxₖ |xₖ · s(n, k)|` (f32 products) in `[2¹⁴, 2¹⁵)`: nothing overflows
//! f16, and precision is relative to the row's largest scaled element
//! whatever the spread of the scales.
//! Every product is exact in f32; the only rounding is that of the scaled x:
//! - exact ([`MatmulPrecision::Exact`](crate::MatmulPrecision::Exact)): split
//!   into `hi` (11 significant bits) + `lo` as in `mm_coop`'s exact variant,
//!   22 significant bits per element (2⁻³⁹ of the row's largest scaled |x|
//!   where `lo` is an f16 subnormal): results as the f32 GEMM's;
//! - fast ([`MatmulPrecision::Fast`](crate::MatmulPrecision::Fast)): rounded
//!   to f16 (nearest even), one product instead of two. The weights stay exact
//!   (`mm_coop`'s fast variant rounds `q · s` to f16).
//!
//! The tile's weight rows are processed in passes, one per scale row among
//! them (usually one; two where a tile straddles two row blocks), each writing
//! its own rows. SwiGLU is two launches (gate rows into y, then the up rows
//! with `y = silu(y) · up`), so a tile never mixes the gate's and the up's
//! scale rows; workgroup memory stays at `mm_coop`'s 47 KiB.
//!
//! Selection ([`covers`]): FP8 weights with block scales narrower than the
//! row, scale rows at least [`MIN_ROWS_PER_SCALE_ROW`] rows on average,
//! [`Tuning::fp8_block_coop`](crate::Tuning) on and no
//! [`f16_matmul`](crate::ContextOptions::f16_matmul). Then `T > 16` runs
//! `mm_coop_blocks` where the adapter has cooperative matrices (exact or fast
//! per the context's precision; forced
//! [`MatmulPath::Coop`](super::MatmulPath::Coop) too), and with fast precision
//! the scalar GEMM runs `mm_tile_blocks` (what CI's lavapipe checks). With the
//! switch off, the earlier paths run (exact: the scalar tile GEMM; fast:
//! `mm_coop` with `f16(q · s)` and `mm_tile`'s emulation of it).

use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, GpuWeight, Launch, MatmulPrecision, WeightFormat};

crate::shader!(MATMUL_COOP_BLOCKS, "matmul_coop_blocks.wgsl");
crate::shader!(MATMUL_TILE_BLOCKS, "matmul_tile_blocks.wgsl");

pub(super) static MM_COOP_BLOCKS: KernelSpec = KernelSpec {
    label: "matmul_coop_blocks",
    parts: &[
        Part::File(&MATMUL_COOP_BLOCKS),
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
    ],
    entry: "mm_coop_blocks",
    uniforms: &[&super::MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

pub(super) static MM_TILE_BLOCKS: KernelSpec = KernelSpec {
    label: "matmul_tile_blocks",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
        Part::File(&MATMUL_TILE_BLOCKS),
    ],
    entry: "mm_tile_blocks",
    uniforms: &[&super::MmParams::LAYOUT],
    needs: Needs::Baseline,
};

/// Workgroup memory of `mm_coop_blocks`: x hi, x lo and W tiles (3 × 10 KiB),
/// two result fragments per subgroup (16 KiB), per token row exponent and
/// per tile row scale base (2 × 512 bytes), two words for the segment search.
const SHARED_BYTES: u32 = 3 * 10 * 1024 + 16 * 1024 + 2 * 512 + 8;

/// Output tile of `mm_coop_blocks`: tokens × weight rows.
const TILE: u32 = 128;
/// Output tile of `mm_tile_blocks`.
const TILE_SCALAR: u32 = 64;

/// Fewest weight rows per scale row (on average) for which [`covers`] takes a
/// weight: each distinct scale row in a 128-row tile costs a pass over K.
pub const MIN_ROWS_PER_SCALE_ROW: usize = 64;

/// Threads per workgroup (8 subgroups), or `None` where the device cannot run
/// `mm_coop_blocks` (the conditions of `mm_coop`, with this kernel's memory).
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

/// Scale rows (block rows over all sources) of a block-scaled weight, at
/// least: [`GpuWeight`] does not record the block height, but its scale table
/// holds `rows` row entries and then `ceil(cols / block_cols)` values per
/// scale row (the buffer is padded by up to 3 words, hence the rounding down).
fn scale_rows(w: &GpuWeight) -> usize {
    let words = (w.meta.size() / 4) as usize;
    let per_row = w.cols.div_ceil(w.block_cols.max(1));
    words.saturating_sub(w.rows + 3) / per_row.max(1)
}

/// Whether `w` is a weight this family takes in `ctx` (module doc): FP8 with
/// block scales narrower than the row, coarse scale rows, the switch on, no
/// `f16_matmul`. Independent of the adapter's cooperative matrices, so the
/// scalar emulation follows the same rule as the coop kernel.
pub(super) fn covers(ctx: &GpuContext, w: &GpuWeight) -> bool {
    matches!(w.format, WeightFormat::E4M3 | WeightFormat::E5M2)
        && w.block_cols < w.cols
        && ctx.tuning.fp8_block_coop
        && !ctx.f16_matmul
        && scale_rows(w) * MIN_ROWS_PER_SCALE_ROW <= w.rows.max(MIN_ROWS_PER_SCALE_ROW)
}

/// Whether `mm_coop_blocks` runs `w` on this adapter.
pub(super) fn applies(ctx: &GpuContext, w: &GpuWeight) -> bool {
    covers(ctx, w) && workgroup_size(ctx).is_some()
}

/// Whether the scalar GEMM of `w` runs `mm_tile_blocks` (fast precision on a
/// covered weight) instead of `mm_tile`.
pub(super) fn emulates(ctx: &GpuContext, w: &GpuWeight) -> bool {
    covers(ctx, w) && ctx.precision == MatmulPrecision::Fast
}

/// Workgroup grid (along outputs, along tokens) for `n` outputs and `t`
/// tokens: `coop` for `mm_coop_blocks`, else `mm_tile_blocks`.
pub(super) fn grid(n: u32, t: u32, coop: bool) -> (u32, u32) {
    let tile = if coop { TILE } else { TILE_SCALAR };
    (n.div_ceil(tile), t.div_ceil(tile))
}

/// The `epi` values of the launches of one piece launch: one for Store
/// (0) and Accumulate (1); for SwiGLU the gate rows stored (0), then the up
/// rows combined with them (2).
pub(super) fn epilogues(epi: u32) -> &'static [u32] {
    match epi {
        0 => &[0],
        1 => &[1],
        _ => &[0, 2],
    }
}

/// A `mm_coop_blocks` launch for `w` (call only where [`applies`]), or a
/// `mm_tile_blocks` one when `coop` is false: the exact variant unless the
/// context's precision is fast.
pub(super) fn launch<'a>(ctx: &'a GpuContext, w: &GpuWeight, coop: bool) -> Launch<'a> {
    if coop {
        ctx.launch(&MM_COOP_BLOCKS)
            .constant("WG", workgroup_size(ctx).unwrap_or(256))
            .constant("FORMAT", w.format as u32)
            .constant(
                "EXACT",
                f64::from(u8::from(ctx.precision != MatmulPrecision::Fast)),
            )
    } else {
        ctx.launch(&MM_TILE_BLOCKS)
            .constant("FORMAT", w.format as u32)
    }
}
