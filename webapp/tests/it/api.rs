//! Every endpoint in process (Rocket's local client) against a fresh PostgreSQL database and
//! the shared moto server (DynamoDB for verification tokens).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use contract::tokens;
use rocket::http::{ContentType, Header, Status};
use time::OffsetDateTime;

use crate::common::{TestApp, admin_connection, basic, eventually, json_of, token_table};

const PASSWORD: &str = "correct-horse-7";

#[tokio::test]
async fn healthz_answers_200_empty_and_uncached() {
    let t = TestApp::fresh(|_| {}).await;
    let response = t.client.get("/healthz").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.headers().get_one("Cache-Control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert!(response.headers().get_one("X-Request-Id").is_some());
    assert_eq!(response.into_string().await.unwrap_or_default(), "");
    let head = t.client.head("/healthz").dispatch().await;
    assert_eq!(head.status(), Status::Ok);
}

#[tokio::test]
async fn healthz_refuses_query_body_and_other_methods() {
    let t = TestApp::fresh(|_| {}).await;
    let r = t.client.get("/healthz?verbose=1").dispatch().await;
    assert_eq!(r.status(), Status::BadRequest);
    assert!(
        json_of(r.into_string().await)["error"]
            .as_str()
            .expect("reason")
            .contains("query")
    );
    let r = t
        .client
        .get("/healthz")
        .header(Header::new("Content-Length", "1"))
        .body("x")
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::BadRequest);
    assert!(
        json_of(r.into_string().await)["error"]
            .as_str()
            .expect("reason")
            .contains("body")
    );
    for r in [
        t.client.post("/healthz").dispatch().await,
        t.client.put("/healthz").dispatch().await,
        t.client.delete("/healthz").dispatch().await,
        t.client.patch("/healthz").dispatch().await,
    ] {
        assert_eq!(r.status(), Status::MethodNotAllowed);
        assert_eq!(r.headers().get_one("Allow"), Some("GET, HEAD, OPTIONS"));
    }
    let r = t.client.delete("/v1/user").dispatch().await;
    assert_eq!(r.status(), Status::MethodNotAllowed);
    assert_eq!(r.headers().get_one("Allow"), Some("POST, OPTIONS"));
}

/// The database refuses connections (existing ones killed) → 503; allowed again → 200, without
/// restarting: the pool tests connections and makes new ones.
#[tokio::test]
async fn healthz_is_503_while_the_database_is_unreachable_and_heals() {
    let t = TestApp::fresh(|_| {}).await;
    assert_eq!(
        t.client.get("/healthz").dispatch().await.status(),
        Status::Ok
    );
    let db = t
        .database_url
        .rsplit('/')
        .next()
        .expect("db name")
        .to_string();
    let mut admin = admin_connection(&testkit::pg_admin_url()).await;
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .expect("refuse connections");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db)
        .execute(&mut admin)
        .await
        .expect("terminate backends");
    let r = t.client.get("/healthz").dispatch().await;
    assert_eq!(r.status(), Status::ServiceUnavailable);
    assert_eq!(
        json_of(r.into_string().await)["error"],
        "database unavailable"
    );
    // Checks that share a query see the outage too.
    let burst =
        futures::future::join_all((0..20).map(|_| t.client.get("/healthz").dispatch())).await;
    for r in burst {
        assert_eq!(r.status(), Status::ServiceUnavailable);
    }
    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .expect("allow connections");
    eventually("healthz to recover", Duration::from_secs(20), || async {
        (t.client.get("/healthz").dispatch().await.status() == Status::Ok).then_some(())
    })
    .await;
}

/// Concurrent health checks share their database round trip: fifty at once cost a few
/// queries, not fifty, and every one answers 200. A check that arrives after they were answered
/// sends a query of its own: no answer is reused.
#[tokio::test]
async fn concurrent_health_checks_share_a_query() {
    let t = TestApp::fresh(|_| {}).await;
    let before = t.app.health.queries();
    let burst =
        futures::future::join_all((0..50).map(|_| t.client.get("/healthz").dispatch())).await;
    for r in burst {
        assert_eq!(r.status(), Status::Ok);
    }
    let shared = t.app.health.queries() - before;
    assert!(
        (1..=5).contains(&shared),
        "{shared} queries answered 50 concurrent checks"
    );
    assert_eq!(
        t.client.get("/healthz").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(t.app.health.queries(), before + shared + 1);
}

/// An instance whose database is not there yet (here: the database does not exist) starts all
/// the same: `/healthz` and every route that needs the database answer 503 with a JSON reason,
/// `/version` answers; once the database appears, the migrations run by themselves, health
/// turns 200, and signups, sign-ins and the outbox work.
#[tokio::test]
async fn without_its_database_the_app_serves_503_until_the_migrations_are_applied() {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let url = testkit::with_database(&testkit::pg_admin_url(), &name);
    let settings = crate::common::settings(&url);
    let topic = settings.topic_arn.clone();
    let aws = testkit::aws_config().await;
    let app = webapp::App::start(settings, &aws)
        .await
        .expect("start-up does not wait for the database");
    let client = crate::common::client_for(&app).await;

    let health = client.get("/healthz").dispatch().await;
    assert_eq!(health.status(), Status::ServiceUnavailable);
    assert_eq!(
        health.headers().get_one("Cache-Control"),
        Some("no-cache, no-store, must-revalidate")
    );
    let reason = json_of(health.into_string().await)["error"].clone();
    assert!(
        reason.as_str().is_some_and(|r| r.contains("migrations")),
        "{reason}"
    );
    let signup = serde_json::json!({
        "email": "nan@example.com", "password": PASSWORD, "first_name": "Nan", "last_name": "N"
    })
    .to_string();
    let requests = [
        client
            .post("/v1/user")
            .header(ContentType::JSON)
            .body(&signup),
        client
            .get("/v1/user/self")
            .header(basic("nan@example.com", PASSWORD)),
        client
            .put("/v1/user/self")
            .header(basic("nan@example.com", PASSWORD))
            .header(ContentType::JSON)
            .body(r#"{"first_name": "Nancy"}"#),
        client.get(format!("/v1/user/verify?token={}", "A".repeat(43))),
    ];
    for request in requests {
        let r = request.dispatch().await;
        assert_eq!(r.status(), Status::ServiceUnavailable);
        assert_eq!(r.content_type(), Some(ContentType::JSON));
        assert_eq!(json_of(r.into_string().await)["error"], reason);
    }
    assert_eq!(client.get("/version").dispatch().await.status(), Status::Ok);
    assert!(!app.schema.is_ready());

    let topic_name = topic.rsplit(':').next().expect("topic name");
    crate::common::create_topic(&aws, topic_name).await;
    let mut admin = admin_connection(&testkit::pg_admin_url()).await;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create the database");
    tokio::time::timeout(Duration::from_secs(60), app.schema.ready())
        .await
        .expect("the migrations are applied once the database exists");
    eventually("healthz to answer 200", Duration::from_secs(20), || async {
        (client.get("/healthz").dispatch().await.status() == Status::Ok).then_some(())
    })
    .await;
    let r = client
        .post("/v1/user")
        .header(ContentType::JSON)
        .body(&signup)
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Created);
    let r = client
        .get("/v1/user/self")
        .header(basic("nan@example.com", PASSWORD))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Ok);
    let observer = crate::common::observer_pool(&url).await;
    eventually(
        "the signup's event to be published",
        Duration::from_secs(30),
        || {
            let observer = observer.clone();
            async move {
                let (sent,): (i64,) =
                    sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
                        .fetch_one(&observer)
                        .await
                        .expect("count the outbox");
                (sent == 1).then_some(())
            }
        },
    )
    .await;
    app.shut_down().await.expect("shut down");
}

#[tokio::test]
async fn version_reports_configured_values() {
    let t = TestApp::fresh(|s| s.az = "us-east-1c".into()).await;
    let r = t.client.get("/version").dispatch().await;
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(
        json_of(r.into_string().await),
        serde_json::json!({"version": "1.10", "instance": "i-test", "az": "us-east-1c"})
    );
}

#[tokio::test]
async fn signup_creates_the_user_and_its_outbox_event_together() {
    let t = TestApp::fresh(|_| {}).await;
    let (status, body) = t.signup(" Ada@Example.com ", PASSWORD).await;
    assert_eq!(status, Status::Created, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "created_at",
            "email",
            "first_name",
            "id",
            "last_name",
            "updated_at",
            "verified"
        ]
    );
    assert_eq!(body["email"], "Ada@Example.com");
    assert_eq!(body["verified"], false);
    assert!(!body.to_string().contains(PASSWORD) && !body.to_string().contains("argon2"));

    let mut conn = admin_connection(&t.database_url).await;
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users")
        .fetch_one(&mut conn)
        .await
        .expect("user row");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let (id, payload): (uuid::Uuid, String) = sqlx::query_as("SELECT id, payload FROM outbox")
        .fetch_one(&mut conn)
        .await
        .expect("outbox row");
    let event = contract::UserCreated::from_json(&payload).expect("a user-created event");
    assert_eq!(event.event_id, id, "the outbox row id is the event id");
    assert_eq!(event.user_id.to_string(), body["id"].as_str().expect("id"));
    assert_eq!(event.email, "Ada@Example.com");
    assert_eq!(event.first_name, "Ada");
}

#[tokio::test]
async fn signup_names_the_field_at_fault() {
    let t = TestApp::fresh(|_| {}).await;
    let valid = serde_json::json!({
        "email": "bob@example.com", "password": PASSWORD, "first_name": "Bob", "last_name": "B"
    });
    let with = |key: &str, value: serde_json::Value| {
        let mut v = valid.clone();
        v[key] = value;
        v.to_string()
    };
    let without = |key: &str| {
        let mut v = valid.clone();
        v.as_object_mut().expect("object").remove(key);
        v.to_string()
    };
    let cases = [
        (without("email"), Some("email")),
        (without("password"), Some("password")),
        (without("first_name"), Some("first_name")),
        (without("last_name"), Some("last_name")),
        (with("admin", true.into()), Some("admin")),
        (with("first_name", 5.into()), Some("first_name")),
        (with("email", serde_json::Value::Null), Some("email")),
        (with("email", "not-an-email".into()), Some("email")),
        (with("email", "bob@localhost".into()), Some("email")),
        (with("password", "s3cret".into()), Some("password")),
        (with("password", "onlyletters".into()), Some("password")),
        (with("last_name", "   ".into()), Some("last_name")),
        ("not json".to_string(), None),
        ("[1, 2]".to_string(), None),
        (String::new(), None),
    ];
    for (body, field) in cases {
        let (status, answer) = t.post_json("/v1/user", &body).await;
        assert_eq!(status, Status::BadRequest, "{body} → {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        match field {
            Some(f) => assert_eq!(answer["field"], f, "{body} → {answer}"),
            None => assert!(answer.get("field").is_none(), "{answer}"),
        }
    }
    let mut conn = admin_connection(&t.database_url).await;
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let t = TestApp::fresh(|_| {}).await;
    let huge = format!(r#"{{"email": "{}@example.com"}}"#, "a".repeat(20_000));
    let (status, body) = t.post_json("/v1/user", &huge).await;
    assert_eq!(status, Status::PayloadTooLarge, "{body}");
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_the_case() {
    let t = TestApp::fresh(|_| {}).await;
    assert_eq!(
        t.signup("carol@example.com", PASSWORD).await.0,
        Status::Created
    );
    let (status, body) = t.signup("CAROL@example.COM", PASSWORD).await;
    assert_eq!(status, Status::Conflict, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("reason")
            .contains("already exists")
    );
}

#[tokio::test]
async fn racing_signups_for_one_email_give_one_201_and_the_rest_409() {
    let t = TestApp::fresh(|_| {}).await;
    let emails: Vec<String> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                "dan@example.com".into()
            } else {
                "DAN@example.com".into()
            }
        })
        .collect();
    let answers = futures::future::join_all(emails.iter().map(|e| t.signup(e, PASSWORD))).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == Status::Created)
        .count();
    let conflicts = answers
        .iter()
        .filter(|(s, _)| *s == Status::Conflict)
        .count();
    assert_eq!((created, conflicts), (1, 7), "{answers:?}");
    let mut conn = admin_connection(&t.database_url).await;
    let (users, events): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM outbox)")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(
        (users, events),
        (1, 1),
        "a refused signup leaves no event behind"
    );
}

#[tokio::test]
async fn self_needs_valid_basic_credentials() {
    let t = TestApp::fresh(|_| {}).await;
    t.signup("erin@example.com", PASSWORD).await;
    let r = t
        .client
        .get("/v1/user/self")
        .header(basic("ERIN@example.com", PASSWORD))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Ok);
    let body = json_of(r.into_string().await);
    assert_eq!(body["email"], "erin@example.com");
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());

    let bad_headers = [
        None,
        Some(basic("erin@example.com", "wrong-password-1")),
        Some(basic("nobody@example.com", PASSWORD)),
        Some(Header::new("Authorization", "Basic")),
        Some(Header::new("Authorization", "Basic !!!not-base64")),
        Some(Header::new(
            "Authorization",
            "Basic ZXJpbkBleGFtcGxlLmNvbQ==",
        )), // no colon
        Some(Header::new("Authorization", "Bearer abc")),
    ];
    for header in bad_headers {
        let mut request = t.client.get("/v1/user/self");
        if let Some(h) = header.clone() {
            request = request.header(h);
        }
        let r = request.dispatch().await;
        assert_eq!(r.status(), Status::Unauthorized, "{header:?}");
        assert_eq!(
            r.headers().get_one("WWW-Authenticate"),
            Some(r#"Basic realm="triad", charset="UTF-8""#)
        );
        assert!(json_of(r.into_string().await)["error"].is_string());
    }
}

#[tokio::test]
async fn put_self_changes_names_and_password_only() {
    let t = TestApp::fresh(|_| {}).await;
    t.signup("fay@example.com", PASSWORD).await;
    let put = |auth: Header<'static>, body: &'static str| {
        t.client
            .put("/v1/user/self")
            .header(auth)
            .header(ContentType::JSON)
            .body(body)
    };
    let r = put(
        basic("fay@example.com", PASSWORD),
        r#"{"first_name": "Faye", "password": "new-horse-8"}"#,
    )
    .dispatch()
    .await;
    assert_eq!(r.status(), Status::NoContent);
    let old = t
        .client
        .get("/v1/user/self")
        .header(basic("fay@example.com", PASSWORD))
        .dispatch()
        .await;
    assert_eq!(
        old.status(),
        Status::Unauthorized,
        "the old password is gone"
    );
    let now = t
        .client
        .get("/v1/user/self")
        .header(basic("fay@example.com", "new-horse-8"))
        .dispatch()
        .await;
    assert_eq!(now.status(), Status::Ok, "the new password signs in");
    let body = json_of(now.into_string().await);
    assert_eq!(
        (body["first_name"].as_str(), body["last_name"].as_str()),
        (Some("Faye"), Some("Lovelace"))
    );
    assert_ne!(body["updated_at"], body["created_at"]);

    let auth = || basic("fay@example.com", "new-horse-8");
    for (body, field) in [
        (r#"{"email": "other@example.com"}"#, Some("email")),
        (r#"{"verified": true}"#, Some("verified")),
        (r#"{"last_name": 7}"#, Some("last_name")),
        (r#"{"password": "short"}"#, Some("password")),
        (r#"{}"#, None),
        ("nope", None),
    ] {
        let r = put(auth(), body).dispatch().await;
        assert_eq!(r.status(), Status::BadRequest, "{body}");
        let answer = json_of(r.into_string().await);
        match field {
            Some(f) => assert_eq!(answer["field"], f, "{body} → {answer}"),
            None => assert!(answer["error"].is_string(), "{answer}"),
        }
    }
    let r = put(
        basic("fay@example.com", "wrong-1234"),
        r#"{"first_name": "X"}"#,
    )
    .dispatch()
    .await;
    assert_eq!(r.status(), Status::Unauthorized);
    assert!(r.headers().get_one("WWW-Authenticate").is_some());
}

/// Writes a token item the way the mailer does.
async fn put_token(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    token: &str,
    user_id: &str,
    expires_at: i64,
) {
    client
        .put_item()
        .table_name(table)
        .item(tokens::ATTR_TOKEN, AttributeValue::S(token.into()))
        .item(
            tokens::ATTR_EMAIL,
            AttributeValue::S("gil@example.com".into()),
        )
        .item(tokens::ATTR_USER_ID, AttributeValue::S(user_id.into()))
        .item(
            tokens::ATTR_EXPIRES_AT,
            AttributeValue::N(expires_at.to_string()),
        )
        .item(
            tokens::ATTR_EVENT_ID,
            AttributeValue::S(uuid::Uuid::new_v4().to_string()),
        )
        .send()
        .await
        .expect("put token");
}

fn token(fill: char) -> String {
    std::iter::repeat_n(fill, 43).collect()
}

#[tokio::test]
async fn verify_with_valid_unknown_malformed_and_expired_tokens() {
    let t = TestApp::fresh(|s| s.require_verification = true).await;
    let table = t.app.settings.token_table.clone();
    let dynamodb = token_table(&table).await;
    let (_, user) = t.signup("gil@example.com", PASSWORD).await;
    let user_id = user["id"].as_str().expect("id");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    put_token(&dynamodb, &table, &token('v'), user_id, now + 3600).await;
    put_token(&dynamodb, &table, &token('x'), user_id, now - 1).await;

    let me = || {
        t.client
            .get("/v1/user/self")
            .header(basic("gil@example.com", PASSWORD))
    };
    let r = me().dispatch().await;
    assert_eq!(
        r.status(),
        Status::Forbidden,
        "unverified while verification is required"
    );

    let r = t
        .client
        .get(format!("/v1/user/verify?token={}", token('x')))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Gone);
    for _ in 0..2 {
        let r = t
            .client
            .get(format!("/v1/user/verify?token={}", token('v')))
            .dispatch()
            .await;
        assert_eq!(
            r.status(),
            Status::Ok,
            "repeating a verification is harmless"
        );
        let body = json_of(r.into_string().await);
        assert_eq!(
            (body["id"].as_str(), body["verified"].as_bool()),
            (Some(user_id), Some(true))
        );
    }
    assert_eq!(me().dispatch().await.status(), Status::Ok);

    let r = t
        .client
        .get(format!("/v1/user/verify?token={}", token('u')))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::NotFound);
    for path in [
        "/v1/user/verify".to_string(),
        "/v1/user/verify?token=short".to_string(),
        format!(
            "/v1/user/verify?token={}",
            tokens::idempotency_key(uuid::Uuid::nil()).replace('#', "%23")
        ),
    ] {
        let r = t.client.get(path.clone()).dispatch().await;
        assert_eq!(r.status(), Status::BadRequest, "{path}");
        assert_eq!(json_of(r.into_string().await)["field"], "token");
    }
}

#[tokio::test]
async fn unverified_users_pass_when_verification_is_not_required() {
    let t = TestApp::fresh(|s| s.require_verification = false).await;
    t.signup("hal@example.com", PASSWORD).await;
    let r = t
        .client
        .get("/v1/user/self")
        .header(basic("hal@example.com", PASSWORD))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Ok);
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let t = TestApp::fresh(|_| {}).await;
    let r = t.client.get("/nope").dispatch().await;
    assert_eq!(r.status(), Status::NotFound);
    assert_eq!(r.content_type(), Some(ContentType::JSON));
    assert_eq!(json_of(r.into_string().await)["error"], "Not Found");
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let t = TestApp::fresh(|_| {}).await;
    let r = t.client.get("/openapi.json").dispatch().await;
    assert_eq!(r.status(), Status::Ok);
    let doc = json_of(r.into_string().await);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for (path, method) in [
        ("/healthz", "get"),
        ("/version", "get"),
        ("/v1/user", "post"),
        ("/v1/user/self", "get"),
        ("/v1/user/self", "put"),
        ("/v1/user/verify", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
    let responses = &doc["paths"]["/v1/user"]["post"]["responses"];
    for code in ["201", "400", "409"] {
        assert!(responses[code].is_object(), "signup documents {code}");
    }
    let schemas = &doc["components"]["schemas"];
    let user = &schemas["User"]["properties"];
    for field in [
        "id",
        "email",
        "first_name",
        "last_name",
        "verified",
        "created_at",
        "updated_at",
    ] {
        assert!(user[field].is_object(), "User.{field}");
    }
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let mut required: Vec<&str> = schemas["SignupRequest"]["required"]
        .as_array()
        .expect("required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    required.sort();
    assert_eq!(required, ["email", "first_name", "last_name", "password"]);
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"]["scheme"],
        "basic"
    );
    let params = doc["paths"]["/v1/user/verify"]["get"]["parameters"]
        .as_array()
        .expect("params");
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "token" && p["in"] == "query")
    );
}
