//! Connecting to the chosen backend, and the working area where the console keeps per-stack
//! files (the sandbox's state, GameDay journals and reports, the console's log).

use std::path::PathBuf;
use std::sync::Arc;

use provision::port::{
    BackendChoice, BackendFlags, BackendKind, Cloud, CloudError, FaultRecord, Guarded, SessionMode,
    StackRef,
};

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
            parts.join(" · ")
        }
    }
}

/// The unguarded backend for `choice`.
pub async fn connect(
    choice: &BackendChoice,
    _stack: &StackRef,
) -> Result<Arc<dyn Cloud>, CloudError> {
    match choice.kind() {
        BackendKind::Sandbox => Err(CloudError::Unsupported {
            operation: "connecting (not built yet)".into(),
            backend: "sandbox".into(),
        }),
        _ => Err(CloudError::Unsupported {
            operation: "connecting (not built yet)".into(),
            backend: "aws".into(),
        }),
    }
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
