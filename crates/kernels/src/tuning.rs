//! Adapter-specific tuning: values measured on one adapter apply to that
//! adapter only, found in a table keyed on its PCI vendor id and name; every
//! other adapter gets the conservative default (the choice that assumes
//! nothing about it). Only speed depends on these values, never results'
//! correctness.

use crate::matmul::SkinnyShape;

/// Fewest tokens of the skinny kernel on adapters without a measured value
/// ([`Tuning::skinny_min_t`]): up to 16 the small-T GEMV stays (on the
/// H100 a 16-session 9B decode step in the kernel's own shape ran faster
/// there; `benches/EXPERIMENTS.md`).
const SKINNY_MIN_T: u32 = 17;

/// NVIDIA's PCI vendor id.
const NVIDIA: u32 = 0x10de;

/// 256-thread GEMV workgroups (`mm_vec`) one streaming multiprocessor holds
/// at once on the adapters below (its registers bound it).
const GEMV_GROUPS_PER_SM: u32 = 4;

/// One row of the table: an adapter by vendor and a substring of its name.
struct Known {
    vendor: u32,
    name: &'static str,
    /// Streaming multiprocessors.
    sms: u32,
    /// The small-T GEMV's shape (`gemv_bench::gemv_small_t_shapes` prints
    /// the best one per format and token count).
    small_t: SmallT,
    /// The one-token 4-bit GEMV's shape (`gemv_bench::gemv_int4_shapes`
    /// prints the best one; the default until measured).
    int4_gemv: Int4Gemv,
    /// Fewest tokens the skinny tensor-core matmul takes under Auto
    /// ([`Tuning::skinny_min_t`]).
    skinny_min_t: u32,
    /// The skinny kernel's shapes per token range ([`Tuning::skinny_tiers`]).
    skinny_tiers: &'static [SkinnyTier],
}

/// Adapters with measured (or, where said, derived) values.
const KNOWN: &[Known] = &[
    // H100 SXM5 (Vulkan name `NVIDIA H100 80GB HBM3`): the GEMV widths were
    // measured here (see `vec_workgroup` in matmul.rs).
    Known {
        vendor: NVIDIA,
        name: "H100 80GB HBM3",
        sms: 132,
        small_t: HOPPER_SMALL_T,
        int4_gemv: HOPPER_INT4,
        skinny_min_t: HOPPER_SKINNY_MIN_T,
        skinny_tiers: HOPPER_SKINNY,
    },
    // H200: the same GH100 die with the same 132 SMs and register file; not
    // measured separately.
    Known {
        vendor: NVIDIA,
        name: "H200",
        sms: 132,
        small_t: HOPPER_SMALL_T,
        int4_gemv: HOPPER_INT4,
        skinny_min_t: HOPPER_SKINNY_MIN_T,
        skinny_tiers: HOPPER_SKINNY,
    },
];

/// The 4-bit GEMV shape measured best on the H100 by
/// `gemv_bench::gemv_int4_shapes` over the 0.8B's shapes (and the 9B's
/// `in_proj_qkvz`, where the sweep ran out of time; `benches/EXPERIMENTS.md`):
/// 128 threads, one team of 128 lanes, 1 quad, interleaved words.
const HOPPER_INT4: Int4Gemv = Int4Gemv {
    threads: 128,
    lanes: 128,
    quads: 1,
    interleave: true,
};

/// Fewest tokens of the skinny kernel on the H100: its kernel bench at T =
/// 16 (`matmul_coop_skinny::skinny_bandwidth`, `gdn.in_proj_qkvz` BF16) ran
/// near the one-token GEMV's bandwidth with 8 subgroups and 64-column steps,
/// where the small-T GEMV is bound by its f32 multiply-adds
/// (`benches/EXPERIMENTS.md`), which makes 9..16 tokens in that shape
/// ([`HOPPER_SKINNY`]) the candidate. It stays at the measured 17 until the
/// sweep of every T and the batched decode bench have run with the shape
/// (`QWGPU_SKINNY_MIN_T=9` tries it without a rebuild).
const HOPPER_SKINNY_MIN_T: u32 = SKINNY_MIN_T;

/// The H100's skinny shapes: 8 subgroups and 64-column steps up to 16
/// tokens (the shape measured above), with and without the fused norm (the
/// kernel's own choice shrank the norm's workgroups to 2 subgroups);
/// the kernel's choices above 16.
const HOPPER_SKINNY: &[SkinnyTier] = &[SkinnyTier {
    max_t: 16,
    shape: SkinnyShape {
        subgroups: Some(8),
        columns: Some(64),
        splits: None,
    },
    normed: SkinnyShape {
        subgroups: Some(8),
        columns: Some(64),
        splits: None,
    },
}];

/// The small-T shape measured best overall on the H100 by
/// `gemv_bench::gemv_small_t_shapes` (BF16 and FP8 block, T = 4, 8, 16, four
/// 9B shapes; `benches/EXPERIMENTS.md`): 256 threads, 4 quads, no prefetch.
const HOPPER_SMALL_T: SmallT = SmallT {
    threads: 256,
    quads: 4,
    max_tokens: 16,
    prefetch: false,
    chunk_scale: false,
};

/// The workgroup shape of the small-T GEMV (dense matmuls of 2..=16 tokens,
/// `matmul_vec_t.rs`). Values out of range are brought into range by the
/// kernel; only speed depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallT {
    /// Most threads per workgroup: 64, 128 or 256 (fewer where rows are short).
    pub threads: u32,
    /// Quads of 4 weight rows per workgroup: 1, 2, 4 or 8. More quads share
    /// each x load among more rows but make fewer workgroups.
    pub quads: u32,
    /// Most tokens per workgroup, 1..=16: more tokens run in equal blocks,
    /// each reading the weight once.
    pub max_tokens: u32,
    /// Whether each thread loads its next chunk of weights before computing the current one.
    pub prefetch: bool,
    /// Weights with a scale per chunk (FP8 blocks, 4-bit groups): scale each
    /// token's partial sums of a chunk (4 multiply-adds per token and chunk)
    /// instead of every decoded weight (one multiply each), at the cost of
    /// one more vec4 register per token. No effect on other weights.
    pub chunk_scale: bool,
}

impl SmallT {
    /// The shape every adapter gets unless measured otherwise: two quads
    /// (x loads shared by pairs of threads, still a workgroup per 8 rows),
    /// all 16 tokens in one block, prefetch on, and 128 threads: with one
    /// accumulator per token a thread holds many registers, and smaller
    /// workgroups let an SM keep more of them resident where 256-thread ones
    /// would fit only once.
    pub const DEFAULT: Self = Self {
        threads: 128,
        quads: 2,
        max_tokens: 16,
        prefetch: true,
        chunk_scale: false,
    };
}

/// The workgroup shape of the one-token GEMV of 4-bit weights
/// (`shaders/matmul_q4.wgsl`: dense `mm_q4` and the MoE decode's
/// expert-indexed `mm_q4_ids`). A workgroup holds `threads / lanes` teams; a
/// team's `lanes` threads stride over the 32-column chunks of a row, and each
/// thread works on `quads` quads of 4 rows at once (4 · `quads` weight loads in
/// flight per chunk step, the chunk's x values loaded once for all of them).
/// Values out of range are brought into range by the kernel; only speed
/// depends on them (`gemv_bench::gemv_int4_shapes` sweeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int4Gemv {
    /// Threads per workgroup: 64, 128 or 256.
    pub threads: u32,
    /// Most threads along one row: 16..=`threads`, a power of two (fewer
    /// where a row has fewer chunks: rows of 1024 columns are 32 chunks).
    pub lanes: u32,
    /// Quads of 4 rows per thread: 1, 2 or 4.
    pub quads: u32,
    /// A thread's 4 words of a row per step `lanes` words apart (consecutive
    /// threads on consecutive words: 4 loads of 4 bytes) instead of one
    /// 16-byte chunk: the threads' x values are then 32-byte runs, not
    /// 128-byte ones, and a warp's x loads touch a quarter of the cache lines.
    pub interleave: bool,
}

impl Int4Gemv {
    /// The shape every adapter gets unless measured otherwise: 256 threads,
    /// a team per 128 chunks (a 4096-column row in one step of every
    /// thread), 2 quads per thread (8 weight loads in flight, 16 rows per
    /// workgroup on such rows) without the register count of 4 quads.
    pub const DEFAULT: Self = Self {
        threads: 256,
        lanes: 128,
        quads: 2,
        interleave: false,
    };
}

/// The skinny tensor-core matmul's workgroup shape for the token counts up
/// to `max_t` (the first tier of [`Tuning::skinny_tiers`] whose `max_t`
/// covers a launch's `T`; `T` past every tier takes the kernel's own
/// choices). `None` fields take the kernel's choice; only speed depends on
/// these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkinnyTier {
    /// Most tokens of this tier (inclusive; the previous tier's `max_t`
    /// bounds it from below).
    pub max_t: u32,
    /// The shape of launches without the fused norm.
    pub shape: SkinnyShape,
    /// The shape of launches with the fused RMSNorm (`matmul_normed`: no
    /// column splits, so its grid is smaller at the same subgroup count).
    pub normed: SkinnyShape,
}

/// What the kernels tune per adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// 256-thread GEMV workgroups the adapter runs in one wave. A GEMV launch
    /// of more than one such wave but at most two takes 128-thread workgroups
    /// instead (one wave of them). `None` (unknown adapters): always 256.
    pub gemv_wave: Option<u32>,
    /// The small-T GEMV's shape; `None` runs dense matmuls of 2..=16 tokens
    /// on the one-token GEMV kernel in blocks of up to 8 tokens instead (the
    /// earlier path, kept for comparison in benchmarks).
    pub small_t: Option<SmallT>,
    /// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) runs
    /// fast-precision GEMMs of more than 16 tokens on the fast tensor-core
    /// kernel ([`crate::matmul::coop_fast`]) where it applies; off: the fast
    /// variant of `mm_coop`, as before it existed. On everywhere
    /// (`QWGPU_COOP_FAST=0` turns both variants off). The one switch to turn
    /// it off.
    pub coop_fast_gemm: bool,
    /// Whether Auto runs exact-precision GEMMs of more than 16 tokens on the
    /// same kernel's exact variant (x as hi + lo f16 parts, two products;
    /// `MatmulPath::CoopFastExact`) where it applies; off: `mm_coop`'s exact
    /// variant. The one switch to turn it off.
    pub coop_fast_exact: bool,
    /// Most bytes of f16 activation rows the fast tensor-core GEMM's scratch
    /// holds ([`crate::matmul::coop_fast`]); GEMMs of more tokens run in
    /// blocks of whole 128-token tiles, each a pre-pass and its launches.
    pub coop_fast_scratch: u64,
    /// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) runs
    /// dense GEMMs of at least [`Tuning::coop_f16_min_t`] tokens on the
    /// f16-scratch tensor-core GEMM ([`crate::matmul::coop_f16`]) where it
    /// applies (both precisions); off: the selection as before it. On by
    /// default ([`ON_BY_DEFAULT`](crate::matmul::coop_f16::ON_BY_DEFAULT));
    /// `QWGPU_COOP_F16=0` turns it off. The one switch.
    pub coop_f16: bool,
    /// Fewest tokens for which Auto takes that kernel (converting the weight
    /// costs ~4 bytes of traffic per weight per GEMM, paid back over the
    /// tokens).
    pub coop_f16_min_t: u32,
    /// Most bytes of f16 weight rows its scratch holds; larger weights run
    /// in blocks of 128-row tiles, each converted then multiplied.
    pub coop_f16_scratch: u64,
    /// Whether dense matmuls of [`Tuning::skinny_min_t`]..=64 tokens run the skinny tensor-core
    /// kernel where the adapter has cooperative matrices
    /// (`matmul_coop_skinny.rs`); off: the small-T GEMV (T <= 16) and the
    /// GEMMs, as before it. On everywhere unless `QWGPU_SKINNY=0`
    /// ([`Tuning::for_adapter`]); results differ only by f32 rounding order
    /// (and, with fast precision, by the rounding of x to f16).
    pub skinny: bool,
    /// Whether the skinny kernel may split the columns of a launch whose
    /// grid is small (split-K: partial sums, then a reduction launch). On
    /// unless `QWGPU_SKINNY=nosplit`.
    pub skinny_split: bool,
    /// Fewest tokens [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto)
    /// gives the skinny kernel (it takes `skinny_min_t..=64`; fewer stay on
    /// the small-T GEMV). 17 unless the adapter's row says otherwise; `QWGPU_SKINNY_MIN_T` replaces it (2..=65; 65: never).
    pub skinny_min_t: u32,
    /// The skinny kernel's shapes per token range (first tier covering `T`);
    /// empty: the kernel's own choices at every `T`.
    pub skinny_tiers: &'static [SkinnyTier],
    /// Whether `matmul_normed` on the skinny kernel fuses the RMSNorm into
    /// it (x staged times the norm's weight, 1 / rms in the epilogue; no
    /// column splits); off: an `rms_norm` launch into a scratch first, then
    /// the plain kernel (splits allowed). On unless
    /// `QWGPU_SKINNY_NORM=prenorm`.
    pub skinny_fused_norm: bool,
    /// The one-token 4-bit GEMV's shape; `None` runs 4-bit weights on the
    /// one-token kernel of the other formats (`mm_vec`: 4 rows per
    /// workgroup; kept for comparison in benchmarks).
    pub int4_gemv: Option<Int4Gemv>,
    /// Whether [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) runs
    /// 4-bit MoE experts (f16 scales) on the tensor-core grouped GEMM under
    /// fast precision or `f16_matmul` (`moe_grouped_coop_q4.rs`); off: the
    /// scalar grouped GEMM. On by default (`COOP_Q4_BY_DEFAULT`);
    /// `QWGPU_COOP_Q4` `0` turns it off, `dense` leaves only the dense one
    /// on ([`Tuning::for_adapter`]). The one switch.
    pub coop_grouped_q4: bool,
    /// Whether Auto runs dense 4-bit GEMMs (f16 scales) of more than 16
    /// tokens under fast precision on `mm_coop`'s fast variant (W staged as
    /// `f16((q - zero)·scale)`, as the scalar tile GEMM's fast emulation
    /// rounds it); off: the scalar tile GEMM (`f16_matmul` contexts take
    /// `mm_coop` either way). On by default; `QWGPU_COOP_Q4` `0` turns it
    /// off, `grouped` leaves only the grouped one on. The one switch.
    pub coop_dense_q4: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gemv_wave: None,
            small_t: Some(SmallT::DEFAULT),
            coop_fast_gemm: true,
            coop_fast_exact: true,
            coop_fast_scratch: crate::matmul::coop_fast::SCRATCH_CAP,
            coop_f16: crate::matmul::coop_f16::ON_BY_DEFAULT,
            coop_f16_min_t: crate::matmul::coop_f16::MIN_T,
            coop_f16_scratch: crate::matmul::coop_f16::W_SCRATCH_CAP,
            skinny: true,
            skinny_split: true,
            skinny_min_t: SKINNY_MIN_T,
            skinny_tiers: &[],
            skinny_fused_norm: true,
            int4_gemv: Some(Int4Gemv::DEFAULT),
            coop_grouped_q4: COOP_Q4_BY_DEFAULT,
            coop_dense_q4: COOP_Q4_BY_DEFAULT,
        }
    }
}

impl Tuning {
    /// The tuning of the adapter with PCI vendor id `vendor` named `name`.
    pub fn lookup(vendor: u32, name: &str) -> Self {
        let known = KNOWN
            .iter()
            .find(|k| k.vendor == vendor && name.contains(k.name));
        Self {
            gemv_wave: known.map(|k| k.sms * GEMV_GROUPS_PER_SM),
            small_t: Some(known.map_or(SmallT::DEFAULT, |k| k.small_t)),
            coop_fast_gemm: true,
            coop_fast_exact: true,
            coop_fast_scratch: crate::matmul::coop_fast::SCRATCH_CAP,
            coop_f16: crate::matmul::coop_f16::ON_BY_DEFAULT,
            coop_f16_min_t: crate::matmul::coop_f16::MIN_T,
            coop_f16_scratch: crate::matmul::coop_f16::W_SCRATCH_CAP,
            skinny: true,
            skinny_split: true,
            skinny_min_t: known.map_or(SKINNY_MIN_T, |k| k.skinny_min_t),
            skinny_tiers: known.map_or(&[], |k| k.skinny_tiers),
            skinny_fused_norm: true,
            int4_gemv: Some(known.map_or(Int4Gemv::DEFAULT, |k| k.int4_gemv)),
            coop_grouped_q4: COOP_Q4_BY_DEFAULT,
            coop_dense_q4: COOP_Q4_BY_DEFAULT,
        }
    }

    /// The tuning of the adapter `info` describes; the environment variable
    /// `QWGPU_SKINNY` turns [`Tuning::skinny`] off (`0`) or only its column
    /// splits (`nosplit`), and `QWGPU_COOP_FAST` the fast tensor-core GEMM
    /// ([`Tuning::with_coop_fast_env`]), `QWGPU_COOP_F16` the f16-scratch
    /// one ([`Tuning::with_coop_f16_env`]), and `QWGPU_COOP_Q4` 4-bit weights on
    /// the tensor cores ([`Tuning::coop_grouped_q4`],
    /// [`Tuning::coop_dense_q4`]: `0`, `off` or `false` turns both off,
    /// `grouped` keeps only the MoE one, `dense` only the dense one), for A/B
    /// measurements.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        let mut t = Self::lookup(info.vendor, &info.name)
            .with_coop_fast_env(std::env::var("QWGPU_COOP_FAST").ok().as_deref())
            .with_coop_f16_env(std::env::var("QWGPU_COOP_F16").ok().as_deref());
        (t.skinny, t.skinny_split) = skinny_switch(std::env::var("QWGPU_SKINNY").ok().as_deref());
        (t.coop_grouped_q4, t.coop_dense_q4) = q4_switch(
            std::env::var("QWGPU_COOP_Q4").ok().as_deref(),
            (t.coop_grouped_q4, t.coop_dense_q4),
        );
        t.with_skinny_min_t_env(std::env::var("QWGPU_SKINNY_MIN_T").ok().as_deref())
            .with_skinny_norm_env(std::env::var("QWGPU_SKINNY_NORM").ok().as_deref())
    }

    /// [`Tuning::skinny_fused_norm`] from `QWGPU_SKINNY_NORM`'s value:
    /// `prenorm` turns it off, `fused` on; anything else (or unset) leaves
    /// it as it is.
    pub fn with_skinny_norm_env(mut self, value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("prenorm") => self.skinny_fused_norm = false,
            Some("fused") => self.skinny_fused_norm = true,
            _ => {}
        }
        self
    }

    /// [`Tuning::skinny_min_t`] from `QWGPU_SKINNY_MIN_T`'s value (a number,
    /// clamped to 2..=65; 65 keeps the kernel out of Auto): A/B measurements
    /// of the small-T GEMV against the skinny kernel without a rebuild.
    /// Anything else (or unset) leaves it as it is.
    pub fn with_skinny_min_t_env(mut self, value: Option<&str>) -> Self {
        if let Some(v) = value.and_then(|v| v.trim().parse::<u32>().ok()) {
            self.skinny_min_t = v.clamp(2, crate::matmul::SKINNY_MAX_T + 1);
        }
        self
    }

    /// The skinny kernel's shape from the tiers for a launch of `t` tokens
    /// (with the fused norm when `normed`): the first tier whose `max_t`
    /// covers `t`, else the kernel's own choices (all `None`).
    pub fn skinny_shape(&self, t: u32, normed: bool) -> SkinnyShape {
        self.skinny_tiers
            .iter()
            .find(|tier| t <= tier.max_t)
            .map_or(SkinnyShape::default(), |tier| {
                if normed {
                    tier.normed
                } else {
                    tier.shape
                }
            })
    }

    /// [`Tuning::coop_f16`] from `QWGPU_COOP_F16`'s value: `0` (or `off`,
    /// `false`) off, `1` (or `on`, `true`) on; anything else (or unset)
    /// leaves it as it is. For A/B measurements without a rebuild.
    pub fn with_coop_f16_env(mut self, value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("0" | "off" | "false") => self.coop_f16 = false,
            Some("1" | "on" | "true") => self.coop_f16 = true,
            _ => {}
        }
        self
    }

    /// The fast tensor-core GEMM's switches from `QWGPU_COOP_FAST`'s value:
    /// `1` (or `on`, `true`) turns both variants on, `fast` only the fast
    /// one, `0` (or `off`, `false`) both off (`mm_coop` as before it
    /// existed); anything else (or unset) leaves them as they are. For A/B
    /// measurements without a rebuild.
    pub fn with_coop_fast_env(mut self, value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("0" | "off" | "false") => {
                self.coop_fast_gemm = false;
                self.coop_fast_exact = false;
            }
            Some("1" | "on" | "true") => {
                self.coop_fast_gemm = true;
                self.coop_fast_exact = true;
            }
            Some("fast") => {
                self.coop_fast_gemm = true;
                self.coop_fast_exact = false;
            }
            _ => {}
        }
        self
    }
}

/// ([`Tuning::coop_grouped_q4`], [`Tuning::coop_dense_q4`]) from the value
/// of `QWGPU_COOP_Q4`: both off for `0`, `off`, `false`; both on for `1`,
/// `on`, `true`; only the grouped one for `grouped`, only the dense one for
/// `dense` (any case, spaces trimmed); `current` otherwise or unset.
fn q4_switch(value: Option<&str>, current: (bool, bool)) -> (bool, bool) {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("0" | "off" | "false") => (false, false),
        Some("1" | "on" | "true") => (true, true),
        Some("grouped") => (true, false),
        Some("dense") => (false, true),
        _ => current,
    }
}

/// Default of [`Tuning::coop_grouped_q4`] and [`Tuning::coop_dense_q4`]:
/// on, since the whole kernel suite and the model test binaries passed on an
/// H100 with them on (`benches/EXPERIMENTS.md`); they round as the fast
/// precision does and only run under it. `QWGPU_COOP_Q4=0` turns them off.
const COOP_Q4_BY_DEFAULT: bool = true;

/// ([`Tuning::skinny`], [`Tuning::skinny_split`]) from the value of
/// `QWGPU_SKINNY`: both off for `0`, `off`, `false`; splits off for `nosplit`.
fn skinny_switch(value: Option<&str>) -> (bool, bool) {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("0" | "off" | "false") => (false, false),
        Some("nosplit") => (true, false),
        _ => (true, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skinny_switch_reads_the_environment_value() {
        assert_eq!(skinny_switch(None), (true, true));
        assert_eq!(skinny_switch(Some("1")), (true, true));
        assert_eq!(skinny_switch(Some("")), (true, true));
        for off in ["0", "off", " OFF ", "false"] {
            assert_eq!(skinny_switch(Some(off)), (false, false), "{off}");
        }
        assert_eq!(skinny_switch(Some(" NoSplit")), (true, false));
        let d = Tuning::default();
        assert!(d.skinny && d.skinny_split);
        let h = Tuning::lookup(0x10de, "NVIDIA H100 80GB HBM3");
        assert!(h.skinny && h.skinny_split);
    }

    #[test]
    fn skinny_range_and_tiers_per_adapter() {
        let d = Tuning::default();
        assert_eq!(d.skinny_min_t, SKINNY_MIN_T);
        assert!(d.skinny_tiers.is_empty());
        assert_eq!(d.skinny_shape(9, false), SkinnyShape::default());
        let h = Tuning::lookup(NVIDIA, "NVIDIA H100 80GB HBM3");
        assert_eq!(h.skinny_min_t, HOPPER_SKINNY_MIN_T);
        assert_eq!(h.skinny_tiers, HOPPER_SKINNY);
        assert_eq!(
            Tuning::lookup(NVIDIA, "NVIDIA H200").skinny_tiers,
            HOPPER_SKINNY
        );
        // Tiers: the first whose max_t covers T, the normed shape with the
        // norm, the kernel's choices past every tier.
        let a = SkinnyShape {
            subgroups: Some(8),
            columns: Some(64),
            splits: None,
        };
        let b = SkinnyShape {
            subgroups: Some(2),
            columns: None,
            splits: Some(3),
        };
        let c = SkinnyShape {
            subgroups: Some(4),
            ..SkinnyShape::default()
        };
        static TIERS: [SkinnyTier; 2] = [
            SkinnyTier {
                max_t: 8,
                shape: SkinnyShape {
                    subgroups: Some(8),
                    columns: Some(64),
                    splits: None,
                },
                normed: SkinnyShape {
                    subgroups: Some(2),
                    columns: None,
                    splits: Some(3),
                },
            },
            SkinnyTier {
                max_t: 32,
                shape: SkinnyShape {
                    subgroups: Some(4),
                    columns: None,
                    splits: None,
                },
                normed: SkinnyShape {
                    subgroups: Some(4),
                    columns: None,
                    splits: None,
                },
            },
        ];
        let t = Tuning {
            skinny_tiers: &TIERS,
            ..d
        };
        assert_eq!(t.skinny_shape(2, false), a);
        assert_eq!(t.skinny_shape(8, false), a);
        assert_eq!(t.skinny_shape(8, true), b);
        assert_eq!(t.skinny_shape(9, false), c);
        assert_eq!(t.skinny_shape(32, true), c);
        assert_eq!(t.skinny_shape(33, false), SkinnyShape::default());
        // QWGPU_SKINNY_MIN_T: a number within 2..=65, else unchanged.
        assert_eq!(d.with_skinny_min_t_env(None).skinny_min_t, SKINNY_MIN_T);
        assert_eq!(
            d.with_skinny_min_t_env(Some("x")).skinny_min_t,
            SKINNY_MIN_T
        );
        assert_eq!(d.with_skinny_min_t_env(Some(" 9 ")).skinny_min_t, 9);
        assert_eq!(d.with_skinny_min_t_env(Some("0")).skinny_min_t, 2);
        assert_eq!(d.with_skinny_min_t_env(Some("1000")).skinny_min_t, 65);
        // QWGPU_SKINNY_NORM: prenorm / fused, else unchanged.
        assert!(d.skinny_fused_norm && h.skinny_fused_norm);
        let pre = d.with_skinny_norm_env(Some(" PreNorm"));
        assert!(!pre.skinny_fused_norm);
        assert!(!pre.with_skinny_norm_env(None).skinny_fused_norm);
        assert!(!pre.with_skinny_norm_env(Some("1")).skinny_fused_norm);
        assert!(pre.with_skinny_norm_env(Some("fused")).skinny_fused_norm);
    }

    #[test]
    fn coop_q4_follows_its_default_and_the_switch() {
        for t in [
            Tuning::default(),
            Tuning::lookup(0x10de, "NVIDIA H100 80GB HBM3"),
        ] {
            assert_eq!(
                (t.coop_grouped_q4, t.coop_dense_q4),
                (COOP_Q4_BY_DEFAULT, COOP_Q4_BY_DEFAULT)
            );
        }
        for current in [(false, false), (true, true), (true, false)] {
            for off in ["0", " OFF ", "false"] {
                assert_eq!(q4_switch(Some(off), current), (false, false), "{off}");
            }
            for on in ["1", "on", " TRUE"] {
                assert_eq!(q4_switch(Some(on), current), (true, true), "{on}");
            }
            for keep in [None, Some(""), Some("x")] {
                assert_eq!(q4_switch(keep, current), current, "{keep:?}");
            }
            assert_eq!(q4_switch(Some(" Grouped"), current), (true, false));
            assert_eq!(q4_switch(Some("dense "), current), (false, true));
        }
    }

    #[test]
    fn known_adapters_get_their_wave_and_others_the_default() {
        // 132 SMs × 4 workgroups, as measured on the H100 SXM5.
        assert_eq!(
            Tuning::lookup(0x10de, "NVIDIA H100 80GB HBM3").gemv_wave,
            Some(528)
        );
        assert_eq!(Tuning::lookup(0x10de, "NVIDIA H200").gemv_wave, Some(528));
        // Same vendor, other GPUs (other SM counts): nothing assumed.
        assert_eq!(
            Tuning::lookup(0x10de, "NVIDIA H100 PCIe"),
            Tuning::default()
        );
        assert_eq!(
            Tuning::lookup(0x10de, "NVIDIA GeForce RTX 4090"),
            Tuning::default()
        );
        // The name alone does not match another vendor's adapter.
        assert_eq!(
            Tuning::lookup(0x1002, "H100 80GB HBM3 lookalike"),
            Tuning::default()
        );
        // Software rasterisers (lavapipe: Mesa's vendor id 0x10005).
        assert_eq!(
            Tuning::lookup(0x10005, "llvmpipe (LLVM 15.0.6, 256 bits)"),
            Tuning::default()
        );
        assert_eq!(Tuning::default().gemv_wave, None);
        // The fast tensor-core GEMM is on unless QWGPU_COOP_FAST turns it off.
        let t = Tuning::default();
        assert!(t.coop_fast_gemm && t.coop_fast_exact);
        assert_eq!(t.with_coop_fast_env(None), t);
        assert_eq!(t.with_coop_fast_env(Some(" 1 ")), t);
        let off = t.with_coop_fast_env(Some(" 0 "));
        assert!(!off.coop_fast_gemm && !off.coop_fast_exact);
        let on = off.with_coop_fast_env(Some("1"));
        assert!(on.coop_fast_gemm && on.coop_fast_exact);
        // The f16-scratch GEMM follows its default unless QWGPU_COOP_F16 says otherwise.
        assert_eq!(t.coop_f16, crate::matmul::coop_f16::ON_BY_DEFAULT);
        assert_eq!(t.with_coop_f16_env(None), t);
        assert!(!t.with_coop_f16_env(Some(" 0 ")).coop_f16);
        assert!(
            t.with_coop_f16_env(Some("0"))
                .with_coop_f16_env(Some("on"))
                .coop_f16
        );
        let fast = off.with_coop_fast_env(Some("fast"));
        assert!(fast.coop_fast_gemm && !fast.coop_fast_exact);
        assert_eq!(Tuning::default().small_t, Some(SmallT::DEFAULT));
        assert_eq!(Tuning::default().int4_gemv, Some(Int4Gemv::DEFAULT));
    }
}
