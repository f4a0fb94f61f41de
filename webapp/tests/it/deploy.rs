//! The deploy artefacts: the user-data template renders to valid bash that writes only the
//! contract's variables, and the systemd unit runs the binary where that script installs it,
//! unprivileged, with the environment file, restarting on failure.

use std::collections::BTreeSet;
use std::process::Command;

const TEMPLATE: &str = include_str!("../../deploy/user-data.sh.tmpl");
const UNIT: &str = include_str!("../../deploy/triad-webapp.service");

fn render() -> String {
    let values = [
        ("region", "eu-west-1"),
        ("artifact_bucket", "triad-artifacts-123"),
        ("artifact_key", "releases/webapp-1.2.3.tar.gz"),
        ("version", "1.2.3"),
        ("port", "8080"),
        ("db_host", "db.cluster.eu-west-1.rds.amazonaws.com"),
        ("db_port", "5432"),
        ("db_name", "triad"),
        (
            "db_secret_arn",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-db",
        ),
        (
            "topic_arn",
            "arn:aws:sns:eu-west-1:123456789012:user-created",
        ),
        ("token_table", "triad-tokens"),
        ("require_verification", "true"),
    ];
    let mut text = TEMPLATE.to_string();
    for (name, value) in values {
        let placeholder = format!("{{{{{name}}}}}");
        assert!(
            text.contains(&placeholder),
            "the template uses {placeholder}"
        );
        text = text.replace(&placeholder, value);
    }
    text
}

#[test]
fn user_data_renders_to_valid_bash() {
    let script = render();
    assert!(!script.contains("{{"), "every placeholder is filled");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("user-data.sh");
    std::fs::write(&path, &script).expect("write");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !TEMPLATE.contains("${"),
        "no dollar-brace, so Fn::Sub leaves the script alone"
    );
}

#[test]
fn user_data_writes_only_contract_variables() {
    let script = render();
    let env_file = script
        .split("<<ENV\n")
        .nth(1)
        .and_then(|rest| rest.split("\nENV\n").next())
        .expect("an environment file heredoc");
    let written: BTreeSet<&str> = env_file
        .lines()
        .map(|l| l.split_once('=').expect("NAME=value").0)
        .collect();
    for name in &written {
        assert!(
            contract::env::WEBAPP.contains(name),
            "{name} is a contract::env name"
        );
    }
    for required in [
        contract::env::DB_SECRET_ARN,
        contract::env::TOPIC_ARN,
        contract::env::TOKEN_TABLE,
        contract::env::VERSION,
        contract::env::INSTANCE_ID,
        contract::env::AZ,
    ] {
        assert!(written.contains(required), "the script sets {required}");
    }
}

#[test]
fn unit_runs_the_installed_binary_unprivileged() {
    let lines: BTreeSet<&str> = UNIT.lines().map(str::trim).collect();
    for expected in [
        "User=triad",
        "EnvironmentFile=/etc/triad/webapp.env",
        "ExecStart=/opt/triad/current/webapp",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
    ] {
        assert!(lines.contains(expected), "the unit has {expected}");
    }
    assert!(TEMPLATE.contains("ln -sfn \"$RELEASE\" /opt/triad/current"));
    assert!(TEMPLATE.contains("/etc/triad/webapp.env"));
}
