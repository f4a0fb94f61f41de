//! Faults for GameDays: what to break ([`Fault`]), what breaking it will touch
//! ([`FaultPlan`], the dry run written to the journal before anything happens), and exactly
//! what was changed ([`FaultRecord`], enough to restore it — also after a crash, from the
//! journal). The changes are backend-specific ([`AwsChange`], [`SandboxChange`]) because
//! restoring means undoing those exact changes (a NACL association, a subnet list, stopped
//! processes); everything else about a fault is backend-neutral.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cloud::BackendKind;
use super::error::CloudError;
use super::snapshot::ScalingProcess;
use super::stack::StackRef;

/// A failure to inject. Every fault but `FailoverDb` names its AZ; `FailoverDb` touches the
/// AZ that holds the database primary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Terminate every instance in the AZ (the group replaces them).
    TerminateAz { az: String },
    /// Cut the AZ off the network: instances stay up but nothing reaches them (a deny-all
    /// NACL on AWS; SIGSTOP in the sandbox).
    BlackholeAz { az: String },
    /// Stop the group launching into the AZ (its subnet removed, AZRebalance suspended).
    #[serde(rename = "block-launches")]
    BlockLaunchesInAz { az: String },
    /// Fail the database over to its standby.
    FailoverDb,
    /// A gray failure: requests to the AZ's instances get `latency_ms` slower while their
    /// health checks keep passing (in the sandbox only the load balancer's requests are
    /// delayed; on AWS the instances' whole outbound traffic, see [`NOTE_SLOW_AWS`]).
    SlowAz {
        az: String,
        #[serde(default = "default_latency_ms")]
        latency_ms: u32,
    },
    /// The AZ loses power: a database failover if the primary is there, then blackhole and
    /// launch block (see [`Fault::steps`]).
    AzOutage { az: String },
}

impl Fault {
    /// The names accepted by [`Fault::parse`], as the command line spells them.
    pub const KINDS: &'static [&'static str] = &[
        "terminate-az",
        "blackhole-az",
        "block-launches",
        "failover-db",
        "az-outage",
        "slow-az",
    ];

    /// The latency `slow-az` adds when none is given (`--latency-ms`).
    pub const DEFAULT_LATENCY_MS: u32 = 300;
    /// The most latency `slow-az` adds: a minute, ALB's default idle timeout, beyond which
    /// the fault is an outage rather than a gray failure.
    pub const MAX_LATENCY_MS: u32 = 60_000;

    /// Builds a fault from its command-line name and AZ.
    pub fn parse(kind: &str, az: Option<&str>) -> Result<Self, CloudError> {
        let need_az = || {
            az.map(str::to_owned)
                .filter(|az| !az.trim().is_empty())
                .ok_or_else(|| CloudError::invalid("az", format!("the {kind} fault needs an AZ")))
        };
        match kind {
            "terminate-az" => Ok(Self::TerminateAz { az: need_az()? }),
            "blackhole-az" => Ok(Self::BlackholeAz { az: need_az()? }),
            "block-launches" => Ok(Self::BlockLaunchesInAz { az: need_az()? }),
            "az-outage" => Ok(Self::AzOutage { az: need_az()? }),
            "slow-az" => Ok(Self::SlowAz {
                az: need_az()?,
                latency_ms: Self::DEFAULT_LATENCY_MS,
            }),
            "failover-db" if az.is_none() => Ok(Self::FailoverDb),
            "failover-db" => Err(CloudError::invalid(
                "az",
                "failover-db takes no AZ: it fails over from wherever the primary is",
            )),
            other => Err(CloudError::invalid(
                "fault",
                format!("{other:?} is not one of {}", Self::KINDS.join(", ")),
            )),
        }
    }

    /// The same fault with `latency_ms` of added latency (`--latency-ms`): only `slow-az`
    /// takes one, between 1 and [`Fault::MAX_LATENCY_MS`].
    pub fn with_latency(self, latency_ms: u32) -> Result<Self, CloudError> {
        match self {
            Self::SlowAz { az, .. } => {
                if !(1..=Self::MAX_LATENCY_MS).contains(&latency_ms) {
                    return Err(CloudError::invalid(
                        "latency_ms",
                        format!(
                            "{latency_ms} ms is not between 1 and {} ms",
                            Self::MAX_LATENCY_MS
                        ),
                    ));
                }
                Ok(Self::SlowAz { az, latency_ms })
            }
            other => Err(CloudError::invalid(
                "latency_ms",
                format!("only slow-az takes a latency, not {}", other.kind()),
            )),
        }
    }

    /// The command-line name of this fault's kind.
    pub fn kind(&self) -> &'static str {
        self.fault_kind().name()
    }

    /// This fault's kind.
    pub fn fault_kind(&self) -> FaultKind {
        match self {
            Self::TerminateAz { .. } => FaultKind::TerminateAz,
            Self::BlackholeAz { .. } => FaultKind::BlackholeAz,
            Self::BlockLaunchesInAz { .. } => FaultKind::BlockLaunches,
            Self::FailoverDb => FaultKind::FailoverDb,
            Self::AzOutage { .. } => FaultKind::AzOutage,
            Self::SlowAz { .. } => FaultKind::SlowAz,
        }
    }

    /// The AZ the fault names (`None` for `FailoverDb`).
    pub fn az(&self) -> Option<&str> {
        match self {
            Self::TerminateAz { az }
            | Self::BlackholeAz { az }
            | Self::BlockLaunchesInAz { az }
            | Self::AzOutage { az }
            | Self::SlowAz { az, .. } => Some(az),
            Self::FailoverDb => None,
        }
    }

    /// The steps that carry this fault out, in order; restore undoes them in reverse.
    /// `primary_az` is where the database primary is, if known: `AzOutage` fails the
    /// database over first when the primary is in its AZ — while the AZ can still answer, so
    /// the failover is a clean one — then blackholes the AZ and blocks launches into it.
    pub fn steps(&self, primary_az: Option<&str>) -> Vec<FaultStep<'_>> {
        match self {
            Self::TerminateAz { az } => vec![FaultStep::Terminate(az)],
            Self::BlackholeAz { az } => vec![FaultStep::Blackhole(az)],
            Self::BlockLaunchesInAz { az } => vec![FaultStep::BlockLaunches(az)],
            Self::FailoverDb => vec![FaultStep::Failover],
            Self::SlowAz { az, latency_ms } => vec![FaultStep::Slow(az, *latency_ms)],
            Self::AzOutage { az } => {
                let mut steps = Vec::with_capacity(3);
                if primary_az == Some(az.as_str()) {
                    steps.push(FaultStep::Failover);
                }
                steps.push(FaultStep::Blackhole(az));
                steps.push(FaultStep::BlockLaunches(az));
                steps
            }
        }
    }

    /// Whether the fault takes serving capacity out of its AZ.
    pub fn removes_capacity(&self) -> bool {
        matches!(
            self,
            Self::TerminateAz { .. } | Self::BlackholeAz { .. } | Self::AzOutage { .. }
        )
    }
}

/// A kind of [`Fault`], chosen before its AZ (the console's GameDay form, `--fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    TerminateAz,
    BlackholeAz,
    BlockLaunches,
    FailoverDb,
    AzOutage,
    SlowAz,
}

impl FaultKind {
    /// Every kind, in [`Fault::KINDS`] order.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::TerminateAz,
        FaultKind::BlackholeAz,
        FaultKind::BlockLaunches,
        FaultKind::FailoverDb,
        FaultKind::AzOutage,
        FaultKind::SlowAz,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TerminateAz => "terminate-az",
            FaultKind::BlackholeAz => "blackhole-az",
            FaultKind::BlockLaunches => "block-launches",
            FaultKind::FailoverDb => "failover-db",
            FaultKind::AzOutage => "az-outage",
            FaultKind::SlowAz => "slow-az",
        }
    }

    /// Whether the fault names its AZ (`FailoverDb` touches the primary's).
    pub fn needs_az(self) -> bool {
        self != FaultKind::FailoverDb
    }

    /// The fault of this kind in `az` (none for `FailoverDb`).
    pub fn in_az(self, az: Option<&str>) -> Result<Fault, CloudError> {
        Fault::parse(self.name(), if self.needs_az() { az } else { None })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Self::SlowAz { az, latency_ms } = self {
            return write!(f, "{} {az} +{latency_ms} ms", self.kind());
        }
        match self.az() {
            Some(az) => write!(f, "{} {az}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// One step of a fault, in the AZ it names (see [`Fault::steps`]). Every backend carries
/// out the same steps with its own mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultStep<'a> {
    /// Terminate the AZ's instances.
    Terminate(&'a str),
    /// Cut the AZ off the network.
    Blackhole(&'a str),
    /// Stop the group launching into the AZ.
    BlockLaunches(&'a str),
    /// Fail the database over from wherever its primary is.
    Failover,
    /// Delay requests to the AZ's instances by this many milliseconds.
    Slow(&'a str, u32),
}

/// What carrying out one [`FaultStep`] will do: its calls, and what the operator should know
/// about them beyond the notes every backend shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub actions: Vec<PlannedAction>,
    pub notes: Vec<String>,
}

impl StepPlan {
    /// A step of these actions, without notes of its own.
    pub fn of(actions: Vec<PlannedAction>) -> Self {
        Self {
            actions,
            notes: Vec::new(),
        }
    }
}

impl PlannedAction {
    /// A call on `resource`; `reversible` says whether restore undoes it.
    pub fn new(resource: impl Into<String>, call: impl Into<String>, reversible: bool) -> Self {
        Self {
            resource: resource.into(),
            call: call.into(),
            reversible,
        }
    }
}

/// The note every backend gives for terminated instances.
pub const NOTE_TERMINATE: &str = "terminated instances are not restored; the group replaces them";
/// The note every backend gives for a database failover.
pub const NOTE_FAILOVER: &str =
    "a failover is not undone; the database stays on its new primary and gets a new standby";

/// The note every backend gives for `slow-az` (what the operator should watch for).
pub const NOTE_SLOW: &str = "a gray failure: the AZ's targets stay healthy, so the load balancer \
     keeps sending them requests; a zonal shift away from the AZ is the remedy";
/// What `slow-az` delays on AWS, where the latency is added on the instances themselves.
pub const NOTE_SLOW_AWS: &str = "on AWS the delay applies to all of the instances' outbound \
     traffic: their answers to requests and to health checks, and their database calls; a \
     latency at or above the health check timeout makes the targets unhealthy";

fn default_latency_ms() -> u32 {
    Fault::DEFAULT_LATENCY_MS
}

/// Checks that a fault's `az` is one of the stack's `azs`.
pub fn check_fault_az(azs: &[String], az: &str) -> Result<(), CloudError> {
    if azs.iter().any(|known| known == az) {
        Ok(())
    } else {
        Err(CloudError::invalid(
            "az",
            format!("{az:?} is not one of the stack's AZs ({})", azs.join(", ")),
        ))
    }
}

/// The dry run of `fault` on `stack`, the same way on every backend: its steps in order
/// ([`Fault::steps`]), each planned by the backend (`plan_step`), with the shared notes. The
/// AZ it touches is the one it names, or `primary_az` for `FailoverDb`.
pub fn plan_fault(
    stack: &StackRef,
    fault: &Fault,
    primary_az: Option<&str>,
    mut plan_step: impl FnMut(FaultStep<'_>) -> Result<StepPlan, CloudError>,
) -> Result<FaultPlan, CloudError> {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for step in fault.steps(primary_az) {
        let planned = plan_step(step)?;
        actions.extend(planned.actions);
        match step {
            FaultStep::Terminate(_) => notes.push(NOTE_TERMINATE.to_owned()),
            FaultStep::Failover => notes.push(NOTE_FAILOVER.to_owned()),
            FaultStep::Slow(..) => notes.push(NOTE_SLOW.to_owned()),
            FaultStep::Blackhole(_) | FaultStep::BlockLaunches(_) => {}
        }
        notes.extend(planned.notes);
    }
    Ok(FaultPlan {
        stack: stack.clone(),
        fault: fault.clone(),
        az: fault.az().or(primary_az).map(str::to_owned),
        actions,
        notes,
    })
}

/// Whether inject checks that the other AZs still have healthy capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityCheck {
    /// Refuse when the other AZs have no healthy capacity (the default).
    #[default]
    Enforce,
    /// Inject anyway (`--force`).
    Force,
}

/// The dry run of a fault: the AZ it touches and every call it will make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    pub stack: StackRef,
    pub fault: Fault,
    /// The AZ the fault touches (for `FailoverDb`, the primary's AZ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    pub actions: Vec<PlannedAction>,
    /// What restore will and will not undo, and other things the operator should know.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One call a fault will make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// What it touches, e.g. "instance i-0abc" or "subnet subnet-0def".
    pub resource: String,
    /// The call, e.g. "ec2:TerminateInstances" or "SIGSTOP".
    pub call: String,
    /// Whether restore undoes it.
    pub reversible: bool,
}

/// "SIGKILL instance i-0abc (pid 4242)", with " (not undone by restore)" when it is not.
impl fmt::Display for PlannedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.call, self.resource)?;
        if !self.reversible {
            f.write_str(" (not undone by restore)")?;
        }
        Ok(())
    }
}

impl FaultPlan {
    /// The first `most` actions, "; "-separated, and how many more there are.
    pub fn actions_summary(&self, most: usize) -> String {
        let mut text = self
            .actions
            .iter()
            .take(most)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let more = self.actions.len().saturating_sub(most);
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        if self.actions.is_empty() {
            text.push_str("nothing to change");
        }
        text
    }
}

/// What an injected fault changed: enough to restore it, serialisable into a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Unique per injection.
    pub id: String,
    pub stack: StackRef,
    pub fault: Fault,
    /// The AZ the fault touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    /// Whether the capacity check was overridden.
    #[serde(default)]
    pub forced: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub injected_at: OffsetDateTime,
    /// Every change, in the order made; restore undoes the reversible ones in reverse.
    pub changes: Vec<FaultChange>,
}

impl FaultRecord {
    /// Refuses a record whose changes were made by another kind of backend than `kind` (an
    /// AWS record handed to the sandbox, or the reverse): they mean nothing there.
    pub fn check_made_by(&self, kind: BackendKind) -> Result<(), CloudError> {
        match self
            .changes
            .iter()
            .map(FaultChange::backend)
            .find(|k| *k != kind)
        {
            Some(other) => Err(CloudError::refused(format!(
                "fault record {} was made by the {} backend",
                self.id,
                match other {
                    BackendKind::Aws => "AWS",
                    _ => "sandbox",
                }
            ))),
            None => Ok(()),
        }
    }
}

/// One change a fault made, per backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum FaultChange {
    Aws(AwsChange),
    Sandbox(SandboxChange),
}

impl FaultChange {
    /// The kind of backend that makes this change (the memory backend makes sandbox ones).
    pub fn backend(&self) -> BackendKind {
        match self {
            Self::Aws(_) => BackendKind::Aws,
            Self::Sandbox(_) => BackendKind::Sandbox,
        }
    }

    /// Whether restore can undo this change (terminations and failovers are not undone;
    /// the stack heals from them).
    pub fn is_reversible(&self) -> bool {
        match self {
            Self::Aws(change) => !matches!(
                change,
                AwsChange::InstancesTerminated { .. } | AwsChange::DbRebootedWithFailover { .. }
            ),
            Self::Sandbox(change) => !matches!(
                change,
                SandboxChange::InstancesKilled { .. } | SandboxChange::DbFailedOver { .. }
            ),
        }
    }
}

/// A change made on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AwsChange {
    /// ec2:TerminateInstances (not reversible).
    InstancesTerminated {
        auto_scaling_group: String,
        az: String,
        instance_ids: Vec<String>,
    },
    /// ec2:CreateNetworkAcl with deny-all entries; restore deletes it.
    NetworkAclCreated {
        vpc_id: String,
        network_acl_id: String,
    },
    /// ec2:ReplaceNetworkAclAssociation; restore re-associates the original NACL using
    /// `association_id` (the association the replacement returned).
    NetworkAclAssociationReplaced {
        subnet_id: String,
        association_id: String,
        original_network_acl_id: String,
    },
    /// autoscaling:UpdateAutoScalingGroup with the AZ's subnets removed; restore sets
    /// `original_subnet_ids` back.
    SubnetsRemovedFromGroup {
        auto_scaling_group: String,
        original_subnet_ids: Vec<String>,
        removed_subnet_ids: Vec<String>,
    },
    /// autoscaling:SuspendProcesses, listing only processes that were not already
    /// suspended; restore resumes exactly these.
    ProcessesSuspended {
        auto_scaling_group: String,
        processes: Vec<ScalingProcess>,
    },
    /// ssm:SendCommand of AWS's `AWSFIS-Run-Network-Latency` document (command
    /// `command_id`) on `instance_ids`, adding `latency_ms` on their `interface`; restore
    /// cancels the command and removes the delay on those instances (`tc qdisc del dev
    /// <interface> root` with `AWS-RunShellScript`).
    LatencyAdded {
        az: String,
        command_id: String,
        instance_ids: Vec<String>,
        interface: String,
        latency_ms: u32,
    },
    /// rds:RebootDBInstance with ForceFailover (not reversible).
    DbRebootedWithFailover {
        db_instance_id: String,
        from_az: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_az: Option<String>,
    },
}

/// A change made in the sandbox (or the in-memory test backend, which models it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum SandboxChange {
    /// SIGKILL (not reversible; the group replaces them).
    InstancesKilled {
        az: String,
        instance_ids: Vec<String>,
        #[serde(default)]
        pids: Vec<u32>,
    },
    /// SIGSTOP on the AZ's instances, and new instances there start stopped; restore sends
    /// SIGCONT to `pids` and lifts the silence.
    AzSilenced {
        az: String,
        instance_ids: Vec<String>,
        #[serde(default)]
        pids: Vec<u32>,
    },
    /// The AZ removed from the group's launch AZs; restore adds it back.
    LaunchesBlocked { az: String },
    /// SIGSTOP on the database node in the AZ (alive but silent); restore sends SIGCONT. A
    /// node fenced in the meantime (after a failover) is gone, and restore skips it.
    DbNodeStopped {
        az: String,
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// Processes suspended that were not already; restore resumes exactly these.
    ProcessesSuspended { processes: Vec<ScalingProcess> },
    /// The load balancer delays every request it sends to the AZ's targets by
    /// `latency_ms` (health checks are not delayed); restore removes the delay.
    AzSlowed { az: String, latency_ms: u32 },
    /// The database primary moved (not reversible).
    DbFailedOver { from_az: String, to_az: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(resource: &str, reversible: bool) -> PlannedAction {
        PlannedAction {
            resource: resource.into(),
            call: "SIGSTOP".into(),
            reversible,
        }
    }

    #[test]
    fn a_plan_summarises_its_first_actions_and_counts_the_rest() {
        let mut plan = FaultPlan {
            stack: StackRef::new("demo").expect("name"),
            fault: Fault::BlackholeAz { az: "a".into() },
            az: Some("a".into()),
            actions: vec![],
            notes: vec![],
        };
        assert_eq!(plan.actions_summary(2), "nothing to change");
        plan.actions = vec![action("instance i-1", true), action("instance i-2", false)];
        assert_eq!(
            plan.actions_summary(2),
            "SIGSTOP instance i-1; SIGSTOP instance i-2 (not undone by restore)"
        );
        plan.actions.push(action("instance i-3", true));
        assert_eq!(plan.actions_summary(1), "SIGSTOP instance i-1; and 2 more");
    }
}
