//! The phases of each scale-out, from what the load saw of the stack second by second.
//!
//! Every second of a load the engine reads one snapshot and keeps an [`Observation`] of it:
//! desired/min/max, each instance's lifecycle and whether its target is healthy, healthy
//! capacity per AZ, and — where the backend reports it — the scaling policy's state. From the
//! sequence of observations [`scale_outs`] finds each scale-out and when each of its phases
//! was first seen:
//!
//! 1. **load start** — second 0;
//! 2. **policy decision** — the scaling policy's decision (its alarm), as the backend reports
//!    it in the snapshot's scaling section;
//! 3. **desired change** — desired capacity rises;
//! 4. **launched** — every instance the scale-out added exists (any lifecycle);
//! 5. **InService** — every one of them is `InService`;
//! 6. **healthy in the target group** — every one of them has a healthy target;
//! 7. **metric back under target** — the policy's metric is at or under its target again.
//!
//! A phase the snapshots never showed stays `None` and the report says so; a phase is never
//! guessed. The times are seconds of the load as observed (one snapshot a second, so each is
//! known to within the sampling second).

use std::collections::{BTreeMap, BTreeSet};

use provision::port::{
    AlarmSide, AlarmState, LifecycleState, ScalingDirection, Snapshot, TargetState,
};
use serde::{Deserialize, Serialize};

/// What a scaling policy looked like at one second (from the snapshot's scaling section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyObservation {
    /// The policy's metric, e.g. `requests/target`.
    pub metric: String,
    pub target: f64,
    /// The metric's value over its last complete period, when known.
    pub value: Option<f64>,
    /// Whether its scale-out (high) alarm is in ALARM.
    #[serde(default)]
    pub alarm_high: bool,
}

/// The group's newest scaling decision at one second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionObservation {
    /// When the backend says it was made (on the clock of its model).
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub scale_out: bool,
    pub from: u32,
    pub to: u32,
    /// Why, e.g. "requests/target 84 > 60 for 3 periods → desired 3 → 5".
    pub reason: String,
}

/// One instance at one second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceObservation {
    pub id: String,
    pub az: String,
    pub lifecycle: LifecycleState,
    /// Whether the load balancer reports its target healthy.
    pub healthy_target: bool,
}

/// The stack at one second of a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub second: u64,
    pub desired: Option<u32>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    /// Healthy targets per AZ.
    pub healthy: BTreeMap<String, u32>,
    pub instances: Vec<InstanceObservation>,
    /// The scaling policies, when the backend reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyObservation>,
    /// The newest scaling decision, when the backend reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionObservation>,
}

impl Observation {
    /// What `snapshot` shows, at `second` of the load.
    pub fn of(snapshot: &Snapshot, second: u64) -> Self {
        let mut instances = Vec::new();
        let mut healthy = BTreeMap::new();
        for az in &snapshot.azs {
            healthy.insert(
                az.az.clone(),
                u32::try_from(az.healthy_capacity()).unwrap_or(u32::MAX),
            );
            for i in &az.instances {
                instances.push(InstanceObservation {
                    id: i.id.clone(),
                    az: az.az.clone(),
                    lifecycle: i.lifecycle,
                    healthy_target: az
                        .targets
                        .iter()
                        .any(|t| t.id == i.id && t.state == TargetState::Healthy),
                });
            }
        }
        Observation {
            second,
            desired: snapshot.capacity.map(|c| c.desired),
            min: snapshot.capacity.map(|c| c.min),
            max: snapshot.capacity.map(|c| c.max),
            healthy,
            instances,
            policies: policies_of(snapshot),
            decision: snapshot
                .scaling
                .as_ref()
                .and_then(|s| s.last_decision())
                .map(|d| DecisionObservation {
                    at: d.at,
                    scale_out: d.direction == ScalingDirection::Out,
                    from: d.from,
                    to: d.to,
                    reason: d.reason.clone(),
                }),
        }
    }

    pub fn total_healthy(&self) -> u32 {
        self.healthy.values().sum()
    }

    /// Instances `InService`, per AZ.
    pub fn in_service(&self) -> BTreeMap<String, u32> {
        let mut per_az: BTreeMap<String, u32> =
            self.healthy.keys().map(|az| (az.clone(), 0)).collect();
        for i in &self.instances {
            if i.lifecycle == LifecycleState::InService {
                *per_az.entry(i.az.clone()).or_default() += 1;
            }
        }
        per_az
    }

    /// Whether any policy's metric is above its target.
    fn over_target(&self) -> Option<bool> {
        let values: Vec<bool> = self
            .policies
            .iter()
            .filter_map(|p| p.value.map(|v| v > p.target))
            .collect();
        (!values.is_empty()).then(|| values.iter().any(|&over| over))
    }
}

/// The target tracking policies a snapshot's scaling section reports (none without one).
fn policies_of(snapshot: &Snapshot) -> Vec<PolicyObservation> {
    let Some(scaling) = &snapshot.scaling else {
        return Vec::new();
    };
    scaling
        .policies
        .iter()
        .map(|view| PolicyObservation {
            metric: view.policy.metric.label().to_owned(),
            target: view.policy.target,
            value: view.current,
            alarm_high: view
                .alarms
                .iter()
                .any(|a| a.side == AlarmSide::Above && a.state == AlarmState::Alarm),
        })
        .collect()
}

/// The names of the phases, in order.
pub const PHASES: [&str; 7] = [
    "load start",
    "policy decision",
    "desired change",
    "launched",
    "InService",
    "healthy in target group",
    "metric back under target",
];

/// One scale-out: desired went from `from` to `to`; each phase's second (`None`: not seen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleOut {
    pub from: u32,
    pub to: u32,
    /// The instances it added.
    pub instances: Vec<String>,
    /// The policy's reason, when the backend gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds of the load, in [`PHASES`] order.
    pub phases: Vec<Option<u64>>,
}

impl ScaleOut {
    /// The phases that were observed, in order, with their seconds.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, Option<u64>)> + '_ {
        PHASES.iter().copied().zip(self.phases.iter().copied())
    }

    /// Whether every phase was observed and none came before the one it follows.
    pub fn complete_and_ordered(&self) -> bool {
        self.phases.iter().all(Option::is_some)
            && self
                .phases
                .windows(2)
                .all(|w| matches!(w, [Some(a), Some(b)] if a <= b))
    }
}

/// One scale-in: desired went from `from` down to `to` at `second`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleIn {
    pub second: u64,
    pub from: u32,
    pub to: u32,
}

/// Finds each scale-out (a rise of desired capacity) and each scale-in in `observations`.
pub fn scale_outs(observations: &[Observation]) -> (Vec<ScaleOut>, Vec<ScaleIn>) {
    let mut outs: Vec<ScaleOut> = Vec::new();
    let mut ins = Vec::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut previous_desired: Option<u32> = None;
    let mut previous_decision: Option<DecisionObservation> = None;
    let mut previous_high = false;
    let mut pending_decision: Option<u64> = None;
    let mut pending_reason: Option<String> = None;
    for (index, obs) in observations.iter().enumerate() {
        // The policy decides when its high alarm goes into ALARM (or, where a backend shows
        // no alarm, when a new scale-out decision appears); what was in place when the load
        // started is not this load's. It belongs to the next rise of desired capacity.
        let high = obs.policies.iter().any(|p| p.alarm_high);
        if index > 0 && high && !previous_high {
            pending_decision.get_or_insert(obs.second);
        }
        previous_high = high;
        if let Some(decision) = &obs.decision
            && previous_decision.as_ref() != Some(decision)
        {
            if index > 0 && decision.scale_out {
                pending_decision.get_or_insert(obs.second);
                pending_reason = Some(decision.reason.clone());
            }
            previous_decision = Some(decision.clone());
        }
        match (previous_desired, obs.desired) {
            (Some(before), Some(now)) if now > before => {
                let mut phases = vec![None; PHASES.len()];
                phases[0] = Some(0);
                phases[1] = pending_decision.take();
                phases[2] = Some(obs.second);
                outs.push(ScaleOut {
                    from: before,
                    to: now,
                    instances: Vec::new(),
                    reason: pending_reason.take(),
                    phases,
                });
            }
            (Some(before), Some(now)) if now < before => ins.push(ScaleIn {
                second: obs.second,
                from: before,
                to: now,
            }),
            _ => {}
        }
        if obs.desired.is_some() {
            previous_desired = obs.desired;
        }
        // Instances not seen before belong to the latest scale-out still short of them.
        for i in &obs.instances {
            if known.insert(i.id.clone())
                && let Some(out) = outs
                    .iter_mut()
                    .rev()
                    .find(|o| o.instances.len() < (o.to - o.from) as usize)
            {
                out.instances.push(i.id.clone());
            }
        }
        for out in &mut outs {
            let wanted = (out.to - out.from) as usize;
            let mine: Vec<&InstanceObservation> = obs
                .instances
                .iter()
                .filter(|i| out.instances.contains(&i.id))
                .collect();
            let all = |f: &dyn Fn(&InstanceObservation) -> bool| {
                out.instances.len() == wanted && mine.len() == wanted && mine.iter().all(|i| f(i))
            };
            if out.phases[3].is_none() && all(&|_| true) {
                out.phases[3] = Some(obs.second);
            }
            if out.phases[3].is_some()
                && out.phases[4].is_none()
                && all(&|i| i.lifecycle == LifecycleState::InService)
            {
                out.phases[4] = Some(obs.second);
            }
            if out.phases[4].is_some() && out.phases[5].is_none() && all(&|i| i.healthy_target) {
                out.phases[5] = Some(obs.second);
            }
            if out.phases[5].is_some()
                && out.phases[6].is_none()
                && obs.over_target() == Some(false)
            {
                out.phases[6] = Some(obs.second);
            }
        }
    }
    (outs, ins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, lifecycle: LifecycleState, healthy: bool) -> InstanceObservation {
        InstanceObservation {
            id: id.into(),
            az: if id.ends_with('a') { "az-a" } else { "az-b" }.into(),
            lifecycle,
            healthy_target: healthy,
        }
    }

    fn obs(
        second: u64,
        desired: u32,
        instances: Vec<InstanceObservation>,
        value: Option<f64>,
        decision: Option<(bool, &str)>,
    ) -> Observation {
        Observation {
            second,
            desired: Some(desired),
            min: Some(2),
            max: Some(6),
            healthy: BTreeMap::from([
                (
                    "az-a".to_string(),
                    instances
                        .iter()
                        .filter(|i| i.az == "az-a" && i.healthy_target)
                        .count() as u32,
                ),
                (
                    "az-b".to_string(),
                    instances
                        .iter()
                        .filter(|i| i.az == "az-b" && i.healthy_target)
                        .count() as u32,
                ),
            ]),
            instances,
            policies: value
                .map(|v| PolicyObservation {
                    metric: "requests/target".into(),
                    target: 60.0,
                    value: Some(v),
                    alarm_high: false,
                })
                .into_iter()
                .collect(),
            decision: decision.map(|(scale_out, reason)| DecisionObservation {
                at: time::OffsetDateTime::UNIX_EPOCH,
                scale_out,
                from: 0,
                to: 0,
                reason: reason.into(),
            }),
        }
    }

    use LifecycleState::{InService, Pending, Terminating};

    fn base() -> Vec<InstanceObservation> {
        vec![inst("i-1a", InService, true), inst("i-2b", InService, true)]
    }

    fn with(extra: &[InstanceObservation]) -> Vec<InstanceObservation> {
        let mut v = base();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn every_phase_of_a_scale_out_in_order_then_a_scale_in() {
        let old = Some((false, "requests/target 30 < 54 → desired 4 → 2"));
        let new = Some((
            true,
            "requests/target 90 > 60 for 3 periods → desired 2 → 4",
        ));
        let observations = vec![
            obs(0, 2, base(), Some(20.0), old),
            obs(1, 2, base(), Some(90.0), old),
            obs(4, 2, base(), Some(90.0), new),
            obs(5, 4, base(), Some(90.0), new),
            obs(6, 4, with(&[inst("i-3a", Pending, false)]), Some(90.0), new),
            obs(
                7,
                4,
                with(&[inst("i-3a", Pending, false), inst("i-4b", Pending, false)]),
                Some(90.0),
                new,
            ),
            obs(
                9,
                4,
                with(&[
                    inst("i-3a", InService, false),
                    inst("i-4b", InService, false),
                ]),
                Some(80.0),
                new,
            ),
            obs(
                11,
                4,
                with(&[inst("i-3a", InService, true), inst("i-4b", InService, true)]),
                Some(70.0),
                new,
            ),
            obs(
                12,
                4,
                with(&[inst("i-3a", InService, true), inst("i-4b", InService, true)]),
                Some(45.0),
                new,
            ),
            obs(
                30,
                2,
                with(&[
                    inst("i-3a", Terminating, false),
                    inst("i-4b", InService, true),
                ]),
                Some(5.0),
                new,
            ),
        ];
        let (outs, ins) = scale_outs(&observations);
        assert_eq!(outs.len(), 1, "{outs:?}");
        let out = &outs[0];
        assert_eq!((out.from, out.to), (2, 4));
        assert_eq!(out.instances, ["i-3a", "i-4b"]);
        assert_eq!(
            out.reason.as_deref(),
            Some("requests/target 90 > 60 for 3 periods → desired 2 → 4")
        );
        assert_eq!(
            out.phases,
            [
                Some(0),
                Some(4),
                Some(5),
                Some(7),
                Some(9),
                Some(11),
                Some(12)
            ]
        );
        assert!(out.complete_and_ordered());
        assert_eq!(
            ins,
            [ScaleIn {
                second: 30,
                from: 4,
                to: 2
            }]
        );
    }

    #[test]
    fn without_a_scaling_section_the_decision_and_metric_stay_unobserved() {
        let observations = vec![
            obs(0, 2, base(), None, None),
            obs(3, 3, base(), None, None),
            obs(4, 3, with(&[inst("i-3a", InService, true)]), None, None),
        ];
        let (outs, _) = scale_outs(&observations);
        assert_eq!(
            outs[0].phases,
            [Some(0), None, Some(3), Some(4), Some(4), Some(4), None]
        );
        assert!(!outs[0].complete_and_ordered());
    }

    #[test]
    fn the_high_alarm_going_off_is_the_decision_when_it_comes_first() {
        let alarm = |mut o: Observation, on: bool| {
            o.policies[0].alarm_high = on;
            o
        };
        let observations = vec![
            alarm(obs(0, 2, base(), Some(20.0), None), false),
            alarm(obs(3, 2, base(), Some(90.0), None), true),
            alarm(obs(4, 3, base(), Some(90.0), Some((true, "out"))), true),
        ];
        let (outs, _) = scale_outs(&observations);
        assert_eq!(outs[0].phases[1], Some(3));
        assert_eq!(outs[0].phases[2], Some(4));
    }

    #[test]
    fn instances_present_at_the_start_belong_to_no_scale_out() {
        let observations = vec![
            obs(0, 3, with(&[inst("i-3a", Pending, false)]), None, None),
            obs(1, 3, with(&[inst("i-3a", InService, true)]), None, None),
        ];
        let (outs, ins) = scale_outs(&observations);
        assert!(outs.is_empty() && ins.is_empty());
    }
}
