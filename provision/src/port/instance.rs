//! One-instance actions: terminate, mark unhealthy, standby and back. They are not faults:
//! nothing records them for `gameday restore`, which does not undo them (the group replaces
//! or re-adds capacity by its own rules).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::CloudError;
use super::snapshot::{Section, Snapshot, TargetState};

/// What to do to one instance of the stack's Auto Scaling group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InstanceAction {
    /// TerminateInstanceInAutoScalingGroup: the group launches a replacement, or with
    /// `decrement` desired capacity drops by one (refused below min).
    Terminate { decrement: bool },
    /// SetInstanceHealth Unhealthy: the group replaces it once its grace period is over.
    Unhealthy,
    /// EnterStandby: out of the target group and of capacity; a replacement is launched
    /// unless `decrement`.
    Standby { decrement: bool },
    /// ExitStandby: back in service, desired capacity one higher (refused above max).
    Resume,
}

impl InstanceAction {
    /// Whether it takes the instance out of serving.
    pub fn removes_capacity(self) -> bool {
        !matches!(self, Self::Resume)
    }

    /// The verb, as the CLI spells it.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Terminate { .. } => "terminate",
            Self::Unhealthy => "unhealthy",
            Self::Standby { .. } => "standby",
            Self::Resume => "resume",
        }
    }

    /// The AWS Auto Scaling call that carries it out.
    pub fn aws_call(self, id: &str) -> String {
        match self {
            Self::Terminate { decrement } => format!(
                "autoscaling:TerminateInstanceInAutoScalingGroup {id} \
                 ShouldDecrementDesiredCapacity={decrement}"
            ),
            Self::Unhealthy => format!(
                "autoscaling:SetInstanceHealth {id} HealthStatus=Unhealthy \
                 ShouldRespectGracePeriod=true"
            ),
            Self::Standby { decrement } => {
                format!("autoscaling:EnterStandby {id} ShouldDecrementDesiredCapacity={decrement}")
            }
            Self::Resume => format!("autoscaling:ExitStandby {id}"),
        }
    }

    /// What the group will do afterwards, for the confirmation.
    pub fn effect(self) -> &'static str {
        match self {
            Self::Terminate { decrement: false } => {
                "the instance is deregistered and terminated; the group launches a replacement"
            }
            Self::Terminate { decrement: true } => {
                "the instance is deregistered and terminated; desired capacity drops by one"
            }
            Self::Unhealthy => {
                "the instance is marked Unhealthy; the group replaces it once its health \
                 check grace period is over"
            }
            Self::Standby { decrement: false } => {
                "the instance leaves the target group and stays stopped from serving; the \
                 group launches a replacement"
            }
            Self::Standby { decrement: true } => {
                "the instance leaves the target group and stays stopped from serving; \
                 desired capacity drops by one"
            }
            Self::Resume => {
                "the instance returns to service and the target group; desired capacity rises \
                 by one"
            }
        }
    }
}

impl fmt::Display for InstanceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Terminate { decrement: true } | Self::Standby { decrement: true } => {
                write!(f, "{} --decrement", self.verb())
            }
            _ => f.write_str(self.verb()),
        }
    }
}

/// The note every confirmation and plan carries.
pub const NOT_RESTORED: &str = "this is not a fault: `gameday restore` does not undo it";

/// The dry run (and, once done, the record) of an action on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub instance_id: String,
    /// The instance's AZ.
    pub az: String,
    pub action: InstanceAction,
    /// What the group does afterwards.
    pub effect: String,
    /// The calls the backend makes.
    pub calls: Vec<String>,
    /// Anything else the operator should know.
    pub notes: Vec<String>,
}

impl InstancePlan {
    /// The plan for `action` on `id` in `az`, with `calls`.
    pub fn new(id: &str, az: &str, action: InstanceAction, calls: Vec<String>) -> Self {
        Self {
            instance_id: id.to_owned(),
            az: az.to_owned(),
            action,
            effect: action.effect().to_owned(),
            calls,
            notes: vec![NOT_RESTORED.to_owned()],
        }
    }
}

/// The capacity rule for one-instance actions, as for faults: taking an instance out of
/// serving is refused when no other instance has a healthy target (or that cannot be
/// verified), unless forced. Returns the instance's AZ.
pub fn check_instance_action(
    snapshot: &Snapshot,
    id: &str,
    action: InstanceAction,
    force: bool,
) -> Result<String, CloudError> {
    let az = snapshot
        .azs
        .iter()
        .find(|view| view.instances.iter().any(|i| i.id == id))
        .map(|view| view.az.clone())
        .ok_or_else(|| CloudError::not_found(format!("instance {id} in the stack's group")))?;
    if force || !action.removes_capacity() {
        return Ok(az);
    }
    if let Some(error) = snapshot.error_for(Section::Targets) {
        return Err(CloudError::refused(format!(
            "cannot verify healthy capacity besides {id} ({error}); use --force to go ahead"
        )));
    }
    let others = snapshot
        .azs
        .iter()
        .flat_map(|view| &view.targets)
        .filter(|t| t.id != id && t.state == TargetState::Healthy)
        .count();
    if others == 0 {
        return Err(CloudError::refused(format!(
            "no healthy target besides {id}: the stack would stop serving; use --force to go \
             ahead"
        )));
    }
    Ok(az)
}
