//! Pipelines keyed by (shader files, entry point, override constants), built once,
//! inside error scopes so a bad shader is a typed error naming the kernel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::reflect::{EntryBindings, ModuleBindings};
use crate::shaders::ShaderSource;
use crate::{GpuContext, KernelError};

/// What a pipeline is made of. Variants (subgroups or not, f16 or not) are
/// different file lists; sizes are override constants.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineKey {
    pub parts: Vec<&'static ShaderSource>,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
}

impl PipelineKey {
    pub fn new(parts: &[&'static ShaderSource], entry: &'static str) -> Self {
        Self {
            parts: parts.to_vec(),
            entry,
            constants: Vec::new(),
        }
    }

    /// Sets a WGSL `override` constant.
    pub fn constant(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into()));
        self
    }

    /// The module's name: its files joined by `+`.
    fn module_name(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                s.push('+');
            }
            s.push_str(p.name);
        }
        s
    }

    fn id(&self) -> String {
        use std::fmt::Write as _;
        let mut s = self.module_name();
        s.push(':');
        s.push_str(self.entry);
        for (n, v) in &self.constants {
            // Into the one string: no temporary per constant.
            let _ = write!(s, ",{n}={v}");
        }
        s
    }

    /// A hash of the key (file names, entry, constants by their bits): the
    /// launch cache's index, computed without formatting the constants.
    fn hash64(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in &self.parts {
            p.name.hash(&mut h);
        }
        self.entry.hash(&mut h);
        for (n, v) in &self.constants {
            n.hash(&mut h);
            v.to_bits().hash(&mut h);
        }
        h.finish()
    }

    /// The concatenated module text.
    pub fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    bindings: Mutex<HashMap<String, Arc<ModuleBindings>>>,
    /// What a launch needs of a key: the pipeline and its entry point's
    /// bindings (one lookup per recorded launch), by the key's hash, each
    /// with its key (compared on lookup, so a collision is only a miss).
    launches: Mutex<HashMap<u64, Vec<(PipelineKey, LaunchParts)>>>,
}

/// A pipeline and the group-0 bindings of its entry point.
pub(crate) type LaunchParts = (Arc<wgpu::ComputePipeline>, Arc<EntryBindings>);

impl GpuContext {
    /// The compute pipeline for `key`, compiled on first use and cached.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>, KernelError> {
        let id = key.id();
        if let Some(p) = self
            .pipelines
            .pipelines
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        {
            return Ok(p);
        }
        let module = self.module(key)?;
        #[cfg(not(target_arch = "wasm32"))]
        self.check_workgroup_storage(key)?;
        let label = id.clone();
        let fail = |e: KernelError| KernelError::Compile {
            shader: key.module_name(),
            entry: key.entry.to_string(),
            detail: e.to_string(),
        };
        let pipeline = self
            .scoped("pipeline creation", || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(&label),
                        layout: None,
                        module: &module,
                        entry_point: Some(key.entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &key.constants,
                            // Every kernel writes workgroup memory before reading it.
                            zero_initialize_workgroup_memory: self.runtime_checks,
                        },
                        cache: self.disk_cache.as_ref().map(|c| &c.cache),
                    })
            })
            .map_err(fail)?;
        let pipeline = Arc::new(pipeline);
        if let Ok(mut m) = self.pipelines.pipelines.lock() {
            m.insert(id, pipeline.clone());
        }
        Ok(pipeline)
    }

    /// Refuses `key` when its workgroup storage exceeds the device's limit
    /// where the device runs WebGPU's default limits (the `fallback` column,
    /// `ContextOptions::webgpu_limits`): natively wgpu builds such a pipeline
    /// (a browser refuses it), so a kernel past WebGPU's limits would pass
    /// that column and fail only in a page. Other contexts are left to the
    /// driver (lavapipe runs the cooperative-matrix emulations' 38–48 KiB
    /// past its 32 KiB limit).
    #[cfg(not(target_arch = "wasm32"))]
    fn check_workgroup_storage(&self, key: &PipelineKey) -> Result<(), KernelError> {
        let webgpu = wgpu::Limits::default().max_compute_workgroup_storage_size;
        if self.limits.max_compute_workgroup_storage_size > webgpu {
            return Ok(());
        }
        let fail = |detail: String| KernelError::Compile {
            shader: key.module_name(),
            entry: key.entry.to_string(),
            detail,
        };
        let bytes = self
            .module_bindings(key)?
            .workgroup_bytes(key.entry, &key.constants)
            .map_err(fail)?;
        let limit = self.limits.max_compute_workgroup_storage_size;
        if bytes > limit {
            return Err(fail(format!(
                "{bytes} bytes of workgroup storage, more than the device's limit of {limit}"
            )));
        }
        Ok(())
    }

    /// The pipeline of `key` and its entry point's bindings, from one
    /// lookup once both are known (launches are recorded every prefill step).
    pub(crate) fn launch_parts(&self, key: &PipelineKey) -> Result<LaunchParts, KernelError> {
        let hash = key.hash64();
        let hit = self.pipelines.launches.lock().ok().and_then(|m| {
            m.get(&hash)?
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, parts)| parts.clone())
        });
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let pipeline = self.pipeline(key)?;
        let module = self.module_bindings(key)?;
        let entry = module
            .entry(key.entry)
            .ok_or_else(|| KernelError::Compile {
                shader: key.module_name(),
                entry: key.entry.to_string(),
                detail: "the module has no such entry point".into(),
            })?
            .clone();
        let parts = (pipeline, entry);
        if let Ok(mut m) = self.pipelines.launches.lock() {
            m.entry(hash)
                .or_default()
                .push((key.clone(), parts.clone()));
        }
        Ok(parts)
    }

    /// The group-0 bindings of `key`'s module by name (naga reflection, once per module).
    pub(crate) fn module_bindings(
        &self,
        key: &PipelineKey,
    ) -> Result<Arc<ModuleBindings>, KernelError> {
        let name = key.module_name();
        if let Some(b) = self
            .pipelines
            .bindings
            .lock()
            .ok()
            .and_then(|m| m.get(&name).cloned())
        {
            return Ok(b);
        }
        let b = Arc::new(ModuleBindings::reflect(&key.source()).map_err(|detail| {
            KernelError::Compile {
                shader: name.clone(),
                entry: key.entry.to_string(),
                detail,
            }
        })?);
        if let Ok(mut m) = self.pipelines.bindings.lock() {
            m.insert(name, b.clone());
        }
        Ok(b)
    }

    fn module(&self, key: &PipelineKey) -> Result<Arc<wgpu::ShaderModule>, KernelError> {
        let name = key.module_name();
        if let Some(m) = self
            .pipelines
            .modules
            .lock()
            .ok()
            .and_then(|m| m.get(&name).cloned())
        {
            return Ok(m);
        }
        let source = key.source();
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = self
            .scoped("shader compilation", || {
                if self.runtime_checks {
                    self.device.create_shader_module(desc)
                } else {
                    // SAFETY: every kernel bounds its indices by the sizes it is given and
                    // its loops by those sizes; tests run the checked modules.
                    unsafe {
                        self.device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                }
            })
            .map_err(|e| KernelError::Compile {
                shader: name.clone(),
                entry: key.entry.to_string(),
                detail: e.to_string(),
            })?;
        let module = Arc::new(module);
        if let Ok(mut m) = self.pipelines.modules.lock() {
            m.insert(name, module.clone());
        }
        Ok(module)
    }

    /// A bind group of group 0 with explicit binding numbers (for entry
    /// points whose bindings have gaps).
    pub fn bind_at(
        &self,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        buffers: &[(u32, wgpu::BindingResource<'_>)],
    ) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: *i,
                resource: r.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &layout,
            entries: &entries,
        })
    }

    /// A bind group for `pipeline`'s group 0 with `buffers` at bindings 0, 1, 2, …
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let numbered: Vec<(u32, wgpu::BindingResource<'_>)> = buffers
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r.clone()))
            .collect();
        self.bind_at(pipeline, label, &numbered)
    }
}
