//! The kernel tests that matter on the web adapter, in a real browser
//! (headless Chromium's WebGPU adapter through `wasm-bindgen-test-runner`):
//! matmul in BF16 / F16 / F32 and FP8 with every scale scheme, 4-bit
//! weights, GDN chunked prefill and decode, attention prefill and decode,
//! RMSNorm and sampling, each against the CPU reference. The cases are the
//! native suites' own (`qwgpu_kernels::testing::cases`), awaited here instead
//! of blocked on; the shapes are a subset of the native suites' (SwiftShader
//! compiles and runs every pipeline on the CPU, and CI's time is bounded),
//! chosen to reach each kernel path: the vector GEMV (T = 1), small-T
//! (2..16) and the tiled GEMM (T > 16).
#![cfg(target_arch = "wasm32")]

use qwgpu_kernels::gdn::RecurrentLaunch;
use qwgpu_kernels::testing::cases::{attention, gdn, int4, matmul, norm, sample};
use qwgpu_kernels::testing::{TestContext, Variant};
use qwgpu_kernels::{ContextOptions, GpuContext};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

mod support;

wasm_bindgen_test_configure!(run_in_browser);

/// The page's adapter with checked shader modules, in the fallback column
/// (the browser has no f16 and wgpu cannot ask it for subgroups).
async fn browser() -> TestContext {
    STARTED.with(|s| s.set(js_sys::Date::now()));
    let opts = ContextOptions {
        runtime_checks: Some(true),
        ..Default::default()
    };
    let ctx = GpuContext::new_web(&opts).await.expect("WebGPU device");
    TestContext {
        name: format!("[browser/{adapter} web]", adapter = ctx.info.name),
        variant: Variant::Fallback,
        ctx,
    }
}

thread_local! {
    /// When the running test opened its context (ms since the epoch).
    static STARTED: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// No GPU error was raised along the way (the browser reports them as
/// events, which the context collects once they land); logs the test's time.
async fn no_gpu_errors(t: &TestContext, what: &str) {
    support::sleep_ms(50).await;
    t.ctx
        .check(what)
        .unwrap_or_else(|e| panic!("{name} {what}: {e}", name = t.name));
    let seconds = (js_sys::Date::now() - STARTED.with(|s| s.get())) / 1e3;
    support::log(&format!("{name} {what}: {seconds:.1} s", name = t.name));
}

#[wasm_bindgen_test]
async fn matmul_every_format_and_scale_scheme_in_the_browser() {
    let t = browser().await;
    // T = 1, 3 and 70: the GEMV, small-T and tile paths; columns that are
    // no multiple of 4. Each format once (SwiftShader compiles every
    // pipeline on the CPU); the native suites run them all.
    matmul::each_format_and_scheme_once(&t, 0x5eed_0001, (66, 13), &[1, 3, 70]).await;
    no_gpu_errors(&t, "matmul").await;
}

#[wasm_bindgen_test]
async fn int4_matmul_in_the_browser() {
    let t = browser().await;
    // Groups of 20 (a scale lookup per 4 columns), both formats, every
    // epilogue.
    int4::every_path(&t, 0x5eed_4401, &[int4::SHAPES[5]], &[1, 3, 70]).await;
    no_gpu_errors(&t, "int4 matmul").await;
}

#[wasm_bindgen_test]
async fn gdn_chunked_prefill_and_decode_in_the_browser() {
    let t = browser().await;
    // The fixtures' dims across a chunk boundary (chunked and recurrent
    // prefill); decode steps at Qwen3.5's head width 128.
    gdn::run_case(&t, &gdn::dims(2, 4, 16, 16), 65, 100).await;
    gdn::run_decode_steps(
        &t,
        &gdn::dims(1, 2, 128, 128),
        &[1, 2, 1],
        606,
        RecurrentLaunch::Auto,
    )
    .await;
    no_gpu_errors(&t, "gdn").await;
}

#[wasm_bindgen_test]
async fn attention_prefill_and_decode_in_the_browser() {
    let t = browser().await;
    let all = attention::call_sequences();
    // The fixtures' geometry in five pages; head width 256 in two pages.
    let some = [all[1].clone(), all[8].clone()];
    attention::sequences(&t, &some).await;
    no_gpu_errors(&t, "attention").await;
}

#[wasm_bindgen_test]
async fn rms_norm_in_the_browser() {
    let t = browser().await;
    norm::awkward_sizes_and_offsets(&t, &norm::SHAPES).await;
    no_gpu_errors(&t, "rms_norm").await;
}

#[wasm_bindgen_test]
async fn sampling_in_the_browser() {
    let t = browser().await;
    sample::greedy_argmax(&t, &[7, 50000]).await;
    sample::host_rule(&t, &[1000]).await;
    no_gpu_errors(&t, "sampling").await;
}
