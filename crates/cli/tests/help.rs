//! `--help` is a success everywhere: usage on stdout, exit 0.

use std::process::Command;

#[test]
fn help_succeeds_for_the_cli_and_every_subcommand() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["generate", "--help"],
        &["chat", "--help"],
        &["serve", "--help"],
        &["score", "--help"],
        &["bench", "--help"],
        &["devices", "--help"],
        &["inspect", "--help"],
        &["help", "generate"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args(args)
            .output()
            .expect("run qwgpu");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains("Usage: qwgpu"), "{args:?}: {stdout}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// Every command that loads a model takes `--precision exact|fast`, defaulting
/// to `qwgpu_model::DEFAULT_PRECISION`; another value is an error naming the flag.
#[test]
fn every_model_command_takes_precision() {
    let default = qwgpu_model::precision_name(qwgpu_model::DEFAULT_PRECISION);
    for cmd in ["generate", "chat", "serve", "score", "bench"] {
        let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args([cmd, "--help"])
            .output()
            .expect("run qwgpu");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("--precision <PRECISION>"),
            "{cmd}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("[default: {default}]")) && stdout.contains("fast"),
            "{cmd}: {stdout}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_qwgpu"))
            .args([cmd, "--precision", "bf16"])
            .output()
            .expect("run qwgpu");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains("--precision"), "{cmd}: {stderr}");
    }
}
