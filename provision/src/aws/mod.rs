//! The AWS backend: [`AwsCloud`] implements the Cloud port with the AWS SDK. Provisioning goes
//! through CloudFormation ([`cfn`]): a plan is a change set, apply executes it and follows the
//! stack's events, destroy deletes the stack and follows it to the end. [`artefacts`] keeps
//! the `<name>-bootstrap` stack (the artefact bucket) and uploads releases into it.
//!
//! The stack's running parts are found by [`resources`] (a triad stack's CloudFormation
//! resources, or a group attached with `--asg`), observed by [`observe`] (snapshots and the
//! watch, a fixed number of calls per tick) and broken and restored by [`faults`]. Every
//! client counts its calls in one [`ApiCalls`].
//!
//! Architecture invariant: SDK types stay inside this module. Everything it returns is the
//! port's types; SDK errors become [`CloudError`]s here.

pub mod artefacts;
pub mod calls;
pub mod cfn;
pub mod config;
mod deploy;
mod error;
mod faults;
mod instance;
pub mod logs;
mod observe;
mod render;
mod resources;
mod scaling;
mod shift;
mod slow;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use artefacts::{
    ArtefactPlan, Release, ReleaseFile, ReleaseKind, ReleaseState, Upload, ensure_bootstrap,
    plan_artefacts, prepare_artefacts, upload_artefact,
};
pub use calls::ApiCalls;
pub use cfn::Polling;
pub use deploy::VERSION_TAG;
pub use faults::FAULT_TAG;
pub use observe::{EVENTS_PERIOD, INSTANCES_PAGE, METRICS_PERIOD};
pub use render::render_plan;
pub use shift::{LB_ZONAL_SHIFT_ATTRIBUTE, expires_in_text, zone_id, zone_name};
pub use slow::{
    INTERFACE_SCRIPT, LATENCY_DOCUMENT, SHELL_DOCUMENT, SLOW_BACKSTOP_SECONDS, cleanup_script,
    latency_parameters,
};

use crate::port::{
    Attachment, AwsSettings, BackendKind, CapacityCheck, Cloud, CloudError, CloudStream,
    DeployRequest, DesiredStack, Fault, FaultPlan, FaultRecord, InstanceAction, InstancePlan,
    LogCursor, LogPage, LogQuery, Plan, ProvisionEvent, Refresh, RefreshId, ShiftRequest, Snapshot,
    StackRef, ZonalShift,
};

/// The clients of the services a running stack is made of.
#[derive(Debug, Clone)]
pub struct OpsClients {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// ARC zonal shift (StartZonalShift, CancelZonalShift, ListZonalShifts).
    pub arc: aws_sdk_arczonalshift::Client,
    /// Systems Manager Run Command (the `slow-az` fault).
    pub ssm: aws_sdk_ssm::Client,
}

impl OpsClients {
    /// Clients over one SDK configuration.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            arc: aws_sdk_arczonalshift::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// The same clients, each also calling `interceptor`.
    fn counted(&self, calls: &ApiCalls) -> Self {
        macro_rules! counted {
            ($krate:ident, $client:expr) => {
                $krate::Client::from_conf(
                    $client
                        .config()
                        .to_builder()
                        .interceptor(calls.clone())
                        .build(),
                )
            };
        }
        Self {
            autoscaling: counted!(aws_sdk_autoscaling, self.autoscaling),
            ec2: counted!(aws_sdk_ec2, self.ec2),
            elb: counted!(aws_sdk_elasticloadbalancingv2, self.elb),
            rds: counted!(aws_sdk_rds, self.rds),
            cloudwatch: counted!(aws_sdk_cloudwatch, self.cloudwatch),
            logs: counted!(aws_sdk_cloudwatchlogs, self.logs),
            arc: counted!(aws_sdk_arczonalshift, self.arc),
            ssm: counted!(aws_sdk_ssm, self.ssm),
        }
    }

    /// The same clients in `region` (unchanged when it is already theirs or `None`).
    fn in_region(&self, region: Option<&str>) -> Self {
        let Some(region) = region else {
            return self.clone();
        };
        if self.ec2.config().region().map(Region::as_ref) == Some(region) {
            return self.clone();
        }
        macro_rules! moved {
            ($krate:ident, $client:expr) => {
                $krate::Client::from_conf(
                    $client
                        .config()
                        .to_builder()
                        .region(Region::new(region.to_owned()))
                        .build(),
                )
            };
        }
        Self {
            autoscaling: moved!(aws_sdk_autoscaling, self.autoscaling),
            ec2: moved!(aws_sdk_ec2, self.ec2),
            elb: moved!(aws_sdk_elasticloadbalancingv2, self.elb),
            rds: moved!(aws_sdk_rds, self.rds),
            cloudwatch: moved!(aws_sdk_cloudwatch, self.cloudwatch),
            logs: moved!(aws_sdk_cloudwatchlogs, self.logs),
            arc: moved!(aws_sdk_arczonalshift, self.arc),
            ssm: moved!(aws_sdk_ssm, self.ssm),
        }
    }
}

fn counted_sts(client: aws_sdk_sts::Client, calls: &ApiCalls) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(calls.clone())
            .build(),
    )
}

/// Facts that change slowly, kept across snapshots: which AZ and VPC each subnet is in, and
/// every subnet and AZ a group has been seen with (so an AZ whose subnet a launch block
/// removed still has its column, and restore can find its subnets).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub subnets: HashMap<String, SubnetInfo>,
    pub group_subnets: HashMap<String, BTreeSet<String>>,
    pub group_azs: HashMap<String, BTreeSet<String>>,
    /// The region's (AZ name, AZ ID) pairs (DescribeAvailabilityZones), empty until read.
    pub zones: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubnetInfo {
    pub az: String,
    pub vpc: String,
}

/// The AWS backend of the Cloud port.
#[derive(Debug, Clone)]
pub struct AwsCloud {
    cfn: aws_sdk_cloudformation::Client,
    s3: aws_sdk_s3::Client,
    ops: OpsClients,
    sts: aws_sdk_sts::Client,
    polling: Polling,
    calls: ApiCalls,
    attach: Option<Attachment>,
    cache: Arc<Mutex<Cache>>,
}

impl AwsCloud {
    /// The backend for `settings`, through the aws-config default chain.
    pub async fn new(settings: &AwsSettings) -> Self {
        let cloud = Self::from_config(&config::load(settings).await);
        match &settings.attach {
            Some(attach) => cloud.attached(attach.clone()),
            None => cloud,
        }
    }

    /// The backend over an SDK configuration. A custom endpoint (a local emulator) gets
    /// path-style S3 addressing, which such endpoints need.
    pub fn from_config(config: &SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        let mut cloud = Self::from_clients(
            aws_sdk_cloudformation::Client::new(config),
            aws_sdk_s3::Client::from_conf(s3),
        )
        .with_ops_clients(OpsClients::from_config(config));
        cloud.sts = counted_sts(aws_sdk_sts::Client::new(config), &cloud.calls);
        cloud
    }

    /// The backend over given CloudFormation and S3 clients. The other services get clients
    /// without credentials until [`AwsCloud::with_ops_clients`] gives real ones.
    pub fn from_clients(cfn: aws_sdk_cloudformation::Client, s3: aws_sdk_s3::Client) -> Self {
        let calls = ApiCalls::default();
        let cfn = aws_sdk_cloudformation::Client::from_conf(
            cfn.config().to_builder().interceptor(calls.clone()).build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            s3.config().to_builder().interceptor(calls.clone()).build(),
        );
        let mut placeholder = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
        if let Some(region) = cfn.config().region() {
            placeholder = placeholder.region(region.clone());
        }
        let placeholder = placeholder.build();
        let ops = OpsClients::from_config(&placeholder).counted(&calls);
        let sts = counted_sts(aws_sdk_sts::Client::new(&placeholder), &calls);
        Self {
            cfn,
            s3,
            ops,
            sts,
            polling: Polling::default(),
            calls,
            attach: None,
            cache: Arc::default(),
        }
    }

    /// The same backend with these Auto Scaling, EC2, ELB, RDS, CloudWatch and CloudWatch
    /// Logs clients.
    pub fn with_ops_clients(mut self, ops: OpsClients) -> Self {
        self.ops = ops.counted(&self.calls);
        self
    }

    /// The same backend, polling CloudFormation as `polling` says.
    pub fn with_polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// The same backend attached to a group triad did not create (`--asg`, `--db`).
    pub fn attached(mut self, attach: Attachment) -> Self {
        self.attach = Some(attach);
        self
    }

    /// The calls this backend has made, by operation.
    pub fn api_calls(&self) -> &ApiCalls {
        &self.calls
    }

    /// The account the credentials belong to (STS GetCallerIdentity).
    pub async fn account_id(&self) -> Result<String, CloudError> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| error::from_sdk("sts", "GetCallerIdentity", e))?;
        identity
            .account()
            .map(str::to_string)
            .ok_or_else(|| CloudError::not_found("the account of these credentials"))
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

    /// The running-stack clients for `stack`'s region.
    fn ops_for(&self, stack: &StackRef) -> OpsClients {
        self.ops.in_region(stack.region.as_deref())
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
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

    async fn snapshot(&self, stack: &StackRef) -> Result<Snapshot, CloudError> {
        observe::Observer::new(self.clone(), stack.clone())
            .tick()
            .await
    }

    fn watch(&self, stack: &StackRef, interval: Duration) -> CloudStream<Snapshot> {
        observe::watch(self.clone(), stack.clone(), interval)
    }

    async fn deploy(
        &self,
        stack: &StackRef,
        request: &DeployRequest,
    ) -> Result<RefreshId, CloudError> {
        deploy::deploy(self, stack, request).await
    }

    async fn cancel_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        deploy::cancel(self, stack).await
    }

    async fn rollback_refresh(&self, stack: &StackRef) -> Result<RefreshId, CloudError> {
        deploy::rollback(self, stack).await
    }

    fn wait_refresh(&self, stack: &StackRef, id: &RefreshId) -> CloudStream<Refresh> {
        deploy::wait(
            self.clone(),
            stack.clone(),
            id.clone(),
            self.polling.first_interval,
        )
    }

    async fn describe_fault(
        &self,
        stack: &StackRef,
        fault: &Fault,
    ) -> Result<FaultPlan, CloudError> {
        faults::describe(self, stack, fault).await
    }

    async fn inject(
        &self,
        stack: &StackRef,
        fault: &Fault,
        check: CapacityCheck,
    ) -> Result<FaultRecord, CloudError> {
        faults::inject(self, stack, fault, check).await
    }

    async fn restore(&self, record: &FaultRecord) -> Result<(), CloudError> {
        faults::restore(self, record).await
    }

    async fn logs(
        &self,
        stack: &StackRef,
        query: &LogQuery,
        cursor: Option<&LogCursor>,
    ) -> Result<LogPage, CloudError> {
        let ops = self.ops_for(stack);
        logs::read(
            &ops.logs,
            stack,
            query,
            cursor,
            time::OffsetDateTime::now_utc(),
        )
        .await
    }

    async fn describe_instance_action(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
    ) -> Result<InstancePlan, CloudError> {
        instance::describe(self, stack, id, action).await
    }

    async fn act_on_instance(
        &self,
        stack: &StackRef,
        id: &str,
        action: InstanceAction,
        _check: CapacityCheck,
    ) -> Result<InstancePlan, CloudError> {
        instance::act(self, stack, id, action).await
    }

    async fn start_zonal_shift(
        &self,
        stack: &StackRef,
        request: &ShiftRequest,
        _check: CapacityCheck,
    ) -> Result<ZonalShift, CloudError> {
        shift::start(self, stack, request).await
    }

    async fn cancel_zonal_shift(
        &self,
        stack: &StackRef,
        az: Option<&str>,
    ) -> Result<Vec<ZonalShift>, CloudError> {
        shift::cancel(self, stack, az).await
    }

    async fn zonal_shifts(&self, stack: &StackRef) -> Result<Vec<ZonalShift>, CloudError> {
        shift::list(self, stack).await
    }
}
