//! One-instance actions with Auto Scaling's own calls: TerminateInstanceInAutoScalingGroup,
//! SetInstanceHealth (respecting the grace period), EnterStandby and ExitStandby. The
//! capacity rules are checked first with the model's
//! [`capacity_after`](crate::model::capacity_after) (AWS refuses the same), so the dry run
//! refuses what the call would.

use super::error::from_sdk;
use super::resources::{describe_group, resolve};
use super::{AwsCloud, OpsClients};
use crate::model::capacity_after;
use crate::port::{Capacity, CloudError, InstanceAction, InstancePlan, StackRef};

/// Reads the group, finds `id` in it and checks the capacity rule; returns the plan.
async fn plan(
    cloud: &AwsCloud,
    stack: &StackRef,
    id: &str,
    action: InstanceAction,
) -> Result<(String, InstancePlan), CloudError> {
    let resources = resolve(cloud, stack).await?;
    let group = describe_group(&cloud.ops_for(stack), &resources.asg).await?;
    let instance = group
        .instances()
        .iter()
        .find(|i| i.instance_id() == Some(id))
        .ok_or_else(|| {
            CloudError::not_found(format!(
                "instance {id} in Auto Scaling group {}",
                resources.asg
            ))
        })?;
    let az = instance.availability_zone().unwrap_or_default().to_owned();
    let to_u32 = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let capacity = Capacity {
        desired: to_u32(group.desired_capacity()),
        min: to_u32(group.min_size()),
        max: to_u32(group.max_size()),
    };
    capacity_after(capacity, id, action)?;
    let plan = InstancePlan::new(id, &az, action, vec![action.aws_call(id)]);
    Ok((resources.asg, plan))
}

pub(crate) async fn describe(
    cloud: &AwsCloud,
    stack: &StackRef,
    id: &str,
    action: InstanceAction,
) -> Result<InstancePlan, CloudError> {
    plan(cloud, stack, id, action).await.map(|(_, plan)| plan)
}

pub(crate) async fn act(
    cloud: &AwsCloud,
    stack: &StackRef,
    id: &str,
    action: InstanceAction,
) -> Result<InstancePlan, CloudError> {
    let (asg, plan) = plan(cloud, stack, id, action).await?;
    call(&cloud.ops_for(stack), &asg, id, action).await?;
    Ok(plan)
}

async fn call(
    ops: &OpsClients,
    asg: &str,
    id: &str,
    action: InstanceAction,
) -> Result<(), CloudError> {
    let autoscaling = &ops.autoscaling;
    match action {
        InstanceAction::Terminate { decrement } => autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("autoscaling", "TerminateInstanceInAutoScalingGroup", e)),
        InstanceAction::Unhealthy => autoscaling
            .set_instance_health()
            .instance_id(id)
            .health_status("Unhealthy")
            .should_respect_grace_period(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("autoscaling", "SetInstanceHealth", e)),
        InstanceAction::Standby { decrement } => autoscaling
            .enter_standby()
            .auto_scaling_group_name(asg)
            .instance_ids(id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("autoscaling", "EnterStandby", e)),
        InstanceAction::Resume => autoscaling
            .exit_standby()
            .auto_scaling_group_name(asg)
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("autoscaling", "ExitStandby", e)),
    }
}
