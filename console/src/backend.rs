//! Connecting to the chosen backend, and the working area where the console keeps per-stack
//! files (the sandbox's state, GameDay journals and reports, the console's log).
//!
//! The sandbox backend is a daemon per stack, run by this same binary (`triad sandbox serve
//! --dir DIR`, hidden) and started on demand: [`connect`] gives a client that can start it,
//! and [`ensure_running`] brings the stack up when no daemon answers yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use provision::aws::{AwsCloud, Release, ReleaseFile, plan_artefacts, prepare_artefacts};
use provision::port::{
    BackendChoice, BackendFlags, Cloud, CloudError, DesiredStack, FaultRecord, Guarded, Plan,
    ProvisionEvent, SessionMode, StackRef,
};
use provision::sandbox::client::SandboxCloud;
use provision::spec::StackSpec;
use provision::template::params;

use crate::cli::BackendArgs;
use crate::drill::journal;

/// The working area: `$TRIAD_HOME`, or `.triad` in the current directory.
pub fn work_dir() -> PathBuf {
    std::env::var_os("TRIAD_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".triad"))
}

/// The per-stack directory in the working area.
pub fn stack_dir(stack: &StackRef) -> PathBuf {
    work_dir().join(&stack.name)
}

/// Where a stack's GameDay journal lives.
pub fn journal_path(stack: &StackRef) -> PathBuf {
    stack_dir(stack).join("gameday.jsonl")
}

pub fn flags(args: &BackendArgs) -> BackendFlags {
    BackendFlags {
        aws: args.aws,
        profile: args.profile.clone(),
        region: args.region.clone(),
        endpoint_url: args.endpoint_url.clone(),
        asg: args.asg.clone(),
        db: args.db.clone(),
    }
}

/// A human label for where the calls go ("profile prod · eu-west-1", "local sandbox").
pub fn origin(choice: &BackendChoice) -> String {
    match choice {
        BackendChoice::Sandbox => "local sandbox".into(),
        BackendChoice::Aws(s) => {
            let mut parts = Vec::new();
            parts.push(format!(
                "profile {}",
                s.profile.as_deref().unwrap_or("default")
            ));
            if let Some(r) = &s.region {
                parts.push(r.clone());
            }
            if let Some(e) = &s.endpoint_url {
                parts.push(e.clone());
            }
            if let Some(attach) = &s.attach {
                parts.push(format!("group {}", attach.asg));
                if let Some(db) = &attach.db {
                    parts.push(format!("db {db}"));
                }
            }
            parts.join(" · ")
        }
    }
}

/// The programs the sandbox daemon runs, each found through its variable, then beside
/// `triad`, then on `PATH` (and moto also in the project's `.venv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxProgram {
    Webapp,
    Moto,
    Mailer,
}

impl SandboxProgram {
    /// The variable that names the program explicitly.
    pub fn variable(self) -> &'static str {
        match self {
            SandboxProgram::Webapp => "TRIAD_WEBAPP_BIN",
            SandboxProgram::Moto => "TRIAD_MOTO_BIN",
            SandboxProgram::Mailer => "TRIAD_MAILER_BIN",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            SandboxProgram::Webapp => "webapp",
            SandboxProgram::Moto => "moto_server",
            SandboxProgram::Mailer => "mailer",
        }
    }

    /// Where the program is, or a sentence saying how to provide it.
    pub fn locate(self) -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os(self.variable()).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} names {}, which is not a file",
                    self.variable(),
                    path.display()
                ))
            };
        }
        let name = self.file_name();
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
        let venv = (self == SandboxProgram::Moto).then(|| PathBuf::from(".venv/bin").join(name));
        let on_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        beside
            .into_iter()
            .chain(venv)
            .chain(on_path)
            .find(|candidate| candidate.is_file())
            .and_then(|found| std::path::absolute(found).ok())
            .ok_or_else(|| {
                format!(
                    "cannot find `{name}`: set {} or install it beside triad (scripts/demo does)",
                    self.variable()
                )
            })
    }
}

/// The command that runs the sandbox daemon for the state directory `dir`: this binary's
/// hidden `sandbox serve`, with the programs it runs resolved now (a missing one is left for
/// the daemon to report in its log).
pub fn daemon_command(dir: &Path) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("triad"));
    let mut command = std::process::Command::new(exe);
    command.args(["sandbox", "serve", "--dir"]).arg(dir);
    for (flag, program) in [
        ("--webapp", SandboxProgram::Webapp),
        ("--moto", SandboxProgram::Moto),
        ("--mailer", SandboxProgram::Mailer),
    ] {
        if let Ok(path) = program.locate() {
            command.arg(flag).arg(path);
        }
    }
    command
}

/// The sandbox client for `stack`, able to start its daemon.
pub fn sandbox(stack: &StackRef) -> SandboxCloud {
    let dir = stack_dir(stack);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    SandboxCloud::with_spawner(dir, daemon_command)
}

/// The unguarded backend for `choice`.
pub async fn connect(
    choice: &BackendChoice,
    stack: &StackRef,
) -> Result<Arc<dyn Cloud>, CloudError> {
    match choice {
        BackendChoice::Sandbox => Ok(Arc::new(sandbox(stack))),
        BackendChoice::Aws(settings) => Ok(Arc::new(AwsCloud::new(settings).await)),
    }
}

/// What the cloud needs to build `spec`: the template, its parameters, tags and the spec.
pub fn desired(spec: &StackSpec, stack: &StackRef) -> Result<DesiredStack, CloudError> {
    let template_body = provision::template::render(spec)
        .to_json()
        .map_err(|e| CloudError::invalid("template", e.to_string()))?;
    let spec_json =
        serde_json::to_value(spec).map_err(|e| CloudError::invalid("spec", e.to_string()))?;
    let mut tags = spec.tags.clone();
    tags.insert("triad:stack".into(), spec.name.clone());
    Ok(DesiredStack {
        stack: stack.clone(),
        template_body,
        parameters: Default::default(),
        tags,
        spec: spec_json,
    })
}

/// What `plan` and `up` act on besides the cloud: the stack spec and, on AWS, the files that
/// provide the releases it refers to. The commands and the console's provisioning screen both
/// plan and apply through it.
#[derive(Debug, Clone)]
pub struct Provisioning {
    pub choice: BackendChoice,
    pub spec: StackSpec,
    pub stack: StackRef,
    /// The webapp binary named with `--webapp` (otherwise the one beside `triad`, used only
    /// when the bucket lacks the release).
    pub webapp: Option<PathBuf>,
    /// The mailer package named with `--mailer-zip`.
    pub mailer_zip: Option<PathBuf>,
    pub read_only: bool,
    /// On AWS, the client artefact plans are made with: its SDK configuration is loaded
    /// once, on the first plan, not again for each plan and apply.
    aws: Arc<tokio::sync::OnceCell<AwsCloud>>,
}

impl Provisioning {
    /// Provisioning of `spec` as `stack` on `choice`, with no release files named.
    pub fn new(choice: BackendChoice, spec: StackSpec, stack: StackRef, read_only: bool) -> Self {
        Provisioning {
            choice,
            spec,
            stack,
            webapp: None,
            mailer_zip: None,
            read_only,
            aws: Arc::default(),
        }
    }

    fn releases(&self) -> Vec<Release> {
        let webapp = match &self.webapp {
            Some(path) => Some(ReleaseFile {
                path: path.clone(),
                given: true,
            }),
            None => SandboxProgram::Webapp
                .locate()
                .ok()
                .map(|path| ReleaseFile { path, given: false }),
        };
        let mailer = self
            .mailer_zip
            .clone()
            .map(|path| ReleaseFile { path, given: true });
        Release::of_spec(&self.spec, webapp, mailer)
    }

    /// On AWS, the artefact plan (read-only) and the client it was made with.
    async fn artefacts(
        &self,
    ) -> Result<Option<(&AwsCloud, provision::aws::ArtefactPlan)>, CloudError> {
        let BackendChoice::Aws(settings) = &self.choice else {
            return Ok(None);
        };
        let aws = self.aws.get_or_init(|| AwsCloud::new(settings)).await;
        let plan = plan_artefacts(aws, &self.spec, &self.releases()).await?;
        Ok(Some((aws, plan)))
    }

    /// The plan of the stack spec, changing nothing. On AWS it carries what `up` does first
    /// (the bootstrap stack, release uploads) and what would block it.
    pub async fn plan(&self, cloud: &dyn Cloud) -> Result<Plan, CloudError> {
        let mut desired = desired(&self.spec, &self.stack)?;
        let artefacts = self.artefacts().await?;
        if let Some((_, artefacts)) = &artefacts {
            desired.parameters.extend(artefacts.parameters());
        }
        let mut plan = cloud.plan(&desired).await?;
        if let Some((_, artefacts)) = &artefacts {
            artefacts.annotate(&mut plan);
        }
        Ok(plan)
    }

    /// Does what the plan says comes first (on AWS: the bootstrap stack, then the uploads),
    /// telling each step to `on_line`, and returns the plan to apply: `plan` itself, or a
    /// fresh one when the artefact bucket is not the one it was planned with. Refused in a
    /// read-only session and when the plan has blockers; nothing is changed then.
    pub async fn prepare(
        &self,
        cloud: &dyn Cloud,
        plan: Plan,
        on_line: impl Fn(String),
    ) -> Result<Plan, CloudError> {
        if plan.prepare.is_empty() && plan.blockers.is_empty() {
            return Ok(plan);
        }
        if self.read_only {
            return Err(CloudError::ReadOnly {
                operation: "upload releases".into(),
            });
        }
        let Some((aws, artefacts)) = self.artefacts().await? else {
            return Ok(plan);
        };
        let bucket = prepare_artefacts(
            aws,
            &self.spec,
            &artefacts,
            |event| on_line(crate::commands::progress_line(event)),
            |line| on_line(line.to_string()),
        )
        .await?;
        if plan.desired.parameters.get(params::ARTEFACT_BUCKET) == Some(&bucket) {
            return Ok(Plan {
                prepare: Vec::new(),
                ..plan
            });
        }
        on_line(format!(
            "the artefact bucket is {bucket}, not the planned one: planning again"
        ));
        let mut fresh = self.plan(cloud).await?;
        fresh.prepare.clear();
        Ok(fresh)
    }
}

/// On the sandbox, brings the stack up when no daemon answers for it yet (the first command
/// that needs the stack starts it), passing each bring-up event to `on_event`. A no-op on
/// AWS, where only `triad up` creates anything.
pub async fn ensure_running(
    choice: &BackendChoice,
    cloud: &Arc<dyn Cloud>,
    spec: &StackSpec,
    stack: &StackRef,
    mut on_event: impl FnMut(&ProvisionEvent),
) -> Result<(), CloudError> {
    if !matches!(choice, BackendChoice::Sandbox) || sandbox(stack).is_running().await {
        return Ok(());
    }
    let plan = cloud.plan(&desired(spec, stack)?).await?;
    let mut events = cloud.apply(&plan);
    while let Some(event) = events.next().await {
        let event = event?;
        on_event(&event);
        if let ProvisionEvent::Finished { stack_status, .. } = &event
            && !stack_status.is_success()
        {
            return Err(CloudError::backend(
                "sandbox",
                stack_status.to_string(),
                format!(
                    "bringing the sandbox up ended {stack_status}; see {}",
                    stack_dir(stack).join("daemon.log").display()
                ),
            ));
        }
    }
    Ok(())
}

/// The last `lines` lines of the sandbox daemon's log, for error messages.
pub fn daemon_log_tail(stack: &StackRef, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(stack_dir(stack).join("daemon.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_string())
        .collect()
}

/// Faults a GameDay journal says are still in place: the guard counts them as active.
pub fn active_faults(stack: &StackRef) -> Vec<FaultRecord> {
    journal::pending(&journal_path(stack))
        .map(|p| p.records)
        .unwrap_or_default()
}

/// The backend wrapped in the safety rules, as every command uses it.
pub fn guard(inner: Arc<dyn Cloud>, stack: &StackRef, read_only: bool) -> Arc<dyn Cloud> {
    let mode = if read_only {
        SessionMode::ReadOnly
    } else {
        SessionMode::ReadWrite
    };
    Arc::new(Guarded::new(inner, mode).with_active_faults(active_faults(stack)))
}
