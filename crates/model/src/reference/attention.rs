//! Gated full attention (`self_attn`, spec §2.3): the projections around
//! [`qwgpu_ops::mixers::attention_core`].

use qwgpu_checkpoint::TextConfig;
use qwgpu_ops::mixers::{attention_core, AttnShape};
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
    // q_proj rows are per head [query_h | gate_h]; then k rows, then v rows.
    let qkv = w.qkv.apply(x);
    let shape = AttnShape {
        nh: cfg.num_attention_heads,
        nkv: cfg.num_key_value_heads,
        hd: cfg.head_dim,
        eps: cfg.rms_norm_eps as f32,
    };
    let o = attention_core(
        &shape,
        &qkv,
        &w.q_norm,
        &w.k_norm,
        rope,
        start,
        &mut kv.keys,
        &mut kv.values,
    );
    w.o_proj.apply(&o)
}
