//! Test support: writes tiny Qwen3.5 checkpoints (spec §1.3 geometry) into a
//! folder, either with the `safetensors` crate's serializer or with a raw writer
//! that can express any defect (duplicate names, bad offsets, odd alignment).
//!
//! Shapes here are written out from the spec's §3 table by hand, independently
//! of the crate's `expected` module. Copy this file freely into other crates' tests.
#![allow(dead_code)]

use std::borrow::Cow;
use std::path::Path;

use serde_json::{json, Value};

/// Tiny geometry (spec §1.3): H=64, L=4, nh=4, nkv=2, hd=32, nk=2, dk=16, nv=4,
/// dv=16, K=4, I=128 (MoE: E=8, k=2, Ie=32, Is=32), vocab 512.
pub const H: usize = 64;
pub const L: usize = 4;
pub const NH: usize = 4;
pub const NKV: usize = 2;
pub const HD: usize = 32;
pub const NK: usize = 2;
pub const DK: usize = 16;
pub const NV: usize = 4;
pub const DV: usize = 16;
pub const K: usize = 4;
pub const I: usize = 128;
pub const E: usize = 8;
pub const TOPK: usize = 2;
pub const IE: usize = 32;
pub const IS: usize = 32;
pub const V: usize = 512;

/// Which variant of the tiny model to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ffn {
    Dense,
    /// BF16 release layout: `mlp.experts.gate_up_proj` / `down_proj`.
    MoeFused,
    /// FP8 release layout: `mlp.experts.{e}.{gate,up,down}_proj.weight` (+ scales).
    MoePerExpert,
}

#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    pub ffn: Ffn,
    /// `model.language_model.` prefix + `text_config` wrapper + visual/mtp tensors.
    pub wrapper: bool,
    pub tie: bool,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            ffn: Ffn::Dense,
            wrapper: false,
            tie: false,
        }
    }
}

/// One tensor to write: name, safetensors dtype name, shape, raw LE bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn dtype_size(dtype: &str) -> usize {
    match dtype {
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F64" | "I64" | "U64" => 8,
        _ => 1,
    }
}

/// The value stored at element `i` of every test tensor: small integers and
/// halves, exact in BF16/F16/F32.
pub fn value_at(i: usize) -> f32 {
    ((i % 13) as f32 - 6.0) * 0.5
}

/// Encodes `value_at(0..n)` in `dtype` (FP8 E4M3: byte pattern 0x38 = 1.0).
pub fn encode(dtype: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * dtype_size(dtype));
    for i in 0..n {
        let x = value_at(i);
        match dtype {
            "F32" => out.extend_from_slice(&x.to_le_bytes()),
            // BF16 = high half of the f32 bits (exact for these values).
            "BF16" => out.extend_from_slice(&((x.to_bits() >> 16) as u16).to_le_bytes()),
            "F16" => out.extend_from_slice(&half::f16::from_f32(x).to_bits().to_le_bytes()),
            "F8_E4M3" | "F8_E5M2" => out.push(0x38),
            other => out.extend(std::iter::repeat_n(0u8, dtype_size(other))),
        }
    }
    out
}

pub fn tensor(name: impl Into<String>, dtype: &str, shape: &[usize]) -> RawTensor {
    let n: usize = shape.iter().product();
    RawTensor {
        name: name.into(),
        dtype: dtype.to_string(),
        shape: shape.to_vec(),
        data: encode(dtype, n),
    }
}

impl Tiny {
    pub fn moe(&self) -> bool {
        self.ffn != Ffn::Dense
    }

    /// Prefix of text-model tensors as the file spells them.
    pub fn prefix(&self) -> &'static str {
        if self.wrapper {
            "model.language_model."
        } else {
            "model."
        }
    }

    /// The text fields of `config.json`.
    pub fn text_config(&self) -> Value {
        let mut tc = json!({
            "model_type": if self.moe() { "qwen3_5_moe_text" } else { "qwen3_5_text" },
            "vocab_size": V,
            "hidden_size": H,
            "num_hidden_layers": L,
            "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
            "num_attention_heads": NH,
            "num_key_value_heads": NKV,
            "head_dim": HD,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "linear_conv_kernel_dim": K,
            "linear_key_head_dim": DK,
            "linear_value_head_dim": DV,
            "linear_num_key_heads": NK,
            "linear_num_value_heads": NV,
            "attn_output_gate": true,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                "mrope_section": [11, 11, 10], "mrope_interleaved": true},
            "eos_token_id": 248044,
        });
        let m = tc.as_object_mut().expect("object literal");
        if self.moe() {
            m.insert("num_experts".into(), json!(E));
            m.insert("num_experts_per_tok".into(), json!(TOPK));
            m.insert("moe_intermediate_size".into(), json!(IE));
            m.insert("shared_expert_intermediate_size".into(), json!(IS));
        } else {
            m.insert("intermediate_size".into(), json!(I));
        }
        tc
    }

    pub fn config(&self) -> Value {
        let tc = self.text_config();
        if self.wrapper {
            json!({
                "architectures": [if self.moe() { "Qwen3_5MoeForConditionalGeneration" } else { "Qwen3_5ForConditionalGeneration" }],
                "model_type": if self.moe() { "qwen3_5_moe" } else { "qwen3_5" },
                "text_config": tc,
                "vision_config": {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": H},
                "tie_word_embeddings": self.tie,
                "image_token_id": 248056,
            })
        } else {
            let mut top = tc;
            let m = top.as_object_mut().expect("object literal");
            m.insert(
                "architectures".into(),
                json!([if self.moe() {
                    "Qwen3_5MoeForCausalLM"
                } else {
                    "Qwen3_5ForCausalLM"
                }]),
            );
            m.insert("tie_word_embeddings".into(), json!(self.tie));
            top
        }
    }

    /// Every tensor of the tiny model, spelled as in the file (spec §3 shapes).
    pub fn tensors(&self) -> Vec<RawTensor> {
        let p = self.prefix();
        let mut v = vec![
            tensor(format!("{p}embed_tokens.weight"), "BF16", &[V, H]),
            tensor(format!("{p}norm.weight"), "BF16", &[H]),
        ];
        if !self.tie {
            // Top-level in both layouts (spec §3).
            v.push(tensor("lm_head.weight", "BF16", &[V, H]));
        }
        for i in 0..L {
            let l = format!("{p}layers.{i}.");
            v.push(tensor(format!("{l}input_layernorm.weight"), "BF16", &[H]));
            v.push(tensor(
                format!("{l}post_attention_layernorm.weight"),
                "BF16",
                &[H],
            ));
            if i % 4 == 3 {
                let a = format!("{l}self_attn.");
                v.push(tensor(
                    format!("{a}q_proj.weight"),
                    "BF16",
                    &[NH * HD * 2, H],
                ));
                v.push(tensor(format!("{a}k_proj.weight"), "BF16", &[NKV * HD, H]));
                v.push(tensor(format!("{a}v_proj.weight"), "BF16", &[NKV * HD, H]));
                v.push(tensor(format!("{a}o_proj.weight"), "BF16", &[H, NH * HD]));
                v.push(tensor(format!("{a}q_norm.weight"), "BF16", &[HD]));
                v.push(tensor(format!("{a}k_norm.weight"), "BF16", &[HD]));
            } else {
                let a = format!("{l}linear_attn.");
                let conv = NK * DK + NK * DK + NV * DV;
                v.push(tensor(format!("{a}in_proj_qkv.weight"), "BF16", &[conv, H]));
                v.push(tensor(
                    format!("{a}in_proj_z.weight"),
                    "BF16",
                    &[NV * DV, H],
                ));
                v.push(tensor(format!("{a}in_proj_b.weight"), "BF16", &[NV, H]));
                v.push(tensor(format!("{a}in_proj_a.weight"), "BF16", &[NV, H]));
                v.push(tensor(format!("{a}conv1d.weight"), "BF16", &[conv, 1, K]));
                v.push(tensor(format!("{a}A_log"), "F32", &[NV]));
                v.push(tensor(format!("{a}dt_bias"), "BF16", &[NV]));
                v.push(tensor(format!("{a}norm.weight"), "F32", &[DV]));
                v.push(tensor(format!("{a}out_proj.weight"), "BF16", &[H, NV * DV]));
            }
            let m = format!("{l}mlp.");
            match self.ffn {
                Ffn::Dense => {
                    v.push(tensor(format!("{m}gate_proj.weight"), "BF16", &[I, H]));
                    v.push(tensor(format!("{m}up_proj.weight"), "BF16", &[I, H]));
                    v.push(tensor(format!("{m}down_proj.weight"), "BF16", &[H, I]));
                }
                Ffn::MoeFused | Ffn::MoePerExpert => {
                    v.push(tensor(format!("{m}gate.weight"), "BF16", &[E, H]));
                    v.push(tensor(
                        format!("{m}shared_expert.gate_proj.weight"),
                        "BF16",
                        &[IS, H],
                    ));
                    v.push(tensor(
                        format!("{m}shared_expert.up_proj.weight"),
                        "BF16",
                        &[IS, H],
                    ));
                    v.push(tensor(
                        format!("{m}shared_expert.down_proj.weight"),
                        "BF16",
                        &[H, IS],
                    ));
                    v.push(tensor(
                        format!("{m}shared_expert_gate.weight"),
                        "BF16",
                        &[1, H],
                    ));
                    if self.ffn == Ffn::MoeFused {
                        v.push(tensor(
                            format!("{m}experts.gate_up_proj"),
                            "BF16",
                            &[E, 2 * IE, H],
                        ));
                        v.push(tensor(format!("{m}experts.down_proj"), "BF16", &[E, H, IE]));
                    } else {
                        for e in 0..E {
                            let x = format!("{m}experts.{e}.");
                            for (proj, shape) in [
                                ("gate_proj", [IE, H]),
                                ("up_proj", [IE, H]),
                                ("down_proj", [H, IE]),
                            ] {
                                v.push(tensor(format!("{x}{proj}.weight"), "F8_E4M3", &shape));
                                // One block-128 scale per weight: [ceil(N/128), ceil(K/128)] = [1, 1].
                                v.push(tensor(
                                    format!("{x}{proj}.weight_scale_inv"),
                                    "F32",
                                    &[1, 1],
                                ));
                            }
                        }
                    }
                }
            }
        }
        if self.wrapper {
            v.push(tensor(
                "model.visual.blocks.0.attn.qkv.weight",
                "BF16",
                &[96, 32],
            ));
            v.push(tensor("model.visual.merger.mlp.0.weight", "BF16", &[H, 32]));
            v.push(tensor("mtp.fc.weight", "BF16", &[H, 2 * H]));
            v.push(tensor("mtp.norm.weight", "BF16", &[H]));
        }
        v
    }
}

/// A safetensors file layout with explicit header entries, so tests can write
/// any defect. `header_pad` spaces are appended to the header JSON (0 = none,
/// giving arbitrary, possibly unaligned, data offsets).
#[derive(Debug, Clone)]
pub struct RawFile {
    /// `(name, dtype, shape, [begin, end])` in header order.
    pub entries: Vec<(String, String, Vec<u64>, [u64; 2])>,
    pub data: Vec<u8>,
    pub header_pad: usize,
    /// Overrides the 8-byte header length when set.
    pub header_len_override: Option<u64>,
    /// Replaces the header text entirely when set.
    pub header_override: Option<Vec<u8>>,
}

impl RawFile {
    /// Data laid out contiguously in the given order.
    pub fn from_tensors(tensors: &[RawTensor]) -> Self {
        let mut data = Vec::new();
        let mut entries = Vec::new();
        for t in tensors {
            let begin = data.len() as u64;
            data.extend_from_slice(&t.data);
            entries.push((
                t.name.clone(),
                t.dtype.clone(),
                t.shape.iter().map(|&d| d as u64).collect(),
                [begin, data.len() as u64],
            ));
        }
        RawFile {
            entries,
            data,
            header_pad: 0,
            header_len_override: None,
            header_override: None,
        }
    }

    pub fn entry_mut(&mut self, name: &str) -> &mut (String, String, Vec<u64>, [u64; 2]) {
        self.entries
            .iter_mut()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("test bug: no entry {name}"))
    }

    pub fn header_text(&self) -> Vec<u8> {
        if let Some(h) = &self.header_override {
            return h.clone();
        }
        let mut s = String::from("{");
        for (i, (name, dtype, shape, off)) in self.entries.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{string}:{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{off_0},{off_1}]}}",
                string = serde_json::to_string(name).expect("string"),
                off_0 = off[0],
                off_1 = off[1]
            ));
        }
        s.push('}');
        s.push_str(&" ".repeat(self.header_pad));
        s.into_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let h = self.header_text();
        let n = self.header_len_override.unwrap_or(h.len() as u64);
        let mut out = n.to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.data);
        out
    }
}

struct ViewOf<'a>(&'a RawTensor);

impl safetensors::View for ViewOf<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self.0.dtype.as_str() {
            "F32" => safetensors::Dtype::F32,
            "F16" => safetensors::Dtype::F16,
            "BF16" => safetensors::Dtype::BF16,
            "F8_E4M3" => safetensors::Dtype::F8_E4M3,
            "F8_E5M2" => safetensors::Dtype::F8_E5M2,
            "I64" => safetensors::Dtype::I64,
            other => panic!("test bug: dtype {other}"),
        }
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

/// Writes `tensors` with the `safetensors` crate's serializer.
pub fn write_with_crate(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(String, ViewOf<'_>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), ViewOf(t)))
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("serialize test tensors");
}

pub fn write_config(dir: &Path, config: &Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).expect("json"),
    )
    .expect("write config");
}

/// Writes a complete single-file checkpoint (crate serializer).
pub fn write_tiny(dir: &Path, tiny: &Tiny) {
    write_config(dir, &tiny.config());
    write_with_crate(&dir.join("model.safetensors"), &tiny.tensors());
}

/// Splits the tensors round-robin into `n` shards named HF-style and writes
/// the index; returns the shard file names.
pub fn write_tiny_sharded(dir: &Path, tiny: &Tiny, n: usize) -> Vec<String> {
    write_config(dir, &tiny.config());
    let tensors = tiny.tensors();
    let names: Vec<String> = (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect();
    let mut map = serde_json::Map::new();
    for (s, name) in names.iter().enumerate() {
        let part: Vec<RawTensor> = tensors.iter().skip(s).step_by(n).cloned().collect();
        for t in &part {
            map.insert(t.name.clone(), json!(name));
        }
        write_with_crate(&dir.join(name), &part);
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())
        .expect("write index");
    names
}
