//! Streaming load in a real browser: a model larger than a test-only cap on
//! the bytes a page holds at once loads part by part (ranged reads of picked
//! `File`s, `Blob.slice`), the wasm heap's peak while it loads stays below a
//! bound smaller than the model's weights, and the streamed model computes
//! bit for bit what the same checkpoint packed in memory does. A cap below
//! the largest part is refused before any weight is fetched, naming it.
#![cfg(target_arch = "wasm32")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use qwgpu_kernels::{ContextOptions, GpuContext};
use qwgpu_model::engine::DEFAULT_MAX_CHUNK;
use qwgpu_model::gpu::GpuModel;
use qwgpu_web::load::load;
use qwgpu_web::source::ModelSource;
use qwgpu_web::WebError;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

mod support;

wasm_bindgen_test_configure!(run_in_browser);

/// The wasm heap's live and peak bytes (this test binary's allocator).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            grew(new);
        }
        q
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Starts a new peak at the live bytes now; returns them.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

const CONFIG: &str = include_str!("../../../tests/fixtures/dense-bf16-text/config.json");
const MODEL: &[u8] = include_bytes!("../../../tests/fixtures/dense-bf16-text/model.safetensors");

/// A picked file holding `bytes` (copied into the page's memory, outside the wasm heap).
fn file(name: &str, bytes: &[u8]) -> web_sys::File {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    web_sys::File::new_with_u8_array_sequence(&parts, name).expect("File")
}

/// The fixture's weights' bytes and its largest part's (layer) bytes, from
/// the header, independently of the loader.
fn sizes() -> (u64, u64) {
    let st = safetensors::SafeTensors::deserialize(MODEL).expect("fixture");
    let mut parts: HashMap<String, u64> = HashMap::new();
    for (name, view) in st.tensors() {
        let key = match name.split_once(".layers.") {
            Some((_, rest)) => rest.split('.').next().unwrap_or("").to_string(),
            None => name.clone(),
        };
        *parts.entry(key).or_default() += view.data().len() as u64;
    }
    let total = parts.values().sum();
    (total, parts.values().copied().max().unwrap_or(0))
}

#[wasm_bindgen_test]
async fn a_model_larger_than_the_cap_streams_part_by_part() {
    let ctx = Arc::new(
        GpuContext::new_web(&ContextOptions::default())
            .await
            .expect("WebGPU device"),
    );
    let src = ModelSource::Files(HashMap::from([
        (
            "config.json".to_string(),
            file("config.json", CONFIG.as_bytes()),
        ),
        (
            "model.safetensors".to_string(),
            file("model.safetensors", MODEL),
        ),
    ]));
    let (total, largest) = sizes();
    // Room for the largest part, not for the model.
    let cap = largest + largest / 2;
    assert!(
        cap < total,
        "the cap {cap} must be below the model's {total} bytes"
    );

    // A cap below the largest part: refused up front, naming the part.
    match load(&src, &ctx, DEFAULT_MAX_CHUNK, largest - 1, &mut |_, _| {}).await {
        Err(WebError::TooLarge { part, bytes, limit }) => {
            assert_eq!((bytes, limit), (largest, largest - 1), "{part}");
        }
        Err(e) => panic!("a cap below the largest part: {e}"),
        Ok(_) => panic!("a cap below the largest part was accepted"),
    }

    let base = reset_peak();
    let mut seen = (0, 0);
    let streamed = load(&src, &ctx, DEFAULT_MAX_CHUNK, cap, &mut |d, t| {
        seen = (d, t)
    })
    .await
    .expect("streamed load");
    let peak = PEAK.load(Ordering::Relaxed) - base;
    support::log(&format!(
        "streamed {total} weight bytes (largest part {largest}) under a cap of {cap}: peak heap {peak} bytes"
    ));
    assert_eq!(seen, (total, total), "progress ends at every weight byte");
    // One part's fetched bytes (the weights are uploaded from them, not
    // packed beside them) plus bookkeeping: never the whole model (in-memory
    // loading holds every shard and the packed model, twice the weights).
    let bound = largest + (64 << 10);
    assert!(
        (peak as u64) < bound && (peak as u64) < total,
        "peak heap while streaming {peak} bytes, bound {bound}, weights {total}"
    );

    // The same model packed in memory computes the same logits, bit for bit.
    let packed = qwgpu_web::packed_from_bytes(CONFIG, MODEL).expect("pack");
    let in_memory = GpuModel::from_packed(ctx.clone(), &packed, DEFAULT_MAX_CHUNK, &mut |_| {})
        .expect("upload");
    // One decode step: every weight is read, with the fewest pipelines to
    // compile (SwiftShader compiles them on the CPU).
    let prompt = [5u32];
    let mut logits = Vec::new();
    for m in [&streamed, &in_memory] {
        let mut s = m.new_session().expect("session");
        logits.push(
            m.forward_async(&mut s, &prompt, true)
                .await
                .expect("prefill"),
        );
    }
    let same = logits[0]
        .iter()
        .zip(&logits[1])
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same && logits[0].len() == logits[1].len(),
        "the streamed model's logits differ"
    );
    support::sleep_ms(50).await;
    ctx.check("streaming load").expect("no GPU errors");
}
