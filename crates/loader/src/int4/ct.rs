//! compressed-tensors `pack-quantized` (W4A16) → canonical form.
//!
//! compressed-tensors stores a linear `W [N, K]` as
//! - `weight_packed` I32 `[N, ceil(K/8)]`: `pack_to_int32` adds the offset 8
//!   to each signed value `v` in `-8..=7` and packs eight along the input
//!   dimension, nibble `j` of word `w` = column `8w + j` (already the
//!   canonical order, with `q = v + 8`);
//! - `weight_scale` `[N, G]` (group strategy) or `[N, 1]` (channel);
//! - `weight_shape` `[2]` = `[N, K]` (I64 or I32);
//! - asymmetric only: `weight_zero_point` I32 `[ceil(N/8), G]`, the signed
//!   zero points packed the same way along the OUTPUT dimension;
//! - optionally `weight_g_idx` `[K]` (activation order).
//!
//! `W = (v - zp) · scale = (q - (zp + 8)) · scale`; symmetric weights have
//! `zp = 0`, i.e. canonical zero 8.

use crate::int4::repack::Repack;
use crate::int4::source::{
    column_groups, dense, nibble, Ctx, Decoded, Int4Source, Int4Tensors, Words,
};
use crate::int4::Int4Weights;
use crate::LoadError;

/// Decodes one `pack-quantized` weight (see the module docs). `group_size`
/// `None` is the channel strategy.
pub fn decode_ct(
    t: &Int4Tensors<'_>,
    group_size: Option<usize>,
    symmetric: bool,
    with_words: bool,
) -> Result<Decoded, LoadError> {
    decode_ct_as(t, group_size, symmetric, Words::from_flag(with_words))
}

/// [`decode_ct`] with the words repacked now, deferred or skipped.
pub(crate) fn decode_ct_as(
    t: &Int4Tensors<'_>,
    group_size: Option<usize>,
    symmetric: bool,
    mode: Words,
) -> Result<Decoded, LoadError> {
    let packed = t.packed.as_ref().ok_or_else(|| LoadError::MissingTensors {
        names: vec!["weight_packed".into()],
    })?;
    let cx = Ctx {
        tensor: &packed.name,
        format: "compressed-tensors",
    };
    let stem = packed
        .name
        .strip_suffix(".weight_packed")
        .unwrap_or(&packed.name);
    let shape_t = cx.need(&t.shape, "shape", &format!("{stem}.weight_shape"))?;
    let dims = cx.ints(shape_t, 2, "[out, in]")?;
    let (rows, cols) = match dims.as_slice() {
        &[r, c] if r > 0 && c > 0 => (r as usize, c as usize),
        _ => {
            return Err(cx.err(format!(
                "`{name}` = {dims:?}, expected two positive sizes",
                name = shape_t.name
            )))
        }
    };
    let wpr = cols.div_ceil(8);
    let (group_size, groups) = cx.groups(group_size, cols)?;
    let permuted = column_groups(&cx, t.g_idx.as_ref(), cols, group_size, groups)?;
    // Read here only to dequantize (the canonical words are repacked from
    // the bytes, see below).
    let pw = cx.words_if(
        permuted.is_some(),
        packed,
        &[rows, wpr],
        "[out, ceil(in/8)]",
    )?;
    let scales_t = cx.need(&t.scales, "scales", &format!("{stem}.weight_scale"))?;
    let sc = cx.floats(scales_t, &[rows, groups], "[out, groups]")?;
    let zeros: Vec<u8> = if symmetric {
        if let Some(z) = &t.zeros {
            return Err(cx.err(format!(
                "the config says symmetric, but `{name}` is present",
                name = z.name
            )));
        }
        vec![8; rows * groups]
    } else {
        let zp_t = cx.need(
            &t.zeros,
            "zero points",
            &format!("{stem}.weight_zero_point"),
        )?;
        let zp = cx.words(zp_t, &[rows.div_ceil(8), groups], "[ceil(out/8), groups]")?;
        (0..rows * groups)
            .map(|i| {
                let (r, g) = (i / groups, i % groups);
                nibble(zp[(r / 8) * groups + g], r % 8)
            })
            .collect()
    };
    let q = |r: usize, c: usize| nibble(pw[r * wpr + c / 8], c % 8);
    if let Some(col_group) = permuted {
        tracing::warn!(
            tensor = %packed.name,
            "activation-order weight (permuted weight_g_idx): dequantized to f32 at load (8x its 4-bit size)"
        );
        return Ok(Decoded::Dense {
            rows,
            cols,
            values: dense(
                rows,
                cols,
                &col_group,
                q,
                |r, g| zeros[r * groups + g],
                |r, g| sc[r * groups + g],
            ),
        });
    }
    let (words, deferred) = mode.apply(Repack::Ct { cols }, &packed.bytes, rows);
    Ok(Decoded::Int4(Int4Source {
        rows,
        cols,
        q: Int4Weights {
            group_size,
            words,
            scales: sc,
            zeros,
        },
        deferred,
    }))
}
