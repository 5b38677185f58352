//! Gated DeltaNet token mixer (`linear_attn`, spec §2.2).

use qwgpu_checkpoint::TextConfig;

use qwgpu_ops::activation::silu;
use qwgpu_ops::conv::causal_conv1d;
use qwgpu_ops::delta_rule::{self, HeadInputs};
use qwgpu_ops::gdn_gates::gdn_gates;
use qwgpu_ops::norm::{gated_rms_norm, l2_normalize_in_place};

use super::cache::GdnState;
use super::weights::GdnLayer;

/// eps of the q / k L2 normalisation (FLA's `l2norm` default, not `rms_norm_eps`).
const L2_EPS: f32 = 1e-6;

/// Runs one GDN layer on `x [T, H]` (already normed), updating `state`.
/// Prefill (T > 1) uses the chunked delta rule, decode the recurrence, like HF.
pub(crate) fn forward(cfg: &TextConfig, w: &GdnLayer, x: &[f32], state: &mut GdnState) -> Vec<f32> {
    let (nk, dk) = (cfg.linear_num_key_heads, cfg.linear_key_head_dim);
    let (nv, dv) = (cfg.linear_num_value_heads, cfg.linear_value_head_dim);
    let (key_dim, value_dim, conv_dim) = (cfg.key_dim(), cfg.value_dim(), cfg.conv_dim());
    let eps = cfg.rms_norm_eps as f32;
    let t_len = x.len() / cfg.hidden_size;

    // 1. Projections: in_proj_qkvz rows are q | k | v | z, in_proj_ba rows b | a.
    let qkvz = w.in_proj_qkvz.apply(x);
    let ba = w.in_proj_ba.apply(x);
    let qkvz_width = conv_dim + value_dim;
    let mut mixed = Vec::with_capacity(t_len * conv_dim);
    let mut z = Vec::with_capacity(t_len * value_dim);
    for row in qkvz.chunks_exact(qkvz_width) {
        mixed.extend_from_slice(&row[..conv_dim]);
        z.extend_from_slice(&row[conv_dim..]);
    }

    // 2. Causal conv over q|k|v channels, then SiLU.
    let mut conv = causal_conv1d(
        &mixed,
        conv_dim,
        &w.conv1d,
        cfg.linear_conv_kernel_dim,
        &mut state.conv,
    );
    conv.iter_mut().for_each(|c| *c = silu(*c));

    // 3-5. Split per head; L2-normalise q and k; scale q; β and g per v-head.
    let q_scale = 1.0 / (dk as f32).sqrt();
    let mut q = Vec::with_capacity(t_len * key_dim);
    let mut k = Vec::with_capacity(t_len * key_dim);
    let mut v = Vec::with_capacity(t_len * value_dim);
    for row in conv.chunks_exact(conv_dim) {
        q.extend_from_slice(&row[..key_dim]);
        k.extend_from_slice(&row[key_dim..2 * key_dim]);
        v.extend_from_slice(&row[2 * key_dim..]);
    }
    for head in q.chunks_exact_mut(dk) {
        l2_normalize_in_place(head, L2_EPS);
        head.iter_mut().for_each(|e| *e *= q_scale);
    }
    for head in k.chunks_exact_mut(dk) {
        l2_normalize_in_place(head, L2_EPS);
    }
    let (beta, g) = gdn_gates(&ba, &w.a_log, &w.dt_bias);

    // 6-7. Delta rule per value head; consecutive v-heads share one k-head.
    let group = nv / nk;
    let mut o = vec![0.0f32; t_len * value_dim];
    for h in 0..nv {
        let kh = h / group;
        let gather = |src: &[f32], width: usize, head: usize, hd: usize| -> Vec<f32> {
            (0..t_len)
                .flat_map(|t| src[t * width + head * hd..][..hd].to_vec())
                .collect()
        };
        let qh = gather(&q, key_dim, kh, dk);
        let kk = gather(&k, key_dim, kh, dk);
        let vh = gather(&v, value_dim, h, dv);
        let gh = gather(&g, nv, h, 1);
        let bh = gather(&beta, nv, h, 1);
        let inputs = HeadInputs {
            q: &qh,
            k: &kk,
            v: &vh,
            g: &gh,
            beta: &bh,
            dk,
            dv,
        };
        let s = &mut state.recurrent[h * dk * dv..(h + 1) * dk * dv];
        let oh = if t_len > 1 {
            delta_rule::chunked(inputs, s)
        } else {
            delta_rule::recurrent(inputs, s)
        };
        for t in 0..t_len {
            o[t * value_dim + h * dv..][..dv].copy_from_slice(&oh[t * dv..][..dv]);
        }
    }

    // 8-9. Gated RMSNorm per v-head (plain w), then out_proj.
    let y = gated_rms_norm(&o, &z, &w.norm, eps);
    w.out_proj.apply(&y)
}
