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
        "load",
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

/// `triad init` writes a spec that every command accepts, refuses to overwrite it (exit 3,
/// "refused": the file is kept), and a command run where there is no spec says how to make
/// one (exit 2, bad input).
#[test]
fn init_writes_a_spec_template_accepts_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = triad()
        .current_dir(dir.path())
        .args(["init", "--name", "orders", "--stack-region", "us-east-2"])
        .output()
        .expect("run triad init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = dir.path().join("stack.toml");
    let written = std::fs::read_to_string(&spec).expect("stack.toml written");
    assert!(written.contains("name = \"orders\""), "{written}");

    let template = triad()
        .current_dir(dir.path())
        .arg("template")
        .output()
        .expect("run triad template");
    assert!(
        template.status.success(),
        "{}",
        String::from_utf8_lossy(&template.stderr)
    );
    assert!(
        String::from_utf8_lossy(&template.stdout).contains("AWS::AutoScaling::AutoScalingGroup")
    );

    let again = triad()
        .current_dir(dir.path())
        .args(["init", "--name", "other"])
        .output()
        .expect("run triad init again");
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read_to_string(&spec).expect("read"), written);

    let empty = tempfile::tempdir().expect("tempdir");
    for args in [&["status"][..], &["template"][..]] {
        let out = triad()
            .current_dir(empty.path())
            .args(args)
            .output()
            .expect("run triad without a spec");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("triad init") && err.contains("--stack examples/stack.toml"),
            "{args:?}: {err}"
        );
    }
}
