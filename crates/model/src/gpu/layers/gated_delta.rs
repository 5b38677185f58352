//! Gated DeltaNet (linear attention) layers: weights, the per-session conv
//! and recurrent states, and the launches of a step (T = 1: the recurrent
//! step; T > 1: the chunked delta rule).

use std::any::Any;
use std::sync::Arc;

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::gdn::{gdn_decode_rows, gdn_forward, GdnLayerBuffers, GdnMode, MAX_BATCH_ROWS};
use qwgpu_kernels::matmul::Epilogue;
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, Dispatch, GpuWeight};
use qwgpu_loader::GdnWeights;

use super::kind::{own_state, BatchRow, CoreIo, LayerState, Mixer, PoolSlot, SessionView};
use crate::gpu::activations::{f32s, gdn_dims, Activations};
use crate::gpu::record::{project, Input, Rec};
use crate::gpu::state_pool::GdnPool;
use crate::gpu::upload::Uploader;
use crate::shapes::{check_matrix, check_vector};
use crate::ModelError;

const NAME: &str = "Gated DeltaNet";

pub(crate) struct GatedDelta {
    /// `[conv_dim + value_dim, H]`.
    qkvz: GpuWeight,
    /// `[2·nv, H]`.
    ba: GpuWeight,
    /// `[conv_dim · K]` depthwise conv taps.
    conv_w: wgpu::Buffer,
    /// `[nv]`.
    a_log: wgpu::Buffer,
    /// `[nv]`.
    dt_bias: wgpu::Buffer,
    /// `[dv]` gated RMSNorm weight (plain `w`).
    norm_w: wgpu::Buffer,
    /// `[H, value_dim]`.
    out_proj: GpuWeight,
}

/// A session's (or snapshot's) state of one GDN layer: the conv state
/// `[(K − 1), conv_dim]` (the last inputs of the causal conv) and the
/// `[nv, dk, dv]` delta-rule state.
enum State {
    /// Buffers of its own (snapshots).
    Own {
        conv: wgpu::Buffer,
        recurrent: wgpu::Buffer,
    },
    /// Slot `slot` of layer `layer`'s buffers in the model's pool (sessions:
    /// a batched step runs all of them in one launch).
    Pooled {
        pool: Arc<GdnPool>,
        layer: usize,
        slot: u32,
    },
}

/// Where a state lives: `(conv buffer, recurrent buffer, slot, slot bytes
/// (conv, recurrent))`.
type Place = (wgpu::Buffer, wgpu::Buffer, u32, (u64, u64));

impl State {
    fn place(&self) -> Result<Place, ModelError> {
        match self {
            State::Own { conv, recurrent } => Ok((conv.clone(), recurrent.clone(), 0, (0, 0))),
            State::Pooled { pool, layer, slot } => {
                let b = pool.buffers()?;
                let (conv, rec) =
                    b.layers
                        .get(*layer)
                        .and_then(|l| l.as_ref())
                        .ok_or_else(|| ModelError::Internal {
                            detail: format!("the GDN state pool has no buffers for layer {layer}"),
                        })?;
                let s = pool.slots();
                Ok((conv.clone(), rec.clone(), *slot, (s.conv, s.state)))
            }
        }
    }
}

impl LayerState for State {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Checks layer `i`'s GDN weights against the shape table.
pub(crate) fn check(c: &TextConfig, i: usize, g: &GdnWeights) -> Result<(), ModelError> {
    let p = |s: &str| format!("model.layers.{i}.linear_attn.{s}");
    check_matrix(c, Packed::GdnQkvz, &g.in_proj_qkvz)?;
    check_matrix(c, Packed::GdnBa, &g.in_proj_ba)?;
    check_matrix(c, Packed::GdnOut, &g.out_proj)?;
    check_vector(c, Packed::GdnConv1d, &p("conv1d.weight"), &g.conv1d)?;
    check_vector(c, Packed::GdnALog, &p("A_log"), &g.a_log)?;
    check_vector(c, Packed::GdnDtBias, &p("dt_bias"), &g.dt_bias)?;
    check_vector(c, Packed::GdnNorm, &p("norm.weight"), &g.norm)
}

impl GatedDelta {
    pub fn upload(u: &mut Uploader<'_>, i: usize, g: &GdnWeights) -> Result<Self, ModelError> {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        Ok(Self {
            qkvz: u.weight(&g.in_proj_qkvz)?,
            ba: u.weight(&g.in_proj_ba)?,
            conv_w: u.vector(p("conv1d"), &g.conv1d)?,
            a_log: u.vector(p("A_log"), &g.a_log)?,
            dt_bias: u.vector(p("dt_bias"), &g.dt_bias)?,
            norm_w: u.vector(p("linear_attn.norm"), &g.norm)?,
            out_proj: u.weight(&g.out_proj)?,
        })
    }
}

impl Mixer for GatedDelta {
    fn new_state(
        &self,
        r: &Rec,
        layer: usize,
        _pages: &[usize],
        slot: Option<PoolSlot>,
    ) -> Result<Box<dyn LayerState>, ModelError> {
        if let Some(p) = slot {
            return Ok(Box::new(State::Pooled {
                pool: p.pool.clone(),
                layer,
                slot: p.slot,
            }));
        }
        let c = r.c;
        let conv = f32s(
            r.ctx,
            &format!("layer {layer} conv state"),
            (c.linear_conv_kernel_dim - 1) * c.conv_dim(),
        )?;
        let recurrent = f32s(
            r.ctx,
            &format!("layer {layer} recurrent state"),
            c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim,
        )?;
        r.ctx.fill_f32(&conv, 0.0);
        r.ctx.fill_f32(&recurrent, 0.0);
        Ok(Box::new(State::Own { conv, recurrent }))
    }

    fn copy_state(
        &self,
        r: &Rec,
        from: (&dyn LayerState, &[usize]),
        to: (&dyn LayerState, &[usize]),
        _rows: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let a = own_state::<State>(from.0, NAME)?.place()?;
        let b = own_state::<State>(to.0, NAME)?.place()?;
        let dims = gdn_dims(r.c);
        let lens = [dims.conv_state_len(), dims.state_len()];
        let mut d = Vec::with_capacity(2);
        let pairs = [(&a.0, a.3 .0, &b.0, b.3 .0), (&a.1, a.3 .1, &b.1, b.3 .1)];
        for ((x, xs, y, ys), words) in pairs.into_iter().zip(lens) {
            if words == 0 {
                continue;
            }
            let at = |slot: u32, bytes: u64| {
                u32::try_from(slot as u64 * bytes / 4).map_err(|_| ModelError::Internal {
                    detail: "a GDN state slot is past 32-bit indices".into(),
                })
            };
            d.push(copy::copy_words(
                r.ctx,
                &TensorView::words(x, at(a.2, xs)?, words as u32),
                &TensorView::words(y, at(b.2, ys)?, words as u32),
            )?);
        }
        Ok(d)
    }

    fn record_in(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let g = a.gated_delta()?;
        d.extend(project(r, &self.qkvz, input, &g.qkvz, t, Epilogue::Store)?);
        d.extend(project(r, &self.ba, input, &g.ba, t, Epilogue::Store)?);
        Ok(())
    }

    fn record_core(
        &self,
        r: &Rec,
        a: &Activations,
        state: &dyn LayerState,
        _s: &SessionView,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let g = a.gated_delta()?;
        let (conv, recurrent, slot, _) = own_state::<State>(state, NAME)?.place()?;
        let mode = if t == 1 {
            GdnMode::Recurrent
        } else {
            GdnMode::Chunked
        };
        d.extend(gdn_forward(
            r.ctx,
            &gdn_dims(r.c),
            &GdnLayerBuffers {
                qkvz: &g.qkvz,
                ba: &g.ba,
                conv_w: &self.conv_w,
                a_log: &self.a_log,
                dt_bias: &self.dt_bias,
                norm_w: &self.norm_w,
                conv_state: &conv,
                state: &recurrent,
                out: &g.out,
                slot,
            },
            &g.scratch,
            t as u32,
            mode,
        )?);
        Ok(())
    }

    fn record_core_rows(
        &self,
        r: &Rec,
        a: &Activations,
        rows: &[BatchRow],
        d: &mut Vec<Dispatch>,
    ) -> Result<bool, ModelError> {
        let dims = gdn_dims(r.c);
        if rows.is_empty() || rows.len() > MAX_BATCH_ROWS {
            return Ok(false);
        }
        // Every row's state must be a slot of the same pooled buffers.
        let mut slots = Vec::with_capacity(rows.len());
        let mut first: Option<(&Arc<GdnPool>, usize)> = None;
        for row in rows {
            let State::Pooled { pool, layer, slot } = own_state::<State>(row.state, NAME)? else {
                return Ok(false);
            };
            match first {
                None => first = Some((pool, *layer)),
                Some((p, l)) if Arc::ptr_eq(p, pool) && l == *layer => {}
                Some(_) => return Ok(false),
            }
            slots.push(*slot);
        }
        let Some((pool, layer)) = first else {
            return Ok(false);
        };
        let (conv, recurrent, _, _) = State::Pooled {
            pool: pool.clone(),
            layer,
            slot: 0,
        }
        .place()?;
        let g = a.gated_delta()?;
        d.extend(gdn_decode_rows(
            r.ctx,
            &dims,
            &GdnLayerBuffers {
                qkvz: &g.qkvz,
                ba: &g.ba,
                conv_w: &self.conv_w,
                a_log: &self.a_log,
                dt_bias: &self.dt_bias,
                norm_w: &self.norm_w,
                conv_state: &conv,
                state: &recurrent,
                out: &g.out,
                slot: 0,
            },
            &g.scratch,
            &slots,
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
        let g = a.gated_delta()?;
        let input = Input::Rows(&g.out);
        d.extend(project(
            r,
            &self.out_proj,
            input,
            &a.stream.h,
            t,
            Epilogue::Accumulate,
        )?);
        Ok(())
    }

    fn out_weight(&self) -> Option<&GpuWeight> {
        Some(&self.out_proj)
    }

    fn core_io<'a>(&self, r: &Rec, a: &'a Activations) -> Result<CoreIo<'a>, ModelError> {
        let (g, c) = (a.gated_delta()?, r.c);
        Ok(CoreIo {
            inputs: vec![
                (&g.qkvz, c.conv_dim() + c.value_dim()),
                (&g.ba, 2 * c.linear_num_value_heads),
            ],
            output: (&g.out, c.value_dim()),
        })
    }
}
