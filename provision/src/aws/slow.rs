//! `slow-az` on AWS: Systems Manager Run Command with AWS's published
//! `AWSFIS-Run-Network-Latency` document on the AZ's InService instances, the document AWS FIS
//! itself runs for its network latency action
//! (<https://docs.aws.amazon.com/fis/latest/userguide/actions-ssm-agent.html>). It adds the
//! delay with `tc netem` on one network interface, so it applies to all of the instance's
//! outbound traffic there ([`NOTE_SLOW_AWS`](crate::port::fault::NOTE_SLOW_AWS)).
//!
//! - The interface: the document defaults to `eth0`, which Amazon Linux 2023 on Nitro
//!   instances calls `ens5`. Before anything is changed, an `AWS-RunShellScript` command asks
//!   every instance for the interface of its default route ([`INTERFACE_SCRIPT`]) and waits
//!   for the answers; an instance that does not answer (no SSM agent, no instance role, no
//!   route to Systems Manager) fails the fault with nothing changed. Instances are then sent
//!   the document per interface name, each command recorded ([`AwsChange::LatencyAdded`]).
//! - The document's `DurationSeconds` is [`SLOW_BACKSTOP_SECONDS`]: a backstop after which the
//!   document removes the delay itself when restore never runs.
//! - Restore cancels the command (CancelCommand) and then runs an explicit cleanup on the same
//!   instances that are still running, `tc qdisc del dev <interface> root` with
//!   `AWS-RunShellScript` ([`cleanup_script`]), and waits for it.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::operation::send_command::builders::SendCommandFluentBuilder;
use aws_sdk_ssm::types::CommandInvocationStatus;

use super::OpsClients;
use super::error::from_sdk;
use crate::port::{AwsChange, CloudError, FaultChange};

/// AWS's published latency document (the one FIS runs).
pub const LATENCY_DOCUMENT: &str = "AWSFIS-Run-Network-Latency";
/// AWS's shell-script document.
pub const SHELL_DOCUMENT: &str = "AWS-RunShellScript";
/// How long the document keeps the delay when restore never runs: one hour.
pub const SLOW_BACKSTOP_SECONDS: u32 = 3600;
/// Prints the interface of the instance's default route (`ens5` on Amazon Linux 2023).
pub const INTERFACE_SCRIPT: &str = "ip -o route show default | awk '{print $5; exit}'";
/// How long to wait for a shell command's answers.
const ANSWER_DEADLINE: Duration = Duration::from_secs(120);
/// How often to ask for them.
const ANSWER_POLL: Duration = Duration::from_secs(1);

/// The cleanup restore runs on each instance: removes the root qdisc the document added
/// (none left is fine, so a repeated restore is harmless).
pub fn cleanup_script(interface: &str) -> String {
    format!("tc qdisc del dev {interface} root 2>/dev/null || true")
}

/// The latency document's parameters, by the names AWS's document defines.
pub fn latency_parameters(latency_ms: u32, interface: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DelayMilliseconds", latency_ms.to_string()),
        ("Interface", interface.to_owned()),
        ("DurationSeconds", SLOW_BACKSTOP_SECONDS.to_string()),
        ("InstallDependencies", "True".to_owned()),
    ]
}

/// Whether `name` can be a Linux interface name (at most 15 characters, no separators), so
/// an instance's answer is never pasted into a command unchecked.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Adds `latency_ms` to `instances` (none is nothing to do), pushing one change per command
/// sent as soon as it is sent.
pub(crate) async fn add_latency(
    ops: &OpsClients,
    az: &str,
    latency_ms: u32,
    instances: &[String],
    fault_id: &str,
    changes: &mut Vec<FaultChange>,
) -> Result<(), CloudError> {
    if instances.is_empty() {
        return Ok(());
    }
    let answers = run_shell(ops, instances, INTERFACE_SCRIPT, fault_id).await?;
    let mut by_interface: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (instance, output) in answers {
        let interface = output.trim();
        if !is_interface_name(interface) {
            return Err(CloudError::backend(
                "ssm",
                "NoDefaultRoute",
                format!(
                    "instance {instance} did not name the interface of its default route \
                     (it answered {interface:?}); nothing was slowed"
                ),
            ));
        }
        by_interface
            .entry(interface.to_owned())
            .or_default()
            .push(instance);
    }
    for (interface, instance_ids) in by_interface {
        let mut send = ops
            .ssm
            .send_command()
            .document_name(LATENCY_DOCUMENT)
            .set_instance_ids(Some(instance_ids.clone()))
            .comment(format!("triad slow-az {az} +{latency_ms} ms ({fault_id})"));
        for (name, value) in latency_parameters(latency_ms, &interface) {
            send = send.parameters(name, vec![value]);
        }
        let command_id = send_command(send).await?;
        changes.push(FaultChange::Aws(AwsChange::LatencyAdded {
            az: az.to_owned(),
            command_id,
            instance_ids,
            interface,
            latency_ms,
        }));
    }
    Ok(())
}

/// Undoes one [`AwsChange::LatencyAdded`]: cancels its command, then removes the delay on
/// those of its instances still running and waits for that.
pub(crate) async fn remove_latency(
    ops: &OpsClients,
    command_id: &str,
    instance_ids: &[String],
    interface: &str,
) -> Result<(), CloudError> {
    match ops
        .ssm
        .cancel_command()
        .command_id(command_id)
        .set_instance_ids(Some(instance_ids.to_vec()))
        .send()
        .await
        .map_err(|e| from_sdk("ssm", "CancelCommand", e))
    {
        Ok(_) => {}
        // Finished or expired already: the cleanup below still runs.
        Err(CloudError::Backend { code, .. })
            if code == "InvalidCommandId" || code == "InvalidInstanceId" => {}
        Err(error) => return Err(error),
    }
    let running = running(ops, instance_ids).await?;
    if running.is_empty() {
        return Ok(());
    }
    if !is_interface_name(interface) {
        return Err(CloudError::invalid(
            "interface",
            format!("{interface:?} is not a network interface name"),
        ));
    }
    run_shell(ops, &running, &cleanup_script(interface), command_id).await?;
    Ok(())
}

/// Those of `instance_ids` that are running (a terminated one has no delay to remove).
async fn running(ops: &OpsClients, instance_ids: &[String]) -> Result<Vec<String>, CloudError> {
    let answer = ops
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(instance_ids.to_vec()))
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .map_err(|e| from_sdk("ec2", "DescribeInstances", e))?;
    let mut found: Vec<String> = answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .filter(|id| instance_ids.contains(id))
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// Runs `script` on `instances` with AWS-RunShellScript and waits for every one's answer:
/// (instance, standard output). Fails when one fails or does not answer in time.
async fn run_shell(
    ops: &OpsClients,
    instances: &[String],
    script: &str,
    why: &str,
) -> Result<Vec<(String, String)>, CloudError> {
    let command_id = send_command(
        ops.ssm
            .send_command()
            .document_name(SHELL_DOCUMENT)
            .set_instance_ids(Some(instances.to_vec()))
            .parameters("commands", vec![script.to_owned()])
            .comment(format!("triad ({why})")),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + ANSWER_DEADLINE;
    let mut answers = Vec::new();
    for instance in instances {
        loop {
            let answer = ops
                .ssm
                .get_command_invocation()
                .command_id(&command_id)
                .instance_id(instance)
                .send()
                .await
                .map_err(|e| from_sdk("ssm", "GetCommandInvocation", e));
            let status = match &answer {
                Ok(answer) => answer.status().cloned(),
                // Asked too soon after sending: not there yet.
                Err(CloudError::Backend { code, .. }) if code == "InvocationDoesNotExist" => None,
                Err(error) => return Err(error.clone()),
            };
            match (status, answer) {
                (Some(CommandInvocationStatus::Success), Ok(answer)) => {
                    answers.push((
                        instance.clone(),
                        answer
                            .standard_output_content()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                    break;
                }
                (
                    Some(
                        status @ (CommandInvocationStatus::Failed
                        | CommandInvocationStatus::Cancelled
                        | CommandInvocationStatus::TimedOut),
                    ),
                    Ok(answer),
                ) => {
                    return Err(CloudError::backend(
                        "ssm",
                        "CommandFailed",
                        format!(
                            "{SHELL_DOCUMENT} {command_id} on {instance} ended {}: {}",
                            status.as_str(),
                            answer.standard_error_content().unwrap_or_default().trim()
                        ),
                    ));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CloudError::Unavailable {
                    message: format!(
                        "instance {instance} did not answer Systems Manager within {}s \
                         (command {command_id}): is its SSM agent running, with the instance \
                         role's AmazonSSMManagedInstanceCore policy and a route to the ssm, \
                         ec2messages and ssmmessages endpoints?",
                        ANSWER_DEADLINE.as_secs()
                    ),
                });
            }
            tokio::time::sleep(ANSWER_POLL).await;
        }
    }
    Ok(answers)
}

/// Sends a Run Command request; its command id.
async fn send_command(request: SendCommandFluentBuilder) -> Result<String, CloudError> {
    let sent = request
        .send()
        .await
        .map_err(|e| from_sdk("ssm", "SendCommand", e))?;
    sent.command()
        .and_then(|c| c.command_id())
        .map(str::to_owned)
        .ok_or_else(|| CloudError::backend("ssm", "SendCommand", "no command id returned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_interface_names_reach_a_command() {
        for good in ["ens5", "eth0", "enp39s0", "eth0.100"] {
            assert!(is_interface_name(good), "{good}");
        }
        for bad in ["", "ens5; reboot", "a b", "$(id)", "averyveryverylongname"] {
            assert!(!is_interface_name(bad), "{bad}");
        }
    }
}
