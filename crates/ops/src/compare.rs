//! Tolerant comparison of f32 outputs for tests of any crate: [`assert_close`]
//! / [`check_close`] with a [`Tol`], and the normalised mean squared error
//! [`nmse`].
//!
//! A value passes when `|got − want| ≤ abs + rel · |want|` (numpy's
//! `allclose` rule, evaluated in f64), or when both are equal (infinities of
//! the same sign included) or both NaN; any other NaN or infinity fails.

use std::fmt::Write as _;

/// How many failing indices a report lists.
const REPORTED: usize = 8;

/// Absolute and relative tolerance: `|got − want| ≤ abs + rel · |want|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    /// Absolute part (dominates near zero).
    pub abs: f32,
    /// Relative part, a fraction of `|want|`.
    pub rel: f32,
}

impl Tol {
    /// Both parts given.
    pub const fn new(abs: f32, rel: f32) -> Self {
        Self { abs, rel }
    }

    /// Absolute tolerance only.
    pub const fn absolute(abs: f32) -> Self {
        Self { abs, rel: 0.0 }
    }

    /// Relative tolerance only.
    pub const fn relative(rel: f32) -> Self {
        Self { abs: 0.0, rel }
    }

    /// Bit-for-bit equal values (up to `0.0 == -0.0`): the same code on the
    /// same inputs, e.g. the reference model against `qwgpu-ops` directly.
    pub const fn f32_exact() -> Self {
        Self { abs: 0.0, rel: 0.0 }
    }

    /// An f32 GPU kernel against the f32 CPU reference (other summation
    /// order, fused multiply-adds, approximate `exp`): abs 1e-4, rel 1e-3.
    pub const fn gpu_f32() -> Self {
        Self {
            abs: 1e-4,
            rel: 1e-3,
        }
    }

    /// A kernel storing or accumulating in f16 (unit roundoff 2⁻¹¹ ≈ 4.9e-4):
    /// abs 1e-3, rel 1e-2.
    pub const fn gpu_f16() -> Self {
        Self {
            abs: 1e-3,
            rel: 1e-2,
        }
    }

    /// A kernel storing in bf16 (unit roundoff 2⁻⁸ ≈ 3.9e-3): abs 1e-2, rel 2e-2.
    pub const fn gpu_bf16() -> Self {
        Self {
            abs: 1e-2,
            rel: 2e-2,
        }
    }

    /// Whether `got` is close enough to `want`.
    pub fn allows(&self, got: f32, want: f32) -> bool {
        if got == want || (got.is_nan() && want.is_nan()) {
            return true;
        }
        if !(got.is_finite() && want.is_finite()) {
            return false;
        }
        let err = (got as f64 - want as f64).abs();
        err <= self.abs as f64 + self.rel as f64 * (want as f64).abs()
    }
}

/// `|got − want| / |want|` in f64 (infinite when `want` is 0 and they differ).
fn rel_err(got: f32, want: f32) -> f64 {
    let err = (got as f64 - want as f64).abs();
    if err == 0.0 {
        0.0
    } else {
        err / (want as f64).abs()
    }
}

/// Compares `got` with `want` element-wise under `tol`. On failure the message
/// names `what`, counts the bad values, gives the largest absolute and
/// relative errors, and lists the first bad indices with value, expected
/// value, absolute and relative error. Lengths must match.
pub fn check_close(got: &[f32], want: &[f32], tol: Tol, what: &str) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {got_len} but expected {want_len}",
            got_len = got.len(),
            want_len = want.len()
        ));
    }
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !tol.allows(got[i], want[i]))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    // Largest errors over the failing values (NaN counts as infinite).
    let err_of = |i: usize, f: fn(f32, f32) -> f64| {
        let e = f(got[i], want[i]);
        if e.is_nan() {
            f64::INFINITY
        } else {
            e
        }
    };
    let abs_err = |g: f32, w: f32| (g as f64 - w as f64).abs();
    let worst = |f: fn(f32, f32) -> f64| {
        bad.iter()
            .copied()
            .max_by(|&a, &b| err_of(a, f).total_cmp(&err_of(b, f)))
            .expect("bad is not empty")
    };
    let (wa, wr) = (worst(abs_err), worst(rel_err));
    let mut msg = format!(
        "{what}: {bad_len} of {got_len} values outside tolerance (abs {tol_abs:e}, rel {tol_rel:e}); \
         max abs err {abs_error:e} at [{wa}], max rel err {rel_error:e} at [{wr}]",
        bad_len = bad.len(),
        got_len = got.len(),
        tol_abs = tol.abs,
        tol_rel = tol.rel,
        abs_error = abs_err(got[wa], want[wa]),
        rel_error = rel_err(got[wr], want[wr]),
    );
    for &i in bad.iter().take(REPORTED) {
        let _ = write!(
            msg,
            "\n  [{i}] got {got_i:e}, want {want_i:e}, abs err {abs_error:e}, rel err {rel_error:e}",
            got_i = got[i],
            want_i = want[i],
            abs_error = abs_err(got[i], want[i]),
            rel_error = rel_err(got[i], want[i]),
        );
    }
    if bad.len() > REPORTED {
        let _ = write!(msg, "\n  … and {} more", bad.len() - REPORTED);
    }
    Err(msg)
}

/// [`check_close`], panicking with its report on failure.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: Tol, what: &str) {
    if let Err(msg) = check_close(got, want, tol, what) {
        panic!("{msg}");
    }
}

/// Normalised mean squared error `Σ(got − want)² / Σwant²`, in f64: 0 for
/// identical slices, about 1 for output of the right scale but unrelated.
/// When `want` is all zeros it is 0 if `got` is too and infinite otherwise;
/// NaNs propagate. Panics if the lengths differ.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "nmse: lengths differ");
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        let d = *g as f64 - *w as f64;
        num += d * d;
        den += *w as f64 * *w as f64;
    }
    if num == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_follows_abs_plus_rel_rule() {
        let t = Tol::new(1e-3, 1e-2);
        assert!(t.allows(100.9, 100.0)); // 0.9 ≤ 0.001 + 1.0
        assert!(!t.allows(101.1, 100.0));
        assert!(t.allows(0.0009, 0.0));
        assert!(!t.allows(0.0011, 0.0));
        assert!(Tol::f32_exact().allows(1.5, 1.5));
        assert!(Tol::f32_exact().allows(-0.0, 0.0));
        assert!(!Tol::f32_exact().allows(1.0, 1.0 + f32::EPSILON));
        assert!(Tol::gpu_f32().allows(f32::INFINITY, f32::INFINITY));
        assert!(!Tol::gpu_f32().allows(f32::INFINITY, f32::NEG_INFINITY));
        assert!(!Tol::gpu_f32().allows(1.0, f32::INFINITY));
        assert!(!Tol::new(f32::INFINITY, 0.0).allows(f32::INFINITY, 1.0));
        assert!(Tol::gpu_f32().allows(f32::NAN, f32::NAN));
        assert!(!Tol::gpu_bf16().allows(f32::NAN, 1.0));
        assert!(!Tol::gpu_bf16().allows(1.0, f32::NAN));
        assert_eq!(Tol::gpu_f32(), Tol::new(1e-4, 1e-3));
        assert_eq!(Tol::absolute(2.0), Tol::new(2.0, 0.0));
        assert_eq!(Tol::relative(2.0), Tol::new(0.0, 2.0));
    }

    #[test]
    fn check_close_passes_and_reports_first_bad_indices() {
        let want = [1.0f32, 2.0, 3.0, 4.0];
        assert!(check_close(&[1.00005, 2.0, 3.0, 4.001], &want, Tol::gpu_f32(), "ok").is_ok());
        let err =
            check_close(&[1.0, 2.5, 3.0, f32::NAN], &want, Tol::gpu_f32(), "layer 3").unwrap_err();
        assert!(
            err.starts_with("layer 3: 2 of 4 values outside tolerance"),
            "{err}"
        );
        assert!(
            err.contains("[1] got 2.5e0, want 2e0, abs err 5e-1, rel err 2.5e-1"),
            "{err}"
        );
        assert!(err.contains("[3] got NaN, want 4e0"), "{err}");
        assert!(err.contains("max abs err NaN at [3]"), "{err}");
        assert!(!err.contains("[0]") && !err.contains("[2]"), "{err}");
        let err = check_close(&[1.0], &want, Tol::gpu_f32(), "short").unwrap_err();
        assert_eq!(err, "short: length 1 but expected 4");
    }

    #[test]
    fn report_is_capped() {
        let want = vec![0.0f32; 20];
        let got = vec![1.0f32; 20];
        let err = check_close(&got, &want, Tol::gpu_f32(), "x").unwrap_err();
        assert!(err.contains("20 of 20"), "{err}");
        assert_eq!(err.matches("\n  [").count(), REPORTED);
        assert!(err.ends_with("… and 12 more"), "{err}");
        assert!(err.contains("rel err inf"), "{err}");
    }

    #[test]
    #[should_panic(expected = "logits: 1 of 2 values outside tolerance")]
    fn assert_close_panics_with_the_report() {
        assert_close(&[1.0, 2.0], &[1.0, 3.0], Tol::gpu_f32(), "logits");
    }

    #[test]
    fn nmse_known_values() {
        assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        // Σd² = 1, Σw² = 5.
        assert!((nmse(&[1.0, 3.0], &[1.0, 2.0]) - 0.2).abs() < 1e-12);
        assert_eq!(nmse(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert_eq!(nmse(&[1.0, 0.0], &[0.0, 0.0]), f64::INFINITY);
        assert!(nmse(&[f32::NAN], &[1.0]).is_nan());
        assert_eq!(nmse(&[], &[]), 0.0);
    }
}
