//! Binding names of a module's entry points, from naga's reflection of the
//! WGSL (the parser and analyser wgpu itself runs): launches bind buffers by the
//! names the shader declares, and a binding the entry point does not use is left
//! out, as wgpu's derived layout leaves it out.

use std::collections::HashMap;

/// One `@group(0) @binding(n) var` of a module, as an entry point sees it.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub binding: u32,
    /// Whether the entry point (or a function it calls) reads or writes it.
    pub used: bool,
    /// The struct type's name of a `var<uniform>` (`None` for storage buffers).
    pub uniform_type: Option<String>,
}

/// Group-0 bindings by variable name, per entry point.
#[derive(Debug, Default)]
pub(crate) struct ModuleBindings {
    entries: HashMap<String, HashMap<String, Binding>>,
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
            let mut vars = HashMap::new();
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
                vars.insert(
                    name.clone(),
                    Binding {
                        binding: rb.binding,
                        used: !uses[handle].is_empty(),
                        uniform_type,
                    },
                );
            }
            entries.insert(ep.name.clone(), vars);
        }
        Ok(Self { entries })
    }

    /// The bindings `entry` sees, or `None` if the module has no such entry point.
    pub fn entry(&self, entry: &str) -> Option<&HashMap<String, Binding>> {
        self.entries.get(entry)
    }
}
