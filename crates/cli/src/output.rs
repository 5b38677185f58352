//! Generated text on stdout, flushed per piece so it streams, and a reader
//! that goes away (`qwgpu generate | head -c 5`) ends generation quietly
//! instead of failing: Rust ignores SIGPIPE, so a closed pipe shows up as a
//! `BrokenPipe` write error here.

use std::io::{ErrorKind, StdoutLock, Write};

use anyhow::{Context, Result};

pub struct Output {
    out: StdoutLock<'static>,
    closed: bool,
}

impl Output {
    pub fn stdout() -> Self {
        Self {
            out: std::io::stdout().lock(),
            closed: false,
        }
    }

    /// Writes and flushes `text`. Returns `false` once the reader has closed
    /// the pipe (the caller stops generating); other errors are errors.
    pub fn write(&mut self, text: &str) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        match self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(e).context("writing to stdout"),
        }
    }
}
