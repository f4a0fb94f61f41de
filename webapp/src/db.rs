//! The PostgreSQL side: the embedded migrations, the connection pool, and where its
//! credentials come from.
//!
//! Migrations run through sqlx's migrator, which holds a PostgreSQL advisory lock (keyed on the
//! database name) for the whole run, so instances starting together apply each migration once
//! and the others wait. At start they run on a background task ([`Db::migrate_in_background`])
//! that retries with bounded backoff until they are applied: an instance whose database is
//! unreachable still serves HTTP, and its health check answers 503 until the database answers
//! and the schema is in place ([`Schema`]). The pool tests a connection before handing it out and
//! bounds every acquire, so after a failover behind the same endpoint dead connections are
//! dropped and new ones made. With credentials from Secrets Manager, an authentication failure
//! makes the pool re-read the secret (at most every few seconds), so a rotated password heals
//! without a restart; a secret that cannot be read at start (not there yet, not readable by the
//! instance's role yet, not JSON with `username` and `password`) is treated like an unreachable
//! database: the webapp serves, answers 503, and re-reads it before each migration attempt.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use sqlx::PgPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::{DatabaseSource, PoolSettings};

/// The webapp's schema, embedded in the binary: each file of `migrations/` as sqlx names them,
/// `<version>_<description>.sql` (a unit test checks that this list and the directory agree).
/// Listed here rather than read by sqlx's `migrate!` macro, whose proc-macro crate would compile
/// sqlx's PostgreSQL driver and tokio a second time, for the host, in every cold build.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    20261123000001,
    "users and outbox",
    include_str!("../migrations/20261123000001_users_and_outbox.sql"),
)];

/// [`MIGRATIONS`] as sqlx's migrator reads them: the same version, description and checksum
/// (SHA-384 of the SQL) `migrate!` gives, so a database migrated by either agrees.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>,
    > {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    let no_tx = sql.starts_with("-- no-transaction");
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        sql.into(),
                        no_tx,
                    )
                })
                .collect())
        })
    }
}

/// The migrator of the webapp's schema (sqlx's defaults: under its advisory lock, refusing a
/// database that has applied a migration this build does not know).
pub async fn migrator() -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded).await
}

/// How often a failing login may trigger a re-read of the secret.
const SECRET_REREAD_INTERVAL: Duration = Duration::from_secs(5);

/// The first retry delay of the background migrations; doubled per attempt up to
/// [`MIGRATE_MAX_BACKOFF`].
pub const MIGRATE_MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two migration attempts.
pub const MIGRATE_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the embedded migrations have been applied (by this instance or another): request
/// handlers that need the schema answer 503 until they have.
#[derive(Clone)]
pub struct Schema(watch::Receiver<bool>);

impl Schema {
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the migrations are applied (never, if the migrating task was stopped
    /// before they were).
    pub async fn ready(&self) {
        let mut ready = self.0.clone();
        if ready.wait_for(|applied| *applied).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The pool, and (with Secrets Manager credentials) how to refresh them.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    secret: Option<Arc<SecretSource>>,
}

struct SecretSource {
    client: aws_sdk_secretsmanager::Client,
    host: String,
    port: u16,
    name: String,
    arn: String,
    last_read: Mutex<Instant>,
    /// True until the secret has been read once: the pool has no credentials yet.
    unread: AtomicBool,
}

/// The JSON the RDS-managed master secret holds.
#[derive(serde::Deserialize)]
struct SecretValue {
    username: String,
    password: String,
}

impl SecretSource {
    async fn connect_options(&self) -> Result<PgConnectOptions> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .with_context(|| format!("reading the database secret {}", self.arn))?;
        let text = out
            .secret_string()
            .ok_or_else(|| anyhow!("the database secret {} has no SecretString", self.arn))?;
        let value: SecretValue = serde_json::from_str(text).map_err(|_| {
            anyhow!(
                "the database secret {} is not JSON with username and password",
                self.arn
            )
        })?;
        Ok(PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&value.username)
            .password(&value.password)
            .application_name("triad-webapp"))
    }
}

impl Db {
    /// Builds the pool (lazily: nothing connects until the first query).
    pub async fn new(
        source: &DatabaseSource,
        limits: &PoolSettings,
        secrets: aws_sdk_secretsmanager::Client,
    ) -> Result<Db> {
        let (options, secret) = match source {
            DatabaseSource::Url(url) => (
                PgConnectOptions::from_str(url)
                    .context("parsing DATABASE_URL")?
                    .application_name("triad-webapp"),
                None,
            ),
            DatabaseSource::Secret {
                host,
                port,
                name,
                secret_arn,
            } => {
                let secret = SecretSource {
                    client: secrets,
                    host: host.clone(),
                    port: *port,
                    name: name.clone(),
                    arn: secret_arn.clone(),
                    last_read: Mutex::new(Instant::now()),
                    unread: AtomicBool::new(false),
                };
                let options = match secret.connect_options().await {
                    Ok(options) => options,
                    Err(e) => {
                        tracing::error!(
                            error = %format!("{e:#}"),
                            "cannot read the database secret; serving 503 and retrying"
                        );
                        secret.unread.store(true, Ordering::SeqCst);
                        // No credentials: every connection attempt fails until the secret is
                        // read.
                        PgConnectOptions::new()
                            .host(host)
                            .port(*port)
                            .database(name)
                            .application_name("triad-webapp")
                    }
                };
                (options, Some(Arc::new(secret)))
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(limits.max_connections)
            .min_connections(0)
            .acquire_timeout(limits.acquire_timeout)
            .max_lifetime(limits.max_lifetime)
            .idle_timeout(limits.idle_timeout)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Db { pool, secret })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations under the migrator's advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        migrator()
            .await
            .context("reading the embedded migrations")?
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// Applies the migrations on a task, retrying with bounded backoff
    /// ([`MIGRATE_MIN_BACKOFF`] doubling up to [`MIGRATE_MAX_BACKOFF`]) until they succeed.
    /// Abort the task to stop trying.
    pub fn migrate_in_background(&self) -> (Schema, JoinHandle<()>) {
        let (applied, schema) = watch::channel(false);
        let db = self.clone();
        let task = tokio::spawn(async move {
            let mut delay = MIGRATE_MIN_BACKOFF;
            let mut attempt = 1u32;
            loop {
                if !db.read_secret_if_unread().await {
                    tracing::warn!(
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        "the database secret is still unreadable; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(MIGRATE_MAX_BACKOFF);
                    attempt = attempt.saturating_add(1);
                    continue;
                }
                let applied_now = async { migrator().await?.run(&db.pool).await }.await;
                match applied_now {
                    Ok(()) => {
                        tracing::info!(attempt, "database migrations applied");
                        let _ = applied.send(true);
                        return;
                    }
                    Err(e) => {
                        if let MigrateError::Execute(cause)
                        | MigrateError::ExecuteMigration(cause, _) = &e
                        {
                            db.note_error(cause).await;
                        }
                        tracing::warn!(
                            attempt,
                            retry_in_ms = delay.as_millis() as u64,
                            error = %e,
                            "applying database migrations failed; retrying"
                        );
                    }
                }
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(MIGRATE_MAX_BACKOFF);
                attempt = attempt.saturating_add(1);
            }
        });
        (Schema(schema), task)
    }

    /// When the secret could not be read yet, tries again and gives the pool its credentials;
    /// false while it still cannot be read.
    async fn read_secret_if_unread(&self) -> bool {
        let Some(secret) = &self.secret else {
            return true;
        };
        if !secret.unread.load(Ordering::SeqCst) {
            return true;
        }
        match secret.connect_options().await {
            Ok(options) => {
                self.pool.set_connect_options(options);
                secret.unread.store(false, Ordering::SeqCst);
                tracing::info!("read the database secret");
                true
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "reading the database secret");
                false
            }
        }
    }

    /// Call with any database error: an authentication failure re-reads the secret (when the
    /// credentials come from one) and gives the pool the new password.
    pub async fn note_error(&self, error: &sqlx::Error) {
        let Some(secret) = &self.secret else { return };
        if !is_authentication_failure(error) {
            return;
        }
        let mut last = secret.last_read.lock().await;
        if last.elapsed() < SECRET_REREAD_INTERVAL {
            return;
        }
        *last = Instant::now();
        match secret.connect_options().await {
            Ok(options) => {
                tracing::warn!("database login failed; re-read the secret and retrying with it");
                self.pool.set_connect_options(options);
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "re-reading the database secret"),
        }
    }
}

/// SQLSTATE class 28: invalid authorization (28P01 is a wrong password).
fn is_authentication_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c.starts_with("28")))
}

/// True for errors that mean "the database is unreachable right now" rather than a bug.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    ) || is_authentication_failure(error)
        || matches!(error, sqlx::Error::Database(e)
            if e.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")))
}

/// True when `error` is a unique-constraint violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is what sqlx reads from `migrations/` itself: every file, with the same
    /// version, description, kind, checksum and transaction setting.
    #[tokio::test]
    async fn the_embedded_migrations_are_the_migrations_directory() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let from_files = Migrator::new(dir).await.expect("read migrations/");
        let embedded = migrator().await.expect("embedded migrations");
        let fields = |m: &Migration| {
            (
                m.version,
                m.description.to_string(),
                m.migration_type,
                m.checksum.to_vec(),
                m.no_tx,
            )
        };
        assert_eq!(
            embedded.iter().map(fields).collect::<Vec<_>>(),
            from_files.iter().map(fields).collect::<Vec<_>>()
        );
        assert!(embedded.iter().count() > 0);
    }
}
