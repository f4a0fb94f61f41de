//! The GameDay report: what the drill measured, as JSON (for machines), Markdown (for people)
//! and an SVG chart (healthy capacity per AZ, probe success and p99 over time, each on its own
//! axis, with the fault window shaded).
//!
//! Definitions, all in seconds from the start of the drill's probe:
//! - **time to detect**: from injection to the first second the faulted AZ's healthy capacity
//!   is below its steady-state value (the load balancer or the ASG has noticed);
//! - **time to recover**: from injection to the first later second the stack's total healthy
//!   capacity is back at its steady-state value;
//! - **failed requests**: probe failures from injection to the end of the drill;
//! - **capacity dip** per AZ: steady-state healthy capacity minus the lowest seen after
//!   injection.
//!
//! A sandbox drill records the sandbox's clock; under the `fast` clock the report gives each
//! duration twice, as measured and on the spec's AWS clock ([`OnAws`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use provision::model::TimeScale;
use provision::port::{SandboxClock, ScalingDecision};

use super::probe::{Latency, ProbeSecond};

/// Healthy capacity per AZ at one second of the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacitySample {
    pub second: u64,
    pub healthy: BTreeMap<String, u32>,
}

impl CapacitySample {
    pub fn total(&self) -> u32 {
        self.healthy.values().sum()
    }
}

/// One step of the drill, as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub second: u64,
    pub step: String,
    pub detail: String,
}

/// The acknowledged-write check: every signup the stack acknowledged during the drill, looked
/// up afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCheck {
    pub acknowledged: u32,
    pub found: u32,
    pub lost: Vec<String>,
    /// Lookups that could not be answered (the stack was unreachable).
    pub unknown: u32,
}

/// An action on one instance (terminate, unhealthy, standby, resume) taken while the drill ran,
/// from the stack's journal. Not a fault: the drill does not restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceActionTaken {
    /// Seconds after the drill started.
    pub second: u64,
    pub instance_id: String,
    pub az: String,
    /// `terminate`, `standby (decrement)`, …
    pub action: String,
    /// `done`, the error, or `None` when no outcome was journaled.
    pub outcome: Option<String>,
}

/// Everything the drill recorded; the report is computed from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub stack: String,
    pub backend: String,
    pub az: String,
    pub fault: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub inject_at: Option<u64>,
    pub restore_at: Option<u64>,
    pub end_at: u64,
    pub steps: Vec<StepRecord>,
    pub probe: Vec<ProbeSecond>,
    pub capacity: Vec<CapacitySample>,
    pub latency_before: Latency,
    pub latency_during: Latency,
    pub latency_after: Latency,
    pub writes: Option<WriteCheck>,
    /// Why the drill stopped early, when a stop condition fired or an operator aborted it.
    pub aborted: Option<String>,
    /// What the drill's remedy (`--remedy`) did, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<super::remedy::RemedyRecord>,
    /// Other activities on the stack during the drill (a load), whose effects are in its
    /// figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrent: Vec<String>,
    /// Actions on single instances taken while the drill ran (reports written before they
    /// were recorded have none).
    #[serde(default)]
    pub instance_actions: Vec<InstanceActionTaken>,
    /// The sandbox's clock during the drill (none on AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<SandboxClock>,
    /// Seconds (from the start of the probe) at which the group launched an instance after
    /// injection, from the model's own event times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<f64>,
    /// Scaling decisions the group's policies made while the drill ran, oldest first (a
    /// drill's load or lost capacity can move the metric; see the report's scaling section).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<ScalingDecision>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityDip {
    pub steady: u32,
    pub lowest: u32,
}

/// The measured outcome of a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub record: DrillRecord,
    pub time_to_detect_s: Option<u64>,
    pub time_to_recover_s: Option<u64>,
    pub requests_during: u64,
    pub failed_requests: u64,
    pub failures_by_kind: BTreeMap<String, u64>,
    pub capacity_dip: BTreeMap<String, CapacityDip>,
    pub verdict: Verdict,
    /// Under the sandbox's `fast` clock: the same durations on the spec's AWS clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_aws: Option<OnAws>,
}

/// A `fast` sandbox drill's durations on the spec's AWS clock. The scheduled part of a
/// measured duration (health checks, grace period, deregistration delay, instance boot,
/// RDS failover: everything the model waits on) is multiplied by the clock's factor; the
/// real work in it (a replacement's program starting, measured by the sandbox) is kept as
/// measured, since AWS's equivalent is already in the scaled instance-boot assumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnAws {
    pub scale: TimeScale,
    pub time_to_detect_s: Option<f64>,
    pub time_to_recover_s: Option<f64>,
    /// Real seconds kept unscaled in the recovery (a launched program's start).
    pub unscaled_s: f64,
}

/// The AWS-clock figures of a drill measured under a compressed clock.
fn on_aws(record: &DrillRecord, detect: Option<u64>, recover: Option<u64>) -> Option<OnAws> {
    let clock = record.clock.as_ref()?;
    if !clock.scale.is_compressed() {
        return None;
    }
    let inject = record.inject_at? as f64;
    let launched = recover.is_some_and(|r| {
        record
            .launches
            .iter()
            .any(|at| *at >= inject && *at <= inject + r as f64)
    });
    let unscaled_s = if launched {
        clock.program_start_seconds.unwrap_or(0.0)
    } else {
        0.0
    };
    Some(OnAws {
        scale: clock.scale,
        time_to_detect_s: detect.map(|d| clock.scale.predict(d as f64, 0.0)),
        time_to_recover_s: recover.map(|r| clock.scale.predict(r as f64, unscaled_s)),
        unscaled_s,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Recovered, no acknowledged write lost.
    Passed,
    /// Capacity did not come back, or an acknowledged write was lost, or the drill aborted.
    Failed,
}

fn steady_capacity(record: &DrillRecord) -> BTreeMap<String, u32> {
    let inject = record.inject_at.unwrap_or(record.end_at);
    record
        .capacity
        .iter()
        .rev()
        .find(|c| c.second < inject)
        .or_else(|| record.capacity.first())
        .map(|c| c.healthy.clone())
        .unwrap_or_default()
}

/// Computes the report from what the drill recorded.
pub fn summarize(record: DrillRecord) -> DrillReport {
    let steady = steady_capacity(&record);
    let steady_total: u32 = steady.values().sum();
    let inject = record.inject_at;
    let after: Vec<&CapacitySample> = match inject {
        Some(at) => record.capacity.iter().filter(|c| c.second >= at).collect(),
        None => Vec::new(),
    };
    let steady_in_az = steady.get(&record.az).copied().unwrap_or(0);
    let detect_at = after
        .iter()
        .find(|c| c.healthy.get(&record.az).copied().unwrap_or(0) < steady_in_az)
        .map(|c| c.second);
    let recover_at = detect_at.and_then(|d| {
        after
            .iter()
            .find(|c| c.second > d && c.total() >= steady_total)
            .map(|c| c.second)
    });
    let mut capacity_dip = BTreeMap::new();
    for (az, &steady_az) in &steady {
        let lowest = after
            .iter()
            .map(|c| c.healthy.get(az).copied().unwrap_or(0))
            .min()
            .unwrap_or(steady_az);
        capacity_dip.insert(
            az.clone(),
            CapacityDip {
                steady: steady_az,
                lowest,
            },
        );
    }
    let during: Vec<&ProbeSecond> = match inject {
        Some(at) => record.probe.iter().filter(|p| p.second >= at).collect(),
        None => Vec::new(),
    };
    let mut failures_by_kind = BTreeMap::new();
    for second in &during {
        for (kind, n) in &second.failed {
            let key = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{kind:?}"));
            *failures_by_kind.entry(key).or_insert(0u64) += u64::from(*n);
        }
    }
    let failed_requests = during.iter().map(|p| u64::from(p.failures())).sum();
    let requests_during = during.iter().map(|p| u64::from(p.total())).sum();
    let writes_ok = record.writes.as_ref().is_none_or(|w| w.lost.is_empty());
    let recovered = inject.is_some() && (recover_at.is_some() || detect_at.is_none());
    let verdict = if record.aborted.is_none() && recovered && writes_ok {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    let time_to_detect_s = detect_at.zip(inject).map(|(d, i)| d - i);
    let time_to_recover_s = recover_at.zip(inject).map(|(r, i)| r - i);
    DrillReport {
        on_aws: on_aws(&record, time_to_detect_s, time_to_recover_s),
        time_to_detect_s,
        time_to_recover_s,
        requests_during,
        failed_requests,
        failures_by_kind,
        capacity_dip,
        verdict,
        record,
    }
}

fn fmt_secs(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |s| format!("{s} s"))
}

/// "3 s", or under a `fast` clock "3 s here → ≈ 30 s on AWS".
fn fmt_both(measured: Option<u64>, on_aws: Option<Option<f64>>) -> String {
    match (measured, on_aws) {
        (Some(_), Some(Some(aws))) => {
            format!("{} here → ≈ {} s on AWS", fmt_secs(measured), aws.round())
        }
        _ => fmt_secs(measured),
    }
}

/// The clock line of a sandbox report: "clock fast ×10 (AWS figures: …)" or "clock aws".
fn clock_line(report: &DrillReport) -> Option<String> {
    let clock = report.record.clock.as_ref()?;
    Some(match &report.on_aws {
        Some(on_aws) => format!(
            "clock {}: durations measured here, and on the spec's AWS clock (scheduled time × \
             {}, {:.2} s of real program start kept as measured)",
            clock.scale,
            provision::model::clock::trim(clock.scale.factor),
            on_aws.unscaled_s
        ),
        None => format!("clock {}: durations as measured", clock.scale),
    })
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |ms| format!("{ms:.1} ms"))
}

/// The report in a few lines, for the console's report view and the command line's last
/// words: verdict (and why a drill aborted), times and failed requests, p99 by phase,
/// capacity dip per AZ, and the acknowledged-write check.
pub fn summary_lines(report: &DrillReport) -> Vec<String> {
    let r = &report.record;
    let mut lines = vec![match &r.aborted {
        Some(reason) => format!("verdict: {:?} (aborted: {reason})", report.verdict),
        None => format!("verdict: {:?}", report.verdict),
    }];
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
    if let Some(line) = clock_line(report) {
        lines.push(line);
    }
    let aws = report.on_aws.as_ref();
    lines.push(format!(
        "detect {} · recover {} · failed {} of {}{kinds}",
        fmt_both(report.time_to_detect_s, aws.map(|a| a.time_to_detect_s)),
        fmt_both(report.time_to_recover_s, aws.map(|a| a.time_to_recover_s)),
        report.failed_requests,
        report.requests_during
    ));
    lines.push(format!(
        "p99 before {} · during {} · after {}",
        fmt_ms(r.latency_before.p99_ms),
        fmt_ms(r.latency_during.p99_ms),
        fmt_ms(r.latency_after.p99_ms)
    ));
    if let Some(remedy) = &r.remedy {
        lines.extend(remedy.lines(r.inject_at));
    }
    if !report.capacity_dip.is_empty() {
        let dips: Vec<String> = report
            .capacity_dip
            .iter()
            .map(|(az, dip)| format!("{az} {}→{}", dip.steady, dip.lowest))
            .collect();
        lines.push(format!("healthy capacity {}", dips.join(" · ")));
    }
    if let Some(w) = &r.writes {
        lines.push(format!(
            "acknowledged writes found {} of {} ({} lost, {} unknown)",
            w.found,
            w.acknowledged,
            w.lost.len(),
            w.unknown
        ));
    }
    for other in &r.concurrent {
        lines.push(format!("note: {other} ran at the same time"));
    }
    lines
}

/// The report for people.
pub fn to_markdown(report: &DrillReport) -> String {
    let r = &report.record;
    let mut md = String::new();
    let _ = writeln!(md, "# GameDay: {} on {} ({})", r.fault, r.az, r.stack);
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Backend: {} · started {} · verdict: **{}**",
        r.backend,
        r.started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        match report.verdict {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
        }
    );
    if let Some(reason) = &r.aborted {
        let _ = writeln!(md, "\nAborted: {reason}");
    }
    for other in &r.concurrent {
        let _ = writeln!(
            md,
            "\nNote: {other} ran at the same time; its effects are in these figures."
        );
    }
    if let Some(line) = clock_line(report) {
        let _ = writeln!(md, "\nSandbox {line}.");
    }
    let _ = writeln!(md, "\n## Summary\n");
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let aws = report.on_aws.as_ref();
    let _ = writeln!(
        md,
        "| time to detect | {} |",
        fmt_both(report.time_to_detect_s, aws.map(|a| a.time_to_detect_s))
    );
    let _ = writeln!(
        md,
        "| time to recover | {} |",
        fmt_both(report.time_to_recover_s, aws.map(|a| a.time_to_recover_s))
    );
    let _ = writeln!(
        md,
        "| failed requests | {} of {} |",
        report.failed_requests, report.requests_during
    );
    for (kind, n) in &report.failures_by_kind {
        let _ = writeln!(md, "| · {kind} | {n} |");
    }
    for (phase, l) in [
        ("before", r.latency_before),
        ("during", r.latency_during),
        ("after", r.latency_after),
    ] {
        let _ = writeln!(
            md,
            "| p50 / p99 {phase} | {} / {} |",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p99_ms)
        );
    }
    if let Some(w) = &r.writes {
        let _ = writeln!(
            md,
            "| acknowledged writes found | {} of {} ({} lost, {} unknown) |",
            w.found,
            w.acknowledged,
            w.lost.len(),
            w.unknown
        );
    }
    if let Some(remedy) = &r.remedy {
        let _ = writeln!(md, "\n## Remedy: {}\n", remedy.remedy);
        for line in remedy.lines(r.inject_at) {
            let _ = writeln!(md, "- {line}");
        }
    }
    let _ = writeln!(md, "\n## Healthy capacity per AZ\n");
    let _ = writeln!(md, "| AZ | steady | lowest |\n|---|---|---|");
    for (az, dip) in &report.capacity_dip {
        let _ = writeln!(md, "| {az} | {} | {} |", dip.steady, dip.lowest);
    }
    let _ = writeln!(md, "\n## Timeline\n");
    for step in &r.steps {
        let _ = writeln!(md, "- t+{}s **{}** {}", step.second, step.step, step.detail);
    }
    if !r.instance_actions.is_empty() {
        let _ = writeln!(
            md,
            "\n## Instance actions during the drill\n\nTaken by an operator while the drill \
             ran; `gameday restore` does not undo them.\n"
        );
        let _ = writeln!(
            md,
            "| t | instance | AZ | action | outcome |\n|---|---|---|---|---|"
        );
        for a in &r.instance_actions {
            let _ = writeln!(
                md,
                "| t+{}s | {} | {} | {} | {} |",
                a.second,
                a.instance_id,
                a.az,
                a.action,
                a.outcome.as_deref().unwrap_or("no outcome journaled")
            );
        }
    }
    if !r.scaling.is_empty() {
        let _ = writeln!(
            md,
            "\n## Scaling during the drill\n\nDecisions of the group's scaling policies while \
             the drill ran; `gameday restore` does not undo them.\n"
        );
        let _ = writeln!(md, "| t | policy | desired | why |\n|---|---|---|---|");
        for d in &r.scaling {
            let second = (d.at - r.started_at).whole_seconds().max(0);
            let _ = writeln!(
                md,
                "| t+{second}s | {} | {} → {} | {} |",
                d.policy, d.from, d.to, d.reason
            );
        }
    }
    if let Some(w) = &r.writes
        && !w.lost.is_empty()
    {
        let _ = writeln!(md, "\n## Lost acknowledged writes\n");
        for email in &w.lost {
            let _ = writeln!(md, "- {email}");
        }
    }
    let _ = writeln!(md, "\n![chart](report.svg)");
    md
}

/// The chart, three panels on one time axis (seconds of the drill): healthy capacity per AZ,
/// probe success in %, and probe p99 in ms — each on an axis of its own unit. The fault window
/// (inject to restore, or to the end when the drill never restored) is shaded and labelled in
/// every panel.
pub fn to_svg(report: &DrillReport) -> Result<String, String> {
    use crate::chart::{Line, Panel, Window, svg};
    let r = &report.record;
    let end = r.end_at.max(1);
    let window = r.inject_at.map(|at| Window {
        from: at,
        to: r.restore_at.unwrap_or(end),
        from_label: format!("inject {at} s"),
        to_label: r.restore_at.map(|at| format!("restore {at} s")),
    });
    let per_az = report
        .capacity_dip
        .keys()
        .map(|az| {
            let points = r
                .capacity
                .iter()
                .map(|c| (c.second, c.healthy.get(az).copied().unwrap_or(0)))
                .collect();
            (az.clone(), points)
        })
        .collect();
    let panels = [
        Panel::Capacity {
            caption: "healthy capacity per AZ (instances)".into(),
            per_az,
            extra: Vec::new(),
        },
        Panel::Lines {
            caption: "probe success (%)".into(),
            y_desc: "%".into(),
            y_max: Some(100.0),
            lines: vec![Line {
                label: "success".into(),
                color: plotters::style::GREEN,
                points: r
                    .probe
                    .iter()
                    .filter(|p| p.total() > 0)
                    .map(|p| (p.second, 100.0 * f64::from(p.ok) / f64::from(p.total())))
                    .collect(),
            }],
        },
        Panel::Lines {
            caption: "probe p99 (ms)".into(),
            y_desc: "ms".into(),
            y_max: None,
            lines: vec![Line {
                label: "p99".into(),
                color: plotters::style::BLUE,
                points: r
                    .probe
                    .iter()
                    .filter_map(|p| p.p99_ms.map(|v| (p.second, v)))
                    .collect(),
            }],
        },
    ];
    let title = format!("{} in {} — {} ({})", r.fault, r.az, r.stack, r.backend);
    svg(
        &title,
        "seconds since the probe started",
        end,
        window.as_ref(),
        &panels,
    )
}

/// Writes `report.json`, `report.md` and `report.svg` into `dir` and returns their paths.
pub fn write(dir: &Path, report: &DrillReport) -> std::io::Result<Vec<PathBuf>> {
    let svg = to_svg(report).map_err(std::io::Error::other)?;
    write_files(dir, report, to_markdown(report), svg)
}

/// Writes a report's three files into `dir` (created if needed) — `report.json` (`report`
/// serialised), `report.md` and `report.svg` — and returns their paths. GameDay and load
/// reports both go through it.
pub fn write_files(
    dir: &Path,
    report: &impl Serialize,
    markdown: String,
    svg: String,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    let mut paths = Vec::new();
    for (name, body) in [
        ("report.json", json),
        ("report.md", markdown),
        ("report.svg", svg),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::probe::FailureKind;

    fn cap(second: u64, a: u32, b: u32, c: u32) -> CapacitySample {
        CapacitySample {
            second,
            healthy: BTreeMap::from([
                ("az-a".to_string(), a),
                ("az-b".to_string(), b),
                ("az-c".to_string(), c),
            ]),
        }
    }

    fn probe(second: u64, ok: u32, failed: u32) -> ProbeSecond {
        let mut s = ProbeSecond {
            second,
            ok,
            p50_ms: Some(2.0),
            p99_ms: Some(9.0),
            ..ProbeSecond::default()
        };
        if failed > 0 {
            s.failed.insert(FailureKind::Status5xx, failed);
        }
        s
    }

    fn record() -> DrillRecord {
        DrillRecord {
            stack: "demo".into(),
            backend: "sandbox".into(),
            az: "az-a".into(),
            fault: "terminate-az".into(),
            started_at: OffsetDateTime::UNIX_EPOCH,
            inject_at: Some(3),
            restore_at: Some(8),
            end_at: 10,
            steps: vec![StepRecord {
                second: 3,
                step: "inject".into(),
                detail: "terminate 2 instances".into(),
            }],
            probe: (0..10)
                .map(|s| {
                    if s == 4 || s == 5 {
                        probe(s, 18, 2)
                    } else {
                        probe(s, 20, 0)
                    }
                })
                .collect(),
            capacity: vec![
                cap(0, 2, 2, 2),
                cap(2, 2, 2, 2),
                cap(3, 2, 2, 2),
                cap(5, 0, 2, 2),
                cap(6, 0, 3, 3),
                cap(9, 2, 2, 2),
            ],
            latency_before: Latency::default(),
            latency_during: Latency::default(),
            latency_after: Latency::default(),
            writes: Some(WriteCheck {
                acknowledged: 10,
                found: 10,
                lost: vec![],
                unknown: 0,
            }),
            aborted: None,
            remedy: None,
            concurrent: Vec::new(),
            instance_actions: Vec::new(),
            clock: None,
            launches: Vec::new(),
            scaling: Vec::new(),
        }
    }

    #[test]
    fn measures_detect_recover_failures_and_dip() {
        let report = summarize(record());
        assert_eq!(report.time_to_detect_s, Some(2));
        assert_eq!(
            report.time_to_recover_s,
            Some(3),
            "total back to 6 at second 6"
        );
        assert_eq!(report.failed_requests, 4);
        assert_eq!(report.requests_during, 140);
        assert_eq!(report.failures_by_kind.get("status5xx"), Some(&4));
        assert_eq!(
            report.capacity_dip.get("az-a"),
            Some(&CapacityDip {
                steady: 2,
                lowest: 0
            })
        );
        assert_eq!(report.verdict, Verdict::Passed);
    }

    fn clock(scale: TimeScale) -> SandboxClock {
        SandboxClock {
            scale,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            durations: Vec::new(),
            program_start_seconds: Some(0.5),
        }
    }

    #[test]
    fn a_fast_clock_report_gives_each_duration_on_the_aws_clock_too() {
        let mut fast = record();
        fast.clock = Some(clock(TimeScale::fast(10.0)));
        fast.launches = vec![3.4];
        let report = summarize(fast);
        let on_aws = report
            .on_aws
            .clone()
            .expect("AWS figures under a fast clock");
        // Detect (2 s) is all scheduled time; recover (3 s) launched instances, whose real
        // program start (0.5 s) is kept as measured.
        assert_eq!(on_aws.time_to_detect_s, Some(20.0));
        assert_eq!(on_aws.time_to_recover_s, Some(25.5));
        let lines = summary_lines(&report).join("\n");
        assert!(lines.contains("clock fast ×10"), "{lines}");
        assert!(
            lines.contains("detect 2 s here → ≈ 20 s on AWS · recover 3 s here → ≈ 26 s on AWS"),
            "{lines}"
        );
        assert!(to_markdown(&report).contains("| time to recover | 3 s here → ≈ 26 s on AWS |"));

        // Without a launch nothing is kept unscaled.
        let mut no_launch = record();
        no_launch.clock = Some(clock(TimeScale::fast(10.0)));
        let on_aws = summarize(no_launch).on_aws.expect("AWS figures");
        assert_eq!(on_aws.time_to_recover_s, Some(30.0));

        // On the aws clock, and on AWS, one figure each.
        let mut aws = record();
        aws.clock = Some(clock(TimeScale::aws()));
        let report = summarize(aws);
        assert_eq!(report.on_aws, None);
        assert!(
            summary_lines(&report)
                .join("\n")
                .contains("clock aws: durations as measured")
        );
        assert_eq!(summarize(record()).on_aws, None);
    }

    #[test]
    fn a_lost_write_or_no_recovery_fails_the_drill() {
        let mut lost = record();
        if let Some(w) = lost.writes.as_mut() {
            w.lost.push("probe-1@drill.invalid".into());
        }
        assert_eq!(summarize(lost).verdict, Verdict::Failed);

        let mut stuck = record();
        stuck.capacity.truncate(4);
        let report = summarize(stuck);
        assert_eq!(report.time_to_recover_s, None);
        assert_eq!(report.verdict, Verdict::Failed);
    }

    #[test]
    fn the_summary_says_every_measure_in_a_few_lines() {
        let mut record = record();
        record.latency_during.p99_ms = Some(41.25);
        let lines = summary_lines(&summarize(record.clone()));
        assert_eq!(
            lines,
            [
                "verdict: Passed",
                "detect 2 s · recover 3 s · failed 4 of 140 (4 status5xx)",
                "p99 before — · during 41.2 ms · after —",
                "healthy capacity az-a 2→0 · az-b 2→2 · az-c 2→2",
                "acknowledged writes found 10 of 10 (0 lost, 0 unknown)",
            ]
        );
        record.aborted = Some("probe error rate 60 % over 5 s".into());
        let lines = summary_lines(&summarize(record));
        assert_eq!(
            lines[0],
            "verdict: Failed (aborted: probe error rate 60 % over 5 s)"
        );
    }

    #[test]
    fn the_chart_gives_each_measure_its_own_axis_and_labels_the_fault_window() {
        let report = summarize(record());
        let svg = to_svg(&report).expect("svg");
        for text in [
            "healthy capacity per AZ (instances)",
            "probe success (%)",
            "probe p99 (ms)",
            "inject 3 s",
            "restore 8 s",
        ] {
            assert!(svg.contains(text), "the chart lacks {text:?}");
        }
        // p99 has an axis of its own, in milliseconds: a 250 ms second is labelled on a scale
        // that reaches it (a 0-100 axis shared with the success rate never shows 200).
        let mut slow = record();
        slow.probe[5].p99_ms = Some(250.0);
        let slow_svg = to_svg(&summarize(slow)).expect("svg");
        let ticks: Vec<f64> = slow_svg
            .split('>')
            .filter_map(|t| t.split('<').next())
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .collect();
        assert!(
            ticks.contains(&250.0) || ticks.contains(&200.0),
            "{ticks:?}"
        );
        // One shaded window per panel.
        assert_eq!(svg.matches("fill=\"#FF8C00\"").count(), 3, "{svg}");

        // A drill that never restored shades to its end and labels only the injection.
        let mut open = record();
        open.restore_at = None;
        let svg = to_svg(&summarize(open)).expect("svg");
        assert!(svg.contains("inject 3 s") && !svg.contains("restore"));
    }

    #[test]
    fn renders_markdown_json_and_svg() {
        let report = summarize(record());
        let md = to_markdown(&report);
        assert!(md.contains("| time to detect | 2 s |"), "{md}");
        assert!(md.contains("| az-a | 2 | 0 |"), "{md}");
        assert!(
            !md.contains("Instance actions"),
            "none taken: no section\n{md}"
        );
        assert!(!md.contains("ran at the same time"), "{md}");
        let mut with_load = record();
        with_load.concurrent = vec!["load 50 req/s on /version, for 60 s".into()];
        let md = to_markdown(&summarize(with_load));
        assert!(
            md.contains("Note: load 50 req/s on /version, for 60 s ran at the same time"),
            "{md}"
        );
        let svg = to_svg(&report).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("az-b"));
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write(dir.path(), &report).expect("write");
        assert_eq!(paths.len(), 3);
        let back: DrillReport =
            serde_json::from_str(&std::fs::read_to_string(&paths[0]).expect("read json"))
                .expect("json round-trip");
        assert_eq!(back, report);
    }

    #[test]
    fn lists_instance_actions_taken_during_the_drill() {
        let mut r = record();
        r.instance_actions = vec![InstanceActionTaken {
            second: 4,
            instance_id: "i-7".into(),
            az: "az-b".into(),
            action: "terminate".into(),
            outcome: None,
        }];
        let md = to_markdown(&summarize(r));
        assert!(md.contains("## Instance actions during the drill"), "{md}");
        assert!(
            md.contains("| t+4s | i-7 | az-b | terminate | no outcome journaled |"),
            "{md}"
        );
    }
    #[test]
    fn lists_scaling_decisions_made_during_the_drill() {
        let mut r = record();
        assert!(!to_markdown(&summarize(r.clone())).contains("## Scaling during the drill"));
        r.scaling = vec![ScalingDecision {
            at: r.started_at + time::Duration::seconds(12),
            policy: "requests-per-target".into(),
            direction: provision::port::ScalingDirection::Out,
            from: 3,
            to: 5,
            reason: "requests/target 84 > 60 for 3 periods → desired 3 → 5".into(),
        }];
        let json = serde_json::to_string(&r).expect("json");
        let back: DrillRecord = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back.scaling, r.scaling);
        let md = to_markdown(&summarize(r));
        assert!(md.contains("## Scaling during the drill"), "{md}");
        assert!(
            md.contains(
                "| t+12s | requests-per-target | 3 → 5 | requests/target 84 > 60 for 3 periods \
                 → desired 3 → 5 |"
            ),
            "{md}"
        );
    }
}
