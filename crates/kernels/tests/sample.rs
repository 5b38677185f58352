//! GPU sampling against its CPU reference `qwgpu_ops::sampling::sample` (the rule is in
//! `qwgpu_kernels::sample`'s docs; `qwgpu_ops::sampling` ranks ties and cuts
//! top-k differently, so it is not the reference here), on both test contexts:
//! - greedy = argmax (lowest index on ties, -inf never picked), exact;
//! - a NaN or +inf logit, or a row of -inf, gives `NON_FINITE`, on every path;
//! - the GPU hash = `uniform_random`, bit-exact, by a probe launch and by a
//!   uniform-shaped row (equal logits: token = floor(u · V));
//! - temperature / top-k / top-p: GPU token == `sample_host(logits, params,
//!   uniform_random(seed, counter))` for many (seed, counter) pairs (they could
//!   only differ where u lands within ~1e-6 of a boundary; none does here);
//! - frequencies follow p on a 5-token row (4.5 sigma bounds; counted with the
//!   host mirror over 40000 counters, the GPU matching it on 64 of them).

use qwgpu_kernels::sample::{self, SamplingParams};
use qwgpu_kernels::testing::cases::sample::{self as cases, params, upload_row, Batch, UNWRITTEN};
use qwgpu_kernels::{testing, Step};
use qwgpu_ops::rng::Rng;
use qwgpu_ops::sampling::{sample as sample_host, uniform_random};

/// Vocabulary sizes of the greedy and host-rule cases.
const VOCAB_SIZES: [usize; 4] = [1, 7, 1000, 50000];

#[test]
fn greedy_is_argmax_with_ties_nan_and_offsets() {
    for t in testing::contexts() {
        pollster::block_on(cases::greedy_argmax(t, &VOCAB_SIZES));
    }
}

#[test]
fn non_finite_rows_give_the_sentinel() {
    // 5000 logits: five blocks, the bad value in a later one than the max.
    let vocab = 5000usize;
    let mut rng = Rng::new(3);
    let base: Vec<f32> = (0..vocab).map(|_| rng.normal()).collect();
    let row = |edit: &dyn Fn(&mut Vec<f32>)| {
        let mut r = base.clone();
        r[10] = 50.0;
        edit(&mut r);
        r
    };
    let rows = [
        ("one NaN", row(&|r| r[4321] = f32::NAN), true),
        ("all NaN", row(&|r| r.fill(f32::NAN)), true),
        ("one +inf", row(&|r| r[2048] = f32::INFINITY), true),
        ("all -inf", row(&|r| r.fill(f32::NEG_INFINITY)), true),
        ("some -inf", row(&|r| r[3000] = f32::NEG_INFINITY), false),
    ];
    let cases = [
        SamplingParams::greedy(),
        params(1.0, 0, 1.0),
        params(0.8, 40, 0.9),
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (what, logits, bad) in &rows {
            let lb = upload_row(ctx, logits, 3);
            for p in &cases {
                let b = Batch::new(ctx, &lb, 3, vocab as u32, p, 1);
                let got = pollster::block_on(b.run(ctx, &[(9, 1)]))[0];
                let want = sample_host(logits, p, uniform_random(9, 1));
                assert_eq!(got, want, "{t_name} {what} {p:?}", t_name = t.name);
                assert_eq!(
                    got == sample::NON_FINITE,
                    *bad,
                    "{t_name} {what} {p:?}",
                    t_name = t.name
                );
            }
        }
    }
}

#[test]
fn sampling_matches_the_host_rule() {
    for t in testing::contexts() {
        pollster::block_on(cases::host_rule(t, &VOCAB_SIZES));
    }
}

#[test]
fn top_k_keeps_every_token_tied_at_the_threshold() {
    // e ∝ [e^3, e^3, e^3, e, 1]: top-k 2 keeps all three tied tokens, so a u
    // near 1 picks the third one (a plain cut after 2 tokens never could).
    let logits = [3.0f32, 3.0, 3.0, 1.0, 0.0];
    let p = params(1.0, 2, 1.0);
    let (seed, counter) = (5u64, (0..).find(|&c| uniform_random(5, c) > 0.9).unwrap());
    assert_eq!(sample_host(&logits, &p, uniform_random(seed, counter)), 2);
    assert_eq!(sample_host(&logits, &p, 0.5), 1);
    // top_p 0.5 of the kept mass: the three tied tokens (each 1/3) all stay.
    assert_eq!(sample_host(&logits, &params(1.0, 0, 0.5), 0.99), 2);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let lb = upload_row(ctx, &logits, 0);
        for p in [p, params(1.0, 0, 0.5)] {
            let b = Batch::new(ctx, &lb, 0, 5, &p, 1);
            assert_eq!(
                pollster::block_on(b.run(ctx, &[(seed, counter)]))[0],
                2,
                "{t_name} {p:?}",
                t_name = t.name
            );
        }
    }
}

#[test]
fn frequencies_follow_the_softmax() {
    // The frequencies are counted over 40000 counters with the host mirror (fast);
    // the GPU is checked to pick the same token for the first 64 of them.
    let logits = [1.0f32, 2.0, 0.5, -1.0, 1.5];
    let p = params(1.0, 0, 1.0);
    let seed = 77u64;
    let e: Vec<f64> = logits.iter().map(|&l| ((l - 2.0) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    let n = 40_000u32;
    let mut counts = [0usize; 5];
    for c in 0..n {
        counts[sample_host(&logits, &p, uniform_random(seed, c)) as usize] += 1;
    }
    for i in 0..5 {
        let (f, q) = (counts[i] as f64 / n as f64, e[i] / z);
        let sigma = (q * (1.0 - q) / n as f64).sqrt();
        assert!(
            (f - q).abs() < 4.5 * sigma,
            "seed {seed} token {i}: frequency {f} vs p {q}"
        );
    }
    let pairs: Vec<(u64, u32)> = (0..64).map(|c| (seed, c)).collect();
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let lb = upload_row(ctx, &logits, 0);
        let b = Batch::new(ctx, &lb, 0, 5, &p, pairs.len());
        let mut gpu_counts = [0usize; 5];
        for (g, &(s, c)) in pollster::block_on(b.run(ctx, &pairs))
            .into_iter()
            .zip(&pairs)
        {
            assert_eq!(
                g,
                sample_host(&logits, &p, uniform_random(s, c)),
                "{t_name} seed {s} counter {c}",
                t_name = t.name
            );
            gpu_counts[g as usize] += 1;
        }
        // Every token with p > 10% shows up in 64 draws.
        assert!(
            gpu_counts
                .iter()
                .zip(&e)
                .all(|(&k, &ei)| k > 0 || ei / z < 0.1),
            "{t_name} {gpu_counts:?}",
            t_name = t.name
        );
    }
}

#[test]
fn sample_arguments_are_checked() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let logits = ctx.storage("l", 64).unwrap();
    let out = ctx.storage("o", 16).unwrap();
    let step = ctx.uniform("step", &Step::default());
    let s = |p: SamplingParams, vocab: u32, out_off: u32| {
        sample::sample(ctx, &logits, 0, vocab, &p, &step, &out, out_off).map(|_| ())
    };
    assert!(s(params(-1.0, 0, 1.0), 4, 0)
        .unwrap_err()
        .to_string()
        .contains("temperature"));
    assert!(s(params(1.0, 0, 0.0), 4, 0)
        .unwrap_err()
        .to_string()
        .contains("top_p"));
    assert!(s(params(1.0, 0, 1.0), 17, 0)
        .unwrap_err()
        .to_string()
        .contains("logits 0..17"));
    assert!(s(params(1.0, 0, 1.0), 0, 0)
        .unwrap_err()
        .to_string()
        .contains("vocab 0"));
    assert!(s(params(1.0, 0, 1.0), 4, 4)
        .unwrap_err()
        .to_string()
        .contains("out[4]"));
    assert!(s(params(1.0, 3, 0.9), 16, 3).is_ok());
}

/// Rows sampled together by `sample_rows` (mixed shapes: greedy, temperature
/// only, top-k, top-p, both; each row its own logits, offset, output slot,
/// seed and counter), 3 and then 5 rows: every row's token equals the host
/// rule on its own logits and random number, twice (new seeds and counters
/// written between runs); output slots of no row stay unwritten.
#[test]
fn sample_rows_match_the_host_rule_per_row() {
    let all = [
        params(0.0, 0, 1.0),
        params(0.9, 0, 1.0),
        params(1.0, 7, 1.0),
        params(1.2, 0, 0.85),
        params(0.8, 30, 0.9),
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (vocab, picks) in [(1000usize, &[4usize, 0, 2][..]), (7, &[1, 3, 0, 4, 2])] {
            let n = picks.len();
            let mut rng = Rng::new(1200 + vocab as u64 + n as u64);
            // Row i's logits at offset 3 + i·(vocab + 2) (NaN between rows).
            let stride = vocab + 2;
            let mut flat = vec![f32::NAN; 3 + n * stride];
            let mut rows_logits = Vec::new();
            for i in 0..n {
                let l: Vec<f32> = (0..vocab).map(|_| rng.normal() * 2.0).collect();
                flat[3 + i * stride..3 + i * stride + vocab].copy_from_slice(&l);
                rows_logits.push(l);
            }
            let lb = ctx.upload("logits", &flat).unwrap();
            let out = ctx.storage("out", (2 * n + 1) as u64 * 4).unwrap();
            let step = ctx.uniform("step", &Step::default());
            let rows: Vec<sample::SampleRow> = picks
                .iter()
                .enumerate()
                .map(|(i, &k)| sample::SampleRow {
                    logits_offset: (3 + i * stride) as u32,
                    out_offset: (2 * (n - 1 - i) + 1) as u32,
                    params: all[k],
                })
                .collect();
            let sampler = sample::sample_rows(ctx, &lb, vocab as u32, &rows, &step, &out).unwrap();
            for run in 0..2u32 {
                let seeds: Vec<(u64, u32)> = (0..n as u64)
                    .map(|i| (0x5eed_0000 + 977 * i + run as u64, 3 * i as u32 + 11 * run))
                    .collect();
                sampler.write_seeds(ctx, &seeds).unwrap();
                ctx.queue
                    .write_buffer(&out, 0, bytemuck::cast_slice(&vec![UNWRITTEN; 2 * n + 1]));
                ctx.run(
                    "sample rows",
                    &sampler.launches().iter().collect::<Vec<_>>(),
                )
                .unwrap();
                let got = ctx.read_u32(&out, 0, 2 * n + 1).unwrap();
                for (i, r) in rows.iter().enumerate() {
                    let (s, c) = seeds[i];
                    let u = uniform_random(s, c);
                    let want = sample_host(&rows_logits[i], &r.params, u);
                    assert_eq!(
                        got[r.out_offset as usize],
                        want,
                        "{t_name} vocab {vocab} run {run} row {i} {p:?} u {u}",
                        t_name = t.name,
                        p = r.params
                    );
                }
                for slot in (0..2 * n + 1).step_by(2) {
                    assert_eq!(
                        got[slot],
                        UNWRITTEN,
                        "{t_name} slot {slot}",
                        t_name = t.name
                    );
                }
            }
            assert!(sampler.write_seeds(ctx, &[(1, 1)]).is_err() || n == 1);
        }
    }
}

// ---- Controls: min-p, penalties, masks, counts, log-probabilities ----------
//
// Against `qwgpu_ops::sampling::controls` (the CPU reference): adjusted
// logits within 4 ulp-ish (1e-6 relative: the GPU may fuse the penalty's
// multiply-add), tokens equal, log-probabilities within 1e-4 (f32 sums of
// up to 248k terms on the GPU, f64 on the host), top ids equal.

use qwgpu_kernels::sample::controls::{self as ctl, AdjustRow, LP_WORDS};
use qwgpu_ops::sampling::controls::{
    adjusted_logits, logprobs as logprobs_host, mask_words, TokenCounts,
};

/// Vocabulary sizes: tiny, one word short of 32, a round one, and an odd
/// Qwen3.5-like one (lavapipe is slow: the big one on the cheap kernels only).
const VOCABS: [usize; 3] = [31, 1000, 4099];
const BIG_VOCAB: usize = 248_077;

fn random_logits(rng: &mut Rng, vocab: usize) -> Vec<f32> {
    (0..vocab)
        .map(|i| match i % 97 {
            13 => f32::NEG_INFINITY,
            _ => rng.normal() * 3.0,
        })
        .collect()
}

fn random_counts(rng: &mut Rng, vocab: usize) -> TokenCounts {
    let context: Vec<u32> = (0..vocab / 5)
        .map(|_| (rng.uniform() * vocab as f32) as u32)
        .collect();
    let generated: Vec<u32> = (0..vocab / 7)
        .map(|_| (rng.uniform() * vocab as f32 * 0.3) as u32)
        .collect();
    TokenCounts::new(vocab, &context, &generated)
}

fn random_mask(rng: &mut Rng, vocab: usize) -> Vec<u32> {
    let mut m: Vec<u32> = (0..mask_words(vocab))
        .map(|_| (rng.uniform() * u32::MAX as f32) as u32)
        .collect();
    m[0] |= 1;
    m
}

fn penalised() -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        presence_penalty: 0.7,
        frequency_penalty: -0.3,
        repetition_penalty: 1.4,
        ..SamplingParams::GREEDY
    }
}

#[test]
fn adjust_matches_the_host_penalties_and_mask() {
    let seed = testing::seed(0xad05);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for vocab in VOCABS.into_iter().chain([BIG_VOCAB]) {
            let mut rng = Rng::new(seed + vocab as u64);
            let mut logits = random_logits(&mut rng, vocab);
            logits[vocab / 2] = f32::NAN;
            logits[vocab / 3] = f32::INFINITY;
            let counts = random_counts(&mut rng, vocab);
            let mask = random_mask(&mut rng, vocab);
            let off = 5usize;
            let lb = upload_row(ctx, &logits, off);
            let cb = ctx.upload("counts", counts.as_slice()).unwrap();
            // The mask at word 2 of its buffer.
            let mut mwords = vec![0u32; 2];
            mwords.extend(&mask);
            let mb = ctx.upload("mask", &mwords).unwrap();
            for (penal, masked) in [(true, false), (false, true), (true, true)] {
                let p = penalised();
                let adj = ctx.storage("adj", (vocab as u64 + 3) * 4).unwrap();
                let row = AdjustRow {
                    logits_offset: off as u32,
                    adj_offset: 3,
                    params: p,
                    counts: penal.then_some(&cb),
                    mask_offset: masked.then_some(2),
                };
                let d = ctl::adjust(ctx, &lb, &adj, &mb, vocab as u32, &row).unwrap();
                ctx.run("adjust", &[&d]).unwrap();
                let got = ctx.read_f32(&adj, 3, vocab).unwrap();
                let want = adjusted_logits(
                    &logits,
                    &p,
                    penal.then_some(counts.as_slice()),
                    masked.then_some(&mask[..]),
                );
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let ok = (g.is_nan() && w.is_nan())
                        || g == w
                        || (g - w).abs() <= 1e-6 * w.abs().max(1.0);
                    assert!(
                        ok,
                        "{t_name} vocab {vocab} penal {penal} masked {masked} token {i}: GPU {g} host {w} (logit {l}, count {c:#x})",
                        t_name = t.name,
                        l = logits[i],
                        c = counts.as_slice()[i]
                    );
                }
            }
        }
    }
}

/// The adjusted row sampled by the GPU sampler: a one-token mask forces that
/// token on every path (greedy, temperature, top-k + top-p, min-p), and a
/// penalised row samples what the host rule samples.
#[test]
fn masked_and_penalised_rows_sample_like_the_host() {
    let seed = testing::seed(0x3a5c);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for vocab in VOCABS {
            let mut rng = Rng::new(seed ^ vocab as u64);
            let logits = random_logits(&mut rng, vocab);
            let lb = upload_row(ctx, &logits, 0);
            let counts = random_counts(&mut rng, vocab);
            let cb = ctx.upload("counts", counts.as_slice()).unwrap();
            let hot = SamplingParams {
                temperature: 1.1,
                top_k: 50,
                top_p: 0.9,
                min_p: 0.01,
                ..SamplingParams::GREEDY
            };
            for allowed in [0usize, vocab / 2, vocab - 1] {
                let mut mask = vec![0u32; mask_words(vocab)];
                mask[allowed / 32] |= 1 << (allowed % 32);
                let mb = ctx.upload("mask", &mask).unwrap();
                for p in [SamplingParams::GREEDY, hot, penalised()] {
                    let adj = ctx.storage("adj", vocab as u64 * 4).unwrap();
                    let row = AdjustRow {
                        logits_offset: 0,
                        adj_offset: 0,
                        params: p,
                        counts: Some(&cb),
                        mask_offset: Some(0),
                    };
                    let d = ctl::adjust(ctx, &lb, &adj, &mb, vocab as u32, &row).unwrap();
                    let b = Batch::new(ctx, &adj, 0, vocab as u32, &p, 4);
                    ctx.run("adjust", &[&d]).unwrap();
                    let pairs: Vec<(u64, u32)> = (0..4).map(|c| (seed, c * 13)).collect();
                    for g in pollster::block_on(b.run(ctx, &pairs)) {
                        assert_eq!(
                            g as usize,
                            allowed,
                            "{t_name} vocab {vocab} {p:?}",
                            t_name = t.name
                        );
                    }
                }
            }
            // Penalties alone: the token the host rule picks.
            let mb = ctx
                .upload("mask", &vec![u32::MAX; mask_words(vocab)])
                .unwrap();
            for p in [
                SamplingParams {
                    temperature: 0.0,
                    ..penalised()
                },
                penalised(),
                SamplingParams {
                    min_p: 0.05,
                    top_k: 20,
                    ..penalised()
                },
            ] {
                let adj = ctx.storage("adj", vocab as u64 * 4).unwrap();
                let row = AdjustRow {
                    logits_offset: 0,
                    adj_offset: 0,
                    params: p,
                    counts: Some(&cb),
                    mask_offset: None,
                };
                let d = ctl::adjust(ctx, &lb, &adj, &mb, vocab as u32, &row).unwrap();
                ctx.run("adjust", &[&d]).unwrap();
                let b = Batch::new(ctx, &adj, 0, vocab as u32, &p, 8);
                let pairs: Vec<(u64, u32)> = (0..8).map(|c| (seed + 1, c * 5 + 1)).collect();
                let got = pollster::block_on(b.run(ctx, &pairs));
                for (&(s, c), g) in pairs.iter().zip(got) {
                    let u = uniform_random(s, c);
                    let want = qwgpu_ops::sampling::controls::sample_controlled(
                        &logits,
                        &p,
                        Some(counts.as_slice()),
                        None,
                        u,
                    );
                    assert_eq!(
                        g,
                        want,
                        "{t_name} vocab {vocab} {p:?} u {u}",
                        t_name = t.name
                    );
                }
            }
        }
    }
}

#[test]
fn min_p_rows_match_the_host_rule() {
    let seed = testing::seed(0x319);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for vocab in [7usize, 1000] {
            let mut rng = Rng::new(seed + vocab as u64);
            let logits: Vec<f32> = (0..vocab).map(|_| rng.normal() * 2.0).collect();
            let lb = upload_row(ctx, &logits, 1);
            for min_p in [0.05f32, 0.3, 1.0] {
                let p = SamplingParams {
                    min_p,
                    ..params(1.2, 0, 1.0)
                };
                let b = Batch::new(ctx, &lb, 1, vocab as u32, &p, 8);
                let pairs: Vec<(u64, u32)> = (0..8).map(|c| (seed, 3 * c + 1)).collect();
                for (&(s, c), g) in pairs.iter().zip(pollster::block_on(b.run(ctx, &pairs))) {
                    let u = uniform_random(s, c);
                    assert_eq!(
                        g,
                        sample_host(&logits, &p, u),
                        "{t_name} vocab {vocab} min_p {min_p} u {u}",
                        t_name = t.name
                    );
                }
            }
        }
    }
}

#[test]
fn counts_follow_the_sampled_token() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let vocab = 40u32;
        let mut init = vec![0u32; vocab as usize];
        init[3] = 1 << 31;
        init[7] = 5;
        let cb = ctx.upload("counts", &init).unwrap();
        let out = ctx
            .upload("out", &[3u32, 7, 39, sample::NON_FINITE, 40])
            .unwrap();
        let ds: Vec<_> = (0..5)
            .map(|i| ctl::count(ctx, &out, i, &cb, vocab).unwrap())
            .collect();
        ctx.run("count", &ds.iter().collect::<Vec<_>>()).unwrap();
        let got = ctx.read_u32(&cb, 0, vocab as usize).unwrap();
        let mut want = init.clone();
        want[3] = (1 << 31) | 1;
        want[7] = 6;
        want[39] = 1;
        assert_eq!(got, want, "{t_name}", t_name = t.name);
        assert!(ctl::count(ctx, &out, 64, &cb, vocab).is_err());
        assert!(ctl::count(ctx, &out, 0, &cb, 41).is_err());
    }
}

#[test]
fn logprobs_match_the_host_log_softmax() {
    let seed = testing::seed(0x10b);
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (vocab, n) in [
            (7usize, 20u32),
            (31, 5),
            (1000, 20),
            (4099, 1),
            (BIG_VOCAB, 20),
        ] {
            let mut rng = Rng::new(seed + vocab as u64);
            let mut logits = random_logits(&mut rng, vocab);
            if vocab == 7 {
                logits[2] = f32::NEG_INFINITY;
            }
            // A tie at the top: the lower id first.
            let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            logits[vocab - 1] = best;
            let off = 2usize;
            let lb = upload_row(ctx, &logits, off);
            let chosen = [0u32, vocab as u32 - 1, 2, sample::NON_FINITE];
            let out = ctx.upload("out", &chosen).unwrap();
            let lp = ctx.storage("lp", (4 * LP_WORDS + 1) as u64 * 4).unwrap();
            let mut ds = Vec::new();
            for k in 0..4u32 {
                let (a, b) = ctl::logprobs(
                    ctx,
                    &lb,
                    off as u32,
                    vocab as u32,
                    n,
                    &out,
                    k,
                    &lp,
                    1 + k * LP_WORDS as u32,
                )
                .unwrap();
                ds.push(a);
                ds.push(b);
            }
            ctx.run("logprobs", &ds.iter().collect::<Vec<_>>()).unwrap();
            let words = ctx.read_u32(&lp, 0, 4 * LP_WORDS + 1).unwrap();
            for k in 0..4usize {
                let (got_c, got_top) = ctl::parse_logprobs(&words[1 + k * LP_WORDS..]);
                let want = logprobs_host(&logits, chosen[k], n as usize);
                let what = format!(
                    "{t_name} vocab {vocab} n {n} chosen {c}",
                    t_name = t.name,
                    c = chosen[k]
                );
                if want.chosen.is_nan() {
                    assert!(got_c.is_nan(), "{what}: {got_c}");
                } else if want.chosen == f32::NEG_INFINITY {
                    assert_eq!(got_c, f32::NEG_INFINITY, "{what}");
                } else {
                    assert!(
                        (got_c - want.chosen).abs() < 1e-4,
                        "{what}: {got_c} vs {w}",
                        w = want.chosen
                    );
                }
                let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
                assert_eq!(ids(&got_top), ids(&want.top), "{what}");
                for (g, w) in got_top.iter().zip(&want.top) {
                    assert!((g.1 - w.1).abs() < 1e-4, "{what}: {g:?} vs {w:?}");
                }
            }
        }
        let lb = ctx.storage("l", 64).unwrap();
        let out = ctx.storage("o", 4).unwrap();
        let lp = ctx.storage("lp", LP_WORDS as u64 * 4).unwrap();
        assert!(ctl::logprobs(ctx, &lb, 0, 16, 21, &out, 0, &lp, 0).is_err());
        assert!(ctl::logprobs(ctx, &lb, 0, 64, 2, &out, 0, &lp, 0).is_err());
        assert!(ctl::logprobs(ctx, &lb, 0, 16, 2, &out, 0, &lp, LP_WORDS as u32).is_err());
        assert!(ctl::logprobs(ctx, &lb, 0, 16, 2, &out, 0, &lp, 0).is_ok());
    }
}
