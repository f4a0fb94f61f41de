//! Which AWS resources a stack is made of. A triad stack's come from its CloudFormation
//! resources (by type: there is one Auto Scaling group, target group, load balancer and DB
//! instance in triad's template); an attached group's (`--asg`, optional `--db`) from the group
//! itself: its target groups and their load balancers. Either way the answer is read once per
//! watch, not per tick.
//!
//! Subnet → AZ (and VPC) is cached for the life of the backend: a subnet never moves.

use std::collections::BTreeSet;

use aws_sdk_autoscaling::types::AutoScalingGroup;

use super::error::from_sdk;
use super::{AwsCloud, OpsClients, SubnetInfo, cfn};
use crate::port::{CloudError, StackRef};

/// The parts of a running stack that snapshots, deploys and faults touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resources {
    /// The Auto Scaling group's name.
    pub asg: String,
    pub target_groups: Vec<String>,
    pub load_balancers: Vec<String>,
    /// The DB instance identifier, if the stack has one.
    pub db: Option<String>,
    /// Whether CloudFormation manages the stack (a triad stack) rather than it being attached.
    pub managed: bool,
    /// The subnets the stack's template made (empty for an attached group).
    pub stack_subnets: Vec<String>,
    /// Where clients reach the stack: the load balancer's DNS name as a URL.
    pub endpoint: Option<String>,
}

const ASG_TYPE: &str = "AWS::AutoScaling::AutoScalingGroup";
const TARGET_GROUP_TYPE: &str = "AWS::ElasticLoadBalancingV2::TargetGroup";
const LOAD_BALANCER_TYPE: &str = "AWS::ElasticLoadBalancingV2::LoadBalancer";
const DB_TYPE: &str = "AWS::RDS::DBInstance";
const SUBNET_TYPE: &str = "AWS::EC2::Subnet";

/// The resources of `stack`: the attached group's when the backend is attached, else the
/// triad stack's.
pub(crate) async fn resolve(cloud: &AwsCloud, stack: &StackRef) -> Result<Resources, CloudError> {
    let ops = cloud.ops_for(stack);
    let mut resources = match &cloud.attach {
        Some(attach) => {
            let group = describe_group(&ops, &attach.asg).await?;
            Resources {
                asg: attach.asg.clone(),
                target_groups: group.target_group_arns().to_vec(),
                load_balancers: Vec::new(),
                db: attach.db.clone(),
                managed: false,
                stack_subnets: Vec::new(),
                endpoint: None,
            }
        }
        None => stack_resources(cloud, stack).await?,
    };
    if resources.load_balancers.is_empty() && !resources.target_groups.is_empty() {
        let groups = ops
            .elb
            .describe_target_groups()
            .set_target_group_arns(Some(resources.target_groups.clone()))
            .send()
            .await
            .map_err(|e| from_sdk("elasticloadbalancing", "DescribeTargetGroups", e))?;
        let arns: BTreeSet<String> = groups
            .target_groups()
            .iter()
            .flat_map(|g| g.load_balancer_arns().iter().cloned())
            .collect();
        resources.load_balancers = arns.into_iter().collect();
    }
    if !resources.load_balancers.is_empty() {
        let answer = ops
            .elb
            .describe_load_balancers()
            .set_load_balancer_arns(Some(resources.load_balancers.clone()))
            .send()
            .await
            .map_err(|e| from_sdk("elasticloadbalancing", "DescribeLoadBalancers", e))?;
        resources.endpoint = answer
            .load_balancers()
            .iter()
            .find_map(|lb| lb.dns_name())
            .map(|dns| format!("http://{dns}"));
    }
    Ok(resources)
}

/// A triad stack's resources, from ListStackResources (all pages).
async fn stack_resources(cloud: &AwsCloud, stack: &StackRef) -> Result<Resources, CloudError> {
    let client = cloud.cfn_for(stack);
    if cfn::describe_stack(&client, &stack.name).await?.is_none() {
        return Err(CloudError::not_found(format!("stack {stack}")));
    }
    let mut found: Vec<(String, String)> = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_stack_resources()
            .stack_name(&stack.name)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("cloudformation", "ListStackResources", e))?;
        found.extend(page.stack_resource_summaries().iter().filter_map(|r| {
            Some((
                r.resource_type()?.to_owned(),
                r.physical_resource_id()?.to_owned(),
            ))
        }));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let of_type = |kind: &str| -> Vec<String> {
        found
            .iter()
            .filter(|(t, id)| t == kind && !id.is_empty())
            .map(|(_, id)| id.clone())
            .collect()
    };
    let asg = of_type(ASG_TYPE)
        .into_iter()
        .next()
        .ok_or_else(|| CloudError::not_found(format!("an Auto Scaling group in stack {stack}")))?;
    Ok(Resources {
        asg,
        target_groups: of_type(TARGET_GROUP_TYPE),
        load_balancers: of_type(LOAD_BALANCER_TYPE),
        db: of_type(DB_TYPE).into_iter().next(),
        managed: true,
        stack_subnets: of_type(SUBNET_TYPE),
        endpoint: None,
    })
}

/// The group called `name` (`NotFound` when there is none).
pub(crate) async fn describe_group(
    ops: &OpsClients,
    name: &str,
) -> Result<AutoScalingGroup, CloudError> {
    let answer = ops
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "DescribeAutoScalingGroups", e))?;
    answer
        .auto_scaling_groups()
        .first()
        .cloned()
        .ok_or_else(|| CloudError::not_found(format!("Auto Scaling group {name}")))
}

/// A group's subnets, in the order its VPCZoneIdentifier lists them.
pub(crate) fn group_subnets(group: &AutoScalingGroup) -> Vec<String> {
    group
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The AZ and VPC of each of `subnets`, asking EC2 only about those not cached yet (one
/// DescribeSubnets call for all of them).
pub(crate) async fn subnet_infos(
    cloud: &AwsCloud,
    ops: &OpsClients,
    subnets: &[String],
) -> Result<Vec<(String, SubnetInfo)>, CloudError> {
    let missing: Vec<String> = {
        let cache = cloud.cache();
        subnets
            .iter()
            .filter(|s| !cache.subnets.contains_key(*s))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    if !missing.is_empty() {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = ops
                .ec2
                .describe_subnets()
                .set_subnet_ids(Some(missing.clone()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| from_sdk("ec2", "DescribeSubnets", e))?;
            found.extend(page.subnets().iter().filter_map(|s| {
                Some((
                    s.subnet_id()?.to_owned(),
                    SubnetInfo {
                        az: s.availability_zone()?.to_owned(),
                        vpc: s.vpc_id()?.to_owned(),
                    },
                ))
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        cloud.cache().subnets.extend(found);
    }
    let cache = cloud.cache();
    Ok(subnets
        .iter()
        .filter_map(|s| Some((s.clone(), cache.subnets.get(s)?.clone())))
        .collect())
}
