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
use uuid::Uuid;

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

/// A new SQS queue subscribed to `topic_arn` with raw message delivery; answers its URL.
async fn subscribed_queue(aws: &aws_config::SdkConfig, topic_arn: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(aws);
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
    aws_sdk_sns::Client::new(aws)
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    queue_url
}

/// Receives and deletes every message in the queue (until two receives in a row come back
/// empty): each one's `event_id` attribute and body.
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut empty_receives = 0;
    while empty_receives < 2 {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
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
            let attribute = m
                .message_attributes()
                .and_then(|a| a.get(contract::message::ATTR_EVENT_ID))
                .and_then(|v| v.string_value())
                .expect("event_id attribute");
            all.push((attribute.to_string(), m.body().expect("body").to_string()));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().expect("receipt"))
                .send()
                .await
                .expect("delete");
        }
    }
    all
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
    let sqs = aws_sdk_sqs::Client::new(&moto_aws);
    let topic_arn = crate::common::create_topic(&moto_aws, &topic_name).await;
    assert_eq!(topic_arn, crate::common::topic_arn(&topic_name));
    let queue_url = subscribed_queue(&moto_aws, &topic_arn).await;

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
    for (attribute, body) in drain(&sqs, &queue_url).await {
        let event = contract::UserCreated::from_json(&body).expect("a user-created event");
        assert_eq!(attribute, event.event_id.to_string());
        *per_user.entry(event.user_id.to_string()).or_default() += 1;
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
#[derive(Debug, PartialEq)]
struct OutboxTotals {
    events: i64,
    attempts: i64,
    sent: i64,
}

async fn outbox_totals(conn: &sqlx::PgPool) -> OutboxTotals {
    sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT count(*) AS events, coalesce(sum(attempts), 0)::bigint AS attempts, \
         count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent FROM outbox",
    )
    .fetch_one(conn)
    .await
    .map(|(events, attempts, sent)| OutboxTotals {
        events,
        attempts,
        sent,
    })
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

/// A migrated fresh database, a topic on the shared moto with a queue subscribed, and a
/// publisher for that topic (not running: the test drives it with [`Publisher::flush`]).
struct Outbox {
    pool: sqlx::PgPool,
    publisher: webapp::outbox::Publisher,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Outbox {
    async fn new(outbox: webapp::config::OutboxSettings) -> Outbox {
        let url = testkit::fresh_database().await.expect("fresh database");
        let pool = crate::common::observer_pool(&url).await;
        webapp::db::migrator()
            .await
            .expect("migrations")
            .run(&pool)
            .await
            .expect("migrations");
        let moto = testkit::aws_config().await;
        let topic_arn =
            crate::common::create_topic(&moto, &testkit::unique_name("user-created")).await;
        let queue_url = subscribed_queue(&moto, &topic_arn).await;
        let publisher = webapp::outbox::Publisher::new(
            pool.clone(),
            aws_sdk_sns::Client::new(&moto),
            topic_arn,
            outbox,
        );
        Outbox {
            pool,
            publisher,
            sqs: aws_sdk_sqs::Client::new(&moto),
            queue_url,
        }
    }

    /// Writes an event with `payload` (committed on its own) and answers its id.
    async fn enqueue(&self, payload: &str) -> Uuid {
        let id = Uuid::new_v4();
        let mut conn = self.pool.acquire().await.expect("connection");
        webapp::outbox::enqueue(&mut conn, id, contract::message::USER_CREATED, payload)
            .await
            .expect("enqueue");
        id
    }

    /// Each event's attempts, whether it was sent, its last error, and whether its next
    /// attempt was pushed back (`next_attempt_at` after the event was written).
    async fn rows(&self) -> HashMap<Uuid, (i32, bool, Option<String>, bool)> {
        let rows: Vec<(Uuid, i32, bool, Option<String>, bool)> = sqlx::query_as(
            "SELECT id, attempts, sent_at IS NOT NULL, last_error, \
             next_attempt_at > created_at + interval '30 seconds' FROM outbox",
        )
        .fetch_all(&self.pool)
        .await
        .expect("outbox rows");
        rows.into_iter()
            .map(|(id, attempts, sent, error, waits)| (id, (attempts, sent, error, waits)))
            .collect()
    }
}

fn outbox_settings() -> webapp::config::OutboxSettings {
    webapp::config::OutboxSettings {
        poll_interval: Duration::from_secs(3600),
        min_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(120),
        batch_size: 25,
        linger: Duration::from_millis(20),
    }
}

/// More events than one `PublishBatch` call takes go out in calls of at most ten, each event
/// once, and each is marked sent after one attempt.
#[tokio::test]
async fn more_than_ten_pending_events_go_out_in_batches_each_once() {
    let outbox = Outbox::new(outbox_settings()).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(outbox.enqueue(&format!("{{\"n\":{i}}}")).await);
    }

    let flushed = outbox.publisher.flush().await.expect("flush");
    assert_eq!(
        flushed,
        webapp::outbox::Flushed {
            events: 23,
            calls: 3
        }
    );

    let rows = outbox.rows().await;
    assert_eq!(rows.len(), 23);
    for id in &ids {
        assert_eq!(rows[id], (1, true, None, false), "event {id}");
    }
    let mut received: HashMap<String, Vec<String>> = HashMap::new();
    for (event_id, body) in drain(&outbox.sqs, &outbox.queue_url).await {
        received.entry(event_id).or_default().push(body);
    }
    let expected: HashMap<String, Vec<String>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), vec![format!("{{\"n\":{i}}}")]))
        .collect();
    assert_eq!(received, expected);
}

/// An event SNS refuses within a `PublishBatch` it answers — here a message over SNS's 256 KiB
/// limit, which moto refuses as a `Failed` entry (`InvalidParameter`, the sender's fault) — is
/// accounted for like a refused publish: its attempt counted, its error kept, its next attempt
/// pushed back by its backoff. The events before and after it go out in the same pass.
#[tokio::test]
async fn an_event_sns_refuses_waits_its_backoff_while_the_others_go_out() {
    let outbox = Outbox::new(outbox_settings()).await;
    let mut small = Vec::new();
    for i in 0..5 {
        small.push(outbox.enqueue(&format!("{{\"n\":{i}}}")).await);
    }
    let refused = outbox
        .enqueue(&"x".repeat(webapp::outbox::MAX_BATCH_BYTES + 1))
        .await;
    for i in 5..11 {
        small.push(outbox.enqueue(&format!("{{\"n\":{i}}}")).await);
    }

    let flushed = outbox.publisher.flush().await.expect("flush");
    // The five before it, the refused one alone (over the limit of a whole call), the six after.
    assert_eq!(
        flushed,
        webapp::outbox::Flushed {
            events: 11,
            calls: 3
        }
    );

    let rows = outbox.rows().await;
    for id in &small {
        assert_eq!(rows[id], (1, true, None, false), "event {id}");
    }
    let (attempts, sent, error, waits) = &rows[&refused];
    assert_eq!((*attempts, *sent, *waits), (1, false, true));
    let error = error.as_deref().expect("the refusal is kept");
    assert!(error.contains("InvalidParameter"), "{error}");
    assert!(error.contains(&refused.to_string()), "{error}");

    let received: Vec<String> = drain(&outbox.sqs, &outbox.queue_url)
        .await
        .into_iter()
        .map(|(event_id, _)| event_id)
        .collect();
    assert_eq!(received.len(), small.len());
    for id in &small {
        assert!(received.contains(&id.to_string()), "event {id} delivered");
    }
}
