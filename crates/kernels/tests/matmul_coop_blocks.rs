//! Block-scaled FP8 GEMM with the block scale folded into x
//! (`mm_coop_blocks`, and its scalar emulation `mm_tile_blocks`) against f64
//! references, on weights whose scale rows straddle the 128-row tiles,
//! columns not a multiple of the blocks or of 32, E4M3 and E5M2 (whose
//! `q · s` exceeds f16's range with these scales), every epilogue.
//!
//! - Exact (tensor cores, `Feature::CooperativeMatrix`): against the f64 GEMM
//!   of the dequantized weight at `1e-5 · Σ|x·w|` (x keeps 22 significant
//!   bits, W is exact), x rows scaled by 1e-6 .. 1e6.
//! - Fast (tensor cores): against [`support::fast_block_dot`] (the rounding
//!   rule written out in f64) at `1e-5 · Σ|x'·q|` (f32 sums), and the rounding
//!   must move outputs by more than that (so the exact kernel would fail).
//! - Fast on the scalar GEMM (every context, lavapipe included): the same
//!   reference, so lavapipe computes what the tensor cores compute.
//! - The tensor-core kernel's own text with its cooperative-matrix and
//!   subgroup operations replaced by scalar code of the same semantics (every
//!   context with f16, lavapipe included), exact and fast, against the same
//!   references: its segments, staging and epilogues are tested here too.
//! - SPIR-V translation of every override combination (FORMAT, EXACT, WG),
//!   with and without bounds checks.
//!
//! Contexts without cooperative matrices are recorded as skipped for the
//! tensor-core tests. `coop_blocks_speed` (`#[ignore]`d) is the benchmark:
//! `-- --ignored --exact matmul_coop_blocks::coop_blocks_speed`.

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul_with, Epilogue, MatmulArgs, MatmulPath};
use qwgpu_kernels::testing::{self, Feature};
use qwgpu_kernels::{wgpu, Dispatch, GpuContext, GpuWeight, MatmulPrecision};
use qwgpu_loader::PackedWeight;

mod support;
use qwgpu_ops::rng::Rng;
use support::Scheme;

const EPILOGUES: [Epilogue; 3] = [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu];

fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("matmul_coop_blocks test", &refs).unwrap();
}

/// A test weight: dtype, [bn, bk], rows, cols, shards as (offset, rows).
type Spec = (Dtype, [usize; 2], usize, usize, Vec<(usize, usize)>);

/// The test weights.
/// Scale rows of 128 with N and K not multiples of 128; two sources whose
/// blocks start at row 100 (tiles straddle scale rows); 64-row blocks (two
/// segments per tile) with 96-column blocks (steps straddle blocks); E5M2
/// with 20-column blocks (narrower than a 16-element chunk's step).
fn weights() -> Vec<Spec> {
    vec![
        (Dtype::F8E4M3, [128, 128], 300, 300, vec![(0, 300)]),
        (Dtype::F8E5M2, [128, 128], 260, 520, vec![(0, 260)]),
        (
            Dtype::F8E4M3,
            [128, 128],
            260,
            200,
            vec![(0, 100), (100, 160)],
        ),
        (Dtype::F8E4M3, [64, 96], 256, 200, vec![(0, 256)]),
        (Dtype::F8E5M2, [128, 20], 130, 100, vec![(0, 130)]),
    ]
}

/// A weight of `spec` with block scales 2^-14 .. 2^2 (checkpoint scales are
/// ≪ 1; E5M2 values times 4 pass f16's 65504).
fn weight(rng: &mut Rng, (dtype, block, rows, cols, shards): &Spec) -> PackedWeight {
    let data = support::normal_data(rng, *dtype, rows * cols);
    let mut draw = || (1.0 + rng.uniform()) * 2f32.powi((rng.uniform() * 17.0) as i32 - 14);
    support::packed_weight(
        format!("w{rows}x{cols}"),
        *dtype,
        *rows,
        *cols,
        shards,
        Scheme::Block(*block),
        data,
        &mut draw,
    )
}

/// x rows: `kind` 0 values of magnitudes 1e-6 .. 1e6 mixed, 1 a whole row
/// scaled by 10^(−6 .. 6), 2 zero, 3 normal values with one of 1e6.
fn x_row(rng: &mut Rng, cols: usize, kind: usize) -> Vec<f32> {
    let mut r = rng.normal_vec(cols);
    match kind {
        0 => r
            .iter_mut()
            .for_each(|v| *v *= 10f32.powf(12.0 * rng.uniform() - 6.0)),
        1 => {
            let f = 10f32.powf(12.0 * rng.uniform() - 6.0);
            r.iter_mut().for_each(|v| *v *= f);
        }
        2 => r.iter_mut().for_each(|v| *v = 0.0),
        _ => r[(rng.uniform() * cols as f32) as usize % cols] = 1e6,
    }
    r
}

/// Which reference a run is checked against.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    /// The f64 GEMM of the dequantized weight at 1e-5 · Σ|x·w|.
    Exact,
    /// `support::fast_block_dot` at 1e-5 · Σ|x'·q|.
    Fast,
}

/// Runs every weight × tokens × epilogue on `path` in `ctx` and checks it
/// against `want`; returns (cases, outputs, outputs the fast rounding moves
/// past the tolerance).
fn check_all(
    t: &testing::TestContext,
    ctx: &GpuContext,
    seed: u64,
    tokens_list: &[usize],
    path: MatmulPath,
    want: Want,
) -> (usize, usize, usize) {
    let mut rng = Rng::new(seed);
    let (mut cases, mut outputs, mut moved) = (0, 0, 0);
    for spec in weights() {
        let pw = weight(&mut rng, &spec);
        let (rows, cols) = (pw.rows, pw.cols);
        let wdq = qwgpu_loader::dequantize(&pw).unwrap();
        let (q, s) = support::fp8_parts(&pw);
        let gw = GpuWeight::upload(ctx, &pw).unwrap();
        for &tokens in tokens_list {
            for (k, &epi) in EPILOGUES.iter().enumerate() {
                let swiglu = epi == Epilogue::SwiGlu;
                let width = if swiglu { rows / 2 } else { rows };
                let x_off = (k + tokens) % 3;
                let x_stride = cols + k;
                let y_off = (k + 1) % 3;
                let y_stride = width + (tokens % 2);
                let xrows: Vec<Vec<f32>> = (0..tokens)
                    .map(|ti| x_row(&mut rng, cols, (ti + k) % 4))
                    .collect();
                // NaN outside x's rows, to catch over-reads.
                let mut xbuf = vec![f32::NAN; x_off + (tokens - 1) * x_stride + cols + 3];
                for (ti, r) in xrows.iter().enumerate() {
                    xbuf[x_off + ti * x_stride..][..cols].copy_from_slice(r);
                }
                let ylen = y_off + (tokens - 1) * y_stride + width + 2;
                let init = if epi == Epilogue::Accumulate {
                    rng.normal_vec(ylen)
                } else {
                    vec![f32::NAN; ylen]
                };
                let what = format!(
                    "{t_name} seed {seed:#x} {dtype:?} {block:?} [{rows}, {cols}] shards {shards:?} \
                     T={tokens} {epi:?} {path:?} {want:?} x_off {x_off} x_stride {x_stride} \
                     y_off {y_off} y_stride {y_stride}",
                    t_name = t.name,
                    dtype = spec.0,
                    block = spec.1,
                    shards = spec.4
                );
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
                let d = matmul_with(ctx, &gw, &args, epi, path)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                run(ctx, &d);
                let got = ctx.read_f32(&y, 0, ylen).unwrap();
                let mut expect = vec![None; ylen];
                for (ti, xr) in xrows.iter().enumerate() {
                    let exact_row = |r: usize| support::dot_ref(xr, &wdq[r * cols..][..cols]);
                    let fast_row = |r: usize| {
                        support::fast_block_dot(xr, &q[r * cols..][..cols], &s[r * cols..][..cols])
                    };
                    for c in 0..width {
                        let i = y_off + ti * y_stride + c;
                        let (mut w, mut tol) = match want {
                            Want::Exact => support::expected_with(exact_row, rows, c, swiglu, 1e-5),
                            Want::Fast => {
                                let f = support::expected_with(fast_row, rows, c, swiglu, 1e-5);
                                let (e, _) =
                                    support::expected_with(exact_row, rows, c, swiglu, 1e-5);
                                outputs += 1;
                                moved += usize::from((e - f.0).abs() > f.1);
                                f
                            }
                        };
                        if epi == Epilogue::Accumulate {
                            w += init[i] as f64;
                            tol += 1e-6 * init[i].abs() as f64;
                        }
                        expect[i] = Some((w, tol));
                    }
                }
                support::check(&got, &init, &expect, &what);
                cases += 1;
            }
        }
    }
    (cases, outputs, moved)
}

/// A context like `t`'s with fast precision.
fn fast_context(t: &testing::TestContext) -> GpuContext {
    GpuContext::new(&qwgpu_kernels::ContextOptions {
        precision: MatmulPrecision::Fast,
        ..t.variant.options()
    })
    .unwrap()
}

/// Exact precision on tensor cores: results as the f32 GEMM's, forced Coop
/// and Auto (above 16 tokens) alike.
#[test]
fn coop_blocks_exact_matches_reference() {
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        for path in [MatmulPath::Coop, MatmulPath::Auto] {
            let (cases, _, _) =
                check_all(t, &t.ctx, 0xb10c_0001, &[19, 131, 300], path, Want::Exact);
            assert!(cases > 0, "{}: no case ran", t.name);
        }
    }
}

/// Fast precision on tensor cores: the rounding rule of
/// `support::fast_block_dot`, visibly different from the exact result.
#[test]
fn coop_blocks_fast_matches_rounding_reference() {
    for t in testing::contexts_with(&[Feature::CooperativeMatrix]) {
        let ctx = fast_context(t);
        for path in [MatmulPath::Coop, MatmulPath::Auto] {
            let (_, outputs, moved) =
                check_all(t, &ctx, 0xb10c_0002, &[19, 131, 300], path, Want::Fast);
            assert!(
                moved * 4 > outputs,
                "{t_name}: only {moved} of {outputs} outputs move under the fast rounding",
                t_name = t.name
            );
        }
    }
}

/// Fast precision on the scalar GEMM (`mm_tile_blocks`): what the tensor
/// cores compute, on every context (lavapipe's precision column).
#[test]
fn tile_blocks_fast_matches_rounding_reference() {
    for t in testing::contexts() {
        let ctx = fast_context(t);
        let (_, outputs, moved) = check_all(
            t,
            &ctx,
            0xb10c_0003,
            &[17, 70],
            MatmulPath::Scalar,
            Want::Fast,
        );
        assert!(
            moved * 4 > outputs,
            "{t_name}: only {moved} of {outputs} outputs move under the fast rounding",
            t_name = t.name
        );
    }
}

/// `Tuning::fp8_block_coop` off restores the earlier paths: exact precision
/// on the scalar GEMM (f32 results, so Auto equals Scalar bit for bit), fast
/// precision's scalar GEMM rounding `q · s` to f16 (not this family's rule:
/// other bits than with the switch on). Finely blocked weights (16-row
/// blocks) stay on the earlier paths with the switch on.
#[test]
fn switch_off_restores_earlier_paths() {
    let (rows, cols, tokens) = (130usize, 200usize, 40usize);
    for t in testing::contexts() {
        let mut rng = Rng::new(0xb10c_0004);
        let spec = (Dtype::F8E4M3, [128, 128], rows, cols, vec![(0, rows)]);
        let pw = weight(&mut rng, &spec);
        let fine = weight(
            &mut rng,
            &(Dtype::F8E4M3, [16, 128], rows, cols, vec![(0, rows)]),
        );
        let xv = rng.normal_vec(tokens * cols);
        let go = |ctx: &GpuContext, pw: &PackedWeight, path: MatmulPath| {
            let gw = GpuWeight::upload(ctx, pw).unwrap();
            let x = ctx.upload("x", &xv).unwrap();
            let y = ctx.upload("y", &vec![f32::NAN; tokens * rows]).unwrap();
            let args = MatmulArgs {
                x: &x,
                x_offset: 0,
                x_stride: cols as u32,
                y: &y,
                y_offset: 0,
                y_stride: rows as u32,
                t: tokens as u32,
            };
            run(
                ctx,
                &matmul_with(ctx, &gw, &args, Epilogue::Store, path).unwrap(),
            );
            ctx.read_f32(&y, 0, tokens * rows).unwrap()
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut off = GpuContext::new(&t.variant.options()).unwrap();
        off.tuning.fp8_block_coop = false;
        assert_eq!(
            bits(&go(&off, &pw, MatmulPath::Auto)),
            bits(&go(&off, &pw, MatmulPath::Scalar)),
            "{}: switch off, exact: Auto is not the scalar GEMM",
            t.name
        );
        let mut fast_off = fast_context(t);
        fast_off.tuning.fp8_block_coop = false;
        let fast_on = fast_context(t);
        assert_ne!(
            bits(&go(&fast_off, &pw, MatmulPath::Scalar)),
            bits(&go(&fast_on, &pw, MatmulPath::Scalar)),
            "{}: the switch does not change the fast scalar GEMM",
            t.name
        );
        assert_eq!(
            bits(&go(&fast_off, &fine, MatmulPath::Scalar)),
            bits(&go(&fast_on, &fine, MatmulPath::Scalar)),
            "{}: 16-row blocks left the earlier fast scalar GEMM",
            t.name
        );
    }
}

qwgpu_kernels::shader!(SPV_COOP_BLOCKS, "matmul_coop_blocks.wgsl");
qwgpu_kernels::shader!(SPV_COMMON, "matmul_common.wgsl");

/// `mm_coop_blocks` translates to SPIR-V on the CPU for both FP8 formats, both
/// precisions, 32- and 64-lane subgroups (WG 256 / 512), with and without
/// bounds checks (test builds' checked modules): naga's SPIR-V writer
/// failures show here rather than on the GPU machine.
#[test]
fn coop_blocks_translate_to_spirv_for_every_override() {
    let src = [
        SPV_COOP_BLOCKS.text,
        qwgpu_kernels::shaders::NUMERIC.text,
        SPV_COMMON.text,
    ]
    .join("\n");
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{diagnostic}", diagnostic = e.emit_to_string(&src)));
    use naga::valid::Capabilities as C;
    let caps = C::default()
        | C::SHADER_FLOAT16_IN_FLOAT32
        | C::SUBGROUP
        | C::SHADER_FLOAT16
        | C::COOPERATIVE_MATRIX;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("validation error: {e:?}"));
    let mut n = 0;
    for format in [3.0, 4.0] {
        for exact in [0.0, 1.0] {
            for wg in [256.0, 512.0] {
                let constants: naga::back::PipelineConstants = [
                    ("FORMAT".to_string(), format),
                    ("EXACT".to_string(), exact),
                    ("WG".to_string(), wg),
                ]
                .into_iter()
                .collect();
                let (m, i) = naga::back::pipeline_constants::process_overrides(
                    &module, &info, None, &constants,
                )
                .unwrap_or_else(|e| panic!("{constants:?}: {e}"));
                for checked in [false, true] {
                    let mut opts = naga::back::spv::Options::default();
                    if checked {
                        let p = naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite;
                        opts.bounds_check_policies = naga::proc::BoundsCheckPolicies {
                            index: p,
                            buffer: p,
                            image_load: p,
                            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
                        };
                    }
                    let pipe = naga::back::spv::PipelineOptions {
                        shader_stage: naga::ShaderStage::Compute,
                        entry_point: "mm_coop_blocks".into(),
                    };
                    naga::back::spv::write_vec(&m, &i, &opts, Some(&pipe))
                        .unwrap_or_else(|e| panic!("{constants:?} checked {checked}: {e}"));
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 16);
}

/// `mm_coop_blocks` with its cooperative-matrix operations and subgroup
/// builtins replaced by scalar code of the same semantics (row-major A
/// fragments from `st_x` / `st_xl`, column-major B fragments from `st_w`,
/// row-major stores; lane `l` of 32 owns fragment elements `l + 32 j`;
/// subgroup `lid / 32`, `subgroupMax` through workgroup memory): everything
/// else (segments, x scaling and splitting, W staging, prefetch, epilogues)
/// is the shader's own text, so it runs where there are no tensor cores.
/// Panics where the shader no longer has the text it rewrites.
fn shim_source() -> String {
    let mut s = SPV_COOP_BLOCKS.text.to_string();
    let mut rewrite = |from: &str, to: &str| {
        assert!(
            s.contains(from),
            "the shim's pattern `{from}` is gone from matmul_coop_blocks.wgsl"
        );
        s = s.replace(from, to);
    };
    rewrite("enable wgpu_cooperative_matrix;", "");
    rewrite("coopLoadT<coop_mat16x16<f16, A>>(&st_xl[", "afrag(true, ");
    rewrite("coopLoadT<coop_mat16x16<f16, A>>(&st_x[", "afrag(false, ");
    rewrite("coopLoad<coop_mat16x16<f16, B>>(&st_w[", "(");
    rewrite("], LDS)", ")");
    rewrite("coopMultiplyAdd(", "mma(sl, ");
    rewrite("coopStoreT(", "store_frag(sl, ");
    rewrite("&st_y[", "");
    rewrite("], 16u)", ")");
    rewrite("coop_mat16x16<f32, C>()", "array<f32, 8>()");
    rewrite("subgroupMax(", "wg_max(sg, sl, ");
    rewrite("@builtin(subgroup_id) sg: u32,", "");
    rewrite("@builtin(subgroup_invocation_id) sl: u32,", "");
    rewrite(
        "@builtin(workgroup_id) wid: vec3<u32>) {",
        "@builtin(workgroup_id) wid: vec3<u32>) {\n    let sg = lid / SGS;\n    let sl = lid % SGS;",
    );
    s.push_str(
        r#"
var<workgroup> shim_red: array<f32, 256>;
struct AF {
    lo: bool,
    off: u32,
}
fn afrag(lo: bool, off: u32) -> AF {
    return AF(lo, off);
}
fn mma(sl: u32, a: AF, b: u32, c: array<f32, 8>) -> array<f32, 8> {
    var r = c;
    for (var j = 0u; j < 8u; j++) {
        let e = sl + 32u * j;
        let m = e / 16u;
        let n = e % 16u;
        var acc = 0.0;
        for (var k = 0u; k < 16u; k++) {
            var av: f16;
            if (a.lo) {
                av = st_xl[a.off + m * LDS + k];
            } else {
                av = st_x[a.off + m * LDS + k];
            }
            acc += f32(av) * f32(st_w[b + n * LDS + k]);
        }
        r[j] += acc;
    }
    return r;
}
fn store_frag(sl: u32, c: array<f32, 8>, off: u32) {
    for (var j = 0u; j < 8u; j++) {
        st_y[off + sl + 32u * j] = c[j];
    }
}
fn wg_max(sg: u32, sl: u32, v: f32) -> f32 {
    workgroupBarrier();
    shim_red[sg * SGS + sl] = v;
    workgroupBarrier();
    var m = shim_red[sg * SGS];
    for (var i = 1u; i < SGS; i++) {
        m = max(m, shim_red[sg * SGS + i]);
    }
    workgroupBarrier();
    return m;
}
"#,
    );
    s
}

/// The shader logic of `mm_coop_blocks` (segments of straddling scale rows,
/// scaled x staging, W as q, epilogues, SwiGLU as two launches) on the scalar
/// shim of [`shim_source`], exact and fast, against the same references as
/// the tensor-core tests: this runs on lavapipe (f16 needed), so the kernel's
/// own logic is tested before any GPU machine sees it.
#[test]
fn coop_blocks_logic_matches_reference_on_a_scalar_shim() {
    let shim: &'static qwgpu_kernels::shaders::ShaderSource =
        Box::leak(Box::new(qwgpu_kernels::shaders::ShaderSource {
            name: "matmul_coop_blocks_shim.wgsl",
            text: Box::leak(shim_source().into_boxed_str()),
        }));
    for t in testing::contexts_with(&[Feature::F16]) {
        let ctx = &t.ctx;
        let mut rng = Rng::new(0xb10c_0006);
        let mut outputs = 0usize;
        let mut moved = 0usize;
        for spec in weights() {
            let pw = weight(&mut rng, &spec);
            let (rows, cols) = (pw.rows, pw.cols);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let (q, s) = support::fp8_parts(&pw);
            let gw = GpuWeight::upload(ctx, &pw).unwrap();
            assert_eq!(gw.pieces.len(), 1);
            let wbuf = &gw.pieces[0].buffer;
            for (tokens, exact) in [(131usize, true), (19, false), (131, false)] {
                let key = qwgpu_kernels::PipelineKey::new(
                    &[shim, &qwgpu_kernels::shaders::NUMERIC, &SPV_COMMON],
                    "mm_coop_blocks",
                )
                .constant("WG", 256)
                .constant("FORMAT", gw.format as u32)
                .constant("EXACT", u32::from(exact));
                let pipeline = ctx.pipeline(&key).unwrap();
                for epi in EPILOGUES {
                    let swiglu = epi == Epilogue::SwiGlu;
                    let width = if swiglu { rows / 2 } else { rows };
                    let xrows: Vec<Vec<f32>> = (0..tokens)
                        .map(|ti| x_row(&mut rng, cols, ti % 4))
                        .collect();
                    let x_stride = cols + 1;
                    let mut xbuf = vec![f32::NAN; tokens * x_stride + 3];
                    for (ti, r) in xrows.iter().enumerate() {
                        xbuf[ti * x_stride..][..cols].copy_from_slice(r);
                    }
                    let init = if epi == Epilogue::Accumulate {
                        rng.normal_vec(tokens * width)
                    } else {
                        vec![f32::NAN; tokens * width]
                    };
                    let x = ctx.upload("x", &xbuf).unwrap();
                    let y = ctx.upload("y", &init).unwrap();
                    // MmParams' leading fields: rows, cols, stride4, block_cols, t,
                    // x_off, x_stride, x_div, y_off, y_stride, n0, n_end, a_row0,
                    // a_rows, b_row0, b_rows, half, …, epi (22), x_aligned (23).
                    let launches: &[u32] = match epi {
                        Epilogue::Store => &[0],
                        Epilogue::Accumulate => &[1],
                        Epilogue::SwiGlu => &[0, 2],
                    };
                    let mut ds = Vec::new();
                    for &code in launches {
                        let mut p = [0u32; 64];
                        let head = [
                            rows as u32,
                            cols as u32,
                            (gw.stride_words / 4) as u32,
                            gw.block_cols as u32,
                            tokens as u32,
                            0,
                            x_stride as u32,
                            1,
                            0,
                            width as u32,
                            0,
                            width as u32,
                            0,
                            rows as u32,
                            0,
                            rows as u32,
                            (rows / 2) as u32,
                        ];
                        p[..head.len()].copy_from_slice(&head);
                        p[22] = code;
                        p[23] = u32::from(x_stride.is_multiple_of(4));
                        let params = ctx.uniform("shim params", &p);
                        let bind = ctx.bind(
                            &pipeline,
                            "shim",
                            &[
                                wbuf.as_entire_binding(),
                                wbuf.as_entire_binding(),
                                gw.meta.as_entire_binding(),
                                x.as_entire_binding(),
                                y.as_entire_binding(),
                                params.as_entire_binding(),
                                x.as_entire_binding(),
                            ],
                        );
                        ds.push(Dispatch {
                            label: "coop blocks shim",
                            pipeline: pipeline.clone(),
                            bind,
                            groups: [
                                (width as u32).div_ceil(128),
                                (tokens as u32).div_ceil(128),
                                1,
                            ],
                        });
                    }
                    run(ctx, &ds);
                    let got = ctx.read_f32(&y, 0, init.len()).unwrap();
                    let mut expect = vec![None; init.len()];
                    for (ti, xr) in xrows.iter().enumerate() {
                        let exact_row = |r: usize| support::dot_ref(xr, &wdq[r * cols..][..cols]);
                        let fast_row = |r: usize| {
                            support::fast_block_dot(
                                xr,
                                &q[r * cols..][..cols],
                                &s[r * cols..][..cols],
                            )
                        };
                        for c in 0..width {
                            let i = ti * width + c;
                            let (mut w, mut tol) = if exact {
                                support::expected_with(exact_row, rows, c, swiglu, 1e-5)
                            } else {
                                let f = support::expected_with(fast_row, rows, c, swiglu, 1e-5);
                                let (e, _) =
                                    support::expected_with(exact_row, rows, c, swiglu, 1e-5);
                                outputs += 1;
                                moved += usize::from((e - f.0).abs() > f.1);
                                f
                            };
                            if epi == Epilogue::Accumulate {
                                w += init[i] as f64;
                                tol += 1e-6 * init[i].abs() as f64;
                            }
                            expect[i] = Some((w, tol));
                        }
                    }
                    let what = format!(
                        "{t_name} shim {dtype:?} {block:?} [{rows}, {cols}] shards {shards:?} T={tokens} {epi:?} exact {exact}",
                        t_name = t.name,
                        dtype = spec.0,
                        block = spec.1,
                        shards = spec.4
                    );
                    support::check(&got, &init, &expect, &what);
                }
            }
        }
        assert!(
            moved * 4 > outputs,
            "{t_name}: only {moved} of {outputs} outputs move under the fast rounding",
            t_name = t.name
        );
    }
}

/// Best of 5 GPU-timestamp runs of `d`, in ns.
fn best_ns(ctx: &GpuContext, d: &[Dispatch]) -> f64 {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("warm-up", &refs).unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let ns: f64 = qwgpu_kernels::profile::time_dispatches(ctx, &refs)
            .unwrap()
            .iter()
            .map(|(_, t)| t)
            .sum();
        best = best.min(ns);
    }
    best
}

/// TFLOP/s of the block-scaled E4M3 GEMM `[12288, 4096]` × T = 4096 (a 9B
/// prefill's shape; plus the SwiGLU gate/up `[24576, 4096]` × 512) on: the
/// scalar tile GEMM (today's exact path), `mm_coop` forced with f16(q·s)
/// weights (exact x split; and fast, today's fast path), and this family
/// (exact, fast); with the largest difference of each to the scalar GEMM
/// relative to its largest |y| (first 8 token rows). Trusted modules, GPU
/// timestamps. A benchmark (`#[ignore]`d).
#[test]
#[ignore = "benchmark: run with -- --ignored --exact matmul_coop_blocks::coop_blocks_speed"]
fn coop_blocks_speed() {
    let trusted = qwgpu_kernels::ContextOptions {
        runtime_checks: Some(false),
        ..Default::default()
    };
    let make = |precision, on: bool| {
        let mut c = GpuContext::new(&qwgpu_kernels::ContextOptions {
            precision,
            ..trusted.clone()
        })
        .unwrap();
        c.tuning.fp8_block_coop = on;
        c
    };
    let exact_off = make(MatmulPrecision::Exact, false);
    let fast_off = make(MatmulPrecision::Fast, false);
    let exact_on = make(MatmulPrecision::Exact, true);
    let fast_on = make(MatmulPrecision::Fast, true);
    let mut rng = Rng::new(0xb10c_0005);
    for (rows, cols, t, epi) in [
        (12288usize, 4096usize, 4096usize, Epilogue::Store),
        (24576, 4096, 512, Epilogue::SwiGlu),
        (12288, 4096, 4096, Epilogue::Store),
    ] {
        let spec = (Dtype::F8E4M3, [128, 128], rows, cols, vec![(0, rows)]);
        let pw = weight(&mut rng, &spec);
        let xv = rng.normal_vec(t * cols);
        let width = if epi == Epilogue::SwiGlu {
            rows / 2
        } else {
            rows
        };
        let flop = 2.0 * (t * rows * cols) as f64;
        let mut outs: Vec<(&str, Vec<f32>)> = Vec::new();
        for (name, c, path) in [
            ("scalar exact", &exact_off, MatmulPath::Scalar),
            ("mm_coop f16(q·s) exact-x", &exact_off, MatmulPath::Coop),
            ("mm_coop f16(q·s) fast", &fast_off, MatmulPath::Coop),
            ("blocks exact", &exact_on, MatmulPath::Coop),
            ("blocks fast", &fast_on, MatmulPath::Coop),
        ] {
            let gw = GpuWeight::upload(c, &pw).unwrap();
            let x = c.upload("x", &xv).unwrap();
            let y: wgpu::Buffer = c.storage("y", (t * width * 4) as u64).unwrap();
            c.fill_f32(&y, 0.0);
            let args = MatmulArgs {
                x: &x,
                x_offset: 0,
                x_stride: cols as u32,
                y: &y,
                y_offset: 0,
                y_stride: width as u32,
                t: t as u32,
            };
            let d = match matmul_with(c, &gw, &args, epi, path) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("BENCH {name}: {e}");
                    continue;
                }
            };
            let refs: Vec<&Dispatch> = d.iter().collect();
            c.run("first", &refs).unwrap();
            outs.push((name, c.read_f32(&y, 0, 8 * width).unwrap()));
            let ns = best_ns(c, &d);
            eprintln!(
                "BENCH {c_info_name} {name} T={t} W=[{rows},{cols}] {epi:?} E4M3 128x128: {us:.1} µs = {tflops:.1} TFLOP/s",
                c_info_name = c.info.name,
                us = ns / 1e3,
                tflops = flop / ns / 1e3
            );
        }
        if let Some((_, base)) = outs.first() {
            let scale = base.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (name, o) in &outs[1..] {
                let diff = o
                    .iter()
                    .zip(base)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!(
                    "BENCH   {name} vs scalar exact, first 8 rows: max |Δ| / max |y| = {rel:.2e}",
                    rel = diff / scale
                );
            }
        }
    }
}
