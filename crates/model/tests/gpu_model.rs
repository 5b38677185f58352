//! The GPU backend against the CPU reference on random tiny models (dense and
//! MoE, prompts longer than one prefill step), session snapshot / restore /
//! fork, and typed errors on device loss. Runs on lavapipe in CI.

use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions, Model, SamplingParams, Session};
use qwgpu_model::testing::{random_packed_model, tiny_config, Rng};
use qwgpu_model::ModelError;

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
    (gpu, cpu)
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
        "{what}: max |diff| {d:.3e} at {i} ({} vs {}), tolerance {:.3e}",
        a[i],
        b[i],
        rel * scale
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
        assert_eq!(g, c, "greedy step {i} (position {})", 251 + i);
        greedy_run.push(g);
    }
    // New parameters (seeded sampling): the step encoded for greedy is dropped.
    let params = SamplingParams {
        temperature: 0.9,
        top_k: 30,
        top_p: 0.95,
    };
    gpu.set_seed(&mut gs, 5);
    cpu.set_seed(&mut cs, 5);
    let mut same = 0;
    for _ in 0..6 {
        let gt = gpu.sample_next(&mut gs, &[g], &params).unwrap();
        let ct = cpu.sample_next(&mut cs, &[g], &params).unwrap();
        same += usize::from(gt == ct);
        g = ct;
    }
    assert!(same >= 5, "only {same} of 6 sampled tokens agree");
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
    let params = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
    };
    let (mut gs, mut cs) = (gpu.new_session().unwrap(), cpu.new_session().unwrap());
    gpu.set_seed(&mut gs, 7);
    cpu.set_seed(&mut cs, 7);
    let mut g = gpu.sample_next(&mut gs, &p, &params).unwrap();
    let mut c = cpu.sample_next(&mut cs, &p, &params).unwrap();
    let mut same = 0;
    for _ in 0..20 {
        same += (g == c) as usize;
        g = gpu.sample_next(&mut gs, &[c], &params).unwrap();
        c = cpu.sample_next(&mut cs, &[c], &params).unwrap();
    }
    // Identical unless a random number lands within float error of a boundary.
    assert!(same >= 19, "only {same} of 20 sampled tokens agree");
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
