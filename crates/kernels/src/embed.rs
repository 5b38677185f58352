//! Embedding gather: `h[t, :] = W[ids[ids_offset + t], :]`, dequantised from the
//! weight's stored format (F32, BF16, F16, FP8 E4M3/E5M2 with any scale scheme
//! of [`GpuWeight`]), into dense f32 rows `[t_count, cols]`.
//!
//! One workgroup per token reads its row with `vec4<u32>` loads and decodes
//! exactly (`numeric.wgsl`), multiplying by the row's scale entry once per word:
//! the result equals `qwgpu_loader::dequantize` bit for bit. A weight larger
//! than one binding is split by rows into pieces; each piece gets its own
//! launch, which writes only the tokens whose ids fall in its rows. Ids at or
//! past `rows` give zero rows (written by the first piece's launch) — the GPU
//! cannot report them, and a zero row is harmless and visible in tests.

use crate::dispatch::{grid_1d, Dispatch};
use crate::shaders::NUMERIC;
use crate::spec::{KernelSpec, Needs, Part, Uniform};
use crate::view::{Dtype, TensorView};
use crate::{GpuContext, GpuWeight, KernelError};

crate::shader!(EMBED, "embed.wgsl");

crate::uniform_struct! {
    /// Mirrors `struct EmbedParams` in `shaders/embed.wgsl`.
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct EmbedParams as "EmbedParams" {
        ids_off: u32,
        t_count: u32,
        cols: u32,
        stride4: u32,
        row0: u32,
        rows: u32,
        total_rows: u32,
        block_cols: u32,
        zero_oob: u32,
        _pad: [u32; 3],
    }
}

static EMBED_GATHER: KernelSpec = KernelSpec {
    label: "embed",
    parts: &[Part::File(&NUMERIC), Part::File(&EMBED)],
    entry: "embed",
    uniforms: &[&EmbedParams::LAYOUT],
    needs: Needs::Baseline,
};

/// The kernels of this family.
pub(crate) static SPECS: &[&KernelSpec] = &[&EMBED_GATHER];

const WG: u32 = 256;

/// `h[t, :] = dequantised row ids[t] of w`, for the `t_count` ids of `ids`
/// (u32 `[1, t_count]`, at any offset): `h` is dense f32 `[t_count, w.cols]`
/// from element 0. One launch per weight piece (record them all, in any
/// order). Ids `>= w.rows` give zeros.
pub fn embed(
    ctx: &GpuContext,
    w: &GpuWeight,
    ids: &TensorView<'_>,
    h: &TensorView<'_>,
) -> Result<Vec<Dispatch>, KernelError> {
    const K: &str = "embed";
    let bad = |detail: String| KernelError::Arguments { kernel: K, detail };
    if w.cols == 0 || w.rows == 0 {
        return Err(bad(format!(
            "weight `{w_name}` has shape [{w_rows}, {w_cols}]",
            w_name = w.name,
            w_rows = w.rows,
            w_cols = w.cols
        )));
    }
    let rows = u32::try_from(w.rows).map_err(|_| {
        bad(format!(
            "weight `{w_name}`: {w_rows} rows",
            w_name = w.name,
            w_rows = w.rows
        ))
    })?;
    let cols = u32::try_from(w.cols).map_err(|_| {
        bad(format!(
            "weight `{w_name}`: {w_cols} cols",
            w_name = w.name,
            w_cols = w.cols
        ))
    })?;
    if ids.shape[0] != 1 {
        return Err(bad(format!(
            "ids has shape {ids_shape:?}, expected one row of token ids",
            ids_shape = ids.shape
        )));
    }
    let t64 = ids.shape[1];
    ids.expect(K, "ids", [1, t64], Dtype::U32, false)?;
    h.expect(K, "h", [t64, cols as u64], Dtype::F32, true)?;
    // Inside their buffers, so within u32 (checked).
    let (t_count, ids_offset) = (t64 as u32, ids.offset as u32);
    if w.format.is_int4() {
        return Err(KernelError::Unsupported {
            what: format!("embedding of 4-bit weight `{w_name}`", w_name = w.name),
            detail: "4-bit embeddings are not supported (checkpoints keep them unquantized)".into(),
        });
    }
    if w.block_cols == 0 || !w.block_cols.is_multiple_of(4) {
        return Err(bad(format!(
            "weight `{w_name}`: block_cols {w_block_cols} is not a multiple of 4",
            w_name = w.name,
            w_block_cols = w.block_cols
        )));
    }
    let mut out = Vec::with_capacity(w.pieces.len());
    for (i, piece) in w.pieces.iter().enumerate() {
        let params = EmbedParams {
            ids_off: ids_offset,
            t_count,
            cols,
            stride4: (w.stride_words / 4) as u32,
            row0: piece.row0 as u32,
            rows: piece.rows as u32,
            total_rows: rows,
            block_cols: w.block_cols as u32,
            zero_oob: (i == 0) as u32,
            _pad: [0; 3],
        };
        out.push(
            ctx.launch(&EMBED_GATHER)
                .constant("WG", WG)
                .constant("FORMAT", w.format as u32)
                .bind("wq", &piece.buffer)
                .bind("scales", &w.meta)
                .bind("ids", ids.buffer)
                .bind("h", h.buffer)
                .params(&params)
                .grid(grid_1d(t_count))
                .record()?,
        );
    }
    Ok(out)
}
