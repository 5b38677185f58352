//! 4-bit MoE experts (GPTQ, AWQ, compressed-tensors W4A16 as the loader
//! packs them: [`WeightFormat::Q4`], see [`crate::int4`]) on the tensor-core
//! grouped GEMM ([`coop`](super::coop), `shaders/moe_group_coop.wgsl`).
//!
//! By default the kernel is `moe_group_coop` itself: it decodes W through
//! `matmul_common.wgsl` like every other matmul, and with `FORMAT` = 5 its
//! `Q4` override stages each 32-column chunk of a weight row as
//! `f16((q - zero) · scale)`: the nibbles decoded exactly by `decode_group`,
//! the zero point and scale of each 4 columns applied in f32 by
//! `scale_group` (so any group size that is a multiple of 4, and gate and up
//! rows each with their own groups), then rounded once to f16 in workgroup
//! memory. That rounding (2⁻¹¹ relative per weight) is what fast precision
//! and `f16_matmul` already accept for x, so [`auto`] takes 4-bit experts
//! there and the BF16 / FP8 variants' pipelines are untouched (another
//! `FORMAT` is another pipeline of the same text).
//!
//! Exact precision keeps the scalar grouped GEMM for 4-bit experts: `q -
//! zero` is exact in f16 but `(q - zero) · scale` is not, and applying each
//! group's scale to its partial sums in f32 would need the accumulator
//! fragments scaled per output column at every group boundary (cooperative
//! matrices have no per-column scaling: a round trip through workgroup
//! memory per group and fragment), so it is left out. Forcing
//! [`MatmulPath::Coop`](crate::matmul::MatmulPath::Coop) runs the exact
//! variant anyway (x exact, W rounded as above).
//!
//! [`WeightFormat::Q4F32`] (scales not exact in f16, e.g. tiny BF16 ones)
//! stays on the scalar grouped GEMM, as on the dense `mm_coop`: its scaled
//! weights may leave f16's normal range.
//!
//! [`Tuning::coop_grouped_q4`](crate::Tuning::coop_grouped_q4) (environment:
//! `QWGPU_COOP_Q4=0` turns it off, `dense` leaves only the dense one on) is
//! the one switch; on by default (`COOP_Q4_BY_DEFAULT` in `tuning.rs`) since
//! it passed on an H100.
//!
//! A W staging of its own for 4-bit weights (more threads per chunk, the
//! scale and zero point loaded a step ahead) is a candidate once hardware
//! can measure whether it beats `moe_group_coop`'s.

use crate::{GpuContext, GpuWeight, MatmulPrecision, WeightFormat};

/// Whether `w` is a 4-bit weight the tensor-core grouped GEMM takes (f16
/// scales and zero points: [`WeightFormat::Q4`]).
pub fn format_ok(w: &GpuWeight) -> bool {
    w.format == WeightFormat::Q4
}

/// Whether `w` is 4-bit (either format), so [`auto`] decides for it.
pub fn is_int4(w: &GpuWeight) -> bool {
    matches!(w.format, WeightFormat::Q4 | WeightFormat::Q4F32)
}

/// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) runs the
/// 4-bit weight `w` on the tensor-core grouped GEMM (where the adapter takes
/// it at all, [`coop::supported`](super::coop::supported)): the switch on, a
/// [`format_ok`] weight, fast precision or `f16_matmul` (module docs).
pub fn auto(ctx: &GpuContext, w: &GpuWeight) -> bool {
    ctx.tuning.coop_grouped_q4
        && format_ok(w)
        && (ctx.f16_matmul || ctx.precision == MatmulPrecision::Fast)
}
