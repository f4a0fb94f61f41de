//! The stack spec: `stack.toml` parsed into a typed, checked [`StackSpec`].
//!
//! Parsing happens in two steps. The file is first deserialised into the shapes in `file`
//! (unknown fields and wrong types are refused there, with the line and the field path); then
//! [`StackSpec::from_file`] fills the defaults that depend on other fields (AZs from the region,
//! capacity from the AZ count, subnets carved from the VPC CIDR) and runs the semantic checks,
//! each of which says what is wrong and how to fix it. A `StackSpec` that exists is valid:
//! the template generator never has to check anything again.

mod check;
mod file;
mod subnets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use subnets::carve_subnets;

use crate::model::{ClockMode, TimeScale};

/// Engine version of PostgreSQL used when the spec does not name one.
pub const DEFAULT_DB_ENGINE_VERSION: &str = "17.9";
/// The SSM parameter giving the latest Amazon Linux 2023 AMI, used when the spec names no AMI.
pub const DEFAULT_AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
/// Interface endpoints created when `nat = "none"`: what the instances call besides S3 and
/// DynamoDB (which get gateway endpoints).
pub const INTERFACE_ENDPOINT_SERVICES: &[&str] = &[
    "logs",
    "secretsmanager",
    "sns",
    // Systems Manager's agent: Run Command reaches the instances through these three.
    "ssm",
    "ec2messages",
    "ssmmessages",
];

/// A checked stack spec. Every default is filled in and every cross-field rule holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackSpec {
    /// Stack name: lowercase letters, digits and hyphens, starting with a letter, at most 24
    /// characters (it prefixes resource and bucket names).
    pub name: String,
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Availability Zones, 2 to 6, each the region followed by a letter. Default: the region's
    /// `a`, `b` and `c`.
    pub azs: Vec<String>,
    /// Extra tags put on every taggable resource (besides `triad:stack` and `Name`).
    pub tags: BTreeMap<String, String>,
    pub network: Network,
    pub app: App,
    pub db: Db,
    pub mailer: Mailer,
    pub alb: Alb,
    pub https: Option<Https>,
    pub waf: Option<Waf>,
    pub cloudtrail: Option<CloudTrail>,
    pub dns: Option<Dns>,
    pub alarms: Alarms,
    pub logs: Logs,
    /// Settings of the local sandbox only (the template ignores them).
    pub sandbox: Sandbox,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    pub vpc_cidr: Ipv4Net,
    pub nat: Nat,
    /// One entry per AZ, in the order of [`StackSpec::azs`].
    pub subnets: Vec<AzSubnets>,
}

/// The two subnets of one Availability Zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzSubnets {
    pub az: String,
    pub public: Ipv4Net,
    pub private: Ipv4Net,
}

/// How the private subnets reach AWS services and the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    /// A NAT gateway (and Elastic IP) in every AZ: an AZ failure never cuts the others off.
    #[default]
    PerAz,
    /// One NAT gateway in the first AZ: cheaper, but that AZ is a single point of failure.
    Single,
    /// No NAT: S3 and DynamoDB gateway endpoints plus the interface endpoints the instances
    /// need ([`INTERFACE_ENDPOINT_SERVICES`]); no route to the internet from private subnets.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct App {
    pub instance_type: String,
    pub ami: Ami,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub port: u16,
    pub health_check: HealthCheck,
    pub deregistration_delay_seconds: u32,
    pub health_check_grace_period_seconds: u32,
    /// The group's `DefaultInstanceWarmup`, also the warmup of a refresh that sets none.
    /// Unset, AWS uses the health check grace period for refreshes.
    pub default_instance_warmup_seconds: Option<u32>,
    /// The webapp release deployed at creation (`s3://<bucket>/webapp/<version>/webapp`).
    pub version: String,
    /// Target tracking scaling; `None` keeps the group at its desired capacity.
    pub scaling: Option<Scaling>,
}

/// `[app.scaling]`: target tracking policies on the group, one per metric given
/// (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html>).
/// At least one of `cpu_percent` (average CPU of the instances, `ASGAverageCPUUtilization`)
/// and `requests_per_target` (requests per target per minute, `ALBRequestCountPerTarget`).
/// `scale_in = false` only ever adds capacity (default: true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub cpu_percent: Option<u32>,
    pub requests_per_target: Option<u32>,
    #[serde(default = "yes")]
    pub scale_in: bool,
}

/// The policy names every backend gives the two target tracking policies.
pub const CPU_POLICY: &str = "cpu";
/// See [`CPU_POLICY`].
pub const REQUESTS_POLICY: &str = "requests-per-target";

impl Scaling {
    /// The policies this table asks for, CPU first.
    pub fn policies(&self) -> Vec<crate::port::ScalingPolicy> {
        use crate::port::{ScalingMetric, ScalingPolicy};
        let cpu = self.cpu_percent.map(|target| ScalingPolicy {
            name: CPU_POLICY.to_owned(),
            metric: ScalingMetric::CpuPercent,
            target: f64::from(target),
            scale_in: self.scale_in,
        });
        let requests = self.requests_per_target.map(|target| ScalingPolicy {
            name: REQUESTS_POLICY.to_owned(),
            metric: ScalingMetric::RequestsPerTarget,
            target: f64::from(target),
            scale_in: self.scale_in,
        });
        cpu.into_iter().chain(requests).collect()
    }
}

/// Where the instances' image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Ami {
    /// A fixed image id, `ami-…`.
    Id(String),
    /// An SSM parameter resolved by CloudFormation at each stack update, `/aws/service/…`.
    SsmParameter(String),
}

/// The target group's health check. Defaults: `/healthz` every 10 s, 5 s timeout, healthy
/// after 2 successes, unhealthy after 2 failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub path: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/healthz".into(),
            interval_seconds: 10,
            timeout_seconds: 5,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// The RDS PostgreSQL instance. Defaults: PostgreSQL [`DEFAULT_DB_ENGINE_VERSION`] on
/// `db.t4g.small`, 20 GB, Multi-AZ, 7 days of backups, deletion protection on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Db {
    pub engine_version: String,
    pub instance_class: String,
    pub storage_gb: u32,
    pub multi_az: bool,
    pub backup_retention_days: u32,
    pub deletion_protection: bool,
    pub database_name: String,
    pub master_username: String,
}

impl Default for Db {
    fn default() -> Self {
        Db {
            engine_version: DEFAULT_DB_ENGINE_VERSION.into(),
            instance_class: "db.t4g.small".into(),
            storage_gb: 20,
            multi_az: true,
            backup_retention_days: 7,
            deletion_protection: true,
            database_name: "triad".into(),
            master_username: "triad_admin".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailer {
    /// The verified SES identity e-mails go out from.
    pub sender: String,
    pub token_ttl_seconds: u32,
    /// The mailer release (`s3://<bucket>/mailer/<version>/bootstrap.zip`).
    pub version: String,
    /// Reserved concurrency for the function; `None` leaves it on the account's pool.
    pub reserved_concurrency: Option<u32>,
}

/// The load balancer. Default: deletion protection on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alb {
    pub deletion_protection: bool,
}

impl Default for Alb {
    fn default() -> Self {
        Alb {
            deletion_protection: true,
        }
    }
}

/// HTTPS on the load balancer (port 443 with an ACM certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Https {
    pub certificate_arn: String,
    /// Port 80 answers with a redirect to HTTPS instead of serving. Default: true.
    #[serde(default = "yes")]
    pub redirect_http: bool,
}

/// A WAF web ACL on the load balancer with the AWS managed common, SQL injection and known
/// bad inputs rule groups, plus an optional per-IP rate limit (requests per 5 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    pub rate_limit: Option<u32>,
}

/// A multi-region CloudTrail trail into a versioned, encrypted log bucket whose objects expire
/// after `log_retention_days` (default 365).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudTrail {
    #[serde(default = "one_year")]
    pub log_retention_days: u32,
}

/// A Route 53 alias record pointing at the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    pub hosted_zone_id: String,
    pub record_name: String,
}

/// The webapp's log group on AWS (`/triad/<name>/webapp`): how long CloudWatch Logs keeps
/// its lines (`retention_days`, default 30; one of the values CloudWatch Logs accepts, see
/// [`RETENTION_DAYS`]) and, with `error_alarm_threshold`, an alarm when more than that many
/// `ERROR` lines are logged in 5 minutes (counted by the group's metric filter either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logs {
    pub retention_days: u32,
    pub error_alarm_threshold: Option<u32>,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            retention_days: 30,
            error_alarm_threshold: None,
        }
    }
}

/// Traffic the sandbox daemon sends its own stack through the load balancer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Traffic {
    /// None: tests and benchmarks measure only what they send.
    #[default]
    Off,
    /// A few requests every few seconds and a signup now and then (see
    /// `sandbox::traffic`), summed up in one event a minute.
    Gentle,
}

/// The retention periods (days) CloudWatch Logs accepts, from the `RetentionInDays` property
/// of `AWS::Logs::LogGroup`
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-logs-loggroup.html>).
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Alarms, all sent to the stack's alarm topic. Defaults: CPU above 80 %, ALB 5xx above 5 % of
/// requests, database free storage below 2 GB; no e-mail subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alarms {
    pub email: Option<String>,
    pub cpu_high_percent: u32,
    pub alb_5xx_percent: u32,
    pub db_free_storage_low_gb: u32,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            email: None,
            cpu_high_percent: 80,
            alb_5xx_percent: 5,
            db_free_storage_low_gb: 2,
        }
    }
}

/// How the sandbox runs this stack (ignored on AWS): on the spec's own clock or a stated
/// compression of it, and what the sandbox assumes for the work AWS does that a local process
/// does not. Defaults: the `fast` clock with the factor that makes the health-check interval
/// 1 s, 60 s instance boot, 90 s RDS failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    /// `fast` (default): every duration the model schedules divided by `fast_factor`; `aws`:
    /// the spec's durations exactly.
    pub clock: ClockMode,
    /// AWS seconds per sandbox second under the `fast` clock, 1 to 1000. Unset: the
    /// health-check interval in seconds (the interval becomes 1 s).
    pub fast_factor: Option<f64>,
    /// Seconds from launch to the webapp listening on AWS (boot, user data fetching the
    /// release, the unit starting). AWS publishes no figure; 60 is an estimate to replace with
    /// what `triad` shows on AWS (an instance's launch to its first healthy check, minus the
    /// health checks).
    pub instance_boot_seconds: u32,
    /// Seconds a Multi-AZ failover takes on RDS: "typically 60–120 seconds"
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.MultiAZSingleStandby.html>);
    /// 90 is the middle of that range.
    pub rds_failover_seconds: u32,
    /// FOR TESTS ONLY: the length of one metric period of target tracking in the sandbox, in
    /// seconds (1 to 60), so a test sees scale-in within seconds. Unset, the sandbox uses
    /// AWS's minute on the sandbox's clock, like its other durations.
    pub scaling_period_seconds: Option<u32>,
    /// Traffic the sandbox sends its own stack, so that a demo moves (default `off`).
    pub traffic: Traffic,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            clock: ClockMode::Fast,
            fast_factor: None,
            instance_boot_seconds: 60,
            rds_failover_seconds: 90,
            scaling_period_seconds: None,
            traffic: Traffic::Off,
        }
    }
}

impl StackSpec {
    /// The clock the sandbox runs this stack on.
    pub fn time_scale(&self) -> TimeScale {
        self.sandbox
            .time_scale(self.app.health_check.interval_seconds)
    }
}

impl Sandbox {
    /// The clock these settings ask for, given the spec's health-check interval.
    pub fn time_scale(&self, interval_seconds: u32) -> TimeScale {
        match self.clock {
            ClockMode::Aws => TimeScale::aws(),
            ClockMode::Fast => TimeScale::fast(
                self.fast_factor
                    .unwrap_or_else(|| f64::from(interval_seconds.max(1))),
            ),
        }
    }
}

fn yes() -> bool {
    true
}

fn one_year() -> u32 {
    365
}

/// Why a stack spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field is unknown, missing or of the wrong type.
    #[error("{}{}", location(*line, field), message)]
    Parse {
        line: Option<usize>,
        field: String,
        message: String,
    },
    /// The fields parse but do not make a stack: what is wrong and how to fix it.
    #[error("{}{}", location(*line, field), message)]
    Invalid {
        line: Option<usize>,
        field: String,
        message: String,
    },
}

fn location(line: Option<usize>, field: &str) -> String {
    match (line, field.is_empty()) {
        (Some(line), false) => format!("line {line}, field {field}: "),
        (Some(line), true) => format!("line {line}: "),
        (None, false) => format!("field {field}: "),
        (None, true) => String::new(),
    }
}

impl SpecError {
    /// The dotted path of the field the error is about (`app.min`, `network.vpc_cidr`).
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Parse { field, .. } | SpecError::Invalid { field, .. } => Some(field),
        }
    }
}

impl StackSpec {
    /// Reads and checks a `stack.toml`.
    pub fn load(path: &Path) -> Result<StackSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        StackSpec::parse(&text)
    }

    /// Parses and checks the text of a `stack.toml`.
    pub fn parse(text: &str) -> Result<StackSpec, SpecError> {
        let file = file::StackFile::parse(text)?;
        StackSpec::from_file(file).map_err(|mut error| {
            if let SpecError::Invalid { line, field, .. } = &mut error {
                *line = file::line_of(text, field);
            }
            error
        })
    }

    /// Whether the spec tags the stack as production: an `environment`, `env` or `stage` tag
    /// (any case) whose value is `production` or `prod` (any case). The console then shows
    /// the production cue and asks for typed names, on every backend.
    pub fn is_tagged_production(&self) -> bool {
        self.tags.iter().any(|(key, value)| {
            ["environment", "env", "stage"].contains(&key.to_ascii_lowercase().as_str())
                && ["production", "prod"].contains(&value.to_ascii_lowercase().as_str())
        })
    }

    /// The letter that ends an AZ name, upper-cased: `eu-west-1b` → `B`. Used in logical ids.
    pub fn az_letter(az: &str) -> String {
        az.chars()
            .last()
            .map(|c| c.to_ascii_uppercase().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::StackSpec;

    fn spec_with_tags(tags: &str) -> StackSpec {
        StackSpec::parse(&format!(
            "name = \"shop\"\nregion = \"eu-west-1\"\ntags = {{ {tags} }}\n\
             [app]\nversion = \"1.0.0\"\n[mailer]\nsender = \"no-reply@example.com\"\n"
        ))
        .expect("a valid spec")
    }

    #[test]
    fn an_environment_tag_of_production_marks_the_stack() {
        for tags in [
            "environment = \"production\"",
            "Environment = \"Prod\"",
            "env = \"prod\"",
            "stage = \"PRODUCTION\"",
        ] {
            assert!(spec_with_tags(tags).is_tagged_production(), "{tags}");
        }
        for tags in [
            "environment = \"staging\"",
            "team = \"production\"",
            "environment = \"preprod\"",
        ] {
            assert!(!spec_with_tags(tags).is_tagged_production(), "{tags}");
        }
    }
}
