//! Makes sure a Vulkan adapter exists for the GPU tests (lavapipe on CI).

use std::path::Path;
use std::process::Command;

const ICD_DIRS: &[&str] = &["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
const INSTALL: &str = "apt-get update && apt-get install -y mesa-vulkan-drivers libvulkan1";

fn has_icd() -> bool {
    ICD_DIRS.iter().any(|d| {
        std::fs::read_dir(d)
            .map(|mut it| it.any(|e| e.is_ok()))
            .unwrap_or(false)
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs Mesa's software Vulkan driver on Debian when run as root, else says how.
/// Never fails here: the GPU tests that follow fail with a clear "no GPU context"
/// message when no adapter exists.
pub fn ensure_adapter() {
    if has_icd() {
        eprintln!("xtask: Vulkan ICD present");
        return;
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("xtask: no Vulkan ICD; installing lavapipe: {INSTALL}");
        let ok = Command::new("sh")
            .args([
                "-c",
                &format!("DEBIAN_FRONTEND=noninteractive {INSTALL} >/dev/null"),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok && has_icd() {
            return;
        }
        eprintln!("xtask: warning: installing the Vulkan driver failed");
    } else {
        eprintln!("xtask: warning: no Vulkan ICD found; install one with: sudo {INSTALL}");
    }
}
