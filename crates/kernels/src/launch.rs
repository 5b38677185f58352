//! The launch builder: a [`KernelSpec`] plus this launch's override constants,
//! buffers bound by the names the WGSL declares, uniforms and grid, recorded
//! into a [`Dispatch`] (pipeline from the cache, bind group made once).
//!
//! ```no_run
//! use qwgpu_kernels::spec::{KernelSpec, Needs, Part, Uniform};
//! use qwgpu_kernels::{shaders, uniform_struct, GpuContext};
//!
//! uniform_struct! {
//!     /// Mirrors `struct CopyParams` in `shaders/copy.wgsl`.
//!     #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//!     struct CopyParams as "CopyParams" { src_off: u32, dst_off: u32, n: u32, _pad: u32 }
//! }
//!
//! static COPY: KernelSpec = KernelSpec {
//!     label: "copy",
//!     parts: &[Part::File(&shaders::COPY)],
//!     entry: "copy_words",
//!     uniforms: &[&CopyParams::LAYOUT],
//!     needs: Needs::Baseline,
//! };
//!
//! let ctx = GpuContext::new(&Default::default())?;
//! let src = ctx.upload("src", &[1u32, 2, 3, 4])?;
//! let dst = ctx.storage("dst", 16)?;
//! let launch = ctx
//!     .launch(&COPY)
//!     .constant("WG", 64u32)
//!     .bind("src", &src)
//!     .bind("dst", &dst)
//!     .params(&CopyParams { src_off: 0, dst_off: 0, n: 4, _pad: 0 })
//!     .grid([1, 1, 1])
//!     .record()?;
//! ctx.run("copy", &[&launch])?;
//! assert_eq!(ctx.read_u32(&dst, 0, 4)?, vec![1, 2, 3, 4]);
//! # Ok::<(), qwgpu_kernels::KernelError>(())
//! ```
//!
//! Binding rules (checked when the launch is recorded, typed errors naming
//! the kernel): every name must be a group-0 variable of the module; one the
//! entry point does not use is left out (wgpu's derived layout leaves it out
//! too); every variable it uses must be bound; every uniform it reads must be
//! one of the spec's [`KernelSpec::uniforms`], so the layout test covers it.

use crate::spec::{KernelSpec, Uniform};
use crate::{Dispatch, GpuContext, KernelError, PipelineKey};

/// A launch being described; [`Launch::record`] makes the [`Dispatch`].
#[must_use = "a launch does nothing until it is recorded"]
pub struct Launch<'a> {
    ctx: &'a GpuContext,
    spec: &'static KernelSpec,
    label: &'static str,
    constants: Vec<(&'static str, f64)>,
    buffers: Vec<BufferBinding<'a>>,
    /// Uniform buffers by WGSL struct name: made by [`Launch::params`] or shared.
    params: Vec<(&'static str, Param<'a>)>,
    groups: [u32; 3],
}

/// A buffer bound by variable name, whole or a byte range `(offset, size)`.
type BufferBinding<'a> = (&'static str, &'a wgpu::Buffer, Option<(u64, u64)>);

enum Param<'a> {
    Owned(wgpu::Buffer),
    Shared(&'a wgpu::Buffer),
}

impl GpuContext {
    /// Starts a launch of `spec` (grid 1 × 1 × 1 until [`Launch::grid`]).
    pub fn launch(&self, spec: &'static KernelSpec) -> Launch<'_> {
        Launch {
            ctx: self,
            spec,
            label: spec.label,
            constants: Vec::new(),
            buffers: Vec::new(),
            params: Vec::new(),
            groups: [1, 1, 1],
        }
    }
}

impl<'a> Launch<'a> {
    /// Overrides the spec's label for this launch (profiles group time by label).
    pub fn label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    /// Sets a WGSL `override` constant (part of the pipeline's cache key).
    pub fn constant(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into()));
        self
    }

    /// Binds `buffer` (whole) to the module's variable `name`.
    pub fn bind(mut self, name: &'static str, buffer: &'a wgpu::Buffer) -> Self {
        self.buffers.push((name, buffer, None));
        self
    }

    /// Binds bytes `offset .. offset + size` of `buffer` to the variable
    /// `name` (e.g. one session's slot of a pooled state buffer). The offset
    /// must be a multiple of the device's `min_storage_buffer_offset_alignment`
    /// and the size of 4 (checked when the launch is recorded).
    pub fn bind_range(
        mut self,
        name: &'static str,
        buffer: &'a wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Self {
        self.buffers.push((name, buffer, Some((offset, size))));
        self
    }

    /// Uploads `value` as a uniform buffer of its own, bound to the variable of
    /// its WGSL struct type.
    pub fn params<T: Uniform>(mut self, value: &T) -> Self {
        let buffer = self.ctx.uniform(T::LAYOUT.rust, value);
        self.params.push((T::LAYOUT.wgsl, Param::Owned(buffer)));
        self
    }

    /// Binds `buffer`, a uniform holding a `T` shared by several launches, to
    /// the variable of `T`'s WGSL struct type.
    pub fn params_buffer<T: Uniform>(mut self, buffer: &'a wgpu::Buffer) -> Self {
        self.params.push((T::LAYOUT.wgsl, Param::Shared(buffer)));
        self
    }

    /// Workgroups along x, y, z (a launch with a zero is recorded but skipped).
    pub fn grid(mut self, groups: [u32; 3]) -> Self {
        self.groups = groups;
        self
    }

    /// The pipeline key of this launch on this context.
    pub fn key(&self) -> PipelineKey {
        PipelineKey {
            parts: self.spec.files(self.ctx.caps.subgroups),
            entry: self.spec.entry,
            constants: self.constants.clone(),
        }
    }

    /// Compiles (or finds) the pipeline, resolves the bindings and makes the bind group.
    ///
    /// Prefill steps record every launch anew, so this does one cache lookup
    /// (`GpuContext::launch_parts`) and tracks bound variables in a bit set
    /// of binding numbers rather than a hashed set of names.
    pub fn record(mut self) -> Result<Dispatch, KernelError> {
        let key = PipelineKey {
            parts: self.spec.files(self.ctx.caps.subgroups),
            entry: self.spec.entry,
            constants: std::mem::take(&mut self.constants),
        };
        let (pipeline, vars) = self.ctx.launch_parts(&key)?;
        let entry = self.spec.entry;
        let kernel = self.label;
        let err = |detail: String| KernelError::Arguments { kernel, detail };

        let mut entries: Vec<(u32, wgpu::BindingResource<'_>)> =
            Vec::with_capacity(self.buffers.len() + self.params.len());
        // Binding numbers of the used variables bound so far (two variables of
        // one module may share a number when no entry point uses both: the
        // vec4 and scalar views of one buffer).
        let mut bound = Bound::default();
        let align = self.ctx.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        for &(name, buffer, range) in &self.buffers {
            let b = vars
                .get(name)
                .ok_or_else(|| err(format!("entry `{entry}` has no binding `{name}`")))?;
            let resource = match range {
                None => buffer.as_entire_binding(),
                Some((offset, size)) => {
                    let end = offset.saturating_add(size);
                    if !offset.is_multiple_of(align)
                        || size == 0
                        || !size.is_multiple_of(4)
                        || end > buffer.size()
                    {
                        return Err(err(format!(
                            "`{name}`: bytes {offset}..{end} of a {buffer_size}-byte buffer \
                             (offset must be a multiple of {align}, size a non-zero multiple of 4)",
                            buffer_size = buffer.size()
                        )));
                    }
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset,
                        size: std::num::NonZeroU64::new(size),
                    })
                }
            };
            if b.used {
                entries.push((b.binding, resource));
                bound.insert(b.binding);
            }
        }
        for (ty, param) in &self.params {
            let mut of_type = vars
                .iter()
                .filter(|(_, b)| b.uniform_type.as_deref() == Some(*ty));
            let b = match (of_type.next(), of_type.next()) {
                (Some((_, b)), None) => b,
                (None, _) => {
                    return Err(err(format!(
                        "entry `{entry}` has no uniform of type `{ty}`"
                    )))
                }
                (Some(_), Some(_)) => {
                    return Err(err(format!(
                        "entry `{entry}` has several uniforms of type `{ty}`: bind it by name"
                    )))
                }
            };
            let buffer = match param {
                Param::Owned(b) => b,
                Param::Shared(b) => b,
            };
            if b.used {
                entries.push((b.binding, buffer.as_entire_binding()));
                bound.insert(b.binding);
            }
        }
        let mut missing: Vec<&str> = Vec::new();
        for (name, b) in vars.iter().filter(|(_, b)| b.used) {
            if !bound.contains(b.binding) {
                missing.push(name);
            }
            if let Some(ty) = &b.uniform_type {
                if !self.spec.uniforms.iter().any(|l| l.wgsl == ty) {
                    return Err(err(format!(
                        "uniform `{name}: {ty}` of entry `{entry}` has no Rust layout in its spec"
                    )));
                }
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(err(format!(
                "entry `{entry}` reads {missing_join} that the launch does not bind",
                missing_join = missing.join(", ")
            )));
        }
        let bind = self.ctx.bind_at(&pipeline, self.label, &entries);
        Ok(Dispatch {
            label: self.label,
            pipeline,
            bind,
            groups: self.groups,
        })
    }
}

/// A set of binding numbers: a bit per number below 64, a list above (no
/// kernel has one, but a binding number is the shader's to choose).
#[derive(Default)]
struct Bound {
    low: u64,
    high: Vec<u32>,
}

impl Bound {
    fn insert(&mut self, binding: u32) {
        match binding {
            0..64 => self.low |= 1 << binding,
            _ => self.high.push(binding),
        }
    }

    fn contains(&self, binding: u32) -> bool {
        match binding {
            0..64 => self.low & (1 << binding) != 0,
            _ => self.high.contains(&binding),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::shaders;
    use crate::spec::{KernelSpec, Needs, Part, Uniform};
    use crate::{testing, KernelError};

    crate::uniform_struct! {
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct CopyParams as "CopyParams" { src_off: u32, dst_off: u32, n: u32, _pad: u32 }
    }

    const COPY_SPEC: KernelSpec = KernelSpec {
        label: "test copy",
        parts: &[Part::File(&shaders::COPY)],
        entry: "copy_words",
        uniforms: &[&CopyParams::LAYOUT],
        needs: Needs::Baseline,
    };
    static COPY: KernelSpec = COPY_SPEC;
    /// The same kernel with its uniform's Rust mirror left out of the spec.
    static UNREGISTERED: KernelSpec = KernelSpec {
        uniforms: &[],
        ..COPY_SPEC
    };

    fn detail(r: Result<crate::Dispatch, KernelError>) -> String {
        match r {
            Err(KernelError::Arguments { kernel, detail }) => {
                assert_eq!(kernel, "test copy");
                detail
            }
            Err(e) => panic!("expected an Arguments error, got {e}"),
            Ok(_) => panic!("expected an Arguments error, got a launch"),
        }
    }

    #[test]
    fn launches_bind_by_name_and_name_what_is_wrong() {
        for t in testing::contexts() {
            let ctx = &t.ctx;
            let src = ctx.upload("src", &[5u32, 6, 7, 8]).unwrap();
            let dst = ctx.upload("dst", &[0u32; 4]).unwrap();
            let p = CopyParams {
                src_off: 1,
                dst_off: 0,
                n: 3,
                _pad: 0,
            };
            let ok = ctx
                .launch(&COPY)
                .bind("src", &src)
                .bind("dst", &dst)
                .params(&p)
                .record()
                .unwrap();
            assert_eq!(ok.label, "test copy");
            ctx.run("launch test", &[&ok]).unwrap();
            assert_eq!(
                ctx.read_u32(&dst, 0, 4).unwrap(),
                [6, 7, 8, 0],
                "{}",
                t.name
            );

            let missing = ctx.launch(&COPY).bind("src", &src).params(&p).record();
            assert!(detail(missing).contains("dst"), "{}", t.name);
            let unknown = ctx
                .launch(&COPY)
                .bind("src", &src)
                .bind("dts", &dst)
                .params(&p)
                .record();
            assert!(detail(unknown).contains("no binding `dts`"), "{}", t.name);
            let unregistered = ctx
                .launch(&UNREGISTERED)
                .label("test copy")
                .bind("src", &src)
                .bind("dst", &dst)
                .params(&p)
                .record();
            assert!(
                detail(unregistered).contains("no Rust layout"),
                "{}",
                t.name
            );
        }
    }

    /// Two variables of one module share binding 0 (the vec4 and scalar views
    /// of `moe_combine`'s expert outputs): binding the one the entry point does
    /// not use leaves the used one unbound, and the error names it.
    #[test]
    fn a_variable_sharing_a_binding_number_does_not_stand_in_for_the_used_one() {
        let t = testing::contexts()[0];
        let spec = crate::registry::all()
            .into_iter()
            .find(|s| s.entry == "moe_combine_vec4")
            .unwrap();
        // A buffer per binding and a real uniform: the shared context must
        // see no validation error from the launch that is made.
        let buf = |label| t.ctx.storage(label, 1024).unwrap();
        let (xo, cw, so, gl, h) = (buf("xo"), buf("cw"), buf("so"), buf("gl"), buf("h"));
        let cp = t.ctx.uniform("cp", &[0u32; 4]);
        let launch = |first: &'static str| {
            t.ctx
                .launch(spec)
                .constant("WG", 64u32)
                .bind(first, &xo)
                .bind("cw", &cw)
                .bind("so4", &so)
                .bind("gl", &gl)
                .bind("h4", &h)
                .bind("cp", &cp)
                .record()
        };
        let err = match launch("xo1") {
            Err(KernelError::Arguments { detail, .. }) => detail,
            Err(e) => panic!("expected an Arguments error, got {e}"),
            Ok(_) => panic!("expected an Arguments error, got a launch"),
        };
        assert!(
            err.contains("reads xo4 that the launch does not bind"),
            "{err}"
        );
        assert!(launch("xo4").is_ok());
    }

    #[test]
    fn bound_sets_hold_low_and_high_binding_numbers() {
        let mut b = super::Bound::default();
        for n in [0, 5, 63, 64, 1000] {
            assert!(!b.contains(n));
            b.insert(n);
            assert!(b.contains(n));
        }
        assert!(!b.contains(1) && !b.contains(65));
    }
}
