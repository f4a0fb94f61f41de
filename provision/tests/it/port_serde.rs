//! Serde round-trips of every port type: each survives JSON unchanged, and the JSON speaks
//! AWS's names where AWS has them (this JSON is `triad status --json` and the sandbox's
//! control protocol). Also the preference defaults and validation rules.

use std::collections::BTreeMap;

use provision::port::*;
use time::macros::datetime;

fn round_trip<T>(value: &T) -> serde_json::Value
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(value).expect("serialises");
    let back: T = serde_json::from_value(json.clone()).expect("deserialises");
    assert_eq!(&back, value, "round trip changed the value; json: {json}");
    json
}

const T0: time::OffsetDateTime = datetime!(2026-01-02 03:04:05 UTC);

fn stack() -> StackRef {
    StackRef::new("triad-demo").expect("valid name")
}

fn desired() -> DesiredStack {
    DesiredStack {
        stack: stack().in_region("eu-west-1"),
        template_body: r#"{"Resources":{}}"#.into(),
        parameters: BTreeMap::from([("AppVersion".into(), "v2".into())]),
        tags: BTreeMap::from([("project".into(), "triad".into())]),
        spec: serde_json::json!({"name": "triad-demo", "azs": 3}),
    }
}

fn refresh() -> Refresh {
    Refresh {
        id: RefreshId("08b91cf7-8fa6-48af-b6a6-d227f40f1b9b".into()),
        status: RefreshStatus::RollbackInProgress,
        status_reason: Some("alarm fired".into()),
        started_at: Some(T0),
        ended_at: None,
        percentage_complete: Some(40),
        instances_to_update: Some(3),
        desired_version: Some("v2".into()),
        desired_launch_template_version: Some("7".into()),
        preferences: Some(RefreshPreferences {
            checkpoint_percentages: vec![50, 100],
            auto_rollback: true,
            alarms: vec!["triad-5xx".into()],
            ..RefreshPreferences::default()
        }),
        checkpoint: Some(CheckpointInfo {
            percentage: 50,
            reached_at: T0,
            resumes_at: Some(T0 + time::Duration::minutes(5)),
        }),
        rollback: Some(RollbackDetails {
            reason: Some("alarm fired".into()),
            started_at: Some(T0),
            percentage_complete_on_rollback: Some(40),
            instances_to_update_on_rollback: Some(2),
        }),
    }
}

fn snapshot() -> Snapshot {
    let mut az = AzView::new("eu-west-1a");
    az.instances.push(Instance {
        id: "i-0abc".into(),
        lifecycle: LifecycleState::PendingWait,
        health: HealthStatus::Healthy,
        version: Some("v2".into()),
        launch_template_version: Some("7".into()),
        launch_time: Some(T0),
        address: Some("10.0.1.5".into()),
        protected_from_scale_in: true,
    });
    az.targets.push(Target {
        id: "i-0abc".into(),
        port: 8080,
        state: TargetState::Unhealthy,
        reason: Some(TargetReason::FailedHealthChecks),
        description: Some("Health checks failed".into()),
    });
    az.database = Some(Database {
        id: "triad-db".into(),
        role: DbRole::Primary,
        status: DbStatus::BackingUp,
        synchronous: Some(true),
    });
    let mut snapshot = Snapshot::empty(stack(), T0);
    snapshot.stack_status = Some(StackStatus::UpdateComplete);
    snapshot.endpoint = Some("http://lb.example".into());
    snapshot.azs = vec![az, AzView::new("eu-west-1b")];
    snapshot.capacity = Some(Capacity {
        desired: 6,
        min: 3,
        max: 12,
    });
    snapshot.enabled_azs = vec!["eu-west-1a".into()];
    snapshot.suspended_processes = vec![ScalingProcess::AzRebalance];
    snapshot.refreshes = vec![refresh()];
    snapshot.events = vec![Event {
        at: T0,
        source: EventSource::Scaling,
        az: Some("eu-west-1a".into()),
        message: "Launching a new EC2 instance".into(),
    }];
    snapshot.metrics = Metrics {
        period_seconds: 60,
        series: vec![MetricSeries {
            metric: MetricKind::LatencyP99,
            az: Some("eu-west-1a".into()),
            points: vec![MetricPoint {
                at: T0,
                value: 12.5,
            }],
        }],
        instances: vec![InstanceMetrics {
            id: "i-1".into(),
            cpu_percent: Some(12.5),
            requests_per_second: None,
        }],
    };
    snapshot.errors = vec![SectionError {
        section: Section::Metrics,
        message: "AccessDenied".into(),
    }];
    snapshot
}

#[test]
fn snapshot_round_trips_with_aws_names() {
    let json = round_trip(&snapshot());
    let az = &json["azs"][0];
    assert_eq!(json["taken_at"], "2026-01-02T03:04:05Z");
    assert_eq!(json["stack_status"], "UPDATE_COMPLETE");
    assert_eq!(az["instances"][0]["lifecycle"], "Pending:Wait");
    assert_eq!(az["instances"][0]["health"], "Healthy");
    assert_eq!(az["targets"][0]["state"], "unhealthy");
    assert_eq!(az["targets"][0]["reason"], "Target.FailedHealthChecks");
    assert_eq!(az["database"]["role"], "primary");
    assert_eq!(az["database"]["status"], "backing-up");
    assert_eq!(json["suspended_processes"][0], "AZRebalance");
    assert_eq!(json["refreshes"][0]["status"], "RollbackInProgress");
    assert_eq!(json["metrics"]["series"][0]["metric"], "latency_p99");
    assert_eq!(json["errors"][0]["section"], "metrics");
}

#[test]
fn a_sparse_snapshot_reads_with_defaults() {
    let json = serde_json::json!({
        "stack": {"name": "s"},
        "taken_at": "2026-01-02T03:04:05Z",
        "azs": [{"az": "a"}]
    });
    let snapshot: Snapshot = serde_json::from_value(json).expect("sparse snapshot parses");
    assert_eq!(snapshot.azs[0].az, "a");
    assert!(snapshot.refreshes.is_empty() && snapshot.errors.is_empty());
}

#[test]
fn section_errors_say_what_is_unavailable() {
    let error = SectionError {
        section: Section::Metrics,
        message: "throttled".into(),
    };
    assert_eq!(error.to_string(), "metrics unavailable: throttled");
}

#[test]
fn stack_types_round_trip() {
    round_trip(&stack());
    round_trip(&desired());
    let plan = Plan {
        desired: desired(),
        creates_stack: false,
        change_set: Some("arn:aws:cloudformation:eu-west-1:1:changeSet/x/y".into()),
        changes: vec![ResourceChange {
            logical_id: "WebGroup".into(),
            resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
            physical_id: Some("triad-demo-web".into()),
            action: ChangeAction::Replace,
            reasons: vec!["Properties.VPCZoneIdentifier changed (requires replacement)".into()],
        }],
        prepare: Vec::new(),
        blockers: Vec::new(),
        planned_at: T0,
    };
    let json = round_trip(&plan);
    assert_eq!(json["changes"][0]["action"], "replace");
    assert_eq!(
        plan.summary().to_string(),
        "0 to add, 0 to change, 1 to replace, 0 to delete"
    );
    round_trip(&Outputs(BTreeMap::from([(
        "EndpointUrl".into(),
        "http://x".into(),
    )])));
}

#[test]
fn provision_events_round_trip() {
    let events = [
        ProvisionEvent::Started {
            at: T0,
            stack: stack(),
            operation: StackOperation::Create,
            total: 30,
        },
        ProvisionEvent::Resource(ResourceEvent {
            at: T0,
            logical_id: "Vpc".into(),
            resource_type: "AWS::EC2::VPC".into(),
            physical_id: Some("vpc-1".into()),
            status: ResourceStatus::CreateComplete,
            reason: Some("Resource creation Initiated".into()),
            done: 1,
            total: 30,
        }),
        ProvisionEvent::Finished {
            at: T0,
            stack_status: StackStatus::RollbackComplete,
            outputs: Outputs::default(),
            summary: Some("The stack was not created: Database failed.".into()),
        },
    ];
    for event in &events {
        round_trip(event);
    }
    let json = round_trip(&events[1]);
    assert_eq!(json["event"], "resource");
    assert_eq!(json["status"], "CREATE_COMPLETE");
}

#[test]
fn refresh_and_deploy_round_trip() {
    let json = round_trip(&refresh());
    assert_eq!(json["id"], "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b");
    let mut request = DeployRequest::new("v2.1");
    request.binary = Some("target/release/webapp".into());
    request.env.insert("RUST_LOG".into(), "debug".into());
    request.preferences.scale_in_protected_instances = ScaleInProtectedInstances::Wait;
    request.preferences.standby_instances = StandbyInstances::Terminate;
    let json = round_trip(&request);
    assert_eq!(json["preferences"]["scale_in_protected_instances"], "Wait");
    assert_eq!(json["preferences"]["standby_instances"], "Terminate");
}

#[test]
fn faults_round_trip_with_command_line_names() {
    let faults = [
        Fault::TerminateAz { az: "a".into() },
        Fault::BlackholeAz { az: "a".into() },
        Fault::BlockLaunchesInAz { az: "a".into() },
        Fault::FailoverDb,
        Fault::AzOutage { az: "a".into() },
    ];
    for fault in &faults {
        let json = round_trip(fault);
        assert_eq!(json["fault"], fault.kind());
        let parsed = Fault::parse(fault.kind(), fault.az()).expect("parses its own kind");
        assert_eq!(&parsed, fault);
    }
    assert!(matches!(
        Fault::parse("melt-az", Some("a")),
        Err(CloudError::Invalid { field, .. }) if field == "fault"
    ));
    assert!(matches!(
        Fault::parse("terminate-az", None),
        Err(CloudError::Invalid { field, .. }) if field == "az"
    ));
    assert!(Fault::parse("failover-db", Some("a")).is_err());
}

#[test]
fn fault_plans_and_records_round_trip() {
    round_trip(&FaultPlan {
        stack: stack(),
        fault: Fault::FailoverDb,
        az: Some("a".into()),
        actions: vec![PlannedAction {
            resource: "database triad-db".into(),
            call: "rds:RebootDBInstance(ForceFailover)".into(),
            reversible: false,
        }],
        notes: vec!["not undone".into()],
    });
    let aws = vec![
        AwsChange::InstancesTerminated {
            auto_scaling_group: "g".into(),
            az: "a".into(),
            instance_ids: vec!["i-1".into()],
        },
        AwsChange::NetworkAclCreated {
            vpc_id: "vpc-1".into(),
            network_acl_id: "acl-9".into(),
        },
        AwsChange::NetworkAclAssociationReplaced {
            subnet_id: "subnet-1".into(),
            association_id: "aclassoc-2".into(),
            original_network_acl_id: "acl-0".into(),
        },
        AwsChange::SubnetsRemovedFromGroup {
            auto_scaling_group: "g".into(),
            original_subnet_ids: vec!["subnet-1".into(), "subnet-2".into()],
            removed_subnet_ids: vec!["subnet-1".into()],
        },
        AwsChange::ProcessesSuspended {
            auto_scaling_group: "g".into(),
            processes: vec![ScalingProcess::AzRebalance],
        },
        AwsChange::DbRebootedWithFailover {
            db_instance_id: "db".into(),
            from_az: "a".into(),
            to_az: Some("b".into()),
        },
    ];
    let sandbox = vec![
        SandboxChange::InstancesKilled {
            az: "a".into(),
            instance_ids: vec!["sbx-1".into()],
            pids: vec![42],
        },
        SandboxChange::AzSilenced {
            az: "a".into(),
            instance_ids: vec!["sbx-2".into()],
            pids: vec![43],
        },
        SandboxChange::LaunchesBlocked { az: "a".into() },
        SandboxChange::ProcessesSuspended {
            processes: vec![ScalingProcess::Launch],
        },
        SandboxChange::DbFailedOver {
            from_az: "a".into(),
            to_az: "b".into(),
        },
    ];
    let changes: Vec<FaultChange> = aws
        .into_iter()
        .map(FaultChange::Aws)
        .chain(sandbox.into_iter().map(FaultChange::Sandbox))
        .collect();
    let record = FaultRecord {
        id: "fault-1".into(),
        stack: stack(),
        fault: Fault::AzOutage { az: "a".into() },
        az: Some("a".into()),
        forced: true,
        injected_at: T0,
        changes,
    };
    let json = round_trip(&record);
    assert_eq!(json["changes"][2]["backend"], "aws");
    assert_eq!(
        json["changes"][2]["change"],
        "network_acl_association_replaced"
    );
    assert_eq!(json["changes"][7]["backend"], "sandbox");
    let reversible: Vec<bool> = record
        .changes
        .iter()
        .map(FaultChange::is_reversible)
        .collect();
    assert_eq!(
        reversible,
        [
            false, true, true, true, true, false, false, true, true, true, false
        ]
    );
}

#[test]
fn errors_and_choices_round_trip() {
    for error in [
        CloudError::not_found("stack s"),
        CloudError::refused("no"),
        CloudError::ReadOnly {
            operation: "inject".into(),
        },
        CloudError::invalid("az", "unknown"),
        CloudError::conflict("busy"),
        CloudError::Throttled {
            service: "autoscaling".into(),
        },
        CloudError::Unavailable {
            message: "daemon down".into(),
        },
        CloudError::Unsupported {
            operation: "x".into(),
            backend: "sandbox".into(),
        },
        CloudError::backend("ec2", "UnauthorizedOperation", "denied"),
    ] {
        round_trip(&error);
    }
    round_trip(&BackendChoice::Sandbox);
    round_trip(&BackendChoice::Aws(AwsSettings {
        profile: Some("prod".into()),
        region: Some("eu-west-1".into()),
        endpoint_url: None,
        attach: None,
    }));
    round_trip(&BackendChoice::Aws(AwsSettings {
        profile: None,
        region: None,
        endpoint_url: None,
        attach: Some(Attachment {
            asg: "legacy-web".into(),
            db: Some("legacy-db".into()),
        }),
    }));
    round_trip(&BackendKind::Aws);
    round_trip(&SessionMode::ReadOnly);
    round_trip(&CapacityCheck::Force);
}

#[test]
fn every_aws_name_parses_back() {
    for state in LifecycleState::ALL {
        assert_eq!(state.as_aws_str().parse::<LifecycleState>(), Ok(*state));
    }
    for status in RefreshStatus::ALL {
        assert_eq!(status.to_string().parse::<RefreshStatus>(), Ok(*status));
    }
    for reason in TargetReason::ALL {
        assert_eq!(reason.to_string().parse::<TargetReason>(), Ok(*reason));
    }
    for status in StackStatus::ALL {
        assert_eq!(status.to_string().parse::<StackStatus>(), Ok(*status));
    }
    let unknown = "Warmed:Exploded"
        .parse::<LifecycleState>()
        .expect_err("not an AWS name");
    assert_eq!(
        unknown.to_string(),
        "unknown lifecycle state \"Warmed:Exploded\""
    );
}

#[test]
fn preferences_default_to_aws_defaults() {
    let prefs: RefreshPreferences = serde_json::from_str("{}").expect("empty preferences parse");
    assert_eq!(prefs, RefreshPreferences::default());
    assert_eq!(prefs.min_healthy_percentage, 90);
    assert_eq!(prefs.max_healthy_percentage, 100);
    // "Wait (default)" for both, in AWS's API reference.
    assert_eq!(
        prefs.scale_in_protected_instances,
        ScaleInProtectedInstances::Wait
    );
    assert_eq!(prefs.standby_instances, StandbyInstances::Wait);
    assert_eq!(prefs.effective_checkpoint_delay_seconds(), None);
    assert!(prefs.validate().is_ok());
    let with_checkpoints = RefreshPreferences {
        checkpoint_percentages: vec![20, 50],
        ..RefreshPreferences::default()
    };
    assert_eq!(
        with_checkpoints.effective_checkpoint_delay_seconds(),
        Some(3600)
    );
    assert!(with_checkpoints.is_partial());
    let error = serde_json::from_str::<RefreshPreferences>(r#"{"min_healthy": 50}"#)
        .expect_err("unknown field refused");
    assert!(error.to_string().contains("min_healthy"), "{error}");
}

fn invalid_field(prefs: RefreshPreferences) -> String {
    match prefs.validate() {
        Err(CloudError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn preferences_follow_aws_rules() {
    let base = RefreshPreferences::default;
    let case = |prefs| invalid_field(prefs);
    assert_eq!(
        case(RefreshPreferences {
            min_healthy_percentage: 101,
            ..base()
        }),
        "preferences.min_healthy_percentage"
    );
    for max in [99, 201] {
        assert_eq!(
            case(RefreshPreferences {
                max_healthy_percentage: max,
                ..base()
            }),
            "preferences.max_healthy_percentage"
        );
    }
    assert_eq!(
        case(RefreshPreferences {
            min_healthy_percentage: 50,
            max_healthy_percentage: 160,
            ..base()
        }),
        "preferences.max_healthy_percentage",
        "max may be at most 100 above min"
    );
    assert!(
        RefreshPreferences {
            min_healthy_percentage: 100,
            max_healthy_percentage: 200,
            ..base()
        }
        .validate()
        .is_ok()
    );
    for checkpoints in [vec![50, 20], vec![50, 50], vec![0, 100], vec![50, 101]] {
        assert_eq!(
            case(RefreshPreferences {
                checkpoint_percentages: checkpoints,
                ..base()
            }),
            "preferences.checkpoint_percentages"
        );
    }
    assert_eq!(
        case(RefreshPreferences {
            checkpoint_delay_seconds: Some(60),
            ..base()
        }),
        "preferences.checkpoint_delay_seconds",
        "a delay needs checkpoints"
    );
    assert_eq!(
        case(RefreshPreferences {
            checkpoint_percentages: vec![50],
            checkpoint_delay_seconds: Some(172_801),
            ..base()
        }),
        "preferences.checkpoint_delay_seconds"
    );
    assert_eq!(
        case(RefreshPreferences {
            bake_time_seconds: 172_801,
            ..base()
        }),
        "preferences.bake_time_seconds"
    );
    assert_eq!(
        case(RefreshPreferences {
            alarms: vec![" ".into()],
            ..base()
        }),
        "preferences.alarms"
    );
}

#[test]
fn deploy_requests_are_checked() {
    assert!(DeployRequest::new("v1.2.3+build-7").validate().is_ok());
    for version in ["", "v 2", "v2/../x"] {
        assert!(
            matches!(DeployRequest::new(version).validate(), Err(CloudError::Invalid { field, .. }) if field == "version"),
            "{version:?} accepted"
        );
    }
    let mut request = DeployRequest::new("v2");
    request.env.insert("1BAD".into(), "x".into());
    assert!(matches!(request.validate(), Err(CloudError::Invalid { field, .. }) if field == "env"));
    assert_eq!(
        parse_env_override("DATABASE_URL=postgres://a?b=c").expect("valid"),
        ("DATABASE_URL".into(), "postgres://a?b=c".into())
    );
    assert!(parse_env_override("NOEQUALS").is_err());
    assert!(parse_env_override("=x").is_err());
}

#[test]
fn stack_names_follow_cloudformation_rules() {
    assert!(StackRef::new("triad-prod-2").is_ok());
    for name in ["", "2triad", "triad_prod", "tri ad", &"a".repeat(129)] {
        assert!(
            matches!(StackRef::new(name), Err(CloudError::Invalid { field, .. }) if field == "stack.name"),
            "{name:?} accepted"
        );
    }
}
