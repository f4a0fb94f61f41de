//! Gentle traffic (`[sandbox] traffic = "gentle"`): the daemon sends its own stack a little
//! load through the load balancer, so that a demo stack's dashboard moves — a read every
//! second (`GET /version`, two per [`TICK`]) and a signup (`POST /v1/user`, which hashes a
//! password and sends a verification mail through the side channel) every
//! [`SIGNUP_EVERY`] ticks. Requests go one after the other, each bounded by
//! [`REQUEST_TIMEOUT`], so the source never piles up behind a stack that does not answer.
//!
//! It stays out of the events log's budget: one event when it starts, then one summary a
//! minute ("gentle traffic, last minute: 60 requests, 10 signups, 0 failed"), never one
//! event per request; the mailer's event for each of its signups' verification mails is left
//! out of snapshots too ([`is_own_event`]). Off by default, and in tests and benchmarks, which measure only what
//! they send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use time::OffsetDateTime;

use crate::port::{Event, EventSource};

/// How often the source sends.
pub const TICK: Duration = Duration::from_secs(2);
/// Reads per tick.
pub const READS_PER_TICK: u32 = 2;
/// A signup every this many ticks.
pub const SIGNUP_EVERY: u64 = 3;
/// The longest one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a summary goes to the events log.
pub const SUMMARY_EVERY: time::Duration = time::Duration::minutes(1);
/// How many summaries the daemon keeps for snapshots.
pub const SUMMARIES_KEPT: usize = 10;
/// The domain of the signups' addresses (`.invalid`: no mail can reach it).
pub const SIGNUP_DOMAIN: &str = "traffic.invalid";

/// Whether an event is about one of this traffic's signups (the mailer's "verification
/// e-mail sent to gentle-…@traffic.invalid"): the daemon leaves those out of snapshots, as
/// the minute summary counts the signups.
pub fn is_own_event(event: &Event) -> bool {
    event.message.contains(&format!("@{SIGNUP_DOMAIN}"))
}

/// What was sent since the last summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent (reads and signups).
    pub requests: u64,
    /// Signups the stack acknowledged (201).
    pub signups: u64,
    /// Requests answered with a 5xx, or not answered.
    pub failed: u64,
}

/// The gentle traffic source.
pub struct Gentle {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Makes this source's signup addresses unique across daemons and restarts.
    run: String,
    ticks: u64,
    counts: Counts,
    /// When the current summary period began (`None` before the first tick).
    since: Option<OffsetDateTime>,
}

impl Default for Gentle {
    fn default() -> Self {
        Self::new()
    }
}

impl Gentle {
    pub fn new() -> Gentle {
        Gentle {
            client: Client::builder(TokioExecutor::new()).build_http(),
            run: {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("{:x}", nanos ^ u128::from(std::process::id()))
            },
            ticks: 0,
            counts: Counts::default(),
            since: None,
        }
    }

    /// What was sent since the last summary.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// One tick at `now`: this tick's requests to the load balancer at `endpoint`, then the
    /// event to log, if one is due (the first tick's, then one a minute).
    pub async fn tick(&mut self, endpoint: SocketAddr, now: OffsetDateTime) -> Option<Event> {
        self.ticks += 1;
        for _ in 0..READS_PER_TICK {
            let ok = self.send(Method::GET, endpoint, "/version", None).await;
            self.record(ok, false);
        }
        if self.ticks % SIGNUP_EVERY == 1 {
            let n = self.ticks / SIGNUP_EVERY + 1;
            let body = serde_json::json!({
                "email": format!("gentle-{}-{n}@{SIGNUP_DOMAIN}", self.run),
                "password": format!("Gentle-{}-{n}-pw", self.run),
                "first_name": "Gentle",
                "last_name": "Traffic",
            });
            let ok = self
                .send(Method::POST, endpoint, "/v1/user", Some(body.to_string()))
                .await;
            self.record(ok, true);
        }
        self.summary(now)
    }

    fn record(&mut self, answer: Option<u16>, signup: bool) {
        self.counts.requests += 1;
        match answer {
            Some(status) if status < 500 => {
                if signup && status == 201 {
                    self.counts.signups += 1;
                }
            }
            _ => self.counts.failed += 1,
        }
    }

    /// The event due at `now`, if any; a summary starts a new period.
    fn summary(&mut self, now: OffsetDateTime) -> Option<Event> {
        let event = |message: String| Event {
            at: now,
            source: EventSource::LoadBalancer,
            az: None,
            message,
        };
        let Some(since) = self.since else {
            self.since = Some(now);
            return Some(event(format!(
                "gentle traffic on ([sandbox] traffic = \"gentle\"): {} reads every {} s and a \
                 signup every {} s, summed up here once a minute",
                READS_PER_TICK,
                TICK.as_secs(),
                TICK.as_secs() * SIGNUP_EVERY
            )));
        };
        if now - since < SUMMARY_EVERY {
            return None;
        }
        let Counts {
            requests,
            signups,
            failed,
        } = std::mem::take(&mut self.counts);
        self.since = Some(now);
        Some(event(format!(
            "gentle traffic, last minute: {requests} requests, {signups} signups, {failed} failed"
        )))
    }

    /// Sends one request; its status, or `None` when it got no answer in time.
    async fn send(
        &self,
        method: Method,
        endpoint: SocketAddr,
        path: &str,
        json: Option<String>,
    ) -> Option<u16> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{endpoint}{path}"))
            .header(hyper::header::USER_AGENT, "triad-sandbox-gentle-traffic");
        if json.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .ok()?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP server answering 201 to a POST and 200 to anything else, counting the
    /// requests it saw.
    async fn server() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let gets = Arc::new(AtomicU64::new(0));
        let posts = Arc::new(AtomicU64::new(0));
        let (g, p) = (gets.clone(), posts.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (g, p) = (g.clone(), p.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buffer[..n]);
                        let answer = if text.starts_with("POST /v1/user") {
                            p.fetch_add(1, Ordering::SeqCst);
                            "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
                        } else if text.starts_with("GET /version") {
                            g.fetch_add(1, Ordering::SeqCst);
                            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                        } else {
                            continue;
                        };
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, gets, posts)
    }

    #[tokio::test]
    async fn it_sends_reads_and_signups_and_sums_them_up_once_a_minute() {
        let (address, gets, posts) = server().await;
        let mut source = Gentle::new();
        let start = OffsetDateTime::UNIX_EPOCH;
        let first = source.tick(address, start).await.expect("the start event");
        assert!(first.message.starts_with("gentle traffic on"), "{first:?}");
        // A minute of ticks: no event until the minute is over.
        let mut events = Vec::new();
        for n in 1..=30u64 {
            let at = start + time::Duration::seconds(2 * n as i64);
            events.extend(source.tick(address, at).await);
        }
        assert_eq!(gets.load(Ordering::SeqCst), 31 * u64::from(READS_PER_TICK));
        assert_eq!(posts.load(Ordering::SeqCst), 31_u64.div_ceil(SIGNUP_EVERY));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0].message,
            format!(
                "gentle traffic, last minute: {} requests, {} signups, 0 failed",
                31 * u64::from(READS_PER_TICK) + 31_u64.div_ceil(SIGNUP_EVERY),
                31_u64.div_ceil(SIGNUP_EVERY)
            )
        );
        assert_eq!(source.counts(), Counts::default(), "a new period starts");
    }

    #[test]
    fn the_mailer_events_of_its_signups_are_its_own() {
        let event = |message: &str| Event {
            at: OffsetDateTime::UNIX_EPOCH,
            source: EventSource::Stack,
            az: None,
            message: message.into(),
        };
        assert!(is_own_event(&event(
            "verification e-mail sent to gentle-1a2b-3@traffic.invalid"
        )));
        assert!(!is_own_event(&event(
            "verification e-mail sent to probe-1a2b-3@drill.invalid"
        )));
    }

    #[tokio::test]
    async fn a_stack_that_does_not_answer_counts_as_failed() {
        // Nothing listens on this port once the listener is dropped.
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let mut source = Gentle::new();
        source.tick(address, OffsetDateTime::UNIX_EPOCH).await;
        let counts = source.counts();
        assert_eq!(counts.requests, u64::from(READS_PER_TICK) + 1);
        assert_eq!(counts.failed, counts.requests);
        assert_eq!(counts.signups, 0);
    }
}
