//! `cargo xtask <command>`: the project's automation, in Rust.
//!
//! - `ci`: format check, clippy (-D warnings), all tests, then the fixture matrix table.
//! - `fixtures`: regenerate the golden fixtures with HF transformers (Python).
//! - `matrix`: only the fixture matrix table.
//! - `bench`: qwgpu against the roofline, llama.cpp and HF on the GPU machine
//!   (benches/README.md).

mod bench;
mod ci;
mod fixtures;
mod manifest;
mod matrix;
mod vulkan;

use anyhow::{bail, Result};

const USAGE: &str =
    "usage: cargo xtask <ci | matrix | fixtures [--python PY] [--only a,b] | bench [--help]>";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
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
