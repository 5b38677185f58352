//! Reads a checkpoint's header and quantization scheme without decoding any
//! tensor: the config, the typed `quantization_config`, and each stored
//! tensor's dtype and shape from the validated safetensors header.
//!
//! `cargo run -p qwgpu-checkpoint --example inspect [-- <model folder>]`
//! (default: the committed FP8 block-scaled fixture, `tests/fixtures/dense-fp8-block`).

use std::path::PathBuf;

use qwgpu_checkpoint::{parse_header, Checkpoint, QuantizationConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense-fp8-block")
        });
    // Opening validates config.json and every header, and checks each required
    // tensor's shape and dtype against the config.
    let ckpt = Checkpoint::open(dir.canonicalize()?)?;
    let config = ckpt.config();
    let text = &config.text;
    println!(
        "{arch}: {layers} layers, hidden {hidden}, vocab {vocab}, moe {moe}",
        arch = config.architecture,
        layers = text.num_hidden_layers,
        hidden = text.hidden_size,
        vocab = text.vocab_size,
        moe = text.is_moe()
    );
    match &config.quantization {
        Some(QuantizationConfig::Fp8(fp8)) => println!(
            "quantization: FP8 {fmt:?}, weight blocks {blocks:?} (None: per-tensor), \
             activations {act:?}, {n} modules kept unquantized",
            fmt = fp8.fmt,
            blocks = fp8.weight_block_size,
            act = fp8.activation_scheme,
            n = fp8.modules_to_not_convert.len()
        ),
        Some(other) => println!("quantization: {other:?}"),
        None => println!("quantization: none (BF16 / F16 / F32 weights)"),
    }

    // The header alone, as any engine can parse it from a file's bytes.
    let file = &ckpt.files()[0];
    let header = parse_header(&std::fs::read(file)?, file)?;
    println!(
        "{file}: {n} tensors",
        file = file.display(),
        n = header.tensors.len()
    );
    for t in header.tensors.iter().take(6) {
        println!(
            "  {name} {dtype} {shape:?}",
            name = t.name,
            dtype = t.dtype_name,
            shape = t.shape
        );
    }
    Ok(())
}
