//! The instances' user data: download the webapp release from the artefact bucket, write its
//! environment file (variable names from `contract::env`), and run it as a systemd unit.
//!
//! The unit appends the webapp's stdout and stderr (one JSON object per line) to
//! [`WEBAPP_LOG`], in a directory systemd creates for it (`LogsDirectory=`, which works with
//! `DynamicUser=`), rotated by logrotate (`copytruncate`: the unit keeps its descriptor). The
//! CloudWatch agent, installed from the Amazon Linux repository (served from S3, so reachable
//! through the S3 gateway endpoint when `nat = "none"`), ships that file to the stack's log
//! group, one stream per instance named `<az>/<instance-id>`, through the CloudWatch Logs
//! interface endpoint when there is no NAT. A file rather than the agent's journald input:
//! the file input is the agent's long-standing one, and it keeps the lines byte for byte.
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
/// The systemd `LogsDirectory=` of the unit (under `/var/log`).
const LOGS_DIRECTORY: &str = "triad-webapp";
/// The file the unit appends the webapp's output to, and the CloudWatch agent reads.
pub(crate) const WEBAPP_LOG: &str = "/var/log/triad-webapp/webapp.log";
/// The CloudWatch agent's configuration and control program.
const AGENT_CONFIG: &str = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json";
const AGENT_CTL: &str = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl";

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
        format!("LogsDirectory={LOGS_DIRECTORY}"),
        format!("StandardOutput=append:{WEBAPP_LOG}"),
        "StandardError=inherit".into(),
        "Restart=always".into(),
        "KillSignal=SIGTERM".into(),
        format!("TimeoutStopSec={}", spec.app.deregistration_delay_seconds + 10),
        "[Install]".into(),
        "WantedBy=multi-user.target".into(),
        "EOF".into(),
        "systemctl daemon-reload".into(),
        format!("systemctl enable --now {UNIT}"),
        "# Ship the webapp's log lines to CloudWatch Logs, one stream per instance.".into(),
        format!("cat > /etc/logrotate.d/{LOGS_DIRECTORY} <<'EOF'"),
        format!("{WEBAPP_LOG} {{"),
        "  size 100M".into(),
        "  rotate 2".into(),
        "  copytruncate".into(),
        "  missingok".into(),
        "  notifempty".into(),
        "}".into(),
        "EOF".into(),
        "dnf install -y amazon-cloudwatch-agent".into(),
        format!("cat > {AGENT_CONFIG} <<EOF"),
    ])
    .chain(agent_config(spec).lines().map(str::to_owned))
    .chain([
        "EOF".to_string(),
        format!("{AGENT_CTL} -a fetch-config -m ec2 -s -c file:{AGENT_CONFIG}"),
    ])
    .collect();
    let mut script = lines.join("\n");
    script.push('\n');
    json!({ "Fn::Sub": script })
}

/// The CloudWatch agent's configuration: [`WEBAPP_LOG`] into the stack's log group, in the
/// stream `$az/$instance_id` (shell variables the script has set), timed by each line's own
/// `timestamp` (RFC 3339 in UTC, as the webapp writes it).
fn agent_config(spec: &StackSpec) -> String {
    let config = json!({
        "agent": { "run_as_user": "root" },
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [{
                        "file_path": WEBAPP_LOG,
                        "log_group_name": super::webapp_log_group(&spec.name),
                        "log_stream_name": "$az/$instance_id",
                        "timestamp_format": "%Y-%m-%dT%H:%M:%S.%fZ",
                        "timezone": "UTC",
                    }],
                },
            },
        },
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}
