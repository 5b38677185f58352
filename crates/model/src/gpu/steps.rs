//! The step sequence of a forward pass, once for both kinds of caller: native
//! callers block on each readback ([`Reads::Blocking`]: the future never
//! waits, [`ready`] takes its result), a web page awaits them
//! ([`Reads::Awaited`], [`GpuContext::read_mapped_async`]: the browser
//! resolves a mapping only after the caller yields).
//!
//! [`GpuContext::read_mapped_async`]: qwgpu_kernels::GpuContext::read_mapped_async

use std::future::Future;
use std::task::{Context, Poll, Waker};

use qwgpu_kernels::sample::SamplingParams;

use super::{GpuModel, GpuSession, Head};
use crate::ModelError;

/// How a step sequence reads its results back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reads {
    /// The blocking readbacks (native).
    Blocking,
    /// The readbacks as futures (the web; natively they are ready at once).
    Awaited,
}

impl GpuModel {
    /// [`GpuModel::forward`] with its readbacks awaited.
    pub async fn forward_async(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let head = if all { Head::All } else { Head::Last };
        self.run_steps(s, tokens, head, None, true, Reads::Awaited)
            .await
            .map(|(logits, _)| logits)
    }

    /// [`GpuModel::forward_sample`] with its readback awaited.
    pub async fn forward_sample_async(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        params: &SamplingParams,
    ) -> Result<u32, ModelError> {
        let (_, tok) = self
            .run_steps(s, tokens, Head::Last, Some(params), true, Reads::Awaited)
            .await?;
        Self::sampled(s, tok)
    }

    /// Runs `tokens` in steps with blocking readbacks; `read`: read back the
    /// logits of an unsampled `Head::Last` run (otherwise they stay in the
    /// activations, e.g. for the controlled sampler).
    pub(super) fn run(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        head: Head,
        sampling: Option<&SamplingParams>,
        read: bool,
    ) -> Result<(Vec<f32>, Option<u32>), ModelError> {
        ready(self.run_steps(s, tokens, head, sampling, read, Reads::Blocking))
    }

    /// The step sequence: `tokens` in steps of at most the chunk size, each
    /// within one KV page; logits of every row (`Head::All`) or the last, or
    /// the token sampled after the last step.
    async fn run_steps(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        head: Head,
        sampling: Option<&SamplingParams>,
        read: bool,
        reads: Reads,
    ) -> Result<(Vec<f32>, Option<u32>), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::InvalidArgument {
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
            // Only the last step samples.
            let step_sampling = sampling.filter(|_| last);
            self.write_inputs(s, part);
            // The step guard is a lock held across no await.
            {
                let guard = self.step_guard()?;
                let cb = self.step_commands(s, t, step_head, n_pages, step_sampling)?;
                self.ctx.check("forward step")?;
                self.ctx.queue.submit([cb]);
                drop(guard);
            }
            s.pos += t;
            s.log.consumed.extend_from_slice(part);
            // While the GPU runs this step, encode the next decode step (its
            // token is the one sampled into the ids buffer now, its position
            // and sampler counter are written at submission): wgpu records
            // ~1-3 µs of CPU per launch, 0.3-0.6 ms for a step of ~200, which
            // otherwise sits between two steps on the GPU.
            if let Some(p) = step_sampling {
                if s.pos < s.capacity() {
                    let (np, _) = s.pages_at(s.pos);
                    let key = self.decode_key(s, np, Some(p))?;
                    let cb = self.encode_decode(s, &key, Some(p))?;
                    s.next = Some((key, cb));
                }
            }
            let a = &s.act.stream;
            match step_head {
                Head::All => logits.extend(self.read_f32(reads, &a.logits, t * vocab).await?),
                Head::Last if sampling.is_none() && read => {
                    logits = self.read_f32(reads, &a.logits, vocab).await?
                }
                _ => {}
            }
            if step_sampling.is_some() {
                let bytes = match reads {
                    Reads::Blocking => self.ctx.read_mapped(&a.readback, 4)?,
                    Reads::Awaited => self.ctx.read_mapped_async(&a.readback, 4).await?,
                };
                sampled = Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                s.counter = s.counter.wrapping_add(1);
            }
        }
        self.ctx.check("forward")?;
        Ok((logits, sampled))
    }

    /// The first `n` values of `buf`, read back as `reads` says.
    async fn read_f32(
        &self,
        reads: Reads,
        buf: &wgpu::Buffer,
        n: usize,
    ) -> Result<Vec<f32>, ModelError> {
        Ok(match reads {
            Reads::Blocking => self.ctx.read_f32(buf, 0, n)?,
            Reads::Awaited => self.ctx.read_f32_async(buf, 0, n).await?,
        })
    }
}

/// The result of a future that never waits (a step sequence with blocking
/// reads): polled once; a future that would wait is an internal error, never
/// a hang.
pub(super) fn ready<T>(f: impl Future<Output = Result<T, ModelError>>) -> Result<T, ModelError> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(ModelError::Internal {
            detail: "a step sequence with blocking reads waited on a future".into(),
        }),
    }
}
