//! Properties every generated template must have, checked on the parsed JSON rather than by
//! eye in the snapshots: determinism, least privilege, tagging, the shape each spec option asks
//! for, and the names shared with the webapp and the mailer through `contract`. Pure
//! rendering, no services.

use std::path::Path;

use provision::spec::StackSpec;
use provision::template::{outputs, params, render, render_bootstrap};
use serde_json::Value;

fn example(name: &str) -> StackSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    StackSpec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn main_template(spec: &StackSpec) -> Value {
    serde_json::from_str(&render(spec).to_json().expect("json")).expect("valid json")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// Every string anywhere in `value`.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn same_spec_gives_byte_identical_templates() {
    for name in ["stack.toml", "lean.toml"] {
        let spec = example(name);
        let first = render(&spec).to_json().expect("json");
        let again = render(&example(name)).to_json().expect("json");
        assert_eq!(first, again, "{name}");
        assert_eq!(
            render(&spec).to_yaml().expect("yaml"),
            render(&spec).to_yaml().expect("yaml")
        );
    }
}

#[test]
fn yaml_and_json_are_the_same_document() {
    let template = render(&example("stack.toml"));
    let from_yaml: Value =
        serde_norway::from_str(&template.to_yaml().expect("yaml")).expect("valid yaml");
    assert_eq!(from_yaml, template.to_sorted_value().expect("value"));
}

#[test]
fn no_policy_allows_every_action_or_a_wildcard_action() {
    for name in ["stack.toml", "lean.toml"] {
        let template = main_template(&example(name));
        for (id, role) in of_type(&template, "AWS::IAM::Role") {
            for policy in role["Properties"]["Policies"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for statement in policy["PolicyDocument"]["Statement"]
                    .as_array()
                    .expect("statements")
                {
                    let mut actions = Vec::new();
                    strings(&statement["Action"], &mut actions);
                    assert!(!actions.is_empty(), "{id}");
                    for action in actions {
                        assert!(!action.contains('*'), "{name}: {id} allows {action}");
                    }
                    assert_ne!(statement["Resource"], "*", "{name}: {id}");
                }
            }
        }
    }
}

#[test]
fn every_tagged_resource_carries_the_stack_tag_and_a_name() {
    let spec = example("stack.toml");
    let template = main_template(&spec);
    let mut tagged = 0;
    for (id, resource) in template["Resources"].as_object().expect("resources") {
        let Some(tags) = resource["Properties"]["Tags"].as_array() else {
            continue;
        };
        tagged += 1;
        let value_of = |key: &str| {
            tags.iter()
                .find(|t| t["Key"] == key)
                .map(|t| t["Value"].clone())
        };
        assert_eq!(
            value_of("triad:stack"),
            Some(Value::from("shop-prod")),
            "{id}"
        );
        assert_eq!(value_of("team"), Some(Value::from("payments")), "{id}");
        let name = value_of("Name").unwrap_or_else(|| panic!("{id} has no Name tag"));
        assert!(
            name.as_str().is_some_and(|n| n.starts_with("shop-prod-")),
            "{id}: {name}"
        );
    }
    assert!(tagged > 30, "only {tagged} tagged resources");
    let subnet = &template["Resources"]["PrivateSubnetB"]["Properties"]["Tags"];
    assert!(
        subnet
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t["Key"] == "Name" && t["Value"] == "shop-prod-private-eu-west-1b"),
        "{subnet}"
    );
}

#[test]
fn nat_per_az_gives_a_gateway_and_route_per_az() {
    let template = main_template(&example("stack.toml"));
    let gateways = of_type(&template, "AWS::EC2::NatGateway");
    assert_eq!(gateways.len(), 3);
    for letter in ["A", "B", "C"] {
        let route = &template["Resources"][format!("PrivateDefaultRoute{letter}")]["Properties"];
        assert_eq!(route["NatGatewayId"]["Ref"], format!("NatGateway{letter}"));
        assert_eq!(
            route["RouteTableId"]["Ref"],
            format!("PrivateRouteTable{letter}")
        );
    }
    assert!(of_type(&template, "AWS::EC2::VPCEndpoint").is_empty());
}

#[test]
fn nat_single_routes_every_az_through_the_first() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lean.toml"),
    )
    .expect("lean example")
    .replace("nat = \"none\"", "nat = \"single\"");
    let template = main_template(&StackSpec::parse(&text).expect("valid"));
    assert_eq!(of_type(&template, "AWS::EC2::NatGateway").len(), 1);
    for letter in ["A", "B", "C"] {
        let route = &template["Resources"][format!("PrivateDefaultRoute{letter}")]["Properties"];
        assert_eq!(route["NatGatewayId"]["Ref"], "NatGatewayA");
    }
}

#[test]
fn nat_none_gives_gateway_and_interface_endpoints_and_no_default_route() {
    let template = main_template(&example("lean.toml"));
    assert!(of_type(&template, "AWS::EC2::NatGateway").is_empty());
    assert!(of_type(&template, "AWS::EC2::EIP").is_empty());
    let endpoints = of_type(&template, "AWS::EC2::VPCEndpoint");
    let mut services: Vec<String> = endpoints
        .iter()
        .map(|(_, e)| {
            let name = e["Properties"]["ServiceName"]["Fn::Sub"]
                .as_str()
                .expect("service");
            format!(
                "{}:{}",
                e["Properties"]["VpcEndpointType"].as_str().expect("type"),
                name.rsplit('.').next().expect("suffix")
            )
        })
        .collect();
    services.sort();
    assert_eq!(
        services,
        [
            "Gateway:dynamodb",
            "Gateway:s3",
            "Interface:ec2messages",
            "Interface:logs",
            "Interface:secretsmanager",
            "Interface:sns",
            "Interface:ssm",
            "Interface:ssmmessages"
        ]
    );
    let routes: Vec<_> = of_type(&template, "AWS::EC2::Route");
    assert_eq!(routes.len(), 1, "only the public default route");
}

#[test]
fn security_groups_chain_world_alb_app_db() {
    let template = main_template(&example("stack.toml"));
    let resources = &template["Resources"];
    let ingress = |sg: &str| {
        resources[sg]["Properties"]["SecurityGroupIngress"]
            .as_array()
            .expect("ingress")
            .clone()
    };
    let world: Vec<_> = ingress("AlbSecurityGroup")
        .iter()
        .map(|r| (r["CidrIp"].clone(), r["FromPort"].clone()))
        .collect();
    assert_eq!(
        world,
        [
            (Value::from("0.0.0.0/0"), Value::from(80)),
            (Value::from("0.0.0.0/0"), Value::from(443))
        ]
    );
    let app = ingress("AppSecurityGroup");
    assert_eq!(app.len(), 1);
    assert_eq!(
        app[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0],
        "AlbSecurityGroup"
    );
    assert_eq!(app[0]["FromPort"], 8000);
    let db = ingress("DbSecurityGroup");
    assert_eq!(db.len(), 1);
    assert_eq!(
        db[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0],
        "AppSecurityGroup"
    );
    assert_eq!(db[0]["FromPort"], 5432);
    assert_eq!(
        resources["AlbToAppEgress"]["Properties"]["DestinationSecurityGroupId"]["Fn::GetAtt"][0],
        "AppSecurityGroup"
    );
    assert_eq!(
        resources["AppToDbEgress"]["Properties"]["DestinationSecurityGroupId"]["Fn::GetAtt"][0],
        "DbSecurityGroup"
    );
    assert_eq!(
        resources["DbSecurityGroup"]["Properties"]["SecurityGroupEgress"][0]["CidrIp"],
        "127.0.0.1/32"
    );
}

#[test]
fn instances_follow_the_spec() {
    let spec = example("stack.toml");
    let template = main_template(&spec);
    let resources = &template["Resources"];
    let data = &resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["ImageId"]["Ref"], params::AMI);
    assert_eq!(data["InstanceType"], "t3.small");
    let asg = &resources["AutoScalingGroup"]["Properties"];
    assert_eq!(asg["HealthCheckType"], "ELB");
    assert_eq!(
        (
            asg["MinSize"].as_str(),
            asg["DesiredCapacity"].as_str(),
            asg["MaxSize"].as_str()
        ),
        (Some("3"), Some("3"), Some("9"))
    );
    assert_eq!(
        asg["VPCZoneIdentifier"].as_array().expect("subnets").len(),
        3
    );
    assert_eq!(asg["VPCZoneIdentifier"][0]["Ref"], "PrivateSubnetA");
    assert_eq!(asg["MetricsCollection"][0]["Granularity"], "1Minute");
    assert!(
        asg.get("DefaultInstanceWarmup").is_none(),
        "no default warmup unless the spec sets one"
    );
    let mut warm = spec.clone();
    warm.app.default_instance_warmup_seconds = Some(90);
    let warm = main_template(&warm);
    assert_eq!(
        warm["Resources"]["AutoScalingGroup"]["Properties"]["DefaultInstanceWarmup"],
        90
    );
    let tg = &resources["TargetGroup"]["Properties"];
    assert_eq!(tg["HealthCheckPath"], "/healthz");
    assert_eq!(tg["HealthCheckIntervalSeconds"], 10);
    assert_eq!(
        template["Parameters"][params::APP_VERSION]["Default"],
        "1.0.0"
    );
    assert_eq!(
        template["Parameters"][params::AMI]["Type"],
        "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    );
}

#[test]
fn user_data_sets_every_contract_variable_the_webapp_needs() {
    let spec = example("stack.toml");
    let template = main_template(&spec);
    let script = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
        ["Fn::Base64"]["Fn::Sub"]
        .as_str()
        .expect("user data script");
    for name in [
        contract::env::ROCKET_PORT,
        contract::env::DB_HOST,
        contract::env::DB_SECRET_ARN,
        contract::env::TOPIC_ARN,
        contract::env::TOKEN_TABLE,
        contract::env::VERSION,
        contract::env::AZ,
    ] {
        assert!(
            script.contains(&format!("\n{name}=")),
            "{name} missing from\n{script}"
        );
    }
    assert!(
        script.contains("s3://${ArtefactBucket}/webapp/${AppVersion}/webapp"),
        "{script}"
    );
    assert!(script.contains("systemctl enable --now triad-webapp.service"));
}

#[test]
fn token_table_and_mailer_use_the_contract_names() {
    let template = main_template(&example("stack.toml"));
    let resources = &template["Resources"];
    let table = &resources["TokenTable"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["KeySchema"][0]["AttributeName"],
        contract::tokens::PARTITION_KEY
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        contract::tokens::ATTR_EXPIRES_AT
    );
    let mailer = &resources["MailerFunction"]["Properties"];
    assert_eq!(mailer["Architectures"][0], "x86_64");
    assert_eq!(
        mailer["Code"]["S3Key"]["Fn::Sub"],
        "mailer/${MailerVersion}/bootstrap.zip"
    );
    let variables = mailer["Environment"]["Variables"]
        .as_object()
        .expect("variables");
    for name in [
        contract::env::TOKEN_TABLE,
        contract::env::MAIL_SENDER,
        contract::env::VERIFY_BASE_URL,
        contract::env::TOKEN_TTL_SECONDS,
    ] {
        assert!(variables.contains_key(name), "{name}");
    }
    assert_eq!(
        variables[contract::env::VERIFY_BASE_URL],
        "https://shop.example.com"
    );
    assert_eq!(
        mailer["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0],
        "MailerDeadLetterQueue"
    );
    let db = &resources["Database"]["Properties"];
    assert_eq!(db["ManageMasterUserPassword"], true);
    assert_eq!(db["StorageEncrypted"], true);
    assert_eq!(db["PubliclyAccessible"], false);
    assert_eq!(db["MultiAZ"], true);
    assert_eq!(db["BackupRetentionPeriod"], 14);
}

#[test]
fn optional_parts_follow_the_spec() {
    let full = main_template(&example("stack.toml"));
    let lean = main_template(&example("lean.toml"));
    for kind in [
        "AWS::WAFv2::WebACL",
        "AWS::CloudTrail::Trail",
        "AWS::Route53::RecordSet",
    ] {
        assert_eq!(of_type(&full, kind).len(), 1, "{kind} in stack.toml");
        assert!(of_type(&lean, kind).is_empty(), "{kind} in lean.toml");
    }
    assert_eq!(
        full["Resources"]["HttpListener"]["Properties"]["DefaultActions"][0]["Type"],
        "redirect"
    );
    assert_eq!(
        lean["Resources"]["HttpListener"]["Properties"]["DefaultActions"][0]["Type"],
        "forward"
    );
    assert!(lean["Resources"].get("HttpsListener").is_none());
    assert_eq!(
        of_type(&full, "AWS::SNS::Subscription").len(),
        2,
        "mailer + alarm e-mail"
    );
}

/// The webapp's log group: the spec's retention, the ERROR metric filter, the alarm only when
/// asked for; the instances may write only there, and their agent writes one stream per
/// instance named `<az>/<instance-id>` from the file the unit appends to.
#[test]
fn the_webapp_log_group_follows_the_spec_and_the_instances_ship_into_it() {
    let full = main_template(&example("stack.toml"));
    let lean = main_template(&example("lean.toml"));
    let group = &full["Resources"]["WebappLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(
        group["Properties"]["LogGroupName"],
        "/triad/shop-prod/webapp"
    );
    assert_eq!(group["Properties"]["RetentionInDays"], 90);
    assert_eq!(
        lean["Resources"]["WebappLogGroup"]["Properties"]["RetentionInDays"],
        30
    );
    let filter = &full["Resources"]["WebappErrorMetricFilter"]["Properties"];
    assert_eq!(filter["FilterPattern"], "{ $.level = \"ERROR\" }");
    assert_eq!(filter["LogGroupName"]["Ref"], "WebappLogGroup");
    let alarm = &full["Resources"]["WebappErrorLinesAlarm"]["Properties"];
    assert_eq!(alarm["Threshold"], 10);
    assert_eq!(
        alarm["MetricName"],
        filter["MetricTransformations"][0]["MetricName"]
    );
    assert_eq!(
        alarm["Namespace"],
        filter["MetricTransformations"][0]["MetricNamespace"]
    );
    assert!(lean["Resources"].get("WebappErrorLinesAlarm").is_none());

    let statements = full["Resources"]["InstanceRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements");
    let logs = statements
        .iter()
        .find(|s| s["Action"].to_string().contains("logs:PutLogEvents"))
        .expect("a logs statement");
    assert_eq!(
        logs["Resource"].to_string(),
        serde_json::json!([{ "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/triad/shop-prod/webapp:*" }]).to_string()
    );

    let mut texts = Vec::new();
    strings(&full["Resources"]["LaunchTemplate"], &mut texts);
    let user_data = texts.join("\n");
    for needle in [
        "LogsDirectory=triad-webapp",
        "StandardOutput=append:/var/log/triad-webapp/webapp.log",
        "dnf install -y amazon-cloudwatch-agent",
        "\"file_path\": \"/var/log/triad-webapp/webapp.log\"",
        "\"log_group_name\": \"/triad/shop-prod/webapp\"",
        "\"log_stream_name\": \"$az/$instance_id\"",
    ] {
        assert!(user_data.contains(needle), "user data lacks {needle:?}");
    }
}

#[test]
fn outputs_name_what_the_backend_reads() {
    let template = main_template(&example("stack.toml"));
    let names = template["Outputs"].as_object().expect("outputs");
    for name in [
        outputs::ALB_DNS_NAME,
        outputs::DB_ENDPOINT,
        outputs::DB_INSTANCE_ID,
        outputs::DB_SECRET_ARN,
        outputs::ASG_NAME,
        outputs::TARGET_GROUP_ARN,
        outputs::TOPIC_ARN,
        outputs::TOKEN_TABLE,
        outputs::ARTEFACT_BUCKET,
    ] {
        assert!(names.contains_key(name), "{name}");
    }
    for az in ["eu-west-1a", "eu-west-1b", "eu-west-1c"] {
        assert!(names.contains_key(&outputs::public_subnet(az)), "{az}");
        assert!(names.contains_key(&outputs::private_subnet(az)), "{az}");
    }
}

#[test]
fn bootstrap_bucket_is_private_versioned_encrypted_and_tls_only() {
    let template: Value = serde_json::from_str(
        &render_bootstrap(&example("stack.toml"))
            .to_json()
            .expect("json"),
    )
    .expect("json");
    let bucket = &template["Resources"]["ArtefactBucket"]["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    let statement = &template["Resources"]["ArtefactBucketPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
    assert_eq!(
        template["Outputs"]["ArtefactBucket"]["Value"]["Ref"],
        "ArtefactBucket"
    );
    assert_eq!(
        provision::template::bootstrap_stack_name(&example("stack.toml")),
        "shop-prod-bootstrap"
    );
}

/// `[app.scaling]`: one target tracking policy per metric on the group; requests per target
/// name the load balancer and target group in the ResourceLabel; no table, no policy.
#[test]
fn scaling_policies_follow_the_scaling_table() {
    let spec = |scaling: &str| {
        StackSpec::parse(&format!(
            "name = \"shop\"\nregion = \"eu-west-1\"\n[app]\nversion = \"1.0.0\"\nmax = 6\n\
             {scaling}\n[mailer]\nsender = \"no-reply@example.com\"\n"
        ))
        .expect("a valid spec")
    };
    let none = main_template(&spec(""));
    assert!(of_type(&none, "AWS::AutoScaling::ScalingPolicy").is_empty());

    let cpu = main_template(&spec("[app.scaling]\ncpu_percent = 70\nscale_in = false"));
    let policies = of_type(&cpu, "AWS::AutoScaling::ScalingPolicy");
    assert_eq!(policies.len(), 1);
    let (id, policy) = policies[0];
    assert_eq!(id, "CpuScalingPolicy");
    let props = &policy["Properties"];
    assert_eq!(props["AutoScalingGroupName"]["Ref"], "AutoScalingGroup");
    assert_eq!(props["PolicyType"], "TargetTrackingScaling");
    let config = &props["TargetTrackingConfiguration"];
    assert_eq!(
        config["PredefinedMetricSpecification"]["PredefinedMetricType"],
        "ASGAverageCPUUtilization"
    );
    assert_eq!(config["TargetValue"], 70);
    assert_eq!(config["DisableScaleIn"], true);

    let both = main_template(&spec(
        "[app.scaling]\ncpu_percent = 70\nrequests_per_target = 500",
    ));
    let policies = of_type(&both, "AWS::AutoScaling::ScalingPolicy");
    assert_eq!(policies.len(), 2);
    let requests =
        &both["Resources"]["RequestsScalingPolicy"]["Properties"]["TargetTrackingConfiguration"];
    assert_eq!(requests["TargetValue"], 500);
    assert_eq!(requests["DisableScaleIn"], false);
    let metric = &requests["PredefinedMetricSpecification"];
    assert_eq!(metric["PredefinedMetricType"], "ALBRequestCountPerTarget");
    assert_eq!(
        metric["ResourceLabel"]["Fn::Join"],
        serde_json::json!(["/", [
            { "Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"] },
            { "Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"] },
        ]])
    );
    // The alarms evaluate one-minute metrics: detailed monitoring on the launch template.
    assert_eq!(
        both["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["Monitoring"]["Enabled"],
        true
    );
}

/// Zonal shift is on for both resources it acts on (`triad shift`), and the instances can run
/// Systems Manager commands (the slow-az fault on AWS).
#[test]
fn zonal_shift_is_enabled_on_the_load_balancer_and_the_group() {
    let template = main_template(&example("stack.toml"));
    let (_, alb) = of_type(&template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
        .into_iter()
        .next()
        .expect("a load balancer");
    let attributes = alb["Properties"]["LoadBalancerAttributes"]
        .as_array()
        .expect("attributes");
    assert!(
        attributes
            .iter()
            .any(|a| { a["Key"] == "zonal_shift.config.enabled" && a["Value"] == "true" })
    );
    let (_, asg) = of_type(&template, "AWS::AutoScaling::AutoScalingGroup")
        .into_iter()
        .next()
        .expect("a group");
    assert_eq!(
        asg["Properties"]["AvailabilityZoneImpairmentPolicy"],
        serde_json::json!({
            "ZonalShiftEnabled": true,
            "ImpairedZoneHealthCheckBehavior": "ReplaceUnhealthy",
        })
    );
    let role = &template["Resources"]["InstanceRole"]["Properties"]["ManagedPolicyArns"];
    assert!(
        role.to_string().contains("AmazonSSMManagedInstanceCore"),
        "{role}"
    );
}
