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
use crate::view::{check_rows, check_vector, Dtype, TensorView};
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

/// `y[r] = x[r] / sqrt(mean(x[r]²) + eps) · (one_plus ? 1 + w : w)` for the
/// rows `r` of `x` (dense f32 `[rows, width]`, e.g.
/// [`TensorView::f32_rows`]); `y` is dense `[rows, width]` from element 0, `w`
/// holds `width` f32.
pub fn rms_norm(
    ctx: &GpuContext,
    x: &TensorView<'_>,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
    eps: f32,
    one_plus: bool,
) -> Result<Dispatch, KernelError> {
    const K: &str = "rms_norm";
    if x.shape[1] == 0 {
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
    x.check_dense("x")
        .and_then(|_| x.check_shape("x", x.shape, Dtype::F32))
        .map_err(|e| e.in_kernel(K))?;
    let [r, n] = x.shape;
    check_vector(K, "w", w, Dtype::F32, 0, n)?;
    check_rows(K, "y", y, Dtype::F32, 0, n, r, n)?;
    // In bounds of their buffers, so within u32 (checked).
    let (rows, width, x_offset) = (r as u32, n as u32, x.offset as u32);
    let x = x.buffer;
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
