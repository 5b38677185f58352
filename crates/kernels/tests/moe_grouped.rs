//! Grouped MoE GEMM (`moe::grouped`) against `matmul_indexed` and the CPU:
//! `qwgpu_loader::dequantize` gives the exact f32 weights, reference dots in f64.
//!
//! Tolerance per output, as tests/matmul.rs:
//! `|got - want| <= 1e-5 * sum|x_i * w_i| + 1e-5 * |want|`; for SwiGLU each half's error is propagated
//! (`1.1 * |up| * tol(gate) + |silu(gate)| * tol(up)`) plus `1e-5 * |want|`.
//! Grouped vs indexed: within twice that. Rows of pairs with ids past the
//! experts, and everything outside the written rows, keep their bits (NaN
//! poison). The CPU reference of the grouping (a stable counting sort) is
//! written here (qwgpu-ops has none).

use std::time::Instant;

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::matmul::{matmul_indexed, Epilogue, IndexedArgs};
use qwgpu_kernels::moe::grouped::{
    matmul_grouped, moe_group, prefer_grouped, tile_bound, GroupScratch, GroupedArgs,
};
use qwgpu_kernels::view::{Dtype as QDtype, TensorView};
use qwgpu_kernels::{testing, Dispatch, GpuContext, GpuWeight, KernelError};
use qwgpu_loader::PackedWeight;

mod support;
use qwgpu_ops::rng::Rng;

/// f32 `[rows, cols]`, rows `stride` apart, from element 0 of `buffer`.
fn f32_strided(buffer: &wgpu::Buffer, rows: usize, cols: usize, stride: usize) -> TensorView<'_> {
    TensorView::rows(
        buffer,
        QDtype::F32,
        0,
        [rows as u64, cols as u64],
        stride as u64,
    )
}

#[derive(Debug, Clone, Copy)]
enum Scheme {
    None,
    PerChannel,
    Block128,
}

fn packed(rng: &mut Rng, dtype: Dtype, rows: usize, cols: usize, scheme: Scheme) -> PackedWeight {
    let scheme = match scheme {
        Scheme::None => support::Scheme::None,
        Scheme::PerChannel => support::Scheme::PerChannel,
        Scheme::Block128 => support::Scheme::Block([128, 128]),
    };
    let data = support::normal_data(rng, dtype, rows * cols);
    let mut draw = || 0.25 + 1.75 * rng.uniform();
    let name = format!("experts{rows}x{cols}");
    support::packed_weight(
        name,
        dtype,
        rows,
        cols,
        &[(0, rows)],
        scheme,
        data,
        &mut draw,
    )
}

/// A GPU weight split into pieces of the given row counts.
fn upload_pieces(ctx: &GpuContext, w: &PackedWeight, split: &[usize]) -> GpuWeight {
    GpuWeight::upload_pieces(ctx, w, split).unwrap()
}

/// Router-like ids: k distinct experts per token, expert 1 on almost every
/// token, expert 0 often, every expert ≡ 3 (mod 4) unused (when E leaves room).
fn skewed_ids(rng: &mut Rng, tokens: usize, experts: usize, k: usize) -> Vec<u32> {
    let mut cand: Vec<usize> = (0..experts).filter(|e| e % 4 != 3).collect();
    if cand.len() < k {
        cand = (0..experts).collect();
    }
    let mut out = Vec::new();
    for _ in 0..tokens {
        let mut row: Vec<u32> = Vec::new();
        let hot = [1usize, 0];
        for (i, &h) in hot.iter().enumerate() {
            if h < experts && row.len() < k && rng.uniform() < [0.9, 0.5][i] {
                row.push(h as u32);
            }
        }
        while row.len() < k {
            let e = cand[(rng.uniform() * cand.len() as f32) as usize % cand.len()] as u32;
            if !row.contains(&e) {
                row.push(e);
            }
        }
        // Shuffle the slot order a little.
        if rng.uniform() < 0.5 {
            row.reverse();
        }
        out.extend(row);
    }
    out
}

fn run(ctx: &GpuContext, d: &[Dispatch]) {
    let refs: Vec<&Dispatch> = d.iter().collect();
    ctx.run("moe grouped test", &refs).unwrap();
}

/// CPU grouping: stable counting sort → (permutation, tiles (start, count, expert)).
fn group_ref(ids: &[u32], experts: usize) -> (Vec<u32>, Vec<[u32; 3]>) {
    let mut perm = Vec::new();
    let mut tiles = Vec::new();
    for e in 0..experts as u32 {
        let start = perm.len();
        perm.extend((0..ids.len() as u32).filter(|&p| ids[p as usize] == e));
        let c = perm.len() - start;
        for j in (0..c).step_by(64) {
            tiles.push([(start + j) as u32, (c - j).min(64) as u32, e]);
        }
    }
    (perm, tiles)
}

/// Runs grouped and indexed on the same inputs and checks both against the CPU.
/// Returns (grouped, indexed) wall times of the launches.
#[allow(clippy::too_many_arguments)]
fn case(
    t: &testing::TestContext,
    rng: &mut Rng,
    gw: &GpuWeight,
    wdq: &[f32],
    rpe: usize,
    ids_list: &[u32],
    x_div: usize,
    epi: Epilogue,
    what: &str,
) -> (f64, f64) {
    let ctx = &t.ctx;
    if std::env::var("MOE_GROUPED_TRACE").is_ok() {
        eprintln!(
            "{t_name} {what} pairs {ids_list_len} x_div {x_div} {epi:?}",
            t_name = t.name,
            ids_list_len = ids_list.len()
        );
    }
    let cols = gw.cols;
    let experts = gw.rows / rpe;
    let pairs = ids_list.len();
    let width = if epi == Epilogue::SwiGlu {
        rpe / 2
    } else {
        rpe
    };
    let x_rows = (pairs - 1) / x_div + 1;
    // Aligned rows (vec4 x loads) for x_div > 1, unaligned otherwise.
    let x_stride = if x_div == 1 {
        cols + 1
    } else {
        cols.next_multiple_of(4)
    };
    let y_stride = width + 3;
    let mut xbuf = vec![f32::NAN; (x_rows - 1) * x_stride + cols + 3];
    let mut xrows = Vec::new();
    for r in 0..x_rows {
        let v = rng.normal_vec(cols);
        xbuf[r * x_stride..][..cols].copy_from_slice(&v);
        xrows.push(v);
    }
    let ids_off = 3usize;
    let mut ids_buf = vec![99u32; ids_off];
    ids_buf.extend_from_slice(ids_list);
    ids_buf.push(98);
    let ylen = (pairs - 1) * y_stride + width + 2;
    let init = if epi == Epilogue::Accumulate {
        rng.normal_vec(ylen)
    } else {
        vec![f32::NAN; ylen]
    };
    let x = ctx.upload("x", &xbuf).unwrap();
    let ids = ctx.upload("ids", &ids_buf).unwrap();
    let y_g = ctx.upload("y grouped", &init).unwrap();
    let y_i = ctx.upload("y indexed", &init).unwrap();
    let scratch = GroupScratch::new(ctx, pairs as u32 + 5, experts as u32 + 1).unwrap();
    // Poison the scratch: stale tiles must not matter.
    ctx.fill_f32(&scratch.buffer, f32::from_bits(0x7fff_fff0));
    let mut d = vec![moe_group(
        ctx,
        &TensorView::words(&ids, ids_off as u32, pairs as u32),
        experts as u32,
        &scratch,
    )
    .unwrap_or_else(|e| panic!("{t_name} {what}: {e}", t_name = t.name))];
    d.extend(
        matmul_grouped(
            ctx,
            gw,
            &GroupedArgs {
                x: f32_strided(&x, x_rows, cols, x_stride),
                x_row_div: x_div as u32,
                y: f32_strided(&y_g, pairs, width, y_stride),
                rows_per_expert: rpe as u32,
            },
            &scratch,
            epi,
        )
        .unwrap_or_else(|e| panic!("{t_name} {what}: {e}", t_name = t.name)),
    );
    let di = matmul_indexed(
        ctx,
        gw,
        &IndexedArgs {
            x: &x,
            x_stride: x_stride as u32,
            x_row_div: x_div as u32,
            ids: &ids,
            ids_offset: ids_off as u32,
            y: &y_i,
            y_stride: y_stride as u32,
            pairs: pairs as u32,
            rows_per_expert: rpe as u32,
        },
        epi,
    )
    .unwrap();
    let t0 = Instant::now();
    run(ctx, &d);
    let tg = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    run(ctx, &di);
    let ti = t0.elapsed().as_secs_f64();

    // The grouping itself: stable permutation and tile table.
    let (perm, tiles) = group_ref(ids_list, experts);
    let head = ctx.read_u32(&scratch.buffer, 0, 2).unwrap();
    assert_eq!(
        head[0] as usize,
        tiles.len(),
        "{t_name} {what}: tile count",
        t_name = t.name
    );
    assert_eq!(
        head[1] as usize,
        perm.len(),
        "{t_name} {what}: grouped pairs",
        t_name = t.name
    );
    assert!(tiles.len() <= tile_bound(pairs as u32, experts as u32) as usize);
    assert_eq!(
        ctx.read_u32(&scratch.buffer, 4, perm.len()).unwrap(),
        perm,
        "{t_name} {what}: permutation",
        t_name = t.name
    );
    let toff = scratch.tiles_offset() as usize;
    let got_tiles = ctx
        .read_u32(&scratch.buffer, toff, 4 * tiles.len())
        .unwrap();
    for (g, want) in tiles.iter().enumerate() {
        assert_eq!(
            &got_tiles[4 * g..4 * g + 3],
            want,
            "{t_name} {what}: tile {g}",
            t_name = t.name
        );
    }

    let got_g = ctx.read_f32(&y_g, 0, ylen).unwrap();
    let got_i = ctx.read_f32(&y_i, 0, ylen).unwrap();
    let mut want = vec![None; ylen];
    for (p, &e) in ids_list.iter().enumerate() {
        let e = e as usize;
        if e >= experts {
            continue;
        }
        let w = &wdq[e * rpe * cols..(e + 1) * rpe * cols];
        for c in 0..width {
            let (mut v, mut tol) = support::expected(
                &xrows[p / x_div],
                w,
                cols,
                rpe,
                c,
                epi == Epilogue::SwiGlu,
                1e-5,
            );
            let i = p * y_stride + c;
            if epi == Epilogue::Accumulate {
                v += init[i] as f64;
                tol += 1e-6 * init[i].abs() as f64;
            }
            want[i] = Some((v, tol));
        }
    }
    let what = format!(
        "{t_name} {what} pairs {pairs} x_div {x_div} {epi:?}",
        t_name = t.name
    );
    let mut bad = Vec::new();
    for i in 0..ylen {
        match want[i] {
            None => {
                if got_g[i].to_bits() != init[i].to_bits() {
                    bad.push(format!(
                        "[{i}] grouped wrote {got_g_i:e} outside its rows",
                        got_g_i = got_g[i]
                    ));
                }
            }
            Some((w, tol)) => {
                let ok = |g: f32| g.is_finite() && (g as f64 - w).abs() <= tol;
                if !ok(got_g[i]) || !ok(got_i[i]) || (got_g[i] - got_i[i]).abs() as f64 > 2.0 * tol
                {
                    bad.push(format!(
                        "[{i}] grouped {got_g_i:e}, indexed {got_i_i:e}, want {w:e} ± {tol:e}",
                        got_g_i = got_g[i],
                        got_i_i = got_i[i]
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {bad_len} of {ylen} values wrong:\n  {n}",
        bad_len = bad.len(),
        n = bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n  ")
    );
    (tg, ti)
}

/// E = 8, k = 2 / E = 5, k = 3 / E = 64, k = 8; T in {2, 17, 70, 130} (alternating per format);
/// BF16, E4M3 with 128×128 blocks, E4M3 per-channel; Store and SwiGlu.
#[test]
fn grouped_matches_indexed_and_reference() {
    let start = Instant::now();
    for t in testing::contexts() {
        let seed = 0x6e0_0001u64;
        let mut rng = Rng::new(seed);
        for (experts, k, rpe, cols) in [
            (8usize, 2usize, 48usize, 136usize),
            (5, 3, 66, 96),
            (64, 8, 20, 36),
        ] {
            for (fi, (dtype, scheme)) in [
                (Dtype::BF16, Scheme::None),
                (Dtype::F8E4M3, Scheme::Block128),
                (Dtype::F8E4M3, Scheme::PerChannel),
            ]
            .into_iter()
            .enumerate()
            {
                let pw = packed(&mut rng, dtype, experts * rpe, cols, scheme);
                let wdq = qwgpu_loader::dequantize(&pw).unwrap();
                let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
                // Token counts alternate between formats (every T meets every
                // geometry) to keep the lavapipe run short.
                for (ti, tokens) in [2usize, 17, 70, 130]
                    .into_iter()
                    .enumerate()
                    .filter(|(ti, _)| (ti + fi) % 2 == 0)
                {
                    let ids = skewed_ids(&mut rng, tokens, experts, k);
                    for (ei, epi) in [Epilogue::Store, Epilogue::SwiGlu].into_iter().enumerate() {
                        // SwiGlu reads x per token (x_div = k), Store per pair (as the down projection).
                        let x_div = if epi == Epilogue::SwiGlu { k } else { 1 };
                        let _ = (ti, ei);
                        let what = format!(
                            "seed {seed:#x} E {experts} k {k} T {tokens} {dtype:?} {scheme:?} [{experts_rpe}, {cols}]",
                            experts_rpe = experts * rpe
                        );
                        case(t, &mut rng, &gw, &wdq, rpe, &ids, x_div, epi, &what);
                    }
                }
            }
        }
    }
    eprintln!("grouped cases: {:.1} s", start.elapsed().as_secs_f64());
}

/// Non-router ids: duplicates within a token, ids past the experts (skipped,
/// rows untouched), one expert taking > 128 pairs (3 tiles), Accumulate, and
/// weights split into pieces (gate and up rows of one expert in different pieces).
#[test]
fn grouped_odd_ids_accumulate_and_pieces() {
    for t in testing::contexts() {
        let seed = 0x6e0_0002u64;
        let mut rng = Rng::new(seed);
        let (experts, rpe, cols) = (6usize, 26usize, 44usize);
        let pw = packed(
            &mut rng,
            Dtype::F8E4M3,
            experts * rpe,
            cols,
            Scheme::Block128,
        );
        let wdq = qwgpu_loader::dequantize(&pw).unwrap();
        let whole = GpuWeight::upload(&t.ctx, &pw).unwrap();
        let split = upload_pieces(&t.ctx, &pw, &[1, 36, 50, 40, 29]);
        let pw16 = packed(&mut rng, Dtype::BF16, experts * rpe, cols, Scheme::None);
        let wdq16 = qwgpu_loader::dequantize(&pw16).unwrap();
        let split16 = upload_pieces(&t.ctx, &pw16, &[13, 13, 130]);
        let ids_sets: Vec<Vec<u32>> = vec![
            vec![3],
            vec![7, 7],
            (0..200u32)
                .map(|i| if i % 5 == 0 { (i / 5) % 9 } else { 2 })
                .collect(),
            (0..67u32).map(|i| (i * 7 + 1) % 6).collect(),
        ];
        for ids in &ids_sets {
            for epi in [Epilogue::Store, Epilogue::Accumulate, Epilogue::SwiGlu] {
                for (name, gw, wdq) in [
                    ("whole", &whole, &wdq),
                    ("pieces", &split, &wdq),
                    ("bf16 pieces", &split16, &wdq16),
                ] {
                    let x_div = 1 + ids.len() % 2;
                    let what = format!(
                        "seed {seed:#x} {name} ids {first_ids:?}..",
                        first_ids = &ids[..ids.len().min(6)]
                    );
                    case(t, &mut rng, gw, wdq, rpe, ids, x_div, epi, &what);
                }
            }
        }
    }
}

fn arguments_error(r: Result<Vec<Dispatch>, KernelError>, needle: &str) {
    match r {
        Err(KernelError::Arguments { detail, .. }) => {
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`")
        }
        Err(e) => panic!("expected an Arguments error containing `{needle}`, got {e}"),
        Ok(_) => panic!("expected an Arguments error containing `{needle}`, got launches"),
    }
}

#[test]
fn grouped_bad_arguments_are_typed_errors() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = Rng::new(3);
    let pw = packed(&mut rng, Dtype::BF16, 4 * 10, 16, Scheme::None);
    let gw = GpuWeight::upload(ctx, &pw).unwrap();
    let x = ctx.storage("x", 64 * 16 * 4).unwrap();
    let y = ctx.storage("y", 64 * 10 * 4).unwrap();
    let scratch = GroupScratch::new(ctx, 64, 4).unwrap();
    let args = GroupedArgs {
        x: f32_strided(&x, 64, 16, 16),
        x_row_div: 1,
        y: f32_strided(&y, 64, 10, 10),
        rows_per_expert: 10,
    };
    assert!(matmul_grouped(ctx, &gw, &args, &scratch, Epilogue::Store).is_ok());
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                x: f32_strided(&x, 65, 16, 16),
                y: f32_strided(&y, 65, 10, 10),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "scratch holds",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                rows_per_expert: 7,
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "rows per expert",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                rows_per_expert: 5,
                y: f32_strided(&y, 64, 2, 5),
                ..args
            },
            &scratch,
            Epilogue::SwiGlu,
        ),
        "even number",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                x_row_div: 0,
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "x_row_div",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                y: f32_strided(&x, 64, 10, 10),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "same buffer",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                y: f32_strided(&y, 64, 10, 9),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "y stride 9 is below its row width 10",
    );
    // Views of another shape than the weight and the pairs say, or past element 0.
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                x: f32_strided(&x, 63, 16, 16),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "x has shape [63, 16], expected [64, 16]",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                y: f32_strided(&y, 64, 5, 10),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "y has shape [64, 5], expected [64, 10]",
    );
    arguments_error(
        matmul_grouped(
            ctx,
            &gw,
            &GroupedArgs {
                x: TensorView::rows(&x, QDtype::F32, 16, [63, 16], 16),
                y: f32_strided(&y, 63, 10, 10),
                ..args
            },
            &scratch,
            Epilogue::Store,
        ),
        "x must start at element 0",
    );
    let ids = ctx.storage("ids", 64 * 4).unwrap();
    let words = |offset, len| TensorView::words(&ids, offset, len);
    assert!(moe_group(ctx, &words(0, 64), 4, &scratch).is_ok());
    let err = moe_group(ctx, &words(1, 64), 4, &scratch).unwrap_err();
    assert!(
        err.to_string().contains("ids needs elements 1..65"),
        "{err}"
    );
    assert!(matches!(
        moe_group(ctx, &words(0, 64), 5, &scratch),
        Err(KernelError::Arguments { .. })
    ));
    let wide = GroupScratch::new(ctx, 128, 4).unwrap();
    let f32_ids = TensorView::f32_rows(&ids, 0, 1, 64);
    let err = moe_group(ctx, &f32_ids, 4, &wide).unwrap_err();
    assert!(
        err.to_string().contains("ids is F32, expected U32"),
        "{err}"
    );
    assert!(!prefer_grouped(1, 1) && !prefer_grouped(31, 8) && prefer_grouped(32, 8));
    assert!(matches!(
        GroupScratch::new(ctx, 8, 2000),
        Err(KernelError::Arguments { .. })
    ));
}

/// Lavapipe timing at T = 130, E = 64, k = 8 (1040 pairs): grouped vs indexed,
/// gate/up SwiGlu [64·2·48, 128] and down [64·128, 48]. `--ignored` to run.
#[test]
#[ignore]
fn grouped_timing_t130() {
    let t = testing::contexts()[0];
    let mut rng = Rng::new(7);
    let (experts, k, tokens, h, ie) = (64usize, 8usize, 130usize, 128usize, 48usize);
    let ids = skewed_ids(&mut rng, tokens, experts, k);
    for (dtype, scheme) in [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::Block128),
    ] {
        for (rpe, cols, epi, x_div) in [
            (2 * ie, h, Epilogue::SwiGlu, k),
            (h, ie, Epilogue::Store, 1),
        ] {
            let pw = packed(&mut rng, dtype, experts * rpe, cols, scheme);
            let wdq = qwgpu_loader::dequantize(&pw).unwrap();
            let gw = GpuWeight::upload(&t.ctx, &pw).unwrap();
            // Warm-up (pipelines), then timed.
            case(t, &mut rng, &gw, &wdq, rpe, &ids, x_div, epi, "warm-up");
            let (tg, ti) = case(t, &mut rng, &gw, &wdq, rpe, &ids, x_div, epi, "timed");
            eprintln!(
                "{t_name} {dtype:?} {epi:?} [{experts_rpe}, {cols}] T {tokens} pairs {ids_len}: grouped (sort + gemm) {tg_1e3:.1} ms, indexed {ti_1e3:.1} ms",
                t_name = t.name,
                experts_rpe = experts * rpe,
                ids_len = ids.len(),
                tg_1e3 = tg * 1e3,
                ti_1e3 = ti * 1e3
            );
        }
    }
}

/// GPU-timestamp bench at Qwen3.5-35B-A3B-like expert dims (E = 256, k = 8,
/// H = 2048, Ie = 512): sort + grouped vs indexed, gate/up (SwiGlu) and down.
/// `--ignored`; needs TIMESTAMP_QUERY (not lavapipe-sized: run on a real GPU).
#[test]
#[ignore]
fn grouped_bench_real_dims() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let (experts, k, h, ie) = (256usize, 8usize, 2048usize, 512usize);
    let mut rng = Rng::new(11);
    // Baseline: the dense tiled GEMM (mm_tile) at the same width, same harness.
    {
        let w = GpuWeight::upload(ctx, &packed(&mut rng, Dtype::BF16, 2 * ie, h, Scheme::None))
            .unwrap();
        for tokens in [4096usize] {
            let x = ctx.upload("x", &rng.normal_vec(tokens * h)).unwrap();
            let y = ctx.storage("y", (tokens * ie * 4) as u64).unwrap();
            let d = qwgpu_kernels::matmul::matmul(
                ctx,
                &w,
                &qwgpu_kernels::matmul::MatmulArgs {
                    x: &x,
                    x_offset: 0,
                    x_stride: h as u32,
                    y: &y,
                    y_offset: 0,
                    y_stride: ie as u32,
                    t: tokens as u32,
                },
                Epilogue::SwiGlu,
            )
            .unwrap();
            let refs: Vec<&Dispatch> = d.iter().collect();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                best = best.min(qwgpu_kernels::profile::time_dispatches(ctx, &refs).unwrap()[0].1);
            }
            eprintln!(
                "dense mm_tile BF16 [{ie}, {h}] T {tokens}: {us:.1} µs = {tflops:.2} TFLOP/s",
                ie = 2 * ie,
                us = best / 1e3,
                tflops = 2.0 * (tokens * 2 * ie * h) as f64 / best / 1e3
            );
        }
    }
    if std::env::var("MOE_BENCH_DENSE_ONLY").is_ok() {
        return;
    }
    for (dtype, scheme) in [
        (Dtype::BF16, Scheme::None),
        (Dtype::F8E4M3, Scheme::Block128),
    ] {
        let gu =
            GpuWeight::upload(ctx, &packed(&mut rng, dtype, experts * 2 * ie, h, scheme)).unwrap();
        let dn = GpuWeight::upload(ctx, &packed(&mut rng, dtype, experts * h, ie, scheme)).unwrap();
        for tokens in [16usize, 130, 2048] {
            let pairs = tokens * k;
            let ids_list = skewed_ids(&mut rng, tokens, experts, k);
            let ids = ctx.upload("ids", &ids_list).unwrap();
            let x = ctx.upload("x", &rng.normal_vec(tokens * h)).unwrap();
            let act_g = ctx.storage("act g", (pairs * ie * 4) as u64).unwrap();
            let act_i = ctx.storage("act i", (pairs * ie * 4) as u64).unwrap();
            let out_g = ctx.storage("out g", (pairs * h * 4) as u64).unwrap();
            let out_i = ctx.storage("out i", (pairs * h * 4) as u64).unwrap();
            let scratch = GroupScratch::new(ctx, pairs as u32, experts as u32).unwrap();
            let ids_view = TensorView::words(&ids, 0, pairs as u32);
            let mut g = vec![moe_group(ctx, &ids_view, experts as u32, &scratch).unwrap()];
            let ga = |x, xs: u32, div: u32, y, ys: u32, rpe: u32| GroupedArgs {
                x: f32_strided(x, (pairs - 1) / div as usize + 1, xs as usize, xs as usize),
                x_row_div: div,
                y: f32_strided(y, pairs, ys as usize, ys as usize),
                rows_per_expert: rpe,
            };
            g.extend(
                matmul_grouped(
                    ctx,
                    &gu,
                    &ga(&x, h as u32, k as u32, &act_g, ie as u32, 2 * ie as u32),
                    &scratch,
                    Epilogue::SwiGlu,
                )
                .unwrap(),
            );
            g.extend(
                matmul_grouped(
                    ctx,
                    &dn,
                    &ga(&act_g, ie as u32, 1, &out_g, h as u32, h as u32),
                    &scratch,
                    Epilogue::Store,
                )
                .unwrap(),
            );
            let ia = |x, xs, div, y, ys, rpe| IndexedArgs {
                x,
                x_stride: xs,
                x_row_div: div,
                ids: &ids,
                ids_offset: 0,
                y,
                y_stride: ys,
                pairs: pairs as u32,
                rows_per_expert: rpe,
            };
            let mut i = matmul_indexed(
                ctx,
                &gu,
                &ia(&x, h as u32, k as u32, &act_i, ie as u32, 2 * ie as u32),
                Epilogue::SwiGlu,
            )
            .unwrap();
            i.extend(
                matmul_indexed(
                    ctx,
                    &dn,
                    &ia(&act_i, ie as u32, 1, &out_i, h as u32, h as u32),
                    Epilogue::Store,
                )
                .unwrap(),
            );
            let all: Vec<&Dispatch> = g.iter().chain(i.iter()).collect();
            let mut best = vec![f64::INFINITY; all.len()];
            for _ in 0..5 {
                let times = qwgpu_kernels::profile::time_dispatches(ctx, &all).unwrap();
                for (b, (_, ns)) in best.iter_mut().zip(times) {
                    *b = b.min(ns);
                }
            }
            let a = ctx.read_f32(&out_g, 0, pairs * h).unwrap();
            let b = ctx.read_f32(&out_i, 0, pairs * h).unwrap();
            let maxd = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            let maxv = b.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            eprintln!(
                "{t_name} {dtype:?} T {tokens} pairs {pairs}: sort {best_0_1e3:.1} µs, grouped gate_up {best_1_1e3:.1} down {best_2_1e3:.1} µs | indexed gate_up {best_3_1e3:.1} down {best_4_1e3:.1} µs | max |diff| {maxd:e} of max {maxv:e}",
                t_name = t.name,
                best_0_1e3 = best[0] / 1e3,
                best_1_1e3 = best[1] / 1e3,
                best_2_1e3 = best[2] / 1e3,
                best_3_1e3 = best[3] / 1e3,
                best_4_1e3 = best[4] / 1e3,
            );
        }
    }
}
