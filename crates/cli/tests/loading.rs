//! What a user sees for a malformed model folder: one test per message, each
//! through the `qwgpu` binary (`inspect` opens folders as `generate` does).

mod scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A copy of the `dense-bf16-text` fixture's config and weights.
fn copy_fixture(dir: &Path) {
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("dense-bf16-text").join(f), dir.join(f)).expect("copy");
    }
}

/// `(success, stdout, stderr)` of `qwgpu inspect --model dir`.
fn inspect(dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args(["inspect", "--model"])
        .arg(dir)
        .output()
        .expect("run qwgpu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fails_with(dir: &Path, wants: &[&str]) {
    let (ok, _, stderr) = inspect(dir);
    assert!(!ok, "succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for want in wants {
        assert!(stderr.contains(want), "missing `{want}` in: {stderr}");
    }
}

#[cfg(unix)]
#[test]
fn fifo_config_is_refused_without_blocking() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    let config = d.path().join("config.json");
    std::fs::remove_file(&config).expect("rm");
    let ok = Command::new("mkfifo")
        .arg(&config)
        .status()
        .expect("mkfifo")
        .success();
    assert!(ok);
    fails_with(
        d.path(),
        &[
            "config.json",
            "is a FIFO (named pipe), expected a regular file",
        ],
    );
}

#[test]
fn directory_in_place_of_the_weights_is_named_as_such() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    let weights = d.path().join("model.safetensors");
    std::fs::remove_file(&weights).expect("rm");
    std::fs::create_dir(&weights).expect("mkdir");
    fails_with(
        d.path(),
        &["model.safetensors: is a directory, expected a regular file"],
    );
}

#[test]
fn config_with_byte_order_mark_names_file_and_position() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    let text = std::fs::read_to_string(d.path().join("config.json")).expect("read");
    std::fs::write(d.path().join("config.json"), format!("\u{feff}{text}")).expect("write");
    fails_with(
        d.path(),
        &["config.json", "line 1, column 1", "byte-order mark"],
    );
}

#[test]
fn invalid_config_json_names_line_and_column() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    std::fs::write(
        d.path().join("config.json"),
        "{\n  \"vocab_size\": 512,\n  oops\n}",
    )
    .expect("write");
    fails_with(
        d.path(),
        &["config.json", "invalid JSON at line 3, column 3"],
    );
}

/// Both layouts present: the single file is loaded, as transformers does, and
/// the user is told the index is ignored.
#[test]
fn single_file_beside_an_index_is_loaded_with_a_warning() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        r#"{"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors"}}"#,
    )
    .expect("write index");
    let (ok, stdout, stderr) = inspect(d.path());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("in 1 file(s)"), "{stdout}");
    assert!(
        stderr.contains("loading model.safetensors, as Hugging Face transformers does"),
        "{stderr}"
    );
}

#[test]
fn tensors_under_an_unknown_prefix_are_reported() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    let src = std::fs::read(fixture("dense-bf16-text").join("model.safetensors")).expect("read");
    let header = qwgpu_checkpoint::parse_header(&src, Path::new("fixture")).expect("header");
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for t in &header.tensors {
        let start = data.len();
        data.extend_from_slice(&src[t.start..t.end]);
        let name = t.name.replacen("model.", "transformer.", 1);
        let (dtype, shape, end) = (&t.dtype_name, &t.shape, data.len());
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{end}]}}"
        ));
    }
    let text = format!("{{{}}}", entries.join(","));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(d.path().join("model.safetensors"), out).expect("write");
    fails_with(
        d.path(),
        &[&format!(
            "{} tensor(s) under `transformer.` were not recognised",
            header.tensors.len()
        )],
    );
}

/// Rewrites `src`'s safetensors file into `dst` with `edit(name, dtype, bytes)`
/// applied to every tensor (which may change its dtype name and bytes, and
/// returns whether to keep it).
fn rewrite_weights(src: &Path, dst: &Path, edit: impl Fn(&str, &mut String, &mut Vec<u8>) -> bool) {
    let bytes = std::fs::read(src).expect("read");
    let header = qwgpu_checkpoint::parse_header(&bytes, src).expect("header");
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for t in &header.tensors {
        let mut dtype = t.dtype_name.clone();
        let mut raw = bytes[t.start..t.end].to_vec();
        if !edit(&t.name, &mut dtype, &mut raw) {
            continue;
        }
        let start = data.len();
        data.extend_from_slice(&raw);
        let (name, shape, end) = (&t.name, &t.shape, data.len());
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{end}]}}"
        ));
    }
    let text = format!("{{{}}}", entries.join(","));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(dst, out).expect("write");
}

/// `q_proj` stored F32 beside BF16 `k_proj` / `v_proj`: legal in HF, loaded
/// as F32 with a warning.
#[test]
fn mixed_dtypes_in_one_fused_weight_load_with_a_warning() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    rewrite_weights(
        &fixture("dense-bf16-text").join("model.safetensors"),
        &d.path().join("model.safetensors"),
        |name, dtype, raw| {
            if name == "model.layers.3.self_attn.q_proj.weight" {
                // BF16 is the high half of an F32: widened exactly.
                *dtype = "F32".into();
                *raw = raw
                    .chunks_exact(2)
                    .flat_map(|c| [0, 0, c[0], c[1]])
                    .collect();
            }
            true
        },
    );
    let (ok, stdout, stderr) = inspect(d.path());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("1 × F32 scale none"), "{stdout}");
    assert!(
        stderr.contains("different dtypes: converting them to F32"),
        "{stderr}"
    );
}

/// An FP8 NaN encoding in a weight is refused under `--strict`, naming the
/// tensor as the file spells it and the file.
#[test]
fn fp8_nan_weight_is_refused_under_strict() {
    let d = scratch::Scratch::new();
    let src = fixture("dense-fp8-block");
    for entry in std::fs::read_dir(&src).expect("fixture") {
        let p = entry.expect("entry").path();
        let name = p.file_name().expect("name").to_owned();
        if name != "model.safetensors" && p.is_file() {
            std::fs::copy(&p, d.path().join(name)).expect("copy");
        }
    }
    // The release wrapper spelling: the message must use it too.
    let target = "model.language_model.layers.0.mlp.down_proj.weight";
    rewrite_weights(
        &src.join("model.safetensors"),
        &d.path().join("model.safetensors"),
        |name, dtype, raw| {
            if name == target {
                assert_eq!(dtype, "F8_E4M3");
                raw[3] = 0x7F;
            }
            true
        },
    );
    let written = std::fs::read(d.path().join("model.safetensors")).expect("read");
    assert_ne!(
        written,
        std::fs::read(src.join("model.safetensors")).expect("read")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
        .args([
            "generate",
            "--backend",
            "cpu",
            "--strict",
            "--max-tokens",
            "1",
            "--model",
        ])
        .arg(d.path())
        .output()
        .expect("run qwgpu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("NaN/infinity encoding"), "{stderr}");
    assert!(
        stderr.contains(&format!("`{target}` in ")) && stderr.contains("model.safetensors"),
        "{stderr}"
    );
}

/// FP8 weights in a folder whose config has no `quantization_config`: read
/// with their stored scales and a warning; a weight without a scale then says
/// the config is missing too.
#[test]
fn fp8_without_quantization_config_says_so() {
    let d = scratch::Scratch::new();
    let src = fixture("dense-fp8-block");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).expect("config"))
            .expect("json");
    if let Some(m) = config["text_config"].as_object_mut() {
        m.remove("quantization_config");
    }
    if let Some(m) = config.as_object_mut() {
        m.remove("quantization_config");
    }
    std::fs::write(d.path().join("config.json"), config.to_string()).expect("write");
    let weights = src.join("model.safetensors");
    rewrite_weights(&weights, &d.path().join("model.safetensors"), |_, _, _| {
        true
    });
    let (ok, _, stderr) = inspect(d.path());
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("config.json has no quantization_config"),
        "{stderr}"
    );

    let scale = "model.language_model.layers.0.mlp.down_proj.weight_scale_inv";
    rewrite_weights(
        &weights,
        &d.path().join("model.safetensors"),
        |name, _, _| name != scale,
    );
    fails_with(
        d.path(),
        &[
            "model.layers.0.mlp.down_proj.weight",
            "has no scale",
            "no `quantization_config` either",
        ],
    );
}

/// Scales are always checked at load (they are read anyway): a NaN scale is
/// refused even by `inspect`, naming the scale and where its weight is stored.
#[test]
fn nan_scale_is_refused_at_load() {
    let d = scratch::Scratch::new();
    let src = fixture("dense-fp8-block");
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).expect("copy");
    let scale = "model.language_model.layers.0.mlp.down_proj.weight_scale_inv";
    rewrite_weights(
        &src.join("model.safetensors"),
        &d.path().join("model.safetensors"),
        |name, dtype, raw| {
            if name == scale {
                // BF16 NaN: exponent all ones, non-zero mantissa.
                assert_eq!(dtype, "BF16");
                raw[..2].copy_from_slice(&[0xC0, 0x7F]);
            }
            true
        },
    );
    fails_with(
        d.path(),
        &[
            "down_proj.weight_scale_inv",
            "is NaN; scales must be finite and > 0",
            "`model.language_model.layers.0.mlp.down_proj.weight` in ",
        ],
    );
}

/// JSON files are read with a size cap (a sparse 17 MiB config here).
#[test]
fn oversized_config_is_refused() {
    let d = scratch::Scratch::new();
    copy_fixture(d.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.path().join("config.json"))
        .expect("open")
        .set_len(17 << 20)
        .expect("set_len");
    fails_with(
        d.path(),
        &[
            "config.json",
            "17825792 bytes exceed the 16777216-byte limit",
        ],
    );
}

/// The folder's other files (tokenizer, its config, generation config, chat
/// template) are refused as FIFOs before reading too: `generate` never blocks.
#[cfg(unix)]
#[test]
fn fifo_tokenizer_files_are_refused_without_blocking() {
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        let d = scratch::Scratch::new();
        for entry in std::fs::read_dir(fixture("dense-bf16-text")).expect("fixture") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, d.path().join(p.file_name().expect("name"))).expect("copy");
        }
        let target = d.path().join(name);
        let _ = std::fs::remove_file(&target);
        assert!(Command::new("mkfifo")
            .arg(&target)
            .status()
            .expect("mkfifo")
            .success());
        let mut child = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args([
                "generate",
                "--backend",
                "cpu",
                "--max-tokens",
                "1",
                "--chat",
                "--model",
            ])
            .arg(d.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run qwgpu");
        // A blocked read would never end: give it 60 s, then fail.
        let started = std::time::Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed().as_secs() > 60 {
                let _ = child.kill();
                panic!("{name}: qwgpu blocked on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: succeeded: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("FIFO"),
            "{name}: {stderr}"
        );
    }
}
