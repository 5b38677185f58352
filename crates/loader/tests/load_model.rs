//! `load_from_source` on tiny in-memory models: dense and MoE, BF16 and FP8,
//! both MoE expert layouts, KV-cache scales, lm_head, and the refusals.

mod common;

use std::collections::BTreeMap;

use common::*;
use qwgpu_checkpoint::quant::{
    ActivationScheme, CompressedTensorsConfig, CtGroup, CtQuantArgs, CtStrategy, Fp8Config,
    Fp8Format, QuantizationConfig,
};
use qwgpu_checkpoint::{Dtype, FfnConfig, LayerType, ModelConfig, RopeConfig, TextConfig};
use qwgpu_loader::{
    dequantize, load_from_source, Ffn, LoadError, Mixer, ScaleScheme, SourceTensor,
};

type Map = BTreeMap<String, SourceTensor<'static>>;

const H: usize = 32;
const BLOCK: [usize; 2] = [16, 16];
const E: usize = 4;
const IE: usize = 16;

fn text_config(moe: bool) -> TextConfig {
    TextConfig {
        vocab_size: 64,
        hidden_size: H,
        num_hidden_layers: 2,
        layer_types: vec![LayerType::LinearAttention, LayerType::FullAttention],
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        linear_conv_kernel_dim: 4,
        linear_key_head_dim: 8,
        linear_value_head_dim: 8,
        linear_num_key_heads: 2,
        linear_num_value_heads: 4,
        rope: RopeConfig {
            theta: 1e7,
            partial_rotary_factor: 0.25,
        },
        attn_output_gate: true,
        ffn: if moe {
            FfnConfig::Moe {
                num_experts: E,
                num_experts_per_tok: 2,
                moe_intermediate_size: IE,
                shared_expert_intermediate_size: 16,
            }
        } else {
            FfnConfig::Dense {
                intermediate_size: 48,
            }
        },
    }
}

fn model_config(moe: bool, quantization: Option<QuantizationConfig>) -> ModelConfig {
    ModelConfig {
        architecture: "Qwen3_5ForCausalLM".into(),
        model_type: "qwen3_5_text".into(),
        wrapped: false,
        text: text_config(moe),
        tie_word_embeddings: false,
        quantization,
        eos_token_ids: vec![],
    }
}

fn fp8_block_config() -> QuantizationConfig {
    QuantizationConfig::Fp8(Fp8Config {
        fmt: Fp8Format::E4M3,
        weight_block_size: Some(BLOCK),
        activation_scheme: ActivationScheme::Dynamic,
        modules_to_not_convert: vec![
            "lm_head".into(),
            "model.language_model.embed_tokens".into(),
            "re:.*linear_attn\\.in_proj_[ab]$".into(),
            "mlp.gate".into(),
            "shared_expert_gate".into(),
        ],
    })
}

struct Gen {
    map: Map,
    rng: Rng,
    fp8: bool,
}

impl Gen {
    fn new(fp8: bool, seed: u64) -> Self {
        Gen {
            map: Map::new(),
            rng: Rng(seed),
            fp8,
        }
    }
    fn put(&mut self, t: SourceTensor<'static>) {
        self.map.insert(t.name.clone(), t);
    }
    fn bf16(&mut self, name: &str, shape: &[usize]) {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = (0..n)
            .map(|_| (self.rng.below(512) as f32 - 256.0) / 128.0)
            .collect();
        self.put(float_tensor(name, Dtype::BF16, shape, &vals));
    }
    /// A linear weight `{m}.weight`: FP8 + block `weight_scale_inv` when quantized.
    fn linear(&mut self, m: &str, rows: usize, cols: usize, quantize: bool) {
        if !(self.fp8 && quantize) {
            return self.bf16(&format!("{m}.weight"), &[rows, cols]);
        }
        let w = fp8_tensor(&format!("{m}.weight"), &mut self.rng, rows, cols);
        self.put(w);
        let grid = [rows.div_ceil(BLOCK[0]), cols.div_ceil(BLOCK[1])];
        let vals: Vec<f32> = (0..grid[0] * grid[1]).map(|_| self.rng.scale()).collect();
        self.put(float_tensor(
            &format!("{m}.weight_scale_inv"),
            Dtype::BF16,
            &grid,
            &vals,
        ));
    }
}

/// A complete tiny checkpoint. MoE experts per-expert; `fuse_experts` rewrites them fused.
fn build(moe: bool, fp8: bool, fuse_experts: bool) -> Map {
    let c = text_config(moe);
    let mut g = Gen::new(fp8, 42);
    g.bf16("model.embed_tokens.weight", &[64, H]);
    g.bf16("model.norm.weight", &[H]);
    g.bf16("lm_head.weight", &[64, H]);
    for (i, kind) in c.layer_types.iter().enumerate() {
        let p = format!("model.layers.{i}");
        g.bf16(&format!("{p}.input_layernorm.weight"), &[H]);
        g.bf16(&format!("{p}.post_attention_layernorm.weight"), &[H]);
        match kind {
            LayerType::LinearAttention => {
                let a = format!("{p}.linear_attn");
                g.linear(&format!("{a}.in_proj_qkv"), c.conv_dim(), H, true);
                g.linear(&format!("{a}.in_proj_z"), c.value_dim(), H, true);
                g.linear(&format!("{a}.in_proj_b"), 4, H, false);
                g.linear(&format!("{a}.in_proj_a"), 4, H, false);
                g.bf16(&format!("{a}.conv1d.weight"), &[c.conv_dim(), 1, 4]);
                let alog: Vec<f32> = (0..4).map(|i| i as f32 * 0.25).collect();
                g.put(float_tensor(&format!("{a}.A_log"), Dtype::F32, &[4], &alog));
                g.bf16(&format!("{a}.dt_bias"), &[4]);
                g.bf16(&format!("{a}.norm.weight"), &[8]);
                g.linear(&format!("{a}.out_proj"), H, c.value_dim(), true);
            }
            LayerType::FullAttention => {
                let a = format!("{p}.self_attn");
                g.linear(&format!("{a}.q_proj"), c.q_proj_rows(), H, true);
                g.linear(&format!("{a}.k_proj"), c.kv_proj_rows(), H, true);
                g.linear(&format!("{a}.v_proj"), c.kv_proj_rows(), H, true);
                g.linear(&format!("{a}.o_proj"), H, 16, true);
                g.bf16(&format!("{a}.q_norm.weight"), &[8]);
                g.bf16(&format!("{a}.k_norm.weight"), &[8]);
            }
        }
        if moe {
            let m = format!("{p}.mlp");
            g.bf16(&format!("{m}.gate.weight"), &[E, H]);
            g.bf16(&format!("{m}.shared_expert_gate.weight"), &[1, H]);
            for t in ["gate_proj", "up_proj"] {
                g.linear(&format!("{m}.shared_expert.{t}"), 16, H, true);
            }
            g.linear(&format!("{m}.shared_expert.down_proj"), H, 16, true);
            for e in 0..E {
                g.linear(&format!("{m}.experts.{e}.gate_proj"), IE, H, true);
                g.linear(&format!("{m}.experts.{e}.up_proj"), IE, H, true);
                g.linear(&format!("{m}.experts.{e}.down_proj"), H, IE, true);
            }
        } else {
            for t in ["gate_proj", "up_proj"] {
                g.linear(&format!("{p}.mlp.{t}"), 48, H, true);
            }
            g.linear(&format!("{p}.mlp.down_proj"), H, 48, true);
        }
    }
    if fuse_experts {
        fuse(&mut g.map, c.num_hidden_layers);
    }
    g.map
}

/// Rewrites per-expert tensors as fused 3-D `experts.gate_up_proj` / `down_proj`
/// (and `_scale_inv` companions), the BF16-release layout.
fn fuse(map: &mut Map, layers: usize) {
    for i in 0..layers {
        let m = format!("model.layers.{i}.mlp.experts");
        for (fused, parts) in [
            ("gate_up_proj", &["gate_proj", "up_proj"][..]),
            ("down_proj", &["down_proj"][..]),
        ] {
            for suffix in ["weight", "weight_scale_inv"] {
                let mut bytes = Vec::new();
                let mut inner: Option<(Dtype, Vec<usize>)> = None;
                for e in 0..E {
                    let mut rows = 0;
                    for part in parts {
                        let Some(t) = map.remove(&format!("{m}.{e}.{part}.{suffix}")) else {
                            continue;
                        };
                        bytes.extend_from_slice(&t.bytes);
                        rows += t.shape[0];
                        inner = Some((t.dtype, vec![rows, t.shape[1]]));
                    }
                }
                let Some((dtype, shape)) = inner else {
                    continue;
                };
                let name = if suffix == "weight" {
                    format!("{m}.{fused}")
                } else {
                    format!("{m}.{fused}_scale_inv")
                };
                map.insert(
                    name.clone(),
                    tensor(&name, dtype, &[E, shape[0], shape[1]], bytes),
                );
            }
        }
    }
}

#[test]
fn dense_bf16_model_loads() {
    let map = build(false, false, false);
    let m = load_from_source(&map, &model_config(false, None), None).unwrap();
    assert_eq!(m.layers.len(), 2);
    let Mixer::Linear(gdn) = &m.layers[0].mixer else {
        panic!("layer 0 is linear")
    };
    let names: Vec<_> = gdn
        .in_proj_qkvz
        .shards
        .iter()
        .map(|s| (s.name.as_str(), s.row_offset, s.rows))
        .collect();
    assert_eq!(
        names,
        [("q", 0, 16), ("k", 16, 16), ("v", 32, 32), ("z", 64, 32)]
    );
    let want: Vec<f32> = ["in_proj_qkv", "in_proj_z"]
        .iter()
        .flat_map(|t| raw_values(&map[&format!("model.layers.0.linear_attn.{t}.weight")]))
        .collect();
    assert_same(&dequantize(&gdn.in_proj_qkvz).unwrap(), &want, "qkvz");
    assert_eq!(
        gdn.conv1d,
        raw_values(&map["model.layers.0.linear_attn.conv1d.weight"])
    );
    assert_eq!(gdn.a_log, vec![0.0, 0.25, 0.5, 0.75]);
    let Mixer::Full(att) = &m.layers[1].mixer else {
        panic!("layer 1 is full")
    };
    assert_eq!(att.qkv.rows, 32 + 8 + 8);
    assert_eq!(att.kv_scales, None);
    assert!(m.lm_head.is_some());
}

#[test]
fn fp8_block_moe_both_layouts_agree() {
    let cfg = model_config(true, Some(fp8_block_config()));
    let per_expert = build(true, true, false);
    let fused = build(true, true, true);
    assert!(fused.contains_key("model.layers.0.mlp.experts.gate_up_proj_scale_inv"));
    let a = load_from_source(&per_expert, &cfg, None).unwrap();
    let b = load_from_source(&fused, &cfg, None).unwrap();
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        let (Ffn::Moe(ma), Ffn::Moe(mb)) = (&la.ffn, &lb.ffn) else {
            panic!("MoE")
        };
        for (pa, pb) in [
            (&ma.experts_gate_up, &mb.experts_gate_up),
            (&ma.experts_down, &mb.experts_down),
        ] {
            assert_eq!(pa.data, pb.data);
            assert_eq!(pa.scale, pb.scale);
            let shard_names = |p: &qwgpu_loader::PackedWeight| {
                p.shards
                    .iter()
                    .map(|s| (s.name.clone(), s.row_offset))
                    .collect::<Vec<_>>()
            };
            assert_eq!(shard_names(pa), shard_names(pb));
            assert_same(&dequantize(pa).unwrap(), &dequantize(pb).unwrap(), &pa.name);
        }
        assert_eq!(ma.experts_gate_up.shards[3].name, "e1.up");
        assert!(matches!(ma.router.scale, ScaleScheme::None));
    }
    // And both equal the per-expert tensors dequantized one by one.
    let mut want = Vec::new();
    for e in 0..E {
        for t in ["gate_proj", "up_proj"] {
            let m = format!("model.layers.0.mlp.experts.{e}.{t}");
            let (w, s) = (
                &per_expert[&format!("{m}.weight")],
                &per_expert[&format!("{m}.weight_scale_inv")],
            );
            want.extend(reference_dequant(w, Some(s), &[IE], BLOCK));
        }
    }
    let Ffn::Moe(m0) = &b.layers[0].ffn else {
        panic!("MoE")
    };
    assert_same(
        &dequantize(&m0.experts_gate_up).unwrap(),
        &want,
        "experts gate_up",
    );
    // in_proj_b/a stay BF16 (excluded by regex), the rest is block FP8.
    let Mixer::Linear(gdn) = &a.layers[0].mixer else {
        panic!()
    };
    assert_eq!(gdn.in_proj_ba.scale, ScaleScheme::None);
    let ScaleScheme::Block { segments, .. } = &gdn.in_proj_qkvz.scale else {
        panic!("{:?}", gdn.in_proj_qkvz.scale)
    };
    assert_eq!(segments.len(), 1, "64 + 32 rows are whole 16-row blocks");
    let Mixer::Full(att) = &a.layers[1].mixer else {
        panic!()
    };
    let ScaleScheme::Block { segments, .. } = &att.qkv.scale else {
        panic!()
    };
    assert_eq!(
        segments.iter().map(|s| s.row_offset).collect::<Vec<_>>(),
        [0, 32, 40],
        "k/v have 8 rows: own grids"
    );
}

#[test]
fn fused_bf16_moe_loads() {
    let map = build(true, false, true);
    let m = load_from_source(&map, &model_config(true, None), None).unwrap();
    let Ffn::Moe(moe) = &m.layers[1].ffn else {
        panic!()
    };
    assert_eq!(
        (moe.experts_gate_up.rows, moe.experts_down.rows),
        (E * 2 * IE, E * H)
    );
    let want = raw_values(&map["model.layers.1.mlp.experts.down_proj"]);
    assert_same(&dequantize(&moe.experts_down).unwrap(), &want, "down");
}

#[test]
fn fused_expert_per_expert_scalar_scales() {
    // [E] scales on a fused FP8 tensor: one per expert, broadcast to gate and up.
    let mut map = build(true, false, true);
    let mut rng = Rng(5);
    for i in 0..2 {
        for (t, rows, cols) in [("gate_up_proj", 2 * IE, H), ("down_proj", H, IE)] {
            let name = format!("model.layers.{i}.mlp.experts.{t}");
            map.insert(
                name.clone(),
                tensor(
                    &name,
                    Dtype::F8E4M3,
                    &[E, rows, cols],
                    rng.bytes(E * rows * cols),
                ),
            );
            let s: Vec<f32> = (0..E).map(|_| rng.scale()).collect();
            let sname = format!("{name}_scale_inv");
            map.insert(
                sname.clone(),
                float_tensor(&sname, Dtype::F32, &[E, 1, 1], &s),
            );
        }
    }
    let m = load_from_source(&map, &model_config(true, None), None).unwrap();
    let Ffn::Moe(moe) = &m.layers[0].ffn else {
        panic!()
    };
    let s = raw_values(&map["model.layers.0.mlp.experts.gate_up_proj_scale_inv"]);
    let want: Vec<f32> = s.iter().flat_map(|&v| [v, v]).collect();
    assert_eq!(
        moe.experts_gate_up.scale,
        ScaleScheme::PerShard { scales: want }
    );
}

#[test]
fn expert_layout_errors() {
    let cfg = model_config(true, Some(fp8_block_config()));
    let mut mixed = build(true, true, false);
    let fused = build(true, true, true);
    mixed.insert(
        "model.layers.1.mlp.experts.down_proj".into(),
        fused["model.layers.1.mlp.experts.down_proj"].clone(),
    );
    let e = load_from_source(&mixed, &cfg, None).expect_err("mixed");
    assert!(matches!(e, LoadError::MixedExpertLayouts { .. }), "{e}");

    let mut across = build(true, true, false);
    for (k, v) in fused
        .iter()
        .filter(|(k, _)| k.starts_with("model.layers.1.mlp.experts"))
    {
        across.insert(k.clone(), v.clone());
    }
    across.retain(|k, _| {
        !(k.starts_with("model.layers.1.mlp.experts.") && k.as_bytes()[27].is_ascii_digit())
    });
    let e = load_from_source(&across, &cfg, None).expect_err("layouts differ across layers");
    assert!(
        e.to_string().contains("layer 0") && e.to_string().contains("layer 1"),
        "{e}"
    );

    let mut out_of_range = build(true, true, false);
    let t = out_of_range["model.layers.0.mlp.experts.0.gate_proj.weight"].clone();
    out_of_range.insert(
        "model.layers.0.mlp.experts.4.gate_proj.weight".into(),
        SourceTensor {
            name: "model.layers.0.mlp.experts.4.gate_proj.weight".into(),
            ..t
        },
    );
    let e = load_from_source(&out_of_range, &cfg, None).expect_err("expert 4 of 4");
    assert!(
        matches!(
            e,
            LoadError::ExpertOutOfRange {
                expert: 4,
                num_experts: 4,
                ..
            }
        ),
        "{e}"
    );

    let mut missing = build(true, true, false);
    missing.remove("model.layers.0.mlp.experts.2.up_proj.weight");
    missing.remove("model.layers.1.mlp.experts.3.down_proj.weight");
    let e = load_from_source(&missing, &cfg, None).expect_err("missing experts");
    let msg = e.to_string();
    assert!(
        msg.contains("experts.2.up_proj.weight")
            && msg.contains("layers.1.mlp.experts.3.down_proj.weight"),
        "{msg}"
    );
}

#[test]
fn all_missing_tensors_listed() {
    let mut map = build(false, false, false);
    map.remove("model.norm.weight");
    map.remove("model.layers.1.self_attn.k_norm.weight");
    let e = load_from_source(&map, &model_config(false, None), None).expect_err("missing");
    assert!(
        matches!(&e, LoadError::MissingTensors { names } if names.len() == 2),
        "{e}"
    );
}

fn ct_with_kv() -> QuantizationConfig {
    let args = |strategy| CtQuantArgs {
        num_bits: 8,
        kind: "float".into(),
        strategy,
        symmetric: true,
        dynamic: false,
        block_structure: Some(BLOCK),
        group_size: None,
    };
    QuantizationConfig::CompressedTensors(CompressedTensorsConfig {
        format: "float-quantized".into(),
        groups: vec![CtGroup {
            name: "group_0".into(),
            targets: vec!["Linear".into()],
            weights: Some(args(CtStrategy::Block)),
            input_activations: None,
        }],
        ignore: vec!["lm_head".into(), "re:.*in_proj_[ab]".into()],
        kv_cache_scheme: Some(args(CtStrategy::Tensor)),
    })
}

#[test]
fn kv_cache_scales_loaded_or_refused() {
    let cfg = model_config(false, Some(ct_with_kv()));
    let mut map = build(false, true, false);
    let e = load_from_source(&map, &cfg, None).expect_err("kv_cache_scheme without scales");
    assert!(
        matches!(e, LoadError::KvScales { layer: 1, .. }) && e.to_string().contains("k_scale"),
        "{e}"
    );

    map.insert(
        "model.layers.1.self_attn.k_proj.k_scale".into(),
        float_tensor(
            "model.layers.1.self_attn.k_proj.k_scale",
            Dtype::F32,
            &[],
            &[0.5],
        ),
    );
    let e = load_from_source(&map, &cfg, None).expect_err("only k");
    assert!(e.to_string().contains("v_scale"), "{e}");

    map.insert(
        "model.layers.1.self_attn.v_scale".into(),
        float_tensor(
            "model.layers.1.self_attn.v_scale",
            Dtype::BF16,
            &[1],
            &[0.25],
        ),
    );
    let m = load_from_source(&map, &cfg, None).unwrap();
    let Mixer::Full(att) = &m.layers[1].mixer else {
        panic!()
    };
    assert_eq!(
        att.kv_scales,
        Some(qwgpu_loader::KvScales {
            k_scale: 0.5,
            v_scale: 0.25
        })
    );

    map.insert(
        "model.layers.1.self_attn.v_scale".into(),
        float_tensor(
            "model.layers.1.self_attn.v_scale",
            Dtype::F32,
            &[1],
            &[-1.0],
        ),
    );
    let e = load_from_source(&map, &cfg, None).expect_err("negative");
    assert!(matches!(e, LoadError::ScaleValue { .. }), "{e}");
}

#[test]
fn quantized_lm_head_keeps_its_scale_or_is_refused() {
    let cfg = model_config(false, None);
    let mut map = build(false, false, false);
    let mut rng = Rng(77);
    map.insert(
        "lm_head.weight".into(),
        fp8_tensor("lm_head.weight", &mut rng, 64, H),
    );
    let e = load_from_source(&map, &cfg, None).expect_err("no scale");
    assert!(
        matches!(e, LoadError::MissingScale { .. })
            && e.to_string().contains("lm_head.weight_scale"),
        "{e}"
    );
    let s: Vec<f32> = (0..64).map(|_| rng.scale()).collect();
    map.insert(
        "lm_head.weight_scale".into(),
        float_tensor("lm_head.weight_scale", Dtype::BF16, &[64, 1], &s),
    );
    let m = load_from_source(&map, &cfg, None).unwrap();
    let head = m.lm_head.as_ref().unwrap();
    assert!(matches!(head.scale, ScaleScheme::PerChannel { .. }));
    let want = reference_dequant(
        &map["lm_head.weight"],
        Some(&map["lm_head.weight_scale"]),
        &[64],
        BLOCK,
    );
    assert_same(&dequantize(head).unwrap(), &want, "lm_head");
}

#[test]
fn quantized_embedding_is_refused() {
    let mut map = build(false, false, false);
    let mut rng = Rng(1);
    map.insert(
        "model.embed_tokens.weight".into(),
        fp8_tensor("model.embed_tokens.weight", &mut rng, 64, H),
    );
    map.insert(
        "model.embed_tokens.weight_scale".into(),
        float_tensor("model.embed_tokens.weight_scale", Dtype::F32, &[1], &[1.0]),
    );
    let e = load_from_source(&map, &model_config(false, None), None).expect_err("fp8 embedding");
    assert!(matches!(e, LoadError::EmbeddingQuantized { .. }), "{e}");
}

#[test]
fn progress_hook_sees_every_layer() {
    let map = build(false, false, false);
    let seen = std::cell::RefCell::new(Vec::new());
    let hook = |done: usize, total: usize| seen.borrow_mut().push((done, total));
    load_from_source(&map, &model_config(false, None), Some(&hook)).unwrap();
    assert_eq!(*seen.borrow(), vec![(1, 2), (2, 2)]);
}
