//! Loading the way HF does where the files allow it, and saying exactly what
//! is wrong where they do not: mixed unquantized dtypes in one fused weight
//! are widened, FP8 NaN encodings are refused under strict loading, a missing
//! `quantization_config` is named, and errors name the file's own tensor names.
#![allow(clippy::result_large_err)]

mod common;

use std::path::Path;

use common::*;
use qwgpu_checkpoint::{Checkpoint, Dtype, OpenOptions};
use qwgpu_loader::{
    dequantize, pack, pack_with, LoadError, PackOptions, QuantPolicy, SourceTensor, SourceWeight,
};

const H: usize = 4;

fn values(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - 3.0) * k).collect()
}

/// `q_proj` F16 beside `k_proj` BF16 (HF casts both on load): packed as F32,
/// every value exact.
#[test]
fn mixed_unquantized_dtypes_are_widened_to_f32() {
    let (q, k) = (values(2 * H, 0.5), values(3 * H, 0.25));
    let sources = [
        SourceWeight::new(
            float_tensor("q_proj.weight", Dtype::F16, &[2, H], &q),
            &["q"],
        ),
        SourceWeight::new(
            float_tensor("k_proj.weight", Dtype::BF16, &[3, H], &k),
            &["k"],
        ),
    ];
    let packed = pack(
        &spec("qk", &[("q", 2), ("k", 3)], H),
        &sources,
        &QuantPolicy::unquantized(),
    )
    .expect("mixed dtypes pack");
    assert_eq!(packed.dtype, Dtype::F32);
    assert_eq!(
        dequantize(&packed).expect("dequantize"),
        [q, k].concat(),
        "widening is exact"
    );
}

fn fp8_weight(bytes: Vec<u8>) -> SourceWeight<'static> {
    SourceWeight::new(tensor("w.weight", Dtype::F8E4M3, &[2, H], bytes), &["w"])
        .with_weight_scale(SourceTensor::from_f32("w.weight_scale", vec![], &[0.5]).expect("scale"))
}

/// NaN encodings in FP8 weights: refused when asked (strict), data otherwise.
#[test]
fn fp8_nan_encodings_are_refused_under_strict() {
    let mut bytes = vec![0x38u8; 2 * H];
    bytes[5] = 0xFF;
    let src = [fp8_weight(bytes)];
    let spec = spec("w", &[("w", 2)], H);
    let policy = QuantPolicy::unquantized();
    pack(&spec, &src, &policy).expect("lenient: NaN is data");
    let strict = PackOptions {
        check_fp8_values: true,
        ..PackOptions::default()
    };
    let e = pack_with(&spec, &src, &policy, &strict).expect_err("strict");
    assert!(
        matches!(
            e,
            LoadError::NonFiniteWeight {
                index: 5,
                byte: 0xFF,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("w.weight"), "{e}");
}

#[test]
fn fp8_weight_without_scale_or_quantization_config_says_so() {
    let src = [SourceWeight::new(
        tensor("w.weight", Dtype::F8E4M3, &[2, H], vec![0x38; 2 * H]),
        &["w"],
    )];
    let e = pack(
        &spec("w", &[("w", 2)], H),
        &src,
        &QuantPolicy::unquantized(),
    )
    .expect_err("no scale");
    assert!(e.to_string().contains("no `quantization_config`"), "{e}");
}

/// Layout-only packing copies nothing but still checks everything it can.
#[test]
fn layout_only_packing_reads_no_weight_data() {
    let src = [fp8_weight(vec![0x38; 2 * H])];
    let opts = PackOptions {
        layout_only: true,
        ..PackOptions::default()
    };
    let packed = pack_with(
        &spec("w", &[("w", 2)], H),
        &src,
        &QuantPolicy::unquantized(),
        &opts,
    )
    .expect("layout");
    assert!(packed.data.is_empty());
    assert_eq!(
        (packed.rows, packed.cols, packed.dtype),
        (2, H, Dtype::F8E4M3)
    );
}

/// `w` with its weight's bytes borrowed, as a checkpoint's mapped bytes are
/// (only those can be named instead of packed).
fn in_place<'a>(w: &'a SourceWeight<'_>) -> SourceWeight<'a> {
    let mut v = w.clone();
    v.weight = SourceTensor::new(
        w.weight.name.clone(),
        w.weight.dtype,
        w.weight.shape.clone(),
        &w.weight.bytes[..],
    )
    .expect("view");
    v
}

/// `borrow_sources`: a weight whose sources are stored in its dtype comes
/// back unpacked, naming those tensors in row order (their bytes, one after
/// another, are the packed rows); a weight that widens a source is packed as
/// always; scales either way.
#[test]
fn sources_are_left_in_place_when_asked() {
    let opts = PackOptions {
        borrow_sources: true,
        ..PackOptions::default()
    };
    let bytes: Vec<u8> = (0..2 * H as u8).map(|i| 0x30 + i).collect();
    let one = pack_with(
        &spec("w", &[("w", 2)], H),
        &[in_place(&fp8_weight(bytes.clone()))],
        &QuantPolicy::unquantized(),
        &opts,
    )
    .expect("single source");
    assert!(one.data.is_empty());
    assert_eq!(one.borrowed_sources(), Some(vec!["w.weight"]));
    assert_eq!((one.rows, one.cols, one.dtype), (2, H, Dtype::F8E4M3));
    let packed = pack(
        &spec("w", &[("w", 2)], H),
        &[fp8_weight(bytes.clone())],
        &QuantPolicy::unquantized(),
    )
    .expect("packed");
    assert_eq!(packed.data, bytes, "the source's bytes are the packed rows");
    assert_eq!(packed.borrowed_sources(), None);
    assert_eq!(one.scale, packed.scale);

    let (q, k) = (values(2 * H, 0.5), values(3 * H, 0.25));
    let two = |kd: Dtype| {
        [
            SourceWeight::new(
                float_tensor("q_proj.weight", Dtype::BF16, &[2, H], &q),
                &["q"],
            ),
            SourceWeight::new(float_tensor("k_proj.weight", kd, &[3, H], &k), &["k"]),
        ]
    };
    let qk = spec("qk", &[("q", 2), ("k", 3)], H);
    let policy = QuantPolicy::unquantized();
    // Both BF16: left in place, k after q (listed in the other order).
    let mut sources = two(Dtype::BF16);
    sources.reverse();
    let views: Vec<SourceWeight<'_>> = sources.iter().map(in_place).collect();
    let fused = pack_with(&qk, &views, &policy, &opts).expect("fused");
    // Bytes held by the loader itself (not the checkpoint's) are never borrowed.
    let owned = pack_with(&qk, &sources, &policy, &opts).expect("owned");
    assert_eq!(owned.borrowed_sources(), None);
    assert_eq!(
        fused.borrowed_sources(),
        Some(vec!["q_proj.weight", "k_proj.weight"])
    );
    let whole = pack(&qk, &sources, &policy).expect("packed");
    let concat: Vec<u8> = sources[1]
        .weight
        .bytes
        .iter()
        .chain(sources[0].weight.bytes.iter())
        .copied()
        .collect();
    assert_eq!(whole.data, concat, "packed rows = the sources in row order");
    // F16 beside BF16 widens to F32: packed.
    let widened = pack_with(&qk, &two(Dtype::F16), &policy, &opts).expect("widened");
    assert_eq!(widened.borrowed_sources(), None);
    assert_eq!(dequantize(&widened).expect("dequantize"), [q, k].concat());
}

/// Writes a safetensors file by hand from `(name, dtype, shape, bytes)`.
fn write_safetensors(path: &Path, tensors: &[(String, String, Vec<usize>, Vec<u8>)]) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{data_len}]}}",
            data_len = data.len()
        ));
    }
    let text = format!("{{{}}}", entries.join(","));
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).expect("write safetensors");
}

/// A scratch folder removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "qwgpu-loader-{tag}-{std_process_id}",
            std_process_id = std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loader error names the tensor as the file spells it and the shard file.
#[test]
fn errors_name_the_files_own_tensor_and_shard() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/moe-bf16-wrapper");
    let src = Checkpoint::open(&fixture).expect("fixture");
    let mut tensors: Vec<(String, String, Vec<usize>, Vec<u8>)> = src
        .stored_tensors()
        .into_iter()
        .map(|(_, t)| {
            let view = src.get(&qwgpu_checkpoint::canonical_name(&t.name).unwrap_or_default());
            let bytes = match view {
                Some(v) => v.bytes.to_vec(),
                None => vec![0; t.end - t.start],
            };
            (t.name.clone(), t.dtype_name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let weight = "model.language_model.layers.0.mlp.shared_expert.gate_proj.weight";
    tensors.push((
        "model.language_model.layers.0.mlp.shared_expert.gate_proj.weight_scale".into(),
        "F32".into(),
        vec![],
        1f32.to_le_bytes().to_vec(),
    ));
    let dir = TempDir::new("names");
    std::fs::copy(fixture.join("config.json"), dir.path().join("config.json")).expect("copy");
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    let ckpt = Checkpoint::open_with(dir.path(), &OpenOptions { strict: true }).expect("opens");
    let e = qwgpu_loader::load_model(&ckpt).expect_err("scale on a BF16 weight");
    assert!(
        matches!(e.root(), LoadError::ScaleOnUnquantized { .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("`{weight}` in ")), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

/// Without a quantization config, a small weight's one-block grid `[1, 1]`
/// reads as a per-tensor scale; beside block-scaled sources it is that one
/// block's scale, not a mix of schemes.
#[test]
fn one_block_weight_joins_block_scaled_neighbours() {
    let (q_rows, k_rows) = (256usize, 64usize);
    let q = SourceWeight::new(
        tensor(
            "q.weight",
            Dtype::F8E4M3,
            &[q_rows, H],
            vec![0x38; q_rows * H],
        ),
        &["q"],
    )
    .with_weight_scale(
        SourceTensor::from_f32("q.weight_scale_inv", vec![2, 1], &[0.5, 2.0]).expect("q scale"),
    );
    let k = SourceWeight::new(
        tensor(
            "k.weight",
            Dtype::F8E4M3,
            &[k_rows, H],
            vec![0x40; k_rows * H],
        ),
        &["k"],
    )
    .with_weight_scale(
        SourceTensor::from_f32("k.weight_scale_inv", vec![1, 1], &[0.25]).expect("k scale"),
    );
    let packed = pack(
        &spec("qk", &[("q", q_rows), ("k", k_rows)], H),
        &[q, k],
        &QuantPolicy::unquantized(),
    )
    .expect("one scheme");
    assert_eq!(packed.scale.describe(), "block 128x128 (2 grids)");
    let w = dequantize(&packed).expect("dequantize");
    assert_eq!(w[0], 0.5);
    assert_eq!(w[128 * H], 2.0);
    assert_eq!(w[q_rows * H], 0.5, "k: 2.0 × 0.25");
}

/// Resident file-backed memory of this process, from `/proc/self/status`.
#[cfg(target_os = "linux")]
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssFile")
}

/// `plan_model` touches no weight byte: on a checkpoint whose 512 MiB
/// embedding is a hole in a sparse file, the process's resident file pages
/// barely move (reading the table would map all 512 MiB in), and its layout
/// is still fully worked out.
#[cfg(target_os = "linux")]
#[test]
fn plan_model_reads_no_weight_data() {
    const VOCAB: usize = 1 << 23;
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-bf16-text");
    let bytes = std::fs::read(fixture.join("model.safetensors")).expect("fixture");
    let header = qwgpu_checkpoint::parse_header(&bytes, &fixture).expect("header");
    let mut tensors: Vec<(String, String, Vec<usize>, Vec<u8>)> = header
        .tensors
        .iter()
        .filter(|t| t.name != "model.embed_tokens.weight")
        .map(|t| {
            (
                t.name.clone(),
                t.dtype_name.clone(),
                t.shape.clone(),
                bytes[t.start..t.end].to_vec(),
            )
        })
        .collect();
    let dir = TempDir::new("sparse");
    let path = dir.path().join("model.safetensors");
    // Written with a 2-byte stand-in, then the header is patched to the huge
    // shape and the file extended with a hole.
    tensors.push((
        "model.embed_tokens.weight".into(),
        "BF16".into(),
        vec![1, 1],
        vec![0, 0],
    ));
    write_safetensors(&path, &tensors);
    let written = std::fs::read(&path).expect("read back");
    let header_len = u64::from_le_bytes(written[..8].try_into().expect("8 bytes")) as usize;
    let text = std::str::from_utf8(&written[8..8 + header_len]).expect("utf-8");
    let data_len = written.len() - 8 - header_len;
    let start = data_len - 2;
    let end = start + VOCAB * 32 * 2;
    let patched = text.replace(
        &format!("\"shape\":[1, 1],\"data_offsets\":[{start},{data_len}]"),
        &format!("\"shape\":[{VOCAB}, 32],\"data_offsets\":[{start},{end}]"),
    );
    assert_ne!(patched, text, "header patched");
    let mut out = (patched.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(patched.as_bytes());
    out.extend_from_slice(&written[8 + header_len..]);
    std::fs::write(&path, &out).expect("write");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len((8 + patched.len() + end) as u64)
        .expect("sparse");
    let config = std::fs::read_to_string(fixture.join("config.json")).expect("config");
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"vocab_size\": 512", &format!("\"vocab_size\": {VOCAB}")),
    )
    .expect("config");

    let before = rss_file_kib();
    let ckpt = Checkpoint::open(dir.path()).expect("opens");
    let plan = qwgpu_loader::plan_model(&ckpt).expect("plan");
    let grown = rss_file_kib().saturating_sub(before);
    assert_eq!(
        (plan.embed_tokens.rows, plan.embed_tokens.cols),
        (VOCAB, 32)
    );
    assert!(plan.embed_tokens.data.is_empty());
    assert!(grown < 64 * 1024, "resident file pages grew by {grown} KiB");
}
