//! Test harness for GPU kernels: one shared context per feature variant, so every
//! kernel test runs both with subgroups and f16 (where the adapter has them) and
//! on the fallback path (no subgroups, no f16, WebGPU's default limits).
//!
//! Set `QWGPU_TEST_VARIANTS=full` or `=fallback` to run one of them only.

use std::sync::OnceLock;

use crate::{ContextOptions, GpuContext};

/// A named context for tests: `[Vulkan/llvmpipe full]`.
pub struct TestContext {
    pub name: String,
    pub ctx: GpuContext,
}

static FULL: OnceLock<Result<TestContext, String>> = OnceLock::new();
static FALLBACK: OnceLock<Result<TestContext, String>> = OnceLock::new();

fn open(variant: &str, opts: ContextOptions) -> Result<TestContext, String> {
    let ctx = GpuContext::new(&opts).map_err(|e| e.to_string())?;
    Ok(TestContext {
        name: format!("[{:?}/{} {variant}]", ctx.info.backend, ctx.info.name),
        ctx,
    })
}

/// The contexts every kernel test runs on. Panics (failing the test) when no
/// adapter exists: CI installs lavapipe, so a missing adapter is a setup error.
pub fn contexts() -> Vec<&'static TestContext> {
    let which = std::env::var("QWGPU_TEST_VARIANTS").unwrap_or_default();
    let mut out = Vec::new();
    if which != "fallback" {
        let full = FULL.get_or_init(|| {
            open(
                "full",
                ContextOptions {
                    runtime_checks: Some(true),
                    ..Default::default()
                },
            )
        });
        out.push(
            full.as_ref()
                .unwrap_or_else(|e| panic!("no GPU context: {e}")),
        );
    }
    if which != "full" {
        let fb = FALLBACK.get_or_init(|| {
            open(
                "fallback",
                ContextOptions {
                    disable_subgroups: true,
                    disable_f16: true,
                    webgpu_limits: true,
                    runtime_checks: Some(true),
                    ..Default::default()
                },
            )
        });
        out.push(
            fb.as_ref()
                .unwrap_or_else(|e| panic!("no GPU context: {e}")),
        );
    }
    out
}
