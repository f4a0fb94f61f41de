//! The GameDay probe against a real HTTP listener: it records who served each request, and
//! counts refused connections as failures once the listener is gone.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use triad::drill::probe::{FailureKind, Probe, ProbeConfig};

/// A minimal HTTP/1.1 server answering every request like the webapp's `/version`.
/// Connections live in a JoinSet owned by this task, so aborting it closes them all.
async fn serve_version(listener: TcpListener) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
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
                    seen.drain(..end + 4);
                    let body = r#"{"version":"v7","instance":"i-1","az":"az-b"}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
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
