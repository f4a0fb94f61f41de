//! Start-up with the database credentials in a Secrets Manager secret (moto), the way the
//! stack runs it on RDS: TRIAD_DB_HOST + TRIAD_DB_NAME + TRIAD_DB_SECRET_ARN.
//!
//! The test cluster trusts every local login, so the password itself is not checked here; the
//! user name is (the role must exist, and the app's session runs as it).

use rocket::http::Status;
use webapp::App;
use webapp::config::DatabaseSource;

use crate::common::{TestApp, admin_connection, settings};

async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    client
        .create_secret()
        .name(testkit::unique_name("db-secret"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_string()
}

fn host_and_port(url: &str) -> (String, u16) {
    let after = url.split('@').nth(1).expect("user@host");
    let hostport = after.split('/').next().expect("host:port");
    let (host, port) = hostport.split_once(':').expect("port");
    (host.to_string(), port.parse().expect("port number"))
}

#[tokio::test]
async fn starts_with_credentials_from_the_secret() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let name = url.rsplit('/').next().expect("db name").to_string();
    let role = format!("app_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin_connection(&testkit::pg_admin_url()).await;
    sqlx::query(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw-from-secret-1'"
    ))
    .execute(&mut admin)
    .await
    .expect("create role");
    sqlx::query(&format!("ALTER DATABASE \"{name}\" OWNER TO \"{role}\""))
        .execute(&mut admin)
        .await
        .expect("owner");

    let aws = testkit::aws_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let value = serde_json::json!({
        "username": role, "password": "pw-from-secret-1", "engine": "postgres"
    });
    let arn = secret(&client, &value.to_string()).await;
    let (host, port) = host_and_port(&url);
    let mut s = settings(&url);
    s.database = DatabaseSource::Secret {
        host,
        port,
        name,
        secret_arn: arn,
    };
    let t = TestApp::start(s, &aws).await;

    assert_eq!(
        t.client.get("/healthz").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(
        t.signup("ivy@example.com", "correct-horse-7").await.0,
        Status::Created
    );
    let (user,): (String,) = sqlx::query_as("SELECT current_user::text")
        .fetch_one(t.app.db.pool())
        .await
        .expect("current user");
    assert_eq!(user, role, "the session runs as the secret's user");
}

/// A secret that cannot be read at start — not JSON with username and password, or not there
/// at all (IAM or the secret not in place yet) — does not stop start-up: the webapp serves,
/// `/healthz` answers 503 as with an unreachable database, and once the secret holds valid
/// credentials it reads them and becomes healthy without a restart.
#[tokio::test]
async fn an_unreadable_secret_keeps_the_webapp_unhealthy_until_it_is_fixed() {
    use std::time::Duration;

    let url = testkit::fresh_database().await.expect("fresh database");
    let name = url.rsplit('/').next().expect("db name").to_string();
    let aws = testkit::aws_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let (host, port) = host_and_port(&url);
    let malformed = secret(&client, "just a password").await;
    let absent = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
        testkit::unique_name("absent")
    );
    let mut apps = Vec::new();
    for arn in [malformed.clone(), absent] {
        let mut s = settings(&url);
        s.database = DatabaseSource::Secret {
            host: host.clone(),
            port,
            name: name.clone(),
            secret_arn: arn.clone(),
        };
        let app = App::start(s, &aws)
            .await
            .unwrap_or_else(|e| panic!("start-up with {arn} goes on: {e:#}"));
        let http = crate::common::client_for(&app).await;
        assert_eq!(
            http.get("/healthz").dispatch().await.status(),
            Status::ServiceUnavailable,
            "{arn}"
        );
        apps.push((app, http));
    }

    // The test cluster trusts local logins, so the role that owns the database will do.
    let (owner,): (String,) =
        sqlx::query_as("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin_connection(&testkit::pg_admin_url()).await)
            .await
            .expect("the database's owner");
    let value = serde_json::json!({ "username": owner, "password": "unused-here" });
    client
        .put_secret_value()
        .secret_id(&malformed)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("fix the secret");

    let (fixed, http) = &apps[0];
    tokio::time::timeout(Duration::from_secs(60), fixed.schema.ready())
        .await
        .expect("the webapp reads the fixed secret and applies its migrations");
    assert_eq!(http.get("/healthz").dispatch().await.status(), Status::Ok);
    let (_, still_absent) = &apps[1];
    assert_eq!(
        still_absent.get("/healthz").dispatch().await.status(),
        Status::ServiceUnavailable,
        "the absent secret's webapp stays unhealthy"
    );
}
