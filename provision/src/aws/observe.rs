//! Snapshots and the watch. One tick makes the same calls whatever the fleet size:
//! DescribeStacks (triad stacks), DescribeAutoScalingGroups (capacity, instances, subnets,
//! suspended processes), DescribeInstances (each instance's version tag, private address and
//! launch time: the group's instances found by its `aws:autoscaling:groupName` tag, one call
//! per page of [`INSTANCES_PAGE`] instances, so one call for any group up to that size),
//! DescribeTargetHealth per target group, DescribeDBInstances, DescribeInstanceRefreshes and
//! DescribeScalingActivities (the first page of each: the recent ones), and the scaling
//! policies (DescribePolicies, then DescribeAlarms for their alarms when there are any, see
//! [`super::scaling`]), made concurrently.
//! Subnet → AZ is asked once and cached. Metrics come from one batched GetMetricData, at most
//! once per [`METRICS_PERIOD`] (CloudWatch's resolution); the stack's CloudFormation events
//! (DescribeStackEvents, the newest page) and the database's RDS events (DescribeEvents for the
//! DB instance, the last hour) at most once per [`EVENTS_PERIOD`]; in between, the last ones
//! are shown again.
//!
//! Auto Scaling does not say which checkpoint a refresh waits at, only how far it is: a watch
//! sees a checkpoint reached when the refresh's PercentageComplete goes past a checkpoint
//! percentage between two of its ticks, and shows it (reached then, resuming after the
//! CheckpointDelay) until the delay is over. A single snapshot, or a watch that started after
//! the crossing, shows none.
//!
//! Each section is read on its own: one that fails (CloudWatch denied, say) is reported in the
//! snapshot's `errors` and the rest is still shown. A throttled tick makes the watch back off
//! (the interval doubles up to [`MAX_BACKOFF`]) until a tick goes through unthrottled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_autoscaling::types::{Activity, AutoScalingGroup, InstanceRefresh};
use aws_sdk_cloudformation::types::StackEvent;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription;
use aws_sdk_rds::types::{DbInstance, SourceType};
use futures::StreamExt;
use time::OffsetDateTime;

use super::error::{from_sdk, to_time};
use super::resources::{Resources, describe_group, group_subnets, resolve, subnet_infos};
use super::{AwsCloud, OpsClients, cfn, scaling, shift};
use crate::port::{
    AzView, Capacity, CheckpointInfo, CloudError, CloudStream, Database, DbRole, Event,
    EventSource, Instance, LifecycleState, MetricKind, MetricPoint, MetricSeries, Metrics, Refresh,
    RefreshId, RefreshStatus, RollbackDetails, ScalingProcess, ScalingView, Section, SectionError,
    Snapshot, StackRef, StackStatus, Target,
};
use crate::template::VERSION_TAG;

/// How often metrics are read: CloudWatch's resolution for these metrics.
pub const METRICS_PERIOD: Duration = Duration::from_secs(60);
/// How often the stack's CloudFormation events and the database's RDS events are read.
pub const EVENTS_PERIOD: Duration = Duration::from_secs(30);
/// How far back the database's events go, in minutes.
const DB_EVENTS_MINUTES: i32 = 60;
/// The most instances one DescribeInstances page holds (EC2's largest MaxResults).
pub const INSTANCES_PAGE: i32 = 1000;
/// How far back the metric series go.
const METRICS_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The longest a throttled watch waits between ticks.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How many recent refreshes and scaling activities a snapshot shows.
const RECENT_REFRESHES: i32 = 5;
const RECENT_ACTIVITIES: i32 = 20;

/// Follows one stack from tick to tick, keeping what changes slowly.
pub(crate) struct Observer {
    cloud: AwsCloud,
    stack: StackRef,
    resources: Option<Resources>,
    metrics: Metrics,
    metrics_error: Option<String>,
    metrics_read_at: Option<tokio::time::Instant>,
    /// The stack's and the database's events, read every [`EVENTS_PERIOD`].
    events: Vec<Event>,
    events_errors: Vec<String>,
    events_read_at: Option<tokio::time::Instant>,
    /// What the last tick saw of each refresh, to notice checkpoints being reached.
    seen_refreshes: HashMap<RefreshId, SeenRefresh>,
    throttled: bool,
    delay: Option<Duration>,
}

/// A refresh as the last tick saw it.
#[derive(Debug, Clone, Default)]
struct SeenRefresh {
    percentage: Option<u8>,
    checkpoint: Option<CheckpointInfo>,
}

impl Observer {
    pub(crate) fn new(cloud: AwsCloud, stack: StackRef) -> Self {
        Self {
            cloud,
            stack,
            resources: None,
            metrics: Metrics::default(),
            metrics_error: None,
            metrics_read_at: None,
            events: Vec::new(),
            events_errors: Vec::new(),
            events_read_at: None,
            seen_refreshes: HashMap::new(),
            throttled: false,
            delay: None,
        }
    }

    fn note<T>(&mut self, result: &Result<T, CloudError>) {
        if let Err(CloudError::Throttled { .. }) = result {
            self.throttled = true;
        }
    }

    /// One snapshot. `Err` only when the stack's resources cannot be found at all.
    pub(crate) async fn tick(&mut self) -> Result<Snapshot, CloudError> {
        self.throttled = false;
        let resources = match &self.resources {
            Some(resources) => resources.clone(),
            None => {
                let resolved = resolve(&self.cloud, &self.stack).await;
                self.note(&resolved);
                let resolved = resolved?;
                self.resources = Some(resolved.clone());
                resolved
            }
        };
        let ops = self.cloud.ops_for(&self.stack);
        let cfn_client = self.cloud.cfn_for(&self.stack);
        let mut snapshot = Snapshot::empty(self.stack.clone(), OffsetDateTime::now_utc());
        snapshot.endpoint = resources.endpoint.clone();

        let (stack, group, details, targets, db, refreshes, activities, policies, shifts) = tokio::join!(
            async {
                match resources.managed {
                    true => Some(cfn::describe_stack(&cfn_client, &self.stack.name).await),
                    false => None,
                }
            },
            describe_group(&ops, &resources.asg),
            instance_details(&ops, &resources.asg),
            target_health(&ops, &resources.target_groups),
            async {
                match &resources.db {
                    Some(id) => Some(describe_db(&ops, id).await),
                    None => None,
                }
            },
            recent_refreshes(&ops, &resources.asg, None),
            recent_activities(&ops, &resources.asg),
            scaling::read_policies(&ops, &resources.asg),
            shift::all_active(&ops),
        );
        for throttled in [
            matches!(stack, Some(Err(CloudError::Throttled { .. }))),
            matches!(group, Err(CloudError::Throttled { .. })),
            matches!(details, Err(CloudError::Throttled { .. })),
            matches!(targets, Err(CloudError::Throttled { .. })),
            matches!(db, Some(Err(CloudError::Throttled { .. }))),
            matches!(refreshes, Err(CloudError::Throttled { .. })),
            matches!(activities, Err(CloudError::Throttled { .. })),
            matches!(policies, Err(CloudError::Throttled { .. })),
            matches!(shifts, Err(CloudError::Throttled { .. })),
        ] {
            self.throttled |= throttled;
        }
        let mut fail = |section: Section, error: &CloudError| {
            snapshot.errors.push(SectionError {
                section,
                message: error.to_string(),
            });
        };

        match stack {
            Some(Ok(Some(state))) => {
                snapshot.stack_status = Some(state.status);
                if let Some(url) = state
                    .outputs
                    .get(crate::template::outputs::URL)
                    .filter(|url| !url.is_empty())
                {
                    snapshot.endpoint = Some(url.to_owned());
                }
            }
            Some(Ok(None)) => snapshot.stack_status = Some(StackStatus::DeleteComplete),
            Some(Err(error)) => fail(Section::Stack, &error),
            None => {}
        }

        // Every AZ the stack spans, even one without instances or subnets right now.
        let mut azs: BTreeSet<String> = self
            .cloud
            .cache()
            .group_azs
            .get(&resources.asg)
            .cloned()
            .unwrap_or_default();
        let mut instance_az: HashMap<String, String> = HashMap::new();
        let mut instances: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        let details = match details {
            Ok(details) => details,
            Err(error) => {
                if group.is_ok() {
                    fail(Section::Instances, &error);
                }
                HashMap::new()
            }
        };
        match &group {
            Ok(group) => {
                let current: BTreeSet<String> = group_subnets(group).into_iter().collect();
                // Subnets a launch block removed still count for their AZ's column.
                let mut subnets: Vec<String> = {
                    let mut cache = self.cloud.cache();
                    let seen = cache
                        .group_subnets
                        .entry(resources.asg.clone())
                        .or_default();
                    seen.extend(current.iter().cloned());
                    seen.iter().cloned().collect()
                };
                subnets.extend(resources.stack_subnets.iter().cloned());
                match subnet_infos(&self.cloud, &ops, &subnets).await {
                    Ok(infos) => {
                        let enabled: BTreeSet<String> = infos
                            .iter()
                            .filter(|(id, _)| current.contains(id))
                            .map(|(_, info)| info.az.clone())
                            .collect();
                        azs.extend(infos.into_iter().map(|(_, info)| info.az));
                        snapshot.enabled_azs = enabled.into_iter().collect();
                    }
                    Err(error) => {
                        self.throttled |= matches!(error, CloudError::Throttled { .. });
                        snapshot.enabled_azs = group.availability_zones().to_vec();
                        fail(Section::Capacity, &error);
                    }
                }
                azs.extend(group.availability_zones().iter().cloned());
                snapshot.capacity = Some(capacity_of(group));
                snapshot.suspended_processes = suspended_of(group);
                for instance in group.instances() {
                    let (Some(id), Some(az)) =
                        (instance.instance_id(), instance.availability_zone())
                    else {
                        continue;
                    };
                    let Some(converted) = instance_of(instance, details.get(id)) else {
                        continue;
                    };
                    instance_az.insert(id.to_owned(), az.to_owned());
                    azs.insert(az.to_owned());
                    instances.entry(az.to_owned()).or_default().push(converted);
                }
            }
            Err(error) => {
                fail(Section::Capacity, error);
                fail(Section::Instances, error);
                if matches!(error, CloudError::NotFound { .. }) {
                    // The group may have been replaced: find the resources again next tick.
                    self.resources = None;
                }
            }
        }

        let mut targets_by_az: BTreeMap<String, Vec<Target>> = BTreeMap::new();
        match targets {
            Ok(descriptions) => {
                for description in &descriptions {
                    let Some(target) = target_of(description) else {
                        continue;
                    };
                    let az = instance_az.get(&target.id).cloned().or_else(|| {
                        description
                            .target()
                            .and_then(|t| t.availability_zone())
                            .filter(|az| *az != "all")
                            .map(str::to_owned)
                    });
                    if let Some(az) = az {
                        azs.insert(az.clone());
                        targets_by_az.entry(az).or_default().push(target);
                    }
                }
            }
            Err(error) => fail(Section::Targets, &error),
        }

        // The group's ARN is known only from its description; without it, only the load
        // balancers' shifts are seen.
        let shiftables = shift::shiftables(
            &resources,
            group.as_ref().ok().and_then(|g| g.auto_scaling_group_arn()),
        );
        let shifts = match shifts {
            Ok(all) => {
                let summaries = shift::on_resources(all, &shiftables);
                shift::named(&self.cloud, &ops, &shiftables, &summaries).await
            }
            Err(error) => Err(error),
        };
        match shifts {
            Ok(shifts) => snapshot.zonal_shifts = shifts,
            Err(error) => {
                self.throttled |= matches!(error, CloudError::Throttled { .. });
                fail(Section::Shifts, &error);
            }
        }

        let mut databases: BTreeMap<String, Database> = BTreeMap::new();
        match db {
            Some(Ok(db)) => {
                for (az, database) in databases_of(&db) {
                    azs.insert(az.clone());
                    databases.insert(az, database);
                }
            }
            Some(Err(error)) => fail(Section::Database, &error),
            None => {}
        }

        match refreshes {
            Ok(mut refreshes) => {
                self.note_checkpoints(&mut refreshes, snapshot.taken_at);
                snapshot.refreshes = refreshes;
            }
            Err(error) => fail(Section::Refreshes, &error),
        }
        let (decisions, launched) = match &activities {
            Ok(activities) => (
                scaling::decisions_of(activities),
                scaling::scale_out_launches(activities),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        match policies {
            Ok(policies) => {
                let pending: BTreeSet<&str> = instances
                    .values()
                    .flatten()
                    .filter(|i| i.lifecycle != LifecycleState::InService)
                    .map(|i| i.id.as_str())
                    .collect();
                snapshot.scaling = Some(ScalingView {
                    policies,
                    decisions,
                    launching: launched
                        .into_iter()
                        .filter(|id| pending.contains(id.as_str()))
                        .collect(),
                });
            }
            Err(error) => fail(Section::Scaling, &error),
        }
        match activities {
            Ok(activities) => snapshot.events = activities.iter().filter_map(event_of).collect(),
            Err(error) => fail(Section::Events, &error),
        }
        self.read_events(&ops, &cfn_client, &resources).await;
        snapshot.events.extend(self.events.iter().cloned());
        snapshot.events.sort_by_key(|e| std::cmp::Reverse(e.at));
        for message in &self.events_errors {
            snapshot.errors.push(SectionError {
                section: Section::Events,
                message: message.clone(),
            });
        }

        self.cloud
            .cache()
            .group_azs
            .insert(resources.asg.clone(), azs.clone());
        snapshot.azs = azs
            .iter()
            .map(|az| {
                let mut view = AzView::new(az.clone());
                view.instances = instances.remove(az).unwrap_or_default();
                view.instances.sort_by(|a, b| a.id.cmp(&b.id));
                view.targets = targets_by_az.remove(az).unwrap_or_default();
                view.targets.sort_by(|a, b| a.id.cmp(&b.id));
                view.database = databases.remove(az);
                view
            })
            .collect();

        let due = self
            .metrics_read_at
            .is_none_or(|at| at.elapsed() >= METRICS_PERIOD);
        if due {
            self.metrics_read_at = Some(tokio::time::Instant::now());
            let azs: Vec<String> = azs.into_iter().collect();
            match read_metrics(&ops, &resources, &azs).await {
                Ok(metrics) => {
                    self.metrics = metrics;
                    self.metrics_error = None;
                }
                Err(error) => {
                    self.throttled |= matches!(error, CloudError::Throttled { .. });
                    self.metrics_error = Some(error.to_string());
                }
            }
        }
        snapshot.metrics = self.metrics.clone();
        if let Some(message) = &self.metrics_error {
            snapshot.errors.push(SectionError {
                section: Section::Metrics,
                message: message.clone(),
            });
        }
        snapshot.errors.sort_by_key(|e| e.section);
        Ok(snapshot)
    }

    /// The stack's CloudFormation events and the database's RDS events, when
    /// [`EVENTS_PERIOD`] has passed since they were last read.
    async fn read_events(
        &mut self,
        ops: &OpsClients,
        cfn_client: &aws_sdk_cloudformation::Client,
        resources: &Resources,
    ) {
        if self
            .events_read_at
            .is_some_and(|at| at.elapsed() < EVENTS_PERIOD)
        {
            return;
        }
        self.events_read_at = Some(tokio::time::Instant::now());
        let (stack_events, db_events) = tokio::join!(
            async {
                match resources.managed {
                    true => Some(recent_stack_events(cfn_client, &self.stack.name).await),
                    false => None,
                }
            },
            async {
                match &resources.db {
                    Some(id) => Some(recent_db_events(ops, id).await),
                    None => None,
                }
            },
        );
        self.events.clear();
        self.events_errors.clear();
        for answer in [stack_events, db_events].into_iter().flatten() {
            match answer {
                Ok(events) => self.events.extend(events),
                Err(error) => {
                    self.throttled |= matches!(error, CloudError::Throttled { .. });
                    self.events_errors.push(error.to_string());
                }
            }
        }
    }

    /// Fills each refresh's checkpoint from what this watch has seen of it (see the module's
    /// comment), and remembers this tick's view.
    fn note_checkpoints(&mut self, refreshes: &mut [Refresh], now: OffsetDateTime) {
        let mut seen = HashMap::new();
        for refresh in refreshes.iter_mut() {
            refresh.checkpoint = checkpoint_of(self.seen_refreshes.get(&refresh.id), refresh, now);
            seen.insert(
                refresh.id.clone(),
                SeenRefresh {
                    percentage: refresh.percentage_complete,
                    checkpoint: refresh.checkpoint.clone(),
                },
            );
        }
        self.seen_refreshes = seen;
    }

    /// How long to wait before the next tick: `interval`, or longer while throttled.
    fn next_delay(&mut self, interval: Duration) -> Duration {
        let delay = match (self.throttled, self.delay) {
            (true, Some(previous)) => (previous * 2).min(MAX_BACKOFF.max(interval)),
            (true, None) => (interval * 2).min(MAX_BACKOFF.max(interval)),
            (false, _) => interval,
        };
        self.delay = Some(delay);
        delay
    }
}

/// A snapshot now, then one about every `interval`.
pub(crate) fn watch(cloud: AwsCloud, stack: StackRef, interval: Duration) -> CloudStream<Snapshot> {
    let observer = Observer::new(cloud, stack);
    futures::stream::unfold((observer, true), move |(mut observer, first)| async move {
        if !first {
            tokio::time::sleep(observer.next_delay(interval)).await;
        }
        let snapshot = observer.tick().await;
        Some((snapshot, (observer, false)))
    })
    .boxed()
}

fn capacity_of(group: &AutoScalingGroup) -> Capacity {
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    Capacity {
        desired: count(group.desired_capacity()),
        min: count(group.min_size()),
        max: count(group.max_size()),
    }
}

pub(crate) fn suspended_of(group: &AutoScalingGroup) -> Vec<ScalingProcess> {
    let mut processes: Vec<ScalingProcess> = group
        .suspended_processes()
        .iter()
        .filter_map(|p| p.process_name()?.parse().ok())
        .collect();
    processes.sort_by_key(|p| p.as_aws_str());
    processes
}

/// The checkpoint `refresh` waits at now, given what the previous tick saw of it: one whose
/// percentage the refresh went past since then (reached now), or the one already noted, until
/// its CheckpointDelay is over. The last checkpoint of a partial refresh is where it ends, not
/// a pause, and at 100 % there is nothing left to wait for.
fn checkpoint_of(
    previous: Option<&SeenRefresh>,
    refresh: &Refresh,
    now: OffsetDateTime,
) -> Option<CheckpointInfo> {
    if refresh.status != RefreshStatus::InProgress {
        return None;
    }
    let previous = previous?;
    let prefs = refresh.preferences.as_ref()?;
    let delay = prefs.effective_checkpoint_delay_seconds()?;
    let last = prefs.checkpoint_percentages.last().copied();
    let before = previous.percentage.unwrap_or(0);
    let now_at = refresh.percentage_complete.unwrap_or(0);
    let crossed = prefs
        .checkpoint_percentages
        .iter()
        .copied()
        .filter(|&c| c < 100 && !(prefs.is_partial() && Some(c) == last))
        .filter(|&c| before < c && c <= now_at)
        .max();
    let info = match crossed {
        Some(percentage) => Some(CheckpointInfo {
            percentage,
            reached_at: now,
            resumes_at: Some(now + time::Duration::seconds(i64::from(delay))),
        }),
        None => previous.checkpoint.clone(),
    };
    info.filter(|info| info.resumes_at.is_none_or(|at| now < at))
}

/// What EC2 says of an instance that Auto Scaling does not: the version it was launched to
/// run (its [`VERSION_TAG`]), its private address and its launch time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InstanceDetails {
    version: Option<String>,
    address: Option<String>,
    launch_time: Option<OffsetDateTime>,
}

/// The details of the group's instances that are not terminated, by instance id: the
/// instances carrying the group's `aws:autoscaling:groupName` tag, [`INSTANCES_PAGE`] per call.
async fn instance_details(
    ops: &OpsClients,
    asg: &str,
) -> Result<HashMap<String, InstanceDetails>, CloudError> {
    let mut details = HashMap::new();
    let mut token = None;
    loop {
        let page = ops
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:aws:autoscaling:groupName")
                    .values(asg)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "shutting-down", "stopping", "stopped"]
                            .map(str::to_owned)
                            .to_vec(),
                    ))
                    .build(),
            )
            .max_results(INSTANCES_PAGE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("ec2", "DescribeInstances", e))?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = instance.instance_id() else {
                continue;
            };
            details.insert(
                id.to_owned(),
                InstanceDetails {
                    version: instance
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(VERSION_TAG))
                        .and_then(|t| t.value())
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned),
                    address: instance.private_ip_address().map(str::to_owned),
                    launch_time: instance.launch_time().map(to_time),
                },
            );
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(details)
}

fn instance_of(
    instance: &aws_sdk_autoscaling::types::Instance,
    details: Option<&InstanceDetails>,
) -> Option<Instance> {
    let details = details.cloned().unwrap_or_default();
    Some(Instance {
        id: instance.instance_id()?.to_owned(),
        lifecycle: instance.lifecycle_state()?.as_str().parse().ok()?,
        health: instance.health_status()?.parse().ok()?,
        version: details.version,
        launch_template_version: instance
            .launch_template()
            .and_then(|lt| lt.version())
            .map(str::to_owned),
        launch_time: details.launch_time,
        address: details.address,
        protected_from_scale_in: instance.protected_from_scale_in().unwrap_or(false),
    })
}

async fn target_health(
    ops: &OpsClients,
    target_groups: &[String],
) -> Result<Vec<TargetHealthDescription>, CloudError> {
    let answers = futures::future::join_all(target_groups.iter().map(|arn| {
        ops.elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
    }))
    .await;
    let mut all = Vec::new();
    for answer in answers {
        let answer =
            answer.map_err(|e| from_sdk("elasticloadbalancing", "DescribeTargetHealth", e))?;
        all.extend(answer.target_health_descriptions().iter().cloned());
    }
    Ok(all)
}

fn target_of(description: &TargetHealthDescription) -> Option<Target> {
    let target = description.target()?;
    let health = description.target_health()?;
    Some(Target {
        id: target.id()?.to_owned(),
        port: target
            .port()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        state: health.state()?.as_str().parse().ok()?,
        reason: health.reason().and_then(|r| r.as_str().parse().ok()),
        description: health.description().map(str::to_owned),
    })
}

pub(crate) async fn describe_db(ops: &OpsClients, id: &str) -> Result<DbInstance, CloudError> {
    let answer = ops
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| match from_sdk("rds", "DescribeDBInstances", e) {
            CloudError::Backend { code, .. } if code == "DBInstanceNotFound" => {
                CloudError::not_found(format!("DB instance {id}"))
            }
            other => other,
        })?;
    answer
        .db_instances()
        .first()
        .cloned()
        .ok_or_else(|| CloudError::not_found(format!("DB instance {id}")))
}

/// The database as each AZ sees it: the primary in its AZ, the standby (Multi-AZ) in the
/// secondary AZ.
fn databases_of(db: &DbInstance) -> Vec<(String, Database)> {
    let id = db.db_instance_identifier().unwrap_or_default().to_owned();
    let Some(status) = db.db_instance_status().and_then(|s| s.parse().ok()) else {
        return Vec::new();
    };
    let multi_az = db.multi_az().unwrap_or(false);
    let mut views = Vec::new();
    if let Some(az) = db.availability_zone().filter(|az| !az.is_empty()) {
        views.push((
            az.to_owned(),
            Database {
                id: id.clone(),
                role: DbRole::Primary,
                status,
                synchronous: multi_az.then_some(true),
            },
        ));
    }
    if let Some(az) = db
        .secondary_availability_zone()
        .filter(|az| multi_az && !az.is_empty())
    {
        views.push((
            az.to_owned(),
            Database {
                id,
                role: DbRole::Standby,
                status,
                synchronous: Some(true),
            },
        ));
    }
    views
}

/// The group's recent instance refreshes (or just `id`), newest first.
pub(crate) async fn recent_refreshes(
    ops: &OpsClients,
    asg: &str,
    id: Option<&RefreshId>,
) -> Result<Vec<Refresh>, CloudError> {
    let answer = ops
        .autoscaling
        .describe_instance_refreshes()
        .auto_scaling_group_name(asg)
        .set_instance_refresh_ids(id.map(|id| vec![id.0.clone()]))
        .max_records(RECENT_REFRESHES)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "DescribeInstanceRefreshes", e))?;
    Ok(answer
        .instance_refreshes()
        .iter()
        .filter_map(refresh_of)
        .collect())
}

/// One instance refresh in the port's terms (`None` for a status triad does not know).
pub(crate) fn refresh_of(refresh: &InstanceRefresh) -> Option<Refresh> {
    let percent = |n: Option<i32>| n.and_then(|n| u8::try_from(n.clamp(0, 100)).ok());
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
    Some(Refresh {
        id: RefreshId(refresh.instance_refresh_id()?.to_owned()),
        status: refresh.status()?.as_str().parse().ok()?,
        status_reason: refresh.status_reason().map(str::to_owned),
        started_at: refresh.start_time().map(to_time),
        ended_at: refresh.end_time().map(to_time),
        percentage_complete: percent(refresh.percentage_complete()),
        instances_to_update: count(refresh.instances_to_update()),
        desired_version: None,
        desired_launch_template_version: refresh
            .desired_configuration()
            .and_then(|c| c.launch_template())
            .and_then(|lt| lt.version())
            .map(str::to_owned),
        preferences: refresh.preferences().map(super::deploy::preferences_of),
        checkpoint: None,
        rollback: refresh.rollback_details().map(|r| RollbackDetails {
            reason: r.rollback_reason().map(str::to_owned),
            started_at: r.rollback_start_time().map(to_time),
            percentage_complete_on_rollback: percent(r.percentage_complete_on_rollback()),
            instances_to_update_on_rollback: count(r.instances_to_update_on_rollback()),
        }),
    })
}

async fn recent_activities(ops: &OpsClients, asg: &str) -> Result<Vec<Activity>, CloudError> {
    let answer = ops
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(asg)
        .max_records(RECENT_ACTIVITIES)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "DescribeScalingActivities", e))?;
    Ok(answer.activities().to_vec())
}

fn event_of(activity: &Activity) -> Option<Event> {
    let az = activity
        .details()
        .and_then(|details| serde_json::from_str::<serde_json::Value>(details).ok())
        .and_then(|details| {
            details
                .get("Availability Zone")
                .and_then(|az| az.as_str())
                .map(str::to_owned)
        });
    let mut message = activity.description().unwrap_or_default().to_owned();
    if let Some(status) = activity.status_code().map(|s| s.as_str())
        && status != "Successful"
    {
        message.push_str(&format!(" ({status}"));
        if let Some(why) = activity.status_message().filter(|m| !m.is_empty()) {
            message.push_str(&format!(": {why}"));
        }
        message.push(')');
    }
    Some(Event {
        at: to_time(activity.start_time()?),
        source: EventSource::Scaling,
        az,
        message,
    })
}

/// The stack's newest CloudFormation events (the first page), newest first.
async fn recent_stack_events(
    client: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Vec<Event>, CloudError> {
    let page = client
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| from_sdk("cloudformation", "DescribeStackEvents", e))?;
    Ok(page
        .stack_events()
        .iter()
        .take(RECENT_ACTIVITIES as usize)
        .filter_map(stack_event_of)
        .collect())
}

fn stack_event_of(event: &StackEvent) -> Option<Event> {
    let mut message = format!(
        "{} {}",
        event.logical_resource_id().unwrap_or_default(),
        event.resource_status()?.as_str()
    );
    if let Some(reason) = event.resource_status_reason().filter(|r| !r.is_empty()) {
        message.push_str(&format!(": {reason}"));
    }
    Some(Event {
        at: to_time(event.timestamp()?),
        source: EventSource::Stack,
        az: None,
        message,
    })
}

/// The DB instance's RDS events of the last [`DB_EVENTS_MINUTES`], newest first (at most
/// [`RECENT_ACTIVITIES`]).
async fn recent_db_events(ops: &OpsClients, id: &str) -> Result<Vec<Event>, CloudError> {
    let page = ops
        .rds
        .describe_events()
        .source_type(SourceType::DbInstance)
        .source_identifier(id)
        .duration(DB_EVENTS_MINUTES)
        .max_records(100)
        .send()
        .await
        .map_err(|e| from_sdk("rds", "DescribeEvents", e))?;
    let mut events: Vec<Event> = page
        .events()
        .iter()
        .filter_map(|event| {
            Some(Event {
                at: to_time(event.date()?),
                source: EventSource::Database,
                az: None,
                message: format!(
                    "{}: {}",
                    event.source_identifier().unwrap_or(id),
                    event.message()?
                ),
            })
        })
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events.truncate(RECENT_ACTIVITIES as usize);
    Ok(events)
}

/// The part of an ELB ARN CloudWatch's dimensions use: `app/name/id`, `targetgroup/name/id`.
fn arn_suffix(arn: &str, after: &str) -> Option<String> {
    arn.split_once(after).map(|(_, rest)| rest.to_owned())
}

/// One query of the batch: which series it fills.
struct Query {
    kind: MetricKind,
    az: Option<String>,
    namespace: &'static str,
    name: &'static str,
    stat: &'static str,
    dimensions: Vec<(&'static str, String)>,
}

/// The metric queries for the stack: per AZ from the load balancer and target group, and the
/// instances' and database's stack-wide.
fn queries(resources: &Resources, azs: &[String]) -> Vec<Query> {
    let mut all = Vec::new();
    let lb = resources
        .load_balancers
        .first()
        .and_then(|arn| arn_suffix(arn, ":loadbalancer/"));
    let tg = resources
        .target_groups
        .first()
        .and_then(|arn| arn.rsplit(':').next())
        .filter(|suffix| suffix.starts_with("targetgroup/"))
        .map(str::to_owned);
    if let Some(lb) = &lb {
        for az in azs {
            let lb_dims = vec![
                ("LoadBalancer", lb.clone()),
                ("AvailabilityZone", az.clone()),
            ];
            for (kind, name, stat) in [
                (MetricKind::Requests, "RequestCount", "Sum"),
                (MetricKind::Target5xx, "HTTPCode_Target_5XX_Count", "Sum"),
                (MetricKind::Lb5xx, "HTTPCode_ELB_5XX_Count", "Sum"),
                (MetricKind::LatencyP50, "TargetResponseTime", "p50"),
                (MetricKind::LatencyP99, "TargetResponseTime", "p99"),
            ] {
                all.push(Query {
                    kind,
                    az: Some(az.clone()),
                    namespace: "AWS/ApplicationELB",
                    name,
                    stat,
                    dimensions: lb_dims.clone(),
                });
            }
            if let Some(tg) = &tg {
                let mut dims = lb_dims.clone();
                dims.insert(0, ("TargetGroup", tg.clone()));
                all.push(Query {
                    kind: MetricKind::HealthyHosts,
                    az: Some(az.clone()),
                    namespace: "AWS/ApplicationELB",
                    name: "HealthyHostCount",
                    stat: "Minimum",
                    dimensions: dims,
                });
            }
        }
    }
    all.push(Query {
        kind: MetricKind::Cpu,
        az: None,
        namespace: "AWS/EC2",
        name: "CPUUtilization",
        stat: "Average",
        dimensions: vec![("AutoScalingGroupName", resources.asg.clone())],
    });
    if let Some(db) = &resources.db {
        for (kind, name) in [
            (MetricKind::DbCpu, "CPUUtilization"),
            (MetricKind::DbConnections, "DatabaseConnections"),
        ] {
            all.push(Query {
                kind,
                az: None,
                namespace: "AWS/RDS",
                name,
                stat: "Average",
                dimensions: vec![("DBInstanceIdentifier", db.clone())],
            });
        }
    }
    all
}

/// Every series of the stack over the last [`METRICS_WINDOW`], in one GetMetricData call
/// (more only if CloudWatch pages the answer).
async fn read_metrics(
    ops: &OpsClients,
    resources: &Resources,
    azs: &[String],
) -> Result<Metrics, CloudError> {
    let queries = queries(resources, azs);
    let period = i32::try_from(METRICS_PERIOD.as_secs()).unwrap_or(60);
    let data_queries: Vec<MetricDataQuery> = queries
        .iter()
        .enumerate()
        .map(|(index, query)| {
            let dimensions = query
                .dimensions
                .iter()
                .map(|(name, value)| Dimension::builder().name(*name).value(value).build());
            let metric = Metric::builder()
                .namespace(query.namespace)
                .metric_name(query.name)
                .set_dimensions(Some(dimensions.collect()))
                .build();
            MetricDataQuery::builder()
                .id(format!("q{index}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(period)
                        .stat(query.stat)
                        .build(),
                )
                .return_data(true)
                .build()
        })
        .collect();
    let end = OffsetDateTime::now_utc();
    let start = end - METRICS_WINDOW;
    let mut points: BTreeMap<usize, Vec<MetricPoint>> = BTreeMap::new();
    let mut token = None;
    loop {
        let page = ops
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(data_queries.clone()))
            .start_time(aws_smithy_types::DateTime::from_secs(
                start.unix_timestamp(),
            ))
            .end_time(aws_smithy_types::DateTime::from_secs(end.unix_timestamp()))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("cloudwatch", "GetMetricData", e))?;
        for result in page.metric_data_results() {
            let Some(index) = result
                .id()
                .and_then(|id| id.strip_prefix('q'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < queries.len())
            else {
                continue;
            };
            let scale = match queries[index].kind {
                MetricKind::LatencyP50 | MetricKind::LatencyP99 => 1000.0,
                _ => 1.0,
            };
            points.entry(index).or_default().extend(
                result
                    .timestamps()
                    .iter()
                    .zip(result.values())
                    .map(|(at, value)| MetricPoint {
                        at: to_time(at),
                        value: value * scale,
                    }),
            );
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let series = queries
        .into_iter()
        .enumerate()
        .map(|(index, query)| {
            let mut points = points.remove(&index).unwrap_or_default();
            points.sort_by_key(|p| p.at);
            MetricSeries {
                metric: query.kind,
                az: query.az,
                points,
            }
        })
        .collect();
    Ok(Metrics {
        period_seconds: u32::try_from(METRICS_PERIOD.as_secs()).unwrap_or(60),
        series,
        // Per instance would cost calls per instance each tick: per AZ only on AWS.
        instances: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh_at(percent: u8, status: RefreshStatus) -> Refresh {
        Refresh {
            id: RefreshId("r-1".into()),
            status,
            status_reason: None,
            started_at: None,
            ended_at: None,
            percentage_complete: Some(percent),
            instances_to_update: None,
            desired_version: None,
            desired_launch_template_version: None,
            preferences: Some(crate::port::RefreshPreferences {
                checkpoint_percentages: vec![20, 50, 100],
                checkpoint_delay_seconds: Some(600),
                ..Default::default()
            }),
            checkpoint: None,
            rollback: None,
        }
    }

    fn seen(percentage: u8, checkpoint: Option<CheckpointInfo>) -> SeenRefresh {
        SeenRefresh {
            percentage: Some(percentage),
            checkpoint,
        }
    }

    #[test]
    fn a_checkpoint_is_reached_when_the_percentage_goes_past_it_and_lasts_its_delay() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let running = RefreshStatus::InProgress;
        assert_eq!(
            checkpoint_of(None, &refresh_at(50, running), t0),
            None,
            "a crossing not seen is not guessed"
        );
        assert_eq!(
            checkpoint_of(Some(&seen(10, None)), &refresh_at(15, running), t0),
            None
        );
        let reached = checkpoint_of(Some(&seen(10, None)), &refresh_at(60, running), t0)
            .expect("20 and 50 passed");
        assert_eq!(reached.percentage, 50, "the highest one passed");
        assert_eq!(reached.reached_at, t0);
        assert_eq!(reached.resumes_at, Some(t0 + time::Duration::seconds(600)));

        let later = t0 + time::Duration::seconds(300);
        assert_eq!(
            checkpoint_of(
                Some(&seen(60, Some(reached.clone()))),
                &refresh_at(60, running),
                later
            ),
            Some(reached.clone()),
            "still waiting"
        );
        let over = t0 + time::Duration::seconds(600);
        assert_eq!(
            checkpoint_of(
                Some(&seen(60, Some(reached.clone()))),
                &refresh_at(60, running),
                over
            ),
            None,
            "the delay is over"
        );
        assert_eq!(
            checkpoint_of(
                Some(&seen(60, Some(reached))),
                &refresh_at(60, RefreshStatus::Cancelled),
                later
            ),
            None,
            "only a running refresh waits"
        );
        assert_eq!(
            checkpoint_of(Some(&seen(60, None)), &refresh_at(100, running), t0),
            None,
            "100 % is the end, not a pause"
        );
    }

    #[test]
    fn cloudwatch_dimensions_come_from_the_arns() {
        assert_eq!(
            arn_suffix(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188",
                ":loadbalancer/"
            )
            .as_deref(),
            Some("app/web/50dc6c495c0c9188")
        );
        let resources = Resources {
            asg: "web".into(),
            target_groups: vec![
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/73e2d6bc24d8a067"
                    .into(),
            ],
            load_balancers: vec![
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc"
                    .into(),
            ],
            db: Some("web-db".into()),
            managed: false,
            stack_subnets: Vec::new(),
            endpoint: None,
        };
        let all = queries(&resources, &["eu-west-1a".into(), "eu-west-1b".into()]);
        assert_eq!(all.len(), 2 * 6 + 1 + 2);
        let healthy = all
            .iter()
            .find(|q| q.kind == MetricKind::HealthyHosts)
            .expect("healthy hosts");
        assert_eq!(
            healthy.dimensions[0],
            ("TargetGroup", "targetgroup/web/73e2d6bc24d8a067".to_owned())
        );
    }
}
