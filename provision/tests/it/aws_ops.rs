//! The AWS backend's running-stack side against moto over HTTP: snapshots, the calls a watch
//! tick makes, every fault and its exact restore, launch template versions, attaching to a
//! group triad did not create, and the capacity refusal. What moto does not model — instance
//! refreshes, CloudWatch's protocol, instances in more than one AZ, RDS failover — is in
//! `aws_ops_mocks.rs`.
//!
//! Each test builds its own network, group and (when it needs one) database under unique
//! names on the shared moto server, and attaches to them as `--asg`/`--db` would. moto puts
//! every instance of a group in its first subnet, so all instances are in us-east-1a.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    Filter, LaunchTemplateTagSpecificationRequest, NetworkAcl, ResourceType, Tag,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use provision::aws::{ApiCalls, AwsCloud, FAULT_TAG, VERSION_TAG};
use provision::port::*;

const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// How long a test waits for moto to show a change before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// The groups' largest size.
const MAX_SIZE: i32 = 300;
/// The user data of the groups' launch template: the shape of `webapp/deploy`'s, with its
/// environment file section.
const USER_DATA: &str = "#!/bin/bash\nset -euo pipefail\nVERSION='1.0.0'\n\
                         cat >/etc/triad/webapp.env <<ENV\nROCKET_PORT=8080\n\
                         TRIAD_VERSION=$VERSION\nENV\nsystemctl restart triad-webapp.service\n";

/// moto's answers to what it does not implement are HTTP 500s; retrying them only slows the
/// tests down.
async fn config() -> aws_config::SdkConfig {
    testkit::aws_config()
        .await
        .into_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build()
}

/// A group of `instances` behind a target group, in three subnets of a VPC of its own, and
/// optionally a PostgreSQL database; created through the SDK as someone else's stack would be.
struct World {
    cloud: AwsCloud,
    stack: StackRef,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    rds: aws_sdk_rds::Client,
    group: String,
    vpc: String,
    /// (subnet id, AZ), in the group's order.
    subnets: Vec<(String, String)>,
    template_id: String,
    db: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    None,
    SingleAz,
    MultiAz,
}

async fn world(instances: i32, db: Db) -> World {
    let config = config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let asg = aws_sdk_autoscaling::Client::new(&config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let rds = aws_sdk_rds::Client::new(&config);
    let name = testkit::unique_name("ops");

    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("create vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnets = Vec::new();
    for (index, az) in AZS.iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            // A /23: room for the 300 instances of the calls-per-tick test.
            .cidr_block(format!("10.20.{}.0/23", 2 * index))
            .availability_zone(*az)
            .send()
            .await
            .expect("create subnet")
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned();
        subnets.push((subnet, (*az).to_owned()));
    }
    let image = ec2
        .describe_images()
        .send()
        .await
        .expect("describe images")
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("moto has images")
        .to_owned();
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let template_id = ec2
        .create_launch_template()
        .launch_template_name(format!("{name}-lt"))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .user_data(BASE64.encode(USER_DATA))
                .tag_specifications(
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(ResourceType::Instance)
                        .tags(tag("team", "web"))
                        .tags(tag(VERSION_TAG, "1.0.0"))
                        .build(),
                )
                .tag_specifications(
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(ResourceType::Volume)
                        .tags(tag("team", "web"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create launch template")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("launch template id")
        .to_owned();
    let target_group = elb
        .create_target_group()
        .name(format!("{name}-tg").chars().take(32).collect::<String>())
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("create target group")
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .expect("target group arn")
        .to_owned();
    let group = format!("{name}-asg");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .min_size(0)
        .max_size(MAX_SIZE)
        .desired_capacity(instances)
        .vpc_zone_identifier(
            subnets
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&template_id)
                .version("$Latest")
                .build(),
        )
        .target_group_arns(&target_group)
        .send()
        .await
        .expect("create group");

    let db = match db {
        Db::None => None,
        Db::SingleAz | Db::MultiAz => {
            let subnet_group = format!("{name}-db");
            rds.create_db_subnet_group()
                .db_subnet_group_name(&subnet_group)
                .db_subnet_group_description("test")
                .set_subnet_ids(Some(subnets.iter().map(|(id, _)| id.clone()).collect()))
                .send()
                .await
                .expect("create db subnet group");
            let id = format!("{name}-db");
            rds.create_db_instance()
                .db_instance_identifier(&id)
                .db_instance_class("db.t3.micro")
                .engine("postgres")
                .allocated_storage(20)
                .master_username("triad")
                .master_user_password("correct-horse-battery")
                .db_subnet_group_name(&subnet_group)
                .multi_az(db == Db::MultiAz)
                .send()
                .await
                .expect("create db instance");
            Some(id)
        }
    };

    let cloud = AwsCloud::from_config(&config).attached(Attachment {
        asg: group.clone(),
        db: db.clone(),
    });
    World {
        stack: StackRef::new(name).expect("valid name"),
        cloud,
        ec2,
        asg,
        rds,
        group,
        vpc,
        subnets,
        template_id,
        db,
    }
}

impl World {
    async fn snapshot(&self) -> Snapshot {
        self.cloud.snapshot(&self.stack).await.expect("snapshot")
    }

    fn subnet_in(&self, az: &str) -> &str {
        &self
            .subnets
            .iter()
            .find(|(_, a)| a == az)
            .expect("a subnet in every AZ")
            .0
    }

    async fn vpc_zone_identifier(&self) -> String {
        self.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .expect("describe group")
            .auto_scaling_groups()
            .first()
            .and_then(|g| g.vpc_zone_identifier())
            .expect("subnets")
            .to_owned()
    }

    async fn suspended(&self) -> Vec<String> {
        let answer = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .expect("describe group");
        let mut names: Vec<String> = answer
            .auto_scaling_groups()
            .first()
            .expect("group")
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    async fn nacls(&self) -> Vec<NetworkAcl> {
        let mut acls = self
            .ec2
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&self.vpc).build())
            .send()
            .await
            .expect("describe network acls")
            .network_acls()
            .to_vec();
        acls.sort_by(|a, b| a.network_acl_id().cmp(&b.network_acl_id()));
        acls
    }

    /// Each subnet's network ACL.
    async fn subnet_nacls(&self) -> BTreeMap<String, String> {
        self.nacls()
            .await
            .iter()
            .flat_map(|acl| {
                acl.associations().iter().filter_map(|a| {
                    Some((a.subnet_id()?.to_owned(), acl.network_acl_id()?.to_owned()))
                })
            })
            .collect()
    }

    /// The VPC's network ACLs as text (see [`nacl_text`]).
    async fn nacl_text(&self) -> String {
        nacl_text(&self.nacls().await)
    }
}

/// Network ACLs as text, with everything but the association ids (a re-association gets a
/// new one): the ACLs, their entries, tags and subnets.
fn nacl_text(acls: &[NetworkAcl]) -> String {
    acls.iter()
        .map(|acl| {
            let mut subnets: Vec<&str> = acl
                .associations()
                .iter()
                .filter_map(|a| a.subnet_id())
                .collect();
            subnets.sort();
            format!(
                "{:?} default={:?} entries={:?} tags={:?} subnets={subnets:?}",
                acl.network_acl_id(),
                acl.is_default(),
                acl.entries(),
                acl.tags()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The calls of the next tick of `snapshots`, and its snapshot.
async fn per_tick(
    calls: &ApiCalls,
    snapshots: &mut CloudStream<Snapshot>,
) -> (BTreeMap<String, u64>, Snapshot) {
    calls.reset();
    let snapshot = snapshots.next().await.expect("a tick").expect("snapshot");
    (calls.counts(), snapshot)
}

fn aws_changes(record: &FaultRecord) -> Vec<&AwsChange> {
    record
        .changes
        .iter()
        .map(|c| match c {
            FaultChange::Aws(change) => change,
            other => panic!("a sandbox change from the AWS backend: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_snapshot_shows_the_attached_group_per_az_and_says_which_sections_failed() {
    let w = world(3, Db::MultiAz).await;
    let snapshot = w.snapshot().await;

    let azs: Vec<&str> = snapshot.azs.iter().map(|v| v.az.as_str()).collect();
    assert_eq!(azs, AZS, "every AZ of the group's subnets has a column");
    assert_eq!(snapshot.enabled_azs, AZS);
    assert_eq!(
        snapshot.capacity,
        Some(Capacity {
            desired: 3,
            min: 0,
            max: MAX_SIZE as u32
        })
    );
    let first = snapshot.az("us-east-1a").expect("first AZ");
    assert_eq!(
        first.instances.len(),
        3,
        "moto launches into the first subnet"
    );
    assert!(first.instances.iter().all(|i| {
        i.lifecycle == LifecycleState::InService
            && i.health == HealthStatus::Healthy
            && i.launch_template_version.as_deref() == Some("1")
    }));
    // From DescribeInstances: the version tag the launch template put on each instance, its
    // private address (inside the first subnet, 10.20.0.0/23) and its launch time.
    for instance in &first.instances {
        assert_eq!(instance.version.as_deref(), Some("1.0.0"), "{instance:?}");
        let address = instance.address.as_deref().expect("a private address");
        assert!(
            address.starts_with("10.20.0.") || address.starts_with("10.20.1."),
            "{address}"
        );
        let launched = instance.launch_time.expect("a launch time");
        assert!(
            launched <= snapshot.taken_at,
            "{launched} {}",
            snapshot.taken_at
        );
    }
    let mut target_ids: Vec<&str> = first.targets.iter().map(|t| t.id.as_str()).collect();
    target_ids.sort();
    let instance_ids: Vec<&str> = first.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        target_ids, instance_ids,
        "targets sit in their instance's AZ"
    );
    assert!(
        first
            .targets
            .iter()
            .all(|t| t.state == TargetState::Healthy && t.port == 8080)
    );
    assert_eq!(first.healthy_capacity(), 3);
    assert_eq!(snapshot.healthy_capacity_outside("us-east-1a"), 0);

    let db = w.db.as_deref().expect("db");
    let primary = snapshot.db_primary_az().expect("the primary's AZ");
    let view = snapshot
        .az(primary)
        .and_then(|v| v.database.as_ref())
        .expect("db");
    assert_eq!(view.id, db);
    assert_eq!(view.status, DbStatus::Available);
    assert_eq!(
        view.synchronous,
        Some(true),
        "Multi-AZ commits are synchronous"
    );

    // moto answers DescribeInstanceRefreshes with HTTP 500 and CloudWatch's current protocol
    // with 404, and has no ARC zonal shift service: those sections say why, and everything
    // else is there.
    let failed: Vec<Section> = snapshot.errors.iter().map(|e| e.section).collect();
    assert_eq!(
        failed,
        [Section::Refreshes, Section::Metrics, Section::Shifts],
        "{:?}",
        snapshot.errors
    );
    let metrics = snapshot.error_for(Section::Metrics).expect("metrics error");
    assert!(metrics.message.contains("GetMetricData"), "{metrics}");

    // The database's RDS events (moto records its creation and a first backup), newest
    // first; moto records no scaling activities.
    let messages: Vec<&str> = snapshot
        .events
        .iter()
        .map(|e| {
            assert_eq!(e.source, EventSource::Database, "{e:?}");
            e.message.as_str()
        })
        .collect();
    assert!(
        messages.contains(&format!("{db}: DB instance created").as_str()),
        "{messages:?}"
    );
    assert!(
        snapshot.events.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first: {:?}",
        snapshot.events
    );
}

/// moto creates the 297 new instances in one SetDesiredCapacity (a few seconds) and answers a
/// tick over 300 instances in well under a second. The reads made once per period (events
/// every 30 s, metrics every 60 s) cost the same whatever the fleet size too; a tick that
/// happens to make one is not the one compared.
#[tokio::test]
async fn a_watch_tick_makes_the_same_calls_for_3_and_for_300_instances() {
    let w = world(3, Db::SingleAz).await;
    let calls = w.cloud.api_calls().clone();
    let mut watch = w.cloud.watch(&w.stack, Duration::from_millis(10));
    // The first tick finds the group's target groups, load balancers and subnets, and reads
    // the metrics and events; the ones after it only observe.
    watch.next().await.expect("a first tick").expect("snapshot");
    let (small, snapshot) = per_tick(&calls, &mut watch).await;
    assert_eq!(snapshot.az("us-east-1a").expect("az").instances.len(), 3);
    let (again, _) = per_tick(&calls, &mut watch).await;
    assert_eq!(small, again, "every tick costs the same");

    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name(&w.group)
        .desired_capacity(300)
        .send()
        .await
        .expect("scale out");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let periodic = ["rds:DescribeEvents", "cloudwatch:GetMetricData"];
    let large = loop {
        let (counts, snapshot) = per_tick(&calls, &mut watch).await;
        let instances = &snapshot.az("us-east-1a").expect("az").instances;
        if instances.len() == 300 && !periodic.iter().any(|call| counts.contains_key(*call)) {
            assert!(
                instances.iter().all(|i| i.address.is_some()),
                "every instance's details came in the one DescribeInstances page"
            );
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never reached 300"
        );
    };
    assert_eq!(small, large, "300 instances cost what 3 did");
    let expected: BTreeMap<String, u64> = [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeInstanceRefreshes",
        "autoscaling:DescribePolicies",
        "autoscaling:DescribeScalingActivities",
        "ec2:DescribeInstances",
        "elasticloadbalancing:DescribeTargetHealth",
        "rds:DescribeDBInstances",
        "arc-zonal-shift:ListZonalShifts",
    ]
    .into_iter()
    .map(|call| (call.to_owned(), 1))
    .collect();
    assert_eq!(large, expected);
}

#[tokio::test]
async fn terminate_az_terminates_the_in_service_instances_there() {
    let w = world(3, Db::None).await;
    let fault = Fault::TerminateAz {
        az: "us-east-1a".into(),
    };
    let before = w.snapshot().await;
    let mut ids: Vec<String> = before
        .az("us-east-1a")
        .expect("az")
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    ids.sort();

    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    let planned: Vec<String> = plan.actions.iter().map(|a| a.resource.clone()).collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("instance {id}")).collect();
    assert_eq!(planned, expected);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.call == "ec2:TerminateInstances" && !a.reversible)
    );

    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Force)
        .await
        .expect("inject");
    let [
        AwsChange::InstancesTerminated {
            instance_ids,
            auto_scaling_group,
            az,
        },
    ] = aws_changes(&record)[..]
    else {
        panic!("unexpected changes {:?}", record.changes);
    };
    let mut terminated = instance_ids.clone();
    terminated.sort();
    assert_eq!(terminated, ids);
    assert_eq!(auto_scaling_group, &w.group);
    assert_eq!(az, "us-east-1a");

    let states = w
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .expect("describe instances");
    let states: Vec<&str> = states
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()))
        .collect();
    assert_eq!(states.len(), 3);
    assert!(
        states
            .iter()
            .all(|s| *s == "terminated" || *s == "shutting-down"),
        "{states:?}"
    );
    w.cloud
        .restore(&record)
        .await
        .expect("nothing to restore is fine");
}

#[tokio::test]
async fn the_capacity_check_refuses_a_fault_on_the_only_serving_az_unless_forced() {
    let w = world(3, Db::None).await;
    let guarded = Guarded::new(w.cloud.clone(), SessionMode::ReadWrite);
    let fault = Fault::BlackholeAz {
        az: "us-east-1a".into(),
    };
    let refused = guarded
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect_err("every healthy target is in us-east-1a");
    assert!(refused.is_refusal(), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("no healthy capacity outside us-east-1a"),
        "{refused}"
    );
    assert_eq!(
        w.subnet_nacls().await.get(w.subnet_in("us-east-1a")),
        w.subnet_nacls().await.get(w.subnet_in("us-east-1b")),
        "nothing was changed"
    );

    let record = guarded
        .inject(&w.stack, &fault, CapacityCheck::Force)
        .await
        .expect("forced");
    assert!(record.forced);
    assert_eq!(record.az.as_deref(), Some("us-east-1a"));
    guarded.restore(&record).await.expect("restore");
    assert!(guarded.active_faults().await.is_empty());
}

#[tokio::test]
async fn blackhole_swaps_in_a_deny_all_nacl_and_restore_puts_back_exactly_what_was_there() {
    let w = world(3, Db::None).await;
    let az = "us-east-1b";
    let subnet = w.subnet_in(az).to_owned();
    let before = w.nacl_text().await;
    let original = w.subnet_nacls().await[&subnet].clone();
    let fault = Fault::BlackholeAz { az: az.into() };

    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    let calls: Vec<(&str, &str)> = plan
        .actions
        .iter()
        .map(|a| (a.resource.as_str(), a.call.as_str()))
        .collect();
    let vpc = format!("vpc {}", w.vpc);
    let subnet_resource = format!("subnet {subnet}");
    assert_eq!(
        calls,
        [
            (vpc.as_str(), "ec2:CreateNetworkAcl (deny all)"),
            (
                subnet_resource.as_str(),
                "ec2:ReplaceNetworkAclAssociation (to the deny-all NACL)"
            ),
        ]
    );
    assert!(plan.actions.iter().all(|a| a.reversible));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("only the group's subnets in us-east-1b")),
        "an attached group's dry run says what it leaves out: {:?}",
        plan.notes
    );

    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let changes = aws_changes(&record);
    let [
        AwsChange::NetworkAclCreated {
            vpc_id,
            network_acl_id,
        },
        AwsChange::NetworkAclAssociationReplaced {
            subnet_id,
            original_network_acl_id,
            ..
        },
    ] = changes[..]
    else {
        panic!("unexpected changes {changes:?}");
    };
    assert_eq!(vpc_id, &w.vpc);
    assert_eq!(subnet_id, &subnet);
    assert_eq!(original_network_acl_id, &original);
    let now = w.subnet_nacls().await;
    assert_eq!(&now[&subnet], network_acl_id, "the subnet has the new NACL");
    assert_eq!(
        now[w.subnet_in("us-east-1a")],
        original,
        "other AZs keep theirs"
    );
    let acl = w
        .nacls()
        .await
        .into_iter()
        .find(|a| a.network_acl_id() == Some(network_acl_id.as_str()))
        .expect("the new NACL");
    assert!(
        acl.entries()
            .iter()
            .all(|e| e.rule_action().map(|a| a.as_str()) == Some("deny")),
        "a new NACL denies everything: {:?}",
        acl.entries()
    );
    assert!(
        acl.tags()
            .iter()
            .any(|t| t.key() == Some(FAULT_TAG) && t.value() == Some(record.id.as_str()))
    );

    w.cloud.restore(&record).await.expect("restore");
    assert_eq!(
        w.nacl_text().await,
        before,
        "the VPC's NACLs are as they were"
    );
    w.cloud
        .restore(&record)
        .await
        .expect("restoring twice is harmless");
    assert_eq!(w.nacl_text().await, before);
}

#[tokio::test]
async fn block_launches_removes_the_az_subnet_and_restore_sets_the_exact_list_back() {
    let w = world(3, Db::None).await;
    let original = w.vpc_zone_identifier().await;
    let fault = Fault::BlockLaunchesInAz {
        az: "us-east-1b".into(),
    };
    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let remaining = format!(
        "{},{}",
        w.subnet_in("us-east-1a"),
        w.subnet_in("us-east-1c")
    );
    assert_eq!(w.vpc_zone_identifier().await, remaining);
    assert_eq!(w.suspended().await, ["AZRebalance"]);
    let removed = vec![w.subnet_in("us-east-1b").to_owned()];
    let original_ids: Vec<String> = original.split(',').map(str::to_owned).collect();
    assert_eq!(
        aws_changes(&record),
        [
            &AwsChange::SubnetsRemovedFromGroup {
                auto_scaling_group: w.group.clone(),
                original_subnet_ids: original_ids,
                removed_subnet_ids: removed,
            },
            &AwsChange::ProcessesSuspended {
                auto_scaling_group: w.group.clone(),
                processes: vec![ScalingProcess::AzRebalance],
            },
        ]
    );
    let snapshot = w.snapshot().await;
    assert_eq!(snapshot.enabled_azs, ["us-east-1a", "us-east-1c"]);
    assert_eq!(snapshot.azs.len(), 3, "the blocked AZ keeps its column");
    assert_eq!(snapshot.suspended_processes, [ScalingProcess::AzRebalance]);

    w.cloud.restore(&record).await.expect("restore");
    assert_eq!(
        w.vpc_zone_identifier().await,
        original,
        "the exact original list"
    );
    assert!(w.suspended().await.is_empty());
}

#[tokio::test]
async fn a_process_suspended_before_the_fault_stays_suspended_after_restore() {
    let w = world(2, Db::None).await;
    w.asg
        .suspend_processes()
        .auto_scaling_group_name(&w.group)
        .scaling_processes("AZRebalance")
        .scaling_processes("AlarmNotification")
        .send()
        .await
        .expect("suspend");
    let fault = Fault::BlockLaunchesInAz {
        az: "us-east-1c".into(),
    };
    let plan = w
        .cloud
        .describe_fault(&w.stack, &fault)
        .await
        .expect("describe");
    assert!(
        plan.actions
            .iter()
            .all(|a| a.call != "autoscaling:SuspendProcesses"),
        "{:?}",
        plan.actions
    );
    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    assert!(
        !aws_changes(&record)
            .iter()
            .any(|c| matches!(c, AwsChange::ProcessesSuspended { .. })),
        "AZRebalance was already suspended: {:?}",
        record.changes
    );
    w.cloud.restore(&record).await.expect("restore");
    assert_eq!(w.suspended().await, ["AZRebalance", "AlarmNotification"]);
}

#[tokio::test]
async fn failover_reboots_a_multi_az_database_with_force_failover() {
    let w = world(1, Db::MultiAz).await;
    let db = w.db.clone().expect("db");
    let primary = w
        .snapshot()
        .await
        .db_primary_az()
        .expect("primary")
        .to_owned();
    let plan = w
        .cloud
        .describe_fault(&w.stack, &Fault::FailoverDb)
        .await
        .expect("describe");
    assert_eq!(plan.az.as_deref(), Some(primary.as_str()));
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].call, "rds:RebootDBInstance (ForceFailover)");
    assert!(!plan.actions[0].reversible);

    let record = w
        .cloud
        .inject(&w.stack, &Fault::FailoverDb, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let [
        AwsChange::DbRebootedWithFailover {
            db_instance_id,
            from_az,
            ..
        },
    ] = aws_changes(&record)[..]
    else {
        panic!("unexpected changes {:?}", record.changes);
    };
    assert_eq!(db_instance_id, &db);
    assert_eq!(from_az, &primary);
    assert_eq!(record.az.as_deref(), Some(primary.as_str()));
    // moto reboots the instance (it stays available: it models no failover time).
    let status = w
        .rds
        .describe_db_instances()
        .db_instance_identifier(&db)
        .send()
        .await
        .expect("describe db")
        .db_instances()[0]
        .db_instance_status()
        .map(str::to_owned);
    assert!(
        matches!(status.as_deref(), Some("available" | "rebooting")),
        "{status:?}"
    );
}

#[tokio::test]
async fn failover_is_refused_when_the_database_is_not_multi_az() {
    let w = world(1, Db::SingleAz).await;
    let plan = w
        .cloud
        .describe_fault(&w.stack, &Fault::FailoverDb)
        .await
        .expect("describe");
    assert!(
        plan.notes.iter().any(|n| n.contains("not Multi-AZ")),
        "{:?}",
        plan.notes
    );
    let refused = w
        .cloud
        .inject(&w.stack, &Fault::FailoverDb, CapacityCheck::Force)
        .await
        .expect_err("no standby");
    assert!(refused.is_refusal(), "{refused}");
    assert!(refused.to_string().contains("not Multi-AZ"), "{refused}");
}

#[tokio::test]
async fn an_az_outage_takes_every_step_in_order_and_restore_undoes_them_in_reverse() {
    let w = world(3, Db::MultiAz).await;
    let az = w
        .snapshot()
        .await
        .db_primary_az()
        .expect("primary")
        .to_owned();
    let nacls = w.nacl_text().await;
    let subnets = w.vpc_zone_identifier().await;
    let fault = Fault::AzOutage { az: az.clone() };
    let record = w
        .cloud
        .inject(&w.stack, &fault, CapacityCheck::Force)
        .await
        .expect("inject");
    let kinds: Vec<&str> = aws_changes(&record)
        .iter()
        .map(|c| match c {
            AwsChange::DbRebootedWithFailover { .. } => "failover",
            AwsChange::NetworkAclCreated { .. } => "nacl",
            AwsChange::NetworkAclAssociationReplaced { .. } => "association",
            AwsChange::SubnetsRemovedFromGroup { .. } => "subnets",
            AwsChange::ProcessesSuspended { .. } => "suspend",
            AwsChange::InstancesTerminated { .. } => "terminate",
            AwsChange::LatencyAdded { .. } => "latency",
        })
        .collect();
    assert_eq!(
        kinds,
        ["failover", "nacl", "association", "subnets", "suspend"]
    );
    assert_ne!(w.vpc_zone_identifier().await, subnets);
    assert_ne!(w.nacl_text().await, nacls);

    w.cloud.restore(&record).await.expect("restore");
    assert_eq!(w.vpc_zone_identifier().await, subnets);
    assert_eq!(w.nacl_text().await, nacls);
    assert!(w.suspended().await.is_empty());
}

/// A deploy to an attached group makes a new version of the group's launch template from the
/// version it uses: described as the deploy, with the current version's tag specifications
/// (the instances' version tag changed to the deploy's) and its user data with the
/// environment overrides written into the environment file section. moto implements no
/// instance refresh (HTTP 500), so the deploy ends at StartInstanceRefresh; starting the
/// refresh onto the new version is `aws_ops_mocks.rs`'s. moto ignores SourceVersion (a new
/// version holds only the data given), so that AWS copies the rest (image, instance type) is
/// AWS's promise, not checked here; what triad itself copies is.
#[tokio::test]
async fn a_deploy_to_an_attached_group_makes_a_launch_template_version_from_the_current_one() {
    let w = world(2, Db::None).await;
    let mut request = DeployRequest::new("2.0.0");
    request.env = BTreeMap::from([
        ("ROCKET_PORT".to_owned(), "9090".to_owned()),
        ("FEATURE_X".to_owned(), "on".to_owned()),
    ]);
    let error = w
        .cloud
        .deploy(&w.stack, &request)
        .await
        .expect_err("moto has no instance refresh");
    assert!(
        error.to_string().contains("StartInstanceRefresh"),
        "{error}"
    );
    let versions = w
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&w.template_id)
        .send()
        .await
        .expect("versions");
    let mut versions = versions.launch_template_versions().to_vec();
    versions.sort_by_key(|v| v.version_number());
    assert_eq!(versions.len(), 2, "{versions:?}");
    let new = &versions[1];
    assert_eq!(new.version_number(), Some(2));
    assert_eq!(new.version_description(), Some("triad deploy 2.0.0"));
    let data = new.launch_template_data().expect("data");
    let tags: Vec<(&str, Vec<(&str, &str)>)> = data
        .tag_specifications()
        .iter()
        .map(|s| {
            (
                s.resource_type().map(|r| r.as_str()).unwrap_or_default(),
                s.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value()?)))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        [
            ("instance", vec![("team", "web"), (VERSION_TAG, "2.0.0")]),
            ("volume", vec![("team", "web")]),
        ]
    );
    let user_data = BASE64
        .decode(data.user_data().expect("user data"))
        .expect("base64");
    assert_eq!(
        String::from_utf8(user_data).expect("text"),
        USER_DATA
            .replace("ROCKET_PORT=8080", "ROCKET_PORT=9090")
            .replace(
                "TRIAD_VERSION=$VERSION\n",
                "TRIAD_VERSION=$VERSION\nFEATURE_X=on\n"
            )
    );
    // The group still names its template's $Latest, now the new version, which the refresh
    // would have rolled onto.
    let group = w
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&w.group)
        .send()
        .await
        .expect("describe group");
    let template = group.auto_scaling_groups()[0]
        .launch_template()
        .expect("a launch template");
    assert_eq!(template.launch_template_id(), Some(w.template_id.as_str()));
    assert_eq!(template.version(), Some("$Latest"));

    let refused = w
        .cloud
        .deploy(
            &w.stack,
            &DeployRequest {
                binary: Some("webapp".into()),
                ..DeployRequest::new("2.0.1")
            },
        )
        .await
        .expect_err("no artefact bucket");
    assert!(
        matches!(refused, CloudError::Invalid { ref field, .. } if field == "binary"),
        "{refused}"
    );
}

#[tokio::test]
async fn attaching_to_a_group_that_does_not_exist_is_not_found() {
    let config = config().await;
    let cloud = AwsCloud::from_config(&config).attached(Attachment {
        asg: testkit::unique_name("missing"),
        db: None,
    });
    let stack = StackRef::new("anything").expect("name");
    let error = cloud.snapshot(&stack).await.expect_err("no such group");
    assert!(matches!(error, CloudError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn a_triad_stack_is_found_through_its_cloudformation_resources() {
    let config = config().await;
    let name = testkit::unique_name("opsstack");
    let template = serde_json::json!({
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.30.0.0/16"}},
            "PrivateSubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.30.0.0/24", "AvailabilityZone": "us-east-1a"}},
            "PrivateSubnetB": {"Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.30.1.0/24", "AvailabilityZone": "us-east-1b"}},
            "LaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {
                "LaunchTemplateData": {"ImageId": "ami-03cf127a", "InstanceType": "t3.micro"}}},
            "TargetGroup": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
                "Port": 8080, "Protocol": "HTTP", "VpcId": {"Ref": "Vpc"}}},
            "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
                "MinSize": "0", "MaxSize": "4", "DesiredCapacity": "2",
                "VPCZoneIdentifier": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
                "TargetGroupARNs": [{"Ref": "TargetGroup"}],
                "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}}}}
        }
    });
    aws_sdk_cloudformation::Client::new(&config)
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create stack");
    let cloud = AwsCloud::from_config(&config);
    let stack = StackRef::new(name).expect("name");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    assert_eq!(snapshot.stack_status, Some(StackStatus::CreateComplete));
    assert_eq!(
        snapshot.capacity,
        Some(Capacity {
            desired: 2,
            min: 0,
            max: 4
        })
    );
    let azs: Vec<&str> = snapshot.azs.iter().map(|v| v.az.as_str()).collect();
    assert_eq!(azs, ["us-east-1a", "us-east-1b"]);
    assert_eq!(snapshot.az("us-east-1a").expect("az").targets.len(), 2);
    // The stack's CloudFormation events are in the events pane, newest first, each with its
    // resource, status and reason (moto records the stack's own events, not its resources').
    let stack_events: Vec<&str> = snapshot
        .events
        .iter()
        .filter(|e| e.source == EventSource::Stack)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        stack_events,
        [
            format!("{} CREATE_COMPLETE", stack.name),
            format!("{} CREATE_IN_PROGRESS: User Initiated", stack.name),
        ],
        "{:?}",
        snapshot.events
    );
}

/// On a triad stack a blackhole covers every subnet of the stack in the AZ — the group's
/// private subnet and the public one beside it — and the dry run lists each; restore puts
/// back exactly the VPC's network ACLs as they were.
#[tokio::test]
async fn a_triad_stack_blackhole_covers_every_stack_subnet_in_the_az_and_restores_exactly() {
    let config = config().await;
    let name = testkit::unique_name("opsbh");
    let subnet = |cidr: &str, az: &str| {
        serde_json::json!({"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": cidr, "AvailabilityZone": az}})
    };
    let template = serde_json::json!({
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.40.0.0/16"}},
            "PublicSubnetA": subnet("10.40.0.0/24", "us-east-1a"),
            "PublicSubnetB": subnet("10.40.1.0/24", "us-east-1b"),
            "PrivateSubnetA": subnet("10.40.128.0/24", "us-east-1a"),
            "PrivateSubnetB": subnet("10.40.129.0/24", "us-east-1b"),
            "LaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {
                "LaunchTemplateData": {"ImageId": "ami-03cf127a", "InstanceType": "t3.micro"}}},
            "Group": {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
                "MinSize": "0", "MaxSize": "2", "DesiredCapacity": "1",
                "VPCZoneIdentifier": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
                "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}}}}
        }
    });
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    cfn.create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create stack");
    let resources = cfn
        .list_stack_resources()
        .stack_name(&name)
        .send()
        .await
        .expect("stack resources");
    let physical = |logical: &str| -> String {
        resources
            .stack_resource_summaries()
            .iter()
            .find(|r| r.logical_resource_id() == Some(logical))
            .and_then(|r| r.physical_resource_id())
            .expect("a stack resource")
            .to_owned()
    };
    let (vpc, public_a, private_a) = (
        physical("Vpc"),
        physical("PublicSubnetA"),
        physical("PrivateSubnetA"),
    );
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let acls = || async {
        ec2.describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .expect("describe network acls")
            .network_acls()
            .to_vec()
    };
    let subnet_acls = |acls: &[NetworkAcl]| -> BTreeMap<String, String> {
        acls.iter()
            .flat_map(|acl| {
                acl.associations().iter().filter_map(|a| {
                    Some((a.subnet_id()?.to_owned(), acl.network_acl_id()?.to_owned()))
                })
            })
            .collect()
    };
    let before_acls = acls().await;
    let before = nacl_text(&before_acls);
    let original = subnet_acls(&before_acls);

    let cloud = AwsCloud::from_config(&config);
    let stack = StackRef::new(name.clone()).expect("name");
    let fault = Fault::BlackholeAz {
        az: "us-east-1a".into(),
    };
    let plan = cloud
        .describe_fault(&stack, &fault)
        .await
        .expect("describe");
    let mut planned: Vec<&str> = plan
        .actions
        .iter()
        .filter(|a| a.call.starts_with("ec2:ReplaceNetworkAclAssociation"))
        .map(|a| a.resource.as_str())
        .collect();
    planned.sort();
    let mut expected = vec![format!("subnet {public_a}"), format!("subnet {private_a}")];
    expected.sort();
    assert_eq!(planned, expected, "{:?}", plan.actions);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains(&format!("every subnet of stack {name} in us-east-1a"))),
        "{:?}",
        plan.notes
    );

    let record = cloud
        .inject(&stack, &fault, CapacityCheck::Force)
        .await
        .expect("inject");
    let Some(AwsChange::NetworkAclCreated { network_acl_id, .. }) =
        aws_changes(&record).first().copied()
    else {
        panic!("unexpected changes {:?}", record.changes);
    };
    let during = subnet_acls(&acls().await);
    for (subnet, acl) in &during {
        if *subnet == public_a || *subnet == private_a {
            assert_eq!(acl, network_acl_id, "{subnet} is blackholed");
        } else {
            assert_eq!(
                acl, &original[subnet],
                "{subnet} in us-east-1b keeps its NACL"
            );
        }
    }

    cloud.restore(&record).await.expect("restore");
    assert_eq!(
        nacl_text(&acls().await),
        before,
        "the VPC's NACLs are as they were"
    );
}

impl World {
    /// The group's desired capacity and each instance's lifecycle state, by id.
    async fn group_state(&self) -> (i32, BTreeMap<String, String>) {
        let answer = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .expect("describe group");
        let group = answer.auto_scaling_groups().first().expect("group");
        let states = group
            .instances()
            .iter()
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_owned(),
                    i.lifecycle_state()?.as_str().to_owned(),
                ))
            })
            .collect();
        (group.desired_capacity().unwrap_or(-1), states)
    }

    async fn set_capacity(&self, min: i32, max: i32) {
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&self.group)
            .min_size(min)
            .max_size(max)
            .send()
            .await
            .expect("update group");
    }
}

/// One-instance actions on moto, which models TerminateInstanceInAutoScalingGroup,
/// EnterStandby and ExitStandby: standby with a decrement and back, then terminate with a
/// decrement; each dry run names the call it will make.
#[tokio::test]
async fn standby_and_back_then_terminate_with_a_decrement() {
    let w = world(3, Db::None).await;
    let (_, states) = w.group_state().await;
    let id = states.keys().next().expect("an instance").clone();

    let standby = InstanceAction::Standby { decrement: true };
    let plan = w
        .cloud
        .describe_instance_action(&w.stack, &id, standby)
        .await
        .expect("describe");
    assert_eq!(plan.az, "us-east-1a");
    assert_eq!(
        plan.calls,
        vec![format!(
            "autoscaling:EnterStandby {id} ShouldDecrementDesiredCapacity=true"
        )]
    );
    assert!(plan.notes.iter().any(|n| n.contains("gameday restore")));
    w.cloud
        .act_on_instance(&w.stack, &id, standby, CapacityCheck::Enforce)
        .await
        .expect("enter standby");
    let (desired, states) = w.group_state().await;
    assert_eq!(desired, 2);
    assert_eq!(states.get(&id).map(String::as_str), Some("Standby"));

    w.cloud
        .act_on_instance(
            &w.stack,
            &id,
            InstanceAction::Resume,
            CapacityCheck::Enforce,
        )
        .await
        .expect("exit standby");
    let (desired, states) = w.group_state().await;
    assert_eq!(desired, 3);
    assert_eq!(states.get(&id).map(String::as_str), Some("InService"));

    w.cloud
        .act_on_instance(
            &w.stack,
            &id,
            InstanceAction::Terminate { decrement: true },
            CapacityCheck::Enforce,
        )
        .await
        .expect("terminate");
    let (desired, states) = w.group_state().await;
    assert_eq!(desired, 2);
    assert!(!states.contains_key(&id), "{states:?}");
}

/// Marking one instance unhealthy on moto, which models SetInstanceHealth: its health status
/// becomes Unhealthy (on AWS the group then replaces it once its grace period is over; moto does
/// not replace it, so that part is the group model's, tested there).
#[tokio::test]
async fn an_instance_marked_unhealthy_has_that_health_status() {
    let w = world(2, Db::None).await;
    let (_, states) = w.group_state().await;
    let id = states.keys().next().expect("an instance").clone();
    let plan = w
        .cloud
        .describe_instance_action(&w.stack, &id, InstanceAction::Unhealthy)
        .await
        .expect("describe");
    assert!(
        plan.calls.iter().any(|c| c.contains("SetInstanceHealth")),
        "{:?}",
        plan.calls
    );
    w.cloud
        .act_on_instance(
            &w.stack,
            &id,
            InstanceAction::Unhealthy,
            CapacityCheck::Enforce,
        )
        .await
        .expect("set unhealthy");
    let answer = w
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&w.group)
        .send()
        .await
        .expect("describe group");
    let health: BTreeMap<String, String> = answer.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| Some((i.instance_id()?.to_owned(), i.health_status()?.to_owned())))
        .collect();
    assert_eq!(
        health.get(&id).map(String::as_str),
        Some("Unhealthy"),
        "{health:?}"
    );
    assert!(
        health
            .iter()
            .filter(|(i, _)| **i != id)
            .all(|(_, h)| h == "Healthy"),
        "only that one: {health:?}"
    );
}

/// The capacity rules refuse before any call: a decrement at min, an exit from standby at
/// max (moto does not check either; AWS does, with the same rule).
#[tokio::test]
async fn a_decrement_at_min_and_an_exit_at_max_are_refused() {
    let w = world(2, Db::None).await;
    let (_, states) = w.group_state().await;
    let ids: Vec<String> = states.keys().cloned().collect();
    w.cloud
        .act_on_instance(
            &w.stack,
            &ids[0],
            InstanceAction::Standby { decrement: false },
            CapacityCheck::Enforce,
        )
        .await
        .expect("enter standby without decrement");
    w.set_capacity(2, 2).await;
    for (id, action) in [
        (&ids[1], InstanceAction::Terminate { decrement: true }),
        (&ids[0], InstanceAction::Resume),
    ] {
        let error = w
            .cloud
            .describe_instance_action(&w.stack, id, action)
            .await
            .expect_err("refused");
        assert!(matches!(error, CloudError::Refused { .. }), "{error:?}");
        let error = w
            .cloud
            .act_on_instance(&w.stack, id, action, CapacityCheck::Enforce)
            .await
            .expect_err("refused");
        assert!(matches!(error, CloudError::Refused { .. }), "{error:?}");
    }
    let (desired, states) = w.group_state().await;
    assert_eq!(desired, 2);
    assert_eq!(states.get(&ids[0]).map(String::as_str), Some("Standby"));
    assert!(states.contains_key(&ids[1]));
}

/// An attached group shows its own target tracking policies (DescribePolicies on moto): the
/// metric, the target and whether scale-in is on. The alarms AWS creates for them and their
/// states are tested with SDK mocks (`aws_ops_mocks.rs`): moto creates none.
#[tokio::test]
async fn the_scaling_section_lists_the_groups_own_policies() {
    let w = world(3, Db::None).await;
    let before = w.snapshot().await;
    assert_eq!(
        before.scaling.as_ref().map(|s| s.policies.len()),
        Some(0),
        "no policy yet: {:?}",
        before.scaling
    );
    w.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&w.group)
        .policy_name("web-cpu")
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            aws_sdk_autoscaling::types::TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    aws_sdk_autoscaling::types::PredefinedMetricSpecification::builder()
                        .predefined_metric_type(
                            aws_sdk_autoscaling::types::MetricType::AsgAverageCpuUtilization,
                        )
                        .build(),
                )
                .target_value(55.0)
                .disable_scale_in(true)
                .build(),
        )
        .send()
        .await
        .expect("put scaling policy");
    let snapshot = w.snapshot().await;
    assert!(
        snapshot.error_for(Section::Scaling).is_none(),
        "{:?}",
        snapshot.errors
    );
    let scaling = snapshot.scaling.expect("a scaling section");
    let policies: Vec<(&str, ScalingMetric, f64, bool)> = scaling
        .policies
        .iter()
        .map(|p| {
            (
                p.policy.name.as_str(),
                p.policy.metric,
                p.policy.target,
                p.policy.scale_in,
            )
        })
        .collect();
    assert_eq!(
        policies,
        [("web-cpu", ScalingMetric::CpuPercent, 55.0, false)]
    );
}
