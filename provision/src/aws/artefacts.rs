//! The artefact bucket and what goes in it. `triad up` first makes sure the small
//! `<name>-bootstrap` stack (the bucket) exists, then uploads the releases the main stack
//! refers to — `webapp/<version>/webapp` and `mailer/<version>/bootstrap.zip` — skipping an
//! object that is already there with the same SHA-256 (kept in the object's `sha256`
//! metadata), so re-running `up` uploads nothing new.
//!
//! A release is immutable: a version already in the bucket with other bytes is never
//! replaced (instances launched later would run other code under the same version); the
//! operator gives the new build a new version.
//!
//! [`plan_artefacts`] works all this out without changing anything (for `triad plan` and the
//! plan `up` shows before asking); [`prepare_artefacts`] carries it out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::AwsCloud;
use super::cfn::describe_stack;
use super::error::from_sdk;
use crate::port::{Cloud, CloudError, DesiredStack, Plan, ProvisionEvent, StackRef};
use crate::spec::StackSpec;
use crate::template::{artefact_bucket_name, bootstrap_stack_name, params, render_bootstrap};

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
/// same SHA-256 is already there. An object there with other bytes (or without a `sha256`
/// record) is a conflict, and nothing is written: releases are immutable.
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
    if let Some(existing) = recorded_sha256(&s3, bucket, key).await? {
        if existing.as_deref() == Some(sha256.as_str()) {
            return Ok(Upload::AlreadyThere { sha256 });
        }
        return Err(CloudError::conflict(format!(
            "s3://{bucket}/{key} already holds other bytes ({}) than this file (sha256 \
             {sha256}); a release is immutable, so nothing was uploaded: give this build a new \
             version",
            recorded_text(existing.as_deref(), false),
        )));
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

/// The two releases a stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    /// The webapp binary the instances run.
    Webapp,
    /// The mailer Lambda package (`bootstrap.zip`).
    Mailer,
}

impl ReleaseKind {
    /// The object key of this kind of release at `version`.
    pub fn key(self, version: &str) -> String {
        match self {
            ReleaseKind::Webapp => webapp_key(version),
            ReleaseKind::Mailer => mailer_key(version),
        }
    }
}

impl fmt::Display for ReleaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseKind::Webapp => "webapp",
            ReleaseKind::Mailer => "mailer",
        })
    }
}

/// A local file that provides a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    pub path: PathBuf,
    /// Named by the operator (`--webapp`, `--mailer-zip`), as opposed to found beside `triad`.
    /// A found file is only uploaded when the bucket lacks the release; a given one must match
    /// what the bucket holds.
    pub given: bool,
}

/// A release the main stack refers to, and the file that can provide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub kind: ReleaseKind,
    pub version: String,
    pub file: Option<ReleaseFile>,
}

impl Release {
    /// The releases `spec` refers to: the webapp at `app.version`, the mailer at
    /// `mailer.version`.
    pub fn of_spec(
        spec: &StackSpec,
        webapp: Option<ReleaseFile>,
        mailer: Option<ReleaseFile>,
    ) -> Vec<Release> {
        vec![
            Release {
                kind: ReleaseKind::Webapp,
                version: spec.app.version.clone(),
                file: webapp,
            },
            Release {
                kind: ReleaseKind::Mailer,
                version: spec.mailer.version.clone(),
                file: mailer,
            },
        ]
    }

    /// The object key in the artefact bucket.
    pub fn key(&self) -> String {
        self.kind.key(&self.version)
    }
}

/// Where a release stands, as [`plan_artefacts`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseState {
    /// In the bucket already (with its recorded SHA-256, when it has one); nothing to upload.
    InBucket { sha256: Option<String> },
    /// To be uploaded from `path`.
    Upload { path: PathBuf, sha256: String },
    /// The bucket holds other bytes under this version than the given file.
    Conflict {
        path: PathBuf,
        sha256: String,
        in_bucket: Option<String>,
    },
    /// Neither in the bucket nor available as a file.
    Missing,
}

/// What `up` does with the artefact bucket before the main stack: found without changing
/// anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtefactPlan {
    /// The `<name>-bootstrap` stack.
    pub bootstrap: StackRef,
    /// Whether the bootstrap stack exists (otherwise `up` creates it first).
    pub bootstrap_exists: bool,
    /// The bucket's name (known before it exists: it is derived from the account and region).
    pub bucket: String,
    pub releases: Vec<(Release, ReleaseState)>,
}

impl ArtefactPlan {
    /// The main stack's parameters that come from the bucket.
    pub fn parameters(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(params::ARTEFACT_BUCKET.to_string(), self.bucket.clone())])
    }

    /// One line per thing `up` does before the main stack.
    pub fn prepare_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.bootstrap_exists {
            lines.push(format!(
                "create stack {} (the artefact bucket {})",
                self.bootstrap.name, self.bucket
            ));
        }
        for (release, state) in &self.releases {
            if let ReleaseState::Upload { path, sha256 } = state {
                lines.push(format!(
                    "upload {} {} from {} to s3://{}/{} (sha256 {})",
                    release.kind,
                    release.version,
                    path.display(),
                    self.bucket,
                    release.key(),
                    short(sha256)
                ));
            }
        }
        lines
    }

    /// Why `up` would be refused, each with what to do.
    pub fn blockers(&self) -> Vec<String> {
        self.releases
            .iter()
            .filter_map(|(release, state)| match state {
                ReleaseState::Missing => Some(format!(
                    "{} {} is not in s3://{}/{} and no file provides it: {}",
                    release.kind,
                    release.version,
                    self.bucket,
                    release.key(),
                    match release.kind {
                        ReleaseKind::Webapp =>
                            "pass --webapp PATH (the webapp binary built for \
                                                the instances)",
                        ReleaseKind::Mailer =>
                            "build the package with scripts/package-mailer \
                                                and pass --mailer-zip PATH",
                    }
                )),
                ReleaseState::Conflict {
                    path,
                    sha256,
                    in_bucket,
                } => Some(format!(
                    "{} {} in s3://{}/{} holds other bytes ({}) than {} (sha256 {}); a release \
                     is immutable: give the new build a new version in the stack spec",
                    release.kind,
                    release.version,
                    self.bucket,
                    release.key(),
                    recorded_text(in_bucket.as_deref(), true),
                    path.display(),
                    short(sha256)
                )),
                ReleaseState::InBucket { .. } | ReleaseState::Upload { .. } => None,
            })
            .collect()
    }

    /// Adds what happens before the main stack, and what blocks it, to `plan`.
    pub fn annotate(&self, plan: &mut Plan) {
        plan.prepare = self.prepare_lines();
        plan.blockers = self.blockers();
    }
}

/// What an object's recorded SHA-256 says, for messages ("sha256 …", shortened when `shorten`,
/// or "no sha256 recorded").
fn recorded_text(recorded: Option<&str>, shorten: bool) -> String {
    match recorded {
        Some(sha) if shorten => format!("sha256 {}", short(sha)),
        Some(sha) => format!("sha256 {sha}"),
        None => "no sha256 recorded".to_string(),
    }
}

/// The first 12 hex digits of a SHA-256, enough to tell releases apart on a terminal.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

fn unreadable(path: &Path, e: std::io::Error) -> CloudError {
    CloudError::invalid("release", format!("cannot read {}: {e}", path.display()))
}

/// The SHA-256 (lowercase hex) of the file at `path`, read in pieces (a plan only compares it;
/// the bytes are read when they are uploaded).
fn release_sha256(path: &Path) -> Result<String, CloudError> {
    let mut file = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| unreadable(path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The SHA-256 recorded on `key` in `bucket`: `None` when there is no such object, `Some(None)`
/// when it exists without a record.
async fn recorded_sha256(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Option<String>>, CloudError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(
            head.metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .cloned(),
        )),
        Err(err) if matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_))) => {
            Ok(None)
        }
        Err(err) => Err(from_sdk("s3", "HeadObject", err)),
    }
}

/// Works out, without changing anything, what `up` does with the artefact bucket of `spec`:
/// whether the bootstrap stack must be created, and for each release whether it is in the
/// bucket already, is uploaded from its file, or cannot be provided.
pub async fn plan_artefacts(
    cloud: &AwsCloud,
    spec: &StackSpec,
    releases: &[Release],
) -> Result<ArtefactPlan, CloudError> {
    let bootstrap = StackRef::new(bootstrap_stack_name(spec))?.in_region(spec.region.clone());
    let existing = describe_stack(&cloud.cfn_for(&bootstrap), &bootstrap.name).await?;
    let bucket = match &existing {
        Some(_) => artefact_bucket(cloud, &bootstrap).await?,
        None => {
            let account = cloud.account_id().await?;
            artefact_bucket_name(spec, &account, &spec.region)
        }
    };
    let s3 = cloud.s3_for(Some(&spec.region));
    let mut planned = Vec::new();
    for release in releases {
        let recorded = match existing {
            Some(_) => recorded_sha256(&s3, &bucket, &release.key()).await?,
            None => None,
        };
        let local = match &release.file {
            Some(file) => Some((file, release_sha256(&file.path)?)),
            None => None,
        };
        let state = match (recorded, local) {
            (Some(in_bucket), Some((file, sha256)))
                if file.given && in_bucket.as_deref() != Some(sha256.as_str()) =>
            {
                ReleaseState::Conflict {
                    path: file.path.clone(),
                    sha256,
                    in_bucket,
                }
            }
            (Some(in_bucket), _) => ReleaseState::InBucket { sha256: in_bucket },
            (None, Some((file, sha256))) => ReleaseState::Upload {
                path: file.path.clone(),
                sha256,
            },
            (None, None) => ReleaseState::Missing,
        };
        planned.push((release.clone(), state));
    }
    Ok(ArtefactPlan {
        bootstrap,
        bootstrap_exists: existing.is_some(),
        bucket,
        releases: planned,
    })
}

/// Carries out `plan`: creates or updates the bootstrap stack (each of its provisioning
/// events goes to `on_event`), then uploads each release the plan uploads (a line for each
/// goes to `on_upload`). Refused, changing nothing, when the plan has blockers. Returns the
/// bucket's name.
pub async fn prepare_artefacts(
    cloud: &AwsCloud,
    spec: &StackSpec,
    plan: &ArtefactPlan,
    on_event: impl FnMut(&ProvisionEvent),
    mut on_upload: impl FnMut(&str),
) -> Result<String, CloudError> {
    let blockers = plan.blockers();
    if !blockers.is_empty() {
        return Err(CloudError::invalid(
            "release",
            format!("nothing was changed: {}", blockers.join("; ")),
        ));
    }
    let bucket = ensure_bootstrap(cloud, spec, on_event).await?;
    for (release, state) in &plan.releases {
        let ReleaseState::Upload { path, .. } = state else {
            continue;
        };
        let body = std::fs::read(path).map_err(|e| unreadable(path, e))?;
        let key = release.key();
        let done = upload_artefact(cloud, Some(&spec.region), &bucket, &key, body).await?;
        on_upload(&match done {
            Upload::Uploaded { sha256 } => format!(
                "uploaded {} {} to s3://{bucket}/{key} (sha256 {})",
                release.kind,
                release.version,
                short(&sha256)
            ),
            Upload::AlreadyThere { sha256 } => format!(
                "{} {} already in s3://{bucket}/{key} (sha256 {})",
                release.kind,
                release.version,
                short(&sha256)
            ),
        });
    }
    Ok(bucket)
}
