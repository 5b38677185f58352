//! CPU dequantization of packed weights: `W = f32(q) · scale`, in f32, one
//! multiply per element (the contract the reference model and the GPU
//! kernels are checked against).

use crate::fp8::decode_elements;
use crate::{BlockSegment, LoadError, PackedWeight, ScaleScheme};

/// Dequantizes any packed weight to row-major f32 `[rows, cols]`.
///
/// Exact: every element is `f32::from(stored) * scale` with the scale the
/// packed weight holds for that element (unquantized weights are converted
/// without a multiply). A NaN FP8 *value* decodes to NaN (it is data). Every
/// field of `w` is validated first; an inconsistent weight is
/// [`LoadError::InvalidPacked`].
pub fn dequantize(w: &PackedWeight) -> Result<Vec<f32>, LoadError> {
    let bad = |detail: String| LoadError::InvalidPacked {
        name: w.name.clone(),
        detail,
    };
    if w.rows == 0 || w.cols == 0 {
        return Err(bad(format!(
            "shape [{w_rows}, {w_cols}] has a zero dimension",
            w_rows = w.rows,
            w_cols = w.cols
        )));
    }
    if let Some(q) = w.int4() {
        check_shards(w).map_err(bad)?;
        if w.dtype != qwgpu_checkpoint::Dtype::I32 || !w.data.is_empty() {
            return Err(bad(format!(
                "an int4 weight has dtype I32 and no data bytes, got {w_dtype} and {w_data_len} bytes",
                w_dtype = w.dtype,
                w_data_len = w.data.len()
            )));
        }
        q.validate(&w.name)?;
        return Ok(q.dequantize());
    }
    if w.dtype.is_int() {
        return Err(bad(format!(
            "{} data without its 4-bit scales and zero points",
            w.dtype
        )));
    }
    let expected = w
        .rows
        .checked_mul(w.cols)
        .and_then(|n| n.checked_mul(w.dtype.size()))
        .ok_or_else(|| {
            bad(format!(
                "shape [{w_rows}, {w_cols}] overflows",
                w_rows = w.rows,
                w_cols = w.cols
            ))
        })?;
    if w.data.len() != expected {
        return Err(bad(format!(
            "{w_data_len} data bytes, expected {expected} ({w_dtype} × [{w_rows}, {w_cols}])",
            w_data_len = w.data.len(),
            w_dtype = w.dtype,
            w_rows = w.rows,
            w_cols = w.cols
        )));
    }
    check_shards(w).map_err(bad)?;

    let mut out = decode_elements(w.dtype, &w.data);
    match &w.scale {
        // Handled above (4-bit weights carry no data bytes).
        ScaleScheme::Int4(_) => {
            return Err(bad("int4 scales on a weight that is not int4".into()));
        }
        ScaleScheme::None => {
            if w.dtype.is_fp8() {
                return Err(bad(format!("{} data without scales", w.dtype)));
            }
        }
        ScaleScheme::PerShard { scales } => {
            if scales.len() != w.shards.len() {
                return Err(bad(format!(
                    "{scales_len} per-shard scales for {w_shards_len} shards",
                    scales_len = scales.len(),
                    w_shards_len = w.shards.len()
                )));
            }
            for (s, &scale) in w.shards.iter().zip(scales) {
                let start = s.row_offset * w.cols;
                let rows = out
                    .get_mut(start..start + s.rows * w.cols)
                    .ok_or_else(|| bad(format!("shard `{}` out of range", s.name)))?;
                rows.iter_mut().for_each(|x| *x *= scale);
            }
        }
        ScaleScheme::PerChannel { scales } => {
            if scales.len() != w.rows {
                return Err(bad(format!(
                    "{scales_len} per-channel scales for {w_rows} rows",
                    scales_len = scales.len(),
                    w_rows = w.rows
                )));
            }
            for (row, &scale) in out.chunks_exact_mut(w.cols).zip(scales) {
                row.iter_mut().for_each(|x| *x *= scale);
            }
        }
        ScaleScheme::Block { block, segments } => {
            let [bn, bk] = *block;
            if bn == 0 || bk == 0 {
                return Err(bad(format!("block size {block:?} has a zero")));
            }
            let mut next = 0usize;
            for seg in segments {
                check_segment(w, seg, *block, next).map_err(bad)?;
                next = seg.row_offset + seg.rows;
                let gc = seg.grid[1];
                let start = seg.row_offset * w.cols;
                let rows = out
                    .get_mut(start..start + seg.rows * w.cols)
                    .ok_or_else(|| bad("segment out of range".into()))?;
                for (r, row) in rows.chunks_exact_mut(w.cols).enumerate() {
                    let br = r / bn;
                    let scale_row = seg.scales.get(br * gc..(br + 1) * gc).ok_or_else(|| {
                        bad(format!(
                            "segment at row {seg_row_offset}: scale row {br} missing",
                            seg_row_offset = seg.row_offset
                        ))
                    })?;
                    for (chunk, &scale) in row.chunks_mut(bk).zip(scale_row) {
                        chunk.iter_mut().for_each(|x| *x *= scale);
                    }
                }
            }
            if next != w.rows {
                return Err(bad(format!(
                    "block segments cover {next} rows, weight has {w_rows}",
                    w_rows = w.rows
                )));
            }
        }
    }
    Ok(out)
}

/// The shard table covers `[0, rows)` in order, without empty shards.
fn check_shards(w: &PackedWeight) -> Result<(), String> {
    let mut next = 0usize;
    for s in &w.shards {
        if s.row_offset != next || s.rows == 0 {
            return Err(format!(
                "shard `{s_name}` covers rows {s_row_offset}..{rows}, expected to start at {next} with > 0 rows",
                s_name = s.name,
                s_row_offset = s.row_offset,
                rows = s.row_offset.saturating_add(s.rows)
            ));
        }
        next = s.row_offset.saturating_add(s.rows);
    }
    if next != w.rows {
        return Err(format!(
            "shards cover {next} rows, weight has {w_rows}",
            w_rows = w.rows
        ));
    }
    Ok(())
}

fn check_segment(
    w: &PackedWeight,
    seg: &BlockSegment,
    block: [usize; 2],
    next: usize,
) -> Result<(), String> {
    if seg.row_offset != next || seg.rows == 0 {
        return Err(format!(
            "block segment at row {seg_row_offset} with {seg_rows} rows, expected to start at {next} with > 0 rows",
            seg_row_offset = seg.row_offset,
            seg_rows = seg.rows
        ));
    }
    if seg
        .row_offset
        .checked_add(seg.rows)
        .is_none_or(|end| end > w.rows)
    {
        return Err(format!(
            "block segment at row {seg_row_offset} with {seg_rows} rows exceeds {w_rows} rows",
            seg_row_offset = seg.row_offset,
            seg_rows = seg.rows,
            w_rows = w.rows
        ));
    }
    let grid = [seg.rows.div_ceil(block[0]), w.cols.div_ceil(block[1])];
    if seg.grid != grid {
        return Err(format!(
            "block segment at row {seg_row_offset}: grid {seg_grid:?}, expected {grid:?} for {seg_rows} rows × {w_cols} cols",
            seg_row_offset = seg.row_offset,
            seg_grid = seg.grid,
            seg_rows = seg.rows,
            w_cols = w.cols
        ));
    }
    if seg.scales.len() != grid[0] * grid[1] {
        return Err(format!(
            "block segment at row {seg_row_offset}: {seg_scales_len} scales for grid {grid:?}",
            seg_row_offset = seg.row_offset,
            seg_scales_len = seg.scales.len()
        ));
    }
    Ok(())
}
