//! The semantic checks: from the file's shape to a [`StackSpec`] whose fields agree with each
//! other. Each refusal names the field, says what is wrong and how to fix it.

use super::file::{AppFile, MailerFile, NetworkFile, StackFile};
use super::subnets::{carve_subnets, check_given, invalid, parse_cidr};
use super::{
    Ami, App, HealthCheck, Mailer, Network, RETENTION_DAYS, Sandbox, Scaling, SpecError, StackSpec,
};

/// Longest stack name: it prefixes bucket names, which AWS caps at 63 characters.
pub const MAX_NAME_LEN: usize = 24;
const MIN_AZS: usize = 2;
/// The longest DefaultInstanceWarmup this tool accepts: one day.
const MAX_INSTANCE_WARMUP_SECONDS: u32 = 86_400;
const MAX_AZS: usize = 6;
/// Tag keys the template sets itself.
const RESERVED_TAGS: &[&str] = &["Name", "triad:stack"];

impl StackSpec {
    /// Fills the defaults that depend on other fields and checks every cross-field rule.
    pub(super) fn from_file(file: StackFile) -> Result<StackSpec, SpecError> {
        check_name(&file.name)?;
        check_region(&file.region)?;
        let azs = match file.azs {
            Some(azs) => check_azs(&file.region, azs)?,
            None => ["a", "b", "c"]
                .iter()
                .map(|letter| format!("{}{letter}", file.region))
                .collect(),
        };
        for key in file.tags.keys() {
            if RESERVED_TAGS.contains(&key.as_str()) || key.starts_with("aws:") {
                return Err(invalid(
                    &format!("tags.{key}"),
                    format!(
                        "tag key {key:?} is set by triad itself (or reserved by AWS); \
                         choose another key"
                    ),
                ));
            }
        }
        let network = network(file.network, &azs)?;
        let app = app(file.app, azs.len())?;
        check_db(&file.db)?;
        let mailer = mailer(file.mailer, &app.version)?;
        if let Some(https) = &file.https
            && !(https.certificate_arn.starts_with("arn:aws")
                && https.certificate_arn.contains(":acm:"))
        {
            return Err(invalid(
                "https.certificate_arn",
                format!(
                    "{:?} is not an ACM certificate ARN; it looks like \
                     arn:aws:acm:<region>:<account>:certificate/<id>",
                    https.certificate_arn
                ),
            ));
        }
        if let Some(limit) = file.waf.as_ref().and_then(|waf| waf.rate_limit)
            && !(10..=2_000_000_000).contains(&limit)
        {
            return Err(invalid(
                "waf.rate_limit",
                format!(
                    "{limit} is outside what WAF accepts (10 to 2000000000 requests per 5 minutes \
                     per IP); leave it out for no rate limit"
                ),
            ));
        }
        if let Some(dns) = &file.dns {
            if !dns.hosted_zone_id.starts_with('Z') {
                return Err(invalid(
                    "dns.hosted_zone_id",
                    format!(
                        "{:?} is not a Route 53 hosted zone id; it looks like Z0123456789ABCDEFGHIJ",
                        dns.hosted_zone_id
                    ),
                ));
            }
            if !dns.record_name.contains('.') {
                return Err(invalid(
                    "dns.record_name",
                    format!(
                        "{:?} is not a fully qualified name; write it like app.example.com",
                        dns.record_name
                    ),
                ));
            }
        }
        if let Some(email) = &file.alarms.email {
            check_email("alarms.email", email)?;
        }
        if file.alarms.cpu_high_percent == 0 || file.alarms.cpu_high_percent > 100 {
            return Err(invalid(
                "alarms.cpu_high_percent",
                "must be between 1 and 100 (percent of CPU)",
            ));
        }
        if file.alarms.alb_5xx_percent == 0 || file.alarms.alb_5xx_percent > 100 {
            return Err(invalid(
                "alarms.alb_5xx_percent",
                "must be between 1 and 100 (percent of requests)",
            ));
        }
        if let Some(cloudtrail) = &file.cloudtrail
            && cloudtrail.log_retention_days == 0
        {
            return Err(invalid(
                "cloudtrail.log_retention_days",
                "must be at least 1 (days the trail's log files are kept)",
            ));
        }
        if !RETENTION_DAYS.contains(&file.logs.retention_days) {
            return Err(invalid(
                "logs.retention_days",
                format!(
                    "{} is not a retention CloudWatch Logs accepts; choose one of {}",
                    file.logs.retention_days,
                    RETENTION_DAYS
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if file
            .sandbox
            .scaling_period_seconds
            .is_some_and(|s| !(1..=60).contains(&s))
        {
            return Err(invalid(
                "sandbox.scaling_period_seconds",
                "must be between 1 and 60 seconds (a test-only shortening of the metric period)",
            ));
        }
        if file.logs.error_alarm_threshold == Some(0) {
            return Err(invalid(
                "logs.error_alarm_threshold",
                "must be at least 1 (ERROR lines in 5 minutes); leave it out for no alarm",
            ));
        }
        check_sandbox(&file.sandbox)?;
        Ok(StackSpec {
            name: file.name,
            region: file.region,
            azs,
            tags: file.tags,
            network,
            app,
            db: file.db,
            mailer,
            alb: file.alb,
            https: file.https,
            waf: file.waf,
            cloudtrail: file.cloudtrail,
            dns: file.dns,
            alarms: file.alarms,
            logs: file.logs,
            sandbox: file.sandbox,
        })
    }
}

fn check_sandbox(sandbox: &Sandbox) -> Result<(), SpecError> {
    if let Some(factor) = sandbox.fast_factor
        && !(factor.is_finite() && (1.0..=1000.0).contains(&factor))
    {
        return Err(invalid(
            "sandbox.fast_factor",
            format!(
                "{factor} is not a compression the sandbox can run: give a number from 1 to                  1000 (AWS seconds per sandbox second), or leave it out for the one that makes                  the health-check interval 1 s"
            ),
        ));
    }
    if sandbox.instance_boot_seconds > 3600 {
        return Err(invalid(
            "sandbox.instance_boot_seconds",
            "must be 0 to 3600 (seconds from launch to the webapp listening)",
        ));
    }
    if !(1..=3600).contains(&sandbox.rds_failover_seconds) {
        return Err(invalid(
            "sandbox.rds_failover_seconds",
            "must be 1 to 3600 (seconds of a Multi-AZ failover; AWS documents 60-120)",
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), SpecError> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_with_letter || !allowed || name.ends_with('-') || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!(
                "{name:?} is not a usable stack name: use 1 to {MAX_NAME_LEN} lowercase letters, \
                 digits and hyphens, starting with a letter and not ending with a hyphen \
                 (e.g. \"shop-prod\")"
            ),
        ));
    }
    Ok(())
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-2`: letters, hyphen-separated words, a number.
fn check_region(region: &str) -> Result<(), SpecError> {
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts.first().is_some_and(|p| p.len() == 2)
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err(invalid(
            "region",
            format!("{region:?} is not an AWS region name; write it like eu-west-1"),
        ));
    }
    Ok(())
}

fn check_azs(region: &str, azs: Vec<String>) -> Result<Vec<String>, SpecError> {
    if azs.len() < MIN_AZS {
        return Err(invalid(
            "azs",
            format!(
                "{} AZ given: a stack in one AZ cannot survive that AZ failing; list at least \
                 {MIN_AZS} (e.g. [\"{region}a\", \"{region}b\", \"{region}c\"])",
                azs.len()
            ),
        ));
    }
    if azs.len() > MAX_AZS {
        return Err(invalid(
            "azs",
            format!(
                "{} AZs given: at most {MAX_AZS} are supported; list {MAX_AZS} or fewer",
                azs.len()
            ),
        ));
    }
    for (k, az) in azs.iter().enumerate() {
        let letter = az.strip_prefix(region);
        let ok = letter.is_some_and(|l| l.len() == 1 && l.chars().all(|c| c.is_ascii_lowercase()));
        if !ok {
            return Err(invalid(
                &format!("azs[{k}]"),
                format!(
                    "{az:?} is not an AZ of region {region}: an AZ name is the region followed \
                     by one letter, e.g. {region}a"
                ),
            ));
        }
        if azs[..k].contains(az) {
            return Err(invalid(
                &format!("azs[{k}]"),
                format!("{az} is listed twice; list each AZ once"),
            ));
        }
    }
    Ok(azs)
}

fn network(file: NetworkFile, azs: &[String]) -> Result<Network, SpecError> {
    let vpc_cidr = parse_cidr("network.vpc_cidr", &file.vpc_cidr)?;
    if !(16..=28).contains(&vpc_cidr.prefix_len()) {
        return Err(invalid(
            "network.vpc_cidr",
            format!(
                "VPC CIDR {vpc_cidr} is outside what AWS allows (/16 to /28); use a /16 such as \
                 10.0.0.0/16"
            ),
        ));
    }
    let subnets = match (&file.public_subnets, &file.private_subnets) {
        (None, None) => carve_subnets(vpc_cidr, azs)?,
        (Some(public), Some(private)) => check_given(vpc_cidr, azs, public, private)?,
        (Some(_), None) | (None, Some(_)) => {
            let missing = if file.public_subnets.is_none() {
                "network.public_subnets"
            } else {
                "network.private_subnets"
            };
            return Err(invalid(
                missing,
                "give both network.public_subnets and network.private_subnets, or neither \
                 (then they are derived from network.vpc_cidr)",
            ));
        }
    };
    Ok(Network {
        vpc_cidr,
        nat: file.nat,
        subnets,
    })
}

fn app(file: AppFile, az_count: usize) -> Result<App, SpecError> {
    let per_az = u32::try_from(az_count).unwrap_or(u32::MAX);
    let min = file.min.unwrap_or(per_az);
    let desired = file.desired.unwrap_or(min.max(per_az));
    let max = file.max.unwrap_or(desired.saturating_mul(2));
    if min < per_az {
        return Err(invalid(
            "app.min",
            format!(
                "min is {min} but the stack has {az_count} AZs; keep at least one instance per \
                 AZ: set min to {per_az} or more"
            ),
        ));
    }
    if min > desired {
        return Err(invalid(
            "app.min",
            format!("min ({min}) is greater than desired ({desired}); lower min or raise desired"),
        ));
    }
    if max < desired {
        return Err(invalid(
            "app.max",
            format!("max ({max}) is less than desired ({desired}); raise max or lower desired"),
        ));
    }
    let ami = match file.ami {
        None => Ami::SsmParameter(super::DEFAULT_AMI_PARAMETER.into()),
        Some(ami) if ami.starts_with("ami-") && ami.len() > 4 => Ami::Id(ami),
        Some(ami) if ami.starts_with('/') => Ami::SsmParameter(ami),
        Some(ami) => {
            return Err(invalid(
                "app.ami",
                format!(
                    "{ami:?} is neither an AMI id (ami-0123456789abcdef0) nor an SSM parameter \
                     path (/aws/service/…); leave it out for the latest Amazon Linux 2023"
                ),
            ));
        }
    };
    if file.port == 0 {
        return Err(invalid(
            "app.port",
            "port 0 cannot be listened on; use e.g. 8000",
        ));
    }
    check_health(&file.health_check)?;
    if file.deregistration_delay_seconds > 3600 {
        return Err(invalid(
            "app.deregistration_delay_seconds",
            "must be between 0 and 3600 seconds (the load balancer's limit)",
        ));
    }
    if file
        .default_instance_warmup_seconds
        .is_some_and(|w| w > MAX_INSTANCE_WARMUP_SECONDS)
    {
        return Err(invalid(
            "app.default_instance_warmup_seconds",
            format!("must be between 0 and {MAX_INSTANCE_WARMUP_SECONDS} seconds"),
        ));
    }
    check_version("app.version", &file.version)?;
    if let Some(scaling) = &file.scaling {
        check_scaling(scaling, min, max)?;
    }
    Ok(App {
        instance_type: file.instance_type,
        ami,
        min,
        max,
        desired,
        port: file.port,
        health_check: file.health_check,
        deregistration_delay_seconds: file.deregistration_delay_seconds,
        health_check_grace_period_seconds: file.health_check_grace_period_seconds,
        default_instance_warmup_seconds: file.default_instance_warmup_seconds,
        version: file.version,
        scaling: file.scaling,
    })
}

/// The largest `requests_per_target` accepted (requests per target per minute).
const MAX_REQUESTS_PER_TARGET: u32 = 1_000_000;

fn check_scaling(scaling: &Scaling, min: u32, max: u32) -> Result<(), SpecError> {
    if scaling.cpu_percent.is_none() && scaling.requests_per_target.is_none() {
        return Err(invalid(
            "app.scaling",
            "names no metric; set cpu_percent (e.g. 60) and/or requests_per_target (e.g. 1000),              or remove the table for a fixed size",
        ));
    }
    if let Some(cpu) = scaling.cpu_percent
        && !(1..=100).contains(&cpu)
    {
        return Err(invalid(
            "app.scaling.cpu_percent",
            format!("{cpu} is not a CPU target; use 1 to 100 (percent of the instances' CPU)"),
        ));
    }
    if let Some(requests) = scaling.requests_per_target
        && !(1..=MAX_REQUESTS_PER_TARGET).contains(&requests)
    {
        return Err(invalid(
            "app.scaling.requests_per_target",
            format!(
                "{requests} is not a request target; use 1 to {MAX_REQUESTS_PER_TARGET}                  (requests per target per minute)"
            ),
        ));
    }
    if max <= min {
        return Err(invalid(
            "app.max",
            format!(
                "max ({max}) leaves no room to scale above min ({min}); raise max or remove                  [app.scaling]"
            ),
        ));
    }
    Ok(())
}

fn check_health(check: &HealthCheck) -> Result<(), SpecError> {
    if !check.path.starts_with('/') {
        return Err(invalid(
            "app.health_check.path",
            format!("{:?} must start with /, e.g. /healthz", check.path),
        ));
    }
    if !(5..=300).contains(&check.interval_seconds) {
        return Err(invalid(
            "app.health_check.interval_seconds",
            "must be between 5 and 300 seconds (the load balancer's limits)",
        ));
    }
    if !(2..=120).contains(&check.timeout_seconds)
        || check.timeout_seconds >= check.interval_seconds
    {
        return Err(invalid(
            "app.health_check.timeout_seconds",
            format!(
                "timeout ({}s) must be between 2 and 120 seconds and shorter than the interval \
                 ({}s); lower the timeout or raise the interval",
                check.timeout_seconds, check.interval_seconds
            ),
        ));
    }
    for (field, value) in [
        (
            "app.health_check.healthy_threshold",
            check.healthy_threshold,
        ),
        (
            "app.health_check.unhealthy_threshold",
            check.unhealthy_threshold,
        ),
    ] {
        if !(2..=10).contains(&value) {
            return Err(invalid(
                field,
                format!("{value} is outside 2 to 10 (the load balancer's limits)"),
            ));
        }
    }
    Ok(())
}

fn check_db(db: &super::Db) -> Result<(), SpecError> {
    if !(1..=35).contains(&db.backup_retention_days) {
        return Err(invalid(
            "db.backup_retention_days",
            format!(
                "{} days is outside 1 to 35: 0 turns automated backups (and point-in-time \
                 recovery) off and RDS keeps at most 35; use 1 to 35 (default 7)",
                db.backup_retention_days
            ),
        ));
    }
    if !(20..=65536).contains(&db.storage_gb) {
        return Err(invalid(
            "db.storage_gb",
            format!(
                "{} GB is outside what RDS allows for gp3 (20 to 65536)",
                db.storage_gb
            ),
        ));
    }
    if !db.instance_class.starts_with("db.") {
        return Err(invalid(
            "db.instance_class",
            format!(
                "{:?} is not an RDS instance class; write it like db.t4g.small",
                db.instance_class
            ),
        ));
    }
    for (field, value) in [
        ("db.database_name", &db.database_name),
        ("db.master_username", &db.master_username),
    ] {
        let ok = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && value.len() <= 63;
        if !ok {
            return Err(invalid(
                field,
                format!(
                    "{value:?} must start with a letter and hold only letters, digits and \
                     underscores (at most 63)"
                ),
            ));
        }
    }
    Ok(())
}

fn mailer(file: MailerFile, app_version: &str) -> Result<Mailer, SpecError> {
    check_email("mailer.sender", &file.sender)?;
    if file.token_ttl_seconds < 60 {
        return Err(invalid(
            "mailer.token_ttl_seconds",
            format!(
                "{}s leaves no time to open the e-mail; use at least 60 (default 86400, a day)",
                file.token_ttl_seconds
            ),
        ));
    }
    let version = file.version.unwrap_or_else(|| app_version.to_string());
    check_version("mailer.version", &version)?;
    if file.reserved_concurrency == Some(0) {
        return Err(invalid(
            "mailer.reserved_concurrency",
            "0 would stop the mailer from ever running; use 1 or more, or leave it out",
        ));
    }
    Ok(Mailer {
        sender: file.sender,
        token_ttl_seconds: file.token_ttl_seconds,
        version,
        reserved_concurrency: file.reserved_concurrency,
    })
}

fn check_email(field: &str, email: &str) -> Result<(), SpecError> {
    let ok = email
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if !ok {
        return Err(invalid(
            field,
            format!("{email:?} is not an e-mail address; write it like ops@example.com"),
        ));
    }
    Ok(())
}

/// Versions become S3 key segments: letters, digits, `.`, `-`, `_`, `+`.
fn check_version(field: &str, version: &str) -> Result<(), SpecError> {
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !ok {
        return Err(invalid(
            field,
            format!(
                "{version:?} is not a release version: use letters, digits, '.', '-', '_' or '+' \
                 (e.g. 1.4.2)"
            ),
        ));
    }
    Ok(())
}
