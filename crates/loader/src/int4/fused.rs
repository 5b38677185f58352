//! compressed-tensors `pack-quantized` MoE experts stored fused as 3-D
//! tensors → one [`Int4Tensors`] per expert and logical shard, each exactly
//! what a per-expert 2-D checkpoint stores (so [`decode_ct`](crate::decode_ct)
//! decodes them unchanged).
//!
//! transformers keeps the routed experts of `qwen3_5_moe` (and the other
//! fused-expert models) as `experts.gate_up_proj [E, 2·Ie, H]` (gate rows,
//! then up rows) and `experts.down_proj [E, H, Ie]`. llm-compressor's
//! `repack_moe` writes a compressed W4A16 model in that layout by stacking
//! each expert's compressed companions over a leading expert dimension and,
//! for the gated projection, concatenating gate's and up's companions along
//! the output-feature axis *companion by companion*:
//!
//! | tensor | `gate_up_proj` | `down_proj` |
//! |---|---|---|
//! | `weight_packed` (I32) | `[E, 2·Ie, ceil(H/8)]` | `[E, H, ceil(Ie/8)]` |
//! | `weight_scale` | `[E, 2·Ie, G]` | `[E, H, G']` |
//! | `weight_zero_point` (I32, asymmetric) | `[E, 2·ceil(Ie/8), G]` | `[E, ceil(H/8), G']` |
//! | `weight_shape` | `[E, 4]` = `(Ie, H, Ie, H)` | `[E, 2]` = `(H, Ie)` |
//! | `weight_g_idx` (activation order) | `[E, 2·H]` | `[E, Ie]` |
//!
//! The zero points are packed eight to a word along the output rows *of each
//! shard*, so gate's and up's packed rows are taken apart before unpacking
//! (never unpacked over the concatenated rows: the two differ whenever Ie is
//! not a multiple of 8). Scalars stacked per expert become `[E, n_shards]`
//! in the same repack; a zero-point tensor of that shape is read as
//! `[E, n_shards, 1]`. A `weight_shape` of `[E, 2]` holding the whole fused
//! `(2·Ie, H)` is accepted too.

use std::borrow::Cow;

use qwgpu_checkpoint::Dtype;

use crate::experts::slice_bytes;
use crate::int4::source::Ctx;
use crate::int4::Int4Tensors;
use crate::{LoadError, SourceTensor};

const FORMAT: &str = "compressed-tensors (fused 3-D experts)";

/// The fused tensors of one projection split per expert and shard: the
/// result's element `e · shard_rows.len() + s` is expert `e`'s shard `s`
/// (`shard_rows[s]` output rows, `cols` input columns), with the 2-D shapes a
/// per-expert checkpoint stores and its own synthesized `weight_shape`.
pub(crate) fn split_fused_ct<'a>(
    t: &Int4Tensors<'a>,
    experts: usize,
    shard_rows: &[usize],
    cols: usize,
) -> Result<Vec<Int4Tensors<'a>>, LoadError> {
    let packed = t.packed.as_ref().ok_or_else(|| LoadError::MissingTensors {
        names: vec!["weight_packed".into()],
    })?;
    let cx = Ctx {
        tensor: &packed.name,
        format: FORMAT,
    };
    if experts == 0 || shard_rows.is_empty() || shard_rows.contains(&0) || cols == 0 {
        return Err(cx.err(format!(
            "{experts} experts of shards {shard_rows:?} × {cols} columns: no size may be 0"
        )));
    }
    let total: usize = shard_rows.iter().sum();
    let packed_rows: Vec<usize> = shard_rows.iter().map(|r| r.div_ceil(8)).collect();
    let words = Stacked::new(
        &cx,
        packed,
        &packed.shape,
        experts,
        total,
        "[experts, rows, ceil(in/8)]",
    )?;
    let scales = t
        .scales
        .as_ref()
        .map(|s| Stacked::new(&cx, s, &s.shape, experts, total, "[experts, rows, groups]"))
        .transpose()?;
    let zeros = t
        .zeros
        .as_ref()
        .map(|z| {
            let total_packed: usize = packed_rows.iter().sum();
            Stacked::new(
                &cx,
                z,
                &as_3d(&z.shape, experts, total_packed),
                experts,
                total_packed,
                "[experts, Σ ceil(shard rows/8), groups] (each shard's zero points packed on their own)",
            )
        })
        .transpose()?;
    let g_idx = t
        .g_idx
        .as_ref()
        .map(|g| {
            // Each shard's [in] vector, joined along the last dim: [E, n · in].
            let n = shard_rows.len();
            let shape = match g.shape.as_slice() {
                &[e, len] if len == n * cols => vec![e, n, cols],
                other => other.to_vec(),
            };
            Stacked::new(&cx, g, &shape, experts, n, "[experts, n_shards · in]")
        })
        .transpose()?;
    let shape_t = cx.need(
        &t.shape,
        "shape",
        &format!(
            "{stem}.weight_shape",
            stem = packed
                .name
                .strip_suffix(".weight_packed")
                .unwrap_or(&packed.name)
        ),
    )?;
    check_shapes(&cx, shape_t, experts, shard_rows, cols)?;

    let mut out = Vec::with_capacity(experts * shard_rows.len());
    for e in 0..experts {
        let (mut row, mut prow) = (0, 0);
        for (s, (&rows, &prows)) in shard_rows.iter().zip(&packed_rows).enumerate() {
            let shape_bytes: Vec<u8> = [rows as i64, cols as i64]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            out.push(Int4Tensors {
                packed: Some(words.rows(e, row, rows)?),
                scales: scales.as_ref().map(|x| x.rows(e, row, rows)).transpose()?,
                zeros: zeros.as_ref().map(|x| x.rows(e, prow, prows)).transpose()?,
                g_idx: g_idx
                    .as_ref()
                    .map(|x| {
                        x.rows(e, s, 1).map(|mut v| {
                            v.shape = vec![cols];
                            v
                        })
                    })
                    .transpose()?,
                shape: Some(SourceTensor {
                    name: shape_t.name.clone(),
                    dtype: Dtype::I64,
                    shape: vec![2],
                    bytes: Cow::Owned(shape_bytes),
                }),
            });
            row += rows;
            prow += prows;
        }
    }
    Ok(out)
}

/// A `[E, n]` shape read as `[E, n, 1]` (stacked per-expert scalars).
fn as_3d(shape: &[usize], experts: usize, rows: usize) -> Vec<usize> {
    if shape == [experts, rows] {
        vec![experts, rows, 1]
    } else {
        shape.to_vec()
    }
}

/// `weight_shape` must say `(rows, cols)` of every shard of every expert.
fn check_shapes(
    cx: &Ctx<'_>,
    t: &SourceTensor<'_>,
    experts: usize,
    shard_rows: &[usize],
    cols: usize,
) -> Result<(), LoadError> {
    let n = shard_rows.len();
    let total: usize = shard_rows.iter().sum();
    let per_shard: Vec<i64> = shard_rows
        .iter()
        .flat_map(|&r| [r as i64, cols as i64])
        .collect();
    let whole = vec![total as i64, cols as i64];
    let width = match t.shape.as_slice() {
        &[e, w] if e == experts && (w == 2 * n || w == 2) => w,
        _ => {
            return Err(cx.err(format!(
                "`{name}` has shape {got:?}, expected [{experts}, {w}] (each shard's [out, in]) or [{experts}, 2]",
                name = t.name,
                got = t.shape,
                w = 2 * n
            )))
        }
    };
    let flat = SourceTensor {
        shape: vec![experts * width],
        ..t.clone()
    };
    let v = cx.ints(&flat, experts * width, "[out, in] per expert")?;
    let want = if width == per_shard.len() {
        &per_shard
    } else {
        &whole
    };
    for (e, got) in v.chunks_exact(width).enumerate() {
        if got != want.as_slice() {
            return Err(cx.err(format!(
                "`{name}` of expert {e} is {got:?}, expected {want:?}",
                name = t.name
            )));
        }
    }
    Ok(())
}

/// A `[E, R, X]` tensor (its stored shape read as `shape`, same element
/// count) whose row ranges of one expert are cut out as `[rows, X]`. Borrows
/// the tensor: only the cut rows are ever copied (an owned source's).
struct Stacked<'t, 'a> {
    t: &'t SourceTensor<'a>,
    rows: usize,
    row_bytes: usize,
    inner: usize,
}

impl<'t, 'a> Stacked<'t, 'a> {
    fn new(
        cx: &Ctx<'_>,
        t: &'t SourceTensor<'a>,
        shape: &[usize],
        experts: usize,
        rows: usize,
        what: &str,
    ) -> Result<Self, LoadError> {
        let inner = match *shape {
            [e, r, x] if e == experts && r == rows && x > 0 => x,
            _ => {
                return Err(cx.err(format!(
                    "`{name}` has shape {got:?}, expected [{experts}, {rows}, _] ({what})",
                    name = t.name,
                    got = t.shape
                )))
            }
        };
        t.check_len()?;
        Ok(Stacked {
            t,
            rows,
            row_bytes: inner * t.dtype.size(),
            inner,
        })
    }

    /// Rows `first..first + count` of expert `e` as a `[count, X]` tensor.
    fn rows(&self, e: usize, first: usize, count: usize) -> Result<SourceTensor<'a>, LoadError> {
        let start = (e * self.rows + first) * self.row_bytes;
        let bytes = slice_bytes(
            &self.t.bytes,
            start..start + count * self.row_bytes,
            &self.t.name,
        )?;
        Ok(SourceTensor {
            name: self.t.name.clone(),
            dtype: self.t.dtype,
            shape: vec![count, self.inner],
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int4::{decode_ct, Decoded};

    /// xorshift64*: fixed seeds, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn nibble(&mut self) -> u8 {
            (self.next() >> 60) as u8
        }
    }

    /// One shard's values: q `[rows, cols]`, zero `[rows, groups]`, scale
    /// `[rows, groups]`, each column's group (activation order: permuted).
    struct Shard {
        rows: usize,
        col_group: Vec<usize>,
        q: Vec<u8>,
        zero: Vec<u8>,
        scale: Vec<f32>,
    }

    fn i32_bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// compressed-tensors' per-expert 2-D companions of one shard: words
    /// along the input, zero points along the output (`packed_dim=0`).
    fn companions(s: &Shard, cols: usize, groups: usize) -> [Vec<u8>; 3] {
        let wpr = cols.div_ceil(8);
        let mut words = vec![0u32; s.rows * wpr];
        for r in 0..s.rows {
            for c in 0..cols {
                words[r * wpr + c / 8] |= u32::from(s.q[r * cols + c]) << (4 * (c % 8));
            }
        }
        let mut zp = vec![0u32; s.rows.div_ceil(8) * groups];
        for r in 0..s.rows {
            for g in 0..groups {
                zp[(r / 8) * groups + g] |= u32::from(s.zero[r * groups + g]) << (4 * (r % 8));
            }
        }
        let scales = s.scale.iter().flat_map(|v| v.to_le_bytes()).collect();
        [i32_bytes(&words), i32_bytes(&zp), scales]
    }

    fn tensor(
        name: &str,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    ) -> SourceTensor<'static> {
        SourceTensor::new(name, dtype, shape, bytes).expect("test tensor")
    }

    /// Random experts × shards, fused the way llm-compressor's repack writes
    /// them (per expert: each shard's companion bytes in shard order), split
    /// and decoded: every element equals `(q - zero) · scale` of the values
    /// the shards were made from.
    fn round_trip(
        seed: u64,
        experts: usize,
        shard_rows: &[usize],
        cols: usize,
        group: Option<usize>,
        symmetric: bool,
        act_order: bool,
    ) {
        let mut rng = Rng(seed);
        let gs = group.unwrap_or(cols);
        let groups = cols / gs;
        let col_group = |rng: &mut Rng| -> Vec<usize> {
            // Group i takes the i-th run of gs columns of a random order.
            let mut order: Vec<usize> = (0..cols).collect();
            if act_order {
                for i in (1..cols).rev() {
                    order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                }
            }
            let mut g = vec![0; cols];
            for (i, &c) in order.iter().enumerate() {
                g[c] = i / gs;
            }
            g
        };
        let shards: Vec<Vec<Shard>> = (0..experts)
            .map(|_| {
                shard_rows
                    .iter()
                    .map(|&rows| Shard {
                        rows,
                        col_group: col_group(&mut rng),
                        q: (0..rows * cols).map(|_| rng.nibble()).collect(),
                        zero: (0..rows * groups)
                            .map(|_| if symmetric { 8 } else { rng.nibble() })
                            .collect(),
                        scale: (0..rows * groups)
                            .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                            .collect(),
                    })
                    .collect()
            })
            .collect();
        let (mut w, mut z, mut s, mut shape) = (vec![], vec![], vec![], vec![]);
        let mut g_idx = vec![];
        for expert in &shards {
            for sh in expert {
                let [wb, zb, sb] = companions(sh, cols, groups);
                g_idx.extend(sh.col_group.iter().flat_map(|&g| (g as i32).to_le_bytes()));
                w.extend(wb);
                z.extend(zb);
                s.extend(sb);
                shape.extend(
                    [sh.rows as i64, cols as i64]
                        .iter()
                        .flat_map(|v| v.to_le_bytes()),
                );
            }
        }
        let total: usize = shard_rows.iter().sum();
        let ptotal: usize = shard_rows.iter().map(|r| r.div_ceil(8)).sum();
        let n = shard_rows.len();
        let m = "model.layers.0.mlp.experts.gate_up_proj";
        let fused = Int4Tensors {
            packed: Some(tensor(
                &format!("{m}.weight_packed"),
                Dtype::I32,
                vec![experts, total, cols.div_ceil(8)],
                w,
            )),
            scales: Some(tensor(
                &format!("{m}.weight_scale"),
                Dtype::F32,
                vec![experts, total, groups],
                s,
            )),
            zeros: (!symmetric).then(|| {
                tensor(
                    &format!("{m}.weight_zero_point"),
                    Dtype::I32,
                    vec![experts, ptotal, groups],
                    z,
                )
            }),
            // Stacked per-expert [K] vectors joined along their last dim: [E, n·K].
            g_idx: act_order.then(|| {
                tensor(
                    &format!("{m}.weight_g_idx"),
                    Dtype::I32,
                    vec![experts, n * cols],
                    g_idx,
                )
            }),
            shape: Some(tensor(
                &format!("{m}.weight_shape"),
                Dtype::I64,
                vec![experts, 2 * n],
                shape,
            )),
        };
        let parts = split_fused_ct(&fused, experts, shard_rows, cols).expect("splits");
        assert_eq!(parts.len(), experts * n);
        let mut dense = 0;
        for (i, part) in parts.iter().enumerate() {
            let sh = &shards[i / n][i % n];
            let got = match decode_ct(part, group, symmetric, true).expect("decodes") {
                Decoded::Int4(q) => {
                    q.view().validate("part").expect("canonical");
                    q.view().dequantize()
                }
                Decoded::Dense { values, .. } => {
                    assert!(act_order, "dense without activation order");
                    dense += 1;
                    values
                }
            };
            let want: Vec<f32> = (0..sh.rows * cols)
                .map(|k| {
                    let (r, c) = (k / cols, k % cols);
                    let g = r * groups + sh.col_group[c];
                    (f32::from(sh.q[k]) - f32::from(sh.zero[g])) * sh.scale[g]
                })
                .collect();
            assert_eq!(got, want, "expert {e} shard {s}", e = i / n, s = i % n);
        }
        // Permuted groups are dequantized at load, every shard of them.
        assert_eq!(dense, if act_order { parts.len() } else { 0 });
    }

    #[test]
    fn fused_experts_split_into_their_shards() {
        // Ie = 12, 20: not multiples of 8, so each shard's zero points are
        // packed on their own and unpacking the concatenated rows would be wrong.
        round_trip(seed(1), 3, &[12, 12], 24, Some(8), false, false);
        round_trip(seed(2), 2, &[20, 20], 40, Some(20), false, false);
        round_trip(seed(3), 4, &[16], 12, None, false, false);
        round_trip(seed(4), 2, &[9, 9], 32, Some(32), true, false);
        round_trip(seed(5), 1, &[5], 7, None, false, false);
        // Activation order: each shard's own permuted weight_g_idx.
        round_trip(seed(6), 3, &[12, 12], 24, Some(8), false, true);
        round_trip(seed(7), 2, &[16], 32, Some(16), true, true);
    }

    fn seed(n: u64) -> u64 {
        0x9e37_79b9_7f4a_7c15 ^ (n * 0x1000_0001)
    }

    fn tiny(
        zero_shape: Vec<usize>,
        zero_words: usize,
        shape: Vec<usize>,
        shape_vals: &[i64],
    ) -> Int4Tensors<'static> {
        let m = "x.experts.gate_up_proj";
        Int4Tensors {
            packed: Some(tensor(
                &format!("{m}.weight_packed"),
                Dtype::I32,
                vec![2, 2, 1],
                vec![0; 16],
            )),
            scales: Some(tensor(
                &format!("{m}.weight_scale"),
                Dtype::F32,
                vec![2, 2, 1],
                vec![0; 16],
            )),
            zeros: Some(tensor(
                &format!("{m}.weight_zero_point"),
                Dtype::I32,
                zero_shape,
                vec![0; 4 * zero_words],
            )),
            g_idx: None,
            shape: Some(tensor(
                &format!("{m}.weight_shape"),
                Dtype::I64,
                shape,
                shape_vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
        }
    }

    #[test]
    fn stacked_scalars_and_whole_shapes_are_read() {
        // 2 experts × shards [1, 1] × 8 columns, channel: each shard's zero
        // point is one word, stacked to [E, 2]; weight_shape as the whole (2, 8).
        let t = tiny(vec![2, 2], 4, vec![2, 2], &[2, 8, 2, 8]);
        let parts = split_fused_ct(&t, 2, &[1, 1], 8).expect("splits");
        assert_eq!(parts.len(), 4);
        let z = parts[3].zeros.as_ref().expect("zeros");
        assert_eq!(z.shape, [1, 1]);
        let shape = parts[0].shape.as_ref().expect("shape");
        assert_eq!(
            shape.bytes.as_ref(),
            [1i64, 8]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        );
    }

    #[test]
    fn wrong_fused_shapes_name_the_tensor() {
        // weight_shape saying 9 input columns.
        let t = tiny(vec![2, 2, 1], 4, vec![2, 4], &[1, 9, 1, 9, 1, 9, 1, 9]);
        let e = split_fused_ct(&t, 2, &[1, 1], 8).expect_err("9 columns");
        let msg = e.to_string();
        assert!(
            msg.contains("x.experts.gate_up_proj.weight_shape") && msg.contains("expert 0"),
            "{msg}"
        );
        // Zero points for 3 experts.
        let t = tiny(vec![3, 2, 1], 6, vec![2, 4], &[1, 8, 1, 8, 1, 8, 1, 8]);
        let msg = split_fused_ct(&t, 2, &[1, 1], 8)
            .expect_err("3 experts")
            .to_string();
        assert!(
            msg.contains("weight_zero_point") && msg.contains("[3, 2, 1]"),
            "{msg}"
        );
        // Three shards' worth of experts asked of a two-shard tensor.
        let t = tiny(vec![2, 2, 1], 4, vec![2, 4], &[1, 8, 1, 8, 1, 8, 1, 8]);
        let msg = split_fused_ct(&t, 2, &[1, 1, 1], 8)
            .expect_err("3 shards")
            .to_string();
        assert!(
            msg.contains("weight_packed") && msg.contains("[2, 3, _]"),
            "{msg}"
        );
    }
}
