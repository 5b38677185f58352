//! The one-token GEMV of 4-bit weights (`shaders/matmul_q4.wgsl`): dense
//! (`mm_q4`, decode's projections) and expert-indexed with one pair per
//! workgroup row (`mm_q4_ids`, MoE decode). A 4-bit row is a quarter of a
//! BF16 row's bytes, so the other formats' 4 rows per workgroup leave each
//! thread one 16-byte load per row before the reduction; here each thread
//! keeps 4 · quads rows' loads in flight and one reduction serves many rows.
//! Runs where the groups are whole 32-column chunks (or one per row: every
//! released 4-bit format); other group sizes take the `mm_vec` path. The
//! shape is the adapter's [`Tuning::int4_gemv`](crate::Tuning); every shape
//! computes the same results.

use super::{MATMUL_COMMON, MATMUL_VEC_COMMON};
use crate::shaders;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, GpuWeight, Int4Gemv, Launch};

use super::MmParams;

crate::shader!(MATMUL_Q4, "matmul_q4.wgsl");

const PARTS: &[Part] = &[
    Part::File(&shaders::NUMERIC),
    Part::File(&MATMUL_COMMON),
    Part::File(&MATMUL_VEC_COMMON),
    Part::File(&MATMUL_Q4),
];

pub(super) static MM_Q4: KernelSpec = KernelSpec {
    label: "matmul_gemv_q4",
    parts: PARTS,
    entry: "mm_q4",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

pub(super) static MM_Q4_IDS: KernelSpec = KernelSpec {
    label: "matmul_indexed_q4",
    parts: PARTS,
    entry: "mm_q4_ids",
    uniforms: &[&MmParams::LAYOUT],
    needs: Needs::Baseline,
};

/// The workgroup shape of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub threads: u32,
    pub lanes: u32,
    /// Quads per thread.
    pub quads: u32,
    pub interleave: bool,
}

impl Shape {
    /// Quads (4-row groups, 2 outputs each for SwiGLU) per workgroup.
    pub fn quads_per_group(&self) -> u32 {
        self.threads / self.lanes * self.quads
    }
}

/// The shape for rows of `chunks` 32-column chunks under `cfg`, brought into
/// range: threads 64..=256 and lanes 16..=threads (powers of two; lanes not
/// above the row's chunks rounded up to a power of two, nor below 16: the
/// reduction's 8 partial sums per team), quads 1, 2 or 4.
pub(super) fn shape(cfg: &Int4Gemv, chunks: u32) -> Shape {
    let pow2 = |v: u32, lo: u32, hi: u32| {
        let v = v.clamp(lo, hi);
        1 << (31 - v.leading_zeros())
    };
    let threads = pow2(cfg.threads, 64, 256);
    let lanes = pow2(cfg.lanes, 16, threads).min(chunks.max(16).next_power_of_two());
    Shape {
        threads,
        lanes,
        quads: pow2(cfg.quads, 1, 4),
        interleave: cfg.interleave,
    }
}

/// [`shape`] with fewer lanes where the asked ones would idle through more
/// than an eighth of a row's passes (a 5120-column row's 160 chunks take two
/// passes of 128 lanes, the second a quarter busy; 32 lanes take five full
/// ones): the adapter's tuning, fitted to each weight's rows.
pub(super) fn fitted(cfg: &Int4Gemv, chunks: u32) -> Shape {
    let mut s = shape(cfg, chunks);
    // Lane-chunk slots of the row's passes against the chunks they load.
    let slots = |l: u32| chunks.div_ceil(l) * l;
    while s.lanes > 16 && slots(s.lanes) * 7 > chunks * 8 {
        s.lanes /= 2;
    }
    s
}

/// A launch of `spec` (`MM_Q4` or `MM_Q4_IDS`) for `w` in shape `s`, with the
/// fused norm when `norm`.
pub(super) fn launch<'a>(
    ctx: &'a GpuContext,
    spec: &'static KernelSpec,
    w: &GpuWeight,
    s: &Shape,
    norm: bool,
) -> Launch<'a> {
    ctx.launch(spec)
        .constant("WG", s.threads)
        .constant("LANES", s.lanes)
        .constant("QPT", s.quads)
        .constant("IL", u32::from(s.interleave))
        .constant("NORM", u32::from(norm))
        .constant("FORMAT", w.format as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(threads: u32, lanes: u32, quads: u32) -> Int4Gemv {
        Int4Gemv {
            threads,
            lanes,
            quads,
            interleave: false,
        }
    }

    #[test]
    fn shapes_stay_in_range_and_follow_the_rows() {
        let d = shape(&Int4Gemv::DEFAULT, 128);
        assert_eq!((d.threads, d.lanes, d.quads), (256, 128, 2));
        assert_eq!(d.quads_per_group(), 4);
        // Rows of 32 chunks (1024 columns): 32 lanes, 8 teams.
        assert_eq!(shape(&Int4Gemv::DEFAULT, 32).lanes, 32);
        // Short rows: not below 16 lanes; long rows: not above the lanes asked.
        assert_eq!(shape(&Int4Gemv::DEFAULT, 3).lanes, 16);
        assert_eq!(shape(&Int4Gemv::DEFAULT, 384).lanes, 128);
        assert_eq!(shape(&cfg(256, 512, 2), 384).lanes, 256);
        // An asked shape is taken as given: 160 chunks keep 128 lanes.
        assert_eq!(shape(&Int4Gemv::DEFAULT, 160).lanes, 128);
        // Lanes within the threads; out-of-range values become powers of two in range.
        let s = shape(&cfg(100, 128, 3), 1000);
        assert_eq!((s.threads, s.lanes, s.quads), (64, 64, 2));
        let s = shape(&cfg(0, 0, 0), 1000);
        assert_eq!((s.threads, s.lanes, s.quads), (64, 16, 1));
        let s = shape(&cfg(1000, 1000, 9), 1000);
        assert_eq!((s.threads, s.lanes, s.quads), (256, 256, 4));
    }

    #[test]
    fn fitted_shapes_leave_few_lanes_idle() {
        // Rows whose chunks would leave the asked lanes idle through more than
        // an eighth of their passes take fewer: 160 chunks (5120 columns) 32
        // lanes, 544 (17408) 64, 80 (2560) 16; whole passes keep theirs.
        let d = Int4Gemv::DEFAULT;
        assert_eq!(fitted(&d, 160).lanes, 32);
        assert_eq!(fitted(&d, 544).lanes, 64);
        assert_eq!(fitted(&d, 80).lanes, 16);
        assert_eq!(fitted(&d, 128).lanes, 128);
        assert_eq!(fitted(&d, 384).lanes, 128);
        assert_eq!(fitted(&d, 32).lanes, 32);
        assert_eq!(fitted(&cfg(256, 512, 2), 384).lanes, 128);
        // Never below 16 lanes; the rest of the shape as asked.
        assert_eq!(fitted(&d, 3).lanes, 16);
        assert_eq!(fitted(&d, 17).lanes, 16);
        let (a, b) = (shape(&d, 160), fitted(&d, 160));
        assert_eq!(
            (a.threads, a.quads, a.interleave),
            (b.threads, b.quads, b.interleave)
        );
        for chunks in 1..2000 {
            let s = fitted(&d, chunks);
            let slots = chunks.div_ceil(s.lanes) * s.lanes;
            assert!(s.lanes == 16 || slots * 7 <= chunks * 8, "{chunks}: {s:?}");
        }
    }
}
