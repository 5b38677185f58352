//! A ring of host-visible staging buffers that weights are copied into on
//! several threads while the GPU copies the slots filled before.
//!
//! `queue.write_buffer` copies on the calling thread into a staging
//! allocation of its own that lives until its submission finishes, so a load
//! through it is one thread's copy at a time, with the allocator creating and
//! freeing host-visible memory as windows come and go. Here a few slots are
//! made once and reused: a slot is filled (checkpoint bytes read straight into
//! it with positioned reads, rows padded to the GPU stride), unmapped, copied
//! to the weights' buffers by one submission, and mapped again for reuse when
//! that submission is done. The host waits only when every slot is in flight.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use qwgpu_checkpoint::{Checkpoint, TensorView};
use qwgpu_kernels::{GpuContext, WAIT_TIMEOUT};

use crate::stopwatch::Stopwatch;
use crate::ModelError;

/// Bytes of one slot: large enough that a submission carries several
/// milliseconds of copying, small enough that the ring stays a few hundred MB.
const SLOT_BYTES: u64 = 64 << 20;
/// Slots in the ring (at most `SLOTS * SLOT_BYTES` of staging in flight).
const SLOTS: usize = 4;
/// Bytes one thread copies per job: small enough to balance the threads over
/// a weight of a few MB, large enough that a job is mostly copying.
const JOB_BYTES: usize = 2 << 20;
/// Fills smaller than this run on the calling thread (starting threads would
/// cost more than the copy).
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// The ring's sizes (the constants above; tests make them small so that a
/// tiny model crosses many slots, wraps the ring and splits into many jobs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingSizes {
    pub slot_bytes: u64,
    pub slots: usize,
    pub job_bytes: usize,
    pub parallel_min_bytes: usize,
}

impl Default for RingSizes {
    fn default() -> Self {
        Self {
            slot_bytes: SLOT_BYTES,
            slots: SLOTS,
            job_bytes: JOB_BYTES,
            parallel_min_bytes: PARALLEL_MIN_BYTES,
        }
    }
}

/// What a load's staging did: the bytes through the ring and where the
/// loading thread's seconds went.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct StagingStats {
    pub bytes: u64,
    /// Filling slots (with the fill threads).
    pub fill_s: f64,
    /// Blocked on the GPU's copies out of a slot it needed (and the last copies).
    pub wait_s: f64,
    /// Submitting filled slots and mapping slots again, waits left out.
    pub slots_s: f64,
    /// Creating the weights' buffers.
    pub buffers_s: f64,
    /// Finding each weight's source tensors and asking the kernel to read
    /// them ahead.
    pub sources_s: f64,
}

/// Where a weight's rows come from.
pub(crate) enum Source<'a> {
    /// A checkpoint tensor, read with positioned reads of its file (a file
    /// truncated since it was opened is a typed error, not a `SIGBUS`).
    Tensor {
        ckpt: &'a Checkpoint,
        t: TensorView<'a>,
    },
    /// Bytes already in host memory (a packed weight).
    Host(&'a [u8]),
}

impl Source<'_> {
    pub fn len(&self) -> usize {
        match self {
            Source::Tensor { t, .. } => t.bytes.len(),
            Source::Host(b) => b.len(),
        }
    }

    /// Copies `dst.len()` bytes from byte `at` into `dst`.
    fn read(&self, at: usize, dst: &mut [u8]) -> Result<(), ModelError> {
        match self {
            Source::Tensor { ckpt, t } => Ok(ckpt.read_into(t, at, dst)?),
            Source::Host(b) => {
                dst.copy_from_slice(&b[at..at + dst.len()]);
                Ok(())
            }
        }
    }
}

/// Rows `[row, row + rows)` of `sources[src]` (`row_src` bytes each) into the
/// current slot at `slot_at`, each row `row_bytes` apart with zero padding.
#[derive(Clone, Copy)]
struct Fill {
    src: usize,
    row: usize,
    rows: usize,
    slot_at: usize,
}

/// One copy from a slot into a weight's buffer.
struct CopyOut {
    slot_at: u64,
    dst: wgpu::Buffer,
    dst_at: u64,
    bytes: u64,
}

/// How a slot's mapping stands (set by `map_async`'s callback).
#[derive(Clone, PartialEq)]
enum MapState {
    Pending,
    Mapped,
    Failed(String),
}

struct Slot {
    buffer: wgpu::Buffer,
    /// The mapping while the host fills the slot.
    view: Option<wgpu::BufferViewMut>,
    state: Arc<Mutex<MapState>>,
    /// The submission copying out of it, while in flight.
    submitted: Option<wgpu::SubmissionIndex>,
}

/// The mapped memory of the slot being filled, shared by the fill threads.
#[derive(Clone, Copy)]
struct SlotMemory {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the pointer is only dereferenced through `SlotMemory::range`, whose
// callers write disjoint ranges (each job its own) while the mapping is alive.
unsafe impl Send for SlotMemory {}
unsafe impl Sync for SlotMemory {}

impl SlotMemory {
    /// # Safety
    /// `[at, at + len)` must be within the mapping, which must outlive the
    /// returned slice, and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "staging range out of bounds");
        // SAFETY: in bounds (checked above); exclusivity is the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(at), len) }
    }
}

/// The ring: slots made on first use, filled in turn.
pub(crate) struct StagingRing {
    slots: Vec<Slot>,
    sizes: RingSizes,
    slot_bytes: u64,
    /// The slot being filled and the bytes of it used.
    current: Option<usize>,
    used: u64,
    fills: Vec<Fill>,
    copies: Vec<CopyOut>,
    /// The slot opened last (the next one in ring order was submitted longest ago).
    last: Option<usize>,
    threads: usize,
    /// Bytes copied into slots so far.
    pub bytes: u64,
    /// Seconds the loading thread spent filling slots (with the fill
    /// threads) and waiting for the GPU to copy out of a slot it needed.
    pub fill_s: f64,
    pub wait_s: f64,
    /// Seconds in [`StagingRing::submit`] and in mapping the next slot
    /// (waits for the GPU left out).
    pub slots_s: f64,
}

/// Threads for filling the staging: [`qwgpu_loader::load_threads`]
/// (`QWGPU_LOAD_THREADS`, else the cores up to 8), which also repack 4-bit
/// weights. `QWGPU_LOAD_THREADS=1` fills on the loading thread alone; `0`
/// bypasses the ring (`queue.write_buffer` from the map, the upload path
/// before it), for comparisons. A page (wasm32) has one thread and cannot
/// wait for a mapped staging slot: 0.
pub(crate) fn load_threads() -> usize {
    qwgpu_loader::load_threads()
}

impl StagingRing {
    pub fn new(ctx: &GpuContext, threads: usize, sizes: RingSizes) -> Self {
        let slot_bytes = sizes.slot_bytes.min(ctx.limits.max_buffer_size) / 16 * 16;
        Self {
            slots: Vec::new(),
            sizes,
            slot_bytes,
            current: None,
            used: 0,
            fills: Vec::new(),
            copies: Vec::new(),
            last: None,
            threads,
            bytes: 0,
            fill_s: 0.0,
            wait_s: 0.0,
            slots_s: 0.0,
        }
    }

    /// Whether weights with rows of `row_bytes` go through the ring (else
    /// through `queue.write_buffer`): rows that fit a slot, unless the ring
    /// was made with no threads.
    pub fn takes(&self, row_bytes: usize) -> bool {
        self.threads > 0 && row_bytes as u64 <= self.slot_bytes
    }

    /// Stages rows `[row, row + rows)` of `sources[src]` for `dst` at byte
    /// `dst_at` (rows `row_bytes` apart there, `row_src` bytes in the
    /// source), filling and submitting slots as they fill up. The rows of the
    /// sources must be read by [`StagingRing::fill`] before they go away.
    #[allow(clippy::too_many_arguments)]
    pub fn stage(
        &mut self,
        ctx: &GpuContext,
        sources: &[Source<'_>],
        layout: (usize, usize),
        src: usize,
        mut row: usize,
        mut rows: usize,
        dst: &wgpu::Buffer,
        mut dst_at: u64,
    ) -> Result<(), ModelError> {
        let (row_src, row_bytes) = layout;
        while rows > 0 {
            if self.current.is_none() || self.used + row_bytes as u64 > self.slot_bytes {
                self.fill(sources, layout)?;
                self.submit(ctx)?;
                self.open_next(ctx)?;
            }
            let room = ((self.slot_bytes - self.used) / row_bytes as u64) as usize;
            let n = rows.min(room);
            let bytes = (n * row_bytes) as u64;
            self.fills.push(Fill {
                src,
                row,
                rows: n,
                slot_at: self.used as usize,
            });
            match self.copies.last_mut() {
                Some(c)
                    if c.dst == *dst
                        && c.dst_at + c.bytes == dst_at
                        && c.slot_at + c.bytes == self.used =>
                {
                    c.bytes += bytes;
                }
                _ => self.copies.push(CopyOut {
                    slot_at: self.used,
                    dst: dst.clone(),
                    dst_at,
                    bytes,
                }),
            }
            self.used += bytes;
            self.bytes += (n * row_src) as u64;
            row += n;
            rows -= n;
            dst_at += bytes;
        }
        Ok(())
    }

    /// Copies the staged rows into the current slot, on several threads when
    /// there is enough to copy.
    pub fn fill(
        &mut self,
        sources: &[Source<'_>],
        layout: (usize, usize),
    ) -> Result<(), ModelError> {
        if self.fills.is_empty() {
            return Ok(());
        }
        let started = Stopwatch::start();
        let filled = self.fill_jobs(sources, layout);
        self.fill_s += started.seconds();
        filled
    }

    fn fill_jobs(
        &mut self,
        sources: &[Source<'_>],
        layout: (usize, usize),
    ) -> Result<(), ModelError> {
        let (row_src, row_bytes) = layout;
        let mem = self.memory()?;
        // Jobs of about JOB_BYTES each.
        let per_job = (self.sizes.job_bytes / row_bytes.max(1)).max(1);
        let mut jobs = Vec::new();
        for f in self.fills.drain(..) {
            let mut r = 0;
            while r < f.rows {
                let n = per_job.min(f.rows - r);
                jobs.push(Fill {
                    src: f.src,
                    row: f.row + r,
                    rows: n,
                    slot_at: f.slot_at + r * row_bytes,
                });
                r += n;
            }
        }
        let total: usize = jobs.iter().map(|j| j.rows * row_bytes).sum();
        let run = |job: &Fill| -> Result<(), ModelError> {
            // SAFETY: every job covers its own rows of the slot (the ranges
            // `stage` handed out never overlap), and the mapping lives until
            // `submit`, after this fill has returned.
            let dst = unsafe { mem.range(job.slot_at, job.rows * row_bytes) };
            copy_rows(&sources[job.src], job, row_src, row_bytes, dst)
        };
        if total < self.sizes.parallel_min_bytes {
            return jobs.iter().try_for_each(run);
        }
        // This thread is one of the workers (the loader's, which repack
        // 4-bit weights on the same threads).
        qwgpu_loader::try_for_each(self.threads, jobs, |job| run(&job))
    }

    /// Submits the current slot's copies (its rows must have been filled).
    pub fn submit(&mut self, ctx: &GpuContext) -> Result<(), ModelError> {
        let started = Stopwatch::start();
        let submitted = self.submit_slot(ctx);
        self.slots_s += started.seconds();
        submitted
    }

    fn submit_slot(&mut self, ctx: &GpuContext) -> Result<(), ModelError> {
        let Some(i) = self.current.take() else {
            return Ok(());
        };
        let slot = &mut self.slots[i];
        slot.view = None;
        slot.buffer.unmap();
        if !self.copies.is_empty() {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("weight upload"),
                });
            for c in self.copies.drain(..) {
                enc.copy_buffer_to_buffer(&slot.buffer, c.slot_at, &c.dst, c.dst_at, c.bytes);
            }
            slot.submitted = Some(ctx.queue.submit([enc.finish()]));
        }
        self.used = 0;
        *lock(&slot.state)? = MapState::Pending;
        let state = slot.state.clone();
        slot.buffer
            .slice(..)
            .map_async(wgpu::MapMode::Write, move |r| {
                if let Ok(mut s) = state.lock() {
                    *s = match r {
                        Ok(()) => MapState::Mapped,
                        Err(e) => MapState::Failed(e.to_string()),
                    };
                }
            });
        ctx.check("weight upload")?;
        Ok(())
    }

    /// Makes the next slot current: a new one while the ring is not full,
    /// else the oldest, once the GPU has copied out of it.
    fn open_next(&mut self, ctx: &GpuContext) -> Result<(), ModelError> {
        let started = Stopwatch::start();
        let waited = self.wait_s;
        let opened = self.open_slot(ctx);
        // The map waits are counted in wait_s alone.
        self.slots_s += (started.seconds() - (self.wait_s - waited)).max(0.0);
        opened
    }

    fn open_slot(&mut self, ctx: &GpuContext) -> Result<(), ModelError> {
        let next = match self.slots.len() {
            n if n < self.sizes.slots.max(1) => {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("weight staging"),
                    size: self.slot_bytes,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                });
                self.slots.push(Slot {
                    buffer,
                    view: None,
                    state: Arc::new(Mutex::new(MapState::Mapped)),
                    submitted: None,
                });
                n
            }
            n => self.last.map_or(0, |i| (i + 1) % n),
        };
        let slot = &mut self.slots[next];
        let mut wait_s = 0.0;
        loop {
            let state = lock(&slot.state)?.clone();
            match state {
                MapState::Mapped => break,
                MapState::Failed(reason) => {
                    return Err(ModelError::Internal {
                        detail: format!("mapping a weight staging buffer failed: {reason}"),
                    })
                }
                MapState::Pending => {
                    let started = Stopwatch::start();
                    let waited = ctx
                        .device
                        .poll(wgpu::PollType::Wait {
                            submission_index: slot.submitted.clone(),
                            timeout: Some(WAIT_TIMEOUT),
                        })
                        .map_err(|e| qwgpu_kernels::KernelError::DeviceLost {
                            reason: e.to_string(),
                            during: "weight upload".into(),
                        });
                    wait_s += started.seconds();
                    waited?;
                    // Done once the submission is: the callback has run.
                    if *lock(&slot.state)? == MapState::Pending {
                        ctx.check("weight upload")?;
                        return Err(ModelError::Internal {
                            detail:
                                "a weight staging buffer was not mapped after its copies finished"
                                    .into(),
                        });
                    }
                }
            }
        }
        slot.submitted = None;
        let view =
            slot.buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| ModelError::Internal {
                    detail: format!("a mapped weight staging buffer has no mapped range: {e}"),
                })?;
        slot.view = Some(view);
        self.wait_s += wait_s;
        self.current = Some(next);
        self.last = Some(next);
        self.used = 0;
        Ok(())
    }

    fn memory(&mut self) -> Result<SlotMemory, ModelError> {
        let view = self
            .current
            .and_then(|i| self.slots[i].view.as_mut())
            .ok_or_else(|| ModelError::Internal {
                detail: "no weight staging slot is mapped".into(),
            })?;
        let mut w = view.slice(..);
        let len = w.len();
        Ok(SlotMemory {
            base: w.as_raw_element_ptr(),
            len,
        })
    }

    /// Submits the current slot: the ring's last submission (everything
    /// staged must have been filled).
    pub fn finish(&mut self, ctx: &GpuContext) -> Result<(), ModelError> {
        if !self.fills.is_empty() {
            return Err(ModelError::Internal {
                detail: "weight staging finished with rows not yet copied".into(),
            });
        }
        self.submit(ctx)
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, ModelError> {
    m.lock().map_err(|_| ModelError::Internal {
        detail: "weight staging state poisoned".into(),
    })
}

/// Copies `job`'s rows from `src` into `dst` (`job.rows * row_bytes` bytes),
/// padding each row with zeros from `row_src` to `row_bytes`.
fn copy_rows(
    src: &Source<'_>,
    job: &Fill,
    row_src: usize,
    row_bytes: usize,
    dst: &mut [u8],
) -> Result<(), ModelError> {
    let at = job.row * row_src;
    if row_src == row_bytes {
        return src.read(at, dst);
    }
    let rows = match src {
        Source::Host(b) => std::borrow::Cow::Borrowed(&b[at..at + job.rows * row_src]),
        Source::Tensor { .. } => {
            let mut tmp = vec![0u8; job.rows * row_src];
            src.read(at, &mut tmp)?;
            std::borrow::Cow::Owned(tmp)
        }
    };
    for (d, s) in dst
        .chunks_exact_mut(row_bytes)
        .zip(rows.chunks_exact(row_src))
    {
        d[..row_src].copy_from_slice(s);
        d[row_src..].fill(0);
    }
    Ok(())
}
