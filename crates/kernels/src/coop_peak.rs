//! The ceiling of cooperative matrices on an adapter: a plain f16 × f16 → f32
//! GEMM (`shaders/coop_peak.wgsl`, `y[m][n] = Σ_k x[m][k] · w[n][k]`, every size
//! a multiple of the tile) in several tilings. No model path runs it: it is
//! what the library's tensor-core GEMM (`matmul_coop.wgsl`, which also decodes
//! stored formats and scales) is measured against (`tests/coop_peak.rs`).

use crate::dispatch::Dispatch;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, KernelError};

crate::shader!(COOP_PEAK, "coop_peak.wgsl");

crate::uniform_struct! {
    /// Mirrors `struct PeakParams` in `shaders/coop_peak.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct PeakParams as "PeakParams" {
        m: u32,
        n: u32,
        k: u32,
        _pad: u32,
    }
}

static PEAK_DIRECT: KernelSpec = KernelSpec {
    label: "coop_peak",
    parts: &[Part::File(&COOP_PEAK)],
    entry: "peak_direct",
    uniforms: &[&PeakParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

static PEAK_STAGED: KernelSpec = KernelSpec {
    label: "coop_peak",
    parts: &[Part::File(&COOP_PEAK)],
    entry: "peak_staged",
    uniforms: &[&PeakParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

static PEAK_V4: KernelSpec = KernelSpec {
    label: "coop_peak",
    parts: &[Part::File(&COOP_PEAK)],
    entry: "peak_v4",
    uniforms: &[&PeakParams::LAYOUT],
    needs: Needs::CooperativeMatrix,
};

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[&PEAK_DIRECT, &PEAK_STAGED, &PEAK_V4];

/// How the fragments are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Straight from the storage buffers (the caches share them between subgroups).
    Direct,
    /// Through workgroup memory, `nbuf` buffers of `ck` columns per step.
    Staged,
    /// As `Staged`, moving 16-byte pieces (vec4 loads, `vec4<f16>` stores and
    /// fragment loads from vec4 arrays); `ck` is 32.
    Vec4,
    /// Timing probe, wrong results: `Vec4` without global loads (every step
    /// multiplies from the first staged step).
    ProbeShared,
    /// Timing probe, wrong results: fragments loaded once, only multiply-adds.
    ProbeMma,
}

impl Feed {
    /// Whether the output is the product (the probes only time).
    pub fn computes(self) -> bool {
        !matches!(self, Feed::ProbeShared | Feed::ProbeMma)
    }

    fn vec4(self) -> bool {
        matches!(self, Feed::Vec4 | Feed::ProbeShared | Feed::ProbeMma)
    }
}

/// One tiling: `sg_m × sg_n` subgroups of 4 × 4 fragments (a `64 sg_m × 64 sg_n`
/// tile), `ck` columns per staged step, rows padded to `lds` halves, `nbuf`
/// staging buffers (1 or 2).
#[derive(Debug, Clone, Copy)]
pub struct Tiling {
    pub feed: Feed,
    pub sg_m: u32,
    pub sg_n: u32,
    pub ck: u32,
    pub lds: u32,
    pub nbuf: u32,
}

/// Most staged words per thread and step (`MAXW` in the shader).
const MAX_WORDS: u32 = 32;

impl Tiling {
    /// Tile size (rows of x, rows of w).
    pub fn tile(&self) -> (u32, u32) {
        (64 * self.sg_m, 64 * self.sg_n)
    }

    /// Workgroup memory it needs.
    pub fn shared_bytes(&self) -> u32 {
        match self.feed {
            Feed::Direct => 0,
            _ => {
                let (tm, tn) = self.tile();
                2 * self.nbuf * (tm + tn) * self.lds
            }
        }
    }

    /// Why this tiling cannot run on `ctx` (or `None`).
    pub fn unfit(&self, ctx: &GpuContext) -> Option<String> {
        let (lo, hi) = ctx.caps.subgroup_sizes;
        let c = &ctx.caps;
        if !(c.cooperative_matrix && c.f16 && c.subgroups && lo == hi) {
            return Some(format!(
                "adapter `{name}` lacks cooperative matrices, f16 or one fixed subgroup size",
                name = ctx.info.name
            ));
        }
        let wg = self.sg_m * self.sg_n * hi;
        let (tm, tn) = self.tile();
        let words = |rows: u32| rows * self.ck / 2;
        let l = &ctx.limits;
        if self.shared_bytes() > l.max_compute_workgroup_storage_size
            || wg > l.max_compute_invocations_per_workgroup
            || wg > l.max_compute_workgroup_size_x
            || !(1..=2).contains(&self.nbuf)
            || !self.ck.is_multiple_of(16)
            || self.lds < self.ck
            || !self.lds.is_multiple_of(8)
            || !words(tm).is_multiple_of(wg)
            || !words(tn).is_multiple_of(wg)
            || words(tm) / wg > MAX_WORDS
            || words(tn) / wg > MAX_WORDS
            || (self.feed.vec4() && (self.ck != 32 || 4 * tm / wg > 8 || 4 * tn / wg > 8))
        {
            return Some(format!("{self:?} does not fit the adapter's limits"));
        }
        None
    }
}

/// A launch of `tiling` computing `y = x · wᵀ` for f16 `x` `[m, k]` and `w`
/// `[n, k]` into f32 `y` `[m, n]` (`m`, `n` multiples of the tile, `k` of `ck`).
#[allow(clippy::too_many_arguments)]
pub fn peak_gemm(
    ctx: &GpuContext,
    tiling: &Tiling,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    y: &wgpu::Buffer,
    m: u32,
    n: u32,
    k: u32,
) -> Result<Dispatch, KernelError> {
    const K: &str = "coop_peak";
    if let Some(why) = tiling.unfit(ctx) {
        return Err(KernelError::Unsupported {
            what: K.into(),
            detail: why,
        });
    }
    let (tm, tn) = tiling.tile();
    if !(m.is_multiple_of(tm) && n.is_multiple_of(tn) && k.is_multiple_of(tiling.ck)) {
        return Err(KernelError::Arguments {
            kernel: K,
            detail: format!(
                "m {m}, n {n}, k {k} are not multiples of the tile {tm} × {tn} × {ck}",
                ck = tiling.ck
            ),
        });
    }
    let spec = match tiling.feed {
        Feed::Direct => &PEAK_DIRECT,
        Feed::Staged => &PEAK_STAGED,
        _ => &PEAK_V4,
    };
    let mut launch = ctx
        .launch(spec)
        .constant("WG", tiling.sg_m * tiling.sg_n * ctx.caps.subgroup_sizes.1)
        .constant("SG_M", tiling.sg_m)
        .constant("SG_N", tiling.sg_n)
        .bind("xh", x)
        .bind("wh", w)
        .bind("ys", y);
    if tiling.feed == Feed::Staged {
        launch = launch
            .constant("CK", tiling.ck)
            .constant("LDS", tiling.lds)
            .constant("NBUF", tiling.nbuf)
            .bind("xu", x)
            .bind("wu", w);
    } else if tiling.feed.vec4() {
        let probe = match tiling.feed {
            Feed::ProbeShared => 1,
            Feed::ProbeMma => 2,
            _ => 0,
        };
        launch = launch
            .constant("LDS4", tiling.lds / 4)
            .constant("NBUF", tiling.nbuf)
            .constant("PROBE", probe)
            .bind("xq", x)
            .bind("wq", w);
    }
    launch
        .params(&PeakParams { m, n, k, _pad: 0 })
        .grid([n / tn, m / tm, 1])
        .record()
}
