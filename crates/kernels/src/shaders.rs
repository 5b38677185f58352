//! The WGSL sources in `shaders/`, compiled into the binary. A kernel's module is
//! a list of these files concatenated (a shared helper file, a variant file such
//! as the subgroup or shared-memory reduction, then the kernel family's file):
//! variants are whole files, sizes are `override` constants, never text templates.

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
            text: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shaders/",
                $file
            )),
        };
    };
}

shader!(REDUCE_SUBGROUP, "reduce_subgroup.wgsl");
shader!(REDUCE_SHARED, "reduce_shared.wgsl");
shader!(NUMERIC, "numeric.wgsl");
shader!(COPY, "copy.wgsl");

/// Every file, for the naga validation test.
pub fn all() -> Vec<&'static ShaderSource> {
    vec![&REDUCE_SUBGROUP, &REDUCE_SHARED, &NUMERIC, &COPY]
}

/// Every module (file list) the kernels build, with whether it needs the
/// subgroup/f16 capabilities: validated by naga in a CPU-only test.
pub fn modules() -> Vec<(Vec<&'static ShaderSource>, bool)> {
    let mut all = vec![
        (vec![&COPY], false),
        (vec![&REDUCE_SUBGROUP, &NUMERIC, &COPY], true),
        (vec![&REDUCE_SHARED, &NUMERIC, &COPY], false),
    ];
    all.extend(crate::matmul::modules());
    all.extend(crate::gdn::modules());
    all.extend(crate::attention::modules());
    all.extend(crate::norm::modules());
    all.extend(crate::embed::modules());
    all.extend(crate::moe::modules());
    all.extend(crate::sample::modules());
    all
}
