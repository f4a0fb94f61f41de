//! What the tests that run the real `triad` against a sandbox stack share: the stack spec,
//! the programs the sandbox runs (from `scripts/test`), and a temporary directory PostgreSQL
//! can use.

/// A three-AZ sandbox stack named `name`, one instance per AZ.
pub fn spec_toml(name: &str) -> String {
    format!(
        r#"
name = "{name}"
region = "us-east-1"
[app]
version = "1.0.0"
min = 3
max = 6
desired = 3
[mailer]
sender = "no-reply@example.com"
"#
    )
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: run the tests through `scripts/test`"),
    }
}

/// The variables that tell `triad` where the sandbox's programs are.
pub fn sandbox_programs() -> Vec<(&'static str, String)> {
    vec![
        ("TRIAD_WEBAPP_BIN", required("TRIAD_WEBAPP_BIN")),
        ("TRIAD_MAILER_BIN", required("TRIAD_MAILER_BIN")),
        ("TRIAD_MOTO_BIN", required("TRIAD_TEST_MOTO_BIN")),
    ]
}

/// A temporary directory others may enter: PostgreSQL runs as its own user when the tests
/// run as root.
pub fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the temporary directory");
    tmp
}

/// A finished `triad`'s exit status and output, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
