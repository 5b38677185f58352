//! Will the f32 reference fit in memory? Decided from the config alone, before
//! any tensor is read, so a 35B checkpoint fails fast with numbers instead of
//! being killed by the OOM killer half-way through loading.

use qwgpu_checkpoint::{FfnConfig, LayerType, TextConfig};

use crate::ModelError;

/// Parameters of the text model the config describes (the routed experts all
/// counted; MTP and vision excluded).
pub fn parameter_count(c: &TextConfig, tied: bool) -> u64 {
    let h = c.hidden_size as u64;
    let v = c.vocab_size as u64;
    let mut n = v * h + h; // embeddings + final norm
    if !tied {
        n += v * h;
    }
    for kind in &c.layer_types {
        n += 2 * h; // the two layer norms
        n += match kind {
            LayerType::LinearAttention => {
                let (conv, vd, nv) = (
                    c.conv_dim() as u64,
                    c.value_dim() as u64,
                    c.linear_num_value_heads as u64,
                );
                (conv + vd + 2 * nv) * h
                    + conv * c.linear_conv_kernel_dim as u64
                    + 2 * nv
                    + c.linear_value_head_dim as u64
                    + h * vd
            }
            LayerType::FullAttention => {
                let hd = c.head_dim as u64;
                (c.q_proj_rows() as u64 + 2 * c.kv_proj_rows() as u64) * h
                    + h * c.num_attention_heads as u64 * hd
                    + 2 * hd
            }
        };
        n += match c.ffn {
            FfnConfig::Dense { intermediate_size } => 3 * intermediate_size as u64 * h,
            FfnConfig::Moe {
                num_experts,
                moe_intermediate_size,
                shared_expert_intermediate_size,
                ..
            } => {
                let e = num_experts as u64;
                e * h
                    + e * 3 * moe_intermediate_size as u64 * h
                    + 3 * shared_expert_intermediate_size as u64 * h
                    + h
            }
        };
    }
    n
}

/// Peak bytes while loading: the f32 copy plus the packed (≤ 2 bytes/param) one.
pub fn peak_bytes(params: u64) -> u64 {
    params.saturating_mul(6)
}

/// `MemAvailable` from `/proc/meminfo`, or `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses a model whose f32 copy would not fit in `available` bytes.
pub fn check(c: &TextConfig, tied: bool, available: u64) -> Result<(), ModelError> {
    let params = parameter_count(c, tied);
    let needed = peak_bytes(params);
    if needed > available {
        return Err(ModelError::TooLarge {
            params,
            needed_bytes: needed,
            available_bytes: available,
            hint:
                "; the CPU reference is for checking small models, use a GPU backend for this one",
        });
    }
    tracing::debug!(params, needed, available, "CPU reference fits in memory");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_config;

    /// Counted independently: the tensors of the tiny config listed by hand.
    #[test]
    fn tiny_dense_parameter_count_matches_a_hand_count() {
        let c = tiny_config(false);
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut want = v * h + h + v * h; // embed, norm, untied head
        for kind in &c.layer_types {
            want += 2 * h;
            want += match kind {
                LayerType::LinearAttention => {
                    let (kd, vd, nv) = (c.key_dim(), c.value_dim(), c.linear_num_value_heads);
                    // in_proj_qkv, in_proj_z, in_proj_b, in_proj_a, conv, A_log, dt_bias, norm, out
                    (2 * kd + vd) * h
                        + vd * h
                        + nv * h
                        + nv * h
                        + (2 * kd + vd) * c.linear_conv_kernel_dim
                        + nv
                        + nv
                        + c.linear_value_head_dim
                        + h * vd
                }
                LayerType::FullAttention => {
                    let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
                    2 * nh * hd * h + 2 * nkv * hd * h + h * nh * hd + 2 * hd
                }
            };
            if let FfnConfig::Dense { intermediate_size } = c.ffn {
                want += 3 * intermediate_size * h;
            }
        }
        assert_eq!(parameter_count(&c, false), want as u64);
        assert_eq!(parameter_count(&c, true), (want - v * h) as u64);
    }

    #[test]
    fn a_35b_moe_is_refused_with_numbers() {
        let mut c = tiny_config(true);
        // Qwen3.5-35B-A3B geometry (spec §1.2).
        c.hidden_size = 2048;
        c.vocab_size = 248_320;
        c.linear_num_key_heads = 16;
        c.linear_key_head_dim = 128;
        c.linear_num_value_heads = 32;
        c.linear_value_head_dim = 128;
        c.num_attention_heads = 16;
        c.num_key_value_heads = 2;
        c.head_dim = 256;
        c.layer_types = (0..40)
            .map(|i| {
                if (i + 1) % 4 == 0 {
                    LayerType::FullAttention
                } else {
                    LayerType::LinearAttention
                }
            })
            .collect();
        c.num_hidden_layers = 40;
        c.ffn = FfnConfig::Moe {
            num_experts: 256,
            num_experts_per_tok: 8,
            moe_intermediate_size: 512,
            shared_expert_intermediate_size: 512,
        };
        let params = parameter_count(&c, false);
        assert!((34e9..37e9).contains(&(params as f64)), "{params}");
        let err = check(&c, false, 64 << 30).expect_err("64 GiB is not enough");
        let msg = err.to_string();
        assert!(
            msg.contains(&params.to_string()) && msg.contains(&(64u64 << 30).to_string()),
            "{msg}"
        );
        check(&tiny_config(true), false, 64 << 30).expect("the tiny model fits");
    }
}
