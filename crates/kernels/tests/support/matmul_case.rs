//! The dense and expert-indexed matmul cases the matmul suites share
//! (`tests/matmul.rs`, `tests/matmul_int4.rs`): x rows of normal values with
//! NaN around them (over-reads show), y poisoned with NaN (Store, SwiGLU) or
//! random (Accumulate), every output checked against the reference dot
//! products of the dequantized weight ([`super::expected`]) and everything
//! else against its initial bits ([`super::check`]).

use qwgpu_kernels::matmul::{Epilogue, IndexedArgs, MatmulArgs};
use qwgpu_kernels::{testing, wgpu, Dispatch, GpuContext, GpuWeight, KernelError};
use qwgpu_ops::rng::Rng;

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

/// Runs `d` and waits for it.
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

/// One dense matmul of `gw` (dequantized: `wdq`) made by `launch`, with
/// random offsets and strides (`aligned`: x offset and stride multiples of 4,
/// the GEMV kernels' vec4 loads of x), checked against the reference at
/// relative tolerance `rel` ([`super::expected`]).
#[allow(clippy::too_many_arguments)]
pub fn dense_case(
    t: &testing::TestContext,
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
    let swiglu = epi == Epilogue::SwiGlu;
    let width = if swiglu { rows / 2 } else { rows };
    let (x_off, x_stride) = if aligned {
        (
            4 * (rng.uniform() * 2.0) as usize,
            cols.next_multiple_of(4) + 4 * (rng.uniform() * 2.0) as usize,
        )
    } else {
        (
            (rng.uniform() * 5.0) as usize,
            cols + (rng.uniform() * 3.0) as usize,
        )
    };
    let y_off = (rng.uniform() * 5.0) as usize;
    let y_stride = width + (rng.uniform() * 3.0) as usize;
    let (xbuf, xrows) = make_x(rng, x_off, x_stride, tokens, cols);
    let ylen = y_off + (tokens - 1) * y_stride + width + 2;
    let init: Vec<f32> = if epi == Epilogue::Accumulate {
        rng.normal_vec(ylen)
    } else {
        vec![f32::NAN; ylen]
    };
    let x = ctx.upload("x", &xbuf).unwrap();
    let y = ctx.upload("y", &init).unwrap();
    let args = MatmulArgs {
        x: &x,
        x_offset: x_off as u32,
        x_stride: x_stride as u32,
        y: &y,
        y_offset: y_off as u32,
        y_stride: y_stride as u32,
        t: tokens as u32,
    };
    let d = launch(ctx, gw, &args, epi)
        .unwrap_or_else(|e| panic!("{t_name} {what}: {e}", t_name = t.name));
    run(ctx, &d);
    let got = ctx.read_f32(&y, 0, ylen).unwrap();
    let mut want = vec![None; ylen];
    for (ti, xr) in xrows.iter().enumerate() {
        for c in 0..width {
            let (mut v, mut tol) = super::expected(xr, wdq, cols, rows, c, swiglu, rel);
            let i = y_off + ti * y_stride + c;
            if epi == Epilogue::Accumulate {
                v += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((v, tol));
        }
    }
    let what = format!(
        "{t_name} {what} T={tokens} {epi:?} x_off {x_off} x_stride {x_stride} y_off {y_off} y_stride {y_stride}",
        t_name = t.name
    );
    super::check(&got, &init, &want, &what);
}

/// Element of the ids buffer where pair 0's id sits (ids before and after
/// the pairs' are out of range: reading them shows).
pub const IDS_OFF: usize = 3;

/// Inputs of one expert-indexed matmul: x rows (`x_stride` apart), the ids
/// buffer (pair ids from element [`IDS_OFF`]), y's initial values.
pub struct MoeCase {
    pub x: wgpu::Buffer,
    pub xrows: Vec<Vec<f32>>,
    pub x_stride: usize,
    pub x_div: usize,
    pub ids: wgpu::Buffer,
    pub ids_list: Vec<u32>,
    pub init: Vec<f32>,
    pub y_stride: usize,
    pub width: usize,
}

/// An indexed matmul's inputs for `ids_list` over `cols` columns: one x row
/// per `x_div` pairs (rows of `cols + 1` values when `x_div` is 1, of whole
/// vec4s otherwise: the kernels' aligned x loads), outputs `width` wide.
pub fn moe_case(
    ctx: &GpuContext,
    rng: &mut Rng,
    cols: usize,
    ids_list: &[u32],
    x_div: usize,
    width: usize,
    epi: Epilogue,
) -> MoeCase {
    let pairs = ids_list.len();
    let x_rows = (pairs - 1) / x_div + 1;
    let x_stride = if x_div == 1 {
        cols + 1
    } else {
        cols.next_multiple_of(4)
    };
    let (xbuf, xrows) = make_x(rng, 0, x_stride, x_rows, cols);
    let mut ids_buf = vec![99u32; IDS_OFF];
    ids_buf.extend_from_slice(ids_list);
    ids_buf.push(98);
    let y_stride = width + 3;
    let ylen = (pairs - 1) * y_stride + width + 2;
    let init = if epi == Epilogue::Accumulate {
        rng.normal_vec(ylen)
    } else {
        vec![f32::NAN; ylen]
    };
    MoeCase {
        x: ctx.upload("x", &xbuf).unwrap(),
        xrows,
        x_stride,
        x_div,
        ids: ctx.upload("ids", &ids_buf).unwrap(),
        ids_list: ids_list.to_vec(),
        init,
        y_stride,
        width,
    }
}

impl MoeCase {
    /// The matmul arguments of this case writing into `y`, `rpe` rows per expert.
    pub fn args<'a>(&'a self, y: &'a wgpu::Buffer, rpe: usize) -> IndexedArgs<'a> {
        IndexedArgs {
            x: &self.x,
            x_stride: self.x_stride as u32,
            x_row_div: self.x_div as u32,
            ids: &self.ids,
            ids_offset: IDS_OFF as u32,
            y,
            y_stride: self.y_stride as u32,
            pairs: self.ids_list.len() as u32,
            rows_per_expert: rpe as u32,
        }
    }

    /// Checks `got` (all of y) against the reference of the experts stacked
    /// in `w` (`rpe` rows of `cols` each) at relative tolerance `rel`: pairs
    /// whose id is past the experts keep y's initial bits.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        got: &[f32],
        w: &[f32],
        cols: usize,
        rpe: usize,
        epi: Epilogue,
        rel: f64,
        what: &str,
    ) {
        let experts = w.len() / (rpe * cols);
        let mut want = vec![None; self.init.len()];
        for (p, &e) in self.ids_list.iter().enumerate() {
            let e = e as usize;
            if e >= experts {
                continue;
            }
            let we = &w[e * rpe * cols..(e + 1) * rpe * cols];
            for col in 0..self.width {
                let swiglu = epi == Epilogue::SwiGlu;
                let (mut v, mut tol) =
                    super::expected(&self.xrows[p / self.x_div], we, cols, rpe, col, swiglu, rel);
                let i = p * self.y_stride + col;
                if epi == Epilogue::Accumulate {
                    v += self.init[i] as f64;
                    tol += 1e-6 * self.init[i].abs() as f64;
                }
                want[i] = Some((v, tol));
            }
        }
        super::check(got, &self.init, &want, what);
    }
}
