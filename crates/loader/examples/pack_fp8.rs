//! Packs a fused FP8 projection (`gate_proj` + `up_proj` → `gate_up`, each
//! with its own 128 × 128 block scales, as Qwen's FP8 checkpoints store them)
//! from in-memory tensors, then dequantizes one row and checks it against
//! decoding the source bytes by hand.
//!
//! `cargo run -p qwgpu-loader --example pack_fp8`

use qwgpu_checkpoint::quant::{ActivationScheme, Fp8Config, Fp8Format};
use qwgpu_checkpoint::{Dtype, QuantizationConfig};
use qwgpu_loader::{
    dequantize, e4m3fn_to_f32, pack, PackSpec, QuantPolicy, ScaleScheme, ShardSpec, SourceTensor,
    SourceWeight,
};

const ROWS: usize = 192; // per projection: not a multiple of the block
const COLS: usize = 256;
const BLOCK: [usize; 2] = [128, 128];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let grid = [ROWS.div_ceil(BLOCK[0]), COLS.div_ceil(BLOCK[1])];
    // E4M3 bytes (never the NaN codes 0x7F / 0xFF) and one scale per block.
    let bytes = |seed: usize| -> Vec<u8> {
        (0..ROWS * COLS)
            .map(|i| (((i + seed) * 37) % 0x7E) as u8 | if i % 5 == 0 { 0x80 } else { 0 })
            .collect()
    };
    let (gate_q, up_q) = (bytes(0), bytes(11));
    let gate_s: Vec<f32> = (0..grid[0] * grid[1]).map(|i| 0.5 + i as f32).collect();
    let up_s: Vec<f32> = (0..grid[0] * grid[1])
        .map(|i| 0.25 * (i + 1) as f32)
        .collect();

    let source = |module: &str,
                  q: &[u8],
                  s: &[f32]|
     -> Result<SourceWeight<'static>, Box<dyn std::error::Error>> {
        let w = SourceTensor::new(
            format!("{module}.weight"),
            Dtype::F8E4M3,
            vec![ROWS, COLS],
            q.to_vec(),
        )?;
        let scale = SourceTensor::from_f32(format!("{module}.weight_scale_inv"), grid.to_vec(), s)?;
        let shard = if module.ends_with("gate_proj") {
            "gate"
        } else {
            "up"
        };
        Ok(SourceWeight::new(w, &[shard]).with_weight_scale(scale))
    };
    let sources = [
        source("model.layers.0.mlp.up_proj", &up_q, &up_s)?,
        source("model.layers.0.mlp.gate_proj", &gate_q, &gate_s)?,
    ];
    // What the checkpoint's `quantization_config` says: FP8 E4M3, 128 × 128 blocks.
    let policy = QuantPolicy::from_config(Some(&QuantizationConfig::Fp8(Fp8Config {
        fmt: Fp8Format::E4M3,
        weight_block_size: Some(BLOCK),
        activation_scheme: ActivationScheme::Dynamic,
        modules_to_not_convert: vec![],
    })))?;
    let spec = PackSpec::new(
        "model.layers.0.mlp.gate_up_proj",
        vec![ShardSpec::new("gate", ROWS), ShardSpec::new("up", ROWS)],
        Some(COLS),
    );
    let packed = pack(&spec, &sources, &policy)?; // any source order
    let ScaleScheme::Block { segments, .. } = &packed.scale else {
        return Err(format!("expected block scales, got {scale:?}", scale = packed.scale).into());
    };
    println!(
        "{name}: [{rows}, {cols}] {dtype:?}, shards at rows {offsets:?}, {n} block-scale grids",
        name = packed.name,
        rows = packed.rows,
        cols = packed.cols,
        dtype = packed.dtype,
        offsets = packed
            .shards
            .iter()
            .map(|s| s.row_offset)
            .collect::<Vec<_>>(),
        n = segments.len()
    );

    // Row 200 of the fused weight is row 8 of `up_proj`, in its block-row 0.
    let (row, up_row) = (200, 200 - ROWS);
    let all = dequantize(&packed)?;
    let got = &all[row * COLS..][..COLS];
    let want: Vec<f32> = (0..COLS)
        .map(|c| {
            e4m3fn_to_f32(up_q[up_row * COLS + c])
                * up_s[(up_row / BLOCK[0]) * grid[1] + c / BLOCK[1]]
        })
        .collect();
    if got != want.as_slice() {
        return Err(format!("row {row} dequantized to {got:?}, expected {want:?}").into());
    }
    println!(
        "row {row} (up_proj row {up_row}) dequantizes exactly: {first:?} ...",
        first = &got[..4]
    );
    Ok(())
}
