//! The staging ring's uploads against `GpuWeight::upload` (one
//! `queue.write_buffer` per chunk, on one thread, from packed host copies):
//! byte for byte on every committed fixture (BF16, each FP8 scale scheme,
//! dense and MoE), through tiny slots so that every weight crosses slots,
//! the ring wraps and each fill splits into jobs over several threads; and a
//! checkpoint truncated after it was opened is a typed error naming it.

use std::path::PathBuf;

use qwgpu_checkpoint::{Checkpoint, CheckpointError};
use qwgpu_kernels::{ContextOptions, GpuContext, GpuWeight};
use qwgpu_loader::{Ffn, Mixer, PackedLayer, PackedWeight, Part};

use super::{RingSizes, Uploader};
use crate::golden::fixtures_dir;
use crate::testing::Rng;
use crate::ModelError;

/// Slots of 4 KiB (a fixture's weights take 2 .. 100 KiB), a ring of 3, jobs
/// of 512 bytes, every fill on threads.
const TINY: RingSizes = RingSizes {
    slot_bytes: 4 << 10,
    slots: 3,
    job_bytes: 512,
    parallel_min_bytes: 0,
};

fn context() -> GpuContext {
    GpuContext::new(&ContextOptions::default()).expect("GPU context")
}

/// Every fixture folder (each a random checkpoint of one stored format).
fn fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "fixtures: {dirs:?}");
    dirs
}

fn layer_weights(l: &PackedLayer) -> Vec<&PackedWeight> {
    let mut out = Vec::new();
    match &l.mixer {
        Mixer::Linear(g) => out.extend([&g.in_proj_qkvz, &g.in_proj_ba, &g.out_proj]),
        Mixer::Full(a) => out.extend([&a.qkv, &a.o_proj]),
    }
    match &l.ffn {
        Ffn::Dense(m) => out.extend([&m.gate_up, &m.down]),
        Ffn::Moe(m) => out.extend([
            &m.router,
            &m.experts_gate_up,
            &m.experts_down,
            &m.shared_expert.gate_up,
            &m.shared_expert.down,
            &m.shared_expert_gate,
        ]),
    }
    out
}

/// Every buffer of `g` read back: its pieces' bytes and its scale table.
fn read_back(ctx: &GpuContext, g: &GpuWeight) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = g
        .pieces
        .iter()
        .map(|p| {
            ctx.read_bytes(&p.buffer, 0, p.buffer.size())
                .expect("read piece")
        })
        .collect();
    out.push(
        ctx.read_bytes(&g.meta, 0, g.meta.size())
            .expect("read meta"),
    );
    out
}

// The visitor's error type is the loader's (large) `LoadError`, set by its API.
#[allow(clippy::result_large_err)]
/// Uploads every weight of the checkpoint in `dir` through the loader's
/// streaming walk and a ring of `sizes` on `threads` threads; the weights'
/// names and buffers.
fn ring_upload(
    ctx: &GpuContext,
    ckpt: &Checkpoint,
    threads: usize,
    sizes: RingSizes,
) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut progress = |_| {};
    let mut u = Uploader::with_ring(ctx, Some(ckpt), &mut progress, threads, sizes);
    let mut uploaded = Vec::new();
    qwgpu_loader::stream_model_borrowing(ckpt, None, &mut |part| {
        let weights: Vec<&PackedWeight> = match &part {
            Part::Embed(w) | Part::LmHead(w) => vec![w],
            Part::Layer { layer, .. } => layer_weights(layer),
            Part::Norm(_) => vec![],
        };
        for w in weights {
            let g = u.weight(w).expect("ring upload");
            uploaded.push((w.name.clone(), g));
        }
        Ok(())
    })
    .expect("stream");
    u.finish().expect("finish");
    ctx.flush_uploads();
    ctx.wait("ring upload").expect("wait");
    uploaded
        .into_iter()
        .map(|(n, g)| (n, read_back(ctx, &g)))
        .collect()
}

#[test]
fn the_ring_uploads_every_fixture_byte_for_byte_as_the_sequential_path() {
    let ctx = context();
    for dir in fixtures() {
        let ckpt = Checkpoint::open(&dir).expect("open");
        // The reference: the loader's packed host copies, one
        // `queue.write_buffer` per chunk on this thread.
        let packed = qwgpu_loader::load_model(&ckpt).expect("pack");
        let expected: Vec<(String, Vec<Vec<u8>>)> = packed
            .weights()
            .into_iter()
            .map(|w| {
                let g = GpuWeight::upload(&ctx, w).expect("reference upload");
                (w.name.clone(), g)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(n, g)| {
                ctx.flush_uploads();
                (n, read_back(&ctx, &g))
            })
            .collect();
        for (threads, sizes) in [(4, TINY), (1, TINY), (2, RingSizes::default())] {
            let got = ring_upload(&ctx, &ckpt, threads, sizes);
            assert_eq!(got.len(), expected.len(), "{dir:?}: weights");
            for ((name, bufs), (want_name, want)) in got.iter().zip(&expected) {
                assert_eq!(name, want_name, "{dir:?}: weight order");
                assert!(
                    bufs == want,
                    "{dir:?}: `{name}` differs from the sequential upload ({threads} threads, {sizes:?})"
                );
            }
        }
        // The in-memory path (packed host bytes, no checkpoint) through the ring.
        let mut progress = |_| {};
        let mut u = Uploader::with_ring(&ctx, None, &mut progress, 3, TINY);
        let gs: Vec<GpuWeight> = packed
            .weights()
            .into_iter()
            .map(|w| u.weight(w).expect("ring upload of packed bytes"))
            .collect();
        u.finish().expect("finish");
        ctx.flush_uploads();
        for (g, (name, want)) in gs.iter().zip(&expected) {
            assert!(
                read_back(&ctx, g) == *want,
                "{dir:?}: `{name}` from packed bytes differs"
            );
        }
    }
}

/// A `dtype` weight of `rows` rows of `cols` columns with random bytes.
fn random_weight(
    name: &str,
    dtype: qwgpu_checkpoint::Dtype,
    rows: usize,
    cols: usize,
    seed: u64,
) -> PackedWeight {
    let mut rng = Rng::new(seed);
    let data: Vec<u8> = (0..rows * cols * dtype.size())
        .map(|_| (rng.uniform() * 256.0) as u8)
        .collect();
    PackedWeight {
        name: name.into(),
        dtype,
        rows,
        cols,
        data,
        shards: vec![qwgpu_loader::Shard {
            name: "w".into(),
            source: String::new(),
            row_offset: 0,
            rows,
        }],
        scale: qwgpu_loader::ScaleScheme::None,
        activation: qwgpu_loader::ActivationQuant::None,
    }
}

#[test]
fn rows_padded_to_the_gpu_stride_match_the_sequential_path_whatever_was_staged_before() {
    use qwgpu_checkpoint::Dtype::{BF16, F16, F32, F8E4M3, F8E5M2};
    let ctx = context();
    // Odd column counts in every stored dtype (rows of 26, 46, 2, 12, 13 and
    // 7 bytes padded to 16-byte multiples), after a weight that leaves
    // non-zero bytes in every slot.
    let weights = [
        random_weight("full rows", BF16, 300, 64, 1),
        random_weight("13 BF16 columns", BF16, 517, 13, 2),
        random_weight("23 F16 columns", F16, 129, 23, 3),
        random_weight("1 BF16 column", BF16, 1000, 1, 4),
        random_weight("3 F32 columns", F32, 700, 3, 5),
        random_weight("13 E4M3 columns", F8E4M3, 900, 13, 6),
        random_weight("7 E5M2 columns", F8E5M2, 333, 7, 7),
    ];
    let mut progress = |_| {};
    let mut u = Uploader::with_ring(&ctx, None, &mut progress, 4, TINY);
    let gs: Vec<GpuWeight> = weights
        .iter()
        .map(|w| u.weight(w).expect("ring upload"))
        .collect();
    u.finish().expect("finish");
    ctx.flush_uploads();
    for (w, g) in weights.iter().zip(&gs) {
        let want = GpuWeight::upload(&ctx, w).expect("reference");
        ctx.flush_uploads();
        assert!(
            read_back(&ctx, g) == read_back(&ctx, &want),
            "`{name}` differs",
            name = w.name
        );
    }
}

/// A 4-bit weight `[rows, cols]` (canonical form) with random nibbles,
/// zeros and f16-exact scales, groups of `group` columns.
fn random_int4(name: &str, rows: usize, cols: usize, group: usize, seed: u64) -> PackedWeight {
    let mut rng = Rng::new(seed);
    let mut nibble = || ((rng.uniform() * 16.0) as u32).min(15);
    let wpr = cols.div_ceil(8);
    let words: Vec<u32> = (0..rows * wpr)
        .map(|i| {
            let w = (0..8).fold(0u32, |w, j| w | (nibble() << (4 * j)));
            match cols % 8 {
                k if k != 0 && i % wpr == wpr - 1 => w & ((1u32 << (4 * k)) - 1),
                _ => w,
            }
        })
        .collect();
    let groups = rows * cols.div_ceil(group);
    let zeros: Vec<u8> = (0..groups).map(|_| nibble() as u8).collect();
    let scales: Vec<f32> = (0..groups).map(|i| (i % 7) as f32 * 0.25 + 0.125).collect();
    PackedWeight {
        name: name.into(),
        dtype: qwgpu_checkpoint::Dtype::I32,
        rows,
        cols,
        data: Vec::new(),
        shards: vec![qwgpu_loader::Shard {
            name: "w".into(),
            source: String::new(),
            row_offset: 0,
            rows,
        }],
        scale: qwgpu_loader::ScaleScheme::Int4(Box::new(qwgpu_loader::Int4Weights {
            group_size: group,
            words,
            scales,
            zeros,
        })),
        activation: qwgpu_loader::ActivationQuant::None,
    }
}

/// 4-bit words go through the staging ring like every other weight's rows
/// (the ring counts them), padded to the GPU stride exactly as the
/// sequential upload pads them, whatever the slots held before.
#[test]
fn int4_words_go_through_the_ring_as_the_sequential_upload_lays_them_out() {
    let ctx = context();
    let weights = [
        random_weight("full rows", qwgpu_checkpoint::Dtype::BF16, 300, 64, 11),
        random_int4("13 columns", 37, 13, 13, 12),
        random_int4("40 columns", 300, 40, 8, 13),
        random_int4("4096 columns", 9, 4096, 128, 14),
        random_int4("256 columns", 129, 256, 32, 15),
    ];
    let mut progress = |_| {};
    let mut u = Uploader::with_ring(&ctx, None, &mut progress, 3, TINY);
    let gs: Vec<GpuWeight> = weights
        .iter()
        .map(|w| u.weight(w).expect("ring upload"))
        .collect();
    let staged = u.finish().expect("finish").bytes;
    ctx.flush_uploads();
    let want_staged: usize = weights
        .iter()
        .map(|w| match w.int4() {
            Some(q) => q.words.len() * 4,
            None => w.data.len(),
        })
        .sum();
    assert_eq!(staged, want_staged as u64, "bytes through the ring");
    for (w, g) in weights.iter().zip(&gs) {
        let want = GpuWeight::upload(&ctx, w).expect("reference");
        ctx.flush_uploads();
        assert_eq!(g.format, want.format, "`{name}`", name = w.name);
        assert!(
            read_back(&ctx, g) == read_back(&ctx, &want),
            "`{name}` differs",
            name = w.name
        );
    }
}

/// A copy of the fixture `name` in a fresh temp folder.
fn copy_fixture(name: &str, tag: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new(tag);
    let src = fixtures_dir().join(name);
    for e in std::fs::read_dir(&src).expect("fixture").flatten() {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
    }
    let file = dir.path().join("model.safetensors");
    (dir, file)
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A folder under the system temp dir, removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Self {
            let pid = std::process::id();
            let path = std::env::temp_dir().join(format!("qwgpu-upload-{tag}-{pid}"));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The largest planned weight read straight from the checkpoint, its source
/// tensor and that tensor's absolute byte range in its file.
fn largest_borrowed_weight(ckpt: &Checkpoint) -> (PackedWeight, String, (usize, usize)) {
    let plan = qwgpu_loader::plan_model(ckpt).expect("plan");
    let w = plan
        .weights()
        .into_iter()
        .filter(|w| w.borrowed_sources().is_some_and(|n| n.len() == 1))
        .max_by_key(|w| w.rows * w.cols)
        .expect("a borrowed weight")
        .clone();
    let name = w.borrowed_sources().expect("borrowed")[0].to_string();
    let t = ckpt.tensor(&name).expect("tensor");
    let range = ckpt
        .stored_tensors()
        .into_iter()
        .find(|(f, h)| *f == t.file && h.name == t.source_name)
        .map(|(_, h)| (h.start, h.end))
        .expect("header entry");
    (w, name, range)
}

#[test]
fn a_checkpoint_truncated_after_opening_is_a_typed_error_naming_file_and_tensor() {
    let ctx = context();
    for (threads, sizes) in [(4, TINY), (1, RingSizes::default())] {
        let (_dir, file) = copy_fixture("dense-bf16-text", "truncated");
        let ckpt = Checkpoint::open(file.parent().expect("folder")).expect("open");
        let (w, tensor, (start, end)) = largest_borrowed_weight(&ckpt);
        // Cut the file in the middle of that tensor's bytes (its map stays).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open for truncation")
            .set_len(((start + end) / 2) as u64)
            .expect("truncate");
        let mut progress = |_| {};
        let mut u = Uploader::with_ring(&ctx, Some(&ckpt), &mut progress, threads, sizes);
        let err = u.weight(&w).expect_err("a truncated file must fail");
        let msg = err.to_string();
        assert!(
            matches!(
                &err,
                ModelError::Checkpoint(e) if matches!(**e, CheckpointError::TensorRead { .. })
            ),
            "{msg}"
        );
        assert!(
            msg.contains("model.safetensors") && msg.contains(&tensor) && msg.contains("ends"),
            "{msg}"
        );
        // Nothing more goes through a ring left with unfilled rows.
        let again = u.weight(&w).expect_err("after a failure");
        assert!(
            matches!(&again, ModelError::Internal { detail } if detail.contains("earlier")),
            "{again}"
        );
        assert!(u.finish().is_err());
    }
}
