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

use qwgpu_ops::compare::{assert_close, Tol};
use qwgpu_ops::mixers::{attention_core, AttnShape};
use qwgpu_ops::rng::Rng;
use qwgpu_ops::rope::Rope;

use crate::attention::{
    self, attention_forward, rope_inv_freq, rope_table, AttnBuffers, AttnDims, AttnScratch, KvPage,
};
use crate::testing::TestContext;
use crate::{wgpu, Dispatch, GpuContext, KernelError, Step};

pub const THETA: f64 = 1e7;
pub const EPS: f32 = 1e-6;
pub const OUT_TOL: Tol = Tol::new(2e-5, 1e-4);
pub const KEY_TOL: Tol = Tol::new(1e-5, 1e-5);

/// CPU oracle: the reference's attention core (qwgpu_ops::mixers), from the qkv
/// rows to the gated output (before `o_proj`), appending this call's keys/values.
#[allow(clippy::too_many_arguments)]
pub fn cpu_attention(
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
pub struct Layer<'c> {
    pub ctx: &'c GpuContext,
    pub dims: AttnDims,
    pub max_t: u32,
    pub capacity: u32,
    pub qkv: wgpu::Buffer,
    pub q_norm: wgpu::Buffer,
    pub k_norm: wgpu::Buffer,
    pub rope: wgpu::Buffer,
    /// KV-cache pages: (keys, values, rows).
    pub pages: Vec<(wgpu::Buffer, wgpu::Buffer, u32)>,
    pub step: wgpu::Buffer,
    pub out: wgpu::Buffer,
    pub scratch: AttnScratch,
    pub q_norm_h: Vec<f32>,
    pub k_norm_h: Vec<f32>,
    pub inv_freq: Vec<f32>,
    pub cpu_rope: Rope,
}

impl<'c> Layer<'c> {
    /// A layer whose cache is `page_rows` pages (in position order).
    pub fn new(
        ctx: &'c GpuContext,
        dims: AttnDims,
        max_t: u32,
        page_rows: &[u32],
        splits: Option<u32>,
        rng: &mut Rng,
    ) -> Self {
        let capacity: u32 = page_rows.iter().sum();
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
            Some(s) => AttnScratch::with_splits(ctx, &dims, max_t, s),
            // At least one split per page (the model's pages of >= 256 rows
            // always have that many; these tests also use tiny pages).
            None if page_rows.len() as u32 > attention::decode_splits(capacity) => {
                AttnScratch::with_splits(ctx, &dims, max_t, page_rows.len() as u32)
            }
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
            pages: page_rows
                .iter()
                .map(|&rows| {
                    let bytes = rows as u64 * nkv * hd * 4;
                    let k = ctx.storage("keys", bytes).unwrap();
                    let v = ctx.storage("values", bytes).unwrap();
                    (k, v, rows)
                })
                .collect(),
            step: ctx.uniform("step", &Step::default()),
            out: ctx.storage("out", max_t as u64 * nh * hd * 4).unwrap(),
            scratch,
            q_norm_h,
            k_norm_h,
            inv_freq: rope_inv_freq(dims.rotary_dim as usize, THETA),
            cpu_rope: Rope::new(dims.rotary_dim as usize, THETA),
        };
        layer.poison();
        layer
    }

    pub fn poison(&self) {
        for (k, v, _) in &self.pages {
            self.ctx.fill_f32(k, f32::NAN);
            self.ctx.fill_f32(v, f32::NAN);
        }
    }

    /// The pages a call at `pos` binds: up to the one holding `pos`.
    pub fn kv_pages(&self, pos: u32) -> Vec<KvPage<'_>> {
        let mut start = 0;
        let mut out = Vec::new();
        for (keys, values, rows) in &self.pages {
            out.push(KvPage {
                keys,
                values,
                rows: *rows,
            });
            start += rows;
            if pos < start {
                break;
            }
        }
        out
    }

    pub fn forward_with(&self, pages: &[KvPage], t: u32) -> Result<Vec<Dispatch>, KernelError> {
        let b = AttnBuffers {
            qkv: &self.qkv,
            q_norm: &self.q_norm,
            k_norm: &self.k_norm,
            rope: &self.rope,
            pages,
            step: &self.step,
            out: &self.out,
            row: 0,
        };
        attention_forward(self.ctx, &self.dims, &b, &self.scratch, t, self.max_t)
    }

    /// Launches of a call of `t` tokens at `pos` (valid for every `pos` in the
    /// same page).
    pub fn forward(&self, t: u32, pos: u32) -> Result<Vec<Dispatch>, KernelError> {
        self.forward_with(&self.kv_pages(pos), t)
    }

    /// Writes cache rows `0 .. rows` (`[rows, nkv, hd]` each) across the pages.
    pub fn write_prefix(&self, keys: &[f32], values: &[f32], rows: usize) {
        let per = (self.dims.nkv * self.dims.hd) as usize;
        let mut start = 0usize;
        for (k, v, n) in &self.pages {
            let n = *n as usize;
            let take = rows.saturating_sub(start).min(n);
            if take > 0 {
                let (a, b) = (start * per, (start + take) * per);
                self.ctx
                    .queue
                    .write_buffer(k, 0, bytemuck::cast_slice(&keys[a..b]));
                self.ctx
                    .queue
                    .write_buffer(v, 0, bytemuck::cast_slice(&values[a..b]));
            }
            start += n;
        }
    }

    /// Every page's rows concatenated: (keys, values).
    pub async fn read_cache(&self) -> (Vec<f32>, Vec<f32>) {
        let per = (self.dims.nkv * self.dims.hd) as usize;
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (k, v, rows) in &self.pages {
            let n = *rows as usize * per;
            keys.extend(self.ctx.read_f32_async(k, 0, n).await.unwrap());
            values.extend(self.ctx.read_f32_async(v, 0, n).await.unwrap());
        }
        (keys, values)
    }

    /// Writes this call's inputs (qkv rows, rope table, step), poisons the
    /// output, runs `launches` and returns the `[t, nh·hd]` output.
    pub async fn run(&self, launches: &[Dispatch], qkv: &[f32], pos: u32, t: u32) -> Vec<f32> {
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
        ctx.read_f32_async(&self.out, 0, n).await.unwrap()
    }

    pub fn cpu(
        &self,
        qkv: &[f32],
        pos: usize,
        keys: &mut Vec<f32>,
        values: &mut Vec<f32>,
    ) -> Vec<f32> {
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
    pub async fn check_cache(&self, keys: &[f32], values: &[f32], rows: usize, what: &str) {
        let per = (self.dims.nkv * self.dims.hd) as usize;
        let (got_k, got_v) = self.read_cache().await;
        assert_eq!(got_k.len(), self.capacity as usize * per);
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

pub fn dims(nh: u32, nkv: u32, hd: u32, rotary_dim: u32) -> AttnDims {
    AttnDims {
        nh,
        nkv,
        hd,
        rotary_dim,
        eps: EPS,
    }
}

/// The call sequences of the native suite: GQA groups 1 to 16, head widths
/// 8 to 256, odd rotary halves, the cache in one page or several of awkward
/// sizes (pages of one row too).
pub fn call_sequences() -> Vec<(AttnDims, u32, Vec<u32>, Vec<u32>)> {
    // (dims, max_t, cache page rows, token counts of the successive calls);
    // a call never straddles pages (the model cuts its steps at page ends).
    vec![
        // Fixture geometry: GQA group 2; one page, then five.
        (
            dims(4, 2, 32, 8),
            130,
            vec![256],
            vec![65, 1, 1, 3, 130, 1, 1],
        ),
        (
            dims(4, 2, 32, 8),
            130,
            vec![65, 1, 4, 131, 55],
            vec![65, 1, 1, 3, 130, 1, 1],
        ),
        // Group 1, hd 8.
        (dims(4, 4, 8, 4), 64, vec![80], vec![64, 1, 3, 1]),
        (dims(4, 4, 8, 4), 64, vec![64, 4, 12], vec![64, 1, 3, 1]),
        // Group 4, starting with a decode at position 0; pages of one row.
        (dims(8, 2, 32, 8), 64, vec![100], vec![1, 1, 3, 64, 1]),
        (
            dims(8, 2, 32, 8),
            64,
            vec![1, 1, 3, 64, 31],
            vec![1, 1, 3, 64, 1],
        ),
        // Group 3, hd 20 (5 vec4 per head), rotary 6 (odd half).
        (dims(6, 2, 20, 6), 17, vec![40], vec![17, 1, 2, 1]),
        // hd 256 (Qwen3.5), group 4.
        (dims(4, 1, 256, 64), 3, vec![8], vec![3, 1, 1]),
        (dims(4, 1, 256, 64), 3, vec![3, 5], vec![3, 1, 1]),
        // Group 16 at hd 256: several q-head blocks per kv head in decode.
        (dims(16, 1, 256, 64), 2, vec![4], vec![2, 1]),
    ]
}

/// `(dims, max_t, cache page rows, token counts of the successive calls)`
/// of [`sequences`]; a call never straddles pages (the model cuts its steps
/// at page ends).
pub type Sequence = (AttnDims, u32, Vec<u32>, Vec<u32>);

/// Prefill and decode calls in sequence, as the model makes them: decode
/// launches recorded once per page and replayed at every position; every
/// output and the final cache compared with the CPU.
pub async fn sequences(t: &TestContext, cases: &[Sequence]) {
    {
        let ctx = &t.ctx;
        for (ci, (d, max_t, pages, calls)) in cases.iter().enumerate() {
            let seed = 100 + ci as u64;
            let mut rng = Rng::new(seed);
            let layer = Layer::new(ctx, *d, *max_t, pages, None, &mut rng);
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            let mut pos = 0u32;
            // Decode launches recorded once per page, replayed within it.
            let mut decode: Option<(usize, Vec<Dispatch>)> = None;
            for &n in calls {
                let qkv = rng.normal_vec((n * d.qkv_width()) as usize);
                let launches = if n == 1 {
                    let page = layer.kv_pages(pos).len();
                    if decode.as_ref().map(|(p, _)| *p) != Some(page) {
                        decode = Some((page, layer.forward(1, pos).unwrap()));
                    }
                    decode.as_ref().unwrap().1.clone()
                } else {
                    layer.forward(n, pos).unwrap()
                };
                let got = layer.run(&launches, &qkv, pos, n).await;
                let want = layer.cpu(&qkv, pos as usize, &mut keys, &mut values);
                assert_close(
                    &got,
                    &want,
                    OUT_TOL,
                    &format!(
                        "{t_name} seed {seed} {d:?} pages {pages:?} call T={n} at pos {pos}",
                        t_name = t.name
                    ),
                );
                pos += n;
            }
            layer
                .check_cache(
                    &keys,
                    &values,
                    pos as usize,
                    &format!("{t_name} seed {seed} {d:?}", t_name = t.name),
                )
                .await;
        }
    }
}
