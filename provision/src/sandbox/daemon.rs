//! The per-stack sandbox daemon: it owns every process of one sandbox stack (moto, the
//! PostgreSQL pair, the load balancer, the webapp instances) and serves the Cloud port's
//! operations on a loopback HTTP control API carrying the port's types as JSON.
//!
//! [`serve`] runs the daemon until it is told to stop (`POST /shutdown`, SIGTERM or SIGINT):
//! 1. it refuses to start when a live daemon already owns the state directory, and otherwise
//!    removes what a crashed one left: its address and pid files, and every process still
//!    carrying the directory in its [`SANDBOX_MARKER`] environment variable (PostgreSQL
//!    servers are found by their data directories, see [`super::db::kill_stale_servers`]);
//! 2. it listens on `127.0.0.1` on a free port and writes the address to [`ADDRESS_FILE`]
//!    (atomically: written aside, then renamed), so clients can follow the bring-up;
//! 3. it brings the stack up — moto (with the "user created" topic, the mailer's queues, the
//!    token table and the sender's SES identity), the database, the load balancer, the mailer
//!    (see [`super::side_channel`]), the group's instances until every target is healthy —
//!    and records "X of Y" [`ProvisionEvent`]s (`GET /progress`). PostgreSQL runs as its own
//!    user when the daemon is root; if that user cannot enter the state directory (a 0700 home
//!    above the project), the database lives in a per-stack directory in the system's
//!    temporary directory instead, recorded in [`DB_DIR_FILE`] so that stale-process cleanup
//!    and [`remove_state`] (`triad down`) find it;
//! 4. it serves until stopped, then stops everything and removes the address and pid files.
//!
//! Control API (JSON bodies; errors are a [`CloudError`] with a 4xx/5xx status):
//! `GET /snapshot`, `GET /progress`, `POST /deploy` ([`DeployRequest`] → [`RefreshId`]),
//! `POST /refresh/cancel`, `POST /refresh/rollback`, `GET /refresh/{id}`,
//! `POST /fault/describe` ([`Fault`] → [`FaultPlan`]), `POST /fault/inject`
//! ([`InjectRequest`] → [`FaultRecord`]), `POST /fault/restore` ([`FaultRecord`]),
//! `POST /logs` ([`LogsRequest`] → [`LogPage`], see [`super::logs`]),
//! `POST /instance/describe` and `POST /instance/act` ([`InstanceRequest`] →
//! [`InstancePlan`](crate::port::InstancePlan)), `POST /shift/start` ([`ShiftStart`] →
//! [`ZonalShift`](crate::port::ZonalShift)), `POST /shift/cancel` ([`ShiftCancel`] → the cancelled shifts),
//! `POST /shutdown`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::db::{self, DbCluster, DbConfig, NodeSignal};
use super::fleet::{Fleet, FleetConfig, LaunchTemplate, SANDBOX_MARKER, SandboxApp, Timing};
use super::lb::{LbConfig, LoadBalancer};
use super::logs::{LogStore, SCAN_INTERVAL};
use super::metrics::{Samples, cpu_ticks};
use super::process::{ProcessGroup, command, free_port, signal_tree};
use super::side_channel::{ManagedResources, Retry, SideChannel, SideChannelConfig};
use crate::port::instance::InstanceAction;
use crate::port::{
    BackendKind, Capacity, CapacityCheck, Clock, CloudError, Database, DbRole, DbStatus,
    DeployRequest, Event, EventSource, Fault, FaultChange, FaultPlan, FaultRecord, FaultStep,
    LogCursor, LogQuery, MetricKind, MetricPoint, MetricSeries, Metrics, Outputs, PlannedAction,
    ProvisionEvent, RefreshId, ResourceEvent, ResourceStatus, SandboxChange, ShiftRequest,
    Snapshot, StackOperation, StackRef, StackStatus, StepPlan, SystemClock, plan_fault,
};
use crate::port::{check_fault_az, fault};
use crate::spec::Sandbox;

/// The file in the state directory holding the control API's address (`127.0.0.1:port`).
pub const ADDRESS_FILE: &str = "daemon.addr";
/// The file in the state directory holding the daemon's process id.
pub const PID_FILE: &str = "daemon.pid";
/// The file in the state directory holding the stack spec (JSON of a `StackSpec`).
pub const SPEC_FILE: &str = "spec.json";
/// The file in the state directory naming the database's directory when it is not `db/` in the
/// state directory (see [`database_dir`]).
pub const DB_DIR_FILE: &str = "db.dir";
/// How a fallback database directory's name starts (in the system's temporary directory).
const DB_FALLBACK_PREFIX: &str = "triad-sandbox-";
/// How long moto, the database and the first instances may take to come up.
const BRING_UP_LIMIT: Duration = Duration::from_secs(180);
/// Events a snapshot carries at most.
const SNAPSHOT_EVENTS: usize = 100;
/// Of those, the side channel's (the mailer's) at most.
const SNAPSHOT_MAILER_EVENTS: usize = 30;
/// Points the daemon's own per-second series keep (as long as the load balancer's metrics).
const SAMPLES_KEPT: usize = 900;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another live daemon owns the state directory.
    #[error("a sandbox daemon (pid {pid}) already runs for {dir}")]
    AlreadyRunning { pid: u32, dir: PathBuf },
    /// The spec file is missing or does not describe a sandbox stack.
    #[error("reading the stack spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    /// A file-system or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// What the sandbox needs of the stack spec. It deserialises from the JSON of a `StackSpec`
/// (other fields are ignored), which is what `DesiredStack::spec` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub name: String,
    pub region: String,
    pub azs: Vec<String>,
    pub app: SandboxApp,
    pub db: SandboxDb,
    pub mailer: SandboxMailer,
    /// The clock and the AWS assumptions (defaults in specs written before it existed).
    #[serde(default)]
    pub sandbox: Sandbox,
}

/// The spec's `[db]` section, as far as the sandbox uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDb {
    pub database_name: String,
}

/// The spec's `[mailer]` section, as far as the sandbox uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMailer {
    pub sender: String,
    pub token_ttl_seconds: u32,
}

impl SandboxSpec {
    /// Reads the spec out of the JSON of a `StackSpec`.
    pub fn from_json(value: &serde_json::Value) -> Result<SandboxSpec, CloudError> {
        let spec: SandboxSpec = serde_json::from_value(value.clone())
            .map_err(|e| CloudError::invalid("spec", e.to_string()))?;
        if spec.azs.len() < 2 {
            return Err(CloudError::invalid(
                "spec.azs",
                "the sandbox needs at least two Availability Zones (a Multi-AZ database)",
            ));
        }
        Ok(spec)
    }

    /// The resources the sandbox runs for this spec, in start order: (logical id, type).
    pub fn resources(&self) -> Vec<(String, String)> {
        let mut resources = vec![
            (
                "ManagedServices".to_owned(),
                "Sandbox::Moto::Server".to_owned(),
            ),
            (
                "DatabasePrimary".to_owned(),
                "Sandbox::PostgreSQL::Primary".to_owned(),
            ),
            (
                "DatabaseStandby".to_owned(),
                "Sandbox::PostgreSQL::Standby".to_owned(),
            ),
            (
                "LoadBalancer".to_owned(),
                "Sandbox::LoadBalancer".to_owned(),
            ),
            ("Mailer".to_owned(), "Sandbox::Lambda::Function".to_owned()),
        ];
        for n in 1..=self.app.desired {
            resources.push((
                format!("Instance{n}"),
                "Sandbox::Webapp::Instance".to_owned(),
            ));
        }
        resources
    }
}

/// How to run one sandbox stack.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The stack's state directory (`.triad/<stack>/`): logs, database files, address file.
    pub dir: PathBuf,
    pub spec: SandboxSpec,
    /// The webapp binary the first launch template version runs.
    pub webapp_bin: PathBuf,
    /// moto's `moto_server` executable.
    pub moto_bin: PathBuf,
    /// The mailer binary, run as the Lambda function behind the "user created" topic. Without
    /// it the topic's messages wait in the mailer's queue.
    pub mailer_bin: Option<PathBuf>,
    /// Clock settings; `None` takes [`Timing::sandbox`] of the spec.
    pub timing: Option<Timing>,
}

impl DaemonConfig {
    /// A configuration reading the spec from `dir/spec.json` (see [`SPEC_FILE`]).
    pub fn from_dir(
        dir: impl Into<PathBuf>,
        webapp_bin: PathBuf,
        moto_bin: PathBuf,
        mailer_bin: Option<PathBuf>,
    ) -> Result<DaemonConfig, DaemonError> {
        let dir = dir.into();
        let path = dir.join(SPEC_FILE);
        let spec_error = |reason: String| DaemonError::Spec {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| spec_error(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| spec_error(e.to_string()))?;
        let spec = SandboxSpec::from_json(&value).map_err(|e| spec_error(e.to_string()))?;
        Ok(DaemonConfig {
            dir,
            spec,
            webapp_bin,
            moto_bin,
            mailer_bin,
            timing: None,
        })
    }
}

/// The body of `POST /fault/inject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectRequest {
    pub fault: Fault,
    #[serde(default)]
    pub check: CapacityCheck,
}

/// The body of `POST /logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    #[serde(default)]
    pub query: LogQuery,
    #[serde(default)]
    pub cursor: Option<LogCursor>,
}

/// The body of `POST /instance/describe` and `POST /instance/act`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRequest {
    pub id: String,
    pub action: InstanceAction,
}

/// The body of `POST /shift/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftStart {
    pub request: ShiftRequest,
    #[serde(default)]
    pub check: CapacityCheck,
}

/// The body of `POST /shift/cancel`: the AZ whose shift to cancel, or any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftCancel {
    #[serde(default)]
    pub az: Option<String>,
}

/// The running parts of the stack.
struct Stack {
    moto: ProcessGroup,
    db: DbCluster,
    lb: Arc<LoadBalancer>,
    side_channel: Option<SideChannel>,
    fleet: Fleet,
}

struct Daemon {
    stack_ref: StackRef,
    spec: SandboxSpec,
    stack: tokio::sync::RwLock<Option<Stack>>,
    progress: Mutex<Vec<ProvisionEvent>>,
    status: Mutex<StackStatus>,
    faults: Mutex<Vec<FaultRecord>>,
    samples: Mutex<Samples>,
    /// The gentle traffic's summaries, newest last.
    traffic: Mutex<Vec<Event>>,
    logs: LogStore,
    shutdown: watch::Sender<bool>,
    /// The clock the stack runs on and the durations in force.
    timing: Timing,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether process `pid` is alive (a zombie counts as dead).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pid in `dir`'s pid file, if the file exists and the process is alive.
pub fn live_daemon_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    process_alive(pid).then_some(pid)
}

/// Every live process whose environment carries `SANDBOX_MARKER=<marker>`.
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("{SANDBOX_MARKER}={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// The marker value of a state directory (its absolute path).
pub fn marker_of(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// Kills what a crashed daemon of `dir` left running; returns how many processes were found.
pub fn kill_stale(dir: &Path) -> usize {
    let pids = marked_processes(&marker_of(dir));
    for pid in &pids {
        signal_tree(*pid, Signal::SIGKILL);
    }
    pids.len() + db::kill_stale_servers(&database_dir(dir))
}

/// Where the database nodes of the stack in `dir` live: the directory recorded in
/// [`DB_DIR_FILE`], else `db/` in the state directory.
pub fn database_dir(dir: &Path) -> PathBuf {
    recorded_database_dir(dir).unwrap_or_else(|| dir.join("db"))
}

/// The recorded fallback, if there is one. Only a directory of the fallback's own naming in the
/// system's temporary directory counts, so a stray record can never point `down` elsewhere.
fn recorded_database_dir(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join(DB_DIR_FILE)).ok()?;
    let path = PathBuf::from(text.trim());
    let ours = path.parent() == Some(std::env::temp_dir().as_path())
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DB_FALLBACK_PREFIX));
    ours.then_some(path)
}

/// The database directory of the stack in `dir` when PostgreSQL's user cannot enter `dir`: one
/// per state directory, in the system's temporary directory.
pub fn fallback_database_dir(dir: &Path, stack: &str) -> PathBuf {
    // FNV-1a of the absolute state directory: stable across runs and builds.
    let hash = marker_of(dir)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    std::env::temp_dir().join(format!("{DB_FALLBACK_PREFIX}{stack}-{hash:016x}"))
}

/// Chooses the database directory for a bring-up and records the choice: `db/` in the state
/// directory when PostgreSQL's user (it refuses root) can enter the state directory, else
/// [`fallback_database_dir`]. The second value says why it fell back.
async fn choose_database_dir(dir: &Path, stack: &str) -> Result<(PathBuf, Option<String>), String> {
    let previous = recorded_database_dir(dir);
    let record = dir.join(DB_DIR_FILE);
    let (chosen, note) = if db::server_can_enter(dir).await.map_err(|e| e.to_string())? {
        let _ = std::fs::remove_file(&record);
        (dir.join("db"), None)
    } else {
        let fallback = fallback_database_dir(dir, stack);
        let temp = std::env::temp_dir();
        if !db::server_can_enter(&temp)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "PostgreSQL's user can enter neither {} nor {}",
                dir.display(),
                temp.display()
            ));
        }
        std::fs::write(&record, fallback.display().to_string())
            .map_err(|e| format!("writing {}: {e}", record.display()))?;
        let note = format!(
            "PostgreSQL's user cannot enter {}; the database lives in {}",
            dir.display(),
            fallback.display()
        );
        (fallback, Some(note))
    };
    if let Some(previous) = previous.filter(|p| *p != chosen) {
        let _ = std::fs::remove_dir_all(previous);
    }
    Ok((chosen, note))
}

/// Removes the state of the stack in `dir` (its processes must be stopped): the database
/// directory recorded outside it, then the state directory.
pub fn remove_state(dir: &Path) -> std::io::Result<()> {
    if let Some(database) = recorded_database_dir(dir) {
        match std::fs::remove_dir_all(&database) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Runs the daemon for `config` until it is told to stop. See the module documentation.
pub async fn serve(config: DaemonConfig) -> Result<(), DaemonError> {
    let dir = config.dir.clone();
    std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
    if let Some(pid) = live_daemon_pid(&dir)
        && pid != std::process::id()
    {
        return Err(DaemonError::AlreadyRunning { pid, dir });
    }
    let _ = std::fs::remove_file(dir.join(ADDRESS_FILE));
    kill_stale(&dir);
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())
        .map_err(io_error("writing the pid file"))?;

    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(io_error("binding the control API"))?;
    let address = listener
        .local_addr()
        .map_err(io_error("reading the control API address"))?;
    let stack_ref = StackRef {
        name: config.spec.name.clone(),
        region: None,
    };
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        stack_ref,
        spec: config.spec.clone(),
        stack: tokio::sync::RwLock::new(None),
        progress: Mutex::new(Vec::new()),
        status: Mutex::new(StackStatus::CreateInProgress),
        faults: Mutex::new(Vec::new()),
        samples: Mutex::new(Samples::new(SAMPLES_KEPT)),
        traffic: Mutex::new(Vec::new()),
        logs: LogStore::new(&dir.join("logs")),
        shutdown,
        timing: config
            .timing
            .clone()
            .unwrap_or_else(|| Timing::sandbox(&config.spec.app, &config.spec.sandbox)),
    });
    let server = tokio::spawn(serve_control(listener, daemon.clone()));
    let tmp = dir.join(format!("{ADDRESS_FILE}.tmp"));
    std::fs::write(&tmp, address.to_string()).map_err(io_error("writing the address file"))?;
    std::fs::rename(&tmp, dir.join(ADDRESS_FILE)).map_err(io_error("publishing the address"))?;

    let bring_up = {
        let daemon = daemon.clone();
        let config = config.clone();
        tokio::spawn(async move { bring_up(&daemon, &config).await })
    };
    let sampler = tokio::spawn(sample_metrics(daemon.clone()));
    let log_reader = tokio::spawn(read_logs(daemon.clone()));
    let traffic = (daemon.spec.sandbox.traffic == crate::spec::Traffic::Gentle)
        .then(|| tokio::spawn(send_traffic(daemon.clone())));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_error("handling SIGTERM"))?;
    tokio::select! {
        _ = shutdown_rx.wait_for(|stop| *stop) => {}
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    bring_up.abort();
    let _ = bring_up.await;
    sampler.abort();
    let _ = sampler.await;
    log_reader.abort();
    let _ = log_reader.await;
    if let Some(traffic) = traffic {
        traffic.abort();
        let _ = traffic.await;
    }
    *lock(&daemon.status) = StackStatus::DeleteInProgress;
    if let Some(stack) = daemon.stack.write().await.take() {
        stack.fleet.shutdown().await;
        if let Some(side_channel) = stack.side_channel {
            side_channel.shutdown().await;
        }
        drop(stack.lb);
        stack.db.shutdown().await;
        stack
            .moto
            .stop(Signal::SIGTERM, Duration::from_secs(5))
            .await;
    }
    kill_stale(&dir);
    let _ = std::fs::remove_file(dir.join(ADDRESS_FILE));
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    // Let the answer to `POST /shutdown` go out before the server stops.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    Ok(())
}

impl Daemon {
    fn record(&self, event: ProvisionEvent) {
        lock(&self.progress).push(event);
    }

    fn resource(&self, index: usize, status: ResourceStatus, reason: Option<String>) {
        let resources = self.spec.resources();
        let total = u32::try_from(resources.len()).unwrap_or(u32::MAX);
        let Some((logical_id, resource_type)) = resources.get(index) else {
            return;
        };
        let done = u32::try_from(index).unwrap_or(u32::MAX) + u32::from(status.is_settled());
        self.record(ProvisionEvent::Resource(ResourceEvent {
            at: OffsetDateTime::now_utc(),
            logical_id: logical_id.clone(),
            resource_type: resource_type.clone(),
            physical_id: None,
            status,
            reason,
            done,
            total,
        }));
    }

    fn finish(&self, status: StackStatus, outputs: Outputs) {
        *lock(&self.status) = status;
        self.record(ProvisionEvent::Finished {
            at: OffsetDateTime::now_utc(),
            stack_status: status,
            outputs,
            summary: None,
        });
    }
}

async fn bring_up(daemon: &Arc<Daemon>, config: &DaemonConfig) {
    let total = u32::try_from(daemon.spec.resources().len()).unwrap_or(u32::MAX);
    daemon.record(ProvisionEvent::Started {
        at: OffsetDateTime::now_utc(),
        stack: daemon.stack_ref.clone(),
        operation: StackOperation::Create,
        total,
    });
    match start_stack(daemon, config).await {
        Ok(outputs) => daemon.finish(StackStatus::CreateComplete, outputs),
        Err((index, reason)) => {
            daemon.resource(index, ResourceStatus::CreateFailed, Some(reason));
            daemon.finish(StackStatus::CreateFailed, Outputs::default());
        }
    }
}

/// Samples healthy hosts and the instances' CPU once a second (see [`super::metrics`]).
async fn sample_metrics(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (healthy, instances, requests) = {
            let stack = daemon.stack.read().await;
            let Some(stack) = stack.as_ref() else {
                continue;
            };
            let mut healthy: BTreeMap<String, usize> =
                daemon.spec.azs.iter().map(|az| (az.clone(), 0)).collect();
            let mut requests = BTreeMap::new();
            for target in stack.lb.target_health() {
                if target.state == super::lb::TargetState::Healthy {
                    *healthy.entry(target.target.az.clone()).or_default() += 1;
                }
                requests.insert(target.target.id.clone(), target.requests);
            }
            let instances: BTreeMap<String, Vec<(String, u32)>> = daemon
                .spec
                .azs
                .iter()
                .map(|az| (az.clone(), stack.fleet.instances_in(az)))
                .collect();
            (healthy, instances, requests)
        };
        let now = OffsetDateTime::now_utc();
        let at = now.replace_nanosecond(0).unwrap_or(now);
        lock(&daemon.samples).sample(
            at,
            Instant::now(),
            &healthy,
            &instances,
            &requests,
            cpu_ticks,
        );
    }
}

/// Sends the stack gentle traffic through its load balancer once it is up, and keeps the
/// minute summaries for the events log (see [`super::traffic`]).
async fn send_traffic(daemon: Arc<Daemon>) {
    let mut source = super::traffic::Gentle::new();
    let mut tick = tokio::time::interval(super::traffic::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let endpoint = {
            let stack = daemon.stack.read().await;
            stack.as_ref().map(|s| s.lb.address())
        };
        let Some(endpoint) = endpoint else {
            continue;
        };
        if let Some(summary) = source.tick(endpoint, OffsetDateTime::now_utc()).await {
            let mut kept = lock(&daemon.traffic);
            kept.push(summary);
            let over = kept.len().saturating_sub(super::traffic::SUMMARIES_KEPT);
            kept.drain(..over);
        }
    }
}

/// Reads the instances' new log lines every [`SCAN_INTERVAL`] (and rotates big logs).
async fn read_logs(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let reader = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || reader.logs.scan()).await;
    }
}

async fn wait_for_port(address: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn start_stack(
    daemon: &Arc<Daemon>,
    config: &DaemonConfig,
) -> Result<Outputs, (usize, String)> {
    let spec = &config.spec;
    let dir = &config.dir;
    let marker = marker_of(dir);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| (0, format!("creating {}: {e}", logs.display())))?;

    // Managed services: moto.
    daemon.resource(0, ResourceStatus::CreateInProgress, None);
    let moto_port = free_port(Ipv4Addr::LOCALHOST).map_err(|e| (0, e.to_string()))?;
    let mut cmd = command(&config.moto_bin, None, dir, &logs.join("moto.log"))
        .map_err(|e| (0, e.to_string()))?;
    cmd.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .env(SANDBOX_MARKER, &marker);
    let moto = ProcessGroup::spawn(&mut cmd)
        .map_err(|e| (0, format!("starting {}: {e}", config.moto_bin.display())))?;
    let moto_url = format!("http://127.0.0.1:{moto_port}");
    if !wait_for_port(
        SocketAddr::from((Ipv4Addr::LOCALHOST, moto_port)),
        BRING_UP_LIMIT,
    )
    .await
    {
        return Err((0, "moto did not listen in time".into()));
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(spec.region.clone()))
        .endpoint_url(&moto_url)
        .test_credentials()
        .load()
        .await;
    let managed = ManagedResources::create(&sdk, &spec.name, &spec.mailer.sender)
        .await
        .map_err(|e| (0, e))?;
    daemon.resource(0, ResourceStatus::CreateComplete, None);

    // The database.
    let (db_dir, note) = choose_database_dir(dir, &spec.name)
        .await
        .map_err(|e| (1, e))?;
    daemon.resource(1, ResourceStatus::CreateInProgress, note);
    daemon.resource(2, ResourceStatus::CreateInProgress, None);
    let timing = daemon.timing.clone();
    let mut db_config = DbConfig::new(db_dir, spec.azs.clone());
    // RDS's failover time on the sandbox's clock: the database waits that long before it
    // fails over from a primary that does not answer (at least two of its probe intervals).
    db_config.detection_time = timing
        .scale
        .to_wall(timing.rds_failover)
        .max(db_config.check_interval * 2);
    let db = DbCluster::start(db_config)
        .await
        .map_err(|e| (1, e.to_string()))?;
    create_database(&db, &spec.db.database_name)
        .await
        .map_err(|e| (1, e))?;
    daemon.resource(1, ResourceStatus::CreateComplete, None);
    daemon.resource(2, ResourceStatus::CreateComplete, None);

    // The load balancer.
    daemon.resource(3, ResourceStatus::CreateInProgress, None);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut lb_config = LbConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    lb_config.health_check = timing.model.health_check.clone();
    lb_config.deregistration_delay = timing.model.deregistration_delay;
    lb_config.clock = clock.clone();
    lb_config.request_timeout = Duration::from_secs(30);
    let lb = Arc::new(
        LoadBalancer::start(lb_config)
            .await
            .map_err(|e| (3, e.to_string()))?,
    );
    daemon.resource(3, ResourceStatus::CreateComplete, None);
    let endpoint = format!("http://{}", lb.address());

    // The mailer.
    daemon.resource(4, ResourceStatus::CreateInProgress, None);
    let aws_env = BTreeMap::from([
        (contract::env::AWS_ENDPOINT_URL.to_owned(), moto_url.clone()),
        (contract::env::AWS_REGION.to_owned(), spec.region.clone()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
    ]);
    let side_channel = match &config.mailer_bin {
        Some(mailer_bin) => {
            let mut env = aws_env.clone();
            env.extend([
                (
                    contract::env::TOKEN_TABLE.to_owned(),
                    managed.token_table.clone(),
                ),
                (
                    contract::env::MAIL_SENDER.to_owned(),
                    spec.mailer.sender.clone(),
                ),
                (contract::env::VERIFY_BASE_URL.to_owned(), endpoint.clone()),
                (
                    contract::env::TOKEN_TTL_SECONDS.to_owned(),
                    spec.mailer.token_ttl_seconds.to_string(),
                ),
            ]);
            let side_channel = SideChannel::start(
                SideChannelConfig {
                    name: spec.name.clone(),
                    region: spec.region.clone(),
                    mailer_bin: mailer_bin.clone(),
                    env,
                    dir: dir.clone(),
                    log: logs.join("mailer.log"),
                    marker: (SANDBOX_MARKER.to_owned(), marker.clone()),
                    resources: managed.clone(),
                    retry: Retry::default(),
                },
                &sdk,
            )
            .await
            .map_err(|e| (4, e))?;
            daemon.resource(4, ResourceStatus::CreateComplete, None);
            Some(side_channel)
        }
        None => {
            daemon.resource(
                4,
                ResourceStatus::CreateComplete,
                Some("no mailer binary: messages wait in the mailer's queue".into()),
            );
            None
        }
    };

    // The group.
    let mut env = aws_env;
    env.extend([
        (
            contract::env::DATABASE_URL.to_owned(),
            db.url(&spec.db.database_name),
        ),
        (
            contract::env::TOPIC_ARN.to_owned(),
            managed.topic_arn.clone(),
        ),
        (
            contract::env::TOKEN_TABLE.to_owned(),
            managed.token_table.clone(),
        ),
    ]);
    let fleet = Fleet::start(
        FleetConfig {
            azs: spec.azs.clone(),
            capacity: Capacity {
                desired: spec.app.desired,
                min: spec.app.min,
                max: spec.app.max,
            },
            first_template: LaunchTemplate {
                version: 1,
                app_version: spec.app.version.clone(),
                binary: config.webapp_bin.clone(),
                env,
            },
            timing,
            clock,
            log_dir: logs.clone(),
            marker,
            policies: spec
                .app
                .scaling
                .as_ref()
                .map(crate::spec::Scaling::policies)
                .unwrap_or_default(),
        },
        lb.clone(),
    );
    let db_endpoint = db.endpoint().to_string();
    const FIRST_INSTANCE: usize = 5;
    for index in FIRST_INSTANCE..FIRST_INSTANCE + usize::try_from(spec.app.desired).unwrap_or(0) {
        daemon.resource(index, ResourceStatus::CreateInProgress, None);
    }
    *daemon.stack.write().await = Some(Stack {
        moto,
        db,
        lb,
        side_channel,
        fleet,
    });
    let deadline = Instant::now() + BRING_UP_LIMIT;
    let mut reported = 0usize;
    let desired = usize::try_from(spec.app.desired).unwrap_or(0);
    while reported < desired {
        let healthy = {
            let stack = daemon.stack.read().await;
            stack.as_ref().map_or(0, |s| s.fleet.healthy_count())
        };
        while reported < healthy.min(desired) {
            daemon.resource(
                FIRST_INSTANCE + reported,
                ResourceStatus::CreateComplete,
                None,
            );
            reported += 1;
        }
        if reported >= desired {
            break;
        }
        if Instant::now() > deadline {
            return Err((
                FIRST_INSTANCE + reported,
                format!(
                    "only {reported} of {desired} instances passed health checks within {} s; \
                     see the instance logs in {}",
                    BRING_UP_LIMIT.as_secs(),
                    logs.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Outputs(BTreeMap::from([
        ("LoadBalancerUrl".to_owned(), endpoint),
        ("DatabaseEndpoint".to_owned(), db_endpoint),
        ("ManagedServicesEndpoint".to_owned(), moto_url),
        ("UserCreatedTopicArn".to_owned(), managed.topic_arn),
        ("TokenTableName".to_owned(), managed.token_table),
        ("MailerQueueUrl".to_owned(), managed.queue_url),
        (
            "MailerDeadLetterQueueUrl".to_owned(),
            managed.dead_letter_queue_url,
        ),
    ])))
}

async fn create_database(db: &DbCluster, name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url("postgres"))
        .await
        .map_err(|e| format!("connecting to the database endpoint: {e}"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("looking for database {name}: {e}"))?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("creating database {name}: {e}"))?;
    }
    conn.close().await.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The control API.

type Body = Full<Bytes>;

async fn serve_control(listener: TcpListener, daemon: Arc<Daemon>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let daemon = daemon.clone();
                async move { Ok::<_, Infallible>(handle(daemon, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The HTTP status a [`CloudError`] is sent with.
pub fn error_status(error: &CloudError) -> StatusCode {
    match error {
        CloudError::NotFound { .. } => StatusCode::NOT_FOUND,
        CloudError::Invalid { .. } => StatusCode::BAD_REQUEST,
        CloudError::Refused { .. } | CloudError::ReadOnly { .. } => StatusCode::FORBIDDEN,
        CloudError::Conflict { .. } => StatusCode::CONFLICT,
        CloudError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        CloudError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        CloudError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        CloudError::Backend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn reply<T: Serialize>(result: Result<T, CloudError>) -> Response<Body> {
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => json_response(error_status(&error), &error),
    }
}

async fn body_of<T: serde::de::DeserializeOwned>(
    request: Request<hyper::body::Incoming>,
) -> Result<T, CloudError> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(|e| CloudError::invalid("body", e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| CloudError::invalid("body", e.to_string()))
}

async fn handle(daemon: Arc<Daemon>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::GET, "/snapshot") => reply(Ok(snapshot(&daemon).await)),
        (Method::GET, "/progress") => reply(Ok(lock(&daemon.progress).clone())),
        (Method::POST, "/shutdown") => {
            let _ = daemon.shutdown.send(true);
            reply(Ok(()))
        }
        (Method::POST, "/deploy") => match body_of::<DeployRequest>(request).await {
            Ok(deploy) => reply(with_stack(&daemon, |s| s.fleet.deploy(&deploy)).await),
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/refresh/cancel") => {
            reply(with_stack(&daemon, |s| s.fleet.cancel_refresh()).await)
        }
        (Method::POST, "/refresh/rollback") => {
            reply(with_stack(&daemon, |s| s.fleet.rollback_refresh()).await)
        }
        (Method::GET, p) if p.starts_with("/refresh/") => {
            let id = RefreshId(p.trim_start_matches("/refresh/").to_owned());
            reply(with_stack(&daemon, |s| s.fleet.refresh(&id)).await)
        }
        (Method::POST, "/fault/describe") => match body_of::<Fault>(request).await {
            Ok(fault) => reply(describe_fault(&daemon, &fault).await),
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/fault/inject") => match body_of::<InjectRequest>(request).await {
            Ok(req) => reply(inject(&daemon, &req.fault, req.check).await),
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/logs") => match body_of::<LogsRequest>(request).await {
            Ok(req) => {
                let reader = daemon.clone();
                let page = tokio::task::spawn_blocking(move || {
                    reader.logs.page(&req.query, req.cursor.as_ref())
                })
                .await
                .unwrap_or_else(|e| Err(CloudError::backend("sandbox", "logs", e.to_string())));
                reply(page)
            }
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/instance/describe") => match body_of::<InstanceRequest>(request).await {
            Ok(req) => reply(
                with_stack(&daemon, |s| {
                    s.fleet.describe_instance_action(&req.id, req.action)
                })
                .await,
            ),
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/instance/act") => match body_of::<InstanceRequest>(request).await {
            Ok(req) => {
                reply(with_stack(&daemon, |s| s.fleet.act_on_instance(&req.id, req.action)).await)
            }
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/shift/start") => match body_of::<ShiftStart>(request).await {
            Ok(req) => {
                let name = &daemon.spec.name;
                let resources = vec![
                    format!("load balancer {name}-lb"),
                    format!("auto scaling group {name}-asg"),
                ];
                reply(
                    with_stack(&daemon, |s| {
                        s.fleet.start_zonal_shift(&req.request, resources)
                    })
                    .await,
                )
            }
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/shift/cancel") => match body_of::<ShiftCancel>(request).await {
            Ok(req) => {
                reply(with_stack(&daemon, |s| s.fleet.cancel_zonal_shift(req.az.as_deref())).await)
            }
            Err(e) => reply::<()>(Err(e)),
        },
        (Method::POST, "/fault/restore") => match body_of::<FaultRecord>(request).await {
            Ok(record) => reply(restore(&daemon, &record).await),
            Err(e) => reply::<()>(Err(e)),
        },
        (_, other) => reply::<()>(Err(CloudError::not_found(format!(
            "control API route {other}"
        )))),
    }
}

async fn with_stack<T>(
    daemon: &Daemon,
    f: impl FnOnce(&Stack) -> Result<T, CloudError>,
) -> Result<T, CloudError> {
    let stack = daemon.stack.read().await;
    let stack = stack.as_ref().ok_or_else(not_ready)?;
    f(stack)
}

fn not_ready() -> CloudError {
    CloudError::conflict("the sandbox stack is still starting (or stopping); try again shortly")
}

fn db_status_name(cluster: db::ClusterStatus, node: db::NodeStatus) -> DbStatus {
    match (cluster, node) {
        (db::ClusterStatus::FailingOver, _) | (_, db::NodeStatus::FailingOver) => {
            DbStatus::Rebooting
        }
        (db::ClusterStatus::Failed | db::ClusterStatus::Inaccessible, _) => DbStatus::Failed,
        (_, db::NodeStatus::Creating) => DbStatus::Creating,
        (_, db::NodeStatus::Unreachable) => DbStatus::Failed,
        (_, db::NodeStatus::Available) => DbStatus::Available,
    }
}

async fn snapshot(daemon: &Daemon) -> Snapshot {
    let mut snapshot = Snapshot::empty(daemon.stack_ref.clone(), OffsetDateTime::now_utc());
    snapshot.stack_status = Some(*lock(&daemon.status));
    snapshot.clock = Some(daemon.timing.clock());
    let stack = daemon.stack.read().await;
    let Some(stack) = stack.as_ref() else {
        snapshot.azs = daemon
            .spec
            .azs
            .iter()
            .map(crate::port::AzView::new)
            .collect();
        return snapshot;
    };
    if let Some(clock) = snapshot.clock.as_mut() {
        clock.program_start_seconds = stack.fleet.last_start().map(|d| d.as_secs_f64());
    }
    snapshot.endpoint = Some(format!("http://{}", stack.lb.address()));
    snapshot.azs = stack.fleet.az_views();
    let db = stack.db.status();
    let synchronous = db.is_synchronous();
    for node in &db.nodes {
        if let Some(view) = snapshot.azs.iter_mut().find(|v| v.az == node.az) {
            view.database = Some(Database {
                id: format!("{}-db", daemon.spec.name),
                role: match node.role {
                    db::DbRole::Primary => DbRole::Primary,
                    db::DbRole::Standby => DbRole::Standby,
                },
                status: db_status_name(db.status, node.status),
                synchronous: Some(match node.role {
                    db::DbRole::Primary => synchronous,
                    db::DbRole::Standby => node.sync_state == Some(db::SyncState::Sync),
                }),
            });
        }
    }
    snapshot.capacity = Some(stack.fleet.capacity());
    snapshot.enabled_azs = stack.fleet.enabled_azs();
    snapshot.suspended_processes = stack.fleet.suspended();
    snapshot.zonal_shifts = stack.fleet.zonal_shifts();
    snapshot.refreshes = stack.fleet.refreshes();
    snapshot.events = snapshot_events(
        stack.fleet.events(),
        stack
            .side_channel
            .as_ref()
            .map(|side_channel| side_channel.events())
            .unwrap_or_default()
            .into_iter()
            // The gentle traffic's signups are counted in its summaries instead.
            .filter(|e| !super::traffic::is_own_event(e))
            .collect(),
        db.events
            .iter()
            .map(|e| Event {
                at: e.at,
                source: EventSource::Database,
                az: None,
                message: e.message.clone(),
            })
            // The gentle traffic's minute summaries (not one event per request).
            .chain(lock(&daemon.traffic).iter().cloned())
            .collect(),
    );
    snapshot.metrics = metrics(&stack.lb, &lock(&daemon.samples));
    snapshot.scaling = Some(stack.fleet.scaling());
    snapshot
}

fn metrics(lb: &LoadBalancer, samples: &Samples) -> Metrics {
    let lb_metrics = lb.metrics();
    let mut series = Vec::new();
    let at = |second: i64| {
        OffsetDateTime::from_unix_timestamp(second).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    for (az, points) in &lb_metrics.per_az {
        let mut push =
            |metric: MetricKind, value: &dyn Fn(&super::lb::MetricPoint) -> Option<f64>| {
                series.push(MetricSeries {
                    metric,
                    az: Some(az.clone()),
                    points: points
                        .iter()
                        .filter_map(|p| {
                            value(p).map(|value| MetricPoint {
                                at: at(p.second),
                                value,
                            })
                        })
                        .collect(),
                });
            };
        push(MetricKind::Requests, &|p| Some(p.requests as f64));
        push(MetricKind::Target5xx, &|p| Some(p.target_5xx as f64));
        push(MetricKind::Lb5xx, &|p| Some(p.elb_5xx as f64));
        push(MetricKind::LatencyP50, &|p| p.p50_ms);
        push(MetricKind::LatencyP99, &|p| p.p99_ms);
    }
    series.extend(samples.series());
    let now = OffsetDateTime::now_utc();
    for (az, healthy) in &lb_metrics.healthy_hosts {
        // Until the first sample, the current count.
        if series
            .iter()
            .any(|s| s.metric == MetricKind::HealthyHosts && s.az.as_ref() == Some(az))
        {
            continue;
        }
        series.push(MetricSeries {
            metric: MetricKind::HealthyHosts,
            az: Some(az.clone()),
            points: vec![MetricPoint {
                at: now.replace_nanosecond(0).unwrap_or(now),
                value: *healthy as f64,
            }],
        });
    }
    Metrics {
        period_seconds: 1,
        series,
        instances: samples.instances(),
    }
}

fn check_az(daemon: &Daemon, az: &str) -> Result<(), CloudError> {
    check_fault_az(&daemon.spec.azs, az)
}

async fn describe_fault(daemon: &Daemon, fault: &Fault) -> Result<FaultPlan, CloudError> {
    if let Some(az) = fault.az() {
        check_az(daemon, az)?;
    }
    let stack = daemon.stack.read().await;
    let stack = stack.as_ref().ok_or_else(not_ready)?;
    let db = stack.db.status();
    let primary_az = db.primary().map(|n| n.az.clone());
    let instances = |az: &str, call: &str, reversible: bool| {
        stack
            .fleet
            .instances_in(az)
            .into_iter()
            .map(|(id, pid)| {
                PlannedAction::new(format!("instance {id} (pid {pid})"), call, reversible)
            })
            .collect::<Vec<_>>()
    };
    plan_fault(&daemon.stack_ref, fault, primary_az.as_deref(), |step| {
        Ok(match step {
            FaultStep::Terminate(az) => StepPlan::of(instances(az, "SIGKILL", false)),
            FaultStep::Blackhole(az) => {
                let mut actions = instances(az, "SIGSTOP", true);
                if let Some(node) = db.nodes.iter().find(|n| n.az == az) {
                    actions.push(PlannedAction::new(
                        format!(
                            "database node {} ({:?}, pid {})",
                            node.id,
                            node.role,
                            node.pid.map_or("-".to_owned(), |p| p.to_string())
                        ),
                        "SIGSTOP",
                        true,
                    ));
                }
                StepPlan {
                    actions,
                    notes: vec!["instances launched into the AZ meanwhile start stopped".into()],
                }
            }
            FaultStep::BlockLaunches(az) => StepPlan::of(vec![
                PlannedAction::new(format!("az {az}"), "remove from launch AZs", true),
                PlannedAction::new("process AZRebalance", "suspend", true),
            ]),
            FaultStep::Slow(az, latency_ms) => StepPlan {
                actions: vec![PlannedAction::new(
                    format!("load balancer path to the targets in {az}"),
                    format!("delay requests by {latency_ms} ms"),
                    true,
                )],
                notes: vec![
                    "health checks are not delayed: the targets stay healthy".into(),
                    fault::NOTE_SLOW_AWS.into(),
                ],
            },
            FaultStep::Failover => StepPlan::of(vec![PlannedAction::new(
                format!("database {}-db", daemon.spec.name),
                format!(
                    "fail over from {} to {}",
                    primary_az.as_deref().unwrap_or("(no primary)"),
                    db.standby().map_or("(no standby)", |n| n.az.as_str())
                ),
                false,
            )]),
        })
    })
}

fn db_error(error: db::DbError) -> CloudError {
    match error {
        db::DbError::NoSynchronousStandby => CloudError::refused(error.to_string()),
        other => CloudError::backend("sandbox-db", "DbError", other.to_string()),
    }
}

async fn inject(
    daemon: &Daemon,
    fault: &Fault,
    check: CapacityCheck,
) -> Result<FaultRecord, CloudError> {
    if let Some(az) = fault.az() {
        check_az(daemon, az)?;
    }
    let stack = daemon.stack.read().await;
    let stack = stack.as_ref().ok_or_else(not_ready)?;
    let mut changes = Vec::new();
    let silence = |az: &str, changes: &mut Vec<FaultChange>| {
        let stopped = stack.fleet.silence_az(az);
        changes.push(FaultChange::Sandbox(SandboxChange::AzSilenced {
            az: az.to_owned(),
            instance_ids: stopped.iter().map(|(id, _)| id.clone()).collect(),
            pids: stopped.iter().map(|(_, pid)| *pid).collect(),
        }));
        let status = stack.db.status();
        if let Some(node) = status.nodes.iter().find(|n| n.az == az)
            && stack.db.signal_node(&node.id, NodeSignal::Stop).is_ok()
        {
            changes.push(FaultChange::Sandbox(SandboxChange::DbNodeStopped {
                az: az.to_owned(),
                node: node.id.clone(),
                pid: node.pid,
            }));
        }
    };
    let block = |az: &str, changes: &mut Vec<FaultChange>| {
        changes.extend(stack.fleet.block_launches(az));
    };
    let az = match fault {
        Fault::TerminateAz { az } => {
            let killed = stack.fleet.kill_az(az);
            changes.push(FaultChange::Sandbox(SandboxChange::InstancesKilled {
                az: az.clone(),
                instance_ids: killed.iter().map(|(id, _)| id.clone()).collect(),
                pids: killed.iter().map(|(_, pid)| *pid).collect(),
            }));
            Some(az.clone())
        }
        Fault::BlackholeAz { az } => {
            silence(az, &mut changes);
            Some(az.clone())
        }
        Fault::BlockLaunchesInAz { az } => {
            block(az, &mut changes);
            Some(az.clone())
        }
        Fault::SlowAz { az, latency_ms } => {
            stack
                .lb
                .slow_az(az, Some(Duration::from_millis(u64::from(*latency_ms))));
            changes.push(FaultChange::Sandbox(SandboxChange::AzSlowed {
                az: az.clone(),
                latency_ms: *latency_ms,
            }));
            Some(az.clone())
        }
        Fault::FailoverDb => {
            let record = stack.db.failover().await.map_err(db_error)?;
            changes.push(FaultChange::Sandbox(SandboxChange::DbFailedOver {
                from_az: record.from_az.clone(),
                to_az: record.to_az,
            }));
            Some(record.from_az)
        }
        Fault::AzOutage { az } => {
            let primary_here = stack.db.status().primary().is_some_and(|n| &n.az == az);
            if primary_here {
                let record = stack.db.failover().await.map_err(db_error)?;
                changes.push(FaultChange::Sandbox(SandboxChange::DbFailedOver {
                    from_az: record.from_az,
                    to_az: record.to_az,
                }));
            }
            silence(az, &mut changes);
            block(az, &mut changes);
            Some(az.clone())
        }
    };
    let record = FaultRecord {
        id: format!("fault-{}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
        stack: daemon.stack_ref.clone(),
        fault: fault.clone(),
        az: az.clone(),
        forced: check == CapacityCheck::Force,
        injected_at: OffsetDateTime::now_utc(),
        changes,
    };
    stack.fleet.record(
        EventSource::Fault,
        az.as_deref(),
        format!("{fault} injected ({} changes)", record.changes.len()),
    );
    lock(&daemon.faults).push(record.clone());
    Ok(record)
}

async fn restore(daemon: &Daemon, record: &FaultRecord) -> Result<(), CloudError> {
    record.check_made_by(BackendKind::Sandbox)?;
    let stack = daemon.stack.read().await;
    let stack = stack.as_ref().ok_or_else(not_ready)?;
    for change in record.changes.iter().rev() {
        let FaultChange::Sandbox(change) = change else {
            continue;
        };
        match change {
            SandboxChange::AzSilenced { az, .. } => stack.fleet.unsilence_az(az),
            SandboxChange::DbNodeStopped { node, .. } => {
                // A node fenced meanwhile is gone; nothing to wake.
                let _ = stack.db.signal_node(node, NodeSignal::Continue);
            }
            SandboxChange::LaunchesBlocked { az } => stack.fleet.unblock_launches(az),
            SandboxChange::AzSlowed { az, .. } => stack.lb.slow_az(az, None),
            SandboxChange::ProcessesSuspended { processes } => {
                for process in processes {
                    stack.fleet.resume(*process);
                }
            }
            SandboxChange::InstancesKilled { .. } | SandboxChange::DbFailedOver { .. } => {}
        }
    }
    lock(&daemon.faults).retain(|r| r.id != record.id);
    stack.fleet.record(
        EventSource::Fault,
        record.az.as_deref(),
        format!("{} restored", record.fault),
    );
    Ok(())
}

/// A snapshot's events, newest first and at most [`SNAPSHOT_EVENTS`]: the fleet's and the
/// database's, and only the side channel's newest [`SNAPSHOT_MAILER_EVENTS`] (one line per
/// e-mail, so a signup stream would otherwise push the others out).
fn snapshot_events(fleet: Vec<Event>, mut mailer: Vec<Event>, db: Vec<Event>) -> Vec<Event> {
    mailer.sort_by_key(|e| std::cmp::Reverse(e.at));
    mailer.truncate(SNAPSHOT_MAILER_EVENTS);
    let mut events = fleet;
    events.extend(mailer);
    events.extend(db);
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events.truncate(SNAPSHOT_EVENTS);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(second: i64, source: EventSource, message: &str) -> Event {
        Event {
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(second),
            source,
            az: None,
            message: message.into(),
        }
    }

    #[test]
    fn a_signup_stream_does_not_push_the_fleet_and_database_out_of_a_snapshot() {
        let fleet = vec![event(5, EventSource::Scaling, "Launching i-1")];
        let db = vec![event(4, EventSource::Database, "failover to db2")];
        let mailer: Vec<Event> = (0..500)
            .map(|i| event(1_000 - i, EventSource::Stack, "verification e-mail sent"))
            .collect();
        let events = snapshot_events(fleet, mailer, db);
        assert_eq!(events.len(), SNAPSHOT_MAILER_EVENTS + 2);
        assert_eq!(
            events[0].at.unix_timestamp(),
            1_000,
            "the newest mail first"
        );
        assert!(events.iter().any(|e| e.message == "Launching i-1"));
        assert!(events.iter().any(|e| e.message == "failover to db2"));
        assert!(
            events.windows(2).all(|w| w[0].at >= w[1].at),
            "newest first"
        );
    }

    #[test]
    fn down_removes_a_recorded_fallback_database_dir_and_nothing_else() {
        let state = tempfile::tempdir().expect("a state directory");
        let dir = state.path().join("stack");
        std::fs::create_dir_all(&dir).expect("create the state directory");
        assert_eq!(database_dir(&dir), dir.join("db"));

        // A record naming anything but a fallback of ours is ignored.
        let elsewhere = tempfile::tempdir().expect("another directory");
        std::fs::write(
            dir.join(DB_DIR_FILE),
            elsewhere.path().display().to_string(),
        )
        .expect("write the record");
        assert_eq!(database_dir(&dir), dir.join("db"));
        remove_state(&dir).expect("remove the state");
        assert!(!dir.exists());
        assert!(elsewhere.path().exists(), "a stray record removes nothing");

        // A fallback of ours is found, and removed with the state directory.
        std::fs::create_dir_all(&dir).expect("create the state directory");
        let fallback = fallback_database_dir(&dir, "t");
        assert_eq!(fallback, fallback_database_dir(&dir, "t"), "stable");
        assert_eq!(fallback.parent(), Some(std::env::temp_dir().as_path()));
        std::fs::create_dir_all(fallback.join("db1")).expect("create the fallback");
        std::fs::write(dir.join(DB_DIR_FILE), fallback.display().to_string())
            .expect("write the record");
        assert_eq!(database_dir(&dir), fallback);
        remove_state(&dir).expect("remove the state");
        assert!(!dir.exists());
        assert!(!fallback.exists());
    }
}
