//! Times loading a model folder onto the GPU (no prefill, no decode):
//! `cargo run -p qwgpu-model --example load_time -- <folder>`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: load_time <folder>")?);
    let opts = qwgpu_model::engine::LoadOptions {
        backend: qwgpu_model::engine::Backend::Gpu,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let ctx = qwgpu_kernels::GpuContext::new(&opts.gpu)?;
    let ctx_s = t.elapsed().as_secs_f64();
    drop(ctx);
    let t = std::time::Instant::now();
    let model = qwgpu_model::engine::Model::load(&dir, &opts)?;
    let load_s = t.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let rate = bytes as f64 / load_s / 1e9;
    let backend = model.backend_name();
    eprintln!("{backend}: context alone {ctx_s:.2} s; load {load_s:.2} s = {rate:.2} GB/s of {bytes} bytes");
    Ok(())
}
