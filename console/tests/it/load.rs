//! The load generator against a real loopback HTTP listener: it keeps to its schedule (never
//! ahead, at most a second behind, over the whole run), a ramp sends what its shape says
//! second by second, and answers are counted by kind with their latencies. Every assertion is
//! on the generator's own counts; nothing is timed on the server's side. And the load engine
//! end to end on the in-memory cloud: a report with every second and an observation of the
//! stack each second.

use std::sync::Arc;
use std::time::Duration;

use provision::memory::MemoryCloud;
use provision::port::{ManualClock, StackRef};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use triad::drill::probe::FailureKind;
use triad::load::engine::{self, LoadPlan};
use triad::load::generator::{LoadConfig, LoadGen, Schedule};

use super::probe::{serve, serve_version};

async fn version_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    (url, tokio::spawn(serve_version(listener)))
}

/// Waits until the load has sent and settled everything, with a deadline.
async fn finish(load: &mut LoadGen) {
    tokio::time::timeout(Duration::from_secs(60), load.finish())
        .await
        .expect("the load finishes within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_rate_keeps_to_its_schedule_and_every_answer_is_counted() {
    let (url, server) = version_server().await;
    let schedule = Schedule::constant(100.0, Duration::from_secs(3));
    let mut load =
        LoadGen::start(LoadConfig::new(&url, 100.0, Duration::from_secs(3))).expect("start");
    // While it runs, what it has sent is never ahead of the schedule (an open-loop generator
    // must not send early). How far behind it falls depends on how busy the machine is: that
    // is measured by `scripts/bench scale`, not asserted here.
    let mut checks = 0;
    while !load.finished_sending() {
        let live = load.live();
        let after = load.elapsed().as_secs_f64();
        assert!(
            live.sent as f64 <= schedule.due_by(after) + 1.0,
            "ahead of schedule: {} sent by {after:.3} s",
            live.sent
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(checks >= 1, "checked while it ran");
    finish(&mut load).await;
    server.abort();
    let seconds = load.all_seconds();
    assert_eq!(seconds.len(), 3);
    for s in &seconds {
        assert_eq!(s.sent, 100, "{s:?}");
        assert_eq!(s.ok, 100, "every request answered: {s:?}");
        assert_eq!(s.served_by.get("v7@az-b"), Some(&100), "{s:?}");
        assert!(s.p50_ms.is_some() && s.p99_ms >= s.p50_ms, "{s:?}");
    }
    let live = load.live();
    assert_eq!((live.sent, live.ok, live.dropped), (300, 300, 0));
    assert!(live.failed.is_empty());
    assert_eq!(load.latency_between(0, 3).samples, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_sends_what_its_shape_says_second_by_second() {
    let (url, server) = version_server().await;
    // 20 → 120 req/s over 3 s, then 120 for 1 s: 37, 70, 103, 120 requests (330 in all).
    let schedule = Schedule {
        from: 20.0,
        to: 120.0,
        ramp: Duration::from_secs(3),
        duration: Duration::from_secs(4),
    };
    let mut config = LoadConfig::new(&url, 0.0, schedule.duration);
    config.schedule = schedule;
    let mut load = LoadGen::start(config).expect("start");
    finish(&mut load).await;
    server.abort();
    let seconds = load.all_seconds();
    let sent: Vec<u32> = seconds.iter().map(|s| s.sent).collect();
    assert_eq!(sent, [37, 70, 103, 120]);
    let answered: Vec<u32> = seconds.iter().map(|s| s.ok).collect();
    assert_eq!(answered, sent, "every request answered");
    let targets: Vec<f64> = seconds.iter().map(|s| s.target_rate).collect();
    assert_eq!(
        targets,
        [20.0 + 100.0 / 6.0, 70.0, 20.0 + 250.0 / 3.0, 120.0]
    );
    assert_eq!(schedule.total(), 330);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind_and_latency_from_when_each_request_was_due() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(serve(listener, |head: String| async move {
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        match path.as_str() {
            "/fail" => Some("HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n".into()),
            "/missing" => Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into()),
            "/hang" => {
                std::future::pending::<()>().await;
                None
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(80)).await;
                Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into())
            }
            _ => None,
        }
    }));
    let run = |path: &str, timeout: Duration| {
        let mut config = LoadConfig::new(&url, 20.0, Duration::from_secs(1));
        config.path = path.into();
        config.timeout = timeout;
        LoadGen::start(config).expect("start")
    };
    for (path, kind) in [
        ("/fail", FailureKind::Status5xx),
        ("/missing", FailureKind::OtherStatus),
        ("/hang", FailureKind::Timeout),
        ("/closed", FailureKind::Connect),
    ] {
        let mut load = run(path, Duration::from_millis(300));
        finish(&mut load).await;
        let live = load.live();
        assert_eq!(live.sent, 20, "{path}");
        assert_eq!(live.ok, 0, "{path}");
        assert_eq!(
            live.failed.get(&kind).copied(),
            Some(20),
            "{path}: {:?}",
            live.failed
        );
        assert_eq!(
            load.latency_between(0, 1).samples,
            0,
            "only successes are timed"
        );
    }
    let mut load = run("/slow", Duration::from_secs(5));
    finish(&mut load).await;
    server.abort();
    let latency = load.latency_between(0, 1);
    assert_eq!(latency.samples, 20);
    // The server waits 80 ms before answering: no answer can be measured faster.
    assert!(latency.p50_ms >= Some(79.0), "{latency:?}");
    assert!(
        load.all_seconds()[0].served_by.is_empty(),
        "no version body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_on_a_stack_ends_with_a_report_of_every_second_and_observation() {
    let (url, server) = version_server().await;
    let memory = MemoryCloud::new(Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH)));
    let stack = StackRef::new("demo").expect("name");
    memory.seed_stack(&stack);
    let mut plan = LoadPlan::new(Schedule::constant(30.0, Duration::from_secs(2)));
    plan.endpoint = Some(url);
    let dir = tempfile::tempdir().expect("tempdir");
    plan.report_dir = Some(dir.path().join("report"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        engine::run(Arc::new(memory), stack, plan, tx, stop_rx),
    )
    .await
    .expect("within a minute")
    .expect("a report");
    server.abort();
    assert_eq!((report.sent, report.ok, report.failed), (60, 60, 0));
    assert!(
        report.record.observations.len() >= 3,
        "{:?}",
        report.record.observations
    );
    assert!(
        report.scale_outs.is_empty(),
        "the memory stack does not scale"
    );
    assert_eq!(report.record.aborted, None);
    let mut finished = false;
    while let Ok(update) = rx.try_recv() {
        if let engine::LoadUpdate::Finished { files, .. } = update {
            assert_eq!(files.len(), 3);
            finished = true;
        }
    }
    assert!(finished, "the engine announced its report");
    for name in ["report.json", "report.md", "report.svg"] {
        assert!(dir.path().join("report").join(name).is_file(), "{name}");
    }
}

/// `triad load`'s refusals, from the real binary, before anything is opened: bad flags exit 2,
/// a read-only session exits 3, and a production-tagged stack exits 3 without `--yes` when
/// there is no terminal to confirm on.
#[test]
fn the_command_line_refuses_bad_flags_read_only_and_unconfirmed_production() {
    let dir = super::support::open_tempdir();
    let plain = dir.path().join("stack.toml");
    std::fs::write(&plain, super::support::spec_toml("loadtest")).expect("spec");
    let production = dir.path().join("prod.toml");
    std::fs::write(
        &production,
        format!(
            "{}\n[tags]\nenvironment = \"Production\"\n",
            super::support::spec_toml("loadprod")
        ),
    )
    .expect("spec");
    let triad = |spec: &std::path::Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_triad"))
            .env("TRIAD_HOME", dir.path().join("home"))
            .stdin(std::process::Stdio::null())
            .arg("--stack")
            .arg(spec)
            .args(args)
            .output()
            .expect("run triad")
    };
    let out = triad(
        &plain,
        &[
            "load",
            "--rate",
            "5",
            "--to",
            "50",
            "--ramp",
            "60",
            "--duration",
            "30",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", super::support::text(&out));
    assert!(super::support::text(&out).contains("--ramp 60 is longer than --duration 30"));

    let out = triad(
        &plain,
        &["--read-only", "load", "--rate", "5", "--duration", "5"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", super::support::text(&out));
    assert!(super::support::text(&out).contains("read-only"));

    let out = triad(&production, &["load", "--rate", "5", "--duration", "5"]);
    assert_eq!(out.status.code(), Some(3), "{}", super::support::text(&out));
    let text = super::support::text(&out);
    assert!(
        text.contains("must be confirmed") && text.contains("--yes"),
        "{text}"
    );
    assert!(
        !dir.path().join("home/loadprod").exists(),
        "nothing was started for a refused load"
    );
}

/// The real `triad load` against a sandbox stack that scales on requests per target (3 to 6
/// instances, 600 requests per target per minute, the test-only one-second metric period so
/// scale-in comes within seconds): a load of twice the target's capacity yields a report whose
/// scale-out has every phase, in order, and whose capacity rises then falls back to min.
/// Needs the sandbox's programs (`scripts/test` provides them). Nothing here is timed: the
/// deadlines only bound how long the test waits.
#[test]
fn a_load_over_the_target_scales_out_phase_by_phase_and_back_in() {
    use triad::load::report::LoadReport;
    let tmp = super::support::open_tempdir();
    let home = tmp.path().join("home");
    let spec = tmp.path().join("stack.toml");
    std::fs::write(
        &spec,
        format!(
            "{}\n[app.scaling]\nrequests_per_target = 600\n\n[sandbox]\nscaling_period_seconds = 1\n",
            super::support::spec_toml("load-sbx")
        ),
    )
    .expect("spec");
    let triad = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_triad"))
            .env("TRIAD_HOME", &home)
            .envs(super::support::sandbox_programs())
            .stdin(std::process::Stdio::null())
            .arg("--stack")
            .arg(&spec)
            .args(args)
            .output()
            .expect("run triad")
    };
    struct Down<F: Fn()>(F);
    impl<F: Fn()> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _down = Down(|| {
        let _ = triad(&["down", "--yes"]);
    });
    let up = triad(&["up", "--yes"]);
    assert!(up.status.success(), "{}", super::support::text(&up));
    let report_dir = tmp.path().join("report");
    // 3 instances × 10 req/s is the target; 60 req/s asks for 6.
    let load = triad(&[
        "load",
        "--rate",
        "60",
        "--duration",
        "40",
        "--observe",
        "240",
        "--report",
        report_dir.to_str().expect("a UTF-8 path"),
    ]);
    assert!(load.status.success(), "{}", super::support::text(&load));
    let text = std::fs::read_to_string(report_dir.join("report.json")).expect("report.json");
    let report: LoadReport = serde_json::from_str(&text).expect("a load report");
    let out = super::support::text(&load);
    assert!(report.sent > 0 && report.ok > 0, "{out}");
    let first = report
        .scale_outs
        .first()
        .unwrap_or_else(|| panic!("a scale-out: {out}"));
    assert!(
        first.complete_and_ordered(),
        "every phase, in order: {:?}\n{out}",
        first.phases
    );
    let (start, peak, end) = report.desired.expect("desired capacity observed");
    assert_eq!(start, 3, "{out}");
    assert!(peak > start, "capacity rose: {out}");
    assert_eq!(end, 3, "and fell back to min: {out}");
    assert!(
        report.healthy.1 > report.healthy.0,
        "healthy capacity rose: {out}"
    );
    assert!(report.back_to_min_at.is_some(), "{out}");
    // The sandbox runs its `fast` clock by default: every phase is also given on the spec's
    // AWS clock, never shorter than measured.
    let on_aws = report
        .scale_outs_on_aws
        .first()
        .unwrap_or_else(|| panic!("AWS-clock phases: {out}"));
    for (at, aws) in first.phases.iter().zip(on_aws) {
        let (Some(at), Some(aws)) = (at, aws) else {
            panic!("every phase on both clocks: {:?} {on_aws:?}", first.phases);
        };
        assert!(*aws >= *at as f64, "{at} s here, {aws} s on AWS");
    }
    assert!(!report.scale_ins.is_empty(), "{out}");
    for file in ["report.md", "report.svg"] {
        assert!(report_dir.join(file).is_file(), "{file}");
    }
}
