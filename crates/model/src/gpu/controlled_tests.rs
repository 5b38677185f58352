//! Controlled sampled steps (mask, penalties, min-p, log-probabilities) on
//! the GPU backend against the CPU backend of the same weights: the same
//! tokens, log-probabilities within 2e-3 (the forward passes differ by f32
//! rounding), and typed errors for bad masks and limits.

use crate::engine::{Backend, LoadOptions, Model, Sampled, SamplingParams, StepControls};
use crate::sampling::mask_words;
use crate::testing::{random_packed_model, tiny_config};
use crate::ModelError;
use qwgpu_ops::rng::SplitMix64;

fn models() -> (Model, Model) {
    let packed = random_packed_model(&tiny_config(false), false, 23);
    let opts = |backend| LoadOptions {
        backend,
        ..Default::default()
    };
    let gpu = Model::from_packed(&packed, &opts(Backend::Gpu)).expect("gpu model");
    let cpu = Model::from_packed(&packed, &opts(Backend::Cpu)).expect("cpu model");
    (gpu, cpu)
}

/// A mask allowing each token with probability 1/2 (and token `step % vocab`).
fn mask_for(step: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed ^ ((step as u64) << 20));
    let mut w: Vec<u32> = (0..mask_words(vocab))
        .map(|_| rng.next_u64() as u32)
        .collect();
    let t = step % vocab;
    w[t / 32] |= 1 << (t % 32);
    w
}

fn controls(step: usize, vocab: usize, masked: bool, top: usize) -> StepControls<'static> {
    StepControls {
        top_logprobs: Some(top),
        mask: masked.then(|| {
            Box::new(move |words: &mut [u32]| {
                words.copy_from_slice(&mask_for(step, vocab, 99));
                Ok(true)
            }) as crate::sampling::TokenMaskFn<'static>
        }),
    }
}

fn assert_close(a: &Sampled, b: &Sampled, what: &str) {
    assert_eq!(a.token, b.token, "{what}: tokens");
    let (la, lb) = (a.logprob.unwrap(), b.logprob.unwrap());
    assert!((la - lb).abs() < 2e-3, "{what}: logprob {la} vs {lb}");
    assert_eq!(a.top.len(), b.top.len(), "{what}: top length");
    for (x, y) in a.top.iter().zip(&b.top) {
        assert!((x.1 - y.1).abs() < 2e-3, "{what}: top {x:?} vs {y:?}");
    }
    // Ids may swap only between near-ties.
    let ids = |s: &Sampled| s.top.iter().map(|p| p.0).collect::<Vec<_>>();
    if ids(a) != ids(b) {
        for (x, y) in a.top.iter().zip(&b.top) {
            assert!(
                x.0 == y.0 || (x.1 - y.1).abs() < 1e-3,
                "{what}: {a:?} vs {b:?}"
            );
        }
    }
}

fn hot() -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.02,
        presence_penalty: 0.4,
        frequency_penalty: 0.3,
        repetition_penalty: 1.3,
    }
}

#[test]
fn controlled_steps_agree_between_gpu_and_cpu() {
    let (gpu, cpu) = models();
    let vocab = gpu.config().vocab_size;
    for (params, masked) in [
        (hot(), true),
        (hot(), false),
        (SamplingParams::GREEDY, true),
    ] {
        let mut g = gpu.new_session().unwrap();
        let mut c = cpu.new_session().unwrap();
        g.set_seed(7);
        c.set_seed(7);
        let prompt = [3u32, 9, 27, 81, 243, 3, 3];
        let mut a = gpu
            .sample_step(&mut g, &prompt, &params, controls(0, vocab, masked, 5))
            .unwrap();
        let b = cpu
            .sample_step(&mut c, &prompt, &params, controls(0, vocab, masked, 5))
            .unwrap();
        assert_close(&a, &b, "prefill");
        for step in 1..12 {
            let t = a.token;
            a = gpu
                .sample_step(&mut g, &[t], &params, controls(step, vocab, masked, 20))
                .unwrap();
            let b = cpu
                .sample_step(&mut c, &[t], &params, controls(step, vocab, masked, 20))
                .unwrap();
            assert_close(&a, &b, &format!("step {step} {params:?}"));
            if masked {
                let m = mask_for(step, vocab, 99);
                assert!(
                    qwgpu_ops::sampling::controls::mask_allows(&m, a.token as usize),
                    "step {step}: token {tok} outside the mask",
                    tok = a.token
                );
            }
        }
    }
}

#[test]
fn a_batch_with_controls_equals_lone_steps() {
    let (gpu, _) = models();
    let vocab = gpu.config().vocab_size;
    let prompts: [&[u32]; 3] = [&[1, 2, 3], &[4, 5], &[6, 7, 8, 9]];
    let params = [hot(), SamplingParams::GREEDY, hot()];
    let start = |i: usize| {
        let mut s = gpu.new_session().unwrap();
        s.set_seed(100 + i as u64);
        let t = gpu.sample_next(&mut s, prompts[i], &params[i]).unwrap();
        (s, t)
    };
    let (mut batch, mut next): (Vec<_>, Vec<u32>) = (0..3).map(start).unzip();
    let (mut lone, mut lone_next): (Vec<_>, Vec<u32>) = (0..3).map(start).unzip();
    assert_eq!(next, lone_next);
    for step in 0..6 {
        // Row 1 plain, rows 0 and 2 with logprobs, row 2 masked.
        let ctl = |i: usize| match i {
            0 => StepControls::logprobs(3),
            1 => StepControls::none(),
            _ => controls(step, vocab, true, 2),
        };
        let got = {
            let mut refs: Vec<_> = batch.iter_mut().collect();
            gpu.decode_batch_with(&mut refs, &next, &params, (0..3).map(ctl).collect())
                .unwrap()
        };
        for i in 0..3 {
            let want = gpu
                .sample_step(&mut lone[i], &[lone_next[i]], &params[i], ctl(i))
                .unwrap();
            assert_eq!(got[i].token, want.token, "step {step} row {i}");
            assert_eq!(got[i].logprob.is_some(), i != 1);
            if let (Some(x), Some(y)) = (got[i].logprob, want.logprob) {
                assert!((x - y).abs() < 1e-4, "step {step} row {i}: {x} vs {y}");
            }
            lone_next[i] = want.token;
        }
        next = got.iter().map(|s| s.token).collect();
    }
}

#[test]
fn empty_masks_and_too_many_logprobs_are_typed_errors() {
    let (gpu, cpu) = models();
    for m in [&gpu, &cpu] {
        let mut s = m.new_session().unwrap();
        let empty = StepControls {
            top_logprobs: None,
            mask: Some(Box::new(|_: &mut [u32]| Ok(true))),
        };
        match m.sample_step(&mut s, &[1, 2], &SamplingParams::GREEDY, empty) {
            Err(ModelError::NoAllowedToken { vocab, .. }) => assert_eq!(vocab, 512),
            other => panic!("expected NoAllowedToken, got {other:?}"),
        }
        let mut s = m.new_session().unwrap();
        let bits_past_vocab = StepControls {
            top_logprobs: None,
            mask: Some(Box::new(|w: &mut [u32]| {
                // A full last word, but the vocabulary (512) ends at the word boundary.
                assert_eq!(w.len(), 16);
                Ok(true)
            })),
        };
        assert!(matches!(
            m.sample_step(&mut s, &[1], &SamplingParams::GREEDY, bits_past_vocab),
            Err(ModelError::NoAllowedToken { .. })
        ));
        let mut s = m.new_session().unwrap();
        assert!(matches!(
            m.sample_step(
                &mut s,
                &[1],
                &SamplingParams::GREEDY,
                StepControls::logprobs(21)
            ),
            Err(ModelError::Sampling { .. })
        ));
        let failing = StepControls {
            top_logprobs: None,
            mask: Some(Box::new(|_: &mut [u32]| {
                Err(ModelError::MaskCallback {
                    source: "grammar says no".into(),
                })
            })),
        };
        let mut s = m.new_session().unwrap();
        let e = m
            .sample_step(&mut s, &[1], &SamplingParams::GREEDY, failing)
            .unwrap_err();
        assert!(e.to_string().contains("grammar says no"), "{e}");
        // Unconstrained (the callback declines): the plain greedy token.
        let mut a = m.new_session().unwrap();
        let mut b = m.new_session().unwrap();
        let declines = StepControls {
            top_logprobs: None,
            mask: Some(Box::new(|_: &mut [u32]| Ok(false))),
        };
        let x = m
            .sample_step(&mut a, &[5, 6], &SamplingParams::GREEDY, declines)
            .unwrap();
        let y = m
            .sample_next(&mut b, &[5, 6], &SamplingParams::GREEDY)
            .unwrap();
        assert_eq!(x.token, y);
    }
}

#[test]
fn penalties_count_the_prompt_and_restart_with_the_seed() {
    let (_, cpu) = models();
    // Repetition: every token of the context (prompt) is penalised.
    let p = SamplingParams {
        repetition_penalty: 3.0,
        ..SamplingParams::GREEDY
    };
    let mut s = cpu.new_session().unwrap();
    let plain = cpu.forward(&mut s, &[10, 11, 12]).unwrap();
    let best = qwgpu_ops::sampling::argmax(&plain) as u32;
    let prompt = [10u32, 11, 12, best];
    let mut s = cpu.new_session().unwrap();
    let mut l = cpu.forward(&mut s, &prompt).unwrap();
    for &t in &prompt {
        let v = &mut l[t as usize];
        *v = if *v > 0.0 { *v * (1.0 / 3.0) } else { *v * 3.0 };
    }
    let mut s = cpu.new_session().unwrap();
    let got = cpu.sample_next(&mut s, &prompt, &p).unwrap();
    assert_eq!(got as usize, qwgpu_ops::sampling::argmax(&l));
    // Presence: the generated token is penalised after it was generated once,
    // and not any more after set_seed starts a new generation.
    let pres = SamplingParams {
        presence_penalty: 2.0,
        ..SamplingParams::GREEDY
    };
    let mut a = cpu.new_session().unwrap();
    let first = cpu.sample_next(&mut a, &[10, 11, 12], &pres).unwrap();
    assert_eq!(first, best, "nothing generated yet: no penalty");
    let snap = cpu.snapshot(&a).unwrap();
    let mut b = cpu.new_session().unwrap();
    cpu.restore(&mut b, &snap).unwrap();
    b.set_seed(0);
    // Both see the same context; only `a` generated `first` in this generation.
    let la = cpu.forward(&mut cpu.fork(&a).unwrap(), &[first]).unwrap();
    let ga = cpu.sample_next(&mut a, &[first], &pres).unwrap();
    let gb = cpu.sample_next(&mut b, &[first], &pres).unwrap();
    assert_eq!(gb as usize, qwgpu_ops::sampling::argmax(&la));
    let mut pen = la.clone();
    pen[first as usize] -= 2.0;
    assert_eq!(ga as usize, qwgpu_ops::sampling::argmax(&pen));
}
