//! The AWS backend's CloudFormation side where moto cannot go, with `aws-smithy-mocks`. Each
//! test's comment names the moto gap it covers. A [`Script`] plays CloudFormation: each
//! DescribeStacks moves the stack one step on (its status, the events of that step), and
//! DescribeStackEvents answers every event so far, newest first, a few per page.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ErrorMetadata;
use aws_sdk_cloudformation::operation::create_change_set::{
    CreateChangeSetError, CreateChangeSetOutput,
};
use aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput;
use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::{
    DescribeStacksError, DescribeStacksOutput,
};
use aws_sdk_cloudformation::operation::execute_change_set::{
    ExecuteChangeSetError, ExecuteChangeSetOutput,
};
use aws_sdk_cloudformation::operation::list_stack_resources::ListStackResourcesOutput;
use aws_sdk_cloudformation::primitives::DateTime;
use aws_sdk_cloudformation::types as cfn;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use futures::StreamExt;
use provision::aws::{AwsCloud, Polling, render_plan, upload_artefact};
use provision::port::*;
use time::macros::datetime;

const STACK: &str = "shop-prod";
const STACK_ID: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/shop-prod/0f1e";
const CHANGE_SET: &str = "arn:aws:cloudformation:us-east-1:123456789012:changeSet/triad-1/9a8b";
/// How many events a DescribeStackEvents page holds (small, so following reads several).
const PAGE: usize = 2;

/// One step of a scripted stack: its status, the events it adds, its outputs.
struct Step {
    status: &'static str,
    events: Vec<cfn::StackEvent>,
    outputs: Vec<(&'static str, &'static str)>,
}

fn step(status: &'static str, events: Vec<cfn::StackEvent>) -> Step {
    Step {
        status,
        events,
        outputs: Vec::new(),
    }
}

/// A stack that moves one step per DescribeStacks (staying on the last one).
#[derive(Clone)]
struct Script {
    steps: Arc<Vec<Step>>,
    /// DescribeStacks calls so far.
    calls: Arc<Mutex<usize>>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: Arc::new(steps),
            calls: Arc::new(Mutex::new(0)),
        }
    }

    fn current(&self) -> usize {
        let calls = *self.calls.lock().expect("lock");
        calls.saturating_sub(1).min(self.steps.len() - 1)
    }

    fn describe_stacks(&self) -> Rule {
        let script = self.clone();
        mock!(Client::describe_stacks).then_compute_output(move |_| {
            let index = {
                let mut calls = script.calls.lock().expect("lock");
                *calls += 1;
                (*calls - 1).min(script.steps.len() - 1)
            };
            let step = &script.steps[index];
            let outputs = step.outputs.iter().map(|(key, value)| {
                cfn::Output::builder()
                    .output_key(*key)
                    .output_value(*value)
                    .build()
            });
            DescribeStacksOutput::builder()
                .stacks(
                    cfn::Stack::builder()
                        .stack_name(STACK)
                        .stack_id(STACK_ID)
                        .stack_status(cfn::StackStatus::from(step.status))
                        .creation_time(DateTime::from_secs(1_700_000_000))
                        .set_outputs(Some(outputs.collect()))
                        .build(),
                )
                .build()
        })
    }

    /// Every event up to the current step, newest first, `PAGE` at a time.
    fn describe_stack_events(&self) -> Rule {
        let script = self.clone();
        mock!(Client::describe_stack_events).then_compute_output(move |request| {
            let mut events: Vec<cfn::StackEvent> = script.steps[..=script.current()]
                .iter()
                .flat_map(|step| step.events.iter().cloned())
                .collect();
            events.reverse();
            let start: usize = request
                .next_token()
                .map(|token| token.parse().expect("a token this script gave"))
                .unwrap_or(0);
            let end = (start + PAGE).min(events.len());
            DescribeStackEventsOutput::builder()
                .set_stack_events(Some(events[start..end].to_vec()))
                .set_next_token((end < events.len()).then(|| end.to_string()))
                .build()
        })
    }
}

/// Numbers events in the order they are made, so ids and times are unique and ordered.
struct Events {
    next: i64,
}

impl Events {
    fn new() -> Self {
        Self { next: 0 }
    }

    fn stack(&mut self, status: &str, reason: Option<&str>) -> cfn::StackEvent {
        self.event(STACK, "AWS::CloudFormation::Stack", status, reason)
    }

    fn event(
        &mut self,
        logical_id: &str,
        kind: &str,
        status: &str,
        reason: Option<&str>,
    ) -> cfn::StackEvent {
        self.next += 1;
        cfn::StackEvent::builder()
            .stack_id(STACK_ID)
            .stack_name(STACK)
            .event_id(format!("event-{}", self.next))
            .logical_resource_id(logical_id)
            .physical_resource_id(format!("{}-phys", logical_id.to_lowercase()))
            .resource_type(kind)
            .timestamp(DateTime::from_secs(1_700_000_000 + self.next))
            .resource_status(cfn::ResourceStatus::from(status))
            .set_resource_status_reason(reason.map(str::to_string))
            .build()
    }
}

fn fast_polling() -> Polling {
    Polling {
        first_interval: Duration::from_millis(1),
        max_interval: Duration::from_millis(5),
        change_set_deadline: Duration::from_secs(10),
        operation_deadline: Duration::from_secs(10),
    }
}

/// A backend over a CloudFormation client answering with `rules` (any order) and an S3 client
/// answering with `s3_rules`.
fn cloud(rules: &[&Rule], s3_rules: &[&Rule]) -> AwsCloud {
    let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, rules);
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3_rules);
    AwsCloud::from_clients(cfn, s3).with_polling(fast_polling())
}

fn stack() -> StackRef {
    StackRef::new(STACK).expect("valid name")
}

fn desired(parameters: &[(&str, &str)]) -> DesiredStack {
    DesiredStack {
        stack: stack(),
        template_body: "{\"Resources\": {}}".into(),
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tags: BTreeMap::new(),
        spec: serde_json::Value::Null,
    }
}

/// A plan adding `ids` to a new stack, as `plan` would have made it.
fn create_plan(ids: &[(&str, &str)]) -> Plan {
    Plan {
        desired: desired(&[]),
        creates_stack: true,
        change_set: Some(CHANGE_SET.into()),
        changes: ids
            .iter()
            .map(|(id, kind)| ResourceChange {
                logical_id: id.to_string(),
                resource_type: kind.to_string(),
                physical_id: None,
                action: ChangeAction::Add,
                reasons: Vec::new(),
            })
            .collect(),
        prepare: Vec::new(),
        blockers: Vec::new(),
        planned_at: datetime!(2026-01-01 00:00 UTC),
    }
}

fn execute_ok() -> Rule {
    mock!(Client::execute_change_set)
        .match_requests(|r| r.change_set_name() == Some(CHANGE_SET))
        .then_output(|| ExecuteChangeSetOutput::builder().build())
}

async fn drain(mut events: CloudStream<ProvisionEvent>) -> Vec<ProvisionEvent> {
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => all.push(event),
            Err(error) => panic!("the stream failed after {all:?}: {error}"),
        }
    }
    all
}

/// (logical id, status, done, total) of each Resource item.
fn progress(events: &[ProvisionEvent]) -> Vec<(String, ResourceStatus, u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            ProvisionEvent::Resource(r) => Some((r.logical_id.clone(), r.status, r.done, r.total)),
            _ => None,
        })
        .collect()
}

fn row(
    id: &str,
    status: ResourceStatus,
    done: u32,
    total: u32,
) -> (String, ResourceStatus, u32, u32) {
    (id.to_string(), status, done, total)
}

/// Per-resource events become "X of Y": Y from the plan, X the resources settled so far. Only
/// the events of this operation count (not the earlier ones), they arrive over several pages,
/// and the outputs are read at the end.
/// Moto gap: moto's stacks have no per-resource events, and no outputs after a change set.
#[tokio::test]
async fn resource_events_count_x_of_y() {
    use ResourceStatus::*;
    let mut e = Events::new();
    let script = Script::new(vec![
        step(
            "REVIEW_IN_PROGRESS",
            vec![
                e.event("Old", "AWS::SNS::Topic", "DELETE_COMPLETE", None),
                e.stack("REVIEW_IN_PROGRESS", Some("User Initiated")),
            ],
        ),
        step(
            "CREATE_IN_PROGRESS",
            vec![
                e.stack("CREATE_IN_PROGRESS", Some("User Initiated")),
                e.event("Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS", None),
            ],
        ),
        step(
            "CREATE_IN_PROGRESS",
            vec![
                e.event("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", None),
                e.event("Topic", "AWS::SNS::Topic", "CREATE_IN_PROGRESS", None),
                e.event("Table", "AWS::DynamoDB::Table", "CREATE_IN_PROGRESS", None),
            ],
        ),
        step("CREATE_IN_PROGRESS", Vec::new()),
        step(
            "CREATE_IN_PROGRESS",
            vec![e.event("Topic", "AWS::SNS::Topic", "CREATE_COMPLETE", None)],
        ),
        Step {
            status: "CREATE_COMPLETE",
            events: vec![
                e.event("Table", "AWS::DynamoDB::Table", "CREATE_COMPLETE", None),
                e.stack("CREATE_COMPLETE", None),
            ],
            outputs: vec![("TopicArn", "arn:aws:sns:us-east-1:123456789012:topic")],
        },
    ]);
    let (stacks, events, execute) = (
        script.describe_stacks(),
        script.describe_stack_events(),
        execute_ok(),
    );
    let cloud = cloud(&[&stacks, &events, &execute], &[]);
    let plan = create_plan(&[
        ("Vpc", "AWS::EC2::VPC"),
        ("Topic", "AWS::SNS::Topic"),
        ("Table", "AWS::DynamoDB::Table"),
    ]);

    let items = drain(cloud.apply(&plan)).await;

    assert!(
        matches!(
            items.first(),
            Some(ProvisionEvent::Started {
                operation: StackOperation::Create,
                total: 3,
                ..
            })
        ),
        "{items:?}"
    );
    assert_eq!(
        progress(&items),
        vec![
            row(STACK, CreateInProgress, 0, 3),
            row("Vpc", CreateInProgress, 0, 3),
            row("Vpc", CreateComplete, 1, 3),
            row("Topic", CreateInProgress, 1, 3),
            row("Table", CreateInProgress, 1, 3),
            row("Topic", CreateComplete, 2, 3),
            row("Table", CreateComplete, 3, 3),
            row(STACK, CreateComplete, 3, 3),
        ]
    );
    let Some(ProvisionEvent::Finished {
        stack_status,
        outputs,
        summary,
        ..
    }) = items.last()
    else {
        panic!("ends with Finished: {items:?}");
    };
    assert_eq!(*stack_status, StackStatus::CreateComplete);
    assert_eq!(
        outputs.get("TopicArn"),
        Some("arn:aws:sns:us-east-1:123456789012:topic")
    );
    assert_eq!(*summary, None, "a success needs no summary");
    assert_eq!(execute.num_calls(), 1);
}

/// A create that fails: the failing resource's event carries CloudFormation's reason, and the
/// Finished (ROLLBACK_COMPLETE, not an error) says what failed, what was created and deleted
/// again, and that nothing remains.
/// Moto gap: nothing ever fails or rolls back on moto.
#[tokio::test]
async fn a_failed_create_says_what_failed_and_what_was_rolled_back() {
    let db_reason = "Resource handler returned message: \"The parameter MasterUserPassword is \
                     not a valid password.\" (Service: Rds, Status Code: 400)";
    let stack_reason =
        "The following resource(s) failed to create: [Database]. Rollback requested by user.";
    let mut e = Events::new();
    let script = Script::new(vec![
        step(
            "REVIEW_IN_PROGRESS",
            vec![e.stack("REVIEW_IN_PROGRESS", Some("User Initiated"))],
        ),
        step(
            "CREATE_IN_PROGRESS",
            vec![
                e.stack("CREATE_IN_PROGRESS", Some("User Initiated")),
                e.event("Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS", None),
                e.event("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", None),
                e.event("Subnet", "AWS::EC2::Subnet", "CREATE_IN_PROGRESS", None),
                e.event("Subnet", "AWS::EC2::Subnet", "CREATE_COMPLETE", None),
                e.event(
                    "Database",
                    "AWS::RDS::DBInstance",
                    "CREATE_IN_PROGRESS",
                    None,
                ),
            ],
        ),
        step(
            "ROLLBACK_IN_PROGRESS",
            vec![
                e.event(
                    "Database",
                    "AWS::RDS::DBInstance",
                    "CREATE_FAILED",
                    Some(db_reason),
                ),
                e.stack("ROLLBACK_IN_PROGRESS", Some(stack_reason)),
                e.event("Database", "AWS::RDS::DBInstance", "DELETE_COMPLETE", None),
                e.event("Subnet", "AWS::EC2::Subnet", "DELETE_IN_PROGRESS", None),
            ],
        ),
        step(
            "ROLLBACK_COMPLETE",
            vec![
                e.event("Subnet", "AWS::EC2::Subnet", "DELETE_COMPLETE", None),
                e.event("Vpc", "AWS::EC2::VPC", "DELETE_IN_PROGRESS", None),
                e.event("Vpc", "AWS::EC2::VPC", "DELETE_COMPLETE", None),
                e.stack("ROLLBACK_COMPLETE", None),
            ],
        ),
    ]);
    let (stacks, events, execute) = (
        script.describe_stacks(),
        script.describe_stack_events(),
        execute_ok(),
    );
    let cloud = cloud(&[&stacks, &events, &execute], &[]);
    let plan = create_plan(&[
        ("Vpc", "AWS::EC2::VPC"),
        ("Subnet", "AWS::EC2::Subnet"),
        ("Database", "AWS::RDS::DBInstance"),
    ]);

    let items = drain(cloud.apply(&plan)).await;

    let failed: Vec<&ResourceEvent> = items
        .iter()
        .filter_map(|e| match e {
            ProvisionEvent::Resource(r) if r.status.is_failed() => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{items:?}");
    assert_eq!(failed[0].logical_id, "Database");
    assert_eq!(failed[0].status, ResourceStatus::CreateFailed);
    assert_eq!(failed[0].reason.as_deref(), Some(db_reason));
    assert!(
        items.iter().any(|e| matches!(e,
            ProvisionEvent::Resource(r) if r.logical_id == STACK
                && r.status == ResourceStatus::RollbackInProgress
                && r.reason.as_deref() == Some(stack_reason))),
        "the stack's own reason is reported: {items:?}"
    );
    let Some(ProvisionEvent::Finished {
        stack_status,
        summary,
        ..
    }) = items.last()
    else {
        panic!("a rolled-back create still ends with Finished: {items:?}");
    };
    assert_eq!(*stack_status, StackStatus::RollbackComplete);
    assert!(!stack_status.is_success());
    let summary = summary.as_deref().expect("a failure has a summary");
    for part in [
        "The stack was not created",
        "Database failed (CREATE_FAILED: Resource handler returned message",
        "MasterUserPassword",
        "deleted what it had created (Vpc, Subnet)",
        "nothing of it remains",
        "triad down",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary:?}");
    }
}

/// A failed update that CloudFormation rolled back: nothing was changed, and the summary says
/// so along with the reason.
/// Moto gap: nothing ever fails or rolls back on moto.
#[tokio::test]
async fn a_rolled_back_update_says_nothing_was_changed() {
    let reason = "Resource handler returned message: \"You are not authorized to perform this \
                  operation\" (Service: Ec2, Status Code: 403)";
    let mut e = Events::new();
    let script = Script::new(vec![
        step("CREATE_COMPLETE", vec![e.stack("CREATE_COMPLETE", None)]),
        step(
            "UPDATE_ROLLBACK_COMPLETE",
            vec![
                e.stack("UPDATE_IN_PROGRESS", Some("User Initiated")),
                e.event(
                    "LaunchTemplate",
                    "AWS::EC2::LaunchTemplate",
                    "UPDATE_IN_PROGRESS",
                    None,
                ),
                e.event(
                    "LaunchTemplate",
                    "AWS::EC2::LaunchTemplate",
                    "UPDATE_FAILED",
                    Some(reason),
                ),
                e.stack(
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    Some("The following resource(s) failed to update: [LaunchTemplate]."),
                ),
                e.event(
                    "LaunchTemplate",
                    "AWS::EC2::LaunchTemplate",
                    "UPDATE_COMPLETE",
                    None,
                ),
                e.stack("UPDATE_ROLLBACK_COMPLETE", None),
            ],
        ),
    ]);
    let (stacks, events, execute) = (
        script.describe_stacks(),
        script.describe_stack_events(),
        execute_ok(),
    );
    let cloud = cloud(&[&stacks, &events, &execute], &[]);
    let mut plan = create_plan(&[("LaunchTemplate", "AWS::EC2::LaunchTemplate")]);
    plan.creates_stack = false;
    plan.changes[0].action = ChangeAction::Modify;

    let items = drain(cloud.apply(&plan)).await;

    let Some(ProvisionEvent::Finished {
        stack_status,
        summary,
        ..
    }) = items.last()
    else {
        panic!("ends with Finished: {items:?}");
    };
    assert_eq!(*stack_status, StackStatus::UpdateRollbackComplete);
    let summary = summary.as_deref().expect("a failure has a summary");
    assert!(summary.starts_with("Nothing was changed"), "{summary}");
    assert!(
        summary.contains(&format!("LaunchTemplate failed (UPDATE_FAILED: {reason})")),
        "{summary}"
    );
}

/// Destroy deletes the stack by its id and follows the deletion resource by resource to
/// DELETE_COMPLETE, Y being the stack's resources (two pages of them).
/// Moto gap: moto cannot delete a stack holding a VPC (DependencyViolation, and it drops the
/// stack record), and it has no per-resource events.
#[tokio::test]
async fn destroy_follows_each_resource_to_delete_complete() {
    use ResourceStatus::*;
    let mut e = Events::new();
    let script = Script::new(vec![
        step("UPDATE_COMPLETE", vec![e.stack("UPDATE_COMPLETE", None)]),
        step(
            "DELETE_IN_PROGRESS",
            vec![
                e.stack("DELETE_IN_PROGRESS", Some("User Initiated")),
                e.event("Topic", "AWS::SNS::Topic", "DELETE_IN_PROGRESS", None),
                e.event("Topic", "AWS::SNS::Topic", "DELETE_COMPLETE", None),
                e.event("Vpc", "AWS::EC2::VPC", "DELETE_IN_PROGRESS", None),
            ],
        ),
        step(
            "DELETE_COMPLETE",
            vec![
                e.event("Vpc", "AWS::EC2::VPC", "DELETE_COMPLETE", None),
                e.event("Bucket", "AWS::S3::Bucket", "DELETE_SKIPPED", None),
                e.stack("DELETE_COMPLETE", None),
            ],
        ),
    ]);
    let resources = mock!(Client::list_stack_resources)
        .match_requests(|r| r.stack_name() == Some(STACK_ID))
        .then_compute_output(|request| {
            let summary = |id: &str| {
                cfn::StackResourceSummary::builder()
                    .logical_resource_id(id)
                    .resource_type("AWS::Test")
                    .resource_status(cfn::ResourceStatus::CreateComplete)
                    .last_updated_timestamp(DateTime::from_secs(1_700_000_000))
                    .build()
            };
            match request.next_token() {
                None => ListStackResourcesOutput::builder()
                    .stack_resource_summaries(summary("Topic"))
                    .stack_resource_summaries(summary("Vpc"))
                    .next_token("page-2")
                    .build(),
                Some(_) => ListStackResourcesOutput::builder()
                    .stack_resource_summaries(summary("Bucket"))
                    .build(),
            }
        });
    let delete = mock!(Client::delete_stack)
        .match_requests(|r| r.stack_name() == Some(STACK_ID))
        .then_output(|| DeleteStackOutput::builder().build());
    let (stacks, events) = (script.describe_stacks(), script.describe_stack_events());
    let cloud = cloud(&[&stacks, &events, &resources, &delete], &[]);

    let items = drain(cloud.destroy(&stack())).await;

    assert!(
        matches!(
            items.first(),
            Some(ProvisionEvent::Started {
                operation: StackOperation::Delete,
                total: 3,
                ..
            })
        ),
        "{items:?}"
    );
    assert_eq!(
        progress(&items),
        vec![
            row(STACK, DeleteInProgress, 0, 3),
            row("Topic", DeleteInProgress, 0, 3),
            row("Topic", DeleteComplete, 1, 3),
            row("Vpc", DeleteInProgress, 1, 3),
            row("Vpc", DeleteComplete, 2, 3),
            row("Bucket", DeleteSkipped, 3, 3),
            row(STACK, DeleteComplete, 3, 3),
        ]
    );
    assert!(
        matches!(
            items.last(),
            Some(ProvisionEvent::Finished {
                stack_status: StackStatus::DeleteComplete,
                outputs,
                summary: None,
                ..
            }) if outputs.is_empty()
        ),
        "{items:?}"
    );
    assert_eq!(delete.num_calls(), 1);
}

/// A delete that fails says which resource could not be deleted, why, and what was deleted.
/// Moto gap: nothing ever fails on moto (its DependencyViolation comes back from DeleteStack
/// itself, with the stack record gone).
#[tokio::test]
async fn a_failed_delete_says_what_remains() {
    let reason = "The vpc 'vpc-0abc' has dependencies and cannot be deleted. (Service: Ec2, \
                  Status Code: 400)";
    let mut e = Events::new();
    let script = Script::new(vec![
        step("CREATE_COMPLETE", vec![e.stack("CREATE_COMPLETE", None)]),
        step(
            "DELETE_FAILED",
            vec![
                e.stack("DELETE_IN_PROGRESS", Some("User Initiated")),
                e.event("Topic", "AWS::SNS::Topic", "DELETE_COMPLETE", None),
                e.event("Vpc", "AWS::EC2::VPC", "DELETE_FAILED", Some(reason)),
                e.stack(
                    "DELETE_FAILED",
                    Some("The following resource(s) failed to delete: [Vpc]."),
                ),
            ],
        ),
    ]);
    let resources = mock!(Client::list_stack_resources)
        .then_output(|| ListStackResourcesOutput::builder().build());
    let delete = mock!(Client::delete_stack).then_output(|| DeleteStackOutput::builder().build());
    let (stacks, events) = (script.describe_stacks(), script.describe_stack_events());
    let cloud = cloud(&[&stacks, &events, &resources, &delete], &[]);

    let items = drain(cloud.destroy(&stack())).await;

    let Some(ProvisionEvent::Finished {
        stack_status,
        summary,
        ..
    }) = items.last()
    else {
        panic!("ends with Finished: {items:?}");
    };
    assert_eq!(*stack_status, StackStatus::DeleteFailed);
    let summary = summary.as_deref().expect("a failure has a summary");
    assert!(
        summary.starts_with("The stack was not deleted"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("Vpc failed (DELETE_FAILED: {reason})")),
        "{summary}"
    );
    assert!(summary.contains("Deleted: Topic"), "{summary}");
}

/// An apply that finds the stack already changing (an interrupted `up`) follows that
/// operation from its start event, without executing anything.
/// Moto gap: moto finishes every operation within the call that starts it, so a stack is
/// never found in the middle of one.
#[tokio::test]
async fn apply_follows_an_operation_already_running() {
    let mut e = Events::new();
    let script = Script::new(vec![
        step(
            "UPDATE_IN_PROGRESS",
            vec![
                e.stack("CREATE_COMPLETE", None),
                e.stack("UPDATE_IN_PROGRESS", Some("User Initiated")),
                e.event("Topic", "AWS::SNS::Topic", "UPDATE_IN_PROGRESS", None),
            ],
        ),
        step(
            "UPDATE_COMPLETE",
            vec![
                e.event("Topic", "AWS::SNS::Topic", "UPDATE_COMPLETE", None),
                e.stack("UPDATE_COMPLETE", None),
            ],
        ),
    ]);
    let (stacks, events, execute) = (
        script.describe_stacks(),
        script.describe_stack_events(),
        execute_ok(),
    );
    let cloud = cloud(&[&stacks, &events, &execute], &[]);
    let mut plan = create_plan(&[("Topic", "AWS::SNS::Topic")]);
    plan.creates_stack = false;

    let items = drain(cloud.apply(&plan)).await;

    let ids: Vec<(String, ResourceStatus)> = progress(&items)
        .into_iter()
        .map(|(id, status, _, _)| (id, status))
        .collect();
    assert_eq!(
        ids,
        vec![
            (STACK.to_string(), ResourceStatus::UpdateInProgress),
            ("Topic".to_string(), ResourceStatus::UpdateInProgress),
            ("Topic".to_string(), ResourceStatus::UpdateComplete),
            (STACK.to_string(), ResourceStatus::UpdateComplete),
        ],
        "from the operation's first event on"
    );
    assert_eq!(execute.num_calls(), 0, "nothing new is started");
}

/// A new app version is an UPDATE change set whose launch template changes through the
/// AppVersion parameter, and the group through the template's new version; the plan reads
/// every page and keeps CloudFormation's reasons.
/// Moto gap: moto's change sets compare resource text and ignore parameters, so a parameter
/// change lists no resource there.
#[tokio::test]
async fn a_new_app_version_modifies_the_launch_template() {
    let stacks = mock!(Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                cfn::Stack::builder()
                    .stack_name(STACK)
                    .stack_id(STACK_ID)
                    .stack_status(cfn::StackStatus::UpdateComplete)
                    .build(),
            )
            .build()
    });
    let create = mock!(Client::create_change_set)
        .match_requests(|r| {
            r.change_set_type() == Some(&cfn::ChangeSetType::Update)
                && r.parameters().iter().any(|p| {
                    p.parameter_key() == Some("AppVersion") && p.parameter_value() == Some("0.2.0")
                })
        })
        .then_output(|| CreateChangeSetOutput::builder().id(CHANGE_SET).build());
    let launch_template = cfn::ResourceChange::builder()
        .action(cfn::ChangeAction::Modify)
        .logical_resource_id("LaunchTemplate")
        .physical_resource_id("lt-0abc")
        .resource_type("AWS::EC2::LaunchTemplate")
        .replacement(cfn::Replacement::False)
        .details(
            cfn::ResourceChangeDetail::builder()
                .target(
                    cfn::ResourceTargetDefinition::builder()
                        .attribute(cfn::ResourceAttribute::Properties)
                        .name("LaunchTemplateData")
                        .requires_recreation(cfn::RequiresRecreation::Never)
                        .build(),
                )
                .evaluation(cfn::EvaluationType::Static)
                .change_source(cfn::ChangeSource::ParameterReference)
                .causing_entity("AppVersion")
                .build(),
        )
        .build();
    let group = cfn::ResourceChange::builder()
        .action(cfn::ChangeAction::Modify)
        .logical_resource_id("AutoScalingGroup")
        .physical_resource_id("shop-prod-asg")
        .resource_type("AWS::AutoScaling::AutoScalingGroup")
        .replacement(cfn::Replacement::False)
        .details(
            cfn::ResourceChangeDetail::builder()
                .target(
                    cfn::ResourceTargetDefinition::builder()
                        .attribute(cfn::ResourceAttribute::Properties)
                        .name("LaunchTemplate")
                        .requires_recreation(cfn::RequiresRecreation::Never)
                        .build(),
                )
                .evaluation(cfn::EvaluationType::Dynamic)
                .change_source(cfn::ChangeSource::ResourceAttribute)
                .causing_entity("LaunchTemplate.LatestVersionNumber")
                .build(),
        )
        .build();
    let describe = mock!(Client::describe_change_set)
        .sequence()
        .output(|| {
            DescribeChangeSetOutput::builder()
                .status(cfn::ChangeSetStatus::CreateInProgress)
                .build()
        })
        .output(move || {
            DescribeChangeSetOutput::builder()
                .status(cfn::ChangeSetStatus::CreateComplete)
                .changes(
                    cfn::Change::builder()
                        .r#type(cfn::ChangeType::Resource)
                        .resource_change(launch_template.clone())
                        .build(),
                )
                .next_token("page-2")
                .build()
        })
        .output(move || {
            DescribeChangeSetOutput::builder()
                .status(cfn::ChangeSetStatus::CreateComplete)
                .changes(
                    cfn::Change::builder()
                        .r#type(cfn::ChangeType::Resource)
                        .resource_change(group.clone())
                        .build(),
                )
                .build()
        })
        .build();
    let cloud = cloud(&[&stacks, &create, &describe], &[]);

    let plan = cloud
        .plan(&desired(&[("AppVersion", "0.2.0")]))
        .await
        .expect("plan");

    assert!(!plan.creates_stack);
    assert_eq!(plan.change_set.as_deref(), Some(CHANGE_SET));
    assert_eq!(
        plan.changes,
        vec![
            ResourceChange {
                logical_id: "LaunchTemplate".into(),
                resource_type: "AWS::EC2::LaunchTemplate".into(),
                physical_id: Some("lt-0abc".into()),
                action: ChangeAction::Modify,
                reasons: vec![
                    "Properties.LaunchTemplateData changes (parameter AppVersion)".into()
                ],
            },
            ResourceChange {
                logical_id: "AutoScalingGroup".into(),
                resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
                physical_id: Some("shop-prod-asg".into()),
                action: ChangeAction::Modify,
                reasons: vec![
                    "Properties.LaunchTemplate changes (because \
                     LaunchTemplate.LatestVersionNumber changes) if its value differs"
                        .into()
                ],
            },
        ]
    );
    let text = render_plan(&plan);
    assert!(
        text.starts_with("Plan to update stack shop-prod:\n"),
        "{text}"
    );
    assert!(text.contains("~   LaunchTemplate "), "{text}");
    assert!(
        text.contains("        Properties.LaunchTemplateData changes (parameter AppVersion)\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Plan: 0 to add, 2 to change, 0 to replace, 0 to delete.\n"),
        "{text}"
    );
}

/// "No updates are to be performed" is an empty plan, not an error, and its failed change set
/// is deleted.
/// Moto gap: moto words it only as "didn't contain changes" (covered in aws_cfn.rs); AWS
/// also answers this way.
#[tokio::test]
async fn no_updates_is_an_empty_plan() {
    let stacks = mock!(Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                cfn::Stack::builder()
                    .stack_name(STACK)
                    .stack_id(STACK_ID)
                    .stack_status(cfn::StackStatus::UpdateComplete)
                    .build(),
            )
            .build()
    });
    let create = mock!(Client::create_change_set)
        .then_output(|| CreateChangeSetOutput::builder().id(CHANGE_SET).build());
    let describe = mock!(Client::describe_change_set).then_output(|| {
        DescribeChangeSetOutput::builder()
            .status(cfn::ChangeSetStatus::Failed)
            .status_reason("No updates are to be performed.")
            .build()
    });
    let delete = mock!(Client::delete_change_set)
        .match_requests(|r| r.change_set_name() == Some(CHANGE_SET))
        .then_output(|| DeleteChangeSetOutput::builder().build());
    let cloud = cloud(&[&stacks, &create, &describe, &delete], &[]);

    let plan = cloud.plan(&desired(&[])).await.expect("plan");

    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.change_set, None);
    assert_eq!(delete.num_calls(), 1, "the failed change set is deleted");
}

fn service_error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// AccessDenied on the first call of a plan comes back with the service's code and message.
/// Moto gap: moto enforces no IAM policy.
#[tokio::test]
async fn access_denied_names_the_missing_permission() {
    let message = "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: \
                   cloudformation:DescribeStacks on resource: \
                   arn:aws:cloudformation:us-east-1:123456789012:stack/shop-prod/* because no \
                   identity-based policy allows the cloudformation:DescribeStacks action";
    let stacks = mock!(Client::describe_stacks)
        .then_error(move || DescribeStacksError::generic(service_error("AccessDenied", message)));
    let cloud = cloud(&[&stacks], &[]);

    let error = cloud.plan(&desired(&[])).await.expect_err("refused");

    let CloudError::Backend {
        service,
        code,
        message: said,
    } = &error
    else {
        panic!("a backend error: {error:?}");
    };
    assert_eq!(
        (service.as_str(), code.as_str()),
        ("cloudformation", "AccessDenied")
    );
    assert!(said.contains(message), "{said}");
    assert!(
        error.to_string().contains("cloudformation:DescribeStacks"),
        "{error}"
    );
}

/// A template CloudFormation rejects: the ValidationError's message reaches the caller.
/// Moto gap: moto does not validate templates (it accepts an unresolved Ref, and answers a
/// malformed body with HTTP 500).
#[tokio::test]
async fn a_validation_error_carries_the_service_message() {
    let message = "Template format error: Unresolved resource dependencies [Missing] in the \
                   Resources block of the template";
    let stacks = mock!(Client::describe_stacks).then_error(|| {
        DescribeStacksError::generic(service_error(
            "ValidationError",
            "Stack with id shop-prod does not exist",
        ))
    });
    let create = mock!(Client::create_change_set)
        .match_requests(|r| r.change_set_type() == Some(&cfn::ChangeSetType::Create))
        .then_error(move || {
            CreateChangeSetError::generic(service_error("ValidationError", message))
        });
    let cloud = cloud(&[&stacks, &create], &[]);

    let error = cloud.plan(&desired(&[])).await.expect_err("rejected");

    assert!(
        matches!(&error, CloudError::Backend { code, message: said, .. }
            if code == "ValidationError" && said.contains(message)),
        "{error:?}"
    );
}

/// An apply refused by the service fails before it starts anything, with the message.
/// Moto gap: moto enforces no IAM policy.
#[tokio::test]
async fn an_apply_refused_by_the_service_is_an_error_item() {
    let message = "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: \
                   cloudformation:ExecuteChangeSet";
    let mut e = Events::new();
    let script = Script::new(vec![step(
        "REVIEW_IN_PROGRESS",
        vec![e.stack("REVIEW_IN_PROGRESS", None)],
    )]);
    let execute = mock!(Client::execute_change_set)
        .then_error(move || ExecuteChangeSetError::generic(service_error("AccessDenied", message)));
    let (stacks, events) = (script.describe_stacks(), script.describe_stack_events());
    let cloud = cloud(&[&stacks, &events, &execute], &[]);

    let items: Vec<_> = cloud
        .apply(&create_plan(&[("Vpc", "AWS::EC2::VPC")]))
        .collect()
        .await;

    assert!(
        matches!(items.as_slice(), [Err(CloudError::Backend { code, message: said, .. })]
            if code == "AccessDenied" && said.contains(message)),
        "{items:?}"
    );
}

/// An upload refused by S3 carries S3's code and message.
/// Moto gap: moto enforces no bucket policy or IAM permission.
#[tokio::test]
async fn an_upload_refused_by_s3_carries_its_message() {
    let head = mock!(aws_sdk_s3::Client::head_object).then_error(|| {
        HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
    });
    let put = mock!(aws_sdk_s3::Client::put_object).then_error(|| {
        PutObjectError::generic(
            aws_sdk_s3::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User is not authorized to perform: s3:PutObject")
                .build(),
        )
    });
    let cloud = cloud(&[], &[&head, &put]);

    let error = upload_artefact(&cloud, None, "bucket", "webapp/1/webapp", b"x".to_vec())
        .await
        .expect_err("refused");

    assert!(
        matches!(&error, CloudError::Backend { service, code, message }
            if service == "s3" && code == "AccessDenied" && message.contains("s3:PutObject")),
        "{error:?}"
    );
    assert_eq!(put.num_calls(), 1);
}
