//! The bundled model: the tiny random-weight `dense-bf16-text` fixture, embedded
//! in the binary so `qwgpu generate` works anywhere without a download.

use std::path::PathBuf;

use anyhow::{Context, Result};

macro_rules! fixture_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../tests/fixtures/dense-bf16-text/", $name)).as_slice(),
        )
    };
}

const FILES: &[(&str, &[u8])] = &[
    fixture_file!("config.json"),
    fixture_file!("generation_config.json"),
    fixture_file!("model.safetensors"),
    fixture_file!("tokenizer.json"),
    fixture_file!("tokenizer_config.json"),
];

/// Name shown to the user.
pub const NAME: &str = "dense-bf16-text (tiny random-weight Qwen3.5 test model)";

/// Writes the bundled files to a per-version cache folder (once) and returns it.
pub fn materialize() -> Result<PathBuf> {
    let total: usize = FILES.iter().map(|(_, b)| b.len()).sum();
    let dir = std::env::temp_dir().join(format!(
        "qwgpu-bundled-{}-{total}",
        env!("CARGO_PKG_VERSION")
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        let fresh = std::fs::metadata(&path)
            .map(|m| m.len() == bytes.len() as u64)
            .unwrap_or(false);
        if !fresh {
            // Write then rename, so a concurrent run never sees a half-written file.
            let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(dir)
}
