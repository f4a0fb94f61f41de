//! Deploys and instance refreshes: what to roll out ([`DeployRequest`]), how
//! ([`RefreshPreferences`], every preference AWS offers, with AWS's defaults and validation
//! rules), and how it is going ([`Refresh`], with AWS's status names).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::CloudError;
use super::names::aws_names;

/// Identifies one instance refresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshId(pub String);

impl fmt::Display for RefreshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

aws_names! {
    /// An instance refresh's status, with Auto Scaling's names.
    pub enum RefreshStatus ("instance refresh status") {
        Pending = "Pending",
        InProgress = "InProgress",
        Successful = "Successful",
        Failed = "Failed",
        Cancelling = "Cancelling",
        Cancelled = "Cancelled",
        RollbackInProgress = "RollbackInProgress",
        RollbackFailed = "RollbackFailed",
        RollbackSuccessful = "RollbackSuccessful",
        Baking = "Baking",
    }
}

impl RefreshStatus {
    /// Whether the refresh has stopped for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Successful
                | Self::Failed
                | Self::Cancelled
                | Self::RollbackFailed
                | Self::RollbackSuccessful
        )
    }

    /// Whether a rollback can be asked for (AWS allows it while the refresh runs).
    pub fn can_roll_back(self) -> bool {
        matches!(self, Self::Pending | Self::InProgress | Self::Baking)
    }

    /// Whether a cancel can be asked for.
    pub fn can_cancel(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::InProgress | Self::Baking | Self::RollbackInProgress
        )
    }
}

/// Why Auto Scaling refuses an instance refresh operation: one error per refusal, beside the
/// status rules above, so every backend answers the same situation with the same
/// [`CloudError`] (and the console with the same exit code). The model raises them; the AWS
/// backend maps AWS's error codes to them ([`RefreshRefusal::from_aws_code`]).
///
/// - StartInstanceRefresh while one is active: `InstanceRefreshInProgress`
///   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StartInstanceRefresh.html>)
///   → [`CloudError::Conflict`].
/// - CancelInstanceRefresh or RollbackInstanceRefresh with no refresh in progress (or none
///   in a status that allows it): `ActiveInstanceRefreshNotFound`
///   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CancelInstanceRefresh.html>)
///   → [`CloudError::NotFound`].
/// - RollbackInstanceRefresh of a refresh that cannot be rolled back (already cancelling or
///   rolling back, or no previous configuration): `IrreversibleInstanceRefresh`
///   (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RollbackInstanceRefresh.html>)
///   → [`CloudError::Refused`]: Auto Scaling refused it and nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    InProgress,
    NoActiveRefresh,
    Irreversible,
}

impl RefreshRefusal {
    /// Auto Scaling's error code for this refusal.
    pub fn aws_code(self) -> &'static str {
        match self {
            Self::InProgress => "InstanceRefreshInProgress",
            Self::NoActiveRefresh => "ActiveInstanceRefreshNotFound",
            Self::Irreversible => "IrreversibleInstanceRefresh",
        }
    }

    /// The refusal an Auto Scaling error code means, if it is one.
    pub fn from_aws_code(code: &str) -> Option<Self> {
        [Self::InProgress, Self::NoActiveRefresh, Self::Irreversible]
            .into_iter()
            .find(|r| r.aws_code() == code)
    }

    /// The port's error for this refusal, with `detail` saying what was refused.
    pub fn error(self, detail: impl Into<String>) -> CloudError {
        let detail = detail.into();
        match self {
            Self::InProgress => CloudError::conflict(detail),
            Self::NoActiveRefresh => CloudError::not_found(detail),
            Self::Irreversible => CloudError::refused(detail),
        }
    }
}

/// The refusal of a cancel or rollback when nothing is in progress.
pub fn no_active_refresh() -> CloudError {
    RefreshRefusal::NoActiveRefresh.error("active instance refresh")
}

/// One instance refresh, as DescribeInstanceRefreshes reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub id: RefreshId,
    pub status: RefreshStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub started_at: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ended_at: Option<OffsetDateTime>,
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_complete: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_to_update: Option<u32>,
    /// The application version being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// The launch template version being rolled out (the desired configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_launch_template_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<RefreshPreferences>,
    /// The checkpoint the refresh is waiting at, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackDetails>,
}

/// A checkpoint the refresh reached and is pausing at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The checkpoint percentage reached.
    pub percentage: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub reached_at: OffsetDateTime,
    /// When the refresh continues (reached_at + CheckpointDelay).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub resumes_at: Option<OffsetDateTime>,
}

/// AWS's RollbackDetails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_complete_on_rollback: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_to_update_on_rollback: Option<u32>,
}

aws_names! {
    /// What a refresh does with instances protected from scale in.
    pub enum ScaleInProtectedInstances ("ScaleInProtectedInstances value") {
        /// Replace them too.
        Refresh = "Refresh",
        /// Leave them alone.
        Ignore = "Ignore",
        /// Wait (up to an hour) until the protection is removed (AWS's default).
        Wait = "Wait",
    }
}

aws_names! {
    /// What a refresh does with instances in Standby.
    pub enum StandbyInstances ("StandbyInstances value") {
        /// Terminate them.
        Terminate = "Terminate",
        /// Leave them alone.
        Ignore = "Ignore",
        /// Wait (up to an hour) until they return to service, then replace them (AWS's
        /// default).
        Wait = "Wait",
    }
}

/// AWS's longest CheckpointDelay and BakeTime: two days, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 172_800;

/// AWS's default CheckpointDelay when checkpoints are given without a delay: one hour.
pub const DEFAULT_CHECKPOINT_DELAY_SECONDS: u32 = 3_600;

/// Every instance refresh preference AWS offers, with AWS's defaults. Missing fields in JSON
/// or TOML take the default; unknown fields are an error naming them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshPreferences {
    /// MinHealthyPercentage: share of desired capacity kept healthy, 0–100 (default 90).
    pub min_healthy_percentage: u8,
    /// MaxHealthyPercentage: share of desired capacity allowed in service or pending,
    /// 100–200 (default 100), at most 100 above the minimum.
    pub max_healthy_percentage: u16,
    /// InstanceWarmup in seconds; `None` uses the group's default warmup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_warmup_seconds: Option<u32>,
    /// CheckpointPercentages: strictly ascending, each 1–100.
    pub checkpoint_percentages: Vec<u8>,
    /// CheckpointDelay in seconds (0–172800); needs checkpoints; defaults to 3600 with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_delay_seconds: Option<u32>,
    /// SkipMatching: leave instances that already match the desired configuration.
    pub skip_matching: bool,
    /// AutoRollback: roll back to the previous configuration if the refresh fails or an
    /// alarm fires. Needs a desired configuration, which every deploy through the port has.
    pub auto_rollback: bool,
    /// AlarmSpecification.Alarms: CloudWatch alarm names that fail the refresh when they fire.
    #[serde(alias = "alarm_specification")]
    pub alarms: Vec<String>,
    /// BakeTime in seconds (0–172800): wait at the end before the refresh counts as done.
    pub bake_time_seconds: u32,
    pub scale_in_protected_instances: ScaleInProtectedInstances,
    pub standby_instances: StandbyInstances,
}

impl Default for RefreshPreferences {
    fn default() -> Self {
        Self {
            min_healthy_percentage: 90,
            max_healthy_percentage: 100,
            instance_warmup_seconds: None,
            checkpoint_percentages: Vec::new(),
            checkpoint_delay_seconds: None,
            skip_matching: false,
            auto_rollback: false,
            alarms: Vec::new(),
            bake_time_seconds: 0,
            // AWS's defaults: "Wait (default)" for both
            // (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html>).
            scale_in_protected_instances: ScaleInProtectedInstances::Wait,
            standby_instances: StandbyInstances::Wait,
        }
    }
}

impl RefreshPreferences {
    /// Checks AWS's rules; the error names the offending field.
    pub fn validate(&self) -> Result<(), CloudError> {
        let field = |name: &str| format!("preferences.{name}");
        if self.min_healthy_percentage > 100 {
            return Err(CloudError::invalid(
                field("min_healthy_percentage"),
                format!("{} is not within 0..=100", self.min_healthy_percentage),
            ));
        }
        if !(100..=200).contains(&self.max_healthy_percentage) {
            return Err(CloudError::invalid(
                field("max_healthy_percentage"),
                format!("{} is not within 100..=200", self.max_healthy_percentage),
            ));
        }
        if self.max_healthy_percentage - u16::from(self.min_healthy_percentage) > 100 {
            return Err(CloudError::invalid(
                field("max_healthy_percentage"),
                format!(
                    "{} is more than 100 above min_healthy_percentage {}",
                    self.max_healthy_percentage, self.min_healthy_percentage
                ),
            ));
        }
        let mut previous = 0u8;
        for &pct in &self.checkpoint_percentages {
            if !(1..=100).contains(&pct) {
                return Err(CloudError::invalid(
                    field("checkpoint_percentages"),
                    format!("{pct} is not within 1..=100"),
                ));
            }
            if pct <= previous {
                return Err(CloudError::invalid(
                    field("checkpoint_percentages"),
                    "values must be strictly ascending",
                ));
            }
            previous = pct;
        }
        if let Some(delay) = self.checkpoint_delay_seconds {
            if self.checkpoint_percentages.is_empty() {
                return Err(CloudError::invalid(
                    field("checkpoint_delay_seconds"),
                    "needs checkpoint_percentages",
                ));
            }
            if delay > MAX_DELAY_SECONDS {
                return Err(CloudError::invalid(
                    field("checkpoint_delay_seconds"),
                    format!("{delay} is more than {MAX_DELAY_SECONDS}"),
                ));
            }
        }
        if self.bake_time_seconds > MAX_DELAY_SECONDS {
            return Err(CloudError::invalid(
                field("bake_time_seconds"),
                format!(
                    "{} is more than {MAX_DELAY_SECONDS}",
                    self.bake_time_seconds
                ),
            ));
        }
        if let Some(alarm) = self.alarms.iter().find(|a| a.trim().is_empty()) {
            return Err(CloudError::invalid(
                field("alarms"),
                format!("alarm name {alarm:?} is empty"),
            ));
        }
        Ok(())
    }

    /// The CheckpointDelay AWS applies: the given one, or one hour when checkpoints are set.
    pub fn effective_checkpoint_delay_seconds(&self) -> Option<u32> {
        match (
            self.checkpoint_delay_seconds,
            self.checkpoint_percentages.is_empty(),
        ) {
            (Some(delay), _) => Some(delay),
            (None, false) => Some(DEFAULT_CHECKPOINT_DELAY_SECONDS),
            (None, true) => None,
        }
    }

    /// Whether the refresh stops short of replacing every instance (last checkpoint < 100).
    pub fn is_partial(&self) -> bool {
        self.checkpoint_percentages
            .last()
            .is_some_and(|&last| last < 100)
    }
}

/// What to roll out: a version (optionally with a local webapp binary to ship as that
/// version), environment overrides for the new launch template version, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The application version: letters, digits and `. _ + -`, at most 128 characters.
    pub version: String,
    /// A local webapp binary to upload and run as `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Environment overrides for the new launch template version.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub preferences: RefreshPreferences,
}

impl DeployRequest {
    /// A deploy of `version` with AWS's default preferences and no overrides.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            binary: None,
            env: BTreeMap::new(),
            preferences: RefreshPreferences::default(),
        }
    }

    /// Checks the version, the environment names and the preferences.
    pub fn validate(&self) -> Result<(), CloudError> {
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 128
            && self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
        if !version_ok {
            return Err(CloudError::invalid(
                "version",
                format!(
                    "{:?} must be 1–128 letters, digits or . _ + -",
                    self.version
                ),
            ));
        }
        if let Some(name) = self.env.keys().find(|name| !is_env_name(name)) {
            return Err(CloudError::invalid(
                "env",
                format!("{name:?} is not an environment variable name"),
            ));
        }
        self.preferences.validate()
    }
}

/// Parses one `K=V` environment override (the value may contain `=`).
pub fn parse_env_override(text: &str) -> Result<(String, String), CloudError> {
    match text.split_once('=') {
        Some((name, value)) if is_env_name(name) => Ok((name.to_owned(), value.to_owned())),
        _ => Err(CloudError::invalid(
            "env",
            format!("{text:?} is not NAME=VALUE with NAME a valid variable name"),
        )),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
