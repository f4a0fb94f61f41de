//! The CloudFormation templates generated from a [`StackSpec`]: the main stack and the small
//! `<name>-bootstrap` stack holding the artefact bucket.
//!
//! Templates are built as data (resources as `serde_json::Value`s assembled by code, never by
//! filling text), and rendered with every object's keys sorted, so the same spec always gives
//! a byte-identical template whatever map ordering serde_json was built with. JSON is the
//! primary format; YAML is the same document through `serde_norway`.
//!
//! Checks that the templates knowingly do not satisfy are declared next to the resource, in
//! `Metadata.checkov.skip`, each with a one-line reason; some depend on the spec (such a skip
//! exists only while the feature its check asks for is turned off).

mod app;
mod bootstrap;
mod data;
mod extras;
mod network;
mod user_data;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::spec::StackSpec;

pub use bootstrap::{artefact_bucket_name, bootstrap_stack_name, render_bootstrap};
pub(crate) use user_data::ENV_FILE;
pub use user_data::webapp_user_data;

/// Names of the main stack's parameters, set by `up` and `deploy`.
pub mod params {
    /// The webapp release the instances download (`webapp/<version>/webapp`).
    pub const APP_VERSION: &str = "AppVersion";
    /// The mailer release the Lambda function runs (`mailer/<version>/bootstrap.zip`).
    pub const MAILER_VERSION: &str = "MailerVersion";
    /// The instances' image: an AMI id, or an SSM parameter path resolving to one.
    pub const AMI: &str = "AmiId";
    /// The artefact bucket, created by the bootstrap stack.
    pub const ARTEFACT_BUCKET: &str = "ArtefactBucket";
}

/// The webapp's CloudWatch Logs group for stack `name`: the template creates it, the instances'
/// CloudWatch agent writes one stream per instance into it (`<az>/<instance-id>`), the
/// instance role may write only there, and `triad logs --aws` reads it.
pub fn webapp_log_group(name: &str) -> String {
    format!("/triad/{name}/webapp")
}

/// The CloudWatch namespace and metric of the webapp log group's `ERROR` line count.
pub const WEBAPP_ERRORS_NAMESPACE: &str = "triad";
pub const WEBAPP_ERRORS_METRIC: &str = "WebappErrorLines";

/// The instance tag naming the webapp version an instance was launched to run: the launch
/// template puts it on every instance (`AppVersion` on a triad stack, the deploy's version on
/// an attached group's new launch template version), and snapshots read it back.
pub const VERSION_TAG: &str = "triad:version";

/// Names of the main stack's outputs. Per-AZ subnet outputs are
/// [`outputs::public_subnet`]`(az)` and [`outputs::private_subnet`]`(az)`.
pub mod outputs {
    use crate::spec::StackSpec;

    pub const ALB_DNS_NAME: &str = "AlbDnsName";
    pub const URL: &str = "Url";
    pub const DB_ENDPOINT: &str = "DbEndpoint";
    pub const DB_INSTANCE_ID: &str = "DbInstanceId";
    pub const DB_SECRET_ARN: &str = "DbSecretArn";
    pub const ASG_NAME: &str = "AsgName";
    pub const TARGET_GROUP_ARN: &str = "TargetGroupArn";
    pub const LAUNCH_TEMPLATE_ID: &str = "LaunchTemplateId";
    pub const TOPIC_ARN: &str = "TopicArn";
    pub const ALARM_TOPIC_ARN: &str = "AlarmTopicArn";
    pub const TOKEN_TABLE: &str = "TokenTableName";
    pub const ARTEFACT_BUCKET: &str = "ArtefactBucket";
    pub const MAILER_FUNCTION: &str = "MailerFunctionName";
    pub const VPC_ID: &str = "VpcId";

    /// `PublicSubnetA` for `eu-west-1a`.
    pub fn public_subnet(az: &str) -> String {
        format!("PublicSubnet{}", StackSpec::az_letter(az))
    }

    /// `PrivateSubnetA` for `eu-west-1a`.
    pub fn private_subnet(az: &str) -> String {
        format!("PrivateSubnet{}", StackSpec::az_letter(az))
    }
}

/// Why a template could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot write the template as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the template as YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// A CloudFormation template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    #[serde(rename = "AWSTemplateFormatVersion")]
    pub format_version: String,
    pub description: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Value>,
}

/// One resource of a template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_replace_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    pub properties: Value,
}

impl Resource {
    fn new(kind: &str, properties: Value) -> Resource {
        Resource {
            kind: kind.to_string(),
            condition: None,
            depends_on: Vec::new(),
            deletion_policy: None,
            update_replace_policy: None,
            metadata: None,
            properties,
        }
    }

    /// Adds an explicit dependency (CloudFormation orders `Ref`/`GetAtt` on its own).
    fn depends_on<I, S>(&mut self, ids: I) -> &mut Resource
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self.depends_on.sort();
        self.depends_on.dedup();
        self
    }

    /// Declares a checkov check this resource knowingly does not satisfy, and why.
    fn skip_check(&mut self, id: &str, reason: &str) -> &mut Resource {
        let metadata = self.metadata.get_or_insert_with(|| json!({}));
        let skips = &mut metadata["checkov"]["skip"];
        if !skips.is_array() {
            *skips = json!([]);
        }
        if let Some(list) = skips.as_array_mut() {
            list.push(json!({ "id": id, "comment": reason }));
        }
        self
    }

    /// Declares a cfn-lint rule this resource knowingly breaks, and why (the reason sits beside
    /// the rule id, in `Metadata.cfn-lint.reasons`).
    fn ignore_lint(&mut self, rule: &str, reason: &str) -> &mut Resource {
        let metadata = self.metadata.get_or_insert_with(|| json!({}));
        let lint = &mut metadata["cfn-lint"];
        let ignored = &mut lint["config"]["ignore_checks"];
        if !ignored.is_array() {
            *ignored = json!([]);
        }
        if let Some(list) = ignored.as_array_mut() {
            list.push(json!(rule));
        }
        lint["reasons"][rule] = json!(reason);
        self
    }

    /// What happens to the resource's data when it is deleted or replaced.
    fn keep_on_delete(&mut self, policy: &str) -> &mut Resource {
        self.deletion_policy = Some(policy.to_string());
        self.update_replace_policy = Some(policy.to_string());
        self
    }
}

impl Template {
    /// The template as pretty-printed JSON with sorted keys, ending in a newline.
    pub fn to_json(&self) -> Result<String, TemplateError> {
        let mut text = serde_json::to_string_pretty(&self.to_sorted_value()?)?;
        text.push('\n');
        Ok(text)
    }

    /// The same document as YAML.
    pub fn to_yaml(&self) -> Result<String, TemplateError> {
        Ok(serde_norway::to_string(&self.to_sorted_value()?)?)
    }

    /// The template as one JSON value whose objects all have sorted keys.
    pub fn to_sorted_value(&self) -> Result<Value, TemplateError> {
        Ok(sorted(serde_json::to_value(self)?))
    }
}

/// Rebuilds every object with its keys in sorted order, so the output does not depend on
/// whether serde_json keeps insertion order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().collect::<Map<String, Value>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The main stack's template.
pub fn render(spec: &StackSpec) -> Template {
    let mut stack = Stack::new(spec);
    stack.parameters();
    network::add(&mut stack);
    app::add(&mut stack);
    data::add(&mut stack);
    extras::add(&mut stack);
    Template {
        format_version: "2010-09-09".into(),
        description: format!(
            "triad stack {}: a {}-AZ web stack in {} (generated from stack.toml; edit the spec, \
             not this template)",
            spec.name,
            spec.azs.len(),
            spec.region
        ),
        parameters: stack.parameters,
        resources: stack.resources,
        outputs: stack.outputs,
    }
}

/// The template under construction.
struct Stack<'a> {
    spec: &'a StackSpec,
    parameters: BTreeMap<String, Value>,
    resources: BTreeMap<String, Resource>,
    outputs: BTreeMap<String, Value>,
}

impl<'a> Stack<'a> {
    fn new(spec: &'a StackSpec) -> Stack<'a> {
        Stack {
            spec,
            parameters: BTreeMap::new(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    fn add(&mut self, id: impl Into<String>, kind: &str, properties: Value) -> &mut Resource {
        let resource = Resource::new(kind, properties);
        match self.resources.entry(id.into()) {
            Entry::Occupied(mut slot) => {
                slot.insert(resource);
                slot.into_mut()
            }
            Entry::Vacant(slot) => slot.insert(resource),
        }
    }

    fn output(&mut self, name: impl Into<String>, description: &str, value: Value) {
        self.outputs.insert(
            name.into(),
            json!({
                "Description": description,
                "Value": value,
            }),
        );
    }

    fn parameters(&mut self) {
        let spec = self.spec;
        self.parameters.insert(
            params::APP_VERSION.into(),
            json!({
                "Type": "String",
                "Default": spec.app.version,
                "AllowedPattern": "^[A-Za-z0-9._+-]+$",
                "Description": "Webapp release the instances run (s3://<ArtefactBucket>/webapp/<version>/webapp).",
            }),
        );
        self.parameters.insert(
            params::MAILER_VERSION.into(),
            json!({
                "Type": "String",
                "Default": spec.mailer.version,
                "AllowedPattern": "^[A-Za-z0-9._+-]+$",
                "Description": "Mailer release the Lambda function runs (s3://<ArtefactBucket>/mailer/<version>/bootstrap.zip).",
            }),
        );
        let (kind, default) = match &spec.app.ami {
            crate::spec::Ami::Id(id) => ("AWS::EC2::Image::Id", id.clone()),
            crate::spec::Ami::SsmParameter(path) => (
                "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                path.clone(),
            ),
        };
        self.parameters.insert(
            params::AMI.into(),
            json!({
                "Type": kind,
                "Default": default,
                "Description": "Image of the application instances.",
            }),
        );
        self.parameters.insert(
            params::ARTEFACT_BUCKET.into(),
            json!({
                "Type": "String",
                "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                "Description": format!(
                    "Artefact bucket holding webapp and mailer releases (an output of the {} stack).",
                    bootstrap_stack_name(spec)
                ),
            }),
        );
    }

    /// `Name = <stack>-<kind>[-<az>]`, `triad:stack = <stack>` and the spec's extra tags, as a
    /// CloudFormation tag list sorted by key.
    fn tags(&self, kind: &str, az: Option<&str>) -> Value {
        Value::Array(
            self.tag_map(kind, az)
                .into_iter()
                .map(|(key, value)| json!({ "Key": key, "Value": value }))
                .collect(),
        )
    }

    fn tag_map(&self, kind: &str, az: Option<&str>) -> BTreeMap<String, String> {
        let mut tags = self.spec.tags.clone();
        tags.insert("Name".into(), self.name_of(kind, az));
        tags.insert("triad:stack".into(), self.spec.name.clone());
        tags
    }

    /// `<stack>-<kind>` or `<stack>-<kind>-<az>`.
    fn name_of(&self, kind: &str, az: Option<&str>) -> String {
        match az {
            Some(az) => format!("{}-{kind}-{az}", self.spec.name),
            None => format!("{}-{kind}", self.spec.name),
        }
    }

    /// Logical ids of the per-AZ resources with this prefix, in AZ order.
    fn per_az_ids(&self, prefix: &str) -> Vec<String> {
        self.spec.azs.iter().map(|az| per_az(prefix, az)).collect()
    }
}

/// `PublicSubnet` + `eu-west-1a` → `PublicSubnetA`.
fn per_az(prefix: &str, az: &str) -> String {
    format!("{prefix}{}", StackSpec::az_letter(az))
}

fn ref_(id: &str) -> Value {
    json!({ "Ref": id })
}

fn get_att(id: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [id, attribute] })
}

fn sub(text: &str) -> Value {
    json!({ "Fn::Sub": text })
}

fn refs(ids: &[String]) -> Value {
    Value::Array(ids.iter().map(|id| ref_(id)).collect())
}

/// An IAM policy document allowing `statements` (each `(actions, resources)`).
fn policy_document(statements: Vec<(Vec<&str>, Value)>) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements
            .into_iter()
            .map(|(actions, resources)| json!({
                "Effect": "Allow",
                "Action": actions,
                "Resource": resources,
            }))
            .collect::<Vec<_>>(),
    })
}

/// The trust policy letting an AWS service assume a role.
fn assume_role_by(service: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }],
    })
}
