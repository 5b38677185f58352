//! `qwgpu bench --json` on the tiny fixture (CPU backend: fast and exact): the
//! figures a benchmark collects are there, batched decode included.

use std::process::Command;

#[test]
fn bench_json_reports_prefill_decode_and_batched_decode() {
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "bench",
            "--model",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/dense-bf16-text"
            ),
            "--backend",
            "cpu",
            "--prompt-len",
            "5",
            "--decode",
            "2",
            "--batch",
            "1,3",
            "--batch-prompt",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let model = &v["model"];
    let find = |key: &str| model[key].clone();
    let batched = find("batched_decode");
    let sessions: Vec<u64> = batched
        .as_array()
        .unwrap_or_else(|| panic!("no batched_decode in {v}"))
        .iter()
        .map(|r| r["sessions"].as_u64().unwrap())
        .collect();
    assert_eq!(sessions, vec![1, 3]);
    for r in batched.as_array().unwrap() {
        assert!(r["tok_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let decode = find("decode");
    assert_eq!(decode[0]["tokens"].as_u64(), Some(2), "{v}");
    assert_eq!(find("prefill")[0]["tokens"].as_u64(), Some(5), "{v}");
}

/// Issue 19's bench rows on the GPU: `qwgpu bench` runs a GPTQ-Int4 MoE
/// checkpoint in Qwen's official layout (the tiny fixture; lavapipe in CI)
/// with the options `cargo xtask bench` passes (`--prefill`, `--decode-at`
/// two contexts), and prints a figure for each.
#[test]
fn bench_json_runs_a_gptq_checkpoint_on_the_gpu_at_two_contexts() {
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "bench",
            "--json",
            "--model",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/moe-gptq-int4"
            ),
            "--backend",
            "gpu",
            "--prefill",
            "24",
            "--decode-at",
            "8,32",
            "--decode",
            "3",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let model = &v["model"];
    let rows = |key: &str, by: &str| -> Vec<(u64, f64)> {
        model[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {v}"))
            .iter()
            .map(|r| (r[by].as_u64().unwrap(), r["tok_s"].as_f64().unwrap()))
            .collect()
    };
    let decode = rows("decode", "context");
    assert_eq!(
        decode.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![8, 32],
        "{v}"
    );
    // The asked prefill, and the prefill of each decode context.
    let prefill = rows("prefill", "tokens");
    assert_eq!(
        prefill.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![8, 24, 32],
        "{v}"
    );
    assert!(decode.iter().chain(&prefill).all(|r| r.1 > 0.0), "{v}");
}
