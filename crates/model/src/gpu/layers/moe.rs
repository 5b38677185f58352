//! Mixture-of-experts FFNs: router → top-k experts per token (SwiGLU each),
//! combined with their weights plus a sigmoid-gated shared expert, added to
//! the residual stream. Prefill steps with enough token-expert pairs group the
//! pairs by expert and run one tiled GEMM per expert matmul; decode (and every
//! batched decode row) runs the indexed GEMV with the norm fused.

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::{FfnConfig, TextConfig};
use qwgpu_kernels::matmul::{matmul_indexed, matmul_indexed_normed, Epilogue, IndexedArgs};
use qwgpu_kernels::moe::grouped::{self, GroupScratch, GroupedArgs};
use qwgpu_kernels::view::{Dtype, TensorView};
use qwgpu_kernels::{moe, Dispatch, GpuWeight};
use qwgpu_loader::MoeWeights;

use super::kind::Ffn;
use crate::gpu::activations::{Activations, MoeActs};
use crate::gpu::record::{fused_norm, project, Input, Rec};
use crate::gpu::upload::Uploader;
use crate::shapes::check_matrix;
use crate::ModelError;

pub(crate) struct Moe {
    /// `[E, H]`.
    router: GpuWeight,
    /// `[E·2·Ie, H]`: expert e's gate rows at `e·2·Ie`, its up rows after them.
    experts_gate_up: GpuWeight,
    /// `[E·H, Ie]`: expert e's down rows at `e·H`.
    experts_down: GpuWeight,
    /// `[2·Is, H]` and `[H, Is]`.
    shared_gate_up: GpuWeight,
    shared_down: GpuWeight,
    /// `[1, H]`.
    shared_gate: GpuWeight,
    experts: u32,
    top_k: u32,
    /// `Ie`.
    inter: u32,
}

/// Checks an MoE block's weights against the shape table.
pub(crate) fn check(c: &TextConfig, e: &MoeWeights) -> Result<(), ModelError> {
    check_matrix(c, Packed::MoeRouter, &e.router)?;
    check_matrix(c, Packed::MoeExpertsGateUp, &e.experts_gate_up)?;
    check_matrix(c, Packed::MoeExpertsDown, &e.experts_down)?;
    check_matrix(c, Packed::SharedGateUp, &e.shared_expert.gate_up)?;
    check_matrix(c, Packed::SharedDown, &e.shared_expert.down)?;
    check_matrix(c, Packed::SharedGate, &e.shared_expert_gate)
}

impl Moe {
    pub fn upload(
        u: &mut Uploader<'_>,
        c: &TextConfig,
        i: usize,
        e: &MoeWeights,
    ) -> Result<Self, ModelError> {
        let FfnConfig::Moe {
            num_experts,
            num_experts_per_tok,
            moe_intermediate_size,
            ..
        } = c.ffn
        else {
            return Err(ModelError::LayerKind {
                layer: i,
                expected: "dense MLP",
                got: "MoE",
            });
        };
        Ok(Self {
            router: u.weight(&e.router)?,
            experts_gate_up: u.weight(&e.experts_gate_up)?,
            experts_down: u.weight(&e.experts_down)?,
            shared_gate_up: u.weight(&e.shared_expert.gate_up)?,
            shared_down: u.weight(&e.shared_expert.down)?,
            shared_gate: u.weight(&e.shared_expert_gate)?,
            experts: num_experts as u32,
            top_k: num_experts_per_tok as u32,
            inter: moe_intermediate_size as u32,
        })
    }
}

impl Ffn for Moe {
    fn record(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        grouped_ok: bool,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let h = r.c.hidden_size as u32;
        let m = a.moe()?;
        let pairs = (t as u32) * self.top_k;
        d.extend(project(
            r,
            &self.router,
            input,
            &m.router_logits,
            t,
            Epilogue::Store,
        )?);
        let (tu, k) = (t as u32, self.top_k);
        let ids = TensorView::rows(&m.ids, Dtype::U32, 0, [t as u64, k as u64], k as u64);
        let weights = TensorView::f32_rows(&m.weights, 0, tu, k);
        d.push(moe::moe_route(
            r.ctx,
            &TensorView::f32_rows(&m.router_logits, 0, tu, self.experts),
            &ids,
            &weights,
        )?);
        // The grouped GEMM reads the written rows: never with the fused norm.
        match (input, &m.group) {
            (Input::Rows(x), Some(scratch))
                if grouped_ok && t > 1 && grouped::prefer_grouped(pairs, self.experts) =>
            {
                self.experts_grouped(r, x, m, scratch, t as u32, d)?
            }
            _ => self.experts_indexed(r, input, m, pairs, d)?,
        }
        d.extend(project(
            r,
            &self.shared_gate_up,
            input,
            &m.shared_act,
            t,
            Epilogue::SwiGlu,
        )?);
        d.extend(project(
            r,
            &self.shared_down,
            Input::Rows(&m.shared_act),
            &m.shared_out,
            t,
            Epilogue::Store,
        )?);
        d.extend(project(
            r,
            &self.shared_gate,
            input,
            &m.gate_logit,
            t,
            Epilogue::Store,
        )?);
        d.push(moe::moe_combine(
            r.ctx,
            &TensorView::f32_rows(&m.expert_out, 0, pairs, h),
            &weights,
            &TensorView::f32_rows(&m.shared_out, 0, tu, h),
            &TensorView::f32_rows(&m.gate_logit, 0, tu, 1),
            &TensorView::f32_rows(&a.stream.h, 0, tu, h),
        )?);
        Ok(())
    }
}

impl Moe {
    /// The routed experts over pairs grouped by expert: prefill with enough
    /// pairs per expert groups them once, then runs one tiled GEMM per expert
    /// matmul (weights read once per 64 pairs).
    fn experts_grouped(
        &self,
        r: &Rec,
        x: &wgpu::Buffer,
        m: &MoeActs,
        scratch: &GroupScratch,
        t: u32,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let h = r.c.hidden_size as u32;
        let pairs = t * self.top_k;
        d.push(grouped::moe_group(
            r.ctx,
            &TensorView::words(&m.ids, 0, pairs),
            self.experts,
            scratch,
        )?);
        let expert_act = TensorView::f32_rows(&m.expert_act, 0, pairs, self.inter);
        d.extend(grouped::matmul_grouped(
            r.ctx,
            &self.experts_gate_up,
            &GroupedArgs {
                x: TensorView::f32_rows(x, 0, t, h),
                x_row_div: self.top_k,
                y: expert_act,
                rows_per_expert: 2 * self.inter,
            },
            scratch,
            Epilogue::SwiGlu,
        )?);
        d.extend(grouped::matmul_grouped(
            r.ctx,
            &self.experts_down,
            &GroupedArgs {
                x: expert_act,
                x_row_div: 1,
                y: TensorView::f32_rows(&m.expert_out, 0, pairs, h),
                rows_per_expert: h,
            },
            scratch,
            Epilogue::Store,
        )?);
        Ok(())
    }

    /// The routed experts pair by pair (expert-indexed GEMV / small-T matmul,
    /// the norm fused when `input` is normed).
    fn experts_indexed(
        &self,
        r: &Rec,
        input: Input,
        m: &MoeActs,
        pairs: u32,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let h = r.c.hidden_size as u32;
        let x = match input {
            Input::Rows(x) => x,
            Input::Normed { h: rows, .. } => rows,
        };
        let args = IndexedArgs {
            x,
            x_stride: h,
            x_row_div: self.top_k,
            ids: &m.ids,
            ids_offset: 0,
            y: &m.expert_act,
            y_stride: self.inter,
            pairs,
            rows_per_expert: 2 * self.inter,
        };
        let gu = &self.experts_gate_up;
        d.extend(match input {
            Input::Normed { norm, .. } => {
                matmul_indexed_normed(r.ctx, gu, &args, &fused_norm(r.c, norm), Epilogue::SwiGlu)?
            }
            Input::Rows(_) => matmul_indexed(r.ctx, gu, &args, Epilogue::SwiGlu)?,
        });
        d.extend(matmul_indexed(
            r.ctx,
            &self.experts_down,
            &IndexedArgs {
                x: &m.expert_act,
                x_stride: self.inter,
                x_row_div: 1,
                ids: &m.ids,
                ids_offset: 0,
                y: &m.expert_out,
                y_stride: h,
                pairs,
                rows_per_expert: h,
            },
            Epilogue::Store,
        )?);
        Ok(())
    }
}
