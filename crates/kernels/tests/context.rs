//! Device-layer behaviour: the on-disk pipeline cache round trip, adapter
//! choice errors, typed errors after the device is destroyed, and contexts
//! on a device the caller opened.

use qwgpu_kernels::shaders::ShaderSource;
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{
    copy, ContextOptions, GpuContext, KernelError, PipelineCacheMode, PipelineKey,
};

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

/// The limits of the browser's WebGPU adapter that kernels meet (Chromium's,
/// issue 20): storage buffers per stage, workgroup storage bytes, invocations
/// per workgroup, bytes per storage binding, bind groups.
const BROWSER_LIMITS: (u32, u32, u32, u64, u32) = (10, 32 << 10, 256, 1 << 30, 4);

/// The fallback column asks for WebGPU's default limits, each at most the
/// browser's: a kernel that breaks a browser limit breaks the column's first,
/// natively, before any browser run.
#[test]
fn the_fallback_columns_limits_are_within_the_browsers() {
    let t = testing::context(testing::Variant::Fallback);
    let l = t.ctx.device.limits();
    let (buffers, workgroup, invocations, binding, groups) = BROWSER_LIMITS;
    assert!(l.max_storage_buffers_per_shader_stage <= buffers, "{l:?}");
    assert!(l.max_compute_workgroup_storage_size <= workgroup, "{l:?}");
    assert!(
        l.max_compute_invocations_per_workgroup <= invocations,
        "{l:?}"
    );
    assert!(l.max_storage_buffer_binding_size <= binding, "{l:?}");
    assert!(l.max_bind_groups <= groups, "{l:?}");
}

/// `wgsl`'s entry point `main` built as every kernel's pipeline is
/// (`GpuContext::pipeline`, with override `constants`), or its typed error.
fn pipeline(
    ctx: &GpuContext,
    name: &str,
    wgsl: String,
    constants: &[(&'static str, f64)],
) -> Result<(), KernelError> {
    // A pipeline key names `'static` sources (the kernels' are compiled in).
    let src: &'static ShaderSource = Box::leak(Box::new(ShaderSource {
        name: Box::leak(format!("limit probe: {name}").into_boxed_str()),
        text: Box::leak(wgsl.into_boxed_str()),
    }));
    let mut key = PipelineKey::new(&[src], "main");
    for &(n, v) in constants {
        key = key.constant(n, v);
    }
    ctx.pipeline(&key).map(drop)
}

/// A limit probe: what it is, its WGSL, its override constants, whether it fits.
type Probe<'a> = (&'a str, String, &'a [(&'static str, f64)], bool);

/// A kernel with `n` storage buffers in one stage (each one used).
fn storage_buffers(n: u32) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "@group(0) @binding({i}) var<storage, read_write> b{i}: array<u32>;\n"
        ));
    }
    let sum: Vec<String> = (1..n).map(|i| format!("b{i}[0]")).collect();
    s.push_str(&format!(
        "@compute @workgroup_size(1) fn main() {{ b0[0] = {sum}; }}\n",
        sum = sum.join(" + ")
    ));
    s
}

/// Kernels past the fallback column's limits fail to build there (natively,
/// a typed error): 9 storage buffers in a stage, 16 KiB + 4 bytes of
/// workgroup storage (fixed or sized by an override constant: wgpu does not
/// check this one natively, the pipeline cache does), 257 invocations.
/// Within the limits they build.
#[test]
fn kernels_past_a_webgpu_limit_fail_in_the_fallback_column() {
    let t = testing::context(testing::Variant::Fallback);
    let ctx = &t.ctx;
    let workgroup = |words: &str| {
        format!(
            "override WORDS: u32 = 1u;\n\
             var<workgroup> w: array<u32, {words}>;\n\
             @group(0) @binding(0) var<storage, read_write> o: array<u32>;\n\
             @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) {{\n\
             w[i] = i; workgroupBarrier(); o[i] = w[63u - i];\n}}\n"
        )
    };
    let invocations = |n: u32| {
        format!(
            "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n\
             @compute @workgroup_size({n}) fn main(@builtin(local_invocation_index) i: u32) {{ o[i] = i; }}\n"
        )
    };
    let words = |n: u32| [("WORDS", f64::from(n))];
    let none: [(&str, f64); 0] = [];
    let cases: [Probe<'_>; 8] = [
        ("8 storage buffers", storage_buffers(8), &none, true),
        ("9 storage buffers", storage_buffers(9), &none, false),
        (
            "16 KiB of workgroup storage",
            workgroup("4096"),
            &none,
            true,
        ),
        (
            "16 KiB + 4 bytes of workgroup storage",
            workgroup("4097"),
            &none,
            false,
        ),
        (
            "16 KiB of workgroup storage by override",
            workgroup("WORDS"),
            &words(4096),
            true,
        ),
        (
            "16 KiB + 4 bytes by override",
            workgroup("WORDS"),
            &words(4097),
            false,
        ),
        ("256 invocations", invocations(256), &none, true),
        ("257 invocations", invocations(257), &none, false),
    ];
    for (what, wgsl, constants, fits) in cases {
        let r = pipeline(ctx, what, wgsl, constants);
        assert_eq!(r.is_ok(), fits, "{name}: {what}: {r:?}", name = t.name);
        if let Err(e) = r {
            assert!(matches!(e, KernelError::Compile { .. }), "{what}: {e:?}");
        }
    }
}
