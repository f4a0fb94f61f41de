//! The load report: what the load sent and saw, and how the stack scaled, as JSON (for
//! machines), Markdown (for people) and an SVG chart (capacity per AZ with desired, req/s and
//! errors, p50/p99 — on one time axis, the load's run shaded).
//!
//! All times are seconds from the load's start. p99 is given for three spans of the load:
//! **before** (load start → the first desired change, or the whole load when nothing scaled),
//! **during** (desired change → the new instances healthy in the target group) and **after**
//! (healthy → the end of the load).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::generator::{LoadSecond, Schedule};
use super::phases::{self, Observation, ScaleIn, ScaleOut};
use crate::drill::probe::Latency;
use provision::port::SandboxClock;

/// The load as asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadShape {
    pub from: f64,
    pub to: f64,
    pub ramp_s: f64,
    pub duration_s: f64,
    pub path: String,
    pub signups_per_s: u32,
}

impl LoadShape {
    pub fn of(schedule: &Schedule, path: &str, signups_per_s: u32) -> Self {
        LoadShape {
            from: schedule.from,
            to: schedule.to,
            ramp_s: schedule.ramp.as_secs_f64(),
            duration_s: schedule.duration.as_secs_f64(),
            path: path.to_owned(),
            signups_per_s,
        }
    }

    /// "50 req/s for 60 s" or "10 → 200 req/s over 30 s, for 120 s", with the path and signups.
    pub fn describe(&self) -> String {
        let rate = if self.ramp_s > 0.0 && self.from != self.to {
            format!("{} → {} req/s over {} s", self.from, self.to, self.ramp_s)
        } else {
            format!("{} req/s", self.to)
        };
        let signups = if self.signups_per_s > 0 {
            format!(" + {} signups/s", self.signups_per_s)
        } else {
            String::new()
        };
        format!(
            "{rate} on {}{signups}, for {} s",
            self.path, self.duration_s
        )
    }
}

/// Everything the load recorded; the report is computed from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub stack: String,
    pub backend: String,
    pub endpoint: String,
    pub shape: LoadShape,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The second the load stopped sending.
    pub load_end_at: u64,
    /// The second observation ended (scale-in back to min, or the deadline).
    pub end_at: u64,
    pub seconds: Vec<LoadSecond>,
    pub observations: Vec<Observation>,
    /// Latency over the spans the report names (see the module's doc).
    pub latency_before: Latency,
    pub latency_during: Latency,
    pub latency_after: Latency,
    /// Why the load stopped early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Other activities on the stack while the load ran (a GameDay).
    #[serde(default)]
    pub concurrent: Vec<String>,
    /// The sandbox's clock during the load (none on AWS). Under a compressed (`fast`) clock
    /// each phase is also given on the spec's AWS clock (see [`aws_seconds`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<SandboxClock>,
}

/// Phase `index` (of [`phases::PHASES`]), seen `at` seconds into a load under a compressed
/// clock, on the spec's AWS clock: what the model schedules (metric periods, health checks,
/// the grace period, the assumed instance boot) is multiplied by the clock's factor; from
/// InService on, the new instance's real program start (measured by the sandbox, and already
/// in AWS's boot assumption) is kept as measured — the drill report's rule,
/// [`provision::model::clock::TimeScale::predict`]. `None` on an uncompressed clock.
pub fn aws_seconds(clock: Option<&SandboxClock>, index: usize, at: u64) -> Option<f64> {
    let clock = clock?;
    if !clock.scale.is_compressed() {
        return None;
    }
    let unscaled = if index >= 4 {
        clock.program_start_seconds.unwrap_or(0.0)
    } else {
        0.0
    };
    Some(clock.scale.predict(at as f64, unscaled))
}

/// The measured outcome of a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub record: LoadRecord,
    pub sent: u64,
    pub ok: u64,
    pub dropped: u64,
    pub failed: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    pub signups_acknowledged: u64,
    pub signups_failed: u64,
    pub scale_outs: Vec<ScaleOut>,
    /// Each scale-out's phases on the spec's AWS clock ([`aws_seconds`]), under a compressed
    /// sandbox clock; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_outs_on_aws: Vec<Vec<Option<f64>>>,
    pub scale_ins: Vec<ScaleIn>,
    /// Desired capacity at the start, its highest, and at the end.
    pub desired: Option<(u32, u32, u32)>,
    /// Healthy capacity (all AZs) at the start, its highest, and at the end.
    pub healthy: (u32, u32, u32),
    /// The second desired capacity was back at min after the load, if it came back.
    pub back_to_min_at: Option<u64>,
}

/// The spans p99 is reported over: before scaling, while the new capacity comes in, after it.
pub fn spans(scale_outs: &[ScaleOut], load_end: u64) -> [(u64, u64); 3] {
    let first = scale_outs.first();
    let change = first
        .and_then(|o| o.phases[2])
        .unwrap_or(load_end)
        .min(load_end);
    let healthy = first
        .and_then(|o| o.phases[5])
        .unwrap_or(load_end)
        .clamp(change, load_end);
    [(0, change), (change, healthy), (healthy, load_end)]
}

/// Computes the report from what the load recorded.
pub fn summarize(record: LoadRecord) -> LoadReport {
    let mut failures_by_kind = BTreeMap::new();
    let (mut sent, mut ok, mut dropped, mut failed, mut s_ok, mut s_failed) = (0, 0, 0, 0, 0, 0);
    for s in &record.seconds {
        sent += u64::from(s.sent);
        ok += u64::from(s.ok);
        dropped += u64::from(s.dropped);
        failed += u64::from(s.failures());
        s_ok += u64::from(s.signups_ok);
        s_failed += u64::from(s.signups_failed);
        for (kind, n) in &s.failed {
            *failures_by_kind
                .entry(kind.name().to_owned())
                .or_insert(0u64) += u64::from(*n);
        }
    }
    let (scale_outs, scale_ins) = phases::scale_outs(&record.observations);
    let desireds: Vec<u32> = record
        .observations
        .iter()
        .filter_map(|o| o.desired)
        .collect();
    let desired = match (desireds.first(), desireds.iter().max(), desireds.last()) {
        (Some(&a), Some(&b), Some(&c)) => Some((a, b, c)),
        _ => None,
    };
    let totals: Vec<u32> = record
        .observations
        .iter()
        .map(Observation::total_healthy)
        .collect();
    let healthy = (
        totals.first().copied().unwrap_or(0),
        totals.iter().copied().max().unwrap_or(0),
        totals.last().copied().unwrap_or(0),
    );
    let back_to_min_at = if scale_outs.is_empty() {
        None
    } else {
        let first_out = scale_outs.first().and_then(|o| o.phases[2]).unwrap_or(0);
        record
            .observations
            .iter()
            .filter(|o| o.second > first_out)
            .find(|o| matches!((o.desired, o.min), (Some(d), Some(m)) if d <= m))
            .map(|o| o.second)
    };
    let clock = record.clock.as_ref().filter(|c| c.scale.is_compressed());
    let scale_outs_on_aws = match clock {
        Some(clock) => scale_outs
            .iter()
            .map(|out| {
                out.phases
                    .iter()
                    .enumerate()
                    .map(|(i, at)| at.and_then(|a| aws_seconds(Some(clock), i, a)))
                    .collect()
            })
            .collect(),
        None => Vec::new(),
    };
    LoadReport {
        scale_outs_on_aws,
        sent,
        ok,
        dropped,
        failed,
        failures_by_kind,
        signups_acknowledged: s_ok,
        signups_failed: s_failed,
        scale_outs,
        scale_ins,
        desired,
        healthy,
        back_to_min_at,
        record,
    }
}

fn fmt_secs(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |s| format!("{s} s"))
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |ms| format!("{ms:.1} ms"))
}

/// A phase the snapshots never showed, and why it may not have.
fn unobserved(phase: &str, has_policies: bool) -> &'static str {
    match phase {
        "policy decision" | "metric back under target" if !has_policies => {
            "not observed: the snapshots showed no scaling policy"
        }
        _ => "not observed before the report's deadline",
    }
}

/// The report in a few lines, for the console and the command line's last words.
pub fn summary_lines(report: &LoadReport) -> Vec<String> {
    let r = &report.record;
    let mut lines = Vec::new();
    if let Some(reason) = &r.aborted {
        lines.push(format!("stopped early: {reason}"));
    }
    let kinds = if report.failures_by_kind.is_empty() {
        String::new()
    } else {
        let kinds: Vec<String> = report
            .failures_by_kind
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        format!(" ({})", kinds.join(", "))
    };
    lines.push(format!(
        "sent {} · ok {} · failed {}{kinds} · dropped by the client {}",
        report.sent, report.ok, report.failed, report.dropped
    ));
    lines.push(format!(
        "p99 before scaling {} · while scaling {} · after {}",
        fmt_ms(r.latency_before.p99_ms),
        fmt_ms(r.latency_during.p99_ms),
        fmt_ms(r.latency_after.p99_ms)
    ));
    if let Some((start, peak, end)) = report.desired {
        lines.push(format!(
            "desired {start} → peak {peak} → {end} · healthy {} → peak {} → {}",
            report.healthy.0, report.healthy.1, report.healthy.2
        ));
    }
    for out in &report.scale_outs {
        let phases: Vec<String> = out
            .named()
            .skip(1)
            .map(|(name, at)| format!("{name} {}", fmt_secs(at)))
            .collect();
        lines.push(format!(
            "scale-out {} → {}: {}",
            out.from,
            out.to,
            phases.join(" · ")
        ));
    }
    if report.scale_outs.is_empty() {
        lines.push("no scale-out during the load".into());
    }
    if let Some(at) = report.back_to_min_at {
        lines.push(format!("back to min at {at} s"));
    }
    for other in &r.concurrent {
        lines.push(format!("note: {other} ran at the same time"));
    }
    lines
}

/// The report for people.
pub fn to_markdown(report: &LoadReport) -> String {
    let r = &report.record;
    let mut md = String::new();
    let _ = writeln!(md, "# Load: {} ({})", r.stack, r.backend);
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "{} at {} · started {}",
        r.shape.describe(),
        r.endpoint,
        r.started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    if let Some(reason) = &r.aborted {
        let _ = writeln!(md, "\nStopped early: {reason}");
    }
    for other in &r.concurrent {
        let _ = writeln!(
            md,
            "\nNote: {other} ran at the same time; its effects are in these figures."
        );
    }
    let _ = writeln!(md, "\n## Summary\n");
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let _ = writeln!(md, "| requests sent | {} |", report.sent);
    let _ = writeln!(md, "| answered 2xx | {} |", report.ok);
    let _ = writeln!(md, "| failed | {} |", report.failed);
    for (kind, n) in &report.failures_by_kind {
        let _ = writeln!(md, "| · {kind} | {n} |");
    }
    let _ = writeln!(
        md,
        "| dropped by the client (in-flight cap) | {} |",
        report.dropped
    );
    if r.shape.signups_per_s > 0 {
        let _ = writeln!(
            md,
            "| signups acknowledged / failed | {} / {} |",
            report.signups_acknowledged, report.signups_failed
        );
    }
    for (span, l) in [
        ("before scaling", r.latency_before),
        ("while scaling", r.latency_during),
        ("after", r.latency_after),
    ] {
        let _ = writeln!(
            md,
            "| p50 / p99 {span} | {} / {} |",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p99_ms)
        );
    }
    if let Some((start, peak, end)) = report.desired {
        let _ = writeln!(
            md,
            "| desired: start / peak / end | {start} / {peak} / {end} |"
        );
    }
    let _ = writeln!(
        md,
        "| healthy: start / peak / end | {} / {} / {} |",
        report.healthy.0, report.healthy.1, report.healthy.2
    );
    let _ = writeln!(
        md,
        "| back to min after the load | {} |",
        fmt_secs(report.back_to_min_at)
    );

    let _ = writeln!(md, "\n## Scale-outs\n");
    if report.scale_outs.is_empty() {
        let _ = writeln!(md, "Desired capacity did not rise during the load.");
    }
    let clock = r.clock.as_ref().filter(|c| c.scale.is_compressed());
    let has_policies = r.observations.iter().any(|o| !o.policies.is_empty());
    for (n, out) in report.scale_outs.iter().enumerate() {
        let _ = writeln!(
            md,
            "### {} : desired {} → {} ({})\n",
            n + 1,
            out.from,
            out.to,
            if out.instances.is_empty() {
                "no new instance seen".to_string()
            } else {
                out.instances.join(", ")
            }
        );
        if let Some(reason) = &out.reason {
            let _ = writeln!(md, "Policy: {reason}\n");
        }
        match clock {
            Some(_) => {
                let _ = writeln!(
                    md,
                    "| phase | at | since previous | AWS clock |\n|---|---|---|---|"
                );
            }
            None => {
                let _ = writeln!(md, "| phase | at | since previous |\n|---|---|---|");
            }
        }
        let mut previous: Option<u64> = None;
        for (index, (name, at)) in out.named().enumerate() {
            let since = match (previous, at) {
                (Some(p), Some(a)) => format!("{} s", a.saturating_sub(p)),
                _ => "—".into(),
            };
            let at_text = match at {
                Some(a) => format!("{a} s"),
                None => unobserved(name, has_policies).into(),
            };
            match clock {
                Some(_) => {
                    let aws = report
                        .scale_outs_on_aws
                        .get(n)
                        .and_then(|phases| phases.get(index).copied().flatten())
                        .map_or_else(|| "—".to_string(), |s| format!("≈ {s:.0} s"));
                    let _ = writeln!(md, "| {name} | {at_text} | {since} | {aws} |");
                }
                None => {
                    let _ = writeln!(md, "| {name} | {at_text} | {since} |");
                }
            }
            if at.is_some() {
                previous = at;
            }
        }
        let _ = writeln!(md);
    }
    match (clock, &r.clock) {
        (Some(c), _) => {
            let _ = writeln!(
                md,
                "Sandbox clock {}: times measured here, and on the spec's AWS clock (scheduled \
                 time × {}, {:.2} s of real program start kept as measured from InService on).",
                c.scale,
                provision::model::clock::trim(c.scale.factor),
                c.program_start_seconds.unwrap_or(0.0)
            );
        }
        (None, Some(c)) => {
            let _ = writeln!(md, "Sandbox clock {}: times as measured.", c.scale);
        }
        (None, None) => {
            let _ = writeln!(md, "Times as measured.");
        }
    }
    let _ = writeln!(md, "\n## Scale-in after the load\n");
    if report.scale_ins.is_empty() {
        let _ = writeln!(
            md,
            "Desired capacity did not fall before the report's deadline."
        );
    }
    for s in &report.scale_ins {
        let _ = writeln!(md, "- t+{}s desired {} → {}", s.second, s.from, s.to);
    }
    let _ = writeln!(md, "\n## Capacity per AZ\n");
    let azs: Vec<String> = r
        .observations
        .first()
        .map(|o| o.healthy.keys().cloned().collect())
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "| AZ | healthy at start | peak | at end |\n|---|---|---|---|"
    );
    for az in &azs {
        let values: Vec<u32> = r
            .observations
            .iter()
            .map(|o| o.healthy.get(az).copied().unwrap_or(0))
            .collect();
        let _ = writeln!(
            md,
            "| {az} | {} | {} | {} |",
            values.first().copied().unwrap_or(0),
            values.iter().copied().max().unwrap_or(0),
            values.last().copied().unwrap_or(0)
        );
    }
    let _ = writeln!(md, "\n![chart](report.svg)");
    md
}

/// The chart: healthy capacity per AZ and desired; requests per second (target, answered,
/// failed); p50 and p99 — on one time axis, the load's run shaded.
pub fn to_svg(report: &LoadReport) -> Result<String, String> {
    use crate::chart::{Line, Panel, Window, svg};
    use plotters::style::{BLUE, GREEN, RED, RGBColor};
    let r = &report.record;
    let end = r.end_at.max(1);
    let window = Window {
        from: 0,
        to: r.load_end_at,
        from_label: "load start".into(),
        to_label: Some(format!("load end {} s", r.load_end_at)),
    };
    let mut per_az: BTreeMap<String, Vec<(u64, u32)>> = BTreeMap::new();
    for o in &r.observations {
        for (az, n) in &o.healthy {
            per_az.entry(az.clone()).or_default().push((o.second, *n));
        }
    }
    let desired: Vec<(u64, u32)> = r
        .observations
        .iter()
        .filter_map(|o| o.desired.map(|d| (o.second, d)))
        .collect();
    let per_second = |f: &dyn Fn(&LoadSecond) -> Option<f64>| -> Vec<(u64, f64)> {
        r.seconds
            .iter()
            .filter_map(|s| f(s).map(|v| (s.second, v)))
            .collect()
    };
    let panels = [
        Panel::Capacity {
            caption: "healthy capacity per AZ, and desired (instances)".into(),
            per_az,
            extra: vec![("desired".into(), desired)],
        },
        Panel::Lines {
            caption: "requests per second".into(),
            y_desc: "req/s".into(),
            y_max: None,
            lines: vec![
                Line {
                    label: "target".into(),
                    color: RGBColor(120, 120, 120),
                    points: per_second(&|s| Some(s.target_rate)),
                },
                Line {
                    label: "answered 2xx".into(),
                    color: GREEN,
                    points: per_second(&|s| Some(f64::from(s.ok))),
                },
                Line {
                    label: "failed".into(),
                    color: RED,
                    points: per_second(&|s| Some(f64::from(s.failures()))),
                },
            ],
        },
        Panel::Lines {
            caption: "latency (ms)".into(),
            y_desc: "ms".into(),
            y_max: None,
            lines: vec![
                Line {
                    label: "p50".into(),
                    color: GREEN,
                    points: per_second(&|s| s.p50_ms),
                },
                Line {
                    label: "p99".into(),
                    color: BLUE,
                    points: per_second(&|s| s.p99_ms),
                },
            ],
        },
    ];
    let title = format!(
        "load on {} ({}) — {}",
        r.stack,
        r.backend,
        r.shape.describe()
    );
    svg(
        &title,
        "seconds since the load started",
        end,
        Some(&window),
        &panels,
    )
}

/// Writes `report.json`, `report.md` and `report.svg` into `dir` and returns their paths.
pub fn write(dir: &Path, report: &LoadReport) -> std::io::Result<Vec<PathBuf>> {
    let svg = to_svg(report).map_err(std::io::Error::other)?;
    crate::drill::report::write_files(dir, report, to_markdown(report), svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::probe::FailureKind;
    use crate::load::phases::InstanceObservation;
    use provision::port::LifecycleState;
    use std::time::Duration;

    fn observation(second: u64, desired: u32, healthy_b: u32) -> Observation {
        let mut instances = vec![InstanceObservation {
            id: "i-1".into(),
            az: "az-a".into(),
            lifecycle: LifecycleState::InService,
            healthy_target: true,
        }];
        for n in 0..desired.saturating_sub(1) {
            instances.push(InstanceObservation {
                id: format!("i-b{n}"),
                az: "az-b".into(),
                lifecycle: if n < healthy_b {
                    LifecycleState::InService
                } else {
                    LifecycleState::Pending
                },
                healthy_target: n < healthy_b,
            });
        }
        Observation {
            second,
            desired: Some(desired),
            min: Some(2),
            max: Some(4),
            healthy: BTreeMap::from([("az-a".into(), 1), ("az-b".into(), healthy_b)]),
            instances,
            policies: Vec::new(),
            decision: None,
        }
    }

    fn record() -> LoadRecord {
        let schedule = Schedule::constant(10.0, Duration::from_secs(6));
        LoadRecord {
            stack: "demo".into(),
            backend: "sandbox".into(),
            endpoint: "http://127.0.0.1:1".into(),
            shape: LoadShape::of(&schedule, "/version", 0),
            started_at: OffsetDateTime::UNIX_EPOCH,
            load_end_at: 6,
            end_at: 9,
            seconds: (0..6)
                .map(|s| LoadSecond {
                    second: s,
                    target_rate: 10.0,
                    sent: 10,
                    ok: if s == 2 { 8 } else { 10 },
                    failed: if s == 2 {
                        BTreeMap::from([(FailureKind::Status5xx, 2)])
                    } else {
                        BTreeMap::new()
                    },
                    p50_ms: Some(3.0),
                    p99_ms: Some(if s < 3 { 40.0 } else { 9.0 }),
                    ..LoadSecond::default()
                })
                .collect(),
            observations: vec![
                observation(0, 2, 1),
                observation(2, 4, 1),
                observation(3, 4, 1),
                observation(4, 4, 3),
                observation(8, 2, 1),
            ],
            latency_before: Latency::default(),
            latency_during: Latency::default(),
            latency_after: Latency::default(),
            aborted: None,
            concurrent: vec!["GameDay terminate-az in az-b".into()],
            clock: None,
        }
    }

    #[test]
    fn totals_phases_capacity_and_the_way_back_to_min() {
        let report = summarize(record());
        assert_eq!((report.sent, report.ok, report.failed), (60, 58, 2));
        assert_eq!(report.failures_by_kind.get("status5xx"), Some(&2));
        assert_eq!(report.scale_outs.len(), 1);
        assert_eq!(
            report.scale_outs[0].phases,
            [Some(0), None, Some(2), Some(2), Some(4), Some(4), None]
        );
        assert_eq!(report.desired, Some((2, 4, 2)));
        assert_eq!(report.healthy, (2, 4, 2));
        assert_eq!(report.back_to_min_at, Some(8));
        assert_eq!(spans(&report.scale_outs, 6), [(0, 2), (2, 4), (4, 6)]);
        assert_eq!(spans(&[], 6), [(0, 6), (6, 6), (6, 6)]);
    }

    #[test]
    fn the_report_names_unobserved_phases_and_the_concurrent_gameday() {
        let report = summarize(record());
        let md = to_markdown(&report);
        assert!(md.contains("| desired change | 2 s | 2 s |"), "{md}");
        assert!(md.contains("| policy decision | not observed"), "{md}");
        assert!(
            md.contains("GameDay terminate-az in az-b ran at the same time"),
            "{md}"
        );
        assert!(md.contains("| az-b | 1 | 3 | 1 |"), "{md}");
        let lines = summary_lines(&report);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("scale-out 2 → 4: policy decision — · desired change 2 s")),
            "{lines:?}"
        );
        let mut with_clock = record();
        with_clock.clock = Some(SandboxClock {
            scale: provision::model::clock::TimeScale::fast(10.0),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            durations: Vec::new(),
            program_start_seconds: Some(0.5),
        });
        let md = to_markdown(&summarize(with_clock));
        // Before the launch everything is scheduled: × 10. From InService on, the program's
        // real 0.5 s start stays as measured: (4 − 0.5) × 10 + 0.5.
        assert!(
            md.contains("| desired change | 2 s | 2 s | ≈ 20 s |"),
            "{md}"
        );
        assert!(md.contains("| InService | 4 s | 2 s | ≈ 36 s |"), "{md}");
        assert!(md.contains("Sandbox clock fast ×10"), "{md}");
    }

    #[test]
    fn writes_json_markdown_and_a_chart_with_every_panel() {
        let report = summarize(record());
        let svg = to_svg(&report).expect("svg");
        for text in [
            "healthy capacity per AZ, and desired (instances)",
            "requests per second",
            "latency (ms)",
            "load end 6 s",
            "desired",
        ] {
            assert!(svg.contains(text), "the chart lacks {text:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write(dir.path(), &report).expect("write");
        assert_eq!(paths.len(), 3);
        let back: LoadReport =
            serde_json::from_str(&std::fs::read_to_string(&paths[0]).expect("read"))
                .expect("json round-trip");
        assert_eq!(back, report);
    }
}
