//! The GDN layer core (conv1d + SiLU, q/k L2 norm, gates, gated delta rule, gated
//! RMSNorm) on the GPU against a CPU oracle that composes the `qwgpu_ops` pieces
//! exactly like `qwgpu_model::reference::gdn::forward` (copied below, minus the
//! projections), in both modes and on both test contexts, with non-zero initial
//! conv and recurrent states; final states are compared too.
//!
//! Tolerance (f32 kernels against the f32 oracle; other summation orders, FMAs,
//! and chunk 64 vs 32 on the fallback context): outputs `|got − want| ≤ 1e-4 +
//! 1e-3·|want|` (`Tol::gpu_f32`) and NMSE ≤ 1e-10; recurrent states `|got − want| ≤
//! 1e-4·max(1, max|want|) + 1e-3·|want|` and NMSE ≤ 1e-10; conv states exact.
//! Measured NMSE: ≤ 3e-13 (outputs), ≤ 2e-12 (states), lavapipe and H100 alike.
//!
//! Inputs: standard normal qkvz / ba / initial conv state, recurrent state 0.2·N(0,1),
//! conv weights 0.5·N(0,1), exp(A_log) in [e^-5, e^0.5] (slow and fast decays),
//! dt_bias 0.5·N(0,1), norm weight 1 + 0.1·N(0,1). Outputs are poisoned with NaN
//! before every run.

use qwgpu_kernels::gdn::{self, GdnDims, GdnLayerBuffers, GdnMode, GdnScratch, RecurrentLaunch};
use qwgpu_kernels::testing::cases::gdn as cases;
use qwgpu_kernels::testing::cases::gdn::{
    check, check_states, dims, launch_name, mode_name, oracle, random_inputs, random_layer,
    CpuState, Gpu, OUT_TOL,
};
use qwgpu_kernels::{testing, wgpu, GpuContext, KernelError};
use qwgpu_ops::compare::nmse;
use qwgpu_ops::rng::Rng;

/// One call of `t` tokens from random states: GPU vs oracle, both modes (the
/// shared case, which the browser runner runs too).
fn run_case(d: &GdnDims, t: usize, seed: u64) {
    for tc in testing::contexts() {
        pollster::block_on(cases::run_case(tc, d, t, seed));
    }
}

/// Consecutive Recurrent calls of `lens` tokens, states carried on the GPU
/// (the shared case).
fn run_decode_steps(d: &GdnDims, lens: &[usize], seed: u64, launch: RecurrentLaunch) {
    for tc in testing::contexts() {
        pollster::block_on(cases::run_decode_steps(tc, d, lens, seed, launch));
    }
}

#[test]
fn fixture_dims_all_lengths() {
    // The test fixtures' dims: nk 2, nv 4 (2 v-heads per k-head), dk = dv = 16, K 4.
    let d = dims(2, 4, 16, 16);
    for (i, t) in [1usize, 3, 63, 64, 65, 200].into_iter().enumerate() {
        run_case(&d, t, 100 + i as u64);
    }
}

#[test]
fn head_ratios_and_unequal_widths() {
    // nv/nk = 1 with dk < dv; nv/nk = 4 with dk > dv; widths not multiples of 16.
    run_case(&dims(1, 1, 16, 32), 65, 201);
    run_case(&dims(2, 2, 16, 32), 3, 202);
    run_case(&dims(1, 4, 32, 16), 130, 203);
    run_case(&dims(1, 2, 20, 12), 70, 204);
}

#[test]
fn real_head_width_128() {
    // Qwen3.5's dk = dv = 128 (one k-head, two v-heads), a short prefill.
    run_case(&dims(1, 2, 128, 128), 67, 301);
}

#[test]
fn real_qwen35_dims() {
    // Qwen3.5's GDN layer as shipped: nk 16, nv 32, dk = dv = 128 (the fused
    // decode kernel's multi-lane workgroups, the chunked prefill's full tile
    // sizes). A prefill crossing a chunk boundary in both modes, then decode
    // steps carried on the GPU, against the oracle on every context (CI:
    // lavapipe, checked and trusted modules and the fallback path).
    let d = dims(16, 32, 128, 128);
    run_case(&d, 70, 302);
    run_decode_steps(&d, &[1, 2, 1], 609, RecurrentLaunch::Auto);
}

#[test]
fn chunked_equals_recurrent_on_gpu() {
    let d = dims(2, 4, 16, 32);
    let t = 150usize;
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        let seed = 401;
        let mut rng = Rng::new(seed);
        let (w, st0) = random_layer(&d, &mut rng);
        let (qkvz, ba) = random_inputs(&d, t, &mut rng);
        let scratch = GdnScratch::new(ctx, &d, t as u32).unwrap();
        let mut results = Vec::new();
        for mode in [GdnMode::Recurrent, GdnMode::Chunked] {
            let gpu = Gpu::new(ctx, &d, &w, &st0, t);
            gpu.write_inputs(ctx, &qkvz, &ba);
            let ds = gdn::gdn_forward(ctx, &d, &gpu.buffers(), &scratch, t as u32, mode).unwrap();
            ctx.run("gdn", &ds.iter().collect::<Vec<_>>()).unwrap();
            results.push(pollster::block_on(gpu.read(ctx, &d, t)));
        }
        let what = format!(
            "{tc_name} seed {seed} chunked vs recurrent",
            tc_name = tc.name
        );
        check(
            &results[1].0,
            &results[0].0,
            OUT_TOL,
            &format!("{what} output"),
        );
        check_states(&results[1].1, &results[0].1, &what);
    }
}

#[test]
fn prefill_then_decode_continues_the_state() {
    // A chunked prefill of 70 tokens, then 5 decode steps replaying ONE recorded
    // T = 1 set with new buffer contents each step, against the oracle run the
    // way the reference model runs it (chunked prefill, recurrent decode).
    let d = dims(2, 4, 16, 16);
    let (prefill, steps) = (70usize, 5usize);
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        let seed = 501;
        let mut rng = Rng::new(seed);
        let (w, st0) = random_layer(&d, &mut rng);
        let (qkvz, ba) = random_inputs(&d, prefill, &mut rng);
        let decode: Vec<_> = (0..steps).map(|_| random_inputs(&d, 1, &mut rng)).collect();

        let mut want_st = st0.clone();
        let want_prefill = oracle(&d, &w, &qkvz, &ba, &mut want_st, true);

        let scratch = GdnScratch::new(ctx, &d, prefill as u32).unwrap();
        let big = Gpu::new(ctx, &d, &w, &st0, prefill);
        big.write_inputs(ctx, &qkvz, &ba);
        let ds = gdn::gdn_forward(
            ctx,
            &d,
            &big.buffers(),
            &scratch,
            prefill as u32,
            GdnMode::Chunked,
        )
        .unwrap();
        ctx.run("gdn prefill", &ds.iter().collect::<Vec<_>>())
            .unwrap();
        let (got, got_st) = pollster::block_on(big.read(ctx, &d, prefill));
        let what = format!("{tc_name} seed {seed} prefill", tc_name = tc.name);
        check(&got, &want_prefill, OUT_TOL, &format!("{what} output"));
        check_states(&got_st, &want_st, &what);

        // Decode inputs and output sized for one token; the layer's weights and
        // states are the prefill's buffers.
        let one = Gpu::new(ctx, &d, &w, &st0, 1);
        let bufs = GdnLayerBuffers {
            qkvz: &one.qkvz,
            ba: &one.ba,
            out: &one.out,
            ..big.buffers()
        };
        let ds = gdn::gdn_forward(ctx, &d, &bufs, &scratch, 1, GdnMode::Recurrent).unwrap();
        let ds: Vec<_> = ds.iter().collect();
        for (step, (q1, b1)) in decode.iter().enumerate() {
            let want = oracle(&d, &w, q1, b1, &mut want_st, false);
            one.write_inputs(ctx, q1, b1);
            ctx.run("gdn decode", &ds).unwrap();
            let out = ctx.read_f32(&one.out, 0, d.value_dim() as usize).unwrap();
            let (_, got_st) = pollster::block_on(big.read(ctx, &d, 1));
            let got = out;
            let what = format!(
                "{tc_name} seed {seed} decode step {step}",
                tc_name = tc.name
            );
            check(&got, &want, OUT_TOL, &format!("{what} output"));
            check_states(&got_st, &want_st, &what);
        }
    }
}

#[test]
fn decode_steps_awkward_dims() {
    // nv/nk = 2 with widths that are not multiples of 16, dk < dv (the fused kernel's
    // two lanes per key head); conv state and recurrent state carried over 4 steps,
    // one of 3 tokens in between.
    run_decode_steps(
        &dims(3, 6, 24, 40),
        &[1, 1, 3, 1],
        601,
        RecurrentLaunch::Auto,
    );
}

#[test]
fn decode_steps_head_ratios_and_taps() {
    // nk = nv (one lane), nv/nk = 3 (three rounds of one lane), nv/nk = 4 (two rounds
    // of two lanes), dk > dv; conv kernels of 1, 2 and 4 taps.
    run_decode_steps(&dims(2, 2, 16, 32), &[1, 1, 1], 602, RecurrentLaunch::Auto);
    run_decode_steps(&dims(1, 3, 32, 12), &[1, 2, 1], 603, RecurrentLaunch::Auto);
    let mut d = dims(2, 8, 20, 8);
    d.conv_kernel = 2;
    run_decode_steps(&d, &[1, 2], 604, RecurrentLaunch::Auto);
    d.conv_kernel = 1;
    run_decode_steps(&d, &[1, 1], 605, RecurrentLaunch::Auto);
}

#[test]
fn decode_steps_real_head_width() {
    // Qwen3.5's dk = dv = 128, two v-heads per k-head (WG 512 where allowed).
    run_decode_steps(
        &dims(2, 4, 128, 128),
        &[1, 1, 1],
        606,
        RecurrentLaunch::Auto,
    );
}

#[test]
fn fused_kernel_long_calls() {
    // Forced fused for T above FUSED_MAX_T and above one launch span (state and conv
    // state handed from span to span); a typed error where the device can't.
    let span = gdn::RECURRENT_SPAN as usize;
    // nk = nv: one lane of 256 invocations (lavapipe's cost is per barrier and invocation).
    run_decode_steps(
        &dims(2, 2, 8, 12),
        &[1, span + 3, 1],
        607,
        RecurrentLaunch::Fused,
    );
}

#[test]
fn fused_equals_split_on_gpu() {
    // The same decode steps through the fused kernel and the two-launch path (where
    // both exist): tolerance as against the oracle.
    let d = dims(3, 6, 24, 40);
    let steps = 3;
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        if !gdn::fused_decode_available(ctx, &d) {
            tc.skip_for_limit("the fused GDN decode kernel's storage buffers and workgroup size");
            continue;
        }
        let seed = 608;
        let mut rng = Rng::new(seed);
        let (w, st0) = random_layer(&d, &mut rng);
        let inputs: Vec<_> = (0..steps).map(|_| random_inputs(&d, 1, &mut rng)).collect();
        let scratch = GdnScratch::new(ctx, &d, 1).unwrap();
        let mut results = Vec::new();
        for launch in [RecurrentLaunch::Fused, RecurrentLaunch::Split] {
            let gpu = Gpu::new(ctx, &d, &w, &st0, 1);
            let ds = gdn::gdn_forward_with(
                ctx,
                &d,
                &gpu.buffers(),
                &scratch,
                1,
                GdnMode::Recurrent,
                launch,
            )
            .unwrap();
            assert_eq!(
                ds.len(),
                if launch == RecurrentLaunch::Fused {
                    1
                } else {
                    2
                }
            );
            let mut outs = Vec::new();
            for (qkvz, ba) in &inputs {
                gpu.write_inputs(ctx, qkvz, ba);
                ctx.run("gdn decode", &ds.iter().collect::<Vec<_>>())
                    .unwrap();
                outs.extend(ctx.read_f32(&gpu.out, 0, d.value_dim() as usize).unwrap());
            }
            results.push((outs, pollster::block_on(gpu.read(ctx, &d, 1)).1));
        }
        let what = format!("{tc_name} seed {seed} fused vs split", tc_name = tc.name);
        check(
            &results[0].0,
            &results[1].0,
            OUT_TOL,
            &format!("{what} output"),
        );
        check_states(&results[0].1, &results[1].1, &what);
    }
}

#[test]
fn state_layout_round_trips() {
    let d = dims(2, 4, 16, 32);
    let x: Vec<f32> = (0..d.state_len()).map(|i| i as f32).collect();
    let g = gdn::state_from_reference(&d, &x);
    assert_eq!(g.len(), d.state_len());
    assert_eq!(gdn::state_to_reference(&d, &g), x);
}

#[test]
fn bad_dims_and_arguments_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    for bad in [
        dims(1, 1, 18, 16),
        dims(1, 1, 16, 256),
        dims(2, 3, 16, 16),
        dims(1, 1, 0, 16),
    ] {
        let e = GdnScratch::new(ctx, &bad, 4).unwrap_err();
        assert!(matches!(e, KernelError::Unsupported { .. }), "{bad:?}: {e}");
    }
    let d = dims(2, 4, 16, 16);
    let mut rng = Rng::new(7);
    let (w, st) = random_layer(&d, &mut rng);
    let scratch = GdnScratch::new(ctx, &d, 8).unwrap();
    let gpu = Gpu::new(ctx, &d, &w, &st, 8);
    let e = gdn::gdn_forward(ctx, &d, &gpu.buffers(), &scratch, 9, GdnMode::Chunked).unwrap_err();
    assert!(matches!(e, KernelError::Arguments { .. }), "{e}");
    let small = Gpu::new(ctx, &d, &w, &st, 2);
    let e =
        gdn::gdn_forward(ctx, &d, &small.buffers(), &scratch, 8, GdnMode::Recurrent).unwrap_err();
    assert!(e.to_string().contains("qkvz"), "{e}");
    let other = dims(2, 4, 16, 32);
    let e =
        gdn::gdn_forward(ctx, &other, &gpu.buffers(), &scratch, 1, GdnMode::Recurrent).unwrap_err();
    assert!(matches!(e, KernelError::Arguments { .. }), "{e}");
}

/// GPU time of `reps` back-to-back repetitions of `ds` in one pass (timestamps), in µs
/// per repetition; `None` without timestamp queries.
fn gpu_time_us(ctx: &GpuContext, ds: &[&qwgpu_kernels::Dispatch], reps: u32) -> Option<f64> {
    if !ctx.caps.timestamps {
        return None;
    }
    let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("gdn bench"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gdn bench resolve"),
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gdn bench"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for _ in 0..reps {
            for d in ds {
                d.record(&mut pass);
            }
        }
    }
    enc.resolve_query_set(&qs, 0..2, &resolve, 0);
    ctx.queue.submit([enc.finish()]);
    let b = ctx.read_bytes(&resolve, 0, 16).unwrap();
    let t: Vec<u64> = bytemuck::pod_collect_to_vec(&b);
    let ns = (t[1] - t[0]) as f64 * ctx.queue.get_timestamp_period() as f64;
    Some(ns / 1e3 / reps as f64)
}

/// Timings and a correctness check at Qwen3.5 dims (nk 16, nv 32, dk = dv = 128) on
/// the default adapter with trusted (unchecked) modules. Run on a real GPU:
/// `cargo test --release -p qwgpu-kernels --test kernels -- --ignored --nocapture gdn::bench`.
#[test]
#[ignore]
fn bench_qwen35_dims() {
    let ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    eprintln!("adapter: {}", ctx.describe());
    let env = |name: &str, default: u32| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (nk, nv) = (env("GDN_BENCH_NK", 16), env("GDN_BENCH_NV", 32));
    let d = dims(nk, nv, 128, 128);
    let max_t = env("GDN_BENCH_T", 4096) as usize;
    let mut rng = Rng::new(901);
    let (w, st0) = random_layer(&d, &mut rng);
    let (qkvz, ba) = random_inputs(&d, max_t, &mut rng);
    let scratch = GdnScratch::new(&ctx, &d, max_t as u32).unwrap();
    eprintln!(
        "{d:?} chunk {scratch_chunk}",
        scratch_chunk = scratch.chunk()
    );
    let gpu = Gpu::new(&ctx, &d, &w, &st0, max_t);
    gpu.write_inputs(&ctx, &qkvz, &ba);
    let reset = |g: &Gpu| {
        ctx.queue
            .write_buffer(&g.conv_state, 0, bytemuck::cast_slice(&st0.conv));
        ctx.queue
            .write_buffer(&g.state, 0, bytemuck::cast_slice(&st0.rec));
    };

    // Correctness at real dims: T = 256 against the oracle, T = 4096 chunked vs recurrent.
    let t_small = 256usize;
    let width = (d.conv_dim() + d.value_dim()) as usize;
    let fused = gdn::fused_decode_available(&ctx, &d);
    eprintln!("fused decode kernel available: {fused}");
    let mut checks = vec![
        (GdnMode::Recurrent, RecurrentLaunch::Split),
        (GdnMode::Chunked, RecurrentLaunch::Auto),
    ];
    if fused {
        checks.push((GdnMode::Recurrent, RecurrentLaunch::Fused));
    }
    for (mode, launch) in checks {
        reset(&gpu);
        let ds = gdn::gdn_forward_with(
            &ctx,
            &d,
            &gpu.buffers(),
            &scratch,
            t_small as u32,
            mode,
            launch,
        )
        .unwrap();
        ctx.run("gdn", &ds.iter().collect::<Vec<_>>()).unwrap();
        let (got, got_st) = pollster::block_on(gpu.read(&ctx, &d, t_small));
        let mut want_st = st0.clone();
        let want = oracle(
            &d,
            &w,
            &qkvz[..t_small * width],
            &ba[..t_small * 2 * nv as usize],
            &mut want_st,
            mode == GdnMode::Chunked,
        );
        eprintln!(
            "T {t_small} {mode_name_mode} {launch_label}: NMSE out {nmse_got_want:.1e} state {nmse_state:.1e}",
            mode_name_mode = mode_name(mode),
            launch_label = launch_name(launch),
            nmse_got_want = nmse(&got, &want),
            nmse_state = nmse(&got_st.rec, &want_st.rec)
        );
    }
    let mut long = Vec::new();
    for mode in [GdnMode::Recurrent, GdnMode::Chunked] {
        reset(&gpu);
        let ds = gdn::gdn_forward(&ctx, &d, &gpu.buffers(), &scratch, max_t as u32, mode).unwrap();
        ctx.run("gdn", &ds.iter().collect::<Vec<_>>()).unwrap();
        long.push(pollster::block_on(gpu.read(&ctx, &d, max_t)));
    }
    eprintln!(
        "T {max_t} chunked vs recurrent: NMSE out {nmse_long:.1e} state {rec:.1e}",
        nmse_long = nmse(&long[1].0, &long[0].0),
        rec = nmse(&long[1].1.rec, &long[0].1.rec)
    );

    // Timings (state keeps evolving between repetitions; only speed is measured),
    // after ~1 s of work to bring the clocks up.
    {
        let ds = gdn::gdn_forward(
            &ctx,
            &d,
            &gpu.buffers(),
            &scratch,
            max_t as u32,
            GdnMode::Chunked,
        )
        .unwrap();
        let all: Vec<_> = ds.iter().collect();
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() < 1.0 {
            gpu_time_us(&ctx, &all, 2);
        }
    }
    // Auto at T <= FUSED_MAX_T is the fused "gdn decode" launch where available.
    use RecurrentLaunch::{Auto, Split};
    for (t, mode, launch, reps) in [
        (1u32, GdnMode::Recurrent, Split, 500u32),
        (1, GdnMode::Recurrent, Auto, 500),
        (1, GdnMode::Chunked, Auto, 50),
        (4, GdnMode::Recurrent, Split, 100),
        (4, GdnMode::Recurrent, Auto, 100),
        (16, GdnMode::Recurrent, Split, 50),
        (16, GdnMode::Recurrent, Auto, 50),
        (512, GdnMode::Recurrent, Split, 5),
        (512, GdnMode::Chunked, Auto, 10),
        (max_t as u32, GdnMode::Recurrent, Split, 2),
        (max_t as u32, GdnMode::Chunked, Auto, 5),
    ] {
        if t as usize > max_t {
            continue;
        }
        reset(&gpu);
        let ds =
            gdn::gdn_forward_with(&ctx, &d, &gpu.buffers(), &scratch, t, mode, launch).unwrap();
        let all: Vec<_> = ds.iter().collect();
        gpu_time_us(&ctx, &all, 2);
        let total = gpu_time_us(&ctx, &all, reps).unwrap_or(f64::NAN);
        let parts: Vec<String> = ds
            .iter()
            .map(|x| {
                let us = gpu_time_us(&ctx, &[x], reps).unwrap_or(f64::NAN);
                format!("{x_label} {us:.1}", x_label = x.label)
            })
            .collect();
        eprintln!(
            "T {t} {mode_name_mode} {launch_label}: {total:.1} us per call ({total_t_as_f64:.2} us/token) [{parts_join}]",
            mode_name_mode = mode_name(mode),
            launch_label = launch_name(launch),
            total_t_as_f64 = total / t as f64,
            parts_join = parts.join(", ")
        );
    }
}

/// A pool of `n` slots of random conv / recurrent states (slot stride from
/// [`gdn::GdnSlots`]), the CPU copies of each slot's states, and the buffers.
struct Pool {
    conv: wgpu::Buffer,
    state: wgpu::Buffer,
    slots: gdn::GdnSlots,
    cpu: Vec<CpuState>,
}

impl Pool {
    fn new(ctx: &GpuContext, d: &GdnDims, n: usize, rng: &mut Rng) -> Self {
        let slots = gdn::GdnSlots::new(ctx, d);
        let (cw, sw) = ((slots.conv / 4) as usize, (slots.state / 4) as usize);
        let mut conv = vec![f32::NAN; n * cw];
        let mut state = vec![f32::NAN; n * sw];
        let mut cpu = Vec::new();
        for i in 0..n {
            let (_, st) = random_layer(d, rng);
            conv[i * cw..i * cw + st.conv.len()].copy_from_slice(&st.conv);
            let s = gdn::state_from_reference(d, &st.rec);
            state[i * sw..i * sw + s.len()].copy_from_slice(&s);
            cpu.push(st);
        }
        Self {
            conv: ctx.upload("conv pool", &conv).unwrap(),
            state: ctx.upload("state pool", &state).unwrap(),
            slots,
            cpu,
        }
    }

    fn read(&self, ctx: &GpuContext, d: &GdnDims, slot: usize) -> CpuState {
        let (cw, sw) = (
            (self.slots.conv / 4) as usize,
            (self.slots.state / 4) as usize,
        );
        let conv = ctx
            .read_f32(&self.conv, slot * cw, d.conv_state_len())
            .unwrap();
        let rec = ctx.read_f32(&self.state, slot * sw, d.state_len()).unwrap();
        CpuState {
            conv,
            rec: gdn::state_to_reference(d, &rec),
        }
    }

    /// Every slot's states against the CPU copies (`exact`: bit-identical, for
    /// slots no launch may touch).
    fn check(&self, ctx: &GpuContext, d: &GdnDims, what: &str, untouched: &[usize]) {
        for (slot, want) in self.cpu.iter().enumerate() {
            let got = self.read(ctx, d, slot);
            let what = format!("{what} slot {slot}");
            if untouched.contains(&slot) {
                assert_eq!(got.conv, want.conv, "{what}: conv state changed");
                assert_eq!(got.rec, want.rec, "{what}: recurrent state changed");
            } else {
                check_states(&got, want, &what);
            }
        }
    }
}

/// Batched decode over a pool: rows on scattered slots (3, then 5 rows), two
/// steps replaying one recorded launch each, every row against the oracle on
/// its own slot's states; slots no row names stay bit-identical. Fused where
/// the context has it, else the split form (conv + recurrent over all rows).
fn run_batch_rows(d: &GdnDims, seed: u64) {
    let n_slots = 7;
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        let mut rng = Rng::new(seed);
        let (w, _) = random_layer(d, &mut rng);
        let mut pool = Pool::new(ctx, d, n_slots, &mut rng);
        let io = Gpu::new(ctx, d, &w, &pool.cpu[0], 5);
        let scratch = GdnScratch::new(ctx, d, 5).unwrap();
        let bufs = GdnLayerBuffers {
            conv_state: &pool.conv,
            state: &pool.state,
            ..io.buffers()
        };
        for table in [vec![4u32, 0, 6], vec![2, 5, 1, 3, 6]] {
            let what = format!(
                "{tc_name} seed {seed} {d:?} rows on slots {table:?}",
                tc_name = tc.name
            );
            let launches = gdn::gdn_decode_rows(ctx, d, &bufs, &scratch, &table)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // One launch per kernel family for all rows: fused, or conv + recurrent.
            let want = if gdn::fused_decode_available(ctx, d) {
                1
            } else {
                2
            };
            assert_eq!(launches.len(), want, "{what}");
            let launch: Vec<&qwgpu_kernels::Dispatch> = launches.iter().collect();
            let rows = table.len();
            for step in 0..2 {
                let (qkvz, ba) = random_inputs(d, rows, &mut rng);
                io.write_inputs(ctx, &qkvz, &ba);
                ctx.run("gdn rows", &launch).unwrap();
                let got = ctx
                    .read_f32(&io.out, 0, rows * d.value_dim() as usize)
                    .unwrap();
                let (qw, bw, vw) = (
                    (d.conv_dim() + d.value_dim()) as usize,
                    2 * d.nv as usize,
                    d.value_dim() as usize,
                );
                for (row, &slot) in table.iter().enumerate() {
                    let want = oracle(
                        d,
                        &w,
                        &qkvz[row * qw..(row + 1) * qw],
                        &ba[row * bw..(row + 1) * bw],
                        &mut pool.cpu[slot as usize],
                        false,
                    );
                    check(
                        &got[row * vw..(row + 1) * vw],
                        &want,
                        OUT_TOL,
                        &format!("{what} step {step} row {row} output"),
                    );
                }
                let untouched: Vec<usize> = (0..n_slots)
                    .filter(|s| !table.contains(&(*s as u32)))
                    .collect();
                pool.check(ctx, d, &format!("{what} step {step}"), &untouched);
                // Go on from the GPU's states (the exact checks of untouched slots
                // compare against these copies).
                for &slot in &table {
                    pool.cpu[slot as usize] = pool.read(ctx, d, slot as usize);
                }
            }
        }
    }
}

#[test]
fn batched_decode_rows_on_pooled_slots() {
    run_batch_rows(&dims(2, 4, 16, 16), 1701);
    // Widths that are not multiples of 16 (slots padded to the offset alignment),
    // nv/nk = 2 with one key head.
    run_batch_rows(&dims(1, 2, 20, 12), 1702);
}

#[test]
fn batched_decode_rows_rejects_bad_tables() {
    let d = dims(2, 4, 16, 16);
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        let mut rng = Rng::new(1703);
        let (w, _) = random_layer(&d, &mut rng);
        let pool = Pool::new(ctx, &d, 3, &mut rng);
        let io = Gpu::new(ctx, &d, &w, &pool.cpu[0], 17);
        let scratch = GdnScratch::new(ctx, &d, 17).unwrap();
        let bufs = GdnLayerBuffers {
            conv_state: &pool.conv,
            state: &pool.state,
            ..io.buffers()
        };
        for (table, why) in [
            (vec![], "no rows"),
            (vec![1, 1], "a repeated slot"),
            (vec![3], "a slot past the pool"),
            ((0..17).collect::<Vec<u32>>(), "17 rows"),
        ] {
            let e = gdn::gdn_decode_rows(ctx, &d, &bufs, &scratch, &table)
                .err()
                .unwrap_or_else(|| panic!("{tc_name}: {why} accepted", tc_name = tc.name));
            assert!(
                matches!(
                    e,
                    KernelError::Arguments { .. } | KernelError::Unsupported { .. }
                ),
                "{why}: {e}"
            );
        }
    }
}

/// A lone session on slot 3 of a pool (prefill in both modes, then decode in
/// every launch form) runs on its slot's states only.
#[test]
fn lone_calls_on_a_pool_slot() {
    let d = dims(2, 4, 16, 16);
    for tc in testing::contexts() {
        let ctx = &tc.ctx;
        for (mode, t, launch) in [
            (GdnMode::Chunked, 20usize, RecurrentLaunch::Auto),
            (GdnMode::Recurrent, 20, RecurrentLaunch::Split),
            (GdnMode::Recurrent, 1, RecurrentLaunch::Auto),
            (GdnMode::Recurrent, 1, RecurrentLaunch::Split),
        ] {
            let mut rng = Rng::new(1704);
            let (w, _) = random_layer(&d, &mut rng);
            let mut pool = Pool::new(ctx, &d, 5, &mut rng);
            let io = Gpu::new(ctx, &d, &w, &pool.cpu[0], t);
            let scratch = GdnScratch::new(ctx, &d, t as u32).unwrap();
            let bufs = GdnLayerBuffers {
                conv_state: &pool.conv,
                state: &pool.state,
                slot: 3,
                ..io.buffers()
            };
            let (qkvz, ba) = random_inputs(&d, t, &mut rng);
            let want = oracle(
                &d,
                &w,
                &qkvz,
                &ba,
                &mut pool.cpu[3],
                mode == GdnMode::Chunked,
            );
            io.write_inputs(ctx, &qkvz, &ba);
            let ds =
                gdn::gdn_forward_with(ctx, &d, &bufs, &scratch, t as u32, mode, launch).unwrap();
            ctx.run("gdn slot", &ds.iter().collect::<Vec<_>>()).unwrap();
            let what = format!(
                "{tc_name} slot 3 {mode_name} T {t} {launch_label}",
                tc_name = tc.name,
                mode_name = mode_name(mode),
                launch_label = launch_name(launch)
            );
            let got = ctx
                .read_f32(&io.out, 0, t * d.value_dim() as usize)
                .unwrap();
            check(&got, &want, OUT_TOL, &format!("{what} output"));
            pool.check(ctx, &d, &what, &[0, 1, 2, 4]);
        }
    }
}
