//! Qwen3.6 and Qwen3.8 reuse the Qwen3.5 architecture (`qwen3_5` /
//! `qwen3_5_moe`): their `config.json` shapes open like Qwen3.5's. Each shape
//! below is a tiny random checkpoint written with that config: the text-only
//! `*ForCausalLM` top level with the un-suffixed model type, fields the newer
//! releases add (MTP depth, `dtype`, router options, mRoPE in
//! `rope_parameters`) and drop (`layer_types` → `full_attention_interval`,
//! `tie_word_embeddings`). A config of a new architecture is refused by name.

mod support;

use qwgpu_checkpoint::{Checkpoint, CheckpointError, FfnConfig, LayerType, OpenOptions};
use serde_json::{json, Value};
use support::*;

fn open_with(
    tiny: Tiny,
    edit: impl Fn(&mut serde_json::Map<String, Value>),
) -> Result<Checkpoint, CheckpointError> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny(dir.path(), &tiny);
    let mut config = tiny.config();
    edit(config.as_object_mut().expect("object"));
    write_config(dir.path(), &config);
    // The folder may go: the checkpoint maps its files (kept open).
    let ck = Checkpoint::open_with(dir.path(), &OpenOptions { strict: true });
    drop(dir);
    ck
}

/// The text fields object (`text_config` of a wrapper, else the top level).
fn text(m: &mut serde_json::Map<String, Value>) -> &mut serde_json::Map<String, Value> {
    if m.contains_key("text_config") {
        m.get_mut("text_config")
            .and_then(Value::as_object_mut)
            .expect("text_config object")
    } else {
        m
    }
}

/// Fields a newer release adds next to the Qwen3.5 ones.
fn add_newer_fields(t: &mut serde_json::Map<String, Value>) {
    t.insert("mtp_num_hidden_layers".into(), json!(1));
    t.insert("mtp_use_dedicated_embeddings".into(), json!(false));
    t.insert("dtype".into(), json!("bfloat16"));
    t.insert("use_cache".into(), json!(true));
    t.insert("max_position_embeddings".into(), json!(262_144));
    t.insert("attention_bias".into(), json!(false));
    t.insert("attention_dropout".into(), json!(0.0));
    t.insert("initializer_range".into(), json!(0.02));
    // Dropped: the explicit list (the interval gives the same layers).
    t.remove("layer_types");
    t.insert("full_attention_interval".into(), json!(4));
}

fn check_layers(ck: &Checkpoint) {
    let lt = &ck.config().text.layer_types;
    assert_eq!(
        lt,
        &[
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::FullAttention
        ]
    );
}

#[test]
fn qwen3_6_27b_wrapper_dense() {
    let tiny = Tiny {
        ffn: Ffn::Dense,
        wrapper: true,
        tie: false,
    };
    let ck = open_with(tiny, |m| {
        add_newer_fields(text(m));
        m.insert("video_token_id".into(), json!(248057));
        m.insert("vision_start_token_id".into(), json!(248053));
    })
    .expect("Qwen3.6-27B shape opens");
    check_layers(&ck);
    assert!(matches!(
        ck.config().text.ffn,
        FfnConfig::Dense {
            intermediate_size: I
        }
    ));
}

#[test]
fn qwen3_6_35b_a3b_wrapper_moe() {
    let tiny = Tiny {
        ffn: Ffn::MoePerExpert,
        wrapper: true,
        tie: false,
    };
    let ck = open_with(tiny, |m| {
        let t = text(m);
        add_newer_fields(t);
        t.insert("router_aux_loss_coef".into(), json!(0.001));
        t.insert("output_router_logits".into(), json!(false));
    })
    .expect("Qwen3.6-35B-A3B shape opens");
    check_layers(&ck);
    assert!(matches!(
        ck.config().text.ffn,
        FfnConfig::Moe { num_experts: E, .. }
    ));
}

#[test]
fn qwen3_8_text_only_moe_for_causal_lm() {
    // A text-only release: `Qwen3_5MoeForCausalLM` at the top, the model type
    // without `_text`, no vision config, no tie flag (false by default).
    let tiny = Tiny {
        ffn: Ffn::MoeFused,
        wrapper: false,
        tie: false,
    };
    let ck = open_with(tiny, |m| {
        m.insert("model_type".into(), json!("qwen3_5_moe"));
        m.remove("tie_word_embeddings");
        add_newer_fields(m);
        m.insert("decoder_sparse_step".into(), json!(1));
        m.insert("mlp_only_layers".into(), json!([]));
        m.insert("norm_topk_prob".into(), json!(true));
    })
    .expect("Qwen3.8 text-only MoE shape opens");
    check_layers(&ck);
    assert!(!ck.config().tie_word_embeddings);
    assert_eq!(ck.config().architecture, "Qwen3_5MoeForCausalLM");
}

#[test]
fn qwen3_8_27b_text_only_dense() {
    let tiny = Tiny::default();
    let ck = open_with(tiny, |m| {
        m.insert("model_type".into(), json!("qwen3_5"));
        add_newer_fields(m);
    })
    .expect("Qwen3.8-27B text-only shape opens");
    check_layers(&ck);
}

#[test]
fn a_new_architecture_is_refused_by_name() {
    for (key, value, want) in [
        ("model_type", json!("qwen4_exp"), "qwen4_exp"),
        (
            "architectures",
            json!(["Qwen4ExpForCausalLM"]),
            "Qwen4ExpForCausalLM",
        ),
    ] {
        let e = open_with(Tiny::default(), |m| {
            m.insert(key.into(), value.clone());
        })
        .err()
        .expect("a new architecture is refused");
        let msg = e.to_string();
        assert!(
            matches!(&e, CheckpointError::Config { field, .. } if field == key)
                && msg.contains(want),
            "{msg}"
        );
    }
    // MoE options the Qwen3.5 layout has no place for are refused, not ignored.
    for (key, value) in [
        ("mlp_only_layers", json!([1])),
        ("decoder_sparse_step", json!(2)),
    ] {
        let e = open_with(
            Tiny {
                ffn: Ffn::MoeFused,
                ..Tiny::default()
            },
            |m| {
                m.insert(key.into(), value.clone());
            },
        )
        .err()
        .unwrap_or_else(|| panic!("{key} is refused"));
        assert!(e.to_string().contains(key), "{e}");
    }
}
