//! Fast tensor-core GEMM ([`MatmulPrecision::Fast`](crate::MatmulPrecision::Fast),
//! `T > 16`): `mm_coop_fast` in `shaders/matmul_coop_fast.wgsl`, the layout of
//! `coop_peak`'s fastest staged tiling (4 subgroups of 4 × 4 fragments of 16 ×
//! 16, 128 × 128 tiles, 32-column steps, rows padded to 40 halves, one staging
//! buffer of `vec4<f16>`, the next step's global loads in registers during the
//! multiply-adds) with the library's weights and epilogues.
//!
//! It computes what the fast variant of `mm_coop` computes: per token row a
//! power of two `s` (the row's largest |x| times `s` in [2¹⁴, 2¹⁵)), `f16(x·s)`
//! rounded to nearest even, W exact in f16, f32 accumulation, then `1/s` and
//! the weight row's scale in the epilogue; the scalar tile GEMM's `FAST_X`
//! emulates the same rounding. The difference from `mm_coop`: x is rounded
//! once per GEMM by a pre-pass (`shaders/matmul_fast_x.wgsl`, `fast_x_rows`)
//! into a scratch buffer of f16 rows (columns padded to 32, rows to the
//! 128-token tile, zeros) plus `1/s` per row, so the GEMM's staging moves raw
//! f16 words exactly as `coop_peak` does. (A 4-subgroup kernel that converted
//! x while staging ran at half `mm_coop`'s speed: `benches/EXPERIMENTS.md`.)
//!
//! Weights: BF16, F16, FP8 E4M3 and E5M2 whose scale is constant along each
//! row (unscaled, per tensor, per shard, per channel, blocks at least as wide
//! as the row): W is staged as stored, decoded to f16 (exact: E4M3 and E5M2
//! fit f16's range and precision; BF16 within f16's normal range), and the
//! scale is applied in f32 in the epilogue. Block scales narrower than a row
//! (128 × 128 FP8) and 4-bit weights stay on `mm_coop`.
//!
//! Scratch: the context owns one growable pair of buffers (f16 rows, `1/s`)
//! shared by every launch of this kernel: each GEMM is recorded as its
//! pre-pass followed by its GEMM launches, and launches of one queue run in
//! order, so a later GEMM's pre-pass overwrites the scratch only after the
//! earlier GEMM read it. A list of launches must therefore keep each GEMM's
//! launches together, in order (no other fast GEMM's pre-pass between them).
//! When the scratch grows, launches recorded earlier keep the old buffers
//! alive through their bind groups. Token counts whose scratch would pass
//! [`Tuning::coop_fast_scratch`](crate::Tuning::coop_fast_scratch) (or the
//! device's binding limit) run in blocks of tokens, each a pre-pass and its
//! GEMMs.
//!
//! The exact variant on the same tiles (`mm_coop_split` in
//! `shaders/matmul_coop_split.wgsl`, appended to the fast module;
//! [`MatmulPrecision::Exact`](crate::MatmulPrecision::Exact)):
//! the pre-pass writes `x·s` as two f16 parts, `hi` = `x·s` rounded to 11
//! significant bits and `lo = f16(x·s − hi)` (the rule of `mm_coop`'s exact
//! variant), both are staged, and both products go into the same
//! accumulators: x keeps 22 significant bits, results match the f32 GEMM to
//! ~1e-6 of Σ|x·w| where W is exact in f16. Twice the multiply-adds and the
//! x traffic of the fast variant.
//!
//! Needs `cooperative_matrix`, `f16` and subgroups of one fixed size of 16 to
//! 64 (fragments are assigned by `subgroup_id` to exactly 4 subgroups), and
//! 28 KiB of workgroup memory (the exact variant 38 KiB). The selection is
//! behind one switch per variant:
//! [`Tuning::coop_fast_gemm`](crate::Tuning::coop_fast_gemm) (fast),
//! [`Tuning::coop_fast_exact`](crate::Tuning::coop_fast_exact) (exact),
//! both set from `QWGPU_COOP_FAST` at context creation
//! ([`Tuning::with_coop_fast_env`](crate::Tuning::with_coop_fast_env)); off,
//! `mm_coop` runs as before. Both are on by default. BF16 weights below
//! f16's normal range are staged as f16 subnormals (up to 2^-25 off each, as
//! in `mm_coop`): under an activation of 1e6 that is visible, and is what the
//! tests' tolerance models.

use std::sync::Mutex;

use crate::dispatch::{grid_1d, Dispatch, MAX_GROUPS};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, GpuWeight, KernelError, WeightFormat};

use super::{arg_err, set_pieces, MatmulArgs, MmParams, PieceLaunch};

#[cfg(feature = "testing")]
#[path = "matmul_coop_fast_emu.rs"]
pub mod emulation;

crate::shader!(MATMUL_COOP_FAST, "matmul_coop_fast.wgsl");
crate::shader!(MATMUL_COOP_SPLIT, "matmul_coop_split.wgsl");
crate::shader!(MATMUL_FAST_X, "matmul_fast_x.wgsl");
// The end of the 128 x 128 tensor-core entry points (`mm_coop_fast`,
// `mm_coop_split` and `coop_f16`'s two): the 16 accumulator fragments through
// workgroup memory into the module's `fast_epilogue`. Not WGSL of its own: a
// module appends it right after the main loop of each entry point; cut from
// the verified files at a blank line, so their modules keep their bytes
// (`tests/shaders_validate.rs`, `verified_kernel_modules_are_unchanged`).
crate::shader!(MATMUL_COOP_TAIL, "matmul_coop_tail.wgsl");

pub(super) static MM_COOP_FAST: KernelSpec = KernelSpec {
    label: "matmul_coop_fast",
    parts: &[
        Part::File(&MATMUL_COOP_FAST),
        Part::File(&MATMUL_COOP_TAIL),
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
    ],
    entry: "mm_coop_fast",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

pub(super) static MM_COOP_SPLIT: KernelSpec = KernelSpec {
    label: "matmul_coop_split",
    // The fast module with the exact variant's file appended.
    parts: &[
        Part::File(&MATMUL_COOP_FAST),
        Part::File(&MATMUL_COOP_TAIL),
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
        Part::File(&MATMUL_COOP_SPLIT),
        Part::File(&MATMUL_COOP_TAIL),
    ],
    entry: "mm_coop_split",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

pub(super) static FAST_X: KernelSpec = KernelSpec {
    label: "matmul_fast_x",
    parts: &[Part::File(&shaders::NUMERIC), Part::File(&MATMUL_FAST_X)],
    entry: "fast_x_rows",
    uniforms: &[&FastXParams::LAYOUT],
    needs: Needs::Baseline,
};

crate::uniform_struct! {
    /// Mirrors `struct FastXParams` in `shaders/matmul_fast_x.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct FastXParams as "FastXParams" {
        pub(crate) t: u32,
        pub(crate) cols: u32,
        pub(crate) x_off: u32,
        pub(crate) x_stride: u32,
        pub(crate) kp: u32,
        pub(crate) rows: u32,
        pub(crate) groups_x: u32,
        pub(crate) _pad: u32,
    }
}

/// Tokens per GEMM tile (the pre-pass pads its rows to a multiple).
pub const TILE_TOKENS: u32 = 128;
/// Weight rows per GEMM tile (SwiGLU: half as many output columns).
const TILE_ROWS: u32 = 128;
/// Columns per GEMM step (the pre-pass pads its rows to a multiple).
pub const STEP_COLS: u32 = 32;
/// Default of [`Tuning::coop_fast_scratch`](crate::Tuning::coop_fast_scratch):
/// most bytes of f16 rows the scratch holds; more tokens run in blocks.
pub const SCRATCH_CAP: u64 = 256 << 20;
/// Threads of a pre-pass workgroup (one row each).
const PREP_WG: u32 = 128;
/// Workgroup memory: x and W tiles (128 × 40 halves each), two result
/// fragments per subgroup (4 × 2 × 1 KiB); the split variant stages x's lo
/// parts too.
const SHARED_BYTES: u32 = 2 * 128 * 40 * 2 + 4 * 2 * 256 * 4;
const SHARED_BYTES_SPLIT: u32 = SHARED_BYTES + 128 * 40 * 2;

/// One growable pair of buffers.
pub(super) type Pair = Mutex<Option<(wgpu::Buffer, wgpu::Buffer)>>;

/// The context-owned scratch (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    bufs: Pair,
}

impl Scratch {
    /// Buffers of at least `x_bytes` and `inv_bytes`, grown (replaced) when smaller.
    fn get(
        &self,
        ctx: &GpuContext,
        x_bytes: u64,
        inv_bytes: u64,
    ) -> Result<(wgpu::Buffer, wgpu::Buffer), KernelError> {
        grow(
            ctx,
            &self.bufs,
            "fast GEMM scratch",
            ["fast GEMM x scratch", "fast GEMM row scales"],
            [x_bytes, inv_bytes],
        )
    }
}

/// Buffers of `slot` (named `names`) of at least `bytes`, grown (replaced)
/// when smaller; `during` names the scratch in a lock error.
pub(super) fn grow(
    ctx: &GpuContext,
    slot: &Pair,
    during: &str,
    names: [&str; 2],
    bytes: [u64; 2],
) -> Result<(wgpu::Buffer, wgpu::Buffer), KernelError> {
    let mut slot = slot.lock().map_err(|_| KernelError::Internal {
        during: during.into(),
        detail: "scratch lock poisoned".into(),
    })?;
    if let Some((x, y)) = slot.as_ref() {
        if x.size() >= bytes[0] && y.size() >= bytes[1] {
            return Ok((x.clone(), y.clone()));
        }
    }
    let (old_x, old_y) = slot.as_ref().map_or((0, 0), |(x, y)| (x.size(), y.size()));
    let x = ctx.storage(names[0], bytes[0].max(old_x))?;
    let y = ctx.storage(names[1], bytes[1].max(old_y))?;
    *slot = Some((x.clone(), y.clone()));
    Ok((x, y))
}

/// Layout of the pre-pass output for `t` tokens of `cols` columns: (rows
/// padded to the tile, halves per row padded to the step).
pub fn scratch_layout(t: u32, cols: u32) -> (u32, u32) {
    (
        t.div_ceil(TILE_TOKENS) * TILE_TOKENS,
        cols.div_ceil(STEP_COLS) * STEP_COLS,
    )
}

/// Tokens per block so that a block's f16 rows (`kp` halves each) fit in
/// `cap` bytes: a multiple of the tile, at least one tile, at most `t`
/// rounded up to the tile.
pub fn token_block(t: u32, kp: u32, cap: u64) -> u32 {
    let per_row = kp as u64 * 2;
    let fit = (cap / per_row.max(1)) as u32 / TILE_TOKENS * TILE_TOKENS;
    fit.max(TILE_TOKENS)
        .min(t.div_ceil(TILE_TOKENS) * TILE_TOKENS)
}

/// Threads per workgroup (4 subgroups), or `None` where the device cannot run
/// the kernel (`split`: the exact variant).
fn workgroup_size(ctx: &GpuContext, split: bool) -> Option<u32> {
    #[cfg(feature = "testing")]
    if emulation::EMULATION.active() {
        return ctx.caps.f16.then_some(super::coop_emu::WG);
    }
    device_workgroup_size(ctx, split)
}

/// Threads per workgroup of this kernel's tiling on the device (`coop_f16`
/// shares it), or `None` where the device cannot run it. Subgroups of at
/// least 16 keep the per-thread staging registers within the shader's arrays
/// of 8.
pub(super) fn device_workgroup_size(ctx: &GpuContext, split: bool) -> Option<u32> {
    let shared = if split {
        SHARED_BYTES_SPLIT
    } else {
        SHARED_BYTES
    };
    let c = &ctx.caps;
    let (lo, hi) = c.subgroup_sizes;
    let wg = 4 * hi;
    (c.cooperative_matrix
        && c.f16
        && c.subgroups
        && lo == hi
        && (16..=64).contains(&lo)
        && lo.is_power_of_two()
        && wg <= ctx.limits.max_compute_invocations_per_workgroup
        && wg <= ctx.limits.max_compute_workgroup_size_x
        && shared <= ctx.limits.max_compute_workgroup_storage_size)
        .then_some(wg)
}

/// What the device lacks where [`device_workgroup_size`] is `None`.
pub(super) fn device_unsupported_reason(ctx: &GpuContext, split: bool) -> String {
    format!(
        "adapter `{name}` lacks cooperative matrices, f16, subgroups of one size (16..=64) \
         or {kib} KiB of workgroup memory",
        name = ctx.info.name,
        kib = if split { 38 } else { 28 }
    )
}

/// Whether `w`'s format and scales are ones the kernel takes (module doc).
fn format_ok(w: &GpuWeight) -> bool {
    matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3 | WeightFormat::E5M2
    ) && w.block_cols >= w.cols
}

/// Whether the device runs the kernel (`split`: its exact variant) and takes `w`.
pub(super) fn supported(ctx: &GpuContext, w: &GpuWeight, split: bool) -> bool {
    workgroup_size(ctx, split).is_some() && format_ok(w)
}

/// Why [`supported`] is false, for error messages.
pub(super) fn unsupported_reason(ctx: &GpuContext, w: &GpuWeight, split: bool) -> String {
    if workgroup_size(ctx, split).is_none() {
        device_unsupported_reason(ctx, split)
    } else {
        format!(
            "weight `{w_name}` is {w_format:?} with {w_block_cols}-column scale blocks: the fast \
             tensor-core GEMM takes BF16, F16, E4M3 and E5M2 with a scale constant along each row",
            w_name = w.name,
            w_format = w.format,
            w_block_cols = w.block_cols
        )
    }
}

/// Whether [`MatmulPath::Auto`](super::MatmulPath::Auto) runs a GEMM of more
/// than [`MAX_VEC_T`](super::MAX_VEC_T) tokens on this kernel: fast precision
/// (not the plain f16 variant of `f16_matmul`), the adapter's switch on, and
/// a weight it takes.
pub(super) fn auto(ctx: &GpuContext, w: &GpuWeight) -> bool {
    ctx.tuning.coop_fast_gemm
        && ctx.precision == crate::MatmulPrecision::Fast
        && !ctx.f16_matmul
        && supported(ctx, w, false)
}

/// Whether Auto runs such a GEMM on the split (exact) variant: exact
/// precision, no `f16_matmul`, the adapter's switch
/// ([`Tuning::coop_fast_exact`](crate::Tuning::coop_fast_exact)) on, a weight
/// it takes.
pub(super) fn auto_split(ctx: &GpuContext, w: &GpuWeight) -> bool {
    ctx.tuning.coop_fast_exact
        && ctx.precision == crate::MatmulPrecision::Exact
        && !ctx.f16_matmul
        && supported(ctx, w, true)
}

/// A pre-pass launch: `t` rows of `cols` columns of x (f32, row `i` at element
/// `x_offset + i * x_stride`) into `xh` (f16 rows padded as
/// [`scratch_layout`] says, `rows` of them, two halves per u32; with `split`
/// the hi parts, then `rows` rows of the lo parts) and `xinv` (`1/s` per
/// row). Public for tests of the rounding; the GEMM records its own.
#[allow(clippy::too_many_arguments)]
pub fn prepare_x(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    x_offset: u32,
    x_stride: u32,
    t: u32,
    cols: u32,
    xh: &wgpu::Buffer,
    xinv: &wgpu::Buffer,
    split: bool,
) -> Result<Dispatch, KernelError> {
    const K: &str = "matmul_fast_x";
    let (rows, kp) = scratch_layout(t, cols);
    let parts = if split { 2 } else { 1 };
    if xh.size() < parts * rows as u64 * kp as u64 * 2 || xinv.size() < rows as u64 * 4 {
        return Err(arg_err(
            K,
            format!(
                "scratch of {xh_size} + {xinv_size} bytes for {rows} rows of {kp} halves",
                xh_size = xh.size(),
                xinv_size = xinv.size()
            ),
        ));
    }
    if t > 0 {
        crate::view::check_rows(
            K,
            "x",
            x,
            crate::view::Dtype::F32,
            x_offset as u64,
            x_stride as u64,
            t as u64,
            cols as u64,
        )?;
    }
    let grid = grid_1d(rows);
    ctx.launch(&FAST_X)
        .constant("WG", PREP_WG)
        .constant("SPLIT", f64::from(u8::from(split)))
        .bind("xs", x)
        .bind("xh", xh)
        .bind("xinv", xinv)
        .params(&FastXParams {
            t,
            cols,
            x_off: x_offset,
            x_stride,
            kp,
            rows,
            groups_x: grid[0],
            _pad: 0,
        })
        .grid(grid)
        .record()
}

/// The pre-pass of a GEMM's tokens `[t0, t0 + tb)` (of `cols` columns) into
/// the scratch `(xh, xinv)`, as [`prepare_x`] (`coop_f16` records it too).
pub(super) fn prepare_x_block(
    ctx: &GpuContext,
    args: &MatmulArgs,
    t0: u32,
    tb: u32,
    cols: u32,
    (xh, xinv): (&wgpu::Buffer, &wgpu::Buffer),
    split: bool,
) -> Result<Dispatch, KernelError> {
    prepare_x(
        ctx,
        args.x,
        args.x_offset + t0 * args.x_stride,
        args.x_stride,
        tb,
        cols,
        xh,
        xinv,
        split,
    )
}

/// The launches of one dense GEMM on this kernel (call only when
/// [`supported`]; `split`: the exact variant): per block of tokens, the
/// pre-pass and one GEMM launch per piece launch of `launches`. `base` holds
/// the weight's and the call's parameters (`matmul_impl`).
pub(super) fn record(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &MatmulArgs,
    base: &MmParams,
    launches: &[PieceLaunch<'_>],
    swiglu: bool,
    split: bool,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul";
    let cols = w.cols as u32;
    let (_, kp) = scratch_layout(args.t, cols);
    let cap = ctx
        .tuning
        .coop_fast_scratch
        .min(ctx.limits.max_storage_buffer_binding_size)
        .min(ctx.limits.max_buffer_size);
    // The split variant's hi and lo rows both fit the cap.
    let parts = if split { 2 } else { 1 };
    let block = token_block(args.t, kp, cap / parts);
    let (x_bytes, inv_bytes) = (parts * block as u64 * kp as u64 * 2, block as u64 * 4);
    let (xh, xinv) = ctx.coop_fast_scratch.get(ctx, x_bytes, inv_bytes)?;
    let wg = workgroup_size(ctx, split).unwrap_or(128);
    let (spec, label) = if split {
        (&MM_COOP_SPLIT, "matmul_coop_split")
    } else {
        (&MM_COOP_FAST, "matmul_coop_fast")
    };
    #[cfg(feature = "testing")]
    let spec = emulation::EMULATION.or(spec, split);
    let mut out = Vec::new();
    let mut t0 = 0;
    while t0 < args.t {
        let tb = block.min(args.t - t0);
        out.push(prepare_x_block(
            ctx,
            args,
            t0,
            tb,
            cols,
            (&xh, &xinv),
            split,
        )?);
        for l in launches {
            let mut p = *base;
            set_pieces(&mut p, l);
            p.t = tb;
            // Split: the lo rows follow the block's padded hi rows.
            p.x_off = if split {
                scratch_layout(tb, cols).0 * kp
            } else {
                0
            };
            p.x_stride = kp;
            p.y_off = args.y_offset + t0 * args.y_stride;
            let n = l.n_end - l.n0;
            let gx = n.div_ceil(if swiglu { TILE_ROWS / 2 } else { TILE_ROWS });
            let gy = tb.div_ceil(TILE_TOKENS);
            if gx > MAX_GROUPS || gy > MAX_GROUPS {
                return Err(arg_err(
                    K,
                    format!("{tb} tokens × {n} outputs need a {gx}×{gy} grid"),
                ));
            }
            out.push(
                ctx.launch(spec)
                    .label(label)
                    .constant("WG", wg)
                    .constant("FORMAT", w.format as u32)
                    .bind("wa", &l.a.buffer)
                    .bind("wb", &l.b.buffer)
                    .bind("scales", &w.meta)
                    .bind("ys", args.y)
                    .bind("xq", &xh)
                    .bind("xinv", &xinv)
                    .params(&p)
                    .grid([gx, gy, 1])
                    .record()?,
            );
        }
        t0 += tb;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables each entry point uses are exactly the ones `record` and
    /// `prepare_x` bind.
    #[test]
    fn entry_points_use_exactly_the_bound_variables() {
        let cases: [(&KernelSpec, &[&str]); 3] = [
            (
                &MM_COOP_FAST,
                &["wa", "wb", "scales", "ys", "xq", "xinv", "p"],
            ),
            (
                &MM_COOP_SPLIT,
                &["wa", "wb", "scales", "ys", "xq", "xinv", "p"],
            ),
            (&FAST_X, &["xs", "xh", "xinv", "fp"]),
        ];
        crate::reflect::assert_entries_use_exactly(&cases);
    }

    #[test]
    fn layout_pads_rows_to_the_tile_and_columns_to_the_step() {
        assert_eq!(scratch_layout(1, 1), (128, 32));
        assert_eq!(scratch_layout(128, 32), (128, 32));
        assert_eq!(scratch_layout(129, 33), (256, 64));
        assert_eq!(scratch_layout(4096, 12288), (4096, 12288));
    }

    #[test]
    fn token_blocks_fit_the_cap_in_whole_tiles() {
        // 4096 tokens of 12288 columns: 96 MiB, one block.
        assert_eq!(token_block(4096, 12288, SCRATCH_CAP), 4096);
        assert_eq!(token_block(4000, 12288, SCRATCH_CAP), 4096);
        // 16384 tokens: 384 MiB; blocks of whole tiles within 256 MiB.
        let b = token_block(16384, 12288, SCRATCH_CAP);
        assert_eq!(b % TILE_TOKENS, 0);
        assert!(b as u64 * 12288 * 2 <= SCRATCH_CAP);
        assert!((b + TILE_TOKENS) as u64 * 12288 * 2 > SCRATCH_CAP);
        // A cap below one tile still makes progress.
        assert_eq!(token_block(1000, 4096, 1024), TILE_TOKENS);
    }
}
