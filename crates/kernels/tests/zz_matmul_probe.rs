use std::time::Instant;
use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul, Epilogue, MatmulArgs};
use qwgpu_kernels::GpuWeight;
use qwgpu_loader::{ActivationQuant, PackedWeight, ScaleScheme, Shard};

#[test]
fn probe() {
    let unchecked = qwgpu_kernels::GpuContext::new(&qwgpu_kernels::ContextOptions{runtime_checks: Some(std::env::var("CHK").is_ok()), disable_subgroups: std::env::var("NOSG").is_ok(), disable_f16: std::env::var("NOF16").is_ok(), webgpu_limits: std::env::var("WEBL").is_ok(), ..Default::default()}).unwrap();
    {
        let ctx = &unchecked;
        struct N { name: &'static str }
        let t = N { name: "custom" };
        for (dtype, rows, cols) in [(Dtype::BF16, 130usize, 260usize), (Dtype::F8E4M3, 130, 260), (Dtype::F32, 130, 260)] {
            let pw = PackedWeight { name: "w".into(), dtype, rows, cols, data: vec![0x11; rows*cols*dtype.size()],
                shards: vec![Shard{name:"a".into(), source:"a".into(), row_offset:0, rows}],
                scale: if dtype == Dtype::F8E4M3 { ScaleScheme::PerShard{scales: vec![1.0]} } else { ScaleScheme::None }, activation: ActivationQuant::None };
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            let x = ctx.upload("x", &vec![1.0f32; 100*cols]).unwrap();
            let y = ctx.storage("y", (100*rows*4) as u64).unwrap();
            for tt in [1u32, 3, 16, 17, 70] {
                for epi in [Epilogue::Store, Epilogue::SwiGlu] {
                    let a = MatmulArgs{x:&x, x_offset:0, x_stride: cols as u32, y:&y, y_offset:0, y_stride: rows as u32, t: tt};
                    let s = Instant::now();
                    let d = matmul(ctx, &gw, &a, epi).unwrap();
                    let c = s.elapsed();
                    let refs: Vec<_> = d.iter().collect();
                    let s = Instant::now();
                    ctx.run("p", &refs).unwrap();
                    let r1 = s.elapsed();
                    let s = Instant::now();
                    ctx.run("p", &refs).unwrap();
                    let r2 = s.elapsed();
                    eprintln!("{} {dtype:?} T={tt} {epi:?}: build {:?} run1 {:?} run2 {:?}", t.name, c, r1, r2);
                }
            }
        }
    }
}
