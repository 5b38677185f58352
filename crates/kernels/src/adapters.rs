//! Adapter discovery and choice: Vulkan first, discrete before integrated before
//! software; a name substring or index from `--adapter` / `QWGPU_ADAPTER` wins.

use crate::KernelError;

/// What `qwgpu devices` prints for one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software rasteriser (lavapipe, SwiftShader, WARP).
    pub software: bool,
    pub features: Vec<String>,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub subgroup_sizes: (u32, u32),
}

/// The optional features qwgpu asks for when an adapter has them.
pub(crate) const WANTED_FEATURES: &[(wgpu::Features, &str)] = &[
    (wgpu::Features::SHADER_F16, "SHADER_F16"),
    (wgpu::Features::SUBGROUP, "SUBGROUP"),
    (wgpu::Features::SUBGROUP_BARRIER, "SUBGROUP_BARRIER"),
    (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
    (
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        "TIMESTAMP_QUERY_INSIDE_ENCODERS",
    ),
    (
        wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        "TIMESTAMP_QUERY_INSIDE_PASSES",
    ),
    (wgpu::Features::IMMEDIATES, "IMMEDIATES"),
    (wgpu::Features::PIPELINE_CACHE, "PIPELINE_CACHE"),
    (
        wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
        "EXPERIMENTAL_COOPERATIVE_MATRIX",
    ),
];

pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    // Vulkan first (GL adapters lack f16 and subgroups); Metal / DX12 elsewhere.
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    wgpu::Instance::new(desc)
}

pub(crate) fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "swiftshader", "warp"]
            .iter()
            .any(|s| info.name.to_lowercase().contains(s))
}

/// Lower is better.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let backend = match info.backend {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 2,
    };
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    (ty, backend)
}

/// Every adapter, best first (the order `--adapter INDEX` refers to).
pub(crate) fn enumerate() -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    adapters.retain(|a| {
        matches!(
            a.get_info().backend,
            wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12
        )
    });
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

/// Lists the adapters with their features and limits.
///
/// ```no_run
/// for a in qwgpu_kernels::list_adapters() {
///     println!("{index}: {name} ({backend})", index = a.index, name = a.name, backend = a.backend);
/// }
/// ```
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate()
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            let limits = a.limits();
            let have = a.features();
            AdapterSummary {
                index,
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!(
                    "{info_driver} {info_driver_info}",
                    info_driver = info.driver,
                    info_driver_info = info.driver_info
                )
                .trim()
                .to_string(),
                software: is_software(&info),
                features: WANTED_FEATURES
                    .iter()
                    .filter(|(f, _)| have.contains(*f))
                    .map(|(_, n)| n.to_string())
                    .collect(),
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
            }
        })
        .collect()
}

/// Picks an adapter: `wanted` (an index into [`list_adapters`] or a
/// case-insensitive name substring), else `QWGPU_ADAPTER`, else the best one.
pub(crate) fn choose(wanted: Option<&str>) -> Result<wgpu::Adapter, KernelError> {
    let adapters = enumerate();
    if adapters.is_empty() {
        return Err(KernelError::NoAdapter {
            detail: "no Vulkan, Metal or DX12 adapter (on Linux without a GPU install lavapipe: \
                     apt-get install mesa-vulkan-drivers libvulkan1)"
                .into(),
        });
    }
    let env = std::env::var("QWGPU_ADAPTER").ok();
    let wanted = wanted.map(str::to_string).or(env);
    let Some(wanted) = wanted.filter(|w| !w.trim().is_empty()) else {
        return adapters
            .into_iter()
            .next()
            .ok_or_else(|| KernelError::NoAdapter {
                detail: String::new(),
            });
    };
    let names: Vec<String> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "{i}: {a_get_info_name}",
                a_get_info_name = a.get_info().name
            )
        })
        .collect();
    let pick = match wanted.trim().parse::<usize>() {
        Ok(i) => adapters.into_iter().nth(i),
        Err(_) => {
            let w = wanted.to_lowercase();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&w))
        }
    };
    pick.ok_or_else(|| KernelError::AdapterNotFound {
        wanted,
        available: names.join(", "),
    })
}
