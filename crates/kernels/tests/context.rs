//! Device-layer behaviour: the on-disk pipeline cache round trip, adapter
//! choice errors, typed errors after the device is destroyed, and contexts
//! on a device the caller opened.

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

/// A device opened by the caller (as a renderer would), with `features`.
fn callers_device(
    features: impl Fn(wgpu::Features) -> wgpu::Features,
) -> (wgpu::Adapter, wgpu::Device, wgpu::Queue) {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("an adapter (lavapipe on CI)");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("caller"),
        required_features: features(adapter.features()),
        required_limits: adapter.limits(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .expect("device");
    (adapter, device, queue)
}

/// Copies 8 words between buffers the caller made, on `ctx`.
fn copy_on_callers_buffers(ctx: &GpuContext, device: &wgpu::Device) -> Vec<u32> {
    use wgpu::util::DeviceExt;
    let words: Vec<u32> = (0..8).map(|i| 100 + i).collect();
    let src = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("caller src"),
        contents: bytemuck::cast_slice(&words),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let dst = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller dst"),
        size: 32,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let launch = copy::copy_words(
        ctx,
        &TensorView::words(&src, 0, 8),
        &TensorView::words(&dst, 0, 8),
    )
    .unwrap();
    ctx.run("copy on the caller's buffers", &[&launch]).unwrap();
    ctx.read_u32(&dst, 0, 8).unwrap()
}

/// `GpuContext::with_device` takes its capabilities from the features and
/// limits the caller's device was created with, not from what the adapter
/// offers, and its switches narrow them further; kernels run on the caller's
/// buffers either way.
#[test]
fn a_context_on_the_callers_device_takes_its_features_and_limits() {
    let opts = ContextOptions {
        pipeline_cache: PipelineCacheMode::Off,
        ..Default::default()
    };
    let want: Vec<u32> = (0..8).map(|i| 100 + i).collect();

    // No optional feature: the portable variants, whatever the adapter has.
    let (adapter, device, queue) = callers_device(|_| wgpu::Features::empty());
    let limits = device.limits();
    let ctx = GpuContext::with_device(&adapter, device.clone(), queue, &opts).unwrap();
    testing::record("caller's device", &ctx, testing::Outcome::Ran);
    assert!(!ctx.caps.subgroups && !ctx.caps.f16 && !ctx.caps.cooperative_matrix);
    assert!(!ctx.caps.timestamps && !ctx.caps.immediates && !ctx.caps.pipeline_cache);
    assert_eq!(ctx.limits, limits);
    assert_eq!(copy_on_callers_buffers(&ctx, &device), want);

    // The optional features the adapter has: the capabilities follow the device's.
    let wanted = wgpu::Features::SUBGROUP
        | wgpu::Features::SUBGROUP_BARRIER
        | wgpu::Features::SHADER_F16
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::IMMEDIATES;
    let (adapter, device, queue) = callers_device(|have| have & wanted);
    let info = adapter.get_info();
    let has = device.features();
    let ctx = GpuContext::with_device(&adapter, device.clone(), queue.clone(), &opts).unwrap();
    assert_eq!(ctx.caps.subgroups, has.contains(wgpu::Features::SUBGROUP));
    assert_eq!(ctx.caps.f16, has.contains(wgpu::Features::SHADER_F16));
    assert_eq!(
        ctx.caps.timestamps,
        has.contains(wgpu::Features::TIMESTAMP_QUERY)
    );
    assert_eq!(
        ctx.caps.subgroup_sizes,
        (info.subgroup_min_size, info.subgroup_max_size)
    );
    assert_eq!(ctx.limits, device.limits());
    assert_eq!(copy_on_callers_buffers(&ctx, &device), want);
    drop(ctx);

    // The switches turn features off on the caller's device too.
    let narrowed = ContextOptions {
        disable_subgroups: true,
        disable_f16: true,
        ..opts.clone()
    };
    let ctx = GpuContext::with_device(&adapter, device.clone(), queue, &narrowed).unwrap();
    assert!(!ctx.caps.subgroups && !ctx.caps.f16 && !ctx.caps.cooperative_matrix);
    assert_eq!(copy_on_callers_buffers(&ctx, &device), want);
    // The context never destroys the caller's device.
    drop(ctx);
    assert!(device.poll(wgpu::PollType::Poll).is_ok());
}
