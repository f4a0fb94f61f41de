//! Reading the webapp's log lines from CloudWatch Logs: the log group `/triad/<name>/webapp`
//! ([`log_group_name`], created by the template), one stream per instance named `<az>/<instance-id>` (so a stream
//! names the line's AZ and instance), read with `FilterLogEvents`
//! (<https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html>).
//!
//! The AZ filter becomes the stream name prefix `<az>/`, AZ and instance together the one
//! stream name, the time range `startTime`/`endTime`; level and text are applied here by the
//! port's one rule ([`LogQuery::matches`]) so that they mean the same on every backend
//! (CloudWatch's filter patterns match terms, not substrings).
//!
//! Following polls with a cursor rather than `StartLiveTail`: live tail is an event-stream
//! call that holds a connection open per session and bills by the minute, where a poll is
//! one ordinary call. A line is ingested some time after the instance wrote it, so the
//! cursor does not start the next poll at the newest line's time but [`LOOKBACK`] before it,
//! and remembers the ids of the lines it already returned in that window: a line that
//! reaches CloudWatch up to [`LOOKBACK`] late is still returned once, and no line twice.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error;
use crate::port::{CloudError, LogCursor, LogLine, LogPage, LogQuery, StackRef};

/// How late (after the newest line seen) a line may reach CloudWatch and still be followed.
pub const LOOKBACK: Duration = Duration::from_secs(30);
/// How far back a read without `since` looks.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// The most `FilterLogEvents` pages one read fetches (each up to 1 MB or 10,000 events);
/// a read that stops there says `more`.
pub const MAX_PAGES: usize = 20;

pub use crate::template::webapp_log_group as log_group_name;

/// An instance's stream in the group.
pub fn stream_name(az: &str, instance: &str) -> String {
    format!("{az}/{instance}")
}

/// Where a follower stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// The next poll's `startTime` (milliseconds since the epoch).
    start_ms: i64,
    /// `(timestamp ms, event id)` of the lines returned at or after `start_ms`.
    seen: BTreeSet<(i64, String)>,
}

impl Cursor {
    fn encode(&self) -> LogCursor {
        LogCursor(serde_json::to_string(self).unwrap_or_default())
    }

    fn decode(cursor: &LogCursor) -> Result<Cursor, CloudError> {
        serde_json::from_str(&cursor.0)
            .map_err(|_| CloudError::invalid("cursor", "is not a cursor of the AWS backend"))
    }
}

/// One event as CloudWatch returned it, read into a line.
struct Event {
    ms: i64,
    id: String,
    line: LogLine,
}

fn millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn lookback_ms() -> i64 {
    i64::try_from(LOOKBACK.as_millis()).unwrap_or(i64::MAX)
}

/// A page of `stack`'s lines (see the module documentation and [`crate::port::logs`]).
pub(crate) async fn read(
    client: &aws_sdk_cloudwatchlogs::Client,
    stack: &StackRef,
    query: &LogQuery,
    cursor: Option<&LogCursor>,
    now: OffsetDateTime,
) -> Result<LogPage, CloudError> {
    let limit = query.page_lines()?;
    let previous = cursor.map(Cursor::decode).transpose()?;
    let since = query.since.map(millis);
    let start_ms = match &previous {
        Some(c) => since.map_or(c.start_ms, |s| s.max(c.start_ms)),
        None => since.unwrap_or_else(|| millis(now - DEFAULT_WINDOW)),
    };
    let (mut events, complete) = fetch(client, stack, query, start_ms, now).await?;
    events.sort_by(|a, b| (a.ms, &a.id).cmp(&(b.ms, &b.id)));
    let newest_fetched = events.last().map(|e| e.ms);
    let fetched: Vec<(i64, String)> = events.iter().map(|e| (e.ms, e.id.clone())).collect();
    let seen = previous.as_ref().map(|c| &c.seen);
    let mut fresh: Vec<Event> = events
        .into_iter()
        .filter(|e| seen.is_none_or(|s| !s.contains(&(e.ms, e.id.clone()))))
        .filter(|e| query.matches(&e.line))
        .collect();

    let Some(previous) = previous else {
        // The tail: the newest matching lines; everything fetched counts as seen, so that
        // following goes on after it.
        let skip = fresh.len().saturating_sub(limit);
        let lines: Vec<LogLine> = fresh.into_iter().skip(skip).map(|e| e.line).collect();
        let next_start = next_start(start_ms, newest_fetched, now);
        let seen = fetched
            .into_iter()
            .filter(|(ms, _)| *ms >= next_start)
            .collect();
        return Ok(LogPage {
            lines,
            cursor: Cursor {
                start_ms: next_start,
                seen,
            }
            .encode(),
            more: false,
        });
    };
    let cut = fresh.len() > limit;
    fresh.truncate(limit);
    // The next poll starts LOOKBACK before the newest line this one covered: the last line
    // returned when the page was cut (matching lines after it are still due), else the newest
    // line fetched.
    let horizon = if cut {
        fresh.last().map(|e| e.ms)
    } else {
        newest_fetched
    };
    let next = next_start(start_ms, horizon, now);
    let mut seen: BTreeSet<(i64, String)> = previous
        .seen
        .into_iter()
        .filter(|(ms, _)| *ms >= next)
        .collect();
    seen.extend(
        fresh
            .iter()
            .filter(|e| e.ms >= next)
            .map(|e| (e.ms, e.id.clone())),
    );
    Ok(LogPage {
        lines: fresh.into_iter().map(|e| e.line).collect(),
        cursor: Cursor {
            start_ms: next,
            seen,
        }
        .encode(),
        more: cut || !complete,
    })
}

/// Where the poll after one that covered lines up to `horizon` starts (never earlier than
/// this one's start).
fn next_start(start_ms: i64, horizon: Option<i64>, now: OffsetDateTime) -> i64 {
    let newest = horizon.unwrap_or_else(|| millis(now));
    start_ms.max(newest.saturating_sub(lookback_ms()))
}

/// Every event from `start_ms` that the stream and time filters select, up to [`MAX_PAGES`];
/// `false` when pages were left.
async fn fetch(
    client: &aws_sdk_cloudwatchlogs::Client,
    stack: &StackRef,
    query: &LogQuery,
    start_ms: i64,
    now: OffsetDateTime,
) -> Result<(Vec<Event>, bool), CloudError> {
    let group = log_group_name(&stack.name);
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = client
            .filter_log_events()
            .log_group_name(&group)
            .start_time(start_ms)
            .set_next_token(token.clone());
        if let Some(until) = query.until {
            request = request.end_time(millis(until));
        }
        request = match (&query.az, &query.instance) {
            (Some(az), Some(instance)) => request.log_stream_names(stream_name(az, instance)),
            (Some(az), None) => request.log_stream_name_prefix(format!("{az}/")),
            _ => request,
        };
        let output = request.send().await.map_err(|e| {
            let error = error::from_sdk("logs", "FilterLogEvents", e);
            match error {
                CloudError::Backend { code, .. } if code == "ResourceNotFoundException" => {
                    CloudError::not_found(format!(
                        "log group {group} (the stack's instances have not logged yet, or \
                         the stack was not created by triad)"
                    ))
                }
                other => other,
            }
        })?;
        for event in output.events() {
            let (Some(stream), Some(message)) = (event.log_stream_name(), event.message()) else {
                continue;
            };
            let (az, instance) = stream.split_once('/').unwrap_or(("", stream));
            let ms = event.timestamp().unwrap_or(start_ms);
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or(now);
            events.push(Event {
                ms,
                id: event
                    .event_id()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{stream}/{ms}/{message}")),
                line: LogLine::parse(message, instance, az, at),
            });
        }
        token = output.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok((events, true));
        }
    }
    Ok((events, false))
}
