//! `qwgpu chat`: multi-turn chat in the terminal (or from a pipe: one line,
//! one user turn). Each turn runs only the tokens the model has not seen
//! (see [`conversation`]) and reports how many that was on stderr.

mod conversation;
mod interrupt;
mod saved;
mod thinking;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use qwgpu_model::engine;

use crate::chat_template::{ChatTemplate, Message, RenderOptions};
use crate::load::{load_and_report, load_options, Backend, PrecisionFlag};
use crate::output::Output;
use crate::prompt;
use crate::sampling::{check_max_tokens, SamplingFlags};
use conversation::{Conversation, Setup, Stop, TurnReport};
use thinking::{ThinkingFilter, ThinkingView};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json,
    /// a chat template). Without it, the bundled tiny random-weight test model runs.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A system message before the conversation (kept by /reset).
    #[arg(long)]
    system: Option<String>,
    /// The template's `enable_thinking` (Qwen3.5: `false` skips the reasoning
    /// block); unset leaves the template's default.
    #[arg(long)]
    enable_thinking: Option<bool>,
    /// Show only the answer, not the reasoning before `</think>` (shown dimmed on a
    /// terminal; written as generated when stdout is not a terminal).
    #[arg(long)]
    hide_thinking: bool,
    /// Most tokens per reply (at least 1).
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingFlags,
    /// Refuse checkpoints with tensors qwgpu does not know (default: warn and ignore them).
    #[arg(long)]
    strict: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    precision: PrecisionFlag,
}

const HELP: &str =
    "commands: /reset, /save FILE, /load FILE, /quit (or end of input); Ctrl-C stops a reply";

pub fn run(args: &ChatArgs) -> Result<()> {
    check_max_tokens(args.max_tokens)?;
    let params = args.sampling.params()?;
    let dir = &crate::bundled::model_or_bundled(args.model.as_deref())?;
    let started = Instant::now();
    // Everything cheap first: a bad folder fails before any weight is read.
    let config = qwgpu_checkpoint::ModelConfig::from_file(&dir.join("config.json"))?;
    let vocab = config.text.vocab_size;
    let context = prompt::context_length(dir)?;
    let tokenizer = prompt::load_tokenizer(dir)?;
    let template = ChatTemplate::from_dir(dir)?;
    let render = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: args.enable_thinking,
    };
    let system: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new("system", s))
        .collect();
    let probe = [system.clone(), vec![Message::new("user", "Hello")]].concat();
    template
        .render(&probe, &render)
        .context("rendering a first conversation with the chat template")?;
    let eos = prompt::eos_token_ids(dir, &config.eos_token_ids, vocab)?;
    let opts = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        engine::ONE_SESSION_MAX_CHUNK,
    ));
    let model = load_and_report(dir, &opts, started)?;
    interrupt::install()?;

    let setup = Setup {
        model: &model,
        tokenizer: &tokenizer,
        template: &template,
        render,
        params,
        seed: args.sampling.seed,
        eos,
        max_tokens: args.max_tokens,
        context,
    };
    let mut chat = Conversation::new(setup, system.clone())?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!("qwgpu chat: type a message and press Enter; {HELP}");
    }
    let mut input = stdin.lock();
    let mut out = Output::stdout();
    let view = ThinkingView::choose(args.hide_thinking, std::io::stdout().is_terminal());
    let mut turn = 0usize;
    let mut line = Vec::new();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        // One line is one turn; invalid UTF-8 is replaced, not fatal.
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let user = match text.strip_prefix('/') {
            // `//text` sends `/text` as a message.
            Some(rest) if rest.starts_with('/') => rest,
            Some(command) => match command_line(command, &mut chat, &system, &mut turn) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    continue;
                }
            },
            None => text,
        };
        let plan = match chat.plan(user) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("error: {e:#} (the message was not sent)");
                continue;
            }
        };
        turn += 1;
        let replying = interrupt::Replying::start();
        let mut shown = ThinkingFilter::new(view, plan.text());
        let report = chat
            .run(plan, &mut |piece| out.write(&shown.push(piece)), &|| {
                replying.stopped()
            })
            .with_context(|| format!("turn {turn}"))?;
        drop(replying);
        if report.stop == Stop::Closed || !out.write(&(shown.finish() + "\n"))? {
            // The reader is gone (`| head`): nothing more to say.
            return Ok(());
        }
        eprintln!("{}", describe(turn, &report));
    }
    Ok(())
}

/// Runs a `/command`; `Ok(false)` ends the chat.
fn command_line(
    command: &str,
    chat: &mut Conversation,
    system: &[Message],
    turn: &mut usize,
) -> Result<bool> {
    let (name, arg) = match command.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, arg.trim()),
        None => (command, ""),
    };
    let file = || -> Result<&Path> {
        if arg.is_empty() {
            anyhow::bail!("/{name} needs a file name: /{name} FILE");
        }
        Ok(Path::new(arg))
    };
    match name {
        "quit" | "exit" => return Ok(false),
        "reset" => {
            chat.reset(system.to_vec())?;
            *turn = 0;
            eprintln!("qwgpu: conversation cleared");
        }
        "save" => {
            let path = file()?;
            let tokens = chat.tokens();
            saved::save(path, chat.messages(), &tokens)?;
            eprintln!("{}", saved_line(chat.messages().len(), tokens.len(), path));
        }
        "load" => {
            let path = file()?;
            let saved = saved::load(path, chat.vocab())?;
            let (messages, tokens) = (saved.messages.len(), saved.tokens.len());
            let seconds = chat.load(saved.messages, saved.tokens)?;
            *turn = 0;
            eprintln!("{}", loaded_line(messages, path, tokens, seconds));
        }
        "help" => eprintln!("{HELP}"),
        _ => anyhow::bail!(
            "unknown command /{name}; {HELP} (start a message with // to send a leading /)"
        ),
    }
    Ok(true)
}

/// `qwgpu: saved 4 messages (96 tokens) to chat.json`.
fn saved_line(messages: usize, tokens: usize, path: &Path) -> String {
    let path = path.display();
    format!("qwgpu: saved {messages} messages ({tokens} tokens) to {path}")
}

/// `qwgpu: loaded 4 messages from chat.json: prefilled 96 tokens in 0.120 s`.
fn loaded_line(messages: usize, path: &Path, tokens: usize, seconds: f64) -> String {
    let path = path.display();
    format!("qwgpu: loaded {messages} messages from {path}: prefilled {tokens} tokens in {seconds:.3} s")
}

/// `turn 2: prefilled 14 new tokens (of 96 in the conversation) in 0.012 s, decoded 32 tokens at 41.0 tok/s`.
fn describe(turn: usize, r: &TurnReport) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let TurnReport {
        prefilled,
        total,
        prefill_s,
        decoded,
        ..
    } = *r;
    let (prefilled_s, decoded_s) = (plural(prefilled), plural(decoded));
    let tok_s = r.decode_steps as f64 / r.decode_s.max(1e-9);
    let mut s = format!(
        "turn {turn}: prefilled {prefilled} new token{prefilled_s} (of {total} in the conversation) in {prefill_s:.3} s, decoded {decoded} token{decoded_s} at {tok_s:.1} tok/s"
    );
    if let Some(at) = r.resumed_at {
        s.push_str(&format!(
            "; the template re-rendered earlier turns, so it resumed from the snapshot at token {at}"
        ));
    }
    match r.stop {
        Stop::Length => s.push_str(" (stopped at --max-tokens)"),
        Stop::Interrupted => s.push_str(" (stopped by Ctrl-C)"),
        Stop::Eos | Stop::Closed => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stop: Stop, resumed_at: Option<usize>) -> TurnReport {
        TurnReport {
            prefilled: 14,
            total: 96,
            resumed_at,
            prefill_s: 0.012,
            decoded: 1,
            decode_steps: 8,
            decode_s: 0.25,
            stop,
        }
    }

    #[test]
    fn the_turn_line() {
        assert_eq!(
            describe(2, &report(Stop::Eos, None)),
            "turn 2: prefilled 14 new tokens (of 96 in the conversation) in 0.012 s, decoded 1 token at 32.0 tok/s"
        );
        assert_eq!(
            describe(3, &report(Stop::Length, Some(40))),
            "turn 3: prefilled 14 new tokens (of 96 in the conversation) in 0.012 s, decoded 1 token at 32.0 tok/s; the template re-rendered earlier turns, so it resumed from the snapshot at token 40 (stopped at --max-tokens)"
        );
        assert!(describe(1, &report(Stop::Interrupted, None)).ends_with(" (stopped by Ctrl-C)"));
    }

    #[test]
    fn the_save_and_load_lines() {
        assert_eq!(
            saved_line(4, 96, Path::new("chat.json")),
            "qwgpu: saved 4 messages (96 tokens) to chat.json"
        );
        assert_eq!(
            loaded_line(4, Path::new("chat.json"), 96, 0.12),
            "qwgpu: loaded 4 messages from chat.json: prefilled 96 tokens in 0.120 s"
        );
    }
}
