//! Sampled steps with per-step controls (mask callback, penalties, min-p,
//! log-probabilities): see [`crate::sampling::StepControls`].
//!
//! A plain step (no mask, no log-probabilities, no penalty, no min-p) takes
//! the GPU sampler of [`GpuModel::forward_sample`] / [`GpuModel::decode_batch`]
//! as before. A controlled step is two submissions: the forward pass (its
//! logits stay on the device), then, once the host has the step's masks (the
//! callbacks run while the GPU computes the forward pass), the controlled
//! sampler (`qwgpu_kernels::sample::controls`): log-probabilities of the raw
//! logits, penalties and mask into an adjusted copy, the pick, the penalty
//! counts' update, and a readback of the ids and the requested
//! log-probabilities only.
//!
//! **Token counts on the device.** A session with penalties keeps one `u32`
//! per vocabulary entry on the GPU (bit 31: in the context; low bits: times
//! generated), updated by the sampler from the id it picks. The host's
//! [`crate::sampling::TokenLog`] is the truth: the device copy is rebuilt from
//! it (one upload) whenever it may differ (after a prompt, a restore, a new
//! seed, or steps without penalties); a decode step feeding back the token the
//! sampler just counted needs nothing.

use qwgpu_kernels::sample::controls::{self as ctl, AdjustRow, LP_WORDS};
use qwgpu_kernels::sample::{sample, sample_rows, RowSampler, SampleRow};
use qwgpu_kernels::Dispatch;

use super::launch_cache::{LaunchCache, LaunchKey, RowKey, StepKind};
use super::record::Head;
use super::{GpuModel, GpuSession};
use crate::sampling::{mask_words, Sampled, SamplingParams, StepControls, TokenLog};
use crate::ModelError;

/// Whether a step needs more than the plain GPU sampler.
pub(crate) fn is_controlled(p: &SamplingParams, c: &StepControls<'_>) -> bool {
    !c.is_plain() || p.has_penalties() || p.min_p > 0.0
}

/// What the device's token counts reflect: `(generation, consumed, generated)`
/// lengths of the session's log.
pub(crate) type CountsSync = (u64, usize, usize);

/// A session's buffers for controlled steps.
pub(crate) struct SessionCtl {
    /// `[vocab]` adjusted logits (penalties, mask).
    adj: wgpu::Buffer,
    /// `[mask_words]` the step's mask.
    mask: wgpu::Buffer,
    /// `[LP_WORDS]` the step's log-probabilities and its readback copy.
    lp: wgpu::Buffer,
    lp_readback: wgpu::Buffer,
    /// `[vocab]` token counts (sessions that used penalties).
    counts: Option<wgpu::Buffer>,
    pub(crate) counts_sync: Option<CountsSync>,
    /// Recorded controlled samplers of lone steps.
    launches: LaunchCache<Vec<Dispatch>>,
}

/// The batch's buffers for controlled steps (rows of the model's decode block).
pub(crate) struct BatchCtl {
    adj: wgpu::Buffer,
    mask: wgpu::Buffer,
    lp: wgpu::Buffer,
    lp_readback: wgpu::Buffer,
    /// Per batch: launches before the pick, the pick, launches after it.
    launches: LaunchCache<(Vec<Dispatch>, RowSampler, Vec<Dispatch>)>,
}

/// One row's switches: parameters, whether it is masked, its log-probability
/// count, whether it is penalised.
#[derive(Clone, Copy)]
struct RowCtl {
    params: SamplingParams,
    masked: bool,
    top: Option<u32>,
    penal: bool,
}

impl RowCtl {
    fn new(p: &SamplingParams, c: &StepControls<'_>) -> Self {
        Self {
            params: *p,
            masked: c.mask.is_some(),
            top: c.top_logprobs.map(|n| n as u32),
            penal: p.has_penalties(),
        }
    }

    fn adjusts(&self) -> bool {
        self.penal || self.masked
    }

    fn key(&self, session: u64, epoch: u64) -> RowKey {
        let p = &self.params;
        RowKey {
            session,
            epoch,
            pages: 0,
            sampling: None,
            ctl: Some([
                p.temperature.to_bits(),
                p.top_k,
                p.top_p.to_bits(),
                p.min_p.to_bits(),
                p.presence_penalty.to_bits(),
                p.frequency_penalty.to_bits(),
                p.repetition_penalty.to_bits(),
                self.masked as u32,
                self.top.map_or(0, |n| n + 1),
                self.penal as u32,
            ]),
        }
    }
}

fn lp_words_rows(rows: usize) -> u64 {
    (rows * LP_WORDS * 4) as u64
}

/// The device counts match `log` for a step whose inputs are in `log` already.
fn counts_in_sync(sync: Option<CountsSync>, log: &TokenLog) -> bool {
    let Some((generation, consumed, generated)) = sync else {
        return false;
    };
    if generation != log.generation || generated != log.generated.len() {
        return false;
    }
    let fresh = &log.consumed[consumed.min(log.consumed.len())..];
    // Fed back: the last generated token, already counted (as generated,
    // which the repetition penalty treats like seen).
    consumed <= log.consumed.len()
        && (fresh.is_empty() || (fresh.len() == 1 && log.generated.last() == fresh.first()))
}

impl GpuModel {
    fn session_ctl(&self, s: &mut GpuSession, penal: bool) -> Result<(), ModelError> {
        let vocab = self.config.vocab_size as u64;
        if s.ctl.is_none() {
            let ctx = &self.ctx;
            s.ctl = Some(SessionCtl {
                adj: ctx.storage("adjusted logits", vocab * 4)?,
                mask: ctx.storage("token mask", mask_words(vocab as usize) as u64 * 4)?,
                lp: ctx.storage("log-probabilities", lp_words_rows(1))?,
                lp_readback: ctx.readback_buffer("log-probabilities", lp_words_rows(1)),
                counts: None,
                counts_sync: None,
                launches: LaunchCache::default(),
            });
        }
        if let Some(c) = s.ctl.as_mut().filter(|c| penal && c.counts.is_none()) {
            c.counts = Some(self.ctx.storage("token counts", vocab * 4)?);
        }
        Ok(())
    }

    /// Uploads `s`'s counts from its log unless the device copy matches.
    fn sync_counts(&self, s: &mut GpuSession) {
        let vocab = self.config.vocab_size;
        let Some(c) = s.ctl.as_mut() else { return };
        let Some(buf) = &c.counts else { return };
        if !counts_in_sync(c.counts_sync, &s.log) {
            let counts = s.log.counts(vocab);
            self.ctx
                .queue
                .write_buffer(buf, 0, bytemuck::cast_slice(counts.as_slice()));
        }
        c.counts_sync = None;
    }

    /// After a penalised step that counted `token` on the device.
    fn counted(s: &mut GpuSession) {
        let sync = (
            s.log.generation,
            s.log.consumed.len(),
            s.log.generated.len(),
        );
        if let Some(c) = s.ctl.as_mut() {
            c.counts_sync = Some(sync);
        }
    }

    /// Writes the mask the callback filled, or all ones when it declined.
    fn write_mask(&self, buf: &wgpu::Buffer, word: usize, mask: Option<Vec<u32>>) {
        let words = mask.unwrap_or_else(|| vec![u32::MAX; mask_words(self.config.vocab_size)]);
        self.ctx
            .queue
            .write_buffer(buf, (word * 4) as u64, bytemuck::cast_slice(&words));
    }

    /// Runs `tokens` and samples the next token with `controls`; a
    /// non-finite row is [`ModelError::NonFiniteLogits`].
    pub fn sample_step(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        params: &SamplingParams,
        controls: &mut StepControls<'_>,
    ) -> Result<Sampled, ModelError> {
        if !is_controlled(params, controls) {
            let t = self.forward_sample(s, tokens, params)?;
            if t == qwgpu_ops::sampling::NON_FINITE {
                return Err(ModelError::NonFiniteLogits { position: s.pos });
            }
            return Ok(Sampled::token(t));
        }
        let row = RowCtl::new(params, controls);
        // The forward pass is submitted; its logits stay on the device.
        self.run(s, tokens, Head::Last, None, false)?;
        let vocab = self.config.vocab_size;
        // While the GPU runs it: the host's mask.
        let mask = if row.masked {
            Some(controls.fetch_mask(vocab, s.pos)?)
        } else {
            None
        };
        self.session_ctl(s, row.penal)?;
        if row.penal {
            self.sync_counts(s);
        }
        let epoch = self.epoch(s)?;
        let key = LaunchKey {
            kind: StepKind::Sample,
            rows: vec![row.key(s.id, epoch)],
        };
        let c = s.ctl.as_mut().ok_or_else(|| ModelError::Internal {
            detail: "controlled sampler buffers missing".into(),
        })?;
        if let Some(m) = mask {
            self.write_mask(&c.mask, 0, m);
        }
        let a = &s.act.stream;
        let SessionCtl {
            adj,
            mask: mask_buf,
            lp,
            lp_readback,
            counts,
            launches,
            ..
        } = c;
        let list = launches.get_or_record(&key, || {
            let v = vocab as u32;
            let mut d = Vec::new();
            let mut after = None;
            if let Some(n) = row.top {
                let (first, second) =
                    ctl::logprobs(&self.ctx, &a.logits, 0, v, n, &a.ids, 0, lp, 0)?;
                d.push(first);
                after = Some(second);
            }
            let counts = counts.as_ref().filter(|_| row.penal);
            let src = if row.adjusts() {
                let r = AdjustRow {
                    logits_offset: 0,
                    adj_offset: 0,
                    params: row.params,
                    counts,
                    mask_offset: row.masked.then_some(0),
                };
                d.push(ctl::adjust(&self.ctx, &a.logits, adj, mask_buf, v, &r)?);
                &*adj
            } else {
                &a.logits
            };
            d.extend(sample(
                &self.ctx,
                src,
                0,
                v,
                &row.params,
                &a.step,
                &a.ids,
                0,
            )?);
            if let Some(cb) = counts {
                d.push(ctl::count(&self.ctx, &a.ids, 0, cb, v)?);
            }
            d.extend(after);
            Ok::<_, ModelError>(d)
        })?;
        let refs: Vec<&Dispatch> = list.iter().collect();
        let lp_bytes = lp_words_rows(1);
        self.submit_then("controlled sampler", &refs, |enc| {
            enc.copy_buffer_to_buffer(&a.ids, 0, &a.readback, 0, 4);
            if row.top.is_some() {
                enc.copy_buffer_to_buffer(lp, 0, lp_readback, 0, lp_bytes);
            }
        })?;
        let bytes = self.ctx.read_mapped(&a.readback, 4)?;
        let token = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mut out = Sampled::token(token);
        if row.top.is_some() {
            let words: Vec<u32> =
                bytemuck::pod_collect_to_vec(&self.ctx.read_mapped(lp_readback, lp_bytes)?);
            let (chosen, top) = ctl::parse_logprobs(&words);
            out.logprob = Some(chosen);
            out.top = top;
        }
        self.ctx.check("controlled sampler")?;
        s.counter = s.counter.wrapping_add(1);
        if token == qwgpu_ops::sampling::NON_FINITE {
            return Err(ModelError::NonFiniteLogits { position: s.pos });
        }
        s.log.generated.push(token);
        if row.penal {
            Self::counted(s);
        }
        Ok(out)
    }

    /// [`GpuModel::decode_batch`] with per-row controls: one forward pass
    /// for the batch, the rows' mask callbacks (in row order) while it runs,
    /// then one submission of every row's controlled sampler.
    pub fn decode_batch_with(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
        controls: &mut [StepControls<'_>],
    ) -> Result<Vec<Sampled>, ModelError> {
        let (n, nt, np, nc) = (sessions.len(), tokens.len(), params.len(), controls.len());
        if nt != n || np != n || nc != n {
            return Err(ModelError::InvalidArgument {
                detail: format!(
                    "decode_batch: {n} sessions, {nt} tokens, {np} sampling parameters, {nc} controls (one each)"
                ),
            });
        }
        let any = params
            .iter()
            .zip(controls.iter())
            .any(|(p, c)| is_controlled(p, c));
        if !any {
            return Ok(self
                .decode_batch(sessions, tokens, params)?
                .into_iter()
                .map(Sampled::token)
                .collect());
        }
        self.check_tokens(tokens)?;
        for s in sessions.iter() {
            self.check_owner(s.model, "session")?;
        }
        let mut out = Vec::with_capacity(n);
        let groups = sessions
            .chunks_mut(self.decode_block)
            .zip(tokens.chunks(self.decode_block))
            .zip(params.chunks(self.decode_block))
            .zip(controls.chunks_mut(self.decode_block));
        for (((group, tokens), params), controls) in groups {
            out.extend(self.decode_group_with(group, tokens, params, controls)?);
        }
        Ok(out)
    }

    fn decode_group_with(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
        controls: &mut [StepControls<'_>],
    ) -> Result<Vec<Sampled>, ModelError> {
        let b = sessions.len();
        let vocab = self.config.vocab_size;
        let words = mask_words(vocab);
        let rows: Vec<RowCtl> = params
            .iter()
            .zip(controls.iter())
            .map(|(p, c)| RowCtl::new(p, c))
            .collect();
        let (mut guard, pool_guard, key) = self.batch_body(sessions, tokens, None)?;
        let batch = guard.as_mut().ok_or_else(|| ModelError::Internal {
            detail: "the batch scratch vanished".into(),
        })?;
        {
            let body = batch.launches.get_or_record(&key, || {
                Err(ModelError::Internal {
                    detail: "batch launches missing after recording".into(),
                })
            })?;
            let refs: Vec<&Dispatch> = body.body.iter().collect();
            self.submit_then("batched decode step", &refs, |_| {})?;
        }
        drop(pool_guard);
        for s in sessions.iter_mut() {
            s.pos += 1;
        }
        for (s, &tok) in sessions.iter_mut().zip(tokens) {
            s.log.consumed.push(tok);
        }
        // While the GPU runs the batch: the rows' masks.
        let mut masks = Vec::with_capacity(b);
        for (i, c) in controls.iter_mut().enumerate() {
            masks.push(if rows[i].masked {
                Some(c.fetch_mask(vocab, sessions[i].pos)?)
            } else {
                None
            });
        }
        for (s, r) in sessions.iter_mut().zip(&rows) {
            if r.penal {
                self.session_ctl(s, true)?;
                self.sync_counts(s);
            }
        }
        if batch.ctl.is_none() {
            let ctx = &self.ctx;
            let m = self.decode_block as u64;
            batch.ctl = Some(BatchCtl {
                adj: ctx.storage("batch adjusted logits", m * vocab as u64 * 4)?,
                mask: ctx.storage("batch token masks", m * words as u64 * 4)?,
                lp: ctx.storage("batch log-probabilities", lp_words_rows(self.decode_block))?,
                lp_readback: ctx
                    .readback_buffer("batch log-probabilities", lp_words_rows(self.decode_block)),
                launches: LaunchCache::default(),
            });
        }
        let super::BatchScratch {
            act,
            sampled,
            readback,
            ctl: bctl,
            ..
        } = batch;
        let bc = bctl.as_mut().ok_or_else(|| ModelError::Internal {
            detail: "batch controlled buffers missing".into(),
        })?;
        for (i, m) in masks.into_iter().enumerate() {
            if let Some(m) = m {
                self.write_mask(&bc.mask, i * words, m);
            }
        }
        let key = LaunchKey {
            kind: StepKind::BatchSample,
            rows: sessions
                .iter()
                .zip(&rows)
                .map(|(s, r)| Ok(r.key(s.id, self.epoch(s)?)))
                .collect::<Result<_, ModelError>>()?,
        };
        let counts: Vec<Option<&wgpu::Buffer>> = sessions
            .iter()
            .zip(&rows)
            .map(|(s, r)| {
                s.ctl
                    .as_ref()
                    .and_then(|c| c.counts.as_ref())
                    .filter(|_| r.penal)
            })
            .collect();
        let BatchCtl {
            adj,
            mask,
            lp,
            lp_readback,
            launches,
        } = bc;
        let (pre, sampler, post) = launches.get_or_record(&key, || {
            let v = vocab as u32;
            let logits = &act.stream.logits;
            let mut d = Vec::new();
            let mut after = Vec::new();
            for (i, r) in rows.iter().enumerate() {
                if let Some(n) = r.top {
                    let (first, second) = ctl::logprobs(
                        &self.ctx,
                        logits,
                        (i * vocab) as u32,
                        v,
                        n,
                        sampled,
                        i as u32,
                        lp,
                        (i * LP_WORDS) as u32,
                    )?;
                    d.push(first);
                    after.push(second);
                }
            }
            let adjusting = rows.iter().any(RowCtl::adjusts);
            if adjusting {
                for (i, r) in rows.iter().enumerate() {
                    let a = AdjustRow {
                        logits_offset: (i * vocab) as u32,
                        adj_offset: (i * vocab) as u32,
                        params: r.params,
                        counts: counts[i],
                        mask_offset: r.masked.then_some((i * words) as u32),
                    };
                    d.push(ctl::adjust(&self.ctx, logits, adj, mask, v, &a)?);
                }
            }
            let src = if adjusting { &*adj } else { logits };
            let srows: Vec<SampleRow> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| SampleRow {
                    logits_offset: (i * vocab) as u32,
                    out_offset: i as u32,
                    params: r.params,
                })
                .collect();
            let sampler = sample_rows(&self.ctx, src, v, &srows, &act.stream.step, sampled)?;
            let mut tail = Vec::new();
            for (i, c) in counts.iter().enumerate() {
                if let Some(cb) = c {
                    tail.push(ctl::count(&self.ctx, sampled, i as u32, cb, v)?);
                }
            }
            tail.extend(after);
            Ok::<_, ModelError>((d, sampler, tail))
        })?;
        let seeds: Vec<(u64, u32)> = sessions.iter().map(|s| (s.seed, s.counter)).collect();
        sampler.write_seeds(&self.ctx, &seeds)?;
        let all: Vec<&Dispatch> = pre.iter().chain(sampler.launches()).chain(post).collect();
        let lp_bytes = lp_words_rows(b);
        let want_lp = rows.iter().any(|r| r.top.is_some());
        self.submit_then("batched controlled sampler", &all, |enc| {
            enc.copy_buffer_to_buffer(sampled, 0, readback, 0, (b * 4) as u64);
            if want_lp {
                enc.copy_buffer_to_buffer(lp, 0, lp_readback, 0, lp_bytes);
            }
        })?;
        let ids: Vec<u32> =
            bytemuck::pod_collect_to_vec(&self.ctx.read_mapped(readback, (b * 4) as u64)?);
        let lpw: Vec<u32> = if want_lp {
            bytemuck::pod_collect_to_vec(&self.ctx.read_mapped(lp_readback, lp_bytes)?)
        } else {
            Vec::new()
        };
        self.ctx.check("batched controlled sampler")?;
        let mut out = Vec::with_capacity(b);
        for (i, s) in sessions.iter_mut().enumerate() {
            let token = ids[i];
            s.counter = s.counter.wrapping_add(1);
            let mut step = Sampled::token(token);
            if rows[i].top.is_some() {
                let (chosen, top) = ctl::parse_logprobs(&lpw[i * LP_WORDS..(i + 1) * LP_WORDS]);
                step.logprob = Some(chosen);
                step.top = top;
            }
            if token != qwgpu_ops::sampling::NON_FINITE {
                s.log.generated.push(token);
                if rows[i].penal {
                    Self::counted(s);
                }
            }
            out.push(step);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "controlled_tests.rs"]
mod tests;
