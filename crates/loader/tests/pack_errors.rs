//! Every refusal of the packing step is a typed error naming the tensor.
// LoadError is 128 bytes because it wraps CheckpointError (120 bytes) unboxed.
#![allow(clippy::result_large_err)]

mod common;

use common::*;
use qwgpu_checkpoint::quant::{
    ActivationScheme, CompressedTensorsConfig, CtGroup, CtQuantArgs, CtStrategy, Fp8Config,
    Fp8Format, ModelOptConfig, QuantizationConfig,
};
use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{pack, LoadError, PackedWeight, QuantPolicy, SourceWeight};

const QKV: &[(&str, usize)] = &[("q", 8), ("k", 8), ("v", 4)];

fn fp8_src(
    name: &str,
    rows: usize,
    cols: usize,
    covers: &[&str],
    scale: Option<(&[usize], &[f32])>,
) -> SourceWeight<'static> {
    let mut rng = Rng(rows as u64 * 31 + cols as u64);
    let w = fp8_tensor(&format!("{name}.weight"), &mut rng, rows, cols);
    let mut s = SourceWeight::new(w, covers);
    if let Some((shape, vals)) = scale {
        s = s.with_weight_scale(float_tensor(
            &format!("{name}.weight_scale"),
            Dtype::F32,
            shape,
            vals,
        ));
    }
    s
}

fn bf16_src(name: &str, rows: usize, cols: usize, covers: &[&str]) -> SourceWeight<'static> {
    let vals = vec![0.5f32; rows * cols];
    SourceWeight::new(
        float_tensor(&format!("{name}.weight"), Dtype::BF16, &[rows, cols], &vals),
        covers,
    )
}

fn run(
    sources: &[SourceWeight<'_>],
    shards: &[(&str, usize)],
    policy: &QuantPolicy,
) -> Result<PackedWeight, LoadError> {
    pack(&spec("packed.x", shards, 6), sources, policy)
}

fn expect_err(r: Result<PackedWeight, LoadError>, needles: &[&str]) -> LoadError {
    let e = r.expect_err("must be refused");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message `{msg}` should name `{n}`");
    }
    e
}

fn ct(ignore: &[&str], strategy: CtStrategy, kv: bool, input: Option<bool>) -> QuantPolicy {
    let args = |strategy, dynamic| CtQuantArgs {
        num_bits: 8,
        kind: "float".into(),
        strategy,
        symmetric: true,
        dynamic,
        block_structure: (strategy == CtStrategy::Block).then_some([128, 128]),
        group_size: None,
    };
    QuantPolicy::from_config(Some(&QuantizationConfig::CompressedTensors(
        CompressedTensorsConfig {
            format: "float-quantized".into(),
            groups: vec![CtGroup {
                name: "group_0".into(),
                targets: vec!["Linear".into()],
                weights: Some(args(strategy, false)),
                input_activations: input.map(|dynamic| args(CtStrategy::Tensor, dynamic)),
            }],
            ignore: ignore.iter().map(|s| s.to_string()).collect(),
            kv_cache_scheme: kv.then(|| args(CtStrategy::Tensor, false)),
        },
    )))
    .unwrap()
}

#[test]
fn fp8_weight_without_scale() {
    let e = expect_err(
        run(
            &[fp8_src("m.qkv", 20, 6, &["q", "k", "v"], None)],
            QKV,
            &QuantPolicy::unquantized(),
        ),
        &["m.qkv.weight", "m.qkv.weight_scale_inv"],
    );
    assert!(matches!(e, LoadError::MissingScale { .. }), "{e:?}");
}

#[test]
fn scale_shape_fitting_no_scheme() {
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[5], &[1.0; 5])));
    let e = expect_err(
        run(&[s], QKV, &QuantPolicy::unquantized()),
        &["m.qkv.weight_scale", "[5]", "[3] (per-shard)", "[20, 1]"],
    );
    assert!(matches!(e, LoadError::ScaleShape { .. }), "{e:?}");
    // [2] for a tensor covering 3 shards is not per-shard either.
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[2], &[1.0; 2])));
    expect_err(run(&[s], QKV, &QuantPolicy::unquantized()), &["[2]"]);
}

#[test]
fn block_grid_not_matching_weight() {
    let policy = QuantPolicy::from_config(Some(&QuantizationConfig::Fp8(Fp8Config {
        fmt: Fp8Format::E4M3,
        weight_block_size: Some([4, 4]),
        activation_scheme: ActivationScheme::Dynamic,
        modules_to_not_convert: vec![],
    })))
    .unwrap();
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[4, 2], &[1.0; 8])));
    let e = expect_err(
        run(&[s], QKV, &policy),
        &["m.qkv.weight_scale", "[4, 2]", "[5, 2]"],
    );
    assert!(matches!(e, LoadError::BlockGrid { .. }), "{e:?}");
}

#[test]
fn shard_never_loaded_and_loaded_twice() {
    let q = fp8_src("m.q", 8, 6, &["q"], Some((&[1], &[1.0])));
    let k = fp8_src("m.k", 8, 6, &["k"], Some((&[1], &[1.0])));
    let e = expect_err(
        run(&[q.clone(), k.clone()], QKV, &QuantPolicy::unquantized()),
        &["packed.x", "v"],
    );
    assert!(matches!(e, LoadError::ShardNotLoaded { .. }), "{e:?}");

    let k2 = fp8_src("m.k2", 8, 6, &["k"], Some((&[1], &[1.0])));
    let v = fp8_src("m.v", 4, 6, &["v"], Some((&[1], &[1.0])));
    let e = expect_err(
        run(&[q, k, k2, v], QKV, &QuantPolicy::unquantized()),
        &["`k`", "m.k.weight", "m.k2.weight"],
    );
    assert!(matches!(e, LoadError::ShardLoadedTwice { .. }), "{e:?}");
}

#[test]
fn unknown_shard_rows_and_cols_mismatch_and_order() {
    let e = expect_err(
        run(
            &[fp8_src("m.z", 4, 6, &["z"], Some((&[1], &[1.0])))],
            QKV,
            &QuantPolicy::unquantized(),
        ),
        &["m.z.weight", "`z`"],
    );
    assert!(matches!(e, LoadError::UnknownShard { .. }), "{e:?}");
    let e = expect_err(
        run(
            &[fp8_src(
                "m.qkv",
                19,
                6,
                &["q", "k", "v"],
                Some((&[1], &[1.0])),
            )],
            QKV,
            &QuantPolicy::unquantized(),
        ),
        &["19", "20"],
    );
    assert!(matches!(e, LoadError::RowsMismatch { .. }), "{e:?}");
    let e = expect_err(
        run(
            &[fp8_src(
                "m.qkv",
                20,
                5,
                &["q", "k", "v"],
                Some((&[1], &[1.0])),
            )],
            QKV,
            &QuantPolicy::unquantized(),
        ),
        &["5", "6"],
    );
    assert!(matches!(e, LoadError::ColsMismatch { .. }), "{e:?}");
    let e = expect_err(
        run(
            &[fp8_src("m.qv", 12, 6, &["q", "v"], Some((&[1], &[1.0])))],
            QKV,
            &QuantPolicy::unquantized(),
        ),
        &["m.qv.weight"],
    );
    assert!(matches!(e, LoadError::ShardOrder { .. }), "{e:?}");
}

#[test]
fn partly_quantized_packed_module() {
    let b = fp8_src(
        "model.layers.0.linear_attn.in_proj_b",
        4,
        6,
        &["b"],
        Some((&[1], &[1.0])),
    );
    let a = bf16_src("model.layers.0.linear_attn.in_proj_a", 4, 6, &["a"]);
    let e = expect_err(
        run(&[b, a], &[("b", 4), ("a", 4)], &QuantPolicy::unquantized()),
        &["in_proj_b.weight", "in_proj_a.weight"],
    );
    assert!(matches!(e, LoadError::PartlyQuantized { .. }), "{e:?}");
}

#[test]
fn bad_scale_values() {
    for bad in [f32::NAN, f32::INFINITY, 0.0, -0.5] {
        let s = fp8_src(
            "m.qkv",
            20,
            6,
            &["q", "k", "v"],
            Some((&[3], &[1.0, bad, 1.0])),
        );
        let e = expect_err(
            run(&[s], QKV, &QuantPolicy::unquantized()),
            &["m.qkv.weight_scale", "element 1"],
        );
        assert!(matches!(e, LoadError::ScaleValue { .. }), "{bad}: {e:?}");
    }
}

#[test]
fn scale_dtype_must_be_float() {
    let mut s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], None);
    s.weight_scale = Some(tensor(
        "m.qkv.weight_scale",
        Dtype::F8E4M3,
        &[1],
        vec![0x38],
    ));
    let e = expect_err(
        run(&[s], QKV, &QuantPolicy::unquantized()),
        &["m.qkv.weight_scale", "F8_E4M3"],
    );
    assert!(matches!(e, LoadError::ScaleDtype { .. }), "{e:?}");
}

#[test]
fn scale_on_unquantized_weight() {
    let s = bf16_src("m.qkv", 20, 6, &["q", "k", "v"]).with_weight_scale(float_tensor(
        "m.qkv.weight_scale",
        Dtype::F32,
        &[1],
        &[1.0],
    ));
    let e = expect_err(
        run(&[s], QKV, &QuantPolicy::unquantized()),
        &["m.qkv.weight_scale", "m.qkv.weight"],
    );
    assert!(matches!(e, LoadError::ScaleOnUnquantized { .. }), "{e:?}");
}

/// An excluded module stored as FP8: config and file disagree. Exclusions are
/// matched after prefix canonicalisation and on dot boundaries.
#[test]
fn excluded_module_stored_as_fp8() {
    let policy = ct(
        &["model.language_model.layers.0.mlp.gate"],
        CtStrategy::Tensor,
        false,
        None,
    );
    let router = fp8_src(
        "model.layers.0.mlp.gate",
        4,
        6,
        &["gate"],
        Some((&[1], &[1.0])),
    );
    let e = expect_err(
        run(&[router], &[("gate", 4)], &policy),
        &[
            "model.layers.0.mlp.gate.weight",
            "model.language_model.layers.0.mlp.gate",
        ],
    );
    assert!(matches!(e, LoadError::QuantizedButExcluded { .. }), "{e:?}");
    // `mlp.gate` does not exclude `mlp.gate_proj` (transformers #48349).
    let gate_proj = fp8_src(
        "model.layers.0.mlp.gate_proj",
        4,
        6,
        &["gate"],
        Some((&[1], &[1.0])),
    );
    run(&[gate_proj], &[("gate", 4)], &policy).expect("gate_proj is quantized");
    // regex entries
    let policy = ct(&["re:.*in_proj_[ab]$"], CtStrategy::Tensor, false, None);
    let a = fp8_src(
        "model.layers.2.linear_attn.in_proj_a",
        4,
        6,
        &["a"],
        Some((&[1], &[1.0])),
    );
    expect_err(
        run(&[a], &[("a", 4)], &policy),
        &["in_proj_a.weight", "re:.*in_proj_[ab]$"],
    );
}

#[test]
fn scheme_must_match_config() {
    let policy = ct(&[], CtStrategy::Channel, false, None);
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[1], &[1.0])));
    let e = expect_err(
        run(&[s], QKV, &policy),
        &["m.qkv.weight", "per-tensor", "per-channel"],
    );
    assert!(matches!(e, LoadError::SchemeMismatch { .. }), "{e:?}");
}

#[test]
fn mixed_block_and_tensor_schemes() {
    // No config: k's [2, 1] scale is its [128, 128] block grid, q's [1] is
    // per-tensor over 130 rows (more than one block: not expressible as one).
    let q = fp8_src("m.q", 130, 6, &["q"], Some((&[1], &[1.0])));
    let k = fp8_src("m.k", 200, 6, &["k"], Some((&[2, 1], &[1.0, 2.0])));
    let e = expect_err(
        run(
            &[q, k],
            &[("q", 130), ("k", 200)],
            &QuantPolicy::unquantized(),
        ),
        &["m.q.weight", "m.k.weight", "block"],
    );
    assert!(matches!(e, LoadError::MixedSchemes { .. }), "{e:?}");
    // Official FP8 without a block size expects per-tensor scales: a 2-D grid is a mismatch.
    let policy = QuantPolicy::from_config(Some(&QuantizationConfig::Fp8(Fp8Config {
        fmt: Fp8Format::E4M3,
        weight_block_size: None,
        activation_scheme: ActivationScheme::Dynamic,
        modules_to_not_convert: vec![],
    })))
    .unwrap();
    let k = fp8_src("m.k", 200, 6, &["k"], Some((&[2, 1], &[1.0, 2.0])));
    let e = expect_err(
        run(&[k], &[("k", 200)], &policy),
        &["m.k.weight", "block", "per-tensor"],
    );
    assert!(matches!(e, LoadError::SchemeMismatch { .. }), "{e:?}");
}

#[test]
fn static_activation_needs_input_scales() {
    let policy = ct(&[], CtStrategy::Tensor, false, Some(false));
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[1], &[1.0])));
    let e = expect_err(
        run(std::slice::from_ref(&s), QKV, &policy),
        &["m.qkv.weight", "m.qkv.input_scale"],
    );
    assert!(matches!(e, LoadError::MissingInputScale { .. }), "{e:?}");
    // dynamic activations need none
    let p = run(&[s], QKV, &ct(&[], CtStrategy::Tensor, false, Some(true))).unwrap();
    assert_eq!(p.activation, qwgpu_loader::ActivationQuant::Dynamic);
}

#[test]
fn modelopt_exclude_wildcards_and_unsupported_algo() {
    let policy = QuantPolicy::from_config(Some(&QuantizationConfig::ModelOpt(ModelOptConfig {
        quant_algo: "FP8".into(),
        kv_cache_quant_algo: None,
        exclude_modules: vec!["*mlp.gate".into(), "lm_head".into()],
    })))
    .unwrap();
    assert!(policy.rule("model.layers.1.mlp.gate").excluded.is_some());
    assert!(policy
        .rule("model.layers.1.mlp.gate_proj")
        .excluded
        .is_none());
    assert!(policy.rule("lm_head").excluded.is_some());
    let e = QuantPolicy::from_config(Some(&QuantizationConfig::ModelOpt(ModelOptConfig {
        quant_algo: "NVFP4".into(),
        kv_cache_quant_algo: None,
        exclude_modules: vec![],
    })))
    .expect_err("NVFP4 unsupported");
    assert!(e.to_string().contains("NVFP4"), "{e}");
}

#[test]
fn byte_length_is_checked() {
    let e = qwgpu_loader::SourceTensor::new("m.w", Dtype::BF16, vec![2, 3], vec![0u8; 11])
        .expect_err("short");
    assert!(
        e.to_string().contains("m.w") && e.to_string().contains("12"),
        "{e}"
    );
}

#[test]
fn inconsistent_packed_weight_is_refused_by_dequantize() {
    let s = fp8_src("m.qkv", 20, 6, &["q", "k", "v"], Some((&[1], &[1.0])));
    let mut p = run(&[s], QKV, &QuantPolicy::unquantized()).unwrap();
    p.scale = qwgpu_loader::ScaleScheme::PerShard {
        scales: vec![1.0; 2],
    };
    let e = qwgpu_loader::dequantize(&p).expect_err("2 scales for 3 shards");
    assert!(matches!(e, LoadError::InvalidPacked { .. }), "{e:?}");
    p.scale = qwgpu_loader::ScaleScheme::None;
    qwgpu_loader::dequantize(&p).expect_err("FP8 without scales");
    p.data.pop();
    qwgpu_loader::dequantize(&p).expect_err("short data");
}
