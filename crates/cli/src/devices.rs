//! `qwgpu devices`: the GPU adapters qwgpu can use, best first, with the
//! features and limits its kernels look at.

use anyhow::Result;

pub fn run() -> Result<()> {
    let adapters = qwgpu_kernels::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)");
        return Ok(());
    }
    for a in adapters {
        println!(
            "{}: {} ({}, {}{}) driver {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.software { ", software" } else { "" },
            a.driver
        );
        println!(
            "   features: {}",
            if a.features.is_empty() {
                "-".into()
            } else {
                a.features.join(" ")
            }
        );
        println!(
            "   limits: buffer {} MiB, storage binding {} MiB, workgroup storage {} KiB, {} invocations/workgroup, subgroup size {}..{}",
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1
        );
    }
    Ok(())
}
