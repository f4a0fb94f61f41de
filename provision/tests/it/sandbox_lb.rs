//! The sandbox load balancer against small in-test HTTP backends (plain tokio listeners on
//! each AZ's loopback network): health checks and target states, round robin, fail-open,
//! 502/503, draining, and per-AZ metrics. Each test starts its own balancer and backends on
//! free ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use provision::sandbox::lb::{
    HealthCheck, LbConfig, LoadBalancer, Target, TargetHealth, TargetReason, TargetState,
};
use provision::sandbox::process::az_address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const LIMIT: Duration = Duration::from_secs(30);
/// The health status meaning "never answer the health check".
const HANG: u16 = 0;

/// A backend: `/healthz` answers with the settable status (or hangs), `/slow` waits for
/// `release`, `/drop` closes the connection without an answer, anything else answers 200
/// with the backend's id.
struct Backend {
    id: String,
    az: String,
    address: SocketAddr,
    health: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(id: &str, az_index: usize) -> Backend {
        let listener = TcpListener::bind(SocketAddr::from((az_address(az_index, 10), 0)))
            .await
            .expect("binding a backend");
        let address = listener.local_addr().expect("backend address");
        let health = Arc::new(AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let slow_started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (h, s, ss, r, name) = (
            health.clone(),
            served.clone(),
            slow_started.clone(),
            release.clone(),
            id.to_owned(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, s, ss, r, name) =
                    (h.clone(), s.clone(), ss.clone(), r.clone(), name.clone());
                tokio::spawn(async move { serve(stream, h, s, ss, r, name).await });
            }
        });
        Backend {
            id: id.to_owned(),
            az: format!("az-{}", (b'a' + az_index as u8) as char),
            address,
            health,
            served,
            slow_started,
            release,
            task,
        }
    }

    fn target(&self) -> Target {
        Target {
            id: self.id.clone(),
            az: self.az.clone(),
            address: self.address,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    health: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
    slow_started: Arc<AtomicUsize>,
    release: Arc<Notify>,
    id: String,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buffer);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = match path.as_str() {
        "/healthz" => match health.load(Ordering::SeqCst) {
            HANG => {
                std::future::pending::<()>().await;
                return;
            }
            code => (code, "health".to_owned()),
        },
        "/drop" => return,
        "/slow" => {
            let released = release.notified();
            slow_started.fetch_add(1, Ordering::SeqCst);
            released.await;
            served.fetch_add(1, Ordering::SeqCst);
            (200, id)
        }
        _ => {
            served.fetch_add(1, Ordering::SeqCst);
            (200, id)
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn config() -> LbConfig {
    let mut config = LbConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.health_check = HealthCheck {
        path: "/healthz".to_owned(),
        // Generous for a loaded machine: a healthy target must never time out here.
        interval: Duration::from_millis(250),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        success_codes: 200..=299,
    };
    config.deregistration_delay = Duration::from_secs(30);
    config
}

async fn start(config: LbConfig) -> LoadBalancer {
    LoadBalancer::start(config)
        .await
        .expect("starting the load balancer")
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn get(lb: &LoadBalancer, path: &str) -> (u16, String) {
    let uri = format!("http://{}{path}", lb.address())
        .parse()
        .expect("uri");
    let response = tokio::time::timeout(LIMIT, client().get(uri))
        .await
        .expect("the balancer answers")
        .expect("an HTTP response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn health_of(lb: &LoadBalancer, id: &str) -> TargetHealth {
    lb.target_health_of(id)
}

async fn wait_state(lb: &LoadBalancer, id: &str, state: TargetState) -> TargetHealth {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let health = health_of(lb, id);
        if health.state == state {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never became {state:?}: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_targets_become_healthy_and_serve_with_metrics() {
    let lb = start(config()).await;
    let a = Backend::start("i-a", 0).await;
    let b = Backend::start("i-b", 1).await;
    lb.register(a.target());
    lb.register(b.target());
    let first = health_of(&lb, "i-a");
    assert_eq!(first.state, TargetState::Initial);
    assert!(matches!(
        first.reason,
        Some(TargetReason::RegistrationInProgress | TargetReason::InitialHealthChecking)
    ));
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    wait_state(&lb, "i-b", TargetState::Healthy).await;
    assert_eq!(health_of(&lb, "i-a").reason, None);

    for _ in 0..10 {
        let (status, body) = get(&lb, "/").await;
        assert_eq!(status, 200);
        assert!(body == "i-a" || body == "i-b", "{body}");
    }
    let metrics = lb.metrics();
    let a_totals = metrics.totals["az-a"];
    let b_totals = metrics.totals["az-b"];
    assert_eq!(a_totals.requests + b_totals.requests, 10);
    assert_eq!(a_totals.requests, 5);
    assert_eq!(
        a_totals.elb_5xx + a_totals.target_5xx + b_totals.elb_5xx + b_totals.target_5xx,
        0
    );
    let points = &metrics.per_az["az-a"];
    assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 5);
    assert!(
        points
            .iter()
            .all(|p| p.p50_ms.is_some() && p.p99_ms >= p.p50_ms)
    );
    assert_eq!(metrics.healthy_hosts["az-a"], 1);
    assert_eq!(metrics.healthy_hosts["az-b"], 1);
    let json = serde_json::to_value(lb.target_health()).expect("serde");
    assert_eq!(json[0]["state"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly_across_azs() {
    let lb = start(config()).await;
    let backends = [
        Backend::start("i-1", 0).await,
        Backend::start("i-2", 1).await,
        Backend::start("i-3", 2).await,
    ];
    for backend in &backends {
        lb.register(backend.target());
    }
    for backend in &backends {
        wait_state(&lb, &backend.id, TargetState::Healthy).await;
    }
    let mut order = Vec::new();
    for _ in 0..30 {
        let (status, body) = get(&lb, "/").await;
        assert_eq!(status, 200);
        order.push(body);
    }
    for backend in &backends {
        assert_eq!(backend.served(), 10, "{}: {order:?}", backend.id);
    }
    // Strict rotation: no target serves twice in a row.
    assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_target_leaves_rotation_and_returns_when_it_recovers() {
    let lb = start(config()).await;
    let a = Backend::start("i-a", 0).await;
    let b = Backend::start("i-b", 1).await;
    lb.register(a.target());
    lb.register(b.target());
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    wait_state(&lb, "i-b", TargetState::Healthy).await;

    a.health.store(503, Ordering::SeqCst);
    let health = wait_state(&lb, "i-a", TargetState::Unhealthy).await;
    assert_eq!(health.reason, Some(TargetReason::ResponseCodeMismatch));
    assert!(
        health
            .description
            .as_deref()
            .is_some_and(|d| d.contains("503")),
        "{health:?}"
    );
    let before = a.served();
    for _ in 0..10 {
        assert_eq!(get(&lb, "/").await, (200, "i-b".to_owned()));
    }
    assert_eq!(a.served(), before, "an unhealthy target got requests");

    a.health.store(200, Ordering::SeqCst);
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&lb, "/").await.1);
    }
    assert!(
        bodies.contains(&"i-a".to_owned()) && bodies.contains(&"i-b".to_owned()),
        "{bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_failures_carry_aws_reason_codes() {
    let lb = start(config()).await;
    let hanging = Backend::start("i-hang", 0).await;
    hanging.health.store(HANG, Ordering::SeqCst);
    lb.register(hanging.target());
    let health = wait_state(&lb, "i-hang", TargetState::Unhealthy).await;
    assert_eq!(health.reason, Some(TargetReason::Timeout));

    let gone = Backend::start("i-gone", 1).await;
    let target = gone.target();
    drop(gone);
    lb.register(target);
    let health = wait_state(&lb, "i-gone", TargetState::Unhealthy).await;
    assert_eq!(health.reason, Some(TargetReason::FailedHealthChecks));

    let unknown = health_of(&lb, "i-unknown");
    assert_eq!(unknown.state, TargetState::Unused);
    assert_eq!(unknown.reason, Some(TargetReason::NotRegistered));
    let json = serde_json::to_value(&unknown).expect("serde");
    assert_eq!(json["reason"], "Target.NotRegistered");
    assert_eq!(json["state"], "unused");

    let mut config = config();
    config.enabled_azs = Some(vec!["az-a".to_owned()]);
    let zonal = start(config).await;
    let outside = Backend::start("i-c", 2).await;
    zonal.register(outside.target());
    let health = health_of(&zonal, "i-c");
    assert_eq!(
        (health.state, health.reason),
        (TargetState::Unused, Some(TargetReason::NotInUse))
    );
    assert_eq!(
        get(&zonal, "/").await.0,
        503,
        "a target in a disabled AZ served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registered_target_means_503() {
    let lb = start(config()).await;
    let (status, _) = get(&lb, "/").await;
    assert_eq!(status, 503);
    let metrics = lb.metrics();
    assert_eq!(metrics.unrouted_totals.elb_5xx, 1);
    assert_eq!(metrics.unrouted_totals.requests, 1);

    // Deregistering the last target (nothing in flight) ends its draining at once.
    let a = Backend::start("i-a", 0).await;
    lb.register(a.target());
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    assert_eq!(get(&lb, "/").await.0, 200);
    assert!(lb.deregister("i-a"));
    wait_state(&lb, "i-a", TargetState::Unused).await;
    assert_eq!(get(&lb, "/").await.0, 503);
    assert!(!lb.deregister("i-a"), "deregistering twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_when_every_target_is_unhealthy() {
    let lb = start(config()).await;
    let a = Backend::start("i-a", 0).await;
    let b = Backend::start("i-b", 1).await;
    a.health.store(500, Ordering::SeqCst);
    b.health.store(500, Ordering::SeqCst);
    lb.register(a.target());
    lb.register(b.target());
    wait_state(&lb, "i-a", TargetState::Unhealthy).await;
    wait_state(&lb, "i-b", TargetState::Unhealthy).await;
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let (status, body) = get(&lb, "/").await;
        assert_eq!(status, 200, "fail-open should still route");
        bodies.push(body);
    }
    assert_eq!(a.served(), 3);
    assert_eq!(b.served(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_refusing_target_means_502() {
    let lb = start(config()).await;
    let a = Backend::start("i-a", 0).await;
    lb.register(a.target());
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    let (status, _) = get(&lb, "/drop").await;
    assert_eq!(status, 502);
    let totals = lb.metrics().totals["az-a"];
    assert_eq!(
        (totals.requests, totals.elb_5xx, totals.target_5xx),
        (1, 1, 0)
    );

    // A target that refuses connections: unhealthy, but the balancer fails open onto it.
    let gone = Backend::start("i-gone", 1).await;
    let target = gone.target();
    drop(gone);
    let lb = start(config()).await;
    lb.register(target);
    wait_state(&lb, "i-gone", TargetState::Unhealthy).await;
    assert_eq!(get(&lb, "/").await.0, 502);
    assert_eq!(lb.metrics().totals["az-b"].elb_5xx, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_target_finishes_in_flight_requests_and_gets_no_new_ones() {
    let lb = Arc::new(start(config()).await);
    let a = Backend::start("i-a", 0).await;
    let b = Backend::start("i-b", 1).await;
    lb.register(a.target());
    lb.register(b.target());
    wait_state(&lb, "i-a", TargetState::Healthy).await;
    wait_state(&lb, "i-b", TargetState::Healthy).await;

    let slow = {
        let lb = lb.clone();
        tokio::spawn(async move { get(&lb, "/slow").await })
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    let (busy, idle) = loop {
        if a.slow_started.load(Ordering::SeqCst) == 1 {
            break (&a, &b);
        }
        if b.slow_started.load(Ordering::SeqCst) == 1 {
            break (&b, &a);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    assert!(lb.deregister(&busy.id));
    let health = health_of(&lb, &busy.id);
    assert_eq!(health.state, TargetState::Draining);
    assert_eq!(health.reason, Some(TargetReason::DeregistrationInProgress));
    assert_eq!(health.in_flight, 1);

    let busy_before = busy.served();
    for _ in 0..10 {
        assert_eq!(get(&lb, "/").await, (200, idle.id.clone()));
    }
    assert_eq!(
        busy.served(),
        busy_before,
        "a draining target got a new request"
    );
    assert_eq!(health_of(&lb, &busy.id).state, TargetState::Draining);

    busy.release.notify_one();
    let (status, body) = slow.await.expect("slow request task");
    assert_eq!((status, body), (200, busy.id.clone()));
    let health = wait_state(&lb, &busy.id, TargetState::Unused).await;
    assert_eq!(health.reason, Some(TargetReason::NotRegistered));
    assert_eq!(lb.target_health().len(), 1);
}
