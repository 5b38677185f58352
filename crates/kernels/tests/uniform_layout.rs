//! Every `#[repr(C)]` params struct (declared with `uniform_struct!` and
//! registered in its kernel's spec) has the layout of the WGSL struct it
//! mirrors, as naga lays that struct out: the same non-padding member names in
//! the same order, at the same byte offsets, with the same scalar types, and
//! the same total size. Every uniform an entry point reads must have such a
//! Rust mirror in its spec. The expected layout comes from the WGSL source
//! through naga, not from the Rust side.

use qwgpu_kernels::registry;
use qwgpu_kernels::spec::{KernelSpec, UniformLayout};
use qwgpu_kernels::uniform_struct;

fn is_pad(name: &str) -> bool {
    name.starts_with('_')
}

/// The Rust spelling of a WGSL scalar member type, if it is one.
fn scalar(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<&'static str> {
    match module.types[ty].inner {
        naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
            naga::ScalarKind::Uint => Some("u32"),
            naga::ScalarKind::Sint => Some("i32"),
            naga::ScalarKind::Float => Some("f32"),
            _ => None,
        },
        _ => None,
    }
}

/// Differences between `layout` and the WGSL struct it names in `module`.
fn compare(layout: &UniformLayout, module: &naga::Module) -> Vec<String> {
    let who = format!(
        "{layout_rust} (WGSL `{layout_wgsl}`)",
        layout_rust = layout.rust,
        layout_wgsl = layout.wgsl
    );
    let Some((members, span)) = module.types.iter().find_map(|(_, t)| match &t.inner {
        naga::TypeInner::Struct { members, span } if t.name.as_deref() == Some(layout.wgsl) => {
            Some((members, *span))
        }
        _ => None,
    }) else {
        return vec![format!("{who}: no such WGSL struct")];
    };
    let mut errors = Vec::new();
    let wgsl: Vec<_> = members
        .iter()
        .filter(|m| !m.name.as_deref().is_some_and(is_pad))
        .collect();
    let rust: Vec<_> = layout.fields.iter().filter(|f| !is_pad(f.name)).collect();
    if wgsl.len() != rust.len() {
        errors.push(format!(
            "{who}: {rust_len} fields in Rust, {wgsl_len} members in WGSL",
            rust_len = rust.len(),
            wgsl_len = wgsl.len()
        ));
    }
    for (i, (r, w)) in rust.iter().zip(&wgsl).enumerate() {
        let w_name = w.name.as_deref().unwrap_or("?");
        if r.name != w_name {
            errors.push(format!(
                "{who}: field {i} is `{r_name}` in Rust, `{w_name}` in WGSL",
                r_name = r.name
            ));
        }
        if r.offset != w.offset as usize {
            errors.push(format!(
                "{who}: `{r_name}` at byte {r_offset} in Rust, `{w_name}` at byte {w_offset} in WGSL",
                r_name = r.name,
                r_offset = r.offset,
                w_offset = w.offset
            ));
        }
        let w_ty = scalar(module, w.ty);
        if w_ty != Some(r.ty) {
            errors.push(format!(
                "{who}: `{r_name}` is `{r_ty}` in Rust, `{w_name}` is {w_ty:?} in WGSL",
                r_name = r.name,
                r_ty = r.ty
            ));
        }
    }
    if layout.size != span as usize {
        errors.push(format!(
            "{who}: {layout_size} bytes in Rust, {span} in WGSL",
            layout_size = layout.size
        ));
    }
    errors
}

/// The spec's module (shared-memory variant: the structs do not depend on it),
/// parsed and analysed.
fn module(spec: &KernelSpec) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = spec
        .files(false)
        .iter()
        .map(|f| f.text)
        .collect::<Vec<_>>()
        .join("\n");
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "{spec_label}: {diagnostic}",
            spec_label = spec.label,
            diagnostic = e.emit_to_string(&src)
        )
    });
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::empty(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{spec_label}: {e:?}", spec_label = spec.label));
    (module, info)
}

#[test]
fn every_params_struct_matches_its_wgsl_struct() {
    let mut errors = Vec::new();
    let mut checked = 0;
    for spec in registry::all() {
        let (module, info) = module(spec);
        for layout in spec.uniforms {
            errors.extend(compare(layout, &module));
            checked += 1;
        }
        // Every uniform the entry point reads has a Rust mirror in the spec.
        let index = module
            .entry_points
            .iter()
            .position(|e| e.name == spec.entry)
            .unwrap_or_else(|| {
                panic!(
                    "{spec_label}: no entry point `{spec_entry}`",
                    spec_label = spec.label,
                    spec_entry = spec.entry
                )
            });
        let uses = info.get_entry_point(index);
        for (h, var) in module.global_variables.iter() {
            if var.space != naga::AddressSpace::Uniform || uses[h].is_empty() {
                continue;
            }
            let ty = module.types[var.ty].name.as_deref().unwrap_or("?");
            if !spec.uniforms.iter().any(|l| l.wgsl == ty) {
                errors.push(format!(
                    "{spec_label} (`{spec_entry}`): uniform `{var_name_as_deref_unwrap_or}: {ty}` has no Rust layout in the spec",
                    spec_label = spec.label,
                    spec_entry = spec.entry,
                    var_name_as_deref_unwrap_or = var.name.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    assert!(checked >= 30, "only {checked} uniform layouts checked");
    // Specs sharing a struct report its differences once.
    errors.sort();
    errors.dedup();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// The check itself: a struct that matches passes, and one field reordered,
// added, dropped or retyped on the Rust side fails (as would the same change
// on the WGSL side, which is the other operand of the same comparison).

const WGSL: &str = "struct P { a: u32, b: f32, c: u32, _pad0: u32 }";

uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Same as "P" { a: u32, b: f32, c: u32, _pad: u32 }
}
uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Reordered as "P" { b: f32, a: u32, c: u32, _pad: u32 }
}
uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Added as "P" { a: u32, b: f32, c: u32, d: u32 }
}
uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Dropped as "P" { a: u32, b: f32, _pad: [u32; 2] }
}
uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Retyped as "P" { a: u32, b: u32, c: u32, _pad: u32 }
}
uniform_struct! {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Shorter as "P" { a: u32, b: f32, c: u32 }
}

#[test]
fn the_comparison_catches_each_kind_of_drift() {
    use qwgpu_kernels::spec::Uniform;
    let module = naga::front::wgsl::parse_str(WGSL).expect("test WGSL parses");
    assert_eq!(compare(&Same::LAYOUT, &module), Vec::<String>::new());
    for (what, layout) in [
        ("reordered", Reordered::LAYOUT),
        ("added", Added::LAYOUT),
        ("dropped", Dropped::LAYOUT),
        ("retyped", Retyped::LAYOUT),
        ("shorter", Shorter::LAYOUT),
    ] {
        assert!(!compare(&layout, &module).is_empty(), "{what} field passed");
    }
    // A WGSL member added where Rust has padding.
    let grown = naga::front::wgsl::parse_str("struct P { a: u32, b: f32, c: u32, d: u32 }")
        .expect("test WGSL parses");
    assert!(!compare(&Same::LAYOUT, &grown).is_empty());
}
