//! The two token mixers of Qwen3.5 between their input projections and their
//! output projections, composed from the per-op functions of this crate: the
//! reference model runs them, and the GPU kernel tests compare against them.

use crate::activation::{sigmoid, silu};
use crate::attention::{causal_attention, Geometry};
use crate::conv::causal_conv1d;
use crate::delta_rule::{self, HeadInputs};
use crate::gdn_gates::gdn_gates;
use crate::norm::{gated_rms_norm, l2_normalize_in_place, rms_norm_one_plus_in_place};
use crate::rope::Rope;

/// eps of the q / k L2 normalisation (FLA's `l2norm` default, not `rms_norm_eps`).
pub const L2_EPS: f32 = 1e-6;

/// Sizes of a Gated DeltaNet layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GdnShape {
    /// Key heads.
    pub nk: usize,
    /// Value heads (a multiple of `nk`; consecutive v-heads share a k-head).
    pub nv: usize,
    /// Key head dim.
    pub dk: usize,
    /// Value head dim.
    pub dv: usize,
    /// Causal conv taps.
    pub conv_kernel: usize,
    /// eps of the gated RMSNorm.
    pub eps: f32,
}

/// The non-projection weights of a GDN layer (f32).
#[derive(Debug, Clone, Copy)]
pub struct GdnParams<'a> {
    /// `[conv_dim, K]`.
    pub conv_w: &'a [f32],
    /// `[nv]`.
    pub a_log: &'a [f32],
    /// `[nv]`.
    pub dt_bias: &'a [f32],
    /// `[dv]`, plain weight (not 1+w).
    pub norm_w: &'a [f32],
}

/// GDN layer core on `qkvz [T, conv_dim + value_dim]` (q|k|v channels then z)
/// and `ba [T, 2·nv]`: causal conv + SiLU, per-head L2 norms (q scaled by
/// `dk^-½`), β / g gates, the gated delta rule per v-head (`chunked` or
/// recurrent), gated RMSNorm. Updates `conv_state [K−1, conv_dim]` and
/// `rec_state [nv, dk, dv]`; returns `[T, nv·dv]`, the input of `out_proj`.
pub fn gdn_core(
    s: &GdnShape,
    w: &GdnParams<'_>,
    qkvz: &[f32],
    ba: &[f32],
    conv_state: &mut [f32],
    rec_state: &mut [f32],
    chunked: bool,
) -> Vec<f32> {
    let (nk, dk, nv, dv) = (s.nk, s.dk, s.nv, s.dv);
    let (key_dim, value_dim) = (nk * dk, nv * dv);
    let conv_dim = 2 * key_dim + value_dim;
    let qkvz_width = conv_dim + value_dim;
    let t_len = qkvz.len() / qkvz_width;

    let mut mixed = Vec::with_capacity(t_len * conv_dim);
    let mut z = Vec::with_capacity(t_len * value_dim);
    for row in qkvz.chunks_exact(qkvz_width) {
        mixed.extend_from_slice(&row[..conv_dim]);
        z.extend_from_slice(&row[conv_dim..]);
    }

    let mut conv = causal_conv1d(&mixed, conv_dim, w.conv_w, s.conv_kernel, conv_state);
    conv.iter_mut().for_each(|c| *c = silu(*c));

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
    let (beta, g) = gdn_gates(ba, w.a_log, w.dt_bias);

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
        let st = &mut rec_state[h * dk * dv..(h + 1) * dk * dv];
        let oh = if chunked {
            delta_rule::chunked(inputs, st)
        } else {
            delta_rule::recurrent(inputs, st)
        };
        for t in 0..t_len {
            o[t * value_dim + h * dv..][..dv].copy_from_slice(&oh[t * dv..][..dv]);
        }
    }
    gated_rms_norm(&o, &z, w.norm_w, s.eps)
}

/// Sizes of a gated full-attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// Query heads.
    pub nh: usize,
    /// KV heads.
    pub nkv: usize,
    /// Head dim.
    pub hd: usize,
    /// eps of the q / k RMSNorm.
    pub eps: f32,
}

/// Gated attention core on `qkv [T, 2·nh·hd + 2·nkv·hd]` (per head
/// `[query | gate]`, then k, then v) at positions `start..start+T`: q/k RMSNorm
/// `(1+w)`, partial RoPE, causal GQA attention over the cache (this call's keys
/// and values appended to `keys` / `values`, `[S, nkv, hd]`), times
/// `sigmoid(gate)`. Returns `[T, nh·hd]`, the input of `o_proj`.
#[allow(clippy::too_many_arguments)]
pub fn attention_core(
    s: &AttnShape,
    qkv: &[f32],
    q_norm: &[f32],
    k_norm: &[f32],
    rope: &Rope,
    start: usize,
    keys: &mut Vec<f32>,
    values: &mut Vec<f32>,
) -> Vec<f32> {
    let (nh, nkv, hd) = (s.nh, s.nkv, s.hd);
    let (q_rows, kv_rows) = (2 * nh * hd, nkv * hd);
    let t_len = qkv.len() / (q_rows + 2 * kv_rows);
    let mut q = Vec::with_capacity(t_len * nh * hd);
    let mut gate = Vec::with_capacity(t_len * nh * hd);
    for (t, row) in qkv.chunks_exact(q_rows + 2 * kv_rows).enumerate() {
        for pair in row[..q_rows].chunks_exact(2 * hd) {
            q.extend_from_slice(&pair[..hd]);
            gate.extend_from_slice(&pair[hd..]);
        }
        let mut k = row[q_rows..q_rows + kv_rows].to_vec();
        rms_norm_one_plus_in_place(&mut k, k_norm, s.eps);
        for head in k.chunks_exact_mut(hd) {
            rope.apply(head, start + t);
        }
        keys.extend_from_slice(&k);
        values.extend_from_slice(&row[q_rows + kv_rows..]);
    }
    rms_norm_one_plus_in_place(&mut q, q_norm, s.eps);
    for (i, head) in q.chunks_exact_mut(hd).enumerate() {
        rope.apply(head, start + i / nh);
    }
    let mut o = causal_attention(&q, keys, values, Geometry { nh, nkv, hd }, start);
    for (v, gt) in o.iter_mut().zip(&gate) {
        *v *= sigmoid(*gt);
    }
    o
}
