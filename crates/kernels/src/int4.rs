//! 4-bit weights on the GPU: the host form the loader makes of GPTQ, AWQ and
//! compressed-tensors W4A16 checkpoints ([`Int4Host`]) and its upload as a
//! [`GpuWeight`] of format [`WeightFormat::Q4`] (or [`WeightFormat::Q4F32`]);
//! [`GpuWeight::upload`] of a 4-bit [`PackedWeight`](qwgpu_loader::PackedWeight) comes here,
//! which every matmul kernel reads: the GEMV, the small-T GEMV, the tile GEMM,
//! the expert-indexed and the grouped MoE kernels.
//!
//! GPU layout:
//! - `pieces`: the packed words as the host has them (8 nibbles per u32,
//!   nibble `j` of word `w` = column `8w + j`), each row zero padded to whole
//!   `vec4<u32>` chunks of 32 columns ([`stride_words`]); nibbles past the
//!   columns are cleared on upload.
//! - `meta` (`array<u32>`): `rows` row entries (row `r`'s first group entry,
//!   relative to the end of the row table), then one entry per group of
//!   `group_size` columns of each row: for `Q4` one word holding the scale as
//!   f16 (low half) and the zero point as f16 (high half, exact: 0..15), so
//!   one `unpack2x16float` gives both; for `Q4F32` (a scale not exact in
//!   f16, e.g. a tiny BF16 one) two words, the f32 scale and the zero as f32.
//!   4 bytes per group next to 64 bytes of weights at group size 128.
//! - `block_cols` = the group size.
//!
//! `W[r, c] = (q - zero) · scale`: the kernels decode `q - zero` exactly in
//! f32 (small integers) and multiply by the scale once per 32-column chunk
//! (group sizes that are multiples of 32, or one group per row) or per
//! 4-column group (other multiples of 4).

use crate::weights::{piece_rows, stride_words, WeightPiece, MAX_PIECE_BYTES};
use crate::{GpuContext, GpuWeight, KernelError, WeightFormat};

/// The host form of a 4-bit weight: the loader's canonical view
/// ([`PackedWeight::int4`](qwgpu_loader::PackedWeight::int4)) of every 4-bit
/// checkpoint format.
pub type Int4Host<'a> = qwgpu_loader::Int4View<'a>;

/// Checks `w` (named `name`) for upload: the loader's checks (sizes, zero
/// points, nibbles past the columns) plus what the kernels need (a group size
/// that is a multiple of 4 or covers the row, finite scales).
pub fn check_int4(name: &str, w: &Int4Host) -> Result<(), KernelError> {
    let bad = |detail: String| KernelError::Unsupported {
        what: format!("4-bit weight `{name}`"),
        detail,
    };
    w.validate(name).map_err(|e| bad(e.to_string()))?;
    let (cols, group) = (w.cols, w.group_size);
    if group < cols && !group.is_multiple_of(4) {
        return Err(bad(format!(
            "group size {group} for {cols} columns: the kernels need a multiple of 4 \
             (or one group per row)"
        )));
    }
    if let Some(i) = w.scales.iter().position(|s| !s.is_finite()) {
        return Err(bad(format!(
            "scale {s} at group {i} is not finite",
            s = w.scales[i]
        )));
    }
    Ok(())
}

/// `s` as f16 bits when it is exactly a normal f16 value (or zero):
/// `unpack2x16float` may flush f16 subnormals.
fn exact_f16(s: f32) -> Option<u16> {
    let h = half::f16::from_f32(s);
    (h.to_f32() == s && (h.is_normal() || s == 0.0)).then_some(h.to_bits())
}

/// The GPU format of `w` (f16 scales where all of them are exact in f16) and
/// its scale table (module docs).
pub fn int4_scale_table(w: &Int4Host) -> (WeightFormat, Vec<u32>) {
    let ng = w.groups_per_row();
    let halves: Option<Vec<u16>> = w.scales.iter().map(|&s| exact_f16(s)).collect();
    let (format, per_group) = match halves {
        Some(_) => (WeightFormat::Q4, 1),
        None => (WeightFormat::Q4F32, 2),
    };
    let mut table: Vec<u32> = (0..w.rows).map(|r| (r * ng * per_group) as u32).collect();
    table.reserve(w.rows * ng * per_group);
    match halves {
        Some(h) => table.extend(h.iter().zip(w.zeros).map(|(&s, &z)| {
            let z = half::f16::from_f32(f32::from(z)).to_bits();
            u32::from(s) | (u32::from(z) << 16)
        })),
        None => {
            for (&s, &z) in w.scales.iter().zip(w.zeros) {
                table.push(s.to_bits());
                table.push(f32::from(z).to_bits());
            }
        }
    }
    (format, table)
}

/// Bytes `w` takes on the GPU ([`upload_int4`]'s buffers: padded rows and
/// the scale table).
pub fn gpu_bytes(w: &Int4Host) -> u64 {
    let per_group = if w.scales.iter().all(|&s| exact_f16(s).is_some()) {
        1
    } else {
        2
    };
    let words = w.rows * stride_words(w.cols, WeightFormat::Q4);
    ((words + w.rows + w.rows * w.groups_per_row() * per_group) * 4) as u64
}

/// Uploads `w` (named `name`) as a [`GpuWeight`] in pieces within the
/// device's binding limit. Errors: [`KernelError::Unsupported`] for a `w`
/// that fails [`check_int4`], [`KernelError::Capacity`] for a row over
/// the binding limit.
pub fn upload_int4(ctx: &GpuContext, name: &str, w: &Int4Host) -> Result<GpuWeight, KernelError> {
    check_int4(name, w)?;
    let row_bytes = (stride_words(w.cols, WeightFormat::Q4) * 4) as u64;
    let sizes = piece_rows(ctx, name, w.rows, row_bytes, MAX_PIECE_BYTES)?;
    upload_int4_pieces(ctx, name, w, &sizes)
}

/// [`upload_int4`] as buffers of `sizes` rows each (summing to the rows):
/// tests put piece boundaries anywhere with it.
pub fn upload_int4_pieces(
    ctx: &GpuContext,
    name: &str,
    w: &Int4Host,
    sizes: &[usize],
) -> Result<GpuWeight, KernelError> {
    check_int4(name, w)?;
    if sizes.iter().sum::<usize>() != w.rows || sizes.contains(&0) {
        return Err(KernelError::Unsupported {
            what: format!("4-bit weight `{name}`"),
            detail: format!(
                "piece sizes {sizes:?} do not split {rows} rows",
                rows = w.rows
            ),
        });
    }
    let stride = stride_words(w.cols, WeightFormat::Q4);
    let wpr = w.words_per_row();
    // The last word's nibbles past the columns (0 by the contract; cleared
    // so a stray bit never meets the x padding, which is 0 anyway).
    let tail = match w.cols % 8 {
        0 => u32::MAX,
        k => (1u32 << (4 * k)) - 1,
    };
    let mut pieces = Vec::with_capacity(sizes.len().max(1));
    let mut row0 = 0;
    for &rows in sizes {
        let label = format!("{name} rows {row0}..{end}", end = row0 + rows);
        let buffer = ctx.storage(&label, (rows * stride * 4) as u64)?;
        // Chunks of about 8 MiB (see GpuWeight::upload_rows).
        let chunk_rows = ((8usize << 20) / (stride * 4)).max(1);
        let mut r = 0;
        while r < rows {
            let n = chunk_rows.min(rows - r);
            let mut padded = vec![0u32; n * stride];
            for (i, dst) in padded.chunks_exact_mut(stride).enumerate() {
                let src = &w.words[(row0 + r + i) * wpr..][..wpr];
                dst[..wpr].copy_from_slice(src);
                if let Some(last) = dst[..wpr].last_mut() {
                    *last &= tail;
                }
            }
            let bytes: &[u8] = bytemuck::cast_slice(&padded);
            ctx.queue
                .write_buffer(&buffer, (r * stride * 4) as u64, bytes);
            ctx.queued_upload(bytes.len() as u64)?;
            r += n;
        }
        pieces.push(WeightPiece { buffer, row0, rows });
        row0 += rows;
    }
    if pieces.is_empty() {
        pieces.push(WeightPiece {
            buffer: ctx.storage(name, 0)?,
            row0: 0,
            rows: 0,
        });
    }
    let (format, table) = int4_scale_table(w);
    let meta = ctx.upload(&format!("{name} scales"), &table)?;
    ctx.check(&format!("upload of `{name}`"))?;
    Ok(GpuWeight {
        name: name.to_string(),
        format,
        rows: w.rows,
        cols: w.cols,
        stride_words: stride,
        block_cols: w.group_size,
        pieces,
        meta,
    })
}

/// The buffers of `w` (checked as [`upload_int4`] checks it) and its scale
/// table, uploaded; the rows' words are left for the caller to copy in,
/// each row at `stride_words` words (zero padded past the row's words) in
/// the piece holding it: a loader that fills its own staging (several
/// threads, overlapped with the GPU's copies) uploads 4-bit words as it
/// uploads every other format's rows.
pub fn allocate_int4(ctx: &GpuContext, name: &str, w: &Int4Host) -> Result<GpuWeight, KernelError> {
    check_int4(name, w)?;
    let stride = stride_words(w.cols, WeightFormat::Q4);
    let sizes = piece_rows(ctx, name, w.rows, (stride * 4) as u64, MAX_PIECE_BYTES)?;
    let mut pieces = Vec::with_capacity(sizes.len().max(1));
    let mut row0 = 0;
    for rows in sizes {
        let label = format!("{name} rows {row0}..{end}", end = row0 + rows);
        let buffer = ctx.storage(&label, (rows * stride * 4) as u64)?;
        pieces.push(WeightPiece { buffer, row0, rows });
        row0 += rows;
    }
    if pieces.is_empty() {
        pieces.push(WeightPiece {
            buffer: ctx.storage(name, 0)?,
            row0: 0,
            rows: 0,
        });
    }
    let (format, table) = int4_scale_table(w);
    let meta = ctx.upload(&format!("{name} scales"), &table)?;
    Ok(GpuWeight {
        name: name.to_string(),
        format,
        rows: w.rows,
        cols: w.cols,
        stride_words: stride,
        block_cols: w.group_size,
        pieces,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<'a>(words: &'a [u32], scales: &'a [f32], zeros: &'a [u8]) -> Int4Host<'a> {
        Int4Host {
            rows: 2,
            cols: 12,
            group_size: 8,
            words,
            scales,
            zeros,
        }
    }

    #[test]
    fn f16_exact_scales_pack_with_their_zero_in_one_word() {
        let words = [0u32; 4];
        let (f, t) = int4_scale_table(&host(&words, &[0.5, 2.0, 0.125, 3.0], &[8, 0, 15, 1]));
        assert_eq!(f, WeightFormat::Q4);
        assert_eq!(&t[..2], &[0, 2]);
        let unpack = |v: u32| {
            (
                half::f16::from_bits(v as u16).to_f32(),
                half::f16::from_bits((v >> 16) as u16).to_f32(),
            )
        };
        let got: Vec<(f32, f32)> = t[2..].iter().map(|&v| unpack(v)).collect();
        assert_eq!(got, [(0.5, 8.0), (2.0, 0.0), (0.125, 15.0), (3.0, 1.0)]);
    }

    #[test]
    fn scales_not_exact_in_f16_keep_f32() {
        let words = [0u32; 4];
        let s = [0.1f32, 1e-7, 2.0, 3.0];
        let (f, t) = int4_scale_table(&host(&words, &s, &[1, 2, 3, 4]));
        assert_eq!(f, WeightFormat::Q4F32);
        assert_eq!(&t[..2], &[0, 4]);
        assert_eq!(f32::from_bits(t[2 + 2]), 1e-7);
        assert_eq!(f32::from_bits(t[2 + 3]), 2.0);
        assert_eq!(f32::from_bits(t[2 + 7]), 4.0);
    }

    #[test]
    fn bad_hosts_are_typed_errors_naming_the_weight() {
        let words = [0u32; 4];
        let cases: [(Int4Host, &str); 4] = [
            (host(&words[..3], &[1.0; 4], &[0; 4]), "3 int4 words"),
            (host(&words, &[1.0; 3], &[0; 4]), "3 scales"),
            (host(&words, &[1.0; 4], &[0, 16, 0, 0]), "zero point 16"),
            (
                host(&words, &[1.0, f32::NAN, 1.0, 1.0], &[0; 4]),
                "not finite",
            ),
        ];
        for (h, want) in cases {
            match check_int4("layers.0.mlp.up_proj", &h) {
                Err(KernelError::Unsupported { what, detail }) => {
                    assert!(what.contains("layers.0.mlp.up_proj"), "{what}");
                    assert!(detail.contains(want), "{detail} lacks {want}");
                }
                other => panic!("{want}: {other:?}"),
            }
        }
        let odd = Int4Host {
            group_size: 6,
            ..host(&words, &[1.0; 4], &[0; 4])
        };
        assert!(check_int4("w", &odd).is_err());
    }
}
