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
