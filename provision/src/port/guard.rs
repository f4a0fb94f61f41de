//! The safety rules, in one place. [`Guarded`] wraps any [`Cloud`] and is what the console
//! holds; backends never check these rules themselves. The rules are also plain functions
//! ([`check_mutation`], [`check_fault`]) so they are tested without a backend.
//!
//! - A read-only session refuses every mutation: apply, destroy, deploy, cancel, rollback,
//!   inject and restore. Plan, snapshot, watch, wait, describe and reading logs are allowed.
//! - A fault touches one AZ at a time: while a fault is active in one AZ, a fault that
//!   touches another is refused (no override).
//! - A fault that takes capacity out of an AZ is refused when the other AZs have no healthy
//!   capacity (healthy load balancer targets, read from a fresh snapshot) — or when that
//!   cannot be verified — unless forced. Failing the database over is refused when there is
//!   no standby, unless forced.
//! - One-instance actions (terminate, unhealthy, standby) are refused in read-only mode and,
//!   unless forced, when no other instance has a healthy target
//!   ([`check_instance_action`](super::instance::check_instance_action)).
//! - A zonal shift is refused in read-only mode (start and cancel), when another is active,
//!   and, unless forced, when it would leave no healthy capacity or the target group is
//!   failing open ([`check_shift`](super::shift::check_shift)).
//! - Inputs are validated before they reach a backend (deploy requests and preferences).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::cloud::{BackendKind, Cloud, CloudStream, failed_stream};
use super::error::CloudError;
use super::fault::{CapacityCheck, Fault, FaultPlan, FaultRecord};
use super::instance::{InstanceAction, InstancePlan, check_instance_action};
use super::logs::{LogCursor, LogPage, LogQuery};
use super::names::join;
use super::refresh::{DeployRequest, Refresh, RefreshId};
use super::shift::{ShiftRequest, ZonalShift, check_shift};
use super::snapshot::{Section, Snapshot};
use super::stack::{DesiredStack, Plan, ProvisionEvent, StackRef};

/// Whether the session may change the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    #[default]
    ReadWrite,
    /// `--read-only`: every mutation is refused.
    ReadOnly,
}

/// Refuses `operation` in a read-only session.
pub fn check_mutation(mode: SessionMode, operation: &str) -> Result<(), CloudError> {
    match mode {
        SessionMode::ReadWrite => Ok(()),
        SessionMode::ReadOnly => Err(CloudError::ReadOnly {
            operation: operation.to_owned(),
        }),
    }
}

/// Applies the fault rules to `fault` given the current `snapshot` and the faults still
/// `active`. Returns the AZ the fault touches.
pub fn check_fault(
    snapshot: &Snapshot,
    fault: &Fault,
    active: &[FaultRecord],
    check: CapacityCheck,
) -> Result<String, CloudError> {
    let az = touched_az(snapshot, fault)?;
    if snapshot.az(&az).is_none() {
        let known: Vec<&str> = snapshot.azs.iter().map(|v| v.az.as_str()).collect();
        return Err(CloudError::invalid(
            "az",
            format!("{az:?} is not one of the stack's AZs ({})", join(&known)),
        ));
    }
    if let Some(other) = active.iter().find(|record| {
        record
            .az
            .as_deref()
            .is_some_and(|active_az| active_az != az)
    }) {
        return Err(CloudError::refused(format!(
            "{} is active in {}; faults touch one AZ at a time — restore it before \
             touching {az}",
            other.fault,
            other.az.as_deref().unwrap_or("another AZ"),
        )));
    }
    if check == CapacityCheck::Force {
        return Ok(az);
    }
    if fault.removes_capacity() {
        let unreadable = [Section::Targets, Section::Instances]
            .into_iter()
            .find_map(|section| snapshot.error_for(section));
        if let Some(error) = unreadable {
            return Err(CloudError::refused(format!(
                "cannot verify healthy capacity outside {az} ({error}); use --force to \
                 inject anyway"
            )));
        }
        if snapshot.healthy_capacity_outside(&az) == 0 {
            return Err(CloudError::refused(format!(
                "no healthy capacity outside {az}: the stack would stop serving; use --force \
                 to inject anyway"
            )));
        }
    }
    let fails_over = match fault {
        Fault::FailoverDb => true,
        Fault::AzOutage { .. } => snapshot.db_primary_az() == Some(az.as_str()),
        _ => false,
    };
    if fails_over && snapshot.db_standby_az().is_none() {
        return Err(CloudError::refused(format!(
            "the database has no standby to fail over to from {az}; use --force to inject \
             anyway"
        )));
    }
    Ok(az)
}

/// The AZ a fault touches: the one it names, or the database primary's for `FailoverDb`.
fn touched_az(snapshot: &Snapshot, fault: &Fault) -> Result<String, CloudError> {
    if let Some(az) = fault.az() {
        return Ok(az.to_owned());
    }
    if let Some(az) = snapshot.db_primary_az() {
        return Ok(az.to_owned());
    }
    Err(match snapshot.error_for(Section::Database) {
        Some(error) => CloudError::refused(format!(
            "cannot tell which AZ holds the database primary ({error})"
        )),
        None => CloudError::refused("the stack has no database primary to fail over"),
    })
}

/// A [`Cloud`] with the safety rules applied to every call. It remembers the faults injected
/// through it until they are restored; seed it with the journal's unrestored records after
/// a restart ([`Guarded::with_active_faults`]).
pub struct Guarded<C> {
    inner: C,
    mode: SessionMode,
    /// Held across the snapshot and the inject, so two injects cannot race the rules.
    active: Arc<Mutex<Vec<FaultRecord>>>,
}

impl<C: Cloud> Guarded<C> {
    pub fn new(inner: C, mode: SessionMode) -> Self {
        Self {
            inner,
            mode,
            active: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Counts `records` as active faults (from a journal, after a restart).
    pub fn with_active_faults(self, records: impl IntoIterator<Item = FaultRecord>) -> Self {
        let active = records.into_iter().collect();
        Self {
            active: Arc::new(Mutex::new(active)),
            ..self
        }
    }

    /// The session's mode.
    pub fn mode(&self) -> SessionMode {
        self.mode
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Faults injected through this guard (or seeded) and not yet restored.
    pub async fn active_faults(&self) -> Vec<FaultRecord> {
        self.active.lock().await.clone()
    }
}

#[async_trait]
impl<C: Cloud> Cloud for Guarded<C> {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        self.inner.plan(desired).await
    }

    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent> {
        match check_mutation(self.mode, "apply") {
            Ok(()) => self.inner.apply(plan),
            Err(error) => failed_stream(error),
        }
    }

    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent> {
        match check_mutation(self.mode, "destroy") {
            Ok(()) => self.inner.destroy(stack),
            Err(error) => failed_stream(error),
        }
    }

    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        self.inner.snapshot(stack).await
    }

    fn watch(&self, stack: &StackRef, interval: Duration) -> CloudStream<Snapshot> {
        self.inner.watch(stack, interval)
    }

    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        check_mutation(self.mode, "deploy")?;
        request.validate()?;
        self.inner.deploy(stack, request).await
    }

    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        check_mutation(self.mode, "cancel refresh")?;
        self.inner.cancel_refresh(stack).await
    }

    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        check_mutation(self.mode, "rollback refresh")?;
        self.inner.rollback_refresh(stack).await
    }

    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh> {
        self.inner.wait_refresh(stack, id)
    }

    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        self.inner.describe_fault(stack, fault).await
    }

    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        check_mutation(self.mode, "inject")?;
        let mut active = self.active.lock().await;
        let snapshot = self.inner.snapshot(stack).await?;
        let az = check_fault(&snapshot, fault, &active, check)?;
        let mut record = self.inner.inject(stack, fault, check).await?;
        record.forced = check == CapacityCheck::Force;
        record.az.get_or_insert(az);
        active.push(record.clone());
        Ok(record)
    }

    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        self.inner.describe_instance_action(stack, id, action).await
    }

    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError> {
        check_mutation(self.mode, &format!("instance {}", action.verb()))?;
        // Held like inject's, so two actions cannot race the capacity rule.
        let _active = self.active.lock().await;
        let snapshot = self.inner.snapshot(stack).await?;
        check_instance_action(&snapshot, id, action, check == CapacityCheck::Force)?;
        self.inner.act_on_instance(stack, id, action, check).await
    }

    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError> {
        check_mutation(self.mode, "restore")?;
        let mut active = self.active.lock().await;
        self.inner.restore(record).await?;
        active.retain(|r| r.id != record.id);
        Ok(())
    }

    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        query.validate()?;
        self.inner.logs(stack, query, cursor).await
    }

    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError> {
        check_mutation(self.mode, "zonal shift")?;
        // Held like inject's, so two shifts cannot race the rules.
        let _active = self.active.lock().await;
        let snapshot = self.inner.snapshot(stack).await?;
        check_shift(&snapshot, request, check)?;
        self.inner.start_zonal_shift(stack, request, check).await
    }

    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        check_mutation(self.mode, "cancel zonal shift")?;
        self.inner.cancel_zonal_shift(stack, az).await
    }

    async fn zonal_shifts(&self, stack: &StackRef) -> Result<Vec<ZonalShift>, CloudError> {
        self.inner.zonal_shifts(stack).await
    }
}
