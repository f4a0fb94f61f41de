//! Zonal shift on AWS with Amazon Application Recovery Controller (ARC): one shift per
//! resource, on the stack's load balancer(s) and its Auto Scaling group together.
//!
//! - ARC names the AZ by its **ID** (`use1-az4`), the same physical zone in every account,
//!   while the stack's spec and snapshots name it (`us-east-1a`), a per-account alias:
//!   [`zone_id`] and [`zone_name`] map between them with EC2 DescribeAvailabilityZones
//!   (read once per backend, cached).
//! - Before starting, each resource must have zonal shift turned on: the load balancer's
//!   `zonal_shift.config.enabled` attribute
//!   (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/zonal-shift.html>)
//!   and the group's `AvailabilityZoneImpairmentPolicy.ZonalShiftEnabled`
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-zonal-shift.html>).
//!   A resource without it is refused before anything is started, saying how to turn it on
//!   ([`check_enabled`]).
//! - StartZonalShift (<https://docs.aws.amazon.com/arc-zonal-shift/latest/api/API_StartZonalShift.html>)
//!   takes `expiresIn` in whole minutes, hours or days ([`expires_in_text`]) and a comment of
//!   at most 128 characters. The load balancer's shift is started first, then the group's;
//!   when one fails, the ones already started are cancelled, and the error says what was and
//!   was not changed.
//! - The active shifts are ListZonalShifts with status ACTIVE, kept to the stack's resources
//!   and grouped into one [`ZonalShift`] per AZ ([`group_shifts`]). A snapshot carries them,
//!   which is what the shared rules ([`check_shift`](crate::port::check_shift)) read.
//! - Cancel is CancelZonalShift on every active shift of the stack's resources (away from the
//!   AZ given, if any).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_arczonalshift::types::{ZonalShiftStatus, ZonalShiftSummary};

use super::error::{from_sdk, to_time};
use super::resources::{Resources, describe_group, resolve};
use super::{AwsCloud, OpsClients};
use crate::port::{CloudError, ShiftRequest, StackRef, ZonalShift};

/// The load balancer attribute that lets ARC shift it.
pub const LB_ZONAL_SHIFT_ATTRIBUTE: &str = "zonal_shift.config.enabled";

/// The comment ARC gets when the request has none (ARC requires one).
const DEFAULT_COMMENT: &str = "triad shift";

/// `expires_in` as ARC's `expiresIn`: whole days or hours when it is one, else minutes,
/// rounded up (ARC takes no seconds: "90s" shifts for 2m).
pub fn expires_in_text(expires_in: Duration) -> String {
    let seconds = expires_in.as_secs();
    if seconds > 0 && seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else if seconds > 0 && seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}m", seconds.div_ceil(60).max(1))
    }
}

/// The AZ ID of the AZ called `name`, from DescribeAvailabilityZones' (name, ID) pairs.
pub fn zone_id(zones: &[(String, String)], name: &str) -> Result<String, CloudError> {
    zones
        .iter()
        .find(|(zone, _)| zone == name)
        .map(|(_, id)| id.clone())
        .ok_or_else(|| {
            CloudError::invalid(
                "az",
                format!(
                    "{name:?} is not an Availability Zone of this region ({})",
                    zones
                        .iter()
                        .map(|(zone, id)| format!("{zone} = {id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

/// The AZ name of the AZ ID `id` (the ID itself when this account has no such zone).
pub fn zone_name(zones: &[(String, String)], id: &str) -> String {
    zones
        .iter()
        .find(|(_, zone_id)| zone_id == id)
        .map_or_else(|| id.to_owned(), |(name, _)| name.clone())
}

/// The region's (AZ name, AZ ID) pairs, read once per backend.
pub(crate) async fn zones(
    cloud: &AwsCloud,
    ops: &OpsClients,
) -> Result<Vec<(String, String)>, CloudError> {
    {
        let cache = cloud.cache();
        if !cache.zones.is_empty() {
            return Ok(cache.zones.clone());
        }
    }
    let answer = ops
        .ec2
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| from_sdk("ec2", "DescribeAvailabilityZones", e))?;
    let zones: Vec<(String, String)> = answer
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_owned(), z.zone_id()?.to_owned())))
        .collect();
    cloud.cache().zones = zones.clone();
    Ok(zones)
}

/// A resource ARC shifts: its ARN and how the operator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shiftable {
    pub arn: String,
    pub label: String,
}

/// The stack's shiftable resources: its load balancers, then its group. `group_arn` is the
/// group's ARN from DescribeAutoScalingGroups.
pub(crate) fn shiftables(resources: &Resources, group_arn: Option<&str>) -> Vec<Shiftable> {
    let mut found: Vec<Shiftable> = resources
        .load_balancers
        .iter()
        .map(|arn| Shiftable {
            arn: arn.clone(),
            label: format!("load balancer {}", lb_name(arn)),
        })
        .collect();
    if let Some(arn) = group_arn {
        found.push(Shiftable {
            arn: arn.to_owned(),
            label: format!("auto scaling group {}", resources.asg),
        });
    }
    found
}

/// `app/web/50dc6c495c0c9188` → `web`; anything else as given.
fn lb_name(arn: &str) -> &str {
    arn.split_once(":loadbalancer/")
        .and_then(|(_, rest)| rest.split('/').nth(1))
        .unwrap_or(arn)
}

/// Refuses a shift when a resource does not have zonal shift turned on: `lb_enabled` is each
/// load balancer's `zonal_shift.config.enabled` (`None` when it does not have the attribute),
/// `group_enabled` the group's `AvailabilityZoneImpairmentPolicy.ZonalShiftEnabled`.
pub fn check_enabled(
    resources_managed: bool,
    lb_enabled: &[(String, Option<bool>)],
    group: (&str, Option<bool>),
) -> Result<(), CloudError> {
    let mut problems = Vec::new();
    for (arn, enabled) in lb_enabled {
        if *enabled != Some(true) {
            let how = if resources_managed {
                "re-apply the stack's template (`triad up --aws`), which turns it on".to_owned()
            } else {
                format!(
                    "turn it on with `aws elbv2 modify-load-balancer-attributes \
                     --load-balancer-arn {arn} --attributes \
                     Key={LB_ZONAL_SHIFT_ATTRIBUTE},Value=true`"
                )
            };
            problems.push(format!(
                "load balancer {} does not have {LB_ZONAL_SHIFT_ATTRIBUTE}=true: {how}",
                lb_name(arn)
            ));
        }
    }
    let (name, enabled) = group;
    if enabled != Some(true) {
        let how = if resources_managed {
            "re-apply the stack's template (`triad up --aws`), which sets it".to_owned()
        } else {
            format!(
                "set it with `aws autoscaling update-auto-scaling-group \
                 --auto-scaling-group-name {name} --availability-zone-impairment-policy \
                 ZonalShiftEnabled=true,ImpairedZoneHealthCheckBehavior=ReplaceUnhealthy`"
            )
        };
        problems.push(format!(
            "auto scaling group {name} does not have zonal shift enabled in its Availability \
             Zone impairment policy: {how}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CloudError::refused(format!(
            "zonal shift is not turned on, nothing was shifted: {}",
            problems.join("; ")
        )))
    }
}

/// Groups ARC's shift summaries (already kept to the stack's resources) into one shift per
/// AZ, named as the stack names it; `label` says how the operator knows each resource.
pub fn group_shifts(
    summaries: &[ZonalShiftSummary],
    zones: &[(String, String)],
    label: impl Fn(&str) -> String,
) -> Vec<ZonalShift> {
    let mut by_az: BTreeMap<String, ZonalShift> = BTreeMap::new();
    for summary in summaries {
        let az = zone_name(zones, summary.away_from());
        let started_at = to_time(summary.start_time());
        let expires_at = to_time(summary.expiry_time());
        let shift = by_az.entry(az.clone()).or_insert_with(|| ZonalShift {
            az,
            started_at,
            expires_at,
            resources: Vec::new(),
            ids: Vec::new(),
            comment: summary.comment().to_owned(),
        });
        shift.started_at = shift.started_at.min(started_at);
        shift.expires_at = shift.expires_at.min(expires_at);
        shift.resources.push(label(summary.resource_identifier()));
        shift.ids.push(summary.zonal_shift_id().to_owned());
    }
    by_az.into_values().collect()
}

/// Every ACTIVE zonal shift of the account in the region (ListZonalShifts, all pages).
pub(crate) async fn all_active(ops: &OpsClients) -> Result<Vec<ZonalShiftSummary>, CloudError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = ops
            .arc
            .list_zonal_shifts()
            .status(ZonalShiftStatus::Active)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| from_sdk("arc-zonal-shift", "ListZonalShifts", e))?;
        found.extend(page.items().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(found)
}

/// The active ones of `summaries` on any of `shiftables`.
pub(crate) fn on_resources(
    summaries: Vec<ZonalShiftSummary>,
    shiftables: &[Shiftable],
) -> Vec<ZonalShiftSummary> {
    summaries
        .into_iter()
        .filter(|s| *s.status() == ZonalShiftStatus::Active)
        .filter(|s| shiftables.iter().any(|r| r.arn == s.resource_identifier()))
        .collect()
}

/// The stack's active shifts, one per AZ.
pub(crate) async fn list(
    cloud: &AwsCloud,
    stack: &StackRef,
) -> Result<Vec<ZonalShift>, CloudError> {
    let ops = cloud.ops_for(stack);
    let resources = resolve(cloud, stack).await?;
    let group = describe_group(&ops, &resources.asg).await?;
    let shiftables = shiftables(&resources, group.auto_scaling_group_arn());
    active(cloud, &ops, &shiftables).await
}

/// The active shifts on `shiftables`, one per AZ.
pub(crate) async fn active(
    cloud: &AwsCloud,
    ops: &OpsClients,
    shiftables: &[Shiftable],
) -> Result<Vec<ZonalShift>, CloudError> {
    let summaries = on_resources(all_active(ops).await?, shiftables);
    named(cloud, ops, shiftables, &summaries).await
}

/// `summaries` grouped per AZ and named as the stack names its AZs (the AZ IDs are mapped
/// only when there is a shift).
pub(crate) async fn named(
    cloud: &AwsCloud,
    ops: &OpsClients,
    shiftables: &[Shiftable],
    summaries: &[ZonalShiftSummary],
) -> Result<Vec<ZonalShift>, CloudError> {
    if summaries.is_empty() {
        return Ok(Vec::new());
    }
    let zones = zones(cloud, ops).await?;
    Ok(group_shifts(summaries, &zones, |arn| {
        label_of(shiftables, arn)
    }))
}

fn label_of(shiftables: &[Shiftable], arn: &str) -> String {
    shiftables
        .iter()
        .find(|r| r.arn == arn)
        .map_or_else(|| arn.to_owned(), |r| r.label.clone())
}

/// Starts the shift on the stack's load balancers and group. The shared rules
/// ([`check_shift`](crate::port::check_shift)) have been applied by the guard.
pub(crate) async fn start(
    cloud: &AwsCloud,
    stack: &StackRef,
    request: &ShiftRequest,
) -> Result<ZonalShift, CloudError> {
    request.validate()?;
    let ops = cloud.ops_for(stack);
    let resources = resolve(cloud, stack).await?;
    let group = describe_group(&ops, &resources.asg).await?;
    let mut lb_enabled = Vec::new();
    for arn in &resources.load_balancers {
        lb_enabled.push((arn.clone(), lb_attribute(&ops, arn).await?));
    }
    check_enabled(
        resources.managed,
        &lb_enabled,
        (
            &resources.asg,
            group
                .availability_zone_impairment_policy()
                .and_then(|p| p.zonal_shift_enabled()),
        ),
    )?;
    let Some(group_arn) = group.auto_scaling_group_arn() else {
        return Err(CloudError::not_found(format!(
            "the ARN of Auto Scaling group {}",
            resources.asg
        )));
    };
    let shiftables = shiftables(&resources, Some(group_arn));
    let zones = zones(cloud, &ops).await?;
    let away_from = zone_id(&zones, &request.az)?;
    let expires_in = expires_in_text(request.expires_in);
    let comment = if request.comment.trim().is_empty() {
        DEFAULT_COMMENT
    } else {
        request.comment.as_str()
    };

    let mut started: Vec<(Shiftable, String)> = Vec::new();
    let mut shift: Option<ZonalShift> = None;
    for resource in &shiftables {
        let answer = ops
            .arc
            .start_zonal_shift()
            .resource_identifier(&resource.arn)
            .away_from(&away_from)
            .expires_in(&expires_in)
            .comment(comment)
            .send()
            .await
            .map_err(|e| shift_error(from_sdk("arc-zonal-shift", "StartZonalShift", e)));
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                return Err(undo_start(&ops, &shiftables, &started, resource, error).await);
            }
        };
        let (started_at, expires_at) =
            (to_time(answer.start_time()), to_time(answer.expiry_time()));
        let entry = shift.get_or_insert_with(|| ZonalShift {
            az: request.az.clone(),
            started_at,
            expires_at,
            resources: Vec::new(),
            ids: Vec::new(),
            comment: comment.to_owned(),
        });
        entry.expires_at = entry.expires_at.min(expires_at);
        entry.resources.push(resource.label.clone());
        entry.ids.push(answer.zonal_shift_id().to_owned());
        started.push((resource.clone(), answer.zonal_shift_id().to_owned()));
    }
    shift.ok_or_else(|| CloudError::not_found(format!("a resource of stack {stack} to shift")))
}

/// After `failed` could not be shifted (`error`): cancels the shifts already `started`, and
/// says what was and was not changed.
async fn undo_start(
    ops: &OpsClients,
    all: &[Shiftable],
    started: &[(Shiftable, String)],
    failed: &Shiftable,
    error: CloudError,
) -> CloudError {
    if started.is_empty() {
        return error;
    }
    let mut cancelled = Vec::new();
    let mut left = Vec::new();
    for (resource, id) in started {
        match cancel_one(ops, id).await {
            Ok(()) => cancelled.push(resource.label.clone()),
            Err(cancel_error) => left.push(format!(
                "{} (zonal shift {id}: cancelling it failed: {cancel_error})",
                resource.label
            )),
        }
    }
    let untouched: Vec<String> = all
        .iter()
        .filter(|r| r.arn != failed.arn && !started.iter().any(|(s, _)| s.arn == r.arn))
        .map(|r| r.label.clone())
        .collect();
    let mut message = format!(
        "shifting {} failed ({error}); the shift already started on {} ",
        failed.label,
        started
            .iter()
            .map(|(r, _)| r.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if left.is_empty() {
        message.push_str("was cancelled: nothing is shifted");
    } else {
        message.push_str(&format!(
            "could not all be cancelled; still shifted: {} — cancel with `triad shift cancel`",
            left.join(", ")
        ));
        if !cancelled.is_empty() {
            message.push_str(&format!("; cancelled: {}", cancelled.join(", ")));
        }
    }
    if !untouched.is_empty() {
        message.push_str(&format!("; not started on {}", untouched.join(", ")));
    }
    CloudError::backend("arc-zonal-shift", "PartialZonalShift", message)
}

/// Cancels the stack's active shifts (away from `az`, if given), on every resource.
pub(crate) async fn cancel(
    cloud: &AwsCloud,
    stack: &StackRef,
    az: Option<&str>,
) -> Result<Vec<ZonalShift>, CloudError> {
    let shifts: Vec<ZonalShift> = list(cloud, stack)
        .await?
        .into_iter()
        .filter(|shift| az.is_none_or(|az| shift.az == az))
        .collect();
    if shifts.is_empty() {
        return Err(CloudError::not_found(match az {
            Some(az) => format!("an active zonal shift away from {az}"),
            None => "an active zonal shift".to_owned(),
        }));
    }
    let ops = cloud.ops_for(stack);
    for shift in &shifts {
        for id in &shift.ids {
            cancel_one(&ops, id).await?;
        }
    }
    Ok(shifts)
}

/// CancelZonalShift; one that has already ended (expired, or cancelled elsewhere) is fine.
async fn cancel_one(ops: &OpsClients, id: &str) -> Result<(), CloudError> {
    match ops
        .arc
        .cancel_zonal_shift()
        .zonal_shift_id(id)
        .send()
        .await
        .map_err(|e| from_sdk("arc-zonal-shift", "CancelZonalShift", e))
    {
        Ok(_) => Ok(()),
        Err(CloudError::Backend { code, .. }) if code == "ResourceNotFoundException" => Ok(()),
        Err(error) => Err(shift_error(error)),
    }
}

/// ARC's ConflictException (a shift is already active on the resource) as the port's conflict.
fn shift_error(error: CloudError) -> CloudError {
    match error {
        CloudError::Backend { code, message, .. } if code == "ConflictException" => {
            CloudError::conflict(format!(
                "{message}; one zonal shift per resource at a time: `triad shift cancel` first"
            ))
        }
        other => other,
    }
}

/// A load balancer's `zonal_shift.config.enabled` (`None` when it has no such attribute).
async fn lb_attribute(ops: &OpsClients, arn: &str) -> Result<Option<bool>, CloudError> {
    let answer = ops
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| from_sdk("elasticloadbalancing", "DescribeLoadBalancerAttributes", e))?;
    Ok(answer
        .attributes()
        .iter()
        .find(|a| a.key() == Some(LB_ZONAL_SHIFT_ATTRIBUTE))
        .and_then(|a| a.value())
        .map(|value| value.eq_ignore_ascii_case("true")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Vec<(String, String)> {
        [
            ("us-east-1a", "use1-az6"),
            ("us-east-1b", "use1-az1"),
            ("us-east-1c", "use1-az2"),
        ]
        .into_iter()
        .map(|(n, i)| (n.to_owned(), i.to_owned()))
        .collect()
    }

    #[test]
    fn az_names_map_to_the_ids_arc_takes_and_back() {
        let zones = zones();
        assert_eq!(
            zone_id(&zones, "us-east-1b").ok().as_deref(),
            Some("use1-az1")
        );
        assert_eq!(zone_name(&zones, "use1-az2"), "us-east-1c");
        let unknown = zone_id(&zones, "us-east-1z").expect_err("not a zone");
        assert!(
            matches!(&unknown, CloudError::Invalid { field, reason }
                if field == "az" && reason.contains("us-east-1a = use1-az6")),
            "{unknown}"
        );
        assert_eq!(zone_name(&zones, "use1-az9"), "use1-az9");
    }

    #[test]
    fn expires_in_is_whole_minutes_hours_or_days() {
        let text = |s| expires_in_text(Duration::from_secs(s));
        assert_eq!(text(60), "1m");
        assert_eq!(text(90), "2m");
        assert_eq!(text(1800), "30m");
        assert_eq!(text(7200), "2h");
        assert_eq!(text(5400), "90m");
        assert_eq!(text(3 * 86_400), "3d");
    }

    #[test]
    fn a_resource_without_zonal_shift_is_refused_with_how_to_turn_it_on() {
        let lb = "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/web/50dc".to_owned();
        assert!(check_enabled(false, &[(lb.clone(), Some(true))], ("web", Some(true))).is_ok());
        let refused = check_enabled(false, &[(lb.clone(), None)], ("web", Some(true)))
            .expect_err("attribute missing");
        assert!(refused.is_refusal(), "{refused}");
        let text = refused.to_string();
        assert!(text.contains("load balancer web"), "{text}");
        assert!(
            text.contains("Key=zonal_shift.config.enabled,Value=true"),
            "{text}"
        );
        let refused = check_enabled(true, &[(lb, Some(false))], ("web", None))
            .expect_err("both off")
            .to_string();
        assert!(refused.contains("triad up --aws"), "{refused}");
        assert!(refused.contains("auto scaling group web"), "{refused}");
    }
}
