//! AWQ (AutoAWQ, `version: "gemm"`) → canonical form.
//!
//! AWQ stores a linear `W [N, K]` as
//! - `qweight` I32 `[K, N/8]`, packed along the OUTPUT dimension in AWQ's
//!   interleaved order: nibble `i` of `qweight[k, m]` is `q` of output row
//!   `8m + ORDER[i]`, input column `k`, with `ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`;
//! - `qzeros` I32 `[G, N/8]`, same order (no storage offset);
//! - `scales` `[G, N]` (F16).
//!
//! `W[n, k] = (q - zero) · scale` with group `k / group_size`.

use crate::int4::repack::Repack;
use crate::int4::source::{nibble, Ctx, Decoded, Int4Source, Int4Tensors, Words};
use crate::int4::Int4Weights;
use crate::LoadError;

/// AWQ's packing order: nibble `i` holds output `8m + AWQ_ORDER[i]`.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The nibble holding output `8m + j`: the inverse of [`AWQ_ORDER`].
pub(crate) const AWQ_NIBBLE: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// Decodes one AWQ GEMM weight (see the module docs).
pub fn decode_awq(
    t: &Int4Tensors<'_>,
    group_size: Option<usize>,
    with_words: bool,
) -> Result<Decoded, LoadError> {
    decode_awq_as(t, group_size, Words::from_flag(with_words))
}

/// [`decode_awq`] with the words repacked now, deferred or skipped.
pub(crate) fn decode_awq_as(
    t: &Int4Tensors<'_>,
    group_size: Option<usize>,
    mode: Words,
) -> Result<Decoded, LoadError> {
    let qweight = t.packed.as_ref().ok_or_else(|| LoadError::MissingTensors {
        names: vec!["qweight".into()],
    })?;
    let cx = Ctx {
        tensor: &qweight.name,
        format: "AWQ",
    };
    let stem = qweight
        .name
        .strip_suffix(".qweight")
        .unwrap_or(&qweight.name);
    let &[cols, n8] = qweight.shape.as_slice() else {
        return Err(cx.err(format!(
            "`qweight` has shape {got:?}, expected [in, out/8]",
            got = qweight.shape
        )));
    };
    if cols == 0 || n8 == 0 {
        return Err(cx.err("`qweight` has a zero dimension"));
    }
    let rows = n8 * 8;
    let (group_size, groups) = cx.groups(group_size, cols)?;
    cx.words_if(false, qweight, &[cols, n8], "[in, out/8]")?;
    let qzeros = cx.need(&t.zeros, "zero points", &format!("{stem}.qzeros"))?;
    let qz = cx.words(qzeros, &[groups, n8], "[groups, out/8]")?;
    let scales_t = cx.need(&t.scales, "scales", &format!("{stem}.scales"))?;
    let sc = cx.floats(scales_t, &[groups, rows], "[groups, out]")?;
    if let Some(g) = &t.g_idx {
        return Err(cx.err(format!("AWQ has no g_idx, found `{name}`", name = g.name)));
    }

    let mut zeros = Vec::with_capacity(rows * groups);
    let mut scales = Vec::with_capacity(rows * groups);
    for r in 0..rows {
        for g in 0..groups {
            zeros.push(nibble(qz[g * n8 + r / 8], AWQ_NIBBLE[r % 8]));
            scales.push(sc[g * rows + r]);
        }
    }
    let (words, deferred) = mode.apply(Repack::Awq { cols, n8 }, &qweight.bytes, rows);
    Ok(Decoded::Int4(Int4Source {
        rows,
        cols,
        q: Int4Weights {
            group_size,
            words,
            scales,
            zeros,
        },
        deferred,
    }))
}
