//! The real `triad` binary's command line: help lists every command and the backend flags.

use std::process::Command;

fn triad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_triad"))
}

#[test]
fn help_lists_commands_and_backend_flags() {
    let out = triad().arg("--help").output().expect("run triad --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "plan",
        "up",
        "down",
        "template",
        "status",
        "logs",
        "deploy",
        "gameday",
        "--aws",
        "--profile",
        "--region",
        "--endpoint-url",
        "--read-only",
    ] {
        assert!(help.contains(word), "help mentions {word}:\n{help}");
    }
}

#[test]
fn aws_only_flags_require_aws() {
    let out = triad()
        .args(["--profile", "prod", "status"])
        .output()
        .expect("run triad");
    assert!(!out.status.success(), "--profile without --aws is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--aws"), "{err}");
}
