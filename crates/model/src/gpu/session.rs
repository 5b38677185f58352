//! One sequence on the GPU: its layers' states (made by the layers), the KV
//! page sizes they share, the activations its steps run in, and its cache of
//! recorded decode steps.

use qwgpu_kernels::attention::AttnScratch;
use qwgpu_kernels::Dispatch;

use super::activations::Activations;
use super::launch_cache::{LaunchCache, LaunchKey};
use super::layers::kind::{pages_at, LayerState, SessionView};
use super::state_pool::SlotLease;
use crate::sampling::TokenLog;

/// A sequence on the GPU: state, activations, and the decode launches recorded once.
pub struct GpuSession {
    pub(crate) pos: usize,
    /// Rows of each KV page (the same for every attention layer).
    pub(crate) pages: Vec<usize>,
    /// One state per layer, made by the layer's mixer.
    pub(crate) layers: Vec<Box<dyn LayerState>>,
    /// The session's slot in the model's GDN state pool (given back on drop).
    pub(crate) _gdn_slot: Option<SlotLease>,
    pub(crate) act: Activations,
    /// Attention scratch sized for the KV capacity (models with attention).
    pub(crate) attn: Option<AttnScratch>,
    /// Recorded lone decode steps (see [`super::launch_cache`]).
    pub(crate) launches: LaunchCache<Vec<Dispatch>>,
    /// The next decode step's command buffer, encoded while the GPU ran the
    /// last one, with the key of the step it was encoded for.
    pub(crate) next: Option<(LaunchKey, wgpu::CommandBuffer)>,
    pub(crate) seed: u64,
    pub(crate) counter: u32,
    /// The tokens the penalties count (consumed; generated since the seed).
    pub(crate) log: TokenLog,
    /// Buffers and launches of steps with controls (made on first use).
    pub(crate) ctl: Option<super::controlled::SessionCtl>,
    /// Unique per session (never reused), and a count of changes to the
    /// buffers its launches bind (pages added): part of every launch key.
    pub(crate) id: u64,
    pub(crate) epoch: u64,
    /// The model that made the session (its id).
    pub(crate) model: u64,
}

impl GpuSession {
    /// Tokens processed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Sets the seed of the session's sampler and restarts its counter; a new
    /// generation starts (the penalties' generated-token counts restart).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.counter = 0;
        self.log.generated.clear();
        self.log.generation += 1;
    }

    /// KV rows of all pages.
    pub(crate) fn capacity(&self) -> usize {
        self.pages.iter().sum()
    }

    /// Pages a step at `pos` binds (up to the one holding `pos`), and the first
    /// position after the last of them.
    pub(crate) fn pages_at(&self, pos: usize) -> (usize, usize) {
        pages_at(&self.pages, pos)
    }

    /// What the layers read of the session besides their own state.
    pub(crate) fn view(&self) -> SessionView<'_> {
        SessionView {
            pos: self.pos,
            pages: &self.pages,
            attn: self.attn.as_ref(),
        }
    }
}
