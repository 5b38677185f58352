//! Writes a random-weight BF16 checkpoint (`model.safetensors`) for the
//! `config.json` already in a folder: every tensor the config requires, with
//! pseudo-random finite values. For load-speed measurements on machines
//! without torch (`benches/make_models.py` needs it).
//!
//! `cargo run -p qwgpu-checkpoint --example random_checkpoint -- <folder>`

use std::io::Write;
use std::path::PathBuf;

use qwgpu_checkpoint::expected::expected_tensors;
use qwgpu_checkpoint::ModelConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: random_checkpoint <folder>")?,
    );
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    if config.text.is_moe() {
        return Err("dense configs only".into());
    }
    let tensors = expected_tensors(&config.text, config.tie_word_embeddings);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for t in &tensors {
        let bytes = t.shape.iter().product::<usize>() * 2;
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": t.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header)?;
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    // One block of random BF16 values in [-1, 1), written at rotating offsets.
    let mut block = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for pair in block.chunks_exact_mut(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let exp = 0x3c + (x >> 60) % 3; // 2^-3 .. 2^-1
        let v = ((x >> 63) << 15) | (exp << 7) | ((x >> 8) & 0x7f);
        pair.copy_from_slice(&(v as u16).to_le_bytes());
    }
    let path = dir.join("model.safetensors");
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&path)?);
    f.write_all(&(text.len() as u64).to_le_bytes())?;
    f.write_all(text.as_bytes())?;
    let mut at = 0usize;
    let mut left = offset;
    while left > 0 {
        let n = left.min(block.len() - at);
        f.write_all(&block[at..at + n])?;
        left -= n;
        at = (at + n + 2 * 4099) % (block.len() / 2);
    }
    f.flush()?;
    let gb = offset as f64 / 1e9;
    let path = path.display();
    eprintln!("wrote {path}: {gb:.2} GB of BF16");
    Ok(())
}
