//! The sandbox's Auto Scaling group: the group model ([`crate::model::Group`]) driven with
//! webapp processes as instances, registered with the sandbox load balancer.
//!
//! Every Auto Scaling rule — placement, lifecycle, ELB health with the grace period,
//! replacement, scaling processes, AZ rebalancing, instance refresh and its refusals — is the
//! model's. This driver reads the time from its injected [`Clock`], steps the model at least
//! every [`Timing::tick`] (and by its [`Group::next_deadline`]), gives it the load balancer's
//! target states, and carries out its actions:
//! - launch: one webapp process from a [`LaunchTemplate`] version (binary and environment), in
//!   Availability Zone `k` on `127.0.k+1.x` with a free port (a process that cannot start is
//!   reported with [`Group::launch_failed`]);
//! - register / deregister: the load balancer's targets;
//! - terminate: wait for the load balancer to finish draining the target (at most the
//!   deregistration delay), then SIGTERM so the webapp drains its own in-flight requests,
//!   SIGKILL after a grace period, and [`Group::gone`].
//!
//! What is the instance's and not the group's stays here: a webapp that exits on its own is
//! restarted as its systemd unit says (the instance stays; its target fails its checks
//! meanwhile); a killed instance (a fault) is reported gone. Faults silence an AZ with
//! SIGSTOP/SIGCONT.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::lb::{self, LoadBalancer};
use super::metrics::{TICKS_PER_SECOND, cpu_ticks};
use super::process::{ProcessGroup, az_address, command, free_port};
use crate::model::{self, Action, Group, GroupConfig, Reading, TimeScale, Timings};
use crate::port::instance::{InstanceAction, InstancePlan};
use crate::port::{
    AzView, Capacity, Clock, CloudError, DeployRequest, DurationInForce, Event, EventSource,
    Instance, LifecycleState, Refresh, RefreshId, SandboxClock, ScalingPolicy, ScalingProcess,
    ScalingView, ShiftRequest, Target, TargetState, ZonalShift,
};
use crate::spec::Sandbox;

/// Environment variable put on every process the sandbox starts, naming its state directory,
/// so a later start can find and kill what a crashed daemon left running.
pub const SANDBOX_MARKER: &str = "TRIAD_SANDBOX_DIR";
/// How long a terminated webapp gets after SIGTERM before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long the check that a started program listens waits for a connection on loopback.
const LISTEN_PROBE: Duration = Duration::from_millis(20);
/// How the event saying a program listens starts.
pub const PROGRAM_STARTED: &str = "Webapp started: ";
/// The webapp unit's `RestartSec`.
const RESTART_DELAY: Duration = Duration::from_secs(2);
/// The webapp unit's `RestartPreventExitStatus` (a configuration error).
const PREVENT_RESTART_STATUS: i32 = 2;

/// The sandbox's clock settings: the model's durations on the wall clock, and how often the
/// driver steps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// How often the group is stepped at least (target states change between deadlines).
    pub tick: Duration,
    /// The clock: how the spec's durations map to wall time.
    pub scale: TimeScale,
    /// The spec's durations on its own AWS clock (what `status` shows as in force).
    pub spec: Timings,
    /// Every duration the model schedules, on the wall clock: [`Timing::spec`] through
    /// [`Timing::scale`].
    pub model: Timings,
    /// How long an RDS Multi-AZ failover takes, on the AWS clock (`[sandbox]
    /// rds_failover_seconds`): the database's detection time, on the wall clock.
    pub rds_failover: Duration,
}

impl Timing {
    /// The spec's health check, deregistration delay, grace period, default instance warmup
    /// and the `[sandbox]` instance boot assumption, on the clock `[sandbox]` asks for: the
    /// spec's own (`aws`) or divided by the `fast` factor. A refresh batch gets 600 s on the
    /// AWS clock to pass its health checks.
    pub fn sandbox(app: &SandboxApp, sandbox: &Sandbox) -> Timing {
        let seconds = |s: u32| Duration::from_secs(u64::from(s));
        let check = &app.health_check;
        let spec = Timings {
            health_check: lb::HealthCheck {
                path: check.path.clone(),
                interval: seconds(check.interval_seconds),
                timeout: seconds(check.timeout_seconds),
                healthy_threshold: check.healthy_threshold.clamp(1, 10),
                unhealthy_threshold: check.unhealthy_threshold.clamp(1, 10),
                success_codes: 200..=200,
            },
            deregistration_delay: seconds(app.deregistration_delay_seconds),
            grace_period: seconds(app.health_check_grace_period_seconds),
            default_warmup: seconds(app.default_instance_warmup_seconds.unwrap_or(0)),
            refresh_batch_timeout: Duration::from_secs(600),
            standby_wait: model::timings::STANDBY_WAIT,
            metric_period: model::AWS_METRIC_PERIOD,
            instance_boot: seconds(sandbox.instance_boot_seconds),
        };
        let mut timing = Timing::on(spec, sandbox.time_scale(check.interval_seconds));
        timing.rds_failover = seconds(sandbox.rds_failover_seconds);
        if let Some(period) = sandbox.scaling_period_seconds {
            // The test-only shortening of the metric period, in wall seconds.
            timing.model.metric_period = seconds(period);
        }
        timing
    }

    /// `spec` on the clock `scale`, stepped at least four times per health-check interval
    /// (every 50 to 250 ms).
    pub fn on(spec: Timings, scale: TimeScale) -> Timing {
        let model = spec.scaled(&scale);
        let tick = (model.health_check.interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(250));
        Timing {
            tick,
            scale,
            spec,
            model,
            rds_failover: Duration::from_secs(90),
        }
    }

    /// What `status` shows: the clock and every duration in force on both clocks.
    pub fn clock(&self) -> SandboxClock {
        let entry = |name: &str, aws: Duration| DurationInForce {
            name: name.to_owned(),
            aws_seconds: aws.as_secs_f64(),
            wall_seconds: self.scale.to_wall(aws).as_secs_f64(),
        };
        let spec = &self.spec;
        SandboxClock {
            scale: self.scale,
            healthy_threshold: spec.health_check.healthy_threshold,
            unhealthy_threshold: spec.health_check.unhealthy_threshold,
            durations: vec![
                entry(HEALTH_CHECK_INTERVAL, spec.health_check.interval),
                entry(HEALTH_CHECK_TIMEOUT, spec.health_check.timeout),
                entry(DEREGISTRATION_DELAY, spec.deregistration_delay),
                entry(GRACE_PERIOD, spec.grace_period),
                entry(DEFAULT_WARMUP, spec.default_warmup),
                entry(INSTANCE_BOOT, spec.instance_boot),
                entry(RDS_FAILOVER, self.rds_failover),
            ],
            program_start_seconds: None,
        }
    }
}

/// The names of the durations [`Timing::clock`] lists.
pub const HEALTH_CHECK_INTERVAL: &str = "health check interval";
pub const HEALTH_CHECK_TIMEOUT: &str = "health check timeout";
pub const DEREGISTRATION_DELAY: &str = "deregistration delay";
pub const GRACE_PERIOD: &str = "health check grace period";
pub const DEFAULT_WARMUP: &str = "default instance warmup";
pub const INSTANCE_BOOT: &str = "instance boot (assumed)";
pub const RDS_FAILOVER: &str = "RDS failover (assumed)";

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
    /// The group's default instance warmup (absent in specs written before it existed).
    #[serde(default)]
    pub default_instance_warmup_seconds: Option<u32>,
    pub health_check: SandboxHealthCheck,
    /// Target tracking (`[app.scaling]`), if any.
    #[serde(default)]
    pub scaling: Option<crate::spec::Scaling>,
}

/// The spec's target group health check, as far as the sandbox uses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxHealthCheck {
    pub path: String,
    /// Absent in specs written before the sandbox ran on the spec's clock.
    #[serde(default = "default_interval")]
    pub interval_seconds: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

fn default_interval() -> u32 {
    crate::spec::HealthCheck::default().interval_seconds
}

fn default_timeout() -> u32 {
    crate::spec::HealthCheck::default().timeout_seconds
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

impl LaunchTemplate {
    /// Whether `other` launches the same thing (SkipMatching compares this).
    fn same_content(&self, other: &LaunchTemplate) -> bool {
        self.app_version == other.app_version
            && self.binary == other.binary
            && self.env == other.env
    }
}

/// How the group is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The AZs, in order: AZ number `k` owns `127.0.k+1.0/24`.
    pub azs: Vec<String>,
    pub capacity: Capacity,
    pub first_template: LaunchTemplate,
    pub timing: Timing,
    /// Where the model reads the time.
    pub clock: Arc<dyn Clock>,
    /// Where instance logs go (`instances/<az>/<id>.log`, see [`super::logs`]).
    pub log_dir: PathBuf,
    /// The value of [`SANDBOX_MARKER`] on every instance.
    pub marker: String,
    /// The group's target tracking policies (none: a fixed size).
    pub policies: Vec<ScalingPolicy>,
}

/// One instance's machine: its address and its program.
struct Machine {
    az: String,
    address: SocketAddr,
    template: u32,
    process: Option<ProcessGroup>,
    pid: u32,
    stopper: Option<JoinHandle<()>>,
    /// The instance itself was killed (a fault), not just its program.
    killed: bool,
    /// When the init system starts the program again after it failed, or (while `booting`)
    /// when the instance has booted and starts it the first time.
    restart_at: Option<Instant>,
    /// The instance has not finished booting: its program has never run.
    booting: bool,
    /// When its program was last started and has not yet been seen listening.
    starting: Option<Instant>,
}

struct State {
    config: FleetConfig,
    /// How long the last program took from its start to listening (real time).
    last_start: Option<Duration>,
    group: Group,
    templates: BTreeMap<u32, LaunchTemplate>,
    machines: BTreeMap<String, Machine>,
    silenced: BTreeSet<String>,
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

fn rand_bytes() -> [u8; 8] {
    // Unique enough for ids: time and a process-wide counter, mixed.
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

fn rand_u32() -> u32 {
    let bytes = rand_bytes();
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl State {
    fn now(&self) -> OffsetDateTime {
        self.config.clock.now()
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

    /// Boots instance `id` from launch template `template` in `az`.
    fn boot(&mut self, id: &str, az: &str, template: u32) -> Result<(), String> {
        let az_index = self
            .config
            .azs
            .iter()
            .position(|a| a == az)
            .ok_or_else(|| format!("unknown AZ {az}"))?;
        let lt = self
            .templates
            .get(&template)
            .cloned()
            .ok_or_else(|| format!("no launch template version {template}"))?;
        let host = {
            let next = self.next_host.entry(az.to_owned()).or_insert(1);
            let host = *next;
            *next = if *next >= 249 { 1 } else { *next + 1 };
            host
        };
        let ip = az_address(az_index, host);
        let port = free_port(ip).map_err(|e| format!("picking a port on {ip}: {e}"))?;
        let address = SocketAddr::from((ip, port));
        let boot = self.group.timings().instance_boot;
        let process = if boot.is_zero() {
            Some(self.spawn(&lt, id, az, address)?)
        } else {
            None
        };
        self.machines.insert(
            id.to_owned(),
            Machine {
                az: az.to_owned(),
                address,
                template,
                pid: process.as_ref().map_or(0, ProcessGroup::pid),
                process,
                stopper: None,
                killed: false,
                restart_at: (!boot.is_zero()).then(|| Instant::now() + boot),
                booting: !boot.is_zero(),
                starting: boot.is_zero().then(Instant::now),
            },
        );
        Ok(())
    }

    /// Starts the programs of instances that have booted, and again those whose restart is
    /// due.
    fn restart_due(&mut self) {
        let due: Vec<String> = self
            .machines
            .iter()
            .filter(|(_, m)| m.restart_at.is_some_and(|t| Instant::now() >= t))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(machine) = self.machines.get_mut(&id) else {
                continue;
            };
            machine.restart_at = None;
            let booting = std::mem::take(&mut machine.booting);
            let (az, address, template) = (machine.az.clone(), machine.address, machine.template);
            let started = self
                .templates
                .get(&template)
                .ok_or_else(|| format!("no launch template version {template}"))
                .and_then(|lt| self.spawn(lt, &id, &az, address));
            match started {
                Ok(process) => {
                    if let Some(machine) = self.machines.get_mut(&id) {
                        machine.pid = process.pid();
                        machine.process = Some(process);
                        machine.starting = Some(Instant::now());
                    }
                }
                Err(reason) if booting => {
                    let now = self.now();
                    self.machines.remove(&id);
                    self.group.launch_failed(now, &id, &reason);
                }
                Err(reason) => {
                    let now = self.now();
                    self.group.record(
                        now,
                        EventSource::Scaling,
                        Some(&az),
                        format!("The webapp service on {id} could not be restarted: {reason}"),
                    );
                }
            }
        }
    }

    /// Programs that exited: a killed instance is gone; a program that exits on its own
    /// leaves its instance running, and the init system treats it as the webapp's unit says
    /// (`Restart=on-failure`, `RestartSec=2`, `RestartPreventExitStatus=2`).
    fn reap(&mut self, lb: &LoadBalancer) {
        let now = self.now();
        let mut exited = Vec::new();
        for (id, machine) in &mut self.machines {
            if let Some(process) = machine.process.as_mut()
                && let Ok(Some(status)) = process.try_wait()
            {
                exited.push((id.clone(), machine.az.clone(), machine.killed, status));
                machine.process = None;
            }
        }
        for (id, az, killed, status) in exited {
            if killed {
                lb.deregister(&id);
                self.machines.remove(&id);
                self.group.gone(
                    now,
                    &id,
                    Some(&format!("the instance's process ended: {status}")),
                );
                continue;
            }
            let restart = !status.success() && status.code() != Some(PREVENT_RESTART_STATUS);
            if let Some(machine) = self.machines.get_mut(&id) {
                machine.restart_at = restart.then(|| Instant::now() + RESTART_DELAY);
            }
            self.group.record(
                now,
                EventSource::Scaling,
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
        // Finished terminations.
        let stopped: Vec<String> = self
            .machines
            .iter()
            .filter(|(_, m)| m.stopper.as_ref().is_some_and(JoinHandle::is_finished))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stopped {
            self.machines.remove(&id);
            self.group.gone(now, &id, None);
        }
    }

    /// Every live instance's counters for the scaling policies: the requests the load
    /// balancer routed to it, and its process's CPU time from `/proc`.
    fn readings(&self, lb: &LoadBalancer) -> BTreeMap<String, Reading> {
        self.group
            .members()
            .iter()
            .filter(|m| m.is_live())
            .filter_map(|m| {
                let machine = self.machines.get(&m.id)?;
                let cpu_seconds = machine
                    .process
                    .as_ref()
                    .and_then(|_| cpu_ticks(machine.pid))
                    .map(|ticks| ticks as f64 / TICKS_PER_SECOND);
                Some((
                    m.id.clone(),
                    Reading {
                        requests: lb.requests_to(&m.id),
                        cpu_seconds,
                    },
                ))
            })
            .collect()
    }

    /// Programs started and now listening: how long that took in real time (it does not
    /// scale with the clock; reports keep it as measured), recorded as an event and kept as
    /// the last start.
    fn listening(&mut self) {
        let mut started = Vec::new();
        for (id, machine) in &mut self.machines {
            let Some(since) = machine.starting else {
                continue;
            };
            if machine.process.is_none() || self.silenced.contains(&machine.az) {
                continue;
            }
            if std::net::TcpStream::connect_timeout(&machine.address, LISTEN_PROBE).is_ok() {
                machine.starting = None;
                started.push((id.clone(), machine.az.clone(), since.elapsed()));
            }
        }
        for (id, az, took) in started {
            self.last_start = Some(took);
            let now = self.now();
            self.group.record(
                now,
                EventSource::Scaling,
                Some(&az),
                format!(
                    "{PROGRAM_STARTED}{id} listens {:.2} s after its program started (real \
                     time, not scaled)",
                    took.as_secs_f64()
                ),
            );
        }
    }

    /// One step: the machines, then the model, then its actions.
    fn step(&mut self, lb: &Arc<LoadBalancer>) {
        self.reap(lb);
        self.restart_due();
        self.listening();
        let now = self.now();
        if self.group.wants_readings(now) {
            let readings = self.readings(lb);
            self.group.observe(now, &readings);
        }
        let actions = self.group.step(now, &|id| lb.target_health_of(id).state);
        // A shift that expired in this step stops steering the load balancer now.
        lb.set_shifted(self.group.shifted_azs());
        self.carry_out(lb, actions);
    }

    fn carry_out(&mut self, lb: &Arc<LoadBalancer>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Launch { id, az, template } => {
                    if let Err(reason) = self.boot(&id, &az, template) {
                        let now = self.now();
                        self.group.launch_failed(now, &id, &reason);
                    }
                }
                Action::Register { id, az } => {
                    if let Some(machine) = self.machines.get(&id) {
                        lb.register(lb::Target {
                            id,
                            az,
                            address: machine.address,
                        });
                    }
                }
                Action::Deregister { id } => {
                    lb.deregister(&id);
                }
                Action::Terminate { id } => self.stop(lb, &id),
            }
        }
    }

    /// Stops instance `id` once its target has drained (at most the deregistration delay).
    fn stop(&mut self, lb: &Arc<LoadBalancer>, id: &str) {
        let delay = self.group.timings().deregistration_delay;
        let Some(machine) = self.machines.get_mut(id) else {
            let now = self.now();
            self.group.gone(now, id, None);
            return;
        };
        machine.restart_at = None;
        let process = machine.process.take();
        let lb = lb.clone();
        let target = id.to_owned();
        machine.stopper = Some(tokio::spawn(async move {
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline
                && lb.target_health_of(&target).state == TargetState::Draining
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(process) = process {
                process.stop(Signal::SIGTERM, STOP_LIMIT).await;
            }
        }));
    }
}

impl Fleet {
    /// Starts the group's loop (whose first step launches the first instances) with `lb` as
    /// its target group.
    pub fn start(config: FleetConfig, lb: Arc<LoadBalancer>) -> Fleet {
        let first = config.first_template.clone();
        let prefix = {
            let hex: String = rand_bytes().iter().map(|b| format!("{b:02x}")).collect();
            format!("i-{}", &hex[..12])
        };
        let group = Group::new(GroupConfig {
            azs: config.azs.clone(),
            capacity: config.capacity,
            launch_template: first.version,
            timings: config.timing.model.clone(),
            id_prefix: prefix,
        });
        let mut group = group;
        group.set_policies(config.policies.clone());
        let state = State {
            group,
            templates: BTreeMap::from([(first.version, first)]),
            machines: BTreeMap::new(),
            silenced: BTreeSet::new(),
            next_host: BTreeMap::new(),
            last_start: None,
            config,
        };
        let tick = state.config.timing.tick;
        let state = Arc::new(Mutex::new(state));
        let task = tokio::spawn({
            let state = state.clone();
            let lb = lb.clone();
            async move {
                loop {
                    let wait = {
                        let mut state = lock(&state);
                        state.step(&lb);
                        let now = state.now();
                        state
                            .group
                            .next_deadline()
                            .filter(|at| *at > now)
                            .map_or(tick, |at| {
                                Duration::try_from(at - now).unwrap_or(tick).min(tick)
                            })
                    };
                    tokio::time::sleep(wait).await;
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
        self.lock().group.capacity()
    }

    /// AZs open for launches, in order.
    pub fn enabled_azs(&self) -> Vec<String> {
        self.lock().group.enabled_azs()
    }

    /// Suspended processes.
    pub fn suspended(&self) -> Vec<ScalingProcess> {
        self.lock().group.suspended()
    }

    /// The per-AZ views of instances and targets (the database part is left empty).
    pub fn az_views(&self) -> Vec<AzView> {
        let state = self.lock();
        let health = self.lb.target_health();
        let mut views: Vec<AzView> = state.config.azs.iter().map(AzView::new).collect();
        for member in state.group.members() {
            let Some(view) = views.iter_mut().find(|v| v.az == member.az) else {
                continue;
            };
            view.instances.push(Instance {
                id: member.id.clone(),
                lifecycle: member.lifecycle,
                health: member.health,
                version: state
                    .templates
                    .get(&member.template)
                    .map(|t| t.app_version.clone()),
                launch_template_version: Some(member.template.to_string()),
                launch_time: Some(member.launched_at),
                address: state
                    .machines
                    .get(&member.id)
                    .map(|m| m.address.to_string()),
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
                state: target.state,
                reason: target.reason,
                description: target.description.clone(),
            });
        }
        views
    }

    /// Refreshes, newest first.
    pub fn refreshes(&self) -> Vec<Refresh> {
        self.lock().group.refreshes()
    }

    /// One refresh by id.
    pub fn refresh(&self, id: &RefreshId) -> Result<Refresh, CloudError> {
        self.lock()
            .group
            .refresh(id)
            .cloned()
            .ok_or_else(|| CloudError::not_found(format!("instance refresh {id}")))
    }

    /// Scaling activities and recorded events, newest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock()
            .group
            .events()
            .map(|e| e.event.clone())
            .collect()
    }

    /// Records a fault or other event concerning the group.
    pub fn record(&self, source: EventSource, az: Option<&str>, message: String) {
        let mut state = self.lock();
        let now = state.now();
        state.group.record(now, source, az, message);
    }

    /// How many instances are InService with a healthy target.
    pub fn healthy_count(&self) -> usize {
        let state = self.lock();
        state
            .group
            .members()
            .iter()
            .filter(|m| {
                m.lifecycle == LifecycleState::InService
                    && self.lb.target_health_of(&m.id).state == TargetState::Healthy
            })
            .count()
    }

    /// Starts an instance refresh to a new launch template version made from the current
    /// one with `request`'s version, binary and environment overrides.
    pub fn deploy(&self, request: &DeployRequest) -> Result<RefreshId, CloudError> {
        request.validate()?;
        let mut state = self.lock();
        state.group.check_can_start_refresh()?;
        if let Some(binary) = &request.binary
            && !binary.is_file()
        {
            return Err(CloudError::invalid(
                "binary",
                format!("{} is not a file", binary.display()),
            ));
        }
        let current = state.group.launch_template();
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
        let matching: BTreeSet<u32> = state
            .templates
            .values()
            .filter(|lt| lt.same_content(&template))
            .map(|lt| lt.version)
            .collect();
        state.templates.insert(version, template);
        let id = RefreshId(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rand_u32(),
            rand_u32() & 0xffff,
            rand_u32() & 0xfff,
            rand_u32() & 0xfff,
            u64::from(rand_u32()) << 16 | u64::from(rand_u32() & 0xffff)
        ));
        let now = state.now();
        state
            .group
            .start_refresh(now, id, version, request, &matching)
    }

    /// The dry run of `action` on instance `id`, through the group model.
    pub fn describe_instance_action(
        &self,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        let state = self.lock();
        let now = state.now();
        state
            .group
            .describe_instance_action(now, id, action, vec![sandbox_calls(id, action)])
    }

    /// Carries out `action` on instance `id` through the group model; the next step stops,
    /// deregisters or registers the real process.
    pub fn act_on_instance(
        &self,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        let mut state = self.lock();
        let now = state.now();
        let plan = state.group.describe_instance_action(
            now,
            id,
            action,
            vec![sandbox_calls(id, action)],
        )?;
        state.group.act_on_instance(now, id, action)?;
        state.step(&self.lb);
        Ok(plan)
    }

    /// Cancels the active refresh.
    pub fn cancel_refresh(&self) -> Result<RefreshId, CloudError> {
        let mut state = self.lock();
        let now = state.now();
        state.group.cancel_refresh(now)
    }

    /// Rolls the active refresh back to the previous launch template version.
    pub fn rollback_refresh(&self) -> Result<RefreshId, CloudError> {
        let mut state = self.lock();
        let now = state.now();
        let id = state.group.rollback_refresh(now)?;
        // Stop the batch in flight now rather than at the next tick.
        state.step(&self.lb);
        Ok(id)
    }

    /// The ids and process ids of the live instances in `az`.
    pub fn instances_in(&self, az: &str) -> Vec<(String, u32)> {
        let state = self.lock();
        state
            .group
            .members()
            .iter()
            .filter(|m| m.az == az && m.is_live())
            .filter_map(|m| {
                state
                    .machines
                    .get(&m.id)
                    .map(|machine| (m.id.clone(), machine.pid))
            })
            .collect()
    }

    /// SIGKILLs every live instance in `az` (the group notices and replaces them).
    pub fn kill_az(&self, az: &str) -> Vec<(String, u32)> {
        let mut state = self.lock();
        let now = state.now();
        let live: Vec<String> = state
            .group
            .members()
            .iter()
            .filter(|m| m.az == az && m.is_live())
            .map(|m| m.id.clone())
            .collect();
        let mut killed = Vec::new();
        for id in live {
            let Some(machine) = state.machines.get_mut(&id) else {
                continue;
            };
            machine.killed = true;
            machine.restart_at = None;
            killed.push((id.clone(), machine.pid));
            match &machine.process {
                Some(process) => {
                    process.signal(Signal::SIGKILL);
                }
                // Its program is not running: the instance goes at once.
                None => {
                    state.machines.remove(&id);
                    self.lb.deregister(&id);
                    state
                        .group
                        .gone(now, &id, Some("the instance was terminated"));
                }
            }
        }
        killed
    }

    /// SIGSTOPs every live instance in `az`; instances launched there later start stopped.
    pub fn silence_az(&self, az: &str) -> Vec<(String, u32)> {
        let mut state = self.lock();
        state.silenced.insert(az.to_owned());
        let mut stopped = Vec::new();
        for (id, machine) in state.machines.iter().filter(|(_, m)| m.az == az) {
            if let Some(process) = &machine.process {
                process.signal(Signal::SIGSTOP);
                stopped.push((id.clone(), machine.pid));
            }
        }
        stopped
    }

    /// Lifts the silence of `az`: SIGCONT to every instance there.
    pub fn unsilence_az(&self, az: &str) {
        let mut state = self.lock();
        state.silenced.remove(az);
        for machine in state.machines.values().filter(|m| m.az == az) {
            if let Some(process) = &machine.process {
                process.signal(Signal::SIGCONT);
            }
        }
    }

    /// The launch-block fault on the group (see [`Group::block_launches`]); returns what
    /// changed.
    pub fn block_launches(&self, az: &str) -> Vec<crate::port::FaultChange> {
        self.lock().group.block_launches(az)
    }

    /// Starts a zonal shift on the group and the load balancer together: from now on the load
    /// balancer sends no new request to the AZ's targets and the group launches elsewhere;
    /// the group's step ends it at its expiry.
    pub fn start_zonal_shift(
        &self,
        request: &ShiftRequest,
        resources: Vec<String>,
    ) -> Result<ZonalShift, CloudError> {
        let mut state = self.lock();
        let now = state.now();
        let shift = state.group.start_zonal_shift(now, request, resources)?;
        self.lb.set_shifted(state.group.shifted_azs());
        Ok(shift)
    }

    /// Cancels the active zonal shift (away from `az`, if given) on both.
    pub fn cancel_zonal_shift(&self, az: Option<&str>) -> Result<Vec<ZonalShift>, CloudError> {
        let mut state = self.lock();
        let now = state.now();
        let cancelled = state.group.cancel_zonal_shift(now, az)?;
        self.lb.set_shifted(state.group.shifted_azs());
        Ok(cancelled)
    }

    /// The active zonal shifts.
    pub fn zonal_shifts(&self) -> Vec<ZonalShift> {
        self.lock().group.zonal_shifts()
    }

    /// Puts `az` back among the launch AZs.
    pub fn unblock_launches(&self, az: &str) {
        self.lock().group.enable_az(az);
    }

    /// Suspends `process`; returns whether it was running.
    pub fn suspend(&self, process: ScalingProcess) -> bool {
        self.lock().group.suspend(process)
    }

    /// Resumes `process`.
    pub fn resume(&self, process: ScalingProcess) {
        self.lock().group.resume(process);
    }

    /// The scaling section of a snapshot (see [`Group::scaling_view`]).
    pub fn scaling(&self) -> ScalingView {
        self.lock().group.scaling_view()
    }

    /// How long the last instance's program took from its start to listening, real time.
    pub fn last_start(&self) -> Option<Duration> {
        self.lock().last_start
    }

    /// The model's timings.
    pub fn timings(&self) -> model::Timings {
        self.lock().group.timings().clone()
    }

    /// Stops the loop and every instance (SIGTERM, SIGKILL after a grace period).
    pub async fn shutdown(self) {
        self.task.abort();
        let machines: Vec<(String, Machine)> = std::mem::take(&mut self.lock().machines)
            .into_iter()
            .collect();
        let mut stops = Vec::new();
        for (id, mut machine) in machines {
            self.lb.deregister(&id);
            if let Some(process) = machine.process.take() {
                stops.push(process.stop(Signal::SIGTERM, STOP_LIMIT));
            }
            if let Some(stopper) = machine.stopper.take() {
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

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the sandbox does to carry out `action` on `id`, for its dry run.
fn sandbox_calls(id: &str, action: InstanceAction) -> String {
    match action {
        InstanceAction::Terminate { .. } => {
            format!("load balancer: deregister {id}, drain; then SIGTERM its process")
        }
        InstanceAction::Unhealthy => {
            format!("group model: mark {id} Unhealthy; replaced after its grace period")
        }
        InstanceAction::Standby { .. } => {
            format!("load balancer: deregister {id}; its process keeps running")
        }
        InstanceAction::Resume => format!("load balancer: register {id}"),
    }
}
