//! Shared helpers: settings for a test, the app in process, requests with Basic credentials.

use std::time::{Duration, Instant};

use base64::Engine;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use webapp::App;
use webapp::config::{DatabaseSource, OutboxSettings, PoolSettings, Settings};

pub const ACCOUNT: &str = "123456789012";

/// Cheap argon2 parameters: tests check behaviour, not hashing cost.
pub fn cheap_argon2() -> argon2::Params {
    argon2::Params::new(8, 1, 1, None).expect("argon2 params")
}

pub fn topic_arn(name: &str) -> String {
    format!("arn:aws:sns:us-east-1:{ACCOUNT}:{name}")
}

/// Creates the SNS topic `name` at `aws` and returns its ARN (what [`topic_arn`] predicts).
pub async fn create_topic(aws: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_sns::Client::new(aws)
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("create the topic")
        .topic_arn
        .expect("a topic ARN")
}

/// Settings for a test on `database_url`, with a topic and a token table of unique names.
pub fn settings(database_url: &str) -> Settings {
    Settings {
        database: DatabaseSource::Url(database_url.to_string()),
        topic_arn: topic_arn(&testkit::unique_name("topic")),
        token_table: testkit::unique_name("tokens"),
        require_verification: false,
        version: "1.10".into(),
        instance_id: "i-test".into(),
        az: "us-east-1a".into(),
        argon2: cheap_argon2(),
        shutdown_grace: 1,
        pool: PoolSettings {
            acquire_timeout: Duration::from_secs(2),
            ..PoolSettings::default()
        },
        outbox: OutboxSettings {
            poll_interval: Duration::from_millis(200),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            batch_size: 25,
            linger: Duration::from_millis(20),
        },
    }
}

pub fn figment() -> rocket::figment::Figment {
    rocket::figment::Figment::from(rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    })
}

/// The app in process and a client for it, without waiting for its migrations.
pub async fn client_for(app: &App) -> Client {
    Client::untracked(app.rocket(figment()))
        .await
        .expect("rocket ignites")
}

/// The app in process, and a client for it.
pub struct TestApp {
    pub client: Client,
    pub app: App,
    pub database_url: String,
}

impl TestApp {
    pub async fn start(settings: Settings, aws: &aws_config::SdkConfig) -> TestApp {
        let database_url = match &settings.database {
            DatabaseSource::Url(u) => u.clone(),
            DatabaseSource::Secret { .. } => String::new(),
        };
        let app = App::start(settings, aws).await.expect("app starts");
        tokio::time::timeout(Duration::from_secs(60), app.schema.ready())
            .await
            .expect("the migrations are applied");
        let client = client_for(&app).await;
        TestApp {
            client,
            app,
            database_url,
        }
    }

    /// A fresh database, default test settings changed by `adjust`, moto for AWS.
    pub async fn fresh(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let url = testkit::fresh_database().await.expect("fresh database");
        let mut s = settings(&url);
        adjust(&mut s);
        TestApp::start(s, &testkit::aws_config().await).await
    }

    pub async fn signup(&self, email: &str, password: &str) -> (Status, serde_json::Value) {
        let body = serde_json::json!({
            "email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"
        });
        self.post_json("/v1/user", &body.to_string()).await
    }

    pub async fn post_json(&self, path: &str, body: &str) -> (Status, serde_json::Value) {
        let response = self
            .client
            .post(path.to_string())
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
            .await;
        let status = response.status();
        (status, json_of(response.into_string().await))
    }
}

pub fn json_of(body: Option<String>) -> serde_json::Value {
    match body {
        Some(b) if !b.is_empty() => serde_json::from_str(&b).expect("a JSON body"),
        _ => serde_json::Value::Null,
    }
}

pub fn basic(email: &str, password: &str) -> Header<'static> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{email}:{password}"));
    Header::new("Authorization", format!("Basic {encoded}"))
}

/// Polls `check` until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn admin_connection(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.expect("connect")
}

/// A small pool for polling from `eventually` closures.
pub async fn observer_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("observer pool")
}

/// A token table on moto with the contract's key schema.
pub async fn token_table(name: &str) -> aws_sdk_dynamodb::Client {
    let client = aws_sdk_dynamodb::Client::new(&testkit::aws_config().await);
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name(contract::tokens::PARTITION_KEY)
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name(contract::tokens::PARTITION_KEY)
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create token table");
    client
}

/// Serves `app` over TCP on a free loopback port until the returned handle is told to shut
/// down; answers the base URL once the port accepts connections.
pub async fn serve(app: &App) -> (String, rocket::Shutdown) {
    let port = testkit::free_port().expect("free port");
    let figment = rocket::figment::Figment::from(rocket::Config {
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    });
    let rocket = app.rocket(figment).ignite().await.expect("rocket ignites");
    let shutdown = rocket.shutdown();
    tokio::spawn(rocket.launch());
    eventually(
        "the port to accept connections",
        Duration::from_secs(10),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    (format!("http://127.0.0.1:{port}"), shutdown)
}
