//! CPU-side load rate of a GPTQ-Int4 checkpoint of the 35B-A3B geometry
//! (hidden 2048, 256 experts of 512, group 128, Qwen's official `dynamic`
//! rules: only the routed experts are 4-bit), streamed the way the GPU
//! loader streams it (weights borrowed, 4-bit experts repacked) with 1 and
//! with 2 repack threads (more with `QWGPU_BENCH_THREADS=1,2,4`). The
//! checkpoint is made in memory (random words, the format's own shapes), so
//! the rate is the repack's, without the file reads and the GPU copies of a
//! real load (`qwgpu bench` measures those).
//!
//! ```text
//! cargo test --release -p qwgpu-loader --test int4_load_bench -- --ignored --nocapture
//! ```
//!
//! `QWGPU_BENCH_LAYERS` (default 2) sets the layers (the first linear
//! attention, the last full attention, as the real model alternates them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use qwgpu_checkpoint::expected::{expected_tensors, per_expert_tensors};
use qwgpu_checkpoint::{Dtype, ModelConfig};
use qwgpu_loader::{stream_from_source_with, PackOptions, Part, SourceTensor};

const GROUP: usize = 128;

/// The `moe-gptq-int4` fixture's config with the 35B-A3B text geometry.
fn config(layers: usize) -> ModelConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/moe-gptq-int4");
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).expect("fixture config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let t = &mut v["text_config"];
    for (k, x) in [
        ("hidden_size", 2048),
        ("head_dim", 256),
        ("num_attention_heads", 16),
        ("num_key_value_heads", 2),
        ("linear_key_head_dim", 128),
        ("linear_value_head_dim", 128),
        ("linear_num_key_heads", 16),
        ("linear_num_value_heads", 32),
        ("moe_intermediate_size", 512),
        ("shared_expert_intermediate_size", 512),
        ("num_experts", 256),
        ("num_experts_per_tok", 8),
        ("num_hidden_layers", layers),
        // The embedding and head are BF16 and borrowed: not what is measured.
        ("vocab_size", 1024),
    ] {
        t[k] = serde_json::json!(x);
    }
    t["layer_types"] = serde_json::json!((0..layers)
        .map(|i| if i % 4 == 3 || i + 1 == layers {
            "full_attention"
        } else {
            "linear_attention"
        })
        .collect::<Vec<_>>());
    v["quantization_config"]["group_size"] = serde_json::json!(GROUP);
    ModelConfig::from_json_str(&v.to_string(), &path).expect("edited config parses")
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn tensor(name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> SourceTensor<'static> {
    SourceTensor::new(name, dtype, shape, bytes).expect("bench tensor")
}

/// Every tensor of the model: BF16 (zeros) but the routed experts, which are
/// GPTQ v1 (`qweight` random, `qzeros` the symmetric 7, F16 scales 2^-8,
/// `g_idx` in order). Returns the source and the 4-bit tensors' bytes.
fn checkpoint(cfg: &ModelConfig) -> (BTreeMap<String, SourceTensor<'static>>, usize) {
    let c = &cfg.text;
    let mut rng = Rng(0x0035_ba3b_1234_5678);
    let mut src = BTreeMap::new();
    for t in expected_tensors(c, cfg.tie_word_embeddings) {
        let n: usize = t.shape.iter().product();
        let x = tensor(t.name.clone(), Dtype::BF16, t.shape, vec![0; 2 * n]);
        src.insert(t.name, x);
    }
    let mut int4 = 0;
    let scale = half::f16::from_f32(1.0 / 256.0).to_le_bytes();
    for layer in 0..c.num_hidden_layers {
        for t in per_expert_tensors(c, layer) {
            let stem = t.name.strip_suffix(".weight").expect("a weight");
            let &[n, k] = t.shape.as_slice() else {
                panic!("2-D expert")
            };
            let g = k / GROUP;
            let parts = [
                (
                    "qweight",
                    Dtype::I32,
                    vec![k / 8, n],
                    rng.bytes(k / 8 * n * 4),
                ),
                (
                    "qzeros",
                    Dtype::I32,
                    vec![g, n / 8],
                    [0x77; 4].repeat(g * n / 8),
                ),
                ("scales", Dtype::F16, vec![g, n], scale.repeat(g * n)),
                (
                    "g_idx",
                    Dtype::I32,
                    vec![k],
                    (0..k)
                        .flat_map(|i| ((i / GROUP) as i32).to_le_bytes())
                        .collect(),
                ),
            ];
            for (suffix, dtype, shape, bytes) in parts {
                let name = format!("{stem}.{suffix}");
                int4 += bytes.len();
                src.insert(name.clone(), tensor(name, dtype, shape, bytes));
            }
        }
    }
    (src, int4)
}

/// One streamed load: seconds, and a checksum of the repacked words.
// The visitor's error type is the loader's (large) `LoadError`, set by its API.
#[allow(clippy::result_large_err)]
fn load(
    src: &BTreeMap<String, SourceTensor<'static>>,
    cfg: &ModelConfig,
    threads: usize,
) -> (f64, u64) {
    let opts = PackOptions {
        borrow_sources: true,
        threads,
        ..PackOptions::default()
    };
    let mut sum = 0u64;
    let t = Instant::now();
    // As the GPU loader does: a part's buffers, once dropped, serve the next.
    let _recycling = qwgpu_loader::Recycling::start();
    stream_from_source_with(src, cfg, None, &opts, &mut |part| {
        if let Part::Layer { layer, .. } = part {
            if let qwgpu_loader::Ffn::Moe(m) = &layer.ffn {
                for w in [&m.experts_gate_up, &m.experts_down] {
                    let q = w.int4().expect("4-bit experts");
                    sum =
                        sum.wrapping_add(q.words.iter().step_by(4099).map(|&x| u64::from(x)).sum());
                }
            }
        }
        Ok(())
    })
    .expect("loads");
    (t.elapsed().as_secs_f64(), sum)
}

#[test]
#[ignore = "a benchmark: run it with --release --ignored --nocapture"]
fn gptq_35b_a3b_repack_rate() {
    let layers: usize = std::env::var("QWGPU_BENCH_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let threads: Vec<usize> = std::env::var("QWGPU_BENCH_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let cfg = config(layers);
    let (src, int4) = checkpoint(&cfg);
    let gb = int4 as f64 / 1e9;
    // The host's copy rate over the same bytes, for scale.
    let words: Vec<&[u8]> = src
        .values()
        .filter(|t| t.dtype == Dtype::I32 && t.name.ends_with(".qweight"))
        .map(|t| t.bytes.as_ref())
        .collect();
    let mut copy = vec![0u8; words.iter().map(|w| w.len()).max().unwrap_or(0)];
    let t = Instant::now();
    for w in &words {
        copy[..w.len()].copy_from_slice(w);
    }
    let copy_s = t.elapsed().as_secs_f64();
    let qweight: usize = words.iter().map(|w| w.len()).sum();
    let memcpy_gbs = qweight as f64 / copy_s / 1e9;
    println!(
        "GPTQ 35B-A3B geometry, {layers} layers: {gb:.3} GB of 4-bit tensors; memcpy (1 thread, \
         hot) {memcpy_gbs:.2} GB/s"
    );
    let mut sums = Vec::new();
    for &n in &threads {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let (s, sum) = load(&src, &cfg, n);
            best = best.min(s);
            sums.push(sum);
        }
        let gbs = gb / best;
        println!("repack threads {n}: best of 3 {best:.3} s, {gbs:.2} GB/s of 4-bit tensors");
    }
    assert!(
        sums.windows(2).all(|p| p[0] == p[1]),
        "the repacked words differ: {sums:?}"
    );
}
