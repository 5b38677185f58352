//! The packing step: several checkpoint tensors (each covering one or more
//! logical shards) → one [`PackedWeight`] with its shard table and scales.
//!
//! Correct by construction for the sglang/vLLM bug family (sglang #23062,
//! vLLM #38517/#35289/#47396): every declared shard must be loaded exactly once,
//! a one-element scale is broadcast to every shard its tensor covers, a `[k]`
//! scale is sliced one per shard, per-channel and block scales stay with their
//! own rows, and every output scale comes from a source value (no sentinels).

use qwgpu_checkpoint::quant::{ActivationScheme, Fp8Format};
use qwgpu_checkpoint::Dtype;

use crate::fp8::decode_elements;
use crate::policy::{ModuleRule, QuantPolicy, SchemeKind};
use crate::scheme::{detect_input_scale, detect_weight_scale, SourceScheme};
use crate::{
    ActivationQuant, BlockSegment, LoadError, PackSpec, PackedWeight, ScaleScheme, Shard,
    SourceWeight,
};

/// Scale tensor names tried for a weight tensor name.
pub fn weight_scale_names(weight: &str) -> Vec<String> {
    match weight.strip_suffix(".weight") {
        Some(m) => vec![format!("{m}.weight_scale_inv"), format!("{m}.weight_scale")],
        None => vec![format!("{weight}_scale_inv"), format!("{weight}_scale")],
    }
}

/// Static activation-scale tensor name for a weight tensor name.
pub fn input_scale_name(weight: &str) -> String {
    match weight.strip_suffix(".weight") {
        Some(m) => format!("{m}.input_scale"),
        None => format!("{weight}_input_scale"),
    }
}

/// One validated source, placed in the packed weight.
struct Placed<'s, 'a> {
    src: &'s SourceWeight<'a>,
    /// Table indices of the covered shards (consecutive).
    shards: Vec<usize>,
    rows: usize,
    rule: ModuleRule,
    scheme: Option<SourceScheme>,
    input: Option<Vec<f32>>,
}

/// Packs `sources` into the weight described by `spec`.
///
/// Checks, each a [`LoadError`] naming the tensors: every declared shard loaded
/// exactly once; each source's shards consecutive in the table and its rows
/// equal to theirs; equal column counts; one storage dtype (FP8 next to
/// unquantized is [`LoadError::PartlyQuantized`]); FP8 weights have a scale
/// whose shape fits a scheme, and the scheme matches the config; modules the
/// config excludes are not FP8; scales finite and > 0.
///
/// The sources may come in any order; rows are laid out in shard-table order.
pub fn pack(
    spec: &PackSpec,
    sources: &[SourceWeight<'_>],
    policy: &QuantPolicy,
) -> Result<PackedWeight, LoadError> {
    pack_with(spec, sources, policy, &PackOptions::default())
}

/// [`pack`] with options: layout only (no data copied: for inspection) and
/// the FP8 value scan (strict loading).
pub fn pack_with(
    spec: &PackSpec,
    sources: &[SourceWeight<'_>],
    policy: &QuantPolicy,
    opts: &PackOptions,
) -> Result<PackedWeight, LoadError> {
    let packed = spec.name.as_str();
    let offsets = table_offsets(spec)?;
    let declared: Vec<String> = spec.shards.iter().map(|s| s.name.clone()).collect();
    let mut owner: Vec<Option<usize>> = vec![None; spec.shards.len()];
    let mut cols = spec.cols;
    let mut placed: Vec<Placed<'_, '_>> = Vec::with_capacity(sources.len());

    for (si, src) in sources.iter().enumerate() {
        let w = &src.weight;
        let (rows, c) = match &src.int4 {
            Some(q) => (q.rows, q.cols),
            None => {
                w.check_len()?;
                w.dims2("packed weight source")?
            }
        };
        if rows == 0 || c == 0 {
            return Err(LoadError::Shape {
                tensor: w.name.clone(),
                got: w.shape.clone(),
                expected: "non-zero rows and columns".into(),
            });
        }
        if src.covers.is_empty() {
            return Err(LoadError::ShardTable {
                packed: packed.into(),
                detail: format!("tensor `{}` covers no shard", w.name),
            });
        }
        let mut idx = Vec::with_capacity(src.covers.len());
        for name in &src.covers {
            let i =
                declared
                    .iter()
                    .position(|d| d == name)
                    .ok_or_else(|| LoadError::UnknownShard {
                        packed: packed.into(),
                        tensor: w.name.clone(),
                        shard: name.clone(),
                        declared: declared.clone(),
                    })?;
            if let Some(Some(prev)) = owner.get(i) {
                return Err(LoadError::ShardLoadedTwice {
                    packed: packed.into(),
                    shard: name.clone(),
                    first: sources
                        .get(*prev)
                        .map_or_else(String::new, |p| p.weight.name.clone()),
                    second: w.name.clone(),
                });
            }
            if let Some(slot) = owner.get_mut(i) {
                *slot = Some(si);
            }
            idx.push(i);
        }
        if idx.windows(2).any(|p| p[1] != p[0] + 1) {
            return Err(LoadError::ShardOrder {
                packed: packed.into(),
                tensor: w.name.clone(),
                covers: src.covers.clone(),
                declared: declared.clone(),
            });
        }
        let expected_rows: usize = idx
            .iter()
            .filter_map(|&i| spec.shards.get(i))
            .map(|s| s.rows)
            .sum();
        if rows != expected_rows {
            return Err(LoadError::RowsMismatch {
                packed: packed.into(),
                tensor: w.name.clone(),
                rows,
                expected: expected_rows,
                covers: src.covers.clone(),
            });
        }
        match cols {
            None => cols = Some(c),
            Some(expected) if expected != c => {
                return Err(LoadError::ColsMismatch {
                    packed: packed.into(),
                    tensor: w.name.clone(),
                    cols: c,
                    expected,
                })
            }
            Some(_) => {}
        }
        placed.push(Placed {
            src,
            shards: idx,
            rows,
            rule: policy.rule(&src.module),
            scheme: None,
            input: None,
        });
    }

    let missing: Vec<String> = owner
        .iter()
        .zip(&declared)
        .filter(|(o, _)| o.is_none())
        .map(|(_, n)| n.clone())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::ShardNotLoaded {
            packed: packed.into(),
            shards: missing,
        });
    }
    placed.sort_by_key(|p| p.shards.first().copied().unwrap_or(0));

    if placed.iter().any(|p| p.src.int4.is_some()) {
        let ordered: Vec<&SourceWeight<'_>> = placed.iter().map(|p| p.src).collect();
        let cols = cols.unwrap_or(0);
        let (dtype, scale) = crate::int4::join(packed, &ordered, opts)?;
        return Ok(PackedWeight {
            name: packed.into(),
            dtype,
            rows: spec.shards.iter().map(|s| s.rows).sum(),
            cols,
            data: Vec::new(),
            shards: shard_table(spec, &offsets, &owner, sources),
            scale,
            activation: ActivationQuant::None,
        });
    }

    for p in &mut placed {
        classify(p, policy.is_quantized())?;
        if opts.check_fp8_values {
            check_fp8_values(&p.src.weight)?;
        }
    }
    let dtype = check_dtypes(packed, &placed)?;
    let scale = merge_schemes(packed, &placed, &offsets, spec)?;
    let activation = activation(&placed, spec.shards.len())?;

    let cols = cols.unwrap_or(0);
    let total_rows: usize = spec.shards.iter().map(|s| s.rows).sum();
    let mut data = Vec::new();
    // Only bytes that are the checkpoint's own can be read back from it by
    // name: a source decoded on the host (GPTQ act-order → F32) keeps the
    // packed tensor's name but not its bytes.
    let borrowed = opts.borrow_sources
        && placed.iter().all(|p| {
            p.src.weight.dtype == dtype
                && matches!(p.src.weight.bytes, std::borrow::Cow::Borrowed(_))
        });
    if !opts.layout_only && !borrowed {
        let bytes: usize = placed
            .iter()
            .map(|p| p.src.weight.bytes.len() / p.src.weight.dtype.size() * dtype.size())
            .sum();
        data = crate::recycle::take(bytes);
        for p in &placed {
            let w = &p.src.weight;
            if w.dtype == dtype {
                data.extend_from_slice(&w.bytes);
            } else {
                // Only unquantized sources reach here (check_dtypes), widened exactly.
                data.extend(
                    decode_elements(w.dtype, &w.bytes)
                        .into_iter()
                        .flat_map(|v| encode_f32_as(dtype, v)),
                );
            }
        }
    }
    let shards = shard_table(spec, &offsets, &owner, sources);
    Ok(PackedWeight {
        name: packed.into(),
        dtype,
        rows: total_rows,
        cols,
        data,
        shards,
        scale,
        activation,
    })
}

/// The packed weight's shard table: each declared shard with its rows and
/// the tensor that held them.
fn shard_table(
    spec: &PackSpec,
    offsets: &[usize],
    owner: &[Option<usize>],
    sources: &[SourceWeight<'_>],
) -> Vec<Shard> {
    spec.shards
        .iter()
        .zip(offsets)
        .zip(owner)
        .map(|((s, &row_offset), o)| Shard {
            name: s.name.clone(),
            source: o
                .and_then(|i| sources.get(i))
                .map_or_else(String::new, |src| src.weight.name.clone()),
            row_offset,
            rows: s.rows,
        })
        .collect()
}

/// Row offset of every shard; rejects empty tables, zero rows, duplicate names.
fn table_offsets(spec: &PackSpec) -> Result<Vec<usize>, LoadError> {
    let bad = |detail: String| LoadError::ShardTable {
        packed: spec.name.clone(),
        detail,
    };
    if spec.shards.is_empty() {
        return Err(bad("no shards declared".into()));
    }
    let mut offsets = Vec::with_capacity(spec.shards.len());
    let mut next = 0usize;
    for (i, s) in spec.shards.iter().enumerate() {
        if s.rows == 0 {
            return Err(bad(format!("shard `{}` has 0 rows", s.name)));
        }
        if spec.shards.iter().take(i).any(|o| o.name == s.name) {
            return Err(bad(format!("shard `{}` declared twice", s.name)));
        }
        offsets.push(next);
        next = next
            .checked_add(s.rows)
            .ok_or_else(|| bad("total rows overflow".into()))?;
    }
    Ok(offsets)
}

/// What [`pack_with`] does besides packing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Work out shard table, dtype and scales only: `data` stays empty and no
    /// weight byte is read (scales are read).
    pub layout_only: bool,
    /// Scan FP8 weights for NaN encodings (and E5M2 infinities): reads every
    /// FP8 byte once, so only under strict loading.
    pub check_fp8_values: bool,
    /// A weight whose sources are all stored in its dtype comes back with
    /// empty `data` ([`PackedWeight::borrowed_sources`] names the tensors):
    /// its packed bytes are the sources' bytes one after another, which the
    /// caller reads from the source itself, saving a host copy (the GPU upload
    /// streams them from the checkpoint's map). Weights that widen a source
    /// (mixed unquantized dtypes) are packed.
    pub borrow_sources: bool,
    /// Threads that repack 4-bit weights into the canonical form (`0` and
    /// `1`: the calling thread alone). The loading functions that open a
    /// checkpoint themselves use [`load_threads`](crate::load_threads).
    pub threads: usize,
}

/// Refuses FP8 weights holding NaN (E4M3FN `0x7F`/`0xFF`; E5M2 exponent 31
/// with a mantissa) or E5M2 infinity encodings.
fn check_fp8_values(w: &crate::SourceTensor<'_>) -> Result<(), LoadError> {
    let bad: fn(u8) -> bool = match w.dtype {
        Dtype::F8E4M3 => |b| b & 0x7F == 0x7F,
        Dtype::F8E5M2 => |b| b & 0x7C == 0x7C,
        _ => return Ok(()),
    };
    match w.bytes.iter().position(|&b| bad(b)) {
        None => Ok(()),
        Some(index) => Err(LoadError::NonFiniteWeight {
            tensor: w.name.clone(),
            dtype: w.dtype,
            index,
            byte: w.bytes.get(index).copied().unwrap_or(0),
        }),
    }
}

/// `v` in `dtype`'s little-endian bytes (F32 only: the one widening target).
fn encode_f32_as(dtype: Dtype, v: f32) -> Vec<u8> {
    match dtype {
        Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
        Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        _ => v.to_le_bytes().to_vec(),
    }
}

/// Per-source quantization checks and scale interpretation.
fn classify(p: &mut Placed<'_, '_>, has_config: bool) -> Result<(), LoadError> {
    let w = &p.src.weight;
    if w.dtype.is_int() {
        return Err(LoadError::Dtype {
            tensor: w.name.clone(),
            dtype: w.dtype,
            expected: "F32, F16, BF16 or FP8 (integer words are read only as a 4-bit weight's `qweight` / `weight_packed`)".into(),
        });
    }
    if !w.dtype.is_fp8() {
        if let Some(s) = p.src.weight_scale.as_ref().or(p.src.input_scale.as_ref()) {
            return Err(LoadError::ScaleOnUnquantized {
                scale: s.name.clone(),
                weight: w.name.clone(),
                dtype: w.dtype,
            });
        }
        if p.rule.excluded.is_none() && p.rule.expected.is_some() {
            // Official FP8 releases leave e.g. in_proj_a/b in BF16 without listing them.
            tracing::debug!(tensor = %w.name, dtype = %w.dtype, "unquantized weight in a quantized checkpoint");
        }
        return Ok(());
    }
    if let Some(reason) = &p.rule.excluded {
        return Err(LoadError::QuantizedButExcluded {
            tensor: w.name.clone(),
            dtype: w.dtype,
            reason: reason.clone(),
        });
    }
    let configured = match p.rule.fp8_format {
        Some(Fp8Format::E4M3) => Some(Dtype::F8E4M3),
        Some(Fp8Format::E5M2) => Some(Dtype::F8E5M2),
        None => None,
    };
    if let Some(c) = configured.filter(|&c| c != w.dtype) {
        return Err(LoadError::Fp8FormatMismatch {
            tensor: w.name.clone(),
            dtype: w.dtype,
            configured: c.to_string(),
        });
    }
    let scale = p
        .src
        .weight_scale
        .as_ref()
        .ok_or_else(|| LoadError::MissingScale {
            tensor: w.name.clone(),
            dtype: w.dtype,
            looked_for: weight_scale_names(&w.name),
            note: if has_config {
                String::new()
            } else {
                " (config.json has no `quantization_config` either: is this checkpoint complete?)"
                    .into()
            },
        })?;
    p.scheme = Some(detect_weight_scale(w, p.shards.len(), scale, &p.rule)?);
    if let Some(input) = &p.src.input_scale {
        p.input = Some(detect_input_scale(w, p.shards.len(), input)?);
    }
    Ok(())
}

/// The packed weight's storage dtype. FP8 beside unquantized is an error;
/// FP8 formats must agree. Unquantized sources of different dtypes (legal in
/// HF, which casts on load) are widened to F32, which holds F16, BF16 and F32
/// exactly, with a warning.
fn check_dtypes(packed: &str, placed: &[Placed<'_, '_>]) -> Result<Dtype, LoadError> {
    let Some(first) = placed.first() else {
        return Err(LoadError::ShardTable {
            packed: packed.into(),
            detail: "no source tensors".into(),
        });
    };
    let a = &first.src.weight;
    let mut widen: Option<&crate::SourceTensor<'_>> = None;
    for p in placed.iter().skip(1) {
        let b = &p.src.weight;
        if b.dtype == a.dtype {
            continue;
        }
        if a.dtype.is_fp8() != b.dtype.is_fp8() {
            let (q, u) = if a.dtype.is_fp8() { (a, b) } else { (b, a) };
            return Err(LoadError::PartlyQuantized {
                packed: packed.into(),
                quantized: q.name.clone(),
                quantized_dtype: q.dtype,
                unquantized: u.name.clone(),
                unquantized_dtype: u.dtype,
            });
        }
        if a.dtype.is_fp8() {
            return Err(LoadError::MixedDtypes {
                packed: packed.into(),
                first: a.name.clone(),
                first_dtype: a.dtype,
                second: b.name.clone(),
                second_dtype: b.dtype,
            });
        }
        widen.get_or_insert(b);
    }
    if let Some(b) = widen {
        tracing::warn!(
            packed,
            first = %a.name,
            first_dtype = %a.dtype,
            second = %b.name,
            second_dtype = %b.dtype,
            "sources of one packed weight are stored in different dtypes: converting them to F32 (exact)"
        );
        return Ok(Dtype::F32);
    }
    Ok(a.dtype)
}

/// Combines per-source schemes into the packed weight's scheme. Per-shard and
/// per-channel sources combine as per-channel (exact: each row keeps its own
/// scale; nothing is requantized); block sources keep their own grids.
fn merge_schemes(
    packed: &str,
    placed: &[Placed<'_, '_>],
    offsets: &[usize],
    spec: &PackSpec,
) -> Result<ScaleScheme, LoadError> {
    let schemes: Vec<(&Placed<'_, '_>, &SourceScheme)> = placed
        .iter()
        .filter_map(|p| p.scheme.as_ref().map(|s| (p, s)))
        .collect();
    let Some(&(first, first_scheme)) = schemes.first() else {
        return Ok(ScaleScheme::None);
    };
    let mixed = |p: &Placed<'_, '_>, s: &SourceScheme| LoadError::MixedSchemes {
        packed: packed.into(),
        first: first.src.weight.name.clone(),
        first_scheme: first_scheme.describe(),
        second: p.src.weight.name.clone(),
        second_scheme: s.describe(),
    };

    let first_block = schemes.iter().find_map(|&(p, s)| match s {
        SourceScheme::Block { block, .. } => Some((p, s, *block)),
        _ => None,
    });
    if let Some((bp, bs, block)) = first_block {
        // Errors here name the block-scaled source as the reference.
        let mixed = |p: &Placed<'_, '_>, s: &SourceScheme| LoadError::MixedSchemes {
            packed: packed.into(),
            first: bp.src.weight.name.clone(),
            first_scheme: bs.describe(),
            second: p.src.weight.name.clone(),
            second_scheme: s.describe(),
        };
        let mut segments = Vec::with_capacity(schemes.len());
        for &(p, s) in &schemes {
            let row_offset = p
                .shards
                .first()
                .and_then(|&i| offsets.get(i))
                .copied()
                .unwrap_or(0);
            match s {
                SourceScheme::Block {
                    block: b,
                    grid,
                    scales,
                } if *b == block => segments.push(BlockSegment {
                    row_offset,
                    rows: p.rows,
                    grid: *grid,
                    scales: scales.clone(),
                }),
                // A one-value scale on a weight that fits in one block is that
                // block's scale (a 1x1 grid reads as per-tensor when no config
                // names the scheme): the same numbers, one scheme.
                SourceScheme::PerShard(v) => match one_block_scale(p, v, block) {
                    Some(value) => segments.push(BlockSegment {
                        row_offset,
                        rows: p.rows,
                        grid: [1, 1],
                        scales: vec![value],
                    }),
                    None => return Err(mixed(p, s)),
                },
                _ => return Err(mixed(p, s)),
            }
        }
        return Ok(ScaleScheme::Block {
            block,
            segments: fuse_segments(segments, block),
        });
    }

    if schemes.iter().any(|(_, s)| s.kind() == SchemeKind::Channel) {
        let mut scales = Vec::new();
        for &(p, s) in &schemes {
            match s {
                SourceScheme::PerChannel(v) => scales.extend_from_slice(v),
                SourceScheme::PerShard(v) => {
                    for (&i, &value) in p.shards.iter().zip(v) {
                        let rows = spec.shards.get(i).map_or(0, |s| s.rows);
                        scales.extend(std::iter::repeat_n(value, rows));
                    }
                }
                SourceScheme::Block { .. } => return Err(mixed(p, s)),
            }
        }
        return Ok(ScaleScheme::PerChannel { scales });
    }

    let mut per_shard: Vec<Option<f32>> = vec![None; spec.shards.len()];
    for &(p, s) in &schemes {
        if let SourceScheme::PerShard(v) = s {
            for (&i, &value) in p.shards.iter().zip(v) {
                if let Some(slot) = per_shard.get_mut(i) {
                    *slot = Some(value);
                }
            }
        }
    }
    let scales = collect_all(packed, spec, per_shard)?;
    Ok(ScaleScheme::PerShard { scales })
}

/// The single value of a per-tensor scale on a weight that fits in one
/// `block`, if that is what `v` is.
fn one_block_scale(p: &Placed<'_, '_>, v: &[f32], block: [usize; 2]) -> Option<f32> {
    let first = *v.first()?;
    let cols = p.src.weight.shape.get(1).copied()?;
    let same = v.iter().all(|x| x.to_bits() == first.to_bits());
    (same && p.rows <= block[0] && cols <= block[1]).then_some(first)
}

/// One grid instead of many when every segment's rows are whole blocks (the
/// grids then stack exactly); otherwise each source keeps its own grid.
fn fuse_segments(segments: Vec<BlockSegment>, block: [usize; 2]) -> Vec<BlockSegment> {
    if segments.len() < 2 || segments.iter().any(|s| s.rows % block[0] != 0) {
        return segments;
    }
    let gc = segments.first().map_or(0, |s| s.grid[1]);
    if segments.iter().any(|s| s.grid[1] != gc) {
        return segments;
    }
    let rows = segments.iter().map(|s| s.rows).sum();
    let gr = segments.iter().map(|s| s.grid[0]).sum();
    let scales = segments.into_iter().flat_map(|s| s.scales).collect();
    vec![BlockSegment {
        row_offset: 0,
        rows,
        grid: [gr, gc],
        scales,
    }]
}

fn collect_all(
    packed: &str,
    spec: &PackSpec,
    slots: Vec<Option<f32>>,
) -> Result<Vec<f32>, LoadError> {
    let missing: Vec<String> = slots
        .iter()
        .zip(&spec.shards)
        .filter(|(v, _)| v.is_none())
        .map(|(_, s)| s.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::ShardNotLoaded {
            packed: packed.into(),
            shards: missing,
        });
    }
    Ok(slots.into_iter().flatten().collect())
}

fn activation(placed: &[Placed<'_, '_>], shards: usize) -> Result<ActivationQuant, LoadError> {
    let quantized: Vec<&Placed<'_, '_>> = placed.iter().filter(|p| p.scheme.is_some()).collect();
    if quantized.is_empty() {
        return Ok(ActivationQuant::None);
    }
    if let Some(with) = quantized.iter().find(|p| p.input.is_some()) {
        if let Some(without) = quantized.iter().find(|p| p.input.is_none()) {
            return Err(LoadError::MissingInputScale {
                tensor: without.src.weight.name.clone(),
                reason: format!(
                    "`{}` in the same packed weight has one",
                    with.src.weight.name
                ),
            });
        }
        let mut per_shard: Vec<Option<f32>> = vec![None; shards];
        for p in &quantized {
            for (&i, &v) in p.shards.iter().zip(p.input.iter().flatten()) {
                if let Some(slot) = per_shard.get_mut(i) {
                    *slot = Some(v);
                }
            }
        }
        let per_shard: Vec<f32> = per_shard.into_iter().flatten().collect();
        let Some(max) = per_shard.iter().copied().reduce(f32::max) else {
            return Ok(ActivationQuant::None);
        };
        return Ok(ActivationQuant::Static { per_shard, max });
    }
    if let Some(p) = quantized
        .iter()
        .find(|p| p.rule.activation == ActivationScheme::Static)
    {
        return Err(LoadError::MissingInputScale {
            tensor: p.src.weight.name.clone(),
            reason: format!(
                "the quantization config says static activation scales (looked for `{}`)",
                input_scale_name(&p.src.weight.name)
            ),
        });
    }
    if quantized
        .iter()
        .any(|p| p.rule.activation == ActivationScheme::Dynamic)
    {
        return Ok(ActivationQuant::Dynamic);
    }
    Ok(ActivationQuant::None)
}
