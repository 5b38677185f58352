//! Adapter-specific tuning: values measured on one adapter apply to that
//! adapter only, found in a table keyed on its PCI vendor id and name; every
//! other adapter gets the conservative default (the choice that assumes
//! nothing about it). Only speed depends on these values, never results'
//! correctness.

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
    },
    // H200: the same GH100 die with the same 132 SMs and register file; not
    // measured separately.
    Known {
        vendor: NVIDIA,
        name: "H200",
        sms: 132,
        small_t: HOPPER_SMALL_T,
    },
];

/// The small-T shape measured best overall on the H100 by
/// `gemv_bench::gemv_small_t_shapes` (BF16 and FP8 block, T = 4, 8, 16, four
/// 9B shapes; `benches/EXPERIMENTS.md`): 256 threads, 4 quads, no prefetch.
const HOPPER_SMALL_T: SmallT = SmallT {
    threads: 256,
    quads: 4,
    max_tokens: 16,
    prefetch: false,
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
    };
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
    /// variant of `mm_coop`, as before it existed. The one switch to turn it
    /// off.
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
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gemv_wave: None,
            small_t: Some(SmallT::DEFAULT),
            coop_fast_gemm: true,
            coop_fast_exact: true,
            coop_fast_scratch: crate::matmul::coop_fast::SCRATCH_CAP,
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
        }
    }

    /// The tuning of the adapter `info` describes, with the switches of
    /// `QWGPU_COOP_FAST` applied ([`Tuning::with_coop_fast_env`]).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        Self::lookup(info.vendor, &info.name)
            .with_coop_fast_env(std::env::var("QWGPU_COOP_FAST").ok().as_deref())
    }

    /// The fast tensor-core GEMM's switches from `QWGPU_COOP_FAST`'s value:
    /// `0` (or `off`, `false`) turns both variants off (`mm_coop` as before
    /// it existed), `fast` keeps only the fast variant, anything else (or
    /// unset) leaves them as they are. For A/B measurements and a fallback
    /// without a rebuild.
    pub fn with_coop_fast_env(mut self, value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("0" | "off" | "false") => {
                self.coop_fast_gemm = false;
                self.coop_fast_exact = false;
            }
            Some("fast") => self.coop_fast_exact = false,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The fast tensor-core GEMM is on unless QWGPU_COOP_FAST says otherwise.
        let t = Tuning::default();
        assert!(t.coop_fast_gemm && t.coop_fast_exact);
        assert_eq!(t.with_coop_fast_env(None), t);
        assert_eq!(t.with_coop_fast_env(Some("1")), t);
        let off = t.with_coop_fast_env(Some(" 0 "));
        assert!(!off.coop_fast_gemm && !off.coop_fast_exact);
        let fast = t.with_coop_fast_env(Some("fast"));
        assert!(fast.coop_fast_gemm && !fast.coop_fast_exact);
        assert_eq!(Tuning::default().small_t, Some(SmallT::DEFAULT));
    }
}
