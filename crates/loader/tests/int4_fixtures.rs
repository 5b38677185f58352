//! The committed 4-bit fixtures (GPTQ with Qwen's official `dynamic` rules,
//! with and without activation order; AWQ; compressed-tensors W4A16) load
//! with exactly the modules their configs quantize in the canonical int4
//! form, and broken variants of them (missing zeros / scales, wrong packing
//! shapes, a group size that does not divide the row, a rule that excludes a
//! module stored as 4-bit, a permuted `g_idx` without `desc_act`) are refused
//! with errors naming the tensor and its file. compressed-tensors MoE experts
//! stored fused as 3-D tensors (llm-compressor's `repack_moe` layout) load to
//! exactly what their per-expert copy loads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qwgpu_checkpoint::{Checkpoint, Dtype, ModelConfig, OpenOptions, QuantizationConfig};
use qwgpu_loader::{
    dequantize, load_from_source, load_from_source_with, load_model, plan_model,
    stream_model_borrowing, Ffn, LoadError, Mixer, PackOptions, PackedModel, PackedWeight, Part,
    SourceTensor, TensorSource,
};

const INT4_FIXTURES: &[&str] = &[
    "dense-awq-int4",
    "dense-ct-w4a16",
    "dense-gptq-actorder",
    "dense-gptq-int4",
    "moe-awq-int4",
    "moe-ct-w4a16",
    "moe-ct-w4a16-fused",
    "moe-gptq-actorder",
    "moe-gptq-int4",
];

fn fixture(name: &str) -> Checkpoint {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    // Strict: every tensor is required or a known companion (qweight, qzeros,
    // scales, g_idx, weight_packed, weight_shape, weight_zero_point, ...).
    Checkpoint::open_with(&dir, &OpenOptions { strict: true })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// How a packed weight is stored.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    Int4,
    Float,
}

fn kind(w: &PackedWeight) -> Kind {
    match w.int4() {
        Some(v) => {
            v.validate(&w.name).expect("canonical int4 form");
            assert_eq!(w.dtype, Dtype::I32, "{}", w.name);
            Kind::Int4
        }
        None => {
            assert!(
                !w.dtype.is_fp8() && !w.dtype.is_int(),
                "{name}: {dtype}",
                name = w.name,
                dtype = w.dtype
            );
            Kind::Float
        }
    }
}

/// `(attention + GDN projections, MLP / routed experts, shared expert, small
/// unquantized ones)` kinds over every layer, each required to be uniform.
fn kinds(m: &PackedModel) -> (Kind, Vec<Kind>, Option<Kind>, Kind) {
    let uniform = |ws: Vec<&PackedWeight>| -> Kind {
        let k: Vec<Kind> = ws.iter().map(|w| kind(w)).collect();
        assert!(
            k.windows(2).all(|p| p[0] == p[1]),
            "mixed: {:?}",
            ws.iter().map(|w| (&w.name, kind(w))).collect::<Vec<_>>()
        );
        k[0]
    };
    let mut mixer = Vec::new();
    let mut small = vec![&m.embed_tokens];
    let mut ffn = Vec::new();
    let mut shared = Vec::new();
    for l in &m.layers {
        match &l.mixer {
            Mixer::Linear(g) => {
                mixer.extend([&g.in_proj_qkvz, &g.out_proj]);
                small.push(&g.in_proj_ba);
            }
            Mixer::Full(a) => mixer.extend([&a.qkv, &a.o_proj]),
        }
        match &l.ffn {
            Ffn::Dense(d) => ffn.extend([&d.gate_up, &d.down]),
            Ffn::Moe(e) => {
                ffn.extend([&e.experts_gate_up, &e.experts_down]);
                shared.extend([&e.shared_expert.gate_up, &e.shared_expert.down]);
                small.extend([&e.router, &e.shared_expert_gate]);
            }
        }
    }
    small.extend(m.lm_head.as_ref());
    let shared = (!shared.is_empty()).then(|| uniform(shared));
    (
        uniform(mixer),
        ffn.iter().map(|w| kind(w)).collect(),
        shared,
        uniform(small),
    )
}

#[test]
fn every_int4_fixture_loads_what_its_config_quantizes() {
    for name in INT4_FIXTURES {
        let ckpt = fixture(name);
        let m = load_model(&ckpt).unwrap_or_else(|e| panic!("{name}: {e}"));
        for w in m.weights() {
            let v = dequantize(w).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                v.len(),
                w.rows * w.cols,
                "{name}: {w_name}",
                w_name = w.name
            );
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{name}: {w_name}",
                w_name = w.name
            );
        }
        let (mixer, ffn, shared, small) = kinds(&m);
        assert_eq!(
            small,
            Kind::Float,
            "{name}: embeddings, head, routers, in_proj_ba stay float"
        );
        let gptq = matches!(
            ckpt.config().quantization,
            Some(QuantizationConfig::Gptq(_))
        );
        if gptq {
            // `-:.*attn.*` and `-:.*shared_expert.*`: BF16; act-order weights
            // are dequantized at load.
            assert_eq!(mixer, Kind::Float, "{name}: attention stays BF16");
            assert_eq!(
                shared.unwrap_or(Kind::Float),
                Kind::Float,
                "{name}: shared expert stays BF16"
            );
            if name.contains("actorder") {
                // A weight with one group per row has nothing to permute and
                // stays 4-bit; those with a permuted g_idx are dequantized.
                assert!(
                    ffn.contains(&Kind::Float),
                    "{name}: act-order weights dequantized"
                );
            } else {
                assert!(
                    ffn.iter().all(|k| *k == Kind::Int4),
                    "{name}: MLP / routed experts"
                );
            }
        } else {
            assert_eq!(mixer, Kind::Int4, "{name}");
            assert!(ffn.iter().all(|k| *k == Kind::Int4), "{name}");
            assert_eq!(shared.unwrap_or(Kind::Int4), Kind::Int4, "{name}");
        }
    }
}

/// The layout-only plan (what `qwgpu inspect` shows) has every int4
/// weight's scales and zeros but reads no packed word.
#[test]
fn plan_keeps_int4_scales_without_words() {
    for name in INT4_FIXTURES {
        let ckpt = fixture(name);
        let full = load_model(&ckpt).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = plan_model(&ckpt).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut int4 = 0;
        for (p, f) in plan.weights().iter().zip(full.weights()) {
            assert_eq!(
                (&p.name, p.rows, p.cols, &p.shards),
                (&f.name, f.rows, f.cols, &f.shards)
            );
            match (p.int4(), f.int4()) {
                (Some(pv), Some(fv)) => {
                    assert!(pv.words.is_empty(), "{name}: {p_name}", p_name = p.name);
                    assert_eq!(
                        (pv.scales, pv.zeros, pv.group_size),
                        (fv.scales, fv.zeros, fv.group_size)
                    );
                    int4 += 1;
                }
                (None, None) => {}
                _ => panic!(
                    "{name}: {p_name} int4 in one of plan / load only",
                    p_name = p.name
                ),
            }
        }
        // moe-gptq-actorder permutes every expert's groups: all dequantized.
        assert!(
            int4 > 0 || *name == "moe-gptq-actorder",
            "{name}: no int4 weight"
        );
    }
}

/// Every 4-bit fixture (GPTQ, AWQ, compressed-tensors; dense, MoE per
/// expert and fused 3-D, activation order) packs to the same model whatever
/// the threads repacking it, and to what a single-threaded load packs.
#[test]
fn int4_fixtures_pack_the_same_on_any_thread_count() {
    for name in INT4_FIXTURES {
        let ckpt = fixture(name);
        let load = |threads| {
            let opts = PackOptions {
                threads,
                ..PackOptions::default()
            };
            load_from_source_with(&ckpt, ckpt.config(), None, &opts)
                .unwrap_or_else(|e| panic!("{name} on {threads} threads: {e}"))
        };
        let one = load(1);
        assert!(one.weights().iter().any(|w| w.int4().is_some()) || name.contains("actorder"));
        for threads in [0, 2, 3, 8] {
            assert!(load(threads) == one, "{name}: {threads} threads");
        }
    }
}

/// A GPU loader streams weights borrowed from the checkpoint by name; an
/// act-order weight dequantized on the host keeps its `qweight` name but not
/// its bytes, so it must come packed (never read back as the I32 words).
// The visitor's error type is the loader's (a large enum, returned rarely).
#[allow(clippy::result_large_err)]
#[test]
fn host_decoded_weights_are_never_borrowed() {
    let ckpt = fixture("dense-gptq-actorder");
    let full = load_model(&ckpt).expect("loads");
    let mut dense_checked = 0;
    stream_model_borrowing(&ckpt, None, &mut |part| {
        if let Part::Layer { index, layer } = part {
            let Ffn::Dense(mlp) = &layer.ffn else {
                panic!("dense fixture")
            };
            let Ffn::Dense(want) = &full.layers[index].ffn else {
                panic!("dense fixture")
            };
            for (got, want) in [(&mlp.gate_up, &want.gate_up), (&mlp.down, &want.down)] {
                if got.dtype == Dtype::F32 {
                    assert!(got.borrowed_sources().is_none(), "{name}", name = got.name);
                    assert_eq!(got.data, want.data, "{name}", name = got.name);
                    dense_checked += 1;
                }
            }
        }
        Ok(())
    })
    .expect("streams");
    assert!(dense_checked > 0, "no act-order weight was dequantized");
}

/// A fixture with some tensors hidden or replaced.
struct Edited<'c> {
    ckpt: &'c Checkpoint,
    hide: Vec<String>,
    replace: BTreeMap<String, SourceTensor<'static>>,
}

impl TensorSource for Edited<'_> {
    fn tensor(&self, name: &str) -> Option<SourceTensor<'_>> {
        if self.hide.iter().any(|h| h == name) {
            return None;
        }
        match self.replace.get(name) {
            Some(t) => Some(t.clone()),
            None => TensorSource::tensor(self.ckpt, name),
        }
    }
    fn tensor_names(&self) -> Vec<&str> {
        TensorSource::tensor_names(self.ckpt)
            .into_iter()
            .filter(|n| !self.hide.iter().any(|h| h == n))
            .collect()
    }
    fn origin(&self, name: &str) -> Option<String> {
        TensorSource::origin(self.ckpt, name)
    }
}

fn load_edited(
    fixture_name: &str,
    hide: &[&str],
    replace: Vec<SourceTensor<'static>>,
    config: impl Fn(&mut serde_json::Value),
) -> LoadError {
    let ckpt = fixture(fixture_name);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(fixture_name);
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).expect("config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    config(&mut v);
    let cfg = ModelConfig::from_json_str(&v.to_string(), &path).expect("edited config parses");
    let src = Edited {
        ckpt: &ckpt,
        hide: hide.iter().map(|s| s.to_string()).collect(),
        replace: replace.into_iter().map(|t| (t.name.clone(), t)).collect(),
    };
    match load_from_source(&src, &cfg, None) {
        Ok(_) => panic!("{fixture_name}: the broken variant loaded"),
        Err(e) => e,
    }
}

fn assert_names(e: &LoadError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "`{p}` not in: {msg}");
    }
}

const GATE: &str = "model.layers.0.mlp.gate_proj";

#[test]
fn broken_4bit_inputs_are_named() {
    // A rule excluding the MLPs, which the file stores as 4-bit.
    let e = load_edited("dense-gptq-int4", &[], vec![], |c| {
        let q = &mut c["quantization_config"]["dynamic"];
        let mut rules = serde_json::Map::new();
        rules.insert("-:.*mlp.*".into(), serde_json::json!({}));
        for (k, v) in q.as_object().expect("rules") {
            rules.insert(k.clone(), v.clone());
        }
        *q = serde_json::Value::Object(rules);
    });
    assert!(matches!(e.root(), LoadError::Int4Unexpected { .. }), "{e}");
    assert_names(
        &e,
        &[&format!("{GATE}.qweight"), "-:.*mlp.*", "model.safetensors"],
    );

    // modules_to_not_convert naming a 4-bit module.
    let e = load_edited("dense-awq-int4", &[], vec![], |c| {
        c["quantization_config"]["modules_to_not_convert"] = serde_json::json!(["gate_proj"]);
    });
    assert!(matches!(e.root(), LoadError::Int4Unexpected { .. }), "{e}");
    assert_names(
        &e,
        &[&format!("{GATE}.qweight"), "gate_proj", "model.safetensors"],
    );

    // Missing zero points and scales.
    for (hide, role) in [
        (format!("{GATE}.qzeros"), "zero points"),
        (format!("{GATE}.scales"), "scales"),
    ] {
        let e = load_edited("dense-gptq-int4", &[&hide], vec![], |_| {});
        assert!(matches!(e.root(), LoadError::Int4 { .. }), "{e}");
        assert_names(
            &e,
            &[&format!("{GATE}.qweight"), role, &hide, "model.safetensors"],
        );
    }
    let ws = "model.layers.0.linear_attn.in_proj_qkv.weight_scale";
    let e = load_edited("dense-ct-w4a16", &[ws], vec![], |_| {});
    assert_names(&e, &["in_proj_qkv.weight_packed", ws, "model.safetensors"]);

    // A wrong packing shape: qzeros with one group too many.
    let ckpt = fixture("dense-awq-int4");
    let qz = ckpt.tensor(&format!("{GATE}.qzeros")).expect("qzeros");
    let (g, n8) = (qz.shape[0], qz.shape[1]);
    let mut bytes = qz.bytes.to_vec();
    bytes.extend(vec![0u8; n8 * 4]);
    let bad =
        SourceTensor::new(qz.name.to_string(), Dtype::I32, vec![g + 1, n8], bytes).expect("tensor");
    let e = load_edited("dense-awq-int4", &[], vec![bad], |_| {});
    assert_names(
        &e,
        &[
            &format!("{GATE}.qzeros"),
            &format!("[{g_plus}, {n8}]", g_plus = g + 1),
            "model.safetensors",
        ],
    );

    // A group size that does not divide the row (K = 32).
    let e = load_edited("dense-gptq-int4", &[], vec![], |c| {
        c["quantization_config"]["group_size"] = serde_json::json!(24);
    });
    assert_names(&e, &["group size 24", "qweight", "model.safetensors"]);

    // Activation order on disk, desc_act: false in the config.
    let e = load_edited("dense-gptq-actorder", &[], vec![], |c| {
        c["quantization_config"]["desc_act"] = serde_json::json!(false);
    });
    assert_names(&e, &["g_idx", "desc_act", "model.safetensors"]);

    // The 4-bit tensors of a config without 4-bit quantization.
    let e = load_edited("moe-gptq-int4", &[], vec![], |c| {
        c.as_object_mut()
            .expect("object")
            .remove("quantization_config");
    });
    assert!(matches!(e.root(), LoadError::Int4Unexpected { .. }), "{e}");
    assert_names(&e, &["experts.0.gate_proj.qweight", "quantization_config"]);
}

const FUSED: &str = "moe-ct-w4a16-fused";
const FUSED_GATE_UP: &str = "model.layers.0.mlp.experts.gate_up_proj";

/// `moe-ct-w4a16-fused` holds `moe-ct-w4a16`'s experts restacked as 3-D
/// tensors (`xtask/fixtures/ct_fused.py`): both load to the same packed
/// model, shard tables, words, scales and zero points alike.
#[test]
fn fused_3d_ct_experts_load_as_their_per_expert_copy() {
    let fused = load_model(&fixture(FUSED)).expect("fused experts load");
    let per_expert = load_model(&fixture("moe-ct-w4a16")).expect("per-expert");
    let (fw, pw) = (fused.weights(), per_expert.weights());
    assert_eq!(fw.len(), pw.len());
    let mut experts = 0;
    for (f, p) in fw.iter().zip(&pw) {
        assert_eq!(
            (&f.name, f.rows, f.cols, f.dtype),
            (&p.name, p.rows, p.cols, p.dtype)
        );
        let names = |w: &PackedWeight| -> Vec<(String, usize, usize)> {
            w.shards
                .iter()
                .map(|s| (s.name.clone(), s.row_offset, s.rows))
                .collect()
        };
        assert_eq!(names(f), names(p), "{name}", name = f.name);
        assert_eq!(f.int4(), p.int4(), "{name}", name = f.name);
        assert_eq!(f.data, p.data, "{name}", name = f.name);
        if f.name.contains(".experts.") {
            assert!(f.int4().is_some(), "{name}", name = f.name);
            experts += 1;
        }
    }
    assert_eq!(experts, 2 * fused.layers.len());
}

/// Broken fused experts: each error names the fused tensor, what was
/// expected and the file.
#[test]
fn broken_fused_ct_experts_are_named() {
    let ckpt = fixture(FUSED);
    let get = |suffix: &str| {
        ckpt.tensor(&format!("{FUSED_GATE_UP}.{suffix}"))
            .unwrap_or_else(|e| panic!("{suffix}: {e}"))
    };
    let reshaped = |suffix: &str, shape: Vec<usize>| {
        let t = get(suffix);
        SourceTensor::new(t.name.to_string(), t.dtype, shape, t.bytes.to_vec()).expect("tensor")
    };
    let words = get("weight_packed");
    let (e, r, c8) = (words.shape[0], words.shape[1], words.shape[2]);

    // Words without the expert dimension.
    let err = load_edited(
        FUSED,
        &[],
        vec![reshaped("weight_packed", vec![e * r, c8])],
        |_| {},
    );
    assert_names(
        &err,
        &[
            &format!("{FUSED_GATE_UP}.weight_packed"),
            &format!("[{e}, {r}, _]"),
            "model.safetensors",
        ],
    );

    // Zero points packed over the concatenated rows of a wrong count.
    let zp = get("weight_zero_point");
    let (zr, zg) = (zp.shape[1], zp.shape[2]);
    let err = load_edited(
        FUSED,
        &[],
        vec![reshaped("weight_zero_point", vec![e / 2, 2 * zr, zg])],
        |_| {},
    );
    assert_names(
        &err,
        &[
            &format!("{FUSED_GATE_UP}.weight_zero_point"),
            "each shard's zero points packed on their own",
            "model.safetensors",
        ],
    );

    // Scales of another group count (the per-shard decoder names the shard).
    let sc = get("weight_scale");
    let mut bytes = sc.bytes.to_vec();
    bytes.extend(bytes.clone());
    let two_groups =
        SourceTensor::new(sc.name.to_string(), sc.dtype, vec![e, r, 2], bytes).expect("tensor");
    let err = load_edited(FUSED, &[], vec![two_groups], |_| {});
    assert!(matches!(err.root(), LoadError::Int4 { .. }), "{err}");
    assert_names(
        &err,
        &[
            &format!("{FUSED_GATE_UP}.weight_scale"),
            "shard `e0.gate`",
            "model.safetensors",
        ],
    );

    // A weight_shape that contradicts the config's geometry.
    let ws = get("weight_shape");
    let mut v: Vec<i64> = ws
        .bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    v[4] += 1; // expert 1's gate rows
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bad = SourceTensor::new(ws.name.to_string(), Dtype::I64, ws.shape.to_vec(), bytes)
        .expect("tensor");
    let err = load_edited(FUSED, &[], vec![bad], |_| {});
    assert_names(
        &err,
        &[
            &format!("{FUSED_GATE_UP}.weight_shape"),
            "expert 1",
            "model.safetensors",
        ],
    );

    // Missing scales; then missing zero points of an asymmetric scheme.
    for (hide, role) in [
        ("weight_scale", "scales"),
        ("weight_zero_point", "zero points"),
    ] {
        let name = format!("{FUSED_GATE_UP}.{hide}");
        let err = load_edited(FUSED, &[&name], vec![], |_| {});
        assert_names(&err, &[role, &name, "model.safetensors"]);
    }

    // GPTQ words over fused 3-D experts: no checkpoint stores them so
    // (GPTQModel and AutoAWQ write `experts.{e}.*.qweight`).
    let fused_bf16 = "model.layers.0.mlp.experts.gate_up_proj";
    let qweight = SourceTensor::new(
        format!("{fused_bf16}.qweight"),
        Dtype::I32,
        vec![8, 4, 64],
        vec![0u8; 8 * 4 * 64 * 4],
    )
    .expect("tensor");
    let err = load_edited("moe-bf16-text", &[fused_bf16], vec![qweight], |_| {});
    assert!(matches!(err.root(), LoadError::Int4 { .. }), "{err}");
    assert_names(
        &err,
        &[
            &format!("{fused_bf16}.qweight"),
            "not a known layout",
            "experts.{e}.{gate,up,down}_proj.qweight",
        ],
    );

    // The config excludes the experts the file stores as 4-bit.
    let err = load_edited(FUSED, &[], vec![], |c| {
        c["quantization_config"]["ignore"]
            .as_array_mut()
            .expect("ignore list")
            .push(serde_json::json!("re:.*mlp\\.experts.*"));
    });
    assert!(
        matches!(err.root(), LoadError::Int4Unexpected { .. }),
        "{err}"
    );
    assert_names(
        &err,
        &[
            &format!("{FUSED_GATE_UP}.weight_packed"),
            "model.safetensors",
        ],
    );
}
