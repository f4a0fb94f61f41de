//! The webapp's log lines: what a query asks for ([`LogQuery`]), what comes back
//! ([`LogLine`], a page of them with a [`LogCursor`]), and the rules every backend shares —
//! how a raw line is read ([`LogLine::parse`]), which lines a query selects
//! ([`LogQuery::matches`]) and how a page is cut from lines in arrival order ([`page`]).
//!
//! Following is repeated calls of [`Cloud::logs`](super::Cloud::logs) with the cursor of the
//! previous page: a page never repeats a line of an earlier page and never skips one that
//! arrived after it (within what the backend keeps: a sandbox rotates each instance's log,
//! CloudWatch Logs keeps a group's events for its retention period).
//!
//! The webapp writes one JSON object per line (tracing's JSON format, flattened):
//! `{"timestamp":"…","level":"INFO","message":"request","request_id":"…","target":"…"}`.
//! Lines that are not such an object (a panic message on stderr) are kept as they are,
//! without a level, timed when they were read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::CloudError;

/// How many lines a page holds when the query does not say.
pub const DEFAULT_PAGE_LINES: usize = 200;
/// The most lines a page may hold.
pub const MAX_PAGE_LINES: usize = 10_000;

/// A log line's severity, as the webapp's `level` field spells it (`"ERROR"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The level's name as the webapp writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }

    /// This level and every more severe one, least severe first.
    pub fn and_above(self) -> impl Iterator<Item = LogLevel> {
        Self::ALL.into_iter().filter(move |l| *l >= self)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = CloudError;

    /// Any case; `warning` is `WARN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Ok(Self::Trace),
            "DEBUG" => Ok(Self::Debug),
            "INFO" => Ok(Self::Info),
            "WARN" | "WARNING" => Ok(Self::Warn),
            "ERROR" => Ok(Self::Error),
            _ => Err(CloudError::invalid(
                "level",
                format!("{s:?} is not one of trace, debug, info, warn, error"),
            )),
        }
    }
}

/// One line the webapp logged on one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The line's own `timestamp`, or when it was read when it has none.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub instance: String,
    pub az: String,
    /// `None` for a line that is not one of the webapp's JSON lines.
    pub level: Option<LogLevel>,
    /// The `message` field, or the whole line when it is not JSON.
    pub message: String,
    /// The line's other JSON fields (`request_id`, `status`, `target`, …).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl LogLine {
    /// Reads one raw line written by `instance` in `az`; `read_at` times a line without a
    /// timestamp of its own.
    pub fn parse(raw: &str, instance: &str, az: &str, read_at: OffsetDateTime) -> LogLine {
        let raw = raw.trim_end_matches(['\n', '\r']);
        let plain = || LogLine {
            time: read_at,
            instance: instance.to_owned(),
            az: az.to_owned(),
            level: None,
            message: raw.to_owned(),
            fields: serde_json::Map::new(),
        };
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(raw) else {
            return plain();
        };
        let time = match fields.get("timestamp").and_then(|t| t.as_str()) {
            Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
                Ok(time) => {
                    fields.remove("timestamp");
                    time
                }
                Err(_) => read_at,
            },
            None => read_at,
        };
        let level = match fields.get("level").and_then(|l| l.as_str()) {
            Some(text) => match text.parse::<LogLevel>() {
                Ok(level) => {
                    fields.remove("level");
                    Some(level)
                }
                Err(_) => None,
            },
            None => None,
        };
        let message = match fields.remove("message") {
            Some(serde_json::Value::String(message)) => message,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        LogLine {
            time,
            instance: instance.to_owned(),
            az: az.to_owned(),
            level,
            message,
            fields,
        }
    }

    /// The line as one line of text: time, AZ, instance, level, message, then the fields as
    /// `key=value`.
    pub fn to_text(&self) -> String {
        let time = self
            .time
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.time.to_string());
        let mut text = format!(
            "{time} {} {} {:<5} {}",
            self.az,
            self.instance,
            self.level.map_or("-", LogLevel::as_str),
            self.message
        );
        for (key, value) in &self.fields {
            match value {
                serde_json::Value::String(s) => text.push_str(&format!(" {key}={s}")),
                other => text.push_str(&format!(" {key}={other}")),
            }
        }
        text
    }
}

/// Which lines to read. Every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// This level and more severe ones; lines without a level are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// Text the line's message or one of its field values contains (case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Lines at or after this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<OffsetDateTime>,
    /// Lines before this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<OffsetDateTime>,
    /// The most lines a page holds (default [`DEFAULT_PAGE_LINES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl LogQuery {
    /// Whether `line` passes every filter of the query.
    pub fn matches(&self, line: &LogLine) -> bool {
        if self.az.as_ref().is_some_and(|az| *az != line.az) {
            return false;
        }
        if self
            .instance
            .as_ref()
            .is_some_and(|id| *id != line.instance)
        {
            return false;
        }
        if let Some(level) = self.level
            && line.level.is_none_or(|l| l < level)
        {
            return false;
        }
        if self.since.is_some_and(|since| line.time < since) {
            return false;
        }
        if self.until.is_some_and(|until| line.time >= until) {
            return false;
        }
        if let Some(text) = &self.text
            && !line.message.contains(text.as_str())
            && !line.fields.values().any(|v| match v {
                serde_json::Value::String(s) => s.contains(text.as_str()),
                other => other.to_string().contains(text.as_str()),
            })
        {
            return false;
        }
        true
    }

    /// The page size, checked.
    pub fn page_lines(&self) -> Result<usize, CloudError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_LINES),
            Some(0) => Err(CloudError::invalid(
                "limit",
                "a page holds at least one line",
            )),
            Some(n) if n > MAX_PAGE_LINES => Err(CloudError::invalid(
                "limit",
                format!("{n} is more than {MAX_PAGE_LINES} lines"),
            )),
            Some(n) => Ok(n),
        }
    }

    /// Checks the query before it reaches a backend.
    pub fn validate(&self) -> Result<(), CloudError> {
        self.page_lines()?;
        if let (Some(since), Some(until)) = (self.since, self.until)
            && until <= since
        {
            return Err(CloudError::invalid("until", "is not after since"));
        }
        if self.text.as_deref() == Some("") {
            return Err(CloudError::invalid("text", "is empty"));
        }
        Ok(())
    }
}

/// Where a reader stopped; opaque outside the backend that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogCursor(pub String);

/// Lines in the order they arrived (oldest first) and where to read on from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass this to the next call to get the lines after these.
    pub cursor: LogCursor,
    /// More matching lines are already there: call again right away.
    #[serde(default)]
    pub more: bool,
}

/// Cuts a page from `lines`, numbered by arrival (`(sequence, line)`, ascending sequence),
/// for backends that number the lines they keep. `latest` is the newest sequence number
/// there is (so that a follower skips what did not match).
///
/// Without a cursor the page holds the newest matching lines (the tail); with one, the
/// matching lines after it, oldest first. The cursor is the sequence number of the last line
/// looked at.
pub fn page<'a>(
    lines: impl DoubleEndedIterator<Item = (u64, &'a LogLine)>,
    latest: u64,
    query: &LogQuery,
    cursor: Option<&LogCursor>,
) -> Result<LogPage, CloudError> {
    let limit = query.page_lines()?;
    let Some(cursor) = cursor else {
        let mut tail: Vec<LogLine> = lines
            .rev()
            .filter(|(_, line)| query.matches(line))
            .take(limit)
            .map(|(_, line)| line.clone())
            .collect();
        tail.reverse();
        return Ok(LogPage {
            lines: tail,
            cursor: LogCursor(latest.to_string()),
            more: false,
        });
    };
    let after: u64 = cursor
        .0
        .parse()
        .map_err(|_| CloudError::invalid("cursor", format!("{:?} is not a cursor", cursor.0)))?;
    let mut taken = Vec::new();
    let mut last = after.max(latest);
    let mut more = false;
    for (seq, line) in lines.filter(|(seq, _)| *seq > after) {
        if !query.matches(line) {
            continue;
        }
        if taken.len() == limit {
            more = true;
            break;
        }
        taken.push(line.clone());
        last = seq;
    }
    if !more {
        last = after.max(latest);
    }
    Ok(LogPage {
        lines: taken,
        cursor: LogCursor(last.to_string()),
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn line(instance: &str, az: &str, raw: &str) -> LogLine {
        LogLine::parse(raw, instance, az, datetime!(2026-01-01 00:00 UTC))
    }

    #[test]
    fn a_webapp_json_line_is_read_into_time_level_message_and_fields() {
        let l = line(
            "i-1",
            "az-a",
            r#"{"timestamp":"2026-03-04T05:06:07.123456Z","level":"WARN","message":"request","status":404,"path":"/signup","target":"webapp::logging"}"#,
        );
        assert_eq!(l.time, datetime!(2026-03-04 05:06:07.123456 UTC));
        assert_eq!(l.level, Some(LogLevel::Warn));
        assert_eq!(l.message, "request");
        assert_eq!(l.fields.get("status"), Some(&serde_json::json!(404)));
        assert!(!l.fields.contains_key("level") && !l.fields.contains_key("timestamp"));
    }

    #[test]
    fn a_line_that_is_not_json_is_kept_whole_without_a_level() {
        let l = line("i-1", "az-a", "thread 'main' panicked at src/main.rs:3\n");
        assert_eq!(l.level, None);
        assert_eq!(l.message, "thread 'main' panicked at src/main.rs:3");
        assert_eq!(l.time, datetime!(2026-01-01 00:00 UTC));
    }

    #[test]
    fn filters_select_by_az_instance_level_text_and_time() {
        let l = line(
            "i-1",
            "az-a",
            r#"{"timestamp":"2026-03-04T05:06:07Z","level":"WARN","message":"slow","path":"/signup"}"#,
        );
        let q = |f: fn(&mut LogQuery)| {
            let mut q = LogQuery::default();
            f(&mut q);
            q.matches(&l)
        };
        assert!(q(|_| {}));
        assert!(q(|q| q.az = Some("az-a".into())));
        assert!(!q(|q| q.az = Some("az-b".into())));
        assert!(q(|q| q.instance = Some("i-1".into())));
        assert!(!q(|q| q.instance = Some("i-2".into())));
        assert!(q(|q| q.level = Some(LogLevel::Info)));
        assert!(q(|q| q.level = Some(LogLevel::Warn)));
        assert!(!q(|q| q.level = Some(LogLevel::Error)));
        assert!(q(|q| q.text = Some("slo".into())));
        assert!(q(|q| q.text = Some("/signup".into())));
        assert!(!q(|q| q.text = Some("Slow".into())));
        assert!(q(|q| q.since = Some(datetime!(2026-03-04 05:06:07 UTC))));
        assert!(!q(|q| q.since = Some(datetime!(2026-03-04 05:06:08 UTC))));
        assert!(!q(|q| q.until = Some(datetime!(2026-03-04 05:06:07 UTC))));
        let plain = line("i-1", "az-a", "panicked");
        let by_level = LogQuery {
            level: Some(LogLevel::Trace),
            ..LogQuery::default()
        };
        assert!(!by_level.matches(&plain));
    }

    #[test]
    fn following_with_the_cursor_never_repeats_or_skips_a_line() {
        let all: Vec<LogLine> = (0..25)
            .map(|n| {
                line(
                    if n % 2 == 0 { "i-even" } else { "i-odd" },
                    "az-a",
                    &format!(r#"{{"level":"INFO","message":"line {n}"}}"#),
                )
            })
            .collect();
        let numbered = |upto: usize| {
            all[..upto]
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u64 + 1, l))
        };
        let query = LogQuery {
            instance: Some("i-even".into()),
            limit: Some(2),
            ..LogQuery::default()
        };
        // The tail of the first 10 lines: the newest two even ones.
        let first = page(numbered(10), 10, &query, None).expect("page");
        let messages = |p: &LogPage| {
            p.lines
                .iter()
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(messages(&first), ["line 6", "line 8"]);
        // Then lines arrive; following returns each new even line once, in order.
        let mut seen = Vec::new();
        let mut cursor = first.cursor;
        for upto in [10, 13, 13, 25] {
            loop {
                let next = page(numbered(upto), upto as u64, &query, Some(&cursor)).expect("page");
                seen.extend(messages(&next));
                cursor = next.cursor;
                if !next.more {
                    break;
                }
            }
        }
        let expected: Vec<String> = (10..25).step_by(2).map(|n| format!("line {n}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_bad_query_is_refused_with_the_field() {
        let q = LogQuery {
            limit: Some(0),
            ..LogQuery::default()
        };
        assert!(matches!(q.validate(), Err(CloudError::Invalid { field, .. }) if field == "limit"));
        let bad = page(
            std::iter::empty(),
            0,
            &LogQuery::default(),
            Some(&LogCursor("x".into())),
        );
        assert!(matches!(bad, Err(CloudError::Invalid { field, .. }) if field == "cursor"));
    }
}
