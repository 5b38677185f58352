//! The sampler's per-step controls on the GPU, around the pick of
//! [`super::sample`] / [`super::sample_rows`] (rules and CPU reference:
//! [`qwgpu_ops::sampling::controls`]):
//!
//! - [`adjust`] (before the pick): one row's logits → an adjusted copy, with
//!   the penalties from the row's token counts (one `u32` per vocabulary
//!   entry, kept on the device) and the allowed-token mask (a bitset the host
//!   uploads each step); the pick then reads the copy.
//! - [`count`] (after the pick): the sampled token's generated count += 1 in
//!   the row's counts, from the id the pick wrote (no readback).
//! - [`logprobs`] (a block pass before the pick, a final one after it): the
//!   raw logits' log-softmax at the sampled token and the `n ≤ 20` most
//!   likely tokens, into [`LP_WORDS`] words of an output buffer (the only
//!   numbers read back): `[log p(token), listed, (id, log p) × 20]`.
//!
//! Each launch serves one row (its own counts buffer is bound).

use crate::dispatch::Dispatch;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::{GpuContext, KernelError};
use qwgpu_ops::sampling::controls::{mask_words, MAX_TOP_LOGPROBS};
use qwgpu_ops::sampling::SamplingParams;

crate::shader!(SAMPLE_ADJUST, "sample_adjust.wgsl");
crate::shader!(SAMPLE_COUNT, "sample_count.wgsl");
crate::shader!(SAMPLE_LOGPROBS, "sample_logprobs.wgsl");

/// Words of one row's [`logprobs`] output: chosen, listed, 20 (id, log p) pairs.
pub const LP_WORDS: usize = 2 + 2 * MAX_TOP_LOGPROBS;
/// Words per block of the log-probability partials (max, sum, 20 pairs).
const LP_PART: u64 = 42;
const WG: u32 = 256;

crate::uniform_struct! {
    /// Mirrors `struct AdjustParams` in `shaders/sample_adjust.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct AdjustParams as "AdjustParams" {
        vocab: u32,
        logits_off: u32,
        adj_off: u32,
        mask_off: u32,
        flags: u32,
        rep: f32,
        inv_rep: f32,
        presence: f32,
        frequency: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct CountParams` in `shaders/sample_count.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct CountParams as "CountParams" {
        vocab: u32,
        out_off: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct LpParams` in `shaders/sample_logprobs.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct LpParams as "LpParams" {
        vocab: u32,
        logits_off: u32,
        nblocks: u32,
        block: u32,
        n: u32,
        out_off: u32,
        lp_off: u32,
        _pad: u32,
    }
}

const fn spec(
    entry: &'static str,
    parts: &'static [Part],
    uniforms: &'static [&'static crate::spec::UniformLayout],
) -> KernelSpec {
    KernelSpec {
        label: entry,
        parts,
        entry,
        uniforms,
        needs: Needs::Baseline,
    }
}

static ADJUST: KernelSpec = spec(
    "sample_adjust",
    &[Part::File(&SAMPLE_ADJUST)],
    &[&AdjustParams::LAYOUT],
);
static COUNT: KernelSpec = spec(
    "sample_count",
    &[Part::File(&SAMPLE_COUNT)],
    &[&CountParams::LAYOUT],
);
static LP_PARTIAL: KernelSpec = spec(
    "sample_lp_partial",
    &[Part::Reduce, Part::File(&SAMPLE_LOGPROBS)],
    &[&LpParams::LAYOUT],
);
static LP_FINAL: KernelSpec = spec(
    "sample_lp_final",
    &[Part::Reduce, Part::File(&SAMPLE_LOGPROBS)],
    &[&LpParams::LAYOUT],
);

/// The kernels of this module (registered with the sampler's).
pub(crate) static SPECS: &[&KernelSpec] = &[&ADJUST, &COUNT, &LP_PARTIAL, &LP_FINAL];

fn arg_err(detail: String) -> KernelError {
    KernelError::Arguments {
        kernel: "sample controls",
        detail,
    }
}

fn check_range(what: &str, buf: &wgpu::Buffer, off: u64, len: u64) -> Result<(), KernelError> {
    if (off + len) * 4 > buf.size() {
        return Err(arg_err(format!(
            "{what} {off}..{end} exceed their buffer of {size} bytes",
            end = off + len,
            size = buf.size()
        )));
    }
    Ok(())
}

/// One row of [`adjust`]: where its logits are, where the adjusted copy
/// goes, its parameters (penalties), its counts (when penalised) and its
/// mask's first word (when masked).
#[derive(Debug, Clone, Copy)]
pub struct AdjustRow<'a> {
    pub logits_offset: u32,
    pub adj_offset: u32,
    pub params: SamplingParams,
    /// `vocab` u32 (bit 31: in the context; bits 0..31: times generated);
    /// `None`: no penalties.
    pub counts: Option<&'a wgpu::Buffer>,
    /// The row's mask: words `mask_offset .. mask_offset + ceil(vocab / 32)`
    /// of the mask buffer; `None`: unmasked.
    pub mask_offset: Option<u32>,
}

/// `adj[adj_offset + i] = ` the row's logit `i` after penalties and mask.
pub fn adjust(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    adj: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    vocab: u32,
    row: &AdjustRow<'_>,
) -> Result<Dispatch, KernelError> {
    let v = vocab as u64;
    row.params.validate().map_err(arg_err)?;
    check_range("logits", logits, row.logits_offset as u64, v)?;
    check_range("adjusted logits", adj, row.adj_offset as u64, v)?;
    let penalties = row.counts.is_some() && row.params.has_penalties();
    if let Some(c) = row.counts {
        check_range("token counts", c, 0, v)?;
    }
    if let Some(m) = row.mask_offset {
        check_range(
            "mask words",
            mask,
            m as u64,
            mask_words(vocab as usize) as u64,
        )?;
    }
    let r = row.params.repetition_penalty;
    let p = AdjustParams {
        vocab,
        logits_off: row.logits_offset,
        adj_off: row.adj_offset,
        mask_off: row.mask_offset.unwrap_or(0),
        flags: penalties as u32 | (row.mask_offset.is_some() as u32) << 1,
        rep: r,
        inv_rep: 1.0 / r,
        presence: row.params.presence_penalty,
        frequency: row.params.frequency_penalty,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let dummy;
    let counts = match row.counts {
        Some(c) => c,
        None => {
            dummy = ctx.storage("no token counts", 4)?;
            &dummy
        }
    };
    ctx.launch(&ADJUST)
        .constant("WG", WG)
        .bind("logits", logits)
        .bind("adj", adj)
        .bind("counts", counts)
        .bind("mask", mask)
        .params(&p)
        .grid([vocab.div_ceil(WG), 1, 1])
        .record()
}

/// `counts[out[out_offset]] += 1` (generated count; ids past `vocab` count nothing).
pub fn count(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    out_offset: u32,
    counts: &wgpu::Buffer,
    vocab: u32,
) -> Result<Dispatch, KernelError> {
    check_range("out", out, out_offset as u64, 1)?;
    check_range("token counts", counts, 0, vocab as u64)?;
    ctx.launch(&COUNT)
        .bind("out", out)
        .bind("counts", counts)
        .params(&CountParams {
            vocab,
            out_off: out_offset,
            _pad0: 0,
            _pad1: 0,
        })
        .grid([1, 1, 1])
        .record()
}

/// Blocks of the log-probability pass: at most 256 (one per invocation of
/// the final merge) of at least 1024 logits.
fn lp_blocks(vocab: u32) -> (u32, u32) {
    let block = 1024u32.max(vocab.div_ceil(256));
    (vocab.div_ceil(block), block)
}

/// The two launches of a row's log-probabilities: record the first before
/// the pick (it reads only the raw logits) and the second after it (it reads
/// the token the pick wrote to `out[out_offset]`); they write
/// `lp[lp_offset .. lp_offset + LP_WORDS]` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn logprobs(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    logits_offset: u32,
    vocab: u32,
    n: u32,
    out: &wgpu::Buffer,
    out_offset: u32,
    lp: &wgpu::Buffer,
    lp_offset: u32,
) -> Result<(Dispatch, Dispatch), KernelError> {
    if n as usize > MAX_TOP_LOGPROBS {
        return Err(arg_err(format!(
            "{n} top log-probabilities; at most {MAX_TOP_LOGPROBS}"
        )));
    }
    if vocab == 0 || vocab > super::MAX_VOCAB {
        return Err(arg_err(format!(
            "vocab {vocab} must be in 1..={max}",
            max = super::MAX_VOCAB
        )));
    }
    check_range("logits", logits, logits_offset as u64, vocab as u64)?;
    check_range("out", out, out_offset as u64, 1)?;
    check_range("log-probabilities", lp, lp_offset as u64, LP_WORDS as u64)?;
    let (nblocks, block) = lp_blocks(vocab);
    let p = LpParams {
        vocab,
        logits_off: logits_offset,
        nblocks,
        block,
        n,
        out_off: out_offset,
        lp_off: lp_offset,
        _pad: 0,
    };
    let part = ctx.storage("log-probability partials", nblocks as u64 * LP_PART * 4)?;
    let pb = ctx.uniform("lp params", &p);
    let first = ctx
        .launch(&LP_PARTIAL)
        .constant("WG", WG)
        .bind("logits", logits)
        .bind("part", &part)
        .params_buffer::<LpParams>(&pb)
        .grid([nblocks, 1, 1])
        .record()?;
    let second = ctx
        .launch(&LP_FINAL)
        .constant("WG", WG)
        .bind("logits", logits)
        .bind("part", &part)
        .bind("out", out)
        .bind("lp", lp)
        .params_buffer::<LpParams>(&pb)
        .grid([1, 1, 1])
        .record()?;
    Ok((first, second))
}

/// One row's [`logprobs`] output words as `(log p(token), top pairs)`.
pub fn parse_logprobs(words: &[u32]) -> (f32, Vec<(u32, f32)>) {
    let chosen = f32::from_bits(words[0]);
    let listed = (words[1] as usize).min(MAX_TOP_LOGPROBS);
    let top = (0..listed)
        .map(|r| (words[2 + 2 * r], f32::from_bits(words[3 + 2 * r])))
        .collect();
    (chosen, top)
}
