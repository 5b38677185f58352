//! SPIR-V translation on the CPU (naga: what the GPU machine's driver is
//! given; lavapipe cannot build the cooperative-matrix pipelines), so a naga
//! writer failure for some override fails here rather than on the GPU machine.

use naga::valid::Capabilities;
use qwgpu_kernels::registry;
use qwgpu_kernels::spec::KernelSpec;

/// What a GPU with cooperative matrices grants: f16 (and f16 in f32),
/// subgroups, cooperative matrices.
pub fn coop_capabilities() -> Capabilities {
    use naga::valid::Capabilities as C;
    C::default()
        | C::SHADER_FLOAT16_IN_FLOAT32
        | C::SUBGROUP
        | C::SHADER_FLOAT16
        | C::COOPERATIVE_MATRIX
}

/// The registered kernel whose entry point or label is `name`.
pub fn spec(name: &str) -> &'static KernelSpec {
    registry::all()
        .into_iter()
        .find(|s| s.entry == name || s.label == name)
        .unwrap_or_else(|| panic!("no spec `{name}`"))
}

/// One module, parsed and validated, translated per set of overrides.
pub struct Translator {
    name: String,
    entry: &'static str,
    module: naga::Module,
    info: naga::valid::ModuleInfo,
}

impl Translator {
    /// `src` (called `name` in messages) with entry point `entry`, validated
    /// with `caps`.
    pub fn new(name: &str, src: &str, entry: &'static str, caps: Capabilities) -> Self {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {diagnostic}", diagnostic = e.emit_to_string(src)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: validation error: {e:?}"));
        Self {
            name: name.to_string(),
            entry,
            module,
            info,
        }
    }

    /// `spec`'s module (with subgroups) on a GPU with cooperative matrices.
    pub fn coop(spec: &KernelSpec) -> Self {
        Self::new(
            spec.label,
            &spec.source(true),
            spec.entry,
            coop_capabilities(),
        )
    }

    /// The names of the module's boolean overrides.
    pub fn switches(&self) -> Vec<String> {
        self.module
            .overrides
            .iter()
            .filter(|(_, o)| {
                matches!(
                    self.module.types[o.ty].inner,
                    naga::TypeInner::Scalar(naga::Scalar::BOOL)
                )
            })
            .filter_map(|(_, o)| o.name.clone())
            .collect()
    }

    /// Translates the entry point with the overrides `constants`.
    pub fn translate(&self, constants: &[(&str, f64)]) {
        let (name, entry) = (&self.name, self.entry);
        let constants: naga::back::PipelineConstants =
            constants.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        let (m, i) = naga::back::pipeline_constants::process_overrides(
            &self.module,
            &self.info,
            None,
            &constants,
        )
        .unwrap_or_else(|e| panic!("{name} {constants:?}: {e}"));
        let pipe = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.into(),
        };
        naga::back::spv::write_vec(&m, &i, &Default::default(), Some(&pipe))
            .unwrap_or_else(|e| panic!("{name} `{entry}` {constants:?}: {e}"));
    }
}
