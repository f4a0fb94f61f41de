//! The stack as the port sees it: which stack ([`StackRef`]), what it should be
//! ([`DesiredStack`]), what changing it would do ([`Plan`]), what happens while it changes
//! ([`ProvisionEvent`]) and what it exposes when done ([`Outputs`]).
//!
//! The port does not know the stack spec (`stack.toml`) type. A caller renders the spec into a
//! [`DesiredStack`]: the CloudFormation template body, its parameters and tags, and the spec
//! itself as JSON for backends that work from the spec rather than the template (the sandbox).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::CloudError;
use super::names::aws_names;

/// Names one stack, optionally in a given region (AWS) — the sandbox ignores the region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StackRef {
    /// The stack name: a letter, then letters, digits and hyphens; at most 128 characters
    /// (CloudFormation's rule, used by every backend so a name works everywhere).
    pub name: String,
    /// The region, when the backend has regions and it differs from the session default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl StackRef {
    /// A reference to `name` in the session's default region, checking the name.
    pub fn new(name: impl Into<String>) -> Result<Self, CloudError> {
        let name = name.into();
        check_stack_name(&name)?;
        Ok(Self { name, region: None })
    }

    /// The same stack in `region`.
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

impl fmt::Display for StackRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.region {
            Some(region) => write!(f, "{} ({region})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn check_stack_name(name: &str) -> Result<(), CloudError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(CloudError::invalid(
            "stack.name",
            format!(
                "{name:?} must start with a letter and contain only letters, digits and \
                 hyphens (at most 128 characters)"
            ),
        ));
    }
    Ok(())
}

/// What the stack should be: the input of [`Cloud::plan`](super::Cloud::plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredStack {
    pub stack: StackRef,
    /// The CloudFormation template (JSON) rendered from the spec.
    pub template_body: String,
    /// Template parameters (app version, AMI, capacities …).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Tags for the stack and its resources.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The stack spec itself, as JSON, for backends that build from the spec (the sandbox).
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// What applying a [`DesiredStack`] would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub desired: DesiredStack,
    /// True when the stack does not exist yet and applying creates it.
    pub creates_stack: bool,
    /// The backend's handle for this plan (a CloudFormation change set ARN), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_set: Option<String>,
    pub changes: Vec<ResourceChange>,
    /// What the backend does before the stack's own changes, one line each (on AWS: create
    /// the `<name>-bootstrap` stack holding the artefact bucket, upload a release).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepare: Vec<String>,
    /// Why applying this plan would be refused as things are, each with what to do about it
    /// (a release that is neither in the artefact bucket nor given as a file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// When the plan was made.
    #[serde(with = "time::serde::rfc3339")]
    pub planned_at: OffsetDateTime,
}

impl Plan {
    /// The stack this plan is for.
    pub fn stack(&self) -> &StackRef {
        &self.desired.stack
    }

    /// Whether applying would change nothing: no stack to create, no resource to change and
    /// no change set to execute (a change set without resource changes still changes the
    /// stack: its parameters, outputs or other template settings).
    pub fn is_empty(&self) -> bool {
        self.prepare.is_empty() && self.blockers.is_empty() && !self.changes_stack()
    }

    /// Whether applying changes the stack itself (creates it, or executes a change set).
    pub fn changes_stack(&self) -> bool {
        self.creates_stack || !self.changes.is_empty() || self.change_set.is_some()
    }

    /// How many resources each kind of change touches.
    pub fn summary(&self) -> PlanSummary {
        let count = |action| self.changes.iter().filter(|c| c.action == action).count();
        PlanSummary {
            add: count(ChangeAction::Add),
            modify: count(ChangeAction::Modify),
            replace: count(ChangeAction::Replace),
            delete: count(ChangeAction::Delete),
        }
    }
}

/// Counts of a plan's changes ("3 to add, 1 to change, 0 to replace, 0 to delete").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanSummary {
    pub add: usize,
    pub modify: usize,
    pub replace: usize,
    pub delete: usize,
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to replace, {} to delete",
            self.add, self.modify, self.replace, self.delete
        )
    }
}

/// One resource a plan touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// The template's logical id, e.g. `WebAutoScalingGroup`.
    pub logical_id: String,
    /// The resource type, e.g. `AWS::AutoScaling::AutoScalingGroup`.
    pub resource_type: String,
    /// The existing resource's physical id, for modify / replace / delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    pub action: ChangeAction,
    /// Why: which properties or parameters changed, and whether that forces replacement.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// The kind of change to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Add,
    Modify,
    Replace,
    Delete,
}

impl ChangeAction {
    /// The plan marker Terraform users know: `+`, `~`, `-/+`, `-`.
    pub fn marker(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Modify => "~",
            Self::Replace => "-/+",
            Self::Delete => "-",
        }
    }
}

/// What a provisioning stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackOperation {
    Create,
    Update,
    Delete,
}

/// One item of an apply or destroy stream. The stream starts with `Started`, carries one
/// `Resource` item per resource status change, and ends with `Finished` — whose
/// `stack_status` says whether the operation succeeded (a rolled-back create is a `Finished`
/// with `ROLLBACK_COMPLETE`, not an `Err`). An `Err` item means the backend could not be
/// asked or answered; the stream ends after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProvisionEvent {
    Started {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        stack: StackRef,
        operation: StackOperation,
        /// How many resources the operation touches (the "Y" of "X of Y").
        total: u32,
    },
    Resource(ResourceEvent),
    Finished {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        stack_status: StackStatus,
        /// The stack's outputs (empty after a delete).
        outputs: Outputs,
        /// When the operation did not do what was asked: which resources failed and why, and
        /// what was and was not changed (what was rolled back, what remains).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
}

/// A resource changed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub logical_id: String,
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    pub status: ResourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resources finished so far (the "X" of "X of Y").
    pub done: u32,
    /// Resources the operation touches (the "Y").
    pub total: u32,
}

aws_names! {
    /// A resource's status, with CloudFormation's names.
    pub enum ResourceStatus ("resource status") {
        CreateInProgress = "CREATE_IN_PROGRESS",
        CreateFailed = "CREATE_FAILED",
        CreateComplete = "CREATE_COMPLETE",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        DeleteFailed = "DELETE_FAILED",
        DeleteComplete = "DELETE_COMPLETE",
        DeleteSkipped = "DELETE_SKIPPED",
        UpdateInProgress = "UPDATE_IN_PROGRESS",
        UpdateFailed = "UPDATE_FAILED",
        UpdateComplete = "UPDATE_COMPLETE",
        ImportInProgress = "IMPORT_IN_PROGRESS",
        ImportFailed = "IMPORT_FAILED",
        ImportComplete = "IMPORT_COMPLETE",
        ImportRollbackInProgress = "IMPORT_ROLLBACK_IN_PROGRESS",
        ImportRollbackFailed = "IMPORT_ROLLBACK_FAILED",
        ImportRollbackComplete = "IMPORT_ROLLBACK_COMPLETE",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        RollbackFailed = "ROLLBACK_FAILED",
        RollbackComplete = "ROLLBACK_COMPLETE",
        UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS",
        UpdateRollbackFailed = "UPDATE_ROLLBACK_FAILED",
        UpdateRollbackComplete = "UPDATE_ROLLBACK_COMPLETE",
    }
}

impl ResourceStatus {
    /// Whether the resource finished this step (successfully or not).
    pub fn is_settled(self) -> bool {
        !self.as_aws_str().ends_with("_IN_PROGRESS")
    }

    /// Whether this status reports a failure.
    pub fn is_failed(self) -> bool {
        self.as_aws_str().ends_with("_FAILED")
    }
}

aws_names! {
    /// A stack's status, with CloudFormation's names.
    pub enum StackStatus ("stack status") {
        CreateInProgress = "CREATE_IN_PROGRESS",
        CreateFailed = "CREATE_FAILED",
        CreateComplete = "CREATE_COMPLETE",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        RollbackFailed = "ROLLBACK_FAILED",
        RollbackComplete = "ROLLBACK_COMPLETE",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        DeleteFailed = "DELETE_FAILED",
        DeleteComplete = "DELETE_COMPLETE",
        UpdateInProgress = "UPDATE_IN_PROGRESS",
        UpdateCompleteCleanupInProgress = "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        UpdateComplete = "UPDATE_COMPLETE",
        UpdateFailed = "UPDATE_FAILED",
        UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS",
        UpdateRollbackFailed = "UPDATE_ROLLBACK_FAILED",
        UpdateRollbackCompleteCleanupInProgress = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        UpdateRollbackComplete = "UPDATE_ROLLBACK_COMPLETE",
        ReviewInProgress = "REVIEW_IN_PROGRESS",
        ImportInProgress = "IMPORT_IN_PROGRESS",
        ImportComplete = "IMPORT_COMPLETE",
        ImportRollbackInProgress = "IMPORT_ROLLBACK_IN_PROGRESS",
        ImportRollbackFailed = "IMPORT_ROLLBACK_FAILED",
        ImportRollbackComplete = "IMPORT_ROLLBACK_COMPLETE",
    }
}

impl StackStatus {
    /// Whether the stack is at rest (no operation running).
    pub fn is_terminal(self) -> bool {
        !self.as_aws_str().ends_with("_IN_PROGRESS")
    }

    /// Whether the last operation did what was asked (create, update, delete or import).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Self::CreateComplete
                | Self::UpdateComplete
                | Self::DeleteComplete
                | Self::ImportComplete
        )
    }
}

/// A stack's outputs by name (the load balancer's URL, the database endpoint …).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outputs(pub BTreeMap<String, String>);

impl Outputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
