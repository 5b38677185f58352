//! The Qwen3.5 forward pass on the GPU: weights in their stored formats
//! (`weights`), per-sequence state and activations ([`GpuSession`]), and the
//! launch list of one step (`graph`: a loop over the layers, each of whose
//! kinds lives in one file under `layers`). A step is one command buffer
//! with one compute pass; decode launches are recorded once and replayed from
//! the launch cache (`launch_cache`: one key, no invalidation by hand), with
//! only the small `Step` uniform, the RoPE row and the token id written
//! before each submit. A sampled step's successor is encoded while the GPU
//! runs it (its token comes from the ids buffer the sampler wrote), so the
//! CPU's recording of ~200 launches stays off the path between two steps.

mod activations;
mod controlled;
mod graph;
mod launch_cache;
mod layers;
mod part_loader;
mod record;
mod session;
mod state_pool;
mod steps;
#[cfg(test)]
mod tests;
mod upload;
mod weights;

use std::sync::{Arc, Mutex};

use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::attention::rope_table;
use qwgpu_kernels::matmul::decode_block_tokens;
use qwgpu_kernels::sample::{sample, sample_rows, RowSampler, SampleRow, SamplingParams};
use qwgpu_kernels::{Dispatch, GpuContext, Step};
use qwgpu_loader::PackedModel;

use activations::Activations;
use launch_cache::{LaunchCache, LaunchKey, RowKey, StepKind};
use layers::attention;
use layers::kind::{LayerState, PoolSlot};
pub use part_loader::PartLoader;
use record::{Head, Rec};
pub use session::GpuSession;
use state_pool::GdnPool;
pub use upload::FetchedTensors;

use crate::ModelError;

/// Tokens per prefill step (longer prompts run in several steps). On an H100
/// (0.8B geometry) 512-token steps prefill 2.3× faster than 128-token ones;
/// the activations of a step cost about 0.5 MiB per token at 9B geometry,
/// and every session holds its own, so a model serving many sessions keeps
/// its steps this short.
pub const DEFAULT_MAX_CHUNK: usize = 512;
/// Tokens per prefill step where one session runs at a time (`qwgpu
/// generate`, `chat`, `score`, `bench`): longer steps give the GEMMs taller
/// tiles and convert each weight for the tensor cores once per step (the 9B's
/// prefill of 4096 tokens on an H100: `benches/EXPERIMENTS.md`, seventh
/// session), at ~1 GiB of activations at 9B geometry. A device whose binding
/// limits cannot hold a step this long gets the longest that fits.
pub const ONE_SESSION_MAX_CHUNK: usize = 2048;
/// Most tokens of one step, whatever is asked.
const MAX_STEP_TOKENS: usize = 4096;
/// Upper bound on the logits buffer (rows × vocab × 4 bytes) when every row's
/// logits are wanted; bigger requests run in smaller steps.
const LOGITS_BUDGET: usize = 64 << 20;

/// The model resident on one GPU.
pub struct GpuModel {
    ctx: Arc<GpuContext>,
    config: TextConfig,
    w: weights::WeightsGpu,
    inv_freq: Vec<f32>,
    max_t: usize,
    logit_rows: usize,
    /// Most sessions of one batched decode step on this device (up to
    /// [`MAX_DECODE_BATCH`]): [`decode_block_tokens`] of the layers' output
    /// projections, so every matmul of a step reads its weight once.
    decode_block: usize,
    /// Activations of batched decode steps, made on first use.
    batch: Mutex<Option<BatchScratch>>,
    /// The sessions' GDN states (models with GDN layers).
    gdn_pool: Option<Arc<GdnPool>>,
    /// Unique per model: sessions and snapshots carry it.
    id: u64,
}

/// Most sessions in one batched decode step on any device: the skinny
/// tensor-core matmul's token limit (64). Where the matmuls do not take that
/// many tokens at once (adapters without cooperative matrices, weights the
/// skinny kernel leaves to the GEMV) a step takes 16 sessions (the GEMV's
/// limit), so those rows keep the arithmetic of a lone decode step. Bigger
/// batches run as several steps.
pub const MAX_DECODE_BATCH: usize = 64;

/// Sessions whose mixer cores run in one launch family (the batched GDN
/// step's and attention merge's row limits); a step of more sessions runs
/// its cores in blocks of this many.
pub(crate) const CORE_ROWS: usize = 16;

/// Buffers of a batched decode step: one activation row per session, the
/// sampled ids and their host-readable copy; the recorded batches.
struct BatchScratch {
    act: Activations,
    /// Activations of [`CORE_ROWS`] rows for the mixer cores of rows past
    /// the first [`CORE_ROWS`] (block `k + 1` in `cores[k]`).
    cores: Vec<Activations>,
    sampled: wgpu::Buffer,
    readback: wgpu::Buffer,
    launches: LaunchCache<BatchLaunches>,
    /// Buffers and launches of batched steps with controls, made on first use.
    ctl: Option<controlled::BatchCtl>,
}

/// A recorded batched step: the model's launches, then the sampler of all
/// rows (whose seeds and counters are written before each run); no sampler
/// for a step with controls (see `controlled`).
struct BatchLaunches {
    body: Vec<Dispatch>,
    sampler: Option<RowSampler>,
}

/// Ids of sessions and models (never reused).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// GPU time of one kernel family (launches sharing a label) in a profiled step.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyTime {
    pub label: String,
    pub nanos: f64,
    pub launches: usize,
}

/// A session's state copied aside: restoring it (or forking from it) and
/// continuing gives bit-identical results to continuing the original.
pub struct GpuSnapshot {
    pos: usize,
    counter: u32,
    seed: u64,
    log: crate::sampling::TokenLog,
    /// Rows of each KV page of `layers`.
    pages: Vec<usize>,
    layers: Vec<Box<dyn LayerState>>,
    /// The model whose layers made `layers`.
    model: u64,
}

impl GpuSnapshot {
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// The reference's RoPE frequencies (the host computes each step's cos/sin rows from them).
fn inv_freq(c: &TextConfig) -> Vec<f32> {
    qwgpu_ops::rope::Rope::new(c.rotary_dim(), c.rope.theta)
        .inv_freq()
        .to_vec()
}

/// `requested` tokens per step (1 to [`MAX_STEP_TOKENS`]), fewer where the
/// widest of a step's activation buffers would pass the device's binding
/// limits (a WebGPU page's 128 MiB, say).
fn fit_step_tokens(ctx: &GpuContext, c: &TextConfig, requested: usize) -> usize {
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let row = activations::widest_row_bytes(c).max(1) as u64;
    // Buffers are padded to 16 bytes.
    let fits = (limit.saturating_sub(16) / row).max(1);
    let wanted = requested.clamp(1, MAX_STEP_TOKENS);
    let t = wanted.min(usize::try_from(fits).unwrap_or(usize::MAX));
    if t < wanted {
        tracing::info!(
            requested = wanted,
            tokens = t,
            limit,
            "prefill steps shortened to fit the device's buffer limits"
        );
    }
    t
}

impl GpuModel {
    /// Checks every shape, then uploads the weights in their stored formats.
    /// `progress` is told the bytes of each weight as it lands.
    pub fn from_packed(
        ctx: Arc<GpuContext>,
        m: &PackedModel,
        max_chunk: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self, ModelError> {
        weights::check_shapes(m)?;
        let c = m.config.clone();
        let needed = weights::gpu_bytes(m);
        tracing::info!(bytes = needed, adapter = %ctx.describe(), "uploading weights");
        let w = weights::upload(&ctx, m, progress)?;
        Ok(Self::assemble(ctx, c, w, max_chunk))
    }

    /// Streams the checkpoint to the GPU part by part (see
    /// [`qwgpu_loader::stream_model_borrowing`]): each weight's source tensors
    /// are copied from the checkpoint's map into upload staging and nowhere
    /// else on the host (a weight that widens mixed source dtypes is packed
    /// first).
    pub fn load_streaming(
        ctx: Arc<GpuContext>,
        ckpt: &qwgpu_checkpoint::Checkpoint,
        max_chunk: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self, ModelError> {
        let c = ckpt.config().text.clone();
        tracing::info!(adapter = %ctx.describe(), "streaming weights to the GPU");
        let w = weights::upload_streaming(&ctx, ckpt, progress)?;
        Ok(Self::assemble(ctx, c, w, max_chunk))
    }

    fn assemble(
        ctx: Arc<GpuContext>,
        c: TextConfig,
        w: weights::WeightsGpu,
        max_chunk: usize,
    ) -> Self {
        let max_t = fit_step_tokens(&ctx, &c, max_chunk);
        let logit_rows = (LOGITS_BUDGET / (c.vocab_size * 4)).clamp(1, max_t);
        let gdn_pool = c
            .layer_types
            .contains(&qwgpu_checkpoint::LayerType::LinearAttention)
            .then(|| Arc::new(GdnPool::new(&ctx, &c)));
        let decode_block = w
            .layers
            .iter()
            .find_map(|l| l.mixer.out_weight())
            .map_or(CORE_ROWS, |o| decode_block_tokens(&ctx, o) as usize)
            .clamp(1, MAX_DECODE_BATCH);
        Self {
            decode_block,
            gdn_pool,
            inv_freq: inv_freq(&c),
            ctx,
            config: c,
            w,
            max_t,
            logit_rows,
            batch: Mutex::new(None),
            id: next_id(),
        }
    }

    fn rec(&self) -> Rec<'_> {
        Rec {
            ctx: &self.ctx,
            c: &self.config,
            max_t: self.max_t,
        }
    }

    /// Zeroed layer states with KV pages of `pages` rows; GDN states in
    /// `slot` of the pool (sessions) or in buffers of their own (snapshots).
    fn new_states(
        &self,
        pages: &[usize],
        slot: Option<PoolSlot>,
    ) -> Result<Vec<Box<dyn LayerState>>, ModelError> {
        let r = self.rec();
        self.w
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| l.mixer.new_state(&r, i, pages, slot))
            .collect()
    }

    /// The epoch of `s`'s buffers in launch keys: its own (KV pages) plus the
    /// GDN state pool's generation (both only grow, so any change raises it).
    fn epoch(&self, s: &GpuSession) -> Result<u64, ModelError> {
        let pool = match &self.gdn_pool {
            Some(p) => p.generation()?,
            None => 0,
        };
        Ok(s.epoch + pool)
    }

    /// Held from recording a step to submitting it (see `state_pool`).
    fn step_guard(&self) -> Result<Option<std::sync::RwLockReadGuard<'_, ()>>, ModelError> {
        self.gdn_pool.as_ref().map(|p| p.step_guard()).transpose()
    }

    /// Launches copying the first `rows` positions of the layer states `from`
    /// (KV pages of `from.1` rows) into `to`.
    fn copy_states(
        &self,
        from: (&[Box<dyn LayerState>], &[usize]),
        to: (&[Box<dyn LayerState>], &[usize]),
        rows: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let r = self.rec();
        let mut d = Vec::new();
        for ((layer, a), b) in self.w.layers.iter().zip(from.0).zip(to.0) {
            d.extend(
                layer
                    .mixer
                    .copy_state(&r, (a.as_ref(), from.1), (b.as_ref(), to.1), rows)?,
            );
        }
        Ok(d)
    }

    /// Refuses a session or snapshot another model made (its buffers have
    /// other shapes, or live on another device).
    fn check_owner(&self, model: u64, what: &str) -> Result<(), ModelError> {
        if model != self.id {
            return Err(ModelError::InvalidArgument {
                detail: format!("the {what} was made by another model"),
            });
        }
        Ok(())
    }

    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// Seconds the weights' upload spent filling staging slots on the host
    /// and waiting for the GPU's copies out of them.
    pub fn staging_seconds(&self) -> (f64, f64) {
        (self.w.staging.fill_s, self.w.staging.wait_s)
    }

    /// Where the weights' upload spent its time (the load split).
    pub(crate) fn staging_stats(&self) -> upload::StagingStats {
        self.w.staging
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// An empty session (position 0, zero GDN states, no KV page yet: the first
    /// step adds one sized for it).
    pub fn new_session(&self) -> Result<GpuSession, ModelError> {
        let lease = match &self.gdn_pool {
            Some(p) => Some(p.acquire(&self.ctx, &self.config)?),
            None => None,
        };
        let slot = self
            .gdn_pool
            .as_ref()
            .zip(lease.as_ref())
            .map(|(pool, l)| PoolSlot { pool, slot: l.slot });
        let layers = self.new_states(&[], slot)?;
        let act = Activations::new(&self.ctx, &self.config, self.max_t, self.logit_rows)?;
        self.ctx.check("session creation")?;
        Ok(GpuSession {
            pos: 0,
            pages: Vec::new(),
            attn: None,
            layers,
            _gdn_slot: lease,
            act,
            launches: LaunchCache::default(),
            next: None,
            seed: 0,
            counter: 0,
            log: Default::default(),
            ctl: None,
            id: next_id(),
            epoch: 0,
            model: self.id,
        })
    }

    /// Makes room for `needed` KV rows by adding pages (nothing is copied or
    /// reallocated); the attention scratch follows the capacity, and the new
    /// buffer epoch keys new launch lists.
    fn ensure_capacity(&self, s: &mut GpuSession, needed: usize) -> Result<(), ModelError> {
        self.check_owner(s.model, "session")?;
        let mut cap = s.capacity();
        if needed <= cap && cap > 0 {
            return Ok(());
        }
        let r = self.rec();
        while cap < needed {
            let rows = attention::next_page_rows(&self.ctx, &self.config, cap, needed);
            tracing::debug!(from = cap, page = rows, "adding a KV page");
            for (i, (layer, state)) in self.w.layers.iter().zip(&mut s.layers).enumerate() {
                layer.mixer.add_page(&r, i, state.as_mut(), rows)?;
            }
            s.pages.push(rows);
            cap += rows;
        }
        s.epoch += 1;
        s.attn = attention::scratch(&r, cap.max(1))?;
        Ok(())
    }

    /// The key of a lone decode step of `s` binding `n_pages` KV pages.
    fn decode_key(
        &self,
        s: &GpuSession,
        n_pages: usize,
        sampling: Option<&SamplingParams>,
    ) -> Result<LaunchKey, ModelError> {
        Ok(LaunchKey {
            kind: StepKind::Decode,
            rows: vec![RowKey::new(s.id, self.epoch(s)?, n_pages, sampling)],
        })
    }

    /// The sampler's launches: `vocab` logits of row `row` into slot `slot` of `ids`.
    fn sampler(
        &self,
        logits: &wgpu::Buffer,
        row: usize,
        p: &SamplingParams,
        step: &wgpu::Buffer,
        ids: &wgpu::Buffer,
        slot: usize,
    ) -> Result<Vec<Dispatch>, ModelError> {
        let vocab = self.config.vocab_size;
        Ok(sample(
            &self.ctx,
            logits,
            (row * vocab) as u32,
            vocab as u32,
            p,
            step,
            ids,
            slot as u32,
        )?)
    }

    /// The command buffer of a lone decode step (T = 1, logits of the one
    /// row; with `key`'s sampling parameters, the sampler, whose token lands
    /// in the ids buffer, the next step's input, and is copied to the
    /// readback buffer), from the session's launch cache.
    fn encode_decode(
        &self,
        s: &mut GpuSession,
        key: &LaunchKey,
        sampling: Option<&SamplingParams>,
    ) -> Result<wgpu::CommandBuffer, ModelError> {
        let mut cache = std::mem::take(&mut s.launches);
        let launches = cache.get_or_record(key, || {
            let mut d = graph::record(&self.rec(), &self.w, s, 1, Head::Last)?;
            if let Some(p) = sampling {
                let a = &s.act.stream;
                d.extend(self.sampler(&a.logits, 0, p, &a.step, &a.ids, 0)?);
            }
            Ok::<_, ModelError>(d)
        });
        let cb = launches.map(|l| self.encode_step(s, l, sampling.is_some()));
        s.launches = cache;
        cb
    }

    /// One command buffer running `launches` on `s`'s activations; `sampled`:
    /// the sampled token is copied to the readback buffer after them.
    fn encode_step(
        &self,
        s: &GpuSession,
        launches: &[Dispatch],
        sampled: bool,
    ) -> wgpu::CommandBuffer {
        let a = &s.act.stream;
        let list: Vec<&Dispatch> = launches.iter().collect();
        self.encode("forward step", &list, |enc| {
            if sampled {
                enc.copy_buffer_to_buffer(&a.ids, 0, &a.readback, 0, 4)
            }
        })
    }

    fn submit(&self, label: &str, dispatches: &[&Dispatch]) -> Result<(), ModelError> {
        self.submit_then(label, dispatches, |_| {})
    }

    /// One command buffer: one compute pass with `dispatches`, then `after`
    /// (e.g. a copy into a readback buffer).
    fn submit_then(
        &self,
        label: &str,
        dispatches: &[&Dispatch],
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<(), ModelError> {
        self.ctx.check(label)?;
        let cb = self.encode(label, dispatches, after);
        self.ctx.queue.submit([cb]);
        Ok(())
    }

    /// The command buffer [`Self::submit_then`] submits.
    fn encode(
        &self,
        label: &str,
        dispatches: &[&Dispatch],
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> wgpu::CommandBuffer {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        after(&mut enc);
        enc.finish()
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        let vocab = self.config.vocab_size;
        for (index, &token) in tokens.iter().enumerate() {
            if token as usize >= vocab {
                return Err(ModelError::TokenOutOfRange {
                    token,
                    index,
                    vocab,
                });
            }
        }
        Ok(())
    }

    /// Writes this step's ids, `Step` uniform and RoPE rows.
    fn write_inputs(&self, s: &GpuSession, tokens: &[u32]) {
        let q = &self.ctx.queue;
        let a = &s.act.stream;
        q.write_buffer(&a.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::new(s.pos as u32, tokens.len() as u32, s.seed, s.counter);
        q.write_buffer(&a.step, 0, bytemuck::bytes_of(&step));
        if !self.inv_freq.is_empty() {
            let table = rope_table(&self.inv_freq, s.pos, tokens.len(), self.max_t);
            q.write_buffer(&a.rope, 0, bytemuck::cast_slice(&table));
        }
    }

    /// Runs `tokens` through the model in steps of at most the chunk size and
    /// returns logits: every row (`all`, `[T × vocab]`) or the last row only.
    pub fn forward(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ModelError> {
        self.run(
            s,
            tokens,
            if all { Head::All } else { Head::Last },
            None,
            true,
        )
        .map(|(logits, _)| logits)
    }

    /// Runs `tokens` and samples the next token on the GPU (one u32 read back).
    pub fn forward_sample(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        params: &SamplingParams,
    ) -> Result<u32, ModelError> {
        let (_, tok) = self.run(s, tokens, Head::Last, Some(params), true)?;
        Self::sampled(s, tok)
    }

    /// The token a sampled run gave, logged in the session's generated ids.
    fn sampled(s: &mut GpuSession, tok: Option<u32>) -> Result<u32, ModelError> {
        let tok = tok.ok_or_else(|| ModelError::Internal {
            detail: "sampling produced no token".into(),
        })?;
        if tok != qwgpu_ops::sampling::NON_FINITE {
            s.log.generated.push(tok);
        }
        Ok(tok)
    }

    /// The command buffer of one step of `t` tokens binding `n_pages` KV
    /// pages: a lone decode step's from the launch cache (or the one encoded
    /// ahead for it), any other freshly recorded.
    fn step_commands(
        &self,
        s: &mut GpuSession,
        t: usize,
        head: Head,
        n_pages: usize,
        sampling: Option<&SamplingParams>,
    ) -> Result<wgpu::CommandBuffer, ModelError> {
        // A step encoded ahead for another key (pages, buffers, sampling) is dropped.
        let ready = s.next.take();
        if t == 1 && head == Head::Last {
            let key = self.decode_key(s, n_pages, sampling)?;
            return match ready {
                Some((k, cb)) if k == key => Ok(cb),
                _ => self.encode_decode(s, &key, sampling),
            };
        }
        let mut launches = graph::record(&self.rec(), &self.w, s, t, head)?;
        if let Some(p) = sampling {
            let a = &s.act.stream;
            launches.extend(self.sampler(&a.logits, 0, p, &a.step, &a.ids, 0)?);
        }
        Ok(self.encode_step(s, &launches, sampling.is_some()))
    }

    /// Most sessions one batched decode step takes on this device (16, or
    /// 64 where the matmuls take 64 tokens at once); `decode_batch` runs
    /// larger batches as several steps.
    pub fn decode_block(&self) -> usize {
        self.decode_block
    }

    /// Sets the decode block (tests: blocks past [`CORE_ROWS`] on adapters
    /// whose matmuls would not choose them). Before the first batched step.
    #[cfg(test)]
    pub(crate) fn set_decode_block(&mut self, rows: usize) {
        self.decode_block = rows.clamp(1, MAX_DECODE_BATCH);
    }

    /// One decode step for each session (`tokens[i]` into session `i`, next
    /// token sampled with `params[i]`), batched: the weights are read once per
    /// group of up to [`GpuModel::decode_block`] sessions, one command buffer
    /// and one readback per group. Results equal each session's lone decode
    /// step (up to f32 rounding order where a group passes 16 sessions or the
    /// skinny tensor-core matmul runs).
    pub fn decode_batch(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
    ) -> Result<Vec<u32>, ModelError> {
        let (n, nt, np) = (sessions.len(), tokens.len(), params.len());
        if nt != n || np != n {
            return Err(ModelError::InvalidArgument {
                detail: format!(
                    "decode_batch: {n} sessions, {nt} tokens, {np} sampling parameters (one each)"
                ),
            });
        }
        self.check_tokens(tokens)?;
        for s in sessions.iter() {
            self.check_owner(s.model, "session")?;
        }
        let mut out = Vec::with_capacity(n);
        let block = self.decode_block;
        let groups = sessions
            .chunks_mut(block)
            .zip(tokens.chunks(block))
            .zip(params.chunks(block));
        for ((group, tokens), params) in groups {
            out.extend(self.decode_group(group, tokens, params)?);
        }
        Ok(out)
    }

    fn decode_group(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
    ) -> Result<Vec<u32>, ModelError> {
        let b = sessions.len();
        let (mut guard, pool_guard, key) = self.batch_body(sessions, tokens, Some(params))?;
        let batch = guard.as_mut().ok_or_else(|| ModelError::Internal {
            detail: "the batch scratch vanished".into(),
        })?;
        let refs: Vec<&GpuSession> = sessions.iter().map(|s| &**s).collect();
        let BatchScratch {
            sampled,
            readback,
            launches,
            ..
        } = batch;
        let launches = launches.get_or_record(&key, || {
            Err(ModelError::Internal {
                detail: "batch launches missing after recording".into(),
            })
        })?;
        let sampler = launches
            .sampler
            .as_ref()
            .ok_or_else(|| ModelError::Internal {
                detail: "a plain batch recorded without its sampler".into(),
            })?;
        let seeds: Vec<(u64, u32)> = refs.iter().map(|s| (s.seed, s.counter)).collect();
        sampler.write_seeds(&self.ctx, &seeds)?;
        let all: Vec<&Dispatch> = launches.body.iter().chain(sampler.launches()).collect();
        self.submit_then("batched decode step", &all, |enc| {
            enc.copy_buffer_to_buffer(sampled, 0, readback, 0, (b * 4) as u64)
        })?;
        drop(pool_guard);
        let bytes = self.ctx.read_mapped(readback, (b * 4) as u64)?;
        self.ctx.check("batched decode step")?;
        let next: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[..b * 4]);
        for ((s, &tok), &t) in sessions.iter_mut().zip(tokens).zip(&next) {
            s.pos += 1;
            s.counter = s.counter.wrapping_add(1);
            s.log.consumed.push(tok);
            if t != qwgpu_ops::sampling::NON_FINITE {
                s.log.generated.push(t);
            }
        }
        Ok(next)
    }

    /// The launch key of a batched step over `refs`: with each row's sampling
    /// parameters (the sampler is part of the list), or `None` (body only).
    fn batch_key(
        &self,
        refs: &[&GpuSession],
        params: Option<&[SamplingParams]>,
    ) -> Result<LaunchKey, ModelError> {
        Ok(LaunchKey {
            kind: StepKind::BatchDecode,
            rows: refs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let epoch = self.epoch(s)?;
                    let p = params.map(|p| &p[i]);
                    Ok(RowKey::new(s.id, epoch, s.pages_at(s.pos).0, p))
                })
                .collect::<Result<_, ModelError>>()?,
        })
    }

    /// Prepares a batched step: capacity, inputs, the batch scratch, and the
    /// step's launch list recorded (with the plain sampler of `params`, or
    /// body only for `None`). Returns the locked batch scratch, the state
    /// pool's step guard (hold it until the step is submitted) and the key
    /// of the recorded list.
    #[allow(clippy::type_complexity)]
    fn batch_body(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: Option<&[SamplingParams]>,
    ) -> Result<
        (
            std::sync::MutexGuard<'_, Option<BatchScratch>>,
            Option<std::sync::RwLockReadGuard<'_, ()>>,
            LaunchKey,
        ),
        ModelError,
    > {
        let b = sessions.len();
        for (s, &tok) in sessions.iter_mut().zip(tokens) {
            self.ensure_capacity(s, s.pos + 1)?;
            self.write_inputs(s, &[tok]);
        }
        let mut guard = self.batch.lock().map_err(|_| ModelError::Internal {
            detail: "a batched decode step panicked earlier".into(),
        })?;
        if guard.is_none() {
            let rows = self.decode_block;
            let cores = (1..rows.div_ceil(CORE_ROWS))
                .map(|_| Activations::new(&self.ctx, &self.config, CORE_ROWS, 1))
                .collect::<Result<_, _>>()?;
            *guard = Some(BatchScratch {
                act: Activations::new(&self.ctx, &self.config, rows, rows)?,
                cores,
                sampled: self.ctx.storage("batch sampled ids", (rows * 4) as u64)?,
                readback: self
                    .ctx
                    .readback_buffer("batch sampled ids", (rows * 4) as u64),
                launches: LaunchCache::default(),
                ctl: None,
            });
        }
        let batch = guard.as_mut().ok_or_else(|| ModelError::Internal {
            detail: "the batch scratch vanished".into(),
        })?;
        let q = &self.ctx.queue;
        q.write_buffer(&batch.act.stream.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::new(0, b as u32, 0, 0);
        q.write_buffer(&batch.act.stream.step, 0, bytemuck::bytes_of(&step));
        let refs: Vec<&GpuSession> = sessions.iter().map(|s| &**s).collect();
        let key = self.batch_key(&refs, params)?;
        let pool_guard = self.step_guard()?;
        let BatchScratch {
            act,
            cores,
            sampled,
            launches,
            ..
        } = batch;
        // Recording is the costly part (thousands of bind groups): only when
        // the batch changes (a session joins, leaves or enters a page).
        launches.get_or_record(&key, || {
            let body = graph::record_batch(&self.rec(), &self.w, act, cores, &refs)?;
            let Some(params) = params else {
                return Ok::<_, ModelError>(BatchLaunches {
                    body,
                    sampler: None,
                });
            };
            // All rows' samplers in one launch family (per-row parameters).
            let vocab = self.config.vocab_size;
            let rows: Vec<SampleRow> = params
                .iter()
                .enumerate()
                .map(|(row, p)| SampleRow {
                    logits_offset: (row * vocab) as u32,
                    out_offset: row as u32,
                    params: *p,
                })
                .collect();
            let sampler = sample_rows(
                &self.ctx,
                &act.stream.logits,
                vocab as u32,
                &rows,
                &act.stream.step,
                sampled,
            )?;
            Ok(BatchLaunches {
                body,
                sampler: Some(sampler),
            })
        })?;
        Ok((guard, pool_guard, key))
    }

    /// Copies the session's state (KV rows up to its position, into one page of
    /// exactly that many rows; GDN states).
    pub fn snapshot(&self, s: &GpuSession) -> Result<GpuSnapshot, ModelError> {
        self.check_owner(s.model, "session")?;
        let pages: Vec<usize> = if s.pos > 0 { vec![s.pos] } else { Vec::new() };
        let layers = self.new_states(&pages, None)?;
        let guard = self.step_guard()?;
        let copies = self.copy_states((&s.layers, &s.pages), (&layers, &pages), s.pos)?;
        self.submit("snapshot", &copies.iter().collect::<Vec<_>>())?;
        drop(guard);
        self.ctx.check("snapshot")?;
        Ok(GpuSnapshot {
            pos: s.pos,
            counter: s.counter,
            seed: s.seed,
            log: s.log.clone(),
            pages,
            layers,
            model: self.id,
        })
    }

    /// Puts `snap`'s state back into `s` (any session of this model).
    pub fn restore(&self, s: &mut GpuSession, snap: &GpuSnapshot) -> Result<(), ModelError> {
        self.check_owner(snap.model, "snapshot")?;
        self.ensure_capacity(s, snap.pos.max(1))?;
        let guard = self.step_guard()?;
        let copies =
            self.copy_states((&snap.layers, &snap.pages), (&s.layers, &s.pages), snap.pos)?;
        self.submit("restore", &copies.iter().collect::<Vec<_>>())?;
        drop(guard);
        s.pos = snap.pos;
        s.counter = snap.counter;
        s.seed = snap.seed;
        s.log = snap.log.clone();
        // The device's token counts no longer match the log.
        if let Some(c) = s.ctl.as_mut() {
            c.counts_sync = None;
        }
        self.ctx.check("restore")?;
        Ok(())
    }

    /// A new session holding a copy of `s`'s state; the two advance independently.
    pub fn fork(&self, s: &GpuSession) -> Result<GpuSession, ModelError> {
        let snap = self.snapshot(s)?;
        let mut f = self.new_session()?;
        self.restore(&mut f, &snap)?;
        Ok(f)
    }

    /// Sets the seed of the session's sampler and restarts its counter.
    pub fn set_seed(&self, s: &mut GpuSession, seed: u64) {
        s.set_seed(seed);
    }

    /// Runs `tokens` (at most one step) with every launch timed, advancing the
    /// session as a normal step would; returns GPU time per kernel family
    /// `(label, nanoseconds, launches)`, largest first.
    pub fn profile(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
    ) -> Result<Vec<FamilyTime>, ModelError> {
        let (max_t, got) = (self.max_t, tokens.len());
        if got == 0 || got > max_t {
            return Err(ModelError::InvalidArgument {
                detail: format!("profile takes 1..={max_t} tokens, got {got}"),
            });
        }
        self.check_tokens(tokens)?;
        self.ensure_capacity(s, s.pos + tokens.len())?;
        // A step never straddles KV pages: run the part before the page end
        // untimed (a new page is sized to hold the rest).
        let (_, page_end) = s.pages_at(s.pos);
        let room = page_end - s.pos;
        let lead = if tokens.len() > room { room } else { 0 };
        if lead > 0 {
            self.run(s, &tokens[..lead], Head::None, None, true)?;
        }
        let tokens = &tokens[lead..];
        self.write_inputs(s, tokens);
        let guard = self.step_guard()?;
        let launches = graph::record(&self.rec(), &self.w, s, tokens.len(), Head::Last)?;
        let times = qwgpu_kernels::profile::time_dispatches(
            &self.ctx,
            &launches.iter().collect::<Vec<_>>(),
        )?;
        drop(guard);
        s.pos += tokens.len();
        s.log.consumed.extend_from_slice(tokens);
        let mut by: Vec<FamilyTime> = Vec::new();
        for (label, ns) in times {
            match by.iter_mut().find(|f| f.label == label) {
                Some(f) => {
                    f.nanos += ns;
                    f.launches += 1;
                }
                None => by.push(FamilyTime {
                    label: label.to_string(),
                    nanos: ns,
                    launches: 1,
                }),
            }
        }
        by.sort_by(|a, b| b.nanos.total_cmp(&a.nanos));
        Ok(by)
    }
}
