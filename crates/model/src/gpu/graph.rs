//! One step of the forward pass as a list of launches: the embedding, a loop
//! over the layers (each records itself, see [`super::layers`]), the final
//! norm and the head.

use qwgpu_kernels::matmul::Epilogue;
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{embed, Dispatch};

use super::activations::Activations;
use super::layers::BatchRow;
use super::record::{project, rms_norm, Head, Input, Rec};
use super::session::GpuSession;
use super::weights::WeightsGpu;
use crate::ModelError;

/// Launches for `t` tokens of session `s` at its position (the caller ensures
/// the KV page holding `s.pos` also holds `s.pos + t - 1`).
pub(crate) fn record(
    r: &Rec,
    w: &WeightsGpu,
    s: &GpuSession,
    t: usize,
    head: Head,
) -> Result<Vec<Dispatch>, ModelError> {
    let a = &s.act;
    let mut d: Vec<Dispatch> = Vec::new();
    d.extend(embed::embed(
        r.ctx,
        &w.embed,
        &TensorView::words(&a.stream.ids, 0, t as u32),
        &TensorView::f32_rows(&a.stream.h, 0, t as u32, r.c.hidden_size as u32),
    )?);
    let view = s.view();
    if s.layers.len() != w.layers.len() {
        return Err(layer_count(s));
    }
    for (layer, state) in w.layers.iter().zip(&s.layers) {
        layer.record(r, a, state.as_ref(), &view, t, &mut d)?;
    }
    lm_head(r, w, a, t, head, &mut d)?;
    Ok(d)
}

fn layer_count(s: &GpuSession) -> ModelError {
    ModelError::CacheMismatch {
        detail: format!("session {} has a state for another number of layers", s.id),
    }
}

/// One decode step of several sessions in one launch list (row `i` of `a` is
/// session `i`'s; see [`super::layers::Layer::record_batch`]).
pub(crate) fn record_batch(
    r: &Rec,
    w: &WeightsGpu,
    a: &Activations,
    cores: &[Activations],
    sessions: &[&GpuSession],
) -> Result<Vec<Dispatch>, ModelError> {
    let b = sessions.len();
    let mut d: Vec<Dispatch> = Vec::new();
    d.extend(embed::embed(
        r.ctx,
        &w.embed,
        &TensorView::words(&a.stream.ids, 0, b as u32),
        &TensorView::f32_rows(&a.stream.h, 0, b as u32, r.c.hidden_size as u32),
    )?);
    for (li, layer) in w.layers.iter().enumerate() {
        let rows = sessions
            .iter()
            .map(|s| {
                let state = s.layers.get(li).ok_or_else(|| layer_count(s))?;
                Ok(BatchRow {
                    act: &s.act,
                    state: state.as_ref(),
                    session: s.view(),
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        layer.record_batch(r, a, cores, &rows, &mut d)?;
    }
    lm_head(r, w, a, b, Head::All, &mut d)?;
    Ok(d)
}

/// Final norm and LM head: logits of no row, the last row (into row 0) or every row.
fn lm_head(
    r: &Rec,
    w: &WeightsGpu,
    a: &Activations,
    t: usize,
    head: Head,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    let st = &a.stream;
    let head_w = w.lm_head.as_ref().unwrap_or(&w.embed);
    let input = match head {
        Head::None => return Ok(()),
        // One row: always the GEMV with the norm fused.
        Head::Last => Input::Normed {
            h: &st.h,
            row0: t - 1,
            norm: &w.norm,
        },
        Head::All => {
            rms_norm(r, &st.h, &w.norm, &st.x, t, d)?;
            Input::normed(t, &st.h, &st.x, &w.norm)
        }
    };
    let rows = if head == Head::Last { 1 } else { t };
    d.extend(project(
        r,
        head_w,
        input,
        &st.logits,
        rows,
        Epilogue::Store,
    )?);
    Ok(())
}
