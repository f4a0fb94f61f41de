//! The drill state machine: steady state → inject → observe → restore → recover → report.
//!
//! Each second the engine samples healthy capacity per AZ (one snapshot) and, when the stack
//! has an endpoint, what the probe saw; it publishes both as [`DrillUpdate`]s for whoever
//! watches (the console's live view, or the command line's progress lines). Every step is
//! journaled before it is taken. Stop conditions — the probe's error rate over a short window,
//! total healthy capacity, the maximum duration — and an operator's stop end the observation
//! early; the fault is then restored and the report still written, marked aborted.
//!
//! Time is tokio's: tests run the engine against the in-memory cloud with tokio's clock paused,
//! so a sixty-second drill takes no wall time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provision::port::{
    CapacityCheck, Cloud, CloudError, Event, EventSource, Fault, SandboxClock, ScalingDecision,
    ShiftRequest, Snapshot, StackRef, shift,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::journal::{self, Entry, Journal};
use super::probe::{AckedSignup, Latency, Probe, ProbeConfig, ProbeSecond, signup_exists};
use super::remedy::{Detector, Remedy, RemedyRecord, served_per_az};
use super::report::{self, CapacitySample, DrillRecord, DrillReport, StepRecord, WriteCheck};
use crate::activity::Marker;

/// When the drill gives up and restores early.
#[derive(Debug, Clone, PartialEq)]
pub struct StopConditions {
    /// Probe failures / requests over the last `window_seconds` above this aborts (0–1).
    pub max_error_rate: f64,
    pub window_seconds: u64,
    /// Total healthy capacity below this aborts (0: off).
    pub min_healthy_capacity: u32,
    /// The whole drill may not take longer than this.
    pub max_duration: Duration,
}

impl Default for StopConditions {
    fn default() -> Self {
        StopConditions {
            max_error_rate: 0.5,
            window_seconds: 5,
            min_healthy_capacity: 0,
            max_duration: Duration::from_secs(15 * 60),
        }
    }
}

impl StopConditions {
    /// The longest a drill whose fault stays `fault_duration` may take.
    pub fn ceiling(fault_duration: Duration) -> Duration {
        fault_duration * 4 + Duration::from_secs(300)
    }

    /// The stop conditions of a drill whose fault stays `fault_duration`: the probe's error
    /// rate above `max_error_pct` %, total healthy capacity below `min_healthy_capacity`
    /// (0: off), and a ceiling on the whole drill of four times the fault's duration plus
    /// five minutes — room for the steady-state check, recovery and restore.
    pub fn for_drill(
        fault_duration: Duration,
        max_error_pct: u8,
        min_healthy_capacity: u32,
    ) -> Self {
        StopConditions {
            max_error_rate: f64::from(max_error_pct.min(100)) / 100.0,
            min_healthy_capacity,
            max_duration: Self::ceiling(fault_duration),
            ..StopConditions::default()
        }
    }
}

/// One drill, as the operator asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillConfig {
    pub fault: Fault,
    /// How long the fault stays in place.
    pub duration: Duration,
    /// Probe requests per second (0: no probe).
    pub probe_rate: u32,
    /// Signups per second during the drill (0: none), checked afterwards.
    pub signup_rate: u32,
    /// Inject even when the other AZs have no healthy capacity.
    pub force: bool,
    pub stop: StopConditions,
    /// Seconds of steady state observed before injecting.
    pub steady_seconds: u64,
    /// How long to wait after restore for full healthy capacity.
    pub recover_timeout: Duration,
    /// Where the report goes (none: not written).
    pub report_dir: Option<PathBuf>,
    /// The endpoint to probe; defaults to the stack's.
    pub endpoint: Option<String>,
    /// What the drill does by itself when the faulted AZ is impaired (see [`super::remedy`]).
    pub remedy: Option<Remedy>,
}

impl DrillConfig {
    /// The probe and the stop conditions in a line, for the confirmation:
    /// "probe 20 req/s, 2 signups/s; stops at 50 % errors over 5 s or after 540 s".
    pub fn summary(&self) -> String {
        let probe = if self.probe_rate == 0 {
            "no probe".to_owned()
        } else {
            format!("probe {} req/s", self.probe_rate)
        };
        let signups = if self.signup_rate == 0 {
            String::new()
        } else {
            format!(", {} signups/s", self.signup_rate)
        };
        let healthy = if self.stop.min_healthy_capacity == 0 {
            String::new()
        } else {
            format!(", below {} healthy", self.stop.min_healthy_capacity)
        };
        let remedy = match &self.remedy {
            Some(remedy) => {
                let rule = remedy.impairment();
                format!(
                    "; remedy {} once the AZ is impaired (p99 > {} ms or > {} % errors) for {} s",
                    remedy.name(),
                    rule.p99_ms,
                    rule.error_pct,
                    rule.for_seconds
                )
            }
            None => String::new(),
        };
        format!(
            "{probe}{signups}; stops at {:.0} % errors over {} s{healthy} or after {} s{remedy}",
            self.stop.max_error_rate * 100.0,
            self.stop.window_seconds,
            self.stop.max_duration.as_secs()
        )
    }
    pub fn new(fault: Fault, duration: Duration) -> Self {
        DrillConfig {
            fault,
            duration,
            probe_rate: 20,
            signup_rate: 0,
            force: false,
            stop: StopConditions::default(),
            steady_seconds: 5,
            recover_timeout: Duration::from_secs(300),
            report_dir: None,
            endpoint: None,
            remedy: None,
        }
    }
}

/// Why a drill ended without a report. Every variant says whether the stack was touched: only
/// errors after injection can leave a fault in place, and those are restored before returning.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The stack was not healthy before the drill (an AZ without healthy capacity, probe
    /// errors): nothing was injected. The command line exits 1 for it, as for a failed drill.
    #[error("steady state not met: {0}")]
    SteadyState(String),
    /// A cloud call the drill needs was refused or failed; `source` keeps what the cloud said
    /// (a safety rule refusing the fault at inject is `CloudError::Refused`).
    #[error("{what}: {source}")]
    Cloud {
        what: &'static str,
        #[source]
        source: CloudError,
    },
    /// No snapshot could be read during the steady state.
    #[error("no snapshot during steady state: the backend did not answer")]
    NoSnapshot,
    /// The probe could not start.
    #[error("starting the probe: {0}")]
    Probe(String),
    /// The journal or the report could not be written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DrillError {
    fn cloud(what: &'static str) -> impl FnOnce(CloudError) -> DrillError {
        move |source| DrillError::Cloud { what, source }
    }

    fn journal(source: std::io::Error) -> DrillError {
        DrillError::Io {
            what: "writing the journal".into(),
            source,
        }
    }
}

/// What the engine publishes while it runs.
#[derive(Debug, Clone)]
pub enum DrillUpdate {
    Started {
        title: String,
    },
    Step(StepRecord),
    Probe(ProbeSecond),
    Capacity(CapacitySample),
    Finished {
        report: Box<DrillReport>,
        files: Vec<String>,
    },
    Failed(String),
}

fn capacity_of(snapshot: &Snapshot, second: u64) -> CapacitySample {
    CapacitySample {
        second,
        healthy: snapshot
            .azs
            .iter()
            .map(|a| {
                (
                    a.az.clone(),
                    u32::try_from(a.healthy_capacity()).unwrap_or(u32::MAX),
                )
            })
            .collect(),
    }
}

/// An instance launch the group recorded (not a failed one).
fn is_launch(event: &Event) -> bool {
    event.source == EventSource::Scaling
        && event.message.starts_with("Launching a new EC2 instance: ")
        && !event.message.contains("Status Reason")
}

struct Run<'a> {
    cloud: Arc<dyn Cloud>,
    stack: StackRef,
    config: &'a DrillConfig,
    journal: &'a mut Journal,
    updates: mpsc::UnboundedSender<DrillUpdate>,
    stop: watch::Receiver<bool>,
    started: Instant,
    probe: Option<Probe>,
    probe_seen: usize,
    steps: Vec<StepRecord>,
    capacity: Vec<CapacitySample>,
    ticker: tokio::time::Interval,
    /// This drill in the stack's list of running activities, and the others seen meanwhile.
    marker: Marker,
    concurrent: Vec<String>,
    /// The wall time `started` stands for, to place the model's event times.
    started_wall: time::OffsetDateTime,
    /// The sandbox's clock, from the latest snapshot that had one.
    clock: Option<SandboxClock>,
    /// Launches the model recorded, in seconds from `started_wall`.
    launches: Vec<f64>,
    /// Scaling decisions made since `started_wall`, oldest first.
    scaling: Vec<ScalingDecision>,
}

/// The remedy while the drill observes.
struct RemedyRun {
    detector: Detector,
    record: RemedyRecord,
    /// Probe seconds already fed to the detector.
    seen: usize,
}

impl Run<'_> {
    /// Feeds the probe's new seconds to the remedy's detector; when it fires, starts the zonal
    /// shift (journaled before it happens). A refused or failed shift is recorded, not retried.
    async fn remedy_step(&mut self, remedy: &mut RemedyRun) -> Result<(), DrillError> {
        if remedy.record.shifted_at.is_some() || remedy.record.shift_error.is_some() {
            return Ok(());
        }
        let Some(probe) = &self.probe else {
            return Ok(());
        };
        let seconds = probe.seconds();
        let fired = seconds
            .iter()
            .skip(remedy.seen)
            .any(|s| remedy.detector.observe(s));
        remedy.seen = seconds.len();
        if !fired {
            return Ok(());
        }
        remedy.record.impaired_at = remedy.detector.first_impaired;
        let az = remedy.record.az.clone();
        let expires_in = (self.config.duration + self.config.recover_timeout)
            .clamp(shift::MIN_EXPIRES_IN, shift::MAX_EXPIRES_IN);
        let request = ShiftRequest::new(az.clone(), expires_in, "triad gameday remedy")
            .map_err(DrillError::cloud("building the zonal shift"))?;
        let plan = match self.cloud.snapshot(&self.stack).await {
            Ok(snapshot) => shift::plan_shift(&snapshot, &request).lines(),
            Err(_) => Vec::new(),
        };
        let journal_path = self.journal.path().to_path_buf();
        let at = self.second();
        match journal::start_shift(
            self.cloud.as_ref(),
            &self.stack,
            &journal_path,
            &request,
            plan,
            CapacityCheck::Enforce,
        )
        .await
        {
            Ok(shift) => {
                remedy.record.shifted_at = Some(at);
                self.step(
                    "remedy",
                    format!(
                        "{az} impaired for {} s: zonal shift {shift}",
                        remedy.detector.rule.for_seconds
                    ),
                )?;
            }
            Err(e) => {
                remedy.record.shift_error = Some(e.to_string());
                self.step("remedy", format!("zonal shift away from {az} failed: {e}"))?;
            }
        }
        Ok(())
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn step(&mut self, step: &str, detail: impl Into<String>) -> Result<(), DrillError> {
        let record = StepRecord {
            second: self.second(),
            step: step.to_string(),
            detail: detail.into(),
        };
        self.journal
            .append(&Entry::Step {
                at: time::OffsetDateTime::now_utc(),
                step: record.step.clone(),
                detail: record.detail.clone(),
            })
            .map_err(DrillError::journal)?;
        let _ = self.updates.send(DrillUpdate::Step(record.clone()));
        self.steps.push(record);
        Ok(())
    }

    /// Waits for the next second, then samples capacity and the probe.
    async fn sample(&mut self) -> Option<CapacitySample> {
        self.ticker.tick().await;
        let second = self.second();
        crate::activity::note(&mut self.concurrent, self.marker.others());
        if let Some(probe) = &self.probe {
            let seconds = probe.seconds();
            for s in seconds.iter().skip(self.probe_seen) {
                let _ = self.updates.send(DrillUpdate::Probe(s.clone()));
            }
            self.probe_seen = seconds.len();
        }
        match self.cloud.snapshot(&self.stack).await {
            Ok(snapshot) => {
                if snapshot.clock.is_some() {
                    self.clock = snapshot.clock.clone();
                }
                for event in snapshot.events.iter().filter(|e| is_launch(e)) {
                    let at = (event.at - self.started_wall).as_seconds_f64();
                    if at >= 0.0 && !self.launches.contains(&at) {
                        self.launches.push(at);
                    }
                }
                let decisions = snapshot.scaling.iter().flat_map(|s| s.decisions.iter());
                for decision in decisions.rev() {
                    if decision.at >= self.started_wall && !self.scaling.contains(decision) {
                        self.scaling.push(decision.clone());
                    }
                }
                let sample = capacity_of(&snapshot, second);
                let _ = self.updates.send(DrillUpdate::Capacity(sample.clone()));
                self.capacity.push(sample.clone());
                Some(sample)
            }
            Err(e) => {
                tracing::warn!("drill snapshot failed: {e}");
                None
            }
        }
    }

    fn error_rate(&self) -> Option<f64> {
        let probe = self.probe.as_ref()?;
        let seconds = probe.seconds();
        let window = self.config.stop.window_seconds.max(1) as usize;
        let recent = &seconds[seconds.len().saturating_sub(window)..];
        let total: u32 = recent.iter().map(ProbeSecond::total).sum();
        let failed: u32 = recent.iter().map(ProbeSecond::failures).sum();
        (total > 0).then(|| f64::from(failed) / f64::from(total))
    }

    fn stop_reason(&self, sample: Option<&CapacitySample>) -> Option<String> {
        if *self.stop.borrow() {
            return Some("stopped by the operator".into());
        }
        if self.started.elapsed() > self.config.stop.max_duration {
            return Some(format!(
                "maximum duration {} s reached",
                self.config.stop.max_duration.as_secs()
            ));
        }
        if let Some(rate) = self.error_rate()
            && rate > self.config.stop.max_error_rate
        {
            return Some(format!(
                "probe error rate {:.0} % over the last {} s is above {:.0} %",
                rate * 100.0,
                self.config.stop.window_seconds,
                self.config.stop.max_error_rate * 100.0
            ));
        }
        if let Some(sample) = sample
            && self.config.stop.min_healthy_capacity > 0
            && sample.total() < self.config.stop.min_healthy_capacity
        {
            return Some(format!(
                "healthy capacity {} is below {}",
                sample.total(),
                self.config.stop.min_healthy_capacity
            ));
        }
        None
    }
}

/// Runs one drill to its report. Errors before injection leave the stack untouched; once the
/// fault is in, every path restores it before returning.
pub async fn run(
    cloud: Arc<dyn Cloud>,
    stack: StackRef,
    config: DrillConfig,
    journal: &mut Journal,
    updates: mpsc::UnboundedSender<DrillUpdate>,
    stop: watch::Receiver<bool>,
) -> Result<DrillReport, DrillError> {
    let started_at = time::OffsetDateTime::now_utc();
    let title = format!(
        "{} {}",
        config.fault.kind(),
        config.fault.az().unwrap_or("(database)")
    );
    let _ = updates.send(DrillUpdate::Started {
        title: title.clone(),
    });
    let marker = match journal.path().parent() {
        Some(dir) => Marker::new(dir, "gameday", &format!("GameDay {title}")),
        None => Marker::none(),
    };
    journal
        .append(&Entry::Started {
            at: started_at,
            drill: title,
            stack: stack.clone(),
        })
        .map_err(|source| DrillError::Io {
            what: format!("writing the journal {}", journal.path().display()),
            source,
        })?;

    let first = cloud
        .snapshot(&stack)
        .await
        .map_err(DrillError::cloud("reading the stack"))?;
    let endpoint = config.endpoint.clone().or_else(|| first.endpoint.clone());
    let probe = match (&endpoint, config.probe_rate) {
        (Some(url), rate) if rate > 0 => Some(
            Probe::start(ProbeConfig {
                base_url: url.clone(),
                rate,
                timeout: Duration::from_secs(2),
                signup_rate: config.signup_rate,
            })
            .map_err(|e| DrillError::Probe(e.to_string()))?,
        ),
        _ => None,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut run = Run {
        cloud: cloud.clone(),
        stack: stack.clone(),
        config: &config,
        journal,
        updates: updates.clone(),
        stop,
        started: Instant::now(),
        probe,
        probe_seen: 0,
        steps: Vec::new(),
        capacity: Vec::new(),
        ticker,
        concurrent: marker.others(),
        marker,
        started_wall: time::OffsetDateTime::now_utc(),
        clock: first.clock.clone(),
        launches: Vec::new(),
        scaling: Vec::new(),
    };

    // Steady state.
    run.step(
        "steady-state",
        match &endpoint {
            Some(url) => format!(
                "observing {} s, probing {url} at {}/s",
                config.steady_seconds, config.probe_rate
            ),
            None => format!(
                "observing {} s (no endpoint to probe)",
                config.steady_seconds
            ),
        },
    )?;
    let mut steady = None;
    for _ in 0..config.steady_seconds.max(1) {
        steady = run.sample().await.or(steady);
    }
    let steady = steady.ok_or(DrillError::NoSnapshot)?;
    let empty: Vec<&String> = steady
        .healthy
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(az, _)| az)
        .collect();
    let steady_problem = if !empty.is_empty() {
        Some(format!(
            "AZs with no healthy capacity before the drill: {empty:?}"
        ))
    } else {
        run.error_rate()
            .filter(|r| *r > 0.01)
            .map(|r| format!("probe error rate {:.1} % before the drill", r * 100.0))
    };
    let latency_before_end = run.second();
    if let Some(problem) = steady_problem {
        run.step("abort", format!("steady state not met: {problem}"))?;
        if let Some(mut probe) = run.probe.take() {
            probe.halt().await;
        }
        return Err(DrillError::SteadyState(problem));
    }

    // Inject.
    let plan = cloud
        .describe_fault(&stack, &config.fault)
        .await
        .map_err(DrillError::cloud("describing the fault"))?;
    run.journal
        .append(&Entry::InjectIntent {
            at: time::OffsetDateTime::now_utc(),
            fault: config.fault.clone(),
            plan: plan.actions.clone(),
        })
        .map_err(DrillError::journal)?;
    let check = if config.force {
        CapacityCheck::Force
    } else {
        CapacityCheck::Enforce
    };
    let inject_at = run.second();
    let record = match cloud.inject(&stack, &config.fault, check).await {
        Ok(record) => record,
        Err(e) => {
            run.step("abort", format!("inject refused or failed: {e}"))?;
            if let Some(mut probe) = run.probe.take() {
                probe.halt().await;
            }
            return Err(DrillError::Cloud {
                what: "inject failed",
                source: e,
            });
        }
    };
    run.journal
        .append(&Entry::Injected {
            at: time::OffsetDateTime::now_utc(),
            record: record.clone(),
        })
        .map_err(DrillError::journal)?;
    run.step("inject", plan.actions_summary(2))?;

    // Observe (and, with a remedy, shift away once the faulted AZ is impaired long enough).
    let deadline = Instant::now() + config.duration;
    let mut aborted = None;
    let fault_az = record
        .az
        .clone()
        .or_else(|| config.fault.az().map(str::to_owned));
    let mut remedy = match (&config.remedy, &fault_az) {
        (Some(remedy), Some(az)) => Some(RemedyRun {
            detector: Detector::new(remedy.impairment(), az.clone()),
            record: RemedyRecord {
                remedy: remedy.name().to_owned(),
                az: az.clone(),
                impaired: Some(remedy.impairment()),
                ..RemedyRecord::default()
            },
            seen: usize::try_from(inject_at).unwrap_or(usize::MAX),
        }),
        _ => None,
    };
    while Instant::now() < deadline {
        let sample = run.sample().await;
        if let Some(remedy) = &mut remedy {
            run.remedy_step(remedy).await?;
        }
        if let Some(reason) = run.stop_reason(sample.as_ref()) {
            aborted = Some(reason);
            break;
        }
    }
    if let Some(reason) = &aborted {
        run.step("stop", reason.clone())?;
    }

    // Restore.
    run.journal
        .append(&Entry::RestoreIntent {
            at: time::OffsetDateTime::now_utc(),
            record_id: record.id.clone(),
        })
        .map_err(DrillError::journal)?;
    let restore_at = run.second();
    let restored = cloud.restore(&record).await;
    match &restored {
        Ok(()) => {
            run.journal
                .append(&Entry::Restored {
                    at: time::OffsetDateTime::now_utc(),
                    record_id: record.id.clone(),
                })
                .map_err(DrillError::journal)?;
            run.step("restore", "fault undone")?;
        }
        Err(e) => {
            run.step(
                "restore",
                format!("FAILED: {e} — run `triad gameday restore` to retry"),
            )?;
        }
    }

    // The fault is gone: so is the shift that moved traffic away from it.
    if let Some(remedy) = &remedy
        && remedy.record.shifted_at.is_some()
    {
        let journal_path = run.journal.path().to_path_buf();
        match journal::cancel_shift(
            cloud.as_ref(),
            &stack,
            &journal_path,
            Some(&remedy.record.az),
        )
        .await
        {
            Ok(_) => run.step(
                "remedy",
                format!("zonal shift away from {} cancelled", remedy.record.az),
            )?,
            Err(e) => run.step(
                "remedy",
                format!(
                    "cancelling the zonal shift away from {} FAILED: {e} — run `triad gameday \
                     restore` to retry",
                    remedy.record.az
                ),
            )?,
        }
    }

    // Recover: wait for full healthy capacity.
    let recover_deadline = Instant::now() + config.recover_timeout;
    let steady_total = steady.total();
    let mut recovered = false;
    let during_end = run.second();
    while Instant::now() < recover_deadline {
        if let Some(sample) = run.sample().await
            && sample.total() >= steady_total
        {
            recovered = true;
            break;
        }
        if *run.stop.borrow() && aborted.is_none() {
            aborted = Some("stopped by the operator".into());
            break;
        }
    }
    run.step(
        "recover",
        if recovered {
            format!("healthy capacity back at {steady_total}")
        } else {
            format!(
                "healthy capacity not back at {steady_total} within {} s",
                config.recover_timeout.as_secs()
            )
        },
    )?;
    // A few seconds of "after" for the latency comparison.
    for _ in 0..3 {
        run.sample().await;
    }
    let end_at = run.second();

    // Report.
    let shifted_at = remedy.as_ref().and_then(|r| r.record.shifted_at);
    let mut latency_shifted = None;
    let (probe_seconds, latency, writes) = match run.probe.take() {
        Some(mut probe) => {
            probe.halt().await;
            latency_shifted = shifted_at.map(|at| probe.latency_between(at + 1, restore_at));
            let latency = [
                probe.latency_between(0, latency_before_end),
                probe.latency_between(inject_at, during_end),
                probe.latency_between(during_end, u64::MAX),
            ];
            let writes = if config.signup_rate > 0 {
                Some(check_writes(&probe, endpoint.as_deref().unwrap_or_default()).await)
            } else {
                None
            };
            (probe.all_seconds(), latency, writes)
        }
        None => (Vec::new(), [Latency::default(); 3], None),
    };
    let remedy = remedy.map(|mut remedy| {
        let azs: Vec<String> = first.azs.iter().map(|v| v.az.clone()).collect();
        let shifted = remedy.record.shifted_at;
        remedy.record.latency_shifted = latency_shifted;
        remedy.record.served_before = served_per_az(
            &probe_seconds,
            &azs,
            inject_at,
            shifted.unwrap_or(restore_at),
        );
        if let Some(at) = shifted {
            // From the second after the shift started: requests sent earlier in its second may
            // have gone to the AZ before the shift took hold.
            remedy.record.served_after = served_per_az(&probe_seconds, &azs, at + 1, restore_at);
            remedy.record.recovered_at = probe_seconds
                .iter()
                .filter(|s| s.second >= at)
                .find(|s| remedy.detector.rule.healthy(s))
                .map(|s| s.second);
        }
        remedy.record
    });
    if let Some(w) = &writes {
        run.step(
            "writes",
            format!(
                "{} of {} acknowledged signups found",
                w.found, w.acknowledged
            ),
        )?;
    }
    // Actions on single instances an operator took meanwhile (the CLI and the console journal
    // them in this same journal). An unreadable journal costs the report this list, not the
    // drill.
    let instance_actions = journal::instance_actions_since(run.journal.path(), started_at)
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read instance actions from the journal: {e}");
            Vec::new()
        });
    let record = DrillRecord {
        stack: stack.name.clone(),
        backend: cloud.kind().to_string(),
        az: record
            .az
            .clone()
            .or_else(|| config.fault.az().map(str::to_string))
            .unwrap_or_default(),
        fault: config.fault.kind().to_string(),
        started_at,
        inject_at: Some(inject_at),
        restore_at: Some(restore_at),
        end_at,
        steps: run.steps.clone(),
        probe: probe_seconds,
        capacity: run.capacity.clone(),
        latency_before: latency[0],
        latency_during: latency[1],
        latency_after: latency[2],
        writes,
        concurrent: run.concurrent.clone(),
        clock: run.clock.clone(),
        launches: run.launches.clone(),
        scaling: run.scaling.clone(),
        aborted: aborted.clone().or_else(|| {
            restored
                .as_ref()
                .err()
                .map(|e| format!("restore failed: {e}"))
        }),
        remedy,
        instance_actions,
    };
    let report = report::summarize(record);
    let files = match &config.report_dir {
        Some(dir) => report::write(dir, &report)
            .map_err(|source| DrillError::Io {
                what: format!("writing the report to {}", dir.display()),
                source,
            })?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect(),
        None => Vec::new(),
    };
    run.journal
        .append(&Entry::Finished {
            at: time::OffsetDateTime::now_utc(),
            outcome: format!("{:?}", report.verdict),
        })
        .map_err(DrillError::journal)?;
    let _ = updates.send(DrillUpdate::Finished {
        report: Box::new(report.clone()),
        files,
    });
    Ok(report)
}

async fn check_writes(probe: &Probe, endpoint: &str) -> WriteCheck {
    check_signups(probe.acked(), endpoint).await
}

/// Looks up every acknowledged signup at `endpoint` (a few at once): found (200, or 403 while
/// verification is pending), lost (401), or unknown (no answer).
pub async fn check_signups(acked: Vec<AckedSignup>, endpoint: &str) -> WriteCheck {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(_) => {
            return WriteCheck {
                acknowledged: u32::try_from(acked.len()).unwrap_or(u32::MAX),
                unknown: u32::try_from(acked.len()).unwrap_or(u32::MAX),
                ..WriteCheck::default()
            };
        }
    };
    let mut check = WriteCheck {
        acknowledged: u32::try_from(acked.len()).unwrap_or(u32::MAX),
        ..WriteCheck::default()
    };
    // Each lookup is a sign-in, so a password hash on the instance: a few at once spread them
    // over the fleet without queueing any one lookup past its timeout. (Owned values: the
    // stream lives in a spawned task.)
    let mut lookups = futures::stream::iter(acked)
        .map(|signup| {
            let client = client.clone();
            let endpoint = endpoint.to_owned();
            async move {
                let found = signup_exists(&client, &endpoint, &signup).await;
                (signup, found)
            }
        })
        .buffered(CHECKS_IN_FLIGHT);
    while let Some((signup, found)) = lookups.next().await {
        match found {
            Ok(true) => check.found += 1,
            Ok(false) => check.lost.push(signup.email),
            Err(_) => check.unknown += 1,
        }
    }
    check
}

/// How many acknowledged signups are looked up at once after a drill.
const CHECKS_IN_FLIGHT: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::journal;
    use crate::drill::report::Verdict;
    use provision::memory::MemoryCloud;
    use provision::port::{ManualClock, StackRef};

    fn setup() -> (MemoryCloud, StackRef) {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
        let cloud = MemoryCloud::new(clock);
        let stack = StackRef::new("demo").expect("name");
        cloud.seed_stack(&stack);
        (cloud, stack)
    }

    /// Advances the in-memory fleet every three (virtual) seconds: slower than the drill samples,
    /// as a real cloud is.
    fn drive(cloud: MemoryCloud, stack: StackRef) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3));
            loop {
                tick.tick().await;
                let _ = cloud.tick(&stack);
            }
        })
    }

    #[test]
    fn the_summary_names_the_probe_and_every_stop_condition() {
        let mut config = DrillConfig::new(Fault::FailoverDb, Duration::from_secs(60));
        config.probe_rate = 20;
        config.signup_rate = 2;
        config.stop = StopConditions::for_drill(config.duration, 25, 4);
        assert_eq!(
            config.summary(),
            "probe 20 req/s, 2 signups/s; stops at 25 % errors over 5 s, below 4 healthy \
             or after 540 s"
        );
        config.probe_rate = 0;
        config.signup_rate = 0;
        config.stop = StopConditions::for_drill(config.duration, 50, 0);
        assert_eq!(
            config.summary(),
            "no probe; stops at 50 % errors over 5 s or after 540 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn terminate_az_runs_to_a_passing_report_and_the_journal_is_clean() {
        let (cloud, stack) = setup();
        let driver = drive(cloud.clone(), stack.clone());
        let dir = tempfile::tempdir().expect("tempdir");
        let journal_path = dir.path().join("gameday.jsonl");
        let mut journal = Journal::open(&journal_path).expect("journal");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let mut config = DrillConfig::new(
            Fault::TerminateAz {
                az: "mem-1a".into(),
            },
            Duration::from_secs(20),
        );
        config.report_dir = Some(dir.path().join("report"));
        config.probe_rate = 0; // the in-memory stack has no reachable endpoint
        let report = run(
            Arc::new(cloud.clone()),
            stack,
            config,
            &mut journal,
            tx,
            stop_rx,
        )
        .await
        .expect("drill runs");
        driver.abort();
        assert_eq!(report.verdict, Verdict::Passed, "{report:#?}");
        assert!(
            report.time_to_detect_s.is_some(),
            "the AZ's capacity dipped"
        );
        assert!(report.time_to_recover_s.is_some(), "capacity came back");
        let dip = report.capacity_dip.get("mem-1a").expect("az");
        assert!(dip.lowest < dip.steady);
        assert!(journal::pending(&journal_path).expect("read").is_empty());
        assert!(dir.path().join("report/report.md").exists());
        let mut steps = Vec::new();
        while let Ok(update) = rx.try_recv() {
            if let DrillUpdate::Step(s) = update {
                steps.push(s.step);
            }
        }
        assert_eq!(
            steps,
            ["steady-state", "inject", "restore", "recover"],
            "steps in order"
        );
        assert!(
            cloud.calls().iter().any(|c| c.starts_with("restore")),
            "{:?}",
            cloud.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_stop_aborts_restores_and_reports() {
        let (cloud, stack) = setup();
        let driver = drive(cloud.clone(), stack.clone());
        let dir = tempfile::tempdir().expect("tempdir");
        let journal_path = dir.path().join("gameday.jsonl");
        let mut journal = Journal::open(&journal_path).expect("journal");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut config = DrillConfig::new(
            Fault::BlackholeAz {
                az: "mem-1b".into(),
            },
            Duration::from_secs(600),
        );
        config.probe_rate = 0; // the in-memory stack has no reachable endpoint
        // The operator presses stop as soon as the live view shows the fault is in.
        let stopper = tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                if matches!(&update, DrillUpdate::Step(s) if s.step == "inject") {
                    let _ = stop_tx.send(true);
                }
            }
        });
        let report = run(
            Arc::new(cloud.clone()),
            stack,
            config,
            &mut journal,
            tx,
            stop_rx,
        )
        .await
        .expect("drill runs");
        let _ = stopper.await;
        driver.abort();
        assert_eq!(
            report.record.aborted.as_deref(),
            Some("stopped by the operator")
        );
        assert_eq!(report.verdict, Verdict::Failed);
        assert!(report.record.end_at < 600, "stopped early");
        assert!(journal::pending(&journal_path).expect("read").is_empty());
    }
}
