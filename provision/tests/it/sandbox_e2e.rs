//! The sandbox cloud end to end: a daemon (run in the test process, as `triad sandbox serve`
//! runs it) with real moto, a real PostgreSQL primary and standby, the sandbox load balancer
//! and webapp processes, driven through `SandboxCloud` — the Cloud port over the daemon's
//! control API. Each test runs its own sandbox in its own temporary directory on free ports.
//!
//! Needs `TRIAD_WEBAPP_BIN` (the built webapp), `TRIAD_MAILER_BIN` (the built mailer),
//! `TRIAD_TEST_MOTO_BIN` (moto_server) and PostgreSQL's server programs, all provided by
//! `scripts/test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use provision::port::{
    CapacityCheck, Cloud, DeployRequest, DesiredStack, Fault, FaultChange, LifecycleState,
    LogLevel, LogLine, LogQuery, MetricKind, Outputs, ProvisionEvent, RefreshStatus, SandboxChange,
    Snapshot, StackRef, StackStatus, TargetReason, TargetState, refresh_outcome,
};
use provision::sandbox::client::SandboxCloud;
use provision::sandbox::daemon::{self, DaemonConfig, SandboxSpec, marked_processes, marker_of};
use provision::spec::StackSpec;

const LIMIT: Duration = Duration::from_secs(180);

fn required(name: &str) -> PathBuf {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!("{name} is not set: run the tests through `scripts/test`"),
    }
}

/// A sandbox of its own: the state directory, the daemon task, the client.
struct Sandbox {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    stack: StackRef,
    cloud: SandboxCloud,
    daemon: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    spec_json: serde_json::Value,
    outputs: Outputs,
}

fn spec_toml(per_az: u32) -> String {
    let desired = per_az * 3;
    format!(
        r#"
name = "sbx-e2e"
region = "us-east-1"
[app]
version = "1.0.0"
min = {desired}
max = {max}
desired = {desired}
[mailer]
sender = "no-reply@example.com"
"#,
        max = desired * 2
    )
}

impl Sandbox {
    /// Starts the daemon and follows `apply` until the stack is up.
    async fn up(per_az: u32) -> Sandbox {
        Sandbox::up_in(per_az, 0o755).await
    }

    /// [`Sandbox::up`] with the state directory under a directory of mode `mode`. (PostgreSQL
    /// runs as its own user when the tests run as root: 0700 locks it out.)
    async fn up_in(per_az: u32, mode: u32) -> Sandbox {
        Sandbox::up_with(&spec_toml(per_az), mode).await
    }

    /// [`Sandbox::up_in`] with the spec `toml` (named `sbx-e2e`).
    async fn up_with(toml: &str, mode: u32) -> Sandbox {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                .expect("set the temporary directory's mode");
        }
        let dir = tmp.path().join("sbx-e2e");
        let spec = StackSpec::parse(toml).expect("a valid spec");
        let spec_json = serde_json::to_value(&spec).expect("spec as JSON");
        let config = DaemonConfig {
            dir: dir.clone(),
            spec: SandboxSpec::from_json(&spec_json).expect("a sandbox spec"),
            webapp_bin: required("TRIAD_WEBAPP_BIN"),
            moto_bin: required("TRIAD_TEST_MOTO_BIN"),
            mailer_bin: Some(required("TRIAD_MAILER_BIN")),
            timing: None,
        };
        std::fs::create_dir_all(&dir).expect("state dir");
        std::fs::write(
            dir.join(daemon::SPEC_FILE),
            serde_json::to_string(&spec_json).expect("spec text"),
        )
        .expect("write the spec");
        let daemon = tokio::spawn(daemon::serve(config));
        let cloud = SandboxCloud::new(&dir);
        let stack = StackRef::new("sbx-e2e").expect("stack name");
        let deadline = Instant::now() + LIMIT;
        while !cloud.is_running().await {
            assert!(Instant::now() < deadline, "the daemon never answered");
            assert!(!daemon.is_finished(), "the daemon stopped: {:?}", daemon);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut sandbox = Sandbox {
            _tmp: tmp,
            dir,
            stack,
            cloud,
            daemon,
            spec_json,
            outputs: Outputs::default(),
        };
        let events = sandbox.apply().await;
        let Some(ProvisionEvent::Finished {
            stack_status,
            outputs,
            ..
        }) = events.last()
        else {
            panic!("apply did not finish: {events:?}");
        };
        assert_eq!(
            *stack_status,
            StackStatus::CreateComplete,
            "bring-up failed: {events:#?}"
        );
        sandbox.outputs = outputs.clone();
        sandbox
    }

    async fn apply(&self) -> Vec<ProvisionEvent> {
        let desired = DesiredStack {
            stack: self.stack.clone(),
            template_body: "{}".into(),
            parameters: Default::default(),
            tags: Default::default(),
            spec: self.spec_json.clone(),
        };
        let plan = self.cloud.plan(&desired).await.expect("plan");
        let events: Vec<ProvisionEvent> =
            tokio::time::timeout(LIMIT, self.cloud.apply(&plan).collect::<Vec<_>>())
                .await
                .expect("apply ends in time")
                .into_iter()
                .map(|e| e.expect("apply event"))
                .collect();
        events
    }

    /// Starts an instance refresh for `request` and follows it to its end.
    async fn deploy_and_wait(&self, request: &DeployRequest) -> provision::port::Refresh {
        let id = self
            .cloud
            .deploy(&self.stack, request)
            .await
            .expect("deploy");
        tokio::time::timeout(
            LIMIT,
            refresh_outcome(self.cloud.wait_refresh(&self.stack, &id)),
        )
        .await
        .expect("the refresh ends in time")
        .expect("the refresh")
    }

    async fn snapshot(&self) -> Snapshot {
        self.cloud.snapshot(&self.stack).await.expect("snapshot")
    }

    /// Polls snapshots until `condition` holds; panics with the last one at the deadline.
    async fn until(&self, what: &str, condition: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let deadline = Instant::now() + LIMIT;
        loop {
            let snapshot = self.snapshot().await;
            if condition(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached in time; last snapshot {snapshot:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn down(self) -> String {
        let marker = marker_of(&self.dir);
        let events: Vec<ProvisionEvent> = self
            .cloud
            .destroy(&self.stack)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|e| e.expect("destroy event"))
            .collect();
        assert!(
            matches!(
                events.last(),
                Some(ProvisionEvent::Finished {
                    stack_status: StackStatus::DeleteComplete,
                    ..
                })
            ),
            "{events:?}"
        );
        tokio::time::timeout(Duration::from_secs(30), self.daemon)
            .await
            .expect("the daemon stops")
            .expect("the daemon task")
            .expect("the daemon ran without error");
        assert!(!self.dir.exists(), "destroy removes the state directory");
        marker
    }
}

/// Every healthy target, across AZs.
fn healthy_targets(snapshot: &Snapshot) -> usize {
    snapshot.azs.iter().map(|az| az.healthy_capacity()).sum()
}

fn all_targets_healthy(snapshot: &Snapshot, desired: usize) -> bool {
    healthy_targets(snapshot) == desired
        && snapshot
            .azs
            .iter()
            .flat_map(|az| &az.targets)
            .all(|t| t.state == TargetState::Healthy)
}

/// Every target healthy, and every instance on `version`.
fn all_healthy_on(snapshot: &Snapshot, desired: usize, version: &str) -> bool {
    all_targets_healthy(snapshot, desired)
        && snapshot
            .azs
            .iter()
            .flat_map(|a| &a.instances)
            .all(|i| i.version.as_deref() == Some(version))
}

async fn http(method: &str, url: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let client = reqwest::Client::new();
    let request = match method {
        "POST" => client.post(url).json(&body.unwrap_or_default()),
        _ => client.get(url),
    };
    let response = request
        .send()
        .await
        .expect("a response through the load balancer");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn alive(pid: u32) -> bool {
    daemon::process_alive(pid)
}

/// Processes whose command line names `dir` (PostgreSQL servers name their data directory).
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Also: the state directory sits under a 0700 directory, as under a home directory. When the
/// tests run as root, PostgreSQL (run as its own user) cannot enter it, so the database lives
/// in a per-stack directory in the system's temporary directory, and `down` removes that too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn up_serves_a_signup_through_the_load_balancer_and_down_leaves_nothing() {
    let sandbox = Sandbox::up_in(2, 0o700).await;
    let database_dir = daemon::database_dir(&sandbox.dir);
    if running_as_root() {
        let fallback = daemon::fallback_database_dir(&sandbox.dir, "sbx-e2e");
        assert_eq!(database_dir, fallback, "the database moved out of reach");
        assert!(
            !sandbox.dir.join("db").exists(),
            "nothing was built where PostgreSQL cannot go"
        );
        assert!(
            processes_naming(&fallback).len() >= 2,
            "the primary and the standby serve from {}",
            fallback.display()
        );
    } else {
        assert_eq!(database_dir, sandbox.dir.join("db"));
    }
    let snapshot = sandbox
        .until("six healthy targets", |s| all_targets_healthy(s, 6))
        .await;
    assert_eq!(snapshot.azs.len(), 3);
    for az in &snapshot.azs {
        assert_eq!(az.instances.len(), 2, "two instances in {}", az.az);
        assert!(
            az.instances
                .iter()
                .all(|i| i.lifecycle == LifecycleState::InService),
            "{az:?}"
        );
    }
    assert!(
        snapshot.db_primary_az().is_some(),
        "a primary: {snapshot:#?}"
    );
    assert!(
        snapshot.db_standby_az().is_some(),
        "a standby: {snapshot:#?}"
    );
    assert_ne!(snapshot.db_primary_az(), snapshot.db_standby_az());
    let capacity = snapshot.capacity.expect("capacity");
    assert_eq!(capacity.desired, 6);

    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let (status, body) = http(
        "POST",
        &format!("{endpoint}/v1/user"),
        Some(serde_json::json!({
            "email": "ada@example.com",
            "password": "correct-horse-7",
            "first_name": "Ada",
            "last_name": "Lovelace",
        })),
    )
    .await;
    assert_eq!(status, 201, "signup through the load balancer: {body}");

    // The metrics saw the traffic.
    let snapshot = sandbox.snapshot().await;
    let requests: f64 = snapshot
        .metrics
        .series
        .iter()
        .filter(|s| s.metric == MetricKind::Requests)
        .flat_map(|s| &s.points)
        .map(|p| p.value)
        .sum();
    assert!(requests >= 1.0, "{:?}", snapshot.metrics);
    // Healthy hosts per AZ and the instances' CPU, second by second.
    let snapshot = sandbox
        .until("healthy hosts and CPU series", |s| {
            s.azs.iter().all(|az| {
                s.metrics
                    .series(MetricKind::HealthyHosts, Some(&az.az))
                    .is_some_and(|series| {
                        series.points.len() >= 3
                            && series.points.last().is_some_and(|p| p.value == 2.0)
                    })
                    && s.metrics.series(MetricKind::Cpu, Some(&az.az)).is_some()
            }) && s
                .metrics
                .series(MetricKind::Cpu, None)
                .is_some_and(|series| series.points.iter().any(|p| p.value > 0.0))
        })
        .await;
    for series in snapshot
        .metrics
        .series
        .iter()
        .filter(|s| s.metric == MetricKind::Cpu)
    {
        assert!(
            series
                .points
                .iter()
                .all(|p| (0.0..=800.0).contains(&p.value)),
            "{series:?}"
        );
        assert!(
            series.points.windows(2).all(|w| w[0].at < w[1].at),
            "one point per second, oldest first: {series:?}"
        );
    }

    let instance_pids: Vec<u32> = marked_processes(&marker_of(&sandbox.dir));
    assert!(
        instance_pids.len() >= 7,
        "moto and six instances carry the marker: {instance_pids:?}"
    );
    let dir = sandbox.dir.clone();
    let marker = sandbox.down().await;
    assert_eq!(marked_processes(&marker), Vec::<u32>::new());
    assert!(instance_pids.iter().all(|pid| !alive(*pid)));
    assert_eq!(
        processes_naming(&dir),
        Vec::<u32>::new(),
        "no database server remains"
    );
    assert_eq!(processes_naming(&database_dir), Vec::<u32>::new());
    assert!(
        !database_dir.exists(),
        "down removes the database directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_az_takes_its_targets_out_and_capacity_comes_back() {
    let sandbox = Sandbox::up(1).await;
    sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let az = sandbox.snapshot().await.azs[0].az.clone();
    let record = sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::TerminateAz { az: az.clone() },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    let killed: BTreeSet<String> = record
        .changes
        .iter()
        .flat_map(|c| match c {
            FaultChange::Sandbox(SandboxChange::InstancesKilled { instance_ids, .. }) => {
                instance_ids.clone()
            }
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(killed.len(), 1, "{record:?}");
    sandbox
        .until("the killed targets leave the rotation", |s| {
            s.azs
                .iter()
                .flat_map(|a| &a.targets)
                .all(|t| !killed.contains(&t.id) || t.state != TargetState::Healthy)
        })
        .await;
    let snapshot = sandbox
        .until("capacity back to desired", |s| {
            all_targets_healthy(s, 3)
                && s.azs
                    .iter()
                    .flat_map(|a| &a.instances)
                    .all(|i| !killed.contains(&i.id))
        })
        .await;
    assert!(
        snapshot
            .events
            .iter()
            .any(|e| e.message.starts_with("Launching a new EC2 instance")),
        "{:?}",
        snapshot.events
    );
    sandbox.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_deploy_puts_every_instance_on_the_new_version() {
    let sandbox = Sandbox::up(1).await;
    sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let mut request = DeployRequest::new("2.0.0");
    request.preferences.min_healthy_percentage = 66;
    let refresh = sandbox.deploy_and_wait(&request).await;
    assert_eq!(refresh.status, RefreshStatus::Successful, "{refresh:?}");
    assert_eq!(refresh.percentage_complete, Some(100));
    let snapshot = sandbox
        .until("every instance on 2.0.0, all healthy", |s| {
            all_healthy_on(s, 3, "2.0.0")
        })
        .await;
    let endpoint = snapshot.endpoint.expect("endpoint");
    let (status, body) = http("GET", &format!("{endpoint}/version"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("2.0.0"), "{body}");
    sandbox.down().await;
}

/// The SDK configuration for the sandbox's moto.
async fn moto_sdk(sandbox: &Sandbox) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(sandbox.output("ManagedServicesEndpoint"))
        .test_credentials()
        .load()
        .await
}

impl Sandbox {
    fn output(&self, name: &str) -> String {
        self.outputs
            .get(name)
            .unwrap_or_else(|| panic!("no output {name}: {:?}", self.outputs))
            .to_owned()
    }
}

/// The e-mails moto captured for `recipient`: (source, body).
async fn mail_to(moto_url: &str, recipient: &str) -> Vec<(String, String)> {
    let data: serde_json::Value = reqwest::get(format!("{moto_url}/moto-api/data.json"))
        .await
        .expect("GET /moto-api/data.json")
        .error_for_status()
        .expect("moto's data endpoint answers")
        .json()
        .await
        .expect("moto's data is JSON");
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|to| to.iter().any(|a| a == recipient))
        })
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_owned(),
                m["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every item of the token table.
async fn token_items(
    sdk: &aws_config::SdkConfig,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    aws_sdk_dynamodb::Client::new(sdk)
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan the token table")
        .items()
        .to_vec()
}

fn attribute_text(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> String {
    match item.get(name) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(v)) => v.clone(),
        other => panic!("{name} is not a string: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signup_sends_one_verification_email_and_a_bad_event_ends_in_the_dead_letter_queue() {
    use contract::tokens::{ATTR_EMAIL, ATTR_TOKEN, ATTR_USER_ID, VERIFY_PATH};

    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let moto_url = sandbox.output("ManagedServicesEndpoint");
    let table = sandbox.output("TokenTableName");
    let sdk = moto_sdk(&sandbox).await;

    // 1. A signup through the load balancer: one e-mail with a link to the stack, one token.
    let email = "grace@example.com";
    let (status, body) = http(
        "POST",
        &format!("{endpoint}/v1/user"),
        Some(serde_json::json!({
            "email": email,
            "password": "correct-horse-7",
            "first_name": "Grace",
            "last_name": "Hopper",
        })),
    )
    .await;
    assert_eq!(status, 201, "signup: {body}");
    let user: serde_json::Value = serde_json::from_str(&body).expect("a user as JSON");
    let user_id = user["id"].as_str().expect("the user's id").to_owned();
    sandbox
        .until("the mailer's event for the signup's e-mail", |s| {
            s.events
                .iter()
                .any(|e| e.message == format!("verification e-mail sent to {email}"))
        })
        .await;
    let mail = mail_to(&moto_url, email).await;
    assert_eq!(mail.len(), 1, "exactly one e-mail: {mail:?}");
    let (source, text) = &mail[0];
    assert_eq!(source, "no-reply@example.com");
    let tokens: Vec<_> = token_items(&sdk, &table)
        .await
        .into_iter()
        .filter(|item| item.contains_key(ATTR_EMAIL))
        .collect();
    assert_eq!(tokens.len(), 1, "one token item: {tokens:?}");
    assert_eq!(attribute_text(&tokens[0], ATTR_EMAIL), email);
    assert_eq!(attribute_text(&tokens[0], ATTR_USER_ID), user_id);
    let token = attribute_text(&tokens[0], ATTR_TOKEN);
    assert!(
        text.contains(&format!("{endpoint}{VERIFY_PATH}?token={token}")),
        "the link points at the stack and carries the stored token: {text}"
    );

    // 2. An event the mailer refuses: three attempts, then the dead-letter queue.
    let published = aws_sdk_sns::Client::new(&sdk)
        .publish()
        .topic_arn(sandbox.output("UserCreatedTopicArn"))
        .message("not a user-created event")
        .send()
        .await
        .expect("publish to the topic");
    let message_id = published.message_id().expect("a message id").to_owned();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq = sandbox.output("MailerDeadLetterQueueUrl");
    let deadline = Instant::now() + LIMIT;
    let parked = loop {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the dead-letter queue");
        if let Some(message) = out.messages().first() {
            break message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the dead-letter queue; events: {:#?}",
            sandbox.snapshot().await.events
        );
    };
    let event: serde_json::Value =
        serde_json::from_str(parked.body().expect("a body")).expect("an SNS event");
    assert_eq!(event["Records"][0]["Sns"]["MessageId"], message_id.as_str());
    assert_eq!(
        event["Records"][0]["Sns"]["Message"],
        "not a user-created event"
    );
    let error = parked
        .message_attributes()
        .and_then(|a| a.get("ErrorMessage"))
        .and_then(|v| v.string_value())
        .expect("an ErrorMessage attribute");
    assert!(error.contains("MalformedMessage"), "{error}");
    let failures = sandbox
        .snapshot()
        .await
        .events
        .iter()
        .filter(|e| {
            e.message
                .starts_with(&format!("mailer: SNS message {message_id} failed"))
        })
        .count();
    assert_eq!(failures, 3, "one attempt and two retries");
    let mail = mail_to(&moto_url, email).await;
    assert_eq!(mail.len(), 1, "still exactly one e-mail: {mail:?}");
    sandbox.down().await;
}

/// Verification required (switched on by a deploy's environment override, as an operator
/// would): a signup through the load balancer cannot sign in (403) until the link from its
/// e-mail — captured by moto — is followed through the load balancer; then it can (200). The
/// events pane says the e-mail went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_link_from_the_verification_email_lets_the_user_sign_in() {
    use contract::tokens::VERIFY_PATH;

    let sandbox = Sandbox::up(1).await;
    sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let mut request = DeployRequest::new("1.1.0");
    request.env.insert(
        contract::env::REQUIRE_VERIFICATION.to_owned(),
        "true".to_owned(),
    );
    request.preferences.min_healthy_percentage = 66;
    let refresh = sandbox.deploy_and_wait(&request).await;
    assert_eq!(refresh.status, RefreshStatus::Successful, "{refresh:?}");
    let snapshot = sandbox
        .until("every instance requires verification", |s| {
            all_healthy_on(s, 3, "1.1.0")
        })
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let moto_url = sandbox.output("ManagedServicesEndpoint");

    let email = "katherine@example.com";
    let password = "correct-horse-7";
    let (status, body) = http(
        "POST",
        &format!("{endpoint}/v1/user"),
        Some(serde_json::json!({
            "email": email,
            "password": password,
            "first_name": "Katherine",
            "last_name": "Johnson",
        })),
    )
    .await;
    assert_eq!(status, 201, "signup: {body}");
    let client = reqwest::Client::new();
    let me = || {
        client
            .get(format!("{endpoint}/v1/user/self"))
            .basic_auth(email, Some(password))
            .send()
    };
    let before = me().await.expect("GET /v1/user/self");
    assert_eq!(before.status().as_u16(), 403, "not verified yet");

    let sent = format!("verification e-mail sent to {email}");
    sandbox
        .until("the events say the e-mail went out", |s| {
            s.events.iter().any(|e| e.message == sent)
        })
        .await;
    let mail = mail_to(&moto_url, email).await;
    assert_eq!(mail.len(), 1, "exactly one e-mail: {mail:?}");
    let prefix = format!("{endpoint}{VERIFY_PATH}?token=");
    let (_, after_prefix) = mail[0]
        .1
        .split_once(&prefix)
        .unwrap_or_else(|| panic!("no link to {prefix} in {}", mail[0].1));
    let token: String = after_prefix
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(!token.is_empty(), "{}", mail[0].1);

    let (status, body) = http("GET", &format!("{prefix}{token}"), None).await;
    assert_eq!(status, 200, "following the link: {body}");
    let verified: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(verified["verified"], true, "{body}");
    let after = me().await.expect("GET /v1/user/self");
    assert_eq!(after.status().as_u16(), 200, "verified");
    let user: serde_json::Value = after.json().await.expect("a user");
    assert_eq!(user["email"], email);
    assert_eq!(user["verified"], true);
    sandbox.down().await;
}

/// What one request of a [`Probe`] got: when it was sent and its status (0: no answer).
#[derive(Debug, Clone, Copy)]
struct ProbeResult {
    sent: Instant,
    status: u16,
}

/// Requests sent one after another through the load balancer until stopped.
struct Probe {
    results: std::sync::Arc<std::sync::Mutex<Vec<ProbeResult>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(url: String) -> Probe {
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = {
            let results = results.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !*stopped.borrow() {
                    let sent = Instant::now();
                    let status = match client
                        .get(&url)
                        .timeout(Duration::from_secs(60))
                        .send()
                        .await
                    {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    results
                        .lock()
                        .expect("probe results")
                        .push(ProbeResult { sent, status });
                }
            })
        };
        Probe {
            results,
            stop,
            task,
        }
    }

    fn results(&self) -> Vec<ProbeResult> {
        self.results.lock().expect("probe results").clone()
    }

    /// Waits until `count` requests sent after `since` have been answered.
    async fn answered_after(&self, since: Instant, count: usize) -> Vec<ProbeResult> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let after: Vec<ProbeResult> = self
                .results()
                .into_iter()
                .filter(|r| r.sent >= since)
                .collect();
            if after.len() >= count {
                return after;
            }
            assert!(
                Instant::now() < deadline,
                "only {} probe requests answered since the mark",
                after.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Vec<ProbeResult> {
        let _ = self.stop.send(true);
        self.task.await.expect("the probe task");
        self.results.lock().expect("probe results").clone()
    }
}

fn failures(results: &[ProbeResult]) -> Vec<ProbeResult> {
    results
        .iter()
        .filter(|r| r.status != 200)
        .copied()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_deploy_stops_on_health_checks_and_rolls_back_without_failed_requests() {
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let probe = Probe::start(format!("{endpoint}/version"));

    let mut request = DeployRequest::new("2.0.0-broken");
    request.env.insert(
        contract::env::DATABASE_URL.to_owned(),
        "postgres://nobody@127.0.0.1:9/nothing".to_owned(),
    );
    request.preferences.min_healthy_percentage = 66;
    request.preferences.auto_rollback = true;
    let id = sandbox
        .cloud
        .deploy(&sandbox.stack, &request)
        .await
        .expect("deploy");
    // While the refresh runs, note how the broken instances' targets fail their checks.
    let mut broken_reasons: BTreeSet<TargetReason> = BTreeSet::new();
    let refresh = {
        let outcome = refresh_outcome(sandbox.cloud.wait_refresh(&sandbox.stack, &id));
        tokio::pin!(outcome);
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            tokio::select! {
                refresh = &mut outcome => break refresh.expect("the refresh"),
                _ = tokio::time::sleep_until(deadline) => panic!("the refresh did not end in time"),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let snapshot = sandbox.snapshot().await;
                    let broken: BTreeSet<&str> = snapshot
                        .azs
                        .iter()
                        .flat_map(|a| &a.instances)
                        .filter(|i| i.version.as_deref() == Some("2.0.0-broken"))
                        .map(|i| i.id.as_str())
                        .collect();
                    broken_reasons.extend(
                        snapshot
                            .azs
                            .iter()
                            .flat_map(|a| &a.targets)
                            .filter(|t| broken.contains(t.id.as_str()))
                            .filter(|t| t.state == TargetState::Unhealthy)
                            .filter_map(|t| t.reason),
                    );
                }
            }
        }
    };
    assert_eq!(
        refresh.status,
        RefreshStatus::RollbackSuccessful,
        "{refresh:?}"
    );
    let reason = refresh
        .rollback
        .as_ref()
        .and_then(|r| r.reason.clone())
        .expect("a rollback reason");
    assert!(reason.contains("failed ELB health checks"), "{reason}");

    let snapshot = sandbox
        .until("every instance back on 1.0.0, all healthy", |s| {
            all_healthy_on(s, 3, "1.0.0")
        })
        .await;
    // The broken webapp keeps running (it cannot reach its database, so its /healthz answers
    // 503): the refresh stops on failed health checks, not on exited processes.
    assert!(
        broken_reasons.contains(&TargetReason::ResponseCodeMismatch),
        "the broken targets failed with {broken_reasons:?}"
    );
    assert!(
        !snapshot
            .events
            .iter()
            .any(|e| e.message.contains("The webapp service on")),
        "no webapp process exited: {:#?}",
        snapshot.events
    );
    let results = probe.stop().await;
    assert!(
        results.len() > 10,
        "the probe ran: {} requests",
        results.len()
    );
    assert_eq!(
        failures(&results).len(),
        0,
        "failed probe requests: {:?}",
        failures(&results)
    );
    let (status, body) = http(
        "GET",
        &format!("{}/version", snapshot.endpoint.expect("endpoint")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1.0.0"), "{body}");
    sandbox.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_az_leaves_the_rotation_without_failures_and_comes_back() {
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let primary = snapshot.db_primary_az().expect("a primary").to_owned();
    let standby = snapshot.db_standby_az().map(str::to_owned);
    let az = snapshot
        .azs
        .iter()
        .map(|a| a.az.clone())
        .find(|a| *a != primary && Some(a) != standby.as_ref())
        .expect("an AZ without a database node");
    let probe = Probe::start(format!("{endpoint}/version"));
    probe.answered_after(Instant::now(), 5).await;

    let record = sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::BlackholeAz { az: az.clone() },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    let out_of_rotation = sandbox
        .until("the blackholed AZ's targets are unhealthy", |s| {
            s.azs.iter().find(|a| a.az == az).is_some_and(|a| {
                !a.targets.is_empty() && a.targets.iter().all(|t| t.state != TargetState::Healthy)
            })
        })
        .await;
    assert_eq!(out_of_rotation.healthy_capacity_outside(&az), 2);
    sandbox
        .until("the healthy hosts series of the AZ drops to zero", |s| {
            s.metrics
                .series(MetricKind::HealthyHosts, Some(&az))
                .and_then(|series| series.points.last())
                .is_some_and(|p| p.value == 0.0)
        })
        .await;
    let mark = Instant::now();
    let after = probe.answered_after(mark, 30).await;
    assert_eq!(
        failures(&after).len(),
        0,
        "requests failed after the AZ left the rotation: {:?}",
        failures(&after)
    );

    sandbox.cloud.restore(&record).await.expect("restore");
    sandbox
        .until("the AZ is healthy again", |s| {
            all_targets_healthy(s, 3)
                && s.azs
                    .iter()
                    .find(|a| a.az == az)
                    .is_some_and(|a| a.healthy_capacity() == 1)
        })
        .await;
    let mark = Instant::now();
    let after = probe.answered_after(mark, 10).await;
    assert_eq!(failures(&after).len(), 0, "{:?}", failures(&after));
    probe.stop().await;
    sandbox.down().await;
}

/// Signups sent one after another through the load balancer until stopped.
struct Signups {
    done: std::sync::Arc<std::sync::Mutex<Vec<(String, u16, Instant)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

const PASSWORD: &str = "correct-horse-7";

impl Signups {
    fn start(endpoint: String) -> Signups {
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = {
            let done = done.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u32;
                while !*stopped.borrow() {
                    n += 1;
                    let email = format!("user{n}@example.com");
                    let status = match client
                        .post(format!("{endpoint}/v1/user"))
                        .json(&serde_json::json!({
                            "email": email,
                            "password": PASSWORD,
                            "first_name": "Sig",
                            "last_name": "Nup",
                        }))
                        .timeout(Duration::from_secs(60))
                        .send()
                        .await
                    {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    done.lock()
                        .expect("signups")
                        .push((email, status, Instant::now()));
                }
            })
        };
        Signups { done, stop, task }
    }

    /// Waits until `count` signups answered after `since` got a 201.
    async fn created_after(&self, since: Instant, count: usize) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let created = self
                .done
                .lock()
                .expect("signups")
                .iter()
                .filter(|(_, status, at)| *status == 201 && *at >= since)
                .count();
            if created >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {created} signups succeeded since the mark: {:?}",
                self.done
                    .lock()
                    .expect("signups")
                    .iter()
                    .filter(|(_, _, at)| *at >= since)
                    .map(|(e, s, _)| (e.clone(), *s))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) -> Vec<(String, u16)> {
        let _ = self.stop.send(true);
        self.task.await.expect("the signup task");
        self.done
            .lock()
            .expect("signups")
            .iter()
            .map(|(e, s, _)| (e.clone(), *s))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_of_the_primary_az_fails_over_and_keeps_every_acknowledged_signup() {
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let primary = snapshot.db_primary_az().expect("a primary").to_owned();
    let standby = snapshot.db_standby_az().expect("a standby").to_owned();
    let signups = Signups::start(endpoint.clone());
    signups.created_after(Instant::now(), 3).await;

    // 1. The primary's AZ goes dark: the standby is promoted and writes resume.
    let outage = sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::AzOutage {
                az: primary.clone(),
            },
            CapacityCheck::Force,
        )
        .await
        .expect("inject the AZ outage");
    let mark = Instant::now();
    assert!(
        outage.changes.iter().any(|c| matches!(
            c,
            FaultChange::Sandbox(SandboxChange::DbFailedOver { to_az, .. }) if *to_az == standby
        )),
        "{outage:?}"
    );
    sandbox
        .until("the standby is the primary", |s| {
            s.db_primary_az() == Some(standby.as_str())
        })
        .await;
    signups.created_after(mark, 3).await;
    sandbox
        .cloud
        .restore(&outage)
        .await
        .expect("restore the outage");

    // 2. The (new) standby's AZ goes dark: commits keep succeeding.
    let snapshot = sandbox
        .until("a synchronous standby again", |s| {
            s.db_standby_az().is_some()
                && s.azs.iter().any(|a| {
                    a.database.as_ref().is_some_and(|d| {
                        d.role == provision::port::DbRole::Standby && d.synchronous == Some(true)
                    })
                })
        })
        .await;
    let standby = snapshot.db_standby_az().expect("a standby").to_owned();
    let blackhole = sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::BlackholeAz {
                az: standby.clone(),
            },
            CapacityCheck::Force,
        )
        .await
        .expect("blackhole the standby's AZ");
    let mark = Instant::now();
    signups.created_after(mark, 3).await;
    sandbox
        .cloud
        .restore(&blackhole)
        .await
        .expect("restore the blackhole");
    let created: Vec<String> = signups
        .stop()
        .await
        .into_iter()
        .filter(|(_, status)| *status == 201)
        .map(|(email, _)| email)
        .collect();
    assert!(created.len() >= 9, "{created:?}");

    // Every acknowledged signup exists.
    sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let client = reqwest::Client::new();
    for email in &created {
        let response = client
            .get(format!("{endpoint}/v1/user/self"))
            .basic_auth(email, Some(PASSWORD))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 200, "{email} is lost");
    }
    sandbox.down().await;
}

/// Polls the sandbox's logs with `query` until a line satisfies `found`.
async fn log_line(
    sandbox: &Sandbox,
    query: &LogQuery,
    found: impl Fn(&LogLine) -> bool,
) -> LogLine {
    let deadline = Instant::now() + LIMIT;
    loop {
        let page = sandbox
            .cloud
            .logs(&sandbox.stack, query, None)
            .await
            .expect("logs");
        if let Some(line) = page.lines.into_iter().find(|l| found(l)) {
            return line;
        }
        assert!(Instant::now() < deadline, "no such log line for {query:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A signup's request line appears under the instance that served it, and the AZ, instance,
/// level and text filters each select it (and the opposite filters leave it out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signups_log_line_appears_under_its_instance_and_the_filters_select_it() {
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");

    // Every instance's start line is attributed to that instance and its AZ.
    for az in &snapshot.azs {
        for instance in &az.instances {
            let query = LogQuery {
                instance: Some(instance.id.clone()),
                ..LogQuery::default()
            };
            let start = log_line(&sandbox, &query, |l| l.message == "starting").await;
            assert_eq!(start.az, az.az);
            assert_eq!(
                start.fields.get("instance").and_then(|v| v.as_str()),
                Some(instance.id.as_str()),
                "the line's own instance field names the instance it is filed under"
            );
            assert_eq!(start.level, Some(LogLevel::Info));
        }
    }

    let request_id = "e2e-logs-signup-1";
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/v1/user"))
        .header("X-Request-Id", request_id)
        .json(&serde_json::json!({
            "email": "grace@example.com",
            "password": "correct-horse-7",
            "first_name": "Grace",
            "last_name": "Hopper",
        }))
        .send()
        .await
        .expect("a response through the load balancer");
    assert_eq!(response.status().as_u16(), 201);

    let by_text = LogQuery {
        text: Some(request_id.to_owned()),
        ..LogQuery::default()
    };
    let is_signup = |l: &LogLine| {
        l.message == "request"
            && l.fields.get("request_id").and_then(|v| v.as_str()) == Some(request_id)
    };
    let signup = log_line(&sandbox, &by_text, is_signup).await;
    assert_eq!(signup.level, Some(LogLevel::Info));
    assert_eq!(signup.fields.get("status"), Some(&serde_json::json!(201)));
    assert_eq!(
        signup.fields.get("path").and_then(|v| v.as_str()),
        Some("/v1/user")
    );
    let served_by = snapshot
        .azs
        .iter()
        .find(|az| az.instances.iter().any(|i| i.id == signup.instance))
        .expect("the line names one of the stack's instances");
    assert_eq!(served_by.az, signup.az, "the instance's AZ");

    let other_az = snapshot
        .azs
        .iter()
        .find(|az| az.az != signup.az)
        .expect("another AZ");
    let other_instance = other_az.instances[0].id.clone();
    let page = |query: LogQuery| {
        let cloud = sandbox.cloud.clone();
        let stack = sandbox.stack.clone();
        async move {
            cloud
                .logs(&stack, &query, None)
                .await
                .expect("logs")
                .lines
                .into_iter()
                .any(|l| is_signup(&l))
        }
    };
    let with = |f: fn(&mut LogQuery, &LogLine, &str)| {
        let mut query = LogQuery {
            limit: Some(provision::port::logs::MAX_PAGE_LINES),
            ..LogQuery::default()
        };
        f(&mut query, &signup, &other_instance);
        query
    };
    assert!(page(with(|q, l, _| q.instance = Some(l.instance.clone()))).await);
    assert!(page(with(|q, l, _| q.az = Some(l.az.clone()))).await);
    assert!(page(with(|q, _, _| q.level = Some(LogLevel::Info))).await);
    assert!(page(with(|q, _, _| q.text = Some("/v1/user".into()))).await);
    assert!(
        page(with(|q, l, _| {
            q.az = Some(l.az.clone());
            q.instance = Some(l.instance.clone());
            q.level = Some(LogLevel::Info);
            q.text = Some("e2e-logs-signup".into());
        }))
        .await
    );
    assert!(!page(with(|q, _, other| q.instance = Some(other.to_owned()))).await);
    assert!(!page(with(|q, _, _| q.level = Some(LogLevel::Warn))).await);
    assert!(!page(with(|q, _, _| q.text = Some("no-such-request".into()))).await);
    let mut elsewhere = with(|_, _, _| {});
    elsewhere.az = Some(other_az.az.clone());
    assert!(!page(elsewhere).await);

    // Following from the tail returns the next request's line once.
    let tail = sandbox
        .cloud
        .logs(&sandbox.stack, &by_text, None)
        .await
        .expect("logs");
    let follow = LogQuery {
        text: Some("e2e-logs-".into()),
        ..LogQuery::default()
    };
    let response = reqwest::Client::new()
        .get(format!("{endpoint}/version"))
        .header("X-Request-Id", "e2e-logs-version-2")
        .send()
        .await
        .expect("a response");
    assert!(response.status().is_success());
    let mut cursor = tail.cursor;
    let mut followed = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !followed.iter().any(|l: &LogLine| {
        l.fields.get("request_id") == Some(&serde_json::json!("e2e-logs-version-2"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the follower never saw the request"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = sandbox
            .cloud
            .logs(&sandbox.stack, &follow, Some(&cursor))
            .await
            .expect("logs");
        followed.extend(next.lines);
        cursor = next.cursor;
    }
    assert!(
        followed.iter().all(|l| !is_signup(l)),
        "following starts after the tail it was given: {followed:?}"
    );

    let logs = sandbox.dir.join("logs").join("instances");
    assert!(
        logs.join(&signup.az)
            .join(format!("{}.log", signup.instance))
            .exists()
    );
    sandbox.down().await;
    assert!(!logs.exists(), "down removes the logs");
}

/// Live (neither terminating nor terminated) instances in `az`.
fn live_in(snapshot: &Snapshot, az: &str) -> usize {
    snapshot.az(az).map_or(0, |view| {
        view.instances
            .iter()
            .filter(|i| {
                !matches!(
                    i.lifecycle,
                    LifecycleState::Terminating | LifecycleState::Terminated
                )
            })
            .count()
    })
}

/// After an AZ outage long enough for the group to replace the AZ's instances in the other
/// AZs (3/3/0), and its restore, AZRebalance brings the group back to 2/2/2 by itself: the
/// same group model the memory backend runs, here with real processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_an_az_outage_and_its_restore_the_group_rebalances_by_itself() {
    let sandbox = Sandbox::up(2).await;
    let snapshot = sandbox
        .until("six healthy targets", |s| all_targets_healthy(s, 6))
        .await;
    // The last AZ: not the database primary's, so no failover is involved.
    let az = snapshot.azs.last().expect("three AZs").az.clone();
    let outage = sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::AzOutage { az: az.clone() },
            CapacityCheck::Force,
        )
        .await
        .expect("inject the AZ outage");
    let others: Vec<String> = snapshot
        .azs
        .iter()
        .map(|v| v.az.clone())
        .filter(|a| *a != az)
        .collect();
    sandbox
        .until("the AZ's instances replaced in the other AZs", |s| {
            live_in(s, &az) == 0 && others.iter().all(|a| live_in(s, a) == 3)
        })
        .await;
    sandbox
        .cloud
        .restore(&outage)
        .await
        .expect("restore the outage");
    let balanced = sandbox
        .until("a balanced group, every target healthy", |s| {
            s.azs
                .iter()
                .all(|v| live_in(s, &v.az) == 2 && v.healthy_capacity() == 2)
        })
        .await;
    assert!(
        balanced
            .events
            .iter()
            .any(|e| e.message.contains("to aid in balancing the group's zones")),
        "{:#?}",
        balanced.events
    );
    sandbox.down().await;
}

/// One-instance actions through the daemon and the group model: a decrement at min is
/// refused; standby takes the instance's target out while its process lives on and a
/// replacement becomes healthy; resume brings it back (desired one higher); terminate
/// replaces it, and a probe sending one request at a time through the load balancer meanwhile
/// loses at most the one in flight (deregistration drains the target before the process
/// stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_standby_resume_and_terminate() {
    use provision::port::{CloudError, InstanceAction};
    let sandbox = Sandbox::up(1).await;
    sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let id = sandbox.snapshot().await.azs[0].instances[0].id.clone();
    let refused = sandbox
        .cloud
        .act_on_instance(
            &sandbox.stack,
            &id,
            InstanceAction::Terminate { decrement: true },
            CapacityCheck::Enforce,
        )
        .await;
    assert!(
        matches!(refused, Err(CloudError::Refused { .. })),
        "{refused:?}"
    );

    sandbox
        .cloud
        .act_on_instance(
            &sandbox.stack,
            &id,
            InstanceAction::Standby { decrement: false },
            CapacityCheck::Enforce,
        )
        .await
        .expect("standby");
    sandbox
        .until("standby, out of the target group, replaced", |s| {
            let standby = s
                .azs
                .iter()
                .flat_map(|a| &a.instances)
                .any(|i| i.id == id && i.lifecycle == LifecycleState::Standby);
            let target_gone = s
                .azs
                .iter()
                .flat_map(|a| &a.targets)
                .all(|t| t.id != id || t.state != TargetState::Healthy);
            standby && target_gone && healthy_targets(s) == 3
        })
        .await;

    sandbox
        .cloud
        .act_on_instance(
            &sandbox.stack,
            &id,
            InstanceAction::Resume,
            CapacityCheck::Enforce,
        )
        .await
        .expect("resume");
    sandbox
        .until("back in service with four healthy targets", |s| {
            s.capacity.is_some_and(|c| c.desired == 4) && all_targets_healthy(s, 4)
        })
        .await;

    let endpoint = sandbox.snapshot().await.endpoint.expect("an endpoint");
    let probe = Probe::start(format!("{endpoint}/version"));
    let mark = Instant::now();
    probe.answered_after(mark, 5).await;
    sandbox
        .cloud
        .act_on_instance(
            &sandbox.stack,
            &id,
            InstanceAction::Terminate { decrement: false },
            CapacityCheck::Enforce,
        )
        .await
        .expect("terminate");
    sandbox
        .until("terminated and replaced", |s| {
            all_targets_healthy(s, 4) && s.azs.iter().flat_map(|a| &a.instances).all(|i| i.id != id)
        })
        .await;
    let results = probe.stop().await;
    let during: Vec<ProbeResult> = results.into_iter().filter(|r| r.sent >= mark).collect();
    let failed = failures(&during);
    assert!(
        failed.len() <= 1,
        "at most the request in flight fails: {} of {} failed: {failed:?}",
        failed.len(),
        during.len()
    );
    assert!(during.len() > failed.len(), "the probe was answered");
    sandbox.down().await;
}

/// A stack started with `clock = "aws"` and a 5 s health-check interval runs the spec's
/// durations as they are: its status shows them in force, unscaled, and a spec asking for
/// another clock is planned as a restart that `up` cannot apply. (Instance boot is set to 0
/// so the bring-up does not wait the assumed minute; the durations in force are what is
/// asserted, not a drill on the AWS clock.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aws_clock_stack_shows_the_specs_timings_in_force_and_plans_a_restart_for_another() {
    let aws = r#"
name = "sbx-e2e"
region = "us-east-1"
[app]
version = "1.0.0"
deregistration_delay_seconds = 20
health_check_grace_period_seconds = 90
[app.health_check]
interval_seconds = 5
timeout_seconds = 2
[mailer]
sender = "no-reply@example.com"
[sandbox]
clock = "aws"
instance_boot_seconds = 0
rds_failover_seconds = 75
"#;
    let sandbox = Sandbox::up_with(aws, 0o755).await;
    let snapshot = sandbox.snapshot().await;
    let clock = snapshot
        .clock
        .as_ref()
        .expect("a sandbox snapshot carries its clock");
    assert_eq!(clock.scale, provision::model::TimeScale::aws());
    for (name, seconds) in [
        ("health check interval", 5.0),
        ("health check timeout", 2.0),
        ("deregistration delay", 20.0),
        ("health check grace period", 90.0),
        ("instance boot (assumed)", 0.0),
        ("RDS failover (assumed)", 75.0),
    ] {
        let d = clock
            .duration(name)
            .unwrap_or_else(|| panic!("{name} in force"));
        assert_eq!(
            (d.aws_seconds, d.wall_seconds),
            (seconds, seconds),
            "{name}"
        );
    }
    assert_eq!((clock.healthy_threshold, clock.unhealthy_threshold), (2, 2));

    // The same stack asked to run fast: a restart, which `up` cannot do by itself.
    let fast = aws.replace("clock = \"aws\"", "clock = \"fast\"");
    let spec = StackSpec::parse(&fast).expect("a valid spec");
    let desired = DesiredStack {
        stack: sandbox.stack.clone(),
        template_body: "{}".into(),
        parameters: Default::default(),
        tags: Default::default(),
        spec: serde_json::to_value(&spec).expect("spec as JSON"),
    };
    let plan = sandbox.cloud.plan(&desired).await.expect("plan");
    let change = plan
        .changes
        .iter()
        .find(|c| c.logical_id == "SandboxClock")
        .expect("the clock change is planned");
    assert!(
        change
            .reasons
            .iter()
            .any(|r| r == "clock: running aws, the spec says fast ×5"),
        "{:?}",
        change.reasons
    );
    assert!(
        plan.blockers.iter().any(|b| b.contains("needs a restart")),
        "{:?}",
        plan.blockers
    );
    // The spec it runs plans nothing.
    assert!(
        sandbox
            .cloud
            .plan(&DesiredStack {
                spec: sandbox.spec_json.clone(),
                ..desired
            })
            .await
            .expect("plan")
            .is_empty()
    );
    sandbox.down().await;
}

/// The per-second points of `metric` in `az` stamped at or after `since`.
fn points_since(
    snapshot: &Snapshot,
    metric: MetricKind,
    az: &str,
    since: time::OffsetDateTime,
) -> Vec<f64> {
    snapshot
        .metrics
        .series(metric, Some(az))
        .map(|series| {
            series
                .points
                .iter()
                .filter(|p| p.at >= since)
                .map(|p| p.value)
                .collect()
        })
        .unwrap_or_default()
}

/// slow-az is gray: requests to the slowed AZ's targets take at least the added latency
/// (their median response time is above every other AZ's) while every target stays healthy,
/// because health checks are not delayed; restore takes the delay away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_az_stays_healthy_while_its_requests_get_slower() {
    const LATENCY_MS: u32 = 300;
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let az = snapshot.azs[0].az.clone();
    let probe = Probe::start(format!("{endpoint}/version"));
    probe.answered_after(Instant::now(), 5).await;

    let fault = Fault::parse("slow-az", Some(&az))
        .and_then(|f| f.with_latency(LATENCY_MS))
        .expect("a slow-az fault");
    let plan = sandbox
        .cloud
        .describe_fault(&sandbox.stack, &fault)
        .await
        .expect("dry run");
    assert!(
        plan.notes.iter().any(|n| n.contains("health checks")),
        "the dry run says what happens to health checks: {plan:?}"
    );
    let record = sandbox
        .cloud
        .inject(&sandbox.stack, &fault, CapacityCheck::Enforce)
        .await
        .expect("inject");
    assert_eq!(
        record.changes,
        vec![FaultChange::Sandbox(SandboxChange::AzSlowed {
            az: az.clone(),
            latency_ms: LATENCY_MS,
        })]
    );
    // Whole seconds after the injection, so no bucket mixes requests from before it.
    let since = record
        .injected_at
        .replace_nanosecond(0)
        .expect("whole second")
        + time::Duration::seconds(1);
    let slowed = sandbox
        .until("three seconds of the slowed AZ's latency", |s| {
            points_since(s, MetricKind::LatencyP50, &az, since).len() >= 3
                && s.azs
                    .iter()
                    .filter(|a| a.az != az)
                    .all(|a| points_since(s, MetricKind::LatencyP50, &a.az, since).len() >= 3)
        })
        .await;
    assert!(
        all_targets_healthy(&slowed, 3),
        "every target stays healthy under slow-az: {:#?}",
        slowed.azs
    );
    let slow = points_since(&slowed, MetricKind::LatencyP50, &az, since);
    assert!(
        slow.iter().all(|ms| *ms >= f64::from(LATENCY_MS)),
        "the slowed AZ's median response time includes the added latency: {slow:?}"
    );
    let slowest_elsewhere = slowed
        .azs
        .iter()
        .filter(|a| a.az != az)
        .flat_map(|a| points_since(&slowed, MetricKind::LatencyP50, &a.az, since))
        .fold(0.0_f64, f64::max);
    let fastest_slowed = slow.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        fastest_slowed > slowest_elsewhere,
        "the slowed AZ ({slow:?}) is slower than every other AZ (at most {slowest_elsewhere})"
    );

    sandbox.cloud.restore(&record).await.expect("restore");
    let restored_at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("second")
        + time::Duration::seconds(1);
    sandbox
        .until("the AZ answers without the added latency", |s| {
            points_since(s, MetricKind::LatencyP50, &az, restored_at)
                .iter()
                .any(|ms| *ms < f64::from(LATENCY_MS))
        })
        .await;
    let results = probe.stop().await;
    assert_eq!(failures(&results).len(), 0, "{:?}", failures(&results));
    sandbox.down().await;
}

/// Requests the load balancer sent to each AZ's targets in the whole seconds at or after
/// `since` (the per-AZ request counters).
fn requests_since(snapshot: &Snapshot, since: time::OffsetDateTime) -> Vec<(String, f64)> {
    snapshot
        .azs
        .iter()
        .map(|view| {
            let total = points_since(snapshot, MetricKind::Requests, &view.az, since)
                .iter()
                .sum();
            (view.az.clone(), total)
        })
        .collect()
}

fn count_in(counts: &[(String, f64)], az: &str) -> f64 {
    counts
        .iter()
        .find(|(name, _)| name == az)
        .map_or(0.0, |(_, n)| *n)
}

/// A zonal shift away from an AZ: from the second after it starts, the AZ's targets get no new
/// request (per-AZ counters) while they stay registered and healthy, and no request fails;
/// the group does not launch there (a killed instance's replacement goes elsewhere); cancel
/// brings requests back to it. Guarded: refused in read-only mode and while one is active.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zonal_shift_moves_new_requests_away_and_cancel_brings_them_back() {
    use provision::port::{Guarded, SessionMode, ShiftRequest};
    let sandbox = Sandbox::up(1).await;
    let snapshot = sandbox
        .until("three healthy targets", |s| all_targets_healthy(s, 3))
        .await;
    let endpoint = snapshot.endpoint.clone().expect("an endpoint");
    let az = snapshot.azs[0].az.clone();
    let probe = Probe::start(format!("{endpoint}/version"));
    probe.answered_after(Instant::now(), 5).await;

    let request = ShiftRequest::new(&az, Duration::from_secs(600), "test").expect("request");
    let read_only = Guarded::new(sandbox.cloud.clone(), SessionMode::ReadOnly);
    assert!(matches!(
        read_only
            .start_zonal_shift(&sandbox.stack, &request, CapacityCheck::Enforce)
            .await,
        Err(provision::port::CloudError::ReadOnly { .. })
    ));
    let guarded = Guarded::new(sandbox.cloud.clone(), SessionMode::ReadWrite);
    let shift = guarded
        .start_zonal_shift(&sandbox.stack, &request, CapacityCheck::Enforce)
        .await
        .expect("start the shift");
    assert_eq!(shift.az, az);
    let other = snapshot.azs[1].az.clone();
    let again = ShiftRequest::new(&other, Duration::from_secs(600), "").expect("request");
    assert!(
        guarded
            .start_zonal_shift(&sandbox.stack, &again, CapacityCheck::Enforce)
            .await
            .is_err(),
        "one shift at a time"
    );

    let since =
        shift.started_at.replace_nanosecond(0).expect("second") + time::Duration::seconds(1);
    let mark = Instant::now();
    probe.answered_after(mark, 40).await;
    let shifted = sandbox
        .until("three seconds of requests after the shift", |s| {
            s.azs
                .iter()
                .filter(|a| a.az != az)
                .all(|a| points_since(s, MetricKind::Requests, &a.az, since).len() >= 3)
        })
        .await;
    let counts = requests_since(&shifted, since);
    assert_eq!(
        count_in(&counts, &az),
        0.0,
        "no new request to the shifted AZ: {counts:?}"
    );
    assert!(
        counts
            .iter()
            .filter(|(name, _)| *name != az)
            .all(|(_, n)| *n > 0.0),
        "the other AZs serve: {counts:?}"
    );
    assert!(
        all_targets_healthy(&shifted, 3),
        "the shifted AZ's targets stay registered and healthy"
    );
    assert_eq!(
        shifted.shift_away_from(&az).map(|s| s.az.as_str()),
        Some(az.as_str()),
        "the snapshot shows the active shift"
    );

    // The group does not launch into the shifted AZ: a killed instance there is replaced
    // elsewhere.
    sandbox
        .cloud
        .inject(
            &sandbox.stack,
            &Fault::TerminateAz { az: az.clone() },
            CapacityCheck::Enforce,
        )
        .await
        .expect("terminate the shifted AZ's instance");
    let replaced = sandbox
        .until("three healthy targets outside the shifted AZ", |s| {
            s.healthy_capacity_outside(&az) == 3
        })
        .await;
    assert_eq!(live_in(&replaced, &az), 0, "nothing launched into {az}");

    let cancelled = sandbox
        .cloud
        .cancel_zonal_shift(&sandbox.stack, Some(&az))
        .await
        .expect("cancel");
    assert_eq!(cancelled.len(), 1);
    assert!(sandbox.snapshot().await.zonal_shifts.is_empty());
    // Once the shift is over the group rebalances into the AZ, and the AZ serves again.
    let back_at = time::OffsetDateTime::now_utc();
    sandbox
        .until("requests reach the AZ again", |s| {
            count_in(&requests_since(s, back_at), &az) > 0.0
        })
        .await;
    let results = probe.stop().await;
    assert_eq!(failures(&results).len(), 0, "{:?}", failures(&results));
    sandbox.down().await;
}
