//! The shape of `stack.toml` as written: every field the file may hold, with the defaults that
//! do not depend on other fields. Unknown fields and wrong types are refused here with the line
//! and the dotted field path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Alarms, Alb, CloudTrail, Db, Dns, HealthCheck, Https, Logs, Nat, Sandbox, Scaling, SpecError,
    Waf,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StackFile {
    pub name: String,
    pub region: String,
    pub azs: Option<Vec<String>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub network: NetworkFile,
    pub app: AppFile,
    #[serde(default)]
    pub db: Db,
    pub mailer: MailerFile,
    #[serde(default)]
    pub alb: Alb,
    pub https: Option<Https>,
    pub waf: Option<Waf>,
    pub cloudtrail: Option<CloudTrail>,
    pub dns: Option<Dns>,
    #[serde(default)]
    pub alarms: Alarms,
    #[serde(default)]
    pub logs: Logs,
    #[serde(default)]
    pub sandbox: Sandbox,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    #[serde(default = "default_vpc_cidr")]
    pub vpc_cidr: String,
    #[serde(default)]
    pub nat: Nat,
    pub public_subnets: Option<Vec<String>>,
    pub private_subnets: Option<Vec<String>>,
}

impl Default for NetworkFile {
    fn default() -> Self {
        NetworkFile {
            vpc_cidr: default_vpc_cidr(),
            nat: Nat::default(),
            public_subnets: None,
            private_subnets: None,
        }
    }
}

fn default_vpc_cidr() -> String {
    "10.0.0.0/16".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppFile {
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    pub ami: Option<String>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub desired: Option<u32>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay_seconds: u32,
    #[serde(default = "default_grace_period")]
    pub health_check_grace_period_seconds: u32,
    #[serde(default)]
    pub default_instance_warmup_seconds: Option<u32>,
    pub version: String,
    pub scaling: Option<Scaling>,
}

fn default_instance_type() -> String {
    "t3.small".into()
}

fn default_port() -> u16 {
    8000
}

fn default_deregistration_delay() -> u32 {
    30
}

fn default_grace_period() -> u32 {
    120
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MailerFile {
    pub sender: String,
    #[serde(default = "default_token_ttl")]
    pub token_ttl_seconds: u32,
    pub version: Option<String>,
    pub reserved_concurrency: Option<u32>,
}

fn default_token_ttl() -> u32 {
    24 * 60 * 60
}

impl StackFile {
    /// Deserialises the text, reporting the line and the dotted field path of the first
    /// problem.
    pub fn parse(text: &str) -> Result<StackFile, SpecError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| SpecError::Parse {
            line: e.span().map(|span| line_at(text, span.start)),
            field: String::new(),
            message: e.message().trim().to_string(),
        })?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let mut field = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim().to_string();
            if let Some(unknown) = unknown_field_name(&message)
                && !field.ends_with(unknown)
            {
                // The path stops at the table holding the unknown key; name the key too.
                field = if field == "." || field.is_empty() {
                    unknown.to_string()
                } else {
                    format!("{field}.{unknown}")
                };
            }
            if field == "." {
                field.clear();
            }
            SpecError::Parse {
                line: inner.span().map(|span| line_at(text, span.start)),
                field,
                message,
            }
        })
    }
}

/// `unknown field `x`, expected …` → `x`.
fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// 1-based line number of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|head| head.matches('\n').count() + 1)
        .unwrap_or(1)
}

/// The line where a dotted field path (`app.min`, `network.public_subnets[1]`) is written, if
/// it is written at all (defaults have no line).
pub(super) fn line_of(text: &str, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut value = toml::de::DeValue::Table(root.into_inner());
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let next = value.get(key)?;
        span = next.span();
        let mut next = next.get_ref().clone();
        if let Some(index) = index {
            let item = next.get(index)?;
            span = item.span();
            next = item.get_ref().clone();
        }
        value = next;
    }
    Some(line_at(text, span.start))
}
