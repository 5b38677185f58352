//! Gated DeltaNet (linear attention) layers: weights, the per-session conv
//! and recurrent states, and the launches of a step (T = 1: the recurrent
//! step; T > 1: the chunked delta rule).

use std::any::Any;

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::gdn::{gdn_forward, GdnLayerBuffers, GdnMode};
use qwgpu_kernels::matmul::Epilogue;
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, Dispatch, GpuWeight};
use qwgpu_loader::GdnWeights;

use super::kind::{own_state, CoreIo, LayerState, Mixer, SessionView};
use crate::gpu::activations::{f32s, gdn_dims, Activations};
use crate::gpu::record::{project, Input, Rec};
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

/// A session's state of one GDN layer.
struct State {
    /// `[(K − 1), conv_dim]`: the last inputs of the causal conv.
    conv: wgpu::Buffer,
    /// `[nv, dk, dv]` delta-rule state.
    recurrent: wgpu::Buffer,
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
    ) -> Result<Box<dyn LayerState>, ModelError> {
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
        Ok(Box::new(State { conv, recurrent }))
    }

    fn copy_state(
        &self,
        r: &Rec,
        from: (&dyn LayerState, &[usize]),
        to: (&dyn LayerState, &[usize]),
        _rows: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let a: &State = own_state(from.0, NAME)?;
        let b: &State = own_state(to.0, NAME)?;
        let mut d = Vec::with_capacity(2);
        for (x, y) in [(&a.conv, &b.conv), (&a.recurrent, &b.recurrent)] {
            let words = (x.size() / 4).min(y.size() / 4) as u32;
            d.push(copy::copy_words(
                r.ctx,
                &TensorView::words(x, 0, words),
                &TensorView::words(y, 0, words),
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
        let state: &State = own_state(state, NAME)?;
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
                conv_state: &state.conv,
                state: &state.recurrent,
                out: &g.out,
            },
            &g.scratch,
            t as u32,
            mode,
        )?);
        Ok(())
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
