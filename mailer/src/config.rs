//! The mailer's settings, read once at start-up from the environment variables named in
//! `contract::env`. A missing or unusable setting is an error that names the variable, so a
//! misconfigured function stops before it takes its first event.
//!
//! The AWS region and endpoint override (`AWS_REGION`, `AWS_ENDPOINT_URL`) are not read here:
//! aws-config honours them itself.

use std::time::Duration;

use contract::env;

/// What the mailer needs besides its AWS clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The DynamoDB table holding tokens and idempotency records.
    pub token_table: String,
    /// The verified address e-mails are sent from.
    pub sender: String,
    /// The public base URL the verification link starts with.
    pub verify_base_url: String,
    /// How long a token stays valid.
    pub token_ttl: Duration,
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {name}: {meaning}")]
    Missing {
        name: &'static str,
        meaning: &'static str,
    },
    #[error("invalid setting {name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str, meaning: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing { name, meaning })
        };
        let token_table = required(
            env::TOKEN_TABLE,
            "the DynamoDB table verification tokens are stored in",
        )?;
        let sender = required(
            env::MAIL_SENDER,
            "the address verification e-mails come from",
        )?;
        if !sender.contains('@') {
            return Err(ConfigError::Invalid {
                name: env::MAIL_SENDER,
                value: sender,
                reason: "an e-mail address needs an @",
            });
        }
        let verify_base_url = required(
            env::VERIFY_BASE_URL,
            "the public base URL of the verification link",
        )?;
        if !(verify_base_url.starts_with("https://") || verify_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: env::VERIFY_BASE_URL,
                value: verify_base_url,
                reason: "must start with https:// or http://",
            });
        }
        let ttl = required(
            env::TOKEN_TTL_SECONDS,
            "how many seconds a verification token stays valid",
        )?;
        let token_ttl = match ttl.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => {
                return Err(ConfigError::Invalid {
                    name: env::TOKEN_TTL_SECONDS,
                    value: ttl,
                    reason: "must be a whole number of seconds above zero",
                });
            }
        };
        Ok(Config {
            token_table,
            sender,
            verify_base_url,
            token_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn complete() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (env::TOKEN_TABLE, "tokens"),
            (env::MAIL_SENDER, "noreply@example.com"),
            (env::VERIFY_BASE_URL, "https://app.example.com"),
            (env::TOKEN_TTL_SECONDS, "86400"),
        ])
    }

    fn read(vars: &HashMap<&'static str, &'static str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn reads_every_setting() {
        let config = read(&complete()).expect("complete settings");
        assert_eq!(config.token_table, "tokens");
        assert_eq!(config.sender, "noreply@example.com");
        assert_eq!(config.verify_base_url, "https://app.example.com");
        assert_eq!(config.token_ttl, Duration::from_secs(86400));
    }

    #[test]
    fn a_missing_or_blank_setting_is_named() {
        for name in [
            env::TOKEN_TABLE,
            env::MAIL_SENDER,
            env::VERIFY_BASE_URL,
            env::TOKEN_TTL_SECONDS,
        ] {
            let mut vars = complete();
            vars.remove(name);
            let err = read(&vars).expect_err("missing setting");
            assert!(err.to_string().contains(name), "{err}");
            vars.insert(name, "  ");
            assert!(matches!(read(&vars), Err(ConfigError::Missing { name: n, .. }) if n == name));
        }
    }

    #[test]
    fn unusable_values_are_refused_with_a_reason() {
        for (name, value) in [
            (env::TOKEN_TTL_SECONDS, "0"),
            (env::TOKEN_TTL_SECONDS, "one day"),
            (env::MAIL_SENDER, "noreply"),
            (env::VERIFY_BASE_URL, "app.example.com"),
        ] {
            let mut vars = complete();
            vars.insert(name, value);
            let err = read(&vars).expect_err("invalid setting");
            assert!(
                matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
                "{err}"
            );
            assert!(err.to_string().contains(value), "{err}");
        }
    }
}
