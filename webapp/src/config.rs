//! Configuration: Rocket's figment (defaults, `Rocket.toml`, `ROCKET_*`) plus the webapp's own
//! settings, whose names come from `contract::env`. Every setting is checked before anything
//! connects anywhere, and a missing or malformed one is reported by its environment variable
//! name (values are never echoed: `DATABASE_URL` may carry a password).
//!
//! The `TRIAD_*` variables are merged into the figment as plain strings, so a version such as
//! `1.10` is not read as the number 1.1; `Rocket.toml` may give defaults for them under the
//! lower-case name (`triad_version = "…"`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use contract::env;
use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::value::Value;
use rocket::figment::{Figment, Profile};
use sqlx::postgres::PgConnectOptions;

/// Why start-up stopped: the setting (by its environment variable) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set ({hint})")]
    Missing { name: String, hint: &'static str },
    #[error("{name} is malformed: {reason}")]
    Malformed { name: String, reason: String },
    #[error("the database is not configured: set {url}, or {host} + {db} + {secret}")]
    NoDatabase {
        url: &'static str,
        host: &'static str,
        db: &'static str,
        secret: &'static str,
    },
    #[error("Rocket configuration: {0}")]
    Rocket(String),
}

fn malformed(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Malformed {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Where the database credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// `DATABASE_URL`.
    Url(String),
    /// `TRIAD_DB_HOST` (+ `TRIAD_DB_PORT`) + `TRIAD_DB_NAME`, user and password from the
    /// RDS-managed secret `TRIAD_DB_SECRET_ARN` (JSON with `username` and `password`).
    Secret {
        host: String,
        port: u16,
        name: String,
        secret_arn: String,
    },
}

impl fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseSource::Url(_) => f.write_str("Url(<redacted>)"),
            DatabaseSource::Secret {
                host,
                port,
                name,
                secret_arn,
            } => f
                .debug_struct("Secret")
                .field("host", host)
                .field("port", port)
                .field("name", name)
                .field("secret_arn", secret_arn)
                .finish(),
        }
    }
}

/// The connection pool's limits. Timeouts are what lets an instance heal after a database
/// failover behind the same endpoint: a dead connection fails its test and is replaced.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            max_lifetime: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// How the outbox publisher polls and backs off.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// How often pending events are looked for when nobody signals a new one.
    pub poll_interval: Duration,
    /// The first retry delay after a failed publish; doubled per attempt up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Events published per batch.
    pub batch_size: i64,
    /// How long the publisher waits after a new event's wake-up before publishing, so that the
    /// events of concurrent signups share a `PublishBatch` call.
    pub linger: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            poll_interval: Duration::from_secs(2),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            batch_size: 25,
            linger: Duration::from_millis(100),
        }
    }
}

/// Everything the webapp needs besides Rocket's own configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSource,
    pub topic_arn: String,
    pub token_table: String,
    pub require_verification: bool,
    pub version: String,
    pub instance_id: String,
    pub az: String,
    pub argon2: argon2::Params,
    /// Seconds in-flight requests get after SIGTERM (Rocket's `shutdown.grace`).
    pub shutdown_grace: u32,
    pub pool: PoolSettings,
    pub outbox: OutboxSettings,
}

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
pub const DEFAULT_ARGON2: (u32, u32, u32) = (19 * 1024, 2, 1);
pub const DEFAULT_SHUTDOWN_GRACE: u32 = 5;

/// Rocket's figment (as `rocket::Config::figment()` builds it, with Rocket's own log output
/// off by default because the webapp logs JSON itself) plus the `TRIAD_*` and
/// `DATABASE_URL` variables from the process environment, as strings.
pub fn figment() -> Figment {
    let ours: BTreeMap<String, String> = env::WEBAPP
        .iter()
        .filter(|name| !name.starts_with("ROCKET_") && !name.starts_with("AWS_"))
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_ascii_lowercase(), value))
        })
        .collect();
    let defaults = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        cli_colors: false,
        ..rocket::Config::default()
    };
    Figment::from(defaults)
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .merge(Serialized::globals(ours))
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// The figment Rocket is launched with: `figment` plus the settings that map onto Rocket's.
pub fn rocket_figment(figment: &Figment, settings: &Settings) -> Figment {
    figment
        .clone()
        .merge(("shutdown.grace", settings.shutdown_grace))
}

/// Checks Rocket's own settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, …); figment's message names
/// the variable or file a bad value came from.
pub fn check_rocket(figment: &Figment) -> Result<rocket::Config, ConfigError> {
    rocket::Config::try_from(figment).map_err(|e| {
        let key = e.path.join(".");
        let from_env = e
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment"));
        if from_env && !key.is_empty() {
            malformed(
                &format!("ROCKET_{}", key.to_ascii_uppercase()),
                e.kind.to_string(),
            )
        } else {
            ConfigError::Rocket(e.to_string())
        }
    })
}

/// A scalar setting as text, whatever type `Rocket.toml` gave it.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string())),
        _ => None,
    }
}

impl Settings {
    /// Reads and checks every setting from `figment` (see [`figment`]).
    pub fn from_figment(figment: &Figment) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            figment
                .find_value(&name.to_ascii_lowercase())
                .ok()
                .map(|v| text(&v).ok_or_else(|| malformed(name, "expected a single value")))
                .transpose()
        })
    }

    /// Reads and checks every setting through `lookup` (variable name → value, if set).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Settings, ConfigError> {
        let get = |name: &str| -> Result<Option<String>, ConfigError> {
            Ok(lookup(name)?
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
        let required = |name: &str, hint: &'static str| -> Result<String, ConfigError> {
            get(name)?.ok_or_else(|| ConfigError::Missing {
                name: name.to_string(),
                hint,
            })
        };
        let number = |name: &str, default: u32| -> Result<u32, ConfigError> {
            match get(name)? {
                None => Ok(default),
                Some(v) => v
                    .parse::<u32>()
                    .map_err(|_| malformed(name, "expected a whole number")),
            }
        };

        let database = database_source(&get)?;
        let topic_arn = required(env::TOPIC_ARN, "the SNS topic user-created events go to")?;
        if !topic_arn.starts_with("arn:") || topic_arn.split(':').count() < 6 {
            return Err(malformed(
                env::TOPIC_ARN,
                "expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            ));
        }
        let token_table = required(env::TOKEN_TABLE, "the DynamoDB verification token table")?;
        let require_verification = match get(env::REQUIRE_VERIFICATION)?.as_deref() {
            None => false,
            Some(v) => parse_bool(v)
                .ok_or_else(|| malformed(env::REQUIRE_VERIFICATION, "expected true or false"))?,
        };
        let version = required(env::VERSION, "the release version /version reports")?;
        let instance_id = required(env::INSTANCE_ID, "this instance's id, for /version")?;
        let az = required(env::AZ, "this instance's Availability Zone, for /version")?;

        let m_cost = number(env::ARGON2_M_COST, DEFAULT_ARGON2.0)?;
        let t_cost = number(env::ARGON2_T_COST, DEFAULT_ARGON2.1)?;
        let p_cost = number(env::ARGON2_P_COST, DEFAULT_ARGON2.2)?;
        let argon2 = argon2::Params::new(m_cost, t_cost, p_cost, None).map_err(|e| {
            let name = match e {
                argon2::Error::MemoryTooLittle | argon2::Error::MemoryTooMuch => env::ARGON2_M_COST,
                argon2::Error::TimeTooSmall => env::ARGON2_T_COST,
                _ => env::ARGON2_P_COST,
            };
            malformed(name, format!("argon2 refuses it: {e}"))
        })?;
        let shutdown_grace = number(env::SHUTDOWN_GRACE_SECONDS, DEFAULT_SHUTDOWN_GRACE)?;

        Ok(Settings {
            database,
            topic_arn,
            token_table,
            require_verification,
            version,
            instance_id,
            az,
            argon2,
            shutdown_grace,
            pool: PoolSettings::default(),
            outbox: OutboxSettings::default(),
        })
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn database_source(
    get: &impl Fn(&str) -> Result<Option<String>, ConfigError>,
) -> Result<DatabaseSource, ConfigError> {
    if let Some(url) = get(env::DATABASE_URL)? {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(malformed(
                env::DATABASE_URL,
                "expected a postgres:// or postgresql:// URL",
            ));
        }
        PgConnectOptions::from_str(&url).map_err(|e| {
            // sqlx's message can quote the URL; keep only its kind.
            let reason = match e {
                sqlx::Error::Configuration(_) => "not a PostgreSQL URL (postgres://USER@HOST/DB)",
                _ => "not a PostgreSQL URL",
            };
            malformed(env::DATABASE_URL, reason)
        })?;
        return Ok(DatabaseSource::Url(url));
    }
    let host = get(env::DB_HOST)?;
    let name = get(env::DB_NAME)?;
    let secret_arn = get(env::DB_SECRET_ARN)?;
    if host.is_none() && name.is_none() && secret_arn.is_none() {
        return Err(ConfigError::NoDatabase {
            url: env::DATABASE_URL,
            host: env::DB_HOST,
            db: env::DB_NAME,
            secret: env::DB_SECRET_ARN,
        });
    }
    let hint = "needed with the other TRIAD_DB_* settings when DATABASE_URL is not set";
    let missing = |n: &str| ConfigError::Missing {
        name: n.to_string(),
        hint,
    };
    let host = host.ok_or_else(|| missing(env::DB_HOST))?;
    let name = name.ok_or_else(|| missing(env::DB_NAME))?;
    let secret_arn = secret_arn.ok_or_else(|| missing(env::DB_SECRET_ARN))?;
    if !secret_arn.starts_with("arn:") {
        return Err(malformed(
            env::DB_SECRET_ARN,
            "expected a Secrets Manager ARN",
        ));
    }
    let port = match get(env::DB_PORT)? {
        None => 5432,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| malformed(env::DB_PORT, "expected a port number (1-65535)"))?,
    };
    Ok(DatabaseSource::Secret {
        host,
        port,
        name,
        secret_arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (env::DATABASE_URL, "postgres://app@127.0.0.1:5432/app"),
            (
                env::TOPIC_ARN,
                "arn:aws:sns:us-east-1:123456789012:user-created",
            ),
            (env::TOKEN_TABLE, "tokens"),
            (env::VERSION, "1.10"),
            (env::INSTANCE_ID, "i-1"),
            (env::AZ, "us-east-1a"),
        ])
    }

    fn parse(vars: &HashMap<&'static str, &'static str>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| Ok(vars.get(name).map(|v| v.to_string())))
    }

    #[test]
    fn complete_settings_parse_with_defaults() {
        let settings = parse(&base()).expect("valid");
        assert_eq!(settings.version, "1.10");
        assert!(!settings.require_verification);
        assert_eq!(settings.argon2.m_cost(), DEFAULT_ARGON2.0);
        assert_eq!(settings.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert!(matches!(settings.database, DatabaseSource::Url(_)));
    }

    #[test]
    fn each_required_setting_is_named_when_missing() {
        for name in [
            env::TOPIC_ARN,
            env::TOKEN_TABLE,
            env::VERSION,
            env::INSTANCE_ID,
            env::AZ,
        ] {
            let mut vars = base();
            vars.remove(name);
            let err = parse(&vars).expect_err(name).to_string();
            assert!(err.starts_with(name), "{err}");
        }
        let mut vars = base();
        vars.remove(env::DATABASE_URL);
        let err = parse(&vars).expect_err("no database").to_string();
        assert!(
            err.contains(env::DATABASE_URL) && err.contains(env::DB_SECRET_ARN),
            "{err}"
        );
    }

    #[test]
    fn malformed_settings_are_named_without_echoing_values() {
        for (name, value) in [
            (env::REQUIRE_VERIFICATION, "maybe"),
            (env::TOPIC_ARN, "user-created"),
            (env::ARGON2_M_COST, "lots"),
            (env::ARGON2_T_COST, "0"),
            (env::SHUTDOWN_GRACE_SECONDS, "-1"),
            (env::DATABASE_URL, "mysql://secret-password@db/app"),
        ] {
            let mut vars = base();
            vars.insert(name, value);
            let err = parse(&vars).expect_err(name).to_string();
            assert!(err.starts_with(name), "{err}");
            assert!(!err.contains("secret-password"), "{err}");
        }
    }

    #[test]
    fn secret_source_needs_all_three_parts() {
        let mut vars = base();
        vars.remove(env::DATABASE_URL);
        vars.insert(env::DB_HOST, "db.internal");
        vars.insert(env::DB_NAME, "app");
        let err = parse(&vars).expect_err("no secret").to_string();
        assert!(err.starts_with(env::DB_SECRET_ARN), "{err}");
        vars.insert(
            env::DB_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        );
        vars.insert(env::DB_PORT, "6543");
        let settings = parse(&vars).expect("valid");
        assert_eq!(
            settings.database,
            DatabaseSource::Secret {
                host: "db.internal".into(),
                port: 6543,
                name: "app".into(),
                secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db".into(),
            }
        );
    }

    #[test]
    fn rocket_toml_numbers_and_booleans_read_as_text() {
        let figment = Figment::new().merge(Serialized::globals(HashMap::from([(
            "triad_require_verification",
            true,
        )])));
        let found = figment
            .find_value("triad_require_verification")
            .expect("set");
        assert_eq!(text(&found).as_deref(), Some("true"));
    }
}
