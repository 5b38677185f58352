//! Ctrl-C during a reply stops that reply, not the chat: the handler sets a
//! flag the decode loop reads between steps (a step is never cut in half).
//! Outside a reply (waiting for the user's line) Ctrl-C ends the chat as usual.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

static STOP: AtomicBool = AtomicBool::new(false);
static REPLYING: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process).
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| {
        if REPLYING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            eprintln!();
            // 128 + SIGINT, as a shell reports a process ended by Ctrl-C.
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Marks a reply as running (Ctrl-C stops it) until the guard drops.
pub struct Replying;

impl Replying {
    pub fn start() -> Self {
        STOP.store(false, Ordering::SeqCst);
        REPLYING.store(true, Ordering::SeqCst);
        Self
    }

    /// True once Ctrl-C was pressed during this reply.
    pub fn stopped(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

impl Drop for Replying {
    fn drop(&mut self) {
        REPLYING.store(false, Ordering::SeqCst);
        STOP.store(false, Ordering::SeqCst);
    }
}
