//! The tensors of one 4-bit checkpoint weight and the result of decoding
//! them: the canonical form, or (activation-order GPTQ) plain f32 values.

use crate::int4::repack::Repack;
use crate::int4::Int4Weights;
use crate::{LoadError, SourceTensor};

/// The checkpoint tensors of one 4-bit linear weight, by role. Which names
/// fill which role depends on the format (see [`crate::Int4Rule`]).
#[derive(Debug, Clone, Default)]
pub struct Int4Tensors<'a> {
    /// `qweight` (GPTQ, AWQ) or `weight_packed` (compressed-tensors).
    pub packed: Option<SourceTensor<'a>>,
    /// `qzeros` / `weight_zero_point`.
    pub zeros: Option<SourceTensor<'a>>,
    /// `scales` / `weight_scale`.
    pub scales: Option<SourceTensor<'a>>,
    /// `g_idx` / `weight_g_idx`.
    pub g_idx: Option<SourceTensor<'a>>,
    /// compressed-tensors' `weight_shape` (`[N, K]`).
    pub shape: Option<SourceTensor<'a>>,
}

/// One 4-bit source weight `[rows, cols]` in the canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Source {
    pub rows: usize,
    pub cols: usize,
    pub q: Int4Weights,
    /// Words not repacked yet (`q.words` empty): the loader repacks them
    /// from the source's packed tensor straight into the packed weight, on
    /// several threads ([`crate::PackOptions::threads`]).
    pub(crate) deferred: Option<Repack>,
}

/// What a decoder does with the packed words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Words {
    /// Checks their dtype, shape and length only (a layout-only load).
    Skip,
    /// Repacks them now, on this thread.
    Now,
    /// Checks them, and leaves the repack to the packing
    /// ([`Int4Source::deferred`]).
    Defer,
}

impl Words {
    /// The public decoders' `with_words`.
    pub fn from_flag(with_words: bool) -> Self {
        if with_words {
            Words::Now
        } else {
            Words::Skip
        }
    }

    /// The canonical words of `rows` rows under `repack` (empty unless
    /// [`Words::Now`]) and what is left deferred.
    pub fn apply(self, repack: Repack, bytes: &[u8], rows: usize) -> (Vec<u32>, Option<Repack>) {
        match self {
            Words::Skip => (Vec::new(), None),
            Words::Now => (repack.all(bytes, rows), None),
            Words::Defer => (Vec::new(), Some(repack)),
        }
    }
}

impl Int4Source {
    /// The borrowed view (for validation and dequantization).
    pub fn view(&self) -> crate::Int4View<'_> {
        crate::Int4View {
            rows: self.rows,
            cols: self.cols,
            group_size: self.q.group_size,
            words: &self.q.words,
            scales: &self.q.scales,
            zeros: &self.q.zeros,
        }
    }
}

/// A decoded 4-bit weight.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// The canonical form.
    Int4(Int4Source),
    /// Row-major f32 `[rows, cols]` (`(q - zero) · scale`, exact): for
    /// activation-order weights, whose groups are not column ranges.
    Dense {
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    },
}

impl Decoded {
    /// `[rows, cols]`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Decoded::Int4(s) => (s.rows, s.cols),
            Decoded::Dense { rows, cols, .. } => (*rows, *cols),
        }
    }

    /// Row-major f32 `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            Decoded::Int4(s) => s.view().dequantize(),
            Decoded::Dense { values, .. } => values.clone(),
        }
    }
}

/// Error builder for one weight of one format.
pub(crate) struct Ctx<'t> {
    pub tensor: &'t str,
    pub format: &'static str,
}

impl Ctx<'_> {
    pub fn err(&self, detail: impl Into<String>) -> LoadError {
        LoadError::Int4 {
            tensor: self.tensor.to_string(),
            format: self.format.to_string(),
            detail: detail.into(),
        }
    }

    /// A required companion, or an error naming it.
    pub fn need<'s, 'a>(
        &self,
        t: &'s Option<SourceTensor<'a>>,
        role: &str,
        looked_for: &str,
    ) -> Result<&'s SourceTensor<'a>, LoadError> {
        t.as_ref().ok_or_else(|| {
            self.err(format!(
                "its {role} are missing (looked for `{looked_for}`)"
            ))
        })
    }

    /// The words of an I32 tensor of `shape` when `read`, else only its
    /// dtype, shape and length checked (a layout-only load reads no weight bytes).
    pub fn words_if(
        &self,
        read: bool,
        t: &SourceTensor<'_>,
        shape: &[usize],
        what: &str,
    ) -> Result<Vec<u32>, LoadError> {
        if t.dtype != qwgpu_checkpoint::Dtype::I32 {
            return Err(self.err(format!(
                "`{name}` is {dtype}, expected I32 packed words",
                name = t.name,
                dtype = t.dtype
            )));
        }
        if t.shape != shape {
            return Err(self.err(format!(
                "`{name}` has shape {got:?}, expected {shape:?} ({what})",
                name = t.name,
                got = t.shape
            )));
        }
        t.check_len()?;
        if !read {
            return Ok(Vec::new());
        }
        Ok(t.bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The words of an I32 tensor of `shape` (as unsigned bit patterns).
    pub fn words(
        &self,
        t: &SourceTensor<'_>,
        shape: &[usize],
        what: &str,
    ) -> Result<Vec<u32>, LoadError> {
        self.words_if(true, t, shape, what)
    }

    /// Float values (F32/F16/BF16, finite) of a `shape` tensor.
    pub fn floats(
        &self,
        t: &SourceTensor<'_>,
        shape: &[usize],
        what: &str,
    ) -> Result<Vec<f32>, LoadError> {
        use qwgpu_checkpoint::Dtype;
        if !matches!(t.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(self.err(format!(
                "`{name}` is {dtype}, expected F16, BF16 or F32 scales",
                name = t.name,
                dtype = t.dtype
            )));
        }
        if t.shape != shape {
            return Err(self.err(format!(
                "`{name}` has shape {got:?}, expected {shape:?} ({what})",
                name = t.name,
                got = t.shape
            )));
        }
        let v = t.to_f32()?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(LoadError::ScaleValue {
                tensor: t.name.clone(),
                index: i,
                value: v[i],
            });
        }
        Ok(v)
    }

    /// Integer values of an I32 (or I64) vector of `len`.
    pub fn ints(
        &self,
        t: &SourceTensor<'_>,
        len: usize,
        what: &str,
    ) -> Result<Vec<i64>, LoadError> {
        use qwgpu_checkpoint::Dtype;
        let size = match t.dtype {
            Dtype::I32 => 4,
            Dtype::I64 => 8,
            other => {
                return Err(self.err(format!(
                    "`{name}` is {other}, expected I32 or I64 ({what})",
                    name = t.name
                )))
            }
        };
        if t.shape != [len] {
            return Err(self.err(format!(
                "`{name}` has shape {got:?}, expected [{len}] ({what})",
                name = t.name,
                got = t.shape
            )));
        }
        t.check_len()?;
        Ok(t.bytes
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                if size == 4 {
                    i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                } else {
                    i64::from_le_bytes(b)
                }
            })
            .collect())
    }

    /// Checks that `group_size` (`None`: one group per row) divides `cols`;
    /// returns `(group_size, groups)`.
    pub fn groups(
        &self,
        group_size: Option<usize>,
        cols: usize,
    ) -> Result<(usize, usize), LoadError> {
        let g = group_size.unwrap_or(cols);
        if g == 0 || !cols.is_multiple_of(g) {
            return Err(self.err(format!(
                "group size {g} does not divide the {cols} input columns"
            )));
        }
        Ok((g, cols / g))
    }
}

/// Nibble `j` of `word`.
pub(crate) fn nibble(word: u32, j: usize) -> u8 {
    ((word >> (4 * (j % 8))) & 0xF) as u8
}

/// Where the groups of an activation-order weight are not column ranges:
/// `Ok(None)` when `g_idx` (if any) is `c / group_size` for every column,
/// `Ok(Some(per-column groups))` otherwise (each checked `< groups`).
pub(crate) fn column_groups(
    cx: &Ctx<'_>,
    g_idx: Option<&SourceTensor<'_>>,
    cols: usize,
    group_size: usize,
    groups: usize,
) -> Result<Option<Vec<usize>>, LoadError> {
    let Some(t) = g_idx else { return Ok(None) };
    let v = cx.ints(t, cols, "one group index per input column")?;
    if let Some((c, &g)) = v
        .iter()
        .enumerate()
        .find(|(_, &g)| g < 0 || g as usize >= groups)
    {
        return Err(cx.err(format!(
            "`{name}`[{c}] = {g} is outside 0..{groups}",
            name = t.name
        )));
    }
    if v.iter()
        .enumerate()
        .all(|(c, &g)| g as usize == c / group_size)
    {
        return Ok(None);
    }
    Ok(Some(v.into_iter().map(|g| g as usize).collect()))
}

/// `(q - zero) · scale` for every element, with per-column groups: the dense
/// form of an activation-order weight. `q(r, c)`, `zero(r, g)`, `scale(r, g)`.
pub(crate) fn dense(
    rows: usize,
    cols: usize,
    col_group: &[usize],
    q: impl Fn(usize, usize) -> u8,
    zero: impl Fn(usize, usize) -> u8,
    scale: impl Fn(usize, usize) -> f32,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for (c, &g) in col_group.iter().enumerate().take(cols) {
            out.push((f32::from(q(r, c)) - f32::from(zero(r, g))) * scale(r, g));
        }
    }
    out
}
