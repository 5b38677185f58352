//! Token sampling on the GPU, so a decode step reads back one `u32`, not the logits.
//!
//! # The rule (GPU [`sample`] and its CPU reference [`qwgpu_ops::sampling::sample`] implement the same one)
//!
//! Logits `l[0..V)`.
//! - **Non-finite rows**: a NaN or +∞ logit, or every logit −∞, gives
//!   [`NON_FINITE`] (`0xFFFFFFFF`, not a token) so the caller can stop with an
//!   error rather than print a made-up token; single −∞ logits are never picked.
//! - **Greedy** (`temperature == 0`): the argmax, lowest index on ties.
//! - Otherwise, with `m = max l` (finite here), the unnormalised probabilities are
//!   `e_i = exp((l_i − m) · inv_t)` in f32, `inv_t = 1 / temperature` (an f32
//!   division on the host), with `e_i = 0` for −∞/NaN logits and for results
//!   below the smallest normal f32 (GPUs may flush denormals). `p = e / Σe` is
//!   `softmax(l / T)`; only ratios matter, so the rule works on `e` directly.
//! - **Top-k** (`0 < top_k < V`): keep tokens with `e_i ≥ τ_k`, `τ_k` = the
//!   k-th largest `e` (ties at the threshold are all kept). Otherwise `τ_k = 0`.
//!   `M1 = Σ_{e_i ≥ τ_k} e_i`.
//! - **Top-p** (`top_p < 1`, applied after top-k like HF's warpers): `τ_p` = the
//!   largest value `v` with `Σ_{e_i ≥ v} e_i ≥ top_p · M1` (the smallest set of
//!   most likely tokens reaching `top_p` of the kept mass, with every token tied
//!   at its edge). The kept set is `{i : e_i ≥ τ, e_i > 0}`, `τ = max(τ_k, τ_p)`.
//! - **Pick**: `M = Σ_kept e_i`; the token is the first kept index (index order)
//!   whose cumulative kept mass exceeds `u · M`; if rounding leaves none, the
//!   last kept token.
//! - **Random number**: `u = uniform_random(seed, counter)` from the [`Step`]
//!   uniform (`seed_lo`, `seed_hi`, `counter`): `h = lowbias32(counter + 0x9e3779b9)`,
//!   `h = lowbias32(h ^ seed_lo)`, `h = lowbias32(h ^ seed_hi)`, `u = (h >> 8) · 2⁻²⁴`
//!   (lowbias32: Chris Wellons' integer hash). Bit-exact on host and GPU.
//!
//! The GPU and the host agree except where the GPU's `exp` (a few ulp) or its
//! f32 summation order (the host sums in f64) moves a boundary across `u · M` or
//! `top_p · M1`: a probability of order 1e-6 per boundary.
//!
//! # Kernels
//! The row is split into `nblocks ≤ 256` blocks of ≥ 1024 logits.
//! 1. `sample_partial` (one workgroup per block): block max and argmax (a NaN
//!    counts as +∞ there, so the row max is finite exactly when the row is).
//! 2. Greedy: `sample_greedy` (one workgroup) reduces them and writes the token.
//! 3. `sample_exp` (per block): `e` into a scratch buffer.
//! 4. Top-k, then top-p: five `sample_pass` launches each (per block). A pass
//!    evaluates its predicate (count of `e ≥ v`, or mass of `e ≥ v`) at 64
//!    thresholds, so five passes pin the f32 bit pattern of `τ` exactly
//!    (64⁵ > 2³⁰ keys); each pass first finishes the previous one from its
//!    per-block partial sums, identically in every workgroup, so no
//!    single-workgroup step sits between passes.
//! 5. `sample_mass` (per block): kept mass and last kept index of each block.
//! 6. `sample_select` (one workgroup): the block holding `u · M`, then a
//!    workgroup prefix sum inside it.
//!
//! Launches: 2 (greedy), 4 (temperature only), 9 (+ top-k or top-p), 14 (both).
//! Scratch buffers are made per [`sample`] call and kept alive by the bind
//! groups; the launches are reusable every step (the Step uniform changes).

use crate::dispatch::Dispatch;
use crate::shaders::REDUCE_SHARED;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::step::STEP;
use crate::{GpuContext, KernelError, Step};

crate::shader!(SAMPLE_COMMON, "sample_common.wgsl");
crate::shader!(SAMPLE_ARGMAX, "sample_argmax.wgsl");
crate::shader!(SAMPLE_SEARCH, "sample_search.wgsl");
crate::shader!(SAMPLE_PARTIAL, "sample_partial.wgsl");
crate::shader!(SAMPLE_GREEDY, "sample_greedy.wgsl");
crate::shader!(SAMPLE_EXP, "sample_exp.wgsl");
crate::shader!(SAMPLE_PASS, "sample_pass.wgsl");
crate::shader!(SAMPLE_MASS, "sample_mass.wgsl");
crate::shader!(SAMPLE_SELECT, "sample_select.wgsl");
crate::shader!(SAMPLE_UNIFORM, "sample_uniform.wgsl");

pub use qwgpu_ops::sampling::{SamplingParams, NON_FINITE};

/// Largest vocabulary [`sample`] accepts (indices are compared as exact f32).
pub const MAX_VOCAB: u32 = 1 << 24;

crate::uniform_struct! {
    /// Mirrors `struct SampleParams` in `shaders/sample_common.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct SampleUniform as "SampleParams" {
        logits_off: u32,
        vocab: u32,
        out_off: u32,
        top_k: u32,
        inv_t: f32,
        top_p: f32,
        nblocks: u32,
        block: u32,
    }
}

crate::uniform_struct! {
    /// Mirrors `struct PassParams` in `shaders/sample_search.wgsl`.
    #[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    struct PassParams as "PassParams" {
        slot: u32,
        prev: u32,
        has_prev: u32,
        prev_mass: u32,
        mass: u32,
        restart: u32,
        p0: u32,
        _pad: u32,
    }
}

const fn sample_spec(
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

static PARTIAL: KernelSpec = sample_spec(
    "sample_partial",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_PARTIAL),
    ],
    &[&SampleUniform::LAYOUT],
);
static GREEDY: KernelSpec = sample_spec(
    "sample_greedy",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_ARGMAX),
        Part::File(&SAMPLE_GREEDY),
    ],
    &[&SampleUniform::LAYOUT],
);
static EXP: KernelSpec = sample_spec(
    "sample_exp",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_ARGMAX),
        Part::File(&SAMPLE_EXP),
    ],
    &[&SampleUniform::LAYOUT],
);
static PASS: KernelSpec = sample_spec(
    "sample_pass",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_SEARCH),
        Part::File(&SAMPLE_PASS),
    ],
    &[&SampleUniform::LAYOUT, &PassParams::LAYOUT],
);
static MASS: KernelSpec = sample_spec(
    "sample_mass",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_SEARCH),
        Part::File(&SAMPLE_MASS),
    ],
    &[&SampleUniform::LAYOUT, &PassParams::LAYOUT],
);
static SELECT: KernelSpec = sample_spec(
    "sample_select",
    &[
        Part::Reduce,
        Part::File(&STEP),
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_ARGMAX),
        Part::File(&SAMPLE_SELECT),
    ],
    &[&SampleUniform::LAYOUT, &Step::LAYOUT],
);
/// The hash probe always takes the shared-memory reduce file (it reduces nothing).
static UNIFORM_PROBE: KernelSpec = sample_spec(
    "sample_uniform",
    &[
        Part::File(&REDUCE_SHARED),
        Part::File(&STEP),
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_UNIFORM),
    ],
    &[&SampleUniform::LAYOUT, &Step::LAYOUT],
);

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[
    &PARTIAL,
    &GREEDY,
    &EXP,
    &PASS,
    &MASS,
    &SELECT,
    &UNIFORM_PROBE,
];

/// Every sampling kernel runs 256 invocations (64 thresholds × 4 slices in a pass).
const WG: u32 = 256;
/// Search passes per threshold (64⁵ > 2³⁰ keys).
const PASSES: u32 = 5;
/// Thresholds per pass.
const R: u32 = 64;
const MAX_BLOCKS: u32 = 256;
const MIN_BLOCK: u32 = 1024;

fn arg_err(detail: String) -> KernelError {
    KernelError::Arguments {
        kernel: "sample",
        detail,
    }
}

/// Picks a token from `logits[logits_offset .. logits_offset + vocab]` (f32)
/// by the rule in the module docs and writes it to `out[out_offset]` (u32).
/// The random number comes from `step` (a [`Step`] uniform buffer)
/// when the launches run, so they can be recorded once and reused every token.
/// Record the returned launches in order, in one pass.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    logits_offset: u32,
    vocab: u32,
    params: &SamplingParams,
    step: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_offset: u32,
) -> Result<Vec<Dispatch>, KernelError> {
    params.validate().map_err(arg_err)?;
    if vocab == 0 || vocab > MAX_VOCAB {
        return Err(arg_err(format!("vocab {vocab} must be in 1..={MAX_VOCAB}")));
    }
    if (logits_offset as u64 + vocab as u64) * 4 > logits.size() {
        return Err(arg_err(format!(
            "logits {logits_offset}..{logits_end} exceed their buffer of {logits_size} bytes",
            logits_end = logits_offset as u64 + vocab as u64,
            logits_size = logits.size()
        )));
    }
    if (out_offset as u64 + 1) * 4 > out.size() {
        return Err(arg_err(format!(
            "out[{out_offset}] is past its buffer of {out_size} bytes",
            out_size = out.size()
        )));
    }
    if step.size() < std::mem::size_of::<crate::Step>() as u64 {
        return Err(arg_err(format!(
            "step buffer of {} bytes is smaller than a Step",
            step.size()
        )));
    }
    let n_pad = vocab.div_ceil(4) * 4;
    let block = MIN_BLOCK.max(n_pad.div_ceil(MAX_BLOCKS).div_ceil(4) * 4);
    let nblocks = n_pad.div_ceil(block);
    let greedy = params.temperature == 0.0;
    let top_k = if params.top_k < vocab {
        params.top_k
    } else {
        0
    };
    let sp = SampleUniform {
        logits_off: logits_offset,
        vocab,
        out_off: out_offset,
        top_k,
        inv_t: if greedy {
            0.0
        } else {
            1.0 / params.temperature
        },
        top_p: params.top_p,
        nblocks,
        block,
    };
    // One uniform serves every launch of the call.
    let spb = ctx.uniform("sample params", &sp);
    let launch = |spec: &'static KernelSpec, groups: u32| {
        ctx.launch(spec)
            .constant("WG", WG)
            .params_buffer::<SampleUniform>(&spb)
            .grid([groups, 1, 1])
    };
    let part = ctx.storage("sample partials", nblocks as u64 * 8)?;
    let mut out_d = Vec::new();
    out_d.push(
        launch(&PARTIAL, nblocks)
            .bind("logits", logits)
            .bind("part", &part)
            .record()?,
    );
    if greedy {
        out_d.push(
            launch(&GREEDY, 1)
                .bind("part", &part)
                .bind("out", out)
                .record()?,
        );
        return Ok(out_d);
    }
    let ev = ctx.storage("sample e", n_pad as u64 * 4)?;
    out_d.push(
        launch(&EXP, nblocks)
            .bind("logits", logits)
            .bind("part", &part)
            .bind("ev", &ev)
            .record()?,
    );
    let topk_on = top_k > 0;
    let topp_on = params.top_p < 1.0;
    let slots = PASSES * (topk_on as u32 + topp_on as u32);
    let psum = ctx.storage(
        "sample pass sums",
        slots.max(1) as u64 * nblocks as u64 * R as u64 * 4,
    )?;
    let sstate = ctx.storage("sample search state", (slots.max(1) as u64) * 16)?;
    let blk = ctx.storage("sample block masses", (2 * nblocks as u64 + 1) * 4)?;
    let mut passes = Vec::new();
    let mut slot = 0u32;
    if topk_on {
        for k in 0..PASSES {
            passes.push(PassParams {
                slot,
                prev: slot.saturating_sub(1),
                has_prev: (k > 0) as u32,
                ..Default::default()
            });
            slot += 1;
        }
    }
    if topp_on {
        let p0 = slot;
        for k in 0..PASSES {
            let first = k == 0;
            passes.push(PassParams {
                slot,
                prev: slot.saturating_sub(1),
                has_prev: (!first || topk_on) as u32,
                prev_mass: (!first) as u32,
                mass: 1,
                restart: first as u32,
                p0,
                _pad: 0,
            });
            slot += 1;
        }
    }
    for pp in &passes {
        out_d.push(
            launch(&PASS, nblocks)
                .bind("ev4", &ev)
                .bind("psum4", &psum)
                .bind("sstate", &sstate)
                .params(pp)
                .record()?,
        );
    }
    let last = passes.last().copied();
    let mp = PassParams {
        slot,
        prev: last.map_or(0, |p| p.slot),
        has_prev: last.is_some() as u32,
        prev_mass: last.map_or(0, |p| p.mass),
        p0: last.map_or(0, |p| p.p0),
        ..Default::default()
    };
    out_d.push(
        launch(&MASS, nblocks)
            .bind("ev4", &ev)
            .bind("psum4", &psum)
            .bind("sstate", &sstate)
            .bind("blk", &blk)
            .params(&mp)
            .record()?,
    );
    out_d.push(
        launch(&SELECT, 1)
            .bind("ev", &ev)
            .bind("part", &part)
            .bind("blk", &blk)
            .bind("out", out)
            .bind("step", step)
            .record()?,
    );
    Ok(out_d)
}

/// A launch writing `uniform_random(seed, counter)` of the `step` buffer's
/// current values as f32 bits to `out[out_offset]` (tests and reproducibility
/// checks of the GPU hash).
pub fn uniform_probe(
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_offset: u32,
) -> Result<Dispatch, KernelError> {
    if (out_offset as u64 + 1) * 4 > out.size() {
        return Err(arg_err(format!(
            "out[{out_offset}] is past its buffer of {out_size} bytes",
            out_size = out.size()
        )));
    }
    let sp = SampleUniform {
        logits_off: 0,
        vocab: 1,
        out_off: out_offset,
        top_k: 0,
        inv_t: 0.0,
        top_p: 1.0,
        nblocks: 0,
        block: 0,
    };
    ctx.launch(&UNIFORM_PROBE)
        .constant("WG", 64u32)
        .bind("out", out)
        .bind("step", step)
        .params(&sp)
        .grid([1, 1, 1])
        .record()
}
