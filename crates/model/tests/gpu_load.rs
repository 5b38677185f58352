//! Loading on the GPU streams the checkpoint part by part: peak anonymous host
//! memory stays far below a full copy, a model over the GPU budget is refused
//! before any upload, and a missing adapter choice is a typed error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use qwgpu_model::engine::{Backend, ContextOptions, LoadOptions, Model};
use qwgpu_model::golden::fixtures_dir;
use qwgpu_model::ModelError;

/// `RssAnon` of this process in bytes (Linux), else `None`.
fn rss_anon() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gpu() -> LoadOptions {
    LoadOptions {
        backend: Backend::Gpu,
        ..Default::default()
    }
}

#[test]
fn streaming_load_keeps_peak_anonymous_memory_under_one_gib_plus_the_largest_tensor() {
    let Some(before) = rss_anon() else {
        eprintln!("no /proc/self/status: RssAnon not measurable here");
        return;
    };
    let dir = fixtures_dir().join("moe-bf16-wrapper");
    let ckpt = qwgpu_checkpoint::Checkpoint::open(&dir).unwrap();
    let largest = ckpt
        .names()
        .iter()
        .filter_map(|n| ckpt.get(n))
        .map(|t| t.bytes.len() as u64)
        .max()
        .unwrap();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(r) = rss_anon() {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let model = Model::load(&dir, &gpu()).unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "RssAnon grew by {grew} bytes while loading (largest tensor {largest} bytes) on {}",
        model.backend_name()
    );
    assert!(grew <= (1 << 30) + largest, "RssAnon grew by {grew} bytes");
}

#[test]
fn a_model_over_the_gpu_budget_is_refused_before_upload() {
    let dir = fixtures_dir().join("dense-bf16-text");
    let opts = LoadOptions {
        gpu_memory_budget: Some(1000),
        ..gpu()
    };
    let err = Model::load(&dir, &opts).err().expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Gpu(_)), "{msg}");
    assert!(
        msg.contains("GPU memory budget") && msg.contains("1000"),
        "{msg}"
    );
}

#[test]
fn an_unknown_adapter_is_a_typed_error_naming_the_available_ones() {
    let opts = LoadOptions {
        gpu: ContextOptions {
            adapter: Some("no-such-gpu-xyz".into()),
            ..Default::default()
        },
        ..gpu()
    };
    let err = Model::load(&fixtures_dir().join("dense-bf16-text"), &opts)
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("no-such-gpu-xyz") && err.to_string().contains("available"),
        "{err}"
    );
}
