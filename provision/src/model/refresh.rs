//! The instance refresh, as part of the group model.
//!
//! Statuses and their order follow "Check the status of an instance refresh"
//! (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/check-status-instance-refresh.html>):
//! `Pending` → `InProgress` → (`Baking` →) `Successful`; `Failed`; `Cancelling` →
//! `Cancelled`; `RollbackInProgress` → `RollbackSuccessful` / `RollbackFailed`.
//!
//! - Batches: `desired × (MaxHealthyPercentage − MinHealthyPercentage) / 100` instances at a
//!   time, at least one. With MaxHealthyPercentage above 100 the replacements launch before
//!   the old instances stop; otherwise the old ones stop first
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/understand-instance-refresh-default-values.html>).
//!   The replacement goes to the AZ of the instance it replaces.
//! - A batch is done when every replacement's target is healthy and InstanceWarmup (the
//!   group's default instance warmup when the refresh sets none) has passed
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-default-instance-warmup.html>).
//!   A replacement that is lost, or a batch not healthy within the model's batch timeout,
//!   fails the refresh, which rolls back with AutoRollback
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html>).
//! - SkipMatching leaves instances already on the desired configuration
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-refresh-skip-matching.html>).
//! - CheckpointPercentages and CheckpointDelay pause the refresh; a last checkpoint below
//!   100 ends it there (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-adding-checkpoints-instance-refresh.html>).
//! - BakeTime holds the refresh in `Baking` before `Successful`.
//! - StandbyInstances (AWS's default `Wait`): instances in Standby are replaced once they
//!   return to service, and the refresh fails when only they are left and none returns within
//!   an hour ([`Timings::standby_wait`]); `Ignore` leaves them out; `Terminate` terminates them
//!   when the refresh (or its rollback) starts — they do not count toward desired capacity, so
//!   the group's in-service instances already stand in for them
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html>).
//!   The group model has no scale-in protection, so ScaleInProtectedInstances changes nothing
//!   here.
//! - Cancel lets the batch in flight finish, then `Cancelled`
//!   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CancelInstanceRefresh.html>);
//!   rollback stops the batch in flight and replaces every instance not on the previous
//!   configuration (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RollbackInstanceRefresh.html>).
//!
//! The refusals (already in progress, nothing to cancel, irreversible) are
//! [`crate::port::RefreshRefusal`].

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::group::Group;
use super::timings::Timings;
use crate::port::{
    CheckpointInfo, HealthStatus, LifecycleState, Refresh, RefreshId, RefreshPreferences,
    RefreshStatus, RollbackDetails, StandbyInstances, TargetState,
};

#[derive(Debug, Clone)]
pub(super) struct Batch {
    new_ids: Vec<String>,
    old_ids: Vec<String>,
    started: OffsetDateTime,
    healthy_since: Option<OffsetDateTime>,
}

/// One refresh and what it still has to do.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(super) refresh: Refresh,
    desired: u32,
    previous: u32,
    prefs: RefreshPreferences,
    /// Instances still to replace.
    todo: BTreeSet<String>,
    total: u32,
    batch: Option<Batch>,
    passed: BTreeSet<u8>,
    resume_at: Option<OffsetDateTime>,
    bake_until: Option<OffsetDateTime>,
    /// Instances left when a last checkpoint below 100 ended the refresh.
    partial_end: Option<u32>,
    /// Since when only instances in Standby are left to replace (StandbyInstances `Wait`).
    standby_since: Option<OffsetDateTime>,
}

/// `done` of `total` as a whole percentage (100 when there is nothing to do).
pub fn percentage(done: u32, total: u32) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from((u64::from(done) * 100 / u64::from(total)).min(100)).unwrap_or(100)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Run {
    pub(super) fn new(
        now: OffsetDateTime,
        id: RefreshId,
        desired: u32,
        previous: u32,
        version: &str,
        prefs: RefreshPreferences,
        todo: BTreeSet<String>,
    ) -> Run {
        let total = count(todo.len());
        Run {
            refresh: Refresh {
                id,
                status: RefreshStatus::Pending,
                status_reason: None,
                started_at: Some(now),
                ended_at: None,
                percentage_complete: Some(0),
                instances_to_update: Some(total),
                desired_version: Some(version.to_owned()),
                desired_launch_template_version: Some(desired.to_string()),
                preferences: Some(prefs.clone()),
                checkpoint: None,
                rollback: None,
            },
            desired,
            previous,
            prefs,
            todo,
            total,
            batch: None,
            passed: BTreeSet::new(),
            resume_at: None,
            bake_until: None,
            partial_end: None,
            standby_since: None,
        }
    }

    pub(super) fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    pub(super) fn cancel(&mut self) -> RefreshId {
        self.refresh.status = RefreshStatus::Cancelling;
        self.refresh.id.clone()
    }

    /// When this run next moves by the clock alone.
    pub(super) fn deadline(&self, timings: &Timings) -> Option<OffsetDateTime> {
        if self.refresh.status == RefreshStatus::Pending {
            return self.refresh.started_at;
        }
        let warmup = self
            .prefs
            .instance_warmup_seconds
            .map(|s| std::time::Duration::from_secs(u64::from(s)))
            .unwrap_or(timings.default_warmup);
        let batch = self.batch.as_ref().map(|b| match b.healthy_since {
            Some(since) => since + warmup,
            None => b.started + timings.refresh_batch_timeout,
        });
        let standby = self.standby_since.map(|since| since + timings.standby_wait);
        [self.resume_at, self.bake_until, batch, standby]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Group {
    pub(super) fn step_refresh(
        &mut self,
        now: OffsetDateTime,
        target: &dyn Fn(&str) -> TargetState,
    ) {
        let Some(index) = self
            .runs
            .iter()
            .position(|r| !r.refresh.status.is_terminal())
        else {
            return;
        };
        let before = self.runs[index].refresh.status;
        self.with_run(index, |group, run| group.advance(now, run, target));
        self.refresh_status_event(now, index, before);
    }

    /// A replacement could not be launched: the refresh waiting for it fails.
    pub(super) fn refresh_replacement_lost(&mut self, now: OffsetDateTime, id: &str, reason: &str) {
        let Some(index) = self.runs.iter().position(|r| {
            !r.refresh.status.is_terminal()
                && r.batch
                    .as_ref()
                    .is_some_and(|b| b.new_ids.iter().any(|n| n == id))
        }) else {
            return;
        };
        let before = self.runs[index].refresh.status;
        self.with_run(index, |group, run| {
            group.stop_batch(now, run, "instance refresh failed");
            group.fail(now, run, reason.to_owned());
        });
        self.refresh_status_event(now, index, before);
    }

    fn stop_batch(&mut self, now: OffsetDateTime, run: &mut Run, why: &str) {
        if let Some(batch) = run.batch.take() {
            for id in &batch.new_ids {
                self.terminate(now, id, why);
            }
        }
    }

    pub(super) fn fail(&mut self, now: OffsetDateTime, run: &mut Run, reason: String) {
        if run.refresh.status == RefreshStatus::RollbackInProgress {
            run.refresh.status = RefreshStatus::RollbackFailed;
            run.refresh.status_reason = Some(reason);
            return;
        }
        if run.prefs.auto_rollback {
            self.start_rollback(now, run, reason);
        } else {
            self.stop_batch(now, run, "instance refresh failed");
            run.refresh.status = RefreshStatus::Failed;
            run.refresh.status_reason = Some(reason);
        }
    }

    pub(super) fn start_rollback(&mut self, now: OffsetDateTime, run: &mut Run, reason: String) {
        self.stop_batch(now, run, "instance refresh rolled back");
        let previous = run.previous;
        run.refresh.status = RefreshStatus::RollbackInProgress;
        run.refresh.status_reason = Some(reason.clone());
        run.todo = self.refresh_scope(now, &run.prefs, |m| m.template != previous);
        run.resume_at = None;
        run.standby_since = None;
        run.refresh.checkpoint = None;
        let todo = count(run.todo.len());
        run.refresh.rollback = Some(RollbackDetails {
            reason: Some(reason),
            started_at: Some(now),
            percentage_complete_on_rollback: run.refresh.percentage_complete,
            instances_to_update_on_rollback: Some(todo),
        });
        run.total = todo;
        run.refresh.instances_to_update = Some(todo);
    }

    fn batch_size(&self, prefs: &RefreshPreferences) -> usize {
        let span = u32::from(prefs.max_healthy_percentage)
            .saturating_sub(u32::from(prefs.min_healthy_percentage));
        usize::try_from(self.capacity().desired * span / 100)
            .unwrap_or(1)
            .max(1)
    }

    fn advance(
        &mut self,
        now: OffsetDateTime,
        run: &mut Run,
        target: &dyn Fn(&str) -> TargetState,
    ) {
        match run.refresh.status {
            RefreshStatus::Pending => {
                run.refresh.status = RefreshStatus::InProgress;
                return;
            }
            RefreshStatus::Baking => {
                if run.bake_until.is_none_or(|t| now >= t) {
                    run.refresh.status = RefreshStatus::Successful;
                    run.refresh.status_reason = None;
                    self.current = run.desired;
                }
                return;
            }
            RefreshStatus::Cancelling if run.batch.is_none() => {
                run.refresh.status = RefreshStatus::Cancelled;
                run.refresh.status_reason = Some("Instance refresh was cancelled.".into());
                return;
            }
            RefreshStatus::InProgress
            | RefreshStatus::RollbackInProgress
            | RefreshStatus::Cancelling => {}
            _ => return,
        }
        if let Some(new_ids) = run.batch.as_ref().map(|b| b.new_ids.clone()) {
            // A replacement lost fails the refresh.
            let lost = new_ids.iter().find(|id| {
                self.members
                    .iter()
                    .find(|m| &&m.id == id)
                    .is_none_or(|m| !m.is_live())
            });
            if let Some(id) = lost {
                let failed_checks = self
                    .members
                    .iter()
                    .any(|m| &m.id == id && m.health == HealthStatus::Unhealthy);
                let reason = if failed_checks {
                    format!(
                        "Instance refresh failed: the replacement instance {id} failed ELB \
                         health checks"
                    )
                } else {
                    format!(
                        "Instance refresh failed: the replacement instance {id} was terminated \
                         before it became healthy"
                    )
                };
                self.stop_batch(now, run, "instance refresh failed");
                self.fail(now, run, reason);
                return;
            }
            let all_healthy = new_ids.iter().all(|id| target(id) == TargetState::Healthy);
            let warmup = self.warmup(&run.prefs);
            let limit = self.timings.refresh_batch_timeout;
            let Some(batch) = run.batch.as_mut() else {
                return;
            };
            if !all_healthy {
                batch.healthy_since = None;
                if now >= batch.started + limit {
                    let reason = format!(
                        "Instance refresh failed: replacement instances did not pass ELB health \
                         checks within {} s",
                        limit.as_secs()
                    );
                    self.stop_batch(now, run, "instance refresh failed");
                    self.fail(now, run, reason);
                }
                return;
            }
            let since = *batch.healthy_since.get_or_insert(now);
            if now < since + warmup {
                return;
            }
            let old_ids = std::mem::take(&mut batch.old_ids);
            run.batch = None;
            for id in &old_ids {
                self.terminate(now, id, "instance refresh");
            }
            let done = run.total.saturating_sub(count(run.todo.len()));
            let pct = percentage(done, run.total);
            run.refresh.percentage_complete = Some(pct);
            run.refresh.instances_to_update = Some(count(run.todo.len()));
            if run.refresh.status == RefreshStatus::InProgress {
                self.checkpoint(now, run, pct);
            }
        }
        if run.refresh.status == RefreshStatus::Cancelling {
            run.refresh.status = RefreshStatus::Cancelled;
            run.refresh.status_reason = Some("Instance refresh was cancelled.".into());
            return;
        }
        if run.resume_at.is_some_and(|t| now < t) {
            return;
        }
        if run.resume_at.take().is_some() {
            run.refresh.checkpoint = None;
            run.refresh.status_reason = None;
        }
        // Forget instances that went away on their own (or, unless the refresh waits for
        // them, went into Standby).
        let wait = run.prefs.standby_instances == StandbyInstances::Wait;
        let kept: BTreeSet<&str> = self
            .members
            .iter()
            .filter(|m| m.is_live() && (wait || m.lifecycle != LifecycleState::Standby))
            .map(|m| m.id.as_str())
            .collect();
        run.todo.retain(|id| kept.contains(id.as_str()));
        if run.todo.is_empty() {
            self.finish(now, run);
            return;
        }
        if self.waiting_for_standby(now, run) {
            return;
        }
        self.start_batch(now, run);
    }

    /// The instances a refresh (or its rollback) is to replace: those `wanted` that count
    /// toward capacity, and those in Standby as the StandbyInstances preference says —
    /// included (`Wait`), left out (`Ignore`) or terminated now (`Terminate`).
    pub(super) fn refresh_scope(
        &mut self,
        now: OffsetDateTime,
        prefs: &RefreshPreferences,
        wanted: impl Fn(&super::group::Member) -> bool,
    ) -> BTreeSet<String> {
        let mut todo = BTreeSet::new();
        let mut standby = Vec::new();
        for m in self.members().iter().filter(|m| m.is_live() && wanted(m)) {
            if m.lifecycle == LifecycleState::Standby {
                standby.push(m.id.clone());
            } else {
                todo.insert(m.id.clone());
            }
        }
        match prefs.standby_instances {
            StandbyInstances::Wait => todo.extend(standby),
            StandbyInstances::Ignore => {}
            StandbyInstances::Terminate => {
                for id in &standby {
                    self.terminate(now, id, "instance refresh (StandbyInstances: Terminate)");
                }
            }
        }
        todo
    }

    /// Whether every instance left to replace is in Standby: the refresh waits for one to
    /// return to service, and fails after [`Timings::standby_wait`].
    fn waiting_for_standby(&mut self, now: OffsetDateTime, run: &mut Run) -> bool {
        let only_standby = run.todo.iter().all(|id| {
            self.member(id)
                .is_some_and(|m| m.lifecycle == LifecycleState::Standby)
        });
        if !only_standby {
            run.standby_since = None;
            return false;
        }
        let since = *run.standby_since.get_or_insert(now);
        let limit = self.timings.standby_wait;
        if now >= since + limit {
            run.standby_since = None;
            let reason = format!(
                "Instance refresh failed: {} instance(s) in Standby did not return to service \
                 within {} s (StandbyInstances: Wait)",
                run.todo.len(),
                limit.as_secs()
            );
            self.fail(now, run, reason);
        } else {
            run.refresh.status_reason = Some(format!(
                "Waiting for {} instance(s) in Standby to return to service",
                run.todo.len()
            ));
        }
        true
    }

    /// After a batch at `pct` %: pause at a checkpoint reached, or end at the last one.
    fn checkpoint(&mut self, now: OffsetDateTime, run: &mut Run, pct: u8) {
        let reached = run
            .prefs
            .checkpoint_percentages
            .iter()
            .copied()
            .filter(|c| *c <= pct && !run.passed.contains(c))
            .max();
        let Some(checkpoint) = reached else {
            return;
        };
        run.passed.extend(
            run.prefs
                .checkpoint_percentages
                .iter()
                .filter(|c| **c <= pct),
        );
        let last = run.prefs.checkpoint_percentages.last().copied();
        if Some(checkpoint) == last && run.prefs.is_partial() {
            // The refresh ends here; the instances left are reported as not updated.
            run.partial_end = Some(count(run.todo.len()));
            run.todo.clear();
        } else if !run.todo.is_empty() {
            let delay = run.prefs.effective_checkpoint_delay_seconds().unwrap_or(0);
            let resumes_at = now + time::Duration::seconds(delay.into());
            run.refresh.checkpoint = Some(CheckpointInfo {
                percentage: checkpoint,
                reached_at: now,
                resumes_at: Some(resumes_at),
            });
            run.refresh.status_reason = Some(format!("Waiting at checkpoint {checkpoint}%"));
            run.resume_at = Some(resumes_at);
        }
    }

    fn finish(&mut self, now: OffsetDateTime, run: &mut Run) {
        run.refresh.percentage_complete = Some(100);
        run.refresh.instances_to_update = Some(run.partial_end.unwrap_or(0));
        if run.refresh.status == RefreshStatus::RollbackInProgress {
            run.refresh.status = RefreshStatus::RollbackSuccessful;
            run.refresh.status_reason = Some(format!(
                "Instance refresh rolled back to launch template version {}",
                run.previous
            ));
            self.current = run.previous;
        } else if run.prefs.bake_time_seconds > 0 {
            run.refresh.status = RefreshStatus::Baking;
            run.bake_until =
                Some(now + time::Duration::seconds(run.prefs.bake_time_seconds.into()));
        } else {
            run.refresh.status = RefreshStatus::Successful;
            run.refresh.status_reason = None;
            self.current = run.desired;
        }
    }

    fn start_batch(&mut self, now: OffsetDateTime, run: &mut Run) {
        let template = if run.refresh.status == RefreshStatus::RollbackInProgress {
            run.previous
        } else {
            run.desired
        };
        let size = self.batch_size(&run.prefs);
        let old: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|m| {
                m.is_live() && m.lifecycle != LifecycleState::Standby && run.todo.contains(&m.id)
            })
            .take(size)
            .map(|m| (m.id.clone(), m.az.clone()))
            .collect();
        let launch_first = run.prefs.max_healthy_percentage > 100;
        if !launch_first {
            for (id, _) in &old {
                self.terminate(now, id, "instance refresh");
            }
        }
        let mut new_ids = Vec::new();
        for (_, az) in &old {
            match self.launch(now, template, Some(az), " (instance refresh)") {
                Some(id) => new_ids.push(id),
                None => {
                    for id in &new_ids {
                        self.terminate(now, id, "instance refresh failed");
                    }
                    self.fail(
                        now,
                        run,
                        "Instance refresh failed: no Availability Zone is enabled for launches"
                            .into(),
                    );
                    return;
                }
            }
        }
        for (id, _) in &old {
            run.todo.remove(id);
        }
        run.batch = Some(Batch {
            new_ids,
            old_ids: if launch_first {
                old.into_iter().map(|(id, _)| id).collect()
            } else {
                Vec::new()
            },
            started: now,
            healthy_since: None,
        });
    }
}
