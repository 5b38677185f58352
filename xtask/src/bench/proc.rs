//! Child processes with a time limit, their output kept in log files (the GPU
//! machine's 10-minute calls must not hang on one stuck step).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where a step's stdout and stderr went.
pub struct Logs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Logs {
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            stdout: dir.join(format!("{name}.out")),
            stderr: dir.join(format!("{name}.err")),
        }
    }
}

/// Starts `cmd` with its output in `logs`.
pub fn spawn(cmd: &mut Command, logs: &Logs) -> Result<Child> {
    let out = File::create(&logs.stdout)
        .with_context(|| format!("creating {}", logs.stdout.display()))?;
    let err = File::create(&logs.stderr)
        .with_context(|| format!("creating {}", logs.stderr.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))
}

/// Waits for `child` up to `limit`, killing it past that; Ok when it exited 0.
pub fn wait(child: &mut Child, limit: Duration, what: &str, logs: &Logs) -> Result<()> {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!(
                "{what} failed ({status}): {tail_logs_stderr_6}",
                tail_logs_stderr_6 = tail(&logs.stderr, 6)
            );
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} killed after {limit_as_secs} s: {tail_logs_stderr_6}",
                limit_as_secs = limit.as_secs(),
                tail_logs_stderr_6 = tail(&logs.stderr, 6)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` to completion within `limit`; its stdout.
pub fn run(cmd: &mut Command, limit: Duration, what: &str, logs: &Logs) -> Result<String> {
    let mut child = spawn(cmd, logs)?;
    wait(&mut child, limit, what, logs)?;
    std::fs::read_to_string(&logs.stdout)
        .with_context(|| format!("reading {}", logs.stdout.display()))
}

/// The last `n` non-empty lines of a file, joined with " | ".
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The last line of `text` that parses as a JSON object (tools print logs
/// before their result line).
pub fn last_json(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_past_its_limit_is_killed_and_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let logs = Logs::new(&dir, "sleep");
        let t = Instant::now();
        let err = run(
            Command::new("sleep").arg("5"),
            Duration::from_millis(200),
            "sleep",
            &logs,
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().contains("killed after"), "{err}");
        let logs = Logs::new(&dir, "sh");
        let out = run(
            Command::new("sh").args(["-c", "echo log; echo '{\"a\": 1}'; echo oops >&2"]),
            Duration::from_secs(5),
            "sh",
            &logs,
        )
        .unwrap();
        assert_eq!(last_json(&out).unwrap()["a"], 1);
        let err = run(
            Command::new("sh").args(["-c", "echo bad input >&2; exit 3"]),
            Duration::from_secs(5),
            "sh",
            &logs,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad input"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
