//! Deploys and instance refreshes.
//!
//! A triad stack is deployed through CloudFormation, which stays the source of truth: the
//! webapp binary (if given) is uploaded to the artefact bucket under its version (skipped when
//! the same SHA-256 is there), the stack's `AppVersion` parameter is changed through a change
//! set that keeps its template (a new launch template version, which the group references),
//! and then an instance refresh rolls the group onto it. An attached group has no template: a
//! new launch template version is made from the group's current one (described as the deploy,
//! tagging the instances with the version), and the refresh rolls onto that.
//!
//! Cancel, rollback and the waiter use Auto Scaling's own calls and status names.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types::{
    AlarmSpecification, DesiredConfiguration, LaunchTemplateSpecification,
    RefreshPreferences as SdkPreferences, ScaleInProtectedInstances as SdkScaleIn,
    StandbyInstances as SdkStandby,
};
use aws_sdk_ec2::types::{
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
};
use futures::StreamExt;

use super::artefacts::{artefact_bucket, upload_artefact, webapp_key};
use super::error::from_sdk;
use super::observe::recent_refreshes;
use super::resources::{Resources, describe_group, resolve};
use super::{AwsCloud, OpsClients, cfn};
use crate::port::{
    CloudError, CloudStream, DeployRequest, ProvisionEvent, Refresh, RefreshId, RefreshPreferences,
    ScaleInProtectedInstances, StackRef, StandbyInstances,
};
use crate::template::params;

pub use crate::template::VERSION_TAG;

/// The SDK's refresh preferences for the port's.
pub(crate) fn sdk_preferences(prefs: &RefreshPreferences) -> SdkPreferences {
    let seconds = |s: u32| i32::try_from(s).unwrap_or(i32::MAX);
    let mut builder = SdkPreferences::builder()
        .min_healthy_percentage(i32::from(prefs.min_healthy_percentage))
        .max_healthy_percentage(i32::from(prefs.max_healthy_percentage))
        .set_instance_warmup(prefs.instance_warmup_seconds.map(seconds))
        .set_checkpoint_delay(prefs.checkpoint_delay_seconds.map(seconds))
        .skip_matching(prefs.skip_matching)
        .auto_rollback(prefs.auto_rollback)
        .bake_time(seconds(prefs.bake_time_seconds))
        .scale_in_protected_instances(SdkScaleIn::from(
            prefs.scale_in_protected_instances.as_aws_str(),
        ))
        .standby_instances(SdkStandby::from(prefs.standby_instances.as_aws_str()));
    if !prefs.checkpoint_percentages.is_empty() {
        builder = builder.set_checkpoint_percentages(Some(
            prefs
                .checkpoint_percentages
                .iter()
                .map(|&p| i32::from(p))
                .collect(),
        ));
    }
    if !prefs.alarms.is_empty() {
        builder = builder.alarm_specification(
            AlarmSpecification::builder()
                .set_alarms(Some(prefs.alarms.clone()))
                .build(),
        );
    }
    builder.build()
}

/// The port's refresh preferences for the SDK's (AWS's defaults where it says nothing).
pub(crate) fn preferences_of(sdk: &SdkPreferences) -> RefreshPreferences {
    let defaults = RefreshPreferences::default();
    let seconds = |s: Option<i32>| s.and_then(|s| u32::try_from(s).ok());
    RefreshPreferences {
        min_healthy_percentage: sdk
            .min_healthy_percentage()
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(defaults.min_healthy_percentage),
        max_healthy_percentage: sdk
            .max_healthy_percentage()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(defaults.max_healthy_percentage),
        instance_warmup_seconds: seconds(sdk.instance_warmup()),
        checkpoint_percentages: sdk
            .checkpoint_percentages()
            .iter()
            .filter_map(|&p| u8::try_from(p).ok())
            .collect(),
        checkpoint_delay_seconds: seconds(sdk.checkpoint_delay()),
        skip_matching: sdk.skip_matching().unwrap_or(defaults.skip_matching),
        auto_rollback: sdk.auto_rollback().unwrap_or(defaults.auto_rollback),
        alarms: sdk
            .alarm_specification()
            .map(|a| a.alarms().to_vec())
            .unwrap_or_default(),
        bake_time_seconds: seconds(sdk.bake_time()).unwrap_or(defaults.bake_time_seconds),
        scale_in_protected_instances: sdk
            .scale_in_protected_instances()
            .and_then(|v| v.as_str().parse::<ScaleInProtectedInstances>().ok())
            .unwrap_or(defaults.scale_in_protected_instances),
        standby_instances: sdk
            .standby_instances()
            .and_then(|v| v.as_str().parse::<StandbyInstances>().ok())
            .unwrap_or(defaults.standby_instances),
    }
}

/// Rolls `request` out (see the module's comment) and returns the refresh's id.
pub(crate) async fn deploy(
    cloud: &AwsCloud,
    stack: &StackRef,
    request: &DeployRequest,
) -> Result<RefreshId, CloudError> {
    if !request.env.is_empty() {
        return Err(CloudError::invalid(
            "env",
            "environment overrides are not supported on AWS: the instances' environment is \
             part of the stack spec (change stack.toml and run triad up)",
        ));
    }
    let resources = resolve(cloud, stack).await?;
    let ops = cloud.ops_for(stack);
    let launch_template = if resources.managed {
        update_stack_version(cloud, stack, request).await?;
        current_launch_template(&ops, &resources).await?
    } else {
        if request.binary.is_some() {
            return Err(CloudError::invalid(
                "binary",
                format!(
                    "group {} was not created by triad: it has no artefact bucket to upload \
                     a binary to",
                    resources.asg
                ),
            ));
        }
        new_launch_template_version(&ops, &resources, &request.version).await?
    };
    start_refresh(&ops, &resources.asg, launch_template, &request.preferences).await
}

/// Uploads the binary (if any) and sets the stack's `AppVersion` through a change set.
async fn update_stack_version(
    cloud: &AwsCloud,
    stack: &StackRef,
    request: &DeployRequest,
) -> Result<(), CloudError> {
    if let Some(path) = &request.binary {
        let body = tokio::fs::read(path).await.map_err(|e| {
            CloudError::invalid("binary", format!("cannot read {}: {e}", path.display()))
        })?;
        let bootstrap = StackRef {
            name: format!("{}-bootstrap", stack.name),
            region: stack.region.clone(),
        };
        let bucket = artefact_bucket(cloud, &bootstrap).await?;
        upload_artefact(
            cloud,
            stack.region.as_deref(),
            &bucket,
            &webapp_key(&request.version),
            body,
        )
        .await?;
    }
    let client = cloud.cfn_for(stack);
    let parameters = BTreeMap::from([(params::APP_VERSION.to_owned(), request.version.clone())]);
    let plan = cfn::plan_parameter_update(&client, stack, &parameters, &cloud.polling).await?;
    if plan.is_empty() {
        return Ok(());
    }
    let mut events = cfn::apply(client, plan, cloud.polling);
    while let Some(event) = events.next().await {
        if let ProvisionEvent::Finished {
            stack_status,
            summary,
            ..
        } = event?
            && !stack_status.is_success()
        {
            return Err(CloudError::backend(
                "cloudformation",
                stack_status.to_string(),
                format!(
                    "updating stack {stack} to version {} ended {stack_status}{}",
                    request.version,
                    summary.map(|s| format!(": {s}")).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// The launch template (id, version) the group uses now.
async fn current_launch_template(
    ops: &OpsClients,
    resources: &Resources,
) -> Result<(String, String), CloudError> {
    let group = describe_group(ops, &resources.asg).await?;
    let template = group.launch_template().ok_or_else(|| {
        CloudError::refused(format!(
            "group {} does not use a launch template",
            resources.asg
        ))
    })?;
    let id = template.launch_template_id().ok_or_else(|| {
        CloudError::refused(format!(
            "group {} names its launch template without an id",
            resources.asg
        ))
    })?;
    Ok((
        id.to_owned(),
        template.version().unwrap_or("$Default").to_owned(),
    ))
}

/// A new version of the group's launch template, made from the version it uses now, with
/// the deploy's version in its description and on its instances.
async fn new_launch_template_version(
    ops: &OpsClients,
    resources: &Resources,
    version: &str,
) -> Result<(String, String), CloudError> {
    let (id, source) = current_launch_template(ops, resources).await?;
    let created = ops
        .ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .source_version(&source)
        .version_description(format!("triad deploy {version}"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .tag_specifications(
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(ResourceType::Instance)
                        .tags(Tag::builder().key(VERSION_TAG).value(version).build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| from_sdk("ec2", "CreateLaunchTemplateVersion", e))?;
    let number = created
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| {
            CloudError::backend(
                "ec2",
                "CreateLaunchTemplateVersion",
                "no version number returned",
            )
        })?;
    Ok((id, number.to_string()))
}

async fn start_refresh(
    ops: &OpsClients,
    asg: &str,
    (template_id, template_version): (String, String),
    preferences: &RefreshPreferences,
) -> Result<RefreshId, CloudError> {
    let started = ops
        .autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name(asg)
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(template_id)
                        .version(template_version)
                        .build(),
                )
                .build(),
        )
        .preferences(sdk_preferences(preferences))
        .send()
        .await
        .map_err(
            |e| match from_sdk("autoscaling", "StartInstanceRefresh", e) {
                CloudError::Backend { code, message, .. }
                    if code == "InstanceRefreshInProgress" =>
                {
                    CloudError::conflict(message)
                }
                other => other,
            },
        )?;
    started
        .instance_refresh_id()
        .map(|id| RefreshId(id.to_owned()))
        .ok_or_else(|| {
            CloudError::backend(
                "autoscaling",
                "StartInstanceRefresh",
                "no refresh id returned",
            )
        })
}

pub(crate) async fn cancel(cloud: &AwsCloud, stack: &StackRef) -> Result<RefreshId, CloudError> {
    let resources = resolve(cloud, stack).await?;
    let answer = cloud
        .ops_for(stack)
        .autoscaling
        .cancel_instance_refresh()
        .auto_scaling_group_name(&resources.asg)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "CancelInstanceRefresh", e));
    refresh_id(
        answer.map(|a| a.instance_refresh_id),
        "CancelInstanceRefresh",
        &resources.asg,
    )
}

pub(crate) async fn rollback(cloud: &AwsCloud, stack: &StackRef) -> Result<RefreshId, CloudError> {
    let resources = resolve(cloud, stack).await?;
    let answer = cloud
        .ops_for(stack)
        .autoscaling
        .rollback_instance_refresh()
        .auto_scaling_group_name(&resources.asg)
        .send()
        .await
        .map_err(|e| from_sdk("autoscaling", "RollbackInstanceRefresh", e));
    refresh_id(
        answer.map(|a| a.instance_refresh_id),
        "RollbackInstanceRefresh",
        &resources.asg,
    )
}

/// The refresh id a cancel or rollback answered with; Auto Scaling's "no active refresh"
/// is `NotFound`.
fn refresh_id(
    answer: Result<Option<String>, CloudError>,
    operation: &str,
    asg: &str,
) -> Result<RefreshId, CloudError> {
    match answer {
        Ok(Some(id)) => Ok(RefreshId(id)),
        Ok(None) => Err(CloudError::backend(
            "autoscaling",
            operation,
            "no refresh id returned",
        )),
        Err(CloudError::Backend { code, .. }) if code == "ActiveInstanceRefreshNotFound" => Err(
            CloudError::not_found(format!("an active instance refresh of group {asg}")),
        ),
        Err(error) => Err(error),
    }
}

/// The refresh `id` each time it changes, polled every `interval` (longer while throttled),
/// ending after its first terminal status.
pub(crate) fn wait(
    cloud: AwsCloud,
    stack: StackRef,
    id: RefreshId,
    interval: Duration,
) -> CloudStream<Refresh> {
    struct Waiter {
        cloud: AwsCloud,
        stack: StackRef,
        id: RefreshId,
        asg: Option<String>,
        last: Option<Refresh>,
        done: bool,
        delay: Duration,
        first: bool,
    }
    let waiter = Waiter {
        cloud,
        stack,
        id,
        asg: None,
        last: None,
        done: false,
        delay: interval,
        first: true,
    };
    futures::stream::unfold(waiter, move |mut w| async move {
        loop {
            if w.done {
                return None;
            }
            if !w.first {
                tokio::time::sleep(w.delay).await;
            }
            w.first = false;
            let asg = match &w.asg {
                Some(asg) => asg.clone(),
                None => match resolve(&w.cloud, &w.stack).await {
                    Ok(resources) => {
                        w.asg = Some(resources.asg.clone());
                        resources.asg
                    }
                    Err(error) => return Some((Err(error), w)),
                },
            };
            let ops = w.cloud.ops_for(&w.stack);
            match recent_refreshes(&ops, &asg, Some(&w.id)).await {
                Err(CloudError::Throttled { .. }) => {
                    w.delay = (w.delay * 2).min(super::observe::MAX_BACKOFF.max(interval));
                }
                Err(error) => return Some((Err(error), w)),
                Ok(refreshes) => {
                    w.delay = interval;
                    let Some(refresh) = refreshes.into_iter().find(|r| r.id == w.id) else {
                        w.done = true;
                        let error =
                            CloudError::not_found(format!("instance refresh {} of {asg}", w.id));
                        return Some((Err(error), w));
                    };
                    if w.last.as_ref() != Some(&refresh) {
                        w.done = refresh.status.is_terminal();
                        w.last = Some(refresh.clone());
                        return Some((Ok(refresh), w));
                    }
                }
            }
        }
    })
    .boxed()
}
