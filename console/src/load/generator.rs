//! The load generator: an open-loop request stream at a constant rate or a linear ramp,
//! recorded per second.
//!
//! Open loop: request *k* is due at the instant the schedule says ([`Schedule::due`]), whether
//! or not earlier requests have been answered, so a slow stack shows up as latency and errors,
//! never as a politely lower rate. Latency is measured from the moment a request was *due*, not
//! from when the client managed to send it, so a client that falls behind is counted against
//! the latency instead of hiding it (no "coordinated omission"). Requests are recorded in the
//! second they were due.
//!
//! Each second keeps: requests sent, answers by outcome ([`FailureKind`], the GameDay probe's
//! classification), an HDR histogram of the successful answers' latency (p50/p99 are exact
//! over any span: histograms merge), and who served them (`version@az` when the path answers
//! like `/version`). A cap on requests in flight protects the machine the load runs on: a
//! request due while the cap is reached is not sent and is counted as `dropped`, apart from
//! the stack's errors.
//!
//! Signups (`POST /v1/user`) can run beside the read load, at their own steady rate; their
//! addresses are SES mailbox-simulator addresses (`success+…@simulator.amazonses.com`), so on
//! AWS no real mail goes out and nothing bounces.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::drill::probe::{FailureKind, Latency, merged_latency, record_latency};

/// When each request is due: `from` requests per second at the start, rising (or falling)
/// linearly to `to` over `ramp`, then held at `to` until `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub from: f64,
    pub to: f64,
    pub ramp: Duration,
    pub duration: Duration,
}

impl Schedule {
    /// A constant rate.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Schedule {
            from: rate,
            to: rate,
            ramp: Duration::ZERO,
            duration,
        }
    }

    /// The schedule of `triad load`'s flags and the console's form: `rate` req/s, or a ramp
    /// from `rate` to `to` over `ramp` seconds, for `duration` seconds in all; or why they
    /// describe none.
    pub fn from_flags(
        rate: u32,
        to: Option<u32>,
        ramp: Option<u64>,
        duration: u64,
    ) -> Result<Schedule, String> {
        if duration == 0 {
            return Err("--duration must be at least 1 second".into());
        }
        let ramp = ramp.unwrap_or(0);
        if ramp > duration {
            return Err(format!(
                "--ramp {ramp} is longer than --duration {duration}"
            ));
        }
        let to = to.unwrap_or(rate);
        if rate == 0 && to == 0 {
            return Err("--rate (or --to) must be above 0".into());
        }
        Ok(Schedule {
            from: f64::from(rate),
            to: f64::from(to),
            ramp: Duration::from_secs(ramp),
            duration: Duration::from_secs(duration),
        })
    }

    /// The rate (requests per second) due at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        let ramp = self.ramp.as_secs_f64();
        if t >= ramp {
            self.to
        } else {
            self.from + (self.to - self.from) * t / ramp
        }
    }

    /// How many requests are due in the first `t` seconds (the integral of the rate).
    pub fn due_by(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration.as_secs_f64());
        let ramp = self.ramp.as_secs_f64();
        if ramp > 0.0 && t <= ramp {
            self.from * t + (self.to - self.from) * t * t / (2.0 * ramp)
        } else {
            self.from * ramp + (self.to - self.from) * ramp / 2.0 + self.to * (t - ramp)
        }
    }

    /// The highest rate the schedule asks for.
    pub fn peak(&self) -> f64 {
        self.from.max(self.to)
    }

    /// Every request the schedule sends.
    pub fn total(&self) -> u64 {
        // Request k is sent when due_by reaches k, k = 0, 1, …: there are ceil(due_by(end)).
        let n = self.due_by(self.duration.as_secs_f64());
        (n - EPSILON).ceil().max(0.0) as u64
    }

    /// When request `k` (from 0) is due, in seconds from the start; `None` past the end.
    pub fn due(&self, k: u64) -> Option<f64> {
        let k = k as f64;
        let ramp = self.ramp.as_secs_f64();
        let at_ramp_end = self.due_by(ramp);
        let t = if k == 0.0 {
            0.0
        } else if ramp > 0.0 && k <= at_ramp_end {
            // Solve from·t + c·t² = k with c = (to − from) / (2·ramp), in the form that stays
            // exact when c is 0 or negative: t = 2k / (from + sqrt(from² + 4ck)).
            let c = (self.to - self.from) / (2.0 * ramp);
            let disc = (self.from * self.from + 4.0 * c * k).max(0.0);
            let denominator = self.from + disc.sqrt();
            if denominator <= 0.0 {
                return None;
            }
            2.0 * k / denominator
        } else if self.to > 0.0 {
            ramp + (k - at_ramp_end) / self.to
        } else {
            return None;
        };
        (t < self.duration.as_secs_f64() - EPSILON).then_some(t)
    }
}

/// Slack for floating-point error in the schedule's arithmetic (a nanosecond).
const EPSILON: f64 = 1e-9;

/// The second a request due at `t` seconds is counted in.
pub fn second_of(t: f64) -> u64 {
    (t + EPSILON) as u64
}

/// One load, as the operator asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// The stack's endpoint, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// The path every read request asks for.
    pub path: String,
    pub schedule: Schedule,
    /// Signups per second beside the read load (0: none).
    pub signup_rate: u32,
    /// Give up on a request after this long.
    pub timeout: Duration,
    /// Requests in flight at most; a request due beyond it is dropped (and counted).
    pub max_in_flight: usize,
}

impl LoadConfig {
    /// A constant-rate load of `rate` req/s on `/version` for `duration`.
    pub fn new(base_url: impl Into<String>, rate: f64, duration: Duration) -> Self {
        LoadConfig {
            base_url: base_url.into(),
            path: "/version".into(),
            schedule: Schedule::constant(rate, duration),
            signup_rate: 0,
            timeout: Duration::from_secs(5),
            max_in_flight: 4096,
        }
    }

    fn url(&self, path: &str) -> String {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }
}

/// What the load saw during one second (requests are counted in the second they were due).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSecond {
    /// Seconds since the load started.
    pub second: u64,
    /// The schedule's rate at the middle of this second.
    pub target_rate: f64,
    /// Requests sent.
    pub sent: u32,
    /// Requests due but not sent: the client's in-flight cap was reached.
    pub dropped: u32,
    /// Answered with a 2xx.
    pub ok: u32,
    pub failed: BTreeMap<FailureKind, u32>,
    /// Latency of the successful answers, from when each was due.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Successful answers by `version@az`, when the answer says who served it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub served_by: BTreeMap<String, u32>,
    /// Signups acknowledged (201) and refused or failed.
    #[serde(default)]
    pub signups_ok: u32,
    #[serde(default)]
    pub signups_failed: u32,
}

impl LoadSecond {
    pub fn failures(&self) -> u32 {
        self.failed.values().sum()
    }

    /// Requests answered or failed (not the ones still in flight).
    pub fn completed(&self) -> u32 {
        self.ok + self.failures()
    }
}

/// The figures a live view shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStats {
    pub elapsed: Duration,
    /// What the schedule asks for now.
    pub target_rate: f64,
    /// Requests completed in the last complete second.
    pub rate: u32,
    /// p50/p99 over the last five complete seconds.
    pub latency: Latency,
    pub sent: u64,
    pub ok: u64,
    pub dropped: u64,
    pub failed: BTreeMap<FailureKind, u64>,
    pub in_flight: usize,
    /// Whether every due request has been sent (answers may still be in flight).
    pub finished_sending: bool,
}

#[derive(Default)]
struct Bucket {
    sent: u32,
    dropped: u32,
    ok: u32,
    failed: BTreeMap<FailureKind, u32>,
    latency_us: Option<Histogram<u64>>,
    served_by: BTreeMap<String, u32>,
    signups_ok: u32,
    signups_failed: u32,
}

impl Bucket {
    fn record_latency(&mut self, latency: Duration) {
        record_latency(&mut self.latency_us, latency);
    }

    fn to_second(&self, second: u64, schedule: &Schedule) -> LoadSecond {
        let pct = |q: f64| {
            self.latency_us
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        LoadSecond {
            second,
            target_rate: schedule.rate_at(second as f64 + 0.5),
            sent: self.sent,
            dropped: self.dropped,
            ok: self.ok,
            failed: self.failed.clone(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            served_by: self.served_by.clone(),
            signups_ok: self.signups_ok,
            signups_failed: self.signups_failed,
        }
    }
}

#[derive(Default)]
struct Record {
    buckets: BTreeMap<u64, Bucket>,
    finished_sending: bool,
}

/// A running load; [`LoadGen::halt`] stops it early, [`LoadGen::finish`] waits for its end.
pub struct LoadGen {
    started: Instant,
    schedule: Schedule,
    record: Arc<Mutex<Record>>,
    in_flight: Arc<AtomicUsize>,
    sender: Option<JoinHandle<()>>,
    signups: Option<JoinHandle<()>>,
    /// Every request task, so halting aborts them all.
    requests: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

#[derive(Deserialize)]
struct ServedBy {
    version: String,
    #[serde(default)]
    az: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How an answer counts: `Ok(served_by)` for a 2xx, else its failure kind.
async fn classify(
    outcome: Result<reqwest::Response, reqwest::Error>,
) -> Result<String, FailureKind> {
    match outcome {
        Ok(resp) if resp.status().is_success() => Ok(resp
            .json::<ServedBy>()
            .await
            .map(|b| format!("{}@{}", b.version, b.az))
            .unwrap_or_default()),
        Ok(resp) if resp.status().is_server_error() => Err(FailureKind::Status5xx),
        Ok(_) => Err(FailureKind::OtherStatus),
        Err(e) if e.is_timeout() => Err(FailureKind::Timeout),
        Err(_) => Err(FailureKind::Connect),
    }
}

impl LoadGen {
    /// Starts sending at once.
    pub fn start(config: LoadConfig) -> Result<LoadGen, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        let started = Instant::now();
        let record = Arc::new(Mutex::new(Record::default()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let sender = tokio::spawn(send_loop(
            client.clone(),
            config.clone(),
            started,
            record.clone(),
            in_flight.clone(),
            requests.clone(),
        ));
        let signups = (config.signup_rate > 0).then(|| {
            tokio::spawn(signup_loop(
                client,
                config.clone(),
                started,
                record.clone(),
                requests.clone(),
            ))
        });
        Ok(LoadGen {
            started,
            schedule: config.schedule,
            record,
            in_flight,
            sender: Some(sender),
            signups,
            requests,
        })
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether every due request has been sent.
    pub fn finished_sending(&self) -> bool {
        lock(&self.record).finished_sending
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Each complete second so far (the current, partial one left out), up to the schedule's
    /// end.
    pub fn seconds(&self) -> Vec<LoadSecond> {
        let now = self.started.elapsed().as_secs();
        let end = self.schedule.duration.as_secs_f64().ceil() as u64;
        self.seconds_in(0..now.min(end))
    }

    /// Every second of the schedule, recorded so far (for the report, once it is finished).
    pub fn all_seconds(&self) -> Vec<LoadSecond> {
        let end = self.schedule.duration.as_secs_f64().ceil() as u64;
        self.seconds_in(0..end)
    }

    fn seconds_in(&self, range: std::ops::Range<u64>) -> Vec<LoadSecond> {
        let record = lock(&self.record);
        range
            .map(|s| match record.buckets.get(&s) {
                Some(b) => b.to_second(s, &self.schedule),
                None => Bucket::default().to_second(s, &self.schedule),
            })
            .collect()
    }

    /// p50 and p99 over the seconds `from..to`, exact (histograms merged).
    pub fn latency_between(&self, from: u64, to: u64) -> Latency {
        let record = lock(&self.record);
        merged_latency(
            record
                .buckets
                .range(from..to)
                .filter_map(|(_, b)| b.latency_us.as_ref()),
        )
    }

    /// The live figures: rate over the last complete second, p50/p99 over the last five,
    /// totals so far.
    pub fn live(&self) -> LiveStats {
        let elapsed = self.started.elapsed();
        let now = elapsed.as_secs();
        let mut stats = LiveStats {
            elapsed,
            target_rate: if elapsed < self.schedule.duration {
                self.schedule.rate_at(elapsed.as_secs_f64())
            } else {
                0.0
            },
            latency: self.latency_between(now.saturating_sub(5), now),
            in_flight: self.in_flight(),
            ..LiveStats::default()
        };
        let record = lock(&self.record);
        stats.finished_sending = record.finished_sending;
        for (second, b) in &record.buckets {
            stats.sent += u64::from(b.sent);
            stats.ok += u64::from(b.ok);
            stats.dropped += u64::from(b.dropped);
            for (kind, n) in &b.failed {
                *stats.failed.entry(*kind).or_default() += u64::from(*n);
            }
            if *second + 1 == now {
                stats.rate = b.ok + b.failed.values().sum::<u32>();
            }
        }
        stats
    }

    /// Waits until every due request has been sent and answered (or has timed out).
    pub async fn finish(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
        if let Some(signups) = self.signups.take() {
            signups.abort();
            let _ = signups.await;
        }
        let mut set = std::mem::take(&mut *lock(&self.requests));
        while set.join_next().await.is_some() {}
    }

    /// Stops sending now and abandons the requests in flight; what was recorded stays.
    pub async fn halt(&mut self) {
        for task in [self.sender.take(), self.signups.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
        let mut set = std::mem::take(&mut *lock(&self.requests));
        set.shutdown().await;
        lock(&self.record).finished_sending = true;
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        for task in [&self.sender, &self.signups].into_iter().flatten() {
            task.abort();
        }
        lock(&self.requests).abort_all();
    }
}

async fn send_loop(
    client: reqwest::Client,
    config: LoadConfig,
    started: Instant,
    record: Arc<Mutex<Record>>,
    in_flight: Arc<AtomicUsize>,
    requests: Arc<Mutex<tokio::task::JoinSet<()>>>,
) {
    let url = config.url(&config.path);
    let mut k: u64 = 0;
    while let Some(at) = config.schedule.due(k) {
        k += 1;
        let due = started + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due).await;
        let second = second_of(at);
        if in_flight.load(Ordering::SeqCst) >= config.max_in_flight {
            lock(&record).buckets.entry(second).or_default().dropped += 1;
            continue;
        }
        lock(&record).buckets.entry(second).or_default().sent += 1;
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (client, url, record, in_flight) = (
            client.clone(),
            url.clone(),
            record.clone(),
            in_flight.clone(),
        );
        let mut set = lock(&requests);
        // Reap finished tasks so the set does not grow with the whole load.
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            let outcome = classify(client.get(&url).send().await).await;
            let latency = due.elapsed();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut record = lock(&record);
            let bucket = record.buckets.entry(second).or_default();
            match outcome {
                Ok(served_by) => {
                    bucket.ok += 1;
                    bucket.record_latency(latency);
                    if !served_by.is_empty() {
                        *bucket.served_by.entry(served_by).or_default() += 1;
                    }
                }
                Err(kind) => *bucket.failed.entry(kind).or_default() += 1,
            }
        });
    }
    lock(&record).finished_sending = true;
}

/// The address of signup `n` of run `run`: SES's mailbox simulator, which accepts the mail
/// and records a delivery without sending anything, with a label that keeps each address
/// unique ("you can add a label … success+label1@simulator.amazonses.com", Amazon SES
/// Developer Guide, "Using the mailbox simulator").
pub fn signup_email(run: &str, n: u64) -> String {
    format!("success+load-{run}-{n}@simulator.amazonses.com")
}

async fn signup_loop(
    client: reqwest::Client,
    config: LoadConfig,
    started: Instant,
    record: Arc<Mutex<Record>>,
    requests: Arc<Mutex<tokio::task::JoinSet<()>>>,
) {
    let url = config.url("/v1/user");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(config.signup_rate.max(1)),
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    loop {
        ticker.tick().await;
        if started.elapsed() >= config.schedule.duration {
            return;
        }
        n += 1;
        let body = serde_json::json!({
            "email": signup_email(&run[..8], n),
            "password": format!("Load-{run}-pw"),
            "first_name": "Load",
            "last_name": "Test",
        });
        let (client, url, record) = (client.clone(), url.clone(), record.clone());
        lock(&requests).spawn(async move {
            let second = started.elapsed().as_secs();
            let acked = matches!(
                client.post(&url).json(&body).send().await,
                Ok(resp) if resp.status() == reqwest::StatusCode::CREATED
            );
            let mut record = lock(&record);
            let bucket = record.buckets.entry(second).or_default();
            if acked {
                bucket.signups_ok += 1;
            } else {
                bucket.signups_failed += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_constant_schedule_spaces_requests_evenly() {
        let s = Schedule::constant(4.0, secs(2));
        let due: Vec<f64> = (0..10).map_while(|k| s.due(k)).collect();
        assert_eq!(due, [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]);
        assert_eq!(s.total(), 8);
        assert_eq!(s.peak(), 4.0);
    }

    /// Requests due in each second of a schedule, counted from `due`.
    fn per_second(s: &Schedule) -> Vec<u64> {
        let mut counts = vec![0u64; s.duration.as_secs() as usize];
        let mut k = 0;
        while let Some(t) = s.due(k) {
            counts[second_of(t) as usize] += 1;
            k += 1;
        }
        counts
    }

    #[test]
    fn a_ramp_rises_linearly_then_holds() {
        // 10 → 50 req/s over 4 s, then 50 for 2 s: 10·4 + 40·4/2 + 50·2 = 220 requests.
        let s = Schedule {
            from: 10.0,
            to: 50.0,
            ramp: secs(4),
            duration: secs(6),
        };
        assert_eq!(s.total(), 220);
        let counts = per_second(&s);
        assert_eq!(counts.iter().sum::<u64>(), 220);
        // Each ramp second holds the integral of the rate over it: 15, 25, 35, 45, then 50.
        assert_eq!(counts, [15, 25, 35, 45, 50, 50]);
        assert_eq!(s.rate_at(2.0), 30.0);
        assert_eq!(s.rate_at(5.0), 50.0);
    }

    #[test]
    fn a_ramp_down_and_a_ramp_from_zero_are_exact_too() {
        let down = Schedule {
            from: 50.0,
            to: 10.0,
            ramp: secs(4),
            duration: secs(4),
        };
        assert_eq!(per_second(&down), [45, 35, 25, 15]);
        let up = Schedule {
            from: 0.0,
            to: 20.0,
            ramp: secs(2),
            duration: secs(3),
        };
        assert_eq!(per_second(&up), [5, 15, 20]);
        let none = Schedule::constant(0.0, secs(3));
        assert_eq!(none.total(), 0);
        assert_eq!(none.due(1), None);
    }

    #[test]
    fn signup_addresses_are_ses_simulator_successes() {
        let a = signup_email("abcd1234", 7);
        assert_eq!(a, "success+load-abcd1234-7@simulator.amazonses.com");
    }
}
