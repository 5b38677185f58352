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
use crate::shaders::{ShaderSource, REDUCE_SHARED, REDUCE_SUBGROUP};
use crate::{GpuContext, KernelError, PipelineKey};

crate::shader!(NORM, "norm.wgsl");

/// Mirrors `struct NormParams` in `shaders/norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    x_off: u32,
    rows: u32,
    width: u32,
    one_plus: u32,
    eps: f32,
    _pad: [u32; 3],
}

fn reduce(ctx: &GpuContext) -> &'static ShaderSource {
    if ctx.caps.subgroups {
        &REDUCE_SUBGROUP
    } else {
        &REDUCE_SHARED
    }
}

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

fn check_range(
    kernel: &'static str,
    what: &str,
    buf: &wgpu::Buffer,
    start: u64,
    words: u64,
) -> Result<(), KernelError> {
    if (start + words) * 4 > buf.size() {
        return Err(KernelError::Arguments {
            kernel,
            detail: format!(
                "{what} needs f32 elements {start}..{} but its buffer has {} bytes",
                start + words,
                buf.size()
            ),
        });
    }
    Ok(())
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
    let n = rows as u64 * width as u64;
    check_range(K, "x", x, x_offset as u64, n)?;
    check_range(K, "w", w, 0, width as u64)?;
    check_range(K, "y", y, 0, n)?;
    let vec4 = width.is_multiple_of(4) && x_offset.is_multiple_of(4);
    let (entry, loads) = if vec4 {
        ("rms_norm_vec4", width / 4)
    } else {
        ("rms_norm", width)
    };
    let wg = workgroup(ctx, loads);
    let key = PipelineKey::new(&[reduce(ctx), &NORM], entry).constant("WG", wg);
    let pipeline = ctx.pipeline(&key)?;
    let params = ctx.uniform(
        "rms_norm params",
        &NormParams {
            x_off: x_offset,
            rows,
            width,
            one_plus: one_plus as u32,
            eps,
            _pad: [0; 3],
        },
    );
    let bind = ctx.bind(
        &pipeline,
        "rms_norm",
        &[
            x.as_entire_binding(),
            w.as_entire_binding(),
            y.as_entire_binding(),
            params.as_entire_binding(),
        ],
    );
    Ok(Dispatch {
        label: "rms_norm",
        pipeline,
        bind,
        groups: grid_1d(rows),
    })
}

/// Every shader module (file list) this family builds, and whether it needs subgroups/f16.
pub fn modules() -> Vec<(Vec<&'static ShaderSource>, bool)> {
    vec![
        (vec![&REDUCE_SUBGROUP, &NORM], true),
        (vec![&REDUCE_SHARED, &NORM], false),
    ]
}
