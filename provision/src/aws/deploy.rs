//! Deploys and instance refreshes.
//!
//! A triad stack is deployed through CloudFormation, which stays the source of truth: the
//! webapp binary (if given) is uploaded to the artefact bucket under its version (skipped when
//! the same SHA-256 is there), the stack's `AppVersion` parameter is changed through a change
//! set that keeps its template (a new launch template version, which the group references),
//! and then an instance refresh rolls the group onto it. An attached group has no template: a
//! new launch template version is made from the group's current one (described as the deploy;
//! the current version's tag specifications are kept, with the instances' [`VERSION_TAG`] set
//! to the deploy's version), and the refresh rolls onto that.
//!
//! Environment overrides (`--env K=V`) rewrite the environment file section of the user data
//! (`cat >/etc/triad/webapp.env <<DELIM` … `DELIM`, as both triad's template and
//! `webapp/deploy/user-data.sh.tmpl` write it) in the new launch template version: a name
//! already there gets the new value, a new one is added at the end. They apply to an attached
//! group only. A triad stack's launch template belongs to CloudFormation, which renders the
//! user data from the template and the stack's parameters; a version made beside it would be
//! replaced by the next stack update, so overrides are refused there.
//!
//! Cancel, rollback and the waiter use Auto Scaling's own calls and status names.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use aws_sdk_autoscaling::types::{
    AlarmSpecification, DesiredConfiguration, LaunchTemplateSpecification,
    RefreshPreferences as SdkPreferences, ScaleInProtectedInstances as SdkScaleIn,
    StandbyInstances as SdkStandby,
};
use aws_sdk_ec2::types::{
    LaunchTemplateTagSpecification, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag,
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
use crate::template::{ENV_FILE, params};

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
    let resources = resolve(cloud, stack).await?;
    let ops = cloud.ops_for(stack);
    let launch_template = if resources.managed {
        if !request.env.is_empty() {
            return Err(CloudError::invalid(
                "env",
                format!(
                    "environment overrides cannot be applied to stack {stack}: its launch \
                     template belongs to CloudFormation, which writes the instances' \
                     environment from the template, and a version made beside it would be \
                     replaced by the next stack update. Deploy without --env; overrides apply \
                     to a group attached with --asg, whose launch template is its owner's"
                ),
            ));
        }
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
        new_launch_template_version(&ops, &resources, request).await?
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

/// A new version of the group's launch template, made from the version it uses now (AWS
/// copies everything not given), described as the deploy, with the current version's tag
/// specifications and the instances' [`VERSION_TAG`] set to the deploy's version (a list given
/// replaces the source's whole list, so it is copied), and the user data rewritten when there
/// are environment overrides.
async fn new_launch_template_version(
    ops: &OpsClients,
    resources: &Resources,
    request: &DeployRequest,
) -> Result<(String, String), CloudError> {
    let (id, source) = current_launch_template(ops, resources).await?;
    let current = ops
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&id)
        .versions(&source)
        .send()
        .await
        .map_err(|e| from_sdk("ec2", "DescribeLaunchTemplateVersions", e))?;
    let data = current
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .ok_or_else(|| {
            CloudError::not_found(format!("version {source} of launch template {id}"))
        })?;
    let mut new_data = RequestLaunchTemplateData::builder().set_tag_specifications(Some(
        tag_specifications(data.tag_specifications(), &request.version),
    ));
    if !request.env.is_empty() {
        let user_data = data
            .user_data()
            .map(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        env_refused(
                            resources,
                            "its user data is not base64-encoded text (compressed or binary?)",
                        )
                    })
            })
            .transpose()?
            .unwrap_or_default();
        let rewritten = with_env_overrides(&user_data, &request.env)
            .map_err(|why| env_refused(resources, &why))?;
        new_data = new_data.user_data(base64::engine::general_purpose::STANDARD.encode(rewritten));
    }
    let created = ops
        .ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .source_version(&source)
        .version_description(format!("triad deploy {}", request.version))
        .launch_template_data(new_data.build())
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

fn env_refused(resources: &Resources, why: &str) -> CloudError {
    CloudError::invalid(
        "env",
        format!(
            "environment overrides cannot be applied to group {}: {why}",
            resources.asg
        ),
    )
}

/// The source version's tag specifications with the instances' [`VERSION_TAG`] set to
/// `version` (an instance specification is added when there is none).
fn tag_specifications(
    source: &[LaunchTemplateTagSpecification],
    version: &str,
) -> Vec<LaunchTemplateTagSpecificationRequest> {
    let version_tag = || Tag::builder().key(VERSION_TAG).value(version).build();
    let mut specs: Vec<LaunchTemplateTagSpecificationRequest> = source
        .iter()
        .map(|spec| {
            let instance = spec.resource_type() == Some(&ResourceType::Instance);
            let mut tags: Vec<Tag> = spec
                .tags()
                .iter()
                .filter(|t| !(instance && t.key() == Some(VERSION_TAG)))
                .cloned()
                .collect();
            if instance {
                tags.push(version_tag());
            }
            LaunchTemplateTagSpecificationRequest::builder()
                .set_resource_type(spec.resource_type().cloned())
                .set_tags(Some(tags))
                .build()
        })
        .collect();
    if !source
        .iter()
        .any(|spec| spec.resource_type() == Some(&ResourceType::Instance))
    {
        specs.push(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .tags(version_tag())
                .build(),
        );
    }
    specs
}

/// `user_data` with `env` written into its environment file section (see the module's
/// comment); the reason when it has no such section or a value cannot be written there.
pub(crate) fn with_env_overrides(
    user_data: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    if let Some((name, _)) = env.iter().find(|(_, value)| value.contains(['\n', '\r'])) {
        return Err(format!(
            "the value of {name} has a line break, which an environment file cannot hold"
        ));
    }
    let lines: Vec<&str> = user_data.lines().collect();
    let opening = lines.iter().enumerate().find_map(|(index, line)| {
        let line = line.trim();
        if !(line.starts_with("cat") && line.contains(ENV_FILE)) {
            return None;
        }
        let (_, rest) = line.split_once("<<")?;
        let strip_tabs = rest.starts_with('-');
        let word = rest.trim_start_matches('-').trim();
        let word = word.split_whitespace().next()?;
        let quoted = word.starts_with(['\'', '"']);
        let delimiter = word.trim_matches(['\'', '"']);
        (!delimiter.is_empty()).then(|| (index, delimiter.to_owned(), quoted, strip_tabs))
    });
    let Some((start, delimiter, quoted, strip_tabs)) = opening else {
        return Err(format!(
            "its user data has no environment file section (cat >{ENV_FILE} <<DELIM … DELIM) \
             to write them into"
        ));
    };
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, line)| {
            let line = if strip_tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            line.trim_end() == delimiter
        })
        .map(|(index, _)| index)
        .ok_or_else(|| format!("its {ENV_FILE} section has no closing {delimiter} line"))?;
    let written = |name: &str, value: &str| {
        let value = if quoted {
            value.to_owned()
        } else {
            // An unquoted here-document expands `$`, `` ` `` and `\`: keep them literal.
            value
                .chars()
                .flat_map(|c| match c {
                    '\\' | '$' | '`' => vec!['\\', c],
                    c => vec![c],
                })
                .collect()
        };
        format!("{name}={value}")
    };
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + env.len());
    out.extend(lines[..=start].iter().map(|l| (*l).to_owned()));
    let mut done = std::collections::BTreeSet::new();
    for line in &lines[start + 1..end] {
        let name = line.split_once('=').map(|(name, _)| name.trim());
        match name.and_then(|name| env.get_key_value(name)) {
            Some((name, value)) => {
                out.push(written(name, value));
                done.insert(name.as_str());
            }
            None => out.push((*line).to_owned()),
        }
    }
    for (name, value) in env {
        if !done.contains(name.as_str()) {
            out.push(written(name, value));
        }
    }
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    let mut text = out.join("\n");
    if user_data.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
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
        .map_err(|e| from_sdk("autoscaling", "StartInstanceRefresh", e))?;
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
/// (mapped in [`from_sdk`]) names the group.
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
        Err(CloudError::NotFound { .. }) => Err(CloudError::not_found(format!(
            "an active instance refresh of group {asg}"
        ))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_replace_names_in_the_env_file_section_and_add_new_ones_at_its_end() {
        let user_data = "#!/bin/bash\nVERSION='1'\ncat >/etc/triad/webapp.env <<ENV\n\
                         ROCKET_PORT=$PORT\nTRIAD_VERSION=$VERSION\nENV\necho FEATURE=x\n";
        let rewritten = with_env_overrides(
            user_data,
            &env(&[("ROCKET_PORT", "9000"), ("FEATURE", "on $HOME `x` \\")]),
        )
        .expect("a section");
        assert_eq!(
            rewritten,
            "#!/bin/bash\nVERSION='1'\ncat >/etc/triad/webapp.env <<ENV\n\
             ROCKET_PORT=9000\nTRIAD_VERSION=$VERSION\nFEATURE=on \\$HOME \\`x\\` \\\\\nENV\n\
             echo FEATURE=x\n",
            "an unquoted here-document gets its expansions escaped; lines outside stay"
        );
    }

    #[test]
    fn a_quoted_delimiter_takes_values_as_they_are() {
        let user_data = "cat > /etc/triad/webapp.env <<'EOF'\nA=1\nEOF";
        let rewritten = with_env_overrides(user_data, &env(&[("A", "$2")])).expect("a section");
        assert_eq!(rewritten, "cat > /etc/triad/webapp.env <<'EOF'\nA=$2\nEOF");
    }

    #[test]
    fn user_data_without_the_section_or_a_multi_line_value_is_refused() {
        let none = with_env_overrides("#!/bin/bash\necho hi\n", &env(&[("A", "1")]))
            .expect_err("no section");
        assert!(none.contains("no environment file section"), "{none}");
        let open = with_env_overrides("cat >/etc/triad/webapp.env <<ENV\nA=1\n", &env(&[]))
            .expect_err("unterminated");
        assert!(open.contains("no closing ENV line"), "{open}");
        let broken = with_env_overrides(
            "cat >/etc/triad/webapp.env <<ENV\nENV\n",
            &env(&[("A", "1\n2")]),
        )
        .expect_err("line break");
        assert!(broken.contains("line break"), "{broken}");
    }

    #[test]
    fn the_version_tag_replaces_the_instances_old_one_and_keeps_every_other_tag() {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let source = [
            LaunchTemplateTagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(tag("team", "web"))
                .tags(tag(VERSION_TAG, "1.0.0"))
                .build(),
            LaunchTemplateTagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(tag(VERSION_TAG, "kept on volumes"))
                .build(),
        ];
        let specs = tag_specifications(&source, "2.0.0");
        let flat: Vec<(String, Vec<(String, String)>)> = specs
            .iter()
            .map(|s| {
                (
                    s.resource_type()
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_default(),
                    s.tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or_default().to_owned(),
                                t.value().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            flat,
            [
                (
                    "instance".to_owned(),
                    vec![pair("team", "web"), pair(VERSION_TAG, "2.0.0")]
                ),
                (
                    "volume".to_owned(),
                    vec![pair(VERSION_TAG, "kept on volumes")]
                ),
            ]
        );
        let added = tag_specifications(&[], "2.0.0");
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].resource_type(), Some(&ResourceType::Instance));
    }
}
