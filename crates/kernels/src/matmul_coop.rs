//! Cooperative-matrix (tensor core) path of the prefill GEMM, `mm_coop` in
//! `shaders/matmul_coop.wgsl`: the scalar tile kernel's 64 × 64 output tile,
//! but the products run as 16 × 16 × 16 f16 fragments with f32 accumulators
//! (H100, Vulkan, trusted modules, GPU timestamps, T = 4096 on a 4096² BF16
//! weight: 33.7 TFLOP/s against 15.5 for the scalar tile kernel in the same
//! run; `wgsl-kernels.md` §2.2 saw 72 with a BF16-only kernel, so staging and
//! tile size are tuning items). Four
//! subgroups × 2 × 2 fragments; x (f32 → f16) and W (decoded, scaled in f32,
//! then rounded to f16) are staged in workgroup memory, and the result passes
//! through workgroup memory, one fragment per subgroup at a time, so the
//! epilogues are the scalar kernel's; 12 KiB of workgroup memory in all,
//! because the kernel is occupancy-bound (see `SHARED_BYTES`).
//!
//! Precision: inputs are rounded to f16 (relative error ≤ 2⁻¹¹ each), so an
//! output is within about 1e-3 · Σ|xᵢ·wᵢ| of the exact value. Magnitudes above
//! 65504 (x, or a weight times its scale) become ±inf — not clamped — and give
//! inf/NaN outputs; post-RMSNorm activations and checkpoint weights fit. The
//! path is used for F32, BF16, F16 and E4M3 weights (E4M3: |w| ≤ 448 times the
//! scale, so any scale ≤ 146 fits; FP8 checkpoint block scales are ≪ 1), not
//! for E5M2 (57344 · scale overflows f16 for any scale above ~1.14).
//!
//! Needs `cooperative_matrix` and `f16`, plus subgroups of one fixed size
//! (the shader assigns fragments by `subgroup_id` to exactly 4 subgroups, so
//! the workgroup is 4 × that size) and 12 KiB of workgroup memory.

use crate::shaders::{self, ShaderSource};
use crate::{GpuContext, GpuWeight, PipelineKey, WeightFormat};

crate::shader!(MATMUL_COOP, "matmul_coop.wgsl");

/// Workgroup memory of `mm_coop`: x and W tiles (2 × 4 KiB f16) and a quarter of the f32 result
/// tile (4 KiB). Occupancy-bound on the H100 (4096³ BF16): 32 KiB (64-column steps) ran at 9
/// TFLOP/s, 24 KiB at 18, 16 KiB at 25, 12 KiB at 34 (scalar tile kernel: 15.5).
const SHARED_BYTES: u32 = 12 * 1024;

/// Shader modules of the coop path (they need f16, subgroups and cooperative matrices).
pub fn modules() -> Vec<(Vec<&'static ShaderSource>, bool)> {
    vec![(
        vec![&MATMUL_COOP, &shaders::NUMERIC, &super::MATMUL_COMMON],
        true,
    )]
}

/// Threads per workgroup (4 subgroups), or `None` where the device cannot run
/// the coop kernel at all.
fn workgroup_size(ctx: &GpuContext) -> Option<u32> {
    let c = &ctx.caps;
    let (lo, hi) = c.subgroup_sizes;
    let wg = 4 * hi;
    (c.cooperative_matrix
        && c.f16
        && c.subgroups
        && lo == hi
        && lo > 0
        && wg <= ctx.limits.max_compute_invocations_per_workgroup
        && wg <= ctx.limits.max_compute_workgroup_size_x
        && SHARED_BYTES <= ctx.limits.max_compute_workgroup_storage_size)
        .then_some(wg)
}

/// Whether the device runs the coop kernel and `w`'s format is one it takes
/// (module doc: E5M2 with scales may overflow f16).
pub(super) fn supported(ctx: &GpuContext, w: &GpuWeight) -> bool {
    workgroup_size(ctx).is_some() && w.format != WeightFormat::E5M2
}

/// Whether [`MatmulPath::Auto`](super::MatmulPath::Auto) runs a `t`-token
/// GEMM (`t` > [`MAX_VEC_T`](super::MAX_VEC_T)) on this path.
pub(super) fn auto(ctx: &GpuContext, w: &GpuWeight, _t: u32) -> bool {
    ctx.f16_matmul && supported(ctx, w)
}

/// Workgroup grid (along outputs, along tokens) for `n` outputs (SwiGLU
/// columns when `swiglu`) and `t` tokens.
pub(super) fn grid(n: u32, t: u32, swiglu: bool) -> (u32, u32) {
    const TILE: u32 = 64;
    (n.div_ceil(if swiglu { TILE / 2 } else { TILE }), t.div_ceil(TILE))
}

/// Why [`supported`] is false, for error messages.
pub(super) fn unsupported_reason(ctx: &GpuContext, w: &GpuWeight) -> String {
    if w.format == WeightFormat::E5M2 {
        format!(
            "weight `{}` is E5M2 (scaled values may overflow f16)",
            w.name
        )
    } else {
        format!(
            "adapter `{}` lacks cooperative matrices, f16, subgroups of one size or 12 KiB of workgroup memory",
            ctx.info.name
        )
    }
}

/// The `mm_coop` pipeline key for `w` (call only when [`supported`]).
pub(super) fn pipeline_key(ctx: &GpuContext, w: &GpuWeight) -> PipelineKey {
    PipelineKey::new(
        &[&MATMUL_COOP, &shaders::NUMERIC, &super::MATMUL_COMMON],
        "mm_coop",
    )
    .constant("WG", workgroup_size(ctx).unwrap_or(128))
    .constant("FORMAT", w.format as u32)
}
