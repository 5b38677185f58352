//! Fixtures end to end in a real browser (headless Chromium's WebGPU adapter
//! through `wasm-bindgen-test-runner`): prefill logits and the 16
//! teacher-forced decode steps against HF's goldens at the native GPU
//! column's tolerance, then the same steps sampled greedily on the GPU
//! against HF's greedy choices. The fixture bytes are embedded in the test.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use qwgpu_kernels::{ContextOptions, GpuContext};
use qwgpu_model::golden::{
    compare_logits, Golden, GoldenMeta, DECODE_STEPS, GPU_RELATIVE_TOLERANCE,
};
use qwgpu_model::gpu::GpuModel;
use qwgpu_ops::sampling::SamplingParams;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

mod support;
use support::{log, sleep_ms};

wasm_bindgen_test_configure!(run_in_browser);

struct Fixture {
    name: &'static str,
    config: &'static str,
    model: &'static [u8],
    golden_json: &'static str,
    golden: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            config: include_str!(concat!("../../../tests/fixtures/", $name, "/config.json")),
            model: include_bytes!(concat!(
                "../../../tests/fixtures/",
                $name,
                "/model.safetensors"
            )),
            golden_json: include_str!(concat!("../../../tests/fixtures/", $name, "/golden.json")),
            golden: include_bytes!(concat!(
                "../../../tests/fixtures/",
                $name,
                "/golden.safetensors"
            )),
        }
    };
}

/// One F32 tensor of `golden.safetensors`.
fn logits(st: &safetensors::SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let v = st.tensor(name).expect(name);
    assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
    let values = v
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (v.shape().to_vec(), values)
}

fn golden(f: &Fixture) -> Golden {
    let meta: GoldenMeta = serde_json::from_str(f.golden_json).expect("golden.json");
    let st = safetensors::SafeTensors::deserialize(f.golden).expect("golden.safetensors");
    let (shape, prefill_logits) = logits(&st, "prefill_logits");
    let (_, decode_logits) = logits(&st, "decode_logits");
    let g = Golden {
        dir: f.name.into(),
        meta,
        vocab: shape[1],
        prefill_logits,
        decode_logits,
    };
    g.check().expect("golden shapes");
    g
}

async fn model(f: &Fixture) -> GpuModel {
    let ctx = GpuContext::new_web(&ContextOptions::default())
        .await
        .expect("WebGPU device");
    let packed = qwgpu_web::packed_from_bytes(f.config, f.model).expect("pack");
    GpuModel::from_packed(
        Arc::new(ctx),
        &packed,
        qwgpu_model::engine::DEFAULT_MAX_CHUNK,
        &mut |_| {},
    )
    .expect("upload")
}

async fn check(f: Fixture) {
    let g = golden(&f);
    let m = model(&f).await;
    let mut s = m.new_session().expect("session");
    let prefill = m
        .forward_async(&mut s, &g.meta.prompt_ids, true)
        .await
        .expect("prefill");
    sleep_ms(50).await;
    m.context()
        .check("prefill")
        .expect("no GPU errors in prefill");
    let mut decode = Vec::with_capacity(DECODE_STEPS * g.vocab);
    for &t in &g.meta.generated_ids[..DECODE_STEPS] {
        decode.extend(m.forward_async(&mut s, &[t], true).await.expect("decode"));
    }
    let report = compare_logits(&g, &prefill, &decode, GPU_RELATIVE_TOLERANCE);
    log(&format!("browser {report}"));
    assert!(report.passed, "{report}");

    // Greedy sampling on the GPU picks HF's tokens (near-ties aside).
    let greedy = SamplingParams::greedy();
    let mut s = m.new_session().expect("session");
    let mut next = m
        .forward_sample_async(&mut s, &g.meta.prompt_ids, &greedy)
        .await
        .expect("sampled prefill");
    // The browser reports a pipeline's errors as events, after the readback
    // may have resolved: let them land, then ask.
    sleep_ms(50).await;
    m.context()
        .check("sampling")
        .expect("no GPU errors while sampling");
    for point in 0..=DECODE_STEPS {
        let hf = g.meta.generated_ids[point];
        let near_tie = g.meta.margins[point] < 2.0 * report.tolerance;
        assert!(
            next == hf || near_tie,
            "{name}: point {point}: sampled {next}, HF {hf}",
            name = f.name
        );
        if point < DECODE_STEPS {
            next = m
                .forward_sample_async(&mut s, &[hf], &greedy)
                .await
                .expect("sampled decode");
        }
    }
}

#[wasm_bindgen_test]
async fn dense_bf16_text_matches_hf_in_the_browser() {
    check(fixture!("dense-bf16-text")).await;
}

#[wasm_bindgen_test]
async fn dense_fp8_block_matches_hf_in_the_browser() {
    check(fixture!("dense-fp8-block")).await;
}

#[wasm_bindgen_test]
async fn moe_bf16_text_matches_hf_in_the_browser() {
    check(fixture!("moe-bf16-text")).await;
}

#[wasm_bindgen_test]
async fn moe_fp8_block_matches_hf_in_the_browser() {
    check(fixture!("moe-fp8-block")).await;
}
