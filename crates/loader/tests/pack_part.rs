//! `pack_part`, the loader's per-part entry point (a reader that fetches one
//! part of a checkpoint at a time, e.g. a web page): each part packed alone,
//! from a source where only that part's tensors carry bytes, equals the part
//! `stream_from_source` hands its visitor, on committed dense, MoE, FP8 and
//! 4-bit fixtures. Parts a model does not have are typed errors.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use qwgpu_checkpoint::Checkpoint;
use qwgpu_loader::{
    pack_part, part_ids, stream_from_source, LoadError, PackOptions, Part, PartId, SourceTensor,
    TensorSource,
};

fn fixture(name: &str) -> Checkpoint {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Whether two parts are the same part with the same packed contents.
fn same(a: &Part, b: &Part) -> bool {
    match (a, b) {
        (Part::Embed(x), Part::Embed(y)) | (Part::LmHead(x), Part::LmHead(y)) => x == y,
        (Part::Layer { index: i, layer: x }, Part::Layer { index: j, layer: y }) => {
            i == j && x == y
        }
        (Part::Norm(x), Part::Norm(y)) => x == y,
        _ => false,
    }
}

/// Every tensor of `ckpt` by canonical name, with bytes only for those `id` covers.
fn part_source(ckpt: &Checkpoint, id: PartId) -> BTreeMap<String, SourceTensor<'_>> {
    ckpt.tensor_names()
        .into_iter()
        .map(|n| {
            let t = TensorSource::tensor(ckpt, n).expect("named tensor");
            let t = if id.covers(n) {
                t
            } else {
                SourceTensor {
                    bytes: Cow::Borrowed(&[]),
                    ..t
                }
            };
            (n.to_string(), t)
        })
        .collect()
}

// The visitor's error type is the loader's (large) `LoadError`, set by its API.
#[allow(clippy::result_large_err)]
#[test]
fn each_part_packed_alone_equals_the_streamed_part() {
    for name in [
        "dense-bf16-text",
        "dense-fp8-block",
        "moe-bf16-text",
        "moe-fp8-block",
        "dense-gptq-int4",
    ] {
        let ckpt = fixture(name);
        let config = ckpt.config();
        let mut streamed = Vec::new();
        stream_from_source(&ckpt, config, None, &mut |p| {
            streamed.push(p);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ids = part_ids(config);
        assert_eq!(ids.len(), streamed.len(), "{name}: parts");
        for (id, want) in ids.into_iter().zip(&streamed) {
            let src = part_source(&ckpt, id);
            let covered = src.keys().filter(|n| id.covers(n)).count();
            assert!(covered > 0, "{name}: {id:?} covers no tensor");
            let got = pack_part(&src, config, &PackOptions::default(), id)
                .unwrap_or_else(|e| panic!("{name}: {id:?}: {e}"));
            assert!(
                same(&got, want),
                "{name}: {id:?} differs from the streamed part"
            );
        }
    }
}

#[test]
fn parts_a_model_lacks_are_typed_errors() {
    let ckpt = fixture("dense-bf16-text");
    let config = ckpt.config();
    let layers = config.text.layer_types.len();
    let mut asks = vec![PartId::Layer(layers)];
    if config.tie_word_embeddings {
        asks.push(PartId::LmHead);
    }
    for id in asks {
        match pack_part(&ckpt, config, &PackOptions::default(), id) {
            Err(LoadError::NoSuchPart { part, .. }) => assert_eq!(part, format!("{id:?}")),
            other => panic!("{id:?}: {other:?}"),
        }
    }
    // Names of one layer are not another's (layer 1 vs 10, 11, ...).
    assert!(PartId::Layer(1).covers("model.layers.1.mlp.up_proj.weight"));
    assert!(!PartId::Layer(1).covers("model.layers.10.mlp.up_proj.weight"));
    assert!(!PartId::Layer(1).covers("model.layers.1"));
}
