//! The AWS SDK configuration of a session, from the port's [`AwsSettings`]: the profile, region
//! and endpoint the flags (or the standard environment) gave, everything else from the
//! aws-config default chain (credentials, retries, the profile's region).

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::port::AwsSettings;

/// The SDK configuration for `settings`.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_reach_the_sdk_config() {
        let config = load(&AwsSettings {
            profile: None,
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            attach: None,
        })
        .await;
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
    }
}
