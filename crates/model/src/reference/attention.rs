//! Gated full attention (`self_attn`, spec §2.3).

use qwgpu_checkpoint::TextConfig;

use qwgpu_ops::activation::sigmoid;
use qwgpu_ops::attention::{causal_attention, Geometry};
use qwgpu_ops::norm::rms_norm_one_plus_in_place;
use qwgpu_ops::rope::Rope;

use super::cache::KvCache;
use super::weights::AttentionLayer;

/// Runs one attention layer on `x [T, H]` (already normed) at absolute positions
/// `start..start+T`, appending this call's keys and values to `kv`.
pub(crate) fn forward(
    cfg: &TextConfig,
    w: &AttentionLayer,
    rope: &Rope,
    x: &[f32],
    start: usize,
    kv: &mut KvCache,
) -> Vec<f32> {
    let (nh, nkv, hd) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let eps = cfg.rms_norm_eps as f32;
    let t_len = x.len() / cfg.hidden_size;
    let (q_rows, kv_rows) = (cfg.q_proj_rows(), cfg.kv_proj_rows());

    // q_proj rows are per head [query_h | gate_h]; then k rows, then v rows.
    let qkv = w.qkv.apply(x);
    let mut q = Vec::with_capacity(t_len * nh * hd);
    let mut gate = Vec::with_capacity(t_len * nh * hd);
    for (t, row) in qkv.chunks_exact(q_rows + 2 * kv_rows).enumerate() {
        for pair in row[..q_rows].chunks_exact(2 * hd) {
            q.extend_from_slice(&pair[..hd]);
            gate.extend_from_slice(&pair[hd..]);
        }
        let mut k = row[q_rows..q_rows + kv_rows].to_vec();
        rms_norm_one_plus_in_place(&mut k, &w.k_norm, eps);
        for head in k.chunks_exact_mut(hd) {
            rope.apply(head, start + t);
        }
        kv.keys.extend_from_slice(&k);
        kv.values.extend_from_slice(&row[q_rows + kv_rows..]);
    }
    rms_norm_one_plus_in_place(&mut q, &w.q_norm, eps);
    for (i, head) in q.chunks_exact_mut(hd).enumerate() {
        rope.apply(head, start + i / nh);
    }

    let mut o = causal_attention(&q, &kv.keys, &kv.values, Geometry { nh, nkv, hd }, start);
    for (v, gt) in o.iter_mut().zip(&gate) {
        *v *= sigmoid(*gt);
    }
    w.o_proj.apply(&o)
}
