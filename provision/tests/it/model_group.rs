//! The group model on its own, table-driven, under a `ManualClock`: capacity validation,
//! refresh statuses and preferences, refusals, replacement after the grace period, AZ
//! rebalancing with its max + margin, the target health state machine and fail-open. The
//! harness plays the driver: it carries out actions at once and sets target states by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use provision::model::target::TargetHealth;
use provision::model::{
    Action, CheckResult, Group, GroupConfig, HealthCheck, TimeScale, Timings, failing_open,
    routable,
};
use provision::port::{
    Capacity, Clock, CloudError, DeployRequest, HealthStatus, LifecycleState, ManualClock,
    RefreshId, RefreshPreferences, RefreshStatus, ScalingProcess, ShiftRequest, StandbyInstances,
    TargetReason, TargetState,
};
use rstest::rstest;
use time::OffsetDateTime;

const AZS: [&str; 3] = ["az-a", "az-b", "az-c"];
const GRACE: Duration = Duration::from_secs(60);

fn request(preferences: RefreshPreferences) -> DeployRequest {
    DeployRequest {
        preferences,
        ..DeployRequest::new("v2")
    }
}

struct World {
    clock: Arc<ManualClock>,
    group: Group,
    targets: BTreeMap<String, TargetState>,
    /// Whether new targets turn healthy at the next step by themselves.
    auto_healthy: bool,
    next_refresh: u32,
}

impl World {
    fn new(desired: u32, max: u32) -> World {
        World::with_timings(
            desired,
            max,
            Timings {
                grace_period: GRACE,
                ..Timings::immediate()
            },
        )
    }

    fn with_timings(desired: u32, max: u32, timings: Timings) -> World {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let group = Group::new(GroupConfig {
            azs: AZS.iter().map(|s| (*s).to_owned()).collect(),
            capacity: Capacity {
                desired,
                min: 0,
                max,
            },
            launch_template: 1,
            timings,
            id_prefix: "i-".into(),
        });
        let mut world = World {
            clock,
            group,
            targets: BTreeMap::new(),
            auto_healthy: true,
            next_refresh: 0,
        };
        world.settle();
        world
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn step(&mut self) -> Vec<Action> {
        if self.auto_healthy {
            for state in self.targets.values_mut() {
                if *state == TargetState::Initial {
                    *state = TargetState::Healthy;
                }
            }
        }
        let now = self.now();
        let targets = self.targets.clone();
        let actions = self.group.step(now, &|id| {
            targets.get(id).copied().unwrap_or(TargetState::Unused)
        });
        for action in &actions {
            match action {
                Action::Launch { .. } => {}
                Action::Register { id, .. } => {
                    self.targets.insert(id.clone(), TargetState::Initial);
                }
                Action::Deregister { id } => {
                    self.targets.remove(id);
                }
                Action::Terminate { id } => self.group.gone(now, id, None),
            }
        }
        actions
    }

    fn settle(&mut self) {
        for _ in 0..5 {
            self.step();
        }
    }

    fn counts(&self) -> Vec<usize> {
        AZS.iter()
            .map(|az| {
                self.group
                    .members()
                    .iter()
                    .filter(|m| m.az == *az && m.is_live())
                    .count()
            })
            .collect()
    }

    fn deploy(&mut self, prefs: RefreshPreferences) -> RefreshId {
        self.next_refresh += 1;
        let id = RefreshId(format!("r-{}", self.next_refresh));
        let desired = self.group.launch_template() + 1;
        let now = self.now();
        self.group
            .start_refresh(
                now,
                id,
                desired,
                &request(prefs),
                &BTreeSet::from([desired]),
            )
            .expect("start")
    }

    fn status(&self) -> RefreshStatus {
        self.group.refreshes()[0].status
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
    }
}

#[rstest]
#[case::fine(Capacity { desired: 3, min: 1, max: 6 }, None)]
#[case::desired_above_max(Capacity { desired: 7, min: 1, max: 6 }, Some("capacity.desired"))]
#[case::desired_below_min(Capacity { desired: 0, min: 1, max: 6 }, Some("capacity.desired"))]
#[case::max_below_min(Capacity { desired: 2, min: 3, max: 2 }, Some("capacity.max"))]
fn capacity_is_validated_as_aws_does(#[case] capacity: Capacity, #[case] error: Option<&str>) {
    let mut w = World::new(3, 6);
    match (w.group.set_capacity(capacity), error) {
        (Ok(()), None) => assert_eq!(w.group.capacity(), capacity),
        (Err(CloudError::Invalid { field, .. }), Some(expected)) => assert_eq!(field, expected),
        (other, _) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn launches_are_balanced_across_enabled_azs() {
    let mut w = World::new(7, 12);
    assert_eq!(w.counts(), [3, 2, 2]);
    w.group.suspend(ScalingProcess::AzRebalance);
    w.group.disable_az("az-a");
    w.group
        .set_capacity(Capacity {
            desired: 9,
            min: 0,
            max: 12,
        })
        .expect("capacity");
    w.settle();
    assert_eq!(w.counts(), [3, 3, 3], "new launches only where enabled");
    // With AZRebalance running, instances in an AZ no longer enabled move out.
    w.group.resume(ScalingProcess::AzRebalance);
    for _ in 0..30 {
        w.step();
    }
    let counts = w.counts();
    assert_eq!(counts[0], 0, "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 9);
    assert!(counts[1].abs_diff(counts[2]) <= 1, "{counts:?}");
}

/// What happens to a refresh after it starts, and the statuses it goes through.
#[derive(Debug, Clone, Copy)]
enum Script {
    Nothing,
    Bake,
    Cancel,
    Rollback,
    Fail,
    FailWithAutoRollback,
    FailDuringRollback,
}

#[rstest]
#[case::successful(Script::Nothing, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::Successful])]
#[case::baking(Script::Bake, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::Baking, RefreshStatus::Successful])]
#[case::cancelled(Script::Cancel, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::Cancelling, RefreshStatus::Cancelled])]
#[case::rolled_back(Script::Rollback, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::RollbackInProgress, RefreshStatus::RollbackSuccessful])]
#[case::failed(Script::Fail, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::Failed])]
#[case::auto_rollback(Script::FailWithAutoRollback, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::RollbackInProgress, RefreshStatus::RollbackSuccessful])]
#[case::rollback_failed(Script::FailDuringRollback, &[RefreshStatus::Pending, RefreshStatus::InProgress, RefreshStatus::RollbackInProgress, RefreshStatus::RollbackFailed])]
fn every_refresh_status_transition(#[case] script: Script, #[case] expected: &[RefreshStatus]) {
    let mut w = World::new(6, 12);
    let mut prefs = RefreshPreferences::default();
    if matches!(script, Script::Bake) {
        prefs.bake_time_seconds = 100;
    }
    if matches!(script, Script::FailWithAutoRollback) {
        prefs.auto_rollback = true;
    }
    w.deploy(prefs);
    let mut seen = vec![w.status()];
    let note = |w: &World, seen: &mut Vec<RefreshStatus>| {
        if seen.last() != Some(&w.status()) {
            seen.push(w.status());
        }
    };
    for n in 0..40 {
        if n == 3 {
            let now = w.now();
            match script {
                Script::Cancel => {
                    w.group.cancel_refresh(now).expect("cancel");
                }
                Script::Rollback | Script::FailDuringRollback => {
                    w.group.rollback_refresh(now).expect("rollback");
                }
                Script::Fail | Script::FailWithAutoRollback => {
                    w.group.fail_refresh(now, "alarm fired").expect("fail");
                }
                Script::Nothing | Script::Bake => {}
            }
            note(&w, &mut seen);
        }
        if n == 4 && matches!(script, Script::FailDuringRollback) {
            let now = w.now();
            w.group.fail_refresh(now, "alarm fired").expect("fail");
            note(&w, &mut seen);
        }
        w.step();
        note(&w, &mut seen);
        if w.status().is_terminal() {
            break;
        }
        if w.status() == RefreshStatus::Baking {
            w.advance(100);
        }
    }
    assert_eq!(seen, expected);
    let ended = w.group.refreshes()[0].ended_at;
    assert_eq!(ended, Some(w.now()), "a terminal status stamps its time");
}

#[rstest]
#[case::default_90_100(90, 100, 1, false)]
#[case::half(50, 100, 3, false)]
#[case::all_at_once(0, 100, 6, false)]
#[case::launch_before_terminating(100, 110, 1, true)]
#[case::double(50, 150, 6, true)]
fn batch_size_and_order_follow_the_healthy_percentages(
    #[case] min: u8,
    #[case] max: u16,
    #[case] batch: usize,
    #[case] launch_first: bool,
) {
    let mut w = World::new(6, 12);
    w.auto_healthy = false;
    w.deploy(RefreshPreferences {
        min_healthy_percentage: min,
        max_healthy_percentage: max,
        ..RefreshPreferences::default()
    });
    w.step(); // Pending → InProgress
    let actions = w.step();
    let launched = actions
        .iter()
        .filter(|a| matches!(a, Action::Launch { template: 2, .. }))
        .count();
    let terminated = actions
        .iter()
        .filter(|a| matches!(a, Action::Terminate { .. }))
        .count();
    assert_eq!(launched, batch);
    assert_eq!(terminated, if launch_first { 0 } else { batch });
}

#[test]
fn skip_matching_leaves_instances_already_on_the_desired_configuration() {
    let mut w = World::new(6, 12);
    let now = w.now();
    let prefs = RefreshPreferences {
        skip_matching: true,
        ..RefreshPreferences::default()
    };
    // Version 2 has the same content as version 1: nothing to replace.
    w.group
        .start_refresh(
            now,
            RefreshId("r".into()),
            2,
            &request(prefs),
            &BTreeSet::from([1, 2]),
        )
        .expect("start");
    assert_eq!(w.group.refreshes()[0].instances_to_update, Some(0));
    w.step();
    w.step();
    assert_eq!(w.status(), RefreshStatus::Successful);
    assert!(w.group.members().iter().all(|m| m.template == 1));
}

#[test]
fn warmup_holds_a_batch_until_the_clock_passes_it() {
    let mut w = World::new(3, 6);
    w.deploy(RefreshPreferences {
        instance_warmup_seconds: Some(30),
        ..RefreshPreferences::default()
    });
    w.step();
    w.step(); // first replacement launched
    w.step(); // healthy: warmup starts
    w.step();
    assert_eq!(w.group.refreshes()[0].percentage_complete, Some(0));
    assert_eq!(
        w.group.next_deadline(),
        Some(w.now() + time::Duration::seconds(30)),
        "the model says when it needs waking"
    );
    w.advance(30);
    w.step();
    assert_eq!(w.group.refreshes()[0].percentage_complete, Some(33));
}

#[test]
fn checkpoints_pause_and_a_partial_refresh_ends_at_its_last_one() {
    let mut w = World::new(4, 8);
    w.deploy(RefreshPreferences {
        min_healthy_percentage: 75,
        checkpoint_percentages: vec![50, 75],
        checkpoint_delay_seconds: Some(120),
        ..RefreshPreferences::default()
    });
    for _ in 0..4 {
        w.step();
    }
    let refresh = &w.group.refreshes()[0];
    let checkpoint = refresh.checkpoint.clone().expect("at a checkpoint");
    assert_eq!(checkpoint.percentage, 50);
    assert_eq!(
        checkpoint.resumes_at,
        Some(w.now() + time::Duration::seconds(120))
    );
    w.advance(120);
    for _ in 0..4 {
        w.step();
    }
    let refresh = &w.group.refreshes()[0];
    assert_eq!(refresh.status, RefreshStatus::Successful);
    assert_eq!(refresh.instances_to_update, Some(1), "75 % of 4: one left");
}

#[test]
fn refusals_are_one_error_each() {
    let mut w = World::new(3, 6);
    let now = w.now();
    assert!(matches!(
        w.group.cancel_refresh(now),
        Err(CloudError::NotFound { .. })
    ));
    assert!(matches!(
        w.group.rollback_refresh(now),
        Err(CloudError::NotFound { .. })
    ));
    w.deploy(RefreshPreferences::default());
    assert!(matches!(
        w.group.check_can_start_refresh(),
        Err(CloudError::Conflict { .. })
    ));
    w.group.cancel_refresh(now).expect("cancel");
    assert!(
        matches!(
            w.group.cancel_refresh(now),
            Err(CloudError::NotFound { .. })
        ),
        "a cancelling refresh is no longer in progress for another cancel"
    );
    assert!(
        matches!(
            w.group.rollback_refresh(now),
            Err(CloudError::Refused { .. })
        ),
        "a cancelling refresh cannot be rolled back (IrreversibleInstanceRefresh)"
    );
}

#[rstest]
#[case::suspended_replacement(false)]
#[case::replacement(true)]
fn an_unhealthy_instance_is_replaced_after_the_grace_period(#[case] replace: bool) {
    let mut w = World::new(3, 6);
    if !replace {
        w.group.suspend(ScalingProcess::ReplaceUnhealthy);
    }
    let victim = w.group.members()[0].id.clone();
    w.targets.insert(victim.clone(), TargetState::Unhealthy);
    w.step();
    assert_eq!(
        w.group.member(&victim).map(|m| m.health),
        Some(HealthStatus::Healthy),
        "within the grace period"
    );
    assert_eq!(
        w.group.next_deadline(),
        Some(OffsetDateTime::UNIX_EPOCH + GRACE)
    );
    w.advance(60);
    w.step();
    match replace {
        true => {
            assert!(w.group.member(&victim).is_none(), "terminated");
            assert_eq!(w.group.live_count(), 3, "and replaced");
            assert_eq!(w.counts(), [1, 1, 1]);
        }
        false => {
            assert_eq!(
                w.group.member(&victim).map(|m| (m.health, m.lifecycle)),
                Some((HealthStatus::Unhealthy, LifecycleState::InService))
            );
        }
    }
}

#[rstest]
#[case(1, 1)]
#[case(6, 1)]
#[case(10, 1)]
#[case(19, 1)]
#[case(20, 2)]
#[case(100, 10)]
fn rebalancing_may_exceed_max_by_ten_percent_or_one(#[case] max: u32, #[case] margin: u32) {
    assert_eq!(Group::rebalance_margin(max), margin);
}

/// 0/3/3 after an AZ's instances were replaced elsewhere, at desired = max = 6.
fn unbalanced() -> World {
    let mut w = World::new(6, 6);
    w.group.disable_az("az-a");
    w.group.suspend(ScalingProcess::AzRebalance);
    let now = w.now();
    let in_a: Vec<String> = w
        .group
        .members()
        .iter()
        .filter(|m| m.az == "az-a")
        .map(|m| m.id.clone())
        .collect();
    for id in in_a {
        w.group.gone(now, &id, Some("killed"));
    }
    w.settle();
    assert_eq!(w.counts(), [0, 3, 3]);
    w.group.enable_az("az-a");
    w
}

#[rstest]
#[case::suspended(Some(ScalingProcess::AzRebalance), [0, 3, 3], 6)]
#[case::launch_suspended(Some(ScalingProcess::Launch), [0, 3, 3], 6)]
#[case::rebalanced(None, [2, 2, 2], 7)]
#[case::terminate_suspended(Some(ScalingProcess::Terminate), [1, 3, 3], 7)]
fn rebalancing_after_an_az_returns(
    #[case] suspended: Option<ScalingProcess>,
    #[case] end: [usize; 3],
    #[case] most_at_once: usize,
) {
    let mut w = unbalanced();
    w.group.resume(ScalingProcess::AzRebalance);
    if let Some(process) = suspended {
        w.group.suspend(process);
    }
    let mut most = 0;
    let mut first_change = None;
    for _ in 0..20 {
        let actions = w.step();
        if first_change.is_none() && !actions.is_empty() {
            first_change = Some(actions[0].clone());
        }
        most = most.max(w.group.live_count());
    }
    assert_eq!(w.counts(), end);
    assert_eq!(most, most_at_once, "max 6 + a margin of one");
    if end != [0, 3, 3] {
        assert!(
            matches!(&first_change, Some(Action::Launch { az, .. }) if az == "az-a"),
            "launch in the short AZ first: {first_change:?}"
        );
    }
}

#[rstest]
#[case::healthy_after_threshold(2, 2, &[true, true], TargetState::Healthy, None)]
#[case::initial_before_threshold(3, 2, &[true, true], TargetState::Initial, Some(TargetReason::InitialHealthChecking))]
#[case::unhealthy_after_failures(2, 2, &[true, true, false, false], TargetState::Unhealthy, Some(TargetReason::Timeout))]
#[case::one_failure_is_not_enough(2, 2, &[true, true, false], TargetState::Healthy, None)]
#[case::recovers(2, 2, &[false, false, true, true], TargetState::Healthy, None)]
fn the_target_health_state_machine(
    #[case] healthy_threshold: u32,
    #[case] unhealthy_threshold: u32,
    #[case] checks: &[bool],
    #[case] state: TargetState,
    #[case] reason: Option<TargetReason>,
) {
    let check = HealthCheck {
        healthy_threshold,
        unhealthy_threshold,
        ..HealthCheck::default()
    };
    let mut health = TargetHealth::registered(true);
    assert_eq!(health.reason, Some(TargetReason::RegistrationInProgress));
    for pass in checks {
        health.record(
            &check,
            if *pass {
                CheckResult::Pass
            } else {
                CheckResult::Fail {
                    reason: TargetReason::Timeout,
                    detail: None,
                }
            },
        );
    }
    assert_eq!((health.state, health.reason), (state, reason));
}

#[test]
fn draining_ends_with_the_last_request_or_the_delay() {
    let start = OffsetDateTime::UNIX_EPOCH;
    let mut health = TargetHealth::registered(true);
    assert!(health.deregister(start, Duration::from_secs(30)));
    assert_eq!(health.state, TargetState::Draining);
    assert!(!health.drained(start, 1), "a request in flight");
    assert!(health.drained(start, 0));
    assert!(health.drained(start + time::Duration::seconds(30), 1));
    assert!(
        !TargetHealth::registered(false).is_checked(),
        "an AZ not served is unused"
    );
}

#[rstest]
#[case::healthy_only(&[TargetState::Healthy, TargetState::Unhealthy, TargetState::Draining], 1)]
#[case::fail_open(&[TargetState::Unhealthy, TargetState::Unhealthy, TargetState::Initial], 3)]
#[case::never_draining_or_unused(&[TargetState::Draining, TargetState::Unused], 0)]
fn routing_fails_open_when_no_target_is_healthy(
    #[case] states: &[TargetState],
    #[case] routable_count: usize,
) {
    assert_eq!(routable(states, |s| *s, |_| false).len(), routable_count);
    assert_eq!(
        failing_open(states.iter().copied()),
        routable_count > 0 && !states.contains(&TargetState::Healthy)
    );
}

/// A zonal shift takes the AZ's targets out of routing; the healthy-or-fail-open choice is made
/// among the other AZs' targets (AZ "a" shifted below).
#[rstest]
#[case::healthy_elsewhere(&[("a", TargetState::Healthy), ("b", TargetState::Healthy)], &["b"])]
#[case::fail_open_elsewhere(
    &[("a", TargetState::Healthy), ("b", TargetState::Unhealthy), ("c", TargetState::Initial)],
    &["b", "c"]
)]
#[case::nothing_elsewhere(&[("a", TargetState::Healthy), ("b", TargetState::Draining)], &[])]
fn a_shifted_az_gets_no_new_request(
    #[case] targets: &[(&str, TargetState)],
    #[case] expected: &[&str],
) {
    let chosen: Vec<&str> = routable(targets, |t| t.1, |t| t.0 == "a")
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(chosen, expected);
}

/// Terminating one instance (TerminateInstanceInAutoScalingGroup): replaced when desired
/// capacity is kept, gone for good when decremented, refused below min.
#[rstest]
#[case::replaced(3, 1, false, Ok(3))]
#[case::decremented(3, 1, true, Ok(2))]
#[case::refused_below_min(3, 3, true, Err("refused"))]
fn terminating_one_instance(
    #[case] desired: u32,
    #[case] min: u32,
    #[case] decrement: bool,
    #[case] expected: Result<usize, &str>,
) {
    let mut w = World::new(desired, 6);
    w.group
        .set_capacity(Capacity {
            desired,
            min,
            max: 6,
        })
        .expect("capacity");
    let victim = w.group.members()[0].id.clone();
    let now = w.now();
    match (
        w.group.terminate_instance(now, &victim, decrement),
        expected,
    ) {
        (Ok(()), Ok(live)) => {
            w.settle();
            assert!(w.group.member(&victim).is_none());
            assert_eq!(w.group.live_count(), live);
            assert_eq!(w.group.capacity().desired as usize, live);
        }
        (Err(CloudError::Refused { reason }), Err("refused")) => {
            assert!(reason.contains("min size"), "{reason}");
            assert_eq!(w.group.live_count(), 3, "nothing changed");
        }
        (other, _) => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        w.group.terminate_instance(now, "i-nope", false),
        Err(CloudError::NotFound { .. })
    ));
}

/// SetInstanceHealth: an instance set unhealthy within its grace period is replaced once
/// the grace period is over, not before.
#[test]
fn an_instance_set_unhealthy_is_replaced_after_its_grace_period() {
    let mut w = World::new(3, 6);
    let victim = w.group.members()[0].id.clone();
    let now = w.now();
    w.group.set_unhealthy(now, &victim).expect("set unhealthy");
    w.step();
    assert!(
        w.group.member(&victim).is_some_and(|m| m.is_live()),
        "within the grace period"
    );
    w.advance(60);
    w.step();
    assert!(w.group.member(&victim).is_none(), "replaced after it");
    assert_eq!(w.group.live_count(), 3);
}

/// EnterStandby: the instance leaves the target group and capacity; keeping desired
/// capacity the group launches a replacement, decrementing it the group shrinks (refused
/// below min). ExitStandby: desired rises by one and the instance serves again, refused
/// above max.
#[rstest]
#[case::replaced(3, 1, false, Ok((3, 3)))]
#[case::decremented(3, 1, true, Ok((2, 2)))]
#[case::refused_below_min(3, 3, true, Err("min size"))]
fn standby_and_back(
    #[case] desired: u32,
    #[case] min: u32,
    #[case] decrement: bool,
    #[case] expected: Result<(usize, u32), &str>,
) {
    let mut w = World::new(desired, 6);
    w.group
        .set_capacity(Capacity {
            desired,
            min,
            max: 6,
        })
        .expect("capacity");
    let id = w.group.members()[0].id.clone();
    let now = w.now();
    match (w.group.enter_standby(now, &id, decrement), expected) {
        (Ok(()), Ok((live, desired_after))) => {
            w.settle();
            let member = w.group.member(&id).expect("still in the group");
            assert_eq!(member.lifecycle, LifecycleState::Standby);
            assert!(!w.targets.contains_key(&id), "deregistered");
            assert_eq!(w.group.live_count(), live, "standby does not count");
            assert_eq!(w.group.capacity().desired, desired_after);
            // Its target failing does not make it unhealthy while in standby.
            w.advance(120);
            w.settle();
            assert_eq!(
                w.group.member(&id).map(|m| m.health),
                Some(HealthStatus::Healthy)
            );

            let now = w.now();
            w.group.exit_standby(now, &id).expect("exit standby");
            assert_eq!(w.group.capacity().desired, desired_after + 1);
            w.settle();
            assert_eq!(
                w.group.member(&id).map(|m| m.lifecycle),
                Some(LifecycleState::InService)
            );
            assert_eq!(w.targets.get(&id), Some(&TargetState::Healthy), "serving");
            assert_eq!(w.group.live_count(), live + 1);
        }
        (Err(CloudError::Refused { reason }), Err(part)) => {
            assert!(reason.contains(part), "{reason}");
            assert_eq!(
                w.group.member(&id).map(|m| m.lifecycle),
                Some(LifecycleState::InService),
                "nothing changed"
            );
            assert_eq!(w.group.capacity().desired, desired);
        }
        (other, _) => panic!("unexpected {other:?}"),
    }
}

/// ExitStandby is refused when desired capacity would exceed max, and only standby
/// instances can exit; only InService ones can enter.
#[test]
fn exit_standby_is_refused_above_max() {
    let mut w = World::new(3, 3);
    let id = w.group.members()[0].id.clone();
    let now = w.now();
    assert!(matches!(
        w.group.exit_standby(now, &id),
        Err(CloudError::Refused { .. })
    ));
    w.group.enter_standby(now, &id, false).expect("enter");
    assert!(matches!(
        w.group.enter_standby(now, &id, false),
        Err(CloudError::Refused { .. })
    ));
    w.settle();
    assert_eq!(w.group.live_count(), 3, "replacement launched");
    let now = w.now();
    match w.group.exit_standby(now, &id) {
        Err(CloudError::Refused { reason }) => {
            assert!(reason.contains("max size 3"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        w.group.member(&id).map(|m| m.lifecycle),
        Some(LifecycleState::Standby)
    );
    assert!(matches!(
        w.group.enter_standby(now, "i-nope", true),
        Err(CloudError::NotFound { .. })
    ));
}

/// What a refresh does with an instance in Standby, by StandbyInstances: `Wait` (AWS's
/// default) replaces it once it returns to service, or fails after an hour; `Ignore` leaves it
/// on the old configuration; `Terminate` terminates it when the refresh starts.
#[rstest]
#[case::wait_and_return(StandbyInstances::Wait, Some(0), RefreshStatus::Successful)]
#[case::wait_too_long(StandbyInstances::Wait, None, RefreshStatus::Failed)]
#[case::ignore(StandbyInstances::Ignore, None, RefreshStatus::Successful)]
#[case::terminate(StandbyInstances::Terminate, None, RefreshStatus::Successful)]
fn a_refresh_treats_standby_instances_as_its_preference_says(
    #[case] standby_instances: StandbyInstances,
    #[case] returns_after_minutes: Option<i64>,
    #[case] expected: RefreshStatus,
) {
    let mut w = World::new(3, 6);
    let id = w.group.members()[0].id.clone();
    let now = w.now();
    w.group.enter_standby(now, &id, true).expect("standby");
    w.settle();
    w.deploy(RefreshPreferences {
        standby_instances,
        ..RefreshPreferences::default()
    });
    w.settle();
    let lifecycle = |w: &World| w.group.member(&id).map(|m| m.lifecycle);
    match standby_instances {
        StandbyInstances::Wait => {
            // The two in service are replaced; the refresh then waits for the third.
            assert_eq!(w.status(), RefreshStatus::InProgress);
            let reason = w.group.refreshes()[0]
                .status_reason
                .clone()
                .unwrap_or_default();
            assert!(reason.contains("Standby"), "{reason}");
            match returns_after_minutes {
                Some(minutes) => {
                    w.advance(minutes * 60);
                    let now = w.now();
                    w.group.exit_standby(now, &id).expect("exit standby");
                }
                None => {
                    w.advance(3599);
                    w.settle();
                    assert_eq!(w.status(), RefreshStatus::InProgress, "an hour is not up");
                    assert!(
                        w.group
                            .next_deadline()
                            .is_some_and(|at| at <= w.now() + time::Duration::seconds(1)),
                        "the model wakes when the wait runs out"
                    );
                    w.advance(1);
                }
            }
            w.settle();
        }
        StandbyInstances::Ignore => assert_eq!(lifecycle(&w), Some(LifecycleState::Standby)),
        StandbyInstances::Terminate => assert!(
            w.group.member(&id).is_none_or(|m| !m.is_live()),
            "terminated when the refresh started"
        ),
    }
    assert_eq!(w.status(), expected, "{:?}", w.group.refreshes()[0]);
    let old: Vec<_> = w
        .group
        .members()
        .iter()
        .filter(|m| m.is_live() && m.template == 1)
        .map(|m| (m.id.clone(), m.lifecycle))
        .collect();
    match (standby_instances, expected) {
        (StandbyInstances::Wait, RefreshStatus::Failed) => {
            assert_eq!(old, vec![(id.clone(), LifecycleState::Standby)]);
            let reason = w.group.refreshes()[0]
                .status_reason
                .clone()
                .unwrap_or_default();
            assert!(reason.contains("did not return to service"), "{reason}");
        }
        (StandbyInstances::Ignore, _) => {
            assert_eq!(old, vec![(id.clone(), LifecycleState::Standby)]);
        }
        _ => assert!(old.is_empty(), "every live instance replaced: {old:?}"),
    }
}

/// The spec's durations on the AWS clock: a 120 s grace period, 30 s deregistration delay and
/// a 10 s × 2 health check.
fn aws_timings() -> Timings {
    Timings {
        health_check: HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            ..HealthCheck::default()
        },
        deregistration_delay: Duration::from_secs(30),
        grace_period: Duration::from_secs(120),
        ..Timings::immediate()
    }
}

#[rstest]
#[case::aws(TimeScale::aws())]
#[case::fast_default(TimeScale::fast_for_interval(Duration::from_secs(10)))]
#[case::fast_stated(TimeScale::fast(4.0))]
fn the_model_keeps_the_specs_times_on_either_clock(#[case] scale: TimeScale) {
    let spec = aws_timings();
    let mut w = World::with_timings(3, 6, spec.scaled(&scale));
    let victim = w.group.members()[0].id.clone();
    let launched = w.group.members()[0].launched_at;
    w.targets.insert(victim.clone(), TargetState::Unhealthy);
    w.step();
    // The replacement is due at the grace period on the model's clock: 120 s on AWS's,
    // 120 s / factor here.
    let due = w
        .group
        .next_deadline()
        .expect("the grace period is a deadline");
    let wall = Duration::try_from(due - launched).expect("a positive duration");
    assert_eq!(wall, scale.to_wall(spec.grace_period));
    assert_eq!(scale.to_model(wall), spec.grace_period);
    // Just before it the instance stays; at it, it is replaced.
    w.clock
        .advance(time::Duration::try_from(wall).expect("fits") - time::Duration::milliseconds(1));
    w.step();
    assert!(w.group.member(&victim).is_some(), "within the grace period");
    w.clock.advance(time::Duration::milliseconds(1));
    w.step();
    assert!(
        w.group.member(&victim).is_none(),
        "replaced at the grace period"
    );
    // The model's own event times say what AWS would take.
    let terminated = w
        .group
        .events()
        .find(|e| e.event.message.contains(&victim) && e.event.message.starts_with("Terminating"))
        .map(|e| e.event.at)
        .expect("a termination event");
    let on_aws = scale.to_model(Duration::try_from(terminated - launched).expect("positive"));
    assert_eq!(on_aws, Duration::from_secs(120));
    // Draining: the deregistration delay on the same clock.
    let mut health = TargetHealth::registered(true);
    let now = w.now();
    health.deregister(now, w.group.timings().deregistration_delay);
    let until = health.drain_deadline().expect("draining");
    assert_eq!(
        scale.to_model(Duration::try_from(until - now).expect("positive")),
        Duration::from_secs(30)
    );
}

fn shift_request(az: &str, minutes: u64) -> ShiftRequest {
    ShiftRequest::new(az, Duration::from_secs(minutes * 60), "test").expect("a valid request")
}

/// During a zonal shift the group treats the AZ as impaired: a replacement for an instance
/// lost there launches in another AZ, the instances kept there stay, rebalancing waits; once
/// the shift expires (by the model's clock, with no other call) it rebalances back.
#[test]
fn a_shifted_az_gets_no_launch_until_the_shift_expires() {
    let mut world = World::new(6, 12);
    assert_eq!(world.counts(), vec![2, 2, 2]);
    // Past the first instances' grace periods, so the shift's expiry is the next deadline.
    world.advance(GRACE.as_secs() as i64);
    world.settle();
    let now = world.now();
    let shift = world
        .group
        .start_zonal_shift(now, &shift_request("az-a", 30), vec!["asg".into()])
        .expect("start");
    assert_eq!(shift.expires_at, now + time::Duration::minutes(30));
    assert_eq!(
        world.group.shifted_azs(),
        BTreeSet::from(["az-a".to_owned()])
    );
    assert_eq!(
        world.group.next_deadline(),
        Some(shift.expires_at),
        "the group is stepped again at the expiry"
    );

    let lost = world
        .group
        .members()
        .iter()
        .find(|m| m.az == "az-a")
        .map(|m| m.id.clone())
        .expect("an instance in az-a");
    world.group.gone(now, &lost, Some("killed"));
    world.settle();
    let counts = world.counts();
    assert_eq!(
        counts[0], 1,
        "nothing launches into the shifted AZ: {counts:?}"
    );
    assert_eq!(
        counts.iter().sum::<usize>(),
        6,
        "capacity is made up elsewhere"
    );

    world.advance(30 * 60 - 1);
    world.settle();
    assert_eq!(world.group.zonal_shifts().len(), 1, "not expired yet");
    world.advance(1);
    world.settle();
    assert!(world.group.zonal_shifts().is_empty(), "the shift expired");
    assert!(world.group.events().any(|e| {
        e.event
            .message
            .contains("Zonal shift away from az-a expired")
    }));
    for _ in 0..10 {
        world.settle();
    }
    assert_eq!(
        world.counts(),
        vec![2, 2, 2],
        "rebalanced once the shift ended"
    );
}

/// ARC's rules: one shift at a time, an AZ the group has, cancel ends it (NotFound when none).
#[test]
fn one_shift_at_a_time_and_cancel_ends_it() {
    let mut world = World::new(3, 6);
    let now = world.now();
    assert!(
        world
            .group
            .start_zonal_shift(now, &shift_request("az-x", 5), vec![])
            .is_err(),
        "an AZ the group does not have"
    );
    world
        .group
        .start_zonal_shift(now, &shift_request("az-a", 5), vec![])
        .expect("start");
    let again = world
        .group
        .start_zonal_shift(now, &shift_request("az-b", 5), vec![]);
    assert!(
        matches!(again, Err(CloudError::Conflict { .. })),
        "{again:?}"
    );
    assert!(matches!(
        world.group.cancel_zonal_shift(now, Some("az-b")),
        Err(CloudError::NotFound { .. })
    ));
    let cancelled = world.group.cancel_zonal_shift(now, None).expect("cancel");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].az, "az-a");
    assert!(world.group.shifted_azs().is_empty());
    assert!(matches!(
        world.group.cancel_zonal_shift(now, None),
        Err(CloudError::NotFound { .. })
    ));
}
