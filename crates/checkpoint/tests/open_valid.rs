//! Valid tiny checkpoints open, in every layout a release or export uses.

mod support;

use qwgpu_checkpoint::{Checkpoint, CheckpointError, Dtype, FfnConfig, LayerType, OpenOptions};
use support::*;

fn strict() -> OpenOptions {
    OpenOptions { strict: true }
}

/// The canonical names the tiny model must expose, derived from the file names
/// by the spec's prefix rule (not by the crate).
fn expected_canonical(tiny: &Tiny) -> Vec<String> {
    let mut names: Vec<String> = tiny
        .tensors()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| !n.starts_with("mtp.") && !n.starts_with("model.visual."))
        .map(|n| n.replacen("model.language_model.", "model.", 1))
        .collect();
    names.sort();
    names
}

#[test]
fn text_only_dense_opens_with_exact_names_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = Tiny::default();
    write_tiny(dir.path(), &tiny);
    let ckpt = Checkpoint::open_with(dir.path(), &strict()).expect("open");
    let cfg = ckpt.config();
    assert!(!cfg.wrapped);
    assert_eq!(cfg.architecture, "Qwen3_5ForCausalLM");
    assert_eq!(cfg.text.hidden_size, H);
    assert_eq!(cfg.text.rotary_dim(), 8, "hd 32 × 0.25");
    assert_eq!(
        cfg.text.ffn,
        FfnConfig::Dense {
            intermediate_size: I
        }
    );
    assert_eq!(cfg.eos_token_ids, vec![248044]);
    assert_eq!(
        cfg.text.layer_types,
        vec![
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::LinearAttention,
            LayerType::FullAttention
        ]
    );
    let names: Vec<String> = ckpt.names().into_iter().map(String::from).collect();
    assert_eq!(names, expected_canonical(&tiny));
    assert!(ckpt.skipped().is_empty());
    assert!(ckpt.unexpected().is_empty());
    assert_eq!(ckpt.files(), vec![dir.path().join("model.safetensors")]);

    for name in [
        "model.norm.weight",
        "model.layers.0.linear_attn.A_log",
        "model.embed_tokens.weight",
    ] {
        let t = ckpt.tensor(name).expect("present");
        let got = t.to_f32().expect("float");
        let want: Vec<f32> = (0..t.numel()).map(value_at).collect();
        assert_eq!(got, want, "{name}");
    }
    let a_log = ckpt
        .tensor("model.layers.0.linear_attn.A_log")
        .expect("A_log");
    assert_eq!(a_log.dtype, Dtype::F32);
    assert_eq!(a_log.shape, &[NV]);
    assert!(matches!(
        ckpt.tensor("model.layers.9.nothing"),
        Err(qwgpu_checkpoint::CheckpointError::MissingTensor { .. })
    ));
}

#[test]
fn wrapper_layout_canonicalises_and_skips_visual_and_mtp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = Tiny {
        wrapper: true,
        tie: true,
        ..Tiny::default()
    };
    write_tiny(dir.path(), &tiny);
    let ckpt = Checkpoint::open_with(dir.path(), &strict()).expect("open");
    assert!(ckpt.config().wrapped);
    assert!(ckpt.config().tie_word_embeddings);
    assert_eq!(ckpt.config().model_type, "qwen3_5");
    let names: Vec<String> = ckpt.names().into_iter().map(String::from).collect();
    assert_eq!(names, expected_canonical(&tiny));
    assert!(ckpt.get("lm_head.weight").is_none(), "tied: no lm_head");
    let mut skipped = ckpt.skipped().to_vec();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            "model.visual.blocks.0.attn.qkv.weight",
            "model.visual.merger.mlp.0.weight",
            "mtp.fc.weight",
            "mtp.norm.weight"
        ]
    );
    let q = ckpt
        .tensor("model.layers.3.self_attn.q_proj.weight")
        .expect("q");
    assert_eq!(
        q.source_name,
        "model.language_model.layers.3.self_attn.q_proj.weight"
    );
    assert_eq!(q.shape, &[2 * NH * HD, H]);
}

#[test]
fn sharded_checkpoint_opens_in_index_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = Tiny::default();
    let shards = write_tiny_sharded(dir.path(), &tiny, 3);
    let ckpt = Checkpoint::open_with(dir.path(), &strict()).expect("open");
    let files: Vec<_> = shards.iter().map(|s| dir.path().join(s)).collect();
    assert_eq!(ckpt.files(), files);
    let names: Vec<String> = ckpt.names().into_iter().map(String::from).collect();
    assert_eq!(names, expected_canonical(&tiny));
    // Tensor i of the list went to shard i % 3.
    let third = &tiny.tensors()[2];
    assert_eq!(
        ckpt.tensor(&third.name).expect("t").file,
        files[2].as_path()
    );
}

#[test]
fn moe_fused_and_per_expert_layouts_open() {
    for ffn in [Ffn::MoeFused, Ffn::MoePerExpert] {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = Tiny {
            ffn,
            wrapper: true,
            tie: false,
        };
        write_tiny(dir.path(), &tiny);
        let ckpt =
            Checkpoint::open_with(dir.path(), &strict()).unwrap_or_else(|e| panic!("{ffn:?}: {e}"));
        assert_eq!(
            ckpt.config().text.ffn,
            FfnConfig::Moe {
                num_experts: E,
                num_experts_per_tok: TOPK,
                moe_intermediate_size: IE,
                shared_expert_intermediate_size: IS
            }
        );
        // Scale companions are kept (for the loader) and not unexpected.
        assert!(
            ckpt.unexpected().is_empty(),
            "{ffn:?}: {ckpt_unexpected:?}",
            ckpt_unexpected = ckpt.unexpected()
        );
        if ffn == Ffn::MoePerExpert {
            let w = ckpt
                .tensor("model.layers.0.mlp.experts.7.down_proj.weight")
                .expect("w");
            assert_eq!(w.dtype, Dtype::F8E4M3);
            assert_eq!(w.shape, &[H, IE]);
            assert!(w.to_f32().is_err(), "FP8 needs the loader");
            assert!(ckpt
                .get("model.layers.0.mlp.experts.7.down_proj.weight_scale_inv")
                .is_some());
        } else {
            let w = ckpt
                .tensor("model.layers.2.mlp.experts.gate_up_proj")
                .expect("w");
            assert_eq!(w.shape, &[E, 2 * IE, H]);
        }
    }
}

#[test]
fn unaligned_tensor_data_reads_correctly() {
    // Header padded so the data section starts at an odd address: every tensor
    // is misaligned for its dtype.
    for pad in [1usize, 2, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = Tiny::default();
        write_config(dir.path(), &tiny.config());
        let mut raw = RawFile::from_tensors(&tiny.tensors());
        let len = raw.header_text().len();
        let begin = raw.entry_mut("model.layers.1.linear_attn.norm.weight").3[0] as usize;
        // Absolute file position of the F32 tensor ≡ pad (mod 4); the map is page-aligned.
        raw.header_pad = (pad + 4 - (8 + len + begin) % 4) % 4;
        std::fs::write(dir.path().join("model.safetensors"), raw.to_bytes()).expect("write");
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let t = ckpt
            .tensor("model.layers.1.linear_attn.norm.weight")
            .expect("F32 tensor");
        assert_eq!(t.dtype, Dtype::F32);
        assert_ne!(
            t.bytes.as_ptr() as usize % 4,
            0,
            "test setup: data must be unaligned"
        );
        let want: Vec<f32> = (0..DV).map(value_at).collect();
        assert_eq!(t.to_f32().expect("convert"), want);
        let b = ckpt.tensor("model.norm.weight").expect("BF16 tensor");
        let want: Vec<f32> = (0..H).map(value_at).collect();
        assert_eq!(b.to_f32().expect("convert"), want);
    }
}

/// `prefetch` is a hint: over every tensor of every shard (unaligned ranges,
/// empty ones) and over bytes that are not the checkpoint's, it changes no
/// byte and fails nothing.
#[test]
fn prefetch_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = Tiny::default();
    write_tiny_sharded(dir.path(), &tiny, 3);
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let before: Vec<Vec<u8>> = ckpt
        .names()
        .iter()
        .map(|n| ckpt.tensor(n).expect("t").bytes.to_vec())
        .collect();
    for n in ckpt.names() {
        let t = ckpt.tensor(n).expect("t");
        ckpt.prefetch(t.bytes);
        ckpt.prefetch(&t.bytes[t.bytes.len() / 2..]);
        ckpt.prefetch(&t.bytes[..0]);
    }
    let foreign = vec![7u8; 10_000];
    ckpt.prefetch(&foreign[3..9_000]);
    assert!(foreign.iter().all(|&b| b == 7));
    let after: Vec<Vec<u8>> = ckpt
        .names()
        .iter()
        .map(|n| ckpt.tensor(n).expect("t").bytes.to_vec())
        .collect();
    assert_eq!(before, after);
}

/// `read_into` (positioned reads of the file) gives each tensor's bytes as
/// the map holds them, whole or from any offset, in every shard; reads past
/// a tensor's end are refused; a file cut after opening is a typed error
/// naming the file and the tensor, not a `SIGBUS`.
#[test]
fn read_into_matches_the_map_and_reports_a_truncated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shards = write_tiny_sharded(dir.path(), &Tiny::default(), 3);
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    for name in ckpt.names() {
        let t = ckpt.tensor(name).expect("tensor");
        let mut whole = vec![0xa5u8; t.bytes.len()];
        ckpt.read_into(&t, 0, &mut whole).expect("read");
        assert_eq!(whole, t.bytes, "`{name}`");
        let at = t.bytes.len() / 3;
        let mut part = vec![0u8; t.bytes.len() - at];
        ckpt.read_into(&t, at, &mut part)
            .expect("read from an offset");
        assert_eq!(part, &t.bytes[at..], "`{name}` from byte {at}");
        let mut over = vec![0u8; t.bytes.len() - at + 1];
        let err = ckpt
            .read_into(&t, at, &mut over)
            .expect_err("past the tensor's end");
        assert!(
            matches!(err, CheckpointError::TensorRead { .. }) && err.to_string().contains(name),
            "{err}"
        );
    }
    // The last tensor of the last shard, cut in half after opening.
    let file = dir.path().join(shards.last().expect("shards"));
    let (_, last) = ckpt
        .stored_tensors()
        .into_iter()
        .filter(|(f, _)| *f == file)
        .max_by_key(|(_, h)| h.end)
        .expect("a tensor in the last shard");
    let (name, start, end) = (last.name.clone(), last.start, last.end);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open")
        .set_len(((start + end) / 2) as u64)
        .expect("truncate");
    let t = ckpt.tensor(&name).expect("tensor");
    let mut whole = vec![0u8; t.bytes.len()];
    let err = ckpt.read_into(&t, 0, &mut whole).expect_err("truncated");
    let msg = err.to_string();
    assert!(
        matches!(err, CheckpointError::TensorRead { .. })
            && msg.contains(&name)
            && msg.contains(&shards[shards.len() - 1])
            && msg.contains("ends"),
        "{msg}"
    );
}
