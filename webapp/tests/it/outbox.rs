//! The transactional outbox end to end: SNS unreachable → signups still 201 → SNS back → each
//! "user created" event reaches an SQS queue subscribed to the topic exactly once.
//!
//! "SNS back" is a private moto server started, mid-test, on the port the app was pointed at
//! (closed until then); the topic is created there under the name the app was configured with.

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

#[tokio::test]
async fn events_written_while_sns_is_down_are_delivered_once_it_is_back() {
    let port = testkit::free_port().expect("free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = testkit::aws_config_for(&endpoint).await;
    let url = testkit::fresh_database().await.expect("fresh database");
    let topic_name = testkit::unique_name("user-created");
    let mut s = settings(&url);
    s.topic_arn = crate::common::topic_arn(&topic_name);
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

    // SNS comes back, with the topic subscribed by a queue.
    let _moto = start_moto_on(port);
    eventually("moto to listen", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let topic = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .expect("topic");
    assert_eq!(topic.topic_arn(), Some(t.app.settings.topic_arn.as_str()));
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
        .topic_arn(&t.app.settings.topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");

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
