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
        let (position, id, token, logprob, argmax) =
            ("position", "id", "token", "logprob", "argmax");
        let _ = write!(
            o,
            "{position:>8} {id:>7}  {token:<16} {logprob:>11} {argmax:>7}"
        );
        if with_ref {
            let (ref_logprob, ref_top, kl) = ("ref logprob", "ref top", "KL(ref||mdl)");
            let _ = write!(o, " {ref_logprob:>11} {ref_top:>7} {kl:>12}");
        }
        o.push('\n');
        for r in rows {
            let token = text_of(r.id);
            let shown: String = format!("{token:?}").chars().take(16).collect();
            let Row {
                position,
                id,
                logprob,
                argmax,
                ..
            } = *r;
            let _ = write!(
                o,
                "{position:>8} {id:>7}  {shown:<16} {logprob:>11.5} {argmax:>7}"
            );
            if let Some(x) = &r.reference {
                let RefRow {
                    logprob,
                    argmax,
                    kl,
                } = *x;
                let _ = write!(o, " {logprob:>11.5} {argmax:>7} {kl:>12.3e}");
            }
            o.push('\n');
        }
    }
    let model = h.model.display();
    let (scored, window, stride, backend, seconds) =
        (s.scored, h.window, h.stride, &h.backend, h.seconds);
    let _ = writeln!(
        o,
        "{model}: {scored} tokens scored (window {window}, stride {stride}) on {backend} in {seconds:.2} s"
    );
    let (mean_nll, perplexity) = (s.mean_nll, s.perplexity);
    let _ = writeln!(o, "  mean NLL   {mean_nll:.6} nats/token");
    let _ = writeln!(o, "  perplexity {perplexity:.6}");
    if let (Some(dir), Some(r)) = (h.reference, &s.reference) {
        let dir = dir.display();
        let RefSummary {
            mean_nll,
            perplexity,
            mean_kl,
            max_kl,
            max_kl_position,
            top1_agree,
        } = *r;
        let agreement = top1_agree as f64 / scored.max(1) as f64;
        let _ = writeln!(o, "reference {dir}:");
        let _ = writeln!(o, "  mean NLL   {mean_nll:.6} nats/token");
        let _ = writeln!(o, "  perplexity {perplexity:.6}");
        let _ = writeln!(
            o,
            "  KL(reference || model): mean {mean_kl:.6e} nats/token, max {max_kl:.6e} at position {max_kl_position}"
        );
        let _ = writeln!(
            o,
            "  top-1 agreement {agreement:.4} ({top1_agree} of {scored})"
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_full() {
        let rows = [Row {
            position: 1,
            id: 42,
            logprob: -1.25,
            argmax: 7,
            reference: Some(RefRow {
                logprob: -0.5,
                argmax: 42,
                kl: 0.0125,
            }),
        }];
        let summary = Summary {
            scored: 4,
            mean_nll: 1.5,
            perplexity: 4.5,
            reference: Some(RefSummary {
                mean_nll: 0.75,
                perplexity: 2.0,
                mean_kl: 0.03,
                max_kl: 0.25,
                max_kl_position: 3,
                top1_agree: 3,
            }),
        };
        let header = Header {
            model: Path::new("/m/a"),
            reference: Some(Path::new("/m/b")),
            backend: "cpu reference".into(),
            window: 16,
            stride: 8,
            seconds: 0.5,
        };
        let text = table(&header, &summary, Some(&rows), &|id| format!("t{id}"));
        assert_eq!(
            text,
            "\
position      id  token                logprob  argmax ref logprob ref top KL(ref||mdl)
       1      42  \"t42\"               -1.25000       7    -0.50000      42     1.250e-2
/m/a: 4 tokens scored (window 16, stride 8) on cpu reference in 0.50 s
  mean NLL   1.500000 nats/token
  perplexity 4.500000
reference /m/b:
  mean NLL   0.750000 nats/token
  perplexity 2.000000
  KL(reference || model): mean 3.000000e-2 nats/token, max 2.500000e-1 at position 3
  top-1 agreement 0.7500 (3 of 4)
"
        );
    }
}
