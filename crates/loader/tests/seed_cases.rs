//! The seven cases of sglang's `TestMakePackedWeightLoader` (PR #23062), as
//! tests of the packing step, plus the other scale schemes.

mod common;

use common::*;
use qwgpu_checkpoint::quant::{ActivationScheme, Fp8Config, Fp8Format, QuantizationConfig};
use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{dequantize, pack, ActivationQuant, QuantPolicy, ScaleScheme, SourceWeight};

const QKV: &[(&str, usize)] = &[("q", 8), ("k", 8), ("v", 4)];

fn qkv_with_scale(
    scale_shape: &[usize],
    scale_values: &[f32],
) -> (SourceWeight<'static>, Vec<f32>) {
    let mut rng = Rng(7);
    let w = fp8_tensor(
        "model.layers.0.linear_attn.in_proj_qkv.weight",
        &mut rng,
        20,
        6,
    );
    let s = float_tensor(
        "model.layers.0.linear_attn.in_proj_qkv.weight_scale",
        Dtype::F32,
        scale_shape,
        scale_values,
    );
    let want = reference_dequant(&w, Some(&s), &[8, 8, 4], [128, 128]);
    (
        SourceWeight::new(w, &["q", "k", "v"]).with_weight_scale(s),
        want,
    )
}

/// Seed 1: a 0-d scalar scale → all three shards hold that scale.
#[test]
fn scalar_scale_broadcasts_to_three_shards() {
    let (src, want) = qkv_with_scale(&[], &[0.375]);
    let p = pack(&spec("qkv", QKV, 6), &[src], &QuantPolicy::unquantized()).unwrap();
    assert_eq!(
        p.scale,
        ScaleScheme::PerShard {
            scales: vec![0.375; 3]
        }
    );
    assert_same(&dequantize(&p).unwrap(), &want, "scalar");
}

/// Seed 2: a `[1]` scale → shards 0, 1, 2 in order, each with the scale.
#[test]
fn one_element_scale_fills_shards_in_order() {
    let (src, want) = qkv_with_scale(&[1], &[2.5]);
    let p = pack(&spec("qkv", QKV, 6), &[src], &QuantPolicy::unquantized()).unwrap();
    let names: Vec<_> = p
        .shards
        .iter()
        .map(|s| (s.name.as_str(), s.row_offset, s.rows))
        .collect();
    assert_eq!(names, [("q", 0, 8), ("k", 8, 8), ("v", 16, 4)]);
    assert!(p
        .shards
        .iter()
        .all(|s| s.source == "model.layers.0.linear_attn.in_proj_qkv.weight"));
    assert_eq!(
        p.scale,
        ScaleScheme::PerShard {
            scales: vec![2.5; 3]
        }
    );
    assert_same(&dequantize(&p).unwrap(), &want, "[1]");
}

/// Seed 3: two-shard `in_proj_ba`-style packing, sizes [16, 16], ids (0, 1).
#[test]
fn two_shard_ba_packing() {
    let mut rng = Rng(3);
    let w = fp8_tensor(
        "model.layers.0.linear_attn.in_proj_ba.weight",
        &mut rng,
        32,
        5,
    );
    let s = float_tensor(
        "model.layers.0.linear_attn.in_proj_ba.weight_scale",
        Dtype::BF16,
        &[1],
        &[0.5],
    );
    let want = reference_dequant(&w, Some(&s), &[16, 16], [128, 128]);
    let src = SourceWeight::new(w, &["b", "a"]).with_weight_scale(s);
    let p = pack(
        &spec("ba", &[("b", 16), ("a", 16)], 5),
        &[src],
        &QuantPolicy::unquantized(),
    )
    .unwrap();
    assert_eq!(
        p.scale,
        ScaleScheme::PerShard {
            scales: vec![0.5, 0.5]
        }
    );
    assert_eq!((p.shards[1].row_offset, p.shards[1].rows), (16, 16));
    assert_same(&dequantize(&p).unwrap(), &want, "ba");
}

/// Seed 4: a multi-element [320, 256] per-channel scale over sizes
/// [128, 128, 64] is split 128/128/64 with the rows, not broadcast.
#[test]
fn multi_element_scale_is_split_not_broadcast() {
    let mut rng = Rng(4);
    let w = fp8_tensor("m.in_proj_qkv.weight", &mut rng, 320, 256);
    let vals: Vec<f32> = (0..320).map(|_| rng.scale()).collect();
    let s = float_tensor("m.in_proj_qkv.weight_scale", Dtype::F32, &[320, 1], &vals);
    let want = reference_dequant(&w, Some(&s), &[128, 128, 64], [128, 128]);
    let src = SourceWeight::new(w, &["q", "k", "v"]).with_weight_scale(s);
    let p = pack(
        &spec("m.in_proj_qkvz", &[("q", 128), ("k", 128), ("v", 64)], 256),
        &[src],
        &QuantPolicy::unquantized(),
    )
    .unwrap();
    let ScaleScheme::PerChannel { scales } = &p.scale else {
        panic!("{:?}", p.scale)
    };
    assert_eq!(&scales[..128], &vals[..128]);
    assert_eq!(&scales[128..256], &vals[128..256]);
    assert_eq!(&scales[256..], &vals[256..]);
    assert_eq!(
        p.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
        [128, 128, 64]
    );
    assert_same(&dequantize(&p).unwrap(), &want, "per-channel");
}

/// Seed 5: an int shard id and no shard id (a tensor covering the whole
/// packed weight) pass through exactly once.
#[test]
fn int_and_no_shard_id_pass_through_once() {
    let mut rng = Rng(5);
    // int ids: three tensors, one shard each.
    let parts: Vec<_> = QKV
        .iter()
        .map(|(n, r)| {
            let w = fp8_tensor(&format!("{n}_proj.weight"), &mut rng, *r, 3);
            let s = float_tensor(
                &format!("{n}_proj.weight_scale"),
                Dtype::F32,
                &[1],
                &[rng.scale()],
            );
            let want = reference_dequant(&w, Some(&s), &[*r], [128, 128]);
            (SourceWeight::new(w, &[n]).with_weight_scale(s), want)
        })
        .collect();
    let sources: Vec<_> = parts.iter().map(|(s, _)| s.clone()).collect();
    let p = pack(&spec("qkv", QKV, 3), &sources, &QuantPolicy::unquantized()).unwrap();
    assert_eq!(p.data.len(), 20 * 3, "each row exactly once");
    let want: Vec<f32> = parts.iter().flat_map(|(_, w)| w.clone()).collect();
    assert_same(&dequantize(&p).unwrap(), &want, "int ids");

    // no shard id: one tensor holding all shards.
    let (src, want) = qkv_with_scale(&[1], &[1.25]);
    let bytes = src.weight.bytes.to_vec();
    let p = pack(&spec("qkv", QKV, 6), &[src], &QuantPolicy::unquantized()).unwrap();
    assert_eq!(p.data, bytes);
    assert_same(&dequantize(&p).unwrap(), &want, "no id");
}

/// Seed 6 (with 7): `[[0.75]]` (numel 1, 2-D) is a per-tensor scale → broadcast.
#[test]
fn one_by_one_scale_broadcasts() {
    let (src, want) = qkv_with_scale(&[1, 1], &[0.75]);
    let p = pack(&spec("qkv", QKV, 6), &[src], &QuantPolicy::unquantized()).unwrap();
    assert_eq!(
        p.scale,
        ScaleScheme::PerShard {
            scales: vec![0.75; 3]
        }
    );
    assert_same(&dequantize(&p).unwrap(), &want, "[[0.75]]");
}

/// ModelOpt `[3]`: one scale per covered shard (vLLM #47396), sliced in order.
#[test]
fn per_shard_scales_are_sliced() {
    let (src, want) = qkv_with_scale(&[3], &[0.5, 0.25, 2.0]);
    let p = pack(&spec("qkv", QKV, 6), &[src], &QuantPolicy::unquantized()).unwrap();
    assert_eq!(
        p.scale,
        ScaleScheme::PerShard {
            scales: vec![0.5, 0.25, 2.0]
        }
    );
    assert_same(&dequantize(&p).unwrap(), &want, "[3]");
}

/// Per-tensor next to per-channel: expanded to per-channel, exactly (no requantization).
#[test]
fn per_tensor_with_per_channel_becomes_per_channel() {
    let mut rng = Rng(9);
    let (qkv, want_qkv) = qkv_with_scale(&[3], &[0.5, 0.25, 2.0]);
    let z = fp8_tensor("z_proj.weight", &mut rng, 4, 6);
    let zs: Vec<f32> = (0..4).map(|_| rng.scale()).collect();
    let zst = float_tensor("z_proj.weight_scale", Dtype::F16, &[4], &zs);
    let want_z = reference_dequant(&z, Some(&zst), &[4], [128, 128]);
    let srcs = [SourceWeight::new(z, &["z"]).with_weight_scale(zst), qkv];
    let p = pack(
        &spec("qkvz", &[("q", 8), ("k", 8), ("v", 4), ("z", 4)], 6),
        &srcs,
        &QuantPolicy::unquantized(),
    )
    .unwrap();
    let ScaleScheme::PerChannel { scales } = &p.scale else {
        panic!("{:?}", p.scale)
    };
    assert_eq!(scales.len(), 24);
    assert!(scales[..8].iter().all(|&s| s == 0.5) && scales[16..20].iter().all(|&s| s == 2.0));
    let want: Vec<f32> = want_qkv.into_iter().chain(want_z).collect();
    assert_same(
        &dequantize(&p).unwrap(),
        &want,
        "mixed per-tensor/per-channel",
    );
}

fn block_policy(block: [usize; 2]) -> QuantPolicy {
    QuantPolicy::from_config(Some(&QuantizationConfig::Fp8(Fp8Config {
        fmt: Fp8Format::E4M3,
        weight_block_size: Some(block),
        activation_scheme: ActivationScheme::Dynamic,
        modules_to_not_convert: vec!["model.language_model.layers.0.linear_attn.in_proj_a".into()],
    })))
    .unwrap()
}

fn block_source(
    name: &str,
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    block: [usize; 2],
    shard: &str,
) -> (SourceWeight<'static>, Vec<f32>) {
    let w = fp8_tensor(&format!("{name}.weight"), rng, rows, cols);
    let grid = [rows.div_ceil(block[0]), cols.div_ceil(block[1])];
    let vals: Vec<f32> = (0..grid[0] * grid[1]).map(|_| rng.scale()).collect();
    let s = float_tensor(
        &format!("{name}.weight_scale_inv"),
        Dtype::BF16,
        &grid,
        &vals,
    );
    let want = reference_dequant(&w, Some(&s), &[rows], block);
    (SourceWeight::new(w, &[shard]).with_weight_scale(s), want)
}

/// Block scales keep each source's own grid at its row offset when shard rows
/// are not multiples of the block (§4.4), and fuse into one grid when they are.
#[test]
fn block_scales_keep_row_offsets() {
    let block = [16, 8];
    let mut rng = Rng(11);
    let (q, wq) = block_source(
        "model.layers.3.self_attn.q_proj",
        &mut rng,
        40,
        20,
        block,
        "q",
    );
    let (k, wk) = block_source(
        "model.layers.3.self_attn.k_proj",
        &mut rng,
        9,
        20,
        block,
        "k",
    );
    let (v, wv) = block_source(
        "model.layers.3.self_attn.v_proj",
        &mut rng,
        9,
        20,
        block,
        "v",
    );
    let p = pack(
        &spec("qkv", &[("q", 40), ("k", 9), ("v", 9)], 20),
        &[v, q, k],
        &block_policy(block),
    )
    .unwrap();
    let ScaleScheme::Block { block: b, segments } = &p.scale else {
        panic!("{:?}", p.scale)
    };
    assert_eq!(*b, block);
    let segs: Vec<_> = segments
        .iter()
        .map(|s| (s.row_offset, s.rows, s.grid))
        .collect();
    assert_eq!(segs, [(0, 40, [3, 3]), (40, 9, [1, 3]), (49, 9, [1, 3])]);
    assert_eq!(p.activation, ActivationQuant::Dynamic);
    let want: Vec<f32> = [wq, wk, wv].concat();
    assert_same(&dequantize(&p).unwrap(), &want, "block offsets");

    let (g, wg) = block_source("mlp.gate_proj", &mut rng, 32, 20, block, "gate");
    let (u, wu) = block_source("mlp.up_proj", &mut rng, 16, 20, block, "up");
    let p = pack(
        &spec("gate_up", &[("gate", 32), ("up", 16)], 20),
        &[g, u],
        &block_policy(block),
    )
    .unwrap();
    let ScaleScheme::Block { segments, .. } = &p.scale else {
        panic!()
    };
    assert_eq!(segments.len(), 1, "whole-block shards share one grid");
    assert_eq!(segments[0].grid, [3, 3]);
    assert_same(&dequantize(&p).unwrap(), &[wg, wu].concat(), "fused grid");
}

/// Static input scales: broadcast/sliced per shard like weight scales, plus their max.
#[test]
fn static_input_scales_per_shard_and_max() {
    let mut rng = Rng(12);
    let (qkv, _) = qkv_with_scale(&[1], &[0.5]);
    let qkv = qkv.with_input_scale(float_tensor(
        "in_proj_qkv.input_scale",
        Dtype::F32,
        &[],
        &[0.125],
    ));
    let z = fp8_tensor("z.weight", &mut rng, 4, 6);
    let z = SourceWeight::new(z, &["z"])
        .with_weight_scale(float_tensor("z.weight_scale", Dtype::F32, &[1], &[1.0]))
        .with_input_scale(float_tensor("z.input_scale", Dtype::F32, &[1], &[0.375]));
    let p = pack(
        &spec("qkvz", &[("q", 8), ("k", 8), ("v", 4), ("z", 4)], 6),
        &[qkv, z],
        &QuantPolicy::unquantized(),
    )
    .unwrap();
    assert_eq!(
        p.activation,
        ActivationQuant::Static {
            per_shard: vec![0.125, 0.125, 0.125, 0.375],
            max: 0.375
        }
    );
}

/// Unquantized sources pack to `ScaleScheme::None` and dequantize to their values.
#[test]
fn unquantized_bf16_packs_without_scales() {
    let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b = float_tensor(
        "model.layers.0.linear_attn.in_proj_b.weight",
        Dtype::BF16,
        &[2, 3],
        &vals[..6],
    );
    let a = float_tensor(
        "model.layers.0.linear_attn.in_proj_a.weight",
        Dtype::BF16,
        &[2, 3],
        &vals[6..],
    );
    let p = pack(
        &spec("ba", &[("b", 2), ("a", 2)], 3),
        &[SourceWeight::new(b, &["b"]), SourceWeight::new(a, &["a"])],
        &block_policy([128, 128]),
    )
    .unwrap();
    assert_eq!(p.scale, ScaleScheme::None);
    assert_eq!(p.activation, ActivationQuant::None);
    assert_eq!(dequantize(&p).unwrap(), vals);
}
