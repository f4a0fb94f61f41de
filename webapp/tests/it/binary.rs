//! The built binary: configuration errors stop start-up with the variable's name, an
//! unreachable database leaves it up and unhealthy, SIGTERM
//! drains (a slow in-flight request completes, new connections are refused, exit 0), and the
//! JSON logs carry request ids but never passwords or Authorization values.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use contract::env;

use crate::common::{admin_connection, eventually};

fn binary() -> String {
    std::env::var("TRIAD_WEBAPP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_webapp").to_string())
}

/// A complete, valid environment for the binary.
fn base_env(database_url: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        (env::ROCKET_ADDRESS, "127.0.0.1".into()),
        (env::ROCKET_PORT, port.to_string()),
        (env::DATABASE_URL, database_url.into()),
        (
            env::TOPIC_ARN,
            crate::common::topic_arn(&testkit::unique_name("topic")),
        ),
        (env::TOKEN_TABLE, testkit::unique_name("tokens")),
        (env::VERSION, "2.0.1".into()),
        (env::INSTANCE_ID, "i-binary".into()),
        (env::AZ, "us-east-1b".into()),
        (env::ARGON2_M_COST, "8".into()),
        (env::ARGON2_T_COST, "1".into()),
        (env::ARGON2_P_COST, "1".into()),
        (env::AWS_REGION, "us-east-1".into()),
        (env::AWS_ENDPOINT_URL, testkit::moto_url()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

fn command(vars: &[(&str, String)]) -> Command {
    let mut command = Command::new(binary());
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    command.stdin(Stdio::null());
    command
}

fn run(vars: &[(&str, String)]) -> Output {
    command(vars).output().expect("run the webapp binary")
}

fn unreachable_db() -> String {
    let port = testkit::free_port().expect("free port");
    format!("postgres://app@127.0.0.1:{port}/app")
}

#[test]
fn missing_or_malformed_settings_stop_start_up_naming_them() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(env::DATABASE_URL), "{stderr}");

    let port = testkit::free_port().expect("free port");
    let valid = base_env(&unreachable_db(), port);
    let cases: Vec<(&str, Option<&str>)> = vec![
        (env::TOPIC_ARN, None),
        (env::TOKEN_TABLE, None),
        (env::VERSION, None),
        (env::TOPIC_ARN, Some("not-an-arn")),
        (env::REQUIRE_VERIFICATION, Some("maybe")),
        (env::ARGON2_M_COST, Some("1")),
        (env::SHUTDOWN_GRACE_SECONDS, Some("soon")),
        (env::DATABASE_URL, Some("mysql://root:hunter2@db/app")),
        (env::ROCKET_PORT, Some("not-a-port")),
    ];
    for (name, value) in cases {
        let mut vars: Vec<(&str, String)> =
            valid.iter().filter(|(k, _)| *k != name).cloned().collect();
        if let Some(v) = value {
            vars.push((name, v.to_string()));
        }
        let out = run(&vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value:?}: {stderr}");
        assert!(stderr.contains(name), "{name}={value:?}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "values are not echoed: {stderr}"
        );
    }
}

struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(vars: &[(&str, String)]) -> Running {
    let mut child = command(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the webapp binary");
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stdout.take().expect("stdout");
    let sink = stdout.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("log sink")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Running { child, stdout }
}

/// A webapp whose database does not answer boots anyway, as an instance would: it listens,
/// `/healthz` answers 503 (so a load balancer marks it unhealthy), routes that need the
/// database answer 503 with a JSON reason, it keeps retrying its migrations, and SIGTERM still
/// stops it cleanly.
#[tokio::test]
async fn an_unreachable_database_leaves_the_webapp_up_and_unhealthy() {
    let port = testkit::free_port().expect("free port");
    let mut app = spawn(&base_env(&unreachable_db(), port));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = eventually("the webapp to listen", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/healthz");
        async move { http.get(url).send().await.ok() }
    })
    .await;
    assert_eq!(health.status(), 503);
    let reason: serde_json::Value = health.json().await.expect("a JSON reason");
    assert!(
        reason["error"]
            .as_str()
            .is_some_and(|r| r.contains("migrations")),
        "{reason}"
    );
    let signup = http
        .post(format!("{base}/v1/user"))
        .json(&serde_json::json!({
            "email": "ann@example.com", "password": "correct-horse-7",
            "first_name": "Ann", "last_name": "A"
        }))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 503);
    let body: serde_json::Value = signup.json().await.expect("a JSON reason");
    assert_eq!(body, reason);
    let version = http
        .get(format!("{base}/version"))
        .send()
        .await
        .expect("version");
    assert_eq!(version.status(), 200);

    eventually(
        "a second failed migration attempt in the logs",
        Duration::from_secs(60),
        || {
            let logs = app.stdout.lock().expect("logs").clone();
            async move {
                let retries = logs
                    .lines()
                    .filter(|l| l.contains("applying database migrations failed"))
                    .count();
                (retries >= 2).then_some(())
            }
        },
    )
    .await;
    assert!(
        app.child.try_wait().expect("try_wait").is_none(),
        "the webapp is still running"
    );
    let status = Command::new("kill")
        .args(["-TERM", &app.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = eventually("the webapp to exit", Duration::from_secs(60), || {
        let status = app.child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let port = testkit::free_port().expect("free port");
    let mut vars = base_env(&url, port);
    // Rocket 0.5 waits out the whole grace whenever a connection is open at SIGTERM, so the
    // grace is both the in-flight request's budget and roughly when the process exits.
    vars.push((env::SHUTDOWN_GRACE_SECONDS, "20".into()));
    let mut app = spawn(&vars);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    eventually(
        "the webapp to answer /healthz",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let url = format!("{base}/healthz");
            async move {
                let r = http.get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let with_body = http
        .get(format!("{base}/healthz"))
        .body("x")
        .send()
        .await
        .expect("healthz");
    assert_eq!(with_body.status(), 400, "a body on /healthz over real HTTP");
    let version: serde_json::Value = http
        .get(format!("{base}/version"))
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], "2.0.1");

    let password = "s3cret-horse-in-logs";
    let signup = |email: &str| {
        http.post(format!("{base}/v1/user"))
            .json(&serde_json::json!({
                "email": email, "password": password, "first_name": "Jo", "last_name": "J"
            }))
    };
    assert_eq!(
        signup("jo@example.com")
            .send()
            .await
            .expect("signup")
            .status(),
        201
    );
    let me = http
        .get(format!("{base}/v1/user/self"))
        .basic_auth("jo@example.com", Some(password))
        .send()
        .await
        .expect("self");
    assert_eq!(me.status(), 200);

    // Hold the users table so the next signup is in flight, waiting on the lock.
    let mut holder = admin_connection(&url).await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .expect("lock users");
    let slow = tokio::spawn(signup("kim@example.com").send());
    let observer = crate::common::observer_pool(&url).await;
    eventually(
        "the signup to wait on the table lock",
        Duration::from_secs(30),
        || {
            let observer = observer.clone();
            async move {
                let (waiting,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO users%'",
                )
                .fetch_one(&observer)
                .await
                .expect("pg_stat_activity");
                (waiting > 0).then_some(())
            }
        },
    )
    .await;

    let status = Command::new("kill")
        .args(["-TERM", &app.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    eventually(
        "new connections to be refused",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    assert!(
        app.child.try_wait().expect("try_wait").is_none(),
        "still draining"
    );

    sqlx::query("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    let answer = slow
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(answer.status(), 201, "the in-flight signup completes");

    let exit = eventually("the webapp to exit", Duration::from_secs(120), || {
        let status = app.child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert_eq!(exit.code(), Some(0));

    let logs = app.stdout.lock().expect("logs").clone();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(requests.len() >= 4, "{logs}");
    assert!(
        requests
            .iter()
            .all(|l| l["request_id"].is_string() && l["status"].is_number())
    );
    assert!(
        requests
            .iter()
            .any(|l| l["path"] == "/v1/user/self" && l["status"] == 200)
    );
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("jo@example.com:{password}"));
    assert!(!logs.contains(password), "no password in the logs");
    assert!(
        !logs.contains(&credentials),
        "no Authorization value in the logs"
    );
}
