//! Every fixture on the GPU backend (lavapipe in CI): prefill and 16 decode-step
//! logits against HF transformers' goldens at [`GPU_RELATIVE_TOLERANCE`], greedy
//! equal to HF where HF's margin exceeds it — in each column of the kernel test
//! matrix (`qwgpu_kernels::testing::Variant`): the full-feature device with
//! checked shader modules, the same with trusted modules and workgroup memory
//! not zeroed (what release builds run), and the fallback path (no subgroups,
//! no f16, WebGPU's default limits). `QWGPU_TEST_VARIANTS` selects columns.

use qwgpu_kernels::testing::{self, Variant};
use qwgpu_model::engine::{Backend, LoadOptions};
use qwgpu_model::golden::{check_model, list_fixtures, GPU_RELATIVE_TOLERANCE};

fn run(variant: Variant) {
    if !testing::variants().contains(&variant) {
        return;
    }
    // Recorded in the coverage table against the variant's shared context
    // (same adapter and options as the model's own); on hardware the full
    // and trusted columns must have what ships (`testing::require_model`).
    assert!(testing::require_model(
        variant.name(),
        &testing::context(variant).ctx
    ));
    let opts = LoadOptions {
        backend: Backend::Gpu,
        gpu: variant.options(),
        ..Default::default()
    };
    let dirs = list_fixtures().expect("fixtures");
    assert!(
        dirs.len() >= 14,
        "expected the 14 committed fixtures, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        match check_model(dir, &opts, GPU_RELATIVE_TOLERANCE) {
            Ok(r) => {
                println!("{variant_name} {r}", variant_name = variant.name());
                if !r.passed {
                    failures.push(r.to_string());
                }
            }
            Err(e) => failures.push(format!("{dir_display}: {e}", dir_display = dir.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{failure_count} fixtures failed on the GPU ({variant_name}):\n{failure_list}",
        failure_count = failures.len(),
        variant_name = variant.name(),
        failure_list = failures.join("\n")
    );
}

#[test]
fn gpu_matches_hf_on_every_fixture() {
    run(Variant::Full);
}

#[test]
fn gpu_trusted_modules_match_hf_on_every_fixture() {
    run(Variant::Trusted);
}

#[test]
fn gpu_fallback_path_matches_hf_on_every_fixture() {
    run(Variant::Fallback);
}
