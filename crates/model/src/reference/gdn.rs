//! Gated DeltaNet token mixer (`linear_attn`, spec §2.2): the projections around
//! [`qwgpu_ops::mixers::gdn_core`].

use qwgpu_checkpoint::TextConfig;
use qwgpu_ops::mixers::{gdn_core, GdnParams, GdnShape};

use super::cache::GdnState;
use super::weights::GdnLayer;

/// Runs one GDN layer on `x [T, H]` (already normed), updating `state`.
/// Prefill (T > 1) uses the chunked delta rule, decode the recurrence, like HF.
pub(crate) fn forward(cfg: &TextConfig, w: &GdnLayer, x: &[f32], state: &mut GdnState) -> Vec<f32> {
    let t_len = x.len() / cfg.hidden_size;
    // in_proj_qkvz rows are q | k | v | z, in_proj_ba rows b | a.
    let qkvz = w.in_proj_qkvz.apply(x);
    let ba = w.in_proj_ba.apply(x);
    let shape = GdnShape {
        nk: cfg.linear_num_key_heads,
        nv: cfg.linear_num_value_heads,
        dk: cfg.linear_key_head_dim,
        dv: cfg.linear_value_head_dim,
        conv_kernel: cfg.linear_conv_kernel_dim,
        eps: cfg.rms_norm_eps as f32,
    };
    let params = GdnParams {
        conv_w: &w.conv1d,
        a_log: &w.a_log,
        dt_bias: &w.dt_bias,
        norm_w: &w.norm,
    };
    let y = gdn_core(
        &shape,
        &params,
        &qkvz,
        &ba,
        &mut state.conv,
        &mut state.recurrent,
        t_len > 1,
    );
    w.out_proj.apply(&y)
}
