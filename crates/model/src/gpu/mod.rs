//! The Qwen3.5 forward pass on the GPU: weights in their stored formats
//! (`weights`), per-sequence state and activations ([`GpuSession`]), and the
//! launch list of one step (`graph`). A step is one command buffer with one
//! compute pass; decode launches are recorded once per session and replayed,
//! with only the small `Step` uniform, the RoPE row and the token id written
//! before each submit. A sampled step's successor is encoded while the GPU
//! runs it (its token comes from the ids buffer the sampler wrote), so the
//! CPU's recording of ~200 launches stays off the path between two steps.

mod graph;
mod session;
mod weights;

use std::sync::{Arc, Mutex};

use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::attention::{rope_table, AttnScratch};
use qwgpu_kernels::sample::{sample, SamplingParams};
use qwgpu_kernels::{Dispatch, GpuContext, Step};
use qwgpu_loader::PackedModel;

use graph::Head;
pub use session::GpuSession;
use session::{
    add_page, attn_dims, copy_state, new_layers, next_page_rows, Activations, LayerStateGpu,
};

use crate::ModelError;

/// Tokens per prefill step (longer prompts run in several steps). On an H100
/// (0.8B geometry) 512-token steps prefill 2.3× faster than 128-token ones;
/// the activations of a step cost about 0.5 MiB per token at 9B geometry.
pub const DEFAULT_MAX_CHUNK: usize = 512;
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
    /// Activations of batched decode steps, made on first use.
    batch: Mutex<Option<BatchScratch>>,
}

/// Most sessions in one batched decode step: the GEMV kernel's token limit,
/// so every row keeps the arithmetic of a lone decode step. Bigger batches
/// run as several steps.
pub const MAX_DECODE_BATCH: usize = 16;

/// Buffers of a batched decode step: one activation row per session, the
/// sampled ids and their host-readable copy; the launches of the last batch
/// and what they were recorded for (replayed while the batch stays the same).
struct BatchScratch {
    act: Activations,
    sampled: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Most recent first; a few, since batches above [`MAX_DECODE_BATCH`]
    /// run as alternating groups.
    recorded: Vec<(Vec<BatchKey>, Vec<Dispatch>)>,
}

/// Batch compositions whose launches stay recorded.
const RECORDED_BATCHES: usize = 4;

/// What a batch row's recorded launches depend on: the session (id, buffer
/// epoch, pages bound) and its sampling parameters (as bits).
#[derive(Clone, PartialEq, Eq)]
struct BatchKey {
    session: (u64, u64, usize),
    params: (u32, u32, u32),
}

static NEXT_SESSION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    /// Rows of each KV page of `layers`.
    pages: Vec<usize>,
    layers: Vec<LayerStateGpu>,
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
        let max_t = max_chunk.clamp(1, 4096);
        let logit_rows = (LOGITS_BUDGET / (c.vocab_size * 4)).clamp(1, max_t);
        Self {
            inv_freq: inv_freq(&c),
            ctx,
            config: c,
            w,
            max_t,
            logit_rows,
            batch: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// An empty session (position 0, zero GDN states, no KV page yet: the first
    /// step adds one sized for it).
    pub fn new_session(&self) -> Result<GpuSession, ModelError> {
        let c = &self.config;
        let layers = new_layers(&self.ctx, c, &[])?;
        let act = Activations::new(&self.ctx, c, self.max_t, self.logit_rows)?;
        self.ctx.check("session creation")?;
        Ok(GpuSession {
            pos: 0,
            pages: Vec::new(),
            attn: None,
            layers,
            act,
            decode: None,
            sampler: None,
            next: None,
            seed: 0,
            counter: 0,
            id: NEXT_SESSION_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            epoch: 0,
        })
    }

    fn attn_scratch(&self, capacity: usize) -> Result<Option<AttnScratch>, ModelError> {
        let c = &self.config;
        if !c
            .layer_types
            .contains(&qwgpu_checkpoint::LayerType::FullAttention)
        {
            return Ok(None);
        }
        Ok(Some(AttnScratch::new(
            &self.ctx,
            &attn_dims(c),
            self.max_t as u32,
            capacity as u32,
        )?))
    }

    /// Makes room for `needed` KV rows by adding pages (nothing is copied or
    /// reallocated); the attention scratch follows the capacity, so decode
    /// launches are re-recorded.
    fn ensure_capacity(&self, s: &mut GpuSession, needed: usize) -> Result<(), ModelError> {
        let mut cap = s.capacity();
        if needed <= cap && cap > 0 {
            return Ok(());
        }
        while cap < needed {
            let rows = next_page_rows(&self.ctx, &self.config, cap, needed);
            tracing::debug!(from = cap, page = rows, "adding a KV page");
            add_page(&self.ctx, &self.config, &mut s.layers, rows)?;
            s.pages.push(rows);
            cap += rows;
        }
        s.epoch += 1;
        s.attn = self.attn_scratch(cap.max(1))?;
        s.decode = None;
        s.next = None;
        Ok(())
    }

    /// Records the decode-step launches (T = 1, logits of the one row) for a
    /// position in page `n_pages`, unless those are recorded already.
    fn decode_launches(&self, s: &mut GpuSession, n_pages: usize) -> Result<(), ModelError> {
        if s.decode.as_ref().map(|(n, _)| *n) != Some(n_pages) {
            let d = graph::record(
                &self.ctx,
                &self.config,
                &self.w,
                s,
                1,
                self.max_t,
                Head::Last,
            )?;
            s.decode = Some((n_pages, d));
        }
        Ok(())
    }

    /// Records the sampler's launches for `p`, unless those are recorded already.
    fn sampler_launches(&self, s: &mut GpuSession, p: &SamplingParams) -> Result<(), ModelError> {
        if !matches!(&s.sampler, Some((q, _)) if q == p) {
            let d = sample(
                &self.ctx,
                &s.act.logits,
                0,
                self.config.vocab_size as u32,
                p,
                &s.act.step,
                &s.act.ids,
                0,
            )?;
            s.sampler = Some((*p, d));
        }
        Ok(())
    }

    /// The command buffer of one sampled decode step at a position in page
    /// `n_pages`: the decode launches, the sampler (its token lands in the ids
    /// buffer, the next step's input) and the token's copy to the readback buffer.
    fn encode_decode(
        &self,
        s: &mut GpuSession,
        n_pages: usize,
        p: &SamplingParams,
    ) -> Result<wgpu::CommandBuffer, ModelError> {
        self.decode_launches(s, n_pages)?;
        self.sampler_launches(s, p)?;
        let list: Vec<&Dispatch> = s
            .decode
            .iter()
            .flat_map(|(_, d)| d)
            .chain(s.sampler.iter().flat_map(|(_, d)| d))
            .collect();
        Ok(self.encode("forward step", &list, |enc| {
            enc.copy_buffer_to_buffer(&s.act.ids, 0, &s.act.readback, 0, 4)
        }))
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
        q.write_buffer(&s.act.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::new(s.pos as u32, tokens.len() as u32, s.seed, s.counter);
        q.write_buffer(&s.act.step, 0, bytemuck::bytes_of(&step));
        if !self.inv_freq.is_empty() {
            let table = rope_table(&self.inv_freq, s.pos, tokens.len(), self.max_t);
            q.write_buffer(&s.act.rope, 0, bytemuck::cast_slice(&table));
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
        self.run(s, tokens, if all { Head::All } else { Head::Last }, None)
            .map(|(logits, _)| logits)
    }

    /// Runs `tokens` and samples the next token on the GPU (one u32 read back).
    pub fn forward_sample(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        params: &SamplingParams,
    ) -> Result<u32, ModelError> {
        let (_, tok) = self.run(s, tokens, Head::Last, Some(params))?;
        tok.ok_or_else(|| ModelError::Config {
            detail: "sampling produced no token".into(),
        })
    }

    fn run(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        head: Head,
        sampling: Option<&SamplingParams>,
    ) -> Result<(Vec<f32>, Option<u32>), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Config {
                detail: "no tokens to run".into(),
            });
        }
        self.check_tokens(tokens)?;
        self.ensure_capacity(s, s.pos + tokens.len())?;
        let vocab = self.config.vocab_size;
        let chunk = if head == Head::All {
            self.max_t.min(self.logit_rows)
        } else {
            self.max_t
        };
        let mut logits = Vec::new();
        let mut sampled = None;
        let mut done = 0;
        while done < tokens.len() {
            // A step never straddles KV pages (its keys are written to one).
            let (n_pages, page_end) = s.pages_at(s.pos);
            let t = chunk.min(tokens.len() - done).min(page_end - s.pos);
            let part = &tokens[done..done + t];
            done += t;
            let last = done == tokens.len();
            let step_head = match head {
                Head::All => Head::All,
                _ if last => Head::Last,
                _ => Head::None,
            };
            self.write_inputs(s, part);
            // A decode step's command buffer may have been encoded during the
            // previous step (below); one encoded for other pages or
            // sampling parameters is dropped.
            let ready = s.next.take();
            let cb = match (t, step_head, last, sampling) {
                (1, Head::Last, true, Some(p)) => match ready {
                    Some((key, cb)) if key == (n_pages, *p) => cb,
                    _ => self.encode_decode(s, n_pages, p)?,
                },
                _ => {
                    let sampled_here = last && sampling.is_some();
                    if let (true, Some(p)) = (last, sampling) {
                        self.sampler_launches(s, p)?;
                    }
                    let cached = t == 1 && step_head == Head::Last;
                    if cached {
                        self.decode_launches(s, n_pages)?;
                    }
                    let fresh;
                    let launches: &[Dispatch] = if cached {
                        s.decode.as_ref().map(|(_, d)| d.as_slice()).unwrap_or(&[])
                    } else {
                        fresh = graph::record(
                            &self.ctx,
                            &self.config,
                            &self.w,
                            s,
                            t,
                            self.max_t,
                            step_head,
                        )?;
                        &fresh
                    };
                    let mut list: Vec<&Dispatch> = launches.iter().collect();
                    if sampled_here {
                        list.extend(s.sampler.iter().flat_map(|(_, d)| d));
                    }
                    self.encode("forward step", &list, |enc| {
                        if sampled_here {
                            enc.copy_buffer_to_buffer(&s.act.ids, 0, &s.act.readback, 0, 4);
                        }
                    })
                }
            };
            self.ctx.check("forward step")?;
            self.ctx.queue.submit([cb]);
            s.pos += t;
            // While the GPU runs this step, encode the next decode step (its
            // token is the one sampled into the ids buffer now, its position
            // and sampler counter are written at submission): wgpu records
            // ~1-3 µs of CPU per launch, 0.3-0.6 ms for a step of ~200, which
            // otherwise sits between two steps on the GPU.
            if let (true, Some(p)) = (last, sampling) {
                if s.pos < s.capacity() {
                    let (np, _) = s.pages_at(s.pos);
                    let cb = self.encode_decode(s, np, p)?;
                    s.next = Some(((np, *p), cb));
                }
            }
            match step_head {
                Head::All => logits.extend(self.ctx.read_f32(&s.act.logits, 0, t * vocab)?),
                Head::Last if sampling.is_none() => {
                    logits = self.ctx.read_f32(&s.act.logits, 0, vocab)?
                }
                _ => {}
            }
            if last && sampling.is_some() {
                let bytes = self.ctx.read_mapped(&s.act.readback, 4)?;
                sampled = Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                s.counter = s.counter.wrapping_add(1);
            }
        }
        self.ctx.check("forward")?;
        Ok((logits, sampled))
    }

    /// One decode step for each session (`tokens[i]` into session `i`, next
    /// token sampled with `params[i]`), batched: the weights are read once per
    /// group of up to [`MAX_DECODE_BATCH`] sessions, one command buffer and one
    /// readback per group. Results equal each session's lone decode step.
    pub fn decode_batch(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
    ) -> Result<Vec<u32>, ModelError> {
        self.check_tokens(tokens)?;
        let mut out = Vec::with_capacity(tokens.len());
        let mut start = 0;
        for group in sessions.chunks_mut(MAX_DECODE_BATCH) {
            let n = group.len();
            out.extend(self.decode_group(
                group,
                &tokens[start..start + n],
                &params[start..start + n],
            )?);
            start += n;
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
        let vocab = self.config.vocab_size;
        for (s, &tok) in sessions.iter_mut().zip(tokens) {
            self.ensure_capacity(s, s.pos + 1)?;
            self.write_inputs(s, &[tok]);
        }
        let mut guard = self.batch.lock().map_err(|_| ModelError::Config {
            detail: "a batched decode step panicked earlier".into(),
        })?;
        if guard.is_none() {
            let rows = MAX_DECODE_BATCH;
            *guard = Some(BatchScratch {
                act: Activations::new(&self.ctx, &self.config, rows, rows)?,
                sampled: self.ctx.storage("batch sampled ids", (rows * 4) as u64)?,
                readback: self
                    .ctx
                    .readback_buffer("batch sampled ids", (rows * 4) as u64),
                recorded: Vec::new(),
            });
        }
        let Some(batch) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let q = &self.ctx.queue;
        q.write_buffer(&batch.act.ids, 0, bytemuck::cast_slice(tokens));
        let step = Step::new(0, b as u32, 0, 0);
        q.write_buffer(&batch.act.step, 0, bytemuck::bytes_of(&step));
        let refs: Vec<&GpuSession> = sessions.iter().map(|s| &**s).collect();
        let keys: Vec<BatchKey> = refs
            .iter()
            .zip(params)
            .map(|(s, p)| BatchKey {
                session: (s.id, s.epoch, s.pages_at(s.pos).0),
                params: (p.temperature.to_bits(), p.top_k, p.top_p.to_bits()),
            })
            .collect();
        let hit = batch.recorded.iter().position(|(k, _)| *k == keys);
        if let Some(i) = hit {
            let entry = batch.recorded.remove(i);
            batch.recorded.insert(0, entry);
        } else {
            // Recording is the costly part (thousands of bind groups): only
            // when the batch changes (a session joins, leaves or enters a page).
            let mut launches = graph::record_batch(
                &self.ctx,
                &self.config,
                &self.w,
                &batch.act,
                &refs,
                self.max_t,
            )?;
            let mut per_row = Vec::with_capacity(b);
            for (row, (s, p)) in refs.iter().zip(params).enumerate() {
                per_row.push(sample(
                    &self.ctx,
                    &batch.act.logits,
                    (row * vocab) as u32,
                    vocab as u32,
                    p,
                    &s.act.step,
                    &batch.sampled,
                    row as u32,
                )?);
            }
            // Interleaved like the mixers: the rows' samplers run side by side.
            graph::interleave(per_row, &mut launches);
            batch.recorded.insert(0, (keys, launches));
            batch.recorded.truncate(RECORDED_BATCHES);
        }
        let Some((_, launches)) = batch.recorded.first() else {
            return Ok(Vec::new());
        };
        self.submit_then(
            "batched decode step",
            &launches.iter().collect::<Vec<_>>(),
            |enc| enc.copy_buffer_to_buffer(&batch.sampled, 0, &batch.readback, 0, (b * 4) as u64),
        )?;
        let bytes = self.ctx.read_mapped(&batch.readback, (b * 4) as u64)?;
        self.ctx.check("batched decode step")?;
        for s in sessions.iter_mut() {
            s.pos += 1;
            s.counter = s.counter.wrapping_add(1);
        }
        Ok(bytemuck::pod_collect_to_vec(&bytes[..b * 4]))
    }

    /// Copies the session's state (KV rows up to its position, into one page of
    /// exactly that many rows; GDN states).
    pub fn snapshot(&self, s: &GpuSession) -> Result<GpuSnapshot, ModelError> {
        let pages: Vec<usize> = if s.pos > 0 { vec![s.pos] } else { Vec::new() };
        let layers = new_layers(&self.ctx, &self.config, &pages)?;
        let copies = copy_state(
            &self.ctx,
            &self.config,
            (&s.layers, &s.pages),
            (&layers, &pages),
            s.pos,
        )?;
        self.submit("snapshot", &copies.iter().collect::<Vec<_>>())?;
        self.ctx.check("snapshot")?;
        Ok(GpuSnapshot {
            pos: s.pos,
            counter: s.counter,
            seed: s.seed,
            pages,
            layers,
        })
    }

    /// Puts `snap`'s state back into `s` (any session of this model).
    pub fn restore(&self, s: &mut GpuSession, snap: &GpuSnapshot) -> Result<(), ModelError> {
        self.ensure_capacity(s, snap.pos.max(1))?;
        let copies = copy_state(
            &self.ctx,
            &self.config,
            (&snap.layers, &snap.pages),
            (&s.layers, &s.pages),
            snap.pos,
        )?;
        self.submit("restore", &copies.iter().collect::<Vec<_>>())?;
        s.pos = snap.pos;
        s.counter = snap.counter;
        s.seed = snap.seed;
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
        s.seed = seed;
        s.counter = 0;
    }

    /// Runs `tokens` (at most one step) with every launch timed, advancing the
    /// session as a normal step would; returns GPU time per kernel family
    /// `(label, nanoseconds, launches)`, largest first.
    pub fn profile(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
    ) -> Result<Vec<FamilyTime>, ModelError> {
        if tokens.is_empty() || tokens.len() > self.max_t {
            return Err(ModelError::Config {
                detail: format!(
                    "profile takes 1..={} tokens, got {}",
                    self.max_t,
                    tokens.len()
                ),
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
            self.run(s, &tokens[..lead], Head::None, None)?;
        }
        let tokens = &tokens[lead..];
        self.write_inputs(s, tokens);
        let launches = graph::record(
            &self.ctx,
            &self.config,
            &self.w,
            s,
            tokens.len(),
            self.max_t,
            Head::Last,
        )?;
        let times = qwgpu_kernels::profile::time_dispatches(
            &self.ctx,
            &launches.iter().collect::<Vec<_>>(),
        )?;
        s.pos += tokens.len();
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
