//! The sandbox's database: a real PostgreSQL primary in one Availability Zone, a synchronous
//! streaming standby in another, and one stable endpoint that always leads to the primary —
//! watched the way RDS Multi-AZ watches its instances.
//!
//! [`DbCluster::start`] initialises the primary (`initdb`), builds the standby from it
//! (`pg_basebackup -R`), turns synchronous replication on (`synchronous_standby_names`) and
//! opens the endpoint, a byte-level TCP forwarder on `127.0.0.1`. Node `n` in AZ `k` listens on
//! `127.0.k+1.250` (see [`super::process::az_address`]) on a free port. A monitor task probes
//! both nodes with a fresh connection every check interval:
//! - a standby that has not answered for the detection time is declared lost: the primary drops
//!   to asynchronous replication first (so commits never block), the standby is killed, and a
//!   replacement is built with `pg_basebackup`; synchronous mode returns once it streams;
//! - a primary that has not answered for the detection time fails over automatically, if the
//!   standby is available and was synchronous: the endpoint stops routing (existing client
//!   connections are cut), the old primary is fenced (its postmaster and every child are
//!   SIGKILLed and its data directory deleted, so it never accepts a write again, even after a
//!   SIGCONT), the
//!   standby is promoted, the endpoint moves to it, and a new standby is built.
//!
//! [`DbCluster::failover`] is RDS's `RebootDBInstance` with `ForceFailover`. Because commits
//! wait for the standby's flush while replication is synchronous, and only a synchronous
//! standby is ever promoted, a commit acknowledged to a client survives every failover.
//! PostgreSQL's server programs refuse to run as root; as root they run as the `postgres` user
//! and their directories are given to it. Every process runs in its own process group and is
//! killed when the cluster is shut down or dropped.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, Row};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::process::{ProcessGroup, RunAs, az_address, command, free_port};

/// The last octet of a database node's address in its AZ's loopback network.
pub const DB_HOST_OCTET: u8 = 250;
/// How many events [`DbStatus::events`] keeps.
const EVENTS_KEPT: usize = 64;
/// Upper bound for one-off programs (`initdb`, `pg_basebackup`) and for a node to come up.
const SETUP_LIMIT: Duration = Duration::from_secs(120);
/// How long a stopping or fenced node gets to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(10);
/// Pause before retrying a failed standby build.
const REBUILD_BACKOFF: Duration = Duration::from_secs(2);
/// Makes a changed setting take effect.
const RELOAD: &str = "SELECT pg_reload_conf()";

/// Errors of the sandbox database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A configuration field is invalid.
    #[error("invalid database configuration: {field}: {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// PostgreSQL's server programs are not installed.
    #[error(
        "PostgreSQL server programs not found ({searched}); install them with `scripts/setup` \
         (Debian package postgresql) or set the binary directory in the configuration"
    )]
    MissingBinaries {
        /// Where they were looked for.
        searched: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL program exited unsuccessfully.
    #[error("{what} failed ({status}); log {log}:\n{tail}")]
    Program {
        /// What was being done.
        what: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// A statement or connection failed.
    #[error("{what}: {source}")]
    Sql {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A failover was asked for without a synchronous standby to promote.
    #[error("no synchronous standby is available to fail over to")]
    NoSynchronousStandby,
    /// The node named does not exist (any more).
    #[error("no database node named {0}")]
    UnknownNode(String),
    /// The cluster's monitor has stopped.
    #[error("the database cluster is shut down")]
    ShutDown,
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbError {
    let what = what.into();
    move |source| DbError::Io { what, source }
}

fn sql_error(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
    let what = what.into();
    move |source| DbError::Sql { what, source }
}

/// How to build and watch a cluster.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Directory that holds one subdirectory per node; created if missing. When running as
    /// root its ancestors must be traversable by the `postgres` user.
    pub state_dir: PathBuf,
    /// The Availability Zones, in order: AZ number `k` is `azs[k]` and owns `127.0.k+1.0/24`.
    pub azs: Vec<String>,
    /// Where the first primary runs.
    pub primary_az: String,
    /// Where the first standby runs.
    pub standby_az: String,
    /// The endpoint's listen address (port 0 picks a free one).
    pub endpoint: SocketAddr,
    /// Time between two probes of each node.
    pub check_interval: Duration,
    /// How long one probe may take before it counts as no answer.
    pub probe_timeout: Duration,
    /// How long a node may stay silent before it is declared lost (failover for a primary,
    /// replacement for a standby).
    pub detection_time: Duration,
    /// How long a new client connection waits for a primary while the endpoint has none
    /// (during a failover) before it is closed.
    pub endpoint_hold: Duration,
    /// Directory with `initdb`, `postgres`, `pg_basebackup`; `None` picks the newest
    /// `/usr/lib/postgresql/*/bin`, or the directory of `postgres` on `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
}

impl DbConfig {
    /// A configuration with the primary in `azs[0]`, the standby in `azs[1]` and defaults for
    /// the rest (probe every 500 ms, declare a node lost after 5 s of silence).
    pub fn new(state_dir: impl Into<PathBuf>, azs: Vec<String>) -> DbConfig {
        let primary_az = azs.first().cloned().unwrap_or_default();
        let standby_az = azs.get(1).cloned().unwrap_or_default();
        DbConfig {
            state_dir: state_dir.into(),
            azs,
            primary_az,
            standby_az,
            endpoint: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            check_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
            detection_time: Duration::from_secs(5),
            endpoint_hold: Duration::from_secs(30),
            pg_bin_dir: None,
        }
    }

    fn validate(&self) -> Result<(), DbError> {
        let bad = |field, reason: &str| {
            Err(DbError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.azs.len() < 2 {
            return bad(
                "azs",
                "a Multi-AZ database needs at least two Availability Zones",
            );
        }
        if self.azs.len() > 254 {
            return bad("azs", "at most 254 Availability Zones fit on loopback");
        }
        if !self.azs.contains(&self.primary_az) {
            return bad("primary_az", "not one of azs");
        }
        if !self.azs.contains(&self.standby_az) {
            return bad("standby_az", "not one of azs");
        }
        if self.primary_az == self.standby_az {
            return bad("standby_az", "must differ from primary_az");
        }
        if self.check_interval.is_zero() {
            return bad("check_interval", "must be positive");
        }
        if self.probe_timeout.is_zero() {
            return bad("probe_timeout", "must be positive");
        }
        if self.detection_time < self.check_interval {
            return bad("detection_time", "must be at least check_interval");
        }
        Ok(())
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbRole {
    /// Accepts writes; the endpoint leads here.
    Primary,
    /// Replays the primary's WAL.
    Standby,
}

/// A node's status, in RDS's words where RDS has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    /// Being built (`initdb` or `pg_basebackup`, then starting up).
    Creating,
    /// Answering probes.
    Available,
    /// Missed probes, not yet for the detection time.
    Unreachable,
    /// The standby being promoted during a failover.
    FailingOver,
}

/// The cluster's status, in RDS's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterStatus {
    /// The first primary and standby are being built.
    Creating,
    /// The primary serves; any standby problem is being repaired in the background.
    Available,
    /// A failover is in progress; the endpoint routes nowhere.
    FailingOver,
    /// The primary is silent and there is no synchronous standby to promote.
    Inaccessible,
    /// A failover could not complete; see the events.
    Failed,
}

/// Whether commits wait for the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicationMode {
    /// Commits wait until the standby has flushed them.
    Synchronous,
    /// Commits do not wait (no standby, or one that is still catching up).
    Asynchronous,
}

/// A standby's replication state as the primary reports it (`pg_stat_replication.sync_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// A synchronous standby.
    Sync,
    /// An asynchronous standby.
    Async,
    /// Would become synchronous if the current one failed.
    Potential,
    /// A quorum candidate.
    Quorum,
    /// Not connected to the primary.
    Disconnected,
}

impl SyncState {
    fn parse(s: &str) -> SyncState {
        match s {
            "sync" => SyncState::Sync,
            "potential" => SyncState::Potential,
            "quorum" => SyncState::Quorum,
            _ => SyncState::Async,
        }
    }
}

/// One node as seen by the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbNodeStatus {
    /// The node's name (also its replication `application_name`).
    pub id: String,
    /// Its Availability Zone.
    pub az: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its postmaster's process id, which is also its process group id.
    pub pid: Option<u32>,
    /// Primary or standby.
    pub role: DbRole,
    /// Its status.
    pub status: NodeStatus,
    /// For a standby: its replication state as last reported by the primary.
    pub sync_state: Option<SyncState>,
}

/// Why a failover happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverCause {
    /// The primary was silent for the detection time.
    PrimaryUnreachable,
    /// Asked for (`RebootDBInstance` with `ForceFailover`).
    Manual,
}

/// One completed failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// Why it happened.
    pub cause: FailoverCause,
    /// The node that was primary (now fenced).
    pub from_node: String,
    /// Its AZ.
    pub from_az: String,
    /// The promoted node.
    pub to_node: String,
    /// Its AZ.
    pub to_az: String,
    /// When the endpoint stopped routing.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the endpoint led to the new primary.
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
}

/// Something the cluster did, worded like an RDS event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub message: String,
}

/// The cluster at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStatus {
    /// The stable endpoint clients connect to.
    pub endpoint: SocketAddr,
    /// The cluster's status.
    pub status: ClusterStatus,
    /// Whether commits wait for the standby.
    pub replication: ReplicationMode,
    /// The current nodes (primary first).
    pub nodes: Vec<DbNodeStatus>,
    /// Completed failovers, oldest first.
    pub failovers: Vec<FailoverRecord>,
    /// Recent events, oldest first.
    pub events: Vec<DbEvent>,
}

impl DbStatus {
    /// The current primary.
    pub fn primary(&self) -> Option<&DbNodeStatus> {
        self.nodes.iter().find(|n| n.role == DbRole::Primary)
    }

    /// The current standby (possibly still being built).
    pub fn standby(&self) -> Option<&DbNodeStatus> {
        self.nodes.iter().find(|n| n.role == DbRole::Standby)
    }

    /// True when the primary serves and a standby is synchronous.
    pub fn is_synchronous(&self) -> bool {
        self.status == ClusterStatus::Available
            && self.replication == ReplicationMode::Synchronous
            && self
                .standby()
                .is_some_and(|s| s.status == NodeStatus::Available)
    }
}

/// A signal the sandbox's fault injection sends to a node's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeSignal {
    /// SIGSTOP: alive but silent.
    Stop,
    /// SIGCONT: resume.
    Continue,
    /// SIGKILL: dead.
    Kill,
}

/// Where the endpoint forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    primary: Option<SocketAddr>,
    generation: u64,
    closed: bool,
}

struct Node {
    id: String,
    az: String,
    address: SocketAddr,
    dir: PathBuf,
    role: DbRole,
    status: NodeStatus,
    sync_state: Option<SyncState>,
    process: Option<ProcessGroup>,
    last_answer: Instant,
}

impl Node {
    fn view(&self) -> DbNodeStatus {
        DbNodeStatus {
            id: self.id.clone(),
            az: self.az.clone(),
            address: self.address,
            pid: self.process.as_ref().map(ProcessGroup::pid),
            role: self.role,
            status: self.status,
            sync_state: self.sync_state,
        }
    }
}

struct State {
    nodes: Vec<Node>,
    status: ClusterStatus,
    replication: ReplicationMode,
    failovers: Vec<FailoverRecord>,
    events: VecDeque<DbEvent>,
    next_node: u32,
    /// When a node was last lost in each AZ (a replacement prefers other AZs).
    az_losses: Vec<(String, Instant)>,
}

impl State {
    fn event(&mut self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(target: "sandbox::db", "{message}");
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(DbEvent {
            at: OffsetDateTime::now_utc(),
            message,
        });
    }

    fn node(&mut self, id: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    fn primary(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role == DbRole::Primary)
    }

    fn standby(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role == DbRole::Standby)
    }

    fn remove(&mut self, id: &str) -> Option<Node> {
        let i = self.nodes.iter().position(|n| n.id == id)?;
        Some(self.nodes.remove(i))
    }
}

struct Shared {
    state: Mutex<State>,
    route: watch::Sender<Route>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_primary(&self, primary: Option<SocketAddr>) {
        self.route.send_modify(|r| {
            r.primary = primary;
            r.generation += 1;
        });
    }
}

/// The programs and the user a node is run with.
#[derive(Debug, Clone)]
struct Toolkit {
    bin: PathBuf,
    run_as: Option<RunAs>,
}

impl Toolkit {
    fn find(config: &DbConfig) -> Result<Toolkit, DbError> {
        let bin = match &config.pg_bin_dir {
            Some(dir) => dir.clone(),
            None => newest_debian_bin_dir()
                .or_else(postgres_on_path)
                .ok_or_else(|| DbError::MissingBinaries {
                    searched: "/usr/lib/postgresql/*/bin and PATH".to_owned(),
                })?,
        };
        for program in ["initdb", "postgres", "pg_basebackup"] {
            if !bin.join(program).is_file() {
                return Err(DbError::MissingBinaries {
                    searched: format!("{program} in {}", bin.display()),
                });
            }
        }
        let run_as =
            RunAs::unprivileged("postgres").map_err(io_error("finding the postgres user"))?;
        Ok(Toolkit { bin, run_as })
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs a one-off program to completion, failing with its log's tail.
    async fn run(
        &self,
        what: &str,
        program: &str,
        args: &[&str],
        dir: &Path,
    ) -> Result<(), DbError> {
        let log = dir.join(format!("{program}.log"));
        let mut cmd = command(&self.program(program), self.run_as, dir, &log)
            .map_err(io_error(format!("preparing {what}")))?;
        cmd.args(args);
        let mut child =
            ProcessGroup::spawn(&mut cmd).map_err(io_error(format!("starting {what}")))?;
        let status = tokio::time::timeout(SETUP_LIMIT, child.wait())
            .await
            .map_err(|_| DbError::Timeout(what.to_owned()))?
            .map_err(io_error(format!("waiting for {what}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(program_failed(what, &status.to_string(), &log))
        }
    }
}

fn program_failed(what: &str, status: &str, log: &Path) -> DbError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    DbError::Program {
        what: what.to_owned(),
        status: status.to_owned(),
        log: log.display().to_string(),
        tail,
    }
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

fn postgres_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("postgres").is_file())
}

fn connect_options(address: SocketAddr) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host(&address.ip().to_string())
        .port(address.port())
        .username("postgres")
        .database("postgres")
        .ssl_mode(PgSslMode::Disable)
        .application_name("triad-sandbox-monitor")
}

async fn connect(address: SocketAddr, limit: Duration) -> Result<PgConnection, DbError> {
    match tokio::time::timeout(limit, connect_options(address).connect()).await {
        Ok(result) => result.map_err(sql_error(format!("connecting to {address}"))),
        Err(_) => Err(DbError::Timeout(format!("connecting to {address}"))),
    }
}

/// Runs `statements` on the node at `address`, each within `limit`.
fn execute(
    address: SocketAddr,
    limit: Duration,
    statements: Vec<String>,
) -> BoxFuture<'static, Result<(), DbError>> {
    Box::pin(execute_all(address, limit, statements))
}

async fn execute_all(
    address: SocketAddr,
    limit: Duration,
    statements: Vec<String>,
) -> Result<(), DbError> {
    let mut conn = connect(address, limit).await?;
    for statement in statements {
        match tokio::time::timeout(limit, conn.execute(statement.as_str())).await {
            Ok(result) => result.map_err(sql_error(format!("{statement} on {address}")))?,
            Err(_) => return Err(DbError::Timeout(format!("{statement} on {address}"))),
        };
    }
    let _ = tokio::time::timeout(limit, conn.close()).await;
    Ok(())
}

/// What a probe of a node learnt.
struct Probe {
    in_recovery: bool,
    /// `(application_name, state, sync_state)` from `pg_stat_replication`.
    replicas: Vec<(String, String, String)>,
}

fn probe(address: SocketAddr, limit: Duration) -> BoxFuture<'static, Result<Probe, DbError>> {
    Box::pin(async move {
        tokio::time::timeout(limit, probe_once(address))
            .await
            .unwrap_or_else(|_| Err(DbError::Timeout(format!("probing {address}"))))
    })
}

async fn maybe_probe(
    address: Option<SocketAddr>,
    limit: Duration,
) -> Option<Result<Probe, DbError>> {
    match address {
        Some(address) => Some(probe(address, limit).await),
        None => None,
    }
}

async fn probe_once(address: SocketAddr) -> Result<Probe, DbError> {
    {
        let mut conn = connect_options(address)
            .connect()
            .await
            .map_err(sql_error(format!("connecting to {address}")))?;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await
            .map_err(sql_error("reading pg_is_in_recovery()"))?;
        let rows = sqlx::query(
            "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, '') \
             FROM pg_stat_replication",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(sql_error("reading pg_stat_replication"))?;
        let replicas = rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2),
                )
            })
            .collect();
        let _ = conn.close().await;
        Ok(Probe {
            in_recovery,
            replicas,
        })
    }
}

/// Starts the postmaster of the node in `dir`.
fn spawn_postgres(
    tools: &Toolkit,
    dir: &Path,
    address: SocketAddr,
) -> Result<ProcessGroup, DbError> {
    let log = dir.join("server.log");
    let mut cmd = command(&tools.program("postgres"), tools.run_as, dir, &log)
        .map_err(io_error("preparing postgres"))?;
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-c", &format!("listen_addresses={}", address.ip())])
        .args(["-c", &format!("port={}", address.port())])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "fsync=off"])
        .args(["-c", "shared_buffers=32MB"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "wal_keep_size=512MB"])
        .args(["-c", "wal_sender_timeout=10s"])
        .args(["-c", "wal_receiver_status_interval=1s"])
        .args(["-c", "hot_standby=on"]);
    ProcessGroup::spawn(&mut cmd)
        .map_err(io_error(format!("starting postgres in {}", dir.display())))
}

/// Waits until the node answers, or fails early if its postmaster exits.
async fn wait_ready(
    node_id: &str,
    shared: &Shared,
    address: SocketAddr,
    dir: &Path,
) -> Result<(), DbError> {
    let deadline = Instant::now() + SETUP_LIMIT;
    loop {
        if probe(address, Duration::from_secs(2)).await.is_ok() {
            return Ok(());
        }
        let exited = {
            let mut state = shared.lock();
            match state.node(node_id).and_then(|n| n.process.as_mut()) {
                Some(process) => process.try_wait().ok().flatten().map(|s| s.to_string()),
                None => Some("removed".to_owned()),
            }
        };
        if let Some(status) = exited {
            return Err(program_failed(
                &format!("starting {node_id}"),
                &status,
                &dir.join("server.log"),
            ));
        }
        if Instant::now() > deadline {
            return Err(DbError::Timeout(format!("{node_id} accepting connections")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_node_dir(tools: &Toolkit, dir: &Path) -> Result<(), DbError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_error(format!("clearing {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    RunAs::chown(tools.run_as, dir)
        .map_err(io_error(format!("giving {} to postgres", dir.display())))
}

async fn append(path: &Path, text: &str) -> Result<(), DbError> {
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await
        .map_err(io_error(format!("opening {}", path.display())))?;
    file.write_all(text.as_bytes())
        .await
        .map_err(io_error(format!("writing {}", path.display())))
}

/// Builds a node from scratch (`initdb`): the first primary.
async fn build_primary(
    tools: &Toolkit,
    shared: &Shared,
    node_id: &str,
    dir: &Path,
    address: SocketAddr,
) -> Result<(), DbError> {
    create_node_dir(tools, dir)?;
    tools
        .run(
            &format!("initdb for {node_id}"),
            "initdb",
            &[
                "-D",
                "data",
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            dir,
        )
        .await?;
    // Nodes, the endpoint and the monitor reach each other anywhere on loopback.
    append(
        &dir.join("data/pg_hba.conf"),
        "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n",
    )
    .await?;
    let process = spawn_postgres(tools, dir, address)?;
    if let Some(node) = shared.lock().node(node_id) {
        node.process = Some(process);
    }
    wait_ready(node_id, shared, address, dir).await
}

/// Builds a standby of `primary` (`pg_basebackup -R`) and starts it.
async fn build_standby(
    tools: &Toolkit,
    shared: &Shared,
    node_id: &str,
    dir: &Path,
    address: SocketAddr,
    primary: SocketAddr,
) -> Result<(), DbError> {
    create_node_dir(tools, dir)?;
    let host = primary.ip().to_string();
    let port = primary.port().to_string();
    tools
        .run(
            &format!("pg_basebackup for {node_id}"),
            "pg_basebackup",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                "data",
                "-X",
                "stream",
                "-c",
                "fast",
                "-R",
                "--no-sync",
            ],
            dir,
        )
        .await?;
    // Name the standby for synchronous_standby_names; a promoted node starts asynchronous.
    append(
        &dir.join("data/postgresql.auto.conf"),
        &format!(
            "primary_conninfo = 'host={host} port={port} user=postgres application_name={node_id}'\n\
             synchronous_standby_names = ''\n"
        ),
    )
    .await?;
    let process = spawn_postgres(tools, dir, address)?;
    if let Some(node) = shared.lock().node(node_id) {
        node.process = Some(process);
    }
    wait_ready(node_id, shared, address, dir).await
}

/// Kills a node's process group and deletes its data, so it can never serve again.
async fn fence(node: Node, reason: &'static str) {
    if let Some(process) = node.process {
        process.kill(REAP_LIMIT).await;
    }
    let _ = tokio::fs::remove_dir_all(node.dir.join("data")).await;
    let _ = tokio::fs::write(node.dir.join("FENCED"), format!("{reason}\n")).await;
}

/// Cleanly stops a node (fast shutdown), then fences it.
async fn stop_and_fence(mut node: Node, reason: &'static str) {
    if let Some(process) = node.process.take() {
        process.stop(Signal::SIGINT, REAP_LIMIT).await;
    }
    fence(node, reason).await;
}

fn sync_names_statement(standby: Option<&str>) -> String {
    match standby {
        Some(name) => format!("ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'"),
        None => "ALTER SYSTEM SET synchronous_standby_names = ''".to_owned(),
    }
}

/// Whether PostgreSQL's server programs, as the user they run as, can enter `dir`: search
/// permission on it and on every directory above it (a 0700 home directory above a project
/// stops them). Always true when they run as this process does.
pub async fn server_can_enter(dir: &Path) -> Result<bool, DbError> {
    let Some(user) =
        RunAs::unprivileged("postgres").map_err(io_error("finding the postgres user"))?
    else {
        return Ok(true);
    };
    let status = tokio::process::Command::new("/bin/sh")
        .args(["-c", "cd -- \"$1\"", "sh"])
        .arg(dir)
        .current_dir("/")
        .uid(user.uid)
        .gid(user.gid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(io_error(format!(
            "checking whether postgres can enter {}",
            dir.display()
        )))?;
    Ok(status.success())
}

/// Kills PostgreSQL servers left running in `state_dir` by a process that ended without
/// shutting its cluster down (a crash): every `*/data/postmaster.pid` whose process is still a
/// `postgres` serving that directory has its process tree SIGKILLed. Returns how many servers
/// were found. [`DbCluster::start`] does this before it builds anything.
pub fn kill_stale_servers(state_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let data = entry.path().join("data");
        let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
            continue;
        };
        let Some(pid) = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            continue;
        };
        // The pid may have been reused: only a postgres started on this data directory counts.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with("postgres"))
            && args.iter().any(|a| Path::new(a) == data);
        if is_ours {
            super::process::signal_tree(pid, Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}

/// A running Multi-AZ PostgreSQL cluster behind one endpoint.
pub struct DbCluster {
    shared: Arc<Shared>,
    endpoint: SocketAddr,
    commands: mpsc::Sender<MonitorCommand>,
    monitor: JoinHandle<()>,
    proxy: JoinHandle<()>,
}

impl std::fmt::Debug for DbCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCluster")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

enum MonitorCommand {
    Failover(oneshot::Sender<Result<FailoverRecord, DbError>>),
}

impl DbCluster {
    /// Builds the primary and a synchronous standby, opens the endpoint and starts watching.
    pub async fn start(config: DbConfig) -> Result<DbCluster, DbError> {
        config.validate()?;
        let tools = Toolkit::find(&config)?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(io_error(format!("creating {}", config.state_dir.display())))?;
        kill_stale_servers(&config.state_dir);
        if tools.run_as.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io_error(format!(
                    "opening {} to postgres",
                    config.state_dir.display()
                )))?;
        }
        let listener = TcpListener::bind(config.endpoint)
            .await
            .map_err(io_error(format!(
                "binding the endpoint {}",
                config.endpoint
            )))?;
        let endpoint = listener
            .local_addr()
            .map_err(io_error("reading the endpoint address"))?;
        let (route, _) = watch::channel(Route {
            primary: None,
            generation: 0,
            closed: false,
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                nodes: Vec::new(),
                status: ClusterStatus::Creating,
                replication: ReplicationMode::Asynchronous,
                failovers: Vec::new(),
                events: VecDeque::new(),
                next_node: 1,
                az_losses: Vec::new(),
            }),
            route,
        });
        let proxy = tokio::spawn(serve_endpoint(
            listener,
            shared.route.subscribe(),
            config.endpoint_hold,
        ));
        let (commands, command_rx) = mpsc::channel(4);
        let mut monitor = Monitor {
            config,
            tools,
            shared: shared.clone(),
            commands: command_rx,
            rebuild: None,
            next_rebuild: Instant::now(),
            applied_sync_names: None,
        };
        // From here on, dropping `cluster` kills whatever has been started.
        let mut cluster = DbCluster {
            shared,
            endpoint,
            commands,
            monitor: tokio::spawn(async {}),
            proxy,
        };
        monitor.bootstrap().await?;
        cluster.monitor = tokio::spawn(monitor.run());
        Ok(cluster)
    }

    /// The stable endpoint (always `127.0.0.1`).
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// A connection URL for `database` through the endpoint, as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}/{database}", self.endpoint)
    }

    /// The cluster now.
    pub fn status(&self) -> DbStatus {
        let state = self.shared.lock();
        let mut nodes: Vec<DbNodeStatus> = state.nodes.iter().map(Node::view).collect();
        nodes.sort_by_key(|n| n.role != DbRole::Primary);
        DbStatus {
            endpoint: self.endpoint,
            status: state.status,
            replication: state.replication,
            nodes,
            failovers: state.failovers.clone(),
            events: state.events.iter().cloned().collect(),
        }
    }

    /// Fails over to the synchronous standby now (`RebootDBInstance` with `ForceFailover`):
    /// the old primary is stopped and fenced, a new standby is built afterwards.
    pub async fn failover(&self) -> Result<FailoverRecord, DbError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(MonitorCommand::Failover(reply))
            .await
            .map_err(|_| DbError::ShutDown)?;
        answer.await.map_err(|_| DbError::ShutDown)?
    }

    /// Sends a fault signal to a node: its postmaster and every process it forked.
    pub fn signal_node(&self, node_id: &str, signal: NodeSignal) -> Result<(), DbError> {
        let state = self.shared.lock();
        let node = state
            .nodes
            .iter()
            .find(|n| n.id == node_id)
            .ok_or_else(|| DbError::UnknownNode(node_id.to_owned()))?;
        let process = node
            .process
            .as_ref()
            .ok_or_else(|| DbError::UnknownNode(node_id.to_owned()))?;
        let signal = match signal {
            NodeSignal::Stop => Signal::SIGSTOP,
            NodeSignal::Continue => Signal::SIGCONT,
            NodeSignal::Kill => Signal::SIGKILL,
        };
        process.signal(signal);
        Ok(())
    }

    /// Stops the monitor and the endpoint, then every node (fast shutdown, SIGKILL after a
    /// grace period).
    pub async fn shutdown(self) {
        self.monitor.abort();
        self.proxy.abort();
        let nodes: Vec<Node> = std::mem::take(&mut self.shared.lock().nodes);
        self.shared.route.send_modify(|r| {
            r.primary = None;
            r.generation += 1;
            r.closed = true;
        });
        for mut node in nodes {
            if let Some(process) = node.process.take() {
                process.stop(Signal::SIGINT, REAP_LIMIT).await;
            }
        }
    }
}

impl Drop for DbCluster {
    fn drop(&mut self) {
        self.monitor.abort();
        self.proxy.abort();
        self.shared.route.send_modify(|r| {
            r.primary = None;
            r.generation += 1;
            r.closed = true;
        });
        // Dropping each node's process group SIGKILLs it.
        let nodes = std::mem::take(&mut self.shared.lock().nodes);
        drop(nodes);
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Rebuild {
    node_id: String,
    task: AbortOnDrop<Result<(), DbError>>,
}

async fn rebuild_finished(rebuild: &mut Option<Rebuild>) -> (String, Result<(), DbError>) {
    match rebuild {
        Some(r) => {
            let result = match (&mut r.task.0).await {
                Ok(result) => result,
                Err(e) => Err(DbError::Io {
                    what: "building a standby".to_owned(),
                    source: std::io::Error::other(e.to_string()),
                }),
            };
            (r.node_id.clone(), result)
        }
        None => std::future::pending().await,
    }
}

enum Wake {
    Tick,
    Command(Option<MonitorCommand>),
    Rebuilt(String, Result<(), DbError>),
}

struct Monitor {
    config: DbConfig,
    tools: Toolkit,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<MonitorCommand>,
    rebuild: Option<Rebuild>,
    next_rebuild: Instant,
    /// What `synchronous_standby_names` on the primary is known to name (`Some(None)` = empty).
    applied_sync_names: Option<Option<String>>,
}

impl Monitor {
    fn az_index(&self, az: &str) -> usize {
        self.config.azs.iter().position(|a| a == az).unwrap_or(0)
    }

    /// Reserves a node (id, directory, address) in `az`.
    fn new_node(&self, az: &str, role: DbRole) -> Result<(String, PathBuf, SocketAddr), DbError> {
        let ip = az_address(self.az_index(az), DB_HOST_OCTET);
        let port = free_port(ip).map_err(io_error(format!("finding a free port on {ip}")))?;
        let address = SocketAddr::from((ip, port));
        let mut state = self.shared.lock();
        let id = format!("db{}", state.next_node);
        state.next_node += 1;
        let dir = self.config.state_dir.join(&id);
        state.nodes.push(Node {
            id: id.clone(),
            az: az.to_owned(),
            address,
            dir: dir.clone(),
            role,
            status: NodeStatus::Creating,
            sync_state: None,
            process: None,
            last_answer: Instant::now(),
        });
        Ok((id, dir, address))
    }

    async fn bootstrap(&mut self) -> Result<(), DbError> {
        let primary_az = self.config.primary_az.clone();
        let standby_az = self.config.standby_az.clone();
        let (pid, pdir, paddr) = self.new_node(&primary_az, DbRole::Primary)?;
        build_primary(&self.tools, &self.shared, &pid, &pdir, paddr).await?;
        {
            let mut state = self.shared.lock();
            if let Some(node) = state.node(&pid) {
                node.status = NodeStatus::Available;
                node.last_answer = Instant::now();
            }
            state.event(format!(
                "DB instance created: primary {pid} in {primary_az}."
            ));
        }
        self.applied_sync_names = Some(None);
        let (sid, sdir, saddr) = self.new_node(&standby_az, DbRole::Standby)?;
        build_standby(&self.tools, &self.shared, &sid, &sdir, saddr, paddr).await?;
        self.standby_ready(&sid);
        // Creating finishes once replication is synchronous, as RDS's Multi-AZ create does.
        let deadline = Instant::now() + SETUP_LIMIT;
        loop {
            self.check().await;
            if self.shared.lock().replication == ReplicationMode::Synchronous {
                break;
            }
            if Instant::now() > deadline {
                return Err(DbError::Timeout(
                    "the standby becoming synchronous".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut state = self.shared.lock();
        state.status = ClusterStatus::Available;
        drop(state);
        self.shared.set_primary(Some(paddr));
        Ok(())
    }

    fn standby_ready(&self, node_id: &str) {
        let mut state = self.shared.lock();
        if let Some(node) = state.node(node_id) {
            node.status = NodeStatus::Available;
            node.last_answer = Instant::now();
            let az = node.az.clone();
            state.event(format!(
                "Standby {node_id} created in {az}; replication is catching up."
            ));
        }
    }

    async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.config.check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                _ = ticks.tick() => Wake::Tick,
                command = self.commands.recv() => Wake::Command(command),
                (id, result) = rebuild_finished(&mut self.rebuild) => Wake::Rebuilt(id, result),
            };
            match wake {
                Wake::Tick => self.check().await,
                Wake::Command(None) => return,
                Wake::Command(Some(MonitorCommand::Failover(reply))) => {
                    let _ = reply.send(self.manual_failover().await);
                }
                Wake::Rebuilt(id, result) => {
                    self.rebuild = None;
                    match result {
                        Ok(()) => self.standby_ready(&id),
                        Err(e) => {
                            let node = {
                                let mut state = self.shared.lock();
                                state.event(format!("Creating standby {id} failed: {e}"));
                                state.remove(&id)
                            };
                            if let Some(node) = node {
                                fence(node, "standby build failed").await;
                            }
                            self.next_rebuild = Instant::now() + REBUILD_BACKOFF;
                        }
                    }
                }
            }
        }
    }

    /// One round of probes and the decisions they lead to.
    async fn check(&mut self) {
        let (primary, standby) = {
            let state = self.shared.lock();
            (
                state.primary().map(|n| (n.id.clone(), n.address)),
                state
                    .standby()
                    .filter(|n| n.status != NodeStatus::Creating)
                    .map(|n| (n.id.clone(), n.address)),
            )
        };
        let Some((primary_id, primary_address)) = primary else {
            return;
        };
        let limit = self.config.probe_timeout;
        let standby_address = standby.as_ref().map(|(_, a)| *a);
        let standby_id = standby.map(|(id, _)| id);
        let (primary_probe, standby_probe) = tokio::join!(
            probe(primary_address, limit),
            maybe_probe(standby_address, limit)
        );
        let now = Instant::now();
        let detection = self.config.detection_time;

        // The standby first: dropping to asynchronous unblocks commits before anything else.
        if let (Some(standby_id), Some(result)) = (standby_id, standby_probe) {
            let lost = {
                let mut state = self.shared.lock();
                match state.node(&standby_id) {
                    Some(node) if result.as_ref().is_ok_and(|p| p.in_recovery) => {
                        node.last_answer = now;
                        if node.status == NodeStatus::Unreachable {
                            node.status = NodeStatus::Available;
                        }
                        false
                    }
                    Some(node) => {
                        node.status = NodeStatus::Unreachable;
                        now.duration_since(node.last_answer) > detection
                    }
                    None => false,
                }
            };
            if lost && primary_probe.is_ok() {
                self.standby_lost(standby_id, primary_address).await;
            }
        }

        match primary_probe {
            Ok(probe) if !probe.in_recovery => {
                {
                    let mut state = self.shared.lock();
                    let standby_name = state.standby().map(|n| n.id.clone());
                    if let Some(node) = state.node(&primary_id) {
                        node.last_answer = now;
                        node.status = NodeStatus::Available;
                    }
                    if state.status == ClusterStatus::Inaccessible {
                        state.status = ClusterStatus::Available;
                        state.event(format!("Primary {primary_id} is reachable again."));
                    }
                    if let Some(name) = standby_name {
                        let seen = probe.replicas.iter().find(|(app, _, _)| *app == name);
                        if let Some(node) = state.node(&name) {
                            node.sync_state =
                                Some(seen.map_or(SyncState::Disconnected, |(_, _, sync)| {
                                    SyncState::parse(sync)
                                }));
                        }
                    }
                }
                self.reconcile_sync(primary_address, &probe).await;
                self.maybe_rebuild(primary_address);
            }
            _ => {
                let silent_for = {
                    let mut state = self.shared.lock();
                    match state.node(&primary_id) {
                        Some(node) => {
                            node.status = NodeStatus::Unreachable;
                            now.duration_since(node.last_answer)
                        }
                        None => Duration::ZERO,
                    }
                };
                if silent_for > detection
                    && let Err(e) = self.failover(FailoverCause::PrimaryUnreachable).await
                {
                    let mut state = self.shared.lock();
                    if !matches!(e, DbError::NoSynchronousStandby) {
                        state.status = ClusterStatus::Failed;
                        state.event(format!("Multi-AZ instance failover failed: {e}"));
                    } else if state.status != ClusterStatus::Inaccessible {
                        state.status = ClusterStatus::Inaccessible;
                        state.event(format!(
                            "Primary {primary_id} is unreachable and no synchronous standby can take over."
                        ));
                    }
                }
            }
        }
    }

    /// The standby `synchronous_standby_names` should name: the available standby once it
    /// streams (and from then on while it stays available), else none.
    fn desired_sync_names(&self, probe: &Probe) -> Option<String> {
        let state = self.shared.lock();
        let standby = state
            .standby()
            .filter(|n| matches!(n.status, NodeStatus::Available | NodeStatus::Unreachable))?;
        let id = standby.id.clone();
        let already = self.applied_sync_names.as_ref() == Some(&Some(id.clone()));
        let streaming = probe
            .replicas
            .iter()
            .any(|(app, st, _)| *app == id && st == "streaming");
        (already || streaming).then_some(id)
    }

    /// Points `synchronous_standby_names` at the standby once it streams, empties it when
    /// there is no standby, and reports the replication mode.
    async fn reconcile_sync(&mut self, primary: SocketAddr, probe: &Probe) {
        let desired = self.desired_sync_names(probe);
        if self.applied_sync_names.as_ref() != Some(&desired) {
            let statement = sync_names_statement(desired.as_deref());
            match execute(
                primary,
                self.config.probe_timeout,
                vec![statement, RELOAD.to_owned()],
            )
            .await
            {
                Ok(()) => {
                    let mut state = self.shared.lock();
                    match &desired {
                        Some(name) => state.event(format!(
                            "Standby {name} streams; making replication synchronous."
                        )),
                        None => state.event("Replication is asynchronous: no standby."),
                    }
                    self.applied_sync_names = Some(desired.clone());
                }
                Err(e) => {
                    tracing::warn!(target: "sandbox::db", "setting synchronous_standby_names: {e}")
                }
            }
        }
        let mut state = self.shared.lock();
        let synchronous = desired.is_some()
            && self.applied_sync_names.as_ref() == Some(&desired)
            && state
                .standby()
                .is_some_and(|n| n.sync_state == Some(SyncState::Sync));
        let mode = if synchronous {
            ReplicationMode::Synchronous
        } else {
            ReplicationMode::Asynchronous
        };
        if mode != state.replication {
            state.replication = mode;
            if mode == ReplicationMode::Synchronous {
                state.event("Synchronous replication is active.");
            }
        }
    }

    /// Starts building a standby if there is none.
    fn maybe_rebuild(&mut self, primary: SocketAddr) {
        if self.rebuild.is_some() || Instant::now() < self.next_rebuild {
            return;
        }
        let (has_standby, primary_az, losses) = {
            let state = self.shared.lock();
            (
                state.standby().is_some(),
                state.primary().map(|n| n.az.clone()).unwrap_or_default(),
                state.az_losses.clone(),
            )
        };
        if has_standby {
            return;
        }
        // Prefer an AZ other than the primary's that has not lost a node, else the one whose
        // loss is oldest.
        let last_loss = |az: &String| {
            losses
                .iter()
                .filter(|(a, _)| a == az)
                .map(|(_, at)| *at)
                .max()
        };
        let Some(az) = self
            .config
            .azs
            .iter()
            .filter(|az| **az != primary_az)
            .min_by_key(|az| last_loss(az))
            .cloned()
        else {
            return;
        };
        let (id, dir, address) = match self.new_node(&az, DbRole::Standby) {
            Ok(reserved) => reserved,
            Err(e) => {
                self.shared
                    .lock()
                    .event(format!("Creating a standby failed: {e}"));
                self.next_rebuild = Instant::now() + REBUILD_BACKOFF;
                return;
            }
        };
        self.shared
            .lock()
            .event(format!("Creating standby {id} in {az} from the primary."));
        let tools = self.tools.clone();
        let shared = self.shared.clone();
        let node_id = id.clone();
        let task = tokio::spawn(async move {
            build_standby(&tools, &shared, &node_id, &dir, address, primary).await
        });
        self.rebuild = Some(Rebuild {
            node_id: id,
            task: AbortOnDrop(task),
        });
    }

    /// The standby was silent for the detection time: asynchronous first, then replace it.
    async fn standby_lost(&mut self, standby_id: String, primary: SocketAddr) {
        let statements = vec![sync_names_statement(None), RELOAD.to_owned()];
        if let Err(e) = execute(primary, self.config.probe_timeout, statements).await {
            tracing::warn!(target: "sandbox::db", "dropping to asynchronous replication: {e}");
            return; // retried on the next check
        }
        self.applied_sync_names = Some(None);
        let node = {
            let mut state = self.shared.lock();
            state.replication = ReplicationMode::Asynchronous;
            let node = state.remove(&standby_id);
            if let Some(node) = &node {
                state.az_losses.push((node.az.clone(), Instant::now()));
                state.event(format!(
                    "Standby {standby_id} in {} is unreachable; replication is asynchronous until a replacement is synchronous.",
                    node.az
                ));
            }
            node
        };
        if let Some(node) = node {
            fence(node, "standby unreachable").await;
        }
        self.next_rebuild = Instant::now();
    }

    async fn manual_failover(&mut self) -> Result<FailoverRecord, DbError> {
        self.failover(FailoverCause::Manual).await
    }

    /// Promotes the synchronous standby: stop routing, fence the old primary, promote, route
    /// to the new primary, and let the next check build a new standby.
    async fn failover(&mut self, cause: FailoverCause) -> Result<FailoverRecord, DbError> {
        let detection = self.config.detection_time;
        let (old, new) = {
            let state = self.shared.lock();
            let old = state.primary().map(|n| n.id.clone());
            let new = state
                .standby()
                .filter(|n| {
                    n.status == NodeStatus::Available
                        && n.sync_state == Some(SyncState::Sync)
                        && n.last_answer.elapsed() <= detection
                        && state.replication == ReplicationMode::Synchronous
                })
                .map(|n| (n.id.clone(), n.az.clone(), n.address));
            (old, new)
        };
        let (Some(old_id), Some((new_id, new_az, new_address))) = (old, new) else {
            return Err(DbError::NoSynchronousStandby);
        };
        let started_at = OffsetDateTime::now_utc();
        let old = {
            let mut state = self.shared.lock();
            state.status = ClusterStatus::FailingOver;
            if let Some(node) = state.node(&new_id) {
                node.status = NodeStatus::FailingOver;
            }
            let message = match cause {
                FailoverCause::Manual => {
                    "Multi-AZ instance failover started (reboot with failover)."
                }
                FailoverCause::PrimaryUnreachable => {
                    "Multi-AZ instance failover started: the primary is unreachable."
                }
            };
            state.event(message);
            state.remove(&old_id)
        };
        // Stop routing: cuts every client connection to the old primary.
        self.shared.set_primary(None);
        self.rebuild = None;
        let Some(old) = old else {
            return Err(DbError::UnknownNode(old_id));
        };
        let old_az = old.az.clone();
        match cause {
            FailoverCause::Manual => stop_and_fence(old, "replaced by a manual failover").await,
            FailoverCause::PrimaryUnreachable => {
                fence(old, "primary unreachable; failed over").await
            }
        }
        self.shared
            .lock()
            .az_losses
            .push((old_az.clone(), Instant::now()));

        let limit = SETUP_LIMIT;
        execute(
            new_address,
            limit,
            vec!["SELECT pg_promote(true, 60)".to_owned()],
        )
        .await?;
        let deadline = Instant::now() + limit;
        loop {
            match probe(new_address, self.config.probe_timeout).await {
                Ok(p) if !p.in_recovery => break,
                _ if Instant::now() > deadline => {
                    return Err(DbError::Timeout(format!("{new_id} leaving recovery")));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let statement = sync_names_statement(None);
        execute(new_address, limit, vec![statement, RELOAD.to_owned()]).await?;
        self.applied_sync_names = Some(None);

        let record = FailoverRecord {
            cause,
            from_node: old_id,
            from_az: old_az,
            to_node: new_id.clone(),
            to_az: new_az,
            started_at,
            completed_at: OffsetDateTime::now_utc(),
        };
        {
            let mut state = self.shared.lock();
            if let Some(node) = state.node(&new_id) {
                node.role = DbRole::Primary;
                node.status = NodeStatus::Available;
                node.sync_state = None;
                node.last_answer = Instant::now();
            }
            state.status = ClusterStatus::Available;
            state.replication = ReplicationMode::Asynchronous;
            state.failovers.push(record.clone());
            state.event(format!(
                "Multi-AZ instance failover completed: {new_id} is the primary."
            ));
        }
        self.shared.set_primary(Some(new_address));
        self.next_rebuild = Instant::now();
        Ok(record)
    }
}

/// Accepts client connections and forwards each to the current primary; a change of primary
/// cuts the connections made to the previous one.
async fn serve_endpoint(listener: TcpListener, route: watch::Receiver<Route>, hold: Duration) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        tokio::spawn(forward(client, route.clone(), hold));
    }
}

async fn forward(mut client: TcpStream, mut route: watch::Receiver<Route>, hold: Duration) {
    let current =
        match tokio::time::timeout(hold, route.wait_for(|r| r.primary.is_some() || r.closed)).await
        {
            Ok(Ok(r)) => *r,
            _ => return,
        };
    let Some(primary) = current.primary else {
        return;
    };
    let Ok(Ok(mut server)) = tokio::time::timeout(hold, TcpStream::connect(primary)).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let moved = route.wait_for(|r| r.generation != current.generation);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = moved => {}
    }
}

/// Waits until `condition` holds for the cluster's status, polling every 50 ms, for at most
/// `limit`; returns the last status either way.
pub async fn wait_for_status(
    cluster: &DbCluster,
    limit: Duration,
    mut condition: impl FnMut(&DbStatus) -> bool,
) -> Result<DbStatus, DbStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let status = cluster.status();
        if condition(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
