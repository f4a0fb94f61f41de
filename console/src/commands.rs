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
//!
//! A GameDay whose steady state is not met (an AZ without healthy capacity, probe errors before
//! the fault) exits 1: it ran, found the stack unfit for a drill, and injected nothing. Errors
//! reach the exit code through [`Outcome::of`] only, so a cloud's refusal deep inside the drill
//! engine (a safety rule at inject) still exits 3.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use provision::port::{
    BackendChoice, BackendKind, CapacityCheck, Cloud, CloudError, DeployRequest, Fault,
    ProvisionEvent, RefreshStatus, ScaleInProtectedInstances, ShiftRequest, Snapshot, StackRef,
    StandbyInstances, parse_env_override, shift,
};
use provision::spec::StackSpec;
use tokio::sync::{mpsc, watch};

use crate::backend;
use crate::cli::{
    Cli, DeployArgs, GamedayArgs, InstanceArgs, LoadArgs, ReleaseArgs, ShiftArgs, ShiftCommand,
};
use crate::drill::engine::{self, DrillConfig, DrillError, DrillUpdate, StopConditions};
use crate::drill::journal::{self, Entry, Journal};
use crate::drill::remedy::{Impairment, Remedy};
use crate::drill::report::{self, Verdict};
use crate::load::engine::{LoadError, LoadPlan, LoadUpdate};
use crate::policy;

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

    /// The outcome an error means: every command maps its errors to an exit code here.
    pub fn of(error: &impl ExitCause) -> Outcome {
        error.outcome()
    }
}

/// An error that knows which [`Outcome`] it means.
pub trait ExitCause {
    fn outcome(&self) -> Outcome;
}

impl ExitCause for CloudError {
    fn outcome(&self) -> Outcome {
        match self {
            CloudError::Invalid { .. } => Outcome::Invalid,
            CloudError::Refused { .. }
            | CloudError::ReadOnly { .. }
            | CloudError::Unsupported { .. } => Outcome::Refused,
            _ => Outcome::BackendError,
        }
    }
}

impl ExitCause for DrillError {
    fn outcome(&self) -> Outcome {
        match self {
            // It ran, and the stack was not fit for a drill: a bad outcome, nothing injected.
            DrillError::SteadyState(_) => Outcome::Bad,
            DrillError::Cloud { source, .. } => source.outcome(),
            DrillError::NoSnapshot | DrillError::Probe(_) | DrillError::Io { .. } => {
                Outcome::BackendError
            }
        }
    }
}

fn fail(error: &CloudError) -> Outcome {
    eprintln!("triad: {error}");
    Outcome::of(error)
}

/// The spec file, and the stack it names.
pub fn load_spec(cli: &Cli) -> Result<(StackSpec, StackRef), Outcome> {
    if let Some(hint) = crate::init::missing_spec_hint(&cli.stack) {
        eprintln!("triad: {hint}");
        return Err(Outcome::Invalid);
    }
    let spec = StackSpec::load(&cli.stack).map_err(|e| {
        eprintln!("triad: {}: {e}", cli.stack.display());
        Outcome::Invalid
    })?;
    let stack = StackRef::new(spec.name.clone())
        .map_err(|e| fail(&e))?
        .in_region(spec.region.clone());
    Ok((spec, stack))
}

/// The stack named by the spec file.
pub fn load_stack(cli: &Cli) -> Result<StackRef, Outcome> {
    load_spec(cli).map(|(_, stack)| stack)
}

/// The stack of the spec file and its guarded backend: where every command that talks to a
/// running stack starts. On the sandbox, a stack that is not running yet is brought up first,
/// with its progress on standard error.
pub async fn session(cli: &Cli) -> Result<(StackRef, bool, Arc<dyn Cloud>), Outcome> {
    let (spec, stack) = load_spec(cli)?;
    let (choice, cloud) = open(cli, &stack).await?;
    backend::ensure_running(&choice, &cloud, &spec, &stack, |event| {
        eprintln!("{}", progress_line(event));
    })
    .await
    .map_err(|e| fail_with_log(&e, &stack))?;
    Ok((stack, is_production(&choice, &spec), cloud))
}

/// Whether changes must be confirmed with a typed name ([`policy::is_production`]).
fn is_production(choice: &BackendChoice, spec: &StackSpec) -> bool {
    policy::is_production(choice.kind(), spec.is_tagged_production())
}

/// Reports `error`, and on the sandbox the end of the daemon's log when it says why.
fn fail_with_log(error: &CloudError, stack: &StackRef) -> Outcome {
    let outcome = fail(error);
    if matches!(
        error,
        CloudError::Unavailable { .. } | CloudError::Backend { .. }
    ) {
        print_daemon_log_tail(stack);
    }
    outcome
}

/// Prints the end of the sandbox daemon's log, if there is one, to say why something failed.
fn print_daemon_log_tail(stack: &StackRef) {
    let tail = backend::daemon_log_tail(stack, 8);
    if !tail.is_empty() {
        eprintln!("the sandbox daemon's log ends with:");
        for line in tail {
            eprintln!("  {line}");
        }
    }
}

/// One provisioning event as a line: `[ 3/10] CREATE_COMPLETE  LoadBalancer  Type  reason`.
pub fn progress_line(event: &ProvisionEvent) -> String {
    match event {
        ProvisionEvent::Started {
            stack,
            operation,
            total,
            ..
        } => {
            let verb = match operation {
                provision::port::StackOperation::Create => "creating",
                provision::port::StackOperation::Update => "updating",
                provision::port::StackOperation::Delete => "deleting",
            };
            format!("{verb} stack {stack}: {total} resources")
        }
        ProvisionEvent::Resource(r) => {
            let width = r.total.to_string().len();
            let mut line = format!(
                "[{:>width$}/{}] {:<20} {}  {}",
                r.done, r.total, r.status, r.logical_id, r.resource_type
            );
            if let Some(id) = &r.physical_id {
                line.push_str(&format!("  {id}"));
            }
            if let Some(reason) = &r.reason {
                line.push_str(&format!(" — {reason}"));
            }
            line
        }
        ProvisionEvent::Finished {
            stack_status,
            outputs,
            summary,
            ..
        } => {
            let mut line = format!("stack {stack_status}");
            if let Some(summary) = summary {
                line.push_str(&format!("\n{summary}"));
            }
            for (key, value) in &outputs.0 {
                line.push_str(&format!("\n  {key} = {value}"));
            }
            line
        }
    }
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

/// How long a finished refresh took: "refresh time 14.2 s", and on a `fast` sandbox also on
/// the spec's AWS clock — the scheduled time multiplied by the factor, the real program start
/// of each launch wave (the model's distinct launch times during the refresh) kept as
/// measured.
pub fn refresh_time_line(
    refresh: &provision::port::Refresh,
    snapshot: &Snapshot,
) -> Option<String> {
    let (start, end) = (refresh.started_at?, refresh.ended_at?);
    let measured = (end - start).as_seconds_f64().max(0.0);
    let Some(clock) = snapshot.clock.as_ref().filter(|c| c.scale.is_compressed()) else {
        return Some(format!("refresh time {measured:.1} s"));
    };
    let mut waves: Vec<time::OffsetDateTime> = snapshot
        .events
        .iter()
        .filter(|e| {
            e.at >= start
                && e.at <= end
                && e.message.starts_with("Launching a new EC2 instance: ")
                && !e.message.contains("Status Reason")
        })
        .map(|e| e.at)
        .collect();
    waves.sort();
    waves.dedup();
    let unscaled = clock.program_start_seconds.unwrap_or(0.0) * waves.len() as f64;
    Some(format!(
        "refresh time {measured:.1} s here → ≈ {:.0} s on AWS (clock {}; {:.1} s of real \
         program start kept as measured)",
        clock.scale.predict(measured, unscaled),
        clock.scale,
        unscaled.min(measured)
    ))
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
    if let Some(scaling) = &snapshot.scaling {
        for view in &scaling.policies {
            let p = &view.policy;
            let current = view
                .current
                .map_or("no datapoint yet".to_owned(), |v| format!("{v:.0}"));
            let alarms: Vec<String> = view
                .alarms
                .iter()
                .map(|a| format!("{} {}", a.name, a.state))
                .collect();
            let _ = writeln!(
                out,
                "scaling policy {}: {} {current}, target {}{} · {}",
                p.name,
                p.metric.label(),
                p.target,
                if p.scale_in { "" } else { ", scale-in off" },
                alarms.join(", ")
            );
        }
        if let Some(d) = scaling.last_decision() {
            let _ = writeln!(out, "last scaling {} {}: {}", d.at, d.policy, d.reason);
        }
    }
    if let Some(url) = &snapshot.endpoint {
        let _ = writeln!(out, "endpoint {url}");
    }
    if let Some(clock) = &snapshot.clock {
        for line in clock.lines() {
            let _ = writeln!(out, "{line}");
        }
    }
    for az in &snapshot.azs {
        let mut db = az.database.as_ref().map_or(String::new(), |d| {
            format!(" · DB {:?} {}", d.role, d.status)
        });
        if let Some(shift) = snapshot.shift_away_from(&az.az) {
            db.push_str(&format!(" · zonal shift {shift}"));
        }
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
    let mut ended = None;
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
                    ended = Some(refresh);
                    break;
                }
            }
            Err(e) => return fail(&e),
        }
    }
    if let Some(refresh) = &ended
        && let Ok(snapshot) = cloud.snapshot(&stack).await
        && let Some(line) = refresh_time_line(refresh, &snapshot)
    {
        println!("{line}");
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
    let fault = match gameday_fault(args) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if let Err(o) = gameday_remedy(args) {
        return o;
    }
    let (stack, production, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let drill = Gameday {
        cloud,
        production,
        read_only: cli.read_only,
        journal: backend::journal_path(&stack),
        report_dir: policy::report_dir(
            &stack,
            args.report.as_deref(),
            time::OffsetDateTime::now_utc(),
        ),
        stack,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: restoring the fault and writing the report before exit");
            let _ = stop_tx.send(true);
        }
    });
    let outcome = drill.run(fault, args, confirm, stop_rx).await;
    interrupt.abort();
    outcome
}

/// The remedy `--remedy` and the `--impaired-*` thresholds name; bad input is exit 2.
fn gameday_remedy(args: &GamedayArgs) -> Result<Option<Remedy>, Outcome> {
    let Some(name) = &args.remedy else {
        return Ok(None);
    };
    if name != "zonal-shift" {
        eprintln!(
            "triad: --remedy {name:?} is not one of {}",
            Remedy::NAMES.join(", ")
        );
        return Err(Outcome::Invalid);
    }
    let defaults = Impairment::default();
    let impaired = Impairment {
        error_pct: args.impaired_error_pct.unwrap_or(defaults.error_pct),
        p99_ms: args.impaired_p99_ms.unwrap_or(defaults.p99_ms),
        for_seconds: args.impaired_for.unwrap_or(defaults.for_seconds),
    };
    if !(0.0..=100.0).contains(&impaired.error_pct)
        || !impaired.p99_ms.is_finite()
        || impaired.p99_ms <= 0.0
        || impaired.for_seconds == 0
    {
        eprintln!(
            "triad: --impaired-error-pct is 0-100, --impaired-p99-ms above 0, --impaired-for at \
             least 1"
        );
        return Err(Outcome::Invalid);
    }
    Ok(Some(Remedy::ZonalShift { impaired }))
}

/// The fault `--fault` and `--az` name; bad input is exit 2 before anything is opened.
fn gameday_fault(args: &GamedayArgs) -> Result<Fault, Outcome> {
    let Some(kind) = &args.fault else {
        eprintln!(
            "triad: --fault is required: one of {}",
            Fault::KINDS.join(", ")
        );
        return Err(Outcome::Invalid);
    };
    let fault = Fault::parse(kind, args.az.as_deref()).map_err(|e| fail(&e))?;
    match args.latency_ms {
        Some(latency_ms) => fault.with_latency(latency_ms).map_err(|e| fail(&e)),
        None => Ok(fault),
    }
}

/// A GameDay from the command line once its stack is open: the dry run, the refusals
/// (read-only, not confirmed), the drill with its progress on standard output, and the exit
/// code of how it ended.
pub struct Gameday {
    /// The guarded cloud: its safety rules refuse a fault at inject.
    pub cloud: Arc<dyn Cloud>,
    pub stack: StackRef,
    pub production: bool,
    pub read_only: bool,
    pub journal: std::path::PathBuf,
    pub report_dir: std::path::PathBuf,
}

impl Gameday {
    /// Runs `fault` as `args` say; `confirm(prompt, word)` asks the operator (unless `--yes`)
    /// and `stop` ends the drill early (restored, reported).
    pub async fn run(
        self,
        fault: Fault,
        args: &GamedayArgs,
        confirm: impl FnOnce(&str, &str) -> bool,
        stop: watch::Receiver<bool>,
    ) -> Outcome {
        let Gameday {
            cloud,
            stack,
            production,
            read_only,
            journal,
            report_dir,
        } = self;
        let plan = match cloud.describe_fault(&stack, &fault).await {
            Ok(p) => p,
            Err(e) => return fail(&e),
        };
        println!(
            "GameDay on {}: {} in {} for {} s",
            stack.name,
            fault.kind(),
            plan.az.as_deref().unwrap_or("?"),
            args.duration.max(1)
        );
        for action in &plan.actions {
            println!("  {action}");
        }
        for note in &plan.notes {
            println!("  note: {note}");
        }
        let mut config = DrillConfig::new(fault, Duration::from_secs(args.duration.max(1)));
        config.probe_rate = args.rate;
        config.signup_rate = args.signups;
        config.force = args.force;
        config.stop = StopConditions::for_drill(config.duration, args.max_error, args.min_healthy);
        config.remedy = match gameday_remedy(args) {
            Ok(remedy) => remedy,
            Err(outcome) => return outcome,
        };
        println!("  {}", config.summary());
        if args.dry_run {
            return Outcome::Done;
        }
        if read_only {
            eprintln!("triad: read-only session: GameDay refused");
            return Outcome::Refused;
        }
        if !args.yes {
            let expected = policy::confirmation_word(production, &stack, plan.az.as_deref());
            if !confirm("This changes the stack.", &expected) {
                eprintln!("triad: not confirmed; nothing was changed");
                return Outcome::Refused;
            }
        }
        config.report_dir = Some(report_dir.clone());
        let mut journal = match Journal::open(&journal) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("triad: cannot open the GameDay journal: {e}");
                return Outcome::BackendError;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                match update {
                    DrillUpdate::Step(s) => {
                        println!("t+{:>3}s {:<13} {}", s.second, s.step, s.detail)
                    }
                    DrillUpdate::Failed(e) => eprintln!("GameDay failed: {e}"),
                    _ => {}
                }
            }
        });
        let result = engine::run(cloud, stack, config, &mut journal, tx, stop).await;
        let _ = printer.await;
        match result {
            Ok(report) => {
                for line in report::summary_lines(&report) {
                    println!("{line}");
                }
                println!("report: {}", report_dir.display());
                match report.verdict {
                    Verdict::Passed => Outcome::Done,
                    Verdict::Failed => Outcome::Bad,
                }
            }
            Err(e) => {
                eprintln!("triad: GameDay: {e}");
                Outcome::of(&e)
            }
        }
    }
}

/// `triad load …`. The refusals come first and touch nothing: bad flags (2), a read-only
/// session (3), and a production stack (AWS, or tagged production) without `--yes` and
/// without a terminal to confirm on (3). Then the stack (brought up first on the sandbox), on
/// AWS the warning when the stack's own WAF rate rule would block this machine, the
/// confirmation on production stacks (the endpoint and the peak rate named, the stack's name
/// typed), the load with a live line a second, and the report. Ctrl-C stops the load (or,
/// after it, the scale-in watch) and still writes the report. It exits 0 once the report is
/// written, whatever the load saw: the report says what that was.
pub async fn load(cli: &Cli, args: &LoadArgs) -> Outcome {
    use std::io::IsTerminal;
    let schedule = match args.schedule() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("triad: {e}");
            return Outcome::Invalid;
        }
    };
    let (spec, stack) = match load_spec(cli) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if cli.read_only {
        eprintln!("triad: read-only session: load refused");
        return Outcome::Refused;
    }
    let choice = match BackendChoice::from_process_env(&backend::flags(&cli.backend)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let production = is_production(&choice, &spec);
    if production && !args.yes && !std::io::stdin().is_terminal() {
        eprintln!(
            "triad: a load on {} must be confirmed (it is a production stack): run it from a \
             terminal, or pass --yes",
            stack.name
        );
        return Outcome::Refused;
    }
    let (stack, _, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let endpoint = match cloud.snapshot(&stack).await {
        Ok(snapshot) => snapshot.endpoint,
        Err(e) => return fail(&e),
    };
    let Some(endpoint) = endpoint else {
        eprintln!("triad: the stack has no endpoint to load (is it up?)");
        return Outcome::Refused;
    };
    if choice.kind() == BackendKind::Aws
        && let Some(warning) =
            policy::waf_warning(spec.waf.as_ref().and_then(|w| w.rate_limit), &schedule)
    {
        eprintln!("warning: {warning}");
    }
    let mut plan = LoadPlan::new(schedule);
    plan.path = args.path.clone();
    plan.signup_rate = args.signups;
    plan.observe_after = Duration::from_secs(args.observe);
    plan.endpoint = Some(endpoint.clone());
    plan.activity_dir = Some(backend::stack_dir(&stack));
    let report_dir = policy::load_report_dir(
        &stack,
        args.report.as_deref(),
        time::OffsetDateTime::now_utc(),
    );
    plan.report_dir = Some(report_dir.clone());
    println!(
        "load on {}: {} at {endpoint}",
        stack.name,
        plan.shape().describe()
    );
    if production
        && !args.yes
        && !confirm(
            &policy::load_prompt(&stack, &endpoint, &schedule),
            &policy::confirmation_word(true, &stack, None),
        )
    {
        eprintln!("triad: not confirmed; nothing was sent");
        return Outcome::Refused;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupt = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping and writing the report");
            let _ = stop_tx.send(true);
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let observe = args.observe;
    let printer = tokio::spawn(async move {
        let mut last: Option<crate::load::phases::Observation> = None;
        let mut ended = false;
        while let Some(update) = rx.recv().await {
            match update {
                LoadUpdate::Live(live) => println!("{}", load_line(&live, last.as_ref())),
                LoadUpdate::Observed(o) => {
                    // After the load no live line comes: say when capacity changes.
                    let shown =
                        |o: &crate::load::phases::Observation| (o.desired, o.total_healthy());
                    if ended && last.as_ref().map(shown) != Some(shown(&o)) {
                        println!(
                            "t+{:>3}s desired {} · healthy {}",
                            o.second,
                            o.desired.map_or_else(|| "?".to_string(), |d| d.to_string()),
                            o.total_healthy()
                        );
                    }
                    last = Some(o);
                }
                LoadUpdate::LoadEnded { second } => {
                    ended = true;
                    println!(
                        "t+{second:>3}s load ended; watching the scale-in back to min (up to \
                         {observe} s, Ctrl-C to stop)"
                    );
                }
                LoadUpdate::Failed(e) => eprintln!("load failed: {e}"),
                _ => {}
            }
        }
    });
    let result = crate::load::engine::run(cloud, stack, plan, tx, stop_rx).await;
    let _ = printer.await;
    interrupt.abort();
    match result {
        Ok(report) => {
            for line in crate::load::report::summary_lines(&report) {
                println!("{line}");
            }
            println!("report: {}", report_dir.display());
            Outcome::Done
        }
        Err(e) => {
            eprintln!("triad: load: {e}");
            match e {
                LoadError::Cloud { source, .. } => Outcome::of(&source),
                LoadError::NoEndpoint => Outcome::Refused,
                LoadError::Client(_) | LoadError::Report(_) => Outcome::BackendError,
            }
        }
    }
}

/// One live line of a load: "t+ 12s  50 req/s (target 50) · p50 3.1 ms · p99 12.0 ms ·
/// errors 0 · desired 2 · healthy 2 · requests/target 840/600".
pub fn load_line(
    live: &crate::load::generator::LiveStats,
    stack: Option<&crate::load::phases::Observation>,
) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.1} ms"));
    let errors: u64 = live.failed.values().sum();
    let mut line = format!(
        "t+{:>3}s {:>5} req/s (target {:.0}) · p50 {} · p99 {} · errors {errors}",
        live.elapsed.as_secs(),
        live.rate,
        live.target_rate,
        ms(live.latency.p50_ms),
        ms(live.latency.p99_ms),
    );
    if live.dropped > 0 {
        line.push_str(&format!(" · dropped {}", live.dropped));
    }
    if let Some(o) = stack {
        if let Some(d) = o.desired {
            line.push_str(&format!(" · desired {d}"));
        }
        line.push_str(&format!(" · healthy {}", o.total_healthy()));
        for p in &o.policies {
            let value = p
                .value
                .map_or_else(|| "?".to_string(), |v| format!("{v:.0}"));
            line.push_str(&format!(" · {} {value}/{:.0}", p.metric, p.target));
        }
    }
    line
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
            "nothing to restore: the journal {} shows no fault or zonal shift in place",
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
    for az in &pending.shifts {
        match journal::cancel_shift(cloud.as_ref(), &stack, &path, Some(az)).await {
            Ok(_) => println!("cancelled the zonal shift away from {az}"),
            Err(journal::ActError::Cloud(CloudError::NotFound { .. })) => {
                println!("the zonal shift away from {az} has already ended");
            }
            Err(journal::ActError::Cloud(e)) => {
                eprintln!("triad: cancelling the zonal shift away from {az}: {e}");
                outcome = Outcome::of(&e);
            }
            Err(e) => {
                eprintln!("triad: cancelling the zonal shift away from {az}: {e}");
                outcome = Outcome::BackendError;
            }
        }
    }
    if !pending.unrecorded.is_empty() && outcome == Outcome::Done {
        outcome = Outcome::Bad;
    }
    outcome
}

/// `triad plan`: what `up` would change, changing nothing. Exits 2 when something (a release
/// neither in the artefact bucket nor given) would stop `up`.
pub async fn plan(cli: &Cli, releases: &ReleaseArgs) -> Outcome {
    let (provisioning, cloud) = match provisioning(cli, releases).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    match provisioning.plan(cloud.as_ref()).await {
        Ok(plan) => {
            print!("{}", provision::aws::render_plan(&plan));
            if plan.blockers.is_empty() {
                Outcome::Done
            } else {
                Outcome::Invalid
            }
        }
        Err(e) => fail(&e),
    }
}

/// The spec, the backend and the release files `plan` and `up` work with.
async fn provisioning(
    cli: &Cli,
    releases: &ReleaseArgs,
) -> Result<(backend::Provisioning, Arc<dyn Cloud>), Outcome> {
    if !cli.backend.aws && (releases.webapp.is_some() || releases.mailer_zip.is_some()) {
        eprintln!(
            "triad: --webapp and --mailer-zip upload releases to AWS and need --aws; the \
             sandbox runs the programs named by TRIAD_WEBAPP_BIN and TRIAD_MAILER_BIN"
        );
        return Err(Outcome::Invalid);
    }
    let (spec, stack) = load_spec(cli)?;
    let (choice, cloud) = open(cli, &stack).await?;
    let mut provisioning = backend::Provisioning::new(choice, spec, stack, cli.read_only);
    provisioning.webapp = releases.webapp.clone();
    provisioning.mailer_zip = releases.mailer_zip.clone();
    Ok((provisioning, cloud))
}

/// Follows a provisioning stream, printing each event; the outcome says how it ended.
async fn follow(
    mut events: provision::port::CloudStream<ProvisionEvent>,
    stack: &StackRef,
) -> Outcome {
    let mut last = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                println!("{}", progress_line(&event));
                if let ProvisionEvent::Finished { stack_status, .. } = &event {
                    last = Some(*stack_status);
                }
            }
            Err(e) => return fail_with_log(&e, stack),
        }
    }
    match last {
        Some(status) if status.is_success() => Outcome::Done,
        Some(_) => {
            print_daemon_log_tail(stack);
            Outcome::Bad
        }
        None => {
            eprintln!("triad: the operation on {stack} ended without a final status");
            Outcome::BackendError
        }
    }
}

/// `triad up`: plan, confirm (on AWS), do what comes first (on AWS: the bootstrap stack and
/// release uploads), then apply with live "X of Y" progress.
pub async fn up(cli: &Cli, yes: bool, releases: &ReleaseArgs) -> Outcome {
    let (provisioning, cloud) = match provisioning(cli, releases).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    let stack = provisioning.stack.clone();
    let plan = match provisioning.plan(cloud.as_ref()).await {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    print!("{}", provision::aws::render_plan(&plan));
    if plan.is_empty() {
        return Outcome::Done;
    }
    if !plan.blockers.is_empty() {
        eprintln!("triad: up cannot go ahead (see above); nothing was changed");
        return Outcome::Invalid;
    }
    if cli.read_only {
        eprintln!("triad: read-only session: up refused; nothing was changed");
        return Outcome::Refused;
    }
    if !yes
        && is_production(&provisioning.choice, &provisioning.spec)
        && !confirm(
            "This creates or changes the stack's resources.",
            &policy::confirmation_word(true, &stack, None),
        )
    {
        eprintln!("triad: not confirmed; nothing was changed");
        return Outcome::Refused;
    }
    let plan = match provisioning
        .prepare(cloud.as_ref(), plan, |line| println!("{line}"))
        .await
    {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if !plan.changes_stack() {
        println!("Stack {stack} already matches the spec.");
        return Outcome::Done;
    }
    follow(cloud.apply(&plan), &stack).await
}

/// `triad down`: delete the stack, after the stack's name is typed (or `--yes`).
pub async fn down(cli: &Cli, yes: bool) -> Outcome {
    let stack = match load_stack(cli) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let (_, cloud) = match open(cli, &stack).await {
        Ok(c) => c,
        Err(o) => return o,
    };
    if cli.read_only {
        eprintln!("triad: read-only session: down refused; nothing was changed");
        return Outcome::Refused;
    }
    if !yes
        && !confirm(
            &format!("This deletes stack {stack} and everything in it."),
            &policy::destroy_word(&stack),
        )
    {
        eprintln!("triad: not confirmed; nothing was changed");
        return Outcome::Refused;
    }
    follow(cloud.destroy(&stack), &stack).await
}

/// `triad instance terminate|unhealthy|standby|resume ID`: the dry run, then (unless
/// `--dry-run`) the refusals and the confirmation (the instance id typed where production is
/// at stake), the journal entry, and the action.
pub async fn instance(cli: &Cli, args: &InstanceArgs) -> Outcome {
    let (stack, production, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let journal = backend::journal_path(&stack);
    instance_action(
        &*cloud,
        &stack,
        InstanceRun {
            production,
            read_only: cli.read_only,
            journal: &journal,
        },
        args,
        confirm,
    )
    .await
}

/// Where and how an instance action runs.
pub struct InstanceRun<'a> {
    pub production: bool,
    pub read_only: bool,
    pub journal: &'a std::path::Path,
}

/// An instance action once its stack is open (see [`instance`]).
pub async fn instance_action(
    cloud: &dyn Cloud,
    stack: &StackRef,
    run: InstanceRun<'_>,
    args: &InstanceArgs,
    confirm: impl Fn(&str, &str) -> bool,
) -> Outcome {
    let (id, action) = args.verb.action();
    let plan = match cloud.describe_instance_action(stack, id, action).await {
        Ok(plan) => plan,
        Err(e) => return fail(&e),
    };
    println!("instance {id} ({}): {action}", plan.az);
    println!("  {}", plan.effect);
    for call in &plan.calls {
        println!("  call: {call}");
    }
    for note in &plan.notes {
        println!("  note: {note}");
    }
    if args.dry_run {
        return Outcome::Done;
    }
    if run.read_only {
        eprintln!("triad: read-only session: instance {action} refused; nothing was changed");
        return Outcome::Refused;
    }
    if !args.yes
        && !confirm(
            &format!("This will {action} instance {id} of stack {stack}."),
            &policy::instance_word(run.production, id),
        )
    {
        eprintln!("triad: not confirmed; nothing was changed");
        return Outcome::Refused;
    }
    let check = if args.force {
        CapacityCheck::Force
    } else {
        CapacityCheck::Enforce
    };
    match journal::act_on_instance(cloud, stack, run.journal, &plan, check).await {
        Ok(_) => {
            println!("instance {id}: {action} done");
            Outcome::Done
        }
        Err(journal::ActError::Cloud(e)) => fail(&e),
        Err(e @ journal::ActError::Journal(_)) => {
            eprintln!("triad: {e}");
            Outcome::BackendError
        }
    }
}

/// `triad shift`: start (`--az AZ --for 30m`), `cancel` or `list` zonal shifts.
pub async fn shift(cli: &Cli, args: &ShiftArgs) -> Outcome {
    // Bad input is exit 2 before anything is opened.
    let request = match &args.command {
        Some(_) => None,
        None => {
            let Some(az) = &args.az else {
                eprintln!("triad: shift needs --az AZ (or `shift cancel`, `shift list`)");
                return Outcome::Invalid;
            };
            match shift::parse_expires_in(&args.expires_in)
                .and_then(|expires_in| ShiftRequest::new(az, expires_in, "triad shift"))
            {
                Ok(request) => Some(request),
                Err(e) => return fail(&e),
            }
        }
    };
    let (stack, production, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let journal = backend::journal_path(&stack);
    let run = ShiftRun {
        production,
        read_only: cli.read_only,
        journal: &journal,
    };
    match (&args.command, request) {
        (Some(ShiftCommand::List), _) => match cloud.zonal_shifts(&stack).await {
            Ok(shifts) if shifts.is_empty() => {
                println!("no active zonal shift");
                Outcome::Done
            }
            Ok(shifts) => {
                for shift in shifts {
                    println!("zonal shift {shift}");
                }
                Outcome::Done
            }
            Err(e) => fail(&e),
        },
        (Some(ShiftCommand::Cancel { az, yes }), _) => {
            shift_cancel(&*cloud, &stack, run, az.as_deref(), *yes, confirm).await
        }
        (None, Some(request)) => shift_start(&*cloud, &stack, run, &request, args, confirm).await,
        (None, None) => Outcome::Invalid,
    }
}

/// Where and how a shift command runs.
pub struct ShiftRun<'a> {
    pub production: bool,
    pub read_only: bool,
    pub journal: &'a std::path::Path,
}

/// Starts a shift once its stack is open: the dry run (the other AZs' healthy capacity
/// against the request rate), then (unless `--dry-run`) the refusals, the confirmation (the
/// AZ typed where production is at stake), the journal entry and the shift.
pub async fn shift_start(
    cloud: &dyn Cloud,
    stack: &StackRef,
    run: ShiftRun<'_>,
    request: &ShiftRequest,
    args: &ShiftArgs,
    confirm: impl Fn(&str, &str) -> bool,
) -> Outcome {
    let snapshot = match cloud.snapshot(stack).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let plan = shift::plan_shift(&snapshot, request);
    let lines = plan.lines();
    for line in &lines {
        println!("{line}");
    }
    if args.dry_run {
        return Outcome::Done;
    }
    if run.read_only {
        eprintln!("triad: read-only session: zonal shift refused; nothing was changed");
        return Outcome::Refused;
    }
    if !args.yes
        && !confirm(
            &format!(
                "This moves traffic of stack {stack} away from {} for {}.",
                request.az,
                shift::format_duration(request.expires_in)
            ),
            &policy::confirmation_word(run.production, stack, Some(&request.az)),
        )
    {
        eprintln!("triad: not confirmed; nothing was changed");
        return Outcome::Refused;
    }
    let check = if args.force {
        CapacityCheck::Force
    } else {
        CapacityCheck::Enforce
    };
    match journal::start_shift(cloud, stack, run.journal, request, lines, check).await {
        Ok(shift) => {
            println!("zonal shift {shift}");
            Outcome::Done
        }
        Err(journal::ActError::Cloud(e)) => fail(&e),
        Err(e @ journal::ActError::Journal(_)) => {
            eprintln!("triad: {e}");
            Outcome::BackendError
        }
    }
}

/// Cancels the active shift (away from `az`, if given), confirmed unless `yes`.
pub async fn shift_cancel(
    cloud: &dyn Cloud,
    stack: &StackRef,
    run: ShiftRun<'_>,
    az: Option<&str>,
    yes: bool,
    confirm: impl Fn(&str, &str) -> bool,
) -> Outcome {
    if run.read_only {
        eprintln!(
            "triad: read-only session: cancelling a zonal shift refused; nothing was changed"
        );
        return Outcome::Refused;
    }
    if !yes
        && !confirm(
            &format!(
                "This sends traffic of stack {stack} back to {}.",
                az.unwrap_or("the shifted AZ")
            ),
            &policy::confirmation_word(run.production, stack, az),
        )
    {
        eprintln!("triad: not confirmed; nothing was changed");
        return Outcome::Refused;
    }
    match journal::cancel_shift(cloud, stack, run.journal, az).await {
        Ok(cancelled) => {
            for shift in cancelled {
                println!("zonal shift away from {} cancelled", shift.az);
            }
            Outcome::Done
        }
        Err(journal::ActError::Cloud(e)) => fail(&e),
        Err(e @ journal::ActError::Journal(_)) => {
            eprintln!("triad: {e}");
            Outcome::BackendError
        }
    }
}

/// `triad sandbox serve --dir DIR`: the sandbox daemon of one stack, in the foreground (the
/// other commands start it detached, with its output in `DIR/daemon.log`).
pub async fn sandbox_serve(
    dir: &std::path::Path,
    webapp: Option<std::path::PathBuf>,
    moto: Option<std::path::PathBuf>,
    mailer: Option<std::path::PathBuf>,
) -> Outcome {
    use backend::SandboxProgram;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let find = |given: Option<std::path::PathBuf>, program: SandboxProgram| match given {
        Some(path) => Ok(path),
        None => program.locate(),
    };
    let (webapp, moto) = match (
        find(webapp, SandboxProgram::Webapp),
        find(moto, SandboxProgram::Moto),
    ) {
        (Ok(w), Ok(m)) => (w, m),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("triad sandbox: {e}");
            return Outcome::Invalid;
        }
    };
    let mailer = find(mailer, SandboxProgram::Mailer).ok();
    let config = match provision::sandbox::daemon::DaemonConfig::from_dir(dir, webapp, moto, mailer)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("triad sandbox: {e}");
            return Outcome::Invalid;
        }
    };
    match provision::sandbox::daemon::serve(config).await {
        Ok(()) => Outcome::Done,
        Err(e) => {
            eprintln!("triad sandbox: {e}");
            Outcome::BackendError
        }
    }
}

#[cfg(test)]
mod tests {
    //! The exit codes of `triad gameday`, from the command line's arguments to the code, on
    //! the in-memory cloud behind the same guard the real commands use (tokio's clock paused,
    //! so a drill takes no wall time).

    use super::*;
    use clap::Parser;
    use provision::memory::MemoryCloud;
    use provision::port::{CapacityCheck, Guarded, ManualClock, SessionMode};

    #[test]
    fn a_refresh_on_a_fast_sandbox_is_timed_on_both_clocks() {
        use provision::model::TimeScale;
        use provision::port::{Event, EventSource, Refresh, RefreshId, SandboxClock};
        let start = time::OffsetDateTime::UNIX_EPOCH;
        let refresh = Refresh {
            id: RefreshId("r-1".into()),
            status: RefreshStatus::Successful,
            status_reason: None,
            started_at: Some(start),
            ended_at: Some(start + time::Duration::seconds(20)),
            percentage_complete: Some(100),
            instances_to_update: Some(2),
            desired_version: None,
            desired_launch_template_version: None,
            preferences: None,
            checkpoint: None,
            rollback: None,
        };
        let launch = |seconds: i64, id: &str| Event {
            at: start + time::Duration::seconds(seconds),
            source: EventSource::Scaling,
            az: None,
            message: format!("Launching a new EC2 instance: {id}"),
        };
        let mut snapshot = Snapshot::empty(StackRef::new("demo").expect("name"), start);
        // Two waves (two instances at 1 s, one at 11 s) and one launch before the refresh.
        snapshot.events = vec![
            launch(-5, "i-0"),
            launch(1, "i-1"),
            launch(1, "i-2"),
            launch(11, "i-3"),
        ];
        assert_eq!(
            refresh_time_line(&refresh, &snapshot).as_deref(),
            Some("refresh time 20.0 s")
        );
        snapshot.clock = Some(SandboxClock {
            scale: TimeScale::fast(10.0),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            durations: Vec::new(),
            program_start_seconds: Some(0.5),
        });
        assert_eq!(
            refresh_time_line(&refresh, &snapshot).as_deref(),
            Some(
                "refresh time 20.0 s here → ≈ 191 s on AWS (clock fast ×10; 1.0 s of real \
                 program start kept as measured)"
            )
        );
    }

    #[test]
    fn status_text_shows_each_policy_and_the_last_decision() {
        use provision::port::{
            AlarmSide, AlarmState, PolicyAlarm, PolicyView, ScalingDecision, ScalingDirection,
            ScalingMetric, ScalingPolicy, ScalingView,
        };
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let mut snapshot = Snapshot::empty(StackRef::new("demo").expect("name"), at);
        snapshot.scaling = Some(ScalingView {
            policies: vec![PolicyView {
                policy: ScalingPolicy {
                    name: "requests-per-target".into(),
                    metric: ScalingMetric::RequestsPerTarget,
                    target: 60.0,
                    scale_in: false,
                },
                current: Some(84.0),
                alarms: vec![PolicyAlarm {
                    name: "TargetTracking-requests-per-target-AlarmHigh".into(),
                    state: AlarmState::Alarm,
                    side: AlarmSide::Above,
                    threshold: 60.0,
                    datapoints: 3,
                    period_seconds: 60,
                }],
            }],
            decisions: vec![ScalingDecision {
                at,
                policy: "requests-per-target".into(),
                direction: ScalingDirection::Out,
                from: 3,
                to: 5,
                reason: "requests/target 84 > 60 for 3 periods → desired 3 → 5".into(),
            }],
            launching: Vec::new(),
        });
        let text = status_text(&snapshot);
        assert!(
            text.contains(
                "scaling policy requests-per-target: requests/target 84, target 60, scale-in \
                 off · TargetTracking-requests-per-target-AlarmHigh ALARM"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "requests-per-target: requests/target 84 > 60 for 3 periods → desired 3 → 5"
            ),
            "{text}"
        );
    }

    fn args(line: &str) -> GamedayArgs {
        let words = ["triad", "gameday"]
            .into_iter()
            .chain(line.split_whitespace());
        match Cli::parse_from(words).command {
            Some(crate::cli::Command::Gameday(args)) => args,
            other => panic!("not a gameday: {other:?}"),
        }
    }

    /// What is true of the stack before the command runs.
    #[derive(Debug, Clone, Copy)]
    enum Before {
        Healthy,
        /// No stack at all: the backend answers every call with an error.
        Missing,
        /// A fault is active in mem-1a, injected through the guard (one AZ at a time).
        LaunchesBlockedIn1a,
        /// mem-1a has no healthy capacity (blackholed behind the guard's back).
        Down1a,
    }

    async fn outcome(before: Before, line: &str, read_only: bool, answer: bool) -> Outcome {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
        let memory = MemoryCloud::new(clock);
        let stack = StackRef::new("demo").expect("name");
        let mut active = Vec::new();
        if !matches!(before, Before::Missing) {
            memory.seed_stack(&stack);
        }
        let raw_inject = |fault: Fault| {
            let memory = memory.clone();
            let stack = stack.clone();
            async move {
                memory
                    .inject(&stack, &fault, CapacityCheck::Force)
                    .await
                    .expect("inject")
            }
        };
        match before {
            Before::LaunchesBlockedIn1a => active.push(
                raw_inject(Fault::BlockLaunchesInAz {
                    az: "mem-1a".into(),
                })
                .await,
            ),
            Before::Down1a => {
                raw_inject(Fault::BlackholeAz {
                    az: "mem-1a".into(),
                })
                .await;
            }
            Before::Healthy | Before::Missing => {}
        }
        let mode = if read_only {
            SessionMode::ReadOnly
        } else {
            SessionMode::ReadWrite
        };
        let guarded = Guarded::new(memory.clone(), mode).with_active_faults(active);
        // The fleet moves every three (virtual) seconds, as a real one does between samples.
        let driver = {
            let (memory, stack) = (memory.clone(), stack.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3));
                loop {
                    tick.tick().await;
                    let _ = memory.tick(&stack);
                }
            })
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let args = args(line);
        let result = match gameday_fault(&args) {
            Err(outcome) => outcome,
            Ok(fault) => {
                let drill = Gameday {
                    cloud: Arc::new(guarded),
                    stack,
                    production: false,
                    read_only,
                    journal: dir.path().join("gameday.jsonl"),
                    report_dir: dir.path().join("report"),
                };
                let (_stop_tx, stop_rx) = watch::channel(false);
                drill.run(fault, &args, |_, _| answer, stop_rx).await
            }
        };
        driver.abort();
        result
    }

    #[tokio::test(start_paused = true)]
    async fn every_way_a_gameday_ends_has_its_exit_code() {
        let drill = "--fault terminate-az --az mem-1b --duration 20 --rate 0 --signups 0";
        let table: &[(&str, Before, String, bool, bool, Outcome)] = &[
            (
                "a passing drill",
                Before::Healthy,
                format!("{drill} --yes"),
                false,
                true,
                Outcome::Done,
            ),
            (
                "a dry run",
                Before::Healthy,
                format!("{drill} --dry-run"),
                false,
                false,
                Outcome::Done,
            ),
            (
                "no --fault",
                Before::Healthy,
                "--az mem-1b".into(),
                false,
                true,
                Outcome::Invalid,
            ),
            (
                "an unknown fault",
                Before::Healthy,
                "--fault melt --az mem-1b".into(),
                false,
                true,
                Outcome::Invalid,
            ),
            (
                "an AZ the stack does not have",
                Before::Healthy,
                "--fault terminate-az --az mars-1a --yes".into(),
                false,
                true,
                Outcome::Invalid,
            ),
            (
                "read-only",
                Before::Healthy,
                drill.into(),
                true,
                true,
                Outcome::Refused,
            ),
            (
                "read-only with --yes",
                Before::Healthy,
                format!("{drill} --yes"),
                true,
                true,
                Outcome::Refused,
            ),
            (
                "not confirmed",
                Before::Healthy,
                drill.into(),
                false,
                false,
                Outcome::Refused,
            ),
            (
                "a safety rule at inject",
                Before::LaunchesBlockedIn1a,
                format!("{drill} --yes"),
                false,
                true,
                Outcome::Refused,
            ),
            (
                "steady state not met",
                Before::Down1a,
                format!("{drill} --yes"),
                false,
                true,
                Outcome::Bad,
            ),
            (
                "the backend answers with an error",
                Before::Missing,
                format!("{drill} --yes"),
                false,
                true,
                Outcome::BackendError,
            ),
        ];
        for (name, before, line, read_only, answer, expected) in table {
            let got = outcome(*before, line, *read_only, *answer).await;
            assert_eq!(
                (got, got.code()),
                (*expected, expected.code()),
                "{name}: triad gameday {line}"
            );
        }
    }

    #[test]
    fn errors_map_to_the_readme_s_exit_codes() {
        let table = [
            (CloudError::invalid("az", "no such AZ"), 2),
            (CloudError::refused("no healthy capacity outside mem-1a"), 3),
            (
                CloudError::ReadOnly {
                    operation: "inject".into(),
                },
                3,
            ),
            (
                CloudError::Unavailable {
                    message: "connection refused".into(),
                },
                4,
            ),
        ];
        for (error, code) in table {
            assert_eq!(Outcome::of(&error).code(), code, "{error}");
            let drill = DrillError::Cloud {
                what: "inject failed",
                source: error,
            };
            assert_eq!(Outcome::of(&drill).code(), code, "{drill}");
        }
        assert_eq!(
            Outcome::of(&DrillError::SteadyState("mem-1a down".into())).code(),
            1
        );
        assert_eq!(Outcome::of(&DrillError::NoSnapshot).code(), 4);
    }

    /// `triad instance …` on the in-memory cloud behind the guard: its exit code, the
    /// journal's entries (kinds, in order) and the backend's mutating calls.
    async fn instance_outcome(
        line: &str,
        read_only: bool,
        answer: bool,
    ) -> (Outcome, Vec<String>, Vec<String>) {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
        // Running at min: 3 of min 3 (max 4).
        let fleet = provision::memory::Fleet {
            capacity: provision::port::Capacity {
                desired: 3,
                min: 3,
                max: 4,
            },
            ..Default::default()
        };
        let memory = MemoryCloud::with_fleet(clock, fleet);
        let stack = StackRef::new("demo").expect("name");
        memory.seed_stack(&stack);
        let first = memory
            .snapshot(&stack)
            .await
            .expect("snapshot")
            .azs
            .iter()
            .flat_map(|v| v.instances.iter().map(|i| i.id.clone()))
            .next()
            .expect("an instance");
        let line = line.replace("ID", &first);
        let words = ["triad", "instance"]
            .into_iter()
            .chain(line.split_whitespace());
        let args = match Cli::parse_from(words).command {
            Some(crate::cli::Command::Instance(args)) => args,
            other => panic!("not an instance command: {other:?}"),
        };
        let mode = if read_only {
            SessionMode::ReadOnly
        } else {
            SessionMode::ReadWrite
        };
        let guarded = Guarded::new(memory.clone(), mode);
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("journal.jsonl");
        let run = InstanceRun {
            production: false,
            read_only,
            journal: &journal,
        };
        let outcome = instance_action(&guarded, &stack, run, &args, |_, word| {
            answer && word == "y"
        })
        .await;
        let entries = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["entry"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        let calls = memory
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("act_on_instance"))
            .collect();
        (outcome, entries, calls)
    }

    #[tokio::test]
    async fn instance_actions_have_the_readme_s_exit_codes() {
        // The memory stack runs at min (3 of min 3): a decrement is refused, exit 3.
        let (o, journal, calls) =
            instance_outcome("terminate ID --decrement --yes", false, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        let (o, journal, calls) =
            instance_outcome("standby ID --decrement --yes", false, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        // Read-only, not confirmed: refused before the journal and the backend.
        let (o, journal, calls) = instance_outcome("terminate ID --yes", true, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        let (o, journal, calls) = instance_outcome("terminate ID", false, false).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        // A dry run changes nothing.
        let (o, journal, calls) = instance_outcome("standby ID --dry-run", false, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (0, 0, 0));
        // Confirmed: journaled before it happens, then done.
        let (o, journal, calls) = instance_outcome("terminate ID", false, true).await;
        assert_eq!(o.code(), 0);
        assert_eq!(journal, ["instance_intent", "instance_acted"]);
        assert_eq!(calls.len(), 1);
        // Resuming an instance that is not in standby is refused by the group.
        let (o, journal, _) = instance_outcome("resume ID --yes", false, true).await;
        assert_eq!(o.code(), 3);
        assert!(journal.is_empty(), "refused at the dry run: {journal:?}");
        // An unknown instance is the backend's not-found, exit 4.
        let (o, _, _) = instance_outcome("unhealthy i-nope --yes", false, true).await;
        assert_eq!(o.code(), 4);
    }

    /// `triad shift …` on the in-memory cloud behind the guard: its exit code, the journal's
    /// entries (kinds, in order) and the backend's zonal shift calls.
    async fn shift_outcome(
        line: &str,
        read_only: bool,
        answer: bool,
    ) -> (Outcome, Vec<String>, Vec<String>) {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
        let memory = MemoryCloud::new(clock);
        let stack = StackRef::new("demo").expect("name");
        memory.seed_stack(&stack);
        let words = ["triad", "shift"]
            .into_iter()
            .chain(line.split_whitespace());
        let args = match Cli::parse_from(words).command {
            Some(crate::cli::Command::Shift(args)) => args,
            other => panic!("not a shift command: {other:?}"),
        };
        let mode = if read_only {
            SessionMode::ReadOnly
        } else {
            SessionMode::ReadWrite
        };
        let guarded = Guarded::new(memory.clone(), mode);
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("journal.jsonl");
        let run = || ShiftRun {
            production: false,
            read_only,
            journal: &journal,
        };
        let confirm = |_: &str, word: &str| answer && word == "y";
        let outcome = match &args.command {
            Some(ShiftCommand::Cancel { az, yes }) => {
                // Something to cancel first.
                let request =
                    ShiftRequest::new("mem-1a", Duration::from_secs(600), "").expect("request");
                memory
                    .start_zonal_shift(&stack, &request, CapacityCheck::Enforce)
                    .await
                    .expect("a shift to cancel");
                shift_cancel(&guarded, &stack, run(), az.as_deref(), *yes, confirm).await
            }
            _ => {
                let az = args.az.clone().unwrap_or_default();
                let request = match shift::parse_expires_in(&args.expires_in)
                    .and_then(|e| ShiftRequest::new(az, e, ""))
                {
                    Ok(r) => r,
                    Err(e) => return (fail(&e), Vec::new(), Vec::new()),
                };
                shift_start(&guarded, &stack, run(), &request, &args, confirm).await
            }
        };
        let entries = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["entry"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        let calls = memory
            .calls()
            .into_iter()
            .filter(|c| c.contains("zonal_shift"))
            .collect();
        (outcome, entries, calls)
    }

    #[tokio::test]
    async fn shift_commands_have_the_readme_s_exit_codes() {
        // Bad length: exit 2, nothing touched.
        let (o, journal, calls) = shift_outcome("--az mem-1a --for 30s --yes", false, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (2, 0, 0));
        // Read-only, not confirmed: refused before the journal and the backend.
        let (o, journal, calls) = shift_outcome("--az mem-1a --yes", true, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        let (o, journal, calls) = shift_outcome("--az mem-1a", false, false).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (3, 0, 0));
        // A dry run changes nothing.
        let (o, journal, calls) = shift_outcome("--az mem-1a --dry-run", false, true).await;
        assert_eq!((o.code(), journal.len(), calls.len()), (0, 0, 0));
        // Confirmed: journaled before it happens, then started.
        let (o, journal, calls) = shift_outcome("--az mem-1a --for 10m", false, true).await;
        assert_eq!(o.code(), 0);
        assert_eq!(journal, ["shift_intent", "shift_started"]);
        assert_eq!(calls, ["start_zonal_shift demo mem-1a 600s"]);
        // Cancel: journaled, and the call made; refused read-only.
        let (o, journal, _) = shift_outcome("cancel --az mem-1a --yes", false, true).await;
        assert_eq!(o.code(), 0);
        assert_eq!(journal, ["shift_cancel_intent", "shift_cancelled"]);
        let (o, journal, calls) = shift_outcome("cancel --yes", true, true).await;
        assert_eq!((o.code(), journal.len()), (3, 0));
        assert_eq!(calls.len(), 1, "only the test's own start: {calls:?}");
    }
}
