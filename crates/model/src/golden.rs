//! Golden fixtures: tiny HF checkpoints with logits recorded by Hugging Face
//! transformers, and the check of [`ReferenceModel`] against them.
//!
//! A fixture is a folder under [`fixtures_dir`] holding an HF checkpoint plus
//! `golden.json` (see [`GoldenMeta`]) and `golden.safetensors` with F32
//! `prefill_logits [T, V]` and `decode_logits [16, V]`. Semantics: prefill the
//! prompt → `prefill_logits`; `generated_ids[0] = argmax(prefill_logits[T−1])`;
//! for i in 0..16 feed `generated_ids[i]` as one decode step → `decode_logits[i]`,
//! `generated_ids[i+1] = argmax(decode_logits[i])`.
//!
//! **Tolerance** (f32 reference vs HF in f32): `tolerance = 2e-4 · max(1,
//! logit_scale)` where `logit_scale = max |golden logit|`; the check passes when
//! the largest absolute logit difference is within it and the greedy choices
//! agree at all 17 points, except where HF's top1−top2 margin is below
//! `2 · tolerance` (such near-ties are reported, not failed).
//!
//! ```no_run
//! for dir in qwgpu_model::golden::list_fixtures()? {
//!     let report = qwgpu_model::golden::check_reference(&dir)?;
//!     println!("{report}");
//! }
//! # Ok::<(), qwgpu_model::ModelError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{argmax, ModelError, ReferenceModel};

/// Teacher-forced decode steps recorded per fixture.
pub const DECODE_STEPS: usize = 16;
/// Greedy choices checked: after prefill, then after each decode step.
pub const GREEDY_POINTS: usize = DECODE_STEPS + 1;
/// Relative tolerance on logits (times `max(1, logit_scale)`) of the f32 CPU reference.
pub const RELATIVE_TOLERANCE: f32 = 2e-4;
/// The same for the GPU backend: f32 accumulation in a different order
/// (vectorised dot products, workgroup reductions, chunked delta rule).
pub const GPU_RELATIVE_TOLERANCE: f32 = 1e-3;

/// Bounds on file-derived sizes (fixtures are tiny models).
const MAX_PROMPT: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 20;

/// `golden.json`. Unknown extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GoldenMeta {
    pub name: String,
    /// `dense` or `moe`.
    pub kind: String,
    /// `bf16` or `fp8-…` (`fp8-block`, `fp8-tensor`, `fp8-channel`, ...).
    pub quant: String,
    /// `text` (ForCausalLM layout) or `wrapper` (ForConditionalGeneration).
    pub layout: String,
    pub sharded: bool,
    pub prompt_ids: Vec<u32>,
    /// [`GREEDY_POINTS`] ids.
    pub generated_ids: Vec<u32>,
    /// HF's top1 − top2 logit gap at each greedy point.
    pub margins: Vec<f32>,
}

impl GoldenMeta {
    /// Reads and checks `dir/golden.json` only (cheap; no logits).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("golden.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let meta: GoldenMeta = serde_json::from_str(&text).map_err(|e| ModelError::Golden {
            path: path.clone(),
            detail: format!("invalid golden.json: {e}"),
        })?;
        meta.validate(&path)?;
        Ok(meta)
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |detail: String| {
            Err(ModelError::Golden {
                path: path.to_path_buf(),
                detail,
            })
        };
        if !matches!(self.kind.as_str(), "dense" | "moe") {
            return bad(format!("kind `{}`, expected `dense` or `moe`", self.kind));
        }
        // 4-bit fixtures: `gptq-int4`, `awq-int4`, `ct-w4a16` (xtask/fixtures/int4.py).
        let int4 = ["gptq-", "awq-", "ct-"]
            .iter()
            .any(|p| self.quant.starts_with(p));
        if !(self.quant == "bf16" || self.quant.starts_with("fp8-") || int4) {
            return bad(format!(
                "quant `{}`, expected `bf16`, `fp8-<scheme>` or a 4-bit `gptq-` / `awq-` / `ct-` scheme",
                self.quant
            ));
        }
        if !matches!(self.layout.as_str(), "text" | "wrapper") {
            return bad(format!(
                "layout `{}`, expected `text` or `wrapper`",
                self.layout
            ));
        }
        if self.prompt_ids.is_empty() || self.prompt_ids.len() > MAX_PROMPT {
            return bad(format!(
                "prompt_ids has {prompt_ids_len} ids, expected 1..={MAX_PROMPT}",
                prompt_ids_len = self.prompt_ids.len()
            ));
        }
        if self.generated_ids.len() != GREEDY_POINTS || self.margins.len() != GREEDY_POINTS {
            return bad(format!(
                "generated_ids has {generated_ids_len} ids and margins {margins_len} values, expected {GREEDY_POINTS} each",
                generated_ids_len = self.generated_ids.len(),
                margins_len = self.margins.len()
            ));
        }
        Ok(())
    }
}

/// A fixture's metadata and HF logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Golden {
    pub dir: PathBuf,
    pub meta: GoldenMeta,
    pub vocab: usize,
    /// `[T, vocab]`.
    pub prefill_logits: Vec<f32>,
    /// `[DECODE_STEPS, vocab]`.
    pub decode_logits: Vec<f32>,
}

impl Golden {
    /// Reads `golden.json` and `golden.safetensors` of a fixture folder and checks
    /// that their shapes agree.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let meta = GoldenMeta::load(dir)?;
        let path = dir.join("golden.safetensors");
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Golden {
            path: path.clone(),
            detail: format!("invalid safetensors: {e}"),
        })?;
        let (prefill_shape, prefill_logits) = read_f32(&st, "prefill_logits", &path)?;
        let (decode_shape, decode_logits) = read_f32(&st, "decode_logits", &path)?;
        let t = meta.prompt_ids.len();
        let vocab = prefill_shape.get(1).copied().unwrap_or(0);
        if prefill_shape != [t, vocab] || vocab == 0 || vocab > MAX_VOCAB {
            return Err(ModelError::Golden {
                path,
                detail: format!("prefill_logits shape {prefill_shape:?}, expected [{t}, V] with V in 1..={MAX_VOCAB} (T from prompt_ids)"),
            });
        }
        let golden = Golden {
            dir: dir.to_path_buf(),
            meta,
            vocab,
            prefill_logits,
            decode_logits,
        };
        if decode_shape != [DECODE_STEPS, vocab] {
            return Err(ModelError::Golden {
                path,
                detail: format!(
                    "decode_logits shape {decode_shape:?}, expected [{DECODE_STEPS}, {vocab}]"
                ),
            });
        }
        golden.check()?;
        for (j, (row, &id)) in golden
            .greedy_rows()
            .zip(&golden.meta.generated_ids)
            .enumerate()
        {
            if argmax(row) != id as usize {
                tracing::warn!(
                    fixture = %dir.display(),
                    "generated_ids[{j}] = {id} is not the argmax {argmax_row} of the recorded logits",
                    argmax_row = argmax(row)
                );
            }
        }
        Ok(golden)
    }

    /// Checks metadata and logit sizes against each other (the fields are public,
    /// so [`compare`] re-checks a `Golden` built by hand).
    pub fn check(&self) -> Result<(), ModelError> {
        self.meta.validate(&self.dir.join("golden.json"))?;
        let t = self.meta.prompt_ids.len();
        let ok = self.vocab > 0
            && t.checked_mul(self.vocab) == Some(self.prefill_logits.len())
            && DECODE_STEPS.checked_mul(self.vocab) == Some(self.decode_logits.len());
        if !ok {
            return Err(ModelError::Golden {
                path: self.dir.join("golden.safetensors"),
                detail: format!(
                    "{prefill_logits_len} prefill and {decode_logits_len} decode logits, expected {t} x {v} and {DECODE_STEPS} x {v}",
                    v = self.vocab,
                    prefill_logits_len = self.prefill_logits.len(),
                    decode_logits_len = self.decode_logits.len()
                ),
            });
        }
        Ok(())
    }

    /// The 17 logit rows whose argmax is a greedy choice: the last prefill row,
    /// then every decode row.
    pub fn greedy_rows(&self) -> impl Iterator<Item = &[f32]> {
        greedy_rows(&self.prefill_logits, &self.decode_logits, self.vocab)
    }
}

/// Last prefill row, then every decode row (`vocab`-wide rows).
fn greedy_rows<'a>(
    prefill: &'a [f32],
    decode: &'a [f32],
    vocab: usize,
) -> impl Iterator<Item = &'a [f32]> {
    let v = vocab.max(1);
    prefill
        .chunks_exact(v)
        .last()
        .into_iter()
        .chain(decode.chunks_exact(v))
}

/// One tensor of `golden.safetensors` as f32 values (must be stored F32).
fn read_f32(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    path: &Path,
) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let view = st.tensor(name).map_err(|e| ModelError::Golden {
        path: path.to_path_buf(),
        detail: format!("tensor `{name}`: {e}"),
    })?;
    if view.dtype() != safetensors::Dtype::F32 {
        return Err(ModelError::Golden {
            path: path.to_path_buf(),
            detail: format!(
                "tensor `{name}`: dtype {view_dtype:?}, expected F32",
                view_dtype = view.dtype()
            ),
        });
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((view.shape().to_vec(), values))
}

/// `QWGPU_FIXTURES_DIR` when set (test binaries run away from the checkout
/// they were built in: `cargo xtask gpu-tests`), else `<workspace>/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QWGPU_FIXTURES_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    dir.canonicalize().unwrap_or(dir)
}

/// Fixture folders (those holding a `golden.json`) under [`fixtures_dir`], sorted.
/// A missing fixtures folder gives an empty list.
pub fn list_fixtures() -> Result<Vec<PathBuf>, ModelError> {
    let root = fixtures_dir();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ModelError::Io { path: root, source }),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ModelError::Io {
            path: root.clone(),
            source,
        })?;
        let path = entry.path();
        if path.join("golden.json").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// A greedy choice where our argmax differs from HF's.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgmaxFlip {
    /// 0 = after prefill, i + 1 = after decode step i.
    pub point: usize,
    pub ours: usize,
    pub hf: u32,
    pub hf_margin: f32,
    /// HF's margin was below `2 · tolerance`: a near-tie, reported but not failed.
    pub tolerated: bool,
}

/// Result of [`check_reference`] on one fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenReport {
    pub fixture: String,
    pub quant: String,
    pub kind: String,
    pub layout: String,
    /// Largest |ours − HF| over all prefill and decode logits (∞ if any is NaN).
    pub max_abs_diff: f32,
    /// Where it occurred: `prefill[t]` or `decode[i]`, and the vocab index.
    pub max_diff_at: (String, usize),
    /// max |HF logit|.
    pub logit_scale: f32,
    /// `RELATIVE_TOLERANCE · max(1, logit_scale)`.
    pub tolerance: f32,
    /// True when every greedy choice matches HF's, apart from tolerated near-ties.
    pub greedy_identical: bool,
    pub flips: Vec<ArgmaxFlip>,
    pub passed: bool,
}

impl fmt::Display for GoldenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{fixture} [{kind} {quant} {layout}]: {fail} — max |diff| {max_abs_diff:.3e} at {max_diff_at_0} vocab {max_diff_at_1} (tolerance {tolerance:.3e}, logit scale {logit_scale:.3}), greedy {differs}",
            fixture = self.fixture,
            kind = self.kind,
            quant = self.quant,
            layout = self.layout,
            fail = if self.passed { "PASS" } else { "FAIL" },
            max_abs_diff = self.max_abs_diff,
            max_diff_at_0 = self.max_diff_at.0,
            max_diff_at_1 = self.max_diff_at.1,
            tolerance = self.tolerance,
            logit_scale = self.logit_scale,
            differs = if self.greedy_identical { "identical" } else { "DIFFERS" },
        )?;
        for flip in &self.flips {
            write!(
                f,
                "\n  point {flip_point}: ours {flip_ours} vs HF {flip_hf} (HF margin {flip_hf_margin:.3e}{tolerated})",
                flip_point = flip.point,
                flip_ours = flip.ours,
                flip_hf = flip.hf,
                flip_hf_margin = flip.hf_margin,
                tolerated = if flip.tolerated { ", near-tie: tolerated" } else { "" }
            )?;
        }
        Ok(())
    }
}

/// Loads the fixture's checkpoint into a [`ReferenceModel`], runs the prompt and
/// the 16 teacher-forced decode steps (feeding HF's `generated_ids`, so one flip
/// does not cascade) and compares logits and greedy choices with HF's.
pub fn check_reference(dir: &Path) -> Result<GoldenReport, ModelError> {
    let golden = Golden::load(dir)?;
    let model = ReferenceModel::load(dir)?;
    compare(&model, &golden)
}

/// The comparison of [`check_reference`] with an already loaded model.
pub fn compare(model: &ReferenceModel, golden: &Golden) -> Result<GoldenReport, ModelError> {
    golden.check()?;
    check_vocab(model.config().vocab_size, golden)?;
    let mut cache = model.new_cache();
    let prefill = model.forward(&mut cache, &golden.meta.prompt_ids)?;
    let mut decode = Vec::with_capacity(DECODE_STEPS * golden.vocab);
    for &token in &golden.meta.generated_ids[..DECODE_STEPS] {
        decode.extend(model.forward(&mut cache, &[token])?);
    }
    Ok(compare_logits(
        golden,
        &prefill,
        &decode,
        RELATIVE_TOLERANCE,
    ))
}

/// Loads the fixture on the backend of `opts` and compares it with HF's logits
/// at `relative_tolerance` (see [`GPU_RELATIVE_TOLERANCE`]).
pub fn check_model(
    dir: &Path,
    opts: &crate::engine::LoadOptions,
    relative_tolerance: f32,
) -> Result<GoldenReport, ModelError> {
    let golden = Golden::load(dir)?;
    let model = crate::engine::Model::load(dir, opts)?;
    compare_model(&model, &golden, relative_tolerance)
}

/// [`compare`] for a model on any backend.
pub fn compare_model(
    model: &crate::engine::Model,
    golden: &Golden,
    relative_tolerance: f32,
) -> Result<GoldenReport, ModelError> {
    golden.check()?;
    check_vocab(model.config().vocab_size, golden)?;
    let mut session = model.new_session()?;
    let prefill = model.forward_all(&mut session, &golden.meta.prompt_ids)?;
    let mut decode = Vec::with_capacity(DECODE_STEPS * golden.vocab);
    for &token in &golden.meta.generated_ids[..DECODE_STEPS] {
        decode.extend(model.forward_all(&mut session, &[token])?);
    }
    Ok(compare_logits(
        golden,
        &prefill,
        &decode,
        relative_tolerance,
    ))
}

fn check_vocab(model_vocab: usize, golden: &Golden) -> Result<(), ModelError> {
    if model_vocab != golden.vocab {
        return Err(ModelError::Golden {
            path: golden.dir.join("golden.safetensors"),
            detail: format!(
                "logits have {golden_vocab} columns, the model's vocab_size is {model_vocab}",
                golden_vocab = golden.vocab
            ),
        });
    }
    Ok(())
}

/// Max |Δ| and greedy agreement of our logits against HF's (`prefill`
/// `[T × vocab]`, `decode` `[DECODE_STEPS × vocab]`): the comparison of
/// [`compare_model`] for logits computed elsewhere (a web page).
pub fn compare_logits(
    golden: &Golden,
    prefill: &[f32],
    decode: &[f32],
    relative_tolerance: f32,
) -> GoldenReport {
    let meta = &golden.meta;
    let vocab = golden.vocab;
    let mut max_abs_diff = 0.0f32;
    let mut max_diff_at = (String::from("prefill[0]"), 0);
    let mut logit_scale = 0.0f32;
    let sections = [
        ("prefill", prefill, &golden.prefill_logits[..]),
        ("decode", decode, &golden.decode_logits[..]),
    ];
    for (label, ours, theirs) in sections {
        for (i, (a, b)) in ours.iter().zip(theirs.iter()).enumerate() {
            let d = (a - b).abs();
            let d = if d.is_nan() { f32::INFINITY } else { d };
            if d > max_abs_diff {
                max_abs_diff = d;
                max_diff_at = (
                    format!("{label}[{i_vocab}]", i_vocab = i / vocab),
                    i % vocab,
                );
            }
            logit_scale = logit_scale.max(b.abs());
        }
    }
    let tolerance = relative_tolerance * logit_scale.max(1.0);

    let t = meta.prompt_ids.len();
    let ours_rows =
        std::iter::once(&prefill[(t - 1) * vocab..t * vocab]).chain(decode.chunks_exact(vocab));
    let mut flips = Vec::new();
    for (point, row) in ours_rows.enumerate() {
        let ours = argmax(row);
        let hf = meta.generated_ids[point];
        if ours != hf as usize {
            let hf_margin = meta.margins[point];
            flips.push(ArgmaxFlip {
                point,
                ours,
                hf,
                hf_margin,
                tolerated: hf_margin < 2.0 * tolerance,
            });
        }
    }
    let greedy_identical = flips.iter().all(|f| f.tolerated);
    let passed = max_abs_diff <= tolerance && greedy_identical;
    GoldenReport {
        fixture: meta.name.clone(),
        quant: meta.quant.clone(),
        kind: meta.kind.clone(),
        layout: meta.layout.clone(),
        max_abs_diff,
        max_diff_at,
        logit_scale,
        tolerance,
        greedy_identical,
        flips,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{random_packed_model, tiny_config};
    use std::collections::HashMap;

    /// A fresh scratch folder under the system temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "qwgpu-golden-{name}-{std_process_id}",
            std_process_id = std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_fixture(
        dir: &Path,
        meta: &serde_json::Value,
        prefill: (&[f32], [usize; 2]),
        decode: (&[f32], [usize; 2]),
    ) {
        std::fs::write(dir.join("golden.json"), meta.to_string()).unwrap();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (pb, db) = (bytes(prefill.0), bytes(decode.0));
        let tensors = vec![
            (
                "prefill_logits",
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    prefill.1.to_vec(),
                    &pb,
                )
                .unwrap(),
            ),
            (
                "decode_logits",
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    decode.1.to_vec(),
                    &db,
                )
                .unwrap(),
            ),
        ];
        let out = safetensors::tensor::serialize(tensors, None::<HashMap<String, String>>).unwrap();
        std::fs::write(dir.join("golden.safetensors"), out).unwrap();
    }

    fn meta_json(prompt: &[u32], generated: &[u32], margins: &[f32]) -> serde_json::Value {
        serde_json::json!({
            "name": "synthetic", "kind": "dense", "quant": "bf16", "layout": "text", "sharded": false,
            "prompt_ids": prompt, "generated_ids": generated, "margins": margins, "extra_field": 1
        })
    }

    /// Runs the model the way the golden semantics describe, greedily.
    fn record(model: &ReferenceModel, prompt: &[u32]) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let v = model.config().vocab_size;
        let mut cache = model.new_cache();
        let prefill = model.forward(&mut cache, prompt).unwrap();
        let mut generated = vec![argmax(&prefill[(prompt.len() - 1) * v..]) as u32];
        let mut decode = Vec::new();
        for i in 0..DECODE_STEPS {
            let row = model.forward(&mut cache, &[generated[i]]).unwrap();
            generated.push(argmax(&row) as u32);
            decode.extend(row);
        }
        (prefill, decode, generated)
    }

    #[test]
    fn load_then_compare_reports_the_perturbation_and_flips() {
        let cfg = tiny_config(false);
        let model = ReferenceModel::from_packed(&random_packed_model(&cfg, false, 77)).unwrap();
        let v = cfg.vocab_size;
        let prompt: Vec<u32> = (0..21).map(|i| (i * 37 % v) as u32).collect();
        let (mut prefill, decode, mut generated) = record(&model, &prompt);
        // Perturb one logit by 0.5: that is the max diff, far above tolerance.
        prefill[3 * v + 10] += 0.5;
        let margins = vec![10.0f32; GREEDY_POINTS];
        let dir = scratch("perturbed");
        write_fixture(
            &dir,
            &meta_json(&prompt, &generated, &margins),
            (&prefill, [21, v]),
            (&decode, [16, v]),
        );
        let golden = Golden::load(&dir).unwrap();
        assert_eq!(golden.vocab, v);
        let report = compare(&model, &golden).unwrap();
        assert!((report.max_abs_diff - 0.5).abs() < 1e-5, "{report}");
        assert_eq!(report.max_diff_at, ("prefill[3]".to_string(), 10));
        assert!(report.greedy_identical && !report.passed, "{report}");

        // Unperturbed but HF "chose" another token at the last point (never fed
        // back, so no logits change): a flip, failed when HF's margin is large,
        // tolerated when it is a near-tie.
        prefill[3 * v + 10] -= 0.5;
        generated[16] = (generated[16] + 1) % v as u32;
        let mut golden = golden;
        golden.prefill_logits = prefill;
        golden.meta.generated_ids = generated;
        let report = compare(&model, &golden).unwrap();
        assert!(report.max_abs_diff <= report.tolerance, "{report}");
        assert_eq!(report.flips.len(), 1, "{report}");
        assert_eq!(report.flips[0].point, 16);
        assert!(!report.greedy_identical && !report.passed);
        golden.meta.margins[16] = report.tolerance;
        let report = compare(&model, &golden).unwrap();
        assert!(
            report.flips[0].tolerated && report.greedy_identical && report.passed,
            "{report}"
        );
        let expected_tol = RELATIVE_TOLERANCE * report.logit_scale.max(1.0);
        assert_eq!(report.tolerance, expected_tol);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_fixtures_are_rejected_with_path_and_numbers() {
        let dir = scratch("malformed");
        let prompt = [1u32, 2, 3];
        let ok_meta = meta_json(&prompt, &[0; 17], &[1.0; 17]);
        let pre = vec![0.0f32; 3 * 8];
        let dec = vec![0.0f32; 16 * 8];

        write_fixture(
            &dir,
            &meta_json(&prompt, &[0; 16], &[1.0; 17]),
            (&pre, [3, 8]),
            (&dec, [16, 8]),
        );
        let err = Golden::load(&dir).unwrap_err().to_string();
        assert!(err.contains("golden.json") && err.contains("16"), "{err}");

        write_fixture(&dir, &ok_meta, (&pre, [3, 8]), (&dec[..15 * 8], [15, 8]));
        let err = Golden::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("golden.safetensors") && err.contains("[15, 8]"),
            "{err}"
        );

        write_fixture(&dir, &ok_meta, (&pre[..16], [2, 8]), (&dec, [16, 8]));
        let err = Golden::load(&dir).unwrap_err().to_string();
        assert!(err.contains("[2, 8]") && err.contains("[3, V]"), "{err}");

        let mut bad_kind = ok_meta.clone();
        bad_kind["kind"] = "sparse".into();
        write_fixture(&dir, &bad_kind, (&pre, [3, 8]), (&dec, [16, 8]));
        assert!(Golden::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("sparse"));

        write_fixture(&dir, &ok_meta, (&pre, [3, 8]), (&dec, [16, 8]));
        let golden = Golden::load(&dir).unwrap();
        assert_eq!(golden.meta.prompt_ids, prompt);
        // A model with another vocab cannot be compared.
        let model = ReferenceModel::from_packed(&random_packed_model(&tiny_config(false), true, 1))
            .unwrap();
        let err = compare(&model, &golden).unwrap_err().to_string();
        assert!(err.contains("512") && err.contains('8'), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fixtures_dir_is_the_workspace_tests_fixtures() {
        let dir = fixtures_dir();
        assert!(dir.ends_with("tests/fixtures"), "{}", dir.display());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(workspace.join("Cargo.toml").is_file());
        for d in list_fixtures().unwrap() {
            assert!(d.join("golden.json").is_file());
        }
    }
}
