//! Records one step of the forward pass (T tokens after `pos` cached ones) as a
//! list of launches: embedding, every layer's mixer and FFN with the residual
//! adds fused into the projections' epilogues, final norm and head.

use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::attention::{attention_forward, AttnBuffers, KvPage};
use qwgpu_kernels::gdn::{gdn_forward, GdnLayerBuffers, GdnMode};
use qwgpu_kernels::matmul::{
    matmul, matmul_indexed, matmul_indexed_normed, matmul_normed, Epilogue, FusedNorm, IndexedArgs,
    MatmulArgs, MAX_VEC_T,
};
use qwgpu_kernels::moe::grouped::{self, GroupedArgs};
use qwgpu_kernels::{copy, embed, moe, norm, Dispatch, GpuContext, GpuWeight};

use super::session::{attn_dims, gdn_dims, Activations, GpuSession, LayerStateGpu};
use super::weights::{FfnGpu, LayerGpu, MixerGpu, WeightsGpu};
use crate::ModelError;

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

fn mm(
    ctx: &GpuContext,
    w: &GpuWeight,
    x: &wgpu::Buffer,
    x_offset: usize,
    y: &wgpu::Buffer,
    t: usize,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>, ModelError> {
    let out_width = if matches!(epilogue, Epilogue::SwiGlu) {
        w.rows / 2
    } else {
        w.rows
    };
    Ok(matmul(
        ctx,
        w,
        &MatmulArgs {
            x,
            x_offset: x_offset as u32,
            x_stride: w.cols as u32,
            y,
            y_offset: 0,
            y_stride: out_width as u32,
            t: t as u32,
        },
        epilogue,
    )?)
}

/// Whether a `t`-token step fuses each RMSNorm into the GEMVs that read its
/// output (decode: no norm launch, `a.x` is not written) instead of writing
/// the normalised rows to `a.x` first (prefill GEMMs).
fn fuse_norm(t: usize) -> bool {
    t as u32 <= MAX_VEC_T
}

/// `norm(h rows from row0) · Wᵀ` into `y`: the norm fused into the GEMV when
/// `fused`, else `a.x` (written by a norm launch of the caller) times W.
#[allow(clippy::too_many_arguments)]
fn mm_norm(
    ctx: &GpuContext,
    c: &TextConfig,
    norm_w: &wgpu::Buffer,
    a: &Activations,
    row0: usize,
    w: &GpuWeight,
    y: &wgpu::Buffer,
    t: usize,
    epilogue: Epilogue,
    fused: bool,
) -> Result<Vec<Dispatch>, ModelError> {
    if !fused {
        return mm(ctx, w, &a.x, 0, y, t, epilogue);
    }
    let h = c.hidden_size;
    let out_width = if matches!(epilogue, Epilogue::SwiGlu) {
        w.rows / 2
    } else {
        w.rows
    };
    Ok(matmul_normed(
        ctx,
        w,
        &MatmulArgs {
            x: &a.h,
            x_offset: (row0 * h) as u32,
            x_stride: h as u32,
            y,
            y_offset: 0,
            y_stride: out_width as u32,
            t: t as u32,
        },
        &fused_norm(c, norm_w),
        epilogue,
    )?)
}

/// Qwen3.5's RMSNorm (`1 + w`) with weight `w`, for a fused GEMV.
fn fused_norm<'a>(c: &TextConfig, w: &'a wgpu::Buffer) -> FusedNorm<'a> {
    FusedNorm {
        weight: w,
        eps: c.rms_norm_eps as f32,
        one_plus: true,
    }
}

/// Launches for `t` tokens of session `s` at its position (the caller ensures
/// the KV page holding `s.pos` also holds `s.pos + t - 1`).
pub(crate) fn record(
    ctx: &GpuContext,
    c: &TextConfig,
    w: &WeightsGpu,
    s: &GpuSession,
    t: usize,
    max_t: usize,
    head: Head,
) -> Result<Vec<Dispatch>, ModelError> {
    let a = &s.act;
    let mut d: Vec<Dispatch> = Vec::new();
    d.extend(embed::embed(ctx, &w.embed, &a.ids, 0, &a.h, t as u32)?);
    for (layer, state) in w.layers.iter().zip(&s.layers) {
        mixer_in(ctx, c, layer, a, t, &mut d)?;
        mixer_core(ctx, c, layer, s, a, state, t, max_t, &mut d)?;
        mixer_out(ctx, layer, a, t, &mut d)?;
        ffn(ctx, c, layer, a, t, true, &mut d)?;
    }
    lm_head(ctx, c, w, a, t, head, &mut d)?;
    Ok(d)
}

/// One decode step of several sessions in one launch list: the projections,
/// norms, FFN and head run once over all rows (row `i` = session `i`, in
/// `a`), while each session's mixer core (GDN step or attention over its own
/// state) runs on its own buffers, its row copied in and out. Every row gets
/// the arithmetic of a lone decode step (the same GEMV kernel per row; MoE
/// never switches to the grouped GEMM), so results equal unbatched ones.
pub(crate) fn record_batch(
    ctx: &GpuContext,
    c: &TextConfig,
    w: &WeightsGpu,
    a: &Activations,
    sessions: &[&GpuSession],
    max_t: usize,
) -> Result<Vec<Dispatch>, ModelError> {
    let b = sessions.len();
    let mut d: Vec<Dispatch> = Vec::new();
    d.extend(embed::embed(ctx, &w.embed, &a.ids, 0, &a.h, b as u32)?);
    for (li, layer) in w.layers.iter().enumerate() {
        mixer_in(ctx, c, layer, a, b, &mut d)?;
        let mut per_session = Vec::with_capacity(b);
        for (row, s) in sessions.iter().enumerate() {
            let state = s.layers.get(li).ok_or_else(|| ModelError::CacheMismatch {
                detail: "session has fewer layers than the model".into(),
            })?;
            let own = &s.act;
            let mut l = Vec::new();
            for (from, to, width) in mixer_inputs(c, layer, a, own) {
                l.push(copy_row(ctx, from, row, to, 0, width)?);
            }
            mixer_core(ctx, c, layer, s, own, state, 1, max_t, &mut l)?;
            let (from, to, width) = mixer_output(c, layer, own, a);
            l.push(copy_row(ctx, from, 0, to, row, width)?);
            per_session.push(l);
        }
        interleave(per_session, &mut d);
        mixer_out(ctx, layer, a, b, &mut d)?;
        ffn(ctx, c, layer, a, b, false, &mut d)?;
    }
    lm_head(ctx, c, w, a, b, Head::All, &mut d)?;
    Ok(d)
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

/// Copies row `from_row` of `from` (rows of `width` f32) to row `to_row` of `to`.
fn copy_row(
    ctx: &GpuContext,
    from: &wgpu::Buffer,
    from_row: usize,
    to: &wgpu::Buffer,
    to_row: usize,
    width: usize,
) -> Result<Dispatch, ModelError> {
    Ok(copy::copy_words(
        ctx,
        from,
        (from_row * width) as u32,
        to,
        (to_row * width) as u32,
        width as u32,
    )?)
}

/// The mixer core's inputs (buffer in `a`, the same buffer in `own`, row width).
fn mixer_inputs<'a>(
    c: &TextConfig,
    layer: &LayerGpu,
    a: &'a Activations,
    own: &'a Activations,
) -> Vec<(&'a wgpu::Buffer, &'a wgpu::Buffer, usize)> {
    match &layer.mixer {
        MixerGpu::Linear(_) => vec![
            (&a.qkvz, &own.qkvz, c.conv_dim() + c.value_dim()),
            (&a.ba, &own.ba, 2 * c.linear_num_value_heads),
        ],
        MixerGpu::Full(_) => vec![(&a.qkv, &own.qkv, c.q_proj_rows() + 2 * c.kv_proj_rows())],
    }
}

/// The mixer core's output (buffer in `own`, the same buffer in `a`, row width).
fn mixer_output<'a>(
    c: &TextConfig,
    layer: &LayerGpu,
    own: &'a Activations,
    a: &'a Activations,
) -> (&'a wgpu::Buffer, &'a wgpu::Buffer, usize) {
    match &layer.mixer {
        MixerGpu::Linear(_) => (&own.gdn_out, &a.gdn_out, c.value_dim()),
        MixerGpu::Full(_) => (
            &own.attn_out,
            &a.attn_out,
            c.num_attention_heads * c.head_dim,
        ),
    }
}

fn input_norm(
    ctx: &GpuContext,
    c: &TextConfig,
    layer: &LayerGpu,
    a: &Activations,
    t: usize,
) -> Result<Dispatch, ModelError> {
    Ok(norm::rms_norm(
        ctx,
        &a.h,
        0,
        &layer.input_norm,
        &a.x,
        t as u32,
        c.hidden_size as u32,
        c.rms_norm_eps as f32,
        true,
    )?)
}

/// The input norm and the mixer's input projections (h → qkvz, ba or qkv).
fn mixer_in(
    ctx: &GpuContext,
    c: &TextConfig,
    layer: &LayerGpu,
    a: &Activations,
    t: usize,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    let fused = fuse_norm(t);
    if !fused {
        d.push(input_norm(ctx, c, layer, a, t)?);
    }
    let n = &layer.input_norm;
    let st = Epilogue::Store;
    match &layer.mixer {
        MixerGpu::Linear(g) => {
            d.extend(mm_norm(ctx, c, n, a, 0, &g.qkvz, &a.qkvz, t, st, fused)?);
            d.extend(mm_norm(ctx, c, n, a, 0, &g.ba, &a.ba, t, st, fused)?);
        }
        MixerGpu::Full(at) => {
            d.extend(mm_norm(ctx, c, n, a, 0, &at.qkv, &a.qkv, t, st, fused)?);
        }
    }
    Ok(())
}

/// The mixer's output projection, added to the residual stream.
fn mixer_out(
    ctx: &GpuContext,
    layer: &LayerGpu,
    a: &Activations,
    t: usize,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    let (w, x) = match &layer.mixer {
        MixerGpu::Linear(g) => (&g.out_proj, &a.gdn_out),
        MixerGpu::Full(at) => (&at.o_proj, &a.attn_out),
    };
    d.extend(mm(ctx, w, x, 0, &a.h, t, Epilogue::Accumulate)?);
    Ok(())
}

/// The mixer between its projections, on session `s`'s state: the GDN step
/// (or chunked prefill) or attention over the session's KV pages.
#[allow(clippy::too_many_arguments)]
fn mixer_core(
    ctx: &GpuContext,
    c: &TextConfig,
    layer: &LayerGpu,
    s: &GpuSession,
    a: &Activations,
    state: &LayerStateGpu,
    t: usize,
    max_t: usize,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    match (&layer.mixer, state) {
        (MixerGpu::Linear(g), LayerStateGpu::Linear { conv, state }) => {
            let scratch = a.gdn.as_ref().ok_or_else(|| ModelError::Config {
                detail: "GDN layer without GDN scratch".into(),
            })?;
            let mode = if t == 1 {
                GdnMode::Recurrent
            } else {
                GdnMode::Chunked
            };
            d.extend(gdn_forward(
                ctx,
                &gdn_dims(c),
                &GdnLayerBuffers {
                    qkvz: &a.qkvz,
                    ba: &a.ba,
                    conv_w: &g.conv_w,
                    a_log: &g.a_log,
                    dt_bias: &g.dt_bias,
                    norm_w: &g.norm_w,
                    conv_state: conv,
                    state,
                    out: &a.gdn_out,
                },
                scratch,
                t as u32,
                mode,
            )?);
        }
        (MixerGpu::Full(at), LayerStateGpu::Full { pages }) => {
            let scratch = s.attn.as_ref().ok_or_else(|| ModelError::Config {
                detail: "attention layer without attention scratch".into(),
            })?;
            let (n_pages, _) = s.pages_at(s.pos);
            let kv: Vec<KvPage> = pages
                .iter()
                .zip(&s.pages)
                .take(n_pages)
                .map(|(p, &rows)| KvPage {
                    keys: &p.keys,
                    values: &p.values,
                    rows: rows as u32,
                })
                .collect();
            d.extend(attention_forward(
                ctx,
                &attn_dims(c),
                &AttnBuffers {
                    qkv: &a.qkv,
                    q_norm: &at.q_norm,
                    k_norm: &at.k_norm,
                    rope: &a.rope,
                    pages: &kv,
                    step: &a.step,
                    out: &a.attn_out,
                },
                scratch,
                t as u32,
                max_t as u32,
            )?);
        }
        _ => {
            return Err(ModelError::CacheMismatch {
                detail: "layer state kind differs from the layer's".into(),
            })
        }
    }
    Ok(())
}

/// Post-attention norm and the FFN (dense SwiGLU or MoE), added to the residual
/// stream. `grouped_ok`: MoE may use the grouped GEMM when a step has many pairs.
fn ffn(
    ctx: &GpuContext,
    c: &TextConfig,
    layer: &LayerGpu,
    a: &Activations,
    t: usize,
    grouped_ok: bool,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    let h = c.hidden_size;
    // Decode: every reader of the normalised rows (dense gate|up; MoE router,
    // experts' gate|up, shared expert, shared gate) fuses the norm.
    let fused = fuse_norm(t);
    let n = &layer.post_norm;
    if !fused {
        d.push(norm::rms_norm(
            ctx,
            &a.h,
            0,
            &layer.post_norm,
            &a.x,
            t as u32,
            h as u32,
            c.rms_norm_eps as f32,
            true,
        )?);
    }
    match &layer.ffn {
        FfnGpu::Dense(m) => {
            let sw = Epilogue::SwiGlu;
            d.extend(mm_norm(ctx, c, n, a, 0, &m.gate_up, &a.act, t, sw, fused)?);
            d.extend(mm(ctx, &m.down, &a.act, 0, &a.h, t, Epilogue::Accumulate)?);
        }
        FfnGpu::Moe(m) => {
            let pairs = (t as u32) * m.top_k;
            let st = Epilogue::Store;
            let rl = &a.router_logits;
            d.extend(mm_norm(ctx, c, n, a, 0, &m.router, rl, t, st, fused)?);
            d.push(moe::moe_route(
                ctx,
                &a.router_logits,
                t as u32,
                m.experts,
                m.top_k,
                &a.moe_ids,
                &a.moe_w,
            )?);
            // The grouped GEMM reads the written rows: never with the fused norm.
            let group = !fused && grouped_ok && t > 1 && grouped::prefer_grouped(pairs, m.experts);
            match (&a.moe_group, group) {
                // Prefill with enough pairs per expert: group the pairs by
                // expert once, then one tiled GEMM per expert matmul
                // (weights read once per 64 pairs).
                (Some(scratch), true) => {
                    d.push(grouped::moe_group(
                        ctx, &a.moe_ids, 0, pairs, m.experts, scratch,
                    )?);
                    d.extend(grouped::matmul_grouped(
                        ctx,
                        &m.experts_gate_up,
                        &GroupedArgs {
                            x: &a.x,
                            x_stride: h as u32,
                            x_row_div: m.top_k,
                            y: &a.expert_act,
                            y_stride: m.inter,
                            pairs,
                            rows_per_expert: 2 * m.inter,
                        },
                        scratch,
                        Epilogue::SwiGlu,
                    )?);
                    d.extend(grouped::matmul_grouped(
                        ctx,
                        &m.experts_down,
                        &GroupedArgs {
                            x: &a.expert_act,
                            x_stride: m.inter,
                            x_row_div: 1,
                            y: &a.expert_out,
                            y_stride: h as u32,
                            pairs,
                            rows_per_expert: h as u32,
                        },
                        scratch,
                        Epilogue::Store,
                    )?);
                }
                _ => {
                    let args = IndexedArgs {
                        x: if fused { &a.h } else { &a.x },
                        x_stride: h as u32,
                        x_row_div: m.top_k,
                        ids: &a.moe_ids,
                        ids_offset: 0,
                        y: &a.expert_act,
                        y_stride: m.inter,
                        pairs,
                        rows_per_expert: 2 * m.inter,
                    };
                    let gu = &m.experts_gate_up;
                    d.extend(if fused {
                        matmul_indexed_normed(ctx, gu, &args, &fused_norm(c, n), Epilogue::SwiGlu)?
                    } else {
                        matmul_indexed(ctx, gu, &args, Epilogue::SwiGlu)?
                    });
                    d.extend(matmul_indexed(
                        ctx,
                        &m.experts_down,
                        &IndexedArgs {
                            x: &a.expert_act,
                            x_stride: m.inter,
                            x_row_div: 1,
                            ids: &a.moe_ids,
                            ids_offset: 0,
                            y: &a.expert_out,
                            y_stride: h as u32,
                            pairs,
                            rows_per_expert: h as u32,
                        },
                        Epilogue::Store,
                    )?);
                }
            }
            let (sg, sa) = (&m.shared.gate_up, &a.shared_act);
            d.extend(mm_norm(
                ctx,
                c,
                n,
                a,
                0,
                sg,
                sa,
                t,
                Epilogue::SwiGlu,
                fused,
            )?);
            d.extend(mm(
                ctx,
                &m.shared.down,
                &a.shared_act,
                0,
                &a.shared_out,
                t,
                Epilogue::Store,
            )?);
            let (gw, gl) = (&m.shared_gate, &a.gate_logit);
            d.extend(mm_norm(ctx, c, n, a, 0, gw, gl, t, st, fused)?);
            d.push(moe::moe_combine(
                ctx,
                &a.expert_out,
                &a.moe_w,
                &a.shared_out,
                &a.gate_logit,
                &a.h,
                t as u32,
                m.top_k,
                h as u32,
            )?);
        }
    }
    Ok(())
}

/// Final norm and LM head: logits of no row, the last row (into row 0) or every row.
fn lm_head(
    ctx: &GpuContext,
    c: &TextConfig,
    w: &WeightsGpu,
    a: &Activations,
    t: usize,
    head: Head,
    d: &mut Vec<Dispatch>,
) -> Result<(), ModelError> {
    let h = c.hidden_size;
    let eps = c.rms_norm_eps as f32;
    let head_w = w.lm_head.as_ref().unwrap_or(&w.embed);
    match head {
        Head::None => {}
        Head::Last => {
            // One row: always the GEMV with the norm fused.
            let st = Epilogue::Store;
            d.extend(mm_norm(
                ctx,
                c,
                &w.norm,
                a,
                t - 1,
                head_w,
                &a.logits,
                1,
                st,
                true,
            )?);
        }
        Head::All => {
            let fused = fuse_norm(t);
            if !fused {
                d.push(norm::rms_norm(
                    ctx, &a.h, 0, &w.norm, &a.x, t as u32, h as u32, eps, true,
                )?);
            }
            let st = Epilogue::Store;
            d.extend(mm_norm(
                ctx, c, &w.norm, a, 0, head_w, &a.logits, t, st, fused,
            )?);
        }
    }
    Ok(())
}
