//! The real `triad` console in a real terminal, driven as a person drives it: each test runs
//! the binary inside its own tmux server against its own local sandbox stack, presses keys
//! with `send-keys` and reads the screen with `capture-pane`. It checks what an operator sees
//! (three healthy AZ columns, a deploy's refresh ending Successful, a GameDay's report) and,
//! where the screen is not proof enough, what the stack or the disk says afterwards.
//!
//! Needs `tmux` (installed by `scripts/setup`) and `TRIAD_WEBAPP_BIN`, `TRIAD_MAILER_BIN`,
//! `TRIAD_TEST_MOTO_BIN`, all provided by `scripts/test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One sandbox stack and one tmux server running the console against it. Dropping it closes
/// the console and takes the stack down.
struct Console {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    spec: PathBuf,
    socket: String,
    stack: String,
}

impl Console {
    /// Brings the stack `name` up from the shell, then opens the console on it in tmux.
    fn open(name: &str) -> Console {
        Console::open_with(name, "")
    }

    /// Like [`Console::open`], with `extra` appended to the stack spec.
    fn open_with(name: &str, extra: &str) -> Console {
        let tmp = crate::support::open_tempdir();
        let home = tmp.path().join("home");
        let spec = tmp.path().join("stack.toml");
        std::fs::write(&spec, crate::support::spec_toml(name) + extra).expect("write the spec");
        let console = Console {
            socket: format!("triad-test-{}-{name}", std::process::id()),
            stack: name.to_string(),
            _tmp: tmp,
            home,
            spec,
        };
        let up = console.triad(&["up", "--yes"]);
        assert!(
            up.status.success(),
            "triad up: {}",
            crate::support::text(&up)
        );

        let script = console.home.join("console.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec {} --stack {} 2>>{}\n",
                env!("CARGO_BIN_EXE_triad"),
                console.spec.display(),
                console.home.join("console.stderr").display()
            ),
        )
        .expect("write the console script");
        let started = console
            .tmux()
            .args(["new-session", "-d", "-s", "main", "-x", "120", "-y", "40"])
            .args(console.env_args())
            .arg(format!("sh {}", script.display()))
            .output()
            .expect("run tmux");
        assert!(
            started.status.success(),
            "tmux: {}",
            crate::support::text(&started)
        );
        console
    }

    fn env_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("TRIAD_HOME".to_string(), self.home.display().to_string()),
            ("TERM".to_string(), "xterm-256color".to_string()),
        ];
        pairs.extend(
            crate::support::sandbox_programs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        pairs
    }

    fn env_args(&self) -> Vec<String> {
        self.env_pairs()
            .into_iter()
            .flat_map(|(k, v)| ["-e".to_string(), format!("{k}={v}")])
            .collect()
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]).stdin(Stdio::null());
        command
    }

    /// Runs `triad` from the shell against this stack.
    fn triad(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_triad"));
        for (k, v) in self.env_pairs() {
            command.env(k, v);
        }
        command
            .arg("--stack")
            .arg(&self.spec)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run triad")
    }

    /// Presses keys: each item is a tmux key name (`Enter`, `Tab`, `BSpace`, `Escape`) or
    /// literal text.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let named = matches!(*key, "Enter" | "Tab" | "BSpace" | "Escape");
            let mut command = self.tmux();
            command.args(["send-keys", "-t", "main"]);
            if !named {
                command.arg("-l");
            }
            let out = command.arg(key).output().expect("tmux send-keys");
            assert!(
                out.status.success(),
                "send-keys {key}: {}",
                crate::support::text(&out)
            );
        }
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `ready` holds, failing with the last screen and the console's
    /// stderr at the deadline.
    fn until(&self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                let stderr =
                    std::fs::read_to_string(self.home.join("console.stderr")).unwrap_or_default();
                panic!(
                    "the console never showed {what}; last screen:\n{screen}\nstderr:\n{stderr}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stack_dir(&self) -> PathBuf {
        self.home.join(&self.stack)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
        let _ = self.triad(&["down", "--yes"]);
    }
}

fn healthy_columns(screen: &str) -> usize {
    screen.matches("1/1 healthy").count()
}

fn three_healthy_azs(screen: &str) -> bool {
    healthy_columns(screen) == 3 && !screen.contains("unhealthy")
}

/// The stack's snapshot, from the shell.
fn status_json(console: &Console) -> serde_json::Value {
    let out = console.triad(&["status", "--json"]);
    assert!(
        out.status.success(),
        "status: {}",
        crate::support::text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn versions(snapshot: &serde_json::Value) -> Vec<String> {
    snapshot["azs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|az| az["instances"].as_array().into_iter().flatten())
        .map(|i| i["version"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn the_dashboard_shows_three_healthy_azs() {
    let console = Console::open("tmux-board");
    let screen = console.until(
        "three AZ columns with a healthy target each",
        Duration::from_secs(120),
        three_healthy_azs,
    );
    for az in ["us-east-1a", "us-east-1b", "us-east-1c"] {
        assert!(screen.contains(az), "{az} missing:\n{screen}");
    }
    assert!(screen.contains("DB primary"), "{screen}");
    assert!(screen.contains("DB standby"), "{screen}");
    assert!(
        screen.contains("sandbox"),
        "the header names the backend:\n{screen}"
    );

    // The help screen opens and closes with the keyboard alone.
    console.keys(&["?"]);
    console.until("the help screen", Duration::from_secs(10), |s| {
        s.contains("GameDay: fail one AZ")
    });
    console.keys(&["Escape"]);
    console.until(
        "the dashboard again",
        Duration::from_secs(10),
        three_healthy_azs,
    );
}

#[test]
fn a_deploy_from_the_dialog_completes() {
    let console = Console::open("tmux-deploy");
    console.until(
        "three healthy AZs",
        Duration::from_secs(120),
        three_healthy_azs,
    );

    // d opens the dialog on the version field; Tab moves to "min healthy %".
    console.keys(&["d", "2.0.0", "Tab", "BSpace", "BSpace", "66", "Enter"]);
    console.until("the deploy confirmation", Duration::from_secs(10), |s| {
        s.contains("Deploy 2.0.0 to tmux-deploy?")
    });
    console.keys(&["y", "Enter"]);
    let screen = console.until(
        "the refresh ending Successful",
        Duration::from_secs(300),
        |s| s.contains("Successful 100%") && s.contains("→ 2.0.0"),
    );
    assert!(screen.contains("2.0.0"), "{screen}");

    let snapshot = status_json(&console);
    let versions = versions(&snapshot);
    assert!(
        !versions.is_empty() && versions.iter().all(|v| v == "2.0.0"),
        "every instance runs 2.0.0: {versions:?}"
    );
}

#[test]
fn a_gameday_from_the_dialog_runs_to_a_written_report() {
    let console = Console::open("tmux-gameday");
    console.until(
        "three healthy AZs",
        Duration::from_secs(120),
        three_healthy_azs,
    );

    // g opens the form on the AZ field (the first AZ) with terminate-az; Tab Tab reaches the
    // duration, which becomes 10 s.
    console.keys(&["g", "Tab", "Tab", "BSpace", "BSpace", "10", "Enter"]);
    let confirm = console.until(
        "the dry run and confirmation",
        Duration::from_secs(30),
        |s| s.contains("GameDay: terminate-az in us-east-1a"),
    );
    assert!(
        confirm.contains("SIGKILL instance i-"),
        "the dry run lists what it touches:\n{confirm}"
    );
    console.keys(&["y", "Enter"]);
    let screen = console.until("the report", Duration::from_secs(400), |s| {
        s.contains("verdict:")
    });
    assert!(screen.contains("report.md"), "{screen}");

    let reports = console.stack_dir().join("reports");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&reports)
        .expect("the reports directory")
        .map(|e| e.expect("entry").path())
        .collect();
    let [dir] = dirs.as_slice() else {
        panic!("one report directory: {dirs:?}");
    };
    for file in ["report.md", "report.json", "report.svg"] {
        let path: &Path = &dir.join(file);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} is written", path.display());
    }
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("read report.json"),
    )
    .expect("report.json is JSON");
    assert!(
        report["requests_during"].as_u64().unwrap_or(0) > 0,
        "the probe ran during the fault: {report}"
    );
}

/// The requests per second of each AZ column as the dashboard shows them ("req/s 0.5/s"),
/// `None` for a column that says it has no traffic yet.
fn request_rates(screen: &str) -> Vec<Option<f64>> {
    let mut rates = Vec::new();
    // A chart's label starts its column's line; an instance's "0.3 req/s" does not count.
    for (i, _) in screen.match_indices("req/s ") {
        if !screen[..i].ends_with('│') {
            continue;
        }
        let rest = &screen[i + "req/s ".len()..];
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        rates.push(number.parse().ok());
    }
    rates
}

/// With `[sandbox] traffic = "gentle"` the dashboard moves by itself: every column starts
/// with no traffic, then shows requests per second above zero, and the events log sums the
/// traffic up (one line, not one per request).
#[test]
fn gentle_traffic_moves_the_dashboard() {
    let console = Console::open_with("tmux-gentle", "[sandbox]\ntraffic = \"gentle\"\n");
    console.until(
        "three healthy AZs",
        Duration::from_secs(120),
        three_healthy_azs,
    );
    // Every chart shows traffic, not only the request rates: an AZ's p99 gets its first point
    // a moment after its first request is counted, so both are awaited together.
    console.until(
        "a request rate above zero in every AZ column, and no chart without traffic",
        Duration::from_secs(120),
        |s| {
            let rates = request_rates(s);
            rates.len() == 3
                && rates.iter().all(|r| r.is_some_and(|r| r > 0.0))
                && !s.contains("no traffic yet")
        },
    );
    console.until(
        "the traffic's start in the events pane",
        Duration::from_secs(30),
        |s| s.contains("gentle traffic on"),
    );
    let snapshot = status_json(&console);
    let traffic_events = snapshot["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("gentle traffic"))
        })
        .count();
    assert!(
        (1..=2).contains(&traffic_events),
        "summed up, not one event per request: {traffic_events}"
    );
}

#[test]
fn request_rates_are_read_per_column() {
    let screen = "│req/s 0.5/s   ││req/s no traffic yet ││req/s 12/s │\n│● i-1 v1 · 0.3 req/s │";
    assert_eq!(request_rates(screen), vec![Some(0.5), None, Some(12.0)]);
}
