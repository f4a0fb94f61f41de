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

#[tokio::test]
async fn a_missing_or_malformed_secret_stops_start_up_naming_it() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let aws = testkit::aws_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let (host, port) = host_and_port(&url);
    let malformed = secret(&client, "just a password").await;
    let absent = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
        testkit::unique_name("absent")
    );
    for arn in [malformed, absent] {
        let mut s = settings(&url);
        s.database = DatabaseSource::Secret {
            host: host.clone(),
            port,
            name: "postgres".into(),
            secret_arn: arn.clone(),
        };
        let err = match App::start(s, &aws).await {
            Ok(_) => panic!("start-up with {arn} must fail"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(&arn), "{err}");
    }
}
