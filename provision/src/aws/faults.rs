//! Faults with AWS's own mechanisms, each recorded exactly so restore undoes exactly it:
//!
//! - terminate: ec2:TerminateInstances on the AZ's InService instances (the group replaces
//!   them; not undone);
//! - blackhole: a new network ACL (a custom NACL denies everything until entries are added)
//!   swapped in with ec2:ReplaceNetworkAclAssociation on the AZ's subnets — the technique of
//!   FIS and adhorn's chaos scripts; restore puts each subnet's original NACL back and deletes
//!   the new one. On a triad stack that is every subnet of the stack in the AZ (the private
//!   one of the instances and the database, the public one of the load balancer's node and
//!   the NAT gateway), as an AZ's network failing would; on an attached group, whose other
//!   subnets triad does not know, the group's subnets there;
//! - launch block: the AZ's subnets removed from the group's VPCZoneIdentifier and AZRebalance
//!   suspended (unless it already was); restore sets the exact original subnet list back and
//!   resumes only what was suspended;
//! - failover: rds:RebootDBInstance with ForceFailover, refused when the instance is not
//!   Multi-AZ (not undone);
//! - slow-az: ssm:SendCommand of AWS's `AWSFIS-Run-Network-Latency` document on the AZ's
//!   InService instances, on the interface each one names for its default route; restore
//!   cancels the command and removes the delay on the same instances (see [`super::slow`]).
//!
//! The steps and their order are the port's ([`Fault::steps`]). When a step fails midway,
//! the steps already taken are restored before the error is returned, so nothing is left
//! changed without a record. Restore is harmless to repeat: it compares with what is there
//! now before changing anything.

use std::collections::BTreeSet;

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_rds::types::DbInstance;
use time::OffsetDateTime;

use super::error::from_sdk;
use super::observe::{describe_db, suspended_of};
use super::resources::{Resources, describe_group, group_subnets, resolve, subnet_infos};
use super::slow::{self, LATENCY_DOCUMENT, SHELL_DOCUMENT, SLOW_BACKSTOP_SECONDS};
use super::{AwsCloud, OpsClients};
use crate::port::fault::NOTE_SLOW_AWS;
use crate::port::{
    AwsChange, BackendKind, CapacityCheck, CloudError, Fault, FaultChange, FaultPlan, FaultRecord,
    FaultStep, LifecycleState, PlannedAction, ScalingProcess, StackRef, StepPlan, plan_fault,
};

/// The tag on every NACL a blackhole creates, holding the fault's id.
pub const FAULT_TAG: &str = "triad:fault";

/// What the faults read before acting: the group, its subnets' AZs and the database.
struct Scene {
    resources: Resources,
    group: AutoScalingGroup,
    /// The group's subnets now, in its own order, with their AZ and VPC.
    subnets: Vec<(String, String, String)>,
    /// Subnets the group has had in each AZ (from the cache; includes removed ones).
    seen_subnets: Vec<(String, String, String)>,
    /// Every subnet of a triad stack's template; empty for an attached group.
    stack_subnets: Vec<(String, String, String)>,
    db: Option<DbInstance>,
}

impl Scene {
    async fn read(cloud: &AwsCloud, stack: &StackRef) -> Result<Self, CloudError> {
        let resources = resolve(cloud, stack).await?;
        let ops = cloud.ops_for(stack);
        let group = describe_group(&ops, &resources.asg).await?;
        let current = group_subnets(&group);
        let all: BTreeSet<String> = {
            let mut cache = cloud.cache();
            let seen = cache
                .group_subnets
                .entry(resources.asg.clone())
                .or_default();
            seen.extend(current.iter().cloned());
            seen.clone()
        };
        let all: Vec<String> = all.into_iter().collect();
        let mut asked = all.clone();
        asked.extend(resources.stack_subnets.iter().cloned());
        let infos = subnet_infos(cloud, &ops, &asked).await?;
        let with_info = |ids: &[String]| {
            ids.iter()
                .filter_map(|id| {
                    let (_, info) = infos.iter().find(|(s, _)| s == id)?;
                    Some((id.clone(), info.az.clone(), info.vpc.clone()))
                })
                .collect::<Vec<_>>()
        };
        let db = match &resources.db {
            Some(id) => Some(describe_db(&ops, id).await?),
            None => None,
        };
        Ok(Self {
            subnets: with_info(&current),
            seen_subnets: with_info(&all),
            stack_subnets: with_info(&resources.stack_subnets),
            resources,
            group,
            db,
        })
    }

    fn primary_az(&self) -> Option<&str> {
        self.db.as_ref().and_then(|db| db.availability_zone())
    }

    fn multi_az(&self) -> bool {
        self.db
            .as_ref()
            .and_then(|db| db.multi_az())
            .unwrap_or(false)
    }

    fn db_id(&self) -> Result<&str, CloudError> {
        self.resources.db.as_deref().ok_or_else(|| {
            CloudError::not_found("a database (a triad stack's, or --db for an attached group)")
        })
    }

    /// The group's InService instances in `az`.
    fn in_service(&self, az: &str) -> Vec<String> {
        self.group
            .instances()
            .iter()
            .filter(|i| i.availability_zone() == Some(az))
            .filter(|i| {
                i.lifecycle_state().map(|s| s.as_str())
                    == Some(LifecycleState::InService.as_aws_str())
            })
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Subnets in `az` to blackhole: the group's there now and any a launch block removed,
    /// then the stack's other subnets there (a triad stack's).
    fn blackhole_subnets(&self, az: &str) -> Vec<(String, String)> {
        let mut subnets: Vec<(String, String)> = Vec::new();
        for (id, subnet_az, vpc) in self.seen_subnets.iter().chain(&self.stack_subnets) {
            if subnet_az == az && !subnets.iter().any(|(seen, _)| seen == id) {
                subnets.push((id.clone(), vpc.clone()));
            }
        }
        subnets
    }

    fn block_subnets(&self, az: &str) -> (Vec<String>, Vec<String>) {
        let original: Vec<String> = self.subnets.iter().map(|(id, _, _)| id.clone()).collect();
        let removed = self
            .subnets
            .iter()
            .filter(|(_, subnet_az, _)| subnet_az == az)
            .map(|(id, _, _)| id.clone())
            .collect();
        (original, removed)
    }

    fn rebalance_suspended(&self) -> bool {
        suspended_of(&self.group).contains(&ScalingProcess::AzRebalance)
    }
}

/// The dry run: every resource each step touches and the call it makes.
pub(crate) async fn describe(
    cloud: &AwsCloud,
    stack: &StackRef,
    fault: &Fault,
) -> Result<FaultPlan, CloudError> {
    let scene = Scene::read(cloud, stack).await?;
    check_az(&scene, fault)?;
    let asg = &scene.resources.asg;
    plan_fault(stack, fault, scene.primary_az(), |step| {
        Ok(match step {
            FaultStep::Terminate(az) => StepPlan::of(
                scene
                    .in_service(az)
                    .into_iter()
                    .map(|id| {
                        PlannedAction::new(
                            format!("instance {id}"),
                            "ec2:TerminateInstances",
                            false,
                        )
                    })
                    .collect(),
            ),
            FaultStep::Blackhole(az) => {
                let subnets = scene.blackhole_subnets(az);
                let mut actions: Vec<PlannedAction> = subnets
                    .iter()
                    .map(|(_, vpc)| vpc.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|vpc| {
                        PlannedAction::new(
                            format!("vpc {vpc}"),
                            "ec2:CreateNetworkAcl (deny all)",
                            true,
                        )
                    })
                    .collect();
                actions.extend(subnets.iter().map(|(id, _)| {
                    PlannedAction::new(
                        format!("subnet {id}"),
                        "ec2:ReplaceNetworkAclAssociation (to the deny-all NACL)",
                        true,
                    )
                }));
                let note = if scene.resources.managed {
                    format!(
                        "every subnet of stack {stack} in {az} is blackholed: the instances' \
                         and the database's, and the load balancer's and NAT gateway's"
                    )
                } else {
                    format!(
                        "only the group's subnets in {az} are blackholed: triad does not know \
                         which other subnets (the load balancer's, the database's) a group it \
                         did not create has there"
                    )
                };
                StepPlan {
                    actions,
                    notes: vec![note],
                }
            }
            FaultStep::BlockLaunches(az) => {
                let (_, removed) = scene.block_subnets(az);
                let mut actions = vec![PlannedAction::new(
                    format!("auto scaling group {asg}"),
                    format!(
                        "autoscaling:UpdateAutoScalingGroup (remove {} from its subnets)",
                        if removed.is_empty() {
                            "nothing".to_owned()
                        } else {
                            removed.join(", ")
                        }
                    ),
                    true,
                )];
                if !scene.rebalance_suspended() {
                    actions.push(PlannedAction::new(
                        format!("auto scaling group {asg} process AZRebalance"),
                        "autoscaling:SuspendProcesses",
                        true,
                    ));
                }
                StepPlan::of(actions)
            }
            FaultStep::Slow(az, latency_ms) => {
                let instances = scene.in_service(az);
                let actions = instances
                    .iter()
                    .map(|id| {
                        PlannedAction::new(
                            format!("instance {id}"),
                            format!("ssm:SendCommand {LATENCY_DOCUMENT} (+{latency_ms} ms)"),
                            true,
                        )
                    })
                    .collect();
                let mut notes = vec![
                    NOTE_SLOW_AWS.to_owned(),
                    format!(
                        "before anything changes, ssm:SendCommand {SHELL_DOCUMENT} asks each \
                         instance for the interface of its default route, for the document's \
                         Interface"
                    ),
                    format!(
                        "restore cancels the command and runs `tc qdisc del dev <interface> \
                         root` on the same instances; without a restore the document removes \
                         the delay itself after {SLOW_BACKSTOP_SECONDS}s"
                    ),
                ];
                if instances.is_empty() {
                    notes.push(format!("no InService instance in {az}: nothing to slow"));
                }
                StepPlan { actions, notes }
            }
            FaultStep::Failover => {
                let id = scene.db_id()?;
                let mut plan = StepPlan::of(vec![PlannedAction::new(
                    format!("database {id}"),
                    "rds:RebootDBInstance (ForceFailover)",
                    false,
                )]);
                if !scene.multi_az() {
                    plan.notes.push(format!(
                        "database {id} is not Multi-AZ: a failover will be refused"
                    ));
                }
                plan
            }
        })
    })
}

fn check_az(scene: &Scene, fault: &Fault) -> Result<(), CloudError> {
    let Some(az) = fault.az() else {
        return Ok(());
    };
    let known: BTreeSet<&str> = scene
        .seen_subnets
        .iter()
        .map(|(_, az, _)| az.as_str())
        .chain(scene.stack_subnets.iter().map(|(_, az, _)| az.as_str()))
        .chain(scene.group.availability_zones().iter().map(String::as_str))
        .collect();
    if known.contains(az) {
        return Ok(());
    }
    Err(CloudError::invalid(
        "az",
        format!(
            "{az:?} is not one of the group's AZs ({})",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ))
}

/// Injects `fault`, recording every change in the order made.
pub(crate) async fn inject(
    cloud: &AwsCloud,
    stack: &StackRef,
    fault: &Fault,
    check: CapacityCheck,
) -> Result<FaultRecord, CloudError> {
    let scene = Scene::read(cloud, stack).await?;
    check_az(&scene, fault)?;
    let ops = cloud.ops_for(stack);
    let now = OffsetDateTime::now_utc();
    let id = format!("fault-{}", now.unix_timestamp_nanos());
    let mut changes = Vec::new();
    for step in fault.steps(scene.primary_az()) {
        if let Err(error) = take_step(&ops, &scene, fault, step, &id, &mut changes).await {
            let undone = undo(&ops, &changes).await;
            return Err(match undone {
                Ok(()) => error,
                Err(undo_error) => CloudError::backend(
                    "triad",
                    "PartialFault",
                    format!(
                        "{fault} failed ({error}) and undoing its first {} change(s) failed too \
                         ({undo_error}); changes left in place: {changes:?}",
                        changes.len()
                    ),
                ),
            });
        }
    }
    Ok(FaultRecord {
        id,
        stack: stack.clone(),
        fault: fault.clone(),
        az: fault.az().or(scene.primary_az()).map(str::to_owned),
        forced: check == CapacityCheck::Force,
        injected_at: now,
        changes,
    })
}

async fn take_step(
    ops: &OpsClients,
    scene: &Scene,
    fault: &Fault,
    step: FaultStep<'_>,
    fault_id: &str,
    changes: &mut Vec<FaultChange>,
) -> Result<(), CloudError> {
    let asg = &scene.resources.asg;
    match step {
        FaultStep::Slow(az, latency_ms) => {
            let instances = scene.in_service(az);
            slow::add_latency(ops, az, latency_ms, &instances, fault_id, changes).await?;
        }
        FaultStep::Terminate(az) => {
            let ids = scene.in_service(az);
            if !ids.is_empty() {
                ops.ec2
                    .terminate_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| from_sdk("ec2", "TerminateInstances", e))?;
            }
            changes.push(FaultChange::Aws(AwsChange::InstancesTerminated {
                auto_scaling_group: asg.clone(),
                az: az.to_owned(),
                instance_ids: ids,
            }));
        }
        FaultStep::Blackhole(az) => blackhole(ops, scene, az, fault_id, changes).await?,
        FaultStep::BlockLaunches(az) => {
            let (original, removed) = scene.block_subnets(az);
            if !removed.is_empty() {
                let remaining: Vec<&str> = original
                    .iter()
                    .filter(|s| !removed.contains(s))
                    .map(String::as_str)
                    .collect();
                if remaining.is_empty() {
                    return Err(CloudError::refused(format!(
                        "group {asg} has no subnet outside {az}: blocking launches there would \
                         leave it none"
                    )));
                }
                set_subnets(ops, asg, &remaining.join(",")).await?;
                changes.push(FaultChange::Aws(AwsChange::SubnetsRemovedFromGroup {
                    auto_scaling_group: asg.clone(),
                    original_subnet_ids: original,
                    removed_subnet_ids: removed,
                }));
            }
            if !scene.rebalance_suspended() {
                ops.autoscaling
                    .suspend_processes()
                    .auto_scaling_group_name(asg)
                    .scaling_processes(ScalingProcess::AzRebalance.as_aws_str())
                    .send()
                    .await
                    .map_err(|e| from_sdk("autoscaling", "SuspendProcesses", e))?;
                changes.push(FaultChange::Aws(AwsChange::ProcessesSuspended {
                    auto_scaling_group: asg.clone(),
                    processes: vec![ScalingProcess::AzRebalance],
                }));
            }
        }
        FaultStep::Failover => {
            let id = scene.db_id()?;
            if !scene.multi_az() {
                if matches!(fault, Fault::AzOutage { .. }) {
                    // An outage of the primary's AZ without a standby: nothing to fail over to.
                    return Ok(());
                }
                return Err(CloudError::refused(format!(
                    "database {id} is not Multi-AZ: there is no standby to fail over to"
                )));
            }
            ops.rds
                .reboot_db_instance()
                .db_instance_identifier(id)
                .force_failover(true)
                .send()
                .await
                .map_err(|e| from_sdk("rds", "RebootDBInstance", e))?;
            let db = scene.db.as_ref();
            changes.push(FaultChange::Aws(AwsChange::DbRebootedWithFailover {
                db_instance_id: id.to_owned(),
                from_az: scene.primary_az().unwrap_or_default().to_owned(),
                to_az: db
                    .and_then(|db| db.secondary_availability_zone())
                    .filter(|az| !az.is_empty())
                    .map(str::to_owned),
            }));
        }
    }
    Ok(())
}

/// Swaps a new deny-all NACL in for each of the AZ's subnets.
async fn blackhole(
    ops: &OpsClients,
    scene: &Scene,
    az: &str,
    fault_id: &str,
    changes: &mut Vec<FaultChange>,
) -> Result<(), CloudError> {
    let subnets = scene.blackhole_subnets(az);
    let Some((_, vpc)) = subnets.first() else {
        return Err(CloudError::refused(format!(
            "group {} has no subnet in {az} to blackhole",
            scene.resources.asg
        )));
    };
    let ids: Vec<String> = subnets.iter().map(|(id, _)| id.clone()).collect();
    let current = current_associations(ops, &ids).await?;
    let created = ops
        .ec2
        .create_network_acl()
        .vpc_id(vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::NetworkAcl)
                .tags(Tag::builder().key(FAULT_TAG).value(fault_id).build())
                .tags(
                    Tag::builder()
                        .key("Name")
                        .value(format!("triad blackhole {az}"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| from_sdk("ec2", "CreateNetworkAcl", e))?;
    let nacl = created
        .network_acl()
        .and_then(|n| n.network_acl_id())
        .ok_or_else(|| {
            CloudError::backend("ec2", "CreateNetworkAcl", "no network ACL id returned")
        })?
        .to_owned();
    changes.push(FaultChange::Aws(AwsChange::NetworkAclCreated {
        vpc_id: vpc.clone(),
        network_acl_id: nacl.clone(),
    }));
    for subnet in &ids {
        let Some((association, original)) = current
            .iter()
            .find_map(|(s, a, n)| (s == subnet).then(|| (a.clone(), n.clone())))
        else {
            return Err(CloudError::not_found(format!(
                "the network ACL association of subnet {subnet}"
            )));
        };
        let replaced = ops
            .ec2
            .replace_network_acl_association()
            .association_id(&association)
            .network_acl_id(&nacl)
            .send()
            .await
            .map_err(|e| from_sdk("ec2", "ReplaceNetworkAclAssociation", e))?;
        changes.push(FaultChange::Aws(AwsChange::NetworkAclAssociationReplaced {
            subnet_id: subnet.clone(),
            association_id: replaced
                .new_association_id()
                .unwrap_or(&association)
                .to_owned(),
            original_network_acl_id: original,
        }));
    }
    Ok(())
}

/// (subnet, association id, network ACL id) for each of `subnets` now.
async fn current_associations(
    ops: &OpsClients,
    subnets: &[String],
) -> Result<Vec<(String, String, String)>, CloudError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = ops
            .ec2
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .set_values(Some(subnets.to_vec()))
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("ec2", "DescribeNetworkAcls", e))?;
        for acl in page.network_acls() {
            let Some(acl_id) = acl.network_acl_id() else {
                continue;
            };
            for association in acl.associations() {
                if let (Some(subnet), Some(id)) = (
                    association.subnet_id(),
                    association.network_acl_association_id(),
                ) && subnets.iter().any(|s| s == subnet)
                {
                    found.push((subnet.to_owned(), id.to_owned(), acl_id.to_owned()));
                }
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(found)
}

async fn set_subnets(ops: &OpsClients, asg: &str, subnets: &str) -> Result<(), CloudError> {
    ops.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .vpc_zone_identifier(subnets)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "UpdateAutoScalingGroup", e))?;
    Ok(())
}

/// Undoes the reversible changes of `record`, newest first.
pub(crate) async fn restore(cloud: &AwsCloud, record: &FaultRecord) -> Result<(), CloudError> {
    record.check_made_by(BackendKind::Aws)?;
    undo(&cloud.ops_for(&record.stack), &record.changes).await
}

async fn undo(ops: &OpsClients, changes: &[FaultChange]) -> Result<(), CloudError> {
    for change in changes.iter().rev() {
        let FaultChange::Aws(change) = change else {
            continue;
        };
        match change {
            AwsChange::ProcessesSuspended {
                auto_scaling_group,
                processes,
            } => {
                ops.autoscaling
                    .resume_processes()
                    .auto_scaling_group_name(auto_scaling_group)
                    .set_scaling_processes(Some(
                        processes
                            .iter()
                            .map(|p| p.as_aws_str().to_owned())
                            .collect(),
                    ))
                    .send()
                    .await
                    .map_err(|e| from_sdk("autoscaling", "ResumeProcesses", e))?;
            }
            AwsChange::SubnetsRemovedFromGroup {
                auto_scaling_group,
                original_subnet_ids,
                ..
            } => set_subnets(ops, auto_scaling_group, &original_subnet_ids.join(",")).await?,
            AwsChange::NetworkAclAssociationReplaced {
                subnet_id,
                original_network_acl_id,
                ..
            } => {
                let current = current_associations(ops, std::slice::from_ref(subnet_id)).await?;
                for (_, association, acl) in current {
                    if &acl != original_network_acl_id {
                        ops.ec2
                            .replace_network_acl_association()
                            .association_id(association)
                            .network_acl_id(original_network_acl_id)
                            .send()
                            .await
                            .map_err(|e| from_sdk("ec2", "ReplaceNetworkAclAssociation", e))?;
                    }
                }
            }
            AwsChange::NetworkAclCreated { network_acl_id, .. } => {
                match ops
                    .ec2
                    .delete_network_acl()
                    .network_acl_id(network_acl_id)
                    .send()
                    .await
                    .map_err(|e| from_sdk("ec2", "DeleteNetworkAcl", e))
                {
                    Ok(_) => {}
                    Err(CloudError::Backend { code, .. })
                        if code == "InvalidNetworkAclID.NotFound" => {}
                    Err(error) => return Err(error),
                }
            }
            AwsChange::LatencyAdded {
                command_id,
                instance_ids,
                interface,
                ..
            } => slow::remove_latency(ops, command_id, instance_ids, interface).await?,
            AwsChange::InstancesTerminated { .. } | AwsChange::DbRebootedWithFailover { .. } => {}
        }
    }
    Ok(())
}
