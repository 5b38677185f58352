//! RESULTS.md from a canned result set (no GPU, no Python).

use super::batched::{batched_bench_run, parse_batched_bench, parse_qwgpu_sessions, BatchedRun};
use super::coop::parse_coop_peak;
use super::report::{moe_rows, rate, render};
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
            head_bytes: 0,
        },
    };
    let mut q = Run::new(QWGPU, "9B", BF16);
    q.decode = vec![(512, 150.0), (8192, 120.0)];
    q.prefill = vec![(512, 5000.0), (4096, 9000.0)];
    q.load_s = Some(6.0);
    q.device_open_s = Some(0.5);
    q.weights_s = Some(4.5);
    q.host_copy_s = Some(3.0);
    q.gpu_wait_s = Some(1.25);
    q.slots_s = Some(0.05);
    q.buffers_s = Some(0.1);
    q.sources_s = Some(0.02);
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
        gemv: None,
        moe_layers: None,
        notes: vec!["a note".into()],
        errors: vec!["make 35B-A3B: out of disk".into()],
        steps: vec![("make checkpoints".into(), 61.0)],
        ..Default::default()
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
    // Load: 18 GB in 6 s = 3 GB/s = 15 % of a 20 GB/s memcpy, the weights
    // streamed in 4.5 s of it (4 GB/s); 512 MiB ≤ 1 GiB + 2 GB. Of the
    // 4.5 s: 3 + 1.25 + 0.05 + 0.1 + 0.02, the loader's walk 0.08 s.
    assert!(
        md.contains(
            "| 9B | BF16 | 6.00 | 18.000 GB | 3.00 | 20.0 | 15% | 0.50 | 4.50 (4.00) | 3.00 / 1.25 | 0.05 / 0.10 / 0.02 | 0.08 | 512 MiB |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| of which host copies / GPU-copy waits s | of which slot submits and maps / buffer creation / source lookups s | rest (loader walk) s | peak RssAnon |"),
        "{md}"
    );
    assert!(
        md.contains("\"rest (loader walk)\": weights streamed less those five"),
        "{md}"
    );
    // The failed FP8 run's row is as wide as the others.
    assert_error_row_as_wide_as_the_load_table(&md);
    // One part missing: that part and the rest read "—".
    let mut r = canned();
    r.runs[0].buffers_s = None;
    assert!(
        render(&r).contains("| 3.00 / 1.25 | 0.05 / — / 0.02 | — | 512 MiB |"),
        "{}",
        render(&r)
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

/// The canned run plus the GEMV microbench, profiles of a prefill step and a
/// 4-layer 35B-A3B measured by qwgpu and llama.cpp.
fn canned_full() -> Results {
    let mut r = canned();
    r.gemv = parse_gemv(include_str!("samples/gemv_h100_like.txt"));
    r.moe_layers = Some(4);
    r.runs[0].prefill_profile = vec![
        ("matmul_tile".into(), 30.0, 90),
        ("gdn chunk".into(), 10.0, 24),
    ];
    r.runs[0].prefill_profile_tokens = Some(512);
    let head = |format: &str, head_bytes: u64| Checkpoint {
        model: "35B-A3B".into(),
        format: format.into(),
        weights: CheckpointWeights {
            total_bytes: 5_000_000_000,
            bytes_per_token: 1_200_000_000.0,
            head_bytes,
            ..Default::default()
        },
    };
    // Heads: BF16 [248320, 2048] = 1.017 GB; Q8_0 0.540 GB; at 3 TB/s 0.339 / 0.180 ms.
    r.checkpoints.push(head(FP8, 1_017_118_720));
    r.checkpoints.push(head("GGUF Q8_0", 540_000_000));
    let mut q = Run::new(QWGPU, "35B-A3B", FP8);
    // 1.339 ms per token: 0.339 head + 4 × 0.25.
    q.decode = vec![(512, 1e3 / 1.339_039_573)];
    let mut vk = Run::new(LLAMA_VULKAN, "35B-A3B", Q8_0);
    // 1.38 ms per token: 0.18 head + 4 × 0.3.
    vk.decode = vec![(0, 1e3 / 1.38)];
    let mut cu = Run::new(LLAMA_CUDA, "35B-A3B", Q8_0);
    cu.decode = vec![(0, 1e3 / 2.0)];
    r.runs.extend([q, vk, cu]);
    r
}

#[test]
fn gemv_figures_fill_their_target_and_table() {
    let md = render(&canned_full());
    // Summary 92.4 % / 80.1 % of the copy kernel; of torch 2307.69 / 3000 = 77 %, 2000 / 3000 = 67 %.
    assert!(
        md.contains("| GEMV BF16 / FP8 block ≥ 90% / 85% of copy bandwidth (9B decode set) | 92% / 80% of the copy kernel (77% / 67% of torch `copy_`) | BF16 met, FP8 block not met |"),
        "{md}"
    );
    assert!(md.contains("## GEMV bandwidth (decode, T = 1"), "{md}");
    assert!(md.contains("(2.497 TB/s read + written)"), "{md}");
    assert!(
        md.contains("| 9B | gdn.in_proj_qkvz (Store) | 12288 × 4096 | 24 | 45.0 | 2,237 | 90% | 25.0 | 2,015 | 81% |"),
        "{md}"
    );
    // A shape measured in one format only.
    assert!(
        md.contains(
            "| 9B | lm_head (Store) | 248320 × 4096 | 1 | 800.0 | 2,543 | 102% | — | — | — |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| 35B-A3B | moe.step | E 256, top 8, H 2048, I 512 | 40 | 60.0 | 856.3 | 34% | — | — | — |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B | **one decode token** (Σ per token × bytes ÷ Σ per token × µs) | — | — | 6500.0 | 2,308 | 92% | 3800.0 | 2,000 | 80% |"),
        "{md}"
    );
    // The raw lines are not repeated among the other microbenches.
    assert!(!md.contains("gemv_summary model=9B"), "{md}");
    // Without figures the target says so.
    let md = render(&canned());
    assert!(
        md.contains("| GEMV BF16 / FP8 block ≥ 90% / 85% of copy bandwidth (9B decode set) | no GEMV figures | not measured |"),
        "{md}"
    );
}

#[test]
fn gemv_target_needs_both_formats() {
    let mut r = canned_full();
    let g = r.gemv.as_mut().unwrap();
    g.summaries.retain(|s| s.format == BF16);
    let md = render(&r);
    assert!(
        md.contains("| 92% / — of the copy kernel (77% / — of torch `copy_`) | not measured |"),
        "{md}"
    );
    g_all_met(&mut r);
    assert!(render(&r).contains("of torch `copy_`) | met |"));
}

fn g_all_met(r: &mut Results) {
    let g = r.gemv.as_mut().unwrap();
    *g = parse_gemv(include_str!("samples/gemv_h100_like.txt")).unwrap();
    for s in &mut g.summaries {
        s.copy_pct = 95.0;
    }
}

#[test]
fn prefill_profile_is_rendered_beside_the_decode_profile() {
    let md = render(&canned_full());
    let decode = md.find("## qwgpu decode step by kernel family").unwrap();
    let prefill = md.find("## qwgpu prefill step by kernel family").unwrap();
    assert!(decode < prefill, "{md}");
    assert!(
        md.contains("9B BF16, 512 tokens: 40.000 ms per step"),
        "{md}"
    );
    assert!(md.contains("| matmul_tile | 30.000 | 75% | 90 |"), "{md}");
    assert!(!render(&canned()).contains("prefill step by kernel family"));
}

#[test]
fn moe_per_layer_time_and_the_extrapolated_full_model() {
    let r = canned_full();
    let rows = moe_rows(&r);
    assert_eq!(rows.len(), 3);
    let q = &rows[0];
    assert_eq!(
        (q.engine.as_str(), q.format.as_str(), q.layers),
        (QWGPU, FP8, 4)
    );
    // head 1.017 GB / 3 TB/s = 0.339 ms; (1.339 − 0.339) / 4 = 0.25 ms per layer;
    // 40 layers: 0.339 + 10 = 10.339 ms = 96.7 tok/s.
    assert!((q.head_ms.unwrap() - 0.339_04).abs() < 1e-4);
    assert!((q.layer_ms.unwrap() - 0.25).abs() < 1e-6);
    assert!((q.full_tok_s.unwrap() - 1e3 / 10.339_04).abs() < 1e-3);
    // Vulkan: 0.18 + 4 × 0.3 → 0.18 + 12 = 12.18 ms = 82.1 tok/s.
    let vk = &rows[1];
    assert!((vk.layer_ms.unwrap() - 0.3).abs() < 1e-6);
    let md = render(&r);
    assert!(
        md.contains("## 35B-A3B MoE: per layer, extrapolated to the full model"),
        "{md}"
    );
    assert!(
        md.contains("| qwgpu | FP8 block | 746.8 | 1.339 | 0.339 | 0.250 | 0.015 | 96.7 |"),
        "{md}"
    );
    assert!(
        md.contains("| llama.cpp Vulkan | Q8_0 | 724.6 | 1.380 | 0.180 | 0.300 | 0.055 | 82.1 |"),
        "{md}"
    );
    // Target against the faster llama.cpp backend's extrapolation: 96.7 / 82.1 = 1.18×.
    assert!(
        md.contains("| 35B-A3B FP8 decode ≥ 1.2× llama.cpp Q8_0 (faster backend) | 1.18× (both extrapolated to 40 layers) | not met |"),
        "{md}"
    );
    // The reduced checkpoint is labelled as such in the main table.
    assert!(
        md.contains(
            "| 35B-A3B (4 of 40 layers) | FP8 block (Q8_0) | decode tok/s, ctx 512 | 746.8 |"
        ),
        "{md}"
    );
    // Without the layer count (a whole model, or an older results.json)
    // nothing is extrapolated: the measured figures are judged.
    let mut whole = r.clone();
    whole.moe_layers = None;
    assert!(moe_rows(&whole).is_empty());
    let md = render(&whole);
    assert!(
        md.contains(
            "| 35B-A3B FP8 decode ≥ 1.2× llama.cpp Q8_0 (faster backend) | 1.03× | not met |"
        ),
        "{md}"
    );
    // A reduced model without head bytes cannot be extrapolated: not judged.
    let mut no_head = r.clone();
    no_head.checkpoints.retain(|c| c.model != "35B-A3B");
    let md = render(&no_head);
    assert!(
        md.contains(
            "| 35B-A3B FP8 decode ≥ 1.2× llama.cpp Q8_0 (faster backend) | 1.03× | not measured |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| qwgpu | FP8 block | 746.8 | 1.339 | — | — | — | — |"),
        "{md}"
    );
}

#[test]
fn new_fields_round_trip_and_old_results_still_load() {
    let r = canned_full();
    let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(render(&back), render(&r));
    // A results.json written before the GEMV, prefill-profile and MoE fields.
    let mut v: serde_json::Value = serde_json::to_value(canned()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("gemv");
    o.remove("moe_layers");
    for key in [
        "ttft_lens",
        "session_counts",
        "session_prompt",
        "session_steps",
        "batched",
        "coop_peak",
    ] {
        o.remove(key);
    }
    for run in o["runs"].as_array_mut().unwrap() {
        let run = run.as_object_mut().unwrap();
        run.remove("prefill_profile");
        run.remove("prefill_profile_tokens");
        run.remove("ttft");
        run.remove("row_errors");
        run.remove("load_alone");
        run.remove("decode_alone");
        run.remove("precision");
        run.remove("f16_matmul");
    }
    for c in o["checkpoints"].as_array_mut().unwrap() {
        c["weights"].as_object_mut().unwrap().remove("head_bytes");
    }
    let old: Results = serde_json::from_value(v).unwrap();
    assert_eq!(render(&old), render(&canned()));
}

/// The kernel-bench step end to end, with a stand-in test binary that prints
/// a recorded run for the GEMV bench and fails the others; then without it.
#[test]
fn kernel_step_parses_the_gemv_bench_and_records_missing_binaries() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("xtask-kbench-{}", std::process::id()));
    let tests = root.join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    let sample = root.join("gemv.txt");
    std::fs::write(&sample, include_str!("samples/gemv_h100_like.txt")).unwrap();
    let coop = root.join("coop.txt");
    std::fs::write(&coop, include_str!("samples/coop_peak_format.txt")).unwrap();
    let bin = tests.join("kernels");
    // It must be asked for the one test, with its output uncaptured; the
    // coop-matrix bench prints on stderr, as eprintln! does.
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'--exact gemv_bench::gemv_bandwidth --nocapture'*) cat '{gemv}';; \
             *'--exact coop_peak::coop_peak --nocapture'*) cat '{coop}' >&2;; *) exit 3;; esac\n",
            gemv = sample.display(),
            coop = coop.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let arg = |s: &str| s.to_string();
    let o = super::opts::Opts::parse(&[
        arg("--work"),
        root.join("work").display().to_string(),
        arg("--out"),
        root.join("out").display().to_string(),
        arg("--kernel-tests"),
        tests.display().to_string(),
        arg("--sizes"),
        arg("35B-A3B"),
    ])
    .unwrap();
    let mut b = super::Bench::new(o).unwrap();
    assert_eq!(b.r.moe_layers, Some(4));
    b.kernel_benches().unwrap();
    let g = b.r.gemv.as_ref().expect("GEMV figures parsed");
    assert_eq!(g.summary("9B", FP8).unwrap().copy_pct, 80.1);
    let gemv =
        b.r.kernels
            .iter()
            .find(|k| k.test == "gemv_bench::gemv_bandwidth")
            .unwrap();
    assert!(gemv.error.is_none(), "{:?}", gemv.error);
    let peak = b.r.coop_peak.as_ref().expect("coop-matrix ceiling parsed");
    assert_eq!(peak.tflops, 58.7);
    let failed = b.r.kernels.iter().filter(|k| k.error.is_some());
    assert_eq!(failed.count(), b.r.kernels.len() - 2);
    // Without the binary every bench is recorded as not found.
    std::fs::remove_file(&bin).unwrap();
    b.r.kernels.clear();
    b.kernel_benches().unwrap();
    assert!(
        b.r.kernels
            .iter()
            .all(|k| k.error.as_deref().is_some_and(|e| e.contains("not found"))),
        "{:?}",
        b.r.kernels
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn f16_matmul_prefill_sits_beside_the_default_and_the_peers() {
    let mut r = canned();
    assert!(!render(&r).contains("prefill with `--f16-matmul`"));
    let mut f = Run::new(QWGPU_F16, "9B", BF16);
    f.prefill = vec![(512, 10_000.0), (4096, 18_000.0)];
    r.runs.push(f);
    let md = render(&r);
    // 4096 tokens: 18k against the default 9k, llama.cpp Vulkan 9.5k, HF 24k.
    assert!(
        md.contains("| 9B | BF16 | 4096 | 18,000 | 9,000 | 2.00× | 1.89× | — | 0.75× |"),
        "{md}"
    );
    // Not mistaken for the default run in the main table or the targets.
    assert!(md.contains("9B prefill 4096 ≥ 1.0× llama.cpp Vulkan"));
    assert!(!md.contains("| 18,000 | 56"), "{md}");
}

/// llama-batched-bench's table (`samples/batched_bench_format.txt`: its
/// stdout and stderr as the xtask reads them, the table printed with the
/// format strings of `tools/batched-bench/batched-bench.cpp` at the payload's
/// commit; the figures are made up).
#[test]
fn batched_bench_table_is_read_by_column_name() {
    let text = include_str!("samples/batched_bench_format.txt");
    let rows = parse_batched_bench(text).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows.iter().map(|r| r.sessions).collect::<Vec<_>>(),
        vec![1, 4, 16, 32]
    );
    // S_TG t/s, not S_PP or S (the columns beside it).
    assert_eq!(rows[2].s_tg, 1574.17);
    assert_eq!((rows[2].pp, rows[2].tg), (512, 128));
    let run = batched_bench_run(LLAMA_CUDA, "9B", BF16, text, (&[1, 4, 16, 32], 512, 128));
    assert_eq!(run.tok_s(16), Some(1574.17));
    assert_eq!(run.tok_s(1), Some(141.44));
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    // A count it skipped (context too small) or other lengths: an error each.
    let run = batched_bench_run(LLAMA_CUDA, "9B", BF16, text, (&[16, 64], 512, 128));
    assert_eq!(run.rows, vec![(16, 1574.17)]);
    assert_eq!(run.errors.len(), 1);
    assert!(run.errors[0].contains("64 sequences"), "{:?}", run.errors);
    let run = batched_bench_run(LLAMA_CUDA, "9B", BF16, text, (&[16], 256, 128));
    assert!(run.rows.is_empty() && run.errors.len() == 1);
    // Columns found by name, in any order.
    let moved = "| B | S_TG t/s | PP | TG |\n|---|---|---|---|\n| 8 | 900.5 | 512 | 128 |\n";
    let rows = parse_batched_bench(moved).unwrap();
    assert_eq!(
        (rows[0].sessions, rows[0].s_tg, rows[0].pp),
        (8, 900.5, 512)
    );
    // No table, or a table without rows: errors, not empty figures.
    assert!(parse_batched_bench("error: unable to load model").is_err());
    let head_only = text
        .lines()
        .filter(|l| !l.starts_with("|   512"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(parse_batched_bench(&head_only).is_err());
    let failed = batched_bench_run(LLAMA_CUDA, "9B", BF16, "segfault", (&[1], 512, 128));
    assert!(failed.rows.is_empty() && failed.errors[0].contains("S_TG"));
}

#[test]
fn coop_peak_is_the_best_timed_line() {
    let c = parse_coop_peak(include_str!("samples/coop_peak_format.txt")).unwrap();
    assert_eq!(c.tflops, 58.7);
    assert_eq!(
        c.what,
        "m=4096 n=12288 k=4096 Direct sg=2x2 ck=32 lds=40 nbuf=1"
    );
    assert_eq!(c.adapter, "NVIDIA H100 80GB HBM3");
    // 3 tilings × 3 shapes; the check and skip lines carry no figure.
    assert_eq!(c.lines, 9);
    assert!(parse_coop_peak("BENCH coop_peak check T: worst = 1e-7\ntest result: ok").is_none());
}

#[test]
fn coop_ceiling_sits_beside_torch_matmul() {
    let mut r = canned();
    let md = render(&r);
    assert!(
        md.contains("| cooperative-matrix ceiling, qwgpu plain f16 GEMM (`coop_peak::coop_peak`, best complete-GEMM tiling) | not measured |"),
        "{md}"
    );
    r.coop_peak = parse_coop_peak(include_str!("samples/coop_peak_format.txt"));
    let md = render(&r);
    // 58.7 TFLOP/s of torch's 800: 7 %.
    assert!(
        md.contains("| 58.7 TFLOP/s = 7% of torch BF16 matmul (m=4096 n=12288 k=4096 Direct sg=2x2 ck=32 lds=40 nbuf=1; best of 9 timed tilings and shapes) |"),
        "{md}"
    );
    let torch = md
        .find("| BF16 matmul, torch 8192³ | 800 TFLOP/s |")
        .unwrap();
    let coop = md.find("| cooperative-matrix ceiling").unwrap();
    assert!(torch < coop, "{md}");
}

/// The canned run with issue 17's rows: 16k prefill, time to first token,
/// batched decode of both engines.
fn canned_multi() -> Results {
    let mut r = canned();
    r.prefill_lens = vec![512, 4096, 16384];
    r.ttft_lens = vec![4096, 32768];
    r.session_counts = vec![1, 4, 16, 32];
    r.session_prompt = 512;
    r.session_steps = 128;
    {
        let q = &mut r.runs[0];
        q.prefill.push((16384, 7000.0));
        q.ttft = vec![(4096, 0.5), (32768, 6.0)];
    }
    let mut cu = Run::new(LLAMA_CUDA, "9B", BF16);
    cu.prefill = vec![(512, 17_000.0), (4096, 16_384.0), (16384, 15_000.0)];
    cu.decode = vec![(0, 141.0)];
    r.runs.push(cu);
    let batched = |engine: &str, rows: &[(usize, f64)]| BatchedRun {
        rows: rows.to_vec(),
        ..BatchedRun::new(engine, "9B", BF16)
    };
    r.batched = vec![
        batched(QWGPU, &[(1, 130.0), (4, 400.0), (16, 800.0)]),
        batched(
            LLAMA_CUDA,
            &[(1, 141.44), (4, 505.93), (16, 1574.17), (32, 2400.94)],
        ),
    ];
    let mut failed = BatchedRun::new(QWGPU, "9B", BF16);
    failed.errors.push("32 sessions: out of memory".into());
    r.batched[0].errors = failed.errors;
    r
}

#[test]
fn ttft_rows_sit_beside_the_peers_prefill_time() {
    let md = render(&canned_multi());
    // CUDA: 4096 ÷ 16384 tok/s = 0.25 s against qwgpu's 0.5 s → 0.50×;
    // Vulkan 4096 ÷ 9500 = 0.431 s → 0.86×; HF 4096 ÷ 24000 = 0.171 s → 0.34×.
    assert!(
        md.contains(
            "| 9B | BF16 (BF16) | 4096 | 0.500 | 0.431 | 0.86× | 0.250 | 0.50× | 0.171 | 0.34× |"
        ),
        "{md}"
    );
    // 32k: no peer measured that length.
    assert!(
        md.contains("| 9B | BF16 (BF16) | 32768 | 6.000 | not measured | — | not measured | — | not measured | — |"),
        "{md}"
    );
    // The failed FP8 run: its rows say so.
    assert!(
        md.contains("| 9B | FP8 block (Q8_0) | 4096 | not measured |"),
        "{md}"
    );
    // 16k prefill is a row of the main table like the others.
    assert!(
        md.contains("| 9B | BF16 (BF16) | prefill tok/s, 16384 tokens | 7,000 | 50,000 | 14% | — | — | 15,000 | 0.47× |"),
        "{md}"
    );
}

#[test]
fn batched_decode_rows_have_ratios_to_the_peer_and_to_one_session() {
    let md = render(&canned_multi());
    assert!(md.contains("-c 20480 -npp 512 -ntg 128 -npl …"), "{md}");
    // 800 ÷ 130 = 6.15× one session; 800 ÷ 1574.17 = 0.51× CUDA; no Vulkan figure.
    assert!(
        md.contains("| 9B | BF16 | 16 | 800.0 | 6.15× | 1,574 | 0.51× | not measured | — |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B | BF16 | 1 | 130.0 | 1.00× | 141.4 | 0.92× | not measured | — |"),
        "{md}"
    );
    // 32 sessions failed on qwgpu: not measured, the error listed.
    assert!(
        md.contains("| 9B | BF16 | 32 | not measured | — | 2,401 | — | not measured | — |"),
        "{md}"
    );
    assert!(
        md.contains("- qwgpu 9B BF16 batched decode: 32 sessions: out of memory"),
        "{md}"
    );
}

#[test]
fn issue_17_targets_are_judged_from_the_same_run() {
    let md = render(&canned_multi());
    let t = md.find("## Targets of issue 17").unwrap();
    let md = &md[t..];
    // 9000 ÷ 16384 = 0.55×; ÷ Vulkan 9500 = 0.95×; ÷ HF 24000 = 0.38×.
    for row in [
        "| 9B BF16 prefill 4096 ≥ 1.0× llama.cpp CUDA | 0.55× | not met |",
        "| 9B BF16 prefill 4096 ≥ 1.0× llama.cpp Vulkan (must) | 0.95× | not met |",
        "| 9B BF16 prefill 4096 ≥ 1.0× HF + fla (stretch) | 0.38× | not met |",
        "| 9B FP8 block prefill 4096 ≥ 1.0× llama.cpp CUDA Q8_0 | — | not measured |",
        "| 0.8B BF16 prefill 4096 ≥ 1.0× llama.cpp CUDA | — | not measured |",
        "| 9B BF16 batched decode, 16 sessions ≥ 1.0× llama-batched-bench CUDA | 0.51× | not met |",
        "| 0.8B BF16 batched decode, 16 sessions ≥ 1.0× llama-batched-bench CUDA | — | not measured |",
        // 800 ÷ 130 = 6.15×.
        "| 9B BF16 batched decode, 16 sessions ≥ 4× qwgpu's 1-session rate | 6.15× | met |",
        // 18 GB in 6 s = 3 GB/s of a 20 GB/s memcpy.
        "| 9B BF16 load ≥ 50% of host memcpy | 15% | not met |",
    ] {
        assert!(md.contains(row), "{row}\n{md}");
    }
    // The MoE bars: the target, the must bar only, neither.
    let mut r = canned_multi();
    let moe = |engine: &str, format: &str, tok_s: f64| {
        let mut x = Run::new(engine, "35B-A3B", format);
        x.prefill = vec![(4096, tok_s)];
        x
    };
    r.runs.extend([
        moe(QWGPU, FP8, 30_000.0),
        moe(LLAMA_CUDA, Q8_0, 55_000.0),
        moe(QWGPU, BF16, 10_000.0),
        moe(LLAMA_CUDA, BF16, 55_000.0),
    ]);
    let md = render(&r);
    assert!(
        md.contains("| 35B-A3B geometry FP8 block prefill 4096 ≥ 0.5× llama.cpp CUDA Q8_0 (must ≥ 0.25×) | 0.55× | met |"),
        "{md}"
    );
    assert!(
        md.contains("| 35B-A3B geometry BF16 prefill 4096 ≥ 0.5× llama.cpp CUDA BF16 (must ≥ 0.25×) | 0.18× | not met (nor the must bar) |"),
        "{md}"
    );
    r.runs.last_mut().unwrap().prefill = vec![(4096, 30_000.0)];
    assert!(render(&r).contains(
        "| 35B-A3B geometry BF16 prefill 4096 ≥ 0.5× llama.cpp CUDA BF16 (must ≥ 0.25×) | 0.33× | must (≥ 0.25×) met, target not met |"
    ));
    // Issue 9's prefill rows stay at 4096 tokens when 16384 is measured too.
    assert!(render(&canned_multi()).contains("| 9B prefill 4096 ≥ 1.0× llama.cpp Vulkan | 0.95× |"));
}

#[test]
fn qwgpu_json_gives_ttft_and_sessions_with_row_errors() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{"model": {"ttft": [{"tokens": 4096, "seconds": 0.5}, {"tokens": 32768, "error": "out of memory"}],
            "sessions": [{"sessions": 1, "prompt": 512, "steps": 128, "seconds": 1.0, "tok_s": 128.0},
                         {"sessions": 32, "prompt": 512, "steps": 128, "error": "device lost"}]}}"#,
    )
    .unwrap();
    let r = parse_qwgpu("9B", BF16, &v);
    assert_eq!(r.ttft_of(4096), Some(0.5));
    assert_eq!(r.ttft_of(32768), None);
    assert_eq!(
        r.row_errors,
        vec!["time to first token, 32768 tokens: out of memory"]
    );
    let b = parse_qwgpu_sessions(QWGPU, "9B", BF16, &v);
    assert_eq!(b.rows, vec![(1, 128.0)]);
    assert_eq!(b.errors, vec!["32 sessions: device lost"]);
    // Without rows (an older qwgpu): said, not silently empty.
    let none = parse_qwgpu_sessions(QWGPU, "9B", BF16, &serde_json::json!({"model": {}}));
    assert!(none.rows.is_empty() && !none.errors.is_empty());
    let mut results = canned();
    results.runs[0].row_errors = r.row_errors.clone();
    assert!(render(&results)
        .contains("- qwgpu 9B BF16: time to first token, 32768 tokens: out of memory"));
}

/// The committed results.json renders; stripped of issue 17's fields (as the
/// one written before they existed is), every new row says "not measured".
#[test]
fn the_committed_results_json_renders_with_not_measured_rows() {
    let text = include_str!("../../../benches/results.json");
    let r: Results = serde_json::from_str(text).unwrap();
    let md = render(&r);
    for heading in [
        "## Time to first token",
        "## Batched decode",
        "## Targets of issue 17",
    ] {
        assert!(md.contains(heading), "{heading}\n{md}");
    }
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    let o = v.as_object_mut().unwrap();
    for key in [
        "ttft_lens",
        "session_counts",
        "session_prompt",
        "session_steps",
        "batched",
        "coop_peak",
    ] {
        o.remove(key);
    }
    for run in o["runs"].as_array_mut().unwrap() {
        let run = run.as_object_mut().unwrap();
        run.remove("ttft");
        run.remove("row_errors");
    }
    let old: Results = serde_json::from_value(v).unwrap();
    let md = render(&old);
    assert!(
        md.contains("## Time to first token\n\nnot measured in this run."),
        "{md}"
    );
    assert!(
        md.contains("## Batched decode\n\nnot measured in this run."),
        "{md}"
    );
    assert!(
        md.contains("best complete-GEMM tiling) | not measured |"),
        "{md}"
    );
    assert!(
        md.contains("| 9B BF16 batched decode, 16 sessions ≥ 1.0× llama-batched-bench CUDA | — | not measured |"),
        "{md}"
    );
    // Its prefill figures judge issue 17's prefill targets all the same.
    assert!(
        md.contains("| 9B BF16 prefill 4096 ≥ 1.0× llama.cpp CUDA | "),
        "{md}"
    );
    assert!(
        !md.contains("| 9B BF16 prefill 4096 ≥ 1.0× llama.cpp CUDA | — |"),
        "{md}"
    );
}

/// The batched-decode peer step end to end, with a stand-in binary that
/// checks its command line and prints the sample table.
#[test]
fn llama_batched_bench_step_runs_the_asked_counts() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("xtask-batched-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let sample = root.join("table.txt");
    std::fs::write(&sample, include_str!("samples/batched_bench_format.txt")).unwrap();
    let bin = root.join("llama-batched-bench");
    // 32 × (512 + 128) = 20480 tokens of context, or it skips rows.
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'-ngl 99 -fa on -c 20480 -npp 512 -ntg 128 -npl 1,4,16,32'*) cat '{}';; *) echo \"bad args: $*\" >&2; exit 2;; esac\n",
            sample.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let arg = |s: &str| s.to_string();
    let o = super::opts::Opts::parse(&[
        arg("--work"),
        root.join("work").display().to_string(),
        arg("--out"),
        root.join("out").display().to_string(),
    ])
    .unwrap();
    let b = super::Bench::new(o).unwrap();
    assert_eq!(b.r.session_counts, vec![1, 4, 16, 32]);
    let run = b.llama_batched(LLAMA_CUDA, &bin, "9B", &root.join("m.gguf"));
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(run.tok_s(32), Some(2400.94));
    // Other counts: the stand-in refuses them, and the failure is recorded.
    let o = super::opts::Opts::parse(&[
        arg("--work"),
        root.join("work").display().to_string(),
        arg("--out"),
        root.join("out").display().to_string(),
        arg("--sessions"),
        arg("1,8"),
    ])
    .unwrap();
    let b = super::Bench::new(o).unwrap();
    let run = b.llama_batched(LLAMA_CUDA, &bin, "9B", &root.join("m.gguf"));
    assert!(run.rows.is_empty());
    assert!(
        run.errors.iter().any(|e| e.contains("bad args")),
        "{:?}",
        run.errors
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_decode_regression_target_compares_with_a_baseline_run() {
    use super::baseline::Baseline;
    let r = canned_multi();
    assert!(
        render(&r).contains(
            "| No batch-1 decode regression (within run-to-run spread) | no baseline run given (`--baseline results.json`) | not measured |"
        ),
        "{}",
        render(&r)
    );
    // The old run: the same figures, but the 9B BF16 at ctx 512 at 150 ÷ 0.9.
    let mut old = r.clone();
    old.commit = "0ld0000".into();
    old.date = "2026-11-26 01:52 UTC".into();
    let at = |x: &mut Results, tok_s: f64| {
        let run = x
            .runs
            .iter_mut()
            .find(|x| x.engine == QWGPU && x.model == "9B" && x.format == BF16)
            .expect("9B BF16 run");
        let d = run.decode.iter_mut().find(|d| d.0 == 512).expect("ctx 512");
        d.1 = tok_s;
    };
    at(&mut old, 150.0 / 0.9);
    let b = Baseline::of(&old, 6.0);
    let n = b.decode.len();
    assert!(n >= 2, "{b:?}");
    let mut new = r.clone();
    new.baseline = Some(b);
    let label = "| No batch-1 decode regression (each qwgpu decode figure ≥ 94% of `0ld0000`'s, 2026-11-26 01:52 UTC)";
    let md = render(&new);
    assert!(
        md.contains(&format!(
            "{label} | worst 0.90× (9B BF16 ctx 512) of {n} figures | not met |"
        )),
        "{md}"
    );
    // 3 % slower is within a 6 % spread; the baseline survives results.json.
    at(&mut old, 150.0 / 0.97);
    let path = std::env::temp_dir().join(format!("qwgpu-baseline-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
    new.baseline = Some(Baseline::load(&path, 6.0).unwrap());
    let _ = std::fs::remove_file(&path);
    let again: Results = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
    let md = render(&again);
    assert!(
        md.contains(&format!(
            "{label} | worst 0.97× (9B BF16 ctx 512) of {n} figures | met |"
        )),
        "{md}"
    );
    // Another GPU's run is no baseline.
    let mut other = again.clone();
    other.gpu = "NVIDIA H200".into();
    let md = render(&other);
    assert!(
        md.contains(&format!(
            "{label} | baseline on {old_gpu}, this run on NVIDIA H200 | not measured |",
            old_gpu = old.gpu
        )),
        "{md}"
    );
    // A file that is not a results.json is an error naming it.
    let err = Baseline::load(std::path::Path::new("/nonexistent/results.json"), 6.0).unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/results.json"),
        "{err:#}"
    );
}

/// The H100 run of `coop_peak::coop_peak` (`samples/coop_peak_h100_probes.txt`,
/// its stderr as recorded): the probe tilings time multiply-adds only and
/// must not be taken for the ceiling of a complete GEMM.
#[test]
fn coop_ceiling_leaves_the_probe_tilings_out() {
    let text = include_str!("samples/coop_peak_h100_probes.txt");
    let c = parse_coop_peak(text).unwrap();
    assert_eq!(c.tflops, 214.0);
    assert_eq!(
        c.what,
        "m=4096 n=12288 k=4096 Staged sg=2x2 ck=32 lds=40 nbuf=1"
    );
    // 8 complete tilings timed on each of 3 shapes; 4 probes on each.
    assert_eq!(c.lines, 24);
    let p = c.probe.as_ref().expect("the probes' best kept apart");
    assert_eq!(p.tflops, 626.7);
    assert_eq!(
        p.what,
        "m=4096 n=12288 k=4096 ProbeMma sg=2x2 ck=32 lds=40 nbuf=1"
    );
    assert_eq!(p.lines, 12);
    let mut r = canned();
    r.coop_peak = Some(c);
    let md = render(&r);
    // 214 of torch's 800 TFLOP/s: 27 %.
    assert!(
        md.contains("| cooperative-matrix ceiling, qwgpu plain f16 GEMM (`coop_peak::coop_peak`, best complete-GEMM tiling) | 214.0 TFLOP/s = 27% of torch BF16 matmul (m=4096 n=12288 k=4096 Staged sg=2x2 ck=32 lds=40 nbuf=1; best of 24 timed tilings and shapes) |"),
        "{md}"
    );
    let probe_row = md
        .lines()
        .find(|l| l.starts_with("| cooperative-matrix probe"))
        .unwrap_or_else(|| panic!("no probe row:\n{md}"));
    assert!(
        probe_row.contains("multiply-adds only, not a complete GEMM"),
        "{probe_row}"
    );
    assert!(
        probe_row.contains("| 626.7 TFLOP/s = 78% of torch BF16 matmul (m=4096 n=12288 k=4096 ProbeMma sg=2x2 ck=32 lds=40 nbuf=1; best of 12 timed probes) |"),
        "{probe_row}"
    );
    let ceiling_row = md
        .lines()
        .find(|l| l.starts_with("| cooperative-matrix ceiling"))
        .unwrap();
    assert!(!ceiling_row.contains("Probe"), "{ceiling_row}");
    // Only probes timed: no ceiling figure, the probes' row all the same.
    let probes_only: String = text
        .lines()
        .filter(|l| !l.contains(" m=") || l.contains(" Probe"))
        .collect::<Vec<_>>()
        .join("\n");
    let c = parse_coop_peak(&probes_only).unwrap();
    assert_eq!(
        (c.lines, c.probe.as_ref().map(|p| p.tflops)),
        (0, Some(626.7))
    );
    r.coop_peak = Some(c);
    let md = render(&r);
    assert!(
        md.contains(
            "best complete-GEMM tiling) | no complete-GEMM tiling timed (probes only, below) |"
        ),
        "{md}"
    );
}

/// A results.json written before the probes were kept apart recorded a
/// probe as the ceiling: the report takes the complete GEMM's best from the
/// bench's lines kept in `kernels`, or says it is not recorded.
#[test]
fn an_older_coop_ceiling_that_was_a_probe_is_corrected() {
    let text = include_str!("samples/coop_peak_h100_probes.txt");
    let mut r = canned();
    // As the H100 run's results.json has it.
    r.coop_peak = Some(super::coop::CoopPeak {
        tflops: 626.7,
        what: "m=4096 n=12288 k=4096 ProbeMma sg=2x2 ck=32 lds=40 nbuf=1".into(),
        adapter: "NVIDIA H100 80GB HBM3".into(),
        lines: 36,
        probe: None,
    });
    let mut v = serde_json::to_value(&r).unwrap();
    v["coop_peak"].as_object_mut().unwrap().remove("probe");
    let without_lines: Results = serde_json::from_value(v.clone()).unwrap();
    let md = render(&without_lines);
    assert!(
        md.contains("best complete-GEMM tiling) | not recorded (this results.json kept only the best probe's figure, below) |"),
        "{md}"
    );
    assert!(
        md.contains("| 626.7 TFLOP/s = 78% of torch BF16 matmul (m=4096 n=12288 k=4096 ProbeMma sg=2x2 ck=32 lds=40 nbuf=1) |"),
        "{md}"
    );
    let mut with_lines = without_lines.clone();
    with_lines.kernels.push(KernelBench {
        test: "coop_peak::coop_peak".into(),
        lines: super::bench_lines(text),
        error: None,
    });
    let md = render(&with_lines);
    assert!(
        md.contains("best complete-GEMM tiling) | 214.0 TFLOP/s = 27% of torch BF16 matmul (m=4096 n=12288 k=4096 Staged sg=2x2"),
        "{md}"
    );
    assert!(md.contains("best of 12 timed probes) |"), "{md}");
}

/// A `qwgpu bench --json` model object of the given precision and switch.
fn qwgpu_json_with(precision: &str, f16: bool) -> serde_json::Value {
    serde_json::json!({"model": {"precision": precision, "f16_matmul": f16,
        "prefill": [{"tokens": 4096, "tok_s": 9000.0}]}})
}

#[test]
fn f16_matmul_section_says_the_recorded_precision() {
    // Recorded by qwgpu bench --json and kept by the parser.
    let d = parse_qwgpu("9B", BF16, &qwgpu_json_with("fast", false));
    assert_eq!(
        (d.precision.as_deref(), d.f16_matmul),
        (Some("fast"), Some(false))
    );
    let mut r = canned();
    r.runs[0].precision = d.precision.clone();
    let mut f = parse_qwgpu("9B", BF16, &qwgpu_json_with("fast", true));
    f.engine = QWGPU_F16.into();
    assert_eq!(f.f16_matmul, Some(true));
    r.runs.push(f);
    let md = render(&r);
    let t = md.find("## qwgpu prefill with `--f16-matmul`").unwrap();
    let section = &md[t..md[t..].find("| model |").map_or(md.len(), |e| t + e)];
    assert!(
        section.contains(
            "The default runs and the `--f16-matmul` runs alike ran in **`fast`** precision, as each `qwgpu bench --json` recorded it"
        ),
        "{section}"
    );
    assert!(
        section.contains(
            "`fast`: each activation row multiplied by a power of two and rounded to f16 once;"
        ),
        "{section}"
    );
    assert!(
        section.contains("`--f16-matmul` (`ContextOptions::f16_matmul`) keeps the run's precision"),
        "{section}"
    );
    // The stale claim that the default GEMM is the exact one.
    assert!(
        !md.contains("The default prefill GEMM is the exact"),
        "{md}"
    );
    assert!(!section.contains("not record"), "{section}");
    // Runs of different precisions: each named.
    r.runs[0].precision = Some("exact".into());
    let md = render(&r);
    assert!(
        md.contains("as each `qwgpu bench --json` recorded it: qwgpu 9B BF16 `exact`, qwgpu --f16-matmul 9B BF16 `fast`."),
        "{md}"
    );
    // An older results.json: no precision recorded, and the report says so.
    for x in &mut r.runs {
        x.precision = None;
    }
    let md = render(&r);
    assert!(
        md.contains("This results.json does not record the runs' precision"),
        "{md}"
    );
    assert!(
        md.contains("runs `fast` from commit `5e07162` on and `exact` before; this run's commit is `abc1234`."),
        "{md}"
    );
    assert!(!md.contains("ran in **`"), "{md}");
}

/// The canned run with the 9B BF16 load measured again alone: 2 s against
/// the main run's 6 s.
fn canned_load_alone() -> Results {
    let mut r = canned();
    r.runs[0].load_alone = Some(LoadTimes {
        load_s: Some(2.0),
        device_open_s: Some(0.25),
        weights_s: Some(1.5),
        host_copy_s: Some(1.0),
        gpu_wait_s: Some(0.125),
        slots_s: Some(0.2),
        buffers_s: Some(0.1),
        sources_s: Some(0.034),
    });
    r
}

#[test]
fn load_measured_alone_is_the_judged_figure() {
    let md = render(&canned_load_alone());
    assert!(
        md.contains("| model | weights | load s, alone | load s, main run (GGUF conversion on the CPU) | safetensors |"),
        "{md}"
    );
    assert!(
        md.contains("\"load s, alone\": measured again once the GGUF conversion was done"),
        "{md}"
    );
    // 18 GB in 2 s = 9 GB/s = 45 % of 20 GB/s; weights streamed in 1.5 s (12 GB/s);
    // the main run's 6 s beside it; its split the one measured alone
    // (1.5 − 1 − 0.125 − 0.2 − 0.1 − 0.034 = 0.041 s of loader walk).
    assert!(
        md.contains("| 9B | BF16 | 2.00 | 6.00 | 18.000 GB | 9.00 | 20.0 | 45% | 0.25 | 1.50 (12.00) | 1.00 / 0.12 | 0.20 / 0.10 / 0.03 | 0.04 | 512 MiB |"),
        "{md}"
    );
    // The failed FP8 run keeps its error, in a row as wide as the others.
    assert_error_row_as_wide_as_the_load_table(&md);
    for row in [
        "| 9B BF16 load ≥ 50% of host memcpy rate | 45% (load measured alone, after the GGUF conversion) | not met |",
        "| 9B BF16 load ≥ 50% of host memcpy | 45% (load measured alone, after the GGUF conversion) | not met |",
    ] {
        assert!(md.contains(row), "{row}\n{md}");
    }
    // 1.5 s alone: 12 GB/s = 60 %, met (the main run's 15 % is not judged).
    let mut r = canned_load_alone();
    r.runs[0].load_alone.as_mut().unwrap().load_s = Some(1.5);
    let md = render(&r);
    assert!(
        md.contains("| 9B BF16 load ≥ 50% of host memcpy | 60% (load measured alone, after the GGUF conversion) | met |"),
        "{md}"
    );
    // A run whose load was not measured again: the main run's figure, said so.
    let mut r = canned_load_alone();
    let mut other = Run::new(QWGPU, "0.8B", BF16);
    other.load_s = Some(1.0);
    other.checkpoint_bytes = Some(2_000_000_000);
    r.runs.push(other);
    // Without a split either: "—" in each split cell.
    assert!(
        render(&r).contains("| 0.8B | BF16 | not measured | 1.00 | 2.000 GB | 2.00 | 20.0 | 10% | — | — | — | — | — |"),
        "{}",
        render(&r)
    );
    // The figure survives results.json; without it the table is as before.
    let back: Results =
        serde_json::from_str(&serde_json::to_string(&canned_load_alone()).unwrap()).unwrap();
    assert_eq!(
        back.runs[0].load_alone,
        canned_load_alone().runs[0].load_alone
    );
    let md = render(&canned());
    assert!(
        md.contains("| model | weights | load s | safetensors |"),
        "{md}"
    );
    assert!(!md.contains("load s, alone"), "{md}");
    assert!(
        md.contains("| 9B BF16 load ≥ 50% of host memcpy | 15% | not met |"),
        "{md}"
    );
}

/// The load-and-decode-alone step with a stand-in `qwgpu` that checks its
/// command line: only folders whose run loaded are measured again, and a
/// failure is the step's error, the main run's figure kept.
#[test]
fn load_alone_step_measures_each_loaded_folder_again() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("xtask-loadalone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let log = root.join("calls.log");
    let bin = root.join("qwgpu");
    // It prints a decode row at 8192 too: only the context asked for is kept.
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\n\
             case \"$*\" in *'bench --json --model '*'/hf-9B --decode-at 512 --decode 128 --chunk 256')\n\
             echo 'loading...'\n\
             echo '{{\"model\": {{\"load_s\": 2.5, \"device_open_s\": 0.2, \"weights_s\": 2.25, \"host_copy_s\": 1.5, \"gpu_wait_s\": 0.01, \
             \"slots_s\": 0.25, \"buffers_s\": 0.125, \"sources_s\": 0.0625, \
             \"decode\": [{{\"tokens\": 128, \"context\": 512, \"seconds\": 0.8, \"tok_s\": 160.0}}, {{\"tokens\": 128, \"context\": 8192, \"seconds\": 1.0, \"tok_s\": 128.0}}]}}}}';;\n\
             *) echo \"bad args: $*\" >&2; exit 2;; esac\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let arg = |s: &str| s.to_string();
    let o = super::opts::Opts::parse(&[
        arg("--qwgpu"),
        bin.display().to_string(),
        arg("--work"),
        root.join("work").display().to_string(),
        arg("--out"),
        root.join("out").display().to_string(),
        arg("--qwgpu-args"),
        arg("--chunk 256"),
    ])
    .unwrap();
    let mut b = super::Bench::new(o).unwrap();
    let mut loaded = Run::new(QWGPU, "9B", BF16);
    loaded.load_s = Some(3.72);
    loaded.decode = vec![(512, 120.0), (8192, 110.0)];
    b.r.runs = vec![
        loaded,
        Run::failed(QWGPU, "9B", FP8, "out of memory".into()),
        Run::new(QWGPU, "0.8B", BF16),
    ];
    let folders: Vec<super::Folder> = [("9B", BF16), ("9B", FP8), ("0.8B", BF16)]
        .iter()
        .map(|(m, f)| {
            let dir = match *f {
                BF16 => format!("hf-{m}"),
                _ => format!("hf-{m}-fp8"),
            };
            (m.to_string(), f.to_string(), root.join(dir))
        })
        .collect();
    b.measure_alone(&folders);
    assert!(b.r.errors.is_empty(), "{:?}", b.r.errors);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    let run = b.r.run(QWGPU, "9B", BF16).unwrap();
    assert_eq!(
        run.load_alone,
        Some(LoadTimes {
            load_s: Some(2.5),
            device_open_s: Some(0.2),
            weights_s: Some(2.25),
            host_copy_s: Some(1.5),
            gpu_wait_s: Some(0.01),
            slots_s: Some(0.25),
            buffers_s: Some(0.125),
            sources_s: Some(0.0625),
        })
    );
    assert_eq!(run.decode_alone, vec![(512, 160.0)]);
    // The main run's figures stay beside them.
    assert_eq!(run.load_s, Some(3.72));
    assert_eq!(run.decode, vec![(512, 120.0), (8192, 110.0)]);
    assert!(
        b.r.steps
            .iter()
            .any(|(n, _)| n == "qwgpu 9B BF16 load and decode alone"),
        "{:?}",
        b.r.steps
    );
    assert!(b.r.run(QWGPU, "9B", FP8).unwrap().load_alone.is_none());
    // The stand-in refuses another folder: recorded, the main figures kept.
    b.r.runs[0].load_alone = None;
    b.r.runs[0].decode_alone.clear();
    let moved = vec![("9B".to_string(), BF16.to_string(), root.join("elsewhere"))];
    b.measure_alone(&moved);
    assert!(b.r.runs[0].load_alone.is_none());
    assert!(b.r.runs[0].decode_alone.is_empty());
    assert!(
        b.r.errors
            .iter()
            .any(|e| e.starts_with("qwgpu 9B BF16 load and decode alone: ")
                && e.contains("bad args")),
        "{:?}",
        b.r.errors
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The alone step's command line: the run's first decode context and its
/// decode steps, and none of the main run's other measures (prefill
/// lengths, time to first token, profile, sessions), whatever the run asks
/// for; without a decode context, the shortest run that loads.
#[test]
fn alone_step_decodes_at_the_first_context_and_nothing_else() {
    let arg = |s: &str| s.to_string();
    let root = std::env::temp_dir().join(format!("xtask-aloneargs-{}", std::process::id()));
    let opts = |extra: &[&str]| {
        let mut a = vec![
            arg("--work"),
            root.join("work").display().to_string(),
            arg("--out"),
            root.join("out").display().to_string(),
        ];
        a.extend(extra.iter().map(|s| arg(s)));
        super::Bench::new(super::opts::Opts::parse(&a).unwrap()).unwrap()
    };
    let b = opts(&[
        "--decode-at",
        "1024,8192",
        "--decode",
        "64",
        "--prefill",
        "512,4096",
        "--ttft",
        "4096",
        "--sessions",
        "1,4",
    ]);
    let line = b.alone_args().join(" ");
    assert_eq!(line, "--decode-at 1024 --decode 64");
    for absent in ["--prefill", "--ttft", "--profile", "--sessions", "8192"] {
        assert!(!line.contains(absent), "{absent}: {line}");
    }
    let b = opts(&["--decode-at", "none"]);
    assert_eq!(b.alone_args().join(" "), "--prompt-len 1 --decode 1");
    let b = opts(&["--decode", "0"]);
    assert_eq!(b.alone_args().join(" "), "--prompt-len 1 --decode 1");
    let _ = std::fs::remove_dir_all(&root);
}

/// The canned issue-17 run with the 9B BF16 decode at ctx 512 measured
/// again alone at `alone` tok/s (the main run's 150 kept).
fn canned_decode_alone(alone: f64) -> Results {
    let mut r = canned_multi();
    r.runs[0].decode_alone = vec![(512, alone)];
    r
}

#[test]
fn decode_measured_alone_sits_beside_the_main_run_figure() {
    let md = render(&canned_decode_alone(165.0));
    // The main table keeps the main run's figure.
    assert!(
        md.contains("| 9B | BF16 (BF16) | decode tok/s, ctx 512 | 150.0 | 187.5 | 80% |"),
        "{md}"
    );
    assert!(md.contains("## qwgpu decode measured alone"), "{md}");
    assert!(
        md.contains("in a `qwgpu bench --decode-at N --decode 128` process of its own"),
        "{md}"
    );
    assert!(
        md.contains("| model | weights | measure | qwgpu, alone | qwgpu, main run | alone ÷ main run | alone % of roofline |"),
        "{md}"
    );
    // 165 alone against 150 in the main run; 165 of 187.5 = 88 %.
    assert!(
        md.contains("| 9B | BF16 | decode tok/s, ctx 512 | 165.0 | 150.0 | 1.10× | 88% |"),
        "{md}"
    );
    // The figure survives results.json; a run without one renders no section.
    let back: Results =
        serde_json::from_str(&serde_json::to_string(&canned_decode_alone(165.0)).unwrap()).unwrap();
    assert_eq!(back.runs[0].decode_alone, vec![(512, 165.0)]);
    assert_eq!(render(&back), md);
    assert!(!render(&canned_multi()).contains("decode measured alone"));
}

/// The regression target judges the decode measured alone where a run has
/// one: the main run's 150 tok/s at ctx 512 is 0.90× the baseline's, the
/// figure measured alone is not.
#[test]
fn the_decode_regression_target_judges_the_figure_measured_alone() {
    use super::baseline::Baseline;
    let mut old = canned_multi();
    old.commit = "0ld0000".into();
    old.date = "2026-11-26 01:52 UTC".into();
    old.runs[0].decode[0].1 = 150.0 / 0.9;
    let label = "| No batch-1 decode regression (each qwgpu decode figure ≥ 94% of `0ld0000`'s, 2026-11-26 01:52 UTC)";
    // Without alone figures: the main run's 0.90×, not met.
    let mut new = canned_multi();
    new.baseline = Some(Baseline::of(&old, 6.0));
    let md = render(&new);
    assert!(
        md.contains(&format!(
            "{label} | worst 0.90× (9B BF16 ctx 512) of 2 figures | not met |"
        )),
        "{md}"
    );
    // This run's decode alone at 0.99 of the baseline: met, and said so.
    let mut new = canned_decode_alone(150.0 / 0.9 * 0.99);
    new.baseline = Some(Baseline::of(&old, 6.0));
    let md = render(&new);
    assert!(
        md.contains(&format!(
            "{label} | worst 0.99× (9B BF16 ctx 512, this run's measured alone) of 2 figures; decode \
             measured alone after the GGUF conversion where measured (1 of this run's 2 figures, 0 of the \
             baseline's), else the main run's | met |"
        )),
        "{md}"
    );
    // The baseline's own alone figure (150) is judged in place of its main
    // run's: this run's main 150 is 1.00× of it.
    let mut old_alone = old.clone();
    old_alone.runs[0].decode_alone = vec![(512, 150.0)];
    let b = Baseline::of(&old_alone, 6.0);
    assert!(
        b.decode.contains(&("9B".into(), BF16.into(), 512, 150.0)),
        "{b:?}"
    );
    assert!(b.is_alone("9B", BF16, 512) && !b.is_alone("9B", BF16, 8192));
    let mut new = canned_multi();
    new.runs[0].decode[0].1 = 145.5;
    // Through results.json, as `--report-only --baseline` reads it.
    let path =
        std::env::temp_dir().join(format!("qwgpu-baseline-alone-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&old_alone).unwrap()).unwrap();
    new.baseline = Some(Baseline::load(&path, 6.0).unwrap());
    let _ = std::fs::remove_file(&path);
    let md = render(&new);
    assert!(
        md.contains(&format!(
            "{label} | worst 0.97× (9B BF16 ctx 512, the baseline's measured alone) of 2 figures; decode \
             measured alone after the GGUF conversion where measured (0 of this run's 2 figures, 1 of the \
             baseline's), else the main run's | met |"
        )),
        "{md}"
    );
    // A baseline kept in an older results.json (no "alone" list) still loads.
    let mut v = serde_json::to_value(&new).unwrap();
    v["baseline"].as_object_mut().unwrap().remove("alone");
    let older: Results = serde_json::from_value(v).unwrap();
    assert!(older.baseline.unwrap().alone.is_empty());
}

/// `qwgpu bench --json`'s finer split of the weights streaming reaches the
/// run, and the rest of `weights_s` is what the five parts leave.
#[test]
fn qwgpu_json_gives_the_load_split() {
    let v = serde_json::json!({"model": {"load_s": 3.0, "device_open_s": 0.25,
        "weights_s": 2.5, "host_copy_s": 1.5, "gpu_wait_s": 0.25,
        "slots_s": 0.125, "buffers_s": 0.0625, "sources_s": 0.5}});
    let r = parse_qwgpu("9B", BF16, &v);
    assert_eq!(
        (r.slots_s, r.buffers_s, r.sources_s),
        (Some(0.125), Some(0.0625), Some(0.5))
    );
    let l = r.load_times();
    assert_eq!(l, parse_load(&v["model"]));
    assert_eq!(l.rest_s(), Some(0.0625));
    // An older qwgpu: no split, no rest.
    let old = parse_qwgpu(
        "9B",
        BF16,
        &serde_json::json!({"model": {"weights_s": 2.5, "host_copy_s": 1.5, "gpu_wait_s": 0.25}}),
    );
    assert_eq!(
        (old.slots_s, old.buffers_s, old.sources_s),
        (None, None, None)
    );
    assert_eq!(old.load_times().rest_s(), None);
}

/// A results.json written before the finer split (no `slots_s`,
/// `buffers_s`, `sources_s`, in the runs or their loads measured alone)
/// renders the load table as before: no new columns, the old split cell.
#[test]
fn older_results_without_the_load_split_render_the_old_table() {
    let strip = |r: &Results| -> Results {
        let mut v = serde_json::to_value(r).unwrap();
        for run in v["runs"].as_array_mut().unwrap() {
            let run = run.as_object_mut().unwrap();
            for k in ["slots_s", "buffers_s", "sources_s"] {
                assert!(run.remove(k).is_some(), "{k}");
            }
            if let Some(l) = run.get_mut("load_alone").and_then(|l| l.as_object_mut()) {
                for k in ["slots_s", "buffers_s", "sources_s"] {
                    assert!(l.remove(k).is_some(), "{k}");
                }
            }
        }
        serde_json::from_value(v).unwrap()
    };
    let old_head = "| of which host copies / GPU-copy waits s | peak RssAnon |";
    let md = render(&strip(&canned()));
    assert!(md.contains(old_head), "{md}");
    assert!(
        md.contains("| 9B | BF16 | 6.00 | 18.000 GB | 3.00 | 20.0 | 15% | 0.50 | 4.50 (4.00) | 3.00 / 1.25 | 512 MiB |"),
        "{md}"
    );
    assert!(
        md.lines()
            .any(|l| l == "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"),
        "{md}"
    );
    for gone in ["slot submits", "rest (loader walk)", "none counted twice"] {
        assert!(!md.contains(gone), "{gone}\n{md}");
    }
    let md = render(&strip(&canned_load_alone()));
    assert!(md.contains(old_head), "{md}");
    assert!(
        md.contains("| 9B | BF16 | 2.00 | 6.00 | 18.000 GB | 9.00 | 20.0 | 45% | 0.25 | 1.50 (12.00) | 1.00 / 0.12 | 512 MiB |"),
        "{md}"
    );
    assert!(!md.contains("slot submits"), "{md}");
    // The main run has the split, the load measured alone (judged) not:
    // the table follows the judged figures, as before.
    let mut r = strip(&canned_load_alone());
    r.runs[0].slots_s = Some(0.5);
    assert!(!render(&r).contains("slot submits"));
}

/// The failed 9B FP8 run's load row has as many cells as the load table's header.
fn assert_error_row_as_wide_as_the_load_table(md: &str) {
    let fp8 = md
        .lines()
        .find(|l| l.starts_with("| 9B | FP8 block | error:"))
        .expect("the failed FP8 run's load row");
    let head = md
        .lines()
        .find(|l| l.starts_with("| model | weights | load s"))
        .expect("the load table's header");
    assert_eq!(fp8.matches('|').count(), head.matches('|').count(), "{fp8}");
}
