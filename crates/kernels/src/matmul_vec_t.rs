//! The small-T GEMV (`shaders/matmul_vec_t.wgsl`, `mm_vec_t`): dense matmuls
//! of 2..=16 tokens (batched decode's projections, a speculative step's
//! verification) read each weight chunk once for all the tokens of a block
//! and keep one accumulator per token in registers. A workgroup owns
//! [`SmallT::quads`](crate::SmallT::quads) quads of 4 weight rows; the
//! threads of one chunk of columns sit next to each other, so they read the
//! same x values in one memory transaction and x traffic shrinks with the
//! quads (at T = 16 it would otherwise exceed the weight traffic several
//! times over). The shape of the workgroup comes from the adapter's
//! [`Tuning`](crate::Tuning); every shape computes the same results.

use super::{MATMUL_COMMON, MATMUL_VEC_COMMON};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::SmallT;
use crate::{GpuContext, GpuWeight, Launch};

use super::MmParams;

crate::shader!(MATMUL_VEC_T, "matmul_vec_t.wgsl");

pub(super) static MM_VEC_T: KernelSpec = KernelSpec {
    label: "matmul_gemv_t",
    parts: &[
        Part::File(&shaders::NUMERIC),
        Part::File(&MATMUL_COMMON),
        Part::File(&MATMUL_VEC_COMMON),
        Part::File(&MATMUL_VEC_T),
    ],
    entry: "mm_vec_t",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

/// Most tokens one workgroup holds accumulators for (`a0..a15` in the shader).
pub(super) const MAX_TOKENS: u32 = 16;

/// The workgroup shape of a launch: threads, quads, tokens per block, prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub threads: u32,
    pub quads: u32,
    pub tv: u32,
    pub prefetch: bool,
    pub chunk_scale: bool,
}

/// Tokens per workgroup for blocks of `t` tokens: 2 and 4, then multiples of
/// 4. The extra tokens repeat the last one (computed, not stored) and cost
/// arithmetic only, which the weight traffic hides at these sizes, while each
/// value is a pipeline of its own for every format, scale mode and norm.
fn bucket(t: u32) -> u32 {
    if t <= 2 {
        t
    } else if t <= 4 {
        4
    } else {
        t.next_multiple_of(4)
    }
}

/// The shape for `t` tokens over rows of `chunks` `vec4<u32>` chunks under
/// `cfg`. Out-of-range tuning values are brought into range (powers of two,
/// quads 1..=8, threads 64..=256, tokens 1..=16): only speed depends on them.
/// Tokens are split into equal blocks of at most `max_tokens` (T = 12 with 8:
/// two blocks of 6, not 8 + 4), each rounded up by [`bucket`] within
/// `max_tokens`. Threads shrink (not below 64) while each quad would get more
/// threads than its rows have chunks.
pub(super) fn shape(cfg: &SmallT, t: u32, chunks: u32) -> Shape {
    let pow2 = |v: u32, lo: u32, hi: u32| {
        let v = v.clamp(lo, hi);
        // Largest power of two <= v.
        1 << (31 - v.leading_zeros())
    };
    let quads = pow2(cfg.quads, 1, 8);
    let max_threads = pow2(cfg.threads, 64, 256);
    let threads = (chunks.max(1).next_power_of_two() * quads).clamp(64, max_threads);
    let max_tv = cfg.max_tokens.clamp(1, MAX_TOKENS);
    let t = t.max(1);
    let blocks = t.div_ceil(max_tv);
    Shape {
        threads,
        quads,
        tv: bucket(t.div_ceil(blocks)).min(max_tv),
        prefetch: cfg.prefetch,
        chunk_scale: cfg.chunk_scale,
    }
}

/// A launch of `mm_vec_t` for `w` with shape `s`, scale mode `mode` and, with
/// `norm`, the fused RMSNorm.
pub(super) fn launch<'a>(
    ctx: &'a GpuContext,
    w: &GpuWeight,
    s: &Shape,
    mode: u32,
    norm: bool,
) -> Launch<'a> {
    ctx.launch(&MM_VEC_T)
        .constant("WG", s.threads)
        .constant("Q", s.quads)
        .constant("TV", s.tv)
        .constant("PREFETCH", u32::from(s.prefetch))
        .constant("CHUNK_SCALE", u32::from(s.chunk_scale))
        .constant("NORM", u32::from(norm))
        .constant("SCALE_MODE", mode)
        .constant("FORMAT", w.format as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(threads: u32, quads: u32, max_tokens: u32) -> SmallT {
        SmallT {
            threads,
            quads,
            max_tokens,
            prefetch: true,
            chunk_scale: false,
        }
    }

    #[test]
    fn shapes_split_tokens_evenly_and_stay_in_range() {
        let c = cfg(256, 2, 16);
        let tvs: Vec<u32> = (1..=16).map(|t| shape(&c, t, 512).tv).collect();
        assert_eq!(
            tvs,
            [1, 2, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16]
        );
        let c8 = cfg(256, 2, 8);
        assert_eq!(shape(&c8, 8, 512).tv, 8);
        assert_eq!(shape(&c8, 9, 512).tv, 8);
        assert_eq!(shape(&c8, 12, 512).tv, 8);
        assert_eq!(shape(&c8, 16, 512).tv, 8);
        assert_eq!(shape(&cfg(256, 2, 6), 16, 512).tv, 6);
        assert_eq!(shape(&cfg(256, 2, 7), 13, 512).tv, 7);
        // Wide rows: all the threads; short rows: fewer, not below 64.
        assert_eq!(shape(&c, 4, 512).threads, 256);
        assert_eq!(shape(&c, 4, 100).threads, 256);
        assert_eq!(shape(&c, 4, 60).threads, 128);
        assert_eq!(shape(&c, 4, 1).threads, 64);
        assert_eq!(shape(&cfg(256, 8, 16), 4, 60).threads, 256);
        // Out-of-range tuning values become powers of two in range.
        let odd = shape(&cfg(1000, 3, 40), 16, 512);
        assert_eq!((odd.threads, odd.quads, odd.tv), (256, 2, 16));
        let low = shape(&cfg(0, 0, 0), 3, 512);
        assert_eq!((low.threads, low.quads, low.tv), (64, 1, 1));
        let v = shape(&cfg(100, 16, 4), 3, 512);
        assert_eq!((v.threads, v.quads, v.tv), (64, 8, 4));
    }
}
