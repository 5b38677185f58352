//! GPTQ → canonical form.
//!
//! GPTQ (AutoGPTQ / GPTQModel / optimum) stores a linear `W [N, K]` as
//! - `qweight` I32 `[K/8, N]`: nibble `j` of `qweight[k, n]` is `q` of input
//!   column `8k + j`, output row `n` (packed along the input dimension);
//! - `qzeros` I32 `[G, N/8]`: nibble `j` of `qzeros[g, m]` is the zero point
//!   of row `8m + j` in group `g`, stored minus one in `checkpoint_format:
//!   "gptq"` (v1; readers add 1 back, as vLLM's and exllama's kernels do) and
//!   as it is in `gptq_v2`;
//! - `scales` `[G, N]` (F16);
//! - `g_idx` I32 `[K]`: the group of each input column, `k / group_size`
//!   unless the weight was quantized in activation order (`desc_act`).
//!
//! `W[n, k] = (q - zero) · scale` with the group `g_idx[k]`. The canonical
//! word `(n, w)` is `qweight[w, n]` itself (same nibble order along K).
//!
//! Activation order with a permuted `g_idx` has groups that are not column
//! ranges, which the canonical form cannot express: such a weight is
//! dequantized to f32 at load (exact, with a warning: it takes 8× the memory
//! of its 4-bit form and runs on the float path).

use qwgpu_checkpoint::quant::{GptqFormat, GptqParams};

use crate::int4::repack::Repack;
use crate::int4::source::{
    column_groups, dense, nibble, Ctx, Decoded, Int4Source, Int4Tensors, Words,
};
use crate::int4::Int4Weights;
use crate::LoadError;

/// Decodes one GPTQ weight. `with_words: false` leaves the words empty (a
/// layout-only load reads no weight bytes).
pub fn decode_gptq(
    t: &Int4Tensors<'_>,
    params: GptqParams,
    format: GptqFormat,
    with_words: bool,
) -> Result<Decoded, LoadError> {
    decode_gptq_as(t, params, format, Words::from_flag(with_words))
}

/// [`decode_gptq`] with the words repacked now, deferred or skipped.
pub(crate) fn decode_gptq_as(
    t: &Int4Tensors<'_>,
    params: GptqParams,
    format: GptqFormat,
    mode: Words,
) -> Result<Decoded, LoadError> {
    let qweight = t.packed.as_ref().ok_or_else(|| LoadError::MissingTensors {
        names: vec!["qweight".into()],
    })?;
    let cx = Ctx {
        tensor: &qweight.name,
        format: "GPTQ",
    };
    let stem = qweight
        .name
        .strip_suffix(".qweight")
        .unwrap_or(&qweight.name);
    if params.bits != 4 {
        return Err(cx.err(format!(
            "{bits}-bit weights are not supported",
            bits = params.bits
        )));
    }
    let &[k8, n] = qweight.shape.as_slice() else {
        return Err(cx.err(format!(
            "`qweight` has shape {got:?}, expected [in/8, out]",
            got = qweight.shape
        )));
    };
    let cols = k8 * 8;
    if n == 0 || k8 == 0 {
        return Err(cx.err("`qweight` has a zero dimension"));
    }
    let (group_size, groups) = cx.groups(params.group_size, cols)?;
    let n8 = n.div_ceil(8);
    let qzeros = cx.need(&t.zeros, "zero points", &format!("{stem}.qzeros"))?;
    let qz = cx.words(qzeros, &[groups, n8], "[groups, out/8]")?;
    let scales_t = cx.need(&t.scales, "scales", &format!("{stem}.scales"))?;
    let sc = cx.floats(scales_t, &[groups, n], "[groups, out]")?;
    let offset = match format {
        GptqFormat::V1 => 1u8,
        GptqFormat::V2 => 0,
    };
    let zero = |r: usize, g: usize| nibble(qz[g * n8 + r / 8], r % 8) + offset;
    let scale = |r: usize, g: usize| sc[g * n + r];
    let permuted = column_groups(&cx, t.g_idx.as_ref(), cols, group_size, groups)?;
    // Read here only to dequantize (the canonical words are repacked from
    // the bytes, see below).
    let qw = cx.words_if(permuted.is_some(), qweight, &[k8, n], "[in/8, out]")?;
    let q = |r: usize, c: usize| nibble(qw[(c / 8) * n + r], c % 8);

    if let Some(col_group) = permuted {
        if !params.desc_act {
            return Err(cx.err(format!(
                "`{stem}.g_idx` permutes the input columns' groups, but the config has desc_act: false"
            )));
        }
        tracing::warn!(
            tensor = %qweight.name,
            "activation-order GPTQ weight (permuted g_idx): dequantized to f32 at load (8x its 4-bit size)"
        );
        return Ok(Decoded::Dense {
            rows: n,
            cols,
            values: dense(n, cols, &col_group, q, zero, scale),
        });
    }

    let mut zeros = Vec::with_capacity(n * groups);
    let mut scales = Vec::with_capacity(n * groups);
    for r in 0..n {
        for g in 0..groups {
            let z = zero(r, g);
            if z > 15 {
                return Err(cx.err(format!(
                    "`{stem}.qzeros`: row {r}, group {g} stores nibble 15, i.e. zero point 16 \
                     in the gptq (v1) format, outside 0..=15"
                )));
            }
            zeros.push(z);
            scales.push(scale(r, g));
        }
    }
    if params.sym && zeros.iter().any(|&z| z != 8) {
        tracing::warn!(tensor = %qweight.name, "sym: true but zero points other than 8: using the stored zero points");
    }
    let (words, deferred) = mode.apply(Repack::Gptq { k8, n }, &qweight.bytes, n);
    Ok(Decoded::Int4(Int4Source {
        rows: n,
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
