//! Backend selection, the same for every command: `--aws` selects AWS (with `--profile`,
//! `--region`, `--endpoint-url`, or the standard AWS environment variables filling what the
//! flags leave out); without `--aws`, the local sandbox. The AWS environment is read only once
//! `--aws` is given, so `AWS_ENDPOINT_URL` (or any AWS variable) alone never selects AWS.
//! `--asg NAME` (with an optional `--db ID`) attaches to a group triad did not create.

use serde::{Deserialize, Serialize};

use super::cloud::BackendKind;
use super::error::CloudError;

/// The standard AWS environment variables this selection reads (after `--aws`).
pub const AWS_PROFILE: &str = "AWS_PROFILE";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// The backend flags as the command line parsed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendFlags {
    pub aws: bool,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// `--asg NAME`: act on this Auto Scaling group instead of a triad stack's (AWS only).
    pub asg: Option<String>,
    /// `--db ID`: the attached group's database (needs `--asg`).
    pub db: Option<String>,
}

/// An Auto Scaling group triad did not create, attached to with `--asg` (and its database
/// with `--db`): snapshots, deploys and faults act on it, its target groups and subnets
/// instead of a triad stack's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub asg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
}

/// Where AWS calls go. `None` fields are left to the SDK's default chain (a region may come
/// from the profile's config file, for instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The group to attach to instead of a triad stack's, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<Attachment>,
}

/// The backend a command uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum BackendChoice {
    Aws(AwsSettings),
    Sandbox,
}

impl BackendChoice {
    /// Chooses from the flags, reading the AWS environment through `env` (only with `--aws`).
    pub fn choose(
        flags: &BackendFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CloudError> {
        if !flags.aws {
            let stray = [
                ("profile", &flags.profile),
                ("region", &flags.region),
                ("endpoint_url", &flags.endpoint_url),
                ("asg", &flags.asg),
                ("db", &flags.db),
            ]
            .into_iter()
            .find(|(_, value)| value.is_some());
            if let Some((field, _)) = stray {
                return Err(CloudError::invalid(
                    field,
                    format!("--{} needs --aws", field.replace('_', "-")),
                ));
            }
            return Ok(Self::Sandbox);
        }
        let attach = match (&flags.asg, &flags.db) {
            (Some(asg), db) if !asg.trim().is_empty() => Some(Attachment {
                asg: asg.clone(),
                db: db.clone().filter(|db| !db.trim().is_empty()),
            }),
            (Some(_), _) => return Err(CloudError::invalid("asg", "--asg needs a group name")),
            (None, Some(_)) => {
                return Err(CloudError::invalid(
                    "db",
                    "--db names the database of an attached group: it needs --asg",
                ));
            }
            (None, None) => None,
        };
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let settings = AwsSettings {
            profile: flags.profile.clone().or_else(|| env(AWS_PROFILE)),
            region: flags
                .region
                .clone()
                .or_else(|| env(AWS_REGION))
                .or_else(|| env(AWS_DEFAULT_REGION)),
            endpoint_url: flags.endpoint_url.clone().or_else(|| env(AWS_ENDPOINT_URL)),
            attach,
        };
        if let Some(url) = &settings.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(CloudError::invalid(
                "endpoint_url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(Self::Aws(settings))
    }

    /// [`BackendChoice::choose`] with the process environment.
    pub fn from_process_env(flags: &BackendFlags) -> Result<Self, CloudError> {
        Self::choose(flags, |name| std::env::var(name).ok())
    }

    /// The kind of backend chosen.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Aws(_) => BackendKind::Aws,
            Self::Sandbox => BackendKind::Sandbox,
        }
    }
}
