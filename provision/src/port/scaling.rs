//! Dynamic scaling as a snapshot shows it: the group's target tracking policies, the alarms
//! that invoke them, and the decisions they made. Every backend fills the same
//! [`ScalingView`]: the sandbox and the memory backend from the group model
//! ([`crate::model::scaling`]), AWS from DescribePolicies and DescribeAlarms.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::names::aws_names;

/// What a target tracking policy tracks: AWS's predefined metrics for an Auto Scaling group
/// (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    /// `ASGAverageCPUUtilization`: the average CPU of the group's instances, in percent.
    CpuPercent,
    /// `ALBRequestCountPerTarget`: requests per target per minute.
    RequestsPerTarget,
}

impl ScalingMetric {
    /// AWS's `PredefinedMetricType`.
    pub fn aws_name(self) -> &'static str {
        match self {
            Self::CpuPercent => "ASGAverageCPUUtilization",
            Self::RequestsPerTarget => "ALBRequestCountPerTarget",
        }
    }

    /// Reads AWS's `PredefinedMetricType`.
    pub fn from_aws_name(name: &str) -> Option<ScalingMetric> {
        match name {
            "ASGAverageCPUUtilization" => Some(Self::CpuPercent),
            "ALBRequestCountPerTarget" => Some(Self::RequestsPerTarget),
            _ => None,
        }
    }

    /// A short label for reasons and the console: `cpu`, `requests/target`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CpuPercent => "cpu %",
            Self::RequestsPerTarget => "requests/target",
        }
    }
}

/// One target tracking policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    /// The policy's name.
    pub name: String,
    pub metric: ScalingMetric,
    /// The value the policy keeps the metric at.
    pub target: f64,
    /// Whether the policy may remove capacity (AWS's `DisableScaleIn` negated).
    pub scale_in: bool,
}

aws_names! {
    /// A CloudWatch alarm's state, with CloudWatch's names.
    pub enum AlarmState ("alarm state") {
        Ok = "OK",
        Alarm = "ALARM",
        InsufficientData = "INSUFFICIENT_DATA",
    }
}

/// Which way an alarm compares the metric with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmSide {
    /// `GreaterThanThreshold`: the scale-out alarm.
    Above,
    /// `LessThanThreshold`: the scale-in alarm.
    Below,
}

/// One alarm of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyAlarm {
    pub name: String,
    pub state: AlarmState,
    pub side: AlarmSide,
    pub threshold: f64,
    /// Datapoints that must breach, one per period (`EvaluationPeriods`).
    pub datapoints: u32,
    /// The length of one period, in seconds (on the clock the backend runs).
    pub period_seconds: u32,
}

/// One policy now: its settings, the metric's last value and its alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub policy: ScalingPolicy,
    /// The metric's value over the last complete period, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    #[serde(default)]
    pub alarms: Vec<PolicyAlarm>,
}

/// Which way a decision changed desired capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingDirection {
    Out,
    In,
}

/// One scaling decision: desired capacity changed by a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingDecision {
    /// When it was made, on the clock of the backend's model (AWS: the activity's start).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The policy that decided (with several, the one whose capacity won).
    pub policy: String,
    pub direction: ScalingDirection,
    pub from: u32,
    pub to: u32,
    /// Why, e.g. "requests/target 84 > 60 for 3 periods → desired 3 → 5".
    pub reason: String,
}

/// A snapshot's scaling section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScalingView {
    /// Every target tracking policy of the group; empty when it has none.
    #[serde(default)]
    pub policies: Vec<PolicyView>,
    /// Recent decisions, newest first.
    #[serde(default)]
    pub decisions: Vec<ScalingDecision>,
    /// Instances a scale-out launched that are not yet in service and healthy.
    #[serde(default)]
    pub launching: Vec<String>,
}

impl ScalingView {
    /// The newest decision, if any.
    pub fn last_decision(&self) -> Option<&ScalingDecision> {
        self.decisions.first()
    }
}
