//! One load from start to report: the generator at the stack's endpoint, one snapshot a second
//! while it runs, then — once it stops sending — snapshots until desired capacity is back at
//! min (the scale-in) or the observation deadline passes. It publishes [`LoadUpdate`]s for
//! whoever watches (the console's live view, the command line's progress lines) and returns
//! the report, written to `report_dir` when one is given.
//!
//! A load changes nothing in the stack by itself; the refusals (read-only, confirmation) are
//! the front ends' ([`crate::commands::load`], the console), decided in [`crate::policy`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use provision::port::{Cloud, CloudError, StackRef};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::generator::{LiveStats, LoadConfig, LoadGen, LoadSecond, Schedule};
use super::phases::Observation;
use super::report::{self, LoadRecord, LoadReport, LoadShape};
use crate::activity::Marker;

/// One load, as the operator asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub schedule: Schedule,
    pub path: String,
    pub signup_rate: u32,
    /// Give up on one request after this long.
    pub timeout: Duration,
    /// After the load, how long to wait for desired capacity back at min.
    pub observe_after: Duration,
    /// Where the report goes (none: not written).
    pub report_dir: Option<PathBuf>,
    /// The endpoint to load; defaults to the stack's.
    pub endpoint: Option<String>,
    /// The stack's directory in the working area, where running activities are listed (a
    /// GameDay and a load note each other); none: not listed.
    pub activity_dir: Option<PathBuf>,
}

impl LoadPlan {
    pub fn new(schedule: Schedule) -> Self {
        LoadPlan {
            schedule,
            path: "/version".into(),
            signup_rate: 0,
            timeout: Duration::from_secs(5),
            observe_after: Duration::from_secs(600),
            report_dir: None,
            endpoint: None,
            activity_dir: None,
        }
    }

    pub fn shape(&self) -> LoadShape {
        LoadShape::of(&self.schedule, &self.path, self.signup_rate)
    }
}

/// Why a load ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The stack has no endpoint to load (not up yet, or no load balancer).
    #[error("the stack has no endpoint to load (is it up?)")]
    NoEndpoint,
    #[error("{what}: {source}")]
    Cloud {
        what: &'static str,
        #[source]
        source: CloudError,
    },
    #[error("starting the load: {0}")]
    Client(String),
    #[error("writing the report: {0}")]
    Report(std::io::Error),
}

/// What the engine publishes while it runs.
#[derive(Debug, Clone)]
pub enum LoadUpdate {
    Started {
        title: String,
        /// "60 req/s on /version, for 60 s".
        shape: String,
        endpoint: String,
    },
    /// Live figures, once a second.
    Live(LiveStats),
    /// A complete second of the load.
    Second(LoadSecond),
    /// The stack at one second.
    Observed(Observation),
    /// The load stopped sending; the engine now watches the scale-in.
    LoadEnded {
        second: u64,
    },
    Finished {
        report: Box<LoadReport>,
        files: Vec<String>,
    },
    Failed(String),
}

/// Runs one load to its report. `stop` ends the load early (marked stopped in the report),
/// or, once the load is over, ends the scale-in observation.
pub async fn run(
    cloud: Arc<dyn Cloud>,
    stack: StackRef,
    plan: LoadPlan,
    updates: mpsc::UnboundedSender<LoadUpdate>,
    mut stop: watch::Receiver<bool>,
) -> Result<LoadReport, LoadError> {
    let result = run_inner(cloud, stack, plan, &updates, &mut stop).await;
    if let Err(e) = &result {
        let _ = updates.send(LoadUpdate::Failed(e.to_string()));
    }
    result
}

async fn run_inner(
    cloud: Arc<dyn Cloud>,
    stack: StackRef,
    plan: LoadPlan,
    updates: &mpsc::UnboundedSender<LoadUpdate>,
    stop: &mut watch::Receiver<bool>,
) -> Result<LoadReport, LoadError> {
    let first = cloud
        .snapshot(&stack)
        .await
        .map_err(|source| LoadError::Cloud {
            what: "reading the stack",
            source,
        })?;
    let endpoint = plan
        .endpoint
        .clone()
        .or(first.endpoint.clone())
        .ok_or(LoadError::NoEndpoint)?;
    let started_at = time::OffsetDateTime::now_utc();
    let mut config = LoadConfig::new(endpoint.clone(), 0.0, plan.schedule.duration);
    config.schedule = plan.schedule;
    config.path = plan.path.clone();
    config.signup_rate = plan.signup_rate;
    config.timeout = plan.timeout;
    let mut generator = LoadGen::start(config).map_err(|e| LoadError::Client(e.to_string()))?;
    let started = Instant::now();
    let _ = updates.send(LoadUpdate::Started {
        title: format!("load on {}", stack.name),
        shape: plan.shape().describe(),
        endpoint: endpoint.clone(),
    });
    let marker = match &plan.activity_dir {
        Some(dir) => Marker::new(dir, "load", &format!("load {}", plan.shape().describe())),
        None => Marker::none(),
    };
    let mut concurrent = marker.others();
    let first_clock = first.clock.clone();
    let mut observations = vec![Observation::of(&first, 0)];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut published = 0usize;
    let mut aborted = None;
    // The load: until every request is sent and answered (or has timed out), or a stop.
    let give_up = plan.schedule.duration + plan.timeout + Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        let second = started.elapsed().as_secs();
        observe(&cloud, &stack, second, &mut observations, updates).await;
        crate::activity::note(&mut concurrent, marker.others());
        let seconds = generator.seconds();
        for s in seconds.iter().skip(published) {
            let _ = updates.send(LoadUpdate::Second(s.clone()));
        }
        published = seconds.len();
        let _ = updates.send(LoadUpdate::Live(generator.live()));
        if *stop.borrow() {
            generator.halt().await;
            aborted = Some("stopped by the operator".to_string());
            break;
        }
        if generator.finished_sending() && generator.in_flight() == 0 {
            break;
        }
        if started.elapsed() > give_up {
            generator.halt().await;
            break;
        }
    }
    let load_end_at = started.elapsed().as_secs();
    let _ = updates.send(LoadUpdate::LoadEnded {
        second: load_end_at,
    });
    for s in generator.all_seconds().iter().skip(published) {
        let _ = updates.send(LoadUpdate::Second(s.clone()));
    }
    // The scale-in: until desired is back at min after having risen, or the deadline.
    let rose = |observations: &[Observation]| {
        let first = observations.first().and_then(|o| o.desired);
        observations
            .iter()
            .any(|o| matches!((o.desired, first), (Some(d), Some(f)) if d > f))
    };
    let deadline = started.elapsed() + plan.observe_after;
    if aborted.is_none() && rose(&observations) {
        loop {
            let at_min = observations.last().is_some_and(|o| {
                matches!((o.desired, o.min), (Some(d), Some(m)) if d <= m)
                    && o.in_service().values().sum::<u32>() <= o.desired.unwrap_or(u32::MAX)
            });
            if at_min || started.elapsed() >= deadline || *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => {}
            }
            let second = started.elapsed().as_secs();
            observe(&cloud, &stack, second, &mut observations, updates).await;
        }
    }
    let end_at = started.elapsed().as_secs();
    let seconds = generator.all_seconds();
    let (scale_outs, _) = super::phases::scale_outs(&observations);
    let [before, during, after] = report::spans(&scale_outs, load_end_at);
    let record = LoadRecord {
        stack: stack.name.clone(),
        backend: cloud.kind().to_string(),
        endpoint,
        shape: plan.shape(),
        started_at,
        load_end_at,
        end_at,
        latency_before: generator.latency_between(before.0, before.1),
        latency_during: generator.latency_between(during.0, during.1),
        latency_after: generator.latency_between(after.0, after.1),
        seconds,
        observations,
        aborted,
        concurrent,
        clock: first_clock,
    };
    let report = report::summarize(record);
    let mut files = Vec::new();
    if let Some(dir) = &plan.report_dir {
        files = report::write(dir, &report)
            .map_err(LoadError::Report)?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    let _ = updates.send(LoadUpdate::Finished {
        report: Box::new(report.clone()),
        files,
    });
    Ok(report)
}

/// Reads one snapshot and keeps what it shows; a failed read is skipped (the report has a gap
/// there, not a guess).
async fn observe(
    cloud: &Arc<dyn Cloud>,
    stack: &StackRef,
    second: u64,
    observations: &mut Vec<Observation>,
    updates: &mpsc::UnboundedSender<LoadUpdate>,
) {
    match cloud.snapshot(stack).await {
        Ok(snapshot) => {
            let o = Observation::of(&snapshot, second);
            let _ = updates.send(LoadUpdate::Observed(o.clone()));
            observations.push(o);
        }
        Err(e) => tracing::warn!("load snapshot failed: {e}"),
    }
}
