//! The [`Cloud`] trait: every operation the console performs on a stack, whichever backend
//! carries it out. It is object-safe (`Arc<dyn Cloud>`), built with `async-trait`.
//!
//! Long-running operations return a [`CloudStream`] (`BoxStream<'static, Result<T,
//! CloudError>>`) that owns what it needs: the caller may hold it across awaits and drop it
//! at any time. Dropping a stream stops the work of *observing* (a watch stops polling); it
//! does not undo or stop a change already requested from the cloud (a CloudFormation update
//! keeps going when its event stream is dropped).
//!
//! Backends do not enforce the safety rules; [`Guarded`](super::Guarded) does, in one place,
//! and the console only ever holds a guarded cloud.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::error::CloudError;
use super::fault::{CapacityCheck, Fault, FaultPlan, FaultRecord};
use super::instance::{InstanceAction, InstancePlan};
use super::logs::{LogCursor, LogPage, LogQuery};
use super::refresh::{DeployRequest, Refresh, RefreshId};
use super::shift::{ShiftRequest, ZonalShift};
use super::snapshot::Snapshot;
use super::stack::{DesiredStack, Plan, ProvisionEvent, StackRef};

/// A stream of results from a long-running operation.
pub type CloudStream<T> = BoxStream<'static, Result<T, CloudError>>;

/// Which kind of backend a [`Cloud`] is (shown by the console: AWS gets the production cue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Aws,
    Sandbox,
    /// The in-memory test backend.
    Memory,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aws => "aws",
            Self::Sandbox => "sandbox",
            Self::Memory => "memory",
        })
    }
}

/// One interface to a cloud that runs triad stacks.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// What applying `desired` would change. Changes nothing.
    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError>;

    /// Carries out `plan`: `Started`, one item per resource status change, then `Finished`
    /// with the outputs (see [`ProvisionEvent`]).
    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent>;

    /// Deletes the stack, as a stream like `apply`'s (its `Finished` has no outputs).
    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent>;

    /// One snapshot, now.
    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError>;

    /// A snapshot now and then about every `interval` (a backend that knows when its state
    /// changes may yield on change instead). A tick that fails yields an `Err` and the
    /// stream goes on; it ends only when dropped.
    fn watch(&self, stack: &StackRef, interval: Duration) -> CloudStream<Snapshot>;

    /// Starts rolling `request` out with an instance refresh; returns its id once started.
    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError>;

    /// Cancels the active instance refresh (`NotFound` when there is none).
    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError>;

    /// Rolls the active instance refresh back to the previous configuration.
    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError>;

    /// The refresh `id` each time it changes, ending after its first terminal status.
    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh>;

    /// The dry run of `fault`: the AZ and resources it will touch and the calls it will make.
    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError>;

    /// Injects `fault` and records exactly what changed. `check` is for the safety guard;
    /// backends record it in the returned record's `forced` and otherwise ignore it.
    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError>;

    /// Undoes the reversible changes of `record`, newest first. Restoring twice is harmless.
    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError>;

    /// A page of the webapp's log lines that `query` selects: without `cursor` the newest
    /// ones, with the cursor of an earlier page the ones that arrived after it (see
    /// [`super::logs`]). Following is calling again with each page's cursor.
    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError>;

    /// The dry run of `action` on instance `id`: its AZ, what the group will do and the calls
    /// it will make; refused as the action itself would be where the backend can tell.
    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError>;

    /// Carries out `action` on instance `id` of the stack's group. `check` is for the safety
    /// guard; backends ignore it.
    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError>;

    /// Starts a zonal shift away from `request.az` on the load balancer and the Auto Scaling
    /// group together (see [`super::shift`]). `check` is for the safety guard; backends
    /// ignore it.
    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError>;

    /// Cancels the active zonal shift (away from `az`, if given) on both resources; returns
    /// what was cancelled (`NotFound` when none is active).
    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError>;

    /// The active zonal shifts (what a snapshot carries in `zonal_shifts`).
    async fn zonal_shifts(&self, stack: &StackRef) -> Result<Vec<ZonalShift>, CloudError> {
        Ok(self.snapshot(stack).await?.zonal_shifts)
    }
}

#[async_trait]
impl<C: Cloud + ?Sized> Cloud for Arc<C> {
    fn kind(&self) -> BackendKind {
        (**self).kind()
    }
    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        (**self).plan(desired).await
    }
    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent> {
        (**self).apply(plan)
    }
    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent> {
        (**self).destroy(stack)
    }
    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        (**self).snapshot(stack).await
    }
    fn watch(&self, stack: &StackRef, interval: Duration) -> CloudStream<Snapshot> {
        (**self).watch(stack, interval)
    }
    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        (**self).deploy(stack, request).await
    }
    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        (**self).cancel_refresh(stack).await
    }
    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        (**self).rollback_refresh(stack).await
    }
    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh> {
        (**self).wait_refresh(stack, id)
    }
    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        (**self).describe_fault(stack, fault).await
    }
    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        (**self).inject(stack, fault, check).await
    }
    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError> {
        (**self).restore(record).await
    }
    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        (**self).logs(stack, query, cursor).await
    }

    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        (**self).describe_instance_action(stack, id, action).await
    }
    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError> {
        (**self).act_on_instance(stack, id, action, check).await
    }
    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError> {
        (**self).start_zonal_shift(stack, request, check).await
    }
    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        (**self).cancel_zonal_shift(stack, az).await
    }
    async fn zonal_shifts(&self, stack: &StackRef) -> Result<Vec<ZonalShift>, CloudError> {
        (**self).zonal_shifts(stack).await
    }
}

/// Drives a [`Cloud::wait_refresh`] stream to its end and returns the terminal refresh.
pub async fn refresh_outcome(mut updates: CloudStream<Refresh>) -> Result<Refresh, CloudError> {
    let mut last = None;
    while let Some(update) = updates.next().await {
        let refresh = update?;
        let done = refresh.status.is_terminal();
        last = Some(refresh);
        if done {
            break;
        }
    }
    last.ok_or_else(|| CloudError::not_found("instance refresh"))
}

/// A stream that yields one error and ends (for operations refused before they start).
pub fn failed_stream<T: Send + 'static>(error: CloudError) -> CloudStream<T> {
    futures::stream::once(async move { Err(error) }).boxed()
}
