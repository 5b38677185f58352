//! MoE routing and combination (spec §2.5).
//!
//! - [`moe_route`]: router logits `[T, E]` → top-k expert ids and renormalised
//!   weights, with `qwgpu_ops::moe::route` semantics. One workgroup per token:
//!   a softmax by workgroup max/sum reductions, then each expert's rank is the
//!   count of experts before it (order: higher probability, then lower index;
//!   E steps from workgroup memory and one barrier, where a bitonic sort took
//!   36 barriers at E = 256); ranks below k are the answer. E ≤ 1024 covers
//!   every Qwen3.5 MoE (E 256/512, k 8/10). Logits must be finite.
//! - [`moe_combine`]: `h[t] += Σ_s w[t,s]·expert_out[t·k+s] + sigmoid(g[t])·shared_out[t]`,
//!   elementwise with `vec4` loads when H is a multiple of 4; the residual add
//!   is fused so the expert outputs are read once.
//!
//! Layouts (f32 unless noted, row-major, dense views from element 0 of their
//! buffers): `logits [T, E]`, `ids [T, k]` u32 and `weights [T, k]` (slot s
//! of token t at `t·k + s`, most likely first), `expert_out [T·k, H]` (row
//! `t·k + s` = the output of expert `ids[t·k + s]` for token t),
//! `shared_out [T, H]`, `gate_logit [T, 1]`, `h [T, H]`.
//!
//! [`grouped`]: the expert matmuls of a prefill as a grouped GEMM (pairs
//! sorted by expert on the GPU, one tiled GEMM over each expert's pairs).

#[path = "moe_grouped.rs"]
pub mod grouped;

use crate::dispatch::{grid_1d, Dispatch};
use crate::shaders::NUMERIC;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{Dtype, TensorView};
use crate::{GpuContext, KernelError};

crate::shader!(MOE_ROUTE, "moe_route.wgsl");
crate::shader!(MOE_COMBINE, "moe_combine.wgsl");

/// Largest expert count [`moe_route`] accepts: its sort buffer (8 bytes per
/// expert, padded to a power of two) must fit WebGPU's 16 KiB of workgroup memory.
pub const MAX_EXPERTS: u32 = 1024;

crate::uniform_struct! {
    /// Mirrors `struct RouteParams` in `shaders/moe_route.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct RouteParams as "RouteParams" {
        t: u32,
        experts: u32,
        top_k: u32,
        _pad: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct CombineParams` in `shaders/moe_combine.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct CombineParams as "CombineParams" {
        t: u32,
        top_k: u32,
        n: u32,
        groups_per_row: u32,
    }
}

static ROUTE: KernelSpec = KernelSpec {
    label: "moe_route",
    parts: &[Part::Reduce, Part::File(&MOE_ROUTE)],
    entry: "moe_route",
    uniforms: &[&RouteParams::LAYOUT],
    needs: Needs::Baseline,
};

const COMBINE_PARTS: &[Part] = &[Part::File(&NUMERIC), Part::File(&MOE_COMBINE)];

const fn combine_spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        label: "moe_combine",
        parts: COMBINE_PARTS,
        entry,
        uniforms: &[&CombineParams::LAYOUT],
        needs: Needs::Baseline,
    }
}

static COMBINE: KernelSpec = combine_spec("moe_combine");
static COMBINE_VEC4: KernelSpec = combine_spec("moe_combine_vec4");

/// The kernels of this family (the grouped GEMM's included).
pub(crate) static SPECS: &[&KernelSpec] = &[
    &ROUTE,
    &COMBINE,
    &COMBINE_VEC4,
    &grouped::GROUP_SORT,
    &grouped::GROUP_GEMM,
    &grouped::coop::GROUP_COOP,
];

/// Router: `logits [T, E]` → softmax over all E in f32, top-k by probability
/// (ties: lower expert index first), renormalised to sum 1. Writes `ids [T, k]`
/// (u32) and `weights [T, k]` (f32), most likely first; `k` is their width.
/// Every view is dense from element 0 of its buffer.
pub fn moe_route(
    ctx: &GpuContext,
    logits: &TensorView<'_>,
    ids: &TensorView<'_>,
    weights: &TensorView<'_>,
) -> Result<Dispatch, KernelError> {
    const K: &str = "moe_route";
    let [t64, experts] = logits.shape;
    let top_k = ids.shape[1];
    if experts == 0 || experts > MAX_EXPERTS as u64 || top_k == 0 || top_k > experts {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: format!(
                "experts {experts}, top_k {top_k}: need 1 <= experts <= {MAX_EXPERTS}, 1 <= top_k <= experts"
            ),
        });
    }
    logits.expect(K, "logits", [t64, experts], Dtype::F32, true)?;
    ids.expect(K, "ids", [t64, top_k], Dtype::U32, true)?;
    weights.expect(K, "weights", [t64, top_k], Dtype::F32, true)?;
    // Inside their buffers, so within u32 (checked).
    let (t, experts, top_k) = (t64 as u32, experts as u32, top_k as u32);
    let (logits, ids, weights) = (logits.buffer, ids.buffer, weights.buffer);
    let emax = experts.next_power_of_two().max(2);
    // Workgroup storage: three arrays of EMAX words, the total (16 bytes as
    // WebGPU counts a variable) and the reduction's vec4 per invocation; 128
    // invocations where 256 would pass the device's limit (E = 1024 at
    // WebGPU's 16 KiB: 16400 bytes).
    let bytes = |wg: u32| 12 * emax + 16 + 16 * wg;
    let wg = if bytes(256) <= ctx.limits.max_compute_workgroup_storage_size {
        256u32
    } else {
        128
    };
    ctx.launch(&ROUTE)
        .constant("WG", wg)
        .constant("EMAX", emax)
        .bind("logits", logits)
        .bind("ids", ids)
        .bind("weights", weights)
        .params(&RouteParams {
            t,
            experts,
            top_k,
            _pad: 0,
        })
        .grid(grid_1d(t))
        .record()
}

/// `h[t] += Σ_s weights[t, s] · expert_out[t·k+s, :] + sigmoid(gate_logit[t]) · shared_out[t, :]`
/// for the `T` rows of `h [T, H]`, with `weights [T, k]`, `expert_out [T·k, H]`,
/// `shared_out [T, H]` and `gate_logit [T, 1]` (layouts in the module docs).
/// Every view is dense from element 0 of its buffer.
pub fn moe_combine(
    ctx: &GpuContext,
    expert_out: &TensorView<'_>,
    weights: &TensorView<'_>,
    shared_out: &TensorView<'_>,
    gate_logit: &TensorView<'_>,
    h: &TensorView<'_>,
) -> Result<Dispatch, KernelError> {
    const K: &str = "moe_combine";
    let [t64, h64] = h.shape;
    let k64 = weights.shape[1];
    if h64 == 0 || k64 == 0 {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: format!("hidden {h64}, top_k {k64} must be > 0"),
        });
    }
    h.expect(K, "h", [t64, h64], Dtype::F32, true)?;
    weights.expect(K, "weights", [t64, k64], Dtype::F32, true)?;
    expert_out.expect(K, "expert_out", [t64 * k64, h64], Dtype::F32, true)?;
    shared_out.expect(K, "shared_out", [t64, h64], Dtype::F32, true)?;
    gate_logit.expect(K, "gate_logit", [t64, 1], Dtype::F32, true)?;
    // Inside their buffers, so within u32 (checked).
    let (t, top_k, hidden) = (t64 as u32, k64 as u32, h64 as u32);
    let (expert_out, weights, shared_out, gate_logit, h) = (
        expert_out.buffer,
        weights.buffer,
        shared_out.buffer,
        gate_logit.buffer,
        h.buffer,
    );
    const WG: u32 = 256;
    let vec4 = hidden.is_multiple_of(4);
    let (spec, n) = if vec4 {
        (&COMBINE_VEC4, hidden / 4)
    } else {
        (&COMBINE, hidden)
    };
    let groups_per_row = n.div_ceil(WG);
    let total = groups_per_row as u64 * t64;
    if total > u32::MAX as u64 / 2 {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: format!("T {t} x hidden {hidden} is too large"),
        });
    }
    // The vec4 and scalar entry points name their views of one binding apart.
    ctx.launch(spec)
        .constant("WG", WG)
        .bind("xo4", expert_out)
        .bind("xo1", expert_out)
        .bind("cw", weights)
        .bind("so4", shared_out)
        .bind("so1", shared_out)
        .bind("gl", gate_logit)
        .bind("h4", h)
        .bind("h1", h)
        .params(&CombineParams {
            t,
            top_k,
            n,
            groups_per_row,
        })
        .grid(grid_1d(total as u32))
        .record()
}
