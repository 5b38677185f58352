//! Sampled steps with per-step controls (mask callback, penalties, min-p,
//! log-probabilities): see [`crate::sampling::StepControls`].
//!
//! A plain step (no mask, no log-probabilities, no penalty, no min-p) takes
//! the GPU sampler of [`GpuModel::forward_sample`] / [`GpuModel::decode_batch`].
//! A controlled step submits the forward pass, then calls the mask callback
//! while the GPU runs it, then picks the token.

use super::GpuModel;
use super::GpuSession;
use crate::sampling::{host_step, Sampled, SamplingParams, StepControls};
use crate::ModelError;

/// Whether a step needs more than the plain GPU sampler.
pub(crate) fn is_controlled(p: &SamplingParams, c: &StepControls<'_>) -> bool {
    !c.is_plain() || p.has_penalties() || p.min_p > 0.0
}

impl GpuModel {
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
        let logits = self.forward(s, tokens, false)?;
        let vocab = self.config.vocab_size;
        let mask = controls.fetch_mask(vocab, s.pos)?;
        let out = host_step(
            &logits,
            params,
            controls.top_logprobs,
            mask.as_deref(),
            &s.log,
            (s.seed, s.counter),
            s.pos,
        );
        s.counter = s.counter.wrapping_add(1);
        let out = out?;
        s.log.generated.push(out.token);
        Ok(out)
    }

    /// [`GpuModel::decode_batch`] with per-row controls.
    pub fn decode_batch_with(
        &self,
        sessions: &mut [&mut GpuSession],
        tokens: &[u32],
        params: &[SamplingParams],
        controls: &mut [StepControls<'_>],
    ) -> Result<Vec<Sampled>, ModelError> {
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
        let mut out = Vec::with_capacity(sessions.len());
        for (((s, &t), p), c) in sessions
            .iter_mut()
            .zip(tokens)
            .zip(params)
            .zip(controls.iter_mut())
        {
            out.push(self.sample_step(s, &[t], p, c)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "controlled_tests.rs"]
mod tests;
