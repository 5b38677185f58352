//! Dense matmul cases (every storage format and scale scheme, every
//! epilogue) against the CPU: `qwgpu_loader::dequantize` gives the exact f32
//! weights, the reference dot products are summed in f64.
//!
//! Tolerance (per output): `|got − want| ≤ 1e-5 · Σ|xᵢ·wᵢ| + 1e-5 · |want|`
//! (see [`weights::expected`]). Everything outside the written region must
//! keep its bits (outputs are poisoned with NaN for Store; x carries NaN
//! outside its rows to catch over-reads).

use qwgpu_checkpoint::Dtype;
use qwgpu_loader::PackedWeight;
use qwgpu_ops::rng::Rng;

use super::weights::{self, Scheme};
use crate::matmul::{matmul, Epilogue, MatmulArgs};
use crate::testing::TestContext;
use crate::{Dispatch, GpuContext, GpuWeight, KernelError};

/// Every epilogue, in the order the suites cycle through them.
pub const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];

/// A random scale in `0.25..2`.
pub fn scale(rng: &mut Rng) -> f32 {
    0.25 + 1.75 * rng.uniform()
}

/// Row ranges `(offset, rows)` covering `rows`: up to `n` parts, cut at unaligned rows.
pub fn split_rows(rows: usize, n: usize) -> Vec<(usize, usize)> {
    let mut cuts: Vec<usize> = [37usize, 1, 2, 50, 97]
        .iter()
        .copied()
        .filter(|&c| c < rows)
        .take(n.saturating_sub(1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([rows]) {
        if c > start {
            out.push((start, c - start));
            start = c;
        }
    }
    out
}

/// A random `[rows, cols]` weight of `dtype` with `scheme`, in two or three
/// shards cut at unaligned rows.
pub fn packed(
    rng: &mut Rng,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    scheme: Scheme,
) -> PackedWeight {
    let parts = match scheme {
        Scheme::PerShard { .. } => split_rows(rows, 3),
        _ => split_rows(rows, 2),
    };
    let data = weights::normal_data(rng, dtype, rows * cols);
    let mut draw = || scale(rng);
    weights::packed_weight(
        format!("w{rows}x{cols}"),
        dtype,
        rows,
        cols,
        &parts,
        scheme,
        data,
        &mut draw,
    )
}

/// Where a case's `tokens` rows of x and y lie: from an offset, a stride
/// apart (elements).
#[derive(Debug, Clone, Copy)]
pub struct Strided {
    pub tokens: usize,
    pub x_off: usize,
    pub x_stride: usize,
    pub y_off: usize,
    pub y_stride: usize,
}

impl Strided {
    /// x rows of `cols` values and y rows of `width`, each at a random offset
    /// below 5 with up to 2 elements between rows.
    pub fn random(rng: &mut Rng, tokens: usize, cols: usize, width: usize) -> Self {
        let x_off = (rng.uniform() * 5.0) as usize;
        let x_stride = cols + (rng.uniform() * 3.0) as usize;
        Self::with_x(rng, tokens, width, x_off, x_stride)
    }

    /// x as given; y rows of `width` at a random offset below 5 with up to 2
    /// elements between rows.
    pub fn with_x(
        rng: &mut Rng,
        tokens: usize,
        width: usize,
        x_off: usize,
        x_stride: usize,
    ) -> Self {
        let y_off = (rng.uniform() * 5.0) as usize;
        let y_stride = width + (rng.uniform() * 3.0) as usize;
        Self {
            tokens,
            x_off,
            x_stride,
            y_off,
            y_stride,
        }
    }

    /// x's buffer holding `rows` (NaN everywhere else, 3 past the end: an
    /// over-read shows).
    pub fn x_buf(&self, rows: &[Vec<f32>]) -> Vec<f32> {
        let cols = rows[0].len();
        let mut buf = vec![f32::NAN; self.x_off + (self.tokens - 1) * self.x_stride + cols + 3];
        for (i, r) in rows.iter().enumerate() {
            buf[self.x_off + i * self.x_stride..][..cols].copy_from_slice(r);
        }
        buf
    }

    /// y's initial contents for `width` outputs (2 past the end): random
    /// under Accumulate, else NaN (what is not written keeps its bits).
    pub fn y_init(&self, rng: &mut Rng, width: usize, epi: Epilogue) -> Vec<f32> {
        let ylen = self.y_off + (self.tokens - 1) * self.y_stride + width + 2;
        if epi == Epilogue::Accumulate {
            rng.normal_vec(ylen)
        } else {
            vec![f32::NAN; ylen]
        }
    }

    /// The index in y of output `c` of token `ti`.
    pub fn y_index(&self, ti: usize, c: usize) -> usize {
        self.y_off + ti * self.y_stride + c
    }

    /// The matmul's arguments over `x` and `y`.
    pub fn args<'a>(&self, x: &'a wgpu::Buffer, y: &'a wgpu::Buffer) -> MatmulArgs<'a> {
        MatmulArgs {
            x,
            x_offset: self.x_off as u32,
            x_stride: self.x_stride as u32,
            y,
            y_offset: self.y_off as u32,
            y_stride: self.y_stride as u32,
            t: self.tokens as u32,
        }
    }
}

/// As in the cases' messages.
impl std::fmt::Display for Strided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            x_off,
            x_stride,
            y_off,
            y_stride,
            ..
        } = self;
        write!(
            f,
            "x_off {x_off} x_stride {x_stride} y_off {y_off} y_stride {y_stride}"
        )
    }
}

/// x buffer of `rows` rows of `cols` values (normal), `stride` apart from `offset`; NaN everywhere else.
pub fn make_x(
    rng: &mut Rng,
    offset: usize,
    stride: usize,
    rows: usize,
    cols: usize,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let len = offset + (rows - 1) * stride + cols + 3;
    let mut buf = vec![f32::NAN; len];
    let mut xrows = Vec::new();
    for t in 0..rows {
        let r = rng.normal_vec(cols);
        buf[offset + t * stride..][..cols].copy_from_slice(&r);
        xrows.push(r);
    }
    (buf, xrows)
}

/// Runs `d` in one pass (submitted; the readback that follows waits for it).
pub fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("matmul test", &refs).unwrap();
}

/// The launches of one dense matmul (which kernel runs it).
pub type MatmulFn<'f> = &'f dyn Fn(
    &GpuContext,
    &GpuWeight,
    &MatmulArgs,
    Epilogue,
) -> Result<Vec<Dispatch>, KernelError>;

/// One dense matmul of `tokens` rows with random offsets/strides, launched by
/// `launch`, checked against the reference; `aligned`: x offset and stride
/// multiples of 4 (the GEMV kernels' vec4 loads of x), else random.
#[allow(clippy::too_many_arguments)]
pub async fn dense_case_with(
    t: &TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
    launch: MatmulFn<'_>,
    aligned: bool,
) {
    dense_case_rel(t, rng, gw, wdq, tokens, epi, what, launch, aligned, 1e-5).await;
}

/// [`dense_case_with`] at relative tolerance `rel` (per Σ|x·w|; the 4-bit
/// kernels scale partial sums, not products: 2e-5).
#[allow(clippy::too_many_arguments)]
pub async fn dense_case_rel(
    t: &TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
    launch: MatmulFn<'_>,
    aligned: bool,
    rel: f64,
) {
    let ctx = &t.ctx;
    let (rows, cols) = (gw.rows, gw.cols);
    let width = if epi == Epilogue::SwiGlu {
        rows / 2
    } else {
        rows
    };
    let s = if aligned {
        let x_off = 4 * (rng.uniform() * 2.0) as usize;
        let x_stride = cols.next_multiple_of(4) + 4 * (rng.uniform() * 2.0) as usize;
        Strided::with_x(rng, tokens, width, x_off, x_stride)
    } else {
        Strided::random(rng, tokens, cols, width)
    };
    let (xbuf, xrows) = make_x(rng, s.x_off, s.x_stride, tokens, cols);
    let init = s.y_init(rng, width, epi);
    let ylen = init.len();
    let x = ctx.upload("x", &xbuf).unwrap();
    let y = ctx.upload("y", &init).unwrap();
    let args = s.args(&x, &y);
    let d = launch(ctx, gw, &args, epi)
        .unwrap_or_else(|e| panic!("{t_name} {what}: {e}", t_name = t.name));
    run(ctx, &d);
    let got = ctx.read_f32_async(&y, 0, ylen).await.unwrap();
    let mut want = vec![None; ylen];
    for (ti, xr) in xrows.iter().enumerate() {
        for c in 0..width {
            let (mut w, tol) =
                weights::expected(xr, wdq, cols, rows, c, epi == Epilogue::SwiGlu, rel);
            let i = s.y_index(ti, c);
            let mut tol = tol;
            if epi == Epilogue::Accumulate {
                w += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((w, tol));
        }
    }
    let what = format!("{t_name} {what} T={tokens} {epi:?} {s}", t_name = t.name);
    weights::check(&got, &init, &want, &what);
}

/// [`dense_case_with`] through [`matmul`] (the path the model takes), unaligned x.
pub async fn dense_case(
    t: &TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    tokens: usize,
    epi: Epilogue,
    what: &str,
) {
    dense_case_with(t, rng, gw, wdq, tokens, epi, what, &matmul, false).await;
}

/// Every storage format with every scale scheme the loader produces: BF16,
/// F16, F32, FP8 (E4M3 / E5M2) per tensor, per shard, per channel, in
/// blocks (128², 16×32 and a width that is not a multiple of 16).
pub fn formats_and_schemes() -> Vec<(Dtype, Scheme)> {
    vec![
        (Dtype::F32, Scheme::None),
        (Dtype::BF16, Scheme::None),
        (Dtype::F16, Scheme::None),
        (Dtype::F8E4M3, Scheme::PerShard { broadcast: true }),
        (Dtype::F8E5M2, Scheme::PerShard { broadcast: false }),
        (Dtype::F8E4M3, Scheme::PerChannel),
        (Dtype::F8E5M2, Scheme::PerChannel),
        (Dtype::F8E4M3, Scheme::Block([128, 128])),
        (Dtype::F8E5M2, Scheme::Block([128, 128])),
        (Dtype::F8E4M3, Scheme::Block([16, 32])),
        (Dtype::F8E5M2, Scheme::Block([16, 32])),
        // Block width not a multiple of 16: one scale per 4-element group.
        (Dtype::F8E4M3, Scheme::Block([5, 20])),
        // Per-tensor scale on BF16 storage (one scale per row path with a real scale).
        (Dtype::BF16, Scheme::PerShard { broadcast: true }),
    ]
}

/// Every format and scheme of [`formats_and_schemes`] on weights of each
/// `[rows, cols]` of `sizes`, every epilogue, token counts cycling through
/// `ts` (so vector, small-T and tiled paths all run), under `seed`.
pub async fn every_format_and_scheme(
    t: &TestContext,
    seed: u64,
    sizes: &[(usize, usize)],
    ts: &[usize],
) {
    let mut rng = Rng::new(seed);
    for (ci, &(dtype, scheme)) in formats_and_schemes().iter().enumerate() {
        for (si, &(rows, cols)) in sizes.iter().enumerate() {
            let pw = packed(&mut rng, dtype, rows, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
            for (k, &epi) in EPILOGUES.iter().enumerate() {
                if epi == Epilogue::SwiGlu && rows % 2 == 1 {
                    continue;
                }
                for j in [0, 2] {
                    let tokens = ts[(ci + si + k + j) % ts.len()];
                    let what = format!("seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}]");
                    dense_case(t, &mut rng, &gw, &wdq, tokens, epi, &what).await;
                }
            }
        }
    }
}

/// Each format and scheme of [`formats_and_schemes`] once, on one
/// `[rows, cols]` weight each (`rows` even), the epilogue and the token count
/// (from `ts`) cycling with the format so every epilogue and every path
/// appears: the short form of [`every_format_and_scheme`] for an adapter
/// that compiles each pipeline slowly (a browser's CPU one).
pub async fn each_format_and_scheme_once(
    t: &TestContext,
    seed: u64,
    (rows, cols): (usize, usize),
    ts: &[usize],
) {
    let mut rng = Rng::new(seed);
    for (ci, &(dtype, scheme)) in formats_and_schemes().iter().enumerate() {
        let pw = packed(&mut rng, dtype, rows, cols, scheme);
        let wdq = qwgpu_loader::dequantize(&pw).unwrap();
        let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
        let epi = EPILOGUES[ci % EPILOGUES.len()];
        let tokens = ts[(ci / EPILOGUES.len() + ci) % ts.len()];
        let what = format!("seed {seed:#x} {dtype:?} {scheme:?} [{rows}, {cols}]");
        dense_case(t, &mut rng, &gw, &wdq, tokens, epi, &what).await;
    }
}
