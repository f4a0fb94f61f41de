//! The target group's side of the model: one target's health-check state machine and the
//! routing rule with fail-open. The sandbox load balancer feeds it real HTTP checks, the
//! memory backend scripted ones; both read the states from here.
//!
//! States and reason codes follow ELB's "Target health status"
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html#target-health-states>):
//! a registered target is `initial` (`Elb.RegistrationInProgress`, then
//! `Elb.InitialHealthChecking`) until `HealthyThresholdCount` consecutive checks pass
//! (`healthy`) or `UnhealthyThresholdCount` fail (`unhealthy`, with the failing check's
//! reason); a healthy target turns unhealthy after that many consecutive failures and back
//! after that many successes. A target in an AZ the load balancer does not serve is `unused`
//! (`Target.NotInUse`); a deregistered one is `draining` (`Target.DeregistrationInProgress`)
//! until its in-flight requests end or the deregistration delay passes
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html#deregistration-delay>).

use std::time::Duration;

use time::OffsetDateTime;

use super::timings::HealthCheck;
use crate::port::{TargetReason, TargetState};

/// What one health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The target answered with a success code in time.
    Pass,
    /// The check failed: `Target.Timeout`, `Target.ResponseCodeMismatch` (with the code as
    /// `detail`) or `Target.FailedHealthChecks`.
    Fail {
        reason: TargetReason,
        detail: Option<String>,
    },
}

/// One target's health as ELB reports it, and the counts that move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub state: TargetState,
    pub reason: Option<TargetReason>,
    /// ELB's description of the reason (with the status code for a mismatch).
    pub description: Option<String>,
    successes: u32,
    failures: u32,
    drain_until: Option<OffsetDateTime>,
}

/// ELB's description of a reason code.
pub fn describe(reason: TargetReason) -> &'static str {
    match reason {
        TargetReason::RegistrationInProgress => "Target registration is in progress",
        TargetReason::InitialHealthChecking => "Initial health checks in progress",
        TargetReason::ResponseCodeMismatch => "Health checks failed with these codes",
        TargetReason::Timeout => "Request timed out",
        TargetReason::FailedHealthChecks => "Health checks failed",
        TargetReason::NotRegistered => "Target is not registered to the target group",
        TargetReason::NotInUse => {
            "Target group is not configured to receive traffic from the target's AZ"
        }
        TargetReason::DeregistrationInProgress => "Target deregistration is in progress",
        TargetReason::InvalidState => "Target is in the stopped or terminated state",
        TargetReason::IpUnusable => "The target IP address is reserved for use by a load balancer",
        TargetReason::HealthCheckDisabled => "Health checks are disabled",
        TargetReason::InternalError => "Health checks failed due to an internal error",
    }
}

impl TargetHealth {
    /// A target just registered (`RegisterTargets`): `initial`, or `unused` when its AZ is
    /// not one the load balancer serves.
    pub fn registered(az_served: bool) -> TargetHealth {
        let mut health = TargetHealth {
            state: TargetState::Initial,
            reason: None,
            description: None,
            successes: 0,
            failures: 0,
            drain_until: None,
        };
        if az_served {
            health.set(
                TargetState::Initial,
                Some(TargetReason::RegistrationInProgress),
                None,
            );
        } else {
            health.set(TargetState::Unused, Some(TargetReason::NotInUse), None);
        }
        health
    }

    /// An id the target group does not know: `unused`, `Target.NotRegistered`.
    pub fn not_registered() -> TargetHealth {
        let mut health = TargetHealth::registered(false);
        health.set(TargetState::Unused, Some(TargetReason::NotRegistered), None);
        health
    }

    fn set(&mut self, state: TargetState, reason: Option<TargetReason>, detail: Option<String>) {
        self.state = state;
        self.reason = reason;
        self.description = reason.map(|r| match detail {
            Some(d) => format!("{} [{d}]", describe(r)),
            None => describe(r).to_owned(),
        });
    }

    /// Whether health checks still run (not draining, not unused).
    pub fn is_checked(&self) -> bool {
        !matches!(self.state, TargetState::Draining | TargetState::Unused)
    }

    /// Takes one check's result; returns whether the state changed.
    pub fn record(&mut self, check: &HealthCheck, result: CheckResult) -> bool {
        if !self.is_checked() {
            return false;
        }
        let before = self.state;
        match result {
            CheckResult::Pass => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.state != TargetState::Healthy {
                    if self.successes >= check.healthy_threshold {
                        self.set(TargetState::Healthy, None, None);
                    } else if self.state == TargetState::Initial {
                        self.set(
                            TargetState::Initial,
                            Some(TargetReason::InitialHealthChecking),
                            None,
                        );
                    }
                }
            }
            CheckResult::Fail { reason, detail } => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= check.unhealthy_threshold {
                    self.set(TargetState::Unhealthy, Some(reason), detail);
                } else if self.state == TargetState::Initial {
                    self.set(
                        TargetState::Initial,
                        Some(TargetReason::InitialHealthChecking),
                        None,
                    );
                }
            }
        }
        before != self.state
    }

    /// Deregistration (`DeregisterTargets`) at `now`: `draining` for at most `delay`.
    /// Returns false if it was already draining.
    pub fn deregister(&mut self, now: OffsetDateTime, delay: Duration) -> bool {
        if self.state == TargetState::Draining {
            return false;
        }
        self.drain_until = Some(now + delay);
        self.set(
            TargetState::Draining,
            Some(TargetReason::DeregistrationInProgress),
            None,
        );
        true
    }

    /// Whether a draining target is done: no request in flight, or the delay is over.
    pub fn drained(&self, now: OffsetDateTime, in_flight: usize) -> bool {
        self.state == TargetState::Draining
            && (in_flight == 0 || self.drain_until.is_none_or(|until| now >= until))
    }

    /// When a draining target's delay ends.
    pub fn drain_deadline(&self) -> Option<OffsetDateTime> {
        self.drain_until
            .filter(|_| self.state == TargetState::Draining)
    }
}

/// The targets a new request may go to: the healthy ones; when none is healthy, every target
/// that is neither draining nor unused (fail-open: "If a target group contains only unhealthy
/// registered targets, the load balancer routes requests to all those targets, regardless of
/// their health status",
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html>).
///
/// Targets in an AZ with an active zonal shift (`shifted` says which) get no new request, and
/// the choice above is made among the others ("the load balancer stops sending traffic to
/// targets in the impaired Availability Zone", requests already under way finish;
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/zonal-shift.html>).
/// So fail-open, too, only reaches the AZs not shifted away from; with every AZ shifted there
/// is nothing to route to.
pub fn routable<T>(
    targets: &[T],
    state: impl Fn(&T) -> TargetState,
    shifted: impl Fn(&T) -> bool,
) -> Vec<&T> {
    let in_service: Vec<&T> = targets
        .iter()
        .filter(|t| !matches!(state(t), TargetState::Draining | TargetState::Unused))
        .filter(|t| !shifted(t))
        .collect();
    let healthy: Vec<&T> = in_service
        .iter()
        .copied()
        .filter(|t| state(t) == TargetState::Healthy)
        .collect();
    if healthy.is_empty() {
        in_service
    } else {
        healthy
    }
}

/// Whether the target group is failing open: targets are registered and in service, and none
/// of them is healthy. A zonal shift does nothing useful then (every target already gets
/// traffic regardless of health), so a shift is refused unless forced.
pub fn failing_open(states: impl IntoIterator<Item = TargetState>) -> bool {
    let mut any = false;
    for state in states {
        match state {
            TargetState::Healthy => return false,
            TargetState::Draining | TargetState::Unused => {}
            _ => any = true,
        }
    }
    any
}
