//! Binding names of a module's entry points, from naga's reflection of the
//! WGSL (the parser and analyser wgpu itself runs): launches bind buffers by the
//! names the shader declares, and a binding the entry point does not use is left
//! out, as wgpu's derived layout leaves it out.

use std::collections::HashMap;
use std::sync::Arc;

/// One `@group(0) @binding(n) var` of a module, as an entry point sees it.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub binding: u32,
    /// Whether the entry point (or a function it calls) reads or writes it.
    pub used: bool,
    /// The struct type's name of a `var<uniform>` (`None` for storage buffers).
    pub uniform_type: Option<String>,
}

/// The group-0 variables one entry point sees, by name. A handful per
/// kernel: a list searched in order costs less per launch than hashing.
#[derive(Debug, Default)]
pub(crate) struct EntryBindings {
    vars: Vec<(String, Binding)>,
}

impl EntryBindings {
    /// The variable `name`, if the module declares it in group 0.
    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// Every variable with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Binding)> {
        self.vars.iter().map(|(n, b)| (n, b))
    }
}

impl std::ops::Index<&str> for EntryBindings {
    type Output = Binding;

    fn index(&self, name: &str) -> &Binding {
        self.get(name)
            .unwrap_or_else(|| panic!("no group-0 variable `{name}`"))
    }
}

/// Group-0 bindings by variable name, per entry point.
#[derive(Debug, Default)]
pub(crate) struct ModuleBindings {
    entries: HashMap<String, Arc<EntryBindings>>,
    /// The analysed module, for [`ModuleBindings::workgroup_bytes`].
    #[cfg(not(target_arch = "wasm32"))]
    analysed: Option<(naga::Module, naga::valid::ModuleInfo)>,
}

impl ModuleBindings {
    /// Parses and analyses `source` (all capabilities allowed: wgpu decides
    /// what the device can run).
    pub fn reflect(source: &str) -> Result<Self, String> {
        let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::empty(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{e:?}"))?;
        let mut entries = HashMap::new();
        for (i, ep) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let mut vars = Vec::new();
            for (handle, var) in module.global_variables.iter() {
                let (Some(rb), Some(name)) = (&var.binding, &var.name) else {
                    continue;
                };
                if rb.group != 0 {
                    continue;
                }
                let uniform_type = (var.space == naga::AddressSpace::Uniform)
                    .then(|| module.types[var.ty].name.clone())
                    .flatten();
                vars.push((
                    name.clone(),
                    Binding {
                        binding: rb.binding,
                        used: !uses[handle].is_empty(),
                        uniform_type,
                    },
                ));
            }
            entries.insert(ep.name.clone(), Arc::new(EntryBindings { vars }));
        }
        Ok(Self {
            entries,
            #[cfg(not(target_arch = "wasm32"))]
            analysed: Some((module, info)),
        })
    }

    /// Bytes of workgroup storage `entry` uses with the override `constants`
    /// (each variable rounded up to 16 bytes, as WebGPU counts them). wgpu
    /// does not check this against the device's limit natively (a browser
    /// does, refusing the pipeline), so the pipeline cache checks it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn workgroup_bytes(&self, entry: &str, constants: &[(&str, f64)]) -> Result<u32, String> {
        let (module, info) = self
            .analysed
            .as_ref()
            .ok_or_else(|| "the module was not analysed".to_string())?;
        let constants: naga::back::PipelineConstants =
            constants.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            module,
            info,
            Some((naga::ShaderStage::Compute, entry)),
            &constants,
        )
        .map_err(|e| format!("override constants: {e}"))?;
        let index = module
            .entry_points
            .iter()
            .position(|ep| ep.name == entry)
            .ok_or_else(|| format!("no entry point `{entry}`"))?;
        let uses = info.get_entry_point(index);
        let mut layouter = naga::proc::Layouter::default();
        layouter
            .update(module.to_ctx())
            .map_err(|e| format!("type layout: {e}"))?;
        let bytes = module
            .global_variables
            .iter()
            .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, v)| layouter[v.ty].size.next_multiple_of(16))
            .sum();
        Ok(bytes)
    }

    /// The bindings `entry` sees, or `None` if the module has no such entry point.
    pub fn entry(&self, entry: &str) -> Option<&Arc<EntryBindings>> {
        self.entries.get(entry)
    }
}

/// Test: the variables each spec's entry point uses (what a launch must
/// bind; lavapipe never builds the cooperative-matrix pipelines that would
/// check it) are exactly the names given with it.
#[cfg(test)]
pub(crate) fn assert_entries_use_exactly(cases: &[(&crate::spec::KernelSpec, &[&str])]) {
    for (spec, want) in cases {
        let module = ModuleBindings::reflect(&spec.source(true)).unwrap();
        let entry = module.entry(spec.entry).unwrap();
        let mut used: Vec<&str> = entry
            .iter()
            .filter(|(_, b)| b.used)
            .map(|(n, _)| n.as_str())
            .collect();
        used.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(used, want, "{entry_name}", entry_name = spec.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered kernel's module reflects (the cooperative-matrix one
    /// included, which lavapipe never builds) and has its entry point.
    #[test]
    fn every_spec_module_reflects_with_its_entry_point() {
        for spec in crate::registry::all() {
            for sg in [false, true] {
                let m = ModuleBindings::reflect(&spec.source(sg))
                    .unwrap_or_else(|e| panic!("{spec_label}: {e}", spec_label = spec.label));
                assert!(m.entry(spec.entry).is_some(), "{}", spec.label);
            }
        }
    }

    /// What each entry point uses is what wgpu's derived layout holds: the
    /// tensor-core GEMM (only built on hardware) reads exactly the bindings
    /// `matmul` gives it, the tiled GEMM leaves the vec4 view of x out.
    #[test]
    fn entry_points_see_only_the_bindings_they_use() {
        let used = |entry: &str| {
            let spec = crate::registry::all()
                .into_iter()
                .find(|s| s.entry == entry)
                .unwrap();
            let m = ModuleBindings::reflect(&spec.source(true)).unwrap();
            let mut v: Vec<(u32, String)> = m
                .entry(entry)
                .unwrap()
                .iter()
                .filter(|(_, b)| b.used)
                .map(|(n, b)| (b.binding, n.clone()))
                .collect();
            v.sort();
            v.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
        };
        assert_eq!(
            used("mm_coop"),
            ["wa", "wb", "scales", "xs", "ys", "p", "xs4"]
        );
        assert_eq!(used("mm_tile"), ["wa", "wb", "scales", "xs", "ys", "p"]);
        assert_eq!(
            used("mm_vec_ids"),
            ["wa", "wb", "scales", "xs", "ys", "p", "xs4", "ids", "nw4"]
        );
        // conv1d_state reads the input and rewrites the state only.
        assert_eq!(used("conv1d_state"), ["conv_x", "conv_st", "cp"]);
        let m = ModuleBindings::reflect(
            &crate::registry::all()
                .into_iter()
                .find(|s| s.entry == "rms_norm")
                .unwrap()
                .source(false),
        )
        .unwrap();
        let np = &m.entry("rms_norm").unwrap()["np"];
        assert_eq!(
            (np.binding, np.used, np.uniform_type.as_deref()),
            (3, true, Some("NormParams"))
        );
    }
}
