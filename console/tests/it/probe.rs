//! The GameDay probe against a real HTTP listener: it records who served each request, and
//! counts refused connections as failures once the listener is gone. And the check of
//! acknowledged signups after a drill: found, lost or unknown, several looked up at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use triad::drill::engine::check_signups;
use triad::drill::probe::{AckedSignup, FailureKind, Probe, ProbeConfig};

/// A minimal HTTP/1.1 server: `answer` gets each request's head (lower-cased) and returns the
/// whole response, or `None` to close the connection without one. Connections live in a
/// JoinSet owned by this task, so aborting it closes them all.
pub(crate) async fn serve<F, A>(listener: TcpListener, answer: A)
where
    A: Fn(String) -> F + Clone + Send + 'static,
    F: Future<Output = Option<String>> + Send,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let answer = answer.clone();
        connections.spawn(async move {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            loop {
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
                while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                    seen.drain(..end + 4);
                    let Some(response) = answer(head).await else {
                        return;
                    };
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// Answers every request like the webapp's `/version`.
pub(crate) async fn serve_version(listener: TcpListener) {
    serve(listener, |_| async {
        let body = r#"{"version":"v7","instance":"i-1","az":"az-b"}"#;
        Some(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
}

fn poll_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_who_served_and_refused_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve_version(listener));
    let mut probe = Probe::start(ProbeConfig {
        base_url: format!("http://{addr}"),
        rate: 50,
        timeout: Duration::from_millis(500),
        signup_rate: 0,
    })
    .expect("start probe");

    let served = tokio::task::block_in_place(|| {
        poll_until(Duration::from_secs(20), || {
            probe
                .all_seconds()
                .iter()
                .map(|s| s.served_by.get("v7@az-b").copied().unwrap_or(0))
                .sum::<u32>()
                >= 20
        })
    });
    assert!(
        served,
        "20 answers from v7@az-b recorded: {:?}",
        probe.all_seconds()
    );

    server.abort();
    let _ = server.await;
    let refused = tokio::task::block_in_place(|| {
        poll_until(Duration::from_secs(20), || {
            probe
                .all_seconds()
                .iter()
                .map(|s| s.failed.get(&FailureKind::Connect).copied().unwrap_or(0))
                .sum::<u32>()
                >= 5
        })
    });
    probe.halt().await;
    assert!(
        refused,
        "refused connections counted: {:?}",
        probe.all_seconds()
    );
    let latency = probe.latency_between(0, u64::MAX);
    assert!(latency.samples >= 20);
    assert!(latency.p50_ms.is_some() && latency.p99_ms >= latency.p50_ms);
}

/// Answers `GET /v1/user/self` by the request's Authorization header: `answers` maps a header
/// value to a status; an unknown header gets its connection closed without an answer. The
/// first answer waits until two requests are in flight at once (so lookups made one at a time
/// never get it and time out as unknown).
async fn serve_self(listener: TcpListener, answers: Vec<(String, u16)>) {
    let answers = Arc::new(answers);
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Becomes true, for good, once two requests have been in flight at once.
    let overlap = Arc::new(tokio::sync::watch::channel(false).0);
    serve(listener, move |head| {
        let (answers, in_flight, overlap) = (answers.clone(), in_flight.clone(), overlap.clone());
        async move {
            if in_flight.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
                overlap.send_replace(true);
            }
            let overlapped = overlap.subscribe().wait_for(|seen| *seen).await.is_ok();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let status = answers
                .iter()
                .find(|(auth, _)| head.contains(&format!("authorization: {auth}")))
                .map(|(_, status)| *status)
                .filter(|_| overlapped)?;
            Some(format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n"))
        }
    })
    .await;
}

#[tokio::test]
async fn acknowledged_signups_are_found_lost_or_unknown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let signup = |email: String| AckedSignup {
        email,
        password: "pw-1234567".into(),
        second: 3,
    };
    // The header reqwest sends for a signup's credentials, lower-cased as the server reads it.
    let authorization = |s: &AckedSignup| {
        let request = reqwest::Client::new()
            .get(&url)
            .basic_auth(&s.email, Some(&s.password))
            .build()
            .expect("a request");
        request.headers()["authorization"]
            .to_str()
            .expect("ASCII")
            .to_lowercase()
    };
    let mut acked: Vec<AckedSignup> = (0..8)
        .map(|i| signup(format!("ok-{i}@x.invalid")))
        .collect();
    acked.push(signup("pending@x.invalid".into()));
    acked.push(signup("lost@x.invalid".into()));
    acked.push(signup("gone@x.invalid".into()));
    let answers = acked
        .iter()
        .filter(|s| s.email != "gone@x.invalid")
        .map(|s| {
            let status = match s.email.as_str() {
                "pending@x.invalid" => 403,
                "lost@x.invalid" => 401,
                _ => 200,
            };
            (authorization(s), status)
        })
        .collect();
    let server = tokio::spawn(serve_self(listener, answers));

    let check = check_signups(acked, &url).await;
    server.abort();
    assert_eq!(check.acknowledged, 11);
    assert_eq!(check.found, 9, "200 and 403 are found: {check:?}");
    assert_eq!(check.lost, ["lost@x.invalid"], "{check:?}");
    assert_eq!(check.unknown, 1, "no answer is unknown: {check:?}");
}
