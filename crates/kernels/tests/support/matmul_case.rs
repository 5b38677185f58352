//! The dense and expert-indexed matmul cases the matmul suites share
//! (`tests/matmul.rs`, `tests/matmul_int4.rs`): x rows of normal values with
//! NaN around them (over-reads show), y poisoned with NaN (Store, SwiGLU) or
//! random (Accumulate), every output checked against the reference dot
//! products of the dequantized weight ([`super::expected`]) and everything
//! else against its initial bits ([`super::check`]).

use qwgpu_kernels::matmul::{Epilogue, IndexedArgs, MatmulArgs};
use qwgpu_kernels::{testing, wgpu, GpuContext, GpuWeight};
use qwgpu_ops::rng::Rng;

pub use qwgpu_kernels::testing::cases::matmul::{make_x, run, MatmulFn};

/// One dense matmul of `tokens` rows launched by `launch`, checked against
/// the reference at relative tolerance `rel`: the shared case
/// (`testing::cases::matmul::dense_case_rel`, which the browser runner runs
/// too), blocking.
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
    pollster::block_on(qwgpu_kernels::testing::cases::matmul::dense_case_rel(
        t, rng, gw, wdq, tokens, epi, what, launch, aligned, rel,
    ));
}

/// Arguments of a matmul of `tokens` rows from the start of `x` and `y`,
/// `x_stride` and `y_stride` elements apart (the rows' widths where they are
/// contiguous).
pub fn contiguous<'a>(
    x: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    tokens: usize,
    x_stride: usize,
    y_stride: usize,
) -> MatmulArgs<'a> {
    MatmulArgs {
        x,
        x_offset: 0,
        x_stride: x_stride as u32,
        y,
        y_offset: 0,
        y_stride: y_stride as u32,
        t: tokens as u32,
    }
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
