//! The data tier and the mailer: RDS PostgreSQL (private, encrypted, Multi-AZ, password kept by
//! RDS in Secrets Manager), the "user created" topic, the DynamoDB token table, and the mailer
//! Lambda function subscribed to the topic with an SQS dead-letter queue.

use contract::{env, tokens};
use serde_json::{Value, json};

use super::app::{DB_PORT, DB_SECURITY_GROUP};
use super::network::PRIVATE_SUBNET;
use super::{Stack, assume_role_by, get_att, params, policy_document, ref_, refs, sub};

pub(super) const DATABASE: &str = "Database";
const DB_SUBNET_GROUP: &str = "DbSubnetGroup";
const DB_MONITORING_ROLE: &str = "DbMonitoringRole";
pub(super) const USER_TOPIC: &str = "UserCreatedTopic";
pub(super) const TOKEN_TABLE: &str = "TokenTable";
pub(super) const MAILER_FUNCTION: &str = "MailerFunction";
const MAILER_ROLE: &str = "MailerRole";
const MAILER_DLQ: &str = "MailerDeadLetterQueue";

pub(super) fn add(stack: &mut Stack) {
    database(stack);
    messaging(stack);
    mailer(stack);
}

fn database(stack: &mut Stack) {
    let spec = stack.spec;
    let db = &spec.db;
    let private_subnets = stack.per_az_ids(PRIVATE_SUBNET);
    let tags = stack.tags("db-subnets", None);
    stack.add(
        DB_SUBNET_GROUP,
        "AWS::RDS::DBSubnetGroup",
        json!({
            "DBSubnetGroupDescription": format!("{}: the database's private subnets", spec.name),
            "SubnetIds": refs(&private_subnets),
            "Tags": tags,
        }),
    );
    let tags = stack.tags("db-monitoring-role", None);
    stack.add(
        DB_MONITORING_ROLE,
        "AWS::IAM::Role",
        json!({
            "Description": "RDS enhanced monitoring",
            "AssumeRolePolicyDocument": assume_role_by("monitoring.rds.amazonaws.com"),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")],
            "Tags": tags,
        }),
    );
    let tags = stack.tags("db", None);
    let database = stack.add(
        DATABASE,
        "AWS::RDS::DBInstance",
        json!({
            "Engine": "postgres",
            "EngineVersion": db.engine_version,
            "DBInstanceClass": db.instance_class,
            "AllocatedStorage": db.storage_gb.to_string(),
            "StorageType": "gp3",
            "StorageEncrypted": true,
            "MultiAZ": db.multi_az,
            "DBName": db.database_name,
            "MasterUsername": db.master_username,
            "ManageMasterUserPassword": true,
            "Port": DB_PORT.to_string(),
            "DBSubnetGroupName": ref_(DB_SUBNET_GROUP),
            "VPCSecurityGroups": [get_att(DB_SECURITY_GROUP, "GroupId")],
            "PubliclyAccessible": false,
            "BackupRetentionPeriod": db.backup_retention_days,
            "DeletionProtection": db.deletion_protection,
            "CopyTagsToSnapshot": true,
            "AutoMinorVersionUpgrade": true,
            "EnableIAMDatabaseAuthentication": true,
            "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
            "MonitoringInterval": 60,
            "MonitoringRoleArn": get_att(DB_MONITORING_ROLE, "Arn"),
            "Tags": tags,
        }),
    );
    database.keep_on_delete("Snapshot");
    if !db.multi_az {
        database.skip_check(
            "CKV_AWS_157",
            "Multi-AZ is turned off in the spec (db.multi_az = false)",
        );
    }
}

fn messaging(stack: &mut Stack) {
    let tags = stack.tags("user-created", None);
    stack.add(
        USER_TOPIC,
        "AWS::SNS::Topic",
        json!({
            "DisplayName": format!("{} user created", stack.spec.name),
            "KmsMasterKeyId": "alias/aws/sns",
            "Tags": tags,
        }),
    );
    let tags = stack.tags("tokens", None);
    stack
        .add(
            TOKEN_TABLE,
            "AWS::DynamoDB::Table",
            json!({
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{
                    "AttributeName": tokens::PARTITION_KEY,
                    "AttributeType": "S",
                }],
                "KeySchema": [{ "AttributeName": tokens::PARTITION_KEY, "KeyType": "HASH" }],
                "TimeToLiveSpecification": {
                    "AttributeName": tokens::ATTR_EXPIRES_AT,
                    "Enabled": true,
                },
                "PointInTimeRecoverySpecification": { "PointInTimeRecoveryEnabled": true },
                "SSESpecification": { "SSEEnabled": true },
                "Tags": tags,
            }),
        )
        .keep_on_delete("Delete")
        .skip_check(
            "CKV_AWS_119",
            "Encrypted with the AWS managed key: tokens expire within a day and need no key policy",
        );
}

fn mailer(stack: &mut Stack) {
    let spec = stack.spec;
    let function_name = format!("{}-mailer", spec.name);
    let tags = stack.tags("mailer-dlq", None);
    stack
        .add(
            MAILER_DLQ,
            "AWS::SQS::Queue",
            json!({
                "MessageRetentionPeriod": 1_209_600,
                "SqsManagedSseEnabled": true,
                "Tags": tags,
            }),
        )
        .skip_check(
            "CKV_AWS_27",
            "Encrypted at rest with SQS-managed SSE (SqsManagedSseEnabled), which the check does not recognise",
        );
    let (_, domain) = spec.mailer.sender.split_once('@').unwrap_or_default();
    let identities = json!([
        sub(&format!(
            "arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/{}",
            spec.mailer.sender
        )),
        sub(&format!(
            "arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/{domain}"
        )),
    ]);
    let tags = stack.tags("mailer-role", None);
    stack.add(
        MAILER_ROLE,
        "AWS::IAM::Role",
        json!({
            "Description": "Mailer: put and get tokens, send e-mail from the sender identity, write its logs",
            "AssumeRolePolicyDocument": assume_role_by("lambda.amazonaws.com"),
            "Policies": [{
                "PolicyName": "mailer",
                "PolicyDocument": policy_document(vec![
                    (
                        vec!["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
                        json!([get_att(TOKEN_TABLE, "Arn")]),
                    ),
                    (vec!["ses:SendEmail", "ses:SendRawEmail"], identities),
                    (vec!["sqs:SendMessage"], json!([get_att(MAILER_DLQ, "Arn")])),
                    (
                        vec!["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                        json!([sub(&format!(
                            "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{function_name}:*"
                        ))]),
                    ),
                ]),
            }],
            "Tags": tags,
        }),
    );
    let verify_base_url = match (&spec.dns, &spec.https) {
        (Some(dns), Some(_)) => Value::String(format!("https://{}", dns.record_name)),
        (Some(dns), None) => Value::String(format!("http://{}", dns.record_name)),
        (None, Some(_)) => sub(&format!(
            "https://${{{}.DNSName}}",
            super::app::LOAD_BALANCER
        )),
        (None, None) => sub(&format!(
            "http://${{{}.DNSName}}",
            super::app::LOAD_BALANCER
        )),
    };
    let mut properties = json!({
        "FunctionName": function_name,
        "Description": "Sends the verification e-mail for each user-created event",
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "Architectures": ["x86_64"],
        "MemorySize": 256,
        "Timeout": 30,
        "Role": get_att(MAILER_ROLE, "Arn"),
        "Code": {
            "S3Bucket": ref_(params::ARTEFACT_BUCKET),
            "S3Key": sub(&format!("mailer/${{{}}}/bootstrap.zip", params::MAILER_VERSION)),
        },
        "Environment": {
            "Variables": {
                env::TOKEN_TABLE: ref_(TOKEN_TABLE),
                env::MAIL_SENDER: spec.mailer.sender,
                env::VERIFY_BASE_URL: verify_base_url,
                env::TOKEN_TTL_SECONDS: spec.mailer.token_ttl_seconds.to_string(),
            },
        },
        "DeadLetterConfig": { "TargetArn": get_att(MAILER_DLQ, "Arn") },
        "Tags": stack.tags("mailer", None),
    });
    if let Some(reserved) = spec.mailer.reserved_concurrency {
        properties["ReservedConcurrentExecutions"] = json!(reserved);
    }
    let function = stack.add(MAILER_FUNCTION, "AWS::Lambda::Function", properties);
    function
        .skip_check(
            "CKV_AWS_117",
            "The mailer calls only DynamoDB and SES public endpoints and reaches nothing in the VPC",
        )
        .skip_check(
            "CKV_AWS_173",
            "The environment holds names only (table, sender, URL, TTL), no secrets",
        );
    if spec.mailer.reserved_concurrency.is_none() {
        function.skip_check(
            "CKV_AWS_115",
            "No reserved concurrency in the spec (mailer.reserved_concurrency); it shares the account pool",
        );
    }
    stack.add(
        "MailerSubscription",
        "AWS::SNS::Subscription",
        json!({
            "TopicArn": ref_(USER_TOPIC),
            "Protocol": "lambda",
            "Endpoint": get_att(MAILER_FUNCTION, "Arn"),
        }),
    );
    stack.add(
        "MailerInvokePermission",
        "AWS::Lambda::Permission",
        json!({
            "Action": "lambda:InvokeFunction",
            "FunctionName": ref_(MAILER_FUNCTION),
            "Principal": "sns.amazonaws.com",
            "SourceArn": ref_(USER_TOPIC),
        }),
    );
}
