//! What `qwgpu score` prints: a summary (always), per-token rows (with
//! `--tokens`), as a table or as JSON.

use std::fmt::Write;
use std::path::Path;

use serde_json::{json, Value};

/// One scored token.
pub struct Row {
    pub position: usize,
    pub id: u32,
    /// log P_model(token | tokens before it), natural log.
    pub logprob: f64,
    /// The model's most likely next token there.
    pub argmax: u32,
    pub reference: Option<RefRow>,
}

/// The reference checkpoint at the same position.
pub struct RefRow {
    pub logprob: f64,
    pub argmax: u32,
    /// KL(P_reference ‖ P_model) over the whole vocabulary, in nats.
    pub kl: f64,
}

pub struct Summary {
    pub scored: usize,
    /// Mean negative log-likelihood per token (nats).
    pub mean_nll: f64,
    pub perplexity: f64,
    pub reference: Option<RefSummary>,
}

pub struct RefSummary {
    pub mean_nll: f64,
    pub perplexity: f64,
    pub mean_kl: f64,
    pub max_kl: f64,
    pub max_kl_position: usize,
    /// Positions where both checkpoints' most likely token is the same.
    pub top1_agree: usize,
}

impl Summary {
    pub fn new(rows: &[Row]) -> Self {
        let n = rows.len().max(1) as f64;
        let mean_nll = -rows.iter().map(|r| r.logprob).sum::<f64>() / n;
        let refs: Vec<(&Row, &RefRow)> = rows
            .iter()
            .filter_map(|r| r.reference.as_ref().map(|x| (r, x)))
            .collect();
        let reference = (!refs.is_empty()).then(|| {
            let ref_nll = -refs.iter().map(|(_, x)| x.logprob).sum::<f64>() / n;
            let (max_kl_position, max_kl) =
                refs.iter()
                    .map(|(r, x)| (r.position, x.kl))
                    .fold(
                        (0, 0.0),
                        |best, cur| if cur.1 > best.1 { cur } else { best },
                    );
            RefSummary {
                mean_nll: ref_nll,
                perplexity: ref_nll.exp(),
                mean_kl: refs.iter().map(|(_, x)| x.kl).sum::<f64>() / n,
                max_kl,
                max_kl_position,
                top1_agree: refs.iter().filter(|(r, x)| r.argmax == x.argmax).count(),
            }
        });
        Self {
            scored: rows.len(),
            mean_nll,
            perplexity: mean_nll.exp(),
            reference,
        }
    }
}

pub struct Header<'a> {
    pub model: &'a Path,
    pub reference: Option<&'a Path>,
    pub backend: String,
    pub window: usize,
    pub stride: usize,
    pub seconds: f64,
}

pub fn json(h: &Header, s: &Summary, ids: &[u32], rows: Option<&[Row]>) -> String {
    let mut out = json!({
        "model": h.model.display().to_string(),
        "backend": h.backend,
        "window": h.window,
        "stride": h.stride,
        "seconds": h.seconds,
        "ids": ids,
        "tokens_scored": s.scored,
        "mean_nll": s.mean_nll,
        "perplexity": s.perplexity,
    });
    if let (Some(dir), Some(r)) = (h.reference, &s.reference) {
        out["reference"] = json!({
            "model": dir.display().to_string(),
            "kl_direction": "KL(reference || model), nats",
            "mean_nll": r.mean_nll,
            "perplexity": r.perplexity,
            "mean_kl": r.mean_kl,
            "max_kl": r.max_kl,
            "max_kl_position": r.max_kl_position,
            "top1_agreement": r.top1_agree as f64 / s.scored.max(1) as f64,
        });
    }
    if let Some(rows) = rows {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "position": r.position,
                    "id": r.id,
                    "logprob": r.logprob,
                    "argmax": r.argmax,
                });
                if let Some(x) = &r.reference {
                    v["reference_logprob"] = json!(x.logprob);
                    v["reference_argmax"] = json!(x.argmax);
                    v["kl"] = json!(x.kl);
                }
                v
            })
            .collect();
        out["tokens"] = Value::Array(list);
    }
    format!("{out:#}\n")
}

pub fn table(
    h: &Header,
    s: &Summary,
    rows: Option<&[Row]>,
    text_of: &dyn Fn(u32) -> String,
) -> String {
    let mut o = String::new();
    if let Some(rows) = rows {
        let with_ref = s.reference.is_some();
        let _ = write!(
            o,
            "{:>8} {:>7}  {:<16} {:>11} {:>7}",
            "position", "id", "token", "logprob", "argmax"
        );
        if with_ref {
            let _ = write!(
                o,
                " {:>11} {:>7} {:>12}",
                "ref logprob", "ref top", "KL(ref||mdl)"
            );
        }
        o.push('\n');
        for r in rows {
            let shown: String = format!("{:?}", text_of(r.id)).chars().take(16).collect();
            let _ = write!(
                o,
                "{:>8} {:>7}  {:<16} {:>11.5} {:>7}",
                r.position, r.id, shown, r.logprob, r.argmax
            );
            if let Some(x) = &r.reference {
                let _ = write!(o, " {:>11.5} {:>7} {:>12.3e}", x.logprob, x.argmax, x.kl);
            }
            o.push('\n');
        }
    }
    let _ = writeln!(
        o,
        "{}: {} tokens scored (window {}, stride {}) on {} in {:.2} s",
        h.model.display(),
        s.scored,
        h.window,
        h.stride,
        h.backend,
        h.seconds
    );
    let _ = writeln!(o, "  mean NLL   {:.6} nats/token", s.mean_nll);
    let _ = writeln!(o, "  perplexity {:.6}", s.perplexity);
    if let (Some(dir), Some(r)) = (h.reference, &s.reference) {
        let _ = writeln!(o, "reference {}:", dir.display());
        let _ = writeln!(o, "  mean NLL   {:.6} nats/token", r.mean_nll);
        let _ = writeln!(o, "  perplexity {:.6}", r.perplexity);
        let _ = writeln!(
            o,
            "  KL(reference || model): mean {:.6e} nats/token, max {:.6e} at position {}",
            r.mean_kl, r.max_kl, r.max_kl_position
        );
        let _ = writeln!(
            o,
            "  top-1 agreement {:.4} ({} of {})",
            r.top1_agree as f64 / s.scored.max(1) as f64,
            r.top1_agree,
            s.scored
        );
    }
    o
}
