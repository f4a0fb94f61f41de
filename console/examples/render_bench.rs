//! Frame render time and memory of the console for a large stack, run by `scripts/bench
//! console` (`cargo run --release -p triad --example render_bench -- [--frames N]`).
//!
//! Two synthetic snapshots go into the console's `State` the way the watch delivers them
//! (`update` with `Action::Snapshot`): a large one — 1,000 instances over 3 AZs in mixed
//! states, health and versions, an instance refresh under way, 100 events and an hour of
//! 1-second series (every series the sandbox reports, 3,600 points each) — and a small one
//! with 3 instances and no series, otherwise the same. Each screen is drawn with `ui::draw`
//! into ratatui's `TestBackend` at 80×24 and 240×70, many frames each; the small snapshot's
//! frames are the baseline of the ratios. Peak RSS (`VmHWM`) is read after each phase, and the
//! large snapshot's JSON (what a watch tick parses) is decoded to time a tick's other cost.
//! Nothing is asserted.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use provision::port::{
    AzView, BackendKind, Capacity, CheckpointInfo, Database, DbRole, DbStatus, Event, EventSource,
    HealthStatus, Instance, LifecycleState, MetricKind, MetricPoint, MetricSeries, Metrics,
    Refresh, RefreshId, RefreshPreferences, RefreshStatus, Snapshot, StackRef, StackStatus, Target,
    TargetReason, TargetState,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;
use triad::app::{Action, Screen, State, update};

/// The console draws at most this often (`run.rs`'s 33 ms frame).
const FRAME_BUDGET: Duration = Duration::from_millis(33);
const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const SIZES: [(u16, u16); 2] = [(80, 24), (240, 70)];
const EVENTS: usize = 100;
const OLD_VERSION: &str = "1.4.2";
const NEW_VERSION: &str = "1.5.0";

/// A deterministic pseudo-random sequence (xorshift64*), so every run draws the same stack.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A whole number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One instance and its target, in the mix a fleet shows halfway through a refresh.
fn instance(rng: &mut Rng, n: usize, az: usize, now: OffsetDateTime) -> (Instance, Option<Target>) {
    let roll = rng.below(1000);
    let (lifecycle, health, target) = match roll {
        0..=899 => (
            LifecycleState::InService,
            HealthStatus::Healthy,
            Some((TargetState::Healthy, None)),
        ),
        900..=929 => (
            LifecycleState::Pending,
            HealthStatus::Healthy,
            Some((
                TargetState::Initial,
                Some(TargetReason::InitialHealthChecking),
            )),
        ),
        930..=949 => (
            LifecycleState::InService,
            HealthStatus::Healthy,
            Some((TargetState::Unhealthy, Some(TargetReason::Timeout))),
        ),
        950..=964 => (
            LifecycleState::InService,
            HealthStatus::Unhealthy,
            Some((
                TargetState::Unhealthy,
                Some(TargetReason::ResponseCodeMismatch),
            )),
        ),
        965..=984 => (
            LifecycleState::Terminating,
            HealthStatus::Healthy,
            Some((
                TargetState::Draining,
                Some(TargetReason::DeregistrationInProgress),
            )),
        ),
        _ => (LifecycleState::Standby, HealthStatus::Healthy, None),
    };
    // The refresh has replaced about 40 % of the fleet; what it launches runs the new version.
    let new = lifecycle == LifecycleState::Pending || rng.below(100) < 40;
    let id = format!("i-{:017x}", rng.next() >> 4);
    let instance = Instance {
        id: id.clone(),
        lifecycle,
        health,
        version: Some(if new { NEW_VERSION } else { OLD_VERSION }.to_string()),
        launch_template_version: Some(if new { "7" } else { "6" }.to_string()),
        launch_time: Some(now - time::Duration::seconds(rng.below(86_400) as i64)),
        address: Some(format!("10.0.{}.{}", az * 64 + n / 250, n % 250 + 4)),
        protected_from_scale_in: false,
    };
    let target = target.map(|(state, reason)| Target {
        id,
        port: 8000,
        state,
        reason,
        description: reason.map(|_| "Health checks failed with these codes: [502]".to_string()),
    });
    (instance, target)
}

/// One series of `points` 1-second points ending at `now`.
fn series(
    rng: &mut Rng,
    metric: MetricKind,
    az: Option<&str>,
    points: usize,
    now: OffsetDateTime,
    level: f64,
) -> MetricSeries {
    MetricSeries {
        metric,
        az: az.map(str::to_string),
        points: (0..points)
            .map(|i| MetricPoint {
                at: now - time::Duration::seconds((points - i) as i64),
                value: (level * (0.8 + 0.4 * rng.unit())).round(),
            })
            .collect(),
    }
}

/// A snapshot of `instances` instances spread over three AZs, with `points` seconds of every
/// series the sandbox reports.
fn snapshot(instances: usize, points: usize) -> anyhow::Result<Snapshot> {
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut snapshot = Snapshot::empty(StackRef::new("bench")?.in_region("us-east-1"), now);
    snapshot.stack_status = Some(StackStatus::UpdateComplete);
    snapshot.endpoint = Some("http://bench-alb-1234567890.us-east-1.elb.amazonaws.com".into());
    snapshot.enabled_azs = AZS.iter().map(|a| a.to_string()).collect();
    let mut views: Vec<AzView> = AZS.iter().map(|a| AzView::new(*a)).collect();
    for n in 0..instances {
        let az = n % AZS.len();
        let (instance, target) = instance(&mut rng, n, az, now);
        views[az].instances.push(instance);
        views[az].targets.extend(target);
    }
    for (view, role) in views.iter_mut().zip([DbRole::Primary, DbRole::Standby]) {
        view.database = Some(Database {
            id: "bench-db".into(),
            role,
            status: DbStatus::Available,
            synchronous: Some(true),
        });
    }
    snapshot.azs = views;
    let desired = u32::try_from(instances)?;
    snapshot.capacity = Some(Capacity {
        desired,
        min: desired,
        max: desired * 2,
    });
    snapshot.refreshes.push(Refresh {
        id: RefreshId("08b91cf7-8fa6-48af-b6a6-d6f08f02ce26".into()),
        status: RefreshStatus::InProgress,
        status_reason: Some("Waiting for instances to warm up before continuing.".into()),
        started_at: Some(now - time::Duration::minutes(25)),
        ended_at: None,
        percentage_complete: Some(40),
        instances_to_update: Some(desired * 6 / 10),
        desired_version: Some(NEW_VERSION.into()),
        desired_launch_template_version: Some("7".into()),
        preferences: Some(RefreshPreferences::default()),
        checkpoint: Some(CheckpointInfo {
            percentage: 40,
            reached_at: now - time::Duration::seconds(30),
            resumes_at: Some(now + time::Duration::seconds(270)),
        }),
        rollback: None,
    });
    snapshot.events = (0..EVENTS)
        .map(|i| {
            let az = AZS[i % AZS.len()];
            let (source, message) = match i % 4 {
                0 => (
                    EventSource::Scaling,
                    format!(
                        "Launching a new EC2 instance: i-{:017x} (instance refresh)",
                        rng.next() >> 4
                    ),
                ),
                1 => (
                    EventSource::Scaling,
                    format!(
                        "Terminating EC2 instance: i-{:017x} (instance refresh)",
                        rng.next() >> 4
                    ),
                ),
                2 => (
                    EventSource::LoadBalancer,
                    format!("target i-{:017x} healthy after 2 checks", rng.next() >> 4),
                ),
                _ => (
                    EventSource::Database,
                    "replication lag 0.2 s to the standby".to_string(),
                ),
            };
            Event {
                at: now - time::Duration::seconds(i as i64 * 7),
                source,
                az: Some(az.to_string()),
                message,
            }
        })
        .collect();
    let mut all = Vec::new();
    if points > 0 {
        let per_az = (instances / AZS.len()).max(1) as f64;
        for az in AZS {
            for (metric, level) in [
                (MetricKind::Requests, 20.0 * per_az),
                (MetricKind::Target5xx, 2.0),
                (MetricKind::Lb5xx, 1.0),
                (MetricKind::LatencyP50, 12.0),
                (MetricKind::LatencyP99, 180.0),
                (MetricKind::HealthyHosts, per_az * 0.93),
                (MetricKind::Cpu, 35.0),
            ] {
                all.push(series(&mut rng, metric, Some(az), points, now, level));
            }
        }
        all.push(series(&mut rng, MetricKind::Cpu, None, points, now, 35.0));
    }
    snapshot.metrics = Metrics {
        period_seconds: 1,
        series: all,
        instances: Vec::new(),
    };
    Ok(snapshot)
}

/// The console's state after the watch delivered `snapshot`, the way `run.rs` applies it.
fn state_with(snapshot: Snapshot) -> anyhow::Result<State> {
    let stack = snapshot.stack.clone();
    let mut state = State::new(
        stack,
        BackendKind::Aws,
        "profile prod · us-east-1".into(),
        false,
    );
    let effects = update(&mut state, Action::Snapshot(Box::new(snapshot)));
    if !effects.is_empty() {
        bail!("a snapshot asked for effects: {effects:?}");
    }
    Ok(state)
}

/// The screens measured: a name, the screen, and whether the list's selection is its last row.
const SCREENS: [(&str, Screen, bool); 4] = [
    ("dashboard", Screen::Dashboard, false),
    ("instances", Screen::Instances, false),
    ("instances, last row", Screen::Instances, true),
    ("events", Screen::Events, false),
];

/// Per-frame times of one screen at one size.
struct Timing {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

/// Draws `frames` frames of `state` on `screen` (after a few unmeasured ones) and times each.
fn measure(
    state: &mut State,
    screen: Screen,
    last_row: bool,
    (width, height): (u16, u16),
    frames: usize,
) -> anyhow::Result<Timing> {
    state.screen = screen;
    state.row = if last_row {
        state
            .snapshot
            .as_ref()
            .map_or(0, |s| {
                s.azs.iter().map(|a| a.instances.len()).sum::<usize>()
            })
            .saturating_sub(1)
    } else {
        0
    };
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;
    for _ in 0..frames.div_ceil(20) {
        terminal.draw(|frame| triad::ui::draw(frame, state))?;
    }
    let mut times = Vec::with_capacity(frames);
    for _ in 0..frames {
        let start = Instant::now();
        terminal.draw(|frame| triad::ui::draw(frame, state))?;
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Timing {
        p50: at(0.50),
        p99: at(0.99),
        mean: times.iter().sum::<Duration>() / u32::try_from(times.len())?,
    })
}

/// The process's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("x{:.1}", a / b)
    } else {
        "n/a".into()
    }
}

/// 1000 → "1,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} needs a whole number")),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let frames = arg("--frames", 300)?.max(1);
    let instances = arg("--instances", 1000)?;
    let points = arg("--points", 3600)?;

    let start_kib = peak_rss_kib()?;
    let mut small = state_with(snapshot(3, 0)?)?;
    let mut rows = Vec::new();
    for (name, screen, last_row) in SCREENS {
        for size in SIZES {
            rows.push((
                name,
                size,
                measure(&mut small, screen, last_row, size, frames)?,
            ));
        }
    }
    let small_kib = peak_rss_kib()?;
    drop(small);

    let large_snapshot = snapshot(instances, points)?;
    let series = large_snapshot.metrics.series.len();
    let json = serde_json::to_string(&large_snapshot)?;
    let mut large = state_with(large_snapshot)?;
    let mut large_rows = Vec::new();
    for (_, screen, last_row) in SCREENS {
        for size in SIZES {
            large_rows.push(measure(&mut large, screen, last_row, size, frames)?);
        }
    }
    let large_kib = peak_rss_kib()?;

    // A watch tick parses a whole snapshot; time that too (the sandbox's client and `triad
    // status --json` read this JSON).
    let mut decode = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let decoded: Snapshot = serde_json::from_str(&json)?;
        decode.push(start.elapsed());
        large = state_with(decoded)?;
    }
    decode.sort();
    let decode_kib = peak_rss_kib()?;
    drop(large);

    println!(
        "console frames: ui::draw into ratatui's TestBackend, {frames} frames per row after {} unmeasured; budget {} ms a frame",
        frames.div_ceil(20),
        FRAME_BUDGET.as_millis()
    );
    println!(
        "large: {} instances over 3 AZs, mixed states, {OLD_VERSION}/{NEW_VERSION}, a refresh at 40 %, {EVENTS} events, {series} series x {} 1-s points",
        thousands(instances),
        thousands(points)
    );
    println!("small (baseline): 3 instances, one per AZ, no series; the same refresh and events");
    println!();
    println!(
        "{:<20} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "screen",
        "size",
        "small p50",
        "small p99",
        "large p50",
        "large p99",
        "large mean",
        "p99 ratio",
        "of budget"
    );
    for ((name, (w, h), s), l) in rows.iter().zip(&large_rows) {
        println!(
            "{:<20} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8.1}%",
            name,
            format!("{w}x{h}"),
            ms(s.p50),
            ms(s.p99),
            ms(l.p50),
            ms(l.p99),
            ms(l.mean),
            ratio(l.p99.as_secs_f64(), s.p99.as_secs_f64()),
            100.0 * l.p99.as_secs_f64() / FRAME_BUDGET.as_secs_f64()
        );
    }
    println!("(times in ms; ratio = large p99 / small p99 of the same screen and size)");
    println!();
    println!(
        "peak RSS (VmHWM): at start {}, after the small frames {}, after the large frames {} ({} the small)",
        mib(start_kib),
        mib(small_kib),
        mib(large_kib),
        ratio(large_kib as f64, small_kib as f64)
    );
    println!(
        "a watch tick's decode of the large snapshot: {} of JSON in {} ms (p50 of {}); peak RSS then {}",
        mib(json.len() as u64 / 1024),
        ms(decode[decode.len() / 2]),
        decode.len(),
        mib(decode_kib)
    );
    Ok(())
}
