//! `qwgpu`: run Qwen3.5 models from Hugging Face folders.
//!
//! ```text
//! qwgpu generate --model ~/models/Qwen3.5-0.8B --prompt "Hello" --max-tokens 64
//! qwgpu generate            # the bundled tiny random-weight fixture
//! qwgpu devices           # GPU adapters, features, limits
//! qwgpu inspect --model ~/models/Qwen3.5-35B-A3B-FP8 --weights
//! ```

mod bench;
mod bundled;
mod chat;
mod devices;
mod generate;
mod inspect;
mod load;
mod output;
mod prompt;
mod sampling;
mod score;
mod serve;

// Shared with the server: HF chat templates and streaming detokenization.
use qwgpu_serve::{chat_template, detokenize};

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qwgpu",
    version,
    about = "Run Qwen3.5 (dense and MoE, BF16 and FP8) models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming tokens as they are produced.
    Generate(generate::GenerateArgs),
    /// Chat with a model in the terminal: multi-turn, with its chat template;
    /// each turn runs only the new tokens.
    Chat(chat::ChatArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (continuous
    /// batching, prefix cache for multi-turn chats).
    Serve(serve::ServeArgs),
    /// Log-probabilities and perplexity of a text; with --reference, KL
    /// divergence and top-1 agreement against a second checkpoint.
    Score(score::ScoreArgs),
    /// Measure load time, prefill and decode speed on random token ids.
    Bench(bench::BenchArgs),
    /// List the GPU adapters with their features and limits.
    Devices,
    /// Show what qwgpu reads from a model folder: config, quantization, packed weights.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        // The reader closed stdout (`qwgpu devices | head -1`): it has what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints the error and each cause not already spelled out by the messages above
/// it (library errors name their cause in their own message too).
fn report(e: &anyhow::Error) {
    let mut shown = e.to_string();
    eprintln!("error: {shown}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
            shown.push_str(&text);
        }
    }
}

fn run() -> Result<()> {
    // Warnings read like the CLI's own messages ("WARN the prompt ..."): no
    // timestamp or module path, and colour only on a terminal without NO_COLOR.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QWGPU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(colour)
        .init();
    match Cli::parse().command {
        Command::Generate(args) => generate::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Score(args) => score::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Devices => devices::run(),
        Command::Bench(args) => bench::run(&args),
    }
}
