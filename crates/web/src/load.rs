//! Reading a model folder onto the page's GPU one part at a time: the
//! shards' headers first (ranged reads), then each part of the model (the
//! embedding, each layer, the final norm, the head) fetched with ranged reads
//! of its tensors, packed by the loader ([`qwgpu_loader::pack_part`], the
//! weights left in the fetched bytes), uploaded from there, and dropped
//! before the next part is fetched. The page holds one
//! part at a time, never a shard or the whole model: wasm32 addresses 4 GiB,
//! and a model's weights may be more.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use qwgpu_checkpoint::{canonical_name, parse_header_prefix, parse_index, Dtype, ModelConfig};
use qwgpu_kernels::GpuContext;
use qwgpu_loader::{pack_part, part_ids, PackOptions, PartId, SourceTensor};
use qwgpu_model::gpu::{FetchedTensors, GpuModel};

use crate::memory::MemoryError;
use crate::source::ModelSource;
use crate::WebError;

/// The most bytes of one part of a model (a layer, the embedding table) a
/// page fetches at once (the weights are uploaded from the fetched bytes,
/// not packed beside them; what the loader widens or decodes is), within
/// wasm32's 4 GiB.
pub const MAX_PART_BYTES: u64 = 1_500_000_000;
/// Bound on a safetensors header (as the native reader's).
const MAX_HEADER: u64 = 100 << 20;

/// `(bytes done, bytes total)` of the weights fetched so far.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Where a tensor is stored: its shard and its bytes there.
struct Stored {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

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

/// A shard's first bytes (length and header, two ranged reads) and the
/// file's length as the header gives it (a shorter file fails its reads).
async fn shard_header(src: &ModelSource, file: &str) -> Result<(Vec<u8>, u64), WebError> {
    let head = src.read_range(file, Some((0, 8))).await?;
    let n = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
    if n == 0 || n > MAX_HEADER {
        return Err(WebError::Source {
            file: src.describe(file),
            detail: format!("header length {n}, expected 1..={MAX_HEADER}"),
        });
    }
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend(src.read_range(file, Some((8, 8 + n))).await?);
    let json: serde_json::Value =
        serde_json::from_slice(&bytes[8..]).map_err(|e| WebError::Source {
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
    Ok((bytes, 8 + n + data_end))
}

/// Every tensor of the shards by canonical name, from their headers.
async fn catalog(
    src: &ModelSource,
    files: &[String],
) -> Result<BTreeMap<String, Stored>, WebError> {
    let mut out = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let (prefix, len) = shard_header(src, f).await?;
        let header = parse_header_prefix(&prefix, len, Path::new(f))?;
        for t in header.tensors {
            let Some(name) = canonical_name(&t.name) else {
                continue;
            };
            let dtype = t.dtype.ok_or_else(|| MemoryError::Dtype {
                file: f.clone(),
                tensor: t.name.clone(),
                dtype: t.dtype_name.clone(),
            })?;
            let stored = Stored {
                file: i,
                dtype,
                shape: t.shape,
                start: t.start as u64,
                end: t.end as u64,
            };
            out.insert(name, stored);
        }
    }
    Ok(out)
}

/// The tensors `id` covers, fetched: runs of tensors adjacent in one shard
/// come in one ranged read each; per canonical name, its run and range.
async fn fetch_part(
    src: &ModelSource,
    files: &[String],
    cat: &BTreeMap<String, Stored>,
    id: PartId,
    done: &mut u64,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FetchedTensors, WebError> {
    let mut covered: Vec<(&String, &Stored)> = cat.iter().filter(|(n, _)| id.covers(n)).collect();
    covered.sort_by_key(|(_, s)| (s.file, s.start));
    // (file, start, end) of each run.
    let mut runs: Vec<(usize, u64, u64)> = Vec::new();
    let mut at = HashMap::new();
    for (name, s) in covered {
        match runs.last_mut() {
            Some((f, _, end)) if *f == s.file && *end == s.start => *end = s.end,
            _ => runs.push((s.file, s.start, s.end)),
        }
        let r = runs.len() - 1;
        let base = runs[r].1;
        at.insert(
            name.clone(),
            (r, (s.start - base) as usize..(s.end - base) as usize),
        );
    }
    let mut fetched = FetchedTensors {
        runs: Vec::with_capacity(runs.len()),
        at,
    };
    for &(f, a, b) in &runs {
        fetched
            .runs
            .push(src.read_range(&files[f], Some((a, b))).await?);
        *done += b - a;
        progress(*done, total);
    }
    Ok(fetched)
}

/// Bytes of `id`'s tensors.
fn part_bytes(cat: &BTreeMap<String, Stored>, id: PartId) -> u64 {
    cat.iter()
        .filter(|(n, _)| id.covers(n))
        .map(|(_, s)| s.end - s.start)
        .sum()
}

/// Streams the folder's text model onto `ctx`, one part at a time, each part
/// at most `max_part` bytes ([`MAX_PART_BYTES`] on a page); `progress`
/// hears about the weights' bytes fetched.
pub async fn load(
    src: &ModelSource,
    ctx: &Arc<GpuContext>,
    max_chunk: usize,
    max_part: u64,
    progress: Progress<'_>,
) -> Result<GpuModel, WebError> {
    let config_text = src.read_text("config.json").await?;
    let config = ModelConfig::from_json_str(&config_text, Path::new("config.json"))?;
    let files = shard_files(src).await?;
    let cat = catalog(src, &files).await?;
    let ids = part_ids(&config);
    // Every part is sized before any weight is fetched.
    for &id in &ids {
        let bytes = part_bytes(&cat, id);
        if bytes > max_part {
            return Err(WebError::TooLarge {
                part: format!("{id:?}"),
                bytes,
                limit: max_part,
            });
        }
    }
    let total: u64 = ids.iter().map(|&id| part_bytes(&cat, id)).sum();
    let mut done = 0u64;
    progress(done, total);
    let mut quiet = |_: u64| {};
    let mut loader = GpuModel::part_loader(ctx, &config.text, &mut quiet)?;
    // Weights stay in the fetched bytes (no packed copy beside them); the
    // uploader reads them from there.
    let opts = PackOptions {
        borrow_sources: true,
        ..PackOptions::default()
    };
    for id in ids {
        let fetched = fetch_part(src, &files, &cat, id, &mut done, total, progress).await?;
        // Every tensor named (the loader checks the whole set), bytes only
        // for this part's.
        let source: BTreeMap<String, SourceTensor<'_>> = cat
            .iter()
            .map(|(name, s)| {
                let bytes: &[u8] = fetched.get(name).unwrap_or(&[]);
                let t = SourceTensor {
                    name: name.clone(),
                    dtype: s.dtype,
                    shape: s.shape.clone(),
                    bytes: Cow::Borrowed(bytes),
                };
                (name.clone(), t)
            })
            .collect();
        let part = pack_part(&source, &config, &opts, id).map_err(MemoryError::from)?;
        drop(source);
        // The fetched bytes go once the part is on the GPU.
        loader.add_fetched(&part, fetched)?;
    }
    Ok(loader.finish(max_chunk)?)
}
