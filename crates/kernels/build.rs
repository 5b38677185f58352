//! Where the WGSL files are: `shaders/` in this package (a link to the
//! workspace's `shaders/` in the repository, real files in a published
//! package), else the workspace's `../../shaders` (a checkout where git made
//! the link a plain file, e.g. Windows without symlink support).
//! `shaders.rs` includes them from `QWGPU_SHADERS_DIR`.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let packaged = manifest.join("shaders");
    let dir = if packaged.is_dir() {
        packaged
    } else {
        manifest.join("../../shaders")
    };
    println!(
        "cargo:rustc-env=QWGPU_SHADERS_DIR={dir}",
        dir = dir.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
