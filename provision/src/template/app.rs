//! The application tier: security groups (world → ALB → app → DB, nothing else), the load
//! balancer with its target group and listeners, the instance role, the launch template and
//! the Auto Scaling group over the private subnets.

use serde_json::{Value, json};

use super::network::{PRIVATE_SUBNET, PUBLIC_SUBNET, VPC, egress_ids};
use super::{
    Stack, assume_role_by, data, get_att, params, policy_document, ref_, refs, sub, user_data,
};

pub(super) const ALB_SECURITY_GROUP: &str = "AlbSecurityGroup";
pub(super) const APP_SECURITY_GROUP: &str = "AppSecurityGroup";
pub(super) const DB_SECURITY_GROUP: &str = "DbSecurityGroup";
pub(super) const LOAD_BALANCER: &str = "LoadBalancer";
pub(super) const TARGET_GROUP: &str = "TargetGroup";
pub(super) const LAUNCH_TEMPLATE: &str = "LaunchTemplate";
pub(super) const AUTO_SCALING_GROUP: &str = "AutoScalingGroup";
const INSTANCE_ROLE: &str = "InstanceRole";
const INSTANCE_PROFILE: &str = "InstanceProfile";
pub(super) const WEBAPP_LOG_GROUP: &str = "WebappLogGroup";
const WEBAPP_ERROR_FILTER: &str = "WebappErrorMetricFilter";
/// PostgreSQL's port, used by RDS and the security groups.
pub(super) const DB_PORT: u16 = 5432;

/// A security group egress rule that matches nothing useful (loopback), replacing the default
/// allow-all egress of a group that should start no connections.
pub(super) fn no_egress() -> Value {
    json!({
        "IpProtocol": "-1",
        "CidrIp": "127.0.0.1/32",
        "Description": "No egress: this group starts no connections",
    })
}

pub(super) fn add(stack: &mut Stack) {
    security_groups(stack);
    load_balancer(stack);
    instances(stack);
    scaling_policies(stack);
}

/// The logical id of the CPU target tracking policy.
pub(super) const CPU_SCALING_POLICY: &str = "CpuScalingPolicy";
/// The logical id of the requests-per-target target tracking policy.
pub(super) const REQUESTS_SCALING_POLICY: &str = "RequestsScalingPolicy";

/// `[app.scaling]`: one target tracking policy per metric
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-autoscaling-scalingpolicy.html>,
/// <https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html>).
/// `ALBRequestCountPerTarget` names its target group with a `ResourceLabel` of the form
/// `app/<lb-name>/<lb-id>/targetgroup/<tg-name>/<tg-id>`: the load balancer's and target
/// group's full names joined by `/`. The launch template's detailed monitoring gives the
/// one-minute metrics the alarms evaluate.
fn scaling_policies(stack: &mut Stack) {
    let Some(scaling) = stack.spec.app.scaling.clone() else {
        return;
    };
    let policy = |metric: Value, target: u32| {
        json!({
            "AutoScalingGroupName": ref_(AUTO_SCALING_GROUP),
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingConfiguration": {
                "PredefinedMetricSpecification": metric,
                "TargetValue": target,
                "DisableScaleIn": !scaling.scale_in,
            },
        })
    };
    if let Some(target) = scaling.cpu_percent {
        let metric = json!({ "PredefinedMetricType": "ASGAverageCPUUtilization" });
        stack.add(
            CPU_SCALING_POLICY,
            "AWS::AutoScaling::ScalingPolicy",
            policy(metric, target),
        );
    }
    if let Some(target) = scaling.requests_per_target {
        let metric = json!({
            "PredefinedMetricType": "ALBRequestCountPerTarget",
            "ResourceLabel": {
                "Fn::Join": ["/", [
                    get_att(LOAD_BALANCER, "LoadBalancerFullName"),
                    get_att(TARGET_GROUP, "TargetGroupFullName"),
                ]],
            },
        });
        stack.add(
            REQUESTS_SCALING_POLICY,
            "AWS::AutoScaling::ScalingPolicy",
            policy(metric, target),
        );
    }
}

fn security_groups(stack: &mut Stack) {
    let spec = stack.spec;
    let port = spec.app.port;
    let mut world_ports = vec![80];
    if spec.https.is_some() {
        world_ports.push(443);
    }
    let ingress: Vec<Value> = world_ports
        .iter()
        .map(|p| {
            json!({
                "IpProtocol": "tcp",
                "FromPort": p,
                "ToPort": p,
                "CidrIp": "0.0.0.0/0",
                "Description": format!("HTTP{} from the internet", if *p == 443 { "S" } else { "" }),
            })
        })
        .collect();
    let tags = stack.tags("alb-sg", None);
    let alb_sg = stack.add(
        ALB_SECURITY_GROUP,
        "AWS::EC2::SecurityGroup",
        json!({
            "GroupDescription": "Load balancer: HTTP(S) from the internet, to the application only",
            "VpcId": ref_(VPC),
            "SecurityGroupIngress": ingress,
            "SecurityGroupEgress": [no_egress()],
            "Tags": tags,
        }),
    );
    alb_sg.skip_check(
        "CKV_AWS_260",
        "The load balancer is the stack's public entry point: port 80 must be open to the world",
    );
    stack.add(
        "AlbToAppEgress",
        "AWS::EC2::SecurityGroupEgress",
        json!({
            "GroupId": get_att(ALB_SECURITY_GROUP, "GroupId"),
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "DestinationSecurityGroupId": get_att(APP_SECURITY_GROUP, "GroupId"),
            "Description": "To the application instances",
        }),
    );

    let tags = stack.tags("app-sg", None);
    stack.add(
        APP_SECURITY_GROUP,
        "AWS::EC2::SecurityGroup",
        json!({
            "GroupDescription": "Application instances: from the load balancer only",
            "VpcId": ref_(VPC),
            "SecurityGroupIngress": [{
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "SourceSecurityGroupId": get_att(ALB_SECURITY_GROUP, "GroupId"),
                "Description": "From the load balancer",
            }],
            "SecurityGroupEgress": [{
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "CidrIp": "0.0.0.0/0",
                "Description": "HTTPS to AWS APIs (S3, Secrets Manager, SNS, DynamoDB, Logs)",
            }],
            "Tags": tags,
        }),
    );
    stack.add(
        "AppToDbEgress",
        "AWS::EC2::SecurityGroupEgress",
        json!({
            "GroupId": get_att(APP_SECURITY_GROUP, "GroupId"),
            "IpProtocol": "tcp",
            "FromPort": DB_PORT,
            "ToPort": DB_PORT,
            "DestinationSecurityGroupId": get_att(DB_SECURITY_GROUP, "GroupId"),
            "Description": "To the database",
        }),
    );

    let tags = stack.tags("db-sg", None);
    stack.add(
        DB_SECURITY_GROUP,
        "AWS::EC2::SecurityGroup",
        json!({
            "GroupDescription": "Database: PostgreSQL from the application instances only",
            "VpcId": ref_(VPC),
            "SecurityGroupIngress": [{
                "IpProtocol": "tcp",
                "FromPort": DB_PORT,
                "ToPort": DB_PORT,
                "SourceSecurityGroupId": get_att(APP_SECURITY_GROUP, "GroupId"),
                "Description": "PostgreSQL from the application instances",
            }],
            "SecurityGroupEgress": [no_egress()],
            "Tags": tags,
        }),
    );
}

fn load_balancer(stack: &mut Stack) {
    let spec = stack.spec;
    let public_subnets = stack.per_az_ids(PUBLIC_SUBNET);
    let tags = stack.tags("alb", None);
    let alb = stack.add(
        LOAD_BALANCER,
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        json!({
            "Type": "application",
            "Scheme": "internet-facing",
            "IpAddressType": "ipv4",
            "Subnets": refs(&public_subnets),
            "SecurityGroups": [ref_(ALB_SECURITY_GROUP)],
            "LoadBalancerAttributes": [
                attribute("deletion_protection.enabled", spec.alb.deletion_protection),
                attribute("load_balancing.cross_zone.enabled", true),
                attribute("routing.http.drop_invalid_header_fields.enabled", true),
                // Lets ARC's zonal shift move traffic away from one AZ (`triad shift`).
                attribute("zonal_shift.config.enabled", true),
            ],
            "Tags": tags,
        }),
    );
    alb.skip_check(
        "CKV_AWS_91",
        "Access logs are not part of the spec; request metrics per AZ come from CloudWatch",
    );
    alb.depends_on(["PublicDefaultRoute"]);

    let check = &spec.app.health_check;
    let tags = stack.tags("tg", None);
    stack.add(
        TARGET_GROUP,
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        json!({
            "VpcId": ref_(VPC),
            "TargetType": "instance",
            "Protocol": "HTTP",
            "Port": spec.app.port,
            "HealthCheckEnabled": true,
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPath": check.path,
            "HealthCheckIntervalSeconds": check.interval_seconds,
            "HealthCheckTimeoutSeconds": check.timeout_seconds,
            "HealthyThresholdCount": check.healthy_threshold,
            "UnhealthyThresholdCount": check.unhealthy_threshold,
            "Matcher": { "HttpCode": "200" },
            "TargetGroupAttributes": [
                attribute("deregistration_delay.timeout_seconds", spec.app.deregistration_delay_seconds),
            ],
            "Tags": tags,
        }),
    );

    let forward = json!([{ "Type": "forward", "TargetGroupArn": ref_(TARGET_GROUP) }]);
    match &spec.https {
        Some(https) => {
            stack.add(
                "HttpsListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": ref_(LOAD_BALANCER),
                    "Protocol": "HTTPS",
                    "Port": 443,
                    "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                    "Certificates": [{ "CertificateArn": https.certificate_arn }],
                    "DefaultActions": forward,
                }),
            );
            let http_actions = if https.redirect_http {
                json!([{
                    "Type": "redirect",
                    "RedirectConfig": {
                        "Protocol": "HTTPS",
                        "Port": "443",
                        "StatusCode": "HTTP_301",
                    },
                }])
            } else {
                forward.clone()
            };
            let listener = stack.add(
                "HttpListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                json!({
                    "LoadBalancerArn": ref_(LOAD_BALANCER),
                    "Protocol": "HTTP",
                    "Port": 80,
                    "DefaultActions": http_actions,
                }),
            );
            if !https.redirect_http {
                let reason =
                    "The spec serves plain HTTP beside HTTPS (https.redirect_http = false)";
                listener
                    .skip_check("CKV_AWS_2", reason)
                    .skip_check("CKV_AWS_103", reason);
            }
        }
        None => {
            stack
                .add(
                    "HttpListener",
                    "AWS::ElasticLoadBalancingV2::Listener",
                    json!({
                        "LoadBalancerArn": ref_(LOAD_BALANCER),
                        "Protocol": "HTTP",
                        "Port": 80,
                        "DefaultActions": forward,
                    }),
                )
                .skip_check("CKV_AWS_2", HTTP_ONLY)
                .skip_check("CKV_AWS_103", HTTP_ONLY);
        }
    }
}

const HTTP_ONLY: &str =
    "No certificate in the spec: HTTP only (add an [https] table to serve HTTPS)";

/// A load balancer or target group attribute; values are always strings.
fn attribute(key: &str, value: impl ToString) -> Value {
    json!({ "Key": key, "Value": value.to_string() })
}

/// The webapp's log group (retention from `[logs]`) and the metric filter counting its
/// `ERROR` lines (the webapp writes JSON lines, so the filter is a JSON pattern on `level`:
/// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html>).
fn webapp_logs(stack: &mut Stack, log_group: &str) {
    let spec = stack.spec;
    let tags = stack.tags("webapp-logs", None);
    stack
        .add(
            WEBAPP_LOG_GROUP,
            "AWS::Logs::LogGroup",
            json!({
                "LogGroupName": log_group,
                "RetentionInDays": spec.logs.retention_days,
                "Tags": tags,
            }),
        )
        .skip_check(
            "CKV_AWS_158",
            "CloudWatch Logs encrypts every group at rest; a customer managed key is not needed \
             for application request logs",
        )
        .skip_check(
            "CKV_AWS_338",
            "Retention is the spec's [logs] retention_days (30 days by default)",
        );
    stack.add(
        WEBAPP_ERROR_FILTER,
        "AWS::Logs::MetricFilter",
        json!({
            "LogGroupName": ref_(WEBAPP_LOG_GROUP),
            "FilterPattern": "{ $.level = \"ERROR\" }",
            "MetricTransformations": [{
                "MetricNamespace": format!("{}/{}", super::WEBAPP_ERRORS_NAMESPACE, spec.name),
                "MetricName": super::WEBAPP_ERRORS_METRIC,
                "MetricValue": "1",
                "DefaultValue": 0,
                "Unit": "Count",
            }],
        }),
    );
}

fn instances(stack: &mut Stack) {
    let spec = stack.spec;
    let log_group = super::webapp_log_group(&spec.name);
    webapp_logs(stack, &log_group);
    let tags = stack.tags("instance-role", None);
    stack.add(
        INSTANCE_ROLE,
        "AWS::IAM::Role",
        json!({
            "Description": "Application instances: read releases, the DB secret and tokens; publish user events; write logs",
            "AssumeRolePolicyDocument": assume_role_by("ec2.amazonaws.com"),
            // Systems Manager's agent (Run Command, for the slow-az fault's network latency).
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore")],
            "Policies": [{
                "PolicyName": "webapp",
                "PolicyDocument": policy_document(vec![
                    (
                        vec!["s3:GetObject"],
                        json!([sub(&format!("arn:${{AWS::Partition}}:s3:::${{{}}}/webapp/*", params::ARTEFACT_BUCKET))]),
                    ),
                    (
                        vec!["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                        json!([get_att(data::DATABASE, "MasterUserSecret.SecretArn")]),
                    ),
                    (vec!["sns:Publish"], json!([ref_(data::USER_TOPIC)])),
                    (
                        vec!["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                        json!([get_att(data::TOKEN_TABLE, "Arn")]),
                    ),
                    (
                        vec![
                            "logs:CreateLogStream",
                            "logs:DescribeLogStreams",
                            "logs:PutLogEvents",
                        ],
                        json!([sub(&format!(
                            "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{log_group}:*"
                        ))]),
                    ),
                ]),
            }],
            "Tags": tags,
        }),
    );
    stack.add(
        INSTANCE_PROFILE,
        "AWS::IAM::InstanceProfile",
        json!({ "Roles": [ref_(INSTANCE_ROLE)] }),
    );

    let instance_tags = stack.tag_map("app", None);
    let tag_list = |resource_type: &str| {
        json!({
            "ResourceType": resource_type,
            "Tags": instance_tags
                .iter()
                .map(|(k, v)| json!({ "Key": k, "Value": v }))
                .collect::<Vec<_>>(),
        })
    };
    // Instances get their tags from the Auto Scaling group, except the version they run,
    // which changes with each launch template version; volumes get theirs from the template.
    let data_tags = json!([
        {
            "ResourceType": "instance",
            "Tags": [{ "Key": super::VERSION_TAG, "Value": ref_(params::APP_VERSION) }],
        },
        tag_list("volume"),
    ]);
    let lt_name_tags = stack.tags("lt", None);
    stack.add(
        LAUNCH_TEMPLATE,
        "AWS::EC2::LaunchTemplate",
        json!({
            "TagSpecifications": [{
                "ResourceType": "launch-template",
                "Tags": lt_name_tags,
            }],
            "LaunchTemplateData": {
                "ImageId": ref_(params::AMI),
                "InstanceType": spec.app.instance_type,
                "IamInstanceProfile": { "Arn": get_att(INSTANCE_PROFILE, "Arn") },
                "SecurityGroupIds": [get_att(APP_SECURITY_GROUP, "GroupId")],
                "MetadataOptions": {
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
                "Monitoring": { "Enabled": true },
                "BlockDeviceMappings": [{
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "VolumeType": "gp3",
                        "VolumeSize": 8,
                        "Encrypted": true,
                        "DeleteOnTermination": true,
                    },
                }],
                "UserData": { "Fn::Base64": user_data::webapp_user_data(spec) },
                "TagSpecifications": data_tags,
            },
        }),
    );

    let private_subnets = stack.per_az_ids(PRIVATE_SUBNET);
    let asg_tags: Vec<Value> = stack
        .tag_map("app", None)
        .into_iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v, "PropagateAtLaunch": true }))
        .collect();
    // Instances fetch their release and reach AWS APIs at boot: the way out must exist first.
    let depends = egress_ids(stack);
    let mut group = json!({
        "VPCZoneIdentifier": refs(&private_subnets),
        "LaunchTemplate": {
            "LaunchTemplateId": ref_(LAUNCH_TEMPLATE),
            "Version": get_att(LAUNCH_TEMPLATE, "LatestVersionNumber"),
        },
        "MinSize": spec.app.min.to_string(),
        "MaxSize": spec.app.max.to_string(),
        "DesiredCapacity": spec.app.desired.to_string(),
        "HealthCheckType": "ELB",
        "HealthCheckGracePeriod": spec.app.health_check_grace_period_seconds,
        "TargetGroupARNs": [ref_(TARGET_GROUP)],
        "MetricsCollection": [{ "Granularity": "1Minute" }],
        // Registered with ARC's zonal shift: a shifted AZ is treated as impaired (no launch
        // there); unhealthy instances are still replaced everywhere, elsewhere.
        "AvailabilityZoneImpairmentPolicy": {
            "ZonalShiftEnabled": true,
            "ImpairedZoneHealthCheckBehavior": "ReplaceUnhealthy",
        },
        "Tags": asg_tags,
    });
    // The warmup of new instances, and of every refresh that sets none (AWS's
    // DefaultInstanceWarmup).
    if let (Some(warmup), Some(props)) = (
        spec.app.default_instance_warmup_seconds,
        group.as_object_mut(),
    ) {
        props.insert("DefaultInstanceWarmup".into(), json!(warmup));
    }
    stack
        .add(
            AUTO_SCALING_GROUP,
            "AWS::AutoScaling::AutoScalingGroup",
            group,
        )
        .depends_on(depends);
}
