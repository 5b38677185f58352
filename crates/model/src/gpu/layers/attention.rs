//! Full (softmax) attention layers: weights, the per-session KV cache (pages
//! of rows, added as the sequence grows, never moved), and the launches of a
//! step (q/k norms, RoPE, attention over the pages up to the step's, gate).

use std::any::Any;

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::{LayerType, TextConfig};
use qwgpu_kernels::attention::{
    attention_decode_into, attention_forward, attention_merge_rows, rows_bindable, AttnBuffers,
    AttnRowPartials, AttnScratch, KvPage, MAX_MERGE_ROWS,
};
use qwgpu_kernels::matmul::Epilogue;
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, Dispatch, GpuContext, GpuWeight};
use qwgpu_loader::AttentionWeights;

use super::kind::{
    own_state, own_state_mut, BatchRow, CoreIo, LayerState, Mixer, PoolSlot, SessionView,
};
use crate::gpu::activations::{attn_dims, f32s, Activations};
use crate::gpu::record::{interleave, project, Input, Rec};
use crate::gpu::upload::Uploader;
use crate::shapes::{check_matrix, check_vector};
use crate::ModelError;

const NAME: &str = "attention";

/// KV pages hold a multiple of this many rows (tokens).
pub(crate) const KV_GRANULE: usize = 256;
/// Largest KV page, in rows (also bounded by the binding size limit).
const MAX_PAGE_ROWS: usize = 16384;

pub(crate) struct Attention {
    /// `[2·nh·hd + 2·nkv·hd, H]`: q with its gate (interleaved per head), k, v.
    qkv: GpuWeight,
    /// `[H, nh·hd]`.
    o_proj: GpuWeight,
    /// `[hd]` each.
    q_norm: wgpu::Buffer,
    k_norm: wgpu::Buffer,
}

/// One page of a layer's KV cache: `[rows, nkv, hd]` f32 keys and values.
struct KvPageGpu {
    keys: wgpu::Buffer,
    values: wgpu::Buffer,
}

/// A session's KV cache of one layer: pages in position order; their row
/// counts are the session's (the same for every attention layer).
struct KvCache {
    pages: Vec<KvPageGpu>,
}

impl LayerState for KvCache {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Checks layer `i`'s attention weights against the shape table.
pub(crate) fn check(c: &TextConfig, i: usize, a: &AttentionWeights) -> Result<(), ModelError> {
    let p = |s: &str| format!("model.layers.{i}.self_attn.{s}");
    check_matrix(c, Packed::AttnQkv, &a.qkv)?;
    check_matrix(c, Packed::AttnOut, &a.o_proj)?;
    check_vector(c, Packed::AttnQNorm, &p("q_norm.weight"), &a.q_norm)?;
    check_vector(c, Packed::AttnKNorm, &p("k_norm.weight"), &a.k_norm)
}

impl Attention {
    pub fn upload(
        u: &mut Uploader<'_>,
        i: usize,
        a: &AttentionWeights,
    ) -> Result<Self, ModelError> {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        Ok(Self {
            qkv: u.weight(&a.qkv)?,
            o_proj: u.weight(&a.o_proj)?,
            q_norm: u.vector(p("q_norm"), &a.q_norm)?,
            k_norm: u.vector(p("k_norm"), &a.k_norm)?,
        })
    }
}

/// f32 words of `rows` KV rows (keys or values).
fn kv_words(c: &TextConfig, rows: usize) -> usize {
    rows * c.num_key_value_heads * c.head_dim
}

/// Rows of the next KV page of a cache holding `capacity` rows that must reach
/// `needed`: as large as the cache so far (geometric growth: `O(log n)` pages,
/// so `O(log n)` attention launches per layer), at least what is needed, in
/// whole granules, at most [`MAX_PAGE_ROWS`] and the binding size limit.
pub(crate) fn next_page_rows(
    ctx: &GpuContext,
    c: &TextConfig,
    capacity: usize,
    needed: usize,
) -> usize {
    let row_bytes = (kv_words(c, 1) * 4).max(1) as u64;
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
        / row_bytes;
    let max_rows = (MAX_PAGE_ROWS.min(limit as usize) / KV_GRANULE * KV_GRANULE).max(1);
    let want = capacity
        .max(needed.saturating_sub(capacity))
        .max(KV_GRANULE);
    want.div_ceil(KV_GRANULE)
        .saturating_mul(KV_GRANULE)
        .min(max_rows)
}

/// The attention kernels' scratch for a session of `capacity` KV rows, for
/// models with attention layers.
pub(crate) fn scratch(r: &Rec, capacity: usize) -> Result<Option<AttnScratch>, ModelError> {
    if !r.c.layer_types.contains(&LayerType::FullAttention) {
        return Ok(None);
    }
    Ok(Some(AttnScratch::new(
        r.ctx,
        &attn_dims(r.c),
        r.max_t as u32,
        capacity as u32,
    )?))
}

fn new_page(r: &Rec, layer: usize, n: usize, rows: usize) -> Result<KvPageGpu, ModelError> {
    let words = kv_words(r.c, rows);
    Ok(KvPageGpu {
        keys: f32s(r.ctx, &format!("layer {layer} keys page {n}"), words)?,
        values: f32s(r.ctx, &format!("layer {layer} values page {n}"), words)?,
    })
}

/// Launches copying KV rows `0 .. rows` from pages of `from.1` rows to pages
/// of `to.1` rows (the two page layouts may differ).
fn copy_kv_rows(
    r: &Rec,
    from: (&[KvPageGpu], &[usize]),
    to: (&[KvPageGpu], &[usize]),
    rows: usize,
) -> Result<Vec<Dispatch>, ModelError> {
    let row_words = kv_words(r.c, 1);
    let mut d = Vec::new();
    let (mut i, mut j) = (0usize, 0usize);
    // Start positions of pages i (source) and j (destination).
    let (mut si, mut sj) = (0usize, 0usize);
    let mut pos = 0usize;
    while pos < rows {
        let (Some(&ri), Some(&rj)) = (from.1.get(i), to.1.get(j)) else {
            return Err(ModelError::CacheMismatch {
                detail: format!("KV pages hold fewer than the {rows} rows to copy"),
            });
        };
        let (Some(pi), Some(pj)) = (from.0.get(i), to.0.get(j)) else {
            return Err(ModelError::Internal {
                detail: format!(
                    "a KV cache has fewer pages than its {} page sizes",
                    i.max(j) + 1
                ),
            });
        };
        let n = (si + ri).min(sj + rj).min(rows) - pos;
        let words = |r: usize| (r * row_words) as u32;
        for (a, b) in [(&pi.keys, &pj.keys), (&pi.values, &pj.values)] {
            d.push(copy::copy_words(
                r.ctx,
                &TensorView::words(a, words(pos - si), words(n)),
                &TensorView::words(b, words(pos - sj), words(n)),
            )?);
        }
        pos += n;
        if pos == si + ri {
            si += ri;
            i += 1;
        }
        if pos == sj + rj {
            sj += rj;
            j += 1;
        }
    }
    Ok(d)
}

/// The session's attention scratch.
fn scratch_of<'a>(s: &SessionView<'a>) -> Result<&'a AttnScratch, ModelError> {
    s.attn.ok_or_else(|| ModelError::Internal {
        detail: "attention layer without attention scratch".into(),
    })
}

/// The pages a step of the session at its position binds (up to the one
/// holding the position).
fn kv_pages<'a>(kv: &'a KvCache, s: &SessionView) -> Vec<KvPage<'a>> {
    let (n_pages, _) = s.pages_at(s.pos);
    kv.pages
        .iter()
        .zip(s.pages)
        .take(n_pages)
        .map(|(p, &rows)| KvPage {
            keys: &p.keys,
            values: &p.values,
            rows: rows as u32,
        })
        .collect()
}

impl Attention {
    /// The core's launches over `t` tokens of a session (its rope, step and
    /// KV pages from `own`, `state`, `s`) reading rows `row ..` of `qkv` and
    /// writing rows `row ..` of `out` (`io`).
    fn core_launches(
        &self,
        r: &Rec,
        (qkv, out, row): (&wgpu::Buffer, &wgpu::Buffer, u32),
        own: &Activations,
        state: &dyn LayerState,
        s: &SessionView,
        t: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let kv: &KvCache = own_state(state, NAME)?;
        let scratch = scratch_of(s)?;
        let pages = kv_pages(kv, s);
        Ok(attention_forward(
            r.ctx,
            &attn_dims(r.c),
            &AttnBuffers {
                qkv,
                q_norm: &self.q_norm,
                k_norm: &self.k_norm,
                rope: &own.stream.rope,
                pages: &pages,
                step: &own.stream.step,
                out,
                row,
            },
            scratch,
            t as u32,
            r.max_t as u32,
        )?)
    }
}

impl Mixer for Attention {
    fn new_state(
        &self,
        r: &Rec,
        layer: usize,
        pages: &[usize],
        _slot: Option<PoolSlot>,
    ) -> Result<Box<dyn LayerState>, ModelError> {
        let pages = pages
            .iter()
            .enumerate()
            .map(|(n, &rows)| new_page(r, layer, n, rows))
            .collect::<Result<_, _>>()?;
        Ok(Box::new(KvCache { pages }))
    }

    fn add_page(
        &self,
        r: &Rec,
        layer: usize,
        state: &mut dyn LayerState,
        rows: usize,
    ) -> Result<(), ModelError> {
        let kv: &mut KvCache = own_state_mut(state, NAME)?;
        let n = kv.pages.len();
        kv.pages.push(new_page(r, layer, n, rows)?);
        Ok(())
    }

    fn copy_state(
        &self,
        r: &Rec,
        from: (&dyn LayerState, &[usize]),
        to: (&dyn LayerState, &[usize]),
        rows: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let a: &KvCache = own_state(from.0, NAME)?;
        let b: &KvCache = own_state(to.0, NAME)?;
        copy_kv_rows(r, (&a.pages, from.1), (&b.pages, to.1), rows)
    }

    fn record_in(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let at = a.attention()?;
        d.extend(project(r, &self.qkv, input, &at.qkv, t, Epilogue::Store)?);
        Ok(())
    }

    fn record_core(
        &self,
        r: &Rec,
        a: &Activations,
        state: &dyn LayerState,
        s: &SessionView,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let at = a.attention()?;
        d.extend(self.core_launches(r, (&at.qkv, &at.out, 0), a, state, s, t)?);
        Ok(())
    }

    /// Each session's attention on its own KV pages (norm + RoPE + cache
    /// write, the decode of each page), reading its row of the batch's qkv
    /// and writing its decode partials to its row of a partials buffer (the
    /// sessions' launches interleaved), then ONE merge launch for all rows
    /// writing the batch's output rows in place: no copies.
    fn record_core_rows(
        &self,
        r: &Rec,
        a: &Activations,
        rows: &[BatchRow],
        d: &mut Vec<Dispatch>,
    ) -> Result<bool, ModelError> {
        let dims = attn_dims(r.c);
        if rows.is_empty() || rows.len() > MAX_MERGE_ROWS || !rows_bindable(r.ctx, &dims) {
            return Ok(false);
        }
        let at = a.attention()?;
        let mut splits = 1;
        for row in rows {
            splits = splits.max(scratch_of(&row.session)?.splits());
        }
        let partials = AttnRowPartials::new(r.ctx, &dims, rows.len() as u32, splits)?;
        let mut per_row = Vec::with_capacity(rows.len());
        let mut nsplits = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let kv: &KvCache = own_state(row.state, NAME)?;
            let pages = kv_pages(kv, &row.session);
            let page_rows: Vec<u32> = pages.iter().map(|p| p.rows).collect();
            let scratch = scratch_of(&row.session)?;
            nsplits.push(scratch.decode_partials(&page_rows));
            per_row.push(attention_decode_into(
                r.ctx,
                &dims,
                &AttnBuffers {
                    qkv: &at.qkv,
                    q_norm: &self.q_norm,
                    k_norm: &self.k_norm,
                    rope: &row.act.stream.rope,
                    pages: &pages,
                    step: &row.act.stream.step,
                    out: &at.out,
                    row: i as u32,
                },
                scratch,
                r.max_t as u32,
                &partials,
            )?);
        }
        interleave(per_row, d);
        d.push(attention_merge_rows(
            r.ctx, &dims, &partials, &nsplits, &at.qkv, &at.out,
        )?);
        Ok(true)
    }

    fn record_out(
        &self,
        r: &Rec,
        a: &Activations,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let at = a.attention()?;
        d.extend(project(
            r,
            &self.o_proj,
            Input::Rows(&at.out),
            &a.stream.h,
            t,
            Epilogue::Accumulate,
        )?);
        Ok(())
    }

    fn out_weight(&self) -> Option<&GpuWeight> {
        Some(&self.o_proj)
    }

    fn core_io<'a>(&self, r: &Rec, a: &'a Activations) -> Result<CoreIo<'a>, ModelError> {
        let (at, c) = (a.attention()?, r.c);
        Ok(CoreIo {
            inputs: vec![(&at.qkv, c.q_proj_rows() + 2 * c.kv_proj_rows())],
            output: (&at.out, c.num_attention_heads * c.head_dim),
        })
    }
}
