//! The GameDay probe: a steady request rate at the stack's endpoint, recorded per second.
//!
//! Every tick of a fixed-rate interval sends one `GET /version` (the webapp answers with the
//! version, instance and AZ that served it), so the record shows not only whether requests
//! succeed but who served them. Optionally a slower stream of signups runs beside it; each
//! acknowledged signup (a 201) is kept so the drill can check afterwards that no acknowledged
//! write was lost. Requests are sent at the configured rate whatever the latency (each in its own
//! task), so a slow stack shows up as latency and timeouts, not as a lower request rate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How a probe request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The connection was refused or reset before a response.
    Connect,
    /// No response within the probe's timeout.
    Timeout,
    /// A 5xx from the load balancer or a target.
    Status5xx,
    /// Any other unexpected status (4xx on a probe path means a broken deploy).
    OtherStatus,
}

impl FailureKind {
    /// Its name in reports (as serialised): `connect`, `timeout`, `status5xx`, `other_status`.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Status5xx => "status5xx",
            FailureKind::OtherStatus => "other_status",
        }
    }
}

/// What the probe saw during one wall-clock second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSecond {
    /// Seconds since the probe started.
    pub second: u64,
    pub ok: u32,
    pub failed: BTreeMap<FailureKind, u32>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Successful responses by "version@az".
    pub served_by: BTreeMap<String, u32>,
    /// p99 latency (ms) of the successful responses each AZ served.
    #[serde(default)]
    pub az_p99_ms: BTreeMap<String, f64>,
}

impl ProbeSecond {
    pub fn failures(&self) -> u32 {
        self.failed.values().sum()
    }

    pub fn total(&self) -> u32 {
        self.ok + self.failures()
    }
}

/// A signup the stack acknowledged with a 201: the drill later checks it still exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedSignup {
    pub email: String,
    pub password: String,
    pub second: u64,
}

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The stack's endpoint, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Probe requests per second.
    pub rate: u32,
    /// Give up on a request after this long.
    pub timeout: Duration,
    /// Signups per second (0: none).
    pub signup_rate: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            base_url: "http://127.0.0.1:8080".into(),
            rate: 20,
            timeout: Duration::from_secs(2),
            signup_rate: 0,
        }
    }
}

#[derive(Default)]
struct Bucket {
    ok: u32,
    failed: BTreeMap<FailureKind, u32>,
    latency_us: Option<Histogram<u64>>,
    served_by: BTreeMap<String, u32>,
    /// Latencies (ms) of the successful responses per AZ.
    az_latencies_ms: BTreeMap<String, Vec<f64>>,
}

/// Records `latency` into a second's histogram (µs), made on its first sample. The probe and
/// the load generator both count through it.
pub fn record_latency(histogram: &mut Option<Histogram<u64>>, latency: Duration) {
    if histogram.is_none() {
        // Bounds 1 µs ..= 120 s with 2 significant digits: always valid.
        *histogram = Histogram::new_with_bounds(1, 120_000_000, 2).ok();
    }
    if let Some(h) = histogram.as_mut() {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let _ = h.record(micros.clamp(1, 120_000_000));
    }
}

/// p50 and p99 (ms) of per-second latency histograms (µs) merged into one: exact, not
/// per-second percentiles averaged. The probe and the load generator both report through it.
pub fn merged_latency<'a>(histograms: impl Iterator<Item = &'a Histogram<u64>>) -> Latency {
    let mut merged: Option<Histogram<u64>> = None;
    for h in histograms {
        match merged.as_mut() {
            Some(m) => {
                let _ = m.add(h);
            }
            None => merged = Some(h.clone()),
        }
    }
    match merged.filter(|h| !h.is_empty()) {
        Some(h) => Latency {
            p50_ms: Some(h.value_at_quantile(0.50) as f64 / 1000.0),
            p99_ms: Some(h.value_at_quantile(0.99) as f64 / 1000.0),
            samples: h.len(),
        },
        None => Latency::default(),
    }
}

/// The nearest-rank 99th percentile of `values`.
fn p99(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (0.99 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

impl Bucket {
    fn record_latency(&mut self, latency: Duration) {
        record_latency(&mut self.latency_us, latency);
    }

    fn to_second(&self, second: u64) -> ProbeSecond {
        let pct = |q: f64| {
            self.latency_us
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        ProbeSecond {
            second,
            ok: self.ok,
            failed: self.failed.clone(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            served_by: self.served_by.clone(),
            az_p99_ms: self
                .az_latencies_ms
                .iter()
                .filter_map(|(az, values)| p99(values).map(|p| (az.clone(), p)))
                .collect(),
        }
    }
}

#[derive(Default)]
struct Record {
    buckets: BTreeMap<u64, Bucket>,
    acked: Vec<AckedSignup>,
}

/// A running probe; stop it to get its record.
pub struct Probe {
    started: Instant,
    record: Arc<Mutex<Record>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Deserialize)]
struct VersionBody {
    version: String,
    #[serde(default)]
    az: String,
}

impl Probe {
    /// Starts sending requests at once.
    pub fn start(config: ProbeConfig) -> Result<Probe, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        let started = Instant::now();
        let record = Arc::new(Mutex::new(Record::default()));
        let mut tasks = Vec::new();
        if config.rate > 0 {
            tasks.push(tokio::spawn(read_loop(
                client.clone(),
                config.clone(),
                started,
                record.clone(),
            )));
        }
        if config.signup_rate > 0 {
            tasks.push(tokio::spawn(signup_loop(
                client,
                config,
                started,
                record.clone(),
            )));
        }
        Ok(Probe {
            started,
            record,
            tasks,
        })
    }

    /// Seconds since start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every completed second so far (the current, partial second is left out).
    pub fn seconds(&self) -> Vec<ProbeSecond> {
        let now = self.started.elapsed().as_secs();
        self.seconds_in(0..now)
    }

    /// The record of each second in `range`; a second with no request is an empty record.
    fn seconds_in(&self, range: std::ops::Range<u64>) -> Vec<ProbeSecond> {
        let record = lock(&self.record);
        range
            .map(|s| {
                record
                    .buckets
                    .get(&s)
                    .map(|b| b.to_second(s))
                    .unwrap_or(ProbeSecond {
                        second: s,
                        ..ProbeSecond::default()
                    })
            })
            .collect()
    }

    /// Stops sending; what was recorded stays readable.
    pub async fn halt(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Every second recorded so far, including the current partial one.
    pub fn all_seconds(&self) -> Vec<ProbeSecond> {
        let last = lock(&self.record)
            .buckets
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        self.seconds_in(0..last + 1)
    }

    /// The signups the stack acknowledged so far.
    pub fn acked(&self) -> Vec<AckedSignup> {
        lock(&self.record).acked.clone()
    }

    /// p50 and p99 latency (ms) over the seconds `from..to` (exact: histograms are merged, not
    /// per-second percentiles averaged).
    pub fn latency_between(&self, from: u64, to: u64) -> Latency {
        let record = lock(&self.record);
        merged_latency(
            record
                .buckets
                .range(from..to)
                .filter_map(|(_, b)| b.latency_us.as_ref()),
        )
    }
}

/// Latency percentiles over a span of the probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub samples: u64,
}

impl Drop for Probe {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock(record: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    record
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn classify(err: &reqwest::Error) -> FailureKind {
    if err.is_timeout() {
        FailureKind::Timeout
    } else {
        FailureKind::Connect
    }
}

fn interval_for(rate: u32) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    ticker
}

async fn read_loop(
    client: reqwest::Client,
    config: ProbeConfig,
    started: Instant,
    record: Arc<Mutex<Record>>,
) {
    let url = format!("{}/version", config.base_url.trim_end_matches('/'));
    let mut ticker = interval_for(config.rate);
    loop {
        ticker.tick().await;
        let client = client.clone();
        let url = url.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let second = sent.duration_since(started).as_secs();
            let outcome = match client.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => match resp.json::<VersionBody>().await {
                    Ok(body) => Ok((format!("{}@{}", body.version, body.az), body.az)),
                    Err(e) => Err(classify(&e)),
                },
                Ok(resp) if resp.status().is_server_error() => Err(FailureKind::Status5xx),
                Ok(_) => Err(FailureKind::OtherStatus),
                Err(e) => Err(classify(&e)),
            };
            let latency = sent.elapsed();
            let mut record = lock(&record);
            let bucket = record.buckets.entry(second).or_default();
            match outcome {
                Ok((served_by, az)) => {
                    bucket.ok += 1;
                    bucket.record_latency(latency);
                    *bucket.served_by.entry(served_by).or_default() += 1;
                    bucket
                        .az_latencies_ms
                        .entry(az)
                        .or_default()
                        .push(latency.as_secs_f64() * 1000.0);
                }
                Err(kind) => *bucket.failed.entry(kind).or_default() += 1,
            }
        });
    }
}

async fn signup_loop(
    client: reqwest::Client,
    config: ProbeConfig,
    started: Instant,
    record: Arc<Mutex<Record>>,
) {
    let url = format!("{}/v1/user", config.base_url.trim_end_matches('/'));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut ticker = interval_for(config.signup_rate);
    let mut n: u64 = 0;
    loop {
        ticker.tick().await;
        n += 1;
        let email = format!("probe-{}-{n}@drill.invalid", &run[..8]);
        let password = format!("Drill-{run}-pw");
        let body = serde_json::json!({
            "email": email,
            "password": password,
            "first_name": "Probe",
            "last_name": "Drill",
        });
        let client = client.clone();
        let url = url.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let second = started.elapsed().as_secs();
            if let Ok(resp) = client.post(&url).json(&body).send().await
                && resp.status() == reqwest::StatusCode::CREATED
            {
                lock(&record).acked.push(AckedSignup {
                    email,
                    password,
                    second,
                });
            }
        });
    }
}

/// Whether an acknowledged signup still exists: `GET /v1/user/self` with its credentials
/// answers 200 (or 403 when verification is required); 401 means the write was lost.
pub async fn signup_exists(
    client: &reqwest::Client,
    base_url: &str,
    signup: &AckedSignup,
) -> Result<bool, reqwest::Error> {
    let resp = client
        .get(format!("{}/v1/user/self", base_url.trim_end_matches('/')))
        .basic_auth(&signup.email, Some(&signup.password))
        .send()
        .await?;
    Ok(matches!(resp.status().as_u16(), 200 | 403))
}
