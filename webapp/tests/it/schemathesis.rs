//! Schemathesis (pinned in the project's `.venv`, see `scripts/requirements.txt`) runs every
//! check it has against the webapp served on a loopback port — real PostgreSQL, moto for SNS
//! and DynamoDB, cheap argon2 parameters — signed in as a user created for it, with a fixed
//! seed and a bounded number of examples per operation, and the test fails on any finding:
//! a 5xx, an answer the document does not allow, data the document calls valid refused or
//! data it calls invalid accepted, a method a path lacks not answered 405 with `Allow`,
//! credentials not enforced — and on the warnings `schemathesis/schemathesis.toml` names
//! (such as an operation that answered nothing but 401). `schemathesis/triad_hooks.py` keeps
//! the credentials current when the run changes the user's password.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{TestApp, create_topic, serve, token_table};

const EMAIL: &str = "contract@example.com";
const PASSWORD: &str = "contract-pass-1";
/// Generated cases per operation and phase; with the coverage phase's edge cases this keeps
/// the run to some tens of seconds.
const MAX_EXAMPLES: &str = "30";
const SEED: &str = "20";

/// `st` beside moto in the project's `.venv` (scripts/test names moto's path), else on PATH.
fn schemathesis() -> PathBuf {
    std::env::var_os("TRIAD_TEST_MOTO_BIN")
        .map(PathBuf::from)
        .and_then(|moto| moto.parent().map(|dir| dir.join("st")))
        .filter(|st| st.is_file())
        .unwrap_or_else(|| PathBuf::from("st"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_published_contract() {
    let aws = testkit::aws_config().await;
    let t = TestApp::fresh(|_| {}).await;
    let topic = t
        .app
        .settings
        .topic_arn
        .rsplit(':')
        .next()
        .expect("topic name")
        .to_string();
    create_topic(&aws, &topic).await;
    token_table(&t.app.settings.token_table).await;
    let (status, body) = t.signup(EMAIL, PASSWORD).await;
    assert_eq!(status.code, 201, "{body}");
    let (base, shutdown) = serve(&t.app).await;

    let work = tempfile::tempdir().expect("a work directory");
    let st = schemathesis();
    let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis");
    let run = tokio::process::Command::new(&st)
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .env("PYTHONPATH", &files)
        .env("SCHEMATHESIS_HOOKS", "triad_hooks")
        .env("TRIAD_ST_EMAIL", EMAIL)
        .env("TRIAD_ST_PASSWORD", PASSWORD)
        .arg("--config-file")
        .arg(files.join("schemathesis.toml"))
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            MAX_EXAMPLES,
            "--generation-database",
            "none",
            // One worker: the password changes and the requests that follow them stay in order.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 5 minutes")
        .unwrap_or_else(|e| {
            panic!(
                "running {} (installed into .venv by scripts/setup): {e}",
                st.display()
            )
        });
    shutdown.notify();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found breaches of the published contract:\n{stdout}\n{stderr}"
    );
    // It ran every operation, not nothing.
    assert!(stdout.contains("Tested: 6"), "{stdout}");
}
