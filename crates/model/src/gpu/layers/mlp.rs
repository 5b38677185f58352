//! Dense SwiGLU MLPs: `down(silu(gate(x)) · up(x))`, the gate|up projection
//! one GEMM with a SwiGLU epilogue, `down` accumulated into the residual stream.

use qwgpu_checkpoint::expected::Packed;
use qwgpu_checkpoint::TextConfig;
use qwgpu_kernels::matmul::Epilogue;
use qwgpu_kernels::{Dispatch, GpuWeight};
use qwgpu_loader::MlpWeights;

use super::kind::Ffn;
use crate::gpu::activations::Activations;
use crate::gpu::record::{project, Input, Rec};
use crate::gpu::upload::Uploader;
use crate::shapes::check_matrix;
use crate::ModelError;

pub(crate) struct Mlp {
    /// `[2·I, H]`: gate rows, then up rows.
    gate_up: GpuWeight,
    /// `[H, I]`.
    down: GpuWeight,
}

/// Checks a dense MLP's weights against the shape table.
pub(crate) fn check(c: &TextConfig, m: &MlpWeights) -> Result<(), ModelError> {
    check_matrix(c, Packed::MlpGateUp, &m.gate_up)?;
    check_matrix(c, Packed::MlpDown, &m.down)
}

impl Mlp {
    pub fn upload(u: &mut Uploader<'_>, m: &MlpWeights) -> Result<Self, ModelError> {
        Ok(Self {
            gate_up: u.weight(&m.gate_up)?,
            down: u.weight(&m.down)?,
        })
    }
}

impl Ffn for Mlp {
    fn record(
        &self,
        r: &Rec,
        input: Input,
        a: &Activations,
        t: usize,
        _grouped_ok: bool,
        d: &mut Vec<Dispatch>,
    ) -> Result<(), ModelError> {
        let act = &a.mlp()?.act;
        d.extend(project(r, &self.gate_up, input, act, t, Epilogue::SwiGlu)?);
        d.extend(project(
            r,
            &self.down,
            Input::Rows(act),
            &a.stream.h,
            t,
            Epilogue::Accumulate,
        )?);
        Ok(())
    }
}
