//! Dense GEMM on tensor cores from f16 scratch rows
//! ([`MatmulPath::CoopF16`](super::MatmulPath::CoopF16)): two pre-passes bring
//! both operands to padded f16 rows, then `mm_coop_f16`
//! (`shaders/matmul_coop_f16.wgsl`), `coop_peak`'s fastest staged tiling
//! with an epilogue, multiplies them with no decode, no validity logic and
//! no bounds checks in its main loop.
//!
//! - x: `coop_fast`'s pre-pass (`shaders/matmul_fast_x.wgsl`): per token row
//!   `f16(x·s)` with a power of two `s` (the row's largest |x|·s in
//!   [2¹⁴, 2¹⁵)) and `1/s`; in exact precision the hi + lo split (x keeps
//!   22 significant bits, two products: `mm_coop_f16_split` in
//!   `shaders/matmul_coop_f16_split.wgsl`, appended to the module).
//! - W (`shaders/matmul_w16.wgsl`, [`prepare_w`]): the rows one launch
//!   consumes, in its tile order (SwiGLU: gate and up rows interleaved as
//!   `mm_coop` maps them), as f16 rows scaled by a power of two per row
//!   (the row's largest |w| in [2¹⁴, 2¹⁵)) and one f32 multiplier per row
//!   (the power of two's inverse times a scale constant along the row), so
//!   that `w = f16 row × multiplier`: exact for BF16 / F16 elements at or
//!   above the row's max × 2⁻²⁸ and for every FP8 E4M3 / E5M2 code. FP8 with
//!   128 × 128 block scales rounds `q × scale` to 11 significant bits: taken
//!   in [`MatmulPrecision::Fast`] only.
//! - The GEMM: 4 subgroups of 4 × 4 fragments of 16 × 16, 128 × 128 tiles,
//!   32-column steps, one staging buffer of `vec4<f16>` rows padded to 40
//!   halves, the next step's global loads in registers; the result goes
//!   through workgroup memory to a scalar epilogue (`1/s`, the row
//!   multiplier, Store / Accumulate / SwiGLU, bounds checks on tokens and
//!   outputs).
//!
//! Scratch: the context owns one growable set of buffers (x rows, `1/s`, W
//! rows, multipliers) shared by every launch of this kernel. A GEMM is
//! recorded as its pre-passes followed by the launches that read them;
//! launches of one queue run in order, so a later pre-pass overwrites the
//! scratch only after the earlier launches read it (a list of launches must
//! keep each GEMM's launches together, in order). The W scratch holds at
//! most [`Tuning::coop_f16_scratch`](crate::Tuning::coop_f16_scratch) bytes
//! (and the binding limit): larger weights run in blocks of whole row
//! tiles, each converted then multiplied; token counts whose x scratch would
//! pass [`Tuning::coop_fast_scratch`](crate::Tuning::coop_fast_scratch) run
//! in blocks of tokens. Converting W costs ~4 bytes of traffic per weight
//! per GEMM, so [`MatmulPath::Auto`](super::MatmulPath::Auto) takes this
//! kernel from [`Tuning::coop_f16_min_t`](crate::Tuning::coop_f16_min_t)
//! tokens, behind the switch [`Tuning::coop_f16`](crate::Tuning::coop_f16)
//! (`QWGPU_COOP_F16`).
//!
//! Needs `cooperative_matrix`, `f16` and subgroups of one fixed size of 16 to
//! 64 (4 subgroups per workgroup), 28 KiB of workgroup memory (exact: 38
//! KiB). The W pre-pass needs nothing optional.

use crate::dispatch::{grid_1d, Dispatch, MAX_GROUPS};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::weights::WeightPiece;
use crate::{GpuContext, GpuWeight, KernelError, MatmulPrecision, WeightFormat};

use super::coop_fast::{
    self, prepare_x_block, scratch_layout, token_block, Pair, MATMUL_COOP_TAIL,
};
use super::{arg_err, set_pieces, Epilogue, MatmulArgs, MmParams, PieceLaunch};

#[cfg(feature = "testing")]
#[path = "matmul_coop_f16_emu.rs"]
pub mod emulation;

crate::shader!(MATMUL_COOP_F16, "matmul_coop_f16.wgsl");
crate::shader!(MATMUL_COOP_F16_SPLIT, "matmul_coop_f16_split.wgsl");
crate::shader!(MATMUL_W16, "matmul_w16.wgsl");

pub(super) static MM_COOP_F16: KernelSpec = gemm(
    "matmul_coop_f16",
    &[
        Part::File(&MATMUL_COOP_F16),
        Part::File(&MATMUL_COOP_TAIL),
        Part::File(&shaders::NUMERIC),
    ],
    "mm_coop_f16",
);

pub(super) static MM_COOP_F16_SPLIT: KernelSpec = gemm(
    "matmul_coop_f16_split",
    // The fast module with the exact variant's file appended.
    &[
        Part::File(&MATMUL_COOP_F16),
        Part::File(&MATMUL_COOP_TAIL),
        Part::File(&shaders::NUMERIC),
        Part::File(&MATMUL_COOP_F16_SPLIT),
        Part::File(&MATMUL_COOP_TAIL),
    ],
    "mm_coop_f16_split",
);

/// A variant of the GEMM (its module's files and entry point).
const fn gemm(label: &'static str, parts: &'static [Part], entry: &'static str) -> KernelSpec {
    KernelSpec {
        label,
        parts,
        entry,
        uniforms: &[&F16Params::LAYOUT],
        needs: Needs::CooperativeMatrix,
    }
}

pub(super) static W16: KernelSpec = KernelSpec {
    label: "matmul_w16",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
        Part::File(&MATMUL_W16),
    ],
    entry: "w16_rows",
    uniforms: &[&MmParams::LAYOUT, &W16Params::LAYOUT],
    needs: Needs::Baseline,
};

crate::uniform_struct! {
    /// Mirrors `struct F16Params` in `shaders/matmul_coop_f16.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct F16Params as "F16Params" {
        pub(crate) t: u32,
        pub(crate) kp: u32,
        pub(crate) x_lo: u32,
        pub(crate) y_off: u32,
        pub(crate) y_stride: u32,
        pub(crate) n0: u32,
        pub(crate) n_end: u32,
        pub(crate) epi: u32,
        pub(crate) _pad0: u32,
        pub(crate) _pad1: u32,
        pub(crate) _pad2: u32,
        pub(crate) _pad3: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct W16Params` in `shaders/matmul_w16.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct W16Params as "W16Params" {
        pub(crate) srows: u32,
        pub(crate) kp: u32,
        pub(crate) groups_x: u32,
        pub(crate) _pad: u32,
    }
}

/// Scratch rows (weight rows in the GEMM's tile order) per tile.
pub const TILE_ROWS: u32 = 128;
/// Default of [`Tuning::coop_f16_scratch`](crate::Tuning::coop_f16_scratch):
/// most bytes of f16 weight rows the scratch holds; larger weights run in
/// blocks of row tiles.
pub const W_SCRATCH_CAP: u64 = 256 << 20;
/// Default of [`Tuning::coop_f16`](crate::Tuning::coop_f16) on every
/// adapter (the one line that turns the kernel on by default): on, since its
/// tests, the whole kernel suite and the model test binaries passed on an
/// H100 with it on, and a complete bench run measured it there
/// (`benches/EXPERIMENTS.md`, `benches/RESULTS.md`). `QWGPU_COOP_F16=0`
/// turns it off.
pub const ON_BY_DEFAULT: bool = true;
/// Default of [`Tuning::coop_f16_min_t`](crate::Tuning::coop_f16_min_t).
pub const MIN_T: u32 = 128;
/// The context-owned scratch (see the module doc): x rows and `1/s`, W rows
/// and multipliers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    x: Pair,
    w: Pair,
}

/// Buffers of `slot` (both named `what`) of at least `a` and `b` bytes, grown
/// (replaced) when smaller.
fn grow(
    ctx: &GpuContext,
    slot: &Pair,
    what: &str,
    a: u64,
    b: u64,
) -> Result<(wgpu::Buffer, wgpu::Buffer), KernelError> {
    coop_fast::grow(ctx, slot, "f16 GEMM scratch", [what; 2], [a, b])
}

/// Threads per workgroup (4 subgroups: `coop_fast`'s tiling and workgroup
/// memory), or `None` where the device cannot run the GEMM (`split`: the
/// exact variant).
fn workgroup_size(ctx: &GpuContext, split: bool) -> Option<u32> {
    #[cfg(feature = "testing")]
    if emulation::EMULATION.active() {
        return ctx.caps.f16.then_some(super::coop_emu::WG);
    }
    coop_fast::device_workgroup_size(ctx, split)
}

/// Whether the context runs the exact (hi + lo) variant.
pub(super) fn split(ctx: &GpuContext) -> bool {
    ctx.precision == MatmulPrecision::Exact && !ctx.f16_matmul
}

/// Whether the W pre-pass takes `w` (`split`: exact precision, where scales
/// varying along a row would round).
pub fn format_ok(w: &GpuWeight, split: bool) -> bool {
    matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3 | WeightFormat::E5M2
    ) && (w.block_cols >= w.cols || !split)
}

/// Whether the device runs the kernel in the context's precision and takes `w`.
pub(super) fn supported(ctx: &GpuContext, w: &GpuWeight) -> bool {
    let split = split(ctx);
    workgroup_size(ctx, split).is_some() && format_ok(w, split)
}

/// Why [`supported`] is false, for error messages.
pub(super) fn unsupported_reason(ctx: &GpuContext, w: &GpuWeight) -> String {
    let split = split(ctx);
    if workgroup_size(ctx, split).is_none() {
        coop_fast::device_unsupported_reason(ctx, split)
    } else {
        format!(
            "weight `{w_name}` is {w_format:?} with {w_block_cols}-column scale blocks: the f16 \
             tensor-core GEMM takes BF16, F16, E4M3 and E5M2, and scales varying along a row \
             only in fast precision",
            w_name = w.name,
            w_format = w.format,
            w_block_cols = w.block_cols
        )
    }
}

/// Whether [`MatmulPath::Auto`](super::MatmulPath::Auto) runs a GEMM of `t`
/// tokens on this kernel: the switch on, at least the threshold of tokens,
/// a weight it takes.
pub(super) fn auto(ctx: &GpuContext, w: &GpuWeight, t: u32) -> bool {
    ctx.tuning.coop_f16 && t >= ctx.tuning.coop_f16_min_t && supported(ctx, w)
}

/// Scratch rows of a launch of `outputs` outputs: whole tiles (SwiGLU: 64
/// output columns per tile).
pub fn w_rows(outputs: u32, swiglu: bool) -> u32 {
    outputs.div_ceil(outputs_per_tile(swiglu)) * TILE_ROWS
}

fn outputs_per_tile(swiglu: bool) -> u32 {
    if swiglu {
        TILE_ROWS / 2
    } else {
        TILE_ROWS
    }
}

/// Records the W pre-pass of outputs `[n0, n_end)` read from pieces `a`
/// (plain / gate rows) and `b` (up rows) into `wh` / `wmul`.
#[allow(clippy::too_many_arguments)]
fn w_launch(
    ctx: &GpuContext,
    w: &GpuWeight,
    base: &MmParams,
    a: &WeightPiece,
    b: &WeightPiece,
    n0: u32,
    n_end: u32,
    wh: &wgpu::Buffer,
    wmul: &wgpu::Buffer,
) -> Result<Dispatch, KernelError> {
    const K: &str = "matmul_w16";
    let swiglu = base.epi == Epilogue::SwiGlu.code();
    let srows = w_rows(n_end.saturating_sub(n0), swiglu);
    let (_, kp) = scratch_layout(1, w.cols as u32);
    if wh.size() < srows as u64 * kp as u64 * 2 || wmul.size() < srows as u64 * 4 {
        return Err(arg_err(
            K,
            format!(
                "scratch of {wh_size} + {wmul_size} bytes for {srows} rows of {kp} halves",
                wh_size = wh.size(),
                wmul_size = wmul.size()
            ),
        ));
    }
    let mut p = *base;
    set_pieces(&mut p, &PieceLaunch { a, b, n0, n_end });
    let grid = grid_1d(srows);
    ctx.launch(&W16)
        .constant("FORMAT", w.format as u32)
        .bind("wa", &a.buffer)
        .bind("wb", &b.buffer)
        .bind("scales", &w.meta)
        .bind("wh", wh)
        .bind("wmul", wmul)
        .params(&p)
        .params(&W16Params {
            srows,
            kp,
            groups_x: grid[0],
            _pad: 0,
        })
        .grid(grid)
        .record()
}

/// The W pre-pass alone (public for tests of the conversion; the GEMM
/// records its own): outputs `[n0, n_end)` of `w` under `epilogue` (SwiGLU:
/// output columns, gate and up rows interleaved per tile) into `wh` (rows of
/// `cols` rounded up to 32 halves, [`w_rows`] of them, two halves per u32)
/// and `wmul` (one f32 per row). The rows must lie in one piece of `w` (for
/// SwiGLU the gate rows in one, the up rows in one).
#[allow(clippy::too_many_arguments)]
pub fn prepare_w(
    ctx: &GpuContext,
    w: &GpuWeight,
    epilogue: Epilogue,
    n0: u32,
    n_end: u32,
    wh: &wgpu::Buffer,
    wmul: &wgpu::Buffer,
) -> Result<Dispatch, KernelError> {
    const K: &str = "matmul_w16";
    if !format_ok(w, false) {
        return Err(KernelError::Unsupported {
            what: "f16 weight pre-pass".into(),
            detail: format!(
                "weight `{w_name}` is {w_format:?}",
                w_name = w.name,
                w_format = w.format
            ),
        });
    }
    let swiglu = epilogue == Epilogue::SwiGlu;
    let half = (w.rows / 2) as u32;
    let width = if swiglu { half } else { w.rows as u32 };
    if n0 >= n_end || n_end > width {
        return Err(arg_err(
            K,
            format!("outputs {n0}..{n_end} of a weight with {width} outputs"),
        ));
    }
    let holding = |r0: u32, r1: u32| {
        w.pieces
            .iter()
            .find(|p| p.row0 as u32 <= r0 && r1 <= (p.row0 + p.rows) as u32)
            .ok_or_else(|| arg_err(K, format!("rows {r0}..{r1} lie in no one piece")))
    };
    let a = holding(n0, n_end)?;
    let b = if swiglu {
        holding(half + n0, half + n_end)?
    } else {
        a
    };
    let mut base = super::base_params(w, epilogue);
    base.half = half;
    w_launch(ctx, w, &base, a, b, n0, n_end, wh, wmul)
}

/// The launches of one dense GEMM on this kernel (call only when
/// [`supported`]): the x pre-pass, and per block of weight rows (within the
/// W scratch's cap) its W pre-pass and GEMM launch (per block of tokens when
/// the x scratch is capped too: the x pre-pass of that block first).
pub(super) fn record(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    base: &MmParams,
    launches: &[PieceLaunch<'_>],
    swiglu: bool,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul";
    let split = split(ctx);
    let cols = w.cols as u32;
    let (_, kp) = scratch_layout(args.t, cols);
    let bind_cap = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    // x: the split variant's hi and lo rows both fit the cap.
    let parts = if split { 2 } else { 1 };
    let block = token_block(
        args.t,
        kp,
        ctx.tuning.coop_fast_scratch.min(bind_cap) / parts,
    );
    let (xh, xinv) = grow(
        ctx,
        &ctx.coop_f16_scratch.x,
        "f16 GEMM x scratch",
        parts * block as u64 * kp as u64 * 2,
        block as u64 * 4,
    )?;
    // W: tiles per block within the cap (at least one).
    let tile_bytes = TILE_ROWS as u64 * kp as u64 * 2;
    let cap_tiles = (ctx.tuning.coop_f16_scratch.min(bind_cap) / tile_bytes).max(1) as u32;
    let per_tile = outputs_per_tile(swiglu);
    let most_tiles = launches
        .iter()
        .map(|l| (l.n_end - l.n0).div_ceil(per_tile))
        .max()
        .unwrap_or(1)
        .clamp(1, cap_tiles);
    let (wh, wmul) = grow(
        ctx,
        &ctx.coop_f16_scratch.w,
        "f16 GEMM W scratch",
        most_tiles as u64 * tile_bytes,
        most_tiles as u64 * TILE_ROWS as u64 * 4,
    )?;
    let wg = workgroup_size(ctx, split).unwrap_or(128);
    let (spec, label) = if split {
        (&MM_COOP_F16_SPLIT, "matmul_coop_f16_split")
    } else {
        (&MM_COOP_F16, "matmul_coop_f16")
    };
    #[cfg(feature = "testing")]
    let spec = emulation::EMULATION.or(spec, split);
    let t_blocks: Vec<(u32, u32)> = (0..args.t)
        .step_by(block as usize)
        .map(|t0| (t0, block.min(args.t - t0)))
        .collect();
    let x_pass = |t0: u32, tb: u32| prepare_x_block(ctx, args, t0, tb, cols, (&xh, &xinv), split);
    let mut out = Vec::new();
    let one_block = t_blocks.len() == 1;
    if one_block {
        out.push(x_pass(0, args.t)?);
    }
    for l in launches {
        let mut nb = l.n0;
        while nb < l.n_end {
            let nb_end = (nb + most_tiles * per_tile).min(l.n_end);
            out.push(w_launch(ctx, w, base, l.a, l.b, nb, nb_end, &wh, &wmul)?);
            let gx = (nb_end - nb).div_ceil(per_tile);
            for &(t0, tb) in &t_blocks {
                if !one_block {
                    out.push(x_pass(t0, tb)?);
                }
                let gy = tb.div_ceil(TILE_ROWS);
                if gx > MAX_GROUPS || gy > MAX_GROUPS {
                    return Err(arg_err(
                        K,
                        format!(
                            "{tb} tokens × {n} outputs need a {gx}×{gy} grid",
                            n = nb_end - nb
                        ),
                    ));
                }
                let p = F16Params {
                    t: tb,
                    kp,
                    // Split: the lo rows follow the block's padded hi rows.
                    x_lo: if split {
                        scratch_layout(tb, cols).0 * kp
                    } else {
                        0
                    },
                    y_off: args.y_offset + t0 * args.y_stride,
                    y_stride: args.y_stride,
                    n0: nb,
                    n_end: nb_end,
                    epi: base.epi,
                    ..Default::default()
                };
                out.push(
                    ctx.launch(spec)
                        .label(label)
                        .constant("WG", wg)
                        .bind("xq", &xh)
                        .bind("xinv", &xinv)
                        .bind("wq", &wh)
                        .bind("wmul", &wmul)
                        .bind("ys", args.y)
                        .params(&p)
                        .grid([gx, gy, 1])
                        .record()?,
                );
            }
            nb = nb_end;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables each entry point uses are exactly the ones `record` and
    /// `w_launch` bind.
    #[test]
    fn entry_points_use_exactly_the_bound_variables() {
        let cases: [(&KernelSpec, &[&str]); 3] = [
            (&MM_COOP_F16, &["xq", "xinv", "wq", "wmul", "ys", "p"]),
            (&MM_COOP_F16_SPLIT, &["xq", "xinv", "wq", "wmul", "ys", "p"]),
            (&W16, &["wa", "wb", "scales", "wh", "wmul", "p", "wp"]),
        ];
        crate::reflect::assert_entries_use_exactly(&cases);
    }

    #[test]
    fn scratch_rows_are_whole_tiles() {
        assert_eq!(w_rows(1, false), 128);
        assert_eq!(w_rows(128, false), 128);
        assert_eq!(w_rows(129, false), 256);
        assert_eq!(w_rows(64, true), 128);
        assert_eq!(w_rows(65, true), 256);
        assert_eq!(w_rows(12288, true), 24576);
    }
}
