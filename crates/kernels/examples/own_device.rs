//! The kernels on a device the caller opened (as a renderer or another engine
//! would), on the caller's own buffers:
//! - a block-scaled FP8 GEMV `y = W · x`, recorded into the caller's own
//!   command encoder, checked against a CPU reference built from
//!   `qwgpu-loader`'s FP8 decoder and `qwgpu-ops`;
//! - one decode step of a gated-delta-rule (Gated DeltaNet) layer core,
//!   checked (output, recurrent state, conv state) against `qwgpu-ops`.
//!
//! `cargo run -p qwgpu-kernels --example own_device` (lavapipe works).

use qwgpu_kernels::gdn::{gdn_forward, GdnDims, GdnLayerBuffers, GdnMode, GdnScratch};
use qwgpu_kernels::matmul::{matmul, Epilogue, MatmulArgs};
use qwgpu_kernels::weights::{stride_words, WeightPiece};
use qwgpu_kernels::wgpu::{self, util::DeviceExt};
use qwgpu_kernels::{ContextOptions, GpuContext, GpuWeight, WeightFormat};
use qwgpu_ops::compare::{check_close, Tol};
use qwgpu_ops::mixers::{gdn_core, GdnParams, GdnShape};

/// W is `[ROWS, COLS]` E4M3 with one f32 scale per 128 × 128 block (Qwen's FP8 layout).
const ROWS: usize = 300;
const COLS: usize = 256;
const BLOCK: usize = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The caller's device: its own instance, adapter and features.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my renderer"),
        required_features: wgpu::Features::empty(),
        required_limits: wgpu::Limits::default(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))?;

    // 2. The kernels on it: capabilities come from what the device was created
    // with (no f16, no subgroups here, so the portable variants run).
    let ctx = GpuContext::with_device(
        &adapter,
        device.clone(),
        queue.clone(),
        &ContextOptions::default(),
    )?;
    println!("{name}: {caps:?}", name = ctx.describe(), caps = ctx.caps);

    // 3. The weight in its stored layout (crate::weights docs): rows padded to
    // `stride_words` u32 words, then the scale table: one entry per row (its
    // block-row's first scale index), then the f32 scales row-major.
    let stride = stride_words(COLS, WeightFormat::E4M3);
    let grid = [ROWS.div_ceil(BLOCK), COLS.div_ceil(BLOCK)];
    // E4M3 bytes of moderate magnitude, both signs, never the NaN codes 0x7F / 0xFF.
    let fp8: Vec<u8> = (0..ROWS * COLS)
        .map(|i| ((i * 37) % 0x60) as u8 | if i % 3 == 0 { 0x80 } else { 0 })
        .collect();
    let scales: Vec<f32> = (0..grid[0] * grid[1])
        .map(|i| 0.01 + 0.005 * i as f32)
        .collect();
    let mut stored = vec![0u8; ROWS * stride * 4];
    for r in 0..ROWS {
        stored[r * stride * 4..][..COLS].copy_from_slice(&fp8[r * COLS..][..COLS]);
    }
    let mut meta: Vec<u32> = (0..ROWS).map(|r| ((r / BLOCK) * grid[1]) as u32).collect();
    meta.extend(scales.iter().map(|s| s.to_bits()));
    let x: Vec<f32> = (0..COLS)
        .map(|c| ((c * 7) % 19) as f32 / 9.0 - 1.0)
        .collect();

    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let init = |label, contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage,
        })
    };
    let weight = GpuWeight {
        name: "my_fp8_weight".into(),
        format: WeightFormat::E4M3,
        rows: ROWS,
        cols: COLS,
        stride_words: stride,
        block_cols: BLOCK,
        pieces: vec![WeightPiece {
            buffer: init("w", &stored, storage),
            row0: 0,
            rows: ROWS,
        }],
        meta: init("w scales", bytemuck::cast_slice(&meta), storage),
    };
    let x_buf = init("x", bytemuck::cast_slice(&x), storage);
    let y_bytes = (ROWS * 4) as u64;
    let y_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("y"),
        size: y_bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("y readback"),
        size: y_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    // 4. Record the launches into the caller's own encoder and pass.
    let args = MatmulArgs {
        x: &x_buf,
        x_offset: 0,
        x_stride: COLS as u32,
        y: &y_buf,
        y_offset: 0,
        y_stride: ROWS as u32,
        t: 1,
    };
    let launches = matmul(&ctx, &weight, &args, Epilogue::Store)?;
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for launch in &launches {
            launch.record(&mut pass);
        }
    }
    encoder.copy_buffer_to_buffer(&y_buf, 0, &readback, 0, y_bytes);
    queue.submit([encoder.finish()]);
    let got = ctx.read_mapped(&readback, y_bytes)?;
    let got: Vec<f32> = bytemuck::cast_slice(&got).to_vec();
    ctx.check("own-device GEMV")?;

    // 5. The CPU reference: decode, scale, multiply.
    let w: Vec<f32> = (0..ROWS * COLS)
        .map(|i| {
            let (r, c) = (i / COLS, i % COLS);
            qwgpu_loader::e4m3fn_to_f32(fp8[i]) * scales[(r / BLOCK) * grid[1] + c / BLOCK]
        })
        .collect();
    let want = qwgpu_ops::linalg::matmul_xwt(&x, &w, ROWS, COLS);
    check_close(
        &got,
        &want,
        Tol::new(2e-3, 1e-3),
        "FP8 GEMV on the caller's device",
    )?;
    println!(
        "block-FP8 GEMV [{ROWS}, {COLS}] on the caller's device matches the CPU reference (y[0] = {y0})",
        y0 = got[0]
    );
    gdn_decode(&ctx, &device)
}

/// One decode token through a GDN layer core (conv, gates, delta rule, gated
/// norm) on the caller's buffers, in the layouts of `qwgpu_kernels::gdn`.
fn gdn_decode(ctx: &GpuContext, device: &wgpu::Device) -> Result<(), Box<dyn std::error::Error>> {
    let shape = GdnShape {
        nk: 2,
        nv: 4,
        dk: 32,
        dv: 32,
        conv_kernel: 4,
        eps: 1e-6,
    };
    let dims = GdnDims {
        nk: shape.nk as u32,
        nv: shape.nv as u32,
        dk: shape.dk as u32,
        dv: shape.dv as u32,
        conv_kernel: shape.conv_kernel as u32,
        eps: shape.eps,
    };
    let (conv_dim, value_dim) = (dims.conv_dim() as usize, dims.value_dim() as usize);
    let mut rng = qwgpu_ops::rng::Rng::new(21);
    let mut normal = |n: usize, scale: f32| -> Vec<f32> {
        rng.normal_vec(n).into_iter().map(|v| v * scale).collect()
    };
    let qkvz = normal(conv_dim + value_dim, 1.0); // [T = 1, conv_dim + value_dim]: q|k|v, then z
    let ba = normal(2 * shape.nv, 1.0); // [T, 2·nv]: b, then a
    let conv_w = normal(conv_dim * shape.conv_kernel, 0.5); // [conv_dim, K]
    let a_log = normal(shape.nv, 0.5);
    let dt_bias = normal(shape.nv, 0.5);
    let norm_w = normal(shape.dv, 1.0);
    let conv_state0 = normal(dims.conv_state_len(), 1.0); // [K−1, conv_dim], oldest first
    let state0 = normal(dims.state_len(), 0.1); // [nv, dk, dv]

    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let buf = |label, data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage,
        })
    };
    let (qkvz_b, ba_b, conv_w_b) = (buf("qkvz", &qkvz), buf("ba", &ba), buf("conv_w", &conv_w));
    let (a_log_b, dt_bias_b, norm_w_b) = (
        buf("a_log", &a_log),
        buf("dt_bias", &dt_bias),
        buf("norm_w", &norm_w),
    );
    let (conv_state_b, state_b) = (buf("conv state", &conv_state0), buf("state", &state0));
    let out_b = buf("out", &vec![0.0; value_dim]);
    let buffers = GdnLayerBuffers {
        qkvz: &qkvz_b,
        ba: &ba_b,
        conv_w: &conv_w_b,
        a_log: &a_log_b,
        dt_bias: &dt_bias_b,
        norm_w: &norm_w_b,
        conv_state: &conv_state_b,
        state: &state_b,
        out: &out_b,
        slot: 0,
    };
    let scratch = GdnScratch::new(ctx, &dims, 1)?;
    let launches = gdn_forward(ctx, &dims, &buffers, &scratch, 1, GdnMode::Recurrent)?;
    ctx.run(
        "GDN decode on the caller's buffers",
        &launches.iter().collect::<Vec<_>>(),
    )?;

    let (mut conv_state, mut state) = (conv_state0, state0);
    let params = GdnParams {
        conv_w: &conv_w,
        a_log: &a_log,
        dt_bias: &dt_bias,
        norm_w: &norm_w,
    };
    let want = gdn_core(
        &shape,
        &params,
        &qkvz,
        &ba,
        &mut conv_state,
        &mut state,
        false,
    );
    let tol = Tol::gpu_f32();
    check_close(
        &ctx.read_f32(&out_b, 0, value_dim)?,
        &want,
        tol,
        "GDN decode output",
    )?;
    check_close(
        &ctx.read_f32(&state_b, 0, state.len())?,
        &state,
        tol,
        "GDN recurrent state",
    )?;
    check_close(
        &ctx.read_f32(&conv_state_b, 0, conv_state.len())?,
        &conv_state,
        tol,
        "GDN conv state",
    )?;
    println!(
        "GDN decode step (nk 2, nv 4, dk = dv = 32) on the caller's buffers matches qwgpu-ops"
    );
    Ok(())
}
