//! Every shader module variant parses and validates with naga on the CPU, so a
//! WGSL typo fails `cargo test` without any adapter.

use qwgpu_kernels::shaders;

fn validate(name: &str, src: &str, caps: naga::valid::Capabilities) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: parse error:\n{}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation error: {e:?}"));
}

#[test]
fn every_module_variant_validates() {
    let sg = naga::valid::Capabilities::SUBGROUP | naga::valid::Capabilities::SHADER_FLOAT16;
    for (parts, caps) in shaders::modules() {
        let name = parts.iter().map(|p| p.name).collect::<Vec<_>>().join("+");
        let src = parts.iter().map(|p| p.text).collect::<Vec<_>>().join("\n");
        // wgpu grants unpack2x16float (f16 in f32) on every Vulkan/Metal/D3D12 device.
        let base = naga::valid::Capabilities::default()
            | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let mut caps = if caps { sg | base } else { base };
        // The tensor-core GEMM (matmul_coop.wgsl) also needs cooperative matrices.
        if name.contains("matmul_coop") {
            caps |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
        }
        validate(&name, &src, caps);
    }
}
