//! The AWS backend: [`AwsCloud`] implements the Cloud port with the AWS SDK. Provisioning goes
//! through CloudFormation ([`cfn`]): a plan is a change set, apply executes it and follows the
//! stack's events, destroy deletes the stack and follows it to the end. [`artefacts`] keeps
//! the `<name>-bootstrap` stack (the artefact bucket) and uploads releases into it.
//!
//! Architecture invariant: SDK types stay inside this module. Everything it returns is the
//! port's types; SDK errors become [`CloudError`]s here.
//!
//! Snapshot, watch, deploy and fault operations are not built yet: they return
//! [`CloudError::Unsupported`] saying so.

pub mod artefacts;
pub mod cfn;
pub mod config;
mod error;
mod render;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};

pub use artefacts::{Upload, ensure_bootstrap, upload_artefact};
pub use cfn::Polling;
pub use render::render_plan;

use crate::port::{
    AwsSettings, BackendKind, CapacityCheck, Cloud, CloudError, CloudStream, DeployRequest,
    DesiredStack, Fault, FaultPlan, FaultRecord, Plan, ProvisionEvent, Refresh, RefreshId,
    Snapshot, StackRef, failed_stream,
};

/// The AWS backend of the Cloud port.
#[derive(Debug, Clone)]
pub struct AwsCloud {
    cfn: aws_sdk_cloudformation::Client,
    s3: aws_sdk_s3::Client,
    polling: Polling,
}

impl AwsCloud {
    /// The backend for `settings`, through the aws-config default chain.
    pub async fn new(settings: &AwsSettings) -> Self {
        Self::from_config(&config::load(settings).await)
    }

    /// The backend over an SDK configuration. A custom endpoint (a local emulator) gets
    /// path-style S3 addressing, which such endpoints need.
    pub fn from_config(config: &SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self::from_clients(
            aws_sdk_cloudformation::Client::new(config),
            aws_sdk_s3::Client::from_conf(s3),
        )
    }

    /// The backend over given clients.
    pub fn from_clients(cfn: aws_sdk_cloudformation::Client, s3: aws_sdk_s3::Client) -> Self {
        Self {
            cfn,
            s3,
            polling: Polling::default(),
        }
    }

    /// The same backend, polling CloudFormation as `polling` says.
    pub fn with_polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// The CloudFormation client for `stack`'s region.
    fn cfn_for(&self, stack: &StackRef) -> aws_sdk_cloudformation::Client {
        match &stack.region {
            Some(region) if self.cfn.config().region().map(Region::as_ref) != Some(region) => {
                let config = self
                    .cfn
                    .config()
                    .to_builder()
                    .region(Region::new(region.clone()))
                    .build();
                aws_sdk_cloudformation::Client::from_conf(config)
            }
            _ => self.cfn.clone(),
        }
    }

    /// The S3 client for `region` (the session's when `None`).
    fn s3_for(&self, region: Option<&str>) -> aws_sdk_s3::Client {
        match region {
            Some(region) if self.s3.config().region().map(Region::as_ref) != Some(region) => {
                let config = self
                    .s3
                    .config()
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                aws_sdk_s3::Client::from_conf(config)
            }
            _ => self.s3.clone(),
        }
    }
}

fn not_built(operation: &str) -> CloudError {
    CloudError::Unsupported {
        operation: format!("{operation} (not built yet for AWS)"),
        backend: BackendKind::Aws.to_string(),
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    fn kind(&self) -> BackendKind {
        BackendKind::Aws
    }

    async fn plan(&self, desired: &DesiredStack) -> Result<Plan, CloudError> {
        cfn::plan(&self.cfn_for(&desired.stack), desired, &self.polling).await
    }

    fn apply(&self, plan: &Plan) -> CloudStream<ProvisionEvent> {
        cfn::apply(self.cfn_for(plan.stack()), plan.clone(), self.polling)
    }

    fn destroy(&self, stack: &StackRef) -> CloudStream<ProvisionEvent> {
        cfn::destroy(self.cfn_for(stack), stack.clone(), self.polling)
    }

    async fn snapshot(&self, _stack: &StackRef) -> Result<Snapshot, CloudError> {
        Err(not_built("snapshot"))
    }

    fn watch(&self, _stack: &StackRef, _interval: Duration) -> CloudStream<Snapshot> {
        failed_stream(not_built("watch"))
    }

    async fn deploy(
        &self,
        _stack: &StackRef,
        _request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        Err(not_built("deploy"))
    }

    async fn cancel_refresh(&self, _stack: &StackRef) -> Result<RefreshId, CloudError> {
        Err(not_built("cancel refresh"))
    }

    async fn rollback_refresh(&self, _stack: &StackRef) -> Result<RefreshId, CloudError> {
        Err(not_built("rollback refresh"))
    }

    fn wait_refresh(&self, _stack: &StackRef, _id: &RefreshId) -> CloudStream<Refresh> {
        failed_stream(not_built("wait for refresh"))
    }

    async fn describe_fault(
        &self,
        _stack: &StackRef,
        _fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        Err(not_built("describe fault"))
    }

    async fn inject(
        &self,
        _stack: &StackRef,
        _fault: &Fault,
        _check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        Err(not_built("inject fault"))
    }

    async fn restore(&self, _record: &FaultRecord) -> Result<(), CloudError> {
        Err(not_built("restore fault"))
    }
}
