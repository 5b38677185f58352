//! `qwgpu score`: the log-probability of each token of a text given the
//! tokens before it, the perplexity, and with `--reference DIR2` how far the
//! model's next-token distributions are from another checkpoint's on the
//! same tokens (KL divergence, top-1 agreement): e.g. an FP8 checkpoint
//! against its BF16 original.

mod math;
mod report;
mod windows;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use qwgpu_model::engine::{self, Model, Session};

use crate::load::{load_and_report, load_options, Backend, PrecisionFlag};
use crate::prompt;
use report::{Row, Summary};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["text", "ids"])))]
pub struct ScoreArgs {
    /// Hugging Face model folder. Without it, the bundled tiny random-weight
    /// test model is scored.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A UTF-8 text file to score (tokenized with the model's tokenizer, as is).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Token ids to score, comma-separated (`--ids 1,2,3`).
    #[arg(long)]
    ids: Option<String>,
    /// Tokens the model sees at once; longer inputs go in sliding windows
    /// (default: the model's context length, else 2048).
    #[arg(long)]
    window: Option<usize>,
    /// Tokens between the starts of two windows (default: half the window);
    /// each token is scored once, with at least window − stride tokens of context.
    #[arg(long)]
    stride: Option<usize>,
    /// A second checkpoint (the baseline, e.g. the BF16 original of an FP8
    /// one): per-token KL(reference ‖ model) and top-1 agreement.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// One row per scored token (position, id, text, log-probability, ...).
    #[arg(long)]
    tokens: bool,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Refuse checkpoints with tensors qwgpu does not know.
    #[arg(long)]
    strict: bool,
    /// Compute backend (both checkpoints).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    precision: PrecisionFlag,
    /// Precision of the `--reference` checkpoint's GEMMs (default: the
    /// model's). `--reference` = `--model` with `--precision fast
    /// --reference-precision exact` measures what the fast path moves.
    #[arg(long, value_enum)]
    reference_precision: Option<crate::load::Precision>,
}

/// Logits read back per step at most (rows × vocab floats): a window of a
/// 248k-vocabulary model is never held whole.
const MAX_LOGITS_PER_STEP: usize = 1 << 24;

/// The token ids to score, checked against the vocabulary.
fn input_ids(args: &ScoreArgs, model: &Path, vocab: usize) -> Result<Vec<u32>> {
    let ids: Vec<u32> = if let Some(path) = &args.text {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --text {}", path.display()))?;
        if text.is_empty() {
            bail!(
                "--text {}: the file is empty, nothing to score",
                path.display()
            );
        }
        let tokenizer = prompt::load_tokenizer(model)?;
        tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| {
                let shown = path.display();
                anyhow::anyhow!("tokenizing {shown}: {e}")
            })?
            .get_ids()
            .to_vec()
    } else {
        let list = args.ids.as_deref().unwrap_or_default();
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>().with_context(|| {
                    format!("--ids: {s:?} is not a token id (expected comma-separated non-negative integers)")
                })
            })
            .collect::<Result<_>>()?
    };
    if let Some((i, &bad)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        bail!("token id {bad} (at position {i}) is outside the model's vocabulary of {vocab}");
    }
    if ids.len() < 2 {
        let n = ids.len();
        let s = if n == 1 { "" } else { "s" };
        bail!(
            "{n} token{s}: scoring needs at least 2 (the first token has no context to be scored against)"
        );
    }
    Ok(ids)
}

/// `--window` and `--stride`, checked.
fn window_and_stride(args: &ScoreArgs, context: Option<usize>) -> Result<(usize, usize)> {
    let window = args.window.unwrap_or(context.unwrap_or(2048));
    if window < 2 {
        bail!("--window {window}: must be at least 2 (a token and its context)");
    }
    if let Some(limit) = context {
        if window > limit {
            bail!("--window {window}: larger than the model's context length of {limit}");
        }
    }
    let stride = args.stride.unwrap_or((window / 2).max(1));
    if stride == 0 || stride > window {
        bail!("--stride {stride}: must be in 1..={window} (the window)");
    }
    Ok((window, stride))
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let model_dir = crate::bundled::model_or_bundled(args.model.as_deref())?;
    let started = Instant::now();
    let config = qwgpu_checkpoint::ModelConfig::from_file(&model_dir.join("config.json"))?;
    let vocab = config.text.vocab_size;
    let context = prompt::context_length(&model_dir)?;
    let ids = input_ids(args, &model_dir, vocab)?;
    let (window, stride) = window_and_stride(args, context)?;
    if let Some(reference) = &args.reference {
        let rc = qwgpu_checkpoint::ModelConfig::from_file(&reference.join("config.json"))?;
        if rc.text.vocab_size != vocab {
            let (shown, ref_vocab) = (reference.display(), rc.text.vocab_size);
            bail!(
                "--reference {shown}: its vocabulary has {ref_vocab} tokens, the model's {vocab}: the two must share a tokenizer"
            );
        }
    }
    // Token text for the per-token rows (best effort: --ids needs no tokenizer).
    let tokenizer = prompt::load_tokenizer(&model_dir).ok();
    let opts = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        engine::DEFAULT_MAX_CHUNK,
    ));
    let model = load_and_report(&model_dir, &opts, started)?;
    let reference = match &args.reference {
        Some(dir) => {
            let mut ropts = opts.clone();
            if let Some(p) = args.reference_precision {
                ropts.gpu.precision = p.into();
            }
            Some(load_and_report(dir, &ropts, Instant::now())?)
        }
        None => None,
    };
    let t0 = Instant::now();
    let rows = score(&model, reference.as_ref(), &ids, window, stride)?;
    let seconds = t0.elapsed().as_secs_f64();
    let summary = Summary::new(&rows);
    let text_of = |id: u32| {
        tokenizer
            .as_ref()
            .and_then(|t| t.decode(&[id], false).ok())
            .unwrap_or_default()
    };
    let header = report::Header {
        model: &model_dir,
        reference: args.reference.as_deref(),
        backend: model.backend_name(),
        window,
        stride,
        seconds,
    };
    let out = if args.json {
        report::json(&header, &summary, &ids, args.tokens.then_some(&rows[..]))
    } else {
        report::table(
            &header,
            &summary,
            args.tokens.then_some(&rows[..]),
            &text_of,
        )
    };
    print!("{out}");
    Ok(())
}

/// Scores every token but the first, window by window.
fn score(
    model: &Model,
    reference: Option<&Model>,
    ids: &[u32],
    window: usize,
    stride: usize,
) -> Result<Vec<Row>> {
    let vocab = model.config().vocab_size;
    let chunk = (MAX_LOGITS_PER_STEP / vocab).max(1);
    let mut rows = Vec::with_capacity(ids.len() - 1);
    for w in windows::plan(ids.len(), window, stride) {
        let mut sm = window_session(model, ids, w.begin, w.first)?;
        let mut sr = match reference {
            Some(r) => Some(window_session(r, ids, w.begin, w.first)?),
            None => None,
        };
        // Row r of a step's logits predicts the token after its input r.
        let inputs = &ids[w.first - 1..w.end - 1];
        for (c, step) in inputs.chunks(chunk).enumerate() {
            let lm = model
                .forward_all(&mut sm, step)
                .with_context(|| format!("running tokens {}..", w.first - 1 + c * chunk))?;
            let lr = match (reference, sr.as_mut()) {
                (Some(r), Some(s)) => Some(r.forward_all(s, step).with_context(|| {
                    format!(
                        "running the reference on tokens {}..",
                        w.first - 1 + c * chunk
                    )
                })?),
                _ => None,
            };
            for r in 0..step.len() {
                let position = w.first + c * chunk + r;
                let row = |all: &[f32], what: &str| {
                    math::log_softmax(&all[r * vocab..(r + 1) * vocab]).with_context(|| {
                        format!("{what} logits predicting position {position} are not finite (NaN or infinity)")
                    })
                };
                let target = ids[position];
                let lp = row(&lm, "the model's")?;
                let mut out = Row {
                    position,
                    id: target,
                    logprob: lp[target as usize],
                    argmax: math::argmax(&lp),
                    reference: None,
                };
                if let Some(lr) = &lr {
                    let lq = row(lr, "the reference's")?;
                    out.reference = Some(report::RefRow {
                        logprob: lq[target as usize],
                        argmax: math::argmax(&lq),
                        kl: math::kl(&lq, &lp),
                    });
                }
                rows.push(out);
            }
        }
    }
    Ok(rows)
}

/// A fresh session that has run the window's context before its first
/// scored token's input (`ids[begin..first - 1]`): only the last row is read.
fn window_session(model: &Model, ids: &[u32], begin: usize, first: usize) -> Result<Session> {
    let mut s = model.new_session()?;
    if first - 1 > begin {
        model
            .forward(&mut s, &ids[begin..first - 1])
            .with_context(|| {
                let end = first - 1;
                format!("running the context tokens {begin}..{end}")
            })?;
    }
    Ok(s)
}
