//! The sandbox's load balancer: an HTTP/1.1 reverse proxy with Application Load Balancer
//! semantics, on one listen address.
//!
//! Targets (an id, an AZ, an address) are registered and deregistered at runtime. Each is
//! health-checked on its own schedule (`GET path`, interval, timeout, healthy and unhealthy
//! thresholds, success codes) and reported with ALB's states and reason codes: `initial`
//! (`Elb.RegistrationInProgress`, then `Elb.InitialHealthChecking`) → `healthy` /
//! `unhealthy` (`Target.Timeout`, `Target.ResponseCodeMismatch`, `Target.FailedHealthChecks`),
//! `draining` (`Target.DeregistrationInProgress`) and `unused` (`Target.NotRegistered`,
//! `Target.NotInUse`). Requests go round robin over the healthy targets of every enabled AZ
//! (cross-zone); when no target is healthy the balancer fails open and uses every registered
//! target; with none it answers 503. A target that refuses or breaks the connection yields
//! 502, one that does not answer in time 504 — both counted as the balancer's own 5xx, apart
//! from the target's 5xx. A deregistered target gets no new request; it drains until its
//! in-flight requests finish or the deregistration delay ends. Targets in an AZ with an active
//! zonal shift get no new request either (open ones finish; health checks go on), and the
//! `slow-az` fault delays every request to an AZ's targets, not their health checks, so the
//! failure stays gray (see [`LoadBalancer::slow_az`], [`LoadBalancer::set_shifted`]). Per-AZ metrics (requests, target
//! 5xx, balancer 5xx, latency p50/p99) are kept in per-second buckets.
//!
//! Built on hyper 1 and hyper-util (server connections, and the pooled legacy client towards
//! targets) rather than a proxy framework: the balancer's value is in choosing the target per
//! request, tracking in-flight requests per target and classifying failures, which a framework
//! such as pingora would take over together with its own runtime and server lifecycle, while
//! the small reverse-proxy crates on hyper 1 add little over the client call made here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::target::TargetHealth as Machine;
use crate::model::{CheckResult, routable};
use crate::port::{Clock, SystemClock};

/// Errors of the load balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A configuration field is invalid.
    #[error("invalid load balancer configuration: {field}: {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("binding the load balancer to {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub use crate::model::HealthCheck;

/// How the load balancer behaves.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Where it listens (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The health check of its one target group.
    pub health_check: HealthCheck,
    /// How long a deregistered target drains at most (`deregistration_delay.timeout_seconds`,
    /// default 300 s).
    pub deregistration_delay: Duration,
    /// How long a target may take to answer a request before the balancer answers 504.
    pub request_timeout: Duration,
    /// The enabled AZs; a target elsewhere is `unused` (`Target.NotInUse`). `None` enables
    /// every AZ.
    pub enabled_azs: Option<Vec<String>>,
    /// How many seconds of metrics are kept.
    pub metrics_retention: Duration,
    /// The clock draining is timed by.
    pub clock: Arc<dyn Clock>,
}

impl LbConfig {
    /// ALB's defaults on `listen`.
    pub fn new(listen: SocketAddr) -> LbConfig {
        LbConfig {
            listen,
            health_check: HealthCheck::default(),
            deregistration_delay: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            enabled_azs: None,
            metrics_retention: Duration::from_secs(900),
            clock: Arc::new(SystemClock),
        }
    }

    fn validate(&self) -> Result<(), LbError> {
        let bad = |field, reason: &str| {
            Err(LbError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        let hc = &self.health_check;
        if !hc.path.starts_with('/') {
            return bad("health_check.path", "must start with /");
        }
        if hc.interval.is_zero() {
            return bad("health_check.interval", "must be positive");
        }
        if hc.timeout.is_zero() || hc.timeout >= hc.interval {
            return bad(
                "health_check.timeout",
                "must be positive and less than the interval",
            );
        }
        if !(1..=10).contains(&hc.healthy_threshold) {
            return bad("health_check.healthy_threshold", "must be between 1 and 10");
        }
        if !(1..=10).contains(&hc.unhealthy_threshold) {
            return bad(
                "health_check.unhealthy_threshold",
                "must be between 1 and 10",
            );
        }
        if hc.success_codes.is_empty() {
            return bad("health_check.success_codes", "must not be empty");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        Ok(())
    }
}

/// A target to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Its id (an instance id).
    pub id: String,
    /// Its Availability Zone.
    pub az: String,
    /// Where it serves HTTP.
    pub address: SocketAddr,
}

pub use crate::port::{TargetReason, TargetState};

/// One target's health (`DescribeTargetHealth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// The target.
    pub target: Target,
    /// Its state.
    pub state: TargetState,
    /// Why, when not healthy.
    pub reason: Option<TargetReason>,
    /// AWS's description of the reason (with the status code for a mismatch).
    pub description: Option<String>,
    /// Requests being served by it now.
    pub in_flight: usize,
    /// Requests sent to it since it was registered (ALB's `RequestCountPerTarget`, summed).
    #[serde(default)]
    pub requests: u64,
}

/// One second of one AZ's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Unix time of the second.
    pub second: i64,
    /// Requests answered (`RequestCount`).
    pub requests: u64,
    /// 5xx answered by targets (`HTTPCode_Target_5XX_Count`).
    pub target_5xx: u64,
    /// 5xx made by the balancer (`HTTPCode_ELB_5XX_Count`: 502, 503, 504).
    pub elb_5xx: u64,
    /// Median target response time in milliseconds, if any request reached a target.
    pub p50_ms: Option<f64>,
    /// 99th percentile target response time in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// 5xx answered by targets.
    pub target_5xx: u64,
    /// 5xx made by the balancer.
    pub elb_5xx: u64,
}

/// The balancer's metrics: per AZ (of the target that served), and for requests no target
/// could take (`unrouted`, all 503).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbMetrics {
    /// Per-second points per AZ, oldest first.
    pub per_az: BTreeMap<String, Vec<MetricPoint>>,
    /// Totals per AZ.
    pub totals: BTreeMap<String, Totals>,
    /// Per-second points of requests with no target.
    pub unrouted: Vec<MetricPoint>,
    /// Totals of requests with no target.
    pub unrouted_totals: Totals,
    /// Healthy targets per AZ now (`HealthyHostCount`).
    pub healthy_hosts: BTreeMap<String, usize>,
}

/// Latency samples kept per bucket at most.
const SAMPLES_PER_BUCKET: usize = 10_000;

#[derive(Debug, Default)]
struct Bucket {
    second: i64,
    requests: u64,
    target_5xx: u64,
    elb_5xx: u64,
    latencies_ms: Vec<f64>,
}

impl Bucket {
    fn point(&self) -> MetricPoint {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| -> Option<f64> {
            if sorted.is_empty() {
                return None;
            }
            let rank = (q * sorted.len() as f64).ceil() as usize;
            sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
        };
        MetricPoint {
            second: self.second,
            requests: self.requests,
            target_5xx: self.target_5xx,
            elb_5xx: self.elb_5xx,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    buckets: VecDeque<Bucket>,
    totals: Totals,
}

impl Series {
    fn record(&mut self, second: i64, retention: i64, outcome: &Outcome) {
        if self.buckets.back().is_none_or(|b| b.second != second) {
            self.buckets.push_back(Bucket {
                second,
                ..Bucket::default()
            });
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| b.second <= second - retention)
        {
            self.buckets.pop_front();
        }
        let Some(bucket) = self.buckets.back_mut() else {
            return;
        };
        bucket.requests += 1;
        self.totals.requests += 1;
        match outcome {
            Outcome::Target { status, latency } => {
                if *status >= 500 {
                    bucket.target_5xx += 1;
                    self.totals.target_5xx += 1;
                }
                if bucket.latencies_ms.len() < SAMPLES_PER_BUCKET {
                    bucket.latencies_ms.push(latency.as_secs_f64() * 1000.0);
                }
            }
            Outcome::Balancer => {
                bucket.elb_5xx += 1;
                self.totals.elb_5xx += 1;
            }
        }
    }

    fn points(&self) -> Vec<MetricPoint> {
        self.buckets.iter().map(Bucket::point).collect()
    }
}

enum Outcome {
    Target { status: u16, latency: Duration },
    Balancer,
}

#[derive(Debug, Default)]
struct Metrics {
    per_az: BTreeMap<String, Series>,
    unrouted: Series,
}

struct Entry {
    target: Target,
    health: Machine,
    in_flight: Arc<AtomicUsize>,
    /// Requests routed to it since it was registered.
    routed: Arc<AtomicU64>,
    checker: Option<JoinHandle<()>>,
}

impl Entry {
    fn health(&self) -> TargetHealth {
        TargetHealth {
            target: self.target.clone(),
            state: self.health.state,
            reason: self.health.reason,
            description: self.health.description.clone(),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            requests: self.routed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(checker) = &self.checker {
            checker.abort();
        }
    }
}

struct Shared {
    config: LbConfig,
    targets: Mutex<Vec<Entry>>,
    /// Latency added to every request sent to a target in these AZs (the `slow-az` fault).
    slowed: Mutex<BTreeMap<String, Duration>>,
    /// AZs with an active zonal shift: their targets get no new request.
    shifted: Mutex<BTreeSet<String>>,
    metrics: Mutex<Metrics>,
    next: AtomicUsize,
    client: Client<HttpConnector, Incoming>,
    checker: Client<HttpConnector, Empty<Bytes>>,
}

impl Shared {
    fn targets(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shifted(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.shifted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slowed(&self) -> MutexGuard<'_, BTreeMap<String, Duration>> {
        self.slowed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn az_enabled(&self, az: &str) -> bool {
        self.config
            .enabled_azs
            .as_ref()
            .is_none_or(|azs| azs.iter().any(|a| a == az))
    }

    fn record(&self, az: Option<&str>, outcome: Outcome) {
        let second = OffsetDateTime::now_utc().unix_timestamp();
        let retention = i64::try_from(self.config.metrics_retention.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut metrics = self.metrics();
        let series = match az {
            Some(az) => metrics.per_az.entry(az.to_owned()).or_default(),
            None => &mut metrics.unrouted,
        };
        series.record(second, retention, &outcome);
    }

    /// The next target round robin: healthy ones, or (fail-open) every registered one, outside
    /// the AZs shifted away from.
    fn pick(&self) -> Option<(Target, Arc<AtomicUsize>)> {
        let shifted = self.shifted().clone();
        let targets = self.targets();
        let pool = routable(
            &targets,
            |e| e.health.state,
            |e| shifted.contains(&e.target.az),
        );
        if pool.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = pool[n % pool.len()];
        chosen.in_flight.fetch_add(1, Ordering::SeqCst);
        chosen.routed.fetch_add(1, Ordering::Relaxed);
        Some((chosen.target.clone(), chosen.in_flight.clone()))
    }

    /// Removes draining targets whose requests have finished or whose delay is over.
    fn finish_draining(&self) {
        let now = self.config.clock.now();
        self.targets().retain(|e| {
            e.health.state != TargetState::Draining
                || !e.health.drained(now, e.in_flight.load(Ordering::SeqCst))
        });
    }

    fn health_result(&self, id: &str, result: CheckResult) {
        let mut targets = self.targets();
        if let Some(entry) = targets.iter_mut().find(|e| e.target.id == id) {
            entry.health.record(&self.config.health_check, result);
        }
    }
}

/// Holds a target's in-flight count up while a request to it is being answered.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A target's response body that keeps the request in flight until it has been sent.
struct Streamed {
    inner: Incoming,
    _in_flight: InFlight,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    response
}

async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some((target, in_flight)) = shared.pick() else {
        shared.record(None, Outcome::Balancer);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable\n",
        );
    };
    let guard = InFlight(in_flight);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = match Uri::try_from(format!("http://{}{path}", target.address)) {
        Ok(uri) => uri,
        Err(_) => {
            shared.record(Some(&target.az), Outcome::Balancer);
            return text(StatusCode::BAD_REQUEST, "400 Bad Request\n");
        }
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    if !headers.contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(&shared.config.listen.to_string())
    {
        headers.insert(HOST, host);
    }
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(port) = HeaderValue::from_str(&shared.config.listen.port().to_string()) {
        headers.insert("x-forwarded-port", port);
    }

    let started = Instant::now();
    // The slow-az fault: the request waits on its way to the target, as it would on a slow
    // network path; health checks take another path and are not delayed. The wait counts
    // toward the target's response time and the request timeout, as on ALB. Real time: a
    // clock that compresses the model's durations does not divide it.
    let delay = shared.slowed().get(&target.az).copied();
    let forwarded = async {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        shared.client.request(request).await
    };
    match tokio::time::timeout(shared.config.request_timeout, forwarded).await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            shared.record(
                Some(&target.az),
                Outcome::Target {
                    status,
                    latency: started.elapsed(),
                },
            );
            response.map(|inner| {
                Streamed {
                    inner,
                    _in_flight: guard,
                }
                .boxed()
            })
        }
        Ok(Err(_)) => {
            shared.record(Some(&target.az), Outcome::Balancer);
            text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
        }
        Err(_) => {
            shared.record(Some(&target.az), Outcome::Balancer);
            text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n")
        }
    }
}

async fn check_once(shared: &Shared, target: &Target) -> CheckResult {
    match check_request(shared, target).await {
        Ok(()) => CheckResult::Pass,
        Err((reason, detail)) => CheckResult::Fail { reason, detail },
    }
}

async fn check_request(
    shared: &Shared,
    target: &Target,
) -> Result<(), (TargetReason, Option<String>)> {
    let hc = &shared.config.health_check;
    let uri = Uri::try_from(format!("http://{}{}", target.address, hc.path))
        .map_err(|e| (TargetReason::FailedHealthChecks, Some(e.to_string())))?;
    let mut request = Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        hyper::header::USER_AGENT,
        HeaderValue::from_static("ELB-HealthChecker/2.0"),
    );
    let work = async {
        let response = shared
            .checker
            .request(request)
            .await
            .map_err(|_| (TargetReason::FailedHealthChecks, None))?;
        let status = response.status().as_u16();
        // Read the body so the check completes as a whole.
        let _ = response.into_body().collect().await;
        if hc.success_codes.contains(&status) {
            Ok(())
        } else {
            Err((TargetReason::ResponseCodeMismatch, Some(status.to_string())))
        }
    };
    match tokio::time::timeout(hc.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err((TargetReason::Timeout, None)),
    }
}

async fn check_target(shared: Arc<Shared>, target: Target) {
    let mut ticks = tokio::time::interval(shared.config.health_check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = check_once(&shared, &target).await;
        shared.health_result(&target.id, result);
    }
}

/// A running load balancer.
pub struct LoadBalancer {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl LoadBalancer {
    /// Binds the listen address and starts serving (with no target: every request gets 503).
    pub async fn start(config: LbConfig) -> Result<LoadBalancer, LbError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| LbError::Bind {
                address: config.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| LbError::Bind {
            address: config.listen,
            source,
        })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(
            config.health_check.timeout.max(Duration::from_secs(1)),
        ));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let checker = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let mut config = config;
        config.listen = address;
        let shared = Arc::new(Shared {
            config,
            targets: Mutex::new(Vec::new()),
            slowed: Mutex::new(BTreeMap::new()),
            shifted: Mutex::new(BTreeSet::new()),
            metrics: Mutex::new(Metrics::default()),
            next: AtomicUsize::new(0),
            client,
            checker,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, shared.clone(), shutdown_rx));
        let reaper_shared = shared.clone();
        let reaper = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(50));
            loop {
                ticks.tick().await;
                reaper_shared.finish_draining();
            }
        });
        Ok(LoadBalancer {
            shared,
            address,
            shutdown,
            tasks: vec![server, reaper],
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Registers a target (`RegisterTargets`): it starts `initial` and is health-checked.
    /// Registering a registered id again restarts it from `initial` at the new address.
    pub fn register(&self, target: Target) {
        let enabled = self.shared.az_enabled(&target.az);
        let checker =
            enabled.then(|| tokio::spawn(check_target(self.shared.clone(), target.clone())));
        let entry = Entry {
            target,
            health: Machine::registered(enabled),
            in_flight: Arc::new(AtomicUsize::new(0)),
            routed: Arc::new(AtomicU64::new(0)),
            checker,
        };
        let mut targets = self.shared.targets();
        targets.retain(|e| e.target.id != entry.target.id);
        targets.push(entry);
    }

    /// Deregisters a target (`DeregisterTargets`): it gets no new request and drains; returns
    /// false if it was not registered.
    pub fn deregister(&self, id: &str) -> bool {
        let delay = self.shared.config.deregistration_delay;
        let mut targets = self.shared.targets();
        let now = self.shared.config.clock.now();
        let Some(entry) = targets
            .iter_mut()
            .find(|e| e.target.id == id && e.health.state != TargetState::Draining)
        else {
            return false;
        };
        if let Some(checker) = entry.checker.take() {
            checker.abort();
        }
        entry.health.deregister(now, delay);
        drop(targets);
        self.shared.finish_draining();
        true
    }

    /// Adds `latency` to every request sent to a target in `az` from now on (`None` removes
    /// it); requests under way are not affected, health checks never are.
    pub fn slow_az(&self, az: &str, latency: Option<Duration>) {
        let mut slowed = self.shared.slowed();
        match latency {
            Some(latency) => slowed.insert(az.to_owned(), latency),
            None => slowed.remove(az),
        };
    }

    /// The latency added to requests to each slowed AZ.
    pub fn slowed_azs(&self) -> BTreeMap<String, Duration> {
        self.shared.slowed().clone()
    }

    /// Sets the AZs with an active zonal shift: their targets get no new request from now on
    /// (requests under way finish); health checks go on.
    pub fn set_shifted(&self, azs: BTreeSet<String>) {
        *self.shared.shifted() = azs;
    }

    /// The AZs with an active zonal shift.
    pub fn shifted_azs(&self) -> BTreeSet<String> {
        self.shared.shifted().clone()
    }

    /// Every registered or draining target's health (`DescribeTargetHealth`).
    pub fn target_health(&self) -> Vec<TargetHealth> {
        self.shared.targets().iter().map(Entry::health).collect()
    }

    /// One target's health; an unknown id is `unused` with `Target.NotRegistered`.
    pub fn target_health_of(&self, id: &str) -> TargetHealth {
        self.shared
            .targets()
            .iter()
            .find(|e| e.target.id == id)
            .map(Entry::health)
            .unwrap_or_else(|| {
                let unknown = Machine::not_registered();
                TargetHealth {
                    target: Target {
                        id: id.to_owned(),
                        az: String::new(),
                        address: SocketAddr::from(([0, 0, 0, 0], 0)),
                    },
                    state: unknown.state,
                    reason: unknown.reason,
                    description: unknown.description,
                    in_flight: 0,
                    requests: 0,
                }
            })
    }

    /// Requests routed to target `id` since it was registered (0 for an unknown id): what
    /// `RequestCountPerTarget` counts.
    pub fn requests_to(&self, id: &str) -> u64 {
        self.shared
            .targets()
            .iter()
            .find(|e| e.target.id == id)
            .map_or(0, |e| e.routed.load(Ordering::Relaxed))
    }

    /// Metrics so far.
    pub fn metrics(&self) -> LbMetrics {
        let mut healthy_hosts: BTreeMap<String, usize> = BTreeMap::new();
        for entry in self.shared.targets().iter() {
            let count = healthy_hosts.entry(entry.target.az.clone()).or_default();
            if entry.health.state == TargetState::Healthy {
                *count += 1;
            }
        }
        let metrics = self.shared.metrics();
        LbMetrics {
            per_az: metrics
                .per_az
                .iter()
                .map(|(az, s)| (az.clone(), s.points()))
                .collect(),
            totals: metrics
                .per_az
                .iter()
                .map(|(az, s)| (az.clone(), s.totals))
                .collect(),
            unrouted: metrics.unrouted.points(),
            unrouted_totals: metrics.unrouted.totals,
            healthy_hosts,
        }
    }

    /// Stops listening, closes client connections and stops health checks.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.shared.targets().clear();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    loop {
        let Ok((stream, client)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, client, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}
