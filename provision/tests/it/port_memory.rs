//! The in-memory backend under each operation: plan / apply / destroy, snapshot and watch,
//! deploy with instance refresh preferences (batches, checkpoints, bake time, failure,
//! auto rollback, cancel, rollback, wait), and every fault with its restore. Time moves only
//! through the manual clock; progress only through `tick`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provision::memory::MemoryCloud;
use provision::port::*;
use time::macros::datetime;

struct World {
    clock: Arc<ManualClock>,
    cloud: MemoryCloud,
    stack: StackRef,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::new(datetime!(2026-03-01 12:00 UTC)));
    let cloud = MemoryCloud::new(clock.clone());
    let stack = StackRef::new("mem").expect("valid name");
    cloud.seed_stack(&stack);
    World {
        clock,
        cloud,
        stack,
    }
}

impl World {
    async fn snapshot(&self) -> Snapshot {
        self.cloud.snapshot(&self.stack).await.expect("snapshot")
    }

    async fn refresh(&self) -> Refresh {
        self.snapshot().await.refreshes[0].clone()
    }

    fn tick(&self) {
        self.cloud.tick(&self.stack).expect("tick");
    }

    /// Ticks until the newest refresh is terminal, at most `limit` times.
    async fn tick_until_settled(&self, limit: usize) -> Refresh {
        for _ in 0..limit {
            let refresh = self.refresh().await;
            if refresh.status.is_terminal() {
                return refresh;
            }
            self.tick();
        }
        panic!("refresh did not settle within {limit} ticks");
    }

    async fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .snapshot()
            .await
            .azs
            .iter()
            .flat_map(|az| az.instances.iter())
            .map(|i| {
                i.version
                    .clone()
                    .expect("memory instances know their version")
            })
            .collect();
        versions.sort();
        versions
    }
}

fn template(resources: serde_json::Value) -> String {
    serde_json::json!({
        "Resources": resources,
        "Outputs": {"DatabaseEndpoint": {"Value": "x"}}
    })
    .to_string()
}

fn desired(stack: &StackRef, body: String, version: &str) -> DesiredStack {
    DesiredStack {
        stack: stack.clone(),
        template_body: body,
        parameters: [("AppVersion".to_owned(), version.to_owned())].into(),
        tags: Default::default(),
        spec: serde_json::Value::Null,
    }
}

async fn collect(stream: CloudStream<ProvisionEvent>) -> Vec<ProvisionEvent> {
    stream
        .map(|item| item.expect("no error items"))
        .collect()
        .await
}

#[tokio::test]
async fn plan_apply_and_destroy_a_new_stack() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-03-01 12:00 UTC)));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("fresh").expect("valid");
    let v1 = template(serde_json::json!({
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                  "Properties": {"Version": {"Ref": "AppVersion"}}},
    }));
    let plan = cloud
        .plan(&desired(&stack, v1.clone(), "v1"))
        .await
        .expect("plan");
    assert!(plan.creates_stack);
    assert_eq!(plan.summary().add, 2);

    let events = collect(cloud.apply(&plan)).await;
    assert!(matches!(
        events.first(),
        Some(ProvisionEvent::Started {
            operation: StackOperation::Create,
            total: 2,
            ..
        })
    ));
    let progress: Vec<(ResourceStatus, u32, u32)> = events
        .iter()
        .filter_map(|e| match e {
            ProvisionEvent::Resource(r) => Some((r.status, r.done, r.total)),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [
            (ResourceStatus::CreateInProgress, 0, 2),
            (ResourceStatus::CreateComplete, 1, 2),
            (ResourceStatus::CreateInProgress, 1, 2),
            (ResourceStatus::CreateComplete, 2, 2),
        ]
    );
    let Some(ProvisionEvent::Finished {
        stack_status,
        outputs,
        ..
    }) = events.last()
    else {
        panic!("apply ends with Finished: {events:?}");
    };
    assert_eq!(*stack_status, StackStatus::CreateComplete);
    assert_eq!(
        outputs.get("DatabaseEndpoint"),
        Some("memory://fresh/DatabaseEndpoint")
    );

    let snapshot = cloud.snapshot(&stack).await.expect("stack exists");
    assert_eq!(snapshot.azs.len(), 3);
    for view in &snapshot.azs {
        assert_eq!(view.instances.len(), 2, "balanced across AZs");
        assert_eq!(view.healthy_capacity(), 2);
    }
    assert_eq!(snapshot.db_primary_az(), Some("mem-1a"));
    assert_eq!(snapshot.db_standby_az(), Some("mem-1b"));

    // Applying the same plan again is stale; the same template plans to nothing.
    let mut stale = cloud.apply(&plan);
    assert!(matches!(
        stale.next().await,
        Some(Err(CloudError::Conflict { .. }))
    ));
    let again = cloud.plan(&desired(&stack, v1, "v1")).await.expect("plan");
    assert!(again.is_empty(), "{:?}", again.changes);

    // A changed property, a changed parameter and a removed resource.
    let v2 = template(serde_json::json!({
        "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                  "Properties": {"Version": {"Ref": "AppVersion"}, "MaxSize": 9}},
        "Topic": {"Type": "AWS::SNS::Topic"},
    }));
    let update = cloud.plan(&desired(&stack, v2, "v2")).await.expect("plan");
    let by_id = |id: &str| {
        update
            .changes
            .iter()
            .find(|c| c.logical_id == id)
            .unwrap_or_else(|| panic!("{id} in plan"))
    };
    assert_eq!(by_id("Group").action, ChangeAction::Modify);
    assert_eq!(
        by_id("Group").reasons,
        ["Properties.MaxSize changed", "parameter AppVersion changed"]
    );
    assert_eq!(by_id("Topic").action, ChangeAction::Add);
    assert_eq!(by_id("Vpc").action, ChangeAction::Delete);
    let events = collect(cloud.apply(&update)).await;
    assert!(matches!(
        events.last(),
        Some(ProvisionEvent::Finished {
            stack_status: StackStatus::UpdateComplete,
            ..
        })
    ));

    let events = collect(cloud.destroy(&stack)).await;
    assert!(matches!(
        events.last(),
        Some(ProvisionEvent::Finished { stack_status: StackStatus::DeleteComplete, outputs, .. })
            if outputs.is_empty()
    ));
    assert_eq!(
        events.len(),
        2 + 2 * 2,
        "start, two resources twice, finish"
    );
    assert!(matches!(
        cloud.snapshot(&stack).await,
        Err(CloudError::NotFound { .. })
    ));
    let mut gone = cloud.destroy(&stack);
    assert!(matches!(
        gone.next().await,
        Some(Err(CloudError::NotFound { .. }))
    ));
}

#[tokio::test]
async fn a_template_that_is_not_json_is_invalid() {
    let w = world();
    let result = w
        .cloud
        .plan(&desired(&w.stack, "Resources: {}".into(), "v1"))
        .await;
    assert!(
        matches!(result, Err(CloudError::Invalid { ref field, .. }) if field == "template_body"),
        "{result:?}"
    );
}

#[tokio::test]
async fn watch_yields_now_and_after_each_change() {
    let w = world();
    let mut watch = w.cloud.watch(&w.stack, Duration::from_secs(2));
    let first = watch.next().await.expect("item").expect("snapshot");
    assert!(first.active_refresh().is_none());
    w.cloud
        .deploy(&w.stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    let second = watch.next().await.expect("item").expect("snapshot");
    assert_eq!(
        second.active_refresh().map(|r| r.status),
        Some(RefreshStatus::Pending)
    );
    w.tick();
    let third = watch.next().await.expect("item").expect("snapshot");
    assert_eq!(
        third.active_refresh().map(|r| r.status),
        Some(RefreshStatus::InProgress)
    );
    assert_eq!(w.cloud.live_streams(), 1);
    drop(watch);
    assert_eq!(
        w.cloud.live_streams(),
        0,
        "dropping the stream ends the watch"
    );

    let missing = StackRef::new("missing").expect("valid");
    let mut watch = w.cloud.watch(&missing, Duration::from_secs(2));
    assert!(matches!(
        watch.next().await,
        Some(Err(CloudError::NotFound { .. }))
    ));
}

#[tokio::test]
async fn a_default_refresh_replaces_one_instance_per_step_until_successful() {
    let w = world();
    let id = w
        .cloud
        .deploy(&w.stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    let waiter = tokio::spawn(
        w.cloud
            .wait_refresh(&w.stack, &id)
            .map(|r| r.expect("refresh").status)
            .collect::<Vec<_>>(),
    );
    tokio::task::yield_now().await;
    let mut percentages = Vec::new();
    for _ in 0..8 {
        w.tick();
        tokio::task::yield_now().await;
        percentages.push(w.refresh().await.percentage_complete.expect("set"));
    }
    // Default preferences (90/100) on 6 instances: one at a time; each replacement is
    // launched on one tick and found healthy (its batch done, the next one started) on the
    // next.
    assert_eq!(percentages, [0, 0, 16, 33, 50, 66, 83, 100]);
    let refresh = w.refresh().await;
    assert_eq!(refresh.status, RefreshStatus::Successful);
    assert_eq!(refresh.instances_to_update, Some(0));
    assert_eq!(refresh.ended_at, Some(w.clock.now()));
    assert_eq!(w.versions().await, vec!["v2"; 6]);
    let statuses = waiter.await.expect("waiter");
    assert_eq!(statuses.first(), Some(&RefreshStatus::Pending));
    assert_eq!(statuses.last(), Some(&RefreshStatus::Successful));
    assert!(statuses.len() >= 3, "{statuses:?}");
    assert_eq!(w.cloud.live_streams(), 0, "the wait ended with the refresh");

    // After the end, waiting returns the terminal refresh at once.
    let outcome = refresh_outcome(w.cloud.wait_refresh(&w.stack, &id))
        .await
        .expect("outcome");
    assert_eq!(outcome.status, RefreshStatus::Successful);
    // Waiting for an unknown refresh says so.
    let missing = refresh_outcome(w.cloud.wait_refresh(&w.stack, &RefreshId("nope".into()))).await;
    assert!(matches!(missing, Err(CloudError::NotFound { .. })));
}

#[tokio::test]
async fn checkpoints_pause_until_the_clock_passes_the_delay() {
    let w = world();
    let mut request = DeployRequest::new("v2");
    request.preferences.min_healthy_percentage = 50;
    request.preferences.checkpoint_percentages = vec![50, 100];
    request.preferences.checkpoint_delay_seconds = Some(600);
    w.cloud.deploy(&w.stack, &request).await.expect("deploy");
    w.tick(); // Pending → InProgress
    w.tick(); // half the fleet launched (batch of 3)
    w.tick(); // … and healthy
    let at_checkpoint = w.refresh().await;
    assert_eq!(at_checkpoint.percentage_complete, Some(50));
    let checkpoint = at_checkpoint.checkpoint.expect("waiting at a checkpoint");
    assert_eq!(checkpoint.percentage, 50);
    assert_eq!(
        checkpoint.resumes_at,
        Some(w.clock.now() + time::Duration::seconds(600))
    );
    assert_eq!(
        at_checkpoint.status_reason.as_deref(),
        Some("Waiting at checkpoint 50%")
    );
    w.tick();
    assert_eq!(
        w.refresh().await.percentage_complete,
        Some(50),
        "no progress before the delay"
    );
    w.clock.advance(time::Duration::seconds(600));
    w.tick();
    w.tick();
    let done = w.refresh().await;
    assert_eq!(done.status, RefreshStatus::Successful);
    assert_eq!(done.checkpoint, None);
}

#[tokio::test]
async fn a_last_checkpoint_below_100_ends_the_refresh_there() {
    let w = world();
    let mut request = DeployRequest::new("v2");
    request.preferences.min_healthy_percentage = 50;
    request.preferences.checkpoint_percentages = vec![50];
    w.cloud.deploy(&w.stack, &request).await.expect("deploy");
    let refresh = w.tick_until_settled(10).await;
    assert_eq!(refresh.status, RefreshStatus::Successful);
    assert_eq!(refresh.instances_to_update, Some(3));
    assert_eq!(w.versions().await, ["v1", "v1", "v1", "v2", "v2", "v2"]);
}

#[tokio::test]
async fn bake_time_holds_the_refresh_in_baking() {
    let w = world();
    let mut request = DeployRequest::new("v2");
    request.preferences.min_healthy_percentage = 0;
    request.preferences.bake_time_seconds = 300;
    w.cloud.deploy(&w.stack, &request).await.expect("deploy");
    w.tick();
    w.tick(); // min 0 %: all six at once
    w.tick();
    assert_eq!(w.refresh().await.status, RefreshStatus::Baking);
    w.tick();
    assert_eq!(w.refresh().await.status, RefreshStatus::Baking);
    w.clock.advance(time::Duration::seconds(300));
    w.tick();
    assert_eq!(w.refresh().await.status, RefreshStatus::Successful);
}

#[tokio::test]
async fn a_failed_step_fails_the_refresh_or_rolls_back_with_auto_rollback() {
    let w = world();
    w.cloud
        .deploy(&w.stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    w.tick();
    w.tick();
    w.cloud
        .fail_refresh(&w.stack, "alarm triad-5xx fired")
        .expect("active refresh");
    w.tick();
    let failed = w.refresh().await;
    assert_eq!(failed.status, RefreshStatus::Failed);
    assert_eq!(
        failed.status_reason.as_deref(),
        Some("alarm triad-5xx fired")
    );

    let w = world();
    let mut request = DeployRequest::new("v2");
    request.preferences.auto_rollback = true;
    request.preferences.min_healthy_percentage = 66;
    w.cloud.deploy(&w.stack, &request).await.expect("deploy");
    w.tick();
    w.tick();
    w.tick(); // two replaced (batch = 6 × 34 % = 2)
    w.cloud
        .fail_refresh(&w.stack, "health checks failing")
        .expect("active refresh");
    w.tick();
    let rolling = w.refresh().await;
    assert_eq!(rolling.status, RefreshStatus::RollbackInProgress);
    let details = rolling.rollback.expect("rollback details");
    assert_eq!(details.reason.as_deref(), Some("health checks failing"));
    assert_eq!(details.percentage_complete_on_rollback, Some(33));
    assert_eq!(details.instances_to_update_on_rollback, Some(2));
    let done = w.tick_until_settled(10).await;
    assert_eq!(done.status, RefreshStatus::RollbackSuccessful);
    assert_eq!(w.versions().await, vec!["v1"; 6]);
}

#[tokio::test]
async fn cancel_and_rollback_on_request() {
    let w = world();
    assert!(matches!(
        w.cloud.cancel_refresh(&w.stack).await,
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        w.cloud.rollback_refresh(&w.stack).await,
        Err(CloudError::NotFound { .. })
    ));
    let id = w
        .cloud
        .deploy(&w.stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    assert!(matches!(
        w.cloud.deploy(&w.stack, &DeployRequest::new("v3")).await,
        Err(CloudError::Conflict { .. })
    ));
    w.tick();
    assert_eq!(w.cloud.cancel_refresh(&w.stack).await.expect("cancel"), id);
    assert_eq!(w.refresh().await.status, RefreshStatus::Cancelling);
    w.tick();
    assert_eq!(w.refresh().await.status, RefreshStatus::Cancelled);

    let id = w
        .cloud
        .deploy(&w.stack, &DeployRequest::new("v3"))
        .await
        .expect("deploy after cancel");
    w.tick();
    w.tick();
    w.tick();
    w.tick(); // two replaced
    assert_eq!(
        w.cloud.rollback_refresh(&w.stack).await.expect("rollback"),
        id
    );
    let rolling = w.refresh().await;
    assert_eq!(rolling.status, RefreshStatus::RollbackInProgress);
    assert_eq!(
        rolling
            .rollback
            .and_then(|r| r.instances_to_update_on_rollback),
        Some(2)
    );
    assert_eq!(
        w.tick_until_settled(10).await.status,
        RefreshStatus::RollbackSuccessful
    );
    assert!(
        w.versions().await.iter().all(|v| v != "v3"),
        "rolled back: {:?}",
        w.versions().await
    );
}

#[tokio::test]
async fn terminate_az_kills_its_instances_and_the_group_relaunches_them() {
    let w = world();
    let fault = Fault::TerminateAz {
        az: "mem-1b".into(),
    };
    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    assert_eq!(plan.az.as_deref(), Some("mem-1b"));
    let planned: Vec<&str> = plan.actions.iter().map(|a| a.resource.as_str()).collect();
    assert_eq!(planned.len(), 2);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.call == "SIGKILL" && !a.reversible)
    );

    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let [FaultChange::Sandbox(SandboxChange::InstancesKilled { instance_ids, .. })] =
        record.changes.as_slice()
    else {
        panic!("unexpected changes {:?}", record.changes);
    };
    let killed: Vec<String> = instance_ids
        .iter()
        .map(|id| format!("instance {id}"))
        .collect();
    assert_eq!(killed, planned, "the dry run named exactly what was killed");
    assert!(
        w.snapshot()
            .await
            .az("mem-1b")
            .expect("az")
            .instances
            .is_empty()
    );

    w.tick();
    let relaunched = w.snapshot().await;
    let view = relaunched.az("mem-1b").expect("az");
    assert_eq!(view.instances.len(), 2, "relaunched into the same AZ");
    assert!(view.targets.iter().all(|t| t.state == TargetState::Initial
        && t.reason == Some(TargetReason::RegistrationInProgress)));
    w.tick();
    assert_eq!(
        w.snapshot()
            .await
            .az("mem-1b")
            .expect("az")
            .healthy_capacity(),
        2
    );
    assert!(
        w.snapshot()
            .await
            .events
            .iter()
            .any(|e| e.source == EventSource::Fault && e.az.as_deref() == Some("mem-1b"))
    );
}

#[tokio::test]
async fn blackhole_silences_an_az_until_restored() {
    let w = world();
    let record = w
        .cloud
        .inject(
            &w.stack,
            &Fault::BlackholeAz {
                az: "mem-1c".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    w.tick(); // the next health check times out
    let view = w.snapshot().await.az("mem-1c").expect("az").clone();
    assert!(
        view.targets
            .iter()
            .all(|t| t.state == TargetState::Unhealthy && t.reason == Some(TargetReason::Timeout))
    );
    assert_eq!(view.instances.len(), 2, "instances stay up");
    assert!(
        view.instances
            .iter()
            .all(|i| i.health == HealthStatus::Healthy),
        "within the grace period the group takes no action"
    );
    assert_eq!(w.snapshot().await.healthy_capacity_outside("mem-1c"), 4);

    w.cloud.restore(&record).await.expect("restore");
    w.cloud
        .restore(&record)
        .await
        .expect("restoring twice is harmless");
    w.tick();
    let view = w.snapshot().await.az("mem-1c").expect("az").clone();
    assert_eq!(view.healthy_capacity(), 2);
}

#[tokio::test]
async fn a_blackholed_az_is_replaced_after_the_grace_period() {
    let w = world();
    let before: Vec<String> = w
        .snapshot()
        .await
        .az("mem-1c")
        .expect("az")
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    w.cloud
        .inject(
            &w.stack,
            &Fault::BlackholeAz {
                az: "mem-1c".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    w.tick();
    w.clock.advance(time::Duration::seconds(301));
    w.tick();
    let snapshot = w.snapshot().await;
    let view = snapshot.az("mem-1c").expect("az");
    assert!(
        view.instances.iter().all(|i| !before.contains(&i.id)),
        "the unhealthy instances were replaced: {:?}",
        view.instances
    );
    assert_eq!(view.instances.len(), 2, "replacements go to the same AZ");
    assert!(snapshot.events.iter().any(|e| {
        e.message
            .contains("in response to an ELB system health check failure")
    }));
}

#[tokio::test]
async fn blocked_launches_go_to_the_other_azs_until_restored() {
    let w = world();
    let fault = Fault::BlockLaunchesInAz {
        az: "mem-1a".into(),
    };
    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    assert_eq!(plan.actions.len(), 2, "{:?}", plan.actions);
    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    assert_eq!(
        record.changes,
        [
            FaultChange::Sandbox(SandboxChange::LaunchesBlocked {
                az: "mem-1a".into()
            }),
            FaultChange::Sandbox(SandboxChange::ProcessesSuspended {
                processes: vec![ScalingProcess::AzRebalance]
            }),
        ]
    );
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.enabled_azs, ["mem-1b", "mem-1c"]);
    assert_eq!(snapshot.suspended_processes, [ScalingProcess::AzRebalance]);

    w.cloud
        .inject(
            &w.stack,
            &Fault::TerminateAz {
                az: "mem-1a".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("terminate");
    w.tick();
    let snapshot = w.snapshot().await;
    assert!(snapshot.az("mem-1a").expect("az").instances.is_empty());
    assert_eq!(snapshot.az("mem-1b").expect("az").instances.len(), 3);
    assert_eq!(snapshot.az("mem-1c").expect("az").instances.len(), 3);

    w.cloud.restore(&record).await.expect("restore");
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.enabled_azs, ["mem-1a", "mem-1b", "mem-1c"]);
    assert!(snapshot.suspended_processes.is_empty());
}

#[tokio::test]
async fn failover_moves_the_primary_and_is_not_undone() {
    let w = world();
    let plan = w
        .cloud
        .describe_fault(&w.stack, &Fault::FailoverDb)
        .await
        .expect("describe");
    assert_eq!(plan.az.as_deref(), Some("mem-1a"));
    assert!(!plan.actions[0].reversible);
    let record = w
        .cloud
        .inject(&w.stack, &Fault::FailoverDb, CapacityCheck::Enforce)
        .await
        .expect("inject");
    assert_eq!(record.az.as_deref(), Some("mem-1a"));
    assert_eq!(
        record.changes,
        [FaultChange::Sandbox(SandboxChange::DbFailedOver {
            from_az: "mem-1a".into(),
            to_az: "mem-1b".into()
        })]
    );
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.db_primary_az(), Some("mem-1b"));
    assert_eq!(snapshot.db_standby_az(), Some("mem-1a"));
    w.cloud.restore(&record).await.expect("restore");
    assert_eq!(w.snapshot().await.db_primary_az(), Some("mem-1b"));
}

#[tokio::test]
async fn an_az_outage_fails_over_then_blackholes_and_blocks() {
    let w = world();
    let fault = Fault::AzOutage {
        az: "mem-1a".into(),
    };
    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    assert_eq!(plan.actions.len(), 2 + 1 + 2 + 1, "{:?}", plan.actions);
    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let kinds: Vec<&str> = record
        .changes
        .iter()
        .map(|c| match c {
            FaultChange::Sandbox(SandboxChange::AzSilenced { .. }) => "silenced",
            FaultChange::Sandbox(SandboxChange::LaunchesBlocked { .. }) => "blocked",
            FaultChange::Sandbox(SandboxChange::ProcessesSuspended { .. }) => "suspended",
            FaultChange::Sandbox(SandboxChange::DbFailedOver { .. }) => "failed over",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["failed over", "silenced", "blocked", "suspended"]);
    w.tick(); // the next health checks time out
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.az("mem-1a").expect("az").healthy_capacity(), 0);
    assert_eq!(snapshot.db_primary_az(), Some("mem-1b"));

    w.cloud.restore(&record).await.expect("restore");
    w.tick();
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.az("mem-1a").expect("az").healthy_capacity(), 2);
    assert_eq!(snapshot.enabled_azs.len(), 3);
    assert!(snapshot.suspended_processes.is_empty());
    assert_eq!(snapshot.db_primary_az(), Some("mem-1b"), "failover stays");
}

#[tokio::test]
async fn faults_name_known_azs_and_records_from_aws_are_refused() {
    let w = world();
    let result = w
        .cloud
        .inject(
            &w.stack,
            &Fault::TerminateAz {
                az: "eu-west-1a".into(),
            },
            CapacityCheck::Force,
        )
        .await;
    assert!(
        matches!(result, Err(CloudError::Invalid { ref field, .. }) if field == "az"),
        "{result:?}"
    );
    let record = FaultRecord {
        id: "fault-aws".into(),
        stack: w.stack.clone(),
        fault: Fault::BlackholeAz {
            az: "mem-1a".into(),
        },
        az: Some("mem-1a".into()),
        forced: false,
        injected_at: w.clock.now(),
        changes: vec![FaultChange::Aws(AwsChange::NetworkAclCreated {
            vpc_id: "vpc-1".into(),
            network_acl_id: "acl-1".into(),
        })],
    };
    assert!(matches!(
        w.cloud.restore(&record).await,
        Err(CloudError::Refused { .. })
    ));
}

#[tokio::test]
async fn an_unreadable_section_is_reported_and_left_empty() {
    let w = world();
    w.cloud
        .set_section_error(&w.stack, Section::Metrics, Some("GetMetricData denied"))
        .expect("stack exists");
    let snapshot = w.snapshot().await;
    assert!(snapshot.metrics.series.is_empty());
    assert_eq!(
        snapshot
            .error_for(Section::Metrics)
            .map(ToString::to_string)
            .as_deref(),
        Some("metrics unavailable: GetMetricData denied")
    );
    assert_eq!(
        snapshot.az("mem-1a").expect("az").instances.len(),
        2,
        "the rest is intact"
    );
    w.cloud
        .set_section_error(&w.stack, Section::Metrics, None)
        .expect("stack exists");
    let snapshot = w.snapshot().await;
    assert!(snapshot.errors.is_empty());
    assert_eq!(
        snapshot
            .metrics
            .series(MetricKind::HealthyHosts, Some("mem-1a"))
            .map(|s| s.points[0].value),
        Some(2.0)
    );
}

#[tokio::test]
async fn recorded_metrics_appear_in_snapshots_with_the_clock_time() {
    let w = world();
    let t0 = w.clock.now();
    w.cloud
        .record_metric(&w.stack, MetricKind::Requests, Some("mem-1a"), 120.0)
        .expect("stack exists");
    w.clock.advance(time::Duration::seconds(60));
    w.cloud
        .record_metric(&w.stack, MetricKind::Requests, Some("mem-1a"), 80.0)
        .expect("stack exists");
    w.cloud
        .record_metric(&w.stack, MetricKind::DbConnections, None, 7.0)
        .expect("stack exists");
    let snapshot = w.snapshot().await;
    let requests = snapshot
        .metrics
        .series(MetricKind::Requests, Some("mem-1a"))
        .expect("recorded series");
    assert_eq!(
        requests.points,
        [
            MetricPoint {
                at: t0,
                value: 120.0
            },
            MetricPoint {
                at: t0 + time::Duration::seconds(60),
                value: 80.0
            },
        ]
    );
    assert!(
        snapshot
            .metrics
            .series(MetricKind::DbConnections, None)
            .is_some()
    );
    assert!(
        snapshot
            .metrics
            .series(MetricKind::Requests, Some("mem-1b"))
            .is_none()
    );
    assert_eq!(
        snapshot
            .metrics
            .series(MetricKind::HealthyHosts, Some("mem-1b"))
            .map(|s| s.points.len()),
        Some(1),
        "healthy hosts are computed when not recorded"
    );
}

/// After an AZ outage long enough for the group to replace the AZ's instances elsewhere, and
/// its restore, AZRebalance brings the group back to 2/2/2 by itself: a launch in the short
/// AZ first, then a termination in the long one, never more than max + margin at once.
#[tokio::test]
async fn after_an_az_outage_and_its_restore_the_group_rebalances() {
    let w = world();
    let record = w
        .cloud
        .inject(
            &w.stack,
            &Fault::AzOutage {
                az: "mem-1a".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    w.tick();
    w.clock.advance(time::Duration::seconds(301));
    w.tick();
    w.tick();
    let counts = |s: &Snapshot| -> Vec<usize> {
        s.azs
            .iter()
            .map(|v| {
                v.instances
                    .iter()
                    .filter(|i| i.lifecycle != LifecycleState::Terminating)
                    .count()
            })
            .collect()
    };
    assert_eq!(counts(&w.snapshot().await), [0, 3, 3]);
    w.tick();
    assert_eq!(
        counts(&w.snapshot().await),
        [0, 3, 3],
        "AZRebalance is suspended"
    );

    w.cloud.restore(&record).await.expect("restore");
    let mut seen = Vec::new();
    for _ in 0..10 {
        w.tick();
        let snapshot = w.snapshot().await;
        seen.push(counts(&snapshot));
        assert!(counts(&snapshot).iter().sum::<usize>() <= 7, "{seen:?}");
    }
    assert_eq!(seen.last(), Some(&vec![2, 2, 2]), "{seen:?}");
    assert_eq!(seen.first(), Some(&vec![1, 3, 3]), "launch first: {seen:?}");
    assert!(
        w.snapshot()
            .await
            .events
            .iter()
            .any(|e| e.message.contains("to aid in balancing the group's zones"))
    );
}
