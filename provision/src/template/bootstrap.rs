//! The bootstrap stack `<name>-bootstrap`: the private artefact bucket that holds webapp
//! releases and mailer packages. It exists before the main stack, so the instances and the
//! Lambda function find their code when they are created.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Resource, Template, get_att, ref_, sub};
use crate::spec::StackSpec;

const BUCKET: &str = "ArtefactBucket";

/// `<name>-bootstrap`.
pub fn bootstrap_stack_name(spec: &StackSpec) -> String {
    format!("{}-bootstrap", spec.name)
}

/// The artefact bucket's name for `spec` in `account` and `region`:
/// `<name>-artefacts-<account>-<region>`. The template passes CloudFormation's pseudo
/// parameters, so the name is known before the bucket exists (plans use it).
pub fn artefact_bucket_name(spec: &StackSpec, account: &str, region: &str) -> String {
    format!("{}-artefacts-{account}-{region}", spec.name)
}

/// The bootstrap stack's template: a versioned, encrypted bucket with public access blocked
/// and a TLS-only policy. Its name is `<name>-artefacts-<account>-<region>`; the output
/// `ArtefactBucket` is what the main stack's parameter of the same name receives.
pub fn render_bootstrap(spec: &StackSpec) -> Template {
    let mut tags = spec.tags.clone();
    tags.insert("Name".into(), format!("{}-artefacts", spec.name));
    tags.insert("triad:stack".into(), spec.name.clone());
    let tags: Vec<_> = tags
        .into_iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect();
    let mut bucket = Resource::new(
        "AWS::S3::Bucket",
        json!({
            "BucketName": sub(&artefact_bucket_name(spec, "${AWS::AccountId}", "${AWS::Region}")),
            "VersioningConfiguration": { "Status": "Enabled" },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{
                    "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" },
                    "BucketKeyEnabled": true,
                }],
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "BlockPublicPolicy": true,
                "IgnorePublicAcls": true,
                "RestrictPublicBuckets": true,
            },
            "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
            "Tags": tags,
        }),
    );
    bucket.keep_on_delete("Retain").skip_check(
        "CKV_AWS_18",
        "Releases are written only by triad up/deploy; access logging is not part of the spec",
    );
    let policy = Resource::new(
        "AWS::S3::BucketPolicy",
        json!({
            "Bucket": ref_(BUCKET),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [get_att(BUCKET, "Arn"), sub(&format!("${{{BUCKET}.Arn}}/*"))],
                    "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                }],
            },
        }),
    );
    let resources = BTreeMap::from([
        (BUCKET.to_string(), bucket),
        ("ArtefactBucketPolicy".to_string(), policy),
    ]);
    let outputs = BTreeMap::from([
        (
            "ArtefactBucket".to_string(),
            json!({ "Description": "Bucket holding webapp and mailer releases", "Value": ref_(BUCKET) }),
        ),
        (
            "ArtefactBucketArn".to_string(),
            json!({ "Description": "ARN of the artefact bucket", "Value": get_att(BUCKET, "Arn") }),
        ),
    ]);
    Template {
        format_version: "2010-09-09".into(),
        description: format!(
            "triad bootstrap stack for {}: the artefact bucket holding webapp releases and mailer \
             packages (generated from stack.toml)",
            spec.name
        ),
        parameters: BTreeMap::new(),
        resources,
        outputs,
    }
}
