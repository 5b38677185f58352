//! The driver's compiled pipelines kept on disk between runs (Vulkan
//! `PIPELINE_CACHE`): a second start skips most shader compilation.
//!
//! Location: `QWGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/qwgpu`, else
//! `$HOME/.cache/qwgpu`; one file per adapter (wgpu's `pipeline_cache_key`).
//! A corrupt or foreign file is ignored by the driver (`fallback: true`).

use std::path::PathBuf;

/// Where the pipeline cache lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PipelineCacheMode {
    /// The default folder (see the module docs), where the adapter supports it.
    #[default]
    Default,
    /// No on-disk cache.
    Off,
    /// This folder.
    Dir(PathBuf),
}

pub(crate) struct DiskCache {
    pub cache: wgpu::PipelineCache,
    pub path: PathBuf,
}

fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("QWGPU_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("qwgpu"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("qwgpu"))
}

/// Opens (or starts) the adapter's cache file; `None` when off or unsupported.
pub(crate) fn open(
    device: &wgpu::Device,
    info: &wgpu::AdapterInfo,
    supported: bool,
    mode: &PipelineCacheMode,
) -> Option<DiskCache> {
    if !supported {
        return None;
    }
    let dir = match mode {
        PipelineCacheMode::Off => return None,
        PipelineCacheMode::Default => default_dir()?,
        PipelineCacheMode::Dir(d) => d.clone(),
    };
    let path = dir.join(wgpu::util::pipeline_cache_key(info)?);
    let data = std::fs::read(&path).ok();
    // SAFETY: the data was written by `get_data` of a cache for this adapter key,
    // and `fallback` makes the driver discard anything it does not accept.
    let cache = unsafe {
        device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
            label: Some("qwgpu pipeline cache"),
            data: data.as_deref(),
            fallback: true,
        })
    };
    tracing::debug!(path = %path.display(), bytes = data.map_or(0, |d| d.len()), "pipeline cache");
    Some(DiskCache { cache, path })
}

impl DiskCache {
    /// Writes the cache (atomically: temp file + rename). Failures are logged only.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self
                .path
                .with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %self.path.display(), "could not save the pipeline cache: {e}");
        }
    }
}
