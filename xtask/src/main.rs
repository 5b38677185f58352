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

/// Whether `args` (after the subcommand) ask for help: `-h` / `--help`.
/// (`bench` parses its own, where an option's value may read `--help`.)
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ci" | "matrix") if wants_help(rest) => {
            println!("{USAGE}");
            Ok(())
        }
        Some(cmd @ ("ci" | "matrix")) if !rest.is_empty() => {
            let got = rest.join(" ");
            bail!("`{cmd}` takes no arguments, got `{got}`\n{USAGE}")
        }
        Some("ci") => ci::run(),
        Some("matrix") => matrix::run().map(|_| ()),
        Some("fixtures") if wants_help(rest) => {
            println!("{}", fixtures::USAGE);
            Ok(())
        }
        Some("fixtures") => fixtures::run(rest),
        Some("bench") => bench::run(rest),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
