//! Target tracking scaling inside the group model: the group's policies, one datapoint per
//! metric period, the two alarms AWS creates for each policy, and the decisions that change
//! desired capacity. A driver hands the model each instance's cumulative counters
//! ([`Reading`]) with [`Group::observe`]; at the end of every metric period the model turns
//! them into one datapoint per policy, evaluates the alarms and, when one is in alarm, sets
//! desired capacity — the next [`Group::step`] launches or terminates.
//!
//! What AWS documents, and the model follows
//! (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html>,
//! <https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-default-instance-warmup.html>):
//! - Target tracking creates and manages two CloudWatch alarms per policy: a high one that
//!   scales out when the metric stays above the target, a low one that scales in when it stays
//!   well below; it scales out quickly and proportionally, and in gradually.
//! - Scale-out sets desired capacity in proportion to the metric:
//!   `ceil(capacity × metric / target)`, where capacity counts instances still warming up
//!   (so several breaches in a row do not add instances twice) while the metric leaves them
//!   out (an instance contributes to the aggregated metric only once its default instance
//!   warmup has passed after it went InService).
//! - While instances are warming up, the group does not scale in.
//! - Never above max nor below min.
//! - With several target tracking policies, the group scales out when any policy wants to and
//!   in only when every policy with scale-in enabled wants to; the largest capacity wins.
//! - With scale-in disabled, a policy never removes capacity (AWS creates no low alarm then).
//! - While a zonal shift is active, policies may raise desired capacity but not lower it.
//!
//! What AWS does not document, stated once here as the model's assumptions ([`TRACKING`]):
//! the number of datapoints each alarm needs and the scale-in margin are read off the alarms
//! AWS creates (`TargetTracking-…-AlarmHigh`: 3 of 3 one-minute datapoints above the target;
//! `TargetTracking-…-AlarmLow`: 15 of 15 below 90 % of it — on AWS the snapshot shows the real
//! alarms from DescribeAlarms), and "gradual" scale-in is one step of at most 10 % of desired
//! capacity (one instance at least) per period while the low alarm stays in alarm.
//!
//! The metrics, as AWS defines them: `ASGAverageCPUUtilization` is the average CPU of the
//! instances (here 100 % is one CPU of the instance's process); `ALBRequestCountPerTarget` is
//! the requests per target in one minute, so a period other than a minute (a compressed clock,
//! a test's short period) is scaled to a minute.
//!
//! During an instance refresh the policies keep acting, as on AWS; scale-in terminations wait
//! while a refresh batch is in flight (see [`Group::step`]). Under a launch block, scale-out
//! launches go to the AZs still enabled.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use time::OffsetDateTime;

use super::group::{EventKind, Group};
use super::timings::AWS_METRIC_PERIOD;
use crate::port::{
    AlarmSide, AlarmState, EventSource, HealthStatus, LifecycleState, PolicyAlarm, PolicyView,
    ScalingDecision, ScalingDirection, ScalingMetric, ScalingPolicy, ScalingView,
};

/// The counts target tracking's alarms use and the scale-in margin: the model's stated
/// assumptions (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracking {
    /// Consecutive datapoints above the target that put the high alarm in alarm.
    pub out_datapoints: usize,
    /// Consecutive datapoints below the scale-in threshold that put the low alarm in alarm.
    pub in_datapoints: usize,
    /// The low alarm's threshold as a fraction of the target.
    pub in_margin: f64,
    /// The largest share of desired capacity one scale-in step removes (one instance at
    /// least).
    pub in_step: f64,
}

/// The assumptions in force.
pub const TRACKING: Tracking = Tracking {
    out_datapoints: 3,
    in_datapoints: 15,
    in_margin: 0.9,
    in_step: 0.1,
};

/// How many decisions the group keeps.
const DECISIONS_KEPT: usize = 50;

/// One instance's counters since any fixed origin (only differences between two readings are
/// used). A counter that goes down (a restarted process) drops that instance from the period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Requests the load balancer routed to the instance.
    pub requests: u64,
    /// CPU time its process used, in seconds; `None` when unknown.
    pub cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone)]
struct Tracked {
    policy: ScalingPolicy,
    /// Newest last; `None` for a period with no instance to measure.
    datapoints: VecDeque<Option<f64>>,
}

impl Tracked {
    fn last(&self) -> Option<f64> {
        self.datapoints.back().copied().flatten()
    }

    /// Whether the last `n` datapoints all exist and satisfy `breach`.
    fn breached(&self, n: usize, breach: impl Fn(f64) -> bool) -> bool {
        self.datapoints.len() >= n
            && self
                .datapoints
                .iter()
                .rev()
                .take(n)
                .all(|d| d.is_some_and(&breach))
    }

    fn low_threshold(&self) -> f64 {
        self.policy.target * TRACKING.in_margin
    }

    fn high_alarm(&self) -> AlarmState {
        self.state(TRACKING.out_datapoints, |v| v > self.policy.target)
    }

    fn low_alarm(&self) -> AlarmState {
        let threshold = self.low_threshold();
        self.state(TRACKING.in_datapoints, |v| v < threshold)
    }

    fn state(&self, n: usize, breach: impl Fn(f64) -> bool) -> AlarmState {
        if self.breached(n, breach) {
            AlarmState::Alarm
        } else if self.datapoints.back().is_none_or(Option::is_none) {
            AlarmState::InsufficientData
        } else {
            AlarmState::Ok
        }
    }
}

/// The group's scaling state.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker {
    policies: Vec<Tracked>,
    period_start: Option<OffsetDateTime>,
    base: BTreeMap<String, Reading>,
    decisions: VecDeque<ScalingDecision>,
    /// Instances launched by a scale-out, until they are InService.
    pub(super) launching: BTreeSet<String>,
    /// Why the launches the group makes now happen (set by a scale-out decision until the
    /// group has its desired capacity).
    pub(super) out_cause: Option<String>,
}

fn metric_value(metric: ScalingMetric, requests: &[u64], cpu: &[f64], seconds: f64) -> Option<f64> {
    match metric {
        ScalingMetric::RequestsPerTarget => (!requests.is_empty()).then(|| {
            let per_target = requests.iter().sum::<u64>() as f64 / requests.len() as f64;
            per_target * AWS_METRIC_PERIOD.as_secs_f64() / seconds
        }),
        ScalingMetric::CpuPercent => {
            (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64)
        }
    }
}

fn proposed(capacity: u32, value: f64, target: f64) -> u32 {
    if target <= 0.0 {
        return capacity;
    }
    let wanted = (f64::from(capacity) * value / target).ceil();
    if wanted >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        wanted.max(0.0) as u32
    }
}

fn number(value: f64) -> String {
    if (value - value.round()).abs() < 0.05 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl Group {
    /// Sets the group's target tracking policies (none: a fixed size). Their alarms start
    /// over.
    pub fn set_policies(&mut self, policies: Vec<ScalingPolicy>) {
        self.scaling.policies = policies
            .into_iter()
            .map(|policy| Tracked {
                policy,
                datapoints: VecDeque::new(),
            })
            .collect();
        self.scaling.period_start = None;
        self.scaling.base.clear();
    }

    /// The group's policies.
    pub fn policies(&self) -> Vec<ScalingPolicy> {
        self.scaling
            .policies
            .iter()
            .map(|t| t.policy.clone())
            .collect()
    }

    /// Recent scaling decisions, newest first.
    pub fn decisions(&self) -> impl Iterator<Item = &ScalingDecision> {
        self.scaling.decisions.iter()
    }

    /// Whether [`Group::observe`] would use readings at `now` (a period has ended, or the
    /// first one starts), so a driver reads its counters only then.
    pub fn wants_readings(&self, now: OffsetDateTime) -> bool {
        !self.scaling.policies.is_empty()
            && self
                .scaling_deadline()
                .is_none_or(|deadline| now >= deadline)
    }

    /// The end of the current metric period, when policies are tracked.
    pub(super) fn scaling_deadline(&self) -> Option<OffsetDateTime> {
        if self.scaling.policies.is_empty() {
            return None;
        }
        self.scaling
            .period_start
            .map(|start| start + self.timings.metric_period)
    }

    /// Whether instance `id` contributes to the aggregated metrics at `now`: InService and
    /// healthy, its default instance warmup over.
    fn warmed_up(&self, id: &str, now: OffsetDateTime) -> bool {
        self.member(id).is_some_and(|m| {
            m.lifecycle == LifecycleState::InService
                && m.health == HealthStatus::Healthy
                && m.in_service_at
                    .is_some_and(|at| at + self.timings.default_warmup <= now)
        })
    }

    /// The instances' counters at `now`. At the end of each metric period the policies get one
    /// datapoint each and may change desired capacity (see the module documentation).
    pub fn observe(&mut self, now: OffsetDateTime, readings: &BTreeMap<String, Reading>) {
        if self.scaling.policies.is_empty() {
            return;
        }
        let Some(start) = self.scaling.period_start else {
            self.scaling.period_start = Some(now);
            self.scaling.base = readings.clone();
            return;
        };
        if now < start + self.timings.metric_period {
            return;
        }
        let seconds = (now - start).as_seconds_f64().max(f64::EPSILON);
        let mut requests = Vec::new();
        let mut cpu = Vec::new();
        for (id, reading) in readings {
            let Some(base) = self.scaling.base.get(id) else {
                continue;
            };
            if !self.warmed_up(id, now) || reading.requests < base.requests {
                continue;
            }
            requests.push(reading.requests - base.requests);
            if let (Some(now_cpu), Some(then_cpu)) = (reading.cpu_seconds, base.cpu_seconds)
                && now_cpu >= then_cpu
            {
                cpu.push((now_cpu - then_cpu) / seconds * 100.0);
            }
        }
        for tracked in &mut self.scaling.policies {
            let value = metric_value(tracked.policy.metric, &requests, &cpu, seconds);
            tracked.datapoints.push_back(value);
            while tracked.datapoints.len() > TRACKING.in_datapoints.max(TRACKING.out_datapoints) {
                tracked.datapoints.pop_front();
            }
        }
        self.scaling.period_start = Some(now);
        self.scaling.base = readings.clone();
        self.decide(now);
    }

    fn decide(&mut self, now: OffsetDateTime) {
        let capacity = self.capacity();
        let live = u32::try_from(self.live_count()).unwrap_or(u32::MAX);
        // Scale out: any policy whose high alarm is in alarm; the largest capacity wins.
        let out = self
            .scaling
            .policies
            .iter()
            .filter(|t| t.high_alarm() == AlarmState::Alarm)
            .filter_map(|t| {
                let value = t.last()?;
                Some((proposed(live, value, t.policy.target), value, t))
            })
            .max_by_key(|(wanted, _, _)| *wanted);
        if let Some((wanted, value, tracked)) = out {
            let to = wanted.min(capacity.max);
            if to > capacity.desired {
                let capped = if wanted > capacity.max {
                    format!(" (max {})", capacity.max)
                } else {
                    String::new()
                };
                let reason = format!(
                    "{} {} > {} for {} periods → desired {} → {to}{capped}",
                    tracked.policy.metric.label(),
                    number(value),
                    number(tracked.policy.target),
                    TRACKING.out_datapoints,
                    capacity.desired
                );
                let name = tracked.policy.name.clone();
                self.decided(now, name, ScalingDirection::Out, to, reason);
            }
            return;
        }
        // No scale-in while a zonal shift is active: "Auto Scaling will block scaling policies
        // from decreasing desired capacity" (scale-out goes on),
        // <https://docs.aws.amazon.com/r53recovery/latest/dg/arc-zonal-shift.resource-types.ec2-auto-scaling-groups.html>.
        if !self.shifted_azs().is_empty() {
            return;
        }
        // Scale in: only when every policy that may scale in wants to, none is warming up and
        // nothing is on its way out.
        let scale_in: Vec<&Tracked> = self
            .scaling
            .policies
            .iter()
            .filter(|t| t.policy.scale_in)
            .collect();
        if scale_in.is_empty()
            || scale_in.iter().any(|t| t.low_alarm() != AlarmState::Alarm)
            || capacity.desired <= capacity.min
        {
            return;
        }
        let busy = self.members().iter().any(|m| {
            matches!(
                m.lifecycle,
                LifecycleState::Pending | LifecycleState::Terminating
            ) || (m.lifecycle == LifecycleState::InService && !self.warmed_up(&m.id, now))
        });
        if busy {
            return;
        }
        let Some((wanted, value, tracked)) = scale_in
            .iter()
            .filter_map(|t| {
                let value = t.last()?;
                Some((proposed(live, value, t.policy.target), value, *t))
            })
            .max_by_key(|(wanted, _, _)| *wanted)
        else {
            return;
        };
        let step = ((f64::from(capacity.desired) * TRACKING.in_step).floor() as u32).max(1);
        let to = wanted
            .max(capacity.desired.saturating_sub(step))
            .max(capacity.min);
        if to >= capacity.desired {
            return;
        }
        let reason = format!(
            "{} {} < {} ({} % of {}) for {} periods → desired {} → {to}",
            tracked.policy.metric.label(),
            number(value),
            number(tracked.low_threshold()),
            number(TRACKING.in_margin * 100.0),
            number(tracked.policy.target),
            TRACKING.in_datapoints,
            capacity.desired
        );
        let name = tracked.policy.name.clone();
        self.decided(now, name, ScalingDirection::In, to, reason);
    }

    fn decided(
        &mut self,
        now: OffsetDateTime,
        policy: String,
        direction: ScalingDirection,
        to: u32,
        reason: String,
    ) {
        let from = self.capacity().desired;
        self.set_desired(to);
        let message = format!("Scaling policy {policy}: {reason}");
        if direction == ScalingDirection::Out {
            self.scaling.out_cause = Some(format!(
                "in response to scaling policy {policy} changing the desired capacity from \
                 {from} to {to}"
            ));
        }
        self.scaling.decisions.push_front(ScalingDecision {
            at: now,
            policy,
            direction,
            from,
            to,
            reason,
        });
        self.scaling.decisions.truncate(DECISIONS_KEPT);
        self.record_kind(EventKind::Scaling, now, EventSource::Scaling, message);
    }

    /// Forgets launches that are in service now or gone.
    pub(super) fn settle_launching(&mut self) {
        let members = self.members();
        let keep: BTreeSet<String> = self
            .scaling
            .launching
            .iter()
            .filter(|id| {
                members
                    .iter()
                    .any(|m| &m.id == *id && m.lifecycle == LifecycleState::Pending)
            })
            .cloned()
            .collect();
        self.scaling.launching = keep;
    }

    /// The scaling section of a snapshot: every policy with its current value and alarms
    /// (`period_seconds` on this model's clock), recent decisions, instances a scale-out
    /// launched that are not in service yet.
    pub fn scaling_view(&self) -> ScalingView {
        let period = u32::try_from(self.timings.metric_period.as_secs()).unwrap_or(u32::MAX);
        let policies = self
            .scaling
            .policies
            .iter()
            .map(|t| {
                let mut alarms = vec![PolicyAlarm {
                    name: format!("TargetTracking-{}-AlarmHigh", t.policy.name),
                    state: t.high_alarm(),
                    side: AlarmSide::Above,
                    threshold: t.policy.target,
                    datapoints: TRACKING.out_datapoints as u32,
                    period_seconds: period,
                }];
                if t.policy.scale_in {
                    alarms.push(PolicyAlarm {
                        name: format!("TargetTracking-{}-AlarmLow", t.policy.name),
                        state: t.low_alarm(),
                        side: AlarmSide::Below,
                        threshold: t.low_threshold(),
                        datapoints: TRACKING.in_datapoints as u32,
                        period_seconds: period,
                    });
                }
                PolicyView {
                    policy: t.policy.clone(),
                    current: t.last(),
                    alarms,
                }
            })
            .collect();
        ScalingView {
            policies,
            decisions: self.scaling.decisions.iter().cloned().collect(),
            launching: self.scaling.launching.iter().cloned().collect(),
        }
    }
}
