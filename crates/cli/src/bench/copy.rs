//! Device copy bandwidth through qwgpu's own copy kernel (`copy_words`), the
//! memory roofline that decode speed is compared with. Counted as bytes read
//! plus bytes written, like torch's `copy_` figure beside it.

use std::time::Instant;

use anyhow::{Context, Result};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, ContextOptions, GpuContext};

/// One measurement.
pub struct CopyBandwidth {
    pub adapter: String,
    /// Bytes of one buffer (each copy reads and writes this many).
    pub buffer_bytes: u64,
    /// Best of the timed submissions, bytes read + written per second.
    pub bytes_per_s: f64,
}

/// Copies a buffer of up to `max_bytes` (capped by the device's binding limit)
/// `reps` times in one pass per submission; the best of five submissions.
pub fn measure(opts: &ContextOptions, max_bytes: u64, reps: usize) -> Result<CopyBandwidth> {
    let ctx = GpuContext::new(opts).context("opening the GPU")?;
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    // Whole 256-word groups, so every word of the buffer is copied.
    let words = (max_bytes.min(limit) / 4 / 256 * 256).clamp(256, u32::MAX as u64 / 256 * 256);
    let bytes = words * 4;
    let src = ctx.storage("copy bench source", bytes)?;
    let dst = ctx.storage("copy bench destination", bytes)?;
    let (from, to) = (
        TensorView::words(&src, 0, words as u32),
        TensorView::words(&dst, 0, words as u32),
    );
    let d = copy::copy_words(&ctx, &from, &to)?;
    let launches: Vec<_> = (0..reps.max(1)).map(|_| &d).collect();
    ctx.run("copy bench warm-up", &launches)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        ctx.run("copy bench", &launches)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(CopyBandwidth {
        adapter: ctx.info.name.clone(),
        buffer_bytes: bytes,
        bytes_per_s: 2.0 * bytes as f64 * launches.len() as f64 / best,
    })
}
