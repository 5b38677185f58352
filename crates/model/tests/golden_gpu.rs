//! Every fixture on the GPU backend (lavapipe in CI): prefill and 16 decode-step
//! logits against HF transformers' goldens at [`GPU_RELATIVE_TOLERANCE`], greedy
//! equal to HF where HF's margin exceeds it — on the full-feature device and on
//! the fallback path (no subgroups, no f16, WebGPU's default limits).

use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions};
use qwgpu_model::golden::{check_model, list_fixtures, GPU_RELATIVE_TOLERANCE};

fn run(fallback: bool) {
    let opts = LoadOptions {
        backend: Backend::Gpu,
        gpu: ContextOptions {
            disable_subgroups: fallback,
            disable_f16: fallback,
            webgpu_limits: fallback,
            ..Default::default()
        },
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
                println!("{r}");
                if !r.passed {
                    failures.push(r.to_string());
                }
            }
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixtures failed on the GPU:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gpu_matches_hf_on_every_fixture() {
    run(false);
}

#[test]
fn gpu_fallback_path_matches_hf_on_every_fixture() {
    run(true);
}
