//! Every refusal of `stack.toml`, with the message it gives: the field (and line, where the
//! field is written), what is wrong and how to fix it. Pure parsing, no services.

use provision::spec::{Ami, Nat, SpecError, StackSpec};
use rstest::rstest;

/// The smallest valid spec; each case below changes one thing.
const BASE: &str = r#"
name = "shop"
region = "eu-west-1"

[app]
version = "1.0.0"

[mailer]
sender = "no-reply@example.com"
"#;

/// The base spec with a table appended at the end.
fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}\n")
}

/// The base spec with top-level keys put before the first table.
fn top(extra: &str) -> String {
    format!("{extra}\n{BASE}")
}

/// The base spec with lines added to its `[app]` table.
fn app(extra: &str) -> String {
    BASE.replace(
        "version = \"1.0.0\"",
        &format!("version = \"1.0.0\"\n{extra}"),
    )
}

fn error_of(text: &str) -> SpecError {
    StackSpec::parse(text).expect_err("the spec should be refused")
}

#[test]
fn the_base_spec_is_valid_and_defaults_are_filled() {
    let spec = StackSpec::parse(BASE).expect("valid spec");
    assert_eq!(spec.azs, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
    assert_eq!(spec.network.nat, Nat::PerAz);
    assert_eq!((spec.app.min, spec.app.desired, spec.app.max), (3, 3, 6));
    assert_eq!(spec.app.port, 8000);
    assert_eq!(spec.app.health_check.path, "/healthz");
    assert!(matches!(spec.app.ami, Ami::SsmParameter(ref p) if p.starts_with("/aws/service/")));
    assert!(spec.db.multi_az);
    assert_eq!(spec.db.backup_retention_days, 7);
    assert!(spec.db.deletion_protection);
    assert!(spec.alb.deletion_protection);
    assert_eq!(spec.mailer.version, "1.0.0");
    assert_eq!(spec.mailer.token_ttl_seconds, 86400);
    assert!(spec.https.is_none() && spec.waf.is_none() && spec.cloudtrail.is_none());
}

#[test]
fn subnets_are_carved_per_az_without_overlap() {
    let spec = StackSpec::parse(BASE).expect("valid spec");
    let rendered: Vec<(String, String, String)> = spec
        .network
        .subnets
        .iter()
        .map(|s| (s.az.clone(), s.public.to_string(), s.private.to_string()))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("eu-west-1a", "10.0.0.0/19", "10.0.128.0/19"),
        ("eu-west-1b", "10.0.32.0/19", "10.0.160.0/19"),
        ("eu-west-1c", "10.0.64.0/19", "10.0.192.0/19"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(rendered, expected);

    let six = StackSpec::parse(&top(
        r#"azs = ["eu-west-1a","eu-west-1b","eu-west-1c","eu-west-1d","eu-west-1e","eu-west-1f"]"#,
    ))
    .expect("six AZs fit a /16");
    let all: Vec<_> = six
        .network
        .subnets
        .iter()
        .flat_map(|s| [s.public, s.private])
        .collect();
    assert_eq!(all.len(), 12);
    for (i, a) in all.iter().enumerate() {
        assert!(six.network.vpc_cidr.contains(a), "{a} outside the VPC");
        for b in &all[i + 1..] {
            assert!(
                !a.contains(&b.network()) && !b.contains(&a.network()),
                "{a} overlaps {b}"
            );
        }
    }
}

#[test]
fn explicit_subnets_are_kept() {
    let spec = StackSpec::parse(&with(
        "[network]\npublic_subnets = [\"10.0.0.0/24\", \"10.0.1.0/24\", \"10.0.2.0/24\"]\n\
         private_subnets = [\"10.0.10.0/24\", \"10.0.11.0/24\", \"10.0.12.0/24\"]",
    ))
    .expect("valid subnets");
    assert_eq!(spec.network.subnets[1].public.to_string(), "10.0.1.0/24");
    assert_eq!(spec.network.subnets[2].private.to_string(), "10.0.12.0/24");
}

#[test]
fn both_examples_parse() {
    for path in ["../examples/stack.toml", "../examples/lean.toml"] {
        let spec = StackSpec::load(std::path::Path::new(path))
            .unwrap_or_else(|e| panic!("{path} should be valid: {e}"));
        assert_eq!(spec.azs.len(), 3, "{path}");
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let error = StackSpec::load(std::path::Path::new("no/such/stack.toml")).expect_err("missing");
    assert!(
        error
            .to_string()
            .starts_with("cannot read no/such/stack.toml: "),
        "{error}"
    );
}

#[rstest]
// Syntax and shape: line and field path from the TOML deserialiser.
#[case::unknown_top_level_field(
    &top("colour = \"blue\""),
    "line 1, field colour: unknown field `colour`, expected one of"
)]
#[case::unknown_nested_field(
    &with("[db]\nstorage = 20"),
    "line 12, field db.storage: unknown field `storage`"
)]
#[case::wrong_type(
    &with("[db]\nstorage_gb = \"lots\""),
    "line 12, field db.storage_gb: invalid type: string \"lots\", expected u32"
)]
#[case::wrong_type_deep(
    &app("[app.health_check]\ninterval_seconds = true"),
    "line 8, field app.health_check.interval_seconds: invalid type: boolean `true`, expected u32"
)]
#[case::unknown_nat(
    &with("[network]\nnat = \"sometimes\""),
    "line 12, field network.nat: unknown variant `sometimes`, expected one of `per-az`, `single`, `none`"
)]
#[case::missing_field(
    &BASE.replace("sender = \"no-reply@example.com\"", ""),
    "line 8, field mailer: missing field `sender`"
)]
#[case::not_toml(&with("[db"), "line 11: ")]
#[case::unknown_clock(
    &with("[sandbox]\nclock = \"slow\""),
    "line 12, field sandbox.clock: unknown variant `slow`, expected `aws` or `fast`"
)]
#[case::fast_factor_below_one(
    &with("[sandbox]\nfast_factor = 0.5"),
    "line 12, field sandbox.fast_factor: 0.5 is not a compression the sandbox can run"
)]
#[case::rds_failover_zero(
    &with("[sandbox]\nrds_failover_seconds = 0"),
    "line 12, field sandbox.rds_failover_seconds: must be 1 to 3600"
)]
// Semantic checks: field, what is wrong, how to fix it.
#[case::bad_name(
    &BASE.replace("name = \"shop\"", "name = \"Shop_1\""),
    "line 2, field name: \"Shop_1\" is not a usable stack name: use 1 to 24 lowercase letters"
)]
#[case::bad_region(
    &BASE.replace("eu-west-1", "europe"),
    "line 3, field region: \"europe\" is not an AWS region name; write it like eu-west-1"
)]
#[case::one_az(
    &top("azs = [\"eu-west-1a\"]"),
    "line 1, field azs: 1 AZ given: a stack in one AZ cannot survive that AZ failing; list at least 2"
)]
#[case::seven_azs(
    &top("azs = [\"eu-west-1a\",\"eu-west-1b\",\"eu-west-1c\",\"eu-west-1d\",\"eu-west-1e\",\"eu-west-1f\",\"eu-west-1g\"]"),
    "line 1, field azs: 7 AZs given: at most 6 are supported"
)]
#[case::az_of_another_region(
    &top("azs = [\"eu-west-1a\", \"eu-west-2b\"]"),
    "line 1, field azs[1]: \"eu-west-2b\" is not an AZ of region eu-west-1: an AZ name is the region followed by one letter, e.g. eu-west-1a"
)]
#[case::az_without_letter(
    &top("azs = [\"eu-west-1a\", \"eu-west-1\"]"),
    "line 1, field azs[1]: \"eu-west-1\" is not an AZ of region eu-west-1"
)]
#[case::az_twice(
    &top("azs = [\"eu-west-1a\", \"eu-west-1a\"]"),
    "line 1, field azs[1]: eu-west-1a is listed twice; list each AZ once"
)]
#[case::reserved_tag(
    &top("tags = { Name = \"x\" }"),
    "line 1, field tags.Name: tag key \"Name\" is set by triad itself"
)]
#[case::cidr_too_small(
    &with("[network]\nvpc_cidr = \"10.0.0.0/26\""),
    "line 12, field network.vpc_cidr: VPC CIDR 10.0.0.0/26 is too small for 3 AZs: its 6 subnets would be /29, and a load balancer needs at least a /27 per subnet; use a /24 or larger"
)]
#[case::cidr_outside_aws_range(
    &with("[network]\nvpc_cidr = \"10.0.0.0/8\""),
    "line 12, field network.vpc_cidr: VPC CIDR 10.0.0.0/8 is outside what AWS allows (/16 to /28)"
)]
#[case::cidr_not_a_cidr(
    &with("[network]\nvpc_cidr = \"10.0.0/16\""),
    "line 12, field network.vpc_cidr: \"10.0.0/16\" is not an IPv4 CIDR block; write it like 10.0.0.0/16"
)]
#[case::cidr_host_bits(
    &with("[network]\nvpc_cidr = \"10.0.0.1/16\""),
    "line 12, field network.vpc_cidr: 10.0.0.1/16 has host bits set; write the network address, 10.0.0.0/16"
)]
#[case::overlapping_subnets(
    &with("[network]\npublic_subnets = [\"10.0.0.0/24\", \"10.0.1.0/24\", \"10.0.2.0/24\"]\nprivate_subnets = [\"10.0.10.0/24\", \"10.0.1.128/25\", \"10.0.12.0/24\"]"),
    "line 13, field network.private_subnets[1]: subnet 10.0.1.128/25 overlaps 10.0.1.0/24 (network.public_subnets[1]); every subnet needs its own range"
)]
#[case::subnet_outside_vpc(
    &with("[network]\npublic_subnets = [\"10.0.0.0/24\", \"10.1.1.0/24\", \"10.0.2.0/24\"]\nprivate_subnets = [\"10.0.10.0/24\", \"10.0.11.0/24\", \"10.0.12.0/24\"]"),
    "line 12, field network.public_subnets[1]: subnet 10.1.1.0/24 is outside the VPC CIDR 10.0.0.0/16; pick a range inside it"
)]
#[case::subnet_too_small(
    &with("[network]\npublic_subnets = [\"10.0.0.0/28\", \"10.0.1.0/24\", \"10.0.2.0/24\"]\nprivate_subnets = [\"10.0.10.0/24\", \"10.0.11.0/24\", \"10.0.12.0/24\"]"),
    "line 12, field network.public_subnets[0]: subnet 10.0.0.0/28 is too small: a load balancer needs at least a /27"
)]
#[case::subnet_count(
    &with("[network]\npublic_subnets = [\"10.0.0.0/24\"]\nprivate_subnets = [\"10.0.10.0/24\", \"10.0.11.0/24\", \"10.0.12.0/24\"]"),
    "line 12, field network.public_subnets: 1 subnets given for 3 AZs; give exactly one per AZ"
)]
#[case::only_one_subnet_list(
    &with("[network]\npublic_subnets = [\"10.0.0.0/24\", \"10.0.1.0/24\", \"10.0.2.0/24\"]"),
    "field network.private_subnets: give both network.public_subnets and network.private_subnets, or neither"
)]
#[case::min_below_one_per_az(
    &app("min = 2"),
    "line 7, field app.min: min is 2 but the stack has 3 AZs; keep at least one instance per AZ: set min to 3 or more"
)]
#[case::min_above_desired(
    &app("min = 4\ndesired = 3"),
    "line 7, field app.min: min (4) is greater than desired (3); lower min or raise desired"
)]
#[case::max_below_desired(
    &app("desired = 5\nmax = 4"),
    "line 8, field app.max: max (4) is less than desired (5); raise max or lower desired"
)]
#[case::bad_ami(
    &app("ami = \"amazon-linux\""),
    "line 7, field app.ami: \"amazon-linux\" is neither an AMI id (ami-0123456789abcdef0) nor an SSM parameter path"
)]
#[case::port_zero(&app("port = 0"), "line 7, field app.port: port 0 cannot be listened on")]
#[case::bad_version(
    &BASE.replace("version = \"1.0.0\"", "version = \"1.0 beta\""),
    "line 6, field app.version: \"1.0 beta\" is not a release version"
)]
#[case::health_path(
    &app("[app.health_check]\npath = \"healthz\""),
    "line 8, field app.health_check.path: \"healthz\" must start with /, e.g. /healthz"
)]
#[case::health_interval(
    &app("[app.health_check]\ninterval_seconds = 1"),
    "line 8, field app.health_check.interval_seconds: must be between 5 and 300 seconds"
)]
#[case::health_timeout_not_below_interval(
    &app("[app.health_check]\ninterval_seconds = 10\ntimeout_seconds = 10"),
    "line 9, field app.health_check.timeout_seconds: timeout (10s) must be between 2 and 120 seconds and shorter than the interval (10s)"
)]
#[case::health_threshold(
    &app("[app.health_check]\nhealthy_threshold = 11"),
    "line 8, field app.health_check.healthy_threshold: 11 is outside 2 to 10"
)]
#[case::deregistration_delay(
    &app("deregistration_delay_seconds = 4000"),
    "line 7, field app.deregistration_delay_seconds: must be between 0 and 3600 seconds"
)]
#[case::default_instance_warmup(
    &app("default_instance_warmup_seconds = 90000"),
    "line 7, field app.default_instance_warmup_seconds: must be between 0 and 86400 seconds"
)]
#[case::backup_retention_zero(
    &with("[db]\nbackup_retention_days = 0"),
    "line 12, field db.backup_retention_days: 0 days is outside 1 to 35"
)]
#[case::storage(
    &with("[db]\nstorage_gb = 5"),
    "line 12, field db.storage_gb: 5 GB is outside what RDS allows"
)]
#[case::db_class(
    &with("[db]\ninstance_class = \"t4g.small\""),
    "line 12, field db.instance_class: \"t4g.small\" is not an RDS instance class"
)]
#[case::db_name(
    &with("[db]\ndatabase_name = \"my-db\""),
    "line 12, field db.database_name: \"my-db\" must start with a letter"
)]
#[case::sender(
    &BASE.replace("no-reply@example.com", "no-reply"),
    "line 9, field mailer.sender: \"no-reply\" is not an e-mail address; write it like ops@example.com"
)]
#[case::token_ttl(
    &with("").replace("sender = \"no-reply@example.com\"", "sender = \"no-reply@example.com\"\ntoken_ttl_seconds = 5"),
    "line 10, field mailer.token_ttl_seconds: 5s leaves no time to open the e-mail"
)]
#[case::reserved_concurrency(
    &with("").replace("sender = \"no-reply@example.com\"", "sender = \"no-reply@example.com\"\nreserved_concurrency = 0"),
    "line 10, field mailer.reserved_concurrency: 0 would stop the mailer from ever running"
)]
#[case::mailer_version(
    &with("").replace("sender = \"no-reply@example.com\"", "sender = \"no-reply@example.com\"\nversion = \"\""),
    "line 10, field mailer.version: \"\" is not a release version"
)]
#[case::certificate(
    &with("[https]\ncertificate_arn = \"my-cert\""),
    "line 12, field https.certificate_arn: \"my-cert\" is not an ACM certificate ARN"
)]
#[case::waf_rate_limit(
    &with("[waf]\nrate_limit = 5"),
    "line 12, field waf.rate_limit: 5 is outside what WAF accepts (10 to 2000000000 requests per 5 minutes per IP)"
)]
#[case::hosted_zone(
    &with("[dns]\nhosted_zone_id = \"example.com\"\nrecord_name = \"app.example.com\""),
    "line 12, field dns.hosted_zone_id: \"example.com\" is not a Route 53 hosted zone id"
)]
#[case::record_name(
    &with("[dns]\nhosted_zone_id = \"Z0123\"\nrecord_name = \"app\""),
    "line 13, field dns.record_name: \"app\" is not a fully qualified name"
)]
#[case::alarm_email(
    &with("[alarms]\nemail = \"ops\""),
    "line 12, field alarms.email: \"ops\" is not an e-mail address"
)]
#[case::alarm_cpu(
    &with("[alarms]\ncpu_high_percent = 150"),
    "line 12, field alarms.cpu_high_percent: must be between 1 and 100"
)]
#[case::alarm_5xx(
    &with("[alarms]\nalb_5xx_percent = 0"),
    "line 12, field alarms.alb_5xx_percent: must be between 1 and 100"
)]
#[case::trail_retention(
    &with("[cloudtrail]\nlog_retention_days = 0"),
    "line 12, field cloudtrail.log_retention_days: must be at least 1"
)]
#[case::log_retention(
    &with("[logs]\nretention_days = 45"),
    "line 12, field logs.retention_days: 45 is not a retention CloudWatch Logs accepts"
)]
#[case::log_alarm(
    &with("[logs]\nerror_alarm_threshold = 0"),
    "line 12, field logs.error_alarm_threshold: must be at least 1"
)]
fn refuses_with_a_message_naming_the_field(#[case] text: &str, #[case] expected: &str) {
    let message = error_of(text).to_string();
    assert!(
        message.starts_with(expected),
        "expected {expected:?}\n     got {message:?}"
    );
}

#[test]
fn the_sandbox_clock_defaults_to_fast_with_the_interval_as_factor() {
    use provision::model::{ClockMode, TimeScale};
    let spec = StackSpec::parse(BASE).expect("valid");
    assert_eq!(spec.sandbox.clock, ClockMode::Fast);
    assert_eq!(spec.time_scale(), TimeScale::fast(10.0));
    let spec = StackSpec::parse(&with("[sandbox]\nfast_factor = 4")).expect("valid");
    assert_eq!(spec.time_scale(), TimeScale::fast(4.0));
    let spec = StackSpec::parse(&with(
        "[sandbox]\nclock = \"aws\"\ninstance_boot_seconds = 45",
    ))
    .expect("valid");
    assert_eq!(spec.time_scale(), TimeScale::aws());
    assert_eq!(spec.sandbox.instance_boot_seconds, 45);
    assert_eq!(spec.sandbox.rds_failover_seconds, 90);
}
