//! Zonal shift: moving traffic away from one Availability Zone for a bounded time, as Amazon
//! Application Recovery Controller (ARC) does, and the rules every backend shares.
//!
//! A shift names the AZ to move away from and how long it lasts ([`ShiftRequest`]); it acts
//! on two resources together, the load balancer (no new request goes to the AZ's targets,
//! requests under way finish) and the Auto Scaling group (no launch into the AZ), and ends on
//! its own when it expires, or when cancelled ([`ZonalShift`]). The rules, from ARC's API
//! (<https://docs.aws.amazon.com/arc-zonal-shift/latest/api/API_StartZonalShift.html>):
//! - `expiresIn` is between one minute and three days ([`ShiftRequest::new`]);
//! - one zonal shift per resource at a time: starting another while one is active is a
//!   conflict (cancel the first).
//!
//! And the safety rules ([`check_shift`], applied by [`Guarded`](super::Guarded)): a shift is
//! refused when it would leave nothing healthy to serve, or when the target group is failing
//! open (every target unhealthy, so each already gets traffic regardless of health, and moving
//! away from one AZ does nothing useful) — unless forced. [`plan_shift`] is the dry run: the
//! other AZs' healthy capacity against the current request rate.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::CloudError;
use super::fault::CapacityCheck;
use super::names::join;
use super::snapshot::{MetricKind, Section, Snapshot};
use crate::model::failing_open;

/// The shortest shift ARC accepts (`expiresIn` "1m").
pub const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
/// The longest shift ARC accepts (`expiresIn` "3d").
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(3 * 24 * 3600);

/// A shift to start: away from `az`, for `expires_in`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftRequest {
    pub az: String,
    /// How long the shift lasts, in whole seconds.
    #[serde(with = "seconds")]
    pub expires_in: Duration,
    /// Why (ARC's `comment`, at most 128 characters).
    #[serde(default)]
    pub comment: String,
}

impl ShiftRequest {
    /// A request with ARC's bounds checked: `expires_in` between [`MIN_EXPIRES_IN`] and
    /// [`MAX_EXPIRES_IN`], a comment of at most 128 characters.
    pub fn new(
        az: impl Into<String>,
        expires_in: Duration,
        comment: impl Into<String>,
    ) -> Result<ShiftRequest, CloudError> {
        let request = ShiftRequest {
            az: az.into(),
            expires_in,
            comment: comment.into(),
        };
        request.validate()?;
        Ok(request)
    }

    /// Checks ARC's bounds (also on a request read from the wire).
    pub fn validate(&self) -> Result<(), CloudError> {
        if self.az.trim().is_empty() {
            return Err(CloudError::invalid("az", "a zonal shift needs an AZ"));
        }
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&self.expires_in) {
            return Err(CloudError::invalid(
                "expires_in",
                format!(
                    "{} is not between 1m and 3d (ARC's bounds for a zonal shift)",
                    format_duration(self.expires_in)
                ),
            ));
        }
        if self.comment.chars().count() > 128 {
            return Err(CloudError::invalid(
                "comment",
                "at most 128 characters (ARC's limit)",
            ));
        }
        Ok(())
    }
}

/// Parses a shift's length as ARC writes it: a number and a unit, `s`, `m`, `h` or `d`
/// (`30m`, `2h`, `1d`); bounds are checked by [`ShiftRequest::new`].
pub fn parse_expires_in(text: &str) -> Result<Duration, CloudError> {
    let text = text.trim();
    let bad = || {
        CloudError::invalid(
            "for",
            format!("{text:?} is not a duration like 90s, 30m, 2h or 1d"),
        )
    };
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A duration as `1d2h3m4s`, leaving out zero parts (`0s` for zero).
pub fn format_duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= size {
            text.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// An active (or just cancelled) zonal shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonalShift {
    /// The AZ traffic is moved away from.
    pub az: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// What was shifted, e.g. "load balancer demo-alb", "auto scaling group demo-asg".
    #[serde(default)]
    pub resources: Vec<String>,
    /// The backend's ids for it (ARC's zonal shift ids, one per resource), to cancel it.
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub comment: String,
}

impl ZonalShift {
    /// How long is left at `now` (zero once expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        Duration::try_from(self.expires_at - now).unwrap_or(Duration::ZERO)
    }
}

/// "away from sandbox-1a until 10:42:07 UTC (29m left)".
impl fmt::Display for ZonalShift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let until = self.expires_at.time();
        write!(
            f,
            "away from {} until {:02}:{:02}:{:02} UTC",
            self.az,
            until.hour(),
            until.minute(),
            until.second()
        )
    }
}

/// The dry run of a shift: what it moves, to where, and whether it is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftPlan {
    pub request: ShiftRequest,
    /// Healthy targets in the AZ shifted away from.
    pub healthy_in_az: usize,
    /// Healthy targets in each other AZ, in the snapshot's order.
    pub healthy_elsewhere: Vec<(String, usize)>,
    /// Requests per second the load balancer received over the last minute, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// What the operator should know.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl ShiftPlan {
    /// The plan's lines, as the CLI and the console show them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "zonal shift away from {} for {}: the load balancer sends no new request to its \
             {} healthy target(s), requests under way finish; the group launches elsewhere",
            self.request.az,
            format_duration(self.request.expires_in),
            self.healthy_in_az
        )];
        let elsewhere: Vec<String> = self
            .healthy_elsewhere
            .iter()
            .map(|(az, n)| format!("{az} {n}"))
            .collect();
        let total: usize = self.healthy_elsewhere.iter().map(|(_, n)| n).sum();
        let rate = match self.request_rate {
            Some(rate) if total > 0 => format!(
                "{rate:.1} req/s now, {:.1} req/s per remaining target",
                rate / total as f64
            ),
            Some(rate) => format!("{rate:.1} req/s now"),
            None => "request rate unknown".to_owned(),
        };
        lines.push(format!(
            "healthy capacity left: {total} ({}); {rate}",
            join(&elsewhere)
        ));
        lines.extend(self.notes.iter().cloned());
        lines
    }
}

/// The dry run of `request` on the stack `snapshot` shows.
pub fn plan_shift(snapshot: &Snapshot, request: &ShiftRequest) -> ShiftPlan {
    let healthy_in_az = snapshot
        .az(&request.az)
        .map_or(0, |view| view.healthy_capacity());
    let healthy_elsewhere = snapshot
        .azs
        .iter()
        .filter(|view| view.az != request.az)
        .map(|view| (view.az.clone(), view.healthy_capacity()))
        .collect();
    ShiftPlan {
        request: request.clone(),
        healthy_in_az,
        healthy_elsewhere,
        request_rate: request_rate(snapshot),
        notes: vec![format!(
            "the shift ends by itself after {}; `triad shift cancel` ends it sooner",
            format_duration(request.expires_in)
        )],
    }
}

/// Requests per second over the last minute of the snapshot's per-AZ request series.
fn request_rate(snapshot: &Snapshot) -> Option<f64> {
    let since = snapshot.taken_at - time::Duration::seconds(60);
    let period = f64::from(snapshot.metrics.period_seconds.max(1));
    let mut total = 0.0;
    let mut seen = false;
    let mut first: Option<OffsetDateTime> = None;
    for series in snapshot
        .metrics
        .series
        .iter()
        .filter(|s| s.metric == MetricKind::Requests && s.az.is_some())
    {
        for point in series.points.iter().filter(|p| p.at >= since) {
            seen = true;
            total += point.value;
            first = Some(first.map_or(point.at, |f| f.min(point.at)));
        }
    }
    let first = first?;
    let span = (snapshot.taken_at - first).as_seconds_f64().max(period);
    seen.then(|| total / span)
}

/// Applies the shift rules to `request` given the current `snapshot` (whose `zonal_shifts` are
/// the active ones).
pub fn check_shift(
    snapshot: &Snapshot,
    request: &ShiftRequest,
    check: CapacityCheck,
) -> Result<(), CloudError> {
    request.validate()?;
    let az = request.az.as_str();
    if snapshot.az(az).is_none() {
        let known: Vec<&str> = snapshot.azs.iter().map(|v| v.az.as_str()).collect();
        return Err(CloudError::invalid(
            "az",
            format!("{az:?} is not one of the stack's AZs ({})", join(&known)),
        ));
    }
    if let Some(active) = snapshot.zonal_shifts.first() {
        return Err(CloudError::conflict(format!(
            "a zonal shift is active ({active}); one shift at a time: cancel it first \
             (`triad shift cancel`)"
        )));
    }
    if check == CapacityCheck::Force {
        return Ok(());
    }
    if let Some(error) = snapshot.error_for(Section::Targets) {
        return Err(CloudError::refused(format!(
            "cannot read the target group ({error}); use --force to shift anyway"
        )));
    }
    let states = snapshot
        .azs
        .iter()
        .flat_map(|view| view.targets.iter().map(|t| t.state));
    if failing_open(states) {
        return Err(CloudError::refused(
            "the target group is failing open (no target is healthy, so every one gets \
             traffic regardless of health): a zonal shift does nothing useful; use --force to \
             shift anyway",
        ));
    }
    if snapshot.healthy_capacity_outside(az) == 0 {
        return Err(CloudError::refused(format!(
            "no healthy capacity outside {az}: the stack would stop serving; use --force to \
             shift anyway"
        )));
    }
    Ok(())
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_as_arc_writes_them_and_keep_to_its_bounds() {
        assert_eq!(
            parse_expires_in("30m").ok(),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(parse_expires_in("2h").ok(), Some(Duration::from_secs(7200)));
        assert_eq!(parse_expires_in("90s").ok(), Some(Duration::from_secs(90)));
        for bad in ["", "m", "30", "30x", "-5m", "1.5h"] {
            assert!(parse_expires_in(bad).is_err(), "{bad:?}");
        }
        assert!(ShiftRequest::new("a", Duration::from_secs(59), "").is_err());
        assert!(ShiftRequest::new("a", MAX_EXPIRES_IN, "").is_ok());
        assert!(ShiftRequest::new("a", MAX_EXPIRES_IN + Duration::from_secs(1), "").is_err());
        assert_eq!(format_duration(Duration::from_secs(93_784)), "1d2h3m4s");
    }
}
