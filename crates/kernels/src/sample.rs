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
//! - **Min-p** (sampled rows): `e_i = 0` where `e_i < min_p` (`e = 1` at the
//!   max), before top-k / top-p.
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
//! Penalties, the allowed-token mask and log-probabilities are launches of
//! their own around these ([`controls`]).
//! Scratch buffers are made per [`sample`] call and kept alive by the bind
//! groups; the launches are reusable every step (the Step uniform changes).
//!
//! # Rows
//! Every launch samples a group of rows (grid y = row in the group), each
//! with its own logits, output slot and parameters from a small storage
//! table, and its own part of every scratch buffer. [`sample`] is one row
//! whose random number comes from the Step uniform; [`sample_rows`] (a
//! batched decode step) groups its rows by launch shape (greedy; top-k on or
//! off; top-p on or off), so a step of many sessions runs the launch counts
//! above once per shape present, with each row's seed and counter written to
//! the table before each run ([`RowSampler::write_seeds`]).

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

#[path = "sample_controls.rs"]
pub mod controls;

/// Largest vocabulary [`sample`] accepts (indices are compared as exact f32).
pub const MAX_VOCAB: u32 = 1 << 24;

crate::uniform_struct! {
    /// Mirrors `struct SampleShape` in `shaders/sample_common.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct SampleShape as "SampleShape" {
        vocab: u32,
        nblocks: u32,
        block: u32,
        slots: u32,
        row0: u32,
        seed_from_step: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// Mirrors `struct SampleRow` in `shaders/sample_common.wgsl` (a storage table).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowEntry {
    logits_off: u32,
    out_off: u32,
    top_k: u32,
    inv_t: f32,
    top_p: f32,
    seed_lo: u32,
    seed_hi: u32,
    counter: u32,
    min_p: f32,
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
    &[&SampleShape::LAYOUT],
);
static GREEDY: KernelSpec = sample_spec(
    "sample_greedy",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_ARGMAX),
        Part::File(&SAMPLE_GREEDY),
    ],
    &[&SampleShape::LAYOUT],
);
static EXP: KernelSpec = sample_spec(
    "sample_exp",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_ARGMAX),
        Part::File(&SAMPLE_EXP),
    ],
    &[&SampleShape::LAYOUT],
);
static PASS: KernelSpec = sample_spec(
    "sample_pass",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_SEARCH),
        Part::File(&SAMPLE_PASS),
    ],
    &[&SampleShape::LAYOUT, &PassParams::LAYOUT],
);
static MASS: KernelSpec = sample_spec(
    "sample_mass",
    &[
        Part::Reduce,
        Part::File(&SAMPLE_COMMON),
        Part::File(&SAMPLE_SEARCH),
        Part::File(&SAMPLE_MASS),
    ],
    &[&SampleShape::LAYOUT, &PassParams::LAYOUT],
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
    &[&SampleShape::LAYOUT, &Step::LAYOUT],
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
    &[&SampleShape::LAYOUT, &Step::LAYOUT],
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
    controls::SPECS[0],
    controls::SPECS[1],
    controls::SPECS[2],
    controls::SPECS[3],
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
    let row = SampleRow {
        logits_offset,
        out_offset,
        params: *params,
    };
    Ok(record_rows(ctx, logits, vocab, &[row], step, out, true)?.launches)
}

/// One row of [`sample_rows`]: its logits `logits[logits_offset ..
/// logits_offset + vocab]`, its token's slot `out[out_offset]`, its parameters.
#[derive(Debug, Clone, Copy)]
pub struct SampleRow {
    pub logits_offset: u32,
    pub out_offset: u32,
    pub params: SamplingParams,
}

/// The launches of [`sample_rows`] and the table of the rows' random-number
/// seeds and counters, which [`RowSampler::write_seeds`] sets before each run.
pub struct RowSampler {
    launches: Vec<Dispatch>,
    table: wgpu::Buffer,
    /// The rows' table entries, in table order, and each one's row.
    entries: Vec<(RowEntry, usize)>,
}

impl RowSampler {
    /// Record these in order, in one pass.
    pub fn launches(&self) -> &[Dispatch] {
        &self.launches
    }

    /// Sets row `i`'s random number to `uniform_random(seeds[i].0, seeds[i].1)`
    /// (seed, counter) for the next run of the launches.
    pub fn write_seeds(&self, ctx: &GpuContext, seeds: &[(u64, u32)]) -> Result<(), KernelError> {
        if seeds.len() != self.entries.len() {
            return Err(arg_err(format!(
                "{got} seeds for {rows} rows",
                got = seeds.len(),
                rows = self.entries.len()
            )));
        }
        let table: Vec<RowEntry> = self
            .entries
            .iter()
            .map(|&(e, row)| {
                let (seed, counter) = seeds[row];
                RowEntry {
                    seed_lo: seed as u32,
                    seed_hi: (seed >> 32) as u32,
                    counter,
                    ..e
                }
            })
            .collect();
        ctx.queue
            .write_buffer(&self.table, 0, bytemuck::cast_slice(&table));
        Ok(())
    }
}

/// Samples every row of `rows` (each by the rule in the module docs, with its
/// own parameters, and its own random number from the seed and counter
/// [`RowSampler::write_seeds`] writes): one launch family for all the rows
/// sharing a launch shape (greedy; top-k on or off; top-p on or off), each
/// launch over all of them (grid y = row), instead of one per row.
pub fn sample_rows(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    vocab: u32,
    rows: &[SampleRow],
    step: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<RowSampler, KernelError> {
    record_rows(ctx, logits, vocab, rows, step, out, false)
}

/// Launch shape of a row: greedy, top-k on, top-p on.
fn shape_of(p: &SamplingParams, vocab: u32) -> (bool, bool, bool) {
    let greedy = p.temperature == 0.0;
    (
        greedy,
        !greedy && p.top_k > 0 && p.top_k < vocab,
        !greedy && p.top_p < 1.0,
    )
}

fn record_rows(
    ctx: &GpuContext,
    logits: &wgpu::Buffer,
    vocab: u32,
    rows: &[SampleRow],
    step: &wgpu::Buffer,
    out: &wgpu::Buffer,
    seed_from_step: bool,
) -> Result<RowSampler, KernelError> {
    if vocab == 0 || vocab > MAX_VOCAB {
        return Err(arg_err(format!("vocab {vocab} must be in 1..={MAX_VOCAB}")));
    }
    if rows.is_empty() || rows.len() > crate::MAX_GROUPS as usize {
        return Err(arg_err(format!(
            "{n} rows outside 1..={max}",
            n = rows.len(),
            max = crate::MAX_GROUPS
        )));
    }
    for r in rows {
        r.params.validate().map_err(arg_err)?;
        let (lo, oo) = (r.logits_offset, r.out_offset);
        if (lo as u64 + vocab as u64) * 4 > logits.size() {
            return Err(arg_err(format!(
                "logits {lo}..{logits_end} exceed their buffer of {logits_size} bytes",
                logits_end = lo as u64 + vocab as u64,
                logits_size = logits.size()
            )));
        }
        if (oo as u64 + 1) * 4 > out.size() {
            return Err(arg_err(format!(
                "out[{oo}] is past its buffer of {out_size} bytes",
                out_size = out.size()
            )));
        }
    }
    if step.size() < std::mem::size_of::<crate::Step>() as u64 {
        return Err(arg_err(format!(
            "step buffer of {} bytes is smaller than a Step",
            step.size()
        )));
    }
    // Rows grouped by launch shape, in first-seen order.
    let mut groups: Vec<((bool, bool, bool), Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let key = shape_of(&r.params, vocab);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut entries = Vec::with_capacity(rows.len());
    for (_, g) in &groups {
        for &i in g {
            let r = &rows[i];
            let (greedy, topk_on, _) = shape_of(&r.params, vocab);
            entries.push((
                RowEntry {
                    logits_off: r.logits_offset,
                    out_off: r.out_offset,
                    top_k: if topk_on { r.params.top_k } else { 0 },
                    inv_t: if greedy {
                        0.0
                    } else {
                        1.0 / r.params.temperature
                    },
                    top_p: r.params.top_p,
                    seed_lo: 0,
                    seed_hi: 0,
                    counter: 0,
                    min_p: if greedy { 0.0 } else { r.params.min_p },
                },
                i,
            ));
        }
    }
    let table = ctx.upload(
        "sample rows",
        &entries.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
    )?;
    let mut launches = Vec::new();
    let mut row0 = 0u32;
    for (key, g) in &groups {
        let n = g.len() as u32;
        launches.extend(record_group(
            ctx,
            (logits, vocab, step, out, &table),
            *key,
            (row0, n),
            seed_from_step,
        )?);
        row0 += n;
    }
    Ok(RowSampler {
        launches,
        table,
        entries,
    })
}

/// The launches of `n` rows of one shape, table entries `row0 ..`.
fn record_group(
    ctx: &GpuContext,
    (logits, vocab, step, out, table): (
        &wgpu::Buffer,
        u32,
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
    ),
    (greedy, topk_on, topp_on): (bool, bool, bool),
    (row0, n): (u32, u32),
    seed_from_step: bool,
) -> Result<Vec<Dispatch>, KernelError> {
    let n_pad = vocab.div_ceil(4) * 4;
    let block = MIN_BLOCK.max(n_pad.div_ceil(MAX_BLOCKS).div_ceil(4) * 4);
    let nblocks = n_pad.div_ceil(block);
    let slots = PASSES * (topk_on as u32 + topp_on as u32);
    let shape = SampleShape {
        vocab,
        nblocks,
        block,
        slots,
        row0,
        seed_from_step: seed_from_step as u32,
        _pad0: 0,
        _pad1: 0,
    };
    // One uniform serves every launch of the group.
    let shb = ctx.uniform("sample shape", &shape);
    let launch = |spec: &'static KernelSpec, groups: u32| {
        ctx.launch(spec)
            .constant("WG", WG)
            .params_buffer::<SampleShape>(&shb)
            .bind("rows", table)
            .grid([groups, n, 1])
    };
    let rows = n as u64;
    let part = ctx.storage("sample partials", rows * nblocks as u64 * 8)?;
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
    let ev = ctx.storage("sample e", rows * n_pad as u64 * 4)?;
    out_d.push(
        launch(&EXP, nblocks)
            .bind("logits", logits)
            .bind("part", &part)
            .bind("ev", &ev)
            .record()?,
    );
    let psum = ctx.storage(
        "sample pass sums",
        rows * slots.max(1) as u64 * nblocks as u64 * R as u64 * 4,
    )?;
    let sstate = ctx.storage("sample search state", rows * (slots.max(1) as u64) * 16)?;
    let blk = ctx.storage("sample block masses", rows * (2 * nblocks as u64 + 1) * 4)?;
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
    let row = RowEntry {
        logits_off: 0,
        out_off: out_offset,
        top_k: 0,
        inv_t: 0.0,
        top_p: 1.0,
        seed_lo: 0,
        seed_hi: 0,
        counter: 0,
        min_p: 0.0,
    };
    let sh = SampleShape {
        vocab: 1,
        nblocks: 0,
        block: 0,
        slots: 0,
        row0: 0,
        seed_from_step: 1,
        _pad0: 0,
        _pad1: 0,
    };
    let table = ctx.upload("sample probe row", &[row])?;
    ctx.launch(&UNIFORM_PROBE)
        .constant("WG", 64u32)
        .bind("out", out)
        .bind("step", step)
        .bind("rows", &table)
        .params(&sh)
        .grid([1, 1, 1])
        .record()
}
