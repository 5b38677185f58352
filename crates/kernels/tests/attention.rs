//! Gated full attention kernels against the CPU composition of `qwgpu_ops`
//! pieces (the same as `qwgpu_model::reference::attention`, without the
//! projections): sequences of prefill and decode calls as the model makes them,
//! decode at kv lengths around split and tile boundaries, each with the cache in
//! one page and in several pages of awkward sizes, the rope table, and argument
//! errors. Both test contexts.
//!
//! Tolerance: attention outputs abs 2e-5 + rel 1e-4 (f32 GPU math, other
//! summation order, online softmax); cached keys abs 1e-5 + rel 1e-5 (norm +
//! RoPE only); cached values bit-exact (a copy). Outputs and caches are poisoned
//! with NaN first, and cache rows past the written ones must stay NaN.

use qwgpu_kernels::attention::{
    self, attention_forward, rope_inv_freq, rope_table, AttnBuffers, AttnScratch,
};
use qwgpu_kernels::testing::cases::attention::{self as cases, dims, Layer, OUT_TOL, THETA};
use qwgpu_kernels::{testing, Dispatch, GpuContext, KernelError, Step};
use qwgpu_ops::compare::assert_close;
use qwgpu_ops::rng::Rng;
use qwgpu_ops::rope::Rope;

/// Prefill and decode calls in sequence, as the model makes them (the shared
/// case, which the browser runner runs too).
#[test]
fn call_sequences_match_cpu() {
    let sequences = cases::call_sequences();
    for t in testing::contexts() {
        pollster::block_on(cases::sequences(t, &sequences));
    }
}

/// Decode at kv lengths around the 64-key minimum split, the 256-key tile and
/// split boundaries, with the default split count and with 1, 3 and 4 splits
/// (one workgroup walking several tiles with the online softmax; with several
/// pages, fewer splits than the proportional share), the cache in one page and
/// in pages of 100, 37 and 563 rows. The cache prefix is written by the host.
#[test]
fn decode_across_split_boundaries() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (d, splits, pages) in [
            (dims(4, 2, 32, 8), None, vec![700]),
            (dims(4, 2, 32, 8), Some(1), vec![700]),
            (dims(8, 2, 32, 8), Some(3), vec![700]),
            (dims(4, 2, 32, 8), None, vec![100, 37, 563]),
            (dims(8, 2, 32, 8), Some(4), vec![100, 37, 563]),
        ] {
            let capacity: u32 = pages.iter().sum();
            let seed = 7 + splits.unwrap_or(0) as u64 + pages.len() as u64;
            let mut rng = Rng::new(seed);
            let layer = Layer::new(ctx, d, 1, &pages, splits, &mut rng);
            let per = (d.nkv * d.hd) as usize;
            let prefix_k = rng.normal_vec(capacity as usize * per);
            let prefix_v = rng.normal_vec(capacity as usize * per);
            for len in [
                1u32, 63, 64, 65, 100, 101, 129, 137, 138, 255, 256, 257, 600,
            ] {
                let pos = len - 1;
                let rows = pos as usize * per;
                layer.poison();
                layer.write_prefix(&prefix_k, &prefix_v, pos as usize);
                let qkv = rng.normal_vec(d.qkv_width() as usize);
                let decode = layer.forward(1, pos).unwrap();
                let got = pollster::block_on(layer.run(&decode, &qkv, pos, 1));
                let (mut keys, mut values) = (prefix_k[..rows].to_vec(), prefix_v[..rows].to_vec());
                let want = layer.cpu(&qkv, pos as usize, &mut keys, &mut values);
                let what = format!(
                    "{t_name} seed {seed} {d:?} pages {pages:?} splits {layer_scratch_splits} kv length {len}",
                    t_name = t.name,
                    layer_scratch_splits = layer.scratch.splits()
                );
                assert_close(&got, &want, OUT_TOL, &what);
                pollster::block_on(layer.check_cache(&keys, &values, len as usize, &what));
            }
        }
    }
}

/// A call on row `row` of 5-row qkv / out buffers (a session's row of a
/// batched decode step, read and written in place): decode and a 2-token
/// call, against the CPU; every other row of `out` stays NaN.
#[test]
fn calls_on_a_batch_row_in_place() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let d = dims(4, 2, 32, 8);
        // Rows of 1536 / 512 bytes: aligned for every WebGPU device (<= 256).
        assert!(
            attention::rows_bindable(ctx, &d),
            "{t_name}: rows not bindable",
            t_name = t.name
        );
        let mut rng = Rng::new(31);
        let pages = vec![100, 37, 563];
        let capacity: u32 = pages.iter().sum();
        let layer = Layer::new(ctx, d, 5, &pages, Some(4), &mut rng);
        let per = (d.nkv * d.hd) as usize;
        let (w, o) = (d.qkv_width() as usize, (d.nh * d.hd) as usize);
        let prefix_k = rng.normal_vec(capacity as usize * per);
        let prefix_v = rng.normal_vec(capacity as usize * per);
        for (row, tt, pos) in [(3u32, 1u32, 137u32), (0, 1, 20), (2, 2, 300), (4, 1, 0)] {
            layer.poison();
            layer.write_prefix(&prefix_k, &prefix_v, pos as usize);
            let mine = rng.normal_vec(tt as usize * w);
            let mut qkv = vec![f32::NAN; 5 * w];
            qkv[row as usize * w..(row + tt) as usize * w].copy_from_slice(&mine);
            ctx.queue
                .write_buffer(&layer.qkv, 0, bytemuck::cast_slice(&qkv));
            let table = rope_table(&layer.inv_freq, pos as usize, tt as usize, 5);
            if !table.is_empty() {
                ctx.queue
                    .write_buffer(&layer.rope, 0, bytemuck::cast_slice(&table));
            }
            ctx.queue.write_buffer(
                &layer.step,
                0,
                bytemuck::bytes_of(&Step::new(pos, tt, 0, 0)),
            );
            ctx.fill_f32(&layer.out, f32::NAN);
            let kv = layer.kv_pages(pos + tt - 1);
            let b = AttnBuffers {
                qkv: &layer.qkv,
                q_norm: &layer.q_norm,
                k_norm: &layer.k_norm,
                rope: &layer.rope,
                pages: &kv,
                step: &layer.step,
                out: &layer.out,
                row,
            };
            let ds = attention_forward(ctx, &d, &b, &layer.scratch, tt, 5).unwrap();
            ctx.run("attention row", &ds.iter().collect::<Vec<_>>())
                .unwrap();
            let got = ctx.read_f32(&layer.out, 0, 5 * o).unwrap();
            let rows = pos as usize * per;
            let (mut keys, mut values) = (prefix_k[..rows].to_vec(), prefix_v[..rows].to_vec());
            let want = layer.cpu(&mine, pos as usize, &mut keys, &mut values);
            let what = format!("{t_name} row {row} T {tt} pos {pos}", t_name = t.name);
            let (a, z) = (row as usize * o, (row + tt) as usize * o);
            assert_close(&got[a..z], &want, OUT_TOL, &what);
            assert!(
                got[..a].iter().chain(&got[z..]).all(|v| v.is_nan()),
                "{what}: other rows of out were written"
            );
            pollster::block_on(layer.check_cache(&keys, &values, (pos + tt) as usize, &what));
        }
    }
}

/// A batched decode step's attention: 3 and then 5 sessions (each its own KV
/// pages, split count and position, pages partly filled) decode into their
/// rows of one partials buffer, reading and writing their rows of shared qkv /
/// out, then ONE merge launch for all rows; every row against the CPU.
#[test]
fn merge_rows_of_sessions_at_different_positions() {
    let d = dims(4, 2, 32, 8);
    // (pages, splits, position of the decode token)
    let sessions: [(&[u32], Option<u32>, u32); 5] = [
        (&[100, 37, 563], Some(4), 300),
        (&[256], None, 10),
        (&[64, 64], Some(3), 100),
        (&[700], Some(1), 0),
        (&[256, 256, 512], None, 611),
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for n in [3usize, 5] {
            let mut rng = Rng::new(40 + n as u64);
            let (w, o) = (d.qkv_width() as usize, (d.nh * d.hd) as usize);
            let per = (d.nkv * d.hd) as usize;
            let qkv_b = ctx.storage("batch qkv", (n * w * 4) as u64).unwrap();
            let out_b = ctx.storage("batch out", (n * o * 4) as u64).unwrap();
            let layers: Vec<Layer> = sessions[..n]
                .iter()
                .map(|(pages, splits, _)| Layer::new(ctx, d, 1, pages, *splits, &mut rng))
                .collect();
            let max_splits = layers.iter().map(|l| l.scratch.splits()).max().unwrap();
            let partials = attention::AttnRowPartials::new(ctx, &d, n as u32, max_splits).unwrap();
            let qkv: Vec<f32> = rng.normal_vec(n * w);
            ctx.queue
                .write_buffer(&qkv_b, 0, bytemuck::cast_slice(&qkv));
            ctx.fill_f32(&out_b, f32::NAN);
            let mut launches = Vec::new();
            let mut nsplits = Vec::new();
            let mut wants = Vec::new();
            for (i, (layer, &(_, _, pos))) in layers.iter().zip(&sessions[..n]).enumerate() {
                let cap = layer.capacity as usize;
                let (pk, pv) = (rng.normal_vec(cap * per), rng.normal_vec(cap * per));
                layer.write_prefix(&pk, &pv, pos as usize);
                let table = rope_table(&layer.inv_freq, pos as usize, 1, 1);
                if !table.is_empty() {
                    ctx.queue
                        .write_buffer(&layer.rope, 0, bytemuck::cast_slice(&table));
                }
                ctx.queue.write_buffer(
                    &layer.step,
                    0,
                    bytemuck::bytes_of(&Step::new(pos, 1, 0, 0)),
                );
                let kv = layer.kv_pages(pos);
                let rows: Vec<u32> = kv.iter().map(|p| p.rows).collect();
                nsplits.push(layer.scratch.decode_partials(&rows));
                let b = AttnBuffers {
                    qkv: &qkv_b,
                    q_norm: &layer.q_norm,
                    k_norm: &layer.k_norm,
                    rope: &layer.rope,
                    pages: &kv,
                    step: &layer.step,
                    out: &out_b,
                    row: i as u32,
                };
                launches.extend(
                    attention::attention_decode_into(ctx, &d, &b, &layer.scratch, 1, &partials)
                        .unwrap(),
                );
                let rows_n = pos as usize * per;
                let (mut keys, mut values) = (pk[..rows_n].to_vec(), pv[..rows_n].to_vec());
                wants.push(layer.cpu(
                    &qkv[i * w..(i + 1) * w],
                    pos as usize,
                    &mut keys,
                    &mut values,
                ));
            }
            let merge =
                attention::attention_merge_rows(ctx, &d, &partials, &nsplits, &qkv_b, &out_b)
                    .unwrap();
            launches.push(merge);
            ctx.run("attention rows", &launches.iter().collect::<Vec<_>>())
                .unwrap();
            let got = ctx.read_f32(&out_b, 0, n * o).unwrap();
            for (i, want) in wants.iter().enumerate() {
                let what = format!(
                    "{t_name} {n} sessions row {i} {s:?} splits {nsplits:?}",
                    t_name = t.name,
                    s = sessions[i]
                );
                assert_close(&got[i * o..(i + 1) * o], want, OUT_TOL, &what);
            }
            // Arguments are checked: a split count past the partials' rows.
            let mut bad = nsplits.clone();
            bad[0] = max_splits + 1;
            assert!(
                attention::attention_merge_rows(ctx, &d, &partials, &bad, &qkv_b, &out_b).is_err()
            );
        }
    }
}

/// The table reproduces `Rope::apply`'s cos/sin bit for bit (rotating unit
/// vectors extracts them), and rows past `t` are zero.
#[test]
fn rope_table_matches_ops_rope() {
    for (rd, start, t, max_t) in [
        (8usize, 0usize, 3usize, 5usize),
        (64, 262_000, 4, 4),
        (6, 65, 1, 2),
    ] {
        let rope = Rope::new(rd, THETA);
        let half = rd / 2;
        let table = rope_table(&rope_inv_freq(rd, THETA), start, t, max_t);
        assert_eq!(table.len(), 2 * max_t * half);
        for j in 0..max_t {
            for i in 0..half {
                let (mut c, mut s) = (0.0, 0.0);
                if j < t {
                    let mut e = vec![0.0f32; rd];
                    e[i] = 1.0;
                    rope.apply(&mut e, start + j);
                    (c, s) = (e[i], e[i + half]);
                }
                assert_eq!(
                    table[j * half + i].to_bits(),
                    c.to_bits(),
                    "cos rd {rd} row {j} i {i}"
                );
                assert_eq!(
                    table[(max_t + j) * half + i].to_bits(),
                    s.to_bits(),
                    "sin rd {rd} row {j} i {i}"
                );
            }
        }
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let is_args = |r: Result<_, KernelError>, what: &str| match r {
        Err(KernelError::Arguments { .. }) => {}
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    for (d, what) in [
        (dims(4, 2, 30, 8), "hd not a multiple of 4"),
        (dims(4, 2, 260, 8), "hd above 256"),
        (dims(4, 3, 32, 8), "nh not a multiple of nkv"),
        (dims(4, 2, 32, 7), "odd rotary_dim"),
        (dims(4, 2, 32, 40), "rotary_dim above hd"),
    ] {
        is_args(AttnScratch::new(ctx, &d, 4, 16).map(|_| ()), what);
    }
    is_args(
        AttnScratch::with_splits(ctx, &dims(4, 2, 32, 8), 4, 0).map(|_| ()),
        "zero splits",
    );
    is_args(
        AttnScratch::new(ctx, &dims(4, 2, 32, 8), 4, 0).map(|_| ()),
        "zero capacity",
    );
    let mut rng = Rng::new(1);
    let layer = Layer::new(ctx, dims(4, 2, 32, 8), 4, &[16, 2], None, &mut rng);
    is_args(layer.forward(5, 0).map(|_| ()), "T above max_t");
    is_args(layer.forward(0, 0).map(|_| ()), "T = 0");
    is_args(
        layer.forward(3, 16).map(|_| ()),
        "T above the last page's rows",
    );
    is_args(layer.forward_with(&[], 1).map(|_| ()), "no pages");
    let small = ctx.storage("small", 16).unwrap();
    let mut pages = layer.kv_pages(0);
    pages[0].keys = &small;
    is_args(layer.forward_with(&pages, 1).map(|_| ()), "page too small");
    let b = AttnBuffers {
        qkv: &layer.qkv,
        q_norm: &layer.q_norm,
        k_norm: &layer.k_norm,
        rope: &layer.rope,
        pages: &layer.kv_pages(0),
        step: &layer.step,
        out: &small,
        row: 0,
    };
    is_args(
        attention_forward(ctx, &layer.dims, &b, &layer.scratch, 2, 4).map(|_| ()),
        "output too small",
    );
    is_args(
        attention_forward(ctx, &layer.dims, &b, &layer.scratch, 1, 3).map(|_| ()),
        "max_t differs from the scratch",
    );
    assert_eq!(attention::decode_splits(1), 1);
    assert_eq!(attention::decode_splits(700), 11);
    assert_eq!(attention::decode_splits(262_144), attention::MAX_SPLITS);
    // Page split shares: one each at least, proportional, within the budget.
    assert_eq!(attention::page_splits(&[256, 256], 8), vec![4, 4]);
    assert_eq!(attention::page_splits(&[100, 37, 563], 11), vec![2, 1, 7]);
    for (rows, budget) in [(vec![1u32, 1, 1], 3u32), (vec![256; 40], 256), (vec![5], 1)] {
        let s = attention::page_splits(&rows, budget);
        assert!(s.iter().all(|&n| n >= 1), "{rows:?} {s:?}");
        assert!(s.iter().sum::<u32>() <= budget, "{rows:?} {s:?}");
    }
}

/// Timing on a real GPU (not run by default; no CPU check):
/// `cargo test --release -p qwgpu-kernels --test kernels -- --ignored --nocapture attention::bench`.
/// Qwen3.5 geometries (hd 256, rotary 64); decode at several kv lengths, one
/// prefill. Each figure: the launches recorded `REPS` times into one pass,
/// GPU time (pass timestamps) of the best of 8 submissions over `REPS`
/// (includes the prep kernel); then each launch alone.
#[test]
#[ignore]
fn bench_attention() {
    const REPS: usize = 50;
    let ctx = GpuContext::new(&qwgpu_kernels::ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    })
    .unwrap();
    println!("{}", ctx.describe());
    // GPU time per repetition from timestamps at the pass's start and end;
    // two submissions warm up, then the best of 8.
    let query = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps"),
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let period = ctx.queue.get_timestamp_period() as f64 * 1e-9;
    let time = |launches: &[Dispatch], reps: usize| {
        (0..10)
            .map(|_| {
                let mut enc = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("bench"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &query,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }),
                    });
                    for _ in 0..reps {
                        for l in launches {
                            l.record(&mut pass);
                        }
                    }
                }
                enc.resolve_query_set(&query, 0..2, &resolved, 0);
                ctx.queue.submit([enc.finish()]);
                let ts = ctx.read_bytes(&resolved, 0, 16).unwrap();
                let ts: Vec<u64> = bytemuck::pod_collect_to_vec(&ts);
                (ts[1] - ts[0]) as f64 * period / reps as f64
            })
            .skip(2)
            .fold(f64::INFINITY, f64::min)
    };
    for (name, d) in [
        ("nh16/nkv4 (9B)", dims(16, 4, 256, 64)),
        ("nh24/nkv4 (27B)", dims(24, 4, 256, 64)),
        ("nh32/nkv2 (397B)", dims(32, 2, 256, 64)),
    ] {
        let (capacity, max_t) = (131_072u32, 2048u32);
        let mut rng = Rng::new(3);
        let layer = Layer::new(&ctx, d, max_t, &[capacity], None, &mut rng);
        for (k, v, _) in &layer.pages {
            ctx.fill_f32(k, 0.01);
            ctx.fill_f32(v, 0.01);
        }
        let qkv = rng.normal_vec((max_t * d.qkv_width()) as usize);
        ctx.queue
            .write_buffer(&layer.qkv, 0, bytemuck::cast_slice(&qkv));
        let decode = layer.forward(1, 0).unwrap();
        // Bring the clocks up after the host-side fills.
        ctx.queue.write_buffer(
            &layer.step,
            0,
            bytemuck::bytes_of(&Step::new(capacity - 1, 1, 0, 0)),
        );
        time(&decode, REPS);
        for len in [1024u32, 4096, 32_768, 131_072] {
            ctx.queue.write_buffer(
                &layer.step,
                0,
                bytemuck::bytes_of(&Step::new(len - 1, 1, 0, 0)),
            );
            let s = time(&decode, REPS);
            let parts: Vec<String> = decode
                .iter()
                .map(|l| {
                    format!(
                        "{l_label} {us:.1}",
                        l_label = l.label,
                        us = time(std::slice::from_ref(l), REPS) * 1e6
                    )
                })
                .collect();
            println!("    {}", parts.join(", "));
            let bytes = 2.0 * len as f64 * (d.nkv * d.hd * 4) as f64;
            println!(
                "{name} decode kv {len:>6}: {s_1e6:8.1} us  {bytes_s_1e9:7.1} GB/s (K+V)  splits {layer_scratch_splits}",
                s_1e6 = s * 1e6,
                bytes_s_1e9 = bytes / s / 1e9,
                layer_scratch_splits = layer.scratch.splits()
            );
        }
        for (t, pos) in [(512u32, 0u32), (2048, 0), (2048, 8192)] {
            ctx.queue
                .write_buffer(&layer.step, 0, bytemuck::bytes_of(&Step::new(pos, t, 0, 0)));
            let launches = layer.forward(t, pos).unwrap();
            let s = time(&launches, 3);
            // QKᵀ and PV, 2 flops per multiply-add, causal.
            let pairs: f64 = (0..t).map(|i| (pos + i + 1) as f64).sum();
            let flops = 4.0 * pairs * (d.nh * d.hd) as f64;
            println!(
                "{name} prefill T {t:>5} at {pos:>5}: {s_1e6:8.1} us  {flops_s_1e12:6.2} TFLOP/s",
                s_1e6 = s * 1e6,
                flops_s_1e12 = flops / s / 1e12
            );
        }
    }
}
