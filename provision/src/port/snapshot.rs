//! What the stack looks like right now: one [`Snapshot`], organised per Availability Zone
//! ([`AzView`]) with the stack-wide parts beside it. A watch stream yields one per tick; `triad
//! status --json` prints one. Enum values use AWS's own names (`InService`, `Target.Timeout`,
//! `RollbackInProgress`), whichever backend produced them.
//!
//! Each part of a snapshot comes from a different call; when one fails, its section is left
//! empty and a [`SectionError`] says why ("metrics unavailable: …"), so a failing part never
//! hides the rest.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::names::aws_names;
use super::refresh::Refresh;
use super::scaling::ScalingView;
use super::shift::ZonalShift;
use super::stack::{StackRef, StackStatus};
use crate::model::TimeScale;

/// The whole stack at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stack: StackRef,
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// The stack's CloudFormation-style status, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_status: Option<StackStatus>,
    /// Where clients reach the stack (the load balancer's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// One view per Availability Zone the stack spans, ordered by AZ name — present even
    /// when some of their sections could not be read.
    pub azs: Vec<AzView>,
    /// The Auto Scaling group's desired / min / max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// AZs the Auto Scaling group may launch into (a launch block removes one).
    #[serde(default)]
    pub enabled_azs: Vec<String>,
    /// Auto Scaling processes currently suspended.
    #[serde(default)]
    pub suspended_processes: Vec<ScalingProcess>,
    /// Active zonal shifts (at most one: see [`super::shift`]).
    #[serde(default)]
    pub zonal_shifts: Vec<ZonalShift>,
    /// The active instance refresh, if any, and recent ones; newest first.
    #[serde(default)]
    pub refreshes: Vec<Refresh>,
    /// Recent activities and events from every source; newest first.
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub metrics: Metrics,
    /// Dynamic scaling: policies, their alarms, recent decisions; `None` when the backend
    /// could not tell (see `errors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingView>,
    /// Sections that could not be read, and why.
    #[serde(default)]
    pub errors: Vec<SectionError>,
    /// The clock a sandbox stack runs on and the durations in force (none on AWS, where the
    /// clock is AWS's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<SandboxClock>,
}

/// The clock a sandbox stack runs on: the spec's own (`aws`) or a compression of it (`fast`,
/// every duration the model schedules divided by `scale.factor`), with every duration in
/// force on both clocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxClock {
    pub scale: TimeScale,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Each duration in force, in a fixed order.
    pub durations: Vec<DurationInForce>,
    /// How long the last instance's program took from its start to listening, in real time
    /// (not scaled by the clock): what a report keeps as measured when it puts a recovery
    /// that launched instances on the AWS clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_start_seconds: Option<f64>,
}

/// One duration the sandbox applies: its value on the spec's AWS clock and the wall time the
/// sandbox waits for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationInForce {
    /// What it is: "health check interval", "instance boot (assumed)", ….
    pub name: String,
    pub aws_seconds: f64,
    pub wall_seconds: f64,
}

impl SandboxClock {
    /// The duration named `name`, if in force.
    pub fn duration(&self, name: &str) -> Option<&DurationInForce> {
        self.durations.iter().find(|d| d.name == name)
    }

    /// The clock and the durations in force, a few lines: "clock fast ×10: …".
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![if self.scale.is_compressed() {
            format!(
                "clock {}: every duration below runs {} times faster here (AWS clock, here)",
                self.scale,
                crate::model::clock::trim(self.scale.factor)
            )
        } else {
            "clock aws: the spec's durations as AWS applies them".to_owned()
        }];
        lines.push(format!(
            "  health check thresholds: healthy {}, unhealthy {}",
            self.healthy_threshold, self.unhealthy_threshold
        ));
        for d in &self.durations {
            if self.scale.is_compressed() {
                lines.push(format!(
                    "  {}: {} s (here {} s)",
                    d.name,
                    crate::model::clock::trim(d.aws_seconds),
                    crate::model::clock::trim(d.wall_seconds)
                ));
            } else {
                lines.push(format!(
                    "  {}: {} s",
                    d.name,
                    crate::model::clock::trim(d.aws_seconds)
                ));
            }
        }
        lines
    }
}

impl Snapshot {
    /// An empty snapshot of `stack` taken at `taken_at`; backends fill it in.
    pub fn empty(stack: StackRef, taken_at: OffsetDateTime) -> Self {
        Self {
            stack,
            taken_at,
            stack_status: None,
            endpoint: None,
            azs: Vec::new(),
            capacity: None,
            enabled_azs: Vec::new(),
            suspended_processes: Vec::new(),
            zonal_shifts: Vec::new(),
            refreshes: Vec::new(),
            events: Vec::new(),
            metrics: Metrics::default(),
            scaling: None,
            errors: Vec::new(),
            clock: None,
        }
    }

    /// The view of AZ `name`.
    pub fn az(&self, name: &str) -> Option<&AzView> {
        self.azs.iter().find(|view| view.az == name)
    }

    /// The instance refresh that has not reached a terminal status, if any.
    pub fn active_refresh(&self) -> Option<&Refresh> {
        self.refreshes.iter().find(|r| !r.status.is_terminal())
    }

    /// The AZ holding the database primary, if known.
    pub fn db_primary_az(&self) -> Option<&str> {
        self.azs
            .iter()
            .find(|view| {
                view.database
                    .as_ref()
                    .is_some_and(|db| db.role == DbRole::Primary)
            })
            .map(|view| view.az.as_str())
    }

    /// The AZ holding the database standby, if any.
    pub fn db_standby_az(&self) -> Option<&str> {
        self.azs
            .iter()
            .find(|view| {
                view.database
                    .as_ref()
                    .is_some_and(|db| db.role == DbRole::Standby)
            })
            .map(|view| view.az.as_str())
    }

    /// Healthy serving capacity (see [`AzView::healthy_capacity`]) in every AZ except `az`.
    pub fn healthy_capacity_outside(&self, az: &str) -> usize {
        self.azs
            .iter()
            .filter(|view| view.az != az)
            .map(AzView::healthy_capacity)
            .sum()
    }

    /// The active zonal shift away from `az`, if any.
    pub fn shift_away_from(&self, az: &str) -> Option<&ZonalShift> {
        self.zonal_shifts.iter().find(|shift| shift.az == az)
    }

    /// The error recorded for `section`, if that section could not be read.
    pub fn error_for(&self, section: Section) -> Option<&SectionError> {
        self.errors.iter().find(|e| e.section == section)
    }
}

/// One Availability Zone: its instances, load balancer targets and database role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzView {
    /// The AZ's name, e.g. `eu-west-1a` (or the sandbox's `sandbox-1a`).
    pub az: String,
    #[serde(default)]
    pub instances: Vec<Instance>,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// The database's presence in this AZ (primary or standby), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
}

impl AzView {
    /// An AZ with nothing in it yet.
    pub fn new(az: impl Into<String>) -> Self {
        Self {
            az: az.into(),
            instances: Vec::new(),
            targets: Vec::new(),
            database: None,
        }
    }

    /// Healthy serving capacity: targets the load balancer reports `healthy`. This is what
    /// the safety rules count, because an instance that is `InService` but unreachable
    /// serves nothing.
    pub fn healthy_capacity(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.state == TargetState::Healthy)
            .count()
    }

    /// Instances that are `InService` and `Healthy` by Auto Scaling's reckoning.
    pub fn in_service_instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| {
            i.lifecycle == LifecycleState::InService && i.health == HealthStatus::Healthy
        })
    }
}

/// One instance of the Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance id (`i-…` on AWS, `sbx-…` in the sandbox).
    pub id: String,
    pub lifecycle: LifecycleState,
    pub health: HealthStatus,
    /// The application version it runs, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The launch template version it was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template_version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub launch_time: Option<OffsetDateTime>,
    /// Its private address (`10.0.1.23` on AWS, `127.0.1.5:41234` in the sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub protected_from_scale_in: bool,
}

aws_names! {
    /// An instance's lifecycle state, with Auto Scaling's names.
    pub enum LifecycleState ("lifecycle state") {
        Pending = "Pending",
        PendingWait = "Pending:Wait",
        PendingProceed = "Pending:Proceed",
        Quarantined = "Quarantined",
        InService = "InService",
        Terminating = "Terminating",
        TerminatingWait = "Terminating:Wait",
        TerminatingProceed = "Terminating:Proceed",
        Terminated = "Terminated",
        Detaching = "Detaching",
        Detached = "Detached",
        EnteringStandby = "EnteringStandby",
        Standby = "Standby",
        WarmedPending = "Warmed:Pending",
        WarmedPendingWait = "Warmed:Pending:Wait",
        WarmedPendingProceed = "Warmed:Pending:Proceed",
        WarmedTerminating = "Warmed:Terminating",
        WarmedTerminatingWait = "Warmed:Terminating:Wait",
        WarmedTerminatingProceed = "Warmed:Terminating:Proceed",
        WarmedTerminated = "Warmed:Terminated",
        WarmedStopped = "Warmed:Stopped",
        WarmedRunning = "Warmed:Running",
        WarmedHibernated = "Warmed:Hibernated",
    }
}

aws_names! {
    /// Auto Scaling's health verdict on an instance.
    pub enum HealthStatus ("health status") {
        Healthy = "Healthy",
        Unhealthy = "Unhealthy",
    }
}

/// One load balancer target (an instance on a port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The target id — the instance id for instance targets.
    pub id: String,
    pub port: u16,
    pub state: TargetState,
    /// Why the target is not healthy, with ELB's reason codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TargetReason>,
    /// ELB's description of the reason, e.g. "Health checks failed with these codes: [502]".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

aws_names! {
    /// A target's health state, with ELB's names.
    pub enum TargetState ("target state") {
        Initial = "initial",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
        UnhealthyDraining = "unhealthy.draining",
        Unused = "unused",
        Draining = "draining",
        Unavailable = "unavailable",
    }
}

aws_names! {
    /// Why a target is in its state, with ELB's reason codes.
    pub enum TargetReason ("target reason code") {
        RegistrationInProgress = "Elb.RegistrationInProgress",
        InitialHealthChecking = "Elb.InitialHealthChecking",
        ResponseCodeMismatch = "Target.ResponseCodeMismatch",
        Timeout = "Target.Timeout",
        FailedHealthChecks = "Target.FailedHealthChecks",
        NotRegistered = "Target.NotRegistered",
        NotInUse = "Target.NotInUse",
        DeregistrationInProgress = "Target.DeregistrationInProgress",
        InvalidState = "Target.InvalidState",
        IpUnusable = "Target.IpUnusable",
        HealthCheckDisabled = "Target.HealthCheckDisabled",
        InternalError = "Elb.InternalError",
    }
}

/// The database as seen from one AZ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// The DB instance identifier (the same in every AZ of a Multi-AZ instance).
    pub id: String,
    pub role: DbRole,
    pub status: DbStatus,
    /// Whether commits wait for the standby (`None` when the backend cannot tell; RDS
    /// Multi-AZ is always synchronous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<bool>,
}

/// The database's role in an AZ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbRole {
    Primary,
    Standby,
}

aws_names! {
    /// A DB instance's status, with RDS's names.
    pub enum DbStatus ("database status") {
        Available = "available",
        BackingUp = "backing-up",
        ConfiguringEnhancedMonitoring = "configuring-enhanced-monitoring",
        Creating = "creating",
        Deleting = "deleting",
        Failed = "failed",
        InaccessibleEncryptionCredentials = "inaccessible-encryption-credentials",
        IncompatibleNetwork = "incompatible-network",
        IncompatibleParameters = "incompatible-parameters",
        IncompatibleRestore = "incompatible-restore",
        Maintenance = "maintenance",
        Modifying = "modifying",
        Rebooting = "rebooting",
        Renaming = "renaming",
        ResettingMasterCredentials = "resetting-master-credentials",
        Starting = "starting",
        Stopped = "stopped",
        Stopping = "stopping",
        StorageFull = "storage-full",
        StorageOptimization = "storage-optimization",
        Upgrading = "upgrading",
    }
}

/// The Auto Scaling group's capacity settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
}

aws_names! {
    /// An Auto Scaling process that can be suspended.
    pub enum ScalingProcess ("scaling process") {
        Launch = "Launch",
        Terminate = "Terminate",
        AddToLoadBalancer = "AddToLoadBalancer",
        AlarmNotification = "AlarmNotification",
        AzRebalance = "AZRebalance",
        HealthCheck = "HealthCheck",
        InstanceRefresh = "InstanceRefresh",
        ReplaceUnhealthy = "ReplaceUnhealthy",
        ScheduledActions = "ScheduledActions",
    }
}

/// One thing that happened: a scaling activity, a stack event, a database event …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: EventSource,
    /// The AZ it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    pub message: String,
}

/// Which part of the stack an [`Event`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// Auto Scaling activities (launch, terminate, refresh replacements).
    Scaling,
    LoadBalancer,
    Database,
    /// Stack (CloudFormation) events.
    Stack,
    /// Faults injected and restored.
    Fault,
}

/// Time series for the recent past.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// The width of one point, in seconds.
    pub period_seconds: u32,
    pub series: Vec<MetricSeries>,
    /// Figures per instance, where the backend has them at no extra cost: the sandbox
    /// measures each instance's process and counts each target's requests; on AWS they would
    /// take calls per instance, so the AWS backend leaves this empty and reports per AZ only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceMetrics>,
}

/// One instance's latest figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceMetrics {
    /// The instance id.
    pub id: String,
    /// Share of one CPU its process used over the last sample (100 = one full CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Requests the load balancer sent it per second, over the last few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
}

impl Metrics {
    /// The figures of instance `id`, if the backend has any.
    pub fn instance(&self, id: &str) -> Option<&InstanceMetrics> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// The series of `metric` for `az` (`None` for stack-wide series).
    pub fn series(&self, metric: MetricKind, az: Option<&str>) -> Option<&MetricSeries> {
        self.series
            .iter()
            .find(|s| s.metric == metric && s.az.as_deref() == az)
    }
}

/// One metric's points, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    pub metric: MetricKind,
    /// The AZ it is measured in; `None` for stack-wide series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    pub points: Vec<MetricPoint>,
}

/// One value at one time (the start of its period).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub value: f64,
}

/// Which metric a series measures. Units are fixed per kind (see [`MetricKind::unit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Requests the load balancer received (per AZ).
    Requests,
    /// 5xx responses returned by targets (per AZ).
    Target5xx,
    /// 5xx responses generated by the load balancer itself (per AZ).
    Lb5xx,
    /// Median target response time (per AZ).
    LatencyP50,
    /// 99th percentile target response time (per AZ).
    LatencyP99,
    /// Healthy targets (per AZ).
    HealthyHosts,
    /// Average CPU of the instances.
    Cpu,
    DbCpu,
    DbConnections,
}

impl MetricKind {
    /// The unit every backend reports this metric in.
    pub fn unit(self) -> MetricUnit {
        match self {
            Self::Requests | Self::Target5xx | Self::Lb5xx | Self::HealthyHosts => {
                MetricUnit::Count
            }
            Self::LatencyP50 | Self::LatencyP99 => MetricUnit::Milliseconds,
            Self::Cpu | Self::DbCpu => MetricUnit::Percent,
            Self::DbConnections => MetricUnit::Count,
        }
    }
}

/// The unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricUnit {
    Count,
    Milliseconds,
    Percent,
}

/// A part of a snapshot that is read on its own and can fail on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Stack,
    Capacity,
    Instances,
    Targets,
    Database,
    Refreshes,
    Events,
    Metrics,
    Scaling,
    /// The active zonal shifts.
    Shifts,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stack => "stack",
            Self::Capacity => "capacity",
            Self::Instances => "instances",
            Self::Targets => "targets",
            Self::Database => "database",
            Self::Refreshes => "refreshes",
            Self::Events => "events",
            Self::Metrics => "metrics",
            Self::Scaling => "scaling",
            Self::Shifts => "zonal shifts",
        })
    }
}

/// A section that could not be read: "metrics unavailable: <reason>".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionError {
    pub section: Section,
    pub message: String,
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unavailable: {}", self.section, self.message)
    }
}
