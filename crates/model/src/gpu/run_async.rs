//! The forward pass for callers that cannot block (a web page): the same
//! steps as [`GpuModel::forward`] / [`GpuModel::forward_sample`], with each
//! readback awaited ([`GpuContext::read_mapped_async`]). Natively the
//! readbacks are ready at once, so these return what the blocking calls do.
//!
//! [`GpuContext::read_mapped_async`]: qwgpu_kernels::GpuContext::read_mapped_async

use qwgpu_kernels::sample::SamplingParams;

use super::{GpuModel, GpuSession, Head};
use crate::ModelError;

impl GpuModel {
    /// [`GpuModel::forward`] with its readbacks awaited.
    pub async fn forward_async(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        all: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let head = if all { Head::All } else { Head::Last };
        self.run_async(s, tokens, head, None)
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
        let (_, tok) = self.run_async(s, tokens, Head::Last, Some(params)).await?;
        tok.ok_or_else(|| ModelError::Internal {
            detail: "sampling produced no token".into(),
        })
    }

    /// `GpuModel::run`, step for step (keep the two in step), awaiting reads.
    async fn run_async(
        &self,
        s: &mut GpuSession,
        tokens: &[u32],
        head: Head,
        sampling: Option<&SamplingParams>,
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
                Head::All => logits.extend(self.ctx.read_f32_async(&a.logits, 0, t * vocab).await?),
                Head::Last if sampling.is_none() => {
                    logits = self.ctx.read_f32_async(&a.logits, 0, vocab).await?
                }
                _ => {}
            }
            if step_sampling.is_some() {
                let bytes = self.ctx.read_mapped_async(&a.readback, 4).await?;
                sampled = Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                s.counter = s.counter.wrapping_add(1);
            }
        }
        self.ctx.check("forward")?;
        Ok((logits, sampled))
    }
}
