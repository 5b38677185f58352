//! Filesystem-free entry points for the cargo-fuzz target and robustness tests.
//! Each parses arbitrary bytes and must return (never panic), whatever the input.

use std::path::Path;

/// Parses `bytes` as a whole safetensors file.
pub fn parse_header(bytes: &[u8]) -> bool {
    crate::header::parse_header(bytes, Path::new("<fuzz>.safetensors")).is_ok()
}

/// Parses `bytes` as `model.safetensors.index.json`.
pub fn parse_index(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => crate::index::parse_index(text, Path::new("<fuzz>.index.json")).is_ok(),
        Err(_) => false,
    }
}

/// Parses `bytes` as `config.json`.
pub fn parse_config(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            crate::ModelConfig::from_json_str(text, Path::new("<fuzz>/config.json")).is_ok()
        }
        Err(_) => false,
    }
}

/// Runs all three parsers on the same bytes.
pub fn fuzz_parse(bytes: &[u8]) {
    parse_header(bytes);
    parse_index(bytes);
    parse_config(bytes);
}
