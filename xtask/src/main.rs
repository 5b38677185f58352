//! `cargo xtask <command>`: the project's automation, in Rust.
//!
//! - `ci [--require-hw]`: format check, clippy (-D warnings), all tests, then
//!   the fixture matrix table and the GPU test coverage table.
//! - `coverage DIR`: the coverage table of a `QWGPU_COVERAGE_DIR`.
//! - `gpu-tests`: build, strip and pack every kernel and model GPU test binary
//!   for the GPU machine (`.gpu/tests.tar.xz` with its runner; README).
//! - `fixtures`: regenerate the golden fixtures with HF transformers (Python)
//!   and their `hf_bf16.json` (HF's BF16-vs-F32 divergence; `--bf16-divergence`:
//!   only those).
//! - `matrix`: only the fixture matrix table (golden column at precision
//!   Exact, precision column: Fast against `hf_bf16.json`).
//! - `package`: `cargo package` of the published crates (verified where
//!   cheap), and the check that the GPU-free crates have no wgpu / naga.
//! - `examples`: runs each published crate's example.
//! - `public-api`: rewrites the committed public-API listing
//!   (`xtask/public-api/`), which `ci` diffs against the sources.
//! - `web [--release] [--serve] [--port N]`: the browser build into `web/pkg/`
//!   (and a local server for the demo page with the bundled model).
//! - `bench`: qwgpu against the roofline, llama.cpp and HF on the GPU machine
//!   (benches/README.md).

mod bench;
mod ci;
mod coverage;
mod examples;
mod fixtures;
mod gpu_tests;
mod manifest;
mod matrix;
mod package;
mod precision;
mod public_api;
mod vulkan;
mod web;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <ci [--require-hw] | matrix | fixtures [--python PY] [--only a,b] [--bf16-divergence] | web [--release] [--serve] [--port N] | bench [--help] | coverage DIR | gpu-tests [--help] | package | examples | public-api>";

/// Whether `args` (after the subcommand) ask for help: `-h` / `--help`.
/// (`bench` parses its own, where an option's value may read `--help`.)
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ci" | "matrix" | "coverage") if wants_help(rest) => {
            println!("{USAGE}");
            Ok(())
        }
        Some("matrix") if !rest.is_empty() => {
            let got = rest.join(" ");
            bail!("`matrix` takes no arguments, got `{got}`\n{USAGE}")
        }
        Some("ci") => ci::run(rest),
        Some("coverage") => coverage::run(rest),
        Some("gpu-tests") => gpu_tests::run(rest),
        Some("matrix") => matrix::run().map(|_| ()),
        Some("fixtures") if wants_help(rest) => {
            println!("{}", fixtures::USAGE);
            Ok(())
        }
        Some("fixtures") => fixtures::run(rest),
        Some("bench") => bench::run(rest),
        Some("package") => package::run(rest),
        Some("examples") => examples::run(rest),
        Some("public-api") => public_api::run(rest),
        Some("web") => web::run(rest),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
