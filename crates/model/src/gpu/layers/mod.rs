//! The decoder layers: each is a token mixer ([`kind::Mixer`]: Gated
//! DeltaNet or attention) and an FFN ([`kind::Ffn`]: dense MLP or MoE)
//! between pre-norms, with residual adds fused into the output projections.
//!
//! Each kind lives in one file with its weights, its per-session state (made,
//! grown and copied there) and its launches. Adding a kind: a file
//! implementing [`kind::Mixer`] or [`kind::Ffn`]; its arm in
//! [`Layer::check`] / [`Layer::upload`] (the only place that maps the
//! loader's layer kinds to implementations); its activation group in
//! `activations.rs`; its weights' shapes in `checkpoint::expected::packed_shape`.

pub(crate) mod attention;
pub(crate) mod gated_delta;
pub(crate) mod kind;
pub(crate) mod mlp;
pub(crate) mod moe;

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};
use qwgpu_kernels::Dispatch;
use qwgpu_loader::{Ffn as PackedFfn, Mixer as PackedMixer, PackedLayer};

use crate::gpu::activations::Activations;
use crate::gpu::record::{copy_row, copy_rows, interleave, rms_norm, Input, Rec};
use crate::gpu::upload::Uploader;
use crate::gpu::CORE_ROWS;
use crate::shapes::check_vector;
use crate::ModelError;
pub(crate) use kind::BatchRow;
use kind::{Ffn, LayerState, Mixer, SessionView};

/// One decoder layer on the GPU.
pub(crate) struct Layer {
    /// `[H]` RMSNorm (`1 + w`) weights before the mixer and before the FFN.
    input_norm: wgpu::Buffer,
    post_norm: wgpu::Buffer,
    pub mixer: Box<dyn Mixer>,
    ffn: Box<dyn Ffn>,
}

impl Layer {
    /// Checks layer `i`'s packed weights against the config (before any upload).
    pub fn check(c: &TextConfig, i: usize, l: &PackedLayer) -> Result<(), ModelError> {
        let want_linear = c.layer_types.get(i) == Some(&LayerType::LinearAttention);
        let name = |linear: bool| {
            if linear {
                "linear attention"
            } else {
                "full attention"
            }
        };
        if matches!(l.mixer, PackedMixer::Linear(_)) != want_linear {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: name(want_linear),
                got: name(!want_linear),
            });
        }
        let p = |s: &str| format!("model.layers.{i}.{s}");
        check_vector(
            c,
            Packed::InputNorm,
            &p("input_layernorm.weight"),
            &l.input_layernorm,
        )?;
        check_vector(
            c,
            Packed::PostNorm,
            &p("post_attention_layernorm.weight"),
            &l.post_attention_layernorm,
        )?;
        match &l.mixer {
            PackedMixer::Linear(g) => gated_delta::check(c, i, g)?,
            PackedMixer::Full(a) => attention::check(c, i, a)?,
        }
        match (&l.ffn, &c.ffn) {
            (PackedFfn::Dense(m), FfnConfig::Dense { .. }) => mlp::check(c, m),
            (PackedFfn::Moe(e), FfnConfig::Moe { .. }) => moe::check(c, e),
            (PackedFfn::Dense(_), FfnConfig::Moe { .. }) => Err(ModelError::LayerKind {
                layer: i,
                expected: "MoE",
                got: "dense MLP",
            }),
            (PackedFfn::Moe(_), FfnConfig::Dense { .. }) => Err(ModelError::LayerKind {
                layer: i,
                expected: "dense MLP",
                got: "MoE",
            }),
        }
    }

    /// Uploads layer `i` in its stored formats.
    pub fn upload(
        u: &mut Uploader<'_>,
        c: &TextConfig,
        i: usize,
        l: &PackedLayer,
    ) -> Result<Self, ModelError> {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let mixer: Box<dyn Mixer> = match &l.mixer {
            PackedMixer::Linear(g) => Box::new(gated_delta::GatedDelta::upload(u, i, g)?),
            PackedMixer::Full(a) => Box::new(attention::Attention::upload(u, i, a)?),
        };
        let ffn: Box<dyn Ffn> = match &l.ffn {
            PackedFfn::Dense(m) => Box::new(mlp::Mlp::upload(u, m)?),
            PackedFfn::Moe(e) => Box::new(moe::Moe::upload(u, c, i, e)?),
        };
        Ok(Self {
            input_norm: u.vector(p("input_layernorm"), &l.input_layernorm)?,
            post_norm: u.vector(p("post_attention_layernorm"), &l.post_attention_layernorm)?,
            mixer,
            ffn,
        })
    }

    /// The layer over `t` tokens of one session (prefill or decode).
    pub fn record(
        &self,
        r: &Rec,
        a: &Activations,
        state: &dyn LayerState,
        session: &SessionView,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let st = &a.stream;
        rms_norm(r, &st.h, &self.input_norm, &st.x, t, d)?;
        let input = Input::normed(t, &st.h, &st.x, &self.input_norm);
        self.mixer.record_in(r, input, a, t, d)?;
        self.mixer.record_core(r, a, state, session, t, d)?;
        self.mixer.record_out(r, a, t, d)?;
        self.record_ffn(r, a, t, true, d)
    }

    /// The layer over one decode token of each session in `rows` (row `i` of
    /// `a` is session `i`'s): projections and FFN run once over all rows, the
    /// mixer cores in one launch family where the mixer has a batched form
    /// ([`Mixer::record_core_rows`]), else each session's on its own state
    /// and activations, its row copied in and out; past [`CORE_ROWS`] rows
    /// the cores run in blocks of that many, block `k + 1` in `cores[k]`
    /// (its rows copied in and out). Every row gets the arithmetic of a lone
    /// decode step (MoE never groups) up to the matmuls' f32 rounding order.
    pub fn record_batch(
        &self,
        r: &Rec,
        a: &Activations,
        cores: &[Activations],
        rows: &[BatchRow],
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let b = rows.len();
        let st = &a.stream;
        rms_norm(r, &st.h, &self.input_norm, &st.x, b, d)?;
        let input = Input::normed(b, &st.h, &st.x, &self.input_norm);
        self.mixer.record_in(r, input, a, b, d)?;
        for (k, block) in rows.chunks(CORE_ROWS).enumerate() {
            if k == 0 {
                self.record_cores(r, a, block, d)?;
                continue;
            }
            let ca = cores.get(k - 1).ok_or_else(|| ModelError::Internal {
                detail: format!(
                    "no core activations for rows {row0}..",
                    row0 = k * CORE_ROWS
                ),
            })?;
            let (batch_io, own_io) = (self.mixer.core_io(r, a)?, self.mixer.core_io(r, ca)?);
            let (row0, n) = (k * CORE_ROWS, block.len());
            for (&(from, width), &(to, _)) in batch_io.inputs.iter().zip(&own_io.inputs) {
                d.push(copy_rows(r.ctx, from, row0, to, 0, n, width)?);
            }
            self.record_cores(r, ca, block, d)?;
            let ((from, width), (to, _)) = (own_io.output, batch_io.output);
            d.push(copy_rows(r.ctx, from, 0, to, row0, n, width)?);
        }
        self.mixer.record_out(r, a, b, d)?;
        self.record_ffn(r, a, b, false, d)
    }

    /// The mixer cores of `rows` (at most [`CORE_ROWS`], row `i` of `a`):
    /// one launch family where the mixer has one, else each session's own.
    fn record_cores(
        &self,
        r: &Rec,
        a: &Activations,
        rows: &[BatchRow],
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        if !self.mixer.record_core_rows(r, a, rows, d)? {
            self.record_cores_per_session(r, a, rows, d)?;
        }
        Ok(())
    }

    /// Each session's mixer core on its own state and activations, its row
    /// copied in and out (the sessions' launches interleaved).
    fn record_cores_per_session(
        &self,
        r: &Rec,
        a: &Activations,
        rows: &[BatchRow],
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let b = rows.len();
        let batch_io = self.mixer.core_io(r, a)?;
        let mut per_session = Vec::with_capacity(b);
        for (row, s) in rows.iter().enumerate() {
            let own_io = self.mixer.core_io(r, s.act)?;
            let mut l = Vec::new();
            for (&(from, width), &(to, _)) in batch_io.inputs.iter().zip(&own_io.inputs) {
                l.push(copy_row(r.ctx, from, row, to, 0, width)?);
            }
            self.mixer
                .record_core(r, s.act, s.state, &s.session, 1, &mut l)?;
            let ((from, width), (to, _)) = (own_io.output, batch_io.output);
            l.push(copy_row(r.ctx, from, 0, to, row, width)?);
            per_session.push(l);
        }
        interleave(per_session, d);
        Ok(())
    }

    fn record_ffn(
        &self,
        r: &Rec,
        a: &Activations,
        t: usize,
        grouped_ok: bool,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let st = &a.stream;
        // Decode: every reader of the normalised rows (dense gate|up; MoE
        // router, experts' gate|up, shared expert, shared gate) fuses the norm.
        rms_norm(r, &st.h, &self.post_norm, &st.x, t, d)?;
        let input = Input::normed(t, &st.h, &st.x, &self.post_norm);
        self.ffn.record(r, input, a, t, grouped_ok, d)
    }
}
