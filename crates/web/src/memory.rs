//! A checkpoint held in memory (bytes fetched by a page or embedded in a
//! test): `config.json` and one safetensors file, packed by the same loader
//! as a checkpoint folder.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use qwgpu_checkpoint::{canonical_name, parse_header, CheckpointError, ModelConfig};
use qwgpu_loader::{LoadError, PackedModel, SourceTensor};

/// Why an in-memory checkpoint could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
    #[error("{file}: tensor `{tensor}` has dtype {dtype}, which the loader does not read")]
    Dtype {
        file: String,
        tensor: String,
        dtype: String,
    },
}

impl From<LoadError> for MemoryError {
    fn from(e: LoadError) -> Self {
        Self::Load(Box::new(e))
    }
}

/// The tensors of one safetensors file's bytes, by canonical name (borrowed,
/// no copy); `file` names it in errors.
pub fn tensors_from_bytes<'a>(
    bytes: &'a [u8],
    file: &str,
) -> Result<BTreeMap<String, SourceTensor<'a>>, MemoryError> {
    let header = parse_header(bytes, Path::new(file))?;
    let mut out = BTreeMap::new();
    for t in header.tensors {
        let Some(name) = canonical_name(&t.name) else {
            continue;
        };
        let dtype = t.dtype.ok_or_else(|| MemoryError::Dtype {
            file: file.to_string(),
            tensor: t.name.clone(),
            dtype: t.dtype_name.clone(),
        })?;
        // The header parser checked the range against the file's length.
        let data = Cow::Borrowed(&bytes[t.start..t.end]);
        let tensor = SourceTensor::new(name.clone(), dtype, t.shape, data)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Packs a model from `config.json`'s text and one safetensors file's bytes.
pub fn packed_from_bytes(config_json: &str, model: &[u8]) -> Result<PackedModel, MemoryError> {
    let config = ModelConfig::from_json_str(config_json, Path::new("config.json"))?;
    let tensors = tensors_from_bytes(model, "model.safetensors")?;
    Ok(qwgpu_loader::load_from_source(&tensors, &config, None)?)
}
