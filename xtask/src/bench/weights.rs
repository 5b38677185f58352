//! Bytes of weights a decode step reads, from a Hugging Face checkpoint's
//! safetensors headers and config: the decode roofline's denominator.
//!
//! Per token every tensor is read once, except the input embedding table (a
//! row gather) unless it is tied to the head (then it is read whole as the
//! head), the routed experts (only `num_experts_per_tok` of `num_experts`
//! are read), and the MTP and vision tensors qwgpu skips. A GPTQ checkpoint
//! reads `qweight`, `qzeros` and `scales` (its `g_idx`, checked at load, is
//! not read by a decode step); each `qweight` int32 holds 8 weights.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one checkpoint folder holds, as the roofline needs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckpointWeights {
    /// Bytes of every tensor in the safetensors files.
    pub total_bytes: u64,
    /// Bytes a decode step reads (weights and their scales).
    pub bytes_per_token: f64,
    /// Parameters of the layers' matrix products per token (routed experts
    /// scaled by top-k / experts; no embedding, no head): 2 × this is the
    /// prefill FLOPs per token outside attention.
    pub matmul_params_per_token: f64,
    pub largest_tensor_bytes: u64,
    pub tied: bool,
    /// Bytes of the LM head (the embedding table when tied): the part of a
    /// decode token outside the layers.
    #[serde(default)]
    pub head_bytes: u64,
}

/// One tensor of a safetensors header.
struct Tensor {
    name: String,
    shape: Vec<u64>,
    bytes: u64,
}

fn read_header(path: &Path) -> Result<Vec<Tensor>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: no header length", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!(
            "{path_display}: header of {len} bytes",
            path_display = path.display()
        );
    }
    let mut text = vec![0u8; len as usize];
    f.read_exact(&mut text).with_context(|| {
        format!(
            "{path_display}: header shorter than {len} bytes",
            path_display = path.display()
        )
    })?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&text)
        .with_context(|| format!("{}: header is not a JSON object", path.display()))?;
    let mut out = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let offsets: Vec<u64> =
            serde_json::from_value(v["data_offsets"].clone()).with_context(|| {
                format!(
                    "{path_display}: {name} data_offsets",
                    path_display = path.display()
                )
            })?;
        let shape: Vec<u64> = serde_json::from_value(v["shape"].clone()).with_context(|| {
            format!(
                "{path_display}: {name} shape",
                path_display = path.display()
            )
        })?;
        if offsets.len() != 2 || offsets[1] < offsets[0] {
            bail!(
                "{path_display}: {name} has data_offsets {offsets:?}",
                path_display = path.display()
            );
        }
        out.push(Tensor {
            name,
            shape,
            bytes: offsets[1] - offsets[0],
        });
    }
    Ok(out)
}

/// The text part of a config (`text_config` of a release wrapper, else the top level).
fn text_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(v.get("text_config").cloned().unwrap_or(v))
}

pub fn from_dir(dir: &Path) -> Result<CheckpointWeights> {
    let cfg = text_config(dir)?;
    let experts_fraction = match (
        cfg["num_experts_per_tok"].as_f64(),
        cfg["num_experts"].as_f64(),
    ) {
        (Some(k), Some(e)) if e > 0.0 => k / e,
        _ => 1.0,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors", dir.display());
    }
    let mut tensors = Vec::new();
    for f in &files {
        tensors.extend(read_header(f)?);
    }
    let has_head = tensors.iter().any(|t| t.name.ends_with("lm_head.weight"));
    // Tied: no separate head on disk, the embedding table is the head.
    let tied = !has_head;
    let mut w = CheckpointWeights {
        tied,
        ..Default::default()
    };
    for t in &tensors {
        w.total_bytes += t.bytes;
        w.largest_tensor_bytes = w.largest_tensor_bytes.max(t.bytes);
        let n = &t.name;
        if n.starts_with("mtp.") || n.contains("visual.") {
            continue;
        }
        let head = if tied {
            n.ends_with("embed_tokens.weight")
        } else {
            n.ends_with("lm_head.weight")
        };
        if head {
            w.head_bytes += t.bytes;
        }
        if n.ends_with("embed_tokens.weight") && !tied {
            continue;
        }
        if n.ends_with(".g_idx") {
            continue;
        }
        let routed = n.contains(".mlp.experts.");
        let frac = if routed { experts_fraction } else { 1.0 };
        w.bytes_per_token += t.bytes as f64 * frac;
        let qweight = t.shape.len() == 2 && n.ends_with(".qweight");
        let matrix = t.shape.len() == 2 && n.ends_with(".weight") || routed && t.shape.len() == 3;
        if (matrix || qweight) && n.contains(".layers.") && !n.ends_with("conv1d.weight") {
            let per_element = if qweight { 8.0 } else { 1.0 };
            w.matmul_params_per_token +=
                t.shape.iter().product::<u64>() as f64 * per_element * frac;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name)
    }

    #[test]
    fn a_tied_embedding_is_read_whole_as_the_head() {
        let w = from_dir(&fixture("dense-bf16-text")).unwrap();
        assert!(w.tied, "no lm_head.weight on disk");
        assert!(w.head_bytes > 0 && w.head_bytes < w.total_bytes);
        assert_eq!(w.bytes_per_token, w.total_bytes as f64);
        // Layer matrices only: in_proj_qkv [128, 32] of layer 0 is one of them.
        assert!(w.matmul_params_per_token >= 128.0 * 32.0);
        assert!(w.matmul_params_per_token * 2.0 < w.bytes_per_token);
    }

    #[test]
    fn moe_reads_top_k_of_the_routed_experts() {
        let dir = fixture("moe-bf16-text");
        let w = from_dir(&dir).unwrap();
        let all = read_header(&dir.join("model.safetensors")).unwrap();
        let routed: u64 = all
            .iter()
            .filter(|t| t.name.contains(".mlp.experts."))
            .map(|t| t.bytes)
            .sum();
        assert!(routed > 0);
        let cfg = text_config(&dir).unwrap();
        let frac =
            cfg["num_experts_per_tok"].as_f64().unwrap() / cfg["num_experts"].as_f64().unwrap();
        let embed = if w.tied {
            0
        } else {
            all.iter()
                .filter(|t| t.name.ends_with("embed_tokens.weight"))
                .map(|t| t.bytes)
                .sum()
        };
        let want = (w.total_bytes - routed - embed) as f64 + routed as f64 * frac;
        let head: u64 = all
            .iter()
            .filter(|t| t.name == "lm_head.weight")
            .map(|t| t.bytes)
            .sum();
        assert!(!w.tied && head > 0);
        assert_eq!(w.head_bytes, head);
        assert!(
            (w.bytes_per_token - want).abs() < 1e-6,
            "{w_bytes_per_token} vs {want}",
            w_bytes_per_token = w.bytes_per_token
        );
    }

    #[test]
    fn fp8_block_counts_scales_and_one_byte_weights() {
        let bf16 = from_dir(&fixture("dense-bf16-text")).unwrap();
        let fp8 = from_dir(&fixture("dense-fp8-block")).unwrap();
        assert!(fp8.bytes_per_token < bf16.bytes_per_token);
        assert_eq!(fp8.matmul_params_per_token, bf16.matmul_params_per_token);
    }

    /// The GPTQ fixture stores the BF16 fixture's kind of model with its MLPs
    /// and routed experts as 4-bit words: the same matrix parameters, fewer
    /// bytes, and its `g_idx` not counted as read.
    #[test]
    fn gptq_counts_packed_words_as_eight_weights_and_skips_g_idx() {
        for (bf16, gptq) in [
            ("moe-bf16-wrapper", "moe-gptq-int4"),
            ("dense-bf16-wrapper-sharded", "dense-gptq-int4"),
        ] {
            let b = from_dir(&fixture(bf16)).unwrap();
            let dir = fixture(gptq);
            let q = from_dir(&dir).unwrap();
            assert_eq!(
                q.matmul_params_per_token, b.matmul_params_per_token,
                "{gptq}"
            );
            assert!(q.bytes_per_token < b.bytes_per_token, "{gptq}");
            let all = read_header(&dir.join("model.safetensors")).unwrap();
            let g_idx: u64 = all
                .iter()
                .filter(|t| t.name.ends_with(".g_idx"))
                .map(|t| t.bytes)
                .sum();
            assert!(g_idx > 0, "{gptq}");
            assert!(q.bytes_per_token + g_idx as f64 * 0.25 <= q.total_bytes as f64);
        }
    }

    #[test]
    fn a_folder_without_weights_is_an_error() {
        let dir = std::env::temp_dir().join(format!("xtask-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let err = from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("no *.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
