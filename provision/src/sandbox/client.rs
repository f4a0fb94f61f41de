//! [`SandboxCloud`]: the Cloud port for the local sandbox, carried out by the stack's daemon
//! (see [`super::daemon`]) over its loopback control API.
//!
//! The daemon's address is read from the state directory's address file at each call, so a
//! client outlives daemon restarts. `apply` starts the daemon when none runs — through the
//! spawner the caller gave (`triad sandbox serve --dir DIR`, detached in its own process
//! group) after writing the stack spec to the state directory — and streams its bring-up;
//! `destroy` asks the daemon to stop everything, waits for it to go, and removes the state
//! directory. `watch` polls `GET /snapshot`; `wait_refresh` polls `GET /refresh/{id}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::daemon::{
    ADDRESS_FILE, InjectRequest, InstanceRequest, LogsRequest, SPEC_FILE, SandboxSpec, ShiftCancel,
    ShiftStart, live_daemon_pid,
};
use super::fleet::Timing;
use crate::port::instance::{InstanceAction, InstancePlan};
use crate::port::{
    BackendKind, CapacityCheck, ChangeAction, Cloud, CloudError, CloudStream, DeployRequest,
    DesiredStack, Fault, FaultPlan, FaultRecord, LogCursor, LogPage, LogQuery, Outputs, Plan,
    ProvisionEvent, Refresh, RefreshId, ResourceChange, ResourceEvent, ResourceStatus,
    ShiftRequest, Snapshot, StackOperation, StackRef, StackStatus, ZonalShift,
};

/// How long `apply` waits for a spawned daemon to publish its address.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long `destroy` waits for the daemon to stop everything.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// How often progress and refreshes are polled.
const POLL: Duration = Duration::from_millis(200);
/// How long one control API call may take (a DB failover is the slowest).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// Builds the command that runs the daemon for a state directory.
pub type Spawner = Arc<dyn Fn(&Path) -> std::process::Command + Send + Sync>;

/// The sandbox backend: one stack's daemon, found through its state directory.
#[derive(Clone)]
pub struct SandboxCloud {
    dir: PathBuf,
    spawner: Option<Spawner>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for SandboxCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCloud")
            .field("dir", &self.dir)
            .field("can_start", &self.spawner.is_some())
            .finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> CloudError {
    CloudError::Unavailable {
        message: message.into(),
    }
}

/// The daemon's control address published in `dir`, if any.
pub fn daemon_address(dir: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(dir.join(ADDRESS_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl SandboxCloud {
    /// A client for the stack whose state directory is `dir`. It attaches to a running daemon
    /// only; `apply` refuses to start one (see [`SandboxCloud::with_spawner`]).
    pub fn new(dir: impl Into<PathBuf>) -> SandboxCloud {
        SandboxCloud {
            dir: dir.into(),
            spawner: None,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// A client that can also start the daemon: `spawn(dir)` returns the command that runs
    /// it (e.g. `triad sandbox serve --dir DIR`); it is started detached, in a process group
    /// of its own, with its output in `DIR/daemon.log`.
    pub fn with_spawner(
        dir: impl Into<PathBuf>,
        spawn: impl Fn(&Path) -> std::process::Command + Send + Sync + 'static,
    ) -> SandboxCloud {
        SandboxCloud {
            spawner: Some(Arc::new(spawn)),
            ..SandboxCloud::new(dir)
        }
    }

    /// Attaches to the daemon running for `dir`; `Unavailable` when none does.
    pub async fn connect(dir: impl Into<PathBuf>) -> Result<SandboxCloud, CloudError> {
        let cloud = SandboxCloud::new(dir);
        cloud.get::<Vec<ProvisionEvent>>("/progress").await?;
        Ok(cloud)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a daemon answers for this state directory.
    pub async fn is_running(&self) -> bool {
        self.get::<Vec<ProvisionEvent>>("/progress").await.is_ok()
    }

    /// Writes `spec` (the JSON of a `StackSpec`) to the state directory and starts the daemon
    /// with the spawner, then waits until it publishes its address.
    pub async fn start_daemon(&self, spec: &serde_json::Value) -> Result<SocketAddr, CloudError> {
        let spawner = self.spawner.clone().ok_or_else(|| {
            unavailable(format!(
                "no sandbox daemon runs for {} and this client cannot start one",
                self.dir.display()
            ))
        })?;
        SandboxSpec::from_json(spec)?;
        let io = |what: &str, e: std::io::Error| unavailable(format!("{what}: {e}"));
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| io(&format!("creating {}", self.dir.display()), e))?;
        let text = serde_json::to_string_pretty(spec)
            .map_err(|e| CloudError::invalid("spec", e.to_string()))?;
        std::fs::write(self.dir.join(SPEC_FILE), text).map_err(|e| io("writing the spec", e))?;
        let _ = std::fs::remove_file(self.dir.join(ADDRESS_FILE));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .map_err(|e| io("opening the daemon log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| io("opening the daemon log", e))?;
        let mut command = spawner(&self.dir);
        {
            use std::os::unix::process::CommandExt;
            command
                .stdin(std::process::Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .process_group(0);
        }
        let mut child = command
            .spawn()
            .map_err(|e| io("starting the sandbox daemon", e))?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(address) = daemon_address(&self.dir)
                && self.is_running().await
            {
                // Reap the daemon when it exits, so it never lingers as a zombie.
                std::thread::spawn(move || child.wait());
                return Ok(address);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(unavailable(format!(
                    "the sandbox daemon exited ({status}); see {}",
                    self.dir.join("daemon.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(unavailable(format!(
                    "the sandbox daemon did not publish its address within {} s",
                    START_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, CloudError> {
        let address = daemon_address(&self.dir).ok_or_else(|| {
            unavailable(format!(
                "no sandbox daemon runs for {} (run `triad up`)",
                self.dir.display()
            ))
        })?;
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{address}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unavailable(e.to_string()))?;
        let response = tokio::time::timeout(CALL_LIMIT, self.http.request(request))
            .await
            .map_err(|_| unavailable(format!("the sandbox daemon did not answer {path} in time")))?
            .map_err(|e| unavailable(format!("the sandbox daemon at {address}: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(format!("reading the daemon's answer: {e}")))?
            .to_bytes();
        if status == StatusCode::OK {
            serde_json::from_slice(&bytes)
                .map_err(|e| CloudError::backend("sandbox", "BadResponse", format!("{path}: {e}")))
        } else {
            Err(
                serde_json::from_slice::<CloudError>(&bytes).unwrap_or_else(|_| {
                    CloudError::backend(
                        "sandbox",
                        status.as_str(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    )
                }),
            )
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CloudError> {
        self.call(Method::GET, path, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CloudError> {
        let body =
            serde_json::to_vec(body).map_err(|e| CloudError::invalid("body", e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    fn check_stack(&self, stack: &StackRef) -> Result<(), CloudError> {
        let spec = std::fs::read_to_string(self.dir.join(SPEC_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        match spec
            .as_ref()
            .and_then(|s| s.get("name"))
            .and_then(|n| n.as_str())
        {
            Some(name) if name != stack.name => Err(CloudError::not_found(format!(
                "stack {stack} (the sandbox in {} runs {name})",
                self.dir.display()
            ))),
            _ => Ok(()),
        }
    }

    /// When the running stack's clock or durations differ from what `desired` asks for: the
    /// change (the running stack must be restarted to take them) and what to do about it.
    /// A running daemon keeps the timings it started with.
    fn clock_change(&self, desired: &SandboxSpec) -> Option<(ResourceChange, String)> {
        let text = std::fs::read_to_string(self.dir.join(SPEC_FILE)).ok()?;
        let value = serde_json::from_str::<serde_json::Value>(&text).ok()?;
        let running = SandboxSpec::from_json(&value).ok()?;
        let now = Timing::sandbox(&running.app, &running.sandbox);
        let wanted = Timing::sandbox(&desired.app, &desired.sandbox);
        if now == wanted {
            return None;
        }
        let mut reasons = Vec::new();
        if now.scale != wanted.scale {
            reasons.push(format!(
                "clock: running {}, the spec says {}",
                now.scale, wanted.scale
            ));
        }
        let (now_clock, wanted_clock) = (now.clock(), wanted.clock());
        for (a, b) in now_clock.durations.iter().zip(&wanted_clock.durations) {
            if a.aws_seconds != b.aws_seconds {
                reasons.push(format!(
                    "{}: running {} s, the spec says {} s",
                    a.name,
                    crate::model::clock::trim(a.aws_seconds),
                    crate::model::clock::trim(b.aws_seconds)
                ));
            }
        }
        if (now_clock.healthy_threshold, now_clock.unhealthy_threshold)
            != (
                wanted_clock.healthy_threshold,
                wanted_clock.unhealthy_threshold,
            )
        {
            reasons.push("health check thresholds differ".to_owned());
        }
        reasons.push("needs restart: a running sandbox keeps the clock it started with".into());
        Some((
            ResourceChange {
                logical_id: "SandboxClock".into(),
                resource_type: "Sandbox::Clock".into(),
                physical_id: None,
                action: ChangeAction::Replace,
                reasons,
            },
            format!(
                "the running sandbox uses clock {} and other timings than the spec: it needs a \
                 restart (`triad down`, then `triad up`) to run on the spec's",
                now.scale
            ),
        ))
    }

    /// Streams the daemon's bring-up events until its `Finished`.
    fn progress(&self) -> CloudStream<ProvisionEvent> {
        let client = self.clone();
        futures::stream::unfold((client, 0usize, false), |(client, seen, done)| async move {
            if done {
                return None;
            }
            loop {
                match client.get::<Vec<ProvisionEvent>>("/progress").await {
                    Ok(events) if events.len() > seen => {
                        let event = events[seen].clone();
                        let finished = matches!(event, ProvisionEvent::Finished { .. });
                        return Some((Ok(event), (client, seen + 1, finished)));
                    }
                    Ok(_) => tokio::time::sleep(POLL).await,
                    Err(e) => return Some((Err(e), (client, seen, true))),
                }
            }
        })
        .boxed()
    }
}

#[async_trait]
impl Cloud for SandboxCloud {
    fn kind(&self) -> BackendKind {
        BackendKind::Sandbox
    }

    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        let spec = SandboxSpec::from_json(&desired.spec)?;
        if spec.name != desired.stack.name {
            return Err(CloudError::invalid(
                "spec.name",
                format!(
                    "{:?} differs from the stack name {:?}",
                    spec.name, desired.stack.name
                ),
            ));
        }
        let running = self.is_running().await;
        let mut blockers = Vec::new();
        let changes = if running {
            match self.clock_change(&spec) {
                Some((change, blocker)) => {
                    blockers.push(blocker);
                    vec![change]
                }
                None => Vec::new(),
            }
        } else {
            spec.resources()
                .into_iter()
                .map(|(logical_id, resource_type)| ResourceChange {
                    logical_id,
                    resource_type,
                    physical_id: None,
                    action: ChangeAction::Add,
                    reasons: vec!["start the process".into()],
                })
                .collect()
        };
        Ok(Plan {
            desired: desired.clone(),
            creates_stack: !running,
            change_set: None,
            changes,
            prepare: Vec::new(),
            blockers,
            planned_at: OffsetDateTime::now_utc(),
        })
    }

    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent> {
        let client = self.clone();
        let spec = plan.desired.spec.clone();
        futures::stream::once(async move {
            if !client.is_running().await {
                client.start_daemon(&spec).await?;
            }
            Ok::<_, CloudError>(client.progress())
        })
        .flat_map(|started| match started {
            Ok(stream) => stream,
            Err(e) => crate::port::failed_stream(e),
        })
        .boxed()
    }

    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent> {
        let client = self.clone();
        let stack = stack.clone();
        futures::stream::once(async move { client.destroy_now(&stack).await })
            .flat_map(|result| match result {
                Ok(events) => futures::stream::iter(events.into_iter().map(Ok)).boxed(),
                Err(e) => crate::port::failed_stream(e),
            })
            .boxed()
    }

    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        self.check_stack(stack)?;
        self.get("/snapshot").await
    }

    fn watch(&self, stack: &StackRef, interval: Duration) -> CloudStream<Snapshot> {
        let client = self.clone();
        let stack = stack.clone();
        futures::stream::unfold(true, move |first| {
            let client = client.clone();
            let stack = stack.clone();
            async move {
                if !first {
                    tokio::time::sleep(interval).await;
                }
                Some((client.snapshot(&stack).await, false))
            }
        })
        .boxed()
    }

    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        self.check_stack(stack)?;
        request.validate()?;
        self.post("/deploy", request).await
    }

    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        self.check_stack(stack)?;
        self.post("/refresh/cancel", &()).await
    }

    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        self.check_stack(stack)?;
        self.post("/refresh/rollback", &()).await
    }

    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh> {
        if let Err(e) = self.check_stack(stack) {
            return crate::port::failed_stream(e);
        }
        let client = self.clone();
        let path = format!("/refresh/{id}");
        futures::stream::unfold((None::<Refresh>, false), move |(last, done)| {
            let client = client.clone();
            let path = path.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match client.get::<Refresh>(&path).await {
                        Ok(refresh) if last.as_ref() != Some(&refresh) => {
                            let terminal = refresh.status.is_terminal();
                            return Some((Ok(refresh.clone()), (Some(refresh), terminal)));
                        }
                        Ok(_) => tokio::time::sleep(POLL).await,
                        Err(e) => return Some((Err(e), (last, true))),
                    }
                }
            }
        })
        .boxed()
    }

    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        self.check_stack(stack)?;
        self.post("/fault/describe", fault).await
    }

    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        self.check_stack(stack)?;
        self.post(
            "/fault/inject",
            &InjectRequest {
                fault: fault.clone(),
                check,
            },
        )
        .await
    }

    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError> {
        self.check_stack(&record.stack)?;
        self.post("/fault/restore", record).await
    }

    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        self.check_stack(stack)?;
        query.validate()?;
        let request = LogsRequest {
            query: query.clone(),
            cursor: cursor.cloned(),
        };
        self.post("/logs", &request).await
    }

    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        self.check_stack(stack)?;
        let request = InstanceRequest {
            id: id.to_owned(),
            action,
        };
        self.post("/instance/describe", &request).await
    }

    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        _check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError> {
        self.check_stack(stack)?;
        let request = InstanceRequest {
            id: id.to_owned(),
            action,
        };
        self.post("/instance/act", &request).await
    }

    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError> {
        self.check_stack(stack)?;
        request.validate()?;
        let body = ShiftStart {
            request: request.clone(),
            check,
        };
        self.post("/shift/start", &body).await
    }

    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        self.check_stack(stack)?;
        let body = ShiftCancel {
            az: az.map(str::to_owned),
        };
        self.post("/shift/cancel", &body).await
    }
}

impl SandboxCloud {
    async fn destroy_now(&self, stack: &StackRef) -> Result<Vec<ProvisionEvent>, CloudError> {
        self.check_stack(stack)?;
        let spec = std::fs::read_to_string(self.dir.join(SPEC_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| SandboxSpec::from_json(&v).ok());
        let resources = spec.map(|s| s.resources()).unwrap_or_default();
        let total = u32::try_from(resources.len()).unwrap_or(u32::MAX);
        let started = OffsetDateTime::now_utc();
        let running = self.is_running().await;
        if !running && !self.dir.exists() {
            return Err(CloudError::not_found(format!("sandbox stack {stack}")));
        }
        if running {
            self.post::<_, ()>("/shutdown", &()).await?;
            let deadline = Instant::now() + STOP_LIMIT;
            while daemon_address(&self.dir).is_some() || live_daemon_pid(&self.dir).is_some() {
                if Instant::now() > deadline {
                    return Err(unavailable(format!(
                        "the sandbox daemon did not stop within {} s",
                        STOP_LIMIT.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            super::daemon::kill_stale(&self.dir);
        }
        super::daemon::remove_state(&self.dir)
            .map_err(|e| unavailable(format!("removing {}: {e}", self.dir.display())))?;
        let at = OffsetDateTime::now_utc();
        let mut events = vec![ProvisionEvent::Started {
            at: started,
            stack: stack.clone(),
            operation: StackOperation::Delete,
            total,
        }];
        for (index, (logical_id, resource_type)) in resources.iter().rev().enumerate() {
            events.push(ProvisionEvent::Resource(ResourceEvent {
                at,
                logical_id: logical_id.clone(),
                resource_type: resource_type.clone(),
                physical_id: None,
                status: ResourceStatus::DeleteComplete,
                reason: None,
                done: u32::try_from(index + 1).unwrap_or(u32::MAX),
                total,
            }));
        }
        events.push(ProvisionEvent::Finished {
            at,
            stack_status: StackStatus::DeleteComplete,
            outputs: Outputs::default(),
            summary: None,
        });
        Ok(events)
    }
}
