//! The real `triad` binary against the local sandbox, as a person uses it from a shell:
//! `up` starts the stack's daemon (this same binary, `triad sandbox serve`) and streams the
//! bring-up, `status --json` reads the per-AZ snapshot, `down` asks for the stack's name and
//! then removes every process and the state. Needs `TRIAD_WEBAPP_BIN`, `TRIAD_MAILER_BIN` and
//! `TRIAD_TEST_MOTO_BIN`, all provided by `scripts/test`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

fn triad(home: &Path, spec: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_triad"));
    command
        .env("TRIAD_HOME", home)
        .envs(support::sandbox_programs())
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

#[test]
fn up_status_down_from_the_shell() {
    let tmp = support::open_tempdir();
    let home = tmp.path().join("home");
    let spec = tmp.path().join("stack.toml");
    std::fs::write(&spec, support::spec_toml("cli-sbx")).expect("write the spec");
    let _take_down = TakeDown {
        home: &home,
        spec: &spec,
    };

    let plan = run(&mut triad(&home, &spec, &["plan"]));
    assert!(plan.status.success(), "{}", support::text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("LoadBalancer"),
        "{}",
        support::text(&plan)
    );

    let up = run(&mut triad(&home, &spec, &["up", "--yes"]));
    assert!(up.status.success(), "{}", support::text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        stdout.contains("stack CREATE_COMPLETE"),
        "{}",
        support::text(&up)
    );
    assert!(
        stdout.contains("[8/8]"),
        "X of Y progress: {}",
        support::text(&up)
    );

    // Every instance becomes healthy behind the load balancer.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = run(&mut triad(&home, &spec, &["status", "--json"]));
        assert!(status.status.success(), "{}", support::text(&status));
        let snapshot: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status --json is JSON");
        let azs = snapshot["azs"].as_array().expect("azs").clone();
        let healthy = azs
            .iter()
            .flat_map(|az| az["instances"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["health"] == "Healthy" && i["lifecycle"] == "InService")
            .count();
        if azs.len() == 3 && healthy == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {snapshot:#}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // `down` without --yes wants the stack's name: an empty answer changes nothing.
    let refused = run(&mut triad(&home, &spec, &["down"]));
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        support::text(&refused)
    );
    assert!(home.join("cli-sbx").exists(), "the state is still there");

    let down = run(&mut triad(&home, &spec, &["down", "--yes"]));
    assert!(down.status.success(), "{}", support::text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("stack DELETE_COMPLETE"),
        "{}",
        support::text(&down)
    );
    assert!(!home.join("cli-sbx").exists(), "down removes the state");
}
