//! Validation of one safetensors file's header, beyond what the `safetensors`
//! crate checks: duplicate names, absurd dims, overflow-checked sizes, offsets
//! that must tile the data section exactly. Works on bytes only (no filesystem),
//! never panics, and runs before the crate so the crate never sees input that
//! could make its debug-build arithmetic overflow.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::json_fields::short;
use crate::{CheckpointError, Dtype};

/// Same limit as the `safetensors` crate.
pub(crate) const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Rank bound: Qwen3.5 tensors have at most 3 dims.
pub(crate) const MAX_RANK: usize = 8;
/// Bound on a single dim (2^32 elements along one axis is already absurd).
pub(crate) const MAX_DIM: u64 = 1 << 32;

/// One tensor entry of a validated header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    pub name: String,
    /// The header's dtype string (e.g. `"BF16"`, `"I64"`).
    pub dtype_name: String,
    /// `Some` for the dtypes this crate supports.
    pub dtype: Option<Dtype>,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A validated header: its tensors in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// First byte of the data section (`8 + header length`).
    pub data_start: usize,
    pub tensors: Vec<HeaderTensor>,
}

/// Bits per element of every dtype name safetensors defines.
fn dtype_bits(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

pub(crate) fn supported_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F8_E4M3" => Dtype::F8E4M3,
        "F8_E5M2" => Dtype::F8E5M2,
        "I32" => Dtype::I32,
        "I64" => Dtype::I64,
        _ => return None,
    })
}

/// A JSON object read as an ordered list of entries, keeping duplicates (serde_json's
/// `Map` would silently keep only the last one).
pub(crate) struct Entries(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The first name occurring twice, if any.
pub(crate) fn first_duplicate(entries: &[(String, Value)]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(entries.len());
    entries
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}

fn herr(file: &Path, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::Header {
        file: file.to_path_buf(),
        detail: detail.into(),
    }
}

fn terr(file: &Path, tensor: &str, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::InvalidTensor {
        file: file.to_path_buf(),
        tensor: tensor.to_string(),
        detail: detail.into(),
    }
}

/// Parses and validates the header of a whole safetensors file held in `bytes`.
/// `file` is only used in error messages.
pub fn parse_header(bytes: &[u8], file: &Path) -> Result<Header, CheckpointError> {
    parse_header_prefix(bytes, bytes.len() as u64, file)
}

/// [`parse_header`] of a file of `file_len` bytes from its first bytes
/// `bytes` (at least the 8-byte length and the header): a reader that
/// fetches ranges of a file (a web page) checks the header before any tensor
/// data is read. Every check of [`parse_header`] is made against `file_len`;
/// the `safetensors` crate's second opinion needs the whole file and is
/// asked only when `bytes` is all of it.
pub fn parse_header_prefix(
    bytes: &[u8],
    file_len: u64,
    file: &Path,
) -> Result<Header, CheckpointError> {
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(herr(
            file,
            format!("file is {file_len} bytes, shorter than the 8-byte header length"),
        ));
    };
    let n = u64::from_le_bytes(*len_bytes);
    if n > MAX_HEADER_BYTES {
        return Err(herr(
            file,
            format!("header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes"),
        ));
    }
    // n <= 1e8, so neither sum below can overflow.
    if 8 + n > file_len {
        return Err(herr(
            file,
            format!("header length {n} runs past the end of the file ({file_len} bytes)"),
        ));
    }
    let data_start = (8 + n) as usize;
    let data_len = file_len - (8 + n);
    let text = bytes
        .get(8..data_start)
        .ok_or_else(|| herr(file, "header range out of bounds"))?;
    let text =
        std::str::from_utf8(text).map_err(|e| herr(file, format!("header is not UTF-8: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return Err(herr(file, "header is not a JSON object"));
    }
    let Entries(entries) = serde_json::from_str(text)
        .map_err(|e| herr(file, format!("header is not valid JSON: {e}")))?;
    if let Some(dup) = first_duplicate(&entries) {
        return Err(CheckpointError::DuplicateTensor {
            file: file.to_path_buf(),
            tensor: dup.to_string(),
        });
    }

    let mut tensors = Vec::with_capacity(entries.len());
    for (name, v) in &entries {
        if name == "__metadata__" {
            let ok = v
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !ok && !v.is_null() {
                return Err(herr(file, "`__metadata__` must map strings to strings"));
            }
            continue;
        }
        tensors.push(parse_entry(file, name, v, data_start, data_len)?);
    }

    // Offsets must tile [0, data_len) exactly: sorted, no overlap, no hole.
    let mut order: Vec<&HeaderTensor> = tensors.iter().collect();
    order.sort_by_key(|t| (t.start, t.end));
    let mut pos = data_start;
    let mut prev: Option<&str> = None;
    for t in &order {
        if t.start != pos {
            let what = if t.start < pos {
                "overlaps"
            } else {
                "leaves a hole after"
            };
            let after = prev.map_or("the start of the data section".to_string(), |p| {
                format!("`{p}`")
            });
            return Err(terr(
                file,
                &t.name,
                format!(
                    "data begins at byte {t_start_data_start} of the data section, which {what} {after} (ends at {pos_data_start})",
                    t_start_data_start = t.start - data_start,
                    pos_data_start = pos - data_start
                ),
            ));
        }
        pos = t.end;
        prev = Some(&t.name);
    }
    if pos as u64 != file_len {
        return Err(herr(
            file,
            format!(
                "tensor data covers {pos_data_start} bytes but the data section is {data_len} bytes",
                pos_data_start = pos - data_start
            ),
        ));
    }

    // Second opinion from the `safetensors` crate; safe now that every offset and
    // size has been checked above without overflow.
    if bytes.len() as u64 != file_len {
        return Ok(Header {
            data_start,
            tensors,
        });
    }
    if let Err(e) = safetensors::SafeTensors::read_metadata(bytes) {
        return Err(herr(
            file,
            format!("rejected by the safetensors crate: {e}"),
        ));
    }

    Ok(Header {
        data_start,
        tensors,
    })
}

fn parse_entry(
    file: &Path,
    name: &str,
    v: &Value,
    data_start: usize,
    data_len: u64,
) -> Result<HeaderTensor, CheckpointError> {
    let Value::Object(m) = v else {
        return Err(terr(
            file,
            name,
            format!("header entry is not an object: {}", short(v)),
        ));
    };
    let dtype_name = match m.get("dtype") {
        Some(Value::String(s)) => s.clone(),
        other => {
            return Err(terr(
                file,
                name,
                format!(
                    "`dtype` must be a string, got {}",
                    other.map_or("nothing".into(), short)
                ),
            ))
        }
    };
    let bits = dtype_bits(&dtype_name)
        .ok_or_else(|| terr(file, name, format!("unknown dtype \"{dtype_name}\"")))?;

    let shape_v = m
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| terr(file, name, "`shape` must be a list of integers"))?;
    if shape_v.len() > MAX_RANK {
        return Err(terr(
            file,
            name,
            format!(
                "rank {shape_v_len} exceeds the bound {MAX_RANK}",
                shape_v_len = shape_v.len()
            ),
        ));
    }
    let mut shape = Vec::with_capacity(shape_v.len());
    let mut numel: u64 = 1;
    for d in shape_v {
        let d = d.as_u64().ok_or_else(|| {
            terr(
                file,
                name,
                format!("shape entry {} is not a non-negative integer", short(d)),
            )
        })?;
        if d > MAX_DIM {
            return Err(terr(
                file,
                name,
                format!("dim {d} exceeds the bound {MAX_DIM}"),
            ));
        }
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| terr(file, name, "element count overflows"))?;
        shape.push(
            usize::try_from(d)
                .map_err(|_| terr(file, name, format!("dim {d} does not fit in usize")))?,
        );
    }
    let total_bits = numel
        .checked_mul(bits)
        .ok_or_else(|| terr(file, name, "byte size overflows"))?;
    if total_bits % 8 != 0 {
        return Err(terr(
            file,
            name,
            format!("{numel} elements of {dtype_name} are not a whole number of bytes"),
        ));
    }
    let size = total_bits / 8;

    let offsets: Vec<Option<u64>> = m
        .get("data_offsets")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Value::as_u64).collect())
        .unwrap_or_default();
    let [Some(begin), Some(end)] = offsets.as_slice() else {
        return Err(terr(
            file,
            name,
            "`data_offsets` must be [begin, end] with non-negative integers",
        ));
    };
    let (begin, end) = (*begin, *end);
    if begin > end || end > data_len {
        return Err(terr(
            file,
            name,
            format!(
                "data_offsets [{begin}, {end}] out of range for a data section of {data_len} bytes"
            ),
        ));
    }
    if end - begin != size {
        return Err(terr(
            file,
            name,
            format!(
                "data_offsets [{begin}, {end}] hold {end_begin} bytes but shape {shape:?} × {dtype_name} needs {size}",
                end_begin = end - begin
            ),
        ));
    }
    // end <= data_len and data_start + data_len == the buffer length, a usize.
    Ok(HeaderTensor {
        name: name.to_string(),
        dtype: supported_dtype(&dtype_name),
        dtype_name,
        shape,
        start: data_start + begin as usize,
        end: data_start + end as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data_len));
        v
    }

    #[test]
    fn valid_header_with_metadata_and_zero_sized_tensor() {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"BF16","shape":[0,4],"data_offsets":[8,8]},"b":{"dtype":"U64","shape":[],"data_offsets":[8,16]}}  "#;
        let bytes = file(h, 16);
        let hd = parse_header(&bytes, Path::new("x")).expect("valid");
        assert_eq!(hd.data_start, 8 + h.len());
        let names: Vec<&str> = hd.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "z", "b"]);
        assert_eq!(hd.tensors[0].dtype, Some(Dtype::F32));
        assert_eq!(hd.tensors[2].dtype, None, "U64 parses but is not supported");
        assert_eq!(
            (hd.tensors[2].start, hd.tensors[2].end),
            (8 + h.len() + 8, 8 + h.len() + 16)
        );
    }

    #[test]
    fn a_header_parses_from_the_files_first_bytes_and_its_length() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}}"#;
        let whole = file(h, 14);
        let prefix = &whole[..8 + h.len()];
        let full = parse_header(&whole, Path::new("x")).expect("whole file");
        let head = parse_header_prefix(prefix, whole.len() as u64, Path::new("x"))
            .expect("header and length");
        assert_eq!(head.data_start, full.data_start);
        let ranges = |hd: &Header| -> Vec<(String, usize, usize)> {
            hd.tensors
                .iter()
                .map(|t| (t.name.clone(), t.start, t.end))
                .collect()
        };
        assert_eq!(ranges(&head), ranges(&full));
        // The length is checked as the whole file's would be.
        for len in [whole.len() as u64 - 1, whole.len() as u64 + 1] {
            let e = parse_header_prefix(prefix, len, Path::new("x")).expect_err("wrong length");
            assert!(e.to_string().contains("data section"), "{e}");
        }
    }

    #[test]
    fn sub_byte_dtype_must_fill_whole_bytes() {
        let h = r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
        let e = parse_header(&file(h, 2), Path::new("x")).expect_err("1.5 bytes");
        assert!(e.to_string().contains("whole number of bytes"), "{e}");
    }

    #[test]
    fn bounded_random_bytes_never_panic() {
        // A plain fallback for the cargo-fuzz target: seeded, bounded, mutating a valid file.
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}}"#;
        let base = file(h, 14);
        let seed = 0xC0FFEE_u64;
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            if next() % 8 == 0 {
                b.truncate((next() as usize) % b.len());
            }
            let _ = parse_header(&b, Path::new("x"));
            crate::fuzzing::fuzz_parse(&b);
        }
    }
}
