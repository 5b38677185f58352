//! Chunked prefill: a prompt runs in pieces of at most the step's token
//! budget (`--prefill-chunk`), one piece per scheduler step, between the
//! decode steps of the running streams (as vLLM and sglang schedule it), so
//! one long prompt never stalls every stream for its whole prefill.
//!
//! Prompts run in arrival order; when one ends within a step's budget, the
//! next one starts in the same step. A request's session is made (and the
//! longest cached prefix of its prompt restored) only when its prefill
//! begins, so it sees the snapshots of every prompt prefilled before it. A
//! piece stops at the chat template's boundary when that position is worth a
//! snapshot of its own. A prompt's last piece samples its first token; the
//! earlier pieces produce nothing that is read (see [`Engine::prefill`]).

use qwgpu_model::engine::Session;

use crate::metrics::{AdmissionFailure, Metrics};
use crate::prefix_cache::entry_bytes;
use crate::scheduler::{Active, Batch, Engine, Event, Job, JobOptions, Waiting};

/// The request being prefilled.
pub(crate) struct Prefill {
    pub(crate) id: u64,
    pub(crate) job: Job,
    session: Session,
    /// Prompt tokens the session has consumed.
    pos: usize,
    /// Where the prompt's own snapshot is taken (the template's boundary,
    /// when the cache wants it), if still ahead.
    snapshot_at: Option<usize>,
}

/// One piece of a prompt run in a step: tokens `from..to` of request `request`'s prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrefillChunk {
    pub(crate) request: u64,
    pub(crate) from: usize,
    pub(crate) to: usize,
    /// The prompt's length (`to == prompt` on its last piece, which samples
    /// the first token).
    pub(crate) prompt: usize,
}

impl Engine {
    /// Runs up to the step's budget of pending prompt tokens, in arrival
    /// order; requests whose prompt is done join `batch.active` with their
    /// first token sent. Returns the pieces run.
    pub(crate) fn prefill(&mut self, batch: &mut Batch) -> Vec<PrefillChunk> {
        let mut budget = match self.prefill_chunk {
            0 => usize::MAX,
            n => n,
        };
        let mut chunks = Vec::new();
        while budget > 0 {
            let mut p = match batch.prefilling.take() {
                Some(p) => p,
                None => match batch.waiting.pop_front() {
                    Some(w) => match self.begin(w) {
                        Some(p) => p,
                        None => continue,
                    },
                    None => break,
                },
            };
            let n = p.job.prompt.len();
            let mut to = n.min(p.pos.saturating_add(budget));
            if let Some(b) = p.snapshot_at.filter(|&b| b <= to) {
                to = b;
            }
            let t = to - p.pos;
            budget -= t;
            chunks.push(PrefillChunk {
                request: p.id,
                from: p.pos,
                to,
                prompt: n,
            });
            Metrics::add(&self.metrics.prefill_chunks, 1);
            Metrics::add(&self.metrics.prefill_tokens, t as u64);
            if to == n {
                batch.active.extend(self.finish(p));
                continue;
            }
            // Not the prompt's end: its logits are not needed.
            if let Err(e) = self.model.forward(&mut p.session, &p.job.prompt[p.pos..to]) {
                self.refuse(&p.job, AdmissionFailure::Prefill, &e);
                continue;
            }
            p.pos = to;
            if p.snapshot_at == Some(to) {
                p.snapshot_at = None;
                self.remember(&p.job.prompt[..to], &p.session);
            }
            batch.prefilling = Some(p);
        }
        chunks
    }

    /// Starts a waiting request's prefill: its session, with the longest
    /// cached prefix restored; `None` when that failed (the client is told).
    fn begin(&mut self, w: Waiting) -> Option<Prefill> {
        let Waiting { id, job } = w;
        let (session, cached) = match self.start_session(&job) {
            Ok(s) => s,
            Err((stage, e)) => {
                self.refuse(&job, stage, &e);
                return None;
            }
        };
        self.metrics.queue_wait.observe(job.opts.accepted.elapsed());
        let _ = job.events.send(Event::Admitted { cached });
        for f in &job.opts.forks {
            let _ = f.events.send(Event::Admitted { cached });
        }
        let n = job.prompt.len();
        let snapshot_at = job.boundary.filter(|&b| {
            b > cached
                && b < n
                && self.cache.fits(entry_bytes(&self.config, b, self.gpu))
                && !self.cache.contains(&job.prompt[..b])
        });
        Some(Prefill {
            id,
            job,
            session,
            pos: cached,
            snapshot_at,
        })
    }

    /// Runs the prompt's last piece and samples the first token; the
    /// request joins the decode batch unless that token already ends it.
    /// A request of several choices forks the session before the prompt's
    /// last token: each choice runs that token on its own fork and samples
    /// with its own seed (the prompt is prefilled once).
    fn finish(&mut self, p: Prefill) -> Vec<Active> {
        let Prefill {
            id,
            mut job,
            mut session,
            mut pos,
            ..
        } = p;
        // Each fork follows the request's grammar (if any) on a copy of its
        // state, taken before any reply token: the constraint starts at the
        // first generated token (or after `</think>`) for every choice.
        let mut forked = Vec::new();
        if !job.opts.forks.is_empty() {
            let last = job.prompt.len() - 1;
            if pos < last {
                if let Err(e) = self.model.forward(&mut session, &job.prompt[pos..last]) {
                    self.refuse(&job, AdmissionFailure::Prefill, &e);
                    return Vec::new();
                }
                pos = last;
            }
            for f in std::mem::take(&mut job.opts.forks) {
                let opts = JobOptions {
                    ended: f.ended,
                    forks: Vec::new(),
                    ..job.opts.clone()
                };
                let mut constraint = job.constraint.as_ref().map(|c| c.fork());
                let first = self.model.fork(&session).and_then(|mut s| {
                    self.model.set_seed(&mut s, f.seed);
                    let t = self.model.sample_step(
                        &mut s,
                        &job.prompt[last..],
                        &job.params,
                        qwgpu_model::engine::StepControls {
                            top_logprobs: job.top_logprobs,
                            mask: constraint.as_mut().map(crate::constrain::hook::mask_fn),
                        },
                    )?;
                    Ok((s, t))
                });
                Metrics::add(&self.metrics.prefill_tokens, 1);
                match first {
                    Ok((s, t)) => forked.push(Active {
                        id,
                        session: s,
                        ids: job.prompt.clone(),
                        next: t.token,
                        generated: 0,
                        max_tokens: job.max_tokens,
                        params: job.params,
                        top_logprobs: job.top_logprobs,
                        next_logprobs: crate::sampling_options::TokenLogprobs::from_sampled(&t),
                        events: f.events,
                        constraint,
                        opts,
                        last_token: None,
                    }),
                    Err(e) => {
                        self.metrics.admission_failed(AdmissionFailure::Prefill);
                        let _ = f.events.send(Event::Error(e.to_string()));
                    }
                }
            }
        }
        let controls = qwgpu_model::engine::StepControls {
            top_logprobs: job.top_logprobs,
            mask: job.constraint.as_mut().map(crate::constrain::hook::mask_fn),
        };
        let first =
            match self
                .model
                .sample_step(&mut session, &job.prompt[pos..], &job.params, controls)
            {
                Ok(t) => t,
                Err(e) => {
                    // The forks made so far go on: they have their first token.
                    self.refuse(&job, AdmissionFailure::Prefill, &e);
                    return self.deliver_all(forked);
                }
            };
        self.remember(&job.prompt, &session);
        let a = Active {
            id,
            session,
            ids: job.prompt,
            next: first.token,
            generated: 0,
            max_tokens: job.max_tokens,
            params: job.params,
            top_logprobs: job.top_logprobs,
            next_logprobs: crate::sampling_options::TokenLogprobs::from_sampled(&first),
            events: job.events,
            constraint: job.constraint,
            opts: job.opts,
            last_token: None,
        };
        self.deliver_all(std::iter::once(a).chain(forked))
    }

    /// Sends each new sequence its first token; returns those that go on.
    fn deliver_all(&mut self, actives: impl IntoIterator<Item = Active>) -> Vec<Active> {
        let mut out = Vec::new();
        for mut a in actives {
            if self.deliver(&mut a) {
                out.push(a);
            }
        }
        out
    }
}
