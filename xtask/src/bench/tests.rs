//! RESULTS.md from a canned result set (no GPU, no Python).

use super::report::{rate, render};
use super::results::*;
use super::weights::CheckpointWeights;

fn canned() -> Results {
    let ckpt = |model: &str, format: &str, per_token: f64, params: f64| Checkpoint {
        model: model.into(),
        format: format.into(),
        weights: CheckpointWeights {
            total_bytes: 18_000_000_000,
            bytes_per_token: per_token,
            matmul_params_per_token: params,
            largest_tensor_bytes: 2_000_000_000,
            tied: false,
        },
    };
    let mut q = Run::new(QWGPU, "9B", BF16);
    q.decode = vec![(512, 150.0), (8192, 120.0)];
    q.prefill = vec![(512, 5000.0), (4096, 9000.0)];
    q.load_s = Some(6.0);
    q.checkpoint_bytes = Some(18_000_000_000);
    q.peak_rss_anon = Some(512 << 20);
    q.profile = vec![("matmul".into(), 6.0, 200), ("gdn".into(), 2.0, 24)];
    let mut vk = Run::new(LLAMA_VULKAN, "9B", BF16);
    vk.decode = vec![(0, 118.0), (8192, 110.0)];
    vk.prefill = vec![(512, 9200.0), (4096, 9500.0)];
    let mut hf = Run::new(HF, "9B", BF16);
    hf.prefill = vec![(4096, 24_000.0)];
    hf.detail = Some("fla importable".into());
    let fp8 = Run::failed(QWGPU, "9B", FP8, "loading: unsupported scale".into());
    let mut cu_q8 = Run::new(LLAMA_CUDA, "9B", Q8_0);
    cu_q8.decode = vec![(0, 196.5)];
    Results {
        date: "2026-11-25 20:00 UTC".into(),
        commit: "abc1234".into(),
        gpu: "NVIDIA H100 80GB HBM3".into(),
        adapter: "NVIDIA H100 80GB HBM3".into(),
        copy_bw_torch: Some(3.0e12),
        copy_bw_qwgpu: Some(2.7e12),
        matmul_flops: Some(8.0e14),
        host_memcpy: Some(20e9),
        decode_contexts: vec![512, 8192],
        prefill_lens: vec![512, 4096],
        decode_steps: 128,
        llama_args: "-p 512,4096 -n 128 -d 0,8192 -r 3".into(),
        checkpoints: vec![
            ckpt("9B", BF16, 16e9, 8e9),
            ckpt("9B", FP8, 8.5e9, 8e9),
            ckpt("9B", "GGUF BF16", 15.875e9, 0.0),
        ],
        runs: vec![q, vk, hf, fp8, cu_q8],
        kernels: vec![KernelBench {
            test: "attention::bench_attention".into(),
            lines: vec!["nh16/nkv4 (9B) decode kv   1024:     10.0 us".into()],
            error: None,
        }],
        notes: vec!["a note".into()],
        errors: vec!["make 35B-A3B: out of disk".into()],
        steps: vec![("make checkpoints".into(), 61.0)],
    }
}

#[test]
fn every_qwgpu_figure_has_its_roofline_and_peer_ratios() {
    let md = render(&canned());
    // Decode roofline 3.0e12 / 16e9 = 187.5 tok/s; 150 / 187.5 = 80 %; 150 / 118 = 1.27×.
    assert!(
        md.contains("| 9B | BF16 (BF16) | decode tok/s, ctx 512 | 150.0 | 187.5 | 80% | 118.0 | 1.27× | — | — | — | — |"),
        "{md}"
    );
    // ctx 8192: llama's own depth-8192 figure.
    assert!(
        md.contains("| decode tok/s, ctx 8192 | 120.0 | 187.5 | 64% | 110.0 | 1.09× |"),
        "{md}"
    );
    // Prefill roofline 8e14 / (2 × 8e9) = 50,000 tok/s; vs HF 9000 / 24000 = 0.38×.
    assert!(
        md.contains("| prefill tok/s, 4096 tokens | 9,000 | 50,000 | 18% | 9,500 | 0.95× | — | — | 24,000 | 0.38× |"),
        "{md}"
    );
    // A failed qwgpu run shows as an error next to the peer's figure.
    assert!(
        md.contains("| 9B | FP8 block (Q8_0) | decode tok/s, ctx 512 | error | 352.9 |"),
        "{md}"
    );
    assert!(md.contains("196.5"), "{md}");
    assert!(
        md.contains("`llama-bench -ngl 99 -fa on -p 512,4096 -n 128 -d 0,8192 -r 3`"),
        "{md}"
    );
    // GGUF rows have bytes only.
    assert!(
        md.contains("| 9B | GGUF BF16 | 18.000 GB | 15.875 GB | — | — |"),
        "{md}"
    );
}

#[test]
fn peers_load_targets_and_errors_are_reported() {
    let md = render(&canned());
    // llama.cpp on its GGUF roofline: 3e12 / 15.875e9 = 189.0; 118 / 189 = 62 %.
    assert!(md.contains("| 9B | BF16 | llama.cpp Vulkan | 118.0 | 110.0 | 9,200 | 9,500 | 15.875 GB | 189.0 | 62% |"), "{md}");
    // Load: 18 GB in 6 s = 3 GB/s = 15 % of a 20 GB/s memcpy; 512 MiB ≤ 1 GiB + 2 GB.
    assert!(
        md.contains("| 9B | BF16 | 6.00 | 18.000 GB | 3.00 | 15% | 512 MiB |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B BF16 decode ≥ 85% of roofline | 80% | not met |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B BF16 decode ≥ 1.35× llama.cpp Vulkan | 1.27× | not met |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B BF16 decode ctx 8192 ≤ 10% slower than ctx 512 | -20.0% | not met |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B BF16 peak RssAnon ≤ 1 GiB + largest tensor | 512 MiB | met |"),
        "{md}"
    );
    assert!(
        md.contains("| 0.8B BF16 decode ≥ 1.2× llama.cpp CUDA | — | not measured |"),
        "{md}"
    );
    assert!(md.contains("| matmul | 6.000 | 75% | 200 |"), "{md}");
    assert!(md.contains("nh16/nkv4 (9B) decode kv   1024"), "{md}");
    assert!(
        md.contains("- qwgpu 9B FP8 block: loading: unsupported scale"),
        "{md}"
    );
    assert!(md.contains("- make 35B-A3B: out of disk"), "{md}");
    assert!(
        md.contains("HF transformers 9B BF16: fla importable"),
        "{md}"
    );
}

#[test]
fn results_round_trip_through_json() {
    let r = canned();
    let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(render(&back), render(&r));
}

#[test]
fn rates_read_like_the_peers_tables() {
    assert_eq!(rate(117.94), "117.9");
    assert_eq!(rate(9547.2), "9,547");
    assert_eq!(rate(1_234_567.0), "1,234,567");
}

#[test]
fn bench_lines_drop_the_test_harness() {
    let text = "running 1 test\nBENCH coop T=4096: 33.7 TFLOP/s\ntest bench ... ok\n\ntest result: ok. 1 passed\n";
    assert_eq!(
        super::bench_lines(text),
        vec!["BENCH coop T=4096: 33.7 TFLOP/s"]
    );
}
