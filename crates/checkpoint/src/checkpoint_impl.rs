//! Opening a folder: config, shard discovery, header validation, canonical
//! names, and the tensors-vs-config check — all before any tensor data is read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::files;
use crate::header::HeaderTensor;
use crate::index::parse_index;
use crate::names::canonical_name;
use crate::shard::Shard;
use crate::validate::validate_tensors;
use crate::{Checkpoint, CheckpointError, Dtype, ModelConfig, OpenOptions, TensorView};

pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// One kept tensor.
pub(crate) struct Entry {
    pub source: String,
    pub shard: usize,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

pub(crate) struct Inner {
    dir: PathBuf,
    config: ModelConfig,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Entry>,
    skipped: Vec<String>,
    unexpected: Vec<String>,
    strict: bool,
}

/// The model folder must exist and be a directory (a file given as `--model`
/// is named as such, not reported as a missing `config.json`).
fn check_dir(dir: &Path) -> Result<(), CheckpointError> {
    // A missing folder is reported through its missing `config.json` below.
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(CheckpointError::NotAFile {
            path: dir.to_path_buf(),
            kind: files::kind_of(&meta.file_type()).to_string(),
            expected: "a model folder (directory)".into(),
        }),
        _ => Ok(()),
    }
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which weights file(s) to read, decided as transformers decides.
enum Weights {
    Single(PathBuf),
    Index(PathBuf),
}

/// `transformers_weights` of config.json: the weights file transformers loads
/// instead of the default names (a `.safetensors` file or a
/// `.safetensors.index.json` in the folder).
fn explicit_weights(text: &str, path: &Path) -> Result<Option<String>, CheckpointError> {
    let root: serde_json::Value = files::parse_json(text, path)?;
    let err = |detail: String| CheckpointError::Config {
        path: path.to_path_buf(),
        field: "transformers_weights".into(),
        detail,
    };
    match root.get("transformers_weights") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(name)) => {
            if !(name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")) {
                return Err(err(format!(
                    "`{name}` is neither a .safetensors file nor a .safetensors.index.json"
                )));
            }
            if let Some(problem) = crate::index::shard_name_problem(name) {
                return Err(err(format!("`{name}` {problem}")));
            }
            Ok(Some(name.clone()))
        }
        Some(v) => Err(err(format!(
            "expected a file name, got {}",
            crate::json_fields::short(v)
        ))),
    }
}

/// The weights transformers would load from `dir`: the file config.json names
/// in `transformers_weights`, else `model.safetensors`, else the index. When
/// both default files exist the single one wins; the user is told.
fn choose_weights(dir: &Path, explicit: Option<String>) -> Result<Weights, CheckpointError> {
    let index_path = dir.join(INDEX_FILE);
    let single_path = dir.join(SINGLE_FILE);
    if let Some(name) = explicit {
        let path = dir.join(&name);
        tracing::info!(file = %path.display(), "config.json names the weights file (transformers_weights)");
        return Ok(if name.ends_with(".index.json") {
            Weights::Index(path)
        } else {
            Weights::Single(path)
        });
    }
    if files::exists(&single_path) {
        if files::exists(&index_path) {
            tracing::warn!(
                dir = %dir.display(),
                "both {SINGLE_FILE} and {INDEX_FILE} exist: loading {SINGLE_FILE}, as Hugging Face transformers does, and ignoring the index"
            );
        }
        Ok(Weights::Single(single_path))
    } else if files::exists(&index_path) {
        Ok(Weights::Index(index_path))
    } else {
        Err(io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither {SINGLE_FILE} nor {INDEX_FILE} found"),
            ),
        ))
    }
}

pub(crate) fn open(dir: &Path, opts: &OpenOptions) -> Result<Checkpoint, CheckpointError> {
    check_dir(dir)?;
    let config_path = dir.join(CONFIG_FILE);
    let config_text = files::read_text_file(&config_path, files::MAX_CONFIG_BYTES)?;
    let config = ModelConfig::from_json_str(&config_text, &config_path)?;
    let explicit = explicit_weights(&config_text, &config_path)?;

    let (shards, index, index_path) = match choose_weights(dir, explicit)? {
        Weights::Single(path) => (vec![Shard::open(&path)?], None, path),
        Weights::Index(index_path) => {
            let text = files::read_text_file(&index_path, files::MAX_INDEX_BYTES)?;
            let index = parse_index(&text, &index_path)?;
            let mut shards = Vec::with_capacity(index.shards.len());
            for name in &index.shards {
                let p = dir.join(name);
                if !files::exists(&p) {
                    return Err(CheckpointError::ShardPath {
                        index: index_path.clone(),
                        shard: name.clone(),
                        detail: format!("listed in the index but {} does not exist", p.display()),
                    });
                }
                shards.push(Shard::open(&p)?);
            }
            (shards, Some(index), index_path)
        }
    };

    // Where each source tensor lives; a name in two shards is an error.
    let mut located: HashMap<&str, (usize, &HeaderTensor)> = HashMap::new();
    for (si, shard) in shards.iter().enumerate() {
        for t in &shard.header.tensors {
            if let Some((first, _)) = located.insert(&t.name, (si, t)) {
                return Err(CheckpointError::TensorInTwoShards {
                    tensor: t.name.clone(),
                    first: shards
                        .get(first)
                        .map(|s| s.path.clone())
                        .unwrap_or_default(),
                    second: shard.path.clone(),
                });
            }
        }
    }

    if let Some(index) = &index {
        check_index_agrees(&index_path, index, &shards, &located)?;
    }

    let mut tensors: BTreeMap<String, Entry> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (si, shard) in shards.iter().enumerate() {
        for t in &shard.header.tensors {
            let Some(canonical) = canonical_name(&t.name) else {
                tracing::debug!(tensor = %t.name, file = %shard.path.display(), "skipping tensor not used by the text model");
                skipped.push(t.name.clone());
                continue;
            };
            let Some(dtype) = t.dtype else {
                return Err(CheckpointError::UnsupportedDtype {
                    file: shard.path.clone(),
                    tensor: t.name.clone(),
                    dtype: t.dtype_name.clone(),
                    expected: "F32, F16, BF16, F8_E4M3, F8_E5M2 I32 (packed 4-bit words) or I64"
                        .into(),
                });
            };
            if let Some(prev) = tensors.get(&canonical) {
                return Err(CheckpointError::DuplicateCanonicalName {
                    dir: dir.to_path_buf(),
                    canonical,
                    first: prev.source.clone(),
                    second: t.name.clone(),
                });
            }
            tensors.insert(
                canonical,
                Entry {
                    source: t.name.clone(),
                    shard: si,
                    dtype,
                    shape: t.shape.clone(),
                    start: t.start,
                    end: t.end,
                },
            );
        }
    }
    skipped.sort();

    let files: Vec<&Path> = shards.iter().map(|s| s.path.as_path()).collect();
    let unexpected = validate_tensors(dir, &config, &tensors, &files)?;
    if !unexpected.is_empty() {
        if opts.strict {
            return Err(CheckpointError::UnexpectedTensors {
                dir: dir.to_path_buf(),
                names: unexpected,
            });
        }
        for name in &unexpected {
            tracing::warn!(tensor = %name, dir = %dir.display(), "unexpected tensor (not used by the model)");
        }
    }

    Ok(Checkpoint {
        inner: Inner {
            dir: dir.to_path_buf(),
            config,
            shards,
            tensors,
            skipped,
            unexpected,
            strict: opts.strict,
        },
    })
}

/// The index and the headers must agree exactly: every indexed tensor is in
/// its shard, and every stored tensor is indexed to the shard that holds it.
fn check_index_agrees(
    index_path: &Path,
    index: &crate::index::ShardIndex,
    shards: &[Shard],
    located: &HashMap<&str, (usize, &HeaderTensor)>,
) -> Result<(), CheckpointError> {
    let shard_name = |i: usize| index.shards.get(i).cloned().unwrap_or_default();
    let mismatch = |tensor: &str, detail: String| CheckpointError::IndexMismatch {
        index: index_path.to_path_buf(),
        tensor: tensor.to_string(),
        detail,
    };
    let mut indexed: HashMap<&str, usize> = HashMap::with_capacity(index.weight_map.len());
    for (name, want) in &index.weight_map {
        indexed.insert(name, *want);
        match located.get(name.as_str()) {
            None => {
                return Err(mismatch(
                    name,
                    format!(
                        "listed in the index for shard `{}` but absent from it",
                        shard_name(*want)
                    ),
                ))
            }
            Some((got, _)) if got != want => {
                return Err(mismatch(
                    name,
                    format!(
                        "indexed to shard `{shard_name_want}` but stored in `{shard_name_got}`",
                        shard_name_want = shard_name(*want),
                        shard_name_got = shard_name(*got)
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    for (si, shard) in shards.iter().enumerate() {
        for t in &shard.header.tensors {
            if !indexed.contains_key(t.name.as_str()) {
                return Err(mismatch(
                    &t.name,
                    format!(
                        "stored in shard `{}` but not listed in the index",
                        shard_name(si)
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn dir(c: &Checkpoint) -> &Path {
    &c.inner.dir
}

pub(crate) fn config(c: &Checkpoint) -> &ModelConfig {
    &c.inner.config
}

pub(crate) fn get<'a>(c: &'a Checkpoint, name: &str) -> Option<TensorView<'a>> {
    let (key, e) = c.inner.tensors.get_key_value(name)?;
    let shard = c.inner.shards.get(e.shard)?;
    Some(TensorView {
        name: key,
        source_name: &e.source,
        file: &shard.path,
        dtype: e.dtype,
        shape: &e.shape,
        bytes: shard.bytes(e.start, e.end)?,
    })
}

pub(crate) fn names(c: &Checkpoint) -> Vec<&str> {
    c.inner.tensors.keys().map(String::as_str).collect()
}

pub(crate) fn skipped(c: &Checkpoint) -> &[String] {
    &c.inner.skipped
}

pub(crate) fn unexpected(c: &Checkpoint) -> &[String] {
    &c.inner.unexpected
}

pub(crate) fn strict(c: &Checkpoint) -> bool {
    c.inner.strict
}

/// Every tensor of every header (kept, skipped or unexpected), with its file.
pub(crate) fn stored(c: &Checkpoint) -> Vec<(&Path, &HeaderTensor)> {
    c.inner
        .shards
        .iter()
        .flat_map(|s| s.header.tensors.iter().map(move |t| (s.path.as_path(), t)))
        .collect()
}

pub(crate) fn prefetch(c: &Checkpoint, bytes: &[u8]) {
    if let Some(shard) = c.inner.shards.iter().find(|s| s.holds(bytes)) {
        shard.prefetch(bytes);
    }
}

pub(crate) fn will_need(c: &Checkpoint, bytes: &[u8]) {
    if let Some(shard) = c.inner.shards.iter().find(|s| s.holds(bytes)) {
        shard.will_need(bytes);
    }
}

pub(crate) fn read_into(
    c: &Checkpoint,
    t: &TensorView<'_>,
    at: usize,
    dst: &mut [u8],
) -> Result<(), CheckpointError> {
    match c.inner.shards.iter().find(|s| s.holds(t.bytes)) {
        Some(shard) => shard.read_at(t, at, dst),
        None => Err(CheckpointError::TensorRead {
            file: t.file.to_path_buf(),
            tensor: t.name.to_string(),
            offset: 0,
            len: dst.len(),
            detail: "the tensor is not from this checkpoint".into(),
        }),
    }
}

pub(crate) fn files(c: &Checkpoint) -> Vec<PathBuf> {
    c.inner.shards.iter().map(|s| s.path.clone()).collect()
}
