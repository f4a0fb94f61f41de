//! The instances' logs, as CloudWatch Logs keeps them on AWS: one log per instance, named
//! by its AZ and id, readable after the instance is gone (until `triad down` removes the
//! stack's state directory, and with it the logs).
//!
//! Each instance's program writes its stdout and stderr to
//! `<logs>/instances/<az>/<instance-id>.log` ([`instance_log`]), like the stream
//! `<az>/<instance-id>` on AWS. The daemon's [`LogStore`] reads what was appended since its
//! last look (every [`SCAN_INTERVAL`] and before every read), numbers the lines in the
//! order it read them (the follow cursor), and keeps at most [`KEPT_BYTES`] of lines per
//! instance in memory, and [`TOTAL_KEPT_BYTES`] in all (the oldest lines go first, so a stack
//! that replaced many instances forgets its oldest terminated ones in memory; their files stay
//! until `down`).
//!
//! Size is bounded by rotation: once a file is past [`ROTATE_BYTES`] after a read, it is
//! copied to `<instance-id>.log.1` (replacing the previous one) and truncated. The program
//! keeps writing through its append-mode descriptor, at the start of the emptied file. A line
//! written between that last read and the truncation is lost, as with logrotate's
//! `copytruncate`, which works the same way for the same reason (the writer cannot be told
//! to reopen its file). A daemon that starts again reads the rotated file, then the current
//! one, so logs survive a daemon restart.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use crate::port::logs::page;
use crate::port::{CloudError, LogCursor, LogLine, LogPage, LogQuery};

/// How often the daemon reads the instances' new lines.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// A log file past this size is rotated.
pub const ROTATE_BYTES: u64 = 1024 * 1024;
/// The most bytes of lines kept in memory per instance (about the current and rotated files).
pub const KEPT_BYTES: usize = 2 * 1024 * 1024;
/// The most bytes of lines kept in memory for all instances together.
pub const TOTAL_KEPT_BYTES: usize = 32 * 1024 * 1024;
/// The longest line kept whole; longer ones are cut there.
const LINE_LIMIT: usize = 64 * 1024;

/// Where instance `id` in `az` writes, under the stack's `logs` directory (the directory is
/// created).
pub fn instance_log(logs: &Path, az: &str, id: &str) -> std::io::Result<PathBuf> {
    let dir = logs.join("instances").join(az);
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(format!("{id}.log")))
}

/// The lines read so far from every instance's log.
#[derive(Debug)]
pub struct LogStore {
    root: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Instance id → its log.
    instances: BTreeMap<String, InstanceLog>,
    /// The sequence number of the newest line read.
    latest: u64,
}

#[derive(Debug)]
struct InstanceLog {
    az: String,
    path: PathBuf,
    /// How far the current file has been read.
    offset: u64,
    /// The end of the file when it did not end with a newline.
    partial: Vec<u8>,
    /// `(sequence, raw length, line)`, oldest first.
    lines: VecDeque<(u64, usize, LogLine)>,
    bytes: usize,
}

impl LogStore {
    /// A store for the instance logs under `logs` (the stack's `logs` directory).
    pub fn new(logs: &Path) -> LogStore {
        LogStore {
            root: logs.join("instances"),
            // Numbering starts at the microseconds since the epoch, so that a daemon started
            // again numbers after its predecessor and a follower's cursor stays behind the new
            // lines (it then sees what the files still hold once more, rather than nothing).
            inner: Mutex::new(Inner {
                instances: BTreeMap::new(),
                latest: u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
                    .unwrap_or(0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what every instance appended since the last scan, rotating files that grew past
    /// [`ROTATE_BYTES`].
    pub fn scan(&self) {
        let mut inner = self.lock();
        for (az, id, path) in log_files(&self.root) {
            let now = OffsetDateTime::now_utc();
            let Inner { instances, latest } = &mut *inner;
            let log = instances.entry(id.clone()).or_insert_with(|| {
                let mut log = InstanceLog {
                    az: az.clone(),
                    path: path.clone(),
                    offset: 0,
                    partial: Vec::new(),
                    lines: VecDeque::new(),
                    bytes: 0,
                };
                // First sight (also after a daemon restart): the rotated lines come first.
                let rotated = rotated_path(&path);
                if let Ok(text) = std::fs::read(&rotated) {
                    log.take(&text, &id, now, latest);
                    log.flush_partial(&id, now, latest);
                }
                log
            });
            log.read_new(&id, now, latest);
        }
        inner.trim(TOTAL_KEPT_BYTES);
    }

    /// A page of the lines `query` selects (see [`crate::port::logs::page`]).
    pub fn page(
        &self,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        query.validate()?;
        self.scan();
        let inner = self.lock();
        let mut lines: Vec<(u64, &LogLine)> = inner
            .instances
            .iter()
            .filter(|(id, log)| {
                query.instance.as_ref().is_none_or(|want| want == *id)
                    && query.az.as_ref().is_none_or(|want| *want == log.az)
            })
            .flat_map(|(_, log)| log.lines.iter().map(|(seq, _, line)| (*seq, line)))
            .collect();
        lines.sort_by_key(|(seq, _)| *seq);
        page(lines.into_iter(), inner.latest, query, cursor)
    }
}

impl Inner {
    /// Drops the oldest lines, whichever instance's, until at most `limit` bytes are kept.
    fn trim(&mut self, limit: usize) {
        let mut total: usize = self.instances.values().map(|log| log.bytes).sum();
        while total > limit {
            let oldest = self
                .instances
                .values_mut()
                .filter_map(|log| Some((log.lines.front()?.0, log)))
                .min_by_key(|(seq, _)| *seq);
            let Some((_, log)) = oldest else {
                break;
            };
            if let Some((_, len, _)) = log.lines.pop_front() {
                log.bytes = log.bytes.saturating_sub(len);
                total = total.saturating_sub(len);
            }
        }
    }
}

impl InstanceLog {
    fn read_new(&mut self, id: &str, now: OffsetDateTime, latest: &mut u64) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if len < self.offset {
            // Emptied by someone else: start again from its beginning.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return;
        }
        let mut text = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut text).is_err()
        {
            return;
        }
        self.offset += text.len() as u64;
        self.take(&text, id, now, latest);
        if self.offset > ROTATE_BYTES {
            self.rotate();
        }
    }

    /// Copies the file aside and empties it (see the module documentation).
    fn rotate(&mut self) {
        if std::fs::copy(&self.path, rotated_path(&self.path)).is_err() {
            return;
        }
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&self.path)
            && file.set_len(0).is_ok()
        {
            self.offset = 0;
        }
    }

    /// Adds the complete lines of `text` (after what was left of the previous read).
    fn take(&mut self, text: &[u8], id: &str, now: OffsetDateTime, latest: &mut u64) {
        self.partial.extend_from_slice(text);
        let mut rest = std::mem::take(&mut self.partial);
        let mut start = 0;
        while let Some(end) = rest[start..].iter().position(|b| *b == b'\n') {
            let raw = &rest[start..start + end];
            self.push(raw, id, now, latest);
            start += end + 1;
        }
        rest.drain(..start);
        if rest.len() > LINE_LIMIT {
            self.push(&rest, id, now, latest);
            rest.clear();
        }
        self.partial = rest;
    }

    fn flush_partial(&mut self, id: &str, now: OffsetDateTime, latest: &mut u64) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.push(&rest, id, now, latest);
        }
    }

    fn push(&mut self, raw: &[u8], id: &str, now: OffsetDateTime, latest: &mut u64) {
        let raw = &raw[..raw.len().min(LINE_LIMIT)];
        let text = String::from_utf8_lossy(raw);
        if text.trim().is_empty() {
            return;
        }
        *latest += 1;
        self.bytes += raw.len();
        self.lines
            .push_back((*latest, raw.len(), LogLine::parse(&text, id, &self.az, now)));
        while self.bytes > KEPT_BYTES {
            let Some((_, len, _)) = self.lines.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(len);
        }
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// `(az, instance id, path)` of every current instance log under `root`.
fn log_files(root: &Path) -> Vec<(String, String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(azs) = std::fs::read_dir(root) else {
        return found;
    };
    for az in azs.filter_map(Result::ok) {
        let Some(az_name) = az.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(az.path()) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let name = file.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
                continue;
            };
            found.push((az_name.clone(), id.to_owned(), file.path()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        file.write_all(text.as_bytes()).expect("write");
    }

    fn messages(page: &LogPage) -> Vec<String> {
        page.lines.iter().map(|l| l.message.clone()).collect()
    }

    #[test]
    fn lines_are_attributed_to_their_instance_and_az_and_partial_lines_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = instance_log(dir.path(), "az-a", "i-a").expect("path");
        let b = instance_log(dir.path(), "az-b", "i-b").expect("path");
        append(
            &a,
            "{\"level\":\"INFO\",\"message\":\"one\"}\n{\"level\":\"ERR",
        );
        append(&b, "{\"level\":\"ERROR\",\"message\":\"two\"}\n");
        let store = LogStore::new(dir.path());
        let all = store.page(&LogQuery::default(), None).expect("page");
        assert_eq!(all.lines.len(), 2);
        let two = all.lines.iter().find(|l| l.message == "two").expect("two");
        assert_eq!((two.instance.as_str(), two.az.as_str()), ("i-b", "az-b"));

        append(&a, "OR\",\"message\":\"three\"}\n");
        let next = store
            .page(&LogQuery::default(), Some(&all.cursor))
            .expect("page");
        assert_eq!(messages(&next), ["three"]);
        assert_eq!(next.lines[0].az, "az-a");
        assert_eq!(next.lines[0].level, Some(crate::port::LogLevel::Error));
    }

    #[test]
    fn a_big_log_is_rotated_and_follow_neither_repeats_nor_skips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = instance_log(dir.path(), "az-a", "i-a").expect("path");
        let store = LogStore::new(dir.path());
        let mut cursor = store.page(&LogQuery::default(), None).expect("page").cursor;
        let filler = "x".repeat(1000);
        let mut seen = Vec::new();
        for n in 0..1500 {
            append(
                &path,
                &format!("{{\"level\":\"INFO\",\"message\":\"{n}\",\"pad\":\"{filler}\"}}\n"),
            );
            if n % 100 == 99 {
                let query = LogQuery {
                    limit: Some(30),
                    ..LogQuery::default()
                };
                loop {
                    let page = store.page(&query, Some(&cursor)).expect("page");
                    seen.extend(messages(&page));
                    cursor = page.cursor;
                    if !page.more {
                        break;
                    }
                }
            }
        }
        let expected: Vec<String> = (0..1500).map(|n| n.to_string()).collect();
        assert_eq!(seen, expected);
        let size = std::fs::metadata(&path).expect("log").len();
        assert!(size <= ROTATE_BYTES, "the current file was rotated: {size}");
        assert!(rotated_path(&path).exists());

        // A new daemon reads the rotated file, then the current one, in order.
        let again = LogStore::new(dir.path());
        let tail = again
            .page(
                &LogQuery {
                    limit: Some(MAX_TAIL),
                    ..LogQuery::default()
                },
                None,
            )
            .expect("page");
        let numbers: Vec<u32> = tail
            .lines
            .iter()
            .map(|l| l.message.parse().expect("number"))
            .collect();
        assert_eq!(numbers.last(), Some(&1499));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }

    const MAX_TAIL: usize = 10_000;

    #[test]
    fn the_oldest_lines_go_first_when_all_instances_together_keep_too_much() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::new(dir.path());
        // Read in this order: i-old's lines are the oldest.
        for (az, id) in [("az-a", "i-old"), ("az-b", "i-new")] {
            let path = instance_log(dir.path(), az, id).expect("path");
            append(
                &path,
                &format!("{{\"message\":\"{id} 1\"}}\n{{\"message\":\"{id} 2\"}}\n"),
            );
            store.scan();
        }
        let mut inner = store.lock();
        let kept: usize = inner.instances.values().map(|l| l.bytes).sum();
        let one_line = inner.instances["i-old"].lines[0].1;
        inner.trim(kept - one_line);
        drop(inner);
        let left: Vec<String> = messages(&store.page(&LogQuery::default(), None).expect("page"));
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&"i-old 1".to_owned()), "{left:?}");
    }
}
