//! The device layer: one [`GpuContext`] per device holds the queue, what the
//! adapter can do, the pipeline cache and the error sink that turns wgpu's
//! asynchronous errors and device loss into [`KernelError`]s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapters::{self, WANTED_FEATURES};
use crate::pipeline::PipelineCache;
use crate::KernelError;

#[cfg(target_arch = "wasm32")]
mod web;

/// How to open a device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Index into [`crate::list_adapters`] or a name substring; `None`: `QWGPU_ADAPTER`, else the best.
    pub adapter: Option<String>,
    /// Use the kernels' subgroup-free variants even where subgroups exist.
    pub disable_subgroups: bool,
    /// Use the kernels' f16-free variants even where `SHADER_F16` exists.
    pub disable_f16: bool,
    /// Ask only for WebGPU's default limits (what a browser guarantees), to prove
    /// the fallback kernels fit them.
    pub webgpu_limits: bool,
    /// Shader runtime checks (index clamping, loop bounds). `None`: on in debug
    /// builds, off in release builds (trusted modules).
    pub runtime_checks: Option<bool>,
    /// On-disk pipeline cache (where the adapter has `PIPELINE_CACHE`).
    pub pipeline_cache: crate::PipelineCacheMode,
    /// Let [`MatmulPath::Auto`](crate::matmul::MatmulPath::Auto) run the
    /// plain cooperative-matrix GEMM for `T > 16` (x rounded to f16 directly,
    /// with no per-row power of two, so an |x| above 65504 overflows) for
    /// every weight format it takes, block-scaled FP8 and F32 included, in
    /// place of the choice [`ContextOptions::precision`] makes (the
    /// f16-scratch GEMM still comes first where it is on, rounding as
    /// [`MatmulPrecision::Fast`] does). Off by default: Auto then follows the
    /// precision (fast: x scaled per row and rounded to f16 once; exact: x
    /// split into two f16 halves, results as the f32 GEMM's).
    pub f16_matmul: bool,
    /// How the multi-token GEMMs round activations (see [`MatmulPrecision`]).
    pub precision: MatmulPrecision,
}

/// Rounding of the activations in the multi-token (`T > 16`) GEMMs. Weights
/// and accumulation are the same in both: weights exact (decoded from their
/// stored format, scales applied in f32), sums in f32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MatmulPrecision {
    /// Results as the f32 GEMM's (the tensor-core GEMM splits each activation
    /// into two f16 halves, twice the multiply-adds).
    #[default]
    Exact,
    /// Each activation row multiplied by a power of two (so no finite value
    /// overflows) and rounded to f16 (11 significant bits; BF16 keeps 8).
    /// Whether it may be the default is decided by measured divergence
    /// (`cargo xtask matrix`'s precision column). The tensor-core GEMMs
    /// (`matmul::coop_fast`, `mm_coop`) round so, and the scalar tile GEMM
    /// emulates that rounding.
    Fast,
}

/// What the opened device offers the kernels (after the options' switches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub subgroups: bool,
    /// `(min, max)` subgroup size reported by the adapter; never assumed by kernels.
    pub subgroup_sizes: (u32, u32),
    pub f16: bool,
    pub timestamps: bool,
    pub timestamps_in_passes: bool,
    pub immediates: bool,
    pub pipeline_cache: bool,
    pub cooperative_matrix: bool,
}

/// Device, queue, capabilities, limits, pipelines and the error sink.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Capabilities,
    pub limits: wgpu::Limits,
    pub software: bool,
    pub(crate) runtime_checks: bool,
    /// [`ContextOptions::f16_matmul`].
    pub f16_matmul: bool,
    /// [`ContextOptions::precision`].
    pub precision: MatmulPrecision,
    /// Values tuned for this adapter ([`Tuning::for_adapter`](crate::Tuning::for_adapter)).
    pub tuning: crate::Tuning,
    pub(crate) pipelines: PipelineCache,
    pub(crate) disk_cache: Option<crate::disk_cache::DiskCache>,
    /// The fast tensor-core GEMM's scratch ([`crate::matmul::coop_fast`]).
    pub(crate) coop_fast_scratch: crate::matmul::coop_fast::Scratch,
    /// The f16-scratch tensor-core GEMM's scratch ([`crate::matmul::coop_f16`]).
    pub(crate) coop_f16_scratch: crate::matmul::coop_f16::Scratch,
    errors: Arc<Mutex<Vec<wgpu::Error>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Bytes queued by [`GpuContext::queued_upload`] since the last flush, and
    /// the submission of the flush before.
    uploads: Mutex<(u64, Option<wgpu::SubmissionIndex>)>,
}

/// Bytes of `write_buffer` data after which [`GpuContext::queued_upload`]
/// submits them. wgpu holds every write in a staging buffer of its own until the
/// next `queue.submit`: a model loaded without one would allocate (and pin)
/// host-visible staging memory for all its weights before the first copy ran.
const UPLOAD_FLUSH_BYTES: u64 = 256 << 20;

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("caps", &self.caps)
            .finish()
    }
}

/// How long a blocking wait for the GPU may take before it is an error.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

impl GpuContext {
    /// Opens a device on the chosen adapter, asking for its own limits and every
    /// optional feature it has that the kernels can use.
    ///
    /// ```no_run
    /// let ctx = qwgpu_kernels::GpuContext::new(&Default::default())?;
    /// println!("{name} subgroups={subgroups}", name = ctx.info.name, subgroups = ctx.caps.subgroups);
    /// # Ok::<(), qwgpu_kernels::KernelError>(())
    /// ```
    pub fn new(opts: &ContextOptions) -> Result<Self, KernelError> {
        let adapter = adapters::choose(opts.adapter.as_deref())?;
        Self::from_adapter(adapter, opts)
    }

    fn from_adapter(adapter: wgpu::Adapter, opts: &ContextOptions) -> Result<Self, KernelError> {
        let (features, limits) = Self::device_plan(&adapter, opts);
        let desc = Self::device_descriptor(features, &limits);
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            KernelError::DeviceRequest {
                adapter: adapter.get_info().name,
                detail: e.to_string(),
            }
        })?;
        Ok(Self::from_device(
            &adapter, device, queue, features, limits, opts,
        ))
    }

    /// The features and limits to ask `adapter` for under `opts`.
    fn device_plan(
        adapter: &wgpu::Adapter,
        opts: &ContextOptions,
    ) -> (wgpu::Features, wgpu::Limits) {
        let have = adapter.features();
        let mut features = wgpu::Features::empty();
        for (f, _) in WANTED_FEATURES {
            if have.contains(*f) {
                features |= *f;
            }
        }
        if opts.disable_subgroups {
            features.remove(wgpu::Features::SUBGROUP | wgpu::Features::SUBGROUP_BARRIER);
        }
        if opts.disable_f16 {
            features.remove(
                wgpu::Features::SHADER_F16 | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            );
        }
        let limits = if opts.webgpu_limits {
            // WebGPU defaults, but keep what the adapter must have for our buffers.
            wgpu::Limits::default()
        } else {
            adapter.limits()
        };
        if opts.webgpu_limits {
            features.remove(
                wgpu::Features::IMMEDIATES | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            );
        }
        (features, limits)
    }

    fn device_descriptor(
        features: wgpu::Features,
        limits: &wgpu::Limits,
    ) -> wgpu::DeviceDescriptor<'static> {
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: only the cooperative-matrix feature is experimental here; its
            // kernels are checked against the scalar path in tests.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        wgpu::DeviceDescriptor {
            label: Some("qwgpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }
    }

    /// The context over a device opened with [`GpuContext::device_plan`]'s
    /// features and limits: the error sink, capabilities and caches.
    fn from_device(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        features: wgpu::Features,
        limits: wgpu::Limits,
        opts: &ContextOptions,
    ) -> Self {
        let info = adapter.get_info();
        let errors: Arc<Mutex<Vec<wgpu::Error>>> = Arc::default();
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                tracing::error!("uncaptured GPU error: {e}");
                if let Ok(mut v) = errors.lock() {
                    v.push(e);
                }
            }));
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                tracing::error!("GPU device lost: {reason:?} {msg}");
                if let Ok(mut l) = lost.lock() {
                    *l = Some(format!("{reason:?}: {msg}"));
                }
            });
        }
        let caps = Capabilities {
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
            f16: features.contains(wgpu::Features::SHADER_F16),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_in_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            immediates: features.contains(wgpu::Features::IMMEDIATES),
            pipeline_cache: features.contains(wgpu::Features::PIPELINE_CACHE),
            cooperative_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        };
        let software = adapters::is_software(&info);
        let tuning = crate::Tuning::for_adapter(&info);
        let disk_cache =
            crate::disk_cache::open(&device, &info, caps.pipeline_cache, &opts.pipeline_cache);
        tracing::info!(
            adapter = %info.name,
            backend = ?info.backend,
            software,
            ?caps,
            ?tuning,
            "GPU device opened"
        );
        Self {
            device,
            queue,
            info,
            caps,
            limits,
            software,
            runtime_checks: opts.runtime_checks.unwrap_or(cfg!(debug_assertions)),
            f16_matmul: opts.f16_matmul,
            precision: opts.precision,
            tuning,
            pipelines: PipelineCache::default(),
            disk_cache,
            coop_fast_scratch: Default::default(),
            coop_f16_scratch: Default::default(),
            errors,
            lost,
            uploads: Mutex::new((0, None)),
        }
    }

    /// Notes `bytes` just queued with `queue.write_buffer`. Every
    /// 256 MiB it submits the queued writes (an empty submission
    /// carries them) and waits for the flush before this one: the GPU copies one
    /// window while the host packs and stages the next, and the staging memory
    /// of finished windows is reused instead of growing with the model.
    pub fn queued_upload(&self, bytes: u64) -> Result<(), KernelError> {
        let mut u = self.uploads.lock().map_err(|_| KernelError::Internal {
            during: "weight upload".into(),
            detail: "upload state poisoned".into(),
        })?;
        u.0 += bytes;
        if u.0 < UPLOAD_FLUSH_BYTES {
            return Ok(());
        }
        self.check("weight upload")?;
        let index = self.queue.submit([]);
        if let Some(before) = u.1.replace(index) {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(before),
                    timeout: Some(WAIT_TIMEOUT),
                })
                .map_err(|e| KernelError::DeviceLost {
                    reason: e.to_string(),
                    during: "weight upload".into(),
                })?;
        }
        u.0 = 0;
        Ok(())
    }

    /// Submits the writes [`GpuContext::queued_upload`] has not flushed yet.
    pub fn flush_uploads(&self) {
        if let Ok(mut u) = self.uploads.lock() {
            if u.0 > 0 {
                u.1 = Some(self.queue.submit([]));
                u.0 = 0;
            }
        }
    }

    /// A short description: `NVIDIA H100 (Vulkan)` or `llvmpipe (Vulkan, software)`.
    pub fn describe(&self) -> String {
        format!(
            "{info_name} ({info_backend:?}{software})",
            info_name = self.info.name,
            info_backend = self.info.backend,
            software = if self.software { ", software" } else { "" }
        )
    }

    /// Returns the first asynchronous error (or the device loss) seen since the
    /// last call, as a typed error naming `during`.
    pub fn check(&self, during: &str) -> Result<(), KernelError> {
        // A non-blocking poll runs pending callbacks (the device-lost one too).
        let _ = self.device.poll(wgpu::PollType::Poll);
        if let Some(reason) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(KernelError::DeviceLost {
                reason,
                during: during.to_string(),
            });
        }
        let mut errors = self.errors.lock().map_err(|_| KernelError::Internal {
            during: during.to_string(),
            detail: "error sink poisoned".into(),
        })?;
        if let Some(e) = errors.first() {
            let err = KernelError::from_wgpu(e, during);
            errors.clear();
            return Err(err);
        }
        Ok(())
    }

    /// Whether the device was lost (destroyed, reset, removed).
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map(|l| l.is_some()).unwrap_or(true)
    }

    /// Blocks until the queue is idle (native only), then reports any error.
    pub fn wait(&self, during: &str) -> Result<(), KernelError> {
        self.check(during)?;
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(WAIT_TIMEOUT),
        });
        self.check(during)?;
        match r {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(KernelError::Timeout {
                during: during.to_string(),
                seconds: WAIT_TIMEOUT.as_secs(),
            }),
            Err(e) => Err(KernelError::DeviceLost {
                reason: e.to_string(),
                during: during.to_string(),
            }),
        }
    }

    /// Runs `f` inside out-of-memory and validation error scopes and returns the
    /// first error it caused, typed (used for uploads and pipeline creation).
    pub fn scoped<T>(&self, during: &str, f: impl FnOnce() -> T) -> Result<T, KernelError> {
        self.check(during)?;
        // The web cannot wait for a scope's verdict (a promise): its errors
        // reach the uncaptured-error sink, and the next `check` reports them.
        #[cfg(target_arch = "wasm32")]
        {
            Ok(f())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let out = f();
            let v = pollster::block_on(val.pop());
            let o = pollster::block_on(oom.pop());
            if let Some(e) = o.or(v) {
                return Err(KernelError::from_wgpu(&e, during));
            }
            self.check(during)?;
            Ok(out)
        }
    }

    /// Saves the on-disk pipeline cache now (also done when the context drops).
    pub fn save_pipeline_cache(&self) {
        if let (Some(c), false) = (&self.disk_cache, self.is_lost()) {
            c.save();
        }
    }

    /// Destroys the device (for tests of device-loss handling).
    pub fn destroy(&self) {
        if let Ok(mut l) = self.lost.lock() {
            *l = Some("destroyed by the application".into());
        }
        self.device.destroy();
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        self.save_pipeline_cache();
    }
}

/// Bring your own device.
impl GpuContext {
    /// Builds a context on a device the caller already has (shared with a
    /// renderer or another engine) instead of opening one. `adapter` is the
    /// one the device came from: its name picks the tuning table and the
    /// on-disk pipeline cache, its subgroup sizes are reported in
    /// [`Capabilities`]. The capabilities are what the device was created
    /// with (`device.features()`, `device.limits()`), not what the adapter
    /// could offer: a device without `SHADER_F16` or `SUBGROUP` runs the
    /// kernels' f16-free and subgroup-free variants, which exist for every
    /// kernel and fit WebGPU's default limits.
    ///
    /// From `opts` this reads the switches that narrow what the kernels use
    /// (`disable_subgroups`, `disable_f16`, `webgpu_limits` drops immediates
    /// and cooperative matrices), `runtime_checks`, `pipeline_cache`,
    /// `f16_matmul` and `precision`; `adapter` is ignored (the device is
    /// chosen) and the limits are always the device's. `wgpu::Device` and
    /// `wgpu::Queue` are reference-counted handles: pass clones and keep
    /// using your own.
    ///
    /// The context installs its uncaptured-error handler and device-lost
    /// callback on the device (each replaces one set before): errors the
    /// caller's own work raises outside an error scope then surface from
    /// [`GpuContext::check`] instead of wgpu's default panic. It never
    /// destroys the device except through [`GpuContext::destroy`].
    ///
    /// Buffers are the caller's to make (any `STORAGE` buffer of the device
    /// works; [`GpuContext::storage`] and [`GpuContext::upload`] are
    /// shortcuts); each kernel family documents the layout it reads, e.g.
    /// [`crate::weights`] (stored weights and their scale table),
    /// [`crate::matmul`] (activations) and [`crate::gdn`] (layer buffers and
    /// recurrent state). The launches ([`crate::Dispatch`]) record into the
    /// caller's own compute pass ([`crate::Dispatch::record`]).
    ///
    /// ```no_run
    /// # use qwgpu_kernels::wgpu;
    /// # fn f(adapter: &wgpu::Adapter, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<(), qwgpu_kernels::KernelError> {
    /// use qwgpu_kernels::{ContextOptions, GpuContext};
    /// let ctx = GpuContext::with_device(adapter, device.clone(), queue.clone(), &ContextOptions::default())?;
    /// println!("{caps:?}", caps = ctx.caps);
    /// # Ok(()) }
    /// ```
    pub fn with_device(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        opts: &ContextOptions,
    ) -> Result<Self, KernelError> {
        // What qwgpu would ask this adapter for under `opts`, cut down to
        // what the caller's device was created with.
        let (planned, _) = Self::device_plan(adapter, opts);
        let features = planned & device.features();
        let limits = device.limits();
        Ok(Self::from_device(
            adapter, device, queue, features, limits, opts,
        ))
    }
}
