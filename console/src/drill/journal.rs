//! The drill's crash-safe journal: one JSON object per line, appended and flushed to disk
//! *before* the step it describes is taken. After a crash, [`pending`] reads it back and says
//! which faults are still in place, so `triad gameday restore` can undo exactly what was done.
//!
//! A fault whose intent was journaled but whose record never was (the process died during the
//! inject call) cannot be restored from the journal alone: [`Pending::unrecorded`] lists it so
//! the operator can check by hand, with the dry run that was shown before confirmation.
//!
//! Zonal shifts are journaled the same way ([`start_shift`], [`cancel_shift`]): the intent
//! before the call, the shift after it; [`Pending::shifts`] lists those started and not
//! cancelled, which `triad gameday restore` cancels (one that has expired meanwhile is
//! already gone).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use provision::port::{
    CapacityCheck, Cloud, CloudError, Fault, FaultRecord, InstancePlan, PlannedAction,
    ShiftRequest, StackRef, ZonalShift,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::report::InstanceActionTaken;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Started {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        drill: String,
        stack: StackRef,
    },
    Step {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        step: String,
        detail: String,
    },
    /// About to inject `fault`; `plan` is the dry run the operator confirmed.
    InjectIntent {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        fault: Fault,
        plan: Vec<PlannedAction>,
    },
    Injected {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        record: FaultRecord,
    },
    RestoreIntent {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        record_id: String,
    },
    Restored {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        record_id: String,
    },
    Finished {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        outcome: String,
    },
    /// About to act on one instance; `plan` is the dry run the operator confirmed. Not a
    /// fault: nothing restores it.
    InstanceIntent {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        plan: InstancePlan,
    },
    /// How the action on `instance_id` ended: `done`, or the error.
    InstanceActed {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        instance_id: String,
        outcome: String,
    },
    /// About to start a zonal shift; `plan` is the dry run the operator confirmed.
    ShiftIntent {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        request: ShiftRequest,
        #[serde(default)]
        plan: Vec<String>,
    },
    /// The shift started.
    ShiftStarted {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        shift: ZonalShift,
    },
    /// About to cancel the shift away from `az` (any, without one).
    ShiftCancelIntent {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        az: Option<String>,
    },
    /// The shifts away from these AZs ended (cancelled, or found already gone).
    ShiftCancelled {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        azs: Vec<String>,
    },
}

/// An open journal, appended to line by line.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creating it and its directory if needed) the journal at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` and waits until it is on disk.
    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
}

/// Why a journaled instance action did not happen, or failed.
#[derive(Debug)]
pub enum ActError {
    /// The journal could not be written before the action: nothing was changed.
    Journal(std::io::Error),
    Cloud(CloudError),
}

impl std::fmt::Display for ActError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActError::Journal(e) => write!(f, "cannot write the journal: {e}; nothing was changed"),
            ActError::Cloud(e) => e.fmt(f),
        }
    }
}

/// Carries out `plan` (a confirmed dry run) on `cloud`, journaled at `path` before it happens
/// and with its outcome after. The one way the CLI and the console act on an instance.
pub async fn act_on_instance(
    cloud: &dyn Cloud,
    stack: &StackRef,
    path: &Path,
    plan: &InstancePlan,
    check: CapacityCheck,
) -> Result<InstancePlan, ActError> {
    let mut journal = Journal::open(path).map_err(ActError::Journal)?;
    journal
        .append(&Entry::InstanceIntent {
            at: OffsetDateTime::now_utc(),
            plan: plan.clone(),
        })
        .map_err(ActError::Journal)?;
    let result = cloud
        .act_on_instance(stack, &plan.instance_id, plan.action, check)
        .await;
    let outcome = match &result {
        Ok(_) => "done".to_owned(),
        Err(e) => e.to_string(),
    };
    // The action has happened (or not) whatever the journal says now: a failed write of the
    // outcome is reported but does not change the result.
    if let Err(e) = journal.append(&Entry::InstanceActed {
        at: OffsetDateTime::now_utc(),
        instance_id: plan.instance_id.clone(),
        outcome,
    }) {
        tracing::warn!("cannot write the journal after an instance action: {e}");
    }
    result.map_err(ActError::Cloud)
}

/// Why a journaled zonal shift (or its cancel) did not happen, or failed.
pub type ShiftError = ActError;

/// Starts the zonal shift `request` (a confirmed dry run, `plan`) on `cloud`, journaled at
/// `path` before it happens and with the shift after. The one way the CLI, the console and a
/// drill's remedy start a shift.
pub async fn start_shift(
    cloud: &dyn Cloud,
    stack: &StackRef,
    path: &Path,
    request: &ShiftRequest,
    plan: Vec<String>,
    check: CapacityCheck,
) -> Result<ZonalShift, ShiftError> {
    let mut journal = Journal::open(path).map_err(ActError::Journal)?;
    journal
        .append(&Entry::ShiftIntent {
            at: OffsetDateTime::now_utc(),
            request: request.clone(),
            plan,
        })
        .map_err(ActError::Journal)?;
    let shift = cloud
        .start_zonal_shift(stack, request, check)
        .await
        .map_err(ActError::Cloud)?;
    if let Err(e) = journal.append(&Entry::ShiftStarted {
        at: OffsetDateTime::now_utc(),
        shift: shift.clone(),
    }) {
        tracing::warn!("cannot write the journal after a zonal shift started: {e}");
    }
    Ok(shift)
}

/// Cancels the active zonal shift (away from `az`, if given), journaled at `path` before and
/// after. `NotFound` from the cloud (nothing active) is returned as is.
pub async fn cancel_shift(
    cloud: &dyn Cloud,
    stack: &StackRef,
    path: &Path,
    az: Option<&str>,
) -> Result<Vec<ZonalShift>, ShiftError> {
    let mut journal = Journal::open(path).map_err(ActError::Journal)?;
    journal
        .append(&Entry::ShiftCancelIntent {
            at: OffsetDateTime::now_utc(),
            az: az.map(str::to_owned),
        })
        .map_err(ActError::Journal)?;
    let result = cloud.cancel_zonal_shift(stack, az).await;
    let ended: Vec<String> = match &result {
        Ok(cancelled) => cancelled.iter().map(|s| s.az.clone()).collect(),
        // Nothing active: whatever the journal holds for these AZs has ended.
        Err(CloudError::NotFound { .. }) => az.map(str::to_owned).into_iter().collect(),
        Err(_) => Vec::new(),
    };
    if !ended.is_empty()
        && let Err(e) = journal.append(&Entry::ShiftCancelled {
            at: OffsetDateTime::now_utc(),
            azs: ended,
        })
    {
        tracing::warn!("cannot write the journal after a zonal shift was cancelled: {e}");
    }
    result.map_err(ActError::Cloud)
}

/// What a journal says is still in place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    /// Injected and not restored, oldest first.
    pub records: Vec<FaultRecord>,
    /// Intents with no record after them: the inject may or may not have happened.
    pub unrecorded: Vec<(Fault, Vec<PlannedAction>)>,
    /// Zonal shifts started (or about to be: the intent's AZ, its shift unknown) and not
    /// cancelled, by AZ.
    pub shifts: Vec<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.unrecorded.is_empty() && self.shifts.is_empty()
    }
}

/// Reads every entry of the journal at `path`, oldest first. A missing file has none; a torn
/// last line (the process died mid-write) is ignored; any other unreadable line is an error
/// naming it.
fn entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lines: Vec<String> = BufReader::new(file).lines().collect::<Result<_, _>>()?;
    let last = lines.len().saturating_sub(1);
    let mut entries = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(e) => entries.push(e),
            Err(_) if n == last => break,
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), n + 1),
                ));
            }
        }
    }
    Ok(entries)
}

/// Reads the journal at `path` and says which faults are still in place.
pub fn pending(path: &Path) -> std::io::Result<Pending> {
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut intent: Option<(Fault, Vec<PlannedAction>)> = None;
    let mut unrecorded = Vec::new();
    let mut shifts: Vec<String> = Vec::new();
    for entry in entries(path)? {
        match entry {
            Entry::InjectIntent { fault, plan, .. } => {
                if let Some(previous) = intent.replace((fault, plan)) {
                    unrecorded.push(previous);
                }
            }
            Entry::Injected { record, .. } => {
                intent = None;
                records.push(record);
            }
            Entry::Restored { record_id, .. } => records.retain(|r| r.id != record_id),
            // An intent counts: the shift may have started before the process died.
            Entry::ShiftIntent { request, .. } if !shifts.contains(&request.az) => {
                shifts.push(request.az);
            }
            Entry::ShiftStarted { shift, .. } if !shifts.contains(&shift.az) => {
                shifts.push(shift.az);
            }
            Entry::ShiftCancelled { azs, .. } => shifts.retain(|az| !azs.contains(az)),
            _ => {}
        }
    }
    unrecorded.extend(intent);
    Ok(Pending {
        records,
        unrecorded,
        shifts,
    })
}

/// The actions on single instances journaled at `path` at or after `since` (from the CLI or
/// the console, while a drill ran), each with its outcome: `done`, the error, or that none was
/// journaled (the process stopped during the call).
pub fn instance_actions_since(
    path: &Path,
    since: OffsetDateTime,
) -> std::io::Result<Vec<InstanceActionTaken>> {
    let mut taken: Vec<InstanceActionTaken> = Vec::new();
    for entry in entries(path)? {
        match entry {
            Entry::InstanceIntent { at, plan } if at >= since => {
                taken.push(InstanceActionTaken {
                    second: u64::try_from((at - since).whole_seconds()).unwrap_or(0),
                    instance_id: plan.instance_id,
                    az: plan.az,
                    action: plan.action.to_string(),
                    outcome: None,
                });
            }
            Entry::InstanceActed {
                instance_id,
                outcome,
                ..
            } => {
                if let Some(action) = taken
                    .iter_mut()
                    .rev()
                    .find(|a| a.instance_id == instance_id && a.outcome.is_none())
                {
                    action.outcome = Some(outcome);
                }
            }
            _ => {}
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> FaultRecord {
        FaultRecord {
            id: id.into(),
            stack: StackRef::new("demo").expect("name"),
            fault: Fault::TerminateAz { az: "a".into() },
            az: Some("a".into()),
            forced: false,
            injected_at: OffsetDateTime::UNIX_EPOCH,
            changes: vec![],
        }
    }

    #[test]
    fn injected_and_not_restored_is_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).expect("open");
        let at = OffsetDateTime::UNIX_EPOCH;
        for entry in [
            Entry::InjectIntent {
                at,
                fault: Fault::TerminateAz { az: "a".into() },
                plan: vec![],
            },
            Entry::Injected {
                at,
                record: record("r1"),
            },
            Entry::Injected {
                at,
                record: record("r2"),
            },
            Entry::Restored {
                at,
                record_id: "r1".into(),
            },
        ] {
            j.append(&entry).expect("append");
        }
        let p = pending(&path).expect("read");
        assert_eq!(p.records, vec![record("r2")]);
        assert!(p.unrecorded.is_empty());
    }

    #[test]
    fn a_shift_started_and_not_cancelled_is_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).expect("open");
        let at = OffsetDateTime::UNIX_EPOCH;
        let request = |az: &str| {
            ShiftRequest::new(az, std::time::Duration::from_secs(600), "").expect("request")
        };
        for entry in [
            Entry::ShiftIntent {
                at,
                request: request("a"),
                plan: vec![],
            },
            Entry::ShiftCancelled {
                at,
                azs: vec!["a".into()],
            },
            Entry::ShiftIntent {
                at,
                request: request("b"),
                plan: vec![],
            },
        ] {
            j.append(&entry).expect("append");
        }
        let p = pending(&path).expect("read");
        assert_eq!(p.shifts, vec!["b".to_owned()]);
        assert!(!p.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_an_intent_without_record_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).expect("open");
        j.append(&Entry::InjectIntent {
            at: OffsetDateTime::UNIX_EPOCH,
            fault: Fault::FailoverDb,
            plan: vec![],
        })
        .expect("append");
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(b"{\"entry\":\"injec").expect("torn write");
        let p = pending(&path).expect("read");
        assert_eq!(p.unrecorded.len(), 1);
        assert_eq!(p.unrecorded[0].0, Fault::FailoverDb);
        assert!(
            pending(&dir.path().join("missing"))
                .expect("missing")
                .is_empty()
        );
    }

    /// The drill's report lists the instance actions journaled since it started, each with
    /// its outcome; earlier ones are left out, and one without an outcome says so.
    #[test]
    fn instance_actions_since_a_drill_started() {
        use provision::port::{InstanceAction, InstancePlan};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).expect("open");
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let start = t0 + time::Duration::seconds(100);
        let plan = |id: &str, action| InstancePlan::new(id, "az-b", action, vec![]);
        for entry in [
            Entry::InstanceIntent {
                at: t0,
                plan: plan("i-before", InstanceAction::Unhealthy),
            },
            Entry::InstanceActed {
                at: t0,
                instance_id: "i-before".into(),
                outcome: "done".into(),
            },
            Entry::Started {
                at: start,
                drill: "terminate-az".into(),
                stack: StackRef::new("demo").expect("name"),
            },
            Entry::InstanceIntent {
                at: start + time::Duration::seconds(7),
                plan: plan("i-1", InstanceAction::Terminate { decrement: true }),
            },
            Entry::InstanceActed {
                at: start + time::Duration::seconds(8),
                instance_id: "i-1".into(),
                outcome: "refused: min size".into(),
            },
            Entry::InstanceIntent {
                at: start + time::Duration::seconds(20),
                plan: plan("i-2", InstanceAction::Standby { decrement: false }),
            },
        ] {
            j.append(&entry).expect("append");
        }
        let taken = instance_actions_since(&path, start).expect("read");
        assert_eq!(
            taken,
            vec![
                InstanceActionTaken {
                    second: 7,
                    instance_id: "i-1".into(),
                    az: "az-b".into(),
                    action: InstanceAction::Terminate { decrement: true }.to_string(),
                    outcome: Some("refused: min size".into()),
                },
                InstanceActionTaken {
                    second: 20,
                    instance_id: "i-2".into(),
                    az: "az-b".into(),
                    action: "standby".into(),
                    outcome: None,
                },
            ]
        );
        assert!(
            instance_actions_since(&dir.path().join("none.jsonl"), start)
                .expect("a missing journal has none")
                .is_empty()
        );
    }
}
