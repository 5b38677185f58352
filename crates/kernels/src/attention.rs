//! Qwen3.5 gated full attention on the GPU: everything between the qkv
//! projection and `o_proj` (spec §2.3), for one layer and one call of `T` tokens
//! at positions `pos .. pos + T` (`pos` = [`Step::pos`]).
//!
//! Launches ([`attention_forward`]):
//! 1. `attn_prep` (`rope_qk.wgsl`), one workgroup per (head, token): `(1 + w)`
//!    RMSNorm of q and k heads, partial NeoX RoPE on the first `rotary_dim` dims
//!    from a host-filled cos/sin table ([`rope_table`]; angles in f64 on the CPU
//!    exactly like `qwgpu_ops::rope::Rope`, since f32 `pos·inv_freq` on the GPU
//!    would differ), q to the scratch, k and v into KV-cache rows `pos + t`.
//! 2. `T == 1`: `attn_decode` per KV page + `attn_merge` (`attention_decode.wgsl`,
//!    `attention_merge.wgsl`), split-K flash decoding. The split count of each
//!    page is fixed from the page sizes ([`page_splits`]) so the launches never
//!    change with the position and are recorded once for every decode step in a
//!    page; the split *length* is computed in the shader from `pos`
//!    (`max(64, ⌈visible keys of the page / splits⌉)`),
//!    so short contexts use fewer splits of at least 64 keys and long ones spread
//!    over all of them. One workgroup handles all q heads of a kv head (or a
//!    block of up to 8 when workgroup memory is short) so K/V are read once;
//!    scores use 4 lanes per key with loads batched 4 deep, so no thread waits
//!    on one load at a time (a thread-per-key loop was latency-bound: 10× slower
//!    at short contexts); the merge applies the log-sum-exp rule and the gate.
//!    `T > 1`: `attn_prefill` per KV page (`attention_prefill.wgsl`), tiled
//!    causal flash attention over (token, q head) rows of one kv head (GQA heads
//!    share the K/V tiles), 16 rows × 64 keys per tile, 2×2 scores per thread,
//!    online softmax carried from page to page through the scratch, the gate
//!    fused into the last page's launch.
//!
//! Batched decode: each session's call reads and writes its row of the
//! batch's `qkv` / `out` in place ([`AttnBuffers::row`]); its decode partials
//! go to its row of an [`AttnRowPartials`] ([`attention_decode_into`]), and
//! one [`attention_merge_rows`] launch merges every row. The norm + RoPE and
//! decode launches stay per session (each binds its own KV pages).
//!
//! The KV cache is a list of pages ([`KvPage`]), separate buffers holding
//! consecutive positions, so a cache grows by adding a page — nothing is
//! reallocated or copied — and a long context never needs one buffer above the
//! binding limits. The model grows pages geometrically, so a context of `n`
//! tokens has `O(log n)` pages and as many attention launches per layer.
//!
//! Measured on an H100 (Vulkan, trusted modules, hd 256, nh/nkv 16/4, capacity
//! 131072, 256 splits): decode 20 µs at 1k keys, 123 µs at 32k (2.2 TB/s of
//! K+V), 396 µs at 128k (2.7 TB/s), prep + decode + merge; nh/nkv 32/2 reaches
//! 1.2 TB/s (8-head blocks read K/V twice). Prefill T = 2048: 15–18 TFLOP/s.
//!
//! The gate half of `q_proj` is never copied: the epilogues read it from `qkv`.
//! Every kernel stays within WebGPU's default limits (16 KiB workgroup memory,
//! 256 invocations, 8 storage buffers); subgroups only speed up the decode
//! reductions. All math is f32.
//!
//! Buffer layouts (f32, row-major):
//! - `qkv [T, 2·nh·hd + 2·nkv·hd]`: per head `[query_h | gate_h]` (nh pairs),
//!   then k (nkv·hd), then v (nkv·hd).
//! - `rope [2, max_t, rotary_dim/2]`: cos block then sin block, row `t` for
//!   position `pos + t` of this call.
//! - each page's `keys`, `values [rows, nkv, hd]` (page `i` holds positions
//!   `start_i .. start_i + rows`, `start_i` = rows of the pages before it);
//!   `out [T, nh·hd]`.
//!
//! The host passes the pages up to the one holding `pos .. pos + T` (all of
//! them, in the last page passed) before each call; the kernels can not check
//! it: they skip cache writes outside that page and never read past a page.

use crate::dispatch::Dispatch;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{check_vector, Dtype};
use crate::{step, GpuContext, KernelError, Step};

crate::shader!(ATTENTION_COMMON, "attention_common.wgsl");
crate::shader!(ROPE_QK, "rope_qk.wgsl");
crate::shader!(ATTENTION_DECODE, "attention_decode.wgsl");
crate::shader!(ATTENTION_MERGE, "attention_merge.wgsl");
crate::shader!(ATTENTION_PREFILL, "attention_prefill.wgsl");

const KERNEL: &str = "attention";
/// Threads of the prep kernel (one head of up to 256 dims per workgroup).
const PREP_WG: u32 = 64;
/// Threads (= keys per tile) of the decode kernel.
const DECODE_WG: u32 = 256;
const MERGE_WG: u32 = 256;
const PREFILL_WG: u32 = 256;
/// Rows ((token, head) pairs) per prefill workgroup (`BM` in the shader).
const PREFILL_BM: u32 = 16;
/// Largest q-head block of one decode workgroup (`GB_MAX` in the shader).
const DECODE_GB_MAX: u32 = 8;
/// Fewest keys per decode split (`ATTN_MIN_CHUNK` in the shader).
pub const MIN_SPLIT_KEYS: u32 = 64;
/// Most decode splits (bounds the merge's work and the partials' size).
pub const MAX_SPLITS: u32 = 256;
/// Largest supported head dim.
pub const MAX_HEAD_DIM: u32 = 256;

/// Attention geometry of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnDims {
    /// Query heads.
    pub nh: u32,
    /// Key/value heads (divides `nh`).
    pub nkv: u32,
    /// Head dim: a multiple of 4, at most [`MAX_HEAD_DIM`].
    pub hd: u32,
    /// Leading dims of each head that rotate (even, `<= hd`).
    pub rotary_dim: u32,
    /// RMSNorm epsilon of the q/k norms.
    pub eps: f32,
}

impl AttnDims {
    /// Row width of the qkv projection output: `2·nh·hd + 2·nkv·hd`.
    pub fn qkv_width(&self) -> u32 {
        2 * self.nh * self.hd + 2 * self.nkv * self.hd
    }

    fn validate(&self) -> Result<(), KernelError> {
        let bad = |detail: String| {
            Err(KernelError::Arguments {
                kernel: KERNEL,
                detail,
            })
        };
        let AttnDims {
            nh,
            nkv,
            hd,
            rotary_dim,
            eps,
        } = *self;
        if nh == 0 || nkv == 0 || nh % nkv != 0 {
            return bad(format!("nh {nh} must be a positive multiple of nkv {nkv}"));
        }
        if hd == 0 || hd % 4 != 0 || hd > MAX_HEAD_DIM {
            return bad(format!(
                "head dim {hd} must be a positive multiple of 4 and at most {MAX_HEAD_DIM}"
            ));
        }
        if rotary_dim % 2 != 0 || rotary_dim > hd {
            return bad(format!(
                "rotary_dim {rotary_dim} must be even and at most hd {hd}"
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return bad(format!("eps {eps} must be finite and >= 0"));
        }
        Ok(())
    }
}

/// The buffers of one attention call (all f32; layouts in the module doc).
pub struct AttnBuffers<'a> {
    /// `[T, 2·nh·hd + 2·nkv·hd]`, output of the qkv projection.
    pub qkv: &'a wgpu::Buffer,
    /// `[hd]` stored weight `w` (the kernel applies `1 + w`).
    pub q_norm: &'a wgpu::Buffer,
    /// `[hd]` stored weight `w` (the kernel applies `1 + w`).
    pub k_norm: &'a wgpu::Buffer,
    /// `[2, max_t, rotary_dim/2]` cos then sin for this call's positions ([`rope_table`]).
    pub rope: &'a wgpu::Buffer,
    /// This layer's KV-cache pages in position order, up to the page holding
    /// this call's positions `pos .. pos + T`.
    pub pages: &'a [KvPage<'a>],
    /// The session's [`Step`] uniform (`pos` = first position of this call).
    pub step: &'a wgpu::Buffer,
    /// `[T, nh·hd]`: attention output · sigmoid(gate), the input of `o_proj`.
    pub out: &'a wgpu::Buffer,
    /// Row of `qkv` and `out` holding this call's first token (0, or a
    /// session's row of a batched decode step, read and written in place:
    /// needs [`rows_bindable`]).
    pub row: u32,
}

/// Whether [`AttnBuffers::row`] may be non-zero on this device: rows of `qkv`
/// and `out` start at multiples of the storage offset alignment.
pub fn rows_bindable(ctx: &GpuContext, dims: &AttnDims) -> bool {
    let align = (ctx.limits.min_storage_buffer_offset_alignment as u64).max(4);
    (dims.qkv_width() as u64 * 4).is_multiple_of(align)
        && (dims.nh as u64 * dims.hd as u64 * 4).is_multiple_of(align)
}

/// One page of a layer's KV cache: `[rows, nkv, hd]` f32 keys and values.
#[derive(Clone, Copy)]
pub struct KvPage<'a> {
    pub keys: &'a wgpu::Buffer,
    pub values: &'a wgpu::Buffer,
    pub rows: u32,
}

/// Scratch of the attention kernels, shareable by every layer of one geometry:
/// q after norm + RoPE `[max_t, nh, hd]`, the decode partials (`[splits, nh,
/// hd]` outputs, `[splits, nh]` (max, sum) pairs) and the prefill softmax state
/// carried between pages (`[max_t, nh, hd]`, `[max_t, nh]`).
pub struct AttnScratch {
    q: wgpu::Buffer,
    part_o: wgpu::Buffer,
    part_ml: wgpu::Buffer,
    carry_o: wgpu::Buffer,
    carry_ml: wgpu::Buffer,
    splits: u32,
    max_t: u32,
    dims: AttnDims,
}

/// Decode split count for a cache of `capacity` rows: one per
/// [`MIN_SPLIT_KEYS`] keys, at most [`MAX_SPLITS`].
pub fn decode_splits(capacity: u32) -> u32 {
    capacity.div_ceil(MIN_SPLIT_KEYS).clamp(1, MAX_SPLITS)
}

/// Decode splits of each page (rows `rows`) out of `budget` partial slots: at
/// least one per page, the rest in proportion to the page sizes, at most one per
/// [`MIN_SPLIT_KEYS`] rows. The total never exceeds `budget` when
/// `budget >= rows.len()`.
pub fn page_splits(rows: &[u32], budget: u32) -> Vec<u32> {
    let total: u64 = rows.iter().map(|&r| r as u64).sum::<u64>().max(1);
    let spare = budget.saturating_sub(rows.len() as u32) as u64;
    rows.iter()
        .map(|&r| (1 + (spare * r as u64 / total) as u32).min(decode_splits(r)))
        .collect()
}

impl AttnScratch {
    /// Scratch for calls of up to `max_t` tokens over a cache of `capacity` rows
    /// (all pages together), with [`decode_splits`]`(capacity)` decode splits.
    pub fn new(
        ctx: &GpuContext,
        dims: &AttnDims,
        max_t: u32,
        capacity: u32,
    ) -> Result<Self, KernelError> {
        if capacity == 0 {
            return Err(KernelError::Arguments {
                kernel: KERNEL,
                detail: "KV capacity must be positive".into(),
            });
        }
        Self::with_splits(ctx, dims, max_t, decode_splits(capacity))
    }

    /// Same with an explicit decode split count (1 ..= [`MAX_SPLITS`]; tests and tuning).
    pub fn with_splits(
        ctx: &GpuContext,
        dims: &AttnDims,
        max_t: u32,
        splits: u32,
    ) -> Result<Self, KernelError> {
        dims.validate()?;
        if max_t == 0 || max_t > crate::MAX_GROUPS {
            return Err(KernelError::Arguments {
                kernel: KERNEL,
                detail: format!(
                    "max_t {max_t} must be in 1..={crate_max_groups}",
                    crate_max_groups = crate::MAX_GROUPS
                ),
            });
        }
        if !(1..=MAX_SPLITS).contains(&splits) {
            return Err(KernelError::Arguments {
                kernel: KERNEL,
                detail: format!("decode split count {splits} must be in 1..={MAX_SPLITS}"),
            });
        }
        let (nh, hd) = (dims.nh as u64, dims.hd as u64);
        Ok(Self {
            q: ctx.storage("attention q scratch", max_t as u64 * nh * hd * 4)?,
            part_o: ctx.storage("attention partial outputs", splits as u64 * nh * hd * 4)?,
            part_ml: ctx.storage("attention partial max/sum", splits as u64 * nh * 8)?,
            carry_o: ctx.storage("attention page carry", max_t as u64 * nh * hd * 4)?,
            carry_ml: ctx.storage("attention page carry max/sum", max_t as u64 * nh * 8)?,
            splits,
            max_t,
            dims: *dims,
        })
    }

    /// The decode split count.
    pub fn splits(&self) -> u32 {
        self.splits
    }

    /// Partial slots a decode call over pages of `rows` rows fills (what
    /// [`attention_merge_rows`] merges for that row).
    pub fn decode_partials(&self, rows: &[u32]) -> u32 {
        page_splits(rows, self.splits).iter().sum()
    }
}

/// Most rows of one [`attention_merge_rows`] launch (their split counts live
/// in the launch's uniform).
pub const MAX_MERGE_ROWS: usize = 16;

/// Decode partials of the rows of a batched step, each row's in its own part
/// (offsets aligned so a row's part can be bound alone): the sessions' decode
/// launches write them ([`AttnBuffers`] with [`attention_decode_into`]), one
/// [`attention_merge_rows`] launch merges every row.
pub struct AttnRowPartials {
    part_o: wgpu::Buffer,
    part_ml: wgpu::Buffer,
    rows: u32,
    splits: u32,
    /// Bytes from one row's part to the next.
    o_stride: u64,
    ml_stride: u64,
    dims: AttnDims,
}

impl AttnRowPartials {
    /// Room for `rows` rows of up to `splits` partial slots each.
    pub fn new(
        ctx: &GpuContext,
        dims: &AttnDims,
        rows: u32,
        splits: u32,
    ) -> Result<Self, KernelError> {
        dims.validate()?;
        if rows == 0 || rows as usize > MAX_MERGE_ROWS || !(1..=MAX_SPLITS).contains(&splits) {
            return Err(KernelError::Arguments {
                kernel: KERNEL,
                detail: format!(
                    "{rows} rows of {splits} splits: rows must be in 1..={MAX_MERGE_ROWS}, \
                     splits in 1..={MAX_SPLITS}"
                ),
            });
        }
        let align = (ctx.limits.min_storage_buffer_offset_alignment as u64).max(16);
        let (nh, hd, n) = (dims.nh as u64, dims.hd as u64, splits as u64);
        let o_stride = (n * nh * hd * 4).div_ceil(align) * align;
        let ml_stride = (n * nh * 8).div_ceil(align) * align;
        Ok(Self {
            part_o: ctx.storage("attention row partial outputs", rows as u64 * o_stride)?,
            part_ml: ctx.storage("attention row partial max/sum", rows as u64 * ml_stride)?,
            rows,
            splits,
            o_stride,
            ml_stride,
            dims: *dims,
        })
    }
}

/// [`attention_forward`] of one decode token (T = 1) of a batch row whose
/// partials go to row `b.row` of `partials` instead of the scratch, without
/// the merge: the norm + RoPE + cache write launch and the per-page decode
/// launches. [`attention_merge_rows`] merges all rows at once.
pub fn attention_decode_into<'a>(
    ctx: &'a GpuContext,
    dims: &AttnDims,
    b: &AttnBuffers<'a>,
    scratch: &'a AttnScratch,
    max_t: u32,
    partials: &'a AttnRowPartials,
) -> Result<Vec<Dispatch>, KernelError> {
    if b.row >= partials.rows || partials.dims != *dims {
        return Err(KernelError::Arguments {
            kernel: KERNEL,
            detail: format!(
                "row {row} of partials for {rows} rows of {pd:?} (call: {dims:?})",
                row = b.row,
                rows = partials.rows,
                pd = partials.dims
            ),
        });
    }
    let rows: Vec<u32> = b.pages.iter().map(|p| p.rows).collect();
    let need_splits = scratch.decode_partials(&rows);
    if need_splits > partials.splits {
        return Err(KernelError::Arguments {
            kernel: KERNEL,
            detail: format!(
                "{need_splits} partial slots needed, rows of the partials hold {have}",
                have = partials.splits
            ),
        });
    }
    forward_impl(ctx, dims, b, scratch, 1, max_t, Some(partials))
}

/// Merges the decode partials of rows `0 .. nsplits.len()` of `partials` (row
/// `i` filled `nsplits[i]` slots) and gates them with rows of `qkv` into rows
/// of `out`, all in ONE launch (grid `[nh, rows]`).
pub fn attention_merge_rows(
    ctx: &GpuContext,
    dims: &AttnDims,
    partials: &AttnRowPartials,
    nsplits: &[u32],
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch, KernelError> {
    dims.validate()?;
    let rows = nsplits.len();
    if rows == 0
        || rows > partials.rows as usize
        || partials.dims != *dims
        || nsplits.iter().any(|&n| n == 0 || n > partials.splits)
    {
        return Err(KernelError::Arguments {
            kernel: KERNEL,
            detail: format!(
                "merge of {rows} rows with splits {nsplits:?}: partials hold {prows} rows of \
                 {psplits} splits",
                prows = partials.rows,
                psplits = partials.splits
            ),
        });
    }
    let (nh, hd) = (dims.nh as u64, dims.hd as u64);
    need("qkv", qkv, rows as u64 * dims.qkv_width() as u64)?;
    need("out", out, rows as u64 * nh * hd)?;
    let mut t = [0u32; MAX_MERGE_ROWS / 2];
    for (i, &n) in nsplits.iter().enumerate() {
        t[i / 2] |= (n & 0xffff) << (16 * (i % 2));
    }
    let (gb, nhb) = decode_head_block(ctx, dims.nh / dims.nkv, dims.hd);
    let params = AttnParams {
        t: 1,
        nh: dims.nh,
        nkv: dims.nkv,
        hd: dims.hd,
        rot: dims.rotary_dim,
        max_t: 1,
        page_rows: 0,
        nsplit: 0,
        qkv_w: dims.qkv_width(),
        group: dims.nh / dims.nkv,
        eps: dims.eps,
        scale: 1.0 / (dims.hd as f32).sqrt(),
        gb,
        nhb,
        page_start: 0,
        split_base: 0,
        flags: 0,
        rows: 1,
        o_stride: (partials.o_stride / 16) as u32,
        ml_stride: (partials.ml_stride / 8) as u32,
        nsplits0: t[0],
        nsplits1: t[1],
        nsplits2: t[2],
        nsplits3: t[3],
        nsplits4: t[4],
        nsplits5: t[5],
        nsplits6: t[6],
        nsplits7: t[7],
    };
    ctx.launch(&MERGE)
        .label("attn merge rows")
        .constant("WG", MERGE_WG)
        .constant("HD", dims.hd)
        .bind("part_o", &partials.part_o)
        .bind("part_ml", &partials.part_ml)
        .bind("qkv", qkv)
        .bind("out", out)
        .params(&params)
        .grid([dims.nh, rows as u32, 1])
        .record()
}

crate::uniform_struct! {
    /// Mirrors `struct AttnParams` in `shaders/attention_common.wgsl`.
    #[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct AttnParams as "AttnParams" {
        t: u32,
        nh: u32,
        nkv: u32,
        hd: u32,
        rot: u32,
        max_t: u32,
        page_rows: u32,
        nsplit: u32,
        qkv_w: u32,
        group: u32,
        eps: f32,
        scale: f32,
        gb: u32,
        nhb: u32,
        page_start: u32,
        split_base: u32,
        flags: u32,
        rows: u32,
        o_stride: u32,
        ml_stride: u32,
        nsplits0: u32,
        nsplits1: u32,
        nsplits2: u32,
        nsplits3: u32,
        nsplits4: u32,
        nsplits5: u32,
        nsplits6: u32,
        nsplits7: u32,
    }
}

const fn attn_spec(label: &'static str, parts: &'static [Part]) -> KernelSpec {
    KernelSpec {
        label,
        parts,
        entry: label,
        uniforms: &[&Step::LAYOUT, &AttnParams::LAYOUT],
        needs: Needs::Baseline,
    }
}

static PREP: KernelSpec = attn_spec(
    "attn_prep",
    &[
        Part::Reduce,
        Part::File(&step::STEP),
        Part::File(&ATTENTION_COMMON),
        Part::File(&ROPE_QK),
    ],
);
static DECODE: KernelSpec = attn_spec(
    "attn_decode",
    &[
        Part::Reduce,
        Part::File(&step::STEP),
        Part::File(&ATTENTION_COMMON),
        Part::File(&ATTENTION_DECODE),
    ],
);
static MERGE: KernelSpec = attn_spec(
    "attn_merge",
    &[
        Part::Reduce,
        Part::File(&step::STEP),
        Part::File(&ATTENTION_COMMON),
        Part::File(&ATTENTION_MERGE),
    ],
);
static PREFILL: KernelSpec = attn_spec(
    "attn_prefill",
    &[
        Part::File(&step::STEP),
        Part::File(&ATTENTION_COMMON),
        Part::File(&ATTENTION_PREFILL),
    ],
);

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[&PREP, &DECODE, &MERGE, &PREFILL];

/// `flags` of a prefill launch (`PAGE_FIRST`, `PAGE_LAST` in the shader).
const PAGE_FIRST: u32 = 1;
const PAGE_LAST: u32 = 2;

/// q heads per decode workgroup: the largest block (at most [`DECODE_GB_MAX`])
/// whose staged queries and tile probabilities fit the workgroup memory, then
/// evened out over the blocks a kv head needs.
fn decode_head_block(ctx: &GpuContext, group: u32, hd: u32) -> (u32, u32) {
    let limit = ctx.limits.max_compute_workgroup_storage_size;
    // q_sh (GB·hd) + p_sh (GB·WG) floats per head, plus the reduction's WG
    // vec4 and the (max, sum, rescale) arrays.
    let fixed = DECODE_WG * 16 + 3 * DECODE_GB_MAX * 4;
    let per_head = (hd + DECODE_WG) * 4;
    let fit = (limit.saturating_sub(fixed) / per_head).clamp(1, DECODE_GB_MAX);
    let blocks = group.div_ceil(fit);
    (group.div_ceil(blocks), blocks)
}

/// The cos/sin table of one call for the `rope` buffer: `[2, max_t, inv_freq.len()]`,
/// row `j < t` for position `start + j`, computed exactly as
/// `qwgpu_ops::rope::Rope::apply` does (angle `f32(inv_freq · pos as f32)`, then
/// cos/sin in f64 rounded to f32); rows `t..max_t` are zero.
///
/// Panics if `t > max_t`.
pub fn rope_table(inv_freq: &[f32], start: usize, t: usize, max_t: usize) -> Vec<f32> {
    assert!(t <= max_t, "rope_table: {t} tokens exceed max_t {max_t}");
    let half = inv_freq.len();
    let mut table = vec![0.0f32; 2 * max_t * half];
    let (cos, sin) = table.split_at_mut(max_t * half);
    for j in 0..t {
        let pos = (start + j) as f32;
        for (i, f) in inv_freq.iter().enumerate() {
            let angle = (f * pos) as f64;
            cos[j * half + i] = angle.cos() as f32;
            sin[j * half + i] = angle.sin() as f32;
        }
    }
    table
}

/// Inverse frequencies `theta^(-2i/rotary_dim)`, `i < rotary_dim/2`, computed in
/// f32 exactly as `qwgpu_ops::rope::Rope::new` does (it keeps them private).
pub fn rope_inv_freq(rotary_dim: usize, theta: f64) -> Vec<f32> {
    (0..rotary_dim / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / rotary_dim as f32))
        .collect()
}

/// `buf` holds at least `floats` f32 values.
fn need(what: &'static str, buf: &wgpu::Buffer, floats: u64) -> Result<(), KernelError> {
    check_vector(KERNEL, what, buf, Dtype::F32, 0, floats)
}

/// The launches of one attention call of `t` tokens: q/k norm + RoPE + KV write,
/// then attention with the sigmoid gate fused (`t == 1`: split-K flash decoding,
/// partials + log-sum-exp merge; `t > 1`: tiled causal prefill with online
/// softmax). Nothing depends on the position, which the kernels read from
/// `b.step`: record a decode call's launches once and replay them every token,
/// rewriting only the step uniform and the rope table.
///
/// `max_t` must be the one `scratch` was made with. The caller passes the pages
/// up to the one holding positions `step.pos .. step.pos + t` (not checkable
/// here); decode launches stay valid while `pos` stays in that last page.
pub fn attention_forward<'a>(
    ctx: &'a GpuContext,
    dims: &AttnDims,
    b: &AttnBuffers<'a>,
    scratch: &'a AttnScratch,
    t: u32,
    max_t: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    forward_impl(ctx, dims, b, scratch, t, max_t, None)
}

/// [`attention_forward`]; with `rows`, a decode call writes its partials to
/// row `b.row` of them and leaves the merge out.
fn forward_impl<'a>(
    ctx: &'a GpuContext,
    dims: &AttnDims,
    b: &AttnBuffers<'a>,
    scratch: &'a AttnScratch,
    t: u32,
    max_t: u32,
    rows_out: Option<&'a AttnRowPartials>,
) -> Result<Vec<Dispatch>, KernelError> {
    dims.validate()?;
    let bad = |detail: String| {
        Err(KernelError::Arguments {
            kernel: KERNEL,
            detail,
        })
    };
    if scratch.dims.nh != dims.nh || scratch.dims.hd != dims.hd {
        return bad(format!(
            "scratch made for nh {scratch_dims_nh} hd {scratch_dims_hd}, called with nh {dims_nh} hd {dims_hd}",
            scratch_dims_nh = scratch.dims.nh,
            scratch_dims_hd = scratch.dims.hd,
            dims_nh = dims.nh,
            dims_hd = dims.hd
        ));
    }
    if scratch.max_t != max_t {
        return bad(format!(
            "scratch made for max_t {scratch_max_t}, called with {max_t}",
            scratch_max_t = scratch.max_t
        ));
    }
    let Some(last_page) = b.pages.last() else {
        return bad("no KV-cache page".into());
    };
    if t == 0 || t > max_t || t > last_page.rows {
        return bad(format!(
            "T {t} must be in 1..=min(max_t {max_t}, last page rows {last_page_rows})",
            last_page_rows = last_page.rows
        ));
    }
    if b.pages.len() as u32 > scratch.splits {
        return bad(format!(
            "{b_pages_len} KV pages need at least as many decode splits, the scratch has {scratch_splits}",
            b_pages_len = b.pages.len(),
            scratch_splits = scratch.splits
        ));
    }
    let AttnDims {
        nh,
        nkv,
        hd,
        rotary_dim,
        eps,
    } = *dims;
    let group = nh / nkv;
    let (nh64, nkv64, hd64) = (nh as u64, nkv as u64, hd as u64);
    if b.row > 0 && !rows_bindable(ctx, dims) {
        return bad(format!(
            "row {row}: rows of qkv and out are not aligned to {align} bytes on this device",
            row = b.row,
            align = ctx.limits.min_storage_buffer_offset_alignment
        ));
    }
    let rows = b.row as u64 + t as u64;
    need("qkv", b.qkv, rows * dims.qkv_width() as u64)?;
    need("q_norm", b.q_norm, hd64)?;
    need("k_norm", b.k_norm, hd64)?;
    need("rope", b.rope, 2 * max_t as u64 * (rotary_dim / 2) as u64)?;
    let mut starts = Vec::with_capacity(b.pages.len());
    let mut start = 0u64;
    for p in b.pages {
        if p.rows == 0 {
            return bad("a KV-cache page has no rows".into());
        }
        need("page keys", p.keys, p.rows as u64 * nkv64 * hd64)?;
        need("page values", p.values, p.rows as u64 * nkv64 * hd64)?;
        starts.push(start as u32);
        start += p.rows as u64;
    }
    if start > u32::MAX as u64 {
        return bad(format!(
            "KV pages hold {start} rows, more than u32 positions"
        ));
    }
    need("step", b.step, (std::mem::size_of::<Step>() / 4) as u64)?;
    need("out", b.out, rows * nh64 * hd64)?;
    if t as u64 * group as u64 > PREFILL_BM as u64 * crate::MAX_GROUPS as u64 {
        return bad(format!("T {t} × group {group} exceeds the prefill grid"));
    }

    let (gb, nhb) = decode_head_block(ctx, group, hd);
    let base = AttnParams {
        t,
        nh,
        nkv,
        hd,
        rot: rotary_dim,
        max_t,
        page_rows: 0,
        nsplit: 0,
        qkv_w: dims.qkv_width(),
        group,
        eps,
        scale: 1.0 / (hd as f32).sqrt(),
        gb,
        nhb,
        page_start: 0,
        split_base: 0,
        flags: 0,
        rows: 0,
        o_stride: 0,
        ml_stride: 0,
        nsplits0: 0,
        nsplits1: 0,
        nsplits2: 0,
        nsplits3: 0,
        nsplits4: 0,
        nsplits5: 0,
        nsplits6: 0,
        nsplits7: 0,
    };
    // The uniform of a launch on page `i` (with these split fields / flags).
    let page_params = |i: usize, nsplit: u32, split_base: u32, flags: u32| AttnParams {
        page_rows: b.pages[i].rows,
        page_start: starts[i],
        nsplit,
        split_base,
        flags,
        ..base
    };

    // qkv and out: whole buffers, or this call's rows of them.
    let (qkv_row, out_row) = (dims.qkv_width() as u64 * 4, nh64 * hd64 * 4);
    let io = |l: crate::launch::Launch<'a>, qkv: bool, out: bool| {
        let mut l = l;
        if b.row == 0 {
            if qkv {
                l = l.bind("qkv", b.qkv);
            }
            if out {
                l = l.bind("out", b.out);
            }
            return l;
        }
        let r = b.row as u64;
        if qkv {
            l = l.bind_range("qkv", b.qkv, r * qkv_row, t as u64 * qkv_row);
        }
        if out {
            l = l.bind_range("out", b.out, r * out_row, t as u64 * out_row);
        }
        l
    };
    let last = b.pages.len() - 1;
    let mut out = Vec::with_capacity(b.pages.len() + 2);
    out.push(
        io(ctx.launch(&PREP), true, false)
            .constant("WG", PREP_WG)
            .bind("q_norm", b.q_norm)
            .bind("k_norm", b.k_norm)
            .bind("rope", b.rope)
            .bind("q_out", &scratch.q)
            .bind("keys", last_page.keys)
            .bind("values", last_page.values)
            .bind("st", b.step)
            .params(&page_params(last, 0, 0, 0))
            .grid([nh + 2 * nkv, t, 1])
            .record()?,
    );

    if t == 1 {
        let rows: Vec<u32> = b.pages.iter().map(|p| p.rows).collect();
        let mut split_base = 0;
        for (i, (page, splits)) in b
            .pages
            .iter()
            .zip(page_splits(&rows, scratch.splits))
            .enumerate()
        {
            let l = ctx.launch(&DECODE);
            let l = match rows_out {
                None => l
                    .bind("part_o", &scratch.part_o)
                    .bind("part_ml", &scratch.part_ml),
                Some(p) => {
                    let r = b.row as u64;
                    l.bind_range("part_o", &p.part_o, r * p.o_stride, p.o_stride)
                        .bind_range("part_ml", &p.part_ml, r * p.ml_stride, p.ml_stride)
                }
            };
            out.push(
                l.constant("WG", DECODE_WG)
                    .constant("HD", hd)
                    .constant("GB", gb)
                    .bind("q", &scratch.q)
                    .bind("keys", page.keys)
                    .bind("values", page.values)
                    .bind("st", b.step)
                    .params(&page_params(i, splits, split_base, 0))
                    .grid([splits, nkv * nhb, 1])
                    .record()?,
            );
            split_base += splits;
        }
        if rows_out.is_some() {
            return Ok(out);
        }
        out.push(
            io(ctx.launch(&MERGE), true, true)
                .constant("WG", MERGE_WG)
                .constant("HD", hd)
                .bind("part_o", &scratch.part_o)
                .bind("part_ml", &scratch.part_ml)
                .params(&page_params(last, split_base, 0, 0))
                .grid([nh, 1, 1])
                .record()?,
        );
    } else {
        for (i, page) in b.pages.iter().enumerate() {
            let flags =
                (if i == 0 { PAGE_FIRST } else { 0 }) | (if i == last { PAGE_LAST } else { 0 });
            out.push(
                io(ctx.launch(&PREFILL), true, true)
                    .constant("WG", PREFILL_WG)
                    .constant("HD", hd)
                    .constant("G", group)
                    .bind("q", &scratch.q)
                    .bind("keys", page.keys)
                    .bind("values", page.values)
                    .bind("st", b.step)
                    .params(&page_params(i, 0, 0, flags))
                    .bind("carry_o", &scratch.carry_o)
                    .bind("carry_ml", &scratch.carry_ml)
                    .grid([(t * group).div_ceil(PREFILL_BM), nkv, 1])
                    .record()?,
            );
        }
    }
    Ok(out)
}
