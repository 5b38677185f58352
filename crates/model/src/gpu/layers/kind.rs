//! What a layer kind provides: a token mixer ([`Mixer`]: Gated DeltaNet,
//! attention) with its per-session state ([`LayerState`]), and an FFN
//! ([`Ffn`]: dense MLP, MoE). The graph only talks to layers through these.

use std::any::Any;
use std::sync::Arc;

use qwgpu_kernels::attention::AttnScratch;
use qwgpu_kernels::{Dispatch, GpuWeight};

use crate::gpu::activations::Activations;
use crate::gpu::record::{Input, Rec};
use crate::gpu::state_pool::GdnPool;
use crate::ModelError;

/// One layer's per-session state (recurrent state, KV pages), owned by the
/// session, made and read by the layer's [`Mixer`] only.
pub(crate) trait LayerState: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// `state` as the mixer's own state type (a session always holds the state
/// its layer made: anything else is a bug).
pub(crate) fn own_state<'a, T: 'static>(
    state: &'a dyn LayerState,
    mixer: &str,
) -> Result<&'a T, ModelError> {
    state
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ModelError::Internal {
            detail: format!("a {mixer} layer was given another layer kind's state"),
        })
}

/// [`own_state`], mutably.
pub(crate) fn own_state_mut<'a, T: 'static>(
    state: &'a mut dyn LayerState,
    mixer: &str,
) -> Result<&'a mut T, ModelError> {
    state
        .as_any_mut()
        .downcast_mut::<T>()
        .ok_or_else(|| ModelError::Internal {
            detail: format!("a {mixer} layer was given another layer kind's state"),
        })
}

/// What a mixer reads of its session besides its own layer state.
#[derive(Clone, Copy)]
pub(crate) struct SessionView<'a> {
    /// Tokens before this step.
    pub pos: usize,
    /// Rows of each KV page (the same for every attention layer).
    pub pages: &'a [usize],
    /// Attention scratch sized for the session's KV capacity (models with
    /// attention layers).
    pub attn: Option<&'a AttnScratch>,
}

impl SessionView<'_> {
    /// Pages a step at `pos` binds (up to the one holding `pos`), and the
    /// first position after the last of them.
    pub fn pages_at(&self, pos: usize) -> (usize, usize) {
        pages_at(self.pages, pos)
    }
}

/// [`SessionView::pages_at`] for page row counts `pages`.
pub(crate) fn pages_at(pages: &[usize], pos: usize) -> (usize, usize) {
    let mut end = 0;
    for (i, rows) in pages.iter().enumerate() {
        end += rows;
        if pos < end {
            return (i + 1, end);
        }
    }
    (pages.len(), end)
}

/// A session's slot in the model's GDN state pool (see `state_pool`).
#[derive(Clone, Copy)]
pub(crate) struct PoolSlot<'a> {
    pub pool: &'a Arc<GdnPool>,
    pub slot: u32,
}

/// One session's part of a batched decode step.
pub(crate) struct BatchRow<'a> {
    /// The session's own activations (a mixer core without a batched form
    /// runs in them).
    pub act: &'a Activations,
    /// Its state of this layer.
    pub state: &'a dyn LayerState,
    pub session: SessionView<'a>,
}

/// Rows (`buffer`, row width in f32) a batched decode step copies between
/// the batch's activations and a session's own around the mixer core.
pub(crate) struct CoreIo<'a> {
    pub inputs: Vec<(&'a wgpu::Buffer, usize)>,
    pub output: (&'a wgpu::Buffer, usize),
}

/// A layer's token mixer: input projections, a core over the session's state,
/// and an output projection added to the residual stream.
pub(crate) trait Mixer: Send + Sync {
    /// A zeroed state for layer `layer` of a new session whose KV cache has
    /// pages of `pages` rows; `slot`: the session's slot in the model's GDN
    /// state pool (a mixer with pooled state keeps its state there; without
    /// one, e.g. for a snapshot, in buffers of its own).
    fn new_state(
        &self,
        r: &Rec,
        layer: usize,
        pages: &[usize],
        slot: Option<PoolSlot>,
    ) -> Result<Box<dyn LayerState>, ModelError>;

    /// Adds a KV page of `rows` rows to the state (mixers without a KV
    /// cache have nothing to add).
    fn add_page(
        &self,
        _r: &Rec,
        _layer: usize,
        _state: &mut dyn LayerState,
        _rows: usize,
    ) -> Result<(), ModelError> {
        Ok(())
    }

    /// Launches copying the state of the first `rows` positions from `from`
    /// (KV pages of `from.1` rows) to `to` (pages of `to.1` rows): snapshot,
    /// restore and fork.
    fn copy_state(
        &self,
        r: &Rec,
        from: (&dyn LayerState, &[usize]),
        to: (&dyn LayerState, &[usize]),
        rows: usize,
    ) -> Result<Vec<Dispatch>, ModelError>;

    /// The input projections of `t` rows of `input` into the core's input buffers.
    fn record_in(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError>;

    /// The core over `t` tokens at `s.pos`, reading and updating `state`.
    fn record_core(
        &self,
        r: &Rec,
        a: &Activations,
        state: &dyn LayerState,
        s: &SessionView,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError>;

    /// The cores of one decode token of every session of `rows` (row `i` of
    /// `a`, the batch's activations, is session `i`'s) in one launch family,
    /// where the mixer has such a form for these states; `false` (nothing
    /// recorded) otherwise, and each session's core runs on its own.
    fn record_core_rows(
        &self,
        _r: &Rec,
        _a: &Activations,
        _rows: &[BatchRow],
        _d: &mut Vec<Dispatch>,
    ) -> Result<bool, ModelError> {
        Ok(false)
    }

    /// The output projection of `t` rows, added to the residual stream.
    fn record_out(
        &self,
        r: &Rec,
        a: &Activations,
        t: usize,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError>;

    /// The core's input and output buffers in `a`.
    fn core_io<'a>(&self, r: &Rec, a: &'a Activations) -> Result<CoreIo<'a>, ModelError>;

    /// The output projection's weight: a dense matmul weight of the
    /// checkpoint's linear-layer format (the batched decode block size asks
    /// the matmuls about it). `None`: the model assumes nothing.
    fn out_weight(&self) -> Option<&GpuWeight> {
        None
    }
}

/// A layer's feed-forward block, added to the residual stream.
pub(crate) trait Ffn: Send + Sync {
    /// `t` rows of `input` (the normalised residual stream) through the FFN.
    /// `grouped_ok`: an MoE may group a step's token-expert pairs by expert
    /// (prefill); batched decode keeps every row's lone-decode arithmetic.
    fn record(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        grouped_ok: bool,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError>;
}
