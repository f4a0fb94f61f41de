//! The artefact bucket and what goes in it. `triad up` first makes sure the small
//! `<name>-bootstrap` stack (the bucket) exists, then uploads the releases the main stack
//! refers to — `webapp/<version>/webapp` and `mailer/<version>/bootstrap.zip` — skipping an
//! object that is already there with the same SHA-256 (kept in the object's `sha256`
//! metadata), so re-running `up` uploads nothing new.

use std::collections::BTreeMap;

use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::AwsCloud;
use super::error::from_sdk;
use crate::port::{Cloud, CloudError, DesiredStack, ProvisionEvent, StackRef};
use crate::spec::StackSpec;
use crate::template::{bootstrap_stack_name, render_bootstrap};

/// The metadata key holding an artefact's SHA-256 (lowercase hex).
pub const SHA256_METADATA: &str = "sha256";

/// The bootstrap template's logical id of the bucket.
const BUCKET_LOGICAL_ID: &str = "ArtefactBucket";

/// `webapp/<version>/webapp`: where a webapp release lives in the artefact bucket.
pub fn webapp_key(version: &str) -> String {
    format!("webapp/{version}/webapp")
}

/// `mailer/<version>/bootstrap.zip`: where a mailer package lives in the artefact bucket.
pub fn mailer_key(version: &str) -> String {
    format!("mailer/{version}/bootstrap.zip")
}

/// What [`upload_artefact`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    Uploaded {
        sha256: String,
    },
    /// An object with the same SHA-256 was already there.
    AlreadyThere {
        sha256: String,
    },
}

/// Creates or updates the `<name>-bootstrap` stack for `spec`, passing each provisioning
/// event to `on_event`, and returns the artefact bucket's name.
pub async fn ensure_bootstrap(
    cloud: &AwsCloud,
    spec: &StackSpec,
    mut on_event: impl FnMut(&ProvisionEvent),
) -> Result<String, CloudError> {
    let stack = StackRef::new(bootstrap_stack_name(spec))?.in_region(spec.region.clone());
    let template_body = render_bootstrap(spec)
        .to_json()
        .map_err(|e| CloudError::invalid("template", e.to_string()))?;
    let desired = DesiredStack {
        stack: stack.clone(),
        template_body,
        parameters: BTreeMap::new(),
        tags: BTreeMap::from([("triad:stack".to_string(), spec.name.clone())]),
        spec: serde_json::Value::Null,
    };
    let plan = cloud.plan(&desired).await?;
    if !plan.is_empty() {
        let mut events = cloud.apply(&plan);
        while let Some(event) = events.next().await {
            let event = event?;
            on_event(&event);
            if let ProvisionEvent::Finished {
                stack_status,
                summary,
                ..
            } = event
                && !stack_status.is_success()
            {
                let mut message = format!("the bootstrap stack {stack} ended {stack_status}");
                if let Some(summary) = summary {
                    message.push_str(": ");
                    message.push_str(&summary);
                }
                return Err(CloudError::backend(
                    "cloudformation",
                    stack_status.to_string(),
                    message,
                ));
            }
        }
    }
    artefact_bucket(cloud, &stack).await
}

/// The artefact bucket of the bootstrap stack `stack` (`<name>-bootstrap`).
pub(crate) async fn artefact_bucket(
    cloud: &AwsCloud,
    stack: &StackRef,
) -> Result<String, CloudError> {
    let resource = cloud
        .cfn_for(stack)
        .describe_stack_resource()
        .stack_name(&stack.name)
        .logical_resource_id(BUCKET_LOGICAL_ID)
        .send()
        .await
        .map_err(|e| from_sdk("cloudformation", "DescribeStackResource", e))?;
    resource
        .stack_resource_detail()
        .and_then(|detail| detail.physical_resource_id())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| CloudError::not_found(format!("the artefact bucket of stack {stack}")))
}

/// Puts `body` at `key` in `bucket` (in `region`, or the session's), unless an object with the
/// same SHA-256 is already there.
pub async fn upload_artefact(
    cloud: &AwsCloud,
    region: Option<&str>,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<Upload, CloudError> {
    let s3 = cloud.s3_for(region);
    let digest = Sha256::digest(&body);
    let sha256 = format!("{digest:x}");
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => {
            let existing = head.metadata().and_then(|m| m.get(SHA256_METADATA));
            if existing == Some(&sha256) {
                return Ok(Upload::AlreadyThere { sha256 });
            }
        }
        Err(err) => {
            let not_found = matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_)));
            if !not_found {
                return Err(from_sdk("s3", "HeadObject", err));
            }
        }
    }
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .metadata(SHA256_METADATA, &sha256)
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| from_sdk("s3", "PutObject", e))?;
    Ok(Upload::Uploaded { sha256 })
}
