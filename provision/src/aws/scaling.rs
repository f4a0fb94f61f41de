//! The scaling section of an AWS snapshot: the group's target tracking policies
//! (DescribePolicies), the state and thresholds of the alarms AWS created for them (one
//! DescribeAlarms naming every alarm of every policy, made only when there is one), and the
//! decisions, read from the scaling activities the tick already has. Two calls at most per
//! tick, whatever the fleet size.
//!
//! The alarms are read, not assumed: their thresholds and datapoint counts are what AWS set
//! (the group model's [`TRACKING`](crate::model::TRACKING) is only its assumption of them).

use aws_sdk_autoscaling::types::{Activity, ScalingPolicy as AwsPolicy};
use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm, StateValue};

use super::OpsClients;
use super::error::{from_sdk, to_time};
use crate::port::{
    AlarmSide, AlarmState, CloudError, PolicyAlarm, PolicyView, ScalingDecision, ScalingDirection,
    ScalingMetric, ScalingPolicy,
};

/// The group's target tracking policies with their alarms.
pub(crate) async fn read_policies(
    ops: &OpsClients,
    asg: &str,
) -> Result<Vec<PolicyView>, CloudError> {
    let answer = ops
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(asg)
        .policy_types("TargetTrackingScaling")
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "DescribePolicies", e))?;
    let policies: Vec<&AwsPolicy> = answer.scaling_policies().iter().collect();
    let names: Vec<String> = policies
        .iter()
        .flat_map(|p| p.alarms())
        .filter_map(|a| a.alarm_name().map(str::to_owned))
        .collect();
    let alarms: Vec<MetricAlarm> = if names.is_empty() {
        Vec::new()
    } else {
        ops.cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names))
            .send()
            .await
            .map_err(|e| from_sdk("cloudwatch", "DescribeAlarms", e))?
            .metric_alarms()
            .to_vec()
    };
    Ok(policies
        .into_iter()
        .filter_map(|p| policy_view(p, &alarms))
        .collect())
}

fn policy_view(policy: &AwsPolicy, alarms: &[MetricAlarm]) -> Option<PolicyView> {
    let config = policy.target_tracking_configuration()?;
    let metric = config
        .predefined_metric_specification()
        .and_then(|m| m.predefined_metric_type())
        .and_then(|m| ScalingMetric::from_aws_name(m.as_str()))?;
    let target = config.target_value()?;
    let mut views = Vec::new();
    let mut current = None;
    for name in policy.alarms().iter().filter_map(|a| a.alarm_name()) {
        let Some(alarm) = alarms.iter().find(|a| a.alarm_name() == Some(name)) else {
            continue;
        };
        let side = match alarm.comparison_operator() {
            Some(ComparisonOperator::LessThanThreshold)
            | Some(ComparisonOperator::LessThanOrEqualToThreshold) => AlarmSide::Below,
            _ => AlarmSide::Above,
        };
        if current.is_none() {
            current = alarm.state_reason_data().and_then(last_datapoint);
        }
        views.push(PolicyAlarm {
            name: name.to_owned(),
            state: match alarm.state_value() {
                Some(StateValue::Alarm) => AlarmState::Alarm,
                Some(StateValue::Ok) => AlarmState::Ok,
                _ => AlarmState::InsufficientData,
            },
            side,
            threshold: alarm.threshold().unwrap_or(target),
            datapoints: alarm
                .datapoints_to_alarm()
                .or(alarm.evaluation_periods())
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            period_seconds: alarm
                .period()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        });
    }
    Some(PolicyView {
        policy: ScalingPolicy {
            name: policy.policy_name().unwrap_or_default().to_owned(),
            metric,
            target,
            scale_in: !config.disable_scale_in().unwrap_or(false),
        },
        current,
        alarms: views,
    })
}

/// The newest of an alarm's `recentDatapoints` (its `StateReasonData`, a JSON document).
fn last_datapoint(data: &str) -> Option<f64> {
    let data: serde_json::Value = serde_json::from_str(data).ok()?;
    data.get("recentDatapoints")?.as_array()?.last()?.as_f64()
}

/// Decisions from scaling activities, newest first: the activities whose cause says a policy
/// changed desired capacity ("… triggered policy P changing the desired capacity from 3 to
/// 5."). A scale-out that launched several instances is one decision.
pub(crate) fn decisions_of(activities: &[Activity]) -> Vec<ScalingDecision> {
    let mut decisions: Vec<ScalingDecision> = Vec::new();
    for activity in activities {
        let (Some(cause), Some(start)) = (activity.cause(), activity.start_time()) else {
            continue;
        };
        let Some(decision) = decision_of(cause, to_time(start)) else {
            continue;
        };
        if !decisions
            .iter()
            .any(|d| d.policy == decision.policy && d.from == decision.from && d.to == decision.to)
        {
            decisions.push(decision);
        }
    }
    decisions.sort_by_key(|d| std::cmp::Reverse(d.at));
    decisions
}

fn decision_of(cause: &str, at: time::OffsetDateTime) -> Option<ScalingDecision> {
    let (before, after) = cause.split_once(" triggered policy ")?;
    let (policy, rest) = after.split_once(" changing the desired capacity from ")?;
    let (from, rest) = rest.split_once(" to ")?;
    let to: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let (from, to) = (from.trim().parse::<u32>().ok()?, to.parse::<u32>().ok()?);
    let alarm = before
        .split_once("alarm ")
        .map(|(_, alarm)| alarm.trim())
        .unwrap_or_default();
    Some(ScalingDecision {
        at,
        policy: policy.trim().to_owned(),
        direction: if to > from {
            ScalingDirection::Out
        } else {
            ScalingDirection::In
        },
        from,
        to,
        reason: format!("alarm {alarm} → desired {from} → {to}"),
    })
}

/// Instances a policy's scale-out launched, from the activities ("Launching a new EC2
/// instance: i-…" with a policy's cause).
pub(crate) fn scale_out_launches(activities: &[Activity]) -> Vec<String> {
    activities
        .iter()
        .filter(|a| a.cause().is_some_and(|c| c.contains(" triggered policy ")))
        .filter_map(|a| {
            a.description()?
                .strip_prefix("Launching a new EC2 instance: ")
                .map(|id| id.trim().to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_cause_becomes_a_decision() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let cause = "At 2026-12-06T10:00:00Z a monitor alarm \
                     TargetTracking-web-AlarmHigh-1a2b in state ALARM triggered policy \
                     web-requests changing the desired capacity from 3 to 5.  At \
                     2026-12-06T10:00:05Z an instance was started in response to a difference \
                     between desired and actual capacity, increasing the capacity from 3 to 5.";
        let decision = decision_of(cause, at).expect("a decision");
        assert_eq!(decision.policy, "web-requests");
        assert_eq!((decision.from, decision.to), (3, 5));
        assert_eq!(decision.direction, ScalingDirection::Out);
        assert_eq!(
            decision.reason,
            "alarm TargetTracking-web-AlarmHigh-1a2b in state ALARM → desired 3 → 5"
        );
        assert!(
            decision_of(
                "At 2026-12-06T10:00:00Z a user request update of AutoScalingGroup \
                 constraints to min: 3, max: 9, desired: 4 changing the desired capacity \
                 from 3 to 4.",
                at
            )
            .is_none(),
            "a user's change is not a policy's"
        );
    }

    #[test]
    fn the_newest_datapoint_is_the_current_value() {
        assert_eq!(
            last_datapoint(r#"{"version":"1.0","recentDatapoints":[70.5,84.0],"threshold":60}"#),
            Some(84.0)
        );
        assert_eq!(last_datapoint("not json"), None);
    }
}
