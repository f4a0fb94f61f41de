//! The AWS backend's running-stack side where moto cannot go, with `aws-smithy-mocks`: each
//! test's comment names the moto gap it covers. The fixture is a group `web` attached with
//! `--asg web --db web-db`, spread over three AZs as AWS spreads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_arczonalshift::operation::cancel_zonal_shift::CancelZonalShiftOutput;
use aws_sdk_arczonalshift::operation::list_zonal_shifts::ListZonalShiftsOutput;
use aws_sdk_arczonalshift::operation::start_zonal_shift::{
    StartZonalShiftError, StartZonalShiftInput, StartZonalShiftOutput,
};
use aws_sdk_arczonalshift::types::{ZonalShiftStatus, ZonalShiftSummary};
use aws_sdk_autoscaling::operation::cancel_instance_refresh::{
    CancelInstanceRefreshError, CancelInstanceRefreshOutput,
};
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::operation::describe_policies::DescribePoliciesOutput;
use aws_sdk_autoscaling::operation::describe_scaling_activities::DescribeScalingActivitiesOutput;
use aws_sdk_autoscaling::operation::rollback_instance_refresh::{
    RollbackInstanceRefreshError, RollbackInstanceRefreshOutput,
};
use aws_sdk_autoscaling::operation::start_instance_refresh::{
    StartInstanceRefreshError, StartInstanceRefreshOutput,
};
use aws_sdk_autoscaling::types as asg;
use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
use aws_sdk_cloudformation::operation::list_stack_resources::ListStackResourcesOutput;
use aws_sdk_cloudformation::types as cfn;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataError, GetMetricDataOutput};
use aws_sdk_cloudwatch::types::MetricDataResult;
use aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput;
use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancer_attributes::DescribeLoadBalancerAttributesOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::types as elb;
use aws_sdk_rds::operation::describe_db_instances::DescribeDbInstancesOutput;
use aws_sdk_rds::operation::describe_events::{DescribeEventsError, DescribeEventsOutput};
use aws_sdk_rds::operation::reboot_db_instance::RebootDbInstanceOutput;
use aws_sdk_ssm::operation::cancel_command::CancelCommandOutput;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use futures::StreamExt;
use provision::aws::{AwsCloud, OpsClients, Polling};
use provision::port::*;

const GROUP: &str = "web";
const DB: &str = "web-db";
const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/73e2d6bc24d8a067";
const LOAD_BALANCER: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
const GROUP_ARN: &str = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:\
     6d3b1a2c-1f0e-4b7a-9c5d-2e8f7a6b5c4d:autoScalingGroupName/web";
const AZS: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];
/// (instance, AZ): two in the first AZ, one in each other.
const INSTANCES: [(&str, &str); 4] = [
    ("i-0a1", "eu-west-1a"),
    ("i-0a2", "eu-west-1a"),
    ("i-0b1", "eu-west-1b"),
    ("i-0c1", "eu-west-1c"),
];

/// Rules per service; a service without rules answers every call with an error.
#[derive(Default)]
struct Rules {
    cfn: Vec<Rule>,
    autoscaling: Vec<Rule>,
    ec2: Vec<Rule>,
    elb: Vec<Rule>,
    rds: Vec<Rule>,
    cloudwatch: Vec<Rule>,
    arc: Vec<Rule>,
    ssm: Vec<Rule>,
}

impl Rules {
    /// The attached group, its target group and load balancer, subnets and database.
    fn attached() -> Self {
        Self {
            autoscaling: vec![group_rule("3")],
            ec2: vec![subnets_rule()],
            elb: vec![
                target_groups_rule(),
                load_balancers_rule(),
                target_health_rule(),
            ],
            rds: vec![db_rule("eu-west-1a", "eu-west-1b")],
            ..Self::default()
        }
    }

    /// A backend over these rules, with empty answers after them for the calls every tick
    /// makes (refreshes, activities, instance details, metrics, database events) that a test
    /// does not answer itself.
    fn cloud(&self, attach: bool) -> AwsCloud {
        let mut autoscaling = self.autoscaling.clone();
        autoscaling.push(
            mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
                .then_output(|| DescribeInstanceRefreshesOutput::builder().build()),
        );
        autoscaling.push(
            mock!(aws_sdk_autoscaling::Client::describe_scaling_activities)
                .then_output(|| DescribeScalingActivitiesOutput::builder().build()),
        );
        autoscaling.push(
            mock!(aws_sdk_autoscaling::Client::describe_policies)
                .then_output(|| DescribePoliciesOutput::builder().build()),
        );
        let mut cloudwatch = self.cloudwatch.clone();
        cloudwatch.push(
            mock!(aws_sdk_cloudwatch::Client::get_metric_data)
                .then_output(|| GetMetricDataOutput::builder().build()),
        );
        let mut ec2 = self.ec2.clone();
        ec2.push(
            mock!(aws_sdk_ec2::Client::describe_instances)
                .then_output(|| DescribeInstancesOutput::builder().build()),
        );
        let mut rds = self.rds.clone();
        rds.push(
            mock!(aws_sdk_rds::Client::describe_events)
                .then_output(|| DescribeEventsOutput::builder().build()),
        );
        let mut arc = self.arc.clone();
        arc.push(
            mock!(aws_sdk_arczonalshift::Client::list_zonal_shifts)
                .then_output(|| ListZonalShiftsOutput::builder().build()),
        );
        let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &self.cfn);
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &Vec::<Rule>::new());
        let ops = OpsClients {
            autoscaling: mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, &autoscaling),
            ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &ec2),
            elb: mock_client!(
                aws_sdk_elasticloadbalancingv2,
                RuleMode::MatchAny,
                &self.elb
            ),
            rds: mock_client!(aws_sdk_rds, RuleMode::MatchAny, &rds),
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &cloudwatch),
            logs: mock_client!(
                aws_sdk_cloudwatchlogs,
                RuleMode::MatchAny,
                &Vec::<Rule>::new()
            ),
            arc: mock_client!(aws_sdk_arczonalshift, RuleMode::MatchAny, &arc),
            ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &self.ssm),
        };
        let cloud = AwsCloud::from_clients(cfn, s3)
            .with_ops_clients(ops)
            .with_polling(Polling {
                first_interval: Duration::from_millis(1),
                max_interval: Duration::from_millis(5),
                change_set_deadline: Duration::from_secs(10),
                operation_deadline: Duration::from_secs(10),
            });
        if attach {
            cloud.attached(Attachment {
                asg: GROUP.into(),
                db: Some(DB.into()),
            })
        } else {
            cloud
        }
    }
}

fn stack() -> StackRef {
    StackRef::new("shop").expect("valid name")
}

fn group(template_version: &str) -> asg::AutoScalingGroup {
    let instances = INSTANCES.iter().map(|(id, az)| {
        asg::Instance::builder()
            .instance_id(*id)
            .availability_zone(*az)
            .lifecycle_state(asg::LifecycleState::InService)
            .health_status("Healthy")
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_id("lt-1")
                    .version(template_version)
                    .build(),
            )
            .protected_from_scale_in(false)
            .build()
    });
    asg::AutoScalingGroup::builder()
        .auto_scaling_group_name(GROUP)
        .auto_scaling_group_arn(GROUP_ARN)
        .availability_zone_impairment_policy(
            asg::AvailabilityZoneImpairmentPolicy::builder()
                .zonal_shift_enabled(true)
                .impaired_zone_health_check_behavior(
                    asg::ImpairedZoneHealthCheckBehavior::IgnoreUnhealthy,
                )
                .build(),
        )
        .min_size(3)
        .max_size(6)
        .desired_capacity(4)
        .set_availability_zones(Some(AZS.iter().map(|a| (*a).to_owned()).collect()))
        .vpc_zone_identifier("subnet-a,subnet-b,subnet-c")
        .target_group_arns(TARGET_GROUP)
        .launch_template(
            asg::LaunchTemplateSpecification::builder()
                .launch_template_id("lt-1")
                .version(template_version)
                .build(),
        )
        .set_instances(Some(instances.collect()))
        .build()
}

fn group_rule(template_version: &'static str) -> Rule {
    mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(move || {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(group(template_version))
            .build()
    })
}

fn subnets_rule() -> Rule {
    mock!(aws_sdk_ec2::Client::describe_subnets).then_output(|| {
        let subnets = ["a", "b", "c"].map(|letter| {
            aws_sdk_ec2::types::Subnet::builder()
                .subnet_id(format!("subnet-{letter}"))
                .availability_zone(format!("eu-west-1{letter}"))
                .vpc_id("vpc-1")
                .build()
        });
        DescribeSubnetsOutput::builder()
            .set_subnets(Some(subnets.to_vec()))
            .build()
    })
}

fn target_groups_rule() -> Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_groups).then_output(|| {
        DescribeTargetGroupsOutput::builder()
            .target_groups(
                elb::TargetGroup::builder()
                    .target_group_arn(TARGET_GROUP)
                    .load_balancer_arns(LOAD_BALANCER)
                    .build(),
            )
            .build()
    })
}

fn load_balancers_rule() -> Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_load_balancers).then_output(|| {
        DescribeLoadBalancersOutput::builder()
            .load_balancers(
                elb::LoadBalancer::builder()
                    .load_balancer_arn(LOAD_BALANCER)
                    .dns_name("web-1234.eu-west-1.elb.amazonaws.com")
                    .build(),
            )
            .build()
    })
}

/// Every instance registered; the one in eu-west-1b failing its health checks.
fn target_health_rule() -> Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_health).then_output(|| {
        let descriptions = INSTANCES.iter().map(|(id, az)| {
            let health = if *az == "eu-west-1b" {
                elb::TargetHealth::builder()
                    .state(elb::TargetHealthStateEnum::Unhealthy)
                    .reason(elb::TargetHealthReasonEnum::Timeout)
                    .description("Request timed out")
                    .build()
            } else {
                elb::TargetHealth::builder()
                    .state(elb::TargetHealthStateEnum::Healthy)
                    .build()
            };
            elb::TargetHealthDescription::builder()
                .target(elb::TargetDescription::builder().id(*id).port(8080).build())
                .target_health(health)
                .build()
        });
        DescribeTargetHealthOutput::builder()
            .set_target_health_descriptions(Some(descriptions.collect()))
            .build()
    })
}

fn db(primary: &str, standby: &str) -> aws_sdk_rds::types::DbInstance {
    aws_sdk_rds::types::DbInstance::builder()
        .db_instance_identifier(DB)
        .db_instance_status("available")
        .availability_zone(primary)
        .secondary_availability_zone(standby)
        .multi_az(true)
        .build()
}

fn db_rule(primary: &'static str, standby: &'static str) -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_instances).then_output(move || {
        DescribeDbInstancesOutput::builder()
            .db_instances(db(primary, standby))
            .build()
    })
}

fn error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn refresh(id: &str, status: asg::InstanceRefreshStatus, percent: i32) -> asg::InstanceRefresh {
    asg::InstanceRefresh::builder()
        .instance_refresh_id(id)
        .auto_scaling_group_name(GROUP)
        .status(status)
        .percentage_complete(percent)
        .instances_to_update(4 - percent * 4 / 100)
        .start_time(DateTime::from_secs(1_700_000_000))
        .build()
}

/// Instances in three AZs give three columns, each with its instances, targets and
/// database role, and the capacity check lets a fault of one AZ through.
/// Moto gap: moto puts every instance of a group in its first subnet.
#[tokio::test]
async fn instances_spread_over_three_azs_fill_three_columns() {
    let cloud = Rules::attached().cloud(true);
    let snapshot = cloud.snapshot(&stack()).await.expect("snapshot");

    let columns: Vec<(&str, usize, usize)> = snapshot
        .azs
        .iter()
        .map(|v| (v.az.as_str(), v.instances.len(), v.healthy_capacity()))
        .collect();
    assert_eq!(
        columns,
        [
            ("eu-west-1a", 2, 2),
            ("eu-west-1b", 1, 0),
            ("eu-west-1c", 1, 1)
        ]
    );
    let b = snapshot.az("eu-west-1b").expect("az");
    assert_eq!(b.targets[0].state, TargetState::Unhealthy);
    assert_eq!(b.targets[0].reason, Some(TargetReason::Timeout));
    assert_eq!(
        b.targets[0].description.as_deref(),
        Some("Request timed out")
    );
    assert_eq!(snapshot.db_primary_az(), Some("eu-west-1a"));
    assert_eq!(snapshot.db_standby_az(), Some("eu-west-1b"));
    assert_eq!(
        snapshot.endpoint.as_deref(),
        Some("http://web-1234.eu-west-1.elb.amazonaws.com")
    );
    assert_eq!(snapshot.enabled_azs, AZS);

    let fault = Fault::BlackholeAz {
        az: "eu-west-1a".into(),
    };
    let az = check_fault(&snapshot, &fault, &[], CapacityCheck::Enforce)
        .expect("eu-west-1c still serves");
    assert_eq!(az, "eu-west-1a");
    let fault = Fault::TerminateAz {
        az: "eu-west-1c".into(),
    };
    check_fault(&snapshot, &fault, &[], CapacityCheck::Enforce).expect("eu-west-1a serves");
}

fn metrics_rule(calls: Arc<AtomicUsize>) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |request| {
        calls.fetch_add(1, Ordering::SeqCst);
        // Two pages: the first half of the queries, then the rest.
        let queries = request.metric_data_queries();
        let half = queries.len() / 2;
        let (range, next) = match request.next_token() {
            None => (0..half, Some("page-2")),
            Some(_) => (half..queries.len(), None),
        };
        let results = queries[range].iter().map(|query| {
            let stat = query.metric_stat().expect("a metric stat");
            let metric = stat.metric().expect("a metric");
            let az = metric
                .dimensions()
                .iter()
                .find(|d| d.name() == Some("AvailabilityZone"))
                .and_then(|d| d.value())
                .unwrap_or("-");
            let value = match (metric.metric_name(), stat.stat(), az) {
                (Some("RequestCount"), _, "eu-west-1a") => 120.0,
                (Some("TargetResponseTime"), Some("p99"), "eu-west-1b") => 0.25,
                (Some("CPUUtilization"), _, _) => 37.5,
                _ => 1.0,
            };
            MetricDataResult::builder()
                .id(query.id().expect("an id"))
                .timestamps(DateTime::from_secs(1_700_000_000))
                .timestamps(DateTime::from_secs(1_700_000_060))
                .values(value)
                .values(value * 2.0)
                .build()
        });
        GetMetricDataOutput::builder()
            .set_metric_data_results(Some(results.collect()))
            .set_next_token(next.map(str::to_owned))
            .build()
    })
}

/// One batched GetMetricData (paged) becomes per-AZ and stack-wide series in the port's
/// units, oldest point first; a watch reads metrics once per period, not every tick.
/// Moto gap: the current CloudWatch SDK speaks RPC v2 CBOR, which moto answers with 404.
#[tokio::test]
async fn get_metric_data_is_read_once_per_period_into_series() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut rules = Rules::attached();
    rules.cloudwatch.push(metrics_rule(calls.clone()));
    let cloud = rules.cloud(true);
    let mut watch = cloud.watch(&stack(), Duration::from_millis(1));
    let snapshot = watch.next().await.expect("tick").expect("snapshot");
    assert!(
        snapshot
            .errors
            .iter()
            .all(|e| e.section != Section::Metrics),
        "{:?}",
        snapshot.errors
    );
    let metrics = &snapshot.metrics;
    assert_eq!(metrics.period_seconds, 60);
    let requests = metrics
        .series(MetricKind::Requests, Some("eu-west-1a"))
        .expect("requests in eu-west-1a");
    let values: Vec<f64> = requests.points.iter().map(|p| p.value).collect();
    assert_eq!(values, [120.0, 240.0]);
    assert!(requests.points[0].at < requests.points[1].at);
    let p99 = metrics
        .series(MetricKind::LatencyP99, Some("eu-west-1b"))
        .expect("p99 in eu-west-1b");
    assert_eq!(p99.points[0].value, 250.0, "seconds become milliseconds");
    assert_eq!(MetricKind::LatencyP99.unit(), MetricUnit::Milliseconds);
    let cpu = metrics
        .series(MetricKind::Cpu, None)
        .expect("stack-wide cpu");
    assert_eq!(cpu.points[0].value, 37.5);
    for kind in [
        MetricKind::HealthyHosts,
        MetricKind::Lb5xx,
        MetricKind::Target5xx,
    ] {
        for az in AZS {
            assert!(metrics.series(kind, Some(az)).is_some(), "{kind:?} {az}");
        }
    }
    assert!(metrics.series(MetricKind::DbConnections, None).is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one query, two pages");

    let next = watch.next().await.expect("tick").expect("snapshot");
    assert_eq!(
        next.metrics, snapshot.metrics,
        "the last metrics are shown again"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "not read again within the period"
    );
}

/// CloudWatch denied: the metrics section says so, and every other section is there.
/// Moto gap: moto enforces no IAM policy (and cannot answer CloudWatch at all).
#[tokio::test]
async fn a_denied_cloudwatch_is_a_metrics_error_and_the_rest_is_shown() {
    let mut rules = Rules::attached();
    rules.cloudwatch.push(
        mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
            GetMetricDataError::generic(error(
                "AccessDenied",
                "User is not authorized to perform: cloudwatch:GetMetricData",
            ))
        }),
    );
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_scaling_activities).then_output(|| {
            DescribeScalingActivitiesOutput::builder()
                .activities(
                    asg::Activity::builder()
                        .activity_id("a-1")
                        .auto_scaling_group_name(GROUP)
                        .description("Launching a new EC2 instance: i-0c1")
                        .cause("replacing an unhealthy instance")
                        .start_time(DateTime::from_secs(1_700_000_100))
                        .status_code(asg::ScalingActivityStatusCode::Successful)
                        .details(r#"{"Subnet ID":"subnet-c","Availability Zone":"eu-west-1c"}"#)
                        .build(),
                )
                .build()
        }),
    );
    let snapshot = Rules::cloud(&rules, true)
        .snapshot(&stack())
        .await
        .expect("snapshot");
    assert_eq!(snapshot.errors.len(), 1, "{:?}", snapshot.errors);
    let error = snapshot.error_for(Section::Metrics).expect("metrics error");
    assert!(error.message.contains("AccessDenied"), "{error}");
    assert!(
        error.to_string().starts_with("metrics unavailable: "),
        "{error}"
    );
    assert_eq!(snapshot.azs.len(), 3);
    assert_eq!(snapshot.events.len(), 1);
    assert_eq!(snapshot.events[0].az.as_deref(), Some("eu-west-1c"));
    assert_eq!(snapshot.events[0].source, EventSource::Scaling);
}

/// Every status Auto Scaling gives a refresh maps to the port's status of the same name, with
/// progress, preferences and rollback details.
/// Moto gap: moto answers DescribeInstanceRefreshes with HTTP 500.
#[tokio::test]
async fn every_refresh_status_is_mapped() {
    use asg::InstanceRefreshStatus as S;
    let statuses = [
        (S::Pending, RefreshStatus::Pending),
        (S::InProgress, RefreshStatus::InProgress),
        (S::Successful, RefreshStatus::Successful),
        (S::Failed, RefreshStatus::Failed),
        (S::Cancelling, RefreshStatus::Cancelling),
        (S::Cancelled, RefreshStatus::Cancelled),
        (S::RollbackInProgress, RefreshStatus::RollbackInProgress),
        (S::RollbackFailed, RefreshStatus::RollbackFailed),
        (S::RollbackSuccessful, RefreshStatus::RollbackSuccessful),
        (S::Baking, RefreshStatus::Baking),
    ];
    let mut rules = Rules::attached();
    let sdk_statuses: Vec<S> = statuses.iter().map(|(s, _)| s.clone()).collect();
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes).then_output(move || {
            let mut refreshes: Vec<asg::InstanceRefresh> = sdk_statuses
                .iter()
                .enumerate()
                .map(|(i, status)| refresh(&format!("r-{i}"), status.clone(), 50))
                .collect();
            refreshes.push(refresh("r-unknown", S::from("Exploding"), 0));
            let prefs = asg::RefreshPreferences::builder()
                .min_healthy_percentage(100)
                .max_healthy_percentage(150)
                .checkpoint_percentages(50)
                .checkpoint_percentages(100)
                .checkpoint_delay(600)
                .auto_rollback(true)
                .skip_matching(true)
                .alarm_specification(asg::AlarmSpecification::builder().alarms("web-5xx").build())
                .build();
            refreshes[0] = asg::InstanceRefresh::builder()
                .instance_refresh_id("r-0")
                .status(S::Pending)
                .preferences(prefs)
                .desired_configuration(
                    asg::DesiredConfiguration::builder()
                        .launch_template(
                            asg::LaunchTemplateSpecification::builder()
                                .launch_template_id("lt-1")
                                .version("4")
                                .build(),
                        )
                        .build(),
                )
                .rollback_details(
                    asg::RollbackDetails::builder()
                        .rollback_reason("alarm web-5xx fired")
                        .percentage_complete_on_rollback(25)
                        .instances_to_update_on_rollback(3)
                        .build(),
                )
                .build();
            DescribeInstanceRefreshesOutput::builder()
                .set_instance_refreshes(Some(refreshes))
                .build()
        }),
    );
    let snapshot = rules
        .cloud(true)
        .snapshot(&stack())
        .await
        .expect("snapshot");
    let mapped: Vec<RefreshStatus> = snapshot.refreshes.iter().map(|r| r.status).collect();
    let expected: Vec<RefreshStatus> = statuses.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        mapped, expected,
        "an unknown status is left out, the rest kept in order"
    );
    let first = &snapshot.refreshes[0];
    assert_eq!(first.desired_launch_template_version.as_deref(), Some("4"));
    let prefs = first.preferences.as_ref().expect("preferences");
    assert_eq!(prefs.min_healthy_percentage, 100);
    assert_eq!(prefs.max_healthy_percentage, 150);
    assert_eq!(prefs.checkpoint_percentages, [50, 100]);
    assert_eq!(prefs.checkpoint_delay_seconds, Some(600));
    assert!(prefs.auto_rollback && prefs.skip_matching);
    assert_eq!(prefs.alarms, ["web-5xx"]);
    let rollback = first.rollback.as_ref().expect("rollback details");
    assert_eq!(rollback.reason.as_deref(), Some("alarm web-5xx fired"));
    assert_eq!(rollback.percentage_complete_on_rollback, Some(25));
    assert_eq!(rollback.instances_to_update_on_rollback, Some(3));
    let second = &snapshot.refreshes[1];
    assert_eq!(second.percentage_complete, Some(50));
    assert_eq!(second.instances_to_update, Some(2));
    assert_eq!(
        snapshot.active_refresh().map(|r| r.id.0.as_str()),
        Some("r-0")
    );
}

/// A deploy to an attached group makes a launch template version and starts a refresh onto
/// it with the request's preferences; a second one while a refresh runs is a conflict.
/// Moto gap: moto answers StartInstanceRefresh with HTTP 500.
#[tokio::test]
async fn a_deploy_starts_a_refresh_onto_a_new_launch_template_version() {
    let started: Arc<Mutex<Vec<(String, String, RefreshPreferences)>>> = Arc::default();
    let seen = started.clone();
    let mut rules = Rules::attached();
    rules.ec2.push(
        mock!(aws_sdk_ec2::Client::describe_launch_template_versions)
            .match_requests(|r| r.launch_template_id() == Some("lt-1") && r.versions() == ["3"])
            .then_output(|| {
                DescribeLaunchTemplateVersionsOutput::builder()
                    .launch_template_versions(
                        aws_sdk_ec2::types::LaunchTemplateVersion::builder()
                            .launch_template_id("lt-1")
                            .version_number(3)
                            .launch_template_data(
                                aws_sdk_ec2::types::ResponseLaunchTemplateData::builder()
                                    // Someone else's user data, without triad's env file.
                                    .user_data("IyEvYmluL2Jhc2gKZWNobyBoaQo=")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }),
    );
    rules.ec2.push(
        mock!(aws_sdk_ec2::Client::create_launch_template_version)
            .match_requests(|r| {
                r.launch_template_id() == Some("lt-1")
                    && r.source_version() == Some("3")
                    && r.version_description() == Some("triad deploy 2.1.0")
            })
            .then_output(|| {
                CreateLaunchTemplateVersionOutput::builder()
                    .launch_template_version(
                        aws_sdk_ec2::types::LaunchTemplateVersion::builder()
                            .launch_template_id("lt-1")
                            .version_number(4)
                            .build(),
                    )
                    .build()
            }),
    );
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::start_instance_refresh)
            .sequence()
            .output(move || {
                StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-new")
                    .build()
            })
            .error(|| {
                StartInstanceRefreshError::generic(error(
                    "InstanceRefreshInProgress",
                    "An Instance Refresh is already in progress and blocks the execution of \
                     this Instance Refresh.",
                ))
            })
            .build(),
    );
    // Record what each StartInstanceRefresh asked for.
    rules.autoscaling.insert(
        0,
        mock!(aws_sdk_autoscaling::Client::start_instance_refresh)
            .match_requests(move |r| {
                let template = r
                    .desired_configuration()
                    .and_then(|c| c.launch_template())
                    .expect("a desired configuration");
                let prefs = r.preferences().expect("preferences");
                seen.lock().expect("lock").push((
                    template.launch_template_id().unwrap_or_default().to_owned(),
                    template.version().unwrap_or_default().to_owned(),
                    RefreshPreferences {
                        min_healthy_percentage: prefs.min_healthy_percentage().unwrap_or(0) as u8,
                        checkpoint_percentages: prefs
                            .checkpoint_percentages()
                            .iter()
                            .map(|p| *p as u8)
                            .collect(),
                        auto_rollback: prefs.auto_rollback().unwrap_or(false),
                        ..RefreshPreferences::default()
                    },
                ));
                false
            })
            .then_output(|| StartInstanceRefreshOutput::builder().build()),
    );
    let cloud = rules.cloud(true);
    let mut request = DeployRequest::new("2.1.0");
    request.preferences.min_healthy_percentage = 100;
    request.preferences.max_healthy_percentage = 200;
    request.preferences.checkpoint_percentages = vec![50, 100];
    request.preferences.auto_rollback = true;

    let id = cloud.deploy(&stack(), &request).await.expect("deploy");
    assert_eq!(id, RefreshId("r-new".into()));
    let asked = started.lock().expect("lock").clone();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].0.as_str(), asked[0].1.as_str()), ("lt-1", "4"));
    assert_eq!(asked[0].2.min_healthy_percentage, 100);
    assert_eq!(asked[0].2.checkpoint_percentages, [50, 100]);
    assert!(asked[0].2.auto_rollback);

    let conflict = cloud
        .deploy(&stack(), &request)
        .await
        .expect_err("one at a time");
    assert!(
        matches!(conflict, CloudError::Conflict { .. }),
        "{conflict}"
    );
    assert!(
        conflict.to_string().contains("already in progress"),
        "{conflict}"
    );

    deploy_with_env_is_refused(&cloud, "2.1.1", "no environment file section").await;
    assert_eq!(
        started.lock().expect("lock").len(),
        2,
        "the two deploys before it started refreshes, this one none"
    );
}

/// Cancel and rollback return the refresh's id; Auto Scaling's refusals map to the port's
/// errors for them (`RefreshRefusal`): no active refresh is NotFound, an irreversible one
/// Refused, as on the memory and sandbox backends.
/// Moto gap: moto answers CancelInstanceRefresh and RollbackInstanceRefresh with HTTP 500.
#[tokio::test]
async fn cancel_and_rollback_name_the_refresh_and_none_active_is_not_found() {
    let mut rules = Rules::attached();
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::cancel_instance_refresh)
            .sequence()
            .output(|| {
                CancelInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-7")
                    .build()
            })
            .error(|| {
                CancelInstanceRefreshError::generic(error(
                    "ActiveInstanceRefreshNotFound",
                    "No in progress or pending Instance Refresh found for Auto Scaling group web",
                ))
            })
            .build(),
    );
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::rollback_instance_refresh)
            .match_requests(|r| r.auto_scaling_group_name() == Some(GROUP))
            .sequence()
            .output(|| {
                RollbackInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-8")
                    .build()
            })
            .error(|| {
                RollbackInstanceRefreshError::generic(error(
                    "IrreversibleInstanceRefresh",
                    "The instance refresh cannot be rolled back",
                ))
            })
            .error(|| {
                RollbackInstanceRefreshError::generic(error(
                    "ActiveInstanceRefreshNotFound",
                    "No in progress or pending Instance Refresh found for Auto Scaling group web",
                ))
            })
            .build(),
    );
    let cloud = rules.cloud(true);
    assert_eq!(
        cloud.cancel_refresh(&stack()).await.expect("cancel"),
        RefreshId("r-7".into())
    );
    let none = cloud
        .cancel_refresh(&stack())
        .await
        .expect_err("nothing active");
    assert!(matches!(none, CloudError::NotFound { .. }), "{none}");
    assert_eq!(
        cloud.rollback_refresh(&stack()).await.expect("rollback"),
        RefreshId("r-8".into())
    );
    // The same refusals, the same errors as the memory and sandbox backends give.
    let irreversible = cloud
        .rollback_refresh(&stack())
        .await
        .expect_err("irreversible");
    assert!(
        matches!(irreversible, CloudError::Refused { .. }),
        "{irreversible}"
    );
    let none = cloud
        .rollback_refresh(&stack())
        .await
        .expect_err("nothing active");
    assert!(matches!(none, CloudError::NotFound { .. }), "{none}");
}

/// The waiter yields each change of the refresh and ends at its terminal status, also when
/// that is a rollback's.
/// Moto gap: moto answers DescribeInstanceRefreshes with HTTP 500.
#[tokio::test]
async fn the_waiter_follows_a_refresh_to_its_terminal_status() {
    use asg::InstanceRefreshStatus as S;
    for (steps, last) in [
        (
            vec![
                (S::Pending, 0),
                (S::InProgress, 50),
                (S::InProgress, 50),
                (S::Successful, 100),
            ],
            RefreshStatus::Successful,
        ),
        (
            vec![
                (S::InProgress, 25),
                (S::RollbackInProgress, 25),
                (S::RollbackSuccessful, 25),
            ],
            RefreshStatus::RollbackSuccessful,
        ),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let answers = steps.clone();
        let mut rules = Rules::attached();
        rules.autoscaling.push(
            mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
                .match_requests(|r| r.instance_refresh_ids() == ["r-1"])
                .then_compute_output(move |_| {
                    let n = counter
                        .fetch_add(1, Ordering::SeqCst)
                        .min(answers.len() - 1);
                    let (status, percent) = answers[n].clone();
                    DescribeInstanceRefreshesOutput::builder()
                        .instance_refreshes(refresh("r-1", status, percent))
                        .build()
                }),
        );
        let cloud = rules.cloud(true);
        let updates: Vec<Refresh> = cloud
            .wait_refresh(&stack(), &RefreshId("r-1".into()))
            .map(|r| r.expect("update"))
            .collect()
            .await;
        let seen: Vec<RefreshStatus> = updates.iter().map(|r| r.status).collect();
        let mut expected: Vec<RefreshStatus> = Vec::new();
        for (status, _) in &steps {
            let status: RefreshStatus = status.as_str().parse().expect("known");
            if expected.last() != Some(&status) {
                expected.push(status);
            }
        }
        assert_eq!(seen, expected, "an unchanged answer is not repeated");
        assert_eq!(seen.last(), Some(&last));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            steps.len(),
            "stops at the terminal one"
        );
    }
}

/// After a failover the primary is in the old standby's AZ and the standby in the old
/// primary's; the record says where it failed over from and to.
/// Moto gap: moto leaves SecondaryAvailabilityZone empty and ForceFailover changes nothing.
#[tokio::test]
async fn a_failover_moves_the_primary_to_the_standby_az() {
    let mut rules = Rules::attached();
    rules.rds = vec![
        mock!(aws_sdk_rds::Client::describe_db_instances)
            .sequence()
            .output(|| {
                DescribeDbInstancesOutput::builder()
                    .db_instances(db("eu-west-1a", "eu-west-1b"))
                    .build()
            })
            .output(|| {
                DescribeDbInstancesOutput::builder()
                    .db_instances(db("eu-west-1b", "eu-west-1a"))
                    .build()
            })
            .repeatedly()
            .build(),
        mock!(aws_sdk_rds::Client::reboot_db_instance)
            .match_requests(|r| {
                r.db_instance_identifier() == Some(DB) && r.force_failover() == Some(true)
            })
            .then_output(|| RebootDbInstanceOutput::builder().build()),
    ];
    let cloud = rules.cloud(true);
    let record = cloud
        .inject(&stack(), &Fault::FailoverDb, CapacityCheck::Enforce)
        .await
        .expect("inject");
    assert_eq!(
        record.changes,
        [FaultChange::Aws(AwsChange::DbRebootedWithFailover {
            db_instance_id: DB.into(),
            from_az: "eu-west-1a".into(),
            to_az: Some("eu-west-1b".into()),
        })]
    );
    let snapshot = cloud.snapshot(&stack()).await.expect("snapshot");
    assert_eq!(snapshot.db_primary_az(), Some("eu-west-1b"));
    assert_eq!(snapshot.db_standby_az(), Some("eu-west-1a"));
}

/// A change set parameter as asked for: key, value, UsePreviousValue.
type AskedParameter = (String, Option<String>, Option<bool>);

/// A deploy of a triad stack changes only its AppVersion parameter, through a change set that
/// keeps the template and every other parameter, executes it, and starts the refresh onto the
/// launch template version the group then uses.
/// Moto gap: moto does not re-evaluate `GetAtt LatestVersionNumber` for the group when a
/// stack update changes the launch template.
#[tokio::test]
async fn a_triad_stack_deploy_updates_the_version_parameter_through_a_change_set() {
    let describes = Arc::new(AtomicUsize::new(0));
    let counter = describes.clone();
    let stack_rule =
        mock!(aws_sdk_cloudformation::Client::describe_stacks).then_compute_output(move |_| {
            // Three reads before the change set is executed, then one mid-update.
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = if n == 3 {
                cfn::StackStatus::UpdateInProgress
            } else {
                cfn::StackStatus::UpdateComplete
            };
            let parameters = ["AppVersion", "AmiId", "ArtefactBucket"].map(|key| {
                cfn::Parameter::builder()
                    .parameter_key(key)
                    .parameter_value("old")
                    .build()
            });
            DescribeStacksOutput::builder()
                .stacks(
                    cfn::Stack::builder()
                        .stack_name("shop")
                        .stack_id("arn:aws:cloudformation:eu-west-1:123456789012:stack/shop/1")
                        .stack_status(status)
                        .set_parameters(Some(parameters.to_vec()))
                        .build(),
                )
                .build()
        });
    let resources = mock!(aws_sdk_cloudformation::Client::list_stack_resources).then_output(|| {
        let summary = |kind: &str, id: &str| {
            cfn::StackResourceSummary::builder()
                .resource_type(kind)
                .physical_resource_id(id)
                .logical_resource_id(kind.rsplit(':').next().unwrap_or(kind))
                .build()
        };
        ListStackResourcesOutput::builder()
            .stack_resource_summaries(summary("AWS::AutoScaling::AutoScalingGroup", GROUP))
            .stack_resource_summaries(summary(
                "AWS::ElasticLoadBalancingV2::TargetGroup",
                TARGET_GROUP,
            ))
            .stack_resource_summaries(summary(
                "AWS::ElasticLoadBalancingV2::LoadBalancer",
                LOAD_BALANCER,
            ))
            .stack_resource_summaries(summary("AWS::RDS::DBInstance", DB))
            .build()
    });
    let asked: Arc<Mutex<Vec<AskedParameter>>> = Arc::default();
    let record = asked.clone();
    let create = mock!(aws_sdk_cloudformation::Client::create_change_set)
        .match_requests(move |r| {
            assert_eq!(r.use_previous_template(), Some(true));
            assert_eq!(r.template_body(), None);
            let mut seen = record.lock().expect("lock");
            seen.clear();
            seen.extend(r.parameters().iter().map(|p| {
                (
                    p.parameter_key().unwrap_or_default().to_owned(),
                    p.parameter_value().map(str::to_owned),
                    p.use_previous_value(),
                )
            }));
            true
        })
        .then_output(|| CreateChangeSetOutput::builder().id("cs-1").build());
    let describe = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_output(|| {
        DescribeChangeSetOutput::builder()
            .status(cfn::ChangeSetStatus::CreateComplete)
            .changes(
                cfn::Change::builder()
                    .resource_change(
                        cfn::ResourceChange::builder()
                            .action(cfn::ChangeAction::Modify)
                            .logical_resource_id("WebLaunchTemplate")
                            .resource_type("AWS::EC2::LaunchTemplate")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .match_requests(|r| r.change_set_name() == Some("cs-1"))
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let events = mock!(aws_sdk_cloudformation::Client::describe_stack_events)
        .then_output(|| DescribeStackEventsOutput::builder().build());

    let mut rules = Rules::attached();
    rules.cfn = vec![
        stack_rule,
        resources,
        create.clone(),
        describe,
        execute.clone(),
        events,
    ];
    // After the update the group uses launch template version 5.
    rules.autoscaling = vec![
        group_rule("5"),
        mock!(aws_sdk_autoscaling::Client::start_instance_refresh)
            .match_requests(|r| {
                r.desired_configuration()
                    .and_then(|c| c.launch_template())
                    .and_then(|t| t.version())
                    == Some("5")
            })
            .then_output(|| {
                StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-stack")
                    .build()
            }),
    ];
    let cloud = rules.cloud(false);
    let id = cloud
        .deploy(&stack(), &DeployRequest::new("2.2.0"))
        .await
        .expect("deploy");
    assert_eq!(id, RefreshId("r-stack".into()));
    assert_eq!(execute.num_calls(), 1);
    let parameters = asked.lock().expect("lock").clone();
    assert_eq!(
        parameters,
        [
            ("AppVersion".to_owned(), Some("2.2.0".to_owned()), None),
            ("AmiId".to_owned(), None, Some(true)),
            ("ArtefactBucket".to_owned(), None, Some(true)),
        ]
    );

    // Environment overrides are refused on a triad stack, before any change set.
    deploy_with_env_is_refused(&cloud, "2.2.1", "belongs to CloudFormation").await;
    assert_eq!(create.num_calls(), 1, "no second change set");
}

/// A throttled watch reports the throttled section and waits longer between ticks (doubling)
/// until a tick goes through.
/// Moto gap: moto never throttles.
#[tokio::test(start_paused = true)]
async fn a_throttled_watch_backs_off() {
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsError;
    let mut rules = Rules::attached();
    rules.autoscaling = vec![
        mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .sequence()
            .output(|| {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(group("3"))
                    .build()
            })
            .error(|| DescribeAutoScalingGroupsError::generic(error("Throttling", "Rate exceeded")))
            // The SDK itself tries each call three times: three ticks' worth.
            .times(9)
            .output(|| {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(group("3"))
                    .build()
            })
            .repeatedly()
            .build(),
    ];
    let cloud = rules.cloud(true);
    let interval = Duration::from_secs(2);
    let mut watch = cloud.watch(&stack(), interval);
    let mut at = Vec::new();
    let mut throttled = Vec::new();
    for _ in 0..5 {
        let snapshot = watch.next().await.expect("tick").expect("snapshot");
        at.push(tokio::time::Instant::now());
        throttled.push(
            snapshot
                .error_for(Section::Capacity)
                .is_some_and(|e| e.message.contains("throttled")),
        );
    }
    assert_eq!(throttled, [true, true, true, false, false]);
    let gaps: Vec<u64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    // Each throttled tick also spends the SDK's own retry backoff (under 4 s) after its wait.
    assert!((4..8).contains(&gaps[0]), "{gaps:?}");
    assert!((8..12).contains(&gaps[1]), "{gaps:?}");
    assert_eq!(
        gaps[2..],
        [16, 2],
        "doubling while throttled, back to the interval after"
    );
}

/// A watch notices a checkpoint when the refresh's PercentageComplete goes past a checkpoint
/// percentage between two ticks, and shows it as reached then, resuming after the
/// CheckpointDelay; a single snapshot that did not see the crossing shows none.
/// Moto gap: moto answers DescribeInstanceRefreshes with HTTP 500.
#[tokio::test]
async fn a_watch_shows_the_checkpoint_a_refresh_went_past() {
    use asg::InstanceRefreshStatus as S;
    let mut rules = Rules::attached();
    let with_prefs = |percent: i32| {
        let mut refresh = refresh("r-1", S::InProgress, percent);
        refresh.preferences = Some(
            asg::RefreshPreferences::builder()
                .checkpoint_percentages(50)
                .checkpoint_percentages(100)
                .checkpoint_delay(600)
                .build(),
        );
        DescribeInstanceRefreshesOutput::builder()
            .instance_refreshes(refresh)
            .build()
    };
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
            .sequence()
            .output(move || with_prefs(25))
            .output(move || with_prefs(50))
            .repeatedly()
            .build(),
    );
    let cloud = rules.cloud(true);
    let mut watch = cloud.watch(&stack(), Duration::from_millis(1));
    let before = watch.next().await.expect("tick").expect("snapshot");
    assert_eq!(before.refreshes[0].percentage_complete, Some(25));
    assert_eq!(before.refreshes[0].checkpoint, None);
    let reached = watch.next().await.expect("tick").expect("snapshot");
    let checkpoint = reached.refreshes[0]
        .checkpoint
        .clone()
        .expect("50 % was passed between the ticks");
    assert_eq!(checkpoint.percentage, 50);
    assert_eq!(checkpoint.reached_at, reached.taken_at);
    assert_eq!(
        checkpoint.resumes_at,
        Some(reached.taken_at + time::Duration::seconds(600))
    );
    let still = watch.next().await.expect("tick").expect("snapshot");
    assert_eq!(
        still.refreshes[0].checkpoint,
        Some(checkpoint),
        "the same checkpoint until its delay is over"
    );

    let single = cloud.snapshot(&stack()).await.expect("snapshot");
    assert_eq!(single.refreshes[0].percentage_complete, Some(50));
    assert_eq!(single.refreshes[0].checkpoint, None, "no crossing seen");
}

/// The database's RDS events are read once per events period (shown again in between) and
/// merged with the scaling activities, newest first; a denied DescribeEvents is an events
/// error while the activities are still shown.
/// Moto gap: moto enforces no IAM policy, and waiting out the period needs paused time, which
/// a real server's HTTP timeouts do not allow.
#[tokio::test(start_paused = true)]
async fn database_events_are_read_once_per_period_and_merged_newest_first() {
    let mut rules = Rules::attached();
    rules.rds.push(
        mock!(aws_sdk_rds::Client::describe_events)
            .match_requests(|r| {
                r.source_identifier() == Some(DB)
                    && r.source_type() == Some(&aws_sdk_rds::types::SourceType::DbInstance)
                    && r.duration() == Some(60)
            })
            .sequence()
            .output(|| {
                DescribeEventsOutput::builder()
                    .events(
                        aws_sdk_rds::types::Event::builder()
                            .source_identifier(DB)
                            .message("Multi-AZ instance failover started.")
                            .date(DateTime::from_secs(1_700_000_050))
                            .build(),
                    )
                    .events(
                        aws_sdk_rds::types::Event::builder()
                            .source_identifier(DB)
                            .message("Multi-AZ instance failover completed.")
                            .date(DateTime::from_secs(1_700_000_200))
                            .build(),
                    )
                    .build()
            })
            .error(|| {
                DescribeEventsError::generic(error(
                    "AccessDenied",
                    "User is not authorized to perform: rds:DescribeEvents",
                ))
            })
            .repeatedly()
            .build(),
    );
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_scaling_activities).then_output(|| {
            DescribeScalingActivitiesOutput::builder()
                .activities(
                    asg::Activity::builder()
                        .activity_id("a-1")
                        .auto_scaling_group_name(GROUP)
                        .description("Launching a new EC2 instance: i-0c1")
                        .start_time(DateTime::from_secs(1_700_000_100))
                        .status_code(asg::ScalingActivityStatusCode::Successful)
                        .build(),
                )
                .build()
        }),
    );
    let describe_events = rules.rds.last().cloned().expect("the rule");
    let cloud = rules.cloud(true);
    let mut watch = cloud.watch(&stack(), Duration::from_secs(20));
    let first = watch.next().await.expect("tick").expect("snapshot");
    let seen: Vec<(EventSource, &str)> = first
        .events
        .iter()
        .map(|e| (e.source, e.message.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                EventSource::Database,
                "web-db: Multi-AZ instance failover completed."
            ),
            (EventSource::Scaling, "Launching a new EC2 instance: i-0c1"),
            (
                EventSource::Database,
                "web-db: Multi-AZ instance failover started."
            ),
        ]
    );
    let second = watch.next().await.expect("tick").expect("snapshot");
    assert_eq!(second.events, first.events, "shown again within the period");
    assert_eq!(describe_events.num_calls(), 1);

    let third = watch.next().await.expect("tick").expect("snapshot");
    assert_eq!(describe_events.num_calls(), 2, "read again after 30 s");
    let error = third.error_for(Section::Events).expect("an events error");
    assert!(error.message.contains("AccessDenied"), "{error}");
    let sources: Vec<EventSource> = third.events.iter().map(|e| e.source).collect();
    assert_eq!(
        sources,
        [EventSource::Scaling],
        "the activities are still shown"
    );
    assert!(third.azs.len() == 3 && third.error_for(Section::Instances).is_none());
}

/// Each instance's version tag, private address and launch time come from DescribeInstances
/// of the group's tagged instances, followed over every page; a denied DescribeInstances is an
/// instances error and the instances are still shown from Auto Scaling.
/// Moto gap: a page holds 1000 instances, more than moto launches in a test's time, and moto
/// enforces no IAM policy.
#[tokio::test]
async fn instance_details_are_read_over_every_page_of_the_groups_instances() {
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
    let page = |ids: &[&str], next: Option<&str>| {
        let instances = ids.iter().enumerate().map(|(n, id)| {
            aws_sdk_ec2::types::Instance::builder()
                .instance_id(*id)
                .private_ip_address(format!("10.0.1.{}", 10 + n))
                .launch_time(DateTime::from_secs(1_700_000_000))
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(provision::aws::VERSION_TAG)
                        .value("2.0.0")
                        .build(),
                )
                .build()
        });
        DescribeInstancesOutput::builder()
            .reservations(
                aws_sdk_ec2::types::Reservation::builder()
                    .set_instances(Some(instances.collect()))
                    .build(),
            )
            .set_next_token(next.map(str::to_owned))
            .build()
    };
    let mut rules = Rules::attached();
    rules.ec2.push(
        mock!(aws_sdk_ec2::Client::describe_instances)
            .match_requests(|r| {
                r.max_results() == Some(provision::aws::INSTANCES_PAGE)
                    && r.filters().iter().any(|f| {
                        f.name() == Some("tag:aws:autoscaling:groupName") && f.values() == [GROUP]
                    })
            })
            .sequence()
            .output(move || page(&["i-0a1", "i-0a2"], Some("page-2")))
            .output(move || page(&["i-0b1", "i-0c1"], None))
            .error(|| {
                DescribeInstancesError::generic(error(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                ))
            })
            .build(),
    );
    let describe = rules.ec2.last().cloned().expect("the rule");
    let cloud = rules.cloud(true);
    let snapshot = cloud.snapshot(&stack()).await.expect("snapshot");
    assert_eq!(describe.num_calls(), 2, "two pages");
    let instances: Vec<&Instance> = snapshot.azs.iter().flat_map(|v| &v.instances).collect();
    assert_eq!(instances.len(), 4);
    for instance in &instances {
        assert_eq!(instance.version.as_deref(), Some("2.0.0"), "{instance:?}");
        assert!(instance.address.is_some(), "{instance:?}");
        assert_eq!(
            instance.launch_time.map(|t| t.unix_timestamp()),
            Some(1_700_000_000)
        );
    }

    let denied = cloud.snapshot(&stack()).await.expect("snapshot");
    let error = denied
        .error_for(Section::Instances)
        .expect("an instances error");
    assert!(error.message.contains("UnauthorizedOperation"), "{error}");
    let instances: Vec<&Instance> = denied.azs.iter().flat_map(|v| &v.instances).collect();
    assert_eq!(instances.len(), 4, "still shown from Auto Scaling");
    assert!(
        instances
            .iter()
            .all(|i| i.version.is_none() && i.address.is_none())
    );
}

/// A deploy of `version` with an environment override is refused as invalid `env`, saying
/// `why`.
async fn deploy_with_env_is_refused(cloud: &AwsCloud, version: &str, why: &str) {
    let mut with_env = DeployRequest::new(version);
    with_env.env = BTreeMap::from([("FEATURE".to_owned(), "on".to_owned())]);
    let refused = cloud
        .deploy(&stack(), &with_env)
        .await
        .expect_err("environment overrides are refused here");
    assert!(
        matches!(refused, CloudError::Invalid { ref field, .. } if field == "env"),
        "{refused}"
    );
    assert!(refused.to_string().contains(why), "{refused}");
}

/// The scaling section on AWS: the group's target tracking policy from DescribePolicies, its
/// two alarms' states, thresholds and datapoints from one DescribeAlarms (their real values,
/// not the model's assumptions), the current value from the alarm's recent datapoints, and the
/// decision from the scaling activity a policy caused.
/// Moto gap: moto creates no alarms for a target tracking policy, and the Rust SDK's CloudWatch
/// protocol is not one moto serves.
#[tokio::test]
async fn the_scaling_section_shows_policies_alarms_and_the_last_decision() {
    let high = "TargetTracking-web-AlarmHigh-1a2b";
    let low = "TargetTracking-web-AlarmLow-3c4d";
    let mut rules = Rules::attached();
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_policies)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some(GROUP)
                    && r.policy_types() == ["TargetTrackingScaling".to_owned()]
            })
            .then_output(move || {
                DescribePoliciesOutput::builder()
                    .scaling_policies(
                        asg::ScalingPolicy::builder()
                            .policy_name("web-requests")
                            .policy_type("TargetTrackingScaling")
                            .target_tracking_configuration(
                                asg::TargetTrackingConfiguration::builder()
                                    .predefined_metric_specification(
                                        asg::PredefinedMetricSpecification::builder()
                                            .predefined_metric_type(
                                                asg::MetricType::AlbRequestCountPerTarget,
                                            )
                                            .resource_label("app/web/1/targetgroup/web/2")
                                            .build(),
                                    )
                                    .target_value(60.0)
                                    .build(),
                            )
                            .alarms(asg::Alarm::builder().alarm_name(high).build())
                            .alarms(asg::Alarm::builder().alarm_name(low).build())
                            .build(),
                    )
                    .build()
            }),
    );
    rules.autoscaling.push(
        mock!(aws_sdk_autoscaling::Client::describe_scaling_activities).then_output(|| {
            DescribeScalingActivitiesOutput::builder()
                .activities(
                    asg::Activity::builder()
                        .activity_id("a-2")
                        .auto_scaling_group_name(GROUP)
                        .description("Launching a new EC2 instance: i-0c1")
                        .cause(
                            "At 2023-11-14T22:15:00Z a monitor alarm \
                             TargetTracking-web-AlarmHigh-1a2b in state ALARM triggered policy \
                             web-requests changing the desired capacity from 3 to 4.  At \
                             2023-11-14T22:15:05Z an instance was started in response to a \
                             difference between desired and actual capacity, increasing the \
                             capacity from 3 to 4.",
                        )
                        .start_time(DateTime::from_secs(1_700_000_105))
                        .status_code(asg::ScalingActivityStatusCode::Successful)
                        .build(),
                )
                .build()
        }),
    );
    let names = [high.to_owned(), low.to_owned()];
    rules.cloudwatch.push(
        mock!(aws_sdk_cloudwatch::Client::describe_alarms)
            .match_requests(move |r| r.alarm_names() == names)
            .then_output(move || {
                let alarm = |name: &str, state, operator, threshold: f64, periods: i32| {
                    aws_sdk_cloudwatch::types::MetricAlarm::builder()
                        .alarm_name(name)
                        .state_value(state)
                        .comparison_operator(operator)
                        .threshold(threshold)
                        .evaluation_periods(periods)
                        .datapoints_to_alarm(periods)
                        .period(60)
                        .state_reason_data(
                            r#"{"version":"1.0","recentDatapoints":[70.0,84.0],"threshold":60.0}"#,
                        )
                        .build()
                };
                use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue};
                DescribeAlarmsOutput::builder()
                    .metric_alarms(alarm(
                        high,
                        StateValue::Alarm,
                        ComparisonOperator::GreaterThanThreshold,
                        60.0,
                        3,
                    ))
                    .metric_alarms(alarm(
                        low,
                        StateValue::Ok,
                        ComparisonOperator::LessThanThreshold,
                        54.0,
                        15,
                    ))
                    .build()
            }),
    );
    let snapshot = rules
        .cloud(true)
        .snapshot(&stack())
        .await
        .expect("snapshot");
    assert!(
        snapshot.error_for(Section::Scaling).is_none(),
        "{:?}",
        snapshot.errors
    );
    let scaling = snapshot.scaling.expect("a scaling section");
    assert_eq!(scaling.policies.len(), 1);
    let policy = &scaling.policies[0];
    assert_eq!(policy.policy.name, "web-requests");
    assert_eq!(policy.policy.metric, ScalingMetric::RequestsPerTarget);
    assert_eq!(policy.policy.target, 60.0);
    assert!(policy.policy.scale_in);
    assert_eq!(policy.current, Some(84.0));
    let alarms: Vec<(&str, AlarmState, AlarmSide, f64, u32, u32)> = policy
        .alarms
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.state,
                a.side,
                a.threshold,
                a.datapoints,
                a.period_seconds,
            )
        })
        .collect();
    assert_eq!(
        alarms,
        [
            (high, AlarmState::Alarm, AlarmSide::Above, 60.0, 3, 60),
            (low, AlarmState::Ok, AlarmSide::Below, 54.0, 15, 60),
        ]
    );
    let decision = scaling.last_decision().expect("a decision");
    assert_eq!(decision.policy, "web-requests");
    assert_eq!((decision.from, decision.to), (3, 4));
    assert_eq!(decision.direction, ScalingDirection::Out);
    assert!(decision.reason.contains(high), "{}", decision.reason);
    assert!(
        scaling.launching.is_empty(),
        "i-0c1 is already InService: {:?}",
        scaling.launching
    );
}

/// The (AZ name, AZ ID) pairs of the fixture's region, as DescribeAvailabilityZones gives them.
const ZONE_IDS: [(&str, &str); 3] = [
    ("eu-west-1a", "euw1-az3"),
    ("eu-west-1b", "euw1-az1"),
    ("eu-west-1c", "euw1-az2"),
];

fn zones_rule() -> Rule {
    mock!(aws_sdk_ec2::Client::describe_availability_zones).then_output(|| {
        DescribeAvailabilityZonesOutput::builder()
            .set_availability_zones(Some(
                ZONE_IDS
                    .iter()
                    .map(|(name, id)| {
                        aws_sdk_ec2::types::AvailabilityZone::builder()
                            .zone_name(*name)
                            .zone_id(*id)
                            .build()
                    })
                    .collect(),
            ))
            .build()
    })
}

/// The load balancer's attributes, with `zonal_shift.config.enabled` as given (left out
/// when `None`).
fn lb_attributes_rule(enabled: Option<&'static str>) -> Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_load_balancer_attributes)
        .match_requests(|r| r.load_balancer_arn() == Some(LOAD_BALANCER))
        .then_output(move || {
            let mut out = DescribeLoadBalancerAttributesOutput::builder().attributes(
                elb::LoadBalancerAttribute::builder()
                    .key("deletion_protection.enabled")
                    .value("false")
                    .build(),
            );
            if let Some(value) = enabled {
                out = out.attributes(
                    elb::LoadBalancerAttribute::builder()
                        .key("zonal_shift.config.enabled")
                        .value(value)
                        .build(),
                );
            }
            out.build()
        })
}

/// A StartZonalShift as asked for: (resource, awayFrom, expiresIn, comment).
type AskedShift = (String, String, String, String);

fn asked_shift(r: &StartZonalShiftInput) -> AskedShift {
    (
        r.resource_identifier().unwrap_or_default().to_owned(),
        r.away_from().unwrap_or_default().to_owned(),
        r.expires_in().unwrap_or_default().to_owned(),
        r.comment().unwrap_or_default().to_owned(),
    )
}

/// StartZonalShift that records each request and answers with a shift id per resource.
fn start_rule(asked: Arc<Mutex<Vec<AskedShift>>>) -> Rule {
    mock!(aws_sdk_arczonalshift::Client::start_zonal_shift).then_compute_output(move |r| {
        let shift = asked_shift(r);
        asked.lock().expect("lock").push(shift.clone());
        StartZonalShiftOutput::builder()
            .zonal_shift_id(shift_id(&shift.0))
            .resource_identifier(shift.0)
            .away_from(shift.1)
            .start_time(DateTime::from_secs(1_800_000_000))
            .expiry_time(DateTime::from_secs(1_800_001_800))
            .status(ZonalShiftStatus::Active)
            .comment(shift.3)
            .build()
            .expect("output")
    })
}

/// StartZonalShift on `resource` fails with a ValidationException (recorded like the rest);
/// goes before [`start_rule`].
fn failing_start_rule(asked: Arc<Mutex<Vec<AskedShift>>>, resource: &'static str) -> Rule {
    mock!(aws_sdk_arczonalshift::Client::start_zonal_shift)
        .match_requests(move |r| {
            let matched = r.resource_identifier() == Some(resource);
            if matched {
                asked.lock().expect("lock").push(asked_shift(r));
            }
            matched
        })
        .then_error(|| {
            StartZonalShiftError::generic(error(
                "ValidationException",
                "zonal shift is not supported",
            ))
        })
}

fn shift_id(resource: &str) -> String {
    if resource == LOAD_BALANCER {
        "shift-lb".into()
    } else {
        "shift-asg".into()
    }
}

/// CancelZonalShift that records the ids it is asked to cancel.
fn cancel_rule(cancelled: Arc<Mutex<Vec<String>>>) -> Rule {
    mock!(aws_sdk_arczonalshift::Client::cancel_zonal_shift).then_compute_output(move |r| {
        let id = r.zonal_shift_id().unwrap_or_default().to_owned();
        cancelled.lock().expect("lock").push(id.clone());
        CancelZonalShiftOutput::builder()
            .zonal_shift_id(id)
            .resource_identifier("cancelled")
            .away_from("euw1-az3")
            .start_time(DateTime::from_secs(1_800_000_000))
            .expiry_time(DateTime::from_secs(1_800_000_100))
            .status(ZonalShiftStatus::Canceled)
            .comment("triad shift")
            .build()
            .expect("output")
    })
}

fn summary(resource: &str, away_from: &str) -> ZonalShiftSummary {
    ZonalShiftSummary::builder()
        .zonal_shift_id(shift_id(resource))
        .resource_identifier(resource)
        .away_from(away_from)
        .start_time(DateTime::from_secs(1_800_000_000))
        .expiry_time(DateTime::from_secs(1_800_001_800))
        .status(ZonalShiftStatus::Active)
        .comment("triad shift")
        .build()
        .expect("summary")
}

/// ListZonalShifts (ACTIVE) with the stack's two shifts away from eu-west-1a (`euw1-az3`)
/// and another account resource's, which is not the stack's.
fn listed_rule() -> Rule {
    mock!(aws_sdk_arczonalshift::Client::list_zonal_shifts)
        .match_requests(|r| r.status() == Some(&ZonalShiftStatus::Active))
        .then_output(|| {
            ListZonalShiftsOutput::builder()
                .items(summary(LOAD_BALANCER, "euw1-az3"))
                .items(summary(GROUP_ARN, "euw1-az3"))
                .items(
                    ZonalShiftSummary::builder()
                        .zonal_shift_id("shift-other")
                        .resource_identifier(
                            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:\
                             loadbalancer/app/other/1",
                        )
                        .away_from("euw1-az1")
                        .start_time(DateTime::from_secs(1_800_000_000))
                        .expiry_time(DateTime::from_secs(1_800_001_800))
                        .status(ZonalShiftStatus::Active)
                        .comment("not ours")
                        .build()
                        .expect("summary"),
                )
                .build()
        })
}

fn shift_rules(enabled: Option<&'static str>) -> Rules {
    let mut rules = Rules::attached();
    rules.ec2.push(zones_rule());
    rules.elb.push(lb_attributes_rule(enabled));
    rules
}

/// A shift starts on the load balancer and then on the group, both away from the AZ's ID
/// (eu-west-1a is `euw1-az3` in this account), for the whole minutes ARC takes; the shift
/// returned names both resources and both ARC ids (what the journal records). Through the
/// guard, so the AWS path is checked by the shared rules: a second shift is refused while
/// ListZonalShifts shows the first, and cancel cancels both ids.
/// Moto gap: moto 5.2.5 has no ARC zonal shift service at all (no StartZonalShift,
/// CancelZonalShift or ListZonalShifts).
#[tokio::test]
async fn a_shift_starts_and_cancels_on_the_load_balancer_and_the_group_together() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let mut rules = shift_rules(Some("true"));
    rules.arc = vec![start_rule(asked.clone()), cancel_rule(cancelled.clone())];
    let guarded = Guarded::new(rules.cloud(true), SessionMode::ReadWrite);
    let request = ShiftRequest::new("eu-west-1a", Duration::from_secs(1800), "").expect("request");
    let shift = guarded
        .start_zonal_shift(&stack(), &request, CapacityCheck::Enforce)
        .await
        .expect("shift");
    assert_eq!(
        *asked.lock().expect("lock"),
        [
            (
                LOAD_BALANCER.to_owned(),
                "euw1-az3".to_owned(),
                "30m".to_owned(),
                "triad shift".to_owned()
            ),
            (
                GROUP_ARN.to_owned(),
                "euw1-az3".to_owned(),
                "30m".to_owned(),
                "triad shift".to_owned()
            ),
        ]
    );
    assert_eq!(shift.az, "eu-west-1a");
    assert_eq!(shift.ids, ["shift-lb", "shift-asg"]);
    assert_eq!(
        shift.resources,
        ["load balancer web", "auto scaling group web"]
    );
    assert_eq!(shift.expires_at.unix_timestamp(), 1_800_001_800);

    // Now ARC lists the two shifts (and another resource's, not the stack's).
    let mut rules = shift_rules(Some("true"));
    rules.arc = vec![
        listed_rule(),
        start_rule(asked.clone()),
        cancel_rule(cancelled.clone()),
    ];
    let guarded = Guarded::new(rules.cloud(true), SessionMode::ReadWrite);
    let snapshot = guarded.snapshot(&stack()).await.expect("snapshot");
    assert_eq!(
        snapshot.zonal_shifts.len(),
        1,
        "{:?}",
        snapshot.zonal_shifts
    );
    assert_eq!(snapshot.zonal_shifts[0].az, "eu-west-1a");
    assert_eq!(snapshot.zonal_shifts[0].ids, ["shift-lb", "shift-asg"]);
    let again = guarded
        .start_zonal_shift(&stack(), &request, CapacityCheck::Enforce)
        .await
        .expect_err("one shift at a time");
    assert!(matches!(again, CloudError::Conflict { .. }), "{again}");
    assert_eq!(asked.lock().expect("lock").len(), 2, "nothing more started");
    assert_eq!(
        guarded.zonal_shifts(&stack()).await.expect("list"),
        snapshot.zonal_shifts
    );

    let none = guarded
        .cancel_zonal_shift(&stack(), Some("eu-west-1b"))
        .await
        .expect_err("nothing away from eu-west-1b");
    assert!(matches!(none, CloudError::NotFound { .. }), "{none}");
    let ended = guarded
        .cancel_zonal_shift(&stack(), None)
        .await
        .expect("cancel");
    assert_eq!(ended.len(), 1);
    assert_eq!(*cancelled.lock().expect("lock"), ["shift-lb", "shift-asg"]);
}

/// When the group's shift fails after the load balancer's started, the load balancer's is
/// cancelled and the error says so: nothing is left shifted.
/// Moto gap: moto 5.2.5 has no ARC zonal shift service.
#[tokio::test]
async fn a_failed_second_start_cancels_the_first() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let mut rules = shift_rules(Some("true"));
    rules.arc = vec![
        failing_start_rule(asked.clone(), GROUP_ARN),
        start_rule(asked.clone()),
        cancel_rule(cancelled.clone()),
    ];
    let cloud = rules.cloud(true);
    let request = ShiftRequest::new("eu-west-1c", Duration::from_secs(7200), "").expect("request");
    let error = cloud
        .start_zonal_shift(&stack(), &request, CapacityCheck::Enforce)
        .await
        .expect_err("the group's start fails");
    let text = error.to_string();
    assert!(
        text.contains("shifting auto scaling group web failed"),
        "{text}"
    );
    assert!(text.contains("ValidationException"), "{text}");
    assert!(text.contains("was cancelled: nothing is shifted"), "{text}");
    let asked = asked.lock().expect("lock");
    assert_eq!(asked.len(), 2);
    assert!(
        asked
            .iter()
            .all(|(_, away, expires, _)| away == "euw1-az2" && expires == "2h"),
        "{asked:?}"
    );
    assert_eq!(*cancelled.lock().expect("lock"), ["shift-lb"]);
}

/// A load balancer without `zonal_shift.config.enabled=true` is refused (exit 3) before any
/// shift is started, saying how to turn it on.
/// Moto gap: moto 5.2.5 has no ARC zonal shift service, and does not know the
/// `zonal_shift.config.enabled` load balancer attribute.
#[tokio::test]
async fn a_load_balancer_without_the_zonal_shift_attribute_is_refused() {
    for enabled in [None, Some("false")] {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let mut rules = shift_rules(enabled);
        rules.arc = vec![start_rule(asked.clone())];
        let cloud = rules.cloud(true);
        let request =
            ShiftRequest::new("eu-west-1a", Duration::from_secs(600), "").expect("request");
        let error = cloud
            .start_zonal_shift(&stack(), &request, CapacityCheck::Force)
            .await
            .expect_err("refused");
        assert!(error.is_refusal(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("modify-load-balancer-attributes")
                && text.contains("Key=zonal_shift.config.enabled,Value=true"),
            "{text}"
        );
        assert!(asked.lock().expect("lock").is_empty(), "nothing started");
    }
}

/// A SendCommand as asked for: (document, instances, parameters).
type AskedCommand = (String, Vec<String>, BTreeMap<String, Vec<String>>);

/// SendCommand that records each request and answers with a command id per document.
fn send_rule(asked: Arc<Mutex<Vec<AskedCommand>>>) -> Rule {
    mock!(aws_sdk_ssm::Client::send_command).then_compute_output(move |r| {
        let document = r.document_name().unwrap_or_default().to_owned();
        let parameters: BTreeMap<String, Vec<String>> = r
            .parameters()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut asked = asked.lock().expect("lock");
        asked.push((document.clone(), r.instance_ids().to_vec(), parameters));
        SendCommandOutput::builder()
            .command(
                aws_sdk_ssm::types::Command::builder()
                    .command_id(format!("cmd-{}", asked.len()))
                    .document_name(document)
                    .build(),
            )
            .build()
    })
}

/// Every instance answers a shell command at once: `ens5` for the interface question.
fn invocation_rule() -> Rule {
    mock!(aws_sdk_ssm::Client::get_command_invocation).then_compute_output(|r| {
        GetCommandInvocationOutput::builder()
            .command_id(r.command_id().unwrap_or_default())
            .instance_id(r.instance_id().unwrap_or_default())
            .status(CommandInvocationStatus::Success)
            .standard_output_content("ens5\n")
            .build()
    })
}

/// slow-az asks the AZ's InService instances for their default-route interface first
/// (AWS-RunShellScript), then sends AWS's AWSFIS-Run-Network-Latency document with that
/// interface and the latency, and records the command and instance ids. The dry run names
/// each instance and says the delay is on all outbound traffic. Restore cancels that command
/// and runs `tc qdisc del` on the same instances that still run, then waits for it.
/// Moto gap: moto 5.2.5 accepts SendCommand with any document name and parameters (it has
/// none of AWS's documents and checks neither), runs nothing and reports every invocation
/// `Success` at once with empty output, and has no CancelCommand: it could check nothing
/// beyond the requests, which these rules check directly.
#[tokio::test]
async fn slow_az_sends_the_latency_document_and_restore_cleans_up() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let seen = cancelled.clone();
    let mut rules = Rules::attached();
    rules.ssm = vec![
        send_rule(asked.clone()),
        invocation_rule(),
        mock!(aws_sdk_ssm::Client::cancel_command).then_compute_output(move |r| {
            seen.lock().expect("lock").push((
                r.command_id().unwrap_or_default().to_owned(),
                r.instance_ids().to_vec(),
            ));
            CancelCommandOutput::builder().build()
        }),
    ];
    // i-0a2 has been terminated since: only i-0a1 still runs.
    rules.ec2.push(
        mock!(aws_sdk_ec2::Client::describe_instances)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("instance-state-name"))
            })
            .then_output(|| {
                DescribeInstancesOutput::builder()
                    .reservations(
                        aws_sdk_ec2::types::Reservation::builder()
                            .instances(
                                aws_sdk_ec2::types::Instance::builder()
                                    .instance_id("i-0a1")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }),
    );
    let cloud = rules.cloud(true);
    let fault = Fault::parse("slow-az", Some("eu-west-1a"))
        .and_then(|f| f.with_latency(250))
        .expect("fault");

    let plan = cloud.describe_fault(&stack(), &fault).await.expect("plan");
    let resources: Vec<&str> = plan.actions.iter().map(|a| a.resource.as_str()).collect();
    assert_eq!(resources, ["instance i-0a1", "instance i-0a2"]);
    assert!(
        plan.actions
            .iter()
            .all(|a| a.call.contains("AWSFIS-Run-Network-Latency") && a.reversible),
        "{:?}",
        plan.actions
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("all of the instances' outbound traffic")),
        "{:?}",
        plan.notes
    );
    assert!(
        asked.lock().expect("lock").is_empty(),
        "a dry run sends nothing"
    );

    let record = cloud
        .inject(&stack(), &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    let two = vec!["i-0a1".to_owned(), "i-0a2".to_owned()];
    assert_eq!(
        record.changes,
        [FaultChange::Aws(AwsChange::LatencyAdded {
            az: "eu-west-1a".into(),
            command_id: "cmd-2".into(),
            instance_ids: two.clone(),
            interface: "ens5".into(),
            latency_ms: 250,
        })]
    );
    {
        let asked = asked.lock().expect("lock");
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert_eq!(asked[0].0, "AWS-RunShellScript");
        assert_eq!(asked[0].1, two);
        assert!(asked[0].2["commands"][0].contains("route show default"));
        assert_eq!(asked[1].0, "AWSFIS-Run-Network-Latency");
        assert_eq!(asked[1].1, two);
        let parameter = |name: &str| asked[1].2.get(name).map(|v| v.join(","));
        assert_eq!(parameter("DelayMilliseconds").as_deref(), Some("250"));
        assert_eq!(parameter("Interface").as_deref(), Some("ens5"));
        assert_eq!(parameter("DurationSeconds").as_deref(), Some("3600"));
        assert_eq!(parameter("InstallDependencies").as_deref(), Some("True"));
        assert_eq!(asked[1].2.len(), 4, "only the document's own parameters");
    }

    cloud.restore(&record).await.expect("restore");
    assert_eq!(
        *cancelled.lock().expect("lock"),
        [("cmd-2".to_owned(), two.clone())]
    );
    let asked = asked.lock().expect("lock");
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(asked[2].0, "AWS-RunShellScript");
    assert_eq!(asked[2].1, ["i-0a1"], "only the instance still running");
    assert_eq!(
        asked[2].2["commands"],
        ["tc qdisc del dev ens5 root 2>/dev/null || true"]
    );
}
