//! The sandbox's two clocks: the spec's own AWS clock, or a stated compression of it.
//!
//! [`TimeScale`] is the one place that maps a model duration (what AWS would take) to the
//! wall time the sandbox waits for it, and a measured wall time back to the AWS clock. Every
//! duration in [`Timings`] goes through [`Timings::scaled`]; work that takes real time (a
//! process starting, PostgreSQL promoting, a probe's round trip) is not the model's and does
//! not scale: [`TimeScale::predict`] keeps it as measured.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::timings::{HealthCheck, Timings};

/// Which clock the sandbox runs on (`[sandbox] clock` in the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The spec's durations exactly, plus the stated AWS assumptions (instance boot).
    Aws,
    /// Every duration the model schedules divided by one factor: the demo's speed.
    #[default]
    Fast,
}

impl fmt::Display for ClockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockMode::Aws => "aws",
            ClockMode::Fast => "fast",
        })
    }
}

/// How model time maps to wall time: model duration = wall duration × `factor`. The `aws`
/// clock is factor 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeScale {
    pub mode: ClockMode,
    /// How many seconds of the spec's AWS clock one wall second stands for (≥ 1).
    pub factor: f64,
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::aws()
    }
}

impl TimeScale {
    /// The spec's own clock.
    pub fn aws() -> TimeScale {
        TimeScale {
            mode: ClockMode::Aws,
            factor: 1.0,
        }
    }

    /// A compressed clock; a factor below 1 (or not finite) is taken as 1.
    pub fn fast(factor: f64) -> TimeScale {
        let factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        TimeScale {
            mode: ClockMode::Fast,
            factor,
        }
    }

    /// The default compression: the one that makes the health-check `interval` one second.
    pub fn fast_for_interval(interval: Duration) -> TimeScale {
        TimeScale::fast(interval.as_secs_f64())
    }

    /// Whether wall time and model time differ.
    pub fn is_compressed(&self) -> bool {
        self.factor > 1.0
    }

    /// The wall time the sandbox waits for a model duration.
    pub fn to_wall(&self, model: Duration) -> Duration {
        model.div_f64(self.factor)
    }

    /// The model (AWS-clock) duration a wall time stands for.
    pub fn to_model(&self, wall: Duration) -> Duration {
        wall.mul_f64(self.factor)
    }

    /// The AWS-clock duration of a measured wall interval of `measured` seconds of which
    /// `unscaled` seconds were real work the model does not schedule (a process starting, a
    /// probe's round trip): the scheduled rest is multiplied by the factor, the real work
    /// kept as it was.
    pub fn predict(&self, measured: f64, unscaled: f64) -> f64 {
        let unscaled = unscaled.clamp(0.0, measured.max(0.0));
        (measured - unscaled) * self.factor + unscaled
    }
}

/// "aws" or "fast ×10".
impl fmt::Display for TimeScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            ClockMode::Aws => f.write_str("aws"),
            ClockMode::Fast => write!(f, "fast ×{}", trim(self.factor)),
        }
    }
}

/// A number of seconds or a factor with at most two decimals and no trailing zeros: 10, 2.5.
pub fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Timings {
    /// These durations on `scale`'s wall clock: every duration divided by the factor,
    /// thresholds and the health-check path unchanged.
    pub fn scaled(&self, scale: &TimeScale) -> Timings {
        let wall = |d: Duration| scale.to_wall(d);
        // Destructured in full so that a duration added to `Timings` cannot be left unscaled.
        let Timings {
            health_check,
            deregistration_delay,
            grace_period,
            default_warmup,
            refresh_batch_timeout,
            standby_wait,
            metric_period,
            instance_boot,
        } = self;
        Timings {
            health_check: HealthCheck {
                interval: wall(health_check.interval),
                timeout: wall(health_check.timeout),
                ..health_check.clone()
            },
            deregistration_delay: wall(*deregistration_delay),
            grace_period: wall(*grace_period),
            default_warmup: wall(*default_warmup),
            refresh_batch_timeout: wall(*refresh_batch_timeout),
            standby_wait: wall(*standby_wait),
            metric_period: wall(*metric_period),
            instance_boot: wall(*instance_boot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_keeps_every_duration_and_fast_divides_them() {
        let mut timings = Timings::immediate();
        timings.health_check.interval = Duration::from_secs(5);
        timings.health_check.timeout = Duration::from_secs(2);
        timings.grace_period = Duration::from_secs(120);
        timings.instance_boot = Duration::from_secs(60);
        assert_eq!(timings.scaled(&TimeScale::aws()), timings);
        let fast = TimeScale::fast_for_interval(timings.health_check.interval);
        assert_eq!(fast.factor, 5.0);
        let scaled = timings.scaled(&fast);
        assert_eq!(scaled.health_check.interval, Duration::from_secs(1));
        assert_eq!(scaled.health_check.timeout, Duration::from_millis(400));
        assert_eq!(scaled.grace_period, Duration::from_secs(24));
        assert_eq!(scaled.instance_boot, Duration::from_secs(12));
        assert_eq!(
            scaled.health_check.unhealthy_threshold,
            timings.health_check.unhealthy_threshold
        );
    }

    #[test]
    fn prediction_scales_the_schedule_and_keeps_real_work() {
        let fast = TimeScale::fast(10.0);
        assert_eq!(fast.predict(3.0, 0.0), 30.0);
        assert_eq!(fast.predict(3.0, 0.5), 25.5);
        assert_eq!(fast.predict(1.0, 5.0), 1.0);
        assert_eq!(TimeScale::aws().predict(3.0, 0.5), 3.0);
        assert_eq!(
            fast.to_model(fast.to_wall(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn a_factor_below_one_is_one() {
        assert_eq!(TimeScale::fast(0.2).factor, 1.0);
        assert_eq!(TimeScale::fast(f64::NAN).factor, 1.0);
        assert_eq!(TimeScale::fast(2.5).to_string(), "fast ×2.5");
        assert_eq!(TimeScale::fast(10.0).to_string(), "fast ×10");
        assert_eq!(TimeScale::aws().to_string(), "aws");
    }
}
