//! Embedding gather against `qwgpu_loader::dequantize`, for every stored format
//! and scale scheme, on both test contexts. Expected: **bit-exact** equality —
//! decoding BF16/F16/FP8 to f32 is exact and the one scale multiply is a single
//! correctly rounded f32 product on both sides. Random bit patterns avoid NaN and
//! infinity encodings (FP8 0x7f/0xff, E5M2/F16 exponent all ones) and, for F32
//! and BF16, exponents whose scaled value could become an f32 denormal (GPUs may
//! flush those to zero).

use qwgpu_checkpoint::Dtype;
use qwgpu_kernels::view::TensorView;
use qwgpu_kernels::{embed, testing, GpuContext, GpuWeight};
use qwgpu_loader::PackedWeight;

mod support;
use qwgpu_ops::rng::SplitMix64;
use support::Scheme;

/// Random element bytes of `dtype` with the encodings above avoided.
fn random_data(rng: &mut SplitMix64, dtype: Dtype, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * dtype.size());
    for _ in 0..n {
        let r = rng.next_u64();
        match dtype {
            Dtype::F32 => {
                // Exponent field in [64, 190]: |v| in [2^-63, 2^64).
                let exp = 64 + (r >> 40) as u32 % 127;
                let bits = (r as u32 & 0x807f_ffff) | (exp << 23);
                out.extend_from_slice(&bits.to_le_bytes());
            }
            Dtype::BF16 => {
                let exp = 64 + (r >> 40) as u16 % 127;
                let bits = (r as u16 & 0x807f) | (exp << 7);
                out.extend_from_slice(&bits.to_le_bytes());
            }
            Dtype::F16 => {
                // Any f16 but inf/NaN (exponent 31); subnormals included.
                let mut bits = r as u16;
                if bits & 0x7c00 == 0x7c00 {
                    bits &= !0x4000;
                }
                out.extend_from_slice(&bits.to_le_bytes());
            }
            Dtype::F8E4M3 => {
                let mut b = r as u8;
                if b & 0x7f == 0x7f {
                    b &= !0x01;
                }
                out.push(b);
            }
            Dtype::F8E5M2 => {
                let mut b = r as u8;
                if b & 0x7c == 0x7c {
                    b &= !0x40;
                }
                out.push(b);
            }
            Dtype::I32 | Dtype::I64 => {
                panic!("I32 is the 4-bit words' type, not an element format")
            }
        }
    }
    out
}

/// A scale in [0.5, 2) times a power of two in 2^-6..2^6.
fn random_scale(rng: &mut SplitMix64) -> f32 {
    let m = 0.5 + 1.5 * (rng.next_f64() as f32);
    m * 2f32.powi((rng.next_u64() % 13) as i32 - 6)
}

fn shards_for(rows: usize) -> Vec<(usize, usize)> {
    if rows >= 4 {
        vec![(0, 3), (3, rows - 3)]
    } else {
        vec![(0, rows)]
    }
}

fn packed(
    rng: &mut SplitMix64,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    scheme: Scheme,
) -> PackedWeight {
    let parts = shards_for(rows);
    let data = random_data(rng, dtype, rows * cols);
    let name = format!("embed {dtype:?} {scheme:?}");
    let mut draw = || random_scale(rng);
    support::packed_weight(name, dtype, rows, cols, &parts, scheme, data, &mut draw)
}

/// The same weight as `GpuWeight::upload` makes, but split into pieces of at
/// most `piece_rows` rows (what a weight over the binding limit gets).
fn upload_in_pieces(ctx: &GpuContext, w: &PackedWeight, piece_rows: usize) -> GpuWeight {
    let sizes: Vec<usize> = (0..w.rows)
        .step_by(piece_rows)
        .map(|r| piece_rows.min(w.rows - r))
        .collect();
    GpuWeight::upload_pieces(ctx, w, &sizes).unwrap()
}

fn run_case(
    ctx: &GpuContext,
    name: &str,
    gw: &GpuWeight,
    w: &PackedWeight,
    ids: &[u32],
    what: &str,
) {
    let want_rows = qwgpu_loader::dequantize(w).unwrap();
    let ids_off = 3u32;
    let mut id_buf = vec![0xdead_beefu32; ids_off as usize];
    id_buf.extend_from_slice(ids);
    let idb = ctx.upload("ids", &id_buf).unwrap();
    let t = ids.len();
    let n = t * w.cols;
    let hb = ctx.storage("h", (n as u64 + 4) * 4).unwrap();
    ctx.fill_f32(&hb, f32::NAN);
    let ds = embed::embed(
        ctx,
        gw,
        &TensorView::words(&idb, ids_off, t as u32),
        &TensorView::f32_rows(&hb, 0, t as u32, w.cols as u32),
    )
    .unwrap();
    assert_eq!(ds.len(), gw.pieces.len());
    ctx.run("embed", &ds.iter().collect::<Vec<_>>()).unwrap();
    let got = ctx.read_f32(&hb, 0, n + 4).unwrap();
    for (ti, &id) in ids.iter().enumerate() {
        for c in 0..w.cols {
            let g = got[ti * w.cols + c];
            let want = if (id as usize) < w.rows {
                want_rows[id as usize * w.cols + c]
            } else {
                0.0
            };
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "{name} {what}: token {ti} (id {id}) col {c}: got {g} want {want}"
            );
        }
    }
    assert!(
        got[n..].iter().all(|v| v.is_nan()),
        "{name} {what}: wrote past the output"
    );
}

fn ids_for(rng: &mut SplitMix64, rows: usize, t: usize) -> Vec<u32> {
    // Out of order, with repeats; the last id of longer lists is out of range (zeros).
    let mut ids: Vec<u32> = (0..t)
        .map(|_| (rng.next_u64() % rows as u64) as u32)
        .collect();
    if t >= 3 {
        ids[1] = ids[0];
        ids[t - 1] = rows as u32 + 5;
    }
    ids
}

#[test]
fn embed_is_exact_for_every_format_and_scale_scheme() {
    let formats = [
        Dtype::F32,
        Dtype::BF16,
        Dtype::F16,
        Dtype::F8E4M3,
        Dtype::F8E5M2,
    ];
    for t in testing::contexts() {
        let ctx = &t.ctx;
        let mut seed = 1000u64;
        for dtype in formats {
            let schemes: &[Scheme] = if dtype.is_fp8() {
                &[
                    Scheme::PerShard { broadcast: false },
                    Scheme::PerChannel,
                    Scheme::Block([2, 4]),
                    Scheme::Block([128, 128]),
                ]
            } else {
                &[Scheme::None, Scheme::PerChannel, Scheme::Block([3, 8])]
            };
            for &scheme in schemes {
                for (rows, cols, tc) in [
                    (1usize, 1usize, 1usize),
                    (7, 3, 3),
                    (9, 65, 65),
                    (5, 130, 3),
                ] {
                    seed += 1;
                    let mut rng = SplitMix64::new(seed);
                    let w = packed(&mut rng, dtype, rows, cols, scheme);
                    let gw = GpuWeight::upload(ctx, &w).unwrap();
                    let ids = ids_for(&mut rng, rows, tc);
                    let what = format!("seed {seed} {dtype:?} {scheme:?} [{rows}, {cols}] T {tc}");
                    run_case(ctx, &t.name, &gw, &w, &ids, &what);
                }
            }
        }
    }
}

#[test]
fn embed_handles_pieces_and_wide_rows() {
    for t in testing::contexts() {
        let ctx = &t.ctx;
        for (seed, dtype, scheme, rows, cols, piece_rows) in [
            (1u64, Dtype::BF16, Scheme::None, 10usize, 4096usize, 3usize),
            (2, Dtype::F8E4M3, Scheme::Block([128, 128]), 9, 4096, 4),
            (
                3,
                Dtype::F32,
                Scheme::PerShard { broadcast: false },
                7,
                130,
                1,
            ),
            (4, Dtype::F16, Scheme::PerChannel, 6, 65, 5),
        ] {
            let mut rng = SplitMix64::new(seed);
            let w = packed(&mut rng, dtype, rows, cols, scheme);
            let gw = upload_in_pieces(ctx, &w, piece_rows);
            assert!(gw.pieces.len() > 1);
            let ids = ids_for(&mut rng, rows, 7);
            let what = format!(
                "seed {seed} {dtype:?} {scheme:?} [{rows}, {cols}] pieces of {piece_rows} rows"
            );
            run_case(ctx, &t.name, &gw, &w, &ids, &what);
        }
    }
}

#[test]
fn embed_rejects_out_of_range_buffers() {
    let t = testing::contexts()[0];
    let ctx = &t.ctx;
    let mut rng = SplitMix64::new(9);
    let w = packed(&mut rng, Dtype::BF16, 4, 8, Scheme::None);
    let gw = GpuWeight::upload(ctx, &w).unwrap();
    let ids = ctx.upload("ids", &[0u32; 8]).unwrap();
    let h = ctx.storage("h", 4 * 8 * 4).unwrap();
    let h_rows = |rows| TensorView::f32_rows(&h, 0, rows, 8);
    let err = embed::embed(ctx, &gw, &TensorView::words(&ids, 6, 4), &h_rows(4)).unwrap_err();
    assert!(
        err.to_string().contains("ids needs elements 6..10"),
        "{err}"
    );
    let ids5 = TensorView::words(&ids, 0, 5);
    let err = embed::embed(ctx, &gw, &ids5, &h_rows(5)).unwrap_err();
    assert!(err.to_string().contains("h needs elements 0..40"), "{err}");
    // Views that disagree with each other, the weight or the kernel's layout.
    let ids4 = TensorView::words(&ids, 0, 4);
    let err = embed::embed(ctx, &gw, &ids4, &h_rows(3)).unwrap_err();
    assert!(
        err.to_string()
            .contains("h has shape [3, 8], expected [4, 8]"),
        "{err}"
    );
    let narrow = TensorView::f32_rows(&h, 0, 4, 7);
    let err = embed::embed(ctx, &gw, &ids4, &narrow).unwrap_err();
    assert!(err.to_string().contains("expected [4, 8]"), "{err}");
    let shifted = TensorView::f32_rows(&h, 1, 3, 8);
    let err = embed::embed(ctx, &gw, &TensorView::words(&ids, 0, 3), &shifted).unwrap_err();
    assert!(
        err.to_string().contains("h must start at element 0"),
        "{err}"
    );
    let f32_ids = TensorView::f32_rows(&ids, 0, 1, 4);
    let err = embed::embed(ctx, &gw, &f32_ids, &h_rows(4)).unwrap_err();
    assert!(
        err.to_string().contains("ids is F32, expected U32"),
        "{err}"
    );
}
