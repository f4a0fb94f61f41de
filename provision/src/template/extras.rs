//! Around the stack: alarms and their topic, the optional WAF, CloudTrail trail and Route 53
//! record, and the outputs the console and the AWS backend read.

use serde_json::{Value, json};

use super::app::{AUTO_SCALING_GROUP, LAUNCH_TEMPLATE, LOAD_BALANCER, TARGET_GROUP};
use super::data::{DATABASE, MAILER_FUNCTION, TOKEN_TABLE, USER_TOPIC};
use super::network::{PRIVATE_SUBNET, PUBLIC_SUBNET, VPC};
use super::{Stack, get_att, outputs, params, per_az, ref_, sub};

const ALARM_TOPIC: &str = "AlarmTopic";
const WEB_ACL: &str = "WebAcl";
const TRAIL_BUCKET: &str = "TrailBucket";
const TRAIL_BUCKET_POLICY: &str = "TrailBucketPolicy";

pub(super) fn add(stack: &mut Stack) {
    alarms(stack);
    if stack.spec.waf.is_some() {
        waf(stack);
    }
    if stack.spec.cloudtrail.is_some() {
        cloudtrail(stack);
    }
    if let Some(dns) = &stack.spec.dns {
        stack.add(
            "DnsRecord",
            "AWS::Route53::RecordSet",
            json!({
                "HostedZoneId": dns.hosted_zone_id,
                "Name": dns.record_name,
                "Type": "A",
                "AliasTarget": {
                    "DNSName": get_att(LOAD_BALANCER, "DNSName"),
                    "HostedZoneId": get_att(LOAD_BALANCER, "CanonicalHostedZoneID"),
                    "EvaluateTargetHealth": true,
                },
            }),
        );
    }
    add_outputs(stack);
}

fn alarms(stack: &mut Stack) {
    let spec = stack.spec;
    let tags = stack.tags("alarms", None);
    stack
        .add(
            ALARM_TOPIC,
            "AWS::SNS::Topic",
            json!({ "DisplayName": format!("{} alarms", spec.name), "Tags": tags }),
        )
        .skip_check(
            "CKV_AWS_26",
            "CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key",
        );
    if let Some(email) = &spec.alarms.email {
        stack.add(
            "AlarmEmailSubscription",
            "AWS::SNS::Subscription",
            json!({ "TopicArn": ref_(ALARM_TOPIC), "Protocol": "email", "Endpoint": email }),
        );
    }
    let actions = json!([ref_(ALARM_TOPIC)]);
    stack.add(
        "CpuHighAlarm",
        "AWS::CloudWatch::Alarm",
        json!({
            "AlarmDescription": format!(
                "{}: average CPU of the application instances above {} % for 10 minutes",
                spec.name, spec.alarms.cpu_high_percent
            ),
            "Namespace": "AWS/EC2",
            "MetricName": "CPUUtilization",
            "Dimensions": [{ "Name": "AutoScalingGroupName", "Value": ref_(AUTO_SCALING_GROUP) }],
            "Statistic": "Average",
            "Period": 300,
            "EvaluationPeriods": 2,
            "Threshold": spec.alarms.cpu_high_percent,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
            "OKActions": actions,
        }),
    );
    if let Some(threshold) = spec.logs.error_alarm_threshold {
        stack.add(
            "WebappErrorLinesAlarm",
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmDescription": format!(
                    "{}: more than {threshold} ERROR lines in the webapp's log in 5 minutes",
                    spec.name
                ),
                "Namespace": format!("{}/{}", super::WEBAPP_ERRORS_NAMESPACE, spec.name),
                "MetricName": super::WEBAPP_ERRORS_METRIC,
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": actions,
                "OKActions": actions,
            }),
        );
    }
    let metric = |id: &str, name: &str| {
        json!({
            "Id": id,
            "ReturnData": false,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": name,
                    "Dimensions": [{
                        "Name": "LoadBalancer",
                        "Value": get_att(LOAD_BALANCER, "LoadBalancerFullName"),
                    }],
                },
                "Period": 60,
                "Stat": "Sum",
            },
        })
    };
    stack.add(
        "Alb5xxRateAlarm",
        "AWS::CloudWatch::Alarm",
        json!({
            "AlarmDescription": format!(
                "{}: 5xx responses above {} % of requests for 5 minutes",
                spec.name, spec.alarms.alb_5xx_percent
            ),
            "Metrics": [
                metric("requests", "RequestCount"),
                metric("target5xx", "HTTPCode_Target_5XX_Count"),
                metric("elb5xx", "HTTPCode_ELB_5XX_Count"),
                {
                    "Id": "rate",
                    "Label": "5xx percent of requests",
                    "Expression": "100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests",
                    "ReturnData": true,
                },
            ],
            "EvaluationPeriods": 5,
            "DatapointsToAlarm": 5,
            "Threshold": spec.alarms.alb_5xx_percent,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
            "OKActions": actions,
        }),
    );
    stack.add(
        "DbFreeStorageLowAlarm",
        "AWS::CloudWatch::Alarm",
        json!({
            "AlarmDescription": format!(
                "{}: database free storage below {} GB",
                spec.name, spec.alarms.db_free_storage_low_gb
            ),
            "Namespace": "AWS/RDS",
            "MetricName": "FreeStorageSpace",
            "Dimensions": [{ "Name": "DBInstanceIdentifier", "Value": ref_(DATABASE) }],
            "Statistic": "Minimum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": u64::from(spec.alarms.db_free_storage_low_gb) * 1024 * 1024 * 1024,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            "AlarmActions": actions,
            "OKActions": actions,
        }),
    );
}

fn visibility(name: &str) -> Value {
    json!({
        "SampledRequestsEnabled": true,
        "CloudWatchMetricsEnabled": true,
        "MetricName": name,
    })
}

fn waf(stack: &mut Stack) {
    let spec = stack.spec;
    let mut rules: Vec<Value> = [
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesSQLiRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    ]
    .iter()
    .enumerate()
    .map(|(priority, name)| {
        json!({
            "Name": name,
            "Priority": priority,
            "OverrideAction": { "None": {} },
            "Statement": { "ManagedRuleGroupStatement": { "VendorName": "AWS", "Name": name } },
            "VisibilityConfig": visibility(name),
        })
    })
    .collect();
    if let Some(limit) = spec.waf.as_ref().and_then(|w| w.rate_limit) {
        rules.push(json!({
            "Name": "RateLimitPerIp",
            "Priority": rules.len(),
            "Action": { "Block": {} },
            "Statement": { "RateBasedStatement": { "Limit": limit, "AggregateKeyType": "IP" } },
            "VisibilityConfig": visibility("RateLimitPerIp"),
        }));
    }
    let tags = stack.tags("waf", None);
    stack
        .add(
            WEB_ACL,
            "AWS::WAFv2::WebACL",
            json!({
                "Scope": "REGIONAL",
                "Description": format!("{}: managed rule groups in front of the load balancer", spec.name),
                "DefaultAction": { "Allow": {} },
                "Rules": rules,
                "VisibilityConfig": visibility(&format!("{}-waf", spec.name)),
                "Tags": tags,
            }),
        );
    stack.add(
        "WebAclAssociation",
        "AWS::WAFv2::WebACLAssociation",
        json!({ "ResourceArn": ref_(LOAD_BALANCER), "WebACLArn": get_att(WEB_ACL, "Arn") }),
    );
}

fn cloudtrail(stack: &mut Stack) {
    let spec = stack.spec;
    let retention = spec
        .cloudtrail
        .as_ref()
        .map(|c| c.log_retention_days)
        .unwrap_or(365);
    let tags = stack.tags("trail-logs", None);
    stack
        .add(
            TRAIL_BUCKET,
            "AWS::S3::Bucket",
            json!({
                "VersioningConfiguration": { "Status": "Enabled" },
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{
                        "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" },
                    }],
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true,
                },
                "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
                "LifecycleConfiguration": {
                    "Rules": [{
                        "Id": "expire-trail-logs",
                        "Status": "Enabled",
                        "ExpirationInDays": retention,
                        "NoncurrentVersionExpiration": { "NoncurrentDays": retention },
                    }],
                },
                "Tags": tags,
            }),
        )
        .keep_on_delete("Retain")
        .skip_check(
            "CKV_AWS_18",
            "This is the log bucket; logging it into itself would loop",
        );
    let bucket_arn = get_att(TRAIL_BUCKET, "Arn");
    let objects = sub(&format!(
        "${{{TRAIL_BUCKET}.Arn}}/AWSLogs/${{AWS::AccountId}}/*"
    ));
    let trail_arn = sub(&format!(
        "arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{}-trail",
        spec.name
    ));
    stack.add(
        TRAIL_BUCKET_POLICY,
        "AWS::S3::BucketPolicy",
        json!({
            "Bucket": ref_(TRAIL_BUCKET),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "CloudTrailAclCheck",
                        "Effect": "Allow",
                        "Principal": { "Service": "cloudtrail.amazonaws.com" },
                        "Action": "s3:GetBucketAcl",
                        "Resource": bucket_arn,
                        "Condition": { "StringEquals": { "aws:SourceArn": trail_arn } },
                    },
                    {
                        "Sid": "CloudTrailWrite",
                        "Effect": "Allow",
                        "Principal": { "Service": "cloudtrail.amazonaws.com" },
                        "Action": "s3:PutObject",
                        "Resource": objects,
                        "Condition": { "StringEquals": { "aws:SourceArn": trail_arn } },
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [bucket_arn, sub(&format!("${{{TRAIL_BUCKET}.Arn}}/*"))],
                        "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                    },
                ],
            },
        }),
    );
    let tags = stack.tags("trail", None);
    stack
        .add(
            "Trail",
            "AWS::CloudTrail::Trail",
            json!({
                "TrailName": format!("{}-trail", spec.name),
                "S3BucketName": ref_(TRAIL_BUCKET),
                "IsLogging": true,
                "IsMultiRegionTrail": true,
                "IncludeGlobalServiceEvents": true,
                "EnableLogFileValidation": true,
                "Tags": tags,
            }),
        )
        .depends_on([TRAIL_BUCKET_POLICY])
        .skip_check(
            "CKV_AWS_35",
            "Log files are encrypted with SSE-S3 in the private, TLS-only log bucket",
        );
}

fn add_outputs(stack: &mut Stack) {
    let spec = stack.spec;
    stack.output(
        outputs::ALB_DNS_NAME,
        "DNS name of the load balancer",
        get_att(LOAD_BALANCER, "DNSName"),
    );
    let scheme = if spec.https.is_some() {
        "https"
    } else {
        "http"
    };
    let url = match &spec.dns {
        Some(dns) => Value::String(format!("{scheme}://{}", dns.record_name)),
        None => sub(&format!("{scheme}://${{{LOAD_BALANCER}.DNSName}}")),
    };
    stack.output(outputs::URL, "Public URL of the web app", url);
    stack.output(
        outputs::DB_ENDPOINT,
        "Database endpoint address",
        get_att(DATABASE, "Endpoint.Address"),
    );
    stack.output(
        outputs::DB_INSTANCE_ID,
        "RDS instance identifier",
        ref_(DATABASE),
    );
    stack.output(
        outputs::DB_SECRET_ARN,
        "Secrets Manager secret holding the database master credentials",
        get_att(DATABASE, "MasterUserSecret.SecretArn"),
    );
    stack.output(
        outputs::ASG_NAME,
        "Auto Scaling group of the application instances",
        ref_(AUTO_SCALING_GROUP),
    );
    stack.output(
        outputs::TARGET_GROUP_ARN,
        "Target group of the application instances",
        ref_(TARGET_GROUP),
    );
    stack.output(
        outputs::LAUNCH_TEMPLATE_ID,
        "Launch template of the application instances",
        ref_(LAUNCH_TEMPLATE),
    );
    stack.output(
        outputs::TOPIC_ARN,
        "Topic of user-created events",
        ref_(USER_TOPIC),
    );
    stack.output(
        outputs::ALARM_TOPIC_ARN,
        "Topic the alarms notify",
        ref_(ALARM_TOPIC),
    );
    stack.output(
        outputs::TOKEN_TABLE,
        "DynamoDB table of verification tokens",
        ref_(TOKEN_TABLE),
    );
    stack.output(
        outputs::ARTEFACT_BUCKET,
        "Bucket holding webapp and mailer releases",
        ref_(params::ARTEFACT_BUCKET),
    );
    stack.output(
        outputs::MAILER_FUNCTION,
        "Mailer Lambda function",
        ref_(MAILER_FUNCTION),
    );
    stack.output(outputs::VPC_ID, "The stack's VPC", ref_(VPC));
    for az in &spec.azs {
        stack.output(
            outputs::public_subnet(az),
            &format!("Public subnet in {az}"),
            ref_(&per_az(PUBLIC_SUBNET, az)),
        );
        stack.output(
            outputs::private_subnet(az),
            &format!("Private subnet in {az}"),
            ref_(&per_az(PRIVATE_SUBNET, az)),
        );
    }
}
