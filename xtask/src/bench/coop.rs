//! The cooperative-matrix ceiling: the best line of the `coop_peak::coop_peak`
//! kernel bench (a plain f16 × f16 → f32 GEMM, every tiling on a few shapes),
//! set beside torch's matmul FLOP/s in the report.
//!
//! The bench also times probe tilings (`ProbeShared`, `ProbeMma`, any feed
//! named `Probe…`): they multiply fragments loaded once or skip the global
//! loads, so their output is wrong and their figure is the multiply-adds
//! alone, not a complete GEMM. The ceiling is the best of the other tilings;
//! the probes' best is kept apart.

use serde::{Deserialize, Serialize};

use super::results::Results;

/// The kernel bench's name in [`Results::kernels`].
pub const COOP_PEAK_TEST: &str = "coop_peak::coop_peak";

/// The fastest complete-GEMM tiling and shape the bench measured, and apart
/// from it the fastest probe.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CoopPeak {
    /// Best complete GEMM (0 with `lines` 0 when only probes were timed).
    pub tflops: f64,
    /// Shape and tiling as the test prints them (`m=4096 n=12288 k=4096 Direct sg=2x2 ...`).
    pub what: String,
    pub adapter: String,
    /// Timed complete-GEMM lines the best was picked from.
    pub lines: usize,
    /// The best probe tiling (multiply-adds only, not a complete GEMM);
    /// `None` when the bench timed none, or in a results.json written before
    /// probes were kept apart.
    pub probe: Option<CoopProbe>,
}

/// The fastest probe tiling.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CoopProbe {
    pub tflops: f64,
    pub what: String,
    /// Timed probe lines the best was picked from.
    pub lines: usize,
}

/// Whether a `what` (`m=.. n=.. k=.. <feed> sg=..`) names a probe tiling.
pub fn is_probe(what: &str) -> bool {
    what.split_whitespace().any(|t| t.starts_with("Probe"))
}

/// Lines `BENCH coop_peak <adapter> m=.. n=.. k=.. <feed> sg=.. ck=.. lds=.. nbuf=..: X µs = Y TFLOP/s`
/// → the largest Y of the complete-GEMM tilings and, apart, of the probes;
/// `None` when no line has a figure (check lines and skipped tilings have
/// none).
pub fn parse_coop_peak(text: &str) -> Option<CoopPeak> {
    let mut out = CoopPeak::default();
    let mut probe = CoopProbe::default();
    for line in text.lines() {
        let Some(rest) = line.split_once("BENCH coop_peak ").map(|x| x.1) else {
            continue;
        };
        let Some(head) = rest.trim_end().strip_suffix(" TFLOP/s") else {
            continue;
        };
        let Some((left, figure)) = head.rsplit_once("= ") else {
            continue;
        };
        let Ok(tflops) = figure.trim().parse::<f64>() else {
            continue;
        };
        let Some((adapter, shape)) = left.split_once(" m=") else {
            continue;
        };
        let what = format!(
            "m={}",
            shape.rsplit_once(": ").map_or(shape, |x| x.0).trim()
        );
        if out.adapter.is_empty() {
            out.adapter = adapter.trim().to_string();
        }
        if is_probe(&what) {
            probe.lines += 1;
            if probe.lines == 1 || tflops > probe.tflops {
                (probe.tflops, probe.what) = (tflops, what);
            }
        } else {
            out.lines += 1;
            if out.lines == 1 || tflops > out.tflops {
                (out.tflops, out.what) = (tflops, what);
            }
        }
    }
    if probe.lines > 0 {
        out.probe = Some(probe);
    }
    (out.lines > 0 || out.probe.is_some()).then_some(out)
}

/// The ceiling the report shows: the run's own, except where a results.json
/// written before probes were kept apart picked a probe as its best. Then
/// the bench's output kept in [`Results::kernels`] (its first 120 lines) is
/// parsed again; without it, the recorded figure becomes the probe's and the
/// complete GEMM's is unknown.
pub fn coop_ceiling(r: &Results) -> Option<CoopPeak> {
    let c = r.coop_peak.as_ref()?;
    if c.probe.is_some() || !is_probe(&c.what) {
        return Some(c.clone());
    }
    let reparsed = r
        .kernels
        .iter()
        .find(|k| k.test == COOP_PEAK_TEST)
        .and_then(|k| parse_coop_peak(&k.lines.join("\n")))
        .filter(|p| p.probe.is_some());
    Some(reparsed.unwrap_or_else(|| CoopPeak {
        tflops: 0.0,
        what: String::new(),
        adapter: c.adapter.clone(),
        lines: 0,
        probe: Some(CoopProbe {
            tflops: c.tflops,
            what: c.what.clone(),
            lines: 0,
        }),
    }))
}
