//! Gated full attention kernels against the CPU composition of `qwgpu_ops`
//! pieces (the same as `qwgpu_model::reference::attention`, without the
//! projections): sequences of prefill and decode calls as the model makes them,
//! decode at kv lengths around split and tile boundaries, the rope table, and
//! argument errors. Both test contexts.
//!
//! Tolerance: attention outputs abs 2e-5 + rel 1e-4 (f32 GPU math, other
//! summation order, online softmax); cached keys abs 1e-5 + rel 1e-5 (norm +
//! RoPE only); cached values bit-exact (a copy). Outputs and caches are poisoned
//! with NaN first, and cache rows past the written ones must stay NaN.

use qwgpu_kernels::attention::{
    self, attention_forward, rope_inv_freq, rope_table, AttnBuffers, AttnDims, AttnScratch,
};
use qwgpu_kernels::{testing, Dispatch, GpuContext, KernelError, Step};
use qwgpu_ops::compare::{assert_close, Tol};
use qwgpu_ops::mixers::{attention_core, AttnShape};
use qwgpu_ops::rng::Rng;
use qwgpu_ops::rope::Rope;

const THETA: f64 = 1e7;
const EPS: f32 = 1e-6;
const OUT_TOL: Tol = Tol::new(2e-5, 1e-4);
const KEY_TOL: Tol = Tol::new(1e-5, 1e-5);

/// CPU oracle: the reference's attention core (qwgpu_ops::mixers), from the qkv
/// rows to the gated output (before `o_proj`), appending this call's keys/values.
#[allow(clippy::too_many_arguments)]
fn cpu_attention(
    d: &AttnDims,
    qkv: &[f32],
    q_norm: &[f32],
    k_norm: &[f32],
    rope: &Rope,
    start: usize,
    keys: &mut Vec<f32>,
    values: &mut Vec<f32>,
) -> Vec<f32> {
    let shape = AttnShape {
        nh: d.nh as usize,
        nkv: d.nkv as usize,
        hd: d.hd as usize,
        eps: d.eps,
    };
    attention_core(&shape, qkv, q_norm, k_norm, rope, start, keys, values)
}

/// One layer's GPU buffers plus the matching CPU state.
struct Layer<'c> {
    ctx: &'c GpuContext,
    dims: AttnDims,
    max_t: u32,
    capacity: u32,
    qkv: wgpu::Buffer,
    q_norm: wgpu::Buffer,
    k_norm: wgpu::Buffer,
    rope: wgpu::Buffer,
    keys: wgpu::Buffer,
    values: wgpu::Buffer,
    step: wgpu::Buffer,
    out: wgpu::Buffer,
    scratch: AttnScratch,
    q_norm_h: Vec<f32>,
    k_norm_h: Vec<f32>,
    inv_freq: Vec<f32>,
    cpu_rope: Rope,
}

impl<'c> Layer<'c> {
    fn new(
        ctx: &'c GpuContext,
        dims: AttnDims,
        max_t: u32,
        capacity: u32,
        splits: Option<u32>,
        rng: &mut Rng,
    ) -> Self {
        let (nh, nkv, hd) = (dims.nh as u64, dims.nkv as u64, dims.hd as u64);
        let q_norm_h: Vec<f32> = rng
            .normal_vec(hd as usize)
            .iter()
            .map(|v| 0.2 * v)
            .collect();
        let k_norm_h: Vec<f32> = rng
            .normal_vec(hd as usize)
            .iter()
            .map(|v| 0.2 * v)
            .collect();
        let half = (dims.rotary_dim / 2) as u64;
        let scratch = match splits {
            Some(s) => AttnScratch::with_splits(ctx, &dims, max_t, capacity, s),
            None => AttnScratch::new(ctx, &dims, max_t, capacity),
        }
        .unwrap();
        let layer = Self {
            ctx,
            dims,
            max_t,
            capacity,
            qkv: ctx
                .storage("qkv", max_t as u64 * dims.qkv_width() as u64 * 4)
                .unwrap(),
            q_norm: ctx.upload("q_norm", &q_norm_h).unwrap(),
            k_norm: ctx.upload("k_norm", &k_norm_h).unwrap(),
            rope: ctx.storage("rope", 2 * max_t as u64 * half * 4).unwrap(),
            keys: ctx.storage("keys", capacity as u64 * nkv * hd * 4).unwrap(),
            values: ctx
                .storage("values", capacity as u64 * nkv * hd * 4)
                .unwrap(),
            step: ctx.uniform("step", &Step::default()),
            out: ctx.storage("out", max_t as u64 * nh * hd * 4).unwrap(),
            scratch,
            q_norm_h,
            k_norm_h,
            inv_freq: rope_inv_freq(dims.rotary_dim as usize, THETA),
            cpu_rope: Rope::new(dims.rotary_dim as usize, THETA),
        };
        ctx.fill_f32(&layer.keys, f32::NAN);
        ctx.fill_f32(&layer.values, f32::NAN);
        layer
    }

    fn buffers(&self) -> AttnBuffers<'_> {
        AttnBuffers {
            qkv: &self.qkv,
            q_norm: &self.q_norm,
            k_norm: &self.k_norm,
            rope: &self.rope,
            keys: &self.keys,
            values: &self.values,
            step: &self.step,
            out: &self.out,
        }
    }

    fn forward(&self, t: u32) -> Result<Vec<Dispatch>, KernelError> {
        attention_forward(
            self.ctx,
            &self.dims,
            &self.buffers(),
            &self.scratch,
            t,
            self.max_t,
            self.capacity,
        )
    }

    /// Writes this call's inputs (qkv rows, rope table, step), poisons the
    /// output, runs `launches` and returns the `[t, nh·hd]` output.
    fn run(&self, launches: &[Dispatch], qkv: &[f32], pos: u32, t: u32) -> Vec<f32> {
        let ctx = self.ctx;
        ctx.queue
            .write_buffer(&self.qkv, 0, bytemuck::cast_slice(qkv));
        let table = rope_table(
            &self.inv_freq,
            pos as usize,
            t as usize,
            self.max_t as usize,
        );
        if !table.is_empty() {
            ctx.queue
                .write_buffer(&self.rope, 0, bytemuck::cast_slice(&table));
        }
        ctx.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&Step::new(pos, t, 0, 0)));
        ctx.fill_f32(&self.out, f32::NAN);
        let refs: Vec<&Dispatch> = launches.iter().collect();
        ctx.run("attention", &refs).unwrap();
        let n = (t * self.dims.nh * self.dims.hd) as usize;
        ctx.read_f32(&self.out, 0, n).unwrap()
    }

    fn cpu(&self, qkv: &[f32], pos: usize, keys: &mut Vec<f32>, values: &mut Vec<f32>) -> Vec<f32> {
        cpu_attention(
            &self.dims,
            qkv,
            &self.q_norm_h,
            &self.k_norm_h,
            &self.cpu_rope,
            pos,
            keys,
            values,
        )
    }

    /// Checks cache rows `0..rows` against the CPU cache and that every later
    /// row is still NaN (no stray writes).
    fn check_cache(&self, keys: &[f32], values: &[f32], rows: usize, what: &str) {
        let per = (self.dims.nkv * self.dims.hd) as usize;
        let total = self.capacity as usize * per;
        let got_k = self.ctx.read_f32(&self.keys, 0, total).unwrap();
        let got_v = self.ctx.read_f32(&self.values, 0, total).unwrap();
        assert_close(
            &got_k[..rows * per],
            &keys[..rows * per],
            KEY_TOL,
            &format!("{what} keys"),
        );
        assert_close(
            &got_v[..rows * per],
            &values[..rows * per],
            Tol::f32_exact(),
            &format!("{what} values"),
        );
        assert!(
            got_k[rows * per..]
                .iter()
                .chain(&got_v[rows * per..])
                .all(|v| v.is_nan()),
            "{what}: cache rows past {rows} were written"
        );
    }
}

fn dims(nh: u32, nkv: u32, hd: u32, rotary_dim: u32) -> AttnDims {
    AttnDims {
        nh,
        nkv,
        hd,
        rotary_dim,
        eps: EPS,
    }
}

/// Prefill and decode calls in sequence, as the model makes them: decode
/// launches recorded once and replayed at every position; every output and
/// the final cache compared with the CPU.
#[test]
fn call_sequences_match_cpu() {
    // (dims, max_t, capacity, token counts of the successive calls)
    let cases: Vec<(AttnDims, u32, u32, Vec<u32>)> = vec![
        // Fixture geometry: GQA group 2.
        (dims(4, 2, 32, 8), 130, 256, vec![65, 1, 1, 3, 130, 1, 1]),
        // Group 1, hd 8.
        (dims(4, 4, 8, 4), 64, 80, vec![64, 1, 3, 1]),
        // Group 4, starting with a decode at position 0.
        (dims(8, 2, 32, 8), 64, 100, vec![1, 1, 3, 64, 1]),
        // Group 3, hd 20 (5 vec4 per head), rotary 6 (odd half).
        (dims(6, 2, 20, 6), 17, 40, vec![17, 1, 2, 1]),
        // hd 256 (Qwen3.5), group 4.
        (dims(4, 1, 256, 64), 3, 8, vec![3, 1, 1]),
        // Group 16 at hd 256: several q-head blocks per kv head in decode.
        (dims(16, 1, 256, 64), 2, 4, vec![2, 1]),
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (ci, (d, max_t, capacity, calls)) in cases.iter().enumerate() {
            let seed = 100 + ci as u64;
            let mut rng = Rng::new(seed);
            let layer = Layer::new(ctx, *d, *max_t, *capacity, None, &mut rng);
            let decode = layer.forward(1).unwrap();
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            let mut pos = 0u32;
            for &n in calls {
                let qkv = rng.normal_vec((n * d.qkv_width()) as usize);
                let launches = if n == 1 {
                    decode.clone()
                } else {
                    layer.forward(n).unwrap()
                };
                let got = layer.run(&launches, &qkv, pos, n);
                let want = layer.cpu(&qkv, pos as usize, &mut keys, &mut values);
                assert_close(
                    &got,
                    &want,
                    OUT_TOL,
                    &format!("{} seed {seed} {d:?} call T={n} at pos {pos}", t.name),
                );
                pos += n;
            }
            layer.check_cache(
                &keys,
                &values,
                pos as usize,
                &format!("{} seed {seed} {d:?}", t.name),
            );
        }
    }
}

/// Decode at kv lengths around the 64-key minimum split, the 256-key tile and
/// split boundaries, with the default split count and with 1 and 3 splits (one
/// workgroup walking several tiles with the online softmax). The cache prefix
/// is written by the host; one recorded launch list serves every length.
#[test]
fn decode_across_split_boundaries() {
    let capacity = 700u32;
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (d, splits) in [
            (dims(4, 2, 32, 8), None),
            (dims(4, 2, 32, 8), Some(1)),
            (dims(8, 2, 32, 8), Some(3)),
        ] {
            let seed = 7 + splits.unwrap_or(0) as u64;
            let mut rng = Rng::new(seed);
            let layer = Layer::new(ctx, d, 1, capacity, splits, &mut rng);
            let decode = layer.forward(1).unwrap();
            let per = (d.nkv * d.hd) as usize;
            let prefix_k = rng.normal_vec(capacity as usize * per);
            let prefix_v = rng.normal_vec(capacity as usize * per);
            for len in [1u32, 63, 64, 65, 129, 255, 256, 257, 600] {
                let pos = len - 1;
                let rows = pos as usize * per;
                ctx.fill_f32(&layer.keys, f32::NAN);
                ctx.fill_f32(&layer.values, f32::NAN);
                if rows > 0 {
                    ctx.queue
                        .write_buffer(&layer.keys, 0, bytemuck::cast_slice(&prefix_k[..rows]));
                    ctx.queue.write_buffer(
                        &layer.values,
                        0,
                        bytemuck::cast_slice(&prefix_v[..rows]),
                    );
                }
                let qkv = rng.normal_vec(d.qkv_width() as usize);
                let got = layer.run(&decode, &qkv, pos, 1);
                let (mut keys, mut values) = (prefix_k[..rows].to_vec(), prefix_v[..rows].to_vec());
                let want = layer.cpu(&qkv, pos as usize, &mut keys, &mut values);
                let what = format!(
                    "{} seed {seed} {d:?} splits {} kv length {len}",
                    t.name,
                    layer.scratch.splits()
                );
                assert_close(&got, &want, OUT_TOL, &what);
                layer.check_cache(&keys, &values, len as usize, &what);
            }
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
        AttnScratch::with_splits(ctx, &dims(4, 2, 32, 8), 4, 16, 0).map(|_| ()),
        "zero splits",
    );
    let mut rng = Rng::new(1);
    let layer = Layer::new(ctx, dims(4, 2, 32, 8), 4, 16, None, &mut rng);
    is_args(layer.forward(5).map(|_| ()), "T above max_t");
    is_args(layer.forward(0).map(|_| ()), "T = 0");
    let small = ctx.storage("small out", 16).unwrap();
    let mut b = layer.buffers();
    b.out = &small;
    is_args(
        attention_forward(ctx, &layer.dims, &b, &layer.scratch, 2, 4, 16).map(|_| ()),
        "output too small",
    );
    is_args(
        attention_forward(ctx, &layer.dims, &layer.buffers(), &layer.scratch, 1, 4, 32).map(|_| ()),
        "capacity differs from the scratch",
    );
    assert_eq!(attention::decode_splits(1), 1);
    assert_eq!(attention::decode_splits(700), 11);
    assert_eq!(attention::decode_splits(262_144), attention::MAX_SPLITS);
}

/// Timing on a real GPU (not run by default; no CPU check):
/// `cargo test --release -p qwgpu-kernels --test attention -- --ignored --nocapture bench`.
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
        let layer = Layer::new(&ctx, d, max_t, capacity, None, &mut rng);
        ctx.fill_f32(&layer.keys, 0.01);
        ctx.fill_f32(&layer.values, 0.01);
        let qkv = rng.normal_vec((max_t * d.qkv_width()) as usize);
        ctx.queue
            .write_buffer(&layer.qkv, 0, bytemuck::cast_slice(&qkv));
        let decode = layer.forward(1).unwrap();
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
                        "{} {:.1}",
                        l.label,
                        time(std::slice::from_ref(l), REPS) * 1e6
                    )
                })
                .collect();
            println!("    {}", parts.join(", "));
            let bytes = 2.0 * len as f64 * (d.nkv * d.hd * 4) as f64;
            println!(
                "{name} decode kv {len:>6}: {:8.1} us  {:7.1} GB/s (K+V)  splits {}",
                s * 1e6,
                bytes / s / 1e9,
                layer.scratch.splits()
            );
        }
        for (t, pos) in [(512u32, 0u32), (2048, 0), (2048, 8192)] {
            ctx.queue
                .write_buffer(&layer.step, 0, bytemuck::bytes_of(&Step::new(pos, t, 0, 0)));
            let launches = layer.forward(t).unwrap();
            let s = time(&launches, 3);
            // QKᵀ and PV, 2 flops per multiply-add, causal.
            let pairs: f64 = (0..t).map(|i| (pos + i + 1) as f64).sum();
            let flops = 4.0 * pairs * (d.nh * d.hd) as f64;
            println!(
                "{name} prefill T {t:>5} at {pos:>5}: {:8.1} us  {:6.2} TFLOP/s",
                s * 1e6,
                flops / s / 1e12
            );
        }
    }
}
