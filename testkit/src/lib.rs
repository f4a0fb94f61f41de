//! Shared test support, used only as a dev-dependency.
//!
//! `scripts/test` starts a PostgreSQL cluster and a moto server on free loopback ports and
//! exports their addresses; this crate turns them into per-test resources:
//! - [`fresh_database`] creates a database with a unique name, so tests never share rows;
//! - [`aws_config`] points aws-sdk-rust at the shared moto server; tests isolate themselves with
//!   [`unique_name`] and never reset that server;
//! - [`MotoServer::start`] runs a private moto server for a test that needs a pristine one (or
//!   creates Lambda functions, which break moto's data endpoint for everyone on that server).
//!
//! A test that needs these services and cannot find them fails with a message that says to run
//! `scripts/test`; it never skips silently.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Environment variable holding the admin URL of the test PostgreSQL cluster.
pub const PG_URL_VAR: &str = "TRIAD_TEST_PG_URL";
/// Environment variable holding the shared moto server's endpoint.
pub const MOTO_URL_VAR: &str = "TRIAD_TEST_MOTO_URL";
/// Environment variable holding the path of the `moto_server` executable.
pub const MOTO_BIN_VAR: &str = "TRIAD_TEST_MOTO_BIN";

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: {what} is started by `scripts/test`; run the tests through it"
        ),
    }
}

/// A name no other test (or earlier run against the same moto server) uses.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// The admin URL of the test PostgreSQL cluster (`postgres://…/postgres`).
pub fn pg_admin_url() -> String {
    required_env(PG_URL_VAR, "the test PostgreSQL cluster")
}

/// Replace the database name at the end of a PostgreSQL URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates an empty database with a unique name on the test cluster and returns its URL.
/// The caller applies its own migrations (the webapp's are embedded in the webapp).
pub async fn fresh_database() -> Result<String> {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("connecting to the test cluster at {admin}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .context("creating a test database")?;
    conn.close().await.ok();
    Ok(with_database(&admin, &name))
}

/// The shared moto server's endpoint.
pub fn moto_url() -> String {
    required_env(MOTO_URL_VAR, "the moto server")
}

/// An SDK config for moto at `endpoint`: region us-east-1, static test credentials.
pub async fn aws_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .test_credentials()
        .load()
        .await
}

/// An SDK config pointing at the shared moto server.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config_for(&moto_url()).await
}

/// A loopback port nobody is listening on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A moto server of the test's own, stopped when dropped.
pub struct MotoServer {
    child: Child,
    url: String,
}

impl MotoServer {
    /// Starts `moto_server` on a free loopback port and waits (with a deadline) until it answers.
    pub fn start() -> Result<Self> {
        let bin = PathBuf::from(required_env(MOTO_BIN_VAR, "moto"));
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = MotoServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("moto_server exited early with {status}");
            }
            if Instant::now() > deadline {
                bail!("moto_server did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_the_last_path_segment() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5433/postgres", "t_1"),
            "postgres://u@127.0.0.1:5433/t_1"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5433/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5433/x?sslmode=disable"
        );
    }

    /// Talks to the test PostgreSQL: a fresh database exists and is empty.
    #[tokio::test]
    async fn fresh_database_is_reachable_and_empty() {
        use sqlx::Connection;
        let url = fresh_database().await.expect("fresh database");
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count tables");
        assert_eq!(tables, 0);
        let other = fresh_database().await.expect("second database");
        assert_ne!(url, other, "each test gets its own database");
    }

    /// Talks to the shared moto server through aws-sdk-rust (SNS is modelled by moto).
    #[tokio::test]
    async fn moto_answers_through_the_sdk() {
        let config = aws_config().await;
        let sns = aws_sdk_sns::Client::new(&config);
        let name = unique_name("testkit");
        let created = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .expect("create topic");
        let arn = created.topic_arn().expect("topic arn").to_string();
        assert!(arn.ends_with(&name), "{arn} names the topic");
        let attrs = sns
            .get_topic_attributes()
            .topic_arn(&arn)
            .send()
            .await
            .expect("get attributes");
        assert_eq!(
            attrs
                .attributes()
                .and_then(|a| a.get("TopicArn"))
                .map(String::as_str),
            Some(arn.as_str())
        );
    }
}
