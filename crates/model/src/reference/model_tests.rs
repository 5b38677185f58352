//! Whole-model tests on random in-memory models.

use qwgpu_checkpoint::TextConfig;
use qwgpu_ops::compare::{self, Tol};

use crate::reference::{LayerState, ReferenceModel};
use crate::testing::{random_packed_model, tiny_config, Rng};
use crate::ModelError;

fn tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.uniform() * vocab as f32) as u32 % vocab as u32)
        .collect()
}

/// Absolute tolerance `1e-4 · max(1, max|want|)`.
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    compare::assert_close(got, want, Tol::absolute(1e-4 * scale), what);
}

/// prefill(a ++ b) must equal prefill(a) followed by b one token at a time:
/// exercises conv-state and recurrent-state carry, chunked vs recurrent delta
/// rule, KV-cache append and RoPE positions across calls.
fn check_split_consistency(cfg: &TextConfig, tied: bool, seed: u64) {
    let model = ReferenceModel::from_packed(&random_packed_model(cfg, tied, seed)).unwrap();
    let v = cfg.vocab_size;
    let mut rng = Rng::new(seed ^ 0xABCD);
    // 70 tokens: the 67-token prefix spans two GDN chunks.
    let ids = tokens(&mut rng, 70, v);
    let mut whole = model.new_cache();
    let full = model.forward(&mut whole, &ids).unwrap();

    let mut split = model.new_cache();
    let mut pieces = model.forward(&mut split, &ids[..67]).unwrap();
    for &t in &ids[67..] {
        pieces.extend(model.forward(&mut split, &[t]).unwrap());
    }
    let what = format!(
        "seed {seed} moe {cfg_is_moe} tied {tied}",
        cfg_is_moe = cfg.is_moe()
    );
    assert_close(&pieces, &full, &what);
    assert_eq!(split.position(), 70);
    for (a, b) in split.layers().iter().zip(whole.layers()) {
        match (a, b) {
            (LayerState::Linear(x), LayerState::Linear(y)) => {
                assert_close(&x.conv, &y.conv, &format!("{what}: conv state"));
                assert_close(
                    &x.recurrent,
                    &y.recurrent,
                    &format!("{what}: recurrent state"),
                );
            }
            (LayerState::Full(x), LayerState::Full(y)) => {
                assert_close(&x.keys, &y.keys, &format!("{what}: keys"));
                assert_close(&x.values, &y.values, &format!("{what}: values"));
            }
            _ => panic!("{what}: layer kinds differ"),
        }
    }
    // Logits must depend on the input: a different last token changes them.
    let mut other = model.new_cache();
    let mut ids2 = ids[..5].to_vec();
    ids2[4] = (ids2[4] + 1) % v as u32;
    let alt = model.forward(&mut other, &ids2).unwrap();
    assert_ne!(
        &alt[4 * v..5 * v],
        &full[4 * v..5 * v],
        "{what}: logits ignore the token"
    );
}

#[test]
fn prefill_equals_prefill_then_decode_dense_untied() {
    check_split_consistency(&tiny_config(false), false, 101);
}

#[test]
fn prefill_equals_prefill_then_decode_dense_tied() {
    check_split_consistency(&tiny_config(false), true, 102);
}

#[test]
fn prefill_equals_prefill_then_decode_moe_untied() {
    check_split_consistency(&tiny_config(true), false, 103);
}

#[test]
fn prefill_equals_prefill_then_decode_moe_tied_awkward_geometry() {
    // Odd sizes: H=20, nv/nk = 3, K=3, nh/nkv = 3, hd 6 with rotary 2, vocab 37,
    // two full layers.
    let mut cfg = tiny_config(true);
    cfg.hidden_size = 20;
    cfg.vocab_size = 37;
    cfg.linear_num_key_heads = 1;
    cfg.linear_num_value_heads = 3;
    cfg.linear_key_head_dim = 5;
    cfg.linear_value_head_dim = 7;
    cfg.linear_conv_kernel_dim = 3;
    cfg.num_attention_heads = 3;
    cfg.num_key_value_heads = 1;
    cfg.head_dim = 6;
    cfg.rope.partial_rotary_factor = 0.34;
    cfg.layer_types.swap(0, 3);
    cfg.layer_types
        .push(qwgpu_checkpoint::LayerType::FullAttention);
    cfg.num_hidden_layers = 5;
    assert_eq!(cfg.rotary_dim(), 2);
    check_split_consistency(&cfg, true, 104);
}

/// The last-position head is the last row of the all-positions one, bit for
/// bit, and advances the cache the same way.
#[test]
fn forward_last_is_the_last_row_of_forward() {
    let cfg = tiny_config(true);
    let model = ReferenceModel::from_packed(&random_packed_model(&cfg, false, 9)).unwrap();
    let v = cfg.vocab_size;
    let ids = [3u32, 1, 4, 1, 5, 9];
    let (mut a, mut b) = (model.new_cache(), model.new_cache());
    let all = model.forward(&mut a, &ids).unwrap();
    let last = model.forward_last(&mut b, &ids).unwrap();
    assert_eq!(last.len(), v);
    assert_eq!(last, all[(ids.len() - 1) * v..]);
    assert_eq!(
        model.forward(&mut a, &[2]).unwrap(),
        model.forward_last(&mut b, &[2]).unwrap()
    );
}

#[test]
fn tied_model_uses_embeddings_as_lm_head() {
    let cfg = tiny_config(false);
    let tied = random_packed_model(&cfg, true, 7);
    let mut untied = tied.clone();
    untied.lm_head = Some(tied.embed_tokens.clone());
    let a = ReferenceModel::from_packed(&tied).unwrap();
    let b = ReferenceModel::from_packed(&untied).unwrap();
    let ids = [1u32, 2, 511, 0];
    let la = a.forward(&mut a.new_cache(), &ids).unwrap();
    let lb = b.forward(&mut b.new_cache(), &ids).unwrap();
    assert_eq!(la, lb);
    assert_eq!(la.len(), ids.len() * cfg.vocab_size);
}

#[test]
fn out_of_range_token_is_an_error_and_leaves_the_cache_alone() {
    let cfg = tiny_config(false);
    let model = ReferenceModel::from_packed(&random_packed_model(&cfg, false, 8)).unwrap();
    let mut cache = model.new_cache();
    model.forward(&mut cache, &[3, 4]).unwrap();
    let before = cache.clone();
    let err = model.forward(&mut cache, &[5, 512]).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::TokenOutOfRange {
                token: 512,
                index: 1,
                vocab: 512
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("512"));
    assert_eq!(cache, before);
    assert!(model.forward(&mut cache, &[]).unwrap().is_empty());
}

#[test]
fn cache_of_another_model_is_rejected() {
    let dense =
        ReferenceModel::from_packed(&random_packed_model(&tiny_config(false), false, 9)).unwrap();
    let mut cfg = tiny_config(false);
    cfg.layer_types.swap(0, 3);
    let other = ReferenceModel::from_packed(&random_packed_model(&cfg, false, 9)).unwrap();
    let mut cache = other.new_cache();
    let err = dense.forward(&mut cache, &[1]).unwrap_err();
    assert!(matches!(err, ModelError::CacheMismatch { .. }), "{err}");
}

#[test]
fn wrong_shapes_and_kinds_are_rejected_with_the_tensor_name() {
    let cfg = tiny_config(true);
    let good = random_packed_model(&cfg, false, 10);

    let mut m = good.clone();
    m.layers[0].input_layernorm.pop();
    let err = ReferenceModel::from_packed(&m).err().unwrap();
    assert!(
        err.to_string()
            .contains("model.layers.0.input_layernorm.weight"),
        "{err}"
    );
    assert!(
        err.to_string().contains("[63]") && err.to_string().contains("[64]"),
        "{err}"
    );

    let mut m = good.clone();
    if let qwgpu_loader::Ffn::Moe(w) = &mut m.layers[2].ffn {
        w.experts_down.rows -= 1;
    }
    let err = ReferenceModel::from_packed(&m).err().unwrap();
    assert!(
        err.to_string().contains("experts.down_proj") && err.to_string().contains("511"),
        "{err}"
    );

    let mut m = good.clone();
    m.layers.swap(0, 3);
    let err = ReferenceModel::from_packed(&m).err().unwrap();
    assert!(
        matches!(err, ModelError::LayerKind { layer: 0, .. }),
        "{err}"
    );

    let mut m = good.clone();
    m.config.ffn = tiny_config(false).ffn;
    let err = ReferenceModel::from_packed(&m).err().unwrap();
    assert!(matches!(err, ModelError::LayerKind { .. }), "{err}");

    let mut m = good;
    m.config.num_key_value_heads = 3;
    let err = ReferenceModel::from_packed(&m).err().unwrap();
    assert!(
        matches!(err, ModelError::Config { .. }) && err.to_string().contains('3'),
        "{err}"
    );
}
