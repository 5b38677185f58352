//! Every kernel's module, in each variant a context builds (subgroup and
//! shared-memory reductions), parses and validates with naga on the CPU, so a
//! WGSL typo fails `cargo test` without any adapter. The list is the crate's
//! kernel specs ([`registry::all`]), not a list kept here; a second test checks
//! that every `@compute` entry point in `shaders/` belongs to a spec.

use std::collections::{BTreeSet, HashSet};

use qwgpu_kernels::registry;
use qwgpu_kernels::spec::{KernelSpec, Needs};

mod support;
use support::spirv::Translator;

const SHADERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");

/// What the module may use: the subgroup reduction and the tensor-core GEMM
/// need subgroups and f16; wgpu grants unpack2x16float (f16 in f32) on every
/// Vulkan/Metal/D3D12 device.
fn capabilities(spec: &KernelSpec, subgroups: bool) -> naga::valid::Capabilities {
    use naga::valid::Capabilities as C;
    let mut caps = C::default() | C::SHADER_FLOAT16_IN_FLOAT32;
    if subgroups || spec.needs == Needs::CooperativeMatrix {
        caps |= C::SUBGROUP | C::SHADER_FLOAT16;
    }
    if spec.needs == Needs::CooperativeMatrix {
        caps |= C::COOPERATIVE_MATRIX;
    }
    caps
}

/// The module variants of `spec`: (files joined by `+`, source, subgroups).
fn variants(spec: &KernelSpec) -> Vec<(String, String, bool)> {
    let sg: &[bool] = if spec.has_reduce() {
        &[true, false]
    } else {
        &[false]
    };
    sg.iter()
        .map(|&subgroups| {
            let files = spec.files(subgroups);
            let name = files.iter().map(|f| f.name).collect::<Vec<_>>().join("+");
            let src = files.iter().map(|f| f.text).collect::<Vec<_>>().join("\n");
            (name, src, subgroups)
        })
        .collect()
}

#[test]
fn every_kernel_module_validates() {
    let specs = registry::all();
    assert!(specs.len() >= 30, "only {} kernel specs", specs.len());
    let mut done = HashSet::new();
    for spec in specs {
        for (name, src, subgroups) in variants(spec) {
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                panic!(
                    "{name}: parse error:\n{diagnostic}",
                    diagnostic = e.emit_to_string(&src)
                )
            });
            let entry = module.entry_points.iter().find(|e| e.name == spec.entry);
            assert!(
                entry.is_some_and(|e| e.stage == naga::ShaderStage::Compute),
                "{name}: no compute entry point `{spec_entry}` (spec `{spec_label}`)",
                spec_entry = spec.entry,
                spec_label = spec.label
            );
            if !done.insert((name.clone(), subgroups)) {
                continue;
            }
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                capabilities(spec, subgroups),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: validation error: {e:?}"));
        }
    }
}

/// `@compute` entry points declared in a WGSL file's text.
fn compute_entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("@compute") {
        rest = &rest[i + "@compute".len()..];
        if let Some(f) = rest.find("fn ") {
            let name: String = rest[f + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn every_entry_point_and_file_has_a_spec() {
    let specs = registry::all();
    let mut covered = BTreeSet::new();
    let mut used_files = BTreeSet::new();
    for spec in &specs {
        for sg in [true, false] {
            for f in spec.files(sg) {
                used_files.insert(f.name.to_string());
                covered.insert((f.name.to_string(), spec.entry.to_string()));
            }
        }
    }
    let mut missing = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(SHADERS).expect("shaders/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        files += 1;
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("readable shader");
        if !used_files.contains(&file) {
            missing.push(format!("{file}: no spec's module includes it"));
        }
        for e in compute_entries(&text) {
            if !covered.contains(&(file.clone(), e.clone())) {
                missing.push(format!("{file}: entry point `{e}` has no spec"));
            }
        }
    }
    assert!(files >= 30, "found only {files} shader files in {SHADERS}");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn entry_scan_finds_entry_points() {
    let text = "@compute @workgroup_size(WG)\nfn a_b1(@builtin(x) i: u32) {}\n\
                fn helper() {}\n@compute @workgroup_size(16, 16)\nfn c(";
    assert_eq!(compute_entries(text), ["a_b1", "c"]);
}

/// Translates every variant of `spec` (with its capabilities) to SPIR-V for
/// every combination of its boolean overrides (at most 6) but `fixed` (left
/// as the module sets them), with the overrides `extra` too. Returns the
/// number of translations.
fn translate_every_switch(spec: &KernelSpec, fixed: &[&str], extra: &[(&str, f64)]) -> usize {
    let mut translated = 0;
    for (name, src, subgroups) in variants(spec) {
        let module = Translator::new(&name, &src, spec.entry, capabilities(spec, subgroups));
        let switches: Vec<String> = module
            .switches()
            .into_iter()
            .filter(|n| !fixed.contains(&n.as_str()))
            .collect();
        assert!(
            switches.len() <= 6,
            "{name}: {n} switches",
            n = switches.len()
        );
        for bits in 0u32..(1 << switches.len()) {
            let constants: Vec<(&str, f64)> = switches
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), f64::from((bits >> i) & 1)))
                .chain(extra.iter().copied())
                .collect();
            module.translate(&constants);
            translated += 1;
        }
    }
    translated
}

/// Every cooperative-matrix kernel translates to SPIR-V on the CPU (what the
/// GPU machine's driver is given; lavapipe cannot create these pipelines) for
/// every combination of its boolean overrides, so a naga SPIR-V writer failure
/// (e.g. an expression used only inside a `coopStore`) fails here rather than
/// on the GPU machine.
#[test]
fn cooperative_matrix_kernels_translate_to_spirv_for_every_switch() {
    let mut translated = 0;
    for spec in registry::all()
        .into_iter()
        .filter(|s| s.needs == Needs::CooperativeMatrix)
    {
        translated += translate_every_switch(spec, &[], &[]);
    }
    assert!(translated >= 8, "only {translated} translations");
}

/// The cooperative-matrix kernels that take 4-bit weights (`mm_coop`,
/// `moe_group_coop`: their `Q4` staging, `moe_grouped_coop_q4.rs`) translate
/// to SPIR-V with `FORMAT` = 5 (Q4, f16 scales) for every combination of their
/// host-set boolean overrides (`Q4` and `LO` follow from the others, as the
/// library leaves them).
#[test]
fn cooperative_matrix_kernels_translate_to_spirv_for_4bit_weights() {
    let mut translated = 0;
    let mut kernels = Vec::new();
    for spec in registry::all()
        .into_iter()
        .filter(|s| matches!(s.entry, "mm_coop" | "moe_group_coop"))
    {
        kernels.push(spec.entry);
        translated += translate_every_switch(spec, &["Q4", "LO"], &[("FORMAT", 5.0)]);
    }
    kernels.sort_unstable();
    assert_eq!(kernels, ["mm_coop", "moe_group_coop"]);
    assert!(translated >= 8, "only {translated} translations");
}

/// The shader files of the tensor-core kernels verified on hardware (the H100:
/// their hardware tests and benches): a spec whose module includes one of them
/// is a verified kernel.
const VERIFIED_FILES: &[&str] = &[
    "coop_peak.wgsl",
    "matmul_coop.wgsl",
    "matmul_coop_f16.wgsl",
    "matmul_coop_f16_split.wgsl",
    "matmul_coop_fast.wgsl",
    "matmul_coop_skinny.wgsl",
    "matmul_coop_skinny_reduce.wgsl",
    "matmul_coop_split.wgsl",
    "matmul_fast_x.wgsl",
    "matmul_w16.wgsl",
    "moe_group_coop.wgsl",
];

/// FNV-1a (64 bits) of `text`: a hash that no Rust release changes.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The composed module text of every verified kernel (spec label, entry
/// point, subgroups), hashed as it was verified (recorded at edbd823; the
/// f16-scratch GEMM's three at 8d0570b, its first hardware run). A
/// constant here may change only together with a hardware run of that
/// kernel (its hardware tests and benches on the GPU machine): shared shader
/// parts are cut from verified files so that their modules stay these bytes.
const VERIFIED_MODULES: &[(&str, &str, bool, u64)] = &[
    ("coop_peak", "peak_direct", false, 0x131d2119124da277),
    ("coop_peak", "peak_staged", false, 0x131d2119124da277),
    ("coop_peak", "peak_v4", false, 0x131d2119124da277),
    ("matmul_coop", "mm_coop", false, 0x7aeda9f2abca05fd),
    ("matmul_coop_f16", "mm_coop_f16", false, 0x56cc0f00aa5d0d72),
    (
        "matmul_coop_f16_split",
        "mm_coop_f16_split",
        false,
        0x098e212d8e8d5d0d,
    ),
    (
        "matmul_coop_fast",
        "mm_coop_fast",
        false,
        0x0766afb8037d474b,
    ),
    (
        "matmul_coop_skinny",
        "mm_coop_skinny",
        false,
        0xb4081a5917a9277a,
    ),
    (
        "matmul_coop_skinny_reduce",
        "mm_skinny_reduce",
        false,
        0x8435e32e6d6de98e,
    ),
    (
        "matmul_coop_split",
        "mm_coop_split",
        false,
        0x70a7e256d2b51c74,
    ),
    ("matmul_fast_x", "fast_x_rows", false, 0x71d69deb9e83dedd),
    ("matmul_w16", "w16_rows", false, 0x1fab1311db86f0dc),
    (
        "matmul_grouped_coop",
        "moe_group_coop",
        false,
        0x7915b4ceaa8d807c,
    ),
];

/// Folding shared text into part files (`shaders/README.md`) leaves every
/// verified kernel's module byte for byte as it ran on hardware.
#[test]
fn verified_kernel_modules_are_unchanged() {
    let mut actual = Vec::new();
    for spec in registry::all() {
        if !spec
            .files(false)
            .iter()
            .any(|f| VERIFIED_FILES.contains(&f.name))
        {
            continue;
        }
        for (_, src, subgroups) in variants(spec) {
            actual.push((spec.label, spec.entry, subgroups, fnv1a(&src)));
        }
    }
    actual.sort_unstable();
    let table: String = actual
        .iter()
        .map(|(label, entry, sg, h)| format!("    ({label:?}, {entry:?}, {sg}, {h:#018x}),\n"))
        .collect();
    let mut expected = VERIFIED_MODULES.to_vec();
    expected.sort_unstable();
    assert!(
        actual == expected,
        "a verified kernel's module text changed (or a verified kernel was added or \
         removed); its hardware run must come with the new table:\n{table}"
    );
}

#[test]
fn fnv1a_matches_its_reference_values() {
    assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
}
