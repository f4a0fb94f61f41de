//! Target tracking in the group model, under a `ManualClock`, one table per rule: the
//! scale-out window and proportional decision, warmup exclusion (and no scale-in while
//! warming up), max and min bounds, gradual scale-in, several policies (out when any, in
//! when all), scale-in off. The harness plays the driver: every instance's counters grow by
//! a chosen load each metric period, targets turn healthy at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use provision::model::{Action, Group, GroupConfig, Reading, TRACKING, Timings};
use provision::port::{
    AlarmSide, AlarmState, Capacity, Clock, ManualClock, ScalingDirection, ScalingMetric,
    ScalingPolicy, ShiftRequest, TargetState,
};
use rstest::rstest;
use time::OffsetDateTime;

const PERIOD: Duration = Duration::from_secs(60);

fn requests(target: f64) -> ScalingPolicy {
    ScalingPolicy {
        name: "requests-per-target".into(),
        metric: ScalingMetric::RequestsPerTarget,
        target,
        scale_in: true,
    }
}

fn cpu(target: f64) -> ScalingPolicy {
    ScalingPolicy {
        name: "cpu".into(),
        metric: ScalingMetric::CpuPercent,
        target,
        scale_in: true,
    }
}

/// Per-instance load during one period.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Requests each warmed-up instance receives in the period.
    requests: u64,
    /// CPU percent of each instance.
    cpu: f64,
}

const IDLE: Load = Load {
    requests: 0,
    cpu: 0.0,
};

struct World {
    clock: Arc<ManualClock>,
    group: Group,
    targets: BTreeMap<String, TargetState>,
    counters: BTreeMap<String, Reading>,
}

impl World {
    fn new(capacity: Capacity, warmup: Duration, policies: Vec<ScalingPolicy>) -> World {
        let mut group = Group::new(GroupConfig {
            azs: vec!["az-a".into(), "az-b".into(), "az-c".into()],
            capacity,
            launch_template: 1,
            timings: Timings {
                default_warmup: warmup,
                metric_period: PERIOD,
                ..Timings::immediate()
            },
            id_prefix: "i-".into(),
        });
        group.set_policies(policies);
        let mut world = World {
            clock: Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH)),
            group,
            targets: BTreeMap::new(),
            counters: BTreeMap::new(),
        };
        for _ in 0..3 {
            world.step();
        }
        world
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn step(&mut self) {
        for state in self.targets.values_mut() {
            if *state == TargetState::Initial {
                *state = TargetState::Healthy;
            }
        }
        let now = self.now();
        let readings: BTreeMap<String, Reading> = self
            .group
            .members()
            .iter()
            .filter(|m| m.is_live())
            .map(|m| {
                let reading = self.counters.get(&m.id).copied().unwrap_or_default();
                (m.id.clone(), reading)
            })
            .collect();
        self.group.observe(now, &readings);
        let targets = self.targets.clone();
        let actions = self.group.step(now, &|id| {
            targets.get(id).copied().unwrap_or(TargetState::Unused)
        });
        for action in actions {
            match action {
                Action::Launch { .. } => {}
                Action::Register { id, .. } => {
                    self.targets.insert(id, TargetState::Initial);
                }
                Action::Deregister { id } => {
                    self.targets.remove(&id);
                }
                Action::Terminate { id } => {
                    self.counters.remove(&id);
                    self.group.gone(now, &id, None);
                }
            }
        }
        // A second step lets new targets turn healthy and their instances go InService.
        let targets: BTreeMap<String, TargetState> = self
            .targets
            .keys()
            .map(|id| (id.clone(), TargetState::Healthy))
            .collect();
        self.targets = targets.clone();
        let actions = self.group.step(now, &|id| {
            targets.get(id).copied().unwrap_or(TargetState::Unused)
        });
        assert!(
            actions
                .iter()
                .all(|a| !matches!(a, Action::Launch { .. } | Action::Terminate { .. })),
            "a second step at the same time does nothing new: {actions:?}"
        );
    }

    /// One metric period under `load`, then a step at its end.
    fn period(&mut self, load: Load) {
        for member in self.group.members().iter().filter(|m| m.is_live()) {
            let counter = self.counters.entry(member.id.clone()).or_default();
            counter.requests += load.requests;
            let used = load.cpu / 100.0 * PERIOD.as_secs_f64();
            counter.cpu_seconds = Some(counter.cpu_seconds.unwrap_or(0.0) + used);
        }
        self.clock
            .advance(time::Duration::try_from(PERIOD).expect("a minute"));
        self.step();
    }

    fn periods(&mut self, n: usize, load: Load) {
        for _ in 0..n {
            self.period(load);
        }
    }

    fn desired(&self) -> u32 {
        self.group.capacity().desired
    }

    fn live(&self) -> usize {
        self.group.live_count()
    }
}

fn capacity(desired: u32, min: u32, max: u32) -> Capacity {
    Capacity { desired, min, max }
}

fn rpt(requests: u64) -> Load {
    Load { requests, cpu: 0.0 }
}

#[test]
fn scale_out_waits_for_three_periods_above_target_then_is_proportional() {
    let mut w = World::new(capacity(3, 3, 12), Duration::ZERO, vec![requests(60.0)]);
    // The first period starts the counters; then two periods above target: no decision yet.
    w.periods(3, rpt(84));
    assert_eq!(w.desired(), 3, "two datapoints above target are not enough");
    let view = w.group.scaling_view();
    let high = &view.policies[0].alarms[0];
    assert_eq!(
        (high.side, high.state, high.datapoints),
        (AlarmSide::Above, AlarmState::Ok, 3)
    );
    w.period(rpt(84));
    assert_eq!(w.desired(), 5, "ceil(3 × 84 / 60) = 5");
    assert_eq!(w.live(), 5, "the next step launches the difference");
    let view = w.group.scaling_view();
    let decision = view.last_decision().expect("a decision");
    assert_eq!(decision.direction, ScalingDirection::Out);
    assert_eq!((decision.from, decision.to), (3, 5));
    assert_eq!(
        decision.reason,
        "requests/target 84 > 60 for 3 periods → desired 3 → 5"
    );
    assert_eq!(decision.at, w.now(), "stamped with the model's clock");
    let launches: Vec<String> = w
        .group
        .events()
        .filter(|e| e.event.message.contains("in response to scaling policy"))
        .map(|e| e.event.message.clone())
        .collect();
    assert_eq!(launches.len(), 2, "both launches say why: {launches:?}");
    assert!(
        w.group.events().any(|e| e
            .event
            .message
            .contains("Scaling policy requests-per-target:")),
        "the decision is an event"
    );
}

#[test]
fn instances_in_warmup_are_left_out_of_the_metric() {
    let warmup = Duration::from_secs(150);
    let mut w = World::new(capacity(3, 3, 12), warmup, vec![requests(60.0)]);
    // Every instance is still warming up: no datapoint, however high the load.
    w.periods(2, rpt(1000));
    let view = w.group.scaling_view();
    assert_eq!(view.policies[0].current, None, "no warmed-up instance yet");
    assert_eq!(
        view.policies[0].alarms[0].state,
        AlarmState::InsufficientData
    );
    // Warmed up after 150 s: three datapoints above target later, the group scales out.
    w.periods(2, rpt(1000));
    assert_eq!(w.desired(), 3, "two datapoints so far");
    w.period(rpt(1000));
    assert_eq!(w.desired(), 12, "proportional, up to max");
}

#[test]
fn no_scale_in_while_an_instance_warms_up() {
    let warmup = Duration::from_secs(20 * 60);
    let mut w = World::new(capacity(3, 2, 12), warmup, vec![requests(60.0)]);
    w.periods(21, IDLE);
    assert_eq!(w.desired(), 3, "warmed up only now");
    // One more instance by hand: it warms up for 20 periods while the others stay idle.
    let mut more = w.group.capacity();
    more.desired = 4;
    w.group.set_capacity(more).expect("within bounds");
    w.step();
    assert_eq!(w.live(), 4);
    w.periods(19, IDLE);
    let low = w.group.scaling_view().policies[0].alarms[1].state;
    assert_eq!(low, AlarmState::Alarm, "the low alarm is in alarm");
    assert_eq!(w.desired(), 4, "but the warming instance blocks scale-in");
    w.period(IDLE);
    assert_eq!(w.desired(), 3, "its warmup over, the group scales in");
}

#[rstest]
#[case::capped_at_max(capacity(3, 3, 4), 1000, 4)]
#[case::within_max(capacity(3, 3, 30), 200, 10)]
fn scale_out_never_exceeds_max(
    #[case] capacity: Capacity,
    #[case] load: u64,
    #[case] expected: u32,
) {
    let mut w = World::new(capacity, Duration::ZERO, vec![requests(60.0)]);
    w.periods(4, rpt(load));
    assert_eq!(w.desired(), expected);
    assert_eq!(w.live(), expected as usize);
    if expected == capacity.max {
        let view = w.group.scaling_view();
        let reason = &view.last_decision().expect("a decision").reason;
        assert!(
            reason.ends_with(&format!("(max {})", capacity.max)),
            "{reason}"
        );
    }
}

#[test]
fn scale_in_is_gradual_and_stops_at_min() {
    let mut w = World::new(capacity(6, 2, 12), Duration::ZERO, vec![requests(60.0)]);
    // 15 datapoints below 90 % of target are needed (the first period only starts counters).
    w.periods(TRACKING.in_datapoints, IDLE);
    assert_eq!(w.desired(), 6, "fourteen datapoints are not enough");
    let low = &w.group.scaling_view().policies[0].alarms[1];
    assert_eq!(
        (low.side, low.threshold, low.datapoints),
        (AlarmSide::Below, 54.0, 15)
    );
    w.period(IDLE);
    assert_eq!(
        w.desired(),
        5,
        "one step: at most 10 % of 6, one instance at least"
    );
    let view = w.group.scaling_view();
    let decision = view.last_decision().expect("a decision");
    assert_eq!(decision.direction, ScalingDirection::In);
    assert_eq!(
        decision.reason,
        "requests/target 0 < 54 (90 % of 60) for 15 periods → desired 6 → 5"
    );
    let mut seen = vec![w.desired()];
    for _ in 0..20 {
        w.period(IDLE);
        if seen.last() != Some(&w.desired()) {
            seen.push(w.desired());
        }
    }
    assert_eq!(
        seen,
        vec![5, 4, 3, 2],
        "one instance per step, never below min"
    );
    assert_eq!(w.live(), 2);
}

#[test]
fn a_load_between_the_thresholds_changes_nothing() {
    let mut w = World::new(capacity(3, 2, 12), Duration::ZERO, vec![requests(60.0)]);
    // 57 is below the target and above 90 % of it.
    w.periods(TRACKING.in_datapoints + 5, rpt(57));
    assert_eq!(w.desired(), 3);
    assert!(w.group.decisions().next().is_none());
}

#[rstest]
// CPU above its target: out, even though requests are low.
#[case::out_when_any_wants_out(90.0, 0, Some(ScalingDirection::Out))]
// CPU low, requests within band: no scale-in (not every policy wants in).
#[case::in_only_when_all_want_in(10.0, 57, None)]
// Both low: in.
#[case::in_when_all_want_in(10.0, 0, Some(ScalingDirection::In))]
fn several_policies(
    #[case] cpu_load: f64,
    #[case] requests_load: u64,
    #[case] expected: Option<ScalingDirection>,
) {
    let mut w = World::new(
        capacity(4, 2, 12),
        Duration::ZERO,
        vec![cpu(50.0), requests(60.0)],
    );
    w.periods(
        TRACKING.in_datapoints + 1,
        Load {
            requests: requests_load,
            cpu: cpu_load,
        },
    );
    let view = w.group.scaling_view();
    let first = view.decisions.last().map(|d| d.direction);
    assert_eq!(first, expected, "{:?}", view.decisions);
    if expected == Some(ScalingDirection::Out) {
        let decision = view.decisions.last().expect("a decision");
        assert_eq!(decision.policy, "cpu");
        assert_eq!(decision.to, 8, "ceil(4 × 90 / 50) = 8");
    }
}

#[test]
fn with_scale_in_off_the_group_never_shrinks() {
    let policy = ScalingPolicy {
        scale_in: false,
        ..requests(60.0)
    };
    let mut w = World::new(capacity(3, 2, 12), Duration::ZERO, vec![policy]);
    w.periods(4, rpt(84));
    assert_eq!(w.desired(), 5);
    w.periods(2 * TRACKING.in_datapoints, IDLE);
    assert_eq!(w.desired(), 5, "scale-in is off");
    let view = w.group.scaling_view();
    assert_eq!(view.policies[0].alarms.len(), 1, "no low alarm");
    assert_eq!(view.policies[0].alarms[0].side, AlarmSide::Above);
}

#[test]
fn launches_of_a_scale_out_are_listed_until_in_service() {
    let mut w = World::new(capacity(3, 3, 12), Duration::ZERO, vec![requests(60.0)]);
    w.periods(3, rpt(84));
    // Keep new targets from turning healthy: step by hand at the decision.
    for counter in w.counters.values_mut() {
        counter.requests += 84;
    }
    let readings: BTreeMap<String, Reading> = w.counters.clone();
    w.clock
        .advance(time::Duration::try_from(PERIOD).expect("a minute"));
    let now = w.now();
    w.group.observe(now, &readings);
    let actions = w.group.step(now, &|_| TargetState::Initial);
    let launched: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(launched.len(), 2);
    assert_eq!(w.group.scaling_view().launching, launched);
    let healthy = w.group.step(now, &|_| TargetState::Healthy);
    assert!(healthy.is_empty());
    assert!(
        w.group.scaling_view().launching.is_empty(),
        "in service once healthy"
    );
}

#[test]
fn a_group_without_policies_never_scales() {
    let mut w = World::new(capacity(3, 2, 12), Duration::ZERO, Vec::new());
    w.periods(20, rpt(10_000));
    assert_eq!(w.desired(), 3);
    assert!(w.group.scaling_view().policies.is_empty());
    assert!(w.group.next_deadline().is_none());
}

/// While a zonal shift is active the policies may raise desired capacity but not lower it
/// (AWS blocks scale-in during a shift); the scale-out's launches avoid the shifted AZ.
#[test]
fn a_zonal_shift_blocks_scale_in_but_not_scale_out() {
    let mut w = World::new(capacity(6, 2, 12), Duration::ZERO, vec![requests(60.0)]);
    let now = w.now();
    let request =
        ShiftRequest::new("az-a", Duration::from_secs(24 * 3600), "test").expect("request");
    w.group
        .start_zonal_shift(now, &request, vec![])
        .expect("shift");
    w.periods(TRACKING.in_datapoints + 5, IDLE);
    assert_eq!(w.desired(), 6, "no scale-in while shifted");
    let in_a = |w: &World| {
        w.group
            .members()
            .iter()
            .filter(|m| m.az == "az-a" && m.is_live())
            .count()
    };
    let before = in_a(&w);
    w.periods(TRACKING.out_datapoints + 1, rpt(120));
    assert!(
        w.desired() > 6,
        "scale-out goes on: desired {}",
        w.desired()
    );
    assert_eq!(in_a(&w), before, "nothing launched into the shifted AZ");
}
