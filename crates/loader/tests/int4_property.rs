//! Property: a 4-bit weight packed by its format's own formula (written here
//! from the formats' definitions: GPTQ v1/v2 along the input dimension, AWQ
//! along the output dimension in its interleaved order, compressed-tensors'
//! offset-8 `pack_to_int32`) → the loader's decoder → dequantize equals the
//! float weights the packer started from, bit for bit; and fusing several
//! such weights keeps every source's rows, scales and zeros.

mod common;

use common::{assert_same, spec, tensor, Rng};
use proptest::prelude::*;
use qwgpu_checkpoint::quant::{GptqFormat, GptqParams};
use qwgpu_checkpoint::Dtype;
use qwgpu_loader::int4::{decode_awq, decode_ct, decode_gptq, Decoded, Int4Tensors};
use qwgpu_loader::{dequantize, pack, QuantPolicy, SourceTensor, SourceWeight};

/// AWQ's nibble order along the output dimension (AutoAWQ `pack`:
/// nibble `i` of word `m` holds output `8m + ORDER[i]`).
const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// A quantized weight before packing: `q[r][c]`, per-(row, group) zero and
/// scale, the groups of each column, and the floats they stand for.
struct Plan {
    rows: usize,
    cols: usize,
    gs: usize,
    q: Vec<Vec<u8>>,
    zero: Vec<Vec<u8>>,
    scale: Vec<Vec<f32>>,
    col_group: Vec<usize>,
    floats: Vec<f32>,
}

impl Plan {
    fn groups(&self) -> usize {
        self.cols / self.gs
    }
}

/// Scales representable in F16 (how the checkpoints store them).
fn f16_scale(rng: &mut Rng) -> f32 {
    half::f16::from_f32(rng.scale() / 64.0).to_f32()
}

fn plan(rng: &mut Rng, rows: usize, cols: usize, gs: usize, zero_lo: u8, permute: bool) -> Plan {
    let groups = cols / gs;
    let q: Vec<Vec<u8>> = (0..rows)
        .map(|_| (0..cols).map(|_| rng.below(16) as u8).collect())
        .collect();
    let zero: Vec<Vec<u8>> = (0..rows)
        .map(|_| {
            (0..groups)
                .map(|_| rng.range(zero_lo as usize, 15) as u8)
                .collect()
        })
        .collect();
    let scale: Vec<Vec<f32>> = (0..rows)
        .map(|_| (0..groups).map(|_| f16_scale(rng)).collect())
        .collect();
    let mut col_group: Vec<usize> = (0..cols).map(|c| c / gs).collect();
    if permute {
        // Activation order: a random permutation of the columns' groups
        // (each group keeps gs columns, as GPTQ's act-order does).
        for i in (1..cols).rev() {
            col_group.swap(i, rng.below(i + 1));
        }
    }
    let mut floats = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let g = col_group[c];
            floats.push((f32::from(q[r][c]) - f32::from(zero[r][g])) * scale[r][g]);
        }
    }
    Plan {
        rows,
        cols,
        gs,
        q,
        zero,
        scale,
        col_group,
        floats,
    }
}

fn i32_tensor(name: &str, shape: &[usize], words: &[u32]) -> SourceTensor<'static> {
    tensor(
        name,
        Dtype::I32,
        shape,
        words.iter().flat_map(|w| w.to_le_bytes()).collect(),
    )
}

fn f16_tensor(name: &str, shape: &[usize], v: &[f32]) -> SourceTensor<'static> {
    tensor(
        name,
        Dtype::F16,
        shape,
        v.iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
    )
}

/// GPTQ's packing: `qweight [K/8, N]` along K; `qzeros [G, N/8]` along N,
/// minus one in v1; `scales [G, N]`; `g_idx [K]`.
fn pack_gptq(p: &Plan, stem: &str, v1: bool) -> Int4Tensors<'static> {
    let (n, k, g) = (p.rows, p.cols, p.groups());
    let n8 = n.div_ceil(8);
    let mut qweight = vec![0u32; k / 8 * n];
    for kk in 0..k {
        for r in 0..n {
            qweight[(kk / 8) * n + r] |= u32::from(p.q[r][kk]) << (4 * (kk % 8));
        }
    }
    let mut qzeros = vec![0u32; g * n8];
    let mut scales = vec![0f32; g * n];
    for gi in 0..g {
        for r in 0..n {
            let stored = p.zero[r][gi] - u8::from(v1);
            qzeros[gi * n8 + r / 8] |= u32::from(stored) << (4 * (r % 8));
            scales[gi * n + r] = p.scale[r][gi];
        }
    }
    let g_idx: Vec<u32> = p.col_group.iter().map(|&x| x as u32).collect();
    Int4Tensors {
        packed: Some(i32_tensor(
            &format!("{stem}.qweight"),
            &[k / 8, n],
            &qweight,
        )),
        zeros: Some(i32_tensor(&format!("{stem}.qzeros"), &[g, n8], &qzeros)),
        scales: Some(f16_tensor(&format!("{stem}.scales"), &[g, n], &scales)),
        g_idx: Some(i32_tensor(&format!("{stem}.g_idx"), &[k], &g_idx)),
        shape: None,
    }
}

/// AWQ's GEMM packing: `qweight [K, N/8]` and `qzeros [G, N/8]` along N in
/// ORDER; `scales [G, N]`.
fn pack_awq(p: &Plan, stem: &str) -> Int4Tensors<'static> {
    let (n, k, g) = (p.rows, p.cols, p.groups());
    let n8 = n / 8;
    let mut qweight = vec![0u32; k * n8];
    for kk in 0..k {
        for m in 0..n8 {
            for (i, &o) in ORDER.iter().enumerate() {
                qweight[kk * n8 + m] |= u32::from(p.q[8 * m + o][kk]) << (4 * i);
            }
        }
    }
    let mut qzeros = vec![0u32; g * n8];
    let mut scales = vec![0f32; g * n];
    for gi in 0..g {
        for m in 0..n8 {
            for (i, &o) in ORDER.iter().enumerate() {
                qzeros[gi * n8 + m] |= u32::from(p.zero[8 * m + o][gi]) << (4 * i);
            }
        }
        for r in 0..n {
            scales[gi * n + r] = p.scale[r][gi];
        }
    }
    Int4Tensors {
        packed: Some(i32_tensor(&format!("{stem}.qweight"), &[k, n8], &qweight)),
        zeros: Some(i32_tensor(&format!("{stem}.qzeros"), &[g, n8], &qzeros)),
        scales: Some(f16_tensor(&format!("{stem}.scales"), &[g, n], &scales)),
        g_idx: None,
        shape: None,
    }
}

/// compressed-tensors' `pack_to_int32`: signed `v = q - 8`, stored `v + 8`
/// along the last dimension (zero padded); asymmetric zero points (signed
/// `zero - 8`) packed the same way along dimension 0.
fn pack_ct(p: &Plan, stem: &str, symmetric: bool) -> Int4Tensors<'static> {
    let (n, k, g) = (p.rows, p.cols, p.groups());
    let wpr = k.div_ceil(8);
    let mut packed = vec![0u32; n * wpr];
    for r in 0..n {
        for c in 0..k {
            let v = i32::from(p.q[r][c]) - 8;
            packed[r * wpr + c / 8] |= ((v + 8) as u32) << (4 * (c % 8));
        }
    }
    let mut scales = vec![0f32; n * g];
    for r in 0..n {
        for gi in 0..g {
            scales[r * g + gi] = p.scale[r][gi];
        }
    }
    let zeros = (!symmetric).then(|| {
        let mut zp = vec![0u32; n.div_ceil(8) * g];
        for r in 0..n {
            for gi in 0..g {
                let signed = i32::from(p.zero[r][gi]) - 8;
                zp[(r / 8) * g + gi] |= ((signed + 8) as u32) << (4 * (r % 8));
            }
        }
        i32_tensor(
            &format!("{stem}.weight_zero_point"),
            &[n.div_ceil(8), g],
            &zp,
        )
    });
    let shape: Vec<u8> = [n as i64, k as i64]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    Int4Tensors {
        packed: Some(i32_tensor(
            &format!("{stem}.weight_packed"),
            &[n, wpr],
            &packed,
        )),
        zeros,
        scales: Some(f16_tensor(
            &format!("{stem}.weight_scale"),
            &[n, g],
            &scales,
        )),
        g_idx: None,
        shape: Some(tensor(
            &format!("{stem}.weight_shape"),
            Dtype::I64,
            &[2],
            shape,
        )),
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    GptqV1,
    GptqV2,
    Awq,
    CtSym,
    CtAsym,
}

/// One random case: returns the decoded weight and the floats it must equal.
fn one(
    rng: &mut Rng,
    format: Format,
    stem: &str,
    rows: usize,
    gs: usize,
    groups: usize,
) -> (Decoded, Vec<f32>) {
    let cols = gs * groups;
    let params = |sym| GptqParams {
        bits: 4,
        group_size: Some(gs),
        sym,
        desc_act: false,
    };
    match format {
        Format::GptqV1 | Format::GptqV2 => {
            let v1 = matches!(format, Format::GptqV1);
            let p = plan(rng, rows, cols, gs, u8::from(v1), false);
            let t = pack_gptq(&p, stem, v1);
            let f = if v1 { GptqFormat::V1 } else { GptqFormat::V2 };
            (
                decode_gptq(&t, params(false), f, true).expect("gptq decodes"),
                p.floats,
            )
        }
        Format::Awq => {
            let p = plan(rng, rows, cols, gs, 0, false);
            let t = pack_awq(&p, stem);
            (
                decode_awq(&t, Some(gs), true).expect("awq decodes"),
                p.floats,
            )
        }
        Format::CtSym | Format::CtAsym => {
            let sym = matches!(format, Format::CtSym);
            let mut p = plan(rng, rows, cols, gs, 0, false);
            if sym {
                p = Plan {
                    zero: vec![vec![8; p.groups()]; rows],
                    ..p
                };
                p.floats = (0..rows * cols)
                    .map(|i| {
                        let (r, c) = (i / cols, i % cols);
                        (f32::from(p.q[r][c]) - 8.0) * p.scale[r][c / gs]
                    })
                    .collect();
            }
            let t = pack_ct(&p, stem, sym);
            (
                decode_ct(&t, Some(gs), sym, true).expect("ct decodes"),
                p.floats,
            )
        }
    }
}

fn case(seed: u64) {
    let mut rng = Rng(seed);
    let format = [
        Format::GptqV1,
        Format::GptqV2,
        Format::Awq,
        Format::CtSym,
        Format::CtAsym,
    ][rng.below(5)];
    let gs = [32, 64, 128][rng.below(3)];
    let groups = rng.range(1, 3);
    let n_sources = rng.range(1, 3);
    let mut sources = Vec::new();
    let mut shards = Vec::new();
    let mut want = Vec::new();
    for si in 0..n_sources {
        // AWQ packs along the outputs: whole words of rows only.
        let rows = match format {
            Format::Awq => 8 * rng.range(1, 4),
            _ => rng.range(1, 29),
        };
        let stem = format!("model.layers.0.mlp.src{si}");
        let (decoded, floats) = one(&mut rng, format, &stem, rows, gs, groups);
        assert_eq!(decoded.dims(), (rows, gs * groups), "{format:?}");
        assert_same(
            &decoded.dequantize(),
            &floats,
            &format!("{format:?} seed {seed} source {si}"),
        );
        let Decoded::Int4(q) = decoded else {
            panic!("{format:?}: expected the canonical form")
        };
        let view = q.view();
        view.validate(&stem).expect("canonical form is consistent");
        let words = i32_tensor(&format!("{stem}.qweight"), &[1], &[0]);
        let name = format!("s{si}");
        sources.push(SourceWeight::int4(words, q, &[name.as_str()]));
        shards.push((name, rows));
        want.extend(floats);
    }
    // Any source order: rows land in shard-table order.
    sources.reverse();
    let table: Vec<(&str, usize)> = shards.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    let packed = pack(
        &spec("model.layers.0.mlp.fused", &table, gs * groups),
        &sources,
        &QuantPolicy::unquantized(),
    )
    .expect("int4 sources pack");
    let view = packed.int4().expect("an int4 weight");
    assert_eq!(
        (view.rows, view.cols, view.group_size),
        (want.len() / (gs * groups), gs * groups, gs)
    );
    assert_same(
        &dequantize(&packed).expect("dequantizes"),
        &want,
        &format!("fused {format:?} seed {seed}"),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn packed_by_the_format_then_loaded_dequantizes_to_the_floats(seed in any::<u64>()) {
        case(seed);
    }
}

#[test]
fn fixed_seeds_cover_every_format() {
    for seed in 0..40 {
        case(seed);
    }
}

/// Activation order (a permuted `g_idx`): dequantized at load, exact.
#[test]
fn gptq_act_order_dequantizes_exactly() {
    let mut rng = Rng(7);
    for (gs, groups) in [(32, 3), (64, 2), (128, 1)] {
        let p = plan(&mut rng, 13, gs * groups, gs, 0, true);
        let t = pack_gptq(&p, "model.layers.0.mlp.up_proj", false);
        let params = GptqParams {
            bits: 4,
            group_size: Some(gs),
            sym: false,
            desc_act: true,
        };
        let d = decode_gptq(&t, params, GptqFormat::V2, true).expect("act-order decodes");
        if groups > 1 {
            assert!(
                matches!(d, Decoded::Dense { .. }),
                "permuted groups → dense"
            );
        }
        assert_same(&d.dequantize(), &p.floats, "act order");
        // The same tensors with desc_act: false are refused (the g_idx contradicts it).
        if groups > 1 {
            let e = decode_gptq(
                &t,
                GptqParams {
                    desc_act: false,
                    ..params
                },
                GptqFormat::V2,
                true,
            )
            .expect_err("permuted g_idx without desc_act");
            assert!(e.to_string().contains("g_idx"), "{e}");
        }
    }
}

/// compressed-tensors' channel strategy on a row that is not a multiple of 8
/// columns: the packer's padding nibbles become 0.
#[test]
fn ct_channel_odd_columns() {
    let mut rng = Rng(11);
    let cols = 37;
    let p = plan(&mut rng, 5, cols, cols, 0, false);
    let mut t = pack_ct(&p, "model.layers.0.mlp.down_proj", false);
    // Fill the padding nibbles as a careless packer might.
    if let Some(w) = t.packed.as_mut() {
        let mut bytes = w.bytes.to_vec();
        for r in 0..5 {
            let at = (r * cols.div_ceil(8) + cols.div_ceil(8) - 1) * 4 + 3;
            bytes[at] |= 0xF0;
        }
        w.bytes = bytes.into();
    }
    let d = decode_ct(&t, None, false, true).expect("channel decodes");
    let Decoded::Int4(q) = &d else {
        panic!("canonical")
    };
    q.view().validate("w").expect("padding cleared");
    assert_same(&d.dequantize(), &p.floats, "ct channel");
}
