//! In-memory inputs of the packing step, independent of any checkpoint reader.

use std::borrow::Cow;

use qwgpu_checkpoint::{Dtype, TensorView};

use crate::fp8::decode_elements;
use crate::LoadError;

/// One stored tensor: name (used in every error message), dtype, shape and raw
/// little-endian bytes (borrowed from a memory map or owned).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTensor<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
}

impl<'a> SourceTensor<'a> {
    /// A tensor over raw bytes; checks `bytes.len() == numel × dtype size`.
    pub fn new(
        name: impl Into<String>,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: impl Into<Cow<'a, [u8]>>,
    ) -> Result<Self, LoadError> {
        let t = SourceTensor {
            name: name.into(),
            dtype,
            shape,
            bytes: bytes.into(),
        };
        t.check_len()?;
        Ok(t)
    }

    /// An F32 tensor holding `values` (handy for scales built in memory).
    pub fn from_f32(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[f32],
    ) -> Result<Self, LoadError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, Dtype::F32, shape, bytes)
    }

    /// Borrows a checkpoint tensor (canonical name, zero copy).
    pub fn from_view(view: &TensorView<'a>) -> Self {
        SourceTensor {
            name: view.name.to_string(),
            dtype: view.dtype,
            shape: view.shape.to_vec(),
            bytes: Cow::Borrowed(view.bytes),
        }
    }

    /// Number of elements (1 for a 0-d tensor), checked.
    pub fn numel(&self) -> Result<usize, LoadError> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| LoadError::ShapeOverflow {
                tensor: self.name.clone(),
                shape: self.shape.clone(),
            })
    }

    /// Checks that the byte length matches dtype × shape.
    pub fn check_len(&self) -> Result<(), LoadError> {
        let expected = self
            .numel()?
            .checked_mul(self.dtype.size())
            .ok_or_else(|| LoadError::ShapeOverflow {
                tensor: self.name.clone(),
                shape: self.shape.clone(),
            })?;
        if self.bytes.len() != expected {
            return Err(LoadError::ByteLength {
                tensor: self.name.clone(),
                dtype: self.dtype,
                shape: self.shape.clone(),
                bytes: self.bytes.len(),
                expected,
            });
        }
        Ok(())
    }

    /// Exact f32 values of an F32/F16/BF16 tensor. FP8 is refused: it needs its scale.
    pub fn to_f32(&self) -> Result<Vec<f32>, LoadError> {
        if self.dtype.is_fp8() {
            return Err(LoadError::Dtype {
                tensor: self.name.clone(),
                dtype: self.dtype,
                expected: "F32, F16 or BF16 (FP8 needs its scale; use the packing step)".into(),
            });
        }
        self.check_len()?;
        Ok(decode_elements(self.dtype, &self.bytes))
    }

    /// `[rows, cols]` of a 2-D tensor, or a shape error naming the role.
    pub(crate) fn dims2(&self, role: &str) -> Result<(usize, usize), LoadError> {
        match self.shape.as_slice() {
            &[r, c] => Ok((r, c)),
            _ => Err(LoadError::Shape {
                tensor: self.name.clone(),
                got: self.shape.clone(),
                expected: format!("a 2-D matrix ({role})"),
            }),
        }
    }
}

/// One logical shard of a packed weight: name and row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    pub name: String,
    pub rows: usize,
}

impl ShardSpec {
    pub fn new(name: impl Into<String>, rows: usize) -> Self {
        ShardSpec {
            name: name.into(),
            rows,
        }
    }
}

/// What a packed weight is made of: its engine name, its shard table (in row
/// order) and, if known, its column count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSpec {
    pub name: String,
    pub shards: Vec<ShardSpec>,
    /// Expected columns; `None` takes them from the first source.
    pub cols: Option<usize>,
}

impl PackSpec {
    pub fn new(name: impl Into<String>, shards: Vec<ShardSpec>, cols: Option<usize>) -> Self {
        PackSpec {
            name: name.into(),
            shards,
            cols,
        }
    }
}

/// One checkpoint weight feeding a packed weight, with its scales.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceWeight<'a> {
    /// Module name used for ignore-list matching (the weight name without
    /// `.weight` by default), canonical form (`model.layers.…`).
    pub module: String,
    /// A 2-D `[rows, cols]` weight.
    pub weight: SourceTensor<'a>,
    /// The logical shards this tensor holds, in row order (the "tuple shard id":
    /// `in_proj_qkv` covers `q`, `k`, `v`). Their rows must sum to the weight's rows.
    pub covers: Vec<String>,
    /// `weight_scale_inv` / `weight_scale`.
    pub weight_scale: Option<SourceTensor<'a>>,
    /// Static activation scale.
    pub input_scale: Option<SourceTensor<'a>>,
    /// A 4-bit weight, decoded to the canonical form ([`crate::int4`]):
    /// `weight` is then its packed-words tensor (`qweight` /
    /// `weight_packed`), kept for names in messages, and the rows and
    /// columns are the decoded ones.
    pub int4: Option<crate::Int4Source>,
}

impl<'a> SourceWeight<'a> {
    /// A weight covering `covers`, without scales; the module name is the weight
    /// name minus a trailing `.weight`.
    pub fn new(weight: SourceTensor<'a>, covers: &[&str]) -> Self {
        let module = weight
            .name
            .strip_suffix(".weight")
            .unwrap_or(&weight.name)
            .to_string();
        SourceWeight {
            module,
            weight,
            covers: covers.iter().map(|s| s.to_string()).collect(),
            weight_scale: None,
            input_scale: None,
            int4: None,
        }
    }

    /// A decoded 4-bit weight covering `covers`; `words` is its packed-words
    /// tensor (names the source in the shard table and in messages). The
    /// module name is the words' name minus `.qweight` / `.weight_packed`.
    pub fn int4(words: SourceTensor<'a>, decoded: crate::Int4Source, covers: &[&str]) -> Self {
        let module = qwgpu_checkpoint::expected::INT4_WEIGHT_SUFFIXES
            .iter()
            .find_map(|s| words.name.strip_suffix(s))
            .unwrap_or(&words.name)
            .to_string();
        SourceWeight {
            module,
            weight: words,
            covers: covers.iter().map(|s| s.to_string()).collect(),
            weight_scale: None,
            input_scale: None,
            int4: Some(decoded),
        }
    }

    pub fn with_weight_scale(mut self, scale: SourceTensor<'a>) -> Self {
        self.weight_scale = Some(scale);
        self
    }

    pub fn with_input_scale(mut self, scale: SourceTensor<'a>) -> Self {
        self.input_scale = Some(scale);
        self
    }

    pub fn with_module(mut self, module: impl Into<String>) -> Self {
        self.module = module.into();
        self
    }
}
