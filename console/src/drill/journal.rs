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

/// Reads the journal at `path`. A missing file means nothing is pending; a torn last line
/// (the process died mid-write) is ignored; any other unreadable line is an error naming it.
pub fn pending(path: &Path) -> std::io::Result<Pending> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pending::default()),
        Err(e) => return Err(e),
    };
    let lines: Vec<String> = BufReader::new(file).lines().collect::<Result<_, _>>()?;
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut intent: Option<(Fault, Vec<PlannedAction>)> = None;
    let mut unrecorded = Vec::new();
    let mut shifts: Vec<String> = Vec::new();
    let last = lines.len().saturating_sub(1);
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(_) if n == last => break,
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), n + 1),
                ));
            }
        };
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
}
