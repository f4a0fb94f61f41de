//! The Cloud port: the one interface between the console and a cloud, and the
//! backend-neutral types that cross it. The AWS backend and the sandbox implement
//! [`Cloud`]; the console holds a [`Guarded`] one, which applies the safety rules, and
//! chooses the backend with [`BackendChoice`].
//!
//! The types are also a wire format: a [`Snapshot`] serialised is the output of
//! `triad status --json`, and the sandbox daemon's control protocol carries these types as
//! JSON. Times are RFC 3339; enum values use AWS's names wherever AWS has a name for them.
//!
//! - [`stack`]: which stack, what it should be, plans, provisioning events, outputs.
//! - [`snapshot`]: the stack now, per Availability Zone, with per-section errors.
//! - [`refresh`]: deploy requests, instance refresh preferences and status.
//! - [`scaling`]: target tracking policies, their alarms and decisions.
//! - [`fault`]: faults, their dry runs, and records of what they changed.
//! - [`shift`]: zonal shifts (away from one AZ for a bounded time) and their rules.
//! - [`logs`]: the webapp's log lines, their filters and follow cursor.
//! - [`cloud`]: the [`Cloud`] trait.
//! - [`guard`]: the safety rules.
//! - [`backend`]: `--aws` or the sandbox.
//! - [`clock`]: injected time.

mod names;

pub mod backend;
pub mod clock;
pub mod cloud;
pub mod error;
pub mod fault;
pub mod guard;
pub mod instance;
pub mod logs;
pub mod refresh;
pub mod scaling;
pub mod shift;
pub mod snapshot;
pub mod stack;

pub use backend::{Attachment, AwsSettings, BackendChoice, BackendFlags};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cloud::{BackendKind, Cloud, CloudStream, failed_stream, refresh_outcome};
pub use error::CloudError;
pub use fault::{
    AwsChange, CapacityCheck, Fault, FaultChange, FaultKind, FaultPlan, FaultRecord, FaultStep,
    PlannedAction, SandboxChange, StepPlan, check_fault_az, plan_fault,
};
pub use guard::{Guarded, SessionMode, check_fault, check_mutation};
pub use instance::{InstanceAction, InstancePlan, check_instance_action};
pub use logs::{LogCursor, LogLevel, LogLine, LogPage, LogQuery};
pub use names::UnknownName;
pub use refresh::{
    CheckpointInfo, DEFAULT_CHECKPOINT_DELAY_SECONDS, DeployRequest, Refresh, RefreshId,
    RefreshPreferences, RefreshRefusal, RefreshStatus, RollbackDetails, ScaleInProtectedInstances,
    StandbyInstances, no_active_refresh, parse_env_override,
};
pub use scaling::{
    AlarmSide, AlarmState, PolicyAlarm, PolicyView, ScalingDecision, ScalingDirection,
    ScalingMetric, ScalingPolicy, ScalingView,
};
pub use shift::{ShiftPlan, ShiftRequest, ZonalShift, check_shift, plan_shift};
pub use snapshot::{
    AzView, Capacity, Database, DbRole, DbStatus, DurationInForce, Event, EventSource,
    HealthStatus, Instance, InstanceMetrics, LifecycleState, MetricKind, MetricPoint, MetricSeries,
    MetricUnit, Metrics, SandboxClock, ScalingProcess, Section, SectionError, Snapshot, Target,
    TargetReason, TargetState,
};
pub use stack::{
    ChangeAction, DesiredStack, Outputs, Plan, PlanSummary, ProvisionEvent, ResourceChange,
    ResourceEvent, ResourceStatus, StackOperation, StackRef, StackStatus,
};
