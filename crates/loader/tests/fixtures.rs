//! Every `tests/fixtures/*fp8*` checkpoint loads, and every packed weight
//! dequantizes to its source tensors dequantized one by one (reference formula).

mod common;

use std::path::PathBuf;

use common::*;
use qwgpu_checkpoint::quant::QuantizationConfig;
use qwgpu_checkpoint::{Checkpoint, Dtype};
use qwgpu_loader::{
    dequantize, load_model, weight_scale_names, ActivationQuant, Ffn, Mixer, PackedModel,
    PackedWeight, ScaleScheme, SourceTensor,
};

/// The FP8 checkpoints committed under `tests/fixtures` (listed in its
/// `MANIFEST.sha256`): one dense and one MoE model per scale scheme.
const FP8_FIXTURES: [&str; 10] = [
    "dense-fp8-block",
    "dense-fp8-channel",
    "dense-fp8-ctblock",
    "dense-fp8-modelopt",
    "dense-fp8-tensor",
    "moe-fp8-block",
    "moe-fp8-channel",
    "moe-fp8-ctblock",
    "moe-fp8-modelopt",
    "moe-fp8-tensor",
];

/// Every `tests/fixtures/*fp8*` checkpoint; a missing fixture (or folder) is a
/// failure, not an empty list: the fixtures are committed with the code.
fn fixture_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let entries = std::fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "{root_display}: the committed fixtures: {e}",
            root_display = root.display()
        )
    });
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.expect("fixture folder entry").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("fp8"))
        })
        .collect();
    dirs.sort();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        FP8_FIXTURES,
        "{}: the FP8 fixtures (missing ones fail, new ones belong in FP8_FIXTURES)",
        root.display()
    );
    for d in &dirs {
        for file in ["config.json", "model.safetensors"] {
            assert!(
                d.join(file).is_file(),
                "{d_display}: {file} missing",
                d_display = d.display()
            );
        }
    }
    dirs
}

fn all_weights(m: &PackedModel) -> Vec<&PackedWeight> {
    let mut out = vec![&m.embed_tokens];
    out.extend(m.lm_head.as_ref());
    for l in &m.layers {
        match &l.mixer {
            Mixer::Linear(g) => out.extend([&g.in_proj_qkvz, &g.in_proj_ba, &g.out_proj]),
            Mixer::Full(a) => out.extend([&a.qkv, &a.o_proj]),
        }
        match &l.ffn {
            Ffn::Dense(d) => out.extend([&d.gate_up, &d.down]),
            Ffn::Moe(moe) => out.extend([
                &moe.router,
                &moe.experts_gate_up,
                &moe.experts_down,
                &moe.shared_expert.gate_up,
                &moe.shared_expert.down,
                &moe.shared_expert_gate,
            ]),
        }
    }
    out
}

fn block_of(ckpt: &Checkpoint) -> [usize; 2] {
    match &ckpt.config().quantization {
        Some(QuantizationConfig::Fp8(c)) => c.weight_block_size.unwrap_or([128, 128]),
        Some(QuantizationConfig::CompressedTensors(c)) => c
            .groups
            .iter()
            .find_map(|g| g.weights.as_ref().and_then(|w| w.block_structure))
            .unwrap_or([128, 128]),
        _ => [128, 128],
    }
}

fn slice(t: &SourceTensor<'_>, e: usize, n: usize, shape: Vec<usize>) -> SourceTensor<'static> {
    let per = t.bytes.len() / n;
    tensor(
        &t.name,
        t.dtype,
        &shape,
        t.bytes[e * per..(e + 1) * per].to_vec(),
    )
}

/// Reference values of one source tensor (2-D, or fused 3-D experts).
fn reference(ckpt: &Checkpoint, name: &str, shard_rows: &[usize], block: [usize; 2]) -> Vec<f32> {
    let w = SourceTensor::from_view(&ckpt.tensor(name).unwrap());
    let scale = weight_scale_names(name)
        .iter()
        .find_map(|n| ckpt.get(n))
        .map(|v| SourceTensor::from_view(&v));
    if w.shape.len() == 2 {
        return reference_dequant(&w, scale.as_ref(), shard_rows, block);
    }
    let (n, r, c) = (w.shape[0], w.shape[1], w.shape[2]);
    let per_expert_rows: Vec<usize> = shard_rows
        .chunks(shard_rows.len() / n)
        .next()
        .unwrap()
        .to_vec();
    (0..n)
        .flat_map(|e| {
            let we = slice(&w, e, n, vec![r, c]);
            let se = scale.as_ref().map(|s| {
                let numel: usize = s.shape.iter().product();
                if numel == 1 {
                    tensor(&s.name, s.dtype, &[1], s.bytes.to_vec())
                } else if s.shape.len() == 3 {
                    slice(s, e, n, vec![s.shape[1], s.shape[2]])
                } else {
                    slice(s, e, n, vec![1])
                }
            });
            reference_dequant(&we, se.as_ref(), &per_expert_rows, block)
        })
        .collect()
}

#[test]
fn every_fp8_fixture_loads_and_matches_its_sources() {
    for dir in fixture_dirs() {
        let ckpt = Checkpoint::open(&dir)
            .unwrap_or_else(|e| panic!("{dir_display}: {e}", dir_display = dir.display()));
        let model = load_model(&ckpt)
            .unwrap_or_else(|e| panic!("{dir_display}: {e}", dir_display = dir.display()));
        let block = block_of(&ckpt);
        let mut quantized = 0;
        for w in all_weights(&model) {
            quantized += usize::from(w.dtype == Dtype::F8E4M3 || w.dtype == Dtype::F8E5M2);
            // Consecutive shards from one source tensor form one run.
            let mut want = Vec::new();
            let mut i = 0;
            while i < w.shards.len() {
                let src = &w.shards[i].source;
                let run: Vec<usize> = w.shards[i..]
                    .iter()
                    .take_while(|s| &s.source == src)
                    .map(|s| s.rows)
                    .collect();
                i += run.len();
                want.extend(reference(&ckpt, src, &run, block));
            }
            let got = dequantize(w)
                .unwrap_or_else(|e| panic!("{dir_display}: {e}", dir_display = dir.display()));
            assert_same(
                &got,
                &want,
                &format!(
                    "{dir_display}: {w_name}",
                    dir_display = dir.display(),
                    w_name = w.name
                ),
            );
        }
        assert!(quantized > 0, "{}: no FP8 weight loaded", dir.display());
        // The scheme each fixture family was exported with (folder name).
        let Mixer::Linear(gdn) = &model.layers[0].mixer else {
            panic!("layer 0 is linear")
        };
        let family = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (scheme_ok, act_ok) = match family.rsplit('-').next().unwrap() {
            "block" | "ctblock" => (
                matches!(gdn.in_proj_qkvz.scale, ScaleScheme::Block { .. }),
                gdn.in_proj_qkvz.activation == ActivationQuant::Dynamic,
            ),
            "tensor" | "modelopt" => (
                matches!(gdn.in_proj_qkvz.scale, ScaleScheme::PerShard { .. }),
                matches!(gdn.in_proj_qkvz.activation, ActivationQuant::Static { .. }),
            ),
            "channel" => (
                matches!(gdn.in_proj_qkvz.scale, ScaleScheme::PerChannel { .. }),
                gdn.in_proj_qkvz.activation == ActivationQuant::Dynamic,
            ),
            _ => (true, true),
        };
        assert!(
            scheme_ok && act_ok,
            "{family}: {gdn_in_proj_qkvz_scale:?} / {gdn_in_proj_qkvz_activation:?}",
            gdn_in_proj_qkvz_scale = gdn.in_proj_qkvz.scale,
            gdn_in_proj_qkvz_activation = gdn.in_proj_qkvz.activation
        );
        assert_eq!(
            gdn.in_proj_ba.scale,
            ScaleScheme::None,
            "{family}: in_proj_ba stays unquantized"
        );
        eprintln!(
            "{dir_display}: {weight_count} packed weights checked, {quantized} FP8",
            dir_display = dir.display(),
            weight_count = all_weights(&model).len()
        );
    }
}
