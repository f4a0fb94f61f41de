//! Per-second samples the sandbox keeps besides the load balancer's own metrics: healthy
//! hosts per AZ, and the CPU of the instances, measured per instance from `/proc` and reported
//! in the port's series shape — the average of an AZ's instances per AZ, and of all instances
//! stack-wide (CloudWatch's `CPUUtilization` of the group, by AZ and in total).
//!
//! An instance's CPU is the share of one CPU its process used between two samples (`utime +
//! stime` of `/proc/<pid>/stat`, all its threads, in clock ticks), so 100 means one full CPU.
//! Each instance's latest CPU and its request rate (from the load balancer's count of requests
//! sent to its target, over the last [`RATE_WINDOW`] samples) are kept too, for the snapshot's
//! per-instance figures.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use time::OffsetDateTime;

use crate::port::{InstanceMetrics, MetricKind, MetricPoint, MetricSeries};

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

/// How many samples (seconds) an instance's request rate is averaged over.
pub const RATE_WINDOW: usize = 10;

/// The per-second series the sandbox samples itself.
#[derive(Debug)]
pub struct Samples {
    retention: usize,
    healthy_hosts: BTreeMap<String, VecDeque<MetricPoint>>,
    /// Keyed by AZ; `None` for the stack-wide average.
    cpu: BTreeMap<Option<String>, VecDeque<MetricPoint>>,
    /// The last reading per instance process: (ticks, when).
    last: BTreeMap<u32, (u64, Instant)>,
    /// Each live instance's CPU at the last sample.
    instance_cpu: BTreeMap<String, f64>,
    /// Each live instance's request count at the last samples: (when, requests so far).
    instance_requests: BTreeMap<String, VecDeque<(Instant, u64)>>,
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
            instance_cpu: BTreeMap::new(),
            instance_requests: BTreeMap::new(),
        }
    }

    /// Records one sample at `at` (a whole second): the healthy targets per AZ, the live
    /// instances per AZ (id and process id, whose CPU time `ticks` reads) and the requests
    /// sent to each target so far.
    pub fn sample(
        &mut self,
        at: OffsetDateTime,
        now: Instant,
        healthy: &BTreeMap<String, usize>,
        instances: &BTreeMap<String, Vec<(String, u32)>>,
        requests: &BTreeMap<String, u64>,
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
        let mut instance_cpu = BTreeMap::new();
        let mut instance_requests = BTreeMap::new();
        for (az, members) in instances {
            let mut in_az = Vec::new();
            for (id, pid) in members {
                if let Some(count) = requests.get(id) {
                    let mut history = self.instance_requests.remove(id).unwrap_or_default();
                    history.push_back((now, *count));
                    while history.len() > RATE_WINDOW {
                        history.pop_front();
                    }
                    instance_requests.insert(id.clone(), history);
                }
                let Some(now_ticks) = ticks(*pid) else {
                    continue;
                };
                if let Some((then_ticks, then)) = self.last.get(pid) {
                    let seconds = now.duration_since(*then).as_secs_f64();
                    if seconds > 0.0 {
                        let used = now_ticks.saturating_sub(*then_ticks) as f64;
                        let cpu = used / TICKS_PER_SECOND / seconds * 100.0;
                        in_az.push(cpu);
                        instance_cpu.insert(id.clone(), cpu);
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
        self.instance_cpu = instance_cpu;
        self.instance_requests = instance_requests;
    }

    /// The live instances' latest figures: CPU at the last sample, and requests per second
    /// over the last samples (once there are two).
    pub fn instances(&self) -> Vec<InstanceMetrics> {
        let ids: std::collections::BTreeSet<&String> = self
            .instance_cpu
            .keys()
            .chain(self.instance_requests.keys())
            .collect();
        ids.into_iter()
            .map(|id| InstanceMetrics {
                id: id.clone(),
                cpu_percent: self.instance_cpu.get(id).copied(),
                requests_per_second: self.instance_requests.get(id).and_then(|history| {
                    let (first, last) = (history.front()?, history.back()?);
                    let seconds = last.0.duration_since(first.0).as_secs_f64();
                    (seconds > 0.0).then(|| last.1.saturating_sub(first.1) as f64 / seconds)
                }),
            })
            .collect()
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
        let instances = BTreeMap::from([
            (
                "a".to_owned(),
                vec![("i-10".to_owned(), 10), ("i-11".to_owned(), 11)],
            ),
            ("b".to_owned(), vec![("i-20".to_owned(), 20)]),
        ]);
        // i-10 gets 4 requests a second, the others none.
        let requests = |elapsed: u64| {
            BTreeMap::from([
                ("i-10".to_owned(), 4 * elapsed),
                ("i-11".to_owned(), 0),
                ("i-20".to_owned(), 0),
            ])
        };
        // 10 uses half a CPU, 11 none, 20 a whole one.
        let ticks = |elapsed: u64| {
            move |pid: u32| match pid {
                10 => Some(1000 + 50 * elapsed),
                11 => Some(7),
                20 => Some(100 * elapsed),
                _ => None,
            }
        };
        samples.sample(at(100), start, &healthy, &instances, &requests(0), ticks(0));
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
            &requests(1),
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
        let per_instance = samples.instances();
        let of = |id: &str| per_instance.iter().find(|i| i.id == id).cloned();
        let ten = of("i-10").expect("i-10's figures");
        assert_eq!(ten.cpu_percent, Some(50.0));
        assert_eq!(ten.requests_per_second, Some(4.0));
        assert_eq!(of("i-20").and_then(|i| i.requests_per_second), Some(0.0));
        // An instance that is gone is forgotten.
        let fewer = BTreeMap::from([("b".to_owned(), vec![("i-20".to_owned(), 20)])]);
        samples.sample(
            at(102),
            start + Duration::from_secs(2),
            &healthy,
            &fewer,
            &requests(2),
            ticks(2),
        );
        assert!(samples.instances().iter().all(|i| i.id == "i-20"));
    }

    #[test]
    fn series_keep_one_point_per_second_up_to_the_retention() {
        let mut samples = Samples::new(3);
        let healthy = BTreeMap::from([("a".to_owned(), 1)]);
        let none = BTreeMap::new();
        let none_yet = BTreeMap::new();
        for second in 0..5 {
            samples.sample(
                at(second),
                Instant::now(),
                &healthy,
                &none,
                &none_yet,
                |_| None,
            );
            samples.sample(
                at(second),
                Instant::now(),
                &healthy,
                &none,
                &none_yet,
                |_| None,
            );
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
