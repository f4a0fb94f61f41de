//! The web service every instance of the stack runs: sign-up, the signed-in user, e-mail
//! verification, health and version, over Rocket and PostgreSQL (sqlx), with a transactional
//! outbox publishing "user created" events to SNS.
//!
//! `main` reads the [`config::Settings`], calls [`App::start`] (prepare the pool, start the
//! migrations and the outbox publisher in the background), launches [`App::rocket`], and on
//! SIGTERM lets Rocket drain before one last outbox flush. The HTTP server runs whether or not
//! the database answers: until it does and the schema is in place, `/healthz` and the routes
//! that need the database answer 503, so a load balancer sees an unhealthy instance rather
//! than a dead one. Tests build the same [`App`] in process.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod fields;
pub mod health;
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
use crate::db::{Db, Schema};
use crate::health::HealthCheck;
use crate::outbox::{Publisher, PublisherHandle};
use crate::passwords::Passwords;

/// What every request handler can reach (Rocket managed state).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub schema: Schema,
    pub passwords: Passwords,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub publisher: Publisher,
    /// The database check `/healthz` answers from, shared by concurrent requests.
    pub health: HealthCheck,
}

/// A started application: migrations and the outbox publisher running in the background.
pub struct App {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// Whether the migrations are applied; [`Schema::ready`] waits for it.
    pub schema: Schema,
    pub publisher: Publisher,
    /// The database check behind `/healthz` (one per app: every Rocket built from it shares it).
    pub health: HealthCheck,
    publisher_task: PublisherHandle,
    migrator: tokio::task::JoinHandle<()>,
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
    /// Prepares the pool (reading the secret when configured so; one that cannot be read yet
    /// is read again before each migration attempt), then starts applying the migrations — retried until the database answers —
    /// and the outbox publisher, which begins once they are applied. Nothing here waits for the
    /// database.
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
        let (schema, migrator) = db.migrate_in_background();
        // No SDK retries for the outbox: it retries with its own backoff, and an SDK retry
        // would keep the claimed rows' transaction (and a pool connection) open across its
        // sleeps while SNS is down.
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(aws)
                .timeout_config(aws_timeouts())
                .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
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
        let publisher_task = publisher.spawn(schema.clone());
        let health = HealthCheck::new(db.clone());
        Ok(App {
            settings,
            health,
            db,
            schema,
            publisher,
            publisher_task,
            migrator,
            dynamodb,
        })
    }

    /// The Rocket instance serving this app, configured by `figment` (see [`config::figment`]).
    pub fn rocket(&self, figment: Figment) -> Rocket<Build> {
        let state = AppState {
            settings: self.settings.clone(),
            db: self.db.clone(),
            schema: self.schema.clone(),
            passwords: Passwords::new(self.settings.argon2.clone()),
            dynamodb: self.dynamodb.clone(),
            publisher: self.publisher.clone(),
            health: self.health.clone(),
        };
        rocket::custom(config::rocket_figment(&figment, &self.settings))
            .manage(state)
            .attach(logging::RequestLog)
            .mount("/", api::routes())
            .register("/", api::catchers())
    }

    /// After Rocket has drained: stop the migrations and the publisher and, when the schema is
    /// in place, try once more to send what is pending.
    pub async fn shut_down(self) -> Result<usize> {
        self.migrator.abort();
        self.publisher_task.stop().await;
        if !self.schema.is_ready() {
            self.db.pool().close().await;
            return Ok(0);
        }
        let sent = tokio::time::timeout(Duration::from_secs(10), self.publisher.flush())
            .await
            .context("the final outbox flush took longer than 10 s")??;
        self.db.pool().close().await;
        Ok(sent.events)
    }
}
