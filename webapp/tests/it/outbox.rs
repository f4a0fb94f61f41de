//! The transactional outbox end to end: SNS unreachable → signups still 201 → SNS back → each
//! "user created" event reaches an SQS queue subscribed to the topic exactly once.
//!
//! The app is pointed at a port where nothing listens ("SNS down"). A private moto server runs
//! elsewhere from the start, with the topic and its SQS subscription already in place, so no
//! publish can slip in before the queue is subscribed. "SNS back" is a TCP forwarder started,
//! mid-test, on the app's port, leading to that moto.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use rocket::http::Status;

use crate::common::{TestApp, eventually, settings};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto_on(port: u16) -> Moto {
    let bin = std::env::var(testkit::MOTO_BIN_VAR).unwrap_or_else(|_| {
        panic!(
            "{} is not set: run the tests through `scripts/test`",
            testkit::MOTO_BIN_VAR
        )
    });
    Moto(
        Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    )
}

/// Forwards every connection to 127.0.0.1:`from` to 127.0.0.1:`to` for the rest of the test.
async fn forward(from: u16, to: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", from))
        .await
        .expect("bind the app's SNS port");
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test]
async fn events_written_while_sns_is_down_are_delivered_once_it_is_back() {
    let moto_port = testkit::free_port().expect("free port");
    let _moto = start_moto_on(moto_port);
    eventually("moto to listen", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", moto_port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let moto_aws = testkit::aws_config_for(&format!("http://127.0.0.1:{moto_port}")).await;
    let topic_name = testkit::unique_name("user-created");
    let sns = aws_sdk_sns::Client::new(&moto_aws);
    let sqs = aws_sdk_sqs::Client::new(&moto_aws);
    let topic_arn = crate::common::create_topic(&moto_aws, &topic_name).await;
    assert_eq!(topic_arn, crate::common::topic_arn(&topic_name));
    let queue_url = sqs
        .create_queue()
        .queue_name(testkit::unique_name("mailer"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");

    // The app talks to SNS through a port where nothing listens yet.
    let port = testkit::free_port().expect("free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = testkit::aws_config_for(&endpoint).await;
    let url = testkit::fresh_database().await.expect("fresh database");
    let mut s = settings(&url);
    s.topic_arn = topic_arn.clone();
    let t = TestApp::start(s, &aws).await;

    let emails: Vec<String> = (0..5).map(|i| format!("user{i}@example.com")).collect();
    let mut user_ids = Vec::new();
    for email in &emails {
        let (status, body) = t.signup(email, "correct-horse-7").await;
        assert_eq!(status, Status::Created, "{body}");
        user_ids.push(body["id"].as_str().expect("id").to_string());
    }

    // The publisher has tried and failed: every event is still pending.
    let conn = crate::common::observer_pool(&url).await;
    eventually("a failed publish attempt", Duration::from_secs(30), || {
        let conn = conn.clone();
        async move {
            let (tried, sent): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE attempts > 0 AND last_error IS NOT NULL), \
                 count(*) FILTER (WHERE sent_at IS NOT NULL) FROM outbox",
            )
            .fetch_one(&conn)
            .await
            .expect("outbox state");
            assert_eq!(sent, 0, "nothing can be sent while SNS is unreachable");
            (tried > 0).then_some(())
        }
    })
    .await;

    // SNS comes back: the app's port now leads to moto.
    let _forwarder = forward(port, moto_port).await;

    // Every event goes out and is marked sent.
    eventually(
        "every event to be marked sent",
        Duration::from_secs(60),
        || {
            let conn = conn.clone();
            async move {
                let (pending,): (i64,) =
                    sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                        .fetch_one(&conn)
                        .await
                        .expect("pending");
                (pending == 0).then_some(())
            }
        },
    )
    .await;

    // Drain the queue: exactly one message per user, the event id in body and attribute.
    let mut per_user: HashMap<String, usize> = HashMap::new();
    let mut empty_receives = 0;
    while empty_receives < 2 {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_receives += 1;
        }
        for m in messages {
            let body = m.body().expect("body");
            let event = contract::UserCreated::from_json(body).expect("a user-created event");
            let attribute = m
                .message_attributes()
                .and_then(|a| a.get(contract::message::ATTR_EVENT_ID))
                .and_then(|v| v.string_value())
                .expect("event_id attribute");
            assert_eq!(attribute, event.event_id.to_string());
            *per_user.entry(event.user_id.to_string()).or_default() += 1;
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().expect("receipt"))
                .send()
                .await
                .expect("delete");
        }
    }
    let mut expected: HashMap<String, usize> = HashMap::new();
    for id in user_ids {
        expected.insert(id, 1);
    }
    assert_eq!(per_user, expected);
}

/// While SNS is down, the publisher pauses after a failed attempt for that attempt's backoff,
/// whatever wakes it: a burst of signups costs one failed publish, not one per signup (each
/// attempt holds the claimed rows' transaction, and so a pool connection, open). Nothing is
/// lost: every event stays pending.
#[tokio::test]
async fn a_burst_of_signups_while_sns_is_down_costs_one_failed_attempt() {
    let port = testkit::free_port().expect("free port");
    let aws = testkit::aws_config_for(&format!("http://127.0.0.1:{port}")).await;
    let url = testkit::fresh_database().await.expect("fresh database");
    let mut s = settings(&url);
    s.outbox.min_backoff = Duration::from_secs(120);
    s.outbox.max_backoff = Duration::from_secs(240);
    let t = TestApp::start(s, &aws).await;

    let (status, body) = t.signup("first@example.com", "correct-horse-7").await;
    assert_eq!(status, Status::Created, "{body}");
    let conn = crate::common::observer_pool(&url).await;
    eventually(
        "the first failed attempt",
        Duration::from_secs(30),
        || async { (outbox_totals(&conn).await.attempts > 0).then_some(()) },
    )
    .await;

    for i in 0..20 {
        let (status, body) = t
            .signup(&format!("burst{i}@example.com"), "correct-horse-7")
            .await;
        assert_eq!(status, Status::Created, "{body}");
    }
    assert_eq!(
        outbox_totals(&conn).await,
        OutboxTotals {
            events: 21,
            attempts: 1,
            sent: 0
        }
    );
}

/// The outbox's events, publish attempts and sent events, in all.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct OutboxTotals {
    events: i64,
    attempts: i64,
    sent: i64,
}

async fn outbox_totals(conn: &sqlx::PgPool) -> OutboxTotals {
    sqlx::query_as(
        "SELECT count(*) AS events, coalesce(sum(attempts), 0)::bigint AS attempts, \
         count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent FROM outbox",
    )
    .fetch_one(conn)
    .await
    .expect("outbox totals")
}

/// An instance that cannot reach SNS does not hold other instances' publishing back: the event
/// it failed stays due, and an instance that can reach SNS publishes it, although the broken
/// one keeps retrying more often than the healthy one polls.
#[tokio::test]
async fn an_instance_that_cannot_reach_sns_leaves_its_events_to_one_that_can() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let moto = testkit::aws_config().await;
    let topic_name = testkit::unique_name("user-created");
    let topic_arn = crate::common::create_topic(&moto, &topic_name).await;

    let closed = testkit::free_port().expect("free port");
    let mut broken = settings(&url);
    broken.topic_arn = topic_arn.clone();
    broken.outbox.poll_interval = Duration::from_millis(100);
    broken.outbox.min_backoff = Duration::from_millis(100);
    broken.outbox.max_backoff = Duration::from_millis(300);
    let a = TestApp::start(
        broken,
        &testkit::aws_config_for(&format!("http://127.0.0.1:{closed}")).await,
    )
    .await;
    let (status, body) = a.signup("stuck@example.com", "correct-horse-7").await;
    assert_eq!(status, Status::Created, "{body}");
    let conn = crate::common::observer_pool(&url).await;
    eventually(
        "the broken instance to fail twice",
        Duration::from_secs(30),
        || async {
            let totals = outbox_totals(&conn).await;
            assert_eq!((totals.events, totals.sent), (1, 0));
            (totals.attempts >= 2).then_some(())
        },
    )
    .await;

    let mut healthy = settings(&url);
    healthy.topic_arn = topic_arn;
    healthy.outbox.poll_interval = Duration::from_secs(2);
    let _b = TestApp::start(healthy, &moto).await;
    eventually(
        "the healthy instance to publish the event",
        Duration::from_secs(30),
        || async { (outbox_totals(&conn).await.sent == 1).then_some(()) },
    )
    .await;
}
