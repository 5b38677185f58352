//! Opening the files of a model folder safely: the file type is checked from
//! metadata before anything is opened (a FIFO would block `open`, `/dev/zero`
//! would read forever), and JSON documents are read with a size cap.

use std::io::Read;
use std::path::Path;

use crate::CheckpointError;

/// Cap on `config.json`, `generation_config.json` and friends (released ones are
/// a few KiB; chat templates inside `tokenizer_config.json` a few hundred KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Cap on `model.safetensors.index.json` (a 10M-entry index is ~1 GB; released
/// ones are < 5 MB).
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// What a non-regular file is, in words.
pub(crate) fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The size of `path` if it is a regular file (symlinks followed, as HF's
/// cache uses them); otherwise an error that says what it is instead. Nothing
/// is opened.
pub fn regular_file_len(path: &Path) -> Result<u64, CheckpointError> {
    let meta = std::fs::metadata(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(CheckpointError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(&meta.file_type()).to_string(),
            expected: "a regular file".into(),
        })
    }
}

/// True when something (of any type) exists at `path`.
pub(crate) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Reads a small text file: a regular file of at most `max_bytes`, valid UTF-8.
pub fn read_text_file(path: &Path, max_bytes: u64) -> Result<String, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = regular_file_len(path)?;
    let too_large = |size| CheckpointError::FileTooLarge {
        path: path.to_path_buf(),
        size,
        max: max_bytes,
    };
    if len > max_bytes {
        return Err(too_large(len));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // The file may grow between the check and the read: never read past the cap.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

/// Parses a JSON document; errors name the file and the line and column. A
/// leading byte-order mark is refused as HF's `json.loads` refuses it.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, CheckpointError> {
    if text.starts_with('\u{feff}') {
        return Err(CheckpointError::Json {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            detail: "starts with a UTF-8 byte-order mark (BOM); save the file without one \
                     (Hugging Face transformers refuses it too)"
                .into(),
        });
    }
    serde_json::from_str(text).map_err(|e| json_error(&e, path))
}

/// A serde_json error as [`CheckpointError::Json`], the position split out.
pub(crate) fn json_error(e: &serde_json::Error, path: &Path) -> CheckpointError {
    let full = e.to_string();
    let suffix = format!(
        " at line {e_line} column {e_column}",
        e_line = e.line(),
        e_column = e.column()
    );
    let detail = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    CheckpointError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_carry_line_and_column() {
        let e = parse_json::<serde_json::Value>("{\n  \"a\": 1,\n  \"b\": }", Path::new("c.json"))
            .expect_err("invalid");
        let msg = e.to_string();
        assert!(
            msg.contains("c.json") && msg.contains("line 3, column"),
            "{msg}"
        );
        let e =
            parse_json::<serde_json::Value>("\u{feff}{}", Path::new("c.json")).expect_err("bom");
        assert!(e.to_string().contains("byte-order mark"), "{e}");
    }

    #[test]
    fn text_files_must_be_utf8() {
        let path = std::env::temp_dir().join(format!("qwgpu-files-utf8-{}", std::process::id()));
        std::fs::write(&path, b"{\"a\": \"\xff\"}").expect("write");
        let e = read_text_file(&path, 1024).expect_err("not UTF-8");
        let _ = std::fs::remove_file(&path);
        assert!(
            e.to_string()
                .contains("not UTF-8 text (invalid byte at offset 7)"),
            "{e}"
        );
    }
}
