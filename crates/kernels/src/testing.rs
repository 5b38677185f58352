//! Test harness for GPU kernels (feature `testing`, for this workspace's tests;
//! not part of the public API).
//!
//! **Variants.** Every kernel test runs on one shared context per variant
//! ([`Variant`]): `full` (every feature the adapter has, checked shader
//! modules: indices clamped, workgroup memory zero-initialised), `trusted`
//! (the same features, modules built as release builds them: no runtime
//! checks, workgroup memory not zeroed — what ships) and `fallback` (no
//! subgroups, no f16, WebGPU's default limits, checked). `QWGPU_TEST_VARIANTS`
//! selects some of them (`full`, `trusted`, `fallback` or a comma list); an
//! unknown name is an error, not an empty run.
//!
//! **Requirements and coverage.** A test names the [`Feature`]s it needs
//! ([`contexts_with`], [`TestContext::has`], [`require`]), like wgpu's
//! `TestParameters`: it runs on every context that has them and is *recorded*
//! as skipped on the others. With `QWGPU_COVERAGE_DIR` set, every (test,
//! context, ran | skipped for feature X) is appended as one JSON line, with the
//! adapter, whether it is a CPU adapter and its features, to
//! `$QWGPU_COVERAGE_DIR/<binary>-<pid>.jsonl` (one file per process, so
//! parallel test binaries never share a file); `cargo xtask ci` and `cargo
//! xtask gpu-tests` print the table. Tests of other crates that run a whole
//! model or server record themselves against the model's device
//! ([`require`]); tests that need a file rather than a device record through
//! [`record_host`] (e.g. a skip "template file missing").
//!
//! **Hardware adapters.** On an adapter that is not a CPU one, or with
//! `QWGPU_REQUIRE_HW=1` (`--require-hw`), a missing subgroup, f16 or
//! cooperative-matrix feature fails the test instead of skipping it (unless
//! the variant turned the feature off on purpose: `fallback`).
//! `QWGPU_REQUIRE_HW=0` turns that off on a hardware adapter.

pub mod cases;

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

use crate::{ContextOptions, GpuContext};

/// A column of the test matrix: how the shared test context is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Every feature of the adapter, checked modules.
    Full,
    /// Every feature, trusted modules without zeroed workgroup memory (release's).
    Trusted,
    /// No subgroups, no f16, WebGPU's default limits, checked modules.
    Fallback,
}

impl Variant {
    /// Every variant, in the order tests run them.
    pub const ALL: [Variant; 3] = [Variant::Full, Variant::Trusted, Variant::Fallback];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::Trusted => "trusted",
            Variant::Fallback => "fallback",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name.trim())
    }

    /// The options this variant opens its context with.
    pub fn options(self) -> ContextOptions {
        match self {
            Variant::Full => ContextOptions {
                runtime_checks: Some(true),
                ..Default::default()
            },
            Variant::Trusted => ContextOptions {
                runtime_checks: Some(false),
                ..Default::default()
            },
            Variant::Fallback => ContextOptions {
                disable_subgroups: true,
                disable_f16: true,
                webgpu_limits: true,
                runtime_checks: Some(true),
                ..Default::default()
            },
        }
    }

    /// Whether this variant turns `f` off on purpose (its absence is then
    /// the point of the column, never a failure).
    pub fn disables(self, f: Feature) -> bool {
        self == Variant::Fallback
            && matches!(
                f,
                Feature::Subgroups
                    | Feature::F16
                    | Feature::CooperativeMatrix
                    | Feature::Immediates
            )
    }
}

/// The variants `QWGPU_TEST_VARIANTS` selects (all when unset or empty).
/// Panics on an unknown name: a typo must not run nothing and pass.
pub fn variants() -> Vec<Variant> {
    parse_variants(&std::env::var("QWGPU_TEST_VARIANTS").unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `full,trusted` → those variants; empty → all of them.
pub fn parse_variants(list: &str) -> Result<Vec<Variant>, String> {
    if list.trim().is_empty() {
        return Ok(Variant::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in list.split(',').filter(|s| !s.trim().is_empty()) {
        let v = Variant::parse(name).ok_or_else(|| {
            format!(
                "QWGPU_TEST_VARIANTS: unknown variant `{}`, expected a comma list of full, trusted, fallback",
                name.trim()
            )
        })?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// An optional device feature a test can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Subgroups,
    F16,
    /// Cooperative matrices (with f16 and subgroups, which their kernels use).
    CooperativeMatrix,
    Timestamps,
    Immediates,
    PipelineCache,
}

impl Feature {
    pub const ALL: [Feature; 6] = [
        Feature::Subgroups,
        Feature::F16,
        Feature::CooperativeMatrix,
        Feature::Timestamps,
        Feature::Immediates,
        Feature::PipelineCache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Subgroups => "subgroups",
            Feature::F16 => "f16",
            Feature::CooperativeMatrix => "cooperative_matrix",
            Feature::Timestamps => "timestamps",
            Feature::Immediates => "immediates",
            Feature::PipelineCache => "pipeline_cache",
        }
    }

    /// Whether the opened device has it.
    pub fn present(self, ctx: &GpuContext) -> bool {
        let c = &ctx.caps;
        match self {
            Feature::Subgroups => c.subgroups,
            Feature::F16 => c.f16,
            Feature::CooperativeMatrix => c.cooperative_matrix && c.f16 && c.subgroups,
            Feature::Timestamps => c.timestamps,
            Feature::Immediates => c.immediates,
            Feature::PipelineCache => c.pipeline_cache,
        }
    }

    /// Features every hardware adapter the project targets has: missing on
    /// one, the test fails instead of skipping.
    pub fn required_on_hardware(self) -> bool {
        matches!(
            self,
            Feature::Subgroups | Feature::F16 | Feature::CooperativeMatrix
        )
    }
}

/// The names of the features `ctx` has.
pub fn feature_names(ctx: &GpuContext) -> Vec<&'static str> {
    Feature::ALL
        .into_iter()
        .filter(|f| f.present(ctx))
        .map(Feature::name)
        .collect()
}

/// Whether missing hardware features fail tests on `ctx`: `QWGPU_REQUIRE_HW`
/// (`1` / `0`) when set, else whether the adapter is not a CPU one.
pub fn require_hw(ctx: &GpuContext) -> bool {
    match std::env::var("QWGPU_REQUIRE_HW")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        _ => !ctx.software,
    }
}

/// A named context for tests: `[Vulkan/llvmpipe full]`.
pub struct TestContext {
    pub name: String,
    pub variant: Variant,
    pub ctx: GpuContext,
}

impl TestContext {
    /// The first of `needs` this context lacks, if any.
    pub fn missing(&self, needs: &[Feature]) -> Option<Feature> {
        needs.iter().copied().find(|f| !f.present(&self.ctx))
    }

    /// Whether this context has every one of `needs`; records the outcome for
    /// the calling test (ran, or skipped for the missing feature) and panics
    /// where a missing feature is a failure (see the module doc).
    pub fn has(&self, needs: &[Feature]) -> bool {
        check(self.variant.name(), self.variant, &self.ctx, needs)
    }

    /// Records that the calling test could not run on this context because a
    /// device limit is too low for the kernel (`what`). Fails the test on a
    /// hardware adapter (see [`require_hw`]) unless the variant lowers the
    /// limits on purpose (`fallback`: WebGPU's defaults).
    pub fn skip_for_limit(&self, what: &str) {
        let on_purpose = self.variant == Variant::Fallback;
        let missing = format!("limit: {what}");
        if !on_purpose && require_hw(&self.ctx) {
            record(
                self.variant.name(),
                &self.ctx,
                Outcome::Failed { missing: &missing },
            );
            panic!(
                "{name}: the test needs {what}, beyond this hardware adapter's limits \
                 (QWGPU_REQUIRE_HW=0 to skip instead)",
                name = self.name
            );
        }
        record(
            self.variant.name(),
            &self.ctx,
            Outcome::Skipped {
                missing: &missing,
                on_purpose,
            },
        );
    }
}

static CONTEXTS: [OnceLock<Result<TestContext, String>>; 3] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The shared context of `variant`. Panics (failing the test) when no adapter
/// exists: CI installs lavapipe, so a missing adapter is a setup error.
pub fn context(variant: Variant) -> &'static TestContext {
    let slot = &CONTEXTS[Variant::ALL.iter().position(|v| *v == variant).unwrap_or(0)];
    slot.get_or_init(|| {
        let ctx = GpuContext::new(&variant.options()).map_err(|e| e.to_string())?;
        Ok(TestContext {
            name: format!(
                "[{ctx_info_backend:?}/{ctx_info_name} {variant_name}]",
                ctx_info_backend = ctx.info.backend,
                ctx_info_name = ctx.info.name,
                variant_name = variant.name()
            ),
            variant,
            ctx,
        })
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("no GPU context: {e}"))
}

/// The contexts of every selected variant (each recorded as run for the
/// calling test).
pub fn contexts() -> Vec<&'static TestContext> {
    contexts_with(&[])
}

/// The contexts of the selected variants that have every one of `needs`; the
/// others are recorded as skipped for the missing feature (or fail the test,
/// see the module doc).
pub fn contexts_with(needs: &[Feature]) -> Vec<&'static TestContext> {
    variants()
        .into_iter()
        .map(context)
        .filter(|t| t.has(needs))
        .collect()
}

/// For tests that open a context of their own (`label` names its column):
/// whether `ctx` has every one of `needs`, recorded and enforced as
/// [`TestContext::has`] does.
pub fn require(label: &str, ctx: &GpuContext, needs: &[Feature]) -> bool {
    check(label, Variant::Full, ctx, needs)
}

/// What a test that runs a whole model declares in column `variant` (see
/// [`require_model`]): nothing on a CPU adapter or in the fallback column;
/// on a hardware adapter, the features the project's GPUs have.
pub fn model_needs(variant: Variant, require_hw: bool) -> &'static [Feature] {
    const HARDWARE: &[Feature] = &[Feature::Subgroups, Feature::F16, Feature::CooperativeMatrix];
    if require_hw && variant != Variant::Fallback {
        HARDWARE
    } else {
        &[]
    }
}

/// For tests that run a whole model (or a server) on a device the model
/// opened itself, in column `label` (`full`, `trusted` or `fallback`):
/// records the test against that device and returns whether it runs. A model
/// picks its kernels from what the device has, so on a CPU adapter it runs
/// whatever is missing (the record lists the features it had); on a
/// hardware adapter ([`require_hw`]) the `full` and `trusted` columns need
/// subgroups, f16 and cooperative matrices ([`model_needs`]) and fail
/// without them, so a hardware run exercises the kernels that ship there.
pub fn require_model(label: &str, ctx: &GpuContext) -> bool {
    let variant = Variant::parse(label).unwrap_or(Variant::Full);
    check(label, variant, ctx, model_needs(variant, require_hw(ctx)))
}

/// What a test needing a feature does on a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Skipped and recorded; `on_purpose`: the variant turns the feature off.
    Skip {
        on_purpose: bool,
    },
    /// The feature is missing where it must exist: the test fails.
    Fail,
}

/// The rule of the module doc: a missing feature is a skip, except a
/// hardware-required one on a hardware adapter (`require_hw`) whose variant
/// does not turn it off, which is a failure.
pub fn verdict(variant: Variant, feature: Feature, present: bool, require_hw: bool) -> Verdict {
    let on_purpose = variant.disables(feature);
    if present {
        Verdict::Run
    } else if !on_purpose && feature.required_on_hardware() && require_hw {
        Verdict::Fail
    } else {
        Verdict::Skip { on_purpose }
    }
}

fn check(label: &str, variant: Variant, ctx: &GpuContext, needs: &[Feature]) -> bool {
    let missing = needs.iter().copied().find(|f| !f.present(ctx));
    if let Some(f) = missing {
        let hw = require_hw(ctx);
        let on_purpose = variant.disables(f);
        if verdict(variant, f, false, hw) == Verdict::Fail {
            record(label, ctx, Outcome::Failed { missing: f.name() });
            panic!(
                "{ctx_describe} ({label}): the test needs {f_name} and this hardware adapter lacks it \
                 (QWGPU_REQUIRE_HW=0 to skip instead); adapter features: {feature_names_ctx:?}",
                ctx_describe = ctx.describe(),
                f_name = f.name(),
                feature_names_ctx = feature_names(ctx)
            );
        }
        record(
            label,
            ctx,
            Outcome::Skipped {
                missing: f.name(),
                on_purpose,
            },
        );
        false
    } else {
        record(label, ctx, Outcome::Ran);
        true
    }
}

/// The running test's name (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("(unnamed)")
        .to_string()
}

/// This test binary's name without cargo's hash suffix (`gdn-0123abcd…` → `gdn`).
pub fn binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into());
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    }
}

/// Where coverage records go, if anywhere.
fn coverage_file() -> Option<&'static Mutex<std::fs::File>> {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::var_os("QWGPU_COVERAGE_DIR").filter(|d| !d.is_empty())?;
        let dir = std::path::PathBuf::from(dir);
        let path = dir.join(format!(
            "{binary_name}-{std_process_id}.jsonl",
            binary_name = binary_name(),
            std_process_id = std::process::id()
        ));
        let file = std::fs::create_dir_all(&dir)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .unwrap_or_else(|e| {
                panic!(
                    "QWGPU_COVERAGE_DIR: cannot open {path_display}: {e}",
                    path_display = path.display()
                )
            });
        Some(Mutex::new(file))
    })
    .as_ref()
}

/// What a coverage record says about a test on a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Ran,
    /// Skipped for a missing feature or limit; `on_purpose`: the variant
    /// turns it off.
    Skipped {
        missing: &'a str,
        on_purpose: bool,
    },
    /// Failed because a feature or limit that must exist is missing.
    Failed {
        missing: &'a str,
    },
}

/// Appends one coverage record for the calling test on the context `label`.
/// Each (test, context, outcome) is written once per process; in the table a
/// (test, context) with a failure record counts as failed, else with a skip
/// record as skipped.
pub fn record(label: &str, ctx: &GpuContext, outcome: Outcome<'_>) {
    let device = Device {
        adapter: ctx.info.name.clone(),
        backend: format!("{backend:?}", backend = ctx.info.backend),
        cpu: ctx.software,
        features: feature_names(ctx),
    };
    write_record(label, Some(&device), outcome);
}

/// [`record`] for a test that uses no GPU (its column `label`, e.g. `host`):
/// what it needs is a file or a tool, and the record says whether it ran or
/// was skipped (or failed) for lack of it, so the coverage table shows it.
pub fn record_host(label: &str, outcome: Outcome<'_>) {
    write_record(label, None, outcome);
}

/// What a record says about the device a test ran on.
struct Device {
    adapter: String,
    backend: String,
    cpu: bool,
    features: Vec<&'static str>,
}

fn write_record(label: &str, device: Option<&Device>, outcome: Outcome<'_>) {
    static SEEN: OnceLock<Mutex<HashSet<(String, String, String)>>> = OnceLock::new();
    let Some(file) = coverage_file() else {
        return;
    };
    let test = current_test();
    let key = (test.clone(), label.to_string(), format!("{outcome:?}"));
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !seen.insert(key) {
        return;
    }
    drop(seen);
    let outcome = match outcome {
        Outcome::Ran => r#""outcome":"ran""#.to_string(),
        Outcome::Skipped {
            missing,
            on_purpose,
        } => format!(
            r#""outcome":"skipped","missing":{missing_json},"by_variant":{on_purpose}"#,
            missing_json = json_str(missing)
        ),
        Outcome::Failed { missing } => {
            format!(r#""outcome":"failed","missing":{}"#, json_str(missing))
        }
    };
    // A test without a device has an empty adapter name (the table lists no
    // adapter for it).
    let (adapter, backend, cpu, features) = match device {
        Some(d) => (
            d.adapter.as_str(),
            d.backend.as_str(),
            d.cpu,
            d.features.iter().map(|f| json_str(f)).collect::<Vec<_>>(),
        ),
        None => ("", "", false, Vec::new()),
    };
    let line = format!(
        "{{\"binary\":{binary_json},\"test\":{json_str_test},\"context\":{json_str_label},\"adapter\":{adapter_json},\"backend\":{backend_json},\"cpu\":{cpu},\"features\":[{features_join}],{outcome}}}\n",
        binary_json = json_str(&binary_name()),
        json_str_test = json_str(&test),
        json_str_label = json_str(label),
        adapter_json = json_str(adapter),
        backend_json = json_str(backend),
        features_join = features.join(","),
    );
    // One write per line on an append-only file: lines of parallel tests never interleave.
    let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
    f.write_all(line.as_bytes())
        .unwrap_or_else(|e| panic!("QWGPU_COVERAGE_DIR: write failed: {e}"));
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Seed for a randomised test: `QWGPU_TEST_SEED` when set (decimal or
/// `0x` hex), else `default`; printed either way, so a failure names the seed
/// that replays it.
pub fn seed(default: u64) -> u64 {
    let var = std::env::var("QWGPU_TEST_SEED").ok();
    let seed = parse_seed(var.as_deref(), default).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{current_test}: seed {seed:#x} (QWGPU_TEST_SEED={seed:#x} replays it)",
        current_test = current_test()
    );
    seed
}

/// `QWGPU_TEST_SEED`'s value (decimal or `0x` hex; unset or empty: `default`).
pub fn parse_seed(var: Option<&str>, default: u64) -> Result<u64, String> {
    let Some(s) = var.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("QWGPU_TEST_SEED=`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_lists_parse_and_reject_unknown_names() {
        assert_eq!(parse_variants("").unwrap(), Variant::ALL.to_vec());
        assert_eq!(parse_variants("trusted").unwrap(), vec![Variant::Trusted]);
        assert_eq!(
            parse_variants("fallback, trusted,fallback").unwrap(),
            vec![Variant::Fallback, Variant::Trusted]
        );
        let e = parse_variants("full,fast").unwrap_err();
        assert!(e.contains("`fast`"), "{e}");
    }

    #[test]
    fn trusted_differs_from_full_only_in_runtime_checks() {
        let (full, trusted) = (Variant::Full.options(), Variant::Trusted.options());
        assert_eq!(full.runtime_checks, Some(true));
        assert_eq!(trusted.runtime_checks, Some(false));
        assert_eq!(
            (full.disable_subgroups, full.disable_f16, full.webgpu_limits),
            (
                trusted.disable_subgroups,
                trusted.disable_f16,
                trusted.webgpu_limits
            )
        );
    }

    #[test]
    fn missing_hardware_features_fail_only_where_they_must_exist() {
        use Feature::*;
        for f in [Subgroups, F16, CooperativeMatrix] {
            // A CPU adapter skips; a hardware one fails, unless the fallback
            // column turned the feature off.
            assert_eq!(
                verdict(Variant::Full, f, false, false),
                Verdict::Skip { on_purpose: false }
            );
            assert_eq!(verdict(Variant::Full, f, false, true), Verdict::Fail);
            assert_eq!(verdict(Variant::Trusted, f, false, true), Verdict::Fail);
            assert_eq!(
                verdict(Variant::Fallback, f, false, true),
                Verdict::Skip { on_purpose: true }
            );
            assert_eq!(verdict(Variant::Full, f, true, true), Verdict::Run);
        }
        // Optional features are skips everywhere.
        for f in [Timestamps, PipelineCache] {
            assert_eq!(
                verdict(Variant::Full, f, false, true),
                Verdict::Skip { on_purpose: false }
            );
        }
    }

    #[test]
    fn model_tests_need_the_hardware_features_only_on_hardware() {
        use Feature::*;
        for v in [Variant::Full, Variant::Trusted] {
            assert_eq!(model_needs(v, true), [Subgroups, F16, CooperativeMatrix]);
            assert!(model_needs(v, false).is_empty());
            // What they need, a hardware adapter must have.
            for f in model_needs(v, true) {
                assert_eq!(verdict(v, *f, false, true), Verdict::Fail);
            }
        }
        assert!(model_needs(Variant::Fallback, true).is_empty());
    }

    #[test]
    fn seeds_are_fixed_unless_overridden() {
        assert_eq!(parse_seed(None, 7), Ok(7));
        assert_eq!(parse_seed(Some(" "), 7), Ok(7));
        assert_eq!(parse_seed(Some("42"), 7), Ok(42));
        assert_eq!(parse_seed(Some("0x5eed_4e00"), 7), Ok(0x5eed_4e00));
        assert!(parse_seed(Some("soon"), 7).unwrap_err().contains("`soon`"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
