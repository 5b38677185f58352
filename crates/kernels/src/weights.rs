//! Weights on the GPU in their stored format: BF16 / F16 / F32 / FP8 bytes as
//! they are in the checkpoint (never dequantized on the host), plus one small
//! scale table that covers every scale scheme of the loader.
//!
//! Layout (what the matmul and embedding kernels read):
//! - `pieces`: the rows split into buffers of at most the binding limit; each
//!   row starts on a 16-byte boundary (`stride_words` u32 words per row, zero
//!   padded) so kernels can load `vec4<u32>`.
//! - `meta` (`array<u32>`): `rows` row entries, then f32 scale values (bits).
//!   The scale of element `(r, c)` is `bitcast<f32>(meta[rows + meta[r] + c / block_cols])`:
//!   per-shard (incl. a broadcast per-tensor scale) and per-channel schemes use
//!   `block_cols = stride` (one scale per row), the 128×128 block scheme points
//!   each row at its block-row of its source's grid. Unquantized weights have
//!   one scale 1.0.

use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{PackedWeight, ScaleScheme};

use crate::{GpuContext, KernelError};

/// Storage format code the kernels switch on (`override FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum WeightFormat {
    F32 = 0,
    BF16 = 1,
    F16 = 2,
    E4M3 = 3,
    E5M2 = 4,
    /// 4-bit integers (GPTQ / AWQ / compressed-tensors W4A16 after the
    /// loader's repack), 8 per u32 word, nibble `j` = column `8w + j`; per
    /// group of columns one f16 scale and one zero point (module
    /// [`int4`](crate::int4)).
    Q4 = 5,
    /// [`WeightFormat::Q4`] whose scales are not all exact in f16: f32 scales.
    Q4F32 = 6,
}

impl WeightFormat {
    pub fn from_dtype(d: Dtype) -> Self {
        match d {
            Dtype::F32 => WeightFormat::F32,
            Dtype::BF16 => WeightFormat::BF16,
            Dtype::F16 => WeightFormat::F16,
            Dtype::F8E4M3 => WeightFormat::E4M3,
            Dtype::F8E5M2 => WeightFormat::E5M2,
            // 4-bit weights (`PackedWeight::int4`) carry their words outside
            // `data` and upload through `int4::upload_int4` (format Q4 or
            // Q4F32 by their scales); no element format is I32.
            Dtype::I32 | Dtype::I64 => WeightFormat::F32,
        }
    }

    /// Whole bytes per element: 0 for the 4-bit formats (two per byte; see
    /// [`WeightFormat::per_word`]).
    pub fn size(self) -> usize {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::BF16 | WeightFormat::F16 => 2,
            WeightFormat::E4M3 | WeightFormat::E5M2 => 1,
            WeightFormat::Q4 | WeightFormat::Q4F32 => 0,
        }
    }

    /// Elements per u32 word.
    pub fn per_word(self) -> usize {
        match self {
            WeightFormat::F32 => 1,
            WeightFormat::BF16 | WeightFormat::F16 => 2,
            WeightFormat::E4M3 | WeightFormat::E5M2 => 4,
            WeightFormat::Q4 | WeightFormat::Q4F32 => 8,
        }
    }

    /// Whether this is a 4-bit format (scales and zero points per group).
    pub fn is_int4(self) -> bool {
        matches!(self, WeightFormat::Q4 | WeightFormat::Q4F32)
    }
}

/// A contiguous block of rows in one buffer.
#[derive(Debug)]
pub struct WeightPiece {
    pub buffer: wgpu::Buffer,
    /// First row of the weight held here.
    pub row0: usize,
    pub rows: usize,
}

/// A weight `[rows, cols]` resident on the GPU.
#[derive(Debug)]
pub struct GpuWeight {
    pub name: String,
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    /// u32 words per row (a multiple of 4).
    pub stride_words: usize,
    /// Columns per scale entry (see the module docs).
    pub block_cols: usize,
    pub pieces: Vec<WeightPiece>,
    pub meta: wgpu::Buffer,
}

/// Row table + scale values as described in the module docs (host side, testable).
pub fn scale_table(w: &PackedWeight) -> Result<(Vec<u32>, usize), KernelError> {
    let rows = w.rows;
    let stride_cols = stride_words(w.cols, WeightFormat::from_dtype(w.dtype))
        * WeightFormat::from_dtype(w.dtype).per_word();
    let mut table = vec![0u32; rows];
    let mut values: Vec<f32> = Vec::new();
    let block_cols = match &w.scale {
        ScaleScheme::None => {
            values.push(1.0);
            stride_cols
        }
        ScaleScheme::Int4(_) => {
            return Err(KernelError::Unsupported {
                what: format!("weight `{w_name}`", w_name = w.name),
                detail: "4-bit weights have their own scale table (int4::int4_scale_table)".into(),
            })
        }
        ScaleScheme::PerShard { scales } => {
            if scales.len() != w.shards.len() {
                return Err(KernelError::Unsupported {
                    what: format!("weight `{}`", w.name),
                    detail: format!(
                        "{scales_len} per-shard scales for {w_shards_len} shards",
                        scales_len = scales.len(),
                        w_shards_len = w.shards.len()
                    ),
                });
            }
            for (i, s) in w.shards.iter().enumerate() {
                let end = (s.row_offset + s.rows).min(rows);
                table[s.row_offset.min(end)..end].fill(i as u32);
            }
            values.extend_from_slice(scales);
            stride_cols
        }
        ScaleScheme::PerChannel { scales } => {
            if scales.len() != rows {
                return Err(KernelError::Unsupported {
                    what: format!("weight `{}`", w.name),
                    detail: format!(
                        "{scales_len} per-channel scales for {rows} rows",
                        scales_len = scales.len()
                    ),
                });
            }
            for (r, t) in table.iter_mut().enumerate() {
                *t = r as u32;
            }
            values.extend_from_slice(scales);
            stride_cols
        }
        ScaleScheme::Block { block, segments } => {
            let [bn, bk] = *block;
            if bn == 0 || bk == 0 || bk % 4 != 0 {
                return Err(KernelError::Unsupported {
                    what: format!("weight `{}`", w.name),
                    detail: format!("block size [{bn}, {bk}]: columns per block must be a non-zero multiple of 4"),
                });
            }
            for seg in segments {
                let base = values.len();
                if seg.scales.len() != seg.grid[0] * seg.grid[1]
                    || seg.grid[1] != w.cols.div_ceil(bk)
                {
                    return Err(KernelError::Unsupported {
                        what: format!("weight `{}`", w.name),
                        detail: format!(
                            "block grid {seg_grid:?} does not match {seg_scales_len} scales / {w_cols} columns",
                            seg_grid = seg.grid,
                            seg_scales_len = seg.scales.len(),
                            w_cols = w.cols
                        ),
                    });
                }
                values.extend_from_slice(&seg.scales);
                for r in 0..seg.rows {
                    let row = seg.row_offset + r;
                    if row < rows {
                        table[row] = (base + (r / bn) * seg.grid[1]) as u32;
                    }
                }
            }
            bk
        }
    };
    table.extend(values.iter().map(|v| v.to_bits()));
    Ok((table, block_cols))
}

/// A weight's rows given as consecutive parts of whole rows (a packed
/// buffer, or the source tensors the loader left in the checkpoint).
struct RowParts<'a> {
    parts: &'a [&'a [u8]],
    /// First row of each part, and the row count at the end.
    starts: Vec<usize>,
    row_bytes: usize,
}

impl<'a> RowParts<'a> {
    fn new(parts: &'a [&'a [u8]], row_bytes: usize) -> Self {
        let mut starts = vec![0];
        for p in parts {
            let last = starts.last().copied().unwrap_or(0);
            starts.push(last + p.len() / row_bytes.max(1));
        }
        Self {
            parts,
            starts,
            row_bytes,
        }
    }

    /// The bytes of rows `[row, row + n)` as far as the part holding `row`
    /// goes, and how many rows that is (at least 1 for a row in range).
    fn rows(&self, row: usize, n: usize) -> (&'a [u8], usize) {
        if self.row_bytes == 0 {
            return (&[], n);
        }
        let i = self.starts.partition_point(|&s| s <= row).saturating_sub(1);
        let first = row - self.starts[i];
        let n = n.min(self.starts[i + 1] - row);
        let b = self.row_bytes;
        (&self.parts[i][first * b..(first + n) * b], n)
    }
}

/// Largest buffer one piece of an uploaded weight takes.
pub(crate) const MAX_PIECE_BYTES: u64 = 1 << 30;

/// u32 words per row: the row's bytes rounded up to 16.
pub fn stride_words(cols: usize, format: WeightFormat) -> usize {
    cols.div_ceil(4 * format.per_word()) * 4
}

/// Rows per piece of a weight of `rows` rows of `row_bytes` bytes (named
/// `name`): pieces of at most `max_piece_bytes` within the binding limit.
pub(crate) fn piece_rows(
    ctx: &GpuContext,
    name: &str,
    rows: usize,
    row_bytes: u64,
    max_piece_bytes: u64,
) -> Result<Vec<usize>, KernelError> {
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    if row_bytes > limit {
        return Err(KernelError::Capacity {
            what: format!("one row of `{name}`"),
            bytes: row_bytes,
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    // Pieces of at most 1 GiB: the H100 streamed a 2 GB LM head in one
    // binding at 1.6 TB/s against 2.9 TB/s for a 1 GB one. On a fresh
    // device, pieces of 128 MiB .. 1 GiB all stream at 2.6-2.9 TB/s
    // (gemv_bench::lm_head_piece_sizes; 1 GiB fastest), yet inside the
    // full GEMV bench, after ~10 GB of other weights came and went, the
    // same 2 x 1 GiB ran at 1.8 TB/s in two runs of three: not the piece size.
    let limit = limit.min(max_piece_bytes);
    let per_piece = ((limit / row_bytes) as usize).max(1);
    let mut sizes = Vec::new();
    let mut left = rows;
    while left > 0 {
        sizes.push(per_piece.min(left));
        left -= per_piece.min(left);
    }
    Ok(sizes)
}

impl GpuWeight {
    /// Uploads `w` in its stored format, split by rows into buffers within the
    /// device's binding limit; a 4-bit weight ([`PackedWeight::int4`]) as
    /// [`WeightFormat::Q4`] / [`WeightFormat::Q4F32`] ([`crate::int4`]).
    pub fn upload(ctx: &GpuContext, w: &PackedWeight) -> Result<Self, KernelError> {
        Self::upload_from(ctx, w, &[&w.data])
    }

    /// [`GpuWeight::upload`] of `w`'s layout and scales with its row bytes
    /// taken from `parts` (consecutive runs of whole rows) instead of
    /// `w.data`: a weight the loader left unpacked
    /// ([`PackedWeight::borrowed_sources`]) uploads straight from the
    /// checkpoint's map, without a host copy.
    ///
    /// ```no_run
    /// # fn f(ctx: &qwgpu_kernels::GpuContext, ckpt: &qwgpu_checkpoint::Checkpoint,
    /// #      w: &qwgpu_loader::PackedWeight) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(names) = w.borrowed_sources() {
    ///     let parts = names
    ///         .iter()
    ///         .map(|n| ckpt.tensor(n).map(|t| t.bytes))
    ///         .collect::<Result<Vec<_>, _>>()?;
    ///     let g = qwgpu_kernels::GpuWeight::upload_from(ctx, w, &parts)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn upload_from(
        ctx: &GpuContext,
        w: &PackedWeight,
        parts: &[&[u8]],
    ) -> Result<Self, KernelError> {
        if let Some(q) = w.int4() {
            // Never borrowed: the loader repacks every 4-bit format on the host.
            return crate::int4::upload_int4(ctx, &w.name, &q);
        }
        let sizes = Self::piece_sizes(ctx, w, MAX_PIECE_BYTES)?;
        Self::upload_rows(ctx, w, parts, &sizes)
    }

    /// [`GpuWeight::upload`] with pieces of at most `max_piece_bytes` (rounded
    /// down to whole rows, at least one row): benchmarks of the piece size.
    pub fn upload_with_piece_limit(
        ctx: &GpuContext,
        w: &PackedWeight,
        max_piece_bytes: u64,
    ) -> Result<Self, KernelError> {
        if let Some(q) = w.int4() {
            let row_bytes = (stride_words(w.cols, WeightFormat::Q4) * 4) as u64;
            let sizes = piece_rows(ctx, &w.name, w.rows, row_bytes, max_piece_bytes)?;
            return crate::int4::upload_int4_pieces(ctx, &w.name, &q, &sizes);
        }
        let sizes = Self::piece_sizes(ctx, w, max_piece_bytes)?;
        Self::upload_rows(ctx, w, &[&w.data], &sizes)
    }

    /// Rows per piece for `w`: pieces of at most `max_piece_bytes` within the
    /// binding limit.
    fn piece_sizes(
        ctx: &GpuContext,
        w: &PackedWeight,
        max_piece_bytes: u64,
    ) -> Result<Vec<usize>, KernelError> {
        let row_bytes = (stride_words(w.cols, WeightFormat::from_dtype(w.dtype)) * 4) as u64;
        piece_rows(ctx, &w.name, w.rows, row_bytes, max_piece_bytes)
    }

    /// Uploads `w` as buffers of `sizes` rows each (they must sum to its rows):
    /// what [`GpuWeight::upload`] does for a weight over the binding limit, and
    /// what tests use to put row boundaries anywhere.
    pub fn upload_pieces(
        ctx: &GpuContext,
        w: &PackedWeight,
        sizes: &[usize],
    ) -> Result<Self, KernelError> {
        if let Some(q) = w.int4() {
            return crate::int4::upload_int4_pieces(ctx, &w.name, &q, sizes);
        }
        Self::upload_rows(ctx, w, &[&w.data], sizes)
    }

    /// Uploads `w`'s layout with its rows from `parts` as pieces of `sizes` rows.
    fn upload_rows(
        ctx: &GpuContext,
        w: &PackedWeight,
        parts: &[&[u8]],
        sizes: &[usize],
    ) -> Result<Self, KernelError> {
        let format = WeightFormat::from_dtype(w.dtype);
        let stride = stride_words(w.cols, format);
        let row_bytes = stride * 4;
        let row_src = w.cols * format.size();
        let bad = |detail: String| KernelError::Unsupported {
            what: format!("weight `{}`", w.name),
            detail,
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total != w.rows * row_src || parts.iter().any(|p| p.len() % row_src.max(1) != 0) {
            // Part sizes listed only when few (an MoE layer has 512 parts).
            let sizes: Vec<usize> = parts.iter().take(8).map(|p| p.len()).collect();
            return Err(bad(format!(
                "{total} bytes in {parts_len} part(s) (first sizes {sizes:?}) for [{w_rows}, {w_cols}] {w_dtype:?}; \
                 parts must hold whole rows of {row_src} bytes",
                parts_len = parts.len(),
                w_rows = w.rows,
                w_cols = w.cols,
                w_dtype = w.dtype
            )));
        }
        let rows_of = RowParts::new(parts, row_src);
        let g = Self::with_pieces(ctx, w, sizes)?;
        for piece in &g.pieces {
            // Upload in chunks of rows so no second full copy exists on the host.
            // 8 MiB: each write_buffer gets a staging buffer of its size, and
            // ones this small come out of the allocator's pooled blocks
            // instead of a fresh host-visible allocation each (64 MiB chunks
            // loaded a 9B checkpoint at 0.7 GB/s on the H100).
            let chunk_rows = ((8usize << 20) / row_bytes).max(1);
            let mut r = 0;
            while r < piece.rows {
                // Up to chunk_rows rows, within one part.
                let (src, n) = rows_of.rows(piece.row0 + r, chunk_rows.min(piece.rows - r));
                if row_src == row_bytes {
                    ctx.queue
                        .write_buffer(&piece.buffer, (r * row_bytes) as u64, src);
                    ctx.queued_upload(src.len() as u64)?;
                } else {
                    let mut padded = vec![0u8; n * row_bytes];
                    for (d, s) in padded
                        .chunks_exact_mut(row_bytes)
                        .zip(src.chunks_exact(row_src))
                    {
                        d[..row_src].copy_from_slice(s);
                    }
                    ctx.queue
                        .write_buffer(&piece.buffer, (r * row_bytes) as u64, &padded);
                    ctx.queued_upload(padded.len() as u64)?;
                }
                r += n;
            }
        }
        ctx.check(&format!("upload of `{}`", w.name))?;
        Ok(g)
    }

    /// `w`'s GPU buffers (pieces within the binding limit, as
    /// [`GpuWeight::upload`] splits it) and its scale table, with the rows
    /// not yet written: for an uploader that fills the pieces itself (each
    /// piece's rows at [`stride_words`] `* 4` bytes apart, zero padded).
    /// A 4-bit weight is an error: it uploads whole ([`GpuWeight::upload`]).
    pub fn allocate(ctx: &GpuContext, w: &PackedWeight) -> Result<Self, KernelError> {
        let sizes = Self::piece_sizes(ctx, w, MAX_PIECE_BYTES)?;
        Self::with_pieces(ctx, w, &sizes)
    }

    /// Buffers of `sizes` rows each (summing to `w.rows`) and the scale table.
    fn with_pieces(
        ctx: &GpuContext,
        w: &PackedWeight,
        sizes: &[usize],
    ) -> Result<Self, KernelError> {
        let format = WeightFormat::from_dtype(w.dtype);
        let stride = stride_words(w.cols, format);
        let row_bytes = stride * 4;
        if sizes.iter().sum::<usize>() != w.rows || sizes.contains(&0) {
            return Err(KernelError::Unsupported {
                what: format!("weight `{}`", w.name),
                detail: format!(
                    "piece sizes {sizes:?} do not split {w_rows} rows",
                    w_rows = w.rows
                ),
            });
        }
        let mut pieces = Vec::with_capacity(sizes.len().max(1));
        let mut row0 = 0;
        for &rows in sizes {
            let label = format!(
                "{w_name} rows {row0}..{row0_rows}",
                w_name = w.name,
                row0_rows = row0 + rows
            );
            let buffer = ctx.storage(&label, (rows * row_bytes) as u64)?;
            pieces.push(WeightPiece { buffer, row0, rows });
            row0 += rows;
        }
        if pieces.is_empty() {
            // A zero-row weight still binds a (minimal) buffer.
            pieces.push(WeightPiece {
                buffer: ctx.storage(&w.name, 0)?,
                row0: 0,
                rows: 0,
            });
        }
        let (table, block_cols) = scale_table(w)?;
        let meta = ctx.upload(&format!("{} scales", w.name), &table)?;
        Ok(Self {
            name: w.name.clone(),
            format,
            rows: w.rows,
            cols: w.cols,
            stride_words: stride,
            block_cols,
            pieces,
            meta,
        })
    }

    /// Bytes on the GPU (weights + scale table).
    pub fn bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.buffer.size()).sum::<u64>() + self.meta.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qwgpu_loader::{BlockSegment, Shard};

    fn weight(
        rows: usize,
        cols: usize,
        scale: ScaleScheme,
        shards: Vec<(usize, usize)>,
    ) -> PackedWeight {
        PackedWeight {
            name: "w".into(),
            dtype: Dtype::F8E4M3,
            rows,
            cols,
            data: vec![0; rows * cols],
            shards: shards
                .into_iter()
                .enumerate()
                .map(|(i, (o, n))| Shard {
                    name: format!("s{i}"),
                    source: format!("s{i}"),
                    row_offset: o,
                    rows: n,
                })
                .collect(),
            scale,
            activation: qwgpu_loader::ActivationQuant::None,
        }
    }

    fn scale_at(table: &[u32], rows: usize, block_cols: usize, r: usize, c: usize) -> f32 {
        f32::from_bits(table[rows + table[r] as usize + c / block_cols])
    }

    #[test]
    fn per_shard_scales_map_each_row_to_its_shard() {
        let w = weight(
            5,
            8,
            ScaleScheme::PerShard {
                scales: vec![2.0, 3.0],
            },
            vec![(0, 3), (3, 2)],
        );
        let (t, bc) = scale_table(&w).unwrap();
        let got: Vec<f32> = (0..5).map(|r| scale_at(&t, 5, bc, r, 7)).collect();
        assert_eq!(got, vec![2.0, 2.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn block_segments_with_unaligned_row_offsets_keep_their_own_grids() {
        // Two sources: rows 0..3 (grid 2x2 with bn=2) and rows 3..6 (grid 2x2).
        let seg = |o: usize, base: f32| BlockSegment {
            row_offset: o,
            rows: 3,
            grid: [2, 2],
            scales: vec![base, base + 1.0, base + 2.0, base + 3.0],
        };
        let w = weight(
            6,
            8,
            ScaleScheme::Block {
                block: [2, 4],
                segments: vec![seg(0, 10.0), seg(3, 20.0)],
            },
            vec![(0, 3), (3, 3)],
        );
        let (t, bc) = scale_table(&w).unwrap();
        assert_eq!(bc, 4);
        for (r, c, want) in [
            (0, 0, 10.0),
            (1, 5, 11.0),
            (2, 0, 12.0),
            (2, 7, 13.0),
            (3, 0, 20.0),
            (4, 4, 21.0),
            (5, 3, 22.0),
        ] {
            assert_eq!(scale_at(&t, 6, bc, r, c), want, "row {r} col {c}");
        }
    }
}
