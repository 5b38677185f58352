//! Loading a model folder for a command: the `--backend` and `--precision`
//! flags, the engine's load options, and the upload with a progress bar in
//! bytes. Shared by `generate`, `chat`, `score`, `bench` and `serve`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use qwgpu_model::engine::{self, ContextOptions, LoadOptions, Model};
use qwgpu_model::MatmulPrecision;

/// Where the forward pass runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// The best GPU adapter; the CPU reference only when there is none.
    Auto,
    /// A GPU adapter (lavapipe counts, reported as software).
    Gpu,
    /// The f32 CPU reference implementation (exact, slow).
    Cpu,
}

impl From<Backend> for engine::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => engine::Backend::Auto,
            Backend::Gpu => engine::Backend::Gpu,
            Backend::Cpu => engine::Backend::Cpu,
        }
    }
}

/// How the prefill GEMMs (more than 16 tokens per step) round activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// Results as the f32 GEMM's.
    Exact,
    /// Each token's activations scaled by a power of two and rounded to f16
    /// (f32 sums): faster on tensor cores, logits move slightly.
    Fast,
}

impl From<MatmulPrecision> for Precision {
    fn from(p: MatmulPrecision) -> Self {
        match p {
            MatmulPrecision::Exact => Precision::Exact,
            MatmulPrecision::Fast => Precision::Fast,
        }
    }
}

impl From<Precision> for MatmulPrecision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Exact => MatmulPrecision::Exact,
            Precision::Fast => MatmulPrecision::Fast,
        }
    }
}

/// `--precision exact|fast`, flattened into every command that loads a model.
#[derive(Args, Clone, Copy, Debug)]
pub struct PrecisionFlag {
    /// Rounding of activations in prefill GEMMs: `exact` (as f32) or `fast`
    /// (f16 after a per-token power-of-two scale). The default is
    /// `qwgpu_model::DEFAULT_PRECISION`, chosen by measured divergence (`cargo xtask matrix`).
    #[arg(long, value_enum, default_value_t = Precision::from(qwgpu_model::DEFAULT_PRECISION))]
    pub precision: Precision,
}

impl PrecisionFlag {
    /// `opts` with this precision for its GPU context.
    pub(crate) fn apply(self, mut opts: LoadOptions) -> LoadOptions {
        opts.gpu.precision = self.precision.into();
        opts
    }
}

/// The engine's load options from the command line's.
pub(crate) fn load_options(
    backend: Backend,
    adapter: Option<String>,
    strict: bool,
    max_chunk: usize,
) -> LoadOptions {
    LoadOptions {
        backend: backend.into(),
        gpu: ContextOptions {
            adapter,
            ..Default::default()
        },
        strict,
        max_chunk,
        ..Default::default()
    }
}

/// Opens the checkpoint's headers first (a bad shard fails before the upload
/// starts), loads it with a progress bar, and says where it landed and how
/// long it took (counted from `started`, so the checks before count too).
pub(crate) fn load_and_report(dir: &Path, opts: &LoadOptions, started: Instant) -> Result<Model> {
    qwgpu_checkpoint::Checkpoint::open_with(
        dir,
        &qwgpu_checkpoint::OpenOptions {
            strict: opts.strict,
        },
    )
    .with_context(|| format!("loading {}", dir.display()))?;
    let model = load_model(dir, opts).with_context(|| format!("loading {}", dir.display()))?;
    eprintln!(
        "{}",
        loaded_line(dir, &model.backend_name(), started.elapsed().as_secs_f64())
    );
    Ok(model)
}

/// `qwgpu: loaded <dir> on <backend> in <seconds> s`.
fn loaded_line(dir: &Path, backend: &str, seconds: f64) -> String {
    let dir = dir.display();
    format!("qwgpu: loaded {dir} on {backend} in {seconds:.2} s")
}

/// Loads the checkpoint on the chosen backend with a progress bar in bytes.
pub(crate) fn load_model(dir: &Path, opts: &LoadOptions) -> Result<Model> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let model = Model::load_with_progress(dir, opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_flag_sets_the_gpu_context_option() {
        for (flag, want) in [
            (Precision::Exact, MatmulPrecision::Exact),
            (Precision::Fast, MatmulPrecision::Fast),
        ] {
            let opts = PrecisionFlag { precision: flag }.apply(LoadOptions::default());
            assert_eq!(opts.gpu.precision, want);
            assert_eq!(Precision::from(want), flag);
        }
    }

    #[test]
    fn the_loaded_line() {
        assert_eq!(
            super::loaded_line(
                std::path::Path::new("/m/Qwen3.5-0.8B"),
                "cpu reference",
                1.234
            ),
            "qwgpu: loaded /m/Qwen3.5-0.8B on cpu reference in 1.23 s"
        );
    }
}
