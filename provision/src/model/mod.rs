//! The one model of the Auto Scaling group and its target group: pure, clock-driven, no I/O
//! and no sleeping. Both the sandbox fleet (real webapp processes behind the real load
//! balancer) and the memory backend (fake instances) drive it; neither keeps a rule of its
//! own.
//!
//! - [`group`]: the group — capacity, placement, lifecycle, ELB health with the grace
//!   period, replacement, scaling processes, AZ rebalancing. A driver calls
//!   [`Group::step`] with the time read from its [`Clock`](crate::port::Clock) and the
//!   target group's states, carries out the [`Action`]s it returns, reports back
//!   ([`Group::gone`], [`Group::launch_failed`]) and steps again at
//!   [`Group::next_deadline`] at the latest.
//! - [`refresh`](self::refresh): the instance refresh inside the group, with every
//!   preference AWS has and AWS's status names; its refusals are
//!   [`RefreshRefusal`](crate::port::RefreshRefusal).
//! - [`scaling`]: target tracking policies, their alarms and decisions, fed by the
//!   driver's per-instance counters.
//! - [`target`]: one target's health-check state machine (initial / healthy / unhealthy /
//!   draining / unused, thresholds, deregistration delay) and the routing rule with
//!   fail-open.
//! - [`timings`]: every duration the model schedules ([`Timings`]).
//! - [`clock`](self::clock): the sandbox's `aws` and `fast` clocks ([`TimeScale`]), the one
//!   mapping between model durations and wall time.
//!
//! Every event the model records carries the time of its own clock ([`ModelEvent`]).

pub mod clock;
pub mod group;
pub mod refresh;
pub mod scaling;
pub mod target;
pub mod timings;

pub use clock::{ClockMode, TimeScale};
pub use group::{Action, EventKind, Group, GroupConfig, Member, ModelEvent, capacity_after};
pub use refresh::percentage;
pub use scaling::{Reading, TRACKING, Tracking};
pub use target::{CheckResult, TargetHealth, failing_open, routable};
pub use timings::{AWS_METRIC_PERIOD, HealthCheck, Timings};
