//! Plan, apply and destroy through CloudFormation.
//!
//! A plan is a change set: CREATE when the stack does not exist yet, UPDATE otherwise. The
//! "didn't contain changes" failure CloudFormation gives for an identical template is an empty
//! plan, and its change set is deleted. Applying executes the change set and follows the stack
//! by reading its events (newest first, deduplicated by event id, only those of the operation
//! being followed) and its status, until the status is terminal; the outputs are read then.
//!
//! Nothing is kept locally: when apply or destroy finds the stack already in the middle of an
//! operation (an interrupted `up` or `down`), it follows that operation from its first event
//! instead of starting another one. Destroying a stack that does not exist is `NotFound`, as on
//! every backend.
//!
//! When an operation does not do what was asked (a create rolled back, an update rolled back, a
//! delete that failed), its `Finished` carries a summary built from the events followed: which
//! resources failed and why, what was created or changed and then undone, what remains.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::types::{
    Capability, ChangeAction as CfnChangeAction, ChangeSetStatus, ChangeSetType, ChangeSource,
    EvaluationType, Parameter, Replacement, RequiresRecreation, ResourceChangeDetail, StackEvent,
    Tag,
};
use futures::StreamExt;
use time::OffsetDateTime;

use super::error::{from_sdk, to_time};
use crate::port::{
    ChangeAction, CloudError, CloudStream, DesiredStack, Outputs, Plan, ProvisionEvent,
    ResourceChange, ResourceEvent, ResourceStatus, StackOperation, StackRef, StackStatus,
};

const SERVICE: &str = "cloudformation";
const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// How often and for how long CloudFormation is polled. Intervals start at `first_interval`,
/// double while nothing changes up to `max_interval`, and fall back to `first_interval` when
/// something does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub first_interval: Duration,
    pub max_interval: Duration,
    /// How long a change set may take to be computed.
    pub change_set_deadline: Duration,
    /// How long an apply or destroy is followed before the stream gives up (the operation
    /// itself goes on; running the command again resumes following it).
    pub operation_deadline: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            first_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(10),
            change_set_deadline: Duration::from_secs(10 * 60),
            operation_deadline: Duration::from_secs(3 * 60 * 60),
        }
    }
}

/// Waits between polls with exponential backoff, until a deadline.
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    deadline: tokio::time::Instant,
}

impl Backoff {
    fn new(first: Duration, max: Duration, limit: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
            deadline: tokio::time::Instant::now() + limit,
        }
    }

    /// Waits for the next poll; false once the deadline has passed.
    async fn wait(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.next.min(self.deadline - now)).await;
        self.next = (self.next * 2).min(self.max);
        true
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// What DescribeStacks says about a stack.
#[derive(Debug, Clone)]
pub(crate) struct StackState {
    pub id: String,
    pub status: StackStatus,
    pub outputs: Outputs,
    /// The names of the stack's parameters.
    pub parameter_keys: Vec<String>,
}

/// The stack called (or with the id) `stack`, or `None` when it does not exist.
pub(crate) async fn describe_stack(
    client: &Client,
    stack: &str,
) -> Result<Option<StackState>, CloudError> {
    let answer = match client.describe_stacks().stack_name(stack).send().await {
        Ok(answer) => answer,
        Err(err) => {
            let err = from_sdk(SERVICE, "DescribeStacks", err);
            return match &err {
                CloudError::Backend { code, message, .. }
                    if code == "ValidationError" && message.contains("does not exist") =>
                {
                    Ok(None)
                }
                _ => Err(err),
            };
        }
    };
    let Some(found) = answer.stacks().first() else {
        return Ok(None);
    };
    let raw_status = found.stack_status().map(|s| s.as_str()).unwrap_or_default();
    let status: StackStatus = raw_status.parse().map_err(|_| {
        CloudError::backend(
            SERVICE,
            "UnknownStatus",
            format!("stack {stack} has a status triad does not know: {raw_status:?}"),
        )
    })?;
    let outputs = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    Ok(Some(StackState {
        id: found.stack_id().unwrap_or(stack).to_string(),
        status,
        outputs: Outputs(outputs),
        parameter_keys: found
            .parameters()
            .iter()
            .filter_map(|p| p.parameter_key().map(str::to_string))
            .collect(),
    }))
}

/// Makes a change set for `desired` and reads it back as a [`Plan`].
pub(crate) async fn plan(
    client: &Client,
    desired: &DesiredStack,
    polling: &Polling,
) -> Result<Plan, CloudError> {
    let name = &desired.stack.name;
    let existing = describe_stack(client, name).await?;
    let creates_stack = match &existing {
        None => true,
        Some(state) => match state.status {
            StackStatus::ReviewInProgress => true,
            StackStatus::RollbackComplete => {
                return Err(CloudError::conflict(format!(
                    "stack {name} is ROLLBACK_COMPLETE: its creation failed and was rolled back, \
                     so it cannot be updated; delete it (triad down) and create it again"
                )));
            }
            status if !status.is_terminal() => {
                return Err(CloudError::conflict(format!(
                    "stack {name} is {status}: an operation is running; `triad up` follows it \
                     to the end, then plan again"
                )));
            }
            _ => false,
        },
    };

    let change_set_name = format!("triad-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    let parameters = desired.parameters.iter().map(|(key, value)| {
        Parameter::builder()
            .parameter_key(key)
            .parameter_value(value)
            .build()
    });
    let tags = desired
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build());
    let created = client
        .create_change_set()
        .stack_name(name)
        .change_set_name(&change_set_name)
        .change_set_type(if creates_stack {
            ChangeSetType::Create
        } else {
            ChangeSetType::Update
        })
        .template_body(&desired.template_body)
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .set_parameters(Some(parameters.collect()))
        .set_tags(Some(tags.collect()))
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "CreateChangeSet", e))?;
    let change_set = created.id().unwrap_or(&change_set_name).to_string();
    read_plan(client, desired, creates_stack, change_set, polling).await
}

/// Waits for `change_set` to be computed and reads it as a [`Plan`] of `desired`; a change set
/// without changes is deleted and gives an empty plan.
async fn read_plan(
    client: &Client,
    desired: &DesiredStack,
    creates_stack: bool,
    change_set: String,
    polling: &Polling,
) -> Result<Plan, CloudError> {
    let name = &desired.stack.name;
    let mut backoff = Backoff::new(
        polling.first_interval,
        polling.max_interval,
        polling.change_set_deadline,
    );
    let first_page = loop {
        let page = describe_change_set(client, name, &change_set, None).await?;
        match page.status() {
            Some(ChangeSetStatus::CreateComplete) => break page,
            Some(ChangeSetStatus::Failed) => {
                let reason = page
                    .status_reason()
                    .unwrap_or("no reason given")
                    .to_string();
                delete_change_set(client, name, &change_set).await?;
                if says_no_changes(&reason) {
                    return Ok(Plan {
                        desired: desired.clone(),
                        creates_stack: false,
                        change_set: None,
                        changes: Vec::new(),
                        prepare: Vec::new(),
                        blockers: Vec::new(),
                        planned_at: OffsetDateTime::now_utc(),
                    });
                }
                return Err(CloudError::backend(
                    SERVICE,
                    "ChangeSetFailed",
                    format!("the change set for stack {name} failed: {reason}"),
                ));
            }
            _ => {
                if !backoff.wait().await {
                    return Err(CloudError::Unavailable {
                        message: format!(
                            "the change set {change_set} for stack {name} was not ready within \
                             {} s",
                            polling.change_set_deadline.as_secs()
                        ),
                    });
                }
            }
        }
    };

    let mut changes = Vec::new();
    let mut page = first_page;
    loop {
        changes.extend(
            page.changes()
                .iter()
                .filter_map(|change| change.resource_change())
                .filter_map(resource_change),
        );
        let Some(token) = page.next_token().map(str::to_string) else {
            break;
        };
        page = describe_change_set(client, name, &change_set, Some(token)).await?;
    }
    Ok(Plan {
        desired: desired.clone(),
        creates_stack,
        change_set: Some(change_set),
        changes,
        prepare: Vec::new(),
        blockers: Vec::new(),
        planned_at: OffsetDateTime::now_utc(),
    })
}

/// A change set that sets `parameters` on the existing stack, keeping its template and every
/// other parameter's value (a deploy of a triad stack: the new version is a parameter, so
/// CloudFormation stays the source of truth and a later `triad up` does not revert it).
pub(crate) async fn plan_parameter_update(
    client: &Client,
    stack: &StackRef,
    parameters: &BTreeMap<String, String>,
    polling: &Polling,
) -> Result<Plan, CloudError> {
    let name = &stack.name;
    let existing = describe_stack(client, name)
        .await?
        .ok_or_else(|| CloudError::not_found(format!("stack {stack}")))?;
    if !existing.status.is_terminal() {
        return Err(CloudError::conflict(format!(
            "stack {name} is {}: an operation is running; deploy when it has finished",
            existing.status
        )));
    }
    if let Some(unknown) = parameters
        .keys()
        .find(|key| !existing.parameter_keys.contains(key))
    {
        return Err(CloudError::invalid(
            "parameters",
            format!("stack {name} has no parameter {unknown}"),
        ));
    }
    let all = existing
        .parameter_keys
        .iter()
        .map(|key| match parameters.get(key) {
            Some(value) => Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build(),
            None => Parameter::builder()
                .parameter_key(key)
                .use_previous_value(true)
                .build(),
        });
    let change_set_name = format!("triad-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    let created = client
        .create_change_set()
        .stack_name(name)
        .change_set_name(&change_set_name)
        .change_set_type(ChangeSetType::Update)
        .use_previous_template(true)
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .set_parameters(Some(all.collect()))
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "CreateChangeSet", e))?;
    let change_set = created.id().unwrap_or(&change_set_name).to_string();
    let desired = DesiredStack {
        stack: stack.clone(),
        template_body: String::new(),
        parameters: parameters.clone(),
        tags: BTreeMap::new(),
        spec: serde_json::Value::Null,
    };
    read_plan(client, &desired, false, change_set, polling).await
}

/// CloudFormation's reasons for a change set that changes nothing.
fn says_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

async fn describe_change_set(
    client: &Client,
    stack: &str,
    change_set: &str,
    next_token: Option<String>,
) -> Result<DescribeChangeSetOutput, CloudError> {
    client
        .describe_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .set_next_token(next_token)
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "DescribeChangeSet", e))
}

async fn delete_change_set(
    client: &Client,
    stack: &str,
    change_set: &str,
) -> Result<(), CloudError> {
    client
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "DeleteChangeSet", e))?;
    Ok(())
}

/// One change of a change set, as the port's [`ResourceChange`].
fn resource_change(
    change: &aws_sdk_cloudformation::types::ResourceChange,
) -> Option<ResourceChange> {
    let replacement = change.replacement();
    let action = match change.action()? {
        CfnChangeAction::Add | CfnChangeAction::Import => ChangeAction::Add,
        CfnChangeAction::Remove => ChangeAction::Delete,
        _ => match replacement {
            Some(Replacement::True | Replacement::Conditional) => ChangeAction::Replace,
            _ => ChangeAction::Modify,
        },
    };
    let mut reasons = Vec::new();
    if action == ChangeAction::Replace {
        reasons.push(match replacement {
            Some(Replacement::Conditional) => {
                "may be replaced: CloudFormation decides during the update".to_string()
            }
            _ => "will be replaced".to_string(),
        });
    }
    for detail in change.details() {
        let reason = detail_reason(detail);
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    Some(ResourceChange {
        logical_id: change.logical_resource_id()?.to_string(),
        resource_type: change.resource_type().unwrap_or_default().to_string(),
        physical_id: change
            .physical_resource_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        action,
        reasons,
    })
}

/// "Properties.InstanceType changes (parameter InstanceType); forces replacement".
fn detail_reason(detail: &ResourceChangeDetail) -> String {
    let target = detail.target();
    let attribute = target.and_then(|t| t.attribute()).map(|a| a.as_str());
    let name = target.and_then(|t| t.name());
    let what = match (attribute, name) {
        (Some(attribute), Some(name)) => format!("{attribute}.{name}"),
        (Some(attribute), None) => attribute.to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => "the resource".to_string(),
    };
    let mut reason = format!("{what} changes");
    match (detail.change_source(), detail.causing_entity()) {
        (Some(ChangeSource::ParameterReference), Some(entity)) => {
            reason.push_str(&format!(" (parameter {entity})"));
        }
        (Some(ChangeSource::ResourceReference | ChangeSource::ResourceAttribute), Some(entity)) => {
            reason.push_str(&format!(" (because {entity} changes)"))
        }
        _ => {}
    }
    if detail.evaluation() == Some(&EvaluationType::Dynamic) {
        reason.push_str(" if its value differs");
    }
    match target.and_then(|t| t.requires_recreation()) {
        Some(RequiresRecreation::Always) => reason.push_str("; forces replacement"),
        Some(RequiresRecreation::Conditionally) => reason.push_str("; may force replacement"),
        _ => {}
    }
    reason
}

/// Executes `plan`'s change set and follows the stack to a terminal status; or follows the
/// operation already running on the stack.
pub(crate) fn apply(client: Client, plan: Plan, polling: Polling) -> CloudStream<ProvisionEvent> {
    futures::stream::once(async move { start_apply(client, plan, polling).await })
        .flat_map(|started| match started {
            Ok(follower) => follower.into_stream(),
            Err(error) => crate::port::failed_stream(error),
        })
        .boxed()
}

async fn start_apply(client: Client, plan: Plan, polling: Polling) -> Result<Follower, CloudError> {
    let stack = plan.stack().clone();
    let name = stack.name.clone();
    let state = describe_stack(&client, &name).await?;
    let total = plan.changes.len();
    if let Some(state) = &state
        && !state.status.is_terminal()
        && state.status != StackStatus::ReviewInProgress
    {
        if operation_of(state.status) == StackOperation::Delete {
            return Err(CloudError::conflict(format!(
                "stack {name} is {}: it is being deleted; let `triad down` finish first",
                state.status
            )));
        }
        return Ok(Follower::new(
            client,
            &stack,
            state,
            operation_of(state.status),
            total,
            Boundary::OperationStart,
            polling,
        ));
    }
    let state = state.ok_or_else(|| {
        CloudError::not_found(format!("stack {name} (its change set is gone; plan again)"))
    })?;
    let Some(change_set) = plan.change_set.as_deref() else {
        if plan.is_empty() {
            return Ok(Follower::already_at_rest(
                &stack,
                StackOperation::Update,
                state.status,
                state.outputs,
            ));
        }
        return Err(CloudError::invalid(
            "plan.change_set",
            "the plan has no change set to execute; plan again",
        ));
    };
    let boundary = match newest_event_id(&client, &state.id).await? {
        Some(id) => Boundary::After(id),
        None => Boundary::Everything,
    };
    client
        .execute_change_set()
        .stack_name(&name)
        .change_set_name(change_set)
        .send()
        .await
        .map_err(|e| match from_sdk(SERVICE, "ExecuteChangeSet", e) {
            CloudError::Backend { code, message, .. }
                if code == "InvalidChangeSetStatus" || code == "ChangeSetNotFound" =>
            {
                CloudError::conflict(format!(
                    "the plan's change set can no longer be executed ({message}); plan again"
                ))
            }
            other => other,
        })?;
    let operation = if plan.creates_stack {
        StackOperation::Create
    } else {
        StackOperation::Update
    };
    Ok(Follower::new(
        client, &stack, &state, operation, total, boundary, polling,
    ))
}

/// Deletes the stack and follows the deletion to its end; or follows a deletion already
/// running. A stack that does not exist is `NotFound`.
pub(crate) fn destroy(
    client: Client,
    stack: StackRef,
    polling: Polling,
) -> CloudStream<ProvisionEvent> {
    futures::stream::once(async move { start_destroy(client, stack, polling).await })
        .flat_map(|started| match started {
            Ok(follower) => follower.into_stream(),
            Err(error) => crate::port::failed_stream(error),
        })
        .boxed()
}

async fn start_destroy(
    client: Client,
    stack: StackRef,
    polling: Polling,
) -> Result<Follower, CloudError> {
    let name = &stack.name;
    let Some(state) = describe_stack(&client, name).await? else {
        return Err(CloudError::not_found(format!("stack {stack}")));
    };
    let total = count_resources(&client, &state.id).await?;
    if state.status == StackStatus::DeleteInProgress {
        return Ok(Follower::new(
            client,
            &stack,
            &state,
            StackOperation::Delete,
            total,
            Boundary::OperationStart,
            polling,
        ));
    }
    if !state.status.is_terminal() && state.status != StackStatus::ReviewInProgress {
        return Err(CloudError::conflict(format!(
            "stack {name} is {}: wait for that operation to finish (`triad up` follows it), \
             then delete it",
            state.status
        )));
    }
    let boundary = match newest_event_id(&client, &state.id).await? {
        Some(id) => Boundary::After(id),
        None => Boundary::Everything,
    };
    client
        .delete_stack()
        .stack_name(&state.id)
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "DeleteStack", e))?;
    Ok(Follower::new(
        client,
        &stack,
        &state,
        StackOperation::Delete,
        total,
        boundary,
        polling,
    ))
}

/// Which operation a stack status belongs to.
fn operation_of(status: StackStatus) -> StackOperation {
    let name = status.as_aws_str();
    if name.starts_with("DELETE") {
        StackOperation::Delete
    } else if name.starts_with("CREATE") || name.starts_with("ROLLBACK") {
        StackOperation::Create
    } else {
        StackOperation::Update
    }
}

async fn count_resources(client: &Client, stack_id: &str) -> Result<usize, CloudError> {
    let mut count = 0;
    let mut token = None;
    loop {
        let page = client
            .list_stack_resources()
            .stack_name(stack_id)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk(SERVICE, "ListStackResources", e))?;
        count += page.stack_resource_summaries().len();
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(count);
        }
    }
}

async fn newest_event_id(client: &Client, stack_id: &str) -> Result<Option<String>, CloudError> {
    let page = client
        .describe_stack_events()
        .stack_name(stack_id)
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "DescribeStackEvents", e))?;
    Ok(page
        .stack_events()
        .first()
        .and_then(|e| e.event_id())
        .map(str::to_string))
}

/// Which of the stack's events belong to the operation followed.
#[derive(Debug, Clone)]
enum Boundary {
    /// Those newer than this event (the newest before the operation was started).
    After(String),
    /// Those since the newest stack event that starts an operation (resuming).
    OperationStart,
    /// All of them (the stack had no events before).
    Everything,
}

/// Reads a stack's new events, oldest first.
struct EventCursor {
    stack_id: String,
    stack_name: String,
    boundary: Boundary,
    seen: HashSet<String>,
}

impl EventCursor {
    /// The events since the last call (since the boundary, the first time), oldest first.
    async fn poll(&mut self, client: &Client) -> Result<Vec<StackEvent>, CloudError> {
        let mut fresh = Vec::new();
        let mut this_poll = HashSet::new();
        let mut token = None;
        'pages: loop {
            let page = client
                .describe_stack_events()
                .stack_name(&self.stack_id)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| from_sdk(SERVICE, "DescribeStackEvents", e))?;
            for event in page.stack_events() {
                let id = event.event_id().unwrap_or_default();
                if self.seen.contains(id) {
                    break 'pages;
                }
                if let Boundary::After(boundary) = &self.boundary
                    && boundary == id
                {
                    break 'pages;
                }
                // Events that arrive between two pages shift the pages: skip repeats.
                if !this_poll.insert(id.to_string()) {
                    continue;
                }
                fresh.push(event.clone());
                if matches!(self.boundary, Boundary::OperationStart)
                    && starts_operation(event, &self.stack_name)
                {
                    break 'pages;
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        self.seen.extend(this_poll);
        fresh.reverse();
        Ok(fresh)
    }
}

/// Whether `event` is the stack's own event that starts a create, update, delete or import.
fn starts_operation(event: &StackEvent, stack_name: &str) -> bool {
    event.resource_type() == Some(STACK_TYPE)
        && event.logical_resource_id() == Some(stack_name)
        && matches!(
            event.resource_status().map(|s| s.as_str()),
            Some(
                "CREATE_IN_PROGRESS"
                    | "UPDATE_IN_PROGRESS"
                    | "DELETE_IN_PROGRESS"
                    | "IMPORT_IN_PROGRESS"
            )
        )
}

/// What the followed events said: "X of Y" (which resources have settled), each resource's
/// latest status, the failures and their reasons — enough to say, at the end, what was and
/// was not changed.
#[derive(Debug, Default)]
struct Progress {
    planned: usize,
    /// Each resource's latest status, in the order the resources first appeared.
    resources: Vec<(String, ResourceStatus)>,
    /// Every `*_FAILED` resource event: the resource, its status and CloudFormation's reason.
    failures: Vec<(String, ResourceStatus, Option<String>)>,
    /// The latest reason the stack's own failure or rollback events gave (e.g. "The following
    /// resource(s) failed to create: [Database]").
    stack_reason: Option<String>,
}

impl Progress {
    fn new(planned: usize) -> Self {
        Self {
            planned,
            ..Self::default()
        }
    }

    fn done(&self) -> u32 {
        count(
            self.resources
                .iter()
                .filter(|(_, status)| status.is_settled())
                .count(),
        )
    }

    fn total(&self) -> u32 {
        count(self.planned.max(self.resources.len()))
    }

    /// The port's event for `event`, counting it; `None` for statuses the port does not
    /// report (the stack's REVIEW_IN_PROGRESS or cleanup steps).
    fn record(&mut self, event: &StackEvent, stack_name: &str) -> Option<ResourceEvent> {
        let status: ResourceStatus = event.resource_status()?.as_str().parse().ok()?;
        let logical_id = event.logical_resource_id()?.to_string();
        let resource_type = event.resource_type().unwrap_or_default().to_string();
        let reason = event
            .resource_status_reason()
            .filter(|reason| !reason.is_empty())
            .map(str::to_string);
        let is_stack = resource_type == STACK_TYPE && logical_id == stack_name;
        if is_stack {
            let explains_failure = status.is_failed() || status.as_aws_str().contains("ROLLBACK");
            if explains_failure && reason.is_some() {
                self.stack_reason.clone_from(&reason);
            }
        } else {
            match self.resources.iter_mut().find(|(id, _)| *id == logical_id) {
                Some((_, latest)) => *latest = status,
                None => self.resources.push((logical_id.clone(), status)),
            }
            if status.is_failed() {
                self.failures
                    .push((logical_id.clone(), status, reason.clone()));
            }
        }
        Some(ResourceEvent {
            at: event
                .timestamp()
                .map(to_time)
                .unwrap_or_else(OffsetDateTime::now_utc),
            logical_id,
            resource_type,
            physical_id: event
                .physical_resource_id()
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            status,
            reason,
            done: self.done(),
            total: self.total(),
        })
    }

    /// The resources whose latest status is one of `statuses`.
    fn now(&self, statuses: &[ResourceStatus]) -> Vec<&str> {
        self.resources
            .iter()
            .filter(|(_, status)| statuses.contains(status))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Whether `id` failed at some point of the operation.
    fn failed(&self, id: &str) -> bool {
        self.failures.iter().any(|(failed, _, _)| failed == id)
    }

    /// "Database failed (CREATE_FAILED: the reason)", one per failure; the stack's own reason
    /// when no resource failed.
    fn failure_text(&self, statuses: &[ResourceStatus]) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .filter(|(_, status, _)| statuses.contains(status))
            .map(|(id, status, reason)| match reason {
                Some(reason) => format!("{id} failed ({status}: {reason})"),
                None => format!("{id} failed ({status})"),
            })
            .collect();
        if !failures.is_empty() {
            return failures.join("; ");
        }
        match &self.stack_reason {
            Some(reason) => format!("no resource reported a failure; the stack said: {reason}"),
            None => "no resource reported a failure".to_string(),
        }
    }

    /// What a finished operation that did not do what was asked did and did not change;
    /// `None` when it succeeded.
    fn summary(&self, operation: StackOperation, status: StackStatus) -> Option<String> {
        use ResourceStatus as R;
        if status.is_success() {
            return None;
        }
        let create_failures = [R::CreateFailed];
        let update_failures = [R::CreateFailed, R::UpdateFailed, R::DeleteFailed];
        let text = match status {
            StackStatus::RollbackComplete => {
                let undone: Vec<&str> = self
                    .now(&[R::DeleteComplete, R::DeleteSkipped])
                    .into_iter()
                    .filter(|id| !self.failed(id))
                    .collect();
                let undone = if undone.is_empty() {
                    "No other resource had been created".to_string()
                } else {
                    format!(
                        "CloudFormation deleted what it had created ({})",
                        undone.join(", ")
                    )
                };
                format!(
                    "The stack was not created: {}. {undone}, so nothing of it remains but the \
                     stack's ROLLBACK_COMPLETE record; delete it (triad down) before creating \
                     it again.",
                    self.failure_text(&create_failures)
                )
            }
            StackStatus::RollbackFailed | StackStatus::CreateFailed => {
                let remaining = self.now(&[R::CreateComplete, R::DeleteFailed]);
                format!(
                    "The stack was not created: {}. The rollback did not finish: {} still \
                     exist; delete the stack (triad down) to remove them.",
                    self.failure_text(&[R::CreateFailed, R::DeleteFailed]),
                    list_or_none(&remaining)
                )
            }
            StackStatus::UpdateRollbackComplete => {
                let touched: Vec<&str> = self.resources.iter().map(|(id, _)| id.as_str()).collect();
                format!(
                    "Nothing was changed: the update failed ({}) and CloudFormation put back \
                     what it had changed ({}).",
                    self.failure_text(&update_failures),
                    list_or_none(&touched)
                )
            }
            StackStatus::UpdateRollbackFailed | StackStatus::UpdateFailed => format!(
                "The update failed ({}) and was not rolled back completely: the stack is \
                 {status}, partly changed. Fix the cause, then continue the rollback \
                 (`aws cloudformation continue-update-rollback`).",
                self.failure_text(&[
                    R::CreateFailed,
                    R::UpdateFailed,
                    R::DeleteFailed,
                    R::UpdateRollbackFailed
                ]),
            ),
            StackStatus::DeleteFailed => {
                let deleted = self.now(&[R::DeleteComplete, R::DeleteSkipped]);
                format!(
                    "The stack was not deleted: {}. Deleted: {}; every other resource remains.",
                    self.failure_text(&[R::DeleteFailed]),
                    list_or_none(&deleted)
                )
            }
            _ => format!(
                "The {} ended {status}: {}.",
                operation_name(operation),
                self.failure_text(&[
                    R::CreateFailed,
                    R::UpdateFailed,
                    R::DeleteFailed,
                    R::ImportFailed,
                    R::ImportRollbackFailed,
                    R::RollbackFailed,
                    R::UpdateRollbackFailed
                ])
            ),
        };
        Some(text)
    }
}

fn list_or_none(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

fn operation_name(operation: StackOperation) -> &'static str {
    match operation {
        StackOperation::Create => "create",
        StackOperation::Update => "update",
        StackOperation::Delete => "delete",
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Follows one stack operation to its end, as a stream of [`ProvisionEvent`]s.
struct Follower {
    client: Option<Client>,
    stack_name: String,
    operation: StackOperation,
    cursor: Option<EventCursor>,
    progress: Progress,
    backoff: Backoff,
    deadline_secs: u64,
    first_poll: bool,
    pending: VecDeque<Result<ProvisionEvent, CloudError>>,
    finished: bool,
}

impl Follower {
    fn new(
        client: Client,
        stack: &StackRef,
        state: &StackState,
        operation: StackOperation,
        planned: usize,
        boundary: Boundary,
        polling: Polling,
    ) -> Self {
        let progress = Progress::new(planned);
        let started = ProvisionEvent::Started {
            at: OffsetDateTime::now_utc(),
            stack: stack.clone(),
            operation,
            total: progress.total(),
        };
        Self {
            client: Some(client),
            stack_name: stack.name.clone(),
            operation,
            cursor: Some(EventCursor {
                stack_id: state.id.clone(),
                stack_name: stack.name.clone(),
                boundary,
                seen: HashSet::new(),
            }),
            progress,
            backoff: Backoff::new(
                polling.first_interval,
                polling.max_interval,
                polling.operation_deadline,
            ),
            deadline_secs: polling.operation_deadline.as_secs(),
            first_poll: true,
            pending: VecDeque::from([Ok(started)]),
            finished: false,
        }
    }

    /// A stream that reports a stack already where the operation would take it.
    fn already_at_rest(
        stack: &StackRef,
        operation: StackOperation,
        status: StackStatus,
        outputs: Outputs,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            client: None,
            stack_name: stack.name.clone(),
            operation,
            cursor: None,
            progress: Progress::new(0),
            backoff: Backoff::new(Duration::ZERO, Duration::ZERO, Duration::ZERO),
            deadline_secs: 0,
            first_poll: false,
            pending: VecDeque::from([
                Ok(ProvisionEvent::Started {
                    at: now,
                    stack: stack.clone(),
                    operation,
                    total: 0,
                }),
                Ok(ProvisionEvent::Finished {
                    at: now,
                    stack_status: status,
                    outputs,
                    summary: None,
                }),
            ]),
            finished: true,
        }
    }

    fn into_stream(self) -> CloudStream<ProvisionEvent> {
        futures::stream::unfold(self, |mut follower| async move {
            loop {
                if let Some(item) = follower.pending.pop_front() {
                    return Some((item, follower));
                }
                if follower.finished {
                    return None;
                }
                follower.step().await;
            }
        })
        .boxed()
    }

    /// One poll: the stack's status, then its new events, then `Finished` when at rest.
    async fn step(&mut self) {
        let (Some(client), Some(cursor)) = (&self.client, &mut self.cursor) else {
            self.finished = true;
            return;
        };
        if !self.first_poll && !self.backoff.wait().await {
            self.fail(CloudError::Unavailable {
                message: format!(
                    "stack {} was still changing after {} s; run the command again to follow it",
                    self.stack_name, self.deadline_secs
                ),
            });
            return;
        }
        self.first_poll = false;
        let state = match describe_stack(client, &cursor.stack_id).await {
            Ok(state) => state,
            Err(error) => return self.fail(error),
        };
        let events = match cursor.poll(client).await {
            Ok(events) => events,
            Err(error) => return self.fail(error),
        };
        if !events.is_empty() {
            self.backoff.reset();
        }
        for event in &events {
            if let Some(item) = self.progress.record(event, &self.stack_name) {
                self.pending.push_back(Ok(ProvisionEvent::Resource(item)));
            }
        }
        let finished = match state {
            None if self.operation == StackOperation::Delete => {
                Some((StackStatus::DeleteComplete, Outputs::default()))
            }
            None => {
                return self.fail(CloudError::not_found(format!(
                    "stack {} (it disappeared while being changed)",
                    self.stack_name
                )));
            }
            Some(state) if state.status.is_terminal() => {
                let outputs = if self.operation == StackOperation::Delete {
                    Outputs::default()
                } else {
                    state.outputs
                };
                Some((state.status, outputs))
            }
            Some(_) => None,
        };
        if let Some((stack_status, outputs)) = finished {
            self.pending.push_back(Ok(ProvisionEvent::Finished {
                at: OffsetDateTime::now_utc(),
                stack_status,
                outputs,
                summary: self.progress.summary(self.operation, stack_status),
            }));
            self.finished = true;
        }
    }

    fn fail(&mut self, error: CloudError) {
        self.pending.push_back(Err(error));
        self.finished = true;
    }
}
