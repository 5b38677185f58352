//! MoE router against `qwgpu_ops::moe::route` (ids exact, weights within 1e-6
//! absolute: f32 softmax with another summation order and the GPU's `exp`), and
//! the combine kernel against the formula written directly with
//! `qwgpu_ops::activation::sigmoid` (`Tol::gpu_f32()`: FMA contraction and the
//! GPU's `exp`). Both test contexts.

use qwgpu_kernels::view::{Dtype, TensorView};
use qwgpu_kernels::{moe, testing};
use qwgpu_ops::activation::sigmoid;
use qwgpu_ops::compare::Tol;
use qwgpu_ops::rng::Rng;

#[test]
fn moe_route_matches_ops_route_including_ties() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let mut seed = 500u64;
        // (T, experts, top_k, ties): ties draw logits from {0, 0.5, 1}.
        for (tn, e, k, ties) in [
            (1u32, 8u32, 2u32, false),
            (3, 8, 2, false),
            (65, 8, 2, true),
            (3, 5, 3, true),
            (65, 5, 3, false),
            (1, 1, 1, false),
            (3, 256, 8, false),
            (3, 512, 10, true),
            (2, 65, 64, false),
            (1, 1024, 64, true),
        ] {
            seed += 1;
            let mut rng = Rng::new(seed);
            let n = (tn * e) as usize;
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    if ties {
                        (rng.uniform() * 3.0).floor() * 0.5
                    } else {
                        rng.normal() * 2.0
                    }
                })
                .collect();
            let lb = ctx.upload("logits", &logits).unwrap();
            let nk = (tn * k) as usize;
            let ib = ctx.storage("ids", (nk as u64 + 4) * 4).unwrap();
            let wb = ctx.storage("weights", (nk as u64 + 4) * 4).unwrap();
            ctx.fill_f32(&ib, f32::NAN);
            ctx.fill_f32(&wb, f32::NAN);
            let d = moe::moe_route(
                ctx,
                &TensorView::f32_rows(&lb, 0, tn, e),
                &TensorView::rows(&ib, Dtype::U32, 0, [tn as u64, k as u64], k as u64),
                &TensorView::f32_rows(&wb, 0, tn, k),
            )
            .unwrap();
            ctx.run("moe_route", &[&d]).unwrap();
            let ids = ctx.read_u32(&ib, 0, nk + 4).unwrap();
            let ws = ctx.read_f32(&wb, 0, nk + 4).unwrap();
            let what = format!("seed {seed} T {tn} E {e} k {k} ties {ties}");
            for ti in 0..tn as usize {
                let want = qwgpu_ops::moe::route(
                    &logits[ti * e as usize..(ti + 1) * e as usize],
                    k as usize,
                );
                for (s, &(we, ww)) in want.iter().enumerate() {
                    let i = ti * k as usize + s;
                    assert_eq!(
                        ids[i] as usize,
                        we,
                        "{t_name} {what}: token {ti} slot {s} id",
                        t_name = t.name
                    );
                    assert!(
                        (ws[i] - ww).abs() <= 1e-6,
                        "{t_name} {what}: token {ti} slot {s} weight {ws_i} want {ww}",
                        t_name = t.name,
                        ws_i = ws[i]
                    );
                }
            }
            assert!(
                ids[nk..].iter().all(|v| *v == f32::NAN.to_bits()),
                "{t_name} {what}: ids written past the end",
                t_name = t.name
            );
            assert!(
                ws[nk..].iter().all(|v| v.is_nan()),
                "{t_name} {what}: weights written past the end",
                t_name = t.name
            );
        }
    }
}

#[test]
fn moe_combine_matches_the_formula() {
    let tol = Tol::gpu_f32();
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let mut seed = 700u64;
        for (tn, k, hidden) in [
            (1u32, 2u32, 1u32),
            (3, 3, 3),
            (65, 2, 65),
            (3, 8, 130),
            (3, 2, 4096),
            (65, 10, 128),
        ] {
            seed += 1;
            let mut rng = Rng::new(seed);
            let (tu, ku, hu) = (tn as usize, k as usize, hidden as usize);
            let xo = rng.normal_vec(tu * ku * hu);
            let w: Vec<f32> = (0..tu * ku).map(|_| rng.uniform()).collect();
            let so = rng.normal_vec(tu * hu);
            let gate: Vec<f32> = rng.normal_vec(tu).iter().map(|v| v * 3.0).collect();
            let h0 = rng.normal_vec(tu * hu);
            let mut want = h0.clone();
            for (ti, g) in gate.iter().enumerate() {
                for c in 0..hu {
                    let mut acc = 0.0f32;
                    for s in 0..ku {
                        let r = ti * ku + s;
                        acc += w[r] * xo[r * hu + c];
                    }
                    let i = ti * hu + c;
                    want[i] = h0[i] + acc + sigmoid(*g) * so[i];
                }
            }
            let xb = ctx.upload("expert_out", &xo).unwrap();
            let wb = ctx.upload("weights", &w).unwrap();
            let sb = ctx.upload("shared_out", &so).unwrap();
            let gb = ctx.upload("gate", &gate).unwrap();
            let mut hpad = h0.clone();
            hpad.extend([f32::NAN; 4]);
            let hb = ctx.upload("h", &hpad).unwrap();
            let d = moe::moe_combine(
                ctx,
                &TensorView::f32_rows(&xb, 0, tn * k, hidden),
                &TensorView::f32_rows(&wb, 0, tn, k),
                &TensorView::f32_rows(&sb, 0, tn, hidden),
                &TensorView::f32_rows(&gb, 0, tn, 1),
                &TensorView::f32_rows(&hb, 0, tn, hidden),
            )
            .unwrap();
            ctx.run("moe_combine", &[&d]).unwrap();
            let got = ctx.read_f32(&hb, 0, tu * hu + 4).unwrap();
            let what = format!("seed {seed} T {tn} k {k} H {hidden}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    tol.allows(*g, *w),
                    "{t_name} {what}: element {i}: got {g} want {w}",
                    t_name = t.name
                );
            }
            assert!(
                got[tu * hu..].iter().all(|v| v.is_nan()),
                "{t_name} {what}: wrote past the end",
                t_name = t.name
            );
        }
    }
}

#[test]
fn moe_arguments_are_checked() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let b = ctx.storage("b", 1024).unwrap();
    let f = |rows, cols| TensorView::f32_rows(&b, 0, rows, cols);
    let u = |rows: u64, cols: u64| TensorView::rows(&b, Dtype::U32, 0, [rows, cols], cols);
    let err = moe::moe_route(ctx, &f(1, 4), &u(1, 5), &f(1, 5)).unwrap_err();
    assert!(err.to_string().contains("top_k 5"), "{err}");
    assert!(moe::moe_route(ctx, &f(1, 2048), &u(1, 2), &f(1, 2)).is_err());
    let err = moe::moe_route(ctx, &f(100, 8), &u(100, 2), &f(100, 2)).unwrap_err();
    assert!(err.to_string().contains("logits needs"), "{err}");
    // ids as f32, weights for other tokens, a view past element 0.
    let err = moe::moe_route(ctx, &f(2, 8), &f(2, 2), &f(2, 2)).unwrap_err();
    assert!(
        err.to_string().contains("ids is F32, expected U32"),
        "{err}"
    );
    let err = moe::moe_route(ctx, &f(2, 8), &u(2, 2), &f(3, 2)).unwrap_err();
    assert!(
        err.to_string()
            .contains("weights has shape [3, 2], expected [2, 2]"),
        "{err}"
    );
    let shifted = TensorView::f32_rows(&b, 4, 2, 2);
    let err = moe::moe_route(ctx, &f(2, 8), &u(2, 2), &shifted).unwrap_err();
    assert!(
        err.to_string().contains("weights must start at element 0"),
        "{err}"
    );
    let err =
        moe::moe_combine(ctx, &f(4, 100), &f(2, 2), &f(2, 100), &f(2, 1), &f(2, 100)).unwrap_err();
    assert!(err.to_string().contains("expert_out needs"), "{err}");
    let err = moe::moe_combine(ctx, &f(4, 8), &f(2, 2), &f(2, 8), &f(1, 2), &f(2, 8)).unwrap_err();
    assert!(
        err.to_string()
            .contains("gate_logit has shape [1, 2], expected [2, 1]"),
        "{err}"
    );
    let gaps = TensorView::rows(&b, Dtype::F32, 0, [2, 8], 9);
    let err = moe::moe_combine(ctx, &f(4, 8), &f(2, 2), &gaps, &f(2, 1), &f(2, 8)).unwrap_err();
    assert!(
        err.to_string().contains("shared_out must be dense"),
        "{err}"
    );
}
