//! The 4-bit sources of one packed weight (a fused projection, a layer's
//! stacked MoE experts) joined in row order into one canonical weight: each
//! source's scales and zeros stay with its rows, and the words are repacked
//! from the checkpoint's packed tensors straight into the joined weight, in
//! row blocks spread over [`PackOptions::threads`] threads. Only the joined
//! words are ever held (no per-source copy), so a load holds one packed
//! weight's words at a time, as the other formats do.

use std::borrow::Cow;
use std::ops::Range;

use qwgpu_checkpoint::Dtype;

use crate::int4::repack::Repack;
use crate::int4::{Int4Source, Int4View, Int4Weights};
use crate::parallel::try_for_each;
use crate::{LoadError, PackOptions, ScaleScheme, SourceWeight};

/// Output bytes of one repack job: small enough to balance the threads over
/// one expert's projection, large enough that handing jobs out costs nothing.
const JOB_BYTES: usize = 1 << 20;

/// Joins 4-bit sources (in row order, all of the same columns: checked by
/// [`pack_with`](crate::pack_with)) into one canonical weight. Every source must be 4-bit (else
/// [`LoadError::PartlyQuantized`]) and share one group size (else
/// [`LoadError::MixedSchemes`]).
pub(crate) fn join(
    packed: &str,
    ordered: &[&SourceWeight<'_>],
    opts: &PackOptions,
) -> Result<(Dtype, ScaleScheme), LoadError> {
    let Some(first) = ordered
        .iter()
        .find_map(|s| s.int4.as_ref().map(|q| (*s, q)))
    else {
        return Err(LoadError::ShardTable {
            packed: packed.into(),
            detail: "no 4-bit source".into(),
        });
    };
    let mut out = Int4Weights {
        group_size: first.1.q.group_size,
        words: Vec::new(),
        scales: Vec::new(),
        zeros: Vec::new(),
    };
    let mut sources = Vec::with_capacity(ordered.len());
    for s in ordered {
        let Some(q) = &s.int4 else {
            return Err(LoadError::PartlyQuantized {
                packed: packed.into(),
                quantized: first.0.weight.name.clone(),
                quantized_dtype: Dtype::I32,
                unquantized: s.weight.name.clone(),
                unquantized_dtype: s.weight.dtype,
            });
        };
        if q.q.group_size != out.group_size {
            return Err(LoadError::MixedSchemes {
                packed: packed.into(),
                first: first.0.weight.name.clone(),
                first_scheme: format!("int4 group {g}", g = out.group_size),
                second: s.weight.name.clone(),
                second_scheme: format!("int4 group {g}", g = q.q.group_size),
            });
        }
        if let Some(sc) = s.weight_scale.as_ref().or(s.input_scale.as_ref()) {
            return Err(LoadError::Int4 {
                tensor: s.weight.name.clone(),
                format: "4-bit".into(),
                detail: format!("unexpected FP8-style scale `{name}`", name = sc.name),
            });
        }
        if !opts.layout_only && q.deferred.is_none() {
            q.view().validate(&s.weight.name)?;
        }
        out.scales.extend_from_slice(&q.q.scales);
        out.zeros.extend_from_slice(&q.q.zeros);
        sources.push((*s, q));
    }
    if !opts.layout_only {
        out.words = repack(&sources, opts.threads, JOB_BYTES)?;
        // The repacked sources' checks, on their rows of the joined words.
        let mut at = 0;
        for (s, q) in &sources {
            let n = q.rows * q.cols.div_ceil(8);
            if q.deferred.is_some() {
                Int4View {
                    words: &out.words[at..at + n],
                    ..q.view()
                }
                .validate(&s.weight.name)?;
            }
            at += n;
        }
    }
    Ok((Dtype::I32, ScaleScheme::Int4(Box::new(out))))
}

/// One job: rows `rows` of a source into `out`.
struct Job<'j> {
    from: Rows<'j>,
    rows: Range<usize>,
    out: &'j mut [u32],
}

/// Where a source's canonical rows come from.
#[derive(Clone, Copy)]
enum Rows<'j> {
    /// Repacked from the checkpoint's packed tensor.
    Packed(Repack, &'j [u8]),
    /// Decoded already (`rows × words per row` words).
    Words(&'j [u32]),
}

/// The joined words of `sources` (same columns, checked by the caller),
/// repacked in jobs of about `job_bytes` on `threads` threads. Every job
/// writes its own rows: the result does not depend on the thread count.
fn repack(
    sources: &[(&SourceWeight<'_>, &Int4Source)],
    threads: usize,
    job_bytes: usize,
) -> Result<Vec<u32>, LoadError> {
    let Some(wpr) = sources.first().map(|(_, q)| q.cols.div_ceil(8)) else {
        return Ok(Vec::new());
    };
    let total: usize = sources.iter().map(|(_, q)| q.rows).sum();
    // Every word is written by one job below (the pool's buffers are not cleared).
    let mut words = crate::recycle::take_words(total * wpr);
    let per_job = (job_bytes / (4 * wpr).max(1)).max(1);
    let mut jobs = Vec::new();
    let mut rest: &mut [u32] = &mut words;
    for (s, q) in sources {
        let from = match q.deferred {
            Some(r) => Rows::Packed(r, packed_bytes(s, q, r)?),
            None => Rows::Words(&q.q.words),
        };
        let mut r = 0;
        while r < q.rows {
            let n = per_job.min(q.rows - r);
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(n * wpr);
            rest = tail;
            jobs.push(Job {
                from,
                rows: r..r + n,
                out,
            });
            r += n;
        }
    }
    let done: Result<(), std::convert::Infallible> = try_for_each(threads, jobs, |j: Job<'_>| {
        match j.from {
            Rows::Packed(r, bytes) => r.fill(bytes, j.rows, j.out),
            Rows::Words(w) => j
                .out
                .copy_from_slice(&w[j.rows.start * wpr..j.rows.end * wpr]),
        }
        Ok(())
    });
    match done {
        Ok(()) => Ok(words),
        Err(never) => match never {},
    }
}

/// The packed tensor's bytes of a source to repack, checked to hold every
/// word the repack reads (the decoder checked its shape and length).
fn packed_bytes<'j>(
    s: &'j SourceWeight<'_>,
    q: &Int4Source,
    r: Repack,
) -> Result<&'j [u8], LoadError> {
    let words = match r {
        Repack::Gptq { k8, n } => k8 * n,
        Repack::Awq { cols, n8 } => cols * n8,
        Repack::Ct { cols } => q.rows * cols.div_ceil(8),
    };
    let bytes: &Cow<'_, [u8]> = &s.weight.bytes;
    if bytes.len() < 4 * words || r.words_per_row() != q.cols.div_ceil(8) {
        return Err(LoadError::InvalidPacked {
            name: s.weight.name.clone(),
            detail: format!(
                "{len} bytes of packed words for a [{rows}, {cols}] 4-bit weight, expected {want}",
                len = bytes.len(),
                rows = q.rows,
                cols = q.cols,
                want = 4 * words
            ),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use qwgpu_checkpoint::quant::{GptqFormat, GptqParams};

    use super::*;
    use crate::int4::{
        decode_awq_as, decode_ct_as, decode_gptq_as, split_fused_ct, Decoded, Int4Tensors, Words,
    };
    use crate::SourceTensor;

    /// xorshift64*: fixed seeds, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        }
        fn words(&mut self, n: usize) -> Vec<u32> {
            (0..n).map(|_| self.next()).collect()
        }
        /// Words whose nibbles are all in `0..=14` (GPTQ v1 zero points).
        fn zero_words(&mut self, n: usize) -> Vec<u32> {
            (0..n)
                .map(|_| (0..8).fold(0u32, |w, j| w | ((self.next() % 15) << (4 * j))))
                .collect()
        }
        fn scales(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| (self.next() >> 8) as f32 / (1u32 << 24) as f32 + 0.01)
                .collect()
        }
    }

    fn t(name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> SourceTensor<'static> {
        SourceTensor::new(name, dtype, shape.to_vec(), bytes).expect("test tensor")
    }

    fn i32s(name: &str, shape: &[usize], w: &[u32]) -> SourceTensor<'static> {
        t(
            name,
            Dtype::I32,
            shape,
            w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    fn f32s(name: &str, shape: &[usize], v: &[f32]) -> SourceTensor<'static> {
        SourceTensor::from_f32(name, shape.to_vec(), v).expect("test tensor")
    }

    /// A random GPTQ (v1) weight `[rows, cols]` with groups of `gs`.
    fn gptq(
        rng: &mut Rng,
        stem: &str,
        rows: usize,
        cols: usize,
        gs: usize,
    ) -> Int4Tensors<'static> {
        let (k8, g) = (cols / 8, cols / gs);
        Int4Tensors {
            packed: Some(i32s(
                &format!("{stem}.qweight"),
                &[k8, rows],
                &rng.words(k8 * rows),
            )),
            zeros: Some(i32s(
                &format!("{stem}.qzeros"),
                &[g, rows.div_ceil(8)],
                &rng.zero_words(g * rows.div_ceil(8)),
            )),
            scales: Some(f32s(
                &format!("{stem}.scales"),
                &[g, rows],
                &rng.scales(g * rows),
            )),
            ..Int4Tensors::default()
        }
    }

    fn awq(rng: &mut Rng, stem: &str, rows: usize, cols: usize, gs: usize) -> Int4Tensors<'static> {
        let (n8, g) = (rows / 8, cols / gs);
        Int4Tensors {
            packed: Some(i32s(
                &format!("{stem}.qweight"),
                &[cols, n8],
                &rng.words(cols * n8),
            )),
            zeros: Some(i32s(
                &format!("{stem}.qzeros"),
                &[g, n8],
                &rng.words(g * n8),
            )),
            scales: Some(f32s(
                &format!("{stem}.scales"),
                &[g, rows],
                &rng.scales(g * rows),
            )),
            ..Int4Tensors::default()
        }
    }

    /// Symmetric compressed-tensors, random padding nibbles past `cols`.
    fn ct(rng: &mut Rng, stem: &str, rows: usize, cols: usize, gs: usize) -> Int4Tensors<'static> {
        let (wpr, g) = (cols.div_ceil(8), cols / gs);
        let shape: Vec<u8> = [rows as i64, cols as i64]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Int4Tensors {
            packed: Some(i32s(
                &format!("{stem}.weight_packed"),
                &[rows, wpr],
                &rng.words(rows * wpr),
            )),
            scales: Some(f32s(
                &format!("{stem}.weight_scale"),
                &[rows, g],
                &rng.scales(rows * g),
            )),
            shape: Some(t(&format!("{stem}.weight_shape"), Dtype::I64, &[2], shape)),
            ..Int4Tensors::default()
        }
    }

    #[derive(Clone, Copy)]
    enum Format {
        Gptq,
        Awq,
        Ct,
    }

    fn decode(f: Format, x: &Int4Tensors<'_>, gs: usize, mode: Words) -> Int4Source {
        let params = GptqParams {
            bits: 4,
            group_size: Some(gs),
            sym: true,
            desc_act: false,
        };
        let d = match f {
            Format::Gptq => decode_gptq_as(x, params, GptqFormat::V1, mode),
            Format::Awq => decode_awq_as(x, Some(gs), mode),
            Format::Ct => decode_ct_as(x, Some(gs), true, mode),
        };
        match d.expect("decodes") {
            Decoded::Int4(q) => q,
            Decoded::Dense { .. } => panic!("no activation order here"),
        }
    }

    /// The words of `tensors` repacked now, one source after another: the
    /// single-threaded repack the joined words must equal.
    fn sequential(f: Format, tensors: &[Int4Tensors<'_>], gs: usize) -> Vec<u32> {
        tensors
            .iter()
            .flat_map(|x| decode(f, x, gs, Words::Now).q.words)
            .collect()
    }

    /// Joins deferred sources of `tensors` on 1..=5 threads in jobs of
    /// several sizes (a few rows to whole sources): all equal to the
    /// sequential repack, scales and zeros in row order.
    fn check(f: Format, tensors: &[Int4Tensors<'_>], gs: usize, what: &str) {
        let want = sequential(f, tensors, gs);
        let sources: Vec<SourceWeight<'_>> = tensors
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let q = decode(f, x, gs, Words::Defer);
                assert!(q.deferred.is_some() && q.q.words.is_empty());
                SourceWeight::int4(x.packed.clone().expect("words"), q, &[&format!("s{i}")])
            })
            .collect();
        let ordered: Vec<&SourceWeight<'_>> = sources.iter().collect();
        for threads in 1..=5 {
            for job_bytes in [1, 100, 4096, JOB_BYTES] {
                let pairs: Vec<_> = ordered
                    .iter()
                    .map(|s| (*s, s.int4.as_ref().expect("4-bit")))
                    .collect();
                // A recycled buffer holding stale words: every one is overwritten.
                let _pool = crate::Recycling::start();
                crate::recycle::give_words(vec![0xdead_beef; want.len().max(1 << 18) + 3]);
                let got = repack(&pairs, threads, job_bytes).expect("repacks");
                assert!(
                    got == want,
                    "{what}: {threads} threads, jobs of {job_bytes} bytes"
                );
            }
            let opts = PackOptions {
                threads,
                ..PackOptions::default()
            };
            let (_, scheme) = join("w", &ordered, &opts).expect("joins");
            let ScaleScheme::Int4(q) = scheme else {
                panic!("int4 scheme")
            };
            assert!(q.words == want, "{what}: join on {threads} threads");
            let now: Vec<Int4Source> = tensors
                .iter()
                .map(|x| decode(f, x, gs, Words::Now))
                .collect();
            let scales: Vec<f32> = now.iter().flat_map(|s| s.q.scales.clone()).collect();
            let zeros: Vec<u8> = now.iter().flat_map(|s| s.q.zeros.clone()).collect();
            assert_eq!((&q.scales, &q.zeros), (&scales, &zeros), "{what}");
        }
    }

    #[test]
    fn joined_words_do_not_depend_on_the_threads() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // Fused shards of different heights, awkward sizes; wide rows that
        // cross a repack block (16 KiB) within one row.
        let shards = |rng: &mut Rng,
                      make: fn(&mut Rng, &str, usize, usize, usize) -> Int4Tensors<'static>,
                      rows: &[usize],
                      cols,
                      gs| {
            rows.iter()
                .enumerate()
                .map(|(i, &r)| make(rng, &format!("m.s{i}"), r, cols, gs))
                .collect::<Vec<_>>()
        };
        let g = shards(&mut rng, gptq, &[24, 8, 40], 64, 16);
        check(Format::Gptq, &g, 16, "gptq fused");
        let g = shards(&mut rng, gptq, &[5, 3], 8 * 1100, 8 * 1100);
        check(Format::Gptq, &g, 8 * 1100, "gptq wide rows");
        let a = shards(&mut rng, awq, &[16, 8, 24], 40, 8);
        check(Format::Awq, &a, 8, "awq fused");
        let a = shards(&mut rng, awq, &[8], 6000, 2000);
        check(Format::Awq, &a, 2000, "awq wide rows");
        let c = shards(&mut rng, ct, &[7, 13, 1], 21, 21);
        check(Format::Ct, &c, 21, "ct odd columns");
        let c = shards(&mut rng, ct, &[3], 8200, 8200);
        check(Format::Ct, &c, 8200, "ct wide rows");
        // MoE experts: 12 experts × (gate, up) stacked, as a layer's experts.
        let e = shards(&mut rng, gptq, &[24; 24], 32, 32);
        check(Format::Gptq, &e, 32, "gptq experts");
    }

    /// compressed-tensors experts fused as 3-D tensors: every expert's
    /// gate and up rows cut from the fused words, joined on any thread count.
    #[test]
    fn fused_3d_experts_join_the_same_on_any_threads() {
        let mut rng = Rng(0x0bad_cafe_f00d_1234);
        let (experts, ie, cols) = (6usize, 12usize, 24usize);
        let wpr = cols.div_ceil(8);
        let m = "model.layers.0.mlp.experts.gate_up_proj";
        let shape: Vec<u8> = (0..experts)
            .flat_map(|_| [ie as i64, cols as i64, ie as i64, cols as i64])
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let fused = Int4Tensors {
            packed: Some(i32s(
                &format!("{m}.weight_packed"),
                &[experts, 2 * ie, wpr],
                &rng.words(experts * 2 * ie * wpr),
            )),
            scales: Some(f32s(
                &format!("{m}.weight_scale"),
                &[experts, 2 * ie, 1],
                &rng.scales(experts * 2 * ie),
            )),
            shape: Some(t(
                &format!("{m}.weight_shape"),
                Dtype::I64,
                &[experts, 4],
                shape,
            )),
            ..Int4Tensors::default()
        };
        let parts = split_fused_ct(&fused, experts, &[ie, ie], cols).expect("splits");
        assert_eq!(parts.len(), 2 * experts);
        let decoded: Vec<Int4Source> = parts
            .iter()
            .map(
                |p| match decode_ct_as(p, None, true, Words::Defer).expect("decodes") {
                    Decoded::Int4(q) => q,
                    Decoded::Dense { .. } => panic!("no activation order"),
                },
            )
            .collect();
        let want: Vec<u32> = parts
            .iter()
            .flat_map(
                |p| match decode_ct_as(p, None, true, Words::Now).expect("decodes") {
                    Decoded::Int4(q) => q.q.words,
                    Decoded::Dense { .. } => panic!("no activation order"),
                },
            )
            .collect();
        let sources: Vec<SourceWeight<'_>> = parts
            .iter()
            .zip(decoded)
            .enumerate()
            .map(|(i, (p, q))| {
                SourceWeight::int4(p.packed.clone().expect("words"), q, &[&format!("s{i}")])
            })
            .collect();
        let pairs: Vec<_> = sources
            .iter()
            .map(|s| (s, s.int4.as_ref().expect("4-bit")))
            .collect();
        for threads in [1, 2, 4] {
            for job_bytes in [1, 64, JOB_BYTES] {
                assert!(
                    repack(&pairs, threads, job_bytes).expect("repacks") == want,
                    "{threads} threads, jobs of {job_bytes}"
                );
            }
        }
    }

    #[test]
    fn short_packed_bytes_are_an_error_not_a_panic() {
        let mut rng = Rng(7);
        let x = gptq(&mut rng, "m", 16, 32, 32);
        let q = decode(Format::Gptq, &x, 32, Words::Defer);
        let mut words = x.packed.clone().expect("words");
        words.bytes = Cow::Owned(words.bytes[..words.bytes.len() - 4].to_vec());
        let s = SourceWeight::int4(words, q, &["s"]);
        let e = repack(&[(&s, s.int4.as_ref().expect("4-bit"))], 2, 64).expect_err("short");
        assert!(e.to_string().contains("m.qweight"), "{e}");
    }
}
