//! `--cache-mem` budgets what the prefix cache really holds: the process
//! grows by no more than the bytes each entry is charged, on the CPU and on
//! the GPU backend (lavapipe in CI, where GPU buffers are host memory, so
//! their bookkeeping and rounding show in the resident size). Its own test
//! binary: other tests' allocations would blur the resident size.

use qwgpu_model::engine::{Backend, LoadOptions, Model};
use qwgpu_serve::prefix_cache::{entry_bytes, PrefixCache};

mod support;

/// Resident bytes of this process (Linux: `/proc/self/statm`, in pages).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident field")
        .parse()
        .expect("pages");
    pages * 4096
}

/// Resident growth per cached entry of `position` tokens, and its charge.
fn per_entry(backend: Backend, position: usize) -> (u64, u64) {
    let model = Model::load(
        &support::fixture(),
        &LoadOptions {
            backend,
            ..Default::default()
        },
    )
    .expect("load");
    let gpu = model.is_gpu();
    let charge = entry_bytes(model.config(), position, gpu);
    let mut session = model.new_session().expect("session");
    let prompt: Vec<u32> = (10..10 + position as u32).collect();
    model.forward(&mut session, &prompt).expect("prefill");
    let mut cache = PrefixCache::new(u64::MAX);
    let mut insert = |i: u32| {
        let mut ids = prompt.clone();
        ids[0] = 1000 + i; // distinct entries of the same length
        let snap = model.snapshot(&session).expect("snapshot");
        cache.insert(ids, snap, charge);
    };
    // Warm the allocators up, then measure many entries.
    for i in 0..100 {
        insert(i);
    }
    let n = 1500u64;
    let before = resident();
    for i in 0..n as u32 {
        insert(100 + i);
    }
    let grown = resident().saturating_sub(before) / n;
    assert_eq!(cache.bytes(), charge * (n + 100));
    (grown, charge)
}

#[test]
fn cached_entries_are_charged_what_they_hold() {
    let (grown, charge) = per_entry(Backend::Cpu, 15);
    assert!(
        grown <= charge,
        "CPU: {grown} B per entry held, {charge} B charged"
    );
    assert!(
        2 * grown >= charge,
        "CPU: {grown} B held, {charge} B charged: far too much"
    );
    support::require_gpu();
    let (grown, charge) = per_entry(Backend::Gpu, 15);
    assert!(
        grown <= charge,
        "GPU: {grown} B per entry held, {charge} B charged"
    );
}
