//! What is running against a stack right now — a GameDay, a load — so that each can note the
//! other in its report (a load's p99 during an AZ failure is not the load's alone).
//!
//! Each running activity keeps one small file in the stack's `running/` directory, named by
//! its process id, holding a one-line description; it is removed when the activity ends. A
//! file whose process no longer exists (a crash) is ignored and cleared.

use std::path::{Path, PathBuf};

/// This activity's file; removed on drop.
#[derive(Debug)]
pub struct Marker {
    path: Option<PathBuf>,
}

impl Marker {
    /// Records that `description` is running against the stack whose directory is
    /// `stack_dir`. Best effort: a marker that cannot be written only loses the note.
    pub fn new(stack_dir: &Path, kind: &str, description: &str) -> Marker {
        let dir = stack_dir.join("running");
        let path = dir.join(format!("{}-{kind}", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, description))
            .is_ok();
        Marker {
            path: written.then_some(path),
        }
    }

    /// A marker that records nothing (no working area).
    pub fn none() -> Marker {
        Marker { path: None }
    }

    /// The descriptions of the other activities running against the same stack now.
    pub fn others(&self) -> Vec<String> {
        let Some(dir) = self.path.as_deref().and_then(Path::parent) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if Some(path.as_path()) == self.path.as_deref() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or_default();
            if !alive(pid) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                found.push(text.trim().to_owned());
            }
        }
        found.sort();
        found
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether process `pid` exists (Linux's `/proc`; where there is none, assume it does).
fn alive(pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid).exists()
}

/// Adds `others` to `seen`, keeping each description once, in first-seen order.
pub fn note(seen: &mut Vec<String>, others: Vec<String>) {
    for other in others {
        if !seen.contains(&other) {
            seen.push(other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_activity_sees_the_other_and_not_itself_nor_a_dead_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = Marker::new(dir.path(), "load", "a load of 50 req/s");
        assert!(load.others().is_empty());
        // Another activity in this process (the console runs both) is seen by its kind.
        let drill = Marker::new(dir.path(), "gameday", "GameDay terminate-az in az-b");
        assert_eq!(load.others(), ["GameDay terminate-az in az-b"]);
        assert_eq!(drill.others(), ["a load of 50 req/s"]);
        // A file left by a process that is gone is not running.
        let stale = dir.path().join("running/999999999-load");
        std::fs::write(&stale, "a crashed load").expect("write");
        assert_eq!(drill.others(), ["a load of 50 req/s"]);
        assert!(!stale.exists(), "cleared");
        drop(load);
        assert!(drill.others().is_empty(), "removed when it ends");
        let mut seen = vec!["x".to_string()];
        note(&mut seen, vec!["x".into(), "y".into()]);
        assert_eq!(seen, ["x", "y"]);
    }
}
