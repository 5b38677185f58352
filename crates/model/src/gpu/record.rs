//! What every part of the graph records launches with: the recording context
//! ([`Rec`]), which rows get logits ([`Head`]), and the few launch shapes the
//! layers share (a projection of normalised or plain rows, an RMSNorm, a row
//! copy, interleaving per-session launch lists).

use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::matmul::{matmul, matmul_normed, Epilogue, FusedNorm, MatmulArgs, MAX_VEC_T};
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{copy, norm, Dispatch, GpuContext, GpuWeight};

use crate::ModelError;

/// The model-wide inputs of every `record` call.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub ctx: &'a GpuContext,
    pub c: &'a TextConfig,
    /// Most tokens of one step (the activations' row count).
    pub max_t: usize,
}

/// Which rows get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// No head (a prefill chunk before the last).
    None,
    /// Only the last token's row, into logits row 0.
    Last,
    /// Every token's row.
    All,
}

/// Whether a `t`-token step fuses each RMSNorm into the GEMVs that read its
/// output (decode: no norm launch, `x` is not written) instead of writing the
/// normalised rows to `x` first (prefill GEMMs).
pub(crate) fn fuse_norm(t: usize) -> bool {
    t as u32 <= MAX_VEC_T
}

/// Where a projection's input rows come from.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// `t` rows of `[t, w.cols]` from the start of the buffer.
    Rows(&'a wgpu::Buffer),
    /// Qwen3.5's RMSNorm (`1 + w`, weight `norm`) of the hidden rows `h`
    /// (`[*, hidden]`) from row `row0`, fused into the GEMV.
    Normed {
        h: &'a wgpu::Buffer,
        row0: usize,
        norm: &'a wgpu::Buffer,
    },
}

impl<'a> Input<'a> {
    /// The input of a projection reading `norm(h)` in a `t`-token step: fused
    /// into the GEMV, or the rows of `x` a [`rms_norm`] launch wrote.
    pub fn normed(
        t: usize,
        h: &'a wgpu::Buffer,
        x: &'a wgpu::Buffer,
        norm: &'a wgpu::Buffer,
    ) -> Self {
        if fuse_norm(t) {
            Input::Normed { h, row0: 0, norm }
        } else {
            Input::Rows(x)
        }
    }
}

/// `input · Wᵀ` for `t` rows into `y` (`[t, out]`, `out` = `w.rows`, half of
/// it under [`Epilogue::SwiGlu`]), combined with `y` by `epilogue`.
pub(crate) fn project(
    r: &Rec,
    w: &GpuWeight,
    input: Input,
    y: &wgpu::Buffer,
    t: usize,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, ModelError> {
    let out_width = if matches!(epilogue, Epilogue::SwiGlu) {
        w.rows / 2
    } else {
        w.rows
    };
    let launches = match input {
        Input::Rows(x) => matmul(
            r.ctx,
            w,
            &MatmulArgs {
                x,
                x_offset: 0,
                x_stride: w.cols as u32,
                y,
                y_offset: 0,
                y_stride: out_width as u32,
                t: t as u32,
            },
            epilogue,
        )?,
        Input::Normed { h, row0, norm } => {
            let hidden = r.c.hidden_size;
            matmul_normed(
                r.ctx,
                w,
                &MatmulArgs {
                    x: h,
                    x_offset: (row0 * hidden) as u32,
                    x_stride: hidden as u32,
                    y,
                    y_offset: 0,
                    y_stride: out_width as u32,
                    t: t as u32,
                },
                &fused_norm(r.c, norm),
                epilogue,
            )?
        }
    };
    Ok(launches)
}

/// Qwen3.5's RMSNorm (`1 + w`) with weight `w`, for a fused GEMV.
pub(crate) fn fused_norm<'a>(c: &TextConfig, w: &'a wgpu::Buffer) -> FusedNorm<'a> {
    FusedNorm {
        weight: w,
        eps: c.rms_norm_eps as f32,
        one_plus: true,
    }
}

/// `x = RMSNorm(h)` (`1 + w`) over `t` rows of width `hidden`, unless the
/// step fuses its norms (then nothing).
pub(crate) fn rms_norm(
    r: &Rec,
    h: &wgpu::Buffer,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    t: usize,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    if !fuse_norm(t) {
        d.push(norm::rms_norm(
            r.ctx,
            &TensorView::f32_rows(h, 0, t as u32, r.c.hidden_size as u32),
            w,
            x,
            r.c.rms_norm_eps as f32,
            true,
        )?);
    }
    Ok(())
}

/// Copies row `from_row` of `from` (rows of `width` f32) to row `to_row` of `to`.
pub(crate) fn copy_row(
    ctx: &GpuContext,
    from: &wgpu::Buffer,
    from_row: usize,
    to: &wgpu::Buffer,
    to_row: usize,
    width: usize,
) -> Result<Dispatch, ModelError> {
    copy_rows(ctx, from, from_row, to, to_row, 1, width)
}

/// Copies rows `from_row .. from_row + n` of `from` (rows of `width` f32)
/// to rows `to_row ..` of `to`.
pub(crate) fn copy_rows(
    ctx: &GpuContext,
    from: &wgpu::Buffer,
    from_row: usize,
    to: &wgpu::Buffer,
    to_row: usize,
    n: usize,
    width: usize,
) -> Result<Dispatch, ModelError> {
    let words = (n * width) as u32;
    Ok(copy::copy_words(
        ctx,
        &TensorView::words(from, (from_row * width) as u32, words),
        &TensorView::words(to, (to_row * width) as u32, words),
    )?)
}

/// Appends launch 0 of every list, then launch 1 of every list, and so on:
/// neighbouring launches touch different sessions' buffers, so the GPU runs
/// the sessions' small kernels side by side instead of one after the other
/// behind a barrier each (each list keeps its own order).
pub(crate) fn interleave(lists: Vec<Vec<Dispatch>>, out: &mut Vec<Dispatch>) {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    loop {
        let before = out.len();
        for l in iters.iter_mut() {
            out.extend(l.next());
        }
        if out.len() == before {
            break;
        }
    }
}
