//! The real `triad` binary with `--aws` against moto over HTTP (the shared server from
//! `scripts/test`): `plan` works out what `up` does before the main stack — create the
//! `<name>-bootstrap` stack and upload the webapp and mailer releases — changing nothing, and a
//! release that nothing provides makes it exit 2 saying which flag to pass.
//!
//! `up --aws` is not run here: moto cannot execute the main stack's change set (it does not
//! resolve `Database.MasterUserSecret.SecretArn`), so applying is covered by provision's
//! `aws_cfn` (moto) and `aws_cfn_mocks` (replayed CloudFormation responses) tests, and the
//! bootstrap-then-upload step by `aws_cfn`'s artefact tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A copy of `examples/lean.toml` under a name no other test uses, in `dir`.
fn lean_spec(dir: &Path) -> (PathBuf, String) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lean.toml");
    let text = std::fs::read_to_string(example).expect("read the example");
    let name = testkit::unique_name("cli");
    let text = text.replace("name = \"shop-lean\"", &format!("name = \"{name}\""));
    assert!(
        text.contains(&name),
        "the example names its stack shop-lean"
    );
    let path = dir.join("stack.toml");
    std::fs::write(&path, text).expect("write the spec");
    (path, name)
}

/// `triad --aws` at moto, with test credentials and nothing from this machine's AWS setup.
fn triad_aws(dir: &Path, spec: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_triad"))
        .env("TRIAD_HOME", dir.join("home"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("TRIAD_WEBAPP_BIN", dir.join("webapp-beside"))
        .args(["--aws", "--region", "us-east-1", "--endpoint-url"])
        .arg(testkit::moto_url())
        .arg("--stack")
        .arg(spec)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run triad")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// With both releases given, the plan lists the bootstrap stack and both uploads before the
/// main stack's change set, and exits 0; planning again shows the same first steps, so the
/// first plan created nothing.
#[test]
fn plan_shows_the_bucket_and_uploads_up_does_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spec, name) = lean_spec(dir.path());
    let webapp = dir.path().join("webapp");
    let mailer = dir.path().join("bootstrap.zip");
    std::fs::write(&webapp, b"webapp build").expect("write webapp");
    std::fs::write(&mailer, b"mailer zip").expect("write mailer");
    let args = [
        "plan",
        "--webapp",
        webapp.to_str().expect("utf-8 path"),
        "--mailer-zip",
        mailer.to_str().expect("utf-8 path"),
    ];

    for attempt in ["first", "second"] {
        let output = triad_aws(dir.path(), &spec, &args);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{attempt} plan\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let first = format!(
            "First:\n  + create stack {name}-bootstrap (the artefact bucket \
             {name}-artefacts-123456789012-us-east-1)\n  + upload webapp 0.1.0 from {}",
            webapp.display()
        );
        assert!(stdout.starts_with(&first), "{attempt} plan:\n{stdout}");
        assert!(
            stdout.contains(&format!("upload mailer 0.1.0 from {}", mailer.display())),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("Plan to create stack {name}")),
            "{stdout}"
        );
        assert!(!stdout.contains("Cannot apply yet"), "{stdout}");
    }
}

/// Without the mailer package (and no webapp beside `triad`), the plan says what cannot be
/// provided and which flags to pass, and exits 2.
#[test]
fn plan_without_the_releases_exits_2_naming_the_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spec, _) = lean_spec(dir.path());
    let output = triad_aws(dir.path(), &spec, &["plan"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let blocked = stdout
        .split("Cannot apply yet:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("a blockers section:\n{stdout}"));
    assert!(
        blocked.contains("webapp 0.1.0") && blocked.contains("--webapp PATH"),
        "{blocked}"
    );
    assert!(
        blocked.contains("mailer 0.1.0") && blocked.contains("--mailer-zip PATH"),
        "{blocked}"
    );
}
