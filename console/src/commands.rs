//! The non-interactive commands, for scripts and CI. Each returns an [`Outcome`] whose exit
//! code says what happened:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (deploy Successful, drill passed, nothing left to restore) |
//! | 1 | it ran and the outcome is bad (refresh Failed/Cancelled/rolled back, drill failed) |
//! | 2 | bad input (spec, flags) — nothing was changed |
//! | 3 | refused (read-only, safety rule, not confirmed) or not available on this backend |
//! | 4 | the backend could not be reached or answered with an error |

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provision::port::{
    BackendChoice, BackendKind, Cloud, CloudError, DeployRequest, Fault, RefreshStatus,
    ScaleInProtectedInstances, Snapshot, StackRef, StandbyInstances, parse_env_override,
};
use provision::spec::StackSpec;
use tokio::sync::{mpsc, watch};

use crate::backend;
use crate::cli::{Cli, DeployArgs, GamedayArgs};
use crate::drill::engine::{self, DrillConfig, DrillUpdate, StopConditions};
use crate::drill::journal::{self, Entry, Journal};
use crate::drill::report::Verdict;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Bad,
    Invalid,
    Refused,
    BackendError,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Bad => 1,
            Outcome::Invalid => 2,
            Outcome::Refused => 3,
            Outcome::BackendError => 4,
        }
    }

    /// The outcome a cloud error means.
    pub fn of(error: &CloudError) -> Outcome {
        match error {
            CloudError::Invalid { .. } => Outcome::Invalid,
            CloudError::Refused { .. }
            | CloudError::ReadOnly { .. }
            | CloudError::Unsupported { .. } => Outcome::Refused,
            _ => Outcome::BackendError,
        }
    }
}

fn fail(error: &CloudError) -> Outcome {
    eprintln!("triad: {error}");
    Outcome::of(error)
}

/// The stack named by the spec file.
pub fn load_stack(cli: &Cli) -> Result<StackRef, Outcome> {
    let spec = StackSpec::load(&cli.stack).map_err(|e| {
        eprintln!("triad: {}: {e}", cli.stack.display());
        Outcome::Invalid
    })?;
    StackRef::new(spec.name).map_err(|e| fail(&e))
}

/// The stack of the spec file and its guarded backend: where every command that talks to a
/// cloud starts.
async fn session(cli: &Cli) -> Result<(StackRef, BackendChoice, Arc<dyn Cloud>), Outcome> {
    let stack = load_stack(cli)?;
    let (choice, cloud) = open(cli, &stack).await?;
    Ok((stack, choice, cloud))
}

/// The backend for this command, guarded.
pub async fn open(cli: &Cli, stack: &StackRef) -> Result<(BackendChoice, Arc<dyn Cloud>), Outcome> {
    let choice =
        BackendChoice::from_process_env(&backend::flags(&cli.backend)).map_err(|e| fail(&e))?;
    let inner = backend::connect(&choice, stack)
        .await
        .map_err(|e| fail(&e))?;
    Ok((choice, backend::guard(inner, stack, cli.read_only)))
}

/// Asks on the terminal; true only when the answer is exactly `expected`.
fn confirm(prompt: &str, expected: &str) -> bool {
    eprint!("{prompt} Type {expected} to go ahead: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim() == expected
}

/// `triad status [--json]`.
pub async fn status(cli: &Cli, json: bool) -> Outcome {
    let (stack, _, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    match cloud.snapshot(&stack).await {
        Ok(snapshot) => {
            if json {
                match serde_json::to_string_pretty(&snapshot) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("triad: {e}");
                        return Outcome::BackendError;
                    }
                }
            } else {
                print!("{}", status_text(&snapshot));
            }
            Outcome::Done
        }
        Err(e) => fail(&e),
    }
}

/// The plain-text status: one block per AZ.
pub fn status_text(snapshot: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "stack {}", snapshot.stack);
    if let Some(c) = &snapshot.capacity {
        let _ = writeln!(
            out,
            "capacity desired {} min {} max {}",
            c.desired, c.min, c.max
        );
    }
    if let Some(url) = &snapshot.endpoint {
        let _ = writeln!(out, "endpoint {url}");
    }
    for az in &snapshot.azs {
        let db = az.database.as_ref().map_or(String::new(), |d| {
            format!(" · DB {:?} {}", d.role, d.status)
        });
        let _ = writeln!(
            out,
            "{}: {} healthy of {} instances{db}",
            az.az,
            az.healthy_capacity(),
            az.instances.len()
        );
        for i in &az.instances {
            let _ = writeln!(
                out,
                "  {} {} {} {}",
                i.id,
                i.lifecycle,
                i.health,
                i.version.as_deref().unwrap_or("?")
            );
        }
    }
    if let Some(r) = snapshot.active_refresh() {
        let _ = writeln!(
            out,
            "refresh {} {} {}%",
            r.id,
            r.status,
            r.percentage_complete.unwrap_or(0)
        );
    }
    for e in &snapshot.errors {
        let _ = writeln!(out, "{} unavailable: {}", e.section, e.message);
    }
    out
}

/// Builds the deploy request from the command line.
pub fn deploy_request(args: &DeployArgs) -> Result<DeployRequest, CloudError> {
    let mut request = DeployRequest::new(args.version.clone());
    request.binary = args.binary.clone();
    for pair in &args.env {
        let (k, v) = parse_env_override(pair)?;
        request.env.insert(k, v);
    }
    let p = &mut request.preferences;
    if let Some(v) = args.min_healthy {
        p.min_healthy_percentage = v;
    }
    if let Some(v) = args.max_healthy {
        p.max_healthy_percentage = v;
    }
    p.instance_warmup_seconds = args.warmup;
    p.checkpoint_percentages = args.checkpoints.clone();
    p.checkpoint_delay_seconds = args.checkpoint_delay;
    p.skip_matching = args.skip_matching;
    p.auto_rollback = args.auto_rollback;
    p.alarms = args.alarms.clone();
    if let Some(v) = args.bake_time {
        p.bake_time_seconds = v;
    }
    if let Some(v) = &args.scale_in_protected {
        p.scale_in_protected_instances = v
            .parse::<ScaleInProtectedInstances>()
            .map_err(|e| CloudError::invalid("scale_in_protected", e.to_string()))?;
    }
    if let Some(v) = &args.standby {
        p.standby_instances = v
            .parse::<StandbyInstances>()
            .map_err(|e| CloudError::invalid("standby", e.to_string()))?;
    }
    request.validate()?;
    Ok(request)
}

/// `triad deploy`.
pub async fn deploy(cli: &Cli, args: &DeployArgs) -> Outcome {
    let request = match deploy_request(args) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let (stack, _, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let id = match cloud.deploy(&stack, &request).await {
        Ok(id) => id,
        Err(e) => return fail(&e),
    };
    println!(
        "instance refresh {id} started: {} → {}",
        stack.name, request.version
    );
    if !args.wait {
        return Outcome::Done;
    }
    let mut updates = cloud.wait_refresh(&stack, &id);
    let mut last = None;
    while let Some(update) = updates.next().await {
        match update {
            Ok(refresh) => {
                println!(
                    "{} {}%{}",
                    refresh.status,
                    refresh.percentage_complete.unwrap_or(0),
                    refresh
                        .status_reason
                        .as_deref()
                        .map_or(String::new(), |r| format!(" — {r}"))
                );
                let done = refresh.status.is_terminal();
                last = Some(refresh.status);
                if done {
                    break;
                }
            }
            Err(e) => return fail(&e),
        }
    }
    match last {
        Some(RefreshStatus::Successful) => Outcome::Done,
        Some(_) => Outcome::Bad,
        None => {
            eprintln!("triad: the refresh {id} vanished before it ended");
            Outcome::BackendError
        }
    }
}

/// `triad gameday …`.
pub async fn gameday(cli: &Cli, args: &GamedayArgs) -> Outcome {
    let kind = match &args.fault {
        Some(k) => k.as_str(),
        None => {
            eprintln!(
                "triad: --fault is required: one of {}",
                Fault::KINDS.join(", ")
            );
            return Outcome::Invalid;
        }
    };
    let fault = match Fault::parse(kind, args.az.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let (stack, choice, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let plan = match cloud.describe_fault(&stack, &fault).await {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    println!(
        "GameDay on {}: {} in {}",
        stack.name,
        fault.kind(),
        plan.az.as_deref().unwrap_or("?")
    );
    for action in &plan.actions {
        println!(
            "  {} {}{}",
            action.call,
            action.resource,
            if action.reversible {
                ""
            } else {
                " (not undone by restore)"
            }
        );
    }
    for note in &plan.notes {
        println!("  note: {note}");
    }
    if args.dry_run {
        return Outcome::Done;
    }
    if cli.read_only {
        eprintln!("triad: read-only session: GameDay refused");
        return Outcome::Refused;
    }
    if !args.yes {
        let expected = match choice.kind() {
            BackendKind::Aws => plan.az.clone().unwrap_or_else(|| stack.name.clone()),
            _ => "y".to_string(),
        };
        if !confirm("This changes the stack.", &expected) {
            eprintln!("triad: not confirmed; nothing was changed");
            return Outcome::Refused;
        }
    }
    let mut config = DrillConfig::new(fault, Duration::from_secs(args.duration.max(1)));
    config.probe_rate = args.rate;
    config.signup_rate = args.signups;
    config.force = args.force;
    config.stop = StopConditions {
        max_error_rate: f64::from(args.max_error.min(100)) / 100.0,
        min_healthy_capacity: args.min_healthy,
        max_duration: Duration::from_secs(args.duration * 4 + 300),
        ..StopConditions::default()
    };
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    config.report_dir = Some(
        args.report
            .clone()
            .unwrap_or_else(|| backend::stack_dir(&stack).join(format!("reports/{stamp}"))),
    );
    let mut journal = match Journal::open(&backend::journal_path(&stack)) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("triad: cannot open the GameDay journal: {e}");
            return Outcome::BackendError;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let printer = tokio::spawn(async move {
        while let Some(update) = rx.recv().await {
            match update {
                DrillUpdate::Step(s) => println!("t+{:>3}s {:<13} {}", s.second, s.step, s.detail),
                DrillUpdate::Failed(e) => eprintln!("GameDay failed: {e}"),
                _ => {}
            }
        }
    });
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: restoring the fault and writing the report before exit");
            let _ = stop_tx.send(true);
        }
    });
    let result = engine::run(cloud, stack, config, &mut journal, tx, stop_rx).await;
    interrupt.abort();
    let _ = printer.await;
    match result {
        Ok(report) => {
            println!(
                "verdict {:?} · detect {} · recover {} · failed {} of {}",
                report.verdict,
                secs(report.time_to_detect_s),
                secs(report.time_to_recover_s),
                report.failed_requests,
                report.requests_during
            );
            if let Some(dir) = &args.report {
                println!("report: {}", dir.display());
            }
            match report.verdict {
                Verdict::Passed => Outcome::Done,
                Verdict::Failed => Outcome::Bad,
            }
        }
        Err(e) => {
            eprintln!("triad: {e}");
            Outcome::Bad
        }
    }
}

fn secs(v: Option<u64>) -> String {
    v.map_or("—".into(), |s| format!("{s} s"))
}

/// `triad gameday restore`: undo what the journal says is still in place.
pub async fn gameday_restore(cli: &Cli) -> Outcome {
    let stack = match load_stack(cli) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let path = backend::journal_path(&stack);
    let pending = match journal::pending(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("triad: {}: {e}", path.display());
            return Outcome::Invalid;
        }
    };
    if pending.is_empty() {
        println!(
            "nothing to restore: the journal {} shows no fault in place",
            path.display()
        );
        return Outcome::Done;
    }
    for (fault, plan) in &pending.unrecorded {
        println!(
            "warning: {} was about to be injected when the drill stopped and its result was never recorded; check by hand:",
            fault.kind()
        );
        for a in plan {
            println!("  {} {}", a.call, a.resource);
        }
    }
    let (_, cloud) = match open(cli, &stack).await {
        Ok(c) => c,
        Err(o) => return o,
    };
    let mut journal = match Journal::open(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("triad: {e}");
            return Outcome::BackendError;
        }
    };
    let mut outcome = Outcome::Done;
    for record in pending.records.iter().rev() {
        let _ = journal.append(&Entry::RestoreIntent {
            at: time::OffsetDateTime::now_utc(),
            record_id: record.id.clone(),
        });
        match cloud.restore(record).await {
            Ok(()) => {
                let _ = journal.append(&Entry::Restored {
                    at: time::OffsetDateTime::now_utc(),
                    record_id: record.id.clone(),
                });
                println!("restored {} ({})", record.fault.kind(), record.id);
            }
            Err(e) => {
                eprintln!("triad: restoring {}: {e}", record.id);
                outcome = Outcome::of(&e);
            }
        }
    }
    if !pending.unrecorded.is_empty() && outcome == Outcome::Done {
        outcome = Outcome::Bad;
    }
    outcome
}

/// `triad plan|up|down` until the provisioning backends are wired.
pub fn not_built(what: &str) -> Outcome {
    eprintln!("triad: {what} is not built yet");
    Outcome::Refused
}
