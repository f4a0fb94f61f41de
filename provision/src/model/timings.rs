//! Every duration the model schedules, in one place, so a driver can run the model on the
//! spec's own AWS clock or on a compressed one (the same durations divided by one factor).

use std::time::Duration;

/// A target group's health check: ALB's names and defaults
/// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path requested (`HealthCheckPath`, default `/`).
    pub path: String,
    /// Time between checks of one target (`HealthCheckIntervalSeconds`, default 30 s).
    pub interval: Duration,
    /// How long a check may take (`HealthCheckTimeoutSeconds`, default 5 s).
    pub timeout: Duration,
    /// Consecutive successes that make a target healthy (`HealthyThresholdCount`, default 5).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target unhealthy (`UnhealthyThresholdCount`,
    /// default 2).
    pub unhealthy_threshold: u32,
    /// Status codes that count as success (`Matcher.HttpCode`, default 200).
    pub success_codes: std::ops::RangeInclusive<u16>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".to_owned(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            success_codes: 200..=200,
        }
    }
}

/// AWS's wait for instances in Standby during a refresh with StandbyInstances `Wait`.
pub const STANDBY_WAIT: Duration = Duration::from_secs(3600);

/// The durations of the Auto Scaling group and its target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// The target group's health check.
    pub health_check: HealthCheck,
    /// The target group's deregistration delay (`deregistration_delay.timeout_seconds`).
    pub deregistration_delay: Duration,
    /// The group's health check grace period (`HealthCheckGracePeriod`).
    pub grace_period: Duration,
    /// The group's default instance warmup (`DefaultInstanceWarmup`), the InstanceWarmup of
    /// a refresh that does not set one.
    pub default_warmup: Duration,
    /// How long one refresh batch may take to pass its health checks before the refresh
    /// fails. AWS does not publish its own limit; this one is the model's.
    pub refresh_batch_timeout: Duration,
    /// How long a refresh with StandbyInstances `Wait` waits for instances in Standby to
    /// return to service before it fails: one hour, as AWS documents
    /// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html>).
    pub standby_wait: Duration,
    /// The period of the metrics target tracking evaluates: one datapoint per period, and
    /// the alarms count periods (AWS: one minute, the detailed monitoring the template turns
    /// on). The scale-out and scale-in windows are counts of it (see
    /// [`super::scaling::TRACKING`]), so they follow it when the clock is compressed.
    pub metric_period: Duration,
    /// From launch until the instance's program is started (on AWS: the instance boots and
    /// its user data fetches and starts the webapp). The model does not wait on it; a driver
    /// that runs real programs holds the start this long. AWS publishes no figure: it is a
    /// stated assumption (`[sandbox] instance_boot_seconds`).
    pub instance_boot: Duration,
}

/// The metric period on AWS: one minute.
pub const AWS_METRIC_PERIOD: Duration = Duration::from_secs(60);

impl Timings {
    /// Every duration zero and every threshold one: each health check decides at once and
    /// nothing waits on the clock but what a refresh's preferences ask for (checkpoint delays,
    /// bake time, warmup) and the metric period (AWS's minute). The memory backend runs on
    /// these.
    pub fn immediate() -> Timings {
        Timings {
            health_check: HealthCheck {
                path: "/".to_owned(),
                interval: Duration::ZERO,
                timeout: Duration::ZERO,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                success_codes: 200..=200,
            },
            deregistration_delay: Duration::ZERO,
            grace_period: Duration::ZERO,
            default_warmup: Duration::ZERO,
            refresh_batch_timeout: Duration::from_secs(3600),
            standby_wait: STANDBY_WAIT,
            metric_period: AWS_METRIC_PERIOD,
            instance_boot: Duration::ZERO,
        }
    }
}
