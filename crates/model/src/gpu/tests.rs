//! Typed errors of the GPU model's public API (on lavapipe in CI).

use std::sync::Arc;

use qwgpu_kernels::sample::SamplingParams;
use qwgpu_kernels::{ContextOptions, GpuContext};

use super::GpuModel;
use crate::testing::{random_packed_model, tiny_config};
use crate::ModelError;

fn model(seed: u64) -> GpuModel {
    model_tuned(seed, |_| {})
}

/// [`model`] on a context whose tuning `tune` changed first.
fn model_tuned(seed: u64, tune: impl FnOnce(&mut qwgpu_kernels::Tuning)) -> GpuModel {
    let mut ctx = GpuContext::new(&ContextOptions::default()).expect("GPU context");
    tune(&mut ctx.tuning);
    let ctx = Arc::new(ctx);
    // In the coverage table (column `full`; on hardware it must have what ships).
    assert!(qwgpu_kernels::testing::require_model("full", &ctx));
    let packed = random_packed_model(&tiny_config(false), false, seed);
    GpuModel::from_packed(ctx, &packed, 16, &mut |_| {}).expect("GPU model")
}

const GREEDY: SamplingParams = SamplingParams {
    temperature: 0.0,
    top_k: 0,
    top_p: 1.0,
    ..SamplingParams::GREEDY
};

#[test]
fn decode_batch_with_mismatched_lengths_is_an_invalid_argument() {
    let m = model(1);
    let (mut a, mut b) = (m.new_session().unwrap(), m.new_session().unwrap());
    let cases: [(&[u32], &[SamplingParams]); 3] = [
        (&[1], &[GREEDY, GREEDY]),
        (&[1, 2], &[GREEDY]),
        (&[1, 2, 3], &[GREEDY, GREEDY, GREEDY]),
    ];
    for (tokens, params) in cases {
        let err = m
            .decode_batch(&mut [&mut a, &mut b], tokens, params)
            .expect_err("lengths differ");
        assert!(
            matches!(&err, ModelError::InvalidArgument { detail } if detail.contains("2 sessions")),
            "{err}"
        );
    }
    // Nothing ran: both sessions are still at position 0 and work.
    assert_eq!((a.position(), b.position()), (0, 0));
    let next = m
        .decode_batch(&mut [&mut a, &mut b], &[1, 2], &[GREEDY, GREEDY])
        .unwrap();
    assert_eq!(next.len(), 2);
}

#[test]
fn an_earlier_panic_in_a_batched_step_is_an_internal_error() {
    let m = model(2);
    let poisoned = std::thread::scope(|sc| {
        sc.spawn(|| {
            let _guard = m.batch.lock().unwrap();
            panic!("a batched step panics while holding the batch buffers");
        })
        .join()
    });
    assert!(poisoned.is_err());
    let mut a = m.new_session().unwrap();
    let err = m.decode_batch(&mut [&mut a], &[1], &[GREEDY]).unwrap_err();
    assert!(matches!(err, ModelError::Internal { .. }), "{err}");
}

#[test]
fn empty_input_and_oversized_profile_are_invalid_arguments() {
    let m = model(3);
    let mut s = m.new_session().unwrap();
    let err = m.forward(&mut s, &[], false).unwrap_err();
    assert!(matches!(err, ModelError::InvalidArgument { .. }), "{err}");
    let err = m.profile(&mut s, &[1; 17]).unwrap_err();
    assert!(
        matches!(&err, ModelError::InvalidArgument { detail } if detail.contains("1..=16")),
        "{err}"
    );
}

#[test]
fn a_session_or_snapshot_of_another_model_is_refused() {
    let (m, other) = (model(4), model(4));
    let mut mine = m.new_session().unwrap();
    m.forward(&mut mine, &[1, 2, 3], false).unwrap();
    let mut theirs = other.new_session().unwrap();
    let err = m.forward(&mut theirs, &[1], false).unwrap_err();
    assert!(matches!(err, ModelError::InvalidArgument { .. }), "{err}");
    let snap = other.snapshot(&other.fork(&theirs).unwrap()).unwrap();
    let err = m.restore(&mut mine, &snap).unwrap_err();
    assert!(matches!(err, ModelError::InvalidArgument { .. }), "{err}");
    assert!(m.snapshot(&theirs).is_err());
    assert_eq!(mine.position(), 3);
}

const HOT: SamplingParams = SamplingParams {
    temperature: 1.5,
    top_k: 0,
    top_p: 1.0,
    ..SamplingParams::GREEDY
};

/// The launch cache's key: a step encoded ahead for other sampling
/// parameters, and batch launches recorded before a session's KV cache grew
/// (new page, new buffers), are never replayed. Each result must equal the
/// same step of a fork that has nothing recorded, or of a session whose
/// steps are all recorded afresh.
#[test]
fn recorded_launches_are_replayed_only_for_their_key() {
    let m = model(5);
    let prompt: Vec<u32> = (0..250).map(|i| (i * 7 % 500) as u32).collect();
    let mut s = m.new_session().unwrap();
    m.set_seed(&mut s, 3);
    // Sampled prefill: the next (hot) decode step is encoded ahead.
    let mut tok = m.forward_sample(&mut s, &prompt, &HOT).unwrap();
    let mut fresh = m.fork(&s).unwrap();
    let a = m.forward_sample(&mut s, &[tok], &GREEDY).unwrap();
    let b = m.forward_sample(&mut fresh, &[tok], &GREEDY).unwrap();
    assert_eq!(a, b, "greedy step after a hot one");
    tok = a;
    // Batched decode across the first KV page's end (256 rows): once the
    // sessions grow, the batch's launches must bind the new page and scratch.
    // The reference: lone steps recorded afresh every time (all rows' logits).
    let mut other = m.fork(&s).unwrap();
    let mut refs = [m.fork(&s).unwrap(), m.fork(&s).unwrap()];
    let mut toks = [tok, (tok + 1) % 512];
    for step in 0..12 {
        let mut want = [0u32; 2];
        for ((r, w), &t) in refs.iter_mut().zip(&mut want).zip(&toks) {
            *w = crate::argmax(&m.forward(r, &[t], true).unwrap()) as u32;
        }
        let got = m
            .decode_batch(&mut [&mut s, &mut other], &toks, &[GREEDY, GREEDY])
            .unwrap();
        assert_eq!(
            got,
            want,
            "batched step {step} at position {s_position}",
            s_position = s.position()
        );
        toks = [got[0], got[1]];
    }
    assert!(s.position() > 256);
    // The states the batched steps left are the lone steps': the batch's
    // projections run a GEMM over its rows (another summation order than the
    // lone GEMV), so equal within 1e-4 of the logit scale; a stale buffer or
    // page would be off by far more.
    for (sess, (r, &t)) in [&mut s, &mut other]
        .into_iter()
        .zip(refs.iter_mut().zip(&toks))
    {
        let (a, b) = (
            m.forward(sess, &[t], true).unwrap(),
            m.forward(r, &[t], true).unwrap(),
        );
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "logits after the batched steps differ from the lone steps' by {diff:e} (scale {scale:e})"
        );
    }
}

/// Launches per label of the last batched step `m` recorded.
fn batch_launches(m: &GpuModel) -> std::collections::BTreeMap<&'static str, usize> {
    let guard = m.batch.lock().unwrap();
    let list = guard.as_ref().unwrap().launches.latest().unwrap();
    let mut by = std::collections::BTreeMap::new();
    for d in list
        .body
        .iter()
        .chain(list.sampler.iter().flat_map(|s| s.launches()))
    {
        *by.entry(d.label).or_insert(0) += 1;
    }
    by
}

/// Launches of the batched step's families whose label starts with `prefix`.
fn family(by: &std::collections::BTreeMap<&'static str, usize>, prefix: &str) -> usize {
    by.iter()
        .filter(|(l, _)| l.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

/// A batched step runs the GDN cores of all its sessions in one launch per
/// layer (a slot table over the pooled states) and samples all rows in one
/// launch family, not one of each per session: those families' launches are
/// the same for 1 and 5 sessions; no row is copied between the batch's
/// activations and a session's, and the attention merge is one launch per
/// layer for all rows.
#[test]
fn batched_gdn_cores_and_samplers_are_one_launch_family() {
    let m = model(6);
    let gdn_layers = m
        .config
        .layer_types
        .iter()
        .filter(|t| **t == qwgpu_checkpoint::LayerType::LinearAttention)
        .count();
    let mut counts = Vec::new();
    for b in [1usize, 5] {
        let mut sessions: Vec<_> = (0..b).map(|_| m.new_session().unwrap()).collect();
        for (i, s) in sessions.iter_mut().enumerate() {
            m.forward(s, &vec![3; 1 + 9 * i], false).unwrap();
        }
        let mut refs: Vec<&mut super::GpuSession> = sessions.iter_mut().collect();
        let toks: Vec<u32> = (0..b as u32).collect();
        let params: Vec<SamplingParams> = (0..b).map(|_| GREEDY).collect();
        m.decode_batch(&mut refs, &toks, &params).unwrap();
        let by = batch_launches(&m);
        counts.push((family(&by, "gdn"), family(&by, "sample")));
        // Attention reads and writes its rows of the batch in place: no copies.
        if qwgpu_kernels::attention::rows_bindable(
            &m.ctx,
            &super::activations::attn_dims(&m.config),
        ) {
            assert_eq!(family(&by, "copy"), 0, "{b} sessions: {by:?}");
            // One merge launch per attention layer for all rows.
            let attn_layers = m.config.layer_types.len() - gdn_layers;
            assert_eq!(
                by.get("attn merge rows"),
                Some(&attn_layers),
                "{b} sessions: {by:?}"
            );
            assert_eq!(by.get("attn_merge"), None, "{b} sessions: {by:?}");
        }
        let dims = super::activations::gdn_dims(&m.config);
        if qwgpu_kernels::gdn::fused_decode_available(&m.ctx, &dims) {
            assert_eq!(
                by.get("gdn decode rows"),
                Some(&gdn_layers),
                "{b} sessions: {by:?}"
            );
        }
    }
    assert_eq!(
        counts[0], counts[1],
        "(GDN, sampler) launches for 1 and 5 sessions"
    );
}

/// Batched steps run their dense matmuls on the skinny tensor-core kernel
/// exactly for the session counts the context's tuning gives it
/// (`skinny_tokens`: `Tuning::skinny_min_t ..= 64`) where it takes the
/// model's weights (the decode block is then 64), the small-T GEMV below;
/// moving the tuning's bound moves them. Adapters without cooperative
/// matrices never run it (blocks of 16 sessions).
#[test]
fn batched_steps_take_the_skinny_matmul_where_the_tuning_says() {
    use qwgpu_kernels::matmul::{skinny_tokens, MAX_VEC_T};
    for min_t in [None, Some(2), Some(65)] {
        let m = model_tuned(8, |t| {
            if let Some(v) = min_t {
                t.skinny_min_t = v;
            }
        });
        let takes = m.decode_block() > MAX_VEC_T as usize;
        assert_eq!(
            takes,
            !skinny_tokens(&m.ctx).is_empty() && m.decode_block() == 64,
            "{min_t:?}: decode block {block}",
            block = m.decode_block()
        );
        for b in [2usize, 9, 16] {
            let mut sessions: Vec<_> = (0..b).map(|_| m.new_session().unwrap()).collect();
            for s in sessions.iter_mut() {
                m.forward(s, &[3, 4], false).unwrap();
            }
            let mut refs: Vec<&mut super::GpuSession> = sessions.iter_mut().collect();
            let toks: Vec<u32> = (0..b as u32).collect();
            let params: Vec<SamplingParams> = (0..b).map(|_| GREEDY).collect();
            m.decode_batch(&mut refs, &toks, &params).unwrap();
            let by = batch_launches(&m);
            let want = takes && skinny_tokens(&m.ctx).contains(&(b as u32));
            assert_eq!(
                family(&by, "matmul_coop_skinny") > 0,
                want,
                "{b} sessions, bound {min_t:?}: {by:?}"
            );
            if !want {
                assert!(
                    family(&by, "matmul_gemv_t") > 0,
                    "{b} sessions, bound {min_t:?}: {by:?}"
                );
            }
        }
    }
}

/// One batched step of more sessions than the mixer cores take at once
/// (CORE_ROWS = 16): the projections run over all rows, the cores in blocks
/// of 16 (rows past the first block copied into the core activations and
/// back). Every session gets the tokens it gets alone, over several steps;
/// with the default block (16 here: no skinny matmul on this adapter) the
/// same batch runs as two steps and agrees too.
#[test]
fn a_decode_block_past_the_core_rows_equals_lone_decode() {
    let mut m = model(5);
    assert!(m.decode_block() == 16 || m.decode_block() == 64);
    m.set_decode_block(40);
    assert_eq!(m.decode_block(), 40);
    let n = 37;
    let mut sessions = Vec::new();
    let mut next = Vec::new();
    for i in 0..n {
        let mut s = m.new_session().unwrap();
        let prompt: Vec<u32> = (0..1 + i % 5)
            .map(|j| ((7 * i + 3 * j) % 500) as u32)
            .collect();
        next.push(m.forward_sample(&mut s, &prompt, &GREEDY).unwrap());
        sessions.push(s);
    }
    let mut alone: Vec<_> = sessions.iter().map(|s| m.fork(s).unwrap()).collect();
    let mut alone_next = next.clone();
    let params = vec![GREEDY; n];
    for step in 0..3 {
        let mut refs: Vec<&mut super::GpuSession> = sessions.iter_mut().collect();
        next = m.decode_batch(&mut refs, &next, &params).unwrap();
        for (i, s) in alone.iter_mut().enumerate() {
            alone_next[i] = m.forward_sample(s, &[alone_next[i]], &GREEDY).unwrap();
        }
        assert_eq!(next, alone_next, "step {step}");
    }
    for (a, b) in sessions.iter().zip(&alone) {
        assert_eq!(a.position(), b.position());
    }
    // The cores ran in 3 blocks (16 + 16 + 5 rows), each in its batched
    // form, not one session at a time.
    let by = batch_launches(&m);
    let types = &m.config.layer_types;
    let gdn_layers = types
        .iter()
        .filter(|t| **t == qwgpu_checkpoint::LayerType::LinearAttention)
        .count();
    let attn_layers = types.len() - gdn_layers;
    let dims = super::activations::gdn_dims(&m.config);
    if qwgpu_kernels::gdn::fused_decode_available(&m.ctx, &dims) {
        assert_eq!(by.get("gdn decode rows"), Some(&(3 * gdn_layers)), "{by:?}");
    }
    if qwgpu_kernels::attention::rows_bindable(&m.ctx, &super::activations::attn_dims(&m.config)) {
        assert_eq!(
            by.get("attn merge rows"),
            Some(&(3 * attn_layers)),
            "{by:?}"
        );
    }
    // Blocks 2 and 3: each core's inputs copied in and its output out.
    assert!(family(&by, "copy") >= 2 * 2 * types.len(), "{by:?}");
}

/// The web's async forward passes run the one step sequence the blocking
/// ones do (natively their readbacks are ready at once): the same logits and
/// sampled tokens bit for bit, the session in the same state after (its
/// position and its token log, which snapshots and the controlled sampler
/// read), over several chunked steps.
#[test]
fn async_forward_passes_equal_the_blocking_ones() {
    use super::steps::ready;
    let m = model(7);
    let vocab = m.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % vocab).collect();
    let (mut a, mut b) = (m.new_session().unwrap(), m.new_session().unwrap());
    let blocking = m.forward(&mut a, &prompt, true).unwrap();
    let awaited = ready(m.forward_async(&mut b, &prompt, true)).unwrap();
    assert_eq!(blocking.len(), 40 * m.config().vocab_size);
    assert!(blocking
        .iter()
        .zip(&awaited)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    for step in 0..3 {
        let last = m.forward(&mut a, &[5], false).unwrap();
        let last_async = ready(m.forward_async(&mut b, &[5], false)).unwrap();
        assert_eq!(last, last_async, "decode step {step}");
        let t = m.forward_sample(&mut a, &[9], &GREEDY).unwrap();
        let t_async = ready(m.forward_sample_async(&mut b, &[9], &GREEDY)).unwrap();
        assert_eq!(t, t_async, "sampled step {step}");
    }
    assert_eq!(a.position(), b.position());
    assert_eq!(a.log, b.log, "the sessions' token logs");
}

/// Every buffer [`Activations::new`](super::activations::Activations::new)
/// sizes by tokens fits `T × widest_row_bytes` (the bound the step length is
/// fitted to the device's limits with), for the dense and the MoE geometry.
#[test]
fn widest_activation_row_bounds_every_buffer_of_a_step() {
    let ctx = GpuContext::new(&ContextOptions::default()).expect("GPU context");
    for moe in [false, true] {
        let c = tiny_config(moe);
        let row = super::activations::widest_row_bytes(&c) as u64;
        for t in [1usize, 7, 64] {
            let a = super::activations::Activations::new(&ctx, &c, t, 1).expect("activations");
            let mut sizes = vec![
                ("h", a.stream.h.size()),
                ("x", a.stream.x.size()),
                ("rope", a.stream.rope.size()),
            ];
            if let Some(g) = &a.gated_delta {
                sizes.extend([("qkvz", g.qkvz.size()), ("gdn_out", g.out.size())]);
            }
            if let Some(at) = &a.attention {
                sizes.extend([("qkv", at.qkv.size()), ("attn_out", at.out.size())]);
            }
            if let Some(m) = &a.mlp {
                sizes.push(("act", m.act.size()));
            }
            if let Some(m) = &a.moe {
                sizes.extend([
                    ("router_logits", m.router_logits.size()),
                    ("expert_act", m.expert_act.size()),
                    ("expert_out", m.expert_out.size()),
                    ("shared_act", m.shared_act.size()),
                ]);
            }
            let widest = sizes.iter().map(|s| s.1).max().unwrap();
            for (name, size) in &sizes {
                assert!(
                    *size <= t as u64 * row + 16,
                    "moe {moe}, T {t}: `{name}` is {size} bytes, over {t} × {row}"
                );
            }
            // The bound is the widest buffer's, not a loose one.
            assert!(
                widest + 16 > t as u64 * row,
                "moe {moe}, T {t}: {sizes:?} vs {row}"
            );
        }
    }
}

/// A step as long as asked where the device's binding limits hold it, else
/// the longest that fits; never 0 or past the engine's most.
#[test]
fn step_length_is_fitted_to_the_device_buffer_limits() {
    let mut ctx = GpuContext::new(&ContextOptions::default()).expect("GPU context");
    let c = tiny_config(false);
    let row = super::activations::widest_row_bytes(&c) as u64;
    ctx.limits.max_storage_buffer_binding_size = 100 * row + 16;
    ctx.limits.max_buffer_size = 1 << 40;
    assert_eq!(super::fit_step_tokens(&ctx, &c, 64), 64);
    assert_eq!(super::fit_step_tokens(&ctx, &c, 2048), 100);
    assert_eq!(super::fit_step_tokens(&ctx, &c, 0), 1);
    ctx.limits.max_buffer_size = 10 * row + 16;
    assert_eq!(super::fit_step_tokens(&ctx, &c, 2048), 10);
    ctx.limits.max_storage_buffer_binding_size = 1 << 40;
    ctx.limits.max_buffer_size = 1 << 40;
    assert_eq!(
        super::fit_step_tokens(&ctx, &c, 1 << 20),
        super::MAX_STEP_TOKENS
    );
    // A model loaded with a step its device cannot hold gets the fitted one.
    let ctx = Arc::new(ctx);
    let packed = random_packed_model(&c, false, 3);
    let m = GpuModel::from_packed(ctx, &packed, 1 << 20, &mut |_| {}).expect("GPU model");
    assert_eq!(m.max_t, super::MAX_STEP_TOKENS);
}
