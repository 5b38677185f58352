//! `qwgpu inspect` reads headers, JSON files and scales only: what it prints,
//! and proof that it neither reads nor copies tensor data.

mod scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn inspect(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(["inspect", "--model"])
        .arg(dir)
        .output()
        .expect("run qwgpu")
}

#[test]
fn inspect_prints_what_a_user_looks_for() {
    let out = inspect(&fixture("moe-fp8-block"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "parameters   188.2 K total (text model), 114.5 K active per token (2 of 8 experts)",
        "on disk      ",
        "F8_E4M3 150.0 KiB",
        "context      4096 tokens (max_position_embeddings), rope theta 10000",
        "eos ids      [2] (config.json), 2 (generation_config.json)",
        "template     chat template present (tokenizer_config.json)",
        "KV cache per 1k tokens",
        "gpu memory   ~",
        "FP8 E4M3 (Qwen `fp8`), weight blocks 128x128, dynamic activation scales",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    // Readable names, not Rust debug names.
    assert!(
        !stdout.contains("Dynamic") && !stdout.contains("E4M3)"),
        "{stdout}"
    );
}

/// The fixture `dense-bf16-text` with a 512 MiB embedding table whose bytes
/// are a hole in a sparse file: the headers are valid, the data never written.
fn huge_sparse_checkpoint(dir: &Path, truncate: bool) {
    const VOCAB: usize = 1 << 23;
    let src = fixture("dense-bf16-text");
    let bytes = std::fs::read(src.join("model.safetensors")).expect("read fixture");
    let header = qwgpu_checkpoint::parse_header(&bytes, &src).expect("fixture header");
    let mut entries = Vec::new();
    let mut data = Vec::new();
    let mut embed = None;
    for t in &header.tensors {
        if t.name == "model.embed_tokens.weight" {
            embed = Some(t.shape[1]);
            continue;
        }
        let start = data.len();
        data.extend_from_slice(&bytes[t.start..t.end]);
        let (name, dtype, shape, end) = (&t.name, &t.dtype_name, &t.shape, data.len());
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{end}]}}"
        ));
    }
    let hidden = embed.expect("embedding in fixture");
    let start = data.len();
    let end = start + VOCAB * hidden * 2;
    entries.push(format!(
        "\"model.embed_tokens.weight\":{{\"dtype\":\"BF16\",\"shape\":[{VOCAB},{hidden}],\"data_offsets\":[{start},{end}]}}"
    ));
    let text = format!("{{{}}}", entries.join(","));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    let total = out.len() + end;
    out.extend_from_slice(&data);
    let path = dir.join("model.safetensors");
    std::fs::write(&path, out).expect("write");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len((if truncate { total - 1 } else { total }) as u64)
        .expect("sparse length");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).expect("config"))
            .expect("json");
    config["vocab_size"] = VOCAB.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
}

/// Under a 200 MB data-segment limit (heap; file maps do not count), a model
/// with a 512 MiB weight inspects fine: no tensor data is copied. The old
/// inspect copied every weight and would abort here. A header that points
/// past the end of the file is still refused.
#[cfg(target_os = "linux")]
#[test]
fn inspect_reads_no_tensor_data() {
    let dir = scratch::Scratch::new();
    huge_sparse_checkpoint(dir.path(), false);
    let run = |d: &Path| {
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -d 200000 && exec \"$0\" inspect --model \"$1\"")
            .arg(env!("CARGO_BIN_EXE_qwgpu"))
            .arg(d)
            .output()
            .expect("run qwgpu under ulimit")
    };
    let out = run(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("BF16 512.2 MiB"), "{stdout}");
    assert!(stdout.contains("268.5 M total"), "{stdout}");

    let bad = scratch::Scratch::new();
    huge_sparse_checkpoint(bad.path(), true);
    let out = run(bad.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("model.safetensors") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `dense-bf16-text` with a malformed `tokenizer_config.json` and
/// `generation_config.json`: inspect says the files are broken (not "no chat
/// template"), and `generate --chat` refuses with the same JSON error.
#[test]
fn malformed_optional_files_are_reported_as_malformed() {
    let dir = scratch::Scratch::new();
    let src = fixture("dense-bf16-text");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy fixture");
    }
    let broken = r#"{"chat_template": "{{ messages }}","#;
    let json_error = serde_json::from_str::<serde_json::Value>(broken)
        .expect_err("malformed")
        .to_string();
    let config = dir.path().join("tokenizer_config.json");
    let generation = dir.path().join("generation_config.json");
    std::fs::write(&config, broken).expect("write");
    std::fs::write(&generation, broken).expect("write");

    let out = inspect(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
            .to_owned()
    };
    let (config, generation) = (config.display(), generation.display());
    assert_eq!(
        line("template "),
        format!("template     chat template unusable: {config}: invalid JSON: {json_error}")
    );
    assert_eq!(
        line("eos ids "),
        format!("eos ids      [2] (config.json); generation_config.json unusable: {generation}: invalid JSON: {json_error}")
    );

    // Without the broken generation_config.json, `generate --chat` reaches
    // the template and names the same file and error.
    std::fs::remove_file(dir.path().join("generation_config.json")).expect("rm");
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "generate",
            "--chat",
            "--backend",
            "cpu",
            "--max-tokens",
            "2",
            "--model",
        ])
        .arg(dir.path())
        .output()
        .expect("run qwgpu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{config}: invalid JSON: {json_error}")),
        "{stderr}"
    );
    // A folder with no template at all says so.
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).expect("rm");
    let out = inspect(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("template     no chat template (none in chat_template.jinja, tokenizer_config.json or chat_template.json)\n"),
        "{stdout}"
    );
}

#[test]
fn inspect_names_4bit_schemes() {
    for (fixture_name, wants) in [
        (
            "moe-gptq-int4",
            &[
                "GPTQ int4 (gptq), group 16, sym true, desc_act false, 4 dynamic rules",
                "int4 group",
            ][..],
        ),
        (
            "dense-awq-int4",
            &["AWQ int4 (gemm), group 16", "int4 group"][..],
        ),
        (
            "dense-ct-w4a16",
            &["compressed-tensors pack-quantized", "int4 group"][..],
        ),
    ] {
        let out = inspect(&fixture(fixture_name));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{fixture_name}: {stderr}",
            stderr = String::from_utf8_lossy(&out.stderr)
        );
        for want in wants {
            assert!(
                stdout.contains(want),
                "{fixture_name}: `{want}` missing:\n{stdout}"
            );
        }
    }
}
