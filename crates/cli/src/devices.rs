//! `qwgpu devices`: the GPU adapters qwgpu can use, best first, with the
//! features and limits its kernels look at.

use std::io::Write;

use anyhow::Result;

/// Writes with `writeln!` rather than `println!`, so a reader that closes the
/// pipe (`| head -1`) is an error `main` ends quietly on, not a panic.
pub fn run() -> Result<()> {
    let mut out = std::io::stdout().lock();
    let adapters = qwgpu_kernels::list_adapters();
    if adapters.is_empty() {
        writeln!(
            out,
            "no GPU adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)"
        )?;
        return Ok(());
    }
    for a in adapters {
        writeln!(
            out,
            "{}: {} ({}, {}{}) driver {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.software { ", software" } else { "" },
            a.driver
        )?;
        writeln!(
            out,
            "   features: {}",
            if a.features.is_empty() {
                "-".into()
            } else {
                a.features.join(" ")
            }
        )?;
        writeln!(
            out,
            "   limits: buffer {} MiB, storage binding {} MiB, workgroup storage {} KiB, {} invocations/workgroup, subgroup size {}..{}",
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1
        )?;
    }
    Ok(())
}
