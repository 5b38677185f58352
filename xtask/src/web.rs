//! The browser build and its tests.
//!
//! - `cargo xtask web [--release]`: builds `qwgpu-web` for
//!   `wasm32-unknown-unknown` and runs `wasm-bindgen` on it into `web/pkg/`
//!   (git-ignored), printing the bundle's size.
//! - `cargo xtask web --serve [--port N]`: the same, then serves `web/` on
//!   127.0.0.1 with the bundled model (the `dense-bf16-text` fixture) under
//!   `/model/`, answering HTTP range requests as a model host does.
//! - `cargo xtask web --test-page`: the same, then the demo page in headless
//!   Chromium chatting once (as `cargo xtask ci` does).
//! - [`browser_tests`] (from `cargo xtask ci`): the `qwgpu-web` tests in
//!   headless Chromium through `wasm-bindgen-test-runner` and chromedriver;
//!   when a tool is missing they are skipped with a loud
//!   `browser tests SKIPPED: <reason>` line and the native tests still gate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

mod page;
mod serve;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
const USAGE: &str = "usage: cargo xtask web [--release] [--serve] [--port N] [--model DIR] [--no-build] [--test-page] [--browser-tests]";
/// The Chromium switches that give a page WebGPU where it is not on by
/// default (Linux; SwiftShader when no GPU is reachable).
pub const CHROMIUM_FLAGS: &str = "--enable-unsafe-webgpu --enable-features=Vulkan";

/// The tools the browser steps need, found.
pub struct Tools {
    pub wasm_bindgen: PathBuf,
    pub test_runner: PathBuf,
    pub chromedriver: Option<PathBuf>,
}

pub fn run(args: &[String]) -> Result<()> {
    let (mut serve, mut release, mut port, mut test_page) = (false, false, 8080u16, false);
    let (mut build_it, mut model) = (true, bundled_model());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => serve = true,
            "--release" => release = true,
            "--test-page" => test_page = true,
            // What `cargo xtask ci` runs in the browser, alone.
            "--browser-tests" => return browser_tests(),
            // Serve an already built `web/pkg` (a machine without cargo).
            "--no-build" => build_it = false,
            "--model" => model = it.next().context("--model needs a folder")?.into(),
            "--port" => {
                let v = it.next().context("--port needs a value")?;
                port = v
                    .parse()
                    .with_context(|| format!("--port `{v}`: expected a port number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !build_it {
        return serve::serve(&root().join("web"), &model, port);
    }
    let tools = find_tools(test_page).map_err(|reason| anyhow::anyhow!("{reason}"))?;
    build(&tools, release)?;
    if test_page {
        let driver = tools
            .chromedriver
            .as_deref()
            .unwrap_or(Path::new("chromedriver"));
        page::run(driver, &root().join("web"), &bundled_model())?;
    }
    if serve {
        serve::serve(&root().join("web"), &model, port)?;
    }
    Ok(())
}

/// The workspace root (xtask runs from it; `CARGO_MANIFEST_DIR` is `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The model `--serve` offers: the CLI's bundled one.
fn bundled_model() -> PathBuf {
    root().join("tests/fixtures/dense-bf16-text")
}

/// The `wasm-bindgen` version in Cargo.lock (the CLI must be the same).
fn locked_wasm_bindgen() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry".into())
}

/// `name` on `PATH` or in `~/.cargo/bin`.
fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()))
    {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Finds the wasm target, the wasm-bindgen tools at Cargo.lock's version and
/// (for tests) chromedriver; the reason in words when one is missing.
pub fn find_tools(tests: bool) -> Result<Tools, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("running {rustc}: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let has_std = std::fs::read_dir(&libdir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false);
    if !has_std {
        return Err(format!(
            "the {WASM_TARGET} target is not installed (rustup target add {WASM_TARGET})"
        ));
    }
    let version = locked_wasm_bindgen()?;
    let install = format!("cargo install wasm-bindgen-cli --version {version}");
    let wasm_bindgen = which("wasm-bindgen").ok_or(format!("no wasm-bindgen ({install})"))?;
    let test_runner = which("wasm-bindgen-test-runner")
        .ok_or(format!("no wasm-bindgen-test-runner ({install})"))?;
    let have = Command::new(&wasm_bindgen)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if have != format!("wasm-bindgen {version}") {
        return Err(format!(
            "`{have}` found, Cargo.lock has wasm-bindgen {version} ({install})"
        ));
    }
    let chromedriver = which("chromedriver");
    if tests && chromedriver.is_none() {
        return Err("no chromedriver (apt-get install chromium chromium-driver)".into());
    }
    Ok(Tools {
        wasm_bindgen,
        test_runner,
        chromedriver,
    })
}

/// Builds the wasm module and its JS bindings into `web/pkg/`.
pub fn build(tools: &Tools, release: bool) -> Result<PathBuf> {
    build_profile(tools, if release { "release" } else { "dev" })
}

/// [`build`] in cargo profile `profile` (`dev`, `release`, or `test`: CI's
/// page check reuses the browser tests' dependency builds that way).
fn build_profile(tools: &Tools, profile: &str) -> Result<PathBuf> {
    let started = Instant::now();
    let args = [
        "build",
        "-p",
        "qwgpu-web",
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        profile,
    ];
    cargo(&args, &[])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    // `dev` and `test` builds land in `debug/`.
    let profile = if profile == "release" {
        "release"
    } else {
        "debug"
    };
    let wasm = target
        .join(WASM_TARGET)
        .join(profile)
        .join("qwgpu_web.wasm");
    let out = root().join("web/pkg");
    let status = Command::new(&tools.wasm_bindgen)
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&out)
        .arg(&wasm)
        .status()
        .context("running wasm-bindgen")?;
    if !status.success() {
        bail!("wasm-bindgen failed ({status})");
    }
    let size = std::fs::metadata(out.join("qwgpu_web_bg.wasm"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "xtask web: {out_display} built in {secs:.0} s ({profile}; qwgpu_web_bg.wasm {mib:.1} MiB)",
        out_display = out.display(),
        secs = started.elapsed().as_secs_f64(),
        mib = size as f64 / (1 << 20) as f64,
    );
    Ok(out)
}

/// The `qwgpu-web` tests in headless Chromium (or a loud skip).
pub fn browser_tests() -> Result<()> {
    let tools = match find_tools(true) {
        Ok(t) => t,
        Err(reason) => {
            let bar = "#".repeat(72);
            eprintln!("{bar}\nbrowser tests SKIPPED: {reason}\n{bar}");
            return Ok(());
        }
    };
    let started = Instant::now();
    let chromedriver = tools
        .chromedriver
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let runner = tools.test_runner.display().to_string();
    cargo(
        &["test", "-p", "qwgpu-web", "--target", WASM_TARGET],
        &[
            (
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                runner.as_str(),
            ),
            ("CHROMEDRIVER", chromedriver.as_str()),
            // Seconds per test: SwiftShader compiles each pipeline on the CPU.
            ("WASM_BINDGEN_TEST_TIMEOUT", "900"),
        ],
    )?;
    // The demo page, built as `cargo xtask web` builds it (in the test
    // profile, whose dependencies the tests just built), chatting once.
    build_profile(&tools, "test")?;
    let (_answer, status) = page::run(
        tools
            .chromedriver
            .as_deref()
            .unwrap_or(Path::new("chromedriver")),
        &root().join("web"),
        &bundled_model(),
    )?;
    if !status.contains("tok/s") {
        bail!("the demo page's status after a chat turn is `{status}`, expected tok/s figures");
    }
    eprintln!(
        "xtask ci: browser tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Cargo as `cargo xtask ci` runs it (the same `CARGO`, the same messages).
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    crate::ci::cargo_with(args, envs)
}
