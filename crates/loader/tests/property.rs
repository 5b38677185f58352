//! Property: for random shard tables, source splits and scale schemes,
//! `dequantize(pack(sources))` equals the concatenation of each source
//! dequantized on its own by the reference formula — bit for bit.

mod common;

use common::*;
use proptest::prelude::*;
use qwgpu_checkpoint::quant::{ActivationScheme, Fp8Config, Fp8Format, QuantizationConfig};
use qwgpu_checkpoint::Dtype;
use qwgpu_loader::{dequantize, pack, PackSpec, QuantPolicy, ShardSpec, SourceWeight};

#[derive(Debug, Clone, Copy)]
enum Scheme {
    Unquantized(Dtype),
    PerTensor,
    PerChannel,
    Block([usize; 2]),
    /// Each source picks per-tensor or per-channel.
    TensorOrChannel,
}

fn case(seed: u64) {
    let mut rng = Rng(seed);
    let cols = [1, 3, 65, 7, 128, 33][rng.below(6)];
    let scheme = match rng.below(7) {
        0 => Scheme::Unquantized(Dtype::BF16),
        1 => Scheme::Unquantized(Dtype::F16),
        2 => Scheme::Unquantized(Dtype::F32),
        3 => Scheme::PerTensor,
        4 => Scheme::PerChannel,
        5 => Scheme::Block([[1, 3, 16, 128][rng.below(4)], [1, 5, 32, 128][rng.below(4)]]),
        _ => Scheme::TensorOrChannel,
    };
    let scale_dtype = [Dtype::F32, Dtype::BF16, Dtype::F16][rng.below(3)];
    let n_sources = rng.range(1, 4);
    let mut shards = Vec::new();
    let mut sources = Vec::new();
    let mut want = Vec::new();
    for si in 0..n_sources {
        let k = rng.range(1, 3);
        let rows: Vec<usize> = (0..k)
            .map(|_| [1, 2, 3, 17, 65, 130][rng.below(6)])
            .collect();
        let names: Vec<String> = (0..k).map(|j| format!("s{si}_{j}")).collect();
        for (n, r) in names.iter().zip(&rows) {
            shards.push(ShardSpec::new(n.clone(), *r));
        }
        let covers: Vec<&str> = names.iter().map(String::as_str).collect();
        let total: usize = rows.iter().sum();
        let name = format!("model.layers.0.src{si}");
        let (weight, scale, block) = match scheme {
            Scheme::Unquantized(dt) => {
                let vals: Vec<f32> = (0..total * cols)
                    .map(|_| (rng.below(2001) as f32 - 1000.0) / 64.0)
                    .collect();
                (
                    float_tensor(&format!("{name}.weight"), dt, &[total, cols], &vals),
                    None,
                    [128, 128],
                )
            }
            _ => {
                let w = fp8_tensor(&format!("{name}.weight"), &mut rng, total, cols);
                let per_channel = match scheme {
                    Scheme::PerChannel => true,
                    Scheme::TensorOrChannel => rng.below(2) == 0,
                    _ => false,
                };
                let (shape, block) = match scheme {
                    Scheme::Block(b) => (vec![total.div_ceil(b[0]), cols.div_ceil(b[1])], b),
                    _ if per_channel => (
                        if rng.below(2) == 0 {
                            vec![total, 1]
                        } else {
                            vec![total]
                        },
                        [128, 128],
                    ),
                    _ => {
                        let shapes: [Vec<usize>; 4] = [vec![], vec![1], vec![1, 1], vec![k]];
                        (shapes[rng.below(4)].clone(), [128, 128])
                    }
                };
                let n: usize = shape.iter().product();
                let vals: Vec<f32> = (0..n).map(|_| rng.scale()).collect();
                (
                    w,
                    Some(float_tensor(
                        &format!("{name}.weight_scale"),
                        scale_dtype,
                        &shape,
                        &vals,
                    )),
                    block,
                )
            }
        };
        want.extend(reference_dequant(&weight, scale.as_ref(), &rows, block));
        let mut src = SourceWeight::new(weight, &covers);
        src.weight_scale = scale;
        sources.push(src);
    }
    // The packing step must not depend on the order sources arrive in.
    for i in (1..sources.len()).rev() {
        sources.swap(i, rng.below(i + 1));
    }
    let policy = match scheme {
        Scheme::Block(b) => QuantPolicy::from_config(Some(&QuantizationConfig::Fp8(Fp8Config {
            fmt: Fp8Format::E4M3,
            weight_block_size: Some(b),
            activation_scheme: ActivationScheme::Dynamic,
            modules_to_not_convert: vec![],
        })))
        .unwrap(),
        _ => QuantPolicy::unquantized(),
    };
    let spec = PackSpec::new("packed", shards, Some(cols));
    let packed =
        pack(&spec, &sources, &policy).unwrap_or_else(|e| panic!("seed {seed} ({scheme:?}): {e}"));
    let got = dequantize(&packed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_same(&got, &want, &format!("seed {seed} ({scheme:?})"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn dequantize_of_pack_is_concat_of_dequantized_sources(seed in any::<u64>()) {
        case(seed);
    }
}

#[test]
fn fixed_seeds() {
    for seed in 0..64 {
        case(seed);
    }
}
