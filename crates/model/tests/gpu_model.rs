//! The GPU backend against the CPU reference on random tiny models (dense and
//! MoE, prompts longer than one prefill step), session snapshot / restore /
//! fork, and typed errors on device loss. Runs on lavapipe in CI.

use qwgpu_kernels::testing;
use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions, Model, SamplingParams, Session};
use qwgpu_model::testing::{random_packed_model, tiny_config, Rng};
use qwgpu_model::ModelError;
use qwgpu_ops::sampling::{sample, uniform_random};

fn opts(backend: Backend, max_chunk: usize, fallback: bool) -> LoadOptions {
    LoadOptions {
        backend,
        max_chunk,
        gpu: ContextOptions {
            disable_subgroups: fallback,
            disable_f16: fallback,
            webgpu_limits: fallback,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn models(moe: bool, seed: u64, max_chunk: usize, fallback: bool) -> (Model, Model) {
    let cfg = tiny_config(moe);
    let packed = random_packed_model(&cfg, moe, seed);
    let gpu =
        Model::from_packed(&packed, &opts(Backend::Gpu, max_chunk, fallback)).expect("gpu model");
    let cpu =
        Model::from_packed(&packed, &opts(Backend::Cpu, max_chunk, fallback)).expect("cpu model");
    assert!(gpu.is_gpu() && !cpu.is_gpu());
    covered(&gpu, fallback);
    (gpu, cpu)
}

/// Records the calling test in the coverage table against the GPU model's own
/// device, in the column of its options (`full`, or `fallback`: no subgroups,
/// no f16, WebGPU's limits); on a hardware adapter the full column fails
/// without subgroups, f16 or cooperative matrices (`testing::require_model`).
fn covered(gpu: &Model, fallback: bool) {
    let label = if fallback { "fallback" } else { "full" };
    let ctx = gpu.gpu_context().expect("a GPU model has a context");
    assert!(testing::require_model(label, ctx));
}

fn prompt(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| ((rng.uniform() * vocab as f32) as usize % vocab) as u32)
        .collect()
}

/// max |a − b| ≤ rel · max(1, max |b|).
fn assert_close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let (i, d) = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            if (x - y).is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .enumerate()
        .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    assert!(
        d <= rel * scale,
        "{what}: max |diff| {d:.3e} at {i} ({a_i} vs {b_i}), tolerance {rel_scale:.3e}",
        a_i = a[i],
        b_i = b[i],
        rel_scale = rel * scale
    );
}

/// Prefill (in several steps of 16 tokens) + 8 decode steps, every logit row.
fn gpu_matches_cpu(moe: bool, fallback: bool) {
    let seed = 20 + moe as u64;
    let (gpu, cpu) = models(moe, seed, 16, fallback);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(seed);
    let p = prompt(&mut rng, 70, vocab);
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    let g = gpu.forward_all(&mut gs, &p).unwrap();
    let c = cpu.forward_all(&mut cs, &p).unwrap();
    assert_close(&g, &c, 1e-3, &format!("seed {seed} moe {moe} prefill"));
    for i in 0..8 {
        let tok = prompt(&mut rng, 1, vocab);
        let g = gpu.forward(&mut gs, &tok).unwrap();
        let c = cpu.forward(&mut cs, &tok).unwrap();
        assert_close(&g, &c, 1e-3, &format!("seed {seed} moe {moe} decode {i}"));
    }
    assert_eq!(gs.position(), 78);
}

#[test]
fn gpu_matches_cpu_reference_dense() {
    gpu_matches_cpu(false, false);
}

#[test]
fn gpu_matches_cpu_reference_moe() {
    gpu_matches_cpu(true, false);
}

#[test]
fn gpu_matches_cpu_reference_without_subgroups_f16_and_within_webgpu_limits() {
    gpu_matches_cpu(false, true);
    gpu_matches_cpu(true, true);
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        ..SamplingParams::GREEDY
    }
}

fn continue_greedy(m: &Model, s: &mut Session, first: u32, n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut toks = vec![first];
    let mut logits = Vec::new();
    for _ in 0..n {
        let l = m.forward(s, &[*toks.last().unwrap()]).unwrap();
        toks.push(qwgpu_model::argmax(&l) as u32);
        logits.extend(l);
    }
    (toks, logits)
}

/// Relative error allowed in each unnormalised probability `e_i` between the
/// GPU sampler and the rule on the same logits: GPU `exp` is not correctly
/// rounded (WGSL: 3 + 2·|x| ULP) and its masses are summed in f32.
const SAMPLER_REL: f32 = 1e-4;

/// The relative error in `e_i = exp((l_i − max l) / T)` that logits differing
/// by at most `max |a − b|` can cause, plus the sampler's own [`SAMPLER_REL`].
fn logit_rel(a: &[f32], b: &[f32], params: &SamplingParams) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    (2.0 * d / params.temperature).exp_m1() + SAMPLER_REL
}

/// The token the sampling rule (`qwgpu_ops::sampling::sample`, what the CPU
/// backend samples with) picks for `logits` and `u`, if that pick is clear:
/// no relative change of `rel` in any unnormalised probability `e_i` could
/// move the top-k cut, the top-p cut or the pick. Otherwise the near tie, in
/// words: there another token may legitimately come out, so an exact check
/// is only possible on clear picks (and a clear pick must be matched exactly).
fn clear_pick(logits: &[f32], params: &SamplingParams, u: f32, rel: f32) -> Result<u32, String> {
    let token = sample(logits, params, u);
    assert!(params.temperature > 0.0, "greedy needs no tie check");
    let f = (1.0 + rel).powi(2);
    let near = |a: f64, b: f64| a <= b * f as f64 && b <= a * f as f64;
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0f32 / params.temperature;
    let e: Vec<f32> = logits
        .iter()
        .map(|&l| {
            let e = ((l - m) * inv_t).exp();
            if e >= f32::MIN_POSITIVE {
                e
            } else {
                0.0
            }
        })
        .collect();
    let mut sorted = e.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = params.top_k as usize;
    let tau_k = if k > 0 && k < e.len() {
        if near(sorted[k - 1] as f64, sorted[k] as f64) {
            return Err(format!(
                "top-k cut: {sorted_k_1} vs {sorted_k}",
                sorted_k_1 = sorted[k - 1],
                sorted_k = sorted[k]
            ));
        }
        sorted[k - 1]
    } else {
        0.0
    };
    let mut tau = tau_k;
    if params.top_p < 1.0 {
        let kept: Vec<f32> = sorted.iter().copied().filter(|&v| v >= tau_k).collect();
        let target = params.top_p as f64 * kept.iter().map(|&v| v as f64).sum::<f64>();
        let mut acc = 0.0f64;
        for (i, &v) in kept.iter().enumerate() {
            acc += v as f64;
            if near(acc, target) {
                return Err(format!("top-p cut: mass {acc} vs {target} at rank {i}"));
            }
            if acc >= target {
                tau = tau.max(v);
                break;
            }
        }
    }
    let keep = |v: f32| v >= tau && v > 0.0;
    let total: f64 = e.iter().filter(|&&v| keep(v)).map(|&v| v as f64).sum();
    let target = u as f64 * total;
    let mut acc = 0.0f64;
    for (i, &v) in e.iter().enumerate() {
        if keep(v) {
            acc += v as f64;
            if near(acc, target) {
                return Err(format!("pick: mass {acc} vs u·M {target} at token {i}"));
            }
        }
    }
    Ok(token)
}

#[test]
fn snapshot_restore_and_fork_continue_bit_identically() {
    let (gpu, _) = models(false, 31, 32, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(31);
    let p = prompt(&mut rng, 40, vocab);
    let mut s = gpu.new_session().unwrap();
    let first = gpu.sample_next(&mut s, &p, &greedy()).unwrap();
    let snap = gpu.snapshot(&s).unwrap();
    let mut fork = gpu.fork(&s).unwrap();
    let (toks_a, logits_a) = continue_greedy(&gpu, &mut s, first, 12);
    // Restoring into the advanced session and into a fresh one gives the same bits.
    gpu.restore(&mut s, &snap).unwrap();
    assert_eq!(s.position(), 40);
    let (toks_b, logits_b) = continue_greedy(&gpu, &mut s, first, 12);
    assert_eq!(toks_a, toks_b);
    assert_eq!(
        logits_a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        logits_b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "restored session"
    );
    let (toks_c, logits_c) = continue_greedy(&gpu, &mut fork, first, 12);
    assert_eq!(toks_a, toks_c);
    assert!(
        logits_a
            .iter()
            .zip(&logits_c)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "fork"
    );
    // Two forks advance independently: feeding different tokens diverges only the one.
    let mut f1 = gpu.new_session().unwrap();
    gpu.restore(&mut f1, &snap).unwrap();
    let mut f2 = gpu.fork(&f1).unwrap();
    let other = (first + 1) % vocab as u32;
    let l1 = gpu.forward(&mut f1, &[other]).unwrap();
    let l2 = gpu.forward(&mut f2, &[first]).unwrap();
    assert!(l1.iter().zip(&l2).any(|(a, b)| a != b));
    assert_eq!(
        l2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        logits_a[..vocab]
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
}

/// The KV cache grows by pages (first page sized by the first step, then
/// geometric): prefill steps cut at page ends, decode launches re-recorded per
/// page, prefill attention carried across pages — all equal to the CPU; a
/// snapshot taken across several pages restores into a fresh session (one page
/// of another size) and continues bit-identically.
#[test]
fn kv_pages_prefill_decode_and_restore_across_page_ends() {
    let (gpu, cpu) = models(false, 61, 64, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(61);
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    // 200 tokens (first page: 256 rows), decode across 256 (second page: 256),
    // then 300 tokens from 262 (crosses 512 into a third page).
    let p = prompt(&mut rng, 200, vocab);
    let g = gpu.forward(&mut gs, &p).unwrap();
    let c = cpu.forward(&mut cs, &p).unwrap();
    assert_close(&g, &c, 1e-3, "prefill 200");
    for i in 0..62 {
        let tok = prompt(&mut rng, 1, vocab);
        let g = gpu.forward(&mut gs, &tok).unwrap();
        let c = cpu.forward(&mut cs, &tok).unwrap();
        assert_close(&g, &c, 1e-3, &format!("decode at {}", 200 + i));
    }
    let p = prompt(&mut rng, 300, vocab);
    let g = gpu.forward_all(&mut gs, &p).unwrap();
    let c = cpu.forward_all(&mut cs, &p).unwrap();
    assert_close(&g, &c, 1e-3, "prefill 300 across a page end");
    assert_eq!(gs.position(), 562);
    let snap = gpu.snapshot(&gs).unwrap();
    let tok = prompt(&mut rng, 1, vocab)[0];
    let (toks_a, logits_a) = continue_greedy(&gpu, &mut gs, tok, 4);
    let mut fresh = gpu.new_session().unwrap();
    gpu.restore(&mut fresh, &snap).unwrap();
    let (toks_b, logits_b) = continue_greedy(&gpu, &mut fresh, tok, 4);
    assert_eq!(toks_a, toks_b);
    assert!(
        logits_a
            .iter()
            .zip(&logits_b)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "restored into another page layout"
    );
    let c = cpu.forward(&mut cs, &[tok]).unwrap();
    assert_close(&logits_a[..vocab], &c, 1e-3, "decode after the third page");
}

/// Batched decode steps (18 sessions: two groups; different positions, one
/// past a KV page end; greedy and seeded sampling) give every session exactly
/// the tokens it gets alone.
#[test]
fn batched_decode_equals_lone_decode() {
    for moe in [false, true] {
        let seed = 71 + moe as u64;
        let (gpu, _) = models(moe, seed, 32, false);
        let vocab = gpu.config().vocab_size;
        let mut rng = Rng::new(seed);
        let n = if moe { 3 } else { 18 };
        let mut sessions = Vec::new();
        let mut params = Vec::new();
        let mut next = Vec::new();
        for i in 0..n {
            let len = if i == 1 { 255 } else { 1 + 7 * i };
            let p = prompt(&mut rng, len, vocab);
            let mut s = gpu.new_session().unwrap();
            gpu.set_seed(&mut s, 1000 + i as u64);
            let sp = if i % 3 == 2 {
                SamplingParams {
                    temperature: 0.8,
                    top_k: 20,
                    top_p: 0.9,
                    ..SamplingParams::GREEDY
                }
            } else {
                greedy()
            };
            next.push(gpu.sample_next(&mut s, &p, &sp).unwrap());
            sessions.push(s);
            params.push(sp);
        }
        let mut alone: Vec<_> = sessions.iter().map(|s| gpu.fork(s).unwrap()).collect();
        let mut alone_next = next.clone();
        for step in 0..4 {
            let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
            next = gpu.decode_batch(&mut refs, &next, &params).unwrap();
            for (i, s) in alone.iter_mut().enumerate() {
                alone_next[i] = gpu.sample_next(s, &[alone_next[i]], &params[i]).unwrap();
            }
            assert_eq!(next, alone_next, "moe {moe} step {step}");
        }
        for (a, b) in sessions.iter().zip(&alone) {
            assert_eq!(a.position(), b.position());
        }
    }
}

/// `steps` batched steps of `sessions` against each session's fork stepped
/// alone (same sampling parameters and seeds): the tokens must be equal.
fn batch_against_lone(
    gpu: &Model,
    sessions: &mut [Session],
    next: &mut Vec<u32>,
    params: &[SamplingParams],
    steps: usize,
    what: &str,
) {
    let mut alone: Vec<_> = sessions.iter().map(|s| gpu.fork(s).unwrap()).collect();
    let mut alone_next = next.clone();
    for step in 0..steps {
        let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
        *next = gpu.decode_batch(&mut refs, next, params).unwrap();
        for (i, s) in alone.iter_mut().enumerate() {
            alone_next[i] = gpu.sample_next(s, &[alone_next[i]], &params[i]).unwrap();
        }
        assert_eq!(*next, alone_next, "{what} step {step}");
    }
    for (a, b) in sessions.iter().zip(&alone) {
        assert_eq!(a.position(), b.position(), "{what}");
    }
}

/// Sessions at very different positions (0 tokens of history up to several KV
/// pages, each partly filled) in one batch, 3 and then 5 of them.
#[test]
fn batched_decode_at_very_different_positions() {
    let (gpu, _) = models(false, 81, 64, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(81);
    for lens in [&[700usize, 1, 257][..], &[3, 530, 64, 1, 300]] {
        let mut sessions = Vec::new();
        let mut params = Vec::new();
        let mut next = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let mut s = gpu.new_session().unwrap();
            gpu.set_seed(&mut s, 500 + i as u64);
            let sp = if i % 2 == 1 {
                SamplingParams {
                    temperature: 0.7,
                    top_k: 0,
                    top_p: 0.95,
                    ..SamplingParams::GREEDY
                }
            } else {
                greedy()
            };
            next.push(
                gpu.sample_next(&mut s, &prompt(&mut rng, len, vocab), &sp)
                    .unwrap(),
            );
            sessions.push(s);
            params.push(sp);
        }
        let what = format!("positions {lens:?}");
        batch_against_lone(&gpu, &mut sessions, &mut next, &params, 3, &what);
    }
}

/// The batched step within WebGPU's default limits, without subgroups and f16
/// (the GDN rows in the split form: conv and recurrent launches over all rows).
#[test]
fn batched_decode_within_webgpu_limits() {
    let (gpu, _) = models(false, 83, 32, true);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(83);
    let params = [greedy(), greedy(), greedy()];
    let mut sessions = Vec::new();
    let mut next = Vec::new();
    for (i, len) in [5usize, 270, 1].into_iter().enumerate() {
        let mut s = gpu.new_session().unwrap();
        next.push(
            gpu.sample_next(&mut s, &prompt(&mut rng, len, vocab), &params[i])
                .unwrap(),
        );
        sessions.push(s);
    }
    batch_against_lone(&gpu, &mut sessions, &mut next, &params, 3, "webgpu limits");
}

/// Batched steps continue bit-identically from restored and forked sessions
/// (their states copied into other slots of the pooled GDN states and other
/// KV pages), and a dropped session's slot, reused by a new one, starts zeroed.
#[test]
fn batched_decode_after_fork_restore_and_slot_reuse() {
    let (gpu, _) = models(false, 82, 32, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(82);
    let p = [greedy(), greedy(), greedy(), greedy()];
    let mut a = gpu.new_session().unwrap();
    let mut b = gpu.new_session().unwrap();
    let ta = gpu
        .sample_next(&mut a, &prompt(&mut rng, 40, vocab), &p[0])
        .unwrap();
    let tb = gpu
        .sample_next(&mut b, &prompt(&mut rng, 300, vocab), &p[1])
        .unwrap();
    let snap = gpu.snapshot(&a).unwrap();
    let mut sessions = vec![a, b];
    let mut next = vec![ta, tb];
    batch_against_lone(&gpu, &mut sessions, &mut next, &p[..2], 2, "before");
    // Drop a scratch session so the next one reuses its slot, then restore
    // the snapshot into it and fork the other session.
    drop(gpu.new_session().unwrap());
    let mut restored = gpu.new_session().unwrap();
    gpu.restore(&mut restored, &snap).unwrap();
    let forked = gpu.fork(&sessions[1]).unwrap();
    sessions.push(restored);
    sessions.push(forked);
    next.push(ta);
    next.push(next[1]);
    batch_against_lone(
        &gpu,
        &mut sessions,
        &mut next,
        &p,
        3,
        "after fork and restore",
    );
    // A fresh session on a reused slot equals a fresh session of a fresh model.
    drop(sessions.pop());
    let mut reused = gpu.new_session().unwrap();
    let (fresh_model, _) = models(false, 82, 32, false);
    let mut fresh = fresh_model.new_session().unwrap();
    let toks = prompt(&mut rng, 5, vocab);
    let (x, y) = (
        gpu.forward(&mut reused, &toks).unwrap(),
        fresh_model.forward(&mut fresh, &toks).unwrap(),
    );
    assert!(x == y, "a reused slot must start from zero states");
}

#[test]
fn long_greedy_decode_stays_finite_and_equals_the_reference() {
    // 2,000 tokens: several KV pages (256, 256, 512, 1024 rows) and a long GDN
    // recurrence.
    let steps: usize = std::env::var("QWGPU_LONG_DECODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (gpu, cpu) = models(false, 41, 64, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(41);
    let p = prompt(&mut rng, 5, vocab);
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    let mut g = gpu.sample_next(&mut gs, &p, &greedy()).unwrap();
    let mut c = cpu.sample_next(&mut cs, &p, &greedy()).unwrap();
    let mut flips = 0;
    for i in 0..steps {
        if g != c {
            flips += 1;
            // Resynchronise on the reference's token so one near-tie does not cascade.
            g = c;
        }
        let lg = gpu.forward(&mut gs, &[g]).unwrap();
        assert!(
            lg.iter().all(|v| v.is_finite()),
            "step {i}: non-finite logits"
        );
        let lc = cpu.forward(&mut cs, &[c]).unwrap();
        g = qwgpu_model::argmax(&lg) as u32;
        c = qwgpu_model::argmax(&lc) as u32;
        if i % 250 == 0 {
            assert_close(&lg, &lc, 2e-3, &format!("decode step {i}"));
        }
    }
    assert_eq!(
        flips, 0,
        "greedy tokens differed from the reference {flips} times in {steps} steps"
    );
    assert_eq!(gs.position(), 5 + steps);
}

/// Sampled decode steps are encoded one step ahead (while the GPU runs the
/// current one): that command buffer must follow page ends, new sampling
/// parameters, logits-only steps in between and restores to other positions.
/// Every token equals the CPU reference's.
#[test]
fn steps_encoded_ahead_follow_pages_parameters_and_restores() {
    let (gpu, cpu) = models(false, 81, 64, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(81);
    // 250 tokens: the first KV page holds 256 rows, so decode crosses a page end.
    let p = prompt(&mut rng, 250, vocab);
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    let mut g = gpu.sample_next(&mut gs, &p, &greedy()).unwrap();
    let c = cpu.sample_next(&mut cs, &p, &greedy()).unwrap();
    assert_eq!(g, c, "prefill token");
    let snap = gpu.snapshot(&gs).unwrap();
    let mut greedy_run = vec![g];
    for i in 0..12 {
        g = gpu.sample_next(&mut gs, &[g], &greedy()).unwrap();
        let c = cpu
            .sample_next(&mut cs, &[greedy_run[i]], &greedy())
            .unwrap();
        assert_eq!(
            g,
            c,
            "greedy step {i} (position {position})",
            position = 251 + i
        );
        greedy_run.push(g);
    }
    // New parameters (seeded sampling): the step encoded for greedy is dropped.
    let params = SamplingParams {
        temperature: 0.9,
        top_k: 30,
        top_p: 0.95,
        ..SamplingParams::GREEDY
    };
    // The reference for sampled steps: the sampling rule on the logits of a
    // second GPU session fed the same tokens through logits-only steps (never
    // encoded ahead), with the seed's random numbers. A clear pick must be
    // exactly the GPU's token (a step encoded for greedy and reused gives the
    // argmax instead); those logits must match the CPU reference's.
    // It replays the greedy steps from the snapshot (decode steps, as `gs`
    // ran them), leaving `gs` and its step encoded ahead untouched.
    let mut rs = gpu.new_session().unwrap();
    gpu.restore(&mut rs, &snap).unwrap();
    for &t in &greedy_run[..12] {
        gpu.forward(&mut rs, &[t]).unwrap();
    }
    gpu.set_seed(&mut gs, 5);
    let mut decided_by_u = 0;
    for i in 0..6u32 {
        let gt = gpu.sample_next(&mut gs, &[g], &params).unwrap();
        let lr = gpu.forward(&mut rs, &[g]).unwrap();
        let lc = cpu.forward(&mut cs, &[g]).unwrap();
        assert_close(&lr, &lc, 1e-3, &format!("sampled step {i}: logits"));
        match clear_pick(&lr, &params, uniform_random(5, i), SAMPLER_REL) {
            Ok(want) => {
                assert_eq!(gt, want, "sampled step {i} (seed 5, counter {i})");
                decided_by_u += usize::from(sample(&lr, &params, uniform_random(5, i + 1)) != want);
                if i == 0 {
                    // What a stale greedy step would give instead must differ.
                    assert_ne!(
                        want,
                        qwgpu_model::argmax(&lr) as u32,
                        "seed 5's first sampled token is the argmax: a stale step would pass"
                    );
                }
            }
            // The first step after the change of parameters is the one a stale
            // command buffer would run: it must be checkable.
            Err(tie) if i == 0 => panic!("seed 5 puts the first sampled step on a near tie: {tie}"),
            Err(tie) => println!("sampled step {i}: near tie ({tie}), token not compared"),
        }
        g = gt;
    }
    println!(
        "{decided_by_u} of 6 sampled steps where the next counter's number picks another token"
    );
    assert!(
        decided_by_u >= 3,
        "only {decided_by_u} of 6 sampled steps depend on the random number"
    );
    // A logits-only step between sampled ones.
    let lg = gpu.forward(&mut gs, &[g]).unwrap();
    let lc = cpu.forward(&mut cs, &[g]).unwrap();
    assert_close(&lg, &lc, 1e-3, "logits step between sampled steps");
    let t = qwgpu_model::argmax(&lc) as u32;
    assert_eq!(
        gpu.sample_next(&mut gs, &[t], &greedy()).unwrap(),
        cpu.sample_next(&mut cs, &[t], &greedy()).unwrap(),
        "sampled step after a logits step"
    );
    // Back to position 250 (one page): the same greedy tokens again.
    gpu.restore(&mut gs, &snap).unwrap();
    let mut again = vec![greedy_run[0]];
    for i in 0..12 {
        again.push(gpu.sample_next(&mut gs, &[again[i]], &greedy()).unwrap());
    }
    assert_eq!(again, greedy_run, "greedy tokens after the restore");
}

#[test]
fn sampling_on_the_gpu_uses_the_same_rule_and_numbers_as_the_cpu() {
    let (gpu, cpu) = models(true, 51, 32, false);
    let vocab = gpu.config().vocab_size;
    let mut rng = Rng::new(51);
    let p = prompt(&mut rng, 9, vocab);
    // This tiny model's next-token distributions are sharp (the top logit
    // 4-15 above the next; at T = 0.8 every step keeps one token): at T = 10
    // every step keeps several, so the random numbers decide (checked below).
    let params = SamplingParams {
        temperature: 10.0,
        top_k: 40,
        top_p: 0.95,
        ..SamplingParams::GREEDY
    };
    // Three sessions fed the same tokens: the GPU sampling, the GPU returning
    // logits, the CPU reference. The GPU's token must be exactly the rule's
    // pick (`qwgpu_ops::sampling::sample`, what the CPU backend samples with)
    // on the GPU's logits with the seed's random number, at every step.
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    let mut rs = gpu.new_session().unwrap();
    gpu.set_seed(&mut gs, 7);
    let mut input = p;
    let (mut exact_gpu, mut exact_cpu, mut decided_by_u) = (0, 0, 0);
    for i in 0..21u32 {
        let gt = gpu.sample_next(&mut gs, &input, &params).unwrap();
        let lr = gpu.forward(&mut rs, &input).unwrap();
        let lc = cpu.forward(&mut cs, &input).unwrap();
        assert_close(&lr, &lc, 1e-3, &format!("step {i}: logits"));
        let u = uniform_random(7, i);
        match clear_pick(&lr, &params, u, SAMPLER_REL) {
            Ok(want) => {
                assert_eq!(gt, want, "step {i} (seed 7, counter {i})");
                exact_gpu += 1;
                // Another counter's number would have picked another token.
                decided_by_u += usize::from(sample(&lr, &params, uniform_random(7, i + 1)) != want);
            }
            Err(tie) => println!("step {i}: near tie on the GPU's logits ({tie})"),
        }
        // The CPU reference's logits: the pick may also move by their difference.
        match clear_pick(&lc, &params, u, logit_rel(&lr, &lc, &params)) {
            Ok(want) => {
                assert_eq!(gt, want, "step {i}: the CPU reference's pick");
                exact_cpu += 1;
            }
            Err(tie) => println!("step {i}: near tie on the CPU's logits ({tie})"),
        }
        input = vec![gt];
    }
    println!(
        "exact token checks: {exact_gpu} of 21 against the GPU's logits ({decided_by_u} \
         where the next counter's number picks another token), {exact_cpu} of 21 against the CPU's"
    );
    // A sampler using the wrong random numbers (or none) must be visible.
    assert!(
        decided_by_u >= 10 && exact_gpu >= 18 && exact_cpu >= 15,
        "too few steps where the check can see the random numbers: {decided_by_u} decided by u, \
         {exact_gpu} / {exact_cpu} clear picks of 21"
    );
}

#[test]
fn device_loss_mid_decode_is_a_typed_error() {
    let (gpu, _) = models(false, 61, 16, false);
    let mut s = gpu.new_session().unwrap();
    gpu.forward(&mut s, &[1, 2, 3]).unwrap();
    gpu.gpu_context().unwrap().destroy();
    let err = gpu.forward(&mut s, &[4]).unwrap_err();
    assert!(matches!(err, ModelError::Gpu(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("lost") || err.to_string().contains("destroyed"),
        "{err}"
    );
    // Later calls keep failing cleanly.
    assert!(gpu.forward(&mut s, &[5]).is_err());
    assert!(gpu.new_session().is_err() || gpu.forward(&mut s, &[6]).is_err());
}

#[test]
fn out_of_range_token_is_a_typed_error() {
    let (gpu, _) = models(false, 71, 16, false);
    let mut s = gpu.new_session().unwrap();
    let err = gpu.forward(&mut s, &[1, 100_000]).unwrap_err();
    assert!(
        matches!(err, ModelError::TokenOutOfRange { index: 1, .. }),
        "{err}"
    );
    assert_eq!(s.position(), 0);
}
