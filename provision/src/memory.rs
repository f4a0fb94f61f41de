//! A deterministic in-memory [`Cloud`] with an injected clock, for unit tests of the console
//! and the drill engine. It is not a product backend: nothing runs, nothing is reachable.
//!
//! It models a fleet across three AZs (by default `mem-1a`, `mem-1b`, `mem-1c`), a load
//! balancer's view of it, a Multi-AZ database, instance refreshes with AWS's preferences and
//! status names, and the sandbox's faults. Time and progress move only when the test says so:
//!
//! - [`MemoryCloud::tick`] advances the simulation one step: every registered target gets
//!   one health check (failing in a blackholed AZ), then the group model
//!   ([`crate::model::Group`], the same one the sandbox fleet drives) takes one step at the
//!   clock's time and its actions are carried out at once on fake instances. The model runs
//!   on [`Timings::immediate`] but for a 300 s health check grace period: one check decides a
//!   target's state, so a launch is `Pending` for one tick and an active refresh moves one
//!   batch per tick, or waits at a checkpoint / bakes until the clock allows; an instance whose
//!   target fails is found unhealthy and replaced once the clock is past its grace period.
//! - The clock is whatever [`Clock`] the test passes in, normally a [`ManualClock`].
//! - [`MemoryCloud::fail_refresh`] makes the next step of the active refresh fail (rolling
//!   back when it has AutoRollback); [`MemoryCloud::set_section_error`] makes a snapshot
//!   section unreadable; [`MemoryCloud::set_target_state`] forces one target's state.
//! - [`MemoryCloud::record_metric`] scripts metric series.
//! - [`MemoryCloud::log`] appends a line to an instance's log, as the webapp would write it;
//!   `logs` reads them with the port's filters and cursor.
//! - [`MemoryCloud::calls`] lists every call the backend received, to check that a guard
//!   stopped a call before it arrived.
//!
//! Streams are driven by state changes, not timers: `watch` yields a snapshot at once and
//! then after every change; `wait_refresh` yields the refresh on each change until it ends.
//!
//! Every Auto Scaling rule (placement, replacement, refresh, rebalancing, refusals) is the
//! model's; this file only keeps fake instances and a fake load balancer in step with it.
//!
//! [`ManualClock`]: crate::port::ManualClock

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use time::OffsetDateTime;

use crate::model::target::TargetHealth;
use crate::model::{Action, CheckResult, Group, GroupConfig, Member, Timings};
use crate::port::check_fault_az;
use crate::port::logs;
use crate::port::{
    AzView, BackendKind, Capacity, CapacityCheck, ChangeAction, Clock, Cloud, CloudError,
    CloudStream, Database, DbRole, DbStatus, DeployRequest, DesiredStack, EventSource, Fault,
    FaultChange, FaultPlan, FaultRecord, FaultStep, Instance, InstanceAction, InstancePlan,
    LogCursor, LogLine, LogPage, LogQuery, MetricKind, MetricPoint, MetricSeries, Metrics, Outputs,
    Plan, PlannedAction, ProvisionEvent, Refresh, RefreshId, ResourceChange, ResourceEvent,
    ResourceStatus, SandboxChange, ScalingProcess, Section, SectionError, ShiftRequest, Snapshot,
    StackOperation, StackRef, StackStatus, StepPlan, Target, TargetReason, TargetState, ZonalShift,
    plan_fault,
};

/// The group's health check grace period: AWS's default, so an unhealthy instance is
/// replaced only once a test moves the clock past it.
const MEMORY_GRACE_PERIOD: Duration = Duration::from_secs(300);
/// The port instances listen on in the memory model.
const TARGET_PORT: u16 = 8080;
/// How many past refreshes and events a snapshot shows.
const RECENT_REFRESHES: usize = 5;
const RECENT_EVENTS: usize = 50;

/// The fleet every stack starts with (applied or seeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub azs: Vec<String>,
    pub capacity: Capacity,
    /// The application version the first launch template version runs.
    pub version: String,
    /// Whether the database is Multi-AZ (a standby in the second AZ).
    pub multi_az_db: bool,
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            azs: vec!["mem-1a".into(), "mem-1b".into(), "mem-1c".into()],
            capacity: Capacity {
                desired: 6,
                min: 3,
                max: 12,
            },
            version: "v1".into(),
            multi_az_db: true,
        }
    }
}

/// The in-memory backend. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct MemoryCloud {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    fleet: Fleet,
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    stacks: BTreeMap<String, MemStack>,
    calls: Vec<String>,
    next_id: u64,
}

#[derive(Debug)]
struct MemStack {
    stack: StackRef,
    status: StackStatus,
    /// Logical id → resource (Type, Properties) from the last applied template.
    resources: BTreeMap<String, serde_json::Value>,
    parameters: BTreeMap<String, String>,
    outputs: Outputs,
    /// The Auto Scaling group; its members are the fake instances.
    group: Group,
    /// Launch template version → the application version it runs.
    templates: BTreeMap<u32, String>,
    /// The fake load balancer: registered targets and their health.
    targets: BTreeMap<String, TargetHealth>,
    db: Option<MemDb>,
    silenced: BTreeSet<String>,
    /// AZs under `slow-az`, with the latency added (recorded only: nothing is served here).
    slowed: BTreeMap<String, u32>,
    section_errors: BTreeMap<Section, String>,
    target_overrides: BTreeMap<String, TargetState>,
    /// A failure the next tick gives the active refresh.
    refresh_failure: Option<String>,
    /// Series recorded by tests, oldest point first.
    recorded_metrics: Vec<MetricSeries>,
    /// Every log line, oldest first; line `n` (from 0) has sequence number `n + 1`.
    logs: Vec<LogLine>,
}

#[derive(Debug, Clone)]
struct MemDb {
    id: String,
    primary: String,
    standby: Option<String>,
    status: DbStatus,
}

impl MemoryCloud {
    /// A backend with no stacks, the default [`Fleet`] and `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_fleet(clock, Fleet::default())
    }

    /// A backend whose stacks start with `fleet`.
    pub fn with_fleet(clock: Arc<dyn Clock>, fleet: Fleet) -> Self {
        let (changed, _) = tokio::sync::watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                clock,
                fleet,
                state: Mutex::new(State::default()),
                changed,
            }),
        }
    }

    /// Adds `stack` already running: the fleet in service, the database available.
    pub fn seed_stack(&self, stack: &StackRef) {
        let now = self.now();
        let mut state = self.lock();
        let mut mem = MemStack::new(stack.clone(), &self.shared.fleet, now);
        mem.status = StackStatus::CreateComplete;
        mem.outputs = endpoint_outputs(stack);
        state.stacks.insert(stack.name.clone(), mem);
        drop(state);
        self.notify();
    }

    /// Advances the simulation of `stack` one step (see the module docs).
    pub fn tick(&self, stack: &StackRef) -> Result<(), CloudError> {
        let now = self.now();
        let mut state = self.lock();
        let mem = state
            .stacks
            .get_mut(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        mem.step(now);
        drop(state);
        self.notify();
        Ok(())
    }

    /// Makes the next step of `stack`'s active refresh fail with `reason`.
    pub fn fail_refresh(&self, stack: &StackRef, reason: &str) -> Result<(), CloudError> {
        self.with_stack(stack, |mem, _| {
            mem.group
                .refreshes()
                .iter()
                .find(|r| !r.status.is_terminal())
                .ok_or_else(crate::port::no_active_refresh)?;
            mem.refresh_failure = Some(reason.to_owned());
            Ok(())
        })
    }

    /// Makes `section` of `stack`'s snapshots unreadable with `message` (`None` clears it).
    pub fn set_section_error(
        &self,
        stack: &StackRef,
        section: Section,
        message: Option<&str>,
    ) -> Result<(), CloudError> {
        self.with_stack(stack, |mem, _| {
            match message {
                Some(message) => mem.section_errors.insert(section, message.to_owned()),
                None => mem.section_errors.remove(&section),
            };
            Ok(())
        })
    }

    /// Forces the load balancer state of `instance_id`'s target (`None` returns it to the
    /// modelled state).
    pub fn set_target_state(
        &self,
        stack: &StackRef,
        instance_id: &str,
        target_state: Option<TargetState>,
    ) -> Result<(), CloudError> {
        self.with_stack(stack, |mem, _| {
            match target_state {
                Some(s) => mem.target_overrides.insert(instance_id.to_owned(), s),
                None => mem.target_overrides.remove(instance_id),
            };
            Ok(())
        })
    }

    /// Appends a point of `metric` (for `az`, or stack-wide with `None`) at the clock's
    /// current time. Recorded series appear in snapshots as they are; without a recorded
    /// `HealthyHosts` series for an AZ, the snapshot computes one point from the targets.
    pub fn record_metric(
        &self,
        stack: &StackRef,
        metric: MetricKind,
        az: Option<&str>,
        value: f64,
    ) -> Result<(), CloudError> {
        let at = self.now();
        self.with_stack(stack, |mem, _| {
            let point = MetricPoint { at, value };
            match mem
                .recorded_metrics
                .iter_mut()
                .find(|s| s.metric == metric && s.az.as_deref() == az)
            {
                Some(series) => series.points.push(point),
                None => mem.recorded_metrics.push(MetricSeries {
                    metric,
                    az: az.map(str::to_owned),
                    points: vec![point],
                }),
            }
            Ok(())
        })
    }

    /// How many `watch` and `wait_refresh` streams are still alive (dropping one ends it).
    pub fn live_streams(&self) -> usize {
        self.shared.changed.receiver_count()
    }

    /// Every call this backend received, in order ("inject terminate-az mem-1a", …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    /// Appends `raw` (normally one of the webapp's JSON lines) to the log of `instance_id`,
    /// read at the clock's current time (`NotFound` unless the instance is in the group).
    pub fn log(&self, stack: &StackRef, instance_id: &str, raw: &str) -> Result<(), CloudError> {
        let now = self.now();
        self.with_stack(stack, |mem, _| {
            let az = mem
                .group
                .member(instance_id)
                .map(|m| m.az.clone())
                .ok_or_else(|| CloudError::not_found(format!("instance {instance_id}")))?;
            mem.logs.push(LogLine::parse(raw, instance_id, &az, now));
            Ok(())
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.shared
            .changed
            .send_modify(|generation| *generation += 1);
    }

    fn record_call(&self, call: String) {
        self.lock().calls.push(call);
    }

    /// Runs `f` on `stack` and notifies watchers when it succeeds.
    fn with_stack<T>(
        &self,
        stack: &StackRef,
        f: impl FnOnce(&mut MemStack, &mut u64) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let mut state = self.lock();
        let State {
            stacks, next_id, ..
        } = &mut *state;
        let mem = stacks
            .get_mut(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        let out = f(mem, next_id)?;
        drop(state);
        self.notify();
        Ok(out)
    }

    fn build_snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        let now = self.now();
        let state = self.lock();
        let mem = state
            .stacks
            .get(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        Ok(mem.snapshot(now))
    }

    fn plan_now(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        let resources = template_resources(&desired.template_body)?;
        let state = self.lock();
        let existing = state.stacks.get(&desired.stack.name);
        let mut changes = Vec::new();
        let creates_stack = existing.is_none();
        let (no_resources, no_parameters) = (BTreeMap::new(), BTreeMap::new());
        let (old_resources, old_parameters) = existing
            .map(|mem| (&mem.resources, &mem.parameters))
            .unwrap_or((&no_resources, &no_parameters));
        let changed_parameters: Vec<&String> = desired
            .parameters
            .iter()
            .filter(|(name, value)| old_parameters.get(*name) != Some(*value))
            .map(|(name, _)| name)
            .collect();
        for (logical_id, resource) in &resources {
            let resource_type = resource_type_of(resource);
            let Some(old) = old_resources.get(logical_id) else {
                changes.push(ResourceChange {
                    logical_id: logical_id.clone(),
                    resource_type,
                    physical_id: None,
                    action: ChangeAction::Add,
                    reasons: vec!["new resource".into()],
                });
                continue;
            };
            let physical_id = Some(physical_id_of(&desired.stack, logical_id));
            if resource_type_of(old) != resource_type {
                changes.push(ResourceChange {
                    logical_id: logical_id.clone(),
                    resource_type,
                    physical_id,
                    action: ChangeAction::Replace,
                    reasons: vec![format!(
                        "type changed from {} (requires replacement)",
                        resource_type_of(old)
                    )],
                });
                continue;
            }
            let mut reasons = changed_properties(old, resource);
            let properties = resource.get("Properties");
            reasons.extend(
                changed_parameters
                    .iter()
                    .filter(|name| properties.is_some_and(|p| refers_to(p, name)))
                    .map(|name| format!("parameter {name} changed")),
            );
            if !reasons.is_empty() {
                changes.push(ResourceChange {
                    logical_id: logical_id.clone(),
                    resource_type,
                    physical_id,
                    action: ChangeAction::Modify,
                    reasons,
                });
            }
        }
        for (logical_id, old) in old_resources {
            if !resources.contains_key(logical_id) {
                changes.push(ResourceChange {
                    logical_id: logical_id.clone(),
                    resource_type: resource_type_of(old),
                    physical_id: Some(physical_id_of(&desired.stack, logical_id)),
                    action: ChangeAction::Delete,
                    reasons: vec!["no longer in the template".into()],
                });
            }
        }
        Ok(Plan {
            desired: desired.clone(),
            creates_stack,
            change_set: None,
            changes,
            prepare: Vec::new(),
            blockers: Vec::new(),
            planned_at: self.now(),
        })
    }

    fn apply_now(&self, plan: &Plan) -> Result<Vec<ProvisionEvent>, CloudError> {
        let resources = template_resources(&plan.desired.template_body)?;
        let outputs_names = template_output_names(&plan.desired.template_body)?;
        let stack = plan.stack().clone();
        let now = self.now();
        let mut state = self.lock();
        let exists = state.stacks.contains_key(&stack.name);
        if plan.creates_stack == exists {
            return Err(CloudError::conflict(format!(
                "the plan for {stack} is stale (the stack {}); plan again",
                if exists {
                    "now exists"
                } else {
                    "no longer exists"
                }
            )));
        }
        let operation = if exists {
            StackOperation::Update
        } else {
            StackOperation::Create
        };
        let (in_progress, complete) = match operation {
            StackOperation::Create => (
                ResourceStatus::CreateInProgress,
                ResourceStatus::CreateComplete,
            ),
            _ => (
                ResourceStatus::UpdateInProgress,
                ResourceStatus::UpdateComplete,
            ),
        };
        let total = u32::try_from(plan.changes.len()).unwrap_or(u32::MAX);
        let mut events = vec![ProvisionEvent::Started {
            at: now,
            stack: stack.clone(),
            operation,
            total,
        }];
        for (index, change) in plan.changes.iter().enumerate() {
            let (start, end) = match change.action {
                ChangeAction::Delete => (
                    ResourceStatus::DeleteInProgress,
                    ResourceStatus::DeleteComplete,
                ),
                ChangeAction::Add => (
                    ResourceStatus::CreateInProgress,
                    ResourceStatus::CreateComplete,
                ),
                ChangeAction::Modify | ChangeAction::Replace => (in_progress, complete),
            };
            let done = u32::try_from(index).unwrap_or(u32::MAX);
            for (status, done) in [(start, done), (end, done + 1)] {
                events.push(ProvisionEvent::Resource(ResourceEvent {
                    at: now,
                    logical_id: change.logical_id.clone(),
                    resource_type: change.resource_type.clone(),
                    physical_id: Some(physical_id_of(&stack, &change.logical_id)),
                    status,
                    reason: None,
                    done,
                    total,
                }));
            }
        }
        let mut outputs = endpoint_outputs(&stack);
        for name in outputs_names {
            outputs
                .0
                .insert(name.clone(), format!("memory://{}/{name}", stack.name));
        }
        let stack_status = match operation {
            StackOperation::Create => StackStatus::CreateComplete,
            _ => StackStatus::UpdateComplete,
        };
        if !exists {
            let fleet = self.shared.fleet.clone();
            let mem = MemStack::new(stack.clone(), &fleet, now);
            state.stacks.insert(stack.name.clone(), mem);
        }
        if let Some(mem) = state.stacks.get_mut(&stack.name) {
            mem.resources = resources;
            mem.parameters = plan.desired.parameters.clone();
            mem.outputs = outputs.clone();
            mem.status = stack_status;
            mem.event(now, EventSource::Stack, None, format!("{stack_status}"));
        }
        drop(state);
        self.notify();
        events.push(ProvisionEvent::Finished {
            at: now,
            stack_status,
            outputs,
            summary: None,
        });
        Ok(events)
    }

    fn destroy_now(&self, stack: &StackRef) -> Result<Vec<ProvisionEvent>, CloudError> {
        let now = self.now();
        let mut state = self.lock();
        let mem = state
            .stacks
            .remove(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        drop(state);
        self.notify();
        let total = u32::try_from(mem.resources.len()).unwrap_or(u32::MAX);
        let mut events = vec![ProvisionEvent::Started {
            at: now,
            stack: stack.clone(),
            operation: StackOperation::Delete,
            total,
        }];
        for (index, (logical_id, resource)) in mem.resources.iter().rev().enumerate() {
            let done = u32::try_from(index).unwrap_or(u32::MAX);
            for (status, done) in [
                (ResourceStatus::DeleteInProgress, done),
                (ResourceStatus::DeleteComplete, done + 1),
            ] {
                events.push(ProvisionEvent::Resource(ResourceEvent {
                    at: now,
                    logical_id: logical_id.clone(),
                    resource_type: resource_type_of(resource),
                    physical_id: Some(physical_id_of(stack, logical_id)),
                    status,
                    reason: None,
                    done,
                    total,
                }));
            }
        }
        events.push(ProvisionEvent::Finished {
            at: now,
            stack_status: StackStatus::DeleteComplete,
            outputs: Outputs::default(),
            summary: None,
        });
        Ok(events)
    }

    fn find_refresh(&self, stack: &StackRef, id: &RefreshId) -> Result<Refresh, CloudError> {
        let state = self.lock();
        let mem = state
            .stacks
            .get(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        mem.group
            .refresh(id)
            .cloned()
            .ok_or_else(|| CloudError::not_found(format!("instance refresh {id}")))
    }
}

impl MemStack {
    fn new(stack: StackRef, fleet: &Fleet, now: OffsetDateTime) -> Self {
        let db = fleet.azs.first().map(|primary| MemDb {
            id: format!("{}-db", stack.name),
            primary: primary.clone(),
            standby: fleet.azs.get(1).filter(|_| fleet.multi_az_db).cloned(),
            status: DbStatus::Available,
        });
        let group = Group::new(GroupConfig {
            azs: fleet.azs.clone(),
            capacity: fleet.capacity,
            launch_template: 1,
            timings: Timings {
                grace_period: MEMORY_GRACE_PERIOD,
                ..Timings::immediate()
            },
            id_prefix: "i-mem".into(),
        });
        let mut mem = Self {
            stack,
            status: StackStatus::CreateComplete,
            resources: BTreeMap::new(),
            parameters: BTreeMap::new(),
            outputs: Outputs::default(),
            group,
            templates: BTreeMap::from([(1, fleet.version.clone())]),
            targets: BTreeMap::new(),
            db,
            silenced: BTreeSet::new(),
            slowed: BTreeMap::new(),
            section_errors: BTreeMap::new(),
            target_overrides: BTreeMap::new(),
            refresh_failure: None,
            recorded_metrics: Vec::new(),
            logs: Vec::new(),
        };
        // The fleet starts in service: launch, then one round of health checks.
        mem.step(now);
        mem.step(now);
        mem
    }

    fn event(
        &mut self,
        at: OffsetDateTime,
        source: EventSource,
        az: Option<&str>,
        message: String,
    ) {
        self.group.record(at, source, az, message);
    }

    /// The target state the group sees for `id`.
    fn target_state(&self, id: &str) -> TargetState {
        self.target_overrides
            .get(id)
            .copied()
            .or_else(|| self.targets.get(id).map(|t| t.state))
            .unwrap_or(TargetState::Unused)
    }

    /// One round of health checks, then one step of the group, carried out at once.
    fn step(&mut self, now: OffsetDateTime) {
        let check = self.group.timings().health_check.clone();
        for (id, target) in &mut self.targets {
            let az = self.group.member(id).map(|m| m.az.as_str());
            let result = if az.is_some_and(|az| self.silenced.contains(az)) {
                CheckResult::Fail {
                    reason: TargetReason::Timeout,
                    detail: None,
                }
            } else {
                CheckResult::Pass
            };
            target.record(&check, result);
        }
        if let Some(reason) = self.refresh_failure.take() {
            let _ = self.group.fail_refresh(now, &reason);
        }
        let states: BTreeMap<String, TargetState> = self
            .group
            .members()
            .iter()
            .map(|m| (m.id.clone(), self.target_state(&m.id)))
            .collect();
        let actions = self.group.step(now, &|id| {
            states.get(id).copied().unwrap_or(TargetState::Unused)
        });
        self.carry_out(now, actions);
    }

    fn carry_out(&mut self, now: OffsetDateTime, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Launch { .. } => {}
                Action::Register { id, .. } => {
                    self.targets.insert(id, TargetHealth::registered(true));
                }
                Action::Deregister { id } => {
                    self.targets.remove(&id);
                    self.target_overrides.remove(&id);
                }
                Action::Terminate { id } => self.group.gone(now, &id, None),
            }
        }
    }

    /// The application version of launch template `version`.
    fn app_version(&self, version: u32) -> String {
        self.templates.get(&version).cloned().unwrap_or_default()
    }

    fn target_of(&self, instance: &Member) -> Option<Target> {
        let health = self.targets.get(&instance.id)?;
        let (state, reason, description) = match self.target_overrides.get(&instance.id) {
            Some(state) => (*state, None, None),
            None => (health.state, health.reason, health.description.clone()),
        };
        Some(Target {
            id: instance.id.clone(),
            port: TARGET_PORT,
            state,
            reason,
            description,
        })
    }

    fn snapshot(&self, now: OffsetDateTime) -> Snapshot {
        let readable = |section| !self.section_errors.contains_key(&section);
        let mut snapshot = Snapshot::empty(self.stack.clone(), now);
        snapshot.stack_status = Some(self.status);
        snapshot.endpoint = self.outputs.get("EndpointUrl").map(str::to_owned);
        snapshot.azs = self
            .group
            .azs()
            .iter()
            .map(|az| {
                let mut view = AzView::new(az.clone());
                let here = self.group.members().iter().filter(|i| &i.az == az);
                if readable(Section::Instances) {
                    view.instances = here
                        .clone()
                        .map(|i| Instance {
                            id: i.id.clone(),
                            lifecycle: i.lifecycle,
                            health: i.health,
                            version: Some(self.app_version(i.template)),
                            launch_template_version: Some(i.template.to_string()),
                            launch_time: Some(i.launched_at),
                            address: None,
                            protected_from_scale_in: false,
                        })
                        .collect();
                }
                if readable(Section::Targets) {
                    view.targets = here.filter_map(|i| self.target_of(i)).collect();
                }
                if readable(Section::Database) {
                    view.database = self.db.as_ref().and_then(|db| {
                        let role = if &db.primary == az {
                            DbRole::Primary
                        } else if db.standby.as_ref() == Some(az) {
                            DbRole::Standby
                        } else {
                            return None;
                        };
                        Some(Database {
                            id: db.id.clone(),
                            role,
                            status: db.status,
                            synchronous: Some(db.standby.is_some()),
                        })
                    });
                }
                view
            })
            .collect();
        if readable(Section::Capacity) {
            snapshot.capacity = Some(self.group.capacity());
            snapshot.enabled_azs = self.group.enabled_azs();
            snapshot.suspended_processes = self.group.suspended();
            snapshot.zonal_shifts = self.group.zonal_shifts();
        }
        if readable(Section::Refreshes) {
            snapshot.refreshes = self
                .group
                .refreshes()
                .into_iter()
                .take(RECENT_REFRESHES)
                .collect();
        }
        if readable(Section::Events) {
            snapshot.events = self
                .group
                .events()
                .take(RECENT_EVENTS)
                .map(|e| e.event.clone())
                .collect();
        }
        if readable(Section::Scaling) {
            snapshot.scaling = Some(self.group.scaling_view());
        }
        if readable(Section::Metrics) {
            let mut series = self.recorded_metrics.clone();
            for view in &snapshot.azs {
                let recorded = series.iter().any(|s| {
                    s.metric == MetricKind::HealthyHosts && s.az.as_deref() == Some(&view.az)
                });
                if !recorded {
                    series.push(MetricSeries {
                        metric: MetricKind::HealthyHosts,
                        az: Some(view.az.clone()),
                        points: vec![MetricPoint {
                            at: now,
                            value: self.healthy_in(&view.az) as f64,
                        }],
                    });
                }
            }
            snapshot.metrics = Metrics {
                period_seconds: 60,
                series,
                instances: Vec::new(),
            };
        }
        snapshot.errors = self
            .section_errors
            .iter()
            .map(|(section, message)| SectionError {
                section: *section,
                message: message.clone(),
            })
            .collect();
        snapshot
    }

    fn healthy_in(&self, az: &str) -> usize {
        self.group
            .members()
            .iter()
            .filter(|i| i.az == az)
            .filter(|i| {
                self.target_of(i)
                    .is_some_and(|t| t.state == TargetState::Healthy)
            })
            .count()
    }

    fn check_az(&self, az: &str) -> Result<(), CloudError> {
        check_fault_az(self.group.azs(), az)
    }

    fn instance_ids_in(&self, az: &str) -> Vec<String> {
        self.group
            .members()
            .iter()
            .filter(|i| i.az == az && i.is_live())
            .map(|i| i.id.clone())
            .collect()
    }

    fn describe(&self, fault: &Fault) -> Result<FaultPlan, CloudError> {
        if let Some(az) = fault.az() {
            self.check_az(az)?;
        }
        let db = self.db.as_ref();
        let instances = |az: &str, call: &str, reversible: bool| {
            self.instance_ids_in(az)
                .into_iter()
                .map(|id| PlannedAction::new(format!("instance {id}"), call, reversible))
                .collect::<Vec<_>>()
        };
        let primary_az = db.map(|db| db.primary.as_str());
        plan_fault(&self.stack, fault, primary_az, |step| {
            Ok(StepPlan::of(match step {
                FaultStep::Terminate(az) => instances(az, "SIGKILL", false),
                FaultStep::Blackhole(az) => {
                    let mut actions = instances(az, "SIGSTOP", true);
                    actions.push(PlannedAction::new(
                        format!("az {az}"),
                        "silence new instances",
                        true,
                    ));
                    actions
                }
                FaultStep::BlockLaunches(az) => {
                    let mut actions = vec![PlannedAction::new(
                        format!("az {az}"),
                        "remove from launch AZs",
                        true,
                    )];
                    if !self.group.is_suspended(ScalingProcess::AzRebalance) {
                        actions.push(PlannedAction::new("process AZRebalance", "suspend", true));
                    }
                    actions
                }
                FaultStep::Slow(az, latency_ms) => vec![PlannedAction::new(
                    format!("load balancer path to the targets in {az}"),
                    format!("delay requests by {latency_ms} ms"),
                    true,
                )],
                FaultStep::Failover => {
                    let db = db.ok_or_else(|| CloudError::not_found("database"))?;
                    vec![PlannedAction::new(
                        format!("database {}", db.id),
                        format!(
                            "fail over from {} to {}",
                            db.primary,
                            db.standby.as_deref().unwrap_or("(no standby)")
                        ),
                        false,
                    )]
                }
            }))
        })
    }

    fn silence(&mut self, az: &str, now: OffsetDateTime) -> SandboxChange {
        self.silenced.insert(az.to_owned());
        self.event(
            now,
            EventSource::Fault,
            Some(az),
            format!("{az} blackholed"),
        );
        SandboxChange::AzSilenced {
            az: az.to_owned(),
            instance_ids: self.instance_ids_in(az),
            pids: Vec::new(),
        }
    }

    fn block_launches(&mut self, az: &str, now: OffsetDateTime, changes: &mut Vec<FaultChange>) {
        changes.extend(self.group.block_launches(az));
        self.event(
            now,
            EventSource::Fault,
            Some(az),
            format!("launches into {az} blocked"),
        );
    }

    fn fail_over(&mut self, now: OffsetDateTime) -> Result<SandboxChange, CloudError> {
        let db = self
            .db
            .as_mut()
            .ok_or_else(|| CloudError::not_found("database"))?;
        let standby = db
            .standby
            .clone()
            .ok_or_else(|| CloudError::refused("the database has no standby to fail over to"))?;
        let from = std::mem::replace(&mut db.primary, standby.clone());
        db.standby = Some(from.clone());
        self.event(
            now,
            EventSource::Database,
            Some(&from),
            format!("Multi-AZ instance failover completed: primary now in {standby}"),
        );
        Ok(SandboxChange::DbFailedOver {
            from_az: from,
            to_az: standby,
        })
    }

    fn inject(
        &mut self,
        fault: &Fault,
        now: OffsetDateTime,
    ) -> Result<(Option<String>, Vec<FaultChange>), CloudError> {
        if let Some(az) = fault.az() {
            self.check_az(az)?;
        }
        let mut changes = Vec::new();
        let az = match fault {
            Fault::TerminateAz { az } => {
                let instance_ids = self.instance_ids_in(az);
                for id in &instance_ids {
                    self.group
                        .gone(now, id, Some("the instance was terminated"));
                    self.targets.remove(id);
                }
                self.event(
                    now,
                    EventSource::Fault,
                    Some(az),
                    format!("terminated {} instances in {az}", instance_ids.len()),
                );
                changes.push(FaultChange::Sandbox(SandboxChange::InstancesKilled {
                    az: az.clone(),
                    instance_ids,
                    pids: Vec::new(),
                }));
                Some(az.clone())
            }
            Fault::BlackholeAz { az } => {
                changes.push(FaultChange::Sandbox(self.silence(az, now)));
                Some(az.clone())
            }
            Fault::BlockLaunchesInAz { az } => {
                self.block_launches(az, now, &mut changes);
                Some(az.clone())
            }
            Fault::SlowAz { az, latency_ms } => {
                self.slowed.insert(az.clone(), *latency_ms);
                self.event(
                    now,
                    EventSource::Fault,
                    Some(az),
                    format!("requests to {az} delayed by {latency_ms} ms"),
                );
                changes.push(FaultChange::Sandbox(SandboxChange::AzSlowed {
                    az: az.clone(),
                    latency_ms: *latency_ms,
                }));
                Some(az.clone())
            }
            Fault::FailoverDb => {
                let change = self.fail_over(now)?;
                let SandboxChange::DbFailedOver { from_az, .. } = &change else {
                    return Err(CloudError::backend(
                        "memory",
                        "Internal",
                        "unexpected change",
                    ));
                };
                let az = from_az.clone();
                changes.push(FaultChange::Sandbox(change));
                Some(az)
            }
            Fault::AzOutage { az } => {
                let primary_here = self.db.as_ref().is_some_and(|db| &db.primary == az);
                let has_standby = self.db.as_ref().is_some_and(|db| db.standby.is_some());
                if primary_here && has_standby {
                    changes.push(FaultChange::Sandbox(self.fail_over(now)?));
                }
                changes.push(FaultChange::Sandbox(self.silence(az, now)));
                self.block_launches(az, now, &mut changes);
                Some(az.clone())
            }
        };
        Ok((az, changes))
    }

    fn restore(&mut self, record: &FaultRecord, now: OffsetDateTime) -> Result<(), CloudError> {
        record.check_made_by(BackendKind::Sandbox)?;
        for change in record.changes.iter().rev() {
            match change {
                FaultChange::Sandbox(SandboxChange::AzSilenced { az, .. }) => {
                    self.silenced.remove(az);
                }
                FaultChange::Sandbox(SandboxChange::LaunchesBlocked { az }) => {
                    self.group.enable_az(az);
                }
                FaultChange::Sandbox(SandboxChange::AzSlowed { az, .. }) => {
                    self.slowed.remove(az);
                }
                FaultChange::Sandbox(SandboxChange::ProcessesSuspended { processes }) => {
                    for process in processes {
                        self.group.resume(*process);
                    }
                }
                _ => {}
            }
        }
        self.event(
            now,
            EventSource::Fault,
            record.az.as_deref(),
            format!("{} restored", record.fault),
        );
        Ok(())
    }

    fn deploy(
        &mut self,
        request: &DeployRequest,
        now: OffsetDateTime,
        next_id: &mut u64,
    ) -> Result<RefreshId, CloudError> {
        request.validate()?;
        self.group.check_can_start_refresh()?;
        let version = self.templates.keys().max().copied().unwrap_or(0) + 1;
        self.templates.insert(version, request.version.clone());
        let matching: BTreeSet<u32> = self
            .templates
            .iter()
            .filter(|(_, app)| **app == request.version)
            .map(|(v, _)| *v)
            .collect();
        *next_id += 1;
        let id = RefreshId(format!("refresh-{:05}", *next_id));
        self.group
            .start_refresh(now, id, version, request, &matching)
    }
}

fn stack_not_found(stack: &StackRef) -> CloudError {
    CloudError::not_found(format!("stack {stack}"))
}

fn endpoint_outputs(stack: &StackRef) -> Outputs {
    Outputs(BTreeMap::from([(
        "EndpointUrl".to_owned(),
        format!("http://{}.memory.invalid", stack.name),
    )]))
}

fn physical_id_of(stack: &StackRef, logical_id: &str) -> String {
    format!("{}-{logical_id}", stack.name)
}

fn parse_template(body: &str) -> Result<serde_json::Value, CloudError> {
    serde_json::from_str(body)
        .map_err(|e| CloudError::invalid("template_body", format!("not JSON: {e}")))
}

/// The template's `Resources`, by logical id.
fn template_resources(body: &str) -> Result<BTreeMap<String, serde_json::Value>, CloudError> {
    let template = parse_template(body)?;
    let resources = template
        .get("Resources")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| CloudError::invalid("template_body", "has no Resources object"))?;
    Ok(resources
        .iter()
        .map(|(id, resource)| (id.clone(), resource.clone()))
        .collect())
}

fn template_output_names(body: &str) -> Result<Vec<String>, CloudError> {
    let template = parse_template(body)?;
    Ok(template
        .get("Outputs")
        .and_then(serde_json::Value::as_object)
        .map(|outputs| outputs.keys().cloned().collect())
        .unwrap_or_default())
}

fn resource_type_of(resource: &serde_json::Value) -> String {
    resource
        .get("Type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("Unknown")
        .to_owned()
}

/// "Properties.X changed" for each top-level property that differs.
fn changed_properties(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let props = |v: &serde_json::Value| {
        v.get("Properties")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (old, new) = (props(old), props(new));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| format!("Properties.{name} changed"))
        .collect()
}

/// Whether `value` contains `{"Ref": name}`.
fn refers_to(value: &serde_json::Value, name: &str) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.get("Ref").and_then(serde_json::Value::as_str) == Some(name)
                || map.values().any(|v| refers_to(v, name))
        }
        serde_json::Value::Array(items) => items.iter().any(|v| refers_to(v, name)),
        _ => false,
    }
}

fn events_stream(result: Result<Vec<ProvisionEvent>, CloudError>) -> CloudStream<ProvisionEvent> {
    match result {
        Ok(events) => futures::stream::iter(events.into_iter().map(Ok)).boxed(),
        Err(error) => crate::port::failed_stream(error),
    }
}

#[async_trait]
impl Cloud for MemoryCloud {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        self.record_call(format!("plan {}", desired.stack.name));
        self.plan_now(desired)
    }

    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent> {
        self.record_call(format!("apply {}", plan.stack().name));
        events_stream(self.apply_now(plan))
    }

    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent> {
        self.record_call(format!("destroy {}", stack.name));
        events_stream(self.destroy_now(stack))
    }

    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        self.record_call(format!("snapshot {}", stack.name));
        self.build_snapshot(stack)
    }

    fn watch(&self, stack: &StackRef, _interval: Duration) -> CloudStream<Snapshot> {
        self.record_call(format!("watch {}", stack.name));
        let cloud = self.clone();
        let stack = stack.clone();
        let changes = self.shared.changed.subscribe();
        futures::stream::unfold(
            (cloud, stack, changes, true),
            |(cloud, stack, mut changes, first)| async move {
                if !first {
                    changes.changed().await.ok()?;
                }
                changes.mark_unchanged();
                let item = cloud.build_snapshot(&stack);
                Some((item, (cloud, stack, changes, false)))
            },
        )
        .boxed()
    }

    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        self.record_call(format!("deploy {} {}", stack.name, request.version));
        let now = self.now();
        self.with_stack(stack, |mem, next_id| mem.deploy(request, now, next_id))
    }

    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        self.record_call(format!("cancel_refresh {}", stack.name));
        let now = self.now();
        self.with_stack(stack, |mem, _| mem.group.cancel_refresh(now))
    }

    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        self.record_call(format!("rollback_refresh {}", stack.name));
        let now = self.now();
        self.with_stack(stack, |mem, _| mem.group.rollback_refresh(now))
    }

    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh> {
        self.record_call(format!("wait_refresh {} {id}", stack.name));
        let cloud = self.clone();
        let stack = stack.clone();
        let id = id.clone();
        let changes = self.shared.changed.subscribe();
        futures::stream::unfold(
            (cloud, stack, id, changes, None::<Refresh>, false),
            |(cloud, stack, id, mut changes, last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    changes.mark_unchanged();
                    match cloud.find_refresh(&stack, &id) {
                        Err(error) => {
                            return Some((Err(error), (cloud, stack, id, changes, last, true)));
                        }
                        Ok(refresh) if last.as_ref() != Some(&refresh) => {
                            let done = refresh.status.is_terminal();
                            let next = Some(refresh.clone());
                            return Some((Ok(refresh), (cloud, stack, id, changes, next, done)));
                        }
                        Ok(_) => changes.changed().await.ok()?,
                    }
                }
            },
        )
        .boxed()
    }

    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        self.record_call(format!("describe_fault {} {fault}", stack.name));
        let state = self.lock();
        let mem = state
            .stacks
            .get(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        mem.describe(fault)
    }

    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        self.record_call(format!("inject {} {fault}", stack.name));
        let now = self.now();
        self.with_stack(stack, |mem, next_id| {
            let (az, changes) = mem.inject(fault, now)?;
            *next_id += 1;
            Ok(FaultRecord {
                id: format!("fault-{:05}", *next_id),
                stack: stack.clone(),
                fault: fault.clone(),
                az,
                forced: check == CapacityCheck::Force,
                injected_at: now,
                changes,
            })
        })
    }

    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        self.record_call(format!(
            "describe_instance_action {} {id} {action}",
            stack.name
        ));
        let now = self.now();
        let state = self.lock();
        let mem = state
            .stacks
            .get(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        mem.group
            .describe_instance_action(now, id, action, vec![format!("group: {action} {id}")])
    }

    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        _check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError> {
        self.record_call(format!("act_on_instance {} {id} {action}", stack.name));
        let now = self.now();
        self.with_stack(stack, |mem, _| {
            let plan = mem.group.describe_instance_action(
                now,
                id,
                action,
                vec![format!("group: {action} {id}")],
            )?;
            mem.group.act_on_instance(now, id, action)?;
            Ok(plan)
        })
    }

    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        _check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError> {
        self.record_call(format!(
            "start_zonal_shift {} {} {}s",
            stack.name,
            request.az,
            request.expires_in.as_secs()
        ));
        let now = self.now();
        self.with_stack(stack, |mem, _| {
            let resources = vec![
                format!("load balancer {}-alb", stack.name),
                format!("auto scaling group {}-asg", stack.name),
            ];
            mem.group.start_zonal_shift(now, request, resources)
        })
    }

    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        self.record_call(format!(
            "cancel_zonal_shift {} {}",
            stack.name,
            az.unwrap_or("*")
        ));
        let now = self.now();
        self.with_stack(stack, |mem, _| mem.group.cancel_zonal_shift(now, az))
    }

    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError> {
        self.record_call(format!("restore {} {}", record.stack.name, record.fault));
        let now = self.now();
        self.with_stack(&record.stack, |mem, _| mem.restore(record, now))
    }

    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        self.record_call(format!("logs {}", stack.name));
        let state = self.lock();
        let mem = state
            .stacks
            .get(&stack.name)
            .ok_or_else(|| stack_not_found(stack))?;
        let numbered = mem
            .logs
            .iter()
            .enumerate()
            .map(|(i, line)| (i as u64 + 1, line));
        logs::page(numbered, mem.logs.len() as u64, query, cursor)
    }
}
