// TEMPORARY (kernel helper): H100 timings of norm/embed/moe/sample. Deleted after use.
use qwgpu_kernels::sample::{self, sample_host, uniform_random, SamplingParams};
use qwgpu_kernels::{copy, embed, moe, norm, ContextOptions, Dispatch, GpuContext, GpuWeight, Step};
use std::time::Instant;

fn time(ctx: &GpuContext, ds: &[&Dispatch], reps: usize) -> f64 {
    let all: Vec<&Dispatch> = (0..reps).flat_map(|_| ds.iter().copied()).collect();
    ctx.run("warm", &all).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        ctx.run("bench", &all).unwrap();
        best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
    }
    best * 1e6
}

fn main() {
    let ctx = GpuContext::new(&ContextOptions { runtime_checks: Some(false), ..Default::default() }).unwrap();
    println!("{} subgroups {}", ctx.describe(), ctx.caps.subgroups);
    let mut rng = qwgpu_ops::rng::Rng::new(1);
    // Barrier cost reference: dependent 1-word copies.
    let a = ctx.upload("a", &[1u32; 4]).unwrap();
    let b = ctx.upload("b", &[1u32; 4]).unwrap();
    let c1 = copy::copy_words(&ctx, &a, 0, &b, 1, 1).unwrap();
    let c2 = copy::copy_words(&ctx, &b, 0, &a, 1, 1).unwrap();
    println!("copy 1 word (dependent ping-pong): {:.2} us/dispatch", time(&ctx, &[&c1, &c2], 200) / 2.0);

    let vocab = 248320u32;
    let logits: Vec<f32> = (0..vocab).map(|_| rng.normal() * 3.0).collect();
    let lb = ctx.upload("logits", &logits).unwrap();
    let step = ctx.uniform("step", &Step::new(0, 1, 42, 7));
    let out = ctx.storage("out", 16).unwrap();
    for (name, p) in [
        ("greedy", SamplingParams::greedy()),
        ("temperature 1", SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0 }),
        ("top-k 20", SamplingParams { temperature: 0.7, top_k: 20, top_p: 1.0 }),
        ("top-p 0.95", SamplingParams { temperature: 0.7, top_k: 0, top_p: 0.95 }),
        ("top-k 20 + top-p 0.8", SamplingParams { temperature: 0.7, top_k: 20, top_p: 0.8 }),
    ] {
        let ds = sample::sample(&ctx, &lb, 0, vocab, &p, &step, &out, 0).unwrap();
        let refs: Vec<&Dispatch> = ds.iter().collect();
        let us = time(&ctx, &refs, 100);
        let got = ctx.read_u32(&out, 0, 1).unwrap()[0];
        let want = sample_host(&logits, &p, uniform_random(42, 7));
        println!("sample vocab {vocab} {name}: {} launches, {us:.1} us/token; token {got} host {want}", ds.len());
    }
    for (rows, width) in [(1u32, 4096u32), (512, 4096), (64, 256)] {
        let x = ctx.upload("x", &rng.normal_vec((rows * width) as usize)).unwrap();
        let w = ctx.upload("w", &rng.normal_vec(width as usize)).unwrap();
        let y = ctx.storage("y", (rows * width * 4) as u64).unwrap();
        let d = norm::rms_norm(&ctx, &x, 0, &w, &y, rows, width, 1e-6, true).unwrap();
        let us = time(&ctx, &[&d], 200);
        println!("rms_norm [{rows}, {width}]: {us:.2} us ({:.0} GB/s)", (rows * width * 8) as f64 / us / 1e3);
    }
    for (t, e, k) in [(1u32, 256u32, 8u32), (512, 256, 8), (1, 512, 10)] {
        let l = ctx.upload("l", &rng.normal_vec((t * e) as usize)).unwrap();
        let ids = ctx.storage("ids", (t * k * 4) as u64).unwrap();
        let wts = ctx.storage("w", (t * k * 4) as u64).unwrap();
        let d = moe::moe_route(&ctx, &l, t, e, k, &ids, &wts).unwrap();
        println!("moe_route T {t} E {e} k {k}: {:.2} us", time(&ctx, &[&d], 200));
    }
    for (t, k, h) in [(1u32, 8u32, 4096u32), (512, 8, 2048)] {
        let xo = ctx.upload("xo", &rng.normal_vec((t * k * h) as usize)).unwrap();
        let w = ctx.upload("w", &rng.normal_vec((t * k) as usize)).unwrap();
        let so = ctx.upload("so", &rng.normal_vec((t * h) as usize)).unwrap();
        let g = ctx.upload("g", &rng.normal_vec(t as usize)).unwrap();
        let hb = ctx.upload("h", &rng.normal_vec((t * h) as usize)).unwrap();
        let d = moe::moe_combine(&ctx, &xo, &w, &so, &g, &hb, t, k, h).unwrap();
        let us = time(&ctx, &[&d], 200);
        println!("moe_combine T {t} k {k} H {h}: {us:.2} us ({:.0} GB/s)", ((t * k * h + 2 * t * h) * 4) as f64 / us / 1e3);
    }
    let w = qwgpu_loader::PackedWeight {
        name: "embed".into(),
        dtype: qwgpu_checkpoint::Dtype::BF16,
        rows: 248320,
        cols: 4096,
        data: vec![0x3f; 248320 * 4096 * 2],
        shards: vec![qwgpu_loader::Shard { name: "s".into(), source: "s".into(), row_offset: 0, rows: 248320 }],
        scale: qwgpu_loader::ScaleScheme::None,
        activation: qwgpu_loader::ActivationQuant::None,
    };
    let gw = GpuWeight::upload(&ctx, &w).unwrap();
    for t in [1u32, 512] {
        let ids = ctx.upload("ids", &(0..t).map(|i| i * 397 % 248320).collect::<Vec<u32>>()).unwrap();
        let h = ctx.storage("h", (t * 4096 * 4) as u64).unwrap();
        let ds = embed::embed(&ctx, &gw, &ids, 0, &h, t).unwrap();
        let refs: Vec<&Dispatch> = ds.iter().collect();
        println!("embed BF16 [248320, 4096] T {t}: {} pieces, {:.2} us", ds.len(), time(&ctx, &refs, 200));
    }
}
