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
    wait_until_healthy(&home, &spec);

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
}
