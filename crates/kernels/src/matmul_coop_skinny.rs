//! Skinny tensor-core matmul (`shaders/matmul_coop_skinny.wgsl`,
//! `mm_coop_skinny`): dense matmuls of up to [`MAX_T`] tokens (batched
//! decode of several sessions, a speculative step's verification) bound by the
//! weight bytes rather than by arithmetic. The small-T GEMV does `T` f32
//! multiply-adds per weight element, so past ~8 tokens the ALU limits it; here
//! a workgroup owns a slice of 16 × NF weight rows and all the tokens (padded
//! to 16 × MF, MF ≤ 4), reads and decodes its rows once, and the tensor cores
//! do the multiply-adds (f16 inputs, f32 accumulators).
//!
//! Precision as [`mm_coop`](super::coop)'s variants, per context: exact (x
//! split in two f16 halves after a per-row power of two, results as the f32
//! GEMV's to ~1e-6 of Σ|x·w|), fast ([`MatmulPrecision::Fast`]: one f16 part
//! of the scaled x) or plain (`f16_matmul`). Weights are staged as stored
//! (exact in f16 for BF16, F16, E4M3): a scale constant along each row
//! multiplies in the f32 epilogue; block scales whose blocks are a multiple
//! of 32 columns wide (FP8's 128 × 128) multiply each block's partial sums
//! in f32 (`BLOCKS`: the accumulators move to f32 registers at the end of
//! each block, times the block's scale of their row), so FP8 stays exact in
//! the weights; other block widths are multiplied while staging and rounded
//! to f16, and [`auto`] leaves them to the other paths. Epilogues: store,
//! accumulate, SwiGLU, and the fused RMSNorm of
//! [`matmul_normed`](super::matmul_normed) (x staged times the norm's
//! weight, 1 / rms per token in the epilogue).
//!
//! Occupancy: the grid is one workgroup per 16 × NF weight rows (per 8 × NF
//! SwiGLU columns) per 16 × MF tokens per column split. Every workgroup
//! reads its tokens' x rows (f32, from L2) twice, so NF sets the x bytes per
//! weight byte ([`shape`]: 4 subgroups up to 32 tokens, 8 above), and the
//! columns are split (split-K, [`splits_for`], boundaries on multiples of
//! 128 columns, at most 8 splits) until the grid has two workgroups per
//! streaming multiprocessor where the tuning knows their count
//! ([`Tuning::gemv_wave`](crate::Tuning)), 256 elsewhere: each workgroup
//! keeps only one step of loads in flight, so a small grid leaves the memory
//! system idle (4096-row weights at 16 tokens: 64 workgroups, 5 splits).
//! Each split's workgroups write partial sums (f32, times 1/s and the row's
//! scale) into a buffer the launch owns (kept below an eighth of the
//! launch's weight bytes: fewer splits at many tokens), and
//! `mm_skinny_reduce` adds them in split order and applies the epilogue. With the fused norm (no splits: the
//! norm needs whole rows) NF shrinks towards 2 instead while the grid is
//! short. Steps of 64 columns (two steps of loads in flight for the price
//! of one barrier pair) where a thread's share fits its registers and block
//! scales are at least that wide, else 32 ([`SkinnyShape`] forces either).
//! These choices are estimates, not measurements: `skinny_bandwidth` (tests)
//! sweeps them, and an adapter's [`Tuning::skinny_tiers`](crate::Tuning::skinny_tiers)
//! replaces them per token range (the H100's: 8 subgroups, 64-column steps
//! up to 16 tokens).
//!
//! Selection: [`MatmulPath::Auto`](super::MatmulPath::Auto) runs it for
//! `T` in [`Tuning::skinny_min_t`](crate::Tuning::skinny_min_t)..=64 (17, 9
//! on the H100) where [`auto`] holds (the adapter has cooperative matrices,
//! the weight is exact in f16 or the context takes f16 matmuls, and the
//! switch [`Tuning::skinny`](crate::Tuning::skinny) is on; `QWGPU_SKINNY=0`
//! turns it off, `QWGPU_SKINNY=nosplit` only its column splits). Adapters
//! without cooperative matrices keep the GEMV (T ≤ 16) and GEMM paths.

use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{Dispatch, GpuContext, GpuWeight, KernelError, Launch, MatmulPrecision, WeightFormat};

crate::shader!(MATMUL_COOP_SKINNY, "matmul_coop_skinny.wgsl");
crate::shader!(MATMUL_COOP_SKINNY_REDUCE, "matmul_coop_skinny_reduce.wgsl");

crate::uniform_struct! {
    /// Mirrors `struct SkReduceParams` in `shaders/matmul_coop_skinny_reduce.wgsl`.
    #[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    pub(super) struct SkReduceParams as "SkReduceParams" {
        pub(super) t: u32,
        pub(super) n: u32,
        pub(super) splits: u32,
        pub(super) epi: u32,
        pub(super) width: u32,
        pub(super) n0: u32,
        pub(super) y_off: u32,
        pub(super) y_stride: u32,
    }
}

/// The split-K reduction (plain scalar code, within WebGPU's default limits).
pub(super) static MM_SKINNY_REDUCE: KernelSpec = KernelSpec {
    label: "matmul_coop_skinny_reduce",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&MATMUL_COOP_SKINNY_REDUCE),
    ],
    entry: "mm_skinny_reduce",
    uniforms: &[&SkReduceParams::LAYOUT],
    needs: Needs::Baseline,
};

pub(super) static MM_COOP_SKINNY: KernelSpec = KernelSpec {
    label: "matmul_coop_skinny",
    parts: &[
        Part::File(&MATMUL_COOP_SKINNY),
        Part::File(&shaders::NUMERIC),
        Part::File(&super::MATMUL_COMMON),
    ],
    entry: "mm_coop_skinny",
    uniforms: &[&super::MmParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

/// Most tokens of one token block (4 fragments of 16); more run as several blocks.
pub const MAX_T: u32 = 64;

/// Columns staged per step where 64 does not fit (the shader's `CK`):
/// registers, workgroup memory, block scales 32 columns wide.
const CK: u32 = 32;
/// Columns staged per step by default: two steps' worth of bytes in flight
/// per workgroup (the kernel is bound by the latency of its loads).
const WIDE_CK: u32 = 64;
/// x vec4s and W chunks one thread stages per step at most (the shader's register arrays).
const MAX_NX: u32 = 16;
const MAX_NW: u32 = 8;

/// A forced workgroup shape of the skinny kernel ([`matmul_skinny_with`](super::matmul_skinny_with),
/// benchmarks); `None` fields take the adapter's choice. Only speed depends on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkinnyShape {
    /// Subgroups (16-row weight fragments) per workgroup: 2, 4 or 8.
    pub subgroups: Option<u32>,
    /// Columns staged per step: 32 or 64 (64 only where one thread's share
    /// of a step fits its registers and block scales are at least that
    /// wide, else 32).
    pub columns: Option<u32>,
    /// Splits of the columns (split-K, 1: none; 1..=8, never with the fused
    /// norm): each split's workgroups write partial sums that a second launch
    /// adds up with the epilogue.
    pub splits: Option<u32>,
}

/// Most splits of the columns.
const MAX_SPLITS: u32 = 8;
/// Split boundaries are multiples of this many columns (FP8's block width,
/// a multiple of every step width).
const SPLIT_ALIGN: u32 = 128;

/// Whether `w`'s block scales are applied to each block's partial sums
/// (the shader's `BLOCKS`): blocks narrower than the row and a multiple of
/// the 32-column step wide, not 4-bit.
pub(super) fn block_sums(w: &GpuWeight) -> bool {
    !w.format.is_int4()
        && w.block_cols < w.cols
        && w.block_cols > 0
        && w.block_cols.is_multiple_of(CK as usize)
}

/// The workgroup shape of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Subgroups = 16-row weight fragments per workgroup (2, 4 or 8).
    pub nf: u32,
    /// 16-token fragments per workgroup (1..=4).
    pub mf: u32,
    /// Columns per step (32 or 64).
    pub ck: u32,
    /// Column splits (1: none) and columns per split (0: none).
    pub splits: u32,
    pub kslice: u32,
}

/// Splits of `cols` columns that bring a grid of `groups` workgroups to at
/// least `target` (at most `max_splits`), and the columns per split (a
/// multiple of 128); `(1, 0)` where the grid is large enough already.
pub(super) fn splits_for(groups: u32, cols: u32, target: u32, max_splits: u32) -> (u32, u32) {
    let want = target.div_ceil(groups.max(1)).clamp(1, max_splits.max(1));
    if want <= 1 {
        return (1, 0);
    }
    let kslice = cols.div_ceil(want).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
    let splits = cols.div_ceil(kslice.max(1));
    if splits <= 1 {
        (1, 0)
    } else {
        (splits, kslice)
    }
}

/// Workgroup memory of a launch: x hi and lo tiles (16 MF rows), the W tile
/// (16 NF rows), at the padded stride CK + 8 halves; one f32 result fragment
/// per subgroup, two per-token factors.
pub(super) fn shared_bytes(s: Shape) -> u32 {
    let (tm, lds) = (16 * s.mf, s.ck + 8);
    2 * tm * lds * 2 + 16 * s.nf * lds * 2 + s.nf * 256 * 4 + 2 * tm * 4
}

/// Whether one thread's share of a step of shape `s` fits the shader's
/// register arrays with subgroups of `sgs` and `cw`-element weight chunks.
fn fits_registers(s: Shape, sgs: u32, cw: u32) -> bool {
    let wg = s.nf * sgs;
    let nx = (16 * s.mf * s.ck / 4).div_ceil(wg);
    let nw = (16 * s.nf * (s.ck / cw).max(1)).div_ceil(wg);
    nx <= MAX_NX && nw <= MAX_NW
}

/// The adapter's one subgroup size, or `None` where the kernel cannot run
/// at all (no cooperative matrices, f16 or subgroups of one fixed size of at
/// least 16, or too little workgroup memory for the smallest shape).
fn subgroup_size(ctx: &GpuContext) -> Option<u32> {
    let c = &ctx.caps;
    let (lo, hi) = c.subgroup_sizes;
    let smallest = Shape {
        nf: 2,
        mf: 4,
        ck: CK,
        splits: 1,
        kslice: 0,
    };
    (c.cooperative_matrix
        && c.f16
        && c.subgroups
        && lo == hi
        && lo >= 16
        && lo.is_power_of_two()
        && 2 * hi <= ctx.limits.max_compute_invocations_per_workgroup
        && 2 * hi <= ctx.limits.max_compute_workgroup_size_x
        && shared_bytes(smallest) <= ctx.limits.max_compute_workgroup_storage_size)
        .then_some(hi)
}

/// Whether the device runs this kernel for `w` (formats as `mm_coop`: not
/// E5M2, which may overflow f16 once scaled; 4-bit only in the plain variant).
pub(super) fn supported(ctx: &GpuContext, w: &GpuWeight) -> bool {
    let format_ok = match w.format {
        WeightFormat::E5M2 | WeightFormat::Q4F32 => false,
        WeightFormat::Q4 => ctx.f16_matmul,
        _ => true,
    };
    subgroup_size(ctx).is_some() && format_ok
}

/// Whether [`MatmulPath::Auto`](super::MatmulPath::Auto) runs a `t`-token
/// matmul of `w` here: the switch is on, `t` in
/// [`Tuning::skinny_min_t`](crate::Tuning::skinny_min_t)..=[`MAX_T`], the
/// kernel runs on this device, and the weight is exact in f16 with a scale
/// constant along its rows or blocks of multiples of 32 columns (or the
/// context takes f16 matmuls). 4-bit weights keep their paths (the GEMV,
/// the plain `mm_coop` with f16 matmuls): staged as f16((q − zero)·scale)
/// here too, but not measured.
pub(super) fn auto(ctx: &GpuContext, w: &GpuWeight, t: u32) -> bool {
    let in_f16 = matches!(
        w.format,
        WeightFormat::BF16 | WeightFormat::F16 | WeightFormat::E4M3
    );
    let exact_w = in_f16 && (w.block_cols >= w.cols || block_sums(w));
    ctx.tuning.skinny
        && !w.format.is_int4()
        && super::skinny_tokens(ctx).contains(&t)
        && supported(ctx, w)
        && (ctx.f16_matmul || exact_w)
}

/// The shape for `n` outputs (SwiGLU columns when `swiglu`) and `t` tokens:
/// MF covers the tokens (blocks of 64 past that). NF bounds the x bytes
/// each weight byte costs (every workgroup reads all its tokens' x rows
/// from L2 twice: the pre-pass and the staging, 8·T bytes per column for
/// 32·NF bytes of BF16 weights): 4 up to 32 tokens, 8 above. Where the
/// columns cannot be split (`can_split` false: the fused norm) NF shrinks
/// towards 2 instead while the grid has fewer than `target` workgroups;
/// within `max_subgroups` subgroups of workgroup memory and threads.
pub(super) fn shape(
    n: u32,
    t: u32,
    swiglu: bool,
    target: u32,
    max_subgroups: u32,
    can_split: bool,
) -> Shape {
    let mf = t.clamp(1, MAX_T).div_ceil(16);
    let mut nf = if mf >= 3 { 8 } else { 4 };
    while nf > 2 && (nf > max_subgroups || (!can_split && groups_along(n, nf, swiglu) < target)) {
        nf /= 2;
    }
    Shape {
        nf,
        mf,
        ck: WIDE_CK,
        splits: 1,
        kslice: 0,
    }
}

/// Workgroups along `n` outputs with `nf` subgroups.
fn groups_along(n: u32, nf: u32, swiglu: bool) -> u32 {
    n.div_ceil(if swiglu { 8 * nf } else { 16 * nf })
}

/// [`shape`] on this context for `w`: two workgroups per streaming
/// multiprocessor where the tuning knows the adapter's wave (4 per SM), 256
/// elsewhere; the tuning's tier for `t` tokens
/// ([`Tuning::skinny_tiers`](crate::Tuning::skinny_tiers), with or without
/// the `norm`) and then `forced` (benchmarks) replace the choices they name. NF and
/// CK shrink until the workgroup memory and registers fit. Without the fused
/// `norm`, a grid still short of the target splits the columns
/// ([`splits_for`]) where the partial sums fit one binding.
pub(super) fn shape_for(
    ctx: &GpuContext,
    w: &GpuWeight,
    n: u32,
    t: u32,
    swiglu: bool,
    norm: bool,
    forced: SkinnyShape,
) -> Shape {
    let target = ctx.tuning.gemv_wave.map_or(256, |w| w / 2);
    let sgs = subgroup_size(ctx).unwrap_or(32);
    let limit = ctx.limits.max_compute_invocations_per_workgroup / sgs.max(1);
    let mut s = shape(n, t, swiglu, target, limit.max(2), !norm);
    let forced = with_tier(forced, ctx.tuning.skinny_shape(t, norm));
    if let Some(nf) = forced.subgroups {
        s.nf = if nf >= 8 {
            8
        } else if nf >= 4 {
            4
        } else {
            2
        };
    }
    if let Some(ck) = forced.columns {
        s.ck = if ck >= 64 { 64 } else { 32 };
    }
    let cw = (4 * w.format.per_word()) as u32;
    // (Block sums need whole steps inside a block.)
    let blocks_narrow = block_sums(w) && !w.block_cols.is_multiple_of(s.ck as usize);
    if s.ck > CK && (!fits_registers(s, sgs, cw) || blocks_narrow) {
        s.ck = CK;
    }
    // (A forced or tiered NF within the adapter's threads too.)
    while s.nf > 2
        && (s.nf > limit || shared_bytes(s) > ctx.limits.max_compute_workgroup_storage_size)
    {
        s.nf /= 2;
    }
    if s.ck > CK && shared_bytes(s) > ctx.limits.max_compute_workgroup_storage_size {
        s.ck = CK;
    }
    let (gx, gy) = grid(n, t, swiglu, s);
    let width = if swiglu { 2 * n } else { n } as u64;
    // The partial sums stay below an eighth of the launch's weight bytes
    // (their write and read cost bandwidth too; 4096² BF16 at 64 tokens:
    // at most 4 splits).
    let weight_bytes = width * (w.stride_words * 4) as u64;
    let per_split = (t as u64 * width * 4).max(1);
    let max_splits = (weight_bytes / (8 * per_split)).clamp(1, MAX_SPLITS as u64) as u32;
    let (splits, kslice) = match forced.splits {
        Some(k) => splits_for(1, w.cols as u32, k, MAX_SPLITS),
        None if ctx.tuning.skinny_split => splits_for(gx * gy, w.cols as u32, target, max_splits),
        None => (1, 0),
    };
    let part = splits as u64 * t as u64 * width * 4;
    if !norm && splits > 1 && part <= ctx.limits.max_storage_buffer_binding_size {
        s.splits = splits;
        s.kslice = kslice;
    }
    s
}

/// `forced`'s choices, and the tuning's tier (`tier`) where `forced` leaves
/// a field to the adapter.
pub(super) fn with_tier(forced: SkinnyShape, tier: SkinnyShape) -> SkinnyShape {
    SkinnyShape {
        subgroups: forced.subgroups.or(tier.subgroups),
        columns: forced.columns.or(tier.columns),
        splits: forced.splits.or(tier.splits),
    }
}

/// Bytes of the split-K partial sums of a launch in shape `s` (`width`
/// partial rows per token).
pub(super) fn partial_bytes(s: Shape, t: u32, width: u32) -> u64 {
    s.splits as u64 * t as u64 * width as u64 * 4
}

/// Workgroup grid (along outputs, along token blocks).
pub(super) fn grid(n: u32, t: u32, swiglu: bool, s: Shape) -> (u32, u32) {
    (groups_along(n, s.nf, swiglu), t.div_ceil(16 * s.mf))
}

/// A launch for `w` in shape `s` (call only when [`supported`]), with the
/// fused norm when `norm`: plain with `f16_matmul`, else exact or fast by the
/// context's precision.
pub(super) fn launch<'a>(ctx: &'a GpuContext, w: &GpuWeight, s: Shape, norm: bool) -> Launch<'a> {
    let sgs = subgroup_size(ctx).unwrap_or(32);
    ctx.launch(&MM_COOP_SKINNY)
        .constant("WG", s.nf * sgs)
        .constant("NF", s.nf)
        .constant("MF", s.mf)
        .constant("CK", s.ck)
        .constant("KSLICE", s.kslice)
        .constant("FORMAT", w.format as u32)
        .constant("EXACT", f64::from(u8::from(!ctx.f16_matmul)))
        .constant(
            "SPLIT",
            f64::from(u8::from(ctx.precision != MatmulPrecision::Fast)),
        )
        .constant("NORM", f64::from(u8::from(norm)))
        .constant("BLOCKS", f64::from(u8::from(block_sums(w))))
}

/// The split-K reduction of a launch's partial sums `part` into `y` (module
/// doc of the shader): a grid-stride loop over the outputs.
pub(super) fn reduce(
    ctx: &GpuContext,
    part: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rp: &SkReduceParams,
) -> Result<Dispatch, KernelError> {
    const WG: u32 = 256;
    let groups = (rp.t * rp.n).div_ceil(WG).clamp(1, 4096);
    ctx.launch(&MM_SKINNY_REDUCE)
        .constant("WG", WG)
        .bind("part", part)
        .bind("y", y)
        .params(rp)
        .grid([groups, 1, 1])
        .record()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_the_tokens_and_fill_the_grid() {
        // H100: 2 × 132 SMs.
        let h100 = 264;
        // Token fragments: 16 tokens each, at most 4.
        let mfs: Vec<u32> = [9, 13, 16, 17, 32, 33, 48, 49, 64, 100]
            .iter()
            .map(|&t| shape(4096, t, false, h100, 8, true).mf)
            .collect();
        assert_eq!(mfs, [1, 1, 1, 2, 2, 3, 3, 4, 4, 4]);
        // Splittable: 4 subgroups up to 32 tokens, 8 above, whatever the grid.
        let nfs: Vec<u32> = [9, 32, 33, 64]
            .iter()
            .map(|&t| shape(4096, t, false, h100, 8, true).nf)
            .collect();
        assert_eq!(nfs, [4, 4, 8, 8]);
        assert_eq!(shape(65536, 16, false, h100, 8, true).nf, 4);
        // Fused norm (no splits): NF shrinks while the grid is short.
        assert_eq!(shape(4096, 16, false, h100, 8, false).nf, 2);
        assert_eq!(shape(24576, 16, false, h100, 8, false).nf, 4);
        assert_eq!(shape(24576, 64, false, h100, 8, false).nf, 4);
        assert_eq!(shape(65536, 64, false, h100, 8, false).nf, 8);
        // SwiGLU: half the columns per workgroup.
        assert_eq!(shape(12288, 16, true, h100, 8, false).nf, 4);
        assert_eq!(shape(12288, 64, true, h100, 8, false).nf, 4);
        assert_eq!(shape(12288, 64, true, 100, 8, false).nf, 8);
        // Thread limits cap NF.
        assert_eq!(shape(65536, 64, false, h100, 4, true).nf, 4);
        assert_eq!(shape(65536, 16, false, h100, 1, true).nf, 2);
        assert_eq!(shape(4096, 16, false, h100, 8, true).ck, 64);
        // Grids: outputs × token blocks.
        let s = Shape {
            nf: 2,
            mf: 1,
            ck: 32,
            splits: 1,
            kslice: 0,
        };
        assert_eq!(grid(4096, 16, false, s), (128, 1));
        assert_eq!(grid(4097, 16, false, s), (129, 1));
        assert_eq!(grid(12288, 9, true, s), (768, 1));
        let big = Shape {
            nf: 8,
            mf: 4,
            ck: 32,
            splits: 1,
            kslice: 0,
        };
        assert_eq!(grid(100, 65, false, big), (1, 2));
    }

    /// The split-K reduction (plain code: runs on every adapter) against a
    /// CPU sum in split order, each epilogue, outputs at an offset and stride;
    /// everything else in y keeps its bits.
    #[test]
    fn split_reduction_sums_partials_with_each_epilogue() {
        let t = crate::testing::contexts()[0];
        let ctx = &t.ctx;
        let (tokens, n, splits, n0, y_off, y_stride) = (5u32, 37u32, 3u32, 4u32, 3u32, 45u32);
        for epi in 0..3u32 {
            let width = if epi == 2 { 2 * n } else { n };
            let part: Vec<f32> = (0..splits * tokens * width)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 16.0)
                .collect();
            let init: Vec<f32> = (0..y_off + tokens * y_stride)
                .map(|i| (i % 13) as f32 - 6.0)
                .collect();
            let pbuf = ctx.upload("part", &part).unwrap();
            let ybuf = ctx.upload("y", &init).unwrap();
            let rp = SkReduceParams {
                t: tokens,
                n,
                splits,
                epi,
                width,
                n0,
                y_off,
                y_stride,
            };
            let d = reduce(ctx, &pbuf, &ybuf, &rp).unwrap();
            ctx.run("skinny reduce test", &[&d]).unwrap();
            let got = ctx.read_f32(&ybuf, 0, init.len()).unwrap();
            let mut want = init.clone();
            for tok in 0..tokens {
                for c in 0..n {
                    let mut g = 0f32;
                    let mut u = 0f32;
                    for z in 0..splits {
                        let base = ((z * tokens + tok) * width) as usize;
                        g += part[base + c as usize];
                        if epi == 2 {
                            u += part[base + (n + c) as usize];
                        }
                    }
                    let yi = (y_off + tok * y_stride + n0 + c) as usize;
                    want[yi] = match epi {
                        0 => g,
                        1 => want[yi] + g,
                        _ => qwgpu_ops::activation::silu(g) * u,
                    };
                }
            }
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "epi {epi} [{i}]: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn forced_fields_win_over_the_tier() {
        let forced = SkinnyShape {
            subgroups: Some(2),
            columns: None,
            splits: None,
        };
        let tier = SkinnyShape {
            subgroups: Some(8),
            columns: Some(64),
            splits: None,
        };
        assert_eq!(
            with_tier(forced, tier),
            SkinnyShape {
                subgroups: Some(2),
                columns: Some(64),
                splits: None
            }
        );
        assert_eq!(with_tier(SkinnyShape::default(), tier), tier);
        assert_eq!(with_tier(tier, SkinnyShape::default()), tier);
    }

    #[test]
    fn splits_fill_the_grid_on_128_column_boundaries() {
        // 4096 rows on 2 subgroups: 128 workgroups, 264 wanted: 3 splits.
        assert_eq!(splits_for(128, 4096, 264, 8), (3, 1408));
        assert_eq!(splits_for(128, 12288, 264, 8), (3, 4096));
        // Large grids and short rows: none.
        assert_eq!(splits_for(384, 4096, 264, 8), (1, 0));
        assert_eq!(splits_for(128, 100, 264, 8), (1, 0));
        // At most 8; the last split may be short.
        assert_eq!(splits_for(1, 4096, 264, 8), (8, 512));
        assert_eq!(splits_for(1, 1000, 4, 8), (4, 256));
        assert_eq!(splits_for(1, 130, 2, 8), (2, 128));
        // Forced (groups 1): exactly the asked count where the columns allow.
        assert_eq!(splits_for(1, 4096, 1, 8), (1, 0));
        assert_eq!(splits_for(1, 4096, 3, 8), (3, 1408));
        for (cols, want) in [(200usize, 2u32), (1030, 3), (5000, 7), (12288, 8)] {
            let (k, slice) = splits_for(1, cols as u32, want, 8);
            assert_eq!(slice % 128, 0);
            assert!(k <= want && (k - 1) * slice < cols as u32 && k * slice >= cols as u32);
        }
    }

    #[test]
    fn workgroup_memory_and_registers() {
        for nf in [2, 4, 8] {
            for mf in 1..=4 {
                let s = Shape {
                    nf,
                    mf,
                    ck: 32,
                    splits: 1,
                    kslice: 0,
                };
                assert!(shared_bytes(s) <= 32 << 10, "{nf} {mf}");
                // 32 columns fit every subgroup size from 16 and chunk width.
                for sgs in [16, 32, 64] {
                    for cw in [4, 8, 16, 32] {
                        assert!(fits_registers(s, sgs, cw), "{nf} {mf} {sgs} {cw}");
                    }
                }
                let wide = Shape {
                    nf,
                    mf,
                    ck: 64,
                    splits: 1,
                    kslice: 0,
                };
                assert!(shared_bytes(wide) <= 48 << 10, "{nf} {mf} wide");
                // 64 columns: BF16 on 32-wide subgroups always fits.
                assert!(fits_registers(wide, 32, 8), "{nf} {mf} wide");
            }
        }
        let f32_rows = |ck| Shape {
            nf: 2,
            mf: 4,
            ck,
            splits: 1,
            kslice: 0,
        };
        assert!(!fits_registers(f32_rows(64), 16, 4));
        assert!(fits_registers(f32_rows(32), 16, 4));
        let most = Shape {
            nf: 8,
            mf: 4,
            ck: 32,
            splits: 1,
            kslice: 0,
        };
        assert_eq!(shared_bytes(most), 10240 + 10240 + 8192 + 512);
    }
}
