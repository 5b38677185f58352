//! `cargo xtask <command>`: the project's automation, in Rust.
//!
//! - `ci [--require-hw]`: format check, clippy (-D warnings), all tests, then
//!   the fixture matrix table and the GPU test coverage table.
//! - `coverage DIR`: the coverage table of a `QWGPU_COVERAGE_DIR`.
//! - `gpu-tests`: build, strip and pack every kernel and model GPU test binary
//!   for the GPU machine (`.gpu/tests.tar.xz` with its runner; README).
//! - `fixtures`: regenerate the golden fixtures with HF transformers (Python).
//! - `matrix`: only the fixture matrix table.
//! - `bench`: qwgpu against the roofline, llama.cpp and HF on the GPU machine
//!   (benches/README.md).

mod bench;
mod ci;
mod coverage;
mod fixtures;
mod gpu_tests;
mod manifest;
mod matrix;
mod vulkan;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <ci [--require-hw] | matrix | fixtures [--python PY] [--only a,b] | bench [--help] | coverage DIR | gpu-tests [--help]>";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("coverage") => coverage::run(&args[1..]),
        Some("gpu-tests") => gpu_tests::run(&args[1..]),
        Some("matrix") => matrix::run().map(|_| ()),
        Some("fixtures") => fixtures::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
