//! The Auto Scaling group: capacity, placement, lifecycle, health, replacement, scaling
//! processes, AZ rebalancing and instance refreshes, as one pure state machine.
//!
//! [`Group::step`] takes the time and the target group's view of every instance and returns
//! the [`Action`]s a driver carries out (launch, register, deregister, terminate); the driver
//! reports back what only it can know ([`Group::gone`] when an instance has stopped,
//! [`Group::launch_failed`] when it could not start one). Operator calls
//! ([`Group::start_refresh`], [`Group::cancel_refresh`], [`Group::rollback_refresh`], faults'
//! [`Group::disable_az`] and [`Group::suspend`]) change the state at once and leave their
//! actions to the next step. [`Group::next_deadline`] says when the group must be stepped
//! again even if nothing else changes.
//!
//! The rules, with the AWS documentation each follows:
//! - Capacity: desired within min and max, AWS's own validation messages
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_UpdateAutoScalingGroup.html>).
//! - Placement: a launch goes to the enabled AZ with the fewest instances; scale in takes
//!   from the AZ with the most, the instance on the oldest launch template first, then the
//!   oldest (the default termination policy,
//!   <https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-termination-policies.html>).
//! - Health: with the ELB health check type an instance is `Unhealthy` when its target is
//!   unhealthy after the health check grace period, and is replaced (terminated, then the
//!   capacity launch makes up for it) unless ReplaceUnhealthy is suspended
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html>,
//!   <https://docs.aws.amazon.com/autoscaling/ec2/userguide/health-check-grace-period.html>,
//!   <https://docs.aws.amazon.com/autoscaling/ec2/userguide/replace-unhealthy-instance.html>).
//!   A new instance is `Pending` until its target is healthy or the grace period ends.
//! - Scaling processes: Launch, Terminate, ReplaceUnhealthy, AZRebalance and
//!   AddToLoadBalancer each stop what they name while suspended
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-suspend-resume-processes.html>).
//! - AZ rebalancing: when the enabled AZs differ by more than one instance, or instances run
//!   in an AZ no longer enabled, the group launches in the shortest AZ first and, once that
//!   instance is in service, terminates one in the longest; meanwhile it may exceed its
//!   maximum by 10 % or one instance, whichever is greater. Not while AZRebalance or Launch
//!   is suspended; with Terminate suspended it launches but does not terminate
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/auto-scaling-benefits.html#AutoScalingBehavior.Rebalancing>).
//! - One-instance actions: terminate (keeping or decrementing desired, refused below min),
//!   set unhealthy (replaced after the grace period), standby and back (a standby instance
//!   is deregistered, not health-checked and not counted toward capacity; entering keeps or
//!   decrements desired, exiting increments it, refused above max)
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-enter-exit-standby.html>).
//! - Zonal shift (the group's AZ impairment policy with `ZonalShiftEnabled`): while a shift
//!   away from an AZ is active the group treats the AZ as impaired: every launch (capacity,
//!   replacement, refresh) goes to the other enabled AZs, and instances already there stay
//!   ("Auto Scaling will launch all new capacity requests in the healthy Availability
//!   Zones", <https://docs.aws.amazon.com/r53recovery/latest/dg/arc-zonal-shift.resource-types.ec2-auto-scaling-groups.html>,
//!   <https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-zonal-shift.html>).
//!   Unhealthy instances are replaced in every AZ (the template's
//!   `ImpairedZoneHealthCheckBehavior: ReplaceUnhealthy`), their replacements launched
//!   elsewhere. AWS does not say how AZ rebalancing treats a shifted AZ; the model holds
//!   rebalancing while a shift is active (so it neither launches into the impaired AZ nor
//!   terminates the instances kept there) and rebalances once the shift ends. Scaling policies
//!   may raise desired capacity but not lower it (see [`super::scaling`]). One shift at a
//!   time (ARC's rule, see [`crate::port::shift`]); it ends by itself at its expiry.
//! - Instance refresh: see [`super::refresh`].
//! - Target tracking scaling: see [`super::scaling`]; the driver feeds it with
//!   [`Group::observe`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use time::OffsetDateTime;

use super::refresh::Run;
use super::scaling::Tracker;
use super::timings::Timings;
use crate::port::instance::{InstanceAction, InstancePlan};
use crate::port::{
    Capacity, CloudError, DeployRequest, Event, EventSource, FaultChange, HealthStatus,
    LifecycleState, Refresh, RefreshId, RefreshPreferences, RefreshRefusal, SandboxChange,
    ScalingProcess, ShiftRequest, TargetState, ZonalShift, no_active_refresh,
};

/// How many events the group keeps.
const EVENTS_KEPT: usize = 500;
/// How many finished refreshes the group keeps.
const REFRESHES_KEPT: usize = 5;

/// How the group starts.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Its AZs, in order; every one enabled at first.
    pub azs: Vec<String>,
    pub capacity: Capacity,
    /// The launch template version the group launches from at first.
    pub launch_template: u32,
    pub timings: Timings,
    /// Instance ids are this prefix and a five-digit counter.
    pub id_prefix: String,
}

/// What a driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start instance `id` from launch template `template` in `az`. If it cannot, the driver
    /// calls [`Group::launch_failed`].
    Launch {
        id: String,
        az: String,
        template: u32,
    },
    /// Register `id` with the target group (AddToLoadBalancer).
    Register { id: String, az: String },
    /// Deregister `id` from the target group; it drains.
    Deregister { id: String },
    /// Stop instance `id` once its target has drained (at most the deregistration delay),
    /// then call [`Group::gone`].
    Terminate { id: String },
}

/// What kind of thing an event records, for drivers and reports that time them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Launch,
    LaunchFailed,
    Terminate,
    /// An instance was found unhealthy.
    Unhealthy,
    /// A refresh changed status.
    Refresh,
    /// A rebalancing launch or termination.
    Rebalance,
    /// An instance moved to standby or back.
    Standby,
    /// A scaling policy changed desired capacity.
    Scaling,
    /// A zonal shift started, was cancelled or expired.
    ZonalShift,
    /// Something the driver recorded (a fault, a restart).
    Driver,
}

/// One event, stamped with the model's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEvent {
    pub kind: EventKind,
    pub event: Event,
}

/// One instance as the group sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub az: String,
    /// Its launch template version.
    pub template: u32,
    pub lifecycle: LifecycleState,
    pub health: HealthStatus,
    pub launched_at: OffsetDateTime,
    /// When it last went InService (its default instance warmup counts from there).
    pub in_service_at: Option<OffsetDateTime>,
}

impl Member {
    /// Neither terminating nor terminated.
    pub fn is_live(&self) -> bool {
        !matches!(
            self.lifecycle,
            LifecycleState::Terminating | LifecycleState::Terminated
        )
    }
}

#[derive(Debug, Clone)]
struct Rebalancing {
    launched: String,
    from_az: String,
}

/// The group's capacity after `action` on instance `id`, with AWS's refusals: a decrement
/// below min ("Terminating instance without replacement will violate group's min size
/// constraint",
/// <https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_TerminateInstanceInAutoScalingGroup.html>)
/// and an ExitStandby above max (it increments desired capacity,
/// <https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_ExitStandby.html>). Every
/// backend checks these here: the group model, and the AWS backend before its call.
pub fn capacity_after(
    capacity: Capacity,
    id: &str,
    action: InstanceAction,
) -> Result<Capacity, CloudError> {
    match action {
        InstanceAction::Terminate { decrement: true }
        | InstanceAction::Standby { decrement: true } => {
            if capacity.desired <= capacity.min {
                return Err(CloudError::refused(format!(
                    "desired capacity {} equals min size {}: taking {id} out without a \
                     replacement would violate the group's min size; keep desired capacity or \
                     lower min",
                    capacity.desired, capacity.min
                )));
            }
            Ok(Capacity {
                desired: capacity.desired - 1,
                ..capacity
            })
        }
        InstanceAction::Resume => {
            if capacity.desired >= capacity.max {
                return Err(CloudError::refused(format!(
                    "The instance {id} can not be moved out of standby: desired capacity would \
                     go from {} to {}, above the group's max size {}; raise max or take \
                     another instance out first",
                    capacity.desired,
                    capacity.desired + 1,
                    capacity.max
                )));
            }
            Ok(Capacity {
                desired: capacity.desired + 1,
                ..capacity
            })
        }
        InstanceAction::Terminate { decrement: false }
        | InstanceAction::Standby { decrement: false }
        | InstanceAction::Unhealthy => Ok(capacity),
    }
}

/// The group.
#[derive(Debug, Clone)]
pub struct Group {
    pub(super) timings: Timings,
    azs: Vec<String>,
    enabled: BTreeSet<String>,
    capacity: Capacity,
    suspended: BTreeSet<ScalingProcess>,
    /// The launch template version launches use.
    pub(super) current: u32,
    pub(super) members: Vec<Member>,
    pub(super) runs: VecDeque<Run>,
    events: VecDeque<ModelEvent>,
    queued: Vec<Action>,
    rebalancing: Option<Rebalancing>,
    /// Active zonal shifts by AZ (at most one).
    shifts: BTreeMap<String, ZonalShift>,
    id_prefix: String,
    next_id: u64,
    last_step: Option<OffsetDateTime>,
    pub(super) scaling: Tracker,
}

/// Whether `process` is one AZRebalance needs (AWS: with Launch suspended it does nothing).
fn blocks_rebalance(process: ScalingProcess) -> bool {
    matches!(
        process,
        ScalingProcess::AzRebalance | ScalingProcess::Launch
    )
}

impl Group {
    /// A group with no instance yet; the first step launches its desired capacity.
    pub fn new(config: GroupConfig) -> Group {
        Group {
            timings: config.timings,
            enabled: config.azs.iter().cloned().collect(),
            azs: config.azs,
            capacity: config.capacity,
            suspended: BTreeSet::new(),
            current: config.launch_template,
            members: Vec::new(),
            runs: VecDeque::new(),
            events: VecDeque::new(),
            queued: Vec::new(),
            rebalancing: None,
            shifts: BTreeMap::new(),
            id_prefix: config.id_prefix,
            next_id: 0,
            last_step: None,
            scaling: Tracker::default(),
        }
    }

    // ----- reading

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The group's AZs, in order.
    pub fn azs(&self) -> &[String] {
        &self.azs
    }

    /// The AZs open for launches, in the group's order.
    pub fn enabled_azs(&self) -> Vec<String> {
        self.azs
            .iter()
            .filter(|az| self.enabled.contains(*az))
            .cloned()
            .collect()
    }

    pub fn suspended(&self) -> Vec<ScalingProcess> {
        self.suspended.iter().copied().collect()
    }

    pub fn is_suspended(&self, process: ScalingProcess) -> bool {
        self.suspended.contains(&process)
    }

    /// The launch template version launches use now.
    pub fn launch_template(&self) -> u32 {
        self.current
    }

    /// Every instance the group knows, terminating ones included, in launch order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The instances that count toward capacity: neither terminating nor in standby.
    fn live(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.is_live() && m.lifecycle != LifecycleState::Standby)
    }

    /// How many instances count toward capacity (neither terminating, terminated nor in
    /// standby).
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// Refreshes, newest first.
    pub fn refreshes(&self) -> Vec<Refresh> {
        self.runs.iter().map(|r| r.refresh.clone()).collect()
    }

    /// One refresh by id.
    pub fn refresh(&self, id: &RefreshId) -> Option<&Refresh> {
        self.runs.iter().map(|r| &r.refresh).find(|r| &r.id == id)
    }

    /// Events, newest first.
    pub fn events(&self) -> impl Iterator<Item = &ModelEvent> {
        self.events.iter()
    }

    /// When the group must be stepped again at the latest, if anything waits on the clock.
    pub fn next_deadline(&self) -> Option<OffsetDateTime> {
        let grace = self.timings.grace_period;
        let after = self.last_step;
        let graces = self
            .live()
            .map(|m| m.launched_at + grace)
            .filter(|at| after.is_none_or(|last| *at > last));
        let runs = self
            .runs
            .iter()
            .filter(|r| !r.refresh.status.is_terminal())
            .filter_map(|r| r.deadline(&self.timings));
        let expiries = self.shifts.values().map(|shift| shift.expires_at);
        graces
            .chain(runs)
            .chain(expiries)
            .chain(self.scaling_deadline())
            .min()
    }

    /// Active zonal shifts.
    pub fn zonal_shifts(&self) -> Vec<ZonalShift> {
        self.shifts.values().cloned().collect()
    }

    /// The AZs with an active zonal shift: the load balancer sends them no new request.
    pub fn shifted_azs(&self) -> BTreeSet<String> {
        self.shifts.keys().cloned().collect()
    }

    // ----- the driver's reports

    /// Records an event of the driver's (a fault, a restart) in the group's log.
    pub fn record(
        &mut self,
        at: OffsetDateTime,
        source: EventSource,
        az: Option<&str>,
        message: String,
    ) {
        self.push_event(EventKind::Driver, at, source, az, message);
    }

    /// Records an event of the model's own of `kind`.
    pub(super) fn record_kind(
        &mut self,
        kind: EventKind,
        at: OffsetDateTime,
        source: EventSource,
        message: String,
    ) {
        self.push_event(kind, at, source, None, message);
    }

    /// Instance `id` has stopped: after a termination the group asked for, or on its own (a
    /// killed instance, `why` says how). It leaves the group; its target is deregistered.
    pub fn gone(&mut self, now: OffsetDateTime, id: &str, why: Option<&str>) {
        let Some(index) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let member = self.members.remove(index);
        if member.is_live() {
            self.queued.push(Action::Deregister { id: id.to_owned() });
            let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
            self.event(
                EventKind::Terminate,
                now,
                Some(&member.az),
                format!("Terminating EC2 instance: {id}{why}"),
            );
        }
    }

    /// The driver could not start instance `id`: it leaves the group, and a refresh waiting
    /// for it fails.
    pub fn launch_failed(&mut self, now: OffsetDateTime, id: &str, reason: &str) {
        let Some(index) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let member = self.members.remove(index);
        self.queued.push(Action::Deregister { id: id.to_owned() });
        self.event(
            EventKind::LaunchFailed,
            now,
            Some(&member.az),
            format!("Launching a new EC2 instance: {id}. Status Reason: {reason}"),
        );
        self.refresh_replacement_lost(now, id, &format!("Instance refresh failed: {reason}"));
    }

    // ----- operator calls

    /// Sets desired, min and max, with AWS's validation.
    pub fn set_capacity(&mut self, capacity: Capacity) -> Result<(), CloudError> {
        if capacity.max < capacity.min {
            return Err(CloudError::invalid(
                "capacity.max",
                format!(
                    "Max bound, {}, must be greater than or equal to min bound, {}",
                    capacity.max, capacity.min
                ),
            ));
        }
        if !(capacity.min..=capacity.max).contains(&capacity.desired) {
            return Err(CloudError::invalid(
                "capacity.desired",
                format!(
                    "Desired capacity:{} must be between the specified min size:{} and max \
                     size:{}",
                    capacity.desired, capacity.min, capacity.max
                ),
            ));
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Sets desired capacity (a scaling policy's decision, already within min and max).
    pub(super) fn set_desired(&mut self, desired: u32) {
        self.capacity.desired = desired.clamp(self.capacity.min, self.capacity.max);
    }

    /// Removes `az` from the launch AZs (its subnets taken out of the group); returns
    /// whether it was there.
    pub fn disable_az(&mut self, az: &str) -> bool {
        self.enabled.remove(az)
    }

    /// The launch-block fault, as AWS's is made: the AZ's subnets out of the group and
    /// AZRebalance suspended (so the group does not move its other instances out of the AZ).
    /// Returns what changed, for the fault's record.
    pub fn block_launches(&mut self, az: &str) -> Vec<FaultChange> {
        let mut changes = Vec::new();
        if self.disable_az(az) {
            changes.push(FaultChange::Sandbox(SandboxChange::LaunchesBlocked {
                az: az.to_owned(),
            }));
        }
        if self.suspend(ScalingProcess::AzRebalance) {
            changes.push(FaultChange::Sandbox(SandboxChange::ProcessesSuspended {
                processes: vec![ScalingProcess::AzRebalance],
            }));
        }
        changes
    }

    /// Puts `az` back among the launch AZs; returns whether it was missing.
    pub fn enable_az(&mut self, az: &str) -> bool {
        self.azs.iter().any(|a| a == az) && self.enabled.insert(az.to_owned())
    }

    /// Suspends `process`; returns whether it was running.
    pub fn suspend(&mut self, process: ScalingProcess) -> bool {
        self.suspended.insert(process)
    }

    /// Resumes `process`; returns whether it was suspended.
    pub fn resume(&mut self, process: ScalingProcess) -> bool {
        self.suspended.remove(&process)
    }

    /// Starts a zonal shift away from `request.az` at `now`, on `resources`; refused as ARC
    /// refuses it (an AZ not the group's, a shift already active).
    pub fn start_zonal_shift(
        &mut self,
        now: OffsetDateTime,
        request: &ShiftRequest,
        resources: Vec<String>,
    ) -> Result<ZonalShift, CloudError> {
        request.validate()?;
        if !self.azs.contains(&request.az) {
            return Err(CloudError::invalid(
                "az",
                format!(
                    "{:?} is not one of the group's AZs ({})",
                    request.az,
                    self.azs.join(", ")
                ),
            ));
        }
        if let Some(active) = self.shifts.values().next() {
            return Err(CloudError::conflict(format!(
                "a zonal shift is already active ({active}); cancel it first"
            )));
        }
        let expires_in = time::Duration::try_from(request.expires_in)
            .map_err(|e| CloudError::invalid("expires_in", e.to_string()))?;
        let shift = ZonalShift {
            az: request.az.clone(),
            started_at: now,
            expires_at: now + expires_in,
            resources,
            ids: vec![format!("shift-{}", now.unix_timestamp_nanos())],
            comment: request.comment.clone(),
        };
        self.shifts.insert(shift.az.clone(), shift.clone());
        self.event(
            EventKind::ZonalShift,
            now,
            Some(&shift.az),
            format!("Zonal shift started: {shift}"),
        );
        Ok(shift)
    }

    /// Cancels the active zonal shift (the one away from `az`, if given); returns what was
    /// cancelled, `NotFound` when nothing was active.
    pub fn cancel_zonal_shift(
        &mut self,
        now: OffsetDateTime,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        let azs: Vec<String> = self
            .shifts
            .keys()
            .filter(|shifted| az.is_none_or(|az| az == shifted.as_str()))
            .cloned()
            .collect();
        if azs.is_empty() {
            return Err(CloudError::not_found(match az {
                Some(az) => format!("active zonal shift away from {az}"),
                None => "active zonal shift".to_owned(),
            }));
        }
        let mut cancelled = Vec::new();
        for az in azs {
            if let Some(shift) = self.shifts.remove(&az) {
                self.event(
                    EventKind::ZonalShift,
                    now,
                    Some(&az),
                    format!("Zonal shift away from {az} cancelled"),
                );
                cancelled.push(shift);
            }
        }
        Ok(cancelled)
    }

    /// Ends the shifts whose time is up.
    fn expire_shifts(&mut self, now: OffsetDateTime) {
        let expired: Vec<String> = self
            .shifts
            .values()
            .filter(|shift| shift.expires_at <= now)
            .map(|shift| shift.az.clone())
            .collect();
        for az in expired {
            self.shifts.remove(&az);
            self.event(
                EventKind::ZonalShift,
                now,
                Some(&az),
                format!("Zonal shift away from {az} expired"),
            );
        }
    }

    /// Whether the group may launch into `az`: enabled, and not shifted away from.
    fn can_launch_in(&self, az: &str) -> bool {
        self.enabled.contains(az) && !self.shifts.contains_key(az)
    }

    /// Whether a refresh may start now (none is active).
    pub fn check_can_start_refresh(&self) -> Result<(), CloudError> {
        match self.active_run() {
            Some(active) => Err(RefreshRefusal::InProgress.error(format!(
                "instance refresh {} is already {}",
                active.refresh.id, active.refresh.status
            ))),
            None => Ok(()),
        }
    }

    /// Starts refresh `id` of `request` to launch template version `desired`; `matching`
    /// are the versions equal to it in content (for SkipMatching).
    pub fn start_refresh(
        &mut self,
        now: OffsetDateTime,
        id: RefreshId,
        desired: u32,
        request: &DeployRequest,
        matching: &BTreeSet<u32>,
    ) -> Result<RefreshId, CloudError> {
        self.check_can_start_refresh()?;
        let (version, prefs) = (request.version.as_str(), request.preferences.clone());
        let todo = self.refresh_scope(now, &prefs, |m| {
            !(prefs.skip_matching && matching.contains(&m.template))
        });
        let run = Run::new(now, id.clone(), desired, self.current, version, prefs, todo);
        self.runs.push_front(run);
        self.event(
            EventKind::Refresh,
            now,
            None,
            format!(
                "Instance refresh {id} started: launch template version {desired} \
                 (application version {version})"
            ),
        );
        Ok(id)
    }

    /// Cancels the active refresh (or rollback).
    pub fn cancel_refresh(&mut self, now: OffsetDateTime) -> Result<RefreshId, CloudError> {
        let run = self
            .runs
            .iter_mut()
            .find(|r| r.refresh.status.can_cancel())
            .ok_or_else(no_active_refresh)?;
        let id = run.cancel();
        self.event(
            EventKind::Refresh,
            now,
            None,
            format!("Instance refresh {id} is Cancelling"),
        );
        Ok(id)
    }

    /// Rolls the active refresh back to the launch template version it started from.
    pub fn rollback_refresh(&mut self, now: OffsetDateTime) -> Result<RefreshId, CloudError> {
        let index = self
            .runs
            .iter()
            .position(|r| !r.refresh.status.is_terminal())
            .ok_or_else(no_active_refresh)?;
        let status = self.runs[index].refresh.status;
        if !status.can_roll_back() {
            return Err(RefreshRefusal::Irreversible.error(format!(
                "instance refresh {} is {status} and cannot be rolled back",
                self.runs[index].refresh.id
            )));
        }
        self.with_run(index, |group, run| {
            group.start_rollback(now, run, "Rollback requested by the operator".into());
        });
        let id = self.runs[index].refresh.id.clone();
        self.event(
            EventKind::Refresh,
            now,
            None,
            format!("Instance refresh {id} is RollbackInProgress"),
        );
        Ok(id)
    }

    /// Fails the active refresh with `reason` (an alarm of its AlarmSpecification fired); it
    /// rolls back with AutoRollback.
    pub fn fail_refresh(&mut self, now: OffsetDateTime, reason: &str) -> Result<(), CloudError> {
        let index = self
            .runs
            .iter()
            .position(|r| !r.refresh.status.is_terminal())
            .ok_or_else(no_active_refresh)?;
        let before = self.runs[index].refresh.status;
        self.with_run(index, |group, run| {
            group.fail(now, run, reason.to_owned());
        });
        self.refresh_status_event(now, index, before);
        Ok(())
    }

    // ----- one-instance actions (TerminateInstanceInAutoScalingGroup, SetInstanceHealth,
    // EnterStandby / ExitStandby)

    /// The live member `id`, or AWS's refusal of an instance that is not in the group.
    fn instance_in_group(&self, id: &str) -> Result<&Member, CloudError> {
        self.members
            .iter()
            .find(|m| m.id == id && m.lifecycle != LifecycleState::Terminating)
            .ok_or_else(|| CloudError::not_found(format!("instance {id} in the group")))
    }

    /// Desired capacity one lower, refused below min (see [`capacity_after`]).
    fn decrement_desired(&mut self, id: &str) -> Result<(), CloudError> {
        self.capacity = capacity_after(
            self.capacity,
            id,
            InstanceAction::Terminate { decrement: true },
        )?;
        Ok(())
    }

    /// Terminates instance `id`, keeping desired capacity (the group launches a replacement)
    /// or decrementing it
    /// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_TerminateInstanceInAutoScalingGroup.html>).
    pub fn terminate_instance(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        decrement: bool,
    ) -> Result<(), CloudError> {
        self.instance_in_group(id)?;
        if decrement {
            self.decrement_desired(id)?;
        }
        let why = if decrement {
            "an instance was taken out of service in response to a user request, shrinking the \
             capacity"
        } else {
            "an instance was taken out of service in response to a user request"
        };
        self.terminate(now, id, why);
        Ok(())
    }

    /// Marks instance `id` unhealthy (SetInstanceHealth with ShouldRespectGracePeriod): the
    /// group replaces it once its grace period is over
    /// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_SetInstanceHealth.html>).
    pub fn set_unhealthy(&mut self, now: OffsetDateTime, id: &str) -> Result<(), CloudError> {
        self.instance_in_group(id)?;
        let Some(member) = self.members.iter_mut().find(|m| m.id == id) else {
            return Err(CloudError::not_found(format!("instance {id} in the group")));
        };
        member.health = HealthStatus::Unhealthy;
        let az = member.az.clone();
        self.event(
            EventKind::Unhealthy,
            now,
            Some(&az),
            format!("Instance {id} was set to Unhealthy by a user request"),
        );
        Ok(())
    }

    /// Moves InService instance `id` to standby (EnterStandby): deregistered from the target
    /// group, not health-checked, not counted toward capacity. With `decrement` desired
    /// capacity drops by one (refused below min); without, the group launches a replacement
    /// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_EnterStandby.html>,
    /// <https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-enter-exit-standby.html>).
    pub fn enter_standby(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        decrement: bool,
    ) -> Result<(), CloudError> {
        let member = self.instance_in_group(id)?;
        if member.lifecycle != LifecycleState::InService {
            return Err(CloudError::refused(format!(
                "The instance {id} is not in InService (it is {}): only InService instances \
                 can be moved to standby",
                member.lifecycle
            )));
        }
        let original = self.capacity.desired;
        if decrement {
            self.decrement_desired(id)?;
        }
        let Some(member) = self.members.iter_mut().find(|m| m.id == id) else {
            return Err(CloudError::not_found(format!("instance {id} in the group")));
        };
        member.lifecycle = LifecycleState::Standby;
        let az = member.az.clone();
        self.queued.push(Action::Deregister { id: id.to_owned() });
        let shrink = if decrement {
            format!(
                ", shrinking the capacity from {original} to {}",
                original - 1
            )
        } else {
            String::new()
        };
        self.event(
            EventKind::Standby,
            now,
            Some(&az),
            format!(
                "Moving EC2 instance to Standby: {id} (moved to standby in response to a user \
                 request{shrink})"
            ),
        );
        Ok(())
    }

    /// Returns standby instance `id` to service (ExitStandby): desired capacity rises by one,
    /// refused when that would exceed max; the instance is registered again and is `Pending`
    /// until its target is healthy
    /// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_ExitStandby.html>).
    pub fn exit_standby(&mut self, now: OffsetDateTime, id: &str) -> Result<(), CloudError> {
        let member = self.instance_in_group(id)?;
        if member.lifecycle != LifecycleState::Standby {
            return Err(CloudError::refused(format!(
                "The instance {id} is not in Standby (it is {})",
                member.lifecycle
            )));
        }
        let original = self.capacity.desired;
        self.capacity = capacity_after(self.capacity, id, InstanceAction::Resume)?;
        let Some(member) = self.members.iter_mut().find(|m| m.id == id) else {
            return Err(CloudError::not_found(format!("instance {id} in the group")));
        };
        member.lifecycle = LifecycleState::Pending;
        let az = member.az.clone();
        if !self.is_suspended(ScalingProcess::AddToLoadBalancer) {
            self.queued.push(Action::Register {
                id: id.to_owned(),
                az: az.clone(),
            });
        }
        self.event(
            EventKind::Standby,
            now,
            Some(&az),
            format!(
                "Moving EC2 instance out of Standby: {id} (moved out of standby in response to \
                 a user request, increasing the capacity from {original} to {})",
                original + 1
            ),
        );
        Ok(())
    }

    /// Carries out `action` on instance `id` (the one entry point the backends drive).
    pub fn act_on_instance(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        action: InstanceAction,
    ) -> Result<(), CloudError> {
        match action {
            InstanceAction::Terminate { decrement } => self.terminate_instance(now, id, decrement),
            InstanceAction::Unhealthy => self.set_unhealthy(now, id),
            InstanceAction::Standby { decrement } => self.enter_standby(now, id, decrement),
            InstanceAction::Resume => self.exit_standby(now, id),
        }
    }

    /// The dry run of `action` on `id`: carried out on a copy of the group, so it is refused
    /// exactly as the action would be; `calls` are the backend's.
    pub fn describe_instance_action(
        &self,
        now: OffsetDateTime,
        id: &str,
        action: InstanceAction,
        calls: Vec<String>,
    ) -> Result<InstancePlan, CloudError> {
        let az = self.instance_in_group(id)?.az.clone();
        self.clone().act_on_instance(now, id, action)?;
        Ok(InstancePlan::new(id, &az, action, calls))
    }

    // ----- the step

    /// One step at `now`, with `target` giving each instance's target state.
    pub fn step(
        &mut self,
        now: OffsetDateTime,
        target: &dyn Fn(&str) -> TargetState,
    ) -> Vec<Action> {
        self.last_step = Some(now);
        self.expire_shifts(now);
        self.health(now, target);
        self.settle_launching();
        self.step_refresh(now, target);
        self.rebalance(now);
        self.scale(now);
        std::mem::take(&mut self.queued)
    }

    fn health(&mut self, now: OffsetDateTime, target: &dyn Fn(&str) -> TargetState) {
        let grace = self.timings.grace_period;
        let mut unhealthy = Vec::new();
        // Instances in standby are not health-checked (AWS: "Amazon EC2 Auto Scaling does not
        // perform health checks on instances that are in a Standby state").
        for member in self
            .members
            .iter_mut()
            .filter(|m| m.is_live() && m.lifecycle != LifecycleState::Standby)
        {
            let state = target(&member.id);
            let past_grace = now >= member.launched_at + grace;
            if member.lifecycle == LifecycleState::Pending
                && (state == TargetState::Healthy || past_grace)
            {
                member.lifecycle = LifecycleState::InService;
                member.in_service_at = Some(now);
            }
            if past_grace
                && state == TargetState::Unhealthy
                && member.health == HealthStatus::Healthy
            {
                member.health = HealthStatus::Unhealthy;
                unhealthy.push((member.id.clone(), member.az.clone()));
            }
        }
        for (id, az) in unhealthy {
            self.event(
                EventKind::Unhealthy,
                now,
                Some(&az),
                format!("Instance {id} is Unhealthy: its target failed ELB health checks"),
            );
        }
        if !self.is_suspended(ScalingProcess::ReplaceUnhealthy) {
            // An instance set unhealthy by hand within its grace period waits for its end.
            let replace: Vec<String> = self
                .live()
                .filter(|m| m.health == HealthStatus::Unhealthy && now >= m.launched_at + grace)
                .map(|m| m.id.clone())
                .collect();
            for id in replace {
                self.terminate(
                    now,
                    &id,
                    "an instance was taken out of service in response to an ELB system health \
                     check failure",
                );
            }
        }
    }

    fn scale(&mut self, now: OffsetDateTime) {
        let desired = usize::try_from(self.capacity.desired).unwrap_or(usize::MAX);
        if !self.is_suspended(ScalingProcess::Launch) {
            let missing = desired.saturating_sub(self.live_count());
            let why = self
                .scaling
                .out_cause
                .as_ref()
                .map(|cause| format!(" ({cause})"))
                .unwrap_or_default();
            for _ in 0..missing {
                let template = self.current;
                let launched = self.launch(now, template, None, &why);
                if let Some(id) = &launched
                    && !why.is_empty()
                {
                    self.scaling.launching.insert(id.clone());
                }
                if launched.is_none() {
                    self.event(
                        EventKind::LaunchFailed,
                        now,
                        None,
                        "Launching a new EC2 instance. Status Reason: no Availability Zone is \
                         enabled for launches"
                            .to_owned(),
                    );
                    break;
                }
            }
        }
        if self.live_count() >= desired {
            self.scaling.out_cause = None;
        }
        let busy = self.runs.iter().any(Run::has_batch) || self.rebalancing.is_some();
        if !busy && !self.is_suspended(ScalingProcess::Terminate) {
            let extra = self.live_count().saturating_sub(desired);
            for _ in 0..extra {
                let Some(id) = self.scale_in_victim(None) else {
                    break;
                };
                self.terminate(
                    now,
                    &id,
                    "an instance was taken out of service in response to a difference between \
                     desired and actual capacity, shrinking the capacity",
                );
            }
        }
    }

    /// The instance the default termination policy takes: from `az`, or the AZ with the most
    /// live instances (an AZ no longer enabled first); there, the oldest launch template,
    /// then the oldest instance.
    fn scale_in_victim(&self, az: Option<&str>) -> Option<String> {
        let az = match az {
            Some(az) => az.to_owned(),
            None => {
                let counts = self.counts();
                let disabled = self.live().find(|m| !self.enabled.contains(&m.az));
                match disabled {
                    Some(m) => m.az.clone(),
                    None => self
                        .azs
                        .iter()
                        .rev()
                        .max_by_key(|az| counts.get(*az).copied().unwrap_or(0))?
                        .clone(),
                }
            }
        };
        self.live()
            .filter(|m| m.az == az)
            .min_by_key(|m| (m.template, m.launched_at))
            .map(|m| m.id.clone())
    }

    /// Live instances per AZ (every AZ of the group present).
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> =
            self.azs.iter().map(|az| (az.clone(), 0)).collect();
        for member in self.live() {
            *counts.entry(member.az.clone()).or_default() += 1;
        }
        counts
    }

    /// The enabled AZ not shifted away from with the fewest live instances (first in order on
    /// a tie).
    fn launch_az(&self) -> Option<String> {
        let counts = self.counts();
        self.azs
            .iter()
            .filter(|az| self.can_launch_in(az))
            .min_by_key(|az| counts.get(*az).copied().unwrap_or(0))
            .cloned()
    }

    /// How far above max the group may go while rebalancing: 10 % of max or one instance,
    /// whichever is greater.
    pub fn rebalance_margin(max: u32) -> u32 {
        (max / 10).max(1)
    }

    fn rebalance(&mut self, now: OffsetDateTime) {
        if self.suspended.iter().any(|p| blocks_rebalance(*p)) || !self.shifts.is_empty() {
            self.rebalancing = None;
            return;
        }
        if self.runs.iter().any(|r| !r.refresh.status.is_terminal()) {
            return;
        }
        if let Some(rebalancing) = self.rebalancing.clone() {
            match self.member(&rebalancing.launched).map(|m| m.lifecycle) {
                Some(LifecycleState::Pending) => return,
                Some(LifecycleState::InService) => {
                    self.rebalancing = None;
                    if !self.is_suspended(ScalingProcess::Terminate)
                        && let Some(id) = self.scale_in_victim(Some(&rebalancing.from_az))
                    {
                        self.terminate_as(
                            EventKind::Rebalance,
                            now,
                            &id,
                            "an instance was taken out of service to aid in balancing the \
                             group's zones",
                        );
                    }
                    return;
                }
                _ => self.rebalancing = None,
            }
        }
        let desired = usize::try_from(self.capacity.desired).unwrap_or(usize::MAX);
        let live = self.live_count();
        if live < desired || self.live().any(|m| m.lifecycle == LifecycleState::Pending) {
            return;
        }
        let counts = self.counts();
        let enabled: Vec<(&String, usize)> = self
            .azs
            .iter()
            .filter(|az| self.enabled.contains(*az))
            .map(|az| (az, counts.get(az).copied().unwrap_or(0)))
            .collect();
        let Some(&(short, fewest)) = enabled.iter().min_by_key(|(_, n)| *n) else {
            return;
        };
        let stray = self
            .live()
            .find(|m| !self.enabled.contains(&m.az))
            .map(|m| m.az.clone());
        let from = match stray {
            Some(az) => az,
            None => {
                let Some(&(long, most)) = enabled.iter().rev().max_by_key(|(_, n)| *n) else {
                    return;
                };
                if most <= fewest + 1 {
                    return;
                }
                long.clone()
            }
        };
        let limit = self.capacity.max + Self::rebalance_margin(self.capacity.max);
        if u32::try_from(live + 1).unwrap_or(u32::MAX) > limit {
            return;
        }
        let short = short.clone();
        let template = self.current;
        if let Some(id) = self.launch(
            now,
            template,
            Some(&short),
            " (an instance was launched to aid in balancing the group's zones)",
        ) {
            self.rebalancing = Some(Rebalancing {
                launched: id,
                from_az: from,
            });
        }
    }

    // ----- building blocks shared with the refresh

    /// Launches one instance from `template` into `az` (if enabled) or the enabled AZ with
    /// the fewest instances; returns its id, or `None` when no AZ is enabled.
    pub(super) fn launch(
        &mut self,
        now: OffsetDateTime,
        template: u32,
        az: Option<&str>,
        why: &str,
    ) -> Option<String> {
        let az = match az.filter(|az| self.can_launch_in(az)) {
            Some(az) => az.to_owned(),
            None => self.launch_az()?,
        };
        self.next_id += 1;
        let id = format!("{}{:05}", self.id_prefix, self.next_id);
        self.members.push(Member {
            id: id.clone(),
            az: az.clone(),
            template,
            lifecycle: LifecycleState::Pending,
            health: HealthStatus::Healthy,
            launched_at: now,
            in_service_at: None,
        });
        self.queued.push(Action::Launch {
            id: id.clone(),
            az: az.clone(),
            template,
        });
        if !self.is_suspended(ScalingProcess::AddToLoadBalancer) {
            self.queued.push(Action::Register {
                id: id.clone(),
                az: az.clone(),
            });
        }
        let kind = if why.contains("balancing") {
            EventKind::Rebalance
        } else {
            EventKind::Launch
        };
        self.event(
            kind,
            now,
            Some(&az),
            format!("Launching a new EC2 instance: {id}{why}"),
        );
        Some(id)
    }

    /// Takes `id` out of service: deregistered, then stopped.
    pub(super) fn terminate(&mut self, now: OffsetDateTime, id: &str, why: &str) {
        self.terminate_as(EventKind::Terminate, now, id, why);
    }

    fn terminate_as(&mut self, kind: EventKind, now: OffsetDateTime, id: &str, why: &str) {
        let Some(member) = self.members.iter_mut().find(|m| m.id == id && m.is_live()) else {
            return;
        };
        member.lifecycle = LifecycleState::Terminating;
        let az = member.az.clone();
        self.queued.push(Action::Deregister { id: id.to_owned() });
        self.queued.push(Action::Terminate { id: id.to_owned() });
        self.event(
            kind,
            now,
            Some(&az),
            format!("Terminating EC2 instance: {id} ({why})"),
        );
    }

    pub(super) fn active_run(&self) -> Option<&Run> {
        self.runs.iter().find(|r| !r.refresh.status.is_terminal())
    }

    /// Runs `f` on run `index` taken out of the list (so `f` may change the group too).
    pub(super) fn with_run<T>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Group, &mut Run) -> T,
    ) -> Option<T> {
        let mut run = self.runs.remove(index)?;
        let out = f(self, &mut run);
        self.runs.insert(index, run);
        Some(out)
    }

    pub(super) fn refresh_status_event(
        &mut self,
        now: OffsetDateTime,
        index: usize,
        before: crate::port::RefreshStatus,
    ) {
        let Some(run) = self.runs.get_mut(index) else {
            return;
        };
        let after = run.refresh.status;
        if after == before {
            return;
        }
        if after.is_terminal() {
            run.refresh.ended_at = Some(now);
        }
        let why = run
            .refresh
            .status_reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let message = format!("Instance refresh {} is {after}{why}", run.refresh.id);
        self.event(EventKind::Refresh, now, None, message);
        while self.runs.len() > REFRESHES_KEPT
            && self
                .runs
                .back()
                .is_some_and(|r| r.refresh.status.is_terminal())
        {
            self.runs.pop_back();
        }
    }

    pub(super) fn event(
        &mut self,
        kind: EventKind,
        at: OffsetDateTime,
        az: Option<&str>,
        message: String,
    ) {
        self.push_event(kind, at, EventSource::Scaling, az, message);
    }

    fn push_event(
        &mut self,
        kind: EventKind,
        at: OffsetDateTime,
        source: EventSource,
        az: Option<&str>,
        message: String,
    ) {
        self.events.push_front(ModelEvent {
            kind,
            event: Event {
                at,
                source,
                az: az.map(str::to_owned),
                message,
            },
        });
        self.events.truncate(EVENTS_KEPT);
    }

    pub(super) fn warmup(&self, prefs: &RefreshPreferences) -> Duration {
        prefs
            .instance_warmup_seconds
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(self.timings.default_warmup)
    }
}
