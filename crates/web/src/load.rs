//! Reading a model folder into packed weights on a page: the shards' headers
//! first (ranges), so a model beyond what the page can hold is refused before
//! its weights are fetched; then each shard in ranged chunks with progress.

use std::collections::BTreeMap;
use std::path::Path;

use qwgpu_checkpoint::{parse_index, ModelConfig};
use qwgpu_loader::PackedModel;

use crate::source::ModelSource;
use crate::{memory, WebError};

/// The most weight bytes a page holds while packing them: wasm32 addresses
/// 4 GiB, and the fetched shards and the packed weights coexist until the upload.
pub const MAX_IN_MEMORY: u64 = 1_500_000_000;
/// Bytes per ranged read (a progress report each).
const CHUNK: u64 = 32 << 20;
/// Bound on a safetensors header (as the native reader's).
const MAX_HEADER: u64 = 100 << 20;

/// `(bytes done, bytes total)` of the weights fetched so far.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// The shard files of the folder (`model.safetensors.index.json`'s, else one).
async fn shard_files(src: &ModelSource) -> Result<Vec<String>, WebError> {
    let index = "model.safetensors.index.json";
    if src.has(index).await {
        let text = src.read_text(index).await?;
        Ok(parse_index(&text, Path::new(index))?.shards)
    } else {
        Ok(vec!["model.safetensors".into()])
    }
}

/// A shard's length, from its header (two ranged reads).
async fn shard_len(src: &ModelSource, file: &str) -> Result<u64, WebError> {
    let head = src.read_range(file, Some((0, 8))).await?;
    let n = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
    if n == 0 || n > MAX_HEADER {
        return Err(WebError::Source {
            file: src.describe(file),
            detail: format!("header length {n}, expected 1..={MAX_HEADER}"),
        });
    }
    let mut bytes = vec![0u8; 8];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes.extend(src.read_range(file, Some((8, 8 + n))).await?);
    let text = String::from_utf8_lossy(&bytes[8..]);
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| WebError::Source {
        file: src.describe(file),
        detail: format!("invalid header JSON: {e}"),
    })?;
    let data_end = json
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    Ok(8 + n + data_end)
}

/// Fetches and packs the folder's text model; `progress` hears about the weights' bytes.
pub async fn load(src: &ModelSource, progress: Progress<'_>) -> Result<PackedModel, WebError> {
    let config_text = src.read_text("config.json").await?;
    let config = ModelConfig::from_json_str(&config_text, Path::new("config.json"))?;
    let files = shard_files(src).await?;
    let mut lens = Vec::with_capacity(files.len());
    for f in &files {
        lens.push(shard_len(src, f).await?);
    }
    let total: u64 = lens.iter().sum();
    if total > MAX_IN_MEMORY {
        return Err(WebError::TooLarge {
            bytes: total,
            limit: MAX_IN_MEMORY,
        });
    }
    let mut shards = Vec::with_capacity(files.len());
    let mut done = 0u64;
    progress(done, total);
    for (f, &len) in files.iter().zip(&lens) {
        let mut bytes = Vec::with_capacity(len as usize);
        let mut at = 0;
        while at < len {
            let end = (at + CHUNK).min(len);
            bytes.extend(src.read_range(f, Some((at, end))).await?);
            done += end - at;
            at = end;
            progress(done, total);
        }
        shards.push(bytes);
    }
    let mut tensors = BTreeMap::new();
    for (f, bytes) in files.iter().zip(&shards) {
        tensors.extend(memory::tensors_from_bytes(bytes, f)?);
    }
    Ok(qwgpu_loader::load_from_source(&tensors, &config, None)
        .map_err(memory::MemoryError::from)?)
}
