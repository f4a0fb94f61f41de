//! The sandbox's Auto Scaling group: webapp processes as instances, registered with the
//! sandbox load balancer, kept at the desired capacity and rolled by instance refreshes.
//!
//! An instance is one webapp process started from a [`LaunchTemplate`] version (binary and
//! environment), in Availability Zone `k` on `127.0.k+1.x` with a free port. A reconcile loop
//! ([`Fleet::start`] spawns it) runs every [`Timing::tick`]:
//! - an instance whose process exited is terminated and deregistered;
//! - `Pending` becomes `InService` when its target turns healthy, or when the health check
//!   grace period ends; after the grace period an `unhealthy` target makes the instance
//!   `Unhealthy` and it is replaced (ELB health check type);
//! - missing capacity is launched into the enabled AZ with the fewest instances;
//! - the active instance refresh moves: batches of `desired × (max − min healthy) / 100`
//!   (at least one); with MaxHealthyPercentage above 100 the replacements start before the old
//!   instances stop, otherwise the old ones stop first. A batch is done when every replacement's
//!   target is healthy and InstanceWarmup has passed; a replacement that exits, or a batch
//!   not healthy within [`Timing::refresh_batch_timeout`], fails the refresh (and rolls it back
//!   with AutoRollback). Checkpoints, bake time, SkipMatching, cancel and rollback follow AWS.
//!
//! Terminating an instance deregisters its target, waits for the load balancer to finish
//! draining it (at most the deregistration delay), then sends SIGTERM so the webapp drains its
//! own in-flight requests, and SIGKILL after a grace period. Activities are recorded as port
//! [`Event`]s with Auto Scaling's wording.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::lb::{self, LoadBalancer};
use super::process::{ProcessGroup, az_address, command, free_port};
use crate::port::{
    AzView, Capacity, CheckpointInfo, CloudError, DeployRequest, Event, EventSource, HealthStatus,
    Instance, LifecycleState, Refresh, RefreshId, RefreshPreferences, RefreshStatus,
    RollbackDetails, ScalingProcess, Target, TargetReason, TargetState,
};

/// Environment variable put on every process the sandbox starts, naming its state directory,
/// so a later start can find and kill what a crashed daemon left running.
pub const SANDBOX_MARKER: &str = "TRIAD_SANDBOX_DIR";
/// How many events the group keeps.
const EVENTS_KEPT: usize = 200;
/// How many finished refreshes a snapshot shows.
const REFRESHES_KEPT: usize = 5;
/// How long a terminated webapp gets after SIGTERM before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// The webapp unit's `RestartSec`.
const RESTART_DELAY: Duration = Duration::from_secs(2);
/// The webapp unit's `RestartPreventExitStatus` (a configuration error).
const PREVENT_RESTART_STATUS: i32 = 2;

/// The sandbox's clock settings: ALB and Auto Scaling semantics, at demo speed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How often the group reconciles.
    pub tick: Duration,
    /// The target group's health check.
    pub health_check: lb::HealthCheck,
    /// The target group's deregistration delay.
    pub deregistration_delay: Duration,
    /// The group's health check grace period.
    pub grace_period: Duration,
    /// InstanceWarmup when a refresh does not set one (the group's default warmup).
    pub default_warmup: Duration,
    /// How long one refresh batch may take to become healthy before the refresh fails.
    pub refresh_batch_timeout: Duration,
}

impl Timing {
    /// The spec's health check path and thresholds, with the sandbox's short clock: checks
    /// every second (half a second timeout), a deregistration delay of at most 2 s, a grace
    /// period of at most 15 s, no default warmup, and 60 s for a refresh batch.
    pub fn sandbox(app: &SandboxApp) -> Timing {
        Timing {
            tick: Duration::from_millis(250),
            health_check: lb::HealthCheck {
                path: app.health_check.path.clone(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                healthy_threshold: app.health_check.healthy_threshold.clamp(1, 10),
                unhealthy_threshold: app.health_check.unhealthy_threshold.clamp(1, 10),
                success_codes: 200..=200,
            },
            deregistration_delay: Duration::from_secs(
                u64::from(app.deregistration_delay_seconds).min(2),
            ),
            grace_period: Duration::from_secs(
                u64::from(app.health_check_grace_period_seconds).min(15),
            ),
            default_warmup: Duration::ZERO,
            refresh_batch_timeout: Duration::from_secs(60),
        }
    }
}

/// What the sandbox needs of the stack spec's `[app]` section. It deserialises from the JSON
/// of a `StackSpec` (other fields are ignored), so `DesiredStack::spec` carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxApp {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub version: String,
    pub deregistration_delay_seconds: u32,
    pub health_check_grace_period_seconds: u32,
    pub health_check: SandboxHealthCheck,
}

/// The spec's target group health check, as far as the sandbox uses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxHealthCheck {
    pub path: String,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// One launch template version: the program and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    /// 1, 2, 3 …
    pub version: u32,
    /// The application version it runs (`TRIAD_VERSION`).
    pub app_version: String,
    pub binary: PathBuf,
    /// Environment besides the per-instance variables.
    pub env: BTreeMap<String, String>,
}

/// How the group is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The AZs, in order: AZ number `k` owns `127.0.k+1.0/24`.
    pub azs: Vec<String>,
    pub capacity: Capacity,
    pub first_template: LaunchTemplate,
    pub timing: Timing,
    /// Where instance logs go (`instances/<az>/<id>.log`, see [`super::logs`]).
    pub log_dir: PathBuf,
    /// The value of [`SANDBOX_MARKER`] on every instance.
    pub marker: String,
}

struct Inst {
    id: String,
    az: String,
    address: SocketAddr,
    template: u32,
    app_version: String,
    launched_at: OffsetDateTime,
    started: Instant,
    lifecycle: LifecycleState,
    health: HealthStatus,
    process: Option<ProcessGroup>,
    pid: u32,
    stopper: Option<JoinHandle<()>>,
    /// The instance itself was killed (a fault), not just its program.
    killed: bool,
    /// When the init system starts the program again after it failed.
    restart_at: Option<Instant>,
}

struct Batch {
    new_ids: Vec<String>,
    old_ids: Vec<String>,
    started: Instant,
    healthy_since: Option<Instant>,
}

struct Run {
    refresh: Refresh,
    desired: u32,
    previous: u32,
    prefs: RefreshPreferences,
    /// Instances that were there when the refresh (or its rollback) started and still need
    /// replacing.
    todo: BTreeSet<String>,
    total: u32,
    batch: Option<Batch>,
    passed: BTreeSet<u8>,
    resume_at: Option<Instant>,
    bake_until: Option<Instant>,
}

struct State {
    config: FleetConfig,
    templates: BTreeMap<u32, LaunchTemplate>,
    current: u32,
    capacity: Capacity,
    instances: Vec<Inst>,
    enabled: Vec<String>,
    silenced: BTreeSet<String>,
    suspended: BTreeSet<ScalingProcess>,
    runs: VecDeque<Run>,
    events: VecDeque<Event>,
    next_host: BTreeMap<String, u8>,
}

/// The running group.
pub struct Fleet {
    state: Arc<Mutex<State>>,
    lb: Arc<LoadBalancer>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

fn new_instance_id() -> String {
    let bytes: [u8; 8] = rand_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("i-{}", &hex[..17.min(hex.len())])
}

fn rand_bytes() -> [u8; 8] {
    // Unique enough for instance ids: time and a process-wide counter, mixed.
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x.to_be_bytes()
}

fn percentage(done: u32, total: u32) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from((u64::from(done) * 100 / u64::from(total)).min(100)).unwrap_or(100)
}

impl State {
    fn event(&mut self, az: Option<&str>, message: String) {
        self.events.push_front(Event {
            at: OffsetDateTime::now_utc(),
            source: EventSource::Scaling,
            az: az.map(str::to_owned),
            message,
        });
        self.events.truncate(EVENTS_KEPT);
    }

    fn live(&self) -> impl Iterator<Item = &Inst> {
        self.instances.iter().filter(|i| {
            !matches!(
                i.lifecycle,
                LifecycleState::Terminating | LifecycleState::Terminated
            )
        })
    }

    fn live_count(&self) -> usize {
        self.live().count()
    }

    fn active_run(&mut self) -> Option<&mut Run> {
        self.runs
            .iter_mut()
            .find(|r| !r.refresh.status.is_terminal())
    }

    /// The enabled AZ with the fewest live instances (first in order on a tie).
    fn launch_az(&self, prefer: Option<&str>) -> Option<String> {
        if let Some(az) = prefer.filter(|az| self.enabled.iter().any(|e| e == az)) {
            return Some(az.to_owned());
        }
        self.config
            .azs
            .iter()
            .filter(|az| self.enabled.contains(az))
            .min_by_key(|az| self.live().filter(|i| &i.az == *az).count())
            .cloned()
    }

    fn launch(
        &mut self,
        lb: &LoadBalancer,
        template: u32,
        prefer_az: Option<&str>,
        why: &str,
    ) -> Result<String, String> {
        let az = self
            .launch_az(prefer_az)
            .ok_or_else(|| "no Availability Zone is enabled for launches".to_owned())?;
        let az_index = self
            .config
            .azs
            .iter()
            .position(|a| *a == az)
            .ok_or_else(|| format!("unknown AZ {az}"))?;
        let lt = self
            .templates
            .get(&template)
            .cloned()
            .ok_or_else(|| format!("no launch template version {template}"))?;
        let id = new_instance_id();
        let host = {
            let next = self.next_host.entry(az.clone()).or_insert(1);
            let host = *next;
            *next = if *next >= 249 { 1 } else { *next + 1 };
            host
        };
        let ip = az_address(az_index, host);
        let port = free_port(ip).map_err(|e| format!("picking a port on {ip}: {e}"))?;
        let address = SocketAddr::from((ip, port));
        let process = self.spawn(&lt, &id, &az, address)?;
        let pid = process.pid();
        lb.register(lb::Target {
            id: id.clone(),
            az: az.clone(),
            address,
        });
        self.instances.push(Inst {
            id: id.clone(),
            az: az.clone(),
            address,
            template,
            app_version: lt.app_version.clone(),
            launched_at: OffsetDateTime::now_utc(),
            started: Instant::now(),
            lifecycle: LifecycleState::Pending,
            health: HealthStatus::Healthy,
            process: Some(process),
            pid,
            stopper: None,
            killed: false,
            restart_at: None,
        });
        self.event(
            Some(&az),
            format!("Launching a new EC2 instance: {id}{why}"),
        );
        Ok(id)
    }

    /// Starts the program of instance `id` (launch template `lt`) on `address`, stopped when
    /// its AZ is silenced.
    fn spawn(
        &self,
        lt: &LaunchTemplate,
        id: &str,
        az: &str,
        address: SocketAddr,
    ) -> Result<ProcessGroup, String> {
        let log = super::logs::instance_log(&self.config.log_dir, az, id)
            .map_err(|e| format!("preparing the log of {id}: {e}"))?;
        let mut cmd = command(&lt.binary, None, &self.config.log_dir, &log)
            .map_err(|e| format!("preparing {}: {e}", lt.binary.display()))?;
        cmd.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(&lt.env)
            .env(contract::env::ROCKET_ADDRESS, address.ip().to_string())
            .env(contract::env::ROCKET_PORT, address.port().to_string())
            .env(contract::env::VERSION, &lt.app_version)
            .env(contract::env::INSTANCE_ID, id)
            .env(contract::env::AZ, az)
            .env(SANDBOX_MARKER, &self.config.marker);
        let process = ProcessGroup::spawn(&mut cmd)
            .map_err(|e| format!("starting {}: {e}", lt.binary.display()))?;
        if self.silenced.contains(az) {
            process.signal(Signal::SIGSTOP);
        }
        Ok(process)
    }

    /// Starts again the programs whose restart is due.
    fn restart_due(&mut self) {
        let due: Vec<usize> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.restart_at.is_some_and(|t| Instant::now() >= t))
            .map(|(n, _)| n)
            .collect();
        for n in due {
            let (id, az, address, template) = {
                let inst = &mut self.instances[n];
                inst.restart_at = None;
                (
                    inst.id.clone(),
                    inst.az.clone(),
                    inst.address,
                    inst.template,
                )
            };
            let started = self
                .templates
                .get(&template)
                .ok_or_else(|| format!("no launch template version {template}"))
                .and_then(|lt| self.spawn(lt, &id, &az, address));
            match started {
                Ok(process) => {
                    let inst = &mut self.instances[n];
                    inst.pid = process.pid();
                    inst.process = Some(process);
                }
                Err(reason) => self.event(
                    Some(&az),
                    format!("The webapp service on {id} could not be restarted: {reason}"),
                ),
            }
        }
    }

    fn terminate(&mut self, lb: &Arc<LoadBalancer>, id: &str, why: &str) {
        let delay = self.config.timing.deregistration_delay;
        let Some(inst) = self.instances.iter_mut().find(|i| i.id == id) else {
            return;
        };
        if matches!(
            inst.lifecycle,
            LifecycleState::Terminating | LifecycleState::Terminated
        ) {
            return;
        }
        inst.lifecycle = LifecycleState::Terminating;
        inst.restart_at = None;
        lb.deregister(id);
        let process = inst.process.take();
        let lb = lb.clone();
        let target = id.to_owned();
        inst.stopper = Some(tokio::spawn(async move {
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline
                && lb.target_health_of(&target).state == lb::TargetState::Draining
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(process) = process {
                process.stop(Signal::SIGTERM, STOP_LIMIT).await;
            }
        }));
        let az = inst.az.clone();
        self.event(Some(&az), format!("Terminating EC2 instance: {id}{why}"));
    }

    /// One reconcile step.
    fn step(&mut self, lb: &Arc<LoadBalancer>) {
        let grace = self.config.timing.grace_period;
        // Exited processes and finished terminations. A killed instance is gone; a program
        // that exits on its own leaves its instance running, and the init system treats it as
        // the webapp's unit says (`Restart=on-failure`, `RestartSec=2`,
        // `RestartPreventExitStatus=2`): started again after a failure, left stopped after a
        // clean exit or a configuration error. Its target fails its health checks meanwhile.
        let mut exited = Vec::new();
        for inst in &mut self.instances {
            if let Some(process) = inst.process.as_mut()
                && let Ok(Some(status)) = process.try_wait()
            {
                exited.push((inst.id.clone(), inst.az.clone(), inst.killed, status));
                inst.process = None;
            }
        }
        for (id, az, killed, status) in exited {
            if killed {
                lb.deregister(&id);
                if let Some(inst) = self.instances.iter_mut().find(|i| i.id == id) {
                    inst.lifecycle = LifecycleState::Terminated;
                }
                self.event(
                    Some(&az),
                    format!(
                        "Terminating EC2 instance: {id} (the instance's process ended: {status})"
                    ),
                );
                continue;
            }
            let restart = !status.success() && status.code() != Some(PREVENT_RESTART_STATUS);
            if let Some(inst) = self.instances.iter_mut().find(|i| i.id == id) {
                inst.restart_at = restart.then(|| Instant::now() + RESTART_DELAY);
            }
            self.event(
                Some(&az),
                if restart {
                    format!(
                        "The webapp service on {id} exited ({status}); it is restarted in {} s",
                        RESTART_DELAY.as_secs()
                    )
                } else {
                    format!("The webapp service on {id} exited ({status}) and stays stopped")
                },
            );
        }
        self.restart_due();
        self.instances.retain(|i| match &i.stopper {
            Some(stopper) => !stopper.is_finished(),
            None => i.lifecycle != LifecycleState::Terminated,
        });
        // Lifecycle and health from the load balancer.
        let mut unhealthy = Vec::new();
        for inst in &mut self.instances {
            if matches!(
                inst.lifecycle,
                LifecycleState::Terminating | LifecycleState::Terminated
            ) {
                continue;
            }
            let target = lb.target_health_of(&inst.id);
            let past_grace = inst.started.elapsed() >= grace;
            if inst.lifecycle == LifecycleState::Pending
                && (target.state == lb::TargetState::Healthy || past_grace)
            {
                inst.lifecycle = LifecycleState::InService;
            }
            if past_grace && target.state == lb::TargetState::Unhealthy {
                if inst.health == HealthStatus::Healthy {
                    unhealthy.push(inst.id.clone());
                }
                inst.health = HealthStatus::Unhealthy;
            }
        }
        if !self.suspended.contains(&ScalingProcess::ReplaceUnhealthy) {
            for id in unhealthy {
                self.terminate(
                    lb,
                    &id,
                    " (an instance was taken out of service in response to an ELB system \
                     health check failure)",
                );
            }
        }
        self.step_refresh(lb);
        // Capacity.
        let desired = usize::try_from(self.capacity.desired).unwrap_or(usize::MAX);
        if !self.suspended.contains(&ScalingProcess::Launch) {
            let current = self.current;
            let mut missing = desired.saturating_sub(self.live_count());
            while missing > 0 {
                if let Err(reason) = self.launch(lb, current, None, "") {
                    self.event(
                        None,
                        format!("Launching a new EC2 instance. Status Reason: {reason}"),
                    );
                    break;
                }
                missing -= 1;
            }
        }
        let refreshing = self.runs.iter().any(|r| r.batch.is_some());
        if !refreshing && !self.suspended.contains(&ScalingProcess::Terminate) {
            let extra = self.live_count().saturating_sub(desired);
            let victims: Vec<String> = self
                .live()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(extra)
                .map(|i| i.id.clone())
                .collect();
            for id in victims {
                self.terminate(lb, &id, " (scale in to the desired capacity)");
            }
        }
    }

    fn batch_size(&self, prefs: &RefreshPreferences) -> usize {
        let span = u32::from(prefs.max_healthy_percentage)
            .saturating_sub(u32::from(prefs.min_healthy_percentage));
        usize::try_from(self.capacity.desired * span / 100)
            .unwrap_or(1)
            .max(1)
    }

    fn step_refresh(&mut self, lb: &Arc<LoadBalancer>) {
        let Some(index) = self
            .runs
            .iter()
            .position(|r| !r.refresh.status.is_terminal())
        else {
            return;
        };
        let Some(mut run) = self.runs.remove(index) else {
            return;
        };
        let before = run.refresh.status;
        self.advance(&mut run, lb);
        let after = run.refresh.status;
        if after.is_terminal() {
            run.refresh.ended_at = Some(OffsetDateTime::now_utc());
        }
        let id = run.refresh.id.clone();
        let reason = run.refresh.status_reason.clone();
        self.runs.insert(index, run);
        if before != after {
            let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
            self.event(None, format!("Instance refresh {id} is {after}{why}"));
        }
        while self.runs.len() > REFRESHES_KEPT
            && self
                .runs
                .back()
                .is_some_and(|r| r.refresh.status.is_terminal())
        {
            self.runs.pop_back();
        }
    }

    fn fail(&mut self, run: &mut Run, reason: String) {
        if run.refresh.status == RefreshStatus::RollbackInProgress {
            run.refresh.status = RefreshStatus::RollbackFailed;
            run.refresh.status_reason = Some(reason);
            return;
        }
        if run.prefs.auto_rollback {
            self.start_rollback(run, reason);
        } else {
            run.refresh.status = RefreshStatus::Failed;
            run.refresh.status_reason = Some(reason);
        }
    }

    fn start_rollback(&mut self, run: &mut Run, reason: String) {
        let previous = run.previous;
        run.refresh.status = RefreshStatus::RollbackInProgress;
        run.refresh.status_reason = Some(reason.clone());
        run.todo = self
            .live()
            .filter(|i| i.template != previous)
            .map(|i| i.id.clone())
            .collect();
        if let Some(batch) = &run.batch {
            run.todo.extend(batch.new_ids.iter().cloned());
        }
        run.batch = None;
        run.resume_at = None;
        run.refresh.checkpoint = None;
        let todo = u32::try_from(run.todo.len()).unwrap_or(u32::MAX);
        run.refresh.rollback = Some(RollbackDetails {
            reason: Some(reason),
            started_at: Some(OffsetDateTime::now_utc()),
            percentage_complete_on_rollback: run.refresh.percentage_complete,
            instances_to_update_on_rollback: Some(todo),
        });
        run.total = todo;
        run.refresh.instances_to_update = Some(todo);
    }

    fn advance(&mut self, run: &mut Run, lb: &Arc<LoadBalancer>) {
        let target = if run.refresh.status == RefreshStatus::RollbackInProgress {
            run.previous
        } else {
            run.desired
        };
        match run.refresh.status {
            RefreshStatus::Pending => {
                run.refresh.status = RefreshStatus::InProgress;
                return;
            }
            RefreshStatus::Baking => {
                if run.bake_until.is_none_or(|t| Instant::now() >= t) {
                    run.refresh.status = RefreshStatus::Successful;
                    run.refresh.status_reason = None;
                    self.current = run.desired;
                }
                return;
            }
            RefreshStatus::Cancelling if run.batch.is_none() => {
                run.refresh.status = RefreshStatus::Cancelled;
                run.refresh.status_reason = Some("Instance refresh was cancelled.".into());
                return;
            }
            RefreshStatus::InProgress
            | RefreshStatus::RollbackInProgress
            | RefreshStatus::Cancelling => {}
            _ => return,
        }
        // The batch in flight.
        if let Some(batch) = &mut run.batch {
            let gone: Vec<&String> = batch
                .new_ids
                .iter()
                .filter(|id| {
                    !self.instances.iter().any(|i| {
                        &&i.id == id
                            && !matches!(
                                i.lifecycle,
                                LifecycleState::Terminating | LifecycleState::Terminated
                            )
                    })
                })
                .collect();
            if let Some(id) = gone.first() {
                let failed_checks = self
                    .instances
                    .iter()
                    .any(|i| &&i.id == id && i.health == HealthStatus::Unhealthy);
                let reason = if failed_checks {
                    format!(
                        "Instance refresh failed: the replacement instance {id} failed ELB \
                         health checks"
                    )
                } else {
                    format!(
                        "Instance refresh failed: the replacement instance {id} was terminated \
                         before it became healthy"
                    )
                };
                let new_ids = batch.new_ids.clone();
                for id in &new_ids {
                    self.terminate(lb, id, " (instance refresh failed)");
                }
                run.batch = None;
                self.fail(run, reason);
                return;
            }
            let all_healthy = batch
                .new_ids
                .iter()
                .all(|id| lb.target_health_of(id).state == lb::TargetState::Healthy);
            if !all_healthy {
                batch.healthy_since = None;
                if batch.started.elapsed() > self.config.timing.refresh_batch_timeout {
                    let reason = format!(
                        "Instance refresh failed: replacement instances did not pass ELB \
                         health checks within {} s",
                        self.config.timing.refresh_batch_timeout.as_secs()
                    );
                    let new_ids = batch.new_ids.clone();
                    for id in &new_ids {
                        self.terminate(lb, id, " (instance refresh failed)");
                    }
                    run.batch = None;
                    self.fail(run, reason);
                }
                return;
            }
            let since = *batch.healthy_since.get_or_insert_with(Instant::now);
            let warmup = run
                .prefs
                .instance_warmup_seconds
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(self.config.timing.default_warmup);
            if since.elapsed() < warmup {
                return;
            }
            let old_ids = batch.old_ids.clone();
            for id in &old_ids {
                self.terminate(lb, id, " (instance refresh)");
            }
            run.batch = None;
            let done = run
                .total
                .saturating_sub(u32::try_from(run.todo.len()).unwrap_or(0));
            let pct = percentage(done, run.total);
            run.refresh.percentage_complete = Some(pct);
            run.refresh.instances_to_update =
                Some(u32::try_from(run.todo.len()).unwrap_or(u32::MAX));
            if run.refresh.status == RefreshStatus::InProgress {
                let reached = run
                    .prefs
                    .checkpoint_percentages
                    .iter()
                    .copied()
                    .filter(|c| *c <= pct && !run.passed.contains(c))
                    .max();
                if let Some(checkpoint) = reached {
                    run.passed.extend(
                        run.prefs
                            .checkpoint_percentages
                            .iter()
                            .filter(|c| **c <= pct),
                    );
                    let last = run.prefs.checkpoint_percentages.last().copied();
                    if Some(checkpoint) == last && run.prefs.is_partial() {
                        run.todo.clear();
                    } else if !run.todo.is_empty() {
                        let delay = run.prefs.effective_checkpoint_delay_seconds().unwrap_or(0);
                        let now = OffsetDateTime::now_utc();
                        run.refresh.checkpoint = Some(CheckpointInfo {
                            percentage: checkpoint,
                            reached_at: now,
                            resumes_at: Some(now + time::Duration::seconds(delay.into())),
                        });
                        run.refresh.status_reason =
                            Some(format!("Waiting at checkpoint {checkpoint}%"));
                        run.resume_at =
                            Some(Instant::now() + Duration::from_secs(u64::from(delay)));
                    }
                }
            }
        }
        if run.refresh.status == RefreshStatus::Cancelling {
            run.refresh.status = RefreshStatus::Cancelled;
            run.refresh.status_reason = Some("Instance refresh was cancelled.".into());
            return;
        }
        if run.resume_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if run.resume_at.take().is_some() {
            run.refresh.checkpoint = None;
            run.refresh.status_reason = None;
        }
        // Forget instances that went away on their own.
        let live: BTreeSet<String> = self.live().map(|i| i.id.clone()).collect();
        run.todo.retain(|id| live.contains(id));
        if run.todo.is_empty() {
            match run.refresh.status {
                RefreshStatus::RollbackInProgress => {
                    run.refresh.status = RefreshStatus::RollbackSuccessful;
                    run.refresh.status_reason = Some(format!(
                        "Instance refresh rolled back to launch template version {}",
                        run.previous
                    ));
                    run.refresh.percentage_complete = Some(100);
                    run.refresh.instances_to_update = Some(0);
                    self.current = run.previous;
                }
                _ => {
                    run.refresh.percentage_complete = Some(100);
                    run.refresh.instances_to_update = Some(0);
                    if run.prefs.bake_time_seconds > 0 {
                        run.refresh.status = RefreshStatus::Baking;
                        run.bake_until = Some(
                            Instant::now()
                                + Duration::from_secs(u64::from(run.prefs.bake_time_seconds)),
                        );
                    } else {
                        run.refresh.status = RefreshStatus::Successful;
                        run.refresh.status_reason = None;
                        self.current = run.desired;
                    }
                }
            }
            return;
        }
        // Start the next batch.
        let size = self.batch_size(&run.prefs);
        let old: Vec<(String, String)> = self
            .live()
            .filter(|i| run.todo.contains(&i.id))
            .take(size)
            .map(|i| (i.id.clone(), i.az.clone()))
            .collect();
        let launch_first = run.prefs.max_healthy_percentage > 100;
        if !launch_first {
            for (id, _) in &old {
                self.terminate(lb, id, " (instance refresh)");
            }
        }
        let mut new_ids = Vec::new();
        for (_, az) in &old {
            match self.launch(lb, target, Some(az), " (instance refresh)") {
                Ok(id) => new_ids.push(id),
                Err(reason) => {
                    for id in &new_ids {
                        self.terminate(lb, id, " (instance refresh failed)");
                    }
                    self.fail(run, format!("Instance refresh failed: {reason}"));
                    return;
                }
            }
        }
        for (id, _) in &old {
            run.todo.remove(id);
        }
        run.batch = Some(Batch {
            new_ids,
            old_ids: if launch_first {
                old.into_iter().map(|(id, _)| id).collect()
            } else {
                Vec::new()
            },
            started: Instant::now(),
            healthy_since: None,
        });
    }
}

impl Fleet {
    /// Starts the group's reconcile loop (which launches the first instances) with `lb` as
    /// its target group.
    pub fn start(config: FleetConfig, lb: Arc<LoadBalancer>) -> Fleet {
        let first = config.first_template.clone();
        let state = State {
            templates: BTreeMap::from([(first.version, first.clone())]),
            current: first.version,
            capacity: config.capacity,
            instances: Vec::new(),
            enabled: config.azs.clone(),
            silenced: BTreeSet::new(),
            suspended: BTreeSet::new(),
            runs: VecDeque::new(),
            events: VecDeque::new(),
            next_host: BTreeMap::new(),
            config,
        };
        let tick = state.config.timing.tick;
        let state = Arc::new(Mutex::new(state));
        let task = tokio::spawn({
            let state = state.clone();
            let lb = lb.clone();
            async move {
                let mut ticks = tokio::time::interval(tick);
                loop {
                    ticks.tick().await;
                    lock(&state).step(&lb);
                }
            }
        });
        Fleet { state, lb, task }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The group's capacity.
    pub fn capacity(&self) -> Capacity {
        self.lock().capacity
    }

    /// AZs open for launches, in order.
    pub fn enabled_azs(&self) -> Vec<String> {
        self.lock().enabled.clone()
    }

    /// Suspended processes.
    pub fn suspended(&self) -> Vec<ScalingProcess> {
        self.lock().suspended.iter().copied().collect()
    }

    /// The per-AZ views of instances and targets (the database part is left empty).
    pub fn az_views(&self) -> Vec<AzView> {
        let state = self.lock();
        let health = self.lb.target_health();
        let mut views: Vec<AzView> = state.config.azs.iter().map(AzView::new).collect();
        for inst in &state.instances {
            let Some(view) = views.iter_mut().find(|v| v.az == inst.az) else {
                continue;
            };
            view.instances.push(Instance {
                id: inst.id.clone(),
                lifecycle: inst.lifecycle,
                health: inst.health,
                version: Some(inst.app_version.clone()),
                launch_template_version: Some(inst.template.to_string()),
                launch_time: Some(inst.launched_at),
                address: Some(inst.address.to_string()),
                protected_from_scale_in: false,
            });
        }
        for target in health {
            let Some(view) = views.iter_mut().find(|v| v.az == target.target.az) else {
                continue;
            };
            view.targets.push(Target {
                id: target.target.id.clone(),
                port: target.target.address.port(),
                state: port_target_state(target.state),
                reason: target.reason.map(port_target_reason),
                description: target.description.clone(),
            });
        }
        views
    }

    /// Refreshes, newest first.
    pub fn refreshes(&self) -> Vec<Refresh> {
        self.lock().runs.iter().map(|r| r.refresh.clone()).collect()
    }

    /// One refresh by id.
    pub fn refresh(&self, id: &RefreshId) -> Result<Refresh, CloudError> {
        self.lock()
            .runs
            .iter()
            .find(|r| &r.refresh.id == id)
            .map(|r| r.refresh.clone())
            .ok_or_else(|| CloudError::not_found(format!("instance refresh {id}")))
    }

    /// Scaling activities, newest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.iter().cloned().collect()
    }

    /// Records a fault or other event concerning the group.
    pub fn record(&self, source: EventSource, az: Option<&str>, message: String) {
        let mut state = self.lock();
        state.events.push_front(Event {
            at: OffsetDateTime::now_utc(),
            source,
            az: az.map(str::to_owned),
            message,
        });
        state.events.truncate(EVENTS_KEPT);
    }

    /// How many instances are InService with a healthy target.
    pub fn healthy_count(&self) -> usize {
        let state = self.lock();
        state
            .live()
            .filter(|i| {
                i.lifecycle == LifecycleState::InService
                    && self.lb.target_health_of(&i.id).state == lb::TargetState::Healthy
            })
            .count()
    }

    /// Starts an instance refresh to a new launch template version made from the current
    /// one with `request`'s version, binary and environment overrides.
    pub fn deploy(&self, request: &DeployRequest) -> Result<RefreshId, CloudError> {
        request.validate()?;
        let mut state = self.lock();
        if let Some(active) = state.runs.iter().find(|r| !r.refresh.status.is_terminal()) {
            return Err(CloudError::conflict(format!(
                "instance refresh {} is already {}",
                active.refresh.id, active.refresh.status
            )));
        }
        if let Some(binary) = &request.binary
            && !binary.is_file()
        {
            return Err(CloudError::invalid(
                "binary",
                format!("{} is not a file", binary.display()),
            ));
        }
        let current = state.current;
        let base = state
            .templates
            .get(&current)
            .cloned()
            .ok_or_else(|| CloudError::not_found("the current launch template version"))?;
        let version = state.templates.keys().max().copied().unwrap_or(0) + 1;
        let mut env = base.env.clone();
        env.extend(request.env.clone());
        let template = LaunchTemplate {
            version,
            app_version: request.version.clone(),
            binary: request.binary.clone().unwrap_or(base.binary.clone()),
            env,
        };
        let matches = |lt: &LaunchTemplate| {
            lt.app_version == template.app_version
                && lt.binary == template.binary
                && lt.env == template.env
        };
        let matching: BTreeSet<u32> = state
            .templates
            .values()
            .filter(|lt| matches(lt))
            .map(|lt| lt.version)
            .collect();
        state.templates.insert(version, template);
        let todo: BTreeSet<String> = state
            .live()
            .filter(|i| !(request.preferences.skip_matching && matching.contains(&i.template)))
            .map(|i| i.id.clone())
            .collect();
        let total = u32::try_from(todo.len()).unwrap_or(u32::MAX);
        let id = RefreshId(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rand_u32(),
            rand_u32() & 0xffff,
            rand_u32() & 0xfff,
            rand_u32() & 0xfff,
            u64::from(rand_u32()) << 16 | u64::from(rand_u32() & 0xffff)
        ));
        let refresh = Refresh {
            id: id.clone(),
            status: RefreshStatus::Pending,
            status_reason: None,
            started_at: Some(OffsetDateTime::now_utc()),
            ended_at: None,
            percentage_complete: Some(0),
            instances_to_update: Some(total),
            desired_version: Some(request.version.clone()),
            desired_launch_template_version: Some(version.to_string()),
            preferences: Some(request.preferences.clone()),
            checkpoint: None,
            rollback: None,
        };
        state.runs.push_front(Run {
            refresh,
            desired: version,
            previous: current,
            prefs: request.preferences.clone(),
            todo,
            total,
            batch: None,
            passed: BTreeSet::new(),
            resume_at: None,
            bake_until: None,
        });
        state.event(
            None,
            format!(
                "Instance refresh {id} started: launch template version {version} \
                 (application version {})",
                request.version
            ),
        );
        Ok(id)
    }

    /// Cancels the active refresh.
    pub fn cancel_refresh(&self) -> Result<RefreshId, CloudError> {
        let mut state = self.lock();
        let run = state
            .active_run()
            .ok_or_else(|| CloudError::not_found("active instance refresh"))?;
        if !run.refresh.status.can_cancel() {
            return Err(CloudError::conflict(format!(
                "instance refresh {} is {} and cannot be cancelled",
                run.refresh.id, run.refresh.status
            )));
        }
        run.refresh.status = RefreshStatus::Cancelling;
        let id = run.refresh.id.clone();
        state.event(None, format!("Instance refresh {id} is Cancelling"));
        Ok(id)
    }

    /// Rolls the active refresh back to the previous launch template version.
    pub fn rollback_refresh(&self) -> Result<RefreshId, CloudError> {
        let mut state = self.lock();
        let index = state
            .runs
            .iter()
            .position(|r| !r.refresh.status.is_terminal())
            .ok_or_else(|| CloudError::not_found("active instance refresh"))?;
        let Some(mut run) = state.runs.remove(index) else {
            return Err(CloudError::not_found("active instance refresh"));
        };
        if !run.refresh.status.can_roll_back() {
            let error = CloudError::conflict(format!(
                "instance refresh {} is {} and cannot be rolled back",
                run.refresh.id, run.refresh.status
            ));
            state.runs.insert(index, run);
            return Err(error);
        }
        if let Some(batch) = run.batch.take() {
            let lb = self.lb.clone();
            for id in &batch.new_ids {
                state.terminate(&lb, id, " (instance refresh rolled back)");
            }
        }
        state.start_rollback(&mut run, "Rollback requested by the operator".into());
        let id = run.refresh.id.clone();
        state.runs.insert(index, run);
        state.event(None, format!("Instance refresh {id} is RollbackInProgress"));
        Ok(id)
    }

    /// The ids and process ids of the live instances in `az`.
    pub fn instances_in(&self, az: &str) -> Vec<(String, u32)> {
        self.lock()
            .live()
            .filter(|i| i.az == az)
            .map(|i| (i.id.clone(), i.pid))
            .collect()
    }

    /// SIGKILLs every live instance in `az` (the group notices and replaces them).
    pub fn kill_az(&self, az: &str) -> Vec<(String, u32)> {
        let mut state = self.lock();
        let mut killed = Vec::new();
        for inst in state.instances.iter_mut().filter(|i| {
            i.az == az
                && !matches!(
                    i.lifecycle,
                    LifecycleState::Terminating | LifecycleState::Terminated
                )
        }) {
            inst.killed = true;
            inst.restart_at = None;
            match &inst.process {
                Some(process) => {
                    process.signal(Signal::SIGKILL);
                }
                // Its program is not running: the instance goes at once.
                None => {
                    inst.lifecycle = LifecycleState::Terminated;
                    self.lb.deregister(&inst.id);
                }
            }
            killed.push((inst.id.clone(), inst.pid));
        }
        killed
    }

    /// SIGSTOPs every live instance in `az`; instances launched there later start stopped.
    pub fn silence_az(&self, az: &str) -> Vec<(String, u32)> {
        let mut state = self.lock();
        state.silenced.insert(az.to_owned());
        let mut stopped = Vec::new();
        for inst in state.live().filter(|i| i.az == az) {
            if let Some(process) = &inst.process {
                process.signal(Signal::SIGSTOP);
                stopped.push((inst.id.clone(), inst.pid));
            }
        }
        stopped
    }

    /// Lifts the silence of `az`: SIGCONT to every instance there.
    pub fn unsilence_az(&self, az: &str) {
        let mut state = self.lock();
        state.silenced.remove(az);
        for inst in state.instances.iter().filter(|i| i.az == az) {
            if let Some(process) = &inst.process {
                process.signal(Signal::SIGCONT);
            }
        }
    }

    /// Removes `az` from the launch AZs; returns whether it was there.
    pub fn block_launches(&self, az: &str) -> bool {
        let mut state = self.lock();
        let before = state.enabled.len();
        state.enabled.retain(|a| a != az);
        before != state.enabled.len()
    }

    /// Puts `az` back among the launch AZs (in the spec's order).
    pub fn unblock_launches(&self, az: &str) {
        let mut state = self.lock();
        if !state.enabled.iter().any(|a| a == az) && state.config.azs.iter().any(|a| a == az) {
            state.enabled.push(az.to_owned());
            let order = state.config.azs.clone();
            state
                .enabled
                .sort_by_key(|a| order.iter().position(|o| o == a).unwrap_or(usize::MAX));
        }
    }

    /// Suspends `process`; returns whether it was running.
    pub fn suspend(&self, process: ScalingProcess) -> bool {
        self.lock().suspended.insert(process)
    }

    /// Resumes `process`.
    pub fn resume(&self, process: ScalingProcess) {
        self.lock().suspended.remove(&process);
    }

    /// Stops the loop and every instance (SIGTERM, SIGKILL after a grace period).
    pub async fn shutdown(self) {
        self.task.abort();
        let instances: Vec<Inst> = std::mem::take(&mut self.lock().instances);
        let mut stops = Vec::new();
        for mut inst in instances {
            self.lb.deregister(&inst.id);
            if let Some(process) = inst.process.take() {
                stops.push(process.stop(Signal::SIGTERM, STOP_LIMIT));
            }
            if let Some(stopper) = inst.stopper.take() {
                let _ = stopper.await;
            }
        }
        futures::future::join_all(stops).await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rand_u32() -> u32 {
    let bytes = rand_bytes();
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The port's name for a load balancer target state.
pub fn port_target_state(state: lb::TargetState) -> TargetState {
    match state {
        lb::TargetState::Initial => TargetState::Initial,
        lb::TargetState::Healthy => TargetState::Healthy,
        lb::TargetState::Unhealthy => TargetState::Unhealthy,
        lb::TargetState::Unused => TargetState::Unused,
        lb::TargetState::Draining => TargetState::Draining,
    }
}

/// The port's name for a load balancer reason code.
pub fn port_target_reason(reason: lb::TargetReason) -> TargetReason {
    match reason {
        lb::TargetReason::RegistrationInProgress => TargetReason::RegistrationInProgress,
        lb::TargetReason::InitialHealthChecking => TargetReason::InitialHealthChecking,
        lb::TargetReason::ResponseCodeMismatch => TargetReason::ResponseCodeMismatch,
        lb::TargetReason::Timeout => TargetReason::Timeout,
        lb::TargetReason::FailedHealthChecks => TargetReason::FailedHealthChecks,
        lb::TargetReason::NotRegistered => TargetReason::NotRegistered,
        lb::TargetReason::NotInUse => TargetReason::NotInUse,
        lb::TargetReason::DeregistrationInProgress => TargetReason::DeregistrationInProgress,
    }
}
