//! Memory-mapping one safetensors file and validating its header.

use std::fs::File;
use std::path::{Path, PathBuf};

#[cfg(not(target_arch = "wasm32"))]
use memmap2::Mmap;
/// The web has no memory maps (nor files: `File::open` fails there, so this
/// only keeps the type checker whole); a page streams tensors instead.
#[cfg(target_arch = "wasm32")]
type Mmap = Vec<u8>;

use crate::header::{parse_header, Header};
use crate::{CheckpointError, TensorView};

/// One mapped shard and its validated header.
pub(crate) struct Shard {
    pub path: PathBuf,
    /// The file the map was made from, kept open for positioned reads
    /// ([`Shard::read_at`]).
    file: File,
    pub map: Mmap,
    pub header: Header,
}

/// One positioned read (no shared file cursor, so threads may read at once).
fn pread(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(file, buf, offset);
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(file, buf, offset);
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::ErrorKind::Unsupported.into())
    }
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
        #[cfg(not(target_arch = "wasm32"))]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io(path, e))?;
        #[cfg(target_arch = "wasm32")]
        let map = std::fs::read(path).map_err(|e| io(path, e))?;
        let header = parse_header(&map, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
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

    /// Reads `dst.len()` bytes of `t` (a tensor of this shard) from byte `at`
    /// of its data into `dst`, with positioned reads of the file rather than
    /// through the map: a file truncated after it was mapped is then a short
    /// read (a typed error) instead of a `SIGBUS` on touching the missing
    /// pages, and the kernel copies straight from the page cache without
    /// faulting each page into this process.
    pub fn read_at(
        &self,
        t: &TensorView<'_>,
        at: usize,
        dst: &mut [u8],
    ) -> Result<(), CheckpointError> {
        let len = dst.len();
        let fail = |offset: u64, detail: String| CheckpointError::TensorRead {
            file: self.path.clone(),
            tensor: t.name.to_string(),
            offset,
            len,
            detail,
        };
        let Some(start) = self.offset_of(t.bytes) else {
            return Err(fail(
                0,
                "the tensor's bytes are not from this file's map".into(),
            ));
        };
        if at
            .checked_add(dst.len())
            .is_none_or(|end| end > t.bytes.len())
        {
            let have = t.bytes.len();
            return Err(fail(
                (start + at) as u64,
                format!("{len} bytes from byte {at} run past the tensor's {have}"),
            ));
        }
        let offset = (start + at) as u64;
        let mut done = 0;
        while done < dst.len() {
            match pread(&self.file, &mut dst[done..], offset + done as u64) {
                Ok(0) => {
                    let end = offset + done as u64;
                    return Err(fail(
                        offset,
                        format!("the file ends at byte {end} (truncated after it was opened?)"),
                    ));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(offset, e.to_string())),
            }
        }
        Ok(())
    }

    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.offset_of(bytes).is_some()
    }

    /// Starts reading `bytes` into the page cache (see `Checkpoint::will_need`).
    pub fn will_need(&self, bytes: &[u8]) {
        #[cfg(unix)]
        if let Some(start) = self.offset_of(bytes) {
            if !bytes.is_empty() {
                // A hint: nothing to report when the kernel declines it.
                let _ = self
                    .map
                    .advise_range(memmap2::Advice::WillNeed, start, bytes.len());
            }
        }
        #[cfg(not(unix))]
        let _ = bytes;
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
