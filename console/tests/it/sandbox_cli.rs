//! The real `triad` binary against the local sandbox, as a person uses it from a shell:
//! `up` starts the stack's daemon (this same binary, `triad sandbox serve`) and streams the
//! bring-up, `status --json` reads the per-AZ snapshot, `down` asks for the stack's name and
//! then removes every process and the state. Needs `TRIAD_WEBAPP_BIN`, `TRIAD_MAILER_BIN` and
//! `TRIAD_TEST_MOTO_BIN`, all provided by `scripts/test`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn triad(home: &Path, spec: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_triad"));
    command
        .env("TRIAD_HOME", home)
        .envs(crate::support::sandbox_programs())
        .arg("--stack")
        .arg(spec)
        .args(args);
    command
}

/// Takes the stack down when the test ends, also when it fails half-way, so that no daemon
/// outlives it (`down` on a stack that is already gone is harmless).
struct TakeDown<'a> {
    home: &'a Path,
    spec: &'a Path,
}

impl Drop for TakeDown<'_> {
    fn drop(&mut self) {
        let _ = triad(self.home, self.spec, &["down", "--yes"])
            .stdin(Stdio::null())
            .output();
    }
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run triad")
}

/// Polls `status --json` until three AZs have one healthy instance each; returns the AZs.
fn wait_until_healthy(home: &Path, spec: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = run(&mut triad(home, spec, &["status", "--json"]));
        assert!(status.status.success(), "{}", crate::support::text(&status));
        let snapshot: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status --json is JSON");
        let azs = snapshot["azs"].as_array().expect("azs").clone();
        let healthy = azs
            .iter()
            .flat_map(|az| az["instances"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["health"] == "Healthy" && i["lifecycle"] == "InService")
            .count();
        if azs.len() == 3 && healthy == 3 {
            return azs
                .iter()
                .map(|az| az["az"].as_str().expect("an AZ name").to_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "never healthy: {snapshot:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn up_status_down_from_the_shell() {
    let tmp = crate::support::open_tempdir();
    let home = tmp.path().join("home");
    let spec = tmp.path().join("stack.toml");
    std::fs::write(&spec, crate::support::spec_toml("cli-sbx")).expect("write the spec");
    let _take_down = TakeDown {
        home: &home,
        spec: &spec,
    };

    let plan = run(&mut triad(&home, &spec, &["plan"]));
    assert!(plan.status.success(), "{}", crate::support::text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("LoadBalancer"),
        "{}",
        crate::support::text(&plan)
    );

    let up = run(&mut triad(&home, &spec, &["up", "--yes"]));
    assert!(up.status.success(), "{}", crate::support::text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        stdout.contains("stack CREATE_COMPLETE"),
        "{}",
        crate::support::text(&up)
    );
    assert!(
        stdout.contains("[8/8]"),
        "X of Y progress: {}",
        crate::support::text(&up)
    );

    // Every instance becomes healthy behind the load balancer.
    let azs = wait_until_healthy(&home, &spec);

    // The status names the clock and the durations in force: the default spec's 10 s
    // interval under the default fast clock.
    let status = run(&mut triad(&home, &spec, &["status"]));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("clock fast ×10:") && out.contains("health check interval: 10 s (here 1 s)"),
        "{}",
        crate::support::text(&status)
    );

    logs_from_the_shell(&home, &spec, &azs);

    // `down` without --yes wants the stack's name: an empty answer changes nothing.
    let refused = run(&mut triad(&home, &spec, &["down"]));
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        crate::support::text(&refused)
    );
    assert!(home.join("cli-sbx").exists(), "the state is still there");

    let down = run(&mut triad(&home, &spec, &["down", "--yes"]));
    assert!(down.status.success(), "{}", crate::support::text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("stack DELETE_COMPLETE"),
        "{}",
        crate::support::text(&down)
    );
    assert!(!home.join("cli-sbx").exists(), "down removes the state");
}

/// `triad logs`: each instance's start line, under its AZ, as JSON; a bad level is exit 2;
/// `--follow` prints a request's line once it is served.
fn logs_from_the_shell(home: &Path, spec: &Path, azs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let starts = loop {
        let out = run(&mut triad(
            home,
            spec,
            &["logs", "--json", "--grep", "starting"],
        ));
        assert!(out.status.success(), "{}", crate::support::text(&out));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON line per log line"))
            .filter(|l: &serde_json::Value| l["message"] == "starting")
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no start lines: {}",
            crate::support::text(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for az in azs {
        assert!(
            starts
                .iter()
                .any(|l| l["az"] == az.as_str() && l["fields"]["az"] == az.as_str()),
            "a start line in {az}: {starts:#?}"
        );
    }
    let only_a = run(&mut triad(
        home,
        spec,
        &["logs", "--json", "--grep", "starting", "--az", &azs[0]],
    ));
    assert!(only_a.status.success());
    assert!(
        String::from_utf8_lossy(&only_a.stdout)
            .lines()
            .all(|l| l.contains(&format!("\"az\":\"{}\"", azs[0]))),
        "{}",
        crate::support::text(&only_a)
    );
    let bad = run(&mut triad(home, spec, &["logs", "--level", "loud"]));
    assert_eq!(bad.status.code(), Some(2), "{}", crate::support::text(&bad));

    // Follow: a request served after it started shows up.
    let status = run(&mut triad(home, spec, &["status", "--json"]));
    let snapshot: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let endpoint = snapshot["endpoint"]
        .as_str()
        .expect("an endpoint")
        .to_owned();
    let mut follower = triad(home, spec, &["logs", "--follow", "--grep", "cli-follow-7"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start triad logs --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let address = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        request_version(&address, "cli-follow-7");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(Instant::now() < deadline, "the follower printed nothing");
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.contains("cli-follow-7") && seen.contains("request"),
        "{seen}"
    );
}

/// `GET /version` with `X-Request-Id: id`, over a plain TCP connection.
fn request_version(address: &str, id: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET /version HTTP/1.1\r\nHost: {address}\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
}

/// `triad gameday` from a shell: the dry run lists what it would touch and the drill's stop
/// conditions and changes nothing; without `--yes` and no answer it is refused; with `--yes`
/// it runs to a verdict and prints where the report went (the default directory under the
/// stack's state when `--report` is not given), and the files are there.
#[test]
fn a_gameday_from_the_shell_says_where_its_report_is() {
    let tmp = crate::support::open_tempdir();
    let home = tmp.path().join("home");
    let spec = tmp.path().join("stack.toml");
    std::fs::write(&spec, crate::support::spec_toml("cli-drill")).expect("write the spec");
    let _take_down = TakeDown {
        home: &home,
        spec: &spec,
    };
    let up = run(&mut triad(&home, &spec, &["up", "--yes"]));
    assert!(up.status.success(), "{}", crate::support::text(&up));
    let azs = wait_until_healthy(&home, &spec);
    let az = azs[1].as_str();
    let drill = |extra: &[&str]| {
        let mut args = vec![
            "gameday",
            "--az",
            az,
            "--fault",
            "terminate-az",
            "--duration",
            "5",
            "--rate",
            "10",
            "--signups",
            "1",
        ];
        args.extend_from_slice(extra);
        run(&mut triad(&home, &spec, &args))
    };

    let dry = drill(&["--dry-run"]);
    assert!(dry.status.success(), "{}", crate::support::text(&dry));
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        out.contains("SIGKILL instance"),
        "{}",
        crate::support::text(&dry)
    );
    assert!(
        out.contains("probe 10 req/s, 1 signups/s; stops at 50 % errors over 5 s or after 320 s"),
        "{}",
        crate::support::text(&dry)
    );

    let refused = drill(&[]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        crate::support::text(&refused)
    );
    let reports = home.join("cli-drill").join("reports");
    assert!(
        !reports.exists(),
        "nothing ran: {}",
        crate::support::text(&refused)
    );

    let ran = drill(&["--yes"]);
    assert!(ran.status.success(), "{}", crate::support::text(&ran));
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(
        out.contains("verdict: Passed"),
        "{}",
        crate::support::text(&ran)
    );
    let dir = out
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| {
            panic!(
                "the report's place is printed: {}",
                crate::support::text(&ran)
            )
        });
    assert!(
        Path::new(dir).starts_with(&reports),
        "{dir} is under {}",
        reports.display()
    );
    for file in ["report.md", "report.json", "report.svg"] {
        let size = std::fs::metadata(Path::new(dir).join(file)).map_or(0, |m| m.len());
        assert!(size > 0, "{dir}/{file} is written");
    }

    // The drill ran on the fast clock: the report gives the durations twice, as measured
    // and on the spec's AWS clock, and says which clock.
    assert!(
        out.contains("clock fast ×10") && out.contains("on AWS"),
        "{}",
        crate::support::text(&ran)
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(dir).join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    assert_eq!(json["record"]["clock"]["scale"]["factor"], 10.0, "{json:#}");
    let measured = json["time_to_recover_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("recovered: {json:#}"));
    let on_aws = json["on_aws"]["time_to_recover_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("an AWS-clock recovery: {json:#}"));
    let kept = json["on_aws"]["unscaled_s"].as_f64().unwrap_or(-1.0);
    assert!(
        !json["record"]["launches"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "terminate-az launched replacements: {json:#}"
    );
    assert!((0.0..measured).contains(&kept), "{json:#}");
    assert!(
        (on_aws - ((measured - kept) * 10.0 + kept)).abs() < 1e-6,
        "{json:#}"
    );
    let md = std::fs::read_to_string(Path::new(dir).join("report.md")).expect("report.md");
    assert!(md.contains("here → ≈"), "{md}");
}

/// A slow-az drill with `--remedy zonal-shift`: the probe sees the AZ's requests get slow, the
/// drill shifts away by itself, the AZ serves no probe request after the shift, the report
/// says so, and the shift is cancelled with the restore (nothing left for `gameday restore`).
#[test]
fn a_remedy_drill_shifts_away_from_the_slow_az_by_itself() {
    let tmp = crate::support::open_tempdir();
    let home = tmp.path().join("home");
    let spec = tmp.path().join("stack.toml");
    std::fs::write(&spec, crate::support::spec_toml("cli-remedy")).expect("write the spec");
    let _take_down = TakeDown {
        home: &home,
        spec: &spec,
    };
    let up = run(&mut triad(&home, &spec, &["up", "--yes"]));
    assert!(up.status.success(), "{}", crate::support::text(&up));
    let azs = wait_until_healthy(&home, &spec);
    let az = azs[0].as_str();
    let report_dir = tmp.path().join("report");
    let ran = run(&mut triad(
        &home,
        &spec,
        &[
            "gameday",
            "--az",
            az,
            "--fault",
            "slow-az",
            "--latency-ms",
            "400",
            "--duration",
            "15",
            "--rate",
            "20",
            "--signups",
            "0",
            "--remedy",
            "zonal-shift",
            "--impaired-for",
            "2",
            "--yes",
            "--report",
            report_dir.to_str().expect("a UTF-8 path"),
        ],
    ));
    assert!(ran.status.success(), "{}", crate::support::text(&ran));
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(
        out.contains("remedy zonal-shift"),
        "{}",
        crate::support::text(&ran)
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_dir.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    let remedy = &report["record"]["remedy"];
    let (impaired, shifted) = (
        remedy["impaired_at"].as_u64().expect("impaired_at"),
        remedy["shifted_at"].as_u64().expect("shifted_at"),
    );
    assert!(impaired <= shifted, "{remedy:#}");
    assert!(
        remedy["served_before"][az].as_u64().expect("before") > 0,
        "the slow AZ served before the shift: {remedy:#}"
    );
    assert_eq!(
        remedy["served_after"][az].as_u64(),
        Some(0),
        "no probe request reached the AZ after the shift: {remedy:#}"
    );
    assert!(
        azs.iter()
            .filter(|other| *other != az)
            .all(|other| remedy["served_after"][other].as_u64().unwrap_or(0) > 0),
        "the other AZs served: {remedy:#}"
    );
    let markdown = std::fs::read_to_string(report_dir.join("report.md")).expect("report.md");
    assert!(markdown.contains("## Remedy: zonal-shift"), "{markdown}");

    let restore = run(&mut triad(&home, &spec, &["gameday", "restore"]));
    assert!(
        restore.status.success(),
        "{}",
        crate::support::text(&restore)
    );
    assert!(
        String::from_utf8_lossy(&restore.stdout).contains("nothing to restore"),
        "{}",
        crate::support::text(&restore)
    );
    let list = run(&mut triad(&home, &spec, &["shift", "list"]));
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("no active zonal shift"),
        "{}",
        crate::support::text(&list)
    );
}
