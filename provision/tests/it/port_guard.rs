//! The safety rules, through `Guarded` over the in-memory backend (whose call log shows
//! whether a refused call reached the backend) and as plain functions over hand-made
//! snapshots: read-only refuses every mutation, faults touch one AZ at a time, and a fault
//! is refused when the other AZs have no healthy capacity unless forced.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provision::memory::MemoryCloud;
use provision::port::*;
use time::macros::datetime;

fn stack() -> StackRef {
    StackRef::new("guarded").expect("valid name")
}

fn memory() -> MemoryCloud {
    let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
    let cloud = MemoryCloud::new(clock);
    cloud.seed_stack(&stack());
    cloud
}

fn mutating_calls(cloud: &MemoryCloud) -> Vec<String> {
    let reads = [
        "snapshot",
        "plan",
        "watch",
        "wait_refresh",
        "describe_fault",
        "logs",
    ];
    cloud
        .calls()
        .into_iter()
        .filter(|call| !reads.iter().any(|read| call.starts_with(read)))
        .collect()
}

fn assert_read_only<T: std::fmt::Debug>(result: Result<T, CloudError>, operation: &str) {
    match result {
        Err(CloudError::ReadOnly { operation: refused }) => assert_eq!(refused, operation),
        other => panic!("{operation} was not refused as read-only: {other:?}"),
    }
}

#[tokio::test]
async fn read_only_refuses_every_mutation_before_the_backend() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadOnly);
    let desired = DesiredStack {
        stack: stack(),
        template_body: r#"{"Resources":{"Vpc":{"Type":"AWS::EC2::VPC"}}}"#.into(),
        parameters: Default::default(),
        tags: Default::default(),
        spec: serde_json::Value::Null,
    };
    let plan = guarded.plan(&desired).await.expect("plan is allowed");
    let mut apply = guarded.apply(&plan);
    assert_read_only(apply.next().await.expect("one item"), "apply");
    assert!(apply.next().await.is_none(), "the refused stream ends");
    let mut destroy = guarded.destroy(&stack());
    assert_read_only(destroy.next().await.expect("one item"), "destroy");
    assert_read_only(
        guarded.deploy(&stack(), &DeployRequest::new("v2")).await,
        "deploy",
    );
    assert_read_only(guarded.cancel_refresh(&stack()).await, "cancel refresh");
    assert_read_only(guarded.rollback_refresh(&stack()).await, "rollback refresh");
    let fault = Fault::TerminateAz {
        az: "mem-1a".into(),
    };
    assert_read_only(
        guarded.inject(&stack(), &fault, CapacityCheck::Force).await,
        "inject",
    );
    let record = FaultRecord {
        id: "fault-x".into(),
        stack: stack(),
        fault: fault.clone(),
        az: Some("mem-1a".into()),
        forced: false,
        injected_at: datetime!(2026-01-01 00:00 UTC),
        changes: vec![],
    };
    assert_read_only(guarded.restore(&record).await, "restore");
    assert_eq!(mutating_calls(&backend), Vec::<String>::new());

    // Reads still work.
    guarded.snapshot(&stack()).await.expect("snapshot allowed");
    guarded
        .describe_fault(&stack(), &fault)
        .await
        .expect("describe allowed");
    let mut watch = guarded.watch(&stack(), Duration::from_secs(2));
    watch
        .next()
        .await
        .expect("a first snapshot")
        .expect("watch allowed");
}

#[tokio::test]
async fn a_second_fault_in_another_az_is_refused_even_when_forced() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadWrite);
    let first = guarded
        .inject(
            &stack(),
            &Fault::BlackholeAz {
                az: "mem-1a".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("first fault allowed");
    assert_eq!(first.az.as_deref(), Some("mem-1a"));
    let second = guarded
        .inject(
            &stack(),
            &Fault::TerminateAz {
                az: "mem-1b".into(),
            },
            CapacityCheck::Force,
        )
        .await;
    match second {
        Err(CloudError::Refused { reason }) => {
            assert!(reason.contains("one AZ at a time"), "{reason}");
            assert!(reason.contains("blackhole-az mem-1a"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The same AZ may take another fault.
    guarded
        .inject(
            &stack(),
            &Fault::BlockLaunchesInAz {
                az: "mem-1a".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("same AZ allowed");
    assert_eq!(guarded.active_faults().await.len(), 2);
    // The database primary is in mem-1a (the memory fleet's first AZ): a failover touches it.
    guarded
        .inject(&stack(), &Fault::FailoverDb, CapacityCheck::Enforce)
        .await
        .expect("failover from the faulted AZ allowed");
    // Now the primary is in mem-1b: another failover would touch mem-1b.
    let refused = guarded
        .inject(&stack(), &Fault::FailoverDb, CapacityCheck::Enforce)
        .await;
    assert!(
        matches!(refused, Err(CloudError::Refused { .. })),
        "{refused:?}"
    );
    for record in guarded.active_faults().await {
        guarded.restore(&record).await.expect("restore");
    }
    assert!(guarded.active_faults().await.is_empty());
    guarded
        .inject(
            &stack(),
            &Fault::TerminateAz {
                az: "mem-1b".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("after restore, another AZ may be faulted");
    assert_eq!(
        backend.calls().last().map(String::as_str),
        Some("inject guarded terminate-az mem-1b")
    );
}

#[tokio::test]
async fn faults_are_refused_without_healthy_capacity_elsewhere_unless_forced() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadWrite);
    let snapshot = backend.snapshot(&stack()).await.expect("snapshot");
    for view in snapshot.azs.iter().filter(|v| v.az != "mem-1a") {
        for target in &view.targets {
            backend
                .set_target_state(&stack(), &target.id, Some(TargetState::Unhealthy))
                .expect("stack exists");
        }
    }
    let fault = Fault::TerminateAz {
        az: "mem-1a".into(),
    };
    match guarded
        .inject(&stack(), &fault, CapacityCheck::Enforce)
        .await
    {
        Err(CloudError::Refused { reason }) => {
            assert!(
                reason.contains("no healthy capacity outside mem-1a"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        !backend
            .calls()
            .iter()
            .any(|call| call.starts_with("inject")),
        "the refused fault reached the backend"
    );
    let record = guarded
        .inject(&stack(), &fault, CapacityCheck::Force)
        .await
        .expect("forced inject goes through");
    assert!(record.forced);
    let after = backend.snapshot(&stack()).await.expect("snapshot");
    assert!(after.az("mem-1a").expect("az").instances.is_empty());
}

#[tokio::test]
async fn unverifiable_capacity_is_refused_unless_forced() {
    let backend = memory();
    backend
        .set_section_error(
            &stack(),
            Section::Targets,
            Some("DescribeTargetHealth throttled"),
        )
        .expect("stack exists");
    let guarded = Guarded::new(backend, SessionMode::ReadWrite);
    let fault = Fault::BlackholeAz {
        az: "mem-1c".into(),
    };
    match guarded
        .inject(&stack(), &fault, CapacityCheck::Enforce)
        .await
    {
        Err(CloudError::Refused { reason }) => assert!(
            reason.contains("targets unavailable: DescribeTargetHealth throttled"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    guarded
        .inject(&stack(), &fault, CapacityCheck::Force)
        .await
        .expect("forced");
}

/// Reading logs is allowed in a read-only session, filtered and followed through the guard;
/// a bad query is refused before the backend.
#[tokio::test]
async fn a_read_only_session_reads_and_follows_logs() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadOnly);
    let snapshot = backend.snapshot(&stack()).await.expect("snapshot");
    let first = &snapshot.azs[0].instances[0];
    let second = &snapshot.azs[1].instances[0];
    backend
        .log(
            &stack(),
            &first.id,
            r#"{"level":"INFO","message":"request","status":201}"#,
        )
        .expect("log");
    backend
        .log(
            &stack(),
            &second.id,
            r#"{"level":"ERROR","message":"database unreachable"}"#,
        )
        .expect("log");
    let errors = LogQuery {
        level: Some(LogLevel::Error),
        ..LogQuery::default()
    };
    let page = guarded.logs(&stack(), &errors, None).await.expect("logs");
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].instance, second.id);
    assert_eq!(page.lines[0].az, snapshot.azs[1].az);

    let by_az = LogQuery {
        az: Some(snapshot.azs[0].az.clone()),
        ..LogQuery::default()
    };
    let page = guarded.logs(&stack(), &by_az, None).await.expect("logs");
    assert_eq!(page.lines.len(), 1);
    assert_eq!(
        page.lines[0].fields.get("status"),
        Some(&serde_json::json!(201))
    );
    backend
        .log(&stack(), &first.id, r#"{"level":"WARN","message":"slow"}"#)
        .expect("log");
    let next = guarded
        .logs(&stack(), &by_az, Some(&page.cursor))
        .await
        .expect("follow");
    assert_eq!(next.lines.len(), 1);
    assert_eq!(next.lines[0].message, "slow");
    let again = guarded
        .logs(&stack(), &by_az, Some(&next.cursor))
        .await
        .expect("follow");
    assert!(again.lines.is_empty());

    let bad = LogQuery {
        limit: Some(0),
        ..LogQuery::default()
    };
    let calls = backend.calls().len();
    assert!(matches!(
        guarded.logs(&stack(), &bad, None).await,
        Err(CloudError::Invalid { .. })
    ));
    assert_eq!(backend.calls().len(), calls, "refused before the backend");
    assert!(mutating_calls(&backend).is_empty());
}

#[tokio::test]
async fn deploy_requests_are_validated_before_the_backend() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadWrite);
    let mut request = DeployRequest::new("v2");
    request.preferences.max_healthy_percentage = 250;
    let result = guarded.deploy(&stack(), &request).await;
    assert!(
        matches!(result, Err(CloudError::Invalid { ref field, .. }) if field == "preferences.max_healthy_percentage"),
        "{result:?}"
    );
    assert!(mutating_calls(&backend).is_empty());
}

#[tokio::test]
async fn seeded_active_faults_count_after_a_restart() {
    let guarded =
        Guarded::new(memory(), SessionMode::ReadWrite).with_active_faults([FaultRecord {
            id: "fault-journal".into(),
            stack: stack(),
            fault: Fault::BlackholeAz {
                az: "mem-1b".into(),
            },
            az: Some("mem-1b".into()),
            forced: false,
            injected_at: datetime!(2026-01-01 00:00 UTC),
            changes: vec![],
        }]);
    let result = guarded
        .inject(
            &stack(),
            &Fault::TerminateAz {
                az: "mem-1a".into(),
            },
            CapacityCheck::Enforce,
        )
        .await;
    assert!(
        matches!(result, Err(CloudError::Refused { .. })),
        "{result:?}"
    );
}

// The rules as functions, over hand-made snapshots.

fn snapshot_with(healthy_per_az: &[(&str, usize)], standby: bool) -> Snapshot {
    let mut snapshot = Snapshot::empty(stack(), datetime!(2026-01-01 00:00 UTC));
    for (index, (az, healthy)) in healthy_per_az.iter().enumerate() {
        let mut view = AzView::new(*az);
        for n in 0..*healthy {
            view.targets.push(Target {
                id: format!("i-{az}-{n}"),
                port: 8080,
                state: TargetState::Healthy,
                reason: None,
                description: None,
            });
        }
        view.targets.push(Target {
            id: format!("i-{az}-sick"),
            port: 8080,
            state: TargetState::Unhealthy,
            reason: Some(TargetReason::Timeout),
            description: None,
        });
        let role = match index {
            0 => Some(DbRole::Primary),
            1 if standby => Some(DbRole::Standby),
            _ => None,
        };
        view.database = role.map(|role| Database {
            id: "db".into(),
            role,
            status: DbStatus::Available,
            synchronous: Some(standby),
        });
        snapshot.azs.push(view);
    }
    snapshot
}

#[test]
fn capacity_counts_only_healthy_targets_outside_the_az() {
    let snapshot = snapshot_with(&[("a", 2), ("b", 0), ("c", 1)], true);
    assert_eq!(snapshot.healthy_capacity_outside("a"), 1);
    assert_eq!(snapshot.healthy_capacity_outside("c"), 2);
    let fault = Fault::TerminateAz { az: "c".into() };
    assert_eq!(
        check_fault(&snapshot, &fault, &[], CapacityCheck::Enforce).expect("allowed"),
        "c"
    );
    let lonely = snapshot_with(&[("a", 2), ("b", 0), ("c", 0)], true);
    let fault = Fault::AzOutage { az: "a".into() };
    assert!(check_fault(&lonely, &fault, &[], CapacityCheck::Enforce).is_err());
    assert!(check_fault(&lonely, &fault, &[], CapacityCheck::Force).is_ok());
    // Blocking launches removes no capacity, so it is allowed.
    let block = Fault::BlockLaunchesInAz { az: "a".into() };
    assert!(check_fault(&lonely, &block, &[], CapacityCheck::Enforce).is_ok());
}

#[test]
fn failover_needs_a_standby_unless_forced() {
    let no_standby = snapshot_with(&[("a", 1), ("b", 1)], false);
    let result = check_fault(&no_standby, &Fault::FailoverDb, &[], CapacityCheck::Enforce);
    match result {
        Err(CloudError::Refused { reason }) => assert!(reason.contains("no standby"), "{reason}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(
        check_fault(&no_standby, &Fault::FailoverDb, &[], CapacityCheck::Force).expect("forced"),
        "a",
        "a failover touches the primary's AZ"
    );
    // An outage of the primary's AZ fails over too, so it needs the standby as well.
    let outage = Fault::AzOutage { az: "a".into() };
    assert!(check_fault(&no_standby, &outage, &[], CapacityCheck::Enforce).is_err());
    let outage_elsewhere = Fault::AzOutage { az: "b".into() };
    assert!(check_fault(&no_standby, &outage_elsewhere, &[], CapacityCheck::Enforce).is_ok());
}

#[test]
fn unknown_azs_are_invalid() {
    let snapshot = snapshot_with(&[("a", 1), ("b", 1)], true);
    let result = check_fault(
        &snapshot,
        &Fault::BlackholeAz { az: "z".into() },
        &[],
        CapacityCheck::Force,
    );
    match result {
        Err(CloudError::Invalid { field, reason }) => {
            assert_eq!(field, "az");
            assert!(reason.contains("(a, b)"), "{reason}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn read_only_mode_refuses_mutations_by_name() {
    assert!(check_mutation(SessionMode::ReadWrite, "deploy").is_ok());
    let error = check_mutation(SessionMode::ReadOnly, "deploy").expect_err("refused");
    assert!(error.is_refusal());
    assert_eq!(
        error.to_string(),
        "deploy refused: this session is read-only"
    );
}

#[tokio::test]
async fn the_console_can_hold_a_guarded_cloud_as_a_trait_object() {
    let backend: Arc<dyn Cloud> = Arc::new(memory());
    let guarded: Arc<dyn Cloud> = Arc::new(Guarded::new(backend, SessionMode::ReadOnly));
    assert_eq!(guarded.kind(), BackendKind::Memory);
    assert!(matches!(
        guarded.cancel_refresh(&stack()).await,
        Err(CloudError::ReadOnly { .. })
    ));
    guarded
        .snapshot(&stack())
        .await
        .expect("reads pass through");
}

/// One-instance actions through `Guarded` over memory: refused in read-only mode before the
/// backend; refused without another healthy target unless forced; a dry run changes nothing;
/// a decrement at min is refused by the group model.
#[tokio::test]
async fn instance_actions_follow_the_safety_rules() {
    let backend = memory();
    let snapshot = backend.snapshot(&stack()).await.expect("snapshot");
    let ids: Vec<String> = snapshot
        .azs
        .iter()
        .flat_map(|v| v.instances.iter().map(|i| i.id.clone()))
        .collect();
    let id = ids.first().expect("an instance").clone();
    let terminate = InstanceAction::Terminate { decrement: false };

    let read_only = Guarded::new(backend.clone(), SessionMode::ReadOnly);
    assert_read_only(
        read_only
            .act_on_instance(&stack(), &id, terminate, CapacityCheck::Enforce)
            .await,
        "instance terminate",
    );
    assert!(
        !backend.calls().iter().any(|c| c.starts_with("act_on")),
        "the refused action reached the backend"
    );

    let guarded = Guarded::new(backend.clone(), SessionMode::ReadWrite);
    let plan = guarded
        .describe_instance_action(&stack(), &id, InstanceAction::Standby { decrement: true })
        .await
        .expect("dry run");
    assert!(plan.notes.iter().any(|n| n.contains("gameday restore")));
    assert_eq!(
        backend.snapshot(&stack()).await.expect("snapshot"),
        backend.snapshot(&stack()).await.expect("snapshot"),
    );

    for other in ids.iter().filter(|other| **other != id) {
        backend
            .set_target_state(&stack(), other, Some(TargetState::Unhealthy))
            .expect("stack exists");
    }
    match guarded
        .act_on_instance(&stack(), &id, terminate, CapacityCheck::Enforce)
        .await
    {
        Err(CloudError::Refused { reason }) => {
            assert!(reason.contains("no healthy target besides"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let plan = guarded
        .act_on_instance(&stack(), &id, terminate, CapacityCheck::Force)
        .await
        .expect("forced");
    assert_eq!(plan.instance_id, id);
    let after = backend.snapshot(&stack()).await.expect("snapshot");
    let state = after
        .azs
        .iter()
        .flat_map(|v| &v.instances)
        .find(|i| i.id == id)
        .map(|i| i.lifecycle);
    assert!(
        state.is_none_or(|s| s == LifecycleState::Terminating),
        "{state:?}"
    );
}

#[tokio::test]
async fn a_decrement_at_min_is_refused_by_the_group() {
    let backend = memory();
    let guarded = Guarded::new(backend.clone(), SessionMode::ReadWrite);
    let snapshot = backend.snapshot(&stack()).await.expect("snapshot");
    let capacity = snapshot.capacity.expect("capacity");
    let id = snapshot
        .azs
        .iter()
        .flat_map(|v| &v.instances)
        .next()
        .expect("an instance")
        .id
        .clone();
    let action = InstanceAction::Terminate { decrement: true };
    if capacity.desired > capacity.min {
        // Lower desired to min first, by decrements that are allowed.
        for _ in capacity.min..capacity.desired {
            let next = backend
                .snapshot(&stack())
                .await
                .expect("snapshot")
                .azs
                .iter()
                .flat_map(|v| &v.instances)
                .find(|i| i.id != id && i.lifecycle == LifecycleState::InService)
                .expect("another instance")
                .id
                .clone();
            guarded
                .act_on_instance(&stack(), &next, action, CapacityCheck::Force)
                .await
                .expect("decrement above min");
        }
    }
    for result in [
        guarded
            .describe_instance_action(&stack(), &id, action)
            .await
            .map(|_| ()),
        guarded
            .act_on_instance(&stack(), &id, action, CapacityCheck::Force)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(CloudError::Refused { reason }) => assert!(reason.contains("min size"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
