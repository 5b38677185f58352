//! One-defect-each mutants of a tiny valid checkpoint. Each must be rejected with
//! the right error variant, and the message must name the tensor, file or field.

mod support;

use std::path::Path;

use qwgpu_checkpoint::{Checkpoint, CheckpointError, OpenOptions};
use serde_json::{json, Value};
use support::*;

type Writer = Box<dyn Fn(&Path)>;
type Check = fn(&CheckpointError) -> bool;

struct Mutant {
    name: &'static str,
    write: Writer,
    check: Check,
    /// Substrings the Display message must contain.
    mentions: Vec<&'static str>,
    strict: bool,
}

fn m(
    name: &'static str,
    write: impl Fn(&Path) + 'static,
    check: Check,
    mentions: &[&'static str],
) -> Mutant {
    Mutant {
        name,
        write: Box::new(write),
        check,
        mentions: mentions.to_vec(),
        strict: false,
    }
}

const NORM: &str = "model.norm.weight";
const QKV: &str = "model.layers.0.linear_attn.in_proj_qkv.weight";

/// Writes the dense text-only config and `file` as `model.safetensors`.
fn single(dir: &Path, file: &RawFile) {
    write_config(dir, &Tiny::default().config());
    std::fs::write(dir.join("model.safetensors"), file.to_bytes()).expect("write");
}

fn base_file() -> RawFile {
    RawFile::from_tensors(&Tiny::default().tensors())
}

/// Writes the base tensors with `f` applied to the raw layout.
fn file_mutant(f: impl Fn(&mut RawFile) + 'static) -> impl Fn(&Path) {
    move |dir: &Path| {
        let mut raw = base_file();
        f(&mut raw);
        single(dir, &raw);
    }
}

/// Writes the base checkpoint with `f` applied to the tensor list.
fn tensor_mutant(tiny: Tiny, f: impl Fn(&mut Vec<RawTensor>) + 'static) -> impl Fn(&Path) {
    move |dir: &Path| {
        write_config(dir, &tiny.config());
        let mut t = tiny.tensors();
        f(&mut t);
        write_with_crate(&dir.join("model.safetensors"), &t);
    }
}

/// Writes the dense checkpoint with `f` applied to the config (text fields at top level).
fn config_mutant(
    tiny: Tiny,
    f: impl Fn(&mut serde_json::Map<String, Value>) + 'static,
) -> impl Fn(&Path) {
    move |dir: &Path| {
        write_tiny(dir, &tiny);
        let mut c = tiny.config();
        f(c.as_object_mut().expect("object"));
        write_config(dir, &c);
    }
}

/// Two-shard checkpoint with `f` applied to the index JSON.
fn index_mutant(f: impl Fn(&mut Value, &[String]) + 'static) -> impl Fn(&Path) {
    move |dir: &Path| {
        let names = write_tiny_sharded(dir, &Tiny::default(), 2);
        let p = dir.join("model.safetensors.index.json");
        let mut idx: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
        f(&mut idx, &names);
        std::fs::write(&p, idx.to_string()).expect("write");
    }
}

fn rename(t: &mut [RawTensor], from: &str, to: &str) {
    t.iter_mut()
        .find(|x| x.name == from)
        .expect("test bug")
        .name = to.to_string();
}

fn retype(t: &mut [RawTensor], name: &str, dtype: &str) {
    let x = t.iter_mut().find(|x| x.name == name).expect("test bug");
    let n: usize = x.shape.iter().product();
    x.dtype = dtype.to_string();
    x.data = encode(dtype, n);
}

fn moe(ffn: Ffn) -> Tiny {
    Tiny {
        ffn,
        ..Tiny::default()
    }
}

fn mutants() -> Vec<Mutant> {
    use CheckpointError as CE;
    let mut v = vec![
        // ---- file-level ----
        m(
            "file shorter than 8 bytes",
            |d: &Path| {
                write_config(d, &Tiny::default().config());
                std::fs::write(d.join("model.safetensors"), [1u8, 2, 3]).expect("write");
            },
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "3 bytes"],
        ),
        m(
            "header length past EOF",
            file_mutant(|f| f.header_len_override = Some(1_000_000)),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "1000000"],
        ),
        m(
            "header length overflowing",
            file_mutant(|f| f.header_len_override = Some(u64::MAX - 3)),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "18446744073709551612"],
        ),
        m(
            "header not UTF-8",
            file_mutant(|f| {
                let mut h = f.header_text();
                h[1] = 0xFF;
                f.header_override = Some(h);
            }),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "UTF-8"],
        ),
        m(
            "header not JSON",
            file_mutant(|f| {
                let mut h = f.header_text();
                let n = h.len();
                h[n - 1] = b',';
                f.header_override = Some(h);
            }),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "JSON"],
        ),
        m(
            "header is a JSON array",
            file_mutant(|f| f.header_override = Some(b"[1, 2]".to_vec())),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "object"],
        ),
        m(
            "duplicate tensor name in one header",
            file_mutant(|f| {
                // Second entry renamed to the first: offsets stay valid, names collide.
                let first = f.entries[0].0.clone();
                f.entries[1].0 = first;
            }),
            |e| matches!(e, CE::DuplicateTensor { tensor, .. } if tensor == "model.embed_tokens.weight"),
            &["model.safetensors", "model.embed_tokens.weight"],
        ),
        m(
            "unsupported dtype I64 on a kept tensor",
            tensor_mutant(Tiny::default(), |t| retype(t, NORM, "I64")),
            |e| matches!(e, CE::UnsupportedDtype { tensor, dtype, .. } if tensor == NORM && dtype == "I64"),
            &[NORM, "I64", "model.safetensors"],
        ),
        m(
            "unknown dtype name",
            file_mutant(|f| f.entry_mut(NORM).1 = "Q4_K".into()),
            |e| matches!(e, CE::InvalidTensor { tensor, .. } if tensor == NORM),
            &[NORM, "Q4_K"],
        ),
        m(
            "data offsets out of range",
            file_mutant(|f| {
                let e = f.entries.last_mut().expect("entries");
                e.3[1] += 1_000;
            }),
            |e| matches!(e, CE::InvalidTensor { .. }),
            &["model.safetensors", "out of range"],
        ),
        m(
            "data offsets overlapping",
            file_mutant(|f| {
                // Entry 2 starts 2 bytes early (and its end moves with it): overlaps entry 1.
                f.entries[2].3[0] -= 2;
                f.entries[2].3[1] -= 2;
            }),
            |e| matches!(e, CE::InvalidTensor { detail, .. } if detail.contains("overlaps")),
            &["model.safetensors", "overlaps"],
        ),
        m(
            "data offsets with a hole",
            file_mutant(|f| {
                // Shift every entry from 2 on by 2 bytes; add 2 bytes so the end still matches.
                for e in f.entries.iter_mut().skip(2) {
                    e.3[0] += 2;
                    e.3[1] += 2;
                }
                f.data.extend_from_slice(&[0, 0]);
            }),
            |e| matches!(e, CE::InvalidTensor { detail, .. } if detail.contains("hole")),
            &["model.safetensors", "hole"],
        ),
        m(
            "data not covering the file",
            file_mutant(|f| f.data.extend_from_slice(&[0; 6])),
            |e| matches!(e, CE::Header { .. }),
            &["model.safetensors", "covers"],
        ),
        m(
            "shape x dtype != byte length",
            file_mutant(|f| f.entry_mut(NORM).2 = vec![H as u64 + 1]),
            |e| matches!(e, CE::InvalidTensor { tensor, .. } if tensor == NORM),
            &[NORM, "65"],
        ),
        m(
            "absurd dim",
            file_mutant(|f| f.entry_mut(NORM).2 = vec![1 << 40]),
            |e| matches!(e, CE::InvalidTensor { tensor, .. } if tensor == NORM),
            &[NORM, "1099511627776"],
        ),
        m(
            "overflowing element count",
            file_mutant(|f| f.entry_mut(NORM).2 = vec![1 << 32, 1 << 32, 1 << 32]),
            |e| matches!(e, CE::InvalidTensor { tensor, .. } if tensor == NORM),
            &[NORM, "overflow"],
        ),
        m(
            "offsets near u64::MAX (debug-build panic in the safetensors crate)",
            file_mutant(|f| {
                let e = f.entries.last_mut().expect("entries");
                e.3 = [u64::MAX - 8, u64::MAX - 1];
            }),
            |e| matches!(e, CE::InvalidTensor { .. }),
            &["model.safetensors"],
        ),
        m(
            "neither model.safetensors nor an index",
            |d: &Path| write_config(d, &Tiny::default().config()),
            |e| matches!(e, CE::Io { .. }),
            &["model.safetensors"],
        ),
        // ---- sharded ----
        m(
            "index not JSON",
            |d: &Path| {
                write_tiny_sharded(d, &Tiny::default(), 2);
                std::fs::write(d.join("model.safetensors.index.json"), "{\"weight_map\": {")
                    .expect("write");
            },
            |e| matches!(e, CE::Index { .. }),
            &["model.safetensors.index.json"],
        ),
        m(
            "index without weight_map",
            index_mutant(|idx, _| {
                idx.as_object_mut().expect("obj").remove("weight_map");
            }),
            |e| matches!(e, CE::Index { .. }),
            &["model.safetensors.index.json", "weight_map"],
        ),
        m(
            "index names a missing shard",
            index_mutant(|idx, _| {
                idx["weight_map"][NORM] = json!("model-00009-of-00009.safetensors")
            }),
            |e| matches!(e, CE::ShardPath { shard, .. } if shard == "model-00009-of-00009.safetensors"),
            &["model-00009-of-00009.safetensors", "does not exist"],
        ),
        m(
            "shard name with ..",
            index_mutant(|idx, _| idx["weight_map"][NORM] = json!("..")),
            |e| matches!(e, CE::ShardPath { shard, .. } if shard == ".."),
            &["`..`", "traversal"],
        ),
        m(
            "shard name with a slash",
            index_mutant(|idx, n| idx["weight_map"][NORM] = json!(format!("sub/{}", n[0]))),
            |e| matches!(e, CE::ShardPath { shard, .. } if shard.starts_with("sub/")),
            &["sub/model-00001", "separator"],
        ),
        m(
            "absolute shard path",
            index_mutant(|idx, _| idx["weight_map"][NORM] = json!("/etc/passwd")),
            |e| matches!(e, CE::ShardPath { shard, .. } if shard == "/etc/passwd"),
            &["/etc/passwd"],
        ),
        m(
            "tensor listed in the index but absent from its shard",
            index_mutant(|idx, n| idx["weight_map"]["model.layers.0.extra.weight"] = json!(n[0])),
            |e| matches!(e, CE::IndexMismatch { tensor, .. } if tensor == "model.layers.0.extra.weight"),
            &["model.layers.0.extra.weight", "absent"],
        ),
        m(
            "tensor indexed to the other shard",
            index_mutant(|idx, n| {
                let cur = idx["weight_map"][NORM].as_str().expect("str").to_string();
                let other = if cur == n[0] { &n[1] } else { &n[0] };
                idx["weight_map"][NORM] = json!(other);
            }),
            |e| matches!(e, CE::IndexMismatch { tensor, .. } if tensor == NORM),
            &[NORM, "stored in"],
        ),
        m(
            "tensor present in a shard but not indexed",
            index_mutant(|idx, _| {
                idx["weight_map"].as_object_mut().expect("obj").remove(NORM);
            }),
            |e| matches!(e, CE::IndexMismatch { tensor, .. } if tensor == NORM),
            &[NORM, "not listed"],
        ),
        m(
            "tensor stored in two shards",
            |d: &Path| {
                let names = write_tiny_sharded(d, &Tiny::default(), 2);
                // Rewrite shard 2 with an extra copy of a shard-1 tensor.
                let all = Tiny::default().tensors();
                let mut part: Vec<RawTensor> = all.iter().skip(1).step_by(2).cloned().collect();
                let dup = all[0].clone();
                part.push(dup);
                write_with_crate(&d.join(&names[1]), &part);
            },
            |e| matches!(e, CE::TensorInTwoShards { tensor, .. } if tensor == "model.embed_tokens.weight"),
            &[
                "model.embed_tokens.weight",
                "model-00001-of-00002",
                "model-00002-of-00002",
            ],
        ),
        m(
            "tensor listed twice in weight_map",
            |d: &Path| {
                let names = write_tiny_sharded(d, &Tiny::default(), 2);
                let p = d.join("model.safetensors.index.json");
                let text = std::fs::read_to_string(&p).expect("read");
                let extra = format!(
                    "\"weight_map\":{{\"{NORM}\":\"{names_0}\",",
                    names_0 = names[0]
                );
                std::fs::write(&p, text.replacen("\"weight_map\":{", &extra, 1)).expect("write");
            },
            |e| matches!(e, CE::Index { .. }),
            &[NORM, "twice"],
        ),
        // ---- tensors vs config ----
        m(
            "two required tensors missing (both listed)",
            tensor_mutant(Tiny::default(), |t| {
                t.retain(|x| x.name != QKV && x.name != "model.layers.3.self_attn.k_norm.weight")
            }),
            |e| matches!(e, CE::MissingTensor { names, .. } if names.len() == 2),
            &[QKV, "model.layers.3.self_attn.k_norm.weight"],
        ),
        m(
            "lm_head missing although not tied",
            tensor_mutant(Tiny::default(), |t| {
                t.retain(|x| x.name != "lm_head.weight")
            }),
            |e| matches!(e, CE::MissingTensor { names, .. } if names == &["lm_head.weight"]),
            &["lm_head.weight"],
        ),
        m(
            "shape mismatch of in_proj_qkv",
            tensor_mutant(Tiny::default(), |t| {
                let x = t.iter_mut().find(|x| x.name == QKV).expect("qkv");
                *x = tensor(QKV, "BF16", &[96, H]);
            }),
            |e| {
                matches!(e, CE::ShapeMismatch { tensor, got, expected, .. }
                if tensor == QKV && got == &[96, H] && expected == &[2 * NK * DK + NV * DV, H])
            },
            &[
                QKV,
                "shape [96, 64]",
                "expected [128, 64]",
                "[2·nk·dk + nv·dv, H]",
            ],
        ),
        m(
            "FP8 norm",
            tensor_mutant(Tiny::default(), |t| retype(t, NORM, "F8_E4M3")),
            |e| matches!(e, CE::UnsupportedDtype { tensor, .. } if tensor == NORM),
            &[NORM, "F8_E4M3"],
        ),
        m(
            "FP8 A_log",
            tensor_mutant(Tiny::default(), |t| {
                retype(t, "model.layers.1.linear_attn.A_log", "F8_E4M3")
            }),
            |e| matches!(e, CE::UnsupportedDtype { tensor, .. } if tensor == "model.layers.1.linear_attn.A_log"),
            &["model.layers.1.linear_attn.A_log"],
        ),
        m(
            "two source names with one canonical name",
            tensor_mutant(Tiny::default(), |t| {
                let mut x = tensor("model.language_model.norm.weight", "BF16", &[H]);
                x.name = "model.language_model.norm.weight".into();
                t.push(x);
            }),
            |e| matches!(e, CE::DuplicateCanonicalName { canonical, .. } if canonical == NORM),
            &[NORM, "model.language_model.norm.weight"],
        ),
        m(
            "MoE layer mixing fused and per-expert layouts",
            tensor_mutant(moe(Ffn::MoeFused), |t| {
                t.push(tensor(
                    "model.layers.2.mlp.experts.0.gate_proj.weight",
                    "BF16",
                    &[IE, H],
                ))
            }),
            |e| matches!(e, CE::ExpertLayout { layer: 2, .. }),
            &[
                "layer 2",
                "model.layers.2.mlp.experts.0.gate_proj.weight",
                "fused",
            ],
        ),
        m(
            "MoE expert id out of range",
            tensor_mutant(moe(Ffn::MoePerExpert), |t| {
                rename(
                    t,
                    "model.layers.1.mlp.experts.7.up_proj.weight",
                    "model.layers.1.mlp.experts.8.up_proj.weight",
                )
            }),
            |e| matches!(e, CE::ExpertLayout { layer: 1, .. }),
            &["model.layers.1.mlp.experts.8.up_proj.weight", "8"],
        ),
        m(
            "MoE per-expert tensors missing (all listed)",
            tensor_mutant(moe(Ffn::MoePerExpert), |t| {
                t.retain(|x| {
                    !x.name.starts_with("model.layers.0.mlp.experts.5.")
                        && x.name != "model.layers.3.mlp.experts.2.down_proj.weight"
                })
            }),
            |e| matches!(e, CE::MissingTensor { names, .. } if names.len() == 4),
            &[
                "model.layers.0.mlp.experts.5.gate_proj.weight",
                "model.layers.0.mlp.experts.5.up_proj.weight",
                "model.layers.0.mlp.experts.5.down_proj.weight",
                "model.layers.3.mlp.experts.2.down_proj.weight",
            ],
        ),
        m(
            "MoE fused experts with wrong expert count",
            tensor_mutant(moe(Ffn::MoeFused), |t| {
                let n = "model.layers.0.mlp.experts.gate_up_proj";
                *t.iter_mut().find(|x| x.name == n).expect("fused") =
                    tensor(n, "BF16", &[E - 1, 2 * IE, H]);
            }),
            |e| matches!(e, CE::ShapeMismatch { .. }),
            &["model.layers.0.mlp.experts.gate_up_proj", "[E, 2·Ie, H]"],
        ),
        // ---- config ----
        m(
            "config: missing field",
            config_mutant(Tiny::default(), |c| {
                c.remove("hidden_size");
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "hidden_size"),
            &["config.json", "hidden_size", "missing"],
        ),
        m(
            "config: missing field inside text_config",
            |d: &Path| {
                let tiny = Tiny {
                    wrapper: true,
                    ..Tiny::default()
                };
                write_tiny(d, &tiny);
                let mut c = tiny.config();
                c["text_config"]
                    .as_object_mut()
                    .expect("obj")
                    .remove("head_dim");
                write_config(d, &c);
            },
            |e| matches!(e, CE::Config { field, .. } if field == "text_config.head_dim"),
            &["config.json", "text_config.head_dim"],
        ),
        m(
            "config: mistyped field",
            config_mutant(Tiny::default(), |c| {
                c.insert("num_attention_heads".into(), json!("4"));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "num_attention_heads"),
            &["num_attention_heads", "\"4\""],
        ),
        m(
            "config: nh % nkv != 0",
            config_mutant(Tiny::default(), |c| {
                c.insert("num_key_value_heads".into(), json!(3));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "num_key_value_heads"),
            &["num_key_value_heads", "4", "3"],
        ),
        m(
            "config: nv % nk != 0",
            config_mutant(Tiny::default(), |c| {
                c.insert("linear_num_key_heads".into(), json!(3));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "linear_num_key_heads"),
            &["linear_num_value_heads 4", "linear_num_key_heads 3"],
        ),
        m(
            "config: odd rotary dim",
            config_mutant(Tiny::default(), |c| {
                // 32 × 0.15625 = 5.
                c["rope_parameters"]["partial_rotary_factor"] = json!(0.15625);
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "partial_rotary_factor"),
            &["partial_rotary_factor", "= 5"],
        ),
        m(
            "config: zero size",
            config_mutant(Tiny::default(), |c| {
                c.insert("intermediate_size".into(), json!(0));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "intermediate_size"),
            &["intermediate_size", "0"],
        ),
        m(
            "config: layer_types length",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "layer_types".into(),
                    json!(["linear_attention", "full_attention"]),
                );
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "layer_types"),
            &["layer_types", "2 entries", "4"],
        ),
        m(
            "config: unknown layer type",
            config_mutant(Tiny::default(), |c| {
                c["layer_types"][1] = json!("sliding_attention");
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "layer_types"),
            &["layer_types", "entry 1", "sliding_attention"],
        ),
        m(
            "config: top-k > experts",
            config_mutant(moe(Ffn::MoeFused), |c| {
                c.insert("num_experts_per_tok".into(), json!(9));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "num_experts_per_tok"),
            &["num_experts_per_tok", "9", "8"],
        ),
        m(
            "config: absurd layer count",
            config_mutant(Tiny::default(), |c| {
                c.insert("num_hidden_layers".into(), json!(1_000_000_000u64));
                c.remove("layer_types");
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "num_hidden_layers"),
            &["num_hidden_layers", "1000000000"],
        ),
        m(
            "config: absurd vocab",
            config_mutant(Tiny::default(), |c| {
                c.insert("vocab_size".into(), json!(u64::MAX));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "vocab_size"),
            &["vocab_size", "18446744073709551615"],
        ),
        m(
            "config: negative rms_norm_eps",
            config_mutant(Tiny::default(), |c| {
                c.insert("rms_norm_eps".into(), json!(-1e-6));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "rms_norm_eps"),
            &["rms_norm_eps"],
        ),
        m(
            "config: MoE field missing",
            config_mutant(moe(Ffn::MoeFused), |c| {
                c.remove("moe_intermediate_size");
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "moe_intermediate_size"),
            &["moe_intermediate_size", "missing"],
        ),
        m(
            "config: not JSON",
            |d: &Path| {
                write_tiny(d, &Tiny::default());
                std::fs::write(d.join("config.json"), "{\"vocab_size\": 5,").expect("write");
            },
            |e| {
                matches!(
                    e,
                    CE::Json {
                        line: 1,
                        column: 17,
                        ..
                    }
                )
            },
            &["config.json", "JSON", "line 1, column 17"],
        ),
        m(
            "config: unknown quant method",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "quantization_config".into(),
                    json!({"quant_method": "bitsandbytes", "load_in_4bit": true}),
                );
            }),
            |e| matches!(e, CE::UnsupportedQuantization { .. }),
            &["config.json", "bitsandbytes"],
        ),
        m(
            "config: a new model type is refused by name",
            config_mutant(Tiny::default(), |c| {
                c.insert("model_type".into(), json!("qwen4_exp"));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "model_type"),
            &["config.json", "qwen4_exp", "not supported"],
        ),
        m(
            "config: a new architecture is refused by name",
            config_mutant(Tiny::default(), |c| {
                c.insert("architectures".into(), json!(["Qwen4ExpForCausalLM"]));
            }),
            |e| matches!(e, CE::Config { field, .. } if field == "architectures"),
            &["config.json", "Qwen4ExpForCausalLM", "not supported"],
        ),
        m(
            "config: 3-bit GPTQ",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "quantization_config".into(),
                    json!({"quant_method": "gptq", "bits": 3, "group_size": 128}),
                );
            }),
            |e| matches!(e, CE::UnsupportedQuantization { .. }),
            &["config.json", "bits", "3-bit"],
        ),
        m(
            "config: AWQ gemv",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "quantization_config".into(),
                    json!({"quant_method": "awq", "bits": 4, "version": "gemv"}),
                );
            }),
            |e| matches!(e, CE::UnsupportedQuantization { .. }),
            &["config.json", "version", "gemv"],
        ),
        m(
            "config: scaled RoPE",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "rope_parameters".into(),
                    json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e7}),
                );
            }),
            |e| matches!(e, CE::Config { field, .. } if field.ends_with("rope_type")),
            &["config.json", "yarn"],
        ),
        m(
            "config: int8 compressed-tensors",
            config_mutant(Tiny::default(), |c| {
                c.insert(
                    "quantization_config".into(),
                    json!({"quant_method": "compressed-tensors", "format": "int-quantized",
                           "config_groups": {"group_0": {"targets": ["Linear"],
                               "weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": true}}}}),
                );
            }),
            |e| matches!(e, CE::UnsupportedQuantization { .. }),
            &["config.json", "group_0", "int"],
        ),
    ];
    let mut strict = m(
        "unexpected tensor under strict",
        tensor_mutant(Tiny::default(), |t| {
            t.push(tensor("model.layers.0.mystery.weight", "BF16", &[3]))
        }),
        |e| matches!(e, CE::UnexpectedTensors { names, .. } if names == &["model.layers.0.mystery.weight"]),
        &["model.layers.0.mystery.weight", "strict"],
    );
    strict.strict = true;
    v.push(strict);
    v
}

#[test]
fn every_mutant_is_rejected_with_a_precise_error() {
    let mut failures = Vec::new();
    let all = mutants();
    for mt in &all {
        let dir = tempfile::tempdir().expect("tempdir");
        (mt.write)(dir.path());
        let res = Checkpoint::open_with(dir.path(), &OpenOptions { strict: mt.strict });
        match res {
            Ok(_) => failures.push(format!("{}: opened without error", mt.name)),
            Err(e) => {
                let msg = e.to_string();
                if !(mt.check)(&e) {
                    failures.push(format!(
                        "{mt_name}: wrong variant: {e:?}",
                        mt_name = mt.name
                    ));
                }
                for want in &mt.mentions {
                    if !msg.contains(want) {
                        failures.push(format!(
                            "{mt_name}: message does not mention `{want}`: {msg}",
                            mt_name = mt.name
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{failure_count} of {all_len} mutants failed:\n{failure_list}",
        failure_count = failures.len(),
        all_len = all.len(),
        failure_list = failures.join("\n")
    );
}

#[test]
fn unexpected_tensor_is_only_listed_when_not_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    tensor_mutant(Tiny::default(), |t| {
        t.push(tensor("model.layers.0.mystery.weight", "BF16", &[3]))
    })(dir.path());
    let ckpt = Checkpoint::open(dir.path()).expect("lenient open");
    assert_eq!(
        ckpt.unexpected(),
        &["model.layers.0.mystery.weight".to_string()]
    );
}
