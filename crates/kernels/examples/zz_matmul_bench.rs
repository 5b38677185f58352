// TEMPORARY (matmul helper): H100 timings of the matmul kernels. Deleted after use.
use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul, matmul_indexed, Epilogue, IndexedArgs, MatmulArgs};
use qwgpu_kernels::wgpu;
use qwgpu_kernels::{ContextOptions, Dispatch, GpuContext, GpuWeight};
use qwgpu_loader::{ActivationQuant, BlockSegment, PackedWeight, ScaleScheme, Shard};

fn gpu_time(ctx: &GpuContext, all: &[&Dispatch]) -> f64 {
    let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 });
    let rb = ctx.storage("ts", 16).unwrap();
    let qb = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for d in all {
            d.record(&mut pass);
        }
    }
    enc.resolve_query_set(&qs, 0..2, &qb, 0);
    enc.copy_buffer_to_buffer(&qb, 0, &rb, 0, 16);
    ctx.queue.submit([enc.finish()]);
    ctx.wait("ts").unwrap();
    let t = ctx.read_bytes(&rb, 0, 16).unwrap();
    let t0 = u64::from_le_bytes(t[0..8].try_into().unwrap());
    let t1 = u64::from_le_bytes(t[8..16].try_into().unwrap());
    (t1 - t0) as f64 * ctx.queue.get_timestamp_period() as f64 / 1e3
}

fn weight(dtype: Dtype, rows: usize, cols: usize, block: bool) -> PackedWeight {
    let n = rows * cols * dtype.size();
    let mut data = vec![0u8; n];
    let mut s = 12345u32;
    for b in data.iter_mut() {
        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
        *b = ((s >> 24) as u8) & 0x3f;
    }
    let scale = match (dtype, block) {
        (Dtype::BF16 | Dtype::F16 | Dtype::F32, _) => ScaleScheme::None,
        (_, true) => {
            let grid = [rows.div_ceil(128), cols.div_ceil(128)];
            ScaleScheme::Block {
                block: [128, 128],
                segments: vec![BlockSegment { row_offset: 0, rows, grid, scales: vec![0.5; grid[0] * grid[1]] }],
            }
        }
        (_, false) => ScaleScheme::PerShard { scales: vec![0.5] },
    };
    PackedWeight {
        name: "w".into(),
        dtype,
        rows,
        cols,
        data,
        shards: vec![Shard { name: "a".into(), source: "a".into(), row_offset: 0, rows }],
        scale,
        activation: ActivationQuant::None,
    }
}

fn time_of(ctx: &GpuContext, d: &[Dispatch], reps: usize) -> f64 {
    let all: Vec<&Dispatch> = (0..reps).flat_map(|_| d.iter()).collect();
    let _ = gpu_time(ctx, &all[..d.len()]);
    let _ = gpu_time(ctx, &all);
    let a = gpu_time(ctx, &all);
    let b = gpu_time(ctx, &all);
    a.min(b) / reps as f64
}

fn main() {
    let opts = ContextOptions { runtime_checks: Some(false), disable_subgroups: std::env::var("NOSG").is_ok(), ..Default::default() };
    let ctx = GpuContext::new(&opts).unwrap();
    println!("{} caps {:?}", ctx.describe(), ctx.caps);
    let cases: Vec<(&str, Dtype, usize, usize, bool, u32, Epilogue)> = vec![
        ("bf16 gemv", Dtype::BF16, 16384, 4096, false, 1, Epilogue::Store),
        ("bf16 gemv swiglu", Dtype::BF16, 16384, 4096, false, 1, Epilogue::SwiGlu),
        ("e4m3 gemv block128", Dtype::F8E4M3, 16384, 8192, true, 1, Epilogue::Store),
        ("e4m3 gemv per-tensor", Dtype::F8E4M3, 16384, 8192, false, 1, Epilogue::Store),
        ("bf16 T=2", Dtype::BF16, 16384, 4096, false, 2, Epilogue::Store),
        ("bf16 T=4", Dtype::BF16, 16384, 4096, false, 4, Epilogue::Store),
        ("bf16 T=8", Dtype::BF16, 16384, 4096, false, 8, Epilogue::Store),
        ("bf16 T=16", Dtype::BF16, 16384, 4096, false, 16, Epilogue::Store),
        ("e4m3 T=16 block", Dtype::F8E4M3, 16384, 8192, true, 16, Epilogue::Store),
        ("bf16 gemm T=17", Dtype::BF16, 4096, 4096, false, 17, Epilogue::Store),
        ("bf16 gemm T=512", Dtype::BF16, 4096, 4096, false, 512, Epilogue::Store),
        ("bf16 gemm T=4096", Dtype::BF16, 4096, 4096, false, 4096, Epilogue::Store),
        ("e4m3 gemm T=4096 block", Dtype::F8E4M3, 4096, 4096, true, 4096, Epilogue::Store),
        ("bf16 gemm T=4096 swiglu", Dtype::BF16, 8192, 4096, false, 4096, Epilogue::SwiGlu),
    ];
    for (name, dtype, rows, cols, block, t, epi) in cases {
        let pw = weight(dtype, rows, cols, block);
        let gw = GpuWeight::upload(&ctx, &pw).unwrap();
        let x = ctx.upload("x", &vec![0.01f32; t as usize * cols]).unwrap();
        let y = ctx.storage("y", (t as usize * rows * 4) as u64).unwrap();
        let a = MatmulArgs { x: &x, x_offset: 0, x_stride: cols as u32, y: &y, y_offset: 0, y_stride: rows as u32, t };
        let d = matmul(&ctx, &gw, &a, epi).unwrap();
        let reps = if t > 16 { 5 } else { 50 };
        let us = time_of(&ctx, &d, reps);
        let bytes = (rows * cols * dtype.size()) as f64;
        let flops = 2.0 * t as f64 * rows as f64 * cols as f64;
        println!(
            "{name:28} [{rows}x{cols}] T={t:5}: {us:9.1} us  {:7.0} GB/s weights  {:6.2} TFLOP/s",
            bytes / us / 1e3,
            flops / us / 1e6
        );
    }
    // MoE decode: 128 experts x (2*768) rows x 2048 cols E4M3 block, 8 pairs (top-8 of one token).
    for (pairs, div) in [(8u32, 8u32), (512, 8), (4096, 8)] {
        let (e, rpe, cols) = (128usize, 1536usize, 2048usize);
        let pw = weight(Dtype::F8E4M3, e * rpe, cols, true);
        let gw = GpuWeight::upload(&ctx, &pw).unwrap();
        let ids: Vec<u32> = (0..pairs).map(|p| (p * 37 + p / 8) % e as u32).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        for (label, idv) in [("scattered", ids), ("sorted", sorted)] {
            let idb = ctx.upload("ids", &idv).unwrap();
            let x = ctx.upload("x", &vec![0.01f32; (pairs / div) as usize * cols]).unwrap();
            let y = ctx.storage("y", (pairs as usize * rpe * 4) as u64).unwrap();
            let a = IndexedArgs { x: &x, x_stride: cols as u32, x_row_div: div, ids: &idb, ids_offset: 0, y: &y, y_stride: (rpe / 2) as u32, pairs, rows_per_expert: rpe as u32 };
            let d = matmul_indexed(&ctx, &gw, &a, Epilogue::SwiGlu).unwrap();
            let us = time_of(&ctx, &d, if pairs > 64 { 3 } else { 50 });
            let distinct = { let mut v = idv.clone(); v.dedup(); let mut s = v.clone(); s.sort(); s.dedup(); s.len() };
            let bytes = (distinct * rpe * cols) as f64;
            println!("moe e4m3 swiglu pairs={pairs:5} {label:9}: {us:9.1} us  {:7.0} GB/s (distinct experts' weights {distinct})  {:6.2} TFLOP/s", bytes / us / 1e3, 2.0 * pairs as f64 * rpe as f64 * cols as f64 / us / 1e6);
        }
    }
}
