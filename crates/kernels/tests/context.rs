//! Device-layer behaviour: the on-disk pipeline cache round trip, adapter
//! choice errors, and typed errors after the device is destroyed.

use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, ContextOptions, GpuContext, KernelError, PipelineCacheMode};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "qwgpu-{name}-{std_process_id}",
        std_process_id = std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_pipeline_cache_is_written_and_reused() {
    let dir = tmp("pcache");
    let opts = ContextOptions {
        pipeline_cache: PipelineCacheMode::Dir(dir.clone()),
        ..Default::default()
    };
    let ctx = GpuContext::new(&opts).unwrap();
    // Without PIPELINE_CACHE there is no cache to write: recorded as skipped.
    if !testing::require("default", &ctx, &[Feature::PipelineCache]) {
        return;
    }
    let src = ctx.upload("src", &[7u32; 8]).unwrap();
    let dst = ctx.storage("dst", 32).unwrap();
    ctx.run(
        "copy",
        &[&copy::copy_words(
            &ctx,
            &TensorView::words(&src, 0, 8),
            &TensorView::words(&dst, 0, 8),
        )
        .unwrap()],
    )
    .unwrap();
    ctx.save_pipeline_cache();
    drop(ctx);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(
        files.len(),
        1,
        "one cache file per adapter in {}",
        dir.display()
    );
    assert!(files[0].metadata().unwrap().len() > 0);
    // A second context starts from that file and still computes correctly.
    let ctx = GpuContext::new(&opts).unwrap();
    let src = ctx.upload("src", &[9u32; 8]).unwrap();
    let dst = ctx.storage("dst", 32).unwrap();
    ctx.run(
        "copy",
        &[&copy::copy_words(
            &ctx,
            &TensorView::words(&src, 0, 8),
            &TensorView::words(&dst, 0, 8),
        )
        .unwrap()],
    )
    .unwrap();
    assert_eq!(ctx.read_u32(&dst, 0, 8).unwrap(), vec![9; 8]);
    // A corrupt file is ignored, not an error.
    std::fs::write(files[0].path(), b"garbage").unwrap();
    let ctx = GpuContext::new(&opts).unwrap();
    let src = ctx.upload("src", &[3u32; 4]).unwrap();
    let dst = ctx.storage("dst", 16).unwrap();
    ctx.run(
        "copy",
        &[&copy::copy_words(
            &ctx,
            &TensorView::words(&src, 0, 4),
            &TensorView::words(&dst, 0, 4),
        )
        .unwrap()],
    )
    .unwrap();
    assert_eq!(ctx.read_u32(&dst, 0, 4).unwrap(), vec![3; 4]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_adapter_names_the_available_ones() {
    let err = GpuContext::new(&ContextOptions {
        adapter: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, KernelError::AdapterNotFound { .. }), "{err}");
    assert!(err.to_string().contains("0: "), "{err}");
}

#[test]
fn a_destroyed_device_gives_typed_errors_not_panics() {
    let ctx = GpuContext::new(&ContextOptions {
        pipeline_cache: PipelineCacheMode::Off,
        ..Default::default()
    })
    .unwrap();
    let src = ctx.upload("src", &[1u32; 4]).unwrap();
    ctx.destroy();
    assert!(ctx.is_lost());
    let err = ctx.check("after destroy").unwrap_err();
    assert!(matches!(err, KernelError::DeviceLost { .. }), "{err}");
    assert!(ctx.read_u32(&src, 0, 4).is_err());
    assert!(ctx.upload("again", &[1u32; 4]).is_err());
}

/// Writes noted with `queued_upload` are submitted in windows (the second
/// flush waits for the first); every byte lands, including an unflushed tail
/// submitted by `flush_uploads`.
#[test]
fn queued_uploads_are_flushed_in_windows_and_all_land() {
    let ctx = GpuContext::new(&ContextOptions::default()).unwrap();
    let bufs: Vec<wgpu::Buffer> = (0..5)
        .map(|i| ctx.storage(&format!("b{i}"), 64).unwrap())
        .collect();
    for (i, b) in bufs.iter().enumerate() {
        let data: Vec<u32> = (0..16).map(|j| (i * 100 + j) as u32).collect();
        ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(&data));
        // Each note counts as a full window (as a 9B layer's weights would).
        let noted = if i < 4 { 300 << 20 } else { 64 };
        ctx.queued_upload(noted).unwrap();
    }
    ctx.flush_uploads();
    ctx.wait("test").unwrap();
    for (i, b) in bufs.iter().enumerate() {
        let got = ctx.read_u32(b, 0, 16).unwrap();
        let want: Vec<u32> = (0..16).map(|j| (i * 100 + j) as u32).collect();
        assert_eq!(got, want, "buffer {i}");
    }
}
