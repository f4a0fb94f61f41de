//! Per-second samples the sandbox keeps besides the load balancer's own metrics: healthy
//! hosts per AZ, and the CPU of the instances, measured per instance from `/proc` and reported
//! in the port's series shape — the average of an AZ's instances per AZ, and of all instances
//! stack-wide (CloudWatch's `CPUUtilization` of the group, by AZ and in total).
//!
//! An instance's CPU is the share of one CPU its process used between two samples (`utime +
//! stime` of `/proc/<pid>/stat`, all its threads, in clock ticks), so 100 means one full CPU.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use time::OffsetDateTime;

use crate::port::{MetricKind, MetricPoint, MetricSeries};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time process `pid` (every thread of it) used so far, in clock ticks; `None` when it is
/// gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": utime and stime are fields 14 and 15, i.e. the 12th and 13th
    // after the state.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime = fields.get(11)?.parse::<u64>().ok()?;
    let stime = fields.get(12)?.parse::<u64>().ok()?;
    Some(utime + stime)
}

/// The per-second series the sandbox samples itself.
#[derive(Debug)]
pub struct Samples {
    retention: usize,
    healthy_hosts: BTreeMap<String, VecDeque<MetricPoint>>,
    /// Keyed by AZ; `None` for the stack-wide average.
    cpu: BTreeMap<Option<String>, VecDeque<MetricPoint>>,
    /// The last reading per instance process: (ticks, when).
    last: BTreeMap<u32, (u64, Instant)>,
}

fn push(points: &mut VecDeque<MetricPoint>, point: MetricPoint, retention: usize) {
    match points.back_mut() {
        Some(last) if last.at == point.at => *last = point,
        _ => points.push_back(point),
    }
    while points.len() > retention {
        points.pop_front();
    }
}

impl Samples {
    /// Keeps `retention` points per series.
    pub fn new(retention: usize) -> Samples {
        Samples {
            retention,
            healthy_hosts: BTreeMap::new(),
            cpu: BTreeMap::new(),
            last: BTreeMap::new(),
        }
    }

    /// Records one sample at `at` (a whole second): the healthy targets per AZ and the
    /// instances' process ids per AZ, whose CPU time `ticks` reads.
    pub fn sample(
        &mut self,
        at: OffsetDateTime,
        now: Instant,
        healthy: &BTreeMap<String, usize>,
        instances: &BTreeMap<String, Vec<u32>>,
        ticks: impl Fn(u32) -> Option<u64>,
    ) {
        for (az, count) in healthy {
            let value = *count as f64;
            push(
                self.healthy_hosts.entry(az.clone()).or_default(),
                MetricPoint { at, value },
                self.retention,
            );
        }
        let mut last = BTreeMap::new();
        let mut all = Vec::new();
        for (az, pids) in instances {
            let mut in_az = Vec::new();
            for pid in pids {
                let Some(now_ticks) = ticks(*pid) else {
                    continue;
                };
                if let Some((then_ticks, then)) = self.last.get(pid) {
                    let seconds = now.duration_since(*then).as_secs_f64();
                    if seconds > 0.0 {
                        let used = now_ticks.saturating_sub(*then_ticks) as f64;
                        in_az.push(used / TICKS_PER_SECOND / seconds * 100.0);
                    }
                }
                last.insert(*pid, (now_ticks, now));
            }
            if !in_az.is_empty() {
                let value = in_az.iter().sum::<f64>() / in_az.len() as f64;
                push(
                    self.cpu.entry(Some(az.clone())).or_default(),
                    MetricPoint { at, value },
                    self.retention,
                );
            }
            all.extend(in_az);
        }
        if !all.is_empty() {
            let value = all.iter().sum::<f64>() / all.len() as f64;
            push(
                self.cpu.entry(None).or_default(),
                MetricPoint { at, value },
                self.retention,
            );
        }
        // Processes that went away are forgotten.
        self.last = last;
    }

    /// The sampled series, in the port's shape.
    pub fn series(&self) -> Vec<MetricSeries> {
        let healthy = self.healthy_hosts.iter().map(|(az, points)| MetricSeries {
            metric: MetricKind::HealthyHosts,
            az: Some(az.clone()),
            points: points.iter().copied().collect(),
        });
        let cpu = self.cpu.iter().map(|(az, points)| MetricSeries {
            metric: MetricKind::Cpu,
            az: az.clone(),
            points: points.iter().copied().collect(),
        });
        healthy.chain(cpu).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(second: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(second).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn healthy_hosts_and_cpu_come_out_per_az_and_in_total() {
        let mut samples = Samples::new(3);
        let start = Instant::now();
        let healthy = BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)]);
        let instances =
            BTreeMap::from([("a".to_owned(), vec![10, 11]), ("b".to_owned(), vec![20])]);
        // 10 uses half a CPU, 11 none, 20 a whole one.
        let ticks = |elapsed: u64| {
            move |pid: u32| match pid {
                10 => Some(1000 + 50 * elapsed),
                11 => Some(7),
                20 => Some(100 * elapsed),
                _ => None,
            }
        };
        samples.sample(at(100), start, &healthy, &instances, ticks(0));
        assert!(
            samples
                .series()
                .iter()
                .all(|s| s.metric == MetricKind::HealthyHosts),
            "no CPU before a second reading"
        );
        samples.sample(
            at(101),
            start + Duration::from_secs(1),
            &healthy,
            &instances,
            ticks(1),
        );
        let series = samples.series();
        let value = |metric: MetricKind, az: Option<&str>| {
            series
                .iter()
                .find(|s| s.metric == metric && s.az.as_deref() == az)
                .and_then(|s| s.points.last())
                .map(|p| p.value)
        };
        assert_eq!(value(MetricKind::HealthyHosts, Some("a")), Some(2.0));
        assert_eq!(value(MetricKind::HealthyHosts, Some("b")), Some(1.0));
        assert_eq!(value(MetricKind::Cpu, Some("a")), Some(25.0));
        assert_eq!(value(MetricKind::Cpu, Some("b")), Some(100.0));
        assert_eq!(value(MetricKind::Cpu, None), Some(50.0));
    }

    #[test]
    fn series_keep_one_point_per_second_up_to_the_retention() {
        let mut samples = Samples::new(3);
        let healthy = BTreeMap::from([("a".to_owned(), 1)]);
        let none = BTreeMap::new();
        for second in 0..5 {
            samples.sample(at(second), Instant::now(), &healthy, &none, |_| None);
            samples.sample(at(second), Instant::now(), &healthy, &none, |_| None);
        }
        let series = samples.series();
        let points: Vec<i64> = series[0]
            .points
            .iter()
            .map(|p| p.at.unix_timestamp())
            .collect();
        assert_eq!(points, vec![2, 3, 4]);
    }

    #[test]
    fn the_cpu_time_of_this_process_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX), None);
    }
}
