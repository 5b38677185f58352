//! RMSNorm: `y[r] = x[r] / sqrt(mean(x[r]²) + eps) · (1 + w)` (Qwen3.5's
//! zero-centred decoder, final and q/k norms) or `· w` (plain weight).
//!
//! One workgroup per row: the row's sum of squares is a workgroup reduction
//! (subgroups where the device has them, a shared-memory tree otherwise), then
//! each invocation scales its own elements. Math is f32 throughout. Rows whose
//! width and start are multiples of 4 take `vec4` loads (every Qwen3.5 width);
//! other sizes take a scalar entry point of the same file. The workgroup size
//! follows the width (64 invocations for narrow q/k-norm rows, 256 for hidden
//! rows) so small rows do not leave most of a workgroup idle.

use crate::dispatch::{grid_1d, Dispatch};
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{check_rows, check_vector, Dtype};
use crate::{GpuContext, KernelError};

crate::shader!(NORM, "norm.wgsl");

crate::uniform_struct! {
    /// Mirrors `struct NormParams` in `shaders/norm.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct NormParams as "NormParams" {
        x_off: u32,
        rows: u32,
        width: u32,
        one_plus: u32,
        eps: f32,
        _pad: [u32; 3],
    }
}

const NORM_PARTS: &[Part] = &[Part::Reduce, Part::File(&NORM)];

const fn norm_spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        label: "rms_norm",
        parts: NORM_PARTS,
        entry,
        uniforms: &[&NormParams::LAYOUT],
        needs: Needs::Baseline,
    }
}

static RMS_NORM: KernelSpec = norm_spec("rms_norm");
static RMS_NORM_VEC4: KernelSpec = norm_spec("rms_norm_vec4");

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[&RMS_NORM, &RMS_NORM_VEC4];

/// Workgroup size for a row of `n` loads: 64 for short rows, else 256 (never
/// below the subgroup size, which the subgroup reduction needs).
fn workgroup(ctx: &GpuContext, n: u32) -> u32 {
    let wg: u32 = if n > 128 { 256 } else { 64 };
    let wg = if ctx.caps.subgroups {
        wg.max(ctx.caps.subgroup_sizes.1.next_power_of_two())
    } else {
        wg
    };
    wg.min(ctx.limits.max_compute_invocations_per_workgroup.max(64))
}

/// `y[r] = x[r] / sqrt(mean(x[r]²) + eps) · (one_plus ? 1 + w : w)` for rows
/// `r < rows`; row `r` of `x` starts at element `x_offset + r·width`, `y` is
/// dense `[rows, width]`, `w` holds `width` f32.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    x_offset: u32,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: u32,
    width: u32,
    eps: f32,
    one_plus: bool,
) -> Result<Dispatch, KernelError> {
    const K: &str = "rms_norm";
    if width == 0 {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: "width 0".into(),
        });
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: format!("eps {eps} must be finite and >= 0"),
        });
    }
    let (r, n) = (rows as u64, width as u64);
    check_rows(K, "x", x, Dtype::F32, x_offset as u64, n, r, n)?;
    check_vector(K, "w", w, Dtype::F32, 0, n)?;
    check_rows(K, "y", y, Dtype::F32, 0, n, r, n)?;
    let vec4 = width.is_multiple_of(4) && x_offset.is_multiple_of(4);
    let (spec, loads) = if vec4 {
        (&RMS_NORM_VEC4, width / 4)
    } else {
        (&RMS_NORM, width)
    };
    ctx.launch(spec)
        .constant("WG", workgroup(ctx, loads))
        // The vec4 and scalar entry points name their views of one binding apart.
        .bind("x4", x)
        .bind("x1", x)
        .bind("w4", w)
        .bind("w1", w)
        .bind("y4", y)
        .bind("y1", y)
        .params(&NormParams {
            x_off: x_offset,
            rows,
            width,
            one_plus: one_plus as u32,
            eps,
            _pad: [0; 3],
        })
        .grid(grid_1d(rows))
        .record()
}
