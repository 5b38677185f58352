//! The GDN layer core (conv1d + SiLU, q/k L2 norm, gates, gated delta rule,
//! gated RMSNorm) on the GPU against a CPU oracle that composes the
//! `qwgpu_ops` pieces exactly like `qwgpu_model::reference::gdn::forward`
//! (minus the projections), in both modes (chunked prefill, recurrent
//! decode), with non-zero initial conv and recurrent states; final states
//! are compared too.
//!
//! Tolerance (f32 kernels against the f32 oracle; other summation orders,
//! FMAs, and chunk 64 vs 32 on the fallback context): outputs `|got − want| ≤
//! 1e-4 + 1e-3·|want|` (`Tol::gpu_f32`) and NMSE ≤ 1e-10; recurrent states
//! `|got − want| ≤ 1e-4·max(1, max|want|) + 1e-3·|want|` and NMSE ≤ 1e-10;
//! conv states exact.

use qwgpu_ops::compare::{check_close, nmse, Tol};
use qwgpu_ops::mixers::{gdn_core, GdnParams, GdnShape};
use qwgpu_ops::rng::Rng;

use crate::gdn::{self, GdnDims, GdnLayerBuffers, GdnMode, GdnScratch, RecurrentLaunch};
use crate::testing::TestContext;
use crate::{GpuContext, KernelError};

pub const OUT_TOL: Tol = Tol::gpu_f32();
pub const MAX_NMSE: f64 = 1e-10;

pub struct Weights {
    pub conv_w: Vec<f32>,
    pub a_log: Vec<f32>,
    pub dt_bias: Vec<f32>,
    pub norm_w: Vec<f32>,
}

#[derive(Clone)]
pub struct CpuState {
    pub conv: Vec<f32>,
    pub rec: Vec<f32>,
}

pub fn dims(nk: u32, nv: u32, dk: u32, dv: u32) -> GdnDims {
    GdnDims {
        nk,
        nv,
        dk,
        dv,
        conv_kernel: 4,
        eps: 1e-6,
    }
}

pub fn random_layer(d: &GdnDims, rng: &mut Rng) -> (Weights, CpuState) {
    let conv_dim = d.conv_dim() as usize;
    let k = d.conv_kernel as usize;
    let nv = d.nv as usize;
    let w = Weights {
        conv_w: rng
            .normal_vec(conv_dim * k)
            .iter()
            .map(|v| v * 0.5)
            .collect(),
        // exp(A_log) in [e^-5, e^0.5]: slow decays carry the state across chunks too.
        a_log: (0..nv).map(|_| rng.uniform() * 5.5 - 5.0).collect(),
        dt_bias: rng.normal_vec(nv).iter().map(|v| v * 0.5).collect(),
        norm_w: rng
            .normal_vec(d.dv as usize)
            .iter()
            .map(|v| 1.0 + 0.1 * v)
            .collect(),
    };
    let st = CpuState {
        conv: rng.normal_vec(d.conv_state_len()),
        rec: rng
            .normal_vec(d.state_len())
            .iter()
            .map(|v| v * 0.2)
            .collect(),
    };
    (w, st)
}

/// `(qkvz [T, conv_dim + value_dim], ba [T, 2·nv])`.
pub fn random_inputs(d: &GdnDims, t: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let width = (d.conv_dim() + d.value_dim()) as usize;
    (
        rng.normal_vec(t * width),
        rng.normal_vec(t * 2 * d.nv as usize),
    )
}

/// `reference::gdn::forward` after the projections, with the delta-rule form chosen
/// by the caller (the reference picks chunked for T > 1).
pub fn oracle(
    d: &GdnDims,
    w: &Weights,
    qkvz: &[f32],
    ba: &[f32],
    state: &mut CpuState,
    chunked: bool,
) -> Vec<f32> {
    let shape = GdnShape {
        nk: d.nk as usize,
        nv: d.nv as usize,
        dk: d.dk as usize,
        dv: d.dv as usize,
        conv_kernel: d.conv_kernel as usize,
        eps: d.eps,
    };
    let params = GdnParams {
        conv_w: &w.conv_w,
        a_log: &w.a_log,
        dt_bias: &w.dt_bias,
        norm_w: &w.norm_w,
    };
    gdn_core(
        &shape,
        &params,
        qkvz,
        ba,
        &mut state.conv,
        &mut state.rec,
        chunked,
    )
}

/// GPU buffers of one layer, inputs sized for `max_t` tokens.
pub struct Gpu {
    pub qkvz: wgpu::Buffer,
    pub ba: wgpu::Buffer,
    pub conv_w: wgpu::Buffer,
    pub a_log: wgpu::Buffer,
    pub dt_bias: wgpu::Buffer,
    pub norm_w: wgpu::Buffer,
    pub conv_state: wgpu::Buffer,
    pub state: wgpu::Buffer,
    pub out: wgpu::Buffer,
}

impl Gpu {
    pub fn new(ctx: &GpuContext, d: &GdnDims, w: &Weights, st: &CpuState, max_t: usize) -> Self {
        let width = (d.conv_dim() + d.value_dim()) as u64;
        let mt = max_t as u64;
        Self {
            qkvz: ctx.storage("qkvz", mt * width * 4).unwrap(),
            ba: ctx.storage("ba", mt * 2 * d.nv as u64 * 4).unwrap(),
            conv_w: ctx.upload("conv_w", &w.conv_w).unwrap(),
            a_log: ctx.upload("a_log", &w.a_log).unwrap(),
            dt_bias: ctx.upload("dt_bias", &w.dt_bias).unwrap(),
            norm_w: ctx.upload("norm_w", &w.norm_w).unwrap(),
            conv_state: ctx.upload("conv_state", &st.conv).unwrap(),
            state: ctx
                .upload("state", &gdn::state_from_reference(d, &st.rec))
                .unwrap(),
            out: ctx.storage("out", mt * d.value_dim() as u64 * 4).unwrap(),
        }
    }

    pub fn buffers(&self) -> GdnLayerBuffers<'_> {
        GdnLayerBuffers {
            qkvz: &self.qkvz,
            ba: &self.ba,
            conv_w: &self.conv_w,
            a_log: &self.a_log,
            dt_bias: &self.dt_bias,
            norm_w: &self.norm_w,
            conv_state: &self.conv_state,
            state: &self.state,
            out: &self.out,
            slot: 0,
        }
    }

    pub fn write_inputs(&self, ctx: &GpuContext, qkvz: &[f32], ba: &[f32]) {
        ctx.queue
            .write_buffer(&self.qkvz, 0, bytemuck::cast_slice(qkvz));
        ctx.queue
            .write_buffer(&self.ba, 0, bytemuck::cast_slice(ba));
        ctx.fill_f32(&self.out, f32::NAN);
    }

    pub async fn read(&self, ctx: &GpuContext, d: &GdnDims, t: usize) -> (Vec<f32>, CpuState) {
        let out = ctx
            .read_f32_async(&self.out, 0, t * d.value_dim() as usize)
            .await
            .unwrap();
        let conv = ctx
            .read_f32_async(&self.conv_state, 0, d.conv_state_len())
            .await
            .unwrap();
        let rec = ctx
            .read_f32_async(&self.state, 0, d.state_len())
            .await
            .unwrap();
        (
            out,
            CpuState {
                conv,
                rec: gdn::state_to_reference(d, &rec),
            },
        )
    }
}

/// Checks `got` against `want` with the element-wise tolerance and NMSE bound;
/// returns the NMSE for the summary.
pub fn check(got: &[f32], want: &[f32], tol: Tol, what: &str) -> f64 {
    let e = nmse(got, want);
    if let Err(msg) = check_close(got, want, tol, what) {
        panic!("{msg}\n  (NMSE {e:e})");
    }
    assert!(e <= MAX_NMSE, "{what}: NMSE {e:e} > {MAX_NMSE:e}");
    e
}

pub fn state_tol(want: &[f32]) -> Tol {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    Tol::new(1e-4 * scale, 1e-3)
}

pub fn check_states(got: &CpuState, want: &CpuState, what: &str) -> f64 {
    // The conv state is a copy of inputs: exact.
    check_close(
        &got.conv,
        &want.conv,
        Tol::f32_exact(),
        &format!("{what} conv state"),
    )
    .unwrap_or_else(|m| panic!("{m}"));
    check(
        &got.rec,
        &want.rec,
        state_tol(&want.rec),
        &format!("{what} recurrent state"),
    )
}

pub fn mode_name(m: GdnMode) -> &'static str {
    match m {
        GdnMode::Recurrent => "recurrent",
        GdnMode::Chunked => "chunked",
    }
}

/// One call of `t` tokens from random states: GPU vs oracle, both modes.
pub async fn run_case(tc: &TestContext, d: &GdnDims, t: usize, seed: u64) {
    {
        let ctx = &tc.ctx;
        let mut rng = Rng::new(seed);
        let (w, st0) = random_layer(d, &mut rng);
        let (qkvz, ba) = random_inputs(d, t, &mut rng);
        let scratch = GdnScratch::new(ctx, d, t as u32).unwrap();
        for mode in [GdnMode::Recurrent, GdnMode::Chunked] {
            let what = format!(
                "{tc_name} seed {seed} {d:?} T {t} {mode_name_mode} (chunk {scratch_chunk})",
                tc_name = tc.name,
                mode_name_mode = mode_name(mode),
                scratch_chunk = scratch.chunk()
            );
            let mut want_st = st0.clone();
            let want = oracle(d, &w, &qkvz, &ba, &mut want_st, mode == GdnMode::Chunked);
            let gpu = Gpu::new(ctx, d, &w, &st0, t);
            gpu.write_inputs(ctx, &qkvz, &ba);
            let ds = gdn::gdn_forward(ctx, d, &gpu.buffers(), &scratch, t as u32, mode).unwrap();
            let refs: Vec<_> = ds.iter().collect();
            ctx.run("gdn", &refs).unwrap();
            let (got, got_st) = gpu.read(ctx, d, t).await;
            let e_out = check(&got, &want, OUT_TOL, &format!("{what} output"));
            let e_st = check_states(&got_st, &want_st, &what);
            tracing::debug!("{what}: NMSE out {e_out:.1e} state {e_st:.1e}");
        }
    }
}

pub fn launch_name(l: RecurrentLaunch) -> &'static str {
    match l {
        RecurrentLaunch::Auto => "auto",
        RecurrentLaunch::Fused => "fused",
        RecurrentLaunch::Split => "split",
    }
}

/// Consecutive Recurrent calls of `lens` tokens from random states, the conv and
/// recurrent states carried on the GPU, each against the oracle (recurrent form).
/// Calls of T = 1 replay one recorded launch set with new inputs, as the model does.
/// `Fused` on a context without the fused kernel must be a typed error instead.
pub async fn run_decode_steps(
    tc: &TestContext,
    d: &GdnDims,
    lens: &[usize],
    seed: u64,
    launch: RecurrentLaunch,
) {
    let max_t = *lens.iter().max().unwrap();
    {
        let ctx = &tc.ctx;
        let mut rng = Rng::new(seed);
        let (w, st0) = random_layer(d, &mut rng);
        let scratch = GdnScratch::new(ctx, d, max_t as u32).unwrap();
        let gpu = Gpu::new(ctx, d, &w, &st0, max_t);
        let fused = gdn::fused_decode_available(ctx, d);
        if launch == RecurrentLaunch::Fused && !fused {
            let e = gdn::gdn_forward_with(
                ctx,
                d,
                &gpu.buffers(),
                &scratch,
                1,
                GdnMode::Recurrent,
                launch,
            )
            .unwrap_err();
            assert!(
                matches!(e, KernelError::Unsupported { .. }),
                "{tc_name}: {e}",
                tc_name = tc.name
            );
            return;
        }
        let one = gdn::gdn_forward_with(
            ctx,
            d,
            &gpu.buffers(),
            &scratch,
            1,
            GdnMode::Recurrent,
            launch,
        )
        .unwrap();
        let mut want_st = st0.clone();
        for (step, &t) in lens.iter().enumerate() {
            let (qkvz, ba) = random_inputs(d, t, &mut rng);
            let want = oracle(d, &w, &qkvz, &ba, &mut want_st, false);
            gpu.write_inputs(ctx, &qkvz, &ba);
            let ds = if t == 1 {
                one.clone()
            } else {
                gdn::gdn_forward_with(
                    ctx,
                    d,
                    &gpu.buffers(),
                    &scratch,
                    t as u32,
                    GdnMode::Recurrent,
                    launch,
                )
                .unwrap()
            };
            let labels: Vec<_> = ds.iter().map(|x| x.label).collect();
            ctx.run("gdn decode", &ds.iter().collect::<Vec<_>>())
                .unwrap();
            let (got, got_st) = gpu.read(ctx, d, t).await;
            let what = format!(
                "{tc_name} seed {seed} {d:?} {launch_label} (fused available: {fused}) step {step} T {t} {labels:?}",
                tc_name = tc.name,
                launch_label = launch_name(launch)
            );
            let e_out = check(&got, &want, OUT_TOL, &format!("{what} output"));
            let e_st = check_states(&got_st, &want_st, &what);
            tracing::debug!("{what}: NMSE out {e_out:.1e} state {e_st:.1e}");
        }
    }
}
