//! A GameDay's remedy: what the drill does by itself when the probe sees the faulted AZ
//! impaired, and what the report says about it.
//!
//! The one remedy is a zonal shift away from the faulted AZ (`--remedy zonal-shift`). The
//! probe knows, for each second, which AZ served each of its successful requests and how long
//! each took; a failed request names no AZ. So a second counts as *impaired* for the AZ when
//! the requests the AZ served have a p99 above `--impaired-p99-ms`, or when more than
//! `--impaired-error-pct` % of all the probe's requests failed. After `--impaired-for`
//! consecutive impaired seconds the drill starts the shift (journaled like any other), keeps it
//! through the fault and cancels it after the restore. Defaults: 5 %, 250 ms, 5 s — a probe
//! against a healthy sandbox or ALB answers well under 250 ms, and 5 s rides out a single slow
//! second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::probe::{Latency, ProbeSecond};

/// When the faulted AZ counts as impaired.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Impairment {
    /// More than this percentage of the probe's requests failed in the second.
    pub error_pct: f64,
    /// The requests the AZ served in the second have a p99 above this.
    pub p99_ms: f64,
    /// For this many consecutive seconds.
    pub for_seconds: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            error_pct: 5.0,
            p99_ms: 250.0,
            for_seconds: 5,
        }
    }
}

impl Impairment {
    /// Whether `second` shows `az` impaired (a second without requests shows nothing).
    pub fn impaired(&self, second: &ProbeSecond, az: &str) -> bool {
        let total = second.total();
        if total == 0 {
            return false;
        }
        let failed_pct = f64::from(second.failures()) * 100.0 / f64::from(total);
        let slow = second
            .az_p99_ms
            .get(az)
            .is_some_and(|p99| *p99 > self.p99_ms);
        failed_pct > self.error_pct || slow
    }

    /// Whether `second` shows the stack as a whole well again: requests answered, errors and
    /// the overall p99 within the thresholds.
    pub fn healthy(&self, second: &ProbeSecond) -> bool {
        let total = second.total();
        total > 0
            && f64::from(second.failures()) * 100.0 / f64::from(total) <= self.error_pct
            && second.p99_ms.is_none_or(|p99| p99 <= self.p99_ms)
    }
}

/// What the drill can do about an impaired AZ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "remedy", rename_all = "kebab-case")]
pub enum Remedy {
    /// Shift traffic away from the faulted AZ once it is impaired for long enough.
    ZonalShift { impaired: Impairment },
}

impl Remedy {
    /// The command-line names (`--remedy`).
    pub const NAMES: &'static [&'static str] = &["zonal-shift"];

    pub fn name(&self) -> &'static str {
        match self {
            Remedy::ZonalShift { .. } => "zonal-shift",
        }
    }

    pub fn impairment(&self) -> Impairment {
        match self {
            Remedy::ZonalShift { impaired } => *impaired,
        }
    }
}

/// Counts consecutive impaired seconds of one AZ.
#[derive(Debug, Clone)]
pub struct Detector {
    pub rule: Impairment,
    pub az: String,
    streak: u64,
    /// The first second of the streak that fired, or of the current streak.
    pub first_impaired: Option<u64>,
}

impl Detector {
    pub fn new(rule: Impairment, az: impl Into<String>) -> Self {
        Detector {
            rule,
            az: az.into(),
            streak: 0,
            first_impaired: None,
        }
    }

    /// Takes the next completed second; returns true when the AZ has now been impaired for
    /// `for_seconds` in a row.
    pub fn observe(&mut self, second: &ProbeSecond) -> bool {
        if self.rule.impaired(second, &self.az) {
            if self.streak == 0 {
                self.first_impaired = Some(second.second);
            }
            self.streak += 1;
        } else {
            self.streak = 0;
        }
        self.streak >= self.rule.for_seconds.max(1)
    }
}

/// What the remedy did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemedyRecord {
    pub remedy: String,
    pub az: String,
    pub impaired: Option<Impairment>,
    /// The second the impairment that triggered the shift began.
    pub impaired_at: Option<u64>,
    /// The second the shift started.
    pub shifted_at: Option<u64>,
    /// The first second from the shift on when the probe saw the stack well again (errors and
    /// overall p99 within the thresholds).
    pub recovered_at: Option<u64>,
    /// Why no shift started, when one was due but failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_error: Option<String>,
    /// Requests served per AZ from the injection to the shift (or the restore, without one).
    pub served_before: BTreeMap<String, u32>,
    /// Requests served per AZ from the second after the shift started to the restore.
    pub served_after: BTreeMap<String, u32>,
    /// The probe's latency over the same span (shifted, fault still in place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_shifted: Option<Latency>,
}

impl RemedyRecord {
    /// The report's lines: detect, time to shift, recovery, per-AZ counts before and after.
    pub fn lines(&self, inject_at: Option<u64>) -> Vec<String> {
        let since = |at: Option<u64>| match (at, inject_at) {
            (Some(at), Some(inject)) => format!("{} s", at.saturating_sub(inject)),
            _ => "—".to_owned(),
        };
        let mut lines = vec![match (self.shifted_at, &self.shift_error) {
            (Some(_), _) => format!(
                "remedy {}: {} impaired {} after inject, shifted away {} after inject, \
                 recovered {} after inject",
                self.remedy,
                self.az,
                since(self.impaired_at),
                since(self.shifted_at),
                since(self.recovered_at)
            ),
            (None, Some(error)) => format!(
                "remedy {}: {} impaired {} after inject; the shift failed: {error}",
                self.remedy,
                self.az,
                since(self.impaired_at)
            ),
            (None, None) => format!(
                "remedy {}: {} was never impaired for long enough; no shift",
                self.remedy, self.az
            ),
        }];
        let counts = |counts: &BTreeMap<String, u32>| {
            counts
                .iter()
                .map(|(az, n)| format!("{az} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!(
            "probe requests per AZ before the shift: {}",
            counts(&self.served_before)
        ));
        if self.shifted_at.is_some() {
            let p99 = self
                .latency_shifted
                .and_then(|l| l.p99_ms)
                .map_or("—".to_owned(), |ms| format!("{ms:.1} ms"));
            lines.push(format!(
                "probe requests per AZ after the shift: {} (p99 {p99}, fault still in place)",
                counts(&self.served_after)
            ));
        }
        lines
    }
}

/// The AZ of a probe's "version@az" key.
fn az_of(served_by: &str) -> &str {
    served_by.rsplit_once('@').map_or("", |(_, az)| az)
}

/// Requests served per AZ over `seconds` in `from..to`, every AZ in `azs` present.
pub fn served_per_az(
    seconds: &[ProbeSecond],
    azs: &[String],
    from: u64,
    to: u64,
) -> BTreeMap<String, u32> {
    let mut counts: BTreeMap<String, u32> = azs.iter().map(|az| (az.clone(), 0)).collect();
    for second in seconds.iter().filter(|s| s.second >= from && s.second < to) {
        for (key, n) in &second.served_by {
            *counts.entry(az_of(key).to_owned()).or_default() += n;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(n: u64, ok: u32, failed: u32, az_p99: &[(&str, f64)]) -> ProbeSecond {
        let mut s = ProbeSecond {
            second: n,
            ok,
            ..ProbeSecond::default()
        };
        if failed > 0 {
            s.failed
                .insert(super::super::probe::FailureKind::Timeout, failed);
        }
        s.az_p99_ms = az_p99
            .iter()
            .map(|(az, ms)| ((*az).to_owned(), *ms))
            .collect();
        s
    }

    #[test]
    fn an_az_is_impaired_when_slow_or_when_the_probe_fails_and_fires_after_a_streak() {
        let rule = Impairment {
            error_pct: 5.0,
            p99_ms: 250.0,
            for_seconds: 3,
        };
        assert!(rule.impaired(&second(0, 20, 0, &[("a", 300.0)]), "a"));
        assert!(!rule.impaired(&second(0, 20, 0, &[("a", 300.0)]), "b"));
        assert!(rule.impaired(&second(0, 18, 2, &[]), "b"), "10 % failed");
        assert!(!rule.impaired(&second(0, 0, 0, &[]), "a"), "no request");
        let mut detector = Detector::new(rule, "a");
        let slow = |n| second(n, 20, 0, &[("a", 300.0)]);
        assert!(!detector.observe(&slow(1)));
        assert!(!detector.observe(&slow(2)));
        assert!(
            !detector.observe(&second(3, 20, 0, &[("a", 10.0)])),
            "streak broken"
        );
        assert!(!detector.observe(&slow(4)));
        assert!(!detector.observe(&slow(5)));
        assert!(detector.observe(&slow(6)));
        assert_eq!(detector.first_impaired, Some(4));
    }

    #[test]
    fn requests_are_counted_per_az_in_a_window() {
        let mut s = second(5, 3, 0, &[]);
        s.served_by.insert("1.0.0@a".into(), 2);
        s.served_by.insert("1.0.0@b".into(), 1);
        let azs = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let counts = served_per_az(&[s.clone()], &azs, 0, 10);
        assert_eq!(counts["a"], 2);
        assert_eq!(counts["c"], 0);
        assert_eq!(served_per_az(&[s], &azs, 6, 10)["a"], 0);
    }
}
