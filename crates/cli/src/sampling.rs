//! The sampling flags shared by `generate` and `chat`, each out-of-range
//! value an error naming the flag (checked before any weight is read).

use anyhow::{bail, Result};
use clap::Args;
use qwgpu_model::engine::SamplingParams;

#[derive(Args, Debug, Clone)]
pub struct SamplingFlags {
    /// Sampling temperature: 0 means greedy, otherwise a finite number > 0.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose
    /// probability reaches this; in (0, 1], 1 = off.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Top-k sampling: keep the k most likely tokens (0 = off; k >= vocab is off too).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Seed of the sampler's random numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingFlags {
    /// The engine's parameters, or an error naming the flag out of range.
    pub fn params(&self) -> Result<SamplingParams> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) || (t > 0.0 && !(1.0 / t).is_finite()) {
            bail!("--temperature {t}: must be 0 (greedy) or a finite number > 0");
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            bail!("--top-p {p}: must be in (0, 1] (1 = off)");
        }
        Ok(SamplingParams {
            temperature: t,
            top_k: self.top_k,
            top_p: p,
            ..SamplingParams::GREEDY
        })
    }
}

/// `--max-tokens` must leave something to generate.
pub fn check_max_tokens(max_tokens: usize) -> Result<()> {
    if max_tokens == 0 {
        bail!("--max-tokens 0: nothing to generate (use 1 or more)");
    }
    Ok(())
}
