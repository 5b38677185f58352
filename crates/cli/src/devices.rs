//! `qwgpu devices`: the GPU adapters qwgpu can use, best first, with the
//! features and limits its kernels look at.

use std::io::Write;

use anyhow::Result;
use qwgpu_kernels::AdapterSummary;

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
        for line in describe(&a) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// The three lines of one adapter: identity, features, limits.
fn describe(a: &AdapterSummary) -> [String; 3] {
    let AdapterSummary {
        index,
        name,
        backend,
        device_type,
        driver,
        software,
        features,
        ..
    } = a;
    let software = if *software { ", software" } else { "" };
    let features = if features.is_empty() {
        "-".to_string()
    } else {
        features.join(" ")
    };
    let buffer_mib = a.max_buffer_size >> 20;
    let binding_mib = a.max_storage_buffer_binding_size >> 20;
    let workgroup_kib = a.max_compute_workgroup_storage_size >> 10;
    let invocations = a.max_compute_invocations_per_workgroup;
    let (sub_min, sub_max) = a.subgroup_sizes;
    [
        format!("{index}: {name} ({backend}, {device_type}{software}) driver {driver}"),
        format!("   features: {features}"),
        format!(
            "   limits: buffer {buffer_mib} MiB, storage binding {binding_mib} MiB, workgroup storage {workgroup_kib} KiB, {invocations} invocations/workgroup, subgroup size {sub_min}..{sub_max}"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_in_three_lines() {
        let a = AdapterSummary {
            index: 1,
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: "llvmpipe Mesa 22.3.6".into(),
            software: true,
            features: vec!["SHADER_F16".into(), "SUBGROUP".into()],
            max_buffer_size: 2 << 30,
            max_storage_buffer_binding_size: 128 << 20,
            max_compute_workgroup_storage_size: 32 << 10,
            max_compute_invocations_per_workgroup: 1024,
            subgroup_sizes: (8, 8),
        };
        assert_eq!(
            describe(&a),
            [
                "1: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu, software) driver llvmpipe Mesa 22.3.6",
                "   features: SHADER_F16 SUBGROUP",
                "   limits: buffer 2048 MiB, storage binding 128 MiB, workgroup storage 32 KiB, 1024 invocations/workgroup, subgroup size 8..8",
            ]
        );
        let bare = AdapterSummary {
            software: false,
            features: Vec::new(),
            ..a
        };
        let lines = describe(&bare);
        assert_eq!(
            lines[0],
            "1: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu) driver llvmpipe Mesa 22.3.6"
        );
        assert_eq!(lines[1], "   features: -");
    }
}
