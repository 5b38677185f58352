//! The WGSL sources in `shaders/`, compiled into the binary. A kernel's module is
//! a list of these files concatenated (a shared helper file, a variant file such
//! as the subgroup or shared-memory reduction, then the kernel family's file):
//! variants are whole files, sizes are `override` constants, never text templates.
//! Which files a kernel's module joins is its [`KernelSpec`](crate::spec::KernelSpec).

/// One `.wgsl` file.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShaderSource {
    pub name: &'static str,
    pub text: &'static str,
}

/// Declares a `pub static` [`ShaderSource`] for a file in `shaders/` (used by every family module).
#[macro_export]
macro_rules! shader {
    ($id:ident, $file:literal) => {
        pub static $id: $crate::shaders::ShaderSource = $crate::shaders::ShaderSource {
            name: $file,
            text: include_str!(concat!(env!("QWGPU_SHADERS_DIR"), "/", $file)),
        };
    };
}

shader!(REDUCE_SUBGROUP, "reduce_subgroup.wgsl");
shader!(REDUCE_SHARED, "reduce_shared.wgsl");
shader!(NUMERIC, "numeric.wgsl");
shader!(COPY, "copy.wgsl");
