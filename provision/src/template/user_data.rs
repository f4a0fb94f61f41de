//! The instances' user data: download the webapp release from the artefact bucket, write its
//! environment file (variable names from `contract::env`), and run it as a systemd unit.
//!
//! The script is a `Fn::Sub` string: `${Name}` placeholders are filled by CloudFormation with
//! the stack's parameters and resource attributes, so a new `AppVersion` gives a new launch
//! template version. The shell itself uses only `$name` (never `${…}`), which `Fn::Sub` leaves
//! alone.

use contract::env;
use serde_json::{Value, json};

use super::{data, params};
use crate::spec::StackSpec;

/// Where the release and its environment live on the instance.
const INSTALL_DIR: &str = "/opt/triad";
/// The webapp's environment file, written by the user data.
pub(crate) const ENV_FILE: &str = "/etc/triad/webapp.env";
const UNIT: &str = "triad-webapp.service";

/// The user data of the launch template, as a `Fn::Sub` value (wrap it in `Fn::Base64`).
pub fn webapp_user_data(spec: &StackSpec) -> Value {
    let bucket = params::ARTEFACT_BUCKET;
    let version = params::APP_VERSION;
    let db = data::DATABASE;
    let environment: Vec<(&str, String)> = vec![
        (env::ROCKET_ADDRESS, "0.0.0.0".into()),
        (env::ROCKET_PORT, spec.app.port.to_string()),
        (env::DB_HOST, format!("${{{db}.Endpoint.Address}}")),
        (env::DB_PORT, format!("${{{db}.Endpoint.Port}}")),
        (env::DB_NAME, spec.db.database_name.clone()),
        (
            env::DB_SECRET_ARN,
            format!("${{{db}.MasterUserSecret.SecretArn}}"),
        ),
        (env::TOPIC_ARN, format!("${{{}}}", data::USER_TOPIC)),
        (env::TOKEN_TABLE, format!("${{{}}}", data::TOKEN_TABLE)),
        (env::VERSION, format!("${{{version}}}")),
        (env::INSTANCE_ID, "$instance_id".into()),
        (env::AZ, "$az".into()),
        (env::AWS_REGION, "${AWS::Region}".into()),
    ];
    let env_lines: Vec<String> = environment
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let lines: Vec<String> = [
        "#!/bin/bash".to_string(),
        "# Installs and starts the triad webapp release named by the stack's AppVersion.".into(),
        "set -euo pipefail".into(),
        "imds=http://169.254.169.254/latest".into(),
        "token=$(curl -sSf -X PUT \"$imds/api/token\" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
            .into(),
        "instance_id=$(curl -sSf -H \"X-aws-ec2-metadata-token: $token\" \"$imds/meta-data/instance-id\")"
            .into(),
        "az=$(curl -sSf -H \"X-aws-ec2-metadata-token: $token\" \"$imds/meta-data/placement/availability-zone\")"
            .into(),
        format!("install -d -m 0755 {INSTALL_DIR} /etc/triad"),
        format!(
            "aws s3 cp --region ${{AWS::Region}} \"s3://${{{bucket}}}/webapp/${{{version}}}/webapp\" {INSTALL_DIR}/webapp"
        ),
        format!("chmod 0755 {INSTALL_DIR}/webapp"),
        format!("cat > {ENV_FILE} <<EOF"),
    ]
    .into_iter()
    .chain(env_lines)
    .chain([
        "EOF".to_string(),
        format!("chmod 0644 {ENV_FILE}"),
        format!("cat > /etc/systemd/system/{UNIT} <<'EOF'"),
        "[Unit]".into(),
        "Description=triad webapp".into(),
        "After=network-online.target".into(),
        "Wants=network-online.target".into(),
        "[Service]".into(),
        "DynamicUser=yes".into(),
        format!("EnvironmentFile={ENV_FILE}"),
        format!("ExecStart={INSTALL_DIR}/webapp"),
        "Restart=always".into(),
        "KillSignal=SIGTERM".into(),
        format!("TimeoutStopSec={}", spec.app.deregistration_delay_seconds + 10),
        "[Install]".into(),
        "WantedBy=multi-user.target".into(),
        "EOF".into(),
        "systemctl daemon-reload".into(),
        format!("systemctl enable --now {UNIT}"),
    ])
    .collect();
    let mut script = lines.join("\n");
    script.push('\n');
    json!({ "Fn::Sub": script })
}
