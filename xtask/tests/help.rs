//! `--help` is a success everywhere: usage on stdout, exit 0, nothing run.

use std::process::Command;

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        // A help that fell through to an error would print a backtrace too.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run xtask")
}

#[test]
fn help_prints_usage_and_succeeds_for_every_command() {
    for (args, first_line) in [
        (&["--help"][..], "usage: cargo xtask <ci"),
        (&["-h"][..], "usage: cargo xtask <ci"),
        (&["ci", "--help"][..], "usage: cargo xtask <ci"),
        (&["matrix", "-h"][..], "usage: cargo xtask <ci"),
        (&["fixtures", "--help"][..], "usage: cargo xtask fixtures"),
        (&["bench", "--help"][..], "usage: xtask bench [options]"),
        (
            &["bench", "--skip-hf", "-h"][..],
            "usage: xtask bench [options]",
        ),
    ] {
        let out = xtask(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.starts_with(first_line), "{args:?}: {stdout}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_arguments_still_fail() {
    for args in [&["bench", "--bogus"][..], &["ci", "--bogus"], &["nothing"]] {
        let out = xtask(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage"),
            "{args:?}"
        );
    }
}
