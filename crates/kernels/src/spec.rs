//! What a kernel is, declared once per kernel next to its host code: the
//! shader files its module concatenates, the entry point, the Rust mirrors of
//! the WGSL uniform structs it reads, and what the device must offer. Launches
//! are built from it ([`GpuContext::launch`](crate::GpuContext::launch)); the
//! naga validation test and the uniform layout test walk every registered spec
//! ([`crate::registry::all`]), so a new kernel is checked by both without a
//! list kept by hand.

use crate::shaders::ShaderSource;

/// One piece of a kernel's module text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A fixed `.wgsl` file.
    File(&'static ShaderSource),
    /// The workgroup reduction: `reduce_subgroup.wgsl` where the context has
    /// subgroups, `reduce_shared.wgsl` otherwise (both define the same functions).
    Reduce,
}

/// Device capabilities a kernel needs beyond WebGPU's baseline (the subgroup
/// variant of [`Part::Reduce`] is implied by the context and not listed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Runs everywhere (within WebGPU's default limits unless its family says otherwise).
    Baseline,
    /// Cooperative matrices, f16 and subgroups (the tensor-core GEMM).
    CooperativeMatrix,
}

/// A compute kernel: module files, entry point, uniforms, needs.
#[derive(Debug)]
pub struct KernelSpec {
    /// Label of its launches and their bind groups (profiles group time by it);
    /// a launch may override it ([`Launch::label`](crate::Launch::label)).
    pub label: &'static str,
    /// The files concatenated into its module, in order.
    pub parts: &'static [Part],
    /// The `@compute` entry point.
    pub entry: &'static str,
    /// The Rust mirror of every uniform struct the entry point reads (checked
    /// against the WGSL struct by `tests/uniform_layout.rs`).
    pub uniforms: &'static [&'static UniformLayout],
    pub needs: Needs,
}

impl KernelSpec {
    /// The files of this kernel's module on a context with (`subgroups`) or
    /// without subgroups.
    pub fn files(&self, subgroups: bool) -> Vec<&'static ShaderSource> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::File(f) => *f,
                Part::Reduce if subgroups => &crate::shaders::REDUCE_SUBGROUP,
                Part::Reduce => &crate::shaders::REDUCE_SHARED,
            })
            .collect()
    }

    /// The text of this kernel's module (its [`files`](Self::files) joined by
    /// newlines) with or without subgroups.
    pub fn source(&self, subgroups: bool) -> String {
        self.files(subgroups)
            .iter()
            .map(|f| f.text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the module differs with and without subgroups.
    pub fn has_reduce(&self) -> bool {
        self.parts.contains(&Part::Reduce)
    }
}

/// One field of a `#[repr(C)]` uniform struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformField {
    pub name: &'static str,
    /// Byte offset (`offset_of!`).
    pub offset: usize,
    /// The Rust type as written (`u32`, `f32`, `[u32; 3]`).
    pub ty: &'static str,
}

/// The layout of a Rust struct that mirrors a WGSL uniform struct. Fields whose
/// name starts with `_` are padding: only the total size covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformLayout {
    pub rust: &'static str,
    /// Name of the WGSL struct it mirrors.
    pub wgsl: &'static str,
    pub size: usize,
    pub fields: &'static [UniformField],
}

/// A Rust struct uploaded as a WGSL uniform: declare it with [`uniform_struct!`](crate::uniform_struct).
pub trait Uniform: bytemuck::Pod {
    const LAYOUT: UniformLayout;
}

/// Declares a `#[repr(C)]` struct mirroring a WGSL uniform struct and
/// implements [`Uniform`] for it (field names, offsets and types recorded with
/// `offset_of!`). `as "Name"` names the WGSL struct. The caller adds the derives
/// (`bytemuck::Pod` and `Zeroable` at least).
#[macro_export]
macro_rules! uniform_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident as $wgsl:literal {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $crate::spec::Uniform for $name {
            const LAYOUT: $crate::spec::UniformLayout = $crate::spec::UniformLayout {
                rust: stringify!($name),
                wgsl: $wgsl,
                size: ::core::mem::size_of::<$name>(),
                fields: &[$($crate::spec::UniformField {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    ty: stringify!($ty),
                }),*],
            };
        }
    };
}
