//! The bundled model: the tiny random-weight `dense-bf16-text` fixture, embedded
//! in the binary so `qwgpu generate` works anywhere without a download.
//!
//! The engine, the tokenizer and the chat template read a model *folder*, so
//! the files are written to a private per-user cache folder: created `0700`,
//! named after the version and a hash of the contents, refused when another
//! user owns it or can write to it, and every file compared byte for byte with
//! the embedded copy on each use (a file of the same size but other bytes is
//! rewritten, never loaded).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

macro_rules! fixture_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../../tests/fixtures/dense-bf16-text/", $name)).as_slice(),
        )
    };
}

const FILES: &[(&str, &[u8])] = &[
    fixture_file!("config.json"),
    fixture_file!("generation_config.json"),
    fixture_file!("model.safetensors"),
    fixture_file!("tokenizer.json"),
    fixture_file!("tokenizer_config.json"),
];

/// Name shown to the user.
pub const NAME: &str = "dense-bf16-text (tiny random-weight Qwen3.5 test model)";

/// The notice printed when no `--model` is given.
pub fn notice() -> String {
    format!(
        "qwgpu: no --model given: running the bundled {NAME} — its weights are random, so the text is gibberish by design"
    )
}

/// `model`, or (with [`notice`] on stderr) the bundled model's folder when
/// no `--model` was given: `generate`, `chat`, `score` and `serve` all work
/// out of the box.
pub fn model_or_bundled(model: Option<&Path>) -> Result<PathBuf> {
    match model {
        Some(dir) => Ok(dir.to_path_buf()),
        None => {
            eprintln!("{}", notice());
            materialize()
        }
    }
}

/// Writes the bundled files to the private cache folder (verifying any copy
/// already there) and returns the folder.
pub fn materialize() -> Result<PathBuf> {
    materialize_in(&cache_root()?)
}

/// `QWGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/qwgpu`, else `~/.cache/qwgpu`
/// (where the pipeline cache lives too).
fn cache_root() -> Result<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("QWGPU_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return Ok(dir.join("qwgpu"));
    }
    match env("HOME") {
        Some(home) => Ok(home.join(".cache").join("qwgpu")),
        None => bail!(
            "no cache folder for the bundled model: set QWGPU_CACHE_DIR (or HOME / XDG_CACHE_HOME), or pass --model"
        ),
    }
}

/// FNV-1a over names and contents: names the folder after what it holds (a
/// version tag, not a security check: the files are compared in full).
fn content_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for &b in name.as_bytes().iter().chain([0u8].iter()).chain(*bytes) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The bundled folder under `root`, created or verified.
pub fn materialize_in(root: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let (version, hash) = (env!("CARGO_PKG_VERSION"), content_hash());
    let dir = root.join(format!("bundled-{version}-{hash:016x}"));
    private_dir(&dir)?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        if same_contents(&path, bytes) {
            continue;
        }
        // Write then rename, so a concurrent run never sees a half-written file.
        let pid = std::process::id();
        let tmp = dir.join(format!(".{name}.{pid}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = new_private_file(&tmp)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        if !same_contents(&path, bytes) {
            bail!("{}: contents changed while being written", path.display());
        }
    }
    Ok(dir)
}

/// True when `path` is a regular file (not a link) holding exactly `bytes`.
fn same_contents(path: &Path, bytes: &[u8]) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == bytes.len() as u64 => {
            std::fs::read(path).is_ok_and(|b| b == bytes)
        }
        _ => false,
    }
}

#[cfg(unix)]
fn new_private_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(not(unix))]
fn new_private_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Creates `dir` with mode 0700, or checks that the existing one is a real
/// directory (not a link) owned by this user and closed to everyone else.
#[cfg(unix)]
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{}: the bundled model's cache folder is not a directory (a link or a file); remove it",
            dir.display()
        );
    }
    if meta.uid() != own_uid(dir)? {
        bail!(
            "{}: the bundled model's cache folder belongs to another user; remove it or set QWGPU_CACHE_DIR",
            dir.display()
        );
    }
    if meta.mode() & 0o077 != 0 {
        let (shown, mode) = (dir.display(), meta.mode() & 0o777);
        bail!(
            "{shown}: the bundled model's cache folder is open to other users (mode {mode:o}, expected 700); remove it"
        );
    }
    Ok(())
}

/// This process's user id, as the owner of a file it creates (no libc needed).
#[cfg(unix)]
fn own_uid(near: &Path) -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let parent = near.parent().unwrap_or(near);
    let probe = parent.join(format!(".qwgpu-uid-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    let f = new_private_file(&probe)?;
    let uid = f.metadata().map(|m| m.uid());
    drop(f);
    let _ = std::fs::remove_file(&probe);
    uid.with_context(|| format!("{}", probe.display()))
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let pid = std::process::id();
        let p = std::env::temp_dir().join(format!("qwgpu-bundled-test-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn extracts_privately_and_repairs_tampered_files() {
        let root = scratch("tamper");
        let dir = materialize_in(&root).expect("first use");
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Same size, other bytes: rewritten on the next use, never loaded.
        let weights = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&weights).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 0xFF;
        std::fs::write(&weights, &bytes).expect("tamper");
        assert_eq!(materialize_in(&root).expect("second use"), dir);
        assert!(same_contents(&weights, FILES[2].1));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn refuses_a_folder_open_to_others_or_a_link() {
        let root = scratch("open");
        let dir = materialize_in(&root).expect("first use");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = materialize_in(&root).expect_err("world-writable");
        assert!(e.to_string().contains("open to other users"), "{e}");
        std::fs::remove_dir_all(&dir).expect("rm");
        std::os::unix::fs::symlink(&root, &dir).expect("symlink");
        let e = materialize_in(&root).expect_err("link");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
