//! Grouped GEMM for MoE prefill (`T > 1`): the `T·k` (token, slot) pairs are
//! grouped by expert on the GPU, then each expert's rows of x go through a
//! tiled GEMM, so an expert's weights are read once per 64 of its pairs
//! instead of once per run of equal ids in 8 consecutive pairs
//! ([`matmul_indexed`](crate::matmul::matmul_indexed)).
//!
//! - [`moe_group`] (`shaders/moe_group_sort.wgsl`): one workgroup counting-
//!   sorts the router ids into a [`GroupScratch`]: per-expert counts, an
//!   exclusive scan, a tile table (one entry per 64 pairs of an expert) and the
//!   permutation of pair indices, stable (within an expert, pairs in increasing
//!   pair index). Ids `>= experts` are left out. Run it once per layer; both
//!   expert matmuls (gate/up and down) read the same grouping.
//! - [`matmul_grouped`] (`shaders/moe_group_gemm.wgsl`, after `matmul_common.wgsl`):
//!   the register-tiled GEMM of `matmul_tile.wgsl` (64 pairs × 64 weight rows
//!   per workgroup, W decoded from its stored format and scaled while staged)
//!   over one tile-table entry per workgroup row, gathering x rows through the
//!   permutation and writing each result to its pair's own row, so the output
//!   layout is exactly [`matmul_indexed`](crate::matmul::matmul_indexed)'s and
//!   the rest of the MoE graph is unchanged.
//!
//! - [`coop`] (`shaders/moe_group_coop.wgsl`): the same GEMM on tensor cores,
//!   one 128-pair grouping tile ([`GroupScratch::preferred`]) × 128 weight rows
//!   per workgroup; [`matmul_grouped`] takes it on adapters with cooperative
//!   matrices where [`coop::auto`] allows ([`coop::ENABLED`] switches it off);
//!   4-bit experts too under fast precision ([`coop_q4`]).
//!
//! The grid cannot depend on GPU-side counts (no indirect dispatch): it is sized
//! for the worst case, `pairs.div_ceil(64) + min(experts, pairs)` tiles
//! ([`tile_bound`]), and workgroups past the real tile count do nothing.
//! Weights split into pieces are one launch per piece (per gate/up piece pair
//! for SwiGlu, as `matmul_indexed`); a launch stores only the outputs whose rows
//! lie in its pieces and skips tiles with none.
//!
//! Scratch layout (`u32` words): `[0]` number of tiles, `[1]` grouped pairs,
//! `[4, 4 + max_pairs)` the permutation (slot i = a pair index), then from
//! [`GroupScratch::tiles_offset`] 4 words per tile: first permutation slot,
//! pairs (1..=64), expert, 0.

use crate::dispatch::{Dispatch, MAX_GROUPS};
use crate::matmul::{Epilogue, MatmulPath, MmParams, MATMUL_COMMON};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{Dtype, TensorView};
use crate::weights::WeightPiece;
use crate::{GpuContext, GpuWeight, KernelError};

#[path = "moe_grouped_coop.rs"]
pub mod coop;
#[path = "moe_grouped_coop_q4.rs"]
pub mod coop_q4;

crate::shader!(MOE_GROUP_SORT, "moe_group_sort.wgsl");
crate::shader!(MOE_GROUP_GEMM, "moe_group_gemm.wgsl");

/// Pairs per grouping tile (rows of one GEMM tile).
pub const TILE_PAIRS: u32 = 64;
/// Largest expert count [`moe_group`] handles (its workgroup arrays).
pub const MAX_EXPERTS: u32 = 1024;
/// Weight rows per GEMM tile (32 SwiGLU outputs).
const TILE_ROWS: u32 = 64;

/// Worst-case number of grouping tiles for `pairs` pairs over `experts` experts:
/// Σₑ ⌈cₑ/64⌉ ≤ ⌈pairs/64⌉ + (experts with cₑ > 0).
pub fn tile_bound(pairs: u32, experts: u32) -> u32 {
    tile_bound_for(pairs, experts, TILE_PAIRS)
}

/// [`tile_bound`] for tiles of `tile_pairs` pairs.
fn tile_bound_for(pairs: u32, experts: u32, tile_pairs: u32) -> u32 {
    pairs.div_ceil(tile_pairs) + experts.min(pairs)
}

/// Average pairs per expert from which [`prefer_grouped`] picks the grouped GEMM.
pub const MIN_PAIRS_PER_EXPERT: u32 = 4;

/// Whether `pairs` pairs over `experts` experts should take the grouped GEMM
/// rather than [`matmul_indexed`](crate::matmul::matmul_indexed). Each grouped
/// tile computes 64 pair rows, so with few pairs per expert most of its work is
/// padding. Measured on the H100 (Vulkan, checked modules, E = 256, k = 8,
/// H = 2048, Ie = 512, gate/up + down): T = 16 grouped 21 ms vs indexed 4.5 ms,
/// T = 130 48 vs 36 ms, T = 512 50 vs 141 ms, T = 2048 96 vs 563 ms; the
/// crossover is near 5 pairs per expert.
pub fn prefer_grouped(pairs: u32, experts: u32) -> bool {
    pairs > 1 && pairs >= MIN_PAIRS_PER_EXPERT.saturating_mul(experts)
}

/// GPU buffer holding one grouping (see the module docs for the layout),
/// sized for up to `max_pairs` pairs over up to `max_experts` experts.
#[derive(Debug)]
pub struct GroupScratch {
    pub buffer: wgpu::Buffer,
    pub max_pairs: u32,
    pub max_experts: u32,
    /// Pairs per tile-table entry: [`TILE_PAIRS`] or twice that (the scalar
    /// grouped GEMM takes such tiles in halves).
    pub tile_pairs: u32,
}

impl GroupScratch {
    /// Allocates the scratch for up to `max_pairs` pairs and `max_experts`
    /// experts, grouped in tiles of [`TILE_PAIRS`].
    pub fn new(ctx: &GpuContext, max_pairs: u32, max_experts: u32) -> Result<Self, KernelError> {
        Self::with_tile_pairs(ctx, max_pairs, max_experts, TILE_PAIRS)
    }

    /// As [`GroupScratch::new`] with `tile_pairs` pairs per tile: 64 or 128.
    pub fn with_tile_pairs(
        ctx: &GpuContext,
        max_pairs: u32,
        max_experts: u32,
        tile_pairs: u32,
    ) -> Result<Self, KernelError> {
        if tile_pairs != TILE_PAIRS && tile_pairs != 2 * TILE_PAIRS {
            return Err(arg_err(
                "moe_group",
                format!("tiles of {tile_pairs} pairs: 64 or 128"),
            ));
        }
        if max_experts == 0 || max_experts > MAX_EXPERTS || max_pairs == 0 {
            return Err(arg_err(
                "moe_group",
                format!(
                    "scratch for {max_pairs} pairs, {max_experts} experts: need pairs > 0, 1 <= experts <= {MAX_EXPERTS}"
                ),
            ));
        }
        let words = Self::words(max_pairs, max_experts);
        Ok(Self {
            buffer: ctx.storage("moe group scratch", words * 4)?,
            max_pairs,
            max_experts,
            tile_pairs,
        })
    }

    /// As [`GroupScratch::new`] with the tiles the grouped GEMM of `ctx`
    /// prefers ([`coop::preferred_tile_pairs`]: 128 pairs where the
    /// tensor-core grouped GEMM runs, else 64).
    pub fn preferred(
        ctx: &GpuContext,
        max_pairs: u32,
        max_experts: u32,
    ) -> Result<Self, KernelError> {
        Self::with_tile_pairs(ctx, max_pairs, max_experts, coop::preferred_tile_pairs(ctx))
    }

    fn words(max_pairs: u32, max_experts: u32) -> u64 {
        Self::tiles_offset_for(max_pairs) as u64 + 4 * tile_bound(max_pairs, max_experts) as u64
    }

    fn tiles_offset_for(max_pairs: u32) -> u32 {
        4 + max_pairs.next_multiple_of(4)
    }

    /// Word offset of the tile table.
    pub fn tiles_offset(&self) -> u32 {
        Self::tiles_offset_for(self.max_pairs)
    }
}

crate::uniform_struct! {
    /// Mirrors `struct GroupParams` in `shaders/moe_group_sort.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    struct GroupParams as "GroupParams" {
        pairs: u32,
        experts: u32,
        ids_off: u32,
        tiles_off: u32,
    }
}

pub(super) static GROUP_SORT: KernelSpec = KernelSpec {
    label: "moe_group",
    parts: &[Part::File(&MOE_GROUP_SORT)],
    entry: "moe_group",
    uniforms: &[&GroupParams::LAYOUT],
    needs: Needs::Baseline,
};

pub(super) static GROUP_GEMM: KernelSpec = KernelSpec {
    label: "matmul_grouped",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&MATMUL_COMMON),
        Part::File(&MOE_GROUP_GEMM),
    ],
    entry: "moe_group_gemm",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

/// Activations of [`matmul_grouped`]: for pair `p < pairs`, x row `p / x_row_div`
/// in, y row `p` out (width `rows_per_expert`, or half of it for SwiGlu), as
/// [`IndexedArgs`](crate::matmul::IndexedArgs) without the ids (the grouping
/// comes from [`moe_group`] over those ids). `pairs` is the row count of `y`.
#[derive(Debug, Clone, Copy)]
pub struct GroupedArgs<'a> {
    /// Input rows, f32 `[(pairs - 1) / x_row_div + 1, w.cols]`, any row stride,
    /// from element 0 of their buffer.
    pub x: TensorView<'a>,
    /// Pairs per x row (top-k when x holds one row per token).
    pub x_row_div: u32,
    /// Output rows, f32 `[pairs, width]`, one per pair, any row stride, from
    /// element 0 of their buffer; `pairs` must equal the `pairs` of the
    /// [`moe_group`] that filled the scratch.
    pub y: TensorView<'a>,
    pub rows_per_expert: u32,
}

fn arg_err(kernel: &'static str, detail: String) -> KernelError {
    KernelError::Arguments { kernel, detail }
}

/// Groups pairs `0..pairs` by expert `ids[p]` (the `pairs` u32 ids of `ids`,
/// a `[1, pairs]` view at any offset) into `scratch` (ids `>= experts` are
/// left out). One workgroup; record it before the [`matmul_grouped`] launches
/// that read the grouping.
pub fn moe_group(
    ctx: &GpuContext,
    ids: &TensorView<'_>,
    experts: u32,
    scratch: &GroupScratch,
) -> Result<Dispatch, KernelError> {
    const K: &str = "moe_group";
    if experts == 0 || experts > scratch.max_experts {
        return Err(arg_err(
            K,
            format!(
                "{experts} experts, scratch holds 1..={scratch_max_experts}",
                scratch_max_experts = scratch.max_experts
            ),
        ));
    }
    let pairs = ids.shape[1];
    if ids.shape[0] != 1 || pairs > scratch.max_pairs as u64 {
        return Err(arg_err(
            K,
            format!(
                "ids of shape {ids_shape:?}, expected [1, pairs] with pairs <= {scratch_max_pairs} \
                 (what the scratch holds)",
                ids_shape = ids.shape,
                scratch_max_pairs = scratch.max_pairs
            ),
        ));
    }
    ids.expect(K, "ids", [1, pairs], Dtype::U32, false)?;
    // Inside its buffer, so within u32 (checked).
    let (pairs, ids_offset) = (pairs as u32, ids.offset as u32);
    let ids = ids.buffer;
    ctx.launch(&GROUP_SORT)
        .constant("GTILE", scratch.tile_pairs)
        .bind("gids", ids)
        .bind("gout", &scratch.buffer)
        .params(&GroupParams {
            pairs,
            experts,
            ids_off: ids_offset,
            tiles_off: scratch.tiles_offset(),
        })
        .grid([1, 1, 1])
        .record()
}

/// Checks the weight's layout (pieces contiguous and sized, strides, scales).
fn check_weight(kernel: &'static str, w: &GpuWeight) -> Result<(), KernelError> {
    let bad = |detail: String| {
        arg_err(
            kernel,
            format!("weight `{w_name}`: {detail}", w_name = w.name),
        )
    };
    if w.rows == 0 || w.cols == 0 {
        return Err(bad(format!(
            "shape [{w_rows}, {w_cols}] has a zero dimension",
            w_rows = w.rows,
            w_cols = w.cols
        )));
    }
    let stride_cols = w.stride_words * w.format.per_word();
    if !w.stride_words.is_multiple_of(4) || stride_cols < w.cols {
        return Err(bad(format!(
            "row stride of {w_stride_words} words for {w_cols} columns",
            w_stride_words = w.stride_words,
            w_cols = w.cols
        )));
    }
    if w.rows > u32::MAX as usize / 2 || w.stride_words > u32::MAX as usize / 4 {
        return Err(bad("too large for 32-bit indices".into()));
    }
    // The GEMM scales groups of 4 columns: a block must not split one.
    if w.block_cols < stride_cols && (w.block_cols == 0 || !w.block_cols.is_multiple_of(4)) {
        return Err(bad(format!(
            "{} columns per scale is not a multiple of 4",
            w.block_cols
        )));
    }
    let mut next = 0;
    for (i, piece) in w.pieces.iter().enumerate() {
        if piece.row0 != next || piece.rows == 0 {
            return Err(bad(format!(
                "piece {i} holds rows {piece_row0}..{piece_end}, expected to start at {next} with > 0 rows",
                piece_row0 = piece.row0,
                piece_end = piece.row0 + piece.rows
            )));
        }
        if piece.buffer.size() < (piece.rows * w.stride_words * 4) as u64 {
            return Err(bad(format!("piece {i} buffer is too small")));
        }
        next += piece.rows;
    }
    if next != w.rows {
        return Err(bad(format!(
            "pieces cover {next} rows of {w_rows}",
            w_rows = w.rows
        )));
    }
    if w.meta.size() < (w.rows as u64 + 1) * 4 {
        return Err(bad("scale table too small".into()));
    }
    Ok(())
}

/// Output columns `j < half` of expert base `base` with row `base + j` in piece `a`
/// and `base + half + j` in piece `b` (pieces as `(row0, rows)`): any?
fn swiglu_overlaps(a: &WeightPiece, b: &WeightPiece, base: usize, half: usize) -> bool {
    let lo = a.row0.max(b.row0.saturating_sub(half)).max(base);
    let hi = (a.row0 + a.rows)
        .min((b.row0 + b.rows).saturating_sub(half))
        .min(base + half);
    lo < hi
}

/// MoE matmul over the grouping in `scratch` (filled by [`moe_group`] from the
/// same ids, pairs and expert count `w.rows / rows_per_expert`): y row p =
/// x row `p / x_row_div` · `W[e·rpe .. (e+1)·rpe]ᵀ` with the epilogue applied
/// (SwiGlu: gate rows `e·rpe ..`, up rows `e·rpe + rpe/2 ..`; Accumulate adds to
/// y row p). Rows of pairs with ids `>= experts` are left unchanged. One launch
/// per weight piece (per gate/up piece pair for SwiGlu).
///
/// Errors: [`KernelError::Arguments`] for sizes that do not fit the buffers or
/// the scratch, rows not a multiple of `rows_per_expert`, odd `rows_per_expert`
/// with SwiGlu, `x_row_div == 0`, `x` and `y` being one buffer, block scales
/// narrower than 4 columns or not a multiple of 4, a grid past 65535 in a
/// dimension; [`KernelError::Compile`] if the pipeline fails.
pub fn matmul_grouped(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &GroupedArgs,
    scratch: &GroupScratch,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, KernelError> {
    matmul_grouped_with(ctx, w, args, scratch, epilogue, MatmulPath::Auto)
}

/// [`matmul_grouped`] on a chosen path: `Scalar` runs the scalar grouped
/// GEMM; `Coop` the tensor-core one ([`coop`]), [`KernelError::Unsupported`]
/// where the adapter or the weight's format cannot take it; `Auto` the
/// tensor-core one where [`coop::auto`] says so, else the scalar one.
pub fn matmul_grouped_with(
    ctx: &GpuContext,
    w: &GpuWeight,
    args: &GroupedArgs,
    scratch: &GroupScratch,
    epilogue: Epilogue,
    path: MatmulPath,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "matmul_grouped";
    check_weight(K, w)?;
    let rpe = args.rows_per_expert as usize;
    if rpe == 0 || !w.rows.is_multiple_of(rpe) {
        return Err(arg_err(
            K,
            format!(
                "`{w_name}` has {w_rows} rows, not a multiple of {rpe} rows per expert",
                w_name = w.name,
                w_rows = w.rows
            ),
        ));
    }
    let swiglu = epilogue == Epilogue::SwiGlu;
    if swiglu && !rpe.is_multiple_of(2) {
        return Err(arg_err(
            K,
            format!("SwiGlu needs an even number of rows per expert, got {rpe}"),
        ));
    }
    if args.x_row_div == 0 {
        return Err(arg_err(K, "x_row_div is 0".into()));
    }
    if args.x.buffer == args.y.buffer || args.y.buffer == &scratch.buffer {
        return Err(arg_err(
            K,
            "y is the same buffer as x or the scratch".into(),
        ));
    }
    let experts = (w.rows / rpe) as u32;
    let pairs = args.y.shape[0];
    if experts > scratch.max_experts || pairs > scratch.max_pairs as u64 {
        return Err(arg_err(
            K,
            format!(
                "{pairs} pairs over {experts} experts, scratch holds {scratch_max_pairs} over {scratch_max_experts}",
                scratch_max_pairs = scratch.max_pairs,
                scratch_max_experts = scratch.max_experts
            ),
        ));
    }
    let width = if swiglu { rpe / 2 } else { rpe };
    let x_rows = match pairs {
        0 => 0,
        _ => (pairs - 1) / args.x_row_div as u64 + 1,
    };
    let (x, y) = (&args.x, &args.y);
    x.check_shape("x", [x_rows, w.cols as u64], Dtype::F32)
        .and_then(|_| x.check_origin("x"))
        .and_then(|_| y.check_shape("y", [pairs, width as u64], Dtype::F32))
        .and_then(|_| y.check_origin("y"))
        .map_err(|e| e.in_kernel(K))?;
    if pairs == 0 {
        return Ok(Vec::new());
    }
    // Inside their buffers, so within u32 (checked).
    let (pairs, x_stride, y_stride) = (pairs as u32, x.stride as u32, y.stride as u32);

    let half = rpe / 2;
    let mut launches: Vec<(&WeightPiece, &WeightPiece)> = Vec::new();
    if swiglu {
        for a in &w.pieces {
            for b in &w.pieces {
                if (0..experts as usize).any(|e| swiglu_overlaps(a, b, e * rpe, half)) {
                    launches.push((a, b));
                }
            }
        }
    } else {
        launches.extend(w.pieces.iter().map(|a| (a, a)));
    }

    let use_coop = match path {
        // The dense fast kernel's forced paths mean the tensor cores here.
        MatmulPath::Coop
        | MatmulPath::CoopFast
        | MatmulPath::CoopFastExact
        | MatmulPath::CoopF16
            if !coop::supported(ctx, w) =>
        {
            return Err(KernelError::Unsupported {
                what: format!("tensor-core grouped GEMM of `{w_name}`", w_name = w.name),
                detail: coop::unsupported_reason(ctx, w),
            });
        }
        MatmulPath::Coop
        | MatmulPath::CoopFast
        | MatmulPath::CoopFastExact
        | MatmulPath::CoopF16 => true,
        MatmulPath::Auto => coop::auto(ctx, w),
        MatmulPath::Scalar => false,
    };
    // The coop kernel takes a whole tile-table entry (<= 128 pairs) per
    // workgroup row; the scalar one 64 pairs (SUB per entry).
    let sub = if use_coop {
        1
    } else {
        scratch.tile_pairs / TILE_PAIRS
    };
    let tiles = tile_bound_for(pairs, experts, scratch.tile_pairs);
    let tile_rows = if use_coop { coop::TILE_ROWS } else { TILE_ROWS };
    let (gx, gy) = (
        (width as u32).div_ceil(if swiglu { tile_rows / 2 } else { tile_rows }),
        tiles * sub,
    );
    if gx > MAX_GROUPS || gy > MAX_GROUPS {
        return Err(arg_err(
            K,
            format!("{pairs} pairs × {width} outputs need a {gx}×{gy} grid"),
        ));
    }
    let base = MmParams {
        rows: w.rows as u32,
        cols: w.cols as u32,
        stride4: (w.stride_words / 4) as u32,
        block_cols: w.block_cols as u32,
        t: pairs,
        x_stride,
        x_div: args.x_row_div,
        y_stride,
        n_end: width as u32,
        half: half as u32,
        rpe: rpe as u32,
        experts,
        ids_off: scratch.tiles_offset(),
        epi: epilogue.code(),
        x_aligned: u32::from(x_stride.is_multiple_of(4)),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(launches.len());
    for (a, b) in launches {
        let p = MmParams {
            a_row0: a.row0 as u32,
            a_rows: a.rows as u32,
            b_row0: b.row0 as u32,
            b_rows: b.rows as u32,
            ..base
        };
        let launch = if use_coop {
            coop::launch(ctx, w)
        } else {
            ctx.launch(&GROUP_GEMM)
                .constant("FORMAT", w.format as u32)
                .constant("SUB", sub)
        };
        out.push(
            launch
                .bind("wa", &a.buffer)
                .bind("wb", &b.buffer)
                .bind("scales", &w.meta)
                .bind("xs", x.buffer)
                .bind("ys", y.buffer)
                .bind("xs4", x.buffer)
                .bind("ids", &scratch.buffer)
                .params(&p)
                .grid([gx, gy, 1])
                .record()?,
        );
    }
    Ok(out)
}
