//! Test support, public so other crates' tests (GPU kernels, the GPU model) can
//! build the same random in-memory models: a seeded RNG (re-exported from
//! `qwgpu-ops`), the tiny config of spec §1.3, and random unquantized
//! [`PackedModel`]s.

use qwgpu_checkpoint::{Dtype, FfnConfig, LayerType, RopeConfig, TextConfig};
use qwgpu_loader::{
    ActivationQuant, AttentionWeights, Ffn, GdnWeights, Mixer, MlpWeights, MoeWeights, PackedLayer,
    PackedModel, PackedWeight, ScaleScheme, Shard,
};

/// Seeded RNG for tests (defined in [`qwgpu_ops::rng`]).
pub use qwgpu_ops::rng::Rng;

/// The tiny geometry of spec §1.3: H=64, 4 layers (lin, lin, lin, full), nh=4,
/// nkv=2, hd=32 (rotary 8), nk=2, dk=16, nv=4, dv=16, K=4, vocab 512; dense
/// I=128 or MoE E=8, k=2, Ie=Is=32.
pub fn tiny_config(moe: bool) -> TextConfig {
    TextConfig {
        vocab_size: 512,
        hidden_size: 64,
        num_hidden_layers: 4,
        layer_types: vec![
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::FullAttention,
        ],
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 32,
        rms_norm_eps: 1e-6,
        linear_conv_kernel_dim: 4,
        linear_key_head_dim: 16,
        linear_value_head_dim: 16,
        linear_num_key_heads: 2,
        linear_num_value_heads: 4,
        rope: RopeConfig {
            theta: 1e7,
            partial_rotary_factor: 0.25,
        },
        attn_output_gate: true,
        ffn: if moe {
            FfnConfig::Moe {
                num_experts: 8,
                num_experts_per_tok: 2,
                moe_intermediate_size: 32,
                shared_expert_intermediate_size: 32,
            }
        } else {
            FfnConfig::Dense {
                intermediate_size: 128,
            }
        },
    }
}

/// An unquantized F32 packed weight `[rows, cols]` from f32 values, with the
/// given `(shard name, rows)` table (sources named `{name}.{shard}`).
pub fn f32_weight(
    name: &str,
    rows: usize,
    cols: usize,
    values: &[f32],
    shards: &[(&str, usize)],
) -> PackedWeight {
    let mut offset = 0;
    let shards = shards
        .iter()
        .map(|(s, r)| {
            let shard = Shard {
                name: (*s).to_string(),
                source: format!("{name}.{s}"),
                row_offset: offset,
                rows: *r,
            };
            offset += r;
            shard
        })
        .collect();
    PackedWeight {
        name: name.to_string(),
        dtype: Dtype::F32,
        rows,
        cols,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        shards,
        scale: ScaleScheme::None,
        activation: ActivationQuant::None,
    }
}

/// Builds random weights for one config; scales keep activations O(1).
struct Builder {
    rng: Rng,
}

impl Builder {
    fn weight(&mut self, name: &str, shards: &[(&str, usize)], cols: usize) -> PackedWeight {
        let rows: usize = shards.iter().map(|s| s.1).sum();
        let scale = 1.0 / (cols as f32).sqrt();
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| self.rng.normal() * scale)
            .collect();
        f32_weight(name, rows, cols, &values, shards)
    }

    /// Values `centre + spread·N(0,1)`.
    fn vector(&mut self, n: usize, centre: f32, spread: f32) -> Vec<f32> {
        (0..n)
            .map(|_| centre + spread * self.rng.normal())
            .collect()
    }

    fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * self.rng.uniform())
            .collect()
    }

    fn mlp(&mut self, p: &str, h: usize, inter: usize) -> MlpWeights {
        MlpWeights {
            gate_up: self.weight(
                &format!("{p}.gate_up_proj"),
                &[("gate", inter), ("up", inter)],
                h,
            ),
            down: self.weight(&format!("{p}.down_proj"), &[("down", h)], inter),
        }
    }
}

/// A random unquantized model for `cfg`; `tied` leaves `lm_head` out.
/// Norm weights are near 0 (`1+w` form), the GDN norm near 1, `A_log` in
/// `[-1, 1]`, so every pathway contributes.
pub fn random_packed_model(cfg: &TextConfig, tied: bool, seed: u64) -> PackedModel {
    let mut b = Builder {
        rng: Rng::new(seed),
    };
    let h = cfg.hidden_size;
    let v = cfg.vocab_size;
    let mut layers = Vec::new();
    for (i, ty) in cfg.layer_types.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let mixer = match ty {
            LayerType::LinearAttention => {
                let (kd, vd, nv) = (cfg.key_dim(), cfg.value_dim(), cfg.linear_num_value_heads);
                Mixer::Linear(GdnWeights {
                    in_proj_qkvz: b.weight(
                        &format!("{p}.linear_attn.in_proj_qkvz"),
                        &[("q", kd), ("k", kd), ("v", vd), ("z", vd)],
                        h,
                    ),
                    in_proj_ba: b.weight(
                        &format!("{p}.linear_attn.in_proj_ba"),
                        &[("b", nv), ("a", nv)],
                        h,
                    ),
                    conv1d: b.vector(cfg.conv_dim() * cfg.linear_conv_kernel_dim, 0.0, 0.5),
                    a_log: b.uniform_vec(nv, -1.0, 1.0),
                    dt_bias: b.vector(nv, 0.0, 0.5),
                    norm: b.vector(cfg.linear_value_head_dim, 1.0, 0.1),
                    out_proj: b.weight(&format!("{p}.linear_attn.out_proj"), &[("out", h)], vd),
                })
            }
            LayerType::FullAttention => Mixer::Full(AttentionWeights {
                qkv: b.weight(
                    &format!("{p}.self_attn.qkv_proj"),
                    &[
                        ("q", cfg.q_proj_rows()),
                        ("k", cfg.kv_proj_rows()),
                        ("v", cfg.kv_proj_rows()),
                    ],
                    h,
                ),
                o_proj: b.weight(
                    &format!("{p}.self_attn.o_proj"),
                    &[("o", h)],
                    cfg.num_attention_heads * cfg.head_dim,
                ),
                q_norm: b.vector(cfg.head_dim, 0.0, 0.1),
                k_norm: b.vector(cfg.head_dim, 0.0, 0.1),
                kv_scales: None,
            }),
        };
        let ffn = match cfg.ffn {
            FfnConfig::Dense { intermediate_size } => {
                Ffn::Dense(b.mlp(&format!("{p}.mlp"), h, intermediate_size))
            }
            FfnConfig::Moe {
                num_experts: e,
                moe_intermediate_size: ie,
                shared_expert_intermediate_size: is,
                ..
            } => {
                let gu_names: Vec<(String, usize)> = (0..e)
                    .flat_map(|x| [(format!("e{x}.gate"), ie), (format!("e{x}.up"), ie)])
                    .collect();
                let down_names: Vec<(String, usize)> =
                    (0..e).map(|x| (format!("e{x}.down"), h)).collect();
                let gu: Vec<(&str, usize)> =
                    gu_names.iter().map(|(n, r)| (n.as_str(), *r)).collect();
                let dn: Vec<(&str, usize)> =
                    down_names.iter().map(|(n, r)| (n.as_str(), *r)).collect();
                Ffn::Moe(MoeWeights {
                    router: b.weight(&format!("{p}.mlp.gate"), &[("router", e)], h),
                    experts_gate_up: b.weight(&format!("{p}.mlp.experts.gate_up_proj"), &gu, h),
                    experts_down: b.weight(&format!("{p}.mlp.experts.down_proj"), &dn, ie),
                    shared_expert: b.mlp(&format!("{p}.mlp.shared_expert"), h, is),
                    shared_expert_gate: b.weight(
                        &format!("{p}.mlp.shared_expert_gate"),
                        &[("gate", 1)],
                        h,
                    ),
                })
            }
        };
        layers.push(PackedLayer {
            input_layernorm: b.vector(h, 0.0, 0.1),
            post_attention_layernorm: b.vector(h, 0.0, 0.1),
            mixer,
            ffn,
        });
    }
    // Embeddings of unit-ish scale, like trained ones relative to the norms.
    let embed_values = b.vector(v * h, 0.0, 1.0);
    let embed_tokens = f32_weight("model.embed_tokens", v, h, &embed_values, &[("embed", v)]);
    let lm_head = (!tied).then(|| b.weight("lm_head", &[("lm_head", v)], h));
    PackedModel {
        config: cfg.clone(),
        embed_tokens,
        layers,
        norm: b.vector(h, 0.0, 0.1),
        lm_head,
    }
}
