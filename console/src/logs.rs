//! `triad logs`: the webapp's log lines, per instance and AZ, on either backend; `--follow`
//! keeps reading with the port's cursor until interrupted.

use std::time::Duration;

use clap::Args;
use provision::port::{Cloud, CloudError, LogCursor, LogLevel, LogLine, LogQuery, StackRef};
use time::OffsetDateTime;

use crate::cli::Cli;
use crate::commands::{Outcome, session};

/// How often `--follow` asks for new lines.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args, Clone, Default)]
pub struct LogsArgs {
    /// Only lines from instances in this Availability Zone.
    #[arg(long, value_name = "AZ")]
    pub az: Option<String>,
    /// Only lines from this instance.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Only lines at this level or more severe (trace, debug, info, warn, error).
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub level: Option<LogLevel>,
    /// Only lines whose message or a field contains this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only lines from the last DURATION (e.g. 30s, 10m, 2h, 1d).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_age)]
    pub since: Duration,
    /// The most lines shown before following.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub tail: usize,
    /// Keep printing new lines as they arrive (Ctrl-C stops).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    text.parse().map_err(|e: CloudError| e.to_string())
}

/// A duration such as `90s`, `10m`, `2h` or `1d`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 10m, 2h or 1d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: the unit is s, m, h or d (30s, 10m, 2h, 1d)"
            ));
        }
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

impl LogsArgs {
    /// The port query these flags ask for, relative to `now`.
    pub fn query(&self, now: OffsetDateTime) -> LogQuery {
        LogQuery {
            az: self.az.clone(),
            instance: self.instance.clone(),
            level: self.level,
            text: self.grep.clone(),
            since: Some(now - self.since),
            until: None,
            limit: Some(self.tail.max(1)),
        }
    }
}

/// One line as printed.
pub fn render(line: &LogLine, json: bool) -> String {
    if json {
        serde_json::to_string(line).unwrap_or_else(|_| line.to_text())
    } else {
        line.to_text()
    }
}

/// Prints `lines`; `false` once stdout is closed (`triad logs | head`).
fn print(lines: &[LogLine], json: bool) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    lines
        .iter()
        .all(|line| writeln!(out, "{}", render(line, json)).is_ok())
        && out.flush().is_ok()
}

/// What a follower does after a page: go on reading or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    More,
    Stop,
}

/// Reads the newest lines `query` selects, then (as long as `on_page` says [`Next::More`]) every
/// new one as it arrives, with the port's cursor: each page once, in order. An error that can
/// be retried goes to `on_retry`, and the read is tried again after [`FOLLOW_INTERVAL`] unless
/// it says [`Next::Stop`]; any other error ends the reading. `triad logs` and the console's log view both read this way.
pub async fn follow(
    cloud: &dyn Cloud,
    stack: &StackRef,
    mut query: LogQuery,
    mut on_page: impl FnMut(Vec<LogLine>) -> Next,
    mut on_retry: impl FnMut(&CloudError) -> Next,
) -> Result<(), CloudError> {
    let mut cursor: Option<LogCursor> = None;
    loop {
        let page = match cloud.logs(stack, &query, cursor.as_ref()).await {
            Ok(page) => page,
            Err(e) if e.is_retryable() && on_retry(&e) == Next::More => {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let first = cursor.is_none();
        cursor = Some(page.cursor);
        if on_page(page.lines) == Next::Stop {
            return Ok(());
        }
        if first {
            // The tail was limited; following takes every new line.
            query.limit = None;
        }
        if !page.more {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
    }
}

/// Runs `triad logs`.
pub async fn logs(cli: &Cli, args: &LogsArgs) -> Outcome {
    let (stack, _, cloud) = match session(cli).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let fail = |error: CloudError| {
        eprintln!("triad: {error}");
        Outcome::of(&error)
    };
    let query = args.query(OffsetDateTime::now_utc());
    let reading = follow(
        cloud.as_ref(),
        &stack,
        query,
        |lines| {
            if print(&lines, args.json) && args.follow {
                Next::More
            } else {
                Next::Stop
            }
        },
        |e| {
            if args.follow {
                eprintln!("triad: {e} (retrying)");
                Next::More
            } else {
                Next::Stop
            }
        },
    );
    tokio::select! {
        result = reading => match result {
            Ok(()) => Outcome::Done,
            Err(e) => fail(e),
        },
        _ = tokio::signal::ctrl_c() => Outcome::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_read_with_their_unit() {
        assert_eq!(parse_age("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_age("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_age("ten").is_err());
        assert!(parse_age("5w").is_err());
    }
}
