//! Memory-mapping one safetensors file and validating its header.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::header::{parse_header, Header};
use crate::CheckpointError;

/// One mapped shard and its validated header.
pub(crate) struct Shard {
    pub path: PathBuf,
    pub map: Mmap,
    pub header: Header,
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        // Type first, from metadata: opening a FIFO would block, and a device
        // would be read (or mapped) without end.
        crate::files::regular_file_len(path)?;
        let file = File::open(path).map_err(|e| io(path, e))?;
        let meta = file.metadata().map_err(|e| io(path, e))?;
        if !meta.is_file() {
            // Replaced between the check and the open.
            return Err(CheckpointError::NotAFile {
                path: path.to_path_buf(),
                kind: crate::files::kind_of(&meta.file_type()).to_string(),
                expected: "a regular file".into(),
            });
        }
        let len = meta.len();
        if len < 8 {
            // Too small to map usefully (and zero-length maps are platform-specific):
            // read it and let the header parser produce the error.
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(&file, 8), &mut bytes)
                .map_err(|e| io(path, e))?;
            parse_header(&bytes, path)?;
            return Err(CheckpointError::Header {
                file: path.to_path_buf(),
                detail: format!("file is {len} bytes, shorter than the 8-byte header length"),
            });
        }
        // SAFETY: the map is read-only and the file is opened read-only. Another
        // process truncating or rewriting the file while it is mapped would change
        // (or fault on) the bytes we read; model folders are treated as immutable
        // for the lifetime of a `Checkpoint`, as every mmap-based loader does.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))?;
        let header = parse_header(&map, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            header,
        })
    }

    /// The bytes of a validated range, if in bounds.
    pub fn bytes(&self, start: usize, end: usize) -> Option<&[u8]> {
        self.map.get(start..end)
    }

    /// Byte offset of `bytes` in this map, if it lies inside it.
    fn offset_of(&self, bytes: &[u8]) -> Option<usize> {
        let base = self.map.as_ptr() as usize;
        let start = (bytes.as_ptr() as usize).checked_sub(base)?;
        (start + bytes.len() <= self.map.len()).then_some(start)
    }

    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.offset_of(bytes).is_some()
    }

    /// Populates the page tables for `bytes` (see `Checkpoint::prefetch`).
    pub fn prefetch(&self, bytes: &[u8]) {
        #[cfg(target_os = "linux")]
        if let Some(start) = self.offset_of(bytes) {
            if !bytes.is_empty() {
                // A hint: EINVAL before Linux 5.14, nothing to report.
                let _ = self
                    .map
                    .advise_range(memmap2::Advice::PopulateRead, start, bytes.len());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
    }
}
