//! The rounding of activations in the multi-token GEMMs that commands run
//! with unless told otherwise, and its names on command lines and in reports.

pub use qwgpu_kernels::MatmulPrecision;

/// The precision `qwgpu generate`, `chat`, `score`, `bench` and `serve` (and
/// [`LoadOptions::default`](crate::engine::LoadOptions)) use without
/// `--precision`: [`MatmulPrecision::Fast`], because its divergence from the
/// exact path is measured far below Hugging Face's own BF16-vs-F32 divergence
/// on the same tokens: per committed fixture by `cargo xtask matrix`'s
/// precision column (against `tests/fixtures/<name>/hf_bf16.json`, written by
/// `cargo xtask fixtures --bf16-divergence`), and on the bench's
/// real-geometry checkpoints (`benches/precision_kl.py` and `qwgpu score
/// --reference-precision exact`, recorded in `benches/EXPERIMENTS.md`).
/// Should a measurement ever put it above HF's, the default goes back to
/// [`MatmulPrecision::Exact`].
pub const DEFAULT_PRECISION: MatmulPrecision = MatmulPrecision::Fast;

/// `exact` / `fast`: the `--precision` value and what reports print.
pub fn precision_name(p: MatmulPrecision) -> &'static str {
    match p {
        MatmulPrecision::Exact => "exact",
        MatmulPrecision::Fast => "fast",
    }
}

/// The precision named `name` ([`precision_name`]'s spellings, any case).
pub fn parse_precision(name: &str) -> Option<MatmulPrecision> {
    [MatmulPrecision::Exact, MatmulPrecision::Fast]
        .into_iter()
        .find(|&p| precision_name(p).eq_ignore_ascii_case(name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_default_is_fast() {
        for p in [MatmulPrecision::Exact, MatmulPrecision::Fast] {
            assert_eq!(parse_precision(precision_name(p)), Some(p));
        }
        assert_eq!(parse_precision(" FAST "), Some(MatmulPrecision::Fast));
        assert_eq!(parse_precision("bf16"), None);
        // Fast is the default on the measurement (see the doc).
        assert_eq!(DEFAULT_PRECISION, MatmulPrecision::Fast);
        assert_eq!(
            crate::engine::LoadOptions::default().gpu.precision,
            DEFAULT_PRECISION
        );
    }
}
