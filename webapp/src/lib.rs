//! The web service every instance of the stack runs: sign-up, the signed-in user, e-mail
//! verification, health and version, over Rocket and PostgreSQL (sqlx), with a transactional
//! outbox publishing "user created" events to SNS.
//!
//! `main` reads the [`config::Settings`], calls [`App::start`] (connect, migrate, start the
//! outbox publisher), launches [`App::rocket`], and on SIGTERM lets Rocket drain before one
//! last outbox flush. Tests build the same [`App`] in process.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod logging;
pub mod outbox;
pub mod passwords;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::config::Settings;
use crate::db::Db;
use crate::outbox::{Publisher, PublisherHandle};
use crate::passwords::Passwords;

/// What every request handler can reach (Rocket managed state).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub passwords: Passwords,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub publisher: Publisher,
}

/// A started application: database ready, outbox publisher running.
pub struct App {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub publisher: Publisher,
    publisher_task: PublisherHandle,
    dynamodb: aws_sdk_dynamodb::Client,
}

/// Bounds on every AWS call, so a silent endpoint cannot hold a request or the publisher.
fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(10))
        .build()
}

/// The AWS configuration from the standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL`,
/// credentials from the environment, profile or instance metadata).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(aws_timeouts())
        .load()
        .await
}

impl App {
    /// Connects to the database (reading the secret when configured so), applies the
    /// migrations and starts the outbox publisher.
    pub async fn start(settings: Settings, aws: &SdkConfig) -> Result<App> {
        let settings = Arc::new(settings);
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(aws)
                .timeout_config(aws_timeouts())
                .build(),
        );
        let db = Db::new(&settings.database, &settings.pool, secrets)
            .await
            .context("preparing the database pool")?;
        db.migrate().await?;
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(aws)
                .timeout_config(aws_timeouts())
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(aws)
                .timeout_config(aws_timeouts())
                .build(),
        );
        let publisher = Publisher::new(
            db.pool().clone(),
            sns,
            settings.topic_arn.clone(),
            settings.outbox.clone(),
        );
        let publisher_task = publisher.spawn();
        Ok(App {
            settings,
            db,
            publisher,
            publisher_task,
            dynamodb,
        })
    }

    /// The Rocket instance serving this app, configured by `figment` (see [`config::figment`]).
    pub fn rocket(&self, figment: Figment) -> Rocket<Build> {
        let state = AppState {
            settings: self.settings.clone(),
            db: self.db.clone(),
            passwords: Passwords::new(self.settings.argon2.clone()),
            dynamodb: self.dynamodb.clone(),
            publisher: self.publisher.clone(),
        };
        rocket::custom(config::rocket_figment(&figment, &self.settings))
            .manage(state)
            .attach(logging::RequestLog)
            .mount("/", api::routes())
            .register("/", api::catchers())
    }

    /// After Rocket has drained: stop the publisher and try once more to send what is pending.
    pub async fn shut_down(self) -> Result<usize> {
        self.publisher_task.stop().await;
        let sent = tokio::time::timeout(Duration::from_secs(10), self.publisher.flush())
            .await
            .context("the final outbox flush took longer than 10 s")??;
        self.db.pool().close().await;
        Ok(sent)
    }
}
