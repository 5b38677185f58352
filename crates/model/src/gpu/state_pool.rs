//! The Gated DeltaNet states of every session of a model, pooled: per GDN
//! layer one conv-state and one recurrent-state buffer of `capacity` slots,
//! each session holding one slot (the same in every layer) for its life.
//!
//! Why pooled: a batched decode step runs the GDN step of all its sessions in
//! one launch, and a launch can bind only a few buffers (WebGPU: 8 storage
//! buffers per stage), so the sessions' states must share buffers; each row
//! of the launch finds its session's slot in a small table.
//!
//! Growth: when every slot is taken the buffers are replaced by ones twice as
//! large (bounded by the binding size limit) and the old contents copied over
//! on the queue; the pool's generation then changes, which is part of every
//! launch key's epoch (see `launch_cache`), so no list recorded against the
//! old buffers is replayed. Steps hold [`GdnPool::step_guard`] from recording
//! to submission, so a step recorded against the old buffers is submitted
//! before the copy (queue order carries its results over).

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use qwgpu_checkpoint::{LayerType, TextConfig};
use qwgpu_kernels::gdn::{GdnSlots, MAX_SLOTS};
use qwgpu_kernels::GpuContext;

use super::activations::gdn_dims;
use crate::ModelError;

/// The pool's buffers of one generation.
pub(crate) struct PoolBuffers {
    /// Bumped by every growth.
    pub generation: u64,
    pub capacity: u32,
    /// `(conv, recurrent)` per layer; `None` for layers without GDN state.
    pub layers: Vec<Option<(wgpu::Buffer, wgpu::Buffer)>>,
}

struct Inner {
    buffers: Arc<PoolBuffers>,
    /// Free slots, lowest last (taken first, so live slots stay dense).
    free: Vec<u32>,
}

/// See the module docs.
pub(crate) struct GdnPool {
    slots: GdnSlots,
    inner: Mutex<Inner>,
    /// Read-held by a step from recording to submission, write-held by growth.
    steps: RwLock<()>,
}

/// A session's slot; dropping it gives the slot back.
pub(crate) struct SlotLease {
    pub slot: u32,
    pool: Arc<GdnPool>,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.pool.inner.lock() {
            inner.free.push(self.slot);
            // Lowest slot last: reuse keeps the live slots dense.
            inner.free.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
}

fn poisoned() -> ModelError {
    ModelError::Internal {
        detail: "the GDN state pool's lock is poisoned".into(),
    }
}

impl GdnPool {
    /// An empty pool (no slot, no buffer yet) for the GDN layers of `c`.
    pub fn new(ctx: &GpuContext, c: &TextConfig) -> Self {
        let dims = gdn_dims(c);
        let layers = c.layer_types.iter().map(|_| None).collect();
        Self {
            slots: GdnSlots::new(ctx, &dims),
            inner: Mutex::new(Inner {
                buffers: Arc::new(PoolBuffers {
                    generation: 0,
                    capacity: 0,
                    layers,
                }),
                free: Vec::new(),
            }),
            steps: RwLock::new(()),
        }
    }

    /// Slot sizes in bytes.
    pub fn slots(&self) -> GdnSlots {
        self.slots
    }

    /// The current buffers.
    pub fn buffers(&self) -> Result<Arc<PoolBuffers>, ModelError> {
        Ok(self.inner.lock().map_err(|_| poisoned())?.buffers.clone())
    }

    /// The current generation (0 before any slot was taken).
    pub fn generation(&self) -> Result<u64, ModelError> {
        Ok(self.buffers()?.generation)
    }

    /// Held by a step from its recording to its submission (see the module docs).
    pub fn step_guard(&self) -> Result<RwLockReadGuard<'_, ()>, ModelError> {
        self.steps.read().map_err(|_| poisoned())
    }

    /// A zeroed slot, growing the pool if every slot is taken.
    pub fn acquire(
        self: &Arc<Self>,
        ctx: &GpuContext,
        c: &TextConfig,
    ) -> Result<SlotLease, ModelError> {
        // Lock order: `steps`, then `inner` (a step holds the first while it
        // reads the buffers).
        let mut _growing = None;
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if inner.free.is_empty() {
            drop(inner);
            _growing = Some(self.steps.write().map_err(|_| poisoned())?);
            inner = self.inner.lock().map_err(|_| poisoned())?;
            if inner.free.is_empty() {
                self.grow(ctx, c, &mut inner)?;
            }
        }
        let slot = inner.free.pop().ok_or_else(|| ModelError::Internal {
            detail: "the GDN state pool grew without a free slot".into(),
        })?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("zero a GDN state slot"),
            });
        for (conv, rec) in inner.buffers.layers.iter().flatten() {
            let (s, c) = (slot as u64, &self.slots);
            enc.clear_buffer(conv, s * c.conv, Some(c.conv));
            enc.clear_buffer(rec, s * c.state, Some(c.state));
        }
        ctx.queue.submit([enc.finish()]);
        Ok(SlotLease {
            slot,
            pool: self.clone(),
        })
    }

    /// Doubles the capacity (at least 1 slot, at most what one binding holds),
    /// copying the old slots over.
    fn grow(&self, ctx: &GpuContext, c: &TextConfig, inner: &mut Inner) -> Result<(), ModelError> {
        let old = inner.buffers.clone();
        let per_slot = self.slots.conv.max(self.slots.state);
        let limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size)
            / per_slot;
        let most = limit.min(MAX_SLOTS as u64) as u32;
        let capacity = (old.capacity * 2).clamp(1, most.max(1));
        if capacity <= old.capacity {
            return Err(ModelError::InvalidArgument {
                detail: format!(
                    "no room for another session: the GDN states of {capacity} sessions \
                     fill the largest buffer the device binds",
                    capacity = old.capacity
                ),
            });
        }
        tracing::debug!(
            from = old.capacity,
            to = capacity,
            "growing the GDN state pool"
        );
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("grow the GDN state pool"),
            });
        let mut layers = Vec::with_capacity(old.layers.len());
        for (i, (kind, prev)) in c.layer_types.iter().zip(&old.layers).enumerate() {
            if *kind != LayerType::LinearAttention {
                layers.push(None);
                continue;
            }
            let make = |what: &str, slot: u64| {
                ctx.storage(
                    &format!("layer {i} pooled {what} states"),
                    slot * capacity as u64,
                )
            };
            let conv = make("conv", self.slots.conv)?;
            let rec = make("recurrent", self.slots.state)?;
            if let Some((pc, pr)) = prev {
                let n = old.capacity as u64;
                enc.copy_buffer_to_buffer(pc, 0, &conv, 0, n * self.slots.conv);
                enc.copy_buffer_to_buffer(pr, 0, &rec, 0, n * self.slots.state);
            }
            layers.push(Some((conv, rec)));
        }
        ctx.queue.submit([enc.finish()]);
        inner.buffers = Arc::new(PoolBuffers {
            generation: old.generation + 1,
            capacity,
            layers,
        });
        inner.free.extend((old.capacity..capacity).rev());
        inner.free.sort_unstable_by(|a, b| b.cmp(a));
        Ok(())
    }
}
