//! Gated DeltaNet (linear attention) layer core of Qwen3.5: everything between the
//! input projections (`in_proj_qkvz`, `in_proj_ba`) and `out_proj`, with the exact
//! semantics of `qwgpu_model::reference::gdn` (spec §2.2 steps 2–8):
//!
//! 1. causal depthwise conv1d over the q|k|v channels with the carried conv state,
//!    then SiLU (`conv1d.wgsl`, also used by both modes);
//! 2. per head: L2-normalise q and k (eps 1e-6), q · dk^-½; β = sigmoid(b),
//!    g = −exp(A_log)·softplus(a + dt_bias) per v-head;
//! 3. the gated delta rule per v-head h (k-head h / (nv/nk)), f32 state;
//! 4. gated RMSNorm per v-head (plain `w`, times SiLU(z)).
//!
//! Two modes, mathematically identical:
//! - [`GdnMode::Recurrent`] (decode; any T), in one of two launch forms
//!   ([`RecurrentLaunch`]):
//!   - fused (`gdn_decode.wgsl`, label "gdn decode"; what [`gdn_forward`] picks for
//!     T <= [`FUSED_MAX_T`] where the device allows it): ONE launch per layer, a
//!     workgroup per KEY head that runs the conv (and its conv-state update) of
//!     exactly the channels it reads, q and k of the key head and v of its nv/nk
//!     value heads, then the recurrent step of those value heads (256 invocations
//!     per value head, up to 2 side by side, more in rounds). Owning its channels
//!     is what makes the in-place conv-state update race-free: with a workgroup per
//!     value head, the nv/nk readers of a key head's q/k channels would be unordered
//!     against whichever of them rewrote that conv state. It binds 9 storage
//!     buffers, so it needs `max_storage_buffers_per_shader_stage >= 9` (not
//!     WebGPU's default 8; the split form below stays within it).
//!   - split: the conv launch (`conv1d.wgsl`), then ONE fused kernel per v-head
//!     that keeps the head's state in registers while it loops over the tokens
//!     (norms, gates, update, output and gated norm all inside; every global read of
//!     a token is issued before its first barrier).
//!
//!   Calls longer than 128 tokens get one launch per 128 tokens (see
//!   [`RECURRENT_SPAN`]).
//! - [`GdnMode::Chunked`] (prefill): fla's `chunk_gated_delta_rule` WY/UT form with
//!   chunks of 64 tokens (32 or 16 where workgroup memory is small, e.g. WebGPU's
//!   16 KiB): q/k norm in place, an intra-chunk kernel (γ, L, (I+L)⁻¹ in 16×16
//!   blocks as fla, U and W), a sequential state pass per (v-head, v-block) that
//!   stores the state before each chunk, and a parallel output kernel with the
//!   gated norm fused.
//!
//! Batched decode ([`gdn_decode_rows`]): one token of each of up to
//! [`MAX_BATCH_ROWS`] sessions whose states are slots of pooled buffers
//! ([`GdnSlots`]; a slot table in the launch's uniform), grid y = row: one fused
//! launch for all rows, or the conv and recurrent launches over all rows where
//! the fused kernel is not available. Lone calls bind their slot's range
//! ([`GdnLayerBuffers::slot`]), so one pool serves both.
//!
//! Launches: Recurrent fused: ceil(T/128) (1 for decode). Recurrent split: conv (+ a
//! conv-state launch when T > 16, run after every token block has read the old
//! state) plus ceil(T/128) recurrent launches. Chunked: 5 (6 when T > 16).
//!
//! Recurrent state layout: the reference's `[nv, dk, dv]` row-major (`S[a][j]`: k-row
//! a, v-column j), so [`state_to_reference`] / [`state_from_reference`] are copies.
//! Loads of S are coalesced over j in both modes. Conv state: `[K−1, conv_dim]`,
//! oldest row first (as the reference).
//!
//! Limits (else [`KernelError::Unsupported`]): dk and dv multiples of 4 in 4..=128,
//! nv a multiple of nk, conv kernel 1..=8, workgroups of 256 invocations, and
//! ceil(max_t / chunk) <= 65535.
//!
//! Measured (NVIDIA H100, Vulkan, trusted modules, nk 16, nv 32, dk = dv = 128): decode
//! (T = 1, Recurrent split) 12.6 µs per layer in one pass (conv 5.8 + recurrent 6.8,
//! each with its ~2.3 µs barrier; the fused form is not measured yet); Chunked T = 4096 5.0 ms (conv 0.16, q/k norm 0.14,
//! intra-chunk 1.16, state pass 2.37, output 1.17); Recurrent T = 4096 13 ms.
//! The chunk kernels are plain f32 FMA loops over workgroup memory: register
//! tiling and coop-matrix products are the next steps.

use crate::dispatch::{grid_1d, Dispatch};
use crate::shaders::NUMERIC;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{check_vector, Dtype};
use crate::{GpuContext, KernelError};

crate::shader!(CONV1D, "conv1d.wgsl");
crate::shader!(GDN_RECURRENT, "gdn_recurrent.wgsl");
crate::shader!(GDN_DECODE, "gdn_decode.wgsl");
crate::shader!(GDN_CHUNK_COMMON, "gdn_chunk_common.wgsl");
crate::shader!(GDN_CHUNK_PREP, "gdn_chunk_prep.wgsl");
crate::shader!(GDN_CHUNK_WY, "gdn_chunk_wy.wgsl");
crate::shader!(GDN_CHUNK_STATE, "gdn_chunk_state.wgsl");
crate::shader!(GDN_CHUNK_OUT, "gdn_chunk_out.wgsl");

/// Invocations per workgroup of every GDN kernel.
const WG: u32 = 256;
/// Tokens per conv thread block; T above this rewrites the conv state in a 2nd launch.
const CONV_TB: u32 = 16;
/// Most tokens one recurrent launch loops over; longer calls get one launch per
/// span. lavapipe (Mesa 22.3) corrupts the results of a workgroup after a few hundred
/// iterations of a loop holding barriers and a large register array (332 tokens
/// at dk = dv = 128), so a launch never loops longer than this.
pub const RECURRENT_SPAN: u32 = 128;
/// Most tokens of a Recurrent call that [`gdn_forward`] runs fused (one launch:
/// conv inside). The fused kernel's conv adds a step to every token of its serial
/// loop and it has half the workgroups (one per key head), so the parallel conv
/// launch wins for long calls; decode (T = 1) is what it is for.
pub const FUSED_MAX_T: u32 = 16;
/// Largest conv kernel (register window in `conv1d.wgsl`).
const MAX_TAPS: u32 = 8;
/// Largest dk / dv (register and workgroup arrays of the kernels).
const MAX_HEAD_DIM: u32 = 128;
/// Per-thread state registers of the recurrent kernel (`GDN_MAXR`).
const MAX_ROWS: u32 = 64;
/// f32 staging buffer of the chunk kernels (`GDN_STAGE`).
const STAGE: u32 = 2048;
/// Chunk-indexed workgroup arrays of the chunk kernels (`GDN_MAXC`).
const MAX_CHUNK: u32 = 64;
/// eps of the q / k L2 normalisation (FLA's `l2norm`), as in the reference.
pub const L2_EPS: f32 = 1e-6;

/// Head counts and widths of one GDN layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GdnDims {
    /// Key heads (q and k).
    pub nk: u32,
    /// Value heads (a multiple of `nk`).
    pub nv: u32,
    /// Key head width.
    pub dk: u32,
    /// Value head width.
    pub dv: u32,
    /// Conv1d taps K.
    pub conv_kernel: u32,
    /// eps of the gated RMSNorm (`rms_norm_eps`).
    pub eps: f32,
}

impl GdnDims {
    /// `nk · dk`.
    pub fn key_dim(&self) -> u32 {
        self.nk * self.dk
    }
    /// `nv · dv`.
    pub fn value_dim(&self) -> u32 {
        self.nv * self.dv
    }
    /// q|k|v channels: `2·nk·dk + nv·dv`.
    pub fn conv_dim(&self) -> u32 {
        2 * self.key_dim() + self.value_dim()
    }
    /// Floats of the recurrent state: `nv · dk · dv`.
    pub fn state_len(&self) -> usize {
        (self.nv * self.dk * self.dv) as usize
    }
    /// Floats of the conv state: `(K−1) · conv_dim`.
    pub fn conv_state_len(&self) -> usize {
        ((self.conv_kernel.max(1) - 1) * self.conv_dim()) as usize
    }

    /// Whether these kernels handle the dims ([`KernelError::Unsupported`] if not).
    pub fn check(&self) -> Result<(), KernelError> {
        let bad = |detail: String| {
            Err(KernelError::Unsupported {
                what: "gdn".into(),
                detail,
            })
        };
        for (name, d) in [("dk", self.dk), ("dv", self.dv)] {
            if d == 0 || !d.is_multiple_of(4) || d > MAX_HEAD_DIM {
                return bad(format!(
                    "{name} = {d}: must be a multiple of 4 in 4..={MAX_HEAD_DIM}"
                ));
            }
        }
        if self.nk == 0 || self.nv == 0 || !self.nv.is_multiple_of(self.nk) {
            return bad(format!(
                "nv = {nv} must be a non-zero multiple of nk = {nk}",
                nv = self.nv,
                nk = self.nk
            ));
        }
        if self.conv_kernel == 0 || self.conv_kernel > MAX_TAPS {
            return bad(format!(
                "conv kernel {conv_kernel} outside 1..={MAX_TAPS}",
                conv_kernel = self.conv_kernel
            ));
        }
        let width = self.conv_dim() as u64 + self.value_dim() as u64;
        if width * 4 > u32::MAX as u64 / 2 {
            return bad(format!("row width {width} too large"));
        }
        Ok(())
    }

    /// Slices of k rows and rows per slice of the recurrent kernel's state registers.
    fn recurrent_split(&self) -> (u32, u32) {
        let sl = (WG / self.dv).min(self.dk).max(1);
        (sl, self.dk.div_ceil(sl))
    }
}

/// The buffers of one GDN layer call (all f32).
pub struct GdnLayerBuffers<'a> {
    /// `[T, conv_dim + value_dim]`: q|k|v channels, then z (output of `in_proj_qkvz`).
    pub qkvz: &'a wgpu::Buffer,
    /// `[T, 2·nv]`: b then a.
    pub ba: &'a wgpu::Buffer,
    /// `[conv_dim, K]`.
    pub conv_w: &'a wgpu::Buffer,
    /// `[nv]`.
    pub a_log: &'a wgpu::Buffer,
    /// `[nv]`.
    pub dt_bias: &'a wgpu::Buffer,
    /// `[dv]` (plain weight of the gated RMSNorm).
    pub norm_w: &'a wgpu::Buffer,
    /// `[K−1, conv_dim]`, oldest row first, at slot `slot` ([`GdnSlots::conv`]
    /// bytes per slot); updated in place.
    pub conv_state: &'a wgpu::Buffer,
    /// `[nv, dk, dv]` row-major (the reference layout) at slot `slot`
    /// ([`GdnSlots::state`] bytes per slot); updated in place.
    pub state: &'a wgpu::Buffer,
    /// `[T, nv·dv]`: gated-RMS-normed output, the input of `out_proj`.
    pub out: &'a wgpu::Buffer,
    /// Which slot of `conv_state` / `state` holds this call's states (0 for
    /// buffers holding one state each): sessions' states can live in pooled
    /// buffers, which [`gdn_decode_rows`] steps all at once.
    pub slot: u32,
}

/// Bytes of one slot of a pooled state buffer: each state's length rounded up to
/// the device's storage offset alignment, so a slot can be bound on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GdnSlots {
    /// Conv state slot (at least 16 bytes, also for a 1-tap conv).
    pub conv: u64,
    /// Recurrent state slot.
    pub state: u64,
}

impl GdnSlots {
    /// Slot sizes of `dims` on `ctx`.
    pub fn new(ctx: &GpuContext, dims: &GdnDims) -> Self {
        let align = (ctx.limits.min_storage_buffer_offset_alignment as u64).max(4);
        // At least 16 bytes: the conv kernel reads its state as vec4s.
        let round = |words: usize| ((words.max(4) as u64) * 4).div_ceil(align) * align;
        Self {
            conv: round(dims.conv_state_len()),
            state: round(dims.state_len()),
        }
    }
}

/// Most rows (sessions) one [`gdn_decode_rows`] launch steps (its slot table
/// lives in the launch's uniform).
pub const MAX_BATCH_ROWS: usize = 16;
/// Slots a [`gdn_decode_rows`] table can name (16-bit entries).
pub const MAX_SLOTS: u32 = 1 << 16;

/// Which form of the delta rule to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GdnMode {
    /// Token by token with the state in registers (decode; works for any T).
    Recurrent,
    /// Chunked WY form (prefill).
    Chunked,
}

/// Scratch of [`gdn_forward`] for up to `max_t` tokens. Its contents do not survive
/// a call, so one scratch serves every GDN layer with the same dims.
pub struct GdnScratch {
    dims: GdnDims,
    max_t: u32,
    chunk: u32,
    v_block: u32,
    /// Conv+SiLU output `[T, conv_dim]`.
    xc: wgpu::Buffer,
    /// U, then V' `[nv, T, dv]`.
    u: wgpu::Buffer,
    /// W `[nv, T, dk]`.
    w: wgpu::Buffer,
    /// γ `[nv, T]`.
    gam: wgpu::Buffer,
    /// State before each chunk `[nv, ceil(T/chunk), dk, dv]`.
    snap: wgpu::Buffer,
}

impl std::fmt::Debug for GdnScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdnScratch")
            .field("dims", &self.dims)
            .field("max_t", &self.max_t)
            .field("chunk", &self.chunk)
            .field("v_block", &self.v_block)
            .finish()
    }
}

/// Workgroup bytes of the chunk kernels for chunk `c` (intra-chunk and output kernels).
fn chunk_smem(c: u32) -> u32 {
    4 * (c * c + STAGE + 3 * MAX_CHUNK)
}

/// Workgroup bytes of the state pass for v-block `bv`.
fn state_smem(dims: &GdnDims, c: u32, bv: u32) -> u32 {
    4 * (dims.dk * bv + c * bv + c * 32 + 2 * MAX_CHUNK)
}

impl GdnScratch {
    /// Allocates scratch for calls of up to `max_t` tokens. The chunk length (64, or
    /// 32/16 when the device has little workgroup memory) is fixed here.
    pub fn new(ctx: &GpuContext, dims: &GdnDims, max_t: u32) -> Result<Self, KernelError> {
        dims.check()?;
        if max_t == 0 {
            return Err(KernelError::Arguments {
                kernel: "gdn",
                detail: "max_t must be at least 1".into(),
            });
        }
        if ctx.limits.max_compute_invocations_per_workgroup < WG
            || ctx.limits.max_compute_workgroup_size_x < WG
        {
            return Err(KernelError::Unsupported {
                what: "gdn".into(),
                detail: format!("needs workgroups of {WG} invocations"),
            });
        }
        let smem = ctx.limits.max_compute_workgroup_storage_size;
        let chunk = [64u32, 32, 16]
            .into_iter()
            .find(|&c| chunk_smem(c) <= smem)
            .ok_or_else(|| KernelError::Unsupported {
                what: "gdn".into(),
                detail: format!("{smem} bytes of workgroup memory are too few"),
            })?;
        let v_block = [32u32, 16, 8]
            .into_iter()
            .find(|&bv| state_smem(dims, chunk, bv) <= smem)
            .ok_or_else(|| KernelError::Unsupported {
                what: "gdn".into(),
                detail: format!("{smem} bytes of workgroup memory are too few"),
            })?;
        let n_chunks = max_t.div_ceil(chunk);
        if n_chunks > crate::MAX_GROUPS || max_t.div_ceil(CONV_TB) > crate::MAX_GROUPS {
            return Err(KernelError::Unsupported {
                what: "gdn".into(),
                detail: format!("max_t = {max_t}: too many chunks for one grid dimension"),
            });
        }
        let t = max_t as u64;
        let (nv, dk, dv) = (dims.nv as u64, dims.dk as u64, dims.dv as u64);
        let n_chunks = n_chunks as u64;
        Ok(Self {
            dims: *dims,
            max_t,
            chunk,
            v_block,
            xc: ctx.storage("gdn conv out", t * dims.conv_dim() as u64 * 4)?,
            u: ctx.storage("gdn U/V'", nv * t * dv * 4)?,
            w: ctx.storage("gdn W", nv * t * dk * 4)?,
            gam: ctx.storage("gdn gamma", nv * t * 4)?,
            snap: ctx.storage("gdn chunk states", nv * n_chunks * dk * dv * 4)?,
        })
    }

    /// Most tokens per call.
    pub fn max_t(&self) -> u32 {
        self.max_t
    }

    /// Chunk length of [`GdnMode::Chunked`] on this device.
    pub fn chunk(&self) -> u32 {
        self.chunk
    }

    /// Bytes allocated: 4·max_t·(conv_dim + nv·(dv + dk + 1)) plus the chunk
    /// states 4·nv·ceil(max_t/chunk)·dk·dv.
    pub fn size_bytes(&self) -> u64 {
        [&self.xc, &self.u, &self.w, &self.gam, &self.snap]
            .iter()
            .map(|b| b.size())
            .sum()
    }
}

crate::uniform_struct! {
    /// Mirrors `struct ConvParams` in `shaders/conv1d.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct ConvParams as "ConvParams" {
        t_len: u32,
        channels: u32,
        in_stride: u32,
        taps: u32,
        tb: u32,
        write_state: u32,
        rows: u32,
        conv_stride4: u32,
        slots0: u32,
        slots1: u32,
        slots2: u32,
        slots3: u32,
        slots4: u32,
        slots5: u32,
        slots6: u32,
        slots7: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct RecParams` in `shaders/gdn_recurrent.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct RecParams as "RecParams" {
        t0: u32,
        t_len: u32,
        nv: u32,
        nk: u32,
        conv_dim: u32,
        qkvz_stride: u32,
        key_dim: u32,
        eps: f32,
        q_scale: f32,
        rows: u32,
        st_stride: u32,
        _pad0: u32,
        slots0: u32,
        slots1: u32,
        slots2: u32,
        slots3: u32,
        slots4: u32,
        slots5: u32,
        slots6: u32,
        slots7: u32,
    }
}

impl RecParams {
    /// Tokens `t0 .. t0 + t_len` of one session's state (no slot table).
    fn span(dims: &GdnDims, t0: u32, t_len: u32) -> Self {
        Self {
            t0,
            t_len,
            nv: dims.nv,
            nk: dims.nk,
            conv_dim: dims.conv_dim(),
            qkvz_stride: dims.conv_dim() + dims.value_dim(),
            key_dim: dims.key_dim(),
            eps: dims.eps,
            q_scale: q_scale(dims),
            rows: 0,
            st_stride: 0,
            _pad0: 0,
            slots0: 0,
            slots1: 0,
            slots2: 0,
            slots3: 0,
            slots4: 0,
            slots5: 0,
            slots6: 0,
            slots7: 0,
        }
    }

    /// One step of each row of the batch, row `i`'s state at slot `t`'s
    /// entry `i` ([`pack_slots`]), slots `st_words` words apart.
    fn rows(dims: &GdnDims, st_words: u32, t: [u32; MAX_BATCH_ROWS / 2]) -> Self {
        Self {
            rows: 1,
            st_stride: st_words,
            slots0: t[0],
            slots1: t[1],
            slots2: t[2],
            slots3: t[3],
            slots4: t[4],
            slots5: t[5],
            slots6: t[6],
            slots7: t[7],
            ..Self::span(dims, 0, 1)
        }
    }
}

/// The recurrent kernel's launch with everything bound but its state `st`.
fn recurrent_launch<'a>(
    ctx: &'a GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'a>,
    s: &'a GdnScratch,
) -> crate::Launch<'a> {
    let (sl, r) = dims.recurrent_split();
    ctx.launch(&RECURRENT)
        .constant("WG", WG)
        .constant("DK", dims.dk)
        .constant("DV", dims.dv)
        .constant("SL", sl)
        .constant("R", r)
        .bind("gx", &s.xc)
        .bind("qkvz", b.qkvz)
        .bind("ba", b.ba)
        .bind("a_log", b.a_log)
        .bind("dt_bias", b.dt_bias)
        .bind("norm_w", b.norm_w)
        .bind("gout", b.out)
}

/// Row slots packed two per word (row 2i in the low half), as the kernels'
/// `slots0 .. slots7` uniform fields hold them.
fn pack_slots(slots: &[u32]) -> [u32; MAX_BATCH_ROWS / 2] {
    let mut t = [0u32; MAX_BATCH_ROWS / 2];
    for (i, &s) in slots.iter().enumerate() {
        t[i / 2] |= (s & 0xffff) << (16 * (i % 2));
    }
    t
}

crate::uniform_struct! {
    /// Mirrors `struct ChunkParams` in `shaders/gdn_chunk_common.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct ChunkParams as "ChunkParams" {
        t_len: u32,
        nv: u32,
        nk: u32,
        conv_dim: u32,
        qkvz_stride: u32,
        key_dim: u32,
        n_chunks: u32,
        _pad0: u32,
        eps: f32,
        q_scale: f32,
        _pad1: [u32; 2],
    }
}

static CONV: KernelSpec = KernelSpec {
    label: "gdn conv1d",
    parts: &[Part::File(&NUMERIC), Part::File(&CONV1D)],
    entry: "conv1d_silu",
    uniforms: &[&ConvParams::LAYOUT],
    needs: Needs::Baseline,
};

static CONV_STATE: KernelSpec = KernelSpec {
    label: "gdn conv state",
    parts: &[Part::File(&NUMERIC), Part::File(&CONV1D)],
    entry: "conv1d_state",
    uniforms: &[&ConvParams::LAYOUT],
    needs: Needs::Baseline,
};

static RECURRENT: KernelSpec = KernelSpec {
    label: "gdn recurrent",
    parts: &[
        Part::Reduce,
        Part::File(&NUMERIC),
        Part::File(&GDN_RECURRENT),
    ],
    entry: "gdn_recurrent",
    uniforms: &[&RecParams::LAYOUT],
    needs: Needs::Baseline,
};

static DECODE: KernelSpec = KernelSpec {
    label: "gdn decode",
    parts: &[Part::Reduce, Part::File(&NUMERIC), Part::File(&GDN_DECODE)],
    entry: "gdn_decode",
    uniforms: &[&DecParams::LAYOUT],
    needs: Needs::Baseline,
};

const fn chunk_spec(
    label: &'static str,
    parts: &'static [Part],
    entry: &'static str,
) -> KernelSpec {
    KernelSpec {
        label,
        parts,
        entry,
        uniforms: &[&ChunkParams::LAYOUT],
        needs: Needs::Baseline,
    }
}

static CHUNK_PREP: KernelSpec = chunk_spec(
    "gdn qk norm",
    &[
        Part::File(&NUMERIC),
        Part::File(&GDN_CHUNK_COMMON),
        Part::File(&GDN_CHUNK_PREP),
    ],
    "gdn_qk_norm",
);
static CHUNK_WY: KernelSpec = chunk_spec(
    "gdn chunk wy",
    &[
        Part::File(&NUMERIC),
        Part::File(&GDN_CHUNK_COMMON),
        Part::File(&GDN_CHUNK_WY),
    ],
    "gdn_chunk_wy",
);
static CHUNK_STATE: KernelSpec = chunk_spec(
    "gdn chunk state",
    &[
        Part::File(&NUMERIC),
        Part::File(&GDN_CHUNK_COMMON),
        Part::File(&GDN_CHUNK_STATE),
    ],
    "gdn_chunk_state",
);
static CHUNK_OUT: KernelSpec = chunk_spec(
    "gdn chunk out",
    &[
        Part::File(&NUMERIC),
        Part::File(&GDN_CHUNK_COMMON),
        Part::File(&GDN_CHUNK_OUT),
    ],
    "gdn_chunk_out",
);

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[
    &CONV,
    &CONV_STATE,
    &RECURRENT,
    &DECODE,
    &CHUNK_PREP,
    &CHUNK_WY,
    &CHUNK_STATE,
    &CHUNK_OUT,
];

/// `buf` holds at least `floats` f32 values.
fn need(what: &'static str, buf: &wgpu::Buffer, floats: u64) -> Result<(), KernelError> {
    check_vector("gdn", what, buf, Dtype::F32, 0, floats)
}

/// Records the GDN layer core for `t` tokens: reads `qkvz`, `ba` and the weights,
/// updates `conv_state` and `state` in place, writes `out`. The launches depend only
/// on the buffers' contents, so a T = 1 set can be recorded once and replayed every
/// decode step. Recurrent calls of up to [`FUSED_MAX_T`] tokens run as one fused
/// launch where the device allows it ([`fused_decode_available`]).
pub fn gdn_forward(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    scratch: &GdnScratch,
    t: u32,
    mode: GdnMode,
) -> Result<Vec<Dispatch>, KernelError> {
    gdn_forward_with(ctx, dims, b, scratch, t, mode, RecurrentLaunch::Auto)
}

/// How [`gdn_forward_with`] launches a [`GdnMode::Recurrent`] call (Chunked calls
/// ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecurrentLaunch {
    /// Fused for T <= [`FUSED_MAX_T`] where the device allows it, else split.
    Auto,
    /// The fused decode kernel for any T ([`KernelError::Unsupported`] where the
    /// device lacks its storage-buffer count or workgroup size).
    Fused,
    /// The conv launch, then the recurrent kernel (within WebGPU's default limits).
    Split,
}

/// [`gdn_forward`] with the Recurrent launch form chosen by the caller (tests and
/// benchmarks compare the two).
pub fn gdn_forward_with(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    scratch: &GdnScratch,
    t: u32,
    mode: GdnMode,
    launch: RecurrentLaunch,
) -> Result<Vec<Dispatch>, KernelError> {
    dims.check()?;
    if scratch.dims != *dims {
        return Err(KernelError::Arguments {
            kernel: "gdn",
            detail: format!(
                "scratch was made for {scratch_dims:?}, not {dims:?}",
                scratch_dims = scratch.dims
            ),
        });
    }
    if t == 0 || t > scratch.max_t {
        return Err(KernelError::Arguments {
            kernel: "gdn",
            detail: format!(
                "T = {t} outside 1..={scratch_max_t}",
                scratch_max_t = scratch.max_t
            ),
        });
    }
    let tt = t as u64;
    let (nv, dk, dv) = (dims.nv as u64, dims.dk as u64, dims.dv as u64);
    let conv_dim = dims.conv_dim() as u64;
    let stride = conv_dim + dims.value_dim() as u64;
    need("qkvz", b.qkvz, tt * stride)?;
    need("ba", b.ba, tt * 2 * nv)?;
    need("conv_w", b.conv_w, conv_dim * dims.conv_kernel as u64)?;
    need("a_log", b.a_log, nv)?;
    need("dt_bias", b.dt_bias, nv)?;
    need("norm_w", b.norm_w, dv)?;
    let slots = GdnSlots::new(ctx, dims);
    let slot = b.slot as u64;
    need(
        "conv_state",
        b.conv_state,
        (slot * slots.conv) / 4 + dims.conv_state_len() as u64,
    )?;
    need("state", b.state, (slot * slots.state) / 4 + nv * dk * dv)?;
    need("out", b.out, tt * nv * dv)?;

    if mode == GdnMode::Recurrent {
        let fused = match launch {
            RecurrentLaunch::Auto => t <= FUSED_MAX_T && decode_lanes(ctx, dims).is_some(),
            RecurrentLaunch::Fused => true,
            RecurrentLaunch::Split => false,
        };
        if fused {
            return decode_dispatches(ctx, dims, b, t);
        }
    }
    let mut out = conv_dispatches(ctx, dims, b, scratch, t)?;
    match mode {
        GdnMode::Recurrent => out.extend(recurrent_dispatches(ctx, dims, b, scratch, t)?),
        GdnMode::Chunked => out.extend(chunked_dispatches(ctx, dims, b, scratch, t)?),
    }
    Ok(out)
}

/// Storage buffers the fused decode kernel binds (more than WebGPU's default 8).
const DECODE_STORAGE_BUFFERS: u32 = 9;
/// Most value heads one fused-decode workgroup runs side by side (256 invocations
/// each). Two keep NVIDIA's register budget at 128 per thread (64 of them hold the
/// state); four would leave 64 and spill the state.
const MAX_LANES: u32 = 2;

/// Workgroup bytes of the fused decode kernel with `wg` invocations.
fn decode_smem(wg: u32) -> u32 {
    4 * ((2 + MAX_LANES) * MAX_HEAD_DIM + MAX_LANES * MAX_HEAD_DIM + 2 * wg + 4 * wg)
}

/// Value heads per fused-decode workgroup on this device, or `None` where the
/// device cannot run the fused kernel (e.g. WebGPU's default 8 storage buffers).
fn decode_lanes(ctx: &GpuContext, dims: &GdnDims) -> Option<u32> {
    let l = &ctx.limits;
    if l.max_storage_buffers_per_shader_stage < DECODE_STORAGE_BUFFERS {
        return None;
    }
    let g = dims.nv / dims.nk;
    (1..=MAX_LANES).rev().find(|&p| {
        let wg = p * WG;
        g.is_multiple_of(p)
            && wg <= l.max_compute_invocations_per_workgroup
            && wg <= l.max_compute_workgroup_size_x
            && decode_smem(wg) <= l.max_compute_workgroup_storage_size
    })
}

/// Whether [`gdn_forward`] runs a Recurrent call of `t <=` [`FUSED_MAX_T`] tokens
/// as the fused decode kernel (one launch) on this device.
pub fn fused_decode_available(ctx: &GpuContext, dims: &GdnDims) -> bool {
    dims.check().is_ok() && decode_lanes(ctx, dims).is_some()
}

crate::uniform_struct! {
    /// Mirrors `struct DecParams` in `shaders/gdn_decode.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct DecParams as "DecParams" {
        t0: u32,
        t_len: u32,
        nv: u32,
        nk: u32,
        conv_dim: u32,
        qkvz_stride: u32,
        key_dim: u32,
        conv_stride: u32,
        eps: f32,
        q_scale: f32,
        rounds: u32,
        st_stride: u32,
        slots0: u32,
        slots1: u32,
        slots2: u32,
        slots3: u32,
        slots4: u32,
        slots5: u32,
        slots6: u32,
        slots7: u32,
    }
}

impl DecParams {
    /// The parameters of a launch over tokens `t0 .. t0 + t_len` (of every row),
    /// with conv / recurrent slots `conv_stride` / `st_stride` words apart and
    /// row `i` on slot `slots[i]` (at most [`MAX_BATCH_ROWS`], each below
    /// [`MAX_SLOTS`]).
    fn new(
        dims: &GdnDims,
        lanes: u32,
        (t0, t_len): (u32, u32),
        (conv_stride, st_stride): (u32, u32),
        slots: &[u32],
    ) -> Self {
        let t = pack_slots(slots);
        Self {
            t0,
            t_len,
            nv: dims.nv,
            nk: dims.nk,
            conv_dim: dims.conv_dim(),
            qkvz_stride: dims.conv_dim() + dims.value_dim(),
            key_dim: dims.key_dim(),
            conv_stride,
            eps: dims.eps,
            q_scale: q_scale(dims),
            rounds: dims.nv / dims.nk / lanes,
            st_stride,
            slots0: t[0],
            slots1: t[1],
            slots2: t[2],
            slots3: t[3],
            slots4: t[4],
            slots5: t[5],
            slots6: t[6],
            slots7: t[7],
        }
    }
}

/// The fused decode kernel: one launch per [`RECURRENT_SPAN`] tokens, a workgroup
/// per key head (see `gdn_decode.wgsl` for why per key head).
fn decode_dispatches(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    t: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    let lanes = decode_lanes(ctx, dims).ok_or_else(|| KernelError::Unsupported {
        what: "gdn fused decode".into(),
        detail: format!(
            "needs {DECODE_STORAGE_BUFFERS} storage buffers per stage (device: {max_storage_buffers_per_shader_stage}) and \
             workgroups of {WG} invocations",
            max_storage_buffers_per_shader_stage = ctx.limits.max_storage_buffers_per_shader_stage
        ),
    })?;
    let mut out = Vec::new();
    let (_, st) = slot_ranges(ctx, dims, b.slot);
    for t0 in (0..t).step_by(RECURRENT_SPAN as usize) {
        let params = DecParams::new(dims, lanes, (t0, RECURRENT_SPAN.min(t - t0)), (0, 0), &[0]);
        out.push(
            bind_conv_state(decode_launch(ctx, dims, lanes, b), ctx, dims, b)
                .bind_range("st", b.state, st.0, st.1)
                .params(&params)
                .grid([dims.nk, 1, 1])
                .record()?,
        );
    }
    Ok(out)
}

/// The fused decode launch with everything but the states, params and grid bound.
fn decode_launch<'a>(
    ctx: &'a GpuContext,
    dims: &GdnDims,
    lanes: u32,
    b: &GdnLayerBuffers<'a>,
) -> crate::launch::Launch<'a> {
    let (sl, rows) = dims.recurrent_split();
    ctx.launch(&DECODE)
        .constant("WG", lanes * WG)
        .constant("LANES", lanes)
        .constant("DK", dims.dk)
        .constant("DV", dims.dv)
        .constant("SL", sl)
        .constant("R", rows)
        .constant("TAPS", dims.conv_kernel)
        .bind("qkvz", b.qkvz)
        .bind("ba", b.ba)
        .bind("conv_w", b.conv_w)
        .bind("a_log", b.a_log)
        .bind("dt_bias", b.dt_bias)
        .bind("norm_w", b.norm_w)
        .bind("gout", b.out)
}

/// `launch` with slot `b.slot` of `b.conv_state` bound to `conv_st` (the whole
/// buffer for a 1-tap conv, whose state is empty and never read).
fn bind_conv_state<'a>(
    launch: crate::launch::Launch<'a>,
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'a>,
) -> crate::launch::Launch<'a> {
    if dims.conv_state_len() == 0 {
        return launch.bind("conv_st", b.conv_state);
    }
    let (conv, _) = slot_ranges(ctx, dims, b.slot);
    launch.bind_range("conv_st", b.conv_state, conv.0, conv.1)
}

/// Byte ranges `(offset, size)` of slot `slot`'s conv and recurrent states.
fn slot_ranges(ctx: &GpuContext, dims: &GdnDims, slot: u32) -> ((u64, u64), (u64, u64)) {
    let s = GdnSlots::new(ctx, dims);
    let conv = (dims.conv_state_len().max(1) * 4) as u64;
    let st = (dims.state_len() * 4) as u64;
    ((slot as u64 * s.conv, conv), (slot as u64 * s.state, st))
}

/// One decode token for each of `slots.len()` sessions in ONE launch (the fused
/// kernel, grid `[nk, rows]`) where the device allows it
/// ([`fused_decode_available`]), else two within WebGPU's default limits (the
/// conv of every row into `scratch`, then the recurrent step of every row): row
/// `i` of `b.qkvz` / `b.ba` / `b.out` is session `i`'s token, on the states of
/// slot `slots[i]` of the pooled `b.conv_state` / `b.state` (slots [`GdnSlots`]
/// apart; `b.slot` is not used). Each row gets the arithmetic of a lone T = 1
/// call of the same launch form, so results equal it bit for bit. Slots must be
/// distinct (two rows on one state would race).
pub fn gdn_decode_rows(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    scratch: &GdnScratch,
    slots: &[u32],
) -> Result<Vec<Dispatch>, KernelError> {
    dims.check()?;
    let rows = slots.len();
    let arg = |detail: String| KernelError::Arguments {
        kernel: "gdn decode rows",
        detail,
    };
    if rows == 0 || rows > MAX_BATCH_ROWS {
        return Err(arg(format!("{rows} rows outside 1..={MAX_BATCH_ROWS}")));
    }
    let mut seen = std::collections::HashSet::new();
    for &s in slots {
        if s >= MAX_SLOTS || !seen.insert(s) {
            return Err(arg(format!(
                "slots {slots:?}: each must be distinct and below {MAX_SLOTS}"
            )));
        }
    }
    let r = rows as u64;
    let (nv, conv_dim) = (dims.nv as u64, dims.conv_dim() as u64);
    need("qkvz", b.qkvz, r * (conv_dim + dims.value_dim() as u64))?;
    need("ba", b.ba, r * 2 * nv)?;
    need("conv_w", b.conv_w, conv_dim * dims.conv_kernel as u64)?;
    need("a_log", b.a_log, nv)?;
    need("dt_bias", b.dt_bias, nv)?;
    need("norm_w", b.norm_w, dims.dv as u64)?;
    need("out", b.out, r * dims.value_dim() as u64)?;
    let s = GdnSlots::new(ctx, dims);
    let top = *slots.iter().max().unwrap_or(&0) as u64;
    need(
        "conv_state",
        b.conv_state,
        (top * s.conv) / 4 + dims.conv_state_len() as u64,
    )?;
    need(
        "state",
        b.state,
        (top * s.state) / 4 + dims.state_len() as u64,
    )?;
    let words = |bytes: u64| {
        u32::try_from(bytes / 4).map_err(|_| arg(format!("slot of {bytes} bytes too large")))
    };
    let (cw, sw) = (words(s.conv)?, words(s.state)?);
    if (top + 1) * s.state / 4 > u32::MAX as u64 || (top + 1) * s.conv / 4 > u32::MAX as u64 {
        return Err(arg(format!("slot {top} is past 32-bit indices")));
    }
    let Some(lanes) = decode_lanes(ctx, dims) else {
        return split_rows(ctx, dims, b, scratch, slots, (cw, sw));
    };
    let params = DecParams::new(dims, lanes, (0, 1), (cw, sw), slots);
    Ok(vec![decode_launch(ctx, dims, lanes, b)
        .label("gdn decode rows")
        .bind("conv_st", b.conv_state)
        .bind("st", b.state)
        .params(&params)
        .grid([dims.nk, rows as u32, 1])
        .record()?])
}

/// [`gdn_decode_rows`] within WebGPU's default limits: the conv of every row,
/// then the recurrent step of every row (two launches, grid y = row).
fn split_rows(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    s: &GdnScratch,
    slots: &[u32],
    (conv_words, st_words): (u32, u32),
) -> Result<Vec<Dispatch>, KernelError> {
    let rows = slots.len() as u32;
    if s.dims != *dims || rows > s.max_t {
        return Err(KernelError::Arguments {
            kernel: "gdn decode rows",
            detail: format!(
                "scratch for {max_t} tokens of {sd:?}, called with {rows} rows of {dims:?}",
                max_t = s.max_t,
                sd = s.dims
            ),
        });
    }
    let t = pack_slots(slots);
    let conv = ConvParams {
        t_len: 1,
        channels: dims.conv_dim(),
        in_stride: dims.conv_dim() + dims.value_dim(),
        taps: dims.conv_kernel,
        tb: 1,
        write_state: 1,
        rows: 1,
        conv_stride4: conv_words / 4,
        slots0: t[0],
        slots1: t[1],
        slots2: t[2],
        slots3: t[3],
        slots4: t[4],
        slots5: t[5],
        slots6: t[6],
        slots7: t[7],
    };
    let rec = RecParams::rows(dims, st_words, t);
    Ok(vec![
        ctx.launch(&CONV)
            .label("gdn conv1d rows")
            .constant("WG", WG)
            .bind("conv_x", b.qkvz)
            .bind("conv_w", b.conv_w)
            .bind("conv_st", b.conv_state)
            .bind("conv_y", &s.xc)
            .params(&conv)
            .grid([(dims.conv_dim() / 4).div_ceil(WG), rows, 1])
            .record()?,
        recurrent_launch(ctx, dims, b, s)
            .label("gdn recurrent rows")
            .bind("st", b.state)
            .params(&rec)
            .grid([dims.nv, rows, 1])
            .record()?,
    ])
}

fn conv_dispatches(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    s: &GdnScratch,
    t: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    let blocks = t.div_ceil(CONV_TB);
    let params = ctx.uniform(
        "gdn conv params",
        &ConvParams {
            t_len: t,
            channels: dims.conv_dim(),
            in_stride: dims.conv_dim() + dims.value_dim(),
            taps: dims.conv_kernel,
            tb: CONV_TB,
            write_state: (blocks == 1) as u32,
            rows: 0,
            conv_stride4: 0,
            slots0: 0,
            slots1: 0,
            slots2: 0,
            slots3: 0,
            slots4: 0,
            slots5: 0,
            slots6: 0,
            slots7: 0,
        },
    );
    let groups_x = (dims.conv_dim() / 4).div_ceil(WG);
    let mut out = vec![bind_conv_state(ctx.launch(&CONV), ctx, dims, b)
        .constant("WG", WG)
        .bind("conv_x", b.qkvz)
        .bind("conv_w", b.conv_w)
        .bind("conv_y", &s.xc)
        .params_buffer::<ConvParams>(&params)
        .grid([groups_x, blocks, 1])
        .record()?];
    if blocks > 1 {
        // Reads the input and rewrites the state only (its entry point leaves
        // the weights and the output unbound).
        out.push(
            bind_conv_state(ctx.launch(&CONV_STATE), ctx, dims, b)
                .constant("WG", WG)
                .bind("conv_x", b.qkvz)
                .bind("conv_w", b.conv_w)
                .bind("conv_y", &s.xc)
                .params_buffer::<ConvParams>(&params)
                .grid([groups_x, 1, 1])
                .record()?,
        );
    }
    Ok(out)
}

fn q_scale(dims: &GdnDims) -> f32 {
    // Same expression as the reference.
    1.0 / (dims.dk as f32).sqrt()
}

/// One launch per [`RECURRENT_SPAN`] tokens (state carried through the state buffer).
fn recurrent_dispatches(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    s: &GdnScratch,
    t: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    let (sl, rows) = dims.recurrent_split();
    debug_assert!(rows <= MAX_ROWS && sl * dims.dv <= WG);
    let mut out = Vec::new();
    let (_, st) = slot_ranges(ctx, dims, b.slot);
    for t0 in (0..t).step_by(RECURRENT_SPAN as usize) {
        out.push(
            recurrent_launch(ctx, dims, b, s)
                .bind_range("st", b.state, st.0, st.1)
                .params(&RecParams::span(dims, t0, RECURRENT_SPAN.min(t - t0)))
                .grid([dims.nv, 1, 1])
                .record()?,
        );
    }
    Ok(out)
}

fn chunked_dispatches(
    ctx: &GpuContext,
    dims: &GdnDims,
    b: &GdnLayerBuffers<'_>,
    s: &GdnScratch,
    t: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    let c = s.chunk;
    let n_chunks = t.div_ceil(c);
    let params = ctx.uniform(
        "gdn chunk params",
        &ChunkParams {
            t_len: t,
            nv: dims.nv,
            nk: dims.nk,
            conv_dim: dims.conv_dim(),
            qkvz_stride: dims.conv_dim() + dims.value_dim(),
            key_dim: dims.key_dim(),
            n_chunks,
            _pad0: 0,
            eps: dims.eps,
            q_scale: q_scale(dims),
            _pad1: [0; 2],
        },
    );
    // One uniform serves the four launches.
    let launch = |spec: &'static KernelSpec| {
        ctx.launch(spec)
            .constant("DK", dims.dk)
            .constant("DV", dims.dv)
            .constant("CH", c)
            .constant("CC", c * c)
            .params_buffer::<ChunkParams>(&params)
    };
    let rows = t * 2 * dims.nk;
    let bv = s.v_block;
    let (_, st) = slot_ranges(ctx, dims, b.slot);
    Ok(vec![
        launch(&CHUNK_PREP)
            .bind("px", &s.xc)
            .grid(grid_1d(rows.div_ceil(WG)))
            .record()?,
        launch(&CHUNK_WY)
            .bind("wx", &s.xc)
            .bind("ba", b.ba)
            .bind("a_log", b.a_log)
            .bind("dt_bias", b.dt_bias)
            .bind("wu", &s.u)
            .bind("ww", &s.w)
            .bind("wgam", &s.gam)
            .grid([n_chunks, dims.nv, 1])
            .record()?,
        launch(&CHUNK_STATE)
            .constant("BV", bv)
            .constant("SBV", dims.dk * bv)
            .constant("CBV", c * bv)
            .constant("CSW", c * 32)
            .bind("sx", &s.xc)
            .bind("sw", &s.w)
            .bind("su", &s.u)
            .bind("sgam", &s.gam)
            .bind("snap", &s.snap)
            .bind_range("st", b.state, st.0, st.1)
            .grid([dims.dv.div_ceil(bv), dims.nv, 1])
            .record()?,
        launch(&CHUNK_OUT)
            .bind("ox", &s.xc)
            .bind("ovp", &s.u)
            .bind("ogam", &s.gam)
            .bind("osnap", &s.snap)
            .bind("qkvz", b.qkvz)
            .bind("norm_w", b.norm_w)
            .bind("gout", b.out)
            .grid([n_chunks, dims.nv, 1])
            .record()?,
    ])
}

/// Converts the kernel's recurrent-state layout to the reference's `[nv, dk, dv]`
/// row-major (host side, for tests and snapshots). The layouts are the same.
pub fn state_to_reference(dims: &GdnDims, gpu: &[f32]) -> Vec<f32> {
    gpu[..dims.state_len().min(gpu.len())].to_vec()
}

/// Inverse of [`state_to_reference`].
pub fn state_from_reference(dims: &GdnDims, reference: &[f32]) -> Vec<f32> {
    reference[..dims.state_len().min(reference.len())].to_vec()
}
