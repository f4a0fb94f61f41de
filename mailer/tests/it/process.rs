//! The mailer's processing functions against moto (DynamoDB and SES v2 are both modelled
//! there): what one message stores and sends, that redeliveries change nothing, that a
//! malformed message is refused without side effects, and that a failed e-mail is sent on the
//! retry with the token stored the first time.
//!
//! SES failures are real ones: an SES endpoint nobody listens on (a transient failure the SDK
//! retries with backoff, then gives up on), and moto's refusal of a sender whose identity is not
//! verified (`MessageRejected`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{Scene, TTL, number, string};
use contract::tokens::{
    ATTR_EMAIL, ATTR_EMAIL_SENT, ATTR_EVENT_ID, ATTR_EXPIRES_AT, ATTR_TOKEN, ATTR_TOKEN_REF,
    ATTR_USER_ID, idempotency_key,
};
use mailer::email::SendError;
use mailer::handler::{Outcome, ProcessError, process_message};

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

#[tokio::test]
async fn one_message_stores_one_token_and_sends_one_email_with_its_link() {
    let scene = Scene::new().await;
    let mailer = scene.mailer();
    let event = scene.event();
    let now = SystemTime::now();

    let outcome = process_message(&mailer, &event.to_json(), now)
        .await
        .expect("process a valid message");
    let Outcome::Sent { token, resumed, .. } = outcome else {
        panic!("expected the e-mail to be sent, got {outcome:?}");
    };
    assert!(!resumed);

    let items = scene.items().await;
    assert_eq!(items.tokens.len(), 1, "one token item");
    let item = &items.tokens[0];
    assert_eq!(string(item, ATTR_TOKEN), token.as_str());
    assert_eq!(string(item, ATTR_EMAIL), scene.recipient);
    assert_eq!(string(item, ATTR_USER_ID), event.user_id.to_string());
    assert_eq!(string(item, ATTR_EVENT_ID), event.event_id.to_string());
    assert_eq!(number(item, ATTR_EXPIRES_AT), epoch(now) + TTL.as_secs());

    assert_eq!(items.records.len(), 1, "one idempotency record");
    let record = &items.records[0];
    assert_eq!(string(record, ATTR_TOKEN), idempotency_key(event.event_id));
    assert_eq!(string(record, ATTR_TOKEN_REF), token.as_str());
    assert_eq!(
        record.get(ATTR_EMAIL_SENT).and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    assert!(number(record, ATTR_EXPIRES_AT) >= epoch(now) + TTL.as_secs());

    let mail = scene.sent_mail().await;
    assert_eq!(mail.len(), 1, "one e-mail: {mail:?}");
    assert_eq!(mail[0].source, scene.sender);
    assert_eq!(mail[0].subject, "Confirm your e-mail address");
    assert_eq!(mail[0].link_token(), token.as_str());
}

#[tokio::test]
async fn the_same_message_twice_stores_and_sends_once() {
    let scene = Scene::new().await;
    let mailer = scene.mailer();
    let body = scene.event().to_json();

    let first = process_message(&mailer, &body, SystemTime::now())
        .await
        .expect("first delivery");
    assert!(matches!(first, Outcome::Sent { .. }), "{first:?}");
    let second = process_message(&mailer, &body, SystemTime::now())
        .await
        .expect("second delivery");
    assert!(matches!(second, Outcome::AlreadySent { .. }), "{second:?}");

    let items = scene.items().await;
    assert_eq!(items.tokens.len(), 1, "still one token item");
    assert_eq!(items.records.len(), 1, "still one idempotency record");
    assert_eq!(scene.sent_mail().await.len(), 1, "still one e-mail");
}

#[tokio::test]
async fn a_malformed_message_is_refused_for_good_and_stores_nothing() {
    let scene = Scene::new().await;
    let mailer = scene.mailer();
    let mut missing_email = serde_json::to_value(scene.event()).expect("event as JSON");
    missing_email
        .as_object_mut()
        .expect("an object")
        .remove("email");

    for body in [
        "not json at all".to_string(),
        missing_email.to_string(),
        scene
            .event()
            .to_json()
            .replace("user.created", "user.deleted"),
    ] {
        let err = process_message(&mailer, &body, SystemTime::now())
            .await
            .expect_err("a malformed message fails");
        assert!(matches!(err, ProcessError::Malformed(_)), "{err}");
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.kind(), "MalformedMessage");
    }
    let items = scene.items().await;
    assert!(items.tokens.is_empty() && items.records.is_empty());
    assert!(scene.sent_mail().await.is_empty());
}

#[tokio::test]
async fn a_failed_email_is_sent_on_the_retry_with_the_token_stored_first() {
    let scene = Scene::new().await;
    let event = scene.event();
    let body = event.to_json();

    // 1. SES unreachable: the SDK retries with backoff, then the invocation fails, retryably.
    let closed = format!(
        "http://127.0.0.1:{}",
        testkit::free_port().expect("a free port")
    );
    let unreachable = testkit::aws_config_for(&closed).await;
    let err = process_message(
        &scene.mailer_with_ses(&unreachable, &scene.sender),
        &body,
        SystemTime::now(),
    )
    .await
    .expect_err("SES is unreachable");
    assert!(
        matches!(err, ProcessError::Send(SendError::Transient(_))),
        "{err}"
    );
    assert!(err.is_retryable(), "{err}");

    let items = scene.items().await;
    assert_eq!(items.tokens.len(), 1, "the token was stored before sending");
    let stored = string(&items.tokens[0], ATTR_TOKEN);
    assert_eq!(
        items.records[0]
            .get(ATTR_EMAIL_SENT)
            .and_then(|v| v.as_bool().ok()),
        Some(&false)
    );

    // 2. SES refuses an unverified sender: rejected, not worth retrying as it stands.
    let err = process_message(
        &scene.mailer_with_ses(&scene.sdk, "noreply@unverified.example"),
        &body,
        SystemTime::now(),
    )
    .await
    .expect_err("moto refuses an unverified sender");
    assert!(
        matches!(err, ProcessError::Send(SendError::Rejected(_))),
        "{err}"
    );
    assert!(!err.is_retryable(), "{err}");
    assert!(scene.sent_mail().await.is_empty(), "nothing was sent yet");

    // 3. The retry that works sends the stored token.
    let outcome = process_message(&scene.mailer(), &body, SystemTime::now())
        .await
        .expect("SES works again");
    let Outcome::Sent { token, resumed, .. } = outcome else {
        panic!("expected the e-mail to be sent, got {outcome:?}");
    };
    assert!(resumed);
    assert_eq!(token.as_str(), stored);

    // 4. And a redelivery after that does nothing.
    let again = process_message(&scene.mailer(), &body, SystemTime::now())
        .await
        .expect("redelivery");
    assert!(matches!(again, Outcome::AlreadySent { .. }), "{again:?}");

    let items = scene.items().await;
    assert_eq!(items.tokens.len(), 1, "one token");
    let mail = scene.sent_mail().await;
    assert_eq!(mail.len(), 1, "one e-mail: {mail:?}");
    assert_eq!(mail[0].link_token(), stored);
}
