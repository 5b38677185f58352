//! The cooperative-matrix ceiling: the best line of the `coop_peak::coop_peak`
//! kernel bench (a plain f16 × f16 → f32 GEMM, every tiling on a few shapes),
//! set beside torch's matmul FLOP/s in the report.

use serde::{Deserialize, Serialize};

/// The fastest tiling and shape the bench measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CoopPeak {
    pub tflops: f64,
    /// Shape and tiling as the test prints them (`m=4096 n=12288 k=4096 Direct sg=2x2 ...`).
    pub what: String,
    pub adapter: String,
    /// Timed lines the best was picked from.
    pub lines: usize,
}

/// Lines `BENCH coop_peak <adapter> m=.. n=.. k=.. <feed> sg=.. ck=.. lds=.. nbuf=..: X µs = Y TFLOP/s`
/// → the largest Y; `None` when no line has a figure (check lines and
/// skipped tilings have none).
pub fn parse_coop_peak(text: &str) -> Option<CoopPeak> {
    let mut best: Option<CoopPeak> = None;
    let mut lines = 0;
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
        let what = shape
            .rsplit_once(": ")
            .map_or(shape, |x| x.0)
            .trim()
            .to_string();
        lines += 1;
        if best.as_ref().is_none_or(|b| tflops > b.tflops) {
            best = Some(CoopPeak {
                tflops,
                what: format!("m={what}"),
                adapter: adapter.trim().to_string(),
                lines: 0,
            });
        }
    }
    best.map(|b| CoopPeak { lines, ..b })
}
